//! admissionregistration.k8s.io/v1 MutatingWebhookConfiguration and
//! ValidatingWebhookConfiguration.
//!
//! Both kinds are a list of webhooks: where to send an AdmissionReview (`clientConfig`: an
//! `https` URL or a Service), which requests (`rules`, `namespaceSelector`,
//! `objectSelector`, `matchPolicy`) and what a failed call means (`failurePolicy`,
//! `timeoutSeconds`). They share every rule but `reinvocationPolicy` (mutating only), so
//! they share this file. Defaults and validation follow Kubernetes' v1 `SetDefaults_*`
//! and `ValidateMutatingWebhookConfiguration`/`ValidateValidatingWebhookConfiguration`,
//! with two deliberate differences: `admissionReviewVersions` must include `v1` (the
//! only version Keelson sends), and `matchConditions` may not use the `authorizer`
//! variable (Keelson does not bind it). [`compile_match_condition`] is the one place a
//! match condition is compiled: here to validate it, in the apiserver's webhook
//! admission plugin (which reads these objects from the watch cache) to evaluate it.

use crate::podspec::{ensure_object, items, str_at};
use crate::strategy::{name_age_columns, name_age_row, Strategy};
use crate::table::{Column, TableRow};
use crate::{ResourceType, Root, Typed};
use keelson_apimachinery::selector::LabelSelector;
use keelson_apimachinery::{validation, Cause};
use serde_json::{json, Value};

pub static MUTATING: ResourceType = ResourceType {
    group: "admissionregistration.k8s.io",
    version: "v1",
    kind: "MutatingWebhookConfiguration",
    plural: "mutatingwebhookconfigurations",
    singular: "mutatingwebhookconfiguration",
    namespaced: false,
    short_names: &[],
    categories: &["api-extensions"],
    subresources: &[],
    strategy: &WebhookConfigurations { mutating: true },
    typed: Some(Typed::of::<
        k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration,
    >()),
    merge: Some(Root::WebhookConfiguration),
};

pub static VALIDATING: ResourceType = ResourceType {
    group: "admissionregistration.k8s.io",
    version: "v1",
    kind: "ValidatingWebhookConfiguration",
    plural: "validatingwebhookconfigurations",
    singular: "validatingwebhookconfiguration",
    namespaced: false,
    short_names: &[],
    categories: &["api-extensions"],
    subresources: &[],
    strategy: &WebhookConfigurations { mutating: false },
    typed: Some(Typed::of::<
        k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration,
    >()),
    merge: Some(Root::WebhookConfiguration),
};

struct WebhookConfigurations {
    mutating: bool,
}

pub const OPERATIONS: &[&str] = &["*", "CREATE", "UPDATE", "DELETE", "CONNECT"];
const SCOPES: &[&str] = &["*", "Cluster", "Namespaced"];
const FAILURE_POLICIES: &[&str] = &["Fail", "Ignore"];
const MATCH_POLICIES: &[&str] = &["Equivalent", "Exact"];
const REINVOCATION_POLICIES: &[&str] = &["IfNeeded", "Never"];
/// v1 accepts only side-effect classes that say what happens on dry run.
const SIDE_EFFECTS: &[&str] = &["None", "NoneOnDryRun"];
const REVIEW_VERSIONS: &[&str] = &["v1", "v1beta1"];

fn set_default(obj: &mut serde_json::Map<String, Value>, key: &str, value: Value) {
    if obj.get(key).is_none_or(Value::is_null) {
        obj.insert(key.into(), value);
    }
}

impl WebhookConfigurations {
    fn default_webhook(&self, hook: &mut Value) {
        let h = ensure_object(hook);
        set_default(h, "failurePolicy", json!("Fail"));
        set_default(h, "matchPolicy", json!("Equivalent"));
        set_default(h, "namespaceSelector", json!({}));
        set_default(h, "objectSelector", json!({}));
        set_default(h, "timeoutSeconds", json!(10));
        if self.mutating {
            set_default(h, "reinvocationPolicy", json!("Never"));
        }
        if let Some(rules) = h.get_mut("rules").and_then(Value::as_array_mut) {
            for rule in rules.iter_mut().filter(|r| r.is_object()) {
                set_default(ensure_object(rule), "scope", json!("*"));
            }
        }
        if let Some(service) = h
            .get_mut("clientConfig")
            .and_then(|c| c.get_mut("service"))
            .filter(|s| s.is_object())
        {
            set_default(ensure_object(service), "port", json!(443));
        }
    }

    fn validate_webhook(&self, hook: &Value, path: &str, out: &mut Vec<Cause>) {
        let name = str_at(hook, "name");
        let at = |f: &str| format!("{path}.{f}");
        if name.is_empty() {
            out.push(Cause::required(at("name")));
        } else {
            for msg in fully_qualified_name(name) {
                out.push(Cause::invalid(at("name"), &json!(name), msg));
            }
        }
        validate_review_versions(
            hook.get("admissionReviewVersions"),
            &at("admissionReviewVersions"),
            out,
        );
        for (i, rule) in items(hook, "rules").iter().enumerate() {
            validate_rule(rule, &format!("{path}.rules[{i}]"), out);
        }
        let one_of = |key: &str, allowed: &[&str], out: &mut Vec<Cause>| {
            if let Some(v) = hook.get(key).filter(|v| !v.is_null()) {
                if !v.as_str().is_some_and(|s| allowed.contains(&s)) {
                    out.push(Cause::not_supported(at(key), v, allowed));
                }
            }
        };
        one_of("failurePolicy", FAILURE_POLICIES, out);
        one_of("matchPolicy", MATCH_POLICIES, out);
        if self.mutating {
            one_of("reinvocationPolicy", REINVOCATION_POLICIES, out);
        }
        match hook.get("sideEffects").filter(|v| !v.is_null()) {
            None => out.push(Cause::new(
                "FieldValueRequired",
                at("sideEffects"),
                format!(
                    "Required value: must specify one of {}",
                    SIDE_EFFECTS.join(", ")
                ),
            )),
            Some(_) => one_of("sideEffects", SIDE_EFFECTS, out),
        }
        if let Some(t) = hook.get("timeoutSeconds").and_then(Value::as_i64) {
            if !(1..=30).contains(&t) {
                out.push(Cause::invalid(
                    at("timeoutSeconds"),
                    &json!(t),
                    "the timeout value must be between 1 and 30 seconds",
                ));
            }
        }
        for key in ["namespaceSelector", "objectSelector"] {
            if let Some(sel) = hook.get(key).filter(|v| !v.is_null()) {
                if let Err(causes) = LabelSelector::from_object_at(sel, &at(key)) {
                    out.extend(causes);
                }
            }
        }
        validate_match_conditions(items(hook, "matchConditions"), &at("matchConditions"), out);
        validate_client_config(hook.get("clientConfig"), &at("clientConfig"), out);
    }
}

/// Kubernetes' limit on the `matchConditions` of one webhook.
pub const MAX_MATCH_CONDITIONS: usize = 64;

/// The variables a match condition may read. `authorizer` is declared (as Kubernetes
/// declares it) so that using it is refused with a clear message rather than as an
/// undeclared reference; `params` is not available to webhooks.
const MATCH_CONDITION_VARIABLES: &[&str] = &["object", "oldObject", "request", "authorizer"];

/// Compile a match condition's (trimmed) expression; the error is the detail
/// Kubernetes reports at `matchConditions[j].expression`.
pub fn compile_match_condition(expression: &str) -> Result<keelson_cel::Program, String> {
    let program = keelson_cel::Env::new(MATCH_CONDITION_VARIABLES)
        .compile(expression.trim())
        .map_err(|issues| format!("compilation failed: {issues}"))?;
    if program.uses("authorizer") {
        return Err("the authorizer variable is not supported by this apiserver: match conditions may read object, oldObject and request".into());
    }
    if program.literal_type().is_some_and(|t| t != "bool") {
        return Err("must evaluate to bool".into());
    }
    Ok(program)
}

/// `validateMatchConditions`: at most 64, names unique qualified names, expressions
/// that compile.
fn validate_match_conditions(conditions: &[Value], path: &str, out: &mut Vec<Cause>) {
    if conditions.len() > MAX_MATCH_CONDITIONS {
        out.push(Cause::new(
            "FieldValueTooMany",
            path,
            format!(
                "Too many: {}: must have at most {MAX_MATCH_CONDITIONS} items",
                conditions.len()
            ),
        ));
    }
    let mut names = std::collections::BTreeSet::new();
    for (j, condition) in conditions.iter().enumerate() {
        let at = |f: &str| format!("{path}[{j}].{f}");
        let expression = str_at(condition, "expression");
        if expression.trim().is_empty() {
            out.push(Cause::required(at("expression")));
        } else if let Err(detail) = compile_match_condition(expression) {
            out.push(Cause::invalid(
                at("expression"),
                &json!(expression.trim()),
                detail,
            ));
        }
        let name = str_at(condition, "name");
        if name.is_empty() {
            out.push(Cause::required(at("name")));
        } else {
            for msg in validation::qualified_name(name) {
                out.push(Cause::invalid(at("name"), &json!(name), msg));
            }
            if !names.insert(name) {
                out.push(Cause::duplicate(at("name"), &json!(name)));
            }
        }
    }
}

/// `IsFullyQualifiedName`: a DNS subdomain of at least three labels.
fn fully_qualified_name(name: &str) -> Vec<String> {
    let mut problems = validation::dns1123_subdomain(name);
    if problems.is_empty() && name.split('.').count() < 3 {
        problems.push("should be a domain with at least three segments separated by dots".into());
    }
    problems
}

fn validate_review_versions(versions: Option<&Value>, path: &str, out: &mut Vec<Cause>) {
    let listed: Vec<&str> = versions
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if listed.is_empty() {
        out.push(Cause::new(
            "FieldValueRequired",
            path,
            format!(
                "Required value: must specify one of {}",
                REVIEW_VERSIONS.join(", ")
            ),
        ));
        return;
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, v) in listed.iter().enumerate() {
        if !seen.insert(*v) {
            out.push(Cause::duplicate(format!("{path}[{i}]"), &json!(v)));
        }
        for msg in validation::dns1035_label(v) {
            out.push(Cause::invalid(format!("{path}[{i}]"), &json!(v), msg));
        }
    }
    if !listed.contains(&"v1") {
        out.push(Cause::invalid(
            path,
            &json!(listed),
            "must include v1: this apiserver sends admission.k8s.io/v1 AdmissionReviews only",
        ));
    }
}

/// A list where `*` stands alone.
fn validate_wildcard_list(values: &[&str], path: &str, what: &str, out: &mut Vec<Cause>) {
    if values.contains(&"*") && values.len() > 1 {
        out.push(Cause::invalid(
            path,
            &json!(values),
            format!("if '*' is present, must not specify other {what}"),
        ));
    }
}

fn strings<'a>(v: &'a Value, key: &str) -> Option<Vec<&'a str>> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
}

/// `validateRuleWithOperations`.
fn validate_rule(rule: &Value, path: &str, out: &mut Vec<Cause>) {
    let at = |f: &str| format!("{path}.{f}");
    let operations = strings(rule, "operations").unwrap_or_default();
    if operations.is_empty() {
        out.push(Cause::required(at("operations")));
    }
    for (i, op) in operations.iter().enumerate() {
        if !OPERATIONS.contains(op) {
            out.push(Cause::not_supported(
                format!("{}[{i}]", at("operations")),
                &json!(op),
                OPERATIONS,
            ));
        }
    }
    validate_wildcard_list(&operations, &at("operations"), "operations", out);

    let groups = strings(rule, "apiGroups").unwrap_or_default();
    if groups.is_empty() {
        out.push(Cause::required(at("apiGroups")));
    }
    validate_wildcard_list(&groups, &at("apiGroups"), "API groups", out);

    let versions = strings(rule, "apiVersions").unwrap_or_default();
    if versions.is_empty() {
        out.push(Cause::required(at("apiVersions")));
    }
    for (i, v) in versions.iter().enumerate() {
        if v.is_empty() {
            out.push(Cause::new(
                "FieldValueRequired",
                format!("{}[{i}]", at("apiVersions")),
                "Required value: version must not be empty",
            ));
        }
    }
    validate_wildcard_list(&versions, &at("apiVersions"), "API versions", out);

    let resources = strings(rule, "resources").unwrap_or_default();
    validate_resources(&resources, &at("resources"), out);

    if let Some(scope) = rule.get("scope").filter(|v| !v.is_null()) {
        if !scope.as_str().is_some_and(|s| SCOPES.contains(&s)) {
            out.push(Cause::not_supported(at("scope"), scope, SCOPES));
        }
    }
}

/// `validateResources`: `res`, `res/sub`, `res/*`, `*/sub`, `*`, `*/*`, without overlaps.
fn validate_resources(resources: &[&str], path: &str, out: &mut Vec<Cause>) {
    if resources.is_empty() {
        out.push(Cause::required(path));
        return;
    }
    // resource → subresources named for it ("" for the resource itself).
    let mut with_subs: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for (i, r) in resources.iter().enumerate() {
        let item = format!("{path}[{i}]");
        if r.is_empty() {
            out.push(Cause::required(item));
            continue;
        }
        if *r == "*/*" && resources.len() > 1 {
            out.push(Cause::invalid(
                &item,
                &json!(r),
                "if '*/*' is present, must not specify other resources",
            ));
            continue;
        }
        let (res, sub) = r.split_once('/').unwrap_or((r, ""));
        if sub.contains('/') || (r.contains('/') && (res.is_empty() || sub.is_empty())) {
            out.push(Cause::invalid(
                &item,
                &json!(r),
                "must be 'resource' or 'resource/subresource'",
            ));
            continue;
        }
        with_subs.entry(res).or_default().push(sub);
    }
    let star = with_subs.get("*").cloned().unwrap_or_default();
    for (res, subs) in &with_subs {
        if *res == "*" {
            continue;
        }
        if star.contains(&"") && subs.contains(&"") {
            out.push(Cause::invalid(
                path,
                &json!(res),
                "if '*' is present, must not specify other resources without subresources",
            ));
        }
        if subs.contains(&"*") && subs.len() > 1 {
            out.push(Cause::invalid(
                path,
                &json!(format!("{res}/*")),
                format!("if '{res}/*' is present, must not specify {res}'s other subresources"),
            ));
        }
        for sub in subs.iter().filter(|s| !s.is_empty() && **s != "*") {
            if star.contains(sub) {
                out.push(Cause::invalid(
                    path,
                    &json!(format!("{res}/{sub}")),
                    format!("if '*/{sub}' is present, must not specify {res}/{sub}"),
                ));
            }
        }
    }
}

/// `ValidateWebhookClientConfig` and `ValidateWebhookURL`/`ValidateWebhookService`.
fn validate_client_config(config: Option<&Value>, path: &str, out: &mut Vec<Cause>) {
    let null = Value::Null;
    let config = config.unwrap_or(&null);
    let url = config.get("url").and_then(Value::as_str);
    let service = config.get("service").filter(|s| !s.is_null());
    match (url, service) {
        (Some(_), Some(_)) | (None, None) => out.push(Cause::new(
            "FieldValueRequired",
            path,
            "Required value: exactly one of url or service is required",
        )),
        (Some(url), None) => validate_url(url, &format!("{path}.url"), out),
        (None, Some(service)) => validate_service(service, &format!("{path}.service"), out),
    }
    if let Some(bundle) = config
        .get("caBundle")
        .and_then(Value::as_str)
        .filter(|b| !b.is_empty())
    {
        use base64::Engine as _;
        let problem = match base64::engine::general_purpose::STANDARD.decode(bundle) {
            Err(_) => Some("must be base64-encoded PEM certificates".to_string()),
            Ok(pem) => keelson_pki::csr::certificates_problem(&pem),
        };
        if let Some(problem) = problem {
            out.push(Cause::new(
                "FieldValueInvalid",
                format!("{path}.caBundle"),
                format!("Invalid value: {problem}"),
            ));
        }
    }
}

fn validate_url(url: &str, path: &str, out: &mut Vec<Cause>) {
    let bad = |why: &str| Cause::invalid(path, &json!(url), why);
    let Some(rest) = url.strip_prefix("https://") else {
        out.push(bad("'https' is the only allowed URL scheme"));
        return;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        out.push(bad("user information is not permitted in the URL"));
    }
    let host = match authority.find(']') {
        Some(end) => &authority[..=end],
        None => authority.split(':').next().unwrap_or(""),
    };
    if host.is_empty() {
        out.push(bad("host must be specified"));
    }
    if rest.contains('#') {
        out.push(bad("fragments are not permitted in the URL"));
    }
    if rest.contains('?') {
        out.push(bad("query parameters are not permitted in the URL"));
    }
}

fn validate_service(service: &Value, path: &str, out: &mut Vec<Cause>) {
    let at = |f: &str| format!("{path}.{f}");
    for key in ["name", "namespace"] {
        let v = str_at(service, key);
        if v.is_empty() {
            out.push(Cause::new(
                "FieldValueRequired",
                at(key),
                format!("Required value: service {key} is required"),
            ));
        } else {
            for msg in validation::dns1123_label(v) {
                out.push(Cause::invalid(at(key), &json!(v), msg));
            }
        }
    }
    let p = str_at(service, "path");
    if !p.is_empty() && !p.starts_with('/') {
        out.push(Cause::invalid(
            at("path"),
            &json!(p),
            "must start with a '/'",
        ));
    }
    if let Some(port) = service.get("port").and_then(Value::as_i64) {
        if !(1..=65535).contains(&port) {
            out.push(Cause::invalid(
                at("port"),
                &json!(port),
                "port is not valid: must be between 1 and 65535, inclusive",
            ));
        }
    }
}

impl Strategy for WebhookConfigurations {
    fn tracks_generation(&self) -> bool {
        true
    }

    fn default(&self, obj: &mut Value) {
        if let Some(hooks) = obj.get_mut("webhooks").and_then(Value::as_array_mut) {
            for hook in hooks {
                self.default_webhook(hook);
            }
        }
    }

    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut out = Vec::new();
        let mut names = std::collections::BTreeSet::new();
        for (i, hook) in items(obj, "webhooks").iter().enumerate() {
            let path = format!("webhooks[{i}]");
            let name = str_at(hook, "name");
            if !name.is_empty() && !names.insert(name) {
                out.push(Cause::duplicate(format!("{path}.name"), &json!(name)));
            }
            self.validate_webhook(hook, &path, &mut out);
        }
        out
    }

    fn columns(&self) -> Vec<Column> {
        name_age_columns(vec![Column::new(
            "Webhooks",
            "integer",
            "Webhooks indicates the number of webhooks registered in this configuration",
        )])
    }

    fn row(&self, obj: &Value) -> TableRow {
        name_age_row(obj, vec![json!(items(obj, "webhooks").len())])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(causes: Vec<Cause>) -> Vec<String> {
        causes.iter().map(Cause::display).collect()
    }

    fn config(rt: &ResourceType, hooks: Value) -> Value {
        let mut c = json!({"metadata": {"name": "c"}, "webhooks": hooks});
        rt.strategy.default(&mut c);
        c
    }

    fn hook() -> Value {
        json!({"name": "a.example.com", "admissionReviewVersions": ["v1"], "sideEffects": "None",
            "clientConfig": {"url": "https://127.0.0.1:8443/hook"},
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"]}]})
    }

    #[test]
    fn defaults_are_kubernetes_v1_defaults() {
        let mut h = hook();
        h["clientConfig"] = json!({"service": {"name": "s", "namespace": "n"}});
        let c = config(&MUTATING, json!([h]));
        let w = &c["webhooks"][0];
        assert_eq!(w["failurePolicy"], "Fail");
        assert_eq!(w["matchPolicy"], "Equivalent");
        assert_eq!(w["namespaceSelector"], json!({}));
        assert_eq!(w["objectSelector"], json!({}));
        assert_eq!(w["timeoutSeconds"], 10);
        assert_eq!(w["reinvocationPolicy"], "Never");
        assert_eq!(w["rules"][0]["scope"], "*");
        assert_eq!(w["clientConfig"]["service"]["port"], 443);
        assert!(
            MUTATING.strategy.validate(&c).is_empty(),
            "{:?}",
            MUTATING.strategy.validate(&c)
        );
        let v = config(&VALIDATING, json!([hook()]));
        assert!(v["webhooks"][0].get("reinvocationPolicy").is_none());
        assert_eq!(VALIDATING.strategy.row(&v)[1], json!(1));
    }

    #[test]
    fn invalid_webhooks_are_refused_with_kubernetes_words() {
        let mut h = hook();
        h["name"] = json!("short.name");
        h["timeoutSeconds"] = json!(31);
        h["sideEffects"] = json!("Unknown");
        h["admissionReviewVersions"] = json!(["v1beta1"]);
        h["clientConfig"] = json!({"url": "http://x/y"});
        h["rules"][0]["operations"] = json!(["*", "CREATE"]);
        h["rules"][0]["resources"] = json!([]);
        let c = config(&VALIDATING, json!([h, hook(), hook()]));
        assert_eq!(
            shown(VALIDATING.strategy.validate(&c)),
            [
                "webhooks[0].name: Invalid value: \"short.name\": should be a domain with at least three segments separated by dots",
                "webhooks[0].admissionReviewVersions: Invalid value: [\"v1beta1\"]: must include v1: this apiserver sends admission.k8s.io/v1 AdmissionReviews only",
                "webhooks[0].rules[0].operations: Invalid value: [\"*\",\"CREATE\"]: if '*' is present, must not specify other operations",
                "webhooks[0].rules[0].resources: Required value",
                "webhooks[0].sideEffects: Unsupported value: \"Unknown\": supported values: \"None\", \"NoneOnDryRun\"",
                "webhooks[0].timeoutSeconds: Invalid value: 31: the timeout value must be between 1 and 30 seconds",
                "webhooks[0].clientConfig.url: Invalid value: \"http://x/y\": 'https' is the only allowed URL scheme",
                "webhooks[2].name: Duplicate value: \"a.example.com\"",
            ]
        );
    }

    #[test]
    fn client_config_needs_exactly_one_target_and_a_pem_bundle() {
        let mut h = hook();
        h["clientConfig"] = json!({"caBundle": "bm90IHBlbQ=="});
        let c = config(&VALIDATING, json!([h]));
        assert_eq!(
            shown(VALIDATING.strategy.validate(&c)),
            [
                "webhooks[0].clientConfig: Required value: exactly one of url or service is required",
                "webhooks[0].clientConfig.caBundle: Invalid value: must contain at least one CERTIFICATE PEM block",
            ]
        );
        let mut s = hook();
        s["clientConfig"] =
            json!({"service": {"name": "", "namespace": "n", "port": 0, "path": "x"}});
        let c = config(&VALIDATING, json!([s]));
        assert_eq!(
            shown(VALIDATING.strategy.validate(&c)),
            [
                "webhooks[0].clientConfig.service.name: Required value: service name is required",
                "webhooks[0].clientConfig.service.path: Invalid value: \"x\": must start with a '/'",
                "webhooks[0].clientConfig.service.port: Invalid value: 0: port is not valid: must be between 1 and 65535, inclusive",
            ]
        );
    }

    #[test]
    fn match_conditions_are_named_compiled_and_limited() {
        let mut h = hook();
        h["matchConditions"] = json!([
            {"name": "not-kube-system", "expression": " request.namespace != 'kube-system' "},
            {"name": "labelled", "expression": "has(object.metadata.labels) && oldObject == null"},
        ]);
        let c = config(&MUTATING, json!([h]));
        assert!(MUTATING.strategy.validate(&c).is_empty());

        h["matchConditions"] = json!([
            {"name": "a", "expression": "object.metadata.name == "},
            {"name": "a", "expression": "params.x"},
            {"name": "bad name!", "expression": "  "},
            {"expression": "authorizer.requestResource.check('get').allowed()"},
            {"name": "b", "expression": "'not a bool'"},
        ]);
        let c = config(&VALIDATING, json!([h]));
        assert_eq!(
            shown(VALIDATING.strategy.validate(&c)),
            [
                "webhooks[0].matchConditions[0].expression: Invalid value: \"object.metadata.name ==\": compilation failed: ERROR: <input>:1:24: Syntax error: mismatched input '<EOF>' expecting {'[', '{', '(', '.', '-', '!', 'true', 'false', 'null', NUM_FLOAT, NUM_INT, NUM_UINT, STRING, BYTES, IDENTIFIER}\n | object.metadata.name ==\n | .......................^",
                "webhooks[0].matchConditions[1].expression: Invalid value: \"params.x\": compilation failed: ERROR: <input>:1:1: undeclared reference to 'params' (in container '')\n | params.x\n | ^",
                "webhooks[0].matchConditions[1].name: Duplicate value: \"a\"",
                "webhooks[0].matchConditions[2].expression: Required value",
                "webhooks[0].matchConditions[2].name: Invalid value: \"bad name!\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
                "webhooks[0].matchConditions[3].expression: Invalid value: \"authorizer.requestResource.check('get').allowed()\": the authorizer variable is not supported by this apiserver: match conditions may read object, oldObject and request",
                "webhooks[0].matchConditions[3].name: Required value",
                "webhooks[0].matchConditions[4].expression: Invalid value: \"'not a bool'\": must evaluate to bool",
            ]
        );

        let many: Vec<Value> = (0..=MAX_MATCH_CONDITIONS)
            .map(|j| json!({"name": format!("c{j}"), "expression": "true"}))
            .collect();
        h["matchConditions"] = json!(many);
        let c = config(&VALIDATING, json!([h]));
        assert_eq!(
            shown(VALIDATING.strategy.validate(&c)),
            ["webhooks[0].matchConditions: Too many: 65: must have at most 64 items"]
        );
    }

    #[test]
    fn resources_may_not_overlap_wildcards() {
        let mut out = Vec::new();
        validate_resources(&["*", "pods", "pods/status"], "r", &mut out);
        assert_eq!(
            shown(out),
            ["r: Invalid value: \"pods\": if '*' is present, must not specify other resources without subresources"]
        );
        let mut out = Vec::new();
        validate_resources(&["*/*", "pods"], "r", &mut out);
        assert_eq!(shown(out).len(), 1);
        let mut out = Vec::new();
        validate_resources(
            &["pods/status", "*/scale", "deployments", "a/b/c"],
            "r",
            &mut out,
        );
        assert_eq!(
            shown(out),
            ["r[3]: Invalid value: \"a/b/c\": must be 'resource' or 'resource/subresource'"]
        );
    }
}
