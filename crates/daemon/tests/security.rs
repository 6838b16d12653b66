//! Docker's security profile on every container: moby's default seccomp profile (unless
//! `--privileged` or `--security-opt seccomp=unconfined`), custom profiles, the capabilities
//! deciding which rules apply, no-new-privileges, masked and read-only paths; through the
//! docker CLI, the berth CLI and the API.

mod common;

use common::{stderr, stdout, Daemon};

/// Prints the seccomp mode, then whether `unshare -U` (no capability needed, but denied by
/// the default profile) and `unshare -m` (needs CAP_SYS_ADMIN) work.
const PROBE: &str = "grep '^Seccomp:' /proc/self/status; \
    unshare -U true && echo userns=ok; unshare -m true && echo mountns=ok; true";

fn probe(d: &Daemon, cli: &str, opts: &[&str]) -> (String, String) {
    let mut args = vec!["run", "--rm"];
    args.extend_from_slice(opts);
    args.extend_from_slice(&["busybox", "sh", "-c", PROBE]);
    let out = if cli == "docker" {
        d.docker(&args)
    } else {
        d.berth(&args)
    };
    assert!(
        out.status.success(),
        "{cli} {args:?}: {}\nberthd log:\n{}",
        stderr(&out),
        d.log()
    );
    (squash(&stdout(&out)), stderr(&out))
}

fn squash(s: &str) -> String {
    s.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join("\n")
}

fn default_profile_and_its_opt_outs(cli: &str) {
    let d = Daemon::start_with_busybox(&format!("seccomp-{cli}"));
    // Default: filtered; unshare is denied by seccomp (EPERM) even for a user namespace.
    let (out, err) = probe(&d, cli, &[]);
    assert_eq!(out, "Seccomp: 2", "{err}");
    assert!(err.contains("Operation not permitted"), "{err}");
    // Unconfined: the user namespace needs no capability and now works; a mount namespace
    // still needs CAP_SYS_ADMIN, which the container lacks.
    let (out, err) = probe(&d, cli, &["--security-opt", "seccomp=unconfined"]);
    assert_eq!(out, "Seccomp: 0\nuserns=ok", "{err}");
    // CAP_SYS_ADMIN re-allows unshare in the default profile: both work, still filtered.
    let (out, err) = probe(&d, cli, &["--cap-add", "SYS_ADMIN"]);
    assert_eq!(out, "Seccomp: 2\nuserns=ok\nmountns=ok", "{err}");
    // Privileged: no filter at all.
    let (out, err) = probe(&d, cli, &["--privileged"]);
    assert_eq!(out, "Seccomp: 0\nuserns=ok\nmountns=ok", "{err}");
}

#[test]
fn default_seccomp_profile_and_opt_outs_with_docker_cli() {
    default_profile_and_its_opt_outs("docker");
}

#[test]
fn default_seccomp_profile_and_opt_outs_with_berth_cli() {
    default_profile_and_its_opt_outs("berth");
}

/// A profile in Docker's format denying mkdir, from a file the CLI reads and sends.
fn custom_profile(cli: &str) {
    let d = Daemon::start_with_busybox(&format!("seccomp-file-{cli}"));
    let file = d.dir.path().join("no-mkdir.json");
    std::fs::write(
        &file,
        r#"{
            "defaultAction": "SCMP_ACT_ALLOW",
            "archMap": [{"architecture": "SCMP_ARCH_X86_64",
                         "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]}],
            "syscalls": [
                {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
                 "comment": "no new directories"},
                {"names": ["chmod", "fchmodat"], "action": "SCMP_ACT_ERRNO",
                 "excludes": {"caps": ["CAP_FOWNER"]}}
            ]
        }"#,
    )
    .unwrap();
    let opt = format!("seccomp={}", file.display());
    let script = "mkdir /tmp/d; echo mkdir=$?; touch /tmp/f; chmod 600 /tmp/f; echo chmod=$?; \
                  grep '^Seccomp:' /proc/self/status";
    let run = |opts: &[&str]| {
        let mut args = vec!["run", "--rm"];
        args.extend_from_slice(opts);
        args.extend_from_slice(&["busybox", "sh", "-c", script]);
        if cli == "docker" {
            d.docker(&args)
        } else {
            d.berth(&args)
        }
    };
    let out = run(&["--security-opt", &opt]);
    assert!(out.status.success(), "{}\n{}", stderr(&out), d.log());
    // CAP_FOWNER is a default capability: the chmod rule is excluded.
    assert_eq!(
        squash(&stdout(&out)),
        "mkdir=1\nchmod=0\nSeccomp: 2",
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("Operation not permitted"));
    let out = run(&["--security-opt", &opt, "--cap-drop", "FOWNER"]);
    assert_eq!(
        squash(&stdout(&out)),
        "mkdir=1\nchmod=1\nSeccomp: 2",
        "{}",
        stderr(&out)
    );
    // A missing file is refused by the CLI, in the docker CLI's words.
    let out = run(&["--security-opt", "seccomp=/nonexistent/profile.json"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("opening seccomp profile (/nonexistent/profile.json) failed"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn custom_seccomp_profile_file_with_docker_cli() {
    custom_profile("docker");
}

#[test]
fn custom_seccomp_profile_file_with_berth_cli() {
    custom_profile("berth");
}

/// An exec'd process gets the container's filter (and none in an unconfined container).
#[test]
fn exec_gets_the_containers_seccomp_filter() {
    let d = Daemon::start_with_busybox("seccomp-exec");
    let confined = d.docker_ok(&["run", "-d", "busybox", "sleep", "300"]);
    let unconfined = d.docker_ok(&[
        "run",
        "-d",
        "--security-opt",
        "seccomp=unconfined",
        "busybox",
        "sleep",
        "300",
    ]);
    for (id, want) in [
        (confined.trim(), "Seccomp: 2"),
        (unconfined.trim(), "Seccomp: 0"),
    ] {
        for privileged in [&[][..], &["--privileged"][..]] {
            let mut args = vec!["exec"];
            args.extend_from_slice(privileged);
            args.extend_from_slice(&[id, "grep", "^Seccomp:", "/proc/self/status"]);
            assert_eq!(squash(&d.docker_ok(&args)), want, "{args:?}");
        }
    }
    let out = d.docker(&["exec", confined.trim(), "unshare", "-U", "true"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("Operation not permitted"),
        "{}",
        stderr(&out)
    );
    d.docker_ok(&["exec", unconfined.trim(), "unshare", "-U", "true"]);
    d.docker_ok(&["rm", "-f", confined.trim(), unconfined.trim()]);
}

#[test]
fn no_new_privileges_security_opt() {
    let d = Daemon::start_with_busybox("nnp");
    for (opts, want) in [
        (&[][..], "NoNewPrivs: 0"),
        (
            &["--security-opt", "no-new-privileges"][..],
            "NoNewPrivs: 1",
        ),
        (
            &["--security-opt", "no-new-privileges=true"][..],
            "NoNewPrivs: 1",
        ),
        (
            &["--security-opt", "no-new-privileges:false"][..],
            "NoNewPrivs: 0",
        ),
    ] {
        let mut args = vec!["run", "--rm"];
        args.extend_from_slice(opts);
        args.extend_from_slice(&["busybox", "grep", "^NoNewPrivs:", "/proc/self/status"]);
        assert_eq!(squash(&d.docker_ok(&args)), want, "{args:?}");
        let out = d.berth(&args);
        assert_eq!(
            squash(&stdout(&out)),
            want,
            "berth {args:?}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn invalid_security_opts_are_refused() {
    let d = Daemon::start_with_busybox("secopt-invalid");
    // The daemon's words, through the API.
    for (opt, message) in [
        ("apparmor=x", r#"invalid --security-opt 2: "apparmor=x""#),
        ("bogus", r#"invalid --security-opt 1: "bogus""#),
        // A CLI-side option: dockerd refuses it in SecurityOpt too.
        (
            "systempaths=unconfined",
            r#"invalid --security-opt 2: "systempaths=unconfined""#,
        ),
        (
            "no-new-privileges=maybe",
            r#"invalid --security-opt 2: "no-new-privileges=maybe""#,
        ),
        ("seccomp={not json", "Decoding seccomp profile failed"),
        (
            r#"seccomp={"defaultAction":"SCMP_ACT_NOPE"}"#,
            "Decoding seccomp profile failed: defaultAction",
        ),
    ] {
        let body = serde_json::json!({
            "Image": "busybox", "Cmd": ["true"], "HostConfig": {"SecurityOpt": [opt]}
        });
        let resp = d.request(
            "POST",
            "/containers/create",
            Some(body.to_string().as_bytes()),
        );
        assert_eq!(resp.status, 400, "{opt}: {}", resp.text());
        let got = resp.json()["message"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(got.contains(message), "{opt}: {got}");
    }
    assert_eq!(
        d.docker_ok(&["ps", "-aq"]).trim(),
        "",
        "a refused create left a container"
    );
    // The CLIs refuse an option without a value before sending anything.
    let out = d.docker(&[
        "run",
        "--rm",
        "--security-opt",
        "seccomp",
        "busybox",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr(&out).contains(r#"Invalid --security-opt: "seccomp""#),
        "{}",
        stderr(&out)
    );
    let out = d.berth(&[
        "run",
        "--rm",
        "--security-opt",
        "seccomp",
        "busybox",
        "true",
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(r#"Invalid --security-opt: "seccomp""#),
        "{}",
        stderr(&out)
    );
    // And the daemon's message reaches the user of the docker CLI.
    let out = d.docker(&[
        "run",
        "--rm",
        "--security-opt",
        "label=x",
        "busybox",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr(&out).contains(r#"invalid --security-opt 2: "label=x""#),
        "{}",
        stderr(&out)
    );
}

/// The rest of Docker's profile: masked and read-only paths, read-only /sys, and what
/// `--cap-add` and `--privileged` change.
#[test]
fn masked_readonly_paths_and_capabilities() {
    let d = Daemon::start_with_busybox("masked-paths");
    // (This kernel has no /proc/kcore or /proc/sysrq-trigger: the masks of files that exist.)
    let script = "echo interrupts=$(wc -c < /proc/interrupts) timers=$(wc -c < /proc/timer_list); \
        echo 1 > /proc/sys/vm/drop_caches || echo sys=ro; \
        touch /sys/kernel/x 2>/dev/null || echo sysfs=ro; \
        grep ^CapEff: /proc/self/status";
    let out = d.docker(&["run", "--rm", "busybox", "sh", "-c", script]);
    assert_eq!(
        squash(&stdout(&out)),
        "interrupts=0 timers=0\nsys=ro\nsysfs=ro\nCapEff: 00000000a80425fb",
        "{}",
        stderr(&out)
    );
    let out = d.docker_ok(&[
        "run",
        "--rm",
        "--cap-add",
        "SYS_ADMIN",
        "busybox",
        "grep",
        "^CapEff:",
        "/proc/self/status",
    ]);
    assert_eq!(squash(&out), "CapEff: 00000000a82425fb");
    let out = d.docker_ok(&[
        "run",
        "--rm",
        "--privileged",
        "busybox",
        "sh",
        "-c",
        "[ $(wc -c < /proc/interrupts) -gt 0 ] && echo interrupts=visible",
    ]);
    assert_eq!(out, "interrupts=visible\n");
    // --privileged brings the host's devices (a block device of this host, say), which an
    // ordinary container does not see.
    let block = std::fs::read_dir("/dev")
        .unwrap()
        .flatten()
        .find(|e| {
            e.file_type()
                .is_ok_and(|t| std::os::unix::fs::FileTypeExt::is_block_device(&t))
        })
        .expect("a block device in /dev")
        .path();
    let probe = format!("test -b {} && echo present", block.display());
    let seen = |flags: &[&str]| {
        let args = [
            &["run", "--rm"][..],
            flags,
            &["busybox", "sh", "-c", &probe],
        ]
        .concat();
        d.docker(&args).stdout == b"present\n"
    };
    assert!(
        seen(&["--privileged"]),
        "{} missing with --privileged",
        block.display()
    );
    assert!(
        !seen(&[]),
        "{} present without --privileged",
        block.display()
    );
    // systempaths=unconfined (sent by the CLIs as empty MaskedPaths and ReadonlyPaths) lifts
    // the masks alone; no AppArmor profile and no SELinux labels are what berth has anyway.
    let args = [
        "run",
        "--rm",
        "--security-opt",
        "systempaths=unconfined",
        "--security-opt",
        "apparmor=unconfined",
        "--security-opt",
        "label=disable",
        "busybox",
        "sh",
        "-c",
        "[ $(wc -c < /proc/interrupts) -gt 0 ] && echo interrupts=visible; \
         grep ^Seccomp: /proc/self/status",
    ];
    assert_eq!(
        squash(&d.docker_ok(&args)),
        "interrupts=visible\nSeccomp: 2"
    );
    let out = d.berth(&args);
    assert_eq!(
        squash(&stdout(&out)),
        "interrupts=visible\nSeccomp: 2",
        "{}",
        stderr(&out)
    );
}

/// `docker info` names the seccomp profile, as dockerd does.
#[test]
fn info_reports_seccomp() {
    let d = Daemon::start("info-seccomp");
    let out = d.docker_ok(&["info", "--format", "{{json .SecurityOptions}}"]);
    assert!(out.contains("name=seccomp,profile=builtin"), "{out}");
}
