//! The registry fixture works: images made without berth's code, pushed by skopeo to a real
//! docker-registry, read back by skopeo and over plain HTTP, and parsed by berth's
//! `parse_any`.

mod common;

use std::net::TcpStream;
use std::path::Path;

use berth_image::digest::Digest;
use berth_image::layer::Compression;
use berth_image::manifest::{layer_compression, media_type, parse_any, Manifest, Parsed};
use common::{
    busybox_oci_layout, busybox_two_layer_oci_layout, layout_blob, layout_manifest,
    push_with_skopeo, read, skopeo, Registry, WHITED_OUT_FILE,
};
use serde_json::Value;

/// The manifest the registry serves for `name:tag`, fetched by hand and parsed by
/// `parse_any`; checks the registry names it by `digest`.
fn served_manifest(registry: &Registry, name_tag: &str, digest: &str) -> Manifest {
    let (name, tag) = name_tag.split_once(':').expect("name:tag");
    let response = registry.get(
        &format!("/v2/{name}/manifests/{tag}"),
        &media_type::ACCEPTED_MANIFESTS,
    );
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.header("docker-content-digest"), Some(digest));
    let parsed = parse_any(response.header("content-type"), response.body.as_slice()).unwrap();
    let Parsed::Manifest(doc) = parsed else {
        panic!("the registry served an index for {name_tag}: {parsed:?}");
    };
    assert_eq!(doc.media_type(), media_type::OCI_MANIFEST);
    assert_eq!(doc.digest().to_string(), digest);
    doc.into_value()
}

/// The config digest of a manifest, read as plain JSON.
fn config_digest(manifest: &[u8]) -> String {
    let value: Value = serde_json::from_slice(manifest).expect("manifest JSON");
    value["config"]["digest"]
        .as_str()
        .expect("config digest")
        .to_string()
}

/// Entry names of a gzipped layer tar.
fn layer_entries(blob: &Path) -> Vec<String> {
    let gz = flate2::read::GzDecoder::new(std::fs::File::open(blob).expect("open layer"));
    let mut archive = tar::Archive::new(gz);
    let entries = archive.entries().expect("tar entries");
    entries
        .map(|e| {
            e.expect("tar entry")
                .path()
                .expect("path")
                .display()
                .to_string()
        })
        .collect()
}

#[test]
fn skopeo_push_is_served_as_built() {
    let layout = busybox_oci_layout();
    let (digest, manifest) = layout_manifest(&layout);
    let registry = Registry::start();
    push_with_skopeo(&layout, &registry, "busybox:latest");

    let reference = registry.docker_ref("busybox:latest");
    let raw = skopeo(&["inspect", "--raw", "--tls-verify=false", &reference]);
    assert_eq!(config_digest(raw.as_bytes()), config_digest(&manifest));
    let inspect: Value =
        serde_json::from_str(&skopeo(&["inspect", "--tls-verify=false", &reference]))
            .expect("skopeo inspect JSON");
    assert_eq!(
        inspect["Digest"],
        digest.as_str(),
        "skopeo rewrote the manifest"
    );

    let served = served_manifest(&registry, "busybox:latest", &digest);
    assert_eq!(served.layers.len(), 1);
    assert_eq!(served.config.digest.to_string(), config_digest(&manifest));
    let compression = layer_compression(&served.layers[0].media_type).unwrap();
    assert_eq!(compression, Compression::Gzip);

    let port = registry.port();
    drop(registry);
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the registry still answers on port {port} after drop"
    );
}

#[test]
fn two_layer_image_deletes_with_a_whiteout() {
    let layout = busybox_two_layer_oci_layout();
    let (digest, _) = layout_manifest(&layout);
    let registry = Registry::start();
    push_with_skopeo(&layout, &registry, "busybox:whiteout");
    let served = served_manifest(&registry, "busybox:whiteout", &digest);
    assert_eq!(served.layers.len(), 2);

    // The base layer is the one-layer image's, byte for byte.
    let (_, base_manifest) = layout_manifest(&busybox_oci_layout());
    let base: Value = serde_json::from_slice(&base_manifest).unwrap();
    assert_eq!(
        served.layers[0].digest.to_string(),
        base["layers"][0]["digest"]
    );

    let (dir, file) = WHITED_OUT_FILE.rsplit_once('/').unwrap();
    let lower = layer_entries(&layout_blob(&layout, &served.layers[0].digest.to_string()));
    assert!(lower.contains(&format!("./{WHITED_OUT_FILE}")), "{lower:?}");
    let upper = layer_entries(&layout_blob(&layout, &served.layers[1].digest.to_string()));
    assert!(upper.contains(&"./hello".to_string()), "{upper:?}");
    assert!(upper.contains(&format!("./{dir}/.wh.{file}")), "{upper:?}");

    // The registry serves the blobs skopeo pushed, intact.
    let top = &served.layers[1].digest;
    let blob = registry.get(&format!("/v2/busybox/blobs/{top}"), &["*/*"]);
    assert_eq!(blob.status, 200);
    assert_eq!(&Digest::of(&blob.body), top);
    assert_eq!(read(&layout_blob(&layout, &top.to_string())), blob.body);
}
