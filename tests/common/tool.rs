//! Running the one-shot subcommands (`backfill`, `replay-dead-letters`) as a user would: the
//! real binary with only the given environment, its output kept, and the summary line read.

use std::collections::HashMap;
use std::process::{Command, Output};

use serde_json::Value;

/// `f4a-indexer <subcommand> <args>` with exactly `env`, to its end.
pub async fn run_tool(subcommand: &str, env: &HashMap<String, String>, args: &[&str]) -> Output {
    let env = env.clone();
    let mut argv = vec![subcommand.to_string()];
    argv.extend(args.iter().map(|s| s.to_string()));
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_f4a-indexer"))
            .args(&argv)
            .env_clear()
            .envs(&env)
            .output()
            .unwrap_or_else(|e| panic!("running f4a-indexer {argv:?}: {e}"))
    })
    .await
    .expect("join")
}

/// The summary: the last JSON line on stdout.
pub fn summary(out: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str::<Value>(l).ok())
        .unwrap_or_else(|| panic!("no summary line in {stdout}"))
}

/// Asserts that the tool exited with `code`; a failure shows `what` and the tool's stderr.
pub fn assert_exit(out: &Output, code: i32, what: &str) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
