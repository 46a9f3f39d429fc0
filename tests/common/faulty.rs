//! What the fault tests share: a world whose worker reaches the search engine through the
//! fault-injecting proxy, and the exactly-once check of the data indices.

use std::collections::{HashMap, HashSet};

use super::proxy::Proxy;
use super::{free_port, World};

/// A world and a proxy in front of its search engine.
pub async fn world_with_proxy(name: &str) -> (World, Proxy) {
    let w = World::new(name).await;
    let p = Proxy::start(&w.es.url).await;
    (w, p)
}

/// The world's worker environment, pointed at the proxy, with a private health port.
pub fn env_via(w: &World, p: &Proxy, extra: &[(&str, &str)]) -> HashMap<String, String> {
    let mut env = w.env();
    env.insert("ES_URL".into(), p.url.clone());
    env.insert("HEALTH_ADDR".into(), format!("127.0.0.1:{}", free_port()));
    for (k, v) in extra {
        env.insert(k.to_string(), v.to_string());
    }
    env
}

/// Asserts the data indices hold exactly the records `(key, i)` expected, each once.
pub async fn assert_exactly_once(w: &World, expected: &[(&str, usize)]) {
    let docs = w.es.all_docs(&w.data()).await;
    let total: usize = expected.iter().map(|(_, n)| n).sum();
    let mut seen = HashSet::new();
    let mut ids = HashSet::new();
    for d in &docs {
        let s = &d["_source"];
        let key = s["aws"]["s3"]["object"]["key"]
            .as_str()
            .unwrap()
            .to_string();
        let i = s["i"].as_i64().unwrap();
        assert!(seen.insert((key.clone(), i)), "duplicate record {key} #{i}");
        assert!(ids.insert(d["_id"].as_str().unwrap().to_string()));
    }
    for (key, n) in expected {
        for i in 0..*n {
            assert!(
                seen.contains(&(key.to_string(), i as i64)),
                "record {key} #{i} missing ({} of {total} indexed)",
                docs.len()
            );
        }
    }
    assert_eq!(docs.len(), total, "every record exactly once");
}

pub fn log_has_no_panic(log: &str) {
    assert!(!log.contains("panicked"), "the worker panicked:\n{log}");
}
