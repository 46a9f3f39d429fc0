//! `f4a-indexer backfill` against LocalStack's S3 and the real search node: it selects objects
//! by the Firehose date-hour in their keys, indexes them through the service's own path (the
//! deterministic `_id`s: a second backfill changes nothing), `--dry-run` indexes nothing, and bad
//! flags exit 2. The recovery drill ends with the dead-letter half: a broken mapping fixed, then
//! `replay-dead-letters`.

mod common;

use std::collections::HashMap;
use std::process::{Command, Output};
use std::time::Duration;

use common::tool::{assert_exit, summary};
use common::World;

const RECORDS: usize = 40;

fn records(hour: u32) -> Vec<u8> {
    (0..RECORDS)
        .map(|i| {
            format!(
                "{{\"@timestamp\":\"2026-11-20T{hour:02}:{:02}:00.000Z\",\"message\":\"record {i} of hour {hour}\",\"n\":{i}}}\n",
                i % 60
            )
        })
        .collect::<String>()
        .into_bytes()
}

async fn backfill(env: &HashMap<String, String>, args: &[&str]) -> Output {
    common::tool::run_tool("backfill", env, args).await
}

#[tokio::test(flavor = "multi_thread")]
async fn backfill_indexes_the_selected_hours_once_and_a_dry_run_nothing() {
    let w = World::new("backfill").await;
    for hour in [10, 11, 12] {
        let key = format!("firehose/2026/11/20/{hour:02}/stream-{hour}.json");
        w.aws.put(&w.bucket, &key, records(hour)).await;
    }
    let checkpoint = std::env::temp_dir().join(format!("{}.checkpoint", w.bucket));
    let checkpoint = checkpoint.to_string_lossy().to_string();
    let env = w.env();
    let args = [
        "--bucket",
        &w.bucket,
        "--prefix",
        "firehose/",
        "--from",
        "2026-11-20T11:00:00Z",
        "--to",
        "2026-11-20T13:00:00Z",
        "--checkpoint",
        &checkpoint,
    ];

    let mut dry: Vec<&str> = args.to_vec();
    dry.push("--dry-run");
    let out = backfill(&env, &dry).await;
    assert_exit(&out, 0, "exit code");
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        listed.contains("stream-11") && listed.contains("stream-12"),
        "{listed}"
    );
    assert!(
        !listed.contains("stream-10"),
        "hour 10 is before --from: {listed}"
    );
    assert_eq!(w.es.count(&w.data()).await, 0, "a dry run indexes nothing");

    for pass in 1..=2 {
        let out = backfill(&env, &args).await;
        assert_exit(&out, 0, &format!("pass {pass}"));
        let docs = w.es.all_docs(&w.data()).await;
        assert_eq!(
            docs.len(),
            2 * RECORDS,
            "pass {pass}: hours 11 and 12, each record once"
        );
        assert!(
            docs.iter().all(|d| !d["message"]
                .as_str()
                .unwrap_or_default()
                .ends_with("hour 10")),
            "pass {pass}: nothing of hour 10"
        );
    }
    assert!(
        !std::path::Path::new(&checkpoint).exists(),
        "a complete run removes its checkpoint"
    );

    for bad in [
        &["--bucket", &w.bucket, "--concurrency", "0"][..],
        &["--bucket", &w.bucket, "--from", "yesterday"][..],
        &["--prefix", "x"][..],
    ] {
        let out = backfill(&env, bad).await;
        assert_exit(&out, 2, &format!("{bad:?}"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_interrupted_backfill_continues_from_its_checkpoint_and_sends_each_record_once() {
    let w = World::new("bfresume").await;
    let hours = 8u32;
    for hour in 0..hours {
        let key = format!("fh/2026/11/20/{hour:02}/part-{hour}.json");
        w.aws.put(&w.bucket, &key, records(hour)).await;
    }
    let total = hours as u64 * RECORDS as u64;
    let checkpoint = std::env::temp_dir().join(format!("{}.checkpoint", w.bucket));
    let checkpoint_arg = checkpoint.to_string_lossy().to_string();
    let mut env = w.env();
    // Slow enough (one object a second) to be stopped half-way.
    env.insert("RATE_LIMIT_DOCS_PER_SEC".into(), RECORDS.to_string());
    let args: Vec<String> = [
        "backfill",
        "--bucket",
        &w.bucket,
        "--prefix",
        "fh/",
        "--concurrency",
        "1",
        "--checkpoint",
        &checkpoint_arg,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();

    let child = Command::new(env!("CARGO_BIN_EXE_f4a-indexer"))
        .args(&args)
        .env_clear()
        .envs(&env)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start backfill");
    w.es.wait_count(&w.data(), 2 * RECORDS as u64, Duration::from_secs(60))
        .await;
    let pid = child.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    let first = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert_exit(&first, 1, "interrupted");
    assert!(
        checkpoint.exists(),
        "the checkpoint is kept for the next run"
    );
    let first_docs = summary(&first)["documents"].as_u64().unwrap_or(0);
    assert!(first_docs < total, "stopped before the end: {first_docs}");

    env.insert("RATE_LIMIT_DOCS_PER_SEC".into(), "0".into());
    let second = backfill(
        &env,
        &args[1..].iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .await;
    assert_exit(&second, 0, "exit code");
    let second_docs = summary(&second)["documents"].as_u64().unwrap_or(0);
    assert_eq!(
        first_docs + second_docs,
        total,
        "the second run starts after the checkpoint: no record sent twice, none skipped"
    );
    assert_eq!(w.es.count(&w.data()).await, total);
    assert!(!checkpoint.exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn via_queue_announces_each_object_once_and_the_service_indexes_them() {
    let w = World::new("bfqueue").await;
    // A bucket that notifies nobody: only the backfill announces its objects.
    let bucket = format!("{}-quiet", w.bucket);
    w.aws
        .s3
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    for i in 0..3u32 {
        // Not Firehose's layout: selected by LastModified.
        w.aws
            .put(&bucket, &format!("exports/part-{i}.json"), records(i))
            .await;
    }
    w.aws.purge_visible(&w.queue_url).await;
    let env = w.env();
    let tomorrow = (chrono::Utc::now() + chrono::Duration::days(1))
        .format("%Y-%m-%d")
        .to_string();

    let out = backfill(
        &env,
        &["--bucket", &bucket, "--from", &tomorrow, "--dry-run"],
    )
    .await;
    assert_exit(&out, 0, "exit code");
    assert_eq!(
        summary(&out)["objects_selected"],
        0,
        "LastModified is today: nothing from tomorrow on"
    );

    let checkpoint = std::env::temp_dir().join(format!("{bucket}.checkpoint"));
    let out = backfill(
        &env,
        &[
            "--bucket",
            &bucket,
            "--prefix",
            "exports/",
            "--via-queue",
            "--checkpoint",
            &checkpoint.to_string_lossy(),
        ],
    )
    .await;
    assert_exit(&out, 0, "exit code");
    assert_eq!(
        w.aws
            .wait_visible(&w.queue_url, 3, Duration::from_secs(30))
            .await,
        3
    );
    assert_eq!(
        w.es.count(&w.data()).await,
        0,
        "--via-queue indexes nothing itself"
    );

    common::run_until_idle(&env, Duration::from_secs(60)).await;
    assert_eq!(w.es.count(&w.data()).await, 3 * RECORDS as u64);
    assert_eq!(w.aws.depth(&w.queue_url).await, (0, 0));
}

/// Every document of `index` by `_id`, its `_source` without `event.ingested` (the one field set
/// anew at each indexing).
async fn contents(w: &World) -> std::collections::BTreeMap<String, serde_json::Value> {
    w.es.all_docs(&w.data())
        .await
        .into_iter()
        .map(|mut d| {
            if let Some(event) = d["_source"]["event"].as_object_mut() {
                event.remove("ingested");
            }
            let id = d["_id"].as_str().unwrap_or_default().to_string();
            (id, d["_source"].take())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn recovery_drill_a_deleted_cluster_comes_back_the_same_from_s3() {
    let w = World::new("drill").await;
    for day in [18u32, 19, 20] {
        for hour in [9u32, 17] {
            let key = format!("firehose/2026/11/{day}/{hour:02}/stream-{day}-{hour}.json");
            let body: String = (0..RECORDS)
                .map(|i| {
                    format!(
                        "{{\"@timestamp\":\"2026-11-{day}T{hour:02}:{:02}:00.000Z\",\"message\":\"day {day} hour {hour} record {i}\",\"n\":{i}}}\n",
                        i % 60
                    )
                })
                .collect();
            w.put_and_wait(&key, body.into_bytes()).await;
        }
    }
    let env = w.env();
    common::run_until_idle(&env, Duration::from_secs(120)).await;
    let before = contents(&w).await;
    assert_eq!(before.len(), 6 * RECORDS, "indexed by the service");
    assert_eq!(
        w.es.indices(&w.data()).await.len(),
        3,
        "three daily indices"
    );

    w.es.delete_indices(&w.data()).await;
    assert_eq!(
        w.es.count(&w.data()).await,
        0,
        "the cluster lost everything"
    );

    let checkpoint = std::env::temp_dir().join(format!("{}.checkpoint", w.bucket));
    let args = [
        "--bucket",
        &w.bucket,
        "--prefix",
        "firehose/",
        "--checkpoint",
        &checkpoint.to_string_lossy(),
    ];
    let out = backfill(&env, &args).await;
    assert_exit(&out, 0, "exit code");
    let after = contents(&w).await;
    assert!(
        after == before,
        "same ids, same count, same content per document"
    );

    let out = backfill(&env, &args).await;
    assert_exit(&out, 0, "exit code");
    assert!(
        contents(&w).await == before,
        "a second backfill changes nothing"
    );

    // The dead-letter half: a mapping breaks (a template that refuses unknown fields), a day
    // of records with a new field is dead-lettered, the mapping is fixed, the replay brings
    // them into their daily index and empties the dead-letter index.
    let template = format!("{}-user", w.prefix);
    w.es.user_template(&template, &w.data(), "strict").await;
    let body: String = (0..RECORDS)
        .map(|i| format!("{{\"@timestamp\":\"2026-11-21T09:{:02}:00.000Z\",\"message\":\"day 21 record {i}\",\"n\":{i},\"new_field\":{}}}\n", i % 60, i % 2 == 0))
        .collect();
    w.put_and_wait("firehose/2026/11/21/09/stream-21-9.json", body.into_bytes())
        .await;
    common::run_until_idle(&env, Duration::from_secs(120)).await;
    assert_eq!(
        w.es.count(&w.dead()).await,
        RECORDS as u64,
        "all dead-lettered"
    );
    w.es.user_template(&template, &w.data(), "true").await;
    let out = common::tool::run_tool("replay-dead-letters", &env, &[]).await;
    assert_exit(&out, 0, "exit code");
    assert_eq!(
        w.es.count(&w.dead()).await,
        0,
        "the dead-letter index is empty"
    );
    let day21 = w.es.all_docs(&format!("{}-2026.11.21", w.prefix)).await;
    assert_eq!(day21.len(), RECORDS, "in their daily index");
    assert!(day21.iter().all(|d| d["_source"]["new_field"].is_boolean()));
    assert_eq!(contents(&w).await.len(), before.len() + RECORDS);
}
