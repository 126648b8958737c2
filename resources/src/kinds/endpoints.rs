//! core/v1 Endpoints.
//!
//! Port protocols default to TCP; subsets need addresses, which must be usable IPs
//! (no loopback, link-local or unspecified), and ports are validated as on
//! Kubernetes (names required when a subset has several).

use crate::kinds::services::{
    validate_dns_label, validate_ip, validate_non_special_ip, validate_port_number,
    validate_protocol, validate_qualified_name,
};
use crate::podspec::{items, str_at};
use crate::strategy::{name_age_columns, name_age_row, Strategy};
use crate::table::{Column, TableRow};
use crate::{ResourceType, Root, Typed};
use keelson_apimachinery::{validation, Cause};
use serde_json::{json, Value};
use std::net::IpAddr;

pub static RESOURCE: ResourceType = ResourceType {
    group: "",
    version: "v1",
    kind: "Endpoints",
    plural: "endpoints",
    singular: "endpoints",
    namespaced: true,
    short_names: &["ep"],
    categories: &[],
    subresources: &[],
    strategy: &Endpoints,
    typed: Some(Typed::of::<k8s_openapi::api::core::v1::Endpoints>()),
    merge: Some(Root::MetadataOnly),
};

struct Endpoints;

fn validate_address(addr: &Value, path: &str, out: &mut Vec<Cause>) {
    let ip = str_at(addr, "ip");
    validate_ip(ip, &format!("{path}.ip"), out);
    let hostname = str_at(addr, "hostname");
    if !hostname.is_empty() {
        validate_dns_label(hostname, &format!("{path}.hostname"), out);
    }
    if let Some(node) = addr.get("nodeName").and_then(Value::as_str) {
        for msg in validation::dns1123_subdomain(node) {
            out.push(Cause::invalid(
                format!("{path}.nodeName"),
                &json!(node),
                msg,
            ));
        }
    }
    validate_non_special_ip(ip, &format!("{path}.ip"), out);
}

/// kubectl's `formatEndpoints`: up to three `ip:port` pairs, then `+ N more...`.
fn endpoints_cell(obj: &Value) -> String {
    let subsets = items(obj, "subsets");
    if subsets.is_empty() {
        return "<none>".into();
    }
    const MAX: usize = 3;
    let mut list = Vec::new();
    let mut count = 0;
    for ss in subsets {
        let addresses = items(ss, "addresses");
        let ports = items(ss, "ports");
        if ports.is_empty() {
            for a in addresses {
                if list.len() < MAX {
                    list.push(str_at(a, "ip").to_string());
                }
                count += 1;
            }
        } else {
            for p in ports {
                let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
                for a in addresses {
                    if list.len() < MAX {
                        let ip = str_at(a, "ip");
                        list.push(match ip.parse::<IpAddr>() {
                            Ok(IpAddr::V6(_)) => format!("[{ip}]:{port}"),
                            _ => format!("{ip}:{port}"),
                        });
                    }
                    count += 1;
                }
            }
        }
    }
    let joined = list.join(",");
    if count > MAX {
        format!("{joined} + {} more...", count - MAX)
    } else {
        joined
    }
}

impl Strategy for Endpoints {
    fn allow_create_on_update(&self) -> bool {
        true
    }

    fn default(&self, obj: &mut Value) {
        let Some(subsets) = obj.get_mut("subsets").and_then(Value::as_array_mut) else {
            return;
        };
        for ss in subsets {
            let Some(ports) = ss.get_mut("ports").and_then(Value::as_array_mut) else {
                continue;
            };
            for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                if p.get("protocol")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .is_empty()
                {
                    p.insert("protocol".into(), json!("TCP"));
                }
            }
        }
    }

    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut out = Vec::new();
        for (i, ss) in items(obj, "subsets").iter().enumerate() {
            let path = format!("subsets[{i}]");
            let addresses = items(ss, "addresses");
            let not_ready = items(ss, "notReadyAddresses");
            if addresses.is_empty() && not_ready.is_empty() {
                out.push(crate::podspec::required_detail(
                    &path,
                    "must specify `addresses` or `notReadyAddresses`",
                ));
            }
            for (j, a) in addresses.iter().enumerate() {
                validate_address(a, &format!("{path}.addresses[{j}]"), &mut out);
            }
            for (j, a) in not_ready.iter().enumerate() {
                validate_address(a, &format!("{path}.notReadyAddresses[{j}]"), &mut out);
            }
            let ports = items(ss, "ports");
            for (j, p) in ports.iter().enumerate() {
                let pp = format!("{path}.ports[{j}]");
                let name = str_at(p, "name");
                if ports.len() > 1 && name.is_empty() {
                    out.push(Cause::required(format!("{pp}.name")));
                } else if !name.is_empty() {
                    validate_dns_label(name, &format!("{pp}.name"), &mut out);
                }
                validate_port_number(p.get("port"), &format!("{pp}.port"), &mut out);
                validate_protocol(p, &pp, &mut out);
                if let Some(app) = p.get("appProtocol").and_then(Value::as_str) {
                    validate_qualified_name(app, &format!("{pp}.appProtocol"), &mut out);
                }
            }
        }
        out
    }

    fn columns(&self) -> Vec<Column> {
        name_age_columns(vec![Column::new(
            "Endpoints",
            "string",
            "The set of all endpoints is the union of all subsets. Addresses are placed into subsets according to the IPs they share. A single address with multiple ports, some of which are ready and some of which are not (because they come from different containers) will result in the address being displayed in different subsets for the different ports. No address will appear in both Addresses and NotReadyAddresses in the same subset. Sets of addresses and ports that comprise a service.",
        )])
    }

    fn row(&self, obj: &Value) -> TableRow {
        name_age_row(obj, vec![json!(endpoints_cell(obj))])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_protocol_and_formats_endpoints() {
        let mut ep = json!({"metadata": {"name": "web"}, "subsets": [
            {"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}], "ports": [{"port": 80}, {"name": "b", "port": 81}]}
        ]});
        RESOURCE.strategy.default(&mut ep);
        assert_eq!(ep["subsets"][0]["ports"][0]["protocol"], "TCP");
        assert_eq!(
            RESOURCE.strategy.row(&ep)[1],
            "10.0.0.1:80,10.0.0.2:80,10.0.0.1:81 + 1 more..."
        );
        let c = RESOURCE.strategy.validate(&ep);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].display(), "subsets[0].ports[0].name: Required value");
        assert_eq!(RESOURCE.strategy.row(&json!({}))[1], "<none>");
    }

    #[test]
    fn rejects_special_and_missing_addresses() {
        let ep = json!({"subsets": [
            {"ports": [{"port": 80, "protocol": "TCP"}]},
            {"addresses": [{"ip": "127.0.0.1", "hostname": "Bad_Host"}], "ports": [{"port": 70000, "protocol": "TCP"}]}
        ]});
        let shown: Vec<String> = RESOURCE
            .strategy
            .validate(&ep)
            .iter()
            .map(Cause::display)
            .collect();
        assert_eq!(
            shown[0],
            "subsets[0]: Required value: must specify `addresses` or `notReadyAddresses`"
        );
        assert!(
            shown[1].starts_with("subsets[1].addresses[0].hostname: Invalid value: \"Bad_Host\"")
        );
        assert_eq!(
            shown[2],
            "subsets[1].addresses[0].ip: Invalid value: \"127.0.0.1\": may not be in the loopback range (127.0.0.0/8, ::1/128)"
        );
        assert_eq!(
            shown[3],
            "subsets[1].ports[0].port: Invalid value: 70000: must be between 1 and 65535, inclusive"
        );
    }
}
