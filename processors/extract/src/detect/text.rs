//! The text searches (secret rules and content-search regexes) of a layer's text files,
//! on a worker thread of their own: the tar parser hands each file's bytes over and goes
//! on with the next entry, and buffers come back to it for reuse. Hits keep the order in
//! which the files were handed over, so the index is the same as a search done inline.

use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{Scope, ScopedJoinHandle};

use vigil_contracts::SecretHit;

use super::secrets::SecretScanner;

/// Most batches waiting for the worker.
const QUEUE: usize = 4;
/// A batch goes to the worker once it holds this many bytes or files: handing files over
/// one by one would cost a thread wake-up each (thousands per layer).
const BATCH_BYTES: usize = 256 * 1024;
const BATCH_FILES: usize = 64;
/// Most bytes of text handed over and not searched yet. A batch that would pass it waits
/// until the worker has caught up (one larger than it, until the worker is idle), so a
/// large `secret_max_file_bytes` costs about twice the largest file, as a search done
/// inline would cost once, not once per queued batch.
const IN_FLIGHT_BYTES: usize = 1 << 20;

/// Largest buffer the worker hands back for reuse (most source files are smaller); larger
/// ones are freed, so buffers in circulation hold at most this much each.
const RECYCLE_MAX_BYTES: usize = 16 * 1024;

/// Bytes handed over and not searched yet; `None` once the worker has ended.
type InFlight = Arc<(Mutex<Option<usize>>, Condvar)>;

/// Marks the worker's end (also when it panics), waking a waiting [`TextQueue`].
struct Ended(InFlight);

impl Drop for Ended {
    fn drop(&mut self) {
        if let Ok(mut n) = self.0 .0.lock() {
            *n = None;
        }
        self.0 .1.notify_all();
    }
}

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

type Batch = Vec<(String, Vec<u8>)>;

/// The handing-over end, held by the file scanner. Dropping it hands over what is
/// still batched and lets the worker end.
pub struct TextQueue {
    jobs: SyncSender<Batch>,
    batch: Batch,
    batch_bytes: usize,
    /// Emptied buffers, back from the worker.
    spare: Receiver<Vec<Vec<u8>>>,
    free: Vec<Vec<u8>>,
    in_flight: InFlight,
}

impl TextQueue {
    /// Count `bytes` as handed over, first waiting while they would pass
    /// [`IN_FLIGHT_BYTES`] (returns at once if the worker has ended).
    fn reserve(&self, bytes: usize) {
        let (n, caught_up) = &*self.in_flight;
        let Ok(mut n) = n.lock() else {
            return;
        };
        while let Some(now) = *n {
            if now == 0 || now + bytes <= IN_FLIGHT_BYTES {
                *n = Some(now + bytes);
                return;
            }
            n = match caught_up.wait(n) {
                Ok(n) => n,
                Err(_) => return,
            };
        }
    }

    /// Hand the batch over; the batch back when the worker is gone.
    fn send_batch(&mut self) -> Result<(), Batch> {
        let bytes = std::mem::take(&mut self.batch_bytes);
        self.reserve(bytes);
        self.jobs
            .send(std::mem::take(&mut self.batch))
            .map_err(|back| back.0)
    }

    /// Hand `text` (a file's whole content) over; it is replaced by an emptied buffer
    /// from an earlier file when one has come back. `false` when the worker is gone:
    /// `text` is left as it was.
    pub fn submit(&mut self, path: &str, text: &mut Vec<u8>) -> bool {
        if self.free.is_empty() {
            if let Ok(back) = self.spare.try_recv() {
                self.free = back;
            }
        }
        let job = std::mem::replace(text, self.free.pop().unwrap_or_default());
        self.batch_bytes += job.len();
        self.batch.push((path.to_string(), job));
        if self.batch_bytes < BATCH_BYTES && self.batch.len() < BATCH_FILES {
            return true;
        }
        match self.send_batch() {
            Ok(()) => true,
            Err(mut lost) => {
                // The worker is gone: this file stays with the caller; the rest of the
                // batch is lost with the worker's hits (it panicked).
                *text = lost.pop().map(|(_, t)| t).unwrap_or_default();
                false
            }
        }
    }
}

impl Drop for TextQueue {
    fn drop(&mut self) {
        if !self.batch.is_empty() {
            let _ = self.send_batch();
        }
    }
}

/// Start the worker on `scope`. Dropping the [`TextQueue`] ends it; joining the handle
/// gives the hits.
pub fn spawn<'scope>(
    scope: &'scope Scope<'scope, '_>,
    search: Arc<TextSearch>,
) -> (TextQueue, ScopedJoinHandle<'scope, TextHits>) {
    let (jobs, rx) = sync_channel::<Batch>(QUEUE);
    let (spare_tx, spare): (Sender<Vec<Vec<u8>>>, _) = channel();
    let in_flight: InFlight = Arc::new((Mutex::new(Some(0)), Condvar::new()));
    let ended = Ended(in_flight.clone());
    let handle = scope.spawn(move || {
        let ended = ended;
        let mut hits = TextHits::default();
        for batch in rx {
            let bytes: usize = batch.iter().map(|(_, t)| t.len()).sum();
            let mut emptied = Vec::with_capacity(batch.len());
            for (path, mut text) in batch {
                search.search(&path, &text, &mut hits);
                // Only small buffers go back for reuse: a buffer keeps the capacity of
                // the largest file it held, and hundreds are in circulation.
                if text.capacity() <= RECYCLE_MAX_BYTES {
                    text.clear();
                    emptied.push(text);
                }
            }
            let _ = spare_tx.send(emptied);
            let (n, caught_up) = &*ended.0;
            if let Ok(mut n) = n.lock() {
                if let Some(now) = n.as_mut() {
                    *now = now.saturating_sub(bytes);
                }
            }
            caught_up.notify_all();
        }
        hits
    });
    (
        TextQueue {
            jobs,
            batch: Vec::new(),
            batch_bytes: 0,
            spare,
            free: Vec::new(),
            in_flight,
        },
        handle,
    )
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
        let files: Vec<(String, Vec<u8>)> = (0..500)
            .map(|i| {
                let body = match i % 3 {
                    0 => format!(
                        "x = 1\naws_access_key_id = AKIAZZZZZZZZZZZZZZ{:02}\n",
                        i % 100
                    ),
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
            let (mut queue, worker) = spawn(s, search.clone());
            for (p, t) in &files {
                let mut buf = t.clone();
                assert!(queue.submit(p, &mut buf));
                // What comes back is an empty buffer, never another file's bytes.
                assert!(buf.is_empty());
            }
            drop(queue);
            worker.join().unwrap()
        });
        assert_eq!(inline.secrets.len(), 167);
        assert_eq!(inline.content.len(), 167);
        assert_eq!(threaded.secrets, inline.secrets);
        assert_eq!(threaded.content, inline.content);
    }

    #[test]
    fn files_larger_than_the_in_flight_budget_wait_their_turn_and_keep_order() {
        let search = Arc::new(TextSearch {
            secrets: Some(SecretScanner::default_rules()),
            content: None,
        });
        // Each file alone passes the budget: each waits until the worker is idle.
        let big = |i: usize| {
            let mut t = vec![b'x'; IN_FLIGHT_BYTES + 10];
            t.extend_from_slice(
                format!("\naws_access_key_id = AKIAZZZZZZZZZZZZZZ{i:02}\n").as_bytes(),
            );
            t
        };
        let hits = std::thread::scope(|s| {
            let (mut queue, worker) = spawn(s, search.clone());
            for i in 0..6 {
                let mut t = big(i);
                assert!(queue.submit(&format!("/big{i}"), &mut t));
            }
            drop(queue);
            worker.join().unwrap()
        });
        let paths: Vec<&str> = hits.secrets.iter().map(|h| h.path.as_str()).collect();
        assert_eq!(
            paths,
            ["/big0", "/big1", "/big2", "/big3", "/big4", "/big5"]
        );
        assert!(hits.secrets.iter().all(|h| h.line == 2));
    }
}
