//! The `--log` file: text or JSON lines, as runc writes them; containerd's shim reads the last
//! JSON line's `msg` to report a failure.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::OnceLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

struct Logger {
    file: Option<File>,
    format: LogFormat,
    debug: bool,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();

/// Set up logging once, at start. Without a file, errors still go to stderr (see `error`).
pub fn init(path: Option<&Path>, format: LogFormat, debug: bool) -> std::io::Result<()> {
    let file = match path {
        // O_CLOEXEC is std's default: the log fd never reaches the container's process.
        Some(p) => Some(OpenOptions::new().create(true).append(true).open(p)?),
        None => None,
    };
    let _ = LOGGER.set(Logger {
        file,
        format,
        debug,
    });
    Ok(())
}

fn write(level: &str, msg: &str) {
    let Some(logger) = LOGGER.get() else { return };
    let Some(mut file) = logger.file.as_ref() else {
        return;
    };
    let time = humantime::format_rfc3339_nanos(std::time::SystemTime::now());
    let line = match logger.format {
        LogFormat::Json => {
            serde_json::json!({"level": level, "msg": msg, "time": time.to_string()}).to_string()
        }
        LogFormat::Text => format!("time=\"{time}\" level={level} msg={msg:?}"),
    };
    // One write call per line keeps lines whole when several processes append.
    let _ = file.write_all(format!("{line}\n").as_bytes());
}

/// An error for the user: on stderr, and as an `error` line in the log file.
pub fn error(msg: &str) {
    eprintln!("berth-runtime: {msg}");
    write("error", msg);
}

/// Something worth knowing that does not stop the command.
pub fn warn(msg: &str) {
    write("warning", msg);
}

/// Only with `--debug`.
pub fn debug(msg: &str) {
    if LOGGER.get().is_some_and(|l| l.debug) {
        write("debug", msg);
    }
}
