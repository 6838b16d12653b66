//! The device cgroup: a container may not open device nodes its rules deny, even one it made
//! with mknod and with the capability the device itself asks for; on cgroup v2 the rules are
//! an eBPF program attached to the cgroup (tested on any cgroup2 mount, with or without
//! controllers).

mod common;

use std::ffi::CString;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use berth_runtime::cgroups::v2::V2Manager;
use berth_runtime::cgroups::{bpf, devices, CgroupManager};
use common::*;
use oci_spec::runtime::{LinuxDeviceCgroup, LinuxResources};
use serde_json::json;

/// mknod a /dev/mem (c 1:1) and read a byte of it, with CAP_MKNOD and CAP_SYS_RAWIO (which
/// opening /dev/mem needs besides the device cgroup's permission).
const MEM_PROBE: &str = "mknod /dev/mem c 1 1 || echo mknod-failed; \
     head -c1 /dev/mem >/dev/null && echo mem=opened; echo done";

fn mem_probe_bundle(ctx: &Ctx) -> Bundle {
    let mut b = ctx.bundle(&["sh", "-c", MEM_PROBE]);
    let caps = json!([
        "CAP_AUDIT_WRITE",
        "CAP_KILL",
        "CAP_NET_BIND_SERVICE",
        "CAP_MKNOD",
        "CAP_SYS_RAWIO"
    ]);
    for set in ["bounding", "effective", "permitted"] {
        b.config["process"]["capabilities"][set] = caps.clone();
    }
    b
}

/// The default rules (deny all, then what every container needs) refuse /dev/mem: mknod
/// works (`c *:* m`), opening what it made does not (EPERM). The same container with `c 1:1 r`
/// allowed gets past the cgroup, so the refusal is the device cgroup's.
#[test]
fn default_rules_deny_opening_dev_mem() {
    let ctx = Ctx::new("default_rules_deny_dev_mem");
    let b = mem_probe_bundle(&ctx);
    let out = ctx.run(&b);
    assert!(out.stdout.contains("done"), "{out}");
    assert!(!out.stdout.contains("mknod-failed"), "{out}");
    // Without the device cgroup the open reaches the driver (opened, or ENXIO on a kernel
    // without /dev/mem): EPERM is the cgroup's refusal.
    assert!(
        !out.stdout.contains("mem=opened"),
        "/dev/mem was opened:\n{out}"
    );
    assert!(out.stderr.contains("Operation not permitted"), "{out}");
    ctx.assert_nothing_left(&b);

    let mut allowed = mem_probe_bundle(&ctx);
    allowed.resources()["devices"] = json!([
        {"allow": false, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "minor": 1, "access": "r"}
    ]);
    let out = ctx.run(&allowed);
    assert!(out.stdout.contains("done"), "{out}");
    assert!(!out.stderr.contains("Operation not permitted"), "{out}");
    ctx.assert_nothing_left(&allowed);
}

/// A cgroup2 mount: /sys/fs/cgroup on a pure v2 host, /sys/fs/cgroup/unified on a hybrid one.
fn cgroup2_mount() -> PathBuf {
    hierarchies()
        .into_iter()
        .find(|h| h.v2)
        .map(|h| h.mount)
        .expect("no cgroup2 hierarchy mounted under /sys/fs/cgroup")
}

/// A cgroup of the test's own in the cgroup2 hierarchy, removed on drop.
struct TestCgroup {
    manager: V2Manager,
    dir: PathBuf,
}

impl TestCgroup {
    fn new(name: &str) -> TestCgroup {
        let mount = cgroup2_mount();
        let rel = format!("berth-test-{name}-{}", std::process::id());
        let dir = mount.join(&rel);
        remove_cgroup_tree(&dir);
        let manager = V2Manager::new(&mount, Path::new(&rel)).unwrap();
        manager.create().unwrap();
        TestCgroup { manager, dir }
    }

    fn apply(&self, rules: serde_json::Value) {
        let rules: Vec<LinuxDeviceCgroup> = serde_json::from_value(rules).unwrap();
        let mut resources = LinuxResources::default();
        resources.set_devices(Some(rules));
        let completed = devices::complete(&resources).unwrap();
        self.manager.apply(&completed).unwrap();
    }

    fn programs(&self) -> Vec<u32> {
        let dir = OwnedFd::from(std::fs::File::open(&self.dir).unwrap());
        bpf::attached(&dir).unwrap()
    }

    /// `sh -c script` run inside the cgroup (it moves itself there before exec).
    fn sh(&self, script: &str) -> (String, String) {
        let procs = CString::new(self.dir.join("cgroup.procs").to_str().unwrap()).unwrap();
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script]);
        // SAFETY: only open/write/close, async-signal-safe, between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 || libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::close(fd);
                Ok(())
            })
        };
        let out = cmd.output().unwrap();
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let _ = self.manager.remove();
        remove_cgroup_tree(&self.dir);
    }
}

/// Device nodes made outside the cgroup (where nothing restricts mknod).
fn make_nodes(dir: &Path) {
    for (name, kind, major, minor) in [
        ("mem", libc::S_IFCHR, 1, 1),
        ("null", libc::S_IFCHR, 1, 3),
        ("zero", libc::S_IFCHR, 1, 5),
        ("loop", libc::S_IFBLK, 7, 0),
    ] {
        nix::sys::stat::mknod(
            &dir.join(name),
            nix::sys::stat::SFlag::from_bits_truncate(kind),
            nix::sys::stat::Mode::from_bits_truncate(0o666),
            nix::sys::stat::makedev(major, minor),
        )
        .unwrap();
    }
}

/// `NAME=eperm` when the device cgroup refuses to open NAME, `NAME=passed` when it lets the
/// open through (the driver may still fail it: this kernel has no /dev/mem driver, ENXIO).
const PROBE: &str = "probe() { \
       if head -c1 $1 2>&1 >/dev/null | grep -q 'not permitted'; \
       then echo $1=eperm; else echo $1=passed; fi; }; \
     for d in mem null zero loop; do probe $d; done; \
     rm -f made; mknod made c 1 1 && echo mknod=ok; probe made; \
     if (echo x > mem) 2>&1 | grep -q 'not permitted'; \
     then echo mem-write=eperm; else echo mem-write=passed; fi";

/// The default rules as an eBPF program: /dev/mem (also one made by mknod in the cgroup) and
/// a block device are refused, /dev/null and /dev/zero are not; an update replaces the
/// program (one attached, the new rules apply).
#[test]
fn v2_device_program_enforces_and_is_replaced_on_update() {
    let tmp = tempfile::tempdir().unwrap();
    make_nodes(tmp.path());
    let cg = TestCgroup::new("v2-device-program");
    let in_tmp = |script: &str| format!("cd {} && {script}", tmp.path().display());

    // Before any program: everything opens (the control).
    let (out, err) = cg.sh(&in_tmp(PROBE));
    for want in [
        "mem=passed",
        "loop=passed",
        "made=passed",
        "mem-write=passed",
    ] {
        assert!(out.contains(want), "{want}:\n{out}{err}");
    }

    cg.apply(json!([{"allow": false, "access": "rwm"}]));
    assert_eq!(cg.programs().len(), 1);
    let (out, err) = cg.sh(&in_tmp(PROBE));
    for want in [
        "mem=eperm",
        "null=passed",
        "zero=passed",
        "loop=eperm",
        "mknod=ok",
        "made=eperm",
    ] {
        assert!(out.contains(want), "{want}:\n{out}{err}");
    }

    // Update: c 1:1 readable, not writable. Were the first program still attached, it would
    // refuse the read (every attached program must allow).
    cg.apply(json!([
        {"allow": false, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "minor": 1, "access": "r"}
    ]));
    assert_eq!(cg.programs().len(), 1, "the old program is still attached");
    let (out, err) = cg.sh(&in_tmp(PROBE));
    for want in [
        "mem=passed",
        "null=passed",
        "zero=passed",
        "loop=eperm",
        "mem-write=eperm",
    ] {
        assert!(out.contains(want), "{want}:\n{out}{err}");
    }
    drop(cg);
}

/// The program's fd path is the cgroup's directory: a cgroup that is not cgroup2 (or does
/// not exist) is an error naming it, not a silent no-op.
#[test]
fn v2_device_program_on_a_missing_cgroup_is_an_error() {
    let err = bpf::apply(Path::new("/sys/fs/cgroup/berth-no-such-cgroup"), &[]).unwrap_err();
    assert!(
        format!("{err:#}").contains("berth-no-such-cgroup"),
        "{err:#}"
    );
}

/// A long rule list (as with many `--device`s) loads and still decides by its last match.
#[test]
fn v2_device_program_with_a_thousand_rules() {
    let tmp = tempfile::tempdir().unwrap();
    make_nodes(tmp.path());
    let cg = TestCgroup::new("v2-device-thousand-rules");
    let mut rules = vec![json!({"allow": false, "access": "rwm"})];
    for minor in 1000..2000 {
        rules.push(json!({"allow": true, "type": "c", "major": 1, "minor": minor, "access": "rw"}));
    }
    rules.push(json!({"allow": true, "type": "c", "major": 1, "minor": 1, "access": "r"}));
    cg.apply(serde_json::Value::Array(rules));
    let (out, err) = cg.sh(&format!("cd {} && {PROBE}", tmp.path().display()));
    for want in ["mem=passed", "null=passed", "loop=eperm", "mem-write=eperm"] {
        assert!(out.contains(want), "{want}:\n{out}{err}");
    }
}
