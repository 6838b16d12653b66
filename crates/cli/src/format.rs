//! Output formatting like docker's: human sizes and durations, tab-aligned tables, and a small `--format` template
//! engine (`{{.A.B}}`, `{{json .X}}`, `{{index .M "k"}}`, `{{join .L ","}}`, `{{upper .X}}`, `{{lower .X}}`,
//! literal text, `table` prefix).

use anyhow::{bail, Result};
use serde_json::Value;
use std::time::{SystemTime, UNIX_EPOCH};

const DECIMAL_UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
const BINARY_UNITS: [&str; 9] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"];

/// Go's `%.{p}g` for non-negative values below the unit base: `p` significant digits, trailing zeros dropped.
fn go_g(v: f64, p: i32) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let int_digits = (v.abs().log10().floor() as i32 + 1).max(1);
    let decimals = (p - int_digits).max(0) as usize;
    let mut s = format!("{v:.decimals$}");
    if s.contains('.') {
        s = s.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    s
}

fn custom_size(mut size: f64, base: f64, units: &[&str], precision: i32) -> String {
    let mut i = 0;
    while size >= base && i < units.len() - 1 {
        size /= base;
        i += 1;
    }
    format!("{}{}", go_g(size, precision), units[i])
}

/// docker's `units.HumanSizeWithPrecision(size, 3)`: decimal units, "4.26MB".
pub fn human_size(size: f64) -> String {
    custom_size(size, 1000.0, &DECIMAL_UNITS, 3)
}

/// docker's `units.BytesSize`: binary units, "1.5MiB".
pub fn bytes_size(size: f64) -> String {
    custom_size(size, 1024.0, &BINARY_UNITS, 4)
}

/// docker's `units.HumanDuration`.
pub fn human_duration(secs: i64) -> String {
    let hours = ((secs as f64) / 3600.0 + 0.5) as i64;
    match secs {
        s if s < 1 => "Less than a second".into(),
        1 => "1 second".into(),
        s if s < 60 => format!("{s} seconds"),
        s if s / 60 == 1 => "About a minute".into(),
        s if s / 60 < 60 => format!("{} minutes", s / 60),
        _ if hours == 1 => "About an hour".into(),
        _ if hours < 48 => format!("{hours} hours"),
        _ if hours < 24 * 7 * 2 => format!("{} days", hours / 24),
        _ if hours < 24 * 30 * 2 => format!("{} weeks", hours / 24 / 7),
        _ if hours < 24 * 365 * 2 => format!("{} months", hours / 24 / 30),
        s => format!("{} years", s / 3600 / 24 / 365),
    }
}

pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Days since 1970-01-01 → (year, month, day) (Howard Hinnant's civil_from_days).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Go's `time.Time.String()` in UTC: "2024-01-02 03:04:05 +0000 UTC".
pub fn go_time(unix: i64) -> String {
    let (y, mo, d) = civil_from_days(unix.div_euclid(86_400));
    let s = unix.rem_euclid(86_400);
    format!(
        "{y:04}-{mo:02}-{d:02} {:02}:{:02}:{:02} +0000 UTC",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// RFC 3339 in UTC with seconds: "2024-01-02T03:04:05Z".
pub fn rfc3339(unix: i64) -> String {
    let (y, mo, d) = civil_from_days(unix.div_euclid(86_400));
    let s = unix.rem_euclid(86_400);
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}Z",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// Parses the date part of an RFC 3339 timestamp into unix seconds (fractions and zone offsets honoured).
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let (date, rest) = s.split_once('T')?;
    let mut dp = date.split('-');
    let y: i64 = dp.next()?.parse().ok()?;
    let m: i64 = dp.next()?.parse().ok()?;
    let d: i64 = dp.next()?.parse().ok()?;
    let hh: i64 = rest.get(0..2)?.parse().ok()?;
    let mm: i64 = rest.get(3..5)?.parse().ok()?;
    let ss: i64 = rest.get(6..8)?.parse().ok()?;
    let zone = rest[8..].trim_start_matches(|c: char| c == '.' || c.is_ascii_digit());
    let offset = match zone {
        "Z" | "" => 0,
        z => {
            let sign = if z.starts_with('-') { -1 } else { 1 };
            let h: i64 = z.get(1..3)?.parse().ok()?;
            let mi: i64 = z.get(4..6)?.parse().ok()?;
            sign * (h * 3600 + mi * 60)
        }
    };
    // days_from_civil
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss - offset)
}

/// Aligns tab-separated cells like Go's `tabwriter.NewWriter(out, 10, 1, 3, ' ', 0)` (docker's tables):
/// every cell but a line's last is padded to its column's widest cell + 3, at least 10.
pub fn tabulate(rows: &[Vec<String>]) -> String {
    tabulate_min(rows, 10)
}

/// `tabulate` with another minimum cell width (docker's `top` uses 20).
pub fn tabulate_min(rows: &[Vec<String>], min_width: usize) -> String {
    let mut widths: Vec<usize> = Vec::new();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(row.len().saturating_sub(1)) {
            let w = (cell.chars().count() + 3).max(min_width);
            if widths.len() <= i {
                widths.push(w);
            } else {
                widths[i] = widths[i].max(w);
            }
        }
    }
    let mut out = String::new();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            out.push_str(cell);
            if i + 1 < row.len() {
                out.push_str(&" ".repeat(widths[i] - cell.chars().count()));
            }
        }
        out.push('\n');
    }
    out
}

/// Splits template output lines at tabs and aligns them.
pub fn tabulate_text(text: &str) -> String {
    let rows: Vec<Vec<String>> = text
        .lines()
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect();
    tabulate(&rows)
}

/// A parsed `--format` template.
#[derive(Debug)]
pub struct Template {
    /// `table` prefix: print a header row and align columns.
    pub table: bool,
    parts: Vec<Part>,
}

#[derive(Debug)]
enum Part {
    Text(String),
    Action(Vec<Arg>),
    /// `{{range X}}body{{else}}empty{{end}}` and `{{if X}}then{{else}}otherwise{{end}}`.
    Block {
        range: bool,
        args: Vec<Arg>,
        body: Vec<Part>,
        otherwise: Vec<Part>,
    },
}

#[derive(Debug, Clone)]
enum Arg {
    Path(Vec<String>),
    Str(String),
    Word(String),
}

/// Splits a template into literal text and the trimmed insides of `{{ }}` actions.
fn tokens(body: &str) -> Result<Vec<(bool, String)>> {
    let mut out = Vec::new();
    let mut rest = body;
    while let Some(start) = rest.find("{{") {
        if start > 0 {
            out.push((false, rest[..start].to_string()));
        }
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| anyhow::anyhow!("template parsing error: unclosed action"))?;
        let inner = after[..end]
            .trim()
            .trim_start_matches('-')
            .trim_end_matches('-')
            .trim();
        out.push((true, inner.to_string()));
        rest = &after[end + 2..];
    }
    if !rest.is_empty() {
        out.push((false, rest.to_string()));
    }
    Ok(out)
}

/// Parses parts until `{{end}}`/`{{else}}` (returned as the terminator) or the end of input.
fn parse_parts(
    toks: &mut std::vec::IntoIter<(bool, String)>,
) -> Result<(Vec<Part>, Option<String>)> {
    let mut parts = Vec::new();
    while let Some((action, text)) = toks.next() {
        if !action {
            parts.push(Part::Text(text));
            continue;
        }
        if text == "end" || text == "else" {
            return Ok((parts, Some(text)));
        }
        let block = ["range ", "if "].iter().find(|k| text.starts_with(*k));
        let Some(keyword) = block else {
            parts.push(Part::Action(parse_action(&text)?));
            continue;
        };
        let args = parse_action(&text[keyword.len()..])?;
        let (body, term) = parse_parts(toks)?;
        let otherwise = match term.as_deref() {
            Some("else") => match parse_parts(toks)? {
                (o, Some(t)) if t == "end" => o,
                _ => bail!(
                    "template parsing error: unexpected EOF in {}",
                    keyword.trim()
                ),
            },
            Some(_) => Vec::new(),
            None => bail!(
                "template parsing error: unexpected EOF in {}",
                keyword.trim()
            ),
        };
        parts.push(Part::Block {
            range: *keyword == "range ",
            args,
            body,
            otherwise,
        });
    }
    Ok((parts, None))
}

/// Go template truthiness.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(m) => !m.is_empty(),
    }
}

fn render_parts(parts: &[Part], v: &Value, out: &mut String) -> Result<()> {
    for p in parts {
        match p {
            Part::Text(t) => out.push_str(t),
            Part::Action(args) => out.push_str(&eval(args, v)?),
            Part::Block {
                range,
                args,
                body,
                otherwise,
            } => {
                let value = match args.as_slice() {
                    [a @ (Arg::Path(_) | Arg::Str(_))] => arg_value(a, v)?,
                    _ => Value::String(eval(args, v)?),
                };
                let items: Vec<&Value> = match (&value, range) {
                    (Value::Array(a), true) => a.iter().collect(),
                    (Value::Object(m), true) => m.values().collect(),
                    (Value::Null, true) => Vec::new(),
                    (other, true) => {
                        bail!("template: range can't iterate over {}", go_print(other))
                    }
                    (other, false) => {
                        let branch = if truthy(other) { body } else { otherwise };
                        render_parts(branch, v, out)?;
                        continue;
                    }
                };
                if items.is_empty() {
                    render_parts(otherwise, v, out)?;
                }
                for item in items {
                    render_parts(body, item, out)?;
                }
            }
        }
    }
    Ok(())
}

impl Template {
    /// Parses `format`; `json` alone means `{{json .}}` (docker's `--format json`).
    pub fn parse(format: &str) -> Result<Template> {
        let format = if format == "json" {
            "{{json .}}"
        } else {
            format
        };
        let (table, body) = match format.strip_prefix("table") {
            Some(rest) => (true, rest.trim_start()),
            None => (false, format),
        };
        let body = body.replace("\\t", "\t").replace("\\n", "\n");
        let mut toks = tokens(&body)?.into_iter();
        let (parts, term) = parse_parts(&mut toks)?;
        if let Some(t) = term {
            bail!("template parsing error: unexpected {{{{{t}}}}}");
        }
        Ok(Template { table, parts })
    }

    /// Renders one value.
    pub fn render(&self, v: &Value) -> Result<String> {
        let mut out = String::new();
        render_parts(&self.parts, v, &mut out)?;
        Ok(out)
    }

    /// Renders a list: one line per item (with a header row and aligned columns for `table`).
    /// `headers` maps field names to column titles.
    pub fn render_list(&self, items: &[Value], headers: &Value) -> Result<String> {
        let mut text = String::new();
        if self.table {
            text.push_str(&self.render(headers)?);
            text.push('\n');
        }
        for item in items {
            text.push_str(&self.render(item)?);
            text.push('\n');
        }
        Ok(if self.table {
            tabulate_text(&text)
        } else {
            text
        })
    }
}

fn parse_action(inner: &str) -> Result<Vec<Arg>> {
    let mut args = Vec::new();
    let mut rest = inner.trim();
    while !rest.is_empty() {
        if let Some(q) = rest.strip_prefix('"') {
            let end = q.find('"').ok_or_else(|| {
                anyhow::anyhow!("template parsing error: unterminated string in {inner:?}")
            })?;
            args.push(Arg::Str(q[..end].to_string()));
            rest = q[end + 1..].trim_start();
            continue;
        }
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let word = &rest[..end];
        if let Some(path) = word.strip_prefix('.') {
            let fields = path
                .split('.')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
            args.push(Arg::Path(fields));
        } else {
            args.push(Arg::Word(word.to_string()));
        }
        rest = rest[end..].trim_start();
    }
    if args.is_empty() {
        bail!("template parsing error: empty action");
    }
    Ok(args)
}

fn lookup(v: &Value, path: &[String]) -> Value {
    let mut cur = v;
    for name in path {
        match field(cur, name) {
            Some(next) => cur = next,
            None => return Value::Null,
        }
    }
    cur.clone()
}

/// Field `name` of an object. Docker's templates also see the Go names of fields whose JSON
/// keys are spelled otherwise (`APIVersion` for `ApiVersion`, `ID` for `Id`): a capitalised
/// name (a Go field's) matches a capitalised key that differs only in case. Map keys such as
/// labels' are matched exactly.
fn field<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    let capitalised = |s: &str| s.starts_with(|c: char| c.is_ascii_uppercase());
    v.get(name).or_else(|| {
        if !capitalised(name) {
            return None;
        }
        v.as_object()?
            .iter()
            .find(|(key, _)| capitalised(key) && key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value)
    })
}

fn arg_value(arg: &Arg, v: &Value) -> Result<Value> {
    match arg {
        Arg::Path(p) => Ok(lookup(v, p)),
        Arg::Str(s) => Ok(Value::String(s.clone())),
        Arg::Word(w) => bail!("template: function {w:?} not defined or not usable as a value"),
    }
}

/// Docker's formatting contexts have methods as well as fields (`{{.Label "key"}}` on a
/// container row): a row offers method `Name` as an object under the key `Name()`, which the
/// method's one argument indexes; JSON output leaves such keys out.
const METHOD_SUFFIX: &str = "()";

fn call_method(path: &[String], arg: &Arg, v: &Value) -> Result<Option<String>> {
    let (Some((name, parent)), Arg::Str(key)) = (path.split_last(), arg) else {
        return Ok(None);
    };
    let object = lookup(v, parent);
    let Some(method) = object.get(format!("{name}{METHOD_SUFFIX}")) else {
        return Ok(None);
    };
    Ok(Some(method.get(key).map(go_print).unwrap_or_default()))
}

/// `v` without its methods' keys.
fn without_methods(v: &Value) -> Value {
    match v.as_object() {
        Some(object) => Value::Object(
            object
                .iter()
                .filter(|(key, _)| !key.ends_with(METHOD_SUFFIX))
                .map(|(key, value)| (key.clone(), value.clone()))
                .collect(),
        ),
        None => v.clone(),
    }
}

fn eval(args: &[Arg], v: &Value) -> Result<String> {
    let func = match &args[0] {
        Arg::Word(w) => w.as_str(),
        Arg::Path(path) if args.len() == 2 => match call_method(path, &args[1], v)? {
            Some(out) => return Ok(out),
            None => bail!("template: can't give argument to non-function"),
        },
        other => {
            if args.len() > 1 {
                bail!("template: can't give argument to non-function");
            }
            return Ok(go_print(&arg_value(other, v)?));
        }
    };
    let vals = args[1..]
        .iter()
        .map(|a| arg_value(a, v))
        .collect::<Result<Vec<_>>>()?;
    let need = |n: usize| -> Result<()> {
        if vals.len() != n {
            bail!(
                "template: wrong number of args for {func}: want {n} got {}",
                vals.len()
            );
        }
        Ok(())
    };
    match func {
        "json" => {
            need(1)?;
            Ok(serde_json::to_string(&without_methods(&vals[0]))?)
        }
        "upper" => {
            need(1)?;
            Ok(go_print(&vals[0]).to_uppercase())
        }
        "lower" => {
            need(1)?;
            Ok(go_print(&vals[0]).to_lowercase())
        }
        "index" => {
            need(2)?;
            let item = match (&vals[0], &vals[1]) {
                (Value::Object(m), Value::String(k)) => m.get(k).cloned().unwrap_or(Value::Null),
                (Value::Array(a), Value::String(k)) => k
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| a.get(i).cloned())
                    .unwrap_or(Value::Null),
                _ => Value::Null,
            };
            Ok(go_print(&item))
        }
        "join" => {
            need(2)?;
            let sep = go_print(&vals[1]);
            match &vals[0] {
                Value::Array(a) => Ok(a.iter().map(go_print).collect::<Vec<_>>().join(&sep)),
                other => Ok(go_print(other)),
            }
        }
        other => bail!("template: function {other:?} not defined"),
    }
}

/// Prints a value as Go's fmt `%v` does for decoded JSON.
pub fn go_print(v: &Value) -> String {
    match v {
        Value::Null => "<no value>".into(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(a) => format!("[{}]", a.iter().map(go_print).collect::<Vec<_>>().join(" ")),
        Value::Object(m) => format!(
            "map[{}]",
            m.iter()
                .map(|(k, v)| format!("{k}:{}", go_print(v)))
                .collect::<Vec<_>>()
                .join(" ")
        ),
    }
}

/// docker's ellipsis truncation: at most `max` characters, the last one "…".
pub fn ellipsis(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// The short form of an id: without "sha256:", 12 characters.
pub fn short_id(id: &str) -> String {
    let id = id.strip_prefix("sha256:").unwrap_or(id);
    id.chars().take(12).collect()
}

/// What `container prune` and `volume prune` print first: the removed ids under `title`.
pub fn print_pruned(title: &str, removed: &serde_json::Value) {
    let removed = removed.as_array().cloned().unwrap_or_default();
    if removed.is_empty() {
        return;
    }
    println!("{title}");
    for id in removed {
        println!("{}", id.as_str().unwrap_or_default());
    }
    println!();
}

/// The closing line of every prune: `SpaceReclaimed` of the response, in docker's units.
pub fn print_reclaimed(response: &serde_json::Value) {
    println!(
        "Total reclaimed space: {}",
        human_size(response["SpaceReclaimed"].as_f64().unwrap_or(0.0))
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sizes_like_docker() {
        assert_eq!(human_size(4_261_376.0), "4.26MB");
        assert_eq!(human_size(999.0), "999B");
        assert_eq!(human_size(1000.0), "1kB");
        assert_eq!(human_size(0.0), "0B");
        assert_eq!(human_size(1_500_000_000.0), "1.5GB");
        assert_eq!(bytes_size(1024.0 * 1536.0), "1.5MiB");
        assert_eq!(bytes_size(512.0), "512B");
    }

    #[test]
    fn durations_like_docker() {
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(1), "1 second");
        assert_eq!(human_duration(5), "5 seconds");
        assert_eq!(human_duration(90), "About a minute");
        assert_eq!(human_duration(150), "2 minutes");
        assert_eq!(human_duration(3600), "About an hour");
        assert_eq!(human_duration(3 * 3600), "3 hours");
        assert_eq!(human_duration(3 * 86_400), "3 days");
        assert_eq!(human_duration(20 * 86_400), "2 weeks");
        assert_eq!(human_duration(100 * 86_400), "3 months");
        assert_eq!(human_duration(800 * 86_400), "2 years");
    }

    #[test]
    fn times() {
        assert_eq!(go_time(0), "1970-01-01 00:00:00 +0000 UTC");
        assert_eq!(go_time(1_700_000_000), "2023-11-14 22:13:20 +0000 UTC");
        assert_eq!(
            parse_rfc3339("2023-11-14T22:13:20.123456789Z"),
            Some(1_700_000_000)
        );
        assert_eq!(
            parse_rfc3339("2023-11-14T23:13:20+01:00"),
            Some(1_700_000_000)
        );
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(parse_rfc3339("garbage"), None);
    }

    #[test]
    fn table_padding_like_tabwriter() {
        let rows = vec![
            vec!["CONTAINER ID".into(), "IMAGE".into(), "NAMES".into()],
            vec!["0123456789ab".into(), "busybox".into(), "x".into()],
        ];
        assert_eq!(
            tabulate(&rows),
            "CONTAINER ID   IMAGE     NAMES\n0123456789ab   busybox   x\n"
        );
    }

    #[test]
    fn templates() {
        let v = json!({"ID": "abc", "State": {"Status": "running", "Pid": 7}, "Labels": {"a": "b"}, "L": ["x", "y"]});
        let r = |f: &str| Template::parse(f).unwrap().render(&v).unwrap();
        assert_eq!(r("{{.ID}}"), "abc");
        assert_eq!(
            r("id={{ .ID }} {{.State.Status}}/{{.State.Pid}}"),
            "id=abc running/7"
        );
        assert_eq!(r("{{json .State}}"), r#"{"Pid":7,"Status":"running"}"#);
        assert_eq!(r("{{index .Labels \"a\"}}"), "b");
        assert_eq!(r("{{join .L \",\"}}"), "x,y");
        assert_eq!(r("{{.Missing}}"), "<no value>");
        // A method with an argument; JSON leaves methods out.
        let row = json!({"Labels": "a=b", "Label()": {"a": "b"}});
        let r2 = |f: &str| Template::parse(f).unwrap().render(&row).unwrap();
        assert_eq!(r2(r#"{{.Label "a"}}|{{.Label "none"}}"#), "b|");
        assert_eq!(r2("json"), r#"{"Labels":"a=b"}"#);
        assert!(Template::parse(r#"{{.Labels "a"}}"#)
            .unwrap()
            .render(&row)
            .is_err());
        // Go's field names where the JSON spells the key otherwise (`ApiVersion`, `Id`).
        assert_eq!(r("{{.Id}} {{.STATE.STATUS}}"), "abc running");
        assert_eq!(r("{{.state}} {{.Labels.A}}"), "<no value> <no value>");
        assert_eq!(r("{{upper .ID}}"), "ABC");
        assert_eq!(r("json"), serde_json::to_string(&v).unwrap());
        assert!(Template::parse("{{.ID").is_err());
        assert_eq!(r("{{range .L}}<{{.}}>{{end}}"), "<x><y>");
        assert_eq!(r("{{range .Labels}}{{.}}{{end}}"), "b");
        assert_eq!(r("{{range .Nope}}x{{else}}none{{end}}"), "none");
        assert_eq!(
            r("{{if .State.Pid}}pid {{.State.Pid}}{{else}}no{{end}}"),
            "pid 7"
        );
        assert_eq!(r("{{if .Nope}}yes{{else}}no{{end}}"), "no");
        assert!(Template::parse("{{range .L}}x").is_err());
        assert!(Template::parse("{{end}}").is_err());
        assert!(Template::parse("{{nosuch .ID}}")
            .unwrap()
            .render(&v)
            .is_err());
    }

    #[test]
    fn table_template_has_header() {
        let t = Template::parse("table {{.ID}}\\t{{.Names}}").unwrap();
        let items = vec![json!({"ID": "abc", "Names": "web"})];
        let out = t
            .render_list(&items, &json!({"ID": "CONTAINER ID", "Names": "NAMES"}))
            .unwrap();
        assert_eq!(out, "CONTAINER ID   NAMES\nabc            web\n");
    }

    #[test]
    fn truncation() {
        assert_eq!(ellipsis("sh -c 'sleep 100'", 20), "sh -c 'sleep 100'");
        assert_eq!(
            ellipsis("sh -c 'sleep 100000000'", 20),
            "sh -c 'sleep 100000…"
        );
        assert_eq!(short_id("sha256:0123456789abcdef"), "0123456789ab");
    }
}
