//! The container's filesystem and process setup: read-only root, masked and read-only paths,
//! bind mounts, /dev, devices, symlinked mount targets, --no-pivot, sysctl, rlimits, user,
//! cwd/env, and the terminal handed over a console socket.

mod common;

use std::fs;
use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::symlink;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use serde_json::json;

#[test]
fn readonly_root_refuses_writes() {
    let ctx = Ctx::new("readonly_root_refuses_writes");
    let b = ctx.bundle(&["touch", "/berth-write-test"]);
    let out = ctx.run(&b);
    out.failed().stderr_has("Read-only file system");
    assert!(!rootfs().join("berth-write-test").exists());
}

#[test]
fn writable_root_when_not_readonly() {
    let ctx = Ctx::new("writable_root_when_not_readonly");
    let mut b = ctx.private_bundle(&["sh", "-c", "echo written > /new-file"]);
    b.config["root"]["readonly"] = json!(false);
    ctx.run(&b).ok();
    assert_eq!(
        fs::read_to_string(b.rootfs.join("new-file")).unwrap(),
        "written\n"
    );
}

#[test]
fn masked_paths_read_empty() {
    let ctx = Ctx::new("masked_paths_read_empty");
    // A /proc file masked by the default config that this kernel has (/proc/kcore is not
    // everywhere): the runtime binds /dev/null over it.
    let proc_file = [
        "/proc/kcore",
        "/proc/keys",
        "/proc/timer_list",
        "/proc/sched_debug",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists())
    .expect("none of the default masked /proc files exists on this host");
    let mut b = ctx.private_bundle(&[
        "sh",
        "-c",
        &format!(
            "cat /public.txt; echo \"file:[$(cat /secret.txt)]\"; echo \"dir:[$(ls -A /secret-dir)]\"; \
             echo \"proc:$(stat -c %F:%t:%T {proc_file})\""
        ),
    ]);
    assert!(b.config["linux"]["maskedPaths"]
        .as_array()
        .unwrap()
        .contains(&json!(proc_file)));
    fs::write(b.rootfs.join("public.txt"), "public\n").unwrap();
    fs::write(b.rootfs.join("secret.txt"), "TOP SECRET\n").unwrap();
    mkdir_755(&b.rootfs.join("secret-dir"));
    fs::write(b.rootfs.join("secret-dir/inner"), "TOP SECRET\n").unwrap();
    let masked = b.config["linux"]["maskedPaths"].as_array_mut().unwrap();
    masked.push(json!("/secret.txt"));
    masked.push(json!("/secret-dir"));
    let out = ctx.run(&b);
    out.ok();
    assert_eq!(
        lines(&out.stdout),
        [
            "public",
            "file:[]",
            "dir:[]",
            "proc:character special file:1:3"
        ],
        "{out}"
    );
    assert_eq!(
        fs::read_to_string(b.rootfs.join("secret.txt")).unwrap(),
        "TOP SECRET\n"
    );
}

#[test]
fn readonly_paths_are_read_only() {
    let ctx = Ctx::new("readonly_paths_are_read_only");
    let mut b = ctx.private_bundle(&[
        "sh",
        "-c",
        "touch /data/f; echo rc=$?; touch /other; echo rc2=$?",
    ]);
    b.config["root"]["readonly"] = json!(false);
    mkdir_755(&b.rootfs.join("data"));
    b.config["linux"]["readonlyPaths"]
        .as_array_mut()
        .unwrap()
        .push(json!("/data"));
    let out = ctx.run(&b);
    out.ok();
    assert_eq!(lines(&out.stdout), ["rc=1", "rc2=0"], "{out}");
    out.stderr_has("Read-only file system");
    assert!(!b.rootfs.join("data/f").exists());
    assert!(b.rootfs.join("other").exists());
}

#[test]
fn read_only_bind_mount_is_visible_and_read_only() {
    let ctx = Ctx::new("read_only_bind_mount");
    let host = ctx.new_dir("host-ro");
    fs::write(host.join("hello.txt"), "hello from host\n").unwrap();
    let mut b = ctx.private_bundle(&[
        "sh",
        "-c",
        "cat /mnt/ro/hello.txt; touch /mnt/ro/new; echo rc=$?",
    ]);
    b.add_mount(
        json!({"destination": "/mnt/ro", "type": "bind", "source": host,
                       "options": ["bind", "ro"]}),
    );
    let out = ctx.run(&b);
    out.ok();
    assert_eq!(lines(&out.stdout), ["hello from host", "rc=1"], "{out}");
    out.stderr_has("Read-only file system");
    assert!(!host.join("new").exists());
    ctx.assert_nothing_left(&b);
}

#[test]
fn read_write_bind_mount_writes_reach_the_host() {
    let ctx = Ctx::new("read_write_bind_mount");
    let host = ctx.new_dir("host-rw");
    fs::write(host.join("in.txt"), "input\n").unwrap();
    let mut b = ctx.private_bundle(&[
        "sh",
        "-c",
        "cat /mnt/rw/in.txt && echo from-container > /mnt/rw/out.txt",
    ]);
    b.add_mount(
        json!({"destination": "/mnt/rw", "type": "bind", "source": host,
                       "options": ["bind", "rw"]}),
    );
    let out = ctx.run(&b);
    out.ok();
    assert_eq!(lines(&out.stdout), ["input"], "{out}");
    assert_eq!(
        fs::read_to_string(host.join("out.txt")).unwrap(),
        "from-container\n"
    );
    ctx.assert_nothing_left(&b);
}

#[test]
fn default_dev_has_the_standard_nodes() {
    let ctx = Ctx::new("default_dev_standard_nodes");
    let script = r#"
for f in null zero full random urandom tty; do
  if [ -c /dev/$f ]; then echo "$f=$(stat -c %t:%T /dev/$f)"; else echo "$f=missing"; fi
done
for l in ptmx fd stdin stdout stderr; do echo "$l->$(readlink /dev/$l)"; done
[ -c /dev/pts/ptmx ] && echo pts/ptmx=char
[ -d /dev/shm ] && echo shm=dir
[ -e /dev/mem ] || echo mem=absent
echo x > /dev/null && echo null=writable
echo x > /dev/full || echo full=ENOSPC
echo "zero=$(head -c 3 /dev/zero | od -An -tx1 | tr -d ' ')"
"#;
    let b = ctx.bundle(&["sh", "-c", script]);
    let out = ctx.run(&b);
    out.ok();
    assert_eq!(
        lines(&out.stdout),
        [
            "null=1:3",
            "zero=1:5",
            "full=1:7",
            "random=1:8",
            "urandom=1:9",
            "tty=5:0",
            "ptmx->pts/ptmx",
            "fd->/proc/self/fd",
            "stdin->/proc/self/fd/0",
            "stdout->/proc/self/fd/1",
            "stderr->/proc/self/fd/2",
            "pts/ptmx=char",
            "shm=dir",
            "mem=absent",
            "null=writable",
            "full=ENOSPC",
            "zero=000000",
        ],
        "{out}"
    );
    out.stderr_has("No space left on device");
}

#[test]
fn linux_devices_creates_the_device_node() {
    let ctx = Ctx::new("linux_devices_creates_node");
    let mut b = ctx.bundle(&[
        "sh",
        "-c",
        "stat -c '%F %t:%T %a %u:%g' /dev/berth-null && echo hi > /dev/berth-null && echo write=ok",
    ]);
    // Others may write: the container's root has no CAP_DAC_OVERRIDE with the default caps.
    b.config["linux"]["devices"] = json!([{
        "path": "/dev/berth-null", "type": "c", "major": 1, "minor": 3,
        "fileMode": 0o646, "uid": 12, "gid": 34
    }]);
    let out = ctx.run(&b);
    out.ok();
    assert_eq!(
        lines(&out.stdout),
        ["character special file 1:3 646 12:34", "write=ok"],
        "{out}"
    );
}

/// A private rootfs whose `/escape` is a symlink to an (empty) host directory, and a bind
/// mount (rw, of a host dir holding `marker`) at `/escape/sub`.
fn symlinked_destination(ctx: &Ctx) -> (Bundle, std::path::PathBuf, std::path::PathBuf) {
    let host_target = ctx.new_dir("escape-target");
    let source = ctx.new_dir("mount-source");
    fs::write(source.join("marker"), "from-source\n").unwrap();
    let mut b = ctx.private_bundle(&[
        "sh",
        "-c",
        "cat /escape/sub/marker && echo inner > /escape/sub/written",
    ]);
    symlink(&host_target, b.rootfs.join("escape")).unwrap();
    b.add_mount(
        json!({"destination": "/escape/sub", "type": "bind", "source": source,
                       "options": ["bind", "rw"]}),
    );
    (b, host_target, source)
}

/// Whatever the runtime does with a mount destination that crosses a symlink pointing out of
/// the rootfs, it must not create, write or mount anything on the host path.
#[test]
fn symlink_mount_destination_never_touches_the_host() {
    let ctx = Ctx::new("symlink_mount_never_touches_host");
    let (b, host_target, _) = symlinked_destination(&ctx);
    let out = ctx.run(&b);
    let host_entries: Vec<_> = fs::read_dir(&host_target)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        host_entries.is_empty(),
        "the runtime wrote through the symlink onto the host: {} now holds {host_entries:?}\n{out}",
        host_target.display()
    );
    assert!(
        mounts_under(&host_target).is_empty(),
        "something is mounted on the host dir\n{out}"
    );
    ctx.assert_nothing_left(&b);
}

/// runc's behaviour: the symlink is resolved as if the rootfs were `/`, so the mount lands at
/// `rootfs/<host dir>/sub` (created as needed) and the container sees it through `/escape`.
#[test]
fn symlink_mount_destination_lands_inside_the_rootfs() {
    let ctx = Ctx::new("symlink_mount_lands_inside");
    let (b, host_target, source) = symlinked_destination(&ctx);
    let out = ctx.run(&b);
    out.ok();
    assert_eq!(lines(&out.stdout), ["from-source"], "{out}");
    assert_eq!(
        fs::read_to_string(source.join("written")).unwrap(),
        "inner\n"
    );
    let inside = b
        .rootfs
        .join(host_target.strip_prefix("/").unwrap())
        .join("sub");
    assert!(
        inside.is_dir(),
        "the mount point should have been created inside the rootfs at {}",
        inside.display()
    );
    assert_eq!(fs::read_dir(&host_target).unwrap().count(), 0);
    ctx.assert_nothing_left(&b);
}

#[test]
fn no_pivot_runs_in_the_rootfs() {
    let ctx = Ctx::new("no_pivot_runs_in_rootfs");
    let b = ctx.private_bundle(&[
        "sh",
        "-c",
        "cat /marker.txt; cat /proc/1/comm; touch /x || echo ro-root",
    ]);
    fs::write(b.rootfs.join("marker.txt"), "in-the-rootfs\n").unwrap();
    let created = ctx.create_with(&b, &["--no-pivot"]);
    created.ok();
    ctx.start(&b.id).ok();
    ctx.wait_status(&b.id, "stopped");
    assert_eq!(
        lines(&created.stdout_now()),
        ["in-the-rootfs", "sh", "ro-root"],
        "stderr: {}",
        created.stderr_now()
    );
    ctx.delete(&b.id).ok();
    ctx.assert_nothing_left(&b);
}

#[test]
fn sysctl_is_applied_in_the_container_namespace() {
    let ctx = Ctx::new("sysctl_applied_in_netns");
    let host_before = fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    let want = if host_before.trim() == "1" { "0" } else { "1" };
    let mut b = ctx.bundle(&["cat", "/proc/sys/net/ipv4/ip_forward"]);
    b.config["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": want});
    let out = ctx.run(&b);
    out.ok();
    assert_eq!(lines(&out.stdout), [want], "{out}");
    assert_eq!(
        fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap(),
        host_before,
        "the host's sysctl changed"
    );
}

#[test]
fn rlimit_nofile_is_applied() {
    let ctx = Ctx::new("rlimit_nofile_is_applied");
    let mut b = ctx.bundle(&["sh", "-c", "ulimit -n; ulimit -H -n"]);
    b.config["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "hard": 8192, "soft": 4096}]);
    let out = ctx.run(&b);
    out.ok();
    assert_eq!(lines(&out.stdout), ["4096", "8192"], "{out}");
}

#[test]
fn rlimit_above_the_host_hard_limit_fails_clearly() {
    let ctx = Ctx::new("rlimit_above_host_hard_limit");
    if have_cap_sys_resource() {
        eprintln!("skipped: with CAP_SYS_RESOURCE the hard limit can be raised");
        return;
    }
    let (_, hard) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .expect("getrlimit");
    let above = 1_048_576u64.max(hard.saturating_add(1));
    let mut b = ctx.private_bundle(&["true"]);
    b.config["process"]["rlimits"] =
        json!([{"type": "RLIMIT_NOFILE", "hard": above, "soft": above}]);
    let out = ctx.create(&b);
    out.failed().stderr_has("RLIMIT_NOFILE");
    ctx.assert_nothing_left(&b);
}

#[test]
fn process_user_and_additional_gids() {
    let ctx = Ctx::new("process_user_and_additional_gids");
    let mut b = ctx.bundle(&[
        "sh",
        "-c",
        "id; id -u; id -g; grep '^Groups:' /proc/self/status",
    ]);
    b.config["process"]["user"] = json!({"uid": 1000, "gid": 1000, "additionalGids": [10]});
    let out = ctx.run(&b);
    out.ok();
    let l: Vec<String> = out.stdout.lines().map(squash_ws).collect();
    assert_eq!(
        l,
        ["uid=1000 gid=1000 groups=10", "1000", "1000", "Groups: 10"],
        "{out}"
    );
}

fn status_field(status: &str, name: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .unwrap_or_else(|| panic!("no {name} in:\n{status}"))
        .trim()
        .to_string()
}

#[test]
fn capabilities_and_no_new_privileges_are_applied() {
    let ctx = Ctx::new("capabilities_and_no_new_privs");
    // The default config: CAP_AUDIT_WRITE (29), CAP_KILL (5), CAP_NET_BIND_SERVICE (10).
    let b = ctx.bundle(&["cat", "/proc/self/status"]);
    let out = ctx.run(&b);
    out.ok();
    let want = format!("{:016x}", (1u64 << 29) | (1 << 5) | (1 << 10));
    for field in ["CapEff:", "CapPrm:", "CapBnd:"] {
        assert_eq!(status_field(&out.stdout, field), want, "{field}\n{out}");
    }
    assert_eq!(status_field(&out.stdout, "NoNewPrivs:"), "1", "{out}");
}

/// DESIGN.md: "all capabilities" means all that the host's bounding set holds (this VM lacks
/// CAP_SYS_RESOURCE, where runc fails with "unable to apply caps").
#[test]
fn all_capabilities_are_capped_by_the_host_bounding_set() {
    let ctx = Ctx::new("all_caps_capped_by_host_bounding_set");
    let all: Vec<&str> = vec![
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_DAC_READ_SEARCH",
        "CAP_FOWNER",
        "CAP_FSETID",
        "CAP_KILL",
        "CAP_SETGID",
        "CAP_SETUID",
        "CAP_SETPCAP",
        "CAP_LINUX_IMMUTABLE",
        "CAP_NET_BIND_SERVICE",
        "CAP_NET_BROADCAST",
        "CAP_NET_ADMIN",
        "CAP_NET_RAW",
        "CAP_IPC_LOCK",
        "CAP_IPC_OWNER",
        "CAP_SYS_MODULE",
        "CAP_SYS_RAWIO",
        "CAP_SYS_CHROOT",
        "CAP_SYS_PTRACE",
        "CAP_SYS_PACCT",
        "CAP_SYS_ADMIN",
        "CAP_SYS_BOOT",
        "CAP_SYS_NICE",
        "CAP_SYS_RESOURCE",
        "CAP_SYS_TIME",
        "CAP_SYS_TTY_CONFIG",
        "CAP_MKNOD",
        "CAP_LEASE",
        "CAP_AUDIT_WRITE",
        "CAP_AUDIT_CONTROL",
        "CAP_SETFCAP",
        "CAP_MAC_OVERRIDE",
        "CAP_MAC_ADMIN",
        "CAP_SYSLOG",
        "CAP_WAKE_ALARM",
        "CAP_BLOCK_SUSPEND",
        "CAP_AUDIT_READ",
        "CAP_PERFMON",
        "CAP_BPF",
        "CAP_CHECKPOINT_RESTORE",
    ];
    let mut b = ctx.bundle(&["cat", "/proc/self/status"]);
    b.config["process"]["capabilities"] =
        json!({"bounding": all, "effective": all, "permitted": all});
    let out = ctx.run(&b);
    out.ok();
    let host = fs::read_to_string("/proc/self/status").unwrap();
    let host_bnd = status_field(&host, "CapBnd:");
    assert_eq!(status_field(&out.stdout, "CapBnd:"), host_bnd, "{out}");
    assert_eq!(status_field(&out.stdout, "CapEff:"), host_bnd, "{out}");
}

#[test]
fn cwd_and_env_are_applied() {
    let ctx = Ctx::new("cwd_and_env_are_applied");
    let mut b = ctx.private_bundle(&[
        "sh",
        "-c",
        &format!("pwd; echo \"$GREETING\"; echo \"host:${{{HOST_ONLY_VAR}:-unset}}\""),
    ]);
    mkdir_755(&b.rootfs.join("srv/app"));
    b.config["process"]["cwd"] = json!("/srv/app");
    b.add_env("GREETING=hello  world");
    let out = ctx.run(&b);
    out.ok();
    assert_eq!(
        lines(&out.stdout),
        ["/srv/app", "hello  world", "host:unset"],
        "{out}"
    );
}

/// As runc: a missing cwd is made inside the container, through a symlink the rootfs holds
/// (resolved in the container, not on the host), also under a read-only root.
#[test]
fn a_missing_cwd_is_made_inside_the_container() {
    let ctx = Ctx::new("missing_cwd_is_made");
    let mut b = ctx.private_bundle(&["pwd"]);
    // /tmp exists on the host and in the rootfs: the link must lead to the rootfs's.
    std::os::unix::fs::symlink("/tmp", b.rootfs.join("link")).unwrap();
    let work = format!("berth-cwd-{}", std::process::id());
    b.config["process"]["cwd"] = json!(format!("/link/{work}/sub"));
    b.config["root"]["readonly"] = json!(true);
    let out = ctx.run(&b);
    out.ok();
    assert_eq!(lines(&out.stdout), [format!("/tmp/{work}/sub")], "{out}");
    assert!(
        !Path::new("/tmp").join(&work).exists(),
        "the cwd was made on the host"
    );
    let inside = b.rootfs.join("tmp").join(&work).join("sub");
    assert!(inside.is_dir(), "{} was not made", inside.display());
}

/// Reads everything the pty master yields until `done(output)` or EOF/EIO or the deadline.
fn read_master(master: &OwnedFd, timeout: Duration, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + timeout;
    let mut acc = Vec::new();
    loop {
        let text = String::from_utf8_lossy(&acc).into_owned();
        let left = deadline.saturating_duration_since(Instant::now());
        if done(&text) || left.is_zero() {
            return text;
        }
        let mut fds = [PollFd::new(
            std::os::fd::AsFd::as_fd(master),
            PollFlags::POLLIN,
        )];
        let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => panic!("poll: {e}"),
        }
        let mut buf = [0u8; 4096];
        match nix::unistd::read(master, &mut buf) {
            Ok(0) | Err(nix::errno::Errno::EIO) => {
                return String::from_utf8_lossy(&acc).into_owned()
            }
            Ok(n) => acc.extend_from_slice(&buf[..n]),
            Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => {}
            Err(e) => panic!("read pty master: {e}"),
        }
    }
}

/// One `recvmsg`: (payload bytes, fds). `Ok(None)` at EOF.
fn recv_one(conn: &std::os::unix::net::UnixStream) -> nix::Result<Option<(usize, Vec<RawFd>)>> {
    let mut buf = [0u8; 4096];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; 8]);
    let msg = recvmsg::<()>(
        conn.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    let mut fds = Vec::new();
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(f) = c {
            fds.extend(f);
        }
    }
    if msg.bytes == 0 && fds.is_empty() {
        return Ok(None);
    }
    Ok(Some((msg.bytes, fds)))
}

#[test]
fn terminal_master_arrives_over_the_console_socket() {
    let ctx = Ctx::new("terminal_over_console_socket");
    let sock = ctx.path().join("console.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    // The program stays alive after printing, so that a console socket leaked into it would
    // keep the connection open.
    let mut b = ctx.bundle(&["sh", "-c", "tty; echo hi; exec sleep 30"]);
    b.config["process"]["terminal"] = json!(true);
    ctx.create_with(&b, &["--console-socket", sock.to_str().unwrap()])
        .ok();

    listener.set_nonblocking(true).unwrap();
    let (conn, _) = wait_until(STATE_TIMEOUT, "the runtime to connect", || {
        listener.accept().ok()
    });
    conn.set_nonblocking(false).unwrap();
    conn.set_read_timeout(Some(STATE_TIMEOUT)).unwrap();

    let first = recv_one(&conn)
        .expect("recvmsg on the console socket")
        .expect("the console socket closed without a message");
    // SAFETY: the fds were just received and are owned by nobody else.
    let owned: Vec<OwnedFd> = first
        .1
        .iter()
        .map(|fd| unsafe { OwnedFd::from_raw_fd(*fd) })
        .collect();
    assert_eq!(
        owned.len(),
        1,
        "the message should carry exactly one fd: {first:?}"
    );
    let master = &owned[0];
    let mut ptn: libc::c_uint = 0;
    // SAFETY: TIOCGPTN writes one c_uint.
    let rc = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTN, &mut ptn) };
    assert_eq!(rc, 0, "the received fd is not a pty master");

    ctx.start(&b.id).ok();
    let text = read_master(master, STATE_TIMEOUT, |t| {
        t.contains("/dev/pts/0") && t.contains("hi\r\n")
    });
    assert!(
        text.contains("/dev/pts/0"),
        "tty should be /dev/pts/0: {text:?}"
    );
    assert!(
        text.lines().any(|l| l.trim_end() == "hi"),
        "expected 'hi': {text:?}"
    );

    // The user program runs: nothing but it can hold the connection now, and it must not.
    let mut extra = Vec::new();
    loop {
        match recv_one(&conn) {
            Ok(None) => break,
            Ok(Some(m)) => {
                // SAFETY: as above.
                extra.extend(m.1.iter().map(|fd| unsafe { OwnedFd::from_raw_fd(*fd) }));
                assert!(m.1.is_empty(), "a second SCM_RIGHTS message arrived: {m:?}");
            }
            Err(e) => panic!(
                "the console socket is still open while the container runs ({e}): \
                 leaked into the container?"
            ),
        }
    }
    ctx.kill_and_delete(&b.id);
    ctx.assert_nothing_left(&b);
}

/// `linux.rootfsPropagation` is the propagation of the container's `/`: shared gives it a
/// peer group (pivot_root itself needs a private parent, which the runtime arranges).
#[test]
fn rootfs_propagation_is_applied_to_the_root_mount() {
    let ctx = Ctx::new("rootfs_propagation_is_applied");
    for (propagation, shared) in [("rshared", true), ("rprivate", false)] {
        let mut b = ctx.bundle(&["awk", "$5 == \"/\" { print }", "/proc/self/mountinfo"]);
        b.config["linux"]["rootfsPropagation"] = json!(propagation);
        let out = ctx.run(&b);
        out.ok();
        assert_eq!(
            out.stdout.contains(" shared:"),
            shared,
            "{propagation}: {out}"
        );
        ctx.assert_nothing_left(&b);
    }
}

/// An image whose /dev/null is a symlink to a host-wide proc file: masking binds /dev/null
/// over files, so following the link would hand the container a writable alias of
/// /proc/sys/kernel/core_pattern. The runtime must refuse the rootfs instead.
#[test]
fn dev_null_symlink_in_the_image_is_refused() {
    let ctx = Ctx::new("dev_null_symlink_is_refused");
    let mut b = ctx.private_bundle(&["cat", "/proc/timer_list"]);
    let dev = b.rootfs.join("dev");
    fs::create_dir_all(&dev).unwrap();
    symlink("/proc/sys/kernel/core_pattern", dev.join("null")).unwrap();
    // No tmpfs on /dev: the image's own /dev is what the container gets.
    let mounts = b.config["mounts"].as_array_mut().unwrap();
    mounts.retain(|m| m["destination"] != "/dev");
    for m in mounts.iter_mut() {
        if m["destination"]
            .as_str()
            .is_some_and(|d| d.starts_with("/dev/"))
        {
            m["options"] = json!(["nosuid", "noexec"]);
        }
    }
    b.config["linux"]["maskedPaths"] = json!(["/proc/timer_list"]);
    let before = fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap();
    let out = ctx.run(&b);
    out.failed().stderr_has("/dev/null");
    assert_eq!(
        fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap(),
        before
    );
    ctx.assert_nothing_left(&b);
}
