//! `update`: change the resource limits of a created, running or paused container by
//! writing its cgroup, from a LinuxResources JSON (`--resources FILE|-`) or runc's flags.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxPids, LinuxResources};

use crate::cgroups;
use crate::state::{State, Status};

/// runc's `update` flags. Byte sizes take runc's suffixes (k, m, g, t; binary); -1 is no limit.
#[derive(Debug, Default, clap::Args)]
pub struct UpdateFlags {
    /// A LinuxResources JSON file, or `-` for stdin; the other flags are then ignored.
    #[arg(long, short)]
    pub resources: Option<PathBuf>,
    #[arg(long, value_parser = parse_bytes, allow_hyphen_values = true)]
    pub memory: Option<i64>,
    /// Memory plus swap.
    #[arg(long = "memory-swap", value_parser = parse_bytes, allow_hyphen_values = true)]
    pub memory_swap: Option<i64>,
    #[arg(long = "memory-reservation", value_parser = parse_bytes, allow_hyphen_values = true)]
    pub memory_reservation: Option<i64>,
    #[arg(long = "cpu-quota", allow_hyphen_values = true)]
    pub cpu_quota: Option<i64>,
    #[arg(long = "cpu-period")]
    pub cpu_period: Option<u64>,
    #[arg(long = "cpu-shares")]
    pub cpu_shares: Option<u64>,
    #[arg(long = "cpuset-cpus")]
    pub cpuset_cpus: Option<String>,
    #[arg(long = "cpuset-mems")]
    pub cpuset_mems: Option<String>,
    #[arg(long = "pids-limit", allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    #[arg(long = "blkio-weight")]
    pub blkio_weight: Option<u16>,
}

impl UpdateFlags {
    /// The resources to write: the `--resources` JSON, or what the flags set.
    pub fn resources(&self) -> Result<LinuxResources> {
        match &self.resources {
            Some(path) => read_resources(path),
            None => Ok(self.flag_resources()),
        }
    }

    fn flag_resources(&self) -> LinuxResources {
        let mut resources = LinuxResources::default();
        if self.memory.is_some() || self.memory_swap.is_some() || self.memory_reservation.is_some()
        {
            let mut memory = LinuxMemory::default();
            memory
                .set_limit(self.memory)
                .set_swap(self.memory_swap)
                .set_reservation(self.memory_reservation);
            resources.set_memory(Some(memory));
        }
        let cpu_set = self.cpu_quota.is_some()
            || self.cpu_period.is_some()
            || self.cpu_shares.is_some()
            || self.cpuset_cpus.is_some()
            || self.cpuset_mems.is_some();
        if cpu_set {
            let mut cpu = LinuxCpu::default();
            cpu.set_quota(self.cpu_quota)
                .set_period(self.cpu_period)
                .set_shares(self.cpu_shares)
                .set_cpus(self.cpuset_cpus.clone())
                .set_mems(self.cpuset_mems.clone());
            resources.set_cpu(Some(cpu));
        }
        if let Some(limit) = self.pids_limit {
            let mut pids = LinuxPids::default();
            pids.set_limit(limit);
            resources.set_pids(Some(pids));
        }
        if let Some(weight) = self.blkio_weight {
            let mut block_io = LinuxBlockIo::default();
            block_io.set_weight(Some(weight));
            resources.set_block_io(Some(block_io));
        }
        resources
    }
}

fn read_resources(path: &Path) -> Result<LinuxResources> {
    let mut text = String::new();
    if path == Path::new("-") {
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read the resources from stdin")?;
    } else {
        text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
    }
    let de = &mut serde_json::Deserializer::from_str(&text);
    serde_path_to_error::deserialize(de).context("invalid resources JSON")
}

/// Write `resources` to the container's cgroup. The device rules are left as they are: they
/// are the container's, not something `update` changes (as runc).
pub fn update(root: &Path, id: &str, resources: &LinuxResources) -> Result<()> {
    let state = State::load(root, id)?;
    if state.status(root) == Status::Stopped {
        bail!("cannot update container \"{id}\": it is stopped");
    }
    let mut resources = resources.clone();
    resources.set_devices(None);
    cgroups::open(&state.cgroup_path)?
        .apply(&resources)
        .with_context(|| format!("cannot update container \"{id}\""))
}

/// `512`, `100k`, `64m`, `1g`, `1.5G`, `2tb`, or `-1` (no limit): bytes, binary multiples.
pub fn parse_bytes(text: &str) -> Result<i64, String> {
    let lower = text.trim().to_ascii_lowercase();
    if lower == "-1" {
        return Ok(-1);
    }
    let digits_end = lower
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(lower.len());
    let (number, unit) = lower.split_at(digits_end);
    let shift = match unit.trim_end_matches('b').trim_end_matches('i') {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        "p" => 50,
        _ => return Err(format!("invalid size {text:?}: unknown unit {unit:?}")),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("invalid size {text:?}"))?;
    let bytes = value * (1u64 << shift) as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes > i64::MAX as f64 {
        return Err(format!("invalid size {text:?}: out of range"));
    }
    Ok(bytes as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_runc_units() {
        assert_eq!(parse_bytes("512"), Ok(512));
        assert_eq!(parse_bytes("100k"), Ok(100 << 10));
        assert_eq!(parse_bytes("64M"), Ok(64 << 20));
        assert_eq!(parse_bytes("1gb"), Ok(1 << 30));
        assert_eq!(parse_bytes("1.5g"), Ok(3 << 29));
        assert_eq!(parse_bytes("-1"), Ok(-1));
        assert!(parse_bytes("12x").is_err());
        assert!(parse_bytes("").is_err());
    }

    #[test]
    fn flags_set_only_what_is_given() {
        let flags = UpdateFlags {
            memory: Some(1 << 20),
            pids_limit: Some(10),
            ..Default::default()
        };
        let r = flags.resources().unwrap();
        assert_eq!(r.memory().as_ref().unwrap().limit(), Some(1 << 20));
        assert_eq!(r.memory().as_ref().unwrap().swap(), None);
        assert_eq!(r.pids().as_ref().unwrap().limit(), 10);
        assert!(r.cpu().is_none() && r.block_io().is_none());
    }
}
