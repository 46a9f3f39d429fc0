//! Single-thread throughput of the worker's own record path against a practical baseline.
//!
//! ```text
//! cargo bench --bench pipeline -- FILE.gz [--runs N]
//! ```
//!
//! The compressed file is read into memory once; every run then starts from those bytes, so no
//! disk or network is measured. Printed as one JSON object on stdout (used by `scripts/bench.sh`):
//!
//! - `baseline`: flate2 gunzip + `serde_json` parse of each line into a `Value` + re-serialize
//!   into a bulk body (`{"index":{}}` action line, source line), body cleared every 5 MiB.
//! - `pipeline`: what the object indexer's reader (`src/object.rs`) does per object, with the sink replaced by a
//!   counter: `record::decompress` → `Framer` → `Decoder::decode` → `Normalizer::normalize_item`
//!   → `Doc::encode`, docs gathered into batches of `BULK_MAX_DOCS` and concatenated into one
//!   body as the bulk sink does, each document's ack token resolved.
//! - `stages`: the same path cut after each stage (cumulative), to see where the time goes.
//! - `decompress`: the cost of each accepted compression (issue 15): the input's records packed
//!   in memory as gzip (the input file itself), zstd (level 3), the Snappy framing format,
//!   Hadoop Snappy (256 KiB blocks, as Hadoop writes) and ZIP (one deflate entry), each read back
//!   through `record::decompress::open` to the last byte.
//!
//! Runs alternate between the variants and the best run of each counts (noisy shared machines:
//! the minimum is the least disturbed).

use std::io::{BufRead, BufReader, Cursor, Read};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use chrono::{DateTime, Utc};
use f4a_indexer::ack::{AckGroup, Delivered};
use f4a_indexer::config::Config;
use f4a_indexer::record::decompress::{decompress, open, Content};
use f4a_indexer::record::zip::Entry;
use f4a_indexer::record::{Decoder, Framer, Normalizer, ObjectContext};
use f4a_indexer::sink::Doc;
use flate2::read::MultiGzDecoder;
use serde_json::Value;

const BODY_FLUSH: usize = 5 * 1024 * 1024;

#[derive(Default, Clone, Copy)]
struct Outcome {
    docs: u64,
    in_bytes: u64,
    out_bytes: u64,
}

fn baseline(gz: &[u8]) -> Outcome {
    let mut reader = BufReader::with_capacity(64 * 1024, MultiGzDecoder::new(gz));
    let mut line = Vec::with_capacity(4096);
    let mut body: Vec<u8> = Vec::with_capacity(BODY_FLUSH + 64 * 1024);
    let mut o = Outcome::default();
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line).expect("gunzip");
        if n == 0 {
            break;
        }
        o.in_bytes += n as u64;
        let text = line.trim_ascii();
        if text.is_empty() {
            continue;
        }
        let v: Value = serde_json::from_slice(text).expect("baseline input is valid JSON");
        body.extend_from_slice(b"{\"index\":{}}\n");
        serde_json::to_writer(&mut body, &v).expect("serialize");
        body.push(b'\n');
        o.docs += 1;
        if body.len() >= BODY_FLUSH {
            o.out_bytes += body.len() as u64;
            std::hint::black_box(&body);
            body.clear();
        }
    }
    o.out_bytes += body.len() as u64;
    std::hint::black_box(&body);
    o
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Stage {
    Gunzip,
    Frame,
    Decode,
    Normalize,
    Full,
}

fn object_context() -> Arc<ObjectContext> {
    Arc::new(ObjectContext {
        bucket: "bench-bucket".into(),
        key: "2026/11/24/10/f4a-bench-1-2026-11-24-10-00-00-0123456789ab".into(),
        version: "9b2cf535f27731c974343645a3985328".into(),
        last_modified: DateTime::<Utc>::from_timestamp(1_795_550_400, 0).unwrap(),
        ingested: "2026-11-24T10:00:01.000Z".into(),
        event_time: None,
        provenance: Default::default(),
    })
}

/// The worker's per-object path (the reader in `src/object.rs`), sink = counter.
fn pipeline(gz: &Arc<[u8]>, normalizer: &Normalizer, max_docs: usize, stage: Stage) -> Outcome {
    let max_record = 1024 * 1024;
    let meta = object_context();
    let group = AckGroup::new();
    let mut o = Outcome::default();
    let mut reader = decompress(Cursor::new(gz.clone())).expect("decompress");
    if stage == Stage::Gunzip {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = reader.read(&mut buf).expect("gunzip");
            if n == 0 {
                break;
            }
            o.in_bytes += n as u64;
        }
        return o;
    }
    let mut framer = Framer::new(reader, max_record);
    let mut decoder = Decoder::new(max_record);
    let mut batch: Vec<Doc> = Vec::with_capacity(max_docs);
    let flush = |batch: &mut Vec<Doc>, o: &mut Outcome| {
        // As BulkSink::send: one body per request, then every document is settled.
        let size: usize = batch.iter().map(|d| d.body.len()).sum();
        let mut body = BytesMut::with_capacity(size);
        for d in batch.iter() {
            body.extend_from_slice(&d.body);
        }
        std::hint::black_box(body.freeze());
        // As Reader::flush: the chunk counted for /status (one relaxed add).
        f4a_indexer::status::board().docs_in(batch.len());
        o.out_bytes += size as u64;
        for d in batch.drain(..) {
            d.ack.resolve(Delivered::Indexed);
        }
    };
    while let Some(frame) = framer.next_frame().expect("frame") {
        if stage == Stage::Frame {
            o.docs += 1;
            std::hint::black_box(frame.data);
            continue;
        }
        let _ = decoder.decode(&frame, |item| {
            o.docs += 1;
            if stage == Stage::Decode {
                std::hint::black_box(&item);
                return Ok::<(), ()>(());
            }
            let (n, offset, sub) = normalizer
                .normalize_item(item, &meta)
                .unwrap_or_else(|d| panic!("bench input must decode: {}", d.reason));
            if stage == Stage::Normalize {
                std::hint::black_box(&n);
                return Ok(());
            }
            batch.push(Doc::encode(
                n,
                meta.clone(),
                offset,
                sub,
                false,
                group.token(),
            ));
            if batch.len() >= max_docs {
                flush(&mut batch, &mut o);
            }
            Ok(())
        });
    }
    flush(&mut batch, &mut o);
    o.in_bytes = framer.position();
    o
}

/// `plain` packed in each accepted compression but gzip: (name, bytes).
fn packed(plain: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    use std::io::Write;
    let zstd = zstd::encode_all(plain, 3).expect("zstd into a Vec");
    let mut w = snap::write::FrameEncoder::new(Vec::new());
    w.write_all(plain).expect("snappy into a Vec");
    let snappy = w.into_inner().expect("snappy into a Vec");
    let mut hadoop = Vec::new();
    for block in plain.chunks(256 * 1024) {
        let c = snap::raw::Encoder::new()
            .compress_vec(block)
            .expect("snappy block");
        hadoop.extend((block.len() as u32).to_be_bytes());
        hadoop.extend((c.len() as u32).to_be_bytes());
        hadoop.extend(c);
    }
    let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(plain).expect("deflate into a Vec");
    let deflated = e.finish().expect("deflate into a Vec");
    let mut crc = flate2::Crc::new();
    crc.update(plain);
    let mut zip = b"PK\x03\x04\x14\x00\x00\x00\x08\x00\x00\x00\x00\x00".to_vec();
    zip.extend(crc.sum().to_le_bytes());
    zip.extend((deflated.len() as u32).to_le_bytes());
    zip.extend((plain.len() as u32).to_le_bytes());
    zip.extend((b"a.ndjson".len() as u16).to_le_bytes());
    zip.extend(0u16.to_le_bytes());
    zip.extend(b"a.ndjson");
    zip.extend(deflated);
    zip.extend(b"PK\x05\x06");
    zip.extend([0; 18]);
    vec![
        ("zstd", zstd),
        ("snappy", snappy),
        ("hadoop-snappy", hadoop),
        ("zip", zip),
    ]
}

/// Reads `data` through the worker's decompression to the last byte; the bytes it yields.
fn decompress_all(data: &Arc<[u8]>) -> Outcome {
    let mut buf = vec![0u8; 64 * 1024];
    let mut o = Outcome::default();
    let mut drain = |r: &mut dyn Read, o: &mut Outcome| loop {
        let n = r.read(&mut buf).expect("decompress");
        if n == 0 {
            break;
        }
        o.in_bytes += n as u64;
    };
    match open(Cursor::new(data.clone())).expect("open").1 {
        Content::Stream(mut r) => drain(&mut r, &mut o),
        Content::Zip(mut entries) => {
            while let Some(e) = entries.next_entry().expect("zip entry") {
                if let Entry::Data { mut reader, .. } = e {
                    drain(&mut reader, &mut o);
                }
            }
        }
    }
    o
}

/// 2,000 small NDJSON records, gzip.
fn smoke_input() -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    for i in 0..2000 {
        let line = serde_json::json!({"@timestamp": "2026-11-24T10:00:00.000Z", "i": i, "level": "info", "message": "smoke"});
        writeln!(e, "{line}").expect("write to a Vec");
    }
    e.finish().expect("gzip into a Vec")
}

fn main() {
    // `cargo test --all-targets` runs this too, with the test harness's flags: those are ignored,
    // and without a file a small generated input makes it a smoke test of the same code paths.
    let mut args = std::env::args().skip(1);
    let mut file = None;
    let mut runs = 3usize;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--runs" => runs = args.next().and_then(|v| v.parse().ok()).expect("--runs N"),
            flag if flag.starts_with('-') => {}
            other => file = Some(other.to_string()),
        }
    }
    let gz: Arc<[u8]> = match &file {
        Some(f) => std::fs::read(f).expect("read input file").into(),
        None => {
            eprintln!("pipeline bench: no input file (usage: pipeline FILE.gz [--runs N]); smoke run on generated data");
            runs = 1;
            smoke_input().into()
        }
    };
    let cfg = Config::from_lookup(|k| {
        (k == "SQS_QUEUE_URL").then(|| "http://localhost/bench".to_string())
    })
    .expect("default config");
    let normalizer = Normalizer::new(cfg.record.index, cfg.record.timestamp_fields);
    let max_docs = cfg.sink.bulk.max_docs;

    type Variant<'a> = (&'a str, Box<dyn Fn() -> Outcome + 'a>);
    let variants: Vec<Variant> = vec![
        ("baseline", Box::new(|| baseline(&gz))),
        (
            "pipeline",
            Box::new(|| pipeline(&gz, &normalizer, max_docs, Stage::Full)),
        ),
        (
            "stage_gunzip",
            Box::new(|| pipeline(&gz, &normalizer, max_docs, Stage::Gunzip)),
        ),
        (
            "stage_frame",
            Box::new(|| pipeline(&gz, &normalizer, max_docs, Stage::Frame)),
        ),
        (
            "stage_decode",
            Box::new(|| pipeline(&gz, &normalizer, max_docs, Stage::Decode)),
        ),
        (
            "stage_normalize",
            Box::new(|| pipeline(&gz, &normalizer, max_docs, Stage::Normalize)),
        ),
    ];
    // Decompression per format, on the same records.
    let mut plain = Vec::new();
    decompress(Cursor::new(gz.clone()))
        .and_then(|mut r| r.read_to_end(&mut plain))
        .expect("decompress the input");
    let mut formats: Vec<(&str, Arc<[u8]>)> = vec![("gzip", gz.clone())];
    formats.extend(packed(&plain).into_iter().map(|(n, b)| (n, b.into())));
    drop(plain);
    let mut decompressed = serde_json::Map::new();
    for (name, data) in &formats {
        let mut times = Vec::new();
        let mut o = Outcome::default();
        for _ in 0..runs {
            let started = Instant::now();
            o = decompress_all(data);
            times.push(started.elapsed().as_secs_f64());
        }
        let secs = times.iter().copied().fold(f64::MAX, f64::min);
        decompressed.insert(
            (*name).into(),
            serde_json::json!({
                "compressed_bytes": data.len(),
                "uncompressed_bytes": o.in_bytes,
                "best_secs": secs,
                "all_secs": times,
                "mb_per_sec": o.in_bytes as f64 / 1e6 / secs,
                "ratio": o.in_bytes as f64 / data.len() as f64,
            }),
        );
    }
    drop(formats);
    let mut best: Vec<(Duration, Outcome)> =
        vec![(Duration::MAX, Outcome::default()); variants.len()];
    let mut all: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    for _ in 0..runs {
        for (i, (_, f)) in variants.iter().enumerate() {
            let started = Instant::now();
            let o = f();
            let took = started.elapsed();
            all[i].push(took.as_secs_f64());
            if took < best[i].0 {
                best[i] = (took, o);
            }
        }
    }
    let mut out = serde_json::Map::new();
    out.insert("file".into(), file.clone().into());
    out.insert("compressed_bytes".into(), (gz.len() as u64).into());
    out.insert("runs".into(), (runs as u64).into());
    out.insert("decompress".into(), decompressed.into());
    for (i, (name, _)) in variants.iter().enumerate() {
        let (took, o) = best[i];
        let secs = took.as_secs_f64();
        out.insert(
            (*name).into(),
            serde_json::json!({
                "best_secs": secs,
                "all_secs": all[i],
                "docs": o.docs,
                "uncompressed_bytes": o.in_bytes,
                "bulk_bytes": o.out_bytes,
                "docs_per_sec": o.docs as f64 / secs,
                "mb_per_sec": o.in_bytes as f64 / 1e6 / secs,
            }),
        );
    }
    let b = best[0].0.as_secs_f64();
    let p = best[1].0.as_secs_f64();
    out.insert("ratio".into(), (b / p).into());
    println!("{}", Value::Object(out));
}
