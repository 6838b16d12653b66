//! Layers unpacked into the layer store and mounted as a container's overlay snapshot.

use std::fs;
use std::path::Path;

use berth_image::digest::Digest;
use berth_image::layer::AppliedLayer;
use berth_image::snapshot::{LayerStore, Snapshot};

/// What an unpack that wrote its files directly reports.
fn applied(diff_id: Digest) -> AppliedLayer {
    AppliedLayer {
        diff_id,
        size: 0,
        content_size: None,
    }
}

/// A layer made by writing files directly (the tar apply has its own tests).
fn layer(
    store: &LayerStore,
    name: &str,
    parent: Option<&Digest>,
    files: &[(&str, &str)],
) -> Digest {
    let chain_id = Digest::of(name.as_bytes());
    store
        .create(&chain_id, parent, |diff: &Path| {
            for (path, text) in files {
                let path = diff.join(path);
                fs::create_dir_all(path.parent().unwrap())?;
                fs::write(path, text)?;
            }
            Ok(applied(Digest::of(name.as_bytes())))
        })
        .unwrap();
    chain_id
}

#[test]
fn snapshot_stacks_layers_under_init_and_a_private_upper() {
    let tmp = tempfile::tempdir().unwrap();
    let store = LayerStore::open(tmp.path()).unwrap();
    let bottom = layer(
        &store,
        "bottom",
        None,
        &[("etc/os", "bottom\n"), ("bin/a", "a")],
    );
    let top = layer(&store, "top", Some(&bottom), &[("etc/os", "top\n")]);
    assert!(store.has(&top) && store.meta(&top).unwrap().parent == Some(bottom.clone()));

    let dir = tmp.path().join("containers/c1");
    let snap = Snapshot::mount(&store, &dir, &[bottom.clone(), top.clone()]).unwrap();
    let guard = Unmount(&dir);
    let read = |p: &str| fs::read_to_string(snap.merged.join(p)).unwrap();
    assert_eq!(read("etc/os"), "top\n", "the upper layer wins");
    assert_eq!(read("bin/a"), "a");
    // The init layer, above the image's: empty files to bind the container's own over,
    // and the mount points.
    for file in ["etc/hostname", "etc/hosts", "etc/resolv.conf"] {
        assert_eq!(read(file), "", "{file}");
    }
    for dir in ["dev", "proc", "sys"] {
        assert!(snap.merged.join(dir).is_dir(), "{dir}");
    }

    fs::write(snap.merged.join("hello"), "hi").unwrap();
    fs::remove_file(snap.merged.join("bin/a")).unwrap();
    assert_eq!(fs::read_to_string(snap.upper.join("hello")).unwrap(), "hi");
    assert!(
        store.diff_dir(&bottom).join("bin/a").exists(),
        "layers stay read-only"
    );
    drop(guard);
    assert!(!dir.join("merged").exists() && !dir.join("upper").exists());
}

#[test]
fn a_failed_unpack_leaves_no_layer() {
    let tmp = tempfile::tempdir().unwrap();
    let store = LayerStore::open(tmp.path()).unwrap();
    let chain_id = Digest::of(b"broken");
    let err = store
        .create(&chain_id, None, |diff: &Path| {
            fs::write(diff.join("half"), "x")?;
            anyhow::bail!("truncated tar")
        })
        .unwrap_err();
    assert!(err.to_string().contains("truncated tar"));
    assert!(!store.has(&chain_id));
    assert!(store.list().unwrap().is_empty());
    assert_eq!(fs::read_dir(tmp.path().join("staging")).unwrap().count(), 0);
}

struct Unmount<'a>(&'a Path);

impl Drop for Unmount<'_> {
    fn drop(&mut self) {
        Snapshot::remove(self.0).unwrap();
    }
}

/// Two unpacks of the same layer at once (two pulls of one image in a daemon) each work in
/// a staging dir of their own; one wins, and the layer holds everything.
#[test]
fn concurrent_unpacks_of_one_layer_do_not_mix() {
    let tmp = tempfile::tempdir().unwrap();
    let store = LayerStore::open(tmp.path()).unwrap();
    let chain_id = Digest::of(b"shared");
    let files: Vec<String> = (0..50).map(|i| format!("f{i}")).collect();
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                store
                    .create(&chain_id, None, |diff: &Path| {
                        for f in &files {
                            fs::write(diff.join(f), f)?;
                        }
                        Ok(applied(chain_id.clone()))
                    })
                    .unwrap();
            });
        }
    });
    let diff = store.diff_dir(&chain_id);
    assert_eq!(fs::read_dir(&diff).unwrap().count(), files.len());
    assert!(store.short_path(&chain_id).unwrap().join("f49").exists());
    store.remove(&chain_id).unwrap();
    assert!(!store.has(&chain_id) && store.list().unwrap().is_empty());
}
