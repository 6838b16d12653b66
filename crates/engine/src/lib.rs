//! berth's engine: containers made from images (snapshot, init layer, OCI spec, monitor),
//! and what the Docker Engine API says about them — volumes, logs, exec, events, stats.
//! berthd calls it in-process; blocking calls run on tokio's blocking pool.

pub mod archive;
pub mod commit;
pub mod container;
pub mod error;
pub mod events;
pub mod exec;
pub mod images;
pub mod logs;
pub mod stats;
pub mod time;
pub mod top;
pub mod volumes;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use berth_image::images::ImageStore;

pub use error::{Error, Result as EngineResult};

/// Where the engine keeps things, and the helper binaries it runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Durable state: `<root>/image` (the image store), `<root>/containers`, `<root>/volumes`.
    pub root: PathBuf,
    /// State that lives as long as the machine is up: bundles, monitor sockets, exit files,
    /// the runtime's state (`<exec_root>/runtime`).
    pub exec_root: PathBuf,
    /// The `berth-monitor` binary.
    pub monitor: PathBuf,
    /// The static `berth-init` binary bind-mounted as /sbin/berth-init for `--init`.
    pub init: PathBuf,
    /// Parent cgroup of every container (`/berth` by default; tests use their own).
    pub cgroup_parent: String,
}

impl Config {
    pub fn image_root(&self) -> PathBuf {
        self.root.join("image")
    }
    pub fn containers_root(&self) -> PathBuf {
        self.root.join("containers")
    }
    pub fn volumes_root(&self) -> PathBuf {
        self.root.join("volumes")
    }
    pub fn runtime_root(&self) -> PathBuf {
        self.exec_root.join("runtime")
    }
    /// Per-container run state: bundle, monitor socket, exit file.
    pub fn run_dir(&self, id: &str) -> PathBuf {
        self.exec_root.join("containers").join(id)
    }
}

pub struct Engine {
    pub config: Config,
    pub images: ImageStore,
    pub containers: container::ContainerStore,
    pub volumes: volumes::VolumeStore,
    pub events: events::Events,
    pub execs: exec::ExecStore,
    /// Starts `config.monitor`s; a container's create launches a spare for its start.
    pub monitors: berth_monitor::client::Monitors,
    /// The runtime berthd runs on: sync engine calls (on the blocking pool) start watchers
    /// and wait for state changes through it.
    pub rt: tokio::runtime::Handle,
}

impl Engine {
    /// Open (creating) every store under the configured roots and pick up the containers a
    /// previous berthd left: running ones are watched again, ones whose monitor is gone are
    /// marked exited. Must be called inside a tokio runtime.
    pub fn open(config: Config) -> Result<std::sync::Arc<Engine>> {
        for dir in [&config.root, &config.exec_root] {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let images = ImageStore::open(&config.image_root())?;
        let containers = container::ContainerStore::open(&config.containers_root())?;
        let volumes = volumes::VolumeStore::open(&config.volumes_root())?;
        let monitors = berth_monitor::client::Monitors::new(config.monitor.clone());
        let engine = std::sync::Arc::new(Engine {
            config,
            monitors,
            images,
            containers,
            volumes,
            events: events::Events::new(),
            execs: exec::ExecStore::default(),
            rt: tokio::runtime::Handle::try_current()
                .context("the engine must be opened inside a tokio runtime")?,
        });
        container::lifecycle::restore(&engine)?;
        Ok(engine)
    }

    pub fn root(&self) -> &Path {
        &self.config.root
    }

    /// The cgroup of container `id` (relative to each hierarchy's root): `<parent>/<id>`.
    pub fn cgroup_path(&self, id: &str) -> PathBuf {
        Path::new(&self.config.cgroup_parent).join(id)
    }
}

/// 64 hex digits from the kernel's random pool: container, exec and anonymous volume ids.
pub fn random_id() -> anyhow::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("cannot read /dev/urandom")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}
