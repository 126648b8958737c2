//! The scheduling loop: one task that owns the cache and the queue.
//!
//! Each turn it applies every informer event that has arrived (nodes, namespaces,
//! pods) and every finished write, moves due pods out of backoff, then schedules the
//! next pod synchronously against the cache, assumes it on the chosen node and starts
//! its binding on a task of its own (up to `max_inflight_bindings` at once), and goes
//! on with the next pod. With nothing to do it sleeps until an event, a finished
//! write, or the next backoff or flush deadline.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use keelson_client::runtime::{watcher, Notification, SharedInformer, Store};
use keelson_client::{Api, Client};
use tokio::task::JoinSet;

use crate::algorithm::{Algorithm, Failure};
use crate::api;
use crate::cache::{Cache, NodeChange};
use crate::config::SchedulerConfig;
use crate::events::{EventKey, EventWrite, Recorder};
use crate::fit_error::NO_NODES;
use crate::framework::{Framework, PluginSet, ALL_PLUGINS};
use crate::metrics::{Metrics, Outcome};
use crate::podinfo::PodInfo;
use crate::preemption::{self, Budget, Preemption};
use crate::queue::{QueueConfig, SchedulingQueue};

/// A finished background write.
enum Done {
    Bound {
        pod: Arc<PodInfo>,
        node: String,
        started: Instant,
        result: keelson_client::Result<()>,
    },
    EventCreated {
        key: EventKey,
        name: Option<String>,
    },
    /// A repeat found its Event gone (expired or deleted): the next one starts afresh.
    EventGone(EventKey),
    Other,
}

/// Which unschedulable pods a cluster event may help (by the filters that rejected them).
struct Masks {
    assigned_pod_added: PluginSet,
    assigned_pod_deleted: PluginSet,
    namespace_changed: PluginSet,
}

/// What woke the loop.
enum Wake {
    Pod(Notification<Pod>),
    Node(Notification<Node>),
    Namespace(Notification<Namespace>),
    Done(Result<Done, tokio::task::JoinError>),
    Timer,
}

pub(crate) struct Loop {
    client: Client,
    cfg: SchedulerConfig,
    metrics: Metrics,
    cache: Cache,
    queue: SchedulingQueue,
    alg: Algorithm,
    recorder: Recorder,
    tasks: JoinSet<Done>,
    bindings: usize,
    masks: Masks,
    /// PodDisruptionBudgets, read only when preempting (a lister, as in Kubernetes).
    budgets: Store<PodDisruptionBudget>,
}

type Changes<K> = BoxStream<'static, Notification<K>>;

/// Start the informers and run the loop until the future is dropped.
pub(crate) async fn run(client: Client, cfg: SchedulerConfig, metrics: Metrics) {
    // Terminal pods hold nothing; Kubernetes' scheduler does not watch them either.
    let pods = SharedInformer::new(
        Api::<Pod>::all(client.clone()),
        watcher::Config::default().fields("status.phase!=Succeeded,status.phase!=Failed"),
    );
    let nodes = SharedInformer::new(Api::<Node>::all(client.clone()), watcher::Config::default());
    let namespaces = SharedInformer::new(
        Api::<Namespace>::all(client.clone()),
        watcher::Config::default(),
    );
    let budgets = SharedInformer::new(
        Api::<PodDisruptionBudget>::all(client.clone()),
        watcher::Config::default(),
    );
    let mut changes = (
        pods.subscribe().boxed(),
        nodes.subscribe().boxed(),
        namespaces.subscribe().boxed(),
    );
    // Schedule nothing before the cluster is known, or nodes would look emptier than
    // they are.
    tokio::join!(
        pods.wait_for_sync(),
        nodes.wait_for_sync(),
        namespaces.wait_for_sync(),
        budgets.wait_for_sync()
    );
    tracing::info!(scheduler = %cfg.scheduler_name, "caches synced; scheduling");
    let mut lp = Loop::new(client, cfg, metrics, budgets.store());
    lp.run(&mut changes).await;
}

impl Loop {
    fn new(
        client: Client,
        cfg: SchedulerConfig,
        metrics: Metrics,
        budgets: Store<PodDisruptionBudget>,
    ) -> Loop {
        let framework = Framework::default();
        let masks = Masks {
            assigned_pod_added: framework.plugin_set(&["InterPodAffinity", "PodTopologySpread"]),
            assigned_pod_deleted: framework.plugin_set(&[
                "NodeResourcesFit",
                "NodePorts",
                "InterPodAffinity",
                "PodTopologySpread",
            ]),
            namespace_changed: framework.plugin_set(&["InterPodAffinity"]),
        };
        Loop {
            queue: SchedulingQueue::new(QueueConfig {
                initial_backoff: cfg.pod_initial_backoff,
                max_backoff: cfg.pod_max_backoff,
                max_unschedulable: cfg.max_unschedulable_duration,
            }),
            alg: Algorithm::new(framework, cfg.percentage_of_nodes_to_score, cfg.parallelism),
            recorder: Recorder::new(&cfg.scheduler_name),
            cache: Cache::default(),
            tasks: JoinSet::new(),
            bindings: 0,
            masks,
            budgets,
            client,
            cfg,
            metrics,
        }
    }

    async fn run(&mut self, changes: &mut (Changes<Pod>, Changes<Node>, Changes<Namespace>)) {
        loop {
            self.drain(changes);
            self.queue.flush();
            let (a, b, u) = self.queue.lengths();
            self.metrics.pending(a, b, u);
            if self.bindings < self.cfg.max_inflight_bindings.max(1) {
                if let Some(pod) = self.queue.pop() {
                    self.schedule_one(pod);
                    // Let the bindings (and, on a single-threaded runtime, everything
                    // else) make progress between pods.
                    tokio::task::yield_now().await;
                    continue;
                }
            }
            let deadline = self
                .queue
                .next_deadline()
                .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(60));
            let (pods, nodes, namespaces) = changes;
            let wake = tokio::select! {
                Some(c) = pods.next() => Wake::Pod(c),
                Some(c) = nodes.next() => Wake::Node(c),
                Some(c) = namespaces.next() => Wake::Namespace(c),
                Some(d) = self.tasks.join_next(), if !self.tasks.is_empty() => Wake::Done(d),
                _ = tokio::time::sleep_until(deadline) => Wake::Timer,
            };
            self.handle(wake);
        }
    }

    /// Apply everything that is ready, without waiting.
    fn drain(
        &mut self,
        (pods, nodes, namespaces): &mut (Changes<Pod>, Changes<Node>, Changes<Namespace>),
    ) {
        loop {
            let mut any = false;
            while let Some(Some(c)) = nodes.next().now_or_never() {
                self.handle(Wake::Node(c));
                any = true;
            }
            while let Some(Some(c)) = namespaces.next().now_or_never() {
                self.handle(Wake::Namespace(c));
                any = true;
            }
            while let Some(Some(c)) = pods.next().now_or_never() {
                self.handle(Wake::Pod(c));
                any = true;
            }
            while let Some(Some(d)) = self.tasks.join_next().now_or_never() {
                self.handle(Wake::Done(d));
                any = true;
            }
            if !any {
                return;
            }
        }
    }

    fn handle(&mut self, wake: Wake) {
        match wake {
            Wake::Pod(Notification::Added(p)) => self.pod_seen(None, p),
            Wake::Pod(Notification::Updated { old, new }) => self.pod_seen(Some(old), new),
            Wake::Pod(Notification::Deleted(p)) => self.pod_deleted(&p),
            Wake::Node(Notification::Added(n) | Notification::Updated { new: n, .. }) => {
                if self.cache.upsert_node(&n) != NodeChange::Unchanged {
                    self.queue.move_all(ALL_PLUGINS);
                }
            }
            Wake::Node(Notification::Deleted(n)) => {
                self.cache
                    .remove_node(n.metadata.name.as_deref().unwrap_or_default());
            }
            Wake::Namespace(Notification::Added(ns) | Notification::Updated { new: ns, .. }) => {
                let name = ns.metadata.name.clone().unwrap_or_default();
                let labels = ns.metadata.labels.clone().unwrap_or_default();
                if self.cache.set_namespace(&name, labels) {
                    self.queue.move_all(self.masks.namespace_changed);
                }
            }
            Wake::Namespace(Notification::Deleted(ns)) => {
                self.cache
                    .remove_namespace(ns.metadata.name.as_deref().unwrap_or_default());
            }
            Wake::Done(Ok(done)) => self.finished(done),
            Wake::Done(Err(e)) => tracing::error!(error = %e, "scheduler write task failed"),
            Wake::Timer => {}
        }
    }

    fn responsible(&self, p: &PodInfo) -> bool {
        p.scheduler_name == self.cfg.scheduler_name && !p.terminating && !p.gated
    }

    fn pod_seen(&mut self, old: Option<Arc<Pod>>, pod: Arc<Pod>) {
        let info = Arc::new(PodInfo::new(pod.clone()));
        let uid = info.uid.clone();
        if !info.node_name.is_empty() {
            // Bound: by this scheduler (confirming what it assumed) or by anyone else.
            let ours = self.cache.is_assumed(&uid);
            let labels_changed = old
                .as_ref()
                .is_some_and(|o| o.metadata.labels != pod.metadata.labels);
            let was_bound = old
                .as_ref()
                .and_then(|o| o.spec.as_ref())
                .is_some_and(|s| s.node_name.as_deref().is_some_and(|n| !n.is_empty()));
            self.cache.add_pod(info);
            self.queue.remove(&uid);
            self.recorder.forget_pod(&uid);
            if (!ours && !was_bound) || labels_changed {
                self.queue.move_all(self.masks.assigned_pod_added);
            }
            return;
        }
        if self.cache.is_assumed(&uid) {
            // Its binding is being written; this is news from before it.
            return;
        }
        if !self.responsible(&info) {
            self.queue.remove(&uid);
            self.cache.remove_nomination(&uid);
            return;
        }
        match self.cache.node_index(&info.nominated_node) {
            Some(i) => self.cache.nominate(info.clone(), i),
            None => self.cache.remove_nomination(&uid),
        }
        let changed = old.is_none_or(|o| {
            o.spec != pod.spec
                || o.metadata.labels != pod.metadata.labels
                || o.metadata.annotations != pod.metadata.annotations
        });
        self.queue.add_or_update(info, changed);
    }

    fn pod_deleted(&mut self, pod: &Pod) {
        let uid = pod.metadata.uid.as_deref().unwrap_or_default();
        self.queue.remove(uid);
        self.recorder.forget_pod(uid);
        if self.cache.remove_pod(uid) {
            self.queue.move_all(self.masks.assigned_pod_deleted);
        }
    }

    fn schedule_one(&mut self, pod: Arc<PodInfo>) {
        let started = Instant::now();
        match self.alg.schedule(&self.cache, &pod) {
            Ok(i) => {
                let node = self.cache.node(i).name.clone();
                tracing::debug!(pod = %pod.key(), %node, "scheduled");
                self.cache.assume(pod.clone(), i);
                self.bindings += 1;
                let client = self.client.clone();
                self.tasks.spawn(async move {
                    let result = api::bind(client, &pod, &node).await;
                    Done::Bound {
                        pod,
                        node,
                        started,
                        result,
                    }
                });
            }
            Err(Failure::NoNodes) => {
                self.unschedulable(pod, started, NO_NODES.to_string(), None, ALL_PLUGINS)
            }
            Err(Failure::Fit(mut err, state)) => {
                let fw = &self.alg.framework;
                let plugins = err.diagnosis.plugins(|n| fw.plugin_bit(n));
                self.metrics.preemption_attempt();
                let outcome = {
                    let fw = &self.alg.framework;
                    let mut rng = rand::rng();
                    let budgets: Vec<Budget> = self
                        .budgets
                        .list()
                        .iter()
                        .filter_map(|b| Budget::new(b))
                        .collect();
                    preemption::preempt(
                        fw,
                        &self.cache,
                        &pod,
                        &state,
                        &err.diagnosis,
                        &budgets,
                        &mut rng,
                    )
                };
                let mut pod = pod;
                let nominated = match outcome {
                    Preemption::NotEligible(msg) => {
                        err.diagnosis.post_filter_msg = format!("preemption: {msg}");
                        None
                    }
                    Preemption::Failed(msg) => {
                        err.diagnosis.post_filter_msg = format!("preemption: {msg}");
                        self.cache.remove_nomination(&pod.uid);
                        (!pod.nominated_node.is_empty()).then(|| {
                            pod = with_nomination(&pod, "");
                            String::new()
                        })
                    }
                    Preemption::Nominated { node, victims } => {
                        let name = self.cache.node(node).name.clone();
                        self.start_preemption(&pod, &name, victims);
                        pod = with_nomination(&pod, &name);
                        self.cache.nominate(pod.clone(), node);
                        Some(name)
                    }
                };
                let message = err.to_string();
                self.unschedulable(pod, started, message, nominated, plugins);
            }
        }
    }

    /// Delete the victims (each on a task) and tell them why.
    fn start_preemption(&mut self, preemptor: &PodInfo, node: &str, victims: Vec<Arc<PodInfo>>) {
        tracing::info!(pod = %preemptor.key(), %node, victims = victims.len(), "preempting");
        for v in victims {
            let client = self.client.clone();
            let name = self.cfg.scheduler_name.clone();
            let message = format!("Preempted by pod {} on node {node}", preemptor.uid);
            let write = self.recorder.record(&v, "Normal", "Preempted", &message);
            self.spawn_event(write);
            self.tasks.spawn(async move {
                if let Err(e) = api::preempt_victim(client, &v, &name).await {
                    tracing::warn!(victim = %v.key(), error = %e, "preempting");
                }
                Done::Other
            });
        }
    }

    fn unschedulable(
        &mut self,
        pod: Arc<PodInfo>,
        started: Instant,
        message: String,
        nominated: Option<String>,
        plugins: PluginSet,
    ) {
        tracing::debug!(pod = %pod.key(), %message, "unschedulable");
        self.metrics
            .attempt(Outcome::Unschedulable, started.elapsed().as_secs_f64());
        if !api::status_is_current(&pod.pod, &message, nominated.as_deref()) {
            let (client, p, m) = (self.client.clone(), pod.clone(), message.clone());
            self.tasks.spawn(async move {
                if let Err(e) = api::mark_unschedulable(client, &p, m, nominated).await {
                    if !e.is_not_found() {
                        tracing::warn!(pod = %p.key(), error = %e, "updating PodScheduled");
                    }
                }
                Done::Other
            });
        }
        let write = self
            .recorder
            .record(&pod, "Warning", "FailedScheduling", &message);
        self.spawn_event(write);
        self.queue.unschedulable(pod, plugins);
    }

    fn spawn_event(&mut self, write: Option<EventWrite>) {
        let client = self.client.clone();
        match write {
            None => {}
            Some(EventWrite::Create { key, event }) => {
                self.tasks.spawn(async move {
                    let name = match api::create_event(client, *event).await {
                        Ok(n) => Some(n),
                        Err(e) => {
                            tracing::debug!(error = %e, "creating event");
                            None
                        }
                    };
                    Done::EventCreated { key, name }
                });
            }
            Some(EventWrite::Repeat {
                key,
                ns,
                name,
                count,
            }) => {
                self.tasks.spawn(async move {
                    match api::repeat_event(client, &ns, &name, count).await {
                        Err(e) if e.is_not_found() => Done::EventGone(key),
                        Err(e) => {
                            tracing::debug!(error = %e, "updating event");
                            Done::Other
                        }
                        Ok(()) => Done::Other,
                    }
                });
            }
        }
    }

    fn finished(&mut self, done: Done) {
        match done {
            Done::Bound {
                pod,
                node,
                started,
                result,
            } => {
                self.bindings -= 1;
                let seconds = started.elapsed().as_secs_f64();
                match result {
                    Ok(()) => {
                        self.queue.done(&pod.uid);
                        self.recorder.forget_pod(&pod.uid);
                        self.metrics.attempt(Outcome::Scheduled, seconds);
                        // Once per pod, so it bypasses the correlator (which would keep
                        // an entry for a pod it never hears of again).
                        let message = format!(
                            "Successfully assigned {}/{} to {node}",
                            pod.namespace, pod.name
                        );
                        let event = api::pod_event(
                            &pod,
                            "Normal",
                            "Scheduled",
                            &message,
                            &self.cfg.scheduler_name,
                        );
                        let client = self.client.clone();
                        self.tasks.spawn(async move {
                            if let Err(e) = api::create_event(client, event).await {
                                tracing::debug!(error = %e, "creating the Scheduled event");
                            }
                            Done::Other
                        });
                    }
                    Err(e) => {
                        tracing::warn!(pod = %pod.key(), %node, error = %e, "binding failed");
                        self.metrics.attempt(Outcome::Error, seconds);
                        self.cache.forget(&pod.uid);
                        if e.is_not_found() {
                            self.queue.remove(&pod.uid);
                        } else {
                            self.queue.error(&pod.uid);
                        }
                        self.queue.move_all(self.masks.assigned_pod_deleted);
                    }
                }
            }
            Done::EventCreated { key, name } => self.recorder.created(key, name),
            Done::EventGone(key) => self.recorder.gone(key),
            Done::Other => {}
        }
    }
}

/// The pod with `status.nominatedNodeName` as the scheduler just set it.
fn with_nomination(pod: &PodInfo, node: &str) -> Arc<PodInfo> {
    let mut p = pod.clone();
    p.nominated_node = node.to_string();
    Arc::new(p)
}
