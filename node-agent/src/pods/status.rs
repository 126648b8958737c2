//! The pod status the agent reports, computed in one place from the pod's spec and
//! what the runtime holds (the kubelet's `generateAPIPodStatus` and `getPhase`), and
//! written by one place ([`StatusWriter`]) only when it changed.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, HostIP, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use keelson_client::{Api, Client, Patch, PatchParams};
use serde_json::{json, Value};

use super::runtime::{Instance, PodRuntime, State};

/// The condition types the agent owns; others (PodScheduled, DisruptionTarget, readiness
/// gates) are kept as they are.
const OWNED_CONDITIONS: [&str; 4] = [
    "PodReadyToStartContainers",
    "Initialized",
    "Ready",
    "ContainersReady",
];

/// Why a container is waiting, as the last sync found it (the kubelet's reason cache):
/// `ErrImagePull`, `CreateContainerConfigError`, `CrashLoopBackOff`...
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    pub reason: String,
    pub message: String,
}

/// What the probes say about one container instance.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProbeView {
    /// `None`: no readiness probe (ready while running).
    pub ready: Option<bool>,
    /// `None`: no startup probe (started while running).
    pub started: Option<bool>,
}

/// Everything besides spec and runtime that the status depends on.
pub struct StatusInputs<'a> {
    pub host_ips: &'a [String],
    /// The pod IPs (the node's for hostNetwork pods); empty while there is no sandbox.
    pub pod_ips: &'a [String],
    pub waiting: &'a HashMap<String, Waiting>,
    pub probes: &'a (dyn Fn(&str) -> ProbeView + Sync),
    /// When the agent first saw the pod (`startTime`).
    pub start_time: Timestamp,
}

pub fn time_from_nanos(ns: i64) -> Option<Time> {
    (ns > 0)
        .then(|| Timestamp::from_nanosecond(ns as i128).ok())
        .flatten()
        .map(Time)
}

pub fn now() -> Timestamp {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp::new(d.as_secs() as i64, d.subsec_nanos() as i32).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn terminated(i: &Instance) -> ContainerStateTerminated {
    let reason = if !i.reason.is_empty() {
        i.reason.clone()
    } else if i.exit_code == 0 {
        "Completed".into()
    } else {
        "Error".into()
    };
    ContainerStateTerminated {
        exit_code: i.exit_code,
        reason: Some(reason),
        message: (!i.message.is_empty()).then(|| i.message.clone()),
        started_at: time_from_nanos(i.started_at),
        finished_at: time_from_nanos(i.finished_at),
        container_id: Some(i.container_id()),
        signal: None,
    }
}

fn restart_policy(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always")
}

/// Whether the runtime restarts a container that exited with `exit_code` under the
/// pod's (or, for sidecars, the container's) restart policy.
pub fn should_restart(policy: &str, exit_code: i32) -> bool {
    match policy {
        "Always" => true,
        "OnFailure" => exit_code != 0,
        _ => false,
    }
}

/// A sidecar: an init container with `restartPolicy: Always`.
pub fn is_sidecar(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

fn container_status(
    pod: &Pod,
    spec: &Container,
    rt: &PodRuntime,
    inputs: &StatusInputs<'_>,
    init: bool,
    init_done: bool,
) -> ContainerStatus {
    let latest = rt.latest(&spec.name);
    let mut status = ContainerStatus {
        name: spec.name.clone(),
        image: spec.image.clone().unwrap_or_default(),
        image_id: latest.map(|i| i.image_ref.clone()).unwrap_or_default(),
        container_id: latest.map(|i| i.container_id()),
        restart_count: latest.map(|i| i.restart_count).unwrap_or(0),
        ready: false,
        started: Some(false),
        ..Default::default()
    };
    let default_waiting = if init || init_done {
        "ContainerCreating"
    } else {
        "PodInitializing"
    };
    let waiting_reason = inputs.waiting.get(&spec.name);
    let waiting = |reason: Option<&Waiting>| ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(
                reason
                    .map(|w| w.reason.clone())
                    .unwrap_or_else(|| default_waiting.into()),
            ),
            message: reason.map(|w| w.message.clone()).filter(|m| !m.is_empty()),
        }),
        ..Default::default()
    };
    match latest {
        None => status.state = Some(waiting(waiting_reason)),
        Some(i) if i.state == State::Running => {
            let probes = (inputs.probes)(&i.id);
            status.state = Some(ContainerState {
                running: Some(ContainerStateRunning {
                    started_at: time_from_nanos(i.started_at),
                }),
                ..Default::default()
            });
            let started = probes.started.unwrap_or(true);
            status.started = Some(started);
            status.ready = started && probes.ready.unwrap_or(true);
            if let Some(prev) = rt.previous(&spec.name).filter(|p| p.state == State::Exited) {
                status.last_state = Some(ContainerState {
                    terminated: Some(terminated(prev)),
                    ..Default::default()
                });
            }
        }
        Some(i) if i.state == State::Exited => {
            let policy = if init && is_sidecar(spec) {
                "Always"
            } else {
                restart_policy(pod)
            };
            let restarting = should_restart(policy, i.exit_code)
                && !pod_is_deleting(pod)
                && !init_succeeded(init, i);
            if restarting && waiting_reason.is_some() {
                // Waiting to run again (back-off, or a failed start): the exit is history.
                status.state = Some(waiting(waiting_reason));
                status.last_state = Some(ContainerState {
                    terminated: Some(terminated(i)),
                    ..Default::default()
                });
            } else {
                // A finished init container that succeeded counts as ready, as the
                // kubelet reports it.
                status.ready = init && i.exit_code == 0;
                status.state = Some(ContainerState {
                    terminated: Some(terminated(i)),
                    ..Default::default()
                });
                if let Some(prev) = rt.previous(&spec.name).filter(|p| p.state == State::Exited) {
                    status.last_state = Some(ContainerState {
                        terminated: Some(terminated(prev)),
                        ..Default::default()
                    });
                }
            }
        }
        // Created but not started yet (or unknown): waiting.
        Some(_) => status.state = Some(waiting(waiting_reason)),
    }
    status
}

fn init_succeeded(init: bool, i: &Instance) -> bool {
    init && i.exit_code == 0
}

fn pod_is_deleting(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// The kubelet's `getPhase`.
pub fn phase(pod: &Pod, init: &[ContainerStatus], app: &[ContainerStatus]) -> &'static str {
    let spec = pod.spec.as_ref();
    let policy = restart_policy(pod);
    let mut pending_init = 0;
    let mut failed_init = 0;
    let init_specs = spec.and_then(|s| s.init_containers.as_ref());
    for s in init {
        if init_specs
            .and_then(|cs| cs.iter().find(|c| c.name == s.name))
            .is_some_and(is_sidecar)
        {
            if !s.started.unwrap_or(false) {
                pending_init += 1;
            }
            continue;
        }
        let state = s.state.as_ref();
        if let Some(t) = state.and_then(|st| st.terminated.as_ref()) {
            if t.exit_code != 0 {
                failed_init += 1;
            }
        } else if state.and_then(|st| st.waiting.as_ref()).is_some() {
            let last_failed = s
                .last_state
                .as_ref()
                .and_then(|l| l.terminated.as_ref())
                .is_some_and(|t| t.exit_code != 0);
            if last_failed {
                failed_init += 1;
            } else {
                pending_init += 1;
            }
        } else {
            pending_init += 1;
        }
    }
    let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for s in app {
        let state = s.state.as_ref();
        if state.and_then(|st| st.running.as_ref()).is_some() {
            running += 1;
        } else if let Some(t) = state.and_then(|st| st.terminated.as_ref()) {
            stopped += 1;
            if t.exit_code == 0 {
                succeeded += 1;
            }
        } else if s
            .last_state
            .as_ref()
            .and_then(|l| l.terminated.as_ref())
            .is_some()
        {
            stopped += 1;
        } else {
            waiting += 1;
        }
    }
    if failed_init > 0 && policy == "Never" {
        return "Failed";
    }
    if pending_init > 0 || failed_init > 0 || waiting > 0 {
        return "Pending";
    }
    if running > 0 {
        return "Running";
    }
    if stopped > 0 {
        return match policy {
            "Always" => "Running",
            _ if stopped == succeeded => "Succeeded",
            "OnFailure" => "Running",
            _ => "Failed",
        };
    }
    "Pending"
}

/// `Guaranteed`, `Burstable` or `BestEffort` (as the apiserver computes it).
pub fn qos_class(pod: &Pod) -> &'static str {
    let Some(spec) = pod.spec.as_ref() else {
        return "BestEffort";
    };
    let all: Vec<&Container> = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .collect();
    let mut any = false;
    let mut guaranteed = true;
    for c in &all {
        let r = c.resources.as_ref();
        let req = r.and_then(|r| r.requests.as_ref());
        let lim = r.and_then(|r| r.limits.as_ref());
        for res in ["cpu", "memory"] {
            let q = req.and_then(|m| m.get(res));
            let l = lim.and_then(|m| m.get(res));
            if q.is_some() || l.is_some() {
                any = true;
            }
            match (q, l) {
                (_, None) => guaranteed = false,
                (Some(q), Some(l)) if q.0 != l.0 => guaranteed = false,
                _ => {}
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

fn condition(
    old: &[PodCondition],
    type_: &str,
    ok: bool,
    reason: Option<String>,
    message: Option<String>,
) -> PodCondition {
    let status = if ok { "True" } else { "False" };
    let now = Time(now());
    let prev = old.iter().find(|c| c.type_ == type_);
    let last_transition_time = match prev {
        Some(p) if p.status == status => p.last_transition_time.clone(),
        _ => Some(now),
    };
    PodCondition {
        type_: type_.into(),
        status: status.into(),
        reason: if ok { None } else { reason },
        message: if ok { None } else { message },
        last_transition_time,
        last_probe_time: None,
        observed_generation: None,
    }
}

/// The status to report for `pod` given what the runtime holds.
pub fn compute(pod: &Pod, rt: &PodRuntime, inputs: &StatusInputs<'_>) -> PodStatus {
    let old = pod.status.clone().unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    let init_specs = spec.init_containers.clone().unwrap_or_default();
    let mut init_statuses = Vec::new();
    let mut init_done = true;
    for c in &init_specs {
        let s = container_status(pod, c, rt, inputs, true, false);
        let ok = if is_sidecar(c) {
            s.started.unwrap_or(false)
        } else {
            s.state
                .as_ref()
                .and_then(|st| st.terminated.as_ref())
                .is_some_and(|t| t.exit_code == 0)
        };
        init_done &= ok;
        init_statuses.push(s);
    }
    let app_statuses: Vec<ContainerStatus> = spec
        .containers
        .iter()
        .map(|c| container_status(pod, c, rt, inputs, false, init_done))
        .collect();
    let mut phase = phase(pod, &init_statuses, &app_statuses).to_string();
    // A terminal phase never changes back (the kubelet refuses such transitions).
    if matches!(old.phase.as_deref(), Some("Succeeded" | "Failed")) {
        phase = old.phase.clone().unwrap_or_default();
    }
    let old_conditions = old.conditions.clone().unwrap_or_default();
    let incomplete_init: Vec<&str> = init_statuses
        .iter()
        .zip(&init_specs)
        .filter(|(s, c)| {
            let done = if is_sidecar(c) {
                s.started.unwrap_or(false)
            } else {
                s.state
                    .as_ref()
                    .and_then(|st| st.terminated.as_ref())
                    .is_some_and(|t| t.exit_code == 0)
            };
            !done
        })
        .map(|(s, _)| s.name.as_str())
        .collect();
    let unready: Vec<&str> = app_statuses
        .iter()
        .filter(|s| !s.ready)
        .map(|s| s.name.as_str())
        .collect();
    let terminal = matches!(phase.as_str(), "Succeeded" | "Failed");
    let sandbox_ready = rt.sandbox().is_some_and(|s| s.ready);
    let containers_ready = unready.is_empty() && !terminal;
    let gates_ok = spec.readiness_gates.iter().flatten().all(|g| {
        old_conditions
            .iter()
            .any(|c| c.type_ == g.condition_type && c.status == "True")
    });
    let (not_ready_reason, not_ready_message) = if terminal {
        ("PodCompleted".to_string(), None)
    } else {
        (
            "ContainersNotReady".to_string(),
            Some(format!(
                "containers with unready status: [{}]",
                unready.join(" ")
            )),
        )
    };
    let mut conditions = vec![
        condition(
            &old_conditions,
            "PodReadyToStartContainers",
            sandbox_ready,
            None,
            None,
        ),
        condition(
            &old_conditions,
            "Initialized",
            incomplete_init.is_empty() || terminal && init_done,
            Some(
                if terminal {
                    "PodCompleted"
                } else {
                    "ContainersNotInitialized"
                }
                .into(),
            ),
            (!terminal).then(|| {
                format!(
                    "containers with incomplete status: [{}]",
                    incomplete_init.join(" ")
                )
            }),
        ),
        condition(
            &old_conditions,
            "Ready",
            containers_ready && gates_ok,
            Some(not_ready_reason.clone()),
            not_ready_message.clone().or_else(|| {
                (!gates_ok).then(|| "the status of pod readiness gate is not \"True\"".into())
            }),
        ),
        condition(
            &old_conditions,
            "ContainersReady",
            containers_ready,
            Some(not_ready_reason),
            not_ready_message,
        ),
    ];
    conditions.extend(
        old_conditions
            .iter()
            .filter(|c| !OWNED_CONDITIONS.contains(&c.type_.as_str()))
            .cloned(),
    );
    let pod_ips = inputs.pod_ips;
    PodStatus {
        phase: Some(phase),
        conditions: Some(conditions),
        host_ip: inputs.host_ips.first().cloned(),
        host_ips: (!inputs.host_ips.is_empty()).then(|| {
            inputs
                .host_ips
                .iter()
                .map(|ip| HostIP { ip: ip.clone() })
                .collect()
        }),
        pod_ip: pod_ips.first().cloned().or(old.pod_ip.clone()),
        pod_ips: if pod_ips.is_empty() {
            old.pod_ips.clone()
        } else {
            Some(pod_ips.iter().map(|ip| PodIP { ip: ip.clone() }).collect())
        },
        start_time: old.start_time.clone().or(Some(Time(inputs.start_time))),
        qos_class: Some(qos_class(pod).into()),
        container_statuses: Some(app_statuses),
        init_container_statuses: (!init_statuses.is_empty()).then_some(init_statuses),
        nominated_node_name: old.nominated_node_name.clone(),
        ephemeral_container_statuses: old.ephemeral_container_statuses.clone(),
        message: old.message.clone(),
        reason: old.reason.clone(),
        ..Default::default()
    }
}

/// Writes pod status through `pods/status`, skipping writes that would change
/// nothing: the one writer of the status the agent owns.
pub struct StatusWriter {
    client: Client,
    /// The last status written per pod uid (as JSON, to compare).
    written: Mutex<HashMap<String, Value>>,
}

/// The part of a status that a change must touch to be worth a write (timestamps of
/// unchanged conditions are kept by [`compute`], so equal statuses compare equal).
fn comparable(status: &PodStatus) -> Value {
    serde_json::to_value(status).unwrap_or(Value::Null)
}

impl StatusWriter {
    pub fn new(client: Client) -> Self {
        StatusWriter {
            client,
            written: Mutex::default(),
        }
    }

    /// Write `status` for `pod` unless it is what the pod already says (or what we
    /// wrote last). A merge patch replaces the lists as a whole, which is what we want:
    /// conditions we do not own were copied into `status` by [`compute`].
    pub async fn write(&self, pod: &Pod, status: &PodStatus) -> anyhow::Result<bool> {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let new = comparable(status);
        let current = pod.status.as_ref().map(comparable).unwrap_or(Value::Null);
        if new == current {
            return Ok(false);
        }
        if self
            .written
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&uid)
            == Some(&new)
        {
            return Ok(false);
        }
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let patch = json!({
            "metadata": {"uid": uid},
            "status": new,
        });
        api.patch_status(
            &name,
            &PatchParams {
                field_manager: Some("keelson-node-agent".into()),
                ..Default::default()
            },
            &Patch::Merge(&patch),
        )
        .await?;
        self.written
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(uid, new);
        Ok(true)
    }

    pub fn forget(&self, uid: &str) {
        self.written
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(uid);
    }
}

/// Labels of a pod as a sorted map (for CRI labels).
pub fn labels_of(pod: &Pod) -> BTreeMap<String, String> {
    pod.metadata.labels.clone().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cs(name: &str, state: ContainerState, last: Option<ContainerState>) -> ContainerStatus {
        ContainerStatus {
            name: name.into(),
            state: Some(state),
            last_state: last,
            ..Default::default()
        }
    }
    fn running() -> ContainerState {
        ContainerState {
            running: Some(Default::default()),
            ..Default::default()
        }
    }
    fn exited(code: i32) -> ContainerState {
        ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: code,
                ..Default::default()
            }),
            ..Default::default()
        }
    }
    fn waiting() -> ContainerState {
        ContainerState {
            waiting: Some(Default::default()),
            ..Default::default()
        }
    }
    fn pod(policy: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p"},
            "spec": {"restartPolicy": policy, "containers": [{"name": "a"}], "initContainers": [{"name": "i"}]}
        }))
        .unwrap()
    }

    #[test]
    fn phases_follow_the_kubelet() {
        let init_ok = [cs("i", exited(0), None)];
        let p = pod("Never");
        assert_eq!(phase(&p, &init_ok, &[cs("a", running(), None)]), "Running");
        assert_eq!(
            phase(&p, &init_ok, &[cs("a", exited(0), None)]),
            "Succeeded"
        );
        assert_eq!(phase(&p, &init_ok, &[cs("a", exited(1), None)]), "Failed");
        assert_eq!(phase(&p, &init_ok, &[cs("a", waiting(), None)]), "Pending");
        assert_eq!(
            phase(&p, &[cs("i", exited(2), None)], &[cs("a", waiting(), None)]),
            "Failed",
            "a failed init container fails a Never pod"
        );
        let p = pod("OnFailure");
        assert_eq!(phase(&p, &init_ok, &[cs("a", exited(1), None)]), "Running");
        assert_eq!(
            phase(&p, &init_ok, &[cs("a", exited(0), None)]),
            "Succeeded"
        );
        assert_eq!(
            phase(
                &p,
                &[cs("i", waiting(), Some(exited(1)))],
                &[cs("a", waiting(), None)]
            ),
            "Pending",
            "an init container in back-off keeps the pod Pending"
        );
        let p = pod("Always");
        assert_eq!(phase(&p, &init_ok, &[cs("a", exited(0), None)]), "Running");
        assert_eq!(
            phase(&p, &init_ok, &[cs("a", waiting(), Some(exited(1)))]),
            "Running",
            "crash looping counts as stopped, and Always keeps it Running"
        );
        assert_eq!(
            phase(&p, &[cs("i", running(), None)], &[cs("a", waiting(), None)]),
            "Pending"
        );
    }

    #[test]
    fn qos_classes() {
        let mk = |res: Value| -> Pod {
            serde_json::from_value(
                json!({"spec": {"containers": [{"name": "a", "resources": res}]}}),
            )
            .unwrap()
        };
        assert_eq!(qos_class(&mk(json!({}))), "BestEffort");
        assert_eq!(
            qos_class(&mk(
                json!({"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1", "memory": "1Gi"}})
            )),
            "Guaranteed"
        );
        assert_eq!(
            qos_class(&mk(json!({"requests": {"cpu": "1"}}))),
            "Burstable"
        );
    }

    #[test]
    fn restart_policies() {
        assert!(should_restart("Always", 0));
        assert!(should_restart("OnFailure", 1));
        assert!(!should_restart("OnFailure", 0));
        assert!(!should_restart("Never", 1));
    }
}
