//! Binds, volumes and tmpfs mounts from `HostConfig.Binds`, `HostConfig.Mounts`,
//! `HostConfig.Tmpfs` and the image's/`Config.Volumes` (anonymous volumes): resolved once at
//! create into inspect's `Mounts`, turned into OCI mounts at each start.

use std::collections::BTreeSet;
use std::path::Path;

use bollard_stubs::models::{HostConfig, MountPoint, MountPointTypeEnum, MountTypeEnum};
use oci_spec::runtime::{Mount as OciMount, MountBuilder};

use crate::error::{Error, Result};
use crate::Engine;

/// One mount asked for, before volumes are created.
#[derive(Debug, Clone, PartialEq)]
struct Wanted {
    kind: MountPointTypeEnum,
    /// Host path (bind) or volume name (empty: anonymous).
    source: String,
    destination: String,
    rw: bool,
    mode: String,
}

/// A volume this create made, whose content must come from the image (Docker copies the
/// image's files at the mount point into a new, empty volume).
pub struct NewVolume {
    pub name: String,
    pub destination: String,
}

fn invalid(msg: String) -> Error {
    Error::InvalidParameter(msg)
}

/// `-v src:dst[:opts]`, `-v name:dst`, `-v /dst`.
fn parse_bind(spec: &str) -> Result<Wanted> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (source, destination, opts) = match parts.as_slice() {
        [dst] => ("", *dst, ""),
        [src, dst] => (*src, *dst, ""),
        [src, dst, opts] => (*src, *dst, *opts),
        _ => return Err(invalid(format!("invalid volume specification: '{spec}'"))),
    };
    if !destination.starts_with('/') {
        return Err(invalid(format!(
            "invalid volume specification: '{spec}': invalid mount config for type \"volume\": invalid mount path: '{destination}' mount path must be absolute"
        )));
    }
    let mut rw = true;
    for opt in opts.split(',').filter(|o| !o.is_empty()) {
        match opt {
            "ro" => rw = false,
            "rw" => rw = true,
            "z" | "Z" | "nocopy" | "private" | "rprivate" | "shared" | "rshared" | "slave"
            | "rslave" | "consistent" | "cached" | "delegated" => {}
            other => return Err(invalid(format!("invalid mode: {other}"))),
        }
    }
    let kind = if source.starts_with('/') {
        MountPointTypeEnum::BIND
    } else {
        MountPointTypeEnum::VOLUME
    };
    let destination = destination_of(destination, kind)
        .map_err(|e| invalid(format!("invalid volume specification: '{spec}': {e}")))?;
    Ok(Wanted {
        kind,
        source: source.to_string(),
        destination,
        rw,
        mode: opts.to_string(),
    })
}

/// The cleaned mount destination; never the container's root (Docker's message).
fn destination_of(path: &str, kind: MountPointTypeEnum) -> std::result::Result<String, String> {
    match clean(path) {
        root if root == "/" => Err(format!(
            "invalid mount config for type \"{kind}\": invalid specification: destination can't be '/'"
        )),
        cleaned => Ok(cleaned),
    }
}

/// `/a//b/` → `/a/b`, as Go's filepath.Clean for the absolute paths mounts use.
fn clean(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

fn wanted_mounts(host: &HostConfig, config_volumes: &BTreeSet<String>) -> Result<Vec<Wanted>> {
    let mut wanted = Vec::new();
    for bind in host.binds.iter().flatten() {
        wanted.push(parse_bind(bind)?);
    }
    for m in host.mounts.iter().flatten() {
        let destination = m
            .target
            .as_deref()
            .filter(|t| t.starts_with('/'))
            .ok_or_else(|| {
                invalid("invalid mount config: Target must be an absolute path".into())
            })?;
        let kind = match m.typ {
            Some(MountTypeEnum::BIND) => MountPointTypeEnum::BIND,
            Some(MountTypeEnum::VOLUME) => MountPointTypeEnum::VOLUME,
            Some(MountTypeEnum::TMPFS) => MountPointTypeEnum::TMPFS,
            other => {
                return Err(invalid(format!(
                    "invalid mount config: mount type {other:?} is not supported"
                )))
            }
        };
        let source = m.source.clone().unwrap_or_default();
        if kind == MountPointTypeEnum::BIND && !Path::new(&source).is_absolute() {
            return Err(invalid(format!(
                "invalid mount config for type \"bind\": invalid mount path: '{source}' mount path must be absolute"
            )));
        }
        if kind == MountPointTypeEnum::BIND && !Path::new(&source).exists() {
            return Err(invalid(format!(
                "invalid mount config for type \"bind\": bind source path does not exist: {source}"
            )));
        }
        wanted.push(Wanted {
            kind,
            source,
            destination: destination_of(destination, kind).map_err(invalid)?,
            rw: !m.read_only.unwrap_or(false),
            mode: String::new(),
        });
    }
    for (destination, _) in host.tmpfs.iter().flatten() {
        wanted.push(Wanted {
            kind: MountPointTypeEnum::TMPFS,
            source: String::new(),
            destination: destination_of(destination, MountPointTypeEnum::TMPFS).map_err(invalid)?,
            rw: true,
            mode: String::new(),
        });
    }
    let taken: BTreeSet<String> = wanted.iter().map(|w| w.destination.clone()).collect();
    for destination in config_volumes {
        let destination = clean(destination);
        if !taken.contains(&destination) {
            wanted.push(Wanted {
                kind: MountPointTypeEnum::VOLUME,
                source: String::new(),
                destination,
                rw: true,
                mode: String::new(),
            });
        }
    }
    let mut seen = BTreeSet::new();
    for w in &wanted {
        if !seen.insert(w.destination.clone()) {
            return Err(invalid(format!("Duplicate mount point: {}", w.destination)));
        }
    }
    Ok(wanted)
}

impl Engine {
    /// Resolve a new container's mounts: bind sources checked (a missing `-v` source dir is
    /// created, as Docker does), named volumes created when missing, anonymous ones made.
    /// Returns inspect's `Mounts` and the volumes that are new (to fill from the image).
    pub(crate) fn resolve_mounts(
        &self,
        host: &HostConfig,
        config_volumes: &BTreeSet<String>,
    ) -> Result<(Vec<MountPoint>, Vec<NewVolume>)> {
        let mut points = Vec::new();
        let mut new_volumes = Vec::new();
        for w in wanted_mounts(host, config_volumes)? {
            let mut point = MountPoint {
                typ: Some(w.kind),
                destination: Some(w.destination.clone()),
                mode: Some(w.mode.clone()),
                rw: Some(w.rw),
                propagation: Some(String::new()),
                ..Default::default()
            };
            match w.kind {
                MountPointTypeEnum::BIND => {
                    if !Path::new(&w.source).exists() {
                        std::fs::create_dir_all(&w.source).map_err(|e| {
                            invalid(format!("cannot create bind source {}: {e}", w.source))
                        })?;
                    }
                    point.source = Some(w.source.clone());
                    point.propagation = Some("rprivate".into());
                }
                MountPointTypeEnum::VOLUME => {
                    let (name, source, created) = self.volume_for_mount(&w.source)?;
                    if created {
                        new_volumes.push(NewVolume {
                            name: name.clone(),
                            destination: w.destination.clone(),
                        });
                    }
                    point.source = Some(source);
                    point.name = Some(name);
                    point.driver = Some("local".into());
                }
                _ => point.source = Some(String::new()),
            }
            points.push(point);
        }
        Ok((points, new_volumes))
    }
}

impl Engine {
    /// The volume `name` (a new anonymous one when empty), created when missing: its name,
    /// its directory, and whether this call made it.
    fn volume_for_mount(&self, name: &str) -> Result<(String, String, bool)> {
        let name = (!name.is_empty()).then_some(name);
        let (volume, created) =
            self.volumes
                .ensure(name, Default::default(), Default::default())?;
        if created {
            self.events
                .emit("volume", "create", &volume.name, &[("driver", "local")]);
        }
        let source = self.volumes.mountpoint(&volume.name).display().to_string();
        Ok((volume.name, source, created))
    }

    /// Fill a volume this create made with what the image has at `destination`.
    pub(crate) fn volumes_populate(
        &self,
        name: &str,
        rootfs: &Path,
        destination: &str,
    ) -> Result<()> {
        self.volumes.populate_from(name, rootfs, destination)
    }

    /// `rm -v`: the container's anonymous volumes go with it (named ones stay).
    pub(crate) fn remove_anonymous_volumes(&self, record: &super::Container) {
        for point in &record.mounts {
            let Some(name) = point.name.as_deref() else {
                continue;
            };
            let anonymous = self
                .volumes
                .get(name)
                .is_ok_and(|v| v.labels.contains_key(crate::volumes::ANONYMOUS_LABEL));
            if anonymous {
                if let Err(e) = self.remove_volume(name, false) {
                    eprintln!("berthd: cannot remove volume {name}: {}", e.message());
                }
            }
        }
    }
}

/// The OCI mounts for `points` (tmpfs options from `HostConfig.Tmpfs` / `Mounts`), parents
/// before children.
pub fn oci_mounts(points: &[MountPoint], host: &HostConfig) -> Result<Vec<OciMount>> {
    let mut sorted: Vec<&MountPoint> = points.iter().collect();
    sorted.sort_by_key(|p| p.destination.as_deref().unwrap_or("").matches('/').count());
    let mut mounts = Vec::new();
    for p in sorted {
        let destination = p.destination.clone().unwrap_or_default();
        let mount = match p.typ {
            Some(MountPointTypeEnum::TMPFS) => {
                let mut options = vec!["nosuid".to_string(), "nodev".into(), "noexec".into()];
                options.extend(tmpfs_options(host, &destination));
                MountBuilder::default()
                    .destination(destination)
                    .typ("tmpfs")
                    .source("tmpfs")
                    .options(options)
                    .build()
            }
            _ => {
                let mut options = vec!["rbind".to_string(), "rprivate".into()];
                if p.rw == Some(false) {
                    options.push("ro".into());
                }
                MountBuilder::default()
                    .destination(destination)
                    .typ("bind")
                    .source(p.source.clone().unwrap_or_default())
                    .options(options)
                    .build()
            }
        };
        mounts.push(mount.map_err(|e| anyhow::anyhow!("bad mount: {e}"))?);
    }
    Ok(mounts)
}

fn tmpfs_options(host: &HostConfig, destination: &str) -> Vec<String> {
    if let Some(opts) = host.tmpfs.as_ref().and_then(|t| t.get(destination)) {
        return opts
            .split(',')
            .filter(|o| !o.is_empty())
            .map(String::from)
            .collect();
    }
    let from_mounts = host.mounts.iter().flatten().find(|m| {
        m.typ == Some(MountTypeEnum::TMPFS)
            && m.target.as_deref().map(clean).as_deref() == Some(destination)
    });
    let Some(opts) = from_mounts.and_then(|m| m.tmpfs_options.as_ref()) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if let Some(size) = opts.size_bytes.filter(|s| *s > 0) {
        out.push(format!("size={size}"));
    }
    if let Some(mode) = opts.mode.filter(|m| *m > 0) {
        out.push(format!("mode={mode:o}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_forms() {
        let w = parse_bind("/srv/data:/data:ro").unwrap();
        assert_eq!(
            (w.kind, w.source.as_str(), w.destination.as_str(), w.rw),
            (MountPointTypeEnum::BIND, "/srv/data", "/data", false)
        );
        let w = parse_bind("cache:/var/cache/").unwrap();
        assert_eq!(
            (w.kind, w.source.as_str(), w.destination.as_str(), w.rw),
            (MountPointTypeEnum::VOLUME, "cache", "/var/cache", true)
        );
        let w = parse_bind("/anon").unwrap();
        assert_eq!(
            (w.kind, w.source.as_str()),
            (MountPointTypeEnum::VOLUME, "")
        );
        assert!(parse_bind("a:relative").is_err());
        assert!(parse_bind("/a:/b:bogus").is_err());
        // Nothing is mounted over the container's root.
        assert_eq!(
            parse_bind("/:/").unwrap_err().message(),
            "invalid volume specification: '/:/': invalid mount config for type \"bind\": \
             invalid specification: destination can't be '/'"
        );
        assert!(parse_bind("v:/x/..")
            .unwrap_err()
            .message()
            .contains("type \"volume\""));
    }

    #[test]
    fn duplicate_destinations_are_refused() {
        let host = HostConfig {
            binds: Some(vec!["/a:/data".into(), "v:/data".into()]),
            ..Default::default()
        };
        let err = wanted_mounts(&host, &BTreeSet::new())
            .unwrap_err()
            .to_string();
        assert!(err.contains("Duplicate mount point: /data"), "{err}");
    }

    #[test]
    fn image_volumes_not_otherwise_mounted_become_anonymous() {
        let host = HostConfig {
            binds: Some(vec!["named:/data".into()]),
            ..Default::default()
        };
        let volumes: BTreeSet<String> = ["/data".to_string(), "/logs".to_string()].into();
        let wanted = wanted_mounts(&host, &volumes).unwrap();
        assert_eq!(wanted.len(), 2);
        assert_eq!(
            (wanted[1].destination.as_str(), wanted[1].source.as_str()),
            ("/logs", "")
        );
    }
}
