//! berth-init as PID 1: exit status, signal forwarding, reaping orphans, static linking.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const INIT: &str = env!("CARGO_BIN_EXE_berth-init");

fn status_of(args: &[&str]) -> i32 {
    let status = Command::new(INIT).args(args).status().unwrap();
    status.code().expect("berth-init itself was killed")
}

#[test]
fn exit_status_is_the_childs() {
    assert_eq!(status_of(&["sh", "-c", "exit 7"]), 7);
    assert_eq!(status_of(&["true"]), 0);
    // Killed by a signal: 128 + the signal, as shells and Docker report it.
    assert_eq!(status_of(&["sh", "-c", "kill -KILL $$"]), 128 + 9);
    assert_eq!(status_of(&["/nonexistent/program"]), 127);
    let not_executable =
        std::env::temp_dir().join(format!("berth-init-test-{}", std::process::id()));
    std::fs::write(&not_executable, "#!/bin/sh\n").unwrap();
    let code = status_of(&[not_executable.to_str().unwrap()]);
    std::fs::remove_file(&not_executable).unwrap();
    assert_eq!(code, 126);
    assert_eq!(status_of(&[]), 2);
}

#[test]
fn signals_are_forwarded_to_the_child() {
    let script = "trap 'echo got-term; exit 42' TERM; echo ready; while :; do sleep 0.05; done";
    let mut init = Command::new(INIT)
        .args(["sh", "-c", script])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(init.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(init.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    line.clear();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "got-term\n");
    assert_eq!(init.wait().unwrap().code(), Some(42));
}

/// In its own PID namespace berth-init is PID 1, so orphans become its children: an orphan
/// that exits must not stay a zombie.
#[test]
fn pid_1_reaps_orphans() {
    let script = r#"
        echo "pid1=$(cat /proc/1/comm)"
        sh -c 'sleep 0.2 & exit 0'
        sleep 0.8
        zombies=0
        for stat in /proc/[0-9]*/stat; do
            case "$(cat "$stat" 2>/dev/null)" in *") Z "*) zombies=$((zombies + 1)) ;; esac
        done
        echo "zombies=$zombies"
        exit 3
    "#;
    let started = Instant::now();
    let output = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", INIT, "sh", "-c", script])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("pid1=berth-init"), "{stdout}");
    assert!(stdout.contains("zombies=0"), "{stdout}");
    assert_eq!(output.status.code(), Some(3), "{output:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// berth-init is bind-mounted into images without a dynamic loader: no PT_INTERP.
#[test]
fn binary_is_static() {
    let elf = std::fs::read(INIT).unwrap();
    assert_eq!(&elf[..4], b"\x7fELF");
    assert_eq!(elf[4], 2, "not a 64-bit ELF");
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into().unwrap()) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    const PT_INTERP: u32 = 3;
    const PT_DYNAMIC: u32 = 2;
    let types: Vec<u32> = (0..phnum)
        .map(|i| {
            let o = phoff + i * phentsize;
            u32::from_le_bytes(elf[o..o + 4].try_into().unwrap())
        })
        .collect();
    assert!(
        !types.contains(&PT_INTERP),
        "berth-init needs a dynamic loader"
    );
    // A static-pie has a PT_DYNAMIC for its own relocations but must need no library.
    if types.contains(&PT_DYNAMIC) {
        let out = Command::new("ldd").arg(INIT).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(!text.contains("=>"), "links shared libraries: {text}");
    }
}

/// Outside its own PID namespace berth-init makes itself the subreaper: orphans of its
/// child come to it (not to the host's init) and are reaped.
#[test]
fn not_pid_1_it_still_reaps_orphans() {
    let output = Command::new(INIT)
        .args(["sh", "-c", "sh -c 'sleep 0.2 & echo $!'; sleep 0.6"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    let orphan: i32 = String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .unwrap();
    let stat = std::fs::read_to_string(format!("/proc/{orphan}/stat")).unwrap_or_default();
    assert!(
        !stat.contains(") Z "),
        "orphan {orphan} left as a zombie: {stat}"
    );
}
