//! flowcontrol.apiserver.k8s.io/v1 FlowSchema.
//!
//! Which requests go to which priority level (API Priority and Fairness): rules of
//! subjects (users, groups, service accounts) and of resource or non-resource requests,
//! tried in `matchingPrecedence` order (lowest first); the first match picks the level
//! and how its flows are told apart (`distinguisherMethod`: by user, by namespace, or
//! one flow). `matchingPrecedence` defaults to 1000; only `exempt` may take 1. The
//! apiserver writes `status.conditions` (`Dangling`: whether the level it names exists).

use crate::strategy::Strategy;
use crate::table::{age_cell, name_cell, Column, TableRow};
use crate::{ResourceType, Root, Subresource, Typed};
use keelson_apimachinery::{meta, validation, Cause};
use serde_json::{json, Value};

pub static RESOURCE: ResourceType = ResourceType {
    group: "flowcontrol.apiserver.k8s.io",
    version: "v1",
    kind: "FlowSchema",
    plural: "flowschemas",
    singular: "flowschema",
    namespaced: false,
    short_names: &[],
    categories: &[],
    subresources: &[Subresource::Status],
    strategy: &FlowSchemas,
    typed: Some(Typed::of::<k8s_openapi::api::flowcontrol::v1::FlowSchema>()),
    merge: Some(Root::FlowControl),
};

struct FlowSchemas;

/// `flowcontrol.FlowSchemaMaxMatchingPrecedence`.
pub const MAX_MATCHING_PRECEDENCE: i64 = 10_000;
/// What an unset `matchingPrecedence` becomes.
pub const DEFAULT_MATCHING_PRECEDENCE: i64 = 1000;
const DISTINGUISHERS: &[&str] = &["ByUser", "ByNamespace"];
const SUBJECT_KINDS: &[&str] = &["Group", "ServiceAccount", "User"];
const RESOURCE_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "proxy",
    "update",
    "watch",
];
const NON_RESOURCE_VERBS: &[&str] = &["delete", "get", "head", "options", "patch", "post", "put"];

/// The strings of a JSON list.
fn strings(v: Option<&Value>) -> Vec<&str> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// Required when empty; `*` must stand alone.
fn wildcard_list(
    list: &[&str],
    path: &str,
    required: &str,
    others: &str,
    out: &mut Vec<Cause>,
) -> bool {
    if list.is_empty() {
        out.push(Cause::new(
            "FieldValueRequired",
            path,
            format!("Required value: {required}"),
        ));
        return false;
    }
    if list.len() > 1 && list.contains(&"*") {
        out.push(Cause::invalid(
            path,
            &json!(list),
            format!("if '*' is present, must not specify {others}"),
        ));
        return false;
    }
    true
}

fn required(path: impl Into<String>, detail: &str) -> Cause {
    Cause::new(
        "FieldValueRequired",
        path,
        format!("Required value: {detail}"),
    )
}

fn validate_subject(s: &Value, path: &str, out: &mut Vec<Cause>) {
    let kind = s.get("kind").and_then(Value::as_str).unwrap_or("");
    let field = |f: &str| s.get(f).filter(|v| !v.is_null());
    match kind {
        "User" => match field("user") {
            None => out.push(required(
                format!("{path}.user"),
                "user is required when subject kind is 'User'",
            )),
            Some(u)
                if u.get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .is_empty() =>
            {
                out.push(required(
                    format!("{path}.user.name"),
                    "username is required",
                ))
            }
            _ => {}
        },
        "Group" => match field("group") {
            None => out.push(required(
                format!("{path}.group"),
                "group is required when subject kind is 'Group'",
            )),
            Some(g)
                if g.get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .is_empty() =>
            {
                out.push(required(
                    format!("{path}.group.name"),
                    "groupname is required",
                ))
            }
            _ => {}
        },
        "ServiceAccount" => match field("serviceAccount") {
            None => out.push(required(
                format!("{path}.serviceAccount"),
                "serviceAccount is required when subject kind is 'ServiceAccount'",
            )),
            Some(sa) => {
                if sa
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .is_empty()
                {
                    out.push(required(
                        format!("{path}.serviceAccount.name"),
                        "name is required",
                    ));
                }
                let ns = sa.get("namespace").and_then(Value::as_str).unwrap_or("");
                if ns.is_empty() {
                    out.push(required(
                        format!("{path}.serviceAccount.namespace"),
                        "namespace is required",
                    ));
                } else {
                    for msg in validation::dns1123_label(ns) {
                        out.push(Cause::invalid(
                            format!("{path}.serviceAccount.namespace"),
                            &json!(ns),
                            msg,
                        ));
                    }
                }
            }
        },
        "" => out.push(Cause::required(format!("{path}.kind"))),
        other => out.push(Cause::not_supported(
            format!("{path}.kind"),
            &json!(other),
            SUBJECT_KINDS,
        )),
    }
    for (f, k) in [
        ("user", "User"),
        ("group", "Group"),
        ("serviceAccount", "ServiceAccount"),
    ] {
        if kind != k && SUBJECT_KINDS.contains(&kind) && field(f).is_some() {
            out.push(Cause::forbidden(
                format!("{path}.{f}"),
                format!("{f} is forbidden when subject kind is not '{k}'"),
            ));
        }
    }
}

fn validate_verbs(verbs: &[&str], path: &str, supported: &[&str], out: &mut Vec<Cause>) {
    if !wildcard_list(
        verbs,
        path,
        "verbs must contain at least one value",
        "other verbs",
        out,
    ) {
        return;
    }
    if let Some(bad) = verbs.iter().find(|v| **v != "*" && !supported.contains(v)) {
        out.push(Cause::not_supported(path, &json!(bad), supported));
    }
}

fn validate_resource_rule(r: &Value, path: &str, out: &mut Vec<Cause>) {
    validate_verbs(
        &strings(r.get("verbs")),
        &format!("{path}.verbs"),
        RESOURCE_VERBS,
        out,
    );
    wildcard_list(
        &strings(r.get("apiGroups")),
        &format!("{path}.apiGroups"),
        "resource rules must supply at least one api group",
        "other api groups",
        out,
    );
    wildcard_list(
        &strings(r.get("resources")),
        &format!("{path}.resources"),
        "resource rules must supply at least one resource",
        "other resources",
        out,
    );
    let namespaces = strings(r.get("namespaces"));
    let cluster_scope = r
        .get("clusterScope")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if namespaces.is_empty() {
        if !cluster_scope {
            out.push(required(
                format!("{path}.namespaces"),
                "resource rules that are not cluster scoped must supply at least one namespace",
            ));
        }
    } else if wildcard_list(
        &namespaces,
        &format!("{path}.namespaces"),
        "",
        "other namespaces",
        out,
    ) {
        for (i, ns) in namespaces.iter().enumerate() {
            if *ns == "*" {
                continue;
            }
            for msg in validation::dns1123_label(ns) {
                out.push(Cause::invalid(
                    format!("{path}.namespaces[{i}]"),
                    &json!(ns),
                    msg,
                ));
            }
        }
    }
}

/// `ValidateNonResourceURLPath`: `*`, or an absolute path whose only `*` ends it as `/*`.
fn url_problem(url: &str) -> Option<&'static str> {
    if url == "*" || url == "/" {
        return None;
    }
    if url.is_empty() {
        return Some("must not be empty");
    }
    if !url.starts_with('/') {
        return Some("must start with slash");
    }
    if url.contains("//") {
        return Some("must not contain double slash");
    }
    let star = url.find('*');
    if star.is_some_and(|i| i != url.len() - 1 || !url.ends_with("/*")) {
        return Some("wildcard can only do suffix glob matching");
    }
    None
}

fn validate_non_resource_rule(r: &Value, path: &str, out: &mut Vec<Cause>) {
    validate_verbs(
        &strings(r.get("verbs")),
        &format!("{path}.verbs"),
        NON_RESOURCE_VERBS,
        out,
    );
    let urls = strings(r.get("nonResourceURLs"));
    if wildcard_list(
        &urls,
        &format!("{path}.nonResourceURLs"),
        "nonResourceURLs must contain at least one value",
        "other non-resource URLs",
        out,
    ) {
        for (i, url) in urls.iter().enumerate() {
            if let Some(msg) = url_problem(url) {
                out.push(Cause::invalid(
                    format!("{path}.nonResourceURLs[{i}]"),
                    &json!(url),
                    msg,
                ));
            }
        }
    }
}

fn validate_rule(rule: &Value, path: &str, out: &mut Vec<Cause>) {
    let subjects = rule
        .get("subjects")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    if subjects.is_empty() {
        out.push(required(
            format!("{path}.subjects"),
            "subjects must contain at least one value",
        ));
    }
    for (i, s) in subjects.iter().enumerate() {
        validate_subject(s, &format!("{path}.subjects[{i}]"), out);
    }
    let list = |k: &str| {
        rule.get(k)
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    };
    let (resource, non_resource) = (list("resourceRules"), list("nonResourceRules"));
    if resource.is_empty() && non_resource.is_empty() {
        out.push(required(
            path,
            "at least one of resourceRules and nonResourceRules has to be non-empty",
        ));
    }
    for (i, r) in resource.iter().enumerate() {
        validate_resource_rule(r, &format!("{path}.resourceRules[{i}]"), out);
    }
    for (i, r) in non_resource.iter().enumerate() {
        validate_non_resource_rule(r, &format!("{path}.nonResourceRules[{i}]"), out);
    }
}

fn precedence(obj: &Value) -> i64 {
    obj.pointer("/spec/matchingPrecedence")
        .and_then(Value::as_i64)
        .unwrap_or(DEFAULT_MATCHING_PRECEDENCE)
}

fn distinguisher(obj: &Value) -> Option<&str> {
    obj.pointer("/spec/distinguisherMethod/type")
        .and_then(Value::as_str)
}

impl Strategy for FlowSchemas {
    fn tracks_generation(&self) -> bool {
        true
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        if let Some(o) = obj.as_object_mut() {
            o.insert("status".into(), json!({}));
        }
    }

    fn default(&self, obj: &mut Value) {
        let Some(o) = obj.as_object_mut() else {
            return;
        };
        let spec = o.entry("spec").or_insert_with(|| json!({}));
        if let Some(spec) = spec.as_object_mut() {
            let unset = spec
                .get("matchingPrecedence")
                .is_none_or(|p| p.is_null() || p.as_i64() == Some(0));
            if unset {
                spec.insert(
                    "matchingPrecedence".into(),
                    json!(DEFAULT_MATCHING_PRECEDENCE),
                );
            }
        }
    }

    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut out = Vec::new();
        let p = precedence(obj);
        if p <= 0 {
            out.push(Cause::invalid(
                "spec.matchingPrecedence",
                &json!(p),
                "must be a positive value",
            ));
        } else if p > MAX_MATCHING_PRECEDENCE {
            out.push(Cause::invalid(
                "spec.matchingPrecedence",
                &json!(p),
                format!("must not be greater than {MAX_MATCHING_PRECEDENCE}"),
            ));
        } else if p == 1 && meta::name(obj) != "exempt" {
            out.push(Cause::invalid(
                "spec.matchingPrecedence",
                &json!(p),
                "only the schema named 'exempt' may have matching precedence 1",
            ));
        }
        if let Some(d) = obj
            .pointer("/spec/distinguisherMethod")
            .filter(|d| !d.is_null())
        {
            let t = d.get("type").and_then(Value::as_str).unwrap_or("");
            if !DISTINGUISHERS.contains(&t) {
                out.push(Cause::not_supported(
                    "spec.distinguisherMethod.type",
                    &json!(t),
                    DISTINGUISHERS,
                ));
            }
        }
        let level = obj
            .pointer("/spec/priorityLevelConfiguration/name")
            .and_then(Value::as_str)
            .unwrap_or("");
        if level.is_empty() {
            out.push(required(
                "spec.priorityLevelConfiguration.name",
                "must reference a priority level",
            ));
        } else {
            for msg in validation::path_segment_name(level) {
                out.push(Cause::invalid(
                    "spec.priorityLevelConfiguration.name",
                    &json!(level),
                    msg,
                ));
            }
        }
        let rules = obj
            .pointer("/spec/rules")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        for (i, rule) in rules.iter().enumerate() {
            validate_rule(rule, &format!("spec.rules[{i}]"), &mut out);
        }
        out
    }

    fn columns(&self) -> Vec<Column> {
        vec![
            Column::name(),
            Column::new(
                "PriorityLevel",
                "string",
                "`priorityLevelConfiguration` should reference a PriorityLevelConfiguration in the cluster. If the reference cannot be resolved, the FlowSchema will be ignored and marked as invalid in its status. Required.",
            ),
            Column::new(
                "MatchingPrecedence",
                "string",
                "`matchingPrecedence` is used to choose among the FlowSchemas that match a given request. The chosen FlowSchema is among those with the numerically lowest (which we take to be logically highest) MatchingPrecedence.  Each MatchingPrecedence value must be ranged in [1,10000]. Note that if the precedence is not specified, it will be set to 1000 as default.",
            ),
            Column::new(
                "DistinguisherMethod",
                "string",
                "`distinguisherMethod` defines how to compute the flow distinguisher for requests that match this schema. `nil` specifies that the distinguisher is disabled and thus will always be the empty string.",
            ),
            Column::age(),
            Column::new(
                "MissingPL",
                "string",
                "indicates whether the priority level referenced by this FlowSchema is missing",
            ),
        ]
    }

    fn row(&self, obj: &Value) -> TableRow {
        let level = obj
            .pointer("/spec/priorityLevelConfiguration/name")
            .and_then(Value::as_str)
            .unwrap_or("");
        let dangling = obj
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .and_then(|c| c.iter().find(|c| c["type"] == "Dangling"))
            .and_then(|c| c["status"].as_str())
            .unwrap_or("?");
        vec![
            name_cell(obj),
            json!(level),
            json!(precedence(obj)),
            json!(distinguisher(obj).unwrap_or("<none>")),
            age_cell(obj),
            json!(dangling),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(obj: &Value) -> Vec<String> {
        RESOURCE
            .strategy
            .validate(obj)
            .iter()
            .map(Cause::display)
            .collect()
    }

    fn schema(spec: Value) -> Value {
        let mut fs = json!({"metadata": {"name": "test"}, "spec": spec});
        RESOURCE.strategy.default(&mut fs);
        fs
    }

    #[test]
    fn defaults_precedence_and_accepts_a_valid_schema() {
        let fs = schema(json!({
            "priorityLevelConfiguration": {"name": "global-default"},
            "distinguisherMethod": {"type": "ByUser"},
            "rules": [{
                "subjects": [{"kind": "Group", "group": {"name": "system:authenticated"}}],
                "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"], "namespaces": ["*"], "clusterScope": true}],
                "nonResourceRules": [{"verbs": ["get"], "nonResourceURLs": ["/healthz", "/apis/*"]}],
            }],
        }));
        assert_eq!(fs["spec"]["matchingPrecedence"], 1000);
        assert!(shown(&fs).is_empty(), "{:?}", shown(&fs));
    }

    #[test]
    fn reports_kubernetes_messages() {
        let fs = schema(json!({
            "matchingPrecedence": 1,
            "priorityLevelConfiguration": {"name": ""},
            "distinguisherMethod": {"type": "ByColour"},
            "rules": [
                {"subjects": [], "resourceRules": [{"verbs": ["get", "*"], "apiGroups": [], "resources": ["pods"]}]},
                {"subjects": [{"kind": "User"}, {"kind": "Robot"}]},
                {"subjects": [{"kind": "Group", "group": {"name": "g"}}], "nonResourceRules": [{"verbs": ["fly"], "nonResourceURLs": ["healthz", "/a*b"]}]},
            ],
        }));
        let got = shown(&fs);
        let want = [
            "spec.matchingPrecedence: Invalid value: 1: only the schema named 'exempt' may have matching precedence 1",
            "spec.distinguisherMethod.type: Unsupported value: \"ByColour\": supported values: \"ByUser\", \"ByNamespace\"",
            "spec.priorityLevelConfiguration.name: Required value: must reference a priority level",
            "spec.rules[0].subjects: Required value: subjects must contain at least one value",
            "spec.rules[0].resourceRules[0].verbs: Invalid value: [\"get\",\"*\"]: if '*' is present, must not specify other verbs",
            "spec.rules[0].resourceRules[0].apiGroups: Required value: resource rules must supply at least one api group",
            "spec.rules[0].resourceRules[0].namespaces: Required value: resource rules that are not cluster scoped must supply at least one namespace",
            "spec.rules[1].subjects[0].user: Required value: user is required when subject kind is 'User'",
            "spec.rules[1].subjects[1].kind: Unsupported value: \"Robot\": supported values: \"Group\", \"ServiceAccount\", \"User\"",
            "spec.rules[1]: Required value: at least one of resourceRules and nonResourceRules has to be non-empty",
            "spec.rules[2].nonResourceRules[0].verbs: Unsupported value: \"fly\": supported values: \"delete\", \"get\", \"head\", \"options\", \"patch\", \"post\", \"put\"",
            "spec.rules[2].nonResourceRules[0].nonResourceURLs[0]: Invalid value: \"healthz\": must start with slash",
            "spec.rules[2].nonResourceRules[0].nonResourceURLs[1]: Invalid value: \"/a*b\": wildcard can only do suffix glob matching",
        ];
        for w in want {
            assert!(got.iter().any(|g| g == w), "missing {w}\n got {got:#?}");
        }
        assert_eq!(got.len(), want.len(), "{got:#?}");
        let mut big = schema(
            json!({"matchingPrecedence": 10001, "priorityLevelConfiguration": {"name": "x"}}),
        );
        assert_eq!(
            shown(&big),
            ["spec.matchingPrecedence: Invalid value: 10001: must not be greater than 10000"]
        );
        big["metadata"]["name"] = json!("exempt");
        big["spec"]["matchingPrecedence"] = json!(1);
        assert!(shown(&big).is_empty());
    }

    #[test]
    fn table_shows_level_precedence_and_dangling() {
        let mut fs = schema(json!({"priorityLevelConfiguration": {"name": "workload-low"}}));
        let row = RESOURCE.strategy.row(&fs);
        assert_eq!(row[1], "workload-low");
        assert_eq!(row[2], 1000);
        assert_eq!(row[3], "<none>");
        assert_eq!(row[5], "?");
        fs["status"] = json!({"conditions": [{"type": "Dangling", "status": "False"}]});
        assert_eq!(RESOURCE.strategy.row(&fs)[5], "False");
    }
}
