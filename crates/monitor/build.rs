//! berth-monitor is linked position-dependent (`-no-pie`). As a PIE, every monitor applied
//! ~9,500 relative relocations before `main`: 1 ms of the container's start, and ~180 KiB of
//! private dirty pages (its `.data.rel.ro`) in each of them, for the whole life of the
//! container. Position-dependent, those pages stay clean, shared file pages. The libraries,
//! stack, heap and mappings are still placed at random; only the binary's own image is not
//! (as with Go's default executables, containerd's shims among them).

fn main() {
    println!("cargo:rustc-link-arg-bins=-no-pie");
}
