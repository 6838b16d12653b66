//! berth: docker's command line against berthd.

mod cli;
mod container;
mod cp;
mod detach;
mod format;
mod http;
mod image;
mod parse;
mod run;
mod stream;
mod system;
mod term;

use clap::Parser;
use cli::{Cli, Cmd};
use std::io::Write;

/// An error whose message was already printed (or needs none): the process exits with `code`.
#[derive(Debug)]
pub struct Exit(pub i32);

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit status {}", self.0)
    }
}

impl std::error::Error for Exit {}

fn main() {
    // A closed stdout (`berth ps | head`) must not panic.
    // SAFETY: resetting SIGPIPE to its default disposition before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let args = cli::expand_aliases(std::env::args().collect());
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            let code = match e.kind() {
                ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                    // Bare `berth`: usage on stdout, like docker.
                    print!("{}", e.render());
                    0
                }
                _ if e.use_stderr() => {
                    let _ = e.print();
                    125
                }
                _ => {
                    let _ = e.print();
                    0
                }
            };
            std::process::exit(code);
        }
    };
    let code = match dispatch(cli) {
        Ok(code) => code,
        Err(e) => match e.downcast_ref::<Exit>() {
            Some(Exit(code)) => *code,
            None => {
                eprintln!("{e:#}");
                1
            }
        },
    };
    let _ = std::io::stdout().flush();
    std::process::exit(code);
}

fn dispatch(cli: Cli) -> anyhow::Result<i32> {
    let Some(cmd) = cli.cmd else {
        if cli.version {
            println!("berth version {}", env!("CARGO_PKG_VERSION"));
        } else {
            use clap::CommandFactory;
            Cli::command().print_help()?;
        }
        return Ok(0);
    };
    let client = http::Client::from_host(&cli.host)?;
    let c = &client;
    match cmd {
        Cmd::Run(a) => run::run(c, a),
        Cmd::Create(a) => run::create(c, a),
        Cmd::Start(a) => run::start(c, a),
        Cmd::Exec(a) => run::exec(c, a),
        Cmd::Attach(a) => run::attach_cmd(c, a),
        Cmd::Port(a) => container::port(c, a),
        Cmd::Ps(a) => container::ps(c, a),
        Cmd::Logs(a) => container::logs(c, a),
        Cmd::Stop(a) => container::stop(c, a, "stop"),
        Cmd::Restart(a) => container::stop(c, a, "restart"),
        Cmd::Kill(a) => container::kill(c, a),
        Cmd::Rm(a) => container::rm(c, a),
        Cmd::Pause(a) => container::simple(c, &a.containers, "pause"),
        Cmd::Unpause(a) => container::simple(c, &a.containers, "unpause"),
        Cmd::Wait(a) => container::wait(c, a),
        Cmd::Top(a) => container::top(c, a),
        Cmd::Stats(a) => container::stats(c, a),
        Cmd::Diff(a) => container::diff(c, a),
        Cmd::Commit(a) => container::commit(c, a),
        Cmd::Export(a) => container::export(c, a),
        Cmd::Rename(a) => container::rename(c, a),
        Cmd::ContainerPrune(a) => container::prune(c, a),
        Cmd::Cp(a) => cp::cp(c, a),
        Cmd::Images(a) => image::images(c, a),
        Cmd::Pull(a) => image::pull_cmd(c, a),
        Cmd::Push(a) => image::push(c, a),
        Cmd::Tag(a) => image::tag(c, a),
        Cmd::Rmi(a) => image::rmi(c, a),
        Cmd::Save(a) => image::save(c, a),
        Cmd::Load(a) => image::load(c, a),
        Cmd::Import(a) => image::import(c, a),
        Cmd::History(a) => image::history(c, a),
        Cmd::ImagePrune(a) => image::prune(c, a),
        Cmd::Inspect(a) => system::inspect(c, a),
        Cmd::Info(a) => system::info(c, a),
        Cmd::Version(a) => system::version(c, a),
        Cmd::Events(a) => system::events(c, a),
        Cmd::Volume(v) => system::volume(c, v),
    }
}

/// Runs `f` for each name, printing the name on success and the error on failure (docker's multi-object verbs):
/// exit status 1 if any failed.
pub fn for_each(
    names: &[String],
    mut f: impl FnMut(&str) -> anyhow::Result<()>,
) -> anyhow::Result<i32> {
    let mut failed = false;
    for name in names {
        match f(name) {
            Ok(()) => println!("{name}"),
            Err(e) => {
                eprintln!("{e:#}");
                failed = true;
            }
        }
    }
    Ok(i32::from(failed))
}

/// Asks "[y/N]" on stderr and reads the answer from stdin.
pub fn confirm(warning: &str) -> bool {
    eprint!("{warning}\nAre you sure you want to continue? [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    if std::io::stdin().read_line(&mut answer).is_err() {
        return false;
    }
    matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}
