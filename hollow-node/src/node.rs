//! The nodes: registration, Lease renewals and the Ready heartbeat.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use k8s_openapi::jiff::Timestamp;
use keelson_client::{Api, Client, Patch, PatchParams, PostParams};
use serde_json::{json, Value};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::ip::{self, PodIps};
use crate::options::HollowOptions;

/// The field manager of every write.
pub const FIELD_MANAGER: &str = "keelson-hollow-node";
/// `status.nodeInfo.kubeletVersion` of hollow nodes.
pub const KUBELET_VERSION: &str = "v1.33.0-keelson-hollow";
/// `status.nodeInfo.containerRuntimeVersion` of hollow nodes.
pub const RUNTIME_VERSION: &str = "hollow://1.0";
/// The namespace of node Leases.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";

/// Now (jiff's `Timestamp::now` needs a feature k8s-openapi does not enable).
fn timestamp_now() -> Timestamp {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp::new(d.as_secs() as i64, d.subsec_nanos() as i32).unwrap_or(Timestamp::UNIX_EPOCH)
}

pub(crate) fn now_time() -> Time {
    Time(timestamp_now())
}

pub(crate) fn now_json() -> Value {
    serde_json::to_value(now_time()).unwrap_or(Value::Null)
}

fn now_micro() -> MicroTime {
    MicroTime(timestamp_now())
}

pub(crate) fn post_params() -> PostParams {
    PostParams::default().field_manager(FIELD_MANAGER)
}

/// One simulated node.
pub(crate) struct HollowNode {
    pub index: usize,
    pub name: String,
    pub ip: Ipv4Addr,
    /// The Node's uid once registered (empty before).
    uid: Mutex<String>,
    /// The last Lease written, for the next renewal.
    lease: Mutex<Option<Lease>>,
    pub pod_ips: Mutex<PodIps>,
}

impl HollowNode {
    pub fn uid(&self) -> String {
        self.uid.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Keep the Lease for the next renewal, without its managedFields (the server keeps
    /// them when an update sends none; 5,000 Leases need not carry them around).
    fn cache_lease(&self, mut lease: Lease) {
        lease.metadata.managed_fields = None;
        *self.lease.lock().unwrap_or_else(|e| e.into_inner()) = Some(lease);
    }

    fn set_registered(&self, node: &Node) {
        *self.uid.lock().unwrap_or_else(|e| e.into_inner()) =
            node.metadata.uid.clone().unwrap_or_default();
        self.learn_pod_cidr(node);
    }

    /// Take pod IPs from the node's `spec.podCIDR` once it has one.
    fn learn_pod_cidr(&self, node: &Node) {
        if let Some(cidr) = node
            .spec
            .as_ref()
            .and_then(|s| s.pod_cidr.as_deref())
            .and_then(ip::parse_cidr)
        {
            self.pod_ips
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .set_cidr(cidr);
        }
    }
}

/// Every node, the options and the client.
pub(crate) struct Fleet {
    pub client: Client,
    pub opts: HollowOptions,
    pub nodes: Vec<HollowNode>,
    by_name: HashMap<String, usize>,
}

impl Fleet {
    pub fn new(client: Client, opts: HollowOptions) -> Fleet {
        let nodes: Vec<HollowNode> = (0..opts.count)
            .map(|i| HollowNode {
                index: i,
                name: opts.node_name(i),
                ip: ip::node_ip(i),
                uid: Mutex::new(String::new()),
                lease: Mutex::new(None),
                pod_ips: Mutex::new(PodIps::new(ip::fallback_pod_cidr(i))),
            })
            .collect();
        let by_name = nodes.iter().map(|n| (n.name.clone(), n.index)).collect();
        Fleet {
            client,
            opts,
            nodes,
            by_name,
        }
    }

    /// The index of the node called `name`, if it is one of ours.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    fn nodes_api(&self) -> Api<Node> {
        Api::all(self.client.clone())
    }

    fn leases_api(&self) -> Api<Lease> {
        Api::namespaced(self.client.clone(), LEASE_NAMESPACE)
    }

    /// Register every node, `max_in_flight` at a time; returns how many succeeded.
    pub async fn register_all(self: &Arc<Self>) -> usize {
        use futures::StreamExt;
        let results: Vec<bool> = futures::stream::iter(0..self.nodes.len())
            .map(|i| {
                let fleet = self.clone();
                async move {
                    match fleet.register_with_retries(i).await {
                        Ok(()) => true,
                        Err(e) => {
                            tracing::warn!(node = %fleet.nodes[i].name, error = %e, "registering node failed; the heartbeat will retry");
                            false
                        }
                    }
                }
            })
            .buffer_unordered(self.opts.max_in_flight.max(1))
            .collect()
            .await;
        results.into_iter().filter(|ok| *ok).count()
    }

    async fn register_with_retries(&self, i: usize) -> anyhow::Result<()> {
        let mut delay = Duration::from_millis(200);
        for attempt in 0.. {
            match self.register(i).await {
                Ok(()) => return Ok(()),
                Err(e) if attempt < 5 => {
                    tracing::debug!(node = %self.nodes[i].name, error = %e, "registering node; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
                Err(e) => return Err(e),
            }
        }
        unreachable!()
    }

    /// Create node `i` (or adopt it: our labels and status on the existing object),
    /// then its Lease.
    pub async fn register(&self, i: usize) -> anyhow::Result<()> {
        let node = &self.nodes[i];
        let api = self.nodes_api();
        let desired = node_object(&self.opts, i);
        let registered = match api.create(&post_params(), &desired).await {
            Ok(created) => {
                // Nodes may be created with their status, as the kubelet does; if the
                // server dropped it, write it through the status subresource.
                if has_ready_condition(&created) {
                    created
                } else {
                    let mut n = created.clone();
                    n.status = desired.status.clone();
                    api.replace_status(&node.name, &post_params(), &n).await?
                }
            }
            Err(e) if e.is_already_exists() => self.adopt(&api, i, &desired).await?,
            Err(e) => return Err(e.into()),
        };
        node.set_registered(&registered);
        self.renew_lease(i).await?;
        Ok(())
    }

    /// An existing Node of our name: add our labels, write our status.
    async fn adopt(&self, api: &Api<Node>, i: usize, desired: &Node) -> anyhow::Result<Node> {
        let name = &self.nodes[i].name;
        let mut last_err = None;
        for _ in 0..5 {
            let mut current = api.get(name).await?;
            let labels = current.metadata.labels.get_or_insert_with(BTreeMap::new);
            let mut changed = false;
            for (k, v) in desired.metadata.labels.iter().flatten() {
                if labels.get(k) != Some(v) {
                    labels.insert(k.clone(), v.clone());
                    changed = true;
                }
            }
            if changed {
                match api.replace(name, &post_params(), &current).await {
                    Ok(n) => current = n,
                    Err(e) if e.is_conflict() => {
                        last_err = Some(e);
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            current.status = Some(merge_node_status(
                current.status.take(),
                desired.status.clone().unwrap_or_default(),
            )?);
            match api.replace_status(name, &post_params(), &current).await {
                Ok(n) => return Ok(n),
                Err(e) if e.is_conflict() => last_err = Some(e),
                Err(e) => return Err(e.into()),
            }
        }
        Err(last_err.map_or_else(|| anyhow::anyhow!("adopting node {name}"), Into::into))
    }

    /// Renew node `i`'s Lease: update the last one written, else read or create it.
    pub async fn renew_lease(&self, i: usize) -> anyhow::Result<()> {
        let node = &self.nodes[i];
        let api = self.leases_api();
        let cached = node.lease.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(mut lease) = cached {
            self.fill_lease(i, &mut lease);
            match api.replace(&node.name, &post_params(), &lease).await {
                Ok(l) => {
                    node.cache_lease(l);
                    return Ok(());
                }
                Err(e) if e.is_conflict() || e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
        }
        let written = match api.get_opt(&node.name).await? {
            Some(mut lease) => {
                self.fill_lease(i, &mut lease);
                api.replace(&node.name, &post_params(), &lease).await?
            }
            None => {
                let mut lease: Lease = serde_json::from_value(json!({
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": {"name": node.name, "namespace": LEASE_NAMESPACE},
                }))?;
                self.fill_lease(i, &mut lease);
                api.create(&post_params(), &lease).await?
            }
        };
        node.cache_lease(written);
        Ok(())
    }

    /// Holder, duration, renewTime now, and the owner reference to the Node.
    fn fill_lease(&self, i: usize, lease: &mut Lease) {
        let node = &self.nodes[i];
        let spec = lease.spec.get_or_insert_with(Default::default);
        spec.holder_identity = Some(node.name.clone());
        spec.lease_duration_seconds = Some(self.opts.lease_duration_seconds);
        spec.renew_time = Some(now_micro());
        let uid = node.uid();
        if !uid.is_empty() {
            let owner = serde_json::from_value(json!({
                "apiVersion": "v1", "kind": "Node", "name": node.name, "uid": uid,
            }))
            .expect("owner reference");
            lease.metadata.owner_references = Some(vec![owner]);
        }
    }

    /// Refresh the conditions' lastHeartbeatTime (and set them back to our values if
    /// something else changed them). Re-registers a node that is gone.
    pub async fn heartbeat(&self, i: usize) -> anyhow::Result<()> {
        let node = &self.nodes[i];
        if node.uid().is_empty() {
            return self.register(i).await;
        }
        let api = self.nodes_api();
        let Some(current) = api.get_opt(&node.name).await? else {
            tracing::info!(node = %node.name, "node is gone; registering it again");
            *node.lease.lock().unwrap_or_else(|e| e.into_inner()) = None;
            return self.register(i).await;
        };
        node.learn_pod_cidr(&current);
        let existing = current
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .map(|c| serde_json::to_value(c).unwrap_or(Value::Null))
            .unwrap_or(Value::Null);
        let now = now_json();
        let conditions: Vec<Value> = node_conditions(&now)
            .into_iter()
            .map(|mut c| {
                let same =
                    existing.as_array().into_iter().flatten().any(|e| {
                        e.get("type") == c.get("type") && e.get("status") == c.get("status")
                    });
                if same {
                    c.as_object_mut().map(|o| o.remove("lastTransitionTime"));
                }
                c
            })
            .collect();
        let patch = json!({"status": {"conditions": conditions}});
        api.patch_status(
            &node.name,
            &PatchParams {
                field_manager: Some(FIELD_MANAGER.into()),
                ..Default::default()
            },
            &Patch::Strategic(patch),
        )
        .await?;
        Ok(())
    }
}

fn has_ready_condition(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready"))
}

/// Our status fields over an existing status; a condition keeps its lastTransitionTime
/// when its status does not change.
fn merge_node_status(
    current: Option<k8s_openapi::api::core::v1::NodeStatus>,
    desired: k8s_openapi::api::core::v1::NodeStatus,
) -> anyhow::Result<k8s_openapi::api::core::v1::NodeStatus> {
    let mut cur = serde_json::to_value(current.unwrap_or_default())?;
    let des = serde_json::to_value(desired)?;
    let (Some(c), Some(d)) = (cur.as_object_mut(), des.as_object()) else {
        return Ok(serde_json::from_value(des)?);
    };
    let old_conditions = c.get("conditions").cloned().unwrap_or(Value::Null);
    for (k, v) in d {
        c.insert(k.clone(), v.clone());
    }
    if let Some(conds) = c.get_mut("conditions").and_then(Value::as_array_mut) {
        for cond in conds {
            if let Some(old) = old_conditions.as_array().into_iter().flatten().find(|o| {
                o.get("type") == cond.get("type") && o.get("status") == cond.get("status")
            }) {
                if let Some(t) = old.get("lastTransitionTime") {
                    cond["lastTransitionTime"] = t.clone();
                }
            }
        }
    }
    Ok(serde_json::from_value(cur)?)
}

/// The labels of node `index`.
pub fn node_labels(opts: &HollowOptions, index: usize) -> BTreeMap<String, String> {
    let name = opts.node_name(index);
    let mut labels = BTreeMap::from([
        ("kubernetes.io/hostname".to_string(), name),
        ("kubernetes.io/os".to_string(), "linux".to_string()),
        ("kubernetes.io/arch".to_string(), "amd64".to_string()),
        (
            "node.kubernetes.io/instance-type".to_string(),
            "hollow".to_string(),
        ),
    ]);
    if opts.zones > 0 {
        labels.insert(
            "topology.kubernetes.io/zone".to_string(),
            format!("zone-{}", index % opts.zones),
        );
    }
    for (k, v) in &opts.labels {
        labels.insert(k.clone(), v.clone());
    }
    labels
}

fn node_conditions(now: &Value) -> Vec<Value> {
    let cond = |t: &str, status: &str, reason: &str, message: &str| {
        json!({
            "type": t, "status": status, "reason": reason, "message": message,
            "lastHeartbeatTime": now, "lastTransitionTime": now,
        })
    };
    vec![
        cond(
            "MemoryPressure",
            "False",
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available",
        ),
        cond(
            "DiskPressure",
            "False",
            "KubeletHasNoDiskPressure",
            "kubelet has no disk pressure",
        ),
        cond(
            "PIDPressure",
            "False",
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available",
        ),
        cond(
            "Ready",
            "True",
            "KubeletReady",
            "kubelet is posting ready status",
        ),
    ]
}

/// The Node object of node `index`, with its status.
pub fn node_object(opts: &HollowOptions, index: usize) -> Node {
    let name = opts.node_name(index);
    let ip = ip::node_ip(index);
    let resources = json!({
        "cpu": opts.cpu,
        "memory": opts.memory,
        "pods": opts.pods,
        "ephemeral-storage": opts.ephemeral_storage,
    });
    let id = format!("hollow-{index:08x}");
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": node_labels(opts, index),
            "annotations": {"node.alpha.kubernetes.io/ttl": "0"},
        },
        "spec": {"providerID": format!("hollow://{name}")},
        "status": {
            "capacity": resources,
            "allocatable": resources,
            "conditions": node_conditions(&now_json()),
            "addresses": [
                {"type": "InternalIP", "address": ip.to_string()},
                {"type": "Hostname", "address": name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "machineID": id,
                "systemUUID": id,
                "bootID": id,
                "kernelVersion": "6.1.0-hollow",
                "osImage": "Keelson Hollow Node",
                "containerRuntimeVersion": RUNTIME_VERSION,
                "kubeletVersion": KUBELET_VERSION,
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        },
    }))
    .expect("node object")
}

pub(crate) type Job = Arc<dyn Fn(usize) -> BoxFuture<'static, ()> + Send + Sync>;

/// Run `job(i)` for every node once per `interval`, node `i` at offset
/// `interval * i / n` (spread evenly), with at most `max_in_flight` jobs at once. A round
/// that falls behind catches up without sleeping. Runs until dropped (which aborts the
/// jobs in flight).
pub(crate) async fn spread(n: usize, interval: Duration, max_in_flight: usize, job: Job) {
    if n == 0 {
        return std::future::pending().await;
    }
    let interval = interval.max(Duration::from_millis(1));
    let start = Instant::now();
    let mut in_flight = JoinSet::new();
    for round in 0u32.. {
        let round_start = start + interval * round;
        for i in 0..n {
            let due = round_start + interval.mul_f64(i as f64 / n as f64);
            tokio::time::sleep_until(due).await;
            while in_flight.try_join_next().is_some() {}
            while in_flight.len() >= max_in_flight.max(1) {
                in_flight.join_next().await;
            }
            in_flight.spawn(job(i));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_object_has_labels_capacity_and_ready() {
        let opts = HollowOptions::try_parse_from(["--zones", "2", "--labels", "team=a"]).unwrap();
        let n = node_object(&opts, 3);
        let v = serde_json::to_value(&n).unwrap();
        assert_eq!(v["metadata"]["name"], "hollow-3");
        let labels = &v["metadata"]["labels"];
        assert_eq!(labels["kubernetes.io/hostname"], "hollow-3");
        assert_eq!(labels["topology.kubernetes.io/zone"], "zone-1");
        assert_eq!(labels["team"], "a");
        assert_eq!(labels["node.kubernetes.io/instance-type"], "hollow");
        assert_eq!(v["status"]["capacity"]["memory"], "16Gi");
        assert_eq!(v["status"]["allocatable"]["pods"], "110");
        let ready = v["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Ready")
            .unwrap();
        assert_eq!(ready["status"], "True");
        assert_eq!(ready["reason"], "KubeletReady");
        assert_eq!(v["status"]["addresses"][0]["address"], "10.200.0.4");
        assert_eq!(v["status"]["nodeInfo"]["kubeletVersion"], KUBELET_VERSION);
        let no_zone = node_labels(&HollowOptions::default(), 0);
        assert!(!no_zone.contains_key("topology.kubernetes.io/zone"));
    }

    #[test]
    fn adopting_keeps_transition_times_of_unchanged_conditions() {
        let old: k8s_openapi::api::core::v1::NodeStatus = serde_json::from_value(json!({
            "conditions": [
                {"type": "Ready", "status": "True", "lastTransitionTime": "2020-01-01T00:00:00Z"},
                {"type": "DiskPressure", "status": "True", "lastTransitionTime": "2020-01-01T00:00:00Z"},
            ],
            "images": [{"names": ["x"]}],
        }))
        .unwrap();
        let desired = node_object(&HollowOptions::default(), 0).status.unwrap();
        let merged = serde_json::to_value(merge_node_status(Some(old), desired).unwrap()).unwrap();
        let conds = merged["conditions"].as_array().unwrap();
        let get = |t: &str| conds.iter().find(|c| c["type"] == t).unwrap();
        assert_eq!(get("Ready")["lastTransitionTime"], "2020-01-01T00:00:00Z");
        assert_ne!(
            get("DiskPressure")["lastTransitionTime"],
            "2020-01-01T00:00:00Z"
        );
        assert_eq!(get("DiskPressure")["status"], "False");
        assert_eq!(
            merged["images"][0]["names"][0], "x",
            "other fields are kept"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn spread_runs_each_node_once_per_interval_evenly() {
        use std::sync::Mutex as M;
        let log: Arc<M<Vec<(usize, Duration)>>> = Arc::default();
        let start = Instant::now();
        let l = log.clone();
        let job: Job = Arc::new(move |i| {
            let l = l.clone();
            Box::pin(async move {
                l.lock().unwrap().push((i, start.elapsed()));
            })
        });
        let task = tokio::spawn(spread(4, Duration::from_secs(8), 2, job));
        tokio::time::sleep(Duration::from_millis(15_900)).await;
        task.abort();
        let log = log.lock().unwrap().clone();
        let secs: Vec<(usize, u64)> = log.iter().map(|(i, d)| (*i, d.as_secs())).collect();
        assert_eq!(
            secs,
            [
                (0, 0),
                (1, 2),
                (2, 4),
                (3, 6),
                (0, 8),
                (1, 10),
                (2, 12),
                (3, 14)
            ]
        );
    }
}
