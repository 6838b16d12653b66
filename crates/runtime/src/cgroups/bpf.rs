//! The device cgroup on cgroup v2: the rule list compiled to an eBPF program of type
//! BPF_PROG_TYPE_CGROUP_DEVICE and attached to the container's cgroup directory (v2 has no
//! devices.allow). The kernel runs it on every open/mknod of a device node by a process in
//! the cgroup; it returns 1 to allow, 0 to refuse (EPERM).
//!
//! Semantics are those of v1's lists as runc applies them: the last rule that matches a
//! request decides, where an allow rule matches when it grants every access asked for and a
//! deny rule when it refuses any of them; a rule `a *:* rwm` sets the default for what no
//! later rule matches (allow when there is none, as a fresh v1 cgroup).

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use anyhow::{bail, Context, Result};
use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_DETACH: libc::c_long = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_PROG_QUERY: libc::c_long = 16;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

/// `struct bpf_cgroup_dev_ctx`: access_type (access << 16 | type), major, minor.
const CTX_ACCESS_TYPE: i16 = 0;
const CTX_MAJOR: i16 = 4;
const CTX_MINOR: i16 = 8;
const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;
const ACC_MKNOD: i32 = 1;
const ACC_READ: i32 = 2;
const ACC_WRITE: i32 = 4;
const ACC_ALL: i32 = ACC_MKNOD | ACC_READ | ACC_WRITE;

/// Registers of the program: r1 the context, then the request's fields.
const R0: u8 = 0;
const R1: u8 = 1;
const R_TYPE: u8 = 2;
const R_ACCESS: u8 = 3;
const R_MAJOR: u8 = 4;
const R_MINOR: u8 = 5;

/// `struct bpf_insn`: opcode, dst_reg (low nibble) and src_reg (high nibble), offset, imm.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: dst | (src << 4),
        off,
        imm,
    }
}

// Opcodes: class | op | source. BPF_LDX|BPF_MEM|BPF_W, BPF_ALU (32-bit) and BPF_JMP32.
fn load_u32(dst: u8, offset: i16) -> Insn {
    insn(0x61, dst, R1, offset, 0)
}
fn and_imm(dst: u8, imm: i32) -> Insn {
    insn(0x54, dst, 0, 0, imm)
}
fn rsh_imm(dst: u8, imm: i32) -> Insn {
    insn(0x74, dst, 0, 0, imm)
}
fn mov_imm(dst: u8, imm: i32) -> Insn {
    insn(0xb4, dst, 0, 0, imm)
}
fn mov_reg(dst: u8, src: u8) -> Insn {
    insn(0xbc, dst, src, 0, 0)
}
/// if dst != imm goto +off
fn jne_imm(dst: u8, imm: i32, off: i16) -> Insn {
    insn(0x56, dst, 0, off, imm)
}
/// if dst != src goto +off
fn jne_reg(dst: u8, src: u8, off: i16) -> Insn {
    insn(0x5e, dst, src, off, 0)
}
/// if dst == imm goto +off
fn jeq_imm(dst: u8, imm: i32, off: i16) -> Insn {
    insn(0x16, dst, 0, off, imm)
}
fn exit() -> Insn {
    insn(0x95, 0, 0, 0, 0)
}

fn access_bits(rule: &LinuxDeviceCgroup) -> i32 {
    let access = rule.access().as_deref().filter(|a| !a.is_empty());
    access.map_or(ACC_ALL, |a| {
        a.chars().fold(0, |bits, c| match c {
            'r' => bits | ACC_READ,
            'w' => bits | ACC_WRITE,
            'm' => bits | ACC_MKNOD,
            _ => bits,
        })
    })
}

fn type_bits(rule: &LinuxDeviceCgroup) -> Option<i32> {
    match rule.typ().unwrap_or(LinuxDeviceType::A) {
        LinuxDeviceType::B => Some(DEV_BLOCK),
        LinuxDeviceType::C | LinuxDeviceType::U => Some(DEV_CHAR),
        _ => None,
    }
}

/// A rule that matches every device and access: it resets the list.
fn matches_everything(rule: &LinuxDeviceCgroup) -> bool {
    type_bits(rule).is_none()
        && rule.major().is_none_or(|m| m < 0)
        && rule.minor().is_none_or(|m| m < 0)
        && access_bits(rule) == ACC_ALL
}

fn number(n: Option<i64>, what: &str) -> Result<Option<i32>> {
    match n {
        None => Ok(None),
        Some(n) if n < 0 => Ok(None),
        Some(n) => u32::try_from(n)
            .map(|n| Some(n as i32))
            .with_context(|| format!("device rule: {what} {n} is out of range")),
    }
}

/// One rule's block: its conditions jump to the end of the block (the next rule) when the
/// request does not match; otherwise it returns the rule's verdict.
fn rule_block(rule: &LinuxDeviceCgroup) -> Result<Vec<Insn>> {
    let mut conditions: Vec<Vec<Insn>> = vec![];
    if let Some(typ) = type_bits(rule) {
        conditions.push(vec![jne_imm(R_TYPE, typ, 0)]);
    }
    let access = access_bits(rule);
    if rule.allow() && access != ACC_ALL {
        // Allowed only if every access asked for is granted: (asked & rule) == asked.
        conditions.push(vec![
            mov_reg(R1, R_ACCESS),
            and_imm(R1, access),
            jne_reg(R1, R_ACCESS, 0),
        ]);
    } else if !rule.allow() && access != ACC_ALL {
        // Refused if any access asked for is denied: (asked & rule) != 0.
        conditions.push(vec![
            mov_reg(R1, R_ACCESS),
            and_imm(R1, access),
            jeq_imm(R1, 0, 0),
        ]);
    }
    if let Some(major) = number(rule.major(), "major")? {
        conditions.push(vec![jne_imm(R_MAJOR, major, 0)]);
    }
    if let Some(minor) = number(rule.minor(), "minor")? {
        conditions.push(vec![jne_imm(R_MINOR, minor, 0)]);
    }
    let verdict = [mov_imm(R0, i32::from(rule.allow())), exit()];
    let mut block: Vec<Insn> = conditions.into_iter().flatten().collect();
    let len = block.len() + verdict.len();
    for (i, ins) in block.iter_mut().enumerate() {
        // Every jump so far is "to the next rule": the instruction after this block.
        if ins.code & 0x07 == 0x06 {
            ins.off = i16::try_from(len - i - 1).context("device rule too long")?;
        }
    }
    block.extend(verdict);
    Ok(block)
}

/// The program for `rules` (in config order, as `devices::complete` leaves them).
pub fn device_filter(rules: &[LinuxDeviceCgroup]) -> Result<Vec<Insn>> {
    let reset = rules.iter().rposition(matches_everything);
    let default_allow = reset.is_none_or(|i| rules[i].allow());
    let after_reset = &rules[reset.map_or(0, |i| i + 1)..];
    let mut prog = vec![
        load_u32(R_TYPE, CTX_ACCESS_TYPE),
        and_imm(R_TYPE, 0xffff),
        load_u32(R_ACCESS, CTX_ACCESS_TYPE),
        rsh_imm(R_ACCESS, 16),
        load_u32(R_MAJOR, CTX_MAJOR),
        load_u32(R_MINOR, CTX_MINOR),
    ];
    // The last matching rule wins: test them from the last one back.
    for rule in after_reset.iter().rev() {
        prog.extend(rule_block(rule)?);
    }
    prog.extend([mov_imm(R0, i32::from(default_allow)), exit()]);
    Ok(prog)
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is the repr(C) prefix of union bpf_attr this command reads, and its size
    // is passed; the kernel zero-extends the rest.
    let ret =
        unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut T, std::mem::size_of::<T>()) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ret)
}

fn owned(fd: libc::c_long) -> OwnedFd {
    // SAFETY: a descriptor bpf(2) just returned to us.
    unsafe { OwnedFd::from_raw_fd(fd as RawFd) }
}

#[repr(C)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// Load the program. Without a log first (a verbose log of a long rule list could overflow
/// any buffer and fail the load by itself); when the verifier refuses it, again with the log,
/// which becomes the error.
fn load(prog: &[Insn]) -> Result<OwnedFd> {
    let err = match load_with_log(prog, &mut []) {
        Ok(fd) => return Ok(fd),
        Err(e) => e,
    };
    let mut log = vec![0u8; 256 * 1024];
    let _ = load_with_log(prog, &mut log);
    let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
    let text = String::from_utf8_lossy(&log[..end]);
    bail!(
        "cannot load the device cgroup program: {err}: {}",
        text.trim()
    )
}

/// BPF_PROG_LOAD, with the verifier's log in `log` unless it is empty.
fn load_with_log(prog: &[Insn], log: &mut [u8]) -> Result<OwnedFd> {
    const LICENSE: &CStr = c"Apache";
    let mut name = [0u8; 16];
    name[..12].copy_from_slice(b"berth_device");
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: u32::try_from(prog.len()).context("device program too long")?,
        insns: prog.as_ptr() as u64,
        license: LICENSE.as_ptr() as u64,
        log_level: u32::from(!log.is_empty()),
        log_size: u32::try_from(log.len()).unwrap_or(u32::MAX),
        log_buf: if log.is_empty() {
            0
        } else {
            log.as_mut_ptr() as u64
        },
        kern_version: 0,
        prog_flags: 0,
        prog_name: name,
        prog_ifindex: 0,
        expected_attach_type: BPF_CGROUP_DEVICE,
    };
    Ok(owned(bpf(BPF_PROG_LOAD, &mut attr)?))
}

#[repr(C)]
struct AttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

#[repr(C)]
struct QueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    _pad: u32,
}

#[repr(C)]
struct GetFdByIdAttr {
    prog_id: u32,
    next_id: u32,
    open_flags: u32,
}

/// The ids of the device programs attached to the cgroup `dir` (an open directory).
pub fn attached(dir: &OwnedFd) -> Result<Vec<u32>> {
    let mut ids = vec![0u32; 64];
    let mut attr = QueryAttr {
        target_fd: dir.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        query_flags: 0,
        attach_flags: 0,
        prog_ids: ids.as_mut_ptr() as u64,
        prog_cnt: ids.len() as u32,
        _pad: 0,
    };
    bpf(BPF_PROG_QUERY, &mut attr).context("cannot list the cgroup's device programs")?;
    ids.truncate(attr.prog_cnt as usize);
    Ok(ids)
}

fn attach_cmd(cmd: libc::c_long, dir: &OwnedFd, prog: &OwnedFd, flags: u32) -> io::Result<()> {
    let mut attr = AttachAttr {
        target_fd: dir.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: flags,
        replace_bpf_fd: 0,
    };
    bpf(cmd, &mut attr).map(drop)
}

/// Enforce `rules` on the cgroup directory `dir`: the new program is attached next to the
/// ones there (BPF_F_ALLOW_MULTI, so nested runtimes can attach their own below), then the
/// old ones (an `update`'s predecessor) are detached. In between both apply, so no access the
/// old and the new rules both refuse is ever allowed.
pub fn apply(dir: &Path, rules: &[LinuxDeviceCgroup]) -> Result<()> {
    let what = || format!("cgroup {}", dir.display());
    let dir_fd =
        OwnedFd::from(std::fs::File::open(dir).with_context(|| format!("cannot open {}", what()))?);
    let prog = load(&device_filter(rules)?)?;
    let old = attached(&dir_fd).with_context(what)?;
    attach_cmd(BPF_PROG_ATTACH, &dir_fd, &prog, BPF_F_ALLOW_MULTI)
        .with_context(|| format!("cannot attach the device program to {}", what()))?;
    for id in old {
        let mut attr = GetFdByIdAttr {
            prog_id: id,
            next_id: 0,
            open_flags: 0,
        };
        let old_prog = match bpf(BPF_PROG_GET_FD_BY_ID, &mut attr) {
            Ok(fd) => owned(fd),
            // Detached meanwhile.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot open device program {id}")),
        };
        match attach_cmd(BPF_PROG_DETACH, &dir_fd, &old_prog, 0) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot detach device program {id} from {}", what()))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxDeviceCgroupBuilder;

    fn rule(
        allow: bool,
        typ: LinuxDeviceType,
        major: Option<i64>,
        access: &str,
    ) -> LinuxDeviceCgroup {
        let mut b = LinuxDeviceCgroupBuilder::default()
            .allow(allow)
            .typ(typ)
            .access(access);
        if let Some(m) = major {
            b = b.major(m).minor(3);
        }
        b.build().unwrap()
    }

    /// Runs the program on one request, as the kernel would.
    fn run(prog: &[Insn], typ: i32, access: i32, major: u32, minor: u32) -> u32 {
        let ctx = [((access as u32) << 16) | typ as u32, major, minor];
        let mut r = [0u32; 11];
        let mut pc = 0usize;
        loop {
            let i = prog[pc];
            let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
            let jump = |cond: bool| if cond { i.off as isize } else { 0 };
            let mut next = 1isize;
            match i.code {
                0x61 => r[dst] = ctx[i.off as usize / 4],
                0x54 => r[dst] &= i.imm as u32,
                0x74 => r[dst] >>= i.imm,
                0xb4 => r[dst] = i.imm as u32,
                0xbc => r[dst] = r[src],
                0x56 => next += jump(r[dst] != i.imm as u32),
                0x5e => next += jump(r[dst] != r[src]),
                0x16 => next += jump(r[dst] == i.imm as u32),
                0x95 => return r[0],
                c => panic!("unknown opcode {c:#x}"),
            }
            pc = (pc as isize + next) as usize;
        }
    }

    #[test]
    fn last_matching_rule_wins_after_the_last_reset() {
        let rules = vec![
            rule(true, LinuxDeviceType::A, None, "rwm"),
            rule(false, LinuxDeviceType::A, None, "rwm"),
            rule(true, LinuxDeviceType::C, Some(1), "rwm"),
            rule(true, LinuxDeviceType::B, None, "m"),
            rule(false, LinuxDeviceType::C, Some(1), "w"),
        ];
        let prog = device_filter(&rules).unwrap();
        // c 1:3: read allowed, write denied by the last rule; c 1:1 never allowed.
        assert_eq!(run(&prog, DEV_CHAR, ACC_READ, 1, 3), 1);
        assert_eq!(run(&prog, DEV_CHAR, ACC_WRITE, 1, 3), 0);
        assert_eq!(run(&prog, DEV_CHAR, ACC_READ | ACC_WRITE, 1, 3), 0);
        assert_eq!(run(&prog, DEV_CHAR, ACC_READ, 1, 1), 0);
        // Block devices: mknod only.
        assert_eq!(run(&prog, DEV_BLOCK, ACC_MKNOD, 7, 0), 1);
        assert_eq!(run(&prog, DEV_BLOCK, ACC_READ, 7, 0), 0);
        // No rule at all: everything allowed, as a fresh v1 cgroup.
        assert_eq!(
            run(&device_filter(&[]).unwrap(), DEV_BLOCK, ACC_READ, 8, 0),
            1
        );
    }
}
