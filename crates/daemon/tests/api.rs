//! berthd's HTTP surface with no containers: ping, version negotiation, version, info,
//! error shapes, and what the docker CLI makes of them.

mod common;

use common::{stderr, stdout, Daemon};

#[test]
fn ping_carries_negotiation_headers() {
    let d = Daemon::start("ping");
    for method in ["GET", "HEAD"] {
        let resp = d.request(method, "/_ping", None);
        assert_eq!(resp.status, 200, "{method} /_ping");
        assert_eq!(resp.header("api-version"), Some("1.44"));
        assert_eq!(resp.header("ostype"), Some("linux"));
        assert_eq!(resp.header("docker-experimental"), Some("false"));
        assert_eq!(resp.header("builder-version"), Some("1"));
        assert_eq!(resp.header("swarm"), Some("inactive"));
        assert!(resp.header("server").unwrap_or("").starts_with("berth/"));
        if method == "GET" {
            assert_eq!(resp.text(), "OK");
        }
    }
}

#[test]
fn versioned_and_unversioned_paths() {
    let d = Daemon::start("versions");
    assert_eq!(d.request("GET", "/v1.44/version", None).status, 200);
    assert_eq!(d.request("GET", "/v1.24/version", None).status, 200);
    let resp = d.request("GET", "/version", None);
    assert_eq!(resp.status, 200);
    let v = resp.json();
    assert_eq!(v["ApiVersion"], "1.44");
    assert_eq!(v["MinAPIVersion"], "1.24");
    assert_eq!(v["Os"], "linux");
    assert_eq!(v["Components"][0]["Name"], "Engine");

    let resp = d.request("GET", "/v1.50/version", None);
    assert_eq!(resp.status, 400);
    assert_eq!(resp.header("content-type"), Some("application/json"));
    assert_eq!(
        resp.json()["message"],
        "client version 1.50 is too new. Maximum supported API version is 1.44"
    );
    let resp = d.request("GET", "/v1.12/version", None);
    assert_eq!(resp.status, 400);
    assert!(resp.json()["message"].as_str().unwrap().contains("too old"));
}

#[test]
fn unknown_route_is_page_not_found() {
    let d = Daemon::start("notfound");
    for (method, path) in [
        ("GET", "/nosuch"),
        ("GET", "/v1.44/containers/abc/nosuch"),
        ("PATCH", "/containers/json"),
    ] {
        let resp = d.request(method, path, None);
        assert_eq!(resp.status, 404, "{method} {path}");
        assert_eq!(resp.header("content-type"), Some("application/json"));
        assert_eq!(resp.header("api-version"), Some("1.44"));
        assert_eq!(resp.json()["message"], "page not found");
    }
}

#[test]
fn info_describes_the_host() {
    let d = Daemon::start("info");
    let info = d.request("GET", "/info", None).json();
    assert_eq!(info["Containers"], 0);
    assert_eq!(info["Images"], 0);
    assert_eq!(info["Driver"], "overlay2");
    assert_eq!(info["OSType"], "linux");
    assert_eq!(info["LoggingDriver"], "json-file");
    assert_eq!(info["DockerRootDir"], d.root.display().to_string());
    assert_eq!(info["Swarm"]["LocalNodeState"], "inactive");
    assert!(info["NCPU"].as_i64().unwrap() >= 1);
    assert!(info["MemTotal"].as_i64().unwrap() > 0);
    let version = info["CgroupVersion"].as_str().unwrap();
    assert!(version == "1" || version == "2", "{version}");
    // The id is made once and kept.
    let id = info["ID"].as_str().unwrap().to_string();
    assert!(!id.is_empty());
    assert_eq!(d.request("GET", "/info", None).json()["ID"], id.as_str());
}

#[test]
fn docker_cli_version_info_and_ps() {
    let d = Daemon::start("cli");
    let version = d.docker_ok(&[
        "version",
        "--format",
        "{{.Server.APIVersion}} {{.Server.Os}}",
    ]);
    assert_eq!(version.trim(), "1.44 linux");
    let info = d.docker_ok(&["info", "--format", "{{.Driver}} {{.Containers}}"]);
    assert_eq!(info.trim(), "overlay2 0");
    let ps = d.docker_ok(&["ps", "-a"]);
    let lines: Vec<&str> = ps.lines().collect();
    assert_eq!(lines.len(), 1, "only the header: {ps}");
    assert!(lines[0].starts_with("CONTAINER ID"), "{ps}");
}

#[test]
fn docker_cli_reports_missing_containers() {
    let d = Daemon::start("missing");
    let out = d.docker(&["rm", "nosuch"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("No such container: nosuch"),
        "{}",
        stderr(&out)
    );
    let out = d.docker(&["container", "inspect", "nosuch"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("No such container: nosuch"),
        "{}",
        stderr(&out)
    );
    assert_eq!(stdout(&out).trim(), "[]");
    let resp = d.request("GET", "/containers/nosuch/json", None);
    assert_eq!(resp.status, 404);
    assert_eq!(resp.json()["message"], "No such container: nosuch");
}

#[test]
fn bad_json_is_a_bad_request() {
    let d = Daemon::start("badjson");
    let resp = d.request("POST", "/containers/create", Some(b"{not json"));
    assert_eq!(resp.status, 400);
    assert!(resp.json()["message"]
        .as_str()
        .unwrap()
        .starts_with("invalid JSON"));
    let resp = d.request("POST", "/containers/create", None);
    assert_eq!(resp.status, 400);
}

fn is_tmpfs(dir: &std::path::Path) -> bool {
    nix::sys::statfs::statfs(dir).unwrap().filesystem_type() == nix::sys::statfs::TMPFS_MAGIC
}

#[test]
fn exec_root_is_a_tmpfs_unless_it_already_holds_state() {
    let d = Daemon::start("execroot");
    assert!(
        is_tmpfs(&d.exec_root),
        "{} is not a tmpfs",
        d.exec_root.display()
    );
    assert!(d.socket.exists());
    // Two more daemons on the busy socket get as far as their exec root, then give up: one
    // on an empty directory, one on a directory holding a berthd's state, which must stay
    // what it is (its monitors use it).
    let empty = d.dir.path().join("empty-run");
    let used = d.dir.path().join("used-run");
    std::fs::create_dir_all(used.join("containers")).unwrap();
    for exec_root in [&empty, &used] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_berthd"))
            .arg("--root")
            .arg(d.dir.path().join("other-root"))
            .arg("--exec-root")
            .arg(exec_root)
            .arg("-H")
            .arg(format!("unix://{}", d.socket.display()))
            .output()
            .unwrap();
        assert!(
            stderr(&out).contains("already listening"),
            "{}",
            stderr(&out)
        );
    }
    assert!(is_tmpfs(&empty));
    assert!(!is_tmpfs(&used));
    assert!(used.join("containers").is_dir());
}

#[test]
fn sigterm_exits_cleanly_and_socket_is_refused_twice() {
    let mut d = Daemon::start("sigterm");
    // A second daemon on the same socket refuses to start.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_berthd"))
        .arg("--root")
        .arg(d.dir.path().join("other-root"))
        .arg("--exec-root")
        .arg(d.dir.path().join("other-run"))
        .arg("-H")
        .arg(format!("unix://{}", d.socket.display()))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("already listening"),
        "{}",
        stderr(&out)
    );
    assert_eq!(d.request("GET", "/_ping", None).status, 200);

    // The socket is root's, mode 0660.
    let meta = std::fs::metadata(&d.socket).unwrap();
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    assert_eq!((meta.uid(), meta.gid()), (0, 0));

    let status = d.terminate();
    assert!(status.success(), "berthd exited with {status}");
    // A stale socket file does not stop the next start.
    d.restart();
    assert_eq!(d.request("GET", "/_ping", None).status, 200);
}

#[test]
fn docker_cli_refuses_a_too_new_client_version() {
    let d = Daemon::start("negotiate");
    let out = d
        .docker_cmd(&["version", "--format", "{{.Server.APIVersion}}"])
        .env("DOCKER_API_VERSION", "1.45")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out)
            .contains("client version 1.45 is too new. Maximum supported API version is 1.44"),
        "{}",
        stderr(&out)
    );
    // An older client version is served as asked.
    let out = d
        .docker_cmd(&["version", "--format", "{{.Server.APIVersion}}"])
        .env("DOCKER_API_VERSION", "1.41")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "1.44");
}
