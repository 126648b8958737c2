//! Structural checks of the documents, against what kubectl and kube-openapi rely on.

use crate::common;

use std::collections::{BTreeSet, HashSet};
use std::sync::OnceLock;
use std::time::Instant;

use keelson_apimachinery::patch::schema::{list_meta, ListMeta, Root};
use keelson_openapi::OpenApi;
use keelson_resources::ResourceType;
use serde_json::Value;

fn docs() -> &'static OpenApi {
    static DOCS: OnceLock<OpenApi> = OnceLock::new();
    DOCS.get_or_init(|| {
        let start = Instant::now();
        let docs = OpenApi::build(&common::resources());
        if let Some(dir) = std::env::var_os("KEELSON_OPENAPI_DUMP") {
            // For external validators: v2.json, v2.pb, v3.json and v3/<path with __>.json.
            let dir = std::path::PathBuf::from(dir);
            std::fs::create_dir_all(dir.join("v3")).unwrap();
            std::fs::write(dir.join("v2.json"), docs.v2_json()).unwrap();
            std::fs::write(dir.join("v2.pb"), docs.v2_protobuf()).unwrap();
            std::fs::write(dir.join("v3.json"), docs.v3_index_json()).unwrap();
            for p in docs.v3_paths() {
                let name = format!("{}.json", p.replace('/', "__"));
                std::fs::write(dir.join("v3").join(name), docs.v3_group_version_json(p).unwrap()).unwrap();
            }
        }
        eprintln!(
            "built in {:?}: v2 {} bytes JSON, {} bytes protobuf; v3 index {} bytes; {} v3 documents, {} bytes in all",
            start.elapsed(),
            docs.v2_json().len(),
            docs.v2_protobuf().len(),
            docs.v3_index_json().len(),
            docs.v3_paths().count(),
            docs.v3_paths().map(|p| docs.v3_group_version_json(p).unwrap().len()).sum::<usize>(),
        );
        docs
    })
}

fn v2() -> Value {
    serde_json::from_slice(&docs().v2_json()).expect("v2 parses")
}

fn v3(path: &str) -> Value {
    serde_json::from_slice(
        &docs()
            .v3_group_version_json(path)
            .expect("v3 document exists"),
    )
    .expect("v3 parses")
}

fn doc_key(r: &ResourceType) -> String {
    if r.group.is_empty() {
        format!("api/{}", r.version)
    } else {
        format!("apis/{}/{}", r.group, r.version)
    }
}

fn gvk_matches(v: &Value, r: &ResourceType) -> bool {
    v["group"] == r.group && v["version"] == r.version && v["kind"] == r.kind
}

/// The definition carrying the kind's GVK, by name, in `definitions` or `components.schemas`.
fn definition_for<'a>(defs: &'a Value, r: &ResourceType) -> Option<(&'a String, &'a Value)> {
    defs.as_object()?.iter().find(|(_, d)| {
        d["x-kubernetes-group-version-kind"]
            .as_array()
            .is_some_and(|l| l.iter().any(|g| gvk_matches(g, r)))
    })
}

/// The PATCH operations of the kind (main resource and status), across paths.
fn patch_ops<'a>(paths: &'a Value, r: &ResourceType) -> Vec<&'a Value> {
    paths
        .as_object()
        .unwrap()
        .values()
        .filter_map(|item| item.get("patch"))
        .filter(|op| gvk_matches(&op["x-kubernetes-group-version-kind"], r))
        .collect()
}

#[test]
fn documents_parse() {
    let v2 = v2();
    assert_eq!(v2["swagger"], "2.0");
    assert!(v2["definitions"].as_object().unwrap().len() > 50);
    let index: Value = serde_json::from_slice(&docs().v3_index_json()).unwrap();
    for (key, entry) in index["paths"].as_object().unwrap() {
        let doc = v3(key);
        assert_eq!(doc["openapi"], "3.0.0", "{key}");
        let url = entry["serverRelativeURL"].as_str().unwrap();
        assert_eq!(
            url,
            format!("/openapi/v3/{key}?hash={}", docs().v3_hash(key).unwrap())
        );
    }
    assert!(!docs().v2_protobuf().is_empty());
}

#[test]
fn every_resource_has_a_definition_and_a_patch_with_field_validation() {
    let v2 = v2();
    let shared = &v2["parameters"];
    for r in common::resources() {
        let (name, def) = definition_for(&v2["definitions"], r)
            .unwrap_or_else(|| panic!("no v2 definition for {r:?}"));
        assert_eq!(def["type"], "object", "{name}");
        let ops = patch_ops(&v2["paths"], r);
        if r.kind.ends_with("Review") {
            assert!(ops.is_empty(), "{r:?} is create-only");
            continue;
        }
        assert!(!ops.is_empty(), "no v2 PATCH for {r:?}");
        for op in ops {
            let names: Vec<&str> = op["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| match p["$ref"].as_str() {
                    Some(r) => shared[r.trim_start_matches("#/parameters/")]["name"]
                        .as_str()
                        .unwrap(),
                    None => p["name"].as_str().unwrap(),
                })
                .collect();
            for want in ["fieldValidation", "dryRun", "fieldManager", "force"] {
                assert!(names.contains(&want), "{r:?} PATCH lacks {want}: {names:?}");
            }
            assert_eq!(op["x-kubernetes-action"], "patch");
        }

        let doc = v3(&doc_key(r));
        let (v3_name, _) = definition_for(&doc["components"]["schemas"], r).expect("v3 definition");
        assert_eq!(v3_name, name);
        let ops = patch_ops(&doc["paths"], r);
        assert!(!ops.is_empty(), "no v3 PATCH for {r:?}");
        for op in ops {
            let names: Vec<&str> = op["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["name"].as_str().unwrap())
                .collect();
            assert!(names.contains(&"fieldValidation"), "{r:?}: {names:?}");
            let content = op["requestBody"]["content"].as_object().unwrap();
            assert!(content.contains_key("application/merge-patch+json"));
        }
    }
}

#[test]
fn explain_finds_the_kind_through_its_list_or_item_path() {
    // kubectl explain (v3) looks for the GVK on <prefix>/<version>[/namespaces/{namespace}]/<plural>[/{name}].
    for r in common::resources() {
        let doc = v3(&doc_key(r));
        let prefix = if r.group.is_empty() {
            "/api".to_string()
        } else {
            format!("/apis/{}", r.group)
        };
        let candidates = [
            format!("{prefix}/{}/{}", r.version, r.plural),
            format!("{prefix}/{}/{}/{{name}}", r.version, r.plural),
            format!(
                "{prefix}/{}/namespaces/{{namespace}}/{}",
                r.version, r.plural
            ),
            format!(
                "{prefix}/{}/namespaces/{{namespace}}/{}/{{name}}",
                r.version, r.plural
            ),
        ];
        let found = candidates.iter().any(|p| {
            ["get", "post", "put", "patch", "delete"]
                .iter()
                .any(|m| gvk_matches(&doc["paths"][p][m]["x-kubernetes-group-version-kind"], r))
        });
        assert!(found, "{r:?}");
    }
}

#[test]
fn pod_containers_resolve_to_container() {
    let v2 = v2();
    let defs = &v2["definitions"];
    let spec_ref = defs["io.k8s.api.core.v1.Pod"]["properties"]["spec"]["$ref"]
        .as_str()
        .unwrap();
    let spec = &defs[spec_ref.trim_start_matches("#/definitions/")];
    let containers = &spec["properties"]["containers"];
    assert_eq!(containers["type"], "array");
    assert_eq!(
        containers["items"]["$ref"],
        "#/definitions/io.k8s.api.core.v1.Container"
    );
    assert!(defs["io.k8s.api.core.v1.Container"]["properties"]["image"]["description"].is_string());

    let meta = list_meta(Some(Root::Pod), &["spec", "containers"]);
    if let Some(key) = meta.smp_merge_key.filter(|k| !k.is_empty()) {
        assert_eq!(containers["x-kubernetes-patch-merge-key"], key);
        assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
        let v3 = v3("api/v1");
        let c3 =
            &v3["components"]["schemas"]["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
        assert_eq!(c3["x-kubernetes-patch-merge-key"], key);
        assert_eq!(
            c3["items"]["$ref"],
            "#/components/schemas/io.k8s.api.core.v1.Container"
        );
    } else if meta == ListMeta::ATOMIC {
        // Merge rules not in the table (yet): lists carry no merge extensions, so kubectl
        // computes replace-the-list patches, which is what the server then does.
        assert!(containers.get("x-kubernetes-patch-merge-key").is_none());
    }
}

#[test]
fn v3_index_lists_every_group_version() {
    let index: Value = serde_json::from_slice(&docs().v3_index_json()).unwrap();
    let paths = index["paths"].as_object().unwrap();
    for r in common::resources() {
        assert!(paths.contains_key(&doc_key(r)), "{r:?}");
        if !r.group.is_empty() {
            assert!(paths.contains_key(&format!("apis/{}", r.group)));
        }
    }
    for key in ["api", "apis", "api/v1"] {
        assert!(paths.contains_key(key), "{key}");
    }
    assert_eq!(docs().v3_paths().count(), paths.len());
    assert!(docs().v3_group_version_json("/api/v1").is_some());
    assert!(docs().v3_group_version_json("apis/nope/v1").is_none());
}

#[test]
fn hashes_are_stable() {
    let again = OpenApi::build(&common::resources());
    for p in docs().v3_paths() {
        assert_eq!(docs().v3_hash(p), again.v3_hash(p), "{p}");
        assert_eq!(docs().v3_hash(p).unwrap().len(), 128);
    }
    assert_eq!(docs().v2_json(), again.v2_json());
    assert_eq!(docs().v2_protobuf(), again.v2_protobuf());
}

fn walk(v: &Value, f: &mut dyn FnMut(&serde_json::Map<String, Value>)) {
    match v {
        Value::Object(m) => {
            f(m);
            m.values().for_each(|v| walk(v, f));
        }
        Value::Array(a) => a.iter().for_each(|v| walk(v, f)),
        _ => {}
    }
}

#[test]
fn references_resolve_and_schemas_suit_kube_openapi() {
    let v2 = v2();
    let defs = v2["definitions"].as_object().unwrap();
    walk(&v2, &mut |m| {
        if let Some(Value::String(r)) = m.get("$ref") {
            if let Some(name) = r.strip_prefix("#/definitions/") {
                assert!(defs.contains_key(name), "dangling {r}");
                // kube-openapi's proto parser rejects these beside a reference.
                assert!(
                    !m.contains_key("type") && !m.contains_key("properties"),
                    "{r}"
                );
            } else {
                assert!(r.starts_with("#/parameters/"), "{r}");
                assert!(
                    v2["parameters"][r.trim_start_matches("#/parameters/")].is_object(),
                    "{r}"
                );
            }
        }
    });
    fn check(name: &str, s: &Value) {
        let m = s
            .as_object()
            .unwrap_or_else(|| panic!("{name}: schema not an object"));
        if m.get("type") == Some(&Value::String("array".into())) {
            assert!(
                m.get("items").is_some_and(Value::is_object),
                "{name}: array without one items schema"
            );
        }
        assert!(
            !m.get("type").is_some_and(Value::is_array),
            "{name}: several types"
        );
        assert!(
            !m.contains_key("oneOf") && !m.contains_key("anyOf"),
            "{name}"
        );
        if let Some(Value::Object(props)) = m.get("properties") {
            props.values().for_each(|p| check(name, p));
        }
        if let Some(items) = m.get("items") {
            check(name, items);
        }
        if let Some(ap @ Value::Object(_)) = m.get("additionalProperties") {
            check(name, ap);
        }
    }
    for (name, def) in defs {
        check(name, def);
    }
    for key in docs().v3_paths() {
        let doc = v3(key);
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        walk(&doc, &mut |m| {
            if let Some(Value::String(r)) = m.get("$ref") {
                let name = r
                    .strip_prefix("#/components/schemas/")
                    .unwrap_or_else(|| panic!("{key}: {r}"));
                assert!(schemas.contains_key(name), "{key}: dangling {r}");
            }
        });
    }
}

#[test]
fn operation_ids_unique() {
    let v2 = v2();
    let mut seen = HashSet::new();
    for item in v2["paths"].as_object().unwrap().values() {
        for (method, op) in item.as_object().unwrap() {
            if method == "parameters" {
                continue;
            }
            let id = op["operationId"].as_str().unwrap();
            assert!(seen.insert(id.to_string()), "duplicate operationId {id}");
        }
    }
    assert!(seen.contains("patchCoreV1NamespacedPod"));
    assert!(seen.contains("listAppsV1DeploymentForAllNamespaces"));
    assert!(seen.contains("replaceAppsV1NamespacedDeploymentScale"));
    assert!(seen.contains("createCoreV1NamespacedPodEviction"));
}

#[test]
fn subresource_kinds() {
    let v2 = v2();
    let paths = &v2["paths"];
    let scale = &paths["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"]["patch"];
    assert_eq!(scale["x-kubernetes-group-version-kind"]["kind"], "Scale");
    assert_eq!(
        scale["responses"]["200"]["schema"]["$ref"],
        "#/definitions/io.k8s.api.autoscaling.v1.Scale"
    );
    let eviction = &paths["/api/v1/namespaces/{namespace}/pods/{name}/eviction"]["post"];
    assert_eq!(
        eviction["x-kubernetes-group-version-kind"]["group"],
        "policy"
    );
    assert_eq!(
        eviction["parameters"][0]["schema"]["$ref"],
        "#/definitions/io.k8s.api.policy.v1.Eviction"
    );
    let scale_def = &v2["definitions"]["io.k8s.api.autoscaling.v1.Scale"];
    assert_eq!(
        scale_def["x-kubernetes-group-version-kind"][0]["kind"],
        "Scale"
    );
    // The apps/v1 v3 document carries Scale too, as Kubernetes' does.
    let apps = v3("apis/apps/v1");
    assert!(apps["components"]["schemas"]["io.k8s.api.autoscaling.v1.Scale"].is_object());
    // Strategic merge patch is offered for known kinds only.
    let pod_patch = &paths["/api/v1/namespaces/{namespace}/pods/{name}"]["patch"]["consumes"];
    assert!(pod_patch
        .as_array()
        .unwrap()
        .contains(&"application/strategic-merge-patch+json".into()));
    let widget_patch = &paths
        ["/apis/example.keelson.io/v1alpha1/namespaces/{namespace}/widgets/{name}"]["patch"]
        ["consumes"];
    assert!(!widget_patch
        .as_array()
        .unwrap()
        .contains(&"application/strategic-merge-patch+json".into()));
}

#[test]
fn meta_types_present() {
    let v2 = v2();
    let defs = &v2["definitions"];
    for name in [
        "ObjectMeta",
        "ListMeta",
        "Status",
        "DeleteOptions",
        "WatchEvent",
        "Patch",
        "APIResourceList",
        "APIGroup",
        "APIGroupList",
        "APIVersions",
        "Time",
    ] {
        assert!(
            defs[format!("io.k8s.apimachinery.pkg.apis.meta.v1.{name}")].is_object(),
            "{name}"
        );
    }
    let groups: BTreeSet<&str> = defs["io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions"]
        ["x-kubernetes-group-version-kind"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["group"].as_str().unwrap())
        .collect();
    assert!(groups.contains("") && groups.contains("apps"));
    assert_eq!(
        defs["io.k8s.api.core.v1.PodList"]["properties"]["items"]["items"]["$ref"],
        "#/definitions/io.k8s.api.core.v1.Pod"
    );
    assert_eq!(
        defs["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]["format"],
        "int-or-string"
    );
    let api_v1 = v3("api/v1");
    assert!(
        api_v1["components"]["schemas"]["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]["oneOf"]
            .is_array()
    );
}

#[test]
fn field_patch_strategies() {
    let v2 = v2();
    let defs = &v2["definitions"];
    let strategy = &defs["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]["strategy"];
    assert_eq!(strategy["x-kubernetes-patch-strategy"], "retainKeys");
    assert!(strategy["$ref"].is_string());
    let volumes = &defs["io.k8s.api.core.v1.PodSpec"]["properties"]["volumes"];
    if volumes["x-kubernetes-patch-merge-key"] == "name" {
        assert_eq!(volumes["x-kubernetes-patch-strategy"], "merge,retainKeys");
    }
}
