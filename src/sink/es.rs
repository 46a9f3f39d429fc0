//! The Elasticsearch/OpenSearch client: the official `elasticsearch` crate configured from `ES_*`
//! (one node, basic auth, API key or SigV4, TLS verification or a private CA, request timeout,
//! gzip bodies), and its [`BulkClient`] implementation: `POST /_bulk`, the readiness probe and
//! the start-up identity check.
//!
//! Everything specific to the wire lives here (headers, `filter_path`, compression, signing, how
//! transport errors are worded). Each request is prepared once per attempt, in this order:
//! compress the body (`ES_COMPRESSION=gzip`: `Content-Encoding: gzip`, fast level), then sign
//! the final bytes and URL ([`super::sigv4`]), then hand both to the client's `send`, whose
//! per-request headers override its defaults. The crate's own `request_body_compression` is not
//! used: it compresses inside the transport, after signing could see the bytes.
//!
//! With SigV4, a 403 saying the session token expired is answered here at once: fresh
//! credentials, signed again, sent once more (at most once per attempt; the refresh itself is
//! rate-limited by the credential cache). Anything else goes back to the delivery loop.

use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use aws_credential_types::provider::SharedCredentialsProvider;
use bytes::Bytes;
use elasticsearch::auth::Credentials;
use elasticsearch::cert::{Certificate, CertificateValidation};
use elasticsearch::http::headers::{
    HeaderMap, HeaderName, HeaderValue, CONTENT_ENCODING, CONTENT_TYPE, HOST,
};
use elasticsearch::http::transport::{SingleNodeConnectionPool, TransportBuilder};
use elasticsearch::http::{Method, Url};
use elasticsearch::Elasticsearch;

use super::flavour::{self, ClusterIdentity};
use super::sigv4::{self, CredentialCache, Unsigned};
use super::{BulkClient, BulkReply, TransportError};
use crate::config::{AwsService, AwsSigning, Compression, EsAuth, EsConfig};
use crate::status;

/// Only what the retry decision reads: the answer stays small however big the batch.
const FILTER_PATH: &str = "errors,items.*.status,items.*.error.type,items.*.error.reason";
/// The path and query of a bulk request (the query in the path, so the URL signed is the URL
/// requested: the transport joins it to the base URL as it is).
const BULK: &str =
    "/_bulk?filter_path=errors,items.*.status,items.*.error.type,items.*.error.reason";
/// What OpenSearch Serverless answers that tells it is there and accepts us (it has no `GET /`).
const SERVERLESS_PROBE: &str = "/_cat/indices?format=json&h=index";
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// SigV4: the scope and the credentials.
struct Signing {
    scope: AwsSigning,
    credentials: CredentialCache,
}

/// The cluster, through the official client.
pub struct EsClient {
    client: Elasticsearch,
    /// The URL paths are joined to (with its trailing slash, as the transport makes it).
    base: Url,
    /// `Host` as sent and signed: host, and port when not the scheme's default.
    host: String,
    signing: Option<Arc<Signing>>,
    compression: Compression,
}

impl EsClient {
    /// The client configured from `ES_*`: one node, auth, TLS verification, timeout, compression.
    /// `aws_credentials`: the default AWS chain, used with `ES_AUTH=sigv4`.
    pub fn new(
        cfg: &EsConfig,
        aws_credentials: Option<SharedCredentialsProvider>,
    ) -> anyhow::Result<EsClient> {
        let mut base = Url::parse(&cfg.url).context("ES_URL")?;
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        let host = match (base.host_str(), base.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            (None, _) => anyhow::bail!("ES_URL {} has no host", cfg.url),
        };
        let mut t = TransportBuilder::new(SingleNodeConnectionPool::new(base.clone()))
            .timeout(cfg.request_timeout)
            .disable_proxy();
        let mut signing = None;
        t = match &cfg.auth {
            EsAuth::None => t,
            EsAuth::Basic { username, password } => {
                t.auth(Credentials::Basic(username.clone(), password.clone()))
            }
            EsAuth::ApiKey(key) => t.auth(Credentials::EncodedApiKey(key.clone())),
            EsAuth::SigV4(scope) => {
                let provider = aws_credentials
                    .context("ES_AUTH=sigv4, but the AWS SDK found no credentials provider")?;
                signing = Some(Arc::new(Signing {
                    scope: scope.clone(),
                    credentials: CredentialCache::new(provider),
                }));
                t
            }
        };
        if cfg.tls_skip_verify {
            tracing::warn!("ES_TLS_SKIP_VERIFY=true: the cluster's TLS certificate is NOT verified; anyone on the path can read and alter what is indexed");
            t = t.cert_validation(CertificateValidation::None);
        } else if let Some(path) = &cfg.ca_cert {
            let pem = std::fs::read(path)
                .with_context(|| format!("ES_CA_CERT: reading {}", path.display()))?;
            let cert = Certificate::from_pem(&pem).with_context(|| {
                format!("ES_CA_CERT: {} is not a PEM certificate", path.display())
            })?;
            t = t.cert_validation(CertificateValidation::Full(cert));
        }
        let client = Elasticsearch::new(t.build().context("building the Elasticsearch client")?);
        Ok(EsClient {
            client,
            base,
            host,
            signing,
            compression: cfg.compression,
        })
    }

    fn serverless(&self) -> bool {
        self.signing
            .as_ref()
            .is_some_and(|s| s.scope.service == AwsService::Aoss)
    }

    /// One request: compressed and signed as configured, with one immediate retry after an
    /// expired-token 403. Returns the status and the body of any answer.
    pub(super) async fn request(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<Bytes>,
        timeout: Option<Duration>,
    ) -> Result<(u16, Bytes), TransportError> {
        let mut expired_token = false;
        loop {
            let (headers, wire_body) = self
                .prepare(method, path_and_query, &body, expired_token)
                .await?;
            let resp = self
                .client
                .send(
                    method,
                    path_and_query,
                    headers,
                    None::<&()>,
                    wire_body,
                    timeout,
                )
                .await
                .map_err(|e| {
                    if e.is_timeout() {
                        TransportError::Timeout(e.to_string())
                    } else {
                        TransportError::Failed(error_chain(&e))
                    }
                })?;
            let status = resp.status_code().as_u16();
            let answer = resp.bytes().await.map_err(|e| TransportError::Body {
                status,
                reason: e.to_string(),
            })?;
            if self.signing.is_some()
                && !expired_token
                && flavour::is_expired_token(status, &answer)
            {
                tracing::info!("the cluster says the AWS session token expired; signing again with fresh credentials");
                expired_token = true;
                continue;
            }
            return Ok((status, answer));
        }
    }

    /// The headers and the body bytes of one attempt: compressed, then signed.
    async fn prepare(
        &self,
        method: Method,
        path_and_query: &str,
        body: &Option<Bytes>,
        expired_token: bool,
    ) -> Result<(HeaderMap, Option<Bytes>), TransportError> {
        let mut headers = HeaderMap::new();
        let gzip = body.is_some() && self.compression == Compression::Gzip;
        if body.is_some() {
            headers.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/x-ndjson"),
            );
        }
        if gzip {
            headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        let creds = match &self.signing {
            Some(s) => Some(
                s.credentials
                    .get(expired_token)
                    .await
                    .map_err(TransportError::Failed)?,
            ),
            None => None,
        };
        if body.is_none() && creds.is_none() {
            return Ok((headers, None));
        }
        // Compressing and hashing a body of megabytes is CPU work: off the async workers.
        let (body, signing) = (body.clone(), self.signing.clone());
        let url = self
            .base
            .join(path_and_query.trim_start_matches('/'))
            .map_err(|e| TransportError::Failed(format!("{path_and_query}: {e}")))?;
        let host = self.host.clone();
        let method_name = method_str(method);
        let prepared = tokio::task::spawn_blocking(move || {
            let wire = match body {
                Some(b) if gzip => Some(Bytes::from(compress(&b)?)),
                other => other,
            };
            let mut signed = Vec::new();
            if let (Some(s), Some(creds)) = (signing, creds) {
                let mut to_sign = vec![("host", host.as_str())];
                if wire.is_some() {
                    to_sign.push(("content-type", "application/x-ndjson"));
                }
                if gzip {
                    to_sign.push(("content-encoding", "gzip"));
                }
                let req = Unsigned {
                    method: method_name,
                    url: url.as_str(),
                    headers: &to_sign,
                    body: wire.as_deref().unwrap_or_default(),
                };
                signed = sigv4::sign(&creds, &s.scope, SystemTime::now(), &req)?;
            }
            Ok::<_, String>((wire, signed))
        })
        .await
        .map_err(|e| TransportError::Failed(format!("preparing the request: {e}")))?
        .map_err(TransportError::Failed)?;
        let (wire, signed) = prepared;
        if !signed.is_empty() {
            headers.insert(
                HOST,
                HeaderValue::from_str(&self.host)
                    .map_err(|e| TransportError::Failed(format!("Host {}: {e}", self.host)))?,
            );
        }
        for (name, value) in signed {
            let mut v = HeaderValue::from_str(&value)
                .map_err(|e| TransportError::Failed(format!("signed header {name}: {e}")))?;
            v.set_sensitive(name == "authorization" || name == "x-amz-security-token");
            headers.insert(HeaderName::from_static(name), v);
        }
        Ok((headers, wire))
    }
}

fn method_str(m: Method) -> &'static str {
    match m {
        Method::Get => "GET",
        Method::Put => "PUT",
        Method::Post => "POST",
        Method::Delete => "DELETE",
        Method::Head => "HEAD",
    }
}

/// gzip at the fast level: most of the size gain of the default level for a fraction of its CPU.
fn compress(body: &[u8]) -> Result<Vec<u8>, String> {
    let mut e = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4 + 64),
        flate2::Compression::fast(),
    );
    e.write_all(body)
        .and_then(|_| e.finish())
        .map_err(|e| format!("gzip: {e}"))
}

#[async_trait::async_trait]
impl BulkClient for EsClient {
    async fn bulk(&self, body: Bytes) -> Result<BulkReply, TransportError> {
        debug_assert!(BULK.ends_with(FILTER_PATH));
        // `Bytes` is handed to the transport as it is (compressed or not): no copy of the body.
        let (status, body) = self.request(Method::Post, BULK, Some(body), None).await?;
        Ok(BulkReply { status, body })
    }

    async fn probe(&self) -> Result<(), String> {
        let path = if self.serverless() {
            SERVERLESS_PROBE
        } else {
            "/"
        };
        match self
            .request(Method::Get, path, None, Some(PROBE_TIMEOUT))
            .await
        {
            Ok((status, _)) if (200..300).contains(&status) => Ok(()),
            Ok((status, body)) => Err(format!(
                "HTTP {status} from the cluster: {}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            )),
            Err(e) => Err(format!("cluster unreachable: {e}")),
        }
    }

    async fn identify(&self) -> Result<ClusterIdentity, String> {
        if self.serverless() {
            // No `GET /` there (404): reaching the collection and being let in is all it says.
            self.probe().await?;
            status::board().cluster_identity(status::ClusterIdentity {
                name: String::new(),
                uuid: String::new(),
                distribution: "opensearch-serverless".into(),
                version: String::new(),
            });
            return Ok(ClusterIdentity::opensearch_serverless());
        }
        let (status, body) = self
            .request(Method::Get, "/", None, Some(PROBE_TIMEOUT))
            .await
            .map_err(|e| format!("cluster unreachable: {e}"))?;
        if !(200..300).contains(&status) {
            return Err(format!(
                "HTTP {status} from the cluster on GET /: {}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            ));
        }
        if let Some(id) = status_identity(&body) {
            status::board().cluster_identity(id);
        }
        let mut identity = flavour::parse_root(&body)?;
        if self.signing.is_some() {
            identity.hosted = Some("Amazon OpenSearch Service");
        }
        Ok(identity)
    }
}

/// Name, uuid, distribution and version from the body of `GET /` (Elasticsearch has no
/// `version.distribution`); `None` if it is not that document.
/// What `/status` shows of the cluster (name, uuid, distribution, version) from `GET /`.
fn status_identity(body: &[u8]) -> Option<status::ClusterIdentity> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let text = |x: &serde_json::Value| x.as_str().unwrap_or_default().to_string();
    let version = v.get("version")?;
    Some(status::ClusterIdentity {
        name: text(&v["cluster_name"]),
        uuid: text(&v["cluster_uuid"]),
        distribution: version["distribution"]
            .as_str()
            .unwrap_or("elasticsearch")
            .to_string(),
        version: text(&version["number"]),
    })
}

/// An error with its causes (`a: b: c`): the transport's own message hides the reason (a TLS
/// certificate refused, a connection refused) in its source chain.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;

    #[test]
    fn gzip_round_trips_and_shrinks_bulk_bodies() {
        let body: Vec<u8> = (0..200)
            .flat_map(|i| format!("{{\"index\":{{\"_index\":\"f4a-2026.11.24\"}}}}\n{{\"i\":{i},\"msg\":\"pump pressure nominal\"}}\n").into_bytes())
            .collect();
        let packed = compress(&body).unwrap();
        assert!(
            packed.len() * 5 < body.len(),
            "{} of {}",
            packed.len(),
            body.len()
        );
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&packed[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, body);
    }

    #[test]
    fn identity_of_opensearch_and_elasticsearch() {
        let os = br#"{"name":"n1","cluster_name":"logs","cluster_uuid":"u1","version":{"distribution":"opensearch","number":"2.19.1"},"tagline":"The OpenSearch Project"}"#;
        let id = status_identity(os).unwrap();
        assert_eq!(
            (
                id.name.as_str(),
                id.distribution.as_str(),
                id.version.as_str()
            ),
            ("logs", "opensearch", "2.19.1")
        );
        let es = br#"{"cluster_name":"c","cluster_uuid":"u","version":{"number":"8.19.3","build_flavor":"default"}}"#;
        assert_eq!(status_identity(es).unwrap().distribution, "elasticsearch");
        assert_eq!(status_identity(b"<html>"), None);
        assert_eq!(status_identity(b"{}"), None);
    }
}
