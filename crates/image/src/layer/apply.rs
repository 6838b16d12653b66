//! Applying a layer tar into a directory: one streaming pass (decompress → hash → untar), every
//! path resolved by us inside the target.

use std::cell::Cell;
use std::ffi::{CStr, CString};
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::rc::Rc;

use tar::EntryType;

use super::sys::{self, cstr, errno, IN_ROOT, IN_ROOT_NO_SYMLINKS};
use super::whiteout::{parse_whiteout, Whiteout, OPAQUE_XATTR, WHITEOUT_META_PREFIX};
use super::{
    AppliedLayer, Compression, LayerError, Reject, Result, DEFAULT_MAX_LAYER_SIZE,
    MAX_ENTRY_METADATA,
};
use crate::digest::DigestReader;

/// Read buffer in front of a plain tar (compressed streams have their decoder's own buffer).
const INPUT_BUF: usize = 256 << 10;
/// Copy buffer for file contents.
const COPY_BUF: usize = 1 << 20;
/// Linux's dev_t as mknod(2) takes it: 12 bits of major, 20 of minor.
const MAX_MAJOR: u32 = 0xfff;
const MAX_MINOR: u32 = 0xf_ffff;
const UNLIMITED: u64 = u64::MAX;

/// Applies one layer tar (gzip, zstd or plain, detected by magic bytes) into `target`, an
/// empty directory that becomes the layer's overlay lowerdir, and returns its diff_id (sha256
/// of the uncompressed tar, trailing padding included) and uncompressed size. At most
/// [`DEFAULT_MAX_LAYER_SIZE`] bytes are unpacked: see [`apply_layer_limited`].
///
/// The input is read to its end (so a digest the caller computes over it is complete). On
/// error, nothing outside `target` has been touched; `target` is left half-filled for the
/// caller to remove.
pub fn apply_layer(reader: impl Read, target: &Path) -> Result<AppliedLayer> {
    apply_layer_limited(reader, target, DEFAULT_MAX_LAYER_SIZE)
}

/// [`apply_layer`], failing with [`LayerError::TooLarge`] as soon as the uncompressed tar
/// exceeds `max_size` bytes (the input is then not read to its end).
pub fn apply_layer_limited(
    reader: impl Read,
    target: &Path,
    max_size: u64,
) -> Result<AppliedLayer> {
    let mut input = reader;
    let target_c = cstr(target.as_os_str().as_bytes()).map_err(|e| io_err("open", target, e))?;
    let root = sys::open_path(&target_c, libc::O_RDONLY | libc::O_DIRECTORY)
        .map_err(|e| io_err("open", target, e))?;
    let (_, decompressed) = decompress(&mut input).map_err(LayerError::Stream)?;
    let capped = Capped::new(decompressed, max_size);
    let exceeded = capped.exceeded.clone();
    // Whatever error the tar crate makes of the cap's, the flag says what happened.
    let applied = unpack(capped, root).map_err(|e| match exceeded.get() {
        true => LayerError::TooLarge(LayerTooLarge { limit: max_size }),
        false => e,
    })?;
    io::copy(&mut input, &mut io::sink()).map_err(LayerError::Stream)?;
    Ok(applied)
}

/// The streaming untar of [`apply_layer`] into the directory `root`.
fn unpack(decompressed: impl Read, root: OwnedFd) -> Result<AppliedLayer> {
    let budgeted = Budgeted::new(DigestReader::new(decompressed));
    let budget = budgeted.budget();
    let mut archive = tar::Archive::new(budgeted);
    let mut applier = Applier {
        root,
        cache: None,
        dirs: Vec::new(),
        buf: vec![0u8; COPY_BUF],
        dirty: false,
        content_size: 0,
    };
    {
        let mut entries = archive.entries().map_err(LayerError::Stream)?;
        while let Some(entry) = next_entry(&mut entries, &budget) {
            let mut entry = entry.map_err(LayerError::Stream)?;
            applier.entry(&mut entry)?;
            // Data nobody consumed (directories, links and whiteouts with a size) is read
            // here, outside the metadata budget.
            io::copy(&mut entry, &mut io::sink()).map_err(LayerError::Stream)?;
        }
    }
    applier.finish()?;

    // The tar crate stops at the first zero block. As Go's archive/tar (Docker), a second
    // block that is not zero means entries hide after a lone end marker: refuse rather than
    // silently ignore what other engines would reject.
    let mut rest = archive.into_inner().inner;
    let mut block = [0u8; 512];
    let n = read_prefix(&mut rest, &mut block).map_err(LayerError::Stream)?;
    if block[..n].iter().any(|&b| b != 0) {
        return Err(LayerError::Stream(io::Error::new(
            io::ErrorKind::InvalidData,
            "data after a single end-of-archive block",
        )));
    }
    // The end-of-archive blocks and any padding after them are part of the diff_id.
    io::copy(&mut rest, &mut io::sink()).map_err(LayerError::Stream)?;
    let (diff_id, size) = rest.finish();
    Ok(AppliedLayer {
        diff_id,
        size,
        content_size: Some(applier.content_size),
    })
}

/// The uncompressed bytes of a layer blob — gzip, zstd or plain, told apart by their magic
/// bytes — and the compression found.
pub fn decompress<'a>(mut reader: impl Read + 'a) -> io::Result<(Compression, Box<dyn Read + 'a>)> {
    let mut magic = [0u8; 4];
    let n = read_prefix(&mut reader, &mut magic)?;
    let compression = Compression::detect(&magic[..n]);
    let stream = io::Cursor::new(magic).take(n as u64).chain(reader);
    let decompressed: Box<dyn Read + 'a> = match compression {
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(stream)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(stream)?),
        Compression::None => Box::new(BufReader::with_capacity(INPUT_BUF, stream)),
    };
    Ok((compression, decompressed))
}

/// The diff_id and uncompressed size of a layer blob, without unpacking it: what
/// [`apply_layer`] would report for it. The input is read to its end.
pub fn hash_layer(reader: impl Read) -> io::Result<AppliedLayer> {
    hash_layer_limited(reader, DEFAULT_MAX_LAYER_SIZE)
}

/// [`hash_layer`], failing (with a [`LayerTooLarge`] inside the `io::Error`) once the
/// uncompressed tar exceeds `max_size` bytes.
pub fn hash_layer_limited(reader: impl Read, max_size: u64) -> io::Result<AppliedLayer> {
    let mut input = reader;
    let (_, decompressed) = decompress(&mut input)?;
    let mut hashed = DigestReader::new(Capped::new(decompressed, max_size));
    io::copy(&mut hashed, &mut io::sink())?;
    let (diff_id, size) = hashed.finish();
    io::copy(&mut input, &mut io::sink())?;
    Ok(AppliedLayer {
        diff_id,
        size,
        content_size: None,
    })
}

/// A layer that unpacks to more bytes than allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "the layer is larger than {limit} bytes uncompressed, the most this store unpacks \
     (a decompression bomb?)"
)]
pub struct LayerTooLarge {
    pub limit: u64,
}

/// The decompressed stream of a layer, failing once more than `left` bytes came through.
struct Capped<R> {
    inner: R,
    left: u64,
    limit: u64,
    exceeded: Rc<Cell<bool>>,
}

impl<R> Capped<R> {
    fn new(inner: R, limit: u64) -> Capped<R> {
        Capped {
            inner,
            left: limit,
            limit,
            exceeded: Rc::new(Cell::new(false)),
        }
    }
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // One byte past the limit is asked for, to tell "exactly the limit" from "more".
        let want = buf
            .len()
            .min(usize::try_from(self.left.saturating_add(1)).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n as u64 > self.left {
            self.exceeded.set(true);
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                LayerTooLarge { limit: self.limit },
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

fn io_err(op: &'static str, path: &Path, source: io::Error) -> LayerError {
    LayerError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// An entry name for an error message (a hostile name can be megabytes long).
fn show(raw: &[u8]) -> String {
    const MAX: usize = 1024;
    if raw.len() <= MAX {
        String::from_utf8_lossy(raw).into_owned()
    } else {
        format!(
            "{}… ({} bytes)",
            String::from_utf8_lossy(&raw[..MAX]),
            raw.len()
        )
    }
}

fn rejected(raw: &[u8], reason: Reject) -> LayerError {
    LayerError::Rejected {
        entry: show(raw),
        reason,
    }
}

fn failed<'a>(raw: &'a [u8], op: &'static str) -> impl FnOnce(io::Error) -> LayerError + 'a {
    move |source| LayerError::Entry {
        entry: show(raw),
        op,
        source,
    }
}

/// Reads up to `buf.len()` bytes, stopping early only at end of stream.
fn read_prefix(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(m) => n += m,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// A reader that fails once more than the current budget has been read through it; the
/// budget is lifted (`UNLIMITED`) while entry data is read. Tars are read through it with
/// [`next_entry`].
pub(crate) struct Budgeted<R> {
    inner: R,
    budget: Rc<Cell<u64>>,
}

impl<R> Budgeted<R> {
    pub(crate) fn new(inner: R) -> Budgeted<R> {
        Budgeted {
            inner,
            budget: Rc::new(Cell::new(UNLIMITED)),
        }
    }

    /// The budget, to hand to [`next_entry`] once the tar crate owns the reader.
    pub(crate) fn budget(&self) -> Rc<Cell<u64>> {
        self.budget.clone()
    }
}

/// The next entry of a tar read through [`Budgeted`]. Everything the tar crate reads to
/// produce it (the previous entry's padding, header blocks, GNU long names, PAX records) is
/// metadata it buffers in memory: at most [`MAX_ENTRY_METADATA`] bytes of it are read.
pub(crate) fn next_entry<'a, R: Read>(
    entries: &mut tar::Entries<'a, Budgeted<R>>,
    budget: &Cell<u64>,
) -> Option<io::Result<tar::Entry<'a, Budgeted<R>>>> {
    budget.set(MAX_ENTRY_METADATA);
    let next = entries.next();
    budget.set(UNLIMITED);
    next
}

impl<R: Read> Read for Budgeted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.budget.get();
        if left == UNLIMITED {
            return self.inner.read(buf);
        }
        if left == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "more than {MAX_ENTRY_METADATA} bytes of tar metadata (headers, long names, \
                     PAX records) for one entry"
                ),
            ));
        }
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        self.budget.set(left - n as u64);
        Ok(n)
    }
}

/// Splits an entry name into its components: empty and `.` components are dropped, a leading
/// `/` is ignored (names are relative to the layer root), `..` is refused.
fn components(raw: &[u8]) -> std::result::Result<Vec<&[u8]>, Reject> {
    let mut out = Vec::new();
    for c in raw.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err(Reject::DotDot),
            c if c.contains(&0) => return Err(Reject::Nul),
            c => out.push(c),
        }
    }
    Ok(out)
}

fn join(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            out.push(b'/');
        }
        out.extend_from_slice(p);
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    File,
    Dir,
    Symlink,
    Hardlink,
    Char,
    Block,
    Fifo,
}

impl Kind {
    fn of(header: &tar::Header, raw: &[u8]) -> std::result::Result<Option<Kind>, Reject> {
        let flag = header.as_old().linkflag[0];
        Ok(Some(match header.entry_type() {
            // Old (pre-POSIX) tars mark directories by a trailing slash on a regular entry.
            EntryType::Regular if flag == 0 && raw.ends_with(b"/") => Kind::Dir,
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => Kind::File,
            EntryType::Directory => Kind::Dir,
            EntryType::Symlink => Kind::Symlink,
            EntryType::Link => Kind::Hardlink,
            EntryType::Char => Kind::Char,
            EntryType::Block => Kind::Block,
            EntryType::Fifo => Kind::Fifo,
            EntryType::XGlobalHeader => return Ok(None),
            _ => return Err(Reject::UnsupportedType(flag as char)),
        }))
    }

    fn file_type(self) -> u32 {
        match self {
            Kind::File | Kind::Hardlink => libc::S_IFREG,
            Kind::Dir => libc::S_IFDIR,
            Kind::Symlink => libc::S_IFLNK,
            Kind::Char => libc::S_IFCHR,
            Kind::Block => libc::S_IFBLK,
            Kind::Fifo => libc::S_IFIFO,
        }
    }
}

/// Ownership, permissions, times and xattrs of an entry.
struct Meta {
    uid: u32,
    gid: u32,
    mode: u32,
    times: [libc::timespec; 2],
    xattrs: Vec<(CString, Vec<u8>)>,
}

fn id(value: u64, what: &'static str) -> std::result::Result<u32, Reject> {
    // u32::MAX is chown's "leave unchanged".
    match u32::try_from(value) {
        Ok(v) if v != u32::MAX => Ok(v),
        _ => Err(Reject::OutOfRange { what, value }),
    }
}

/// Parses a PAX time (`secs[.frac]`, possibly negative).
fn pax_time(v: &[u8]) -> Option<libc::timespec> {
    let s = std::str::from_utf8(v).ok()?;
    let (neg, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    if secs.is_empty() || !secs.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: i64 = secs.parse().ok()?;
    let mut nsec: i64 = 0;
    for (i, b) in frac.bytes().take(9).enumerate() {
        nsec += i64::from(b - b'0') * 10i64.pow(8 - i as u32);
    }
    Some(if !neg {
        sys::timespec(secs, nsec)
    } else if nsec == 0 {
        sys::timespec(-secs, 0)
    } else {
        sys::timespec(-secs - 1, 1_000_000_000 - nsec)
    })
}

/// Xattrs overlayfs interprets; a layer must not be able to set them (they would redirect
/// lookups or fake metadata-only copies), except the opaque flag we derive from `.wh..wh..opq`.
pub(super) fn overlay_private(name: &[u8]) -> bool {
    name.starts_with(b"trusted.overlay.") || name.starts_with(b"user.overlay.")
}

impl Meta {
    fn read<R: Read>(entry: &mut tar::Entry<R>, raw: &[u8]) -> Result<Meta> {
        let h = entry.header();
        let bad = |e: io::Error| rejected(raw, Reject::BadHeader(e.to_string()));
        let mode = h.mode().map_err(bad)? & 0o7777;
        let uid = id(h.uid().map_err(bad)?, "uid").map_err(|r| rejected(raw, r))?;
        let gid = id(h.gid().map_err(bad)?, "gid").map_err(|r| rejected(raw, r))?;
        let secs = i64::try_from(h.mtime().map_err(bad)?).unwrap_or(i64::MAX);
        let mut mtime = sys::timespec(secs, 0);
        let mut atime = None;
        let mut xattrs = Vec::new();
        if let Some(exts) = entry.pax_extensions().map_err(LayerError::Stream)? {
            for ext in exts {
                let ext = ext.map_err(|e| rejected(raw, Reject::BadHeader(e.to_string())))?;
                match ext.key_bytes() {
                    b"mtime" => mtime = pax_time(ext.value_bytes()).unwrap_or(mtime),
                    b"atime" => atime = pax_time(ext.value_bytes()),
                    key => {
                        if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                            if !overlay_private(name) {
                                let name = cstr(name).map_err(|_| rejected(raw, Reject::Nul))?;
                                xattrs.push((name, ext.value_bytes().to_vec()));
                            }
                        }
                    }
                }
            }
        }
        // As Docker: an access time before the modification time is raised to it.
        let atime = match atime {
            Some(a) if (a.tv_sec, a.tv_nsec) >= (mtime.tv_sec, mtime.tv_nsec) => a,
            _ => mtime,
        };
        Ok(Meta {
            uid,
            gid,
            mode,
            times: [atime, mtime],
            xattrs,
        })
    }

    /// Ownership, then mode (chown clears setuid/setgid), then xattrs (chown clears
    /// security.capability), through a real fd of a file or directory.
    fn apply_fd(&self, fd: BorrowedFd, raw: &[u8]) -> Result<()> {
        sys::fchown(fd, self.uid, self.gid).map_err(failed(raw, "chown"))?;
        sys::fchmod(fd, self.mode).map_err(failed(raw, "chmod"))?;
        for (name, value) in &self.xattrs {
            xattr_result(sys::fsetxattr(fd, name, value), raw)?;
        }
        Ok(())
    }
}

/// Xattrs the filesystem cannot hold (ENOTSUP) or refuses for this file type (EPERM: user.*
/// on symlinks and devices) are skipped, as Docker does.
fn xattr_result(r: io::Result<()>, raw: &[u8]) -> Result<()> {
    match r {
        Err(e) if matches!(errno(&e), libc::ENOTSUP | libc::EPERM) => Ok(()),
        r => r.map_err(failed(raw, "set xattr")),
    }
}

struct Applier {
    /// The target directory: every resolution starts here.
    root: OwnedFd,
    /// The last parent directory resolved (its relative name and an O_PATH fd): consecutive
    /// entries of one directory resolve it once.
    cache: Option<(Vec<u8>, OwnedFd)>,
    /// Directories created, with their times, set at the end (creating children changes them).
    dirs: Vec<(Vec<u8>, [libc::timespec; 2])>,
    buf: Vec<u8>,
    /// Something was removed while applying the current entry: cached resolutions are stale.
    dirty: bool,
    /// Bytes of the files applied so far (see [`AppliedLayer::content_size`]); a hard link
    /// adds nothing, its file is counted once.
    content_size: u64,
}

/// What a resolution is for, to name its failures.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Purpose {
    Parent,
    Whiteout,
}

impl Applier {
    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<R>) -> Result<()> {
        let raw = entry.path_bytes().into_owned();
        let Some(kind) = Kind::of(entry.header(), &raw).map_err(|r| rejected(&raw, r))? else {
            return Ok(());
        };
        let comps = components(&raw).map_err(|r| rejected(&raw, r))?;
        let Some((&last, parents)) = comps.split_last() else {
            // The layer root itself (`./`): its metadata is not the layer's to set.
            return match kind {
                Kind::Dir => Ok(()),
                _ => Err(rejected(&raw, Reject::RootNotDirectory)),
            };
        };
        // AUFS bookkeeping (`.wh..wh.plnk/…`) is not content.
        if parents
            .iter()
            .any(|c| c.starts_with(WHITEOUT_META_PREFIX.as_bytes()))
        {
            return Ok(());
        }
        let parent = join(parents);
        match parse_whiteout(last).map_err(|r| rejected(&raw, r))? {
            Some(Whiteout::Meta) => return Ok(()),
            Some(Whiteout::Opaque) => return self.opaque(&raw, &parent),
            Some(Whiteout::Remove(name)) => return self.whiteout(&raw, &parent, name),
            None => {}
        }

        let meta = Meta::read(entry, &raw)?;
        let name = cstr(last).map_err(|_| rejected(&raw, Reject::Nul))?;
        let held = if parent.is_empty() {
            None
        } else {
            Some(self.take_parent(&raw, parent)?)
        };
        self.dirty = false;
        let pfd = match &held {
            Some((_, fd)) => fd.as_fd(),
            None => self.root.as_fd(),
        };
        let content_size = match kind {
            // The entry's size: a PAX header's where there is one (files of 8 GiB or more).
            Kind::File => entry.size(),
            Kind::Symlink => entry
                .link_name_bytes()
                .map_or(0, |target| target.len() as u64),
            _ => 0,
        };
        let root = self.root.as_fd();
        let dirty = &mut self.dirty;
        let result = match kind {
            Kind::File => file(pfd, &name, &meta, entry, &mut self.buf, dirty, &raw),
            Kind::Dir => {
                let r = dir(pfd, &name, &meta, dirty, &raw);
                if r.is_ok() {
                    let mut path = held.as_ref().map(|(p, _)| p.clone()).unwrap_or_default();
                    if !path.is_empty() {
                        path.push(b'/');
                    }
                    path.extend_from_slice(last);
                    self.dirs.push((path, meta.times));
                }
                r
            }
            Kind::Symlink => symlink(pfd, &name, &meta, entry, dirty, &raw),
            Kind::Hardlink => hardlink(root, pfd, &name, entry, dirty, &raw),
            Kind::Char | Kind::Block | Kind::Fifo => {
                node(pfd, &name, kind, &meta, entry.header(), dirty, &raw)
            }
        };
        if self.dirty {
            self.cache = None;
        } else if held.is_some() {
            self.cache = held;
        }
        if result.is_ok() {
            self.content_size = self.content_size.saturating_add(content_size);
        }
        result
    }

    /// The O_PATH fd of an entry's parent directory (relative name `parent`, not empty),
    /// resolved inside the root and created if missing; from the cache when it is the last one.
    fn take_parent(&mut self, raw: &[u8], parent: Vec<u8>) -> Result<(Vec<u8>, OwnedFd)> {
        if let Some((p, fd)) = self.cache.take() {
            if p == parent {
                return Ok((p, fd));
            }
        }
        let fd = ensure_dir(self.root.as_fd(), &parent, Purpose::Parent, raw)?;
        Ok((parent, fd))
    }

    /// `.wh.<name>` in `parent`: an overlay whiteout (char 0:0) named `<name>`.
    fn whiteout(&mut self, raw: &[u8], parent: &[u8], name: &[u8]) -> Result<()> {
        let dir = self.whiteout_dir(raw, parent)?;
        let dir = dir.as_fd();
        let name = cstr(name).map_err(|_| rejected(raw, Reject::Nul))?;
        let mk = || sys::mknodat(dir, &name, libc::S_IFCHR, 0, 0);
        match mk() {
            Err(e) if errno(&e) == libc::EEXIST => {
                self.cache = None;
                remove_at(dir, &name).map_err(failed(raw, "remove before whiteout"))?;
                mk()
            }
            r => r,
        }
        .map_err(failed(raw, "create whiteout"))
    }

    /// `.wh..wh..opq` in `parent`: the directory is opaque.
    fn opaque(&mut self, raw: &[u8], parent: &[u8]) -> Result<()> {
        let dir = self.whiteout_dir(raw, parent)?;
        let fd = sys::openat(dir.as_fd(), c".", libc::O_RDONLY | libc::O_DIRECTORY, 0)
            .map_err(failed(raw, "open opaque directory"))?;
        let name = cstr(OPAQUE_XATTR.as_bytes()).expect("constant");
        sys::fsetxattr(fd.as_fd(), &name, b"y").map_err(failed(raw, "set opaque xattr"))
    }

    /// The directory a whiteout applies to: resolved inside the root without any symlink.
    fn whiteout_dir(&self, raw: &[u8], parent: &[u8]) -> Result<OwnedFd> {
        if parent.is_empty() {
            sys::openat(self.root.as_fd(), c".", libc::O_PATH | libc::O_DIRECTORY, 0)
                .map_err(failed(raw, "open layer root"))
        } else {
            ensure_dir(self.root.as_fd(), parent, Purpose::Whiteout, raw)
        }
    }

    /// Sets the times of the directories created, deepest last-created first.
    fn finish(&mut self) -> Result<()> {
        self.cache = None;
        for (path, times) in self.dirs.iter().rev() {
            let c = cstr(path).map_err(|_| rejected(path, Reject::Nul))?;
            let fd = match sys::openat2(
                self.root.as_fd(),
                &c,
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
                0,
                IN_ROOT,
            ) {
                Ok(fd) => fd,
                // Replaced or removed by a later entry.
                Err(e) if matches!(errno(&e), libc::ENOENT | libc::ENOTDIR | libc::ELOOP) => {
                    continue
                }
                Err(e) => return Err(failed(path, "open directory to set times")(e)),
            };
            sys::futimens(fd.as_fd(), times).map_err(failed(path, "set times"))?;
        }
        Ok(())
    }
}

/// Resolves `path` (relative, normalized, not empty) to an O_PATH directory fd inside `root`,
/// creating missing directories (0755) one by one, each with mkdirat in its resolved parent.
/// For whiteouts, any symlink on the way is refused; otherwise symlinks resolve inside `root`.
fn ensure_dir(root: BorrowedFd, path: &[u8], purpose: Purpose, raw: &[u8]) -> Result<OwnedFd> {
    let resolve = match purpose {
        Purpose::Parent => IN_ROOT,
        Purpose::Whiteout => IN_ROOT_NO_SYMLINKS,
    };
    let open = |p: &[u8]| -> Result<io::Result<OwnedFd>> {
        let c = cstr(p).map_err(|_| rejected(raw, Reject::Nul))?;
        Ok(sys::openat2(
            root,
            &c,
            libc::O_PATH | libc::O_DIRECTORY,
            0,
            resolve,
        ))
    };
    let refuse = |prefix: &[u8], e: io::Error| -> LayerError {
        let p = show(prefix);
        match errno(&e) {
            libc::ENOTDIR => rejected(raw, Reject::ParentNotDirectory(p)),
            libc::ELOOP if purpose == Purpose::Whiteout => {
                rejected(raw, Reject::WhiteoutThroughSymlink)
            }
            libc::ELOOP => rejected(raw, Reject::SymlinkLoop(p)),
            libc::EXDEV => rejected(raw, Reject::CrossesMount(p)),
            _ => failed(raw, "resolve parent directory")(e),
        }
    };
    match open(path)? {
        Ok(fd) => return Ok(fd),
        Err(e) if errno(&e) == libc::ENOENT => {}
        Err(e) => return Err(refuse(path, e)),
    }
    let mut cur: Option<OwnedFd> = None;
    let mut end = 0;
    for comp in path.split(|&b| b == b'/') {
        end += comp.len();
        let prefix = &path[..end];
        end += 1;
        let fd = match open(prefix)? {
            Ok(fd) => fd,
            Err(e) if errno(&e) == libc::ENOENT => {
                let dir = cur.as_ref().map(|f| f.as_fd()).unwrap_or(root);
                let name = cstr(comp).map_err(|_| rejected(raw, Reject::Nul))?;
                match sys::mkdirat(dir, &name, 0o755) {
                    Ok(()) => {}
                    Err(e) if errno(&e) == libc::EEXIST => {
                        return Err(rejected(raw, Reject::ParentInTheWay(show(prefix))))
                    }
                    Err(e) => return Err(failed(raw, "create parent directory")(e)),
                }
                // The directory just made, never a symlink: set its mode regardless of umask.
                let fd = sys::openat(
                    dir,
                    &name,
                    libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
                    0,
                )
                .map_err(failed(raw, "open parent directory"))?;
                sys::fchmod(fd.as_fd(), 0o755).map_err(failed(raw, "chmod parent directory"))?;
                fd
            }
            Err(e) => return Err(refuse(prefix, e)),
        };
        cur = Some(fd);
    }
    Ok(cur.expect("path is not empty"))
}

/// Runs `create`; if the name is taken, removes what is there (never following a symlink,
/// recursively for a directory) and runs it again.
fn replacing<T>(
    dir: BorrowedFd,
    name: &CStr,
    dirty: &mut bool,
    mut create: impl FnMut() -> io::Result<T>,
) -> io::Result<T> {
    match create() {
        Err(e) if errno(&e) == libc::EEXIST => {
            *dirty = true;
            remove_at(dir, name)?;
            create()
        }
        r => r,
    }
}

/// Removes `name` in `dir` whatever it is; a directory with everything in it.
fn remove_at(dir: BorrowedFd, name: &CStr) -> io::Result<()> {
    match sys::unlinkat(dir, name, 0) {
        Ok(()) => Ok(()),
        Err(e) if errno(&e) == libc::ENOENT => Ok(()),
        Err(e) if matches!(errno(&e), libc::EISDIR | libc::EPERM) => {
            let fd = sys::openat(
                dir,
                name,
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
                0,
            )?;
            let mut d = nix::dir::Dir::from_fd(fd).map_err(io::Error::from)?;
            let mut children = Vec::new();
            for e in d.iter() {
                let e = e.map_err(io::Error::from)?;
                let n = e.file_name();
                if n != c"." && n != c".." {
                    children.push(n.to_owned());
                }
            }
            for child in &children {
                remove_at(d.as_fd(), child)?;
            }
            sys::unlinkat(dir, name, libc::AT_REMOVEDIR)
        }
        Err(e) => Err(e),
    }
}

fn file<R: Read>(
    dir: BorrowedFd,
    name: &CStr,
    meta: &Meta,
    entry: &mut tar::Entry<R>,
    buf: &mut [u8],
    dirty: &mut bool,
    raw: &[u8],
) -> Result<()> {
    let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW;
    let fd = replacing(dir, name, dirty, || sys::openat(dir, name, flags, 0o600))
        .map_err(failed(raw, "create file"))?;
    let mut file = File::from(fd);
    let want = entry.size();
    let mut got = 0u64;
    loop {
        let n = match entry.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(LayerError::Stream(e)),
        };
        file.write_all(&buf[..n])
            .map_err(failed(raw, "write file"))?;
        got += n as u64;
    }
    if got != want {
        return Err(rejected(raw, Reject::Truncated { got, want }));
    }
    meta.apply_fd(file.as_fd(), raw)?;
    sys::futimens(file.as_fd(), &meta.times).map_err(failed(raw, "set times"))
}

fn dir(dir: BorrowedFd, name: &CStr, meta: &Meta, dirty: &mut bool, raw: &[u8]) -> Result<()> {
    match sys::mkdirat(dir, name, 0o700) {
        Ok(()) => {}
        Err(e) if errno(&e) == libc::EEXIST => {
            let st = sys::fstatat(dir, name, libc::AT_SYMLINK_NOFOLLOW)
                .map_err(failed(raw, "stat existing"))?;
            // An existing directory is kept (and gets this entry's metadata); anything else
            // is replaced.
            if sys::file_type(&st) != libc::S_IFDIR {
                *dirty = true;
                remove_at(dir, name).map_err(failed(raw, "remove existing"))?;
                sys::mkdirat(dir, name, 0o700).map_err(failed(raw, "create directory"))?;
            }
        }
        Err(e) => return Err(failed(raw, "create directory")(e)),
    }
    let fd = sys::openat(
        dir,
        name,
        libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
        0,
    )
    .map_err(failed(raw, "open directory"))?;
    meta.apply_fd(fd.as_fd(), raw)
}

/// Sets what can be set on a node that must not be opened for I/O (symlink, device, fifo):
/// ownership and times by name with AT_SYMLINK_NOFOLLOW, mode and xattrs through an
/// O_PATH|O_NOFOLLOW fd (never through a symlink: symlinks get no chmod).
fn node_meta(dir: BorrowedFd, name: &CStr, kind: Kind, meta: &Meta, raw: &[u8]) -> Result<()> {
    sys::lchownat(dir, name, meta.uid, meta.gid).map_err(failed(raw, "chown"))?;
    if kind != Kind::Symlink || !meta.xattrs.is_empty() {
        let fd = sys::openat(dir, name, libc::O_PATH | libc::O_NOFOLLOW, 0)
            .map_err(failed(raw, "open"))?;
        let st = sys::fstat(fd.as_fd()).map_err(failed(raw, "stat"))?;
        if sys::file_type(&st) != kind.file_type() {
            return Err(failed(raw, "open")(io::Error::other(
                "the node changed type while being created",
            )));
        }
        if kind != Kind::Symlink {
            sys::chmod_fd(fd.as_fd(), meta.mode).map_err(failed(raw, "chmod"))?;
        }
        for (n, v) in &meta.xattrs {
            xattr_result(sys::setxattr_fd(fd.as_fd(), n, v), raw)?;
        }
    }
    sys::lutimensat(dir, name, &meta.times).map_err(failed(raw, "set times"))
}

fn symlink<R: Read>(
    dir: BorrowedFd,
    name: &CStr,
    meta: &Meta,
    entry: &tar::Entry<R>,
    dirty: &mut bool,
    raw: &[u8],
) -> Result<()> {
    let target = entry.link_name_bytes().unwrap_or_default();
    if target.is_empty() {
        return Err(rejected(raw, Reject::SymlinkEmpty));
    }
    // Stored verbatim: it is only ever resolved inside a root (the container's, or ours).
    let target = cstr(&target).map_err(|_| rejected(raw, Reject::Nul))?;
    replacing(dir, name, dirty, || sys::symlinkat(&target, dir, name))
        .map_err(failed(raw, "create symlink"))?;
    node_meta(dir, name, Kind::Symlink, meta, raw)
}

fn hardlink<R: Read>(
    root: BorrowedFd,
    dir: BorrowedFd,
    name: &CStr,
    entry: &tar::Entry<R>,
    dirty: &mut bool,
    raw: &[u8],
) -> Result<()> {
    let target = entry.link_name_bytes().unwrap_or_default().into_owned();
    let t = show(&target);
    let comps = components(&target).map_err(|r| match r {
        Reject::DotDot => rejected(raw, Reject::HardlinkDotDot(t.clone())),
        r => rejected(raw, r),
    })?;
    let Some((&tlast, tparents)) = comps.split_last() else {
        return Err(rejected(raw, Reject::HardlinkEmpty));
    };
    // The target must be an earlier entry of this layer, named as such: its parents are real
    // directories of the layer, never a symlink.
    let tdir_owned = if tparents.is_empty() {
        None
    } else {
        let c = cstr(&join(tparents)).map_err(|_| rejected(raw, Reject::Nul))?;
        let fd = sys::openat2(
            root,
            &c,
            libc::O_PATH | libc::O_DIRECTORY,
            0,
            IN_ROOT_NO_SYMLINKS,
        )
        .map_err(|e| match errno(&e) {
            libc::ENOENT | libc::ENOTDIR => rejected(raw, Reject::HardlinkTargetMissing(t.clone())),
            libc::ELOOP => rejected(raw, Reject::HardlinkThroughSymlink(t.clone())),
            libc::EXDEV => rejected(raw, Reject::CrossesMount(t.clone())),
            _ => failed(raw, "resolve hardlink target")(e),
        })?;
        Some(fd)
    };
    let tdir = tdir_owned.as_ref().map(|f| f.as_fd()).unwrap_or(root);
    let tname = cstr(tlast).map_err(|_| rejected(raw, Reject::Nul))?;
    let link = || sys::linkat(tdir, &tname, dir, name);
    let result = match link() {
        Err(e) if errno(&e) == libc::EEXIST => {
            let same = match (
                sys::fstatat(tdir, &tname, libc::AT_SYMLINK_NOFOLLOW),
                sys::fstatat(dir, name, libc::AT_SYMLINK_NOFOLLOW),
            ) {
                (Ok(a), Ok(b)) => a.st_dev == b.st_dev && a.st_ino == b.st_ino,
                _ => false,
            };
            if same {
                return Ok(());
            }
            *dirty = true;
            remove_at(dir, name).map_err(failed(raw, "remove existing"))?;
            link()
        }
        r => r,
    };
    result.map_err(|e| match errno(&e) {
        libc::ENOENT => rejected(raw, Reject::HardlinkTargetMissing(t.clone())),
        libc::EPERM
            if sys::fstatat(tdir, &tname, libc::AT_SYMLINK_NOFOLLOW)
                .is_ok_and(|st| sys::file_type(&st) == libc::S_IFDIR) =>
        {
            rejected(raw, Reject::HardlinkToDirectory(t.clone()))
        }
        _ => failed(raw, "create hardlink")(e),
    })
}

fn node(
    dir: BorrowedFd,
    name: &CStr,
    kind: Kind,
    meta: &Meta,
    header: &tar::Header,
    dirty: &mut bool,
    raw: &[u8],
) -> Result<()> {
    let (major, minor) = if kind == Kind::Fifo {
        (0, 0)
    } else {
        let bad = |e: io::Error| rejected(raw, Reject::BadHeader(e.to_string()));
        let major = header.device_major().map_err(bad)?.unwrap_or(0);
        let minor = header.device_minor().map_err(bad)?.unwrap_or(0);
        if major > MAX_MAJOR || minor > MAX_MINOR {
            return Err(rejected(
                raw,
                Reject::DeviceNumber {
                    major: major.into(),
                    minor: minor.into(),
                },
            ));
        }
        (major, minor)
    };
    let mode = kind.file_type() | 0o600;
    replacing(dir, name, dirty, || {
        sys::mknodat(dir, name, mode, major, minor)
    })
    .map_err(failed(raw, "create device node"))?;
    node_meta(dir, name, kind, meta, raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_drop_dots_and_refuse_parent() {
        assert_eq!(
            components(b"./a//b/./c/").unwrap(),
            vec![&b"a"[..], b"b", b"c"]
        );
        assert_eq!(
            components(b"/etc/passwd").unwrap(),
            vec![&b"etc"[..], b"passwd"]
        );
        assert!(components(b"./").unwrap().is_empty());
        assert_eq!(components(b"a/../b"), Err(Reject::DotDot));
        assert_eq!(components(b"../x"), Err(Reject::DotDot));
        assert_eq!(components(b"a/\0b"), Err(Reject::Nul));
        assert_eq!(components(b"...").unwrap(), vec![&b"..."[..]]);
    }

    #[test]
    fn pax_times() {
        let t = |s: &str| pax_time(s.as_bytes()).map(|t| (t.tv_sec, t.tv_nsec));
        assert_eq!(t("1700000000"), Some((1_700_000_000, 0)));
        assert_eq!(t("1700000000.5"), Some((1_700_000_000, 500_000_000)));
        assert_eq!(t("1.123456789123"), Some((1, 123_456_789)));
        assert_eq!(t("-1.5"), Some((-2, 500_000_000)));
        assert_eq!(t("x"), None);
        assert_eq!(t(""), None);
        assert_eq!(t("1.2.3"), None);
    }

    #[test]
    fn ids_must_fit_and_not_mean_unchanged() {
        assert_eq!(id(0, "uid"), Ok(0));
        assert_eq!(id(65534, "uid"), Ok(65534));
        assert!(id(u64::from(u32::MAX), "uid").is_err());
        assert!(id(1 << 40, "gid").is_err());
    }

    #[test]
    fn compression_is_detected_by_magic() {
        assert_eq!(Compression::detect(&[0x1f, 0x8b, 8, 0]), Compression::Gzip);
        assert_eq!(
            Compression::detect(&[0x28, 0xb5, 0x2f, 0xfd]),
            Compression::Zstd
        );
        assert_eq!(Compression::detect(b"etc/"), Compression::None);
        assert_eq!(Compression::detect(&[]), Compression::None);
    }

    #[test]
    fn cap_allows_exactly_the_limit_and_no_more() {
        let mut out = Vec::new();
        let mut at_limit = Capped::new(&[1u8; 100][..], 100);
        io::copy(&mut at_limit, &mut out).unwrap();
        assert_eq!(out.len(), 100);
        assert!(!at_limit.exceeded.get());
        let mut over = Capped::new(&[1u8; 101][..], 100);
        let err = io::copy(&mut over, &mut io::sink()).unwrap_err();
        assert!(over.exceeded.get());
        assert_eq!(
            err.get_ref()
                .and_then(|e| e.downcast_ref::<LayerTooLarge>()),
            Some(&LayerTooLarge { limit: 100 })
        );
    }

    #[test]
    fn budget_stops_metadata_but_not_data() {
        let budget = Rc::new(Cell::new(10));
        let mut r = Budgeted {
            inner: &[7u8; 64][..],
            budget: budget.clone(),
        };
        let mut buf = [0u8; 64];
        assert_eq!(r.read(&mut buf).unwrap(), 10);
        assert!(r.read(&mut buf).is_err());
        budget.set(UNLIMITED);
        assert_eq!(r.read(&mut buf).unwrap(), 54);
    }
}
