//! The CRI client: containerd's `runtime.v1` RuntimeService and ImageService over its
//! unix socket, with the calls the agent makes as small methods that turn gRPC errors
//! into `anyhow` errors naming the call.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::Channel;

/// Labels the agent puts on every sandbox and container, as the kubelet does, so that
/// a restarted agent finds its pods again from the runtime alone.
pub mod labels {
    pub const POD_NAME: &str = "io.kubernetes.pod.name";
    pub const POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
    pub const POD_UID: &str = "io.kubernetes.pod.uid";
    pub const CONTAINER_NAME: &str = "io.kubernetes.container.name";
    /// Annotation: how many times the container had restarted when this one was made.
    pub const RESTART_COUNT: &str = "io.kubernetes.container.restartCount";
    /// Annotation: the hash of the container's spec, to spot spec changes.
    pub const CONTAINER_HASH: &str = "io.kubernetes.container.hash";
    /// Annotation: the pod's termination grace period when the sandbox was made.
    pub const GRACE_PERIOD: &str = "io.kubernetes.pod.terminationGracePeriod";
    /// Annotation: where the termination message file is mounted in the container.
    pub const TERMINATION_MESSAGE_PATH: &str = "io.kubernetes.container.terminationMessagePath";
    /// Annotation: `File` or `FallbackToLogsOnError`.
    pub const TERMINATION_MESSAGE_POLICY: &str = "io.kubernetes.container.terminationMessagePolicy";
    /// Annotation: `init` for init containers.
    pub const CONTAINER_TYPE: &str = "io.kubernetes.container.type";
    /// Label of the sandbox: which agent made it (several agents may share a runtime in
    /// tests; each only touches its own).
    pub const NODE_NAME: &str = "keelson.dev/node-name";
}

/// Clients of one containerd's CRI services. Cheap to clone.
#[derive(Clone)]
pub struct Runtime {
    pub runtime: RuntimeServiceClient<Channel>,
    pub images: ImageServiceClient<Channel>,
}

/// `CONTAINER_RUNNING` and friends, as the kubelet's runtime state.
pub fn state_name(state: i32) -> &'static str {
    match cri::ContainerState::try_from(state) {
        Ok(cri::ContainerState::ContainerCreated) => "created",
        Ok(cri::ContainerState::ContainerRunning) => "running",
        Ok(cri::ContainerState::ContainerExited) => "exited",
        _ => "unknown",
    }
}

fn call<T>(what: &str, r: Result<tonic::Response<T>, tonic::Status>) -> anyhow::Result<T> {
    r.map(|r| r.into_inner())
        .map_err(|s| anyhow::anyhow!("CRI {what}: {}", s.message()))
}

impl Runtime {
    /// Connect to the CRI socket (retrying for `wait` while containerd starts).
    pub async fn connect(socket: &Path, wait: Duration) -> anyhow::Result<Runtime> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match Self::try_connect(socket).await {
                Ok(rt) => return Ok(rt),
                Err(e) if tokio::time::Instant::now() < deadline => {
                    tracing::debug!(error = %e, "waiting for the container runtime");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn try_connect(socket: &Path) -> anyhow::Result<Runtime> {
        let channel = keelson_containerd::connect(socket)
            .await
            .with_context(|| format!("connecting to the CRI socket {}", socket.display()))?;
        let mut rt = Runtime {
            runtime: RuntimeServiceClient::new(channel.clone()),
            images: ImageServiceClient::new(channel),
        };
        rt.version().await?;
        Ok(rt)
    }

    pub async fn version(&mut self) -> anyhow::Result<cri::VersionResponse> {
        call(
            "Version",
            self.runtime
                .version(cri::VersionRequest {
                    version: "v1".into(),
                })
                .await,
        )
    }

    /// The runtime's conditions (RuntimeReady, NetworkReady).
    pub async fn status(&mut self) -> anyhow::Result<Vec<cri::RuntimeCondition>> {
        let s = call(
            "Status",
            self.runtime
                .status(cri::StatusRequest { verbose: false })
                .await,
        )?;
        Ok(s.status.map(|s| s.conditions).unwrap_or_default())
    }

    /// A new sandbox run by the runtime's `handler` (`""`: its default).
    pub async fn run_pod_sandbox(
        &mut self,
        config: cri::PodSandboxConfig,
        handler: &str,
    ) -> anyhow::Result<String> {
        let r = call(
            "RunPodSandbox",
            self.runtime
                .run_pod_sandbox(cri::RunPodSandboxRequest {
                    config: Some(config),
                    runtime_handler: handler.into(),
                })
                .await,
        )?;
        Ok(r.pod_sandbox_id)
    }

    pub async fn stop_pod_sandbox(&mut self, id: &str) -> anyhow::Result<()> {
        call(
            "StopPodSandbox",
            self.runtime
                .stop_pod_sandbox(cri::StopPodSandboxRequest {
                    pod_sandbox_id: id.into(),
                })
                .await,
        )?;
        Ok(())
    }

    pub async fn remove_pod_sandbox(&mut self, id: &str) -> anyhow::Result<()> {
        call(
            "RemovePodSandbox",
            self.runtime
                .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                    pod_sandbox_id: id.into(),
                })
                .await,
        )?;
        Ok(())
    }

    pub async fn pod_sandbox_status(
        &mut self,
        id: &str,
    ) -> anyhow::Result<Option<cri::PodSandboxStatus>> {
        let r = call(
            "PodSandboxStatus",
            self.runtime
                .pod_sandbox_status(cri::PodSandboxStatusRequest {
                    pod_sandbox_id: id.into(),
                    verbose: false,
                })
                .await,
        )?;
        Ok(r.status)
    }

    pub async fn list_pod_sandboxes(&mut self) -> anyhow::Result<Vec<cri::PodSandbox>> {
        Ok(call(
            "ListPodSandbox",
            self.runtime
                .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
                .await,
        )?
        .items)
    }

    pub async fn list_containers(&mut self) -> anyhow::Result<Vec<cri::Container>> {
        Ok(call(
            "ListContainers",
            self.runtime
                .list_containers(cri::ListContainersRequest { filter: None })
                .await,
        )?
        .containers)
    }

    pub async fn container_status(&mut self, id: &str) -> anyhow::Result<cri::ContainerStatus> {
        call(
            "ContainerStatus",
            self.runtime
                .container_status(cri::ContainerStatusRequest {
                    container_id: id.into(),
                    verbose: false,
                })
                .await,
        )?
        .status
        .ok_or_else(|| anyhow::anyhow!("CRI ContainerStatus: no status for {id}"))
    }

    pub async fn create_container(
        &mut self,
        sandbox_id: &str,
        config: cri::ContainerConfig,
        sandbox_config: cri::PodSandboxConfig,
    ) -> anyhow::Result<String> {
        let r = call(
            "CreateContainer",
            self.runtime
                .create_container(cri::CreateContainerRequest {
                    pod_sandbox_id: sandbox_id.into(),
                    config: Some(config),
                    sandbox_config: Some(sandbox_config),
                })
                .await,
        )?;
        Ok(r.container_id)
    }

    pub async fn start_container(&mut self, id: &str) -> anyhow::Result<()> {
        call(
            "StartContainer",
            self.runtime
                .start_container(cri::StartContainerRequest {
                    container_id: id.into(),
                })
                .await,
        )?;
        Ok(())
    }

    /// SIGTERM (or the image's stop signal), then SIGKILL after `timeout` seconds.
    pub async fn stop_container(&mut self, id: &str, timeout: i64) -> anyhow::Result<()> {
        call(
            "StopContainer",
            self.runtime
                .stop_container(cri::StopContainerRequest {
                    container_id: id.into(),
                    timeout,
                })
                .await,
        )?;
        Ok(())
    }

    pub async fn remove_container(&mut self, id: &str) -> anyhow::Result<()> {
        call(
            "RemoveContainer",
            self.runtime
                .remove_container(cri::RemoveContainerRequest {
                    container_id: id.into(),
                })
                .await,
        )?;
        Ok(())
    }

    /// Run `cmd` in the container and wait at most `timeout` seconds (0: no limit).
    pub async fn exec_sync(
        &mut self,
        id: &str,
        cmd: Vec<String>,
        timeout: i64,
    ) -> anyhow::Result<cri::ExecSyncResponse> {
        call(
            "ExecSync",
            self.runtime
                .exec_sync(cri::ExecSyncRequest {
                    container_id: id.into(),
                    cmd,
                    timeout,
                })
                .await,
        )
    }

    /// A URL on the runtime's streaming server that serves this exec session.
    pub async fn exec(&mut self, req: cri::ExecRequest) -> anyhow::Result<String> {
        Ok(call("Exec", self.runtime.exec(req).await)?.url)
    }

    pub async fn attach(&mut self, req: cri::AttachRequest) -> anyhow::Result<String> {
        Ok(call("Attach", self.runtime.attach(req).await)?.url)
    }

    pub async fn port_forward(
        &mut self,
        sandbox_id: &str,
        ports: Vec<i32>,
    ) -> anyhow::Result<String> {
        Ok(call(
            "PortForward",
            self.runtime
                .port_forward(cri::PortForwardRequest {
                    pod_sandbox_id: sandbox_id.into(),
                    port: ports,
                })
                .await,
        )?
        .url)
    }

    pub async fn list_container_stats(&mut self) -> anyhow::Result<Vec<cri::ContainerStats>> {
        Ok(call(
            "ListContainerStats",
            self.runtime
                .list_container_stats(cri::ListContainerStatsRequest { filter: None })
                .await,
        )?
        .stats)
    }

    /// The image's status, `None` when the runtime does not have it.
    pub async fn image_status(&mut self, image: &str) -> anyhow::Result<Option<cri::Image>> {
        let r = call(
            "ImageStatus",
            self.images
                .image_status(cri::ImageStatusRequest {
                    image: Some(image_spec(image)),
                    verbose: false,
                })
                .await,
        )?;
        Ok(r.image)
    }

    /// Pull `image` (with registry credentials when given); returns the image reference
    /// (its id) the runtime resolved it to.
    pub async fn pull_image(
        &mut self,
        image: &str,
        auth: Option<cri::AuthConfig>,
        sandbox_config: Option<cri::PodSandboxConfig>,
    ) -> Result<String, tonic::Status> {
        self.images
            .pull_image(cri::PullImageRequest {
                image: Some(image_spec(image)),
                auth,
                sandbox_config,
            })
            .await
            .map(|r| r.into_inner().image_ref)
    }

    pub async fn list_images(&mut self) -> anyhow::Result<Vec<cri::Image>> {
        Ok(call(
            "ListImages",
            self.images
                .list_images(cri::ListImagesRequest { filter: None })
                .await,
        )?
        .images)
    }

    pub async fn remove_image(&mut self, image: &str) -> anyhow::Result<()> {
        call(
            "RemoveImage",
            self.images
                .remove_image(cri::RemoveImageRequest {
                    image: Some(image_spec(image)),
                })
                .await,
        )?;
        Ok(())
    }

    /// Capacity and usage of the file system images live on.
    pub async fn image_fs_info(&mut self) -> anyhow::Result<Vec<cri::FilesystemUsage>> {
        Ok(call(
            "ImageFsInfo",
            self.images.image_fs_info(cri::ImageFsInfoRequest {}).await,
        )?
        .image_filesystems)
    }
}

pub fn image_spec(image: &str) -> cri::ImageSpec {
    cri::ImageSpec {
        image: image.into(),
        ..Default::default()
    }
}
