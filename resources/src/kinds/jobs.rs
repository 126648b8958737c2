//! batch/v1 Job.
//!
//! Unless `manualSelector` is true, the selector and the pod template's
//! `controller-uid`/`job-name` labels (legacy and `batch.kubernetes.io/` forms) are
//! generated from the job's uid, which the store sets before defaulting.

use crate::podspec::{
    self, container_cells, default_field, ensure_object, format_label_selector, go_label_selector,
    go_string_map, invalid_shown, items, nonnegative, required_detail, selector_matches, str_at,
    template_labels,
};
use crate::strategy::{name_age_columns, name_age_row, Strategy};
use crate::table::{human_duration, Column, TableRow};
use crate::{ResourceType, Root, Subresource, Typed};
use chrono::{DateTime, Utc};
use keelson_apimachinery::{meta, validation, Cause};
use serde_json::{json, Map, Value};

pub static RESOURCE: ResourceType = ResourceType {
    group: "batch",
    version: "v1",
    kind: "Job",
    plural: "jobs",
    singular: "job",
    namespaced: true,
    short_names: &[],
    categories: &["all"],
    subresources: &[Subresource::Status],
    strategy: &Jobs,
    typed: Some(Typed::of::<k8s_openapi::api::batch::v1::Job>()),
    merge: Some(Root::Job),
};

struct Jobs;

const CONTROLLER_UID: &str = "batch.kubernetes.io/controller-uid";
const JOB_NAME: &str = "batch.kubernetes.io/job-name";
const LEGACY_CONTROLLER_UID: &str = "controller-uid";
const LEGACY_JOB_NAME: &str = "job-name";

const MAX_PARALLELISM_INDEXED: i64 = 100_000;
const MAX_FAILED_INDEXES: i64 = 100_000;

fn manual_selector(spec: &Value) -> bool {
    spec.get("manualSelector")
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// Copy the template's labels to the job when it has none (`SetDefaults_Job`).
fn labels_from_template(o: &mut Map<String, Value>) {
    let labels = o
        .get("spec")
        .and_then(|s| s.get("template"))
        .and_then(template_labels)
        .cloned();
    if let Some(labels) = labels {
        let md = ensure_object(o.entry("metadata").or_insert(Value::Null));
        if md
            .get("labels")
            .and_then(Value::as_object)
            .is_none_or(Map::is_empty)
        {
            md.insert("labels".into(), labels);
        }
    }
}

/// `SetDefaults_Job` for a job spec (also the defaults a job template does NOT get:
/// callers decide).
fn default_job_spec(spec: &mut Map<String, Value>) {
    let absent = |s: &Map<String, Value>, k: &str| s.get(k).is_none_or(Value::is_null);
    if absent(spec, "completions") && absent(spec, "parallelism") {
        spec.insert("completions".into(), json!(1));
        spec.insert("parallelism".into(), json!(1));
    }
    default_field(spec, "parallelism", json!(1));
    let per_index = !absent(spec, "backoffLimitPerIndex");
    default_field(
        spec,
        "backoffLimit",
        json!(if per_index { i32::MAX as i64 } else { 6 }),
    );
    default_field(spec, "completionMode", json!("NonIndexed"));
    default_field(spec, "suspend", json!(false));
    let has_failure_policy = !absent(spec, "podFailurePolicy");
    if let Some(rules) = spec
        .get_mut("podFailurePolicy")
        .and_then(|p| p.get_mut("rules"))
        .and_then(Value::as_array_mut)
    {
        for rule in rules {
            if let Some(patterns) = rule
                .get_mut("onPodConditions")
                .and_then(Value::as_array_mut)
            {
                for p in patterns {
                    if let Some(p) = p.as_object_mut() {
                        if p.get("status")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .is_empty()
                        {
                            p.insert("status".into(), json!("True"));
                        }
                    }
                }
            }
        }
    }
    default_field(
        spec,
        "podReplacementPolicy",
        json!(if has_failure_policy {
            "Failed"
        } else {
            "TerminatingOrFailed"
        }),
    );
    default_field(spec, "manualSelector", json!(false));
    podspec::default_pod_template(spec.entry("template").or_insert(Value::Null));
}

/// `generateSelector`: template labels and a selector on the controller uid.
fn generate_selector(spec: &mut Map<String, Value>, name: &str, uid: &str) {
    let template = ensure_object(spec.entry("template").or_insert(Value::Null));
    let md = ensure_object(template.entry("metadata").or_insert(Value::Null));
    let labels = ensure_object(md.entry("labels").or_insert(Value::Null));
    for (key, value) in [
        (LEGACY_JOB_NAME, name),
        (JOB_NAME, name),
        (LEGACY_CONTROLLER_UID, uid),
        (CONTROLLER_UID, uid),
    ] {
        labels.entry(key).or_insert_with(|| json!(value));
    }
    let selector = ensure_object(spec.entry("selector").or_insert(Value::Null));
    let match_labels = ensure_object(selector.entry("matchLabels").or_insert(Value::Null));
    match_labels
        .entry(CONTROLLER_UID)
        .or_insert_with(|| json!(uid));
}

impl Strategy for Jobs {
    /// batch/v1 Jobs orphan their pods by default, for backwards compatibility.
    fn default_garbage_collection_policy(&self) -> crate::strategy::GcPolicy {
        crate::strategy::GcPolicy::Orphan
    }

    fn tracks_generation(&self) -> bool {
        true
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        if let Some(o) = obj.as_object_mut() {
            o.insert("status".into(), json!({}));
        }
    }

    fn default(&self, obj: &mut Value) {
        let name = meta::name(obj).to_string();
        let uid = meta::uid(obj).to_string();
        let o = ensure_object(obj);
        labels_from_template(o);
        let spec = ensure_object(o.entry("spec").or_insert(Value::Null));
        default_job_spec(spec);
        let selector_absent = spec.get("selector").is_none_or(Value::is_null);
        if !manual_selector(&Value::Object(spec.clone())) && selector_absent && !uid.is_empty() {
            generate_selector(spec, &name, &uid);
        }
        // Kubernetes defaults again when it reads the job back, so a job created
        // without labels shows the generated ones.
        labels_from_template(o);
    }

    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let null = Value::Null;
        let spec = obj.get("spec").unwrap_or(&null);
        let mut causes = Vec::new();
        validate_generated_selector(obj, &mut causes);
        validate_job_spec(spec, "spec", &mut causes);
        match spec.get("selector").filter(|s| !s.is_null()) {
            None => causes.push(Cause::required("spec.selector")),
            Some(s) => podspec::validate_label_selector(Some(s), "spec.selector", &mut causes),
        }
        let template = spec.get("template").unwrap_or(&null);
        let selector = spec.get("selector").filter(|s| !s.is_null());
        if podspec::selector_is_valid(selector) {
            let empty = selector.is_some_and(podspec::selector_is_empty);
            if !empty && !selector_matches(selector, template_labels(template)) {
                causes.push(podspec::selector_mismatch(template, "spec.template"));
            }
        }
        let completions = spec.get("completions").and_then(Value::as_i64).unwrap_or(0);
        if str_at(spec, "completionMode") == "Indexed" && completions > 0 {
            let name = meta::name(obj);
            let hostname = format!("{name}-{}", completions - 1);
            if !validation::dns1123_label(&hostname).is_empty() {
                causes.push(Cause::invalid(
                    "metadata.name",
                    &json!(name),
                    format!("will not able to create pod with invalid DNS label: {hostname}"),
                ));
            }
        }
        causes
    }

    /// `ValidateJobSpecUpdate`.
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        let null = Value::Null;
        let ns = new.get("spec").unwrap_or(&null);
        let os = old.get("spec").unwrap_or(&null);
        let mut causes = Vec::new();

        let indexed = str_at(ns, "completionMode") == "Indexed";
        if ns.get("completions") != os.get("completions") {
            if !indexed {
                causes.push(Cause::immutable(
                    "spec.completions",
                    ns.get("completions").unwrap_or(&null),
                ));
            } else if let Some(c) = ns.get("completions").filter(|c| !c.is_null()) {
                if Some(c) != ns.get("parallelism") {
                    causes.push(Cause::invalid(
                        "spec.completions",
                        c,
                        "can only be modified in tandem with spec.parallelism",
                    ));
                }
            }
        }
        podspec::selector_immutable(new, old, &mut causes);

        // A suspended job that never started may change its scheduling directives.
        let suspended = os.get("suspend").and_then(Value::as_bool).unwrap_or(false);
        let not_started = old
            .get("status")
            .and_then(|s| s.get("startTime"))
            .is_none_or(Value::is_null);
        let new_template = ns.get("template").cloned().unwrap_or(Value::Null);
        let mut old_template = os.get("template").cloned().unwrap_or(Value::Null);
        if suspended && not_started {
            for (section, field) in [
                ("spec", "nodeSelector"),
                ("spec", "tolerations"),
                ("spec", "schedulingGates"),
                ("metadata", "annotations"),
                ("metadata", "labels"),
            ] {
                let value = new_template
                    .get(section)
                    .and_then(|s| s.get(field))
                    .cloned();
                if let Some(sec) = old_template.get_mut(section).and_then(Value::as_object_mut) {
                    match value {
                        Some(v) => sec.insert(field.into(), v),
                        None => sec.remove(field),
                    };
                }
            }
            let node_affinity = new_template
                .get("spec")
                .and_then(|s| s.get("affinity"))
                .and_then(|a| a.get("nodeAffinity"))
                .cloned();
            if let Some(spec) = old_template.get_mut("spec").and_then(Value::as_object_mut) {
                let affinity = ensure_object(spec.entry("affinity").or_insert(Value::Null));
                match node_affinity {
                    Some(na) => affinity.insert("nodeAffinity".into(), na),
                    None => affinity.remove("nodeAffinity"),
                };
                if affinity.is_empty()
                    && new_template
                        .get("spec")
                        .and_then(|s| s.get("affinity"))
                        .is_none()
                {
                    spec.remove("affinity");
                }
            }
        }
        if new_template != old_template {
            causes.push(Cause::immutable("spec.template", &new_template));
        }

        for field in [
            "completionMode",
            "podFailurePolicy",
            "backoffLimitPerIndex",
            "managedBy",
            "successPolicy",
        ] {
            if ns.get(field) != os.get(field) {
                causes.push(Cause::immutable(
                    format!("spec.{field}"),
                    ns.get(field).unwrap_or(&null),
                ));
            }
        }
        causes
    }

    fn selectable_fields(&self, obj: &Value) -> Vec<(&'static str, String)> {
        let succeeded = obj
            .get("status")
            .and_then(|s| s.get("succeeded"))
            .and_then(Value::as_i64)
            .unwrap_or(0);
        vec![("status.successful", succeeded.to_string())]
    }

    fn selectable_field_names(&self) -> &'static [&'static str] {
        &["status.successful"]
    }

    fn columns(&self) -> Vec<Column> {
        let mut cols = name_age_columns(vec![
            Column::new("Status", "string", "Status of the job."),
            Column::new("Completions", "string", "The number of pods which reached phase Succeeded. The value increases monotonically for a given spec. However, it may decrease in reaction to scale down of elastic indexed jobs."),
            Column::new("Duration", "string", "Time required to complete the job."),
        ]);
        cols.extend(podspec::wide_columns("A label query over pods that should match the pod count. Normally, the system sets this field for you. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors"));
        cols
    }

    fn row(&self, obj: &Value) -> TableRow {
        let null = Value::Null;
        let spec = obj.get("spec").unwrap_or(&null);
        let status = obj.get("status").unwrap_or(&null);
        let succeeded = status.get("succeeded").and_then(Value::as_i64).unwrap_or(0);
        let completions = match spec.get("completions").and_then(Value::as_i64) {
            Some(c) => format!("{succeeded}/{c}"),
            None => match spec.get("parallelism").and_then(Value::as_i64).unwrap_or(0) {
                p if p > 1 => format!("{succeeded}/1 of {p}"),
                _ => format!("{succeeded}/1"),
            },
        };
        let time = |k: &str| {
            status
                .get(k)
                .and_then(Value::as_str)
                .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        };
        let duration = match (time("startTime"), time("completionTime")) {
            (None, _) => String::new(),
            (Some(start), None) => {
                human_duration(Utc::now().signed_duration_since(start).num_seconds())
            }
            (Some(start), Some(end)) => {
                human_duration(end.signed_duration_since(start).num_seconds())
            }
        };
        // Like kubectl: the first condition of a type decides.
        let condition = |kind: &str| {
            items(status, "conditions")
                .iter()
                .find(|c| str_at(c, "type") == kind)
                .is_some_and(|c| str_at(c, "status") == "True")
        };
        let deleting = obj
            .get("metadata")
            .and_then(|m| m.get("deletionTimestamp"))
            .is_some_and(|d| !d.is_null());
        let state = if condition("Complete") {
            "Complete"
        } else if condition("Failed") {
            "Failed"
        } else if deleting {
            "Terminating"
        } else if condition("Suspended") {
            "Suspended"
        } else if condition("FailureTarget") {
            "FailureTarget"
        } else {
            "Running"
        };
        let mut row = name_age_row(obj, vec![json!(state), json!(completions), json!(duration)]);
        let (names, images) = container_cells(spec.get("template").and_then(|t| t.get("spec")));
        row.extend([
            names,
            images,
            json!(format_label_selector(spec.get("selector"))),
        ]);
        row
    }
}

/// `validateGeneratedSelector`: generated labels present and the selector their own.
fn validate_generated_selector(obj: &Value, causes: &mut Vec<Cause>) {
    let null = Value::Null;
    let spec = obj.get("spec").unwrap_or(&null);
    let Some(selector) = spec.get("selector").filter(|s| !s.is_null()) else {
        return;
    };
    if manual_selector(spec) {
        return;
    }
    let uid = meta::uid(obj);
    let name = meta::name(obj);
    if uid.is_empty() {
        causes.push(Cause::required("metadata.uid"));
    }
    let template = spec.get("template").unwrap_or(&null);
    let labels = template_labels(template);
    for (key, expected) in [
        (LEGACY_CONTROLLER_UID, uid),
        (LEGACY_JOB_NAME, name),
        (CONTROLLER_UID, uid),
        (JOB_NAME, name),
    ] {
        let field = format!("spec.template.metadata.labels[{key}]");
        match labels.and_then(|l| l.get(key)).and_then(Value::as_str) {
            None => causes.push(required_detail(field, &format!("must be '{expected}'"))),
            Some(v) if v != expected => causes.push(invalid_shown(
                field,
                &go_string_map(labels),
                &format!("must be '{expected}'"),
            )),
            Some(_) => {}
        }
    }
    let expected = json!({
        CONTROLLER_UID: uid, JOB_NAME: name, LEGACY_CONTROLLER_UID: uid, LEGACY_JOB_NAME: name,
    });
    if podspec::selector_is_valid(Some(selector))
        && !selector_matches(Some(selector), Some(&expected))
    {
        causes.push(invalid_shown(
            "spec.selector",
            &go_label_selector(Some(selector)),
            "`selector` not auto-generated",
        ));
    }
}

/// `validateJobSpec`: everything a job spec and a cron job's job template share.
pub(crate) fn validate_job_spec(spec: &Value, path: &str, causes: &mut Vec<Cause>) {
    let null = Value::Null;
    for field in [
        "parallelism",
        "completions",
        "activeDeadlineSeconds",
        "backoffLimit",
        "ttlSecondsAfterFinished",
        "backoffLimitPerIndex",
        "maxFailedIndexes",
    ] {
        nonnegative(spec, field, path, causes);
    }
    let has = |k: &str| spec.get(k).is_some_and(|v| !v.is_null());
    let int = |k: &str| spec.get(k).and_then(Value::as_i64);
    if has("maxFailedIndexes") && !has("backoffLimitPerIndex") {
        causes.push(required_detail(
            format!("{path}.backoffLimitPerIndex"),
            "when maxFailedIndexes is specified",
        ));
    }
    let mode = spec.get("completionMode").and_then(Value::as_str);
    if let Some(mode) = mode {
        if mode != "NonIndexed" && mode != "Indexed" {
            causes.push(Cause::not_supported(
                format!("{path}.completionMode"),
                &json!(mode),
                &["NonIndexed", "Indexed"],
            ));
        }
    }
    if mode == Some("Indexed") {
        if !has("completions") {
            causes.push(required_detail(
                format!("{path}.completions"),
                "when completion mode is Indexed",
            ));
        }
        if let Some(p) = int("parallelism").filter(|p| *p > MAX_PARALLELISM_INDEXED) {
            causes.push(Cause::invalid(
                format!("{path}.parallelism"),
                &json!(p),
                format!("must be less than or equal to {MAX_PARALLELISM_INDEXED} when completion mode is Indexed"),
            ));
        }
        if let (Some(c), Some(m)) = (int("completions"), int("maxFailedIndexes")) {
            if m > c {
                causes.push(Cause::invalid(
                    format!("{path}.maxFailedIndexes"),
                    &json!(m),
                    "must be less than or equal to completions",
                ));
            }
        }
        if let Some(m) = int("maxFailedIndexes").filter(|m| *m > MAX_FAILED_INDEXES) {
            causes.push(Cause::invalid(
                format!("{path}.maxFailedIndexes"),
                &json!(m),
                format!("must be less than or equal to {MAX_FAILED_INDEXES}"),
            ));
        }
    } else {
        for field in ["backoffLimitPerIndex", "maxFailedIndexes"] {
            if let Some(v) = int(field) {
                causes.push(Cause::invalid(
                    format!("{path}.{field}"),
                    &json!(v),
                    "requires indexed completion mode",
                ));
            }
        }
    }

    let failure_policy = spec.get("podFailurePolicy").filter(|p| !p.is_null());
    if let Some(pfp) = failure_policy {
        validate_pod_failure_policy(spec, pfp, &format!("{path}.podFailurePolicy"), causes);
    }
    if let Some(sp) = spec.get("successPolicy").filter(|p| !p.is_null()) {
        if mode != Some("Indexed") {
            causes.push(Cause::invalid(
                format!("{path}.successPolicy"),
                sp,
                "requires indexed completion mode",
            ));
        } else if items(sp, "rules").is_empty() {
            causes.push(required_detail(
                format!("{path}.successPolicy.rules"),
                "at least one rules must be specified when the successPolicy is specified",
            ));
        }
    }
    if let Some(prp) = spec.get("podReplacementPolicy").and_then(Value::as_str) {
        let p = format!("{path}.podReplacementPolicy");
        if failure_policy.is_some() {
            if prp != "Failed" {
                causes.push(Cause::not_supported(p, &json!(prp), &["Failed"]));
            }
        } else if prp != "Failed" && prp != "TerminatingOrFailed" {
            causes.push(Cause::not_supported(
                p,
                &json!(prp),
                &["Failed", "TerminatingOrFailed"],
            ));
        }
    }

    let template = spec.get("template").unwrap_or(&null);
    let tpath = format!("{path}.template");
    causes.extend(podspec::validate_pod_template(
        template,
        &tpath,
        &Default::default(),
    ));
    let rp = template
        .get("spec")
        .map_or("", |s| str_at(s, "restartPolicy"));
    let rp_path = format!("{tpath}.spec.restartPolicy");
    if rp == "Always" || rp.is_empty() {
        causes.push(required_detail(
            rp_path,
            "valid values: \"OnFailure\", \"Never\"",
        ));
    } else if rp != "OnFailure" && rp != "Never" {
        causes.push(Cause::not_supported(
            rp_path,
            &json!(rp),
            &["OnFailure", "Never"],
        ));
    } else if failure_policy.is_some() && rp != "Never" {
        causes.push(Cause::invalid(
            rp_path,
            &json!(rp),
            "only \"Never\" is supported when podFailurePolicy is specified",
        ));
    }
}

fn validate_pod_failure_policy(spec: &Value, pfp: &Value, path: &str, causes: &mut Vec<Cause>) {
    let rules = items(pfp, "rules");
    if rules.len() > 20 {
        causes.push(Cause::new(
            "FieldValueTooMany",
            format!("{path}.rules"),
            format!("Too many: {}: must have at most 20 items", rules.len()),
        ));
    }
    let pod_spec = spec
        .get("template")
        .and_then(|t| t.get("spec"))
        .unwrap_or(&Value::Null);
    let names: Vec<&str> = items(pod_spec, "containers")
        .iter()
        .chain(items(pod_spec, "initContainers"))
        .map(|c| str_at(c, "name"))
        .collect();
    const ACTIONS: &[&str] = &["Count", "FailIndex", "FailJob", "Ignore"];
    for (i, rule) in rules.iter().enumerate() {
        let rp = format!("{path}.rules[{i}]");
        match str_at(rule, "action") {
            "" => causes.push(required_detail(
                format!("{rp}.action"),
                "valid values: [\"Count\" \"FailIndex\" \"FailJob\" \"Ignore\"]",
            )),
            "FailIndex" if spec.get("backoffLimitPerIndex").is_none_or(Value::is_null) => {
                causes.push(Cause::invalid(
                    format!("{rp}.action"),
                    &json!("FailIndex"),
                    "requires the backoffLimitPerIndex to be set",
                ));
            }
            a if !ACTIONS.contains(&a) => causes.push(Cause::not_supported(
                format!("{rp}.action"),
                &json!(a),
                ACTIONS,
            )),
            _ => {}
        }
        let exit_codes = rule.get("onExitCodes").filter(|e| !e.is_null());
        let conditions = items(rule, "onPodConditions");
        if let Some(ec) = exit_codes {
            let ep = format!("{rp}.onExitCodes");
            let op = str_at(ec, "operator");
            if op.is_empty() {
                causes.push(required_detail(
                    format!("{ep}.operator"),
                    "valid values: [\"In\" \"NotIn\"]",
                ));
            } else if op != "In" && op != "NotIn" {
                causes.push(Cause::not_supported(
                    format!("{ep}.operator"),
                    &json!(op),
                    &["In", "NotIn"],
                ));
            }
            if let Some(cn) = ec.get("containerName").and_then(Value::as_str) {
                if !names.contains(&cn) {
                    causes.push(Cause::invalid(
                        format!("{ep}.containerName"),
                        &json!(cn),
                        "must be one of the container or initContainer names in the pod template",
                    ));
                }
            }
            let values: Vec<i64> = items(ec, "values")
                .iter()
                .filter_map(Value::as_i64)
                .collect();
            if values.is_empty() {
                causes.push(invalid_shown(
                    format!("{ep}.values"),
                    "[]int32(nil)",
                    "at least one value is required",
                ));
            }
            for (j, v) in values.iter().enumerate() {
                if op == "In" && *v == 0 {
                    causes.push(Cause::invalid(
                        format!("{ep}.values[{j}]"),
                        &json!(v),
                        "must not be 0 for the In operator",
                    ));
                }
                if values[..j].contains(v) {
                    causes.push(Cause::duplicate(format!("{ep}.values[{j}]"), &json!(v)));
                }
            }
            if values.windows(2).any(|w| w[0] > w[1]) {
                causes.push(Cause::invalid(
                    format!("{ep}.values"),
                    &json!(values),
                    "must be ordered",
                ));
            }
        }
        for (j, pattern) in conditions.iter().enumerate() {
            let pp = format!("{rp}.onPodConditions[{j}]");
            let t = str_at(pattern, "type");
            for msg in validation::qualified_name(t) {
                causes.push(Cause::invalid(format!("{pp}.type"), &json!(t), msg));
            }
            let s = str_at(pattern, "status");
            if !["False", "True", "Unknown"].contains(&s) {
                causes.push(Cause::not_supported(
                    format!("{pp}.status"),
                    &json!(s),
                    &["False", "True", "Unknown"],
                ));
            }
        }
        if exit_codes.is_some() && !conditions.is_empty() {
            causes.push(invalid_shown(
                &rp,
                "",
                "specifying both OnExitCodes and OnPodConditions is not supported",
            ));
        }
        if exit_codes.is_none() && conditions.is_empty() {
            causes.push(invalid_shown(
                &rp,
                "",
                "specifying one of OnExitCodes and OnPodConditions is required",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> Value {
        json!({"metadata": {"name": "pi", "uid": "0f1e", "creationTimestamp": "2020-01-01T00:00:00Z"},
               "spec": {"template": {"spec": {"restartPolicy": "Never",
                   "containers": [{"name": "pi", "image": "perl:5.34"}]}}}})
    }

    fn created() -> Value {
        let mut j = job();
        RESOURCE.strategy.prepare_for_create(&mut j);
        RESOURCE.strategy.default(&mut j);
        j
    }

    #[test]
    fn defaults_and_generated_selector() {
        let j = created();
        let s = &j["spec"];
        assert_eq!(s["completions"], 1);
        assert_eq!(s["parallelism"], 1);
        assert_eq!(s["backoffLimit"], 6);
        assert_eq!(s["completionMode"], "NonIndexed");
        assert_eq!(s["suspend"], false);
        assert_eq!(s["podReplacementPolicy"], "TerminatingOrFailed");
        assert_eq!(s["manualSelector"], false);
        assert_eq!(
            s["selector"],
            json!({"matchLabels": {"batch.kubernetes.io/controller-uid": "0f1e"}})
        );
        let labels = json!({"batch.kubernetes.io/controller-uid": "0f1e", "batch.kubernetes.io/job-name": "pi",
                            "controller-uid": "0f1e", "job-name": "pi"});
        assert_eq!(s["template"]["metadata"]["labels"], labels);
        assert_eq!(j["metadata"]["labels"], labels);
        assert_eq!(j["status"], json!({}));
        assert!(
            RESOURCE.strategy.validate(&j).is_empty(),
            "{:?}",
            RESOURCE.strategy.validate(&j)
        );
        let mut again = j.clone();
        RESOURCE.strategy.default(&mut again);
        assert_eq!(again, j);
    }

    #[test]
    fn user_labels_stay_on_the_job() {
        let mut j = job();
        j["spec"]["template"]["metadata"] = json!({"labels": {"app": "pi"}});
        RESOURCE.strategy.default(&mut j);
        assert_eq!(j["metadata"]["labels"], json!({"app": "pi"}));
    }

    #[test]
    fn restart_policy_always_is_rejected() {
        let mut j = job();
        j["spec"]["template"]["spec"]["restartPolicy"] = json!("Always");
        RESOURCE.strategy.default(&mut j);
        let shown: Vec<String> = RESOURCE
            .strategy
            .validate(&j)
            .iter()
            .map(Cause::display)
            .collect();
        assert_eq!(
            shown,
            vec!["spec.template.spec.restartPolicy: Required value: valid values: \"OnFailure\", \"Never\"".to_string()]
        );
    }

    #[test]
    fn manual_selector_must_match() {
        let mut j = job();
        j["spec"]["manualSelector"] = json!(true);
        j["spec"]["selector"] = json!({"matchLabels": {"app": "x"}});
        RESOURCE.strategy.default(&mut j);
        let fields: Vec<String> = RESOURCE
            .strategy
            .validate(&j)
            .into_iter()
            .map(|c| c.field)
            .collect();
        assert_eq!(fields, vec!["spec.template.metadata.labels"]);
    }

    #[test]
    fn template_and_selector_are_immutable() {
        let old = created();
        let mut new = old.clone();
        new["spec"]["parallelism"] = json!(2);
        assert!(RESOURCE.strategy.validate_update(&new, &old).is_empty());
        new["spec"]["template"]["spec"]["containers"][0]["image"] = json!("perl:5.36");
        let causes = RESOURCE.strategy.validate_update(&new, &old);
        assert_eq!(causes.len(), 1);
        assert_eq!(causes[0].field, "spec.template");
        assert!(causes[0].message.ends_with("field is immutable"));

        let mut suspended = old.clone();
        suspended["spec"]["suspend"] = json!(true);
        let mut moved = suspended.clone();
        moved["spec"]["template"]["spec"]["nodeSelector"] = json!({"zone": "a"});
        assert!(RESOURCE
            .strategy
            .validate_update(&moved, &suspended)
            .is_empty());
    }

    #[test]
    fn table_row() {
        let mut j = created();
        j["status"] = json!({"succeeded": 1, "startTime": "2020-01-01T00:00:00Z",
            "completionTime": "2020-01-01T00:00:07Z", "conditions": [{"type": "Complete", "status": "True"}]});
        let row = RESOURCE.strategy.row(&j);
        assert_eq!(row.len(), RESOURCE.strategy.columns().len());
        assert_eq!(&row[1..4], &[json!("Complete"), json!("1/1"), json!("7s")]);
        assert_eq!(row[7], "batch.kubernetes.io/controller-uid=0f1e");
        assert_eq!(
            RESOURCE.strategy.selectable_fields(&j),
            vec![("status.successful", "1".to_string())]
        );
        j["status"] = json!({});
        assert_eq!(RESOURCE.strategy.row(&j)[1], "Running");
    }
}
