//! [`ClusterAdmin`] for the real cluster: the same client (and so the same auth, TLS and
//! timeout) as the bulk requests.

use bytes::Bytes;
use elasticsearch::http::headers::HeaderMap;
use elasticsearch::http::Method;
use serde_json::Value;

use super::admin::{AdminReply, ClusterAdmin};
use super::es::EsClient;
use super::TransportError;

impl EsClient {
    async fn admin(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<AdminReply, TransportError> {
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        let query: Vec<(&str, &str)> = query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| p.split_once('=').unwrap_or((p, "")))
            .collect();
        let body = body.map(|b| Bytes::from(b.to_string()));
        let resp = self
            .client
            .send(
                method,
                &format!("/{}", path.trim_start_matches('/')),
                HeaderMap::new(),
                (!query.is_empty()).then_some(&query),
                body,
                None,
            )
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    TransportError::Timeout(e.to_string())
                } else {
                    TransportError::Failed(e.to_string())
                }
            })?;
        let status = resp.status_code().as_u16();
        match resp.bytes().await {
            Ok(body) => Ok(AdminReply { status, body }),
            Err(e) => Err(TransportError::Body {
                status,
                reason: e.to_string(),
            }),
        }
    }
}

#[async_trait::async_trait]
impl ClusterAdmin for EsClient {
    async fn get(&self, path: &str) -> Result<AdminReply, TransportError> {
        self.admin(Method::Get, path, None).await
    }

    async fn put(&self, path: &str, body: Value) -> Result<AdminReply, TransportError> {
        self.admin(Method::Put, path, Some(body)).await
    }

    async fn post(&self, path: &str, body: Value) -> Result<AdminReply, TransportError> {
        self.admin(Method::Post, path, Some(body)).await
    }

    async fn delete(&self, path: &str) -> Result<AdminReply, TransportError> {
        self.admin(Method::Delete, path, None).await
    }
}
