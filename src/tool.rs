//! What the one-shot subcommands (`backfill`, `replay-dead-letters`) share around their work:
//! flags through clap (bad usage: exit 2 naming the flag and what it accepts), the
//! configuration from the environment (bad: exit 2), the runtime, logs, and signals (the first
//! SIGINT/SIGTERM asks the tool to stop at a safe point; a second exits at once).
//!
//! Exit codes: 0 the tool did all it was asked, 1 it did not (or failed), 2 bad usage.

use std::future::Future;
use std::io::IsTerminal as _;
use std::process::ExitCode;

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::telemetry;

/// A usage problem found after parsing (a checkpoint of another run, say): exit 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Usage(pub String);

/// `T`'s flags from `args` (those after the subcommand); help and version print and exit 0,
/// anything clap refuses prints its message (the flag, the accepted values) and exits 2.
pub fn parse_args<T: clap::Parser>(name: &str, args: &[String]) -> Result<T, ExitCode> {
    let argv = std::iter::once(name.to_string()).chain(args.iter().cloned());
    T::try_parse_from(argv).map_err(|e| {
        let _ = e.print();
        match e.kind() {
            clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                ExitCode::SUCCESS
            }
            _ => ExitCode::from(2),
        }
    })
}

/// The configuration from the environment; `SQS_QUEUE_URL` only when `needs_queue`.
pub fn config(needs_queue: bool) -> Result<Config, ExitCode> {
    let cfg = match needs_queue {
        true => Config::from_env(),
        false => Config::from_env_without_queue(),
    };
    cfg.map_err(|e| {
        eprintln!("f4a-indexer: {e}");
        ExitCode::from(2)
    })
}

/// Runs `work` on a runtime with logs on stderr and the signals wired to its shutdown token.
/// `Ok(true)`: exit 0; `Ok(false)`: 1; an error: 1 (2 for a [`Usage`] error), printed.
pub fn run<F, Fut>(name: &str, cfg: Config, work: F) -> ExitCode
where
    F: FnOnce(Config, CancellationToken) -> Fut,
    Fut: Future<Output = anyhow::Result<bool>>,
{
    // On a terminal the progress bar is the display: logs only for warnings, unless asked.
    if std::io::stderr().is_terminal() && std::env::var_os("RUST_LOG").is_none() {
        // SAFETY: no other thread exists yet (the runtime is built below).
        unsafe { std::env::set_var("RUST_LOG", "warn") };
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("f4a-indexer {name}: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let code = runtime.block_on(async {
        let telemetry = telemetry::init(cfg.telemetry.log_format, &cfg.telemetry.otel);
        let shutdown = CancellationToken::new();
        tokio::spawn(signals(shutdown.clone()));
        let code = match work(cfg, shutdown).await {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(1),
            Err(e) if e.downcast_ref::<Usage>().is_some() => {
                eprintln!("f4a-indexer {name}: {e}");
                ExitCode::from(2)
            }
            Err(e) => {
                eprintln!("f4a-indexer {name}: {e:#}");
                ExitCode::from(1)
            }
        };
        let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
        code
    });
    // Blocking reader threads may still wait on a channel that is gone: do not wait for them.
    runtime.shutdown_background();
    code
}

/// The first SIGINT/SIGTERM cancels `shutdown` (the tool stops at a safe point and writes its
/// checkpoint); a second one exits at once with 1 (the checkpoint holds only settled work).
async fn signals(shutdown: CancellationToken) {
    for n in 0..2 {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let Ok(mut term) = signal(SignalKind::terminate()) else {
                let _ = tokio::signal::ctrl_c().await;
                std::process::exit(1);
            };
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        if n == 0 {
            eprintln!(
                "f4a-indexer: stopping after the work in progress (a second signal stops at once)"
            );
            shutdown.cancel();
        } else {
            eprintln!("f4a-indexer: stopped at once; the checkpoint holds the settled work");
            std::process::exit(1);
        }
    }
}
