//! What differs between the engines the worker talks to, in one place: who the cluster is (the
//! `GET /` answer of Elasticsearch, OpenSearch and Elastic's Serverless; OpenSearch Serverless,
//! which has no `GET /`), and how each names what the delivery loop acts on — the thread-pool
//! rejection (`es_rejected_execution_exception` in Elasticsearch, `rejected_execution_exception`
//! in OpenSearch), Serverless's refusal of document ids, an expired SigV4 session token.
//!
//! Pure functions, unit-tested on responses recorded from real nodes (`tests/fixtures/es/`,
//! `tests/fixtures/opensearch/`). [`super::classify`] and [`super::es`] ask here instead of
//! comparing strings themselves.

use serde::Deserialize;

/// The engine family, as `GET /` (or the configuration, for OpenSearch Serverless) says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    Elasticsearch,
    /// Elastic Cloud Serverless (`build_flavor: serverless`).
    ElasticsearchServerless,
    OpenSearch,
    /// Amazon OpenSearch Serverless: no `GET /`, no version.
    OpenSearchServerless,
}

impl Flavour {
    pub fn name(self) -> &'static str {
        match self {
            Flavour::Elasticsearch => "Elasticsearch",
            Flavour::ElasticsearchServerless => "Elasticsearch Serverless",
            Flavour::OpenSearch => "OpenSearch",
            Flavour::OpenSearchServerless => "OpenSearch Serverless",
        }
    }
}

/// Who the cluster is: logged once at start-up and shown on `/readyz`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterIdentity {
    pub flavour: Flavour,
    /// `version.number`; none for OpenSearch Serverless.
    pub version: Option<String>,
    /// `build_flavor` when it is not the default one (`oss` on old Amazon domains).
    pub build: Option<String>,
    pub cluster_name: Option<String>,
    /// Where it is hosted when the configuration says (`Amazon OpenSearch Service`).
    pub hosted: Option<&'static str>,
}

impl std::fmt::Display for ClusterIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.flavour.name())?;
        if let Some(v) = &self.version {
            write!(f, " {v}")?;
        }
        if let Some(b) = &self.build {
            write!(f, " ({b})")?;
        }
        if let Some(h) = self.hosted {
            write!(f, " on {h}")?;
        }
        Ok(())
    }
}

impl ClusterIdentity {
    /// OpenSearch Serverless, known from the configuration (`ES_AWS_SERVICE=aoss`).
    pub fn opensearch_serverless() -> ClusterIdentity {
        ClusterIdentity {
            flavour: Flavour::OpenSearchServerless,
            version: None,
            build: None,
            cluster_name: None,
            hosted: None,
        }
    }
}

#[derive(Deserialize)]
struct Root {
    #[serde(default)]
    cluster_name: Option<String>,
    version: RootVersion,
}

#[derive(Deserialize)]
struct RootVersion {
    number: String,
    #[serde(default)]
    distribution: Option<String>,
    #[serde(default)]
    build_flavor: Option<String>,
}

/// The identity in a `GET /` answer: OpenSearch says `version.distribution: opensearch`;
/// Elasticsearch has no distribution and says `build_flavor` (`default`, `serverless`, or `oss`
/// on 7.x and on Amazon's legacy Elasticsearch domains).
pub fn parse_root(body: &[u8]) -> Result<ClusterIdentity, String> {
    let root: Root = serde_json::from_slice(body).map_err(|e| {
        format!(
            "GET / did not answer with a cluster's identity ({e}): {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        )
    })?;
    let v = root.version;
    let (flavour, build) = match (v.distribution.as_deref(), v.build_flavor.as_deref()) {
        (Some(d), _) if d.eq_ignore_ascii_case("opensearch") => (Flavour::OpenSearch, None),
        (_, Some("serverless")) => (Flavour::ElasticsearchServerless, None),
        (_, Some("default") | None) => (Flavour::Elasticsearch, None),
        (_, Some(other)) => (Flavour::Elasticsearch, Some(other.to_string())),
    };
    Ok(ClusterIdentity {
        flavour,
        version: Some(v.number),
        build,
        cluster_name: root.cluster_name,
        hosted: None,
    })
}

/// The write thread pool (or indexing pressure) refused the work: retry later, and slow down.
/// Elasticsearch prefixes its exception names with `es_`, OpenSearch does not.
pub fn is_rejected_execution(error_type: &str) -> bool {
    matches!(
        error_type,
        "es_rejected_execution_exception" | "rejected_execution_exception"
    )
}

/// OpenSearch Serverless TIMESERIES and VECTOR collections refuse a document with an `_id`, per
/// item: 400 `illegal_argument_exception` "Document ID is not supported in create/index
/// operation request". Retrying or dead-lettering cannot help: only `ES_DOCUMENT_ID=none` (or a
/// SEARCH collection) does.
pub fn is_document_id_refusal(status: u16, error_type: &str, reason: &str) -> bool {
    status == 400
        && error_type == "illegal_argument_exception"
        && reason.contains("Document ID is not supported")
}

/// A 403 because the SigV4 session token has expired (`{"message": "The security token included
/// in the request is expired"}`, or an `ExpiredToken…` code): new credentials fix it at once.
pub fn is_expired_token(status: u16, body: &[u8]) -> bool {
    if status != 403 {
        return false;
    }
    let text = String::from_utf8_lossy(&body[..body.len().min(2048)]);
    text.contains("security token included in the request is expired")
        || text.contains("ExpiredToken")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(path: &str) -> Vec<u8> {
        let p = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/");
        std::fs::read(format!("{p}{path}")).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn identities_of_each_flavour_from_recorded_answers() {
        let os = parse_root(&fixture("opensearch/2.19.6/root.json")).unwrap();
        assert_eq!(os.flavour, Flavour::OpenSearch);
        assert_eq!(os.to_string(), "OpenSearch 2.19.6");
        assert_eq!(os.cluster_name.as_deref(), Some("f4a-local"));
        for v in ["9.5.3", "8.19.21"] {
            let es = parse_root(&fixture(&format!("es/{v}/root.json"))).unwrap();
            assert_eq!(es.to_string(), format!("Elasticsearch {v}"));
        }
        let docker = parse_root(&fixture("es/spec/root-8.12.1-docker.json")).unwrap();
        assert_eq!(docker.to_string(), "Elasticsearch 8.12.1");
        let serverless = parse_root(&fixture("es/spec/root-serverless.json")).unwrap();
        assert_eq!(serverless.flavour, Flavour::ElasticsearchServerless);
        assert_eq!(serverless.to_string(), "Elasticsearch Serverless 8.11.0");
        // An Amazon domain still on Elasticsearch 7.10 (the OSS build).
        let legacy = parse_root(
            br#"{"name":"x","cluster_name":"123:logs","version":{"number":"7.10.2","build_flavor":"oss","build_type":"tar"},"tagline":"You Know, for Search"}"#,
        )
        .unwrap();
        assert_eq!(legacy.to_string(), "Elasticsearch 7.10.2 (oss)");
        let mut hosted = os.clone();
        hosted.hosted = Some("Amazon OpenSearch Service");
        assert_eq!(
            hosted.to_string(),
            "OpenSearch 2.19.6 on Amazon OpenSearch Service"
        );
        assert_eq!(
            ClusterIdentity::opensearch_serverless().to_string(),
            "OpenSearch Serverless"
        );
        assert!(parse_root(b"").is_err());
        assert!(parse_root(b"<html>proxy</html>").is_err());
    }

    #[test]
    fn both_spellings_of_the_rejection() {
        assert!(is_rejected_execution("es_rejected_execution_exception"));
        assert!(is_rejected_execution("rejected_execution_exception"));
        assert!(!is_rejected_execution("mapper_parsing_exception"));
        assert!(!is_rejected_execution("cluster_block_exception"));
    }

    #[test]
    fn serverless_document_id_refusal_and_expired_tokens() {
        assert!(is_document_id_refusal(
            400,
            "illegal_argument_exception",
            "Document ID is not supported in create/index operation request"
        ));
        assert!(!is_document_id_refusal(
            400,
            "illegal_argument_exception",
            "mapper [x] cannot be changed"
        ));
        assert!(is_expired_token(
            403,
            br#"{"message": "The security token included in the request is expired"}"#
        ));
        assert!(is_expired_token(
            403,
            br#"{"__type":"ExpiredTokenException"}"#
        ));
        assert!(!is_expired_token(
            403,
            br#"{"message": "The security token included in the request is invalid."}"#
        ));
        assert!(!is_expired_token(
            401,
            br#"{"message": "The security token included in the request is expired"}"#
        ));
    }
}
