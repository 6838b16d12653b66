//! Namespaces: which the container gets new (clone flags), which it joins by path (setns),
//! and the user namespace's id maps.

use std::collections::HashSet;
use std::fs::File;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use nix::sched::{setns, CloneFlags};
use oci_spec::runtime::{Linux, LinuxIdMapping, LinuxNamespaceType};

/// The namespace plan of one container.
#[derive(Debug, Default)]
pub struct Namespaces {
    /// Namespaces created by clone3 (time excluded: see `new_time`).
    pub clone_flags: u64,
    /// A new time namespace: created with unshare before clone so its offsets can be written.
    pub new_time: bool,
    /// Namespaces to join, user first (it grants the capabilities to join the others).
    pub join: Vec<(LinuxNamespaceType, PathBuf)>,
}

impl Namespaces {
    pub fn from_linux(linux: Option<&Linux>) -> Result<Self> {
        let mut plan = Namespaces::default();
        let mut seen = HashSet::new();
        let namespaces = linux.and_then(|l| l.namespaces().as_ref());
        for ns in namespaces.into_iter().flatten() {
            if !seen.insert(ns.typ()) {
                bail!("linux.namespaces: {} namespace listed twice", ns.typ());
            }
            match ns.path() {
                Some(path) => plan.join.push((ns.typ(), path.clone())),
                None if ns.typ() == LinuxNamespaceType::Time => plan.new_time = true,
                None => plan.clone_flags |= ns.typ() as u64,
            }
        }
        plan.join
            .sort_by_key(|(typ, _)| *typ != LinuxNamespaceType::User);
        if !seen.contains(&LinuxNamespaceType::Mount) {
            bail!("linux.namespaces: a mount namespace is required to set up the rootfs");
        }
        Ok(plan)
    }

    pub fn creates(&self, typ: LinuxNamespaceType) -> bool {
        self.clone_flags & typ as u64 != 0
    }

    pub fn joins(&self, typ: LinuxNamespaceType) -> bool {
        self.join.iter().any(|(t, _)| *t == typ)
    }

    /// Whether the container has a user namespace of its own (new or joined).
    pub fn in_user_namespace(&self) -> bool {
        self.creates(LinuxNamespaceType::User) || self.joins(LinuxNamespaceType::User)
    }

    /// Joining namespaces or making a time namespace changes the calling process for good;
    /// the runtime leaves that to an intermediate process.
    pub fn needs_intermediate(&self) -> bool {
        !self.join.is_empty() || self.new_time
    }

    /// In the intermediate process: join every namespace given by path (user first), make the
    /// time namespace; the init cloned next is born inside them all.
    pub fn enter_for_init(&self, linux: Option<&Linux>) -> Result<()> {
        for (typ, path) in &self.join {
            join(*typ, path)?;
        }
        if self.new_time {
            new_time_namespace(linux)?;
        }
        Ok(())
    }
}

fn join(typ: LinuxNamespaceType, path: &PathBuf) -> Result<()> {
    let file = File::open(path)
        .with_context(|| format!("cannot open {typ} namespace {}", path.display()))?;
    setns(&file, CloneFlags::from_bits_retain(typ as i32))
        .with_context(|| format!("cannot join {typ} namespace {}", path.display()))
}

/// Write a new user namespace's uid and gid maps for process `pid` (from the parent, which
/// holds CAP_SETUID/CAP_SETGID in the parent namespace, so setgroups need not be denied).
pub fn write_id_maps(pid: i32, uids: &[LinuxIdMapping], gids: &[LinuxIdMapping]) -> Result<()> {
    if uids.is_empty() || gids.is_empty() {
        bail!("linux.uidMappings and linux.gidMappings are required for a new user namespace");
    }
    for (file, maps) in [("uid_map", uids), ("gid_map", gids)] {
        let text: String = maps
            .iter()
            .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
            .collect();
        let path = format!("/proc/{pid}/{file}");
        std::fs::write(&path, &text)
            .with_context(|| format!("cannot write {file} {:?}", text.trim_end()))?;
    }
    Ok(())
}

/// Write time namespace offsets (`linux.timeOffsets`) for the calling process's children.
fn new_time_namespace(linux: Option<&Linux>) -> Result<()> {
    nix::sched::unshare(CloneFlags::from_bits_retain(libc::CLONE_NEWTIME))
        .context("cannot create a time namespace")?;
    let offsets = linux.and_then(|l| l.time_offsets().as_ref());
    let text: String = offsets
        .into_iter()
        .flatten()
        .map(|(clock, off)| {
            format!(
                "{clock} {} {}\n",
                off.secs().unwrap_or(0),
                off.nanosecs().unwrap_or(0)
            )
        })
        .collect();
    if !text.is_empty() {
        std::fs::write("/proc/self/timens_offsets", &text)
            .with_context(|| format!("cannot write time offsets {:?}", text.trim_end()))?;
    }
    Ok(())
}
