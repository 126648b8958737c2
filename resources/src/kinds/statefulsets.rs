//! apps/v1 StatefulSet.

use crate::podspec::{
    self, container_cells, default_field, default_pvc_spec, default_template_metadata,
    ensure_object, go_int_or_string, int_or_percent, invalid_shown, items, nonnegative,
    not_more_than_100_percent, str_at, SpecOptions,
};
use crate::strategy::{name_age_columns, name_age_row, Strategy};
use crate::table::{Column, TableRow};
use crate::{ResourceType, Root, Subresource, Typed};
use keelson_apimachinery::{validation, Cause};
use serde_json::{json, Value};

pub static RESOURCE: ResourceType = ResourceType {
    group: "apps",
    version: "v1",
    kind: "StatefulSet",
    plural: "statefulsets",
    singular: "statefulset",
    namespaced: true,
    short_names: &["sts"],
    categories: &["all"],
    subresources: &[Subresource::Status, Subresource::Scale],
    strategy: &StatefulSets,
    typed: Some(Typed::of::<k8s_openapi::api::apps::v1::StatefulSet>()),
    merge: Some(Root::StatefulSet),
};

struct StatefulSets;

/// Spec fields an update may change; everything else is fixed at creation.
const MUTABLE_SPEC_FIELDS: &[&str] = &[
    "replicas",
    "ordinals",
    "template",
    "updateStrategy",
    "persistentVolumeClaimRetentionPolicy",
    "minReadySeconds",
];

impl Strategy for StatefulSets {
    /// Pods are named `<name>-<ordinal>` and become hostnames, so the name is a label.
    fn validate_name(&self, name: &str) -> Vec<String> {
        validation::dns1123_label(name)
    }

    fn tracks_generation(&self) -> bool {
        true
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        if let Some(o) = obj.as_object_mut() {
            o.insert(
                "status".into(),
                json!({"replicas": 0, "availableReplicas": 0}),
            );
        }
    }

    /// `SetDefaults_StatefulSet`, plus the claim template defaults.
    fn default(&self, obj: &mut Value) {
        let spec = ensure_object(ensure_object(obj).entry("spec").or_insert(Value::Null));
        if spec
            .get("podManagementPolicy")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
        {
            spec.insert("podManagementPolicy".into(), json!("OrderedReady"));
        }
        let us = ensure_object(spec.entry("updateStrategy").or_insert(Value::Null));
        if us
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
        {
            us.insert("type".into(), json!("RollingUpdate"));
            default_field(us, "rollingUpdate", json!({}));
        }
        if us.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
            if let Some(ru) = us.get_mut("rollingUpdate").and_then(Value::as_object_mut) {
                default_field(ru, "partition", json!(0));
            }
        }
        let policy = ensure_object(
            spec.entry("persistentVolumeClaimRetentionPolicy")
                .or_insert(Value::Null),
        );
        for field in ["whenDeleted", "whenScaled"] {
            if policy
                .get(field)
                .and_then(Value::as_str)
                .unwrap_or("")
                .is_empty()
            {
                policy.insert(field.into(), json!("Retain"));
            }
        }
        default_field(spec, "replicas", json!(1));
        default_field(spec, "revisionHistoryLimit", json!(10));
        podspec::default_pod_template(spec.entry("template").or_insert(Value::Null));
        if let Some(claims) = spec
            .get_mut("volumeClaimTemplates")
            .and_then(Value::as_array_mut)
        {
            for claim in claims {
                let c = ensure_object(claim);
                default_field(c, "apiVersion", json!("v1"));
                default_field(c, "kind", json!("PersistentVolumeClaim"));
                default_template_metadata(c);
                default_pvc_spec(ensure_object(c.entry("spec").or_insert(Value::Null)));
                let status = ensure_object(c.entry("status").or_insert(Value::Null));
                default_field(status, "phase", json!("Pending"));
            }
        }
    }

    /// `ValidateStatefulSetSpec`. Kubernetes leaves the pod spec itself unvalidated
    /// (its mounts may name claim templates); Keelson validates it, counting the claim
    /// templates as volumes.
    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let null = Value::Null;
        let spec = obj.get("spec").unwrap_or(&null);
        let mut causes = Vec::new();

        match str_at(spec, "podManagementPolicy") {
            "" => causes.push(Cause::required("spec.podManagementPolicy")),
            "OrderedReady" | "Parallel" => {}
            other => causes.push(Cause::invalid(
                "spec.podManagementPolicy",
                &json!(other),
                "must be 'OrderedReady' or 'Parallel'",
            )),
        }

        let us = spec.get("updateStrategy").unwrap_or(&null);
        let ru = us.get("rollingUpdate").filter(|r| !r.is_null());
        match str_at(us, "type") {
            "" => causes.push(Cause::required("spec.updateStrategy")),
            "OnDelete" => {
                if ru.is_some() {
                    causes.push(Cause::invalid(
                        "spec.updateStrategy.rollingUpdate",
                        ru.unwrap_or(&null),
                        "only allowed for updateStrategy 'RollingUpdate'",
                    ));
                }
            }
            "RollingUpdate" => {
                if let Some(ru) = ru {
                    let p = "spec.updateStrategy.rollingUpdate";
                    nonnegative(ru, "partition", p, &mut causes);
                    if let Some(mu) = ru.get("maxUnavailable").filter(|m| !m.is_null()) {
                        let mp = format!("{p}.maxUnavailable");
                        let (value, _) = int_or_percent(Some(mu), &mp, &mut causes);
                        if value == 0 {
                            causes.push(invalid_shown(
                                &mp,
                                &go_int_or_string(Some(mu)),
                                "cannot be 0",
                            ));
                        }
                        not_more_than_100_percent(Some(mu), &mp, &mut causes);
                    }
                }
            }
            other => causes.push(invalid_shown(
                "spec.updateStrategy",
                &format!("apps.StatefulSetUpdateStrategy{{Type:{other:?}}}"),
                "must be 'RollingUpdate' or 'OnDelete'",
            )),
        }

        if let Some(policy) = spec
            .get("persistentVolumeClaimRetentionPolicy")
            .filter(|p| !p.is_null())
        {
            for field in ["whenDeleted", "whenScaled"] {
                let v = str_at(policy, field);
                if v != "Retain" && v != "Delete" {
                    causes.push(Cause::not_supported(
                        format!("spec.persistentVolumeClaimRetentionPolicy.{field}"),
                        &json!(v),
                        &["Retain", "Delete"],
                    ));
                }
            }
        }

        nonnegative(spec, "replicas", "spec", &mut causes);
        nonnegative(spec, "minReadySeconds", "spec", &mut causes);
        if let Some(ordinals) = spec.get("ordinals").filter(|o| !o.is_null()) {
            nonnegative(ordinals, "start", "spec.ordinals", &mut causes);
        }

        if podspec::validate_apps_selector(spec, "spec", "statefulset", &mut causes) {
            let template = spec.get("template").unwrap_or(&null);
            let claims: Vec<String> = items(spec, "volumeClaimTemplates")
                .iter()
                .map(|c| {
                    c.get("metadata")
                        .map_or("", |m| str_at(m, "name"))
                        .to_string()
                })
                .collect();
            let opts = SpecOptions {
                extra_volumes: claims,
                ..Default::default()
            };
            causes.extend(podspec::validate_pod_template(
                template,
                "spec.template",
                &opts,
            ));
        }
        causes.extend(podspec::replicated_restart_rules(
            spec.get("template").unwrap_or(&null),
            "spec.template",
            "StatefulSet",
        ));
        causes
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        let strip = |obj: &Value| {
            let mut spec = obj.get("spec").cloned().unwrap_or(Value::Null);
            if let Some(m) = spec.as_object_mut() {
                for f in MUTABLE_SPEC_FIELDS {
                    m.remove(*f);
                }
            }
            spec
        };
        if strip(new) != strip(old) {
            return vec![Cause::forbidden(
                "spec",
                "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
            )];
        }
        Vec::new()
    }

    fn columns(&self) -> Vec<Column> {
        let mut cols = name_age_columns(vec![Column::new(
            "Ready",
            "string",
            "Number of the pod with ready state",
        )]);
        cols.extend(podspec::wide_columns("").into_iter().take(2));
        cols
    }

    fn row(&self, obj: &Value) -> TableRow {
        let null = Value::Null;
        let spec = obj.get("spec").unwrap_or(&null);
        let status = obj.get("status").unwrap_or(&null);
        let int = |v: &Value, k: &str| v.get(k).and_then(Value::as_i64).unwrap_or(0);
        let mut row = name_age_row(
            obj,
            vec![json!(format!(
                "{}/{}",
                int(status, "readyReplicas"),
                int(spec, "replicas")
            ))],
        );
        let (names, images) = container_cells(spec.get("template").and_then(|t| t.get("spec")));
        row.extend([names, images]);
        row
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sts() -> Value {
        json!({"metadata": {"name": "web", "creationTimestamp": "2020-01-01T00:00:00Z"},
               "spec": {"serviceName": "web", "selector": {"matchLabels": {"app": "web"}},
                        "template": {"metadata": {"labels": {"app": "web"}},
                                     "spec": {"containers": [{"name": "nginx", "image": "nginx",
                                         "volumeMounts": [{"name": "www", "mountPath": "/usr/share/nginx/html"}]}]}},
                        "volumeClaimTemplates": [{"metadata": {"name": "www"},
                            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]}})
    }

    #[test]
    fn defaults() {
        let mut s = sts();
        RESOURCE.strategy.prepare_for_create(&mut s);
        RESOURCE.strategy.default(&mut s);
        let spec = &s["spec"];
        assert_eq!(spec["podManagementPolicy"], "OrderedReady");
        assert_eq!(
            spec["updateStrategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
        );
        assert_eq!(
            spec["persistentVolumeClaimRetentionPolicy"],
            json!({"whenDeleted": "Retain", "whenScaled": "Retain"})
        );
        assert_eq!(spec["replicas"], 1);
        assert_eq!(spec["revisionHistoryLimit"], 10);
        let claim = &spec["volumeClaimTemplates"][0];
        assert_eq!(claim["kind"], "PersistentVolumeClaim");
        assert_eq!(claim["spec"]["volumeMode"], "Filesystem");
        assert_eq!(claim["status"], json!({"phase": "Pending"}));
        assert_eq!(s["status"], json!({"replicas": 0, "availableReplicas": 0}));
        assert!(
            RESOURCE.strategy.validate(&s).is_empty(),
            "{:?}",
            RESOURCE.strategy.validate(&s)
        );

        let mut on_delete = sts();
        on_delete["spec"]["updateStrategy"] = json!({"type": "OnDelete"});
        RESOURCE.strategy.default(&mut on_delete);
        assert_eq!(
            on_delete["spec"]["updateStrategy"],
            json!({"type": "OnDelete"})
        );
    }

    #[test]
    fn validation_and_update_rules() {
        assert!(!RESOURCE.strategy.validate_name("web.example").is_empty());
        let mut s = sts();
        s["spec"]["podManagementPolicy"] = json!("Random");
        s["spec"]["template"]["spec"]["containers"][0]["volumeMounts"][0]["name"] = json!("nope");
        RESOURCE.strategy.default(&mut s);
        let shown: Vec<String> = RESOURCE
            .strategy
            .validate(&s)
            .iter()
            .map(Cause::display)
            .collect();
        assert_eq!(
            shown,
            vec![
                "spec.podManagementPolicy: Invalid value: \"Random\": must be 'OrderedReady' or 'Parallel'".to_string(),
                "spec.template.spec.containers[0].volumeMounts[0].name: Not found: \"nope\"".to_string(),
            ]
        );

        let mut old = sts();
        RESOURCE.strategy.default(&mut old);
        let mut new = old.clone();
        new["spec"]["replicas"] = json!(3);
        new["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:1.28");
        assert!(RESOURCE.strategy.validate_update(&new, &old).is_empty());
        new["spec"]["serviceName"] = json!("other");
        assert_eq!(
            RESOURCE.strategy.validate_update(&new, &old)[0].field,
            "spec"
        );
    }

    #[test]
    fn table_row() {
        let mut s = sts();
        RESOURCE.strategy.default(&mut s);
        s["status"] = json!({"readyReplicas": 1});
        let row = RESOURCE.strategy.row(&s);
        assert_eq!(row.len(), RESOURCE.strategy.columns().len());
        assert_eq!(row[1], "1/1");
        assert_eq!(&row[3..], &[json!("nginx"), json!("nginx")]);
    }
}
