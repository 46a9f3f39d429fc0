//! `f4a-indexer lifecycle-policy`: the cluster-side equivalent of `RETENTION_DAYS`, for users
//! who prefer the cluster to delete old indices. For OpenSearch it is an ISM policy, attached to
//! new indices by its own `ism_template`. For Elasticsearch it is an ILM policy, attached to new
//! indices by `ES_ILM_POLICY` in the worker's template.
//!
//! The policy is printed, never installed: installing it needs lifecycle privileges that the
//! worker does not otherwise ask for. Both kinds of policy age an index from its creation, not
//! from the day in its name, so a day backfilled late lives as long as a new one. The worker's
//! own retention (`sink::retention`) reads the day from the name and does not have that flaw.

use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use serde_json::{json, Value};

use crate::config::{index_glob, Config};
use crate::sink::flavour::Flavour;
use crate::sink::BulkClient as _;
use crate::tool;

/// Which lifecycle API the policy is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Engine {
    /// Index Lifecycle Management (`_ilm`).
    Elasticsearch,
    /// Index State Management (`_plugins/_ism`).
    Opensearch,
}

/// `f4a-indexer lifecycle-policy --help`.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "f4a-indexer lifecycle-policy",
    about = "Print the ILM (Elasticsearch) or ISM (OpenSearch) policy that deletes ES_INDEX's indices \
             older than --days, for a cluster that does retention itself; the body goes to stdout, \
             how to install and attach it to stderr.",
    after_help = "Exit codes: 0 printed, 1 the engine could not be asked (pass --engine), 2 bad flags \
                  or configuration."
)]
pub struct Args {
    /// The engine [default: asked of the cluster at ES_URL].
    #[arg(long, value_enum)]
    pub engine: Option<Engine>,
    /// Delete indices older than this many days [default: RETENTION_DAYS].
    #[arg(long, value_name = "DAYS", value_parser = clap::value_parser!(u32).range(1..=36_500))]
    pub days: Option<u32>,
    /// The policy's name.
    #[arg(long, value_name = "NAME", default_value = "f4a-retention")]
    pub name: String,
}

/// The subcommand; `args` are those after `lifecycle-policy`.
pub fn main(args: &[String]) -> ExitCode {
    let args = match tool::parse_args::<Args>("f4a-indexer lifecycle-policy", args) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let cfg = match tool::config(false) {
        Ok(cfg) => cfg,
        Err(code) => return code,
    };
    let Some(days) = args.days.or(cfg.cluster.retention.days) else {
        eprintln!(
            "f4a-indexer lifecycle-policy: how long to keep indices is not set: pass --days N or set \
             RETENTION_DAYS (a number of days, 1 or more)"
        );
        return ExitCode::from(2);
    };
    tool::run("lifecycle-policy", cfg, move |cfg, _| async move {
        let engine = match args.engine {
            Some(e) => e,
            None => ask(&cfg).await?,
        };
        let glob = index_glob(&cfg.record.index);
        let (path, body) = policy(engine, &args.name, days, &glob);
        println!("{}", serde_json::to_string_pretty(&body)?);
        eprintln!("{}", instructions(engine, &args.name, &path, &glob));
        Ok(true)
    })
}

/// Which engine the cluster at `ES_URL` is.
async fn ask(cfg: &Config) -> anyhow::Result<Engine> {
    let sdk = crate::source::aws::sdk_config(&cfg.source).await;
    let client = crate::sink::es::EsClient::new(&cfg.sink.es, sdk.credentials_provider())?;
    let id = client.identify().await.map_err(|e| {
        anyhow::anyhow!("cannot ask the cluster which engine it is ({e}); pass --engine")
    })?;
    match id.flavour {
        Flavour::Elasticsearch => Ok(Engine::Elasticsearch),
        Flavour::OpenSearch => Ok(Engine::Opensearch),
        Flavour::ElasticsearchServerless | Flavour::OpenSearchServerless => anyhow::bail!(
            "{} manages retention itself (data stream lifecycle, or the collection's data lifecycle \
             policy): there is no ILM or ISM policy to print",
            id.flavour.name()
        ),
    }
}

/// The request path and body of the policy that deletes indices matching `glob` after `days`.
pub fn policy(engine: Engine, name: &str, days: u32, glob: &str) -> (String, Value) {
    let description = format!(
        "f4a-indexer: delete the indices of {glob} {days} days after their creation (RETENTION_DAYS={days})"
    );
    let age = format!("{days}d");
    match engine {
        Engine::Elasticsearch => (
            format!("_ilm/policy/{name}"),
            json!({"policy": {
                "_meta": {"description": description, "managed_by": "f4a-indexer lifecycle-policy"},
                "phases": {
                    "hot": {"min_age": "0ms", "actions": {}},
                    "delete": {"min_age": age, "actions": {"delete": {}}},
                },
            }}),
        ),
        Engine::Opensearch => (
            format!("_plugins/_ism/policies/{name}"),
            json!({"policy": {
                "description": description,
                "default_state": "hot",
                "states": [
                    {"name": "hot", "actions": [], "transitions": [
                        {"state_name": "delete", "conditions": {"min_index_age": age}},
                    ]},
                    {"name": "delete", "actions": [{"delete": {}}], "transitions": []},
                ],
                "ism_template": [{"index_patterns": [glob], "priority": 100}],
            }}),
        ),
    }
}

/// How to install the policy at `path` and attach it to old and new indices.
fn instructions(engine: Engine, name: &str, path: &str, glob: &str) -> String {
    let attach = match engine {
        Engine::Elasticsearch => format!(
            "2. New indices: set ES_ILM_POLICY={name} for the worker (its template then names the \
             policy; the next start puts it).\n\
             3. Indices that exist already: PUT {glob}/_settings {{\"index.lifecycle.name\": \"{name}\"}}"
        ),
        Engine::Opensearch => format!(
            "2. New indices: the policy's ism_template attaches it to every new index of {glob}.\n\
             3. Indices that exist already: POST _plugins/_ism/add/{glob} {{\"policy_id\": \"{name}\"}}"
        ),
    };
    format!(
        "1. Install it: PUT {path} with the body above, e.g.\n   \
         f4a-indexer lifecycle-policy > policy.json && curl -X PUT \"$ES_URL/{path}\" \
         -H 'Content-Type: application/json' -d @policy.json\n\
         {attach}\n\
         4. Unset RETENTION_DAYS for the worker, so that only the cluster deletes indices.\n\
         The policy ages an index from its creation: a day backfilled late is kept as long as a new one."
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ism_policy_deletes_after_the_days_and_attaches_itself() {
        let (path, body) = policy(Engine::Opensearch, "p", 30, "f4a-*.*.*");
        assert_eq!(path, "_plugins/_ism/policies/p");
        let p = &body["policy"];
        assert_eq!(p["default_state"], "hot");
        assert_eq!(
            p["states"][0]["transitions"][0]["conditions"]["min_index_age"],
            "30d"
        );
        assert_eq!(p["states"][1]["actions"][0], json!({"delete": {}}));
        assert_eq!(p["ism_template"][0]["index_patterns"], json!(["f4a-*.*.*"]));
    }

    #[test]
    fn the_ilm_policy_deletes_after_the_days() {
        let (path, body) = policy(Engine::Elasticsearch, "p", 7, "f4a-*.*.*");
        assert_eq!(path, "_ilm/policy/p");
        let delete = &body["policy"]["phases"]["delete"];
        assert_eq!(delete["min_age"], "7d");
        assert_eq!(delete["actions"], json!({"delete": {}}));
    }
}
