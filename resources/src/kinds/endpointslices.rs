//! discovery.k8s.io/v1 EndpointSlice.
//!
//! Port names default to "" and protocols to TCP; `addressType` is required, one of
//! IPv4, IPv6, FQDN, and immutable; addresses are checked against it. The generation
//! is tracked, as Kubernetes does for slices.

use crate::kinds::services::{
    parse_ip, validate_dns_label, validate_non_special_ip, validate_qualified_name, PROTOCOLS,
};
use crate::podspec::{items, str_at, validate_labels};
use crate::strategy::{name_age_columns, name_age_row, Strategy};
use crate::table::{Column, TableRow};
use crate::{ResourceType, Root, Typed};
use keelson_apimachinery::{validation, Cause};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::net::IpAddr;

pub static RESOURCE: ResourceType = ResourceType {
    group: "discovery.k8s.io",
    version: "v1",
    kind: "EndpointSlice",
    plural: "endpointslices",
    singular: "endpointslice",
    namespaced: true,
    short_names: &[],
    categories: &[],
    subresources: &[],
    strategy: &EndpointSlices,
    typed: Some(Typed::of::<k8s_openapi::api::discovery::v1::EndpointSlice>()),
    merge: Some(Root::EndpointSlice),
};

struct EndpointSlices;

const ADDRESS_TYPES: &[&str] = &["FQDN", "IPv4", "IPv6"];
const MAX_TOPOLOGY_LABELS: usize = 16;
const MAX_ADDRESSES: usize = 100;
const MAX_PORTS: usize = 100;
const MAX_ENDPOINTS: usize = 1000;

fn too_many(path: &str, actual: usize, max: usize) -> Cause {
    Cause::new(
        "FieldValueTooMany",
        path,
        format!("Too many: {actual}: must have at most {max} items"),
    )
}

/// `validation.IsFullyQualifiedDomainName`.
fn validate_fqdn(name: &str, path: &str, out: &mut Vec<Cause>) {
    if name.is_empty() {
        out.push(Cause::required(path));
        return;
    }
    let name = name.strip_suffix('.').unwrap_or(name);
    let errs = validation::dns1123_subdomain(name);
    if !errs.is_empty() {
        out.push(Cause::invalid(path, &json!(name), errs.join(",")));
        return;
    }
    if name.split('.').count() < 2 {
        out.push(Cause::invalid(
            path,
            &json!(name),
            "should be a domain with at least two segments separated by dots",
        ));
        return;
    }
    for label in name.split('.') {
        let errs = validation::dns1123_label(label);
        if !errs.is_empty() {
            out.push(Cause::invalid(path, &json!(label), errs.join(",")));
            return;
        }
    }
}

fn validate_address(addr: &str, addr_type: &str, path: &str, out: &mut Vec<Cause>) {
    match addr_type {
        "IPv4" | "IPv6" => {
            let ok = match parse_ip(addr) {
                Some(IpAddr::V4(_)) => addr_type == "IPv4",
                Some(IpAddr::V6(_)) => addr_type == "IPv6",
                None => false,
            };
            if !ok {
                out.push(Cause::invalid(
                    path,
                    &json!(addr),
                    format!("must be a valid {addr_type} address"),
                ));
            }
            validate_non_special_ip(addr, path, out);
        }
        "FQDN" => validate_fqdn(addr, path, out),
        _ => {}
    }
}

fn validate_slice(obj: &Value) -> Vec<Cause> {
    let address_types = ADDRESS_TYPES;
    let mut out = Vec::new();
    let addr_type = str_at(obj, "addressType");
    if addr_type.is_empty() {
        out.push(Cause::required("addressType"));
    } else if !address_types.contains(&addr_type) {
        out.push(Cause::not_supported(
            "addressType",
            &json!(addr_type),
            address_types,
        ));
    }
    let endpoints = items(obj, "endpoints");
    if endpoints.len() > MAX_ENDPOINTS {
        out.push(too_many("endpoints", endpoints.len(), MAX_ENDPOINTS));
    } else {
        for (i, ep) in endpoints.iter().enumerate() {
            let path = format!("endpoints[{i}]");
            let addresses = items(ep, "addresses");
            if addresses.is_empty() {
                out.push(crate::podspec::required_detail(
                    format!("{path}.addresses"),
                    "must contain at least 1 address",
                ));
            } else if addresses.len() > MAX_ADDRESSES {
                out.push(too_many(
                    &format!("{path}.addresses"),
                    addresses.len(),
                    MAX_ADDRESSES,
                ));
            }
            for (j, a) in addresses.iter().enumerate() {
                validate_address(
                    a.as_str().unwrap_or(""),
                    addr_type,
                    &format!("{path}.addresses[{j}]"),
                    &mut out,
                );
            }
            let topo_path = format!("{path}.deprecatedTopology");
            let topo = ep.get("deprecatedTopology").and_then(Value::as_object);
            if let Some(t) = topo.filter(|t| t.len() > MAX_TOPOLOGY_LABELS) {
                out.push(too_many(&topo_path, t.len(), MAX_TOPOLOGY_LABELS));
            }
            validate_labels(ep.get("deprecatedTopology"), &topo_path, &mut out);
            if let Some(h) = ep.get("hostname").and_then(Value::as_str) {
                validate_dns_label(h, &format!("{path}.hostname"), &mut out);
            }
            if let Some(node) = ep.get("nodeName").and_then(Value::as_str) {
                for msg in validation::dns1123_subdomain(node) {
                    out.push(Cause::invalid(
                        format!("{path}.nodeName"),
                        &json!(node),
                        msg,
                    ));
                }
            }
        }
    }
    let ports = items(obj, "ports");
    if ports.len() > MAX_PORTS {
        out.push(too_many("ports", ports.len(), MAX_PORTS));
        return out;
    }
    let mut names = HashSet::new();
    for (i, p) in ports.iter().enumerate() {
        let path = format!("ports[{i}]");
        let name = str_at(p, "name");
        if !name.is_empty() {
            validate_dns_label(name, &format!("{path}.name"), &mut out);
        }
        if !names.insert(name.to_string()) {
            out.push(Cause::duplicate(format!("{path}.name"), &json!(name)));
        }
        match p.get("protocol").filter(|v| !v.is_null()) {
            None => out.push(Cause::required(format!("{path}.protocol"))),
            Some(v) if !PROTOCOLS.contains(&v.as_str().unwrap_or("")) => {
                out.push(Cause::not_supported(
                    format!("{path}.protocol"),
                    v,
                    PROTOCOLS,
                ));
            }
            _ => {}
        }
        if let Some(app) = p.get("appProtocol").and_then(Value::as_str) {
            validate_qualified_name(app, &format!("{path}.appProtocol"), &mut out);
        }
    }
    out
}

/// `listWithMoreString`: up to three items, `+ N more...`, `<unset>` when empty.
fn list_with_more(list: Vec<String>, count: usize) -> String {
    const MAX: usize = 3;
    let joined = list.join(",");
    if count > MAX {
        format!("{joined} + {} more...", count - MAX)
    } else if joined.is_empty() {
        "<unset>".into()
    } else {
        joined
    }
}

impl Strategy for EndpointSlices {
    fn tracks_generation(&self) -> bool {
        true
    }

    fn default(&self, obj: &mut Value) {
        let Some(ports) = obj.get_mut("ports").and_then(Value::as_array_mut) else {
            return;
        };
        for p in ports.iter_mut().filter_map(Value::as_object_mut) {
            if p.get("name").is_none_or(Value::is_null) {
                p.insert("name".into(), json!(""));
            }
            if p.get("protocol").is_none_or(Value::is_null) {
                p.insert("protocol".into(), json!("TCP"));
            }
        }
    }

    fn validate(&self, obj: &Value) -> Vec<Cause> {
        validate_slice(obj)
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        let (n, o) = (str_at(new, "addressType"), str_at(old, "addressType"));
        if n != o {
            return vec![Cause::immutable("addressType", &json!(n))];
        }
        Vec::new()
    }

    fn columns(&self) -> Vec<Column> {
        name_age_columns(vec![
            Column::new(
                "AddressType",
                "string",
                "addressType specifies the type of address carried by this EndpointSlice. All addresses in this slice must be the same type. This field is immutable after creation.",
            ),
            Column::new(
                "Ports",
                "string",
                "ports specifies the list of network ports exposed by each endpoint in this slice.",
            ),
            Column::new(
                "Endpoints",
                "string",
                "endpoints is a list of unique endpoints in this slice.",
            ),
        ])
    }

    fn row(&self, obj: &Value) -> TableRow {
        let ports = items(obj, "ports");
        let port_list: Vec<String> = ports
            .iter()
            .take(3)
            .map(|p| match p.get("port").and_then(Value::as_i64) {
                Some(n) => n.to_string(),
                None => match p.get("name").and_then(Value::as_str) {
                    Some(name) => name.to_string(),
                    None => "*".to_string(),
                },
            })
            .collect();
        let addresses: Vec<&Value> = items(obj, "endpoints")
            .iter()
            .flat_map(|e| items(e, "addresses"))
            .collect();
        let addr_list: Vec<String> = addresses
            .iter()
            .take(3)
            .map(|a| a.as_str().unwrap_or("").to_string())
            .collect();
        name_age_row(
            obj,
            vec![
                json!(str_at(obj, "addressType")),
                json!(list_with_more(port_list, ports.len())),
                json!(list_with_more(addr_list, addresses.len())),
            ],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_ports_and_prints_row() {
        let mut s = json!({"metadata": {"name": "web-abc"}, "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.0.0.1"]}, {"addresses": ["10.0.0.2"]}],
            "ports": [{"port": 80}]});
        RESOURCE.strategy.default(&mut s);
        assert_eq!(
            s["ports"][0],
            json!({"port": 80, "name": "", "protocol": "TCP"})
        );
        assert!(RESOURCE.strategy.validate(&s).is_empty());
        let row = RESOURCE.strategy.row(&s);
        assert_eq!(
            &row[1..4],
            &[json!("IPv4"), json!("80"), json!("10.0.0.1,10.0.0.2")]
        );
        assert!(RESOURCE.strategy.tracks_generation());
    }

    #[test]
    fn rejects_bad_address_types_and_addresses() {
        let s = json!({"addressType": "IPv4", "endpoints": [{"addresses": ["fd00::1", "127.0.0.1"]}, {}],
            "ports": [{"name": "", "protocol": "TCP"}, {"name": "", "protocol": "ICMP"}]});
        let shown: Vec<String> = RESOURCE
            .strategy
            .validate(&s)
            .iter()
            .map(Cause::display)
            .collect();
        assert_eq!(
            shown,
            vec![
                "endpoints[0].addresses[0]: Invalid value: \"fd00::1\": must be a valid IPv4 address",
                "endpoints[0].addresses[1]: Invalid value: \"127.0.0.1\": may not be in the loopback range (127.0.0.0/8, ::1/128)",
                "endpoints[1].addresses: Required value: must contain at least 1 address",
                "ports[1].name: Duplicate value: \"\"",
                "ports[1].protocol: Unsupported value: \"ICMP\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
            ]
        );
        let bad = json!({"addressType": "Other"});
        assert_eq!(
            RESOURCE.strategy.validate(&bad)[0].display(),
            "addressType: Unsupported value: \"Other\": supported values: \"FQDN\", \"IPv4\", \"IPv6\""
        );
        let fqdn = json!({"addressType": "FQDN", "endpoints": [{"addresses": ["localhost"]}]});
        assert_eq!(RESOURCE.strategy.validate(&fqdn).len(), 1);
    }

    #[test]
    fn address_type_is_immutable() {
        let old = json!({"addressType": "IPv4"});
        let new = json!({"addressType": "IPv6"});
        assert_eq!(
            RESOURCE.strategy.validate_update(&new, &old)[0].display(),
            "addressType: Invalid value: \"IPv6\": field is immutable"
        );
    }
}
