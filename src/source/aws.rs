//! The AWS SDK configuration every AWS client of the worker shares: credentials from the
//! standard chain (environment, ECS task role, profile), the region, `AWS_ENDPOINT_URL`
//! (LocalStack), and HTTPS on rustls with ring, the crypto the Elasticsearch client already links.

use aws_config::SdkConfig;

use crate::config::SourceConfig;

/// The shared SDK configuration, from the standard chain and `AWS_*`.
pub async fn sdk_config(cfg: &SourceConfig) -> SdkConfig {
    use aws_smithy_http_client::tls;
    let https = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(https);
    if let Some(region) = &cfg.aws_region {
        loader = loader.region(aws_config::Region::new(region.clone()));
    }
    if let Some(url) = &cfg.aws_endpoint_url {
        loader = loader.endpoint_url(url);
    }
    loader.load().await
}
