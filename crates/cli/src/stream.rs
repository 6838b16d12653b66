//! Output streams from the daemon: Docker's multiplexed frames and JSON progress messages.

use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::io::{self, BufRead, Read, Write};

/// Copies a multiplexed stream (`[type,0,0,0,len BE u32] payload` frames) to stdout (type 0/1) and stderr (type 2).
/// A type-3 frame is an error from the daemon and ends the copy with that error.
pub fn demux(r: &mut impl Read, stdout: &mut dyn Write, stderr: &mut dyn Write) -> Result<()> {
    let mut header = [0u8; 8];
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        if !read_full_or_eof(r, &mut header)? {
            return Ok(());
        }
        let mut left = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
        let kind = header[0];
        let mut syserr = Vec::new();
        while left > 0 {
            let want = left.min(buf.len());
            r.read_exact(&mut buf[..want])
                .context("reading a stream frame")?;
            left -= want;
            match kind {
                0 | 1 => stdout.write_all(&buf[..want])?,
                2 => stderr.write_all(&buf[..want])?,
                3 => syserr.extend_from_slice(&buf[..want]),
                other => bail!("unexpected stream type {other} in the multiplexed stream"),
            }
        }
        if kind == 3 {
            bail!("{}", String::from_utf8_lossy(&syserr).trim());
        }
        stdout.flush()?;
        stderr.flush()?;
    }
}

/// Fills `buf`; false on EOF before its first byte, an error on EOF inside it.
fn read_full_or_eof(r: &mut impl Read, buf: &mut [u8]) -> Result<bool> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => bail!("stream ended inside a frame header"),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e).context("reading the stream"),
        }
    }
    Ok(true)
}

/// Copies raw bytes (a tty stream) to `out`, flushing as they arrive.
pub fn copy_raw(r: &mut impl Read, out: &mut dyn Write) -> Result<()> {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).context("reading the stream"),
        };
        out.write_all(&buf[..n])?;
        out.flush()?;
    }
}

/// One JSON message of a pull/push/load stream.
#[derive(serde::Deserialize, Default, Debug)]
pub struct JsonMessage {
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub progress: Option<String>,
    #[serde(default, rename = "progressDetail")]
    pub progress_detail: Option<ProgressDetail>,
    #[serde(default)]
    pub stream: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default, rename = "errorDetail")]
    pub error_detail: Option<ErrorDetail>,
    #[serde(default)]
    pub aux: Option<serde_json::Value>,
}

#[derive(serde::Deserialize, Default, Debug)]
pub struct ProgressDetail {
    #[serde(default)]
    pub current: Option<i64>,
    #[serde(default)]
    pub total: Option<i64>,
}

#[derive(serde::Deserialize, Default, Debug)]
pub struct ErrorDetail {
    #[serde(default)]
    pub message: Option<String>,
}

/// A progress bar like docker's: `[=====>      ]  1.2MB/4.5MB`.
pub fn progress_bar(current: i64, total: i64) -> String {
    let sizes = format!(
        "{}/{}",
        crate::format::human_size(current as f64),
        crate::format::human_size(total as f64)
    );
    if total <= 0 {
        return crate::format::human_size(current as f64);
    }
    const WIDTH: i64 = 50;
    let filled = (current.clamp(0, total) * WIDTH / total) as usize;
    let mut bar = "=".repeat(filled);
    if filled < WIDTH as usize {
        bar.push('>');
        bar.push_str(&" ".repeat(WIDTH as usize - filled - 1));
    }
    format!("[{bar}] {sizes:>14}")
}

/// Renders a JSON message stream: on a terminal, one line per layer id updated in place; otherwise one line per
/// status change (progress updates are skipped). Returns the error the stream ended with, if any.
pub struct ProgressWriter<'a> {
    out: &'a mut dyn Write,
    tty: bool,
    lines: HashMap<String, usize>,
    count: usize,
    /// Aux payloads seen (e.g. pushed digests, loaded ids).
    pub aux: Vec<serde_json::Value>,
}

impl<'a> ProgressWriter<'a> {
    pub fn new(out: &'a mut dyn Write, tty: bool) -> Self {
        ProgressWriter {
            out,
            tty,
            lines: HashMap::new(),
            count: 0,
            aux: Vec::new(),
        }
    }

    /// Reads the whole stream; an `error` message becomes the returned error.
    pub fn run(&mut self, r: impl BufRead) -> Result<()> {
        for line in r.lines() {
            let line = line.context("reading the progress stream")?;
            if line.trim().is_empty() {
                continue;
            }
            let msg: JsonMessage = serde_json::from_str(&line)
                .with_context(|| format!("decoding a progress message {line:?}"))?;
            self.show(&msg)?;
        }
        self.out.flush()?;
        Ok(())
    }

    pub fn show(&mut self, msg: &JsonMessage) -> Result<()> {
        if let Some(err) = &msg.error {
            let detail = msg.error_detail.as_ref().and_then(|d| d.message.clone());
            bail!("{}", detail.unwrap_or_else(|| err.clone()));
        }
        if let Some(aux) = &msg.aux {
            self.aux.push(aux.clone());
        }
        if let Some(s) = &msg.stream {
            self.out.write_all(s.as_bytes())?;
            return Ok(());
        }
        let Some(status) = &msg.status else {
            return Ok(());
        };
        let progress = match (&msg.progress_detail, &msg.progress) {
            (
                Some(ProgressDetail {
                    current: Some(c),
                    total,
                }),
                _,
            ) => progress_bar(*c, total.unwrap_or(0)),
            (_, Some(p)) => p.clone(),
            _ => String::new(),
        };
        let text = match &msg.id {
            Some(id) if !id.is_empty() => format!("{id}: {status} {progress}"),
            _ => format!("{status} {progress}"),
        };
        let text = text.trim_end();
        match (&msg.id, self.tty) {
            (Some(id), true) if !id.is_empty() => self.update_line(id, text)?,
            _ => {
                // Without a terminal only state changes are worth a line.
                if self.tty
                    || msg
                        .progress_detail
                        .as_ref()
                        .and_then(|d| d.current)
                        .is_none()
                {
                    writeln!(self.out, "{text}")?;
                    self.count += usize::from(self.tty);
                }
            }
        }
        self.out.flush()?;
        Ok(())
    }

    /// Rewrites the line of layer `id` in place (moving the cursor up to it), or adds it.
    fn update_line(&mut self, id: &str, text: &str) -> Result<()> {
        match self.lines.get(id) {
            Some(&line) => {
                let up = self.count - line;
                write!(self.out, "\x1b[{up}A\r\x1b[2K{text}\r\x1b[{up}B")?;
            }
            None => {
                self.lines.insert(id.to_string(), self.count);
                self.count += 1;
                writeln!(self.out, "{text}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![kind, 0, 0, 0];
        v.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn demux_splits_streams() {
        let mut input = frame(1, b"out1\n");
        input.extend(frame(2, b"err\n"));
        input.extend(frame(1, &vec![b'y'; 70_000]));
        let (mut out, mut err) = (Vec::new(), Vec::new());
        demux(&mut &input[..], &mut out, &mut err).unwrap();
        assert_eq!(&out[..5], b"out1\n");
        assert_eq!(out.len(), 5 + 70_000);
        assert_eq!(err, b"err\n");
    }

    #[test]
    fn demux_reports_truncation_and_system_errors() {
        let input = frame(1, b"abcdef");
        let (mut out, mut err) = (Vec::new(), Vec::new());
        assert!(demux(&mut &input[..4], &mut out, &mut err).is_err());
        assert!(demux(&mut &input[..10], &mut out, &mut err).is_err());
        let e = demux(&mut &frame(3, b"boom")[..], &mut out, &mut err).unwrap_err();
        assert_eq!(e.to_string(), "boom");
    }

    #[test]
    fn plain_progress_prints_state_changes_only() {
        let stream = concat!(
            "{\"status\":\"Pulling from library/busybox\",\"id\":\"latest\"}\n",
            "{\"status\":\"Downloading\",\"id\":\"abc\",\"progressDetail\":{\"current\":10,\"total\":100}}\n",
            "{\"status\":\"Pull complete\",\"id\":\"abc\",\"progressDetail\":{}}\n",
            "{\"status\":\"Status: Downloaded newer image for busybox:latest\"}\n",
        );
        let mut out = Vec::new();
        ProgressWriter::new(&mut out, false)
            .run(stream.as_bytes())
            .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "latest: Pulling from library/busybox\nabc: Pull complete\nStatus: Downloaded newer image for busybox:latest\n"
        );
    }

    #[test]
    fn tty_progress_updates_lines_in_place() {
        let stream = concat!(
            "{\"status\":\"Downloading\",\"id\":\"a\",\"progressDetail\":{\"current\":1,\"total\":2}}\n",
            "{\"status\":\"Waiting\",\"id\":\"b\"}\n",
            "{\"status\":\"Pull complete\",\"id\":\"a\"}\n",
        );
        let mut out = Vec::new();
        ProgressWriter::new(&mut out, true)
            .run(stream.as_bytes())
            .unwrap();
        let s = String::from_utf8(out).unwrap();
        assert!(
            s.ends_with("b: Waiting\n\x1b[2A\r\x1b[2Ka: Pull complete\r\x1b[2B"),
            "{s:?}"
        );
    }

    #[test]
    fn error_message_ends_stream() {
        let stream =
            "{\"errorDetail\":{\"message\":\"manifest unknown\"},\"error\":\"manifest unknown\"}\n";
        let mut out = Vec::new();
        let e = ProgressWriter::new(&mut out, false)
            .run(stream.as_bytes())
            .unwrap_err();
        assert_eq!(e.to_string(), "manifest unknown");
    }

    #[test]
    fn bar_shape() {
        let b = progress_bar(50, 100);
        assert!(b.starts_with("[=========================>"), "{b}");
        assert!(b.ends_with("50B/100B"), "{b}");
    }
}
