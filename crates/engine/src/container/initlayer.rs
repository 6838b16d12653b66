//! The init layer's files, as Docker makes them: /etc/hostname, /etc/hosts and
//! /etc/resolv.conf. They live in the container's directory and are bind-mounted over the
//! rootfs's (the snapshot's init layer holds the mount targets), so the container may edit
//! them without those edits showing up in `diff` or `commit`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Docker's default nameservers when the host has only loopback ones (a local resolver the
/// container cannot reach from its own network namespace).
const FALLBACK_NAMESERVERS: [&str; 2] = ["8.8.8.8", "8.8.4.4"];

#[derive(Debug, Clone)]
pub struct InitLayer {
    pub hostname: String,
    pub hosts: String,
    pub resolv_conf: String,
}

impl InitLayer {
    /// The files of a container named `hostname` (and `domainname`), with the host's
    /// resolv.conf `host_resolv` minus loopback nameservers. With the host's network the
    /// host's own /etc/hosts is used, as Docker does.
    pub fn new(
        hostname: &str,
        domainname: &str,
        host_network: bool,
        host_resolv: &str,
    ) -> InitLayer {
        let hosts = if host_network {
            std::fs::read_to_string("/etc/hosts")
                .unwrap_or_else(|_| localhost_hosts(hostname, domainname))
        } else {
            localhost_hosts(hostname, domainname)
        };
        InitLayer {
            hostname: format!("{hostname}\n"),
            hosts,
            resolv_conf: container_resolv_conf(host_resolv),
        }
    }

    /// Write the three files into `dir` (atomically each) and return (path in the container,
    /// host file) for the bind mounts.
    pub fn write(&self, dir: &Path) -> Result<Vec<(&'static str, PathBuf)>> {
        let binds = binds(dir);
        for ((_, path), text) in binds
            .iter()
            .zip([&self.hostname, &self.hosts, &self.resolv_conf])
        {
            // Regenerated when lost: atomic, not durable.
            berth_runtime::state::write_replace(path, text.as_bytes())
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        Ok(binds)
    }
}

/// (path in the container, host file) of the init files a container keeps in `dir`.
pub fn binds(dir: &Path) -> Vec<(&'static str, PathBuf)> {
    [
        ("/etc/hostname", "hostname"),
        ("/etc/hosts", "hosts"),
        ("/etc/resolv.conf", "resolv.conf"),
    ]
    .into_iter()
    .map(|(target, name)| (target, dir.join(name)))
    .collect()
}

fn localhost_hosts(hostname: &str, domainname: &str) -> String {
    let names = if domainname.is_empty() {
        hostname.to_string()
    } else {
        format!("{hostname}.{domainname} {hostname}")
    };
    format!(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\n\
         ff02::2\tip6-allrouters\n127.0.1.1\t{names}\n"
    )
}

/// The host's resolv.conf without loopback nameservers (unreachable from the container's
/// network namespace); Docker's public fallbacks when none is left.
pub fn container_resolv_conf(host: &str) -> String {
    let mut out = String::new();
    let mut nameservers = 0;
    for line in host.lines() {
        let mut words = line.split_whitespace();
        if words.next() == Some("nameserver") {
            let addr = words.next().unwrap_or("");
            if is_loopback(addr) {
                continue;
            }
            nameservers += 1;
        }
        out.push_str(line);
        out.push('\n');
    }
    if nameservers == 0 {
        for ns in FALLBACK_NAMESERVERS {
            out.push_str(&format!("nameserver {ns}\n"));
        }
    }
    out
}

fn is_loopback(addr: &str) -> bool {
    addr.parse::<std::net::IpAddr>()
        .map(|ip| ip.is_loopback())
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_drops_loopback_nameservers() {
        let host = "# generated\nnameserver 127.0.0.53\nnameserver 10.0.0.2\nsearch example.com\n";
        assert_eq!(
            container_resolv_conf(host),
            "# generated\nnameserver 10.0.0.2\nsearch example.com\n"
        );
        let only_local = "nameserver 127.0.0.1\nnameserver ::1\noptions edns0\n";
        assert_eq!(
            container_resolv_conf(only_local),
            "options edns0\nnameserver 8.8.8.8\nnameserver 8.8.4.4\n"
        );
    }

    #[test]
    fn hosts_name_the_container() {
        let layer = InitLayer::new("abc123", "", false, "");
        assert!(layer.hosts.contains("127.0.0.1\tlocalhost\n"));
        assert!(layer.hosts.ends_with("127.0.1.1\tabc123\n"));
        assert_eq!(layer.hostname, "abc123\n");
    }
}
