//! The cluster-side proxy's `_bulk` handling: counting documents per attempt, `_id` and second,
//! the cluster capacity, whole-request failures, and per-item faults merged into the cluster's
//! own answer.

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{json, Value};

use super::super::http::{chance, lock, Request};
use super::{forward, ItemCtx, ItemFault, ProxyState, Reply};

/// One `index` operation of a bulk body.
struct Op<'a> {
    action: &'a [u8],
    source: &'a [u8],
    id: String,
    index: String,
}

fn parse_ops(body: &[u8]) -> Vec<Op<'_>> {
    let lines: Vec<&[u8]> = body
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    lines
        .chunks(2)
        .map(|pair| {
            let action: Value = serde_json::from_slice(pair[0]).unwrap_or(Value::Null);
            let meta = action
                .as_object()
                .and_then(|o| o.values().next())
                .cloned()
                .unwrap_or(Value::Null);
            Op {
                action: pair[0],
                source: pair.get(1).copied().unwrap_or(b"{}"),
                id: meta["_id"].as_str().unwrap_or("").to_string(),
                index: meta["_index"].as_str().unwrap_or("").to_string(),
            }
        })
        .collect()
}

fn fault_item(f: &ItemFault) -> Value {
    match f {
        ItemFault::Rejected => json!({"index": {"status": 429, "error": {
            "type": "es_rejected_execution_exception",
            "reason": "rejected execution of coordinating operation [injected by the test proxy]"}}}),
        ItemFault::MapperParsing(reason) => json!({"index": {"status": 400, "error": {
            "type": "mapper_parsing_exception", "reason": reason}}}),
        ItemFault::Conflict => json!({"index": {"status": 409, "error": {
            "type": "version_conflict_engine_exception",
            "reason": "document already exists [injected by the test proxy]"}}}),
    }
}

pub(super) async fn handle_bulk(
    req: &Request,
    state: &ProxyState,
    http: &reqwest::Client,
) -> Reply {
    let ops = parse_ops(&req.body);
    let now_s = state.started.elapsed().as_secs();
    let now_ms = state.started.elapsed().as_millis() as u64;
    state.bulk_requests.fetch_add(1, Ordering::SeqCst);
    state
        .bulk_docs
        .fetch_add(ops.len() as u64, Ordering::SeqCst);
    *lock(&state.docs_by_second).entry(now_s).or_default() += ops.len() as u64;
    *lock(&state.bulk_by_second).entry(now_s).or_default() += 1;
    *lock(&state.bytes_by_second).entry(now_s).or_default() += req.body.len() as u64;
    let previous: Vec<u32> = {
        let mut by_id = lock(&state.attempts_by_id);
        let mut times = lock(&state.attempt_times);
        ops.iter()
            .map(|op| {
                times.entry(op.id.clone()).or_default().push(now_ms);
                let c = by_id.entry(op.id.clone()).or_default();
                *c += 1;
                *c - 1
            })
            .collect()
    };
    let delay = Duration::from_millis(state.bulk_delay_ms.load(Ordering::SeqCst));
    let capacity = state.capacity_per_sec.load(Ordering::SeqCst);
    if capacity > 0 {
        let n = ops.len() as u64;
        let mut accepted = lock(&state.accepted_by_second);
        let mut window = lock(&state.sliding_window);
        let in_window = if state.capacity_sliding.load(Ordering::SeqCst) {
            while window.front().is_some_and(|(t, _)| *t + 1000 <= now_ms) {
                window.pop_front();
            }
            window.iter().map(|(_, n)| n).sum::<u64>()
        } else {
            accepted.get(&now_s).copied().unwrap_or(0)
        };
        if in_window + n > capacity {
            drop(window);
            drop(accepted);
            state.capacity_rejections.fetch_add(1, Ordering::SeqCst);
            *lock(&state.rejected_by_second).entry(now_s).or_default() += 1;
            return Reply::json(
                429,
                json!({"error": {"type": "es_rejected_execution_exception",
                    "reason": "capacity of the test cluster exceeded"}, "status": 429}),
            );
        }
        window.push_back((now_ms, n));
        *accepted.entry(now_s).or_default() += n;
    }
    if chance(state.bulk_fail_permille.load(Ordering::SeqCst)) {
        state.bulk_failed_injected.fetch_add(1, Ordering::SeqCst);
        let status = match state.bulk_fail_status.load(Ordering::SeqCst) {
            0 => {
                if fastrand::bool() {
                    429
                } else {
                    503
                }
            }
            s => s as u16,
        };
        let mut r = Reply::json(
            status,
            json!({"error": {"type": if status == 429 {"es_rejected_execution_exception"} else {"unavailable_shards_exception"},
                "reason": "injected by the test proxy"}, "status": status}),
        );
        r.delay = delay;
        return r;
    }
    if state.sink.load(Ordering::SeqCst) {
        let items: Vec<Value> = ops
            .iter()
            .map(|_| json!({"index": {"status": 201}}))
            .collect();
        let mut r = Reply::json(200, json!({"errors": false, "items": items}));
        r.delay = delay;
        return r;
    }
    let rule = lock(&state.item_rule).clone();
    let faults: Vec<Option<ItemFault>> = ops
        .iter()
        .zip(&previous)
        .map(|(op, prev)| {
            let rule = rule.as_ref()?;
            let source: Value = serde_json::from_slice(op.source).unwrap_or(Value::Null);
            rule(&ItemCtx {
                id: &op.id,
                index: &op.index,
                source: &source,
                previous_attempts: *prev,
            })
        })
        .collect();
    // Forward every document except those the fault keeps from the cluster.
    let mut fwd = Vec::with_capacity(req.body.len());
    for (op, f) in ops.iter().zip(&faults) {
        if matches!(f, None | Some(ItemFault::Conflict)) {
            fwd.extend_from_slice(op.action);
            fwd.push(b'\n');
            fwd.extend_from_slice(op.source);
            fwd.push(b'\n');
        }
    }
    let any_faults = faults.iter().any(Option::is_some);
    let (status, body) = if fwd.is_empty() && !ops.is_empty() {
        (200, br#"{"errors":false,"items":[]}"#.to_vec())
    } else {
        match forward(http, state, req, fwd).await {
            Ok(x) => x,
            Err(e) => (502, json!({"error": e}).to_string().into_bytes()),
        }
    };
    if status == 429 || (status == 200 && body.windows(12).any(|w| w == b"\"status\":429")) {
        *lock(&state.cluster_refused_by_second)
            .entry(now_s)
            .or_default() += 1;
    }
    let mut reply = if !any_faults || !(200..300).contains(&status) {
        Reply {
            status,
            body,
            reset: false,
            delay,
        }
    } else {
        // Merge: faulted items from here, the others from the cluster's answer in order.
        let upstream: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let mut up_items = upstream["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter();
        let mut errors = false;
        let items: Vec<Value> = faults
            .iter()
            .map(|f| {
                let cluster_item = match f {
                    Some(ItemFault::Conflict) | None => up_items.next(),
                    _ => None,
                };
                match f {
                    Some(f) => {
                        state.items_faulted.fetch_add(1, Ordering::SeqCst);
                        errors = true;
                        fault_item(f)
                    }
                    None => {
                        let item =
                            cluster_item.unwrap_or_else(|| json!({"index": {"status": 201}}));
                        if item["index"]["status"].as_u64().unwrap_or(0) >= 300 {
                            errors = true;
                        }
                        item
                    }
                }
            })
            .collect();
        Reply {
            status: 200,
            body: json!({"errors": errors, "items": items})
                .to_string()
                .into_bytes(),
            reset: false,
            delay,
        }
    };
    if chance(state.reset_permille.load(Ordering::SeqCst)) {
        reply.reset = true;
    }
    reply
}
