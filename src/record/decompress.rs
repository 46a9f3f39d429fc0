//! Decompression: an object's bytes, whatever their compression, as plain content.
//!
//! Streaming with bounded buffers, never the whole object in memory. The compression is
//! recognised by the first bytes ([`Compression::detect`]), never by the key's suffix (Firehose
//! keys have none): gzip (`1f 8b`; concatenated members all read, as Firehose and `cat a.gz b.gz`
//! produce), zstd (`28 b5 2f fd`, or a skippable frame `5? 2a 4d 18` as `pzstd` writes; every
//! frame read), the Snappy framing format (its stream identifier `ff 06 00 00 sNaPpY`;
//! concatenated streams, padding and skippable chunks, CRC-32C checked), ZIP (`PK 03 04`; the
//! entries, see [`super::zip`]), and Hadoop Snappy, which has no magic and is recognised by its
//! framing ([`super::hadoop_snappy`]). Anything else is read as it is.
//!
//! A truncated or corrupt stream is a read error after the last good byte, never a quiet end.

use std::io::{self, BufReader, Read};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use flate2::read::MultiGzDecoder;

use super::hadoop_snappy::{self, HadoopSnappyReader};
use super::zip::ZipEntries;

/// The largest zstd window accepted, as a power of two: 8 MiB, what `zstd -19` uses; frames that
/// need more (`--ultra -20` and above, `--long`) are refused with the reason, so that one object
/// cannot take 128 MiB (libzstd's default limit) of the task's 512 MiB.
pub const ZSTD_WINDOW_LOG_MAX: u32 = 23;
const BUFFER: usize = 64 * 1024;
/// Bytes looked at to detect the compression.
const MAGIC_BYTES: u64 = 16;

/// How an object is compressed, as its first bytes tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    /// Magic bytes `1f 8b`.
    Gzip,
    /// Magic bytes `28 b5 2f fd`, or a skippable frame's `5? 2a 4d 18`.
    Zstd,
    /// The Snappy framing format's stream identifier chunk.
    Snappy,
    /// Hadoop's block framing of raw Snappy blocks (no magic bytes).
    HadoopSnappy,
    /// A local file header `PK 03 04` (or the end record of an empty archive).
    Zip,
}

impl Compression {
    pub fn detect(head: &[u8]) -> Compression {
        match head {
            [0x1f, 0x8b, ..] => Compression::Gzip,
            [0x28, 0xb5, 0x2f, 0xfd, ..] => Compression::Zstd,
            [m, 0x2a, 0x4d, 0x18, ..] if m & 0xf0 == 0x50 => Compression::Zstd,
            [0xff, 0x06, 0x00, 0x00, b's', b'N', b'a', b'P', b'p', b'Y', ..] => Compression::Snappy,
            [b'P', b'K', 0x03, 0x04, ..] | [b'P', b'K', 0x05, 0x06, ..] => Compression::Zip,
            _ if hadoop_snappy::looks_like(head) => Compression::HadoopSnappy,
            _ => Compression::None,
        }
    }

    /// The name used in logs, the README and the bench.
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
            Compression::Snappy => "snappy",
            Compression::HadoopSnappy => "hadoop-snappy",
            Compression::Zip => "zip",
        }
    }
}

type Source = BufReader<Box<dyn Read + Send>>;

/// An object's content: one stream, or the entries of a ZIP archive (each a part of the object).
pub enum Content {
    Stream(Box<dyn Read + Send>),
    Zip(ZipEntries<Source>),
}

/// `src` opened by the compression its first bytes show.
pub fn open<R: Read + Send + 'static>(mut src: R) -> io::Result<(Compression, Content)> {
    let mut head = Vec::with_capacity(MAGIC_BYTES as usize);
    (&mut src).take(MAGIC_BYTES).read_to_end(&mut head)?;
    let compression = Compression::detect(&head);
    let whole: Box<dyn Read + Send> = Box::new(io::Cursor::new(head).chain(src));
    let buffered: Source = BufReader::with_capacity(BUFFER, whole);
    let content = match compression {
        Compression::None => Content::Stream(Box::new(buffered)),
        Compression::Gzip => Content::Stream(Box::new(MultiGzDecoder::new(buffered))),
        Compression::Zstd => {
            let mut d = zstd::stream::read::Decoder::with_buffer(buffered)?;
            d.window_log_max(ZSTD_WINDOW_LOG_MAX)?;
            Content::Stream(Box::new(d))
        }
        Compression::Snappy => Content::Stream(Box::new(snap::read::FrameDecoder::new(buffered))),
        Compression::HadoopSnappy => Content::Stream(Box::new(HadoopSnappyReader::new(buffered))),
        Compression::Zip => Content::Zip(ZipEntries::new(buffered)),
    };
    Ok((compression, content))
}

/// `src` decompressed as one stream: a ZIP archive's entries one after the other (an entry that
/// cannot be decoded is an error here). For tools and tests; the reader uses [`open`].
pub fn decompress<R: Read + Send + 'static>(src: R) -> io::Result<Box<dyn Read + Send>> {
    Ok(match open(src)?.1 {
        Content::Stream(r) => r,
        Content::Zip(mut entries) => {
            let mut all = Vec::new();
            while let Some(e) = entries.next_entry()? {
                match e {
                    super::zip::Entry::Data { mut reader, .. } => {
                        reader.read_to_end(&mut all)?;
                    }
                    super::zip::Entry::Skipped { reason, .. } => {
                        return Err(io::Error::new(io::ErrorKind::InvalidData, reason))
                    }
                }
            }
            Box::new(io::Cursor::new(all))
        }
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
