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

/// What a container's init files are made from.
#[derive(Debug, Clone, Copy, Default)]
pub struct Settings<'a> {
    pub hostname: &'a str,
    pub domainname: &'a str,
    pub host_network: bool,
    /// `--add-host`: `name:address` (checked by [`validate_extra_hosts`]).
    pub extra_hosts: &'a [String],
    /// `--dns`, `--dns-search`, `--dns-option`.
    pub dns: &'a [String],
    pub dns_search: &'a [String],
    pub dns_options: &'a [String],
}

impl InitLayer {
    /// The files of a container, from its settings, the host's /etc/hosts (`host_hosts`,
    /// read only where it is used) and the host's resolv.conf `host_resolv`, as Docker makes
    /// them: with the host's network the host's own files (unless the container adds hosts or
    /// DNS settings), otherwise localhost, the `--add-host` entries and the container's name;
    /// the host's resolv.conf minus loopback nameservers (unreachable from the container's
    /// network namespace), or what `--dns*` says, the host's for the rest.
    pub fn new(
        settings: &Settings,
        host_hosts: impl FnOnce() -> String,
        host_resolv: &str,
    ) -> InitLayer {
        let hosts = if settings.host_network && settings.extra_hosts.is_empty() {
            host_hosts()
        } else {
            hosts(settings)
        };
        let own_dns = !(settings.dns.is_empty()
            && settings.dns_search.is_empty()
            && settings.dns_options.is_empty());
        // The host's network reaches the host's loopback resolvers: they stay.
        let host_resolv = if settings.host_network {
            host_resolv.to_string()
        } else {
            container_resolv_conf(host_resolv)
        };
        let resolv_conf = if own_dns {
            resolv_conf_with(settings, &host_resolv)
        } else {
            host_resolv
        };
        InitLayer {
            hostname: format!("{}\n", settings.hostname),
            hosts,
            resolv_conf,
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

/// localhost, the `--add-host` entries, then the container's own name.
fn hosts(settings: &Settings) -> String {
    let (hostname, domainname) = (settings.hostname, settings.domainname);
    let names = if domainname.is_empty() {
        hostname.to_string()
    } else {
        format!("{hostname}.{domainname} {hostname}")
    };
    let mut hosts = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
                     fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\n\
                     ff02::2\tip6-allrouters\n"
        .to_string();
    for (name, address) in settings
        .extra_hosts
        .iter()
        .filter_map(|e| split_extra_host(e))
    {
        hosts.push_str(&format!("{address}\t{name}\n"));
    }
    hosts.push_str(&format!("127.0.1.1\t{names}\n"));
    hosts
}

/// `name:address` (or Docker's newer `name=address`); the address may be IPv6, bare or in
/// one pair of brackets, which /etc/hosts does not take.
fn split_extra_host(entry: &str) -> Option<(&str, &str)> {
    let at = entry.find([':', '='])?;
    let address = &entry[at + 1..];
    let address = address
        .strip_prefix('[')
        .and_then(|a| a.strip_suffix(']'))
        .unwrap_or(address);
    Some((&entry[..at], address))
}

/// Each `--add-host` names a host and an IP address (Docker's messages). Docker's
/// `host-gateway` needs a bridge network, which berth does not have yet.
pub fn validate_extra_hosts(extra_hosts: &[String]) -> crate::error::Result<()> {
    use crate::error::Error;
    for entry in extra_hosts {
        let bad_format = || Error::InvalidParameter(format!("bad format for add-host: {entry:?}"));
        let (name, address) = split_extra_host(entry).ok_or_else(bad_format)?;
        if name.is_empty() {
            return Err(bad_format());
        }
        address.parse::<std::net::IpAddr>().map_err(|_| {
            Error::InvalidParameter(format!("invalid IP address in add-host: {address:?}"))
        })?;
    }
    Ok(())
}

/// A resolv.conf with the container's own DNS settings, those of `host_resolv` (the host's,
/// as the container may use it) for what it leaves out: search line, nameservers, options,
/// in the order Docker writes them.
fn resolv_conf_with(settings: &Settings, host_resolv: &str) -> String {
    let host_values = |key: &str| -> Vec<String> {
        host_resolv
            .lines()
            .filter_map(|line| line.strip_prefix(key))
            .filter(|rest| rest.starts_with([' ', '\t']))
            .flat_map(|rest| rest.split_whitespace().map(str::to_owned))
            .collect()
    };
    let or_host = |own: &[String], key: &str| {
        if own.is_empty() {
            host_values(key)
        } else {
            own.to_vec()
        }
    };
    let nameservers = or_host(settings.dns, "nameserver");
    let mut out = String::new();
    let search = or_host(settings.dns_search, "search");
    // `--dns-search .`: no search domain at all.
    if !search.is_empty() && search != ["."] {
        out.push_str(&format!("search {}\n", search.join(" ")));
    }
    for ns in nameservers {
        out.push_str(&format!("nameserver {ns}\n"));
    }
    let options = or_host(settings.dns_options, "options");
    if !options.is_empty() {
        out.push_str(&format!("options {}\n", options.join(" ")));
    }
    out
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
    fn hosts_name_the_container_after_the_added_hosts() {
        let extra = [
            "db:10.0.0.5".to_string(),
            "v6=fe80::1".to_string(),
            "b6:[fe80::2]".to_string(),
        ];
        let settings = Settings {
            hostname: "abc123",
            extra_hosts: &extra,
            ..Default::default()
        };
        let layer = InitLayer::new(&settings, || "1.1.1.1 host-file\n".to_string(), "");
        assert!(layer.hosts.starts_with("127.0.0.1\tlocalhost\n"));
        assert!(
            layer
                .hosts
                .ends_with("10.0.0.5\tdb\nfe80::1\tv6\nfe80::2\tb6\n127.0.1.1\tabc123\n"),
            "{}",
            layer.hosts
        );
        assert_eq!(layer.hostname, "abc123\n");
        // The host's network: the host's own file, unless hosts are added.
        let host = Settings {
            host_network: true,
            ..settings
        };
        assert!(
            InitLayer::new(&host, || "1.1.1.1 host-file\n".to_string(), "")
                .hosts
                .contains("\tdb\n")
        );
        let plain = Settings {
            extra_hosts: &[],
            ..host
        };
        assert_eq!(
            InitLayer::new(&plain, || "1.1.1.1 host-file\n".to_string(), "").hosts,
            "1.1.1.1 host-file\n"
        );
    }

    #[test]
    fn added_hosts_need_a_name_and_an_address() {
        let check = |e: &str| validate_extra_hosts(&[e.to_string()]).map_err(|e| e.message());
        assert!(
            check("db:10.0.0.5").is_ok() && check("v6:::1").is_ok() && check("b=[::1]").is_ok()
        );
        assert!(check("b=[::1").is_err());
        assert_eq!(check("db").unwrap_err(), "bad format for add-host: \"db\"");
        assert_eq!(
            check(":1.2.3.4").unwrap_err(),
            "bad format for add-host: \":1.2.3.4\""
        );
        assert_eq!(
            check("db:host-gateway").unwrap_err(),
            "invalid IP address in add-host: \"host-gateway\""
        );
    }

    #[test]
    fn dns_settings_replace_the_hosts_and_keep_the_rest() {
        let host = "nameserver 127.0.0.53\nnameserver 10.0.0.2\nsearch lan\noptions edns0\n";
        let dns = ["9.9.9.9".to_string()];
        let settings = Settings {
            dns: &dns,
            ..Default::default()
        };
        assert_eq!(
            InitLayer::new(&settings, String::new, host).resolv_conf,
            "search lan\nnameserver 9.9.9.9\noptions edns0\n"
        );
        let search = ["example.com".to_string()];
        let options = ["ndots:2".to_string()];
        let settings = Settings {
            dns_search: &search,
            dns_options: &options,
            ..Default::default()
        };
        assert_eq!(
            InitLayer::new(&settings, String::new, host).resolv_conf,
            "search example.com\nnameserver 10.0.0.2\noptions ndots:2\n"
        );
        // The host's network reaches the host's loopback resolver.
        let host_net = Settings {
            host_network: true,
            ..Default::default()
        };
        assert_eq!(
            InitLayer::new(&host_net, String::new, host).resolv_conf,
            host
        );
        let host_net_search = Settings {
            dns_search: &search,
            ..host_net
        };
        assert_eq!(
            InitLayer::new(&host_net_search, String::new, host).resolv_conf,
            "search example.com\nnameserver 127.0.0.53\nnameserver 10.0.0.2\noptions edns0\n"
        );
        let none = [".".to_string()];
        let no_search = Settings {
            dns_search: &none,
            ..Default::default()
        };
        assert_eq!(
            InitLayer::new(&no_search, String::new, host).resolv_conf,
            "nameserver 10.0.0.2\noptions edns0\n"
        );
    }
}
