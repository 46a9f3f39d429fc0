//! A private moto server (DynamoDB API on loopback) for the fleet tests: LocalStack's DynamoDB
//! downloads DynamoDB Local at run time, which these machines cannot. `scripts/stack.sh env`
//! exports `F4A_MOTO_SERVER` (its own venv); otherwise `moto_server` on the PATH is used.
//! `F4A_MOTO_PORT` picks the port (a free one by default). Killed when dropped.

use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

pub struct Moto {
    pub url: String,
    child: Child,
}

impl Moto {
    pub async fn start() -> Moto {
        let bin = std::env::var("F4A_MOTO_SERVER").unwrap_or_else(|_| "moto_server".into());
        let port = std::env::var("F4A_MOTO_PORT")
            .ok()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(super::free_port);
        let log = std::env::temp_dir().join(format!("{}.log", super::unique("moto")));
        let child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("moto log file"))
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "starting {bin} (scripts/stack.sh install puts moto[server] in its venv): {e}"
                )
            });
        let url = format!("http://127.0.0.1:{port}");
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                std::time::Instant::now() < deadline,
                "moto did not listen on {port}; log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Moto { url, child }
    }

    /// Stops the server (an outage of the fleet table).
    pub async fn stop(&mut self) {
        let _ = self.child.kill().await;
    }
}
