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

/// A TCP pass-through in front of moto that can go away: while down, its port refuses
/// connections and open ones are cut, so the fleet table is unreachable for the workers
/// (moto itself keeps the table and comes back with it).
pub struct Gate {
    pub url: String,
    down: std::sync::Arc<tokio::sync::watch::Sender<bool>>,
    task: tokio::task::JoinHandle<()>,
}

impl Gate {
    pub async fn start(upstream: &str) -> Gate {
        use tokio::net::{TcpListener, TcpStream};
        let target = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("gate bind");
        let addr = listener.local_addr().expect("gate addr");
        let (tx, rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            let mut listener = Some(listener);
            let mut rx = rx;
            loop {
                if *rx.borrow() {
                    listener = None; // refuse
                    let _ = rx.changed().await;
                    continue;
                }
                let l = match &listener {
                    Some(l) => l,
                    None => {
                        listener = TcpListener::bind(addr).await.ok();
                        if listener.is_none() {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        continue;
                    }
                };
                let accepted = tokio::select! {
                    a = l.accept() => a,
                    _ = rx.changed() => continue,
                };
                let Ok((mut inbound, _)) = accepted else {
                    continue;
                };
                let (target, mut rx) = (target.clone(), rx.clone());
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = rx.wait_for(|down| *down) => {
                            let _ = inbound.set_zero_linger();
                        }
                    }
                });
            }
        });
        Gate {
            url: format!("http://{addr}"),
            down: std::sync::Arc::new(tx),
            task,
        }
    }

    /// Down (`true`: connections refused, open ones cut) or up again.
    pub fn set_down(&self, down: bool) {
        let _ = self.down.send(down);
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.task.abort();
    }
}
