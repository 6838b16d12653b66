//! /dev: the default device nodes every container gets, `linux.devices`, and the usual links.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use nix::fcntl::AtFlags;
use nix::mount::{mount, MsFlags};
use nix::sys::stat::{makedev, mknodat, Mode, SFlag};
use nix::unistd::{fchownat, symlinkat, Gid, Uid};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType};

use super::paths::{create_in_root, Kind};
use crate::sys::fd_path;

/// A device node to create: path inside the rootfs, type, numbers, mode and owner.
pub struct Device {
    pub path: PathBuf,
    pub kind: SFlag,
    pub major: u64,
    pub minor: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

fn char_device(name: &str, major: u64, minor: u64) -> Device {
    Device {
        path: Path::new("/dev").join(name),
        kind: SFlag::S_IFCHR,
        major,
        minor,
        mode: 0o666,
        uid: 0,
        gid: 0,
    }
}

/// The nodes runc gives every container that does not bind-mount its own /dev.
pub fn default_devices() -> Vec<Device> {
    vec![
        char_device("null", 1, 3),
        char_device("zero", 1, 5),
        char_device("full", 1, 7),
        char_device("random", 1, 8),
        char_device("urandom", 1, 9),
        char_device("tty", 5, 0),
    ]
}

impl TryFrom<&LinuxDevice> for Device {
    type Error = anyhow::Error;

    fn try_from(d: &LinuxDevice) -> Result<Device> {
        let kind = match d.typ() {
            LinuxDeviceType::C | LinuxDeviceType::U => SFlag::S_IFCHR,
            LinuxDeviceType::B => SFlag::S_IFBLK,
            LinuxDeviceType::P => SFlag::S_IFIFO,
            LinuxDeviceType::A => {
                anyhow::bail!("linux.devices: {} has type 'a'", d.path().display())
            }
        };
        let number = |n: i64, what: &str| {
            u64::try_from(n).with_context(|| {
                format!(
                    "linux.devices: {} has a negative {what}",
                    d.path().display()
                )
            })
        };
        Ok(Device {
            path: d.path().clone(),
            kind,
            major: number(d.major(), "major")?,
            minor: number(d.minor(), "minor")?,
            mode: d.file_mode().unwrap_or(0o666) & 0o7777,
            uid: d.uid().unwrap_or(0),
            gid: d.gid().unwrap_or(0),
        })
    }
}

/// Create a device node in the rootfs. In a user namespace mknod is refused: bind the host's
/// node of the same path instead, as runc does. The image may have planted anything at the
/// path: a symlink (to /proc/sys/kernel/core_pattern, say) or another file is refused, never
/// followed or reused.
pub fn create_device(root: &OwnedFd, dev: &Device, in_user_namespace: bool) -> Result<()> {
    let rel = super::mounts::relative(&dev.path);
    let what = || format!("cannot create device {}", dev.path.display());
    let (parent, name) = parent_and_name(root, &rel).with_context(what)?;
    if in_user_namespace {
        let target = create_placeholder(&parent, name).with_context(what)?;
        return mount(
            Some(&dev.path),
            fd_path(&target).as_str(),
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .with_context(what);
    }
    let mode = Mode::from_bits_truncate(dev.mode);
    match mknodat(&parent, name, dev.kind, mode, makedev(dev.major, dev.minor)) {
        Ok(()) => {}
        Err(nix::Error::EEXIST) => check_existing(&parent, name, dev).with_context(what)?,
        Err(e) => return Err(e).with_context(what),
    }
    fchownat(
        &parent,
        name,
        Some(Uid::from_raw(dev.uid)),
        Some(Gid::from_raw(dev.gid)),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .with_context(what)
}

/// An empty regular file to bind a host device onto; an existing link or special file is
/// refused.
fn create_placeholder(parent: &OwnedFd, name: &Path) -> Result<OwnedFd> {
    use nix::fcntl::{openat, OFlag};
    let created = openat(
        parent,
        name,
        OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_WRONLY,
        Mode::from_bits_truncate(0o644),
    );
    match created {
        Ok(_) | Err(nix::Error::EEXIST) => {}
        Err(e) => return Err(e.into()),
    }
    let fd = openat(
        parent,
        name,
        OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let st = nix::sys::stat::fstat(&fd)?;
    if SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) != SFlag::S_IFREG {
        anyhow::bail!(
            "{} exists in the rootfs and is not a regular file",
            name.display()
        );
    }
    Ok(fd)
}

/// A node already at the path must be exactly the device asked for.
fn check_existing(parent: &OwnedFd, name: &Path, dev: &Device) -> Result<()> {
    let st = nix::sys::stat::fstatat(parent, name, AtFlags::AT_SYMLINK_NOFOLLOW)?;
    let kind = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits());
    if kind != dev.kind || st.st_rdev != makedev(dev.major, dev.minor) {
        anyhow::bail!(
            "{} exists in the rootfs and is not the device {}:{}",
            dev.path.display(),
            dev.major,
            dev.minor
        );
    }
    Ok(())
}

fn parent_and_name<'a>(root: &OwnedFd, rel: &'a Path) -> Result<(OwnedFd, &'a Path)> {
    let name = Path::new(rel.file_name().context("device path has no file name")?);
    let parent = create_in_root(root, rel.parent().unwrap_or(Path::new("")), Kind::Dir)?;
    Ok((parent, name))
}

/// /dev/fd, stdin, stdout, stderr, ptmx (→ pts/ptmx, the container's own devpts) and core;
/// /dev/pts and /dev/shm exist even when no mount is listed for them.
pub fn create_links(root: &OwnedFd) -> Result<()> {
    let dev = create_in_root(root, Path::new("dev"), Kind::Dir)?;
    let mut links = vec![
        ("/proc/self/fd", "fd"),
        ("/proc/self/fd/0", "stdin"),
        ("/proc/self/fd/1", "stdout"),
        ("/proc/self/fd/2", "stderr"),
        ("pts/ptmx", "ptmx"),
    ];
    if Path::new("/proc/kcore").exists() {
        links.push(("/proc/kcore", "core"));
    }
    for (target, name) in links {
        match symlinkat(target, &dev, name) {
            Ok(()) | Err(nix::Error::EEXIST) => {}
            Err(e) => return Err(e).with_context(|| format!("cannot create /dev/{name}")),
        }
    }
    for dir in ["dev/pts", "dev/shm"] {
        create_in_root(root, Path::new(dir), Kind::Dir)?;
    }
    Ok(())
}
