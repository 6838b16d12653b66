//! config.json: loading it with errors that name the JSON path, and the default `spec`.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use oci_spec::runtime::{LinuxNamespaceType, Spec};

/// Read `<bundle>/config.json`. A malformed document is an error naming the bad field's path.
pub fn load(bundle: &Path) -> Result<Spec> {
    let path = bundle.join("config.json");
    let text = fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    parse(&text).with_context(|| format!("invalid {}", path.display()))
}

/// Parse a config.json document; errors carry the JSON path (`process.args: invalid type…`).
pub fn parse(text: &[u8]) -> Result<Spec> {
    let de = &mut serde_json::Deserializer::from_slice(text);
    let spec: Spec = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            anyhow::anyhow!("{inner}")
        } else {
            anyhow::anyhow!("{path}: {inner}")
        }
    })?;
    if spec.process().is_none() {
        bail!("process: missing; a container needs a process to run");
    }
    Ok(spec)
}

/// Refuse what this runtime does not implement, and sysctls that would change the host.
pub fn validate(spec: &Spec) -> Result<()> {
    let linux = spec.linux().as_ref();
    crate::hooks::validate(spec)?;
    for key in linux
        .and_then(|l| l.sysctl().as_ref())
        .into_iter()
        .flatten()
        .map(|(k, _)| k)
    {
        validate_sysctl(spec, key)?;
    }
    Ok(())
}

/// A sysctl is only the container's own when it belongs to a namespace the container has,
/// as runc decides: IPC ones with an ipc namespace, net.* with a network namespace, the
/// host and domain name with a uts namespace. Anything else would be set for the whole host.
fn validate_sysctl(spec: &Spec, key: &str) -> Result<()> {
    const IPC: &[&str] = &[
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    let needs = if IPC.contains(&key) || key.starts_with("fs.mqueue.") {
        LinuxNamespaceType::Ipc
    } else if key.starts_with("net.") {
        LinuxNamespaceType::Network
    } else if key == "kernel.hostname" || key == "kernel.domainname" {
        LinuxNamespaceType::Uts
    } else {
        bail!("linux.sysctl: {key} is not namespaced and would change the host");
    };
    if key.contains("..") || key.contains('/') {
        bail!("linux.sysctl: invalid key {key:?}");
    }
    if !has_namespace(spec, needs) {
        bail!("linux.sysctl: {key} needs a {needs} namespace in the container");
    }
    Ok(())
}

/// The rootfs directory: `root.path`, absolute or relative to the bundle; it must exist.
pub fn rootfs(spec: &Spec, bundle: &Path) -> Result<PathBuf> {
    let root = spec.root().as_ref().context("root: missing")?;
    let path = bundle.join(root.path());
    match fs::metadata(&path) {
        Ok(m) if m.is_dir() => Ok(path),
        Ok(_) => bail!("rootfs {} is not a directory", path.display()),
        Err(e) => Err(e).with_context(|| format!("rootfs {} does not exist", path.display())),
    }
}

/// Whether the config asks for a namespace of this type (new or joined by path).
pub fn has_namespace(spec: &Spec, typ: LinuxNamespaceType) -> bool {
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|ns| ns.iter().any(|n| n.typ() == typ))
}

/// The default config.json, as `runc spec` writes it: a `sh` with a terminal in a rootfs
/// named `rootfs`, in new pid, network, ipc, uts, mount and cgroup namespaces.
pub fn default_spec() -> Result<Spec> {
    let mut spec = Spec::default();
    // oci-spec's default has no cgroup namespace; runc's has one.
    if let Some(linux) = spec.linux_mut() {
        if let Some(ns) = linux.namespaces_mut() {
            if !ns.iter().any(|n| n.typ() == LinuxNamespaceType::Cgroup) {
                let mut cgroup = oci_spec::runtime::LinuxNamespace::default();
                cgroup.set_typ(LinuxNamespaceType::Cgroup);
                ns.push(cgroup);
            }
        }
    }
    spec.set_hostname(Some("berth".into()));
    if let Some(process) = spec.process_mut() {
        process.set_terminal(Some(true));
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_field_error_names_its_json_path() {
        let doc = br#"{"ociVersion":"1.0.2","process":{"cwd":"/","args":"sh","user":{"uid":0,"gid":0}},"root":{"path":"rootfs"}}"#;
        let err = format!("{:#}", parse(doc).unwrap_err());
        assert!(err.starts_with("process.args: invalid type"), "{err}");
    }

    #[test]
    fn syntax_error_says_where() {
        let err = format!("{:#}", parse(b"{\"ociVersion\": ").unwrap_err());
        assert!(err.contains("line 1"), "{err}");
    }

    #[test]
    fn only_namespaced_sysctls_of_namespaces_the_container_has() {
        let mut spec = default_spec().unwrap();
        let with = |spec: &mut Spec, key: &str| {
            let linux = spec.linux_mut().as_mut().unwrap();
            linux.set_sysctl(Some([(key.to_string(), "1".to_string())].into()));
            validate(spec)
        };
        assert!(with(&mut spec, "net.ipv4.ip_forward").is_ok());
        assert!(with(&mut spec, "kernel.shmmax").is_ok());
        let err = with(&mut spec, "kernel.core_pattern")
            .unwrap_err()
            .to_string();
        assert!(err.contains("not namespaced"), "{err}");
        let linux = spec.linux_mut().as_mut().unwrap();
        let namespaces = linux.namespaces_mut().as_mut().unwrap();
        namespaces.retain(|n| n.typ() != LinuxNamespaceType::Network);
        let err = with(&mut spec, "net.ipv4.ip_forward")
            .unwrap_err()
            .to_string();
        assert!(err.contains("needs a net namespace"), "{err}");
    }

    #[test]
    fn default_spec_round_trips_and_has_runc_namespaces() {
        let spec = default_spec().unwrap();
        let text = serde_json::to_vec(&spec).unwrap();
        let back = parse(&text).unwrap();
        for typ in [
            LinuxNamespaceType::Pid,
            LinuxNamespaceType::Network,
            LinuxNamespaceType::Ipc,
            LinuxNamespaceType::Uts,
            LinuxNamespaceType::Mount,
            LinuxNamespaceType::Cgroup,
        ] {
            assert!(has_namespace(&back, typ), "{typ:?}");
        }
        assert_eq!(
            back.process().as_ref().unwrap().args().as_ref().unwrap(),
            &["sh"]
        );
    }
}
