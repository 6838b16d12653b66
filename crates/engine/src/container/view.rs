//! What `docker ps` and `docker inspect` show of containers.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use bollard_stubs::models::{
    ContainerInspectResponse, ContainerState, ContainerStateStatusEnum, ContainerSummary,
    ContainerSummaryHostConfig, ContainerSummaryNetworkSettings, DriverData, EndpointSettings,
    NetworkSettings,
};

use super::lifecycle::ListOptions;
use super::{spec, Container, Handle, Status};
use crate::error::{Error, Result};
use crate::{time, Engine};

/// go-units' HumanDuration, which `docker ps` uses: "3 seconds", "About a minute", ...
pub fn human_duration(d: Duration) -> String {
    let seconds = d.as_secs();
    let minutes = seconds / 60;
    let hours = ((d.as_secs_f64() / 3600.0) + 0.5) as u64;
    match () {
        _ if seconds < 1 => "Less than a second".into(),
        _ if seconds == 1 => "1 second".into(),
        _ if seconds < 60 => format!("{seconds} seconds"),
        _ if minutes == 1 => "About a minute".into(),
        _ if minutes < 60 => format!("{minutes} minutes"),
        _ if hours == 1 => "About an hour".into(),
        _ if hours < 48 => format!("{hours} hours"),
        _ if hours < 24 * 7 * 2 => format!("{} days", hours / 24),
        _ if hours < 24 * 30 * 2 => format!("{} weeks", hours / 24 / 7),
        _ if hours < 24 * 365 * 2 => format!("{} months", hours / 24 / 30),
        _ => format!("{} years", d.as_secs() / 3600 / 24 / 365),
    }
}

fn since(timestamp: Option<&str>) -> Duration {
    timestamp
        .and_then(time::parse_timestamp)
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .unwrap_or_default()
}

/// `docker ps`'s STATUS column.
pub fn status_text(c: &Container) -> String {
    let s = &c.state;
    match s.status {
        Status::Created => "Created".into(),
        Status::Running => format!("Up {}", human_duration(since(s.started_at.as_deref()))),
        Status::Paused => format!(
            "Up {} (Paused)",
            human_duration(since(s.started_at.as_deref()))
        ),
        Status::Restarting => format!(
            "Restarting ({}) {} ago",
            s.exit_code,
            human_duration(since(s.finished_at.as_deref()))
        ),
        Status::Removing => "Removal In Progress".into(),
        Status::Exited => format!(
            "Exited ({}) {} ago",
            s.exit_code,
            human_duration(since(s.finished_at.as_deref()))
        ),
        Status::Dead => "Dead".into(),
    }
}

fn unix_seconds(timestamp: &str) -> i64 {
    time::parse_timestamp(timestamp)
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn network_mode(c: &Container) -> String {
    match c.host_config.network_mode.as_deref() {
        None | Some("") | Some("default") | Some("bridge") => "none".into(),
        Some(mode) => mode.to_string(),
    }
}

fn networks(c: &Container) -> HashMap<String, EndpointSettings> {
    HashMap::from([(network_mode(c), EndpointSettings::default())])
}

/// One `filters` entry of `docker ps`.
fn matches_filter(engine: &Engine, c: &Container, key: &str, value: &str) -> Result<bool> {
    let labels = c.config.labels.clone().unwrap_or_default();
    Ok(match key {
        "id" => c.id.starts_with(value),
        "name" => c.name.contains(value.trim_start_matches('/')),
        "label" => match value.split_once('=') {
            Some((k, v)) => labels.get(k).map(String::as_str) == Some(v),
            None => labels.contains_key(value),
        },
        "status" => c.state.status.as_str() == value,
        "exited" => c.state.status == Status::Exited && value.parse() == Ok(c.state.exit_code),
        "ancestor" => {
            c.image == value
                || engine
                    .images
                    .index
                    .resolve(value)
                    .is_ok_and(|id| id.to_string() == c.image_id)
        }
        "before" | "since" => {
            let other = engine.containers.get(value)?.get();
            if key == "before" {
                c.created < other.created
            } else {
                c.created > other.created
            }
        }
        "volume" => c
            .mounts
            .iter()
            .any(|m| m.name.as_deref() == Some(value) || m.destination.as_deref() == Some(value)),
        "network" => network_mode(c) == value,
        "health" | "is-task" => false,
        other => return Err(Error::InvalidParameter(format!("invalid filter '{other}'"))),
    })
}

impl Engine {
    pub fn list_containers(&self, opts: &ListOptions) -> Result<Vec<ContainerSummary>> {
        // Checked up front, as dockerd does: a typo is an error even with no containers.
        for value in opts.filters.get("status").into_iter().flatten() {
            if serde_json::from_value::<Status>(serde_json::Value::from(value.as_str())).is_err() {
                return Err(Error::InvalidParameter(format!(
                    "invalid filter 'status={value}'"
                )));
            }
        }
        let mut out = Vec::new();
        // Newest first, as Docker lists them.
        for handle in self.containers.list().into_iter().rev() {
            let c = handle.get();
            let explicit_status =
                opts.filters.contains_key("status") || opts.filters.contains_key("exited");
            if !opts.all && !explicit_status && !c.state.status.is_alive() {
                continue;
            }
            let mut keep = true;
            for (key, values) in &opts.filters {
                // Values of one key are alternatives; keys must all hold.
                let mut any = false;
                for v in values {
                    any |= matches_filter(self, &c, key, v)?;
                }
                keep &= any;
            }
            if keep {
                let mut summary = summary(&c);
                if opts.size {
                    let (rw, root_fs) = self.sizes(&handle, &c);
                    summary.size_rw = Some(rw);
                    summary.size_root_fs = Some(root_fs);
                }
                out.push(summary);
            }
            if opts.limit.is_some_and(|n| out.len() >= n) {
                break;
            }
        }
        Ok(out)
    }

    pub fn inspect_container(
        &self,
        name_or_id: &str,
        size: bool,
    ) -> Result<ContainerInspectResponse> {
        let handle = self.containers.get(name_or_id)?;
        let c = handle.get();
        let mut response = inspect(&c, &handle, self.graph_driver(&handle, &c));
        let execs = self.execs.ids_for(&handle.id);
        response.exec_ids = (!execs.is_empty()).then_some(execs);
        if size {
            let (rw, root_fs) = self.sizes(&handle, &c);
            response.size_rw = Some(rw);
            response.size_root_fs = Some(root_fs);
        }
        Ok(response)
    }

    /// `SizeRw` (the bytes of the container's rw layer) and `SizeRootFs` (those and its
    /// image's), for `ps -s` and `inspect -s`.
    fn sizes(&self, handle: &Handle, c: &Container) -> (i64, i64) {
        let rw = i64::try_from(dir_size(&handle.paths.upper())).unwrap_or(i64::MAX);
        (rw, rw.saturating_add(self.image_size(&c.image_id)))
    }

    fn graph_driver(&self, handle: &Handle, c: &Container) -> DriverData {
        let snap = berth_image::snapshot::Snapshot::at(&handle.paths.snapshot());
        let mut lowers = vec![self.images.layers.init_dir().display().to_string()];
        if let Ok(image) = c
            .image_id
            .parse()
            .map_err(|_| ())
            .and_then(|id| self.image_config(&id).map_err(|_| ()))
        {
            for chain in berth_image::config::chain_ids(&image.rootfs.diff_ids)
                .iter()
                .rev()
            {
                lowers.push(self.images.layers.diff_dir(chain).display().to_string());
            }
        }
        DriverData {
            name: "overlay2".into(),
            data: HashMap::from([
                ("LowerDir".to_string(), lowers.join(":")),
                ("MergedDir".to_string(), snap.merged.display().to_string()),
                ("UpperDir".to_string(), snap.upper.display().to_string()),
                ("WorkDir".to_string(), snap.work.display().to_string()),
            ]),
        }
    }
}

/// `Command` of `docker ps`, as dockerd writes it: arguments with a space in single quotes.
fn command_text(argv: &[String]) -> String {
    argv.iter()
        .enumerate()
        .map(|(i, a)| {
            if i > 0 && a.contains(' ') {
                format!("'{a}'")
            } else {
                a.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn summary(c: &Container) -> ContainerSummary {
    ContainerSummary {
        id: Some(c.id.clone()),
        names: Some(vec![format!("/{}", c.name)]),
        image: Some(c.image.clone()),
        image_id: Some(c.image_id.clone()),
        command: Some(command_text(&spec::argv_of(&c.config))),
        created: Some(unix_seconds(&c.created)),
        ports: Some(Vec::new()),
        labels: Some(c.config.labels.clone().unwrap_or_default()),
        state: Some(c.state.status.as_str().into()),
        status: Some(status_text(c)),
        host_config: Some(ContainerSummaryHostConfig {
            network_mode: Some(network_mode(c)),
            ..Default::default()
        }),
        network_settings: Some(ContainerSummaryNetworkSettings {
            networks: Some(networks(c)),
        }),
        mounts: Some(c.mounts.clone()),
        ..Default::default()
    }
}

fn state_enum(status: Status) -> ContainerStateStatusEnum {
    match status {
        Status::Created => ContainerStateStatusEnum::CREATED,
        Status::Running => ContainerStateStatusEnum::RUNNING,
        Status::Paused => ContainerStateStatusEnum::PAUSED,
        Status::Restarting => ContainerStateStatusEnum::RESTARTING,
        Status::Removing => ContainerStateStatusEnum::REMOVING,
        Status::Exited => ContainerStateStatusEnum::EXITED,
        Status::Dead => ContainerStateStatusEnum::DEAD,
    }
}

fn inspect(c: &Container, handle: &Handle, graph_driver: DriverData) -> ContainerInspectResponse {
    let s = &c.state;
    let argv = spec::argv_of(&c.config);
    let dir = &handle.paths.dir;
    ContainerInspectResponse {
        id: Some(c.id.clone()),
        created: Some(c.created.clone()),
        path: Some(argv.first().cloned().unwrap_or_default()),
        args: Some(argv.iter().skip(1).cloned().collect()),
        state: Some(ContainerState {
            status: Some(state_enum(s.status)),
            running: Some(matches!(s.status, Status::Running | Status::Paused)),
            paused: Some(s.status == Status::Paused),
            restarting: Some(s.status == Status::Restarting),
            oom_killed: Some(s.oom_killed),
            dead: Some(s.status == Status::Dead),
            pid: Some(i64::from(s.pid)),
            exit_code: Some(s.exit_code),
            error: Some(s.error.clone()),
            started_at: Some(
                s.started_at
                    .clone()
                    .unwrap_or_else(|| time::ZERO_TIME.into()),
            ),
            finished_at: Some(
                s.finished_at
                    .clone()
                    .unwrap_or_else(|| time::ZERO_TIME.into()),
            ),
            health: None,
        }),
        image: Some(c.image_id.clone()),
        resolv_conf_path: Some(dir.join("resolv.conf").display().to_string()),
        hostname_path: Some(dir.join("hostname").display().to_string()),
        hosts_path: Some(dir.join("hosts").display().to_string()),
        log_path: Some(handle.paths.log().display().to_string()),
        name: Some(format!("/{}", c.name)),
        restart_count: Some(c.restart_count),
        driver: Some("overlay2".into()),
        platform: Some("linux".into()),
        mount_label: Some(String::new()),
        process_label: Some(String::new()),
        app_armor_profile: Some(String::new()),
        exec_ids: None,
        host_config: Some(c.host_config.clone()),
        graph_driver: Some(graph_driver),
        mounts: Some(c.mounts.clone()),
        config: Some(c.config.clone()),
        network_settings: Some(NetworkSettings {
            networks: Some(networks(c)),
            sandbox_key: Some(if s.pid > 0 {
                format!("/proc/{}/ns/net", s.pid)
            } else {
                String::new()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Bytes under `dir` (the rw layer, for `--size`), not following links; walked with an
/// explicit stack, since the container decides how deep the tree is.
fn dir_size(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            match entry.metadata() {
                Ok(m) if m.is_dir() => pending.push(entry.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_quote_arguments_with_spaces() {
        let argv: Vec<String> = ["sh", "-c", "exit 0"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(command_text(&argv), "sh -c 'exit 0'");
    }

    #[test]
    fn durations_read_like_docker_ps() {
        let s = Duration::from_secs;
        assert_eq!(
            human_duration(Duration::from_millis(300)),
            "Less than a second"
        );
        assert_eq!(human_duration(s(1)), "1 second");
        assert_eq!(human_duration(s(42)), "42 seconds");
        assert_eq!(human_duration(s(61)), "About a minute");
        assert_eq!(human_duration(s(59 * 60)), "59 minutes");
        assert_eq!(human_duration(s(3600)), "About an hour");
        assert_eq!(human_duration(s(5 * 3600)), "5 hours");
        assert_eq!(human_duration(s(3 * 86400)), "3 days");
        assert_eq!(human_duration(s(20 * 86400)), "2 weeks");
    }
}
