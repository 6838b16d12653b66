//! Harness shared by berth-image's integration tests: a real registry and real images, made
//! by tools nobody here wrote.
//!
//! - [`Registry::start`]: Debian's `docker-registry` on 127.0.0.1 at a free ephemeral port,
//!   in its own directory under `$TMPDIR/berth-test-registries/<pid>-<n>`; dropping it stops
//!   the registry and removes the directory. Registries left behind by a test process that
//!   was killed (its pid is gone) are stopped and removed by the next `start`.
//! - [`busybox_oci_layout`] / [`busybox_two_layer_oci_layout`]: berth-testkit's OCI image
//!   layouts (`scripts/registry-fixture.sh busybox-image`: tar, gzip, sha256sum, jq; no berth
//!   code).
//! - [`skopeo`] and [`push_with_skopeo`]: the independent client.
//! - [`Registry::get`]: a plain HTTP/1.1 GET, to look at what the registry serves.
//!
//! `scripts/registry-fixture.sh install` (idempotent: apt only for what is missing) runs
//! once per test binary, under the install lock shared by all of them.
#![allow(dead_code)]

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;

/// Longest a plain HTTP request to the registry may take.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// Paths, the script
// ---------------------------------------------------------------------------------------------

fn script() -> PathBuf {
    berth_testkit::workspace_root().join("scripts/registry-fixture.sh")
}

/// `registry-fixture.sh install`, once per test binary.
pub fn install() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        berth_testkit::with_install_lock(|| {
            berth_testkit::run_script("registry-fixture.sh", &["install"])
        });
    });
}

// ---------------------------------------------------------------------------------------------
// Images
// ---------------------------------------------------------------------------------------------

fn busybox_image_dir() -> &'static Path {
    install();
    berth_testkit::busybox_image()
}

/// An OCI layout of busybox: one layer, tagged `latest`. Read-only use only.
pub fn busybox_oci_layout() -> PathBuf {
    busybox_image_dir().join("oci")
}

/// An OCI layout of busybox with a second layer that adds `/hello` and deletes
/// `/etc/berth-busybox-rootfs` (a `.wh.` entry). Tagged `latest`. Read-only use only.
pub fn busybox_two_layer_oci_layout() -> PathBuf {
    busybox_image_dir().join("oci-two-layers")
}

/// The file `/etc/berth-busybox-rootfs` the two-layer image deletes.
pub const WHITED_OUT_FILE: &str = "etc/berth-busybox-rootfs";

/// The digest (`sha256:…`) and bytes of the single manifest in an OCI layout's index.json,
/// read without any berth code.
pub fn layout_manifest(layout: &Path) -> (String, Vec<u8>) {
    let index: Value = serde_json::from_slice(&read(&layout.join("index.json")))
        .unwrap_or_else(|e| panic!("{}/index.json: {e}", layout.display()));
    let digest = index["manifests"][0]["digest"]
        .as_str()
        .unwrap_or_else(|| panic!("{}/index.json has no manifest digest", layout.display()))
        .to_string();
    let bytes = read(&layout_blob(layout, &digest));
    (digest, bytes)
}

/// The path of blob `digest` (`sha256:…`) in an OCI layout.
pub fn layout_blob(layout: &Path, digest: &str) -> PathBuf {
    let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
    layout.join("blobs/sha256").join(hex)
}

pub fn read(path: &Path) -> Vec<u8> {
    fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

// ---------------------------------------------------------------------------------------------
// skopeo
// ---------------------------------------------------------------------------------------------

/// Runs `skopeo ARGS...` and returns its stdout; panics with its stderr if it fails.
pub fn skopeo(args: &[&str]) -> String {
    install();
    let out = Command::new("skopeo")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run skopeo");
    assert!(
        out.status.success(),
        "skopeo {} failed ({}):\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("skopeo output is UTF-8")
}

/// `skopeo copy oci:LAYOUT docker://127.0.0.1:PORT/NAME_TAG` (plain HTTP).
pub fn push_with_skopeo(layout: &Path, registry: &Registry, name_tag: &str) {
    let layout = layout.to_str().expect("layout path is UTF-8");
    assert!(
        !layout.contains(':'),
        "skopeo's oci: transport cannot take {layout:?}"
    );
    skopeo(&[
        "copy",
        "--quiet",
        "--dest-tls-verify=false",
        &format!("oci:{layout}"),
        &registry.docker_ref(name_tag),
    ]);
}

// ---------------------------------------------------------------------------------------------
// The registry
// ---------------------------------------------------------------------------------------------

/// A running `docker-registry` on 127.0.0.1, stopped and removed on drop.
pub struct Registry {
    dir: PathBuf,
    port: u16,
}

impl Registry {
    pub fn start() -> Registry {
        Self::start_in(new_registry_dir())
    }

    /// A registry that wants credentials: `auth(dir)` writes what it needs into the
    /// registry's directory (an htpasswd file, a certificate) and gives the lines of the
    /// config's `auth:` section, indented as under that key.
    pub fn start_with_auth(auth: impl FnOnce(&Path) -> String) -> Registry {
        let dir = new_registry_dir();
        let section = auth(&dir);
        fs::write(dir.join("auth.yml"), section).expect("write auth.yml");
        Self::start_in(dir)
    }

    /// A registry that wants Basic auth, `user` and `password` in an htpasswd file.
    pub fn start_with_htpasswd(user: &str, password: &str) -> Registry {
        berth_testkit::need_debian_packages(&["apache2-utils"]);
        Registry::start_with_auth(|dir| {
            let htpasswd = Command::new("htpasswd")
                .args(["-Bbn", user, password])
                .output()
                .expect("run htpasswd");
            assert!(htpasswd.status.success(), "htpasswd: {htpasswd:?}");
            let file = dir.join("htpasswd");
            fs::write(&file, htpasswd.stdout).expect("write htpasswd");
            format!(
                "  htpasswd:\n    realm: berth-basic\n    path: {}\n",
                file.display()
            )
        })
    }

    fn start_in(dir: PathBuf) -> Registry {
        install();
        sweep_leftovers();
        let arg = dir.to_str().expect("temp path is UTF-8").to_string();
        // A free port may be taken by somebody else before the registry binds it: retry.
        let mut failure = String::new();
        for _ in 0..3 {
            let port = free_port();
            let out = Command::new("bash")
                .arg(script())
                .args(["start", &arg, &port.to_string()])
                .stdin(Stdio::null())
                .output()
                .expect("run registry-fixture.sh start");
            if out.status.success() {
                return Registry { dir, port };
            }
            failure = String::from_utf8_lossy(&out.stderr).into_owned();
        }
        let _ = fs::remove_dir_all(&dir);
        panic!("could not start docker-registry in {arg}:\n{failure}");
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`, as image references name it.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `docker://127.0.0.1:PORT/NAME_TAG`, for skopeo.
    pub fn docker_ref(&self, name_tag: &str) -> String {
        format!("docker://{}/{name_tag}", self.host())
    }

    /// The registry's directory (config.yml, storage/, registry.log).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `GET PATH` with the given `Accept` types.
    pub fn get(&self, path: &str, accept: &[&str]) -> HttpResponse {
        http_get(&self.host(), path, accept)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        stop_and_remove(&self.dir);
    }
}

/// Where every test registry's directory lives.
fn registries_dir() -> PathBuf {
    std::env::temp_dir().join("berth-test-registries")
}

/// `<pid>-<n>`: the pid tells a later run whether the owner is still alive.
fn new_registry_dir() -> PathBuf {
    static COUNT: AtomicUsize = AtomicUsize::new(0);
    let n = COUNT.fetch_add(1, Ordering::SeqCst);
    let dir = registries_dir().join(format!("{}-{n}", std::process::id()));
    if dir.exists() {
        // Left by an earlier process that had our pid.
        stop_and_remove(&dir);
    }
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
    dir
}

/// Stops and removes the registries of test processes that are gone (killed mid-test).
fn sweep_leftovers() {
    let Ok(entries) = fs::read_dir(registries_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let owner = name.split('-').next().unwrap_or_default();
        let is_pid = !owner.is_empty() && owner.bytes().all(|b| b.is_ascii_digit());
        if is_pid && !Path::new("/proc").join(owner).exists() {
            stop_and_remove(&entry.path());
        }
    }
}

fn stop_and_remove(dir: &Path) {
    if let Some(arg) = dir.to_str() {
        let status = Command::new("bash")
            .arg(script())
            .args(["stop", arg])
            .stdin(Stdio::null())
            .status();
        if !matches!(status, Ok(s) if s.success()) {
            eprintln!("registry-fixture.sh stop {arg}: {status:?}");
        }
    }
    if let Err(e) = fs::remove_dir_all(dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            eprintln!("remove {}: {e}", dir.display());
        }
    }
}

/// A port nobody listens on right now (the kernel's pick of an ephemeral one).
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

// ---------------------------------------------------------------------------------------------
// Plain HTTP
// ---------------------------------------------------------------------------------------------

/// A response read by [`http_get`].
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first header called `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// `GET PATH` from `host` (`127.0.0.1:PORT`) over HTTP/1.1, hand-written: nothing of the
/// client under test is involved. Chunked responses are not handled (the registry sends a
/// Content-Length for manifests and blobs).
pub fn http_get(host: &str, path: &str, accept: &[&str]) -> HttpResponse {
    let mut stream = TcpStream::connect(host).unwrap_or_else(|e| panic!("connect {host}: {e}"));
    stream
        .set_read_timeout(Some(HTTP_TIMEOUT))
        .expect("read timeout");
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: {}\r\nConnection: close\r\n\r\n",
        accept.join(", ")
    );
    stream.write_all(request.as_bytes()).expect("send request");
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .unwrap_or_else(|e| panic!("GET {path} from {host}: {e}"));
    parse_response(&raw).unwrap_or_else(|e| {
        panic!(
            "GET {path} from {host}: {e}:\n{}",
            String::from_utf8_lossy(&raw)
        )
    })
}

fn parse_response(raw: &[u8]) -> Result<HttpResponse, String> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of headers")?;
    let head = std::str::from_utf8(&raw[..split]).map_err(|e| e.to_string())?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or("bad status line")?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut response = HttpResponse {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    };
    if response.header("transfer-encoding").is_some() {
        return Err("chunked responses are not handled".to_string());
    }
    if let Some(len) = response.header("content-length") {
        let len: usize = len.parse().map_err(|_| "bad Content-Length")?;
        if response.body.len() < len {
            return Err(format!(
                "body cut short: {} of {len} bytes",
                response.body.len()
            ));
        }
        response.body.truncate(len);
    }
    Ok(response)
}

/// `diff -r` of two trees, without following symlinks: empty when they are the same (what
/// diff says on stderr — a tree that is missing — counts as a difference too).
pub fn tree_diff(a: &Path, b: &Path) -> String {
    let out = Command::new("diff")
        .args(["-r", "--no-dereference"])
        .args([a, b])
        .output()
        .expect("diff");
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}
