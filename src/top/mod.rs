//! `f4a-indexer top [--addr HOST:PORT]`: a live terminal view of a worker's `GET /status`,
//! refreshed every second (like `vector top`).
//!
//! The address is `--addr`, else `HEALTH_ADDR` (an unspecified IP such as the default
//! `0.0.0.0:8080` means this machine). A worker that cannot be reached at start is an error
//! (exit 1, with the address and the reason) before the screen is touched; one that goes away
//! later is shown as unreachable, with the last numbers it gave, until it answers again.
//!
//! A thread fetches `/status` once a second and hands each answer over a channel, so the screen
//! keeps taking keys (`q`, Esc or Ctrl-C quits) while a fetch waits on a hung worker. Drawing
//! lives in [`view`] (a pure function of the [`view::Screen`] state, tested on a test backend).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};

use crate::status::Snapshot;

pub mod view;

const USAGE: &str = "usage: f4a-indexer top [--addr HOST:PORT]
A live view of a worker's GET /status, refreshed every second; q quits.
HOST:PORT defaults to HEALTH_ADDR (default 0.0.0.0:8080, read as 127.0.0.1:8080).";

/// How often `/status` is fetched.
pub const REFRESH: Duration = Duration::from_secs(1);

/// The subcommand; `args` are those after `top`. Exit 0 on `q`, 1 when the worker cannot be
/// reached or the terminal fails, 2 on bad usage or a bad `HEALTH_ADDR`.
pub fn main(args: &[String]) -> ExitCode {
    let addr = match target(args, &|k| std::env::var(k).ok()) {
        Ok(Some(addr)) => addr,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("f4a-indexer top: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let first = match fetch(&addr) {
        Ok(s) => s,
        Err(reason) => {
            eprintln!(
                "f4a-indexer top: the worker is not reachable at http://{addr}/status: {reason}\n\
                 Is it running, with HEALTH_ADDR on that address? (--addr HOST:PORT picks another)"
            );
            return ExitCode::from(1);
        }
    };
    match run(addr, first) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("f4a-indexer top: terminal error: {e}");
            ExitCode::from(1)
        }
    }
}

/// `--addr HOST:PORT` (or `--addr=HOST:PORT`), else `HEALTH_ADDR`; `Ok(None)` for `--help`.
pub fn target(
    args: &[String],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<String>, String> {
    let mut addr = None;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--help" | "-h" => return Ok(None),
            "--addr" => {
                let v = it.next().ok_or("--addr needs HOST:PORT")?;
                addr = Some(host_port(v)?);
            }
            other => match other.strip_prefix("--addr=") {
                Some(v) => addr = Some(host_port(v)?),
                None => return Err(format!("unknown argument {other:?}")),
            },
        }
    }
    if let Some(addr) = addr {
        return Ok(Some(addr));
    }
    match crate::config::health_addr(env) {
        Ok(Some(a)) => Ok(Some(local(a).to_string())),
        Ok(None) => Err("HEALTH_ADDR=off and no --addr: nothing to watch".to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// `HOST:PORT` checked (an `http://` prefix and a trailing `/` are tolerated).
fn host_port(v: &str) -> Result<String, String> {
    let v = v.trim();
    let v = v.strip_prefix("http://").unwrap_or(v).trim_end_matches('/');
    let bad = || format!("--addr {v:?} is not HOST:PORT (such as 127.0.0.1:8080)");
    let (host, port) = v.rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty() || host.contains('/') || port.parse::<u16>().is_err() {
        return Err(bad());
    }
    Ok(v.to_string())
}

/// A listening address as a client reaches it: 0.0.0.0 / [::] mean this machine.
fn local(a: SocketAddr) -> SocketAddr {
    if a.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], a.port()))
    } else {
        a
    }
}

/// One `GET /status`.
pub fn fetch(addr: &str) -> Result<Snapshot, String> {
    let body = crate::health::http_get(&format!("http://{addr}/status"))?;
    serde_json::from_str(&body).map_err(|e| format!("not a /status answer ({e})"))
}

/// The screen until a quit key.
fn run(addr: String, first: Snapshot) -> std::io::Result<()> {
    let (tx, rx) = mpsc::channel();
    let fetch_addr = addr.clone();
    // Ends when the receiver is gone (the screen quit).
    std::thread::spawn(move || loop {
        std::thread::sleep(REFRESH);
        if tx.send(fetch(&fetch_addr)).is_err() {
            return;
        }
    });
    let mut screen = view::Screen::new(addr, first);
    let mut terminal = ratatui::try_init()?;
    let result = (|| loop {
        terminal.draw(|f| view::render(f, &screen))?;
        let mut redraw = false;
        let deadline = Instant::now() + REFRESH;
        while !redraw {
            let wait = deadline.saturating_duration_since(Instant::now());
            if event::poll(wait.min(Duration::from_millis(100)))? {
                match event::read()? {
                    Event::Key(k) if k.kind == KeyEventKind::Press => {
                        let ctrl_c = k.code == KeyCode::Char('c')
                            && k.modifiers.contains(KeyModifiers::CONTROL);
                        if matches!(k.code, KeyCode::Char('q' | 'Q') | KeyCode::Esc) || ctrl_c {
                            return Ok(());
                        }
                    }
                    Event::Resize(..) => redraw = true,
                    _ => {}
                }
            }
            while let Ok(answer) = rx.try_recv() {
                screen.update(answer);
                redraw = true;
            }
            if Instant::now() >= deadline {
                redraw = true;
            }
        }
    })();
    ratatui::restore();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn address_from_flag_or_health_addr() {
        let none = |_: &str| None;
        assert_eq!(
            target(&args(&["--addr", "10.0.0.5:9000"]), &none),
            Ok(Some("10.0.0.5:9000".into()))
        );
        assert_eq!(
            target(&args(&["--addr=http://worker:8080/"]), &none),
            Ok(Some("worker:8080".into()))
        );
        assert_eq!(target(&[], &none), Ok(Some("127.0.0.1:8080".into())));
        let env = |k: &str| (k == "HEALTH_ADDR").then(|| "0.0.0.0:9361".to_string());
        assert_eq!(target(&[], &env), Ok(Some("127.0.0.1:9361".into())));
        let off = |k: &str| (k == "HEALTH_ADDR").then(|| "off".to_string());
        assert!(target(&[], &off).unwrap_err().contains("HEALTH_ADDR=off"));
        assert!(target(&args(&["--addr", "8080"]), &none)
            .unwrap_err()
            .contains("HOST:PORT"));
        assert!(target(&args(&["--addr"]), &none).is_err());
        assert!(target(&args(&["--bogus"]), &none).is_err());
        assert_eq!(target(&args(&["--help"]), &none), Ok(None));
    }
}
