//! networking.k8s.io/v1 IngressClass.
//!
//! Which controller implements a class of Ingresses (`spec.controller`, a
//! domain-prefixed path such as `example.com/ingress-controller`) and where its extra
//! configuration lives (`spec.parameters`, scoped to the cluster by default). The
//! controller never changes; a spec change bumps the generation. A class annotated
//! `ingressclass.kubernetes.io/is-default-class: "true"` is the default. Follows
//! Kubernetes' `ValidateIngressClass`.

use crate::podspec::{ensure_object, str_at};
use crate::strategy::{name_age_columns, name_age_row, Strategy};
use crate::table::{Column, TableRow};
use crate::{ResourceType, Root, Typed};
use keelson_apimachinery::{validation, Cause};
use serde_json::{json, Value};

pub static RESOURCE: ResourceType = ResourceType {
    group: "networking.k8s.io",
    version: "v1",
    kind: "IngressClass",
    plural: "ingressclasses",
    singular: "ingressclass",
    namespaced: false,
    short_names: &[],
    categories: &[],
    subresources: &[],
    strategy: &IngressClasses,
    typed: Some(Typed::of::<k8s_openapi::api::networking::v1::IngressClass>()),
    merge: Some(Root::MetadataOnly),
};

struct IngressClasses;

/// `maxLenIngressClassController`.
const MAX_CONTROLLER: usize = 250;
const SCOPES: &[&str] = &["Cluster", "Namespace"];
/// `httpPathFmt`, the path part of a domain-prefixed path.
const HTTP_PATH_FMT: &str = r"[A-Za-z0-9/\-._~%!$&'()*+,;=:]+";

fn is_http_path(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/-._~%!$&'()*+,;=:".contains(c))
}

/// `IsDomainPrefixedPath`: `host/path`, host a DNS subdomain.
fn validate_domain_prefixed_path(value: &str, path: &str, out: &mut Vec<Cause>) {
    if value.is_empty() {
        out.push(Cause::required(path));
        return;
    }
    let Some((host, rest)) = value
        .split_once('/')
        .filter(|(h, r)| !h.is_empty() && !r.is_empty())
    else {
        out.push(Cause::invalid(
            path,
            &json!(value),
            "must be a domain-prefixed path (such as \"acme.io/foo\")",
        ));
        return;
    };
    for msg in validation::dns1123_subdomain(host) {
        out.push(Cause::invalid(path, &json!(host), msg));
    }
    if !is_http_path(rest) {
        out.push(Cause::invalid(
            path,
            &json!(rest),
            format!("Invalid path (regex used for validation is '{HTTP_PATH_FMT}')"),
        ));
    }
}

/// `validateIngressTypedLocalObjectReference`: an optional API group, a kind and a name.
pub(crate) fn validate_typed_reference(r: &Value, path: &str, out: &mut Vec<Cause>) {
    if let Some(group) = r.get("apiGroup").and_then(Value::as_str) {
        for msg in validation::dns1123_subdomain(group) {
            out.push(Cause::invalid(
                format!("{path}.apiGroup"),
                &json!(group),
                msg,
            ));
        }
    }
    for key in ["kind", "name"] {
        let v = str_at(r, key);
        if v.is_empty() {
            out.push(Cause::new(
                "FieldValueRequired",
                format!("{path}.{key}"),
                format!("Required value: {key} is required"),
            ));
        } else {
            for msg in validation::path_segment_name(v) {
                out.push(Cause::invalid(format!("{path}.{key}"), &json!(v), msg));
            }
        }
    }
}

fn validate_parameters(params: &Value, out: &mut Vec<Cause>) {
    let path = "spec.parameters";
    validate_typed_reference(params, path, out);
    let Some(scope) = params.get("scope").and_then(Value::as_str) else {
        out.push(Cause::required(format!("{path}.scope")));
        return;
    };
    let namespace = params.get("namespace").and_then(Value::as_str);
    match scope {
        "Namespace" => match namespace {
            None => out.push(Cause::new(
                "FieldValueRequired",
                format!("{path}.namespace"),
                "Required value: `parameters.scope` is set to 'Namespace'",
            )),
            Some(ns) => {
                for msg in validation::dns1123_label(ns) {
                    out.push(Cause::invalid(format!("{path}.namespace"), &json!(ns), msg));
                }
            }
        },
        "Cluster" if namespace.is_some() => out.push(Cause::forbidden(
            format!("{path}.namespace"),
            "`parameters.scope` is set to 'Cluster'",
        )),
        "Cluster" => {}
        other => out.push(Cause::not_supported(
            format!("{path}.scope"),
            &json!(other),
            SCOPES,
        )),
    }
}

impl Strategy for IngressClasses {
    fn tracks_generation(&self) -> bool {
        true
    }

    fn default(&self, obj: &mut Value) {
        let Some(params) = obj
            .pointer_mut("/spec/parameters")
            .filter(|p| p.is_object())
        else {
            return;
        };
        ensure_object(params)
            .entry("scope")
            .or_insert(json!("Cluster"));
    }

    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut out = Vec::new();
        let null = Value::Null;
        let spec = obj.get("spec").unwrap_or(&null);
        let controller = str_at(spec, "controller");
        if controller.len() > MAX_CONTROLLER {
            out.push(Cause::new(
                "FieldValueTooLong",
                "spec.controller",
                format!("Too long: may not be more than {MAX_CONTROLLER} bytes"),
            ));
        }
        validate_domain_prefixed_path(controller, "spec.controller", &mut out);
        if let Some(params) = spec.get("parameters").filter(|p| !p.is_null()) {
            validate_parameters(params, &mut out);
        }
        out
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        let controller = |o: &Value| {
            o.get("spec")
                .map_or("", |s| str_at(s, "controller"))
                .to_string()
        };
        if controller(new) != controller(old) {
            return vec![Cause::forbidden(
                "spec.controller",
                "may not change once set",
            )];
        }
        Vec::new()
    }

    fn columns(&self) -> Vec<Column> {
        name_age_columns(vec![
            Column::new(
                "Controller",
                "string",
                "Controller that is responsible for handling this class",
            ),
            Column::new(
                "Parameters",
                "string",
                "A reference to a resource with additional parameters",
            ),
        ])
    }

    fn row(&self, obj: &Value) -> TableRow {
        let null = Value::Null;
        let spec = obj.get("spec").unwrap_or(&null);
        let parameters = match spec.get("parameters").filter(|p| p.is_object()) {
            None => "<none>".to_string(),
            Some(p) => {
                let mut s = str_at(p, "kind").to_string();
                if let Some(group) = p.get("apiGroup").and_then(Value::as_str) {
                    s = format!("{s}.{group}");
                }
                format!("{s}/{}", str_at(p, "name"))
            }
        };
        name_age_row(
            obj,
            vec![json!(str_at(spec, "controller")), json!(parameters)],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(causes: Vec<Cause>) -> Vec<String> {
        causes.iter().map(Cause::display).collect()
    }

    fn class(spec: Value) -> Value {
        let mut c = json!({"metadata": {"name": "nginx"}, "spec": spec});
        RESOURCE.strategy.default(&mut c);
        c
    }

    #[test]
    fn parameters_scope_defaults_to_cluster() {
        let c = class(
            json!({"controller": "example.com/ingress", "parameters": {"kind": "Config", "name": "c"}}),
        );
        assert_eq!(c["spec"]["parameters"]["scope"], "Cluster");
        assert!(RESOURCE.strategy.validate(&c).is_empty());
        assert_eq!(RESOURCE.strategy.row(&c)[2], json!("Config/c"));
        let plain = class(json!({"controller": "example.com/ingress"}));
        assert!(plain["spec"].get("parameters").is_none());
        assert_eq!(RESOURCE.strategy.row(&plain)[2], json!("<none>"));
    }

    #[test]
    fn controller_is_a_domain_prefixed_path() {
        assert_eq!(
            shown(RESOURCE.strategy.validate(&class(json!({})))),
            ["spec.controller: Required value"]
        );
        assert_eq!(
            shown(RESOURCE.strategy.validate(&class(json!({"controller": "nginx"})))),
            ["spec.controller: Invalid value: \"nginx\": must be a domain-prefixed path (such as \"acme.io/foo\")"]
        );
        let scoped = class(json!({"controller": "example.com/x",
            "parameters": {"kind": "", "name": "c", "scope": "Namespace"}}));
        assert_eq!(
            shown(RESOURCE.strategy.validate(&scoped)),
            [
                "spec.parameters.kind: Required value: kind is required",
                "spec.parameters.namespace: Required value: `parameters.scope` is set to 'Namespace'",
            ]
        );
    }

    #[test]
    fn controller_may_not_change() {
        let old = class(json!({"controller": "example.com/a"}));
        let new = class(json!({"controller": "example.com/b"}));
        assert_eq!(
            shown(RESOURCE.strategy.validate_update(&new, &old)),
            ["spec.controller: Forbidden: may not change once set"]
        );
    }
}
