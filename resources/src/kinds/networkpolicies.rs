//! networking.k8s.io/v1 NetworkPolicy.
//!
//! Which traffic may reach (Ingress) or leave (Egress) the pods a selector picks. The
//! apiserver only stores and checks policies; every node's proxy enforces them. Defaults
//! and validation follow Kubernetes' `SetDefaults_NetworkPolicy*` and
//! `ValidateNetworkPolicy`; the spec bumps the generation, as Kubernetes' strategy does.

use std::net::IpAddr;

use crate::kinds::services::{port_name_problems, validate_cidr, PROTOCOLS};
use crate::podspec::{
    default_field, ensure_object, format_label_selector, items, required_detail, str_at,
    validate_label_selector,
};
use crate::strategy::{name_age_columns, name_age_row, Strategy};
use crate::table::{Column, TableRow};
use crate::{ResourceType, Root, Typed};
use keelson_apimachinery::Cause;
use serde_json::{json, Value};

pub static RESOURCE: ResourceType = ResourceType {
    group: "networking.k8s.io",
    version: "v1",
    kind: "NetworkPolicy",
    plural: "networkpolicies",
    singular: "networkpolicy",
    namespaced: true,
    short_names: &["netpol"],
    categories: &[],
    subresources: &[],
    strategy: &NetworkPolicies,
    typed: Some(Typed::of::<k8s_openapi::api::networking::v1::NetworkPolicy>()),
    merge: Some(Root::MetadataOnly),
};

struct NetworkPolicies;

const POLICY_TYPES: &[&str] = &["Ingress", "Egress"];
const PORT_RANGE: &str = "must be between 1 and 65535, inclusive";

impl Strategy for NetworkPolicies {
    fn tracks_generation(&self) -> bool {
        true
    }

    fn default(&self, obj: &mut Value) {
        let spec = ensure_object(ensure_object(obj).entry("spec").or_insert(json!({})));
        // A Go struct, not a pointer: Kubernetes always shows it, `{}` selects every pod.
        default_field(spec, "podSelector", json!({}));
        for direction in ["ingress", "egress"] {
            let Some(rules) = spec.get_mut(direction).and_then(Value::as_array_mut) else {
                continue;
            };
            for rule in rules.iter_mut().filter_map(Value::as_object_mut) {
                let Some(ports) = rule.get_mut("ports").and_then(Value::as_array_mut) else {
                    continue;
                };
                for port in ports.iter_mut().filter_map(Value::as_object_mut) {
                    default_field(port, "protocol", json!("TCP"));
                }
            }
        }
        let types_empty = spec
            .get("policyTypes")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty);
        if types_empty {
            let has_egress = spec
                .get("egress")
                .and_then(Value::as_array)
                .is_some_and(|e| !e.is_empty());
            let types = if has_egress {
                json!(["Ingress", "Egress"])
            } else {
                json!(["Ingress"])
            };
            spec.insert("policyTypes".into(), types);
        }
    }

    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut out = Vec::new();
        let null = Value::Null;
        let spec = obj.get("spec").unwrap_or(&null);
        validate_label_selector(spec.get("podSelector"), "spec.podSelector", &mut out);
        for (direction, peers) in [("ingress", "from"), ("egress", "to")] {
            for (i, rule) in items(spec, direction).iter().enumerate() {
                let path = format!("spec.{direction}[{i}]");
                for (j, port) in items(rule, "ports").iter().enumerate() {
                    validate_port(port, &format!("{path}.ports[{j}]"), &mut out);
                }
                for (j, peer) in items(rule, peers).iter().enumerate() {
                    validate_peer(peer, &format!("{path}.{peers}[{j}]"), &mut out);
                }
            }
        }
        let types = items(spec, "policyTypes");
        if types.len() > POLICY_TYPES.len() {
            out.push(Cause::invalid(
                "spec.policyTypes",
                &json!(types),
                "may not specify more than two policyTypes",
            ));
            return out;
        }
        for (i, t) in types.iter().enumerate() {
            let path = format!("spec.policyTypes[{i}]");
            if !t.as_str().is_some_and(|t| POLICY_TYPES.contains(&t)) {
                out.push(Cause::not_supported(path, t, POLICY_TYPES));
            } else if types[..i].contains(t) {
                out.push(Cause::duplicate(path, t));
            }
        }
        out
    }

    fn columns(&self) -> Vec<Column> {
        name_age_columns(vec![Column::new(
            "Pod-Selector",
            "string",
            "Selects the pods to which this NetworkPolicy object applies. The array of ingress rules is applied to any pods selected by this field. Multiple network policies can select the same set of pods. In this case, the ingress rules for each are combined additively. This field is NOT optional and follows standard label selector semantics. An empty podSelector matches all pods in this namespace.",
        )])
    }

    fn row(&self, obj: &Value) -> TableRow {
        let selector = format_label_selector(obj.pointer("/spec/podSelector"));
        name_age_row(obj, vec![json!(selector)])
    }
}

/// `ValidateNetworkPolicyPort`: a known protocol; a port number or IANA name; an
/// `endPort` only after a numeric port and not below it.
fn validate_port(port: &Value, path: &str, out: &mut Vec<Cause>) {
    if let Some(proto) = port.get("protocol").filter(|p| !p.is_null()) {
        if !proto.as_str().is_some_and(|p| PROTOCOLS.contains(&p)) {
            out.push(Cause::not_supported(
                format!("{path}.protocol"),
                proto,
                &["TCP", "UDP", "SCTP"],
            ));
        }
    }
    let end = port.get("endPort").filter(|e| !e.is_null());
    let end_path = format!("{path}.endPort");
    match port.get("port").filter(|p| !p.is_null()) {
        Some(Value::String(name)) => {
            if let Some(end) = end {
                out.push(Cause::invalid(
                    &end_path,
                    end,
                    "may not be specified when `port` is non-numeric",
                ));
            }
            for msg in port_name_problems(name) {
                out.push(Cause::invalid(format!("{path}.port"), &json!(name), msg));
            }
        }
        Some(number) => {
            let n = number.as_i64().unwrap_or(0);
            if !(1..=65535).contains(&n) {
                out.push(Cause::invalid(format!("{path}.port"), number, PORT_RANGE));
            }
            if let Some(end) = end {
                let e = end.as_i64().unwrap_or(0);
                if e < n {
                    out.push(Cause::invalid(
                        &end_path,
                        number,
                        "must be greater than or equal to `port`",
                    ));
                }
                if !(1..=65535).contains(&e) {
                    out.push(Cause::invalid(&end_path, end, PORT_RANGE));
                }
            }
        }
        None => {
            if let Some(end) = end {
                out.push(Cause::invalid(
                    &end_path,
                    end,
                    "may not be specified when `port` is not specified",
                ));
            }
        }
    }
}

/// `ValidateNetworkPolicyPeer`: at least one of the three; an ipBlock stands alone.
fn validate_peer(peer: &Value, path: &str, out: &mut Vec<Cause>) {
    let present = |key: &str| peer.get(key).filter(|v| !v.is_null());
    let mut count = 0;
    for key in ["podSelector", "namespaceSelector"] {
        if let Some(sel) = present(key) {
            count += 1;
            validate_label_selector(Some(sel), &format!("{path}.{key}"), out);
        }
    }
    let ip_block = present("ipBlock");
    if let Some(block) = ip_block {
        count += 1;
        validate_ip_block(block, &format!("{path}.ipBlock"), out);
    }
    if count == 0 {
        out.push(required_detail(path, "must specify a peer"));
    } else if count > 1 && ip_block.is_some() {
        out.push(Cause::forbidden(
            path,
            "may not specify both ipBlock and another peer",
        ));
    }
}

/// `ValidateIPBlock`: a CIDR, and every `except` a strict subset of it.
fn validate_ip_block(block: &Value, path: &str, out: &mut Vec<Cause>) {
    let cidr = str_at(block, "cidr");
    if cidr.is_empty() {
        out.push(Cause::required(format!("{path}.cidr")));
        return;
    }
    let before = out.len();
    validate_cidr(cidr, &format!("{path}.cidr"), out);
    let Some(outer) = parse_cidr(cidr).filter(|_| out.len() == before) else {
        return;
    };
    for (i, except) in items(block, "except").iter().enumerate() {
        let except_path = format!("{path}.except[{i}]");
        let text = except.as_str().unwrap_or_default();
        let before = out.len();
        validate_cidr(text, &except_path, out);
        let Some(inner) = parse_cidr(text).filter(|_| out.len() == before) else {
            continue;
        };
        if !outer.contains(inner.network) || outer.prefix >= inner.prefix {
            out.push(Cause::invalid(
                except_path,
                except,
                "must be a strict subset of `cidr`",
            ));
        }
    }
}

/// A CIDR as `net.ParseCIDR` reads it: the address masked to its prefix.
#[derive(Debug, Clone, Copy)]
struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => mask_v4(u32::from(a), self.prefix) == u32::from(n),
            (IpAddr::V6(n), IpAddr::V6(a)) => mask_v6(u128::from(a), self.prefix) == u128::from(n),
            _ => false,
        }
    }
}

fn mask_v4(a: u32, prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        a & (u32::MAX << (32 - u32::from(prefix.min(32))))
    }
}

fn mask_v6(a: u128, prefix: u8) -> u128 {
    if prefix == 0 {
        0
    } else {
        a & (u128::MAX << (128 - u32::from(prefix.min(128))))
    }
}

fn parse_cidr(s: &str) -> Option<Cidr> {
    let (ip, bits) = s.split_once('/')?;
    let prefix: u8 = bits.parse().ok()?;
    let network = match ip.parse::<IpAddr>().ok()? {
        IpAddr::V4(a) if prefix <= 32 => IpAddr::V4(mask_v4(u32::from(a), prefix).into()),
        IpAddr::V6(a) if prefix <= 128 => IpAddr::V6(mask_v6(u128::from(a), prefix).into()),
        _ => return None,
    };
    Some(Cidr { network, prefix })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn causes(spec: Value) -> Vec<String> {
        RESOURCE
            .strategy
            .validate(&json!({"spec": spec}))
            .into_iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect()
    }

    fn defaulted(spec: Value) -> Value {
        let mut obj = json!({"spec": spec});
        RESOURCE.strategy.default(&mut obj);
        obj["spec"].clone()
    }

    #[test]
    fn defaults_protocol_selector_and_policy_types() {
        let spec = defaulted(json!({"ingress": [{"ports": [{"port": 80}, {"protocol": "UDP"}]}]}));
        assert_eq!(spec["podSelector"], json!({}));
        assert_eq!(spec["ingress"][0]["ports"][0]["protocol"], "TCP");
        assert_eq!(spec["ingress"][0]["ports"][1]["protocol"], "UDP");
        assert_eq!(spec["policyTypes"], json!(["Ingress"]));
        let spec = defaulted(json!({"egress": [{"ports": [{"port": 53}]}]}));
        assert_eq!(spec["policyTypes"], json!(["Ingress", "Egress"]));
        assert_eq!(spec["egress"][0]["ports"][0]["protocol"], "TCP");
        // An empty egress list is no egress; set policy types are kept as written.
        assert_eq!(
            defaulted(json!({"egress": []}))["policyTypes"],
            json!(["Ingress"])
        );
        let spec = defaulted(json!({"policyTypes": ["Egress"], "egress": [{}]}));
        assert_eq!(spec["policyTypes"], json!(["Egress"]));
        // Idempotent.
        let mut obj = json!({"spec": {"egress": [{}]}});
        RESOURCE.strategy.default(&mut obj);
        let once = obj.clone();
        RESOURCE.strategy.default(&mut obj);
        assert_eq!(obj, once);
    }

    #[test]
    fn a_full_policy_is_valid() {
        let spec = json!({
            "podSelector": {"matchLabels": {"app": "web"}},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{
                "from": [
                    {"podSelector": {"matchLabels": {"role": "client"}}},
                    {"namespaceSelector": {}, "podSelector": {}},
                    {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}},
                ],
                "ports": [{"protocol": "TCP", "port": 80}, {"port": "http"},
                          {"port": 8000, "endPort": 9000}, {"protocol": "SCTP"}],
            }],
            "egress": [{"to": [{"ipBlock": {"cidr": "2001:db8::/32", "except": ["2001:db8:1::/48"]}}]}],
        });
        assert_eq!(causes(spec), Vec::<String>::new());
    }

    #[test]
    fn ports_are_checked_like_kubernetes() {
        let bad = causes(json!({"ingress": [{"ports": [
            {"protocol": "ICMP", "port": 80},
            {"port": 0},
            {"port": "Not_A_Name"},
            {"port": "http", "endPort": 90},
            {"port": 100, "endPort": 90},
            {"endPort": 90},
            {"port": 1, "endPort": 70000},
        ]}]}));
        let has = |needle: &str| bad.iter().any(|c| c.contains(needle));
        assert!(
            has("spec.ingress[0].ports[0].protocol: Unsupported value: \"ICMP\""),
            "{bad:?}"
        );
        assert!(has(
            "spec.ingress[0].ports[1].port: Invalid value: 0: must be between 1 and 65535"
        ));
        assert!(has(
            "spec.ingress[0].ports[2].port: Invalid value: \"Not_A_Name\""
        ));
        assert!(has("spec.ingress[0].ports[3].endPort: Invalid value: 90: may not be specified when `port` is non-numeric"));
        assert!(has("spec.ingress[0].ports[4].endPort: Invalid value: 100: must be greater than or equal to `port`"));
        assert!(has("spec.ingress[0].ports[5].endPort: Invalid value: 90: may not be specified when `port` is not specified"));
        assert!(has(
            "spec.ingress[0].ports[6].endPort: Invalid value: 70000: must be between 1 and 65535"
        ));
        assert_eq!(bad.len(), 7, "{bad:?}");
    }

    #[test]
    fn peers_and_ip_blocks() {
        let bad = causes(json!({"egress": [{"to": [
            {},
            {"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}},
            {"ipBlock": {"cidr": "10.0.0.0/33"}},
            {"ipBlock": {"cidr": ""}},
            {"ipBlock": {"cidr": "10.0.0.0/16", "except": ["10.0.0.0/16", "10.1.0.0/24", "10.0.1.0/24", "nope"]}},
            {"namespaceSelector": {"matchExpressions": [{"key": "a", "operator": "Near"}]}},
        ]}]}));
        let has = |needle: &str| bad.iter().any(|c| c.contains(needle));
        assert!(
            has("spec.egress[0].to[0]: Required value: must specify a peer"),
            "{bad:?}"
        );
        assert!(has(
            "spec.egress[0].to[1]: Forbidden: may not specify both ipBlock and another peer"
        ));
        assert!(has(
            "spec.egress[0].to[2].ipBlock.cidr: Invalid value: \"10.0.0.0/33\""
        ));
        assert!(has("spec.egress[0].to[3].ipBlock.cidr: Required value"));
        assert!(has("spec.egress[0].to[4].ipBlock.except[0]: Invalid value: \"10.0.0.0/16\": must be a strict subset of `cidr`"));
        assert!(has("spec.egress[0].to[4].ipBlock.except[1]: Invalid value: \"10.1.0.0/24\": must be a strict subset"));
        assert!(!has("except[2]"), "{bad:?}");
        assert!(has(
            "spec.egress[0].to[4].ipBlock.except[3]: Invalid value: \"nope\""
        ));
        assert!(has(
            "spec.egress[0].to[5].namespaceSelector.matchExpressions[0].operator"
        ));
        assert_eq!(bad.len(), 8, "{bad:?}");
    }

    #[test]
    fn policy_types_known_unique_and_at_most_two() {
        let bad = causes(json!({"policyTypes": ["Ingress", "Sideways"]}));
        assert_eq!(bad.len(), 1);
        assert!(bad[0].starts_with("spec.policyTypes[1]: Unsupported value: \"Sideways\""));
        let dup = causes(json!({"policyTypes": ["Egress", "Egress"]}));
        assert_eq!(
            dup,
            vec!["spec.policyTypes[1]: Duplicate value: \"Egress\"".to_string()]
        );
        let many = causes(json!({"policyTypes": ["Ingress", "Egress", "Ingress"]}));
        assert_eq!(many.len(), 1);
        assert!(many[0].contains("may not specify more than two policyTypes"));
        let selector = causes(json!({"podSelector": {"matchLabels": {"bad key!": "v"}}}));
        assert!(selector[0].starts_with("spec.podSelector.matchLabels: Invalid value"));
    }

    #[test]
    fn table_shows_the_pod_selector() {
        let obj = json!({
            "metadata": {"name": "p", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"podSelector": {"matchLabels": {"app": "web"}}},
        });
        assert_eq!(RESOURCE.strategy.row(&obj)[1], json!("app=web"));
        let all = json!({"metadata": {"name": "p"}, "spec": {"podSelector": {}}});
        assert_eq!(RESOURCE.strategy.row(&all)[1], json!("<none>"));
        let names: Vec<&str> = RESOURCE.strategy.columns().iter().map(|c| c.name).collect();
        assert_eq!(names, ["Name", "Pod-Selector", "Age"]);
    }

    #[test]
    fn garbage_never_panics() {
        for spec in [
            json!(null),
            json!("x"),
            json!({"ingress": "x", "egress": [1, null, {"ports": "x", "to": [null, 3]}]}),
            json!({"ingress": [{"ports": [{"port": null, "endPort": "x", "protocol": 5}]}]}),
            json!({"policyTypes": [1, null], "podSelector": 7}),
            json!({"egress": [{"to": [{"ipBlock": {"cidr": 5, "except": [null]}}]}]}),
        ] {
            let _ = causes(spec.clone());
            let _ = defaulted(spec);
        }
    }
}
