//! inspect, info, version, events and volume verbs.

use crate::cli::{EventsArgs, FormatOnly, InspectArgs, PruneArgs, VolumeCmd};
use crate::format::{self, bytes_size, Template};
use crate::http::{api_status, encode, encode_path, Body, Client, Query, API_VERSION};
use crate::parse;
use anyhow::{bail, Result};
use serde_json::{json, Value};
use std::io::{BufRead, Write};

/// Pretty-prints raw JSON with 4-space indentation (Go's `json.MarshalIndent(v, "", "    ")`), keeping the
/// daemon's key order.
pub fn indent_json(raw: &[u8]) -> String {
    let s = String::from_utf8_lossy(raw);
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(raw.len() * 2);
    let (mut depth, mut in_str, mut esc) = (0usize, false, false);
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        out.push_str(&"    ".repeat(depth));
    };
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        if in_str {
            out.push(c);
            match (esc, c) {
                (true, _) => esc = false,
                (false, '\\') => esc = true,
                (false, '"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => {
                in_str = true;
                out.push(c);
            }
            '{' | '[' => {
                out.push(c);
                let close = if c == '{' { '}' } else { ']' };
                let next = chars[i..]
                    .iter()
                    .position(|c| !c.is_whitespace())
                    .map(|p| i + p);
                if let Some(n) = next.filter(|n| chars[*n] == close) {
                    out.push(close);
                    i = n + 1;
                } else {
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_whitespace() => {}
            c => out.push(c),
        }
    }
    out
}

/// Prints objects as docker's inspect does: a JSON array, or one template rendering per object.
fn print_objects(raws: &[Vec<u8>], format: Option<&str>) -> Result<()> {
    match format {
        Some(f) => {
            let t = Template::parse(f)?;
            for raw in raws {
                let v: Value = serde_json::from_slice(raw)?;
                println!("{}", t.render(&v)?);
            }
        }
        None => {
            let mut all = b"[".to_vec();
            for (i, raw) in raws.iter().enumerate() {
                if i > 0 {
                    all.push(b',');
                }
                all.extend_from_slice(raw);
            }
            all.push(b']');
            println!("{}", indent_json(&all));
        }
    }
    Ok(())
}

fn inspect_path(kind: &str, name: &str, size: bool) -> String {
    match kind {
        "container" => format!(
            "/containers/{}/json{}",
            encode(name),
            if size { "?size=1" } else { "" }
        ),
        "image" => format!("/images/{}/json", encode_path(name)),
        "volume" => format!("/volumes/{}", encode(name)),
        _ => format!("/networks/{}", encode(name)),
    }
}

pub fn inspect(client: &Client, a: InspectArgs) -> Result<i32> {
    let kinds: Vec<&str> = match a.kind.as_deref() {
        None => vec!["container", "image", "network", "volume"],
        Some(k @ ("container" | "image" | "volume" | "network")) => vec![k],
        Some(other) => bail!("\"{other}\" is not a valid value for --type"),
    };
    let mut found = Vec::new();
    let mut errors = Vec::new();
    for name in &a.names {
        let mut hit = None;
        let mut not_found = None;
        for kind in &kinds {
            match client.call("GET", &inspect_path(kind, name, a.size), Body::Empty) {
                Ok(resp) => {
                    hit = Some(resp.bytes()?);
                    break;
                }
                Err(e) if api_status(&e) == Some(404) => not_found = Some(e),
                Err(e) => return Err(e),
            }
        }
        match (hit, not_found) {
            (Some(raw), _) => found.push(raw),
            // One kind asked for: the daemon's own words, as docker prints them.
            (None, Some(e)) if kinds.len() == 1 => errors.push(e.to_string()),
            (None, _) => errors.push(format!("Error: No such object: {name}")),
        }
    }
    print_objects(&found, a.format.as_deref())?;
    for e in &errors {
        eprintln!("{e}");
    }
    Ok(i32::from(!errors.is_empty()))
}

pub fn info(client: &Client, a: FormatOnly) -> Result<i32> {
    let v: Value = client.json("GET", "/info", Body::Empty)?;
    if let Some(f) = &a.format {
        println!("{}", Template::parse(f)?.render(&v)?);
        return Ok(0);
    }
    let s = |k: &str| format::go_print(&v[k]).replace("<no value>", "");
    let mut out = String::new();
    out.push_str(&format!(
        "Client:\n Version:    {}\n Context:    default\n Debug Mode: false\n\nServer:\n",
        env!("CARGO_PKG_VERSION")
    ));
    out.push_str(&format!(
        " Containers: {}\n  Running: {}\n  Paused: {}\n  Stopped: {}\n Images: {}\n",
        s("Containers"),
        s("ContainersRunning"),
        s("ContainersPaused"),
        s("ContainersStopped"),
        s("Images")
    ));
    let fields = [
        ("Server Version", "ServerVersion"),
        ("Storage Driver", "Driver"),
        ("Logging Driver", "LoggingDriver"),
        ("Cgroup Driver", "CgroupDriver"),
        ("Cgroup Version", "CgroupVersion"),
        ("Default Runtime", "DefaultRuntime"),
        ("Init Binary", "InitBinary"),
        ("Kernel Version", "KernelVersion"),
        ("Operating System", "OperatingSystem"),
        ("OSType", "OSType"),
        ("Architecture", "Architecture"),
        ("CPUs", "NCPU"),
    ];
    for (label, key) in fields {
        if !v[key].is_null() {
            out.push_str(&format!(" {label}: {}\n", s(key)));
        }
    }
    if let Some(mem) = v["MemTotal"].as_f64() {
        out.push_str(&format!(" Total Memory: {}\n", bytes_size(mem)));
    }
    for (label, key) in [
        ("Name", "Name"),
        ("ID", "ID"),
        ("Docker Root Dir", "DockerRootDir"),
    ] {
        if !v[key].is_null() {
            out.push_str(&format!(" {label}: {}\n", s(key)));
        }
    }
    out.push_str(&format!(
        " Debug Mode: {}\n",
        v["Debug"].as_bool().unwrap_or(false)
    ));
    print!("{out}");
    Ok(0)
}

fn client_version() -> Value {
    json!({
        "Platform": {"Name": ""},
        "Version": env!("CARGO_PKG_VERSION"),
        "ApiVersion": API_VERSION,
        "DefaultAPIVersion": API_VERSION,
        "GitCommit": "",
        "GoVersion": "",
        "Os": std::env::consts::OS,
        "Arch": go_arch(),
        "BuildTime": "",
        "Context": "default",
    })
}

fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

pub fn version(client: &Client, a: FormatOnly) -> Result<i32> {
    let server = client.json::<Value>("GET", "/version", Body::Empty);
    let c = client_version();
    if let Some(f) = &a.format {
        let v = json!({"Client": c, "Server": server.as_ref().ok()});
        println!("{}", Template::parse(f)?.render(&v)?);
        return server.map(|_| 0);
    }
    println!("Client:");
    println!(
        " Version:           {}",
        c["Version"].as_str().unwrap_or_default()
    );
    println!(
        " API version:       {}",
        c["ApiVersion"].as_str().unwrap_or_default()
    );
    println!(
        " OS/Arch:           {}/{}",
        c["Os"].as_str().unwrap_or_default(),
        c["Arch"].as_str().unwrap_or_default()
    );
    println!(" Context:           default");
    let s = server?;
    let g = |k: &str| s[k].as_str().unwrap_or_default().to_string();
    println!();
    let platform = s["Platform"]["Name"].as_str().filter(|n| !n.is_empty());
    println!(
        "Server:{}",
        platform.map(|n| format!(" {n}")).unwrap_or_default()
    );
    println!(" Engine:");
    println!("  Version:          {}", g("Version"));
    println!(
        "  API version:      {} (minimum version {})",
        g("ApiVersion"),
        g("MinAPIVersion")
    );
    if !g("GitCommit").is_empty() {
        println!("  Git commit:       {}", g("GitCommit"));
    }
    if !g("BuildTime").is_empty() {
        println!("  Built:            {}", g("BuildTime"));
    }
    println!("  OS/Arch:          {}/{}", g("Os"), g("Arch"));
    println!(
        "  Experimental:     {}",
        s["Experimental"].as_bool().unwrap_or(false)
    );
    Ok(0)
}

/// An event as docker prints it: "2024-01-02T03:04:05.123456789Z container start <id> (image=busybox, name=x)".
pub fn event_line(e: &Value) -> String {
    let nanos = e["timeNano"]
        .as_i64()
        .unwrap_or_else(|| e["time"].as_i64().unwrap_or(0) * 1_000_000_000);
    let secs = nanos.div_euclid(1_000_000_000);
    let frac = nanos.rem_euclid(1_000_000_000);
    let stamp = format::rfc3339(secs).replace('Z', &format!(".{frac:09}Z"));
    let kind = e["Type"].as_str().unwrap_or_default();
    let action = e["Action"].as_str().unwrap_or_default();
    let id = e["Actor"]["ID"].as_str().unwrap_or_default();
    let mut attrs: Vec<(String, String)> = e["Actor"]["Attributes"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), format::go_print(v)))
                .collect()
        })
        .unwrap_or_default();
    attrs.sort();
    let attrs = attrs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ");
    if attrs.is_empty() {
        format!("{stamp} {kind} {action} {id}")
    } else {
        format!("{stamp} {kind} {action} {id} ({attrs})")
    }
}

pub fn events(client: &Client, a: EventsArgs) -> Result<i32> {
    let now = format::now_unix();
    let q = Query::new()
        .opt(
            "since",
            a.since.as_deref().map(|s| parse::timestamp_arg(s, now)),
        )
        .opt(
            "until",
            a.until.as_deref().map(|s| parse::timestamp_arg(s, now)),
        )
        .opt("filters", parse::filters_json(&a.filter)?);
    let template = a.format.as_deref().map(Template::parse).transpose()?;
    let resp = client.call("GET", &format!("/events{}", q.as_str()), Body::Empty)?;
    let mut out = std::io::stdout();
    for line in resp.lines().lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let e: Value = serde_json::from_str(&line)?;
        let text = match &template {
            Some(t) => t.render(&e)?,
            None => event_line(&e),
        };
        writeln!(out, "{text}")?;
        out.flush()?;
    }
    Ok(0)
}

pub fn volume(client: &Client, cmd: VolumeCmd) -> Result<i32> {
    match cmd {
        VolumeCmd::Create {
            driver,
            opt,
            label,
            name,
        } => {
            let body = json!({
                "Name": name.unwrap_or_default(),
                "Driver": driver,
                "DriverOpts": parse::labels(&opt),
                "Labels": parse::labels(&label),
            });
            let v: Value = client.json("POST", "/volumes/create", Body::json(&body)?)?;
            println!("{}", v["Name"].as_str().unwrap_or_default());
            Ok(0)
        }
        VolumeCmd::Ls {
            quiet,
            filter,
            format,
        } => {
            let q = Query::new().opt("filters", parse::filters_json(&filter)?);
            let v: Value = client.json("GET", &format!("/volumes{}", q.as_str()), Body::Empty)?;
            let mut vols = v["Volumes"].as_array().cloned().unwrap_or_default();
            vols.sort_by_key(|v| v["Name"].as_str().unwrap_or_default().to_string());
            if quiet && format.is_none() {
                for vol in &vols {
                    println!("{}", vol["Name"].as_str().unwrap_or_default());
                }
                return Ok(0);
            }
            let f = format
                .filter(|f| f != "table")
                .unwrap_or_else(|| "table {{.Driver}}\t{{.Name}}".into());
            let headers = json!({"Driver": "DRIVER", "Name": "VOLUME NAME", "Mountpoint": "MOUNTPOINT", "Scope": "SCOPE"});
            print!("{}", Template::parse(&f)?.render_list(&vols, &headers)?);
            Ok(0)
        }
        VolumeCmd::Inspect { format, names } => inspect(
            client,
            InspectArgs {
                format,
                kind: Some("volume".into()),
                size: false,
                names,
            },
        ),
        VolumeCmd::Rm { force, names } => crate::for_each(&names, |n| {
            let q = Query::new().flag("force", force);
            client.call(
                "DELETE",
                &format!("/volumes/{}{}", encode(n), q.as_str()),
                Body::Empty,
            )?;
            Ok(())
        }),
        VolumeCmd::Prune(a) => volume_prune(client, a),
    }
}

fn volume_prune(client: &Client, a: PruneArgs) -> Result<i32> {
    let warning = if a.all {
        "WARNING! This will remove all local volumes not used by at least one container."
    } else {
        "WARNING! This will remove anonymous local volumes not used by at least one container."
    };
    if !a.force && !crate::confirm(warning) {
        return Ok(0);
    }
    let mut filters = a.filter.clone();
    if a.all {
        filters.push("all=true".into());
    }
    let q = Query::new().opt("filters", parse::filters_json(&filters)?);
    let v: Value = client.json(
        "POST",
        &format!("/volumes/prune{}", q.as_str()),
        Body::Empty,
    )?;
    format::print_pruned("Deleted Volumes:", &v["VolumesDeleted"]);
    format::print_reclaimed(&v);
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indent_like_go() {
        let raw = br#"[{"Id":"a","Args":[],"Config":{"Env":["A=1","B={x}"]},"E":{}}]"#;
        assert_eq!(
            indent_json(raw),
            "[\n    {\n        \"Id\": \"a\",\n        \"Args\": [],\n        \"Config\": {\n            \"Env\": [\n                \"A=1\",\n                \"B={x}\"\n            ]\n        },\n        \"E\": {}\n    }\n]"
        );
        assert_eq!(indent_json(b"[]"), "[]");
    }

    #[test]
    fn event_text() {
        let e = json!({"Type": "container", "Action": "start", "Actor": {"ID": "abc", "Attributes": {"name": "x", "image": "busybox"}}, "time": 1700000000, "timeNano": 1700000000123456789i64});
        assert_eq!(
            event_line(&e),
            "2023-11-14T22:13:20.123456789Z container start abc (image=busybox, name=x)"
        );
    }
}
