//! `docker commit --change` / `docker import --change`: Dockerfile instructions applied to
//! an image's container config. Only the instructions Docker accepts there are allowed:
//! CMD, ENTRYPOINT, ENV, EXPOSE, HEALTHCHECK, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME,
//! WORKDIR.

use std::time::Duration;

use berth_image::config::{ContainerConfig, Healthcheck};

use crate::error::{Error, Result};

fn invalid(msg: impl Into<String>) -> Error {
    Error::InvalidParameter(msg.into())
}

/// Applies `changes` (each may hold several lines; `\` continues a line, `#` starts a
/// comment line) to `config`, in order.
pub fn apply_changes(config: &mut ContainerConfig, changes: &[String]) -> Result<()> {
    let mut cmd_set = false;
    for line in logical_lines(changes) {
        let (word, rest) = match line.split_once(char::is_whitespace) {
            Some((w, r)) => (w, r.trim()),
            None => (line.as_str(), ""),
        };
        let instruction = word.to_ascii_lowercase();
        apply(config, &instruction, rest, &mut cmd_set)?;
    }
    Ok(())
}

fn logical_lines(changes: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in changes.iter().flat_map(|c| c.lines()) {
        let trimmed = line.trim();
        if current.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(head) => {
                current.push_str(head);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                out.push(std::mem::take(&mut current).trim().to_string());
            }
        }
    }
    if !current.trim().is_empty() {
        out.push(current.trim().to_string());
    }
    out
}

fn apply(
    config: &mut ContainerConfig,
    instruction: &str,
    rest: &str,
    cmd_set: &mut bool,
) -> Result<()> {
    let need_args = |what: &str| -> Result<()> {
        if rest.is_empty() {
            return Err(invalid(format!(
                "{} requires at least one argument",
                what.to_ascii_uppercase()
            )));
        }
        Ok(())
    };
    match instruction {
        "cmd" => {
            config.cmd = Some(command(config, rest));
            *cmd_set = true;
        }
        "entrypoint" => {
            config.entrypoint = Some(command(config, rest));
            // As in a Dockerfile: a new entrypoint drops the inherited CMD.
            if !*cmd_set {
                config.cmd = None;
            }
        }
        "env" => {
            need_args("env")?;
            for (key, value) in name_values(rest, "ENV")? {
                let entry = format!("{key}={value}");
                match config
                    .env
                    .iter_mut()
                    .find(|e| e.split('=').next() == Some(key.as_str()))
                {
                    Some(existing) => *existing = entry,
                    None => config.env.push(entry),
                }
            }
        }
        "label" => {
            need_args("label")?;
            for (key, value) in name_values(rest, "LABEL")? {
                config.labels.insert(key, value);
            }
        }
        "expose" => {
            need_args("expose")?;
            for port in split_words(rest)? {
                for p in expand_port(&port)? {
                    config.exposed_ports.insert(p);
                }
            }
        }
        "user" => {
            need_args("user")?;
            config.user = rest.to_string();
        }
        "workdir" => {
            need_args("workdir")?;
            let base = if config.working_dir.is_empty() {
                "/"
            } else {
                config.working_dir.as_str()
            };
            config.working_dir = crate::archive::resolve::lexical(base, rest.as_bytes());
        }
        "volume" => {
            need_args("volume")?;
            let list = json_array(rest).map_or_else(|| split_words(rest), Ok)?;
            for v in list.into_iter().filter(|v| !v.is_empty()) {
                config.volumes.insert(v);
            }
        }
        "stopsignal" => {
            need_args("stopsignal")?;
            config.stop_signal = rest.to_string();
        }
        "onbuild" => {
            need_args("onbuild")?;
            let inner = rest
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_ascii_uppercase();
            if matches!(inner.as_str(), "ONBUILD" | "FROM" | "MAINTAINER") {
                return Err(invalid(format!(
                    "{inner} isn't allowed as an ONBUILD trigger"
                )));
            }
            config.on_build.push(rest.to_string());
        }
        "healthcheck" => config.healthcheck = Some(healthcheck(rest)?),
        other => return Err(invalid(format!("{other} is not a valid change command"))),
    }
    Ok(())
}

/// A JSON array of strings (exec form), or `None` for anything else.
fn json_array(rest: &str) -> Option<Vec<String>> {
    if !rest.starts_with('[') {
        return None;
    }
    serde_json::from_str(rest).ok()
}

/// CMD/ENTRYPOINT: exec form, or shell form run by the image's shell.
fn command(config: &ContainerConfig, rest: &str) -> Vec<String> {
    if let Some(list) = json_array(rest) {
        return list;
    }
    let mut shell = config
        .shell
        .clone()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| vec!["/bin/sh".to_string(), "-c".to_string()]);
    shell.push(rest.to_string());
    shell
}

/// Words as a Dockerfile splits them: whitespace outside quotes separates, quotes group,
/// a backslash escapes the next character (outside single quotes).
pub fn split_words(s: &str) -> Result<Vec<String>> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('"'), '\\') | (None, '\\') => {
                if let Some(next) = chars.next() {
                    word.push(next);
                }
                in_word = true;
            }
            (Some(_), c) => word.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err(invalid(format!("unmatched quote in {s:?}")));
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// ENV and LABEL arguments: `k=v k2="v 2"`, or the legacy `KEY value with spaces`.
fn name_values(rest: &str, what: &str) -> Result<Vec<(String, String)>> {
    let words = split_words(rest)?;
    let first_has_eq = words.first().is_some_and(|w| w.contains('='));
    if !first_has_eq {
        let (key, value) = rest
            .split_once(char::is_whitespace)
            .ok_or_else(|| invalid(format!("{what} must have two arguments")))?;
        let value = split_words(value.trim())?.join(" ");
        return Ok(vec![(key.to_string(), value)]);
    }
    words
        .into_iter()
        .map(|w| match w.split_once('=') {
            Some(("", _)) => Err(invalid(format!("{what} names can not be blank"))),
            Some((k, v)) => Ok((k.to_string(), v.to_string())),
            None => Err(invalid(format!(
                "Syntax error - can't find = in {w:?}. Must be of the form: name=value"
            ))),
        })
        .collect()
}

/// `80` → `80/tcp`, `53/udp` stays, `8000-8002` → each port.
fn expand_port(spec: &str) -> Result<Vec<String>> {
    let (ports, proto) = spec.split_once('/').unwrap_or((spec, "tcp"));
    let bad = || invalid(format!("invalid containerPort: {spec}"));
    let (lo, hi) = match ports.split_once('-') {
        Some((a, b)) => (
            a.parse::<u16>().map_err(|_| bad())?,
            b.parse::<u16>().map_err(|_| bad())?,
        ),
        None => {
            let p = ports.parse::<u16>().map_err(|_| bad())?;
            (p, p)
        }
    };
    if hi < lo {
        return Err(bad());
    }
    Ok((lo..=hi)
        .map(|p| format!("{p}/{}", proto.to_ascii_lowercase()))
        .collect())
}

/// `HEALTHCHECK NONE` or `HEALTHCHECK [--interval=D] [--timeout=D] [--start-period=D]
/// [--start-interval=D] [--retries=N] CMD ...`.
fn healthcheck(rest: &str) -> Result<Healthcheck> {
    if rest.trim().eq_ignore_ascii_case("none") {
        return Ok(Healthcheck {
            test: vec!["NONE".to_string()],
            ..Healthcheck::default()
        });
    }
    let mut check = Healthcheck::default();
    let mut rest = rest.trim();
    while let Some(flag) = rest.strip_prefix("--") {
        let (flag, after) = flag.split_once(char::is_whitespace).unwrap_or((flag, ""));
        let (name, value) = flag
            .split_once('=')
            .ok_or_else(|| invalid(format!("HEALTHCHECK flag --{flag} needs a value")))?;
        let nanos = |v: &str| -> Result<u64> {
            humantime::parse_duration(v)
                .map(|d: Duration| d.as_nanos() as u64)
                .map_err(|e| invalid(format!("HEALTHCHECK --{name}: {e}")))
        };
        match name {
            "interval" => check.interval = nanos(value)?,
            "timeout" => check.timeout = nanos(value)?,
            "start-period" => check.start_period = nanos(value)?,
            "start-interval" => check.start_interval = nanos(value)?,
            "retries" => {
                check.retries = value.parse().map_err(|_| {
                    invalid(format!("HEALTHCHECK --retries: invalid value {value:?}"))
                })?
            }
            other => return Err(invalid(format!("Unknown flag: {other}"))),
        }
        rest = after.trim_start();
    }
    let (word, cmd) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    if !word.eq_ignore_ascii_case("cmd") || cmd.trim().is_empty() {
        return Err(invalid("Unknown type in HEALTHCHECK (try CMD)"));
    }
    check.test = match json_array(cmd.trim()) {
        Some(list) => std::iter::once("CMD".to_string()).chain(list).collect(),
        None => vec!["CMD-SHELL".to_string(), cmd.trim().to_string()],
    };
    Ok(check)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn changed(lines: &[&str]) -> ContainerConfig {
        let mut c = ContainerConfig {
            cmd: Some(vec!["sh".into()]),
            env: vec!["PATH=/bin".into()],
            ..ContainerConfig::default()
        };
        let lines: Vec<String> = lines.iter().map(|s| s.to_string()).collect();
        apply_changes(&mut c, &lines).unwrap();
        c
    }

    #[test]
    fn cmd_exec_and_shell_forms() {
        assert_eq!(
            changed(&[r#"CMD ["echo","x"]"#]).cmd.unwrap(),
            vec!["echo", "x"]
        );
        assert_eq!(
            changed(&["CMD echo hi there"]).cmd.unwrap(),
            vec!["/bin/sh", "-c", "echo hi there"]
        );
    }

    #[test]
    fn entrypoint_drops_inherited_cmd_but_not_a_new_one() {
        let c = changed(&[r#"ENTRYPOINT ["/app"]"#]);
        assert_eq!(c.entrypoint.unwrap(), vec!["/app"]);
        assert_eq!(c.cmd, None);
        let c = changed(&[r#"CMD ["a"]"#, r#"ENTRYPOINT ["/app"]"#]);
        assert_eq!(c.cmd.unwrap(), vec!["a"]);
    }

    #[test]
    fn env_label_expose_volume_workdir_user() {
        let c = changed(&[
            "ENV PATH=/usr/bin A=\"b c\"",
            "ENV LEGACY some value",
            "LABEL x=y \"with space\"=z",
            "EXPOSE 80 53/udp 8000-8001",
            "VOLUME [\"/data\"]",
            "VOLUME /a /b",
            "WORKDIR /srv\nWORKDIR app",
            "USER nobody:nogroup",
            "STOPSIGNAL SIGINT",
        ]);
        assert_eq!(c.env, vec!["PATH=/usr/bin", "A=b c", "LEGACY=some value"]);
        assert_eq!(c.labels.get("x").unwrap(), "y");
        assert_eq!(c.labels.get("with space").unwrap(), "z");
        let ports: Vec<_> = c.exposed_ports.iter().cloned().collect();
        assert_eq!(ports, vec!["53/udp", "80/tcp", "8000/tcp", "8001/tcp"]);
        let vols: Vec<_> = c.volumes.iter().cloned().collect();
        assert_eq!(vols, vec!["/a", "/b", "/data"]);
        assert_eq!(c.working_dir, "/srv/app");
        assert_eq!(c.user, "nobody:nogroup");
        assert_eq!(c.stop_signal, "SIGINT");
    }

    #[test]
    fn other_instructions_are_refused() {
        let mut c = ContainerConfig::default();
        let e = apply_changes(&mut c, &["RUN rm -rf /".to_string()]).unwrap_err();
        assert_eq!(e.to_string(), "run is not a valid change command");
        assert_eq!(e.status(), 400);
    }

    #[test]
    fn healthcheck_forms() {
        let c = changed(&["HEALTHCHECK --interval=5s --retries=2 CMD curl -f http://x/"]);
        let h = c.healthcheck.unwrap();
        assert_eq!(h.test, vec!["CMD-SHELL", "curl -f http://x/"]);
        assert_eq!(h.interval, 5_000_000_000);
        assert_eq!(h.retries, 2);
        assert_eq!(
            changed(&["HEALTHCHECK NONE"]).healthcheck.unwrap().test,
            vec!["NONE"]
        );
    }
}
