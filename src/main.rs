//! The `f4a-indexer` binary: read the configuration, start telemetry, run the pipeline until
//! SIGTERM/SIGINT (or until idle with `--exit-when-idle`), then drain and exit 0.
//! Exit codes: 0 stopped cleanly, 1 runtime failure, 2 bad configuration or usage.

use std::process::ExitCode;

use f4a_indexer::config::Config;
use f4a_indexer::pipeline::{self, RunOptions};
use f4a_indexer::telemetry;
use tokio_util::sync::CancellationToken;

const USAGE: &str = "usage: f4a-indexer [--exit-when-idle] | healthcheck | --version | --help
Configuration comes from environment variables; see README.md.";

fn main() -> ExitCode {
    let mut opts = RunOptions::default();
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--exit-when-idle" => opts.exit_when_idle = true,
            "healthcheck" => return healthcheck(),
            "--version" | "-V" => {
                println!("f4a-indexer {}", env!("CARGO_PKG_VERSION"));
                return ExitCode::SUCCESS;
            }
            "--help" | "-h" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("f4a-indexer: unknown argument {other:?}\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let cfg = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("f4a-indexer: {e}");
            return ExitCode::from(2);
        }
    };
    limit_malloc_arenas();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("f4a-indexer: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let code = runtime.block_on(async {
        let telemetry = telemetry::init(cfg.log_format, &cfg.otel);
        let shutdown = CancellationToken::new();
        tokio::spawn(wait_for_signal(shutdown.clone()));
        let result = pipeline::run(cfg, opts, shutdown).await;
        let code = match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = format!("{e:#}"), "f4a-indexer failed");
                ExitCode::from(1)
            }
        };
        // The batch exporter flushes with blocking I/O: keep it off the async workers.
        let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
        code
    });
    // Blocking reader threads may still wait on a channel that is gone: do not wait for them.
    runtime.shutdown_background();
    code
}

/// glibc gives each thread that allocates its own arena (up to 8 per core), and every arena keeps
/// the memory it once held. With up to `MAX_IN_FLIGHT_MESSAGES` reader threads that makes RSS creep
/// up over a long object; two arenas keep it flat (measured by `make bench`'s memory phase) at no
/// visible cost. `MALLOC_ARENA_MAX`, when set, still wins.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only changes a malloc tunable; called before any other thread exists.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

/// For the container health check: GET /healthz on `HEALTH_ADDR`, exit 0 if healthy, else 1.
fn healthcheck() -> ExitCode {
    let addr = match f4a_indexer::config::health_addr(&|k| std::env::var(k).ok()) {
        Ok(Some(addr)) => addr,
        Ok(None) => {
            eprintln!("f4a-indexer healthcheck: HEALTH_ADDR=off, nothing to check");
            return ExitCode::from(1);
        }
        Err(e) => {
            eprintln!("f4a-indexer healthcheck: {e}");
            return ExitCode::from(2);
        }
    };
    match f4a_indexer::health::check(addr) {
        Ok(()) => ExitCode::SUCCESS,
        Err(reason) => {
            eprintln!("f4a-indexer healthcheck: unhealthy: {reason}");
            ExitCode::from(1)
        }
    }
}

async fn wait_for_signal(shutdown: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for SIGTERM");
                    let _ = ctrl_c.await;
                    shutdown.cancel();
                    return;
                }
            };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = ctrl_c => tracing::info!("SIGINT received"),
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    shutdown.cancel();
}
