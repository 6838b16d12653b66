//! run, create, start and exec: the flows docker's CLI runs, attach streams and exit codes.

use crate::cli::{AttachArgs, ContainerOpts, CreateArgs, ExecArgs, RunArgs, StartArgs};
use crate::http::{api_status, encode, Body, Client, Query};
use crate::{detach, image, parse, stream, term, Exit};
use anyhow::{anyhow, bail, Context, Result};
use bollard_stubs::models::{
    ContainerConfig, ContainerCreateResponse, HealthConfig, HostConfig, HostConfigLogConfig,
    ResourcesUlimits,
};
use std::collections::HashMap;
use std::io::{self, BufReader, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;

/// The body of `POST /containers/create`: the container config with the host config beside it.
#[derive(serde::Serialize, Debug)]
pub struct CreateBody {
    #[serde(flatten)]
    pub config: ContainerConfig,
    #[serde(rename = "HostConfig")]
    pub host_config: HostConfig,
}

fn env_lookup(k: &str) -> Option<String> {
    std::env::var(k).ok()
}

fn some_vec<T>(v: Vec<T>) -> Option<Vec<T>> {
    (!v.is_empty()).then_some(v)
}

fn key_values(items: &[String], what: &str) -> Result<Option<HashMap<String, String>>> {
    let mut map = HashMap::new();
    for item in items {
        let (k, v) = item.split_once('=').ok_or_else(|| {
            anyhow!("invalid argument \"{item}\" for \"--{what}\" flag: expected key=value")
        })?;
        map.insert(k.to_string(), v.to_string());
    }
    Ok((!map.is_empty()).then_some(map))
}

/// Builds the create request from docker's flags. `detach` clears the default stdout/stderr attachment.
pub fn build_create(o: &ContainerOpts, auto_remove: bool, detach: bool) -> Result<CreateBody> {
    let mut env = Vec::new();
    for f in &o.env_file {
        env.extend(parse::env_file(std::path::Path::new(f), env_lookup)?);
    }
    env.extend(o.env.iter().filter_map(|e| parse::env_entry(e, env_lookup)));

    let cwd = std::env::current_dir().context("reading the current directory")?;
    let system_paths_unconfined = o
        .security_opt
        .iter()
        .any(|s| s == parse::SYSTEM_PATHS_UNCONFINED);
    let (mut binds, mut anon) = (Vec::new(), HashMap::new());
    for v in &o.volume {
        match parse::volume(v, &cwd)? {
            parse::VolumeSpec::Bind(b) => binds.push(b),
            parse::VolumeSpec::Anonymous(p) => {
                anon.insert(p, HashMap::new());
            }
        }
    }
    let mounts = o
        .mount
        .iter()
        .map(|m| parse::mount(m))
        .collect::<Result<Vec<_>>>()?;
    let ulimits = o
        .ulimit
        .iter()
        .map(|u| parse::ulimit(u))
        .collect::<Result<Vec<ResourcesUlimits>>>()?;
    let (mut exposed, port_bindings) = parse::publish(&o.publish)?;
    for e in &o.expose {
        exposed.push(if e.contains('/') {
            e.clone()
        } else {
            format!("{e}/tcp")
        });
    }
    let tmpfs: HashMap<String, String> = o
        .tmpfs
        .iter()
        .map(|t| match t.split_once(':') {
            Some((p, opts)) => (p.to_string(), opts.to_string()),
            None => (t.clone(), String::new()),
        })
        .collect();

    let (attach_stdin, attach_stdout, attach_stderr) = if !o.attach.is_empty() {
        let has = |s: &str| o.attach.iter().any(|a| a.eq_ignore_ascii_case(s));
        for a in &o.attach {
            if !["stdin", "stdout", "stderr"].contains(&a.to_ascii_lowercase().as_str()) {
                bail!("invalid argument \"{a}\" for \"-a, --attach\" flag: valid streams are STDIN, STDOUT and STDERR");
            }
        }
        (has("stdin"), has("stdout"), has("stderr"))
    } else if detach {
        (false, false, false)
    } else {
        (o.interactive, true, true)
    };
    let console_size = (o.tty && term::is_tty(1))
        .then(|| term::window_size(1))
        .flatten()
        .map(|(h, w)| vec![i32::from(h), i32::from(w)]);

    let healthcheck = healthcheck(o)?;
    let config = ContainerConfig {
        hostname: o.hostname.clone(),
        domainname: o.domainname.clone(),
        user: o.user.clone(),
        attach_stdin: Some(attach_stdin),
        attach_stdout: Some(attach_stdout),
        attach_stderr: Some(attach_stderr),
        exposed_ports: some_vec(exposed)
            .map(|e| e.into_iter().map(|p| (p, HashMap::new())).collect()),
        tty: Some(o.tty),
        open_stdin: Some(o.interactive),
        stdin_once: Some(o.interactive && attach_stdin),
        env: some_vec(env),
        cmd: some_vec(o.command.clone()),
        image: Some(o.image.clone()),
        volumes: (!anon.is_empty()).then_some(anon),
        working_dir: o.workdir.clone(),
        entrypoint: o.entrypoint.clone().map(|e| vec![e]),
        labels: Some(parse::labels(&o.label)),
        stop_signal: o.stop_signal.clone(),
        stop_timeout: o.stop_timeout,
        healthcheck,
        ..Default::default()
    };
    let host_config = HostConfig {
        binds: some_vec(binds),
        mounts: some_vec(mounts),
        memory: o.memory.as_deref().map(parse::ram_in_bytes).transpose()?,
        memory_swap: o
            .memory_swap
            .as_deref()
            .map(parse::memory_swap)
            .transpose()?,
        memory_reservation: o
            .memory_reservation
            .as_deref()
            .map(parse::ram_in_bytes)
            .transpose()?,
        nano_cpus: o.cpus.as_deref().map(parse::nano_cpus).transpose()?,
        cpu_shares: o.cpu_shares,
        cpu_quota: o.cpu_quota,
        cpu_period: o.cpu_period,
        cpuset_cpus: o.cpuset_cpus.clone(),
        cpuset_mems: o.cpuset_mems.clone(),
        pids_limit: o.pids_limit,
        ulimits: some_vec(ulimits),
        restart_policy: Some(parse::restart_policy(&o.restart)?),
        auto_remove: Some(auto_remove),
        init: o.init.then_some(true),
        readonly_rootfs: Some(o.read_only),
        network_mode: Some(o.network.clone().unwrap_or_else(|| "default".into())),
        privileged: Some(o.privileged),
        cap_add: some_vec(o.cap_add.clone()),
        cap_drop: some_vec(o.cap_drop.clone()),
        security_opt: some_vec(parse::security_opts(&o.security_opt)?),
        // As the docker CLI: `systempaths=unconfined` is sent as empty path lists.
        masked_paths: system_paths_unconfined.then(Vec::new),
        readonly_paths: system_paths_unconfined.then(Vec::new),
        port_bindings: (!port_bindings.is_empty()).then_some(port_bindings),
        publish_all_ports: Some(o.publish_all),
        dns: some_vec(o.dns.clone()),
        dns_options: some_vec(o.dns_option.clone()),
        dns_search: some_vec(o.dns_search.clone()),
        extra_hosts: some_vec(o.add_host.clone()),
        sysctls: key_values(&o.sysctl, "sysctl")?,
        shm_size: o.shm_size.as_deref().map(parse::ram_in_bytes).transpose()?,
        group_add: some_vec(o.group_add.clone()),
        pid_mode: o.pid.clone(),
        ipc_mode: o.ipc.clone(),
        uts_mode: o.uts.clone(),
        oom_kill_disable: o.oom_kill_disable.then_some(true),
        tmpfs: (!tmpfs.is_empty()).then_some(tmpfs),
        console_size,
        cgroup_parent: o.cgroup_parent.clone(),
        devices: some_vec(
            o.device
                .iter()
                .map(|d| parse::device(d))
                .collect::<Result<Vec<_>>>()?,
        ),
        log_config: o.log_driver.clone().map(|typ| HostConfigLogConfig {
            typ: Some(typ),
            config: key_values(&o.log_opt, "log-opt").ok().flatten(),
        }),
        oom_score_adj: o.oom_score_adj,
        ..Default::default()
    };
    if auto_remove && o.restart != "no" && !o.restart.is_empty() {
        bail!("conflicting options: cannot specify both --restart and --rm");
    }
    Ok(CreateBody {
        config,
        host_config,
    })
}

/// `--health-*` / `--no-healthcheck` into Config.Healthcheck (None keeps the image's).
fn healthcheck(o: &ContainerOpts) -> Result<Option<HealthConfig>> {
    let nanos = |flag: &str, v: &Option<String>| {
        v.as_deref()
            .map(|s| parse::duration_nanos(flag, s))
            .transpose()
    };
    if o.no_healthcheck {
        return Ok(Some(HealthConfig {
            test: Some(vec!["NONE".into()]),
            ..Default::default()
        }));
    }
    let h = HealthConfig {
        test: o
            .health_cmd
            .as_ref()
            .map(|c| vec!["CMD-SHELL".to_string(), c.clone()]),
        interval: nanos("health-interval", &o.health_interval)?,
        timeout: nanos("health-timeout", &o.health_timeout)?,
        start_period: nanos("health-start-period", &o.health_start_period)?,
        retries: o.health_retries,
        ..Default::default()
    };
    Ok((h != HealthConfig::default()).then_some(h))
}

/// `POST /containers/create`, pulling the image first when the daemon does not have it (docker's `--pull missing`).
pub fn create_container(client: &Client, o: &ContainerOpts, body: &CreateBody) -> Result<String> {
    let path = format!(
        "/containers/create{}",
        Query::new().opt("name", o.name.as_deref()).as_str()
    );
    if let Some(path) = o
        .cidfile
        .as_deref()
        .filter(|p| std::path::Path::new(p).exists())
    {
        bail!(
            "container ID file found, make sure the other container isn't running or delete {path}"
        );
    }
    let pull = |client: &Client| -> Result<()> {
        let mut err = io::stderr();
        let tty = term::is_tty(2);
        image::pull(
            client,
            &o.image,
            o.platform.as_deref(),
            o.quiet,
            &mut err,
            tty,
        )
    };
    match o.pull.as_str() {
        "always" => pull(client)?,
        "missing" | "never" => {}
        other => bail!(
            "invalid pull option: '{other}': must be one of \"always\", \"missing\" or \"never\""
        ),
    }
    let attempt =
        || -> Result<ContainerCreateResponse> { client.json("POST", &path, Body::json(body)?) };
    let created = match attempt() {
        Err(e)
            if o.pull == "missing"
                && api_status(&e) == Some(404)
                && e.to_string().contains("No such image") =>
        {
            eprintln!(
                "Unable to find image '{}' locally",
                image::with_latest(&o.image)
            );
            pull(client)?;
            attempt()?
        }
        other => other?,
    };
    for w in &created.warnings {
        eprintln!("WARNING: {w}");
    }
    if let Some(path) = &o.cidfile {
        std::fs::write(path, &created.id)
            .with_context(|| format!("writing the container id to {path}"))?;
    }
    Ok(created.id)
}

/// Wraps an error of `run`/`create` the way docker does: "berth: <error>", exit 125 (or 126/127 for a start error
/// that means the command cannot be run / was not found).
fn status_error(e: anyhow::Error, verb: &str, start: bool) -> anyhow::Error {
    if e.downcast_ref::<Exit>().is_some() {
        return e;
    }
    let msg = format!("{e:#}");
    let code = if !start {
        125
    } else if msg.contains("executable file not found") || msg.contains("no such file or directory")
    {
        127
    } else if msg.contains("permission denied")
        || msg.contains("is a directory")
        || msg.contains("cannot execute")
    {
        126
    } else {
        125
    };
    eprintln!("berth: {msg}\n\nRun 'berth {verb} --help' for more information");
    Exit(code).into()
}

pub fn create(client: &Client, a: CreateArgs) -> Result<i32> {
    // Flags it cannot take are errors as run's (exit status 125); the daemon's it reports
    // plainly (exit status 1), as docker's create does.
    let body = build_create(&a.opts, a.rm, false).map_err(|e| status_error(e, "create", false))?;
    let id = create_container(client, &a.opts, &body)?;
    println!("{id}");
    Ok(0)
}

/// The streams of an attached container or exec.
struct Streams<'a> {
    stdin: bool,
    tty: bool,
    /// `--detach-keys`.
    detach_keys: Option<&'a str>,
}

/// A hijacked attach connection: the reader (output), the writer (input).
type Hijacked = (BufReader<UnixStream>, UnixStream);

/// Pumps stdin to the connection (closing its write side at EOF) and its output to stdout/stderr until the daemon
/// closes it. Raw mode is on meanwhile when stdin is a terminal and the container has a tty. With a tty the detach keys
/// in stdin end it early, leaving the process running: true then.
fn pump(conn: Hijacked, s: &Streams) -> Result<bool> {
    let (mut reader, writer) = conn;
    let _raw = if s.tty && s.stdin && term::is_tty(0) {
        Some(term::RawMode::enter()?)
    } else {
        None
    };
    let detached = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    if s.stdin {
        let w = writer;
        let keys = s.tty.then(|| detach::keys(s.detach_keys));
        let flag = detached.clone();
        std::thread::spawn(move || {
            let (mut input, mut output) = (io::stdin().lock(), crate::http::SocketWriter(&w));
            let detach = match &keys {
                Some(keys) => detach::copy(&mut input, &mut output, keys).unwrap_or(false),
                None => io::copy(&mut input, &mut output)
                    .map(|_| false)
                    .unwrap_or(false),
            };
            flag.store(detach, std::sync::atomic::Ordering::SeqCst);
            // Detached: the output stops too (the read below ends).
            let _ = w.shutdown(if detach {
                Shutdown::Both
            } else {
                Shutdown::Write
            });
        });
    }
    let mut out = io::stdout();
    if s.tty {
        stream::copy_raw(&mut reader, &mut out)?;
    } else {
        stream::demux(&mut reader, &mut out, &mut io::stderr())?;
    }
    Ok(detached.load(std::sync::atomic::Ordering::SeqCst))
}

/// docker refuses a tty attached to a stdin that is not a terminal.
fn check_tty(attach_stdin: bool, tty: bool) -> Result<()> {
    if attach_stdin && tty && !term::is_tty(0) {
        bail!("the input device is not a TTY");
    }
    Ok(())
}

/// `wait`'s response body: the exit status (and an error message the daemon may add).
fn wait_status(resp: crate::http::Response) -> Result<i32> {
    let w: bollard_stubs::models::ContainerWaitResponse = resp.json()?;
    if let Some(msg) = w.error.and_then(|e| e.message).filter(|m| !m.is_empty()) {
        eprintln!("berth: {msg}");
    }
    Ok(w.status_code as i32)
}

fn resize(client: &Client, path: &str) {
    if let Some((h, w)) = term::window_size(1) {
        let _ = client.call("POST", &format!("{path}?h={h}&w={w}"), Body::Empty);
    }
}

/// Starts the signal thread: SIGWINCH → resize (tty), proxied signals → kill (no tty, `--sig-proxy`).
fn forward_signals(
    client: &Client,
    id: &str,
    tty: bool,
    proxy: bool,
    resize_path: String,
) -> Result<()> {
    if !tty && !proxy {
        return Ok(());
    }
    let (client, id) = (client.clone(), id.to_string());
    term::handle_signals(proxy && !tty, move |sig| {
        if sig == nix::sys::signal::Signal::SIGWINCH {
            if tty {
                resize(&client, &resize_path);
            }
        } else {
            let path = format!("/containers/{}/kill?signal={}", encode(&id), sig as i32);
            let _ = client.call("POST", &path, Body::Empty);
        }
    })
}

fn attach(client: &Client, id: &str, stdin: bool, stdout: bool, stderr: bool) -> Result<Hijacked> {
    let q = Query::new()
        .add("stream", "1")
        .flag("stdin", stdin)
        .flag("stdout", stdout)
        .flag("stderr", stderr);
    client.hijack(
        &format!("/containers/{}/attach{}", encode(id), q.as_str()),
        Body::Empty,
    )
}

/// Attach (before start), wait, start, resize, pump, exit status: docker's `run` after create, also `start -a`.
fn attach_and_start(
    client: &Client,
    id: &str,
    cfg: &ContainerConfig,
    auto_remove: bool,
    proxy: bool,
    verb: &str,
    detach_keys: Option<&str>,
) -> Result<i32> {
    let (stdin, stdout, stderr) = (
        cfg.attach_stdin.unwrap_or(false),
        cfg.attach_stdout.unwrap_or(false),
        cfg.attach_stderr.unwrap_or(false),
    );
    let tty = cfg.tty.unwrap_or(false);
    let attached = stdin || stdout || stderr;
    let eid = encode(id);
    if attached {
        forward_signals(client, id, tty, proxy, format!("/containers/{eid}/resize"))?;
    }
    let conn = if attached {
        Some(attach(client, id, stdin, stdout, stderr).map_err(|e| status_error(e, verb, false))?)
    } else {
        None
    };
    let condition = if auto_remove { "removed" } else { "next-exit" };
    let wait = client
        .call(
            "POST",
            &format!("/containers/{eid}/wait?condition={condition}"),
            Body::Empty,
        )
        .map_err(|e| status_error(e, verb, false))?;
    if let Err(e) = client.call("POST", &format!("/containers/{eid}/start"), Body::Empty) {
        if auto_remove {
            // Like docker, let the daemon remove the container first; but do not hang on a daemon that does not.
            let _ = wait.set_read_timeout(Some(std::time::Duration::from_secs(10)));
            let _ = wait.bytes();
        }
        return Err(status_error(e, verb, true));
    }
    let Some(conn) = conn else {
        println!("{id}");
        return Ok(0);
    };
    if tty && term::is_tty(1) {
        resize(client, &format!("/containers/{eid}/resize"));
    }
    let streams = Streams {
        stdin,
        tty,
        detach_keys,
    };
    if pump(conn, &streams)? {
        return Ok(0);
    }
    if !stdout && !stderr {
        println!("{id}");
        return Ok(0);
    }
    wait_status(wait)
}

pub fn run(client: &Client, a: RunArgs) -> Result<i32> {
    if a.detach && !a.opts.attach.is_empty() {
        return Err(status_error(
            anyhow!("conflicting options: cannot specify both --attach and --detach"),
            "run",
            false,
        ));
    }
    let body = build_create(&a.opts, a.rm, a.detach).map_err(|e| status_error(e, "run", false))?;
    check_tty(body.config.attach_stdin.unwrap_or(false), a.opts.tty)?;
    let id = create_container(client, &a.opts, &body).map_err(|e| status_error(e, "run", false))?;
    let keys = a.detach_keys.as_deref();
    attach_and_start(client, &id, &body.config, a.rm, a.sig_proxy, "run", keys)
}

pub fn start(client: &Client, a: StartArgs) -> Result<i32> {
    if !(a.attach || a.interactive) {
        return crate::for_each(&a.containers, |c| {
            client.call(
                "POST",
                &format!("/containers/{}/start", encode(c)),
                Body::Empty,
            )?;
            Ok(())
        });
    }
    if a.containers.len() > 1 {
        bail!("you cannot start and attach multiple containers at once");
    }
    let c: bollard_stubs::models::ContainerInspectResponse = client.json(
        "GET",
        &format!("/containers/{}/json", encode(&a.containers[0])),
        Body::Empty,
    )?;
    let mut cfg = c.config.unwrap_or_default();
    cfg.attach_stdin = Some(a.interactive && cfg.open_stdin.unwrap_or(false));
    cfg.attach_stdout = Some(true);
    cfg.attach_stderr = Some(true);
    let auto_remove = c.host_config.and_then(|h| h.auto_remove).unwrap_or(false);
    let id = c.id.unwrap_or_else(|| a.containers[0].clone());
    attach_and_start(client, &id, &cfg, auto_remove, true, "start", None)
}

/// `attach`: the streams of a running container until it exits; its exit status.
pub fn attach_cmd(client: &Client, a: AttachArgs) -> Result<i32> {
    let path = format!("/containers/{}/json", encode(&a.container));
    let c: bollard_stubs::models::ContainerInspectResponse =
        client.json("GET", &path, Body::Empty)?;
    let state = c.state.clone().unwrap_or_default();
    if !state.running.unwrap_or(false) {
        bail!("You cannot attach to a stopped container, start it first");
    }
    if state.paused.unwrap_or(false) {
        bail!("You cannot attach to a paused container, unpause it first");
    }
    let cfg = c.config.unwrap_or_default();
    let tty = cfg.tty.unwrap_or(false);
    let stdin = !a.no_stdin && cfg.open_stdin.unwrap_or(false);
    let id = c.id.unwrap_or(a.container);
    let eid = encode(&id);
    forward_signals(
        client,
        &id,
        tty,
        a.sig_proxy,
        format!("/containers/{eid}/resize"),
    )?;
    // Like docker: a wait started before attaching gives the exit status once the streams end.
    let wait = client.call("POST", &format!("/containers/{eid}/wait"), Body::Empty)?;
    let conn = attach(client, &id, stdin, true, true)?;
    if tty && term::is_tty(1) {
        resize(client, &format!("/containers/{eid}/resize"));
    }
    let streams = Streams {
        stdin,
        tty,
        detach_keys: a.detach_keys.as_deref(),
    };
    if pump(conn, &streams)? {
        return Ok(0);
    }
    wait_status(wait)
}

#[derive(serde::Deserialize)]
struct IdBody {
    #[serde(rename = "Id")]
    id: String,
}

#[derive(serde::Deserialize)]
struct ExecInspect {
    #[serde(rename = "ExitCode")]
    exit_code: Option<i64>,
}

pub fn exec(client: &Client, a: ExecArgs) -> Result<i32> {
    check_tty(a.interactive && !a.detach, a.tty)?;
    let mut env = Vec::new();
    for f in &a.env_file {
        env.extend(parse::env_file(std::path::Path::new(f), env_lookup)?);
    }
    env.extend(a.env.iter().filter_map(|e| parse::env_entry(e, env_lookup)));
    let console_size = (a.tty && term::is_tty(1))
        .then(|| term::window_size(1))
        .flatten()
        .map(|(h, w)| vec![h, w]);
    let body = serde_json::json!({
        "AttachStdin": a.interactive && !a.detach,
        "AttachStdout": !a.detach,
        "AttachStderr": !a.detach,
        "Tty": a.tty,
        "Env": env,
        "WorkingDir": a.workdir.clone().unwrap_or_default(),
        "User": a.user.clone().unwrap_or_default(),
        "Privileged": a.privileged,
        "Cmd": a.command,
        "ConsoleSize": console_size,
    });
    let created: IdBody = client.json(
        "POST",
        &format!("/containers/{}/exec", encode(&a.container)),
        Body::json(&body)?,
    )?;
    let eid = encode(&created.id);
    let start_body = Body::json(
        &serde_json::json!({"Detach": a.detach, "Tty": a.tty, "ConsoleSize": console_size}),
    )?;
    if a.detach {
        client.call("POST", &format!("/exec/{eid}/start"), start_body)?;
        return Ok(0);
    }
    forward_signals(
        client,
        &created.id,
        a.tty,
        false,
        format!("/exec/{eid}/resize"),
    )?;
    let conn = client.hijack(&format!("/exec/{eid}/start"), start_body)?;
    if a.tty && term::is_tty(1) {
        resize(client, &format!("/exec/{eid}/resize"));
    }
    let streams = Streams {
        stdin: a.interactive,
        tty: a.tty,
        detach_keys: a.detach_keys.as_deref(),
    };
    if pump(conn, &streams)? {
        return Ok(0);
    }
    let inspect: ExecInspect = client.json("GET", &format!("/exec/{eid}/json"), Body::Empty)?;
    Ok(inspect.exit_code.unwrap_or(0) as i32)
}

/// Writes `bytes` to stdout and flushes (used by verbs that print raw daemon output).
pub fn write_stdout(bytes: &[u8]) -> Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(bytes)?;
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Cmd};
    use clap::Parser;

    fn body(args: &[&str]) -> serde_json::Value {
        let cli = Cli::try_parse_from(args).unwrap();
        let Some(Cmd::Run(r)) = cli.cmd else { panic!() };
        serde_json::to_value(build_create(&r.opts, r.rm, r.detach).unwrap()).unwrap()
    }

    #[test]
    fn create_body_has_docker_fields() {
        let b = body(&[
            "berth",
            "run",
            "--rm",
            "-i",
            "-m",
            "512m",
            "--cpus",
            "1.5",
            "--ulimit",
            "nofile=10:20",
            "-v",
            "/h:/c:ro",
            "-v",
            "/anon",
            "--restart",
            "no",
            "-l",
            "a=b",
            "--entrypoint",
            "",
            "-p",
            "8080:80",
            "--init",
            "busybox",
            "echo",
            "hi",
        ]);
        assert_eq!(b["Image"], "busybox");
        assert_eq!(b["Cmd"], serde_json::json!(["echo", "hi"]));
        assert_eq!(b["Entrypoint"], serde_json::json!([""]));
        assert_eq!(b["AttachStdin"], true);
        assert_eq!(b["StdinOnce"], true);
        assert_eq!(b["OpenStdin"], true);
        assert_eq!(b["Volumes"], serde_json::json!({"/anon": {}}));
        assert_eq!(b["ExposedPorts"], serde_json::json!({"80/tcp": {}}));
        assert_eq!(b["Labels"]["a"], "b");
        let h = &b["HostConfig"];
        assert_eq!(h["Memory"], 512 << 20);
        assert_eq!(h["NanoCpus"], 1_500_000_000i64);
        assert_eq!(h["AutoRemove"], true);
        assert_eq!(h["Init"], true);
        assert_eq!(h["Binds"], serde_json::json!(["/h:/c:ro"]));
        assert_eq!(
            h["Ulimits"],
            serde_json::json!([{"Name": "nofile", "Soft": 10, "Hard": 20}])
        );
        assert_eq!(h["RestartPolicy"]["Name"], "no");
        assert_eq!(h["PortBindings"]["80/tcp"][0]["HostPort"], "8080");
    }

    #[test]
    fn detached_run_attaches_nothing() {
        let b = body(&["berth", "run", "-d", "busybox"]);
        assert_eq!(b["AttachStdout"], false);
        assert_eq!(b["AttachStderr"], false);
        assert!(b.get("Cmd").is_none());
    }

    #[test]
    fn rm_with_restart_conflicts() {
        let cli = Cli::try_parse_from(["berth", "run", "--rm", "--restart", "always", "busybox"])
            .unwrap();
        let Some(Cmd::Run(r)) = cli.cmd else { panic!() };
        assert!(build_create(&r.opts, r.rm, r.detach).is_err());
    }
}
