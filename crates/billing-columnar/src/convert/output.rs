//! Each output file is written by a thread of its own: the encoders hand their bytes over in
//! pieces and go on. Written on the encoder's thread, a row group's few megabytes held it
//! 10 ms or more in the file system (page cache, writeback) while the parser waited for it
//! and a core idled (measured with scheduler traces: ~10 ms a row group, in each view).

use std::io::{self, Write};
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender};
use std::thread::{Scope, ScopedJoinHandle};

/// Bytes handed to the writer thread at a time.
const PIECE: usize = 512 << 10;
/// Pieces queued for the writer thread before the encoder waits for it: a row group of either
/// view (a few megabytes) is handed over without waiting; the memory bound is this times
/// [`PIECE`] per file.
const QUEUED: usize = 8;

/// The encoder's end: a `Write` that queues its bytes for the writer thread.
pub(super) struct Pipe {
    tx: SyncSender<Vec<u8>>,
    /// Emptied pieces coming back, reused.
    spare: Receiver<Vec<u8>>,
    buf: Vec<u8>,
    /// Bytes written so far (the file's size once the conversion succeeds).
    written: u64,
}

/// Starts the thread writing `out`: the pipe to write to, and the thread, which answers with
/// the first error of writing or flushing `out`.
pub(super) fn spawn<'s, W: Write + Send + 's>(
    s: &'s Scope<'s, '_>,
    out: W,
) -> (Pipe, ScopedJoinHandle<'s, io::Result<()>>) {
    let (tx, rx) = sync_channel(QUEUED);
    let (back_tx, back_rx) = channel();
    let handle = s.spawn(move || drain(out, rx, back_tx));
    let pipe = Pipe {
        tx,
        spare: back_rx,
        buf: Vec::with_capacity(PIECE),
        written: 0,
    };
    (pipe, handle)
}

/// The writer thread: writes each piece in order, then flushes.
fn drain<W: Write>(mut out: W, rx: Receiver<Vec<u8>>, back: Sender<Vec<u8>>) -> io::Result<()> {
    for mut piece in rx {
        out.write_all(&piece)?;
        piece.clear();
        let _ = back.send(piece);
    }
    out.flush()
}

impl Pipe {
    pub(super) fn written(&self) -> u64 {
        self.written
    }

    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let next = self
            .spare
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(PIECE));
        let full = std::mem::replace(&mut self.buf, next);
        // A closed channel means the writer thread stopped on an error, which joining it
        // reports.
        self.tx
            .send(full)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the output's writer stopped"))
    }
}

impl Write for Pipe {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        // A full piece is sent at once, so there is always room for a byte.
        let n = data.len().min(PIECE - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == PIECE {
            self.send()?;
        }
        self.written += n as u64;
        Ok(n)
    }

    /// Hands over what is buffered. The file itself is flushed by the writer thread once the
    /// pipe is dropped (bytes written after the last flush are dropped with it: a conversion
    /// flushes only when it succeeds), and its error comes from joining that thread.
    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_arrive_whole_and_in_order() {
        // Writes of every size around a piece, some larger than the queue holds at once.
        let data: Vec<u8> = (0..6 * QUEUED * PIECE)
            .map(|i| (i * 7 + i / 251) as u8)
            .collect();
        let mut out = Vec::new();
        std::thread::scope(|s| {
            let (mut pipe, writer) = spawn(s, &mut out);
            let mut at = 0;
            for n in [0, 1, PIECE - 1, PIECE, PIECE + 1, 3 * QUEUED * PIECE]
                .into_iter()
                .cycle()
            {
                let end = (at + n).min(data.len());
                pipe.write_all(&data[at..end]).unwrap();
                at = end;
                if at == data.len() {
                    break;
                }
            }
            pipe.flush().unwrap();
            drop(pipe);
            writer.join().unwrap().unwrap();
        });
        assert!(
            out == data,
            "{} of {} bytes, or out of order",
            out.len(),
            data.len()
        );
    }
}
