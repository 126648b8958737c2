//! Discovery documents: `/api`, `/apis`, per-group-version resource lists, and the
//! aggregated discovery (`apidiscovery.k8s.io/v2` and `v2beta1`) that kubectl 1.27+
//! asks for first.

use axum::http::{header, HeaderMap};
use keelson_resources::{ResourceType, Subresource};
use serde_json::{json, Value};

const VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// What may be done to a resource: everything, or only ask (reviews).
fn verbs(rt: &ResourceType) -> &'static [&'static str] {
    if rt.strategy.create_only() {
        &["create"]
    } else if !rt.strategy.delete_collection() {
        &[
            "create", "delete", "get", "list", "patch", "update", "watch",
        ]
    } else {
        VERBS
    }
}

fn sub_verbs(s: Subresource) -> &'static [&'static str] {
    match s {
        Subresource::Status | Subresource::Scale | Subresource::Approval => {
            &["get", "patch", "update"]
        }
        Subresource::Binding | Subresource::Eviction | Subresource::Token => &["create"],
        Subresource::Log => &["get"],
        Subresource::Exec => &["create", "get"],
        Subresource::Finalize => &["update"],
        Subresource::Proxy => &["create", "delete", "get", "patch", "update"],
    }
}

/// The kind a subresource (at URL segment `path`) answers with: (group, version, kind),
/// as kube-apiserver lists them (`pods/exec` is `PodExecOptions`, `nodes/proxy`
/// `NodeProxyOptions`).
fn sub_kind(
    rt: &ResourceType,
    s: Subresource,
    path: &str,
) -> (&'static str, &'static str, &'static str) {
    match s {
        Subresource::Exec => (
            "",
            "v1",
            match path {
                "attach" => "PodAttachOptions",
                "portforward" => "PodPortForwardOptions",
                _ => "PodExecOptions",
            },
        ),
        Subresource::Proxy => (
            "",
            "v1",
            match rt.plural {
                "nodes" => "NodeProxyOptions",
                "services" => "ServiceProxyOptions",
                _ => "PodProxyOptions",
            },
        ),
        Subresource::Scale => ("autoscaling", "v1", "Scale"),
        Subresource::Binding => ("", "v1", "Binding"),
        Subresource::Eviction => ("policy", "v1", "Eviction"),
        Subresource::Token => ("authentication.k8s.io", "v1", "TokenRequest"),
        Subresource::Log => ("", "v1", "Pod"),
        Subresource::Status | Subresource::Finalize | Subresource::Approval => {
            (rt.group, rt.version, rt.kind)
        }
    }
}

/// Each subresource of `rt` with each URL segment it answers, in path order.
fn subresource_paths(rt: &ResourceType) -> impl Iterator<Item = (Subresource, &'static str)> {
    let mut all: Vec<(Subresource, &'static str)> = rt
        .subresources
        .iter()
        .flat_map(|s| s.paths().iter().map(move |p| (*s, *p)))
        .collect();
    all.sort_by_key(|(_, p)| *p);
    all.into_iter()
}

/// All group/versions served, core first; custom resources' after the built-in ones,
/// each custom group's versions in Kubernetes' version priority (the first is the
/// preferred one).
pub fn group_versions() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for rt in keelson_resources::kinds::ALL {
        if !out.contains(&(rt.group, rt.version)) {
            out.push((rt.group, rt.version));
        }
    }
    let mut custom: Vec<(&str, &str)> = Vec::new();
    for rt in keelson_resources::custom::served() {
        if !out.contains(&(rt.group, rt.version)) && !custom.contains(&(rt.group, rt.version)) {
            custom.push((rt.group, rt.version));
        }
    }
    custom.sort_by(|a, b| {
        a.0.cmp(b.0)
            .then_with(|| version_priority(a.1).cmp(&version_priority(b.1)))
    });
    out.extend(custom);
    out
}

/// apimachinery's `CompareKubeAwareVersionStrings` as a sort key: GA before beta
/// before alpha, higher numbers first, then versions that do not look like
/// Kubernetes versions, by name.
fn version_priority(v: &str) -> (u8, i64, i64, String) {
    let parsed = v.strip_prefix('v').and_then(|rest| {
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let major: i64 = digits.parse().ok()?;
        let tail = &rest[digits.len()..];
        if tail.is_empty() {
            return Some((0, -major, 0));
        }
        for (level, word) in [(1u8, "beta"), (2, "alpha")] {
            if let Some(n) = tail.strip_prefix(word) {
                let minor: i64 = n.parse().ok()?;
                return Some((level, -major, -minor));
            }
        }
        None
    });
    match parsed {
        Some((level, major, minor)) => (level, major, minor, String::new()),
        None => (3, 0, 0, v.to_string()),
    }
}

fn resources_of<'a>(
    group: &'a str,
    version: &'a str,
) -> impl Iterator<Item = &'static ResourceType> + 'a {
    keelson_resources::all()
        .into_iter()
        .filter(move |rt| rt.group == group && rt.version == version)
}

pub fn core_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

fn group_doc(group: &str) -> Value {
    let versions: Vec<Value> = group_versions()
        .into_iter()
        .filter(|(g, _)| *g == group)
        .map(|(g, v)| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
        .collect();
    json!({"name": group, "versions": versions, "preferredVersion": versions[0]})
}

pub fn groups() -> Value {
    let mut names: Vec<&str> = Vec::new();
    for (g, _) in group_versions() {
        if !g.is_empty() && !names.contains(&g) {
            names.push(g);
        }
    }
    let groups: Vec<Value> = names.into_iter().map(group_doc).collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

pub fn group(name: &str) -> Option<Value> {
    if name.is_empty() || !group_versions().iter().any(|(g, _)| *g == name) {
        return None;
    }
    let mut doc = group_doc(name);
    doc["kind"] = json!("APIGroup");
    doc["apiVersion"] = json!("v1");
    Some(doc)
}

pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    let mut resources = Vec::new();
    for rt in resources_of(group, version) {
        let mut r = json!({
            "name": rt.plural,
            "singularName": rt.singular,
            "namespaced": rt.namespaced,
            "kind": rt.kind,
            "verbs": verbs(rt),
        });
        if !rt.short_names.is_empty() {
            r["shortNames"] = json!(rt.short_names);
        }
        if !rt.categories.is_empty() {
            r["categories"] = json!(rt.categories);
        }
        resources.push(r);
        for (s, path) in subresource_paths(rt) {
            let (g, v, k) = sub_kind(rt, s, path);
            let mut sr = json!({
                "name": format!("{}/{}", rt.plural, path),
                "singularName": "",
                "namespaced": rt.namespaced,
                "kind": k,
                "verbs": sub_verbs(s),
            });
            if g != rt.group || v != rt.version {
                sr["group"] = json!(g);
                sr["version"] = json!(v);
            }
            resources.push(sr);
        }
    }
    if resources.is_empty() {
        return None;
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
    )
}

/// Which aggregated discovery version the client accepts, if any.
pub fn aggregated_version(headers: &HeaderMap) -> Option<&'static str> {
    let accept = headers.get(header::ACCEPT)?.to_str().ok()?;
    for clause in accept.split(',') {
        if !clause.contains("as=APIGroupDiscoveryList") || !clause.contains("g=apidiscovery.k8s.io")
        {
            continue;
        }
        if clause.contains("v=v2beta1") {
            return Some("v2beta1");
        }
        if clause.contains("v=v2") {
            return Some("v2");
        }
    }
    None
}

/// The aggregated discovery document for `/api` (core) or `/apis` (named groups).
pub fn aggregated(core: bool, version: &str) -> Value {
    let mut items = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for (g, _) in group_versions() {
        if core != g.is_empty() || seen.contains(&g) {
            continue;
        }
        seen.push(g);
        let versions: Vec<Value> = group_versions()
            .into_iter()
            .filter(|(gg, _)| *gg == g)
            .map(|(_, v)| {
                let resources: Vec<Value> = resources_of(g, v).map(aggregated_resource).collect();
                json!({"version": v, "resources": resources, "freshness": "Current"})
            })
            .collect();
        items.push(
            json!({"metadata": {"name": g, "creationTimestamp": null}, "versions": versions}),
        );
    }
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": format!("apidiscovery.k8s.io/{version}"),
        "metadata": {},
        "items": items,
    })
}

/// `/api`'s and `/apis`'s aggregated documents in one (core group first): what the gRPC
/// `Discover` call answers, so components see exactly what REST clients see.
pub fn aggregated_all(version: &str) -> Value {
    let mut doc = aggregated(true, version);
    let named = aggregated(false, version);
    if let (Some(items), Some(more)) = (doc["items"].as_array_mut(), named["items"].as_array()) {
        items.extend(more.iter().cloned());
    }
    doc
}

fn aggregated_resource(rt: &ResourceType) -> Value {
    let mut r = json!({
        "resource": rt.plural,
        "responseKind": {"group": rt.group, "version": rt.version, "kind": rt.kind},
        "scope": if rt.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": rt.singular,
        "verbs": verbs(rt),
    });
    if !rt.short_names.is_empty() {
        r["shortNames"] = json!(rt.short_names);
    }
    if !rt.categories.is_empty() {
        r["categories"] = json!(rt.categories);
    }
    let subs: Vec<Value> = subresource_paths(rt)
        .map(|(s, path)| {
            let (g, v, k) = sub_kind(rt, s, path);
            json!({"subresource": path, "responseKind": {"group": g, "version": v, "kind": k}, "verbs": sub_verbs(s)})
        })
        .collect();
    if !subs.is_empty() {
        r["subresources"] = json!(subs);
    }
    r
}

pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "emulationMajor": "1",
        "emulationMinor": "33",
        "gitVersion": concat!("v1.33.0-keelson.", env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": "rust",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, if cfg!(target_arch = "x86_64") { "amd64" } else { std::env::consts::ARCH }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_resource_list_has_configmaps() {
        let doc = resource_list("", "v1").unwrap();
        assert_eq!(doc["groupVersion"], "v1");
        let names: Vec<&str> = doc["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert!(names.contains(&"configmaps"));
        assert!(resource_list("nope", "v1").is_none());
    }

    #[test]
    fn versions_sort_as_kubernetes_prefers_them() {
        let mut vs = vec!["v1alpha1", "foo", "v1beta1", "v1", "v2beta2", "v2", "v10"];
        vs.sort_by_key(|v| version_priority(v));
        assert_eq!(
            vs,
            ["v10", "v2", "v1", "v2beta2", "v1beta1", "v1alpha1", "foo"]
        );
    }

    #[test]
    fn aggregated_accept_header() {
        let mut h = HeaderMap::new();
        h.insert(
            header::ACCEPT,
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
                .parse()
                .unwrap(),
        );
        assert_eq!(aggregated_version(&h), Some("v2"));
        assert_eq!(aggregated(true, "v2")["items"][0]["metadata"]["name"], "");
    }

    #[test]
    fn aggregated_all_is_core_then_named_groups() {
        let all = aggregated_all("v2");
        let names: Vec<&str> = all["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["metadata"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(names[0], "");
        assert!(names.contains(&"apps") && names.contains(&"apiextensions.k8s.io"));
        assert_eq!(
            names.len(),
            1 + aggregated(false, "v2")["items"].as_array().unwrap().len()
        );
    }
}
