//! Template bodies and the idempotent, versioned setup over the in-memory admin fake.

use std::sync::Arc;

use super::*;
use crate::sink::admin::MemoryAdmin;

fn cfg(vars: &[(&str, &str)]) -> crate::config::Config {
    crate::config::Config::from_lookup(|k| {
        if k == "SQS_QUEUE_URL" {
            return Some("http://localhost/q".into());
        }
        vars.iter()
            .find(|(name, _)| *name == k)
            .map(|(_, v)| v.to_string())
    })
    .unwrap()
}

fn built(vars: &[(&str, &str)], replicas: u32) -> Vec<Template> {
    let c = cfg(vars);
    templates(
        &c.cluster.setup,
        &c.record.index,
        &c.record.dead_letter_index,
        replicas,
        c.cluster.index_mode == crate::config::IndexMode::DataStream,
    )
}

#[test]
fn built_in_bodies_are_made_for_a_small_cluster() {
    let t = built(&[], 0);
    assert_eq!(t[0].name, "f4a-indexer-docs-f4a");
    assert_eq!(t[1].name, "f4a-indexer-dead-letter-f4a-dead-letter");
    let docs = &t[0].body;
    assert_eq!(docs["index_patterns"], json!(["f4a-*.*.*"]));
    let s = &docs["template"]["settings"]["index"];
    assert_eq!(s["number_of_shards"], 1);
    assert_eq!(s["number_of_replicas"], 0);
    assert_eq!(s["refresh_interval"], "30s");
    assert_eq!(s["codec"], "best_compression");
    assert_eq!(s["mapping"]["total_fields"]["limit"], 1000);
    let m = &docs["template"]["mappings"];
    assert_eq!(m["date_detection"], false);
    assert_eq!(m["numeric_detection"], false);
    assert_eq!(m["properties"]["@timestamp"]["type"], "date");
    assert_eq!(m["properties"]["message"]["type"], "text");
    assert_eq!(
        m["properties"]["aws"]["properties"]["s3"]["properties"]["object"]["properties"]["key"]
            ["type"],
        "keyword"
    );
    assert_eq!(
        m["dynamic_templates"][0]["strings_as_keywords"]["mapping"]["ignore_above"],
        1024
    );
    // Numbers: doc values only by default, the points index with ES_INDEX_NUMBERS=indexed.
    let dynamic = m["dynamic_templates"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        dynamic[1]["floats_as_doc_values"]["mapping"],
        json!({"type": "float", "index": false})
    );
    assert_eq!(
        dynamic[2]["longs_as_doc_values"]["mapping"],
        json!({"type": "long", "index": false})
    );
    let indexed = built(&[("ES_INDEX_NUMBERS", "indexed")], 0);
    let dynamic = &indexed[0].body["template"]["mappings"]["dynamic_templates"];
    assert_eq!(dynamic.as_array().map(Vec::len), Some(1), "{dynamic}");
    assert_eq!(docs["_meta"]["f4a_template_version"], json!(t[0].version));
    let dl = &t[1].body;
    assert_eq!(dl["index_patterns"], json!(["f4a-dead-letter"]));
    let original = &dl["template"]["mappings"]["properties"]["event"]["properties"]["original"];
    assert_eq!(original["index"], false);
    // The patterns never capture each other's indices.
    assert!(!crate::config::glob_matches("f4a-*.*.*", "f4a-dead-letter"));

    let t = built(
        &[
            ("ES_INDEX_CODEC", "default"),
            ("ES_INDEX_SHARDS", "2"),
            ("ES_INDEX_REFRESH_INTERVAL", "5s"),
            ("ES_INDEX_TOTAL_FIELDS_LIMIT", "500"),
            ("ES_INDEX_IGNORE_ABOVE", "256"),
        ],
        1,
    );
    let s = &t[0].body["template"]["settings"]["index"];
    assert!(s.get("codec").is_none());
    assert_eq!(s["number_of_shards"], 2);
    assert_eq!(s["number_of_replicas"], 1);
    assert_eq!(s["refresh_interval"], "5s");
    assert_eq!(s["mapping"]["total_fields"]["limit"], 500);
    // Another body, another version.
    assert_ne!(t[0].version, built(&[], 1)[0].version);
    assert_eq!(built(&[], 1)[0].version, built(&[], 1)[0].version);
}

#[test]
fn an_ilm_policy_is_named_in_the_documents_template_only() {
    let t = built(&[("ES_ILM_POLICY", "f4a-retention")], 0);
    let docs = &t[0].body["template"]["settings"]["index"];
    assert_eq!(docs["lifecycle"]["name"], "f4a-retention");
    assert!(t[1].body["template"]["settings"]["index"]["lifecycle"].is_null());
    assert!(built(&[], 0)[0].body["template"]["settings"]["index"]["lifecycle"].is_null());
    // Another body, another version: `ensure` puts it at the next start.
    assert_ne!(t[0].version, built(&[], 0)[0].version);
}

#[test]
fn bad_setup_variables_name_themselves() {
    let bad = |vars: &[(&str, &str)]| {
        crate::config::Config::from_lookup(|k| {
            if k == "SQS_QUEUE_URL" {
                return Some("http://localhost/q".into());
            }
            vars.iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| v.to_string())
        })
        .unwrap_err()
        .var
    };
    assert_eq!(bad(&[("ES_SETUP", "sometimes")]), "ES_SETUP");
    assert_eq!(bad(&[("ES_INDEX_CODEC", "zstd")]), "ES_INDEX_CODEC");
    assert_eq!(bad(&[("ES_INDEX_NUMBERS", "points")]), "ES_INDEX_NUMBERS");
    assert_eq!(bad(&[("ES_ILM_POLICY", "My Policy")]), "ES_ILM_POLICY");
    assert_eq!(bad(&[("ES_ILM_POLICY", "_x")]), "ES_ILM_POLICY");
    assert_eq!(
        bad(&[("ES_INDEX_REFRESH_INTERVAL", "30")]),
        "ES_INDEX_REFRESH_INTERVAL"
    );
    assert_eq!(bad(&[("ES_INDEX_REPLICAS", "many")]), "ES_INDEX_REPLICAS");
    assert_eq!(
        bad(&[("ES_INDEX_TEMPLATE_FILE", "/nonexistent.json")]),
        "ES_INDEX_TEMPLATE_FILE"
    );
    assert_eq!(
        bad(&[
            ("ES_INDEX", "logs-%Y%m%d"),
            ("DEAD_LETTER_INDEX", "logs-dead")
        ]),
        "DEAD_LETTER_INDEX"
    );
    assert_eq!(
        bad(&[("ES_INDEX", "static"), ("RETENTION_DAYS", "3")]),
        "RETENTION_DAYS"
    );
    // With setup off, the overlap does not matter.
    let c = cfg(&[
        ("ES_INDEX", "logs-%Y%m%d"),
        ("DEAD_LETTER_INDEX", "logs-dead"),
        ("ES_SETUP", "off"),
    ]);
    assert_eq!(c.cluster.setup.mode, SetupMode::Off);
}

#[test]
fn a_user_template_file_replaces_the_body() {
    let path = std::env::temp_dir().join(format!("f4a-template-{}.json", std::process::id()));
    std::fs::write(&path, r#"{"template": {"settings": {"index": {"number_of_shards": 3}}}, "_meta": {"owner": "me"}}"#).unwrap();
    let t = built(&[("ES_INDEX_TEMPLATE_FILE", path.to_str().unwrap())], 0);
    assert_eq!(
        t[0].body["template"]["settings"]["index"]["number_of_shards"],
        3
    );
    assert_eq!(t[0].body["index_patterns"], json!(["f4a-*.*.*"]));
    assert_eq!(
        t[0].body["_meta"]["f4a_template_version"],
        json!(t[0].version)
    );
    std::fs::write(&path, "[1]").unwrap();
    let e = crate::config::Config::from_lookup(|k| match k {
        "SQS_QUEUE_URL" => Some("http://localhost/q".into()),
        "ES_INDEX_TEMPLATE_FILE" => Some(path.to_str().unwrap().into()),
        _ => None,
    })
    .unwrap_err();
    assert_eq!(e.var, "ES_INDEX_TEMPLATE_FILE");
    let _ = std::fs::remove_file(&path);
}

#[tokio::test]
async fn ensure_puts_once_then_only_on_a_new_version() {
    let admin = MemoryAdmin::new();
    let t = built(&[], replicas(&admin, None).await);
    assert_eq!(
        t[0].body["template"]["settings"]["index"]["number_of_replicas"],
        0
    );
    let first = ensure(&admin, SetupMode::Ensure, &t).await;
    assert_eq!(first, [SetupOutcome::Created, SetupOutcome::Created]);
    assert_eq!(admin.template(&t[0].name), Some(t[0].body.clone()));
    let again = ensure(&admin, SetupMode::Ensure, &t).await;
    assert_eq!(again, [SetupOutcome::Unchanged, SetupOutcome::Unchanged]);
    let puts = |a: &MemoryAdmin| a.requests().iter().filter(|r| r.starts_with("PUT")).count();
    assert_eq!(puts(&admin), 2);
    assert_eq!(
        ensure(&admin, SetupMode::Overwrite, &t).await,
        [SetupOutcome::Created, SetupOutcome::Created]
    );
    assert_eq!(puts(&admin), 4);
    // Another setting: another version, put over the old one.
    admin.set_data_nodes(3);
    let t3 = built(&[], replicas(&admin, None).await);
    assert_eq!(
        ensure(&admin, SetupMode::Ensure, &t3).await,
        [SetupOutcome::Updated, SetupOutcome::Updated]
    );
    // A newer worker's revision is left alone.
    let mut newer = t[0].body.clone();
    newer["_meta"]["f4a_template_revision"] = json!(TEMPLATE_REVISION + 1);
    newer["_meta"]["f4a_template_version"] = json!("other");
    admin
        .put(&format!("_index_template/{}", t[0].name), newer.clone())
        .await
        .unwrap();
    assert_eq!(
        ensure(&admin, SetupMode::Ensure, &t[..1]).await,
        [SetupOutcome::Newer]
    );
    assert_eq!(admin.template(&t[0].name), Some(newer));
    assert!(ensure(&admin, SetupMode::Off, &t).await.is_empty());
}

#[tokio::test]
async fn ten_at_once_agree_on_one_version() {
    let admin = Arc::new(MemoryAdmin::new());
    let t = built(&[], 0);
    let runs: Vec<_> = (0..10)
        .map(|_| {
            let (admin, t) = (admin.clone(), t.clone());
            tokio::spawn(async move { ensure(admin.as_ref(), SetupMode::Ensure, &t).await })
        })
        .collect();
    for r in runs {
        for outcome in r.await.unwrap() {
            assert!(
                matches!(outcome, SetupOutcome::Created | SetupOutcome::Unchanged),
                "{outcome:?}"
            );
        }
    }
    assert_eq!(admin.template(&t[0].name), Some(t[0].body.clone()));
}

#[tokio::test]
async fn forbidden_is_reported_once_and_stops_trying() {
    let admin = MemoryAdmin::new();
    admin.forbid("_index_template");
    let t = built(&[], 0);
    assert_eq!(
        ensure(&admin, SetupMode::Ensure, &t).await,
        [SetupOutcome::Forbidden]
    );
    assert_eq!(admin.requests().len(), 1);
}

#[test]
fn serverless_templates_carry_mappings_only() {
    let t = super::for_serverless(built(&[], 0));
    for t in &t {
        assert!(t.body["template"].get("settings").is_none(), "{}", t.body);
        assert!(t.body["template"]["mappings"].is_object(), "{}", t.body);
        assert_eq!(t.body["_meta"]["f4a_template_version"], t.version);
    }
    assert_ne!(t[0].version, built(&[], 0)[0].version);
}
