//! berth-init is bind-mounted into root filesystems that have no dynamic loader (or a different
//! libc), so it must be a static executable. Cargo has no per-package `-C target-feature=
//! +crt-static`, and the flag would also have to reach std's `#[link]` attributes; so this
//! script makes the libraries std asks for (`-lc`, `-lgcc_s`, ...) resolve to the static
//! archives, by putting linker scripts of those names first in this package's search path, and
//! links static-pie (or plain static where glibc has no rcrt1.o). It only affects this package:
//! a binary crate's link search paths do not reach other crates.

use std::env;
use std::fs;
use std::path::PathBuf;
use std::process::Command;

/// The libraries std and the libc crate link on linux-gnu; gcc_s (the unwinder) is replaced by
/// its static twin gcc_eh.
const LIBS: &[&str] = &["c", "m", "dl", "rt", "util", "pthread"];

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let target = env::var("TARGET").unwrap_or_default();
    if !target.contains("linux-gnu") {
        // musl targets link statically by default.
        return;
    }
    let cc = env::var("CC").unwrap_or_else(|_| "cc".to_string());
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("static-libs");
    fs::create_dir_all(&out).expect("cannot create the static library directory");
    for lib in LIBS {
        let archive = archive_path(&cc, &format!("lib{lib}.a"));
        write_script(&out, lib, &format!("INPUT({archive})"));
    }
    let unwinder = format!(
        "INPUT({} {})",
        archive_path(&cc, "libgcc_eh.a"),
        archive_path(&cc, "libgcc.a")
    );
    write_script(&out, "gcc_s", &unwinder);
    println!("cargo:rustc-link-search=native={}", out.display());
    if has_file(&cc, "rcrt1.o") {
        println!("cargo:rustc-link-arg=-static-pie");
    } else {
        println!("cargo:rustc-link-arg=-static");
        println!("cargo:rustc-link-arg=-no-pie");
    }
}

fn write_script(dir: &std::path::Path, lib: &str, script: &str) {
    let path = dir.join(format!("lib{lib}.so"));
    fs::write(&path, script).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

/// Where the C compiler finds `name`; panics (failing the build with the reason) when it
/// does not: without the static archives there is no static berth-init.
fn archive_path(cc: &str, name: &str) -> String {
    let found = print_file_name(cc, name);
    if !found.starts_with('/') {
        panic!(
            "{name} not found by `{cc} -print-file-name`: install the static C library (libc6-dev)"
        );
    }
    found
}

fn has_file(cc: &str, name: &str) -> bool {
    print_file_name(cc, name).starts_with('/')
}

fn print_file_name(cc: &str, name: &str) -> String {
    let output = Command::new(cc)
        .arg(format!("-print-file-name={name}"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cc}: {e}"));
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}
