//! What the engine and a monitor say to each other: the config the monitor is started with,
//! the requests on its socket and their replies, and the exit file it leaves.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Largest request or reply on the socket (SOCK_SEQPACKET keeps messages whole).
pub const MAX_MESSAGE: usize = 64 * 1024;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MonitorConfig {
    /// The runtime's state root (`--root`).
    pub runtime_root: PathBuf,
    /// The runtime container id (an exec joins this container).
    pub id: String,
    /// The bundle to create the container from (container mode).
    pub bundle: PathBuf,
    /// The json-file log; None for an exec.
    pub log_path: Option<PathBuf>,
    pub tty: bool,
    pub open_stdin: bool,
    /// Close the process's stdin when the first attached client closes its input.
    pub stdin_once: bool,
    pub exit_file: PathBuf,
    /// The SOCK_SEQPACKET socket the monitor listens on.
    pub socket: PathBuf,
    /// Exec mode: run this process in the running container `id` on `start`.
    pub exec: Option<ExecProcess>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExecProcess {
    pub process: oci_spec::runtime::Process,
}

/// One request on the monitor's socket.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Request {
    /// Start the container (or the exec process); the reply carries its pid.
    Start,
    /// With one SOCK_STREAM unix socket in SCM_RIGHTS: the process's output goes to it, what
    /// is read from it goes to the process's stdin.
    Attach {
        stdin: bool,
        stdout: bool,
        stderr: bool,
    },
    Resize {
        height: u16,
        width: u16,
    },
}

/// `{"ok":true,...}` or `{"error":"msg"}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Reply {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ok: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Reply {
    pub fn ok() -> Reply {
        Reply {
            ok: Some(true),
            ..Reply::default()
        }
    }
    pub fn error(msg: impl Into<String>) -> Reply {
        Reply {
            error: Some(msg.into()),
            ..Reply::default()
        }
    }
    /// The reply as a result: its error message, or the reply.
    pub fn into_result(self) -> anyhow::Result<Reply> {
        match self.error {
            Some(e) => Err(anyhow::anyhow!(e)),
            None => Ok(self),
        }
    }
}

/// The exit file: written atomically once the process has been reaped.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExitStatus {
    /// The exit code, 128+N when killed by signal N.
    pub exit_code: i32,
    /// RFC 3339 with nanoseconds, UTC.
    pub finished_at: String,
    pub oom_killed: bool,
}

/// Docker's multiplexed stream ids (the first byte of a frame header).
pub const STREAM_STDOUT: u8 = 1;
pub const STREAM_STDERR: u8 = 2;

/// The 8-byte header of a multiplexed frame: stream, three zeros, big-endian length.
pub fn frame_header(stream: u8, len: usize) -> [u8; 8] {
    let n = (len as u32).to_be_bytes();
    [stream, 0, 0, 0, n[0], n[1], n[2], n[3]]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_have_the_documented_shape() {
        let r: Request = serde_json::from_str(r#"{"op":"start"}"#).unwrap();
        assert_eq!(r, Request::Start);
        let r: Request =
            serde_json::from_str(r#"{"op":"attach","stdin":true,"stdout":true,"stderr":false}"#)
                .unwrap();
        assert_eq!(
            r,
            Request::Attach {
                stdin: true,
                stdout: true,
                stderr: false
            }
        );
        let r: Request = serde_json::from_str(r#"{"op":"resize","height":24,"width":80}"#).unwrap();
        assert_eq!(
            r,
            Request::Resize {
                height: 24,
                width: 80
            }
        );
        assert_eq!(
            serde_json::to_string(&Reply::ok()).unwrap(),
            r#"{"ok":true}"#
        );
        assert_eq!(
            serde_json::to_string(&Reply::error("no")).unwrap(),
            r#"{"error":"no"}"#
        );
    }

    #[test]
    fn frame_header_is_big_endian() {
        assert_eq!(frame_header(2, 0x0102_0304), [2, 0, 0, 0, 1, 2, 3, 4]);
    }
}
