//! File operations on cgroupfs that both drivers share.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context, Result};
use nix::errno::Errno;
use nix::unistd::Pid;

/// Writes `value` to a cgroup file in one write(2): the kernel parses each write on its own.
///
/// No O_CREAT: a knob the kernel does not provide must fail with ENOENT, not be created (as it
/// would be in a plain directory). O_APPEND rather than O_TRUNC: cgroupfs ignores the offset
/// either way, and in a plain directory every line written to a multi-line knob (io.max,
/// io.weight) is kept the way the kernel would have received it. The trailing newline is what
/// `echo` sends; every knob accepts it.
pub(super) fn write_file(path: &Path, value: &str) -> Result<()> {
    OpenOptions::new()
        .append(true)
        .open(path)
        .and_then(|mut file| file.write_all(format!("{value}\n").as_bytes()))
        .with_context(|| format!("cannot write {value:?} to {}", path.display()))
}

/// Reads a whole cgroup file.
pub(super) fn read_file(path: &Path) -> Result<String> {
    fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Whether the I/O error under `err` (as made by [`write_file`]) is `errno`.
pub(super) fn is_errno(err: &anyhow::Error, errno: Errno) -> bool {
    err.downcast_ref::<io::Error>()
        .and_then(io::Error::raw_os_error)
        .is_some_and(|code| code == errno as i32)
}

/// Creates one directory level; one that already exists is fine.
pub(super) fn mkdir_exist_ok(dir: &Path) -> Result<()> {
    match fs::create_dir(dir) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
            Err(e).with_context(|| format!("cannot create cgroup {}", dir.display()))
        }
        _ => Ok(()),
    }
}

/// The processes listed in `dir/cgroup.procs`.
pub(super) fn read_pids(dir: &Path) -> Result<Vec<Pid>> {
    let path = dir.join("cgroup.procs");
    read_file(&path)?
        .lines()
        .map(|line| {
            line.parse()
                .map(Pid::from_raw)
                .with_context(|| format!("bad pid {line:?} in {}", path.display()))
        })
        .collect()
}

/// Moves `pid` into the cgroup at `dir`.
pub(super) fn add_pid(dir: &Path, pid: Pid) -> Result<()> {
    write_file(&dir.join("cgroup.procs"), &pid.to_string())
}

/// A cgroup path as a path below the hierarchy root (`/a/b` and `a/b` both give `a/b`), refusing
/// `..`, which would leave the hierarchy or the caller's own cgroup.
pub(super) fn cgroup_subpath(path: &Path) -> Result<PathBuf> {
    let mut sub = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(name) => sub.push(name),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                bail!(
                    "invalid cgroup path {}: `..` is not allowed",
                    path.display()
                )
            }
        }
    }
    Ok(sub)
}

/// This process's cgroup in the hierarchy of `controllers` (in any order; none for the v2
/// hierarchy), from the text of `/proc/self/cgroup`.
pub(super) fn own_cgroup<'a>(proc_self_cgroup: &'a str, controllers: &[String]) -> Result<&'a str> {
    let mut wanted: Vec<&str> = controllers.iter().map(String::as_str).collect();
    wanted.sort_unstable();
    proc_self_cgroup
        .lines()
        .filter_map(|line| {
            let mut fields = line.splitn(3, ':');
            fields.next()?; // hierarchy id
            Some((fields.next()?, fields.next()?))
        })
        .find(|(list, _)| {
            let mut have: Vec<&str> = list.split(',').filter(|c| !c.is_empty()).collect();
            have.sort_unstable();
            have == wanted
        })
        .map(|(_, path)| path)
        .with_context(|| format!("no cgroup {:?} in /proc/self/cgroup", controllers.join(",")))
}

/// Removes a container's cgroup directory and the sub-cgroups it made inside it.
///
/// ENOENT is success. EBUSY means sub-cgroups (removed first, deepest first) or processes still
/// in it; callers kill and reap before removing, so the only processes expected are ones still
/// leaving, and `wait_until_empty` bounds how long they get.
pub(super) fn remove_cgroup(dir: &Path, wait_until_empty: fn(&Path) -> Result<()>) -> Result<()> {
    let context = || format!("cannot remove cgroup {}", dir.display());
    match fs::remove_dir(dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) if e.raw_os_error() != Some(libc::EBUSY) => return Err(e).with_context(context),
        Err(_) => {}
    }
    for entry in fs::read_dir(dir).with_context(context)? {
        let entry = entry.with_context(context)?;
        if entry.file_type().with_context(context)?.is_dir() {
            remove_cgroup(&entry.path(), wait_until_empty)?;
        }
    }
    wait_until_empty(dir)?;
    fs::remove_dir(dir).with_context(context)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subpath_strips_root_and_refuses_parent() {
        assert_eq!(
            cgroup_subpath(Path::new("/a/./b")).unwrap(),
            Path::new("a/b")
        );
        assert_eq!(cgroup_subpath(Path::new("a/b")).unwrap(), Path::new("a/b"));
        assert_eq!(cgroup_subpath(Path::new("/")).unwrap(), Path::new(""));
        assert!(cgroup_subpath(Path::new("/a/../../etc")).is_err());
    }

    #[test]
    fn own_cgroup_matches_controller_sets() {
        let text = "12:cpuacct,cpu:/user/a\n3:name=systemd:/init.scope\n1:memory:/m\n0::/v2/x\n";
        let find = |list: &[&str]| {
            let list: Vec<String> = list.iter().map(|c| c.to_string()).collect();
            own_cgroup(text, &list).map(str::to_owned)
        };
        assert_eq!(find(&["cpu", "cpuacct"]).unwrap(), "/user/a");
        assert_eq!(find(&["name=systemd"]).unwrap(), "/init.scope");
        assert_eq!(find(&[]).unwrap(), "/v2/x");
        assert!(find(&["pids"]).is_err());
    }

    #[test]
    fn write_file_needs_an_existing_knob_and_keeps_lines() {
        let dir = tempfile::tempdir().unwrap();
        let knob = dir.path().join("io.max");
        let err = write_file(&knob, "8:0 rbps=1").unwrap_err();
        assert!(is_errno(&err, Errno::ENOENT), "{err:#}");
        assert!(format!("{err:#}").contains("io.max"), "{err:#}");
        fs::write(&knob, "").unwrap();
        write_file(&knob, "8:0 rbps=1").unwrap();
        write_file(&knob, "8:16 wbps=2").unwrap();
        assert_eq!(
            fs::read_to_string(&knob).unwrap(),
            "8:0 rbps=1\n8:16 wbps=2\n"
        );
    }
}
