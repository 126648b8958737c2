//! [`Agent`]: what every part of the agent shares — its options, the node's identity,
//! the API client, the CRI, the pod-side managers — built once by [`crate::run`].

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{ObjectReference, Pod, Service};
use k8s_openapi::jiff::Timestamp;
use keelson_client::Client;
use keelson_component::events::{EventType, Recorder};
use tokio::sync::mpsc;

use crate::cri::Runtime;
use crate::metrics::Metrics;
use crate::options::NodeAgentOptions;
use crate::pods::backoff::Backoff;
use crate::pods::probes::ProbeManager;
use crate::pods::runtime::RuntimeReader;
use crate::pods::status::{StatusWriter, Waiting};
use crate::sources::{ApiSources, PodSources};
use crate::volumes::VolumeManager;

/// Everything the agent's parts share; one per node, behind an `Arc`.
pub struct Agent {
    pub opts: NodeAgentOptions,
    pub node_name: String,
    pub node_ip: IpAddr,
    pub client: Client,
    pub runtime: Runtime,
    pub reader: RuntimeReader,
    pub recorder: Recorder,
    pub status: StatusWriter,
    pub backoff: Backoff,
    pub probes: ProbeManager,
    pub volumes: VolumeManager,
    pub sources: Arc<dyn PodSources>,
    pub metrics: Metrics,
    /// Node allocatable (cpu in millicores, memory and ephemeral-storage in bytes), for
    /// `resourceFieldRef` without limits.
    pub allocatable: Allocatable,
    /// Why containers wait, per pod uid and container name (the kubelet's reason cache).
    waiting: Mutex<HashMap<String, HashMap<String, Waiting>>>,
    /// When the agent first saw each pod (`status.startTime`).
    first_seen: Mutex<HashMap<String, Timestamp>>,
    /// The `kubernetes` Service and when it was read.
    #[allow(clippy::type_complexity)]
    master_service: Mutex<
        Option<(
            std::time::Instant,
            Option<k8s_openapi::api::core::v1::Service>,
        )>,
    >,
    /// The lowest `oom_score_adj` this process may give (its own: without
    /// CAP_SYS_RESOURCE nothing can go below it).
    pub oom_score_floor: i64,
    /// Pod uids whose worker should sync now (probes, the PLEG).
    pub wake: mpsc::UnboundedSender<String>,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Allocatable {
    pub cpu_millis: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
}

impl Allocatable {
    /// As quantities, for `resourceFieldRef`s that fall back to the node's allocatable.
    pub fn quantities(
        &self,
    ) -> std::collections::BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>
    {
        use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
        std::collections::BTreeMap::from([
            ("cpu".to_string(), Quantity(format!("{}m", self.cpu_millis))),
            ("memory".to_string(), Quantity(self.memory.to_string())),
            (
                "ephemeral-storage".to_string(),
                Quantity(self.ephemeral_storage.to_string()),
            ),
        ])
    }
}

impl Agent {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        opts: NodeAgentOptions,
        node_ip: IpAddr,
        client: Client,
        runtime: Runtime,
        allocatable: Allocatable,
        metrics: Metrics,
        wake: mpsc::UnboundedSender<String>,
    ) -> Arc<Agent> {
        let node_name = opts.node_name();
        Arc::new(Agent {
            reader: RuntimeReader::new(runtime.clone(), &node_name),
            recorder: Recorder::new(client.clone(), "kubelet"),
            status: StatusWriter::new(client.clone()),
            backoff: Backoff::default(),
            probes: ProbeManager::new(runtime.clone(), wake.clone()),
            volumes: VolumeManager::new(opts.root_dir.join("pods"))
                .with_node_allocatable(allocatable.quantities()),
            sources: Arc::new(ApiSources::new(client.clone())),
            waiting: Mutex::default(),
            first_seen: Mutex::default(),
            master_service: Mutex::default(),
            oom_score_floor: own_oom_score_adj(),
            node_name,
            node_ip,
            client,
            runtime,
            allocatable,
            metrics,
            wake,
            opts,
        })
    }

    /// `<root-dir>/pods/<uid>`: volumes, etc-hosts, termination-message files.
    pub fn pod_dir(&self, uid: &str) -> PathBuf {
        self.opts.root_dir.join("pods").join(uid)
    }

    /// `<pod-logs-dir>/<ns>_<name>_<uid>`, as the kubelet names it.
    pub fn pod_log_dir(&self, pod: &Pod) -> PathBuf {
        self.opts.pod_logs_dir.join(format!(
            "{}_{}_{}",
            pod.metadata.namespace.as_deref().unwrap_or_default(),
            pod.metadata.name.as_deref().unwrap_or_default(),
            pod.metadata.uid.as_deref().unwrap_or_default()
        ))
    }

    pub fn host_ips(&self) -> Vec<String> {
        vec![self.node_ip.to_string()]
    }

    pub fn set_waiting(&self, uid: &str, container: &str, w: Option<Waiting>) {
        let mut all = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        match w {
            Some(w) => {
                all.entry(uid.to_string())
                    .or_default()
                    .insert(container.to_string(), w);
            }
            None => {
                if let Some(m) = all.get_mut(uid) {
                    m.remove(container);
                }
            }
        }
    }

    pub fn waiting_of(&self, uid: &str) -> HashMap<String, Waiting> {
        self.waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(uid)
            .cloned()
            .unwrap_or_default()
    }

    pub fn first_seen(&self, uid: &str) -> Timestamp {
        *self
            .first_seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(uid.to_string())
            .or_insert_with(crate::pods::status::now)
    }

    /// Forget everything kept for a pod that is gone.
    pub fn forget_pod(&self, uid: &str) {
        self.waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(uid);
        self.first_seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(uid);
        self.backoff.forget_prefix(uid);
        self.status.forget(uid);
        self.probes.forget_pod(uid);
    }

    /// An Event about the pod (or one of its containers, `field_path`
    /// `spec.containers{name}`), from `kubelet` on this node.
    pub async fn event(
        &self,
        pod: &Pod,
        field_path: Option<String>,
        kind: EventType,
        reason: &str,
        message: &str,
    ) {
        let mut r: ObjectReference = keelson_component::events::reference(pod);
        r.field_path = field_path;
        // Events are best effort and never hold a sync up (the kubelet records them
        // asynchronously too): the write goes on a task of its own.
        let recorder = self.recorder.clone();
        let (reason, message) = (reason.to_string(), message.to_string());
        tokio::spawn(async move { recorder.record(&r, kind, &reason, &message).await });
    }
}

impl Agent {
    /// The pod's sandbox configuration: hostname, DNS per dnsPolicy, and the rest from
    /// the spec ([`crate::pods::config::sandbox_config`]).
    pub fn sandbox_config(&self, pod: &Pod, attempt: u32) -> k8s_cri::v1::PodSandboxConfig {
        let host_network = crate::pods::config::host_network(pod);
        // With the host's network the sandbox shares the host's UTS namespace: no
        // hostname of its own (runc refuses to set one), as the kubelet does.
        let hostname = if host_network {
            String::new()
        } else {
            crate::dns::pod_hostname(pod, &self.opts.cluster_domain).0
        };
        let resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        let dns = match crate::dns::dns_config(
            pod,
            &self.opts.cluster_dns,
            &self.opts.cluster_domain,
            &resolv,
        ) {
            Ok(d) => Some(d),
            Err(e) => {
                tracing::warn!(pod = %crate::pods::config::pod_name(pod), error = %e, "pod DNS configuration");
                None
            }
        };
        crate::pods::config::sandbox_config(self, pod, attempt, dns, hostname)
    }

    /// The `kubernetes` Service in `default` (its variables go into every container),
    /// read at most every 30 s: every container start needs it.
    pub async fn master_service(&self) -> Option<Service> {
        const FRESH: std::time::Duration = std::time::Duration::from_secs(30);
        if let Some((at, svc)) = &*self
            .master_service
            .lock()
            .unwrap_or_else(|e| e.into_inner())
        {
            if at.elapsed() < FRESH {
                return svc.clone();
            }
        }
        let api: keelson_client::Api<Service> =
            keelson_client::Api::namespaced(self.client.clone(), "default");
        let svc = api.get_opt("kubernetes").await.ok().flatten();
        *self
            .master_service
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some((std::time::Instant::now(), svc.clone()));
        svc
    }
}

fn own_oom_score_adj() -> i64 {
    std::fs::read_to_string("/proc/self/oom_score_adj")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// `spec.containers{name}` or `spec.initContainers{name}`, as the kubelet's events name a
/// container.
pub fn field_path(init: bool, name: &str) -> Option<String> {
    Some(if init {
        format!("spec.initContainers{{{name}}}")
    } else {
        format!("spec.containers{{{name}}}")
    })
}
