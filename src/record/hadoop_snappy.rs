//! Hadoop-compatible Snappy (Firehose's `HADOOP_SNAPPY`), streamed one sub-block at a time.
//!
//! Hadoop's `BlockCompressorStream` framing has no magic bytes: the stream is blocks, a block is
//! a 4-byte big-endian uncompressed length followed by sub-blocks until that many bytes are
//! produced, a sub-block is a 4-byte big-endian compressed length and one raw Snappy block
//! (decoded by `snap::raw`). [`looks_like`] recognises the framing by its numbers being
//! consistent, which text and JSON never are (their first bytes make lengths of hundreds of MiB).
//! Memory is one sub-block, at most [`MAX_SUB_BLOCK`] decompressed (Hadoop writes 256 KiB).

use std::io::{self, Read};

/// The largest decompressed sub-block accepted; a larger one is refused as corrupt.
pub const MAX_SUB_BLOCK: usize = 16 << 20;
/// The largest block (sum of its sub-blocks) that [`looks_like`] accepts at the start.
const MAX_FIRST_BLOCK: u32 = 1 << 30;

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Whether `head` starts like Hadoop Snappy: a block length, a sub-block length that fits it,
/// and a raw Snappy block whose own length header fits both.
pub fn looks_like(head: &[u8]) -> bool {
    if head.len() < 9 {
        return false;
    }
    let (block, sub) = (be32(&head[0..4]), be32(&head[4..8]) as usize);
    if block == 0 || block > MAX_FIRST_BLOCK || sub == 0 {
        return false;
    }
    let cap = (block as usize).min(MAX_SUB_BLOCK);
    if sub > snap::raw::max_compress_len(cap) {
        return false;
    }
    matches!(snap::raw::decompress_len(&head[8..]), Ok(n) if n > 0 && n <= cap)
}

/// Decompresses Hadoop Snappy from `src`. Truncated or corrupt data is an error, never a quiet end.
pub struct HadoopSnappyReader<R> {
    src: R,
    /// Uncompressed bytes still due in the current block.
    block_left: u64,
    compressed: Vec<u8>,
    out: Vec<u8>,
    at: usize,
    decoder: snap::raw::Decoder,
}

impl<R: Read> HadoopSnappyReader<R> {
    pub fn new(src: R) -> Self {
        HadoopSnappyReader {
            src,
            block_left: 0,
            compressed: Vec::new(),
            out: Vec::new(),
            at: 0,
            decoder: snap::raw::Decoder::new(),
        }
    }

    /// Reads a 4-byte length; `None` at a clean end of the stream (only between blocks).
    fn length(&mut self, clean_end_ok: bool) -> io::Result<Option<u32>> {
        let mut b = [0; 4];
        let mut got = 0;
        while got < 4 {
            match self.src.read(&mut b[got..]) {
                Ok(0) if got == 0 && clean_end_ok => return Ok(None),
                Ok(0) => return Err(truncated()),
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Some(be32(&b)))
    }

    /// Decodes the next sub-block into `out`; false at the end of the stream.
    fn next_sub_block(&mut self) -> io::Result<bool> {
        while self.block_left == 0 {
            match self.length(true)? {
                None => return Ok(false),
                Some(n) => self.block_left = u64::from(n),
            }
        }
        let Some(len) = self.length(false)? else {
            return Err(truncated());
        };
        let len = len as usize;
        if len == 0 || len > snap::raw::max_compress_len(MAX_SUB_BLOCK) {
            return Err(corrupt(format!("a sub-block of {len} compressed bytes")));
        }
        // Read, not preallocated: a corrupt length must not cost its size in memory.
        self.compressed.clear();
        (&mut self.src)
            .take(len as u64)
            .read_to_end(&mut self.compressed)?;
        if self.compressed.len() < len {
            return Err(truncated());
        }
        let n = snap::raw::decompress_len(&self.compressed).map_err(|e| corrupt(e.to_string()))?;
        if n > MAX_SUB_BLOCK || n as u64 > self.block_left {
            return Err(corrupt(format!(
                "a sub-block of {n} bytes in a block with {} left",
                self.block_left
            )));
        }
        self.out.resize(n, 0);
        let n = self
            .decoder
            .decompress(&self.compressed, &mut self.out)
            .map_err(|e| corrupt(e.to_string()))?;
        self.out.truncate(n);
        self.at = 0;
        self.block_left -= n as u64;
        Ok(true)
    }
}

fn truncated() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "Hadoop Snappy data ends inside a block (truncated)",
    )
}

fn corrupt(what: String) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("corrupt Hadoop Snappy data: {what}"),
    )
}

impl<R: Read> Read for HadoopSnappyReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.out.len() {
            if buf.is_empty() || !self.next_sub_block()? {
                return Ok(0);
            }
        }
        let n = buf.len().min(self.out.len() - self.at);
        buf[..n].copy_from_slice(&self.out[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hadoop framing of `data` in blocks of `block` bytes, each of sub-blocks of `sub` bytes.
    pub(crate) fn hadoop(data: &[u8], block: usize, sub: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for b in data.chunks(block) {
            out.extend((b.len() as u32).to_be_bytes());
            for s in b.chunks(sub) {
                let c = snap::raw::Encoder::new().compress_vec(s).unwrap();
                out.extend((c.len() as u32).to_be_bytes());
                out.extend(c);
            }
        }
        out
    }

    fn read_all(data: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        HadoopSnappyReader::new(data).read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn blocks_and_sub_blocks_round_trip() {
        let data = b"{\"a\":1}\n".repeat(5000);
        let z = hadoop(&data, 16384, 4000);
        assert!(looks_like(&z));
        assert_eq!(read_all(&z).unwrap(), data);
        assert_eq!(read_all(&[]).unwrap(), b"");
    }

    #[test]
    fn text_and_json_do_not_look_like_it() {
        for t in [
            &b"{\"timestamp\":1}\n"[..],
            b"[2018-05-17T08:29:12,177][INFO ]",
            b"2018-05-17 INFO started",
            b"hello world, this is text",
            b"\x00\x00\x00",
        ] {
            assert!(!looks_like(t), "{}", String::from_utf8_lossy(t));
        }
    }

    #[test]
    fn truncation_and_corruption_are_errors() {
        let data = b"{\"a\":1}\n".repeat(5000);
        let z = hadoop(&data, 16384, 4000);
        for cut in [3, 6, 10, z.len() / 2, z.len() - 1] {
            assert!(read_all(&z[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad = z.clone();
        bad[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(read_all(&bad).is_err());
    }
}
