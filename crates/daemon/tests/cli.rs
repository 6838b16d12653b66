//! The berth CLI (target/debug/berth) against a private berthd: run flows, logs, ps output and exit codes
//! as a user sees them.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{stderr, stdout, Daemon, PtySession};

fn berth_bin() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_BIN_EXE_berthd"))
        .parent()
        .expect("bin dir")
        .join("berth");
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` before these tests",
        path.display()
    );
    path
}

fn host(d: &Daemon) -> String {
    format!("unix://{}", d.socket.display())
}

fn berth_cmd(d: &Daemon, args: &[&str]) -> Command {
    let mut cmd = Command::new(berth_bin());
    cmd.arg("-H").arg(host(d)).args(args).stdin(Stdio::null());
    cmd
}

/// berth that must succeed; its stdout.
fn berth_ok(d: &Daemon, args: &[&str]) -> String {
    let out = d.berth(args);
    assert!(
        out.status.success(),
        "berth {args:?} failed ({}):\nstdout: {}\nstderr: {}\nberthd log:\n{}",
        out.status,
        stdout(&out),
        stderr(&out),
        d.log()
    );
    stdout(&out)
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[test]
fn cli_run_rm_echo() {
    let d = Daemon::start_with_busybox("cli-echo");
    assert_eq!(
        berth_ok(&d, &["run", "--rm", "busybox", "echo", "hi"]),
        "hi\n"
    );
    assert_eq!(berth_ok(&d, &["ps", "-aq"]), "");
}

#[test]
fn cli_exit_codes_like_docker() {
    let d = Daemon::start_with_busybox("cli-exit");
    let out = d.berth(&["run", "busybox", "sh", "-c", "echo oops >&2; exit 3"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_eq!(stderr(&out), "oops\n");

    let out = d.berth(&["run", "busybox", "nosuchcmd"]);
    assert_eq!(out.status.code(), Some(127), "{}", stderr(&out));
    assert!(
        stderr(&out).starts_with("berth: Error response from daemon: "),
        "{}",
        stderr(&out)
    );

    let out = d.berth(&["run", "--pull", "never", "nosuchimage"]);
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    assert!(stderr(&out).contains("No such image"), "{}", stderr(&out));

    let out = d.berth(&["run", "--no-such-flag", "busybox"]);
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));

    let out = d.berth(&["stop", "nosuch"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "Error response from daemon: No such container: nosuch\n"
    );
}

#[test]
fn cli_detached_run_logs_follow_and_stop() {
    let d = Daemon::start_with_busybox("cli-logs");
    let id = berth_ok(
        &d,
        &[
            "run",
            "-d",
            "--name",
            "web",
            "busybox",
            "sh",
            "-c",
            "echo one; sleep 0.3; echo two >&2; sleep 1000",
        ],
    );
    let id = id.trim();
    assert_eq!(id.len(), 64, "run -d prints the full id: {id:?}");
    assert!(id.chars().all(|c| c.is_ascii_hexdigit()));

    let mut follow = berth_cmd(&d, &["logs", "-f", "web"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out_lines = BufReader::new(follow.stdout.take().unwrap()).lines();
    assert_eq!(out_lines.next().unwrap().unwrap(), "one");
    let mut err_lines = BufReader::new(follow.stderr.take().unwrap()).lines();
    assert_eq!(err_lines.next().unwrap().unwrap(), "two");

    let listed = berth_ok(&d, &["ps", "--format", "{{.ID}} {{.Names}} {{.State}}"]);
    assert_eq!(listed, format!("{} web running\n", &id[..12]));

    let started = Instant::now();
    assert_eq!(berth_ok(&d, &["stop", "-t", "1", "web"]), "web\n");
    // logs -f ends once the container is gone.
    let status = follow.wait().unwrap();
    assert!(status.success());
    assert!(started.elapsed() < Duration::from_secs(20));

    let listed = berth_ok(
        &d,
        &["ps", "-a", "--format", "{{.Names}} {{.State}} {{.Status}}"],
    );
    assert!(listed.starts_with("web exited Exited (137) "), "{listed}");
    assert_eq!(berth_ok(&d, &["ps", "-q"]), "");
    assert_eq!(berth_ok(&d, &["rm", "web"]), "web\n");
}

#[test]
fn cli_ps_table_and_inspect_format() {
    let d = Daemon::start_with_busybox("cli-ps");
    berth_ok(&d, &["create", "--name", "c1", "busybox", "true"]);
    let table = berth_ok(&d, &["ps", "-a"]);
    let mut lines = table.lines();
    let header = lines.next().unwrap();
    let columns: Vec<&str> = header
        .split("   ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(
        columns,
        [
            "CONTAINER ID",
            "IMAGE",
            "COMMAND",
            "CREATED",
            "STATUS",
            "PORTS",
            "NAMES"
        ],
        "{header:?}"
    );
    let row = lines.next().unwrap();
    // Cells start where their titles start (tabwriter padding), the command quoted.
    let at = |title: &str| header.find(title).unwrap();
    assert_eq!(&row[at("IMAGE")..at("COMMAND")], "busybox   ", "{row:?}");
    assert_eq!(
        row[at("COMMAND")..at("CREATED")].trim_end(),
        "\"true\"",
        "{row:?}"
    );
    assert!(row[at("CREATED")..].contains(" ago"), "{row:?}");
    assert_eq!(
        row[at("STATUS")..at("PORTS")].trim_end(),
        "Created",
        "{row:?}"
    );
    assert_eq!(&row[at("NAMES")..], "c1", "{row:?}");

    assert_eq!(
        berth_ok(&d, &["inspect", "-f", "{{.State.Status}} {{.Name}}", "c1"]),
        "created /c1\n"
    );
    let json: serde_json::Value = serde_json::from_str(&berth_ok(&d, &["inspect", "c1"])).unwrap();
    assert_eq!(json[0]["Config"]["Cmd"], serde_json::json!(["true"]));
    // A label by name, headed by its name; sizes with -s; -q wins over --format.
    berth_ok(
        &d,
        &[
            "create", "--name", "c2", "--label", "tier=web", "busybox", "true",
        ],
    );
    let labels = berth_ok(
        &d,
        &[
            "ps",
            "-a",
            "--format",
            "table {{.Names}}\t{{.Label \"tier\"}}",
        ],
    );
    let rows: Vec<Vec<&str>> = labels
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows,
        [vec!["NAMES", "tier"], vec!["c2", "web"], vec!["c1"]],
        "{labels}"
    );
    let sizes = berth_ok(&d, &["ps", "-a", "-s", "--format", "{{.Size}}"]);
    assert!(
        sizes.lines().all(|l| l.starts_with("0B (virtual ")),
        "{sizes}"
    );
    let out = d.berth(&["ps", "-aq", "--format", "{{.Names}}"]);
    assert_eq!(stdout(&out).lines().count(), 2, "{out:?}");
    assert!(stderr(&out).contains("Ignoring custom format"), "{out:?}");
    // Missing: the daemon's words for one kind, docker's "No such object" for any.
    let out = d.berth(&["inspect", "--type", "container", "nosuch"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "Error response from daemon: No such container: nosuch\n"
    );
    let out = d.berth(&["inspect", "nosuch"]);
    assert_eq!(stderr(&out), "Error: No such object: nosuch\n");
    // rmi -f of an image that is not there says so and is no failure, as docker's.
    let out = d.berth(&["rmi", "-f", "nosuch"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        stderr(&out),
        "Error response from daemon: No such image: nosuch:latest\n"
    );
    assert_eq!(d.berth(&["rmi", "nosuch"]).status.code(), Some(1));

    let images = berth_ok(&d, &["images"]);
    let mut lines = images.lines();
    let header = lines.next().unwrap();
    assert!(
        header.starts_with("REPOSITORY   TAG       IMAGE ID       CREATED"),
        "{images}"
    );
    assert!(header.ends_with("   SIZE"), "{images}");
    assert!(
        lines.next().unwrap().starts_with("busybox      latest    "),
        "{images}"
    );
}

#[test]
fn cli_run_it_under_a_pty() {
    let d = Daemon::start_with_busybox("cli-pty");
    let line = format!(
        "{} -H {} run -it --rm busybox sh",
        shell_quote(&berth_bin().to_string_lossy()),
        shell_quote(&host(&d))
    );
    let mut pty = PtySession::spawn(&line);
    pty.expect(0, "# ");
    let mark = pty.len();
    pty.send("ps");
    // PID 1 in the container is the shell we typed into (ps is done at the next prompt).
    let text = pty.expect(mark, "# ");
    assert!(
        text[mark..]
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["1", "root", "sh"]),
        "{text}"
    );
    pty.send("exit 3");
    let status = pty.child.wait().unwrap();
    assert_eq!(status.code(), Some(3), "{}", pty.output.lock().unwrap());
    assert_eq!(berth_ok(&d, &["ps", "-aq"]), "");
}

/// Ctrl-P Ctrl-Q (or --detach-keys) leaves the container running and the CLI exits 0.
#[test]
fn cli_detach_keys_leave_the_container_running() {
    let d = Daemon::start_with_busybox("cli-detach");
    let berth = |args: &str| {
        format!(
            "{} -H {} {args}",
            shell_quote(&berth_bin().to_string_lossy()),
            shell_quote(&host(&d))
        )
    };
    let running = || berth_ok(&d, &["inspect", "-f", "{{.State.Running}}", "dt"]);
    let mut pty = PtySession::spawn(&berth("run -it --name dt busybox sh"));
    pty.expect(0, "# ");
    pty.send_raw(b"\x10\x11");
    let status = pty.child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{}", pty.output.lock().unwrap());
    assert_eq!(running(), "true\n");

    let mut pty = PtySession::spawn(&berth("attach --detach-keys ctrl-a,x dt"));
    pty.send("echo back in");
    pty.expect(0, "back in");
    // Half the sequence is typed on: only the whole one detaches.
    pty.send_raw(b"\x01y");
    pty.send_raw(b"\x01x");
    let status = pty.child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{}", pty.output.lock().unwrap());
    assert_eq!(running(), "true\n");
}

#[test]
fn cli_exec_and_stdin() {
    let d = Daemon::start_with_busybox("cli-exec");
    berth_ok(
        &d,
        &["run", "-d", "--name", "box", "busybox", "sleep", "1000"],
    );
    let out = d.berth(&["exec", "box", "sh", "-c", "echo out; echo err >&2; exit 5"]);
    assert_eq!(out.status.code(), Some(5));
    assert_eq!(
        (stdout(&out).as_str(), stderr(&out).as_str()),
        ("out\n", "err\n")
    );

    let mut child = berth_cmd(
        &d,
        &["run", "--rm", "-i", "busybox", "sh", "-c", "cat; echo done"],
    )
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .spawn()
    .unwrap();
    child.stdin.take().unwrap().write_all(b"hello\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(stdout(&out), "hello\ndone\n");
    berth_ok(&d, &["rm", "-f", "box"]);
}

#[test]
fn cli_cp_both_ways_and_diff() {
    let d = Daemon::start_with_busybox("cli-cp");
    berth_ok(
        &d,
        &["run", "-d", "--name", "box", "busybox", "sleep", "1000"],
    );
    let local = tempfile::tempdir().unwrap();
    let src = local.path().join("greeting.txt");
    std::fs::write(&src, "hello from the host\n").unwrap();
    std::fs::create_dir_all(local.path().join("tree/sub")).unwrap();
    std::fs::write(local.path().join("tree/sub/leaf"), "leaf\n").unwrap();

    berth_ok(&d, &["cp", src.to_str().unwrap(), "box:/tmp/"]);
    let tree = local.path().join("tree");
    berth_ok(&d, &["cp", tree.to_str().unwrap(), "box:/tmp/copied"]);
    assert_eq!(
        berth_ok(
            &d,
            &[
                "exec",
                "box",
                "cat",
                "/tmp/greeting.txt",
                "/tmp/copied/sub/leaf"
            ]
        ),
        "hello from the host\nleaf\n"
    );

    let back = local.path().join("back");
    berth_ok(&d, &["cp", "box:/tmp/copied", back.to_str().unwrap()]);
    assert_eq!(
        std::fs::read_to_string(back.join("sub/leaf")).unwrap(),
        "leaf\n"
    );
    let passwd = local.path().join("passwd");
    berth_ok(&d, &["cp", "box:/etc/passwd", passwd.to_str().unwrap()]);
    assert!(std::fs::read_to_string(&passwd)
        .unwrap()
        .starts_with("root:"));

    let diff = berth_ok(&d, &["diff", "box"]);
    let lines: Vec<&str> = diff.lines().collect();
    assert!(lines.contains(&"C /tmp"), "{diff}");
    assert!(lines.contains(&"A /tmp/greeting.txt"), "{diff}");
    assert!(lines.contains(&"A /tmp/copied/sub/leaf"), "{diff}");
    berth_ok(&d, &["rm", "-f", "box"]);
}

/// A Debian docker-registry on 127.0.0.1 (scripts/registry-fixture.sh), stopped on drop.
struct Registry {
    dir: tempfile::TempDir,
    port: u16,
}

impl Registry {
    fn start() -> Registry {
        let dir = tempfile::Builder::new()
            .prefix("berth-cli-registry-")
            .tempdir()
            .unwrap();
        // A port nobody listens on right now; the fixture refuses one that answers.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let out = Command::new("bash")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../scripts/registry-fixture.sh"
            ))
            .args(["start", dir.path().to_str().unwrap(), &port.to_string()])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "registry start: {}{}",
            stdout(&out),
            stderr(&out)
        );
        Registry { dir, port }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../scripts/registry-fixture.sh"
            ))
            .args(["stop", self.dir.path().to_str().unwrap()])
            .stdin(Stdio::null())
            .output();
    }
}

#[test]
fn cli_push_pull_and_implicit_pull_on_run() {
    let reg = Registry::start();
    let d = Daemon::start_with_busybox("cli-pull");
    let image = format!("127.0.0.1:{}/cli/bb:v1", reg.port);
    berth_ok(&d, &["tag", "busybox", &image]);
    let pushed = berth_ok(&d, &["push", &image]);
    assert!(
        pushed.starts_with(&format!(
            "The push refers to repository [127.0.0.1:{}/cli/bb]\n",
            reg.port
        )),
        "{pushed}"
    );
    assert!(pushed.contains("v1: digest: sha256:"), "{pushed}");

    let removed = berth_ok(&d, &["rmi", &image]);
    assert!(
        removed.starts_with(&format!("Untagged: {image}\n")),
        "{removed}"
    );
    // Not a terminal: one plain line per state change, the reference last.
    let pulled = berth_ok(&d, &["pull", &image]);
    let lines: Vec<&str> = pulled.lines().collect();
    assert_eq!(lines[0], "v1: Pulling from cli/bb", "{pulled}");
    assert!(
        lines
            .iter()
            .any(|l| l.ends_with(": Pull complete") || l.ends_with(": Already exists")),
        "{pulled}"
    );
    assert!(!pulled.contains('\x1b'), "{pulled:?}");
    assert_eq!(
        lines[lines.len() - 2],
        format!("Status: Downloaded newer image for {image}")
    );
    assert_eq!(lines[lines.len() - 1], image);

    berth_ok(&d, &["rmi", &image]);
    let out = d.berth(&["run", "--rm", &image, "echo", "pulled"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "pulled\n");
    assert!(
        stderr(&out).starts_with(&format!("Unable to find image '{image}' locally\n")),
        "{}",
        stderr(&out)
    );
}

#[test]
fn cli_cp_into_a_bad_destination_reports_the_daemons_error() {
    let d = Daemon::start_with_busybox("cli-cp-bad");
    berth_ok(&d, &["create", "--name", "cpbad", "busybox", "true"]);
    // Big enough that the daemon answers before the upload is over.
    let src = d.dir.path().join("big");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("blob"), vec![7u8; 16 << 20]).unwrap();
    let out = d.berth(&["cp", &src.to_string_lossy(), "cpbad:/etc/passwd/x"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Error response from daemon"),
        "{}",
        stderr(&out)
    );
}
