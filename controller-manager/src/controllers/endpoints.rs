//! Endpoints: for every Service with a selector, an Endpoints object of the same name
//! listing the selected pods' addresses (ready ones in `addresses`, the others in
//! `notReadyAddresses`) with the Service's ports resolved per pod.
//!
//! Services without a selector keep the Endpoints their owner writes by hand (this is
//! also how `default/kubernetes`, written by the apiserver, is left alone).

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Pod, Service,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use keelson_client::runtime::{HandlerFuncs, Store};
use keelson_client::{Api, DeleteParams, KubeObject, ObjectKey, PostParams};
use keelson_component::{Queue, Requeue};

use crate::common::pods;
use crate::common::service_pods::{self as sp, ResolvedPort, TriggerTimes};
use crate::Context;

/// Kubernetes truncates Endpoints past this many addresses (EndpointSlices scale).
const MAX_ADDRESSES: usize = 1000;
const OVER_CAPACITY_ANNOTATION: &str = "endpoints.kubernetes.io/over-capacity";

struct Controller {
    ctx: Context,
    services: Store<Service>,
    pods: Store<Pod>,
    endpoints: Store<Endpoints>,
    times: TriggerTimes,
}

pub async fn run(ctx: Context) {
    let queue: Queue<ObjectKey> = Queue::new("endpoint", &ctx.queue_metrics);
    let times = TriggerTimes::default();
    sp::watch_services_and_pods(&ctx, &queue, &times);
    let endpoints = ctx.informers.get::<Endpoints>();
    // Someone deleted our Endpoints: write them again.
    let q = queue.clone();
    endpoints.add_handler(HandlerFuncs::new().on_delete(move |e: Arc<Endpoints>| q.add(e.key())));
    let c = Arc::new(Controller {
        services: ctx.informers.get::<Service>().store(),
        pods: ctx.informers.get::<Pod>().store(),
        endpoints: endpoints.store(),
        ctx: ctx.clone(),
        times,
    });
    ctx.informers.wait_for_sync::<Service>().await;
    ctx.informers.wait_for_sync::<Pod>().await;
    endpoints.wait_for_sync().await;
    // Endpoints left over from Services deleted while we were not running.
    for e in c.endpoints.list() {
        if c.services.get(&e.key()).is_none() && !is_leader_lock(&e) {
            queue.add(e.key());
        }
    }
    queue
        .run(ctx.options.concurrent_syncs, move |key| {
            let c = c.clone();
            async move { c.sync(&key).await }
        })
        .await;
}

/// Old leader-election locks are Endpoints without a Service; never delete them.
fn is_leader_lock(e: &Endpoints) -> bool {
    e.metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key("control-plane.alpha.kubernetes.io/leader"))
}

impl Controller {
    async fn sync(&self, key: &ObjectKey) -> anyhow::Result<Requeue> {
        let trigger = self.times.take(key);
        let ns = key.namespace.as_deref().unwrap_or_default();
        let api: Api<Endpoints> = Api::namespaced(self.ctx.client.clone(), ns);
        let Some(svc) = self.services.get(key) else {
            // The Service is gone: so are its Endpoints.
            if self.endpoints.get(key).is_some_and(|e| !is_leader_lock(&e)) {
                match api.delete(&key.name, &DeleteParams::default()).await {
                    Err(e) if !e.is_not_found() => return Err(e.into()),
                    _ => {}
                }
            }
            return Ok(None);
        };
        let Some(selector) = sp::selector(&svc) else {
            return Ok(None);
        };
        let (subsets, truncated) = self.subsets(&svc, &selector);
        let current = self.endpoints.get(key);

        let mut labels = svc.metadata.labels.clone().unwrap_or_default();
        if sp::is_headless(&svc) {
            labels.insert(sp::HEADLESS_LABEL.into(), String::new());
        } else {
            labels.remove(sp::HEADLESS_LABEL);
        }
        let mut annotations = current
            .as_ref()
            .and_then(|e| e.metadata.annotations.clone())
            .unwrap_or_default();
        let capacity_ok = annotations.contains_key(OVER_CAPACITY_ANNOTATION) == truncated;
        if let Some(cur) = &current {
            let same_subsets = cur.subsets.clone().unwrap_or_default() == subsets;
            let same_labels = cur.metadata.labels.clone().unwrap_or_default() == labels;
            if same_subsets && same_labels && capacity_ok {
                return Ok(None);
            }
        }
        if let Some(t) = trigger {
            annotations.insert(sp::TRIGGER_TIME_ANNOTATION.into(), t.to_string());
        }
        if truncated {
            annotations.insert(OVER_CAPACITY_ANNOTATION.into(), "truncated".into());
        } else {
            annotations.remove(OVER_CAPACITY_ANNOTATION);
        }
        let endpoints = Endpoints {
            metadata: ObjectMeta {
                name: Some(key.name.clone()),
                namespace: Some(ns.to_string()),
                labels: Some(labels),
                annotations: (!annotations.is_empty()).then_some(annotations),
                resource_version: current
                    .as_ref()
                    .and_then(|c| c.metadata.resource_version.clone()),
                ..Default::default()
            },
            subsets: (!subsets.is_empty()).then_some(subsets),
        };
        let result = match current {
            // Conditioned on the resourceVersion read: a stale cache makes this fail
            // with a conflict, and the retry sees the newer version.
            Some(_) => api
                .replace(&key.name, &PostParams::default(), &endpoints)
                .await
                .map(drop),
            None => api
                .create(&PostParams::default(), &endpoints)
                .await
                .map(drop),
        };
        match result {
            // The namespace is being deleted: nothing to keep up to date.
            Err(e) if e.code() == Some(403) && namespace_terminating(&e) => Ok(None),
            Err(e) => Err(e.into()),
            Ok(()) => Ok(None),
        }
    }

    /// The subsets for `svc`: one per distinct set of resolved ports, addresses sorted.
    /// Returns whether addresses past [`MAX_ADDRESSES`] were dropped.
    fn subsets(
        &self,
        svc: &Service,
        selector: &keelson_apimachinery::selector::LabelSelector,
    ) -> (Vec<EndpointSubset>, bool) {
        let spec = svc.spec.clone().unwrap_or_default();
        let publish_not_ready = spec.publish_not_ready_addresses.unwrap_or(false);
        let ports = spec.ports.unwrap_or_default();
        let ipv6 = sp::is_ipv6(svc);
        // Ports (sorted) -> (ready, not ready) addresses.
        type Group = (Vec<EndpointAddress>, Vec<EndpointAddress>);
        let mut groups: BTreeMap<Vec<ResolvedPort>, Group> = BTreeMap::new();
        for pod in sp::selected_pods(&self.pods, svc, selector) {
            if !sp::include_pod(&pod, publish_not_ready) {
                continue;
            }
            let Some(ip) = sp::pod_ip(&pod, ipv6) else {
                continue;
            };
            let address = EndpointAddress {
                ip,
                hostname: sp::hostname(&pod, svc),
                node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
                target_ref: Some(sp::pod_reference(&pod)),
            };
            // Headless Services without ports still list addresses.
            if ports.is_empty() && !sp::is_headless(svc) {
                continue;
            }
            let resolved = sp::resolve_ports(&pod, &ports);
            if !ports.is_empty() && resolved.is_empty() {
                continue;
            }
            let group = groups.entry(resolved).or_default();
            if publish_not_ready || pods::is_ready(&pod) {
                group.0.push(address);
            } else {
                group.1.push(address);
            }
        }
        let mut total = 0;
        let mut truncated = false;
        let mut subsets = Vec::new();
        for (ports, (mut ready, mut not_ready)) in groups {
            for list in [&mut ready, &mut not_ready] {
                list.sort_by(|a, b| (&a.ip, uid(a)).cmp(&(&b.ip, uid(b))));
                list.dedup_by(|a, b| a.ip == b.ip);
            }
            // An address both ready and not ready (two pods, one IP) counts as ready.
            not_ready.retain(|a| !ready.iter().any(|r| r.ip == a.ip));
            for list in [&mut ready, &mut not_ready] {
                let room = MAX_ADDRESSES.saturating_sub(total);
                if list.len() > room {
                    list.truncate(room);
                    truncated = true;
                }
                total += list.len();
            }
            if ready.is_empty() && not_ready.is_empty() {
                continue;
            }
            subsets.push(EndpointSubset {
                addresses: (!ready.is_empty()).then_some(ready),
                not_ready_addresses: (!not_ready.is_empty()).then_some(not_ready),
                ports: (!ports.is_empty()).then(|| ports.into_iter().map(endpoint_port).collect()),
            });
        }
        (subsets, truncated)
    }
}

fn namespace_terminating(e: &keelson_client::Error) -> bool {
    e.to_string().contains("is being terminated")
}

fn uid(a: &EndpointAddress) -> Option<&str> {
    a.target_ref.as_ref().and_then(|r| r.uid.as_deref())
}

fn endpoint_port(p: ResolvedPort) -> EndpointPort {
    EndpointPort {
        name: (!p.name.is_empty()).then_some(p.name),
        port: p.port,
        protocol: Some(p.protocol),
        app_protocol: p.app_protocol,
    }
}
