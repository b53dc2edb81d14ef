//! Read-ahead on a second thread: the decompressor fills buffers while the tar parser
//! and the detectors consume the previous ones, so that a layer's inflation (about a
//! quarter of indexing) runs alongside the rest. At most `depth` buffers are in flight,
//! so memory stays bounded whatever the layer's size.

use std::io::{self, Read};
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender};
use std::thread::Scope;

/// A filled buffer and how many of its bytes are data, or the reader's error.
type Filled = io::Result<(Vec<u8>, usize)>;

/// The consuming end: a [`Read`] over what the thread produced, in order.
pub(crate) struct ReadAhead {
    filled: Receiver<Filled>,
    /// Emptied buffers go back to the thread to be filled again.
    empty: Sender<Vec<u8>>,
    current: Option<Vec<u8>>,
    len: usize,
    pos: usize,
    /// The source's error, repeated on every later read; or the end of the data.
    ended: Option<Option<(io::ErrorKind, String)>>,
}

/// Read `src` on a thread of `scope`, `buf_size` bytes at a time, at most `depth` buffers
/// ahead of the consumer. The thread stops at the end of `src`, at its first error, or
/// when the [`ReadAhead`] is dropped.
pub(crate) fn spawn<'scope, R: Read + Send + 'scope>(
    scope: &'scope Scope<'scope, '_>,
    mut src: R,
    buf_size: usize,
    depth: usize,
) -> ReadAhead {
    let (filled_tx, filled) = sync_channel::<Filled>(depth);
    let (empty, empty_rx) = channel::<Vec<u8>>();
    scope.spawn(move || loop {
        let mut buf = empty_rx.try_recv().unwrap_or_else(|_| vec![0; buf_size]);
        let (n, error) = fill(&mut src, &mut buf);
        // The bytes read before an error go first: the consumer sees them, then it.
        if n > 0 && filled_tx.send(Ok((buf, n))).is_err() {
            return;
        }
        if let Some(e) = error {
            let _ = filled_tx.send(Err(e));
            return;
        }
        if n < buf_size {
            return;
        }
    });
    ReadAhead {
        filled,
        empty,
        current: None,
        len: 0,
        pos: 0,
        ended: None,
    }
}

/// Fill `buf` from `r` as far as it goes: the number of bytes read, and the error that
/// stopped it early, if one did.
pub(crate) fn fill(r: &mut impl Read, buf: &mut [u8]) -> (usize, Option<io::Error>) {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (n, Some(e)),
        }
    }
    (n, None)
}

impl Read for ReadAhead {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some(cur) = &self.current {
                if self.pos < self.len {
                    let k = out.len().min(self.len - self.pos);
                    out[..k].copy_from_slice(&cur[self.pos..self.pos + k]);
                    self.pos += k;
                    return Ok(k);
                }
            }
            match &self.ended {
                Some(None) => return Ok(0),
                Some(Some((kind, msg))) => return Err(io::Error::new(*kind, msg.clone())),
                None => {}
            }
            if let Some(done) = self.current.take() {
                let _ = self.empty.send(done);
            }
            match self.filled.recv() {
                Ok(Ok((buf, n))) => {
                    self.current = Some(buf);
                    self.len = n;
                    self.pos = 0;
                }
                Ok(Err(e)) => self.ended = Some(Some((e.kind(), e.to_string()))),
                Err(_) => self.ended = Some(None),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that hands out `data` in odd-sized pieces, then fails if asked to.
    struct Pieces {
        data: Vec<u8>,
        at: usize,
        fail_at_end: bool,
    }

    impl Read for Pieces {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            if self.at == self.data.len() {
                return if self.fail_at_end {
                    Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "corrupt deflate stream",
                    ))
                } else {
                    Ok(0)
                };
            }
            let k = out.len().min(7_777).min(self.data.len() - self.at);
            out[..k].copy_from_slice(&self.data[self.at..self.at + k]);
            self.at += k;
            Ok(k)
        }
    }

    fn data(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn passes_every_byte_in_order() {
        for n in [0, 1, 4096, 4097, 100_000] {
            let src = Pieces {
                data: data(n),
                at: 0,
                fail_at_end: false,
            };
            let got = std::thread::scope(|s| {
                let mut r = spawn(s, src, 4096, 2);
                let mut got = Vec::new();
                r.read_to_end(&mut got).unwrap();
                // The end is sticky.
                assert_eq!(r.read(&mut [0; 8]).unwrap(), 0);
                got
            });
            assert_eq!(got, data(n), "{n} bytes");
        }
    }

    #[test]
    fn the_sources_error_arrives_after_its_data_and_stays() {
        let src = Pieces {
            data: data(10_000),
            at: 0,
            fail_at_end: true,
        };
        std::thread::scope(|s| {
            let mut r = spawn(s, src, 4096, 2);
            let mut got = vec![0; 10_000];
            r.read_exact(&mut got).unwrap();
            assert_eq!(got, data(10_000));
            for _ in 0..2 {
                let e = r.read(&mut [0; 8]).unwrap_err();
                assert_eq!(e.kind(), io::ErrorKind::InvalidData);
                assert!(e.to_string().contains("corrupt deflate"));
            }
        });
    }

    #[test]
    fn dropping_the_reader_stops_the_thread() {
        // An endless source: the scope only ends if the thread notices the drop.
        struct Endless;
        impl Read for Endless {
            fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
                out.fill(1);
                Ok(out.len())
            }
        }
        std::thread::scope(|s| {
            let mut r = spawn(s, Endless, 1024, 2);
            let mut first = [0; 10];
            r.read_exact(&mut first).unwrap();
            assert_eq!(first, [1; 10]);
        });
    }
}
