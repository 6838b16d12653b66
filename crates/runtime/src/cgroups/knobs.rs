//! Resource knobs: how OCI resources become cgroup file writes, with what both versions share.

use std::collections::HashMap;
use std::fmt::Display;
use std::path::PathBuf;

use anyhow::{anyhow, Result};
use nix::errno::Errno;
use oci_spec::runtime::{
    LinuxBlockIo, LinuxCpu, LinuxDeviceCgroup, LinuxHugepageLimit, LinuxMemory, LinuxNetwork,
    LinuxRdma, LinuxResources,
};

use super::fs::{is_errno, write_file};

/// A cgroup's resource knobs, written by file name (`memory.max`, `cpu.shares`, ...).
///
/// Every knob file is named after its controller (`<controller>.<name>`), which is how each
/// version finds it: v1 in the hierarchy of that controller, v2 in its one directory once the
/// controller is enabled. Sections whose files or semantics differ are translated per version.
pub(super) trait Knobs {
    /// How this version spells "no limit" in a byte limit.
    const UNLIMITED: &'static str;
    /// Suffix of a hugepage size's limit file, after `hugetlb.<size>.` (and `.rsvd.`).
    const HUGETLB_LIMIT: &'static str;

    /// The file holding `knob`, or an error naming the knob if its controller is unavailable.
    fn knob_path(&self, knob: &str) -> Result<PathBuf>;

    // The sections whose files or semantics differ between the versions.
    fn apply_cpu(&self, cpu: &LinuxCpu) -> Result<()>;
    fn apply_memory(&self, memory: &LinuxMemory) -> Result<()>;
    fn apply_block_io(&self, block_io: &LinuxBlockIo) -> Result<()>;
    fn apply_network(&self, network: &LinuxNetwork) -> Result<()>;
    fn apply_unified(&self, unified: &HashMap<String, String>) -> Result<()>;
    fn apply_devices(&self, rules: &[LinuxDeviceCgroup]) -> Result<()>;

    /// Writes every resource that is set; unset (None) ones write nothing.
    fn write_resources(&self, resources: &LinuxResources) -> Result<()> {
        if let Some(cpu) = resources.cpu() {
            self.apply_cpu(cpu)?;
            // An empty list would leave no CPU or memory node to run on: it means unset.
            let non_empty = |list: &Option<String>| list.clone().filter(|l| !l.is_empty());
            self.set_some("cpuset.cpus", non_empty(cpu.cpus()))?;
            self.set_some("cpuset.mems", non_empty(cpu.mems()))?;
        }
        if let Some(memory) = resources.memory() {
            self.apply_memory(memory)?;
        }
        if let Some(pids) = resources.pids() {
            // OCI: zero or below means no limit; both versions spell that "max".
            let limit = match pids.limit() {
                limit if limit > 0 => limit.to_string(),
                _ => "max".to_owned(),
            };
            self.set("pids.max", limit)?;
        }
        if let Some(block_io) = resources.block_io() {
            self.apply_block_io(block_io)?;
        }
        for limit in resources.hugepage_limits().iter().flatten() {
            self.apply_hugepage_limit(limit)?;
        }
        if let Some(network) = resources.network() {
            self.apply_network(network)?;
        }
        if let Some(rules) = resources.devices().as_ref().filter(|r| !r.is_empty()) {
            self.apply_devices(rules)?;
        }
        for (device, limits) in resources.rdma().iter().flatten() {
            self.apply_rdma(device, limits)?;
        }
        match resources.unified() {
            Some(unified) if !unified.is_empty() => self.apply_unified(unified),
            _ => Ok(()),
        }
    }

    fn apply_hugepage_limit(&self, limit: &LinuxHugepageLimit) -> Result<()> {
        let prefix = format!("hugetlb.{}", hugepage_size_name(limit.page_size())?);
        let value = Self::limit(limit.limit());
        self.set(&format!("{prefix}.{}", Self::HUGETLB_LIMIT), &value)?;
        // The reservation limit (Linux 5.7+) also counts pages reserved by mmap and not yet
        // faulted in, so a process fails at mmap instead of being killed at fault time. The OCI
        // spec asks for it where the kernel has it, the fault-time limit otherwise.
        self.set_if_present(&format!("{prefix}.rsvd.{}", Self::HUGETLB_LIMIT), &value)?;
        Ok(())
    }

    /// rdma.max takes one line per device naming only the limits being set.
    fn apply_rdma(&self, device: &str, rdma: &LinuxRdma) -> Result<()> {
        let limits: Vec<String> = [
            ("hca_handle", rdma.hca_handles()),
            ("hca_object", rdma.hca_objects()),
        ]
        .into_iter()
        .filter_map(|(key, value)| value.map(|value| format!("{key}={value}")))
        .collect();
        if limits.is_empty() {
            return Ok(());
        }
        self.set("rdma.max", format!("{device} {}", limits.join(" ")))
    }

    fn set(&self, knob: &str, value: impl Display) -> Result<()> {
        write_file(&self.knob_path(knob)?, &value.to_string())
    }

    fn set_some(&self, knob: &str, value: Option<impl Display>) -> Result<()> {
        value.map_or(Ok(()), |value| self.set(knob, value))
    }

    /// Like [`Knobs::set`], but a knob file this kernel does not have gives `Ok(false)`, for
    /// knobs that are optional or have a fallback.
    fn set_if_present(&self, knob: &str, value: impl Display) -> Result<bool> {
        match self.set(knob, value) {
            Ok(()) => Ok(true),
            Err(e) if is_errno(&e, Errno::ENOENT) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Writes two knobs the kernel validates against each other (memory limit <= memory+swap
    /// limit, CFS quota against period, RT runtime <= RT period). `first` first is the order
    /// that works when lowering; when raising the kernel refuses it with EINVAL, and then the
    /// other order works. Either may be unset.
    fn set_pair(
        &self,
        (first, first_value): (&str, Option<impl Display>),
        (second, second_value): (&str, Option<impl Display>),
    ) -> Result<()> {
        match self.set_some(first, first_value.as_ref()) {
            Err(e) if second_value.is_some() && is_errno(&e, Errno::EINVAL) => {
                self.set_some(second, second_value.as_ref())?;
                self.set_some(first, first_value.as_ref())
            }
            result => result.and_then(|()| self.set_some(second, second_value.as_ref())),
        }
    }

    /// A byte limit, where OCI's -1 (any negative value) means none.
    fn limit(value: i64) -> String {
        if value < 0 {
            Self::UNLIMITED.to_owned()
        } else {
            value.to_string()
        }
    }
}

/// The controller a knob file belongs to: the part of its name before the first dot.
pub(super) fn controller_of(knob: &str) -> &str {
    knob.split('.').next().unwrap_or(knob)
}

/// The kernel's name for a hugepage size in hugetlb file names ("64KB", "2MB", "1GB"), from the
/// OCI `pageSize` ("<size><unit-prefix>B"), which may be spelled otherwise ("2048KB", "2M").
pub(super) fn hugepage_size_name(page_size: &str) -> Result<String> {
    let invalid =
        || anyhow!("invalid hugepage size {page_size:?}: expected a size like 2MB or 1GB");
    let digits = page_size
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(page_size.len());
    let (number, unit) = page_size.split_at(digits);
    let number: u64 = number.parse().map_err(|_| invalid())?;
    let unit = unit.strip_suffix(['B', 'b']).unwrap_or(unit);
    let shift = match unit.to_ascii_uppercase().as_str() {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        _ => return Err(invalid()),
    };
    let bytes = number.checked_mul(1 << shift).ok_or_else(invalid)?;
    // As mm/hugetlb_cgroup.c names them: in the largest unit the size reaches.
    let (unit_shift, unit) = [(30, "GB"), (20, "MB"), (10, "KB")]
        .into_iter()
        .find(|&(shift, _)| bytes >> shift > 0)
        .ok_or_else(invalid)?;
    Ok(format!("{}{unit}", bytes >> unit_shift))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hugepage_sizes_use_kernel_names() {
        for (oci, kernel) in [
            ("2MB", "2MB"),
            ("1GB", "1GB"),
            ("64KB", "64KB"),
            ("64kB", "64KB"),
            ("2048KB", "2MB"),
            ("1024MB", "1GB"),
            ("2M", "2MB"),
            ("2097152", "2MB"),
        ] {
            assert_eq!(hugepage_size_name(oci).unwrap(), kernel, "{oci}");
        }
        for bad in ["", "MB", "2XB", "512B", "-2MB"] {
            assert!(hugepage_size_name(bad).is_err(), "{bad}");
        }
    }
}
