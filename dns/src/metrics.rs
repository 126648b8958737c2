//! CoreDNS's metric names, so dashboards and alerts written for CoreDNS work.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use hickory_proto::rr::RecordType;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub proto: &'static str,
    pub r#type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RcodeLabels {
    pub rcode: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TypeLabels {
    pub r#type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabels {
    pub to: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamRcodeLabels {
    pub to: String,
    pub rcode: String,
}

#[derive(Clone, Debug)]
pub struct Metrics {
    pub requests: Family<RequestLabels, Counter>,
    pub responses: Family<RcodeLabels, Counter>,
    pub duration: Family<TypeLabels, Histogram>,
    pub forward_requests: Family<UpstreamLabels, Counter>,
    pub forward_responses: Family<UpstreamRcodeLabels, Counter>,
}

impl Metrics {
    pub fn new(registry: &mut Registry) -> Metrics {
        let m = Metrics {
            requests: Family::default(),
            responses: Family::default(),
            // CoreDNS: 0.25 ms doubling, 16 buckets.
            duration: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.00025, 2.0, 16))
            }),
            forward_requests: Family::default(),
            forward_responses: Family::default(),
        };
        let coredns = registry.sub_registry_with_prefix("coredns");
        coredns.register(
            "dns_requests",
            "Counter of DNS requests made per protocol and type.",
            m.requests.clone(),
        );
        coredns.register(
            "dns_responses",
            "Counter of response status codes.",
            m.responses.clone(),
        );
        coredns.register(
            "dns_request_duration_seconds",
            "Histogram of the time (in seconds) each request took.",
            m.duration.clone(),
        );
        coredns.register(
            "forward_requests",
            "Counter of requests made per upstream.",
            m.forward_requests.clone(),
        );
        coredns.register(
            "forward_responses",
            "Counter of responses received per upstream and rcode.",
            m.forward_responses.clone(),
        );
        m
    }
}

/// CoreDNS's `type` label: the common types by name, the rest as "other".
pub fn type_label(t: Option<RecordType>) -> &'static str {
    match t {
        Some(RecordType::A) => "A",
        Some(RecordType::AAAA) => "AAAA",
        Some(RecordType::CNAME) => "CNAME",
        Some(RecordType::MX) => "MX",
        Some(RecordType::NS) => "NS",
        Some(RecordType::PTR) => "PTR",
        Some(RecordType::SOA) => "SOA",
        Some(RecordType::SRV) => "SRV",
        Some(RecordType::TXT) => "TXT",
        Some(RecordType::ANY) => "ANY",
        Some(RecordType::HTTPS) => "HTTPS",
        _ => "other",
    }
}

/// The rcode of an encoded reply (header's low four bits) as CoreDNS names it.
pub fn rcode_label(reply: &[u8]) -> String {
    let Some(b) = reply.get(3) else {
        return "SERVFAIL".into();
    };
    match b & 0x0f {
        0 => "NOERROR".into(),
        1 => "FORMERR".into(),
        2 => "SERVFAIL".into(),
        3 => "NXDOMAIN".into(),
        4 => "NOTIMP".into(),
        5 => "REFUSED".into(),
        n => n.to_string(),
    }
}
