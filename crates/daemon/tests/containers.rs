//! Container lifecycle through berthd with the real docker CLI (and raw HTTP where the
//! CLI hides what matters): run, attach, wait, stop, rm, conflicts, events, restart.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::process::Stdio;
use std::time::Duration;

use common::{read_response, stderr, stdout, Daemon, HttpResponse};

#[test]
fn run_rm_prints_output_and_leaves_nothing() {
    let d = Daemon::start_with_busybox("run-rm");
    let out = d.docker_ok(&["run", "--rm", "busybox", "echo", "hi"]);
    assert_eq!(out, "hi\n");
    assert_eq!(d.docker_ok(&["ps", "-aq"]).trim(), "");
}

#[test]
fn run_exit_code_and_stderr_are_passed_through() {
    let d = Daemon::start_with_busybox("run-exit");
    let out = d.docker(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "echo oops >&2; exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_eq!(stderr(&out), "oops\n");
    assert_eq!(stdout(&out), "");
}

#[test]
fn run_interactive_feeds_stdin_until_eof() {
    let d = Daemon::start_with_busybox("run-stdin");
    let mut child = d
        .docker_cmd(&["run", "--rm", "-i", "busybox", "sh", "-c", "cat; echo done"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"hello\nworld\n")
        .unwrap();
    // Dropping stdin closes it: the container must see EOF and exit.
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "hello\nworld\ndone\n");
}

#[test]
fn detached_run_then_stop() {
    let d = Daemon::start_with_busybox("run-d-stop");
    let id = d.docker_ok(&["run", "-d", "--name", "sleeper", "busybox", "sleep", "1000"]);
    let id = id.trim();
    assert_eq!(id.len(), 64, "{id}");
    let ps = d.docker_ok(&["ps", "--format", "{{.Names}} {{.Status}}"]);
    assert!(ps.starts_with("sleeper Up"), "{ps}");
    d.docker_ok(&["stop", "-t", "1", "sleeper"]);
    let state = d.docker_ok(&["inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", id]);
    // sleep as PID 1 ignores SIGTERM: killed after the timeout.
    assert_eq!(state.trim(), "exited 137");
    // Stopping a stopped container is fine for the CLI (304).
    d.docker_ok(&["stop", "sleeper"]);
    d.docker_ok(&["rm", "sleeper"]);
    assert_eq!(d.docker_ok(&["ps", "-aq"]).trim(), "");
}

#[test]
fn name_conflict_is_409() {
    let d = Daemon::start_with_busybox("conflict");
    let id = d.docker_ok(&["create", "--name", "twin", "busybox", "true"]);
    let out = d.docker(&["create", "--name", "twin", "busybox", "true"]);
    assert!(!out.status.success());
    let expected = format!(
        "Conflict. The container name \"/twin\" is already in use by container \"{}\"",
        id.trim()
    );
    assert!(stderr(&out).contains(&expected), "{}", stderr(&out));
    let body = br#"{"Image":"busybox","Cmd":["true"]}"#;
    let resp = d.request("POST", "/containers/create?name=twin", Some(body));
    assert_eq!(resp.status, 409);
}

#[test]
fn removing_a_running_container_needs_force() {
    let d = Daemon::start_with_busybox("rm-running");
    d.docker_ok(&["run", "-d", "--name", "busy", "busybox", "sleep", "1000"]);
    let out = d.docker(&["rm", "busy"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("running"), "{}", stderr(&out));
    let resp = d.request("DELETE", "/containers/busy", None);
    assert_eq!(resp.status, 409);
    d.docker_ok(&["rm", "-f", "busy"]);
    let out = d.docker(&["inspect", "busy"]);
    assert!(stderr(&out).contains("No such object: busy") || !out.status.success());
}

/// The CLI starts a container only after wait's headers arrived: they must not wait for
/// the exit.
#[test]
fn wait_headers_come_before_the_exit() {
    let d = Daemon::start_with_busybox("wait-headers");
    let id = d.docker_ok(&["create", "busybox", "sh", "-c", "exit 7"]);
    let id = id.trim();
    let mut conn = UnixStream::connect(&d.socket).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        conn,
        "POST /v1.44/containers/{id}/wait?condition=next-exit HTTP/1.1\r\nHost: d\r\n\
         Content-Length: 0\r\n\r\n"
    )
    .unwrap();
    let mut rd = BufReader::new(conn);
    let mut status = String::new();
    rd.read_line(&mut status).unwrap();
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    let mut header = String::new();
    while header != "\r\n" {
        header.clear();
        rd.read_line(&mut header).unwrap();
    }
    // Headers are in while the container has not even started.
    d.docker_ok(&["start", id]);
    let mut size = String::new();
    rd.read_line(&mut size).unwrap();
    let n = usize::from_str_radix(size.trim(), 16).unwrap();
    let mut chunk = vec![0; n];
    rd.read_exact(&mut chunk).unwrap();
    let body: serde_json::Value = serde_json::from_slice(&chunk).unwrap();
    assert_eq!(body["StatusCode"], 7);
    assert!(body["Error"].is_null());

    let resp = d.request("POST", "/containers/nosuch/wait", None);
    assert_eq!(resp.status, 404);
}

/// Attach over a hijacked connection without a tty: multiplexed frames.
#[test]
fn attach_hijack_multiplexes_output() {
    let d = Daemon::start_with_busybox("attach");
    let id = d.docker_ok(&[
        "create",
        "-i",
        "busybox",
        "sh",
        "-c",
        "read x; echo out $x; echo err >&2",
    ]);
    let id = id.trim();
    let (mut conn, mut rd, resp) = attach_all_streams(&d, id);
    assert_eq!(resp.status, 101);
    assert_eq!(
        resp.header("content-type"),
        Some("application/vnd.docker.multiplexed-stream")
    );
    assert_eq!(resp.header("upgrade"), Some("tcp"));
    d.docker_ok(&["start", id]);
    conn.write_all(b"in\n").unwrap();
    conn.shutdown(std::net::Shutdown::Write).unwrap();
    let mut frames = Vec::new();
    rd.read_to_end(&mut frames).unwrap();
    let (out, err) = demux(&frames);
    assert_eq!(out, b"out in\n");
    assert_eq!(err, b"err\n");
}

/// A client that leaves an attach to a quiet container leaves nothing behind in berthd
/// (its connection and the stream to the monitor are closed), while one that only closed
/// its write side keeps getting output.
#[test]
fn attach_client_that_leaves_a_quiet_container_is_let_go() {
    let d = Daemon::start_with_busybox("attach-leave");
    let id = d.docker_ok(&[
        "run",
        "-d",
        "-i",
        "busybox",
        "sh",
        "-c",
        "read x; echo got $x",
    ]);
    let id = id.trim();
    let berthd = d.pid().unwrap();
    let open_fds = || {
        std::fs::read_dir(format!("/proc/{berthd}/fd"))
            .unwrap()
            .count()
    };
    let attach = || {
        let (conn, rd, resp) = attach_all_streams(&d, id);
        assert_eq!(resp.status, 101);
        (conn, rd)
    };
    let before = open_fds();
    for _ in 0..5 {
        drop(attach());
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while open_fds() > before && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        open_fds() <= before,
        "berthd kept the connections of clients that left"
    );

    let (mut conn, mut rd) = attach();
    conn.write_all(b"in\n").unwrap();
    conn.shutdown(std::net::Shutdown::Write).unwrap();
    let mut frames = Vec::new();
    rd.read_to_end(&mut frames).unwrap();
    assert_eq!(demux(&frames).0, b"got in\n");
}

/// A hijacked attach to all of container `id`'s streams: the connection (stdin), its reader
/// past the response head, and the head.
fn attach_all_streams(d: &Daemon, id: &str) -> (UnixStream, BufReader<UnixStream>, HttpResponse) {
    let mut conn = UnixStream::connect(&d.socket).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        conn,
        "POST /containers/{id}/attach?stream=1&stdin=1&stdout=1&stderr=1 HTTP/1.1\r\n\
         Host: d\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
    let mut rd = BufReader::new(conn.try_clone().unwrap());
    let head = read_response(&mut rd, false).unwrap();
    (conn, rd, head)
}

/// Split Docker's multiplexed stream into stdout and stderr.
fn demux(mut data: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    while data.len() >= 8 {
        let len = u32::from_be_bytes([data[4], data[5], data[6], data[7]]) as usize;
        let payload = &data[8..8 + len];
        match data[0] {
            1 => out.extend_from_slice(payload),
            2 => err.extend_from_slice(payload),
            other => panic!("unexpected stream type {other}"),
        }
        data = &data[8 + len..];
    }
    assert!(data.is_empty(), "trailing bytes {data:?}");
    (out, err)
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn events_record_a_run() {
    let d = Daemon::start_with_busybox("events");
    let since = unix_now() - 1;
    d.docker_ok(&["run", "--name", "ev", "busybox", "true"]);
    d.docker_ok(&["create", "--name", "other", "busybox", "true"]);
    // The stream ends once `until` has passed.
    let until = (unix_now() + 1).to_string();
    let filters = urlencode(r#"{"type":["container"],"container":["ev"]}"#);
    let resp = d.request(
        "GET",
        &format!("/events?since={since}&until={until}&filters={filters}"),
        None,
    );
    assert_eq!(resp.status, 200);
    let events: Vec<serde_json::Value> = resp
        .text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let actions: Vec<&str> = events
        .iter()
        .map(|e| e["Action"].as_str().unwrap())
        .collect();
    for want in ["create", "start", "die"] {
        assert!(actions.contains(&want), "missing {want}: {actions:?}");
    }
    assert!(events
        .iter()
        .all(|e| e["Actor"]["Attributes"]["name"] == "ev"));
    // The CLI's view of the same window.
    let out = d.docker_ok(&[
        "events",
        "--since",
        &since.to_string(),
        "--until",
        &until,
        "--filter",
        "event=create",
        "--format",
        "{{.Actor.Attributes.name}}",
    ]);
    assert_eq!(out.lines().collect::<Vec<_>>(), ["ev", "other"]);
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn containers_survive_a_daemon_kill() {
    let mut d = Daemon::start_with_busybox("restart");
    d.docker_ok(&[
        "run", "-d", "--name", "survivor", "busybox", "sleep", "1000",
    ]);
    d.kill9();
    d.restart();
    let ps = d.docker_ok(&["ps", "--format", "{{.Names}} {{.Status}}"]);
    assert!(ps.starts_with("survivor Up"), "{ps}");
    // A clean SIGTERM of berthd leaves it running too.
    assert!(d.terminate().success());
    d.restart();
    let ps = d.docker_ok(&["ps", "--format", "{{.Names}} {{.Status}}"]);
    assert!(ps.starts_with("survivor Up"), "{ps}");
    // The re-attached watcher sees the exit.
    d.docker_ok(&["kill", "survivor"]);
    assert_eq!(d.docker_ok(&["wait", "survivor"]).trim(), "137");
    let state = d.docker_ok(&[
        "inspect",
        "-f",
        "{{.State.Status}} {{.State.ExitCode}}",
        "survivor",
    ]);
    assert_eq!(state.trim(), "exited 137");
}

#[test]
fn docker_exec_output_exit_code_and_stdin() {
    let d = Daemon::start_with_busybox("exec");
    d.docker_ok(&["run", "-d", "--name", "host", "busybox", "sleep", "1000"]);
    assert_eq!(d.docker_ok(&["exec", "host", "echo", "hi"]), "hi\n");
    let out = d.docker(&["exec", "host", "sh", "-c", "echo bad >&2; exit 5"]);
    assert_eq!(out.status.code(), Some(5));
    assert_eq!(stderr(&out), "bad\n");
    // A command that cannot start: the stream carries the error, the exit code is 127 (126
    // when it is not executable), as with dockerd (not "unable to upgrade").
    for (cli, cmd, code) in [
        ("docker", "nosuchcmd", 127),
        ("berth", "nosuchcmd", 127),
        ("docker", "/etc", 126),
    ] {
        let out = match cli {
            "docker" => d.docker(&["exec", "host", cmd]),
            _ => d.berth(&["exec", "host", cmd]),
        };
        assert_eq!(out.status.code(), Some(code), "{cli} exec {cmd}: {out:?}");
        let said = stdout(&out) + &stderr(&out);
        assert!(
            said.contains(cmd) && !said.contains("upgrade"),
            "{cli} exec {cmd}: {said}"
        );
    }
    let mut child = d
        .docker_cmd(&["exec", "-i", "host", "sh", "-c", "tr a-z A-Z"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"shout\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "SHOUT\n");
    // Detached exec: 200 with no stream; its exit code shows in inspect.
    let create = d.request(
        "POST",
        "/containers/host/exec",
        Some(br#"{"Cmd":["sh","-c","exit 4"]}"#),
    );
    assert_eq!(create.status, 201);
    let exec_id = create.json()["Id"].as_str().unwrap().to_string();
    let start = d.request(
        "POST",
        &format!("/exec/{exec_id}/start"),
        Some(br#"{"Detach":true}"#),
    );
    assert_eq!(start.status, 200);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let info = d
            .request("GET", &format!("/exec/{exec_id}/json"), None)
            .json();
        if info["Running"] == false && info["ExitCode"] == 4 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "exec never finished: {info}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let missing = d.request("GET", "/exec/nosuch/json", None);
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["message"], "No such exec instance: nosuch");
}

/// `logs=1` replays what the container wrote; `stream=0` then ends the connection.
#[test]
fn attach_logs_replays_output() {
    let d = Daemon::start_with_busybox("attach-logs");
    d.docker_ok(&[
        "run",
        "--name",
        "talker",
        "busybox",
        "sh",
        "-c",
        "echo one; echo two >&2",
    ]);
    let mut conn = UnixStream::connect(&d.socket).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        conn,
        "POST /containers/talker/attach?logs=1&stream=0&stdout=1&stderr=1 HTTP/1.1\r\n\
         Host: d\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
    let mut rd = BufReader::new(conn);
    let resp = read_response(&mut rd, false).unwrap();
    assert_eq!(resp.status, 101);
    let mut frames = Vec::new();
    rd.read_to_end(&mut frames).unwrap();
    let (out, err) = demux(&frames);
    assert_eq!(out, b"one\n");
    assert_eq!(err, b"two\n");
}

/// With a tty the stream is raw (no frames) and output has the terminal's line endings.
#[test]
fn run_with_tty_streams_raw_output() {
    let d = Daemon::start_with_busybox("run-tty");
    let out = d.docker_ok(&["run", "--rm", "-t", "busybox", "echo", "hi"]);
    assert_eq!(out, "hi\r\n");
}

/// `GET /events` without `until` follows: each event arrives as it happens.
#[test]
fn events_follow_live() {
    let d = Daemon::start_with_busybox("events-follow");
    let mut conn = UnixStream::connect(&d.socket).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(conn, "GET /events HTTP/1.1\r\nHost: d\r\n\r\n").unwrap();
    let mut rd = BufReader::new(conn);
    let mut line = String::new();
    rd.read_line(&mut line).unwrap();
    assert!(line.starts_with("HTTP/1.1 200"), "{line}");
    while line != "\r\n" {
        line.clear();
        rd.read_line(&mut line).unwrap();
    }
    d.docker_ok(&["create", "--name", "fresh", "busybox", "true"]);
    // One chunk: its size line, then the event's JSON line.
    let mut size = String::new();
    rd.read_line(&mut size).unwrap();
    let mut event = String::new();
    rd.read_line(&mut event).unwrap();
    let event: serde_json::Value = serde_json::from_str(&event).unwrap();
    assert_eq!(event["Type"], "container");
    assert_eq!(event["Action"], "create");
    assert_eq!(event["Actor"]["Attributes"]["name"], "fresh");
}

#[test]
fn pause_unpause_restart_rename_and_list_filters() {
    let d = Daemon::start_with_busybox("verbs");
    d.docker_ok(&["run", "-d", "--name", "v1", "busybox", "sleep", "1000"]);
    d.docker_ok(&[
        "create",
        "--name",
        "idle",
        "--label",
        "role=spare",
        "busybox",
        "true",
    ]);
    // Starting a running container is not an error (304 for the CLI).
    d.docker_ok(&["start", "v1"]);
    d.docker_ok(&["pause", "v1"]);
    let status = |name: &str| d.docker_ok(&["inspect", "-f", "{{.State.Status}}", name]);
    assert_eq!(status("v1").trim(), "paused");
    d.docker_ok(&["unpause", "v1"]);
    assert_eq!(status("v1").trim(), "running");
    let pid = |name: &str| d.docker_ok(&["inspect", "-f", "{{.State.Pid}}", name]);
    let before = pid("v1");
    d.docker_ok(&["restart", "-t", "0", "v1"]);
    assert_eq!(status("v1").trim(), "running");
    assert_ne!(pid("v1"), before, "restart made a new process");
    d.docker_ok(&["rename", "v1", "v2"]);
    assert_eq!(status("v2").trim(), "running");
    // ps: running only by default; -a and filters through the query.
    assert_eq!(d.docker_ok(&["ps", "--format", "{{.Names}}"]).trim(), "v2");
    let all = d.docker_ok(&["ps", "-a", "--format", "{{.Names}}"]);
    let mut names: Vec<&str> = all.lines().collect();
    names.sort();
    assert_eq!(names, ["idle", "v2"]);
    let labelled = d.docker_ok(&[
        "ps",
        "-a",
        "--filter",
        "label=role=spare",
        "--format",
        "{{.Names}}",
    ]);
    assert_eq!(labelled.trim(), "idle");
    let resp = d.request("GET", "/containers/json?all=1&limit=1", None);
    assert_eq!(resp.json().as_array().unwrap().len(), 1);
}

/// An image loaded through the API is runnable at once.
#[test]
fn image_loaded_through_the_api_runs() {
    let d = Daemon::start("api-load");
    d.load_busybox();
    assert_eq!(
        d.docker_ok(&["run", "--rm", "busybox", "echo", "loaded"]),
        "loaded\n"
    );
}
