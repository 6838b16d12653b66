//! `linux.seccomp`: the profile in config.json is compiled with libseccomp and loaded before
//! the user's program runs; actions, errno values, argument conditions, flags and
//! architectures take effect; a profile the runtime cannot honour fails `create` with a
//! message naming what, leaving nothing behind.

mod common;

use common::*;
use serde_json::{json, Value};

/// The architectures a profile for x86-64 lists (what moby's archMap expands to).
fn arches() -> Value {
    json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"])
}

/// Allow everything but the given rules.
fn allow_but(rules: Value) -> Value {
    json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": arches(), "syscalls": rules})
}

fn deny_mkdir() -> Value {
    allow_but(json!([{
        "names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EPERM
    }]))
}

/// mkdir fails with EPERM under the filter while other syscalls (writes, reads) work, with
/// and without no_new_privileges (the filter is then loaded at different points).
fn mkdir_denied(name: &str, no_new_privileges: bool) {
    let ctx = Ctx::new(name);
    let mut b = ctx.bundle(&[
        "sh",
        "-c",
        "mkdir /dev/shm/made; echo mkdir=$?; echo hi > /dev/shm/file && cat /dev/shm/file; \
         grep '^Seccomp:' /proc/self/status",
    ]);
    b.config["process"]["noNewPrivileges"] = json!(no_new_privileges);
    b.config["linux"]["seccomp"] = deny_mkdir();
    let out = ctx.run(&b);
    out.ok();
    out.stderr_has("Operation not permitted");
    let lines = lines(&out.stdout);
    assert!(lines.contains(&"mkdir=1".to_string()), "{out}");
    assert!(lines.contains(&"hi".to_string()), "{out}");
    assert!(
        lines.iter().any(|l| squash_ws(l) == "Seccomp: 2"),
        "the process is not in seccomp filter mode:\n{out}"
    );
}

#[test]
fn seccomp_errno_rule_denies_mkdir_with_no_new_privileges() {
    mkdir_denied("seccomp_errno_rule_denies_mkdir_with_nnp", true);
}

#[test]
fn seccomp_errno_rule_denies_mkdir_without_no_new_privileges() {
    mkdir_denied("seccomp_errno_rule_denies_mkdir_without_nnp", false);
}

#[test]
fn seccomp_without_profile_leaves_the_process_unfiltered() {
    let ctx = Ctx::new("seccomp_without_profile");
    let b = ctx.bundle(&[
        "sh",
        "-c",
        "mkdir /dev/shm/made && grep '^Seccomp:' /proc/self/status",
    ]);
    let out = ctx.run(&b);
    out.ok();
    assert_eq!(
        lines(&out.stdout)
            .iter()
            .map(|l| squash_ws(l))
            .collect::<Vec<_>>(),
        ["Seccomp: 0"],
        "{out}"
    );
}

#[test]
fn seccomp_default_errno_ret_applies_to_the_default_action() {
    let ctx = Ctx::new("seccomp_default_errno_ret");
    let mut b = ctx.bundle(&["sh", "-c", "mkdir /dev/shm/made; echo mkdir=$?"]);
    // Everything busybox needs is allowed by an ALLOW rule; mkdir falls to the default.
    b.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": libc::EACCES,
        "architectures": arches(),
        "syscalls": [{"names": busybox_syscalls(), "action": "SCMP_ACT_ALLOW"}]
    });
    let out = ctx.run(&b);
    out.ok();
    out.stderr_has("Permission denied");
    assert_eq!(lines(&out.stdout), ["mkdir=1"], "{out}");
}

/// What busybox's sh and mkdir use (and the runtime between loading the filter and exec),
/// without mkdir itself; names this architecture lacks are skipped by the runtime.
fn busybox_syscalls() -> Value {
    json!([
        "read",
        "write",
        "open",
        "openat",
        "close",
        "stat",
        "fstat",
        "lstat",
        "newfstatat",
        "statx",
        "mmap",
        "munmap",
        "mprotect",
        "brk",
        "rt_sigaction",
        "rt_sigprocmask",
        "rt_sigreturn",
        "ioctl",
        "access",
        "execve",
        "exit",
        "exit_group",
        "wait4",
        "fork",
        "vfork",
        "clone",
        "clone3",
        "getpid",
        "getppid",
        "getuid",
        "geteuid",
        "getgid",
        "getegid",
        "dup2",
        "dup3",
        "fcntl",
        "arch_prctl",
        "set_tid_address",
        "set_robust_list",
        "rseq",
        "prlimit64",
        "getrandom",
        "uname",
        "readlink",
        "getcwd",
        "chdir",
        "close_range",
        "capget",
        "capset",
        "prctl",
        "setresuid",
        "setresgid",
        "setgroups",
        "umask",
        "statfs",
        "fstatfs",
        "futex",
        "lseek",
        "pread64",
        "readlinkat",
        "faccessat",
        "faccessat2",
        "getdents64",
        "sigaltstack",
        "poll",
        "ppoll",
        "pselect6",
        "select",
        "kill",
        "tgkill",
        "gettid",
        "sched_getaffinity",
        "setpgid",
        "getpgrp",
        "getpgid",
        "mremap",
        "madvise"
    ])
}

/// A condition on an argument: kill(pid, SIGUSR1) is denied, kill(pid, 0) is not; a
/// MASKED_EQ condition on the same syscall denies the signals with bit 8 set (SIGFPE 8,
/// SIGUSR2 12) and not SIGHUP (1). Two conditions on one argument are separate rules.
#[test]
fn seccomp_argument_conditions_select_the_calls() {
    let ctx = Ctx::new("seccomp_argument_conditions");
    let mut b = ctx.bundle(&[
        "sh",
        "-c",
        "trap '' HUP USR1 USR2; \
         kill -0 $$ && echo zero=ok; kill -HUP $$ && echo hup=ok; \
         kill -USR1 $$ || echo usr1=denied; kill -USR2 $$ || echo usr2=denied",
    ]);
    b.config["linux"]["seccomp"] = allow_but(json!([
        {"names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EPERM,
         "args": [{"index": 1, "value": libc::SIGUSR1, "op": "SCMP_CMP_EQ"}]},
        {"names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EPERM,
         "args": [{"index": 1, "value": 8, "valueTwo": 8, "op": "SCMP_CMP_MASKED_EQ"}]}
    ]));
    let out = ctx.run(&b);
    out.ok();
    assert_eq!(
        lines(&out.stdout),
        ["zero=ok", "hup=ok", "usr1=denied", "usr2=denied"],
        "{out}"
    );
    out.stderr_has("Operation not permitted");
}

/// SCMP_ACT_KILL_PROCESS kills the caller with SIGSYS; LOG and the TSYNC/LOG flags load.
#[test]
fn seccomp_kill_action_kills_with_sigsys() {
    let ctx = Ctx::new("seccomp_kill_action");
    let mut b = ctx.bundle(&["uname"]);
    let mut profile = allow_but(json!([
        {"names": ["uname"], "action": "SCMP_ACT_KILL_PROCESS"},
        {"names": ["getcwd"], "action": "SCMP_ACT_LOG"}
    ]));
    profile["flags"] = json!(["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG"]);
    b.config["linux"]["seccomp"] = profile;
    let out = ctx.run(&b);
    assert_eq!(
        out.code(),
        Some(128 + libc::SIGSYS),
        "uname should die of SIGSYS:\n{out}"
    );
    assert!(out.stdout.is_empty(), "{out}");
}

/// `create` of a bundle whose profile cannot be honoured fails naming the problem and
/// leaves no state dir, cgroup, mount or process.
#[track_caller]
fn create_refused(name: &str, profile: Value, needles: &[&str]) {
    let ctx = Ctx::new(name);
    let mut b = ctx.bundle(&["true"]);
    b.config["linux"]["seccomp"] = profile;
    let out = ctx.create(&b);
    out.failed();
    for n in needles {
        out.stderr_has(n);
    }
    ctx.assert_nothing_left(&b);
    ctx.rt(&["state", &b.id]).failed();
}

#[test]
fn seccomp_unknown_action_is_refused() {
    create_refused(
        "seccomp_unknown_action",
        allow_but(json!([{"names": ["mkdir"], "action": "SCMP_ACT_BOGUS"}])),
        &["linux.seccomp.syscalls[0].action", "SCMP_ACT_BOGUS"],
    );
}

#[test]
fn seccomp_unknown_architecture_is_refused() {
    create_refused(
        "seccomp_unknown_arch",
        json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_VAX"]}),
        &["linux.seccomp.architectures", "SCMP_ARCH_VAX"],
    );
}

#[test]
fn seccomp_notify_is_refused_as_unsupported() {
    create_refused(
        "seccomp_notify_refused",
        allow_but(json!([{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}])),
        &[
            "linux.seccomp",
            "syscalls[0]",
            "SCMP_ACT_NOTIFY",
            "not supported",
        ],
    );
}

#[test]
fn seccomp_bad_argument_index_is_refused() {
    create_refused(
        "seccomp_bad_arg_index",
        allow_but(json!([{"names": ["kill"], "action": "SCMP_ACT_ERRNO",
            "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}])),
        &["linux.seccomp", "syscalls[0]", "index 6"],
    );
}

#[test]
fn seccomp_unknown_flag_is_refused() {
    create_refused(
        "seccomp_unknown_flag",
        json!({"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_BOGUS"]}),
        &["linux.seccomp.flags", "SECCOMP_FILTER_FLAG_BOGUS"],
    );
}

/// Syscall names this architecture does not have are skipped, as runc does.
#[test]
fn seccomp_unknown_syscall_names_are_skipped() {
    let ctx = Ctx::new("seccomp_unknown_syscall_names");
    let mut b = ctx.bundle(&["sh", "-c", "mkdir /dev/shm/made; echo mkdir=$?"]);
    b.config["linux"]["seccomp"] = allow_but(json!([{
        "names": ["no_such_syscall", "mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"
    }]));
    let out = ctx.run(&b);
    out.ok();
    assert_eq!(lines(&out.stdout), ["mkdir=1"], "{out}");
}

/// A compiled profile is cached in the runtime's root and reused; an entry that does not
/// hold exactly this profile (here: corrupted) is not used, and the container still gets
/// its filter.
#[test]
fn seccomp_compiled_filters_are_cached_by_profile() {
    let ctx = Ctx::new("seccomp_cached");
    let cache = ctx.root.join("seccomp~cache");
    let run = |ctx: &Ctx| {
        let mut b = ctx.bundle(&["sh", "-c", "mkdir /dev/shm/made; echo mkdir=$?"]);
        b.config["linux"]["seccomp"] = deny_mkdir();
        let out = ctx.run(&b);
        out.ok();
        assert_eq!(lines(&out.stdout), ["mkdir=1"], "{out}");
    };
    run(&ctx);
    let entries = || -> Vec<std::path::PathBuf> {
        std::fs::read_dir(&cache)
            .map(|d| d.map(|e| e.unwrap().path()).collect())
            .unwrap_or_default()
    };
    assert_eq!(entries().len(), 1, "one cache entry for one profile");
    run(&ctx);
    assert_eq!(entries().len(), 1, "the second run reused the entry");
    let entry = &entries()[0];
    let mut bytes = std::fs::read(entry).unwrap();
    // Whole instructions gone: still a program, but not the one that was cached.
    let last = bytes.len() - 16;
    bytes.truncate(last);
    std::fs::write(entry, bytes).unwrap();
    run(&ctx);
}
