//! Security of the cluster connection, through the fault-injecting proxy: secrets (password,
//! API key) never reach the logs, whatever the log level and even when the cluster refuses them;
//! TLS is verified by default, `ES_CA_CERT` trusts a private CA, `ES_TLS_SKIP_VERIFY` says so.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::faulty::*;
use common::proxy::{Proxy, TlsIdentity};
use common::*;

const MINUTE: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// Secrets never reach the logs.
const SECRET_PASSWORD: &str = "pw-Zq8XvT3kL9mNr2Wd";
const SECRET_API_KEY_ID: &str = "keyid-f4a";
const SECRET_API_KEY: &str = "ak-Yb7HcJ4pQ6sVt1Ue";

fn api_key_b64() -> String {
    // base64 of "id:key", by hand (no base64 crate among the dev-dependencies).
    const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let input = format!("{SECRET_API_KEY_ID}:{SECRET_API_KEY}").into_bytes();
    let mut out = String::new();
    for c in input.chunks(3) {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for k in 0..4 {
            if k <= c.len() {
                out.push(T[(n >> (18 - 6 * k) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn assert_secret_free(log: &str) {
    for s in [SECRET_PASSWORD, SECRET_API_KEY, &api_key_b64()] {
        assert!(!log.contains(s), "secret {s} in the log:\n{log}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_never_appear_in_logs() {
    let (w, p) = world_with_proxy("secret").await;
    let verbose = "debug,aws=info,aws_smithy_runtime=info,aws_smithy_runtime_api=info,aws_config=info,aws_sdk_sqs=info,aws_sdk_s3=info,elasticsearch=trace,reqwest=trace,hyper=trace,hyper_util=trace";

    // Basic auth, accepted (neither the test node, without a security plugin, nor osmem checks
    // it), JSON logs at debug.
    w.put_and_wait("a.json", ndjson(20, "a")).await;
    let env = env_via(
        &w,
        &p,
        &[
            ("ES_USERNAME", "elastic"),
            ("ES_PASSWORD", SECRET_PASSWORD),
            ("LOG_FORMAT", "json"),
            ("RUST_LOG", verbose),
        ],
    );
    let log = run_until_idle(&env, MINUTE).await;
    assert_secret_free(&log);
    assert_eq!(w.es.count(&w.data()).await, 20);
    assert!(
        p.state
            .auth_headers
            .lock()
            .unwrap()
            .iter()
            .any(|h| h.starts_with("Basic ")),
        "the password was sent, so its absence from the log means something"
    );

    // API key, refused with 401 for a while (the worker logs the failures), then accepted.
    w.put_and_wait("b.json", ndjson(20, "b")).await;
    p.state.unauthorized.store(true, Ordering::SeqCst);
    let env = env_via(
        &w,
        &p,
        &[
            ("ES_API_KEY", &api_key_b64()),
            ("RUST_LOG", verbose),
            ("RETRY_MAX_BACKOFF_MS", "500"),
        ],
    );
    let mut worker = Worker::spawn(&env, &["--exit-when-idle"]);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        w.es.count(&w.data()).await,
        20,
        "nothing indexed while refused"
    );
    p.state.unauthorized.store(false, Ordering::SeqCst);
    assert_eq!(worker.wait(MINUTE).await, 0);
    let log = worker.log_text();
    assert!(log.contains("401"), "the refusals are logged:\n{log}");
    assert_secret_free(&log);
    assert_eq!(w.es.count(&w.data()).await, 40);
    assert!(p
        .state
        .auth_headers
        .lock()
        .unwrap()
        .iter()
        .any(|h| h == &format!("ApiKey {}", api_key_b64())));

    // A configuration error that involves the secrets does not print them either.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_f4a-indexer"))
        .env_clear()
        .envs([
            ("SQS_QUEUE_URL", "http://x/q"),
            ("ES_USERNAME", "elastic"),
            ("ES_PASSWORD", SECRET_PASSWORD),
            ("ES_API_KEY", &api_key_b64()),
        ])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_secret_free(&String::from_utf8_lossy(&out.stderr));
    assert_secret_free(&String::from_utf8_lossy(&out.stdout));
}

// ---------------------------------------------------------------------------------------------
// Security: TLS verification on by default, ES_CA_CERT for a private CA.

#[tokio::test(flavor = "multi_thread")]
async fn tls_is_verified_by_default_and_es_ca_cert_trusts_a_private_ca() {
    let w = World::new("tls").await;
    let (ca_pem, identity) = TlsIdentity::private_ca_and_server();
    let p = Proxy::start_tls(&w.es.url, &identity).await;
    w.put_and_wait("tls.json", ndjson(30, "tls")).await;

    // No ES_CA_CERT: the certificate is not trusted; nothing is sent, the message is kept.
    let env = env_via(&w, &p, &[("RETRY_MAX_BACKOFF_MS", "500")]);
    let mut worker = Worker::spawn(&env, &[]);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        p.state.connections.load(Ordering::SeqCst) >= 2,
        "the worker tried (and retried) to connect"
    );
    assert_eq!(
        p.state.requests.load(Ordering::SeqCst),
        0,
        "no request got through"
    );
    assert_eq!(w.es.count(&w.data()).await, 0);
    assert_eq!(w.aws.depth(&w.queue_url).await, (0, 1), "message kept");
    worker.signal("TERM");
    assert_eq!(worker.wait(Duration::from_secs(30)).await, 0);
    let log = worker.log_text();
    assert!(
        log.to_lowercase().contains("certificate"),
        "the failure names the certificate:\n{log}"
    );

    // With the private CA: indexed.
    let ca = std::env::temp_dir().join(format!("{}.pem", unique("f4a-ca")));
    std::fs::write(&ca, ca_pem).unwrap();
    let env = env_via(&w, &p, &[("ES_CA_CERT", ca.to_str().unwrap())]);
    run_until_idle(&env, MINUTE).await;
    assert_exactly_once(&w, &[("tls.json", 30)]).await;
    assert_eq!(w.aws.depth(&w.queue_url).await, (0, 0));
    let _ = std::fs::remove_file(ca);

    // ES_TLS_SKIP_VERIFY: explicit, and loudly logged; then the untrusted certificate is accepted.
    w.put_and_wait("tls-skip.json", ndjson(10, "skip")).await;
    let env = env_via(&w, &p, &[("ES_TLS_SKIP_VERIFY", "true")]);
    let log = run_until_idle(&env, MINUTE).await;
    assert!(
        log.contains("ES_TLS_SKIP_VERIFY=true") && log.contains("NOT verified"),
        "skipping verification is logged loudly:\n{log}"
    );
    assert_exactly_once(&w, &[("tls.json", 30), ("tls-skip.json", 10)]).await;
}
