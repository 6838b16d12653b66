//! Images through berthd with the real docker CLI: images, inspect, history, tag, rmi,
//! save | load, pull from and push to a local registry (Debian's docker-registry, fed by
//! skopeo, from berth-image's test harness).

mod common;
#[path = "../../image/tests/common/mod.rs"]
mod registry;

use common::*;

#[test]
fn docker_images_inspect_and_history() {
    let d = Daemon::start_with_busybox("img-list");
    let out = d.docker_ok(&["images"]);
    let line = out
        .lines()
        .find(|l| l.starts_with("busybox "))
        .unwrap_or_else(|| panic!("no busybox in:\n{out}"));
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(cols[1], "latest", "{line}");
    let id = d.docker_ok(&["inspect", "--format", "{{.Id}}", "busybox"]);
    let id = id.trim();
    assert!(id.starts_with("sha256:") && id.len() == 71, "{id}");
    assert_eq!(cols[2], &id[7..19], "{line}");
    let quiet = d.docker_ok(&["images", "-q", "--no-trunc"]);
    assert_eq!(quiet.trim(), id);
    let cmd = d.docker_ok(&[
        "image",
        "inspect",
        "--format",
        "{{json .Config.Cmd}}",
        "busybox",
    ]);
    assert_eq!(cmd.trim(), r#"["sh"]"#);

    let history = d.docker_ok(&["history", "busybox"]);
    let first = history.lines().nth(1).unwrap_or_default();
    assert!(first.starts_with(&id[7..19]), "{history}");
    // The size is Docker's: the bytes of the layer's files (the fixture's rootfs is the
    // layer), not of its tar.
    let size = d.docker_ok(&["image", "inspect", "--format", "{{.Size}}", "busybox"]);
    let rootfs = busybox_layout().parent().unwrap().join("rootfs");
    assert_eq!(size.trim(), berth_testkit::files_size(&rootfs).to_string());

    let out = d.docker(&["image", "inspect", "nope"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("No such image: nope"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn docker_tag_and_rmi() {
    let d = Daemon::start_with_busybox("img-tag");
    d.docker_ok(&["tag", "busybox", "localhost:5000/copy:v1"]);
    let out = d.docker_ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    let mut names: Vec<&str> = out.lines().collect();
    names.sort();
    assert_eq!(names, ["busybox:latest", "localhost:5000/copy:v1"]);

    let out = d.docker_ok(&["rmi", "localhost:5000/copy:v1"]);
    assert_eq!(out.trim(), "Untagged: localhost:5000/copy:v1");

    // A container (stopped) uses the last name: refused without force.
    let cid = d.docker_ok(&["create", "busybox", "true"]);
    let out = d.docker(&["rmi", "busybox"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("conflict: unable to remove repository reference \"busybox\" (must force)")
            && err.contains(&format!("container {}", &cid.trim()[..12])),
        "{err}"
    );
    // Forced, it goes; the container keeps its layers, even through a prune.
    let out = d.docker_ok(&["rmi", "-f", "busybox"]);
    assert!(out.contains("Untagged: busybox:latest"), "{out}");
    assert!(out.contains("Deleted: sha256:"), "{out}");
    assert_eq!(d.docker_ok(&["images", "-q"]).trim(), "");
    d.docker_ok(&["image", "prune", "-a", "-f"]);
    let out = d.docker_ok(&["start", "-a", cid.trim()]);
    assert_eq!(out, "");
    d.docker_ok(&["rm", cid.trim()]);
    // The layer goes with the container (rm collects what a removed image left).
    let layers: Vec<_> = std::fs::read_dir(d.root.join("image/layers"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(layers.is_empty(), "layers left: {layers:?}");
    let out = d.docker(&["rmi", "busybox"]);
    assert!(
        stderr(&out).contains("No such image: busybox:latest"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn docker_save_then_load() {
    let d = Daemon::start_with_busybox("img-save");
    let id = d.docker_ok(&["inspect", "--format", "{{.Id}}", "busybox"]);
    let file = d.dir.path().join("busybox.tar");
    let file = file.to_str().unwrap();
    d.docker_ok(&["save", "-o", file, "busybox"]);
    d.docker_ok(&["rmi", "busybox"]);
    let out = d.docker_ok(&["load", "-i", file]);
    assert!(out.contains("Loaded image: busybox:latest"), "{out}");
    let again = d.docker_ok(&["inspect", "--format", "{{.Id}}", "busybox"]);
    assert_eq!(again, id);
    // The loaded image runs.
    let out = d.docker_ok(&["run", "--rm", "busybox", "echo", "loaded"]);
    assert_eq!(out.trim(), "loaded");
    let out = d.docker(&["save", "nope"]);
    assert!(stderr(&out).contains("No such image"), "{}", stderr(&out));
}

#[test]
fn docker_pull_and_push_against_a_local_registry() {
    let reg = registry::Registry::start();
    registry::push_with_skopeo(&registry::busybox_oci_layout(), &reg, "busybox:latest");
    let d = Daemon::start("img-pull");
    let name = format!("{}/busybox", reg.host());
    let out = d.docker_ok(&["pull", &name]);
    assert!(out.contains("Pull complete"), "{out}");
    assert!(out.contains("Digest: sha256:"), "{out}");
    assert!(
        out.contains(&format!("Status: Downloaded newer image for {name}:latest")),
        "{out}"
    );
    let out = d.docker_ok(&["pull", &name]);
    assert!(
        out.contains(&format!("Status: Image is up to date for {name}:latest")),
        "{out}"
    );
    let digests = d.docker_ok(&["images", "--digests", "--format", "{{.Digest}}"]);
    assert!(digests.trim().starts_with("sha256:"), "{digests}");
    let out = d.docker_ok(&["run", "--rm", &name, "echo", "pulled"]);
    assert_eq!(out.trim(), "pulled");

    let out = d.docker(&["pull", &format!("{name}:nope")]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not found"), "{}", stderr(&out));

    let copy = format!("{}/copy:v1", reg.host());
    d.docker_ok(&["tag", &name, &copy]);
    let out = d.docker_ok(&["push", &copy]);
    assert!(
        out.contains(&format!(
            "The push refers to repository [{}/copy]",
            reg.host()
        )),
        "{out}"
    );
    assert!(out.contains("v1: digest: sha256:"), "{out}");
    let inspected =
        registry::skopeo(&["inspect", "--tls-verify=false", &reg.docker_ref("copy:v1")]);
    assert!(inspected.contains("\"Digest\""), "{inspected}");
}

const USER: &str = "berth";
const PASSWORD: &str = "s3cret-pass";

#[test]
fn docker_push_and_pull_send_the_clients_credentials() {
    use base64::Engine as _;
    let reg = registry::Registry::start_with_htpasswd(USER, PASSWORD);
    let d = Daemon::start_with_busybox("img-auth");
    let name = format!("{}/private:1", reg.host());
    d.docker_ok(&["tag", "busybox", &name]);
    // Not logged in: the registry refuses.
    let out = d.docker(&["push", &name]);
    assert!(!out.status.success(), "{}", stdout(&out));
    // Logged in (the CLI's config file): the credentials travel in X-Registry-Auth.
    let pair = format!("{USER}:{PASSWORD}");
    let auth = base64::engine::general_purpose::STANDARD.encode(pair);
    let config = d.dir.path().join("docker-config");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(
        config.join("config.json"),
        serde_json::json!({ "auths": { (reg.host()): { "auth": auth } } }).to_string(),
    )
    .unwrap();
    let out = d.docker_ok(&["push", &name]);
    assert!(out.contains("1: digest: sha256:"), "{out}");
    d.docker_ok(&["rmi", &name]);
    let out = d.docker_ok(&["pull", &name]);
    assert!(out.contains("Downloaded newer image"), "{out}");
}

#[test]
fn docker_import_with_changes_and_a_broken_load() {
    let d = Daemon::start("img-import");
    let rootfs = busybox_layout().parent().unwrap().join("rootfs");
    let tarball = d.dir.path().join("rootfs.tar");
    let status = std::process::Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .arg("-cf")
        .arg(&tarball)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success());
    let out = d.docker_ok(&[
        "import",
        "--change",
        r#"CMD ["echo", "imported"]"#,
        "--change",
        "ENV FOO=bar",
        "-m",
        "a message",
        tarball.to_str().unwrap(),
        "imp:1",
    ]);
    assert!(out.trim().starts_with("sha256:"), "{out}");
    assert_eq!(d.docker_ok(&["run", "--rm", "imp:1"]).trim(), "imported");
    let env = d.docker_ok(&[
        "inspect",
        "-f",
        "{{json .Config.Env}} {{.Comment}}",
        "imp:1",
    ]);
    assert_eq!(env.trim(), r#"["FOO=bar"] a message"#);
    let out = d.docker(&["import", "--change", "RUN true", tarball.to_str().unwrap()]);
    assert!(
        stderr(&out).contains("RUN true is not a valid change command"),
        "{}",
        stderr(&out)
    );

    // Half a tarball: the load fails with the reason, and nothing is listed.
    let saved = d.dir.path().join("imp.tar");
    d.docker_ok(&["save", "-o", saved.to_str().unwrap(), "imp:1"]);
    let bytes = std::fs::read(&saved).unwrap();
    std::fs::write(&saved, &bytes[..bytes.len() / 2]).unwrap();
    d.docker_ok(&["rmi", "imp:1"]);
    let out = d.docker(&["load", "-i", saved.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("archive"), "{}", stderr(&out));
    assert_eq!(d.docker_ok(&["images", "-q"]).trim(), "");
}
