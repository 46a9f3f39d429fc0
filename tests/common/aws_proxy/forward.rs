//! Forwarding one request to LocalStack and streaming its answer back, cut after K bytes or
//! throttled as the operation's rule decided, counting the body bytes written per S3 key.

use std::time::Duration;

use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::super::http::{lock, response_head, Request};
use super::AwsProxyState;

/// Forwards `req` and writes the answer, cut or throttled as decided; false when the
/// connection is to be closed.
pub(super) async fn forward<W: AsyncWrite + Unpin>(
    s: &mut W,
    state: &AwsProxyState,
    http: &reqwest::Client,
    req: &Request,
    key: Option<&str>,
    cut: Option<u64>,
    throttle: u64,
) -> bool {
    const HOP: [&str; 6] = [
        "host",
        "content-length",
        "connection",
        "transfer-encoding",
        "keep-alive",
        "expect",
    ];
    let Ok(method) = reqwest::Method::from_bytes(req.method.as_bytes()) else {
        return false;
    };
    let mut r = http.request(method, format!("{}{}", state.upstream, req.target));
    for (k, v) in &req.headers {
        if !HOP.iter().any(|h| k.eq_ignore_ascii_case(h)) {
            r = r.header(k.as_str(), v.as_str());
        }
    }
    let mut resp = match r.body(req.body.clone()).send().await {
        Ok(resp) => resp,
        Err(e) => {
            let body = format!("upstream: {e}");
            let head = response_head(502, &[], body.len() as u64);
            let _ = s.write_all(format!("{head}{body}").as_bytes()).await;
            return false;
        }
    };
    let status = resp.status().as_u16();
    let headers: Vec<(String, String)> = resp
        .headers()
        .iter()
        .filter(|(k, _)| !HOP.iter().any(|h| k.as_str().eq_ignore_ascii_case(h)))
        .filter_map(|(k, v)| Some((k.to_string(), v.to_str().ok()?.to_string())))
        .collect();
    if req.method == "HEAD" {
        let len = resp
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .unwrap_or(0);
        return s
            .write_all(response_head(status, &headers, len).as_bytes())
            .await
            .is_ok();
    }
    let Some(len) = resp.content_length() else {
        // No length announced (chunked): small answers only; collected and sent with one.
        let Ok(body) = resp.bytes().await else {
            return false;
        };
        let mut out = response_head(status, &headers, body.len() as u64).into_bytes();
        out.extend_from_slice(&body);
        return s.write_all(&out).await.is_ok();
    };
    if s.write_all(response_head(status, &headers, len).as_bytes())
        .await
        .is_err()
    {
        return false;
    }
    let mut written = 0u64;
    // Pieces of a tenth of a second at the throttled rate.
    let piece = if throttle > 0 {
        (throttle / 10).max(1) as usize
    } else {
        usize::MAX
    };
    loop {
        let chunk = match resp.chunk().await {
            Ok(Some(c)) => c,
            Ok(None) => return true,
            Err(_) => return false,
        };
        for part in chunk.chunks(piece.min(chunk.len().max(1))) {
            let mut part = part;
            let mut stop = false;
            if let Some(k) = cut {
                if written + part.len() as u64 >= k {
                    part = &part[..(k.saturating_sub(written)) as usize];
                    stop = true;
                }
            }
            if s.write_all(part).await.is_err() {
                return false;
            }
            written += part.len() as u64;
            if let Some(key) = key {
                *lock(&state.bytes_by_key)
                    .entry(key.to_string())
                    .or_default() += part.len() as u64;
            }
            if stop {
                // Short of the announced length: the client sees the body end early.
                *lock(&state.cuts_done) += 1;
                let _ = s.flush().await;
                let _ = s.shutdown().await;
                return false;
            }
            if throttle > 0 {
                tokio::time::sleep(Duration::from_secs_f64(part.len() as f64 / throttle as f64))
                    .await;
            }
        }
    }
}
