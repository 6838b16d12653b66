//! `/_ping`, `/version`, `/info` and `/events`.

use std::collections::HashMap;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use berth_engine::container::spec::RUNTIME;
use berth_engine::container::Status;
use berth_engine::events::Event;
use bollard_stubs::models::{
    LocalNodeState, PluginsInfo, Runtime, SwarmInfo, SystemInfo, SystemInfoCgroupDriverEnum,
    SystemInfoCgroupVersionEnum,
};
use hyper::header::{HeaderValue, CACHE_CONTROL};
use hyper::{Method, StatusCode};
use tokio::sync::broadcast::error::RecvError;

use crate::api::{
    blocking, channel_response, json, route, text, ApiError, ApiResult, BoxFuture, Ctx, Route,
    API_VERSION, MIN_API_VERSION,
};

pub fn routes() -> Vec<Route> {
    vec![
        route(Method::GET, "/_ping", ping),
        route(Method::HEAD, "/_ping", ping),
        route(Method::GET, "/version", version),
        route(Method::GET, "/info", info),
        route(Method::GET, "/events", events),
    ]
}

fn version_string(v: (u32, u32)) -> String {
    format!("{}.{}", v.0, v.1)
}

const SERVER_VERSION: &str = env!("CARGO_PKG_VERSION");

/// What the CLI reads before anything else to negotiate the API version.
fn ping(_ctx: Ctx) -> BoxFuture<'static, ApiResult> {
    Box::pin(async move {
        let mut resp = text(StatusCode::OK, "OK")?;
        let headers = resp.headers_mut();
        headers.insert(
            CACHE_CONTROL,
            HeaderValue::from_static("no-cache, no-store, must-revalidate"),
        );
        headers.insert("pragma", HeaderValue::from_static("no-cache"));
        headers.insert("builder-version", HeaderValue::from_static("1"));
        headers.insert("swarm", HeaderValue::from_static("inactive"));
        Ok(resp)
    })
}

fn version(_ctx: Ctx) -> BoxFuture<'static, ApiResult> {
    Box::pin(async move {
        let host = Host::read();
        let api = version_string(API_VERSION);
        let min_api = version_string(MIN_API_VERSION);
        let git_commit = option_env!("BERTH_GIT_COMMIT").unwrap_or("unknown");
        let build_time = option_env!("BERTH_BUILD_TIME").unwrap_or("unknown");
        // The engine's details appear twice: as its component and at the top level.
        let details = serde_json::json!({
            "ApiVersion": api,
            "MinAPIVersion": min_api,
            "GitCommit": git_commit,
            "GoVersion": "n/a",
            "Os": "linux",
            "Arch": "amd64",
            "KernelVersion": host.kernel,
            "BuildTime": build_time,
        });
        let mut component_details = details.clone();
        component_details["Experimental"] = "false".into();
        let mut body = details;
        body["Platform"] = serde_json::json!({ "Name": "berth" });
        body["Version"] = SERVER_VERSION.into();
        body["Components"] = serde_json::json!([{
            "Name": "Engine",
            "Version": SERVER_VERSION,
            "Details": component_details,
        }]);
        json(StatusCode::OK, &body)
    })
}

/// Facts about the machine, read fresh for each request (cheap).
struct Host {
    kernel: String,
    hostname: String,
}

impl Host {
    fn read() -> Host {
        let uts = nix::sys::utsname::uname().ok();
        let field = |f: fn(&nix::sys::utsname::UtsName) -> &std::ffi::OsStr| {
            uts.as_ref()
                .map(|u| f(u).to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        Host {
            kernel: field(|u| u.release()),
            hostname: field(|u| u.nodename()),
        }
    }
}

fn info(ctx: Ctx) -> BoxFuture<'static, ApiResult> {
    Box::pin(async move {
        let engine = ctx.engine.clone();
        let info = blocking(move || system_info(&engine)).await?;
        json(StatusCode::OK, &info)
    })
}

fn system_info(engine: &berth_engine::Engine) -> anyhow::Result<SystemInfo> {
    let host = Host::read();
    let mut counts: HashMap<&str, i64> = HashMap::new();
    let containers = engine.containers.list();
    for handle in &containers {
        let bucket = match handle.get().state.status {
            Status::Running | Status::Restarting => "running",
            Status::Paused => "paused",
            _ => "stopped",
        };
        *counts.entry(bucket).or_default() += 1;
    }
    let images = engine.images.index.images()?.len() as i64;
    let root = engine.config.root.display().to_string();
    let runtimes = HashMap::from([(
        RUNTIME.to_string(),
        Runtime {
            path: Some(engine.config.monitor.display().to_string()),
            ..Default::default()
        },
    )]);
    Ok(SystemInfo {
        id: Some(engine_id(&engine.config.root)?),
        containers: Some(containers.len() as i64),
        containers_running: Some(counts.get("running").copied().unwrap_or(0)),
        containers_paused: Some(counts.get("paused").copied().unwrap_or(0)),
        containers_stopped: Some(counts.get("stopped").copied().unwrap_or(0)),
        images: Some(images),
        driver: Some("overlay2".into()),
        driver_status: Some(vec![vec![
            "Backing Filesystem".into(),
            backing_filesystem(&engine.config.root),
        ]]),
        docker_root_dir: Some(root),
        plugins: Some(PluginsInfo {
            volume: Some(vec!["local".into()]),
            network: Some(vec!["host".into(), "none".into()]),
            authorization: None,
            log: Some(vec!["json-file".into()]),
        }),
        memory_limit: Some(true),
        swap_limit: Some(true),
        cpu_cfs_period: Some(true),
        cpu_cfs_quota: Some(true),
        cpu_shares: Some(true),
        cpu_set: Some(true),
        pids_limit: Some(true),
        debug: Some(false),
        system_time: Some(berth_engine::time::now_rfc3339()),
        logging_driver: Some("json-file".into()),
        cgroup_driver: Some(SystemInfoCgroupDriverEnum::CGROUPFS),
        cgroup_version: Some(cgroup_version()),
        kernel_version: Some(host.kernel),
        operating_system: Some(operating_system()),
        os_type: Some("linux".into()),
        architecture: Some(std::env::consts::ARCH.into()),
        ncpu: Some(
            std::thread::available_parallelism()
                .map(|n| n.get() as i64)
                .unwrap_or(1),
        ),
        mem_total: Some(mem_total()),
        index_server_address: Some("https://index.docker.io/v1/".into()),
        name: Some(host.hostname),
        labels: Some(Vec::new()),
        experimental_build: Some(false),
        server_version: Some(SERVER_VERSION.into()),
        runtimes: Some(runtimes),
        default_runtime: Some(RUNTIME.into()),
        swarm: Some(SwarmInfo {
            local_node_state: Some(LocalNodeState::INACTIVE),
            node_id: Some(String::new()),
            node_addr: Some(String::new()),
            control_available: Some(false),
            error: Some(String::new()),
            ..Default::default()
        }),
        live_restore_enabled: Some(true),
        init_binary: Some(engine.config.init.display().to_string()),
        // What berth enforces, in dockerd's words (the docker CLI prints them).
        security_options: Some(vec!["name=seccomp,profile=builtin".into()]),
        warnings: Some(Vec::new()),
        ..Default::default()
    })
}

/// The daemon's identity, made once and kept under the root (`docker info` shows it).
fn engine_id(root: &Path) -> anyhow::Result<String> {
    let path = root.join("engine-id");
    if let Ok(id) = std::fs::read_to_string(&path) {
        let id = id.trim();
        if !id.is_empty() {
            return Ok(id.to_string());
        }
    }
    let uuid = std::fs::read_to_string("/proc/sys/kernel/random/uuid")
        .map_err(|e| anyhow::anyhow!("cannot make an engine id: {e}"))?;
    let id = uuid.trim().to_string();
    berth_runtime::state::write_atomic(&path, id.as_bytes())?;
    Ok(id)
}

fn cgroup_version() -> SystemInfoCgroupVersionEnum {
    use nix::sys::statfs::{statfs, CGROUP2_SUPER_MAGIC};
    match statfs("/sys/fs/cgroup") {
        Ok(fs) if fs.filesystem_type() == CGROUP2_SUPER_MAGIC => SystemInfoCgroupVersionEnum::_2,
        _ => SystemInfoCgroupVersionEnum::_1,
    }
}

/// Docker's name for the filesystem under the root ("extfs", "xfs", ...).
fn backing_filesystem(root: &Path) -> String {
    use nix::sys::statfs::*;
    let Ok(fs) = statfs(root) else {
        return "unknown".into();
    };
    let t = fs.filesystem_type();
    let name = if t == EXT4_SUPER_MAGIC {
        "extfs"
    } else if t == XFS_SUPER_MAGIC {
        "xfs"
    } else if t == BTRFS_SUPER_MAGIC {
        "btrfs"
    } else if t == TMPFS_MAGIC {
        "tmpfs"
    } else if t == OVERLAYFS_SUPER_MAGIC {
        "overlayfs"
    } else {
        return format!("0x{:x}", t.0);
    };
    name.into()
}

/// PRETTY_NAME from /etc/os-release.
fn operating_system() -> String {
    let text = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim().trim_matches('"').to_string())
        .unwrap_or_else(|| "Linux".into())
}

/// MemTotal from /proc/meminfo, in bytes.
fn mem_total() -> i64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

// ---- events ----

/// The filters `GET /events` accepts, as Docker's.
const FILTER_KEYS: &[&str] = &[
    "type",
    "event",
    "container",
    "image",
    "label",
    "volume",
    "network",
    "scope",
    "daemon",
    "plugin",
    "node",
    "service",
    "secret",
    "config",
];

/// Filters that name an object of their own kind by id or name (prefixes too).
const NAMED_KINDS: &[&str] = &[
    "container",
    "volume",
    "network",
    "daemon",
    "plugin",
    "node",
    "service",
    "secret",
    "config",
];

/// Which events a client asked for.
struct EventFilter {
    since: Option<i64>,
    until: Option<i64>,
    filters: HashMap<String, Vec<String>>,
}

fn timestamp_nanos(ctx: &Ctx, key: &str) -> Result<Option<i64>, ApiError> {
    let Some(raw) = ctx.query.get(key).filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    let t = berth_engine::time::parse_timestamp(raw)
        .ok_or_else(|| ApiError::bad_request(format!("invalid timestamp for {key}: {raw:?}")))?;
    let nanos = t
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    Ok(Some(nanos))
}

impl EventFilter {
    fn from_ctx(ctx: &Ctx) -> Result<EventFilter, ApiError> {
        let filters = ctx.query.filters()?;
        for key in filters.keys() {
            if !FILTER_KEYS.contains(&key.as_str()) {
                return Err(ApiError::bad_request(format!("invalid filter '{key}'")));
            }
        }
        Ok(EventFilter {
            since: timestamp_nanos(ctx, "since")?,
            until: timestamp_nanos(ctx, "until")?,
            filters,
        })
    }

    fn in_window(&self, ev: &Event) -> bool {
        self.since.is_none_or(|s| ev.time_nano >= s) && self.until.is_none_or(|u| ev.time_nano <= u)
    }

    fn matches(&self, ev: &Event) -> bool {
        let attr = |k: &str| ev.actor.attributes.get(k).map(String::as_str).unwrap_or("");
        let any = |key: &str, test: &dyn Fn(&str) -> bool| {
            self.filters
                .get(key)
                .is_none_or(|values| values.is_empty() || values.iter().any(|v| test(v)))
        };
        // Names and ids match exactly or by prefix, as Docker's FuzzyMatch.
        let fuzzy = |v: &str, kind: &str| {
            ev.kind == kind
                && [ev.actor.id.as_str(), attr("name")]
                    .iter()
                    .any(|s| !s.is_empty() && s.starts_with(v))
        };
        any("type", &|v| ev.kind == v)
            && any("event", &|v| {
                ev.action == v || ev.action.split_once(':').is_some_and(|(a, _)| a == v)
            })
            && NAMED_KINDS
                .iter()
                .all(|kind| any(kind, &|v| fuzzy(v, kind)))
            && any("scope", &|v| ev.scope == v)
            && any("image", &|v| {
                attr("image") == v
                    || (ev.kind == "image" && (ev.actor.id == v || attr("name") == v))
            })
            && any("label", &|v| match v.split_once('=') {
                Some((k, val)) => ev.actor.attributes.get(k).is_some_and(|a| a == val),
                None => ev.actor.attributes.contains_key(v),
            })
    }
}

fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// Past events in the window (when since/until is given), then live ones until `until`
/// passes or the client goes away. One JSON object per line, sent as it happens.
fn events(ctx: Ctx) -> BoxFuture<'static, ApiResult> {
    Box::pin(async move {
        let filter = EventFilter::from_ctx(&ctx)?;
        let (history, mut live) = ctx.engine.events.subscribe();
        let (sender, resp) = channel_response(StatusCode::OK, "application/json");
        tokio::spawn(async move {
            let send = |ev: &Event| {
                let mut line = serde_json::to_vec(ev).unwrap_or_default();
                line.push(b'\n');
                line
            };
            if filter.since.is_some() || filter.until.is_some() {
                for ev in history
                    .iter()
                    .filter(|e| filter.in_window(e) && filter.matches(e))
                {
                    if !sender.send(send(ev)).await {
                        return;
                    }
                }
            }
            let deadline = filter.until.map(|u| {
                let wait = u.saturating_sub(now_nanos()).max(0) as u64;
                tokio::time::Instant::now() + std::time::Duration::from_nanos(wait)
            });
            let until = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::pin!(until);
            loop {
                let ev = tokio::select! {
                    _ = &mut until => return,
                    _ = sender.closed() => return,
                    ev = live.recv() => ev,
                };
                match ev {
                    Ok(ev) if filter.in_window(&ev) && filter.matches(&ev) => {
                        if !sender.send(send(&ev)).await {
                            return;
                        }
                    }
                    Ok(_) | Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => return,
                }
            }
        });
        Ok(resp)
    })
}
