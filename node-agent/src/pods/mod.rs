//! The pods of this node: the kubelet's pod workers, PLEG and status manager.
//!
//! - One watch of the pods bound to this node (`spec.nodeName=<node>`) feeds
//!   [`PodWorkers`]: each pod uid gets a worker task that runs [`sync::sync`] with the
//!   pod's latest copy whenever the pod changes, something wakes it (a probe result, the
//!   PLEG), or its requeue timer fires. A worker never runs two syncs of its pod at once.
//! - The PLEG ([`relist`]) lists sandboxes and containers from the CRI every
//!   `--relist-period` (containerd 1.6 has no CRI event stream) and wakes the workers of
//!   pods whose runtime state changed; runtime pods that no API pod owns (deleted while
//!   the agent was down, or never ours) get a worker that stops and removes them.
//! - The runtime is the source of truth, so a restarted agent adopts running containers:
//!   its workers read them back by their labels and carry on.

pub mod backoff;
pub mod config;
pub mod images;
pub mod probes;
pub mod runtime;
pub mod status;
pub mod sync;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use keelson_client::runtime::watcher::{self, watcher, Event};
use keelson_client::Api;
use tokio::sync::{mpsc, watch, Notify};

use crate::agent::Agent;
use sync::Next;

/// What a worker syncs: the API's latest copy of its pod, or `None` once the API no
/// longer has it.
type Latest = Option<Arc<Pod>>;

struct Worker {
    latest: watch::Sender<Latest>,
    wake: Arc<Notify>,
}

/// The pod workers of this node, by pod uid.
pub struct PodWorkers {
    agent: Arc<Agent>,
    workers: Mutex<HashMap<String, Worker>>,
}

impl PodWorkers {
    pub fn new(agent: Arc<Agent>) -> Arc<PodWorkers> {
        Arc::new(PodWorkers {
            agent,
            workers: Mutex::default(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Worker>> {
        self.workers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The number of pods with a worker.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The pod has changed (or appeared): hand the new copy to its worker.
    pub fn update(self: &Arc<Self>, uid: &str, pod: Latest) {
        let mut all = self.lock();
        if let Some(w) = all.get(uid) {
            let _ = w.latest.send(pod);
            return;
        }
        let (tx, rx) = watch::channel(pod);
        let wake = Arc::new(Notify::new());
        all.insert(
            uid.to_string(),
            Worker {
                latest: tx,
                wake: wake.clone(),
            },
        );
        drop(all);
        let me = self.clone();
        let uid = uid.to_string();
        tokio::spawn(async move { me.run_worker(uid, rx, wake).await });
    }

    /// The API's latest copy of every pod with a worker.
    pub fn pods(&self) -> Vec<Arc<Pod>> {
        self.lock()
            .values()
            .filter_map(|w| w.latest.borrow().clone())
            .collect()
    }

    /// Sync the pod now.
    pub fn wake(&self, uid: &str) {
        if let Some(w) = self.lock().get(uid) {
            w.wake.notify_one();
        }
    }

    pub fn has(&self, uid: &str) -> bool {
        self.lock().contains_key(uid)
    }

    async fn run_worker(
        self: Arc<Self>,
        uid: String,
        mut rx: watch::Receiver<Latest>,
        wake: Arc<Notify>,
    ) {
        // The last copy the API had, for stopping a pod that disappeared from it.
        let mut last_known: Option<Arc<Pod>> = None;
        loop {
            let latest = rx.borrow_and_update().clone();
            if let Some(p) = &latest {
                last_known = Some(p.clone());
            }
            let started = std::time::Instant::now();
            let result = match &latest {
                Some(pod) => sync::sync(&self.agent, pod).await,
                None => {
                    let grace = last_known
                        .as_deref()
                        .map(config::grace_period)
                        .unwrap_or(config::MIN_ORPHAN_GRACE);
                    match self.agent.reader.pod(&uid).await {
                        Ok(rt) => sync::terminate(&self.agent, None, &uid, &rt, grace).await,
                        Err(e) => Err(e),
                    }
                }
            };
            self.agent.metrics.observe_sync(started.elapsed());
            let delay = match result {
                Ok(Next::Finished) => {
                    // Done unless the pod came back meanwhile (a new copy arrived).
                    let mut all = self.lock();
                    if rx.has_changed().unwrap_or(false) {
                        Duration::ZERO
                    } else {
                        all.remove(&uid);
                        return;
                    }
                }
                Ok(Next::After(d)) => d,
                Err(e) => {
                    tracing::warn!(pod = %uid, error = %format!("{e:#}"), "syncing pod failed; retrying");
                    Duration::from_secs(1)
                }
            };
            tokio::select! {
                r = rx.changed() => if r.is_err() { return },
                _ = wake.notified() => {},
                _ = tokio::time::sleep(delay) => {},
            }
        }
    }
}

/// Watch this node's pods and hand every change to the workers; runs until aborted.
pub async fn watch_pods(agent: Arc<Agent>, workers: Arc<PodWorkers>, synced: Arc<Notify>) {
    let api: Api<Pod> = Api::all(agent.client.clone());
    let config = watcher::Config::default()
        .fields(&format!("spec.nodeName={}", agent.node_name))
        .without_managed_fields();
    let stream = watcher(api, config);
    futures::pin_mut!(stream);
    // Pods seen in the current list (a relist drops the ones that went meanwhile).
    let mut listing: Option<HashSet<String>> = None;
    let mut known: HashSet<String> = HashSet::new();
    while let Some(item) = stream.next().await {
        let event = match item {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, "pod watch failed; retrying");
                continue;
            }
        };
        match event {
            Event::Init => listing = Some(HashSet::new()),
            // Mirror pods are the API's view of static pods, which run from their
            // manifests.
            Event::InitApply(p) | Event::Apply(p) | Event::Delete(p)
                if crate::static_pods::is_mirror(&p) => {}
            Event::InitApply(p) => {
                let uid = p.metadata.uid.clone().unwrap_or_default();
                if let Some(l) = listing.as_mut() {
                    l.insert(uid.clone());
                }
                known.insert(uid.clone());
                workers.update(&uid, Some(Arc::new(p)));
            }
            Event::InitDone => {
                if let Some(l) = listing.take() {
                    for gone in known.difference(&l).cloned().collect::<Vec<_>>() {
                        workers.update(&gone, None);
                        known.remove(&gone);
                    }
                }
                synced.notify_waiters();
                synced.notify_one();
            }
            Event::Apply(p) => {
                let uid = p.metadata.uid.clone().unwrap_or_default();
                known.insert(uid.clone());
                workers.update(&uid, Some(Arc::new(p)));
            }
            Event::Delete(p) => {
                let uid = p.metadata.uid.clone().unwrap_or_default();
                known.remove(&uid);
                workers.update(&uid, None);
            }
        }
    }
}

/// The PLEG: relist the runtime every `period`, wake the workers of pods whose
/// containers or sandboxes changed, and give orphaned runtime pods a worker that
/// removes them. Wake-ups from probes arrive on `wake_rx`. Runs until aborted.
pub async fn relist(
    agent: Arc<Agent>,
    workers: Arc<PodWorkers>,
    mut wake_rx: mpsc::UnboundedReceiver<String>,
    synced: Arc<Notify>,
) {
    // Orphans are only judged once the pod list has been read.
    synced.notified().await;
    let mut previous: HashMap<String, Vec<(String, runtime::State, bool)>> = HashMap::new();
    let mut relists: u64 = 0;
    let mut ticker = tokio::time::interval(agent.opts.relist_period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            Some(uid) = wake_rx.recv() => {
                workers.wake(&uid);
                continue;
            }
        }
        let started = std::time::Instant::now();
        let snapshot = match agent.reader.all().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "relisting the runtime failed");
                continue;
            }
        };
        agent.metrics.observe_relist(started.elapsed());
        let mut current = HashMap::new();
        let mut running = 0;
        for (uid, pod) in &snapshot {
            let mut fingerprint: Vec<(String, runtime::State, bool)> = pod
                .containers
                .iter()
                .map(|c| (c.id.clone(), c.state, false))
                .chain(
                    pod.sandboxes
                        .iter()
                        .map(|s| (s.id.clone(), runtime::State::Unknown, s.ready)),
                )
                .collect();
            fingerprint.sort_by(|a, b| a.0.cmp(&b.0));
            if pod.sandboxes.iter().any(|s| s.ready) {
                running += 1;
            }
            if previous.get(uid) != Some(&fingerprint) {
                if workers.has(uid) {
                    workers.wake(uid);
                } else {
                    tracing::info!(pod = %uid, "runtime pod without an API pod: stopping it");
                    workers.update(uid, None);
                }
            }
            current.insert(uid.clone(), fingerprint);
        }
        agent.metrics.running_pods.set(running);
        relists += 1;
        if relists % 30 == 1 {
            cleanup_orphaned_pod_dirs(&agent, &workers, &snapshot);
        }
        agent
            .metrics
            .running_containers
            .set(snapshot.values().map(|p| p.running().count() as i64).sum());
        previous = current;
    }
}

/// Remove the directories (volumes first) of pods that neither the API nor the runtime
/// has any more: left by an agent that stopped half-way, or by pods removed behind its
/// back (the kubelet's `cleanupOrphanedPodDirs`).
fn cleanup_orphaned_pod_dirs(agent: &Agent, workers: &PodWorkers, snapshot: &runtime::Snapshot) {
    let Ok(entries) = std::fs::read_dir(agent.opts.root_dir.join("pods")) else {
        return;
    };
    for e in entries.flatten() {
        let uid = e.file_name().to_string_lossy().to_string();
        if workers.has(&uid) || snapshot.contains_key(&uid) {
            continue;
        }
        match agent.volumes.teardown(&uid) {
            Ok(()) => {
                let _ = std::fs::remove_dir_all(e.path());
                tracing::info!(pod = %uid, "removed an orphaned pod directory");
            }
            Err(err) => tracing::warn!(pod = %uid, error = %err, "orphaned pod directory"),
        }
    }
}
