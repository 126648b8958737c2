//! One containerd in a temporary directory: import (twice), what the CRI sees, and a
//! pod running the imported images.

use crate::support::*;
use containerd_client::services::v1::{
    content_client::ContentClient, images_client::ImagesClient, GetImageRequest, InfoRequest,
};
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::*;
use keelson_containerd::{image, import_archive, CRI_NAMESPACE};
use keelson_testkit::node::{image_archives, Containerd};
use std::time::{Duration, Instant};
use tonic::Request;

fn in_ns<T>(msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut()
        .insert("containerd-namespace", CRI_NAMESPACE.parse().unwrap());
    r
}

/// A docker archive (`docker save` layout) of the busybox root file system.
fn docker_archive(path: &std::path::Path) -> String {
    let layer = image::rootfs_layer(std::path::Path::new(image::HOST_BUSYBOX)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let digest = |b: &[u8]| {
        let out = std::process::Command::new("sha256sum")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin.take().unwrap().write_all(b)?;
                c.wait_with_output()
            })
            .unwrap();
        format!("sha256:{}", &String::from_utf8_lossy(&out.stdout)[..64])
    };
    let diff = digest(&layer);
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["sh"], "Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [diff]},
    }))
    .unwrap();
    std::fs::create_dir_all(dir.path().join("l0")).unwrap();
    std::fs::write(dir.path().join("l0/layer.tar"), &layer).unwrap();
    std::fs::write(dir.path().join("cfg.json"), &config).unwrap();
    std::fs::write(
        dir.path().join("manifest.json"),
        serde_json::to_vec(&serde_json::json!([{
            "Config": "cfg.json", "RepoTags": ["keelson-docker:1"], "Layers": ["l0/layer.tar"],
        }]))
        .unwrap(),
    )
    .unwrap();
    let status = std::process::Command::new("tar")
        .arg("-cf")
        .arg(path)
        .arg("-C")
        .arg(dir.path())
        .args(["manifest.json", "cfg.json", "l0/layer.tar"])
        .status()
        .unwrap();
    assert!(status.success());
    digest(&config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imports_images_and_runs_a_pod_on_them() {
    let dir = tempfile::Builder::new()
        .prefix("keelson-containerd-")
        .tempdir()
        .unwrap();
    let mut containerd = Containerd::start(dir.path(), None).expect("containerd");
    let channel = keelson_containerd::connect(containerd.socket())
        .await
        .unwrap();
    let (pause_tar, busybox_tar) = image_archives().unwrap();
    let pause = image::build_pause().unwrap();
    let busybox = image::build_busybox().unwrap();

    // First import writes and unpacks; the second finds everything in place.
    let started = Instant::now();
    let first_pause = import_archive(channel.clone(), CRI_NAMESPACE, &pause_tar)
        .await
        .expect("import pause");
    let first_busybox = import_archive(channel.clone(), CRI_NAMESPACE, &busybox_tar)
        .await
        .expect("import busybox");
    let first = started.elapsed();
    assert_eq!(first_pause.len(), 1);
    assert_eq!(first_pause[0].name, keelson_containerd::PAUSE_IMAGE);
    assert_eq!(first_pause[0].target_digest, pause.manifest_digest);
    assert!(first_pause[0].changed && first_busybox[0].changed);
    let started = Instant::now();
    let again = import_archive(channel.clone(), CRI_NAMESPACE, &busybox_tar)
        .await
        .expect("import again");
    let second = started.elapsed();
    assert!(
        !again[0].changed,
        "second import changed something: {again:?}"
    );
    assert_eq!(again[0].config_digest, first_busybox[0].config_digest);
    println!("import of both images: {first:?}; busybox again: {second:?}");

    // The labels containerd's own client sets, on the image and its content.
    let img = ImagesClient::new(channel.clone())
        .get(in_ns(GetImageRequest {
            name: keelson_containerd::BUSYBOX_IMAGE.into(),
        }))
        .await
        .unwrap()
        .into_inner()
        .image
        .unwrap();
    assert_eq!(img.labels["io.cri-containerd.image"], "managed");
    let info = |digest: String| {
        let channel = channel.clone();
        async move {
            ContentClient::new(channel)
                .info(in_ns(InfoRequest { digest }))
                .await
                .unwrap()
                .into_inner()
                .info
                .unwrap()
                .labels
        }
    };
    let manifest_labels = info(busybox.manifest_digest.clone()).await;
    assert_eq!(
        manifest_labels["containerd.io/gc.ref.content.config"],
        busybox.config_digest
    );
    assert_eq!(
        manifest_labels["containerd.io/gc.ref.content.l.0"],
        busybox.layer_digest
    );
    let config_labels = info(busybox.config_digest.clone()).await;
    assert_eq!(
        config_labels["containerd.io/gc.ref.snapshot.overlayfs"],
        busybox.layer_digest
    );
    let layer_labels = info(busybox.layer_digest.clone()).await;
    assert_eq!(
        layer_labels["containerd.io/uncompressed"],
        busybox.layer_digest
    );

    // skopeo reads the archive and the layout directory as standard OCI images.
    let layout = dir.path().join("busybox-layout");
    busybox.write_layout(&layout).unwrap();
    for source in [
        format!("oci-archive:{}", busybox_tar.display()),
        format!("oci:{}", layout.display()),
    ] {
        let out = std::process::Command::new("skopeo")
            .args(["inspect", "--raw", &source])
            .output()
            .expect("skopeo (scripts/setup installs it)");
        assert!(
            out.status.success(),
            "{source}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let manifest: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            manifest["config"]["digest"],
            busybox.config_digest.as_str(),
            "{source}"
        );
    }

    // A docker archive imports too.
    let docker_tar = dir.path().join("docker.tar");
    let docker_config = docker_archive(&docker_tar);
    let docker = import_archive(channel.clone(), CRI_NAMESPACE, &docker_tar)
        .await
        .expect("import docker archive");
    assert_eq!(docker[0].name, "docker.io/library/keelson-docker:1");
    assert_eq!(docker[0].config_digest, docker_config);

    // The CRI sees all three, with the config digest as the image id.
    let mut images = ImageServiceClient::new(channel.clone());
    for (name, id) in [
        (keelson_containerd::PAUSE_IMAGE, &pause.config_digest),
        (keelson_containerd::BUSYBOX_IMAGE, &busybox.config_digest),
        ("docker.io/library/keelson-docker:1", &docker_config),
    ] {
        let status = eventually(Duration::from_secs(10), name, || {
            let mut images = images.clone();
            async move {
                images
                    .image_status(ImageStatusRequest {
                        image: Some(ImageSpec {
                            image: name.into(),
                            ..Default::default()
                        }),
                        verbose: false,
                    })
                    .await
                    .ok()?
                    .into_inner()
                    .image
            }
        })
        .await;
        assert_eq!(&status.id, id, "{name}");
        assert!(status.repo_tags.iter().any(|t| t == name), "{status:?}");
    }
    let listed = images
        .list_images(ListImagesRequest { filter: None })
        .await
        .unwrap()
        .into_inner()
        .images;
    assert!(listed.iter().any(|i| i.id == busybox.config_digest));
    // An archive that is not one is refused with a message, and changes nothing.
    let junk = dir.path().join("junk.tar");
    std::fs::write(
        &junk,
        b"definitely not a tar archive, but long enough to look at",
    )
    .unwrap();
    let err = import_archive(channel.clone(), CRI_NAMESPACE, &junk)
        .await
        .expect_err("junk imported");
    assert!(format!("{err:#}").contains("junk.tar"), "{err:#}");

    // A pod on the host network (no CNI) from the pause image, a busybox container in it.
    let mut cri = Cri::new(channel.clone());
    let logs = dir.path().join("pod-logs");
    let pod = sandbox_config("import-test", true, &logs);
    let pod_id = cri
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(pod.clone()),
            runtime_handler: String::new(),
        })
        .await
        .unwrap_or_else(|e| panic!("RunPodSandbox: {e}\n{}", containerd.log_tail()))
        .into_inner()
        .pod_sandbox_id;
    let sleeper = run_container(
        &mut cri,
        &pod_id,
        &pod,
        "sleeper",
        keelson_containerd::BUSYBOX_IMAGE,
        &["sleep", "3600"],
    )
    .await;
    let (code, out, err) = exec(&mut cri, &sleeper, &["echo", "hi"]).await;
    assert_eq!((code, out.as_str()), (0, "hi\n"), "stderr: {err}");
    let (_, passwd, _) = exec(&mut cri, &sleeper, &["cat", "/etc/passwd"]).await;
    assert!(passwd.contains("nobody:x:65534:65534"), "{passwd}");

    // The pause image's process ends with 0 on SIGTERM, at once.
    let pause_c = run_container(
        &mut cri,
        &pod_id,
        &pod,
        "pause",
        keelson_containerd::PAUSE_IMAGE,
        &[],
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    cri.stop_container(StopContainerRequest {
        container_id: pause_c.clone(),
        timeout: 20,
    })
    .await
    .expect("StopContainer");
    let stopped_in = started.elapsed();
    let status = cri
        .container_status(ContainerStatusRequest {
            container_id: pause_c,
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap();
    assert_eq!(status.exit_code, 0, "{status:?}");
    assert!(stopped_in < Duration::from_secs(15), "took {stopped_in:?}");
    println!("pause container stopped by SIGTERM in {stopped_in:?}");

    remove_all_pods(&mut cri).await;
    drop(cri);
    drop(images);
    drop(channel);
    let socket = containerd.socket().to_string_lossy().into_owned();
    containerd.stop();
    assert_eq!(mounts_under(dir.path()), Vec::<String>::new());
    assert_eq!(processes_mentioning(&socket), Vec::<String>::new());
}
