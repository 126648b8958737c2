//! The Node object: registration, status and the Lease heartbeat, as the kubelet's
//! `nodestatus` setters and node lease controller make them.
//!
//! Capacity comes from the machine (CPUs, `MemTotal`, the root directory's file
//! system, `--max-pods`); allocatable is capacity minus `--system-reserved` and
//! `--kube-reserved`. Status is computed every `--node-status-update-frequency` and
//! written when it changed, or at least every `--node-status-report-frequency`; the
//! Lease in `kube-node-lease` is renewed every `--node-lease-renew-interval`.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Instant;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    ContainerImage, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus,
    NodeSystemInfo, Taint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference, Time};
use keelson_apimachinery::quantity::Quantity as Parsed;
use keelson_client::{Api, Client, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::agent::Allocatable;
use crate::cri::Runtime;
use crate::options::NodeAgentOptions;
use crate::pods::status::now;

/// `status.nodeInfo.kubeletVersion`.
pub const KUBELET_VERSION: &str = concat!("v1.33.0-keelson-", env!("CARGO_PKG_VERSION"));
pub const LEASE_NAMESPACE: &str = "kube-node-lease";
const FIELD_MANAGER: &str = "keelson-node-agent";

/// What the machine has.
#[derive(Debug, Clone)]
pub struct Machine {
    pub cpus: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
    pub kernel: String,
    pub os_image: String,
    pub machine_id: String,
    pub boot_id: String,
}

fn read_trim(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

impl Machine {
    pub fn read(root_dir: &std::path::Path) -> Machine {
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get() as i64)
            .unwrap_or(1);
        let memory = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find(|l| l.starts_with("MemTotal:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|kb| kb.parse::<i64>().ok())
            })
            .unwrap_or(0)
            * 1024;
        let ephemeral_storage = fs_capacity(root_dir).unwrap_or(0);
        let os_image = std::fs::read_to_string("/etc/os-release")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                    .map(|v| v.trim_matches('"').to_string())
            })
            .unwrap_or_else(|| "Linux".into());
        Machine {
            cpus,
            memory,
            ephemeral_storage,
            kernel: read_trim("/proc/sys/kernel/osrelease"),
            os_image,
            machine_id: read_trim("/etc/machine-id"),
            boot_id: read_trim("/proc/sys/kernel/random/boot_id"),
        }
    }
}

/// Total bytes of the file system holding `dir` (its nearest existing ancestor).
pub fn fs_capacity(dir: &std::path::Path) -> Option<i64> {
    let mut p = dir.to_path_buf();
    while !p.exists() {
        p = p.parent()?.to_path_buf();
    }
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some((st.f_blocks as i64) * (st.f_frsize as i64))
}

fn reserved(opts: &NodeAgentOptions, resource: &str) -> i128 {
    opts.system_reserved
        .iter()
        .chain(&opts.kube_reserved)
        .filter(|(k, _)| k == resource)
        .filter_map(|(_, v)| Parsed::parse(v).ok())
        .map(|q| {
            if resource == "cpu" {
                q.milli_value()
            } else {
                q.value()
            }
        })
        .sum()
}

/// Capacity and allocatable, as quantities, and allocatable as numbers.
pub fn resources(
    opts: &NodeAgentOptions,
    m: &Machine,
) -> (
    BTreeMap<String, Quantity>,
    BTreeMap<String, Quantity>,
    Allocatable,
) {
    let capacity = BTreeMap::from([
        ("cpu".to_string(), Quantity(m.cpus.to_string())),
        (
            "memory".to_string(),
            Quantity(format!("{}Ki", m.memory / 1024)),
        ),
        (
            "ephemeral-storage".to_string(),
            Quantity(format!("{}Ki", m.ephemeral_storage / 1024)),
        ),
        ("pods".to_string(), Quantity(opts.max_pods.to_string())),
    ]);
    let cpu_millis = (m.cpus as i128 * 1000 - reserved(opts, "cpu")).max(0) as i64;
    let memory = (m.memory as i128 - reserved(opts, "memory")).max(0) as i64;
    let storage = (m.ephemeral_storage as i128 - reserved(opts, "ephemeral-storage")).max(0) as i64;
    let allocatable = BTreeMap::from([
        ("cpu".to_string(), Quantity(format!("{cpu_millis}m"))),
        (
            "memory".to_string(),
            Quantity(format!("{}Ki", memory / 1024)),
        ),
        (
            "ephemeral-storage".to_string(),
            Quantity(format!("{}Ki", storage / 1024)),
        ),
        ("pods".to_string(), Quantity(opts.max_pods.to_string())),
    ]);
    (
        capacity,
        allocatable,
        Allocatable {
            cpu_millis,
            memory,
            ephemeral_storage: storage,
        },
    )
}

/// `key=value:Effect` or `key:Effect`.
pub fn parse_taint(s: &str) -> Result<Taint, String> {
    let (kv, effect) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("taint {s:?}: expected key[=value]:Effect"))?;
    if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
        return Err(format!("taint {s:?}: unknown effect {effect:?}"));
    }
    let (key, value) = match kv.split_once('=') {
        Some((k, v)) => (k, Some(v.to_string())),
        None => (kv, None),
    };
    if key.is_empty() {
        return Err(format!("taint {s:?}: empty key"));
    }
    Ok(Taint {
        key: key.into(),
        value,
        effect: effect.into(),
        time_added: None,
    })
}

/// The node's status sources: machine, runtime, options.
pub struct NodeStatusMaker {
    pub opts: NodeAgentOptions,
    pub name: String,
    pub ip: IpAddr,
    pub machine: Machine,
    pub runtime: Runtime,
}

fn condition(
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    old: Option<&NodeStatus>,
) -> NodeCondition {
    let s = if status { "True" } else { "False" };
    let now = Time(now());
    let transition = old
        .and_then(|o| o.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == type_))
        .filter(|c| c.status == s)
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.clone());
    NodeCondition {
        type_: type_.into(),
        status: s.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_heartbeat_time: Some(now),
        last_transition_time: Some(transition),
    }
}

impl NodeStatusMaker {
    /// The Node to register.
    pub fn node(&self) -> anyhow::Result<Node> {
        let mut labels = BTreeMap::from([
            ("kubernetes.io/hostname".to_string(), self.name.clone()),
            ("kubernetes.io/os".to_string(), "linux".to_string()),
            ("kubernetes.io/arch".to_string(), arch().to_string()),
            ("beta.kubernetes.io/os".to_string(), "linux".to_string()),
            ("beta.kubernetes.io/arch".to_string(), arch().to_string()),
        ]);
        labels.extend(self.opts.node_labels.iter().cloned());
        let taints = self
            .opts
            .register_with_taints
            .iter()
            .map(|t| parse_taint(t).map_err(anyhow::Error::msg))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Node {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                labels: Some(labels),
                annotations: Some(BTreeMap::from([(
                    "volumes.kubernetes.io/controller-managed-attach-detach".to_string(),
                    "true".to_string(),
                )])),
                ..Default::default()
            },
            spec: Some(NodeSpec {
                taints: (!taints.is_empty()).then_some(taints),
                ..Default::default()
            }),
            status: None,
        })
    }

    /// The status as of now.
    pub async fn status(&self, old: Option<&NodeStatus>) -> NodeStatus {
        let (capacity, allocatable, _) = resources(&self.opts, &self.machine);
        let mut rt = self.runtime.clone();
        let version = rt.version().await.ok();
        let runtime_conditions = rt.status().await.unwrap_or_default();
        let not_ready: Vec<String> = runtime_conditions
            .iter()
            .filter(|c| !c.status)
            .map(|c| {
                format!(
                    "{}=false reason:{} message:{}",
                    c.r#type, c.reason, c.message
                )
            })
            .collect();
        let ready = version.is_some() && not_ready.is_empty();
        let ready_message = if version.is_none() {
            "container runtime is down".to_string()
        } else if !not_ready.is_empty() {
            format!(
                "container runtime network not ready: {}",
                not_ready.join(", ")
            )
        } else {
            "kubelet is posting ready status".to_string()
        };
        let mut images: Vec<ContainerImage> = rt
            .list_images()
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|i| ContainerImage {
                names: Some(
                    i.repo_digests
                        .iter()
                        .chain(i.repo_tags.iter())
                        .cloned()
                        .collect(),
                ),
                size_bytes: Some(i.size as i64),
            })
            .filter(|i| i.names.as_ref().is_some_and(|n| !n.is_empty()))
            .collect();
        images.sort_by_key(|i| std::cmp::Reverse(i.size_bytes));
        images.truncate(50);
        NodeStatus {
            addresses: Some(vec![
                NodeAddress {
                    type_: "InternalIP".into(),
                    address: self.ip.to_string(),
                },
                NodeAddress {
                    type_: "Hostname".into(),
                    address: self.name.clone(),
                },
            ]),
            capacity: Some(capacity),
            allocatable: Some(allocatable),
            conditions: Some(vec![
                condition(
                    "MemoryPressure",
                    false,
                    "KubeletHasSufficientMemory",
                    "kubelet has sufficient memory available",
                    old,
                ),
                condition(
                    "DiskPressure",
                    false,
                    "KubeletHasNoDiskPressure",
                    "kubelet has no disk pressure",
                    old,
                ),
                condition(
                    "PIDPressure",
                    false,
                    "KubeletHasSufficientPID",
                    "kubelet has sufficient PID available",
                    old,
                ),
                condition(
                    "Ready",
                    ready,
                    if ready {
                        "KubeletReady"
                    } else {
                        "KubeletNotReady"
                    },
                    &ready_message,
                    old,
                ),
            ]),
            daemon_endpoints: Some(NodeDaemonEndpoints {
                kubelet_endpoint: Some(k8s_openapi::api::core::v1::DaemonEndpoint {
                    port: self.opts.port as i32,
                }),
            }),
            images: Some(images),
            node_info: Some(NodeSystemInfo {
                architecture: arch().into(),
                boot_id: self.machine.boot_id.clone(),
                container_runtime_version: version
                    .as_ref()
                    .map(|v| format!("{}://{}", v.runtime_name, v.runtime_version))
                    .unwrap_or_default(),
                kernel_version: self.machine.kernel.clone(),
                kube_proxy_version: String::new(),
                kubelet_version: KUBELET_VERSION.into(),
                machine_id: self.machine.machine_id.clone(),
                operating_system: "linux".into(),
                os_image: self.machine.os_image.clone(),
                system_uuid: self.machine.machine_id.clone(),
                swap: None,
            }),
            ..Default::default()
        }
    }
}

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// Comparable status without heartbeat times (a write is needed when this changed).
fn essence(s: &NodeStatus) -> serde_json::Value {
    let mut v = serde_json::to_value(s).unwrap_or_default();
    if let Some(cs) = v.get_mut("conditions").and_then(|c| c.as_array_mut()) {
        for c in cs {
            if let Some(o) = c.as_object_mut() {
                o.remove("lastHeartbeatTime");
            }
        }
    }
    v
}

/// Registers the Node, then keeps its status and Lease fresh. Runs until aborted.
/// `addresses` gets the Node's `status.addresses` as the API holds them, whenever they
/// change (the serving certificate names them).
pub async fn run(
    client: Client,
    maker: NodeStatusMaker,
    registered: tokio::sync::oneshot::Sender<()>,
    addresses: tokio::sync::watch::Sender<Vec<NodeAddress>>,
) {
    let api: Api<Node> = Api::all(client.clone());
    let mut registered = Some(registered);
    let mut last_written: Option<(serde_json::Value, Instant)> = None;
    let mut lease = LeaseKeeper::new(
        client.clone(),
        &maker.name,
        maker.opts.lease_duration_seconds,
    );
    let mut status_tick = tokio::time::interval(maker.opts.node_status_update_frequency);
    let mut lease_tick = tokio::time::interval(maker.opts.lease_renew_interval);
    status_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    lease_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = status_tick.tick() => {
                match sync_status(&api, &maker, &mut last_written).await {
                    Ok(node) => {
                        lease.owner_uid = node.metadata.uid.clone();
                        let now = node.status.as_ref().and_then(|s| s.addresses.clone()).unwrap_or_default();
                        addresses.send_if_modified(|known| {
                            let changed = *known != now;
                            *known = now;
                            changed
                        });
                        if let Some(tx) = registered.take() {
                            let _ = tx.send(());
                            tracing::info!(node = %maker.name, "node registered");
                        }
                    }
                    Err(e) => tracing::warn!(node = %maker.name, error = %format!("{e:#}"), "updating node status failed"),
                }
            }
            _ = lease_tick.tick() => {
                if lease.owner_uid.is_some() {
                    if let Err(e) = lease.renew().await {
                        tracing::warn!(node = %maker.name, error = %format!("{e:#}"), "renewing node lease failed");
                    }
                }
            }
        }
    }
}

async fn sync_status(
    api: &Api<Node>,
    maker: &NodeStatusMaker,
    last_written: &mut Option<(serde_json::Value, Instant)>,
) -> anyhow::Result<Node> {
    let current = match api.get_opt(&maker.name).await? {
        Some(n) => n,
        None => {
            let created = api
                .create(
                    &PostParams::default().field_manager(FIELD_MANAGER),
                    &maker.node()?,
                )
                .await;
            match created {
                Ok(n) => n,
                Err(e) if e.is_already_exists() => api.get(&maker.name).await?,
                Err(e) => return Err(e.into()),
            }
        }
    };
    let status = maker.status(current.status.as_ref()).await;
    let essence_now = essence(&status);
    let due = match last_written {
        Some((e, at)) => {
            *e != essence_now
                || at.elapsed() >= maker.opts.node_status_report_frequency
                || current.status.as_ref().map(essence) != Some(essence_now.clone())
        }
        None => true,
    };
    if !due {
        return Ok(current);
    }
    let patch = json!({ "status": status });
    let node = api
        .patch_status(
            &maker.name,
            &PatchParams {
                field_manager: Some(FIELD_MANAGER.into()),
                ..Default::default()
            },
            &Patch::Merge(&patch),
        )
        .await?;
    *last_written = Some((essence_now, Instant::now()));
    Ok(node)
}

/// The node's Lease, renewed as the kubelet's node lease controller does.
struct LeaseKeeper {
    api: Api<Lease>,
    name: String,
    duration: i32,
    owner_uid: Option<String>,
    last: Option<Lease>,
}

impl LeaseKeeper {
    fn new(client: Client, name: &str, duration: i32) -> Self {
        LeaseKeeper {
            api: Api::namespaced(client, LEASE_NAMESPACE),
            name: name.to_string(),
            duration,
            owner_uid: None,
            last: None,
        }
    }

    async fn renew(&mut self) -> anyhow::Result<()> {
        let now = MicroTime(now());
        let spec = LeaseSpec {
            holder_identity: Some(self.name.clone()),
            lease_duration_seconds: Some(self.duration),
            renew_time: Some(now),
            ..Default::default()
        };
        if let Some(mut l) = self.last.take() {
            l.spec = Some(spec.clone());
            match self
                .api
                .replace(&self.name, &PostParams::default(), &l)
                .await
            {
                Ok(l) => {
                    self.last = Some(l);
                    return Ok(());
                }
                Err(e) if e.is_conflict() || e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
        }
        let existing = self.api.get_opt(&self.name).await?;
        let lease = match existing {
            Some(mut l) => {
                l.spec = Some(spec);
                self.api
                    .replace(&self.name, &PostParams::default(), &l)
                    .await?
            }
            None => {
                let l = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        namespace: Some(LEASE_NAMESPACE.into()),
                        owner_references: self.owner_uid.clone().map(|uid| {
                            vec![OwnerReference {
                                api_version: "v1".into(),
                                kind: "Node".into(),
                                name: self.name.clone(),
                                uid,
                                ..Default::default()
                            }]
                        }),
                        ..Default::default()
                    },
                    spec: Some(spec),
                };
                self.api.create(&PostParams::default(), &l).await?
            }
        };
        self.last = Some(lease);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taints_parse() {
        let t = parse_taint("dedicated=gpu:NoSchedule").unwrap();
        assert_eq!(
            (t.key.as_str(), t.value.as_deref(), t.effect.as_str()),
            ("dedicated", Some("gpu"), "NoSchedule")
        );
        let t = parse_taint("node-role.kubernetes.io/control-plane:NoExecute").unwrap();
        assert_eq!(t.value, None);
        assert!(parse_taint("a=b").is_err());
        assert!(parse_taint("a=b:Sometimes").is_err());
    }

    #[test]
    fn allocatable_is_capacity_minus_reserved() {
        let opts = NodeAgentOptions {
            system_reserved: vec![
                ("cpu".into(), "500m".into()),
                ("memory".into(), "1Gi".into()),
            ],
            kube_reserved: vec![("cpu".into(), "100m".into())],
            ..Default::default()
        };
        let m = Machine {
            cpus: 2,
            memory: 4 << 30,
            ephemeral_storage: 10 << 30,
            kernel: String::new(),
            os_image: String::new(),
            machine_id: String::new(),
            boot_id: String::new(),
        };
        let (cap, alloc, a) = resources(&opts, &m);
        assert_eq!(cap["cpu"].0, "2");
        assert_eq!(alloc["cpu"].0, "1400m");
        assert_eq!(a.memory, 3 << 30);
        assert_eq!(alloc["memory"].0, format!("{}Ki", (3u64 << 30) / 1024));
        assert_eq!(alloc["pods"].0, "110");
    }
}
