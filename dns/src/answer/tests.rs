//! The answer function, table-driven over one set of typed Services and
//! EndpointSlices.

use super::*;
use crate::wire::{encode, udp_limit};
use hickory_proto::op::{Edns, Message, Query};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::json;

fn svc(v: serde_json::Value) -> Service {
    serde_json::from_value(v).expect("service")
}

fn slice(v: serde_json::Value) -> EndpointSlice {
    serde_json::from_value(v).expect("slice")
}

fn fixtures() -> (Vec<Service>, Vec<EndpointSlice>) {
    let port =
        |name: &str, proto: &str, port: u16| json!({"name": name, "protocol": proto, "port": port});
    let services = vec![
        svc(
            json!({"metadata": {"name": "web", "namespace": "ns1"}, "spec": {
            "clusterIP": "10.96.1.1", "clusterIPs": ["10.96.1.1"],
            "ports": [port("http", "TCP", 80), port("dns", "UDP", 53), {"port": 8080}]}}),
        ),
        svc(
            json!({"metadata": {"name": "dual", "namespace": "ns1"}, "spec": {
            "clusterIP": "10.96.1.2", "clusterIPs": ["10.96.1.2", "fd00::2"]}}),
        ),
        svc(
            json!({"metadata": {"name": "db", "namespace": "ns1"}, "spec": {
            "clusterIP": "None", "ports": [port("pg", "TCP", 15432)]}}),
        ),
        svc(
            json!({"metadata": {"name": "empty", "namespace": "ns1"}, "spec": {"clusterIP": "None"}}),
        ),
        svc(
            json!({"metadata": {"name": "unready", "namespace": "ns1"}, "spec": {
            "clusterIP": "None", "publishNotReadyAddresses": true}}),
        ),
        svc(
            json!({"metadata": {"name": "ext", "namespace": "ns1"}, "spec": {
            "type": "ExternalName", "externalName": "www.example.com"}}),
        ),
        svc(
            json!({"metadata": {"name": "other", "namespace": "ns2"}, "spec": {"clusterIP": "10.96.2.1"}}),
        ),
        svc(
            json!({"metadata": {"name": "alias", "namespace": "ns1"}, "spec": {
            "type": "ExternalName", "externalName": "other.ns2.svc.cluster.local"}}),
        ),
    ];
    let slices = vec![
        slice(json!({"metadata": {"name": "db-abc", "namespace": "ns1",
            "labels": {"kubernetes.io/service-name": "db"}},
        "addressType": "IPv4",
        "ports": [{"name": "pg", "protocol": "TCP", "port": 5432}],
        "endpoints": [
            {"addresses": ["10.1.0.1"], "hostname": "db-0", "conditions": {"ready": true}},
            {"addresses": ["10.1.0.2"], "conditions": {}},
            {"addresses": ["10.1.0.3"], "hostname": "db-2", "conditions": {"ready": false}},
        ]})),
        // The same endpoint in a second slice (a controller moving it) counts once.
        slice(json!({"metadata": {"name": "db-def", "namespace": "ns1",
                "labels": {"kubernetes.io/service-name": "db"}},
            "addressType": "IPv4",
            "ports": [{"name": "pg", "protocol": "TCP", "port": 5432}],
            "endpoints": [{"addresses": ["10.1.0.1"], "hostname": "db-0"}]})),
        slice(json!({"metadata": {"name": "unready-x", "namespace": "ns1",
                "labels": {"kubernetes.io/service-name": "unready"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.1.0.9"], "conditions": {"ready": false}}]})),
    ];
    (services, slices)
}

fn setup() -> (Zone, Snapshot) {
    let (services, slices) = fixtures();
    let zone = Zone::new("cluster.local", "10.96.0.10".parse().unwrap()).unwrap();
    (
        zone,
        Snapshot::build("cluster.local", &services, &slices, 42),
    )
}

fn request(name: &str, qtype: RecordType) -> Message {
    let mut m = Message::query();
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    m
}

fn render(records: &[Record]) -> Vec<String> {
    records
        .iter()
        .map(|r| format!("{} {}", r.record_type(), r.data))
        .collect()
}

fn reply(zone: &Zone, snap: &Snapshot, m: &Message) -> Message {
    match resolve(zone, snap, m) {
        Resolution::Reply(r) => r,
        Resolution::Forward => panic!("{:?} was forwarded", m.queries),
    }
}

#[test]
fn records_table() {
    use RecordType::*;
    let (zone, snap) = setup();
    let nx = ResponseCode::NXDomain;
    let ok = ResponseCode::NoError;
    let cases: Vec<(&str, RecordType, ResponseCode, Vec<&str>)> = vec![
        // ClusterIP Services.
        ("web.ns1.svc.cluster.local.", A, ok, vec!["A 10.96.1.1"]),
        ("web.ns1.svc.cluster.local", A, ok, vec!["A 10.96.1.1"]),
        ("WEB.Ns1.SVC.Cluster.LOCAL.", A, ok, vec!["A 10.96.1.1"]),
        ("web.ns1.svc.cluster.local.", AAAA, ok, vec![]),
        ("web.ns1.svc.cluster.local.", TXT, ok, vec![]),
        ("dual.ns1.svc.cluster.local.", A, ok, vec!["A 10.96.1.2"]),
        (
            "dual.ns1.svc.cluster.local.",
            AAAA,
            ok,
            vec!["AAAA fd00::2"],
        ),
        (
            "web.ns1.svc.cluster.local.",
            SRV,
            ok,
            vec![
                "SRV 0 100 80 web.ns1.svc.cluster.local.",
                "SRV 0 100 53 web.ns1.svc.cluster.local.",
                "SRV 0 100 8080 web.ns1.svc.cluster.local.",
            ],
        ),
        (
            "_http._tcp.web.ns1.svc.cluster.local.",
            SRV,
            ok,
            vec!["SRV 0 100 80 web.ns1.svc.cluster.local."],
        ),
        (
            "_HTTP._TCP.web.ns1.svc.cluster.local.",
            SRV,
            ok,
            vec!["SRV 0 100 80 web.ns1.svc.cluster.local."],
        ),
        (
            "_dns._udp.web.ns1.svc.cluster.local.",
            SRV,
            ok,
            vec!["SRV 0 100 53 web.ns1.svc.cluster.local."],
        ),
        ("_http._tcp.web.ns1.svc.cluster.local.", A, ok, vec![]),
        ("_http._udp.web.ns1.svc.cluster.local.", SRV, nx, vec![]),
        ("_nope._tcp.web.ns1.svc.cluster.local.", SRV, nx, vec![]),
        ("_tcp.web.ns1.svc.cluster.local.", SRV, ok, vec![]),
        ("_sctp.web.ns1.svc.cluster.local.", SRV, nx, vec![]),
        ("x.web.ns1.svc.cluster.local.", A, nx, vec![]),
        // Names that do not exist, and names that exist without records.
        ("nope.ns1.svc.cluster.local.", A, nx, vec![]),
        ("web.ns3.svc.cluster.local.", A, nx, vec![]),
        ("ns3.svc.cluster.local.", A, nx, vec![]),
        ("ns1.svc.cluster.local.", A, ok, vec![]),
        ("svc.cluster.local.", A, ok, vec![]),
        ("pod.cluster.local.", A, ok, vec![]),
        ("foo.cluster.local.", A, nx, vec![]),
        ("a.b.c.d.e.f.svc.cluster.local.", A, nx, vec![]),
        ("cluster.local.", A, ok, vec![]),
        ("cluster.local.", NS, ok, vec!["NS ns.dns.cluster.local."]),
        ("ns.dns.cluster.local.", A, ok, vec!["A 10.96.0.10"]),
        // Headless Services: ready endpoints only; hostname or dashed address.
        (
            "db.ns1.svc.cluster.local.",
            A,
            ok,
            vec!["A 10.1.0.1", "A 10.1.0.2"],
        ),
        ("db.ns1.svc.cluster.local.", AAAA, ok, vec![]),
        ("db-0.db.ns1.svc.cluster.local.", A, ok, vec!["A 10.1.0.1"]),
        (
            "10-1-0-2.db.ns1.svc.cluster.local.",
            A,
            ok,
            vec!["A 10.1.0.2"],
        ),
        ("db-2.db.ns1.svc.cluster.local.", A, nx, vec![]),
        ("db-0.db.ns1.svc.cluster.local.", TXT, ok, vec![]),
        (
            "_pg._tcp.db.ns1.svc.cluster.local.",
            SRV,
            ok,
            vec![
                "SRV 0 100 5432 db-0.db.ns1.svc.cluster.local.",
                "SRV 0 100 5432 10-1-0-2.db.ns1.svc.cluster.local.",
            ],
        ),
        ("empty.ns1.svc.cluster.local.", A, nx, vec![]),
        ("unready.ns1.svc.cluster.local.", A, ok, vec!["A 10.1.0.9"]),
        // ExternalName: a CNAME, whatever the type asked.
        (
            "ext.ns1.svc.cluster.local.",
            A,
            ok,
            vec!["CNAME www.example.com."],
        ),
        (
            "ext.ns1.svc.cluster.local.",
            CNAME,
            ok,
            vec!["CNAME www.example.com."],
        ),
        // An ExternalName naming a cluster name: the CNAME and the target's address.
        (
            "alias.ns1.svc.cluster.local.",
            A,
            ok,
            vec!["CNAME other.ns2.svc.cluster.local.", "A 10.96.2.1"],
        ),
        (
            "alias.ns1.svc.cluster.local.",
            CNAME,
            ok,
            vec!["CNAME other.ns2.svc.cluster.local."],
        ),
        // Pods, from the name.
        ("1-2-3-4.ns1.pod.cluster.local.", A, ok, vec!["A 1.2.3.4"]),
        ("1-2-3-4.anyns.pod.cluster.local.", A, ok, vec!["A 1.2.3.4"]),
        ("1-2-3-4.ns1.pod.cluster.local.", AAAA, ok, vec![]),
        (
            "fd00--1.ns1.pod.cluster.local.",
            AAAA,
            ok,
            vec!["AAAA fd00::1"],
        ),
        ("1-2-3-400.ns1.pod.cluster.local.", A, nx, vec![]),
        ("1-2-3.ns1.pod.cluster.local.", A, nx, vec![]),
        ("web.ns1.pod.cluster.local.", A, nx, vec![]),
        ("ns1.pod.cluster.local.", A, ok, vec![]),
        // Schema version.
        ("dns-version.cluster.local.", TXT, ok, vec!["TXT 1.1.0"]),
        ("dns-version.cluster.local.", A, ok, vec![]),
        // Reverse names the cluster knows.
        (
            "1.1.96.10.in-addr.arpa.",
            PTR,
            ok,
            vec!["PTR web.ns1.svc.cluster.local."],
        ),
        (
            "1.0.1.10.in-addr.arpa.",
            PTR,
            ok,
            vec!["PTR db-0.db.ns1.svc.cluster.local."],
        ),
        (
            "2.0.1.10.in-addr.arpa.",
            PTR,
            ok,
            vec!["PTR 10-1-0-2.db.ns1.svc.cluster.local."],
        ),
        (
            "2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.",
            PTR,
            ok,
            vec!["PTR dual.ns1.svc.cluster.local."],
        ),
    ];
    let mut failures = Vec::new();
    for (name, qtype, rcode, want) in cases {
        let req = request(name, qtype);
        let r = reply(&zone, &snap, &req);
        let got = render(&r.answers);
        let mut bad = r.metadata.response_code != rcode || got != want;
        bad |= !r.metadata.authoritative
            || r.queries != req.queries
            || r.metadata.id != req.metadata.id;
        // Every answer is owned by the question's name, spelled as asked, or by the
        // target of the CNAME before it.
        let mut owner = req.queries[0].name().clone();
        for a in &r.answers {
            bad |= a.name != owner;
            if let hickory_proto::rr::RData::CNAME(c) = &a.data {
                owner = c.0.clone();
            }
        }
        // No answer: the SOA in authority (negative caching, RFC 2308).
        let soa = r.authorities.iter().any(|a| a.record_type() == SOA);
        bad |= want.is_empty() != soa;
        if bad {
            failures.push(format!(
                "{name} {qtype}: got {} {got:?} aa={} soa={soa}, want {rcode} {want:?}",
                r.metadata.response_code, r.metadata.authoritative
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn srv_answers_carry_the_targets_addresses() {
    let (zone, snap) = setup();
    let r = reply(
        &zone,
        &snap,
        &request("_pg._tcp.db.ns1.svc.cluster.local.", RecordType::SRV),
    );
    let extra: Vec<String> = r
        .additionals
        .iter()
        .map(|a| format!("{} {}", a.name, a.data))
        .collect();
    assert_eq!(
        extra,
        vec![
            "db-0.db.ns1.svc.cluster.local. 10.1.0.1",
            "10-1-0-2.db.ns1.svc.cluster.local. 10.1.0.2"
        ]
    );
}

#[test]
fn soa_serial_and_ttls() {
    let (zone, snap) = setup();
    let r = reply(&zone, &snap, &request("cluster.local.", RecordType::SOA));
    assert_eq!(r.answers.len(), 1);
    let RData::SOA(soa) = &r.answers[0].data else {
        panic!("not an SOA: {:?}", r.answers[0]);
    };
    assert_eq!(soa.serial, 42);
    assert_eq!(soa.minimum, TTL);
    let r = reply(
        &zone,
        &snap,
        &request("web.ns1.svc.cluster.local.", RecordType::A),
    );
    assert!(r.answers.iter().all(|a| a.ttl == 5));
    assert!(r.metadata.recursion_desired && r.metadata.recursion_available);
}

#[test]
fn other_names_and_unknown_reverse_names_are_forwarded() {
    let (zone, snap) = setup();
    for (name, t) in [
        ("example.com.", RecordType::A),
        ("local.", RecordType::A),
        ("cluster.local.example.com.", RecordType::A),
        ("9.9.96.10.in-addr.arpa.", RecordType::PTR),
        ("96.10.in-addr.arpa.", RecordType::PTR),
    ] {
        assert!(
            matches!(
                resolve(&zone, &snap, &request(name, t)),
                Resolution::Forward
            ),
            "{name}"
        );
    }
}

#[test]
fn malformed_requests_get_errors() {
    let (zone, snap) = setup();
    let mut two = request("web.ns1.svc.cluster.local.", RecordType::A);
    two.add_query(Query::query(Name::from_ascii("x.").unwrap(), RecordType::A));
    assert_eq!(
        reply(&zone, &snap, &two).metadata.response_code,
        ResponseCode::FormErr
    );
    let mut none = request("web.ns1.svc.cluster.local.", RecordType::A);
    none.queries.clear();
    assert_eq!(
        reply(&zone, &snap, &none).metadata.response_code,
        ResponseCode::FormErr
    );
    let mut chaos = request("web.ns1.svc.cluster.local.", RecordType::A);
    let mut q = chaos.queries[0].clone();
    q.set_query_class(DNSClass::CH);
    chaos.queries = vec![q];
    assert_eq!(
        reply(&zone, &snap, &chaos).metadata.response_code,
        ResponseCode::Refused
    );
    let mut update = request("web.ns1.svc.cluster.local.", RecordType::A);
    update.metadata.op_code = OpCode::Update;
    assert_eq!(
        reply(&zone, &snap, &update).metadata.response_code,
        ResponseCode::NotImp
    );
    // Bytes that do not parse: FORMERR when there is a header, nothing otherwise.
    let reply =
        crate::wire::formerr_for(&[0x12, 0x34, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xff]).unwrap();
    assert_eq!(&reply[..4], &[0x12, 0x34, 0x81, 0x01]);
    assert!(crate::wire::formerr_for(&[1, 2, 3]).is_none());
    // A response is never answered (no reflection loops).
    assert!(crate::wire::formerr_for(&[0, 1, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0]).is_none());
}

#[test]
fn big_udp_answers_are_truncated_to_the_clients_limit() {
    let addresses: Vec<_> = (1..=100)
        .map(|i| json!({"addresses": [format!("10.2.{}.{}", i / 250, i % 250 + 1)]}))
        .collect();
    let services = vec![svc(json!({"metadata": {"name": "big", "namespace": "ns1"},
        "spec": {"clusterIP": "None"}}))];
    let slices = vec![slice(
        json!({"metadata": {"name": "big-1", "namespace": "ns1",
            "labels": {"kubernetes.io/service-name": "big"}},
        "addressType": "IPv4", "endpoints": addresses}),
    )];
    let zone = Zone::new("cluster.local.", "10.96.0.10".parse().unwrap()).unwrap();
    let snap = Snapshot::build("cluster.local", &services, &slices, 1);
    let plain = request("big.ns1.svc.cluster.local.", RecordType::A);
    let r = reply(&zone, &snap, &plain);
    assert_eq!(r.answers.len(), 100);

    // No EDNS: 512 bytes, TC set, the question echoed.
    let bytes = encode(r.clone(), Some(udp_limit(&plain)));
    assert!(bytes.len() <= 512, "{}", bytes.len());
    let back = Message::from_vec(&bytes).unwrap();
    assert!(back.metadata.truncation);
    assert!(back.answers.len() < 100 && !back.answers.is_empty());
    assert_eq!(back.queries, plain.queries);

    // EDNS 4096: everything fits, no TC; the reply carries EDNS too.
    let mut edns_req = plain.clone();
    let mut edns = Edns::new();
    edns.set_max_payload(4096);
    edns_req.set_edns(edns);
    let r = reply(&zone, &snap, &edns_req);
    let bytes = encode(r, Some(udp_limit(&edns_req)));
    let back = Message::from_vec(&bytes).unwrap();
    assert!(!back.metadata.truncation);
    assert_eq!(back.answers.len(), 100);
    assert_eq!(
        back.edns.as_ref().map(|e| e.max_payload()),
        Some(EDNS_PAYLOAD)
    );

    // TCP: no limit.
    let back = Message::from_vec(&encode(reply(&zone, &snap, &plain), None)).unwrap();
    assert!(!back.metadata.truncation);
    assert_eq!(back.answers.len(), 100);
}

#[test]
fn reverse_names_parse_only_when_complete_and_canonical() {
    let l = |s: &str| lower_labels(&Name::from_ascii(s).unwrap());
    assert_eq!(
        reverse_ip(&l("4.3.2.1.in-addr.arpa.")),
        Some("1.2.3.4".parse().unwrap())
    );
    assert_eq!(reverse_ip(&l("4.3.2.IN-ADDR.ARPA.")), None);
    assert_eq!(reverse_ip(&l("04.3.2.1.in-addr.arpa.")), None);
    assert_eq!(reverse_ip(&l("256.3.2.1.in-addr.arpa.")), None);
    let v6 = "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.";
    assert_eq!(reverse_ip(&l(v6)), Some("2001:db8::1".parse().unwrap()));
    assert_eq!(reverse_ip(&l(&v6.replacen('1', "x", 1))), None);
}

#[test]
fn snapshot_skips_objects_it_cannot_use() {
    let services = vec![
        svc(json!({"metadata": {"name": "nospec", "namespace": "ns1"}})),
        svc(json!({"metadata": {"name": "noip", "namespace": "ns1"}, "spec": {}})),
        svc(json!({"metadata": {"name": "badip", "namespace": "ns1"}, "spec": {"clusterIP": "x"}})),
        svc(
            json!({"metadata": {"name": "ext", "namespace": "ns1"}, "spec": {"type": "ExternalName"}}),
        ),
        svc(json!({"metadata": {"namespace": "ns1"}, "spec": {"clusterIP": "10.0.0.1"}})),
    ];
    let slices = vec![
        slice(
            json!({"metadata": {"name": "nolabel", "namespace": "ns1"}, "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.0.0.1"]}]}),
        ),
        slice(json!({"metadata": {"name": "fqdn", "namespace": "ns1",
            "labels": {"kubernetes.io/service-name": "x"}}, "addressType": "FQDN",
            "endpoints": [{"addresses": ["example.com"]}]})),
    ];
    let snap = Snapshot::build("cluster.local", &services, &slices, 1);
    assert_eq!(snap.service_count(), 0);
}
