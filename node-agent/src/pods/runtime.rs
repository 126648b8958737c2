//! What the runtime holds for one pod, read back from the CRI (the kubelet's
//! `kubecontainer.PodStatus`): its sandboxes and every container instance, newest first.
//! The runtime is the source of truth: a restarted agent rebuilds all of this from the
//! labels and annotations it put on sandboxes and containers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use k8s_cri::v1 as cri;

use crate::cri::{labels, Runtime};

/// One pod sandbox.
#[derive(Debug, Clone)]
pub struct Sandbox {
    pub id: String,
    pub ready: bool,
    pub attempt: u32,
    pub created_at: i64,
    /// The pod IP the network plugin gave it ("" with the host's network).
    pub ip: String,
    pub ips: Vec<String>,
}

/// One container instance (a restart makes a new one).
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    pub id: String,
    pub sandbox_id: String,
    pub name: String,
    /// `restartCount` when it was made (CRI metadata `attempt`).
    pub restart_count: i32,
    pub state: State,
    pub created_at: i64,
    pub started_at: i64,
    pub finished_at: i64,
    pub exit_code: i32,
    pub reason: String,
    pub message: String,
    pub image: String,
    pub image_ref: String,
    pub log_path: String,
    pub hash: String,
    pub annotations: HashMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Created,
    Running,
    Exited,
    Unknown,
}

impl State {
    fn from_cri(s: i32) -> State {
        match cri::ContainerState::try_from(s) {
            Ok(cri::ContainerState::ContainerCreated) => State::Created,
            Ok(cri::ContainerState::ContainerRunning) => State::Running,
            Ok(cri::ContainerState::ContainerExited) => State::Exited,
            _ => State::Unknown,
        }
    }
}

impl Instance {
    pub fn running(&self) -> bool {
        self.state == State::Running
    }
    /// `containerd://<id>`, as `containerStatuses[].containerID`.
    pub fn container_id(&self) -> String {
        format!("containerd://{}", self.id)
    }
}

/// Everything the runtime has for one pod uid.
#[derive(Debug, Clone, Default)]
pub struct PodRuntime {
    /// Newest first.
    pub sandboxes: Vec<Sandbox>,
    /// Newest first.
    pub containers: Vec<Instance>,
}

impl PodRuntime {
    pub fn sandbox(&self) -> Option<&Sandbox> {
        self.sandboxes.first()
    }

    /// The newest instance of container `name`, in any sandbox.
    pub fn latest(&self, name: &str) -> Option<&Instance> {
        self.containers.iter().find(|c| c.name == name)
    }

    /// The instance before the newest one (`lastState`, `logs --previous`).
    pub fn previous(&self, name: &str) -> Option<&Instance> {
        self.containers.iter().filter(|c| c.name == name).nth(1)
    }

    pub fn running(&self) -> impl Iterator<Item = &Instance> {
        self.containers.iter().filter(|c| c.running())
    }

    pub fn is_empty(&self) -> bool {
        self.sandboxes.is_empty() && self.containers.is_empty()
    }
}

/// Reads pods back from the CRI. A container's `ContainerStatus` changes only with its
/// state (created, running, exited), and a sandbox's address never does, so each is
/// asked once per state and kept until the container or sandbox is removed: a relist
/// of 100 steady pods is two list calls, not 200 status calls.
#[derive(Clone)]
pub struct RuntimeReader {
    runtime: Runtime,
    node_name: String,
    /// The last status read of each container, valid while its listed state is the same.
    containers: Arc<Mutex<HashMap<String, Instance>>>,
    /// The addresses of each ready sandbox.
    sandbox_ips: Arc<Mutex<HashMap<String, SandboxIps>>>,
}

/// A sandbox's primary IP and all its IPs.
type SandboxIps = (String, Vec<String>);

/// Sandboxes and containers of every pod on this node, by pod uid.
pub type Snapshot = HashMap<String, PodRuntime>;

impl RuntimeReader {
    pub fn new(runtime: Runtime, node_name: &str) -> Self {
        RuntimeReader {
            runtime,
            node_name: node_name.to_string(),
            containers: Arc::default(),
            sandbox_ips: Arc::default(),
        }
    }

    fn selector(&self, uid: Option<&str>) -> HashMap<String, String> {
        let mut m = HashMap::from([(labels::NODE_NAME.to_string(), self.node_name.clone())]);
        if let Some(uid) = uid {
            m.insert(labels::POD_UID.into(), uid.into());
        }
        m
    }

    /// One pod, fresh from the runtime.
    pub async fn pod(&self, uid: &str) -> anyhow::Result<PodRuntime> {
        let mut snap = self.read(Some(uid)).await?;
        Ok(snap.remove(uid).unwrap_or_default())
    }

    /// Every pod of this node (the PLEG relist).
    pub async fn all(&self) -> anyhow::Result<Snapshot> {
        self.read(None).await
    }

    async fn read(&self, uid: Option<&str>) -> anyhow::Result<Snapshot> {
        let mut rt = self.runtime.clone();
        let sandboxes = rt
            .runtime
            .list_pod_sandbox(cri::ListPodSandboxRequest {
                filter: Some(cri::PodSandboxFilter {
                    label_selector: self.selector(uid),
                    ..Default::default()
                }),
            })
            .await
            .map_err(|s| anyhow::anyhow!("CRI ListPodSandbox: {}", s.message()))?
            .into_inner()
            .items;
        let containers = rt
            .runtime
            .list_containers(cri::ListContainersRequest {
                filter: Some(cri::ContainerFilter {
                    label_selector: self.selector(uid),
                    ..Default::default()
                }),
            })
            .await
            .map_err(|s| anyhow::anyhow!("CRI ListContainers: {}", s.message()))?
            .into_inner()
            .containers;
        let mut snap: Snapshot = HashMap::new();
        for s in sandboxes {
            let Some(uid) = s.labels.get(labels::POD_UID).cloned() else {
                continue;
            };
            let ready = s.state == cri::PodSandboxState::SandboxReady as i32;
            let (ip, ips) = if ready {
                self.sandbox_ips(&mut rt, &s.id).await
            } else {
                (String::new(), Vec::new())
            };
            snap.entry(uid).or_default().sandboxes.push(Sandbox {
                id: s.id,
                ready,
                attempt: s.metadata.map(|m| m.attempt).unwrap_or(0),
                created_at: s.created_at,
                ip,
                ips,
            });
        }
        // Forget what was removed (only a full relist sees everything).
        if uid.is_none() {
            let live: std::collections::HashSet<&str> =
                containers.iter().map(|c| c.id.as_str()).collect();
            self.containers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|id, _| live.contains(id.as_str()));
            let live: std::collections::HashSet<&str> = snap
                .values()
                .flat_map(|p| p.sandboxes.iter().map(|s| s.id.as_str()))
                .collect();
            self.sandbox_ips
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|id, _| live.contains(id.as_str()));
        }
        for c in containers {
            let Some(uid) = c.labels.get(labels::POD_UID).cloned() else {
                continue;
            };
            let instance = match self.instance(&mut rt, &c).await {
                Ok(i) => i,
                // Removed between the list and the status call.
                Err(e) => {
                    tracing::debug!(container = %c.id, error = %e, "container status");
                    continue;
                }
            };
            snap.entry(uid).or_default().containers.push(instance);
        }
        for pod in snap.values_mut() {
            pod.sandboxes
                .sort_by_key(|s| std::cmp::Reverse(s.created_at));
            pod.containers
                .sort_by_key(|c| std::cmp::Reverse(c.created_at));
        }
        Ok(snap)
    }

    async fn sandbox_ips(&self, rt: &mut Runtime, id: &str) -> SandboxIps {
        if let Some(known) = self
            .sandbox_ips
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
        {
            return known.clone();
        }
        match rt.pod_sandbox_status(id).await {
            Ok(Some(st)) => {
                let net = st.network.unwrap_or_default();
                let ips: Vec<String> = std::iter::once(net.ip.clone())
                    .chain(net.additional_ips.into_iter().map(|i| i.ip))
                    .filter(|i| !i.is_empty())
                    .collect();
                let found = (net.ip, ips);
                self.sandbox_ips
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(id.to_string(), found.clone());
                found
            }
            _ => (String::new(), Vec::new()),
        }
    }

    async fn instance(&self, rt: &mut Runtime, c: &cri::Container) -> anyhow::Result<Instance> {
        if let Some(i) = self
            .containers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&c.id)
            .filter(|i| i.state == State::from_cri(c.state))
        {
            return Ok(i.clone());
        }
        let s = rt.container_status(&c.id).await?;
        let name = c
            .metadata
            .as_ref()
            .map(|m| m.name.clone())
            .unwrap_or_default();
        let restart_count = c
            .annotations
            .get(labels::RESTART_COUNT)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| c.metadata.as_ref().map(|m| m.attempt as i32).unwrap_or(0));
        let instance = Instance {
            id: c.id.clone(),
            sandbox_id: c.pod_sandbox_id.clone(),
            name,
            restart_count,
            state: State::from_cri(s.state),
            created_at: s.created_at,
            started_at: s.started_at,
            finished_at: s.finished_at,
            exit_code: s.exit_code,
            reason: s.reason,
            message: s.message,
            image: c
                .image
                .as_ref()
                .map(|i| i.image.clone())
                .unwrap_or_default(),
            image_ref: s.image_ref,
            log_path: s.log_path,
            hash: c
                .annotations
                .get(labels::CONTAINER_HASH)
                .cloned()
                .unwrap_or_default(),
            annotations: c.annotations.clone(),
        };
        let mut instance = instance;
        if instance.state == State::Exited {
            if let Some(m) = termination_message(&instance) {
                instance.message = m;
            }
        }
        self.containers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(c.id.clone(), instance.clone());
        Ok(instance)
    }
}

/// What the container left in its termination-message file; with
/// `FallbackToLogsOnError` and a failure that left nothing there, the end of its log
/// (80 lines, 2 KiB), as the kubelet reports it.
fn termination_message(i: &Instance) -> Option<String> {
    const MAX: usize = 4096;
    let from_file = i
        .annotations
        .get(crate::pods::config::TERMINATION_MESSAGE_HOST_PATH)
        .and_then(|p| std::fs::read(p).ok())
        .map(|mut b| {
            b.truncate(MAX);
            String::from_utf8_lossy(&b).to_string()
        })
        .filter(|m| !m.is_empty());
    if from_file.is_some() {
        return from_file;
    }
    let fallback = i
        .annotations
        .get(labels::TERMINATION_MESSAGE_POLICY)
        .is_some_and(|p| p == "FallbackToLogsOnError");
    if fallback && i.exit_code != 0 && !i.log_path.is_empty() {
        let tail = crate::logs::tail_text(std::path::Path::new(&i.log_path), 80, 2048);
        return (!tail.is_empty()).then_some(tail);
    }
    None
}
