//! Layers: tar diffs applied into overlay lowerdirs, and overlay upper dirs turned back into
//! tar diffs.
//!
//! * [`apply_layer`] unpacks one (gzip, zstd or plain) layer tar into an empty directory in one
//!   streaming pass, computing its diff_id on the way. Layer tars are untrusted: every path is
//!   resolved by us inside the target (openat2 `RESOLVE_IN_ROOT`), the final component is never
//!   followed, and what cannot be contained is rejected with a [`LayerError::Rejected`] that
//!   names the entry. OCI whiteouts become overlay whiteouts (char 0:0) and opaque directories
//!   (`trusted.overlay.opaque=y`).
//! * [`decompress`] and [`hash_layer`] read a layer blob's tar and diff_id without unpacking
//!   it (saving an image uncompressed, checking a blob whose layer is unpacked already).
//! * [`write_layer_diff`] turns an overlay upper dir back into a layer tar (overlay whiteouts →
//!   `.wh.` entries, opaque dirs → `.wh..wh..opq`), deterministically ordered.
//! * [`changes`] lists what an upper dir changed relative to its lower layers (`docker diff`).
//!
//! Containment rules (what [`apply_layer`] does with hostile entries):
//!
//! | entry | behaviour |
//! |---|---|
//! | `..` component in a name or hardlink target | rejected ([`Reject::DotDot`], [`Reject::HardlinkDotDot`]) |
//! | absolute name or hardlink target (`/etc/x`) | clamped: taken relative to the layer root (as GNU tar and Docker do) |
//! | name whose parent goes through a symlink (`evil -> /`, then `evil/etc/x`) | clamped: the symlink is resolved inside the layer root, as under a chroot |
//! | final component is a symlink | never followed: the symlink is replaced |
//! | hardlink target through a symlink, missing, or a directory | rejected |
//! | whiteout whose parent goes through a symlink | rejected ([`Reject::WhiteoutThroughSymlink`]) |
//! | whiteout names `.wh.`, `.wh..`, `.wh...` | rejected ([`Reject::InvalidWhiteout`]) |
//! | device numbers that do not fit Linux's dev_t | rejected ([`Reject::DeviceNumber`]) |
//! | `trusted.overlay.*` / `user.overlay.*` xattrs | dropped (they would steer overlayfs) |
//! | more than [`MAX_ENTRY_METADATA`] bytes of headers/long names/PAX records for one entry | rejected (bounded memory) |

mod apply;
mod diff;
mod sys;
mod whiteout;

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::digest::Digest;

pub use apply::{
    apply_layer, apply_layer_limited, decompress, hash_layer, hash_layer_limited, LayerTooLarge,
};
pub(crate) use apply::{next_entry, Budgeted};
pub use diff::{changes, write_layer_diff};
pub use whiteout::{
    parse_whiteout, Whiteout, OPAQUE_XATTR, WHITEOUT_META_PREFIX, WHITEOUT_OPAQUE, WHITEOUT_PREFIX,
};

/// The most tar metadata (header blocks, GNU long names, PAX records) accepted for a single
/// entry. The tar crate buffers these in memory, so a hostile layer must not make them huge.
pub const MAX_ENTRY_METADATA: u64 = 4 << 20;

/// The most bytes a layer may hold uncompressed unless the store says otherwise
/// ([`ImageStore::set_max_layer_size`](crate::images::ImageStore::set_max_layer_size)).
///
/// A fixed bound rather than a multiple of the compressed size: a legitimate layer with a
/// large sparse or zero-filled file (a disk image, a preallocated database) compresses far
/// beyond any ratio gzip bombs need, and zstd goes further still, so a ratio would refuse
/// real images while a bound on the output is what protects the disk. 64 GiB is several
/// times the largest layers real images have (CUDA and ML images carry layers of a few GiB),
/// so no real image hits it, while a bomb stops at a known size; hosts with less disk set a
/// smaller one.
pub const DEFAULT_MAX_LAYER_SIZE: u64 = 64 << 30;

/// What applying a layer produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedLayer {
    /// sha256 of the uncompressed tar stream (the image config's `rootfs.diff_ids` entry).
    pub diff_id: Digest,
    /// Size of the uncompressed tar stream in bytes.
    pub size: u64,
    /// Bytes of the layer's files (regular files' sizes, symlinks' target lengths): what
    /// Docker reports as a layer's size. `None` where the layer was only hashed.
    pub content_size: Option<u64>,
}

/// The compression a layer stream was found to have (by its magic bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Gzip,
    Zstd,
    None,
}

impl Compression {
    /// Detects the compression from the first bytes of a stream.
    pub fn detect(magic: &[u8]) -> Compression {
        if magic.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

pub type Result<T, E = LayerError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// The stream could not be read as a (compressed) tar: bad compression, a bad header,
    /// truncated data, or too much metadata for one entry.
    #[error("reading layer stream: {0}")]
    Stream(#[source] io::Error),
    /// An entry the layer may not contain: an escape attempt or a malformed entry.
    #[error("layer entry {entry:?}: {reason}")]
    Rejected { entry: String, reason: Reject },
    /// The layer unpacks to more than the store allows (a decompression bomb, or a layer
    /// bigger than this host was configured to accept).
    #[error("{0}")]
    TooLarge(LayerTooLarge),
    /// A filesystem operation for an entry failed.
    #[error("layer entry {entry:?}: {op}: {source}")]
    Entry {
        entry: String,
        op: &'static str,
        #[source]
        source: io::Error,
    },
    /// A filesystem operation outside any entry failed (opening the target, walking an upper dir).
    #[error("{op} {path:?}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The upper dir uses an overlay feature whose content is not in the upper dir itself.
    #[error("{path:?}: {what}; mount overlay with redirect_dir=off,metacopy=off to diff it")]
    Unsupported { path: PathBuf, what: &'static str },
}

/// Why an entry was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Reject {
    #[error("name has a '..' component (it would leave the layer)")]
    DotDot,
    #[error("name contains a NUL byte")]
    Nul,
    #[error("names the layer root but is not a directory")]
    RootNotDirectory,
    #[error("hardlink target {0:?} has a '..' component (it would leave the layer)")]
    HardlinkDotDot(String),
    #[error("hardlink target {0:?} goes through a symlink")]
    HardlinkThroughSymlink(String),
    #[error("hardlink target {0:?} does not exist in this layer")]
    HardlinkTargetMissing(String),
    #[error("hardlink target {0:?} is a directory")]
    HardlinkToDirectory(String),
    #[error("hardlink has an empty target")]
    HardlinkEmpty,
    #[error("symlink has an empty target")]
    SymlinkEmpty,
    #[error("whiteout's parent directory goes through a symlink")]
    WhiteoutThroughSymlink,
    #[error("invalid whiteout name {0:?}")]
    InvalidWhiteout(String),
    #[error("device number {major}:{minor} out of range (major ≤ 4095, minor ≤ 1048575)")]
    DeviceNumber { major: u64, minor: u64 },
    #[error("{what} {value} out of range")]
    OutOfRange { what: &'static str, value: u64 },
    #[error("bad header field: {0}")]
    BadHeader(String),
    #[error("parent {0:?} exists and is not a directory (or is a dangling symlink)")]
    ParentInTheWay(String),
    #[error("parent {0:?} is not a directory")]
    ParentNotDirectory(String),
    #[error("too many levels of symbolic links resolving {0:?}")]
    SymlinkLoop(String),
    #[error("path {0:?} crosses a mount point")]
    CrossesMount(String),
    #[error("unsupported entry type {0:?}")]
    UnsupportedType(char),
    #[error("file data truncated: {got} of {want} bytes")]
    Truncated { got: u64, want: u64 },
}

/// What `docker diff` calls the kind of a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ChangeKind {
    Modified,
    Added,
    Deleted,
}

impl ChangeKind {
    /// The Docker Engine API's number for this kind (`GET /containers/{id}/changes`).
    pub fn api_kind(self) -> u8 {
        match self {
            ChangeKind::Modified => 0,
            ChangeKind::Added => 1,
            ChangeKind::Deleted => 2,
        }
    }

    /// The letter `docker diff` prints.
    pub fn letter(self) -> char {
        match self {
            ChangeKind::Modified => 'C',
            ChangeKind::Added => 'A',
            ChangeKind::Deleted => 'D',
        }
    }
}

/// One line of `docker diff`: a path (absolute, inside the container) and what happened to it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Change {
    pub kind: ChangeKind,
    pub path: PathBuf,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind.letter(), self.path.display())
    }
}
