//! `berth-runtime`: runc's command line over the berth_runtime library.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use berth_runtime::container::{self, CreateOptions};
use berth_runtime::log::{self, LogFormat};
use berth_runtime::{signals, spec, state};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "berth-runtime",
    version,
    about = "An OCI runtime with runc's command line"
)]
struct Cli {
    /// Where container state is kept.
    #[arg(long, global = true, default_value = "/run/berth-runtime")]
    root: PathBuf,
    /// Append log lines (and errors) to this file.
    #[arg(long, global = true)]
    log: Option<PathBuf>,
    #[arg(long = "log-format", global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    #[arg(long, global = true)]
    debug: bool,
    /// Not supported: berth-runtime drives cgroupfs itself (create and run refuse it).
    #[arg(long = "systemd-cgroup", global = true, hide = true)]
    systemd_cgroup: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write a default config.json.
    Spec {
        #[arg(long, short, default_value = ".")]
        bundle: PathBuf,
    },
    /// Create a container; its process waits for `start`.
    Create {
        #[arg(long, short, default_value = ".")]
        bundle: PathBuf,
        #[command(flatten)]
        common: CreateFlags,
        id: String,
    },
    /// Run the process of a created container.
    Start { id: String },
    /// Print a container's state as JSON.
    State { id: String },
    /// Send a signal (default SIGTERM) to a container's init, or with --all to all its processes.
    Kill {
        #[arg(long, short)]
        all: bool,
        id: String,
        #[arg(default_value = "SIGTERM")]
        signal: String,
    },
    /// Delete a container (stopped or created; --force kills a running one).
    Delete {
        #[arg(long, short)]
        force: bool,
        id: String,
    },
    /// Create and start a container, wait for it, delete it; exit with its status.
    Run {
        #[arg(long, short, default_value = ".")]
        bundle: PathBuf,
        #[arg(long, short)]
        detach: bool,
        #[command(flatten)]
        common: CreateFlags,
        id: String,
    },
    /// List containers.
    List {
        #[arg(long, short, default_value = "table")]
        format: String,
        #[arg(long, short)]
        quiet: bool,
    },
    /// Print the features this runtime supports, as JSON.
    Features,
    /// Run a process in a created or running container.
    #[command(trailing_var_arg = true)]
    Exec {
        #[command(flatten)]
        flags: berth_runtime::exec_args::ExecFlags,
        id: String,
        #[arg(allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// List the processes of a container (json: an array of pids).
    #[command(trailing_var_arg = true)]
    Ps {
        #[arg(long, short, default_value = "table")]
        format: String,
        id: String,
        /// Options for ps(1) with the table format (default -ef).
        #[arg(allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// Freeze every process of a container.
    Pause { id: String },
    /// Thaw a paused container.
    Resume { id: String },
    /// Change a container's resource limits.
    Update {
        #[command(flatten)]
        flags: berth_runtime::update::UpdateFlags,
        id: String,
    },
    /// Print a container's resource usage (and OOM events) as JSON lines.
    Events {
        /// Print the stats once and exit.
        #[arg(long)]
        stats: bool,
        /// Time between stats, e.g. 5s, 500ms.
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        interval: std::time::Duration,
        id: String,
    },
}

#[derive(clap::Args)]
struct CreateFlags {
    #[arg(long = "pid-file")]
    pid_file: Option<PathBuf>,
    #[arg(long = "console-socket")]
    console_socket: Option<PathBuf>,
    #[arg(long = "no-pivot")]
    no_pivot: bool,
    /// Accepted for runc compatibility (berth-runtime never creates a session keyring).
    #[arg(long = "no-new-keyring")]
    no_new_keyring: bool,
}

impl CreateFlags {
    fn options<'a>(&'a self, root: &'a Path, bundle: &'a Path, id: &'a str) -> CreateOptions<'a> {
        CreateOptions {
            root,
            id,
            bundle,
            pid_file: self.pid_file.as_deref(),
            console_socket: self.console_socket.as_deref(),
            no_pivot: self.no_pivot,
            relay_terminal: false,
        }
    }
}

impl Command {
    /// Commands that never put a process into a container: they need not pay for a re-exec
    /// from a read-only copy of the binary (CVE-2019-5736), non-dumpable is enough.
    fn stays_outside_containers(&self) -> bool {
        use Command as C;
        matches!(
            self,
            C::Spec { .. }
                | C::Start { .. }
                | C::State { .. }
                | C::Kill { .. }
                | C::Delete { .. }
                | C::List { .. }
                | C::Features
        )
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let protected = if cli.command.stays_outside_containers() {
        berth_runtime::sys::set_non_dumpable()
    } else {
        berth_runtime::sys::protect_self_exe()
    };
    if let Err(e) = protected {
        eprintln!("berth-runtime: cannot run from a read-only copy of itself: {e}");
        return ExitCode::FAILURE;
    }
    if let Err(e) = log::init(cli.log.as_deref(), cli.log_format, cli.debug) {
        eprintln!("berth-runtime: cannot open log file: {e}");
        return ExitCode::FAILURE;
    }
    match run(&cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            log::error(&format!("{e:#}"));
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli) -> Result<u8> {
    let root = cli.root.as_path();
    if cli.systemd_cgroup && matches!(cli.command, Command::Create { .. } | Command::Run { .. }) {
        bail!("--systemd-cgroup is not supported: berth-runtime manages cgroupfs itself (containerd: SystemdCgroup = false)");
    }
    match &cli.command {
        Command::Spec { bundle } => write_spec(bundle)?,
        Command::Create { bundle, common, id } => {
            container::create(&common.options(root, bundle, id))?;
        }
        Command::Start { id } => container::start(root, id)?,
        Command::State { id } => println!("{}", container::state(root, id)?),
        Command::Kill { all, id, signal } => {
            container::kill(root, id, signals::parse(signal)?, *all)?
        }
        Command::Delete { force, id } => container::delete(root, id, *force)?,
        Command::Run {
            bundle,
            detach,
            common,
            id,
        } => {
            // We wait for the container: if our caller left SIGCHLD ignored, the kernel would
            // reap it for us and its exit status would be lost.
            // SAFETY: SIG_DFL installs no handler code.
            unsafe { libc::signal(libc::SIGCHLD, libc::SIG_DFL) };
            let code = container::run(&common.options(root, bundle, id), *detach)?;
            return Ok(u8::try_from(code).unwrap_or(255));
        }
        Command::List { format, quiet } => list(root, format, *quiet)?,
        Command::Features => println!(
            "{}",
            serde_json::to_string_pretty(&berth_runtime::features::features())?
        ),
        Command::Exec { flags, id, command } => {
            let code = berth_runtime::exec_args::run(root, id, command, flags)?;
            return Ok(u8::try_from(code).unwrap_or(255));
        }
        Command::Ps {
            format,
            id,
            ps_args,
        } => ps(root, id, format, ps_args)?,
        Command::Pause { id } => berth_runtime::pause::pause(root, id)?,
        Command::Resume { id } => berth_runtime::pause::resume(root, id)?,
        Command::Update { flags, id } => {
            berth_runtime::update::update(root, id, &flags.resources()?)?
        }
        Command::Events {
            stats,
            interval,
            id,
        } => berth_runtime::events::events(
            root,
            id,
            *stats,
            *interval,
            &mut std::io::stdout().lock(),
        )?,
    }
    Ok(0)
}

fn ps(root: &Path, id: &str, format: &str, ps_args: &[String]) -> Result<()> {
    let pids = berth_runtime::ps::pids(root, id)?;
    match format {
        "json" => println!("{}", serde_json::to_string(&pids)?),
        "table" => print!("{}", berth_runtime::ps::table(&pids, ps_args)?),
        other => bail!("invalid format {other:?}: use table or json"),
    }
    Ok(())
}

fn write_spec(bundle: &Path) -> Result<()> {
    let path = bundle.join("config.json");
    if path.exists() {
        bail!("File {} exists. Remove it first", path.display());
    }
    let text = serde_json::to_vec_pretty(&spec::default_spec()?)?;
    state::write_atomic(&path, &text).with_context(|| format!("cannot write {}", path.display()))
}

fn list(root: &Path, format: &str, quiet: bool) -> Result<()> {
    let containers = container::list(root)?;
    let mut out = std::io::stdout().lock();
    if quiet {
        for (s, _) in &containers {
            writeln!(out, "{}", s.id)?;
        }
        return Ok(());
    }
    match format {
        "json" => {
            let states: Vec<_> = containers
                .iter()
                .map(|(s, status)| s.oci_state(*status))
                .collect();
            writeln!(out, "{}", serde_json::to_string(&states)?)?;
        }
        "table" => {
            writeln!(
                out,
                "{:<20} {:<8} {:<10} {:<40} {:<32} OWNER",
                "ID", "PID", "STATUS", "BUNDLE", "CREATED"
            )?;
            for (s, status) in &containers {
                let oci = s.oci_state(*status);
                writeln!(
                    out,
                    "{:<20} {:<8} {:<10} {:<40} {:<32} {}",
                    s.id,
                    oci.pid,
                    status,
                    s.bundle.display(),
                    s.created,
                    s.owner
                )?;
            }
        }
        other => bail!("invalid format {other:?}: use table or json"),
    }
    Ok(())
}
