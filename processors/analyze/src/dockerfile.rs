//! The Dockerfile: reconstructed from the config history ("guessed"), or the one the
//! user supplied with the request ("actual"), with its instructions parsed. Pure.

use vigil_contracts::{DockerInstruction, Dockerfile, DockerfileMode, HistoryEntry};

const INSTRUCTIONS: &[&str] = &[
    "FROM",
    "RUN",
    "CMD",
    "LABEL",
    "MAINTAINER",
    "EXPOSE",
    "ENV",
    "ADD",
    "COPY",
    "ENTRYPOINT",
    "VOLUME",
    "USER",
    "WORKDIR",
    "ARG",
    "ONBUILD",
    "STOPSIGNAL",
    "HEALTHCHECK",
    "SHELL",
];

fn split_instruction(line: &str) -> Option<DockerInstruction> {
    let line = line.trim();
    let (word, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
    let up = word.to_ascii_uppercase();
    INSTRUCTIONS
        .contains(&up.as_str())
        .then(|| DockerInstruction {
            instruction: up,
            args: rest.trim().to_string(),
        })
}

/// One history `created_by` as a Dockerfile line:
/// * classic builder: `/bin/sh -c #(nop)  CMD ["bash"]` → `CMD ["bash"]`,
///   `/bin/sh -c apt-get …` → `RUN apt-get …`, `|2 A=1 B=2 /bin/sh -c …` (build args) → `RUN …`;
/// * BuildKit: `RUN /bin/sh -c make # buildkit` → `RUN make`, `USER root` as it is;
/// * anything else → `RUN …`.
pub fn history_line(created_by: &str) -> String {
    let mut s = created_by.trim();
    s = s.strip_suffix("# buildkit").map(str::trim_end).unwrap_or(s);
    // `|N K=V … ` build-arg prefix of the classic builder.
    if let Some(rest) = s.strip_prefix('|') {
        let mut it = rest.splitn(2, ' ');
        if let (Some(n), Some(after)) = (it.next(), it.next()) {
            if let Ok(n) = n.parse::<usize>() {
                // Skip the N arguments; an N larger than what follows ends at the text's
                // end rather than counting on (`|4000000000 …` from a hostile config).
                let mut a = after;
                for _ in 0..n {
                    match a.split_once(' ') {
                        Some((_, rest)) => a = rest,
                        None => {
                            a = "";
                            break;
                        }
                    }
                }
                s = a;
            }
        }
    }
    for sh in ["/bin/sh -c ", "/bin/bash -c ", "cmd /S /C "] {
        if let Some(rest) = s.strip_prefix(sh) {
            let rest = rest.trim_start();
            if let Some(nop) = rest.strip_prefix("#(nop)") {
                return nop.trim().to_string();
            }
            return format!("RUN {}", rest.trim());
        }
    }
    if let Some(rest) = s.strip_prefix("RUN ") {
        for sh in ["/bin/sh -c ", "/bin/bash -c "] {
            if let Some(r) = rest.trim_start().strip_prefix(sh) {
                return format!("RUN {}", r.trim());
            }
        }
        return s.to_string();
    }
    if split_instruction(s).is_some() {
        return s.to_string();
    }
    format!("RUN {s}")
}

/// The guessed Dockerfile: one line per history entry that has a `created_by`.
pub fn guessed(history: &[HistoryEntry]) -> Option<Dockerfile> {
    let lines: Vec<String> = history
        .iter()
        .filter_map(|h| h.created_by.as_deref())
        .filter(|c| !c.trim().is_empty())
        .map(history_line)
        .collect();
    if lines.is_empty() {
        return None;
    }
    let text = lines.join("\n") + "\n";
    Some(Dockerfile {
        mode: DockerfileMode::Guessed,
        instructions: parse_instructions(&text),
        text,
    })
}

/// Parse a Dockerfile's instructions: `#` comments and parser directives skipped,
/// backslash continuations joined (comment lines inside a continuation dropped),
/// instruction names upper-cased. Heredoc bodies are not interpreted.
pub fn parse_instructions(text: &str) -> Vec<DockerInstruction> {
    let mut out = vec![];
    let mut cur = String::new();
    for raw in text.lines() {
        let line = raw.trim_end_matches('\r');
        let t = line.trim_start();
        if t.starts_with('#') {
            continue;
        }
        if cur.is_empty() && t.is_empty() {
            continue;
        }
        match line.trim_end().strip_suffix('\\') {
            Some(body) => {
                cur.push_str(body.trim_end());
                cur.push(' ');
            }
            None => {
                cur.push_str(line.trim());
                if let Some(i) = split_instruction(&cur) {
                    out.push(i);
                }
                cur.clear();
            }
        }
    }
    if let Some(i) = split_instruction(&cur) {
        out.push(i);
    }
    out
}

/// The actual Dockerfile supplied with a request.
pub fn actual(text: &str) -> Dockerfile {
    Dockerfile {
        mode: DockerfileMode::Actual,
        instructions: parse_instructions(text),
        text: text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_arg_count_larger_than_the_line_ends_quickly() {
        // Found by the dockerfile fuzz target: the count was looped over in full (with
        // usize::MAX, a test that never ends).
        assert_eq!(
            history_line(&format!("|{} A=1 /bin/sh -c make", usize::MAX)),
            "RUN "
        );
        assert_eq!(history_line("|1 A=1 /bin/sh -c make"), "RUN make");
    }

    #[test]
    fn history_forms() {
        assert_eq!(
            history_line("/bin/sh -c #(nop)  CMD [\"bash\"]"),
            "CMD [\"bash\"]"
        );
        assert_eq!(
            history_line("/bin/sh -c #(nop) ADD file:abc in / "),
            "ADD file:abc in /"
        );
        assert_eq!(
            history_line("/bin/sh -c apt-get update"),
            "RUN apt-get update"
        );
        assert_eq!(history_line("|2 A=1 B=2 /bin/sh -c make"), "RUN make");
        assert_eq!(
            history_line("RUN /bin/sh -c pip install x # buildkit"),
            "RUN pip install x"
        );
        assert_eq!(history_line("USER root"), "USER root");
        assert_eq!(
            history_line("EXPOSE map[22/tcp:{}]"),
            "EXPOSE map[22/tcp:{}]"
        );
        assert_eq!(
            history_line("umoci raw add-layer"),
            "RUN umoci raw add-layer"
        );
        let g = guessed(&[
            HistoryEntry {
                created_by: Some("/bin/sh -c #(nop) ADD file:1 in / ".into()),
                ..Default::default()
            },
            HistoryEntry {
                created_by: None,
                comment: Some("x".into()),
                ..Default::default()
            },
            HistoryEntry {
                created_by: Some("USER root".into()),
                empty_layer: true,
                ..Default::default()
            },
        ])
        .unwrap();
        assert_eq!(g.mode, DockerfileMode::Guessed);
        assert_eq!(g.text, "ADD file:1 in /\nUSER root\n");
        assert_eq!(g.instructions.len(), 2);
        assert!(guessed(&[]).is_none());
    }

    #[test]
    fn actual_dockerfile() {
        let d = actual("# syntax=docker/dockerfile:1\nFROM debian:12 AS base\n\nrun apt-get update && \\\n    # comment inside\n    apt-get install -y curl\nUSER app\nHEALTHCHECK CMD curl -f http://localhost/\n");
        let i: Vec<_> = d
            .instructions
            .iter()
            .map(|i| (i.instruction.as_str(), i.args.as_str()))
            .collect();
        assert_eq!(
            i,
            [
                ("FROM", "debian:12 AS base"),
                ("RUN", "apt-get update && apt-get install -y curl"),
                ("USER", "app"),
                ("HEALTHCHECK", "CMD curl -f http://localhost/")
            ]
        );
        assert_eq!(d.mode, DockerfileMode::Actual);
    }
}
