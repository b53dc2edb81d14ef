//! The text searches (secret rules and content-search regexes) of a layer's text files,
//! on a worker thread of their own: the tar parser hands each file's bytes over and goes
//! on with the next entry, and buffers come back to it for reuse. Hits keep the order in
//! which the files were handed over, so the index is the same as a search done inline.

use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender};
use std::sync::Arc;
use std::thread::{Scope, ScopedJoinHandle};

use vigil_contracts::SecretHit;

use super::secrets::SecretScanner;

/// Most files waiting for the worker (each at most `secret_max_file_bytes`).
const QUEUE: usize = 8;

/// The compiled searches: secret rules and content-search regexes.
#[derive(Debug)]
pub struct TextSearch {
    pub secrets: Option<SecretScanner>,
    pub content: Option<SecretScanner>,
}

/// What the searches found, in file order.
#[derive(Debug, Default)]
pub struct TextHits {
    pub secrets: Vec<SecretHit>,
    pub content: Vec<SecretHit>,
}

impl TextSearch {
    /// Search one file's bytes.
    pub fn search(&self, path: &str, text: &[u8], hits: &mut TextHits) {
        for (scanner, out) in [
            (&self.content, &mut hits.content),
            (&self.secrets, &mut hits.secrets),
        ] {
            if let Some(s) = scanner {
                out.extend(s.scan(text).into_iter().map(|(rule, line)| SecretHit {
                    path: path.to_string(),
                    rule,
                    line,
                }));
            }
        }
    }
}

/// The handing-over end, held by the file scanner.
pub struct TextQueue {
    jobs: SyncSender<(String, Vec<u8>)>,
    spare: Receiver<Vec<u8>>,
}

impl TextQueue {
    /// Hand `text` (a file's whole content) over; it is replaced by an emptied buffer
    /// from an earlier file when one has come back. `false` when the worker is gone:
    /// `text` is left as it was.
    pub fn submit(&self, path: &str, text: &mut Vec<u8>) -> bool {
        let spare = self.spare.try_recv().unwrap_or_default();
        let job = std::mem::replace(text, spare);
        match self.jobs.send((path.to_string(), job)) {
            Ok(()) => true,
            Err(back) => {
                *text = back.0 .1;
                false
            }
        }
    }
}

/// Start the worker on `scope`. Dropping the [`TextQueue`] ends it; joining the handle
/// gives the hits.
pub fn spawn<'scope>(
    scope: &'scope Scope<'scope, '_>,
    search: Arc<TextSearch>,
) -> (TextQueue, ScopedJoinHandle<'scope, TextHits>) {
    let (jobs, rx) = sync_channel::<(String, Vec<u8>)>(QUEUE);
    let (spare_tx, spare): (Sender<Vec<u8>>, _) = channel();
    let handle = scope.spawn(move || {
        let mut hits = TextHits::default();
        for (path, mut text) in rx {
            search.search(&path, &text, &mut hits);
            // Large buffers are not kept around between files.
            if text.capacity() <= 1 << 20 {
                text.clear();
                let _ = spare_tx.send(text);
            }
        }
        hits
    });
    (TextQueue { jobs, spare }, handle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worker_finds_what_an_inline_search_finds_in_the_same_order() {
        let search = Arc::new(TextSearch {
            secrets: Some(SecretScanner::default_rules()),
            content: Some(
                SecretScanner::new(
                    &[super::super::secrets::SecretRule {
                        name: "needle".into(),
                        regex: "needle".into(),
                    }],
                    &[],
                )
                .unwrap(),
            ),
        });
        let files: Vec<(String, Vec<u8>)> = (0..50)
            .map(|i| {
                let body = match i % 3 {
                    0 => format!("x = 1\naws_access_key_id = AKIAZZZZZZZZZZZZZZ{i:02}\n"),
                    1 => format!("needle {i}\n"),
                    _ => "nothing here\n".to_string(),
                };
                (format!("/f{i}"), body.into_bytes())
            })
            .collect();
        let mut inline = TextHits::default();
        for (p, t) in &files {
            search.search(p, t, &mut inline);
        }
        let threaded = std::thread::scope(|s| {
            let (queue, worker) = spawn(s, search.clone());
            for (p, t) in &files {
                let mut buf = t.clone();
                assert!(queue.submit(p, &mut buf));
                // What comes back is an empty buffer, never another file's bytes.
                assert!(buf.is_empty());
            }
            drop(queue);
            worker.join().unwrap()
        });
        assert_eq!(inline.secrets.len(), 17);
        assert_eq!(inline.content.len(), 17);
        assert_eq!(threaded.secrets, inline.secrets);
        assert_eq!(threaded.content, inline.content);
    }
}
