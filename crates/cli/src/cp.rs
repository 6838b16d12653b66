//! `cp`: copy between a container (tar over /containers/{id}/archive) and the local filesystem.

use crate::cli::CpArgs;
use crate::http::{api_status, encode, Body, Client, Query};
use crate::term;
use anyhow::{anyhow, bail, Context, Result};
use base64::Engine;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

/// Go's FileMode directory bit, as sent in X-Docker-Container-Path-Stat.
const MODE_DIR: u64 = 1 << 31;

#[derive(serde::Deserialize, Debug, Default)]
pub struct PathStat {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub mode: u64,
}

/// "ctr:/path" → (Some(ctr), path); local paths (absolute, relative with ./, or without a colon) → (None, path).
pub fn split_arg(arg: &str) -> (Option<&str>, &str) {
    if arg.starts_with('/') || arg.starts_with('.') {
        return (None, arg);
    }
    match arg.split_once(':') {
        Some((c, p)) if !c.is_empty() && !c.contains('/') => (Some(c), p),
        _ => (None, arg),
    }
}

fn decode_stat(header: Option<&str>) -> Result<PathStat> {
    let Some(h) = header else {
        return Ok(PathStat::default());
    };
    let raw = base64::engine::general_purpose::STANDARD
        .decode(h.trim())
        .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(h.trim()))
        .context("decoding X-Docker-Container-Path-Stat")?;
    serde_json::from_slice(&raw).context("decoding X-Docker-Container-Path-Stat")
}

fn container_path(p: &str) -> String {
    if p.starts_with('/') {
        p.to_string()
    } else {
        format!("/{p}")
    }
}

fn archive_path(ctr: &str, q: Query) -> String {
    format!("/containers/{}/archive{}", encode(ctr), q.as_str())
}

/// Stats a path in the container (HEAD archive); None when it does not exist.
fn stat(client: &Client, ctr: &str, path: &str) -> Result<Option<PathStat>> {
    match client.call(
        "HEAD",
        &archive_path(ctr, Query::new().add("path", path)),
        Body::Empty,
    ) {
        Ok(resp) => Ok(Some(decode_stat(
            resp.header("X-Docker-Container-Path-Stat"),
        )?)),
        Err(e) if api_status(&e) == Some(404) => Ok(None),
        Err(e) => Err(e),
    }
}

pub fn cp(client: &Client, a: CpArgs) -> Result<i32> {
    match (split_arg(&a.src), split_arg(&a.dst)) {
        ((Some(ctr), src), (None, dst)) => {
            copy_from(client, ctr, &container_path(src), dst, a.quiet)
        }
        ((None, src), (Some(ctr), dst)) => copy_to(client, src, ctr, &container_path(dst), &a),
        ((Some(_), _), (Some(_), _)) => bail!("copying between containers is not supported"),
        _ => bail!("must specify at least one container source"),
    }
}

fn report(quiet: bool, bytes: u64, target: &str) {
    if !quiet && term::is_tty(2) {
        eprintln!(
            "Successfully copied {} to {target}",
            crate::format::human_size(bytes as f64)
        );
    }
}

/// Counts bytes passing through a reader.
struct Counting<R> {
    inner: R,
    n: u64,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n += n as u64;
        Ok(n)
    }
}

fn copy_from(client: &Client, ctr: &str, src: &str, dst: &str, quiet: bool) -> Result<i32> {
    let resp = client.call(
        "GET",
        &archive_path(ctr, Query::new().add("path", src)),
        Body::Empty,
    )?;
    let st = decode_stat(resp.header("X-Docker-Container-Path-Stat"))?;
    if dst == "-" {
        io::copy(&mut { resp }, &mut io::stdout()).context("writing the archive")?;
        return Ok(0);
    }
    let dst_path = Path::new(dst);
    let contents_only = src.ends_with("/.") && st.mode & MODE_DIR != 0;
    let (dir, rename) = if contents_only {
        std::fs::create_dir_all(dst_path).with_context(|| format!("creating {dst}"))?;
        (dst_path.to_path_buf(), Some(None))
    } else if dst_path.is_dir() {
        (dst_path.to_path_buf(), None)
    } else if dst.ends_with('/') {
        bail!("destination directory \"{dst}\" must exist");
    } else {
        let parent = dst_path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if !parent.is_dir() {
            bail!(
                "destination directory \"{}\" does not exist",
                parent.display()
            );
        }
        let name = dst_path
            .file_name()
            .ok_or_else(|| anyhow!("invalid destination {dst}"))?;
        (parent.to_path_buf(), Some(Some(PathBuf::from(name))))
    };
    let mut counting = Counting { inner: resp, n: 0 };
    extract(&mut counting, &dir, &st.name, rename)?;
    report(quiet, counting.n, dst);
    Ok(0)
}

/// Unpacks a tar whose entries start with `base` into `dir`; `rename` replaces that first component
/// (`Some(None)` drops it: the contents go straight into `dir`). Entries escaping `dir` are refused.
fn extract(
    r: &mut dyn Read,
    dir: &Path,
    base: &str,
    rename: Option<Option<PathBuf>>,
) -> Result<()> {
    let mut archive = tar::Archive::new(r);
    archive.set_preserve_permissions(true);
    for entry in archive.entries().context("reading the archive")? {
        let mut entry = entry.context("reading the archive")?;
        let path = entry.path().context("reading an entry name")?.into_owned();
        if path
            .components()
            .any(|c| matches!(c, Component::ParentDir | Component::RootDir))
        {
            bail!(
                "refusing to extract {} outside {}",
                path.display(),
                dir.display()
            );
        }
        let rel = match &rename {
            None => path.clone(),
            Some(new) => {
                let mut comps = path.components();
                let first = comps.next();
                let rest: PathBuf = comps.collect();
                match (first, new) {
                    (Some(f), _) if f.as_os_str() != base && !base.is_empty() => path.clone(),
                    (_, Some(n)) if rest.as_os_str().is_empty() => n.clone(),
                    (_, Some(n)) => n.join(rest),
                    (_, None) => rest,
                }
            }
        };
        if rel.as_os_str().is_empty() {
            continue;
        }
        refuse_symlinked_parents(dir, &rel)?;
        let target = dir.join(&rel);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        entry
            .unpack(&target)
            .with_context(|| format!("extracting {}", target.display()))?;
    }
    Ok(())
}

/// Refuses an entry whose parent path below `dir` passes through a symlink (an earlier entry of the archive could
/// otherwise redirect later ones outside `dir`).
fn refuse_symlinked_parents(dir: &Path, rel: &Path) -> Result<()> {
    let mut cur = dir.to_path_buf();
    if let Some(parent) = rel.parent() {
        for c in parent.components() {
            cur.push(c);
            if std::fs::symlink_metadata(&cur).is_ok_and(|m| m.file_type().is_symlink()) {
                bail!(
                    "refusing to extract {} through the symlink {}",
                    rel.display(),
                    cur.display()
                );
            }
        }
    }
    Ok(())
}

fn copy_to(client: &Client, src: &str, ctr: &str, dst: &str, a: &CpArgs) -> Result<i32> {
    let q = |path: &str| {
        Query::new()
            .add("path", path)
            .add("noOverwriteDirNonDir", "true")
            .flag("copyUIDGID", a.archive)
    };
    if src == "-" {
        let body = Body::Reader(Box::new(io::stdin()), "application/x-tar");
        client.call("PUT", &archive_path(ctr, q(dst)), body)?;
        return Ok(0);
    }
    let src_path = Path::new(src);
    let meta = if a.follow_link {
        std::fs::metadata(src_path)
    } else {
        std::fs::symlink_metadata(src_path)
    }
    .with_context(|| format!("could not find the file {src} in the local filesystem"))?;
    let src_name = src_path
        .file_name()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    let contents_only = src.ends_with("/.") && meta.is_dir();
    let (target_dir, name) = match stat(client, ctr, dst)? {
        Some(st) if st.mode & MODE_DIR != 0 => (
            dst.to_string(),
            if contents_only {
                PathBuf::from(".")
            } else {
                src_name
            },
        ),
        Some(_) if meta.is_dir() => bail!("cannot copy a directory to a file"),
        _ => {
            let p = Path::new(dst);
            let parent = p
                .parent()
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or("/".into());
            let name = p
                .file_name()
                .ok_or_else(|| anyhow!("invalid destination {dst}"))?;
            (parent, PathBuf::from(name))
        }
    };
    let (reader, writer) = io::pipe().context("creating a pipe")?;
    let (src_owned, follow) = (src_path.to_path_buf(), a.follow_link);
    let builder = std::thread::spawn(move || -> Result<u64> {
        let mut counting = CountingWriter {
            inner: writer,
            n: 0,
        };
        {
            let mut b = tar::Builder::new(&mut counting);
            b.follow_symlinks(follow);
            if meta.is_dir() {
                b.append_dir_all(&name, &src_owned)?;
            } else {
                b.append_path_with_name(&src_owned, &name)?;
            }
            b.finish()?;
        }
        Ok(counting.n)
    });
    let result = client.call(
        "PUT",
        &archive_path(ctr, q(&target_dir)),
        Body::Reader(Box::new(reader), "application/x-tar"),
    );
    let built = builder
        .join()
        .map_err(|_| anyhow!("the archive writer panicked"))?;
    result?;
    let n = built.context("archiving the source")?;
    report(a.quiet, n, &format!("{ctr}:{dst}"));
    Ok(0)
}

struct CountingWriter<W> {
    inner: W,
    n: u64,
}

impl<W: io::Write> io::Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.n += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cp_args() {
        assert_eq!(split_arg("c1:/etc/hosts"), (Some("c1"), "/etc/hosts"));
        assert_eq!(split_arg("/tmp/a:b"), (None, "/tmp/a:b"));
        assert_eq!(split_arg("./x:y"), (None, "./x:y"));
        assert_eq!(split_arg("file"), (None, "file"));
        assert_eq!(split_arg("-"), (None, "-"));
    }

    #[test]
    fn stat_header() {
        let h = base64::engine::general_purpose::STANDARD
            .encode(r#"{"name":"etc","size":4096,"mode":2147484141,"mtime":"2024-01-01T00:00:00Z","linkTarget":""}"#);
        let st = decode_stat(Some(&h)).unwrap();
        assert_eq!(st.name, "etc");
        assert!(st.mode & MODE_DIR != 0);
    }

    fn tar_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            b.append_data(&mut h, name, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn extract_renames_top_component() {
        let dir = tempfile::tempdir().unwrap();
        let t = tar_of(&[("src/a.txt", b"A"), ("src/sub/b.txt", b"B")]);
        let single = tar_of(&[("passwd", b"P")]);
        extract(
            &mut &single[..],
            dir.path(),
            "passwd",
            Some(Some("pw".into())),
        )
        .unwrap();
        assert_eq!(std::fs::read(dir.path().join("pw")).unwrap(), b"P");
        extract(&mut &t[..], dir.path(), "src", Some(Some("dst".into()))).unwrap();
        assert_eq!(std::fs::read(dir.path().join("dst/a.txt")).unwrap(), b"A");
        assert_eq!(
            std::fs::read(dir.path().join("dst/sub/b.txt")).unwrap(),
            b"B"
        );
        extract(&mut &t[..], dir.path(), "src", None).unwrap();
        assert_eq!(std::fs::read(dir.path().join("src/a.txt")).unwrap(), b"A");
    }

    #[test]
    fn extract_refuses_writing_through_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, "src/link", outside.path()).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        h.set_mode(0o644);
        b.append_data(&mut h, "src/link/pwned", &b"x"[..]).unwrap();
        let t = b.into_inner().unwrap();
        assert!(extract(&mut &t[..], dir.path(), "src", None).is_err());
        assert!(!outside.path().join("pwned").exists());
    }

    #[test]
    fn extract_refuses_escapes() {
        let dir = tempfile::tempdir().unwrap();
        let mut raw = tar_of(&[("ok", b"x")]);
        // Patch the name field to "../evil" by hand (the builder refuses such names).
        raw[..7].copy_from_slice(b"../evil");
        raw[7] = 0;
        let mut h = tar::Header::from_byte_slice(&raw[..512]).clone();
        h.set_cksum();
        raw[..512].copy_from_slice(h.as_bytes());
        assert!(extract(&mut &raw[..], dir.path(), "", None).is_err());
        assert!(!dir.path().parent().unwrap().join("evil").exists());
    }
}
