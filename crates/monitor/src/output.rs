//! Where the process's output goes: the json-file log and every attached client.

use std::fs::File;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::Path;

use anyhow::{Context, Result};
use berth_monitor::protocol::{frame_header, STREAM_STDERR, STREAM_STDOUT};

/// Docker's json-file driver splits a line longer than this into partial messages.
const MAX_LINE: usize = 16 * 1024;

/// Output queued for a slow attached client beyond which the monitor stops reading the
/// process's output (the process then blocks on a full pipe, as with Docker's attach).
pub const MAX_PENDING: usize = 256 * 1024;

/// The json-file log: one JSON object per line of output, `log` holding the line with its
/// newline; a line not yet ended waits for its end (or the exit, or MAX_LINE).
pub struct JsonLog {
    file: File,
    partial: [Vec<u8>; 2],
}

impl JsonLog {
    pub fn open(path: &Path) -> Result<JsonLog> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .open(path)
            .with_context(|| format!("cannot open the log {}", path.display()))?;
        Ok(JsonLog {
            file,
            partial: [Vec::new(), Vec::new()],
        })
    }

    pub fn write(&mut self, stream: u8, mut data: &[u8]) {
        let slot = usize::from(stream == STREAM_STDERR);
        while !data.is_empty() {
            let room = MAX_LINE - self.partial[slot].len();
            let take = match data.iter().position(|&b| b == b'\n') {
                Some(i) if i < room => i + 1,
                _ => data.len().min(room),
            };
            self.partial[slot].extend_from_slice(&data[..take]);
            data = &data[take..];
            let buffered = &self.partial[slot];
            if buffered.ends_with(b"\n") || buffered.len() >= MAX_LINE {
                self.emit(slot);
            }
        }
    }

    /// At exit: lines that never got their newline.
    pub fn flush_partial(&mut self) {
        for slot in 0..2 {
            if !self.partial[slot].is_empty() {
                self.emit(slot);
            }
        }
    }

    fn emit(&mut self, slot: usize) {
        #[derive(serde::Serialize)]
        struct Line<'a> {
            log: &'a str,
            stream: &'a str,
            time: String,
        }
        let bytes = std::mem::take(&mut self.partial[slot]);
        let line = Line {
            log: &String::from_utf8_lossy(&bytes),
            stream: if slot == 1 { "stderr" } else { "stdout" },
            time: humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string(),
        };
        if let Ok(mut json) = serde_json::to_vec(&line) {
            json.push(b'\n');
            // A full disk loses log lines, not the container: nothing to report them to.
            let _ = self.file.write_all(&json);
        }
        // Keep the buffer's allocation for the next line, unless a long one grew it.
        let mut bytes = bytes;
        bytes.clear();
        if bytes.capacity() <= 4096 {
            self.partial[slot] = bytes;
        }
    }
}

/// One attached client: a SOCK_STREAM socket (nonblocking) and what is queued for it.
pub struct Attach {
    pub sock: OwnedFd,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    /// Still reading its input (false after its EOF).
    pub reading: bool,
    pub pending: Vec<u8>,
    /// Gone (write error or hang-up): removed after this round.
    pub dead: bool,
}

impl Attach {
    pub fn new(sock: OwnedFd, stdin: bool, stdout: bool, stderr: bool) -> Attach {
        Attach {
            sock,
            stdin,
            stdout,
            stderr,
            reading: true,
            pending: Vec::new(),
            dead: false,
        }
    }

    /// Queue output of `stream`, framed unless `tty` (a pty's output is one stream, which
    /// a client asking for either gets), and send what the socket takes now.
    pub fn send(&mut self, tty: bool, stream: u8, data: &[u8]) {
        if self.dead {
            return;
        }
        if tty {
            if !(self.stdout || self.stderr) {
                return;
            }
        } else {
            let wanted = if stream == STREAM_STDOUT {
                self.stdout
            } else {
                self.stderr
            };
            if !wanted {
                return;
            }
            self.pending
                .extend_from_slice(&frame_header(stream, data.len()));
        }
        self.pending.extend_from_slice(data);
        self.flush();
    }

    /// Write what is queued until the socket is full.
    pub fn flush(&mut self) {
        let mut sent = 0;
        while sent < self.pending.len() {
            match nix::sys::socket::send(
                std::os::fd::AsRawFd::as_raw_fd(&self.sock),
                &self.pending[sent..],
                nix::sys::socket::MsgFlags::MSG_NOSIGNAL,
            ) {
                Ok(n) => sent += n,
                Err(nix::Error::EINTR) => {}
                Err(nix::Error::EAGAIN) => break,
                Err(_) => {
                    self.dead = true;
                    break;
                }
            }
        }
        self.pending.drain(..sent);
        if self.pending.is_empty() && self.pending.capacity() > 64 * 1024 {
            self.pending = Vec::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(path: &Path) -> Vec<serde_json::Value> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn log_lines_split_at_newlines_and_partial_lines_wait() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let mut log = JsonLog::open(&path).unwrap();
        log.write(STREAM_STDOUT, b"a\nb");
        log.write(STREAM_STDERR, b"err\n");
        log.write(STREAM_STDOUT, b"c\nd");
        log.flush_partial();
        let got: Vec<(String, String)> = lines(&path)
            .iter()
            .map(|v| {
                (
                    v["log"].as_str().unwrap().to_string(),
                    v["stream"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let want = [
            ("a\n", "stdout"),
            ("err\n", "stderr"),
            ("bc\n", "stdout"),
            ("d", "stdout"),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        assert_eq!(got, want);
        let time = lines(&path)[0]["time"].as_str().unwrap().to_string();
        assert!(time.ends_with('Z') && time.len() == 30, "{time}");
    }

    #[test]
    fn long_lines_are_split_at_16k() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let mut log = JsonLog::open(&path).unwrap();
        log.write(STREAM_STDOUT, &vec![b'x'; MAX_LINE + 10]);
        log.write(STREAM_STDOUT, b"\n");
        let got = lines(&path);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0]["log"].as_str().unwrap().len(), MAX_LINE);
        assert_eq!(got[1]["log"].as_str().unwrap(), "xxxxxxxxxx\n");
    }
}
