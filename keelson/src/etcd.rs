//! etcd as a child process, for `keelson up`.

use anyhow::Context;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

/// A running etcd we started; stopped (by its pid) when dropped.
pub struct Etcd {
    child: Child,
    pub client_url: String,
}

impl Etcd {
    pub async fn start(
        binary: &str,
        data_dir: &Path,
        client_port: u16,
        peer_port: u16,
    ) -> anyhow::Result<Etcd> {
        std::fs::create_dir_all(data_dir)?;
        let client_url = format!("http://127.0.0.1:{client_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let log = std::fs::File::create(data_dir.with_extension("log"))?;
        let child = Command::new(binary)
            .arg("--name=keelson")
            .arg(format!("--data-dir={}", data_dir.display()))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=keelson={peer_url}"))
            .arg("--quota-backend-bytes=8589934592")
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {binary} (apt-get install etcd-server)"))?;
        let etcd = Etcd { child, client_url };
        etcd.wait_ready().await?;
        Ok(etcd)
    }

    async fn wait_ready(&self) -> anyhow::Result<()> {
        let addr = self.client_url.trim_start_matches("http://").to_string();
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(&addr).await.is_ok() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::bail!("etcd did not start listening on {addr} within 10s")
    }

    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            // SIGTERM first so etcd closes its database cleanly.
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status()
                .await;
            if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
                .await
                .is_err()
            {
                let _ = self.child.kill().await;
            }
        }
    }
}
