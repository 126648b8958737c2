//! core/v1 Service.
//!
//! Defaults are those of `SetDefaults_Service` plus the IP-family fields the service
//! registry fills in before allocation (`SingleStack`, `[IPv4]`; headless services
//! without a selector get `RequireDualStack` and both families, as on Kubernetes).
//! ClusterIP and NodePort allocation belong to the store: validation here accepts an
//! empty `clusterIP` and missing node ports, and [`prepare_for_update`] is the
//! Kubernetes update preparation (keep allocated values the client omitted, keep
//! `clusterIP`/`clusterIPs` in sync, drop type-dependent fields when the type changes)
//! that the store should run before validating an update.
//!
//! Also home of the port, protocol and IP checks `endpoints` and `endpointslices`
//! share.

use crate::podspec::{ensure_object, format_labels, items, str_at, validate_labels};
use crate::strategy::{name_age_columns, name_age_row, Strategy};
use crate::table::{Column, TableRow};
use crate::{ResourceType, Root, Subresource, Typed};
use keelson_apimachinery::{validation, Cause};
use serde_json::{json, Map, Value};
use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};

pub static RESOURCE: ResourceType = ResourceType {
    group: "",
    version: "v1",
    kind: "Service",
    plural: "services",
    singular: "service",
    namespaced: true,
    short_names: &["svc"],
    categories: &["all"],
    subresources: &[Subresource::Status, Subresource::Proxy],
    strategy: &Services,
    typed: Some(Typed::of::<k8s_openapi::api::core::v1::Service>()),
    merge: Some(Root::Service),
};

struct Services;

/// The node port range Kubernetes allocates from by default.
pub const NODE_PORT_RANGE: (i64, i64) = (30000, 32767);
/// `v1.DefaultClientIPServiceAffinitySeconds`.
const DEFAULT_AFFINITY_SECONDS: i64 = 10800;
/// `core.MaxClientIPServiceAffinitySeconds`.
const MAX_AFFINITY_SECONDS: i64 = 86400;

pub(crate) const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];
const TYPES: &[&str] = &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];
const AFFINITIES: &[&str] = &["ClientIP", "None"];
const TRAFFIC_POLICIES: &[&str] = &["Cluster", "Local"];
const FAMILY_POLICIES: &[&str] = &["PreferDualStack", "RequireDualStack", "SingleStack"];
const FAMILIES: &[&str] = &["IPv4", "IPv6"];

// ------------------------------------------------------------------ shared checks

/// `netutils.ParseIPSloppy`: like the standard parser, but IPv4 octets may carry
/// leading zeros (read as decimal). IPv4-mapped IPv6 addresses count as IPv4.
pub(crate) fn parse_ip(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        });
    }
    let parts: Vec<&str> = s.split('.').collect();
    if parts.len() != 4 {
        return None;
    }
    let mut octets = [0u8; 4];
    for (o, p) in octets.iter_mut().zip(&parts) {
        if p.is_empty() || p.len() > 3 || !p.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        *o = p.parse().ok()?;
    }
    Some(IpAddr::V4(Ipv4Addr::from(octets)))
}

/// `validation.IsValidIP`.
pub(crate) fn validate_ip(value: &str, path: &str, out: &mut Vec<Cause>) -> bool {
    if parse_ip(value).is_none() {
        out.push(Cause::invalid(
            path,
            &json!(value),
            "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
        ));
        return false;
    }
    true
}

/// `ValidateNonSpecialIP`: no unspecified, loopback or link-local addresses.
pub(crate) fn validate_non_special_ip(value: &str, path: &str, out: &mut Vec<Cause>) {
    let Some(ip) = parse_ip(value) else {
        out.push(Cause::invalid(
            path,
            &json!(value),
            "must be a valid IP address",
        ));
        return;
    };
    let (unspecified, loopback, link_local, link_local_multicast) = match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            (
                v4.is_unspecified(),
                v4.is_loopback(),
                v4.is_link_local(),
                o[0] == 224 && o[1] == 0 && o[2] == 0,
            )
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            (
                v6.is_unspecified(),
                v6.is_loopback(),
                s[0] & 0xffc0 == 0xfe80,
                s[0] & 0xff0f == 0xff02,
            )
        }
    };
    if unspecified {
        out.push(Cause::invalid(
            path,
            &json!(value),
            format!("may not be unspecified ({value})"),
        ));
    }
    if loopback {
        out.push(Cause::invalid(
            path,
            &json!(value),
            "may not be in the loopback range (127.0.0.0/8, ::1/128)",
        ));
    }
    if link_local {
        out.push(Cause::invalid(
            path,
            &json!(value),
            "may not be in the link-local range (169.254.0.0/16, fe80::/10)",
        ));
    }
    if link_local_multicast {
        out.push(Cause::invalid(
            path,
            &json!(value),
            "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)",
        ));
    }
}

/// `validation.IsValidCIDR`.
pub(crate) fn validate_cidr(value: &str, path: &str, out: &mut Vec<Cause>) {
    let ok = value.split_once('/').is_some_and(|(ip, bits)| {
        let max = match ip.parse::<IpAddr>() {
            Ok(IpAddr::V4(_)) => 32,
            Ok(IpAddr::V6(_)) => 128,
            Err(_) => return false,
        };
        bits.parse::<u8>().is_ok_and(|b| b <= max) && !bits.starts_with('+')
    });
    if !ok {
        out.push(Cause::invalid(
            path,
            &json!(value),
            "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
        ));
    }
}

/// `validation.IsValidPortNum` on `v` (absent counts as 0).
pub(crate) fn validate_port_number(v: Option<&Value>, path: &str, out: &mut Vec<Cause>) {
    let n = v.and_then(Value::as_i64).unwrap_or(0);
    if !(1..=65535).contains(&n) {
        let shown = v.filter(|v| !v.is_null()).cloned().unwrap_or(json!(0));
        out.push(Cause::invalid(
            path,
            &shown,
            "must be between 1 and 65535, inclusive",
        ));
    }
}

/// `validation.IsValidPortName` (an IANA service name).
pub(crate) fn port_name_problems(name: &str) -> Vec<&'static str> {
    let mut errs = Vec::new();
    if name.len() > 15 {
        errs.push("must be no more than 15 characters");
    }
    if !name
        .bytes()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
    {
        errs.push("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)");
    }
    if !name.bytes().any(|c| c.is_ascii_lowercase()) {
        errs.push("must contain at least one letter (a-z)");
    }
    if name.contains("--") {
        errs.push("must not contain consecutive hyphens");
    }
    if name.starts_with('-') || name.ends_with('-') {
        errs.push("must not begin or end with a hyphen");
    }
    errs
}

/// The protocol check every port list shares: Required when empty, else one of
/// TCP, UDP, SCTP.
pub(crate) fn validate_protocol(port: &Value, path: &str, out: &mut Vec<Cause>) {
    let proto = str_at(port, "protocol");
    if proto.is_empty() {
        out.push(Cause::required(format!("{path}.protocol")));
    } else if !PROTOCOLS.contains(&proto) {
        out.push(Cause::not_supported(
            format!("{path}.protocol"),
            &json!(proto),
            PROTOCOLS,
        ));
    }
}

/// `ValidateDNS1123Label` at `path`.
pub(crate) fn validate_dns_label(value: &str, path: &str, out: &mut Vec<Cause>) {
    for msg in validation::dns1123_label(value) {
        out.push(Cause::invalid(path, &json!(value), msg));
    }
}

/// `ValidateQualifiedName` at `path`.
pub(crate) fn validate_qualified_name(value: &str, path: &str, out: &mut Vec<Cause>) {
    for msg in validation::qualified_name(value) {
        out.push(Cause::invalid(path, &json!(value), msg));
    }
}

// ------------------------------------------------------------------ helpers

fn spec(obj: &Value) -> &Value {
    static EMPTY: Value = Value::Null;
    obj.get("spec").unwrap_or(&EMPTY)
}

fn svc_type(obj: &Value) -> &str {
    str_at(spec(obj), "type")
}

fn strings(v: &Value, key: &str) -> Vec<String> {
    items(v, key)
        .iter()
        .map(|x| x.as_str().unwrap_or("").to_string())
        .collect()
}

/// `isHeadlessService`: exactly one cluster IP, `None`.
fn is_headless(obj: &Value) -> bool {
    let ips = strings(spec(obj), "clusterIPs");
    ips.len() == 1 && ips[0] == "None"
}

/// `ExternallyAccessible`: load balancers, node ports, cluster IPs with external IPs.
fn externally_accessible(obj: &Value) -> bool {
    match svc_type(obj) {
        "LoadBalancer" | "NodePort" => true,
        "ClusterIP" => !items(spec(obj), "externalIPs").is_empty(),
        _ => false,
    }
}

fn needs_cluster_ip(obj: &Value) -> bool {
    svc_type(obj) != "ExternalName"
}

fn needs_node_port(obj: &Value) -> bool {
    matches!(svc_type(obj), "NodePort" | "LoadBalancer")
}

fn needs_hc_node_port(obj: &Value) -> bool {
    svc_type(obj) == "LoadBalancer" && str_at(spec(obj), "externalTrafficPolicy") == "Local"
}

fn has_selector(obj: &Value) -> bool {
    spec(obj)
        .get("selector")
        .and_then(Value::as_object)
        .is_some_and(|m| !m.is_empty())
}

fn family_of(ip: &str) -> Option<&'static str> {
    match parse_ip(ip)? {
        IpAddr::V4(_) => Some("IPv4"),
        IpAddr::V6(_) => Some("IPv6"),
    }
}

fn spec_mut(obj: &mut Value) -> &mut Map<String, Value> {
    ensure_object(ensure_object(obj).entry("spec").or_insert(Value::Null))
}

fn node_port(port: &Value) -> i64 {
    port.get("nodePort").and_then(Value::as_i64).unwrap_or(0)
}

// ------------------------------------------------------------------ update preparation

/// Kubernetes' service update preparation, to run on the incoming object before
/// defaulting and validation of an update: `patchAllocatedValues` (an update that
/// omits `clusterIP(s)`, node ports or the health-check node port keeps the allocated
/// ones), `NormalizeClusterIPs` (a changed `clusterIP` with untouched `clusterIPs`
/// means the new single IP) and `dropTypeDependentFields` (switching to a type that
/// does not use allocated values releases them). Idempotent.
pub fn prepare_for_update(new: &mut Value, old: &Value) {
    patch_allocated_values(new, old);
    normalize_cluster_ips(new, old);
    drop_type_dependent_fields(new, old);
}

fn patch_allocated_values(new: &mut Value, old: &Value) {
    if needs_cluster_ip(old) && needs_cluster_ip(new) {
        let old_spec = spec(old);
        let s = spec_mut(new);
        if s.get("clusterIP")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
        {
            if let Some(ip) = old_spec.get("clusterIP").filter(|v| !v.is_null()) {
                s.insert("clusterIP".into(), ip.clone());
            }
        }
        let new_empty = s
            .get("clusterIPs")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty);
        if new_empty && !items(old_spec, "clusterIPs").is_empty() {
            s.insert("clusterIPs".into(), old_spec["clusterIPs"].clone());
        }
    }
    if needs_node_port(old) && needs_node_port(new) {
        let old_ports = items(spec(old), "ports");
        let new_used: HashSet<i64> = items(spec(new), "ports").iter().map(node_port).collect();
        let used: HashSet<i64> = old_ports
            .iter()
            .map(node_port)
            .filter(|p| new_used.contains(p))
            .collect();
        let by_name: Vec<(String, i64)> = old_ports
            .iter()
            .map(|p| (str_at(p, "name").to_string(), node_port(p)))
            .collect();
        if let Some(ports) = spec_mut(new).get_mut("ports").and_then(Value::as_array_mut) {
            for p in ports.iter_mut().filter(|p| node_port(p) == 0) {
                let name = str_at(p, "name").to_string();
                let old_val = by_name
                    .iter()
                    .rev()
                    .find(|(n, _)| *n == name)
                    .map_or(0, |(_, v)| *v);
                if old_val != 0 && !used.contains(&old_val) {
                    if let Some(m) = p.as_object_mut() {
                        m.insert("nodePort".into(), json!(old_val));
                    }
                }
            }
        }
    }
    if needs_hc_node_port(old) && needs_hc_node_port(new) {
        let old_hc = spec(old).get("healthCheckNodePort").cloned();
        let s = spec_mut(new);
        if s.get("healthCheckNodePort")
            .and_then(Value::as_i64)
            .unwrap_or(0)
            == 0
        {
            if let Some(v) = old_hc {
                s.insert("healthCheckNodePort".into(), v);
            }
        }
    }
}

fn normalize_cluster_ips(new: &mut Value, old: &Value) {
    let old_ip = str_at(spec(old), "clusterIP").to_string();
    let old_ips = strings(spec(old), "clusterIPs");
    let new_ip = str_at(spec(new), "clusterIP").to_string();
    let new_ips = strings(spec(new), "clusterIPs");
    let s = spec_mut(new);
    let mut ips = new_ips.clone();
    if !old_ips.is_empty() && ips.is_empty() && old_ip == new_ip {
        ips = old_ips.clone();
    }
    if old_ip != new_ip {
        if !old_ip.is_empty() && new_ip.is_empty() {
            if old_ips == ips {
                ips = Vec::new();
            }
        } else if old_ips == ips {
            ips = vec![new_ip.clone()];
        }
    }
    if ips != new_ips {
        if ips.is_empty() {
            s.remove("clusterIPs");
        } else {
            s.insert("clusterIPs".into(), json!(ips));
        }
    }
}

fn drop_type_dependent_fields(new: &mut Value, old: &Value) {
    let os = spec(old).clone();
    let ns = spec(new).clone();
    let same = |k: &str| os.get(k).filter(|v| !v.is_null()) == ns.get(k).filter(|v| !v.is_null());
    let needs_ip = needs_cluster_ip(new);
    let needs_np = needs_node_port(new);
    let needs_hc = needs_hc_node_port(new);
    let new_type = svc_type(new).to_string();
    let s = spec_mut(new);
    if needs_cluster_ip(old) && !needs_ip {
        if same("clusterIP") && same("clusterIPs") {
            s.remove("clusterIP");
            s.remove("clusterIPs");
        }
        if same("ipFamilies") {
            s.remove("ipFamilies");
        }
        if same("ipFamilyPolicy") {
            s.remove("ipFamilyPolicy");
        }
    }
    if needs_node_port(old) && !needs_np {
        let old_ports: HashSet<i64> = items(&os, "ports").iter().map(node_port).collect();
        let subset = items(&ns, "ports")
            .iter()
            .map(node_port)
            .all(|p| p == 0 || old_ports.contains(&p));
        if subset {
            if let Some(ports) = s.get_mut("ports").and_then(Value::as_array_mut) {
                for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                    p.remove("nodePort");
                }
            }
        }
    }
    if needs_hc_node_port(old) && !needs_hc && same("healthCheckNodePort") {
        s.remove("healthCheckNodePort");
    }
    let was_lb = str_at(&os, "type") == "LoadBalancer";
    if was_lb && new_type != "LoadBalancer" {
        if same("allocateLoadBalancerNodePorts") {
            s.remove("allocateLoadBalancerNodePorts");
        }
        if same("loadBalancerClass") {
            s.remove("loadBalancerClass");
        }
    }
    let ext = |t: &str| matches!(t, "NodePort" | "LoadBalancer");
    if ext(str_at(&os, "type")) && !ext(&new_type) && same("externalTrafficPolicy") {
        s.remove("externalTrafficPolicy");
    }
    if new_type != "LoadBalancer" {
        if let Some(status) = new.get_mut("status").and_then(Value::as_object_mut) {
            status.insert("loadBalancer".into(), json!({}));
        }
    }
}

// ------------------------------------------------------------------ validation

fn validate_service_port(
    port: &Value,
    require_name: bool,
    names: &mut HashSet<String>,
    path: &str,
    out: &mut Vec<Cause>,
) {
    let name = str_at(port, "name");
    if require_name && name.is_empty() {
        out.push(Cause::required(format!("{path}.name")));
    } else if !name.is_empty() {
        validate_dns_label(name, &format!("{path}.name"), out);
        if !names.insert(name.to_string()) {
            out.push(Cause::duplicate(format!("{path}.name"), &json!(name)));
        }
    }
    validate_port_number(port.get("port"), &format!("{path}.port"), out);
    validate_protocol(port, path, out);
    match port.get("targetPort") {
        Some(Value::String(s)) => {
            for msg in port_name_problems(s) {
                out.push(Cause::invalid(format!("{path}.targetPort"), &json!(s), msg));
            }
        }
        Some(v @ Value::Number(_)) => {
            validate_port_number(Some(v), &format!("{path}.targetPort"), out);
        }
        _ => {}
    }
    if let Some(app) = port.get("appProtocol").and_then(Value::as_str) {
        validate_qualified_name(app, &format!("{path}.appProtocol"), out);
    }
}

/// `ValidateServiceClusterIPsRelatedFields`.
fn validate_cluster_ips(obj: &Value, out: &mut Vec<Cause>) {
    if svc_type(obj) == "ExternalName" {
        return;
    }
    let s = spec(obj);
    let cluster_ip = str_at(s, "clusterIP");
    let ips = strings(s, "clusterIPs");
    let ips_json = json!(ips);
    if !cluster_ip.is_empty() {
        if ips.is_empty() {
            out.push(Cause::required("spec.clusterIPs"));
        } else if ips[0] != cluster_ip {
            out.push(Cause::invalid(
                "spec.clusterIPs",
                &ips_json,
                "first value must match `clusterIP`",
            ));
        }
    } else if !ips.is_empty() {
        out.push(Cause::invalid(
            "spec.clusterIPs",
            &ips_json,
            "must be empty when `clusterIP` is not specified",
        ));
    }
    let families = strings(s, "ipFamilies");
    let mut seen = HashSet::new();
    for (i, f) in families.iter().enumerate() {
        if !FAMILIES.contains(&f.as_str()) {
            out.push(Cause::not_supported(
                format!("spec.ipFamilies[{i}]"),
                &json!(f),
                FAMILIES,
            ));
        }
        if !seen.insert(f.clone()) {
            out.push(Cause::duplicate(format!("spec.ipFamilies[{i}]"), &json!(f)));
        }
    }
    if let Some(policy) = s.get("ipFamilyPolicy").filter(|v| !v.is_null()) {
        let p = policy.as_str().unwrap_or("");
        if !FAMILY_POLICIES.contains(&p) {
            out.push(Cause::not_supported(
                "spec.ipFamilyPolicy",
                policy,
                FAMILY_POLICIES,
            ));
        }
    }
    let mut bad_ips = false;
    for (i, ip) in ips.iter().enumerate() {
        if i == 0 && ip == "None" {
            if ips.len() > 1 {
                bad_ips = true;
                out.push(Cause::invalid(
                    "spec.clusterIPs",
                    &ips_json,
                    "'None' must be the first and only value",
                ));
            }
            continue;
        }
        bad_ips |= !validate_ip(ip, &format!("spec.clusterIPs[{i}]"), out);
    }
    if ips.len() > 2 {
        out.push(Cause::invalid(
            "spec.clusterIPs",
            &ips_json,
            "may only hold up to 2 values",
        ));
    }
    if bad_ips {
        return;
    }
    if ips.len() > 1 && family_of(&ips[0]) == family_of(&ips[1]) {
        out.push(Cause::invalid(
            "spec.clusterIPs",
            &ips_json,
            "may specify no more than one IP for each IP family",
        ));
    }
    if !is_headless(obj) {
        for (i, (ip, fam)) in ips.iter().zip(&families).enumerate() {
            let actual = family_of(ip);
            if fam == "IPv4" && actual == Some("IPv6") {
                out.push(Cause::invalid(
                    format!("spec.clusterIPs[{i}]"),
                    &json!(ip),
                    format!("expected an IPv4 value as indicated by `ipFamilies[{i}]`"),
                ));
            }
            if fam == "IPv6" && actual != Some("IPv6") {
                out.push(Cause::invalid(
                    format!("spec.clusterIPs[{i}]"),
                    &json!(ip),
                    format!("expected an IPv6 value as indicated by `ipFamilies[{i}]`"),
                ));
            }
        }
    }
}

fn validate_session_affinity(s: &Value, out: &mut Vec<Cause>) {
    let affinity = str_at(s, "sessionAffinity");
    if affinity.is_empty() {
        out.push(Cause::required("spec.sessionAffinity"));
    } else if !AFFINITIES.contains(&affinity) {
        out.push(Cause::not_supported(
            "spec.sessionAffinity",
            &json!(affinity),
            AFFINITIES,
        ));
    }
    let config = s.get("sessionAffinityConfig").filter(|v| !v.is_null());
    if affinity == "ClientIP" {
        let path = "spec.sessionAffinityConfig";
        let Some(config) = config else {
            out.push(crate::podspec::required_detail(
                path,
                "when session affinity type is ClientIP",
            ));
            return;
        };
        let Some(client) = config.get("clientIP").filter(|v| !v.is_null()) else {
            out.push(crate::podspec::required_detail(
                format!("{path}.clientIP"),
                "when session affinity type is ClientIP",
            ));
            return;
        };
        match client.get("timeoutSeconds").and_then(Value::as_i64) {
            None => out.push(crate::podspec::required_detail(
                format!("{path}.clientIP.timeoutSeconds"),
                "when session affinity type is ClientIP",
            )),
            Some(t) if t <= 0 || t > MAX_AFFINITY_SECONDS => out.push(Cause::invalid(
                format!("{path}.clientIP.timeoutSeconds"),
                &json!(t),
                format!("must be greater than 0 and less than {MAX_AFFINITY_SECONDS}"),
            )),
            Some(_) => {}
        }
    } else if affinity == "None" && config.is_some() {
        out.push(Cause::forbidden(
            "spec.sessionAffinityConfig",
            "must not be set when session affinity is None",
        ));
    }
}

fn validate_service(obj: &Value) -> Vec<Cause> {
    let mut out = Vec::new();
    let s = spec(obj);
    let t = svc_type(obj);
    let ports = items(s, "ports");
    let headless = is_headless(obj);
    if ports.is_empty() && !headless && t != "ExternalName" {
        out.push(Cause::required("spec.ports"));
    }
    match t {
        "LoadBalancer" | "NodePort" if headless => out.push(Cause::invalid(
            "spec.clusterIPs[0]",
            &json!("None"),
            format!("may not be set to 'None' for {t} services"),
        )),
        "ExternalName" => {
            if !items(s, "clusterIPs").is_empty() {
                out.push(Cause::forbidden(
                    "spec.clusterIPs",
                    "may not be set for ExternalName services",
                ));
            }
            if !items(s, "ipFamilies").is_empty() {
                out.push(Cause::forbidden(
                    "spec.ipFamilies",
                    "may not be set for ExternalName services",
                ));
            }
            if s.get("ipFamilyPolicy").is_some_and(|v| !v.is_null()) {
                out.push(Cause::forbidden(
                    "spec.ipFamilyPolicy",
                    "may not be set for ExternalName services",
                ));
            }
            let cname = str_at(s, "externalName");
            let cname = cname.strip_suffix('.').unwrap_or(cname);
            if cname.is_empty() {
                out.push(Cause::required("spec.externalName"));
            } else {
                for msg in validation::dns1123_subdomain(cname) {
                    out.push(Cause::invalid("spec.externalName", &json!(cname), msg));
                }
            }
        }
        _ => {}
    }
    let mut names = HashSet::new();
    for (i, p) in ports.iter().enumerate() {
        validate_service_port(
            p,
            ports.len() > 1,
            &mut names,
            &format!("spec.ports[{i}]"),
            &mut out,
        );
    }
    validate_labels(s.get("selector"), "spec.selector", &mut out);
    validate_session_affinity(s, &mut out);
    validate_cluster_ips(obj, &mut out);
    for (i, ip) in items(s, "externalIPs").iter().enumerate() {
        let ip = ip.as_str().unwrap_or("");
        let path = format!("spec.externalIPs[{i}]");
        if validate_ip(ip, &path, &mut out) {
            validate_non_special_ip(ip, &path, &mut out);
        }
    }
    if t.is_empty() {
        out.push(Cause::required("spec.type"));
    } else if !TYPES.contains(&t) {
        out.push(Cause::not_supported("spec.type", &json!(t), TYPES));
    }
    let mut node_ports = HashSet::new();
    let mut port_keys = HashSet::new();
    for (i, p) in ports.iter().enumerate() {
        let np = node_port(p);
        let proto = str_at(p, "protocol");
        if t == "ClusterIP" && np != 0 {
            out.push(Cause::forbidden(
                format!("spec.ports[{i}].nodePort"),
                "may not be used when `type` is 'ClusterIP'",
            ));
        }
        if np != 0 {
            if !node_ports.insert((proto.to_string(), np)) {
                out.push(Cause::duplicate(
                    format!("spec.ports[{i}].nodePort"),
                    &json!(np),
                ));
            }
            if t != "ClusterIP" && !(NODE_PORT_RANGE.0..=NODE_PORT_RANGE.1).contains(&np) {
                out.push(Cause::invalid(
                    format!("spec.ports[{i}].nodePort"),
                    &json!(np),
                    format!(
                        "provided port is not in the valid range. The range of valid ports is {}-{}",
                        NODE_PORT_RANGE.0, NODE_PORT_RANGE.1
                    ),
                ));
            }
        }
        let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
        if !port_keys.insert((proto.to_string(), port)) {
            out.push(Cause::duplicate(
                format!("spec.ports[{i}]"),
                &json!({"port": port, "protocol": proto}),
            ));
        }
    }
    let ranges = items(s, "loadBalancerSourceRanges");
    if !ranges.is_empty() {
        // Kubernetes reports these under the Go field name.
        let path = "spec.LoadBalancerSourceRanges";
        if t != "LoadBalancer" {
            out.push(Cause::forbidden(
                path,
                "may only be used when `type` is 'LoadBalancer'",
            ));
        }
        for (i, r) in ranges.iter().enumerate() {
            validate_cidr(
                r.as_str().unwrap_or("").trim(),
                &format!("{path}[{i}]"),
                &mut out,
            );
        }
    }
    let allocate = s
        .get("allocateLoadBalancerNodePorts")
        .filter(|v| !v.is_null());
    if allocate.is_some() && t != "LoadBalancer" {
        out.push(Cause::forbidden(
            "spec.allocateLoadBalancerNodePorts",
            "may only be used when `type` is 'LoadBalancer'",
        ));
    }
    if t == "LoadBalancer" && allocate.is_none() {
        // Kubernetes reports this one without the `spec.` prefix.
        out.push(Cause::required("allocateLoadBalancerNodePorts"));
    }
    if let Some(class) = s.get("loadBalancerClass").and_then(Value::as_str) {
        if t == "LoadBalancer" {
            validate_qualified_name(class, "spec.loadBalancerClass", &mut out);
        } else {
            out.push(Cause::forbidden(
                "spec.loadBalancerClass",
                "may only be used when `type` is 'LoadBalancer'",
            ));
        }
    }
    let etp = str_at(s, "externalTrafficPolicy");
    if !externally_accessible(obj) {
        if !etp.is_empty() {
            out.push(Cause::invalid(
                "spec.externalTrafficPolicy",
                &json!(etp),
                "may only be set for externally-accessible services",
            ));
        }
    } else if etp.is_empty() {
        out.push(Cause::required("spec.externalTrafficPolicy"));
    } else if !TRAFFIC_POLICIES.contains(&etp) {
        out.push(Cause::not_supported(
            "spec.externalTrafficPolicy",
            &json!(etp),
            TRAFFIC_POLICIES,
        ));
    }
    let hc = s
        .get("healthCheckNodePort")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    if !needs_hc_node_port(obj) {
        if hc != 0 {
            out.push(Cause::invalid(
                "spec.healthCheckNodePort",
                &json!(hc),
                "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'",
            ));
        }
    } else if hc != 0 {
        // Zero is left for the store to allocate.
        validate_port_number(
            s.get("healthCheckNodePort"),
            "spec.healthCheckNodePort",
            &mut out,
        );
    }
    match s.get("internalTrafficPolicy").filter(|v| !v.is_null()) {
        None if matches!(t, "ClusterIP" | "NodePort" | "LoadBalancer") => {
            out.push(Cause::required("spec.internalTrafficPolicy"));
        }
        Some(v) if !TRAFFIC_POLICIES.contains(&v.as_str().unwrap_or("")) => {
            out.push(Cause::not_supported(
                "spec.internalTrafficPolicy",
                v,
                TRAFFIC_POLICIES,
            ));
        }
        _ => {}
    }
    if let Some(td) = s.get("trafficDistribution").filter(|v| !v.is_null()) {
        if td.as_str() != Some("PreferClose") {
            out.push(Cause::not_supported(
                "spec.trafficDistribution",
                td,
                &["PreferClose"],
            ));
        }
    }
    out
}

fn validate_update_rules(new: &Value, old: &Value) -> Vec<Cause> {
    let mut out = Vec::new();
    let external = svc_type(new) == "ExternalName" || svc_type(old) == "ExternalName";
    let (new_ips, old_ips) = (
        strings(spec(new), "clusterIPs"),
        strings(spec(old), "clusterIPs"),
    );
    let new_ips_json = json!(new_ips);
    let policy = spec(new)
        .get("ipFamilyPolicy")
        .cloned()
        .unwrap_or(Value::Null);
    let single = policy.as_str() == Some("SingleStack");
    let changed = |field: &str| Cause::invalid(field, &new_ips_json, "may not change once set");
    if !external && (!is_headless(old) || !is_headless(new)) {
        if old_ips.len() == new_ips.len() {
            for (i, ip) in old_ips.iter().enumerate() {
                if *ip != new_ips[i] {
                    out.push(changed(&format!("spec.clusterIPs[{i}]")));
                }
            }
        } else if old_ips.len() > new_ips.len() {
            if new_ips.is_empty() {
                out.push(Cause::invalid(
                    "spec.clusterIPs[0]",
                    &new_ips_json,
                    "primary clusterIP can not be unset",
                ));
            } else if !old_ips.is_empty() && new_ips[0] != old_ips[0] {
                out.push(changed("spec.clusterIPs[0]"));
            }
            if new_ips.len() == 1 && !single {
                out.push(Cause::invalid(
                    "spec.ipFamilyPolicy",
                    &policy,
                    "must be set to 'SingleStack' when releasing the secondary clusterIP",
                ));
            }
        } else if !old_ips.is_empty() && new_ips[0] != old_ips[0] {
            out.push(changed("spec.clusterIPs[0]"));
        }
    }
    let (new_fam, old_fam) = (
        strings(spec(new), "ipFamilies"),
        strings(spec(old), "ipFamilies"),
    );
    if !external && !is_headless(new) && !is_headless(old) {
        let fam_json = json!(new_fam);
        if old_fam.len() == new_fam.len() {
            if old_fam != new_fam {
                out.push(Cause::invalid(
                    "spec.ipFamilies[0]",
                    &fam_json,
                    "may not change once set",
                ));
            }
        } else if old_fam.len() > new_fam.len() {
            if new_fam.is_empty() && new_ips.is_empty() {
                out.push(Cause::invalid(
                    "spec.ipFamilies[0]",
                    &fam_json,
                    "primary ipFamily can not be unset",
                ));
            }
            if !new_fam.is_empty() && new_fam[0] != old_fam[0] {
                out.push(Cause::invalid(
                    "spec.ipFamilies[0]",
                    &new_ips_json,
                    "may not change once set",
                ));
            }
            if new_fam.len() == 1 && !single {
                out.push(Cause::invalid(
                    "spec.ipFamilyPolicy",
                    &policy,
                    "must be set to 'SingleStack' when releasing the secondary ipFamily",
                ));
            }
        } else if !old_fam.is_empty() && new_fam[0] != old_fam[0] {
            out.push(Cause::invalid(
                "spec.ipFamilies[0]",
                &new_ips_json,
                "may not change once set",
            ));
        }
    }
    if svc_type(new) == "LoadBalancer" && svc_type(old) == "LoadBalancer" {
        let (n, o) = (
            spec(new).get("loadBalancerClass"),
            spec(old).get("loadBalancerClass"),
        );
        if n.filter(|v| !v.is_null()) != o.filter(|v| !v.is_null()) {
            out.push(Cause::invalid(
                "spec.loadBalancerClass",
                n.unwrap_or(&Value::Null),
                "may not change once set",
            ));
        }
    }
    if needs_hc_node_port(new) && needs_hc_node_port(old) {
        let hc = |o: &Value| {
            spec(o)
                .get("healthCheckNodePort")
                .and_then(Value::as_i64)
                .unwrap_or(0)
        };
        if hc(new) != hc(old) {
            out.push(Cause::forbidden(
                "spec.healthCheckNodePort",
                "field is immutable",
            ));
        }
    }
    out
}

// ------------------------------------------------------------------ table

/// kubectl's `getServiceExternalIP` (server-side tables are printed wide).
fn external_ip_cell(obj: &Value) -> String {
    let s = spec(obj);
    let external: Vec<&str> = items(s, "externalIPs")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    match svc_type(obj) {
        "ClusterIP" | "NodePort" => {
            if external.is_empty() {
                "<none>".into()
            } else {
                external.join(",")
            }
        }
        "LoadBalancer" => {
            let mut lb: Vec<&str> = obj
                .get("status")
                .and_then(|st| st.get("loadBalancer"))
                .map(|l| items(l, "ingress"))
                .unwrap_or(&[])
                .iter()
                .filter_map(|i| {
                    let ip = str_at(i, "ip");
                    let host = str_at(i, "hostname");
                    if !ip.is_empty() {
                        Some(ip)
                    } else if !host.is_empty() {
                        Some(host)
                    } else {
                        None
                    }
                })
                .collect();
            lb.sort_unstable();
            lb.dedup();
            lb.extend(external);
            if lb.is_empty() {
                "<pending>".into()
            } else {
                lb.join(",")
            }
        }
        "ExternalName" => str_at(s, "externalName").to_string(),
        _ => "<unknown>".into(),
    }
}

/// kubectl's `makePortString`: `80/TCP`, `80:30080/TCP`.
fn ports_cell(obj: &Value) -> String {
    let pieces: Vec<String> = items(spec(obj), "ports")
        .iter()
        .map(|p| {
            let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
            let proto = str_at(p, "protocol");
            match node_port(p) {
                0 => format!("{port}/{proto}"),
                np => format!("{port}:{np}/{proto}"),
            }
        })
        .collect();
    if pieces.is_empty() {
        "<none>".into()
    } else {
        pieces.join(",")
    }
}

impl Strategy for Services {
    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        prepare_for_update(new, old)
    }

    fn validate_name(&self, name: &str) -> Vec<String> {
        validation::dns1035_label(name)
    }

    fn allow_create_on_update(&self) -> bool {
        true
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        ensure_object(obj).insert("status".into(), json!({"loadBalancer": {}}));
    }

    fn default(&self, obj: &mut Value) {
        let headless_selectorless = str_at(spec(obj), "clusterIP") == "None" && !has_selector(obj);
        let s = spec_mut(obj);
        let affinity = match s.get("sessionAffinity").and_then(Value::as_str) {
            Some(a) if !a.is_empty() => a.to_string(),
            _ => {
                s.insert("sessionAffinity".into(), json!("None"));
                "None".to_string()
            }
        };
        if affinity == "None" {
            s.remove("sessionAffinityConfig");
        } else if affinity == "ClientIP" {
            let has_timeout = s
                .get("sessionAffinityConfig")
                .and_then(|c| c.get("clientIP"))
                .and_then(|c| c.get("timeoutSeconds"))
                .is_some_and(|t| !t.is_null());
            if !has_timeout {
                s.insert(
                    "sessionAffinityConfig".into(),
                    json!({"clientIP": {"timeoutSeconds": DEFAULT_AFFINITY_SECONDS}}),
                );
            }
        }
        let t = match s.get("type").and_then(Value::as_str) {
            Some(t) if !t.is_empty() => t.to_string(),
            _ => {
                s.insert("type".into(), json!("ClusterIP"));
                "ClusterIP".to_string()
            }
        };
        if let Some(ports) = s.get_mut("ports").and_then(Value::as_array_mut) {
            for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                if p.get("protocol")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .is_empty()
                {
                    p.insert("protocol".into(), json!("TCP"));
                }
                let unset = match p.get("targetPort") {
                    None | Some(Value::Null) => true,
                    Some(Value::String(s)) => s.is_empty(),
                    Some(v) => v.as_i64() == Some(0),
                };
                if unset {
                    let port = p.get("port").cloned().unwrap_or(json!(0));
                    p.insert("targetPort".into(), port);
                }
            }
        }
        let has_external_ips = s
            .get("externalIPs")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty());
        let accessible = matches!(t.as_str(), "NodePort" | "LoadBalancer")
            || (t == "ClusterIP" && has_external_ips);
        if accessible
            && s.get("externalTrafficPolicy")
                .and_then(Value::as_str)
                .unwrap_or("")
                .is_empty()
        {
            s.insert("externalTrafficPolicy".into(), json!("Cluster"));
        }
        if matches!(t.as_str(), "ClusterIP" | "NodePort" | "LoadBalancer")
            && s.get("internalTrafficPolicy").is_none_or(Value::is_null)
        {
            s.insert("internalTrafficPolicy".into(), json!("Cluster"));
        }
        if t == "LoadBalancer"
            && s.get("allocateLoadBalancerNodePorts")
                .is_none_or(Value::is_null)
        {
            s.insert("allocateLoadBalancerNodePorts".into(), json!(true));
        }
        // clusterIP and clusterIPs stay in sync (a client may send only the first).
        let cluster_ip = s
            .get("clusterIP")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let ips_empty = s
            .get("clusterIPs")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty);
        if !cluster_ip.is_empty() && ips_empty {
            s.insert("clusterIPs".into(), json!([cluster_ip]));
        }
        if t != "ExternalName" {
            if s.get("ipFamilyPolicy").is_none_or(Value::is_null) {
                let policy = if headless_selectorless {
                    "RequireDualStack"
                } else {
                    "SingleStack"
                };
                s.insert("ipFamilyPolicy".into(), json!(policy));
            }
            let fams_empty = s
                .get("ipFamilies")
                .and_then(Value::as_array)
                .is_none_or(Vec::is_empty);
            if fams_empty {
                let mut fams: Vec<&str> = s
                    .get("clusterIPs")
                    .and_then(Value::as_array)
                    .map(|ips| {
                        ips.iter()
                            .filter_map(Value::as_str)
                            .take_while(|ip| *ip != "None")
                            .filter_map(family_of)
                            .collect()
                    })
                    .unwrap_or_default();
                if fams.is_empty() {
                    fams.push("IPv4");
                }
                let single = s.get("ipFamilyPolicy").and_then(Value::as_str) == Some("SingleStack");
                if headless_selectorless && !single && fams.len() == 1 {
                    fams.push(if fams[0] == "IPv4" { "IPv6" } else { "IPv4" });
                }
                s.insert("ipFamilies".into(), json!(fams));
            }
        }
        if t == "LoadBalancer" {
            if let Some(ingress) = obj
                .get_mut("status")
                .and_then(|st| st.get_mut("loadBalancer"))
                .and_then(|l| l.get_mut("ingress"))
                .and_then(Value::as_array_mut)
            {
                for ing in ingress.iter_mut().filter_map(Value::as_object_mut) {
                    let has_ip = ing
                        .get("ip")
                        .and_then(Value::as_str)
                        .is_some_and(|s| !s.is_empty());
                    if has_ip && ing.get("ipMode").is_none_or(Value::is_null) {
                        ing.insert("ipMode".into(), json!("VIP"));
                    }
                }
            }
        }
    }

    fn validate(&self, obj: &Value) -> Vec<Cause> {
        validate_service(obj)
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        // The same preparation the store should have run; idempotent when it did.
        let mut new = new.clone();
        prepare_for_update(&mut new, old);
        validate_update_rules(&new, old)
    }

    fn selectable_fields(&self, obj: &Value) -> Vec<(&'static str, String)> {
        vec![
            ("spec.clusterIP", str_at(spec(obj), "clusterIP").to_string()),
            ("spec.type", svc_type(obj).to_string()),
        ]
    }

    fn selectable_field_names(&self) -> &'static [&'static str] {
        &["spec.clusterIP", "spec.type"]
    }

    fn columns(&self) -> Vec<Column> {
        let mut cols = name_age_columns(vec![
            Column::new(
                "Type",
                "string",
                "type determines how the Service is exposed. Defaults to ClusterIP. Valid options are ExternalName, ClusterIP, NodePort, and LoadBalancer.",
            ),
            Column::new(
                "Cluster-IP",
                "string",
                "clusterIP is the IP address of the service and is usually assigned randomly.",
            ),
            Column::new(
                "External-IP",
                "string",
                "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service.",
            ),
            Column::new(
                "Port(s)",
                "string",
                "The list of ports that are exposed by this service.",
            ),
        ]);
        cols.push(
            Column::new(
                "Selector",
                "string",
                "Route service traffic to pods with label keys and values matching this selector.",
            )
            .wide(),
        );
        cols
    }

    fn row(&self, obj: &Value) -> TableRow {
        let cluster_ip = str_at(spec(obj), "clusterIP");
        let mut row = name_age_row(
            obj,
            vec![
                json!(svc_type(obj)),
                json!(if cluster_ip.is_empty() {
                    "<none>"
                } else {
                    cluster_ip
                }),
                json!(external_ip_cell(obj)),
                json!(ports_cell(obj)),
            ],
        );
        row.push(json!(format_labels(spec(obj).get("selector"))));
        row
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaulted(v: Value) -> Value {
        let mut v = v;
        RESOURCE.strategy.default(&mut v);
        v
    }

    fn shown(causes: &[Cause]) -> Vec<String> {
        causes.iter().map(Cause::display).collect()
    }

    #[test]
    fn defaults_like_kubernetes() {
        let svc = defaulted(json!({"metadata": {"name": "web"}, "spec": {
            "selector": {"app": "web"}, "ports": [{"port": 80}]}}));
        assert_eq!(
            svc["spec"],
            json!({
                "selector": {"app": "web"},
                "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}],
                "sessionAffinity": "None",
                "type": "ClusterIP",
                "internalTrafficPolicy": "Cluster",
                "ipFamilyPolicy": "SingleStack",
                "ipFamilies": ["IPv4"],
            })
        );
        assert!(RESOURCE.strategy.validate(&svc).is_empty());
        let np = defaulted(
            json!({"spec": {"type": "NodePort", "ports": [{"port": 80, "targetPort": "http"}]}}),
        );
        assert_eq!(np["spec"]["externalTrafficPolicy"], "Cluster");
        assert_eq!(np["spec"]["ports"][0]["targetPort"], "http");
        let lb = defaulted(json!({"spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}}));
        assert_eq!(lb["spec"]["allocateLoadBalancerNodePorts"], true);
        let headless = defaulted(json!({"spec": {"clusterIP": "None"}}));
        assert_eq!(headless["spec"]["clusterIPs"], json!(["None"]));
        assert_eq!(headless["spec"]["ipFamilyPolicy"], "RequireDualStack");
        assert_eq!(headless["spec"]["ipFamilies"], json!(["IPv4", "IPv6"]));
        assert!(RESOURCE.strategy.validate(&headless).is_empty());
        let ext =
            defaulted(json!({"spec": {"type": "ExternalName", "externalName": "example.com."}}));
        assert!(ext["spec"].get("ipFamilies").is_none());
        assert!(ext["spec"].get("internalTrafficPolicy").is_none());
        assert!(RESOURCE.strategy.validate(&ext).is_empty());
        let affinity =
            defaulted(json!({"spec": {"sessionAffinity": "ClientIP", "ports": [{"port": 1}]}}));
        assert_eq!(
            affinity["spec"]["sessionAffinityConfig"],
            json!({"clientIP": {"timeoutSeconds": 10800}})
        );
    }

    #[test]
    fn rejects_bad_ports_with_kubernetes_paths() {
        let svc = defaulted(json!({"spec": {"ports": [
            {"name": "a", "port": 0},
            {"port": 80, "protocol": "ICMP"},
            {"name": "a", "port": 80, "nodePort": 31000}]}}));
        assert_eq!(
            shown(&RESOURCE.strategy.validate(&svc)),
            vec![
                "spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive",
                "spec.ports[0].targetPort: Invalid value: 0: must be between 1 and 65535, inclusive",
                "spec.ports[1].name: Required value",
                "spec.ports[1].protocol: Unsupported value: \"ICMP\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
                "spec.ports[2].name: Duplicate value: \"a\"",
                "spec.ports[2].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'",
            ]
        );
        let none = defaulted(json!({"spec": {"type": "Bogus"}}));
        let c = shown(&RESOURCE.strategy.validate(&none));
        assert!(c.contains(&"spec.ports: Required value".to_string()));
        assert!(c
            .iter()
            .any(|m| m.starts_with("spec.type: Unsupported value: \"Bogus\"")));
        let np = defaulted(
            json!({"spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 80}]}}),
        );
        assert_eq!(
            shown(&RESOURCE.strategy.validate(&np)),
            vec!["spec.ports[0].nodePort: Invalid value: 80: provided port is not in the valid range. The range of valid ports is 30000-32767"]
        );
    }

    #[test]
    fn cluster_ip_may_not_change_except_via_external_name() {
        let old = defaulted(json!({"spec": {"clusterIP": "10.96.0.10", "ports": [{"port": 53}]}}));
        let mut new = old.clone();
        new["spec"]["clusterIP"] = json!("10.96.0.11");
        assert_eq!(
            shown(&RESOURCE.strategy.validate_update(&new, &old)),
            vec!["spec.clusterIPs[0]: Invalid value: [\"10.96.0.11\"]: may not change once set"]
        );
        // Omitting the allocated IP keeps it.
        let mut omitted = old.clone();
        omitted["spec"].as_object_mut().unwrap().remove("clusterIP");
        omitted["spec"]
            .as_object_mut()
            .unwrap()
            .remove("clusterIPs");
        assert!(RESOURCE.strategy.validate_update(&omitted, &old).is_empty());
        prepare_for_update(&mut omitted, &old);
        assert_eq!(omitted["spec"]["clusterIPs"], json!(["10.96.0.10"]));
        // Switching to ExternalName releases it.
        let mut ext = old.clone();
        ext["spec"]["type"] = json!("ExternalName");
        ext["spec"]["externalName"] = json!("db.example.com");
        prepare_for_update(&mut ext, &old);
        assert!(ext["spec"].get("clusterIP").is_none());
        assert!(ext["spec"].get("ipFamilies").is_none());
        assert!(RESOURCE.strategy.validate_update(&ext, &old).is_empty());
        assert!(RESOURCE.strategy.validate(&ext).is_empty());
    }

    #[test]
    fn table_row_like_kubectl() {
        let svc = defaulted(json!({"metadata": {"name": "web"}, "spec": {
            "type": "NodePort", "clusterIP": "10.0.0.1", "selector": {"app": "web"},
            "ports": [{"port": 80, "nodePort": 30080}, {"port": 53, "protocol": "UDP"}]}}));
        let row = RESOURCE.strategy.row(&svc);
        assert_eq!(row.len(), RESOURCE.strategy.columns().len());
        assert_eq!(
            &row[1..5],
            &[
                json!("NodePort"),
                json!("10.0.0.1"),
                json!("<none>"),
                json!("80:30080/TCP,53/UDP")
            ]
        );
        assert_eq!(row[6], "app=web");
        let lb = defaulted(json!({"spec": {"type": "LoadBalancer"}}));
        assert_eq!(RESOURCE.strategy.row(&lb)[3], "<pending>");
    }

    #[test]
    fn ip_helpers() {
        assert_eq!(
            parse_ip("010.001.0.1"),
            Some(IpAddr::V4(Ipv4Addr::new(10, 1, 0, 1)))
        );
        assert!(parse_ip("1.2.3").is_none());
        let mut out = Vec::new();
        validate_non_special_ip("127.0.0.1", "x", &mut out);
        validate_non_special_ip("fe80::1", "y", &mut out);
        validate_cidr("10.0.0.0/33", "z", &mut out);
        assert_eq!(out.len(), 3);
        assert_eq!(port_name_problems("http"), Vec::<&str>::new());
        assert_eq!(port_name_problems("80").len(), 1);
    }
}
