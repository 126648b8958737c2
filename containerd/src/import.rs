//! Image import through containerd's gRPC API, as `ctr images import` does it in
//! containerd 1.6: blobs into the content store under a lease (so the garbage collector
//! leaves them alone midway), the layers unpacked into the snapshotter under their chain
//! IDs, the image records created or moved, and the labels containerd's own client sets:
//!
//! - an index: `containerd.io/gc.ref.content.m.<i>` per manifest;
//! - a manifest: `containerd.io/gc.ref.content.config`, `containerd.io/gc.ref.content.l.<i>`;
//! - a config: `containerd.io/gc.ref.snapshot.<snapshotter>` = the top chain ID;
//! - a layer: `containerd.io/uncompressed` = its diff ID, once unpacking verified it;
//! - the image: `io.cri-containerd.image=managed`, which the CRI plugin sets on images
//!   it manages.
//!
//! The CRI plugin follows containerd's image events, so an imported image becomes
//! visible to `ImageStatus` shortly after (see [`wait_visible_to_cri`]).
//!
//! Reads OCI archives and layout directories (`index.json`) and docker archives
//! (`manifest.json` and layer tars, as `docker save` writes them).

use crate::digest;
use crate::image::{go_arch, ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME, MEDIA_INDEX};
use crate::tar::{self, Span};
use anyhow::{anyhow, bail, Context};
use containerd_client::services::v1::snapshots::snapshots_client::SnapshotsClient;
use containerd_client::services::v1::{
    content_client::ContentClient, diff_client::DiffClient, images_client::ImagesClient,
    leases_client::LeasesClient, snapshots, ApplyRequest, CreateImageRequest,
    CreateRequest as CreateLeaseRequest, DeleteRequest as DeleteLeaseRequest, GetImageRequest,
    Image, Info, InfoRequest, UpdateImageRequest, UpdateRequest, WriteAction, WriteContentRequest,
};
use containerd_client::types::Descriptor;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tonic::transport::Channel;
use tonic::{Code, Request};

const MEDIA_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const MEDIA_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const MEDIA_DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const MEDIA_DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
const MEDIA_DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// The label the CRI plugin puts on images it manages.
pub const CRI_MANAGED_LABEL: (&str, &str) = ("io.cri-containerd.image", "managed");
const UNCOMPRESSED_LABEL: &str = "containerd.io/uncompressed";
/// Largest JSON document (index, manifest, config) read from an archive.
const MAX_JSON: u64 = 8 << 20;
const CHUNK: usize = 1 << 20;

/// Where and how to import.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// The containerd namespace; the CRI plugin uses `k8s.io`.
    pub namespace: String,
    /// The snapshotter the CRI plugin runs containers from.
    pub snapshotter: String,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            namespace: crate::CRI_NAMESPACE.into(),
            snapshotter: "overlayfs".into(),
        }
    }
}

/// One image name an import created or found in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedImage {
    pub name: String,
    /// What the image record points at: a manifest, or an index for multi-platform images.
    pub target_digest: String,
    /// The image config's digest: the image ID the CRI reports.
    pub config_digest: String,
    /// The snapshot holding the unpacked layers.
    pub chain_id: String,
    /// False when the image already pointed at this target, unpacked: nothing was written.
    pub changed: bool,
}

/// Import every named image in the archive (or layout directory) at `path` into
/// `namespace`, unpacked into the overlayfs snapshotter.
pub async fn import_archive(
    channel: Channel,
    namespace: &str,
    path: &Path,
) -> anyhow::Result<Vec<ImportedImage>> {
    let opts = ImportOptions {
        namespace: namespace.to_string(),
        ..ImportOptions::default()
    };
    import_archive_with(channel, &opts, path).await
}

/// [`import_archive`] with every option.
pub async fn import_archive_with(
    channel: Channel,
    opts: &ImportOptions,
    path: &Path,
) -> anyhow::Result<Vec<ImportedImage>> {
    // Reading (and, for docker archives, hashing the layers) is file work: off the
    // async threads.
    let owned = path.to_path_buf();
    let (source, plans) = tokio::task::spawn_blocking(move || {
        let source = Source::open(&owned)?;
        let plans = plan(&source).with_context(|| format!("reading {}", owned.display()))?;
        anyhow::Ok((source, plans))
    })
    .await??;
    if plans.is_empty() {
        bail!("{}: no named image in the archive", path.display());
    }
    let ctx = Ctx {
        channel,
        ns: opts.namespace.clone(),
        snapshotter: opts.snapshotter.clone(),
        lease: None,
    };
    let mut results = Vec::new();
    let mut todo = Vec::new();
    for p in &plans {
        if ctx.in_place(p).await? {
            results.push(p.result(false));
        } else {
            todo.push(p);
        }
    }
    if todo.is_empty() {
        return Ok(results);
    }
    let lease = ctx.create_lease().await?;
    let ctx = Ctx {
        lease: Some(lease.clone()),
        ..ctx
    };
    let mut outcome = Ok(());
    for p in &todo {
        outcome = ctx.import_one(&source, p).await;
        if outcome.is_err() {
            break;
        }
        results.push(p.result(true));
    }
    // Everything is referenced from the image records now (or the import failed): the
    // lease goes either way; if this fails its expiry removes it.
    if let Err(e) = ctx.delete_lease(&lease).await {
        tracing::warn!("deleting import lease {lease}: {e:#}");
    }
    outcome.with_context(|| format!("importing {}", path.display()))?;
    Ok(results)
}

/// Wait until the CRI plugin's `ImageStatus` finds every one of `names` (it learns of
/// imports from containerd's image events, a moment later).
pub async fn wait_visible_to_cri(
    channel: Channel,
    names: &[&str],
    timeout: Duration,
) -> anyhow::Result<()> {
    use k8s_cri::v1::{image_service_client::ImageServiceClient, ImageSpec, ImageStatusRequest};
    let mut cri = ImageServiceClient::new(channel);
    let deadline = Instant::now() + timeout;
    for name in names {
        loop {
            let answer = cri
                .image_status(ImageStatusRequest {
                    image: Some(ImageSpec {
                        image: name.to_string(),
                        ..Default::default()
                    }),
                    verbose: false,
                })
                .await;
            if matches!(&answer, Ok(r) if r.get_ref().image.is_some()) {
                break;
            }
            if Instant::now() > deadline {
                bail!("the CRI does not see {name} after {timeout:?}: {answer:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}

/// The files of an archive or a layout directory.
enum Source {
    Archive {
        path: PathBuf,
        files: HashMap<String, Span>,
    },
    Dir(PathBuf),
}

impl Source {
    fn open(path: &Path) -> anyhow::Result<Source> {
        if path.is_dir() {
            return Ok(Source::Dir(path.to_path_buf()));
        }
        let mut f =
            std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let files = tar::index(&mut f).with_context(|| format!("reading {}", path.display()))?;
        Ok(Source::Archive {
            path: path.to_path_buf(),
            files,
        })
    }

    fn has(&self, name: &str) -> bool {
        match self {
            Source::Archive { files, .. } => files.contains_key(name),
            Source::Dir(d) => safe_relative(name) && d.join(name).is_file(),
        }
    }

    /// A reader of the file `name` and its length.
    fn open_file(&self, name: &str) -> anyhow::Result<(Box<dyn Read + Send>, u64)> {
        match self {
            Source::Archive { path, files } => {
                let span = files
                    .get(name)
                    .ok_or_else(|| anyhow!("{name} is not in the archive"))?;
                let mut f = std::fs::File::open(path)?;
                f.seek(SeekFrom::Start(span.offset))?;
                Ok((Box::new(f.take(span.size)), span.size))
            }
            Source::Dir(d) => {
                if !safe_relative(name) {
                    bail!("unsafe path {name:?}");
                }
                let f = std::fs::File::open(d.join(name))
                    .with_context(|| format!("{name} is not in the layout"))?;
                let size = f.metadata()?.len();
                Ok((Box::new(f), size))
            }
        }
    }

    fn read_json_file(&self, name: &str) -> anyhow::Result<(Vec<u8>, Value)> {
        let (r, size) = self.open_file(name)?;
        if size > MAX_JSON {
            bail!("{name}: {size} bytes is too large for a JSON document");
        }
        let mut bytes = Vec::with_capacity(size as usize);
        r.take(MAX_JSON).read_to_end(&mut bytes)?;
        let v = serde_json::from_slice(&bytes).with_context(|| format!("{name} is not JSON"))?;
        Ok((bytes, v))
    }
}

fn safe_relative(name: &str) -> bool {
    !name.starts_with('/') && !name.split('/').any(|c| c == "..")
}

/// Where a blob's bytes come from.
#[derive(Debug, Clone)]
enum Origin {
    File(String),
    Bytes(Vec<u8>),
}

#[derive(Debug, Clone)]
struct Blob {
    desc: Descriptor,
    origin: Origin,
    labels: BTreeMap<String, String>,
}

/// One image of the archive, fully read: what to write and how to unpack it.
#[derive(Debug)]
struct Plan {
    names: Vec<String>,
    target: Descriptor,
    config_digest: String,
    /// Index(es), manifest, config, layers: every blob the image needs.
    blobs: Vec<Blob>,
    /// The layers bottom first, with their diff IDs.
    layers: Vec<(Descriptor, String)>,
    chain_id: String,
}

impl Plan {
    fn result(&self, changed: bool) -> ImportedImage {
        // One result per plan; a plan with several names reports the first (see plan()).
        ImportedImage {
            name: self.names[0].clone(),
            target_digest: self.target.digest.clone(),
            config_digest: self.config_digest.clone(),
            chain_id: self.chain_id.clone(),
            changed,
        }
    }
}

fn descriptor(v: &Value) -> anyhow::Result<Descriptor> {
    let digest = v["digest"].as_str().unwrap_or_default().to_string();
    if digest::hex(&digest).is_none() {
        bail!("descriptor without a sha256 digest: {v}");
    }
    let size = v["size"]
        .as_i64()
        .filter(|s| *s >= 0)
        .ok_or_else(|| anyhow!("descriptor without a size: {v}"))?;
    Ok(Descriptor {
        media_type: v["mediaType"].as_str().unwrap_or_default().to_string(),
        digest,
        size,
        annotations: HashMap::new(),
    })
}

fn blob_path(digest: &str) -> String {
    format!("blobs/sha256/{}", digest::hex(digest).unwrap_or("invalid"))
}

/// Read the archive's images: the OCI layout's `index.json` if present, else a docker
/// archive's `manifest.json`. Every name gets its own plan.
fn plan(source: &Source) -> anyhow::Result<Vec<Plan>> {
    let mut plans = Vec::new();
    if source.has("index.json") {
        let (_, index) = source.read_json_file("index.json")?;
        let manifests = index["manifests"]
            .as_array()
            .ok_or_else(|| anyhow!("index.json has no manifests"))?;
        for m in manifests {
            let Some(name) = oci_image_name(m) else {
                continue;
            };
            let target = descriptor(m)?;
            plans.push(plan_oci(source, name, target)?);
        }
    } else if source.has("manifest.json") {
        let (_, manifest) = source.read_json_file("manifest.json")?;
        let entries = manifest
            .as_array()
            .ok_or_else(|| anyhow!("manifest.json is not a list"))?;
        for entry in entries {
            for tag in entry["RepoTags"].as_array().into_iter().flatten() {
                let name = tag
                    .as_str()
                    .and_then(normalise_reference)
                    .ok_or_else(|| anyhow!("bad RepoTag {tag}"))?;
                plans.push(plan_docker(source, name, entry)?);
            }
        }
    } else {
        bail!("neither an OCI layout (index.json) nor a docker archive (manifest.json)");
    }
    Ok(plans)
}

/// The full name of an index entry: containerd's annotation, or an OCI ref name that is
/// a whole reference (a bare tag names nothing to import it as).
fn oci_image_name(m: &Value) -> Option<String> {
    let ann = &m["annotations"];
    if let Some(n) = ann[ANNOTATION_IMAGE_NAME].as_str() {
        return normalise_reference(n);
    }
    ann[ANNOTATION_REF_NAME]
        .as_str()
        .filter(|n| n.contains('/'))
        .and_then(normalise_reference)
}

fn plan_oci(source: &Source, name: String, target: Descriptor) -> anyhow::Result<Plan> {
    let mut blobs = Vec::new();
    let mut desc = target.clone();
    // Follow indexes down to this platform's manifest.
    for _ in 0..4 {
        if desc.media_type != MEDIA_INDEX && desc.media_type != MEDIA_DOCKER_LIST {
            break;
        }
        let (_, index) = source.read_json_file(&blob_path(&desc.digest))?;
        let children = index["manifests"].as_array().cloned().unwrap_or_default();
        let mut labels = BTreeMap::new();
        for (i, c) in children.iter().enumerate() {
            if let Some(d) = c["digest"].as_str() {
                labels.insert(format!("containerd.io/gc.ref.content.m.{i}"), d.to_string());
            }
        }
        blobs.push(Blob {
            desc: desc.clone(),
            origin: Origin::File(blob_path(&desc.digest)),
            labels,
        });
        let arch = go_arch();
        let chosen = children
            .iter()
            .find(|c| c["platform"]["os"] == "linux" && c["platform"]["architecture"] == arch)
            .or_else(|| children.iter().find(|c| c["platform"].is_null()))
            .ok_or_else(|| anyhow!("{name}: no manifest for linux/{arch}"))?;
        desc = descriptor(chosen)?;
    }
    let manifest_path = blob_path(&desc.digest);
    let (_, manifest) = source.read_json_file(&manifest_path)?;
    let config = descriptor(&manifest["config"])?;
    let layers: Vec<Descriptor> = manifest["layers"]
        .as_array()
        .ok_or_else(|| anyhow!("manifest {} has no layers", desc.digest))?
        .iter()
        .map(descriptor)
        .collect::<anyhow::Result<_>>()?;
    let config_path = blob_path(&config.digest);
    let (_, config_json) = source.read_json_file(&config_path)?;
    finish_plan(
        name,
        target,
        blobs,
        (desc, Origin::File(manifest_path)),
        config,
        Origin::File(config_path),
        &config_json,
        layers
            .into_iter()
            .map(|l| {
                let path = blob_path(&l.digest);
                (l, Origin::File(path))
            })
            .collect(),
    )
}

/// A docker archive entry as a docker schema 2 manifest, as containerd's importer
/// converts it.
fn plan_docker(source: &Source, name: String, entry: &Value) -> anyhow::Result<Plan> {
    let config_path = tar::normalise(
        entry["Config"]
            .as_str()
            .ok_or_else(|| anyhow!("manifest.json entry without Config"))?,
    );
    let (config_bytes, config_json) = source.read_json_file(&config_path)?;
    let config = Descriptor {
        media_type: MEDIA_DOCKER_CONFIG.into(),
        digest: digest::of(&config_bytes),
        size: config_bytes.len() as i64,
        annotations: HashMap::new(),
    };
    let mut layers = Vec::new();
    for l in entry["Layers"].as_array().into_iter().flatten() {
        let path = tar::normalise(l.as_str().ok_or_else(|| anyhow!("bad layer entry {l}"))?);
        let (mut r, _) = source.open_file(&path)?;
        let mut magic = [0u8; 2];
        let compressed = r.read_exact(&mut magic).is_ok() && magic == [0x1f, 0x8b];
        let (r, _) = source.open_file(&path)?;
        let (d, size) = digest::of_reader(r)?;
        layers.push((
            Descriptor {
                media_type: if compressed {
                    MEDIA_DOCKER_LAYER_GZIP
                } else {
                    MEDIA_DOCKER_LAYER
                }
                .into(),
                digest: d,
                size: size as i64,
                annotations: HashMap::new(),
            },
            Origin::File(path),
        ));
    }
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_DOCKER_MANIFEST,
        "config": { "mediaType": config.media_type, "size": config.size, "digest": config.digest },
        "layers": layers.iter().map(|(l, _)| serde_json::json!({
            "mediaType": l.media_type, "size": l.size, "digest": l.digest,
        })).collect::<Vec<_>>(),
    }))?;
    let target = Descriptor {
        media_type: MEDIA_DOCKER_MANIFEST.into(),
        digest: digest::of(&manifest),
        size: manifest.len() as i64,
        annotations: HashMap::new(),
    };
    finish_plan(
        name,
        target.clone(),
        Vec::new(),
        (target, Origin::Bytes(manifest)),
        config,
        Origin::Bytes(config_bytes),
        &config_json,
        layers,
    )
}

#[allow(clippy::too_many_arguments)]
fn finish_plan(
    name: String,
    target: Descriptor,
    mut blobs: Vec<Blob>,
    (manifest, manifest_origin): (Descriptor, Origin),
    config: Descriptor,
    config_origin: Origin,
    config_json: &Value,
    layers: Vec<(Descriptor, Origin)>,
) -> anyhow::Result<Plan> {
    let diff_ids: Vec<String> = config_json["rootfs"]["diff_ids"]
        .as_array()
        .ok_or_else(|| anyhow!("image config has no rootfs.diff_ids"))?
        .iter()
        .map(|d| d.as_str().unwrap_or_default().to_string())
        .collect();
    if diff_ids.len() != layers.len() || diff_ids.iter().any(|d| digest::hex(d).is_none()) {
        bail!(
            "image config names {} diff IDs for {} layers",
            diff_ids.len(),
            layers.len()
        );
    }
    let chain_id = digest::chain_id(&diff_ids).ok_or_else(|| anyhow!("image has no layers"))?;
    let mut manifest_labels = BTreeMap::new();
    manifest_labels.insert(
        "containerd.io/gc.ref.content.config".to_string(),
        config.digest.clone(),
    );
    for (i, (l, _)) in layers.iter().enumerate() {
        manifest_labels.insert(
            format!("containerd.io/gc.ref.content.l.{i}"),
            l.digest.clone(),
        );
    }
    blobs.push(Blob {
        desc: manifest,
        origin: manifest_origin,
        labels: manifest_labels,
    });
    blobs.push(Blob {
        desc: config.clone(),
        origin: config_origin,
        labels: BTreeMap::new(),
    });
    let mut planned_layers = Vec::new();
    for ((l, origin), diff_id) in layers.into_iter().zip(diff_ids) {
        blobs.push(Blob {
            desc: l.clone(),
            origin,
            labels: BTreeMap::new(),
        });
        planned_layers.push((l, diff_id));
    }
    Ok(Plan {
        names: vec![name],
        target,
        config_digest: config.digest,
        blobs,
        layers: planned_layers,
        chain_id,
    })
}

/// A docker-style reference in full: `busybox` is `docker.io/library/busybox:latest`.
pub fn normalise_reference(name: &str) -> Option<String> {
    if name.is_empty()
        || name.len() > 4096
        || name.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return None;
    }
    let (domain, rest) = match name.split_once('/') {
        Some((d, r)) if d.contains('.') || d.contains(':') || d == "localhost" => {
            (d.to_string(), r.to_string())
        }
        _ => ("docker.io".to_string(), name.to_string()),
    };
    let rest = if domain == "docker.io" && !rest.contains('/') {
        format!("library/{rest}")
    } else {
        rest
    };
    if rest.is_empty() || rest.starts_with(':') || rest.starts_with('@') {
        return None;
    }
    let last = rest.rsplit('/').next().unwrap_or_default();
    let tagged = last.contains(':') || last.contains('@');
    Some(if tagged {
        format!("{domain}/{rest}")
    } else {
        format!("{domain}/{rest}:latest")
    })
}

/// The connection and the request metadata every call carries.
struct Ctx {
    channel: Channel,
    ns: String,
    snapshotter: String,
    lease: Option<String>,
}

fn is(status: &tonic::Status, code: Code) -> bool {
    status.code() == code
}

impl Ctx {
    fn req<T>(&self, msg: T) -> Request<T> {
        let mut r = Request::new(msg);
        let md = r.metadata_mut();
        if let Ok(v) = self.ns.parse() {
            md.insert("containerd-namespace", v);
        }
        if let Some(l) = self.lease.as_deref().and_then(|l| l.parse().ok()) {
            md.insert("containerd-lease", l);
        }
        r
    }

    fn content(&self) -> ContentClient<Channel> {
        ContentClient::new(self.channel.clone()).max_decoding_message_size(64 << 20)
    }

    fn snapshots(&self) -> SnapshotsClient<Channel> {
        SnapshotsClient::new(self.channel.clone())
    }

    /// Whether every name of `p` already points at its target and the unpacked chain
    /// exists: then importing again changes nothing.
    async fn in_place(&self, p: &Plan) -> anyhow::Result<bool> {
        let mut images = ImagesClient::new(self.channel.clone());
        for name in &p.names {
            match images
                .get(self.req(GetImageRequest { name: name.clone() }))
                .await
            {
                Ok(r) => {
                    let img = r.into_inner().image.unwrap_or_default();
                    let same = img.target.as_ref().map(|t| t.digest.as_str())
                        == Some(p.target.digest.as_str());
                    let managed = img.labels.get(CRI_MANAGED_LABEL.0).map(String::as_str)
                        == Some(CRI_MANAGED_LABEL.1);
                    if !same || !managed {
                        return Ok(false);
                    }
                }
                Err(s) if is(&s, Code::NotFound) => return Ok(false),
                Err(s) => return Err(s).context("getting image"),
            }
        }
        self.snapshot_exists(&p.chain_id).await
    }

    async fn snapshot_exists(&self, key: &str) -> anyhow::Result<bool> {
        match self
            .snapshots()
            .stat(self.req(snapshots::StatSnapshotRequest {
                snapshotter: self.snapshotter.clone(),
                key: key.to_string(),
            }))
            .await
        {
            Ok(_) => Ok(true),
            Err(s) if is(&s, Code::NotFound) => Ok(false),
            Err(s) => Err(s).context("stat snapshot"),
        }
    }

    async fn create_lease(&self) -> anyhow::Result<String> {
        let id = format!(
            "keelson-import-{}-{}",
            std::process::id(),
            chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
        );
        let expire = (chrono::Utc::now() + chrono::Duration::hours(1))
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        LeasesClient::new(self.channel.clone())
            .create(self.req(CreateLeaseRequest {
                id: id.clone(),
                labels: [("containerd.io/gc.expire".to_string(), expire)].into(),
            }))
            .await
            .context("creating a lease")?;
        Ok(id)
    }

    async fn delete_lease(&self, id: &str) -> anyhow::Result<()> {
        let ctx = Ctx {
            lease: None,
            channel: self.channel.clone(),
            ns: self.ns.clone(),
            snapshotter: self.snapshotter.clone(),
        };
        LeasesClient::new(self.channel.clone())
            .delete(ctx.req(DeleteLeaseRequest {
                id: id.to_string(),
                sync: false,
            }))
            .await?;
        Ok(())
    }

    async fn import_one(&self, source: &Source, p: &Plan) -> anyhow::Result<()> {
        for blob in &p.blobs {
            self.put_blob(source, blob)
                .await
                .with_context(|| format!("writing blob {}", blob.desc.digest))?;
        }
        let mut chain: Vec<String> = Vec::new();
        for (layer, diff_id) in &p.layers {
            let parent = digest::chain_id(&chain).unwrap_or_default();
            chain.push(diff_id.clone());
            let chain_id = digest::chain_id(&chain).expect("non-empty chain");
            if !self.snapshot_exists(&chain_id).await? {
                self.unpack_layer(layer, diff_id, &parent, &chain_id)
                    .await
                    .with_context(|| format!("unpacking layer {}", layer.digest))?;
            }
            self.add_labels(
                &layer.digest,
                [(UNCOMPRESSED_LABEL.to_string(), diff_id.clone())],
            )
            .await?;
        }
        self.add_labels(
            &p.config_digest,
            [(
                format!("containerd.io/gc.ref.snapshot.{}", self.snapshotter),
                p.chain_id.clone(),
            )],
        )
        .await?;
        for name in &p.names {
            self.put_image(name, &p.target).await?;
        }
        Ok(())
    }

    /// Create the image record, or move an existing one to `target`.
    async fn put_image(&self, name: &str, target: &Descriptor) -> anyhow::Result<()> {
        let mut images = ImagesClient::new(self.channel.clone());
        let mut image = Image {
            name: name.to_string(),
            labels: [(
                CRI_MANAGED_LABEL.0.to_string(),
                CRI_MANAGED_LABEL.1.to_string(),
            )]
            .into(),
            target: Some(target.clone()),
            created_at: None,
            updated_at: None,
        };
        match images
            .create(self.req(CreateImageRequest {
                image: Some(image.clone()),
                source_date_epoch: None,
            }))
            .await
        {
            Ok(_) => Ok(()),
            Err(s) if is(&s, Code::AlreadyExists) => {
                if let Ok(existing) = images
                    .get(self.req(GetImageRequest {
                        name: name.to_string(),
                    }))
                    .await
                {
                    let mut labels = existing.into_inner().image.unwrap_or_default().labels;
                    labels.extend(image.labels);
                    image.labels = labels;
                }
                images
                    .update(self.req(UpdateImageRequest {
                        image: Some(image),
                        update_mask: None,
                        source_date_epoch: None,
                    }))
                    .await
                    .with_context(|| format!("updating image {name}"))?;
                Ok(())
            }
            Err(s) => Err(s).with_context(|| format!("creating image {name}")),
        }
    }

    /// Merge `labels` into a blob's labels.
    async fn add_labels(
        &self,
        digest: &str,
        labels: impl IntoIterator<Item = (String, String)>,
    ) -> anyhow::Result<()> {
        let mut content = self.content();
        let info = content
            .info(self.req(InfoRequest {
                digest: digest.to_string(),
            }))
            .await
            .with_context(|| format!("content info {digest}"))?
            .into_inner()
            .info
            .unwrap_or_default();
        let mut merged = info.labels.clone();
        let mut changed = false;
        for (k, v) in labels {
            if merged.get(&k) != Some(&v) {
                merged.insert(k, v);
                changed = true;
            }
        }
        if !changed {
            return Ok(());
        }
        content
            .update(self.req(UpdateRequest {
                info: Some(Info {
                    digest: digest.to_string(),
                    labels: merged,
                    ..info
                }),
                update_mask: None,
            }))
            .await
            .with_context(|| format!("labelling {digest}"))?;
        Ok(())
    }

    /// Write a blob unless the store has it; either way give it `blob.labels`.
    async fn put_blob(&self, source: &Source, blob: &Blob) -> anyhow::Result<()> {
        let exists = match self
            .content()
            .info(self.req(InfoRequest {
                digest: blob.desc.digest.clone(),
            }))
            .await
        {
            Ok(_) => true,
            Err(s) if is(&s, Code::NotFound) => false,
            Err(s) => return Err(s).context("content info"),
        };
        if exists {
            return self
                .add_labels(&blob.desc.digest, blob.labels.clone())
                .await;
        }
        for attempt in 0.. {
            match self.write_blob(source, blob).await {
                Ok(()) => return Ok(()),
                // Another writer holds the same ingest ref: wait for it.
                Err(e)
                    if attempt < 20
                        && e.downcast_ref::<tonic::Status>()
                            .is_some_and(|s| s.code() == Code::Unavailable) =>
                {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(e),
            }
        }
        unreachable!()
    }

    async fn write_blob(&self, source: &Source, blob: &Blob) -> anyhow::Result<()> {
        let (tx, rx) = tokio::sync::mpsc::channel::<WriteContentRequest>(4);
        let reference = format!(
            "keelson-import-{}",
            digest::hex(&blob.desc.digest).unwrap_or_default()
        );
        let total = blob.desc.size;
        let expected = blob.desc.digest.clone();
        let labels: HashMap<String, String> = blob.labels.clone().into_iter().collect();
        let (reader, size) = match &blob.origin {
            Origin::File(name) => source.open_file(name)?,
            Origin::Bytes(b) => (
                Box::new(std::io::Cursor::new(b.clone())) as Box<dyn Read + Send>,
                b.len() as u64,
            ),
        };
        if size as i64 != total {
            bail!("blob {expected} is {size} bytes, its descriptor says {total}");
        }
        // Chunks are read off the async threads and fed to the stream.
        let producer = tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            let mut reader = reader;
            let mut offset = 0i64;
            let mut buf = vec![0u8; CHUNK];
            loop {
                let n = reader.read(&mut buf)?;
                let last = n == 0;
                let msg = WriteContentRequest {
                    action: if last {
                        WriteAction::Commit
                    } else {
                        WriteAction::Write
                    } as i32,
                    r#ref: reference.clone(),
                    total,
                    expected: expected.clone(),
                    offset,
                    data: buf[..n].to_vec(),
                    labels: if last { labels.clone() } else { HashMap::new() },
                };
                offset += n as i64;
                if tx.blocking_send(msg).is_err() || last {
                    return Ok(());
                }
            }
        });
        let stream =
            futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
        let outcome = async {
            let mut responses = self.content().write(self.req(stream)).await?.into_inner();
            while responses.message().await?.is_some() {}
            Ok::<_, tonic::Status>(())
        }
        .await;
        producer.await??;
        match outcome {
            Ok(()) => Ok(()),
            // Written meanwhile by someone else: what we wanted.
            Err(s) if is(&s, Code::AlreadyExists) => Ok(()),
            Err(s) => Err(s.into()),
        }
    }

    /// Apply one layer on top of `parent` and commit the result as `chain_id`, as
    /// containerd's `rootfs.ApplyLayer` does.
    async fn unpack_layer(
        &self,
        layer: &Descriptor,
        diff_id: &str,
        parent: &str,
        chain_id: &str,
    ) -> anyhow::Result<()> {
        let mut sn = self.snapshots();
        let key = format!(
            "extract-{}-{} {chain_id}",
            chrono::Utc::now().timestamp_subsec_nanos(),
            std::process::id()
        );
        let mounts = sn
            .prepare(self.req(snapshots::PrepareSnapshotRequest {
                snapshotter: self.snapshotter.clone(),
                key: key.clone(),
                parent: parent.to_string(),
                labels: HashMap::new(),
            }))
            .await
            .with_context(|| format!("preparing snapshot {key:?}"))?
            .into_inner()
            .mounts;
        let outcome = async {
            let applied = DiffClient::new(self.channel.clone())
                .apply(self.req(ApplyRequest {
                    diff: Some(layer.clone()),
                    mounts,
                    payloads: HashMap::new(),
                    sync_fs: false,
                }))
                .await
                .context("applying the layer")?
                .into_inner()
                .applied
                .unwrap_or_default();
            if applied.digest != diff_id {
                bail!(
                    "layer unpacked to {}, but the image config says {diff_id}",
                    applied.digest
                );
            }
            match sn
                .commit(self.req(snapshots::CommitSnapshotRequest {
                    snapshotter: self.snapshotter.clone(),
                    name: chain_id.to_string(),
                    key: key.clone(),
                    labels: HashMap::new(),
                }))
                .await
            {
                Ok(_) => Ok(false),
                // Unpacked meanwhile by someone else.
                Err(s) if is(&s, Code::AlreadyExists) => Ok(true),
                Err(s) => Err(s).context("committing the snapshot"),
            }
        }
        .await;
        if !matches!(outcome, Ok(false)) {
            let _ = sn
                .remove(self.req(snapshots::RemoveSnapshotRequest {
                    snapshotter: self.snapshotter.clone(),
                    key: key.clone(),
                }))
                .await;
        }
        outcome.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_normalised_as_docker_does() {
        assert_eq!(
            normalise_reference("busybox").as_deref(),
            Some("docker.io/library/busybox:latest")
        );
        assert_eq!(
            normalise_reference("user/app:2").as_deref(),
            Some("docker.io/user/app:2")
        );
        assert_eq!(
            normalise_reference("keelson.local/pause:1").as_deref(),
            Some("keelson.local/pause:1")
        );
        assert_eq!(
            normalise_reference("localhost:5000/x").as_deref(),
            Some("localhost:5000/x:latest")
        );
        assert_eq!(normalise_reference(""), None);
        assert_eq!(normalise_reference("a b"), None);
    }

    fn temp_file(bytes: &[u8]) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), bytes).unwrap();
        f
    }

    #[test]
    fn plans_the_built_images() {
        let img = crate::image::build_pause().unwrap();
        let f = temp_file(&img.archive().unwrap());
        let plans = plan(&Source::open(f.path()).unwrap()).unwrap();
        assert_eq!(plans.len(), 1);
        let p = &plans[0];
        assert_eq!(p.names, vec![crate::PAUSE_IMAGE.to_string()]);
        assert_eq!(p.target.digest, img.manifest_digest);
        assert_eq!(p.config_digest, img.config_digest);
        assert_eq!(
            p.chain_id, img.layer_digest,
            "one layer: chain ID = diff ID"
        );
        let manifest = p
            .blobs
            .iter()
            .find(|b| b.desc.digest == img.manifest_digest)
            .unwrap();
        assert_eq!(
            manifest.labels["containerd.io/gc.ref.content.config"],
            img.config_digest
        );
        assert_eq!(
            manifest.labels["containerd.io/gc.ref.content.l.0"],
            img.layer_digest
        );
    }

    #[test]
    fn plans_a_layout_directory() {
        let img = crate::image::build_busybox().unwrap();
        let dir = tempfile::tempdir().unwrap();
        img.write_layout(dir.path()).unwrap();
        let plans = plan(&Source::open(dir.path()).unwrap()).unwrap();
        assert_eq!(plans[0].names, vec![crate::BUSYBOX_IMAGE.to_string()]);
    }

    #[test]
    fn plans_a_docker_archive() {
        let layer = crate::image::rootfs_layer(Path::new(crate::image::HOST_BUSYBOX)).unwrap();
        let diff = digest::of(&layer);
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]},
            "rootfs": {"type": "layers", "diff_ids": [diff]},
        }))
        .unwrap();
        let manifest = serde_json::to_vec(&serde_json::json!([{
            "Config": "cfg.json", "RepoTags": ["busybox:test"], "Layers": ["l0/layer.tar"],
        }]))
        .unwrap();
        let mut w = crate::tar::Writer::new(Vec::new());
        use crate::tar::Entry::File;
        w.append(File {
            path: "manifest.json",
            mode: 0o644,
            data: &manifest,
        })
        .unwrap();
        w.append(File {
            path: "cfg.json",
            mode: 0o644,
            data: &config,
        })
        .unwrap();
        w.append(File {
            path: "l0/layer.tar",
            mode: 0o644,
            data: &layer,
        })
        .unwrap();
        let f = temp_file(&w.finish().unwrap());
        let plans = plan(&Source::open(f.path()).unwrap()).unwrap();
        assert_eq!(
            plans[0].names,
            vec!["docker.io/library/busybox:test".to_string()]
        );
        assert_eq!(plans[0].target.media_type, MEDIA_DOCKER_MANIFEST);
        assert_eq!(plans[0].layers[0].0.digest, diff);
        assert_eq!(plans[0].chain_id, diff);
    }

    #[test]
    fn bad_archives_are_errors_not_panics() {
        for bytes in [&b""[..], b"not a tar at all", &[0u8; 1024]] {
            let f = temp_file(bytes);
            let planned = Source::open(f.path()).and_then(|s| plan(&s));
            assert!(planned.is_err(), "{bytes:?}");
        }
        // An index that points at blobs the archive does not have.
        let mut w = crate::tar::Writer::new(Vec::new());
        let index = br#"{"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":3,"annotations":{"io.containerd.image.name":"x.io/a:1"}}]}"#;
        w.append(crate::tar::Entry::File {
            path: "index.json",
            mode: 0o644,
            data: index,
        })
        .unwrap();
        let f = temp_file(&w.finish().unwrap());
        assert!(plan(&Source::open(f.path()).unwrap()).is_err());
    }
}
