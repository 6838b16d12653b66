//! OCI whiteout names (`.wh.<name>`, `.wh..wh..opq`) and their overlayfs forms.

use super::Reject;

/// A tar entry `.wh.<name>` deletes `<name>` from the layers below.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// Names starting with `.wh..wh.` are whiteout metadata (AUFS), never real files.
pub const WHITEOUT_META_PREFIX: &str = ".wh..wh.";
/// A tar entry `<dir>/.wh..wh..opq` hides everything the layers below have in `<dir>`.
pub const WHITEOUT_OPAQUE: &str = ".wh..wh..opq";
/// The xattr overlayfs reads to make a directory opaque (value `y`).
pub const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// What a whiteout-looking base name means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Whiteout<'a> {
    /// `.wh..wh..opq`: the containing directory is opaque.
    Opaque,
    /// `.wh.<name>`: `<name>` is deleted.
    Remove(&'a [u8]),
    /// Other `.wh..wh.*` names: AUFS bookkeeping, skipped.
    Meta,
}

/// Classifies one path component (a base name). `Ok(None)` for ordinary names; an error for
/// whiteouts that name nothing a directory can hold (`.wh.`, `.wh..`, `.wh...`).
pub fn parse_whiteout(name: &[u8]) -> Result<Option<Whiteout<'_>>, Reject> {
    let Some(rest) = name.strip_prefix(WHITEOUT_PREFIX.as_bytes()) else {
        return Ok(None);
    };
    if name == WHITEOUT_OPAQUE.as_bytes() {
        return Ok(Some(Whiteout::Opaque));
    }
    if name.starts_with(WHITEOUT_META_PREFIX.as_bytes()) {
        return Ok(Some(Whiteout::Meta));
    }
    if rest.is_empty() || rest == b"." || rest == b".." || rest.contains(&b'/') {
        return Err(Reject::InvalidWhiteout(
            String::from_utf8_lossy(name).into_owned(),
        ));
    }
    Ok(Some(Whiteout::Remove(rest)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_whiteout_names() {
        assert_eq!(parse_whiteout(b"passwd"), Ok(None));
        assert_eq!(parse_whiteout(b".wh"), Ok(None));
        assert_eq!(parse_whiteout(b".whx"), Ok(None));
        assert_eq!(
            parse_whiteout(b".wh.passwd"),
            Ok(Some(Whiteout::Remove(b"passwd")))
        );
        assert_eq!(
            parse_whiteout(b".wh..hidden"),
            Ok(Some(Whiteout::Remove(b".hidden")))
        );
        assert_eq!(
            parse_whiteout(b".wh....x"),
            Ok(Some(Whiteout::Remove(b"...x")))
        );
        assert_eq!(parse_whiteout(b".wh..wh..opq"), Ok(Some(Whiteout::Opaque)));
        assert_eq!(parse_whiteout(b".wh..wh.plnk"), Ok(Some(Whiteout::Meta)));
        assert_eq!(parse_whiteout(b".wh..wh."), Ok(Some(Whiteout::Meta)));
        for bad in [&b".wh."[..], b".wh..", b".wh..."] {
            assert!(
                matches!(parse_whiteout(bad), Err(Reject::InvalidWhiteout(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
