//! Layer apply and diff, for real, as root: round trips of every entry kind (plain, gzip,
//! zstd), the whiteout round trip through a mounted overlay, and one hostile-tar test per
//! escape class, each proving that nothing outside the target changed.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CString;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use berth_image::digest::Digest;
use berth_image::layer::{
    apply_layer, changes, write_layer_diff, AppliedLayer, Change, ChangeKind, LayerError, Reject,
};
use tar::{EntryType, Header};

// ---------------------------------------------------------------------------------------------
// Helpers: building tars (well-formed and hostile), snapshotting trees.

const T0: u64 = 1_500_000_000;

fn builder() -> tar::Builder<Vec<u8>> {
    tar::Builder::new(Vec::new())
}

fn header(kind: EntryType, mode: u32, uid: u64, gid: u64, mtime: u64) -> Header {
    let mut h = Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(uid);
    h.set_gid(gid);
    h.set_mtime(mtime);
    h.set_size(0);
    h
}

fn add_dir(b: &mut tar::Builder<Vec<u8>>, path: &str, mode: u32) {
    let mut h = header(EntryType::Directory, mode, 0, 0, T0);
    b.append_data(&mut h, path, io::empty()).unwrap();
}

fn add_file(b: &mut tar::Builder<Vec<u8>>, path: &str, mode: u32, data: &[u8]) {
    let mut h = header(EntryType::Regular, mode, 0, 0, T0 + 1);
    h.set_size(data.len() as u64);
    b.append_data(&mut h, path, data).unwrap();
}

fn add_link(b: &mut tar::Builder<Vec<u8>>, kind: EntryType, path: &str, target: &str) {
    let mut h = header(kind, 0o777, 0, 0, T0 + 2);
    b.append_link(&mut h, path, target).unwrap();
}

/// An entry written byte for byte, as a hostile tool would: no validation of the name.
fn add_raw(b: &mut tar::Builder<Vec<u8>>, kind: EntryType, name: &[u8], link: &[u8], data: &[u8]) {
    let mode = if kind == EntryType::Directory {
        0o755
    } else {
        0o644
    };
    let mut h = header(kind, mode, 0, 0, T0);
    h.set_size(data.len() as u64);
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
    h.set_cksum();
    b.append(&h, data).unwrap();
}

fn finish(b: tar::Builder<Vec<u8>>) -> Vec<u8> {
    b.into_inner().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::stream::encode_all(data, 3).unwrap()
}

fn lxattrs(p: &Path) -> Vec<(String, Vec<u8>)> {
    let c = CString::new(p.as_os_str().as_bytes()).unwrap();
    let mut names = vec![0u8; 65536];
    // SAFETY: buffers valid for their lengths.
    let n = unsafe { libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    assert!(n >= 0, "llistxattr {p:?}: {}", io::Error::last_os_error());
    names.truncate(n as usize);
    let mut out = Vec::new();
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let cn = CString::new(name).unwrap();
        let mut v = vec![0u8; 65536];
        // SAFETY: buffers valid for their lengths.
        let m = unsafe { libc::lgetxattr(c.as_ptr(), cn.as_ptr(), v.as_mut_ptr().cast(), v.len()) };
        assert!(m >= 0);
        v.truncate(m as usize);
        out.push((String::from_utf8_lossy(name).into_owned(), v));
    }
    out.sort();
    out
}

fn lxattr(p: &Path, name: &str) -> Option<Vec<u8>> {
    lxattrs(p)
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v)
}

/// Everything observable about one node. `strict` snapshots (for sentinels) also hold the
/// inode, link count and ctime, so a chmod, chown, xattr change or new hardlink shows.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Node {
    kind: &'static str,
    mode: u32,
    uid: u32,
    gid: u32,
    rdev: u64,
    mtime: i64,
    mtime_nsec: i64,
    content: Vec<u8>,
    xattrs: Vec<(String, Vec<u8>)>,
    ino: u64,
    nlink: u64,
    ctime: (i64, i64),
}

type Tree = BTreeMap<PathBuf, Node>;

fn snapshot(root: &Path, strict: bool, skip: Option<&Path>) -> Tree {
    let mut out = Tree::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        if Some(p.as_path()) == skip {
            continue;
        }
        let md = fs::symlink_metadata(&p).unwrap();
        let ft = md.file_type();
        let (kind, content) = if ft.is_dir() {
            for e in fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
            ("dir", Vec::new())
        } else if ft.is_file() {
            ("file", fs::read(&p).unwrap())
        } else if ft.is_symlink() {
            (
                "symlink",
                fs::read_link(&p).unwrap().as_os_str().as_bytes().to_vec(),
            )
        } else if ft.is_char_device() {
            ("char", Vec::new())
        } else if ft.is_block_device() {
            ("block", Vec::new())
        } else if ft.is_fifo() {
            ("fifo", Vec::new())
        } else {
            ("other", Vec::new())
        };
        let rel = p.strip_prefix(root).unwrap().to_path_buf();
        out.insert(
            rel,
            Node {
                kind,
                mode: md.mode() & 0o7777,
                uid: md.uid(),
                gid: md.gid(),
                rdev: md.rdev(),
                mtime: md.mtime(),
                mtime_nsec: if strict { md.mtime_nsec() } else { 0 },
                content,
                xattrs: lxattrs(&p),
                ino: if strict { md.ino() } else { 0 },
                nlink: if strict || !ft.is_dir() {
                    md.nlink()
                } else {
                    0
                },
                ctime: if strict {
                    (md.ctime(), md.ctime_nsec())
                } else {
                    (0, 0)
                },
            },
        );
    }
    out
}

/// Paths grouped by inode (non-directories with several links): the hardlink structure.
fn link_groups(root: &Path) -> BTreeSet<BTreeSet<PathBuf>> {
    let mut by_ino: BTreeMap<u64, BTreeSet<PathBuf>> = BTreeMap::new();
    for (rel, _) in snapshot(root, false, None) {
        let md = fs::symlink_metadata(root.join(&rel)).unwrap();
        if !md.is_dir() && md.nlink() > 1 {
            by_ino.entry(md.ino()).or_default().insert(rel);
        }
    }
    by_ino.into_values().collect()
}

fn sha256(data: &[u8]) -> Digest {
    Digest::of(data)
}

// ---------------------------------------------------------------------------------------------
// Round trip.

/// A layer with one of everything apply must support.
fn rich_layer() -> Vec<u8> {
    let mut b = builder();
    add_dir(&mut b, "./", 0o755);
    add_dir(&mut b, "bin/", 0o755);
    let mut h = header(EntryType::Regular, 0o755, 0, 0, T0 + 10);
    h.set_size(9);
    b.append_data(&mut h, "bin/busybox", &b"#!busybox"[..])
        .unwrap();
    add_link(&mut b, EntryType::Link, "bin/ls", "bin/busybox");
    add_link(&mut b, EntryType::Symlink, "bin/sh", "busybox");
    add_file(&mut b, "bin/su", 0o4755, b"su");
    add_dir(&mut b, "etc/", 0o755);
    add_file(&mut b, "etc/passwd", 0o644, b"root:x:0:0::/root:/bin/sh\n");
    let mut h = header(EntryType::Directory, 0o700, 1000, 1000, T0 + 20);
    b.append_data(&mut h, "home/user/", io::empty()).unwrap();
    let mut h = header(EntryType::Regular, 0o600, 1000, 1001, T0 + 21);
    h.set_size(2);
    b.append_data(&mut h, "home/user/notes", &b"hi"[..])
        .unwrap();
    add_dir(&mut b, "tmp/", 0o1777);
    let mut h = header(EntryType::Regular, 0o2755, 0, 50, T0);
    h.set_size(4);
    b.append_data(&mut h, "usr/bin/sgid", &b"sgid"[..]).unwrap();
    // Devices and a fifo.
    add_dir(&mut b, "dev/", 0o755);
    let mut h = header(EntryType::Char, 0o666, 0, 0, T0 + 30);
    h.set_device_major(1).unwrap();
    h.set_device_minor(3).unwrap();
    b.append_data(&mut h, "dev/null", io::empty()).unwrap();
    let mut h = header(EntryType::Block, 0o660, 0, 6, T0 + 31);
    h.set_device_major(7).unwrap();
    h.set_device_minor(0).unwrap();
    b.append_data(&mut h, "dev/loop0", io::empty()).unwrap();
    let mut h = header(EntryType::Fifo, 0o620, 0, 0, T0 + 32);
    b.append_data(&mut h, "run/fifo", io::empty()).unwrap();
    // Xattrs (PAX), a sub-second PAX mtime, and an overlay xattr that must be dropped.
    add_dir(&mut b, "x/", 0o755);
    b.append_pax_extensions([
        ("SCHILY.xattr.user.test", &b"hello"[..]),
        ("SCHILY.xattr.trusted.note", &b"n\0binary"[..]),
        ("SCHILY.xattr.trusted.overlay.redirect", &b"/etc"[..]),
        ("mtime", &b"1600000000.25"[..]),
    ])
    .unwrap();
    add_file(&mut b, "x/file", 0o644, b"xattrs");
    b.append_pax_extensions([("SCHILY.xattr.trusted.sym", &b"on-the-link"[..])])
        .unwrap();
    add_link(&mut b, EntryType::Symlink, "x/link", "file");
    // Long names: GNU long name and long link, and a PAX path.
    let long_dir = format!("long/{}", "d".repeat(120));
    add_file(&mut b, &format!("{long_dir}/file"), 0o644, b"long");
    add_link(&mut b, EntryType::Symlink, "long/sym", &"t".repeat(150));
    add_link(
        &mut b,
        EntryType::Link,
        "long/hl",
        &format!("{long_dir}/file"),
    );
    let pax_path = format!("pax/{}", "p".repeat(150));
    b.append_pax_extensions([("path", pax_path.as_bytes())])
        .unwrap();
    add_file(&mut b, "pax/truncated-name", 0o640, b"pax");
    // A pre-POSIX directory: regular type flag '\0' and a trailing slash.
    let mut h = Header::new_old();
    h.set_mode(0o711);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(T0 + 40);
    h.set_size(0);
    h.as_old_mut().name[..7].copy_from_slice(b"olddir/");
    h.set_cksum();
    b.append(&h, io::empty()).unwrap();
    finish(b)
}

fn check_rich_tree(root: &Path, subsecond: bool) {
    let md = |p: &str| fs::symlink_metadata(root.join(p)).unwrap();
    assert_eq!(fs::read(root.join("bin/busybox")).unwrap(), b"#!busybox");
    assert_eq!(md("bin/busybox").mode() & 0o7777, 0o755);
    assert_eq!(md("bin/busybox").mtime(), (T0 + 10) as i64);
    assert_eq!(md("bin/ls").ino(), md("bin/busybox").ino(), "hardlink");
    assert_eq!(md("bin/busybox").nlink(), 2);
    assert_eq!(
        fs::read_link(root.join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    assert_eq!(md("bin/sh").mtime(), (T0 + 2) as i64, "symlink mtime");
    assert_eq!(md("bin/su").mode() & 0o7777, 0o4755, "setuid kept");
    assert_eq!(md("usr/bin/sgid").mode() & 0o7777, 0o2755, "setgid kept");
    assert_eq!(md("usr/bin/sgid").gid(), 50);
    assert_eq!(md("usr/bin").mode() & 0o7777, 0o755, "implicit parent");
    assert_eq!(md("tmp").mode() & 0o7777, 0o1777, "sticky");
    assert_eq!((md("home/user").uid(), md("home/user").gid()), (1000, 1000));
    assert_eq!(md("home/user").mode() & 0o7777, 0o700);
    assert_eq!(
        md("home/user").mtime(),
        (T0 + 20) as i64,
        "dir mtime set last"
    );
    assert_eq!(md("bin").mtime(), T0 as i64);
    let notes = md("home/user/notes");
    assert_eq!(
        (notes.uid(), notes.gid(), notes.mode() & 0o7777),
        (1000, 1001, 0o600)
    );
    assert!(md("dev/null").file_type().is_char_device());
    assert_eq!(md("dev/null").rdev(), libc::makedev(1, 3));
    assert_eq!(md("dev/null").mode() & 0o7777, 0o666);
    assert!(md("dev/loop0").file_type().is_block_device());
    assert_eq!(md("dev/loop0").rdev(), libc::makedev(7, 0));
    assert_eq!(
        (md("dev/loop0").gid(), md("dev/loop0").mode() & 0o7777),
        (6, 0o660)
    );
    assert!(md("run/fifo").file_type().is_fifo());
    assert_eq!(md("run/fifo").mode() & 0o7777, 0o620);
    assert_eq!(md("run/fifo").mtime(), (T0 + 32) as i64);
    let x = root.join("x/file");
    assert_eq!(lxattr(&x, "user.test").as_deref(), Some(&b"hello"[..]));
    assert_eq!(
        lxattr(&x, "trusted.note").as_deref(),
        Some(&b"n\0binary"[..])
    );
    assert_eq!(
        lxattr(&x, "trusted.overlay.redirect"),
        None,
        "overlay xattr dropped"
    );
    assert_eq!(md("x/file").mtime(), 1_600_000_000);
    if subsecond {
        assert_eq!(md("x/file").mtime_nsec(), 250_000_000);
    }
    assert_eq!(
        lxattr(&root.join("x/link"), "trusted.sym").as_deref(),
        Some(&b"on-the-link"[..]),
        "xattr on the symlink itself"
    );
    assert_eq!(lxattr(&x, "trusted.sym"), None, "not on its target");
    let long_dir = format!("long/{}", "d".repeat(120));
    assert_eq!(
        fs::read(root.join(&long_dir).join("file")).unwrap(),
        b"long"
    );
    assert_eq!(
        fs::read_link(root.join("long/sym")).unwrap(),
        Path::new(&"t".repeat(150))
    );
    assert_eq!(md("long/hl").ino(), md(&format!("{long_dir}/file")).ino());
    let pax = root.join(format!("pax/{}", "p".repeat(150)));
    assert_eq!(fs::read(&pax).unwrap(), b"pax");
    assert!(!root.join("pax/truncated-name").exists());
    assert!(md("olddir").is_dir());
    assert_eq!(md("olddir").mode() & 0o7777, 0o711);
}

#[test]
fn round_trip_plain_gzip_zstd() {
    let mut tar = rich_layer();
    // Record padding after the end-of-archive blocks is part of the diff_id.
    tar.extend_from_slice(&[0u8; 8192]);
    let want = |content_size| AppliedLayer {
        diff_id: sha256(&tar),
        size: tar.len() as u64,
        content_size: Some(content_size),
    };
    let tmp = tempfile::tempdir().unwrap();
    for (name, stream) in [
        ("plain", tar.clone()),
        ("gzip", gzip(&tar)),
        ("zstd", zstd(&tar)),
    ] {
        let target = tmp.path().join(name);
        fs::create_dir(&target).unwrap();
        let mut counted = Counted {
            inner: &stream[..],
            n: 0,
        };
        let got = apply_layer(&mut counted, &target).unwrap_or_else(|e| panic!("{name}: {e}"));
        // The size Docker gives a layer: what its files hold, as its own walk counts it.
        assert_eq!(got, want(berth_testkit::files_size(&target)), "{name}");
        assert_eq!(counted.n, stream.len(), "{name}: input read to its end");
        check_rich_tree(&target, true);
    }
    // Same layer, same tree, whatever the compression (directories the tar does not list
    // are made when applied: their mtimes are "now").
    let tree = |name: &str| {
        let mut t = snapshot(&tmp.path().join(name), false, None);
        for node in t.values_mut() {
            if node.kind == "dir" && node.mtime > 1_700_000_000 {
                node.mtime = 0;
            }
        }
        t
    };
    let plain = tree("plain");
    assert_eq!(plain, tree("gzip"));
    assert_eq!(plain, tree("zstd"));
}

struct Counted<R> {
    inner: R,
    n: usize,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n += n;
        Ok(n)
    }
}

#[test]
fn diff_of_an_applied_layer_applies_to_the_same_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let first = tmp.path().join("first");
    let second = tmp.path().join("second");
    fs::create_dir(&first).unwrap();
    fs::create_dir(&second).unwrap();
    apply_layer(&rich_layer()[..], &first).unwrap();

    let mut tar = Vec::new();
    let digest = write_layer_diff(&first, &mut tar).unwrap();
    assert_eq!(digest, sha256(&tar), "returned digest is the tar's");
    let mut again = Vec::new();
    assert_eq!(
        write_layer_diff(&first, &mut again).unwrap(),
        digest,
        "deterministic"
    );
    assert_eq!(tar, again);

    let applied = apply_layer(&tar[..], &second).unwrap();
    assert_eq!(applied.diff_id, digest);
    check_rich_tree(&second, false);
    let mut a = snapshot(&first, false, None);
    let b = snapshot(&second, false, None);
    // Sub-second mtimes are not archived (as Docker); the layer root is not an entry.
    a.get_mut(Path::new("x/file")).unwrap().mtime_nsec = 0;
    a.remove(Path::new(""));
    let mut b2 = b.clone();
    b2.remove(Path::new(""));
    assert_eq!(a, b2);
    assert_eq!(link_groups(&first), link_groups(&second));

    // Entries come sorted, each directory before its contents.
    let names: Vec<String> = tar::Archive::new(&tar[..])
        .entries()
        .unwrap()
        .map(|e| String::from_utf8_lossy(&e.unwrap().path_bytes()).into_owned())
        .collect();
    assert_eq!(names[0], "bin/");
    assert!(
        names.iter().position(|n| n == "bin/").unwrap()
            < names.iter().position(|n| n == "bin/busybox").unwrap()
    );
}

// ---------------------------------------------------------------------------------------------
// Whiteouts through a real overlay mount.

struct Mount(PathBuf);

impl Mount {
    fn overlay(lowers: &[&Path], upper_work: Option<(&Path, &Path)>, at: &Path) -> Mount {
        let lower = lowers
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(":");
        let mut data = format!("lowerdir={lower}");
        if let Some((u, w)) = upper_work {
            data += &format!(",upperdir={},workdir={}", u.display(), w.display());
        }
        nix::mount::mount(
            Some("overlay"),
            at,
            Some("overlay"),
            nix::mount::MsFlags::empty(),
            Some(data.as_str()),
        )
        .unwrap_or_else(|e| panic!("mount overlay {data}: {e}"));
        Mount(at.to_path_buf())
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

fn ls(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn apply_into(tmp: &Path, name: &str, tar: &[u8]) -> PathBuf {
    let dir = tmp.join(name);
    fs::create_dir(&dir).unwrap();
    apply_layer(tar, &dir).unwrap_or_else(|e| panic!("{name}: {e}"));
    dir
}

fn is_whiteout(p: &Path) -> bool {
    fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_char_device() && m.rdev() == 0)
}

#[test]
fn whiteout_round_trip_through_overlay() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();

    // Layer 1: /a/x, /b/y, and more for the container to change.
    let mut b = builder();
    add_dir(&mut b, "a/", 0o755);
    add_file(&mut b, "a/x", 0o644, b"x");
    add_dir(&mut b, "b/", 0o755);
    add_file(&mut b, "b/y", 0o644, b"y");
    add_dir(&mut b, "c/", 0o755);
    add_file(&mut b, "c/old1", 0o644, b"1");
    add_file(&mut b, "c/old2", 0o644, b"2");
    add_dir(&mut b, "d/", 0o755);
    add_file(&mut b, "d/gone", 0o644, b"gone");
    add_file(&mut b, "d/keep", 0o644, b"keep");
    let l1 = apply_into(t, "l1", &finish(b));

    // Layer 2: deletes /a/x, makes /b opaque with a new /b/z.
    let mut b = builder();
    add_dir(&mut b, "a/", 0o755);
    add_file(&mut b, "a/.wh.x", 0o644, b"");
    add_dir(&mut b, "b/", 0o755);
    add_file(&mut b, "b/.wh..wh..opq", 0o644, b"");
    add_file(&mut b, "b/z", 0o644, b"z");
    let l2 = apply_into(t, "l2", &finish(b));

    assert!(is_whiteout(&l2.join("a/x")), "overlay whiteout for a/x");
    assert_eq!(
        lxattr(&l2.join("b"), "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    assert_eq!(ls(&l2.join("a")), ["x"], "no .wh. file left");
    assert_eq!(ls(&l2.join("b")), ["z"]);

    // The merged view.
    let (upper, work, merged) = (t.join("upper"), t.join("work"), t.join("merged"));
    for d in [&upper, &work, &merged] {
        fs::create_dir(d).unwrap();
    }
    {
        let _m = Mount::overlay(&[&l2, &l1], Some((&upper, &work)), &merged);
        assert_eq!(ls(&merged), ["a", "b", "c", "d"]);
        assert!(ls(&merged.join("a")).is_empty(), "/a is empty");
        assert_eq!(ls(&merged.join("b")), ["z"], "/b shows only z");

        // The container deletes a file, replaces a directory, adds and modifies.
        fs::remove_file(merged.join("d/gone")).unwrap();
        fs::remove_dir_all(merged.join("c")).unwrap();
        fs::create_dir(merged.join("c")).unwrap();
        fs::write(merged.join("c/new"), b"new").unwrap();
        fs::write(merged.join("d/added"), b"added").unwrap();
        fs::OpenOptions::new()
            .append(true)
            .open(merged.join("d/keep"))
            .unwrap()
            .write_all(b"+")
            .unwrap();
    }

    let mut tar = Vec::new();
    let digest = write_layer_diff(&upper, &mut tar).unwrap();
    assert_eq!(digest, sha256(&tar));
    let entries: Vec<(String, EntryType)> = tar::Archive::new(&tar[..])
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                String::from_utf8_lossy(&e.path_bytes()).into_owned(),
                e.header().entry_type(),
            )
        })
        .collect();
    let want: Vec<(String, EntryType)> = [
        ("c/", EntryType::Directory),
        ("c/.wh..wh..opq", EntryType::Regular),
        ("c/new", EntryType::Regular),
        ("d/", EntryType::Directory),
        ("d/added", EntryType::Regular),
        ("d/.wh.gone", EntryType::Regular),
        ("d/keep", EntryType::Regular),
    ]
    .into_iter()
    .map(|(p, k)| (p.to_string(), k))
    .collect();
    assert_eq!(entries, want);
    // No overlay xattr leaks into the tar.
    for e in tar::Archive::new(&tar[..]).entries().unwrap() {
        let mut e = e.unwrap();
        if let Some(pax) = e.pax_extensions().unwrap() {
            for x in pax {
                assert!(!x.unwrap().key().unwrap().contains("overlay"));
            }
        }
    }

    let got: Vec<String> = changes(&upper, &[l2.clone(), l1.clone()])
        .unwrap()
        .iter()
        .map(Change::to_string)
        .collect();
    assert_eq!(
        got,
        [
            "C /c",
            "A /c/new",
            "D /c/old1",
            "D /c/old2",
            "C /d",
            "A /d/added",
            "D /d/gone",
            "C /d/keep",
        ]
    );
    let kinds = changes(&upper, &[l2.clone(), l1.clone()]).unwrap();
    assert_eq!(kinds[0].kind, ChangeKind::Modified);
    assert_eq!(kinds[0].kind.api_kind(), 0);

    // The diff applied as a third layer gives the same merged view as the container had.
    let l3 = apply_into(t, "l3", &tar);
    let view = t.join("view");
    fs::create_dir(&view).unwrap();
    let _m = Mount::overlay(&[&l3, &l2, &l1], None, &view);
    assert_eq!(ls(&view), ["a", "b", "c", "d"]);
    assert!(ls(&view.join("a")).is_empty());
    assert_eq!(ls(&view.join("b")), ["z"]);
    assert_eq!(ls(&view.join("c")), ["new"]);
    assert_eq!(ls(&view.join("d")), ["added", "keep"]);
    assert_eq!(fs::read(view.join("d/keep")).unwrap(), b"keep+");
}

#[test]
fn changes_without_lowers_are_all_added_and_whiteouts_deleted() {
    let tmp = tempfile::tempdir().unwrap();
    let mut b = builder();
    add_dir(&mut b, "etc/", 0o755);
    add_file(&mut b, "etc/x", 0o644, b"x");
    add_file(&mut b, "etc/.wh.y", 0o644, b"");
    let up = apply_into(tmp.path(), "up", &finish(b));
    let got: Vec<String> = changes(&up, &[])
        .unwrap()
        .iter()
        .map(|c| c.to_string())
        .collect();
    assert_eq!(got, ["A /etc", "A /etc/x", "D /etc/y"]);
}

// ---------------------------------------------------------------------------------------------
// Hostile tars. Each test applies into `<tmp>/layer` next to a sentinel `<tmp>/sentinel` and
// a dedicated directory elsewhere that the tars name absolutely; afterwards both (and <tmp>
// itself) must be exactly as before: content, modes, owners, xattrs, link counts, ctimes.

struct Arena {
    tmp: tempfile::TempDir,
    abs: tempfile::TempDir,
    before: (Tree, Tree),
}

fn plant(dir: &Path) {
    fs::write(dir.join("passwd"), b"root:x:0:0:root:/root:/bin/sh\n").unwrap();
    fs::write(dir.join("shadow"), b"root:*:19000:0:99999:7:::\n").unwrap();
    fs::set_permissions(dir.join("shadow"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::create_dir_all(dir.join("dir/sub")).unwrap();
    fs::write(dir.join("dir/f"), b"f").unwrap();
    fs::write(dir.join("x"), b"x").unwrap();
    std::os::unix::fs::symlink("passwd", dir.join("link")).unwrap();
}

impl Arena {
    fn new() -> Arena {
        let tmp = tempfile::tempdir().unwrap();
        let abs = tempfile::tempdir().unwrap();
        fs::create_dir(tmp.path().join("layer")).unwrap();
        fs::create_dir(tmp.path().join("sentinel")).unwrap();
        plant(&tmp.path().join("sentinel"));
        plant(abs.path());
        let before = Arena::look(&tmp, &abs);
        Arena { tmp, abs, before }
    }

    fn look(tmp: &tempfile::TempDir, abs: &tempfile::TempDir) -> (Tree, Tree) {
        let layer = tmp.path().join("layer");
        (
            snapshot(tmp.path(), true, Some(&layer)),
            snapshot(abs.path(), true, None),
        )
    }

    fn target(&self) -> PathBuf {
        self.tmp.path().join("layer")
    }

    /// The dedicated directory's absolute name, without the leading slash.
    fn abs(&self) -> String {
        self.abs.path().display().to_string()
    }

    fn apply(&self, tar: &[u8]) -> Result<AppliedLayer, LayerError> {
        apply_layer(tar, &self.target())
    }

    fn assert_untouched(&self) {
        let now = Arena::look(&self.tmp, &self.abs);
        assert_eq!(now.0, self.before.0, "something next to the target changed");
        assert_eq!(
            now.1, self.before.1,
            "the absolutely named directory changed"
        );
    }
}

fn rejected(r: Result<AppliedLayer, LayerError>) -> (String, Reject, String) {
    match r {
        Err(e @ LayerError::Rejected { .. }) => {
            let msg = e.to_string();
            let LayerError::Rejected { entry, reason } = e else {
                unreachable!()
            };
            (entry, reason, msg)
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[test]
fn hostile_dotdot_names_are_rejected() {
    for name in [
        &b"../sentinel/passwd"[..],
        b"./../sentinel/passwd",
        b"a/../../sentinel/passwd",
        b"../../berth-escape-dotdot",
        b"..",
    ] {
        let arena = Arena::new();
        let mut b = builder();
        add_raw(&mut b, EntryType::Regular, name, b"", b"pwned\n");
        let (entry, reason, msg) = rejected(arena.apply(&finish(b)));
        assert_eq!(entry.as_bytes(), name);
        assert_eq!(reason, Reject::DotDot);
        assert!(msg.contains("'..'") && msg.contains(&entry), "{msg}");
        arena.assert_untouched();
        assert!(!arena
            .tmp
            .path()
            .parent()
            .unwrap()
            .join("berth-escape-dotdot")
            .exists());
    }
    // `..` in a directory entry, a symlink's name, and a long (GNU) name too.
    let arena = Arena::new();
    let mut b = builder();
    add_raw(
        &mut b,
        EntryType::Directory,
        b"../sentinel/newdir/",
        b"",
        b"",
    );
    assert_eq!(rejected(arena.apply(&finish(b))).1, Reject::DotDot);
    let mut b = builder();
    add_raw(
        &mut b,
        EntryType::Symlink,
        b"../sentinel/passwd",
        b"/x",
        b"",
    );
    assert_eq!(rejected(arena.apply(&finish(b))).1, Reject::DotDot);
    let long = format!("{}/../../sentinel/passwd", "a".repeat(150));
    let mut b = builder();
    let mut l = header(EntryType::GNULongName, 0o644, 0, 0, 0);
    l.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
    l.set_size(long.len() as u64 + 1);
    l.set_cksum();
    b.append(&l, long.as_bytes().chain(&[0u8][..])).unwrap();
    add_raw(&mut b, EntryType::Regular, b"ignored", b"", b"pwned");
    let (entry, reason, _) = rejected(arena.apply(&finish(b)));
    assert_eq!((entry, reason), (long, Reject::DotDot));
    arena.assert_untouched();
}

#[test]
fn hostile_absolute_names_are_clamped_inside() {
    let arena = Arena::new();
    let abs = arena.abs();
    let mut b = builder();
    add_raw(
        &mut b,
        EntryType::Directory,
        format!("{abs}/").as_bytes(),
        b"",
        b"",
    );
    add_raw(
        &mut b,
        EntryType::Regular,
        format!("{abs}/passwd").as_bytes(),
        b"",
        b"pwned\n",
    );
    add_raw(
        &mut b,
        EntryType::Directory,
        format!("{abs}/dir/").as_bytes(),
        b"",
        b"",
    );
    add_raw(
        &mut b,
        EntryType::Regular,
        format!("{abs}/dir/f").as_bytes(),
        b"",
        b"pwned\n",
    );
    add_raw(
        &mut b,
        EntryType::Symlink,
        format!("{abs}/link").as_bytes(),
        b"/etc/shadow",
        b"",
    );
    add_raw(
        &mut b,
        EntryType::Link,
        format!("{abs}/shadow").as_bytes(),
        format!("{abs}/passwd").as_bytes(),
        b"",
    );
    add_raw(
        &mut b,
        EntryType::Regular,
        b"/berth-escape-abs",
        b"",
        b"pwned\n",
    );
    arena.apply(&finish(b)).unwrap();
    arena.assert_untouched();
    assert!(!Path::new("/berth-escape-abs").exists());
    let inside = arena.target().join(abs.trim_start_matches('/'));
    assert_eq!(fs::read(inside.join("passwd")).unwrap(), b"pwned\n");
    assert_eq!(fs::read(inside.join("dir/f")).unwrap(), b"pwned\n");
    assert_eq!(
        fs::read_link(inside.join("link")).unwrap(),
        Path::new("/etc/shadow")
    );
    assert_eq!(
        fs::metadata(inside.join("shadow")).unwrap().ino(),
        fs::metadata(inside.join("passwd")).unwrap().ino()
    );
    assert_eq!(
        fs::read(arena.target().join("berth-escape-abs")).unwrap(),
        b"pwned\n"
    );
}

#[test]
fn hostile_symlink_then_write_through_it_is_clamped_inside() {
    let arena = Arena::new();
    let abs = arena.abs();
    let rel_abs = abs.trim_start_matches('/').to_string();
    let mut b = builder();
    // A link to / and writes through it (file, dir, symlink, device, fifo, hardlink).
    add_raw(&mut b, EntryType::Symlink, b"root", b"/", b"");
    add_raw(
        &mut b,
        EntryType::Regular,
        format!("root{abs}/passwd").as_bytes(),
        b"",
        b"pwned\n",
    );
    add_raw(
        &mut b,
        EntryType::Directory,
        format!("root{abs}/newdir/").as_bytes(),
        b"",
        b"",
    );
    add_raw(
        &mut b,
        EntryType::Symlink,
        format!("root{abs}/link").as_bytes(),
        b"/pwned",
        b"",
    );
    add_raw(
        &mut b,
        EntryType::Fifo,
        format!("root{abs}/fifo").as_bytes(),
        b"",
        b"",
    );
    // Links to ../.. and chains of links, relative escapes towards the sentinel.
    add_raw(&mut b, EntryType::Symlink, b"up", b"../..", b"");
    add_raw(
        &mut b,
        EntryType::Regular,
        b"up/sentinel/passwd",
        b"",
        b"pwned\n",
    );
    add_raw(&mut b, EntryType::Symlink, b"chain1", b"chain2/..", b"");
    add_raw(&mut b, EntryType::Directory, b"chain2/", b"", b"");
    add_raw(
        &mut b,
        EntryType::Symlink,
        b"chain2/up",
        b"../../../..",
        b"",
    );
    add_raw(
        &mut b,
        EntryType::Regular,
        b"chain1/chain2/up/sentinel/shadow",
        b"",
        b"pwned\n",
    );
    // A link straight to the absolute dedicated dir, then a write through it.
    add_raw(&mut b, EntryType::Symlink, b"abs", abs.as_bytes(), b"");
    add_raw(
        &mut b,
        EntryType::Directory,
        format!("{rel_abs}/").as_bytes(),
        b"",
        b"",
    );
    add_raw(&mut b, EntryType::Regular, b"abs/x", b"", b"pwned\n");
    // A symlink as the final component is replaced, never written through.
    add_raw(&mut b, EntryType::Symlink, b"s", b"../sentinel/passwd", b"");
    add_raw(&mut b, EntryType::Regular, b"s", b"", b"pwned\n");
    add_raw(
        &mut b,
        EntryType::Symlink,
        b"s2",
        format!("{abs}/x").as_bytes(),
        b"",
    );
    add_raw(&mut b, EntryType::Directory, b"s2/", b"", b"");
    arena.apply(&finish(b)).unwrap();
    arena.assert_untouched();

    let t = arena.target();
    assert_eq!(
        fs::read(t.join(&rel_abs).join("passwd")).unwrap(),
        b"pwned\n"
    );
    assert!(t.join(&rel_abs).join("newdir").is_dir());
    assert!(fs::symlink_metadata(t.join(&rel_abs).join("fifo"))
        .unwrap()
        .file_type()
        .is_fifo());
    assert_eq!(fs::read(t.join("sentinel/passwd")).unwrap(), b"pwned\n");
    assert_eq!(fs::read(t.join("sentinel/shadow")).unwrap(), b"pwned\n");
    assert_eq!(fs::read(t.join(&rel_abs).join("x")).unwrap(), b"pwned\n");
    assert!(fs::symlink_metadata(t.join("s")).unwrap().is_file());
    assert!(fs::symlink_metadata(t.join("s2")).unwrap().is_dir());
}

#[test]
fn hostile_symlink_to_missing_outside_dir_is_rejected() {
    let arena = Arena::new();
    let mut b = builder();
    add_raw(&mut b, EntryType::Symlink, b"up", b"../sentinel", b"");
    add_raw(&mut b, EntryType::Regular, b"up/passwd", b"", b"pwned\n");
    let (entry, reason, msg) = rejected(arena.apply(&finish(b)));
    assert_eq!(entry, "up/passwd");
    assert_eq!(reason, Reject::ParentInTheWay("up".into()));
    assert!(msg.contains("up/passwd"), "{msg}");
    arena.assert_untouched();
}

#[test]
fn hostile_symlink_across_layers_cannot_be_written_through() {
    // Each layer is applied into its own empty directory: a link made by a lower layer is
    // not there when the next layer is applied, so nothing resolves through it.
    let arena = Arena::new();
    let abs = arena.abs();
    let mut b = builder();
    add_raw(&mut b, EntryType::Symlink, b"evil", abs.as_bytes(), b"");
    add_raw(&mut b, EntryType::Symlink, b"up", b"../sentinel", b"");
    arena.apply(&finish(b)).unwrap();
    let other = tempfile::tempdir().unwrap();
    let second = other.path().to_path_buf();
    let mut b = builder();
    add_raw(&mut b, EntryType::Regular, b"evil/passwd", b"", b"pwned\n");
    add_raw(&mut b, EntryType::Regular, b"up/passwd", b"", b"pwned\n");
    apply_layer(&finish(b)[..], &second).unwrap();
    assert_eq!(fs::read(second.join("evil/passwd")).unwrap(), b"pwned\n");
    assert_eq!(fs::read(second.join("up/passwd")).unwrap(), b"pwned\n");
    arena.assert_untouched();
}

#[test]
fn hostile_hardlinks_are_rejected() {
    type Case = (Vec<(EntryType, Vec<u8>, Vec<u8>)>, Reject);
    let cases = |abs: String| -> Vec<Case> {
        vec![
            (
                vec![(
                    EntryType::Link,
                    b"h".to_vec(),
                    b"../sentinel/passwd".to_vec(),
                )],
                Reject::HardlinkDotDot("../sentinel/passwd".into()),
            ),
            (
                vec![(
                    EntryType::Link,
                    b"h".to_vec(),
                    b"../../../../../etc/passwd".to_vec(),
                )],
                Reject::HardlinkDotDot("../../../../../etc/passwd".into()),
            ),
            // Absolute: clamped to the layer, where it does not exist.
            (
                vec![(
                    EntryType::Link,
                    b"h".to_vec(),
                    format!("{abs}/passwd").into_bytes(),
                )],
                Reject::HardlinkTargetMissing(format!("{abs}/passwd")),
            ),
            // Through a symlink to the outside, and through one that stays inside.
            (
                vec![
                    (
                        EntryType::Symlink,
                        b"evil".to_vec(),
                        abs.clone().into_bytes(),
                    ),
                    (EntryType::Link, b"h".to_vec(), b"evil/passwd".to_vec()),
                ],
                Reject::HardlinkThroughSymlink("evil/passwd".into()),
            ),
            (
                vec![
                    (EntryType::Symlink, b"up".to_vec(), b"../sentinel".to_vec()),
                    (EntryType::Link, b"h".to_vec(), b"up/passwd".to_vec()),
                ],
                Reject::HardlinkThroughSymlink("up/passwd".into()),
            ),
            (
                vec![
                    (EntryType::Directory, b"d/".to_vec(), Vec::new()),
                    (EntryType::Link, b"h".to_vec(), b"d".to_vec()),
                ],
                Reject::HardlinkToDirectory("d".into()),
            ),
        ]
    };
    for i in 0..6 {
        let arena = Arena::new();
        let (entries, want) = cases(arena.abs()).swap_remove(i);
        let mut b = builder();
        for (kind, name, link) in &entries {
            add_raw(&mut b, *kind, name, link, b"");
        }
        let (entry, reason, msg) = rejected(arena.apply(&finish(b)));
        assert_eq!((entry.as_str(), &reason), ("h", &want), "{msg}");
        assert!(msg.starts_with("layer entry \"h\""), "{msg}");
        arena.assert_untouched();
    }

    // A hardlink to a symlink that points outside, then writes to and through the link.
    let arena = Arena::new();
    let abs = arena.abs();
    let mut b = builder();
    add_raw(
        &mut b,
        EntryType::Symlink,
        b"s",
        format!("{abs}/passwd").as_bytes(),
        b"",
    );
    add_raw(&mut b, EntryType::Link, b"h", b"s", b"");
    add_raw(&mut b, EntryType::Regular, b"h", b"", b"pwned\n");
    add_raw(&mut b, EntryType::Symlink, b"s2", b"../sentinel/dir", b"");
    add_raw(&mut b, EntryType::Link, b"h2", b"s2", b"");
    add_raw(&mut b, EntryType::Regular, b"h2/f", b"", b"pwned\n");
    let (entry, reason, _) = rejected(arena.apply(&finish(b)));
    assert_eq!(
        (entry.as_str(), reason),
        ("h2/f", Reject::ParentInTheWay("h2".into()))
    );
    arena.assert_untouched();
    let t = arena.target();
    assert_eq!(
        fs::read(t.join("h")).unwrap(),
        b"pwned\n",
        "h replaced, not followed"
    );
    assert_eq!(
        fs::read_link(t.join("s")).unwrap(),
        Path::new(&format!("{abs}/passwd"))
    );
    assert!(fs::symlink_metadata(t.join("h2"))
        .unwrap()
        .file_type()
        .is_symlink());
}

#[test]
fn hostile_whiteouts_through_symlinks_are_rejected() {
    for (link, target, entry) in [
        ("evil", "ABS", "evil/.wh.passwd"),
        ("evil", "ABS", "evil/.wh..wh..opq"),
        ("up", "../sentinel", "up/.wh.passwd"),
        ("up", "../sentinel", "up/dir/.wh..wh..opq"),
        ("root", "/", "root/.wh.x"),
    ] {
        let arena = Arena::new();
        let abs = arena.abs();
        let target = if target == "ABS" {
            abs.as_str()
        } else {
            target
        };
        let mut b = builder();
        add_raw(
            &mut b,
            EntryType::Symlink,
            link.as_bytes(),
            target.as_bytes(),
            b"",
        );
        if link == "up" {
            // Make the clamped target exist inside, so only the symlink rule can stop it.
            add_raw(&mut b, EntryType::Directory, b"sentinel/dir/", b"", b"");
        }
        add_raw(&mut b, EntryType::Regular, entry.as_bytes(), b"", b"");
        let (e, reason, msg) = rejected(arena.apply(&finish(b)));
        assert_eq!(
            (e.as_str(), reason),
            (entry, Reject::WhiteoutThroughSymlink),
            "{msg}"
        );
        arena.assert_untouched();
        assert!(lxattr(arena.abs.path(), "trusted.overlay.opaque").is_none());
    }
}

#[test]
fn hostile_invalid_whiteout_names_are_rejected() {
    for name in [".wh.", ".wh..", ".wh...", "a/.wh..", "a/.wh...", "a/.wh."] {
        let arena = Arena::new();
        let mut b = builder();
        add_raw(&mut b, EntryType::Regular, name.as_bytes(), b"", b"");
        let (entry, reason, msg) = rejected(arena.apply(&finish(b)));
        assert_eq!(entry, name);
        assert!(matches!(reason, Reject::InvalidWhiteout(_)), "{msg}");
        assert!(msg.contains("invalid whiteout"), "{msg}");
        arena.assert_untouched();
    }
}

#[test]
fn hostile_device_numbers_that_do_not_fit_are_rejected() {
    for (kind, major, minor) in [
        (EntryType::Char, 4096, 0),
        (EntryType::Block, 0, 0x10_0000),
        (EntryType::Char, 0o7777777, 0o7777777),
    ] {
        let arena = Arena::new();
        let mut b = builder();
        let mut h = header(kind, 0o666, 0, 0, T0);
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        b.append_data(&mut h, "dev/evil", io::empty()).unwrap();
        let (entry, reason, msg) = rejected(arena.apply(&finish(b)));
        assert_eq!(entry, "dev/evil");
        assert_eq!(
            reason,
            Reject::DeviceNumber {
                major: major.into(),
                minor: minor.into()
            }
        );
        assert!(msg.contains("out of range"), "{msg}");
        assert!(!arena.target().join("dev/evil").exists());
        arena.assert_untouched();
    }
    // A field that is not a number at all.
    let arena = Arena::new();
    let mut b = builder();
    let mut h = header(EntryType::Block, 0o666, 0, 0, T0);
    h.as_gnu_mut().unwrap().dev_major = *b"\xff\xff\xff\xff\xff\xff\xff\xff";
    h.set_path("dev/evil").unwrap();
    h.set_cksum();
    b.append(&h, io::empty()).unwrap();
    let (_, reason, _) = rejected(arena.apply(&finish(b)));
    assert!(matches!(reason, Reject::BadHeader(_)), "{reason:?}");
    arena.assert_untouched();
}

/// Counts the bytes each thread has allocated (live) and its peak, so a test can tell how much
/// memory its own call needed while other tests run in parallel.
mod counting {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    pub struct Counting;

    thread_local! {
        static LIVE: Cell<i64> = const { Cell::new(0) };
        static PEAK: Cell<i64> = const { Cell::new(0) };
    }

    fn add(n: i64) {
        let _ = LIVE.try_with(|l| {
            let v = l.get() + n;
            l.set(v);
            let _ = PEAK.try_with(|p| p.set(p.get().max(v)));
        });
    }

    // SAFETY: forwards to the system allocator; the counting touches only const thread-locals.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            add(layout.size() as i64);
            System.alloc(layout)
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            add(-(layout.size() as i64));
            System.dealloc(ptr, layout)
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new: usize) -> *mut u8 {
            add(new as i64 - layout.size() as i64);
            System.realloc(ptr, layout, new)
        }
    }

    /// The most this thread had allocated at once while running `f`, beyond what it had before.
    pub fn peak_during<T>(f: impl FnOnce() -> T) -> (T, u64) {
        let base = LIVE.with(|l| l.get());
        PEAK.with(|p| p.set(base));
        let out = f();
        let peak = PEAK.with(|p| p.get());
        (out, (peak - base).max(0) as u64)
    }
}

#[global_allocator]
static ALLOC: counting::Counting = counting::Counting;

/// zstd of: one GNU long-name record (or PAX record) of `n` bytes, then a file entry.
fn metadata_bomb(kind: EntryType, n: usize) -> Vec<u8> {
    let mut e = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
    let mut h = header(kind, 0o644, 0, 0, 0);
    h.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
    h.set_size(n as u64);
    h.set_cksum();
    e.write_all(h.as_bytes()).unwrap();
    let chunk = if kind == EntryType::XHeader {
        // One endless PAX comment record: "<len> comment=aaaa…".
        let head = format!("{n} comment=");
        e.write_all(head.as_bytes()).unwrap();
        vec![b'a'; 1 << 20]
    } else {
        vec![b'a'; 1 << 20]
    };
    let mut left = n - if kind == EntryType::XHeader {
        format!("{n} comment=").len()
    } else {
        0
    };
    while left > 0 {
        let k = left.min(chunk.len());
        e.write_all(&chunk[..k]).unwrap();
        left -= k;
    }
    e.write_all(&vec![0u8; (512 - n % 512) % 512]).unwrap();
    let mut f = header(EntryType::Regular, 0o644, 0, 0, 0);
    f.set_path("file").unwrap();
    f.set_cksum();
    e.write_all(f.as_bytes()).unwrap();
    e.write_all(&[0u8; 1024]).unwrap();
    e.finish().unwrap()
}

#[test]
fn hostile_decompression_bombs_are_streamed_or_bounded() {
    // Metadata bombs: the tar crate would buffer these whole; they are cut off.
    for kind in [EntryType::GNULongName, EntryType::XHeader] {
        let arena = Arena::new();
        let bomb = metadata_bomb(kind, 64 << 20);
        assert!(bomb.len() < 1 << 20);
        let (r, peak) = counting::peak_during(|| arena.apply(&bomb));
        let err = r.unwrap_err();
        assert!(matches!(err, LayerError::Stream(_)), "{err:?}");
        assert!(err.to_string().contains("tar metadata"), "{err}");
        assert!(peak < 16 << 20, "memory stays bounded: {peak} bytes");
        arena.assert_untouched();
    }

    // A data bomb: 24 MiB of zeros in a few KiB of zstd goes to disk, streamed.
    let arena = Arena::new();
    let size: u64 = 24 << 20;
    let mut hasher_input = Vec::new();
    let mut h = header(EntryType::Regular, 0o644, 0, 0, 0);
    h.set_path("zeros").unwrap();
    h.set_size(size);
    h.set_cksum();
    hasher_input.extend_from_slice(h.as_bytes());
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
    let mut sha = sha2_stream::Sha::default();
    enc.write_all(h.as_bytes()).unwrap();
    sha.update(h.as_bytes());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..(size >> 20) {
        enc.write_all(&zeros).unwrap();
        sha.update(&zeros);
    }
    enc.write_all(&[0u8; 1024]).unwrap();
    sha.update(&[0u8; 1024]);
    let bomb = enc.finish().unwrap();
    assert!(bomb.len() < 1 << 20, "{}", bomb.len());
    let (got, peak) = counting::peak_during(|| arena.apply(&bomb));
    let got = got.unwrap();
    assert!(peak < 4 << 20, "streamed, not buffered: {peak} bytes");
    assert_eq!(got.size, 512 + size + 1024);
    assert_eq!(got.diff_id.to_string(), sha.digest());
    assert_eq!(
        fs::metadata(arena.target().join("zeros")).unwrap().len(),
        size
    );
    arena.assert_untouched();
}

/// sha256 over pieces, through the crate's own digest writer.
mod sha2_stream {
    use berth_image::digest::DigestWriter;
    use std::io::Write;

    pub struct Sha(Option<DigestWriter<std::io::Sink>>);

    impl Default for Sha {
        fn default() -> Sha {
            Sha(Some(DigestWriter::new(std::io::sink())))
        }
    }

    impl Sha {
        pub fn update(&mut self, b: &[u8]) {
            self.0.as_mut().unwrap().write_all(b).unwrap();
        }

        pub fn digest(&mut self) -> String {
            self.0.take().unwrap().finish().1.to_string()
        }
    }
}

#[test]
fn hostile_odd_entries_are_rejected_or_contained() {
    // uid -1 (chown's "unchanged"), a NUL in a PAX path, an unknown type, the root as a file.
    let arena = Arena::new();
    let mut b = builder();
    let mut h = header(EntryType::Regular, 0o644, u64::from(u32::MAX), 0, T0);
    b.append_data(&mut h, "f", io::empty()).unwrap();
    let (_, reason, _) = rejected(arena.apply(&finish(b)));
    assert!(
        matches!(reason, Reject::OutOfRange { what: "uid", .. }),
        "{reason:?}"
    );

    let mut b = builder();
    b.append_pax_extensions([("path", &b"a\0/../../sentinel/passwd"[..])])
        .unwrap();
    add_file(&mut b, "x", 0o644, b"pwned");
    assert!(arena.apply(&finish(b)).is_err());

    let mut b = builder();
    add_raw(&mut b, EntryType::new(b'V'), b"volume", b"", b"");
    assert_eq!(
        rejected(arena.apply(&finish(b))).1,
        Reject::UnsupportedType('V')
    );

    let mut b = builder();
    add_raw(&mut b, EntryType::Symlink, b"./", b"/", b"");
    assert_eq!(
        rejected(arena.apply(&finish(b))).1,
        Reject::RootNotDirectory
    );

    // A directory entry with data, and a whiteout with data: data is skipped, stream stays
    // in sync, the diff_id still covers every byte.
    let mut b = builder();
    add_raw(&mut b, EntryType::Directory, b"d/", b"", &[7u8; 1000]);
    add_raw(&mut b, EntryType::Regular, b"d/.wh.x", b"", &[7u8; 600]);
    add_file(&mut b, "d/after", 0o644, b"after");
    let tar = finish(b);
    let fresh = Arena::new();
    let got = fresh.apply(&tar).unwrap();
    assert_eq!(got.diff_id, sha256(&tar));
    assert_eq!(fs::read(fresh.target().join("d/after")).unwrap(), b"after");
    assert!(is_whiteout(&fresh.target().join("d/x")));
    fresh.assert_untouched();

    // An entry hidden after a lone end-of-archive block: Docker's reader fails on it, so do we
    // (rather than apply a layer that differs from what other engines see).
    let mut b = builder();
    add_file(&mut b, "seen", 0o644, b"1");
    let mut tar = b.into_inner().unwrap();
    tar.truncate(tar.len() - 1024);
    tar.extend_from_slice(&[0u8; 512]);
    let mut hidden = builder();
    add_file(&mut hidden, "hidden", 0o644, b"2");
    tar.extend_from_slice(&finish(hidden));
    let err = Arena::new().apply(&tar).unwrap_err();
    assert!(err.to_string().contains("end-of-archive"), "{err}");
    arena.assert_untouched();
}

#[test]
fn later_entries_replace_earlier_ones_without_following() {
    let arena = Arena::new();
    let mut b = builder();
    add_dir(&mut b, "d/", 0o755);
    add_file(&mut b, "d/f", 0o644, b"one");
    add_file(&mut b, "d", 0o644, b"file now");
    add_link(&mut b, EntryType::Symlink, "e", "../sentinel");
    add_dir(&mut b, "e/", 0o700);
    add_file(&mut b, "f", 0o644, b"original");
    add_link(&mut b, EntryType::Link, "g", "f");
    add_file(&mut b, "g", 0o644, b"replaced");
    add_link(&mut b, EntryType::Link, "f2", "f");
    add_link(&mut b, EntryType::Link, "f2", "f");
    add_file(&mut b, ".wh.f2", 0o644, b"");
    arena.apply(&finish(b)).unwrap();
    let t = arena.target();
    assert_eq!(fs::read(t.join("d")).unwrap(), b"file now");
    assert!(fs::symlink_metadata(t.join("e")).unwrap().is_dir());
    assert_eq!(
        fs::read(t.join("f")).unwrap(),
        b"original",
        "hardlink replaced, not written"
    );
    assert_eq!(fs::read(t.join("g")).unwrap(), b"replaced");
    assert!(is_whiteout(&t.join("f2")));
    arena.assert_untouched();
}
