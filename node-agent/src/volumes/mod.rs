//! A pod's volumes on the node's disk, laid out as the kubelet lays them out:
//! `<root-dir>/pods/<uid>/volumes/<plugin>/<volume>` with the kubelet's plugin names
//! (`kubernetes.io~empty-dir`, `~configmap`, `~secret`, `~downward-api`,
//! `~projected`); hostPath and claims on hostPath/local PersistentVolumes are used in
//! place. [`VolumeManager::setup`] makes them, [`VolumeManager::refresh`] follows
//! their sources, [`PodVolumes::mounts`] turns a container's `volumeMounts` into CRI
//! mounts, and [`VolumeManager::teardown`] removes them.

pub mod atomic_writer;
pub mod host_path;
pub mod ownership;
pub mod projection;
pub mod tmpfs;

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use k8s_cri::v1::{Mount, MountPropagation};
use k8s_openapi::api::core::v1::{Container, Pod, Volume};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::env::expand_with;
use crate::sources::PodSources;
use keelson_apimachinery::quantity::Quantity as ParsedQuantity;
use projection::{PayloadContext, TokenCache};

/// Why volumes could not be set up or mounted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VolumeError {
    /// A volume could not be set up: the message of the `FailedMount` Event.
    #[error("MountVolume.SetUp failed for volume \"{volume}\" : {message}")]
    SetUp { volume: String, message: String },
    /// A container's `volumeMounts` cannot be honoured (`CreateContainerConfigError`).
    #[error("{0}")]
    Mount(String),
    /// Removing a pod's volumes failed.
    #[error("{0}")]
    Teardown(String),
}

fn setup_err(volume: &str, message: impl Into<String>) -> VolumeError {
    VolumeError::SetUp {
        volume: volume.to_string(),
        message: message.into(),
    }
}

/// One set-up volume: where it is on the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountedVolume {
    pub host_path: PathBuf,
    /// Mounted read-only whatever the volumeMount says (configMap, secret,
    /// downwardAPI, projected, and claims with `readOnly`).
    pub read_only: bool,
}

/// A pod's volumes by name, ready to be mounted into its containers.
#[derive(Debug, Clone, Default)]
pub struct PodVolumes {
    pub volumes: BTreeMap<String, MountedVolume>,
}

/// Where the kubelet keeps pods' volumes, and the state that outlives one setup (the
/// projected tokens).
pub struct VolumeManager {
    pods_dir: PathBuf,
    node_allocatable: BTreeMap<String, Quantity>,
    tokens: TokenCache,
}

/// The kubelet's directory name of a volume plugin, for the kinds kept under the pod.
fn plugin_dir(vol: &Volume) -> Option<&'static str> {
    if vol.empty_dir.is_some() {
        Some("kubernetes.io~empty-dir")
    } else if vol.config_map.is_some() {
        Some("kubernetes.io~configmap")
    } else if vol.secret.is_some() {
        Some("kubernetes.io~secret")
    } else if vol.downward_api.is_some() {
        Some("kubernetes.io~downward-api")
    } else if vol.projected.is_some() {
        Some("kubernetes.io~projected")
    } else {
        None
    }
}

impl VolumeManager {
    /// `pods_dir` is `<root-dir>/pods`.
    pub fn new(pods_dir: impl Into<PathBuf>) -> Self {
        VolumeManager {
            pods_dir: pods_dir.into(),
            node_allocatable: BTreeMap::new(),
            tokens: TokenCache::default(),
        }
    }

    /// The node's allocatable resources, which downwardAPI `resourceFieldRef` files
    /// read for limits a container does not set.
    pub fn with_node_allocatable(mut self, allocatable: BTreeMap<String, Quantity>) -> Self {
        self.node_allocatable = allocatable;
        self
    }

    /// `<pods_dir>/<uid>/volumes`.
    pub fn pod_volumes_dir(&self, pod_uid: &str) -> PathBuf {
        self.pods_dir.join(pod_uid).join("volumes")
    }

    fn volume_dir(&self, pod_uid: &str, plugin: &str, name: &str) -> PathBuf {
        self.pod_volumes_dir(pod_uid).join(plugin).join(name)
    }

    /// Make every volume of the pod (idempotent: a pod worker may call it again after a
    /// restart). The first volume that fails stops the setup with its FailedMount
    /// message.
    pub async fn setup(&self, pod: &Pod, src: &dyn PodSources) -> Result<PodVolumes, VolumeError> {
        let uid = pod_uid(pod)?;
        let spec = pod.spec.as_ref();
        let fs_group = fs_group(pod);
        let mut out = PodVolumes::default();
        for vol in spec.and_then(|s| s.volumes.as_deref()).unwrap_or(&[]) {
            let mounted = self.setup_one(pod, &uid, vol, fs_group, src).await?;
            out.volumes.insert(vol.name.clone(), mounted);
        }
        Ok(out)
    }

    async fn setup_one(
        &self,
        pod: &Pod,
        uid: &str,
        vol: &Volume,
        fs_group: Option<u32>,
        src: &dyn PodSources,
    ) -> Result<MountedVolume, VolumeError> {
        let name = vol.name.as_str();
        let io = |e: io::Error| setup_err(name, e.to_string());
        if let Some(hp) = &vol.host_path {
            host_path::check_type(&hp.path, hp.type_.as_deref().unwrap_or(""))
                .map_err(|m| setup_err(name, m))?;
            return Ok(MountedVolume {
                host_path: PathBuf::from(&hp.path),
                read_only: false,
            });
        }
        if let Some(claim) = &vol.persistent_volume_claim {
            let path = host_path::claim_path(pod, &claim.claim_name, src)
                .await
                .map_err(|m| setup_err(name, m))?;
            return Ok(MountedVolume {
                host_path: path,
                read_only: claim.read_only.unwrap_or(false),
            });
        }
        let Some(plugin) = plugin_dir(vol) else {
            return Err(setup_err(name, "volume type not supported by this node"));
        };
        let dir = self.volume_dir(uid, plugin, name);
        make_dir(&dir, 0o777).map_err(io)?;
        if let Some(ed) = &vol.empty_dir {
            if ed.medium.as_deref() == Some("Memory") {
                let size = match &ed.size_limit {
                    Some(q) => Some(
                        ParsedQuantity::parse(&q.0)
                            .map_err(|e| setup_err(name, e.to_string()))?
                            .value()
                            .max(0) as u128,
                    ),
                    None => None,
                };
                tmpfs::mount_tmpfs(&dir, size).map_err(io)?;
            }
            if let Some(gid) = fs_group {
                ownership::set_volume_ownership(&dir, gid, false).map_err(io)?;
            }
            return Ok(MountedVolume {
                host_path: dir,
                read_only: false,
            });
        }
        // Secrets and tokens stay in memory, as the kubelet keeps them.
        if vol.secret.is_some() || vol.projected.is_some() {
            tmpfs::mount_tmpfs(&dir, None).map_err(io)?;
        }
        self.project(pod, vol, &dir, fs_group, src).await?;
        Ok(MountedVolume {
            host_path: dir,
            read_only: true,
        })
    }

    /// Write the current contents of a configMap/secret/downwardAPI/projected volume.
    async fn project(
        &self,
        pod: &Pod,
        vol: &Volume,
        dir: &Path,
        fs_group: Option<u32>,
        src: &dyn PodSources,
    ) -> Result<bool, VolumeError> {
        let cx = PayloadContext {
            pod,
            src,
            allocatable: &self.node_allocatable,
            tokens: &self.tokens,
            has_fs_group: fs_group.is_some(),
        };
        let payload = match projection::payload(vol, &cx).await {
            Some(p) => p.map_err(|m| setup_err(&vol.name, m))?,
            None => return Ok(false),
        };
        atomic_writer::write(dir, &payload, fs_group)
            .map_err(|e| setup_err(&vol.name, e.to_string()))
    }

    /// Re-project the configMap, secret, downwardAPI and projected volumes that are set
    /// up, swapping in a new version where a source changed or a token is due for
    /// renewal. Every volume is tried; the errors are joined.
    pub async fn refresh(&self, pod: &Pod, src: &dyn PodSources) -> Result<(), VolumeError> {
        let uid = pod_uid(pod)?;
        let fs_group = fs_group(pod);
        let mut errs = Vec::new();
        for vol in pod
            .spec
            .as_ref()
            .and_then(|s| s.volumes.as_deref())
            .unwrap_or(&[])
        {
            let Some(plugin) = plugin_dir(vol).filter(|p| *p != "kubernetes.io~empty-dir") else {
                continue;
            };
            let dir = self.volume_dir(&uid, plugin, &vol.name);
            if !dir.join("..data").exists() {
                continue;
            }
            if let Err(e) = self.project(pod, vol, &dir, fs_group, src).await {
                errs.push(e.to_string());
            }
        }
        match errs.len() {
            0 => Ok(()),
            1 => Err(VolumeError::Mount(errs.remove(0))),
            _ => Err(VolumeError::Mount(format!("[{}]", errs.join(", ")))),
        }
    }

    /// Unmount the pod's tmpfs volumes and remove its volume directories. Nothing
    /// outside them is touched: hostPath volumes are never under them, and removal
    /// does not follow symlinks.
    pub fn teardown(&self, pod_uid: &str) -> Result<(), VolumeError> {
        if pod_uid.is_empty() || pod_uid.contains('/') || pod_uid.starts_with('.') {
            return Err(VolumeError::Teardown(format!(
                "invalid pod uid {pod_uid:?}"
            )));
        }
        let dir = self.pod_volumes_dir(pod_uid);
        let err =
            |e: io::Error| VolumeError::Teardown(format!("tearing down {}: {e}", dir.display()));
        for m in tmpfs::mounts_under(&dir).map_err(err)? {
            tmpfs::unmount(&m).map_err(err)?;
        }
        // Never delete through a mount that is still there.
        let left = tmpfs::mounts_under(&dir).map_err(err)?;
        if let Some(m) = left.first() {
            return Err(VolumeError::Teardown(format!(
                "tearing down {}: {} is still mounted",
                dir.display(),
                m.display()
            )));
        }
        match fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(err(e)),
        }
        self.tokens.forget_pod(pod_uid);
        Ok(())
    }
}

fn pod_uid(pod: &Pod) -> Result<String, VolumeError> {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    if uid.is_empty() || uid.contains('/') || uid.starts_with('.') {
        return Err(VolumeError::Mount(format!(
            "pod has an unusable uid {uid:?}"
        )));
    }
    Ok(uid)
}

fn fs_group(pod: &Pod) -> Option<u32> {
    pod.spec
        .as_ref()
        .and_then(|s| s.security_context.as_ref())
        .and_then(|sc| sc.fs_group)
        .and_then(|g| u32::try_from(g).ok())
}

/// `mkdir -p` and set the mode of the last directory (umask aside).
fn make_dir(dir: &Path, mode: u32) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    if !tmpfs::is_mount_point(dir)? {
        fs::set_permissions(dir, fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

impl PodVolumes {
    /// The CRI mounts of `container`'s `volumeMounts`. `env` is the container's
    /// environment, for `subPathExpr`. A missing subPath is created inside the volume;
    /// one that would leave the volume (`..`, an absolute path, a symlink out) is
    /// refused.
    pub fn mounts(
        &self,
        container: &Container,
        env: &HashMap<String, String>,
    ) -> Result<Vec<Mount>, VolumeError> {
        let privileged = container
            .security_context
            .as_ref()
            .and_then(|s| s.privileged)
            .unwrap_or(false);
        let mut out = Vec::new();
        for vm in container.volume_mounts.iter().flatten() {
            let vol = self.volumes.get(&vm.name).ok_or_else(|| {
                VolumeError::Mount(format!(
                    "cannot find volume \"{}\" to mount into container \"{}\"",
                    vm.name, container.name
                ))
            })?;
            let sub = match vm.sub_path_expr.as_deref().filter(|s| !s.is_empty()) {
                Some(expr) => expand_sub_path(expr, env)?,
                None => vm.sub_path.clone().unwrap_or_default(),
            };
            let host_path = if sub.is_empty() {
                vol.host_path.clone()
            } else {
                sub_path(&vol.host_path, &sub).map_err(|e| {
                    VolumeError::Mount(match e {
                        SubPathError::Invalid(m) => m,
                        SubPathError::Io(e) => format!(
                            "failed to create subPath directory for volumeMount \"{}\" of container \"{}\": {e}",
                            vm.name, container.name
                        ),
                    })
                })?
            };
            let propagation = match vm.mount_propagation.as_deref().unwrap_or("None") {
                "None" | "" => MountPropagation::PropagationPrivate,
                "HostToContainer" => MountPropagation::PropagationHostToContainer,
                "Bidirectional" if privileged => MountPropagation::PropagationBidirectional,
                "Bidirectional" => return Err(VolumeError::Mount(
                    "Bidirectional mount propagation is available only to privileged containers"
                        .into(),
                )),
                other => {
                    return Err(VolumeError::Mount(format!(
                        "invalid mount propagation {other:?}"
                    )))
                }
            };
            let container_path = if vm.mount_path.starts_with('/') {
                vm.mount_path.clone()
            } else {
                format!("/{}", vm.mount_path)
            };
            out.push(Mount {
                container_path,
                host_path: host_path.to_string_lossy().into_owned(),
                readonly: vm.read_only.unwrap_or(false) || vol.read_only,
                selinux_relabel: false,
                propagation: propagation as i32,
                ..Default::default()
            });
        }
        Ok(out)
    }
}

/// `subPathExpr` with `$(VAR)` from the environment; a name without a value is an
/// error, as the kubelet has it.
fn expand_sub_path(expr: &str, env: &HashMap<String, String>) -> Result<String, VolumeError> {
    let missing = std::cell::RefCell::new(std::collections::BTreeSet::new());
    let out = expand_with(expr, |name| match env.get(name).filter(|v| !v.is_empty()) {
        Some(v) => Some(v.clone()),
        None => {
            missing.borrow_mut().insert(name.to_string());
            Some(String::new())
        }
    });
    let missing = missing.into_inner();
    if !missing.is_empty() {
        return Err(VolumeError::Mount(format!(
            "missing value for {}",
            missing.into_iter().collect::<Vec<_>>().join(", ")
        )));
    }
    Ok(out)
}

enum SubPathError {
    Invalid(String),
    Io(io::Error),
}

/// The node path of `sub` inside `root`, created (as directories, with the root's
/// mode) when missing. Each existing element is resolved and must stay inside the
/// volume, so a symlink in a writable volume cannot point a mount elsewhere.
fn sub_path(root: &Path, sub: &str) -> Result<PathBuf, SubPathError> {
    if Path::new(sub).is_absolute() {
        return Err(SubPathError::Invalid(format!(
            "error SubPath `{sub}` must not be an absolute path"
        )));
    }
    if Path::new(sub)
        .components()
        .any(|c| c == Component::ParentDir)
    {
        return Err(SubPathError::Invalid(format!(
            "unable to provision SubPath `{sub}`: must not contain '..'"
        )));
    }
    let root = root.canonicalize().map_err(SubPathError::Io)?;
    let root_mode = fs::metadata(&root)
        .map_err(SubPathError::Io)?
        .permissions()
        .mode()
        & 0o7777;
    let escape = || {
        SubPathError::Invalid(format!(
            "subpath \"{sub}\" not within volume path \"{}\"",
            root.display()
        ))
    };
    let mut cur = root.clone();
    for c in Path::new(sub).components() {
        let Component::Normal(part) = c else { continue };
        let next = cur.join(part);
        if host_path::lexists(&next).map_err(SubPathError::Io)? {
            let resolved = next.canonicalize().map_err(SubPathError::Io)?;
            if !resolved.starts_with(&root) {
                return Err(escape());
            }
            cur = resolved;
        } else {
            fs::create_dir(&next).map_err(SubPathError::Io)?;
            fs::set_permissions(&next, fs::Permissions::from_mode(root_mode))
                .map_err(SubPathError::Io)?;
            cur = next;
        }
    }
    Ok(cur)
}

#[cfg(test)]
mod tests;
