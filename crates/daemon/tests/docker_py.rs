//! docker-py (Debian's python3-docker) against berthd: the Python SDK's flows work too.

mod common;

use std::process::{Command, Stdio};
use std::sync::OnceLock;

use common::Daemon;

/// python3-docker, installed once per test binary.
fn install_docker_py() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| berth_testkit::need_debian_packages(&["python3-docker"]));
}

/// Run a Python snippet with `client` connected to `d`; its stdout.
fn python(d: &Daemon, code: &str) -> String {
    install_docker_py();
    let program = format!(
        "import docker\nclient = docker.DockerClient(base_url='unix://{}', version='auto')\n{code}",
        d.socket.display()
    );
    // Debian's interpreter: the one python3-docker is installed for.
    let out = Command::new("/usr/bin/python3")
        .args(["-c", &program])
        .stdin(Stdio::null())
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "python failed:\n{}\nberthd log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        d.log()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn docker_py_version_and_ping() {
    let d = Daemon::start("py-version");
    let out = python(
        &d,
        "assert client.ping()\nv = client.version()\nprint(v['ApiVersion'], v['Os'])\n",
    );
    assert_eq!(out.trim(), "1.44 linux");
}

#[test]
fn docker_py_run_returns_output() {
    let d = Daemon::start_with_busybox("py-run");
    let out = python(
        &d,
        "out = client.containers.run('busybox', 'echo hi', remove=True)\n\
         assert out == b'hi\\n', out\n\
         print(len(client.containers.list(all=True)))\n",
    );
    assert_eq!(out.trim(), "0");
}

#[test]
fn docker_py_detached_exec_and_remove() {
    let d = Daemon::start_with_busybox("py-exec");
    let out = python(
        &d,
        "c = client.containers.run('busybox', 'sleep 1000', detach=True, name='pyc')\n\
         c.reload()\n\
         print(c.status)\n\
         code, output = c.exec_run('sh -c \"echo from-exec; exit 2\"')\n\
         print(code, output.decode().strip())\n\
         code, (out, err) = c.exec_run('sh -c \"echo o; echo e >&2\"', demux=True)\n\
         print(code, out.decode().strip(), err.decode().strip())\n\
         c.stop(timeout=1)\n\
         c.reload()\n\
         print(c.status, c.attrs['State']['ExitCode'])\n\
         c.remove()\n\
         print(len(client.containers.list(all=True)))\n",
    );
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["running", "2 from-exec", "0 o e", "exited 137", "0"]
    );
}
