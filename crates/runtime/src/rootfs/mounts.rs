//! The config's `mounts`: option parsing, and mounting each entry onto a destination resolved
//! inside the rootfs (a symlink in the image never sends a mount outside it).

use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result};
use nix::fcntl::OFlag;
use nix::mount::{mount, MsFlags};
use nix::sys::stat::Mode;
use nix::sys::statvfs::{statvfs, FsFlags};
use oci_spec::runtime::Mount;

use super::paths::{create_in_root, is_kernel_interface, refuse_symlinks, reopen_in_root, Kind};
use crate::cgroups::CgroupMountSource;
use crate::sys::fd_path;

/// A mount entry's options split the way mount(2) wants them.
#[derive(Debug, PartialEq, Eq)]
pub struct MountOptions {
    pub flags: MsFlags,
    /// Propagation changes (private, rslave…) need their own mount(2) calls after the mount.
    pub propagation: Vec<MsFlags>,
    /// Filesystem-specific options (`mode=755`, `size=64k`, `newinstance`…).
    pub data: Vec<String>,
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            flags: MsFlags::empty(),
            propagation: vec![],
            data: vec![],
        }
    }
}

impl MountOptions {
    pub fn parse(options: &[String]) -> MountOptions {
        let mut parsed = MountOptions::default();
        for opt in options {
            match flag_of(opt) {
                Some((flag, true)) => parsed.flags.insert(flag),
                Some((flag, false)) => parsed.flags.remove(flag),
                None => match propagation_of(opt) {
                    Some(p) => parsed.propagation.push(p),
                    None => parsed.data.push(opt.clone()),
                },
            }
        }
        parsed
    }

    pub fn is_bind(&self) -> bool {
        self.flags.contains(MsFlags::MS_BIND)
    }

    fn data(&self) -> Option<String> {
        (!self.data.is_empty()).then(|| self.data.join(","))
    }

    /// The flags a bind mount gets in its remount (mount(2) ignores them on the bind itself).
    fn remount_flags(&self) -> MsFlags {
        self.flags - (MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_REMOUNT)
    }
}

/// `(flag, set?)` for the options that are mount flags; `false` means the option clears it.
fn flag_of(opt: &str) -> Option<(MsFlags, bool)> {
    use MsFlags as F;
    Some(match opt {
        "ro" => (F::MS_RDONLY, true),
        "rw" => (F::MS_RDONLY, false),
        "nosuid" => (F::MS_NOSUID, true),
        "suid" => (F::MS_NOSUID, false),
        "nodev" => (F::MS_NODEV, true),
        "dev" => (F::MS_NODEV, false),
        "noexec" => (F::MS_NOEXEC, true),
        "exec" => (F::MS_NOEXEC, false),
        "sync" => (F::MS_SYNCHRONOUS, true),
        "async" => (F::MS_SYNCHRONOUS, false),
        "dirsync" => (F::MS_DIRSYNC, true),
        "remount" => (F::MS_REMOUNT, true),
        "mand" => (F::MS_MANDLOCK, true),
        "nomand" => (F::MS_MANDLOCK, false),
        "atime" => (F::MS_NOATIME, false),
        "noatime" => (F::MS_NOATIME, true),
        "diratime" => (F::MS_NODIRATIME, false),
        "nodiratime" => (F::MS_NODIRATIME, true),
        "relatime" => (F::MS_RELATIME, true),
        "norelatime" => (F::MS_RELATIME, false),
        "strictatime" => (F::MS_STRICTATIME, true),
        "nostrictatime" => (F::MS_STRICTATIME, false),
        "bind" => (F::MS_BIND, true),
        "rbind" => (F::MS_BIND | F::MS_REC, true),
        _ => return None,
    })
}

fn propagation_of(opt: &str) -> Option<MsFlags> {
    use MsFlags as F;
    Some(match opt {
        "private" => F::MS_PRIVATE,
        "rprivate" => F::MS_PRIVATE | F::MS_REC,
        "shared" => F::MS_SHARED,
        "rshared" => F::MS_SHARED | F::MS_REC,
        "slave" => F::MS_SLAVE,
        "rslave" => F::MS_SLAVE | F::MS_REC,
        "unbindable" => F::MS_UNBINDABLE,
        "runbindable" => F::MS_UNBINDABLE | F::MS_REC,
        _ => return None,
    })
}

/// What mounting needs besides the entry itself.
pub struct MountContext<'a> {
    /// The rootfs, opened as a directory on the rootfs bind mount.
    pub root: &'a OwnedFd,
    pub bundle: &'a Path,
    pub cgroup_sources: &'a [CgroupMountSource],
    /// In a user namespace, sysfs may be refused; the host's is bind-mounted instead.
    pub in_user_namespace: bool,
}

/// A destination relative to the rootfs (`/dev/pts` → `dev/pts`); `..` is kept for
/// openat2 to clamp inside the root.
pub fn relative(dest: &Path) -> PathBuf {
    dest.components()
        .filter(|c| !matches!(c, Component::RootDir | Component::CurDir))
        .collect()
}

pub fn mount_entry(ctx: &MountContext, m: &Mount) -> Result<()> {
    let dest = relative(m.destination());
    let opts = MountOptions::parse(m.options().as_deref().unwrap_or_default());
    let typ = m.typ().as_deref().unwrap_or("");
    let what = || format!("mount {} ({typ})", m.destination().display());
    if is_kernel_interface(&dest) || typ == "proc" || typ == "sysfs" {
        refuse_symlinks(ctx.root, &dest).with_context(what)?;
    }
    if typ == "cgroup" || typ == "cgroup2" {
        return mount_cgroup(ctx, &dest, &opts).with_context(what);
    }
    if opts.is_bind() || typ == "bind" {
        let source = ctx
            .bundle
            .join(m.source().as_deref().context("bind mount without source")?);
        return bind(ctx.root, &source, &dest, &opts).with_context(what);
    }
    let source = m.source().as_deref().map_or(Path::new(typ), |s| s);
    let target = create_in_root(ctx.root, &dest, Kind::Dir).with_context(what)?;
    let result = mount(
        Some(source),
        fd_path(&target).as_str(),
        Some(typ),
        opts.flags,
        opts.data().as_deref(),
    );
    match result {
        Err(nix::Error::EPERM) if typ == "sysfs" && ctx.in_user_namespace => {
            let rbind = MountOptions::parse(&["rbind".into(), "nosuid".into(), "ro".into()]);
            bind(ctx.root, Path::new("/sys"), &dest, &rbind).with_context(what)
        }
        r => {
            r.with_context(|| format!("{}: mount failed", what()))?;
            if typ == "proc" {
                check_procfs(ctx.root, &dest).with_context(what)?;
            }
            set_propagation(ctx.root, &dest, &opts.propagation).with_context(what)
        }
    }
}

/// What is at `dest` now must be the procfs just mounted: the runtime writes sysctls and
/// masks files under it.
fn check_procfs(root: &OwnedFd, dest: &Path) -> Result<()> {
    let fd = reopen_in_root(root, dest)?;
    let fs = nix::sys::statfs::fstatfs(&fd).context("cannot statfs the proc mount")?;
    if fs.filesystem_type() != nix::sys::statfs::PROC_SUPER_MAGIC {
        anyhow::bail!(
            "/{} is not procfs after mounting proc there",
            dest.display()
        );
    }
    Ok(())
}

/// Bind `source` (a host path) onto `dest` inside the root, then apply the options that a
/// bind mount only takes on a remount (ro, nosuid…).
fn bind(root: &OwnedFd, source: &Path, dest: &Path, opts: &MountOptions) -> Result<()> {
    let meta = std::fs::metadata(source)
        .with_context(|| format!("bind source {} does not exist", source.display()))?;
    let kind = if meta.is_dir() { Kind::Dir } else { Kind::File };
    let target = create_in_root(root, dest, kind)?;
    bind_at(source, &target, || reopen_in_root(root, dest), dest, opts)?;
    set_propagation(root, dest, &opts.propagation)
}

/// Bind `source` onto `target`, then remount it with the options that a bind mount only
/// takes on a remount; `reopen` opens the destination again, under the new mount.
fn bind_at(
    source: &Path,
    target: &OwnedFd,
    reopen: impl FnOnce() -> Result<OwnedFd>,
    dest: &Path,
    opts: &MountOptions,
) -> Result<()> {
    let flags = MsFlags::MS_BIND | (opts.flags & MsFlags::MS_REC);
    mount(
        Some(source),
        fd_path(target).as_str(),
        None::<&str>,
        flags,
        None::<&str>,
    )
    .with_context(|| format!("cannot bind {}", source.display()))?;
    if opts.remount_flags().is_empty() {
        return Ok(());
    }
    remount(&reopen()?, dest, opts.remount_flags(), Some(source))
}

/// Remount the mount whose root `target` is (opened after the mount; `dest` names it) with
/// `flags`. In a user namespace the kernel refuses to clear flags it locked on the original
/// mount: retry keeping those of `locked_from`.
fn remount(
    target: &OwnedFd,
    dest: &Path,
    flags: MsFlags,
    locked_from: Option<&Path>,
) -> Result<()> {
    let path = fd_path(target);
    let base = MsFlags::MS_BIND | MsFlags::MS_REMOUNT;
    let first = mount(
        None::<&str>,
        path.as_str(),
        None::<&str>,
        base | flags,
        None::<&str>,
    );
    match (first, locked_from) {
        (Err(nix::Error::EPERM), Some(source)) => {
            let locked = locked_flags(source)?;
            mount(
                None::<&str>,
                path.as_str(),
                None::<&str>,
                base | flags | locked,
                None::<&str>,
            )
        }
        (r, _) => r,
    }
    .with_context(|| format!("cannot remount {} with {flags:?}", dest.display()))
}

/// The flags of the filesystem at `path` that a user namespace cannot clear.
pub fn locked_flags(path: &Path) -> Result<MsFlags> {
    let st = statvfs(path).with_context(|| format!("statvfs {}", path.display()))?;
    let map = [
        (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ];
    Ok(map
        .iter()
        .filter(|(st_flag, _)| st.flags().contains(*st_flag))
        .fold(MsFlags::empty(), |acc, (_, ms)| acc | *ms))
}

fn set_propagation(root: &OwnedFd, dest: &Path, propagation: &[MsFlags]) -> Result<()> {
    if propagation.is_empty() {
        return Ok(());
    }
    let target = reopen_in_root(root, dest)?;
    for flags in propagation {
        mount(
            None::<&str>,
            fd_path(&target).as_str(),
            None::<&str>,
            *flags,
            None::<&str>,
        )
        .with_context(|| format!("cannot set propagation {flags:?} on {}", dest.display()))?;
    }
    Ok(())
}

/// The container's own cgroup, bind-mounted at `dest`: on v2 the cgroup directory itself; on
/// v1 a tmpfs holding one directory per hierarchy.
fn mount_cgroup(ctx: &MountContext, dest: &Path, opts: &MountOptions) -> Result<()> {
    let bind_opts = MountOptions {
        flags: opts.flags | MsFlags::MS_BIND | MsFlags::MS_REC,
        ..Default::default()
    };
    let v1 = ctx.cgroup_sources.iter().any(|s| s.subdir.is_some());
    if !v1 {
        for source in ctx.cgroup_sources {
            bind(ctx.root, &source.host_path, dest, &bind_opts)?;
        }
        return Ok(());
    }
    let target = create_in_root(ctx.root, dest, Kind::Dir)?;
    let tmpfs_flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(
        Some("tmpfs"),
        fd_path(&target).as_str(),
        Some("tmpfs"),
        tmpfs_flags,
        Some("mode=755"),
    )
    .context("cannot mount the tmpfs for cgroup hierarchies")?;
    let tmpfs = reopen_in_root(ctx.root, dest)?;
    for source in ctx.cgroup_sources {
        let name = source.subdir.as_deref().unwrap_or_default();
        bind_into(&tmpfs, name, &source.host_path, &bind_opts)
            .with_context(|| format!("cannot mount cgroup {name}"))?;
    }
    link_comounted_controllers(&tmpfs, ctx.cgroup_sources)?;
    if opts.flags.contains(MsFlags::MS_RDONLY) {
        remount(&tmpfs, dest, opts.flags, None)?;
    }
    Ok(())
}

/// Bind the host directory `source` onto a new directory `name` of `dir`, a tmpfs the
/// runtime has just mounted: nothing in it is the image's, so it takes no walk through the
/// rootfs (which cost most of a v1 host's cgroup mounts).
fn bind_into(dir: &OwnedFd, name: &str, source: &Path, opts: &MountOptions) -> Result<()> {
    nix::sys::stat::mkdirat(dir, name, Mode::from_bits_truncate(0o755))
        .context("cannot make its directory")?;
    let open = || {
        let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        nix::fcntl::openat(dir, name, flags, Mode::empty()).context("cannot open its directory")
    };
    bind_at(source, &open()?, open, Path::new(name), opts)
}

/// `cpu` and `cpuacct` as links to `cpu,cpuacct` in `dir`, where controllers share a
/// hierarchy.
fn link_comounted_controllers(dir: &OwnedFd, sources: &[CgroupMountSource]) -> Result<()> {
    for name in sources.iter().filter_map(|s| s.subdir.as_deref()) {
        if !name.contains(',') {
            continue;
        }
        for single in name.split(',') {
            let single = single.strip_prefix("name=").unwrap_or(single);
            match nix::unistd::symlinkat(name, dir, single) {
                Ok(()) | Err(nix::Error::EEXIST) => {}
                Err(e) => return Err(e).with_context(|| format!("cannot link cgroup {single}")),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(list: &[&str]) -> MountOptions {
        MountOptions::parse(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn options_split_into_flags_propagation_and_data() {
        let o = opts(&["nosuid", "strictatime", "mode=755", "size=65536k", "rslave"]);
        assert_eq!(o.flags, MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME);
        assert_eq!(o.propagation, vec![MsFlags::MS_SLAVE | MsFlags::MS_REC]);
        assert_eq!(o.data(), Some("mode=755,size=65536k".into()));
    }

    #[test]
    fn later_option_wins_and_rbind_is_recursive_bind() {
        let o = opts(&["ro", "rw", "rbind"]);
        assert!(!o.flags.contains(MsFlags::MS_RDONLY));
        assert!(o.is_bind() && o.flags.contains(MsFlags::MS_REC));
        assert!(opts(&["rbind", "ro"]).remount_flags() == MsFlags::MS_RDONLY);
    }

    #[test]
    fn destinations_are_relative_to_the_rootfs() {
        assert_eq!(relative(Path::new("/dev/pts")), PathBuf::from("dev/pts"));
        assert_eq!(
            relative(Path::new("/a/../../etc")),
            PathBuf::from("a/../../etc")
        );
    }
}
