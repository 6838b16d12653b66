//! `docker exec`: processes run in a running container by a monitor in exec mode. Exec
//! instances live in memory (as in Docker, they do not survive the daemon).
//!
//! The process starts from the container's own process spec (its bundle's config.json:
//! capabilities, rlimits, no_new_privileges), as Docker's does, with the exec's command,
//! environment, user, working directory and terminal.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::Context;
use berth_monitor::client;
use berth_monitor::protocol::{ExecProcess, MonitorConfig};
use bollard_stubs::models::{ExecConfig, ExecInspectResponse, ProcessConfig};
use oci_spec::runtime::Process;

use crate::container::lifecycle::Attached;
use crate::container::{spec, user, Status};
use crate::error::{Error, Result};
use crate::Engine;

/// Every exec instance, by id.
#[derive(Default)]
pub struct ExecStore {
    execs: Mutex<HashMap<String, Arc<Exec>>>,
}

/// One exec instance.
struct Exec {
    id: String,
    container_id: String,
    config: ExecConfig,
    state: Mutex<ExecState>,
}

#[derive(Default)]
struct ExecState {
    started: bool,
    running: bool,
    exit_code: Option<i64>,
    pid: i64,
    tty: bool,
    /// The monitor's socket while it runs (resize).
    socket: Option<PathBuf>,
    /// The monitor's exit file while it runs: written before the attached streams end, so
    /// a client that inspects right after its stream ended gets the exit code (Docker's CLI
    /// does), even before the watcher has recorded it.
    exit_file: Option<PathBuf>,
}

impl Exec {
    fn state(&self) -> MutexGuard<'_, ExecState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The command as the events show it: `exec_start: ls -l`.
    fn command(&self) -> String {
        self.config.cmd.clone().unwrap_or_default().join(" ")
    }
}

impl ExecStore {
    fn map(&self) -> MutexGuard<'_, HashMap<String, Arc<Exec>>> {
        self.execs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Forget the exec instances of a container that stopped or was removed (Docker drops
    /// them then too). Running ones finish on their own: their watcher holds them.
    pub fn remove_container(&self, container_id: &str) {
        self.map().retain(|_, e| e.container_id != container_id);
    }

    /// The ids of a container's exec instances (inspect's `ExecIDs`), sorted.
    pub fn ids_for(&self, container_id: &str) -> Vec<String> {
        let mut ids: Vec<String> = self
            .map()
            .values()
            .filter(|e| e.container_id == container_id)
            .map(|e| e.id.clone())
            .collect();
        ids.sort();
        ids
    }

    fn get(&self, id: &str) -> Result<Arc<Exec>> {
        self.map()
            .get(id)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("No such exec instance: {id}")))
    }
}

impl Engine {
    /// `POST /containers/{id}/exec`: the new exec instance's id.
    pub fn create_exec(&self, container: &str, cfg: ExecConfig) -> Result<String> {
        let handle = self.containers.get(container)?;
        let record = handle.get();
        check_running(&handle.id, record.state.status)?;
        if cfg.cmd.as_ref().is_none_or(|c| c.is_empty()) {
            return Err(Error::InvalidParameter("No exec command specified".into()));
        }
        let id = crate::random_id()?;
        let exec = Arc::new(Exec {
            id: id.clone(),
            container_id: handle.id.clone(),
            config: cfg,
            state: Mutex::default(),
        });
        self.execs.map().insert(id.clone(), exec.clone());
        self.events.emit(
            "container",
            &format!("exec_create: {}", exec.command()),
            &handle.id,
            &[
                ("name", &record.name),
                ("image", &record.image),
                ("execID", &id),
            ],
        );
        Ok(id)
    }

    /// `POST /exec/{id}/start`: runs the process; without `detach` the returned stream is
    /// attached (before the process starts, so no output is lost).
    pub fn start_exec(
        self: &Arc<Self>,
        exec_id: &str,
        detach: bool,
        tty_override: Option<bool>,
    ) -> Result<Option<Attached>> {
        let exec = self.execs.get(exec_id)?;
        let tty = tty_override.or(exec.config.tty).unwrap_or(false);
        {
            let mut state = exec.state();
            if state.running {
                return Err(Error::Conflict(format!(
                    "Exec command {exec_id} is already running"
                )));
            }
            if state.started {
                return Err(Error::Conflict(format!(
                    "Exec command {exec_id} has already run"
                )));
            }
            state.started = true;
            state.tty = tty;
        }
        let started = self.run_exec(&exec, detach, tty);
        if let Err(e) = &started {
            let mut state = exec.state();
            state.exit_code = Some(start_failure_code(&e.message()));
        }
        started
    }

    fn run_exec(
        self: &Arc<Self>,
        exec: &Arc<Exec>,
        detach: bool,
        tty: bool,
    ) -> Result<Option<Attached>> {
        let handle = self.containers.get(&exec.container_id)?;
        let record = handle.get();
        check_running(&handle.id, record.state.status)?;
        let process = self.exec_process(&handle, &exec.config, tty)?;
        let dir = self.config.run_dir(&handle.id).join("exec").join(&exec.id);
        let attach_stdin = exec.config.attach_stdin.unwrap_or(false) && !detach;
        let monitor_config = MonitorConfig {
            runtime_root: self.config.runtime_root(),
            id: handle.id.clone(),
            bundle: dir.clone(),
            log_path: None,
            tty,
            open_stdin: attach_stdin,
            stdin_once: true,
            exit_file: dir.join("exit.json"),
            socket: dir.join("monitor.sock"),
            exec: Some(ExecProcess { process }),
        };
        let spawned = self
            .monitors
            .spawn(&dir, &monitor_config)
            .map_err(|e| not_running_or(&handle.id, e))?;
        let socket = monitor_config.socket.clone();
        let started = (|| -> anyhow::Result<(Option<Attached>, i32)> {
            let attached = if detach {
                None
            } else {
                let stream = client::attach(
                    &socket,
                    attach_stdin,
                    exec.config.attach_stdout.unwrap_or(false),
                    exec.config.attach_stderr.unwrap_or(false),
                )?;
                Some(Attached { stream, tty })
            };
            // Docker's wording for a process the runtime could not start.
            let pid = client::start(&socket).map_err(|e| {
                anyhow::anyhow!(
                    "OCI runtime exec failed: exec failed: unable to start container process: {e:#}: unknown"
                )
            })?;
            Ok((attached, pid))
        })();
        let (attached, pid) = match started {
            Ok(ok) => ok,
            Err(e) => {
                reap_monitor(spawned.monitor_pid, true);
                let _ = std::fs::remove_dir_all(&dir);
                return Err(not_running_or(&handle.id, e));
            }
        };
        if let (true, Some([h, w])) = (tty, exec.config.console_size.as_deref()) {
            // A size the terminal cannot take is no reason to fail the exec.
            let _ = client::resize(
                &socket,
                (*h).clamp(0, u16::MAX as i32) as u16,
                (*w).clamp(0, u16::MAX as i32) as u16,
            );
        }
        {
            let mut state = exec.state();
            state.running = true;
            state.pid = pid as i64;
            state.socket = Some(socket);
            state.exit_file = Some(monitor_config.exit_file.clone());
        }
        self.events.emit(
            "container",
            &format!("exec_start: {}", exec.command()),
            &handle.id,
            &[
                ("name", &record.name),
                ("image", &record.image),
                ("execID", &exec.id),
            ],
        );
        self.watch_exec(
            exec.clone(),
            spawned.monitor_pid,
            monitor_config.exit_file,
            dir,
        );
        Ok(attached)
    }

    /// The exec's process: the container's process spec with the exec's command, env,
    /// user, working directory and terminal.
    fn exec_process(
        &self,
        handle: &crate::container::Handle,
        cfg: &ExecConfig,
        tty: bool,
    ) -> Result<Process> {
        let mut record = handle.get();
        let run_dir = self.config.run_dir(&handle.id);
        let bundle =
            berth_runtime::spec::load(&run_dir).context("cannot read the container's OCI spec")?;
        let mut process = bundle
            .process()
            .clone()
            .context("the container's OCI spec has no process")?;
        let user_name = cfg
            .user
            .clone()
            .filter(|u| !u.is_empty())
            .or(record.config.user.clone())
            .unwrap_or_default();
        let group_add = record.host_config.group_add.clone().unwrap_or_default();
        let resolved = user::resolve(&handle.paths.rootfs(), &user_name, &group_add)?;
        let mut oci_user = process.user().clone();
        oci_user.set_uid(resolved.uid);
        oci_user.set_gid(resolved.gid);
        oci_user.set_additional_gids(Some(resolved.additional_gids.clone()));
        process.set_user(oci_user);
        record.config.tty = Some(tty);
        let env = spec::merge_env(
            spec::environment(&record, &resolved),
            cfg.env.as_deref().unwrap_or_default(),
        );
        process.set_env(Some(env));
        process.set_args(cfg.cmd.clone());
        if let Some(dir) = cfg.working_dir.as_deref().filter(|d| !d.is_empty()) {
            process.set_cwd(dir.into());
        }
        process.set_terminal(Some(tty));
        // The init's score was written by the runtime; an exec keeps the monitor's.
        process.set_oom_score_adj(None);
        if cfg.privileged.unwrap_or(false) {
            process.set_capabilities(Some(all_capabilities()?));
        }
        Ok(process)
    }

    /// `POST /exec/{id}/resize`.
    pub fn resize_exec(&self, exec_id: &str, h: u16, w: u16) -> Result<()> {
        let exec = self.execs.get(exec_id)?;
        let socket = {
            let state = exec.state();
            match (&state.socket, state.running) {
                (Some(socket), true) => socket.clone(),
                _ => return Err(Error::Conflict(format!("Exec {exec_id} is not running"))),
            }
        };
        client::resize(&socket, h, w)?;
        Ok(())
    }

    /// `GET /exec/{id}/json`.
    pub fn inspect_exec(&self, exec_id: &str) -> Result<ExecInspectResponse> {
        let exec = self.execs.get(exec_id)?;
        let state = exec.state();
        let (running, exit_code) = match (state.running, &state.exit_file) {
            (true, Some(file)) => match client::read_exit(file).ok().flatten() {
                Some(exit) => (false, Some(i64::from(exit.exit_code))),
                None => (true, None),
            },
            _ => (state.running, state.exit_code),
        };
        let cfg = &exec.config;
        let cmd = cfg.cmd.clone().unwrap_or_default();
        Ok(ExecInspectResponse {
            can_remove: Some(false),
            detach_keys: Some(cfg.detach_keys.clone().unwrap_or_default()),
            id: Some(exec.id.clone()),
            running: Some(running),
            exit_code,
            process_config: Some(ProcessConfig {
                privileged: Some(cfg.privileged.unwrap_or(false)),
                user: Some(cfg.user.clone().unwrap_or_default()),
                tty: Some(if state.started {
                    state.tty
                } else {
                    cfg.tty.unwrap_or(false)
                }),
                entrypoint: cmd.first().cloned(),
                arguments: Some(cmd.iter().skip(1).cloned().collect()),
            }),
            open_stdin: Some(cfg.attach_stdin.unwrap_or(false)),
            open_stderr: Some(cfg.attach_stderr.unwrap_or(false)),
            open_stdout: Some(cfg.attach_stdout.unwrap_or(false)),
            container_id: Some(exec.container_id.clone()),
            pid: Some(state.pid),
        })
    }

    /// Wait (on a thread of its own: it blocks) for the exec's monitor to exit, then record
    /// the exit code and tell the events.
    fn watch_exec(
        self: &Arc<Self>,
        exec: Arc<Exec>,
        monitor_pid: i32,
        exit_file: PathBuf,
        dir: PathBuf,
    ) {
        let engine = self.clone();
        let exec_id = exec.id.clone();
        let watch = move || {
            reap_monitor(monitor_pid, false);
            let exit = client::read_exit(&exit_file).ok().flatten();
            // No exit file: the monitor died before the process was reaped.
            let code = exit.map_or(126, |e| i64::from(e.exit_code));
            {
                let mut state = exec.state();
                state.running = false;
                state.exit_code = Some(code);
                state.socket = None;
                state.exit_file = None;
            }
            let _ = std::fs::remove_dir_all(&dir);
            let (name, image) = engine
                .containers
                .get(&exec.container_id)
                .map(|h| {
                    let c = h.get();
                    (c.name, c.image)
                })
                .unwrap_or_default();
            engine.events.emit(
                "container",
                "exec_die",
                &exec.container_id,
                &[
                    ("name", &name),
                    ("image", &image),
                    ("execID", &exec.id),
                    ("exitCode", &code.to_string()),
                ],
            );
        };
        if let Err(e) = std::thread::Builder::new()
            .name("exec-watch".into())
            .spawn(watch)
        {
            eprintln!("berthd: cannot watch exec {exec_id}: {e}");
        }
    }
}

/// Docker's 409s for a container an exec cannot run in.
fn check_running(id: &str, status: Status) -> Result<()> {
    match status {
        Status::Running => Ok(()),
        Status::Paused => Err(Error::Conflict(format!(
            "Container {id} is paused, unpause the container before exec"
        ))),
        Status::Restarting => Err(Error::Conflict(format!(
            "Container {id} is restarting, wait until the container is running"
        ))),
        _ => Err(Error::Conflict(format!("Container {id} is not running"))),
    }
}

/// A monitor error that says the container is gone is Docker's 409; others are 500s.
fn not_running_or(id: &str, e: anyhow::Error) -> Error {
    let msg = format!("{e:#}");
    if msg.contains("is not running") || msg.contains("does not exist") {
        Error::Conflict(format!("Container {id} is not running"))
    } else {
        Error::Internal(e)
    }
}

/// The exit code Docker gives an exec that could not start: 127 for a missing program,
/// 126 otherwise.
fn start_failure_code(msg: &str) -> i64 {
    if msg.contains("executable file not found") || msg.contains("No such file") {
        127
    } else {
        126
    }
}

/// Wait for monitor `pid` (our child) to exit and reap it; with `kill` make it exit first.
fn reap_monitor(pid: i32, kill: bool) {
    let pid = nix::unistd::Pid::from_raw(pid);
    if kill {
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    }
    while let Err(nix::Error::EINTR) = nix::sys::wait::waitpid(pid, None) {}
}

/// Every capability this host can grant (`exec --privileged`).
fn all_capabilities() -> Result<oci_spec::runtime::LinuxCapabilities> {
    let set: oci_spec::runtime::Capabilities = crate::container::spec::host_capabilities()?
        .into_iter()
        .collect();
    let mut caps = oci_spec::runtime::LinuxCapabilities::default();
    caps.set_bounding(Some(set.clone()));
    caps.set_effective(Some(set.clone()));
    caps.set_permitted(Some(set));
    caps.set_inheritable(None);
    caps.set_ambient(None);
    Ok(caps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_failures_map_to_docker_exit_codes() {
        assert_eq!(
            start_failure_code("exec: \"nope\": executable file not found in $PATH"),
            127
        );
        assert_eq!(start_failure_code("exec: \"/etc\": permission denied"), 126);
    }

    #[test]
    fn ids_are_64_hex_digits() {
        let id = crate::random_id().unwrap();
        assert_eq!(id.len(), 64);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(id, crate::random_id().unwrap());
    }

    /// End to end with the real monitor (`target/<profile>/berth-monitor`, built by
    /// `cargo build -p berth-monitor`) on a busybox container started as the engine starts
    /// one: a bundle in the run dir and a monitor in container mode.
    #[test]
    fn exec_runs_in_the_container_and_records_its_exit() {
        let world = World::new("exec_e2e");
        let engine = &world.engine;
        let (_history, mut events) = engine.events.subscribe();
        let cfg = ExecConfig {
            cmd: Some(vec![
                "sh".into(),
                "-c".into(),
                "echo $FOO $BAR; id -u; id -G; pwd; echo oops >&2; exit 7".into(),
            ]),
            env: Some(vec!["BAR=baz".into()]),
            user: Some("nobody".into()),
            working_dir: Some("/tmp".into()),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            ..Default::default()
        };
        let exec_id = engine.create_exec("exectest", cfg).unwrap();
        assert_eq!(exec_id.len(), 64);
        assert_eq!(
            engine.execs.ids_for(&world.id),
            std::slice::from_ref(&exec_id)
        );
        let before = engine.inspect_exec(&exec_id).unwrap();
        assert_eq!((before.running, before.exit_code), (Some(false), None));

        let attached = engine.start_exec(&exec_id, false, None).unwrap().unwrap();
        assert!(!attached.tty);
        let mut out = vec![];
        let mut stream = attached.stream;
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(20)))
            .unwrap();
        std::io::Read::read_to_end(&mut stream, &mut out).unwrap();
        let (stdout, stderr) = demux(&out);
        assert_eq!(stdout, "bar baz\n65534\n65534\n/tmp\n");
        assert_eq!(stderr, "oops\n");

        // Right when the stream ends (Docker's CLI inspects once, then).
        let inspect = engine.inspect_exec(&exec_id).unwrap();
        assert_eq!(inspect.running, Some(false));
        assert_eq!(inspect.exit_code, Some(7));
        assert_eq!(inspect.container_id.as_deref(), Some(world.id.as_str()));
        assert!(inspect.pid.unwrap_or(0) > 0);
        let pc = inspect.process_config.unwrap();
        assert_eq!(pc.entrypoint.as_deref(), Some("sh"));
        assert_eq!(pc.user.as_deref(), Some("nobody"));

        let mut actions = vec![];
        for _ in 0..500 {
            while let Ok(e) = events.try_recv() {
                if e.actor.attributes.get("execID") == Some(&exec_id) {
                    actions.push((
                        e.action.clone(),
                        e.actor.attributes.get("exitCode").cloned(),
                    ));
                }
            }
            if actions.len() >= 3 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let cmd = "sh -c echo $FOO $BAR; id -u; id -G; pwd; echo oops >&2; exit 7";
        assert_eq!(
            actions,
            [
                (format!("exec_create: {cmd}"), None),
                (format!("exec_start: {cmd}"), None),
                ("exec_die".to_string(), Some("7".to_string())),
            ]
        );

        // Started once only; unknown ids are 404s; a missing program is reported at start.
        let again = engine.start_exec(&exec_id, true, None).err().unwrap();
        assert_eq!(
            (again.status(), again.message()),
            (409, format!("Exec command {exec_id} has already run"))
        );
        let missing = engine.inspect_exec("nope").unwrap_err();
        assert_eq!(
            (missing.status(), missing.message()),
            (404, "No such exec instance: nope".to_string())
        );
        let no_cmd = engine
            .create_exec("exectest", ExecConfig::default())
            .unwrap_err();
        assert_eq!(no_cmd.status(), 400);
        let bad = engine
            .create_exec(
                "exectest",
                ExecConfig {
                    cmd: Some(vec!["no-such-program".into()]),
                    ..Default::default()
                },
            )
            .unwrap();
        let err = engine.start_exec(&bad, true, None).err().unwrap();
        assert!(
            err.message().contains("executable file not found"),
            "{}",
            err.message()
        );
        assert_eq!(engine.inspect_exec(&bad).unwrap().exit_code, Some(127));

        // Detached: runs without an attach; the tty flag and Privileged reach the process.
        let detached = engine
            .create_exec(
                "exectest",
                ExecConfig {
                    cmd: Some(vec![
                        "sh".into(),
                        "-c".into(),
                        "[ -t 0 ] || exit 3; grep -q 'CapEff:.*ff' /proc/self/status || exit 4"
                            .into(),
                    ]),
                    tty: Some(true),
                    privileged: Some(true),
                    ..Default::default()
                },
            )
            .unwrap();
        assert!(engine.start_exec(&detached, true, None).unwrap().is_none());
        assert_eq!(world.wait_exec_done(&detached).exit_code, Some(0));

        // A container that is not running takes no exec (Docker's 409).
        world.stop();
        let err = engine
            .create_exec(
                "exectest",
                ExecConfig {
                    cmd: Some(vec!["true".into()]),
                    ..Default::default()
                },
            )
            .unwrap_err();
        assert_eq!(
            (err.status(), err.message()),
            (409, format!("Container {} is not running", world.id))
        );
        engine.execs.remove_container(&world.id);
        assert!(engine.execs.ids_for(&world.id).is_empty());
    }

    /// (stdout, stderr) of Docker's multiplexed frames.
    fn demux(mut data: &[u8]) -> (String, String) {
        let (mut out, mut err) = (String::new(), String::new());
        while data.len() >= 8 {
            let len = u32::from_be_bytes([data[4], data[5], data[6], data[7]]) as usize;
            let text = String::from_utf8_lossy(&data[8..8 + len]);
            if data[0] == 1 {
                out.push_str(&text)
            } else {
                err.push_str(&text)
            }
            data = &data[8 + len..];
        }
        (out, err)
    }

    /// An engine with one running busybox container ("exectest", `sleep 1000`, Env FOO=bar)
    /// whose monitor this test started; all of it removed on drop.
    struct World {
        engine: Arc<Engine>,
        id: String,
        monitor_pid: i32,
        cgroup_parent: String,
        _tmp: tempfile::TempDir,
        _rt: tokio::runtime::Runtime,
    }

    impl World {
        fn new(test: &str) -> World {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let _enter = rt.enter();
            let target = std::env::current_exe()
                .unwrap()
                .parent()
                .unwrap()
                .parent()
                .unwrap()
                .to_path_buf();
            let monitor = target.join("berth-monitor");
            assert!(
                monitor.exists(),
                "{} is missing: cargo build -p berth-monitor first",
                monitor.display()
            );
            let rootfs = busybox_rootfs(&target);
            let tmp = tempfile::tempdir().unwrap();
            let cgroup_parent = format!("/berth-test-{test}-{}", std::process::id());
            let engine = Engine::open(crate::Config {
                root: tmp.path().join("root"),
                exec_root: tmp.path().join("run"),
                monitor,
                init: PathBuf::from("/nonexistent/berth-init"),
                cgroup_parent: cgroup_parent.clone(),
            })
            .unwrap();
            let id = "e".repeat(64);
            let record: crate::container::Container = serde_json::from_value(serde_json::json!({
                "id": id, "name": "exectest", "created": "2026-01-01T00:00:00Z",
                "image": "busybox", "image_id": "sha256:00",
                "config": {"Env": ["FOO=bar", "PATH=/bin:/usr/bin"], "Hostname": "exectest"},
                "host_config": {}, "state": {"status": "running", "pid": 0, "monitor_pid": 0,
                "exit_code": 0, "started_at": null, "finished_at": null, "oom_killed": false,
                "error": ""}, "restart_count": 0, "mounts": [],
            }))
            .unwrap();
            let handle = engine.containers.insert(record).unwrap();
            // The user resolver reads the container's /etc/passwd in its rootfs.
            std::fs::create_dir_all(handle.paths.snapshot()).unwrap();
            std::os::unix::fs::symlink(&rootfs, handle.paths.rootfs()).unwrap();
            let monitor_pid = start_container(&engine, &id, &rootfs);
            World {
                engine,
                id,
                monitor_pid,
                cgroup_parent,
                _tmp: tmp,
                _rt: rt,
            }
        }

        fn wait_exec_done(&self, exec_id: &str) -> ExecInspectResponse {
            for _ in 0..1000 {
                let inspect = self.engine.inspect_exec(exec_id).unwrap();
                if inspect.running == Some(false) && inspect.exit_code.is_some() {
                    return inspect;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            panic!("exec {exec_id} did not finish");
        }

        fn stop(&self) {
            let root = self.engine.config.runtime_root();
            let _ = berth_runtime::container::kill(&root, &self.id, libc::SIGKILL, false);
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(self.monitor_pid), None);
            let handle = self.engine.containers.get(&self.id).unwrap();
            handle.update(|c| c.state.status = Status::Exited).unwrap();
        }
    }

    impl Drop for World {
        fn drop(&mut self) {
            let _ = berth_runtime::container::delete(
                &self.engine.config.runtime_root(),
                &self.id,
                true,
            );
            let pid = nix::unistd::Pid::from_raw(self.monitor_pid);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(pid, None);
            for h in std::fs::read_dir("/sys/fs/cgroup")
                .into_iter()
                .flatten()
                .flatten()
            {
                let _ =
                    std::fs::remove_dir(h.path().join(self.cgroup_parent.trim_start_matches('/')));
            }
        }
    }

    /// What the engine's start does, minimally: a bundle in the run dir, a container-mode
    /// monitor, start. Returns the monitor's pid.
    fn start_container(engine: &Engine, id: &str, rootfs: &std::path::Path) -> i32 {
        let run_dir = engine.config.run_dir(id);
        std::fs::create_dir_all(&run_dir).unwrap();
        let mut spec = serde_json::to_value(berth_runtime::spec::default_spec().unwrap()).unwrap();
        spec["root"] = serde_json::json!({"path": rootfs, "readonly": true});
        spec["process"]["terminal"] = serde_json::json!(false);
        spec["process"]["args"] = serde_json::json!(["sleep", "1000"]);
        spec["linux"]["cgroupsPath"] = serde_json::json!(engine.cgroup_path(id));
        if let Some(mounts) = spec["mounts"].as_array_mut() {
            mounts.retain(|m| m["type"] != "cgroup");
        }
        std::fs::write(
            run_dir.join("config.json"),
            serde_json::to_vec(&spec).unwrap(),
        )
        .unwrap();
        let cfg = MonitorConfig {
            runtime_root: engine.config.runtime_root(),
            id: id.to_string(),
            bundle: run_dir.clone(),
            log_path: None,
            tty: false,
            open_stdin: false,
            stdin_once: false,
            exit_file: run_dir.join("exit.json"),
            socket: run_dir.join("monitor.sock"),
            exec: None,
        };
        let spawned = engine.monitors.spawn(&run_dir, &cfg).unwrap();
        client::start(&cfg.socket).unwrap();
        spawned.monitor_pid
    }

    /// `target/test-fixtures/busybox-rootfs`, made by the shared script (idempotent).
    fn busybox_rootfs(target_profile: &std::path::Path) -> PathBuf {
        let dest = target_profile
            .parent()
            .unwrap()
            .join("test-fixtures/busybox-rootfs");
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../scripts/make-busybox-rootfs.sh");
        let out = std::process::Command::new("bash")
            .arg(script)
            .arg(&dest)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        dest
    }
}
