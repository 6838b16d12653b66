//! Parsers for docker's flag values: sizes, CPUs, ulimits, volumes, mounts, restart policies, env, ports, durations.

use anyhow::{anyhow, bail, Context, Result};
use bollard_stubs::models::{
    DeviceMapping, Mount, MountBindOptions, MountTmpfsOptions, MountTypeEnum, MountVolumeOptions,
    PortBinding, PortMap, ResourcesUlimits, RestartPolicy, RestartPolicyNameEnum,
};
use std::collections::HashMap;
use std::path::Path;

/// docker's `units.RAMInBytes`: "512m", "1g", "1.5GiB", "100" → bytes (binary multipliers).
pub fn ram_in_bytes(s: &str) -> Result<i64> {
    let t = s.trim();
    let num_end = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(num_end);
    let value: f64 = num.parse().map_err(|_| anyhow!("invalid size: '{s}'"))?;
    let unit = unit.trim_start().to_ascii_lowercase();
    let unit = unit.strip_suffix('b').unwrap_or(&unit);
    let unit = unit.strip_suffix('i').unwrap_or(unit);
    let mult: f64 = match unit {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024f64.powi(2),
        "g" => 1024f64.powi(3),
        "t" => 1024f64.powi(4),
        "p" => 1024f64.powi(5),
        _ => bail!("invalid size: '{s}'"),
    };
    Ok((value * mult) as i64)
}

/// `--memory-swap`: -1 means unlimited, otherwise a size.
pub fn memory_swap(s: &str) -> Result<i64> {
    if s.trim() == "-1" {
        Ok(-1)
    } else {
        ram_in_bytes(s)
    }
}

/// `--cpus 1.5` → NanoCpus.
pub fn nano_cpus(s: &str) -> Result<i64> {
    let v: f64 = s
        .parse()
        .map_err(|_| anyhow!("invalid argument \"{s}\" for \"--cpus\" flag: failed to parse {s} as a rational number"))?;
    if !(v >= 0.0 && v.is_finite()) {
        bail!("invalid argument \"{s}\" for \"--cpus\" flag: value is out of range");
    }
    Ok((v * 1e9).round() as i64)
}

/// `--ulimit nofile=1024:2048` (or `name=N` for soft = hard).
pub fn ulimit(s: &str) -> Result<ResourcesUlimits> {
    let (name, limits) = s
        .split_once('=')
        .ok_or_else(|| anyhow!("invalid ulimit argument: {s}"))?;
    let parse = |v: &str| -> Result<i64> {
        v.parse()
            .map_err(|_| anyhow!("invalid ulimit argument: {s}"))
    };
    let (soft, hard) = match limits.split_once(':') {
        Some((a, b)) => (parse(a)?, parse(b)?),
        None => (parse(limits)?, parse(limits)?),
    };
    if soft > hard {
        bail!("ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}");
    }
    Ok(ResourcesUlimits {
        name: Some(name.to_string()),
        soft: Some(soft),
        hard: Some(hard),
    })
}

/// `--restart no|always|unless-stopped|on-failure[:N]`.
pub fn restart_policy(s: &str) -> Result<RestartPolicy> {
    let (name, count) = match s.split_once(':') {
        Some((n, c)) => (n, Some(c)),
        None => (s, None),
    };
    let name = match name {
        "" | "no" => RestartPolicyNameEnum::NO,
        "always" => RestartPolicyNameEnum::ALWAYS,
        "unless-stopped" => RestartPolicyNameEnum::UNLESS_STOPPED,
        "on-failure" => RestartPolicyNameEnum::ON_FAILURE,
        _ => bail!("invalid restart policy format: unknown policy '{name}'; use one of 'no', 'always', 'on-failure', or 'unless-stopped'"),
    };
    let maximum_retry_count = match count {
        None => None,
        Some(c) if name == RestartPolicyNameEnum::ON_FAILURE => Some(c.parse().map_err(|_| {
            anyhow!("invalid restart policy format: maximum retry count must be an integer")
        })?),
        Some(_) => bail!(
            "invalid restart policy format: maximum retry count can only be used with 'on-failure'"
        ),
    };
    Ok(RestartPolicy {
        name: Some(name),
        maximum_retry_count,
    })
}

/// What one `-v` flag becomes: a bind/volume string for HostConfig.Binds, or an anonymous volume path.
#[derive(Debug, PartialEq)]
pub enum VolumeSpec {
    Bind(String),
    Anonymous(String),
}

/// `-v host:ctr[:opts]`, `-v name:ctr[:opts]`, `-v /ctr`. Relative host paths are made absolute like docker 23+.
pub fn volume(s: &str, cwd: &Path) -> Result<VolumeSpec> {
    let parts: Vec<&str> = s.split(':').collect();
    let (src, dst, mode) = match parts.as_slice() {
        [dst] => (None, *dst, None),
        [src, dst] => (Some(*src), *dst, None),
        [src, dst, mode] => (Some(*src), *dst, Some(*mode)),
        _ => bail!("invalid volume specification: '{s}'"),
    };
    if !dst.starts_with('/') {
        bail!("invalid volume specification: '{s}': invalid mount config for type \"volume\": invalid mount path: '{dst}' mount path must be absolute");
    }
    if dst == "/" {
        bail!("invalid volume specification: '{s}': invalid mount config for type \"bind\": invalid specification: destination can't be '/'");
    }
    if let Some(mode) = mode {
        for m in mode.split(',') {
            if !matches!(
                m,
                "ro" | "rw"
                    | "z"
                    | "Z"
                    | "nocopy"
                    | "shared"
                    | "rshared"
                    | "slave"
                    | "rslave"
                    | "private"
                    | "rprivate"
                    | "consistent"
                    | "cached"
                    | "delegated"
            ) {
                bail!("invalid mode: {m}");
            }
        }
    }
    let Some(src) = src else {
        return Ok(VolumeSpec::Anonymous(dst.to_string()));
    };
    if src.is_empty() {
        bail!("invalid volume specification: '{s}'");
    }
    let src = if src.starts_with('.') {
        cwd.join(src).to_string_lossy().into_owned()
    } else {
        src.to_string()
    };
    let mut bind = format!("{src}:{dst}");
    if let Some(mode) = mode {
        bind.push(':');
        bind.push_str(mode);
    }
    Ok(VolumeSpec::Bind(bind))
}

fn parse_bool(key: &str, v: &str) -> Result<bool> {
    match v {
        "" | "1" | "true" | "True" | "TRUE" => Ok(true),
        "0" | "false" | "False" | "FALSE" => Ok(false),
        _ => bail!("invalid value for {key}: {v}"),
    }
}

/// `--mount type=bind|volume|tmpfs,source=,target=,readonly[,...]`.
pub fn mount(s: &str) -> Result<Mount> {
    let mut m = Mount {
        typ: Some(MountTypeEnum::VOLUME),
        ..Default::default()
    };
    for field in s.split(',').filter(|f| !f.is_empty()) {
        let (key, value) = field.split_once('=').unwrap_or((field, ""));
        let key_lower = key.to_ascii_lowercase();
        match key_lower.as_str() {
            "type" => {
                m.typ = Some(match value {
                    "bind" => MountTypeEnum::BIND,
                    "volume" => MountTypeEnum::VOLUME,
                    "tmpfs" => MountTypeEnum::TMPFS,
                    _ => bail!("invalid value for 'type': {value:?}"),
                })
            }
            "source" | "src" => m.source = Some(value.to_string()),
            "target" | "dst" | "destination" => m.target = Some(value.to_string()),
            "readonly" | "ro" => m.read_only = Some(parse_bool(key, value)?),
            "bind-propagation" => {
                let p = serde_json::from_value(serde_json::Value::String(value.to_string()))
                    .map_err(|_| anyhow!("invalid value for bind-propagation: {value}"))?;
                m.bind_options
                    .get_or_insert_with(MountBindOptions::default)
                    .propagation = Some(p);
            }
            "volume-nocopy" => {
                m.volume_options
                    .get_or_insert_with(MountVolumeOptions::default)
                    .no_copy = Some(parse_bool(key, value)?)
            }
            "volume-subpath" => {
                m.volume_options
                    .get_or_insert_with(MountVolumeOptions::default)
                    .subpath = Some(value.to_string())
            }
            "volume-label" => {
                let (k, v) = value.split_once('=').unwrap_or((value, ""));
                m.volume_options
                    .get_or_insert_with(MountVolumeOptions::default)
                    .labels
                    .get_or_insert_with(HashMap::new)
                    .insert(k.to_string(), v.to_string());
            }
            "tmpfs-size" => {
                m.tmpfs_options
                    .get_or_insert_with(MountTmpfsOptions::default)
                    .size_bytes = Some(ram_in_bytes(value)?)
            }
            "tmpfs-mode" => {
                let mode = i64::from_str_radix(value, 8)
                    .map_err(|_| anyhow!("invalid value for tmpfs-mode: {value}"))?;
                m.tmpfs_options
                    .get_or_insert_with(MountTmpfsOptions::default)
                    .mode = Some(mode);
            }
            "consistency" => m.consistency = Some(value.to_string()),
            _ => bail!("unexpected key '{key}' in '{field}'"),
        }
    }
    if m.target.as_deref().unwrap_or("").is_empty() {
        bail!("target is required");
    }
    if m.typ == Some(MountTypeEnum::BIND) && m.source.as_deref().unwrap_or("").is_empty() {
        bail!("invalid argument \"{s}\" for \"--mount\" flag: source is required when specifying bind mount");
    }
    Ok(m)
}

/// `-e KEY=VAL` is kept; `-e KEY` takes KEY's value from our environment, or is dropped when unset (docker).
pub fn env_entry(s: &str, lookup: impl Fn(&str) -> Option<String>) -> Option<String> {
    if s.contains('=') {
        return Some(s.to_string());
    }
    lookup(s).map(|v| format!("{s}={v}"))
}

/// `--env-file`: one entry per line, `#` comments and blank lines skipped.
pub fn env_file(path: &Path, lookup: impl Fn(&str) -> Option<String>) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("open {}", path.display()))?;
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.starts_with('=') {
            bail!("invalid environment variable: {line}");
        }
        if let Some(e) = env_entry(line, &lookup) {
            out.push(e);
        }
    }
    Ok(out)
}

/// `--label k=v` / `--label k` into a map.
pub fn labels(items: &[String]) -> HashMap<String, String> {
    items
        .iter()
        .map(|l| match l.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (l.clone(), String::new()),
        })
        .collect()
}

fn port_range(s: &str) -> Result<(u16, u16)> {
    let parse =
        |p: &str| -> Result<u16> { p.parse().map_err(|_| anyhow!("invalid containerPort: {s}")) };
    match s.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (parse(a)?, parse(b)?);
            if b < a {
                bail!("invalid range specified for port: {s}");
            }
            Ok((a, b))
        }
        None => {
            let p = parse(s)?;
            Ok((p, p))
        }
    }
}

/// `-p [ip:][hostPort:]containerPort[/proto]` into ExposedPorts keys and PortBindings.
pub fn publish(specs: &[String]) -> Result<(Vec<String>, PortMap)> {
    let mut exposed = Vec::new();
    let mut map: PortMap = HashMap::new();
    for spec in specs {
        let (rest, proto) = spec.rsplit_once('/').unwrap_or((spec, "tcp"));
        let parts: Vec<&str> = rest.rsplitn(3, ':').collect();
        let (ctr, host, ip) = match parts.as_slice() {
            [c] => (*c, "", ""),
            [c, h] => (*c, *h, ""),
            [c, h, ip] => (*c, *h, ip.trim_start_matches('[').trim_end_matches(']')),
            _ => bail!("invalid port specification: {spec}"),
        };
        let (cs, ce) = port_range(ctr)?;
        let host_range = if host.is_empty() {
            None
        } else {
            Some(port_range(host)?)
        };
        if let Some((hs, he)) = host_range {
            if he - hs != ce - cs && hs != he {
                bail!("invalid ranges specified for container and host Ports: {ctr} and {host}");
            }
        }
        for (i, port) in (cs..=ce).enumerate() {
            let key = format!("{port}/{proto}");
            let host_port = match host_range {
                None => String::new(),
                Some((hs, he)) if hs == he => hs.to_string(),
                Some((hs, _)) => (hs + i as u16).to_string(),
            };
            exposed.push(key.clone());
            map.entry(key)
                .or_insert_with(|| Some(Vec::new()))
                .get_or_insert_with(Vec::new)
                .push(PortBinding {
                    host_ip: Some(ip.to_string()),
                    host_port: Some(host_port),
                });
        }
    }
    Ok((exposed, map))
}

/// `--device /dev/x[:/dev/y][:rwm]`.
pub fn device(s: &str) -> Result<DeviceMapping> {
    let parts: Vec<&str> = s.split(':').collect();
    let is_perm = |p: &str| !p.is_empty() && p.chars().all(|c| "rwm".contains(c));
    let (host, ctr, perms) = match parts.as_slice() {
        [h] => (*h, *h, "rwm"),
        [h, p] if is_perm(p) => (*h, *h, *p),
        [h, c] => (*h, *c, "rwm"),
        [h, c, p] if is_perm(p) => (*h, *c, *p),
        _ => bail!("invalid device specification: {s}"),
    };
    if !ctr.starts_with('/') {
        bail!("invalid device specification: {s}: container path must be absolute");
    }
    Ok(DeviceMapping {
        path_on_host: Some(host.to_string()),
        path_in_container: Some(ctr.to_string()),
        cgroup_permissions: Some(perms.to_string()),
    })
}

/// A health-check duration flag in nanoseconds.
pub fn duration_nanos(flag: &str, s: &str) -> Result<i64> {
    go_duration(s)
        .map(|secs| (secs * 1e9) as i64)
        .ok_or_else(|| {
            anyhow!(
                "invalid argument \"{s}\" for \"--{flag}\" flag: time: invalid duration \"{s}\""
            )
        })
}

/// A Go duration ("10m", "1h30m", "1.5s") in seconds, or None when `s` is not one.
pub fn go_duration(s: &str) -> Option<f64> {
    let mut total = 0.0;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        if num_end == 0 {
            return None;
        }
        let n: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mult = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += n * mult;
        rest = &rest[unit_end..];
    }
    Some(total)
}

/// `--since`/`--until` values: a Go duration relative to now becomes a unix timestamp; timestamps pass through
/// (RFC 3339 is converted to unix seconds, which every daemon accepts).
pub fn timestamp_arg(s: &str, now: i64) -> String {
    if let Some(secs) = go_duration(s) {
        return format!("{}", now - secs as i64);
    }
    if let Some(t) = crate::format::parse_rfc3339(s) {
        return t.to_string();
    }
    s.to_string()
}

/// `--format` value of `-s`/`--signal` style stop signals are passed through; `--filter k=v` into filters JSON.
pub fn filters_json(items: &[String]) -> Result<Option<String>> {
    if items.is_empty() {
        return Ok(None);
    }
    let mut map: HashMap<String, Vec<String>> = HashMap::new();
    for f in items {
        let (k, v) = f
            .split_once('=')
            .ok_or_else(|| anyhow!("bad format of filter (expected name=value)"))?;
        map.entry(k.trim().to_ascii_lowercase())
            .or_default()
            .push(v.to_string());
    }
    Ok(Some(serde_json::to_string(&map)?))
}

/// Sent as empty MaskedPaths and ReadonlyPaths instead (see run.rs), as the docker CLI does.
pub const SYSTEM_PATHS_UNCONFINED: &str = "systempaths=unconfined";

/// `--security-opt` as the docker CLI sends it: every option but `no-new-privileges` needs a
/// value (`k=v`, or the old `k:v`); `seccomp=<file>` is read here and sent as its JSON text
/// (`unconfined` and `builtin` are names, not files).
pub fn security_opts(opts: &[String]) -> Result<Vec<String>> {
    opts.iter()
        .filter(|opt| *opt != SYSTEM_PATHS_UNCONFINED)
        .map(|opt| {
            let (key, value) = opt
                .split_once('=')
                .or_else(|| opt.split_once(':'))
                .unwrap_or((opt.as_str(), ""));
            if value.is_empty() && key != "no-new-privileges" {
                bail!("Invalid --security-opt: {opt:?}");
            }
            if key != "seccomp" || matches!(value, "unconfined" | "builtin") {
                return Ok(opt.clone());
            }
            let text = std::fs::read(value)
                .with_context(|| format!("opening seccomp profile ({value}) failed"))?;
            let json: serde_json::Value = serde_json::from_slice(&text)
                .with_context(|| format!("compacting json for seccomp profile ({value}) failed"))?;
            Ok(format!("seccomp={json}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn security_opts_as_the_docker_cli() {
        let opts = |v: &[&str]| security_opts(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(
            opts(&["no-new-privileges", "seccomp=unconfined", "seccomp:builtin"]).unwrap(),
            ["no-new-privileges", "seccomp=unconfined", "seccomp:builtin"]
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p.json");
        std::fs::write(&file, "{\n  \"defaultAction\": \"SCMP_ACT_ALLOW\"\n}\n").unwrap();
        let sent = opts(&[&format!("seccomp={}", file.display())]).unwrap();
        assert_eq!(sent, [r#"seccomp={"defaultAction":"SCMP_ACT_ALLOW"}"#]);
        let err = opts(&["seccomp"]).unwrap_err().to_string();
        assert_eq!(err, r#"Invalid --security-opt: "seccomp""#);
        std::fs::write(&file, "{not json").unwrap();
        let err = format!(
            "{:#}",
            opts(&[&format!("seccomp={}", file.display())]).unwrap_err()
        );
        assert!(err.contains("compacting json for seccomp profile"), "{err}");
    }

    #[test]
    fn sizes() {
        assert_eq!(ram_in_bytes("512m").unwrap(), 512 << 20);
        assert_eq!(ram_in_bytes("1g").unwrap(), 1 << 30);
        assert_eq!(ram_in_bytes("1.5GiB").unwrap(), 3 << 29);
        assert_eq!(ram_in_bytes("100").unwrap(), 100);
        assert_eq!(ram_in_bytes("64kb").unwrap(), 64 << 10);
        assert!(ram_in_bytes("12x").is_err());
        assert!(ram_in_bytes("m").is_err());
        assert_eq!(memory_swap("-1").unwrap(), -1);
    }

    #[test]
    fn cpus() {
        assert_eq!(nano_cpus("1.5").unwrap(), 1_500_000_000);
        assert_eq!(nano_cpus("0.01").unwrap(), 10_000_000);
        assert!(nano_cpus("lots").is_err());
        assert!(nano_cpus("-1").is_err());
    }

    #[test]
    fn ulimits() {
        let u = ulimit("nofile=1024:2048").unwrap();
        assert_eq!(
            (u.name.as_deref(), u.soft, u.hard),
            (Some("nofile"), Some(1024), Some(2048))
        );
        let u = ulimit("nproc=10").unwrap();
        assert_eq!((u.soft, u.hard), (Some(10), Some(10)));
        assert!(ulimit("nofile").is_err());
        assert!(ulimit("nofile=3:2").is_err());
    }

    #[test]
    fn restarts() {
        assert_eq!(
            restart_policy("always").unwrap().name,
            Some(RestartPolicyNameEnum::ALWAYS)
        );
        let p = restart_policy("on-failure:3").unwrap();
        assert_eq!(
            (p.name, p.maximum_retry_count),
            (Some(RestartPolicyNameEnum::ON_FAILURE), Some(3))
        );
        assert!(restart_policy("always:3").is_err());
        assert!(restart_policy("sometimes").is_err());
    }

    #[test]
    fn volumes() {
        let cwd = Path::new("/home/u");
        assert_eq!(
            volume("/h:/c", cwd).unwrap(),
            VolumeSpec::Bind("/h:/c".into())
        );
        assert_eq!(
            volume("/h:/c:ro", cwd).unwrap(),
            VolumeSpec::Bind("/h:/c:ro".into())
        );
        assert_eq!(
            volume("data:/c", cwd).unwrap(),
            VolumeSpec::Bind("data:/c".into())
        );
        assert_eq!(
            volume("./d:/c", cwd).unwrap(),
            VolumeSpec::Bind("/home/u/./d:/c".into())
        );
        assert_eq!(
            volume("/c", cwd).unwrap(),
            VolumeSpec::Anonymous("/c".into())
        );
        assert!(volume("/h:c", cwd).is_err());
        assert!(volume("/h:/c:bogus", cwd).is_err());
        assert!(volume("a:b:c:d", cwd).is_err());
    }

    #[test]
    fn mounts() {
        let m = mount("type=bind,source=/h,target=/c,readonly").unwrap();
        assert_eq!(m.typ, Some(MountTypeEnum::BIND));
        assert_eq!(
            (m.source.as_deref(), m.target.as_deref(), m.read_only),
            (Some("/h"), Some("/c"), Some(true))
        );
        let m = mount("type=tmpfs,dst=/t,tmpfs-size=64m,tmpfs-mode=1770").unwrap();
        let t = m.tmpfs_options.unwrap();
        assert_eq!((t.size_bytes, t.mode), (Some(64 << 20), Some(0o1770)));
        let m = mount("src=vol,target=/v").unwrap();
        assert_eq!(m.typ, Some(MountTypeEnum::VOLUME));
        assert!(mount("type=bind,target=/c").is_err());
        assert!(mount("type=volume,source=x").is_err());
        assert!(mount("type=weird,target=/x").is_err());
        assert!(mount("target=/x,bogus=1").is_err());
    }

    #[test]
    fn env() {
        let lookup = |k: &str| (k == "HOME").then(|| "/root".to_string());
        assert_eq!(env_entry("A=1", lookup).as_deref(), Some("A=1"));
        assert_eq!(env_entry("HOME", lookup).as_deref(), Some("HOME=/root"));
        assert_eq!(env_entry("UNSET", lookup), None);
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("env");
        std::fs::write(&f, "# comment\nA=1\n\nHOME\nB=x=y\n").unwrap();
        assert_eq!(
            env_file(&f, lookup).unwrap(),
            vec!["A=1", "HOME=/root", "B=x=y"]
        );
        assert!(env_file(&dir.path().join("missing"), lookup).is_err());
    }

    #[test]
    fn ports() {
        let (exposed, map) = publish(&[
            "8080:80".into(),
            "127.0.0.1:53:53/udp".into(),
            "9000".into(),
        ])
        .unwrap();
        assert_eq!(exposed, vec!["80/tcp", "53/udp", "9000/tcp"]);
        let b = &map["80/tcp"].as_ref().unwrap()[0];
        assert_eq!(
            (b.host_ip.as_deref(), b.host_port.as_deref()),
            (Some(""), Some("8080"))
        );
        let b = &map["53/udp"].as_ref().unwrap()[0];
        assert_eq!(b.host_ip.as_deref(), Some("127.0.0.1"));
        let (exposed, _) = publish(&["8000-8001:80-81".into()]).unwrap();
        assert_eq!(exposed, vec!["80/tcp", "81/tcp"]);
        assert!(publish(&["x:80".into()]).is_err());
    }

    #[test]
    fn durations_and_timestamps() {
        assert_eq!(go_duration("10m"), Some(600.0));
        assert_eq!(go_duration("1h30m"), Some(5400.0));
        assert_eq!(go_duration("1.5s"), Some(1.5));
        assert_eq!(go_duration("2023-01-01"), None);
        assert_eq!(go_duration("10"), None);
        assert_eq!(timestamp_arg("10m", 1000), "400");
        assert_eq!(timestamp_arg("1700000000", 0), "1700000000");
        assert_eq!(timestamp_arg("2023-11-14T22:13:20Z", 0), "1700000000");
    }

    #[test]
    fn devices_and_health_durations() {
        let d = device("/dev/fuse").unwrap();
        assert_eq!(
            (
                d.path_on_host.as_deref(),
                d.path_in_container.as_deref(),
                d.cgroup_permissions.as_deref()
            ),
            (Some("/dev/fuse"), Some("/dev/fuse"), Some("rwm"))
        );
        let d = device("/dev/sda:/dev/xvda:r").unwrap();
        assert_eq!(
            (
                d.path_in_container.as_deref(),
                d.cgroup_permissions.as_deref()
            ),
            (Some("/dev/xvda"), Some("r"))
        );
        assert!(device("/dev/sda:rel").is_err());
        assert_eq!(
            duration_nanos("health-interval", "1.5s").unwrap(),
            1_500_000_000
        );
        assert!(duration_nanos("health-interval", "soon").is_err());
    }

    #[test]
    fn filters() {
        assert_eq!(filters_json(&[]).unwrap(), None);
        assert_eq!(
            filters_json(&["status=exited".into()]).unwrap().unwrap(),
            r#"{"status":["exited"]}"#
        );
        assert!(filters_json(&["nope".into()]).is_err());
    }
}
