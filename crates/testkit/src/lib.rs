//! Fixtures the workspace's integration tests share, built by the project's scripts (no berth
//! code) into `<target>/test-fixtures`, where every test binary and every later run finds
//! them:
//!
//! - [`busybox_rootfs`]: `scripts/make-busybox-rootfs.sh`'s tree;
//! - [`busybox_image`]: `scripts/registry-fixture.sh busybox-image`'s OCI layouts.
//!
//! Each is built at most once per test binary, under an flock that serialises the binaries
//! cargo runs side by side. The scripts are idempotent and swap a rebuilt fixture in by
//! rename, so the lock only saves duplicate work; tests use the fixtures read-only.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

/// The workspace's root: where `scripts/` is.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

/// `<target>/test-fixtures`, made if missing.
///
/// Found from the running test binary, which cargo puts in `<target>/<profile>/deps/`
/// (`CARGO_TARGET_TMPDIR` would say the same, but cargo sets it only for the test crates
/// themselves).
pub fn fixtures_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let deps = exe.parent().expect("the test binary's directory");
    assert!(
        deps.ends_with("deps"),
        "{} is not a test binary cargo built (not in <target>/<profile>/deps)",
        exe.display()
    );
    let target = deps
        .parent()
        .and_then(Path::parent)
        .expect("the target directory");
    let dir = target.join("test-fixtures");
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
    dir
}

/// Runs `f` holding an exclusive flock on `<fixtures>/.NAME.lock`, which serialises test
/// binaries doing the same work.
pub fn with_lock<T>(name: &str, f: impl FnOnce() -> T) -> T {
    let path = fixtures_dir().join(format!(".{name}.lock"));
    let file = File::create(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let _lock = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .unwrap_or_else(|e| panic!("flock {}: {e}", path.display()));
    f()
}

/// Runs `scripts/SCRIPT ARGS...` with bash; panics with its output if it fails.
pub fn run_script(script: &str, args: &[&str]) -> Output {
    let path = workspace_root().join("scripts").join(script);
    assert!(path.exists(), "{} is missing", path.display());
    let out = Command::new("bash")
        .arg(&path)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", path.display()));
    assert!(
        out.status.success(),
        "{script} {} failed ({}):\n{}{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Builds the fixture `name` in `<fixtures>/NAME` with `scripts/SCRIPT ARGS... <dir>`, once
/// per test binary.
fn fixture(
    cell: &'static OnceLock<PathBuf>,
    name: &str,
    script: &str,
    args: &[&str],
) -> &'static Path {
    cell.get_or_init(|| {
        let dir = fixtures_dir().join(name);
        let dest = dir.to_str().expect("fixture path is UTF-8");
        let args: Vec<&str> = args.iter().copied().chain([dest]).collect();
        with_lock(name, || run_script(script, &args));
        dir
    })
}

/// The busybox rootfs of `scripts/make-busybox-rootfs.sh` (absolute path). Read-only use only.
pub fn busybox_rootfs() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    fixture(&DIR, "busybox-rootfs", "make-busybox-rootfs.sh", &[])
}

/// The directory of `scripts/registry-fixture.sh busybox-image`: `oci` (busybox in one
/// layer) and `oci-two-layers` (a second layer adds `/hello` and whites out
/// `/etc/berth-busybox-rootfs`), each tagged `latest`. Read-only use only.
pub fn busybox_image() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    fixture(
        &DIR,
        "busybox-image",
        "registry-fixture.sh",
        &["busybox-image"],
    )
}

/// Debian packages, installed through `scripts/deps.sh` where missing (a dpkg query when
/// none is), under the one lock every test binary takes to install: apt runs one at a time.
pub fn need_debian_packages(packages: &[&str]) {
    let deps = workspace_root().join("scripts/deps.sh");
    let script = format!(
        ". '{}' && need_debian_packages {}",
        deps.display(),
        packages.join(" ")
    );
    with_install_lock(|| {
        let out = Command::new("bash")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .output()
            .expect("run bash");
        assert!(
            out.status.success(),
            "installing {packages:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

/// Runs `f` (which installs packages) under the lock all test binaries take to install.
pub fn with_install_lock<T>(f: impl FnOnce() -> T) -> T {
    with_lock("apt-install", f)
}

/// Docker's size of a tree (its `directory.Size`, what it reports for a layer): the lstat
/// sizes of everything but directories, a file with several links counted once.
pub fn files_size(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("a directory entry").path();
            let md =
                fs::symlink_metadata(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            if md.is_dir() {
                pending.push(path);
            } else if md.nlink() == 1 || seen.insert(md.ino()) {
                total += md.len();
            }
        }
    }
    total
}
