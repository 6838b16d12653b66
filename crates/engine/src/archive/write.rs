//! Writing a tree of the container as a tar stream (`cp` from a container, `export`),
//! reading every object through fds opened one name at a time (see `resolve`).

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;

use nix::dir::Dir;
use nix::fcntl::{readlinkat, OFlag};
use nix::sys::stat::{FileStat, Mode};
use tar::{EntryType, Header};

use super::resolve::{join, open_child, reopen, ContainerFs, Node};

/// How deep `cp` and `export` walk (Linux paths of 4 KiB allow ~2000 levels).
const MAX_TREE_DEPTH: usize = 512;

/// Writes `node` (and, for a directory, everything under it) to `builder`; entry names start
/// with `name` (`""`: the directory's contents at the top of the archive, without an entry
/// for the directory itself). With `fs`, mounts under the tree are descended into.
pub struct TreeWriter<'a, W: Write> {
    pub builder: tar::Builder<W>,
    pub fs: Option<&'a ContainerFs>,
    /// (dev, ino) of multiply-linked non-directories already written → their entry name.
    links: HashMap<(u64, u64), String>,
}

impl<'a, W: Write> TreeWriter<'a, W> {
    pub fn new(out: W, fs: Option<&'a ContainerFs>) -> TreeWriter<'a, W> {
        let mut builder = tar::Builder::new(out);
        builder.mode(tar::HeaderMode::Complete);
        TreeWriter {
            builder,
            fs,
            links: HashMap::new(),
        }
    }

    /// Archives the object `node` under the entry name `name`.
    pub fn write(&mut self, node: &Node, name: &str) -> io::Result<()> {
        let st = node.stat()?;
        self.entry(node.fd.as_fd(), &st, name, &node.path)
    }

    pub fn finish(self) -> io::Result<W> {
        self.builder.into_inner()
    }

    fn entry(&mut self, fd: BorrowedFd, st: &FileStat, name: &str, path: &str) -> io::Result<()> {
        let mut header = header_of(st);
        match st.st_mode & libc::S_IFMT {
            libc::S_IFDIR => {
                if !name.is_empty() {
                    header.set_entry_type(EntryType::Directory);
                    let dir_name = format!("{name}/");
                    self.append(&mut header, dir_name.as_bytes(), None, io::empty())?;
                }
                self.children(fd, name, path)
            }
            libc::S_IFREG => {
                if self.hardlink(st, name)? {
                    return Ok(());
                }
                let file = File::from(reopen(fd, OFlag::O_RDONLY | OFlag::O_NONBLOCK)?);
                // File capabilities travel as Docker's archives carry them: a PAX record.
                if let Some(caps) = capability(file.as_fd())? {
                    self.builder
                        .append_pax_extensions([(CAPABILITY_RECORD, caps.as_slice())])?;
                }
                header.set_size(st.st_size as u64);
                let data = Exactly {
                    inner: file.take(st.st_size as u64),
                    left: st.st_size as u64,
                };
                self.append(&mut header, name.as_bytes(), None, data)
            }
            libc::S_IFLNK => {
                let target = readlinkat(fd, c"")?.into_vec();
                header.set_entry_type(EntryType::Symlink);
                self.append(&mut header, name.as_bytes(), Some(&target), io::empty())
            }
            kind @ (libc::S_IFCHR | libc::S_IFBLK | libc::S_IFIFO) => {
                if self.hardlink(st, name)? {
                    return Ok(());
                }
                header.set_entry_type(match kind {
                    libc::S_IFCHR => EntryType::Char,
                    libc::S_IFBLK => EntryType::Block,
                    _ => EntryType::Fifo,
                });
                if kind != libc::S_IFIFO {
                    header.set_device_major(libc::major(st.st_rdev))?;
                    header.set_device_minor(libc::minor(st.st_rdev))?;
                }
                self.append(&mut header, name.as_bytes(), None, io::empty())
            }
            // Sockets are not archived (as Docker).
            _ => Ok(()),
        }
    }

    /// Appends an entry with exactly these names (the tar crate's path setters would drop a
    /// leading `./` and a trailing `/`, which Docker's clients rebase on); names longer than
    /// a header holds go in GNU long-name entries first.
    fn append(
        &mut self,
        header: &mut Header,
        name: &[u8],
        link: Option<&[u8]>,
        data: impl Read,
    ) -> io::Result<()> {
        if let Some(link) = link {
            if link.len() > NAME_FIELD {
                self.long_entry(EntryType::GNULongLink, link)?;
            }
            fill(&mut header.as_old_mut().linkname, link);
        }
        if name.len() > NAME_FIELD {
            self.long_entry(EntryType::GNULongName, name)?;
        }
        fill(&mut header.as_old_mut().name, name);
        header.set_cksum();
        self.builder.append(header, data)
    }

    fn long_entry(&mut self, kind: EntryType, value: &[u8]) -> io::Result<()> {
        let mut h = Header::new_gnu();
        fill(&mut h.as_old_mut().name, b"././@LongLink");
        h.set_entry_type(kind);
        h.set_mode(0o644);
        h.set_size(value.len() as u64 + 1);
        h.set_cksum();
        self.builder.append(&h, value.chain(&[0u8][..]))
    }

    /// A second name of an already archived inode becomes a hardlink entry.
    fn hardlink(&mut self, st: &FileStat, name: &str) -> io::Result<bool> {
        if st.st_nlink < 2 {
            return Ok(false);
        }
        let key = (st.st_dev, st.st_ino);
        if let Some(first) = self.links.get(&key) {
            let mut header = header_of(st);
            header.set_entry_type(EntryType::Link);
            let first = first.clone();
            self.append(
                &mut header,
                name.as_bytes(),
                Some(first.as_bytes()),
                io::empty(),
            )?;
            return Ok(true);
        }
        self.links.insert(key, name.to_string());
        Ok(false)
    }

    fn children(&mut self, dir: BorrowedFd, name: &str, path: &str) -> io::Result<()> {
        // The walk recurses: a container nesting directories thousands deep must get an
        // error, not overflow berthd's stack.
        if path.matches('/').count() >= MAX_TREE_DEPTH {
            return Err(io::Error::other(format!(
                "{path}: directories nested deeper than {MAX_TREE_DEPTH} levels"
            )));
        }
        let dirfd = reopen(dir, OFlag::O_RDONLY | OFlag::O_DIRECTORY)?;
        for child in sorted_names(dirfd)? {
            let child_name = String::from_utf8_lossy(child.to_bytes()).into_owned();
            let child_path = join(path, &child_name);
            let entry_name = if name.is_empty() {
                child_name
            } else {
                format!("{name}/{child_name}")
            };
            let mounted = self.fs.and_then(|fs| {
                fs.mount_at(&child_path)
                    .map(|i| fs.mounts[i].source.clone())
            });
            let fd: OwnedFd = match mounted {
                Some(source) => nix::fcntl::open(
                    source.as_path(),
                    OFlag::O_PATH | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )?,
                None => match open_child(dir, &child) {
                    Ok(fd) => fd,
                    // Removed while we were reading the directory.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                },
            };
            let st = nix::sys::stat::fstat(fd.as_fd())?;
            self.entry(fd.as_fd(), &st, &entry_name, &child_path)?;
        }
        Ok(())
    }
}

/// The names in a directory, without `.` and `..`, sorted bytewise (a stable archive).
fn sorted_names(dir: OwnedFd) -> io::Result<Vec<std::ffi::CString>> {
    let mut d = Dir::from_fd(dir)?;
    let mut names = Vec::new();
    for e in d.iter() {
        let n = e?.file_name().to_owned();
        if n.as_bytes() != b"." && n.as_bytes() != b".." {
            names.push(n);
        }
    }
    names.sort();
    Ok(names)
}

/// The PAX record of a file's `security.capability` xattr (the one xattr Docker archives).
pub const CAPABILITY_RECORD: &str = "SCHILY.xattr.security.capability";

/// A file's `security.capability` xattr, if it has one.
fn capability(fd: BorrowedFd) -> io::Result<Option<Vec<u8>>> {
    let mut buf = vec![0u8; 256];
    // SAFETY: the name is a NUL-terminated constant; the buffer is valid for its length.
    let n = unsafe {
        libc::fgetxattr(
            fd.as_raw_fd(),
            c"security.capability".as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ENODATA) | Some(libc::ENOTSUP) => Ok(None),
            _ => Err(e),
        };
    }
    buf.truncate(n as usize);
    Ok(Some(buf))
}

/// The size of a ustar/GNU header's name and link name fields.
const NAME_FIELD: usize = 100;

/// Copies `value` into a fixed header field, truncated, the rest zeroed.
fn fill(field: &mut [u8; NAME_FIELD], value: &[u8]) {
    let n = value.len().min(NAME_FIELD);
    field[..n].copy_from_slice(&value[..n]);
    field[n..].fill(0);
}

fn header_of(st: &FileStat) -> Header {
    let mut h = Header::new_gnu();
    h.set_mode(st.st_mode & 0o7777);
    h.set_uid(u64::from(st.st_uid));
    h.set_gid(u64::from(st.st_gid));
    h.set_mtime(st.st_mtime.max(0) as u64);
    h.set_size(0);
    h.set_entry_type(EntryType::Regular);
    h
}

/// Exactly `left` bytes: a file that shrank while being archived is padded with zeros, so
/// the entry still has the size its header announced.
struct Exactly<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Exactly<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = match self.inner.read(&mut buf[..want])? {
            0 => {
                buf[..want].fill(0);
                want
            }
            n => n,
        };
        self.left -= n as u64;
        Ok(n)
    }
}
