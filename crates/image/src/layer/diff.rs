//! Overlay upper dirs back into layers: the tar diff `commit` stores, and the change list
//! `docker diff` prints.

use std::collections::{HashMap, HashSet};
use std::ffi::{CStr, CString, OsStr, OsString};
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use nix::dir::Dir;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use tar::{EntryType, Header};

use super::apply::overlay_private;
use super::sys::{self, cstr, errno};
use super::whiteout::{OPAQUE_XATTR, WHITEOUT_OPAQUE, WHITEOUT_PREFIX};
use super::{Change, ChangeKind, LayerError, Result};
use crate::digest::{Digest, DigestWriter};

const OUT_BUF: usize = 1 << 20;
const READ_BUF: usize = 1 << 20;
const REDIRECT_XATTR: &CStr = c"trusted.overlay.redirect";
const METACOPY_XATTR: &CStr = c"trusted.overlay.metacopy";

/// Writes the overlay upper dir `upper` as a layer tar to `out` and returns its diff_id.
///
/// Overlay whiteouts (char 0:0) become `.wh.<name>` entries, opaque directories
/// (`trusted.overlay.opaque=y`) their own entry followed by `<dir>/.wh..wh..opq`; everything
/// else is archived as it is (numeric ownership, mode, mtime in seconds, xattrs except
/// overlayfs' own, hardlinks within the upper dir as tar hardlinks, symlinks as symlinks;
/// sockets are skipped). Entries are in a deterministic order: depth first, names sorted
/// bytewise, each directory before its contents.
pub fn write_layer_diff(upper: &Path, out: impl Write) -> Result<Digest> {
    let root = open_dir(upper)?;
    let mut w = DiffWriter {
        upper,
        builder: tar::Builder::new(BufWriter::with_capacity(OUT_BUF, DigestWriter::new(out))),
        links: HashMap::new(),
        buf: vec![0u8; READ_BUF],
    };
    w.dir(root.as_fd(), &mut Vec::new())?;
    let wr = |e: io::Error| io_err("write layer tar of", upper, e);
    let buffered = w.builder.into_inner().map_err(wr)?;
    let (mut out, digest, _) = buffered
        .into_inner()
        .map_err(|e| wr(e.into_error()))?
        .finish();
    out.flush().map_err(wr)?;
    Ok(digest)
}

/// What the upper dir `upper` changed relative to its lower layers `lowers` (topmost first), as
/// `docker diff` lists it: `A` for paths no lower layer has, `C` for paths one has (so also
/// every directory holding a change), `D` for whiteouts and for what the lower layers had in a
/// directory the upper made opaque but does not have itself. Sorted by path.
pub fn changes(upper: &Path, lowers: &[PathBuf]) -> Result<Vec<Change>> {
    let root = open_dir(upper)?;
    let mut out = Vec::new();
    walk_changes(upper, root.as_fd(), &mut Vec::new(), lowers, &mut out)?;
    out.sort_by(|a, b| {
        a.path
            .as_os_str()
            .as_bytes()
            .cmp(b.path.as_os_str().as_bytes())
    });
    Ok(out)
}

fn io_err(op: &'static str, path: &Path, source: io::Error) -> LayerError {
    LayerError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

fn under(upper: &Path, rel: &[u8]) -> PathBuf {
    upper.join(OsStr::from_bytes(rel))
}

fn open_dir(path: &Path) -> Result<OwnedFd> {
    let c = cstr(path.as_os_str().as_bytes()).map_err(|e| io_err("open", path, e))?;
    sys::open_path(&c, libc::O_RDONLY | libc::O_DIRECTORY).map_err(|e| io_err("open", path, e))
}

/// The names in a directory (without `.` and `..`), sorted bytewise.
fn names(dir: BorrowedFd) -> io::Result<Vec<CString>> {
    let mut d = Dir::openat(
        dir,
        c".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let mut out = Vec::new();
    for e in d.iter() {
        let e = e?;
        let n = e.file_name();
        if n != c"." && n != c".." {
            out.push(n.to_owned());
        }
    }
    out.sort();
    Ok(out)
}

fn is_whiteout(st: &libc::stat) -> bool {
    sys::file_type(st) == libc::S_IFCHR && st.st_rdev == 0
}

fn join(rel: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(rel.len() + 1 + name.len());
    p.extend_from_slice(rel);
    if !rel.is_empty() {
        p.push(b'/');
    }
    p.extend_from_slice(name);
    p
}

struct DiffWriter<'a, W: Write> {
    upper: &'a Path,
    builder: tar::Builder<BufWriter<DigestWriter<W>>>,
    /// (dev, ino) of multiply-linked non-directories already archived → their name.
    links: HashMap<(u64, u64), Vec<u8>>,
    buf: Vec<u8>,
}

impl<W: Write> DiffWriter<'_, W> {
    fn fail(&self, op: &'static str, rel: &[u8]) -> impl FnOnce(io::Error) -> LayerError {
        let path = under(self.upper, rel);
        move |source| LayerError::Io { op, path, source }
    }

    /// Archives the contents of the directory `dir` (named `rel` in the layer).
    fn dir(&mut self, dir: BorrowedFd, rel: &mut Vec<u8>) -> Result<()> {
        let names = names(dir).map_err(self.fail("read directory", rel))?;
        for name in &names {
            let len = rel.len();
            if !rel.is_empty() {
                rel.push(b'/');
            }
            rel.extend_from_slice(name.to_bytes());
            self.entry(dir, name, rel)?;
            rel.truncate(len);
        }
        Ok(())
    }

    fn entry(&mut self, dir: BorrowedFd, name: &CStr, rel: &mut Vec<u8>) -> Result<()> {
        let st =
            sys::fstatat(dir, name, libc::AT_SYMLINK_NOFOLLOW).map_err(self.fail("stat", rel))?;
        if is_whiteout(&st) {
            // Whiteouts may share one inode: never treat them as hardlinks.
            let parent_len = rel.len() - name.to_bytes().len();
            let mut path = rel[..parent_len].to_vec();
            path.extend_from_slice(WHITEOUT_PREFIX.as_bytes());
            path.extend_from_slice(name.to_bytes());
            let mut h = header(&st, EntryType::Regular);
            h.set_mode(0o600);
            return self.append(&mut h, &path, None, &[], io::empty());
        }
        match sys::file_type(&st) {
            libc::S_IFDIR => {
                let fd = sys::openat(
                    dir,
                    name,
                    libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
                    0,
                )
                .map_err(self.fail("open", rel))?;
                let st = sys::fstat(fd.as_fd()).map_err(self.fail("stat", rel))?;
                let xattrs = self.xattrs(fd.as_fd(), false, rel)?;
                let opaque = xattrs
                    .iter()
                    .any(|(n, v)| n.as_bytes() == OPAQUE_XATTR.as_bytes() && v == b"y");
                let mut h = header(&st, EntryType::Directory);
                let mut path = rel.clone();
                path.push(b'/');
                self.append(&mut h, &path, None, &xattrs, io::empty())?;
                if opaque {
                    let mut h = header(&st, EntryType::Regular);
                    h.set_mode(st.st_mode & 0o777);
                    let path = join(rel, WHITEOUT_OPAQUE.as_bytes());
                    self.append(&mut h, &path, None, &[], io::empty())?;
                }
                self.dir(fd.as_fd(), rel)
            }
            libc::S_IFREG => {
                // O_NONBLOCK: should a fifo have taken its place, opening it must not hang.
                let fd = sys::openat(
                    dir,
                    name,
                    libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK,
                    0,
                )
                .map_err(self.fail("open", rel))?;
                let st = sys::fstat(fd.as_fd()).map_err(self.fail("stat", rel))?;
                if sys::file_type(&st) != libc::S_IFREG {
                    return Err(self.fail("open", rel)(io::Error::other(
                        "changed type while being archived",
                    )));
                }
                let xattrs = self.xattrs(fd.as_fd(), false, rel)?;
                if self.linked(&st, rel)? {
                    return Ok(());
                }
                let mut h = header(&st, EntryType::Regular);
                h.set_size(st.st_size as u64);
                let file = File::from(fd);
                let mut buf = std::mem::take(&mut self.buf);
                let data = Exact {
                    file: &file,
                    left: st.st_size as u64,
                    buf: &mut buf,
                    pos: 0,
                    end: 0,
                };
                let r = self.append(&mut h, rel, None, &xattrs, data);
                self.buf = buf;
                r
            }
            libc::S_IFSOCK => Ok(()),
            t => {
                let fd = sys::openat(dir, name, libc::O_PATH | libc::O_NOFOLLOW, 0)
                    .map_err(self.fail("open", rel))?;
                let xattrs = self.xattrs(fd.as_fd(), true, rel)?;
                if self.linked(&st, rel)? {
                    return Ok(());
                }
                let (kind, target) = match t {
                    libc::S_IFLNK => (
                        EntryType::Symlink,
                        Some(sys::readlinkat(dir, name).map_err(self.fail("readlink", rel))?),
                    ),
                    libc::S_IFCHR => (EntryType::Char, None),
                    libc::S_IFBLK => (EntryType::Block, None),
                    _ => (EntryType::Fifo, None),
                };
                let mut h = header(&st, kind);
                if matches!(kind, EntryType::Char | EntryType::Block) {
                    let bad = self.fail("device number of", rel);
                    h.set_device_major(libc::major(st.st_rdev))
                        .and_then(|()| h.set_device_minor(libc::minor(st.st_rdev)))
                        .map_err(bad)?;
                }
                self.append(&mut h, rel, target.as_deref(), &xattrs, io::empty())
            }
        }
    }

    /// For a non-directory with several links: archives it as a hardlink to the first name it
    /// was archived under (true), or remembers this name as that first one (false).
    fn linked(&mut self, st: &libc::stat, rel: &[u8]) -> Result<bool> {
        if st.st_nlink < 2 {
            return Ok(false);
        }
        let key = (st.st_dev, st.st_ino);
        let Some(first) = self.links.get(&key).cloned() else {
            self.links.insert(key, rel.to_vec());
            return Ok(false);
        };
        let mut h = header(st, EntryType::Link);
        self.append(&mut h, rel, Some(&first), &[], io::empty())?;
        Ok(true)
    }

    /// The xattrs to archive (overlayfs' own dropped). Fails on redirects and metacopy files,
    /// whose content is not in the upper dir.
    fn xattrs(
        &self,
        fd: BorrowedFd,
        is_path_fd: bool,
        rel: &[u8],
    ) -> Result<Vec<(CString, Vec<u8>)>> {
        let all = sys::xattrs(fd, is_path_fd).map_err(self.fail("read xattrs of", rel))?;
        let mut keep = Vec::with_capacity(all.len());
        for (name, value) in all {
            let what = if name.as_c_str() == REDIRECT_XATTR {
                "a directory renamed with overlay redirect_dir"
            } else if name.as_c_str() == METACOPY_XATTR {
                "a metadata-only copy-up (overlay metacopy)"
            } else {
                ""
            };
            if !what.is_empty() {
                return Err(LayerError::Unsupported {
                    path: under(self.upper, rel),
                    what,
                });
            }
            if name.as_bytes() == OPAQUE_XATTR.as_bytes() || !overlay_private(name.as_bytes()) {
                keep.push((name, value));
            }
        }
        Ok(keep)
    }

    /// Appends one entry: PAX xattr records, GNU long name/link records as needed, the header
    /// and `data` (exactly the header's size).
    fn append(
        &mut self,
        h: &mut Header,
        path: &[u8],
        link: Option<&[u8]>,
        xattrs: &[(CString, Vec<u8>)],
        data: impl Read,
    ) -> Result<()> {
        let fail = self.fail("archive", path);
        let b = &mut self.builder;
        let records = xattrs
            .iter()
            .filter(|(n, _)| n.as_bytes() != OPAQUE_XATTR.as_bytes())
            .map(|(n, v)| {
                let n = std::str::from_utf8(n.as_bytes()).map_err(|_| {
                    io::Error::new(io::ErrorKind::InvalidData, "xattr name is not UTF-8")
                })?;
                Ok((format!("SCHILY.xattr.{n}"), v.as_slice()))
            })
            .collect::<io::Result<Vec<_>>>();
        let r = (|| {
            let records = records?;
            if !records.is_empty() {
                b.append_pax_extensions(records.iter().map(|(k, v)| (k.as_str(), *v)))?;
            }
            if let Some(link) = link {
                // Link names verbatim (set_link_name would normalise them).
                let field = h.as_old().linkname.len();
                if link.len() > field {
                    let mut long = Header::new_gnu();
                    long.set_entry_type(EntryType::GNULongLink);
                    long.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
                    long.set_mode(0o644);
                    long.set_size(link.len() as u64 + 1);
                    long.set_cksum();
                    b.append(&long, link.chain(&[0u8][..]))?;
                    h.set_link_name_literal(&link[..field])?;
                } else {
                    h.set_link_name_literal(link)?;
                }
            }
            b.append_data(h, Path::new(OsStr::from_bytes(path)), data)
        })();
        r.map_err(fail)
    }
}

/// A tar header with a file's type, ownership, permissions and mtime (whole seconds).
fn header(st: &libc::stat, kind: EntryType) -> Header {
    let mut h = Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(st.st_mode & 0o7777);
    h.set_uid(st.st_uid.into());
    h.set_gid(st.st_gid.into());
    h.set_mtime(st.st_mtime.max(0) as u64);
    h.set_size(0);
    h
}

/// Exactly `left` bytes of a file, read in large chunks; a file that shrank is an error (the
/// header already promised its size).
struct Exact<'a> {
    file: &'a File,
    left: u64,
    buf: &'a mut [u8],
    pos: usize,
    end: usize,
}

impl Read for Exact<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.end {
            if self.left == 0 {
                return Ok(0);
            }
            let want = self
                .buf
                .len()
                .min(usize::try_from(self.left).unwrap_or(usize::MAX));
            let n = self.file.read(&mut self.buf[..want])?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "file shrank while being archived",
                ));
            }
            self.left -= n as u64;
            self.pos = 0;
            self.end = n;
        }
        let n = out.len().min(self.end - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Walks the upper dir `dir` (named `rel`, `/`-separated, empty at the top) against `lower`:
/// the lower directories (topmost first) whose merged view is this directory in the image.
fn walk_changes(
    upper: &Path,
    dir: BorrowedFd,
    rel: &mut Vec<u8>,
    lower: &[PathBuf],
    out: &mut Vec<Change>,
) -> Result<()> {
    let fail = |op: &'static str, rel: &[u8]| {
        let path = under(upper, rel.strip_prefix(b"/").unwrap_or(rel));
        move |source| LayerError::Io { op, path, source }
    };
    let children = names(dir).map_err(fail("read directory", rel))?;
    for name in &children {
        let len = rel.len();
        rel.push(b'/');
        rel.extend_from_slice(name.to_bytes());
        let path = PathBuf::from(OsString::from_vec(rel.clone()));
        let st = sys::fstatat(dir, name, libc::AT_SYMLINK_NOFOLLOW).map_err(fail("stat", rel))?;
        if is_whiteout(&st) {
            out.push(Change {
                kind: ChangeKind::Deleted,
                path,
            });
        } else {
            let (present, below) =
                in_lower(lower, name.to_bytes()).map_err(fail("look up in lower layers", rel))?;
            out.push(Change {
                kind: if present {
                    ChangeKind::Modified
                } else {
                    ChangeKind::Added
                },
                path,
            });
            if sys::file_type(&st) == libc::S_IFDIR {
                let fd = sys::openat(
                    dir,
                    name,
                    libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
                    0,
                )
                .map_err(fail("open", rel))?;
                let opaque = sys::xattr(fd.as_fd(), false, &cstr(OPAQUE_XATTR.as_bytes()).unwrap())
                    .map_err(fail("read xattrs of", rel))?
                    .is_some_and(|v| v == b"y");
                if opaque && !below.is_empty() {
                    let mine: HashSet<CString> = names(fd.as_fd())
                        .map_err(fail("read directory", rel))?
                        .into_iter()
                        .collect();
                    for gone in merged_names(&below).map_err(fail("read lower layers of", rel))? {
                        if !mine.contains(&gone) {
                            let mut p = rel.clone();
                            p.push(b'/');
                            p.extend_from_slice(gone.to_bytes());
                            out.push(Change {
                                kind: ChangeKind::Deleted,
                                path: PathBuf::from(OsString::from_vec(p)),
                            });
                        }
                    }
                }
                walk_changes(upper, fd.as_fd(), rel, &below, out)?;
            }
        }
        rel.truncate(len);
    }
    Ok(())
}

fn lstat_whiteout(md: &std::fs::Metadata) -> bool {
    md.file_type().is_char_device() && md.rdev() == 0
}

fn lower_opaque(dir: &Path) -> io::Result<bool> {
    let c = cstr(dir.as_os_str().as_bytes())?;
    let mut v = [0u8; 2];
    // SAFETY: `v` is valid for its length; lgetxattr never follows the final symlink.
    let n = unsafe {
        libc::lgetxattr(
            c.as_ptr(),
            OPAQUE_XATTR_C.as_ptr(),
            v.as_mut_ptr().cast(),
            v.len(),
        )
    };
    if n < 0 {
        let e = io::Error::last_os_error();
        return match errno(&e) {
            libc::ENODATA | libc::ENOTSUP | libc::ERANGE => Ok(false),
            _ => Err(e),
        };
    }
    Ok(&v[..n as usize] == b"y")
}

const OPAQUE_XATTR_C: &CStr = c"trusted.overlay.opaque";

/// Whether the merged lower view of a directory (its lower dirs `lower`, topmost first) has
/// `name`, and if it is a directory there, the lower dirs that make it up. Lower layers are our
/// own unpacked layers; each step looks at real directories only (a symlink or file ends the
/// merge, as in overlayfs), so no path here goes through a symlink.
fn in_lower(lower: &[PathBuf], name: &[u8]) -> io::Result<(bool, Vec<PathBuf>)> {
    let mut present = false;
    let mut dirs = Vec::new();
    for d in lower {
        let p = d.join(OsStr::from_bytes(name));
        let md = match std::fs::symlink_metadata(&p) {
            Ok(md) => md,
            Err(e) if matches!(errno(&e), libc::ENOENT | libc::ENOTDIR) => continue,
            Err(e) => return Err(e),
        };
        if lstat_whiteout(&md) || !md.is_dir() {
            // A whiteout hides this name below; a non-directory ends the merge (and is the
            // name itself if nothing above had it).
            present |= !lstat_whiteout(&md);
            break;
        }
        present = true;
        let opaque = lower_opaque(&p)?;
        dirs.push(p);
        if opaque {
            break;
        }
    }
    Ok((present, dirs))
}

/// The names the merged view of `dirs` (topmost first) holds.
fn merged_names(dirs: &[PathBuf]) -> io::Result<Vec<CString>> {
    let mut seen: HashMap<Vec<u8>, bool> = HashMap::new();
    for d in dirs {
        for e in std::fs::read_dir(d)? {
            let e = e?;
            let name = e.file_name().into_vec();
            if seen.contains_key(&name) {
                continue;
            }
            let ft = e.file_type()?;
            let whiteout = ft.is_char_device() && lstat_whiteout(&e.metadata()?);
            seen.insert(name, !whiteout);
        }
    }
    let mut out: Vec<CString> = seen
        .into_iter()
        .filter(|(_, present)| *present)
        .map(|(n, _)| CString::new(n).expect("no NUL in a file name"))
        .collect();
    out.sort();
    Ok(out)
}
