//! The Elasticsearch/OpenSearch client: the official `elasticsearch` crate configured from `ES_*`
//! (one node, basic auth or API key, TLS verification or a private CA, request timeout), and its
//! [`BulkClient`] implementation: `POST /_bulk` and the `GET /` probe.
//!
//! Everything specific to the wire lives here (headers, `filter_path`, how transport errors are
//! worded), so another client (SigV4 signing, gzip bodies) is another implementation of the same
//! trait, or another option of this one, without touching the delivery loop.

use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use elasticsearch::auth::Credentials;
use elasticsearch::cert::{Certificate, CertificateValidation};
use elasticsearch::http::headers::{HeaderMap, HeaderValue, CONTENT_TYPE};
use elasticsearch::http::transport::{SingleNodeConnectionPool, TransportBuilder};
use elasticsearch::http::{Method, Url};
use elasticsearch::Elasticsearch;

use super::{BulkClient, BulkReply, TransportError};
use crate::config::{EsAuth, EsConfig};
use crate::status::ClusterIdentity;

/// Only what the retry decision reads: the answer stays small however big the batch.
const FILTER_PATH: &str = "errors,items.*.status,items.*.error.type,items.*.error.reason";

/// The cluster, through the official client.
pub struct EsClient {
    /// Shared with the admin calls (es_admin.rs).
    pub(super) client: Elasticsearch,
}

impl EsClient {
    /// The client configured from `ES_*`: one node, auth, TLS verification, timeout.
    pub fn new(cfg: &EsConfig) -> anyhow::Result<EsClient> {
        let url = Url::parse(&cfg.url).context("ES_URL")?;
        let mut t = TransportBuilder::new(SingleNodeConnectionPool::new(url))
            .timeout(cfg.request_timeout)
            .disable_proxy();
        t = match &cfg.auth {
            EsAuth::None => t,
            EsAuth::Basic { username, password } => {
                t.auth(Credentials::Basic(username.clone(), password.clone()))
            }
            EsAuth::ApiKey(key) => t.auth(Credentials::EncodedApiKey(key.clone())),
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
        Ok(EsClient { client })
    }
}

#[async_trait::async_trait]
impl BulkClient for EsClient {
    async fn bulk(&self, body: Bytes) -> Result<BulkReply, TransportError> {
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-ndjson"),
        );
        let query = [("filter_path", FILTER_PATH)];
        // `Bytes` is handed to the transport as it is: no copy of the body.
        let resp = self
            .client
            .send(
                Method::Post,
                "/_bulk",
                headers,
                Some(&query),
                Some(body),
                None,
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
        match resp.bytes().await {
            Ok(body) => Ok(BulkReply { status, body }),
            Err(e) => Err(TransportError::Body {
                status,
                reason: e.to_string(),
            }),
        }
    }

    async fn probe(&self) -> Result<(), String> {
        let result = self
            .client
            .send::<Bytes, ()>(
                Method::Get,
                "/",
                HeaderMap::new(),
                None,
                None,
                Some(Duration::from_secs(5)),
            )
            .await;
        match result {
            Ok(r) if r.status_code().is_success() => {
                // `GET /` also says who the cluster is: for `/status`.
                if let Ok(body) = r.bytes().await {
                    if let Some(id) = identity(&body) {
                        crate::status::board().cluster_identity(id);
                    }
                }
                Ok(())
            }
            Ok(r) => Err(format!(
                "HTTP {} from the cluster",
                r.status_code().as_u16()
            )),
            Err(e) => Err(format!("cluster unreachable: {}", error_chain(&e))),
        }
    }
}

/// Name, uuid, distribution and version from the body of `GET /` (Elasticsearch has no
/// `version.distribution`); `None` if it is not that document.
fn identity(body: &[u8]) -> Option<ClusterIdentity> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let text = |x: &serde_json::Value| x.as_str().unwrap_or_default().to_string();
    let version = v.get("version")?;
    Some(ClusterIdentity {
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
fn error_chain(e: &dyn std::error::Error) -> String {
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

    #[test]
    fn identity_of_opensearch_and_elasticsearch() {
        let os = br#"{"name":"n1","cluster_name":"logs","cluster_uuid":"u1","version":{"distribution":"opensearch","number":"2.19.1"},"tagline":"The OpenSearch Project"}"#;
        let id = identity(os).unwrap();
        assert_eq!(
            (
                id.name.as_str(),
                id.distribution.as_str(),
                id.version.as_str()
            ),
            ("logs", "opensearch", "2.19.1")
        );
        let es = br#"{"cluster_name":"c","cluster_uuid":"u","version":{"number":"8.19.3","build_flavor":"default"}}"#;
        assert_eq!(identity(es).unwrap().distribution, "elasticsearch");
        assert_eq!(identity(b"<html>"), None);
        assert_eq!(identity(b"{}"), None);
    }
}
