//! Docker's namespace modes: `--pid`, `--ipc`, `--uts`, `--cgroupns` and `--network host`
//! decide which namespaces a container gets of its own, which it shares with the host and
//! which it joins (another container's pid namespace).

use std::path::PathBuf;

use bollard_stubs::models::{HostConfig, HostConfigCgroupnsModeEnum};
use oci_spec::runtime::{LinuxNamespace, LinuxNamespaceType};

use crate::error::{Error, Result};

/// `--pid container:<name|id>`: the container whose pid namespace to join.
pub fn pid_container(host: &HostConfig) -> Option<&str> {
    host.pid_mode.as_deref()?.strip_prefix("container:")
}

/// Whether the container has a UTS namespace (and so a hostname) of its own.
pub fn private_uts(host: &HostConfig) -> bool {
    host.uts_mode.as_deref() != Some("host")
}

pub fn is_host_network(host: &HostConfig) -> bool {
    host.network_mode.as_deref() == Some("host")
}

pub fn is_host_ipc(host: &HostConfig) -> bool {
    host.ipc_mode.as_deref() == Some("host")
}

/// The modes as Docker checks them at create, with its messages; modes Docker has and
/// berth does not (an IPC namespace joined from another container) say so.
pub fn validate(host: &HostConfig, hostname: &str) -> Result<()> {
    let invalid = |what: &str, mode: &str| {
        Err(Error::InvalidParameter(format!(
            "invalid {what} mode: {mode}"
        )))
    };
    let pid = host.pid_mode.as_deref().unwrap_or("");
    let joins = pid_container(host).is_some_and(|c| !c.is_empty());
    if !(pid.is_empty() || pid == "host" || joins) {
        return invalid("PID", pid);
    }
    match host.ipc_mode.as_deref().unwrap_or("") {
        "" | "private" | "shareable" | "none" | "host" => {}
        mode if mode.starts_with("container:") => {
            return Err(Error::InvalidParameter(format!(
                "IPC mode {mode} is not supported by berth: use host or private"
            )))
        }
        mode => return invalid("IPC", mode),
    }
    match host.uts_mode.as_deref().unwrap_or("") {
        "host" if !hostname.is_empty() => Err(Error::InvalidParameter(
            "conflicting options: hostname and the UTS mode".into(),
        )),
        "" | "host" => Ok(()),
        mode => invalid("UTS", mode),
    }
}

/// Docker's defaults written into the container's HostConfig at create: what it gets when
/// nothing was asked, as inspect shows it.
pub fn complete(host: &mut HostConfig) {
    if host.ipc_mode.as_deref().unwrap_or("").is_empty() {
        host.ipc_mode = Some("private".into());
    }
    // Private on cgroup v1 too (Docker shares the host's there): the container sees its own
    // cgroup as the root, and none of the host's paths.
    if matches!(
        host.cgroupns_mode,
        None | Some(HostConfigCgroupnsModeEnum::EMPTY)
    ) {
        host.cgroupns_mode = Some(HostConfigCgroupnsModeEnum::PRIVATE);
    }
}

/// The OCI namespaces: new ones but for what the container shares with the host, and the
/// pid namespace at `joined_pid` when it joins another container's.
pub fn oci(host: &HostConfig, joined_pid: Option<PathBuf>) -> Vec<LinuxNamespace> {
    let new = |typ| {
        let mut ns = LinuxNamespace::default();
        ns.set_typ(typ);
        ns
    };
    let mut namespaces = vec![new(LinuxNamespaceType::Mount)];
    match (host.pid_mode.as_deref(), joined_pid) {
        (Some("host"), _) => {}
        (_, Some(path)) => {
            let mut ns = new(LinuxNamespaceType::Pid);
            ns.set_path(Some(path));
            namespaces.push(ns);
        }
        _ => namespaces.push(new(LinuxNamespaceType::Pid)),
    }
    if !is_host_ipc(host) {
        namespaces.push(new(LinuxNamespaceType::Ipc));
    }
    if private_uts(host) {
        namespaces.push(new(LinuxNamespaceType::Uts));
    }
    if host.cgroupns_mode != Some(HostConfigCgroupnsModeEnum::HOST) {
        namespaces.push(new(LinuxNamespaceType::Cgroup));
    }
    if !is_host_network(host) {
        namespaces.push(new(LinuxNamespaceType::Network));
    }
    namespaces
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(pid: &str, ipc: &str, uts: &str) -> HostConfig {
        HostConfig {
            pid_mode: Some(pid.into()),
            ipc_mode: Some(ipc.into()),
            uts_mode: Some(uts.into()),
            ..Default::default()
        }
    }

    fn types(namespaces: &[LinuxNamespace]) -> Vec<LinuxNamespaceType> {
        namespaces.iter().map(|ns| ns.typ()).collect()
    }

    #[test]
    fn host_modes_leave_their_namespace_out() {
        use LinuxNamespaceType::*;
        let all = oci(&host("", "", ""), None);
        assert_eq!(types(&all), [Mount, Pid, Ipc, Uts, Cgroup, Network]);
        let shared = oci(&host("host", "host", "host"), None);
        assert_eq!(types(&shared), [Mount, Cgroup, Network]);
        let joined = oci(
            &host("container:web", "", ""),
            Some("/proc/42/ns/pid".into()),
        );
        assert_eq!(joined[1].typ(), Pid);
        assert_eq!(
            joined[1].path().as_deref(),
            Some("/proc/42/ns/pid".as_ref())
        );
    }

    #[test]
    fn invalid_and_conflicting_modes_are_refused_with_dockers_messages() {
        let message = |h: HostConfig, hostname: &str| validate(&h, hostname).unwrap_err().message();
        assert_eq!(
            message(host("bogus", "", ""), ""),
            "invalid PID mode: bogus"
        );
        assert_eq!(
            message(host("container:", "", ""), ""),
            "invalid PID mode: container:"
        );
        assert_eq!(
            message(host("", "bogus", ""), ""),
            "invalid IPC mode: bogus"
        );
        assert_eq!(
            message(host("", "", "bogus"), ""),
            "invalid UTS mode: bogus"
        );
        assert_eq!(
            message(host("", "", "host"), "myhost"),
            "conflicting options: hostname and the UTS mode"
        );
        assert!(message(host("", "container:x", ""), "").contains("not supported"));
        validate(&host("container:web", "shareable", "host"), "").unwrap();
    }
}
