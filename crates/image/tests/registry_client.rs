//! The registry client against a real registry (Debian's docker-registry on 127.0.0.1):
//! images pushed by skopeo are read back, what berth pushes skopeo reads, corruption and
//! unknown names give their distinct errors, and Basic and bearer-token auth work with the
//! credentials going only where they may.

mod common;

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};
use std::{fs, thread};

use berth_image::digest::Digest;
use berth_image::manifest::media_type::OCI_MANIFEST;
use berth_image::registry::{
    ClientOptions, Credentials, RegistryClient, RegistryError, Repository,
};
use common::{
    busybox_oci_layout, layout_blob, layout_manifest, push_with_skopeo, skopeo, Registry,
};

const USER: &str = "berth";
const PASSWORD: &str = "s3cret-pass";

fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// openssl (the registry comes with the harness), installed once per test process.
fn install_tools() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| berth_testkit::need_debian_packages(&["openssl"]));
}

fn client_for(registry: &str, creds: Option<(&str, &str)>) -> RegistryClient {
    let mut credentials = HashMap::new();
    if let Some((user, password)) = creds {
        credentials.insert(registry.to_string(), Credentials::new(user, password));
    }
    RegistryClient::new(ClientOptions {
        credentials,
        ..ClientOptions::default()
    })
}

/// A tiny image: a config, one layer of arbitrary bytes and its OCI manifest.
struct TinyImage {
    config: Vec<u8>,
    layer: Vec<u8>,
    manifest: Vec<u8>,
}

fn tiny_image(seed: &str) -> TinyImage {
    let layer = format!("layer bytes of {seed}").into_bytes();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [Digest::of(&layer).to_string()]},
    }))
    .unwrap();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": Digest::of(&config).to_string(), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": Digest::of(&layer).to_string(), "size": layer.len()}],
    }))
    .unwrap();
    TinyImage {
        config,
        layer,
        manifest,
    }
}

/// Pushes `image` as `repo:tag`; returns the manifest digest.
fn push_tiny(client: &RegistryClient, repo: &Repository, image: &TinyImage) -> Digest {
    for blob in [&image.layer, &image.config] {
        let size = blob.len() as u64;
        client
            .push_blob(repo, &Digest::of(blob), size, &blob[..])
            .unwrap();
    }
    client
        .push_manifest(repo, "v1", OCI_MANIFEST, &image.manifest)
        .unwrap()
}

// --- registries with auth ---------------------------------------------------------------

/// A registry that wants bearer tokens from `realm`, signed by the key in `token_dir`.
fn token_registry(realm: &str, token_dir: &Path) -> Registry {
    Registry::start_with_auth(|_| {
        format!(
            "  token:\n    realm: {realm}\n    service: berth-registry\n    \
             issuer: berth-test\n    rootcertbundle: {}\n",
            token_dir.join("cert.pem").display()
        )
    })
}

// --- a tiny HTTP server for token realms and redirect targets ---------------------------

/// What a [`MiniServer`] saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    line: String,
    authorization: Option<String>,
}

/// Answers every request on a free loopback port with `respond`, recording what it saw. Its
/// thread serves only the requests this test makes and ends with the test process.
struct MiniServer {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl MiniServer {
    fn start(respond: impl Fn(&Seen) -> Vec<u8> + Send + 'static) -> MiniServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        thread::spawn(move || {
            for mut stream in listener.incoming().flatten() {
                let Some(request) = read_head(&stream) else {
                    continue;
                };
                log.lock().unwrap().push(request.clone());
                stream.write_all(&respond(&request)).ok();
            }
        });
        MiniServer { port, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn read_head(stream: &TcpStream) -> Option<Seen> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut authorization = None;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':')?;
        if name.eq_ignore_ascii_case("authorization") {
            authorization = Some(value.trim().to_string());
        }
    }
    let line = line.trim_end().to_string();
    Some(Seen {
        line,
        authorization,
    })
}

fn response(status: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    [head.into_bytes(), body.to_vec()].concat()
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    let pair = format!("{user}:{password}");
    let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
    format!("Basic {encoded}")
}

/// A self-signed RSA key and a token (RS256 JWT with the cert in `x5c`) granting pull and
/// push on `repo` for an hour, made with openssl: what a token server would hand out.
fn signed_token(dir: &Path, repo: &str) -> String {
    let script = r#"
set -euo pipefail
D=$1 REPO=$2
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$D/key.pem" -out "$D/cert.pem" \
    -days 2 -subj /CN=berth-test-token 2>/dev/null
b64url() { base64 -w0 | tr '+/' '-_' | tr -d '='; }
X5C=$(openssl x509 -in "$D/cert.pem" -outform DER | base64 -w0)
NOW=$(date +%s)
H=$(printf '{"typ":"JWT","alg":"RS256","x5c":["%s"]}' "$X5C" | b64url)
C=$(printf '{"iss":"berth-test","sub":"%s","aud":"berth-registry","exp":%d,"nbf":%d,"iat":%d,"jti":"%s","access":[{"type":"repository","name":"%s","actions":["pull","push"]}]}' \
    berth $((NOW + 3600)) $((NOW - 60)) "$NOW" "$NOW" "$REPO" | b64url)
S=$(printf '%s.%s' "$H" "$C" | openssl dgst -sha256 -sign "$D/key.pem" -binary | b64url)
printf '%s.%s.%s' "$H" "$C" "$S"
"#;
    let out = run(Command::new("bash")
        .args(["-c", script, "signed_token"])
        .arg(dir)
        .arg(repo));
    String::from_utf8(out).unwrap()
}

/// A token server: hands out `token` (as `access_token`) to requests with our Basic
/// credentials, 401 to any other.
fn token_server(token: String) -> MiniServer {
    let expected = basic(USER, PASSWORD);
    MiniServer::start(move |seen| {
        if seen.authorization.as_deref() != Some(expected.as_str()) {
            let body = br#"{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}"#;
            return response("401 Unauthorized", &[], body);
        }
        let body = format!(r#"{{"access_token":"{token}","expires_in":300}}"#);
        response(
            "200 OK",
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        )
    })
}

fn assert_unauthorized(result: Result<impl std::fmt::Debug, RegistryError>, needle: &str) {
    match result {
        Err(e @ RegistryError::Unauthorized { .. }) => {
            assert!(e.to_string().contains(needle), "{e}");
        }
        other => panic!("want Unauthorized, got {other:?}"),
    }
}

#[test]
fn basic_auth_with_htpasswd() {
    let registry = Registry::start_with_htpasswd(USER, PASSWORD);
    let repo = Repository::new(&registry.host(), "basic/tiny").unwrap();
    let image = tiny_image("basic");

    let client = client_for(&registry.host(), Some((USER, PASSWORD)));
    let digest = push_tiny(&client, &repo, &image);
    let got = client.get_manifest(&repo, "v1", &[]).unwrap();
    assert_eq!((got.digest, got.bytes), (digest, image.manifest.clone()));

    let anonymous = client_for(&registry.host(), None);
    let result = anonymous.get_manifest(&repo, "v1", &[]);
    assert_unauthorized(result, "requires a username and password");

    let wrong = client_for(&registry.host(), Some((USER, "wrong")));
    assert_unauthorized(wrong.get_manifest(&repo, "v1", &[]), &registry.host());
    let layer = Digest::of(&image.layer);
    assert_unauthorized(wrong.blob_exists(&repo, &layer), &registry.host());
}

#[test]
fn bearer_token_auth_with_a_token_server() {
    install_tools();
    let keys = tempfile::tempdir().unwrap();
    let server = token_server(signed_token(keys.path(), "tok/tiny"));
    let realm = format!("http://127.0.0.1:{}/token", server.port);
    let registry = token_registry(&realm, keys.path());
    let repo = Repository::new(&registry.host(), "tok/tiny").unwrap();
    let image = tiny_image("token");

    let client = client_for(&registry.host(), Some((USER, PASSWORD)));
    let digest = push_tiny(&client, &repo, &image);
    let got = client
        .get_manifest(&repo, &digest.to_string(), &[])
        .unwrap();
    assert_eq!(got.bytes, image.manifest);
    let mut blob = Vec::new();
    let layer = Digest::of(&image.layer);
    client
        .get_blob(&repo, &layer)
        .unwrap()
        .read_to_end(&mut blob)
        .unwrap();
    assert_eq!(blob, image.layer);

    // One token per scope (push, then pull), each reused from the cache afterwards.
    let seen = server.seen();
    let scopes: Vec<&str> = seen.iter().map(|s| s.line.as_str()).collect();
    assert_eq!(scopes.len(), 2, "{scopes:?}");
    assert!(scopes[0].contains("scope=repository%3Atok%2Ftiny%3Apull%2Cpush"));
    assert!(scopes[0].contains("service=berth-registry"));
    assert!(scopes[1].contains("scope=repository%3Atok%2Ftiny%3Apull "));

    // A repository the token does not cover: the registry still says 401.
    let other = Repository::new(&registry.host(), "tok/other").unwrap();
    assert_unauthorized(client.get_manifest(&other, "v1", &[]), "");

    let wrong = client_for(&registry.host(), Some((USER, "wrong")));
    assert_unauthorized(wrong.get_manifest(&repo, "v1", &[]), "bad credentials");
}

#[test]
fn credentials_are_not_sent_along_a_redirect_to_another_host() {
    let content = b"blob stored elsewhere".to_vec();
    let digest = Digest::of(&content);
    let body = content.clone();
    let storage = MiniServer::start(move |_| response("200 OK", &[], &body));
    let target = format!("http://127.0.0.1:{}/bucket/blob", storage.port);
    let expected = basic(USER, PASSWORD);
    let registry = MiniServer::start(move |seen| {
        if seen.authorization.as_deref() != Some(expected.as_str()) {
            let challenge = [("WWW-Authenticate", r#"Basic realm="mini""#)];
            return response("401 Unauthorized", &challenge, b"");
        }
        response("307 Temporary Redirect", &[("Location", &target)], b"")
    });
    let host = format!("127.0.0.1:{}", registry.port);
    let client = client_for(&host, Some((USER, PASSWORD)));
    let repo = Repository::new(&host, "redirected").unwrap();

    let mut got = Vec::new();
    let mut reader = client.get_blob(&repo, &digest).unwrap();
    reader.read_to_end(&mut got).unwrap();
    assert_eq!(got, content);

    let registry_seen = registry.seen();
    assert_eq!(registry_seen.len(), 2, "anonymous, then with credentials");
    assert!(registry_seen[1].authorization.is_some());
    let storage_seen = storage.seen();
    assert_eq!(storage_seen.len(), 1);
    assert_eq!(storage_seen[0].authorization, None, "credentials leaked");
}

// --- against the harness's auth-less registry -------------------------------------------

fn plain_client() -> RegistryClient {
    RegistryClient::new(ClientOptions::default())
}

/// The config and layer descriptors (digest, size) of a manifest, read as plain JSON.
fn blobs_of(manifest: &[u8]) -> Vec<(Digest, u64)> {
    let value: serde_json::Value = serde_json::from_slice(manifest).unwrap();
    let layers = value["layers"].as_array().unwrap().iter();
    std::iter::once(&value["config"])
        .chain(layers)
        .map(|d| {
            let digest = d["digest"].as_str().unwrap().parse().unwrap();
            (digest, d["size"].as_u64().unwrap())
        })
        .collect()
}

/// A registry holding the busybox layout as `busybox:latest`, pushed by skopeo.
fn registry_with_busybox() -> (Registry, Repository) {
    let registry = Registry::start();
    push_with_skopeo(&busybox_oci_layout(), &registry, "busybox:latest");
    let repo = Repository::new(&registry.host(), "busybox").unwrap();
    (registry, repo)
}

fn skopeo_digest(registry: &Registry, name_tag: &str) -> String {
    let image = registry.docker_ref(name_tag);
    let args = [
        "inspect",
        "--tls-verify=false",
        "--format",
        "{{.Digest}}",
        &image,
    ];
    skopeo(&args).trim().to_string()
}

fn read_blob(client: &RegistryClient, repo: &Repository, digest: &Digest) -> io::Result<Vec<u8>> {
    let mut content = Vec::new();
    client
        .get_blob(repo, digest)
        .unwrap()
        .read_to_end(&mut content)?;
    Ok(content)
}

#[test]
fn manifest_pushed_by_skopeo_reads_back_with_its_digest() {
    let (registry, repo) = registry_with_busybox();
    let client = plain_client();
    let got = client.get_manifest(&repo, "latest", &[]).unwrap();
    assert_eq!(
        got.digest.to_string(),
        skopeo_digest(&registry, "busybox:latest")
    );
    assert_eq!(got.media_type, OCI_MANIFEST);
    let (layout_digest, layout_bytes) = layout_manifest(&busybox_oci_layout());
    assert_eq!(got.digest.to_string(), layout_digest);
    assert_eq!(got.bytes, layout_bytes);

    let by_digest = client.get_manifest(&repo, &layout_digest, &[]).unwrap();
    assert_eq!(by_digest, got);
    let head = client.head_manifest(&repo, "latest", &[]).unwrap();
    assert_eq!(head.digest, Some(got.digest));
    assert_eq!(head.size, Some(got.bytes.len() as u64));
    assert_eq!(head.media_type, OCI_MANIFEST);
}

#[test]
fn blobs_stream_with_their_digest_verified_on_parallel_threads() {
    let (_registry, repo) = registry_with_busybox();
    let layout = busybox_oci_layout();
    let (_, manifest) = layout_manifest(&layout);
    let blobs = blobs_of(&manifest);
    let client = plain_client();
    thread::scope(|scope| {
        for (digest, size) in blobs.iter().chain(&blobs) {
            let (client, repo, layout) = (&client, &repo, &layout);
            scope.spawn(move || {
                let mut reader = client.get_blob(repo, digest).unwrap();
                assert_eq!(reader.content_length(), Some(*size));
                assert_eq!(reader.digest(), digest);
                let mut content = Vec::new();
                reader.read_to_end(&mut content).unwrap();
                let expected = common::read(&layout_blob(layout, &digest.to_string()));
                assert!(content == expected, "{digest}: content differs");
            });
        }
    });
    let (layer, _) = &blobs[1];
    assert!(client.blob_exists(&repo, layer).unwrap());
}

/// The registry's storage file of blob `digest`.
fn stored_blob(registry: &Registry, digest: &Digest) -> PathBuf {
    let hex = digest.hex();
    let blobs = "storage/docker/registry/v2/blobs/sha256";
    registry
        .dir()
        .join(blobs)
        .join(&hex[..2])
        .join(hex)
        .join("data")
}

/// Flips one byte in the middle of the registry's copy of blob `digest`; returns the new
/// digest.
fn corrupt(registry: &Registry, digest: &Digest) -> Digest {
    corrupt_with(registry, digest, |content| {
        let middle = content.len() / 2;
        content[middle] ^= 0x20;
    })
}

/// Changes one hex digit of the first digest inside the registry's copy of manifest `digest`:
/// still valid JSON (the registry serves it as it is), but other bytes than were pushed.
fn corrupt_manifest(registry: &Registry, digest: &Digest) -> Digest {
    corrupt_with(registry, digest, |content| {
        let at = content
            .windows(7)
            .position(|w| w == b"sha256:")
            .expect("a digest in the manifest")
            + 7;
        content[at] = if content[at] == b'0' { b'1' } else { b'0' };
    })
}

fn corrupt_with(registry: &Registry, digest: &Digest, change: impl FnOnce(&mut Vec<u8>)) -> Digest {
    let path = stored_blob(registry, digest);
    let mut content = fs::read(&path).unwrap();
    change(&mut content);
    fs::write(&path, &content).unwrap();
    Digest::of(&content)
}

fn assert_mismatch(err: RegistryError, want_expected: &Digest, want_actual: &Digest) {
    match err {
        RegistryError::DigestMismatch { expected, actual } => {
            assert_eq!((&expected, &actual), (want_expected, want_actual));
        }
        other => panic!("want DigestMismatch, got {other:?}"),
    }
}

#[test]
fn corrupted_blobs_and_manifests_are_digest_mismatches() {
    // Its own registry: blobs are shared by every repository of a registry.
    let (registry, repo) = registry_with_busybox();
    let client = plain_client();
    let manifest = client.get_manifest(&repo, "latest", &[]).unwrap();
    let (layer, _) = blobs_of(&manifest.bytes)[1].clone();

    let corrupted = corrupt(&registry, &layer);
    let err = read_blob(&client, &repo, &layer).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    let err = RegistryError::from_io(err, "reading the layer");
    assert_mismatch(err, &layer, &corrupted);

    let corrupted = corrupt_manifest(&registry, &manifest.digest);
    let by_digest = manifest.digest.to_string();
    let err = client.get_manifest(&repo, &by_digest, &[]).unwrap_err();
    assert_mismatch(err, &manifest.digest, &corrupted);
    // By tag: the registry's Docker-Content-Digest still names the original.
    let err = client.get_manifest(&repo, "latest", &[]).unwrap_err();
    assert_mismatch(err, &manifest.digest, &corrupted);
}

#[test]
fn pushed_image_is_read_back_by_skopeo_and_not_uploaded_twice() {
    let registry = Registry::start();
    let layout = busybox_oci_layout();
    let (digest, manifest) = layout_manifest(&layout);
    let repo = Repository::new(&registry.host(), "berth/pushed").unwrap();
    let client = plain_client();
    for (blob, size) in blobs_of(&manifest) {
        let file = fs::File::open(layout_blob(&layout, &blob.to_string())).unwrap();
        assert!(
            client.push_blob(&repo, &blob, size, file).unwrap(),
            "{blob}"
        );
    }
    let pushed = client
        .push_manifest(&repo, "v1", OCI_MANIFEST, &manifest)
        .unwrap();
    assert_eq!(pushed.to_string(), digest);

    let image = registry.docker_ref("berth/pushed:v1");
    let raw = skopeo(&["inspect", "--raw", "--tls-verify=false", &image]);
    assert_eq!(raw.as_bytes(), manifest.as_slice());
    assert_eq!(skopeo_digest(&registry, "berth/pushed:v1"), digest);

    // A second push finds every blob there and uploads nothing.
    for (blob, size) in blobs_of(&manifest) {
        let file = fs::File::open(layout_blob(&layout, &blob.to_string())).unwrap();
        assert!(
            !client.push_blob(&repo, &blob, size, file).unwrap(),
            "{blob}"
        );
    }
}

#[test]
fn pushing_content_that_does_not_match_its_digest_fails() {
    let registry = Registry::start();
    let repo = Repository::new(&registry.host(), "berth/bad").unwrap();
    let client = plain_client();
    let claimed = Digest::of(b"what the caller claims");
    let content = b"what the caller sends";
    let size = content.len() as u64;
    let err = client
        .push_blob(&repo, &claimed, size, &content[..])
        .unwrap_err();
    assert_mismatch(err, &claimed, &Digest::of(content));
    assert!(!client.blob_exists(&repo, &claimed).unwrap());
    let manifest = tiny_image("bad").manifest;
    let wrong_ref = claimed.to_string();
    let err = client
        .push_manifest(&repo, &wrong_ref, OCI_MANIFEST, &manifest)
        .unwrap_err();
    assert_mismatch(err, &claimed, &Digest::of(&manifest));
}

#[test]
fn unknown_names_give_distinct_errors() {
    let (registry, repo) = registry_with_busybox();
    let client = plain_client();
    let missing = Repository::new(&registry.host(), "no/such-repo").unwrap();
    for result in [
        client.get_manifest(&missing, "latest", &[]).map(|_| ()),
        client.head_manifest(&missing, "latest", &[]).map(|_| ()),
    ] {
        match result {
            Err(e @ RegistryError::NameUnknown { .. }) => {
                assert!(e.to_string().contains("no/such-repo"), "{e}")
            }
            other => panic!("want NameUnknown, got {other:?}"),
        }
    }
    for result in [
        client.get_manifest(&repo, "no-such-tag", &[]).map(|_| ()),
        client.head_manifest(&repo, "no-such-tag", &[]).map(|_| ()),
    ] {
        match result {
            Err(e @ RegistryError::ManifestUnknown { .. }) => {
                assert!(e.to_string().contains("busybox:no-such-tag"), "{e}")
            }
            other => panic!("want ManifestUnknown, got {other:?}"),
        }
    }
    let blob = Digest::of(b"never pushed");
    match client.get_blob(&repo, &blob) {
        Err(e @ RegistryError::BlobUnknown { .. }) => {
            assert!(e.to_string().contains(&blob.to_string()), "{e}")
        }
        other => panic!("want BlobUnknown, got {other:?}"),
    }
    assert!(!client.blob_exists(&repo, &blob).unwrap());
    assert!(!client.blob_exists(&missing, &blob).unwrap());
}

/// A port of 127.0.0.1 that refuses connections for as long as the returned socket lives:
/// bound but not listening. A port found free and let go could be taken by
/// another test's server, or be an outgoing connection's source port, before it is used.
fn dead_port() -> (std::os::fd::OwnedFd, u16) {
    use nix::sys::socket::SockaddrIn;
    use nix::sys::socket::{bind, getsockname, socket, AddressFamily, SockFlag, SockType};
    use std::os::fd::AsRawFd;
    let sock = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .unwrap();
    bind(sock.as_raw_fd(), &SockaddrIn::new(127, 0, 0, 1, 0)).unwrap();
    let bound: SockaddrIn = getsockname(sock.as_raw_fd()).unwrap();
    (sock, bound.port())
}

#[test]
fn a_dead_port_is_connection_refused_naming_the_url() {
    let (_bound, port) = dead_port();
    let host = format!("127.0.0.1:{port}");
    let repo = Repository::new(&host, "busybox").unwrap();
    match plain_client().get_manifest(&repo, "latest", &[]) {
        Err(e @ RegistryError::ConnectionRefused { .. }) => {
            let url = format!("http://{host}/v2/busybox/manifests/latest");
            assert_eq!(e.to_string(), format!("connection refused: {url}"));
        }
        other => panic!("want ConnectionRefused, got {other:?}"),
    }
}
