//! The container's root filesystem: mounts prepared inside the rootfs, /dev, pivot_root, then
//! sysctls, masked and read-only paths and a read-only root.

pub mod devices;
pub mod mounts;
pub mod paths;

use std::os::fd::OwnedFd;
use std::path::Path;

use anyhow::{bail, Context, Result};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::SFlag;
use oci_spec::runtime::{Linux, Spec};

use crate::cgroups::CgroupMountSource;
use mounts::{MountContext, MountOptions};

/// Everything the rootfs setup needs to know.
pub struct RootfsPlan<'a> {
    pub spec: &'a Spec,
    pub rootfs: &'a Path,
    pub bundle: &'a Path,
    pub cgroup_sources: &'a [CgroupMountSource],
    pub in_user_namespace: bool,
    pub no_pivot: bool,
    /// Runs once the mounts are made, before pivot_root (createContainer hooks).
    pub before_pivot: Option<&'a dyn Fn() -> Result<()>>,
}

fn linux(spec: &Spec) -> Option<&Linux> {
    spec.linux().as_ref()
}

/// Runs in the container's init, in its new mount namespace: builds the rootfs and makes it `/`.
pub fn setup(plan: &RootfsPlan) -> Result<()> {
    let propagation = root_propagation(plan.spec)?;
    // Mounts made from here on must not reach the host's mount namespace.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        propagation.unwrap_or(MsFlags::MS_SLAVE | MsFlags::MS_REC),
        None::<&str>,
    )
    .context("cannot make / a slave mount")?;
    if propagation.is_some_and(|p| p.contains(MsFlags::MS_SHARED)) {
        // pivot_root refuses a shared parent mount; "/" gets its shared propagation back
        // after the pivot.
        make_parent_mount_private(plan.rootfs)?;
    }
    // pivot_root needs the new root to be a mount point.
    mount(
        Some(plan.rootfs),
        plan.rootfs,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .with_context(|| format!("cannot bind the rootfs {}", plan.rootfs.display()))?;
    let root = nix::fcntl::open(
        plan.rootfs,
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .with_context(|| format!("cannot open the rootfs {}", plan.rootfs.display()))?;
    mount_all(plan, &root)?;
    if let Some(before_pivot) = plan.before_pivot {
        before_pivot()?;
    }
    if plan.no_pivot {
        move_root(plan.rootfs)?;
    } else {
        pivot(&root)?;
    }
    if let Some(p) = propagation {
        mount(None::<&str>, "/", None::<&str>, p, None::<&str>)
            .context("cannot set rootfsPropagation")?;
    }
    Ok(())
}

/// After pivot, with /proc mounted: sysctls, masked and read-only paths, the read-only root.
/// Separate from `setup` because the console is created in between (it needs /dev/pts).
pub fn finish(spec: &Spec) -> Result<()> {
    let linux = linux(spec);
    if let Some(sysctl) = linux.and_then(|l| l.sysctl().as_ref()) {
        for (key, value) in sysctl {
            write_sysctl(key, value)?;
        }
    }
    let masked = linux.and_then(|l| l.masked_paths().as_ref());
    if masked.is_some_and(|m| !m.is_empty()) {
        let dev_null = open_dev_null()?;
        for path in masked.into_iter().flatten() {
            mask(Path::new(path), &dev_null)?;
        }
    }
    for path in linux
        .and_then(|l| l.readonly_paths().as_ref())
        .into_iter()
        .flatten()
    {
        make_readonly(Path::new(path))?;
    }
    if spec
        .root()
        .as_ref()
        .and_then(|r| r.readonly())
        .unwrap_or(false)
    {
        remount_root_readonly()?;
    }
    Ok(())
}

fn root_propagation(spec: &Spec) -> Result<Option<MsFlags>> {
    let Some(name) = linux(spec).and_then(|l| l.rootfs_propagation().as_deref()) else {
        return Ok(None);
    };
    if name.is_empty() {
        return Ok(None);
    }
    let parsed = MountOptions::parse(&[name.to_string()]);
    match parsed.propagation.as_slice() {
        [flags] => Ok(Some(*flags)),
        _ => bail!("linux.rootfsPropagation: unknown propagation {name:?}"),
    }
}

fn mount_all(plan: &RootfsPlan, root: &OwnedFd) -> Result<()> {
    let ctx = MountContext {
        root,
        bundle: plan.bundle,
        cgroup_sources: plan.cgroup_sources,
        in_user_namespace: plan.in_user_namespace,
    };
    let mounts = plan.spec.mounts().as_deref().unwrap_or_default();
    for m in mounts {
        mounts::mount_entry(&ctx, m)?;
    }
    // A bind-mounted /dev is the host's (or the user's) own: leave it as it is.
    let dev_is_bind = mounts.iter().any(|m| {
        m.destination() == Path::new("/dev")
            && MountOptions::parse(m.options().as_deref().unwrap_or_default()).is_bind()
    });
    paths::refuse_symlinks(root, Path::new("dev")).context("cannot create /dev")?;
    if !dev_is_bind {
        for dev in devices::default_devices() {
            devices::create_device(root, &dev, plan.in_user_namespace)?;
        }
        devices::create_links(root)?;
    }
    let listed = linux(plan.spec).and_then(|l| l.devices().as_ref());
    for d in listed.into_iter().flatten() {
        devices::create_device(root, &devices::Device::try_from(d)?, plan.in_user_namespace)?;
    }
    Ok(())
}

/// Make the mount holding `path` private (not recursively).
fn make_parent_mount_private(path: &Path) -> Result<()> {
    let mountinfo =
        std::fs::read_to_string("/proc/self/mountinfo").context("cannot read mountinfo")?;
    let parent = mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(unescape_mountinfo)
        .filter(|mount_point| path.starts_with(mount_point))
        .max_by_key(|mount_point| mount_point.len())
        .unwrap_or_else(|| "/".into());
    mount(
        None::<&str>,
        parent.as_str(),
        None::<&str>,
        MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .with_context(|| format!("cannot make {parent} private"))
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut rest = field;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let code = rest
            .get(i + 1..i + 4)
            .and_then(|o| u8::from_str_radix(o, 8).ok());
        match code {
            Some(c) => {
                out.push(c as char);
                rest = &rest[i + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// pivot_root(".", ".") then detach the old root stacked on top: no put_old directory needed.
fn pivot(root: &OwnedFd) -> Result<()> {
    nix::unistd::fchdir(root).context("cannot enter the rootfs")?;
    crate::sys::pivot_root(Path::new("."), Path::new(".")).context("pivot_root failed")?;
    // The old root must not propagate our unmount back to the host.
    mount(
        None::<&str>,
        ".",
        None::<&str>,
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        None::<&str>,
    )
    .context("cannot make the old root a slave")?;
    umount2(".", MntFlags::MNT_DETACH).context("cannot detach the old root")?;
    nix::unistd::chdir("/").context("cannot chdir to the new root")
}

/// --no-pivot: move the rootfs mount onto / and chroot into it.
fn move_root(rootfs: &Path) -> Result<()> {
    nix::unistd::chdir(rootfs).context("cannot enter the rootfs")?;
    mount(
        Some(rootfs),
        "/",
        None::<&str>,
        MsFlags::MS_MOVE,
        None::<&str>,
    )
    .context("cannot move the rootfs to /")?;
    nix::unistd::chroot(".").context("chroot failed")?;
    nix::unistd::chdir("/").context("cannot chdir to the new root")
}

/// Keys were checked by `spec::validate`: namespaced, no `..`, no `/`.
fn write_sysctl(key: &str, value: &str) -> Result<()> {
    let path = Path::new("/proc/sys").join(key.replace('.', "/"));
    std::fs::write(&path, value).with_context(|| format!("cannot set sysctl {key}={value}"))
}

/// Hide a path: an empty read-only tmpfs over a directory, /dev/null over a file.
fn mask(path: &Path, dev_null: &OwnedFd) -> Result<()> {
    let what = || format!("cannot mask {}", path.display());
    let target = match open_nofollow(path) {
        Ok(fd) => fd,
        Err(nix::Error::ENOENT) => return Ok(()),
        Err(e) => return Err(e).with_context(what),
    };
    let kind = file_kind(&target).with_context(what)?;
    let target_path = crate::sys::fd_path(&target);
    let result = match kind {
        SFlag::S_IFDIR => mount(
            Some("tmpfs"),
            target_path.as_str(),
            Some("tmpfs"),
            MsFlags::MS_RDONLY,
            None::<&str>,
        ),
        SFlag::S_IFLNK => bail!("cannot mask {}: it is a symlink", path.display()),
        _ => mount(
            Some(crate::sys::fd_path(dev_null).as_str()),
            target_path.as_str(),
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        ),
    };
    result.with_context(what)
}

fn open_nofollow(path: &Path) -> nix::Result<OwnedFd> {
    use nix::fcntl::OFlag;
    nix::fcntl::open(
        path,
        OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
}

fn file_kind(fd: &OwnedFd) -> nix::Result<SFlag> {
    let st = nix::sys::stat::fstat(fd)?;
    Ok(SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()))
}

/// The container's /dev/null, checked to be the real device: masking binds it over files,
/// so a symlink planted there would expose whatever it points at.
fn open_dev_null() -> Result<OwnedFd> {
    let fd = open_nofollow(Path::new("/dev/null")).context("cannot open /dev/null")?;
    let st = nix::sys::stat::fstat(&fd).context("cannot stat /dev/null")?;
    let is_char = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) == SFlag::S_IFCHR;
    if !is_char || st.st_rdev != nix::sys::stat::makedev(1, 3) {
        bail!("/dev/null in the container is not the null device (1:3)");
    }
    Ok(fd)
}

fn make_readonly(path: &Path) -> Result<()> {
    match mount(
        Some(path),
        path,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    ) {
        Err(nix::Error::ENOENT) => return Ok(()),
        r => r.with_context(|| format!("cannot make {} read-only", path.display()))?,
    }
    let flags =
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | mounts::locked_flags(path)?;
    mount(None::<&str>, path, None::<&str>, flags, None::<&str>)
        .with_context(|| format!("cannot make {} read-only", path.display()))
}

fn remount_root_readonly() -> Result<()> {
    let flags = MsFlags::MS_BIND
        | MsFlags::MS_REMOUNT
        | MsFlags::MS_RDONLY
        | mounts::locked_flags(Path::new("/"))?;
    mount(None::<&str>, "/", None::<&str>, flags, None::<&str>)
        .context("cannot make the root read-only")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_fields_are_unescaped() {
        assert_eq!(unescape_mountinfo("/a\\040b"), "/a b");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
        assert_eq!(unescape_mountinfo("/odd\\x"), "/odd\\x");
    }
}
