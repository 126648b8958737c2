//! The gRPC channel to a containerd socket, shared by the CRI client (node agent) and
//! containerd's own services (image import).

use anyhow::{bail, Context};
use hyper_util::rt::TokioIo;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use std::path::Path;
use std::time::{Duration, Instant};
use tonic::transport::{Channel, Endpoint, Uri};

/// A channel over the unix socket at `socket`; connects now, and again on demand if
/// containerd restarts.
pub async fn connect(socket: &Path) -> anyhow::Result<Channel> {
    let path = socket.to_path_buf();
    // The URI is required by tonic but unused: the connector dials the socket.
    Endpoint::try_from("http://[::1]:0")?
        .connect_timeout(Duration::from_secs(5))
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(&path).await?;
                Ok::<_, std::io::Error>(TokioIo::new(stream))
            }
        }))
        .await
        .with_context(|| format!("connecting to {}", socket.display()))
}

/// Wait until containerd's CRI plugin answers `Version` on `socket`, which it does only
/// once it has initialised; returns the answer.
pub async fn wait_ready(
    socket: &Path,
    timeout: Duration,
) -> anyhow::Result<k8s_cri::v1::VersionResponse> {
    let deadline = Instant::now() + timeout;
    let mut last = String::from("never tried");
    while Instant::now() < deadline {
        let attempt = async {
            let channel = connect(socket).await?;
            let answer = RuntimeServiceClient::new(channel)
                .version(k8s_cri::v1::VersionRequest {
                    version: "v1".into(),
                })
                .await?;
            anyhow::Ok(answer.into_inner())
        };
        match tokio::time::timeout(Duration::from_secs(2), attempt).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) => last = format!("{e:#}"),
            Err(_) => last = "no answer within 2s".into(),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!(
        "containerd at {} not ready within {timeout:?}: {last}",
        socket.display()
    )
}
