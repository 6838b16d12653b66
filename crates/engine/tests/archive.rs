//! `docker cp`, `export` and `diff` on a real overlay snapshot of busybox, through the free
//! functions the engine's methods wrap: paths resolve inside the container whatever
//! symlinks it plants, mounts are crossed, read-only places are refused.

mod fixture;

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::symlink;

use berth_engine::archive::{self, PutOptions};
use berth_engine::Error;
use berth_image::layer::ChangeKind;
use fixture::{entries, make_tar, Container};
use tar::EntryType;

const DIR_BIT: u32 = 1 << 31;
const LINK_BIT: u32 = 1 << 27;
const MARK: &str = "root:x:0:0:inside-the-container:/root:/bin/sh\n";

/// A container whose /etc/passwd is recognisably its own.
fn container() -> Container {
    let c = Container::new();
    fs::write(c.rootfs().join("etc/passwd"), MARK).unwrap();
    c
}

fn get(fs: &archive::ContainerFs, path: &str) -> (Vec<(String, u8, Vec<u8>)>, archive::PathStat) {
    let (source, stat) = archive::get_path(fs, path).unwrap();
    let mut out = Vec::new();
    source.write_to(&mut out).unwrap();
    (entries(&out), stat)
}

fn put(fs: &archive::ContainerFs, path: &str, tar: &[u8], no_overwrite: bool) -> Result<(), Error> {
    let opts = PutOptions {
        no_overwrite_dir_non_dir: no_overwrite,
        owner: None,
    };
    archive::put_path(fs, path, tar, opts, || {
        Error::NotFound(format!("no {path}"))
    })
}

#[test]
fn stat_reports_go_file_modes_and_docker_names() {
    let c = container();
    let fs = c.fs(&[]);
    let file = archive::stat_path(&fs, "/etc/passwd").unwrap();
    assert_eq!(file.name, "passwd");
    assert_eq!(file.size, MARK.len() as i64);
    assert_eq!(file.mode & DIR_BIT, 0);
    assert_eq!(file.mode & 0o777, 0o644);
    assert!(file.mtime.ends_with('Z'), "{}", file.mtime);
    let dir = archive::stat_path(&fs, "/etc/").unwrap();
    assert_eq!(dir.name, "etc");
    assert_ne!(dir.mode & DIR_BIT, 0);
    assert_eq!(archive::stat_path(&fs, "/").unwrap().name, "/");
    let e = archive::stat_path(&fs, "/nope/x").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(
        archive::stat_path(&fs, "/etc/passwd/").is_err(),
        "a file is not a directory"
    );

    symlink("/etc/passwd", c.rootfs().join("pw")).unwrap();
    let link = archive::stat_path(&fs, "/pw").unwrap();
    assert_ne!(link.mode & LINK_BIT, 0);
    assert_eq!(link.link_target, "/etc/passwd");
}

#[test]
fn get_names_entries_after_the_last_component() {
    let c = container();
    let fs = c.fs(&[]);
    let (list, _) = get(&fs, "/etc/passwd");
    assert_eq!(
        list,
        vec![("passwd".to_string(), b'0', MARK.as_bytes().to_vec())]
    );

    let (list, stat) = get(&fs, "/etc");
    assert_ne!(stat.mode & DIR_BIT, 0);
    assert_eq!(list[0].0, "etc/");
    assert!(list
        .iter()
        .any(|(n, _, d)| n == "etc/passwd" && d == MARK.as_bytes()));
    assert!(list.iter().all(|(n, _, _)| n.starts_with("etc/")));

    // `/etc/.`: the contents, as Docker's rebase of "." gives them.
    let (list, _) = get(&fs, "/etc/.");
    assert!(
        list.iter().any(|(n, _, _)| n == "./passwd"),
        "{:?}",
        list.iter().map(|e| &e.0).collect::<Vec<_>>()
    );
}

#[test]
fn symlinks_planted_in_the_container_resolve_inside_it() {
    let c = container();
    let fs = c.fs(&[]);
    symlink("/", c.rootfs().join("escape")).unwrap();
    symlink("../../../../../../../../", c.rootfs().join("tmp/up")).unwrap();
    for path in [
        "/escape/etc/passwd",
        "/tmp/up/etc/passwd",
        "/../../../etc/passwd",
        "/escape/escape/tmp/up/etc/passwd",
    ] {
        let (list, _) = get(&fs, path);
        assert_eq!(
            list[0].2,
            MARK.as_bytes(),
            "{path} read a file outside the container"
        );
    }
    // A symlink as the last component is archived as the symlink itself.
    let (list, stat) = get(&fs, "/escape");
    assert_eq!(list, vec![("escape".to_string(), b'2', b"/".to_vec())]);
    assert_eq!(stat.link_target, "/");
    // A loop is an error, not a hang.
    symlink("loop", c.rootfs().join("loop")).unwrap();
    assert!(archive::stat_path(&fs, "/loop/x").is_err());
}

#[test]
fn put_extracts_into_a_directory_and_stays_inside() {
    let c = container();
    let fs = c.fs(&[]);
    let pid = std::process::id();
    let host_probe = format!("/tmp/berth-cp-escape-{pid}");
    let tar = make_tar(&[
        ("dir/", EntryType::Directory, b""),
        ("dir/file", EntryType::Regular, b"data"),
        ("/abs", EntryType::Regular, b"absolute"),
        ("a/../b", EntryType::Regular, b"cleaned"),
        ("out", EntryType::Symlink, b"/"),
        (
            &format!("out/tmp/berth-cp-escape-{pid}"),
            EntryType::Regular,
            b"written through a symlink",
        ),
        ("up", EntryType::Symlink, b"../../../../../../../.."),
        (
            &format!("up/berth-cp-escape-{pid}"),
            EntryType::Regular,
            b"up",
        ),
        ("hard", EntryType::Link, b"dir/file"),
    ]);
    fs::create_dir(c.rootfs().join("dest")).unwrap();
    put(&fs, "/dest", &tar, true).unwrap();
    let root = c.rootfs();
    assert_eq!(
        fs::read_to_string(root.join("dest/dir/file")).unwrap(),
        "data"
    );
    assert_eq!(
        fs::read_to_string(root.join("dest/abs")).unwrap(),
        "absolute"
    );
    assert_eq!(fs::read_to_string(root.join("dest/b")).unwrap(), "cleaned");
    assert_eq!(fs::read_to_string(root.join("dest/hard")).unwrap(), "data");
    assert_eq!(
        fs::read_to_string(root.join(format!("tmp/berth-cp-escape-{pid}"))).unwrap(),
        "written through a symlink"
    );
    assert_eq!(
        fs::read_to_string(root.join(format!("berth-cp-escape-{pid}"))).unwrap(),
        "up"
    );
    assert!(
        !std::path::Path::new(&host_probe).exists(),
        "wrote {host_probe} on the host"
    );
    assert!(!std::path::Path::new(&format!("/berth-cp-escape-{pid}")).exists());

    // `..` above the extraction directory is refused.
    let tar = make_tar(&[("../escaped", EntryType::Regular, b"x")]);
    let e = put(&fs, "/dest", &tar, true).unwrap_err();
    assert!(e.message().contains("outside"), "{}", e.message());
    assert!(!root.join("escaped").exists());
}

#[test]
fn put_follows_a_symlinked_destination_and_checks_it() {
    let c = container();
    let fs = c.fs(&[]);
    symlink("/tmp", c.rootfs().join("tmplink")).unwrap();
    put(
        &fs,
        "/tmplink",
        &make_tar(&[("f", EntryType::Regular, b"1")]),
        true,
    )
    .unwrap();
    assert_eq!(fs::read_to_string(c.rootfs().join("tmp/f")).unwrap(), "1");

    // The archive's own root entry leaves the destination directory alone.
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &str| {
        fs::metadata(c.rootfs().join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    };
    let before = mode("tmp");
    put(
        &fs,
        "/tmp",
        &make_tar(&[("./", EntryType::Directory, b"")]),
        true,
    )
    .unwrap();
    assert_eq!(mode("tmp"), before);

    let e = put(&fs, "/missing", &make_tar(&[]), true).unwrap_err();
    assert_eq!(e.status(), 404);
    let e = put(&fs, "/etc/passwd", &make_tar(&[]), true).unwrap_err();
    assert_eq!(
        (e.status(), e.message()),
        (400, "extraction point is not a directory".to_string())
    );

    // noOverwriteDirNonDir: a file may not replace a directory; without it, it does.
    fs::create_dir_all(c.rootfs().join("tmp/d/sub")).unwrap();
    let tar = make_tar(&[("d", EntryType::Regular, b"file now")]);
    let e = put(&fs, "/tmp", &tar, true).unwrap_err();
    assert!(
        e.message().contains("cannot overwrite directory"),
        "{}",
        e.message()
    );
    put(&fs, "/tmp", &tar, false).unwrap();
    assert_eq!(
        fs::read_to_string(c.rootfs().join("tmp/d")).unwrap(),
        "file now"
    );
}

#[test]
fn mounts_are_crossed_and_read_only_places_refused() {
    let c = container();
    let vol = c.tmp.path().join("volume");
    let ro = c.tmp.path().join("ro-volume");
    fs::create_dir_all(&vol).unwrap();
    fs::create_dir_all(&ro).unwrap();
    fs::write(vol.join("x"), "in the volume").unwrap();
    symlink("/etc", vol.join("etc-link")).unwrap();
    // The runtime makes the mount points in the rootfs, as for a real container.
    fs::create_dir(c.rootfs().join("data")).unwrap();
    fs::create_dir(c.rootfs().join("ro")).unwrap();
    let fs_ = c.fs(&[("/data", &vol, true), ("/ro", &ro, false)]);

    let (list, _) = get(&fs_, "/data/x");
    assert_eq!(list[0].2, b"in the volume");
    let (list, _) = get(&fs_, "/data/etc-link/passwd");
    assert_eq!(
        list[0].2,
        MARK.as_bytes(),
        "a volume's symlink resolves in the container"
    );
    let (list, _) = get(&fs_, "/");
    assert!(list
        .iter()
        .any(|(n, _, d)| n == "data/x" && d == b"in the volume"));

    put(
        &fs_,
        "/data",
        &make_tar(&[("new", EntryType::Regular, b"n")]),
        true,
    )
    .unwrap();
    assert_eq!(fs::read_to_string(vol.join("new")).unwrap(), "n");
    let e = put(
        &fs_,
        "/ro",
        &make_tar(&[("new", EntryType::Regular, b"n")]),
        true,
    )
    .unwrap_err();
    assert_eq!(
        (e.status(), e.message()),
        (400, "mounted volume is marked read-only".to_string())
    );
    // Reaching the read-only mount through a symlink is refused too.
    let tar = make_tar(&[
        ("l", EntryType::Symlink, b"/ro"),
        ("l/sneaky", EntryType::Regular, b"s"),
    ]);
    assert!(put(&fs_, "/data", &tar, true).is_err());
    assert!(!ro.join("sneaky").exists());
    let tar = make_tar(&[
        ("l2", EntryType::Symlink, b"/ro"),
        ("l2/newdir/file", EntryType::Regular, b"s"),
    ]);
    let e = put(&fs_, "/data", &tar, true).unwrap_err();
    assert_eq!(e.message(), "mounted volume is marked read-only");
    assert!(
        !ro.join("newdir").exists(),
        "a directory was made in a read-only mount"
    );
    // Nor may a hardlink give a read-only mount's file a writable name.
    fs::write(ro.join("f"), "read-only").unwrap();
    let tar = make_tar(&[
        ("l3", EntryType::Symlink, b"/ro"),
        ("hl", EntryType::Link, b"l3/f"),
    ]);
    assert!(put(&fs_, "/data", &tar, true).is_err());
    assert!(!vol.join("hl").exists());

    let mut read_only = c.fs(&[("/data", &vol, true)]);
    read_only.readonly_rootfs = true;
    let e = put(&read_only, "/tmp", &make_tar(&[]), true).unwrap_err();
    assert_eq!(e.message(), "container rootfs is marked read-only");
    put(
        &read_only,
        "/data",
        &make_tar(&[("ok", EntryType::Regular, b"")]),
        true,
    )
    .unwrap();
}

#[test]
fn export_is_the_merged_rootfs_without_a_prefix() {
    let c = container();
    fs::write(c.rootfs().join("hello"), "hi").unwrap();
    let mut out = Vec::new();
    archive::export_rootfs(c.rootfs(), &mut out).unwrap();
    let list = entries(&out);
    assert!(list.iter().any(|(n, _, d)| n == "hello" && d == b"hi"));
    assert!(list
        .iter()
        .any(|(n, _, d)| n == "etc/passwd" && d == MARK.as_bytes()));
    assert!(list.iter().any(|(n, k, _)| n == "bin/" && *k == b'5'));
    assert!(list
        .iter()
        .all(|(n, _, _)| !n.starts_with('/') && !n.starts_with("./")));
}

#[test]
fn changes_list_the_rw_layer_without_the_init_files() {
    let c = Container::new();
    let root = c.rootfs();
    fs::write(root.join("hello"), "hi").unwrap();
    fs::remove_file(root.join("etc/group")).unwrap();
    let list = archive::changes(&c.snapshot.upper, &c.lowers()).unwrap();
    let shown: Vec<String> = list.iter().map(ToString::to_string).collect();
    assert!(
        list.iter()
            .any(|ch| ch.kind == ChangeKind::Added && ch.path.to_str() == Some("/hello")),
        "{shown:?}"
    );
    assert!(
        list.iter()
            .any(|ch| ch.kind == ChangeKind::Deleted && ch.path.to_str() == Some("/etc/group")),
        "{shown:?}"
    );
    assert!(
        list.iter()
            .any(|ch| ch.kind == ChangeKind::Modified && ch.path.to_str() == Some("/etc")),
        "{shown:?}"
    );
    assert!(
        !shown
            .iter()
            .any(|s| s.contains("hostname") || s.contains("resolv.conf") || s.contains("hosts")),
        "{shown:?}"
    );
    assert_eq!(list.len(), 3, "{shown:?}");
}

#[test]
fn long_names_and_hardlinks_survive_the_round_trip() {
    let c = container();
    let fs_ = c.fs(&[]);
    let deep = format!("tmp/{}/{}", "d".repeat(90), "f".repeat(60));
    fs::create_dir_all(c.rootfs().join(&deep).parent().unwrap()).unwrap();
    fs::write(c.rootfs().join(&deep), "deep").unwrap();
    fs::hard_link(c.rootfs().join(&deep), c.rootfs().join("tmp/second")).unwrap();
    symlink("x".repeat(150), c.rootfs().join("tmp/longlink")).unwrap();

    let (list, _) = get(&fs_, "/tmp");
    let find = |name: &str| list.iter().find(|(n, _, _)| n == name).cloned();
    let (_, kind, data) = find(&deep).expect("the deep file, by its full name");
    assert_eq!((kind, data), (b'0', b"deep".to_vec()));
    let (_, kind, data) = find("tmp/second").expect("the second link");
    assert_eq!(
        (kind, data),
        (b'1', deep.as_bytes().to_vec()),
        "a hardlink to the first name"
    );
    let (_, kind, data) = find("tmp/longlink").unwrap();
    assert_eq!((kind, data), (b'2', "x".repeat(150).into_bytes()));

    // And back in: the same names, the same link.
    let (source, _) = archive::get_path(&fs_, "/tmp").unwrap();
    let mut tar = Vec::new();
    source.write_to(&mut tar).unwrap();
    fs::create_dir(c.rootfs().join("copy")).unwrap();
    put(&fs_, "/copy", &tar, true).unwrap();
    let copied = c.rootfs().join("copy").join(&deep);
    assert_eq!(fs::read_to_string(&copied).unwrap(), "deep");
    use std::os::unix::fs::MetadataExt;
    let ino = |p: &std::path::Path| fs::metadata(p).unwrap().ino();
    assert_eq!(ino(&copied), ino(&c.rootfs().join("copy/tmp/second")));
    assert_eq!(
        fs::read_link(c.rootfs().join("copy/tmp/longlink"))
            .unwrap()
            .to_str()
            .unwrap(),
        "x".repeat(150)
    );
}

/// `security.capability` of `path`, if any.
fn capability(path: &std::path::Path) -> Option<Vec<u8>> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let mut buf = [0u8; 64];
    // SAFETY: NUL-terminated strings and a buffer valid for its length.
    let n = unsafe {
        libc::getxattr(
            c.as_ptr(),
            c"security.capability".as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    (n >= 0).then(|| buf[..n as usize].to_vec())
}

#[test]
fn file_capabilities_travel_both_ways() {
    let c = container();
    let fs_ = c.fs(&[]);
    let file = c.rootfs().join("tmp/ping");
    fs::write(&file, "binary").unwrap();
    // VFS_CAP_REVISION_2, effective; permitted: cap_net_raw (13).
    let caps: [u8; 20] = [
        1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    let path = std::ffi::CString::new(file.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: NUL-terminated strings and a value valid for its length.
    let r = unsafe {
        libc::setxattr(
            path.as_ptr(),
            c"security.capability".as_ptr(),
            caps.as_ptr().cast(),
            caps.len(),
            0,
        )
    };
    assert_eq!(r, 0, "setxattr: {}", std::io::Error::last_os_error());

    let (source, _) = archive::get_path(&fs_, "/tmp/ping").unwrap();
    let mut tar = Vec::new();
    source.write_to(&mut tar).unwrap();
    let mut archive_ = tar::Archive::new(&tar[..]);
    let mut entry = archive_.entries().unwrap().next().unwrap().unwrap();
    let record = entry
        .pax_extensions()
        .unwrap()
        .expect("a PAX header")
        .map(|e| e.unwrap())
        .find(|e| e.key() == Ok("SCHILY.xattr.security.capability"))
        .map(|e| e.value_bytes().to_vec());
    assert_eq!(record.as_deref(), Some(&caps[..]));

    fs::create_dir(c.rootfs().join("copy")).unwrap();
    put(&fs_, "/copy", &tar, true).unwrap();
    assert_eq!(
        capability(&c.rootfs().join("copy/ping")).as_deref(),
        Some(&caps[..])
    );
}
