//! A terminal for tests of `f4a-indexer top`: a tmux session on a server socket of its own
//! (never the user's tmux), read with `capture-pane`, killed when dropped.
//!
//! Without tmux the tests fail loudly, unless `F4A_SKIP_TMUX_TEST=1` says to skip them.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use super::unique;

/// A tmux session of its own (its own server socket), killed when dropped.
pub struct Tmux {
    socket: String,
}

impl Tmux {
    /// `None` when tmux is missing and `F4A_SKIP_TMUX_TEST=1`; panics when it is missing otherwise.
    pub fn start(command: &str) -> Option<Tmux> {
        let found = std::process::Command::new("tmux")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            if std::env::var("F4A_SKIP_TMUX_TEST").as_deref() == Ok("1") {
                eprintln!("SKIPPED: tmux is not installed and F4A_SKIP_TMUX_TEST=1");
                return None;
            }
            panic!(
                "tmux is not installed: the test of `f4a-indexer top` needs it \
                 (apt-get install tmux), or set F4A_SKIP_TMUX_TEST=1 to skip it"
            );
        }
        let t = Tmux {
            socket: unique("f4a-top"),
        };
        t.run(&[
            "new-session",
            "-d",
            "-s",
            "top",
            "-x",
            "100",
            "-y",
            "34",
            command,
        ]);
        Some(t)
    }

    pub fn run(&self, args: &[&str]) -> String {
        let out = std::process::Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .env_remove("TMUX")
            .output()
            .expect("running tmux");
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "top"])
    }

    /// Captures the screen until `done` holds for it; panics with the last screen on timeout.
    pub async fn screen_until(
        &self,
        timeout: Duration,
        mut done: impl FnMut(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.screen();
            if done(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "the screen never got there:\n{s}"
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = std::process::Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
    }
}
