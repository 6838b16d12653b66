//! The engine's image operations (`berth_engine::images`) on a store of their own: what the
//! Docker API answers for list, inspect, history, tag, rmi, prune, pull, push, import, save
//! and load. The registry and the busybox image come from berth-image's test harness
//! (Debian's docker-registry, images built by scripts/registry-fixture.sh and pushed by
//! skopeo).

#[path = "../../image/tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::sync::Mutex;

use berth_engine::images::{self, ContainerUse, ImportRequest};
use berth_engine::Error;
use berth_image::config::chain_ids;
use berth_image::digest::Digest;
use berth_image::images::ImageStore;
use berth_image::reference::Reference;
use common::*;
use serde_json::Value;

fn store() -> (tempfile::TempDir, ImageStore) {
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::open(&tmp.path().join("image")).unwrap();
    (tmp, store)
}

/// busybox from the harness's OCI layout, as `busybox:latest`.
fn load_busybox(store: &ImageStore) -> Digest {
    let repo = Reference::parse_normalized("busybox").unwrap();
    store
        .load_oci_layout(&busybox_oci_layout(), Some(&repo))
        .unwrap()[0]
        .id
        .clone()
}

fn no_filters() -> HashMap<String, Vec<String>> {
    HashMap::new()
}

fn filters(pairs: &[(&str, &str)]) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for (k, v) in pairs {
        out.entry(k.to_string()).or_default().push(v.to_string());
    }
    out
}

fn container(id_char: char, image: &Digest, running: bool) -> ContainerUse {
    ContainerUse {
        id: id_char.to_string().repeat(64),
        image_id: image.to_string(),
        running,
    }
}

fn message(err: Error) -> (u16, String) {
    (err.status(), err.message())
}

#[test]
fn list_inspect_and_history_show_what_docker_shows() {
    let (_tmp, store) = store();
    let id = load_busybox(&store);

    let list = images::list(&store, false, &no_filters()).unwrap();
    assert_eq!(list.len(), 1);
    let summary = &list[0];
    assert_eq!(summary.id, id.to_string());
    assert_eq!(summary.repo_tags, ["busybox:latest"]);
    assert!(summary.size > 100_000, "{}", summary.size);
    assert_eq!((summary.shared_size, summary.containers), (-1, -1));
    let json = serde_json::to_value(summary).unwrap();
    for key in [
        "Id",
        "ParentId",
        "RepoTags",
        "RepoDigests",
        "Created",
        "Size",
        "Labels",
    ] {
        assert!(json.get(key).is_some(), "{key} missing in {json}");
    }

    for (f, want) in [
        (filters(&[("dangling", "true")]), 0),
        (filters(&[("dangling", "false")]), 1),
        (filters(&[("reference", "busy*")]), 1),
        (filters(&[("reference", "busybox:latest")]), 1),
        (filters(&[("reference", "nope")]), 0),
        (filters(&[("label", "nope")]), 0),
    ] {
        assert_eq!(
            images::list(&store, false, &f).unwrap().len(),
            want,
            "{f:?}"
        );
    }
    let err = images::list(&store, false, &filters(&[("color", "red")])).unwrap_err();
    assert_eq!(message(err), (400, "invalid filter 'color'".to_string()));

    let details = images::inspect(&store, "busybox").unwrap();
    let json = serde_json::to_value(&details).unwrap();
    assert_eq!(json["Id"], id.to_string());
    assert_eq!(json["RepoTags"], serde_json::json!(["busybox:latest"]));
    assert_eq!(json["Config"]["Cmd"], serde_json::json!(["sh"]));
    assert!(json["ContainerConfig"].is_object(), "{json}");
    assert_eq!(json["RootFS"]["Type"], "layers");
    assert_eq!(json["RootFS"]["Layers"].as_array().unwrap().len(), 1);
    assert_eq!(json["GraphDriver"]["Name"], "overlay2");
    let upper = json["GraphDriver"]["Data"]["UpperDir"].as_str().unwrap();
    assert!(
        std::path::Path::new(upper).join("bin/busybox").exists(),
        "{upper}"
    );
    assert_eq!(json["Os"], "linux");
    // By id prefix too; a missing name in Docker's words.
    assert_eq!(
        images::inspect(&store, &id.hex()[..10]).unwrap().inspect.id,
        Some(id.to_string())
    );
    let err = images::inspect(&store, "nope").unwrap_err();
    assert_eq!(
        message(err),
        (404, "No such image: nope:latest".to_string())
    );

    let history = images::history(&store, "busybox").unwrap();
    assert_eq!(history[0].id, id.to_string());
    assert_eq!(history[0].tags, ["busybox:latest"]);
    assert!(history.iter().skip(1).all(|h| h.id == "<missing>"));
    assert!(history.iter().any(|h| h.size > 0));
}

#[test]
fn tag_and_rmi_follow_dockers_rules_for_images_containers_use() {
    let (_tmp, store) = store();
    let id = load_busybox(&store);
    let chain = {
        let config =
            berth_image::config::ImageConfig::parse(&store.content.read(&id).unwrap()).unwrap();
        chain_ids(&config.rootfs.diff_ids)
    };
    images::tag(&store, "busybox", "localhost:5000/copy", "v1").unwrap();
    let tags = images::list(&store, false, &no_filters()).unwrap()[0]
        .repo_tags
        .clone();
    assert_eq!(tags, ["busybox:latest", "localhost:5000/copy:v1"]);
    let err = images::tag(&store, "nope", "x", "").unwrap_err();
    assert_eq!(
        message(err),
        (404, "No such image: nope:latest".to_string())
    );
    let err = images::tag(&store, "busybox", "Bad", "").unwrap_err();
    assert_eq!(err.status(), 400);

    // One of two names: untagged only, even with a container using the image.
    let stopped = [container('c', &id, false)];
    let removed = images::remove(&store, &stopped, "localhost:5000/copy:v1", false).unwrap();
    assert_eq!(removed.lines(), ["Untagged: localhost:5000/copy:v1"]);

    // The last name of an image a container uses: only with force.
    let err = images::remove(&store, &stopped, "busybox", false).unwrap_err();
    assert_eq!(
        message(err),
        (
            409,
            format!(
                "conflict: unable to remove repository reference \"busybox\" (must force) - \
                 container cccccccccccc is using its referenced image {}",
                &id.hex()[..12]
            )
        )
    );
    // By id: a running container's image never goes, a stopped one's only with force.
    let running = [container('r', &id, true)];
    let err = images::remove(&store, &running, id.hex(), true).unwrap_err();
    assert_eq!(
        message(err),
        (
            409,
            format!(
                "conflict: unable to delete {} (cannot be forced) - image is being used by \
                 running container rrrrrrrrrrrr",
                &id.hex()[..12]
            )
        )
    );
    let err = images::remove(&store, &stopped, &id.hex()[..12], false).unwrap_err();
    assert!(message(err)
        .1
        .contains("(must be forced) - image is being used by stopped"));
    // By name with force while it runs: the name goes, the image stays.
    let removed = images::remove(&store, &running, "busybox", true).unwrap();
    assert_eq!(removed.lines(), ["Untagged: busybox:latest"]);
    assert_eq!(store.index.images().unwrap(), std::slice::from_ref(&id));
    // By id with force, stopped: deleted, its layers kept for the container.
    let removed = images::remove(&store, &stopped, &id.to_string(), true).unwrap();
    assert_eq!(removed.deleted, Some(id.clone()));
    assert!(store.index.images().unwrap().is_empty());
    assert_eq!(store.layers.list().unwrap(), chain);
    let err = images::remove(&store, &[], "busybox", false).unwrap_err();
    assert_eq!(
        message(err),
        (404, "No such image: busybox:latest".to_string())
    );
}

#[test]
fn prune_takes_dangling_images_or_every_unused_one() {
    let (_tmp, store) = store();
    let id = load_busybox(&store);
    // Tagged: the default prune keeps it.
    let (report, _) = images::prune(&store, &[], &no_filters()).unwrap();
    assert_eq!(report.images_deleted, Some(vec![]));
    // Used by a container: even `dangling=false` keeps it.
    let users = [container('a', &id, false)];
    let all = filters(&[("dangling", "false")]);
    let (report, _) = images::prune(&store, &users, &all).unwrap();
    assert_eq!(report.images_deleted, Some(vec![]));
    // Unused: untagged and deleted, its layer's size reclaimed.
    let (report, removed) = images::prune(&store, &[], &all).unwrap();
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["ImagesDeleted"][0]["Untagged"], "busybox:latest");
    assert_eq!(json["ImagesDeleted"][1]["Deleted"], id.to_string());
    assert!(json["SpaceReclaimed"].as_i64().unwrap() > 100_000, "{json}");
    assert_eq!(removed.len(), 1);
    assert!(store.layers.list().unwrap().is_empty());
    assert!(store.content.list().unwrap().is_empty());

    // A dangling one goes with the default filter.
    let id = load_busybox(&store);
    store
        .index
        .untag(&Reference::parse_normalized("busybox").unwrap())
        .unwrap();
    let listed = images::list(&store, false, &filters(&[("dangling", "true")])).unwrap();
    assert_eq!(listed[0].repo_tags, ["<none>:<none>"]);
    let (report, _) = images::prune(&store, &[], &no_filters()).unwrap();
    let deleted = report.images_deleted.unwrap();
    // The image, then its layer; nothing to untag.
    assert_eq!(deleted[0].deleted, Some(id.to_string()));
    assert_eq!(deleted.len(), 2);
    assert!(deleted.iter().all(|d| d.untagged.is_none()));
}

/// Collects what a pull or push emits.
struct Messages(Mutex<Vec<Value>>);

impl Messages {
    fn new() -> Messages {
        Messages(Mutex::new(Vec::new()))
    }
    fn emit(&self) -> impl Fn(Value) + Sync + '_ {
        move |v| self.0.lock().unwrap().push(v)
    }
    fn take(&self) -> Vec<Value> {
        std::mem::take(&mut self.0.lock().unwrap())
    }
}

fn statuses(messages: &[Value]) -> Vec<String> {
    messages
        .iter()
        .filter_map(|m| m["status"].as_str().map(String::from))
        .collect()
}

#[test]
fn pull_and_push_speak_dockers_progress_messages() {
    let registry = Registry::start();
    push_with_skopeo(&busybox_oci_layout(), &registry, "busybox:latest");
    let (_tmp, store) = store();
    let reference =
        images::pull_reference(&format!("{}/busybox", registry.host()), "latest").unwrap();
    let client = images::registry_client(&reference, None);
    let platform = images::parse_platform("").unwrap();
    let messages = Messages::new();

    let id = images::pull(&store, &client, &reference, &platform, &messages.emit()).unwrap();
    let got = messages.take();
    let said = statuses(&got);
    let layer = got
        .iter()
        .find(|m| m["status"] == "Pulling fs layer")
        .and_then(|m| m["id"].as_str())
        .expect("a layer")
        .to_string();
    assert_eq!(layer.len(), 12);
    assert_eq!(said[0], "Pulling from busybox");
    assert_eq!(got[0]["id"], "latest");
    let order: Vec<&str> = got
        .iter()
        .filter(|m| m["id"] == layer.as_str())
        .map(|m| m["status"].as_str().unwrap())
        .collect();
    let mut expected = vec!["Pulling fs layer", "Downloading"];
    let downloads = order.iter().filter(|s| **s == "Downloading").count();
    expected.extend(std::iter::repeat_n("Downloading", downloads - 1));
    expected.extend([
        "Verifying Checksum",
        "Download complete",
        "Extracting",
        "Pull complete",
    ]);
    assert_eq!(order, expected);
    let download = got.iter().find(|m| m["status"] == "Downloading").unwrap();
    assert!(download["progressDetail"]["total"].as_u64().unwrap() > 0);
    assert!(
        download["progress"].as_str().unwrap().starts_with('['),
        "{download}"
    );
    let record = store.index.image(&id).unwrap().unwrap();
    let digest = record.index.unwrap_or(record.manifest);
    assert_eq!(said[said.len() - 2], format!("Digest: {digest}"));
    assert_eq!(
        said[said.len() - 1],
        format!(
            "Status: Downloaded newer image for {}/busybox:latest",
            registry.host()
        )
    );
    let listed = images::list(&store, false, &no_filters()).unwrap();
    assert_eq!(
        listed[0].repo_digests,
        [format!("{}/busybox@{digest}", registry.host())]
    );

    // Again: nothing to download.
    images::pull(&store, &client, &reference, &platform, &messages.emit()).unwrap();
    let said = statuses(&messages.take());
    assert!(said.contains(&"Already exists".to_string()), "{said:?}");
    assert_eq!(
        said.last().unwrap(),
        &format!(
            "Status: Image is up to date for {}/busybox:latest",
            registry.host()
        )
    );

    // A tag the registry lacks: a 404 before any message.
    let missing = images::pull_reference(&format!("{}/busybox", registry.host()), "nope").unwrap();
    let err = images::pull(&store, &client, &missing, &platform, &messages.emit()).unwrap_err();
    assert_eq!(err.status(), 404, "{}", err.message());
    assert!(
        err.message().starts_with(&format!(
            "manifest for {}/busybox:nope not found",
            registry.host()
        )),
        "{}",
        err.message()
    );
    assert!(messages.take().is_empty());

    // Push under another name: every layer is already there.
    let copy = format!("{}/copy", registry.host());
    images::tag(&store, &id.to_string(), &copy, "v2").unwrap();
    let pushed = images::push(&store, &client, &copy, "v2", &messages.emit()).unwrap();
    assert_eq!(pushed.len(), 1);
    let got = messages.take();
    let said = statuses(&got);
    assert_eq!(said[0], format!("The push refers to repository [{copy}]"));
    assert!(said.contains(&"Preparing".to_string()), "{said:?}");
    assert!(
        said.contains(&"Layer already exists".to_string()) || said.contains(&"Pushed".to_string()),
        "{said:?}"
    );
    let last = said.last().unwrap();
    assert!(
        last.starts_with("v2: digest: sha256:") && last.contains(" size: "),
        "{last}"
    );
    assert_eq!(got.last().unwrap()["aux"]["Tag"], "v2");
    // What was pushed pulls back, by a client that is not berth.
    let inspected = skopeo(&[
        "inspect",
        "--tls-verify=false",
        &registry.docker_ref("copy:v2"),
    ]);
    assert!(inspected.contains("\"Digest\""), "{inspected}");
    let err = images::push(
        &store,
        &client,
        &format!("{}/absent", registry.host()),
        "",
        &messages.emit(),
    )
    .unwrap_err();
    assert_eq!(err.status(), 404);
    assert!(err
        .message()
        .starts_with("An image does not exist locally with the tag"));
}

#[test]
fn import_save_and_load_round_trip() {
    let (tmp, store) = store();
    let id = load_busybox(&store);
    let mut saved = Vec::new();
    images::check_names(&store, &["busybox".to_string()]).unwrap();
    images::save(&store, &["busybox".to_string()], &mut saved).unwrap();
    let err = images::check_names(&store, &["nope".to_string()]).unwrap_err();
    assert_eq!(err.status(), 404);

    let other = ImageStore::open(&tmp.path().join("other")).unwrap();
    let loaded = images::load(&other, &[], &saved[..]).unwrap();
    assert_eq!(loaded[0].id, id);
    assert_eq!(
        images::load_messages(&loaded),
        [serde_json::json!({"stream": "Loaded image: busybox:latest\n"})]
    );
    // A broken archive is an error, and leaves nothing once collected (load collects).
    let err = images::load(&other, &[], &saved[..saved.len() / 2]).unwrap_err();
    assert_eq!(err.status(), 500);
    assert_eq!(other.index.images().unwrap(), std::slice::from_ref(&id));

    // Import the rootfs tarball the save holds as a layer, with config changes.
    let layer = {
        let mut archive = tar::Archive::new(&saved[..]);
        let mut found = None;
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            if entry.size() > 100_000 {
                let mut bytes = Vec::new();
                std::io::Read::read_to_end(&mut entry, &mut bytes).unwrap();
                found = Some(bytes);
            }
        }
        found.expect("a layer in the archive")
    };
    let request = ImportRequest {
        repo: "imported".to_string(),
        tag: "1".to_string(),
        changes: vec![r#"CMD ["/bin/sh"]"#.to_string(), "ENV A=b".to_string()],
        message: "from a test".to_string(),
        platform: String::new(),
    };
    let imported = images::import(&other, &layer[..], &request).unwrap();
    let json = serde_json::to_value(images::inspect(&other, "imported:1").unwrap()).unwrap();
    assert_eq!(json["Id"], imported.to_string());
    assert_eq!(json["Config"]["Cmd"], serde_json::json!(["/bin/sh"]));
    assert_eq!(json["Config"]["Env"], serde_json::json!(["A=b"]));
    assert_eq!(json["Comment"], "from a test");
    let bad = ImportRequest {
        changes: vec!["RUN rm -rf /".to_string()],
        ..request
    };
    assert_eq!(
        images::import(&other, &layer[..], &bad)
            .unwrap_err()
            .status(),
        400
    );
}
