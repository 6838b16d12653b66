//! `docker logs`: reading the json-file log the monitor writes (one
//! `{"log":"...","stream":"stdout|stderr","time":"<RFC3339Nano>"}` per line) back as the API
//! streams it — Docker's multiplexed frames, or raw bytes for a tty container — with tail,
//! since/until, timestamps, and follow until the container stops.
//!
//! The reader is blocking (berthd runs it on the blocking pool). Following waits on inotify
//! on the container's directory: the log's writes and every save of the container record
//! (an atomic rename) wake it, so it neither polls nor misses the stop.

use std::fs::File;
use std::io::{BufRead, BufReader, ErrorKind, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::Context;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use serde::Deserialize;
use tokio::sync::watch;

use crate::container::{State, Status};
use crate::error::Result;
use crate::Engine;

/// What `GET /containers/{id}/logs` asks for.
#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    pub stdout: bool,
    pub stderr: bool,
    pub follow: bool,
    /// The last N lines only; `None` is "all".
    pub tail: Option<usize>,
    pub since: Option<SystemTime>,
    pub until: Option<SystemTime>,
    /// Prefix each line with its time (RFC 3339, nanoseconds) and a space.
    pub timestamps: bool,
}

/// Docker's stream numbers in a multiplexed frame header.
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
/// About how much output one `next_chunk` gathers before handing it over.
const CHUNK: usize = 64 * 1024;
/// Block size for finding the tail from the end of a big log.
const TAIL_BLOCK: u64 = 64 * 1024;
/// A wake-up without any inotify event, in case a state change was not saved to disk (a
/// failed save still updates the in-memory state that ends the follow).
const FOLLOW_RECHECK_MS: u16 = 1000;

#[derive(Deserialize)]
struct Entry {
    log: String,
    stream: String,
    time: String,
}

/// The container's log from where the options say, as the API sends it. Iterate with
/// [`LogStream::next_chunk`] or copy it all with [`LogStream::copy_to`].
pub struct LogStream {
    /// The container has a tty: raw bytes, not frames (the client picks the format from
    /// `Config.Tty`, and the daemon the Content-Type).
    pub tty: bool,
    opts: LogOptions,
    path: PathBuf,
    reader: Option<BufReader<File>>,
    /// Bytes of a line the monitor has not finished writing.
    partial: Vec<u8>,
    follow: Option<Follow>,
    done: bool,
}

/// What following needs: the container's state and a wake-up for changes in its directory.
struct Follow {
    state: watch::Receiver<State>,
    inotify: OwnedFd,
    /// An eventfd a task on the engine's runtime signals on every state change: the state
    /// is sent after the record is saved, so the directory's events alone can come too
    /// early to see it.
    state_changed: Option<(OwnedFd, tokio::task::JoinHandle<()>)>,
}

impl Drop for Follow {
    fn drop(&mut self) {
        if let Some((_, task)) = &self.state_changed {
            task.abort();
        }
    }
}

impl Engine {
    /// The log of container `name_or_id` as `opts` select it. Following only happens while
    /// the container is running (as with Docker, `logs -f` of a stopped container ends after
    /// the last line); it ends once the container stops and the rest of its log is read, or
    /// when the container is removed.
    pub fn container_logs(&self, name_or_id: &str, opts: LogOptions) -> Result<LogStream> {
        let handle = self.containers.get(name_or_id)?;
        let tty = handle.lock().config.tty.unwrap_or(false);
        // Subscribe and watch before opening: a change between the two cannot be missed.
        let state = handle.subscribe();
        let running = is_running(&state.borrow());
        let follow = if opts.follow && running {
            Some(Follow {
                inotify: watch_dir(&handle.paths.dir)?,
                state_changed: signal_changes(&state)?,
                state,
            })
        } else {
            None
        };
        let path = handle.paths.log();
        let reader = open_log(&path, opts.tail)?;
        Ok(LogStream {
            tty,
            opts,
            path,
            reader,
            partial: Vec::new(),
            follow,
            done: false,
        })
    }
}

fn is_running(state: &State) -> bool {
    matches!(
        state.status,
        Status::Running | Status::Paused | Status::Restarting
    )
}

/// The log positioned at the first line to show; `None` when the container never wrote one.
fn open_log(path: &Path, tail: Option<usize>) -> anyhow::Result<Option<BufReader<File>>> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(anyhow::Error::new(e).context(format!("cannot open {}", path.display())))
        }
    };
    if let Some(lines) = tail {
        let start =
            tail_offset(&file, lines).with_context(|| format!("cannot read {}", path.display()))?;
        file.seek(SeekFrom::Start(start))?;
    }
    Ok(Some(BufReader::new(file)))
}

/// Where the last `lines` lines of `file` start, read backwards block by block so that a
/// big log costs only its tail. A last line without its newline yet counts as a line.
pub fn tail_offset(file: &File, lines: usize) -> std::io::Result<u64> {
    let len = file.metadata()?.len();
    if lines == 0 {
        return Ok(len);
    }
    let mut end = len;
    let mut seen = 0;
    let mut block = vec![0u8; TAIL_BLOCK as usize];
    // The newline that ends the last line does not start a line.
    let mut skip_last = true;
    while end > 0 {
        let start = end.saturating_sub(TAIL_BLOCK);
        let buf = &mut block[..(end - start) as usize];
        file.read_exact_at(buf, start)?;
        for (i, &b) in buf.iter().enumerate().rev() {
            if b != b'\n' {
                skip_last = false;
                continue;
            }
            if std::mem::take(&mut skip_last) {
                continue;
            }
            seen += 1;
            if seen == lines {
                return Ok(start + i as u64 + 1);
            }
        }
        end = start;
    }
    Ok(0)
}

/// An inotify instance watching `dir` for writes, renames into it (record saves) and its
/// removal.
fn watch_dir(dir: &Path) -> Result<OwnedFd> {
    // SAFETY: inotify_init1 takes flags only; the result is checked before use.
    let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
    if fd < 0 {
        return Err(anyhow::Error::new(std::io::Error::last_os_error())
            .context("cannot create an inotify instance")
            .into());
    }
    // SAFETY: `fd` is a new descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let path = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())
        .context("container directory path has a NUL byte")?;
    let mask = libc::IN_MODIFY
        | libc::IN_MOVED_TO
        | libc::IN_CREATE
        | libc::IN_CLOSE_WRITE
        | libc::IN_DELETE
        | libc::IN_DELETE_SELF;
    // SAFETY: `path` is NUL-terminated and outlives the call; `fd` is an inotify instance.
    if unsafe { libc::inotify_add_watch(fd.as_raw_fd(), path.as_ptr(), mask) } < 0 {
        return Err(anyhow::Error::new(std::io::Error::last_os_error())
            .context(format!("cannot watch {}", dir.display()))
            .into());
    }
    Ok(fd)
}

/// An eventfd written on every change of `state` (and once when it closes), by a task on
/// the current tokio runtime; `None` outside a runtime (the periodic recheck then notices
/// the stop).
fn signal_changes(
    state: &watch::Receiver<State>,
) -> Result<Option<(OwnedFd, tokio::task::JoinHandle<()>)>> {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return Ok(None);
    };
    // SAFETY: eventfd takes an initial value and flags; the result is checked.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd < 0 {
        return Err(anyhow::Error::new(std::io::Error::last_os_error())
            .context("cannot create an eventfd")
            .into());
    }
    // SAFETY: `fd` is a new descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let writer = fd.try_clone().context("cannot duplicate an eventfd")?;
    let mut state = state.clone();
    let task = runtime.spawn(async move {
        loop {
            let closed = state.changed().await.is_err();
            let one = 1u64.to_ne_bytes();
            // SAFETY: writes 8 bytes from a local array to an eventfd we own.
            unsafe { libc::write(writer.as_raw_fd(), one.as_ptr().cast(), one.len()) };
            if closed {
                return;
            }
        }
    });
    Ok(Some((fd, task)))
}

/// Read and drop whatever a nonblocking descriptor has (inotify events, an eventfd count).
fn drain(fd: &OwnedFd) {
    let mut buf = [0u8; 4096];
    // SAFETY: reads into a local buffer of the given size; nonblocking, so EAGAIN ends it.
    while unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
}

impl Follow {
    /// Gone (removed) or no longer running.
    fn stopped(&self) -> bool {
        self.state.has_changed().is_err() || !is_running(&self.state.borrow())
    }

    /// Sleep until something in the container's directory or its state changes (or the
    /// recheck time passes).
    fn wait(&self) -> anyhow::Result<()> {
        let mut fds = vec![PollFd::new(self.inotify.as_fd(), PollFlags::POLLIN)];
        if let Some((fd, _)) = &self.state_changed {
            fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::from(FOLLOW_RECHECK_MS)) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(anyhow::Error::new(e).context("cannot wait for the log")),
        }
        // The events themselves do not matter: the caller looks at the file and the state.
        drain(&self.inotify);
        if let Some((fd, _)) = &self.state_changed {
            drain(fd);
        }
        Ok(())
    }
}

/// One line of the log, decoded; `None` for a line that is not a log entry.
fn decode(line: &[u8]) -> Option<(u8, SystemTime, String)> {
    let entry: Entry = serde_json::from_slice(line).ok()?;
    let stream = match entry.stream.as_str() {
        "stdout" => STDOUT,
        "stderr" => STDERR,
        _ => return None,
    };
    let time = crate::time::parse_timestamp(&entry.time)?;
    Some((stream, time, entry.log))
}

impl LogStream {
    /// The next piece of output, blocking while following; `None` at the end.
    pub fn next_chunk(&mut self) -> anyhow::Result<Option<Vec<u8>>> {
        self.next_chunk_or_idle(&mut || Ok(()))
    }

    /// `next_chunk`, calling `idle` each time a follow wakes up without output (at least
    /// once a second): its error ends the stream, which is how a follower notices that
    /// its client went away while the container is quiet.
    pub fn next_chunk_or_idle(
        &mut self,
        idle: &mut dyn FnMut() -> std::io::Result<()>,
    ) -> anyhow::Result<Option<Vec<u8>>> {
        let mut out = Vec::new();
        while !self.done {
            let at_end = self.read_lines(&mut out)?;
            if !out.is_empty() {
                return Ok(Some(out));
            }
            if !at_end {
                continue;
            }
            match &self.follow {
                None => self.done = true,
                Some(follow) if follow.stopped() || self.removed() => {
                    // Whatever the monitor wrote before the exit was recorded.
                    self.read_lines(&mut out)?;
                    self.done = true;
                }
                Some(follow) => {
                    follow.wait()?;
                    idle()?;
                    if self.reader.is_none() {
                        self.reopen()?;
                    }
                }
            }
        }
        Ok((!out.is_empty()).then_some(out))
    }

    /// Write the whole stream to `out`, flushing after each chunk (a follower sees lines as
    /// they come). While a follow waits, `out` is flushed too: a writer whose reader is
    /// gone should fail its flush, which ends the follow.
    pub fn copy_to(mut self, out: &mut dyn Write) -> anyhow::Result<()> {
        loop {
            let chunk = self.next_chunk_or_idle(&mut || out.flush())?;
            let Some(chunk) = chunk else { return Ok(()) };
            out.write_all(&chunk)?;
            out.flush()?;
        }
    }

    /// The container's directory is being deleted (its log is unlinked): `rm` is under way,
    /// and its state channel closes as soon as the last holder lets go.
    fn removed(&self) -> bool {
        match &self.reader {
            Some(reader) => reader.get_ref().metadata().is_ok_and(|m| m.nlink() == 0),
            None => !self.path.parent().is_some_and(Path::exists),
        }
    }

    /// The log appeared after following began (the container had not written yet).
    fn reopen(&mut self) -> anyhow::Result<()> {
        self.reader = open_log(&self.path, None)?;
        Ok(())
    }

    /// Append the complete lines available now to `out` (up to about CHUNK bytes); true
    /// when the end of what is written so far was reached (or the until time passed).
    fn read_lines(&mut self, out: &mut Vec<u8>) -> anyhow::Result<bool> {
        let Some(reader) = self.reader.as_mut() else {
            return Ok(true);
        };
        while out.len() < CHUNK {
            let n = reader
                .read_until(b'\n', &mut self.partial)
                .context("cannot read the log")?;
            if n == 0 || !self.partial.ends_with(b"\n") {
                // At the end; a line still being written waits in `partial`.
                return Ok(true);
            }
            let line = std::mem::take(&mut self.partial);
            let Some((stream, time, text)) = decode(&line) else {
                continue;
            };
            if self.opts.until.is_some_and(|until| time > until) {
                self.done = true;
                return Ok(true);
            }
            if self.opts.since.is_some_and(|since| time < since) {
                continue;
            }
            let wanted = if stream == STDOUT {
                self.opts.stdout
            } else {
                self.opts.stderr
            };
            if wanted {
                render(out, self.tty, self.opts.timestamps, stream, time, &text);
            }
        }
        Ok(false)
    }
}

/// One log line as the API sends it: a frame header unless `tty`, then the time if asked.
fn render(
    out: &mut Vec<u8>,
    tty: bool,
    timestamps: bool,
    stream: u8,
    time: SystemTime,
    text: &str,
) {
    let stamp = if timestamps {
        format!("{} ", crate::time::rfc3339_nanos(time))
    } else {
        String::new()
    };
    if !tty {
        let len = (stamp.len() + text.len()) as u32;
        out.extend_from_slice(&[stream, 0, 0, 0]);
        out.extend_from_slice(&len.to_be_bytes());
    }
    out.extend_from_slice(stamp.as_bytes());
    out.extend_from_slice(text.as_bytes());
}
