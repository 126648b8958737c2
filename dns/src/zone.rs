//! The in-memory index of the cluster's names: a [`Snapshot`] built from the
//! informers' Services and EndpointSlices, replaced as a whole on every change, so a
//! query reads one consistent view without locks held across the answer.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use hickory_proto::rr::Name;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// The label that ties an EndpointSlice to its Service.
pub use keelson_client::well_known::SERVICE_NAME_LABEL;
/// The legacy annotation that makes every endpoint of a Service count as ready.
const TOLERATE_UNREADY: &str = "service.alpha.kubernetes.io/tolerate-unready-endpoints";

/// A port as DNS names it: `_<name>._<protocol>`, both lower-case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortRecord {
    pub name: String,
    pub protocol: String,
    pub port: u16,
}

/// One address of a headless Service's endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointRecord {
    pub ip: IpAddr,
    /// The endpoint's `hostname`, else its address with dashes (CoreDNS's choice of
    /// the specification's "system-assigned identifier"); lower-case.
    pub hostname: String,
    /// The ports of the slice the endpoint came from (a headless Service's traffic goes
    /// straight to these, not to the Service's ports).
    pub ports: Arc<Vec<PortRecord>>,
}

/// What a Service's own name answers with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServiceKind {
    ClusterIp(Vec<IpAddr>),
    /// The endpoints that count (ready ones, or all with `publishNotReadyAddresses`).
    Headless(Vec<EndpointRecord>),
    ExternalName(Name),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceRecord {
    pub kind: ServiceKind,
    pub ports: Vec<PortRecord>,
}

/// Every name of the cluster at one moment.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// By (namespace, name).
    services: HashMap<(String, String), ServiceRecord>,
    /// Namespaces that hold at least one Service.
    namespaces: HashSet<String>,
    /// Reverse names: ClusterIPs and headless endpoints' addresses.
    ptr: HashMap<IpAddr, Vec<Name>>,
    /// The SOA serial: changes whenever the snapshot does.
    pub serial: u32,
}

impl Snapshot {
    /// Index `services` and `slices` for `domain` (e.g. `cluster.local`).
    pub fn build<'a>(
        domain: &str,
        services: impl IntoIterator<Item = &'a Service>,
        slices: impl IntoIterator<Item = &'a EndpointSlice>,
        serial: u32,
    ) -> Snapshot {
        let mut endpoints: HashMap<(String, String), Vec<(EndpointRecord, bool)>> = HashMap::new();
        for slice in slices {
            let Some(ns) = slice.metadata.namespace.as_deref() else {
                continue;
            };
            let Some(svc) = slice
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SERVICE_NAME_LABEL))
            else {
                continue;
            };
            if slice.address_type != "IPv4" && slice.address_type != "IPv6" {
                continue;
            }
            let ports: Arc<Vec<PortRecord>> = Arc::new(
                slice
                    .ports
                    .iter()
                    .flatten()
                    .filter_map(|p| {
                        Some(PortRecord {
                            name: p.name.clone().unwrap_or_default().to_ascii_lowercase(),
                            protocol: p.protocol.as_deref().unwrap_or("TCP").to_ascii_lowercase(),
                            port: u16::try_from(p.port?).ok()?,
                        })
                    })
                    .collect(),
            );
            let list = endpoints
                .entry((ns.to_ascii_lowercase(), svc.to_ascii_lowercase()))
                .or_default();
            for ep in &slice.endpoints {
                // A nil `ready` means ready (discovery.k8s.io/v1 EndpointConditions).
                let ready = ep.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
                for addr in &ep.addresses {
                    let Ok(ip) = addr.parse::<IpAddr>() else {
                        continue;
                    };
                    let hostname = match ep.hostname.as_deref() {
                        Some(h) if !h.is_empty() => h.to_ascii_lowercase(),
                        _ => dashed(ip),
                    };
                    let record = EndpointRecord {
                        ip,
                        hostname,
                        ports: ports.clone(),
                    };
                    if !list
                        .iter()
                        .any(|(r, _)| r.ip == record.ip && r.hostname == record.hostname)
                    {
                        list.push((record, ready));
                    }
                }
            }
        }

        let mut snap = Snapshot {
            serial,
            ..Default::default()
        };
        for svc in services {
            let (Some(ns), Some(name)) = (
                svc.metadata.namespace.as_deref(),
                svc.metadata.name.as_deref(),
            ) else {
                continue;
            };
            let (ns, name) = (ns.to_ascii_lowercase(), name.to_ascii_lowercase());
            let Some(spec) = svc.spec.as_ref() else {
                continue;
            };
            let Ok(fqdn) = Name::from_ascii(format!("{name}.{ns}.svc.{domain}.")) else {
                continue;
            };
            let ports = spec
                .ports
                .iter()
                .flatten()
                .filter_map(|p| {
                    Some(PortRecord {
                        name: p.name.clone().unwrap_or_default().to_ascii_lowercase(),
                        protocol: p.protocol.as_deref().unwrap_or("TCP").to_ascii_lowercase(),
                        port: u16::try_from(p.port).ok()?,
                    })
                })
                .collect();
            let kind = if spec.type_.as_deref() == Some("ExternalName") {
                let target = spec.external_name.as_deref().unwrap_or("");
                let target = target.trim_end_matches('.');
                match Name::from_ascii(format!("{target}.")) {
                    Ok(n) if !target.is_empty() => ServiceKind::ExternalName(n),
                    _ => continue,
                }
            } else if spec.cluster_ip.as_deref() == Some("None") {
                let all = spec.publish_not_ready_addresses == Some(true)
                    || svc
                        .metadata
                        .annotations
                        .as_ref()
                        .and_then(|a| a.get(TOLERATE_UNREADY))
                        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
                let eps: Vec<EndpointRecord> = endpoints
                    .get(&(ns.clone(), name.clone()))
                    .into_iter()
                    .flatten()
                    .filter(|(_, ready)| all || *ready)
                    .map(|(r, _)| r.clone())
                    .collect();
                for ep in &eps {
                    if let Ok(ptr) = Name::from_ascii(format!("{}.{fqdn}", ep.hostname)) {
                        snap.ptr.entry(ep.ip).or_default().push(ptr);
                    }
                }
                ServiceKind::Headless(eps)
            } else {
                let mut ips: Vec<IpAddr> = spec
                    .cluster_ips
                    .iter()
                    .flatten()
                    .chain(spec.cluster_ip.iter())
                    .filter_map(|s| s.parse().ok())
                    .collect();
                ips.dedup();
                let mut seen = HashSet::new();
                ips.retain(|ip| seen.insert(*ip));
                if ips.is_empty() {
                    continue;
                }
                for ip in &ips {
                    snap.ptr.entry(*ip).or_default().push(fqdn.clone());
                }
                ServiceKind::ClusterIp(ips)
            };
            snap.namespaces.insert(ns.clone());
            snap.services
                .insert((ns, name), ServiceRecord { kind, ports });
        }
        snap
    }

    pub fn service(&self, namespace: &str, name: &str) -> Option<&ServiceRecord> {
        self.services
            .get(&(namespace.to_string(), name.to_string()))
    }

    pub fn has_namespace(&self, namespace: &str) -> bool {
        self.namespaces.contains(namespace)
    }

    pub fn ptr(&self, ip: &IpAddr) -> &[Name] {
        self.ptr.get(ip).map(Vec::as_slice).unwrap_or(&[])
    }

    pub fn service_count(&self) -> usize {
        self.services.len()
    }
}

/// `10.0.0.1` as `10-0-0-1`, `fd00::1` as `fd00--1` (how pod and endpoint names spell
/// an address).
pub fn dashed(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string().replace('.', "-"),
        IpAddr::V6(v6) => v6.to_string().replace(':', "-"),
    }
}
