//! The answer function: one parsed query and a [`Snapshot`] in, a reply (or "forward
//! it") out. No I/O, so every record kind is tested here, table-driven.
//!
//! Names follow the Kubernetes DNS specification (schema 1.1.0) and, where it is
//! silent, CoreDNS's kubernetes plugin: NXDOMAIN for a name that does not exist,
//! NOERROR with an empty answer and the SOA in authority (NODATA) for a name that
//! exists with other record types, and the authoritative bit for cluster names.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use crate::zone::{dashed, EndpointRecord, PortRecord, ServiceKind, ServiceRecord, Snapshot};

/// The TTL of every cluster record (CoreDNS's default in Kubernetes).
pub const TTL: u32 = 5;
/// The schema of the Kubernetes DNS specification served here.
pub const SCHEMA_VERSION: &str = "1.1.0";
/// The EDNS payload size this server advertises (the DNS flag day's 1232).
pub const EDNS_PAYLOAD: u16 = 1232;

/// The cluster domain and the server's own name.
#[derive(Clone, Debug)]
pub struct Zone {
    /// Lower-case, fully qualified (`cluster.local.`).
    pub domain: Name,
    labels: Vec<String>,
    /// Answers `ns.dns.<domain>` (the SOA's and NS's server name).
    pub service_ip: IpAddr,
}

impl Zone {
    pub fn new(domain: &str, service_ip: IpAddr) -> anyhow::Result<Zone> {
        let trimmed = domain.trim_end_matches('.').to_ascii_lowercase();
        if trimmed.is_empty() {
            anyhow::bail!("the cluster domain is empty");
        }
        let domain = Name::from_ascii(format!("{trimmed}."))
            .map_err(|e| anyhow::anyhow!("cluster domain {trimmed:?}: {e}"))?;
        Ok(Zone {
            labels: lower_labels(&domain),
            domain,
            service_ip,
        })
    }

    fn name(&self, prefix: &str) -> Name {
        Name::from_ascii(format!("{prefix}.{}", self.domain))
            .unwrap_or_else(|_| self.domain.clone())
    }

    fn soa(&self, serial: u32) -> Record {
        let rdata = SOA::new(
            self.name("ns.dns"),
            self.name("hostmaster"),
            serial,
            7200,
            1800,
            86400,
            TTL,
        );
        Record::from_rdata(self.domain.clone(), TTL, RData::SOA(rdata))
    }
}

/// What to do with a query.
#[derive(Debug)]
pub enum Resolution {
    /// Send this reply.
    Reply(Message),
    /// Not a cluster name: relay the query to the upstream resolvers.
    Forward,
}

/// Answer `request` from `snap`.
pub fn resolve(zone: &Zone, snap: &Snapshot, request: &Message) -> Resolution {
    if request.metadata.message_type != MessageType::Query {
        return Resolution::Reply(error_reply(request, ResponseCode::FormErr));
    }
    if request.metadata.op_code != OpCode::Query {
        return Resolution::Reply(error_reply(request, ResponseCode::NotImp));
    }
    let [query] = request.queries.as_slice() else {
        return Resolution::Reply(error_reply(request, ResponseCode::FormErr));
    };
    let labels = lower_labels(query.name());
    let found = if let Some(prefix) = labels.strip_suffix(zone.labels.as_slice()) {
        if query.query_class() != DNSClass::IN {
            return Resolution::Reply(error_reply(request, ResponseCode::Refused));
        }
        let mut found = cluster(zone, snap, query, prefix);
        follow_cluster_cnames(zone, snap, query, &mut found);
        found
    } else if let Some(ip) = reverse_ip(&labels) {
        // Reverse names are answered only for addresses the cluster knows (CoreDNS's
        // `fallthrough in-addr.arpa ip6.arpa`); the rest belong to the upstream.
        let names = snap.ptr(&ip);
        if names.is_empty() || query.query_class() != DNSClass::IN {
            return Resolution::Forward;
        }
        let mut f = Found::nodata();
        if query.query_type() == RecordType::PTR {
            for n in names {
                f.answer(query, RData::PTR(PTR(n.clone())));
            }
        }
        f
    } else {
        return Resolution::Forward;
    };
    let mut reply = reply_to(request);
    reply.metadata.authoritative = true;
    reply.metadata.response_code = found.rcode;
    if found.answers.is_empty() {
        reply.add_authority(zone.soa(snap.serial));
    }
    reply.add_answers(found.answers);
    reply.add_additionals(found.additionals);
    Resolution::Reply(reply)
}

/// A reply to `request` with its id, opcode, RD and question, and EDNS when it had it.
pub fn reply_to(request: &Message) -> Message {
    let mut reply = Message::response(request.metadata.id, request.metadata.op_code);
    reply.metadata.recursion_desired = request.metadata.recursion_desired;
    reply.metadata.recursion_available = true;
    reply.add_queries(request.queries.iter().cloned());
    if request.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(EDNS_PAYLOAD);
        reply.set_edns(edns);
    }
    reply
}

/// A reply carrying only `rcode`.
pub fn error_reply(request: &Message, rcode: ResponseCode) -> Message {
    let mut reply = reply_to(request);
    reply.metadata.response_code = rcode;
    reply
}

/// The records found for a cluster name.
struct Found {
    rcode: ResponseCode,
    answers: Vec<Record>,
    additionals: Vec<Record>,
}

impl Found {
    fn nxdomain() -> Found {
        Found {
            rcode: ResponseCode::NXDomain,
            answers: Vec::new(),
            additionals: Vec::new(),
        }
    }
    fn nodata() -> Found {
        Found {
            rcode: ResponseCode::NoError,
            answers: Vec::new(),
            additionals: Vec::new(),
        }
    }
    /// A record owned by the question's name, spelled as asked.
    fn answer(&mut self, query: &Query, rdata: RData) {
        self.answers
            .push(Record::from_rdata(query.name().clone(), TTL, rdata));
    }
}

/// An ExternalName Service that names another cluster name (`other.ns.svc.cluster.local`)
/// is answered with the CNAME and the target's own records, as CoreDNS does: a client
/// asking for an address gets one without a second query. Targets outside the cluster
/// are left to the client's resolver. Loops end after a few hops.
fn follow_cluster_cnames(zone: &Zone, snap: &Snapshot, query: &Query, found: &mut Found) {
    if matches!(query.query_type(), RecordType::CNAME | RecordType::ANY) {
        return;
    }
    for _ in 0..8 {
        let Some(RData::CNAME(CNAME(target))) = found.answers.last().map(|r| r.data.clone()) else {
            return;
        };
        let labels = lower_labels(&target);
        let Some(prefix) = labels.strip_suffix(zone.labels.as_slice()) else {
            return;
        };
        let next = Query::query(target.clone(), query.query_type());
        let more = cluster(zone, snap, &next, prefix);
        found.rcode = more.rcode;
        found.answers.extend(more.answers);
        found.additionals.extend(more.additionals);
    }
}

fn address(ip: IpAddr) -> RData {
    match ip {
        IpAddr::V4(v4) => RData::A(A(v4)),
        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
    }
}

/// Whether `ip` answers a question of type `qtype` (A for IPv4, AAAA for IPv6, both
/// for ANY).
fn family_matches(qtype: RecordType, ip: IpAddr) -> bool {
    match qtype {
        RecordType::A => ip.is_ipv4(),
        RecordType::AAAA => ip.is_ipv6(),
        RecordType::ANY => true,
        _ => false,
    }
}

/// Names under the cluster domain; `prefix` is the labels before it, lower-case.
fn cluster(zone: &Zone, snap: &Snapshot, query: &Query, prefix: &[String]) -> Found {
    let qtype = query.query_type();
    let p: Vec<&str> = prefix.iter().map(String::as_str).collect();
    let mut f = Found::nodata();
    match p.as_slice() {
        [] => match qtype {
            RecordType::SOA => f.answer(query, zone.soa(snap.serial).data),
            RecordType::NS => f.answer(query, RData::NS(NS(zone.name("ns.dns")))),
            _ => {}
        },
        ["dns-version"] => {
            if qtype == RecordType::TXT {
                f.answer(query, RData::TXT(TXT::new(vec![SCHEMA_VERSION.into()])));
            }
        }
        ["dns"] => {}
        ["ns", "dns"] => {
            if family_matches(qtype, zone.service_ip) {
                f.answer(query, address(zone.service_ip));
            }
        }
        ["svc"] | ["pod"] => {}
        [ns, "svc"] => {
            if !snap.has_namespace(ns) {
                return Found::nxdomain();
            }
        }
        [svc, ns, "svc"] => return service(query, snap, ns, svc),
        [first, svc, ns, "svc"] => {
            let Some(rec) = snap.service(ns, svc) else {
                return Found::nxdomain();
            };
            // `_tcp.<svc>...` is an empty non-terminal when a port of that protocol
            // has a name: it exists, with no records.
            if let Some(proto) = first.strip_prefix('_') {
                if ports_of(rec)
                    .iter()
                    .any(|p| !p.name.is_empty() && p.protocol == proto)
                {
                    return f;
                }
                return Found::nxdomain();
            }
            let ServiceKind::Headless(eps) = &rec.kind else {
                return Found::nxdomain();
            };
            let mine: Vec<&EndpointRecord> = eps.iter().filter(|e| e.hostname == *first).collect();
            if mine.is_empty() {
                return Found::nxdomain();
            }
            for e in mine {
                if family_matches(qtype, e.ip) {
                    f.answer(query, address(e.ip));
                }
            }
        }
        [port, proto, svc, ns, "svc"] => return srv(query, snap, ns, svc, port, proto),
        [ip, _ns, "pod"] => {
            // `pods insecure`: the address is taken from the name, not looked up.
            let Some(ip) = undash(ip) else {
                return Found::nxdomain();
            };
            if family_matches(qtype, ip) {
                f.answer(query, address(ip));
            }
        }
        [_ns, "pod"] => {}
        _ => return Found::nxdomain(),
    }
    f
}

/// The ports SRV names come from: the endpoints' for a headless Service (traffic goes
/// straight to them), the Service's otherwise.
fn ports_of(rec: &ServiceRecord) -> Vec<PortRecord> {
    match &rec.kind {
        ServiceKind::Headless(eps) => {
            let mut out: Vec<PortRecord> = Vec::new();
            for p in eps.iter().flat_map(|e| e.ports.iter()) {
                if !out.contains(p) {
                    out.push(p.clone());
                }
            }
            out
        }
        _ => rec.ports.clone(),
    }
}

/// `<svc>.<ns>.svc.<domain>`.
fn service(query: &Query, snap: &Snapshot, ns: &str, svc: &str) -> Found {
    let Some(rec) = snap.service(ns, svc) else {
        return Found::nxdomain();
    };
    let qtype = query.query_type();
    let mut f = Found::nodata();
    let own = canonical(query.name());
    match &rec.kind {
        ServiceKind::ExternalName(target) => {
            f.answer(query, RData::CNAME(CNAME(target.clone())));
        }
        ServiceKind::ClusterIp(ips) => {
            for ip in ips.iter().filter(|ip| family_matches(qtype, **ip)) {
                f.answer(query, address(*ip));
            }
            if qtype == RecordType::SRV {
                for p in &rec.ports {
                    f.answer(query, RData::SRV(SRV::new(0, 100, p.port, own.clone())));
                }
                for ip in ips {
                    f.additionals
                        .push(Record::from_rdata(own.clone(), TTL, address(*ip)));
                }
            }
        }
        ServiceKind::Headless(eps) => {
            if eps.is_empty() {
                return Found::nxdomain();
            }
            for e in eps.iter().filter(|e| family_matches(qtype, e.ip)) {
                f.answer(query, address(e.ip));
            }
            if qtype == RecordType::SRV {
                for e in eps {
                    let target = endpoint_name(e, &own);
                    for p in e.ports.iter() {
                        f.answer(query, RData::SRV(SRV::new(0, 100, p.port, target.clone())));
                    }
                    f.additionals
                        .push(Record::from_rdata(target, TTL, address(e.ip)));
                }
            }
        }
    }
    f
}

/// `_<port>._<proto>.<svc>.<ns>.svc.<domain>`.
fn srv(query: &Query, snap: &Snapshot, ns: &str, svc: &str, port: &str, proto: &str) -> Found {
    let (Some(port), Some(proto)) = (port.strip_prefix('_'), proto.strip_prefix('_')) else {
        return Found::nxdomain();
    };
    let Some(rec) = snap.service(ns, svc) else {
        return Found::nxdomain();
    };
    let wanted = |p: &PortRecord| !p.name.is_empty() && p.name == port && p.protocol == proto;
    let own = service_name(query.name());
    let mut f = Found::nodata();
    let srv_wanted = query.query_type() == RecordType::SRV;
    match &rec.kind {
        ServiceKind::ClusterIp(ips) => {
            let ports: Vec<&PortRecord> = rec.ports.iter().filter(|p| wanted(p)).collect();
            if ports.is_empty() {
                return Found::nxdomain();
            }
            if srv_wanted {
                for p in ports {
                    f.answer(query, RData::SRV(SRV::new(0, 100, p.port, own.clone())));
                }
                for ip in ips {
                    f.additionals
                        .push(Record::from_rdata(own.clone(), TTL, address(*ip)));
                }
            }
        }
        ServiceKind::ExternalName(target) => {
            let ports: Vec<&PortRecord> = rec.ports.iter().filter(|p| wanted(p)).collect();
            if ports.is_empty() {
                return Found::nxdomain();
            }
            if srv_wanted {
                for p in ports {
                    f.answer(query, RData::SRV(SRV::new(0, 100, p.port, target.clone())));
                }
            }
        }
        ServiceKind::Headless(eps) => {
            let mut any = false;
            for e in eps {
                let target = endpoint_name(e, &own);
                let mut added = false;
                for p in e.ports.iter().filter(|p| wanted(p)) {
                    any = true;
                    if srv_wanted {
                        f.answer(query, RData::SRV(SRV::new(0, 100, p.port, target.clone())));
                        added = true;
                    }
                }
                if added {
                    f.additionals
                        .push(Record::from_rdata(target, TTL, address(e.ip)));
                }
            }
            if !any {
                return Found::nxdomain();
            }
        }
    }
    f
}

/// `<hostname>.<svc>.<ns>.svc.<domain>` for an endpoint of the Service named `service`.
fn endpoint_name(e: &EndpointRecord, service: &Name) -> Name {
    Name::from_ascii(format!("{}.{service}", e.hostname)).unwrap_or_else(|_| service.clone())
}

/// The question's name in lower case (targets are written as the cluster spells them).
fn canonical(name: &Name) -> Name {
    let mut n = name.to_lowercase();
    n.set_fqdn(true);
    n
}

/// `_port._proto.<rest>` → `<rest>`, lower-case.
fn service_name(name: &Name) -> Name {
    canonical(&name.trim_to(name.num_labels().saturating_sub(2) as usize))
}

/// The name's labels, lower-case, first label first.
pub fn lower_labels(name: &Name) -> Vec<String> {
    name.iter()
        .map(|l| String::from_utf8_lossy(l).to_ascii_lowercase())
        .collect()
}

/// `1-2-3-4` → 1.2.3.4; `fd00--1` → fd00::1. Anything else is not a pod name.
fn undash(label: &str) -> Option<IpAddr> {
    if label.contains('.') || label.contains(':') {
        return None;
    }
    let v4 = label.replace('-', ".");
    if let Ok(ip) = v4.parse::<Ipv4Addr>() {
        return Some(IpAddr::V4(ip));
    }
    let ip = label.replace('-', ":").parse::<Ipv6Addr>().ok()?;
    // Only the spelling `dashed` produces (no embedded dotted quad).
    (dashed(IpAddr::V6(ip)) == label).then_some(IpAddr::V6(ip))
}

/// The address a complete `in-addr.arpa` or `ip6.arpa` name stands for.
pub fn reverse_ip(labels: &[String]) -> Option<IpAddr> {
    match labels {
        [d, c, b, a, in_addr, arpa] if in_addr == "in-addr" && arpa == "arpa" => {
            let mut octets = [0u8; 4];
            for (slot, l) in octets.iter_mut().zip([a, b, c, d]) {
                if l.is_empty() || l.len() > 3 || (l.len() > 1 && l.starts_with('0')) {
                    return None;
                }
                *slot = l.parse().ok()?;
            }
            Some(IpAddr::V4(Ipv4Addr::from(octets)))
        }
        _ if labels.len() == 34 && labels[32] == "ip6" && labels[33] == "arpa" => {
            let mut value: u128 = 0;
            for l in labels[..32].iter().rev() {
                let [c] = l.as_bytes() else { return None };
                let nibble = (*c as char).to_digit(16)?;
                value = (value << 4) | nibble as u128;
            }
            Some(IpAddr::V6(Ipv6Addr::from(value)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests;
