//! `HostConfig.SecurityOpt` and the container's seccomp profile, as dockerd decides them:
//! moby's default profile (shipped verbatim in data/seccomp-default.json) for every container
//! unless it is `--privileged` or asks for `seccomp=unconfined`; `seccomp=<JSON>` (what the
//! docker CLI sends after reading the file) for a profile of its own. A profile in Docker's
//! format becomes the OCI `linux.seccomp` the way moby's profiles/seccomp does: the entry of
//! `archMap` for this machine gives the architectures, and each syscall rule is kept or dropped
//! by its `includes`/`excludes` (the container's bounding capabilities, the architecture, the
//! host's kernel version).

use std::sync::OnceLock;

use bollard_stubs::models::HostConfig;
use oci_spec::runtime::{Capability, LinuxSeccomp};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// moby/profiles seccomp/default.json, verbatim (see data/README.md).
const DEFAULT_PROFILE: &str = include_str!("../../data/seccomp-default.json");

/// `HostConfig.SecurityOpt`, parsed as dockerd's parseSecurityOpt.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SecurityOpts {
    pub no_new_privileges: bool,
    /// The `seccomp=` value: "unconfined", "builtin" or a profile's JSON text.
    pub seccomp: Option<String>,
}

impl SecurityOpts {
    /// Unknown options are refused with dockerd's words. Called at create (a 400 there) and
    /// again for every spec.
    pub fn parse(host: &HostConfig) -> Result<SecurityOpts> {
        let mut out = SecurityOpts::default();
        for opt in host.security_opt.iter().flatten() {
            match opt.as_str() {
                "no-new-privileges" => out.no_new_privileges = true,
                // SELinux labelling off: berth labels nothing.
                "disable" => {}
                _ => out.parse_pair(opt)?,
            }
        }
        Ok(out)
    }

    fn parse_pair(&mut self, opt: &str) -> Result<()> {
        let (key, value) = opt
            .split_once('=')
            .or_else(|| opt.split_once(':'))
            .ok_or_else(|| invalid(1, opt))?;
        match (key, value) {
            ("seccomp", _) => self.seccomp = Some(value.to_string()),
            ("no-new-privileges", _) => {
                self.no_new_privileges = parse_bool(value).ok_or_else(|| invalid(2, opt))?
            }
            // Asking for no AppArmor profile or no SELinux labels is what berth does
            // anyway; a profile or label it cannot apply is refused, not ignored.
            ("apparmor", "unconfined") | ("label", "disable") => {}
            _ => return Err(invalid(2, opt)),
        }
        Ok(())
    }
}

fn invalid(which: u8, opt: &str) -> Error {
    Error::InvalidParameter(format!("invalid --security-opt {which}: {opt:?}"))
}

/// Go's strconv.ParseBool.
fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Check what create can: the options, and a custom profile's JSON.
pub fn validate(host: &HostConfig) -> Result<()> {
    let opts = SecurityOpts::parse(host)?;
    if let Some(text) = opts.seccomp.as_deref().filter(|p| is_custom(p)) {
        DockerProfile::parse(text)?;
    }
    Ok(())
}

fn is_custom(profile: &str) -> bool {
    !matches!(profile, "unconfined" | "builtin" | "")
}

/// The container's `linux.seccomp`: None with `--privileged` or `seccomp=unconfined`.
/// `bounding` is the container's final bounding set: it decides the rules that need a
/// capability (so `--cap-add SYS_ADMIN` allows mount, unshare, setns…).
pub fn linux_seccomp(host: &HostConfig, bounding: &[Capability]) -> Result<Option<LinuxSeccomp>> {
    if host.privileged.unwrap_or(false) {
        return Ok(None);
    }
    let opts = SecurityOpts::parse(host)?;
    let profile = match opts.seccomp.as_deref() {
        Some("unconfined") => return Ok(None),
        Some(text) if is_custom(text) => DockerProfile::parse(text)?,
        _ => default_profile()?.clone(),
    };
    let caps: Vec<String> = bounding
        .iter()
        .filter_map(|c| serde_json::to_value(c).ok()?.as_str().map(str::to_string))
        .collect();
    profile.to_oci(&Host::current()?, &caps)
}

fn default_profile() -> Result<&'static DockerProfile> {
    static PROFILE: OnceLock<std::result::Result<DockerProfile, String>> = OnceLock::new();
    PROFILE
        .get_or_init(|| DockerProfile::parse(DEFAULT_PROFILE).map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| Error::Internal(anyhow::anyhow!("the built-in seccomp profile: {e}")))
}

/// A seccomp profile in Docker's format: the OCI fields plus archMap and conditional rules.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DockerProfile {
    #[serde(default, deserialize_with = "null_as_empty")]
    arch_map: Vec<ArchMap>,
    #[serde(default, deserialize_with = "null_as_empty")]
    syscalls: Vec<Rule>,
    /// defaultAction, defaultErrnoRet, architectures, flags, listenerPath…: passed on.
    #[serde(flatten)]
    common: Map<String, Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArchMap {
    architecture: String,
    #[serde(default, deserialize_with = "null_as_empty")]
    sub_architectures: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Rule {
    /// The old single-name form.
    #[serde(default)]
    name: Option<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    names: Vec<String>,
    #[serde(default)]
    includes: Option<Condition>,
    #[serde(default)]
    excludes: Option<Condition>,
    /// action, errnoRet, args: passed on (comment is dropped).
    #[serde(flatten)]
    oci: Map<String, Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Condition {
    #[serde(default, deserialize_with = "null_as_empty")]
    caps: Vec<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    arches: Vec<String>,
    #[serde(default)]
    min_kernel: Option<String>,
}

/// What the rules are matched against besides the capabilities.
struct Host {
    /// Go's name of this architecture as the profile spells it ("amd64", "arm64"…).
    arch: &'static str,
    /// The libseccomp name of the architecture, to pick the archMap entry.
    seccomp_arch: &'static str,
    kernel: (u64, u64),
}

impl Host {
    fn current() -> Result<Host> {
        let (arch, seccomp_arch) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", "SCMP_ARCH_X86_64"),
            "x86" => ("x86", "SCMP_ARCH_X86"),
            "aarch64" => ("arm64", "SCMP_ARCH_AARCH64"),
            "arm" => ("arm", "SCMP_ARCH_ARM"),
            "riscv64" => ("riscv64", "SCMP_ARCH_RISCV64"),
            "s390x" => ("s390x", "SCMP_ARCH_S390X"),
            "powerpc64" if cfg!(target_endian = "little") => ("ppc64le", "SCMP_ARCH_PPC64LE"),
            "powerpc64" => ("ppc64", "SCMP_ARCH_PPC64"),
            "loongarch64" => ("loong64", "SCMP_ARCH_LOONGARCH64"),
            other => ("", other),
        };
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map_err(|e| Error::Internal(anyhow::anyhow!("cannot read the kernel release: {e}")))?;
        let kernel = parse_kernel(&release).ok_or_else(|| {
            Error::Internal(anyhow::anyhow!(
                "cannot parse the kernel release {release:?}"
            ))
        })?;
        Ok(Host {
            arch,
            seccomp_arch,
            kernel,
        })
    }
}

/// "6.18.3-amd64" → (6, 18): minKernel compares kernel and major revision only, as moby does.
fn parse_kernel(s: &str) -> Option<(u64, u64)> {
    let mut parts = s.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

impl DockerProfile {
    fn parse(text: &str) -> Result<DockerProfile> {
        let profile: DockerProfile = serde_json::from_str(text).map_err(|e| decoding(&e))?;
        if profile.common.contains_key("architectures") && !profile.arch_map.is_empty() {
            return Err(Error::InvalidParameter(
                "both 'architectures' and 'archMap' are specified in the seccomp profile, use either 'architectures' or 'archMap'".into(),
            ));
        }
        for rule in &profile.syscalls {
            if rule.name.is_some() && !rule.names.is_empty() {
                return Err(Error::InvalidParameter(
                    "both 'name' and 'names' are specified in the seccomp profile, use either 'name' or 'names'".into(),
                ));
            }
            for version in [&rule.includes, &rule.excludes]
                .into_iter()
                .flatten()
                .filter_map(|c| c.min_kernel.as_deref())
            {
                if parse_kernel(version).is_none() {
                    return Err(Error::InvalidParameter(format!(
                        "invalid kernel version: {version:?}, expected \"<kernel>.<major>\""
                    )));
                }
            }
        }
        // The result must be a valid OCI profile whatever the rules select.
        let everything = DockerProfile {
            arch_map: vec![],
            syscalls: vec![],
            common: profile.common.clone(),
        };
        everything.oci_value(profile.syscalls.iter().collect(), vec![])?;
        Ok(profile)
    }

    fn to_oci(&self, host: &Host, caps: &[String]) -> Result<Option<LinuxSeccomp>> {
        // No default action and no rules: the profile means "no seccomp" (moby).
        if !self.common.contains_key("defaultAction") && self.syscalls.is_empty() {
            return Ok(None);
        }
        let arches = self
            .arch_map
            .iter()
            .find(|a| a.architecture == host.seccomp_arch)
            .map(|a| {
                std::iter::once(a.architecture.clone())
                    .chain(a.sub_architectures.iter().cloned())
                    .collect()
            })
            .unwrap_or_default();
        let rules = self
            .syscalls
            .iter()
            .filter(|r| r.applies(host, caps))
            .collect();
        self.oci_value(rules, arches).map(Some)
    }

    fn oci_value(&self, rules: Vec<&Rule>, arches: Vec<String>) -> Result<LinuxSeccomp> {
        let mut out = self.common.clone();
        if !arches.is_empty() {
            out.insert("architectures".into(), arches.into());
        }
        let syscalls: Vec<Value> = rules
            .into_iter()
            .map(|r| {
                let mut rule = r.oci.clone();
                rule.remove("comment");
                let names = r.name.iter().chain(&r.names).cloned().collect::<Vec<_>>();
                rule.insert("names".into(), names.into());
                Value::Object(rule)
            })
            .collect();
        out.insert("syscalls".into(), syscalls.into());
        serde_path_to_error::deserialize(Value::Object(out)).map_err(|e| {
            Error::InvalidParameter(format!(
                "Decoding seccomp profile failed: {}: {}",
                e.path(),
                e.inner()
            ))
        })
    }
}

/// Go decodes `null` as an empty list; moby's own profile has `"subArchitectures": null`.
fn null_as_empty<'de, D, T>(d: D) -> std::result::Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

fn decoding(e: &serde_json::Error) -> Error {
    Error::InvalidParameter(format!("Decoding seccomp profile failed: {e}"))
}

impl Rule {
    /// moby's includes/excludes: an exclude matching any of its conditions drops the rule;
    /// an include must match all of its conditions.
    fn applies(&self, host: &Host, caps: &[String]) -> bool {
        let has = |c: &String| caps.contains(c);
        let at_least = |v: &Option<String>| {
            v.as_deref()
                .and_then(parse_kernel)
                .map(|min| host.kernel >= min)
        };
        if let Some(ex) = &self.excludes {
            if ex.arches.iter().any(|a| a == host.arch)
                || ex.caps.iter().any(has)
                || at_least(&ex.min_kernel) == Some(true)
            {
                return false;
            }
        }
        if let Some(inc) = &self.includes {
            if (!inc.arches.is_empty() && !inc.arches.iter().any(|a| a == host.arch))
                || !inc.caps.iter().all(has)
                || at_least(&inc.min_kernel) == Some(false)
            {
                return false;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> Host {
        Host {
            arch: "amd64",
            seccomp_arch: "SCMP_ARCH_X86_64",
            kernel: (6, 1),
        }
    }

    fn names(s: &LinuxSeccomp, action_allow: bool) -> Vec<String> {
        s.syscalls()
            .iter()
            .flatten()
            .filter(|r| {
                (r.action() == oci_spec::runtime::LinuxSeccompAction::ScmpActAllow) == action_allow
            })
            .flat_map(|r| r.names().clone())
            .collect()
    }

    #[test]
    fn default_profile_follows_the_capabilities() {
        let default = default_profile().unwrap();
        let plain = default.to_oci(&host(), &[]).unwrap().unwrap();
        let allowed = names(&plain, true);
        for denied in [
            "mount",
            "unshare",
            "setns",
            "keyctl",
            "add_key",
            "bpf",
            "kexec_load",
        ] {
            assert!(!allowed.iter().any(|n| n == denied), "{denied} allowed");
        }
        assert!(allowed.iter().any(|n| n == "arch_prctl"));
        assert!(!allowed.iter().any(|n| n == "s390_runtime_instr"));
        assert_eq!(
            plain.architectures().as_ref().map(|a| a.len()),
            Some(3),
            "x86-64 with its x86 and x32 sub-architectures"
        );
        let admin = default
            .to_oci(&host(), &["CAP_SYS_ADMIN".to_string()])
            .unwrap()
            .unwrap();
        let allowed = names(&admin, true);
        for now in ["mount", "unshare", "setns", "umount2"] {
            assert!(allowed.iter().any(|n| n == now), "{now} not allowed");
        }
        assert!(!allowed.iter().any(|n| n == "keyctl"));
        // ptrace is included from 4.8 on, whatever the capabilities.
        let old = Host {
            kernel: (4, 4),
            ..host()
        };
        assert!(!names(&default.to_oci(&old, &[]).unwrap().unwrap(), true)
            .iter()
            .any(|n| n == "process_vm_readv"));
        assert!(names(&plain, true).iter().any(|n| n == "process_vm_readv"));
    }

    #[test]
    fn security_opts_parse_as_dockerd() {
        let parse = |opts: &[&str]| {
            SecurityOpts::parse(&HostConfig {
                security_opt: Some(opts.iter().map(|s| s.to_string()).collect()),
                ..Default::default()
            })
        };
        assert!(parse(&["no-new-privileges"]).unwrap().no_new_privileges);
        assert!(
            parse(&["no-new-privileges:true"])
                .unwrap()
                .no_new_privileges
        );
        assert!(
            !parse(&["no-new-privileges=false"])
                .unwrap()
                .no_new_privileges
        );
        assert_eq!(
            parse(&["seccomp=unconfined"]).unwrap().seccomp.as_deref(),
            Some("unconfined")
        );
        let err = parse(&["bogus"]).unwrap_err().to_string();
        assert!(
            err.contains(r#"invalid --security-opt 1: "bogus""#),
            "{err}"
        );
        let err = parse(&["apparmor=x"]).unwrap_err().to_string();
        assert!(
            err.contains(r#"invalid --security-opt 2: "apparmor=x""#),
            "{err}"
        );
        assert!(parse(&["no-new-privileges=maybe"]).is_err());
        let lenient = parse(&["apparmor=unconfined", "label:disable", "disable"]).unwrap();
        assert_eq!(lenient, SecurityOpts::default());
        // The docker CLI turns it into empty MaskedPaths and ReadonlyPaths; dockerd refuses it.
        assert!(parse(&["systempaths=unconfined"]).is_err());
        assert!(parse(&["label=type:svirt_t"]).is_err());
    }

    #[test]
    fn bad_profiles_are_refused() {
        for (text, needle) in [
            ("{", "Decoding seccomp profile failed"),
            (
                r#"{"defaultAction":"SCMP_ACT_NOPE"}"#,
                "Decoding seccomp profile failed: defaultAction",
            ),
            (
                r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["x"],"action":"SCMP_ACT_ERRNO","includes":{"minKernel":"six"}}]}"#,
                "invalid kernel version",
            ),
        ] {
            let err = DockerProfile::parse(text).unwrap_err().to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }

    #[test]
    fn kernel_versions_parse() {
        assert_eq!(parse_kernel("6.18.0-12-amd64"), Some((6, 18)));
        assert_eq!(parse_kernel("4.8"), Some((4, 8)));
        assert_eq!(parse_kernel("x"), None);
    }
}
