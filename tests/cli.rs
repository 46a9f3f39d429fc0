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
