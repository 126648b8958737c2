//! apiextensions.k8s.io/v1 CustomResourceDefinition.
//!
//! Validation follows apiextensions-apiserver's (names as `<plural>.<group>`, exactly
//! one storage version, structural schemas, printer columns, the scale subresource's
//! paths), with its field paths and messages. The apiserver's CRD controller
//! (`keelson-apiserver::crd`) serves what an accepted CRD defines and sets its status;
//! [`definitions`] is what it serves. Deleting a CRD first deletes its objects: the
//! delete leaves the `customresourcecleanup.apiextensions.k8s.io` finalizer and the
//! `Terminating` condition, and the controller removes the finalizer once they are gone.

use crate::custom::{self, schema, Definition, PrinterColumn, VersionSpec};
use crate::strategy::{ScalePaths, Strategy};
use crate::table::Column;
use crate::Subresource;
use crate::{ResourceType, Root, Typed};
use keelson_apimachinery::{validation, Cause};
use serde_json::{json, Value};

pub static RESOURCE: ResourceType = ResourceType {
    group: "apiextensions.k8s.io",
    version: "v1",
    kind: "CustomResourceDefinition",
    plural: "customresourcedefinitions",
    singular: "customresourcedefinition",
    namespaced: false,
    short_names: &["crd", "crds"],
    categories: &["api-extensions"],
    subresources: &[Subresource::Status],
    strategy: &CustomResourceDefinitions,
    typed: Some(Typed::of::<
        k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    >()),
    // Its versions and conditions replace whole; only metadata has keyed lists.
    merge: Some(Root::MetadataOnly),
};

/// The finalizer that keeps a deleted CRD until its objects are gone.
pub const CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";

struct CustomResourceDefinitions;

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn versions(obj: &Value) -> &[Value] {
    obj.pointer("/spec/versions")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn storage_version(obj: &Value) -> Option<&str> {
    versions(obj)
        .iter()
        .find(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
        .and_then(|v| v.get("name").and_then(Value::as_str))
}

/// `Established` or `NamesAccepted` is `True` in the CRD's status.
pub fn condition_true(obj: &Value, type_: &str) -> bool {
    obj.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.get("type").and_then(Value::as_str) == Some(type_)
                    && c.get("status").and_then(Value::as_str) == Some("True")
            })
        })
}

const COLUMN_TYPES: &[&str] = &["boolean", "date", "integer", "number", "string"];
const COLUMN_FORMATS: &[&str] = &[
    "byte",
    "date",
    "date-time",
    "double",
    "float",
    "int32",
    "int64",
    "password",
];

fn simple_json_path(s: &str, path: &str, out: &mut Vec<Cause>) -> bool {
    if s.is_empty() {
        out.push(Cause::invalid(path, &json!(s), "must not be empty"));
        false
    } else if !s.starts_with('.') {
        out.push(Cause::invalid(
            path,
            &json!(s),
            "must be a simple json path starting with .",
        ));
        false
    } else {
        true
    }
}

fn validate_names(names: &Value, path: &str, out: &mut Vec<Cause>) {
    let s = |k: &str| names.get(k).and_then(Value::as_str).unwrap_or("");
    for k in ["plural", "singular"] {
        let v = s(k);
        if !v.is_empty() {
            let errs = validation::dns1035_label(v);
            if !errs.is_empty() {
                out.push(Cause::invalid(
                    format!("{path}.{k}"),
                    &json!(v),
                    errs.join(","),
                ));
            }
        }
    }
    for k in ["kind", "listKind"] {
        let v = s(k);
        if !v.is_empty() {
            let errs = validation::dns1035_label(&v.to_lowercase());
            if !errs.is_empty() {
                out.push(Cause::invalid(
                    format!("{path}.{k}"),
                    &json!(v),
                    format!(
                        "may have mixed case, but should otherwise match: {}",
                        errs.join(",")
                    ),
                ));
            }
        }
    }
    for k in ["shortNames", "categories"] {
        if let Some(list) = names.get(k).and_then(Value::as_array) {
            for (i, item) in list.iter().enumerate() {
                let errs = validation::dns1035_label(item.as_str().unwrap_or(""));
                if !errs.is_empty() {
                    out.push(Cause::invalid(
                        format!("{path}.{k}[{i}]"),
                        item,
                        errs.join(","),
                    ));
                }
            }
        }
    }
    if !s("kind").is_empty() && s("kind") == s("listKind") {
        out.push(Cause::invalid(
            format!("{path}.listKind"),
            &json!(s("listKind")),
            "kind and listKind may not be the same",
        ));
    }
}

fn validate_column(col: &Value, path: &str, out: &mut Vec<Cause>) {
    let s = |k: &str| col.get(k).and_then(Value::as_str).unwrap_or("");
    if s("name").is_empty() {
        out.push(Cause::required(format!("{path}.name")));
    }
    let types = format!("must be one of {}", COLUMN_TYPES.join(","));
    if s("type").is_empty() {
        out.push(Cause::new(
            "FieldValueRequired",
            format!("{path}.type"),
            format!("Required value: {types}"),
        ));
    } else if !COLUMN_TYPES.contains(&s("type")) {
        out.push(Cause::invalid(
            format!("{path}.type"),
            &json!(s("type")),
            types,
        ));
    }
    if !s("format").is_empty() && !COLUMN_FORMATS.contains(&s("format")) {
        out.push(Cause::invalid(
            format!("{path}.format"),
            &json!(s("format")),
            format!("must be one of {}", COLUMN_FORMATS.join(",")),
        ));
    }
    if s("jsonPath").is_empty() {
        out.push(Cause::required(format!("{path}.JSONPath")));
    } else {
        simple_json_path(s("jsonPath"), &format!("{path}.JSONPath"), out);
    }
}

fn validate_scale(scale: &Value, path: &str, out: &mut Vec<Cause>) {
    let s = |k: &str| scale.get(k).and_then(Value::as_str).unwrap_or("");
    for (k, under) in [
        ("specReplicasPath", ".spec."),
        ("statusReplicasPath", ".status."),
    ] {
        let p = format!("{path}.scale.{k}");
        if s(k).is_empty() {
            out.push(Cause::required(p));
        } else if simple_json_path(s(k), &p, out) && !s(k).starts_with(under) {
            out.push(Cause::invalid(
                p,
                &json!(s(k)),
                format!(
                    "should be a json path under {}",
                    under.trim_end_matches('.')
                ),
            ));
        }
    }
    let sel = s("labelSelectorPath");
    let p = format!("{path}.scale.labelSelectorPath");
    if !sel.is_empty()
        && simple_json_path(sel, &p, out)
        && !sel.starts_with(".spec.")
        && !sel.starts_with(".status.")
    {
        out.push(Cause::invalid(
            p,
            &json!(sel),
            "should be a json path under either .spec or .status",
        ));
    }
}

fn protected_group(group: &str) -> bool {
    ["k8s.io", "kubernetes.io"]
        .iter()
        .any(|d| group == *d || group.ends_with(&format!(".{d}")))
}

impl Strategy for CustomResourceDefinitions {
    fn tracks_generation(&self) -> bool {
        true
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        let stored: Vec<&str> = storage_version(obj).into_iter().collect();
        obj["status"] = json!({
            "acceptedNames": {"kind": "", "plural": ""},
            "conditions": [],
            "storedVersions": stored,
        });
    }

    fn prepare_for_update(&self, new: &mut Value, _old: &Value) {
        // Every version ever marked for storage stays listed until a client removes
        // it through /status (after migrating the objects).
        let Some(storage) = storage_version(new).map(String::from) else {
            return;
        };
        if !new.get("status").is_some_and(Value::is_object) {
            new["status"] = json!({});
        }
        let listed = new["status"]["storedVersions"]
            .as_array()
            .is_some_and(|a| a.iter().any(|v| v == storage.as_str()));
        if !listed {
            match new["status"]["storedVersions"].as_array_mut() {
                Some(a) => a.push(json!(storage)),
                None => new["status"]["storedVersions"] = json!([storage]),
            }
        }
    }

    fn default(&self, obj: &mut Value) {
        let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
            return;
        };
        if let Some(names) = spec.get_mut("names").and_then(Value::as_object_mut) {
            let kind = names
                .get("kind")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            if !kind.is_empty() {
                names
                    .entry("singular")
                    .or_insert_with(|| json!(kind.to_lowercase()));
                names
                    .entry("listKind")
                    .or_insert_with(|| json!(format!("{kind}List")));
            }
        }
        spec.entry("conversion")
            .or_insert_with(|| json!({"strategy": "None"}));
    }

    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut out = Vec::new();
        let spec = obj.get("spec").cloned().unwrap_or(json!({}));
        let group = str_at(&spec, "/group");
        let plural = str_at(&spec, "/names/plural");
        let name = str_at(obj, "/metadata/name");
        if name != format!("{plural}.{group}") {
            out.push(Cause::invalid(
                "metadata.name",
                &json!(name),
                "must be spec.names.plural+\".\"+spec.group",
            ));
        }
        if group.is_empty() {
            out.push(Cause::required("spec.group"));
        } else if !validation::dns1123_subdomain(group).is_empty() {
            out.push(Cause::invalid(
                "spec.group",
                &json!(group),
                validation::dns1123_subdomain(group).join(","),
            ));
        } else if group.split('.').count() < 2 {
            out.push(Cause::invalid(
                "spec.group",
                &json!(group),
                "should be a domain with at least one dot",
            ));
        }
        if protected_group(group)
            && obj
                .pointer("/metadata/annotations/api-approved.kubernetes.io")
                .is_none()
        {
            out.push(Cause::new(
                "FieldValueRequired",
                "metadata.annotations[api-approved.kubernetes.io]",
                "Required value: protected groups must have approval annotation \"api-approved.kubernetes.io\", see https://github.com/kubernetes/enhancements/pull/1111",
            ));
        }
        match str_at(&spec, "/scope") {
            "" => out.push(Cause::required("spec.scope")),
            "Cluster" | "Namespaced" => {}
            other => out.push(Cause::not_supported(
                "spec.scope",
                &json!(other),
                &["Cluster", "Namespaced"],
            )),
        }
        let vs = versions(obj);
        if vs.is_empty() {
            out.push(Cause::required("spec.versions"));
        }
        let mut seen = Vec::new();
        let mut unique = true;
        // Kubernetes validates its internal version, where a schema every version
        // shares is `spec.validation`: errors in it are reported there.
        let shared = vs
            .first()
            .and_then(|v| v.get("schema"))
            .filter(|first| vs.iter().all(|v| v.get("schema") == Some(first)));
        if let Some(s) = shared.and_then(|s| s.get("openAPIV3Schema")) {
            out.extend(schema::check(s, "spec.validation.openAPIV3Schema"));
        }
        for (i, v) in vs.iter().enumerate() {
            let vp = format!("spec.versions[{i}]");
            let vname = str_at(v, "/name");
            if seen.contains(&vname) {
                unique = false;
            }
            seen.push(vname);
            let errs = validation::dns1035_label(vname);
            if !errs.is_empty() {
                out.push(Cause::invalid(
                    format!("{vp}.name"),
                    &json!(vname),
                    errs.join(","),
                ));
            }
            match v.pointer("/schema/openAPIV3Schema") {
                Some(_) if shared.is_some() => {}
                Some(s) => out.extend(schema::check(s, &format!("{vp}.schema.openAPIV3Schema"))),
                None => out.push(Cause::new(
                    "FieldValueRequired",
                    format!("{vp}.schema.openAPIV3Schema"),
                    "Required value: schemas are required",
                )),
            }
            if let Some(scale) = v.pointer("/subresources/scale") {
                validate_scale(scale, &format!("{vp}.subresources"), &mut out);
            }
            if let Some(cols) = v.get("additionalPrinterColumns").and_then(Value::as_array) {
                for (j, c) in cols.iter().enumerate() {
                    validate_column(c, &format!("{vp}.additionalPrinterColumns[{j}]"), &mut out);
                }
            }
        }
        let storage_count = vs
            .iter()
            .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
            .count();
        let versions_value = spec.get("versions").cloned().unwrap_or(json!([]));
        if !unique {
            out.push(Cause::invalid(
                "spec.versions",
                &versions_value,
                "must contain unique version names",
            ));
        }
        if !vs.is_empty() && storage_count != 1 {
            out.push(Cause::invalid(
                "spec.versions",
                &versions_value,
                "must have exactly one version marked as storage version",
            ));
        }
        if !vs.is_empty()
            && !vs
                .iter()
                .any(|v| v.get("served").and_then(Value::as_bool) == Some(true))
        {
            out.push(Cause::invalid(
                "spec.versions",
                &versions_value,
                "must have at least one served version",
            ));
        }
        for k in ["plural", "singular", "kind", "listKind"] {
            if str_at(&spec, &format!("/names/{k}")).is_empty() {
                out.push(Cause::required(format!("spec.names.{k}")));
            }
        }
        if let Some(names) = spec.get("names") {
            validate_names(names, "spec.names", &mut out);
        }
        match str_at(&spec, "/conversion/strategy") {
            "" | "None" => {}
            "Webhook" => out.push(Cause::forbidden(
                "spec.conversion.strategy",
                "conversion webhooks are not supported by this server yet",
            )),
            other => out.push(Cause::not_supported(
                "spec.conversion.strategy",
                &json!(other),
                &["None", "Webhook"],
            )),
        }
        if spec.get("preserveUnknownFields").and_then(Value::as_bool) == Some(true) {
            out.push(Cause::invalid(
                "spec.preserveUnknownFields",
                &json!(true),
                "cannot set to true, set x-preserve-unknown-fields to true in spec.versions[*].schema instead",
            ));
        }
        if let Some(accepted) = obj.pointer("/status/acceptedNames") {
            validate_names(accepted, "status.acceptedNames", &mut out);
        }
        out
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        let mut out = Vec::new();
        let mut immutable = vec![
            ("/spec/group", "spec.group"),
            ("/spec/names/plural", "spec.names.plural"),
        ];
        if condition_true(old, "Established") {
            immutable.push(("/spec/scope", "spec.scope"));
            immutable.push(("/spec/names/kind", "spec.names.kind"));
        }
        for (ptr, path) in immutable {
            let n = new.pointer(ptr).cloned().unwrap_or(Value::Null);
            if Some(&n) != old.pointer(ptr) {
                out.push(Cause::immutable(path, &n));
            }
        }
        out
    }

    fn deletion_blocked(&self, obj: &Value) -> bool {
        // The first delete marks the CRD and leaves the cleanup finalizer; the CRD
        // controller removes it once the objects are gone.
        obj.pointer("/metadata/deletionTimestamp")
            .is_none_or(Value::is_null)
    }

    fn mark_deleting(&self, obj: &mut Value) {
        let m = keelson_apimachinery::meta::metadata_mut(obj);
        let fins = m.entry("finalizers").or_insert_with(|| json!([]));
        if let Some(a) = fins.as_array_mut() {
            if !a.iter().any(|f| f == CLEANUP_FINALIZER) {
                a.push(json!(CLEANUP_FINALIZER));
            }
        }
        set_condition(
            obj,
            "Terminating",
            "True",
            "InstanceDeletionPending",
            "CustomResourceDefinition marked for deletion; CustomResource deletion will begin soon",
        );
    }
}

/// Set one status condition, keeping its transition time when its status is unchanged.
/// Returns whether anything changed.
pub fn set_condition(
    obj: &mut Value,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
) -> bool {
    if !obj.get("status").is_some_and(Value::is_object) {
        obj["status"] = json!({});
    }
    if !obj["status"]["conditions"].is_array() {
        obj["status"]["conditions"] = json!([]);
    }
    let conds = obj["status"]["conditions"]
        .as_array_mut()
        .expect("made an array above");
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    match conds
        .iter_mut()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(type_))
    {
        Some(c) => {
            let same = c["status"] == status && c["reason"] == reason && c["message"] == message;
            if same {
                return false;
            }
            if c["status"] != status {
                c["lastTransitionTime"] = json!(now);
            }
            c["status"] = json!(status);
            c["reason"] = json!(reason);
            c["message"] = json!(message);
        }
        None => conds.push(json!({
            "type": type_, "status": status, "lastTransitionTime": now,
            "reason": reason, "message": message,
        })),
    }
    true
}

fn column(c: &Value) -> PrinterColumn {
    let s = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or("");
    let path = s("jsonPath").to_string();
    let description = if s("description").is_empty() {
        format!("Custom resource definition column (in JSONPath format): {path}")
    } else {
        s("description").to_string()
    };
    PrinterColumn {
        column: Column {
            name: custom::intern(s("name")),
            type_: custom::intern(s("type")),
            format: custom::intern(s("format")),
            description: custom::intern(&description),
            priority: c.get("priority").and_then(Value::as_i64).unwrap_or(0) as i32,
        },
        json_path: path,
    }
}

/// What a CRD serves: one [`Definition`] per served version, with the names it has
/// been granted (`status.acceptedNames`).
pub fn definitions(crd: &Value) -> Vec<Definition> {
    let spec = crd.get("spec").cloned().unwrap_or(json!({}));
    let accepted = crd
        .pointer("/status/acceptedNames")
        .cloned()
        .unwrap_or(json!({}));
    let names_of = |k: &str| keelson_apimachinery::meta::path_strings(&accepted, k);
    let group = str_at(&spec, "/group").to_string();
    let storage = storage_version(crd).unwrap_or("").to_string();
    let all = versions(crd);
    all.iter()
        .filter(|v| v.get("served").and_then(Value::as_bool) == Some(true))
        .map(|v| {
            let version = str_at(v, "/name").to_string();
            let scale = v.pointer("/subresources/scale").map(|s| ScalePaths {
                spec_replicas: str_at(s, "/specReplicasPath").to_string(),
                status_replicas: str_at(s, "/statusReplicasPath").to_string(),
                label_selector: str_at(s, "/labelSelectorPath").to_string(),
            });
            let status = v.pointer("/subresources/status").is_some();
            let deprecation =
                (v.get("deprecated").and_then(Value::as_bool) == Some(true)).then(|| {
                    match v.get("deprecationWarning").and_then(Value::as_str) {
                        Some(w) => w.to_string(),
                        None => format!(
                            "{group}/{version} {} is deprecated",
                            str_at(&accepted, "/kind")
                        ),
                    }
                });
            Definition {
                group: group.clone(),
                version: version.clone(),
                kind: str_at(&accepted, "/kind").to_string(),
                plural: str_at(&accepted, "/plural").to_string(),
                singular: str_at(&accepted, "/singular").to_string(),
                namespaced: str_at(&spec, "/scope") == "Namespaced",
                short_names: names_of("shortNames"),
                categories: names_of("categories"),
                status,
                scale: scale.is_some(),
                spec: VersionSpec {
                    api_version: format!("{group}/{version}"),
                    storage_api_version: format!("{group}/{storage}"),
                    schema: v
                        .pointer("/schema/openAPIV3Schema")
                        .map(schema::Schema::parse),
                    columns: v
                        .get("additionalPrinterColumns")
                        .and_then(Value::as_array)
                        .map(|cs| cs.iter().map(column).collect())
                        .unwrap_or_default(),
                    scale,
                    status,
                    terminating: condition_true(crd, "Terminating"),
                    deprecation,
                    list_kind: str_at(&accepted, "/listKind").to_string(),
                    openapi_schema: v.pointer("/schema/openAPIV3Schema").cloned(),
                },
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crd() -> Value {
        json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.example.com"},
            "spec": {
                "group": "example.com", "scope": "Namespaced",
                "names": {"plural": "widgets", "kind": "Widget", "shortNames": ["wd"]},
                "versions": [
                    {"name": "v1", "served": true, "storage": true,
                     "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                         "spec": {"type": "object", "properties": {"replicas": {"type": "integer", "default": 1}}},
                         "status": {"type": "object", "properties": {"replicas": {"type": "integer"}}}}}},
                     "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas"}},
                     "additionalPrinterColumns": [{"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"}]},
                    {"name": "v1beta1", "served": true, "storage": false, "deprecated": true,
                     "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}
                ]
            }
        })
    }

    fn shown(obj: &Value) -> Vec<String> {
        let mut o = obj.clone();
        RESOURCE.strategy.default(&mut o);
        RESOURCE
            .strategy
            .validate(&o)
            .iter()
            .map(Cause::display)
            .collect()
    }

    #[test]
    fn a_good_crd_is_defaulted_and_valid() {
        let mut o = crd();
        RESOURCE.strategy.default(&mut o);
        assert_eq!(o["spec"]["names"]["singular"], "widget");
        assert_eq!(o["spec"]["names"]["listKind"], "WidgetList");
        assert_eq!(o["spec"]["conversion"]["strategy"], "None");
        assert!(shown(&crd()).is_empty(), "{:?}", shown(&crd()));
        RESOURCE.strategy.prepare_for_create(&mut o);
        assert_eq!(o["status"]["storedVersions"], json!(["v1"]));
    }

    #[test]
    fn names_versions_and_scope_are_checked() {
        let mut bad = crd();
        bad["metadata"]["name"] = json!("widgets");
        bad["spec"]["scope"] = json!("Everywhere");
        bad["spec"]["versions"][1]["storage"] = json!(true);
        bad["spec"]["versions"][0]["additionalPrinterColumns"][0]["type"] = json!("int");
        bad["spec"]["versions"][0]["subresources"]["scale"]["specReplicasPath"] =
            json!(".status.x");
        let got = shown(&bad);
        assert!(got.contains(&"metadata.name: Invalid value: \"widgets\": must be spec.names.plural+\".\"+spec.group".to_string()), "{got:?}");
        assert!(got.contains(&"spec.scope: Unsupported value: \"Everywhere\": supported values: \"Cluster\", \"Namespaced\"".to_string()), "{got:?}");
        assert!(
            got.iter()
                .any(|m| m.starts_with("spec.versions: Invalid value: ")
                    && m.ends_with("must have exactly one version marked as storage version")),
            "{got:?}"
        );
        assert!(got.contains(&"spec.versions[0].additionalPrinterColumns[0].type: Invalid value: \"int\": must be one of boolean,date,integer,number,string".to_string()), "{got:?}");
        assert!(got.contains(&"spec.versions[0].subresources.scale.specReplicasPath: Invalid value: \".status.x\": should be a json path under .spec".to_string()), "{got:?}");
        let mut no_schema = crd();
        no_schema["spec"]["versions"][1]
            .as_object_mut()
            .unwrap()
            .remove("schema");
        assert_eq!(
            shown(&no_schema),
            vec!["spec.versions[1].schema.openAPIV3Schema: Required value: schemas are required"]
        );
    }

    #[test]
    fn a_schema_all_versions_share_is_checked_as_spec_validation() {
        let mut one = crd();
        one["spec"]["versions"].as_array_mut().unwrap().pop();
        one["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
            ["x-kubernetes-validations"] = json!([{"rule": "self.replicas <"}]);
        let got = shown(&one);
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(
            got[0].starts_with("spec.validation.openAPIV3Schema.properties[spec].x-kubernetes-validations[0].rule: Invalid value: {\"rule\":\"self.replicas <\"}: compilation failed: ERROR: <input>:1:16: Syntax error: "),
            "{got:?}"
        );
        // Different schemas per version: each is checked at its own path.
        let mut two = crd();
        two["spec"]["versions"][1]["schema"]["openAPIV3Schema"]["x-kubernetes-validations"] =
            json!([{"rule": ""}]);
        assert_eq!(
            shown(&two),
            vec!["spec.versions[1].schema.openAPIV3Schema.x-kubernetes-validations[0].rule: Required value: rule is not specified"]
        );
    }

    #[test]
    fn definitions_follow_accepted_names_and_versions() {
        let mut o = crd();
        RESOURCE.strategy.default(&mut o);
        o["status"] = json!({"acceptedNames": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList", "shortNames": ["wd"]}});
        let defs = definitions(&o);
        assert_eq!(defs.len(), 2);
        assert_eq!(
            (defs[0].version.as_str(), defs[0].status, defs[0].scale),
            ("v1", true, true)
        );
        assert_eq!(defs[0].spec.columns[0].column.name, "Replicas");
        assert_eq!(defs[1].spec.storage_api_version, "example.com/v1");
        assert_eq!(
            defs[1].spec.deprecation.as_deref(),
            Some("example.com/v1beta1 Widget is deprecated")
        );
    }

    #[test]
    fn deleting_leaves_the_cleanup_finalizer() {
        let o = crd();
        assert!(RESOURCE.strategy.deletion_blocked(&o));
        let mut marked = o.clone();
        RESOURCE.strategy.mark_deleting(&mut marked);
        assert_eq!(marked["metadata"]["finalizers"], json!([CLEANUP_FINALIZER]));
        assert!(condition_true(&marked, "Terminating"));
        marked["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        assert!(!RESOURCE.strategy.deletion_blocked(&marked));
    }
}
