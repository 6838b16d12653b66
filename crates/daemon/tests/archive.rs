//! `docker cp` both ways, `docker diff`, `docker commit` and `docker export` with the real
//! docker CLI against berthd. Containers are only created, never started: their rootfs is
//! mounted from create to rm, which is all these commands need.

mod common;

use std::fs;
use std::io::Write;
use std::os::unix::fs::symlink;
use std::process::{Command, Stdio};

use common::{stderr, Daemon};

/// Runs the system's GNU tar with `input` on stdin; its stdout.
fn gnu_tar(args: &[&str], input: &[u8]) -> Vec<u8> {
    let mut child = Command::new("tar")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(out.status.success(), "tar {args:?} failed");
    out.stdout
}

/// The entry names of a tar.
fn tar_names(bytes: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(&gnu_tar(&["-tf", "-"], bytes))
        .lines()
        .map(str::to_string)
        .collect()
}

/// `docker cp - c1:DIR` with `tar` on stdin.
fn cp_tar_in(d: &Daemon, tar: &[u8], dest: &str) {
    let mut child = d
        .docker_cmd(&["cp", "-", dest])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(tar).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "docker cp - {dest}: {}", stderr(&out));
}

#[test]
fn cp_both_ways_diff_commit_and_export() {
    let d = Daemon::start_with_busybox("archive-cp");
    d.docker_ok(&["create", "--name", "c1", "busybox"]);
    let tmp = d.dir.path().join("files");
    fs::create_dir_all(&tmp).unwrap();

    // Into the container, then back out.
    fs::write(tmp.join("in.txt"), "from the host\n").unwrap();
    d.docker_ok(&["cp", tmp.join("in.txt").to_str().unwrap(), "c1:/hello"]);
    let out = tmp.join("out.txt");
    d.docker_ok(&["cp", "c1:/hello", out.to_str().unwrap()]);
    assert_eq!(fs::read_to_string(&out).unwrap(), "from the host\n");

    // A directory comes out under its own name.
    d.docker_ok(&["cp", "c1:/etc", tmp.to_str().unwrap()]);
    assert!(tmp.join("etc/passwd").is_file());

    // The container's own /etc/hostname, not the init layer's empty one under it.
    let id = d.docker_ok(&["inspect", "-f", "{{.Id}}", "c1"]);
    let hostname = format!("{}\n", &id.trim()[..12]);
    assert_eq!(
        fs::read_to_string(tmp.join("etc/hostname")).unwrap(),
        hostname
    );
    let out = tmp.join("hostname");
    d.docker_ok(&["cp", "c1:/etc/hostname", out.to_str().unwrap()]);
    assert_eq!(fs::read_to_string(&out).unwrap(), hostname);

    // `-` gives the tar itself, entries named after the last component.
    let out = d.docker_ok(&["cp", "c1:/hello", "-"]);
    assert_eq!(tar_names(out.as_bytes()), vec!["hello"]);

    let out = d.docker(&["cp", "c1:/nope", tmp.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("Could not find the file /nope in container c1"),
        "{}",
        stderr(&out)
    );

    // diff: the copied file, nothing of the init layer.
    let diff = d.docker_ok(&["diff", "c1"]);
    assert!(diff.lines().any(|l| l == "A /hello"), "{diff}");
    assert!(
        !diff.contains("hostname") && !diff.contains("resolv.conf"),
        "{diff}"
    );

    // export: the whole rootfs, /hello included.
    let export = tmp.join("c1.tar");
    d.docker_ok(&["export", "-o", export.to_str().unwrap(), "c1"]);
    let names = tar_names(&fs::read(&export).unwrap());
    assert!(names.iter().any(|n| n == "hello") && names.iter().any(|n| n == "etc/passwd"));

    // commit: a new image whose extra layer is /hello, with the CMD changed.
    let id = d.docker_ok(&[
        "commit",
        "-c",
        r#"CMD ["cat","/hello"]"#,
        "-m",
        "msg",
        "c1",
        "committed:v1",
    ]);
    assert!(id.trim().starts_with("sha256:"), "{id}");
    d.docker_ok(&["create", "--name", "c2", "committed:v1"]);
    let out = tmp.join("from-c2");
    d.docker_ok(&["cp", "c2:/hello", out.to_str().unwrap()]);
    assert_eq!(fs::read_to_string(&out).unwrap(), "from the host\n");
    let cmd = d.docker_ok(&["inspect", "-f", "{{json .Config.Cmd}}", "c2"]);
    assert_eq!(cmd.trim(), r#"["cat","/hello"]"#);
}

#[test]
fn cp_stays_inside_the_container() {
    let d = Daemon::start_with_busybox("archive-escape");
    d.docker_ok(&["create", "--name", "c1", "busybox"]);
    // The container's tree gets symlinks to / and above it, and its own passwd.
    let src = d.dir.path().join("tree");
    fs::create_dir_all(src.join("etc")).unwrap();
    symlink("/", src.join("escape")).unwrap();
    symlink("../../../../../../..", src.join("up")).unwrap();
    let passwd = b"root:x:0:0:container:/root:/bin/sh\n";
    fs::write(src.join("etc/passwd"), passwd).unwrap();
    let tar = gnu_tar(
        &[
            "-C",
            src.to_str().unwrap(),
            "-cf",
            "-",
            "escape",
            "up",
            "etc/passwd",
        ],
        b"",
    );
    cp_tar_in(&d, &tar, "c1:/");

    let tmp = d.dir.path().join("files");
    fs::create_dir_all(&tmp).unwrap();
    for (i, path) in ["c1:/escape/etc/passwd", "c1:/up/etc/passwd"]
        .iter()
        .enumerate()
    {
        let out = tmp.join(format!("passwd{i}"));
        d.docker_ok(&["cp", path, out.to_str().unwrap()]);
        assert_eq!(fs::read(&out).unwrap(), passwd, "{path} left the container");
    }
    // Writing through the symlinks lands inside the container too.
    let probe = format!("berth-cp-probe-{}", std::process::id());
    fs::write(tmp.join(&probe), "x").unwrap();
    d.docker_ok(&["cp", tmp.join(&probe).to_str().unwrap(), "c1:/up/tmp/"]);
    assert!(
        !std::path::Path::new("/tmp").join(&probe).exists(),
        "wrote the host's /tmp"
    );
    let out = d.docker_ok(&["cp", &format!("c1:/tmp/{probe}"), "-"]);
    assert_eq!(tar_names(out.as_bytes()), vec![probe.clone()]);
}

#[test]
fn cp_archive_mode_takes_the_containers_user() {
    let d = Daemon::start_with_busybox("archive-uid");
    d.docker_ok(&["create", "--name", "c1", "--user", "nobody", "busybox"]);
    let tmp = d.dir.path().join("files");
    fs::create_dir_all(&tmp).unwrap();
    fs::write(tmp.join("owned"), "x").unwrap();
    let src = tmp.join("owned");
    d.docker_ok(&["cp", "-a", src.to_str().unwrap(), "c1:/tmp/"]);
    d.docker_ok(&["cp", src.to_str().unwrap(), "c1:/tmp/plain"]);
    let listing = |path: &str| {
        let tar = d.docker_ok(&["cp", path, "-"]);
        String::from_utf8_lossy(&gnu_tar(&["--numeric-owner", "-tvf", "-"], tar.as_bytes()))
            .into_owned()
    };
    assert!(
        listing("c1:/tmp/owned").contains(" 65534/65534 "),
        "{}",
        listing("c1:/tmp/owned")
    );
    assert!(
        listing("c1:/tmp/plain").contains(" 0/0 "),
        "{}",
        listing("c1:/tmp/plain")
    );
}

#[test]
fn commit_of_a_running_container_pauses_it_and_keeps_it_running() {
    let d = Daemon::start_with_busybox("archive-commit-run");
    d.docker_ok(&[
        "run",
        "-d",
        "--name",
        "r1",
        "busybox",
        "sh",
        "-c",
        "echo made > /made; rm /etc/group; sleep 60",
    ]);
    // Wait for the container's writes.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !d.docker(&["cp", "r1:/made", "-"]).status.success() {
        assert!(std::time::Instant::now() < deadline, "/made never appeared");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let diff = d.docker_ok(&["diff", "r1"]);
    assert!(
        diff.lines().any(|l| l == "A /made") && diff.lines().any(|l| l == "D /etc/group"),
        "{diff}"
    );

    d.docker_ok(&["commit", "r1", "fromrun:1"]);
    assert_eq!(
        d.docker_ok(&["inspect", "-f", "{{.State.Status}}", "r1"])
            .trim(),
        "running"
    );
    assert_eq!(
        d.docker_ok(&["run", "--rm", "fromrun:1", "cat", "/made"]),
        "made\n"
    );
    let out = d.docker(&["run", "--rm", "fromrun:1", "ls", "/etc/group"]);
    assert!(
        !out.status.success(),
        "the deletion is part of the new layer"
    );
    d.docker_ok(&["rm", "-f", "r1"]);
}
