//! What the Endpoints and EndpointSlice controllers share: which pods a Service
//! selects, which of them belong in its endpoints, how a Service port maps to a pod's
//! port, and the event wiring that turns Service and Pod changes into Service keys.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{ObjectReference, Pod, Service, ServicePort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use keelson_apimachinery::selector::LabelSelector;
use keelson_client::runtime::{HandlerFuncs, Store};
use keelson_client::{KubeObject, ObjectKey};
use keelson_component::Queue;

use crate::common::pods;
use crate::Context;

/// `endpoints.kubernetes.io/last-change-trigger-time`: when the change that led to this
/// version of the endpoints happened.
pub const TRIGGER_TIME_ANNOTATION: &str = "endpoints.kubernetes.io/last-change-trigger-time";
/// Set on the endpoints of headless Services (clusterIP None).
pub const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";

/// The Service's pod selector, or `None` when the controllers leave it alone: no
/// selector (endpoints are managed by hand) or type ExternalName.
pub fn selector(svc: &Service) -> Option<LabelSelector> {
    let spec = svc.spec.as_ref()?;
    if spec.type_.as_deref() == Some("ExternalName") {
        return None;
    }
    // An empty map is no selector: Kubernetes drops empty maps when it serialises.
    let sel = spec.selector.as_ref().filter(|s| !s.is_empty())?;
    Some(LabelSelector::from_labels(
        sel.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    ))
}

pub fn is_headless(svc: &Service) -> bool {
    svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None")
}

/// Whether the Service wants IPv6 addresses (its first IP family).
pub fn is_ipv6(svc: &Service) -> bool {
    let spec = svc.spec.as_ref();
    match spec.and_then(|s| s.ip_families.as_ref()?.first().cloned()) {
        Some(f) => f == "IPv6",
        None => spec
            .and_then(|s| s.cluster_ip.as_deref())
            .is_some_and(|ip| ip.contains(':')),
    }
}

pub fn selected_pods(pods: &Store<Pod>, svc: &Service, selector: &LabelSelector) -> Vec<Arc<Pod>> {
    pods.list_namespace_selected(svc.namespace().unwrap_or_default(), selector)
}

/// Kubernetes' `ShouldPodBeInEndpoints`: running or pending pods with an IP, and
/// terminating ones only when asked for.
pub fn include_pod(pod: &Pod, include_terminating: bool) -> bool {
    if pods::is_terminal(pod) {
        return false;
    }
    let status = pod.status.as_ref();
    let has_ip = status.is_some_and(|s| {
        s.pod_ip.as_deref().is_some_and(|ip| !ip.is_empty())
            || s.pod_ips.as_ref().is_some_and(|ips| !ips.is_empty())
    });
    has_ip && (include_terminating || pod.metadata.deletion_timestamp.is_none())
}

/// The pod's address of the Service's family.
pub fn pod_ip(pod: &Pod, ipv6: bool) -> Option<String> {
    let status = pod.status.as_ref()?;
    let candidates = status
        .pod_ips
        .iter()
        .flatten()
        .map(|p| p.ip.clone())
        .chain(status.pod_ip.clone());
    candidates
        .into_iter()
        .find(|ip| !ip.is_empty() && ip.contains(':') == ipv6)
}

/// The pod's port for a Service port (Kubernetes' `FindPort`): a number as is, a name
/// looked up among the pod's container ports (sidecar init containers included) with
/// the same protocol.
pub fn find_port(pod: &Pod, port: &ServicePort) -> Option<i32> {
    let protocol = port.protocol.as_deref().unwrap_or("TCP");
    match &port.target_port {
        Some(IntOrString::Int(n)) if *n > 0 => Some(*n),
        Some(IntOrString::String(name)) if !name.is_empty() => {
            let spec = pod.spec.as_ref()?;
            let sidecars = spec
                .init_containers
                .iter()
                .flatten()
                .filter(|c| c.restart_policy.as_deref() == Some("Always"));
            spec.containers
                .iter()
                .chain(sidecars)
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| {
                    p.name.as_deref() == Some(name.as_str())
                        && p.protocol.as_deref().unwrap_or("TCP") == protocol
                })
                .map(|p| p.container_port)
        }
        // Unset: the apiserver defaults targetPort to port.
        _ => Some(port.port),
    }
}

/// A Service port resolved for one pod. Pods with the same resolved ports share a
/// subset (Endpoints) or a set of slices (EndpointSlices).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ResolvedPort {
    pub name: String,
    pub port: i32,
    pub protocol: String,
    pub app_protocol: Option<String>,
}

/// The Service's ports as the pod serves them, in the Service's order; a named port the
/// pod does not have is left out.
pub fn resolve_ports(pod: &Pod, ports: &[ServicePort]) -> Vec<ResolvedPort> {
    ports
        .iter()
        .filter_map(|p| {
            Some(ResolvedPort {
                name: p.name.clone().unwrap_or_default(),
                port: find_port(pod, p)?,
                protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                app_protocol: p.app_protocol.clone(),
            })
        })
        .collect()
}

/// An endpoint's `targetRef`.
pub fn pod_reference(pod: &Pod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".into()),
        namespace: pod.metadata.namespace.clone(),
        name: pod.metadata.name.clone(),
        uid: pod.metadata.uid.clone(),
        ..Default::default()
    }
}

/// A pod's hostname in the Service's DNS, when its `subdomain` names the Service.
pub fn hostname(pod: &Pod, svc: &Service) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let hostname = spec.hostname.as_deref().filter(|h| !h.is_empty())?;
    let same = spec.subdomain.as_deref() == svc.metadata.name.as_deref()
        && pod.metadata.namespace == svc.metadata.namespace;
    same.then(|| hostname.to_string())
}

/// Whether two versions of a pod give the same endpoints; pod updates that change
/// none of this are ignored (pods update their status often).
fn same_for_endpoints(a: &Pod, b: &Pod) -> bool {
    let status = |p: &Pod| {
        p.status
            .as_ref()
            .map(|s| (s.pod_ip.clone(), s.pod_ips.clone(), s.phase.clone()))
    };
    let spec = |p: &Pod| {
        p.spec
            .as_ref()
            .map(|s| (s.node_name.clone(), s.hostname.clone(), s.subdomain.clone()))
    };
    a.metadata.labels == b.metadata.labels
        && a.metadata.deletion_timestamp == b.metadata.deletion_timestamp
        && pods::is_ready(a) == pods::is_ready(b)
        && status(a) == status(b)
        && spec(a) == spec(b)
}

/// When the change behind each Service's pending sync was seen, for the
/// last-change-trigger-time annotation. The earliest unprocessed change wins.
#[derive(Clone, Default)]
pub struct TriggerTimes {
    by_key: Arc<Mutex<HashMap<ObjectKey, jiff::Timestamp>>>,
}

impl TriggerTimes {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectKey, jiff::Timestamp>> {
        self.by_key.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn record(&self, key: &ObjectKey) {
        self.lock()
            .entry(key.clone())
            .or_insert_with(jiff::Timestamp::now);
    }

    /// The trigger time of the sync now running for `key`, if a change caused it.
    pub fn take(&self, key: &ObjectKey) -> Option<jiff::Timestamp> {
        self.lock().remove(key)
    }
}

/// The keys of the Services in the pod's namespace whose selector matches it.
fn services_selecting(services: &Store<Service>, pod: &Pod) -> Vec<ObjectKey> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    services
        .list_namespace(ns)
        .into_iter()
        .filter(|s| selector(s).is_some_and(|sel| pods::selects(&sel, &pod.metadata)))
        .map(|s| s.key())
        .collect()
}

/// Enqueue a Service's key on every change to it, and the keys of the Services
/// selecting a pod (before and after) on every relevant change to the pod.
pub fn watch_services_and_pods(ctx: &Context, queue: &Queue<ObjectKey>, times: &TriggerTimes) {
    let services = ctx.informers.get::<Service>();
    let store = services.store();
    let add = {
        let (queue, times) = (queue.clone(), times.clone());
        move |key: ObjectKey| {
            times.record(&key);
            queue.add(key);
        }
    };
    let (a1, a2, a3) = (add.clone(), add.clone(), add.clone());
    services.add_handler(
        HandlerFuncs::new()
            .on_add(move |s: Arc<Service>| a1(s.key()))
            .on_update(move |_, s: Arc<Service>| a2(s.key()))
            .on_delete(move |s: Arc<Service>| a3(s.key())),
    );
    let (s1, s2, s3) = (store.clone(), store.clone(), store);
    let (a1, a2, a3) = (add.clone(), add.clone(), add);
    ctx.informers.get::<Pod>().add_handler(
        HandlerFuncs::new()
            .on_add(move |p: Arc<Pod>| services_selecting(&s1, &p).into_iter().for_each(&a1))
            .on_update(move |old: Arc<Pod>, new: Arc<Pod>| {
                if same_for_endpoints(&old, &new) {
                    return;
                }
                let mut keys = services_selecting(&s2, &old);
                for k in services_selecting(&s2, &new) {
                    if !keys.contains(&k) {
                        keys.push(k);
                    }
                }
                keys.into_iter().for_each(&a2);
            })
            .on_delete(move |p: Arc<Pod>| services_selecting(&s3, &p).into_iter().for_each(&a3)),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn named_ports_resolve_per_pod_and_protocol() {
        let pod: Pod = serde_json::from_value(json!({"spec": {"containers": [
            {"name": "a", "ports": [{"name": "http", "containerPort": 8080},
                                    {"name": "dns", "containerPort": 53, "protocol": "UDP"}]}]}}))
        .unwrap();
        let port = |v: serde_json::Value| -> ServicePort { serde_json::from_value(v).unwrap() };
        assert_eq!(
            find_port(&pod, &port(json!({"port": 80, "targetPort": "http"}))),
            Some(8080)
        );
        assert_eq!(
            find_port(&pod, &port(json!({"port": 53, "targetPort": "dns"}))),
            None
        );
        assert_eq!(
            find_port(
                &pod,
                &port(json!({"port": 53, "targetPort": "dns", "protocol": "UDP"}))
            ),
            Some(53)
        );
        assert_eq!(
            find_port(&pod, &port(json!({"port": 80, "targetPort": 9090}))),
            Some(9090)
        );
        assert_eq!(find_port(&pod, &port(json!({"port": 80}))), Some(80));
    }

    #[test]
    fn pods_need_an_ip_and_terminating_ones_are_optional() {
        let mut pod: Pod = serde_json::from_value(json!({"metadata": {"name": "p"},
            "status": {"phase": "Running", "podIP": "10.0.0.1"}}))
        .unwrap();
        assert!(include_pod(&pod, false));
        assert_eq!(pod_ip(&pod, false).as_deref(), Some("10.0.0.1"));
        assert_eq!(pod_ip(&pod, true), None);
        pod.metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now()),
        );
        assert!(!include_pod(&pod, false));
        assert!(include_pod(&pod, true));
        pod.status.as_mut().unwrap().pod_ip = None;
        assert!(!include_pod(&pod, true));
    }
}
