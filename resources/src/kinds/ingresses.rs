//! networking.k8s.io/v1 Ingress.
//!
//! HTTP routing from outside the cluster to Services: rules by host and path, a default
//! backend, TLS secrets per host, and the class of controller that implements it. The
//! apiserver stores and checks Ingresses; an ingress controller (none ships with
//! Keelson) does the routing and reports its addresses in `/status`. Validation follows
//! Kubernetes' `ValidateIngressCreate`; a spec change bumps the generation and a create
//! starts with an empty status, as Kubernetes' strategy does.

use std::net::IpAddr;

use crate::kinds::ingressclasses::validate_typed_reference;
use crate::kinds::services::port_name_problems;
use crate::podspec::{items, str_at};
use crate::strategy::{name_age_columns, name_age_row, Strategy};
use crate::table::{Column, TableRow};
use crate::{ResourceType, Root, Subresource, Typed};
use keelson_apimachinery::{validation, Cause};
use serde_json::{json, Value};

pub static RESOURCE: ResourceType = ResourceType {
    group: "networking.k8s.io",
    version: "v1",
    kind: "Ingress",
    plural: "ingresses",
    singular: "ingress",
    namespaced: true,
    short_names: &["ing"],
    categories: &[],
    subresources: &[Subresource::Status],
    strategy: &Ingresses,
    typed: Some(Typed::of::<k8s_openapi::api::networking::v1::Ingress>()),
    // Rules, paths, TLS and the status' ingress points are atomic lists.
    merge: Some(Root::MetadataOnly),
};

struct Ingresses;

/// The annotation that named a class before `spec.ingressClassName`.
pub const CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";
/// `supportedPathTypes`, sorted as Kubernetes lists them.
const PATH_TYPES: &[&str] = &["Exact", "ImplementationSpecific", "Prefix"];
const INVALID_PATH_SEQUENCES: &[&str] = &["//", "/./", "/../", "%2f", "%2F"];
const INVALID_PATH_SUFFIXES: &[&str] = &["/..", "/."];
/// `loadBalancerWidth`: the ADDRESS column is cut to this many characters.
const ADDRESS_WIDTH: usize = 16;

/// `IsWildcardDNS1123Subdomain`.
fn wildcard_subdomain(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 253 {
        errs.push("must be no more than 253 characters".to_string());
    }
    let ok = s
        .strip_prefix("*.")
        .is_some_and(|rest| validation::dns1123_subdomain(rest).is_empty());
    if !ok {
        errs.push("a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS subdomain, which must consist of lower case alphanumeric characters, '-' or '.' and end with an alphanumeric character (e.g. '*.example.com', regex used for validation is '\\*\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')".to_string());
    }
    errs
}

/// A host: a DNS subdomain, or a wildcard one.
fn host_problems(host: &str) -> Vec<String> {
    if host.contains('*') {
        wildcard_subdomain(host)
    } else {
        validation::dns1123_subdomain(host)
    }
}

fn validate_backend(backend: &Value, path: &str, out: &mut Vec<Cause>) {
    let resource = backend.get("resource").filter(|v| !v.is_null());
    let service = backend.get("service").filter(|v| !v.is_null());
    match (resource, service) {
        (Some(_), Some(_)) => out.push(Cause::invalid(
            path,
            &json!(""),
            "cannot set both resource and service backends",
        )),
        (Some(r), None) => validate_typed_reference(r, &format!("{path}.resource"), out),
        (None, Some(s)) => {
            let name = str_at(s, "name");
            if name.is_empty() {
                out.push(Cause::required(format!("{path}.service.name")));
            } else {
                for msg in validation::dns1035_label(name) {
                    out.push(Cause::invalid(
                        format!("{path}.service.name"),
                        &json!(name),
                        msg,
                    ));
                }
            }
            let null = Value::Null;
            let port = s.get("port").unwrap_or(&null);
            let port_name = str_at(port, "name");
            let number = port.get("number").and_then(Value::as_i64).unwrap_or(0);
            match (port_name.is_empty(), number) {
                (false, n) if n != 0 => out.push(Cause::invalid(
                    path,
                    &json!(""),
                    "cannot set both port name & port number",
                )),
                (false, _) => {
                    for msg in port_name_problems(port_name) {
                        out.push(Cause::invalid(
                            format!("{path}.service.port.name"),
                            &json!(port_name),
                            msg,
                        ));
                    }
                }
                (true, 0) => out.push(Cause::new(
                    "FieldValueRequired",
                    path,
                    "Required value: port name or number is required",
                )),
                (true, n) if !(1..=65535).contains(&n) => out.push(Cause::invalid(
                    format!("{path}.service.port.number"),
                    &json!(n),
                    "must be between 1 and 65535, inclusive",
                )),
                (true, _) => {}
            }
        }
        (None, None) => out.push(Cause::invalid(
            path,
            &json!(""),
            "resource or service backend is required",
        )),
    }
}

fn validate_http_path(p: &Value, path: &str, out: &mut Vec<Cause>) {
    let value = str_at(p, "path");
    let ppath = format!("{path}.path");
    match p.get("pathType").and_then(Value::as_str) {
        None => out.push(Cause::new(
            "FieldValueRequired",
            format!("{path}.pathType"),
            "Required value: pathType must be specified",
        )),
        Some("Exact" | "Prefix") => {
            if !value.starts_with('/') {
                out.push(Cause::invalid(
                    &ppath,
                    &json!(value),
                    "must be an absolute path",
                ));
            }
            for seq in INVALID_PATH_SEQUENCES
                .iter()
                .filter(|s| value.contains(**s))
            {
                out.push(Cause::invalid(
                    &ppath,
                    &json!(value),
                    format!("must not contain '{seq}'"),
                ));
            }
            for suffix in INVALID_PATH_SUFFIXES
                .iter()
                .filter(|s| value.ends_with(**s))
            {
                out.push(Cause::invalid(
                    &ppath,
                    &json!(value),
                    format!("cannot end with '{suffix}'"),
                ));
            }
        }
        Some("ImplementationSpecific") => {
            if !value.is_empty() && !value.starts_with('/') {
                out.push(Cause::invalid(
                    &ppath,
                    &json!(value),
                    "must be an absolute path",
                ));
            }
        }
        Some(other) => out.push(Cause::not_supported(
            format!("{path}.pathType"),
            &json!(other),
            PATH_TYPES,
        )),
    }
    let null = Value::Null;
    validate_backend(
        p.get("backend").unwrap_or(&null),
        &format!("{path}.backend"),
        out,
    );
}

fn validate_rules(rules: &[Value], out: &mut Vec<Cause>) {
    for (i, rule) in rules.iter().enumerate() {
        let path = format!("spec.rules[{i}]");
        let host = str_at(rule, "host");
        if !host.is_empty() {
            if host.parse::<IpAddr>().is_ok() {
                out.push(Cause::invalid(
                    format!("{path}.host"),
                    &json!(host),
                    "must be a DNS name, not an IP address",
                ));
            }
            for msg in host_problems(host) {
                out.push(Cause::invalid(format!("{path}.host"), &json!(host), msg));
            }
        }
        let Some(http) = rule.get("http").filter(|h| !h.is_null()) else {
            continue;
        };
        let paths = items(http, "paths");
        if paths.is_empty() {
            out.push(Cause::required(format!("{path}.http.paths")));
        }
        for (j, p) in paths.iter().enumerate() {
            validate_http_path(p, &format!("{path}.http.paths[{j}]"), out);
        }
    }
}

fn validate_tls(tls: &[Value], out: &mut Vec<Cause>) {
    for (i, t) in tls.iter().enumerate() {
        for (j, host) in items(t, "hosts").iter().enumerate() {
            let h = host.as_str().unwrap_or("");
            for msg in host_problems(h) {
                out.push(Cause::invalid(
                    format!("spec.tls[{i}].hosts[{j}]"),
                    host,
                    msg,
                ));
            }
        }
        let secret = str_at(t, "secretName");
        if !secret.is_empty() {
            for msg in validation::dns1123_subdomain(secret) {
                out.push(Cause::invalid(
                    format!("spec.tls[{i}].secretName"),
                    &json!(secret),
                    msg,
                ));
            }
        }
    }
}

fn validate_status(obj: &Value, out: &mut Vec<Cause>) {
    let Some(lb) = obj.pointer("/status/loadBalancer") else {
        return;
    };
    for (i, point) in items(lb, "ingress").iter().enumerate() {
        let path = format!("status.loadBalancer.ingress[{i}]");
        let ip = str_at(point, "ip");
        if !ip.is_empty() && ip.parse::<IpAddr>().is_err() {
            out.push(Cause::invalid(
                format!("{path}.ip"),
                &json!(ip),
                "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
            ));
        }
        let hostname = str_at(point, "hostname");
        if !hostname.is_empty() {
            for msg in validation::dns1123_subdomain(hostname) {
                out.push(Cause::invalid(
                    format!("{path}.hostname"),
                    &json!(hostname),
                    msg,
                ));
            }
            if hostname.parse::<IpAddr>().is_ok() {
                out.push(Cause::invalid(
                    format!("{path}.hostname"),
                    &json!(hostname),
                    "must be a DNS name, not an IP address",
                ));
            }
        }
    }
}

fn class_annotation(obj: &Value) -> Option<&str> {
    obj.get("metadata")?
        .get("annotations")?
        .get(CLASS_ANNOTATION)?
        .as_str()
}

/// kubectl's `formatHosts`: the rule hosts until three are listed, `*` when none.
fn format_hosts(rules: &[Value]) -> String {
    const MAX: usize = 3;
    let mut hosts: Vec<&str> = Vec::new();
    let mut more = false;
    for rule in rules {
        if hosts.len() == MAX {
            more = true;
        }
        let host = str_at(rule, "host");
        if !more && !host.is_empty() {
            hosts.push(host);
        }
    }
    if hosts.is_empty() {
        return "*".to_string();
    }
    let shown = hosts.join(",");
    if more {
        format!("{shown} + {} more...", rules.len() - MAX)
    } else {
        shown
    }
}

/// The load balancer's IPs and host names, cut to [`ADDRESS_WIDTH`].
fn format_address(obj: &Value) -> String {
    let points = obj
        .pointer("/status/loadBalancer")
        .map_or(&[][..], |lb| items(lb, "ingress"));
    let addresses: Vec<&str> = points
        .iter()
        .flat_map(|p| [str_at(p, "ip"), str_at(p, "hostname")])
        .filter(|s| !s.is_empty())
        .collect();
    let mut s = addresses.join(",");
    if s.len() > ADDRESS_WIDTH {
        s.truncate(ADDRESS_WIDTH - 3);
        s.push_str("...");
    }
    s
}

impl Strategy for Ingresses {
    fn tracks_generation(&self) -> bool {
        true
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        if let Some(o) = obj.as_object_mut() {
            o.insert("status".into(), json!({"loadBalancer": {}}));
        }
    }

    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut out = Vec::new();
        let null = Value::Null;
        let spec = obj.get("spec").unwrap_or(&null);
        let rules = items(spec, "rules");
        let default_backend = spec.get("defaultBackend").filter(|b| !b.is_null());
        if rules.is_empty() && default_backend.is_none() {
            out.push(Cause::invalid(
                "spec",
                &Value::Null,
                "either `defaultBackend` or `rules` must be specified",
            ));
        }
        if let Some(b) = default_backend {
            validate_backend(b, "spec.defaultBackend", &mut out);
        }
        validate_rules(rules, &mut out);
        validate_tls(items(spec, "tls"), &mut out);
        if let Some(class) = spec.get("ingressClassName").and_then(Value::as_str) {
            for msg in validation::dns1123_subdomain(class) {
                out.push(Cause::invalid("spec.ingressClassName", &json!(class), msg));
            }
        }
        validate_status(obj, &mut out);
        out
    }

    fn validate_create(&self, obj: &Value) -> Vec<Cause> {
        let class = obj
            .pointer("/spec/ingressClassName")
            .and_then(Value::as_str);
        match (class_annotation(obj), class) {
            (Some(annotated), Some(class)) if annotated != class => vec![Cause::invalid(
                format!("annotations.{CLASS_ANNOTATION}"),
                &json!(annotated),
                "must match `ingressClassName` when both are specified",
            )],
            _ => Vec::new(),
        }
    }

    fn columns(&self) -> Vec<Column> {
        name_age_columns(vec![
            Column::new("Class", "string", "The name of the IngressClass resource that should be used for additional configuration"),
            Column::new("Hosts", "string", "Hosts that incoming requests are matched against before the ingress rule"),
            Column::new("Address", "string", "Address is a list containing ingress points for the load-balancer"),
            Column::new("Ports", "string", "Ports of TLS configurations that open"),
        ])
    }

    fn row(&self, obj: &Value) -> TableRow {
        let null = Value::Null;
        let spec = obj.get("spec").unwrap_or(&null);
        let class = spec
            .get("ingressClassName")
            .and_then(Value::as_str)
            .unwrap_or("<none>");
        let ports = if items(spec, "tls").is_empty() {
            "80"
        } else {
            "80, 443"
        };
        name_age_row(
            obj,
            vec![
                json!(class),
                json!(format_hosts(items(spec, "rules"))),
                json!(format_address(obj)),
                json!(ports),
            ],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(causes: Vec<Cause>) -> Vec<String> {
        causes.iter().map(Cause::display).collect()
    }

    fn ingress(spec: Value) -> Value {
        json!({"metadata": {"name": "web", "namespace": "default"}, "spec": spec})
    }

    fn service_path(path: &str, path_type: &str) -> Value {
        json!({"path": path, "pathType": path_type,
            "backend": {"service": {"name": "web", "port": {"number": 80}}}})
    }

    #[test]
    fn a_valid_ingress() {
        let ing = ingress(json!({
            "ingressClassName": "nginx",
            "rules": [{"host": "*.example.com", "http": {"paths": [service_path("/", "Prefix")]}}],
            "tls": [{"hosts": ["www.example.com"], "secretName": "tls"}],
        }));
        assert!(RESOURCE.strategy.validate(&ing).is_empty());
        assert!(RESOURCE.strategy.validate_create(&ing).is_empty());
    }

    #[test]
    fn rules_or_default_backend() {
        assert_eq!(
            shown(RESOURCE.strategy.validate(&ingress(json!({})))),
            ["spec: Invalid value: null: either `defaultBackend` or `rules` must be specified"]
        );
        let backend = ingress(json!({"defaultBackend": {}}));
        assert_eq!(
            shown(RESOURCE.strategy.validate(&backend)),
            ["spec.defaultBackend: Invalid value: \"\": resource or service backend is required"]
        );
        let no_port = ingress(json!({"defaultBackend": {"service": {"name": "web", "port": {}}}}));
        assert_eq!(
            shown(RESOURCE.strategy.validate(&no_port)),
            ["spec.defaultBackend: Required value: port name or number is required"]
        );
    }

    #[test]
    fn hosts_and_paths() {
        let ing = ingress(json!({"rules": [
            {"host": "10.0.0.1", "http": {"paths": [service_path("a", "Exact")]}},
            {"http": {"paths": [{"path": "/x", "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}},
            {"http": {"paths": [service_path("/a//b", "Regex")]}},
            {"http": {"paths": [service_path("/a/..", "Prefix")]}},
        ]}));
        assert_eq!(
            shown(RESOURCE.strategy.validate(&ing)),
            [
                "spec.rules[0].host: Invalid value: \"10.0.0.1\": must be a DNS name, not an IP address",
                "spec.rules[0].http.paths[0].path: Invalid value: \"a\": must be an absolute path",
                "spec.rules[1].http.paths[0].pathType: Required value: pathType must be specified",
                "spec.rules[2].http.paths[0].pathType: Unsupported value: \"Regex\": supported values: \"Exact\", \"ImplementationSpecific\", \"Prefix\"",
                "spec.rules[3].http.paths[0].path: Invalid value: \"/a/..\": cannot end with '/..'",
            ]
        );
    }

    #[test]
    fn class_annotation_must_match_on_create() {
        let mut ing = ingress(
            json!({"ingressClassName": "nginx", "defaultBackend": {"service": {"name": "web", "port": {"name": "http"}}}}),
        );
        ing["metadata"]["annotations"] = json!({CLASS_ANNOTATION: "traefik"});
        assert_eq!(
            shown(RESOURCE.strategy.validate_create(&ing)),
            ["annotations.kubernetes.io/ingress.class: Invalid value: \"traefik\": must match `ingressClassName` when both are specified"]
        );
    }

    #[test]
    fn table_row_as_kubectl_prints_it() {
        let mut ing = ingress(json!({
            "rules": [{"host": "a.example.com"}, {"host": "b.example.com"}, {"host": "c.example.com"}, {"host": "d.example.com"}],
            "tls": [{"hosts": ["a.example.com"]}],
        }));
        ing["status"] = json!({"loadBalancer": {"ingress": [{"ip": "192.168.100.200"}, {"ip": "192.168.100.201"}]}});
        let row = RESOURCE.strategy.row(&ing);
        assert_eq!(
            row[1..5],
            [
                json!("<none>"),
                json!("a.example.com,b.example.com,c.example.com + 1 more..."),
                json!("192.168.100.2..."),
                json!("80, 443")
            ]
        );
        let mut created = ing.clone();
        RESOURCE.strategy.prepare_for_create(&mut created);
        assert_eq!(created["status"], json!({"loadBalancer": {}}));
        assert_eq!(RESOURCE.strategy.row(&created)[3], json!(""));
        let gap =
            ingress(json!({"rules": [{"host": "a.io"}, {}, {"host": "c.io"}, {"host": "d.io"}]}));
        assert_eq!(RESOURCE.strategy.row(&gap)[2], json!("a.io,c.io,d.io"));
        assert_eq!(RESOURCE.strategy.row(&ingress(json!({})))[2], json!("*"));
    }
}
