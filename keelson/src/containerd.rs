//! containerd as a child process of `keelson up`: its own configuration, root, state
//! and socket under the data directory (so it never meets a system containerd), the
//! project's pause and busybox images imported before the node agent starts, and on
//! the way out every pod sandbox stopped and removed before containerd itself stops.

use anyhow::Context;
use k8s_cri::v1 as cri;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use keelson_containerd::registries::Registries;
use keelson_containerd::ContainerdConfig;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

/// A running containerd we started; killed (by its pid) when dropped.
pub struct Containerd {
    child: Child,
    pub config: ContainerdConfig,
}

impl Containerd {
    /// Start containerd under `dir`, with the registry mirrors and credentials of
    /// `registries` (hosts files written under `dir/certs.d`; without it, the ones an
    /// earlier run wrote are removed).
    pub async fn start(
        binary: &str,
        dir: &Path,
        registries: Option<&Registries>,
    ) -> anyhow::Result<Containerd> {
        std::fs::create_dir_all(dir)?;
        let mut config = ContainerdConfig::under(dir);
        std::fs::create_dir_all(&config.cni_conf_dir)?;
        let none = Registries::default();
        let registries = registries.unwrap_or(&none);
        if let Some(hosts_dir) = &config.registry_config_dir {
            registries.write_hosts_dir(hosts_dir)?;
        }
        config.registry_auths = registries.auths();
        let config_path = dir.join("config.toml");
        std::fs::write(&config_path, config.render())?;
        let log = std::fs::File::create(dir.join("containerd.log"))?;
        let child = Command::new(binary)
            .arg("--config")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {binary} (./scripts/setup installs containerd)"))?;
        let containerd = Containerd { child, config };
        keelson_containerd::wait_ready(&containerd.config.socket, Duration::from_secs(30))
            .await
            .with_context(|| {
                format!(
                    "containerd did not become ready; see {}",
                    dir.join("containerd.log").display()
                )
            })?;
        Ok(containerd)
    }

    /// Build the project's images and import them (a no-op when already there).
    pub async fn import_images(&self, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
        std::fs::create_dir_all(dir)?;
        let mut written = Vec::new();
        for (name, image) in [
            ("pause.tar", keelson_containerd::image::build_pause()?),
            ("busybox.tar", keelson_containerd::image::build_busybox()?),
        ] {
            let path = dir.join(name);
            image.write_archive(&path)?;
            let channel = keelson_containerd::connect(&self.config.socket).await?;
            keelson_containerd::import_archive(channel, keelson_containerd::CRI_NAMESPACE, &path)
                .await
                .with_context(|| format!("importing {}", path.display()))?;
            written.push(path);
        }
        Ok(written)
    }

    /// Stop and remove every pod sandbox (and with it its containers), then stop
    /// containerd: nothing of the node keeps running after `keelson up` ends.
    pub async fn stop(mut self, remove_pods: bool) {
        if remove_pods {
            if let Err(e) = self.remove_pods().await {
                tracing::warn!(error = %format!("{e:#}"), "removing pods on the way out");
            }
        }
        if let Some(pid) = self.child.id() {
            unsafe {
                libc::kill(pid as i32, libc::SIGTERM);
            }
            if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
                .await
                .is_err()
            {
                let _ = self.child.kill().await;
            }
        }
    }

    async fn remove_pods(&self) -> anyhow::Result<()> {
        let channel = keelson_containerd::connect(&self.config.socket).await?;
        let mut rt = RuntimeServiceClient::new(channel);
        let sandboxes = rt
            .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
            .await?
            .into_inner()
            .items;
        for s in sandboxes {
            let id = s.id;
            let _ = rt
                .stop_pod_sandbox(cri::StopPodSandboxRequest {
                    pod_sandbox_id: id.clone(),
                })
                .await;
            let _ = rt
                .remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: id })
                .await;
        }
        Ok(())
    }
}
