//! Image verbs: images, pull, push, tag, rmi, save, load, import, history, image prune.

use crate::cli::{
    HistoryArgs, ImagesArgs, ImportArgs, LoadArgs, PruneArgs, PullArgs, PushArgs, RmiArgs,
    SaveArgs, TagArgs,
};
use crate::format::{self, ellipsis, short_id, Template};
use crate::http::{api_status, encode_path, Body, Client, Query};
use crate::stream::ProgressWriter;
use crate::{parse, term};
use anyhow::{Context, Result};
use bollard_stubs::models::{HistoryResponseItem, ImageDeleteResponseItem, ImageSummary};
use serde_json::{json, Value};
use std::io::{self, BufReader, Read, Write};

/// Splits "name[:tag]" (a registry port is not a tag); digests stay with the name.
pub fn split_tag(r: &str) -> (&str, Option<&str>) {
    if r.contains('@') {
        return (r, None);
    }
    match r.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name, Some(tag)),
        _ => (r, None),
    }
}

/// Splits a reference into the `fromImage` and `tag` of a pull (a digest travels as the tag, like docker's CLI).
fn pull_params(r: &str) -> (&str, &str) {
    if let Some((name, digest)) = r.split_once('@') {
        return (name, digest);
    }
    match split_tag(r) {
        (name, Some(tag)) => (name, tag),
        (name, None) => (name, "latest"),
    }
}

/// The reference with ":latest" added when it names no tag or digest.
pub fn with_latest(r: &str) -> String {
    match split_tag(r) {
        (_, Some(_)) => r.to_string(),
        _ if r.contains('@') => r.to_string(),
        _ => format!("{r}:latest"),
    }
}

/// The fully qualified name docker prints after a pull: "docker.io/library/busybox:latest".
pub fn full_name(r: &str) -> String {
    let r = with_latest(r);
    let first = r.split('/').next().unwrap_or_default();
    let has_domain =
        r.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    if has_domain {
        r
    } else if r.contains('/') {
        format!("docker.io/{r}")
    } else {
        format!("docker.io/library/{r}")
    }
}

/// An empty registry credential (`{}`), which daemons require on pull and push.
const EMPTY_AUTH: &str = "e30=";

/// Pulls `reference`, rendering progress to `out` (bars in place when `tty`).
pub fn pull(
    client: &Client,
    reference: &str,
    platform: Option<&str>,
    quiet: bool,
    out: &mut dyn Write,
    tty: bool,
) -> Result<()> {
    let (name, tag) = pull_params(reference);
    let q = Query::new()
        .add("fromImage", name)
        .add("tag", tag)
        .opt("platform", platform);
    let resp = client
        .send(
            "POST",
            &format!("/images/create{}", q.as_str()),
            Body::Empty,
            &[("X-Registry-Auth", EMPTY_AUTH)],
        )?
        .ok()?;
    if quiet {
        let mut sink = io::sink();
        ProgressWriter::new(&mut sink, false).run(resp.lines())
    } else {
        ProgressWriter::new(out, tty).run(resp.lines())
    }
}

pub fn pull_cmd(client: &Client, a: PullArgs) -> Result<i32> {
    if split_tag(&a.name).1.is_none() && !a.name.contains('@') && !a.quiet {
        println!("Using default tag: latest");
    }
    pull(
        client,
        &a.name,
        a.platform.as_deref(),
        a.quiet,
        &mut io::stdout(),
        term::is_tty(1),
    )?;
    println!("{}", full_name(&a.name));
    Ok(0)
}

pub fn push(client: &Client, a: PushArgs) -> Result<i32> {
    let (name, tag) = split_tag(&a.name);
    if tag.is_none() && !a.quiet {
        println!("Using default tag: latest");
    }
    let q = Query::new().add("tag", tag.unwrap_or("latest"));
    let resp = client
        .send(
            "POST",
            &format!("/images/{}/push{}", encode_path(name), q.as_str()),
            Body::Empty,
            &[("X-Registry-Auth", EMPTY_AUTH)],
        )?
        .ok()?;
    let mut out = io::stdout();
    let mut sink = io::sink();
    let w: &mut dyn Write = if a.quiet { &mut sink } else { &mut out };
    ProgressWriter::new(w, term::is_tty(1)).run(resp.lines())?;
    if a.quiet {
        println!("{}", with_latest(&a.name));
    }
    Ok(0)
}

pub fn tag(client: &Client, a: TagArgs) -> Result<i32> {
    let (repo, tag) = split_tag(&a.target);
    let q = Query::new()
        .add("repo", repo)
        .add("tag", tag.unwrap_or("latest"));
    client.call(
        "POST",
        &format!("/images/{}/tag{}", encode_path(&a.source), q.as_str()),
        Body::Empty,
    )?;
    Ok(0)
}

pub fn rmi(client: &Client, a: RmiArgs) -> Result<i32> {
    let q = Query::new()
        .flag("force", a.force)
        .flag("noprune", a.no_prune);
    let mut failed = false;
    for img in &a.images {
        let res: Result<Vec<ImageDeleteResponseItem>> = client.json(
            "DELETE",
            &format!("/images/{}{}", encode_path(img), q.as_str()),
            Body::Empty,
        );
        match res {
            Ok(items) => {
                for i in items {
                    if let Some(u) = i.untagged {
                        println!("Untagged: {u}");
                    }
                    if let Some(d) = i.deleted {
                        println!("Deleted: {d}");
                    }
                }
            }
            Err(e) => {
                eprintln!("{e:#}");
                // As docker's: with -f an image that is not there is no failure.
                failed |= !(a.force && api_status(&e) == Some(404));
            }
        }
    }
    Ok(i32::from(failed))
}

pub fn save(client: &Client, a: SaveArgs) -> Result<i32> {
    let mut out = crate::container::tar_output(a.output.as_deref())?;
    let mut q = Query::new();
    for i in &a.images {
        q = q.add("names", i);
    }
    let mut resp = client.call("GET", &format!("/images/get{}", q.as_str()), Body::Empty)?;
    io::copy(&mut resp, &mut out).context("writing the archive")?;
    out.flush()?;
    Ok(0)
}

/// A request body from a file, or stdin for "-"/none.
fn input(path: Option<&str>) -> Result<Box<dyn Read>> {
    match path {
        Some(p) if p != "-" => Ok(Box::new(
            std::fs::File::open(p).with_context(|| format!("open {p}"))?,
        )),
        _ => Ok(Box::new(io::stdin())),
    }
}

pub fn load(client: &Client, a: LoadArgs) -> Result<i32> {
    if a.input.is_none() && term::is_tty(0) {
        anyhow::bail!("requested load from stdin, but stdin is empty");
    }
    let body = Body::Reader(input(a.input.as_deref())?, "application/x-tar");
    let q = Query::new().flag("quiet", a.quiet);
    let resp = client.call("POST", &format!("/images/load{}", q.as_str()), body)?;
    let json = resp
        .header("Content-Type")
        .is_some_and(|t| t.starts_with("application/json"));
    if json {
        ProgressWriter::new(&mut io::stdout(), term::is_tty(1)).run(resp.lines())?;
    } else {
        crate::run::write_stdout(&resp.bytes()?)?;
    }
    Ok(0)
}

pub fn import(client: &Client, a: ImportArgs) -> Result<i32> {
    let (repo, tag) = match &a.repository {
        Some(r) => {
            let (n, t) = split_tag(r);
            (Some(n), t)
        }
        None => (None, None),
    };
    let is_url = a.source.starts_with("http://") || a.source.starts_with("https://");
    let mut q = Query::new()
        .add("fromSrc", if is_url { a.source.as_str() } else { "-" })
        .opt("repo", repo)
        .opt("tag", tag)
        .opt("message", a.message.as_deref())
        .opt("platform", a.platform.as_deref());
    for c in &a.change {
        q = q.add("changes", c);
    }
    let body = if is_url {
        Body::Empty
    } else {
        Body::Reader(input(Some(&a.source))?, "application/x-tar")
    };
    let resp = client.call("POST", &format!("/images/create{}", q.as_str()), body)?;
    // The stream's status lines carry the new image id.
    let mut out = io::stdout();
    let mut pw = ProgressWriter::new(&mut out, false);
    pw.run(BufReader::new(resp))?;
    Ok(0)
}

fn image_context(
    img: &ImageSummary,
    repo_tag: Option<&str>,
    digest: Option<&str>,
    trunc: bool,
    now: i64,
) -> Value {
    let (repo, tag) = match repo_tag {
        Some(rt) => {
            let (r, t) = split_tag(rt);
            (r.to_string(), t.unwrap_or("<none>").to_string())
        }
        None => ("<none>".into(), "<none>".into()),
    };
    let id = if trunc {
        short_id(&img.id)
    } else {
        img.id.clone()
    };
    json!({
        "ID": id,
        "Repository": repo,
        "Tag": tag,
        "Digest": digest.unwrap_or("<none>"),
        "CreatedSince": format!("{} ago", format::human_duration(now - img.created)),
        "CreatedAt": format::go_time(img.created),
        "Size": format::human_size(img.size as f64),
        "VirtualSize": format::human_size(img.size as f64),
        "SharedSize": if img.shared_size < 0 { "N/A".to_string() } else { format::human_size(img.shared_size as f64) },
        "UniqueSize": format::human_size((img.size - img.shared_size.max(0)) as f64),
        "Containers": if img.containers < 0 { "N/A".to_string() } else { img.containers.to_string() },
    })
}

fn image_headers() -> Value {
    json!({
        "ID": "IMAGE ID", "Repository": "REPOSITORY", "Tag": "TAG", "Digest": "DIGEST", "CreatedSince": "CREATED",
        "CreatedAt": "CREATED AT", "Size": "SIZE", "VirtualSize": "VIRTUAL SIZE", "SharedSize": "SHARED SIZE",
        "UniqueSize": "UNIQUE SIZE", "Containers": "CONTAINERS",
    })
}

pub fn images(client: &Client, a: ImagesArgs) -> Result<i32> {
    let mut filters = a.filter.clone();
    if let Some(r) = &a.repository {
        filters.push(format!("reference={r}"));
    }
    let q = Query::new()
        .flag("all", a.all)
        .opt("filters", parse::filters_json(&filters)?);
    let mut list: Vec<ImageSummary> =
        client.json("GET", &format!("/images/json{}", q.as_str()), Body::Empty)?;
    list.sort_by_key(|x| std::cmp::Reverse(x.created));
    let trunc = !a.no_trunc;
    if a.quiet && a.format.is_none() {
        let mut seen = std::collections::HashSet::new();
        for img in &list {
            let id = if trunc {
                short_id(&img.id)
            } else {
                img.id.clone()
            };
            if seen.insert(id.clone()) {
                println!("{id}");
            }
        }
        return Ok(0);
    }
    let now = format::now_unix();
    let mut items = Vec::new();
    for img in &list {
        let digest = img
            .repo_digests
            .first()
            .and_then(|d| d.split_once('@'))
            .map(|(_, d)| d);
        if img.repo_tags.is_empty() {
            items.push(image_context(img, None, digest, trunc, now));
        }
        for rt in &img.repo_tags {
            items.push(image_context(img, Some(rt), digest, trunc, now));
        }
    }
    let format = match &a.format {
        Some(f) if f != "table" => f.clone(),
        _ if a.digests => {
            "table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
                .into()
        }
        _ => "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}".into(),
    };
    print!(
        "{}",
        Template::parse(&format)?.render_list(&items, &image_headers())?
    );
    Ok(0)
}

pub fn history(client: &Client, a: HistoryArgs) -> Result<i32> {
    let items: Vec<HistoryResponseItem> = client.json(
        "GET",
        &format!("/images/{}/history", encode_path(&a.image)),
        Body::Empty,
    )?;
    let trunc = !a.no_trunc;
    let now = format::now_unix();
    let ctx: Vec<Value> = items
        .iter()
        .map(|h| {
            let id = if h.id == "<missing>" || !trunc { h.id.clone() } else { short_id(&h.id) };
            let created_by = h.created_by.replace('\t', " ");
            json!({
                "ID": id,
                "CreatedSince": if a.human { format!("{} ago", format::human_duration(now - h.created)) } else { format::rfc3339(h.created) },
                "CreatedAt": format::rfc3339(h.created),
                "CreatedBy": if trunc { ellipsis(&created_by, 45) } else { created_by },
                "Size": if a.human { format::human_size(h.size as f64) } else { h.size.to_string() },
                "Comment": h.comment,
            })
        })
        .collect();
    if a.quiet && a.format.is_none() {
        for c in &ctx {
            println!("{}", c["ID"].as_str().unwrap_or_default());
        }
        return Ok(0);
    }
    let format = a
        .format
        .clone()
        .filter(|f| f != "table")
        .unwrap_or_else(|| {
            "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}".into()
        });
    let headers = json!({"ID": "IMAGE", "CreatedSince": "CREATED", "CreatedAt": "CREATED AT", "CreatedBy": "CREATED BY", "Size": "SIZE", "Comment": "COMMENT"});
    print!("{}", Template::parse(&format)?.render_list(&ctx, &headers)?);
    Ok(0)
}

pub fn prune(client: &Client, a: PruneArgs) -> Result<i32> {
    let warning = if a.all {
        "WARNING! This will remove all images without at least one container associated to them."
    } else {
        "WARNING! This will remove all dangling images."
    };
    if !a.force && !crate::confirm(warning) {
        return Ok(0);
    }
    let mut filters = a.filter.clone();
    filters.push(format!("dangling={}", !a.all));
    let q = Query::new().opt("filters", parse::filters_json(&filters)?);
    let v: Value = client.json("POST", &format!("/images/prune{}", q.as_str()), Body::Empty)?;
    let deleted = v["ImagesDeleted"].as_array().cloned().unwrap_or_default();
    if !deleted.is_empty() {
        println!("Deleted Images:");
        for d in deleted {
            if let Some(u) = d["Untagged"].as_str() {
                println!("untagged: {u}");
            }
            if let Some(x) = d["Deleted"].as_str() {
                println!("deleted: {x}");
            }
        }
        println!();
    }
    format::print_reclaimed(&v);
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references() {
        assert_eq!(split_tag("busybox:1.36"), ("busybox", Some("1.36")));
        assert_eq!(split_tag("localhost:5000/bb"), ("localhost:5000/bb", None));
        assert_eq!(
            split_tag("localhost:5000/bb:v1"),
            ("localhost:5000/bb", Some("v1"))
        );
        assert_eq!(pull_params("bb@sha256:ab"), ("bb", "sha256:ab"));
        assert_eq!(pull_params("bb"), ("bb", "latest"));
        assert_eq!(with_latest("busybox"), "busybox:latest");
        assert_eq!(full_name("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(full_name("me/app:1"), "docker.io/me/app:1");
        assert_eq!(full_name("127.0.0.1:5000/x"), "127.0.0.1:5000/x:latest");
    }

    #[test]
    fn images_table_like_docker() {
        let img = ImageSummary {
            id: "sha256:0123456789abcdef".into(),
            repo_tags: vec!["busybox:latest".into()],
            created: 1_000,
            size: 4_261_376,
            ..Default::default()
        };
        let items = vec![image_context(
            &img,
            Some("busybox:latest"),
            None,
            true,
            1_000 + 3 * 86_400,
        )];
        let t = Template::parse(
            "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}",
        )
        .unwrap();
        assert_eq!(
            t.render_list(&items, &image_headers()).unwrap(),
            "REPOSITORY   TAG       IMAGE ID       CREATED      SIZE\nbusybox      latest    0123456789ab   3 days ago   4.26MB\n"
        );
    }
}
