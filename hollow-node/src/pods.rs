//! The minimal kubelet: one pod informer for every node, a work queue of pod keys and
//! a pool of workers that write pod status and finish deletions.
//!
//! The cache is the client runtime's [`Store`], fed by one [`watcher()`] on
//! `spec.nodeName!=`; pods bound to other nodes are not kept, and the rest are cut down
//! to what the hollow kubelet reads ([`slim`]: no managedFields, env, volumes...), so
//! 11,000 pods stay small.
//!
//! Per pod the workers keep a little state (when it was seen, when it "started", its
//! IP, when its deletion was seen), and act on the informer's copy: status writes carry
//! its resourceVersion, and a 409 re-reads the pod and tries again.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use keelson_client::runtime::reflector::Change;
use keelson_client::runtime::watcher::{self, watcher, Event};
use keelson_client::runtime::{store, RateLimiter, Store, WorkQueue};
use keelson_client::{Api, DeleteParams, KubeObject, ObjectKey, Patch, PatchParams, Preconditions};
use serde_json::{json, Value};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::node::{now_json, post_params, Fleet};
use crate::options::parse_duration;

/// Annotation: the exit code of the pod's containers when they finish (restartPolicy
/// Never/OnFailure). Non-zero: the pod fails with reason Error.
pub const EXIT_CODE_ANNOTATION: &str = "hollow.keelson.dev/exit-code";
/// Annotation: how long the pod runs before it finishes (overrides `--run-duration`).
pub const RUN_DURATION_ANNOTATION: &str = "hollow.keelson.dev/run-duration";
/// The exit code of containers stopped because their pod was deleted (SIGTERM).
pub const KILLED_EXIT_CODE: i32 = 143;

#[derive(Debug)]
struct PodState {
    uid: String,
    node: usize,
    seen: Instant,
    started: Option<Instant>,
    ip: Option<Ipv4Addr>,
    /// The IP came from our allocator (not the host network).
    ip_allocated: bool,
    deletion_seen: Option<Instant>,
    finished: bool,
}

/// What a pod needs next.
#[derive(Debug, Clone, PartialEq)]
enum Action {
    Nothing,
    After(Duration),
    Start,
    Finish(i32),
    /// Stop the containers (status), then delete.
    Stop,
    /// Delete now (grace 0, uid precondition).
    Delete,
}

pub(crate) struct Kubelet {
    fleet: Arc<Fleet>,
    store: Store<Pod>,
    queue: WorkQueue<ObjectKey>,
    states: Mutex<HashMap<ObjectKey, PodState>>,
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn annotation<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

fn restart_always(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .is_none_or(|p| p == "Always")
}

fn host_network(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false)
}

fn pod_ip(pod: &Pod) -> Option<Ipv4Addr> {
    pod.status
        .as_ref()
        .and_then(|s| s.pod_ip.as_deref())
        .and_then(|ip| ip.parse().ok())
}

impl Kubelet {
    /// Start the pod watch, its cache and the workers on `tasks`.
    pub fn start(fleet: Arc<Fleet>, tasks: &mut JoinSet<()>) -> Arc<Kubelet> {
        let api: Api<Pod> = Api::all(fleet.client.clone());
        let (store, mut writer) = store::<Pod>();
        let queue = WorkQueue::with_rate_limiter(RateLimiter::exponential(
            Duration::from_millis(50),
            Duration::from_secs(30),
        ));
        let kubelet = Arc::new(Kubelet {
            store,
            fleet,
            queue,
            states: Mutex::new(HashMap::new()),
        });
        let k = kubelet.clone();
        tasks.spawn(async move {
            let config = watcher::Config::default()
                .fields("spec.nodeName!=")
                .without_managed_fields();
            let stream = watcher(api, config);
            futures::pin_mut!(stream);
            while let Some(item) = stream.next().await {
                let event = match item {
                    Ok(ev) => ev,
                    Err(e) => {
                        tracing::warn!(error = %e, "pod watch failed; retrying");
                        continue;
                    }
                };
                let event = match event {
                    Event::InitApply(p) => k.keep(p).map(Event::InitApply),
                    Event::Apply(p) => k.keep(p).map(Event::Apply),
                    Event::Delete(p) => k.keep(p).map(Event::Delete),
                    other => Some(other),
                };
                for change in event.map(|ev| writer.apply(ev)).unwrap_or_default() {
                    let (Change::Added(p) | Change::Deleted(p) | Change::Updated { new: p, .. }) =
                        change;
                    k.queue.add(p.key());
                }
            }
        });
        for _ in 0..kubelet.fleet.opts.pod_workers.max(1) {
            let k = kubelet.clone();
            tasks.spawn(async move {
                while let Some(key) = k.queue.get().await {
                    match k.reconcile(&key).await {
                        Ok(()) => k.queue.forget(&key),
                        Err(e) => {
                            tracing::warn!(pod = %key, error = %e, "hollow kubelet: retrying pod");
                            k.queue.add_rate_limited(key.clone());
                        }
                    }
                    k.queue.done(&key);
                }
            });
        }
        let q = kubelet.queue.clone();
        tasks.spawn(async move {
            // Shut the queue down when the tasks are aborted.
            struct Guard(WorkQueue<ObjectKey>);
            impl Drop for Guard {
                fn drop(&mut self) {
                    self.0.shut_down();
                }
            }
            let _g = Guard(q);
            std::future::pending::<()>().await
        });
        kubelet
    }

    /// A pod of one of our nodes, cut down to what the hollow kubelet reads; `None`
    /// for other pods.
    fn keep(&self, pod: Pod) -> Option<Pod> {
        let node = pod.spec.as_ref().and_then(|s| s.node_name.as_deref())?;
        self.fleet.index_of(node)?;
        Some(slim(pod))
    }

    fn states(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectKey, PodState>> {
        self.states.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Drop a pod's state and give its IP back.
    fn forget_pod(&self, key: &ObjectKey) {
        let removed = self.states().remove(key);
        if let Some(st) = removed {
            self.release_ip(&st);
        }
    }

    fn release_ip(&self, st: &PodState) {
        if let (Some(ip), true) = (st.ip, st.ip_allocated) {
            self.fleet.nodes[st.node]
                .pod_ips
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .release(ip);
        }
    }

    /// The run duration of a pod: its annotation, else the option.
    fn run_duration(&self, pod: &Pod) -> Duration {
        match annotation(pod, RUN_DURATION_ANNOTATION).map(parse_duration) {
            Some(Ok(d)) => d,
            Some(Err(e)) => {
                tracing::warn!(pod = %pod.key(), error = %e, "ignoring {RUN_DURATION_ANNOTATION}");
                self.fleet.opts.run_duration
            }
            None => self.fleet.opts.run_duration,
        }
    }

    fn exit_code(pod: &Pod) -> i32 {
        match annotation(pod, EXIT_CODE_ANNOTATION).map(|v| v.trim().parse::<i32>()) {
            Some(Ok(code)) => code,
            Some(Err(_)) => {
                tracing::warn!(pod = %pod.key(), "ignoring a non-numeric {EXIT_CODE_ANNOTATION}");
                0
            }
            None => 0,
        }
    }

    /// What `pod` needs now, updating its state.
    fn decide(&self, pod: &Pod, st: &mut PodState, now: Instant) -> Action {
        let phase = phase(pod);
        let terminal = phase == "Succeeded" || phase == "Failed";
        let running = st.started.is_some() || phase == "Running";
        if pod.metadata.deletion_timestamp.is_some() {
            if terminal || st.finished || !running {
                return Action::Delete;
            }
            let since = *st.deletion_seen.get_or_insert(now);
            let grace = pod
                .metadata
                .deletion_grace_period_seconds
                .unwrap_or(30)
                .max(0) as u64;
            let delay = self
                .fleet
                .opts
                .terminate_delay
                .min(Duration::from_secs(grace));
            let due = since + delay;
            return if now < due {
                Action::After(due - now)
            } else {
                Action::Stop
            };
        }
        if terminal || st.finished {
            st.finished = true;
            return Action::Nothing;
        }
        let started = match st.started {
            Some(t) => t,
            None if phase == "Running" => {
                // Started before (by an earlier run of the hollow nodes): adopt it.
                if let Some(ip) = pod_ip(pod) {
                    if !host_network(pod) {
                        self.fleet.nodes[st.node]
                            .pod_ips
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .reserve(ip);
                        st.ip_allocated = true;
                    }
                    st.ip = Some(ip);
                }
                st.started = Some(now);
                now
            }
            None => {
                let due = st.seen + self.fleet.opts.ready_delay;
                return if now < due {
                    Action::After(due - now)
                } else {
                    Action::Start
                };
            }
        };
        if restart_always(pod) {
            return Action::Nothing;
        }
        let due = started + self.run_duration(pod);
        if now < due {
            Action::After(due - now)
        } else {
            Action::Finish(Self::exit_code(pod))
        }
    }

    async fn reconcile(&self, key: &ObjectKey) -> anyhow::Result<()> {
        let Some(pod) = self.store.get(key) else {
            self.forget_pod(key);
            return Ok(());
        };
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .and_then(|n| self.fleet.index_of(n));
        let (Some(node), Some(uid)) = (node, pod.metadata.uid.clone()) else {
            self.forget_pod(key);
            return Ok(());
        };
        let now = Instant::now();
        let action = {
            let mut states = self.states();
            if states.get(key).is_some_and(|s| s.uid != uid) {
                // A new pod of the same name.
                if let Some(old) = states.remove(key) {
                    drop(states);
                    self.release_ip(&old);
                    states = self.states();
                }
            }
            let st = states.entry(key.clone()).or_insert_with(|| PodState {
                uid: uid.clone(),
                node,
                seen: now,
                started: None,
                ip: None,
                ip_allocated: false,
                deletion_seen: None,
                finished: false,
            });
            self.decide(&pod, st, now)
        };
        match action {
            Action::Nothing => {}
            Action::After(d) => self.queue.add_after(key.clone(), d),
            Action::Start => {
                let ip = self.pod_ip_for(key, &pod)?;
                let host_ip = self.fleet.nodes[node].ip;
                let wrote = self
                    .write_status(key, &uid, (*pod).clone(), |p| start_pod(p, host_ip, ip))
                    .await?;
                if wrote {
                    if let Some(st) = self.states().get_mut(key) {
                        st.started = Some(Instant::now());
                    }
                    if !restart_always(&pod) {
                        self.queue.add_after(key.clone(), self.run_duration(&pod));
                    }
                }
            }
            Action::Finish(exit) => {
                let wrote = self
                    .write_status(key, &uid, (*pod).clone(), |p| finish_pod(p, exit))
                    .await?;
                if wrote {
                    if let Some(st) = self.states().get_mut(key) {
                        st.finished = true;
                    }
                }
            }
            Action::Stop => {
                self.write_status(key, &uid, (*pod).clone(), |p| {
                    finish_pod(p, KILLED_EXIT_CODE)
                })
                .await?;
                if let Some(st) = self.states().get_mut(key) {
                    st.finished = true;
                }
                self.delete(&pod, &uid).await?;
            }
            Action::Delete => self.delete(&pod, &uid).await?,
        }
        Ok(())
    }

    /// The pod's IP: the node's for host-network pods, else one from the node's range
    /// (kept across retries).
    fn pod_ip_for(&self, key: &ObjectKey, pod: &Pod) -> anyhow::Result<Ipv4Addr> {
        let mut states = self.states();
        let st = states
            .get_mut(key)
            .ok_or_else(|| anyhow::anyhow!("pod state vanished"))?;
        if let Some(ip) = st.ip {
            return Ok(ip);
        }
        let node = &self.fleet.nodes[st.node];
        let ip = if host_network(pod) {
            node.ip
        } else {
            let ip = node
                .pod_ips
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .allocate()
                .ok_or_else(|| anyhow::anyhow!("no free pod IP on node {}", node.name))?;
            st.ip_allocated = true;
            ip
        };
        st.ip = Some(ip);
        Ok(ip)
    }

    /// Write the status `mutate` makes of the pod; on 409 re-read and try again.
    /// `Ok(false)`: nothing was written (`mutate` had nothing to do, or the pod is gone
    /// or was replaced).
    async fn write_status(
        &self,
        key: &ObjectKey,
        uid: &str,
        mut pod: Pod,
        mutate: impl Fn(&mut Pod) -> anyhow::Result<bool>,
    ) -> anyhow::Result<bool> {
        let api: Api<Pod> = Api::namespaced(
            self.fleet.client.clone(),
            key.namespace.as_deref().unwrap_or("default"),
        );
        for _ in 0..5 {
            if !mutate(&mut pod)? {
                return Ok(false);
            }
            // A patch of status only, as the kubelet writes it: this pod is the slim copy
            // the fleet keeps (no labels, no owners), and a PUT to /status would write
            // that metadata too. Its resourceVersion keeps the write conditional.
            let patch = json!({
                "metadata": {"resourceVersion": pod.metadata.resource_version},
                "status": pod.status,
            });
            let pp = PatchParams {
                field_manager: post_params().field_manager,
                ..Default::default()
            };
            match api
                .patch_status(&key.name, &pp, &Patch::Merge(&patch))
                .await
            {
                Ok(_) => return Ok(true),
                Err(e) if e.is_conflict() => match api.get_opt(&key.name).await? {
                    Some(p) if p.metadata.uid.as_deref() == Some(uid) => pod = p,
                    _ => return Ok(false),
                },
                Err(e) if e.is_not_found() => return Ok(false),
                Err(e) => return Err(e.into()),
            }
        }
        anyhow::bail!("status of {key}: too many conflicts")
    }

    /// Delete the pod now (as the kubelet does once its containers are stopped).
    async fn delete(&self, pod: &Pod, uid: &str) -> anyhow::Result<()> {
        let api: Api<Pod> = Api::namespaced(
            self.fleet.client.clone(),
            pod.namespace().unwrap_or("default"),
        );
        let dp = DeleteParams::default()
            .grace_period(0)
            .preconditions(Preconditions {
                uid: Some(uid.to_string()),
                resource_version: None,
            });
        match api.delete(pod.name(), &dp).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() || e.is_conflict() => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// The fields the hollow kubelet reads: identity, our annotations, deletion, the
/// containers' names and images, restart policy, host network, and the whole status.
/// Status updates take only the status from the body (the spec is the stored one), so
/// this is also what they send: no managedFields, volumes or env to carry around for
/// 11,000 pods.
fn slim(pod: Pod) -> Pod {
    let Pod {
        metadata: m,
        spec,
        status,
    } = pod;
    let annotations = m.annotations.map(|a| {
        a.into_iter()
            .filter(|(k, _)| k.starts_with("hollow.keelson.dev/"))
            .collect()
    });
    let container = |c: Container| Container {
        name: c.name,
        image: c.image,
        restart_policy: c.restart_policy,
        ..Default::default()
    };
    Pod {
        metadata: ObjectMeta {
            name: m.name,
            namespace: m.namespace,
            uid: m.uid,
            resource_version: m.resource_version,
            annotations,
            deletion_timestamp: m.deletion_timestamp,
            deletion_grace_period_seconds: m.deletion_grace_period_seconds,
            ..Default::default()
        },
        spec: spec.map(|s| PodSpec {
            containers: s.containers.into_iter().map(container).collect(),
            init_containers: s
                .init_containers
                .map(|v| v.into_iter().map(container).collect()),
            node_name: s.node_name,
            restart_policy: s.restart_policy,
            host_network: s.host_network,
            ..Default::default()
        }),
        status,
    }
}

fn status_value(pod: &Pod) -> anyhow::Result<Value> {
    Ok(match &pod.status {
        Some(s) => serde_json::to_value(s)?,
        None => json!({}),
    })
}

/// Set a condition; its lastTransitionTime changes only with its status.
fn set_condition(status: &mut Value, kind: &str, value: &str, reason: Option<&str>, now: &Value) {
    let mut cond =
        json!({"type": kind, "status": value, "lastProbeTime": null, "lastTransitionTime": now});
    if let Some(r) = reason {
        cond["reason"] = json!(r);
    }
    if !status.get("conditions").is_some_and(Value::is_array) {
        status["conditions"] = json!([]);
    }
    let conds = status["conditions"].as_array_mut().expect("array");
    match conds.iter_mut().find(|c| c["type"] == kind) {
        Some(c) => {
            if c["status"] == value {
                if let Some(t) = c.get("lastTransitionTime").filter(|t| !t.is_null()) {
                    cond["lastTransitionTime"] = t.clone();
                }
            }
            *c = cond;
        }
        None => conds.push(cond),
    }
}

/// `status[key] = list`, or no `key` for an empty list.
fn set_list(status: &mut Value, key: &str, list: Vec<Value>) {
    if list.is_empty() {
        status.as_object_mut().map(|o| o.remove(key));
    } else {
        status[key] = Value::Array(list);
    }
}

fn container_names(pod: &Pod, init: bool) -> Vec<(String, String, bool)> {
    let Some(spec) = pod.spec.as_ref() else {
        return Vec::new();
    };
    if init {
        spec.init_containers
            .iter()
            .flatten()
            .map(|c| {
                let sidecar = c.restart_policy.as_deref() == Some("Always");
                (c.name.clone(), c.image.clone().unwrap_or_default(), sidecar)
            })
            .collect()
    } else {
        spec.containers
            .iter()
            .map(|c| (c.name.clone(), c.image.clone().unwrap_or_default(), true))
            .collect()
    }
}

fn container_status(pod: &Pod, name: &str, image: &str, state: Value, ready: bool) -> Value {
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    let running = state.get("running").is_some();
    json!({
        "name": name,
        "image": image,
        "imageID": format!("hollow://{image}"),
        "containerID": format!("hollow://{uid}-{name}"),
        "state": state,
        "lastState": {},
        "ready": ready,
        "started": running,
        "restartCount": 0,
    })
}

/// Running and Ready. `Ok(false)` if the pod is already past that.
fn start_pod(pod: &mut Pod, host_ip: Ipv4Addr, ip: Ipv4Addr) -> anyhow::Result<bool> {
    let phase = phase(pod);
    if phase == "Running" || phase == "Succeeded" || phase == "Failed" {
        return Ok(false);
    }
    let now = now_json();
    let mut st = status_value(pod)?;
    st["phase"] = json!("Running");
    st["hostIP"] = json!(host_ip.to_string());
    st["hostIPs"] = json!([{"ip": host_ip.to_string()}]);
    st["podIP"] = json!(ip.to_string());
    st["podIPs"] = json!([{"ip": ip.to_string()}]);
    if st.get("startTime").is_none_or(Value::is_null) {
        st["startTime"] = now.clone();
    }
    for (kind, value) in [
        ("PodReadyToStartContainers", "True"),
        ("Initialized", "True"),
        ("ContainersReady", "True"),
        ("Ready", "True"),
        ("PodScheduled", "True"),
    ] {
        set_condition(&mut st, kind, value, None, &now);
    }
    let running = json!({"running": {"startedAt": now}});
    let done = |started: &Value| json!({"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": started, "finishedAt": started}});
    set_list(
        &mut st,
        "initContainerStatuses",
        container_names(pod, true)
            .into_iter()
            .map(|(n, image, sidecar)| {
                if sidecar {
                    container_status(pod, &n, &image, running.clone(), true)
                } else {
                    container_status(pod, &n, &image, done(&now), true)
                }
            })
            .collect(),
    );
    set_list(
        &mut st,
        "containerStatuses",
        container_names(pod, false)
            .into_iter()
            .map(|(n, image, _)| container_status(pod, &n, &image, running.clone(), true))
            .collect(),
    );
    pod.status = Some(serde_json::from_value(st)?);
    Ok(true)
}

/// Every container terminated with `exit_code` (sidecars with 0); phase Succeeded if 0,
/// else Failed. `Ok(false)` if the pod already finished.
fn finish_pod(pod: &mut Pod, exit_code: i32) -> anyhow::Result<bool> {
    let phase = phase(pod);
    if phase == "Succeeded" || phase == "Failed" {
        return Ok(false);
    }
    let now = now_json();
    let mut st = status_value(pod)?;
    let started_at = |list: &str, name: &str| -> Value {
        st.get(list)
            .and_then(Value::as_array)
            .and_then(|l| l.iter().find(|c| c["name"] == name))
            .and_then(|c| c.pointer("/state/running/startedAt").cloned())
            .or_else(|| {
                st.get(list)
                    .and_then(Value::as_array)
                    .and_then(|l| l.iter().find(|c| c["name"] == name))
                    .and_then(|c| c.pointer("/state/terminated/startedAt").cloned())
            })
            .unwrap_or_else(|| now.clone())
    };
    let terminated = |code: i32, started: Value| {
        json!({"terminated": {
            "exitCode": code,
            "reason": if code == 0 { "Completed" } else { "Error" },
            "startedAt": started,
            "finishedAt": now,
        }})
    };
    let init: Vec<Value> = container_names(pod, true)
        .into_iter()
        .map(|(n, image, _)| {
            let s = terminated(0, started_at("initContainerStatuses", &n));
            container_status(pod, &n, &image, s, false)
        })
        .collect();
    let main: Vec<Value> = container_names(pod, false)
        .into_iter()
        .map(|(n, image, _)| {
            let s = terminated(exit_code, started_at("containerStatuses", &n));
            container_status(pod, &n, &image, s, false)
        })
        .collect();
    set_list(&mut st, "initContainerStatuses", init);
    set_list(&mut st, "containerStatuses", main);
    st["phase"] = json!(if exit_code == 0 {
        "Succeeded"
    } else {
        "Failed"
    });
    if st.get("startTime").is_none_or(Value::is_null) {
        st["startTime"] = now.clone();
    }
    set_condition(&mut st, "PodReadyToStartContainers", "False", None, &now);
    set_condition(
        &mut st,
        "ContainersReady",
        "False",
        Some("PodCompleted"),
        &now,
    );
    set_condition(&mut st, "Ready", "False", Some("PodCompleted"), &now);
    pod.status = Some(serde_json::from_value(st)?);
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(restart: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
            "spec": {
                "nodeName": "hollow-0",
                "restartPolicy": restart,
                "initContainers": [
                    {"name": "init", "image": "busybox"},
                    {"name": "side", "image": "envoy", "restartPolicy": "Always"},
                ],
                "containers": [{"name": "app", "image": "nginx"}],
            },
            "status": {"phase": "Pending", "qosClass": "BestEffort", "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2020-01-01T00:00:00Z"}
            ]},
        }))
        .unwrap()
    }

    fn cond<'a>(st: &'a Value, kind: &str) -> &'a Value {
        st["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == kind)
            .unwrap_or_else(|| panic!("no {kind} condition in {st}"))
    }

    #[test]
    fn cached_pods_keep_only_what_is_read() {
        let mut p = pod("Never");
        let mut v = serde_json::to_value(&p).unwrap();
        v["metadata"]["annotations"] = json!({EXIT_CODE_ANNOTATION: "2", "other": "x"});
        v["metadata"]["managedFields"] = json!([{"manager": "kubectl"}]);
        v["metadata"]["labels"] = json!({"app": "a"});
        v["spec"]["containers"][0]["env"] = json!([{"name": "A", "value": "1"}]);
        v["spec"]["volumes"] = json!([{"name": "v", "emptyDir": {}}]);
        p = serde_json::from_value(v).unwrap();
        let v = serde_json::to_value(slim(p)).unwrap();
        assert_eq!(
            v["metadata"]["annotations"],
            json!({EXIT_CODE_ANNOTATION: "2"})
        );
        assert!(v["metadata"].get("managedFields").is_none());
        assert!(v["metadata"].get("labels").is_none());
        assert_eq!(v["metadata"]["uid"], "u1");
        assert_eq!(
            v["spec"]["containers"],
            json!([{"name": "app", "image": "nginx"}])
        );
        assert_eq!(v["spec"]["initContainers"][1]["restartPolicy"], "Always");
        assert_eq!(v["spec"]["nodeName"], "hollow-0");
        assert_eq!(v["spec"]["restartPolicy"], "Never");
        assert!(v["spec"].get("volumes").is_none());
        assert_eq!(v["status"]["qosClass"], "BestEffort");
    }

    #[test]
    fn start_then_finish() {
        let mut p = pod("Never");
        let (host, ip) = (Ipv4Addr::new(10, 200, 0, 1), Ipv4Addr::new(10, 64, 0, 1));
        assert!(start_pod(&mut p, host, ip).unwrap());
        let st = serde_json::to_value(&p.status).unwrap();
        assert_eq!(st["phase"], "Running");
        assert_eq!(st["podIP"], "10.64.0.1");
        assert_eq!(st["hostIPs"][0]["ip"], "10.200.0.1");
        assert_eq!(st["qosClass"], "BestEffort", "other fields kept");
        for c in [
            "Ready",
            "ContainersReady",
            "Initialized",
            "PodReadyToStartContainers",
        ] {
            assert_eq!(cond(&st, c)["status"], "True");
        }
        assert_eq!(
            cond(&st, "PodScheduled")["lastTransitionTime"],
            "2020-01-01T00:00:00Z"
        );
        let app = &st["containerStatuses"][0];
        assert_eq!(app["containerID"], "hollow://u1-app");
        assert_eq!(app["ready"], true);
        assert!(app["state"]["running"]["startedAt"].is_string());
        assert!(st["initContainerStatuses"][0]["state"]["terminated"].is_object());
        assert!(st["initContainerStatuses"][1]["state"]["running"].is_object());
        assert!(!start_pod(&mut p, host, ip).unwrap(), "already running");

        assert!(finish_pod(&mut p, 3).unwrap());
        let st = serde_json::to_value(&p.status).unwrap();
        assert_eq!(st["phase"], "Failed");
        let t = &st["containerStatuses"][0]["state"]["terminated"];
        assert_eq!(
            (t["exitCode"].as_i64(), t["reason"].as_str()),
            (Some(3), Some("Error"))
        );
        assert_eq!(cond(&st, "Ready")["status"], "False");
        assert_eq!(cond(&st, "Ready")["reason"], "PodCompleted");
        assert_eq!(st["containerStatuses"][0]["ready"], false);
        assert!(!finish_pod(&mut p, 0).unwrap(), "already finished");

        let mut q = pod("OnFailure");
        start_pod(&mut q, host, ip).unwrap();
        finish_pod(&mut q, 0).unwrap();
        let st = serde_json::to_value(&q.status).unwrap();
        assert_eq!(st["phase"], "Succeeded");
        assert_eq!(
            st["containerStatuses"][0]["state"]["terminated"]["reason"],
            "Completed"
        );
    }
}
