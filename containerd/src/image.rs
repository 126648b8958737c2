//! The project's own OCI images, built from Debian's busybox-static.
//!
//! Nodes never pull their sandbox image: it is built here and imported. The build is
//! deterministic (fixed times, owners and order), so one busybox binary always gives
//! the same digests, and an image imported twice is recognised as the same.

use crate::digest;
use crate::tar::{Entry, Writer};
use anyhow::{bail, Context};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::Path;

/// The pod sandbox image: a shell that sleeps until SIGTERM or SIGINT, then exits 0.
pub const PAUSE_IMAGE: &str = "keelson.local/pause:1";
/// A busybox image for test workloads (`sh`, `sleep`, `httpd`, `nc`, `wget`, ...).
pub const BUSYBOX_IMAGE: &str = "keelson.local/busybox:1";
/// Where Debian's busybox-static installs its binary.
pub const HOST_BUSYBOX: &str = "/bin/busybox";

pub const MEDIA_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MEDIA_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
/// containerd's annotation for an image's full name in an `index.json`.
pub const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";
/// The OCI annotation for a reference (the tag) in an `index.json`.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

const CREATED: &str = "2000-01-01T00:00:00Z";
const PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What an image runs.
#[derive(Debug, Clone)]
pub struct ImageSpec {
    /// Full reference, e.g. `keelson.local/busybox:1`.
    pub name: String,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
}

impl ImageSpec {
    /// The sandbox image. The shell traps TERM and INT (a PID 1 ignores signals it does
    /// not handle) and waits on a background sleep, so a signal ends it at once.
    pub fn pause() -> ImageSpec {
        ImageSpec {
            name: PAUSE_IMAGE.into(),
            entrypoint: vec![
                "/bin/sh".into(),
                "-c".into(),
                "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait $!; done".into(),
            ],
            cmd: vec![],
        }
    }

    /// A stand-in for Docker Hub's `httpd` on busybox's httpd: serves "It works!"
    /// (Apache's default page) on port 80, plus the pod's hostname so that tests can
    /// tell the endpoints apart. busybox httpd as PID 1 ignores SIGTERM, so a deleted
    /// pod keeps serving until its grace period ends, as a draining server does.
    pub fn httpd(name: &str) -> ImageSpec {
        ImageSpec {
            name: name.into(),
            entrypoint: vec![
                "/bin/sh".into(),
                "-c".into(),
                "mkdir -p /www && echo \"<html><body><h1>It works!</h1><p>$(hostname)</p></body></html>\" > /www/index.html && exec httpd -f -p 80 -h /www".into(),
            ],
            cmd: vec![],
        }
    }

    /// The test workload image: `sh` unless the pod says otherwise.
    pub fn busybox() -> ImageSpec {
        ImageSpec {
            name: BUSYBOX_IMAGE.into(),
            entrypoint: vec![],
            cmd: vec!["sh".into()],
        }
    }
}

/// A built image: its blobs and `index.json`, ready to be written as an OCI archive or
/// layout directory.
#[derive(Debug, Clone)]
pub struct OciImage {
    pub name: String,
    pub manifest_digest: String,
    /// The config digest: the image ID the CRI reports.
    pub config_digest: String,
    /// The single uncompressed layer's digest (also its diff ID).
    pub layer_digest: String,
    index_json: Vec<u8>,
    /// Blobs by digest (sorted, so archives come out the same every time).
    blobs: BTreeMap<String, Vec<u8>>,
}

/// Build the image `spec` on a root file system from the busybox binary at `busybox`.
pub fn build(spec: &ImageSpec, busybox: &Path) -> anyhow::Result<OciImage> {
    let layer = rootfs_layer(busybox)?;
    build_on_layer(spec, layer)
}

/// [`build`] with the host's busybox-static.
pub fn build_pause() -> anyhow::Result<OciImage> {
    build(&ImageSpec::pause(), Path::new(HOST_BUSYBOX))
}

/// [`build`] with the host's busybox-static.
pub fn build_busybox() -> anyhow::Result<OciImage> {
    build(&ImageSpec::busybox(), Path::new(HOST_BUSYBOX))
}

fn build_on_layer(spec: &ImageSpec, layer: Vec<u8>) -> anyhow::Result<OciImage> {
    let (_, tag) = split_reference(&spec.name)
        .with_context(|| format!("image name {:?} has no tag", spec.name))?;
    let layer_digest = digest::of(&layer);
    let mut config_body = json!({ "Env": [PATH_ENV], "WorkingDir": "/" });
    if !spec.entrypoint.is_empty() {
        config_body["Entrypoint"] = json!(spec.entrypoint);
    }
    if !spec.cmd.is_empty() {
        config_body["Cmd"] = json!(spec.cmd);
    }
    let config = serde_json::to_vec(&json!({
        "created": CREATED,
        "architecture": go_arch(),
        "os": "linux",
        "config": config_body,
        "rootfs": { "type": "layers", "diff_ids": [layer_digest] },
        "history": [{ "created": CREATED, "created_by": "keelson-containerd (busybox-static)" }],
    }))?;
    let config_digest = digest::of(&config);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": { "mediaType": MEDIA_CONFIG, "digest": config_digest, "size": config.len() },
        "layers": [{ "mediaType": MEDIA_LAYER, "digest": layer_digest, "size": layer.len() }],
    }))?;
    let manifest_digest = digest::of(&manifest);
    let index_json = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_INDEX,
        "manifests": [{
            "mediaType": MEDIA_MANIFEST,
            "digest": manifest_digest,
            "size": manifest.len(),
            "annotations": {
                ANNOTATION_IMAGE_NAME: spec.name,
                ANNOTATION_REF_NAME: tag,
            },
        }],
    }))?;
    let mut blobs = BTreeMap::new();
    blobs.insert(layer_digest.clone(), layer);
    blobs.insert(config_digest.clone(), config);
    blobs.insert(manifest_digest.clone(), manifest);
    Ok(OciImage {
        name: spec.name.clone(),
        manifest_digest,
        config_digest,
        layer_digest,
        index_json,
        blobs,
    })
}

impl OciImage {
    /// The image as an OCI archive (a tar of the layout), byte for byte the same for
    /// the same image.
    pub fn archive(&self) -> anyhow::Result<Vec<u8>> {
        let mut w = Writer::new(Vec::new());
        w.append(Entry::File {
            path: "oci-layout",
            mode: 0o644,
            data: OCI_LAYOUT,
        })?;
        w.append(Entry::File {
            path: "index.json",
            mode: 0o644,
            data: &self.index_json,
        })?;
        w.append(Entry::Dir {
            path: "blobs",
            mode: 0o755,
        })?;
        w.append(Entry::Dir {
            path: "blobs/sha256",
            mode: 0o755,
        })?;
        for (d, bytes) in &self.blobs {
            let path = format!("blobs/sha256/{}", digest::hex(d).expect("own digest"));
            w.append(Entry::File {
                path: &path,
                mode: 0o644,
                data: bytes,
            })?;
        }
        w.finish()
    }

    /// Write the OCI archive to `path` (through a temporary file, so a reader never
    /// sees half an archive).
    pub fn write_archive(&self, path: &Path) -> anyhow::Result<()> {
        let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
        std::fs::write(&tmp, self.archive()?)
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    }

    /// Write the image as an OCI layout directory (for `skopeo copy oci:DIR ...`).
    pub fn write_layout(&self, dir: &Path) -> anyhow::Result<()> {
        let blobs = dir.join("blobs/sha256");
        std::fs::create_dir_all(&blobs)?;
        std::fs::write(dir.join("oci-layout"), OCI_LAYOUT)?;
        std::fs::write(dir.join("index.json"), &self.index_json)?;
        for (d, bytes) in &self.blobs {
            std::fs::write(blobs.join(digest::hex(d).expect("own digest")), bytes)?;
        }
        Ok(())
    }
}

const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// The uncompressed layer tar of a minimal root file system: busybox, a link per applet
/// at the path busybox names for it, the users root and nobody, and the usual mount
/// points.
pub fn rootfs_layer(busybox: &Path) -> anyhow::Result<Vec<u8>> {
    let binary = std::fs::read(busybox).with_context(|| {
        format!(
            "reading {} (apt-get install busybox-static)",
            busybox.display()
        )
    })?;
    let list = std::process::Command::new(busybox)
        .arg("--list-full")
        .output()
        .with_context(|| format!("running {} --list-full", busybox.display()))?;
    if !list.status.success() {
        bail!("{} --list-full failed", busybox.display());
    }
    let applets = String::from_utf8_lossy(&list.stdout).into_owned();

    enum Item {
        Dir(u32),
        File(u32, Vec<u8>),
        Link(&'static str),
    }
    let mut items: BTreeMap<String, Item> = BTreeMap::new();
    for (dir, mode) in [
        ("bin", 0o755),
        ("dev", 0o755),
        ("etc", 0o755),
        ("proc", 0o555),
        ("root", 0o700),
        ("sbin", 0o755),
        ("sys", 0o555),
        ("tmp", 0o1777),
        ("usr", 0o755),
        ("usr/bin", 0o755),
        ("usr/sbin", 0o755),
        ("var", 0o755),
    ] {
        items.insert(dir.into(), Item::Dir(mode));
    }
    items.insert("bin/busybox".into(), Item::File(0o755, binary));
    items.insert(
        "etc/passwd".into(),
        Item::File(
            0o644,
            b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
                .to_vec(),
        ),
    );
    items.insert(
        "etc/group".into(),
        Item::File(0o644, b"root:x:0:\nnobody:x:65534:\n".to_vec()),
    );
    for applet in applets.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let path = crate::tar::normalise(applet);
        // Only applets in the directories above, and never over a real file.
        let parent = path.rsplit_once('/').map(|(p, _)| p).unwrap_or("");
        if path.contains("..") || !matches!(items.get(parent), Some(Item::Dir(_))) {
            continue;
        }
        items.entry(path).or_insert(Item::Link("/bin/busybox"));
    }
    let mut w = Writer::new(Vec::new());
    for (path, item) in &items {
        match item {
            Item::Dir(mode) => w.append(Entry::Dir { path, mode: *mode })?,
            Item::File(mode, data) => w.append(Entry::File {
                path,
                mode: *mode,
                data,
            })?,
            Item::Link(target) => w.append(Entry::Symlink { path, target })?,
        }
    }
    w.finish()
}

/// `repo:tag` split at the tag's colon (not a registry port's).
pub(crate) fn split_reference(name: &str) -> Option<(&str, &str)> {
    let (repo, tag) = name.rsplit_once(':')?;
    (!tag.contains('/') && !tag.is_empty() && !repo.is_empty()).then_some((repo, tag))
}

/// The platform's architecture as OCI (Go) names it.
pub(crate) fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn the_same_busybox_gives_the_same_digests() {
        let a = build_busybox().unwrap();
        let b = build_busybox().unwrap();
        assert_eq!(a.manifest_digest, b.manifest_digest);
        assert_eq!(a.archive().unwrap(), b.archive().unwrap());
        let p = build_pause().unwrap();
        assert_eq!(p.layer_digest, a.layer_digest, "one root file system");
        assert_ne!(p.config_digest, a.config_digest);
    }

    #[test]
    fn the_archive_is_an_oci_layout() {
        let img = build_pause().unwrap();
        let bytes = img.archive().unwrap();
        let files = crate::tar::index(&mut std::io::Cursor::new(&bytes)).unwrap();
        let read = |p: &str| {
            let s = files[p];
            bytes[s.offset as usize..(s.offset + s.size) as usize].to_vec()
        };
        let index: Value = serde_json::from_slice(&read("index.json")).unwrap();
        let m = &index["manifests"][0];
        assert_eq!(m["annotations"][ANNOTATION_IMAGE_NAME], PAUSE_IMAGE);
        assert_eq!(m["annotations"][ANNOTATION_REF_NAME], "1");
        assert_eq!(m["digest"], img.manifest_digest.as_str());
        for d in [&img.manifest_digest, &img.config_digest, &img.layer_digest] {
            let blob = read(&format!("blobs/sha256/{}", digest::hex(d).unwrap()));
            assert_eq!(&digest::of(&blob), d);
        }
        let layer = read(&format!(
            "blobs/sha256/{}",
            digest::hex(&img.layer_digest).unwrap()
        ));
        let rootfs = crate::tar::index(&mut std::io::Cursor::new(&layer)).unwrap();
        assert!(rootfs.contains_key("bin/busybox"));
        assert!(rootfs.contains_key("etc/passwd"));
    }

    #[test]
    fn a_missing_busybox_is_an_error() {
        assert!(build(&ImageSpec::busybox(), Path::new("/nonexistent/busybox")).is_err());
    }

    #[test]
    fn references_split_at_the_tag() {
        assert_eq!(
            split_reference("localhost:5000/a/b:1"),
            Some(("localhost:5000/a/b", "1"))
        );
        assert_eq!(split_reference("localhost:5000/a"), None);
    }
}
