//! AWS Signature V4 for the sink's requests (Amazon OpenSearch Service `es`, Serverless `aoss`):
//! credentials from the default AWS chain, cached and refreshed before they expire, and the
//! signature of one request, computed by the `aws-sigv4` crate.
//!
//! The rules every signing peer has broken at least once, and how they are kept here:
//! - **sign exactly what is sent**: [`super::es`] compresses first and hands the final bytes
//!   (gzip or not) both to [`sign`] and to the transport; the URL signed is the one the
//!   transport requests (the same join of the base URL and the path with its query);
//! - **`x-amz-content-sha256` always** (Serverless refuses a request without it), the session
//!   token included (`x-amz-security-token`), and only headers that go out unchanged are signed:
//!   `host` (also set explicitly on the request), `content-type`, `content-encoding`; never
//!   `content-length`, which Serverless refuses to see signed and hyper writes itself;
//! - **every attempt is signed anew** (a retry can come minutes later): the caller signs right
//!   before each send;
//! - **credentials never go stale**: [`CredentialCache`] fetches from the chain (the ECS task
//!   role endpoint on Fargate) and refreshes ahead of the expiry, keeps using valid credentials
//!   when a refresh fails, and refreshes on demand after a 403 that says the token expired — at
//!   most once per [`MIN_FETCH_INTERVAL`], so a burst of such answers never becomes a tight loop.
//!
//! Why a cache of our own: the SDK's identity cache lives inside its clients' runtime (it needs
//! their runtime components); the `SharedCredentialsProvider` of `SdkConfig` is the uncached
//! chain, which fetches on every call.

use std::time::{Duration, Instant, SystemTime};

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign as sigv4_sign, PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;

use crate::config::AwsSigning;
use crate::metrics::{self, CredentialRefresh};

/// A refresh is never started sooner than this after the previous one, whatever asks for it.
pub const MIN_FETCH_INTERVAL: Duration = Duration::from_secs(1);
/// Refresh ahead of the expiry by half the credentials' remaining life, at most this much:
/// task-role credentials live for hours and are renewed well before, test ones for seconds.
const MAX_REFRESH_AHEAD: Duration = Duration::from_secs(300);
/// One fetch from the chain (the providers have their own, shorter, timeouts and retries).
const FETCH_TIMEOUT: Duration = Duration::from_secs(20);
/// After a failed fetch while the old credentials are still valid, the next try.
const RETRY_FAILED_FETCH: Duration = Duration::from_secs(5);

/// The request as it goes on the wire, for [`sign`].
pub struct Unsigned<'a> {
    pub method: &'a str,
    /// Absolute and already encoded, as the transport will request it.
    pub url: &'a str,
    /// The headers to sign (`host` first); each is sent with exactly this value.
    pub headers: &'a [(&'a str, &'a str)],
    /// The final body bytes (compressed when the request is).
    pub body: &'a [u8],
}

/// The headers to add: `authorization`, `x-amz-date`, `x-amz-content-sha256`, and
/// `x-amz-security-token` when the credentials have a session token.
pub fn sign(
    creds: &Credentials,
    scope: &AwsSigning,
    at: SystemTime,
    req: &Unsigned<'_>,
) -> Result<Vec<(&'static str, String)>, String> {
    let mut settings = SigningSettings::default();
    // The default (`NoHeader`) sends no body hash: Serverless refuses such requests.
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    let identity: Identity = creds.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(&scope.region)
        .name(scope.service.signing_name())
        .time(at)
        .settings(settings)
        .build()
        .map_err(|e| format!("SigV4 parameters: {e}"))?
        .into();
    let signable = SignableRequest::new(
        req.method,
        req.url,
        req.headers.iter().copied(),
        SignableBody::Bytes(req.body),
    )
    .map_err(|e| format!("SigV4: the request cannot be signed: {e}"))?;
    let (instructions, _signature) = sigv4_sign(signable, &params)
        .map_err(|e| format!("SigV4 signing failed: {e}"))?
        .into_parts();
    let (headers, _params) = instructions.into_parts();
    Ok(headers
        .into_iter()
        .map(|h| (h.name(), h.value().to_string()))
        .collect())
}

/// Credentials from the default chain, cached; one fetch at a time.
pub struct CredentialCache {
    provider: SharedCredentialsProvider,
    state: tokio::sync::Mutex<CacheState>,
}

#[derive(Default)]
struct CacheState {
    current: Option<Credentials>,
    /// When the current credentials should be replaced; `None`: they do not expire.
    refresh_at: Option<SystemTime>,
    last_fetch: Option<Instant>,
}

impl CredentialCache {
    pub fn new(provider: SharedCredentialsProvider) -> CredentialCache {
        CredentialCache {
            provider,
            state: tokio::sync::Mutex::new(CacheState::default()),
        }
    }

    /// Credentials to sign with now. `expired_token`: the cluster just said the token the
    /// request carried has expired, so fetch anew even if they do not look due (unless a fetch
    /// happened within [`MIN_FETCH_INTERVAL`]: that one's result is the answer).
    pub async fn get(&self, expired_token: bool) -> Result<Credentials, String> {
        let mut st = self.state.lock().await;
        let now = SystemTime::now();
        let recently = st
            .last_fetch
            .is_some_and(|t| t.elapsed() < MIN_FETCH_INTERVAL);
        let reason = match &st.current {
            None => CredentialRefresh::Initial,
            Some(c) if recently => return Ok(c.clone()),
            Some(_) if expired_token => CredentialRefresh::ExpiredToken,
            Some(_) if st.refresh_at.is_some_and(|t| now >= t) => CredentialRefresh::Expiring,
            Some(c) => return Ok(c.clone()),
        };
        st.last_fetch = Some(Instant::now());
        let fetched =
            match tokio::time::timeout(FETCH_TIMEOUT, self.provider.provide_credentials()).await {
                Ok(Ok(c)) => Ok(c),
                Ok(Err(e)) => Err(crate::sink::es::error_chain(&e)),
                Err(_) => Err(format!(
                    "no answer from the credentials provider within {}s",
                    FETCH_TIMEOUT.as_secs()
                )),
            };
        match fetched {
            Ok(c) => {
                st.refresh_at = c.expiry().map(|e| refresh_time(now, e));
                metrics::get().credentials_refreshed(reason, true);
                tracing::debug!(
                    reason = reason.label(),
                    expires_in_secs = c
                        .expiry()
                        .and_then(|e| e.duration_since(now).ok())
                        .map(|d| d.as_secs()),
                    "AWS credentials for the cluster refreshed"
                );
                st.current = Some(c.clone());
                Ok(c)
            }
            Err(error) => {
                metrics::get().credentials_refreshed(reason, false);
                let still_valid = st
                    .current
                    .as_ref()
                    .filter(|c| c.expiry().is_none_or(|e| e > now))
                    .cloned();
                match still_valid {
                    Some(c) => {
                        tracing::warn!(
                            error,
                            "refreshing the AWS credentials failed; signing with the current ones until they expire"
                        );
                        st.refresh_at = Some(now + RETRY_FAILED_FETCH);
                        Ok(c)
                    }
                    None => Err(format!(
                        "no AWS credentials to sign with (ES_AUTH=sigv4; the default chain: env, profile, ECS task role, instance role): {error}"
                    )),
                }
            }
        }
    }
}

/// When credentials fetched at `now` and expiring at `expiry` are due for replacement: half
/// their remaining life ahead of the expiry, at most [`MAX_REFRESH_AHEAD`].
fn refresh_time(now: SystemTime, expiry: SystemTime) -> SystemTime {
    let remaining = expiry.duration_since(now).unwrap_or_default();
    expiry - (remaining / 2).min(MAX_REFRESH_AHEAD)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AwsService;
    use aws_credential_types::provider::future;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    fn scope() -> AwsSigning {
        AwsSigning {
            service: AwsService::Aoss,
            region: "eu-west-1".into(),
        }
    }

    #[test]
    fn signs_the_body_hash_the_session_token_and_only_the_given_headers() {
        let creds = Credentials::new("ASIAEXAMPLE", "secret", Some("tok".into()), None, "t");
        let req = Unsigned {
            method: "POST",
            url: "https://abc.eu-west-1.aoss.amazonaws.com/_bulk?filter_path=errors,items.*.status",
            headers: &[
                ("host", "abc.eu-west-1.aoss.amazonaws.com"),
                ("content-type", "application/x-ndjson"),
                ("content-encoding", "gzip"),
            ],
            body: b"abc",
        };
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_790_000_000);
        let headers = sign(&creds, &scope(), at, &req).unwrap();
        let get = |n: &str| {
            headers
                .iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| v.as_str())
        };
        // sha256("abc")
        assert_eq!(
            get("x-amz-content-sha256"),
            Some("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        );
        assert_eq!(get("x-amz-security-token"), Some("tok"));
        assert_eq!(get("x-amz-date"), Some("20260921T141320Z"));
        let auth = get("authorization").unwrap();
        assert!(
            auth.starts_with("AWS4-HMAC-SHA256 Credential=ASIAEXAMPLE/20260921/eu-west-1/aoss/aws4_request, SignedHeaders=content-encoding;content-type;host;x-amz-content-sha256;x-amz-date;x-amz-security-token, Signature="),
            "{auth}"
        );
        // Signed anew, a second later: another signature.
        let later = sign(&creds, &scope(), at + Duration::from_secs(1), &req).unwrap();
        assert_ne!(later, headers);
    }

    #[test]
    fn refreshes_half_the_remaining_life_ahead_at_most_five_minutes() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let in_secs = |s| now + Duration::from_secs(s);
        assert_eq!(refresh_time(now, in_secs(80)), in_secs(40));
        assert_eq!(
            refresh_time(now, in_secs(6 * 3600)),
            in_secs(6 * 3600 - 300)
        );
        assert_eq!(refresh_time(now, now), now);
    }

    /// A provider handing out a new set on each call, each living `life`.
    #[derive(Debug)]
    struct Rotating {
        calls: Arc<AtomicU32>,
        life: Duration,
        fail: bool,
    }

    impl ProvideCredentials for Rotating {
        fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            if self.fail && n > 0 {
                return future::ProvideCredentials::ready(Err(
                    aws_credential_types::provider::error::CredentialsError::not_loaded("down"),
                ));
            }
            future::ProvideCredentials::ready(Ok(Credentials::new(
                format!("ASIA{n}"),
                "s",
                Some("t".into()),
                Some(SystemTime::now() + self.life),
                "test",
            )))
        }
    }

    fn cache(life: Duration, fail: bool) -> (CredentialCache, Arc<AtomicU32>) {
        let calls = Arc::new(AtomicU32::new(0));
        let provider = SharedCredentialsProvider::new(Rotating {
            calls: calls.clone(),
            life,
            fail,
        });
        (CredentialCache::new(provider), calls)
    }

    #[tokio::test]
    async fn cached_until_due_refreshed_on_an_expired_token_but_never_in_a_loop() {
        let (c, calls) = cache(Duration::from_secs(3600), false);
        assert_eq!(c.get(false).await.unwrap().access_key_id(), "ASIA0");
        assert_eq!(c.get(false).await.unwrap().access_key_id(), "ASIA0");
        // Within MIN_FETCH_INTERVAL of the last fetch an expired-token refresh is not repeated.
        assert_eq!(c.get(true).await.unwrap().access_key_id(), "ASIA0");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        tokio::time::sleep(MIN_FETCH_INTERVAL).await;
        assert_eq!(c.get(true).await.unwrap().access_key_id(), "ASIA1");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn short_lived_credentials_are_replaced_before_they_expire() {
        let (c, calls) = cache(Duration::from_millis(2400), false);
        assert_eq!(c.get(false).await.unwrap().access_key_id(), "ASIA0");
        // Due after half of its life (1.2 s), and a fetch may follow the last one after 1 s.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let fresh = c.get(false).await.unwrap();
        assert_eq!(fresh.access_key_id(), "ASIA1");
        assert!(fresh.expiry().unwrap() > SystemTime::now());
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_failed_refresh_keeps_valid_credentials_and_fails_once_they_expired() {
        let (c, _) = cache(Duration::from_millis(2400), true);
        assert_eq!(c.get(false).await.unwrap().access_key_id(), "ASIA0");
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(c.get(false).await.unwrap().access_key_id(), "ASIA0");
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let e = c.get(true).await.unwrap_err();
        assert!(e.contains("ES_AUTH=sigv4"), "{e}");
    }
}
