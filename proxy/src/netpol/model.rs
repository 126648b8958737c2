//! What the NetworkPolicies select, computed from typed objects: for each pod on this
//! node, the traffic each direction allows, with peers as address ranges. Pure: no I/O,
//! so every semantic rule is unit-tested here and `render` only prints the result.
//!
//! Semantics are Kubernetes' (networking.k8s.io/v1): a pod is isolated for a direction
//! when any policy of its namespace selects it with that policy type; isolated traffic
//! passes only when some rule of some such policy allows it. Invalid pieces (a selector,
//! a CIDR, a port the apiserver should have refused) allow nothing: we fail closed.

use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as metav1;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use keelson_apimachinery::selector::LabelSelector;

/// The label the apiserver puts on every namespace; assumed when a namespace lacks it.
const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// A transport protocol a policy port names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// `None` (the default) is TCP; an unknown name is `Err`.
    fn parse(p: Option<&str>) -> Result<Self, ()> {
        match p.unwrap_or("TCP") {
            "TCP" => Ok(Protocol::Tcp),
            "UDP" => Ok(Protocol::Udp),
            "SCTP" => Ok(Protocol::Sctp),
            _ => Err(()),
        }
    }

    /// The name nft uses.
    pub fn nft(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// Address ranges (inclusive), merged and sorted, per family.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AddressSet {
    pub v4: Vec<(u32, u32)>,
    pub v6: Vec<(u128, u128)>,
}

impl AddressSet {
    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    fn add_ip(&mut self, ip: IpAddr) {
        match ip {
            IpAddr::V4(a) => self.v4.push((a.into(), a.into())),
            IpAddr::V6(a) => self.v6.push((a.into(), a.into())),
        }
    }

    /// Sort and coalesce, so that nft never sees overlapping interval elements.
    fn normalize(&mut self) {
        self.v4 = merge(std::mem::take(&mut self.v4));
        self.v6 = merge(std::mem::take(&mut self.v6));
    }
}

/// Sorted, coalesced ranges (adjacent ranges join).
fn merge<T: Ord + Copy + Step>(mut ranges: Vec<(T, T)>) -> Vec<(T, T)> {
    ranges.sort();
    let mut out: Vec<(T, T)> = Vec::with_capacity(ranges.len());
    for (lo, hi) in ranges {
        match out.last_mut() {
            Some((_, last_hi)) if lo <= last_hi.successor().unwrap_or(*last_hi) => {
                if hi > *last_hi {
                    *last_hi = hi;
                }
            }
            _ => out.push((lo, hi)),
        }
    }
    out
}

/// Neighbouring values, for merging adjacent ranges and cutting holes without overflow.
trait Step: Sized {
    fn successor(&self) -> Option<Self>;
    fn predecessor(&self) -> Option<Self>;
}

macro_rules! step {
    ($($t:ty),*) => {$(
        impl Step for $t {
            fn successor(&self) -> Option<Self> {
                self.checked_add(1)
            }
            fn predecessor(&self) -> Option<Self> {
                self.checked_sub(1)
            }
        }
    )*};
}
step!(u16, u32, u128);

/// A CIDR as an inclusive range; `None` when it does not parse.
fn cidr_range(s: &str) -> Option<Range> {
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (a.parse::<IpAddr>().ok()?, Some(l.parse::<u32>().ok()?)),
        None => (s.parse::<IpAddr>().ok()?, None),
    };
    match addr {
        IpAddr::V4(a) => {
            let len = len.unwrap_or(32);
            if len > 32 {
                return None;
            }
            let host = if len == 32 { 0 } else { u32::MAX >> len };
            let lo = u32::from(a) & !host;
            Some(Range::V4(lo, lo | host))
        }
        IpAddr::V6(a) => {
            let len = len.unwrap_or(128);
            if len > 128 {
                return None;
            }
            let host = if len == 128 { 0 } else { u128::MAX >> len };
            let lo = u128::from(a) & !host;
            Some(Range::V6(lo, lo | host))
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Range {
    V4(u32, u32),
    V6(u128, u128),
}

/// `(lo, hi)` minus every range in `holes` (which need not lie inside it).
fn subtract<T: Ord + Copy + Step>(lo: T, hi: T, holes: &[(T, T)]) -> Vec<(T, T)> {
    let mut out = Vec::new();
    let mut next = Some(lo);
    for &(hlo, hhi) in merge(holes.to_vec()).iter() {
        let Some(start) = next else { break };
        if hhi < start || hlo > hi {
            continue;
        }
        if hlo > start {
            // hlo > start >= lo, so hlo has a predecessor.
            out.push((start, hlo.predecessor().unwrap_or(start)));
        }
        next = if hhi >= hi { None } else { hhi.successor() };
    }
    if let Some(start) = next {
        if start <= hi {
            out.push((start, hi));
        }
    }
    out
}

/// An ipBlock's addresses: its CIDR minus its exceptions. An invalid CIDR or exception
/// empties the block (fail closed).
fn ip_block(block: &IPBlock) -> AddressSet {
    let mut set = AddressSet::default();
    let Some(range) = cidr_range(&block.cidr) else {
        return set;
    };
    let mut holes4 = Vec::new();
    let mut holes6 = Vec::new();
    for e in block.except.iter().flatten() {
        match cidr_range(e) {
            Some(Range::V4(lo, hi)) => holes4.push((lo, hi)),
            Some(Range::V6(lo, hi)) => holes6.push((lo, hi)),
            None => return set,
        }
    }
    match range {
        Range::V4(lo, hi) => set.v4 = subtract(lo, hi, &holes4),
        Range::V6(lo, hi) => set.v6 = subtract(lo, hi, &holes6),
    }
    set
}

/// Which destination ports a rule allows.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Ports {
    /// Every protocol and port (the rule has no `ports`).
    Any,
    /// Port ranges per protocol; an empty range list is every port of that protocol.
    Numeric(BTreeMap<Protocol, Vec<(u16, u16)>>),
}

/// Destination address, protocol and port ranges that an egress rule with named ports
/// allows: named ports resolve on the destination pod.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NamedPortTargets {
    pub v4: Vec<(u32, Protocol, u16, u16)>,
    pub v6: Vec<(u128, Protocol, u16, u16)>,
}

impl NamedPortTargets {
    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }
}

/// One way traffic may pass: from/to these peers, on these ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Allow {
    /// Peers in `peers` (or any address when `None`) on `ports`.
    Peers {
        peers: Option<SetId>,
        ports: Ports,
        policy: String,
    },
    /// Egress to named ports of pods: the set holds address, protocol and port together.
    NamedPorts { set: SetId, policy: String },
}

/// Index into [`Model::address_sets`] or [`Model::named_port_sets`].
pub type SetId = usize;

/// What a pod on this node may send or receive while isolated in that direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalPod {
    /// `namespace/name`.
    pub key: String,
    pub ips: Vec<IpAddr>,
    /// `Some` when isolated for ingress; the list may be empty (deny all).
    pub ingress: Option<Vec<Allow>>,
    /// `Some` when isolated for egress.
    pub egress: Option<Vec<Allow>>,
}

/// Everything the nft table holds, before printing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Model {
    /// Peer address sets, deduplicated by content.
    pub address_sets: Vec<AddressSet>,
    pub named_port_sets: Vec<NamedPortTargets>,
    /// Local pods isolated in at least one direction, by key.
    pub pods: Vec<LocalPod>,
}

/// A pod that takes part in policy: it has an address of its own and is not finished.
struct PodView<'a> {
    pod: &'a Pod,
    namespace: &'a str,
    key: String,
    ips: Vec<IpAddr>,
}

fn pod_view(pod: &Pod) -> Option<PodView<'_>> {
    let spec = pod.spec.as_ref()?;
    if spec.host_network == Some(true) {
        return None;
    }
    let status = pod.status.as_ref()?;
    if matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")) {
        return None;
    }
    let mut ips: Vec<IpAddr> = status
        .pod_ips
        .iter()
        .flatten()
        .filter_map(|p| p.ip.parse().ok())
        .collect();
    if ips.is_empty() {
        ips.extend(
            status
                .pod_ip
                .as_deref()
                .and_then(|ip| ip.parse::<IpAddr>().ok()),
        );
    }
    if ips.is_empty() {
        return None;
    }
    ips.sort();
    ips.dedup();
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    Some(PodView {
        pod,
        namespace,
        key: format!("{namespace}/{name}"),
        ips,
    })
}

fn label<'a>(meta: &'a metav1::ObjectMeta, key: &str) -> Option<&'a str> {
    meta.labels.as_ref()?.get(key).map(String::as_str)
}

/// A typed selector as the shared matcher; `None` (unset) is `unset`, invalid is nothing.
fn selector(sel: Option<&metav1::LabelSelector>, unset: LabelSelector) -> LabelSelector {
    let Some(sel) = sel else { return unset };
    serde_json::to_value(sel)
        .ok()
        .and_then(|v| LabelSelector::from_object(&v).ok())
        .unwrap_or_else(LabelSelector::nothing)
}

fn namespace_matches(ns: &Namespace, sel: &LabelSelector) -> bool {
    let name = ns.metadata.name.as_deref().unwrap_or_default();
    sel.matches_with(|k| {
        label(&ns.metadata, k).or_else(|| (k == NAMESPACE_NAME_LABEL).then_some(name))
    })
}

/// The container port a named port resolves to on `pod`, for `protocol`.
fn named_port(pod: &Pod, name: &str, protocol: Protocol) -> Option<u16> {
    let spec = pod.spec.as_ref()?;
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .flat_map(|c| c.ports.iter().flatten())
        .find(|p| {
            p.name.as_deref() == Some(name)
                && Protocol::parse(p.protocol.as_deref()) == Ok(protocol)
        })
        .and_then(|p| u16::try_from(p.container_port).ok())
        .filter(|p| *p != 0)
}

/// One entry of a rule's `ports`, parsed.
enum PortSpec {
    /// Every port of the protocol.
    All(Protocol),
    Range(Protocol, u16, u16),
    Named(Protocol, String),
}

/// `None` for an entry that can never match (bad protocol, port or range).
fn port_spec(p: &NetworkPolicyPort) -> Option<PortSpec> {
    let proto = Protocol::parse(p.protocol.as_deref()).ok()?;
    match &p.port {
        None => Some(PortSpec::All(proto)),
        Some(IntOrString::String(name)) => match name.parse::<u16>() {
            // A number in a string is a number, as Kubernetes' IntOrString parses it.
            Ok(n) => range_spec(proto, n as i32, p.end_port),
            Err(_) => Some(PortSpec::Named(proto, name.clone())),
        },
        Some(IntOrString::Int(n)) => range_spec(proto, *n, p.end_port),
    }
}

fn range_spec(proto: Protocol, port: i32, end: Option<i32>) -> Option<PortSpec> {
    let lo = u16::try_from(port).ok().filter(|p| *p != 0)?;
    let hi = match end {
        None => lo,
        Some(e) => u16::try_from(e).ok().filter(|e| *e >= lo)?,
    };
    Some(PortSpec::Range(proto, lo, hi))
}

/// The numeric part of a rule's ports, with named ports resolved on `pod` (ingress).
/// `None` when the rule has ports and none can match.
fn numeric_ports(
    specs: &[PortSpec],
    resolve_on: Option<&Pod>,
) -> BTreeMap<Protocol, Vec<(u16, u16)>> {
    let mut out: BTreeMap<Protocol, Vec<(u16, u16)>> = BTreeMap::new();
    let mut all: BTreeSet<Protocol> = BTreeSet::new();
    for s in specs {
        match s {
            PortSpec::All(p) => {
                all.insert(*p);
            }
            PortSpec::Range(p, lo, hi) => out.entry(*p).or_default().push((*lo, *hi)),
            PortSpec::Named(p, name) => {
                if let Some(n) = resolve_on.and_then(|pod| named_port(pod, name, *p)) {
                    out.entry(*p).or_default().push((n, n));
                }
            }
        }
    }
    for p in all {
        out.insert(p, Vec::new());
    }
    for ranges in out.values_mut() {
        *ranges = merge(std::mem::take(ranges));
    }
    out
}

/// The inputs, indexed once per computation.
struct Cluster<'a> {
    pods: Vec<PodView<'a>>,
    namespaces: BTreeMap<&'a str, &'a Namespace>,
}

impl<'a> Cluster<'a> {
    /// The pods a `from`/`to` peer with selectors picks, seen from a policy in `ns`.
    fn peer_pods(&self, peer: &NetworkPolicyPeer, ns: &str) -> Vec<&PodView<'a>> {
        let pod_sel = selector(peer.pod_selector.as_ref(), LabelSelector::everything());
        let ns_sel = peer
            .namespace_selector
            .as_ref()
            .map(|s| selector(Some(s), LabelSelector::nothing()));
        self.pods
            .iter()
            .filter(|p| match &ns_sel {
                None => p.namespace == ns,
                Some(sel) => self
                    .namespaces
                    .get(p.namespace)
                    .is_some_and(|n| namespace_matches(n, sel)),
            })
            .filter(|p| pod_sel.matches_with(|k| label(&p.pod.metadata, k)))
            .collect()
    }

    /// The addresses of a rule's peers; `None` when the rule names no peers (all).
    fn peer_addresses(
        &self,
        peers: Option<&Vec<NetworkPolicyPeer>>,
        ns: &str,
    ) -> Option<AddressSet> {
        let peers = peers.filter(|p| !p.is_empty())?;
        let mut set = AddressSet::default();
        for peer in peers {
            if let Some(block) = &peer.ip_block {
                let b = ip_block(block);
                set.v4.extend(b.v4);
                set.v6.extend(b.v6);
            } else if peer.pod_selector.is_some() || peer.namespace_selector.is_some() {
                for p in self.peer_pods(peer, ns) {
                    p.ips.iter().for_each(|ip| set.add_ip(*ip));
                }
            }
        }
        set.normalize();
        Some(set)
    }

    /// Egress named ports: resolved on each destination pod among the peers (every pod
    /// when the rule names no peers; pods inside an ipBlock for ipBlock peers).
    fn named_targets(
        &self,
        peers: Option<&Vec<NetworkPolicyPeer>>,
        ns: &str,
        named: &[(Protocol, &str)],
    ) -> NamedPortTargets {
        let mut dests: BTreeMap<&str, &PodView<'a>> = BTreeMap::new();
        match peers.filter(|p| !p.is_empty()) {
            None => dests.extend(self.pods.iter().map(|p| (p.key.as_str(), p))),
            Some(peers) => {
                for peer in peers {
                    if let Some(block) = &peer.ip_block {
                        let b = ip_block(block);
                        for p in &self.pods {
                            if p.ips.iter().any(|ip| contains(&b, *ip)) {
                                dests.insert(&p.key, p);
                            }
                        }
                    } else if peer.pod_selector.is_some() || peer.namespace_selector.is_some() {
                        dests.extend(
                            self.peer_pods(peer, ns)
                                .into_iter()
                                .map(|p| (p.key.as_str(), p)),
                        );
                    }
                }
            }
        }
        let mut out = NamedPortTargets::default();
        for p in dests.values() {
            for (proto, name) in named {
                let Some(port) = named_port(p.pod, name, *proto) else {
                    continue;
                };
                for ip in &p.ips {
                    match ip {
                        IpAddr::V4(a) => out.v4.push(((*a).into(), *proto, port, port)),
                        IpAddr::V6(a) => out.v6.push(((*a).into(), *proto, port, port)),
                    }
                }
            }
        }
        out.v4.sort();
        out.v4.dedup();
        out.v6.sort();
        out.v6.dedup();
        out
    }
}

fn contains(set: &AddressSet, ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => {
            let a = u32::from(a);
            set.v4.iter().any(|(lo, hi)| (*lo..=*hi).contains(&a))
        }
        IpAddr::V6(a) => {
            let a = u128::from(a);
            set.v6.iter().any(|(lo, hi)| (*lo..=*hi).contains(&a))
        }
    }
}

/// Sets deduplicated by content, numbered in order of first use.
struct Interner<T> {
    ids: BTreeMap<T, SetId>,
    items: Vec<T>,
}

impl<T: Ord + Clone> Interner<T> {
    fn new() -> Self {
        Interner {
            ids: BTreeMap::new(),
            items: Vec::new(),
        }
    }
    fn id(&mut self, item: T) -> SetId {
        if let Some(id) = self.ids.get(&item) {
            return *id;
        }
        let id = self.items.len();
        self.ids.insert(item.clone(), id);
        self.items.push(item);
        id
    }
}

/// Which directions a policy covers: `policyTypes`, or Ingress plus Egress when it has
/// egress rules (the apiserver's default).
fn policy_types(np: &NetworkPolicy) -> (bool, bool) {
    let spec = np.spec.as_ref();
    match spec.and_then(|s| s.policy_types.as_ref()) {
        Some(types) => (
            types.iter().any(|t| t == "Ingress"),
            types.iter().any(|t| t == "Egress"),
        ),
        None => (true, spec.and_then(|s| s.egress.as_ref()).is_some()),
    }
}

/// Compute the model for the pods of `node_name`.
/// An address belongs to one pod at a time. A deleted pod's object can outlive its
/// sandbox, and the IPAM can hand its address to a new pod meanwhile: the address then
/// stays with the pod that is not terminating (the newest, if both or neither are),
/// so that a policy of the departing pod never isolates its successor.
fn drop_reused_addresses(pods: &mut Vec<PodView<'_>>) {
    let rank = |p: &PodView| {
        (
            p.pod.metadata.deletion_timestamp.is_none(),
            p.pod.metadata.creation_timestamp.clone(),
            p.key.clone(),
        )
    };
    let mut owner: std::collections::HashMap<IpAddr, usize> = std::collections::HashMap::new();
    for (i, p) in pods.iter().enumerate() {
        for ip in &p.ips {
            let keep = match owner.get(ip) {
                Some(&j) => rank(p) > rank(&pods[j]),
                None => true,
            };
            if keep {
                owner.insert(*ip, i);
            }
        }
    }
    for (i, p) in pods.iter_mut().enumerate() {
        p.ips.retain(|ip| owner.get(ip) == Some(&i));
    }
    pods.retain(|p| !p.ips.is_empty());
}

pub fn compute<P, N, Q>(node_name: &str, pods: &[P], namespaces: &[N], policies: &[Q]) -> Model
where
    P: Borrow<Pod>,
    N: Borrow<Namespace>,
    Q: Borrow<NetworkPolicy>,
{
    let cluster = Cluster {
        pods: {
            // Sorted, so that set numbers (and so the rendered text) do not depend on
            // the order the caller lists pods in.
            let mut v: Vec<PodView> = pods.iter().filter_map(|p| pod_view(p.borrow())).collect();
            v.sort_by(|a, b| a.key.cmp(&b.key));
            drop_reused_addresses(&mut v);
            v
        },
        namespaces: namespaces
            .iter()
            .map(|n| n.borrow())
            .map(|n| (n.metadata.name.as_deref().unwrap_or_default(), n))
            .collect(),
    };
    let mut policies: Vec<&NetworkPolicy> = policies.iter().map(|p| p.borrow()).collect();
    policies.sort_by_key(|p| (p.metadata.namespace.clone(), p.metadata.name.clone()));

    let mut address_sets = Interner::new();
    let mut named_sets = Interner::new();
    let mut local: Vec<LocalPod> = Vec::new();

    for pod in cluster
        .pods
        .iter()
        .filter(|p| p.pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node_name))
    {
        let mut ingress: Option<Vec<Allow>> = None;
        let mut egress: Option<Vec<Allow>> = None;
        for np in policies
            .iter()
            .filter(|np| np.metadata.namespace.as_deref().unwrap_or("default") == pod.namespace)
        {
            let Some(spec) = np.spec.as_ref() else {
                continue;
            };
            let sel = selector(spec.pod_selector.as_ref(), LabelSelector::everything());
            if !sel.matches_with(|k| label(&pod.pod.metadata, k)) {
                continue;
            }
            let name = format!(
                "{}/{}",
                pod.namespace,
                np.metadata.name.as_deref().unwrap_or_default()
            );
            let (does_ingress, does_egress) = policy_types(np);
            if does_ingress {
                let allows = ingress.get_or_insert_with(Vec::new);
                for rule in spec.ingress.iter().flatten() {
                    let specs: Vec<PortSpec> =
                        rule.ports.iter().flatten().filter_map(port_spec).collect();
                    let has_ports = rule.ports.as_ref().is_some_and(|p| !p.is_empty());
                    let ports = if has_ports {
                        let numeric = numeric_ports(&specs, Some(pod.pod));
                        if numeric.is_empty() {
                            continue;
                        }
                        Ports::Numeric(numeric)
                    } else {
                        Ports::Any
                    };
                    let peers = match cluster.peer_addresses(rule.from.as_ref(), pod.namespace) {
                        None => None,
                        Some(set) if set.is_empty() => continue,
                        Some(set) => Some(address_sets.id(set)),
                    };
                    allows.push(Allow::Peers {
                        peers,
                        ports,
                        policy: name.clone(),
                    });
                }
            }
            if does_egress {
                let allows = egress.get_or_insert_with(Vec::new);
                for rule in spec.egress.iter().flatten() {
                    let specs: Vec<PortSpec> =
                        rule.ports.iter().flatten().filter_map(port_spec).collect();
                    let has_ports = rule.ports.as_ref().is_some_and(|p| !p.is_empty());
                    let named: Vec<(Protocol, &str)> = specs
                        .iter()
                        .filter_map(|s| match s {
                            PortSpec::Named(p, n) => Some((*p, n.as_str())),
                            _ => None,
                        })
                        .collect();
                    if !named.is_empty() {
                        let targets =
                            cluster.named_targets(rule.to.as_ref(), pod.namespace, &named);
                        if !targets.is_empty() {
                            allows.push(Allow::NamedPorts {
                                set: named_sets.id(targets),
                                policy: name.clone(),
                            });
                        }
                    }
                    let ports = if has_ports {
                        let numeric = numeric_ports(&specs, None);
                        if numeric.is_empty() {
                            continue;
                        }
                        Ports::Numeric(numeric)
                    } else {
                        Ports::Any
                    };
                    let peers = match cluster.peer_addresses(rule.to.as_ref(), pod.namespace) {
                        None => None,
                        Some(set) if set.is_empty() => continue,
                        Some(set) => Some(address_sets.id(set)),
                    };
                    allows.push(Allow::Peers {
                        peers,
                        ports,
                        policy: name.clone(),
                    });
                }
            }
        }
        if ingress.is_some() || egress.is_some() {
            local.push(LocalPod {
                key: pod.key.clone(),
                ips: pod.ips.clone(),
                ingress,
                egress,
            });
        }
    }
    local.sort_by(|a, b| a.key.cmp(&b.key));
    Model {
        address_sets: address_sets.items,
        named_port_sets: named_sets.items,
        pods: local,
    }
}
