//! EndpointSliceMirroring: Endpoints written by hand for a Service without a selector
//! (the classic way to front something outside the cluster) become EndpointSlices, so
//! that keelson-proxy and keelson-dns, which read slices only, serve them too.
//!
//! As Kubernetes' controller: one slice per distinct (address type, ports) of the
//! subsets, ready addresses with `ready: true` and not-ready ones with `ready: false`;
//! at most 1000 addresses per subset (a Warning Event says how many were skipped);
//! labels and annotations of the Endpoints copied; slices owned by the Endpoints and
//! labelled with the Service name and this controller. Endpoints labelled
//! `endpointslice.kubernetes.io/skip-mirror: "true"` (the apiserver's own `kubernetes`
//! Endpoints, whose slice it writes itself) and leader-election locks are not
//! mirrored; slices are removed when the Endpoints or the Service go, or the Service
//! gains a selector.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{EndpointAddress, Endpoints, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use keelson_client::runtime::{HandlerFuncs, Store};
use keelson_client::{Api, DeleteParams, KubeObject, ObjectKey, PostParams};
use keelson_component::events::{reference, EventType};
use keelson_component::{Queue, Requeue};

use crate::common::owner::controller_ref;
use crate::common::pods;
use crate::common::service_pods::TRIGGER_TIME_ANNOTATION;
use crate::common::Expectations;
use crate::controllers::endpointslice::{MANAGED_BY_LABEL, SERVICE_NAME_LABEL};
use crate::Context;

pub const CONTROLLER_NAME: &str = "endpointslicemirroring-controller.k8s.io";
pub const SKIP_MIRROR_LABEL: &str = "endpointslice.kubernetes.io/skip-mirror";
/// client-go's resource-lock annotation: such Endpoints are locks, not endpoints.
const LEADER_ANNOTATION: &str = "control-plane.alpha.kubernetes.io/leader";
const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";
/// Kubernetes' `--mirroring-max-endpoints-per-subset` default: addresses mirrored per
/// subset, and endpoints per slice.
pub const MAX_ENDPOINTS_PER_SUBSET: usize = 1000;

struct Controller {
    ctx: Context,
    services: Store<Service>,
    endpoints: Store<Endpoints>,
    slices: Store<EndpointSlice>,
    expectations: Expectations,
}

/// Whether `endpoints` may be mirrored at all (the Service is checked separately).
pub fn should_mirror(endpoints: &Endpoints) -> bool {
    let skip = endpoints
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(SKIP_MIRROR_LABEL))
        .is_some_and(|v| v == "true");
    let lock = endpoints
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(LEADER_ANNOTATION));
    !skip && !lock
}

/// Whether the Service selects pods (then the EndpointSlice controller owns its slices).
/// An empty map is no selector: Kubernetes drops empty maps when it serialises.
fn has_selector(svc: &Service) -> bool {
    svc.spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .is_some_and(|s| !s.is_empty())
}

/// The Endpoints a slice mirrors, if this controller manages it.
fn endpoints_of(slice: &EndpointSlice) -> Option<ObjectKey> {
    let labels = slice.metadata.labels.as_ref()?;
    if labels.get(MANAGED_BY_LABEL).map(String::as_str) != Some(CONTROLLER_NAME) {
        return None;
    }
    let name = labels.get(SERVICE_NAME_LABEL).filter(|n| !n.is_empty())?;
    Some(ObjectKey::new(slice.metadata.namespace.as_deref(), name))
}

pub async fn run(ctx: Context) {
    let queue: Queue<ObjectKey> = Queue::new("endpoint_slice_mirroring", &ctx.queue_metrics);
    let expectations = Expectations::default();

    let services = ctx.informers.get::<Service>();
    let (q1, q2, q3) = (queue.clone(), queue.clone(), queue.clone());
    services.add_handler(
        HandlerFuncs::new()
            .on_add(move |s: Arc<Service>| {
                if !has_selector(&s) {
                    q1.add(s.key());
                }
            })
            .on_update(move |old: Arc<Service>, new: Arc<Service>| {
                if has_selector(&old) != has_selector(&new) {
                    q2.add(new.key());
                }
            })
            .on_delete(move |s: Arc<Service>| {
                if !has_selector(&s) {
                    q3.add(s.key());
                }
            }),
    );

    let endpoints = ctx.informers.get::<Endpoints>();
    let (q1, q2, q3) = (queue.clone(), queue.clone(), queue.clone());
    endpoints.add_handler(
        HandlerFuncs::new()
            .on_add(move |e: Arc<Endpoints>| {
                if should_mirror(&e) {
                    q1.add(e.key());
                }
            })
            .on_update(move |old: Arc<Endpoints>, new: Arc<Endpoints>| {
                // A skip-mirror label added or removed changes what we keep.
                if should_mirror(&old) || should_mirror(&new) {
                    q2.add(new.key());
                }
            })
            .on_delete(move |e: Arc<Endpoints>| {
                if should_mirror(&e) {
                    q3.add(e.key());
                }
            }),
    );

    let slices = ctx.informers.get::<EndpointSlice>();
    let (q1, q2, q3) = (queue.clone(), queue.clone(), queue.clone());
    let (e1, e2) = (expectations.clone(), expectations.clone());
    // Our own writes come back here too; a sync after them finds nothing to do. A slice
    // someone else changed is written back.
    slices.add_handler(
        HandlerFuncs::new()
            .on_add(move |s: Arc<EndpointSlice>| {
                if let Some(key) = endpoints_of(&s) {
                    e1.creation_observed(&key);
                    q1.add(key);
                }
            })
            .on_update(move |old: Arc<EndpointSlice>, new: Arc<EndpointSlice>| {
                // A relabelled slice concerns what it mirrored before and after.
                for key in [endpoints_of(&old), endpoints_of(&new)]
                    .into_iter()
                    .flatten()
                {
                    q2.add(key);
                }
            })
            .on_delete(move |s: Arc<EndpointSlice>| {
                if let Some(key) = endpoints_of(&s) {
                    e2.deletion_observed(&key);
                    q3.add(key);
                }
            }),
    );

    let c = Arc::new(Controller {
        services: services.store(),
        endpoints: endpoints.store(),
        slices: slices.store(),
        ctx: ctx.clone(),
        expectations,
    });
    services.wait_for_sync().await;
    endpoints.wait_for_sync().await;
    slices.wait_for_sync().await;
    // Slices left behind by Endpoints or Services deleted while we were not running.
    for s in c.slices.list() {
        if let Some(key) = endpoints_of(&s) {
            queue.add(key);
        }
    }
    queue
        .run(ctx.options.concurrent_syncs, move |key| {
            let c = c.clone();
            async move { c.sync(&key).await }
        })
        .await;
}

/// The slices this controller would write for `endpoints`, before names are matched
/// against existing ones, with the count of invalid and of over-capacity addresses.
#[derive(Debug, Default, PartialEq)]
pub struct Desired {
    pub slices: Vec<EndpointSlice>,
    pub invalid: usize,
    pub over_capacity: usize,
}

/// The ports of a subset as a slice lists them, in a canonical order.
fn slice_ports(ports: &[k8s_openapi::api::core::v1::EndpointPort]) -> Vec<EndpointPort> {
    let mut out: Vec<EndpointPort> = ports
        .iter()
        .map(|p| EndpointPort {
            name: Some(p.name.clone().unwrap_or_default()),
            port: Some(p.port),
            protocol: Some(p.protocol.clone().unwrap_or_else(|| "TCP".into())),
            app_protocol: p.app_protocol.clone(),
        })
        .collect();
    out.sort_by(|a, b| {
        (&a.name, a.port, &a.protocol, &a.app_protocol).cmp(&(
            &b.name,
            b.port,
            &b.protocol,
            &b.app_protocol,
        ))
    });
    out
}

/// One address as a slice endpoint: the IP in its canonical form, and its family.
fn to_endpoint(address: &EndpointAddress, ready: bool) -> Option<(&'static str, Endpoint)> {
    let ip: IpAddr = address.ip.trim().parse().ok()?;
    let family = if ip.is_ipv4() { "IPv4" } else { "IPv6" };
    let endpoint = Endpoint {
        addresses: vec![ip.to_string()],
        conditions: Some(EndpointConditions {
            ready: Some(ready),
            ..Default::default()
        }),
        hostname: address.hostname.clone().filter(|h| !h.is_empty()),
        node_name: address.node_name.clone().filter(|n| !n.is_empty()),
        target_ref: address.target_ref.clone(),
        ..Default::default()
    };
    Some((family, endpoint))
}

/// What identifies an endpoint within a slice (Kubernetes' endpoint hash).
fn identity(e: &Endpoint) -> (Vec<String>, Option<String>, Option<(String, String)>) {
    let target = e.target_ref.as_ref().map(|r| {
        (
            r.namespace.clone().unwrap_or_default(),
            r.name.clone().unwrap_or_default(),
        )
    });
    (e.addresses.clone(), e.hostname.clone(), target)
}

/// The labels a mirrored slice carries: the Endpoints' own, then ours.
fn slice_labels(endpoints: &Endpoints) -> BTreeMap<String, String> {
    let mut labels = endpoints.metadata.labels.clone().unwrap_or_default();
    labels.insert(
        SERVICE_NAME_LABEL.into(),
        endpoints.metadata.name.clone().unwrap_or_default(),
    );
    labels.insert(MANAGED_BY_LABEL.into(), CONTROLLER_NAME.into());
    labels
}

/// The annotations a mirrored slice carries: the Endpoints' own, except the trigger
/// time and kubectl's last applied configuration.
fn slice_annotations(endpoints: &Endpoints) -> BTreeMap<String, String> {
    let mut annotations = endpoints.metadata.annotations.clone().unwrap_or_default();
    annotations.remove(TRIGGER_TIME_ANNOTATION);
    annotations.remove(LAST_APPLIED_ANNOTATION);
    annotations
}

/// A slice's address family and ports.
type GroupKey = (&'static str, Vec<EndpointPort>);

/// The slices `endpoints` mirrors to: addresses grouped by address family and ports
/// (subsets with the same ports share a slice), in the order the Endpoints lists them,
/// duplicates dropped; at most [`MAX_ENDPOINTS_PER_SUBSET`] addresses of each subset and
/// endpoints of each slice.
pub fn desired(endpoints: &Endpoints) -> Desired {
    let mut out = Desired::default();
    let mut groups: Vec<(GroupKey, Vec<Endpoint>)> = Vec::new();
    for subset in endpoints.subsets.iter().flatten() {
        let ports = slice_ports(subset.ports.as_deref().unwrap_or_default());
        let addresses = subset.addresses.iter().flatten().map(|a| (a, true));
        let not_ready = subset
            .not_ready_addresses
            .iter()
            .flatten()
            .map(|a| (a, false));
        let mut added = 0;
        for (address, ready) in addresses.chain(not_ready) {
            if added >= MAX_ENDPOINTS_PER_SUBSET {
                out.over_capacity += 1;
                continue;
            }
            let Some((family, endpoint)) = to_endpoint(address, ready) else {
                out.invalid += 1;
                continue;
            };
            added += 1;
            let key = (family, ports.clone());
            let i = match groups.iter().position(|(k, _)| *k == key) {
                Some(i) => i,
                None => {
                    groups.push((key, Vec::new()));
                    groups.len() - 1
                }
            };
            groups[i].1.push(endpoint);
        }
    }
    let labels = slice_labels(endpoints);
    let annotations = slice_annotations(endpoints);
    let name = endpoints.metadata.name.as_deref().unwrap_or_default();
    for ((family, ports), list) in groups {
        let mut seen = HashSet::new();
        let mut unique: Vec<Endpoint> = list
            .into_iter()
            .filter(|e| seen.insert(identity(e)))
            .collect();
        unique.truncate(MAX_ENDPOINTS_PER_SUBSET);
        out.slices.push(EndpointSlice {
            metadata: ObjectMeta {
                generate_name: Some(pods::generate_name_prefix(name)),
                namespace: endpoints.metadata.namespace.clone(),
                labels: Some(labels.clone()),
                annotations: (!annotations.is_empty()).then(|| annotations.clone()),
                owner_references: Some(vec![controller_ref(endpoints)]),
                ..Default::default()
            },
            address_type: family.to_string(),
            endpoints: unique,
            ports: Some(ports),
        });
    }
    out
}

/// Slices compare equal on what this controller writes.
fn same_content(existing: &EndpointSlice, want: &EndpointSlice) -> bool {
    let ports = |s: &EndpointSlice| s.ports.clone().unwrap_or_default();
    let labels = |s: &EndpointSlice| s.metadata.labels.clone().unwrap_or_default();
    let annotations = |s: &EndpointSlice| s.metadata.annotations.clone().unwrap_or_default();
    existing.address_type == want.address_type
        && existing.endpoints == want.endpoints
        && ports(existing) == ports(want)
        && labels(existing) == labels(want)
        && annotations(existing) == annotations(want)
}

fn same_group(a: &EndpointSlice, b: &EndpointSlice) -> bool {
    a.address_type == b.address_type
        && a.ports.clone().unwrap_or_default() == b.ports.clone().unwrap_or_default()
}

/// What a sync writes: updates (existing, wanted), creations and deletions.
#[derive(Debug, Default)]
pub struct Plan {
    pub updates: Vec<(Arc<EndpointSlice>, EndpointSlice)>,
    pub creates: Vec<EndpointSlice>,
    pub deletes: Vec<Arc<EndpointSlice>>,
}

impl Plan {
    fn is_empty(&self) -> bool {
        self.updates.is_empty() && self.creates.is_empty() && self.deletes.is_empty()
    }
}

/// Matches the wanted slices against the existing ones (sorted by name): the first
/// slice of the same address type and ports is kept, or rewritten when it differs; the
/// others are deleted. A slice that would be deleted while another of its address type
/// is created is rewritten instead (the address type of a slice is immutable).
pub fn plan(wanted: Vec<EndpointSlice>, mut existing: Vec<Arc<EndpointSlice>>) -> Plan {
    existing.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let mut plan = Plan::default();
    let mut creates = Vec::new();
    for want in wanted {
        match existing.iter().position(|s| same_group(s, &want)) {
            Some(i) => {
                let old = existing.remove(i);
                if !same_content(&old, &want) {
                    plan.updates.push((old, want));
                }
            }
            None => creates.push(want),
        }
    }
    // What is left over belongs to no wanted group (or duplicates one): recycle it.
    for want in creates {
        match existing
            .iter()
            .position(|s| s.address_type == want.address_type)
        {
            Some(i) => {
                let old = existing.remove(i);
                plan.updates.push((old, want));
            }
            None => plan.creates.push(want),
        }
    }
    plan.deletes = existing;
    plan
}

impl Controller {
    /// The slices this controller wrote for the Endpoints `key`.
    fn mirrored(&self, key: &ObjectKey) -> Vec<Arc<EndpointSlice>> {
        let ns = key.namespace.as_deref().unwrap_or_default();
        self.slices
            .list_namespace(ns)
            .into_iter()
            .filter(|s| endpoints_of(s).as_ref() == Some(key))
            .collect()
    }

    async fn sync(&self, key: &ObjectKey) -> anyhow::Result<Requeue> {
        let endpoints = self.endpoints.get(key).filter(|e| should_mirror(e));
        let svc = self.services.get(key);
        let mirror = match (&endpoints, &svc) {
            (Some(e), Some(svc)) if !has_selector(svc) => e.clone(),
            // No Endpoints, not to be mirrored, no Service, or a Service with a
            // selector (whose slices the EndpointSlice controller writes).
            _ => {
                let plan = Plan {
                    deletes: self.mirrored(key),
                    ..Default::default()
                };
                if plan.is_empty() {
                    self.expectations.forget(key);
                    return Ok(None);
                }
                return self.apply(key, None, plan).await;
            }
        };
        if !self.expectations.satisfied(key) {
            // Our last creations or deletions are not in the cache yet; their events
            // queue this key again.
            return Ok(None);
        }
        let want = desired(&mirror);
        if want.invalid > 0 {
            let msg = format!(
                "Skipped {} invalid IP addresses when mirroring to EndpointSlices",
                want.invalid
            );
            self.event(&mirror, "InvalidIPAddress", &msg).await;
        }
        if want.over_capacity > 0 {
            let msg = format!(
                "A max of {MAX_ENDPOINTS_PER_SUBSET} addresses can be mirrored to EndpointSlices per Endpoints subset. {} addresses were skipped",
                want.over_capacity
            );
            self.event(&mirror, "TooManyAddressesToMirror", &msg).await;
        }
        let plan = plan(want.slices, self.mirrored(key));
        if plan.is_empty() {
            return Ok(None);
        }
        self.apply(key, Some(&mirror), plan).await
    }

    /// Writes `plan`. Creations are skipped while the Endpoints are being deleted, and
    /// dropped when the namespace is terminating.
    async fn apply(
        &self,
        key: &ObjectKey,
        endpoints: Option<&Endpoints>,
        plan: Plan,
    ) -> anyhow::Result<Requeue> {
        let ns = key.namespace.as_deref().unwrap_or_default();
        let api: Api<EndpointSlice> = Api::namespaced(self.ctx.client.clone(), ns);
        let deleting = endpoints.is_none_or(|e| e.metadata.deletion_timestamp.is_some());
        let creates = if deleting { Vec::new() } else { plan.creates };
        for (old, mut want) in plan.updates {
            want.metadata.name = old.metadata.name.clone();
            want.metadata.generate_name = old.metadata.generate_name.clone();
            want.metadata.resource_version = old.metadata.resource_version.clone();
            let name = want.metadata.name.clone().unwrap_or_default();
            // Conditioned on the resourceVersion read: a stale cache gets a conflict,
            // and the retry sees the newer version.
            api.replace(&name, &PostParams::default(), &want).await?;
        }
        self.expectations
            .expect(key, creates.len() as i64, plan.deletes.len() as i64);
        let mut first_error = None;
        for want in creates {
            if let Err(e) = api.create(&PostParams::default(), &want).await {
                self.expectations.creation_observed(key);
                if e.code() == Some(403) && e.to_string().contains("is being terminated") {
                    continue;
                }
                first_error.get_or_insert(e);
            }
        }
        for old in plan.deletes {
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

    async fn event(&self, endpoints: &Endpoints, reason: &str, message: &str) {
        tracing::warn!(
            endpoints = %endpoints.key(),
            reason,
            message,
            "mirroring Endpoints to EndpointSlices"
        );
        self.ctx
            .recorder
            .record(&reference(endpoints), EventType::Warning, reason, message)
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn endpoints(v: serde_json::Value) -> Endpoints {
        let mut base = json!({"metadata": {"name": "db", "namespace": "ns", "uid": "u1"}});
        keelson_apimachinery::patch::merge_patch::apply_in_place(&mut base, &v);
        serde_json::from_value(base).unwrap()
    }

    fn slice(name: &str, family: &str, port: i32, ips: &[&str]) -> Arc<EndpointSlice> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "ns"},
                "addressType": family,
                "ports": [{"name": "", "port": port, "protocol": "TCP"}],
                "endpoints": ips.iter().map(|ip| json!({"addresses": [ip], "conditions": {"ready": true}})).collect::<Vec<_>>(),
            }))
            .unwrap(),
        )
    }

    fn addresses(s: &EndpointSlice) -> Vec<(String, Option<bool>)> {
        s.endpoints
            .iter()
            .map(|e| {
                (
                    e.addresses[0].clone(),
                    e.conditions.as_ref().and_then(|c| c.ready),
                )
            })
            .collect()
    }

    #[test]
    fn subsets_become_one_slice_per_family_and_ports() {
        let e = endpoints(json!({
            "metadata": {"labels": {"team": "a"}, "annotations": {
                "note": "x",
                "kubectl.kubernetes.io/last-applied-configuration": "{}",
                "endpoints.kubernetes.io/last-change-trigger-time": "t"}},
            "subsets": [
                {"addresses": [{"ip": "10.0.0.1", "hostname": "h1", "nodeName": "n1",
                    "targetRef": {"kind": "Pod", "name": "p1", "namespace": "ns"}},
                    {"ip": "fd00::1"}],
                 "notReadyAddresses": [{"ip": "10.0.0.2"}],
                 "ports": [{"name": "b", "port": 81, "protocol": "TCP"}, {"name": "a", "port": 80, "protocol": "TCP"}]},
                {"addresses": [{"ip": "10.0.0.3"}, {"ip": "10.0.0.1", "hostname": "h1", "nodeName": "n1",
                    "targetRef": {"kind": "Pod", "name": "p1", "namespace": "ns"}}],
                 "ports": [{"port": 80, "name": "a", "protocol": "TCP"}, {"name": "b", "port": 81, "protocol": "TCP"}]},
                {"addresses": [{"ip": "10.0.0.4"}], "ports": [{"port": 9000, "protocol": "UDP"}]}
            ]
        }));
        let d = desired(&e);
        assert_eq!((d.invalid, d.over_capacity), (0, 0));
        assert_eq!(d.slices.len(), 3, "{:?}", d.slices);
        let v4 = &d.slices[0];
        assert_eq!(v4.address_type, "IPv4");
        assert_eq!(
            addresses(v4),
            [
                ("10.0.0.1".into(), Some(true)),
                ("10.0.0.2".into(), Some(false)),
                ("10.0.0.3".into(), Some(true)),
            ]
        );
        let first = &v4.endpoints[0];
        assert_eq!(first.hostname.as_deref(), Some("h1"));
        assert_eq!(first.node_name.as_deref(), Some("n1"));
        assert_eq!(
            first.target_ref.as_ref().unwrap().name.as_deref(),
            Some("p1")
        );
        let ports: Vec<_> = v4
            .ports
            .iter()
            .flatten()
            .map(|p| (p.name.clone().unwrap(), p.port.unwrap()))
            .collect();
        assert_eq!(ports, [("a".into(), 80), ("b".into(), 81)]);
        assert_eq!(d.slices[1].address_type, "IPv6");
        assert_eq!(addresses(&d.slices[1]), [("fd00::1".into(), Some(true))]);
        let udp = &d.slices[2];
        assert_eq!(udp.ports.as_ref().unwrap()[0].name.as_deref(), Some(""));
        assert_eq!(
            udp.ports.as_ref().unwrap()[0].protocol.as_deref(),
            Some("UDP")
        );

        let meta = &v4.metadata;
        let labels = meta.labels.as_ref().unwrap();
        assert_eq!(labels["team"], "a");
        assert_eq!(labels[SERVICE_NAME_LABEL], "db");
        assert_eq!(labels[MANAGED_BY_LABEL], CONTROLLER_NAME);
        let annotations = meta.annotations.as_ref().unwrap();
        assert_eq!(annotations.keys().collect::<Vec<_>>(), ["note"]);
        assert_eq!(meta.generate_name.as_deref(), Some("db-"));
        let owner = &meta.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("Endpoints", "u1")
        );
        assert_eq!(owner.controller, Some(true));
    }

    #[test]
    fn at_most_1000_addresses_per_subset_and_invalid_ones_skipped() {
        let many: Vec<_> = (0..1100)
            .map(|i| json!({"ip": format!("10.1.{}.{}", i / 250, i % 250 + 1)}))
            .collect();
        let e = endpoints(json!({"subsets": [
            {"addresses": many, "notReadyAddresses": [{"ip": "10.9.9.9"}], "ports": [{"port": 80}]},
            {"addresses": [{"ip": "not-an-ip"}, {"ip": "10.2.0.1"}], "ports": [{"port": 81}]}
        ]}));
        let d = desired(&e);
        assert_eq!(d.slices[0].endpoints.len(), MAX_ENDPOINTS_PER_SUBSET);
        assert_eq!(d.over_capacity, 101);
        assert_eq!(d.invalid, 1);
        assert_eq!(addresses(&d.slices[1]), [("10.2.0.1".into(), Some(true))]);
    }

    #[test]
    fn no_subsets_no_slices() {
        assert!(desired(&endpoints(json!({}))).slices.is_empty());
    }

    #[test]
    fn skip_mirror_and_leader_locks_are_not_mirrored() {
        assert!(should_mirror(&endpoints(json!({}))));
        let skip = endpoints(json!({"metadata": {"labels": {SKIP_MIRROR_LABEL: "true"}}}));
        assert!(!should_mirror(&skip));
        let other = endpoints(json!({"metadata": {"labels": {SKIP_MIRROR_LABEL: "false"}}}));
        assert!(should_mirror(&other));
        let lock = endpoints(json!({"metadata": {"annotations": {LEADER_ANNOTATION: "{}"}}}));
        assert!(!should_mirror(&lock));
    }

    #[test]
    fn plan_keeps_equal_slices_updates_changed_ones_and_recycles() {
        let e = endpoints(
            json!({"subsets": [{"addresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 80}]}]}),
        );
        let mut want = desired(&e).slices;
        // The same content: nothing to do.
        let mut same = want[0].clone();
        same.metadata.name = Some("db-a".into());
        let p = plan(want.clone(), vec![Arc::new(same)]);
        assert!(p.is_empty(), "{p:?}");

        // Changed addresses, plus a duplicate of the group: one update, one delete.
        let p = plan(
            want.clone(),
            vec![
                slice("db-b", "IPv4", 80, &["10.0.0.9"]),
                slice("db-a", "IPv4", 80, &["10.0.0.1"]),
            ],
        );
        assert_eq!(p.updates.len(), 1);
        assert_eq!(p.updates[0].0.metadata.name.as_deref(), Some("db-a"));
        assert_eq!(p.deletes[0].metadata.name.as_deref(), Some("db-b"));
        assert!(p.creates.is_empty());

        // Other ports: the old slice is rewritten rather than deleted and created.
        let p = plan(
            want.clone(),
            vec![slice("db-a", "IPv4", 8080, &["10.0.0.1"])],
        );
        assert_eq!(
            (p.updates.len(), p.creates.len(), p.deletes.len()),
            (1, 0, 0)
        );

        // Another family cannot be recycled (addressType is immutable).
        let p = plan(want.clone(), vec![slice("db-a", "IPv6", 80, &["fd00::1"])]);
        assert_eq!(
            (p.updates.len(), p.creates.len(), p.deletes.len()),
            (0, 1, 1)
        );

        // Nothing wanted: everything goes.
        want.clear();
        let p = plan(want, vec![slice("db-a", "IPv4", 80, &["10.0.0.1"])]);
        assert_eq!(p.deletes.len(), 1);
    }
}
