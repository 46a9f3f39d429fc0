//! The `f4a-indexer` binary: read the configuration, start telemetry, run the pipeline until
//! SIGTERM/SIGINT (or until idle with `--exit-when-idle`), then drain and exit 0. Subcommands:
//! `healthcheck` (the container health check), `top` (the live view, `f4a_indexer::top`) and
//! `backfill` (`f4a_indexer::backfill`), `replay-dead-letters` (`f4a_indexer::replay`) and
//! `lifecycle-policy` (`f4a_indexer::lifecycle`).
//! Exit codes: 0 stopped cleanly, 1 runtime failure, 2 bad configuration or usage.

use std::process::ExitCode;

use f4a_indexer::config::Config;
use f4a_indexer::pipeline::{self, RunOptions};
use f4a_indexer::telemetry;
use tokio_util::sync::CancellationToken;

const USAGE: &str = "usage: f4a-indexer [--exit-when-idle] | check | healthcheck | top [--addr HOST:PORT] | backfill --bucket B [...] | replay-dead-letters [...] | lifecycle-policy [...] | --version | --help
Configuration comes from environment variables; see README.md.
check: try the queue, the cluster and a probe write with this configuration; exit 0 if all work.
backfill: index a bucket's objects from a listing (f4a-indexer backfill --help).
replay-dead-letters: index DEAD_LETTER_INDEX's entries again once their cause is fixed (--help).
lifecycle-policy: print the ILM/ISM policy equivalent to RETENTION_DAYS (--help).";

fn main() -> ExitCode {
    let mut opts = RunOptions::default();
    let mut preflight = false;
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("top") {
        return f4a_indexer::top::main(&args[1..]);
    }
    if args.first().map(String::as_str) == Some("backfill") {
        return f4a_indexer::backfill::main(&args[1..]);
    }
    if args.first().map(String::as_str) == Some("replay-dead-letters") {
        return f4a_indexer::replay::main(&args[1..]);
    }
    if args.first().map(String::as_str) == Some("lifecycle-policy") {
        return f4a_indexer::lifecycle::main(&args[1..]);
    }
    for arg in args {
        match arg.as_str() {
            "--exit-when-idle" => opts.exit_when_idle = true,
            "check" => preflight = true,
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
    tune_malloc();
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
    if preflight {
        let ok = runtime.block_on(async {
            // Warnings of the clients (a TLS check turned off, say) go to stderr as text.
            let _ = tracing_subscriber::fmt()
                .with_writer(std::io::stderr)
                .with_env_filter("warn,aws=error,aws_config=error,aws_smithy_runtime=error")
                .try_init();
            f4a_indexer::check::run(&cfg).await
        });
        runtime.shutdown_background();
        return if ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        };
    }
    let code = runtime.block_on(async {
        let telemetry = telemetry::init(cfg.telemetry.log_format, &cfg.telemetry.otel);
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

/// glibc malloc tuned so that memory does not grow with object size (`make bench`'s memory phase):
/// - two arenas: by default each allocating thread gets its own (up to 8 per core), and every
///   arena keeps what it once held, so RSS crept up over a long object;
/// - fixed mmap and trim thresholds (128 KiB, 256 KiB): bulk bodies are mapped and unmapped
///   whole instead of fragmenting the heap, and freed heap tops go back to the OS. With glibc's
///   adaptive thresholds the heap crept up by 2-4 MiB over a 1 GiB object.
///
/// Each setting yields to its glibc environment variable (`MALLOC_ARENA_MAX`,
/// `MALLOC_MMAP_THRESHOLD_`, `MALLOC_TRIM_THRESHOLD_`) when that is set.
fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    for (var, param, value) in [
        ("MALLOC_ARENA_MAX", libc::M_ARENA_MAX, 2),
        ("MALLOC_MMAP_THRESHOLD_", libc::M_MMAP_THRESHOLD, 128 * 1024),
        ("MALLOC_TRIM_THRESHOLD_", libc::M_TRIM_THRESHOLD, 256 * 1024),
    ] {
        if std::env::var_os(var).is_none() {
            // SAFETY: mallopt only changes a malloc tunable; called before any other thread exists.
            unsafe {
                libc::mallopt(param, value);
            }
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
