//! `--user` as Docker takes it (`uid`, `uid:gid`, `name`, `name:group`), resolved against the
//! container's own /etc/passwd and /etc/group. Those files belong to the image, so they are
//! opened inside the rootfs (openat2 RESOLVE_IN_ROOT): a symlinked /etc/passwd cannot make
//! berthd read a host file.

use std::ffi::CString;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::Path;

use anyhow::Context;

use crate::error::{Error, Result};

/// A user to run a container's process as.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups: the primary group, the user's groups from /etc/group and
    /// `--group-add`.
    pub additional_gids: Vec<u32>,
    /// The home directory (for `HOME`), `/` when unknown.
    pub home: String,
}

struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

/// Resolve `user` (empty = root) and `group_add` in the rootfs at `rootfs`.
pub fn resolve(rootfs: &Path, user: &str, group_add: &[String]) -> Result<ResolvedUser> {
    let passwd = read_in_root(rootfs, "etc/passwd")?
        .map(|text| parse_passwd(&text))
        .unwrap_or_default();
    let groups = read_in_root(rootfs, "etc/group")?
        .map(|text| parse_group(&text))
        .unwrap_or_default();
    let (user_part, group_part) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let user_part = if user_part.is_empty() { "0" } else { user_part };
    let entry = passwd
        .iter()
        .find(|e| e.name == user_part || user_part.parse() == Ok(e.uid));
    let (uid, mut gid, name, home) = match (entry, user_part.parse::<u32>()) {
        (Some(e), _) => (e.uid, e.gid, Some(e.name.clone()), e.home.clone()),
        (None, Ok(uid)) => (uid, 0, None, "/".to_string()),
        (None, Err(_)) => {
            return Err(Error::InvalidParameter(format!(
                "unable to find user {user_part}: no matching entries in passwd file"
            )))
        }
    };
    if let Some(g) = group_part {
        gid = lookup_group(&groups, g)?;
    }
    // The primary group is a supplementary one too, as Docker has it since CVE-2022-36109:
    // a process that changes its gid (a setgid program) keeps it, so a file's group
    // permissions that deny this group still deny it.
    let mut additional_gids: Vec<u32> = match (&name, group_part) {
        // An explicit group replaces the user's supplementary groups, as in Docker.
        (Some(name), None) => groups
            .iter()
            .filter(|g| g.members.iter().any(|m| m == name))
            .map(|g| g.gid)
            .collect(),
        _ => Vec::new(),
    };
    for g in group_add {
        additional_gids.push(lookup_group(&groups, g)?);
    }
    additional_gids.push(gid);
    additional_gids.sort_unstable();
    additional_gids.dedup();
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids,
        home,
    })
}

fn lookup_group(groups: &[GroupEntry], group: &str) -> Result<u32> {
    if let Some(g) = groups.iter().find(|g| g.name == group) {
        return Ok(g.gid);
    }
    group.parse().map_err(|_| {
        Error::InvalidParameter(format!(
            "unable to find group {group}: no matching entries in group file"
        ))
    })
}

/// A small file of the rootfs (`None` when it does not exist), read inside the root.
fn read_in_root(rootfs: &Path, path: &str) -> Result<Option<String>> {
    let root = std::fs::File::open(rootfs)
        .with_context(|| format!("cannot open the rootfs {}", rootfs.display()))?;
    let name = CString::new(path).expect("constant path");
    // O_PATH first: opening a planted fifo would block berthd, a planted device node would
    // open the host's device. Only a regular file is read.
    let fd = match berth_sys::openat2(
        std::os::fd::AsFd::as_fd(&root),
        &name,
        libc::O_PATH,
        0,
        libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
    ) {
        Ok(fd) => fd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(anyhow::Error::from(e)
                .context(format!("cannot open /{path}"))
                .into())
        }
    };
    let st = nix::sys::stat::fstat(&fd).with_context(|| format!("cannot stat /{path}"))?;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(Error::InvalidParameter(format!(
            "/{path} in the container is not a regular file"
        )));
    }
    let file = std::fs::File::open(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .with_context(|| format!("cannot open /{path}"))?;
    let mut text = String::new();
    // Capped: a hostile image could make /etc/passwd a huge file.
    file.take(4 << 20)
        .read_to_string(&mut text)
        .with_context(|| format!("cannot read /{path}"))?;
    Ok(Some(text))
}

fn fields(text: &str) -> impl Iterator<Item = Vec<&str>> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| l.split(':').collect())
}

fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    fields(text)
        .filter_map(|f| {
            Some(PasswdEntry {
                name: f.first()?.to_string(),
                uid: f.get(2)?.parse().ok()?,
                gid: f.get(3)?.parse().ok()?,
                home: f
                    .get(5)
                    .filter(|h| !h.is_empty())
                    .unwrap_or(&"/")
                    .to_string(),
            })
        })
        .collect()
}

fn parse_group(text: &str) -> Vec<GroupEntry> {
    fields(text)
        .filter_map(|f| {
            Some(GroupEntry {
                name: f.first()?.to_string(),
                gid: f.get(2)?.parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .filter(|s| !s.is_empty())
                            .map(String::from)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rootfs(passwd: &str, group: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(dir.path().join("etc/passwd"), passwd).unwrap();
        std::fs::write(dir.path().join("etc/group"), group).unwrap();
        dir
    }

    #[test]
    fn names_numbers_and_groups() {
        let root = rootfs(
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/nonexistent:/bin/false\nweb:x:33:33::/var/www:/bin/sh\n",
            "root:x:0:\nwww:x:33:\nextra:x:500:web,other\n",
        );
        let r = resolve(root.path(), "", &[]).unwrap();
        assert_eq!((r.uid, r.gid, r.home.as_str()), (0, 0, "/root"));
        let r = resolve(root.path(), "web", &[]).unwrap();
        assert_eq!(
            (r.uid, r.gid, r.additional_gids.clone()),
            (33, 33, vec![33, 500])
        );
        let r = resolve(root.path(), "web:root", &[]).unwrap();
        assert_eq!((r.uid, r.gid, r.additional_gids.clone()), (33, 0, vec![0]));
        let r = resolve(root.path(), "1234:99", &["extra".into()]).unwrap();
        assert_eq!((r.uid, r.gid, r.additional_gids), (1234, 99, vec![99, 500]));
        let r = resolve(root.path(), "1234", &["99".into()]).unwrap();
        assert_eq!((r.uid, r.gid, r.additional_gids), (1234, 0, vec![0, 99]));
        let err = resolve(root.path(), "nosuch", &[]).unwrap_err().to_string();
        assert!(err.contains("unable to find user nosuch"), "{err}");
    }

    #[test]
    fn a_planted_fifo_or_device_is_not_opened() {
        let root = rootfs("", "");
        std::fs::remove_file(root.path().join("etc/passwd")).unwrap();
        nix::unistd::mkfifo(
            &root.path().join("etc/passwd"),
            nix::sys::stat::Mode::from_bits_truncate(0o644),
        )
        .unwrap();
        // Would block forever if opened for reading.
        let err = resolve(root.path(), "root", &[]).unwrap_err().to_string();
        assert!(err.contains("not a regular file"), "{err}");
    }

    #[test]
    fn passwd_symlinked_out_of_the_root_is_read_inside_it() {
        let root = rootfs("", "");
        std::fs::remove_file(root.path().join("etc/passwd")).unwrap();
        // Inside the root, /etc/passwd -> /../../etc/passwd resolves to the root's own
        // etc/passwd-less tree, never the host's file with its real users.
        std::os::unix::fs::symlink("/../../../../etc/passwd", root.path().join("etc/passwd"))
            .unwrap();
        let err = resolve(root.path(), "root", &[]);
        // The link resolves to itself inside the root (a loop) or to nothing: either way no
        // host user is found.
        assert!(err.is_err());
    }
}
