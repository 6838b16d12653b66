//! Detach keys: the key sequence (ctrl-p,ctrl-q unless --detach-keys says otherwise) that
//! leaves an attached container running, recognised in the terminal's input as docker's CLI
//! recognises it.

use std::io::{self, Read, Write};

const DEFAULT: [u8; 2] = [0x10, 0x11];

/// The bytes of `--detach-keys` (docker's syntax: comma-separated, each one character,
/// `ctrl-<a-z @ [ \ ] ^ _>` or `DEL`); the default sequence for none or, with docker's
/// warning, for one that does not parse.
pub fn keys(spec: Option<&str>) -> Vec<u8> {
    match spec.filter(|s| !s.is_empty()).map(parse) {
        None => DEFAULT.to_vec(),
        Some(Ok(keys)) => keys,
        Some(Err(e)) => {
            eprintln!("invalid detach escape keys, using default: {e}");
            DEFAULT.to_vec()
        }
    }
}

fn parse(spec: &str) -> Result<Vec<u8>, String> {
    spec.split(',')
        .map(|key| match key.as_bytes() {
            [c] => Ok(*c),
            _ if key == "DEL" => Ok(127),
            _ => key
                .strip_prefix("ctrl-")
                .and_then(|c| match c.as_bytes() {
                    [c @ b'a'..=b'z'] => Some(c - b'a' + 1),
                    [c @ (b'@' | b'[' | b'\\' | b']' | b'^' | b'_')] => Some(c - b'@'),
                    _ => None,
                })
                .ok_or_else(|| format!("Unknown character: '{key}'")),
        })
        .collect()
}

/// Copy `input` to `output` until EOF (false) or until the input holds `keys` in a row
/// (true), which are not passed on. Bytes that only began the sequence are passed on once it
/// breaks off.
pub fn copy(input: &mut impl Read, output: &mut impl Write, keys: &[u8]) -> io::Result<bool> {
    let mut buf = [0u8; 4096];
    let mut matched = 0;
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let mut pass = Vec::with_capacity(n + matched);
        for &byte in &buf[..n] {
            if byte == keys[matched] {
                matched += 1;
                if matched == keys.len() {
                    output.write_all(&pass)?;
                    return Ok(true);
                }
                continue;
            }
            pass.extend_from_slice(&keys[..matched]);
            matched = usize::from(byte == keys[0]);
            if matched == 0 {
                pass.push(byte);
            }
        }
        output.write_all(&pass)?;
    }
    output.write_all(&keys[..matched])?;
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &[u8], keys: &[u8]) -> (Vec<u8>, bool) {
        let mut out = Vec::new();
        let detached = copy(&mut &input[..], &mut out, keys).unwrap();
        (out, detached)
    }

    #[test]
    fn default_and_docker_syntax() {
        assert_eq!(keys(None), [0x10, 0x11]);
        assert_eq!(keys(Some("ctrl-a,x,ctrl-\\,DEL")), [1, b'x', 28, 127]);
        assert_eq!(keys(Some("ctrl-1")), [0x10, 0x11]);
        assert_eq!(
            parse("ctrl-1,q").unwrap_err(),
            "Unknown character: 'ctrl-1'"
        );
    }

    #[test]
    fn sequence_detaches_and_is_not_passed_on() {
        assert_eq!(run(b"ls\n\x10\x11more", &DEFAULT), (b"ls\n".to_vec(), true));
        assert_eq!(run(b"\x10\x10\x11", &DEFAULT), (b"\x10".to_vec(), true));
    }

    #[test]
    fn broken_off_sequence_is_passed_on() {
        assert_eq!(
            run(b"a\x10b\x10", &DEFAULT),
            (b"a\x10b\x10".to_vec(), false)
        );
        assert_eq!(run(b"\x11\x10x", &DEFAULT), (b"\x11\x10x".to_vec(), false));
    }
}
