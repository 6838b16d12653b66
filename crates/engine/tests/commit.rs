//! `docker commit` without a daemon: the rw layer of a real busybox snapshot becomes one new
//! layer of a tagged, immediately mountable image.

mod fixture;

use std::fs;

use berth_engine::commit::{commit_image, instructions, merge, ImageCommit};
use berth_image::config::{chain_ids, ContainerConfig, ImageConfig};
use berth_image::manifest::{media_type, parse_any, Parsed};
use berth_image::reference::Reference;
use berth_image::snapshot::Snapshot;
use fixture::{entries, Container};

#[test]
fn commit_makes_one_layer_of_the_rw_layer_and_a_runnable_tagged_image() {
    let c = Container::new();
    fs::write(c.rootfs().join("hello"), "hi\n").unwrap();
    let parent = ImageConfig::parse(&c.images.content.read(&c.image_id).unwrap()).unwrap();

    let mut config = parent.config.clone();
    instructions::apply_changes(&mut config, &[r#"CMD ["echo","x"]"#.to_string()]).unwrap();
    merge(&mut config, &parent.config);
    let reference = Reference::parse_normalized("committed:v1").unwrap();
    let commit = ImageCommit {
        parent: c.image_id.clone(),
        config,
        container_id: "c0ffee".into(),
        container_config: serde_json::json!({"Cmd": ["sh"]}),
        comment: "a message".into(),
        author: "someone".into(),
        created_by: "sh".into(),
        reference: Some(reference.clone()),
    };
    let id = commit_image(&c.images, &c.snapshot.upper, &commit).unwrap();
    assert_ne!(id, c.image_id);
    assert_eq!(c.images.index.resolve("committed:v1").unwrap(), id);

    let config = ImageConfig::parse(&c.images.content.read(&id).unwrap()).unwrap();
    assert_eq!(
        config.config.cmd.as_deref(),
        Some(&["echo".to_string(), "x".to_string()][..])
    );
    assert_eq!(
        config.config.env, parent.config.env,
        "the rest of the config is kept"
    );
    assert_eq!(
        config.rootfs.diff_ids.len(),
        parent.rootfs.diff_ids.len() + 1
    );
    assert_eq!(
        config.rootfs.diff_ids[..parent.rootfs.diff_ids.len()],
        parent.rootfs.diff_ids[..]
    );
    let last = config.history.last().unwrap();
    assert_eq!(
        (last.comment.as_deref(), last.author.as_deref()),
        (Some("a message"), Some("someone"))
    );
    assert_eq!(config.author.as_deref(), Some("someone"));
    assert_eq!(config.extra["container"], "c0ffee");

    // The manifest: the parent's layers and the new one, which holds exactly /hello.
    let record = c.images.index.image(&id).unwrap().unwrap();
    let Parsed::Manifest(doc) =
        parse_any(None, c.images.content.read(&record.manifest).unwrap()).unwrap()
    else {
        panic!("not a manifest");
    };
    let manifest = doc.into_value();
    assert_eq!(manifest.config.digest, id);
    assert_eq!(manifest.layers.len(), config.rootfs.diff_ids.len());
    let new_layer = manifest.layers.last().unwrap();
    assert!(
        [media_type::DOCKER_LAYER, media_type::OCI_LAYER].contains(&new_layer.media_type.as_str()),
        "{}",
        new_layer.media_type
    );
    assert_eq!(
        &new_layer.digest,
        config.rootfs.diff_ids.last().unwrap(),
        "plain tar: digest = diff_id"
    );
    let tar = c.images.content.read(&new_layer.digest).unwrap();
    let names: Vec<(String, Vec<u8>)> = entries(&tar).into_iter().map(|(n, _, d)| (n, d)).collect();
    assert_eq!(names, vec![("hello".to_string(), b"hi\n".to_vec())]);

    // Runnable at once: its layers are unpacked and mount with /hello in place.
    let chain = chain_ids(&config.rootfs.diff_ids);
    assert!(chain.iter().all(|c_id| c.images.layers.has(c_id)));
    let dir = c.tmp.path().join("containers/c2/rootfs");
    let snap = Snapshot::mount(&c.images.layers, &dir, &chain).unwrap();
    let hello = fs::read_to_string(snap.merged.join("hello"));
    let busybox = snap.merged.join("bin/busybox").exists() || snap.merged.join("bin/sh").exists();
    Snapshot::remove(&dir).unwrap();
    assert_eq!(hello.unwrap(), "hi\n");
    assert!(busybox);
}

#[test]
fn an_untagged_commit_is_a_dangling_image() {
    let c = Container::new();
    fs::write(c.rootfs().join("x"), "").unwrap();
    let commit = ImageCommit {
        parent: c.image_id.clone(),
        config: ContainerConfig::default(),
        container_id: "c".into(),
        container_config: serde_json::Value::Null,
        comment: String::new(),
        author: String::new(),
        created_by: String::new(),
        reference: None,
    };
    let before = c.images.index.list().unwrap().len();
    let id = commit_image(&c.images, &c.snapshot.upper, &commit).unwrap();
    assert!(c.images.index.image(&id).unwrap().is_some());
    assert_eq!(
        c.images.index.list().unwrap().len(),
        before,
        "no new reference"
    );
}

#[test]
fn merge_keeps_the_containers_settings_the_user_left_unset() {
    let base = ContainerConfig {
        env: vec!["A=1".into(), "B=2".into()],
        cmd: Some(vec!["sh".into()]),
        working_dir: "/w".into(),
        ..ContainerConfig::default()
    };
    let mut user = ContainerConfig {
        env: vec!["B=3".into()],
        ..ContainerConfig::default()
    };
    merge(&mut user, &base);
    assert_eq!(user.env, vec!["B=3", "A=1"]);
    assert_eq!(user.cmd, Some(vec!["sh".to_string()]));
    assert_eq!(user.working_dir, "/w");
}
