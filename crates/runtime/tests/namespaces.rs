//! Namespaces: pid, uts (hostname, domainname), user (id mappings), network (new and joined).

mod common;

use std::fs;
use std::process::Command;

use common::*;
use serde_json::json;

#[test]
fn pid_namespace_makes_the_container_process_pid_1() {
    let ctx = Ctx::new("pid_namespace_pid_1");
    // `; true` keeps sh alive (busybox sh execs a lone last command).
    let b = ctx.bundle(&["sh", "-c", "ps -o pid,comm; true"]);
    let out = ctx.run(&b);
    out.ok();
    let rows: Vec<(String, String)> = out
        .stdout
        .lines()
        .skip(1)
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((it.next()?.to_string(), it.next()?.to_string()))
        })
        .collect();
    assert!(
        rows.contains(&("1".to_string(), "sh".to_string())),
        "PID 1 should be the container's sh:\n{out}"
    );
    assert_eq!(
        rows.len(),
        2,
        "only sh and ps should be visible in the container:\n{out}"
    );
}

#[test]
fn hostname_comes_from_config() {
    let ctx = Ctx::new("hostname_comes_from_config");
    let host_before = nix::unistd::gethostname().unwrap();
    let mut b = ctx.bundle(&["hostname"]);
    b.config["hostname"] = json!("berth-box");
    let out = ctx.run(&b);
    out.ok();
    assert_eq!(lines(&out.stdout), ["berth-box"], "{out}");
    assert_eq!(
        nix::unistd::gethostname().unwrap(),
        host_before,
        "the host's hostname changed"
    );
}

#[test]
fn domainname_comes_from_config() {
    let ctx = Ctx::new("domainname_comes_from_config");
    let host_before = fs::read_to_string("/proc/sys/kernel/domainname").unwrap();
    let mut b = ctx.bundle(&["cat", "/proc/sys/kernel/domainname"]);
    b.config["domainname"] = json!("berth.example");
    let out = ctx.run(&b);
    out.ok();
    assert_eq!(lines(&out.stdout), ["berth.example"], "{out}");
    assert_eq!(
        fs::read_to_string("/proc/sys/kernel/domainname").unwrap(),
        host_before,
        "the host's domainname changed"
    );
}

fn user_ns_bundle(ctx: &Ctx, args: &[&str]) -> Bundle {
    let mut b = ctx.bundle(args);
    b.set_namespace("user", None);
    let map = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    b.config["linux"]["uidMappings"] = map.clone();
    b.config["linux"]["gidMappings"] = map;
    b
}

#[test]
fn user_namespace_maps_container_root() {
    let ctx = Ctx::new("user_namespace_maps_container_root");
    let b = user_ns_bundle(
        &ctx,
        &[
            "sh",
            "-c",
            "id -u; id -g; cat /proc/self/uid_map; cat /proc/self/gid_map",
        ],
    );
    let out = ctx.run(&b);
    out.ok();
    let got: Vec<String> = out.stdout.lines().map(squash_ws).collect();
    assert_eq!(got, ["0", "0", "0 100000 65536", "0 100000 65536"], "{out}");
}

#[test]
fn user_namespace_process_is_uid_100000_on_host() {
    let ctx = Ctx::new("user_namespace_uid_on_host");
    let b = user_ns_bundle(&ctx, &["sleep", "30"]);
    let (_, pid) = ctx.create_start(&b, "sleep");
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> Vec<String> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in status:\n{status}"))
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    assert_eq!(field("Uid:"), ["100000"; 4], "{status}");
    assert_eq!(field("Gid:"), ["100000"; 4], "{status}");
    ctx.kill_and_delete(&b.id);
    ctx.assert_nothing_left(&b);
}

#[test]
fn new_network_namespace_has_only_loopback_and_it_is_up() {
    let ctx = Ctx::new("new_network_namespace_only_lo");
    let b = ctx.bundle(&[
        "sh",
        "-c",
        "readlink /proc/self/ns/net; ls /sys/class/net; cat /sys/class/net/lo/flags",
    ]);
    let out = ctx.run(&b);
    out.ok();
    let l = lines(&out.stdout);
    assert_eq!(l.len(), 3, "{out}");
    assert_ne!(
        l[0],
        ns_id("self", "net"),
        "container shares the host netns"
    );
    assert_eq!(l[1], "lo", "{out}");
    // IFF_LOOPBACK | IFF_UP, as runc and crun leave it; the kernel makes it down.
    assert_eq!(l[2], "0x9", "{out}");
}

#[test]
fn joins_an_existing_network_namespace_by_path() {
    let ctx = Ctx::new("joins_existing_netns");
    let (path, target) = netns_of_a_helper(&ctx);
    let mut b = ctx.bundle(&["readlink", "/proc/self/ns/net"]);
    b.set_namespace("network", Some(&path));
    let out = ctx.run(&b);
    out.ok();
    assert_eq!(lines(&out.stdout), [target], "{out}");
}

/// A new user namespace together with a joined one (a pod's network namespace, say): the
/// runtime must join before it makes the user namespace, which would leave it no rights over
/// the host-owned namespace.
#[test]
fn new_user_namespace_with_a_joined_network_namespace() {
    let ctx = Ctx::new("userns_with_joined_netns");
    let (path, target) = netns_of_a_helper(&ctx);
    let mut b = user_ns_bundle(&ctx, &["sh", "-c", "readlink /proc/self/ns/net; id -u"]);
    b.set_namespace("network", Some(&path));
    let out = ctx.run(&b);
    out.ok();
    assert_eq!(lines(&out.stdout), [target.as_str(), "0"], "{out}");
}

/// A process (`unshare --net sleep`) in a network namespace of its own: its ns path and id.
fn netns_of_a_helper(ctx: &Ctx) -> (String, String) {
    let host_net = ns_id("self", "net");
    let helper = ctx.spawn_helper(Command::new("unshare").args(["--net", "sleep", "30"]));
    let target = wait_until(STATE_TIMEOUT, "unshare to enter its netns", || {
        let ns = fs::read_link(format!("/proc/{helper}/ns/net")).ok()?;
        let ns = ns.to_string_lossy().into_owned();
        (ns != host_net).then_some(ns)
    });
    (format!("/proc/{helper}/ns/net"), target)
}

/// A time namespace with `linux.timeOffsets`: the container's boot clock is ten days ahead.
#[test]
fn time_namespace_applies_offsets() {
    let ctx = Ctx::new("time_namespace_applies_offsets");
    let ten_days = 864_000u64;
    let mut b = ctx.bundle(&[
        "sh",
        "-c",
        "cut -d. -f1 /proc/uptime; readlink /proc/self/ns/time",
    ]);
    b.namespaces().push(json!({"type": "time"}));
    b.config["linux"]["timeOffsets"] = json!({
        "boottime": {"secs": ten_days},
        "monotonic": {"secs": ten_days}
    });
    let out = ctx.run(&b);
    out.ok();
    let mut lines = out.stdout.lines();
    let uptime: u64 = lines.next().unwrap_or("").trim().parse().expect("uptime");
    assert!(
        uptime >= ten_days,
        "uptime {uptime} should include the offset: {out}"
    );
    let host_ns = std::fs::read_link("/proc/self/ns/time").unwrap();
    assert_ne!(
        lines.next(),
        host_ns.to_str(),
        "the container shares the host's time namespace"
    );
    ctx.assert_nothing_left(&b);
}
