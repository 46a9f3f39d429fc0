//! ZIP archives, streamed: each entry is one part of the object, read in file order from its
//! local header, never the whole archive in memory (the central directory, at the end, is not
//! needed and not read).
//!
//! Why not a crate's reader: `zip`'s `read_zipfile_from_stream` refuses entries written with a
//! data descriptor and no sizes (`zip` to a pipe, Java's `ZipOutputStream`), and `async_zip`'s
//! stream reader gives up the whole stream at an encrypted or unsupported entry. Here the walk of
//! the local headers is ours (a 30-byte header, the name, the ZIP64 sizes, the optional data
//! descriptor) and the decompression is flate2's: deflate ends itself, so an entry of unknown
//! size is read to its end and the next header follows. Stored (0) and deflate (8) are decoded;
//! an encrypted entry or another method is skipped when its size is known (one dead-letter entry
//! with the reason) and ends the object when it is not (nothing tells where the next entry is).

use std::io::{self, BufRead, Read};

use flate2::{Crc, Decompress, FlushDecompress, Status};

const LOCAL_HEADER: u32 = 0x0403_4b50;
const CENTRAL_HEADER: u32 = 0x0201_4b50;
const END_OF_CENTRAL_DIRECTORY: u32 = 0x0605_4b50;
const ZIP64_END_OF_CENTRAL_DIRECTORY: u32 = 0x0606_4b50;
const DATA_DESCRIPTOR: u32 = 0x0807_4b50;

/// One entry of the archive.
pub enum Entry<'a> {
    /// Its decompressed content, to be read to the end before the next entry is asked for.
    Data {
        name: String,
        reader: EntryReader<'a>,
    },
    /// An entry that cannot be decoded, skipped: `bytes` of it were passed over.
    Skipped {
        name: String,
        reason: String,
        bytes: u64,
    },
}

/// The entries of a ZIP archive read from a stream.
pub struct ZipEntries<R> {
    src: R,
    /// Checks of the entry being read, done when the next one is asked for.
    open: Option<Trailer>,
    crc: Crc,
    done: bool,
}

/// What follows an entry's data, and what it must match.
struct Trailer {
    name: String,
    descriptor: bool,
    zip64: bool,
    /// The CRC-32 from the local header; with a data descriptor, the descriptor's.
    crc: u32,
    /// Whether the data was checked (decoded entries) or only passed over.
    check: bool,
}

/// The content of one entry: stored bytes or a deflate stream, CRC-32 counted as it is read.
/// Data that ends early is an error, never a quiet end of the entry.
pub struct EntryReader<'a> {
    src: &'a mut dyn BufRead,
    /// Compressed bytes left, when the local header says.
    left: Option<u64>,
    /// `None` for a stored entry.
    inflate: Option<Decompress>,
    ended: bool,
    crc: &'a mut Crc,
}

impl Read for EntryReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() || self.ended {
            return Ok(0);
        }
        loop {
            if self.inflate.is_none() && self.left == Some(0) {
                self.ended = true;
                return Ok(0);
            }
            let avail = self.src.fill_buf()?;
            let limit = self
                .left
                .map_or(avail.len(), |l| avail.len().min(l as usize));
            let input = &avail[..limit];
            let input_empty = input.is_empty();
            let (consumed, produced) = match &mut self.inflate {
                None => {
                    let n = input.len().min(buf.len());
                    buf[..n].copy_from_slice(&input[..n]);
                    (n, n)
                }
                Some(z) => {
                    let (i, o) = (z.total_in(), z.total_out());
                    let status = z
                        .decompress(input, buf, FlushDecompress::None)
                        .map_err(|e| invalid(format!("corrupt deflate data: {e}")))?;
                    self.ended = status == Status::StreamEnd;
                    ((z.total_in() - i) as usize, (z.total_out() - o) as usize)
                }
            };
            self.src.consume(consumed);
            if let Some(l) = &mut self.left {
                *l -= consumed as u64;
            }
            self.crc.update(&buf[..produced]);
            if produced > 0 || self.ended {
                return Ok(produced);
            }
            if input_empty {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the ZIP entry's data ends early (truncated)",
                ));
            }
            if consumed == 0 {
                return Err(invalid("corrupt deflate data: no progress".into()));
            }
        }
    }
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

fn u16_at(b: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([b[i], b[i + 1]])
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

fn u64_at(b: &[u8], i: usize) -> u64 {
    let mut a = [0; 8];
    a.copy_from_slice(&b[i..i + 8]);
    u64::from_le_bytes(a)
}

fn method_name(m: u16) -> &'static str {
    match m {
        1..=6 => "shrink/reduce/implode",
        9 => "deflate64",
        12 => "bzip2",
        14 => "LZMA",
        93 => "zstd",
        95 => "xz",
        98 => "PPMd",
        99 => "AES encryption",
        _ => "unknown",
    }
}

impl<R: BufRead> ZipEntries<R> {
    pub fn new(src: R) -> Self {
        ZipEntries {
            src,
            open: None,
            crc: Crc::new(),
            done: false,
        }
    }

    /// The next entry, `None` after the last one (at the central directory). An error means the
    /// archive cannot be read any further: corrupt, truncated, or an entry that cannot be passed.
    pub fn next_entry(&mut self) -> io::Result<Option<Entry<'_>>> {
        if self.done {
            return Ok(None);
        }
        if let Some(t) = self.open.take() {
            self.finish(t)?;
        }
        let mut sig = [0; 4];
        if let Err(e) = self.src.read_exact(&mut sig) {
            return Err(if e.kind() == io::ErrorKind::UnexpectedEof {
                invalid("the ZIP archive ends before its central directory (truncated)".into())
            } else {
                e
            });
        }
        match u32::from_le_bytes(sig) {
            LOCAL_HEADER => {}
            CENTRAL_HEADER | END_OF_CENTRAL_DIRECTORY | ZIP64_END_OF_CENTRAL_DIRECTORY => {
                self.done = true;
                return Ok(None);
            }
            other => return Err(invalid(format!("not a ZIP local header: {other:#010x}"))),
        }
        let mut h = [0; 26];
        self.src.read_exact(&mut h)?;
        let (flags, method) = (u16_at(&h, 2), u16_at(&h, 4));
        let crc = u32_at(&h, 10);
        let mut csize = u64::from(u32_at(&h, 14));
        let mut name = vec![0; usize::from(u16_at(&h, 22))];
        self.src.read_exact(&mut name)?;
        let name = String::from_utf8_lossy(&name).into_owned();
        let mut extra = vec![0; usize::from(u16_at(&h, 24))];
        self.src.read_exact(&mut extra)?;
        let zip64 = zip64_sizes(&extra);
        if let Some(c) = zip64 {
            if csize == 0xFFFF_FFFF {
                csize = c;
            }
        }
        let descriptor = flags & 0x0008 != 0;
        // With a data descriptor the local sizes may be zero: then the size is unknown here.
        let known = (!descriptor || csize != 0).then_some(csize);
        let mut trailer = Trailer {
            name: name.clone(),
            descriptor,
            zip64: zip64.is_some(),
            crc,
            check: true,
        };
        let unreadable = if flags & 0x0001 != 0 {
            Some("is encrypted".to_string())
        } else if method != 0 && method != 8 {
            Some(format!(
                "uses compression method {method} ({}); stored and deflate are supported",
                method_name(method)
            ))
        } else if method == 0 && known.is_none() {
            Some("is stored with a data descriptor and no size".to_string())
        } else {
            None
        };
        if let Some(why) = unreadable {
            let reason = format!("ZIP entry {name} {why}");
            let Some(bytes) = known else {
                return Err(invalid(format!(
                    "{reason}, and its size is not in its local header: the entries after it cannot be found"
                )));
            };
            let skipped = io::copy(&mut (&mut self.src).take(bytes), &mut io::sink())?;
            if skipped < bytes {
                return Err(invalid(format!("{reason}, and the archive ends inside it")));
            }
            trailer.check = false;
            self.open = Some(trailer);
            return Ok(Some(Entry::Skipped {
                name,
                reason,
                bytes,
            }));
        }
        self.crc.reset();
        self.open = Some(trailer);
        Ok(Some(Entry::Data {
            name,
            reader: EntryReader {
                src: &mut self.src,
                left: known,
                inflate: (method == 8).then(|| Decompress::new(false)),
                ended: false,
                crc: &mut self.crc,
            },
        }))
    }

    /// After an entry's data: its data descriptor, and its CRC-32.
    fn finish(&mut self, mut t: Trailer) -> io::Result<()> {
        if t.descriptor {
            let mut first = [0; 4];
            self.src.read_exact(&mut first)?;
            let mut rest = vec![0; if t.zip64 { 16 } else { 8 }];
            let crc = if u32::from_le_bytes(first) == DATA_DESCRIPTOR {
                let mut c = [0; 4];
                self.src.read_exact(&mut c)?;
                u32::from_le_bytes(c)
            } else {
                u32::from_le_bytes(first)
            };
            self.src.read_exact(&mut rest)?;
            t.crc = crc;
        }
        if t.check && self.crc.sum() != t.crc {
            return Err(invalid(format!(
                "ZIP entry {}: CRC-32 mismatch (corrupt data)",
                t.name
            )));
        }
        Ok(())
    }
}

/// The compressed size of a ZIP64 extended-information extra field (which a local header holds
/// as uncompressed, compressed), if there is one.
fn zip64_sizes(extra: &[u8]) -> Option<u64> {
    let mut i = 0;
    while i + 4 <= extra.len() {
        let (id, len) = (u16_at(extra, i), usize::from(u16_at(extra, i + 2)));
        let body = extra.get(i + 4..i + 4 + len)?;
        if id == 0x0001 {
            return Some(if body.len() >= 16 { u64_at(body, 8) } else { 0 });
        }
        i += 4 + len;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// An archive of `entries` (name, data, deflate?), local headers with sizes.
    fn archive(entries: &[(&str, &[u8], bool)]) -> Vec<u8> {
        let mut z = Vec::new();
        for (name, data, deflate) in entries {
            let body = if *deflate {
                let mut e =
                    flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
                e.write_all(data).unwrap();
                e.finish().unwrap()
            } else {
                data.to_vec()
            };
            let mut crc = Crc::new();
            crc.update(data);
            z.extend(LOCAL_HEADER.to_le_bytes());
            z.extend([20, 0, 0, 0]);
            z.extend(u16::from(*deflate).wrapping_mul(8).to_le_bytes());
            z.extend([0; 4]);
            z.extend(crc.sum().to_le_bytes());
            z.extend((body.len() as u32).to_le_bytes());
            z.extend((data.len() as u32).to_le_bytes());
            z.extend((name.len() as u16).to_le_bytes());
            z.extend(0u16.to_le_bytes());
            z.extend(name.as_bytes());
            z.extend(body);
        }
        z.extend(END_OF_CENTRAL_DIRECTORY.to_le_bytes());
        z.extend([0; 18]);
        z
    }

    fn contents(z: &[u8]) -> io::Result<Vec<(String, Vec<u8>)>> {
        let mut entries = ZipEntries::new(io::BufReader::new(z));
        let mut out = vec![];
        while let Some(e) = entries.next_entry()? {
            match e {
                Entry::Data { name, mut reader } => {
                    let mut v = vec![];
                    reader.read_to_end(&mut v)?;
                    out.push((name, v));
                }
                Entry::Skipped { name, .. } => out.push((name, b"SKIPPED".to_vec())),
            }
        }
        Ok(out)
    }

    #[test]
    fn large_deflate_and_stored_entries_in_order() {
        let big: Vec<u8> = (0..3_000_000u32)
            .flat_map(|i| {
                format!("{{\"i\":{i},\"h\":{}}}\n", i.wrapping_mul(2654435761)).into_bytes()
            })
            .take(5_000_000)
            .collect();
        let z = archive(&[
            ("a", &big, true),
            ("b", b"stored\n", false),
            ("c", b"x\n", true),
        ]);
        let got = contents(&z).unwrap();
        assert_eq!(got.len(), 3);
        assert!(got[0].1 == big, "big entry differs");
        assert_eq!(got[1].1, b"stored\n");
        assert_eq!(got[2].1, b"x\n");
        let mut all = vec![];
        crate::record::decompress::decompress(io::Cursor::new(z.clone()))
            .unwrap()
            .read_to_end(&mut all)
            .unwrap();
        assert_eq!(all.len(), big.len() + 9);
        // Cut anywhere: an error, never a quiet end.
        for cut in [40, z.len() / 3, z.len() - 30] {
            assert!(contents(&z[..cut]).is_err(), "cut at {cut}");
        }
    }
}
