//! The content store: immutable blobs named by their sha256 under `<root>/blobs/sha256/<hex>`.
//!
//! A blob is written to a uniquely named temp file in `<root>/tmp/` while it is hashed, its
//! digest is checked, then it is fsynced and renamed into place, so a blob path either does
//! not exist or holds exactly the bytes its name promises. Each temp file is flock-ed by its
//! writer for as long as it lives: `open` sweeps only unlocked temps (left by a writer that
//! died), never one that another process is still filling.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result};

use crate::digest::{Digest, DigestWriter};

/// Errors callers must tell apart; everything else is an `anyhow` error with context.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ContentError {
    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("blob {0} not found in the content store")]
    NotFound(Digest),
}

/// Blob writes are large and sequential: fewer, bigger writes than `BufWriter`'s 8 KiB.
const WRITE_BUFFER: usize = 256 * 1024;

/// Gives temp files of one process distinct names.
static TEMP_SEQ: AtomicU64 = AtomicU64::new(0);

#[derive(Debug, Clone)]
pub struct ContentStore {
    root: PathBuf,
}

impl ContentStore {
    /// Open (creating) the store at `root` and remove temp files of interrupted writes.
    pub fn open(root: &Path) -> Result<ContentStore> {
        let store = ContentStore {
            root: root.to_path_buf(),
        };
        for dir in [store.blob_dir(), store.tmp_dir()] {
            fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        store.sweep_temps()?;
        Ok(store)
    }

    fn blob_dir(&self) -> PathBuf {
        self.root.join("blobs").join("sha256")
    }

    fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// Remove every temp file no live writer holds locked.
    fn sweep_temps(&self) -> Result<()> {
        let tmp = self.tmp_dir();
        let entries =
            fs::read_dir(&tmp).with_context(|| format!("cannot list {}", tmp.display()))?;
        for entry in entries {
            let entry = entry.with_context(|| format!("cannot list {}", tmp.display()))?;
            if entry.file_type().is_ok_and(|t| t.is_file()) {
                sweep_temp(&entry.path())?;
            }
        }
        Ok(())
    }

    /// Where the blob lives (whether or not it exists).
    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.blob_dir().join(digest.hex())
    }

    pub fn has(&self, digest: &Digest) -> bool {
        self.path(digest).is_file()
    }

    /// Start a streaming write; bytes pushed into the `Writer` become a blob on `commit`.
    pub fn writer(&self) -> Result<Writer> {
        let (temp, file) = self.create_temp()?;
        Ok(Writer {
            temp,
            out: DigestWriter::new(BufWriter::with_capacity(WRITE_BUFFER, file)),
            store: self.clone(),
        })
    }

    /// Create and lock a fresh temp file.
    fn create_temp(&self) -> Result<(TempPath, File)> {
        let tmp = self.tmp_dir();
        for _ in 0..1000 {
            let seq = TEMP_SEQ.fetch_add(1, Ordering::Relaxed);
            let path = tmp.join(format!("{}-{seq}", std::process::id()));
            let file = match OpenOptions::new().write(true).create_new(true).open(&path) {
                // A dead process with our pid left it behind: try the next name.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                other => other.with_context(|| format!("cannot create {}", path.display()))?,
            };
            let temp = TempPath::new(path);
            file.lock().context("cannot lock a temp blob")?;
            // A concurrent sweep may have unlinked the file between its creation and our
            // lock; writing on into an unlinked file would lose the blob.
            if file.metadata()?.nlink() > 0 {
                return Ok((temp, file));
            }
            temp.disarm();
        }
        anyhow::bail!("cannot find a free temp file name in {}", tmp.display())
    }

    /// Store what `reader` yields; `expected`, if given, must be its digest, otherwise the
    /// write fails with `ContentError::DigestMismatch` and leaves nothing behind.
    pub fn put(&self, expected: Option<&Digest>, mut reader: impl Read) -> Result<(Digest, u64)> {
        let mut writer = self.writer()?;
        io::copy(&mut reader, &mut writer).context("cannot write a blob")?;
        writer.commit(expected)
    }

    pub fn put_bytes(&self, bytes: &[u8]) -> Result<Digest> {
        let digest = Digest::of(bytes);
        if !self.has(&digest) {
            self.put(Some(&digest), bytes)?;
        }
        Ok(digest)
    }

    /// Open a blob for reading; a missing blob is `ContentError::NotFound`.
    pub fn open_blob(&self, digest: &Digest) -> Result<File> {
        File::open(self.path(digest)).map_err(|e| self.blob_error(digest, e))
    }

    pub fn read(&self, digest: &Digest) -> Result<Vec<u8>> {
        fs::read(self.path(digest)).map_err(|e| self.blob_error(digest, e))
    }

    pub fn size(&self, digest: &Digest) -> Result<u64> {
        let meta = fs::metadata(self.path(digest)).map_err(|e| self.blob_error(digest, e))?;
        Ok(meta.len())
    }

    fn blob_error(&self, digest: &Digest, e: io::Error) -> anyhow::Error {
        if e.kind() == io::ErrorKind::NotFound {
            ContentError::NotFound(digest.clone()).into()
        } else {
            anyhow::Error::new(e).context(format!("cannot read blob {digest}"))
        }
    }

    /// Remove a blob; removing one that is not there is not an error, so that two collectors
    /// racing each other both succeed.
    pub fn delete(&self, digest: &Digest) -> Result<()> {
        match fs::remove_file(self.path(digest)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("cannot remove blob {digest}"))
            }
            _ => Ok(()),
        }
    }

    /// Every blob in the store; names that are not digests are not blobs and are skipped.
    pub fn list(&self) -> Result<Vec<Digest>> {
        let dir = self.blob_dir();
        let mut all = vec![];
        for entry in fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))? {
            let name = entry?.file_name();
            let Some(hex) = name.to_str() else { continue };
            if let Ok(digest) = format!("sha256:{hex}").parse::<Digest>() {
                all.push(digest);
            }
        }
        all.sort();
        Ok(all)
    }

    /// Garbage collection: delete every blob not in `keep` and return what was deleted.
    ///
    /// The caller computes `keep` (image ids, manifests, indexes, layers of every image still
    /// wanted) and must not run this while a pull, load or build has written blobs that no
    /// image references yet: those would be collected too.
    pub fn retain(&self, keep: &HashSet<Digest>) -> Result<Vec<Digest>> {
        let doomed: Vec<Digest> = self
            .list()?
            .into_iter()
            .filter(|d| !keep.contains(d))
            .collect();
        for digest in &doomed {
            self.delete(digest)?;
        }
        Ok(doomed)
    }
}

/// Remove one temp file unless its writer is still alive (and so still holds its lock).
fn sweep_temp(path: &Path) -> Result<()> {
    let file = match File::open(path) {
        // Committed or swept by someone else since it was listed.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        other => other.with_context(|| format!("cannot open {}", path.display()))?,
    };
    match file.try_lock() {
        Ok(()) => match fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("cannot remove {}", path.display()))
            }
            _ => Ok(()),
        },
        Err(TryLockError::WouldBlock) => Ok(()),
        Err(TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}

/// A temp file that is removed when dropped, unless it was renamed into place.
struct TempPath {
    path: PathBuf,
    armed: bool,
}

impl TempPath {
    fn new(path: PathBuf) -> TempPath {
        TempPath { path, armed: true }
    }

    /// The file is gone or lives elsewhere now: nothing to clean up.
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        if self.armed {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// A blob being written: push its bytes with `Write`, then `commit`. Dropping it without a
/// commit removes the partial file.
pub struct Writer {
    // Declared first so that, on drop, the temp is unlinked before the file (and with it the
    // lock that keeps sweepers away) is closed.
    temp: TempPath,
    out: DigestWriter<BufWriter<File>>,
    store: ContentStore,
}

impl Write for Writer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

impl Writer {
    /// Verify the digest against `expected` (if given) and make the blob visible; returns its
    /// digest and size. If the store already has the blob, the new copy is just dropped.
    pub fn commit(self, expected: Option<&Digest>) -> Result<(Digest, u64)> {
        let Writer { temp, out, store } = self;
        let (buffered, digest, size) = out.finish();
        let file = buffered
            .into_inner()
            .map_err(|e| e.into_error())
            .context("cannot write a blob")?;
        if let Some(expected) = expected.filter(|e| **e != digest) {
            return Err(ContentError::DigestMismatch {
                expected: expected.clone(),
                actual: digest,
            }
            .into());
        }
        let target = store.path(&digest);
        if target.is_file() {
            return Ok((digest, size));
        }
        file.sync_data().context("cannot fsync a blob")?;
        // Renaming over a copy a concurrent writer just committed is harmless: same bytes.
        fs::rename(&temp.path, &target)
            .with_context(|| format!("cannot move blob {digest} into place"))?;
        temp.disarm();
        sync_dir(&store.blob_dir())?;
        Ok((digest, size))
    }
}

/// Make a rename in `dir` durable.
fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot fsync {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, ContentStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        (dir, store)
    }

    fn temps(store: &ContentStore) -> usize {
        fs::read_dir(store.tmp_dir()).unwrap().count()
    }

    #[test]
    fn put_then_read_back() {
        let (_dir, store) = store();
        let (digest, size) = store.put(None, &b"hello"[..]).unwrap();
        assert_eq!((digest.clone(), size), (Digest::of(b"hello"), 5));
        assert!(store.has(&digest));
        assert_eq!(store.read(&digest).unwrap(), b"hello");
        assert_eq!(store.size(&digest).unwrap(), 5);
        let mut text = String::new();
        store
            .open_blob(&digest)
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "hello");
        assert_eq!(store.path(&digest), store.blob_dir().join(digest.hex()));
        assert_eq!(store.put_bytes(b"hello").unwrap(), digest);
        assert_eq!(store.list().unwrap(), vec![digest]);
        assert_eq!(temps(&store), 0);
    }

    #[test]
    fn wrong_digest_leaves_no_blob_and_no_temp() {
        let (_dir, store) = store();
        let wrong = Digest::of(b"something else");
        let err = store.put(Some(&wrong), &b"hello"[..]).unwrap_err();
        assert_eq!(
            err.downcast_ref::<ContentError>(),
            Some(&ContentError::DigestMismatch {
                expected: wrong,
                actual: Digest::of(b"hello"),
            })
        );
        assert!(!store.has(&Digest::of(b"hello")));
        assert!(store.list().unwrap().is_empty());
        assert_eq!(temps(&store), 0);
    }

    #[test]
    fn missing_blobs_are_a_typed_error() {
        let (_dir, store) = store();
        let d = Digest::of(b"absent");
        for err in [
            store.open_blob(&d).unwrap_err(),
            store.read(&d).unwrap_err(),
            store.size(&d).unwrap_err(),
        ] {
            assert_eq!(
                err.downcast_ref::<ContentError>(),
                Some(&ContentError::NotFound(d.clone()))
            );
        }
        store.delete(&d).unwrap();
    }

    #[test]
    fn interrupted_writes_are_swept_on_open() {
        let (dir, store) = store();
        fs::write(store.tmp_dir().join("12345-0"), b"half a blo").unwrap();
        let abandoned = store.writer().unwrap();
        // A writer that vanished without commit or drop, as a killed process would.
        std::mem::forget(abandoned);
        assert_eq!(temps(&store), 2);
        let store = ContentStore::open(dir.path()).unwrap();
        // The forgotten writer's lock lives on in this process, so its temp survives; a
        // killed process's lock would have died with it.
        assert_eq!(temps(&store), 1);
    }

    #[test]
    fn a_live_writer_survives_a_concurrent_open() {
        let (dir, store) = store();
        let mut writer = store.writer().unwrap();
        writer.write_all(b"first half, ").unwrap();
        ContentStore::open(dir.path()).unwrap();
        writer.write_all(b"second half").unwrap();
        let (digest, _) = writer.commit(None).unwrap();
        assert_eq!(store.read(&digest).unwrap(), b"first half, second half");
    }

    #[test]
    fn dropped_writer_leaves_nothing() {
        let (_dir, store) = store();
        let mut writer = store.writer().unwrap();
        writer.write_all(b"partial").unwrap();
        drop(writer);
        assert_eq!(temps(&store), 0);
        assert!(store.list().unwrap().is_empty());
    }

    #[test]
    fn concurrent_writers_of_one_blob() {
        let (dir, store) = store();
        let blob: Vec<u8> = (0..4 << 20).map(|i: u32| (i % 251) as u8).collect();
        let expected = Digest::of(&blob);
        let barrier = std::sync::Barrier::new(4);
        std::thread::scope(|s| {
            for i in 0..4 {
                let (blob, barrier, expected) = (&blob, &barrier, &expected);
                // Half share the store, half open their own, as separate processes would.
                let store = match i % 2 {
                    0 => store.clone(),
                    _ => ContentStore::open(dir.path()).unwrap(),
                };
                s.spawn(move || {
                    barrier.wait();
                    let (d, n) = store.put(Some(expected), &blob[..]).unwrap();
                    assert_eq!((&d, n), (expected, blob.len() as u64));
                });
            }
        });
        assert_eq!(store.read(&expected).unwrap(), blob);
        assert_eq!(store.list().unwrap(), vec![expected]);
        assert_eq!(temps(&store), 0);
    }

    #[test]
    fn list_skips_names_that_are_not_digests() {
        let (_dir, store) = store();
        let d = store.put_bytes(b"x").unwrap();
        fs::write(store.blob_dir().join("README"), b"").unwrap();
        fs::write(store.blob_dir().join(d.hex().to_uppercase()), b"").unwrap();
        assert_eq!(store.list().unwrap(), vec![d]);
    }

    #[test]
    fn retain_keeps_exactly_the_referenced_blobs() {
        let (_dir, store) = store();
        let blobs: Vec<Digest> = (0..6)
            .map(|i| store.put_bytes(format!("blob {i}").as_bytes()).unwrap())
            .collect();
        let keep: HashSet<Digest> = [&blobs[1], &blobs[4]].into_iter().cloned().collect();
        let mut removed = store.retain(&keep).unwrap();
        removed.sort();
        let mut expected: Vec<Digest> = blobs
            .iter()
            .filter(|d| !keep.contains(d))
            .cloned()
            .collect();
        expected.sort();
        assert_eq!(removed, expected);
        let mut kept: Vec<Digest> = keep.into_iter().collect();
        kept.sort();
        assert_eq!(store.list().unwrap(), kept);
        assert!(store
            .retain(&kept.iter().cloned().collect())
            .unwrap()
            .is_empty());
    }
}
