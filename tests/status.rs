//! `GET /status` and `f4a-indexer top`, the way an operator uses them: the real worker binary on
//! LocalStack and the shared search engine, the counting proxy (tests/common/proxy.rs) between
//! them, and `top` in a real terminal (a tmux session of its own, read with `capture-pane`).
//! What the endpoint and the screen say is checked against what the index holds and what the
//! proxy saw on the wire.
//!
//! The tmux tests need `tmux` (`.ci/run` installs it); without it they fail, unless
//! `F4A_SKIP_TMUX_TEST=1` says to skip them.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::proxy::{ItemFault, Proxy};
use common::tmux::Tmux;
use common::*;
use serde_json::Value;

const MINUTE: Duration = Duration::from_secs(60);

async fn get_status(addr: &str) -> Option<Value> {
    let r = reqwest::get(format!("http://{addr}/status")).await.ok()?;
    if r.status() != 200 {
        return None;
    }
    r.json().await.ok()
}

/// Polls `/status` until `done` holds for it; panics with the worker's log after `timeout`.
async fn status_until(
    worker: &Worker,
    addr: &str,
    timeout: Duration,
    mut done: impl FnMut(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + timeout;
    let mut last = Value::Null;
    loop {
        if let Some(s) = get_status(addr).await {
            if done(&s) {
                return s;
            }
            last = s;
        }
        assert!(
            Instant::now() < deadline,
            "/status never got there; last answer:\n{last:#}\nlog:\n{}",
            worker.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// Every field of `/status` against the index and the proxy: three objects (one with two
/// undecodable records), three documents refused by the cluster, a share of bulk requests
/// failing with 503, a rate limit.
#[tokio::test(flavor = "multi_thread")]
async fn status_counts_what_the_index_holds() {
    let w = World::new("status").await;
    let proxy = Proxy::start(&w.es.url).await;
    let data_prefix = w.prefix.clone();
    // Refused with a reason that quotes a value: it must not reach /status.
    proxy.state.set_item_rule(move |ctx| {
        let i = ctx.source["i"].as_u64().unwrap_or(1);
        (ctx.index.starts_with(&data_prefix)
            && !ctx.index.ends_with("dead-letter")
            && ctx.source["tag"] == "b"
            && i % 100 == 7)
            .then(|| {
                ItemFault::MapperParsing(
                    "failed to parse field [i]. Preview of field's value: 'SECRET-VALUE'".into(),
                )
            })
    });
    proxy.state.fail_bulk(300, 503);
    w.put_and_wait("a.ndjson.gz", gzip(&ndjson(500, "a"))).await;
    w.put_and_wait("b.ndjson", ndjson(300, "b")).await;
    let mut c = ndjson(200, "c");
    // Two records cut short (a text line that merely starts with `{` would be indexed as a
    // message, issue 15): the decoder dead-letters them.
    c.extend_from_slice(b"{\"cut\": \"in the mid\n{\"also\": [1, 2\n");
    w.put_and_wait("c.ndjson", c).await;
    let (indexed, dead, read) = (500 + 297 + 200, 3 + 2, 1002);

    let mut env = w.env();
    env.insert("ES_URL".into(), proxy.url.clone());
    env.insert("RATE_LIMIT_DOCS_PER_SEC".into(), "400".into());
    env.insert("BULK_MAX_DOCS".into(), "100".into());
    env.insert("BULK_CONCURRENCY".into(), "2".into());
    env.insert("MAX_IN_FLIGHT_MESSAGES".into(), "2".into());
    let addr = env["HEALTH_ADDR"].clone();
    let worker = Worker::spawn(&env, &[]);

    // While it works: gauges within their limits, documents flowing.
    let (mut max_busy, mut max_in_flight, mut saw_out_rate) = (0, 0, false);
    let s = status_until(&worker, &addr, 2 * MINUTE, |s| {
        max_busy = max_busy.max(n(&s["bulk"]["busy"]));
        max_in_flight = max_in_flight.max(n(&s["messages"]["in_flight"]));
        saw_out_rate |= f(&s["documents"]["last_10s"]["out"]) > 0.0;
        let d = &s["documents"];
        n(&d["indexed"]) + n(&d["dead_lettered"]) == read
            && n(&s["messages"]["deleted"]) == 3
            && n(&s["messages"]["in_flight"]) == 0
            && n(&s["bulk"]["busy"]) == 0
    })
    .await;
    assert!(
        max_busy <= 2 && max_in_flight <= 2,
        "{max_busy} {max_in_flight}"
    );
    assert!(
        saw_out_rate,
        "a rate over the last 10 s while documents went out"
    );
    let _ = s;
    // One more sample of the sampler, so the history holds the last second too.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let s = get_status(&addr).await.expect("/status");
    let text = s.to_string();
    eprintln!("/status once drained:\n{s:#}");

    // Documents: what the index holds, and what the proxy saw.
    let d = &s["documents"];
    assert_eq!(n(&d["indexed"]), indexed);
    assert_eq!(w.es.count(&w.data()).await, indexed);
    assert_eq!(n(&d["dead_lettered"]), dead);
    assert_eq!(w.es.count(&w.dead()).await, dead);
    assert_eq!((n(&d["read"]), n(&d["received"])), (read, read));
    // A refused document's dead-letter entry keeps its `_id`: its first write is no repeat.
    let refused_docs = 3;
    let repeated: u64 = proxy
        .state
        .attempts_by_id()
        .values()
        .map(|&a| u64::from(a) - 1)
        .sum::<u64>()
        - refused_docs;
    assert!(repeated > 0, "503s made the worker retry");
    assert_eq!(
        n(&d["retried"]),
        repeated,
        "retries = repeated attempts on the wire"
    );
    let sum = |k: &str| d[k].as_array().unwrap().iter().map(n).sum::<u64>();
    assert!(
        n(&s["uptime_secs"]) < 110,
        "the history covers the whole run"
    );
    assert_eq!(sum("history_in"), read);
    assert_eq!(sum("history_out"), indexed + dead);
    let uptime = n(&s["uptime_secs"]) as f64;
    let per_min = f(&d["last_1m"]["out"]);
    if uptime < 55.0 {
        // Less than a minute of samples: the minute's rate is over all of them.
        let implied = per_min * uptime;
        assert!(
            implied > 0.6 * read as f64 && implied < 1.5 * read as f64,
            "1-minute rate {per_min} over {uptime} s"
        );
    }

    // Bulk requests by outcome: every request the proxy saw, the 503s as retries.
    let b = &s["bulk"];
    let outcomes: u64 = ["ok", "partial", "retry", "overloaded", "split"]
        .iter()
        .map(|k| n(&b[k]))
        .sum();
    assert_eq!(outcomes, proxy.state.bulk_requests());
    assert_eq!(
        n(&b["retry"]),
        proxy
            .state
            .bulk_failed_injected
            .load(std::sync::atomic::Ordering::SeqCst)
    );
    assert_eq!(n(&b["slots"]), 2);
    assert_eq!(n(&s["messages"]["max_in_flight"]), 2);
    assert_eq!(n(&s["messages"]["released"]), 0);

    // Rate, cluster, SQS.
    assert_eq!(f(&s["rate"]["configured"]), 400.0);
    let effective = f(&s["rate"]["effective"]);
    assert!(effective > 0.0 && effective <= 400.0, "{effective}");
    assert_eq!(
        (s["live"].as_str(), s["ready"].as_str()),
        (Some("ok"), Some("ready"))
    );
    assert_eq!(s["cluster"]["state"], "ok");
    let (_, root) = w.es.request(reqwest::Method::GET, "/", None).await;
    let id = &s["cluster"]["identity"];
    assert_eq!(id["name"], root["cluster_name"]);
    assert_eq!(id["uuid"], root["cluster_uuid"]);
    assert_eq!(id["version"], root["version"]["number"]);
    assert_eq!(s["sqs"]["state"], "ok");
    assert_eq!(
        s["sqs"]["queue"].as_str(),
        w.queue_url.rsplit('/').next(),
        "the queue's name"
    );

    // Last errors per stage, with no record contents.
    let e = &s["last_errors"];
    assert!(
        e["bulk"]["reason"].as_str().unwrap().contains("503"),
        "{e:#}"
    );
    assert!(n(&e["bulk"]["count"]) >= n(&b["retry"]));
    assert!(
        e["record"]["reason"].as_str().unwrap().contains("c.ndjson"),
        "{e:#}"
    );
    assert_eq!(n(&e["record"]["count"]), 2);
    let refused = e["document"]["reason"].as_str().unwrap();
    assert!(refused.contains("mapper_parsing_exception"), "{refused}");
    assert_eq!(n(&e["document"]["count"]), 3);
    assert!(
        !text.contains("SECRET-VALUE"),
        "the cluster's reason quotes a value: {text}"
    );
    assert!(!text.contains("xxxxxxxxxx"), "record contents: {text}");
    assert!(!text.contains("\"test\""), "credentials: {text}");

    // Idle for ten seconds: nothing in or out over the last 10 s, the minute still counts.
    tokio::time::sleep(Duration::from_secs(11)).await;
    let s = get_status(&addr).await.expect("/status");
    assert_eq!(f(&s["documents"]["last_10s"]["in"]), 0.0);
    assert_eq!(f(&s["documents"]["last_10s"]["out"]), 0.0);
    assert!(f(&s["documents"]["last_1m"]["out"]) > 0.0);
    worker.signal("TERM");
}

/// The numbers `top` shows, read off its screen.
#[derive(Debug, Default)]
struct Shown {
    out_10s: f64,
    out_total: u64,
    in_total: u64,
    indexed: u64,
    dead_lettered: u64,
    deleted: u64,
}

fn shown(screen: &str) -> Option<Shown> {
    // The numbers after `label` on the first line that has it, as whitespace-separated words.
    let after = |label: &str| -> Option<Vec<String>> {
        let line = screen.lines().find(|l| l.contains(label))?;
        let rest = &line[line.find(label)? + label.len()..];
        Some(
            rest.split(|c: char| c.is_whitespace() || c == '│' || c == '·' || c == '/')
                .filter(|w| !w.is_empty())
                .map(str::to_string)
                .collect(),
        )
    };
    let row_in = after("│in ")?;
    let row_out = after("│out ")?;
    let indexed = after("│indexed ")?;
    let messages = after("deleted ")?;
    Some(Shown {
        out_10s: row_out.first()?.parse().ok()?,
        out_total: row_out.get(2)?.parse().ok()?,
        in_total: row_in.get(2)?.parse().ok()?,
        // "indexed N · dead-lettered M · retried R"
        indexed: indexed.first()?.parse().ok()?,
        dead_lettered: indexed.get(2)?.parse().ok()?,
        deleted: messages.first()?.parse().ok()?,
    })
}

/// An operator's session: a backlog of 8 objects drained at 200 documents/s, `top` watching it
/// in a terminal; its numbers against the proxy's and the index's; the worker going away; `q`.
#[tokio::test(flavor = "multi_thread")]
async fn top_in_a_terminal_shows_what_the_index_holds() {
    let w = World::new("top").await;
    let proxy = Proxy::start(&w.es.url).await;
    let (objects, per_object) = (8u64, 500u64);
    for k in 0..objects {
        w.put_and_wait(
            &format!("backlog-{k}.ndjson.gz"),
            gzip(&ndjson(per_object as usize, "t")),
        )
        .await;
    }
    let total = objects * per_object;
    let mut env: HashMap<String, String> = w.env();
    env.insert("ES_URL".into(), proxy.url.clone());
    env.insert("RATE_LIMIT_DOCS_PER_SEC".into(), "200".into());
    env.insert("RATE_LIMIT_BURST".into(), "50".into());
    env.insert("BULK_MAX_DOCS".into(), "50".into());
    let addr = env["HEALTH_ADDR"].clone();
    let worker = Worker::spawn(&env, &[]);
    status_until(&worker, &addr, MINUTE, |s| s["ready"] == "ready").await;

    let command = format!(
        "{} top --addr {addr}; echo top-exited-$?; sleep 60",
        env!("CARGO_BIN_EXE_f4a-indexer")
    );
    let Some(tmux) = Tmux::start(&command) else {
        return;
    };
    let screen = tmux
        .screen_until(MINUTE, |s| s.contains("docs/s out"))
        .await;
    assert!(
        screen.contains(&format!("f4a-indexer top · {addr}")),
        "{screen}"
    );
    assert!(screen.contains("configured 200/s"), "{screen}");
    assert!(screen.contains("cluster  ok"), "{screen}");

    // Mid-backlog, ten seconds into the drain: the 10-second rate is what reached the proxy.
    let screen = tmux
        .screen_until(MINUTE, |s| {
            shown(s).is_some_and(|v| v.out_total > 0) && proxy.state.docs_per_second().len() >= 12
        })
        .await;
    // Printed for `--nocapture` runs (the README's capture comes from one).
    eprintln!("top mid-backlog:\n{screen}");
    let arrived: Vec<u64> = proxy.state.docs_per_second();
    let v = shown(&screen).unwrap_or_else(|| panic!("no numbers on:\n{screen}"));
    let full: Vec<u64> = arrived[..arrived.len() - 1].to_vec(); // the current second is partial
    let last10: f64 = full[full.len() - 10..].iter().sum::<u64>() as f64 / 10.0;
    assert!(
        (v.out_10s - last10).abs() <= 0.35 * last10.max(1.0) && v.out_10s <= 260.0,
        "top says {} docs/s over 10 s, the proxy saw {last10}/s ({arrived:?}):\n{screen}",
        v.out_10s
    );
    let on_wire: u64 = arrived.iter().sum();
    assert!(
        v.out_total <= on_wire && v.out_total + 600 >= on_wire,
        "top's total {} vs {on_wire} documents on the wire:\n{screen}",
        v.out_total
    );
    assert!(v.in_total >= v.out_total, "{screen}");
    let spark: String = screen
        .lines()
        .skip_while(|l| !l.contains("docs/s out"))
        .skip(1)
        .take_while(|l| !l.starts_with('└'))
        .collect();
    assert!(
        spark.chars().any(|c| "▁▂▃▄▅▆▇█".contains(c)),
        "a sparkline:\n{screen}"
    );

    // Drained: the screen's final numbers are the index's.
    let screen = tmux
        .screen_until(2 * MINUTE, |s| {
            shown(s).is_some_and(|v| v.deleted == objects)
        })
        .await;
    let v = shown(&screen).unwrap();
    assert_eq!(w.es.count(&w.data()).await, total);
    assert_eq!(
        (v.indexed, v.dead_lettered, v.out_total, v.in_total),
        (total, 0, total, total)
    );
    assert!(screen.contains("none"), "no errors:\n{screen}");

    // The worker goes away: top says so and keeps the last numbers; q quits with 0.
    worker.signal("TERM");
    let screen = tmux
        .screen_until(MINUTE, |s| s.contains("UNREACHABLE"))
        .await;
    assert!(screen.contains(&format!("indexed {total}")), "{screen}");
    tmux.run(&["send-keys", "-t", "top", "q"]);
    tmux.screen_until(Duration::from_secs(10), |s| s.contains("top-exited-0"))
        .await;
}

/// Nobody listening: a clear message naming the address, exit 1, the terminal untouched. Bad
/// usage: exit 2.
#[tokio::test(flavor = "multi_thread")]
async fn top_says_when_the_worker_is_unreachable() {
    let addr = format!("127.0.0.1:{}", free_port());
    let run = |args: Vec<String>| async move {
        let started = Instant::now();
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_f4a-indexer"))
            .args(args)
            .env("HEALTH_ADDR", "off")
            .output()
            .await
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
            started.elapsed(),
            out.stdout,
        )
    };
    let (code, stderr, took, stdout) = run(vec!["top".into(), "--addr".into(), addr.clone()]).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "the worker is not reachable at http://{addr}/status"
        )) && stderr.contains("refused"),
        "{stderr}"
    );
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert!(stdout.is_empty(), "no screen drawn");

    let (code, stderr, ..) = run(vec!["top".into(), "--addr".into(), "8080".into()]).await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("HOST:PORT"), "{stderr}");
    let (code, stderr, ..) = run(vec!["top".into()]).await;
    assert_eq!(code, Some(2), "HEALTH_ADDR=off and no --addr: {stderr}");
    assert!(stderr.contains("HEALTH_ADDR=off"), "{stderr}");

    // In a terminal too (when tmux is there): the message stays on the screen, exit 1.
    let command = format!(
        "{} top --addr {addr}; echo top-exited-$?; sleep 60",
        env!("CARGO_BIN_EXE_f4a-indexer")
    );
    let Some(tmux) = Tmux::start(&command) else {
        return;
    };
    let screen = tmux
        .screen_until(Duration::from_secs(20), |s| s.contains("top-exited-"))
        .await;
    assert!(screen.contains("top-exited-1"), "{screen}");
    assert!(screen.contains("not reachable"), "{screen}");
}
