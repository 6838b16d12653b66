//! The entries of an archive tarball, read as hostile input: regular files go into the
//! content store, and what is kept is a map from each entry's (checked, normalized) name to
//! the blob it holds, or to the name a link entry points at.

use std::collections::hash_map::{Entry, HashMap};
use std::io::{self, Read};

use anyhow::{Context, Result};
use tar::EntryType;

use super::{ArchiveError, EntryProblem, NewBlobs};
use crate::digest::Digest;
use crate::layer::{next_entry, Budgeted};

/// More entries than any archive of real images has (a legacy docker save has three or four
/// per layer): bounds the memory the map takes.
const MAX_ENTRIES: usize = 1 << 16;
/// Longest entry name or link target accepted (Docker's are under 100 bytes).
const MAX_NAME: usize = 1024;
/// Most links followed to resolve one name.
const MAX_LINK_HOPS: usize = 16;

enum Node {
    File(Digest),
    /// A symlink or hard link: the archive name it points at.
    Link(String),
}

/// What an entry is, for the map.
enum Kind {
    File,
    /// A symlink (target relative to its directory) or hard link (relative to the root).
    Link {
        target: Vec<u8>,
        relative: bool,
    },
    /// Directories and PAX global headers: nothing to keep.
    Skip,
}

/// An archive's files by name; their contents are blobs in the content store.
pub(super) struct ArchiveFiles {
    nodes: HashMap<String, Node>,
}

impl ArchiveFiles {
    /// Read the whole tar `reader`, storing every regular file through `blobs`.
    pub(super) fn read(reader: impl Read, blobs: &mut NewBlobs) -> Result<ArchiveFiles> {
        let budgeted = Budgeted::new(reader);
        let budget = budgeted.budget();
        let mut archive = tar::Archive::new(budgeted);
        let mut files = ArchiveFiles {
            nodes: HashMap::new(),
        };
        let mut entries = archive.entries().context("cannot read the archive")?;
        while let Some(entry) = next_entry(&mut entries, &budget) {
            let mut entry = entry.context("cannot read the archive")?;
            files.add(&mut entry, blobs)?;
            // Data nobody consumed (a directory or link with a size) is read here, outside
            // the metadata budget.
            io::copy(&mut entry, &mut io::sink()).context("cannot read the archive")?;
        }
        Ok(files)
    }

    fn add(&mut self, entry: &mut tar::Entry<impl Read>, blobs: &mut NewBlobs) -> Result<()> {
        let raw = entry.path_bytes().into_owned();
        let refuse = |problem| ArchiveError::Entry {
            name: shown(&raw),
            problem,
        };
        let name = entry_name(&raw).map_err(refuse)?;
        let node = match kind(entry, &raw).map_err(refuse)? {
            Kind::Skip => return Ok(()),
            Kind::File if name.is_empty() => return Err(refuse(EntryProblem::Root).into()),
            Kind::File => Node::File(
                blobs
                    .put(&mut *entry)
                    .with_context(|| format!("cannot store archive entry {name:?}"))?,
            ),
            Kind::Link { target, relative } => {
                let base = if relative { parent(&name) } else { "" };
                Node::Link(link_target(base, &target).map_err(refuse)?)
            }
        };
        if self.nodes.len() >= MAX_ENTRIES {
            return Err(ArchiveError::TooManyEntries(MAX_ENTRIES).into());
        }
        match self.nodes.entry(name) {
            Entry::Occupied(_) => Err(refuse(EntryProblem::Duplicate).into()),
            Entry::Vacant(slot) => {
                slot.insert(node);
                Ok(())
            }
        }
    }

    pub(super) fn has(&self, name: &str) -> bool {
        self.nodes.contains_key(name)
    }

    /// The blob of the file `name` designates, following links inside the archive;
    /// `referrer` (the document naming it) is for errors.
    pub(super) fn resolve(&self, name: &str, referrer: &str) -> Result<&Digest, ArchiveError> {
        let problem = |problem| ArchiveError::BadName {
            referrer: referrer.to_string(),
            name: name.to_string(),
            problem,
        };
        let mut current = entry_name(name.as_bytes()).map_err(problem)?;
        for _ in 0..=MAX_LINK_HOPS {
            match self.nodes.get(&current) {
                Some(Node::File(digest)) => return Ok(digest),
                Some(Node::Link(next)) => current = next.clone(),
                None => {
                    return Err(ArchiveError::Missing {
                        referrer: referrer.to_string(),
                        name: name.to_string(),
                    })
                }
            }
        }
        Err(problem(EntryProblem::LinkLoop))
    }
}

fn kind(entry: &tar::Entry<impl Read>, raw: &[u8]) -> Result<Kind, EntryProblem> {
    let header = entry.header();
    let link = || {
        entry
            .link_name_bytes()
            .filter(|t| !t.is_empty())
            .map(|t| t.into_owned())
            .ok_or(EntryProblem::EmptyLink)
    };
    Ok(match header.entry_type() {
        // Old (pre-POSIX) tars mark directories by a trailing slash on a regular entry.
        EntryType::Regular if raw.ends_with(b"/") => Kind::Skip,
        EntryType::Regular | EntryType::Continuous => Kind::File,
        EntryType::Directory | EntryType::XGlobalHeader => Kind::Skip,
        EntryType::Symlink => Kind::Link {
            target: link()?,
            relative: true,
        },
        EntryType::Link => Kind::Link {
            target: link()?,
            relative: false,
        },
        other => return Err(EntryProblem::UnsupportedType(other.as_byte() as char)),
    })
}

/// An entry name as the map keys it: relative, without empty or `.` components
/// (`./manifest.json` is `manifest.json`); absolute names and `..` are refused.
fn entry_name(raw: &[u8]) -> Result<String, EntryProblem> {
    let text = checked_text(raw)?;
    if text.starts_with('/') {
        return Err(EntryProblem::Absolute);
    }
    let mut parts = Vec::new();
    for part in text.split('/').filter(|p| !p.is_empty() && *p != ".") {
        if part == ".." {
            return Err(EntryProblem::DotDot);
        }
        parts.push(part);
    }
    Ok(parts.join("/"))
}

/// The archive name a link points at: `target` taken from `base` (the symlink's directory,
/// or the root for a hard link), `..` resolved by name; a target outside is refused.
fn link_target(base: &str, target: &[u8]) -> Result<String, EntryProblem> {
    let text = checked_text(target)?;
    let outside = || EntryProblem::LinkOutside(text.to_string());
    if text.starts_with('/') {
        return Err(outside());
    }
    let mut parts: Vec<&str> = base.split('/').filter(|p| !p.is_empty()).collect();
    for part in text.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop().ok_or_else(outside)?;
            }
            part => parts.push(part),
        }
    }
    Ok(parts.join("/"))
}

fn checked_text(raw: &[u8]) -> Result<&str, EntryProblem> {
    if raw.len() > MAX_NAME {
        return Err(EntryProblem::TooLong(MAX_NAME));
    }
    std::str::from_utf8(raw).map_err(|_| EntryProblem::NotUtf8)
}

fn parent(name: &str) -> &str {
    name.rsplit_once('/').map_or("", |(dir, _)| dir)
}

/// A name for an error message (a hostile one can be long and not UTF-8).
fn shown(raw: &[u8]) -> String {
    const MAX: usize = 256;
    let text = String::from_utf8_lossy(&raw[..raw.len().min(MAX)]).into_owned();
    if raw.len() > MAX {
        format!("{text}… ({} bytes)", raw.len())
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::ContentStore;

    fn archive(entries: &[(&str, EntryType, &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, kind, data) in entries {
            let mut h = tar::Header::new_ustar();
            h.set_entry_type(*kind);
            h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            let body = if kind.is_file() { data.as_bytes() } else { b"" };
            if !kind.is_file() {
                h.as_old_mut().linkname[..data.len()].copy_from_slice(data.as_bytes());
            }
            h.set_size(body.len() as u64);
            h.set_cksum();
            b.append(&h, body).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn read(entries: &[(&str, EntryType, &str)]) -> (tempfile::TempDir, Result<ArchiveFiles>) {
        let dir = tempfile::tempdir().unwrap();
        let content = ContentStore::open(dir.path()).unwrap();
        let mut blobs = NewBlobs::new(&content);
        let files = ArchiveFiles::read(&archive(entries)[..], &mut blobs);
        (dir, files)
    }

    fn problem(entries: &[(&str, EntryType, &str)]) -> EntryProblem {
        match read(entries).1.err().map(|e| e.downcast::<ArchiveError>()) {
            Some(Ok(ArchiveError::Entry { problem, .. })) => problem,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn names_are_normalized_and_links_resolved_inside() {
        use EntryType::*;
        let (_dir, files) = read(&[
            ("./", Directory, ""),
            ("./a.tar", Regular, "layer"),
            ("id/", Directory, ""),
            ("id/layer.tar", Symlink, "../a.tar"),
            ("id/again", Link, "id/layer.tar"),
            ("loop1", Symlink, "loop2"),
            ("loop2", Symlink, "loop1"),
        ]);
        let files = files.unwrap();
        let layer = Digest::of(b"layer");
        for name in [
            "a.tar",
            "./a.tar",
            "id/layer.tar",
            "id//again",
            "id/./layer.tar",
        ] {
            assert_eq!(files.resolve(name, "test"), Ok(&layer), "{name}");
        }
        assert!(files.has("a.tar") && !files.has("id"));
        assert!(matches!(
            files.resolve("missing", "manifest.json"),
            Err(ArchiveError::Missing { .. })
        ));
        assert!(matches!(
            files.resolve("loop1", "manifest.json"),
            Err(ArchiveError::BadName {
                problem: EntryProblem::LinkLoop,
                ..
            })
        ));
        assert!(matches!(
            files.resolve("../a.tar", "manifest.json"),
            Err(ArchiveError::BadName {
                problem: EntryProblem::DotDot,
                ..
            })
        ));
    }

    #[test]
    fn escapes_and_odd_entries_are_refused() {
        use EntryType::*;
        let outside = |t: &str| EntryProblem::LinkOutside(t.to_string());
        for (entries, want) in [
            (vec![("../x", Regular, "x")], EntryProblem::DotDot),
            (vec![("a/../../x", Regular, "x")], EntryProblem::DotDot),
            (vec![("/abs", Regular, "x")], EntryProblem::Absolute),
            (vec![("l", Symlink, "/etc/passwd")], outside("/etc/passwd")),
            (vec![("d/l", Symlink, "../../x")], outside("../../x")),
            (vec![("h", Link, "../x")], outside("../x")),
            (vec![("l", Symlink, "")], EntryProblem::EmptyLink),
            (vec![("dev", Char, "")], EntryProblem::UnsupportedType('3')),
            (vec![("f", Fifo, "")], EntryProblem::UnsupportedType('6')),
            (vec![(".", Regular, "x")], EntryProblem::Root),
            (
                vec![("a", Regular, "1"), ("./a", Regular, "2")],
                EntryProblem::Duplicate,
            ),
        ] {
            assert_eq!(problem(&entries), want, "{entries:?}");
        }
    }

    #[test]
    fn a_refused_archive_leaves_its_blobs_to_the_collector() {
        // A pull running alongside may rely on them: only the collector, which excludes
        // writers, deletes blobs (tests/archive.rs has the store-level test).
        let dir = tempfile::tempdir().unwrap();
        let content = ContentStore::open(dir.path()).unwrap();
        let tar = archive(&[
            ("ok", EntryType::Regular, "data"),
            ("../x", EntryType::Regular, "x"),
        ]);
        {
            let mut blobs = NewBlobs::new(&content);
            assert!(ArchiveFiles::read(&tar[..], &mut blobs).is_err());
        }
        assert_eq!(content.list().unwrap(), vec![Digest::of(b"data")]);
    }
}
