//! berthd: the Docker Engine API over berth's engine, on a unix socket.

mod api;
mod router;
mod routes;
mod server;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Parser;
use tokio::signal::unix::{signal, SignalKind};

#[derive(Parser, Debug)]
#[command(
    name = "berthd",
    version,
    about = "berth's Docker-compatible engine daemon"
)]
struct Args {
    /// Durable state (images, containers, volumes).
    #[arg(long, default_value = "/var/lib/berth")]
    root: PathBuf,
    /// Runtime state (bundles, monitor sockets); lost on reboot.
    #[arg(long, default_value = "/run/berth")]
    exec_root: PathBuf,
    /// Socket to listen on (unix:///path or a path); may be given more than once.
    #[arg(
        short = 'H',
        long = "host",
        default_value = "unix:///run/berth/berth.sock"
    )]
    host: Vec<String>,
    /// Parent cgroup of every container.
    #[arg(long, default_value = "/berth")]
    cgroup_parent: String,
    /// berth-monitor binary (default: next to berthd).
    #[arg(long)]
    monitor_path: Option<PathBuf>,
    /// Static berth-init binary for --init (default: next to berthd).
    #[arg(long)]
    init_path: Option<PathBuf>,
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(args) {
        eprintln!("berthd: {e:#}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> Result<()> {
    let config = berth_engine::Config {
        root: args.root,
        exec_root: args.exec_root,
        monitor: helper_binary(args.monitor_path, "berth-monitor")?,
        init: helper_binary(args.init_path, "berth-init")?,
        cgroup_parent: args.cgroup_parent,
    };
    let sockets = args
        .host
        .iter()
        .map(|h| socket_path(h))
        .collect::<Result<Vec<_>>>()?;
    // One thread: berthd mostly waits; blocking engine work goes to the blocking pool.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_keep_alive(Duration::from_secs(5))
        .build()
        .context("cannot start the tokio runtime")?;
    let result = runtime.block_on(serve(config, &sockets));
    // Containers outlive berthd (their monitors are separate processes); do not wait
    // long for in-flight requests.
    runtime.shutdown_timeout(Duration::from_millis(500));
    result
}

async fn serve(config: berth_engine::Config, sockets: &[PathBuf]) -> Result<()> {
    mount_exec_root(&config.exec_root)?;
    let engine = berth_engine::Engine::open(config).context("cannot open the engine")?;
    let server = Arc::new(server::Server::new(engine));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    for path in sockets {
        let listener = listen(path)?;
        let mut stop = stop_rx.clone();
        tasks.push(tokio::spawn(server.clone().serve(listener, async move {
            let _ = stop.wait_for(|s| *s).await;
        })));
    }
    eprintln!(
        "berthd: API listening on {}",
        sockets
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    eprintln!("berthd: shutting down");
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    // Only now: a daemon that failed to start must not remove the running one's socket.
    for path in sockets {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

/// The exec root holds what lives as long as the machine is up. Where it is not on a tmpfs
/// (a host whose /run is on disk), berthd mounts one there: a reboot clears it, and the
/// small files every container start and exit makes and removes (bundle, socket, exit
/// file, the runtime's state) cost no disk work — on this kind of host a directory's
/// removal alone took 0.1 ms. Never over a directory with something in it: that is the
/// state of a berthd before this one, which running containers' monitors still use.
fn mount_exec_root(dir: &Path) -> Result<()> {
    use nix::mount::{mount, MsFlags};
    use nix::sys::statfs::{statfs, TMPFS_MAGIC};
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let on_tmpfs = statfs(dir)
        .with_context(|| format!("cannot statfs {}", dir.display()))?
        .filesystem_type()
        == TMPFS_MAGIC;
    let in_use = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .next()
        .is_some();
    if on_tmpfs || in_use {
        return Ok(());
    }
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(Some("tmpfs"), dir, Some("tmpfs"), flags, Some("mode=755"))
        .with_context(|| format!("cannot mount a tmpfs on {}", dir.display()))
}

/// `unix:///run/berth/berth.sock` or a plain path.
fn socket_path(host: &str) -> Result<PathBuf> {
    if let Some(path) = host.strip_prefix("unix://") {
        return Ok(PathBuf::from(path));
    }
    if host.starts_with('/') {
        return Ok(PathBuf::from(host));
    }
    bail!("unsupported host {host:?}: only unix:// sockets are supported")
}

/// Bind the socket: refuse when another daemon answers on it, replace a stale file,
/// mode 0660 owned by root.
fn listen(path: &Path) -> Result<tokio::net::UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        bail!(
            "another daemon is already listening on {} (is berthd running?)",
            path.display()
        );
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot remove stale {}", path.display())),
    }
    let listener = tokio::net::UnixListener::bind(path)
        .with_context(|| format!("cannot listen on {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .with_context(|| format!("cannot chmod {}", path.display()))?;
    std::os::unix::fs::chown(path, Some(0), Some(0))
        .with_context(|| format!("cannot chown {}", path.display()))?;
    Ok(listener)
}

/// An explicit helper path, or `name` next to berthd's own executable.
fn helper_binary(explicit: Option<PathBuf>, name: &str) -> Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p);
    }
    let exe = std::env::current_exe().context("cannot find berthd's own executable")?;
    let dir = exe
        .parent()
        .context("berthd's executable has no directory")?;
    Ok(dir.join(name))
}
