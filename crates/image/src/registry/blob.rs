//! A blob download as a stream, verified against its digest in the same pass.

use std::io::{self, Read};

use super::RegistryError;
use crate::digest::{Digest, DigestReader};

/// The body of a blob being downloaded. Reading it hashes every byte; at end of stream the
/// digest (and the announced `Content-Length`, if any) are checked, and a mismatch is an
/// `io::Error` of kind `InvalidData` wrapping [`RegistryError::DigestMismatch`] or
/// [`RegistryError::SizeMismatch`] (recover it with [`RegistryError::from_io`]). Only a
/// reader that reached end of stream without error has been verified.
pub struct BlobReader {
    /// `None` once end of stream was reached and checked.
    inner: Option<DigestReader<Box<dyn Read + Send>>>,
    expected: Digest,
    content_length: Option<u64>,
}

impl BlobReader {
    pub(crate) fn new(
        body: Box<dyn Read + Send>,
        expected: Digest,
        content_length: Option<u64>,
    ) -> BlobReader {
        BlobReader {
            inner: Some(DigestReader::new(body)),
            expected,
            content_length,
        }
    }

    /// The size the registry announced, if it did.
    pub fn content_length(&self) -> Option<u64> {
        self.content_length
    }

    /// The digest the content is checked against.
    pub fn digest(&self) -> &Digest {
        &self.expected
    }

    /// Checks what was read against the expected size and digest.
    fn verify(&mut self) -> io::Result<()> {
        let Some(reader) = self.inner.take() else {
            return Ok(());
        };
        let (actual, count) = reader.finish();
        let invalid = |e: RegistryError| Err(io::Error::new(io::ErrorKind::InvalidData, e));
        if let Some(expected) = self.content_length.filter(|&len| len != count) {
            return invalid(RegistryError::SizeMismatch {
                digest: self.expected.clone(),
                expected,
                actual: count,
            });
        }
        if actual != self.expected {
            return invalid(RegistryError::DigestMismatch {
                expected: self.expected.clone(),
                actual,
            });
        }
        Ok(())
    }
}

impl Read for BlobReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(inner) = self.inner.as_mut() else {
            return Ok(0);
        };
        let n = inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.verify()?;
        }
        Ok(n)
    }
}

impl std::fmt::Debug for BlobReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobReader")
            .field("digest", &self.expected)
            .field("content_length", &self.content_length)
            .field("finished", &self.inner.is_none())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(content: &'static [u8], expected: &[u8], len: Option<u64>) -> BlobReader {
        BlobReader::new(Box::new(content), Digest::of(expected), len)
    }

    fn drain(mut r: BlobReader) -> Result<Vec<u8>, RegistryError> {
        let mut out = Vec::new();
        r.read_to_end(&mut out)
            .map_err(|e| RegistryError::from_io(e, "reading"))?;
        Ok(out)
    }

    #[test]
    fn matching_content_reads_through() {
        assert_eq!(
            drain(reader(b"hello", b"hello", Some(5))).unwrap(),
            b"hello"
        );
        assert_eq!(drain(reader(b"hello", b"hello", None)).unwrap(), b"hello");
    }

    #[test]
    fn corrupted_content_fails_at_end_of_stream() {
        let mut r = reader(b"hellO", b"hello", Some(5));
        let mut first = [0u8; 5];
        r.read_exact(&mut first).unwrap();
        let err = r.read(&mut [0u8; 8]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(matches!(
            RegistryError::from_io(err, "reading"),
            RegistryError::DigestMismatch { expected, .. } if expected == Digest::of(b"hello")
        ));
    }

    #[test]
    fn short_content_is_a_size_mismatch() {
        let err = drain(reader(b"hell", b"hello", Some(5))).unwrap_err();
        assert!(matches!(
            err,
            RegistryError::SizeMismatch {
                expected: 5,
                actual: 4,
                ..
            }
        ));
    }

    #[test]
    fn empty_reads_are_not_end_of_stream() {
        let mut r = reader(b"x", b"x", Some(1));
        assert_eq!(r.read(&mut []).unwrap(), 0);
        assert_eq!(drain(r).unwrap(), b"x");
    }
}
