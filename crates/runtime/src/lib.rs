//! berth-runtime: an OCI runtime. A container is a process put into new namespaces, bounded
//! by cgroups, and moved into its rootfs with pivot_root; this library does all of that and
//! the `berth-runtime` binary exposes it with runc's command line.

pub mod cgroups;
pub mod console;
pub mod container;
pub mod events;
pub mod exec;
pub mod exec_args;
pub mod features;
pub mod hooks;
mod init;
pub mod log;
pub mod namespaces;
mod network;
pub mod pause;
pub mod process;
pub mod ps;
pub mod rootfs;
pub mod seccomp;
pub mod signals;
pub mod spec;
pub mod state;
pub mod sys;
pub mod update;
