//! ResourceQuota: `status.hard` is `spec.hard`, and `status.used` is what the objects in
//! the quota's namespace (those its scopes select) use of each limited resource,
//! counted the way the apiserver's quota admission counts (`keelson_resources::quota`).
//! Kinds are found through discovery, so `count/<resource>.<group>` counts custom
//! resources too.
//!
//! Admission charges `status.used` as objects are created; this controller recounts
//! when objects go away or stop counting (a pod finishes), when a quota changes, and
//! every five minutes. Each kind a quota limits is watched once a quota asks for it:
//! pods, Services and quotas through the shared informers, other kinds (ConfigMaps,
//! Secrets, claims, `count/<resource>.<group>`) through a dynamic informer of their own.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, ResourceQuota, ResourceQuotaStatus, Service};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as Amount;
use keelson_apimachinery::quantity::Quantity;
use keelson_client::runtime::{watcher, HandlerFuncs, SharedInformer, Store};
use keelson_client::{Api, Discovery, DynamicObject, KubeObject, ObjectKey, PostParams};
use keelson_component::{Queue, Requeue};
use keelson_resources::quota::{counted_kind, list_from_json, matches_scopes, usage, ResourceList};
use serde::Serialize;
use serde_json::Value;

use crate::Context;

/// Kubernetes' `--resource-quota-sync-period` default.
const RESYNC: Duration = Duration::from_secs(300);

/// (group, plural)
type Kind = (String, String);

/// The objects of one kind, as JSON for the shared quota evaluators.
trait Objects: Send + Sync {
    fn in_namespace(&self, ns: &str) -> Vec<Value>;
    fn synced(&self) -> bool;
}

impl<K: KubeObject + Serialize> Objects for Store<K> {
    fn in_namespace(&self, ns: &str) -> Vec<Value> {
        self.list_namespace(ns)
            .iter()
            .filter_map(|o| serde_json::to_value(&**o).ok())
            .collect()
    }
    fn synced(&self) -> bool {
        self.has_synced()
    }
}

struct Monitor {
    objects: Arc<dyn Objects>,
    /// A dynamic informer lives as long as its monitor.
    _informer: Option<Arc<SharedInformer<DynamicObject>>>,
}

struct Controller {
    ctx: Context,
    quotas: Store<ResourceQuota>,
    queue: Queue<ObjectKey>,
    monitors: Mutex<HashMap<Kind, Monitor>>,
}

fn now_unix() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// The kinds a quota limits.
fn kinds_of(quota: &ResourceQuota) -> Vec<Kind> {
    let mut kinds: Vec<Kind> = quota
        .spec
        .iter()
        .flat_map(|s| s.hard.iter().flatten())
        .filter_map(|(name, _)| counted_kind(name))
        .collect();
    kinds.sort();
    kinds.dedup();
    kinds
}

pub async fn run(ctx: Context) {
    let informer = ctx.informers.get::<ResourceQuota>();
    let queue: Queue<ObjectKey> = Queue::new("resourcequota_primary", &ctx.queue_metrics);
    let c = Arc::new(Controller {
        ctx: ctx.clone(),
        quotas: informer.store(),
        queue: queue.clone(),
        monitors: Mutex::default(),
    });
    let quotas_kind: Kind = (String::new(), "resourcequotas".into());
    let (c1, c2, c3) = (c.clone(), c.clone(), c.clone());
    let (k1, k2) = (quotas_kind.clone(), quotas_kind);
    informer.add_handler(
        HandlerFuncs::new()
            .on_add(move |q: Arc<ResourceQuota>| {
                c1.queue.add(q.key());
                c1.replenish(q.namespace().unwrap_or_default(), &k1);
            })
            .on_update(move |old: Arc<ResourceQuota>, new: Arc<ResourceQuota>| {
                // Our own status writes come back here: recount only for spec changes.
                let hard = |q: &ResourceQuota| q.spec.as_ref().and_then(|s| s.hard.clone());
                let status_hard = new.status.as_ref().and_then(|s| s.hard.clone());
                if old.spec != new.spec || status_hard != hard(&new) {
                    c2.queue.add(new.key());
                }
            })
            .on_delete(move |q: Arc<ResourceQuota>| {
                c3.replenish(q.namespace().unwrap_or_default(), &k2)
            }),
    );
    informer.wait_for_sync().await;
    let workers = ctx.options.concurrent_syncs;
    queue
        .run(workers, move |key| {
            let c = c.clone();
            async move { c.sync(&key).await }
        })
        .await;
}

impl Controller {
    /// Recount the quotas of `ns` that limit `kind` (an object of it came, went or
    /// changed its usage).
    fn replenish(&self, ns: &str, kind: &Kind) {
        for q in self.quotas.list_namespace(ns) {
            if kinds_of(&q).contains(kind) {
                self.queue.add(q.key());
            }
        }
    }

    /// The objects of `kind`, watched from now on. `None` for kinds not served
    /// (`served`: discovery, read when a kind without a monitor is asked for).
    fn monitor(
        self: &Arc<Self>,
        kind: &Kind,
        served: Option<&Discovery>,
    ) -> Option<Arc<dyn Objects>> {
        let mut monitors = self.monitors.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = monitors.get(kind) {
            return Some(m.objects.clone());
        }
        let monitor = match (kind.0.as_str(), kind.1.as_str()) {
            ("", "pods") => self.typed::<Pod>(kind),
            ("", "services") => self.typed::<Service>(kind),
            ("", "resourcequotas") => Monitor {
                objects: Arc::new(self.quotas.clone()),
                _informer: None,
            },
            (group, plural) => {
                let resource = served?
                    .resource(group, plural)
                    .filter(|r| r.resource.namespaced && r.supports(&["list", "watch"]))?
                    .resource
                    .clone();
                let api: Api<DynamicObject> = Api::all_with(self.ctx.client.clone(), &resource);
                let informer = Arc::new(SharedInformer::new(api, watcher::Config::default()));
                self.watch(&informer, kind);
                Monitor {
                    objects: Arc::new(informer.store()),
                    _informer: Some(informer),
                }
            }
        };
        let objects = monitor.objects.clone();
        monitors.insert(kind.clone(), monitor);
        Some(objects)
    }

    fn typed<K>(self: &Arc<Self>, kind: &Kind) -> Monitor
    where
        K: KubeObject + k8s_openapi::Resource + Serialize,
    {
        let informer = self.ctx.informers.get::<K>();
        self.watch(&informer, kind);
        Monitor {
            objects: Arc::new(informer.store()),
            _informer: None,
        }
    }

    /// Replenish when an object goes, and on updates that change what it uses (a pod
    /// finishing, a claim growing).
    fn watch<K: KubeObject + Serialize>(
        self: &Arc<Self>,
        informer: &SharedInformer<K>,
        kind: &Kind,
    ) {
        // No recount on add: admission charged the quota before the object was
        // written, and a recount from a cache that has not seen the object yet would
        // lower `used` and let the next create overshoot (Kubernetes replenishes only
        // on deletes and usage changes too).
        let (c2, c3) = (self.clone(), self.clone());
        let (k2, k3) = (kind.clone(), kind.clone());
        informer.add_handler(
            HandlerFuncs::new()
                .on_update(move |old: Arc<K>, new: Arc<K>| {
                    let ns = new.namespace().unwrap_or_default();
                    let relevant = c2
                        .quotas
                        .list_namespace(ns)
                        .iter()
                        .any(|q| kinds_of(q).contains(&k2));
                    if !relevant {
                        return;
                    }
                    let now = now_unix();
                    let used = |o: &K| {
                        let v = serde_json::to_value(o).unwrap_or_default();
                        usage(&k2.0, &k2.1, &v, now)
                    };
                    if used(&old) != used(&new) {
                        c2.replenish(ns, &k2);
                    }
                })
                .on_delete(move |o: Arc<K>| c3.replenish(o.namespace().unwrap_or_default(), &k3)),
        );
    }

    async fn sync(self: &Arc<Self>, key: &ObjectKey) -> anyhow::Result<Requeue> {
        if self.quotas.get(key).is_none() {
            return Ok(None);
        }
        let ns = key.namespace.as_deref().unwrap_or_default();
        let api: Api<ResourceQuota> = Api::namespaced(self.ctx.client.clone(), ns);
        // Admission charges status.used on every create, so the cached quota is often
        // behind; start from the stored one, or every write would conflict and back off.
        let quota = match api.get(&key.name).await {
            Ok(q) => Arc::new(q),
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let quota_json = serde_json::to_value(&*quota)?;
        let spec_hard = quota
            .spec
            .as_ref()
            .and_then(|s| s.hard.clone())
            .unwrap_or_default();
        let hard = list_from_json(quota_json.pointer("/spec/hard"));
        let previous = list_from_json(quota_json.pointer("/status/used"));

        // The limited names, by the kind they count.
        let mut by_kind: BTreeMap<Kind, Vec<&str>> = BTreeMap::new();
        for name in hard.keys() {
            if let Some(kind) = counted_kind(name) {
                by_kind.entry(kind).or_default().push(name);
            }
        }
        // Kinds without a monitor yet (custom resources included) are found through
        // discovery.
        let unwatched = {
            let monitors = self.monitors.lock().unwrap_or_else(|e| e.into_inner());
            by_kind.keys().any(|k| !monitors.contains_key(k))
        };
        let served = match unwatched {
            true => Some(self.ctx.client.discover().await?),
            false => None,
        };
        let mut used = ResourceList::new();
        let now = now_unix();
        for (kind, names) in &by_kind {
            let Some(objects) = self.monitor(kind, served.as_ref()) else {
                continue;
            };
            if !objects.synced() {
                return Ok(Some(Duration::from_millis(200)));
            }
            for name in names {
                used.insert(name.to_string(), Quantity::zero());
            }
            for obj in objects.in_namespace(ns) {
                if !matches_scopes(&quota_json, &kind.0, &kind.1, &obj) {
                    continue;
                }
                for (r, q) in usage(&kind.0, &kind.1, &obj, now) {
                    if let Some(total) = used.get_mut(&r) {
                        *total = keelson_resources::quota::add(total, &q);
                    }
                }
            }
        }
        // What no evaluator counts keeps its last observed value, as in Kubernetes.
        for name in hard.keys() {
            if !used.contains_key(name) {
                if let Some(q) = previous.get(name) {
                    used.insert(name.clone(), *q);
                }
            }
        }

        let status = quota.status.clone().unwrap_or_default();
        let same_hard =
            list_from_json(quota_json.pointer("/status/hard")) == hard && status.hard.is_some();
        if same_hard && status.used.is_some() && previous == used {
            return Ok(Some(RESYNC));
        }
        let mut updated = (*quota).clone();
        updated.status = Some(ResourceQuotaStatus {
            hard: Some(spec_hard),
            used: Some(
                used.iter()
                    .map(|(k, v)| (k.clone(), Amount(v.canonical())))
                    .collect(),
            ),
        });
        match api
            .replace_status(&key.name, &PostParams::default(), &updated)
            .await
        {
            // A recount below what admission had charged may come from a pod cache
            // that has not seen the newest objects yet: look again shortly, once the
            // caches (and our own write) have caught up, not in five minutes.
            Ok(_)
                if used
                    .iter()
                    .any(|(k, v)| previous.get(k).is_some_and(|p| v < p)) =>
            {
                Ok(Some(Duration::from_secs(1)))
            }
            Ok(_) => Ok(Some(RESYNC)),
            Err(e) if e.is_not_found() => Ok(None),
            // Admission charged the quota meanwhile: recount from the newer version.
            Err(e) => Err(e.into()),
        }
    }
}
