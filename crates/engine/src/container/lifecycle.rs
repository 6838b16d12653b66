//! A container's life through the engine: create (snapshot, init layer, record), start (a
//! monitor creates and starts it), stop/kill/restart/pause, wait, rm, and the watcher that
//! records each exit and applies the restart policy.

use std::collections::{BTreeSet, HashMap};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};
use berth_image::config::{chain_ids, ImageConfig};
use berth_image::digest::Digest;
use berth_image::reference::Reference;
use berth_image::snapshot::Snapshot;
use berth_monitor::protocol::{ExitStatus, MonitorConfig};
use bollard_stubs::models::{ContainerConfig, HostConfig, RestartPolicyNameEnum};
use serde::Deserialize;
use tokio::io::unix::AsyncFd;

use super::initlayer::InitLayer;
use super::{
    names, namespaces, spec, user, Container, Handle, Paths, PendingAttach, State, Status,
};
use crate::error::{Error, Result};
use crate::{time, Engine};

/// The body of `POST /containers/create`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CreateRequest {
    #[serde(flatten)]
    pub config: ContainerConfig,
    #[serde(rename = "HostConfig", default)]
    pub host_config: Option<HostConfig>,
    #[serde(rename = "NetworkingConfig", default)]
    pub networking_config: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitCondition {
    NotRunning,
    NextExit,
    Removed,
}

impl WaitCondition {
    /// `condition=` of the API ("" is not-running).
    pub fn parse(s: &str) -> Result<WaitCondition> {
        match s {
            "" | "not-running" => Ok(WaitCondition::NotRunning),
            "next-exit" => Ok(WaitCondition::NextExit),
            "removed" => Ok(WaitCondition::Removed),
            other => Err(Error::InvalidParameter(format!(
                "invalid condition: \"{other}\""
            ))),
        }
    }
}

/// A wait that has found its container (so a 404 comes before any header is sent).
pub struct Waiter {
    receiver: tokio::sync::watch::Receiver<State>,
    condition: WaitCondition,
    /// `FinishedAt` when the wait began: the next exit is one with another.
    finished_at: Option<String>,
}

impl Waiter {
    /// The exit code once the condition holds.
    pub async fn wait(mut self) -> Result<i64> {
        let mut last = self.receiver.borrow_and_update().clone();
        loop {
            let done = match self.condition {
                WaitCondition::NotRunning => !last.status.is_alive(),
                WaitCondition::NextExit => {
                    matches!(last.status, Status::Exited | Status::Dead)
                        && last.finished_at != self.finished_at
                }
                WaitCondition::Removed => false,
            };
            if done {
                return Ok(last.exit_code);
            }
            if self.receiver.changed().await.is_err() {
                // Removed: every condition holds once the container is gone.
                return Ok(last.exit_code);
            }
            last = self.receiver.borrow_and_update().clone();
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    pub all: bool,
    pub limit: Option<usize>,
    pub size: bool,
    pub filters: HashMap<String, Vec<String>>,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct AttachOptions {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
}

/// One end of an attach: the daemon pumps between it and the client's hijacked connection.
/// Output arrives raw with a tty, multiplexed (Docker's 8-byte frame headers) without.
pub struct Attached {
    pub stream: UnixStream,
    pub tty: bool,
}

/// Where a stop stands once its signal is sent.
enum Stopping {
    /// Nothing to wait for (it was between restarts).
    Done,
    /// Wait this long (None: for ever) before SIGKILL.
    Wait(Option<Duration>),
}

/// Restart backoff: Docker's doubling from 100 ms, capped.
const RESTART_BACKOFF_MS: (u64, u64) = (100, 60_000);
/// A container that ran this long before exiting restarts without backoff.
const RESTART_RESET_AFTER: Duration = Duration::from_secs(10);
/// How long `rm -f` and a stop's SIGKILL wait for the container to go.
const KILL_WAIT: Duration = Duration::from_secs(30);

/// The container's operation lock: start, stop, kill, restart, pause, rm and the restart
/// policy's starts take it, so they never interleave; recording an exit does not (a stop
/// holding it waits for that).
fn lock_op(handle: &Handle) -> std::sync::MutexGuard<'_, ()> {
    handle.op.lock().unwrap_or_else(|e| e.into_inner())
}

fn not_running(id: &str) -> Error {
    Error::Conflict(format!("Container {id} is not running"))
}

impl Engine {
    /// The image's config and its layers' chain ids, bottom first.
    pub fn image_config(&self, image_id: &Digest) -> Result<ImageConfig> {
        let bytes = self.images.content.read(image_id)?;
        Ok(ImageConfig::parse(&bytes).map_err(|e| anyhow!("image {image_id}: {e}"))?)
    }

    fn resolve_image(&self, name: &str) -> Result<Digest> {
        self.images.index.resolve(name).map_err(|_| {
            let shown = Reference::parse_normalized(name)
                .map(|r| r.familiar())
                .unwrap_or_else(|_| name.to_string());
            Error::no_such_image(shown)
        })
    }

    /// `POST /containers/create`: returns the id and warnings.
    pub fn create_container(
        &self,
        name: Option<&str>,
        req: CreateRequest,
    ) -> Result<(String, Vec<String>)> {
        let name = match name.filter(|n| !n.is_empty()) {
            Some(n) => names::validate(n)?,
            None => names::generate(|n| self.containers.by_name(n).is_some()),
        };
        if let Some(other) = self.containers.by_name(&name) {
            return Err(super::name_conflict(&name, &other.id));
        }
        let image_name = req
            .config
            .image
            .clone()
            .filter(|i| !i.is_empty())
            .ok_or_else(|| Error::InvalidParameter("No image specified".into()))?;
        // Held until the snapshot is mounted: a concurrent rmi + collect must not take the
        // layers between the lookup and the mount (mounted layers count as in use).
        let _writing = self.images.writer_lock()?;
        let image_id = self.resolve_image(&image_name)?;
        let image = self.image_config(&image_id)?;
        let mut host_config = req.host_config.unwrap_or_default();
        let hostname = req.config.hostname.as_deref().unwrap_or("");
        validate_host_config(&host_config, hostname)?;
        let mut warnings = spec::complete_host_config(&mut host_config);
        spec::check_resources(&host_config)?;
        // The only log driver: say so, as clients (docker-py's run) read it back.
        host_config.log_config = Some(bollard_stubs::models::HostConfigLogConfig {
            typ: Some("json-file".into()),
            config: Some(HashMap::new()),
        });
        let id = crate::random_id()?;
        let mut config = req.config;
        let unnamed = config.hostname.as_deref().unwrap_or("").is_empty();
        if unnamed && namespaces::is_host_network(&host_config) {
            // As Docker: the host's name where the container shares the host's network.
            config.hostname = Some(
                nix::unistd::gethostname()
                    .context("cannot read the host's name")?
                    .to_string_lossy()
                    .into_owned(),
            );
        }
        let config = merge_config(config, &image.config, &id);
        if spec::argv_of(&config).is_empty() {
            return Err(Error::InvalidParameter("No command specified".into()));
        }
        let config_volumes: BTreeSet<String> = config
            .volumes
            .iter()
            .flatten()
            .map(|(k, _)| k.clone())
            .collect();
        let (mounts, new_volumes) = self.resolve_mounts(&host_config, &config_volumes)?;
        let record = Container {
            id: id.clone(),
            name: name.clone(),
            created: time::now_rfc3339(),
            image: image_name.clone(),
            image_id: image_id.to_string(),
            config,
            host_config,
            state: State::default(),
            restart_count: 0,
            mounts,
            manually_stopped: false,
            path: String::new(),
            args: Vec::new(),
        };
        let layer = self.init_layer(&record);
        let handle = self.containers.insert_with(
            record,
            |paths| {
                self.make_rootfs(paths, &layer, &image)?;
                // While the record's write waits on the disk: a spare monitor for the start
                // that is likely to follow (a launch is a fork and an exec). Without one the
                // start launches its own, and reports why that fails, if it does.
                let _ = self.monitors.refill();
                Ok(())
            },
            |paths| {
                let _ = Snapshot::remove(&paths.snapshot());
            },
        )?;
        let populated = new_volumes.iter().try_for_each(|v| {
            self.volumes_populate(&v.name, &handle.paths.rootfs(), &v.destination)
        });
        if let Err(e) = populated {
            let _ = Snapshot::remove(&handle.paths.snapshot());
            let _ = self.containers.remove(&id);
            return Err(e);
        }
        self.events.emit(
            "container",
            "create",
            &id,
            &[("name", &name), ("image", &image_name)],
        );
        warnings.extend(create_warnings(&handle.get().host_config));
        Ok((id, warnings))
    }

    /// Mount the container's overlay (kept mounted until rm) and write the init layer files.
    fn make_rootfs(&self, paths: &Paths, layer: &InitLayer, image: &ImageConfig) -> Result<()> {
        let chain = chain_ids(&image.rootfs.diff_ids);
        Snapshot::mount(&self.images.layers, &paths.snapshot(), &chain)?;
        layer.write(&paths.dir)?;
        Ok(())
    }

    fn init_layer(&self, record: &Container) -> InitLayer {
        let host_file = |path| std::fs::read_to_string(path).unwrap_or_default();
        let host = &record.host_config;
        let settings = super::initlayer::Settings {
            hostname: record.config.hostname.as_deref().unwrap_or(""),
            domainname: record.config.domainname.as_deref().unwrap_or(""),
            host_network: namespaces::is_host_network(host),
            extra_hosts: host.extra_hosts.as_deref().unwrap_or_default(),
            dns: host.dns.as_deref().unwrap_or_default(),
            dns_search: host.dns_search.as_deref().unwrap_or_default(),
            dns_options: host.dns_options.as_deref().unwrap_or_default(),
        };
        InitLayer::new(
            &settings,
            || host_file("/etc/hosts"),
            &host_file("/etc/resolv.conf"),
        )
    }

    /// The overlay is mounted from create to rm; after a reboot it is not: mount it again.
    fn ensure_rootfs(&self, handle: &Handle) -> Result<()> {
        let merged = handle.paths.rootfs();
        if is_mountpoint(&merged)? {
            return Ok(());
        }
        let record = handle.get();
        let image = self.image_config(&record.image_id.parse().map_err(|e| anyhow!("{e}"))?)?;
        self.make_rootfs(&handle.paths, &self.init_layer(&record), &image)
    }

    /// `POST /containers/{id}/start`; NotModified when running.
    pub fn start_container(self: &Arc<Self>, name_or_id: &str) -> Result<()> {
        let handle = self.containers.get(name_or_id)?;
        let result = {
            let _op = lock_op(&handle);
            self.start_locked(&handle)
        };
        if result.is_ok() {
            // Saved once the operation lock is let go: a short-lived container's exit (its
            // auto-removal takes the lock) does not wait for the disk.
            return self.save_started(&handle);
        }
        // Attaches waiting for this start end now (their clients see EOF), and an
        // AutoRemove container goes, as Docker removes it when its start fails.
        handle
            .pending_attaches
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        if handle.get().host_config.auto_remove.unwrap_or(false) {
            let _op = lock_op(&handle);
            let _ = self.remove_locked(&handle, true, true);
        }
        result
    }

    /// A started container's record, saved (see `start_handle`). A container removed
    /// meanwhile (a short-lived one with AutoRemove) has nothing left to save.
    fn save_started(&self, handle: &Handle) -> Result<()> {
        match handle.save() {
            Err(_) if self.containers.get(&handle.id).is_err() => Ok(()),
            r => r,
        }
    }

    /// Start under the container's operation lock (see `Handle::op`); the caller saves the
    /// record (`save_started`).
    fn start_locked(self: &Arc<Self>, handle: &Arc<Handle>) -> Result<()> {
        match handle.get().state.status {
            Status::Running | Status::Paused | Status::Restarting => {
                return Err(Error::NotModified("container already started".into()))
            }
            Status::Removing | Status::Dead => {
                return Err(Error::Conflict(format!(
                    "cannot start container {}: it is being removed",
                    handle.id
                )))
            }
            Status::Created | Status::Exited => {}
        }
        handle.update_in_memory(|c| c.manually_stopped = false);
        self.start_handle(handle)
    }

    /// Spawn the monitor (which creates the container), hand it the waiting attaches, start.
    /// The running state is in memory only: the caller saves it (`save_started`).
    fn start_handle(self: &Arc<Self>, handle: &Arc<Handle>) -> Result<()> {
        self.ensure_rootfs(handle)?;
        let record = handle.get();
        let run_dir = self.config.run_dir(&handle.id);
        let _ = std::fs::remove_dir_all(&run_dir);
        std::fs::create_dir_all(&run_dir)
            .with_context(|| format!("cannot create {}", run_dir.display()))?;
        // A runtime container left by a monitor that died (or a reboot) is in the way.
        let _ = berth_runtime::container::delete(&self.config.runtime_root(), &handle.id, true);
        make_working_dir(handle, &record).map_err(|e| self.start_failed(handle, e))?;
        // The spare, or one started now to exec and load on another CPU while the spec is made.
        let launched = self
            .monitors
            .launch()
            .map_err(|e| self.start_failed(handle, e))?;
        let spec = self.container_spec(handle, &record)?;
        let bundle_config = run_dir.join("config.json");
        // The bundle is run state (rewritten at every start): atomic, not durable.
        berth_runtime::state::write_replace(
            &bundle_config,
            &serde_json::to_vec(&spec).context("cannot encode the OCI spec")?,
        )?;
        let monitor_config = MonitorConfig {
            runtime_root: self.config.runtime_root(),
            id: handle.id.clone(),
            bundle: run_dir.clone(),
            log_path: Some(handle.paths.log()),
            tty: record.config.tty.unwrap_or(false),
            open_stdin: record.config.open_stdin.unwrap_or(false),
            stdin_once: record.config.stdin_once.unwrap_or(false),
            exit_file: run_dir.join("exit.json"),
            socket: run_dir.join("monitor.sock"),
            exec: None,
        };
        let spawned = launched
            .configure(&monitor_config)
            .map_err(|e| self.start_failed(handle, e))?;
        let socket = monitor_config.socket.clone();
        let pending: Vec<PendingAttach> = std::mem::take(
            &mut *handle
                .pending_attaches
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        for a in pending {
            // An attach whose client already left is no reason to fail the start.
            let _ = berth_monitor::client::attach_stream(
                &socket, a.stream, a.stdin, a.stdout, a.stderr,
            );
        }
        let pid = match berth_monitor::client::start(&socket) {
            Ok(pid) => pid,
            Err(e) => {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(spawned.monitor_pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
                let _ =
                    berth_runtime::container::delete(&self.config.runtime_root(), &handle.id, true);
                return Err(self.start_failed(handle, e));
            }
        };
        let argv = spec::argv_of(&record.config);
        handle.update_in_memory(|c| {
            c.state = State {
                status: Status::Running,
                pid,
                monitor_pid: spawned.monitor_pid,
                exit_code: 0,
                started_at: Some(time::now_rfc3339()),
                finished_at: c.state.finished_at.clone(),
                oom_killed: false,
                error: String::new(),
            };
            c.path = argv.first().cloned().unwrap_or_default();
            c.args = argv.iter().skip(1).cloned().collect();
        });
        self.events.emit(
            "container",
            "start",
            &handle.id,
            &[("name", &record.name), ("image", &record.image)],
        );
        self.watch_monitor(handle.clone(), spawned.monitor_pid)?;
        Ok(())
    }

    /// Record a failed start (inspect's State.Error, exit code 127/126 like Docker's) and
    /// turn the monitor's message into the API's error.
    fn start_failed(&self, handle: &Handle, e: anyhow::Error) -> Error {
        // Clients match Go's lowercase errno texts: the docker CLI exits 127 on "no such
        // file or directory" and 126 on "permission denied".
        let message = format!("{e:#}")
            .replace("No such file or directory", "no such file or directory")
            .replace("Permission denied", "permission denied")
            .replace(" (os error 2)", "")
            .replace(" (os error 13)", "");
        let code = if message.contains("no such file") || message.contains("not found") {
            127
        } else if message.contains("permission denied") || message.contains("cannot execute") {
            126
        } else {
            128
        };
        let _ = handle.update(|c| {
            c.state.status = if c.state.started_at.is_some() {
                Status::Exited
            } else {
                Status::Created
            };
            c.state.exit_code = code;
            c.state.error = message.clone();
        });
        Error::InvalidParameter(format!(
            "failed to create task for container: {message}: unknown"
        ))
    }

    /// The OCI spec for the container's next start.
    fn container_spec(
        &self,
        handle: &Handle,
        record: &Container,
    ) -> Result<oci_spec::runtime::Spec> {
        let host = &record.host_config;
        let group_add = host.group_add.clone().unwrap_or_default();
        let user = user::resolve(
            &handle.paths.rootfs(),
            record.config.user.as_deref().unwrap_or(""),
            &group_add,
        )?;
        // Written at create; kept with the container's own edits across restarts.
        let mut init_files = super::initlayer::binds(&handle.paths.dir);
        if !init_files.iter().all(|(_, file)| file.exists()) {
            init_files = self.init_layer(record).write(&handle.paths.dir)?;
        }
        let init_binary = host
            .init
            .unwrap_or(false)
            .then_some(self.config.init.as_path());
        let joined_pid = namespaces::pid_container(host)
            .map(|other| self.pid_namespace_of(other))
            .transpose()?;
        spec::build(
            record,
            spec::SpecInputs {
                rootfs: &handle.paths.rootfs(),
                user: &user,
                init_files: &init_files,
                mounts: super::mounts::oci_mounts(&record.mounts, host)?,
                cgroup_path: self.cgroup_path(&handle.id),
                init_binary,
                joined_pid,
            },
        )
    }

    /// The pid namespace of running container `name_or_id`, for `--pid container:…`.
    fn pid_namespace_of(&self, name_or_id: &str) -> Result<std::path::PathBuf> {
        let other = self.containers.get(name_or_id)?;
        let init = matches!(other.get().state.status, Status::Running | Status::Paused)
            .then(|| self.running_init(&other.id))
            .flatten()
            .ok_or_else(|| {
                Error::Conflict(format!(
                    "cannot join PID of a non running container: {}",
                    other.id
                ))
            })?;
        Ok(format!("/proc/{}/ns/pid", init.pid).into())
    }

    /// Watch the monitor until it exits (a pidfd, also for monitors a previous berthd
    /// started), then record the exit.
    fn watch_monitor(self: &Arc<Self>, handle: Arc<Handle>, monitor_pid: i32) -> Result<()> {
        let pidfd = berth_runtime::sys::pidfd_open(monitor_pid);
        let engine = self.clone();
        self.rt.spawn(async move {
            if let Ok(pidfd) = pidfd {
                // SAFETY: the AsyncFd owns the OwnedFd, so the descriptor stays open and the
                // same for the AsyncFd's whole life.
                if let Ok(fd) = unsafe { AsyncFd::register(pidfd) } {
                    let _ = fd.readable().await;
                }
            }
            // Ours if this berthd spawned it; not an error otherwise.
            let _ = nix::sys::wait::waitpid(
                nix::unistd::Pid::from_raw(monitor_pid),
                Some(nix::sys::wait::WaitPidFlag::WNOHANG),
            );
            let engine2 = engine.clone();
            let _ = tokio::task::spawn_blocking(move || engine2.on_monitor_exit(&handle)).await;
        });
        Ok(())
    }

    /// The monitor is gone: record how the container ended, then restart it or remove it
    /// as its policy says.
    /// Takes no operation lock: a stop or rm holding it waits for exactly this.
    fn on_monitor_exit(self: &Arc<Self>, handle: &Arc<Handle>) {
        let run_dir = self.config.run_dir(&handle.id);
        let exit = berth_monitor::client::read_exit(&run_dir.join("exit.json"))
            .ok()
            .flatten();
        let exit = exit.unwrap_or_else(|| {
            // The monitor died without a word (killed): its container must not live on
            // unseen. Docker says 255 then.
            let _ = berth_runtime::container::delete(&self.config.runtime_root(), &handle.id, true);
            ExitStatus {
                exit_code: 255,
                finished_at: time::now_rfc3339(),
                oom_killed: false,
            }
        });
        // Cleaned up before the exit is published: a start that follows it makes these anew.
        let _ = std::fs::remove_dir_all(&run_dir);
        // Docker drops a container's exec instances when it stops.
        self.execs.remove_container(&handle.id);
        let record = handle.get();
        let auto_remove = record.host_config.auto_remove.unwrap_or(false);
        let record_exit = |c: &mut Container| {
            c.state.status = Status::Exited;
            c.state.pid = 0;
            c.state.monitor_pid = 0;
            c.state.exit_code = i64::from(exit.exit_code);
            c.state.finished_at = Some(exit.finished_at.clone());
            c.state.oom_killed = exit.oom_killed;
        };
        // A container removed right away needs no durable record of its exit.
        if auto_remove {
            handle.update_in_memory(record_exit);
        } else {
            let _ = handle.update(record_exit);
        }
        let code = exit.exit_code.to_string();
        if exit.oom_killed {
            self.events
                .emit("container", "oom", &handle.id, &[("name", &record.name)]);
        }
        self.events.emit(
            "container",
            "die",
            &handle.id,
            &[
                ("name", &record.name),
                ("image", &record.image),
                ("exitCode", &code),
            ],
        );
        if let Some(delay) = restart_delay(&handle.get(), exit.exit_code) {
            self.schedule_restart(handle.clone(), delay);
        } else if auto_remove {
            self.auto_remove(handle.clone(), exit.finished_at);
        }
    }

    /// Remove an AutoRemove container after the exit that ended at `finished_at`, unless it
    /// was started again (a `restart`) or removed meanwhile.
    fn auto_remove(self: &Arc<Self>, handle: Arc<Handle>, finished_at: String) {
        let engine = self.clone();
        self.rt.spawn_blocking(move || {
            let _op = lock_op(&handle);
            let now = handle.get().state;
            let same_exit = now.status == Status::Exited
                && now.finished_at.as_deref() == Some(finished_at.as_str());
            if !same_exit || engine.containers.get(&handle.id).is_err() {
                return;
            }
            if let Err(e) = engine.remove_locked(&handle, true, true) {
                eprintln!("berthd: cannot auto-remove {}: {}", handle.id, e.message());
            }
        });
    }

    fn schedule_restart(self: &Arc<Self>, handle: Arc<Handle>, delay: Duration) {
        let _ = handle.update(|c| {
            c.state.status = Status::Restarting;
            c.restart_count += 1;
        });
        let engine = self.clone();
        self.rt.spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = tokio::task::spawn_blocking(move || {
                let _op = lock_op(&handle);
                let record = handle.get();
                let removed = engine.containers.get(&handle.id).is_err();
                // Stopped or removed while waiting: no restart.
                if removed || record.manually_stopped || record.state.status != Status::Restarting {
                    if record.state.status == Status::Restarting {
                        let _ = handle.update(|c| c.state.status = Status::Exited);
                    }
                    return;
                }
                match engine.start_handle(&handle) {
                    Ok(()) => {
                        if let Err(e) = engine.save_started(&handle) {
                            eprintln!("berthd: restarted {}: {}", handle.id, e.message());
                        }
                    }
                    Err(e) => {
                        eprintln!("berthd: cannot restart {}: {}", handle.id, e.message());
                        let _ = handle.update(|c| c.state.status = Status::Exited);
                    }
                }
            })
            .await;
        });
    }

    fn signal(&self, handle: &Handle, signal: i32) -> Result<()> {
        match berth_runtime::container::kill(&self.config.runtime_root(), &handle.id, signal, false)
        {
            Ok(()) => Ok(()),
            // Exited meanwhile: what the caller wanted has happened.
            Err(_) if !self.process_alive(handle) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    fn process_alive(&self, handle: &Handle) -> bool {
        handle.get().state.status.is_alive() && self.running_init(&handle.id).is_some()
    }

    /// The runtime's state of container `id` while its init runs, as the runtime sees it: its
    /// start time is checked (a pid taken over by another process is not it), and an init
    /// that has exited but is not yet reaped by its monitor does not run (a pidfd still
    /// opens on it).
    fn running_init(&self, id: &str) -> Option<berth_runtime::state::State> {
        berth_runtime::state::State::load(&self.config.runtime_root(), id)
            .ok()
            .filter(|state| state.init_alive())
    }

    fn parse_signal(signal: &str) -> Result<i32> {
        berth_runtime::signals::parse(signal)
            .map_err(|e| Error::InvalidParameter(format!("Invalid signal: {signal} ({e})")))
    }

    /// Wait until the container is no longer running, at most `limit` (None: no limit).
    /// Blocks: call from a blocking thread.
    fn wait_stopped(&self, handle: &Handle, limit: Option<Duration>) -> bool {
        let mut receiver = handle.subscribe();
        let stopped = async move {
            loop {
                if !receiver.borrow_and_update().status.is_alive() {
                    return;
                }
                if receiver.changed().await.is_err() {
                    return;
                }
            }
        };
        self.rt.block_on(async {
            match limit {
                Some(limit) => tokio::time::timeout(limit, stopped).await.is_ok(),
                None => {
                    stopped.await;
                    true
                }
            }
        })
    }

    /// `POST /containers/{id}/stop?signal=&t=`: blocks until stopped; NotModified when not running.
    pub fn stop_container(
        &self,
        name_or_id: &str,
        signal: Option<&str>,
        timeout: Option<i64>,
    ) -> Result<()> {
        let handle = self.containers.get(name_or_id)?;
        let stopping = {
            let _op = lock_op(&handle);
            self.begin_stop(&handle, signal, timeout)?
        };
        // Waited for without the lock: a `kill` or `rm -f` meanwhile goes ahead, as Docker's.
        self.finish_stop(&handle, stopping)
    }

    fn stop_locked(
        &self,
        handle: &Handle,
        signal: Option<&str>,
        timeout: Option<i64>,
    ) -> Result<()> {
        let stopping = self.begin_stop(handle, signal, timeout)?;
        self.finish_stop(handle, stopping)
    }

    /// Mark the container stopped by hand and send its stop signal.
    fn begin_stop(
        &self,
        handle: &Handle,
        signal: Option<&str>,
        timeout: Option<i64>,
    ) -> Result<Stopping> {
        let record = handle.update(|c| {
            c.manually_stopped = true;
            c.clone()
        })?;
        if record.state.status == Status::Restarting {
            let _ = handle.update(|c| c.state.status = Status::Exited);
            return Ok(Stopping::Done);
        }
        if !record.state.status.is_alive() {
            return Err(Error::NotModified("container already stopped".into()));
        }
        let signal = signal
            .filter(|s| !s.is_empty())
            .map(String::from)
            .or_else(|| record.config.stop_signal.clone().filter(|s| !s.is_empty()))
            .unwrap_or_else(|| "SIGTERM".into());
        let timeout = timeout.or(record.config.stop_timeout).unwrap_or(10);
        self.signal(handle, Self::parse_signal(&signal)?)?;
        if record.state.status == Status::Paused {
            self.freeze(&handle.id, false)?;
        }
        // A negative timeout waits for as long as it takes, as Docker's `-t -1`.
        Ok(Stopping::Wait(
            (timeout >= 0).then(|| Duration::from_secs(timeout as u64)),
        ))
    }

    /// Wait out the grace period, then SIGKILL.
    fn finish_stop(&self, handle: &Handle, stopping: Stopping) -> Result<()> {
        let Stopping::Wait(grace) = stopping else {
            return Ok(());
        };
        if !self.wait_stopped(handle, grace) {
            self.signal(handle, libc::SIGKILL)?;
            if !self.wait_stopped(handle, Some(KILL_WAIT)) {
                return Err(anyhow!("container {} did not stop after SIGKILL", handle.id).into());
            }
        }
        let name = handle.get().name;
        self.events
            .emit("container", "stop", &handle.id, &[("name", &name)]);
        Ok(())
    }

    pub fn restart_container(
        self: &Arc<Self>,
        name_or_id: &str,
        signal: Option<&str>,
        timeout: Option<i64>,
    ) -> Result<()> {
        let handle = self.containers.get(name_or_id)?;
        {
            // One operation: an AutoRemove container is not removed in between.
            let _op = lock_op(&handle);
            match self.stop_locked(&handle, signal, timeout) {
                Ok(()) | Err(Error::NotModified(_)) => {}
                Err(e) => return Err(e),
            }
            self.start_locked(&handle)?;
        }
        self.save_started(&handle)?;
        self.events.emit(
            "container",
            "restart",
            &handle.id,
            &[("name", &handle.get().name)],
        );
        Ok(())
    }

    /// `POST /containers/{id}/kill?signal=` (names with or without SIG, or numbers).
    pub fn kill_container(&self, name_or_id: &str, signal: Option<&str>) -> Result<()> {
        let handle = self.containers.get(name_or_id)?;
        let signal = Self::parse_signal(signal.filter(|s| !s.is_empty()).unwrap_or("SIGKILL"))?;
        let _op = lock_op(&handle);
        let record = handle.get();
        if !matches!(record.state.status, Status::Running | Status::Paused) {
            return Err(Error::Conflict(format!(
                "Cannot kill container: {}: Container {} is not running",
                name_or_id, handle.id
            )));
        }
        if signal == libc::SIGKILL || signal == libc::SIGTERM {
            handle.update(|c| c.manually_stopped = true)?;
        }
        self.signal(&handle, signal)?;
        if signal == libc::SIGKILL {
            if record.state.status == Status::Paused {
                self.freeze(&handle.id, false)?;
            }
            // As dockerd: a SIGKILL returns once the container is gone, so an inspect
            // right after sees it exited.
            self.wait_stopped(&handle, Some(KILL_WAIT));
        }
        let number = signal.to_string();
        self.events.emit(
            "container",
            "kill",
            &handle.id,
            &[("name", &record.name), ("signal", &number)],
        );
        Ok(())
    }

    pub fn pause_container(&self, name_or_id: &str) -> Result<()> {
        self.set_paused(name_or_id, true)
    }

    pub fn unpause_container(&self, name_or_id: &str) -> Result<()> {
        self.set_paused(name_or_id, false)
    }

    fn set_paused(&self, name_or_id: &str, pause: bool) -> Result<()> {
        let handle = self.containers.get(name_or_id)?;
        let _op = lock_op(&handle);
        match (handle.get().state.status, pause) {
            (Status::Running, true) | (Status::Paused, false) => {}
            (Status::Paused, true) => {
                return Err(Error::Conflict(format!(
                    "Container {} is already paused",
                    handle.id
                )))
            }
            (_, true) => return Err(not_running(&handle.id)),
            (_, false) => {
                return Err(Error::Conflict(format!(
                    "Container {} is not paused",
                    handle.id
                )))
            }
        }
        self.freeze(&handle.id, pause)?;
        let (status, action) = if pause {
            (Status::Paused, "pause")
        } else {
            (Status::Running, "unpause")
        };
        handle.update(|c| c.state.status = status)?;
        self.events.emit(
            "container",
            action,
            &handle.id,
            &[("name", &handle.get().name)],
        );
        Ok(())
    }

    /// Freeze or thaw the container's cgroup and wait until the kernel says it is done (the
    /// runtime's freezer, which `berth-runtime pause` uses too).
    fn freeze(&self, id: &str, frozen: bool) -> Result<()> {
        let cgroup = berth_runtime::cgroups::open(&self.cgroup_path(id))?;
        Ok(cgroup.set_frozen(frozen)?)
    }

    pub fn waiter(&self, name_or_id: &str, condition: WaitCondition) -> Result<Waiter> {
        let handle = self.containers.get(name_or_id)?;
        let receiver = handle.subscribe();
        let finished_at = receiver.borrow().finished_at.clone();
        Ok(Waiter {
            receiver,
            condition,
            finished_at,
        })
    }

    /// `DELETE /containers/{id}?force=&v=`.
    pub fn remove_container(&self, name_or_id: &str, force: bool, volumes: bool) -> Result<()> {
        let handle = self.containers.get(name_or_id)?;
        let _op = lock_op(&handle);
        if self.containers.get(&handle.id).is_err() {
            // Removed (auto-remove) while we waited for the lock.
            return Err(Error::no_such_container(name_or_id));
        }
        self.remove_locked(&handle, force, volumes)
    }

    /// Remove under the container's operation lock: nothing starts it meanwhile.
    fn remove_locked(&self, handle: &Arc<Handle>, force: bool, volumes: bool) -> Result<()> {
        // A restart the policy scheduled for an exit just before this must not happen.
        let record = handle.update_in_memory(|c| {
            c.manually_stopped = true;
            c.clone()
        });
        if record.state.status.is_alive() {
            if !force {
                return Err(Error::Conflict(format!(
                    "cannot remove container \"/{}\": container is running: stop the container before removing or force remove",
                    record.name
                )));
            }
            // No restart policy or auto-remove acts on the exit this kill causes.
            handle.update(|c| c.manually_stopped = true)?;
            if record.state.status == Status::Restarting {
                handle.update(|c| c.state.status = Status::Exited)?;
            } else {
                self.signal(handle, libc::SIGKILL)?;
                if record.state.status == Status::Paused {
                    let _ = self.freeze(&handle.id, false);
                }
                if !self.wait_stopped(handle, Some(KILL_WAIT)) {
                    return Err(anyhow!("container {} did not die after SIGKILL", handle.id).into());
                }
            }
        }
        let before = handle.get().state.status;
        // Not saved: a removal cut short leaves the record in its last saved state, which
        // another `rm` finishes.
        handle.update_in_memory(|c| c.state.status = Status::Removing);
        // The layers of an image force-removed while this container used it go now: they
        // must not be mounted then. Otherwise the rootfs is unmounted with the rest of the
        // container's files, in the background (`ContainerStore::remove`).
        let image_gone = record
            .image_id
            .parse()
            .is_ok_and(|id| matches!(self.images.index.image(&id), Ok(None)));
        let removed = (|| {
            if image_gone {
                Snapshot::unmount(&handle.paths.snapshot())?;
            }
            let _ = std::fs::remove_dir_all(self.config.run_dir(&handle.id));
            Ok::<_, anyhow::Error>(self.containers.remove(&handle.id)?)
        })();
        if let Err(e) = removed {
            handle.update_in_memory(|c| c.state.status = before);
            return Err(e.into());
        }
        if volumes {
            self.remove_anonymous_volumes(&record);
        }
        if image_gone {
            if let Err(e) = self.collect_unused_layers() {
                eprintln!("berthd: cannot collect layers: {}", e.message());
            }
        }
        self.events.emit(
            "container",
            "destroy",
            &handle.id,
            &[("name", &record.name), ("image", &record.image)],
        );
        Ok(())
    }

    pub fn rename_container(&self, name_or_id: &str, new_name: &str) -> Result<()> {
        let handle = self.containers.get(name_or_id)?;
        let new_name = names::validate(new_name)?;
        let old = handle.get().name;
        if old == new_name {
            return Err(Error::InvalidParameter(
                "Renaming a container with the same name as its current name".into(),
            ));
        }
        self.containers.rename(&handle, &new_name)?;
        let old_name = format!("/{old}");
        self.events.emit(
            "container",
            "rename",
            &handle.id,
            &[("name", &new_name), ("oldName", &old_name)],
        );
        Ok(())
    }

    /// Attach to a created or running container (before start: the stream is handed to the
    /// monitor when it starts).
    pub fn attach_container(&self, name_or_id: &str, opts: AttachOptions) -> Result<Attached> {
        let handle = self.containers.get(name_or_id)?;
        let record = handle.get();
        let tty = record.config.tty.unwrap_or(false);
        let stdin = opts.stdin && record.config.open_stdin.unwrap_or(false);
        match record.state.status {
            Status::Running | Status::Paused => {
                let socket = self.config.run_dir(&handle.id).join("monitor.sock");
                let stream =
                    berth_monitor::client::attach(&socket, stdin, opts.stdout, opts.stderr)?;
                Ok(Attached { stream, tty })
            }
            Status::Created | Status::Exited | Status::Restarting => {
                let (ours, theirs) = UnixStream::pair().context("socketpair")?;
                handle
                    .pending_attaches
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(PendingAttach {
                        stream: theirs,
                        stdin,
                        stdout: opts.stdout,
                        stderr: opts.stderr,
                    });
                Ok(Attached { stream: ours, tty })
            }
            Status::Removing | Status::Dead => Err(not_running(&handle.id)),
        }
    }

    pub fn resize_container(&self, name_or_id: &str, height: u16, width: u16) -> Result<()> {
        let handle = self.containers.get(name_or_id)?;
        if !handle.get().state.status.is_alive() {
            return Err(not_running(&handle.id));
        }
        let socket = self.config.run_dir(&handle.id).join("monitor.sock");
        berth_monitor::client::resize(&socket, height, width)?;
        Ok(())
    }
}

/// Pick up the containers a previous berthd left (see `Engine::open`): running ones whose
/// monitor lives are watched again; ones whose monitor is gone get their exit recorded;
/// `always`/`unless-stopped` ones that are not running are started, as dockerd does.
pub fn restore(engine: &Arc<Engine>) -> anyhow::Result<()> {
    for handle in engine.containers.list() {
        let record = handle.get();
        match record.state.status {
            Status::Running | Status::Paused | Status::Restarting => {
                let monitor = record.state.monitor_pid;
                if monitor > 0 && is_our_monitor(monitor, &engine.config.run_dir(&handle.id)) {
                    engine.watch_monitor(handle.clone(), monitor)?;
                } else {
                    engine.on_monitor_exit(&handle);
                }
            }
            // "removing" is never saved (see remove_handle).
            Status::Created | Status::Exited | Status::Dead | Status::Removing => {
                let policy = record
                    .host_config
                    .restart_policy
                    .as_ref()
                    .and_then(|p| p.name);
                // As dockerd: `always` comes back even after a manual stop, `unless-stopped`
                // only if it was not stopped by hand.
                let wants_up = matches!(policy, Some(RestartPolicyNameEnum::ALWAYS))
                    || (matches!(policy, Some(RestartPolicyNameEnum::UNLESS_STOPPED))
                        && !record.manually_stopped);
                if wants_up && record.state.started_at.is_some() {
                    let engine = engine.clone();
                    let handle = handle.clone();
                    engine.rt.clone().spawn_blocking(move || {
                        let _op = lock_op(&handle);
                        let started = engine.start_locked(&handle);
                        if let Err(e) = started.and_then(|()| engine.save_started(&handle)) {
                            eprintln!("berthd: cannot restart {}: {}", handle.id, e.message());
                        }
                    });
                }
            }
        }
    }
    Ok(())
}

/// Whether `pid` is still the monitor of the container whose run dir is `run_dir` (and not
/// a process that reused the pid): a berth-monitor working in that directory.
fn is_our_monitor(pid: i32, run_dir: &Path) -> bool {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm"));
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd"));
    comm.is_ok_and(|c| c.trim_end() == "berth-monitor") && cwd.is_ok_and(|d| d == run_dir)
}

/// When to restart after an exit with `code`, per the restart policy (None: not at all).
fn restart_delay(record: &Container, code: i32) -> Option<Duration> {
    if record.manually_stopped {
        return None;
    }
    let policy = record.host_config.restart_policy.as_ref()?;
    let restart = match policy.name? {
        RestartPolicyNameEnum::ALWAYS | RestartPolicyNameEnum::UNLESS_STOPPED => true,
        RestartPolicyNameEnum::ON_FAILURE => {
            let max = policy.maximum_retry_count.unwrap_or(0);
            code != 0 && (max <= 0 || record.restart_count < max)
        }
        _ => false,
    };
    if !restart {
        return None;
    }
    let ran = match (&record.state.started_at, &record.state.finished_at) {
        (Some(s), Some(f)) => time::parse_timestamp(f)
            .zip(time::parse_timestamp(s))
            .and_then(|(f, s)| f.duration_since(s).ok()),
        _ => None,
    };
    if ran.is_some_and(|d| d >= RESTART_RESET_AFTER) {
        return Some(Duration::from_millis(RESTART_BACKOFF_MS.0));
    }
    let shift = record.restart_count.clamp(0, 20) as u32;
    Some(Duration::from_millis(
        (RESTART_BACKOFF_MS.0 << shift).min(RESTART_BACKOFF_MS.1),
    ))
}

/// What the client should hear about settings this engine takes but cannot honour yet.
fn create_warnings(host: &HostConfig) -> Vec<String> {
    let publishes = host.port_bindings.as_ref().is_some_and(|p| !p.is_empty())
        || host.publish_all_ports.unwrap_or(false);
    let mut warnings = Vec::new();
    if publishes && !namespaces::is_host_network(host) {
        warnings.push(
            "Published ports are discarded: berth has no bridge network yet; containers get \
             their own network namespace with only loopback (use --network host to share the \
             host's)"
                .to_string(),
        );
    }
    warnings
}

fn validate_host_config(host: &HostConfig, hostname: &str) -> Result<()> {
    refuse_unsupported(host)?;
    super::security::validate(host)?;
    namespaces::validate(host, hostname)?;
    super::initlayer::validate_extra_hosts(host.extra_hosts.as_deref().unwrap_or_default())?;
    if let Some(policy) = &host.restart_policy {
        let name = policy.name.unwrap_or(RestartPolicyNameEnum::EMPTY);
        let restarts = !matches!(
            name,
            RestartPolicyNameEnum::EMPTY | RestartPolicyNameEnum::NO
        );
        if restarts && host.auto_remove.unwrap_or(false) {
            return Err(Error::InvalidParameter(
                "can't create 'AutoRemove' container with restart policy".into(),
            ));
        }
        if policy.maximum_retry_count.unwrap_or(0) != 0 && name != RestartPolicyNameEnum::ON_FAILURE
        {
            return Err(Error::InvalidParameter(
                "invalid restart policy: maximum retry count can only be used with 'on-failure'"
                    .into(),
            ));
        }
    }
    match host.network_mode.as_deref().unwrap_or("") {
        "" | "default" | "bridge" | "none" | "host" => Ok(()),
        other => Err(Error::NotFound(format!("network {other} not found"))),
    }
}

/// As Docker at each start: a missing working directory is made (0755, root's), resolved
/// inside the container's tree, volumes included; one that is not a directory is an error.
/// Made before the runtime makes a read-only root read-only, as Docker's.
fn make_working_dir(handle: &Handle, record: &Container) -> anyhow::Result<()> {
    let Some(dir) = record
        .config
        .working_dir
        .as_deref()
        .filter(|d| *d != "/" && !d.is_empty())
    else {
        return Ok(());
    };
    let mut fs = crate::archive::container_fs(handle, record);
    fs.readonly_rootfs = false;
    let walk = crate::archive::Walk {
        follow_last: true,
        create_dirs: true,
    };
    let not_a_directory = || anyhow!("Cannot mkdir: {dir} is not a directory");
    let made = fs.resolve(dir.as_bytes(), walk).map_err(|e| e.error);
    match made.and_then(|node| node.stat()) {
        Ok(st) if crate::archive::resolve::is_type(&st, libc::S_IFDIR) => Ok(()),
        Ok(_) => Err(not_a_directory()),
        Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => Err(not_a_directory()),
        Err(e) => Err(anyhow!("cannot make the working directory {dir}: {e}")),
    }
}

/// HostConfig settings berth does not implement (yet): refused by name rather than ignored,
/// so a container never runs without what its creator asked for. Empty values (which
/// clients send for "not set") pass.
fn refuse_unsupported(host: &HostConfig) -> Result<()> {
    let set = |values: Option<usize>| values.is_some_and(|n| n > 0);
    let text = |value: &Option<String>| value.as_deref().is_some_and(|v| !v.is_empty());
    let unsupported = [
        (
            "VolumesFrom (--volumes-from)",
            set(host.volumes_from.as_ref().map(Vec::len)),
        ),
        ("Links (--link)", set(host.links.as_ref().map(Vec::len))),
        ("CgroupParent (--cgroup-parent)", text(&host.cgroup_parent)),
        (
            "UsernsMode (--userns)",
            text(&host.userns_mode) && host.userns_mode.as_deref() != Some("host"),
        ),
        (
            "BlkioWeightDevice (--blkio-weight-device)",
            set(host.blkio_weight_device.as_ref().map(Vec::len)),
        ),
        (
            "BlkioDeviceReadBps (--device-read-bps)",
            set(host.blkio_device_read_bps.as_ref().map(Vec::len)),
        ),
        (
            "BlkioDeviceWriteBps (--device-write-bps)",
            set(host.blkio_device_write_bps.as_ref().map(Vec::len)),
        ),
        (
            "BlkioDeviceReadIOps (--device-read-iops)",
            set(host.blkio_device_read_iops.as_ref().map(Vec::len)),
        ),
        (
            "BlkioDeviceWriteIOps (--device-write-iops)",
            set(host.blkio_device_write_iops.as_ref().map(Vec::len)),
        ),
        (
            "CpuRealtimePeriod (--cpu-rt-period)",
            host.cpu_realtime_period.unwrap_or(0) != 0,
        ),
        (
            "CpuRealtimeRuntime (--cpu-rt-runtime)",
            host.cpu_realtime_runtime.unwrap_or(0) != 0,
        ),
        (
            "DeviceCgroupRules (--device-cgroup-rule)",
            set(host.device_cgroup_rules.as_ref().map(Vec::len)),
        ),
        (
            "DeviceRequests (--gpus)",
            set(host.device_requests.as_ref().map(Vec::len)),
        ),
        (
            "VolumeDriver (--volume-driver)",
            text(&host.volume_driver) && host.volume_driver.as_deref() != Some("local"),
        ),
        (
            "StorageOpt (--storage-opt)",
            set(host.storage_opt.as_ref().map(|o| o.len())),
        ),
        (
            "Runtime (--runtime)",
            host.runtime
                .as_deref()
                .is_some_and(|r| !r.is_empty() && r != spec::RUNTIME),
        ),
    ];
    match unsupported.iter().find(|(_, asked)| *asked) {
        Some((name, _)) => Err(Error::InvalidParameter(format!(
            "berth does not support HostConfig.{name} yet"
        ))),
        None => Ok(()),
    }
}

/// The container's config with the image's defaults filled in, as dockerd's `merge`.
fn merge_config(
    mut c: ContainerConfig,
    image: &berth_image::config::ContainerConfig,
    id: &str,
) -> ContainerConfig {
    if c.user.as_deref().unwrap_or("").is_empty() {
        c.user = Some(image.user.clone());
    }
    let mut env = c.env.take().unwrap_or_default();
    for image_env in &image.env {
        let key = image_env.split('=').next().unwrap_or("");
        if !env.iter().any(|e| e.split('=').next() == Some(key)) {
            env.push(image_env.clone());
        }
    }
    c.env = Some(env);
    let mut labels: HashMap<String, String> = image.labels.clone().into_iter().collect();
    labels.extend(c.labels.take().unwrap_or_default());
    c.labels = Some(labels);
    let mut ports = c.exposed_ports.take().unwrap_or_default();
    for p in &image.exposed_ports {
        ports.entry(p.clone()).or_default();
    }
    c.exposed_ports = Some(ports);
    let mut volumes = c.volumes.take().unwrap_or_default();
    for v in &image.volumes {
        volumes.entry(v.clone()).or_default();
    }
    c.volumes = Some(volumes);
    // `--entrypoint ""` arrives as [""]: no entrypoint, and the image's Cmd applies.
    let reset_entrypoint = c.entrypoint.as_deref() == Some(&[String::new()][..]);
    if reset_entrypoint {
        c.entrypoint = Some(Vec::new());
    }
    let user_entrypoint = c.entrypoint.as_ref().is_some_and(|e| !e.is_empty());
    if !user_entrypoint && c.cmd.as_ref().is_none_or(|cmd| cmd.is_empty()) {
        c.cmd = image.cmd.clone();
    }
    if c.entrypoint.is_none() {
        c.entrypoint = image.entrypoint.clone();
    }
    if c.working_dir.as_deref().unwrap_or("").is_empty() {
        c.working_dir = Some(image.working_dir.clone());
    }
    if c.stop_signal.as_deref().unwrap_or("").is_empty() && !image.stop_signal.is_empty() {
        c.stop_signal = Some(image.stop_signal.clone());
    }
    if c.hostname.as_deref().unwrap_or("").is_empty() {
        c.hostname = Some(id[..12].to_string());
    }
    c
}

/// Whether `path` is a mount point: its device differs from its parent's (an overlay has
/// a device of its own). A stat pair, not a read of mountinfo on every start.
fn is_mountpoint(path: &Path) -> Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let dev = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| m.dev())
            .with_context(|| format!("cannot stat {}", p.display()))
    };
    let parent = path.parent().unwrap_or(Path::new("/"));
    Ok(dev(path)? != dev(parent)?)
}
