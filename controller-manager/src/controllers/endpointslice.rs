//! EndpointSlices: for every Service with a selector, discovery.k8s.io/v1 slices of at
//! most 100 endpoints listing the selected pods (ready, serving and terminating
//! conditions, node, zone), one set of slices per distinct set of resolved ports.
//!
//! Slices are labelled with the Service name and this controller as their manager, and
//! owned by the Service, so the garbage collector removes them with it. A Service with
//! no endpoints keeps one empty placeholder slice, as in Kubernetes.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use keelson_apimachinery::selector::LabelSelector;
use keelson_client::runtime::{HandlerFuncs, Store};
use keelson_client::{Api, DeleteParams, ObjectKey, PostParams};
use keelson_component::{Queue, Requeue};

use crate::common::owner::controller_ref;
use crate::common::pods;
use crate::common::service_pods::{self as sp, ResolvedPort, TriggerTimes};
use crate::common::Expectations;
use crate::Context;

pub use keelson_client::well_known::{
    ENDPOINTSLICE_MANAGED_BY_LABEL as MANAGED_BY_LABEL, SERVICE_NAME_LABEL,
};
pub const CONTROLLER_NAME: &str = "endpointslice-controller.k8s.io";
const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
/// Kubernetes' `--max-endpoints-per-slice` default.
const MAX_ENDPOINTS_PER_SLICE: usize = 100;

struct Controller {
    ctx: Context,
    services: Store<Service>,
    pods: Store<Pod>,
    nodes: Store<Node>,
    slices: Store<EndpointSlice>,
    times: TriggerTimes,
    expectations: Expectations,
}

/// The Service a slice belongs to, if this controller manages it.
fn service_of(slice: &EndpointSlice) -> Option<ObjectKey> {
    let labels = slice.metadata.labels.as_ref()?;
    if labels.get(MANAGED_BY_LABEL).map(String::as_str) != Some(CONTROLLER_NAME) {
        return None;
    }
    let name = labels.get(SERVICE_NAME_LABEL)?;
    Some(ObjectKey::new(slice.metadata.namespace.as_deref(), name))
}

pub async fn run(ctx: Context) {
    let queue: Queue<ObjectKey> = Queue::new("endpoint_slice", &ctx.queue_metrics);
    let times = TriggerTimes::default();
    sp::watch_services_and_pods(&ctx, &queue, &times);
    let expectations = Expectations::default();
    let slices = ctx.informers.get::<EndpointSlice>();
    let (q1, q2, q3) = (queue.clone(), queue.clone(), queue.clone());
    let (e1, e2) = (expectations.clone(), expectations.clone());
    // Our own writes come back here too; a sync after them finds nothing to do.
    slices.add_handler(
        HandlerFuncs::new()
            .on_add(move |s: Arc<EndpointSlice>| {
                if let Some(key) = service_of(&s) {
                    e1.creation_observed(&key);
                    q1.add(key);
                }
            })
            .on_update(move |_, s: Arc<EndpointSlice>| {
                if let Some(key) = service_of(&s) {
                    q2.add(key);
                }
            })
            .on_delete(move |s: Arc<EndpointSlice>| {
                if let Some(key) = service_of(&s) {
                    e2.deletion_observed(&key);
                    q3.add(key);
                }
            }),
    );
    let c = Arc::new(Controller {
        services: ctx.informers.get::<Service>().store(),
        pods: ctx.informers.get::<Pod>().store(),
        nodes: ctx.informers.get::<Node>().store(),
        slices: slices.store(),
        ctx: ctx.clone(),
        times,
        expectations,
    });
    ctx.informers.wait_for_sync::<Service>().await;
    ctx.informers.wait_for_sync::<Pod>().await;
    ctx.informers.wait_for_sync::<Node>().await;
    slices.wait_for_sync().await;
    queue
        .run(ctx.options.concurrent_syncs, move |key| {
            let c = c.clone();
            async move { c.sync(&key).await }
        })
        .await;
}

/// Slices compare equal on what this controller writes.
fn same_content(a: &EndpointSlice, b: &EndpointSlice) -> bool {
    let ports = |s: &EndpointSlice| s.ports.clone().unwrap_or_default();
    a.address_type == b.address_type
        && a.endpoints == b.endpoints
        && ports(a) == ports(b)
        && a.metadata.labels == b.metadata.labels
}

impl Controller {
    async fn sync(&self, key: &ObjectKey) -> anyhow::Result<Requeue> {
        let trigger = self.times.take(key);
        let Some(svc) = self.services.get(key) else {
            // The garbage collector deletes the slices of a deleted Service.
            self.expectations.forget(key);
            return Ok(None);
        };
        let Some(selector) = sp::selector(&svc) else {
            return Ok(None);
        };
        if !self.expectations.satisfied(key) {
            // Our last creations or deletions are not in the cache yet; their events
            // queue this Service again.
            return Ok(None);
        }
        let ns = key.namespace.as_deref().unwrap_or_default();
        let address_type = if sp::is_ipv6(&svc) { "IPv6" } else { "IPv4" };
        let labels = slice_labels(&svc);

        // What we want: for each port set, its endpoints in slices of at most 100.
        let mut wanted: Vec<EndpointSlice> = Vec::new();
        for (ports, endpoints) in self.endpoints_by_ports(&svc, &selector) {
            for chunk in endpoints.chunks(MAX_ENDPOINTS_PER_SLICE) {
                wanted.push(self.new_slice(&svc, address_type, &labels, &ports, chunk.to_vec()));
            }
        }
        if wanted.is_empty() {
            wanted.push(self.new_slice(&svc, address_type, &labels, &[], Vec::new()));
        }

        // Match existing slices: an identical one is kept as is, else one with the same
        // ports and address type is rewritten; what is left over is deleted.
        let mut existing: Vec<Arc<EndpointSlice>> = self
            .slices
            .list_namespace(ns)
            .into_iter()
            .filter(|s| service_of(s).as_ref() == Some(key))
            .collect();
        existing.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        let mut updates = Vec::new();
        let mut creates = Vec::new();
        let mut unmatched = Vec::new();
        for want in wanted {
            if let Some(i) = existing.iter().position(|s| same_content(s, &want)) {
                existing.remove(i);
                continue;
            }
            unmatched.push(want);
        }
        for want in unmatched {
            let same_ports = |s: &Arc<EndpointSlice>| {
                s.address_type == want.address_type
                    && s.ports.clone().unwrap_or_default() == want.ports.clone().unwrap_or_default()
            };
            match existing.iter().position(same_ports) {
                Some(i) => {
                    let old = existing.remove(i);
                    updates.push((old, want));
                }
                None => creates.push(want),
            }
        }
        let deletes = existing;
        if creates.is_empty() && updates.is_empty() && deletes.is_empty() {
            return Ok(None);
        }

        let api: Api<EndpointSlice> = Api::namespaced(self.ctx.client.clone(), ns);
        let stamp = |slice: &mut EndpointSlice| {
            if let Some(t) = trigger {
                slice
                    .metadata
                    .annotations
                    .get_or_insert_with(Default::default)
                    .insert(sp::TRIGGER_TIME_ANNOTATION.into(), t.to_string());
            }
        };
        for (old, mut want) in updates {
            want.metadata.name = old.metadata.name.clone();
            want.metadata.generate_name = old.metadata.generate_name.clone();
            want.metadata.resource_version = old.metadata.resource_version.clone();
            want.metadata.annotations = old.metadata.annotations.clone();
            stamp(&mut want);
            let name = want.metadata.name.clone().unwrap_or_default();
            api.replace(&name, &PostParams::default(), &want).await?;
        }
        self.expectations
            .expect(key, creates.len() as i64, deletes.len() as i64);
        let mut first_error = None;
        for mut want in creates {
            stamp(&mut want);
            if let Err(e) = api.create(&PostParams::default(), &want).await {
                self.expectations.creation_observed(key);
                first_error.get_or_insert(e);
            }
        }
        for old in deletes {
            let name = old.metadata.name.clone().unwrap_or_default();
            if let Err(e) = api.delete(&name, &DeleteParams::default()).await {
                self.expectations.deletion_observed(key);
                if !e.is_not_found() {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e.into()),
            None => Ok(None),
        }
    }

    /// The Service's endpoints grouped by their resolved ports.
    fn endpoints_by_ports(
        &self,
        svc: &Service,
        selector: &LabelSelector,
    ) -> BTreeMap<Vec<ResolvedPort>, Vec<Endpoint>> {
        let spec = svc.spec.clone().unwrap_or_default();
        let publish_not_ready = spec.publish_not_ready_addresses.unwrap_or(false);
        let ports = spec.ports.unwrap_or_default();
        let ipv6 = sp::is_ipv6(svc);
        let mut groups: BTreeMap<Vec<ResolvedPort>, Vec<Endpoint>> = BTreeMap::new();
        for pod in sp::selected_pods(&self.pods, svc, selector) {
            // Slices list terminating pods too, with their conditions.
            if !sp::include_pod(&pod, true) {
                continue;
            }
            let Some(ip) = sp::pod_ip(&pod, ipv6) else {
                continue;
            };
            let resolved = sp::resolve_ports(&pod, &ports);
            if !ports.is_empty() && resolved.is_empty() {
                continue;
            }
            let serving = pods::is_ready(&pod);
            let terminating = pod.metadata.deletion_timestamp.is_some();
            let node_name = pod.spec.as_ref().and_then(|s| s.node_name.clone());
            let zone = node_name
                .as_deref()
                .and_then(|n| self.nodes.get_by_name(None, n))
                .and_then(|n| n.metadata.labels.as_ref()?.get(ZONE_LABEL).cloned());
            groups.entry(resolved).or_default().push(Endpoint {
                addresses: vec![ip],
                conditions: Some(EndpointConditions {
                    // Never ready while terminating, unless not-ready pods are published.
                    ready: Some(publish_not_ready || (serving && !terminating)),
                    serving: Some(serving),
                    terminating: Some(terminating),
                }),
                hostname: sp::hostname(&pod, svc),
                node_name,
                target_ref: Some(sp::pod_reference(&pod)),
                zone,
                ..Default::default()
            });
        }
        for endpoints in groups.values_mut() {
            endpoints.sort_by(|a, b| {
                let name = |e: &Endpoint| e.target_ref.as_ref().and_then(|r| r.name.clone());
                name(a).cmp(&name(b)).then(a.addresses.cmp(&b.addresses))
            });
        }
        groups
    }

    fn new_slice(
        &self,
        svc: &Service,
        address_type: &str,
        labels: &BTreeMap<String, String>,
        ports: &[ResolvedPort],
        endpoints: Vec<Endpoint>,
    ) -> EndpointSlice {
        let name = svc.metadata.name.as_deref().unwrap_or_default();
        EndpointSlice {
            metadata: ObjectMeta {
                generate_name: Some(pods::generate_name_prefix(name)),
                namespace: svc.metadata.namespace.clone(),
                labels: Some(labels.clone()),
                owner_references: Some(vec![controller_ref(svc)]),
                ..Default::default()
            },
            address_type: address_type.to_string(),
            endpoints,
            ports: Some(ports.iter().map(slice_port).collect()),
        }
    }
}

/// The Service's labels, plus the ones that tie the slice to it and to us.
fn slice_labels(svc: &Service) -> BTreeMap<String, String> {
    let mut labels = svc.metadata.labels.clone().unwrap_or_default();
    labels.remove(sp::HEADLESS_LABEL);
    if sp::is_headless(svc) {
        labels.insert(sp::HEADLESS_LABEL.into(), String::new());
    }
    labels.insert(
        SERVICE_NAME_LABEL.into(),
        svc.metadata.name.clone().unwrap_or_default(),
    );
    labels.insert(MANAGED_BY_LABEL.into(), CONTROLLER_NAME.into());
    labels
}

fn slice_port(p: &ResolvedPort) -> EndpointPort {
    EndpointPort {
        name: Some(p.name.clone()),
        port: Some(p.port),
        protocol: Some(p.protocol.clone()),
        app_protocol: p.app_protocol.clone(),
    }
}
