//! [`ClusterAdmin`] for the real cluster: the same client and request path (and so the same
//! auth, SigV4 signing, compression, TLS and timeout) as the bulk requests.

use bytes::Bytes;
use elasticsearch::http::Method;
use serde_json::Value;

use super::admin::{AdminReply, ClusterAdmin};
use super::es::EsClient;
use super::TransportError;

impl EsClient {
    /// One admin call through [`EsClient::request`]: compressed and, with `ES_AUTH=sigv4`,
    /// signed like every bulk request (an unsigned template PUT would be refused by AWS).
    async fn admin(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<AdminReply, TransportError> {
        let path = format!("/{}", path.trim_start_matches('/'));
        let body = body.map(|b| Bytes::from(b.to_string()));
        let (status, body) = self.request(method, &path, body, None).await?;
        Ok(AdminReply { status, body })
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
