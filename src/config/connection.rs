//! Reading how the worker reaches its cluster: the URL (`ES_URL`, or `ES_CLOUD_ID` decoded), the
//! authentication (`ES_AUTH`, inferred from the other `ES_*` variables and the host when unset),
//! SigV4's service and region (`ES_AWS_SERVICE`, the host, `AWS_REGION`), the request compression
//! (`ES_COMPRESSION`) and the rules between them. Pure functions of the variables: unit-tested in
//! `super::tests` and below with real-shaped hosts and ids.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use super::env::{check_http_url, err, Env};
use super::{AwsService, AwsSigning, Compression, ConfigError, EsAuth};

/// The cluster URL and how to authenticate to it.
pub(super) struct Cluster {
    pub(super) url: String,
    pub(super) auth: EsAuth,
    pub(super) compression: Compression,
}

pub(super) fn cluster(env: &Env<'_>) -> Result<Cluster, ConfigError> {
    let url = match (env.string("ES_URL"), env.string("ES_CLOUD_ID")) {
        (Some(_), Some(_)) => {
            return Err(err(
                "ES_CLOUD_ID",
                None,
                "cannot be combined with ES_URL",
                "either ES_URL or ES_CLOUD_ID",
            ))
        }
        (None, Some(id)) => cloud_id_url(&id)?,
        (url, None) => url.unwrap_or_else(|| "http://localhost:9200".into()),
    };
    check_http_url("ES_URL", &url)?;
    let auth = auth(env, &url)?;
    let compression = match env.string("ES_COMPRESSION").as_deref() {
        None | Some("gzip") => Compression::Gzip,
        Some("none") => Compression::None,
        Some(other) => {
            return Err(err(
                "ES_COMPRESSION",
                Some(other),
                "is unknown",
                "gzip, none",
            ))
        }
    };
    Ok(Cluster {
        url,
        auth,
        compression,
    })
}

/// `ES_AUTH` and the variables it needs; unset, it is inferred: `ES_API_KEY` → api_key,
/// `ES_USERNAME`+`ES_PASSWORD` → basic, an AWS host (`*.es.amazonaws.com`, Serverless) → sigv4,
/// else none.
fn auth(env: &Env<'_>, url: &str) -> Result<EsAuth, ConfigError> {
    let (user, password, key) = (
        env.string("ES_USERNAME"),
        env.string("ES_PASSWORD"),
        env.string("ES_API_KEY"),
    );
    let host = host_of(url);
    let kind = match env.string("ES_AUTH").as_deref() {
        Some(k @ ("sigv4" | "basic" | "api_key" | "none")) => k.to_string(),
        Some(other) => {
            return Err(err(
                "ES_AUTH",
                Some(other),
                "is unknown",
                "sigv4, basic, api_key, none",
            ))
        }
        None if key.is_some() && user.is_none() && password.is_none() => "api_key".into(),
        None if key.is_some() => {
            return Err(ConfigError {
                var: "ES_API_KEY".into(),
                value: "<redacted>".into(),
                problem: "cannot be combined with ES_USERNAME/ES_PASSWORD".into(),
                accepted: "either ES_API_KEY or ES_USERNAME+ES_PASSWORD".into(),
            })
        }
        None if user.is_some() || password.is_some() => "basic".into(),
        None if aws_service_of(host).is_some() => "sigv4".into(),
        None => "none".into(),
    };
    let service_var = env.string("ES_AWS_SERVICE");
    if kind != "sigv4" {
        if let Some(s) = &service_var {
            return Err(err(
                "ES_AWS_SERVICE",
                Some(s),
                &format!("is only used with ES_AUTH=sigv4 (the authentication is {kind})"),
                "unset, or ES_AUTH=sigv4",
            ));
        }
    }
    // A secret set beside a mode that does not use it: the operator meant something else.
    let unused = |mode: &str, present: &[(&'static str, bool)]| -> Result<(), ConfigError> {
        match present.iter().find(|(_, set)| *set) {
            Some((var, _)) => Err(ConfigError {
                var: (*var).into(),
                value: "<redacted>".into(),
                problem: format!("is set, but ES_AUTH is {mode}, which does not use it"),
                accepted: format!("unset {var}, or the ES_AUTH that uses it"),
            }),
            None => Ok(()),
        }
    };
    match kind.as_str() {
        "none" => {
            unused(
                "none",
                &[
                    ("ES_USERNAME", user.is_some()),
                    ("ES_PASSWORD", password.is_some()),
                    ("ES_API_KEY", key.is_some()),
                ],
            )?;
            Ok(EsAuth::None)
        }
        "api_key" => {
            unused(
                "api_key",
                &[
                    ("ES_USERNAME", user.is_some()),
                    ("ES_PASSWORD", password.is_some()),
                ],
            )?;
            let key = key.ok_or_else(|| {
                err(
                    "ES_API_KEY",
                    None,
                    "is required with ES_AUTH=api_key",
                    "the encoded API key, or id:key",
                )
            })?;
            Ok(EsAuth::ApiKey(encoded_api_key(&key)?))
        }
        "basic" => {
            unused("basic", &[("ES_API_KEY", key.is_some())])?;
            match (user, password) {
                (Some(username), Some(password)) => Ok(EsAuth::Basic { username, password }),
                (Some(_), None) | (None, None) => Err(err(
                    "ES_PASSWORD",
                    None,
                    "is required with basic authentication (ES_USERNAME is set or ES_AUTH=basic)",
                    "the password of ES_USERNAME",
                )),
                (None, Some(_)) => Err(err(
                    "ES_USERNAME",
                    None,
                    "is required when ES_PASSWORD is set",
                    "a user name",
                )),
            }
        }
        _ => {
            unused(
                "sigv4",
                &[
                    ("ES_PASSWORD", password.is_some()),
                    ("ES_USERNAME", user.is_some()),
                    ("ES_API_KEY", key.is_some()),
                ],
            )?;
            let service = match service_var.as_deref() {
                Some("es") => AwsService::Es,
                Some("aoss") => AwsService::Aoss,
                Some(other) => {
                    return Err(err("ES_AWS_SERVICE", Some(other), "is unknown", "es, aoss"))
                }
                None => aws_service_of(host).unwrap_or(AwsService::Es),
            };
            let region = region_of(host)
                .or_else(|| env.string("AWS_REGION"))
                .or_else(|| env.string("AWS_DEFAULT_REGION"))
                .ok_or_else(|| {
                    err(
                        "AWS_REGION",
                        None,
                        "is required with ES_AUTH=sigv4 when ES_URL's host names no region",
                        "the cluster's region, e.g. eu-west-1",
                    )
                })?;
            Ok(EsAuth::SigV4(AwsSigning { service, region }))
        }
    }
}

/// The host of an `http(s)://` URL, without user info and port.
fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if host.starts_with('[') {
        return host.split_once(']').map_or(host, |(h, _)| &h[1..]);
    }
    host.split(':').next().unwrap_or(host)
}

/// The labels of `host` from the end, lower case.
fn labels(host: &str) -> Vec<String> {
    host.trim_end_matches('.')
        .split('.')
        .rev()
        .map(str::to_ascii_lowercase)
        .collect()
}

/// The service an AWS endpoint belongs to: `*.<region>.es.amazonaws.com` (also `.com.cn`) is a
/// domain; `*.<region>.aoss.amazonaws.com` and `*.aoss.<region>.on.aws` are Serverless.
fn aws_service_of(host: &str) -> Option<AwsService> {
    let l = labels(host);
    let at = |i: usize| l.get(i).map(String::as_str);
    match (at(0), at(1), at(2)) {
        (Some("com"), Some("amazonaws"), Some("es")) => Some(AwsService::Es),
        (Some("cn"), Some("com"), Some("amazonaws")) if at(3) == Some("es") => Some(AwsService::Es),
        (Some("com"), Some("amazonaws"), Some("aoss")) => Some(AwsService::Aoss),
        (Some("cn"), Some("com"), Some("amazonaws")) if at(3) == Some("aoss") => {
            Some(AwsService::Aoss)
        }
        (Some("aws"), Some("on"), Some(_)) if at(3) == Some("aoss") => Some(AwsService::Aoss),
        _ => None,
    }
}

/// The region an AWS endpoint names, if it is one.
fn region_of(host: &str) -> Option<String> {
    aws_service_of(host)?;
    let l = labels(host);
    let region = match (l[0].as_str(), l[1].as_str()) {
        ("aws", "on") => l.get(2),
        ("cn", _) => l.get(4),
        _ => l.get(3),
    }?;
    let looks_like_region = region.split('-').count() >= 3
        && region
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-');
    looks_like_region.then(|| region.clone())
}

/// `ES_API_KEY` in the encoded form the `Authorization: ApiKey` header carries: given as `id:key`
/// it is encoded here; given encoded, it must decode to `id:key`.
fn encoded_api_key(value: &str) -> Result<String, ConfigError> {
    let problem = |p: &str| {
        ConfigError {
        var: "ES_API_KEY".into(),
        value: "<redacted>".into(),
        problem: p.into(),
        accepted: "the encoded API key (base64 of id:key, as Kibana and _security/api_key give it), or id:key".into(),
    }
    };
    if let Some((id, key)) = value.split_once(':') {
        if id.is_empty() || key.is_empty() {
            return Err(problem("has an empty id or key"));
        }
        return Ok(STANDARD.encode(value));
    }
    let decoded = STANDARD
        .decode(value)
        .map_err(|_| problem("is not base64 and not id:key"))?;
    match std::str::from_utf8(&decoded)
        .ok()
        .and_then(|s| s.split_once(':'))
    {
        Some((id, key)) if !id.is_empty() && !key.is_empty() => Ok(value.to_string()),
        _ => Err(problem("does not decode to id:key")),
    }
}

/// The `https://` URL of an Elastic Cloud deployment's Elasticsearch from its cloud id:
/// `name:base64(host[:port]$es-uuid[:port]$kibana-uuid[:port])`. A port on the Elasticsearch part
/// wins over one on the host; without either it is 443.
pub(super) fn cloud_id_url(id: &str) -> Result<String, ConfigError> {
    let bad = |problem: &str| {
        err(
            "ES_CLOUD_ID",
            Some(id),
            problem,
            "the Cloud ID from the Elastic Cloud console, name:base64(host$es-uuid$kibana-uuid)",
        )
    };
    // The name may itself contain ':'; the base64 part never does.
    let encoded = id
        .rsplit_once(':')
        .map_or(id, |(_, e)| e)
        .trim_end_matches('\n');
    let decoded = STANDARD
        .decode(encoded)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(encoded))
        .map_err(|_| bad("is not name:base64"))?;
    let text = String::from_utf8(decoded).map_err(|_| bad("does not decode to text"))?;
    let mut parts = text.trim_end_matches('\n').split('$');
    let host_part = parts.next().unwrap_or_default();
    let es_part = parts
        .next()
        .ok_or_else(|| bad("names no Elasticsearch part"))?;
    let (host, host_port) = split_port(host_part).ok_or_else(|| bad("has an invalid port"))?;
    let (es, es_port) = split_port(es_part).ok_or_else(|| bad("has an invalid port"))?;
    let valid = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
    };
    if !valid(host) || !valid(es) {
        return Err(bad("does not decode to host$es-uuid$kibana-uuid"));
    }
    let port = es_port.or(host_port).unwrap_or(443);
    Ok(if port == 443 {
        format!("https://{es}.{host}")
    } else {
        format!("https://{es}.{host}:{port}")
    })
}

/// `name:port` → (name, port); `None` when the port is not a number.
fn split_port(s: &str) -> Option<(&str, Option<u16>)> {
    match s.rsplit_once(':') {
        Some((name, port)) => Some((name, Some(port.parse().ok()?))),
        None => Some((s, None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `name:base64(decoded)`, as the Elastic Cloud console writes it.
    fn cloud_id(name: &str, decoded: &str) -> String {
        format!("{name}:{}", STANDARD.encode(decoded))
    }

    #[test]
    fn cloud_ids_of_real_shape_decode_with_ports_on_either_part() {
        // The example of Elastic's documentation ("Connecting to Elastic Cloud").
        let documented = "cluster_name:ZXUtY2VudHJhbC0xLmF3cy5jbG91ZC5lcy5pbyQ0ZGU0NmNlZDhkOGQ0NTk2OTZlNTQ0ZmU1ZjMyYjk5OSRlY2I0YTJlZmY0OTA0ZDliOTE5NzMzMmQwOWNjOTY5Ng==";
        assert_eq!(
            cloud_id_url(documented).unwrap(),
            "https://4de46ced8d8d459696e544fe5f32b999.eu-central-1.aws.cloud.es.io"
        );
        // A deployment name with a colon in it; the older found.io domain.
        let id = "logs:prod:dXMtZWFzdC0xLmF3cy5mb3VuZC5pbyRjZWM2ZjI2MWE3NGJmMjRjZTMzYmI4ODExYjg0Mjk0ZiRjNmMyY2E2ZDA0MjI0OWFmMGNjN2Q3YTllOTYyNTc0Mw==";
        assert_eq!(
            cloud_id_url(id).unwrap(),
            "https://cec6f261a74bf24ce33bb8811b84294f.us-east-1.aws.found.io"
        );
        let with_host_port = cloud_id(
            "prod:eu",
            "europe-west1.gcp.cloud.es.io:9243$0123456789abcdef0123456789abcdef$fedcba9876543210fedcba9876543210",
        );
        assert_eq!(
            cloud_id_url(&with_host_port).unwrap(),
            "https://0123456789abcdef0123456789abcdef.europe-west1.gcp.cloud.es.io:9243"
        );
        let with_es_port = cloud_id(
            "x",
            "westeurope.azure.elastic-cloud.com:9243$abc123:443$kib456",
        );
        assert_eq!(
            cloud_id_url(&with_es_port).unwrap(),
            "https://abc123.westeurope.azure.elastic-cloud.com"
        );
        let no_kibana = cloud_id("x", "us-central1.gcp.cloud.es.io$abc");
        assert_eq!(
            cloud_id_url(&no_kibana).unwrap(),
            "https://abc.us-central1.gcp.cloud.es.io"
        );
    }

    #[test]
    fn garbage_cloud_ids_are_refused() {
        for bad in [
            "not-a-cloud-id",
            "name:%%%",
            &cloud_id("x", "only-a-host"),
            &cloud_id("x", "host:notaport$abc$def"),
            &cloud_id("x", "$abc$def"),
            &cloud_id("x", "host$a/b$def"),
        ] {
            let e = cloud_id_url(bad).unwrap_err();
            assert_eq!(e.var, "ES_CLOUD_ID", "{bad}");
        }
    }

    #[test]
    fn api_keys_encoded_or_id_colon_key() {
        assert_eq!(
            encoded_api_key("VuaCfGcBCdbkQm-e5aOx:ui2lp2axTNmsyakw9tvNnw").unwrap(),
            "VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw=="
        );
        assert_eq!(
            encoded_api_key("VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw==")
                .unwrap(),
            "VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw=="
        );
        for bad in ["not base64!", "bm9jb2xvbg==", ":key", "id:"] {
            let e = encoded_api_key(bad).unwrap_err();
            assert_eq!(e.var, "ES_API_KEY");
            assert_eq!(e.value, "<redacted>", "{e}");
        }
    }

    #[test]
    fn aws_hosts_name_their_service_and_region() {
        let cases = [
            (
                "search-logs-abc123xyz.eu-west-1.es.amazonaws.com",
                Some(AwsService::Es),
                Some("eu-west-1"),
            ),
            (
                "vpc-logs-abc.us-gov-west-1.es.amazonaws.com",
                Some(AwsService::Es),
                Some("us-gov-west-1"),
            ),
            (
                "search-x.cn-north-1.es.amazonaws.com.cn",
                Some(AwsService::Es),
                Some("cn-north-1"),
            ),
            (
                "07tjusf2h91cunochc.us-east-1.aoss.amazonaws.com",
                Some(AwsService::Aoss),
                Some("us-east-1"),
            ),
            (
                "07tjusf2h91cunochc.aoss.ap-southeast-2.on.aws",
                Some(AwsService::Aoss),
                Some("ap-southeast-2"),
            ),
            ("my-cluster.example.com", None, None),
            ("127.0.0.1", None, None),
        ];
        for (host, service, region) in cases {
            assert_eq!(aws_service_of(host), service, "{host}");
            assert_eq!(region_of(host).as_deref(), region, "{host}");
        }
        assert_eq!(host_of("https://u:p@h.example:9200/x?y"), "h.example");
        assert_eq!(host_of("http://[::1]:9200"), "::1");
    }
}
