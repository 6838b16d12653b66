//! `--device` (HostConfig.Devices): host device nodes made in the container's /dev, and the
//! device cgroup rules that let the container use them, as dockerd does.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use anyhow::anyhow;
use bollard_stubs::models::DeviceMapping;
use oci_spec::runtime::{
    LinuxDevice, LinuxDeviceBuilder, LinuxDeviceCgroup, LinuxDeviceCgroupBuilder, LinuxDeviceType,
};

use crate::error::{Error, Result};

/// The devices of `mappings`, each with the rule that allows it. A directory brings every
/// device below it (under the same place in the container).
pub fn mapped(mappings: &[DeviceMapping]) -> Result<(Vec<LinuxDevice>, Vec<LinuxDeviceCgroup>)> {
    let (mut devices, mut rules) = (Vec::new(), Vec::new());
    for m in mappings {
        let host = PathBuf::from(m.path_on_host.as_deref().unwrap_or_default());
        let inside = match m.path_in_container.as_deref() {
            Some(p) if !p.is_empty() => PathBuf::from(p),
            _ => host.clone(),
        };
        let access = match m.cgroup_permissions.as_deref() {
            Some(p) if !p.is_empty() => p,
            _ => "rwm",
        };
        if access.is_empty() || !access.chars().all(|c| "rwm".contains(c)) {
            return Err(Error::InvalidParameter(format!(
                "invalid device mode: {access}"
            )));
        }
        let gather = |e: std::io::Error| {
            Error::InvalidParameter(format!(
                "error gathering device information while adding custom device {:?}: {}",
                host.display().to_string(),
                e.to_string().to_lowercase().replace(" (os error 2)", "")
            ))
        };
        let meta = std::fs::metadata(&host).map_err(gather)?;
        let found = if meta.is_dir() {
            let mut found = Vec::new();
            devices_below(&host, &inside, &mut found).map_err(gather)?;
            found
        } else {
            vec![(host.clone(), inside)]
        };
        for (host_path, inside) in found {
            let (device, rule) = device(&host_path, &inside, access)?;
            devices.push(device);
            rules.push(rule);
        }
    }
    Ok((devices, rules))
}

/// `--privileged`: every device node of the host's /dev, at the same place in the
/// container's, as runc's list of host devices has them: not the container's own
/// pseudo-terminals, shared memory, message queues or console.
pub fn host_devices() -> Result<Vec<LinuxDevice>> {
    let mut found = Vec::new();
    let dev = Path::new("/dev");
    devices_below(dev, dev, &mut found)
        .map_err(|e| anyhow!("cannot list the host's devices: {e}"))?;
    found
        .iter()
        .filter(|(host, _)| !PRIVATE_TO_THE_CONTAINER.iter().any(|p| host.starts_with(p)))
        .map(|(host, inside)| Ok(device(host, inside, "rwm")?.0))
        .collect()
}

/// What a container's /dev has of its own (runc's host device list leaves these out; its
/// /dev/ptmx is the link to its own devpts).
const PRIVATE_TO_THE_CONTAINER: [&str; 6] = [
    "/dev/pts",
    "/dev/ptmx",
    "/dev/shm",
    "/dev/mqueue",
    "/dev/console",
    "/dev/fd",
];

/// Every device node below `dir`, with where it goes below `inside`; symlinks are not
/// followed.
fn devices_below(
    dir: &Path,
    inside: &Path,
    out: &mut Vec<(PathBuf, PathBuf)>,
) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let (host, inside) = (entry.path(), inside.join(entry.file_name()));
        if kind.is_dir() {
            devices_below(&host, &inside, out)?;
        } else if kind.is_char_device() || kind.is_block_device() {
            out.push((host, inside));
        }
    }
    Ok(())
}

/// The OCI device and allow rule for the device node at `host`.
fn device(host: &Path, inside: &Path, access: &str) -> Result<(LinuxDevice, LinuxDeviceCgroup)> {
    let meta = std::fs::metadata(host)?;
    let typ = if meta.file_type().is_char_device() {
        LinuxDeviceType::C
    } else if meta.file_type().is_block_device() {
        LinuxDeviceType::B
    } else {
        return Err(Error::InvalidParameter(format!(
            "error gathering device information while adding custom device {:?}: not a device node",
            host.display().to_string()
        )));
    };
    let (major, minor) = (
        nix::sys::stat::major(meta.rdev()) as i64,
        nix::sys::stat::minor(meta.rdev()) as i64,
    );
    let device = LinuxDeviceBuilder::default()
        .path(inside)
        .typ(typ)
        .major(major)
        .minor(minor)
        .file_mode(meta.mode() & 0o777)
        .uid(meta.uid())
        .gid(meta.gid())
        .build()
        .map_err(|e| anyhow!("device {}: {e}", host.display()))?;
    let rule = LinuxDeviceCgroupBuilder::default()
        .allow(true)
        .typ(typ)
        .major(major)
        .minor(minor)
        .access(access)
        .build()
        .map_err(|e| anyhow!("device rule {}: {e}", host.display()))?;
    Ok((device, rule))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(host: &str, inside: Option<&str>, perms: Option<&str>) -> DeviceMapping {
        DeviceMapping {
            path_on_host: Some(host.into()),
            path_in_container: inside.map(Into::into),
            cgroup_permissions: perms.map(Into::into),
        }
    }

    #[test]
    fn a_device_node_with_its_rule() {
        let (devices, rules) =
            mapped(&[mapping("/dev/null", Some("/dev/mynull"), Some("rw"))]).unwrap();
        assert_eq!(devices[0].path(), Path::new("/dev/mynull"));
        assert_eq!((devices[0].major(), devices[0].minor()), (1, 3));
        assert_eq!(devices[0].typ(), LinuxDeviceType::C);
        assert_eq!(rules[0].access().as_deref(), Some("rw"));
        assert!(rules[0].allow());
    }

    #[test]
    fn privileged_gets_the_hosts_devices_but_not_its_terminals() {
        let devices = host_devices().unwrap();
        let paths: Vec<&Path> = devices.iter().map(|d| d.path().as_path()).collect();
        assert!(paths.contains(&Path::new("/dev/null")), "{paths:?}");
        let private = ["/dev/console", "/dev/ptmx"].map(Path::new);
        assert!(
            paths
                .iter()
                .all(|p| !p.starts_with("/dev/pts") && !private.contains(p)),
            "{paths:?}"
        );
    }

    #[test]
    fn bad_input_is_named() {
        let missing = mapped(&[mapping("/dev/nosuch-berth", None, None)]).unwrap_err();
        assert!(
            missing
                .message()
                .contains("\"/dev/nosuch-berth\": no such file or directory"),
            "{}",
            missing.message()
        );
        let file = mapped(&[mapping("/etc/hostname", None, None)]).unwrap_err();
        assert!(
            file.message().contains("not a device node"),
            "{}",
            file.message()
        );
        let mode = mapped(&[mapping("/dev/null", None, Some("rwx"))]).unwrap_err();
        assert_eq!(mode.message(), "invalid device mode: rwx");
    }
}
