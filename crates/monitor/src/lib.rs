//! The per-container monitor's protocol and the engine's side of it.
//!
//! `berth-monitor` (the binary of this crate) creates one container, or runs one exec
//! process in a running container, owns its stdio (pipes or a pty), writes its log, serves
//! attach/start/resize on a socket and records its exit. See `protocol` for the messages
//! and `client` for the engine's calls.

pub mod client;
pub mod protocol;
