//! Container verbs other than run/create/start/exec: ps, logs, stop, kill, rm, wait, top, stats, diff, commit, ...

use crate::cli::{
    CommitArgs, ExportArgs, KillArgs, LogsArgs, Names, One, PortArgs, PruneArgs, PsArgs,
    RenameArgs, RmArgs, StatsArgs, StopArgs, TopArgs,
};
use crate::format::{self, ellipsis, short_id, Template};
use crate::http::{encode, Body, Client, Query};
use crate::{parse, stream, term};
use anyhow::{bail, Context, Result};
use bollard_stubs::models::{
    ContainerInspectResponse, ContainerSummary, ContainerTopResponse, FilesystemChange, Port,
};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{self, Write};

fn cpath(id: &str, rest: &str) -> String {
    format!("/containers/{}{rest}", encode(id))
}

/// docker's PORTS column: "0.0.0.0:8080->80/tcp, 9000/tcp".
pub fn ports_column(ports: &[Port]) -> String {
    let mut items: Vec<String> = ports
        .iter()
        .map(|p| {
            let typ = p.typ.map(|t| t.to_string()).unwrap_or_else(|| "tcp".into());
            match (p.public_port, p.ip.as_deref()) {
                (Some(public), ip) => format!(
                    "{}:{public}->{}/{typ}",
                    ip.unwrap_or("0.0.0.0"),
                    p.private_port
                ),
                (None, _) => format!("{}/{typ}", p.private_port),
            }
        })
        .collect();
    items.sort();
    items.dedup();
    items.join(", ")
}

/// One `ps` row as docker's template context (the fields `--format` sees).
pub fn ps_context(c: &ContainerSummary, trunc: bool, now: i64) -> Value {
    let id = c.id.clone().unwrap_or_default();
    let names: Vec<String> = c
        .names
        .iter()
        .flatten()
        .map(|n| n.trim_start_matches('/').to_string())
        .filter(|n| !trunc || !n.contains('/'))
        .collect();
    let mut image = c.image.clone().unwrap_or_default();
    if trunc && image.starts_with("sha256:") {
        image = short_id(&image);
    }
    let command = c.command.clone().unwrap_or_default();
    let command = if trunc {
        ellipsis(&command, 20)
    } else {
        command
    };
    let created = c.created.unwrap_or(0);
    let labels = c
        .labels
        .as_ref()
        .map(|l| {
            let m: BTreeMap<_, _> = l.iter().collect();
            m.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    let size = match (c.size_rw, c.size_root_fs) {
        (Some(rw), Some(root)) => format!(
            "{} (virtual {})",
            format::human_size(rw as f64),
            format::human_size(root as f64)
        ),
        (Some(rw), None) => format::human_size(rw as f64),
        _ => "0B".into(),
    };
    let networks = c
        .network_settings
        .as_ref()
        .and_then(|n| n.networks.as_ref())
        .map(|n| {
            let mut k: Vec<_> = n.keys().cloned().collect();
            k.sort();
            k.join(",")
        })
        .unwrap_or_default();
    let mounts = c
        .mounts
        .iter()
        .flatten()
        .map(|m| m.name.clone().or(m.source.clone()).unwrap_or_default())
        .collect::<Vec<_>>()
        .join(",");
    json!({
        "ID": if trunc { short_id(&id) } else { id },
        "Image": image,
        "Command": serde_json::to_string(&command).unwrap_or_default(),
        "CreatedAt": format::go_time(created),
        "RunningFor": format!("{} ago", format::human_duration(now - created)),
        "Ports": ports_column(c.ports.as_deref().unwrap_or_default()),
        "State": c.state.as_ref().map(|s| s.to_string()).unwrap_or_default(),
        "Status": c.status.clone().unwrap_or_default(),
        "Size": size,
        "Names": names.join(","),
        "Labels": labels,
        // The method `{{.Label "key"}}`: one label's value.
        "Label()": c.labels.clone().unwrap_or_default(),
        "Mounts": mounts,
        "Networks": networks,
        "LocalVolumes": c.mounts.as_ref().map(|m| m.len()).unwrap_or(0).to_string(),
    })
}

const PS_DEFAULT: &str =
    "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}";

fn ps_headers() -> Value {
    json!({
        "ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND", "CreatedAt": "CREATED AT",
        "RunningFor": "CREATED", "Ports": "PORTS", "State": "STATE", "Status": "STATUS", "Size": "SIZE",
        "Names": "NAMES", "Labels": "LABELS", "Mounts": "MOUNTS", "Networks": "NETWORKS", "LocalVolumes": "LOCAL VOLUMES",
    })
}

pub fn ps(client: &Client, a: PsArgs) -> Result<i32> {
    let limit = if a.latest { 1 } else { a.last };
    let q = Query::new()
        .flag("all", a.all || limit > 0)
        .opt("limit", (limit > 0).then(|| limit.to_string()))
        .flag("size", a.size)
        .opt("filters", parse::filters_json(&a.filter)?);
    let list: Vec<ContainerSummary> = client.json(
        "GET",
        &format!("/containers/json{}", q.as_str()),
        Body::Empty,
    )?;
    let trunc = !a.no_trunc;
    if a.quiet {
        if a.format.is_some() {
            eprintln!(
                "WARNING: Ignoring custom format, because both --format and --quiet are set."
            );
        }
        for c in &list {
            let id = c.id.clone().unwrap_or_default();
            println!("{}", if trunc { short_id(&id) } else { id });
        }
        return Ok(0);
    }
    let format = match &a.format {
        Some(f) if f != "table" => f.clone(),
        _ if a.size => format!("{PS_DEFAULT}\t{{{{.Size}}}}"),
        _ => PS_DEFAULT.to_string(),
    };
    let now = format::now_unix();
    let items: Vec<Value> = list.iter().map(|c| ps_context(c, trunc, now)).collect();
    // A `{{.Label "key"}}` column is headed by the key.
    let mut headers = ps_headers();
    let label_keys: serde_json::Map<String, Value> = items
        .iter()
        .filter_map(|item| item["Label()"].as_object())
        .flat_map(|labels| labels.keys())
        .map(|key| (key.clone(), Value::from(key.as_str())))
        .collect();
    headers["Label()"] = Value::Object(label_keys);
    print!(
        "{}",
        Template::parse(&format)?.render_list(&items, &headers)?
    );
    Ok(0)
}

fn inspect_container(client: &Client, name: &str) -> Result<ContainerInspectResponse> {
    client.json("GET", &cpath(name, "/json"), Body::Empty)
}

pub fn logs(client: &Client, a: LogsArgs) -> Result<i32> {
    let c = inspect_container(client, &a.container)?;
    let tty = c.config.and_then(|c| c.tty).unwrap_or(false);
    let now = format::now_unix();
    let q = Query::new()
        .add("stdout", "1")
        .add("stderr", "1")
        .flag("follow", a.follow)
        .add("tail", &a.tail)
        .flag("timestamps", a.timestamps)
        .flag("details", a.details)
        .opt(
            "since",
            a.since.as_deref().map(|s| parse::timestamp_arg(s, now)),
        )
        .opt(
            "until",
            a.until.as_deref().map(|s| parse::timestamp_arg(s, now)),
        );
    let mut resp = client.call(
        "GET",
        &cpath(&a.container, &format!("/logs{}", q.as_str())),
        Body::Empty,
    )?;
    if tty {
        stream::copy_raw(&mut resp, &mut io::stdout())?;
    } else {
        stream::demux(&mut resp, &mut io::stdout(), &mut io::stderr())?;
    }
    Ok(0)
}

pub fn stop(client: &Client, a: StopArgs, verb: &str) -> Result<i32> {
    let q = Query::new()
        .opt("t", a.timeout.map(|t| t.to_string()))
        .opt("signal", a.signal.as_deref());
    crate::for_each(&a.containers, |c| {
        client.call(
            "POST",
            &cpath(c, &format!("/{verb}{}", q.as_str())),
            Body::Empty,
        )?;
        Ok(())
    })
}

pub fn kill(client: &Client, a: KillArgs) -> Result<i32> {
    let q = Query::new().add("signal", &a.signal);
    crate::for_each(&a.containers, |c| {
        client.call(
            "POST",
            &cpath(c, &format!("/kill{}", q.as_str())),
            Body::Empty,
        )?;
        Ok(())
    })
}

pub fn rm(client: &Client, a: RmArgs) -> Result<i32> {
    let q = Query::new()
        .flag("force", a.force)
        .flag("v", a.volumes)
        .flag("link", a.link);
    crate::for_each(&a.containers, |c| {
        client.call("DELETE", &cpath(c, q.as_str()), Body::Empty)?;
        Ok(())
    })
}

/// Verbs that are a bare POST per container (pause, unpause).
pub fn simple(client: &Client, names: &[String], verb: &str) -> Result<i32> {
    crate::for_each(names, |c| {
        client.call("POST", &cpath(c, &format!("/{verb}")), Body::Empty)?;
        Ok(())
    })
}

pub fn wait(client: &Client, a: Names) -> Result<i32> {
    let mut failed = false;
    for c in &a.containers {
        match client.json::<Value>("POST", &cpath(c, "/wait"), Body::Empty) {
            Ok(v) => println!("{}", v["StatusCode"].as_i64().unwrap_or(0)),
            Err(e) => {
                eprintln!("{e:#}");
                failed = true;
            }
        }
    }
    Ok(i32::from(failed))
}

pub fn top(client: &Client, a: TopArgs) -> Result<i32> {
    let q = Query::new().opt(
        "ps_args",
        (!a.ps_args.is_empty()).then(|| a.ps_args.join(" ")),
    );
    let t: ContainerTopResponse = client.json(
        "GET",
        &cpath(&a.container, &format!("/top{}", q.as_str())),
        Body::Empty,
    )?;
    let mut rows = vec![t.titles.unwrap_or_default()];
    rows.extend(t.processes.unwrap_or_default());
    print!("{}", format::tabulate_min(&rows, 20));
    Ok(0)
}

pub fn diff(client: &Client, a: One) -> Result<i32> {
    let changes: Option<Vec<FilesystemChange>> =
        client.json("GET", &cpath(&a.container, "/changes"), Body::Empty)?;
    for c in changes.unwrap_or_default() {
        let kind = match c.kind as i64 {
            0 => "C",
            1 => "A",
            _ => "D",
        };
        println!("{kind} {}", c.path);
    }
    Ok(0)
}

pub fn commit(client: &Client, a: CommitArgs) -> Result<i32> {
    let (repo, tag) = match &a.repository {
        Some(r) => {
            let (name, tag) = crate::image::split_tag(r);
            (Some(name.to_string()), tag.map(str::to_string))
        }
        None => (None, None),
    };
    let mut q = Query::new()
        .add("container", &a.container)
        .opt("repo", repo)
        .opt("tag", tag)
        .opt("comment", a.message.as_deref())
        .opt("author", a.author.as_deref())
        .add("pause", if a.pause { "1" } else { "0" });
    for c in &a.change {
        q = q.add("changes", c);
    }
    let v: Value = client.json(
        "POST",
        &format!("/commit{}", q.as_str()),
        Body::json(&json!({}))?,
    )?;
    println!("{}", v["Id"].as_str().unwrap_or_default());
    Ok(0)
}

/// Opens `-o FILE` or stdout for a tar stream; refuses a terminal like docker.
pub fn tar_output(output: Option<&str>) -> Result<Box<dyn Write>> {
    match output {
        Some(path) if path != "-" => Ok(Box::new(
            std::fs::File::create(path)
                .with_context(|| format!("failed to export container: {path}"))?,
        )),
        _ => {
            if term::is_tty(1) {
                bail!("cowardly refusing to save to a terminal. Use the -o flag or redirect");
            }
            Ok(Box::new(io::stdout()))
        }
    }
}

pub fn export(client: &Client, a: ExportArgs) -> Result<i32> {
    let mut out = tar_output(a.output.as_deref())?;
    let mut resp = client.call("GET", &cpath(&a.container, "/export"), Body::Empty)?;
    io::copy(&mut resp, &mut out).context("writing the export")?;
    out.flush()?;
    Ok(0)
}

pub fn rename(client: &Client, a: RenameArgs) -> Result<i32> {
    let q = Query::new().add("name", &a.new_name);
    client.call(
        "POST",
        &cpath(&a.container, &format!("/rename{}", q.as_str())),
        Body::Empty,
    )?;
    Ok(0)
}

pub fn prune(client: &Client, a: PruneArgs) -> Result<i32> {
    if !a.force && !crate::confirm("WARNING! This will remove all stopped containers.") {
        return Ok(0);
    }
    let q = Query::new().opt("filters", parse::filters_json(&a.filter)?);
    let v: Value = client.json(
        "POST",
        &format!("/containers/prune{}", q.as_str()),
        Body::Empty,
    )?;
    format::print_pruned("Deleted Containers:", &v["ContainersDeleted"]);
    format::print_reclaimed(&v);
    Ok(0)
}

/// `port`: "80/tcp -> 0.0.0.0:8080" per published binding (only the host side for one asked-for port).
pub fn port(client: &Client, a: PortArgs) -> Result<i32> {
    let c: Value = client.json("GET", &cpath(&a.container, "/json"), Body::Empty)?;
    let wanted = a.port.as_ref().map(|p| {
        if p.contains('/') {
            p.clone()
        } else {
            format!("{p}/tcp")
        }
    });
    let mut lines = Vec::new();
    if let Some(ports) = c["NetworkSettings"]["Ports"].as_object() {
        for (private, bindings) in ports {
            if wanted.as_ref().is_some_and(|w| w != private) {
                continue;
            }
            for b in bindings.as_array().into_iter().flatten() {
                let ip = b["HostIp"]
                    .as_str()
                    .filter(|s| !s.is_empty())
                    .unwrap_or("0.0.0.0");
                let host = format!("{ip}:{}", b["HostPort"].as_str().unwrap_or_default());
                lines.push(if wanted.is_some() {
                    host
                } else {
                    format!("{private} -> {host}")
                });
            }
        }
    }
    if let (Some(asked), true) = (&a.port, lines.is_empty()) {
        bail!(
            "Error: No public port '{asked}' published for {}",
            a.container
        );
    }
    for l in lines {
        println!("{l}");
    }
    Ok(0)
}

/// One stats row computed like docker's CLI from a stats sample.
pub fn stats_row(id: &str, name: &str, s: &Value, trunc: bool) -> Vec<String> {
    let cpu = &s["cpu_stats"];
    let pre = &s["precpu_stats"];
    let f = |v: &Value| v.as_f64().unwrap_or(0.0);
    let cpu_delta = f(&cpu["cpu_usage"]["total_usage"]) - f(&pre["cpu_usage"]["total_usage"]);
    let sys_delta = f(&cpu["system_cpu_usage"]) - f(&pre["system_cpu_usage"]);
    let online = match cpu["online_cpus"].as_f64() {
        Some(n) if n > 0.0 => n,
        _ => cpu["cpu_usage"]["percpu_usage"]
            .as_array()
            .map(|a| a.len() as f64)
            .unwrap_or(0.0),
    };
    let cpu_pct = if cpu_delta > 0.0 && sys_delta > 0.0 {
        cpu_delta / sys_delta * online * 100.0
    } else {
        0.0
    };
    let mem = &s["memory_stats"];
    let usage = f(&mem["usage"]);
    let cache = ["total_inactive_file", "inactive_file"]
        .iter()
        .map(|k| f(&mem["stats"][k]))
        .find(|v| *v > 0.0 && *v < usage)
        .unwrap_or(0.0);
    let used = usage - cache;
    let limit = f(&mem["limit"]);
    let mem_pct = if limit > 0.0 {
        used / limit * 100.0
    } else {
        0.0
    };
    let (mut rx, mut tx) = (0.0, 0.0);
    if let Some(nets) = s["networks"].as_object() {
        for n in nets.values() {
            rx += f(&n["rx_bytes"]);
            tx += f(&n["tx_bytes"]);
        }
    }
    let (mut rd, mut wr) = (0.0, 0.0);
    for e in s["blkio_stats"]["io_service_bytes_recursive"]
        .as_array()
        .into_iter()
        .flatten()
    {
        match e["op"]
            .as_str()
            .unwrap_or_default()
            .to_ascii_lowercase()
            .as_str()
        {
            "read" => rd += f(&e["value"]),
            "write" => wr += f(&e["value"]),
            _ => {}
        }
    }
    let hs = format::human_size;
    vec![
        if trunc { short_id(id) } else { id.to_string() },
        name.trim_start_matches('/').to_string(),
        format!("{cpu_pct:.2}%"),
        format!(
            "{} / {}",
            format::bytes_size(used),
            format::bytes_size(limit)
        ),
        format!("{mem_pct:.2}%"),
        format!("{} / {}", hs(rx), hs(tx)),
        format!("{} / {}", hs(rd), hs(wr)),
        s["pids_stats"]["current"].as_u64().unwrap_or(0).to_string(),
    ]
}

const STATS_DEFAULT: &str =
    "table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}";

/// Renders stats rows (from `stats_row`) through a `--format` template (docker's default table without one).
fn stats_table(rows: &[Vec<String>], template: &Template) -> Result<String> {
    const FIELDS: [&str; 8] = [
        "ID", "Name", "CPUPerc", "MemUsage", "MemPerc", "NetIO", "BlockIO", "PIDs",
    ];
    let items: Vec<Value> = rows
        .iter()
        .map(|r| {
            let mut m: serde_json::Map<String, Value> = FIELDS
                .iter()
                .zip(r)
                .map(|(k, v)| (k.to_string(), json!(v)))
                .collect();
            m.insert("Container".into(), json!(r[0]));
            Value::Object(m)
        })
        .collect();
    let headers = json!({
        "ID": "CONTAINER ID", "Container": "CONTAINER", "Name": "NAME", "CPUPerc": "CPU %",
        "MemUsage": "MEM USAGE / LIMIT", "MemPerc": "MEM %", "NetIO": "NET I/O", "BlockIO": "BLOCK I/O", "PIDs": "PIDS",
    });
    template.render_list(&items, &headers)
}

fn stats_targets(client: &Client, a: &StatsArgs) -> Result<Vec<String>> {
    if !a.containers.is_empty() {
        return Ok(a.containers.clone());
    }
    let list: Vec<ContainerSummary> = client.json(
        "GET",
        &format!(
            "/containers/json{}",
            Query::new().flag("all", a.all).as_str()
        ),
        Body::Empty,
    )?;
    Ok(list.into_iter().filter_map(|c| c.id).collect())
}

pub fn stats(client: &Client, a: StatsArgs) -> Result<i32> {
    let format = a
        .format
        .as_deref()
        .filter(|f| *f != "table")
        .unwrap_or(STATS_DEFAULT);
    let template = Template::parse(format)?;
    let targets = stats_targets(client, &a)?;
    let trunc = !a.no_trunc;
    if a.no_stream {
        let mut rows = Vec::new();
        for t in &targets {
            let s: Value = client.json("GET", &cpath(t, "/stats?stream=0"), Body::Empty)?;
            let (id, name) = (
                s["id"].as_str().unwrap_or(t),
                s["name"].as_str().unwrap_or(t),
            );
            rows.push(stats_row(id, name, &s, trunc));
        }
        print!("{}", stats_table(&rows, &template)?);
        return Ok(0);
    }
    stream_stats(client, &targets, trunc, &template)
}

/// Streams stats of every target, redrawing the table (screen cleared) as samples arrive.
fn stream_stats(
    client: &Client,
    targets: &[String],
    trunc: bool,
    template: &Template,
) -> Result<i32> {
    use std::io::BufRead;
    use std::sync::{mpsc, Arc};
    let (tx, rx) = mpsc::channel::<(usize, Vec<String>)>();
    let client = Arc::new(client.clone());
    for (i, t) in targets.iter().enumerate() {
        let (tx, client, t) = (tx.clone(), client.clone(), t.clone());
        std::thread::spawn(move || -> Result<()> {
            let resp = client.call("GET", &cpath(&t, "/stats?stream=1"), Body::Empty)?;
            for line in resp.lines().lines() {
                let s: Value = serde_json::from_str(&line?)?;
                let row = stats_row(
                    s["id"].as_str().unwrap_or(&t),
                    s["name"].as_str().unwrap_or(&t),
                    &s,
                    trunc,
                );
                if tx.send((i, row)).is_err() {
                    break;
                }
            }
            Ok(())
        });
    }
    drop(tx);
    let mut rows: Vec<Option<Vec<String>>> = vec![None; targets.len()];
    let mut out = io::stdout();
    while let Ok((i, row)) = rx.recv() {
        rows[i] = Some(row);
        let shown: Vec<Vec<String>> = rows.iter().flatten().cloned().collect();
        write!(out, "\x1b[2J\x1b[H{}", stats_table(&shown, template)?)?;
        out.flush()?;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard_stubs::models::PortTypeEnum;

    #[test]
    fn ps_table_like_docker() {
        let now = 1_700_000_100;
        let c: ContainerSummary = serde_json::from_value(json!({
            "Id": "0123456789abcdef0123", "Names": ["/web"], "Image": "busybox", "Command": "sh -c 'sleep 100000000'",
            "Created": now - 5, "State": "running", "Status": "Up 3 seconds",
            "Ports": [{"PrivatePort": 80, "PublicPort": 8080, "IP": "0.0.0.0", "Type": "tcp"}],
        }))
        .unwrap();
        let items = vec![ps_context(&c, true, now)];
        let out = Template::parse(PS_DEFAULT)
            .unwrap()
            .render_list(&items, &ps_headers())
            .unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0],
            "CONTAINER ID   IMAGE     COMMAND                  CREATED         STATUS         PORTS                  NAMES"
        );
        assert_eq!(
            lines[1],
            "0123456789ab   busybox   \"sh -c 'sleep 100000…\"   5 seconds ago   Up 3 seconds   0.0.0.0:8080->80/tcp   web"
        );
    }

    #[test]
    fn ports_formatting() {
        let p = |private, public, typ| Port {
            private_port: private,
            public_port: public,
            ip: public.map(|_| "0.0.0.0".to_string()),
            typ: Some(typ),
        };
        assert_eq!(
            ports_column(&[
                p(80, Some(8080), PortTypeEnum::TCP),
                p(53, None, PortTypeEnum::UDP)
            ]),
            "0.0.0.0:8080->80/tcp, 53/udp"
        );
    }

    #[test]
    fn stats_math() {
        let s = json!({
            "cpu_stats": {"cpu_usage": {"total_usage": 300}, "system_cpu_usage": 2000, "online_cpus": 2},
            "precpu_stats": {"cpu_usage": {"total_usage": 100}, "system_cpu_usage": 1000},
            "memory_stats": {"usage": 2097152, "limit": 8388608, "stats": {"total_inactive_file": 1048576}},
            "networks": {"eth0": {"rx_bytes": 1500, "tx_bytes": 0}},
            "blkio_stats": {"io_service_bytes_recursive": [{"op": "Read", "value": 4096}]},
            "pids_stats": {"current": 3},
        });
        let row = stats_row("0123456789abcdef", "/c", &s, true);
        let table = stats_table(
            std::slice::from_ref(&row),
            &Template::parse(STATS_DEFAULT).unwrap(),
        )
        .unwrap();
        assert!(
            table.starts_with(
                "CONTAINER ID   NAME      CPU %     MEM USAGE / LIMIT   MEM %     NET I/O"
            ),
            "{table}"
        );
        let custom = stats_table(
            std::slice::from_ref(&row),
            &Template::parse("{{.Name}}: {{.CPUPerc}}").unwrap(),
        )
        .unwrap();
        assert_eq!(custom, "c: 40.00%\n");
        assert_eq!(
            row,
            vec![
                "0123456789ab",
                "c",
                "40.00%",
                "1MiB / 8MiB",
                "12.50%",
                "1.5kB / 0B",
                "4.1kB / 0B",
                "3"
            ]
        );
    }
}
