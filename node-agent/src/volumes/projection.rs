//! The contents of configMap, secret, downwardAPI and projected volumes: what files
//! the kubelet's MakePayload / CollectData would write, with Kubernetes' errors. And
//! the projected service-account tokens, kept per pod and renewed past 80% of their
//! lifetime (or after 24 hours), as the kubelet's token manager does.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::authentication::v1::TokenRequestSpec;
use k8s_openapi::api::core::v1::{
    ConfigMap, DownwardAPIVolumeFile, KeyToPath, Pod, Secret, ServiceAccountTokenProjection,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::atomic_writer::{FileProjection, Payload};
use crate::env::{resource_field_value, volume_field_ref_value};
use crate::sources::PodSources;

/// Default file mode of these volumes (`0644`).
pub const DEFAULT_MODE: i32 = 0o644;

/// The token of one projected file, and when to renew it.
#[derive(Debug, Clone)]
struct CachedToken {
    token: String,
    renew_at: SystemTime,
}

/// Tokens by (pod uid, volume, path).
#[derive(Default)]
pub struct TokenCache {
    tokens: Mutex<HashMap<(String, String, String), CachedToken>>,
}

impl TokenCache {
    /// Forget a pod's tokens (on teardown).
    pub fn forget_pod(&self, uid: &str) {
        self.tokens
            .lock()
            .expect("not poisoned")
            .retain(|k, _| k.0 != uid);
    }

    /// The token for this file: the cached one while it is fresh, else a new one.
    async fn token(
        &self,
        pod: &Pod,
        volume: &str,
        tp: &ServiceAccountTokenProjection,
        src: &dyn PodSources,
    ) -> Result<String, String> {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let key = (uid.clone(), volume.to_string(), tp.path.clone());
        let now = SystemTime::now();
        if let Some(t) = self.tokens.lock().expect("not poisoned").get(&key) {
            if now < t.renew_at {
                return Ok(t.token.clone());
            }
        }
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let sa = pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.as_deref())
            .filter(|s| !s.is_empty())
            .unwrap_or("default");
        let name = pod.metadata.name.as_deref().unwrap_or("");
        let spec = TokenRequestSpec {
            audiences: tp
                .audience
                .iter()
                .filter(|a| !a.is_empty())
                .cloned()
                .collect(),
            expiration_seconds: tp.expiration_seconds,
            bound_object_ref: None,
        };
        let status = src
            .service_account_token(ns, sa, spec, (name, &uid))
            .await
            .map_err(|e| format!("failed to fetch token: {e:#}"))?;
        let expires = SystemTime::UNIX_EPOCH
            + Duration::from_secs(status.expiration_timestamp.0.as_second().max(0) as u64);
        let lifetime = expires.duration_since(now).unwrap_or_default();
        let renew_at = now + (lifetime * 4 / 5).min(Duration::from_secs(24 * 3600));
        self.tokens.lock().expect("not poisoned").insert(
            key,
            CachedToken {
                token: status.token.clone(),
                renew_at,
            },
        );
        Ok(status.token)
    }
}

fn mode(m: Option<i32>, default: i32) -> u32 {
    m.unwrap_or(default) as u32
}

/// Errors of several sources as Kubernetes aggregates them.
fn aggregate(errs: Vec<String>) -> Result<(), String> {
    match errs.len() {
        0 => Ok(()),
        1 => Err(errs.into_iter().next().expect("one")),
        _ => Err(format!("[{}]", errs.join(", "))),
    }
}

/// The files of a ConfigMap: every key (`data` and `binaryData`), or `items` only.
pub fn config_map_payload(
    cm: &ConfigMap,
    items: Option<&[KeyToPath]>,
    default_mode: i32,
    optional: bool,
) -> Result<Payload, String> {
    let mut out = Payload::new();
    let data = cm.data.as_ref();
    let binary = cm.binary_data.as_ref();
    match items.filter(|i| !i.is_empty()) {
        None => {
            for (k, v) in data.into_iter().flatten() {
                out.insert(k.clone(), file(v.as_bytes().to_vec(), default_mode as u32));
            }
            for (k, v) in binary.into_iter().flatten() {
                out.insert(k.clone(), file(v.0.clone(), default_mode as u32));
            }
        }
        Some(items) => {
            for ktp in items {
                let bytes = match (
                    data.and_then(|d| d.get(&ktp.key)),
                    binary.and_then(|b| b.get(&ktp.key)),
                ) {
                    (Some(s), _) => s.as_bytes().to_vec(),
                    (None, Some(b)) => b.0.clone(),
                    (None, None) if optional => continue,
                    (None, None) => {
                        return Err(format!(
                            "configmap references non-existent config key: {}",
                            ktp.key
                        ))
                    }
                };
                out.insert(ktp.path.clone(), file(bytes, mode(ktp.mode, default_mode)));
            }
        }
    }
    Ok(out)
}

/// The files of a Secret: every key, or `items` only.
pub fn secret_payload(
    secret: &Secret,
    items: Option<&[KeyToPath]>,
    default_mode: i32,
    optional: bool,
) -> Result<Payload, String> {
    let mut out = Payload::new();
    let data = secret.data.as_ref();
    match items.filter(|i| !i.is_empty()) {
        None => {
            for (k, v) in data.into_iter().flatten() {
                out.insert(k.clone(), file(v.0.clone(), default_mode as u32));
            }
        }
        Some(items) => {
            for ktp in items {
                match data.and_then(|d| d.get(&ktp.key)) {
                    Some(v) => {
                        out.insert(
                            ktp.path.clone(),
                            file(v.0.clone(), mode(ktp.mode, default_mode)),
                        );
                    }
                    None if optional => continue,
                    None => return Err(format!("references non-existent secret key: {}", ktp.key)),
                }
            }
        }
    }
    Ok(out)
}

/// The files of a downwardAPI volume (or projection).
pub fn downward_api_payload(
    items: &[DownwardAPIVolumeFile],
    pod: &Pod,
    allocatable: &BTreeMap<String, Quantity>,
    default_mode: i32,
) -> Result<Payload, String> {
    let mut out = Payload::new();
    let mut errs = Vec::new();
    for item in items {
        let value = if let Some(f) = &item.field_ref {
            volume_field_ref_value(f, pod)
        } else if let Some(r) = &item.resource_field_ref {
            let name = r.container_name.as_deref().unwrap_or("");
            let spec = pod.spec.as_ref();
            let container = spec
                .into_iter()
                .flat_map(|s| {
                    s.containers
                        .iter()
                        .chain(s.init_containers.iter().flatten())
                })
                .find(|c| c.name == name);
            match container {
                Some(c) => resource_field_value(r, c, allocatable),
                None => Err(format!("container {name} not found")),
            }
        } else {
            Ok(String::new())
        };
        match value {
            Ok(v) => {
                out.insert(
                    item.path.clone(),
                    file(v.into_bytes(), mode(item.mode, default_mode)),
                );
            }
            Err(e) => errs.push(e),
        }
    }
    aggregate(errs)?;
    Ok(out)
}

fn file(data: Vec<u8>, mode: u32) -> FileProjection {
    FileProjection { data, mode }
}

/// A ConfigMap for a volume: `Ok(None)` when missing and optional.
async fn get_config_map(
    src: &dyn PodSources,
    ns: &str,
    name: &str,
    optional: bool,
) -> Result<Option<ConfigMap>, String> {
    match src.config_map(ns, name).await {
        Ok(Some(cm)) => Ok(Some(cm)),
        Ok(None) if optional => Ok(None),
        Ok(None) => Err(format!("configmap \"{name}\" not found")),
        Err(e) => Err(format!("couldn't get configMap {ns}/{name}: {e:#}")),
    }
}

async fn get_secret(
    src: &dyn PodSources,
    ns: &str,
    name: &str,
    optional: bool,
) -> Result<Option<Secret>, String> {
    match src.secret(ns, name).await {
        Ok(Some(s)) => Ok(Some(s)),
        Ok(None) if optional => Ok(None),
        Ok(None) => Err(format!("secret \"{name}\" not found")),
        Err(e) => Err(format!("couldn't get secret {ns}/{name}: {e:#}")),
    }
}

/// Everything a payload is computed from besides its volume.
pub struct PayloadContext<'a> {
    pub pod: &'a Pod,
    pub src: &'a dyn PodSources,
    pub allocatable: &'a BTreeMap<String, Quantity>,
    pub tokens: &'a TokenCache,
    /// With an fsGroup (or fsUser) tokens are written 0600 and made 0640 by the
    /// ownership pass, as the kubelet does.
    pub has_fs_group: bool,
}

/// The payload of a configMap, secret, downwardAPI or projected volume; `None` for
/// other kinds.
pub async fn payload(
    vol: &k8s_openapi::api::core::v1::Volume,
    cx: &PayloadContext<'_>,
) -> Option<Result<Payload, String>> {
    let ns = cx.pod.metadata.namespace.as_deref().unwrap_or("default");
    if let Some(c) = &vol.config_map {
        let optional = c.optional.unwrap_or(false);
        let dm = c.default_mode.unwrap_or(DEFAULT_MODE);
        return Some(match get_config_map(cx.src, ns, &c.name, optional).await {
            Ok(Some(cm)) => config_map_payload(&cm, c.items.as_deref(), dm, optional),
            Ok(None) => Ok(Payload::new()),
            Err(e) => Err(e),
        });
    }
    if let Some(s) = &vol.secret {
        let optional = s.optional.unwrap_or(false);
        let dm = s.default_mode.unwrap_or(DEFAULT_MODE);
        let name = s.secret_name.as_deref().unwrap_or("");
        return Some(match get_secret(cx.src, ns, name, optional).await {
            Ok(Some(sec)) => secret_payload(&sec, s.items.as_deref(), dm, optional),
            Ok(None) => Ok(Payload::new()),
            Err(e) => Err(e),
        });
    }
    if let Some(d) = &vol.downward_api {
        let dm = d.default_mode.unwrap_or(DEFAULT_MODE);
        return Some(downward_api_payload(
            d.items.as_deref().unwrap_or(&[]),
            cx.pod,
            cx.allocatable,
            dm,
        ));
    }
    let p = vol.projected.as_ref()?;
    let dm = p.default_mode.unwrap_or(DEFAULT_MODE);
    let mut out = Payload::new();
    let mut errs = Vec::new();
    for source in p.sources.iter().flatten() {
        let part = if let Some(c) = &source.config_map {
            let optional = c.optional.unwrap_or(false);
            match get_config_map(cx.src, ns, &c.name, optional).await {
                Ok(Some(cm)) => config_map_payload(&cm, c.items.as_deref(), dm, optional),
                Ok(None) => Ok(Payload::new()),
                Err(e) => Err(e),
            }
        } else if let Some(s) = &source.secret {
            let optional = s.optional.unwrap_or(false);
            match get_secret(cx.src, ns, &s.name, optional).await {
                Ok(Some(sec)) => secret_payload(&sec, s.items.as_deref(), dm, optional),
                Ok(None) => Ok(Payload::new()),
                Err(e) => Err(e),
            }
        } else if let Some(d) = &source.downward_api {
            downward_api_payload(
                d.items.as_deref().unwrap_or(&[]),
                cx.pod,
                cx.allocatable,
                dm,
            )
        } else if let Some(tp) = &source.service_account_token {
            let m = if cx.has_fs_group { 0o600 } else { dm as u32 };
            cx.tokens
                .token(cx.pod, &vol.name, tp, cx.src)
                .await
                .map(|t| Payload::from([(tp.path.clone(), file(t.into_bytes(), m))]))
        } else {
            // clusterTrustBundle and podCertificate projections are not served here.
            Ok(Payload::new())
        };
        match part {
            Ok(p) => out.extend(p),
            Err(e) => errs.push(e),
        }
    }
    if let Err(e) = aggregate(errs) {
        return Some(Err(e));
    }
    Some(Ok(out))
}
