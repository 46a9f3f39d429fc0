//! The HTTP/1.1 pieces both fault proxies share (the cluster side, `proxy.rs`, and the AWS side,
//! `aws_proxy.rs`): reading one request off a connection (Content-Length or chunked body),
//! inflating a gzip body, a response head, and the small helpers around them.
//!
//! Raw tokio I/O rather than an HTTP server crate, so the proxies decide every byte they write
//! (a body cut after K bytes, a reset mid-response, a throttled stream).
#![allow(dead_code)]

use std::sync::Mutex;

use tokio::io::{AsyncRead, AsyncReadExt};

/// A poisoned lock is still usable here: the proxies' counters cannot be left half-updated.
pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// True for a share of `permille`/1000 of the calls.
pub fn chance(permille: u32) -> bool {
    permille > 0 && fastrand::u32(0..1000) < permille
}

/// One request as read off the connection.
pub struct Request {
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The body came gzip-compressed (and was inflated by [`Request::inflate_gzip`]).
    pub gzipped: bool,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The path without the query.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    /// A gzip body (`content-encoding: gzip`) is inflated in place and the header dropped;
    /// `None` when it is not valid gzip.
    pub fn inflate_gzip(&mut self) -> Option<()> {
        if !self
            .header("content-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("gzip"))
        {
            return Some(());
        }
        let mut plain = Vec::new();
        std::io::Read::read_to_end(
            &mut flate2::read::MultiGzDecoder::new(&self.body[..]),
            &mut plain,
        )
        .ok()?;
        self.body = plain;
        self.headers
            .retain(|(k, _)| !k.eq_ignore_ascii_case("content-encoding"));
        self.gzipped = true;
        Some(())
    }
}

/// Reads one request; `None` when the client closed the connection (or sent garbage). `buf`
/// carries bytes already read past the previous request on a kept-alive connection.
pub async fn read_request<S: AsyncRead + Unpin>(s: &mut S, buf: &mut Vec<u8>) -> Option<Request> {
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
        read_more(s, buf).await?;
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    buf.drain(..head_end + 4);
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let (method, target) = (first.next()?.to_string(), first.next()?.to_string());
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut req = Request {
        method,
        target,
        headers,
        body: Vec::new(),
        gzipped: false,
    };
    let chunked = req
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    if chunked {
        loop {
            let line_end = loop {
                if let Some(p) = buf.windows(2).position(|w| w == b"\r\n") {
                    break p;
                }
                read_more(s, buf).await?;
            };
            let size_text = String::from_utf8_lossy(&buf[..line_end]).into_owned();
            let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
            buf.drain(..line_end + 2);
            while buf.len() < size + 2 {
                read_more(s, buf).await?;
            }
            req.body.extend_from_slice(&buf[..size]);
            buf.drain(..size + 2);
            if size == 0 {
                break;
            }
        }
    } else {
        let len: usize = req
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        while buf.len() < len {
            read_more(s, buf).await?;
        }
        req.body = buf.drain(..len).collect();
    }
    Some(req)
}

async fn read_more<S: AsyncRead + Unpin>(s: &mut S, buf: &mut Vec<u8>) -> Option<()> {
    let mut chunk = [0u8; 64 * 1024];
    let n = s.read(&mut chunk).await.ok()?;
    if n == 0 {
        return None;
    }
    buf.extend_from_slice(&chunk[..n]);
    Some(())
}

/// The reason phrase for the statuses the proxies write (clients ignore it).
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        206 => "Partial Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        412 => "Precondition Failed",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// A response head with these headers and a `content-length`.
pub fn response_head(status: u16, headers: &[(String, String)], content_length: u64) -> String {
    let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("content-length: {content_length}\r\n\r\n"));
    head
}
