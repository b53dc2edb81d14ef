//! Output an evaluation as Anchore users know it: a table and JSON with gate, trigger,
//! trigger id, message, action, allowlisted (and by which item) and policy id.

use serde_json::{json, Value};
use vigil_contracts::{Action, Evaluation};

/// Anchore's status word: GO and WARN pass, STOP fails.
pub fn status(action: Action) -> &'static str {
    match action {
        Action::Stop => "fail",
        Action::Warn | Action::Go => "pass",
    }
}

pub const TABLE_COLUMNS: [&str; 7] = [
    "Gate",
    "Trigger",
    "Trigger_Id",
    "Check_Output",
    "Gate_Action",
    "Whitelisted",
    "Policy_Id",
];

/// Longest cell shown; longer messages are cut with `…` (the JSON keeps them whole).
const MAX_CELL: usize = 120;

fn cell(s: &str) -> String {
    let one_line = s.replace(['\n', '\r', '\t'], " ");
    if one_line.chars().count() > MAX_CELL {
        let cut: String = one_line.chars().take(MAX_CELL - 1).collect();
        format!("{cut}…")
    } else {
        one_line
    }
}

/// The evaluation as a fixed-width table: a header with image, tag, bundle, status and
/// final action, then one row per finding (STOP first, then WARN, then GO).
pub fn render_table(e: &Evaluation) -> String {
    let mut out = String::new();
    out.push_str(&format!("Image Digest: {}\n", e.image_digest));
    out.push_str(&format!("Full Tag: {}\n", e.tag));
    out.push_str(&format!("Bundle: {}\n", e.bundle_id));
    out.push_str(&format!("Status: {}\n", status(e.final_action)));
    out.push_str(&format!(
        "Final Action: {} (reason: {})\n",
        e.final_action.as_str(),
        e.final_action_reason
    ));
    if e.findings.is_empty() {
        out.push_str("\nNo policy findings.\n");
        return out;
    }
    let mut findings: Vec<_> = e.findings.iter().collect();
    findings.sort_by_key(|f| (f.action, f.gate.clone(), f.trigger.clone()));
    let rows: Vec<[String; 7]> = findings
        .iter()
        .map(|f| {
            [
                cell(&f.gate),
                cell(&f.trigger),
                cell(&f.trigger_id),
                cell(&f.message),
                f.action.as_str().to_string(),
                match (&f.allowlisted, &f.allowlist_id) {
                    (true, Some(id)) => cell(&format!("true ({id})")),
                    (true, None) => "true".into(),
                    _ => "false".into(),
                },
                cell(&f.policy_id),
            ]
        })
        .collect();
    let mut widths = TABLE_COLUMNS.map(|c| c.chars().count());
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r.iter()) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &[String]| -> String {
        let mut l = String::new();
        for (i, (c, w)) in cells.iter().zip(widths.iter()).enumerate() {
            l.push_str(c);
            if i + 1 < cells.len() {
                l.push_str(&" ".repeat(w - c.chars().count() + 2));
            }
        }
        l.push('\n');
        l
    };
    out.push('\n');
    out.push_str(&line(&TABLE_COLUMNS.map(String::from)));
    for r in &rows {
        out.push_str(&line(r));
    }
    out
}

/// The evaluation as JSON: the header fields plus `findings` with Anchore's column names.
pub fn render_json(e: &Evaluation) -> Value {
    json!({
        "image_digest": e.image_digest,
        "tag": e.tag,
        "bundle_id": e.bundle_id,
        "policy_ids": e.policy_ids,
        "status": status(e.final_action),
        "final_action": e.final_action.as_str(),
        "final_action_reason": e.final_action_reason,
        "evaluated_at": e.evaluated_at,
        "findings": e.findings.iter().map(|f| json!({
            "gate": f.gate,
            "trigger": f.trigger,
            "trigger_id": f.trigger_id,
            "check_output": f.message,
            "gate_action": f.action.as_str(),
            "whitelisted": f.allowlisted,
            "whitelist_id": f.allowlist_id,
            "policy_id": f.policy_id,
            "rule_id": f.rule_id,
        })).collect::<Vec<_>>(),
    })
}
