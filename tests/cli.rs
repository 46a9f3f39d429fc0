//! The binary's start-up checks that need no running service: it stops before connecting
//! anywhere. (The other bad-configuration cases are in `e2e.rs`.)

use std::process::Output;

fn run(vars: &[(&str, &str)]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_f4a-indexer"))
        .env_clear()
        .envs(vars.iter().copied())
        .output()
        .expect("running the worker")
}

#[test]
fn a_misspelt_variable_exits_2_naming_the_closest_known_one() {
    let queue = ("SQS_QUEUE_URL", "http://127.0.0.1:1/000000000000/q");
    for (typo, value, meant) in [
        ("RATE_LIMIT_DOC_PER_SEC", "100", "RATE_LIMIT_DOCS_PER_SEC"),
        ("BULK_MAX_DOC", "50", "BULK_MAX_DOCS"),
        ("ES_PASWORD", "hunter2", "ES_PASSWORD"),
        ("SQS_WAIT_TIME_SECS", "1", "SQS_WAIT_TIME_SECONDS"),
        ("MAX_INFLIGHT_MESSAGES", "5", "MAX_IN_FLIGHT_MESSAGES"),
    ] {
        let out = run(&[queue, (typo, value)]);
        assert_eq!(out.status.code(), Some(2), "{typo}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(typo) && err.contains(&format!("did you mean {meant}?")),
            "{typo}: {err}"
        );
        assert!(err.contains("accepted"), "{typo}: {err}");
        assert!(
            !err.contains("hunter2"),
            "a misspelt secret is echoed: {err}"
        );
    }
}

#[test]
fn variables_of_other_tools_and_empty_ones_are_not_refused() {
    // No queue at that address: the worker gets past the configuration and keeps retrying the
    // receive, so it is still running when it is stopped.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_f4a-indexer"))
        .env_clear()
        .envs([
            ("SQS_QUEUE_URL", "http://127.0.0.1:1/000000000000/q"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("HEALTH_ADDR", "off"),
            ("LOG_FORMAT", "json"),
            ("OTEL_SERVICE_NAME", "x"),
            ("MALLOC_ARENA_MAX", "2"),
            ("BULK_MAX_DOC", ""),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawning the worker");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let exited = child.try_wait().expect("worker status");
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(
        exited, None,
        "the worker should be running, not exit with {exited:?}"
    );
}

fn lifecycle(vars: &[(&str, &str)], args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_f4a-indexer"))
        .arg("lifecycle-policy")
        .args(args)
        .env_clear()
        .envs(vars.iter().copied())
        .output()
        .expect("running lifecycle-policy")
}

#[test]
fn lifecycle_policy_prints_the_policy_of_es_index_and_the_days() {
    let index = ("ES_INDEX", "logs-%Y.%m.%d");
    let out = lifecycle(
        &[index, ("RETENTION_DAYS", "30")],
        &["--engine", "opensearch"],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let body: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a JSON body");
    let p = &body["policy"];
    assert_eq!(p["ism_template"][0]["index_patterns"][0], "logs-*.*.*");
    assert_eq!(
        p["states"][0]["transitions"][0]["conditions"]["min_index_age"],
        "30d"
    );
    let how = String::from_utf8_lossy(&out.stderr);
    assert!(
        how.contains("PUT _plugins/_ism/policies/f4a-retention"),
        "{how}"
    );

    // --days wins over RETENTION_DAYS; Elasticsearch gets ILM and the variable that attaches it.
    let out = lifecycle(
        &[index, ("RETENTION_DAYS", "30")],
        &[
            "--engine",
            "elasticsearch",
            "--days",
            "7",
            "--name",
            "logs-7d",
        ],
    );
    assert_eq!(out.status.code(), Some(0));
    let body: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(body["policy"]["phases"]["delete"]["min_age"], "7d");
    let how = String::from_utf8_lossy(&out.stderr);
    assert!(
        how.contains("PUT _ilm/policy/logs-7d") && how.contains("ES_ILM_POLICY=logs-7d"),
        "{how}"
    );

    // No days anywhere, an unknown engine, a bad policy name for the template: exit 2.
    let out = lifecycle(&[index], &["--engine", "opensearch"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("RETENTION_DAYS"));
    let out = lifecycle(&[index], &["--engine", "solr", "--days", "3"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("elasticsearch, opensearch"));
    let out = lifecycle(&[index, ("ES_ILM_POLICY", "Bad Name")], &["--days", "3"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ES_ILM_POLICY"));
}
