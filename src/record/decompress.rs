//! Decompression: an object's bytes, whatever their compression, as one plain stream.
//!
//! Streaming with bounded buffers, never the whole object in memory. The compression is
//! recognised by the first bytes ([`Compression::detect`]; Firehose keys have no `.gz`), and
//! concatenated gzip members (as Firehose and `cat a.gz b.gz` produce) are all read. Another
//! format is one more [`Compression`] variant and one more arm in [`decompress`].

use std::io::{self, BufRead, BufReader, Read};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use flate2::read::MultiGzDecoder;

/// How an object is compressed, as its first bytes tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    /// Magic bytes `1f 8b`.
    Gzip,
}

impl Compression {
    pub fn detect(head: &[u8]) -> Compression {
        if head.len() >= 2 && head[0] == 0x1f && head[1] == 0x8b {
            Compression::Gzip
        } else {
            Compression::None
        }
    }
}

/// `src` decompressed, by the compression its first bytes show.
pub fn decompress<R: Read + Send + 'static>(src: R) -> io::Result<Box<dyn Read + Send>> {
    let mut buffered = BufReader::with_capacity(64 * 1024, src);
    Ok(match Compression::detect(buffered.fill_buf()?) {
        Compression::Gzip => Box::new(MultiGzDecoder::new(buffered)),
        Compression::None => Box::new(buffered),
    })
}

/// Counts the compressed bytes read and remembers whether the source itself failed, so that a
/// read error can be told apart: S3/network (retry later) or corrupt content (dead-letter).
pub struct SourceTap<R> {
    inner: R,
    pub bytes: Arc<AtomicU64>,
    pub failed: Arc<AtomicBool>,
}

impl<R> SourceTap<R> {
    pub fn new(inner: R) -> Self {
        SourceTap {
            inner,
            bytes: Arc::default(),
            failed: Arc::default(),
        }
    }
}

impl<R: Read> Read for SourceTap<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => {
                self.bytes.fetch_add(n as u64, Ordering::Relaxed);
                Ok(n)
            }
            Err(e) => {
                self.failed.store(true, Ordering::Relaxed);
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::GzEncoder;
    use std::io::Write;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn read_all(data: Vec<u8>) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        decompress(io::Cursor::new(data))?.read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn plain_gzip_and_multi_member() {
        assert_eq!(read_all(b"{\"a\":1}\n".to_vec()).unwrap(), b"{\"a\":1}\n");
        assert_eq!(read_all(gz(b"abc\n")).unwrap(), b"abc\n");
        let mut two = gz(b"first\n");
        two.extend(gz(b"second\n"));
        assert_eq!(read_all(two).unwrap(), b"first\nsecond\n");
        assert_eq!(read_all(Vec::new()).unwrap(), b"");
    }

    #[test]
    fn truncated_gzip_is_an_error_not_a_panic() {
        let full = gz(&b"{\"a\":1}\n".repeat(1000));
        let cut = full[..full.len() / 2].to_vec();
        assert!(read_all(cut).is_err());
    }

    #[test]
    fn tap_tells_source_errors_apart() {
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::new(io::ErrorKind::ConnectionReset, "reset"))
            }
        }
        let tap = SourceTap::new(Broken);
        let failed = tap.failed.clone();
        assert!(decompress(tap).is_err());
        assert!(failed.load(Ordering::Relaxed));
    }
}
