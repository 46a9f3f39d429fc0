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
use f4a_indexer::record::decompress::decompress;
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
        with_id: true,
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
