//! The device allow-list of a container's cgroup: the config's rules (in order), then allow
//! rules for the nodes every container has, as runc adds them. The nodes of `linux.devices`
//! get none: the config's rules say what they may do (runc's behaviour, which `--device
//! /dev/x:/dev/x:r` relies on).

use anyhow::{Context, Result};
use oci_spec::runtime::{
    LinuxDeviceCgroup, LinuxDeviceCgroupBuilder, LinuxDeviceType, LinuxResources,
};

/// What runc allows on top of a config's rules besides the default nodes it creates
/// (`rootfs::devices::default_devices`): mknod of anything (opening what was made is still
/// checked), /dev/console, ptmx, the pts and /dev/net/tun.
const ALSO_ALLOWED: [(LinuxDeviceType, Option<i64>, Option<i64>, &str); 6] = [
    (LinuxDeviceType::C, None, None, "m"),
    (LinuxDeviceType::B, None, None, "m"),
    (LinuxDeviceType::C, Some(5), Some(1), "rwm"),
    (LinuxDeviceType::C, Some(5), Some(2), "rwm"),
    (LinuxDeviceType::C, Some(136), None, "rwm"),
    (LinuxDeviceType::C, Some(10), Some(200), "rwm"),
];

fn rule(
    typ: LinuxDeviceType,
    major: Option<i64>,
    minor: Option<i64>,
    access: &str,
) -> Result<LinuxDeviceCgroup> {
    let mut b = LinuxDeviceCgroupBuilder::default()
        .allow(true)
        .typ(typ)
        .access(access);
    if let Some(major) = major {
        b = b.major(major);
    }
    if let Some(minor) = minor {
        b = b.minor(minor);
    }
    b.build().context("device rule")
}

/// `resources` with the device rules completed. A config without device rules is left as
/// it is (the parent cgroup's list applies, as with runc).
pub fn complete(resources: &LinuxResources) -> Result<LinuxResources> {
    let mut resources = resources.clone();
    let Some(rules) = resources.devices().clone().filter(|r| !r.is_empty()) else {
        return Ok(resources);
    };
    let mut rules = rules;
    for (typ, major, minor, access) in ALSO_ALLOWED {
        rules.push(rule(typ, major, minor, access)?);
    }
    for d in crate::rootfs::devices::default_devices() {
        rules.push(rule(
            LinuxDeviceType::C,
            Some(d.major as i64),
            Some(d.minor as i64),
            "rwm",
        )?);
    }
    resources.set_devices(Some(rules));
    Ok(resources)
}

/// The line a v1 `devices.allow` / `devices.deny` file takes: `c 1:3 rwm`, `a *:* rwm`.
pub fn v1_line(rule: &LinuxDeviceCgroup) -> String {
    let number = |n: Option<i64>| n.map_or_else(|| "*".to_string(), |n| n.to_string());
    let access = rule.access().clone().filter(|a| !a.is_empty());
    format!(
        "{} {}:{} {}",
        rule.typ().unwrap_or(LinuxDeviceType::A).as_str(),
        number(rule.major()),
        number(rule.minor()),
        access.as_deref().unwrap_or("rwm")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_are_completed_only_when_the_config_has_some() {
        let empty = LinuxResources::default();
        assert!(complete(&empty)
            .unwrap()
            .devices()
            .as_ref()
            .is_none_or(|d| d.is_empty()));
        let mut deny_all = LinuxResources::default();
        deny_all.set_devices(Some(vec![LinuxDeviceCgroupBuilder::default()
            .allow(false)
            .access("rwm")
            .build()
            .unwrap()]));
        let done = complete(&deny_all).unwrap();
        let lines: Vec<String> = done
            .devices()
            .as_ref()
            .unwrap()
            .iter()
            .map(v1_line)
            .collect();
        assert_eq!(lines[0], "a *:* rwm");
        assert!(lines.contains(&"c 1:3 rwm".to_string()));
        assert!(lines.contains(&"c 136:* rwm".to_string()));
        assert!(lines.contains(&"b *:* m".to_string()));
        assert!(
            !lines.iter().any(|l| l.starts_with("c 1:1 ")),
            "/dev/mem allowed: {lines:?}"
        );
    }
}
