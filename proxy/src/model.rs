//! What the proxy programs, derived from Services and EndpointSlices: one
//! [`ServicePort`] per (Service, port), with the endpoints that serve it already
//! chosen for cluster and for node-local traffic, as kube-proxy's
//! `CategorizeEndpoints` does. Pure functions of the API objects; no I/O.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use keelson_client::well_known::SERVICE_NAME_LABEL;

/// Services carrying this label are left to another proxy (kube-proxy's rule).
pub const SERVICE_PROXY_NAME_LABEL: &str = "service.kubernetes.io/service-proxy-name";
/// Kubernetes' default ClientIP affinity timeout.
pub const DEFAULT_AFFINITY_SECONDS: u32 = 10800;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    pub fn parse(s: Option<&str>) -> Option<Protocol> {
        match s.unwrap_or("TCP") {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }

    /// The name nftables and conntrack use.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// One endpoint address and port of a Service port.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Endpoint {
    pub ip: Ipv4Addr,
    pub port: u16,
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
    /// On the proxy's own node.
    pub local: bool,
    /// The node it runs on, when the slice says.
    pub node: Option<String>,
}

/// Identifies a Service port: `namespace/name/protocol/port-name`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServicePortName {
    pub namespace: String,
    pub name: String,
    pub protocol: Protocol,
    /// The port's name; empty for a Service's single unnamed port.
    pub port_name: String,
}

impl std::fmt::Display for ServicePortName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{}/{}/{}",
            self.namespace,
            self.name,
            self.protocol.as_str(),
            self.port_name
        )
    }
}

/// Everything the rules for one Service port need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServicePort {
    pub id: ServicePortName,
    pub cluster_ip: Option<Ipv4Addr>,
    pub port: u16,
    pub node_port: Option<u16>,
    /// `spec.externalIPs` and LoadBalancer ingress IPs: reached like a NodePort.
    pub external_ips: Vec<Ipv4Addr>,
    pub load_balancer_ips: Vec<Ipv4Addr>,
    /// ClientIP session affinity timeout, when affinity is on.
    pub affinity_seconds: Option<u32>,
    pub external_policy_local: bool,
    pub internal_policy_local: bool,
    pub health_check_node_port: Option<u16>,
    /// Usable endpoints anywhere in the cluster (the "Cluster" traffic policy).
    pub cluster_endpoints: Vec<Endpoint>,
    /// Usable endpoints on this node (the "Local" traffic policies).
    pub local_endpoints: Vec<Endpoint>,
    /// Every endpoint listed, usable or not (conntrack cleanup compares these).
    pub all_endpoints: Vec<Endpoint>,
}

impl ServicePort {
    /// Whether the port is reached from outside (NodePort, external or LB IPs).
    pub fn has_external(&self) -> bool {
        self.node_port.is_some()
            || !self.external_ips.is_empty()
            || !self.load_balancer_ips.is_empty()
    }
}

/// Drops what the proxy never reads from a cached Service (annotations, such as
/// kubectl's last-applied configuration, owner references).
pub fn trim_service(svc: &mut Service) {
    let m = &mut svc.metadata;
    m.annotations = None;
    m.owner_references = None;
    m.finalizers = None;
    m.managed_fields = None;
}

/// Drops what the proxy never reads from a cached EndpointSlice: per endpoint, the
/// target reference, hostname, zone and hints.
pub fn trim_endpoint_slice(slice: &mut EndpointSlice) {
    let m = &mut slice.metadata;
    m.annotations = None;
    m.owner_references = None;
    m.managed_fields = None;
    for ep in &mut slice.endpoints {
        ep.target_ref = None;
        ep.hostname = None;
        ep.zone = None;
        ep.hints = None;
        ep.deprecated_topology = None;
    }
}

/// Whether the proxy handles this Service at all: headless, ExternalName and
/// Services claimed by another proxy get no rules.
pub fn is_proxied(svc: &Service) -> bool {
    let Some(spec) = svc.spec.as_ref() else {
        return false;
    };
    if spec.type_.as_deref() == Some("ExternalName") {
        return false;
    }
    if svc
        .metadata
        .labels
        .as_ref()
        .is_some_and(|l| l.contains_key(SERVICE_PROXY_NAME_LABEL))
    {
        return false;
    }
    matches!(spec.cluster_ip.as_deref(), Some(ip) if ip != "None" && !ip.is_empty())
}

/// The endpoints of one Service from all its slices, deduplicated by address and
/// port name: `port name -> endpoints`.
fn endpoints_by_port(
    slices: &[&EndpointSlice],
    node_name: &str,
) -> BTreeMap<(String, Protocol), BTreeSet<Endpoint>> {
    let mut out: BTreeMap<(String, Protocol), BTreeSet<Endpoint>> = BTreeMap::new();
    for slice in slices {
        if slice.address_type != "IPv4" {
            continue;
        }
        for port in slice.ports.iter().flatten() {
            let (Some(number), Some(protocol)) = (
                port.port.and_then(|p| u16::try_from(p).ok()),
                Protocol::parse(port.protocol.as_deref()),
            ) else {
                continue;
            };
            let name = port.name.clone().unwrap_or_default();
            for ep in &slice.endpoints {
                let c = ep.conditions.as_ref();
                // Nil `ready` means ready (the API's rule); `serving` defaults to ready.
                let ready = c.and_then(|c| c.ready).unwrap_or(true);
                let serving = c.and_then(|c| c.serving).unwrap_or(ready);
                let terminating = c.and_then(|c| c.terminating).unwrap_or(false);
                let local = ep.node_name.as_deref() == Some(node_name);
                for addr in &ep.addresses {
                    let Ok(ip) = addr.parse::<Ipv4Addr>() else {
                        continue;
                    };
                    out.entry((name.clone(), protocol))
                        .or_default()
                        .insert(Endpoint {
                            ip,
                            port: number,
                            ready,
                            serving,
                            terminating,
                            local,
                            node: ep.node_name.clone(),
                        });
                }
            }
        }
    }
    out
}

/// kube-proxy's endpoint choice: ready endpoints; when none is ready, the serving
/// ones that are terminating (so connections drain during a rollout).
fn usable(endpoints: impl Iterator<Item = Endpoint> + Clone) -> Vec<Endpoint> {
    let ready: Vec<Endpoint> = endpoints.clone().filter(|e| e.ready).collect();
    if !ready.is_empty() {
        return ready;
    }
    endpoints.filter(|e| e.serving && e.terminating).collect()
}

/// The Service ports to program, sorted by name, from the Services and slices the
/// informers hold. `node_name` decides which endpoints are local.
pub fn service_ports(
    services: &[std::sync::Arc<Service>],
    slices: &[std::sync::Arc<EndpointSlice>],
    node_name: &str,
) -> Vec<ServicePort> {
    let mut slices_by_service: BTreeMap<(String, String), Vec<&EndpointSlice>> = BTreeMap::new();
    for s in slices {
        let Some(svc) = s
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(SERVICE_NAME_LABEL))
        else {
            continue;
        };
        let ns = s.metadata.namespace.clone().unwrap_or_default();
        slices_by_service
            .entry((ns, svc.clone()))
            .or_default()
            .push(s);
    }
    let mut out = Vec::new();
    for svc in services {
        if !is_proxied(svc) {
            continue;
        }
        let spec = svc.spec.as_ref().expect("checked by is_proxied");
        let namespace = svc.metadata.namespace.clone().unwrap_or_default();
        let name = svc.metadata.name.clone().unwrap_or_default();
        let cluster_ip = spec.cluster_ip.as_deref().and_then(|ip| ip.parse().ok());
        let slices = slices_by_service
            .get(&(namespace.clone(), name.clone()))
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let endpoints = endpoints_by_port(slices, node_name);
        let affinity_seconds = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
            spec.session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref())
                .and_then(|c| c.timeout_seconds)
                .and_then(|t| u32::try_from(t).ok())
                .unwrap_or(DEFAULT_AFFINITY_SECONDS)
        });
        let external_ips: Vec<Ipv4Addr> = spec
            .external_ips
            .iter()
            .flatten()
            .filter_map(|ip| ip.parse().ok())
            .collect();
        let load_balancer_ips: Vec<Ipv4Addr> = if spec.type_.as_deref() == Some("LoadBalancer") {
            svc.status
                .as_ref()
                .and_then(|s| s.load_balancer.as_ref())
                .and_then(|lb| lb.ingress.as_ref())
                .into_iter()
                .flatten()
                // ipMode Proxy means a load balancer in front rewrites the destination:
                // the node never sees the ingress IP, so it gets no rules.
                .filter(|i| i.ip_mode.as_deref() != Some("Proxy"))
                .filter_map(|i| i.ip.as_deref()?.parse().ok())
                .collect()
        } else {
            Vec::new()
        };
        let external_policy_local = spec.external_traffic_policy.as_deref() == Some("Local");
        let internal_policy_local = spec.internal_traffic_policy.as_deref() == Some("Local");
        for port in spec.ports.iter().flatten() {
            let (Some(protocol), Ok(number)) = (
                Protocol::parse(port.protocol.as_deref()),
                u16::try_from(port.port),
            ) else {
                continue;
            };
            let port_name = port.name.clone().unwrap_or_default();
            let all: Vec<Endpoint> = endpoints
                .get(&(port_name.clone(), protocol))
                .map(|s| s.iter().cloned().collect())
                .unwrap_or_default();
            let local_endpoints = usable(all.iter().filter(|e| e.local).cloned());
            let cluster_endpoints = usable(all.iter().cloned());
            let sp = ServicePort {
                id: ServicePortName {
                    namespace: namespace.clone(),
                    name: name.clone(),
                    protocol,
                    port_name,
                },
                cluster_ip,
                port: number,
                node_port: port.node_port.and_then(|p| u16::try_from(p).ok()),
                external_ips: external_ips.clone(),
                load_balancer_ips: load_balancer_ips.clone(),
                affinity_seconds,
                external_policy_local,
                internal_policy_local,
                health_check_node_port: spec
                    .health_check_node_port
                    .and_then(|p| u16::try_from(p).ok())
                    .filter(|_| external_policy_local),
                cluster_endpoints,
                local_endpoints,
                all_endpoints: all,
            };
            out.push(sp);
        }
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Arc;

    pub fn service(v: serde_json::Value) -> Arc<Service> {
        Arc::new(serde_json::from_value(v).unwrap())
    }

    pub fn slice(v: serde_json::Value) -> Arc<EndpointSlice> {
        Arc::new(serde_json::from_value(v).unwrap())
    }

    pub fn web() -> (Arc<Service>, Arc<EndpointSlice>) {
        let svc = service(json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"clusterIP": "10.96.0.20", "type": "NodePort",
                     "ports": [{"name": "http", "port": 80, "nodePort": 30080, "protocol": "TCP"}]}
        }));
        let sl = slice(json!({
            "metadata": {"name": "web-abc", "namespace": "default",
                         "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [
                {"addresses": ["10.201.0.5"], "conditions": {"ready": true}, "nodeName": "n1"},
                {"addresses": ["10.201.0.70"], "conditions": {"ready": true}, "nodeName": "n2"},
                {"addresses": ["10.201.0.9"], "conditions": {"ready": false, "serving": true, "terminating": true}, "nodeName": "n1"}
            ]
        }));
        (svc, sl)
    }

    #[test]
    fn ready_endpoints_are_chosen_and_terminating_ones_only_as_a_fallback() {
        let (svc, sl) = web();
        let ports = service_ports(std::slice::from_ref(&svc), &[sl], "n1");
        assert_eq!(ports.len(), 1);
        let p = &ports[0];
        assert_eq!(p.id.to_string(), "default/web/tcp/http");
        let ips: Vec<String> = p
            .cluster_endpoints
            .iter()
            .map(|e| e.ip.to_string())
            .collect();
        assert_eq!(ips, ["10.201.0.5", "10.201.0.70"]);
        assert_eq!(p.local_endpoints.len(), 1);
        assert_eq!(p.all_endpoints.len(), 3);

        let only_terminating = slice(json!({
            "metadata": {"name": "web-abc", "namespace": "default",
                         "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [
                {"addresses": ["10.201.0.9"], "conditions": {"ready": false, "serving": true, "terminating": true}},
                {"addresses": ["10.201.0.10"], "conditions": {"ready": false, "serving": false, "terminating": true}}
            ]
        }));
        let ports = service_ports(&[svc], &[only_terminating], "n1");
        let ips: Vec<String> = ports[0]
            .cluster_endpoints
            .iter()
            .map(|e| e.ip.to_string())
            .collect();
        assert_eq!(ips, ["10.201.0.9"]);
    }

    #[test]
    fn headless_external_name_and_foreign_proxy_services_get_nothing() {
        for spec in [
            json!({"metadata": {"name": "h", "namespace": "d"}, "spec": {"clusterIP": "None", "ports": [{"port": 80}]}}),
            json!({"metadata": {"name": "e", "namespace": "d"}, "spec": {"type": "ExternalName", "externalName": "x.example"}}),
            json!({"metadata": {"name": "f", "namespace": "d", "labels": {"service.kubernetes.io/service-proxy-name": "other"}},
                   "spec": {"clusterIP": "10.96.0.3", "ports": [{"port": 80}]}}),
        ] {
            assert!(service_ports(&[service(spec)], &[], "n1").is_empty());
        }
    }

    #[test]
    fn local_endpoints_are_those_on_this_node() {
        let (svc, sl) = web();
        let mut s = (*svc).clone();
        s.spec.as_mut().unwrap().internal_traffic_policy = Some("Local".into());
        let ports = service_ports(&[Arc::new(s)], &[sl], "n2");
        assert!(ports[0].internal_policy_local);
        let ips: Vec<String> = ports[0]
            .local_endpoints
            .iter()
            .map(|e| e.ip.to_string())
            .collect();
        assert_eq!(ips, ["10.201.0.70"]);
    }

    #[test]
    fn load_balancer_ingress_and_affinity() {
        let svc = service(json!({
            "metadata": {"name": "lb", "namespace": "default"},
            "spec": {"clusterIP": "10.96.0.30", "type": "LoadBalancer", "sessionAffinity": "ClientIP",
                     "externalIPs": ["192.0.2.9"],
                     "ports": [{"port": 80, "nodePort": 30001}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "10.200.1.240", "ipMode": "VIP"}, {"ip": "10.200.1.241", "ipMode": "Proxy"}]}}
        }));
        let ports = service_ports(&[svc], &[], "n1");
        let p = &ports[0];
        assert_eq!(p.affinity_seconds, Some(DEFAULT_AFFINITY_SECONDS));
        assert_eq!(
            p.load_balancer_ips,
            vec!["10.200.1.240".parse::<Ipv4Addr>().unwrap()]
        );
        assert_eq!(
            p.external_ips,
            vec!["192.0.2.9".parse::<Ipv4Addr>().unwrap()]
        );
        assert!(p.has_external());
        assert!(p.cluster_endpoints.is_empty());
    }
}
