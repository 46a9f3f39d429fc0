//! `f4a-indexer check` against the real stack: exit 0 when the queue, the cluster and a probe
//! write all work (and the probe is gone afterwards), exit 1 with the failing line for each
//! broken piece.

mod common;

use std::collections::HashMap;

use common::aws_tools::{CredentialsEndpoint, SigV4Proxy};
use common::*;

/// (exit code, stdout) of `f4a-indexer check`.
async fn check(env: &HashMap<String, String>) -> (i32, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_f4a-indexer"))
        .arg("check")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .envs(env)
        .output()
        .await
        .expect("running check");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    (
        out.status.code().unwrap_or(-1),
        format!("{stdout}\n--- stderr ---\n{stderr}"),
    )
}

/// The result column of a check's line (`ok`, `warn`, `FAIL`).
fn verdict<'a>(out: &'a str, what: &str) -> &'a str {
    out.lines()
        .find(|l| l.split_whitespace().next() == Some(what))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or_else(|| panic!("no {what} line in:\n{out}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_stack_passes_and_the_probe_is_gone() {
    let w = World::new("check").await;
    let mut env = w.env();
    env.insert("ES_API_KEY".into(), "probe:not-checked-by-this-node".into());
    let (code, out) = check(&env).await;
    assert_eq!(code, 0, "{out}");
    for what in ["config", "queue", "cluster", "write", "index"] {
        assert_eq!(verdict(&out, what), "ok", "{what}: {out}");
    }
    assert!(out.contains("redrive policy"), "{out}");
    assert!(out.contains("api_key (<redacted>)"), "{out}");
    assert!(
        !out.contains("not-checked-by-this-node"),
        "a secret printed: {out}"
    );
    assert!(
        out.contains(&format!("{}-20", w.prefix)),
        "today's index: {out}"
    );
    assert_eq!(w.es.count(&w.dead()).await, 0, "the probe was deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_broken_piece_fails_with_its_line() {
    let w = World::new("checkbad").await;

    let mut env = w.env();
    env.insert(
        "SQS_QUEUE_URL".into(),
        format!("{}/000000000000/no-such-queue-f4a", localstack_url()),
    );
    let (code, out) = check(&env).await;
    assert_eq!(code, 1, "{out}");
    assert_eq!(verdict(&out, "queue"), "FAIL", "{out}");
    assert!(out.contains("SQS_QUEUE_URL"), "{out}");
    assert_eq!(verdict(&out, "cluster"), "ok", "{out}");

    let mut env = w.env();
    env.insert("ES_URL".into(), format!("http://127.0.0.1:{}", free_port()));
    let (code, out) = check(&env).await;
    assert_eq!(code, 1, "{out}");
    assert_eq!(verdict(&out, "queue"), "ok", "{out}");
    assert_eq!(verdict(&out, "cluster"), "FAIL", "{out}");
    assert!(out.contains("ES_URL"), "{out}");

    // The dead-letter index (created by the probe of the first run) refuses writes.
    let (status, body) =
        w.es.request(
            reqwest::Method::PUT,
            &format!("/{}/_settings", w.dead()),
            Some(serde_json::json!({"index.blocks.write": true})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (code, out) = check(&w.env()).await;
    assert_eq!(code, 1, "{out}");
    assert_eq!(verdict(&out, "cluster"), "ok", "{out}");
    assert_eq!(verdict(&out, "write"), "FAIL", "{out}");
    assert!(out.contains(&w.dead()), "{out}");

    // Signed for the wrong region: the (verifying) cluster does not let the worker in.
    let creds = CredentialsEndpoint::start(300, 60);
    let proxy = SigV4Proxy::start(&w.es.url, &creds.keys_file, "es", &[]);
    let mut env = w.env();
    creds.worker_env(&mut env);
    env.insert("ES_URL".into(), proxy.url.clone());
    env.insert("ES_AUTH".into(), "sigv4".into());
    env.insert("AWS_REGION".into(), "eu-west-1".into());
    let (code, out) = check(&env).await;
    assert_eq!(code, 1, "{out}");
    assert_eq!(verdict(&out, "cluster"), "FAIL", "{out}");
    assert!(out.contains("HTTP 403") && out.contains("ES_AUTH"), "{out}");
    assert!(out.contains("sigv4 (service es, region eu-west-1"), "{out}");
}
