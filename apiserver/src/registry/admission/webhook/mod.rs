//! Admission webhooks: the MutatingAdmissionWebhook and ValidatingAdmissionWebhook
//! plugins (Kubernetes' `k8s.io/apiserver/pkg/admission/plugin/webhook`).
//!
//! - [`config`]: the configurations, followed from the watch cache.
//! - [`matching`]: which hooks a request goes to.
//! - [`conditions`]: the hooks' `matchConditions` (CEL), evaluated last.
//! - [`review`]: the AdmissionReview sent and the checks its response must pass.
//! - [`call`]: the HTTPS call (URL or Service), within the hook's timeout.
//!
//! Mutating hooks are called one after another, in configuration-name order, each
//! seeing the object as the previous one left it; a hook with
//! `reinvocationPolicy: IfNeeded` is called once more when a later hook changed the
//! object. Validating hooks are called all at once; any refusal refuses the request. A
//! hook that cannot be called, times out or answers something that is not a valid
//! AdmissionReview follows its `failurePolicy`: `Ignore` lets the request through,
//! `Fail` refuses it with 500 `Internal error occurred: failed calling webhook ...`.

pub mod call;
pub mod conditions;
pub mod config;
pub mod matching;
pub mod review;

use crate::registry::{decode_kv, fields, DeleteOptions, FieldValidation, UserInfo, WriteOptions};
use crate::storage::Storage;
use crate::watch_cache::WatchCache;
use config::{Configurations, Hook};
use keelson_apimachinery::{meta, patch::json_patch, ApiError, Cause};
use keelson_resources::ResourceType;
use matching::NamespaceLabels;
use serde_json::Value;
use std::collections::HashSet;
use std::sync::Arc;
use tokio::sync::OnceCell;

/// The admission operation of a request (CONNECT is not sent to webhooks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
    Delete,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
        }
    }
}

/// What a webhook is told about a request, besides the new object.
pub struct Attributes<'a> {
    pub operation: Operation,
    pub rt: &'a ResourceType,
    pub subresource: &'a str,
    pub namespace: String,
    /// Empty for a create with `generateName`.
    pub name: String,
    pub user: &'a UserInfo,
    pub dry_run: bool,
    /// The request's CreateOptions, UpdateOptions or DeleteOptions.
    pub options: Value,
    pub old_object: Option<&'a Value>,
}

impl<'a> Attributes<'a> {
    /// A create or an update of `object` (named by it) through `opts`.
    pub fn write(
        operation: Operation,
        rt: &'a ResourceType,
        subresource: &'a str,
        object: &Value,
        old_object: Option<&'a Value>,
        opts: &'a WriteOptions,
    ) -> Self {
        let kind = match operation {
            Operation::Create => "CreateOptions",
            _ => "UpdateOptions",
        };
        Attributes {
            operation,
            rt,
            subresource,
            namespace: meta::namespace(object).to_string(),
            name: meta::name(object).to_string(),
            user: &opts.user,
            dry_run: opts.dry_run,
            options: options(kind, opts.dry_run, &opts.field_manager),
            old_object,
        }
    }

    /// The deletion of `old_object` through `opts`.
    pub fn delete(rt: &'a ResourceType, old_object: &'a Value, opts: &'a DeleteOptions) -> Self {
        let mut o = options("DeleteOptions", opts.dry_run, "");
        if let Some(p) = &opts.propagation_policy {
            o["propagationPolicy"] = Value::from(p.as_str());
        }
        if let Some(g) = opts.grace_period_seconds {
            o["gracePeriodSeconds"] = Value::from(g);
        }
        Attributes {
            operation: Operation::Delete,
            rt,
            subresource: "",
            namespace: meta::namespace(old_object).to_string(),
            name: meta::name(old_object).to_string(),
            user: &opts.user,
            dry_run: opts.dry_run,
            options: o,
            old_object: Some(old_object),
        }
    }
}

/// `Internal error occurred: <msg>`, Kubernetes' `NewInternalError`.
pub fn internal_error(msg: impl Into<String>) -> ApiError {
    let msg = msg.into();
    let mut e = ApiError::internal(format!("Internal error occurred: {msg}"));
    e.causes = vec![Cause::new("", "", msg)];
    e
}

/// How one call went wrong.
enum Failure {
    /// The hook could not be called or answered nonsense: its failure policy decides.
    Calling(String),
    /// A refusal, or an error no failure policy excuses.
    Refused(ApiError),
}

/// The two webhook plugins' shared state; cheap to clone.
#[derive(Clone)]
pub struct Webhooks {
    storage: Storage,
    configurations: Arc<Configurations>,
}

impl Webhooks {
    pub fn new(storage: Storage, cache: Arc<WatchCache>) -> Self {
        let configurations = Arc::new(Configurations::default());
        crate::authz::follow::follow(configurations.clone(), cache, storage.clone());
        Webhooks {
            storage,
            configurations,
        }
    }

    /// Whether any webhook configuration exists.
    pub fn configured(&self) -> bool {
        !self.configurations.is_empty()
    }

    /// The object the namespace selector is matched against. A looked-up namespace is
    /// read once per admission pass (`looked_up`): every hook of a request asks for the
    /// same one.
    async fn namespace_labels<'a>(
        &self,
        which: NamespaceLabels<'a>,
        looked_up: &'a OnceCell<Value>,
    ) -> Result<Option<&'a Value>, ApiError> {
        match which {
            NamespaceLabels::Skip => Ok(None),
            NamespaceLabels::Own(obj) => Ok(Some(obj)),
            NamespaceLabels::Lookup(ns) => looked_up
                .get_or_try_init(|| async {
                    let rt =
                        keelson_resources::find("", "namespaces").expect("namespaces are served");
                    match self.storage.get(&crate::registry::key(rt, "", ns)).await {
                        Ok(Some(kv)) => decode_kv(&kv),
                        Ok(None) => Err(internal_error(format!("namespaces \"{ns}\" not found"))),
                        Err(e) => Err(internal_error(e.to_string())),
                    }
                })
                .await
                .map(Some),
        }
    }

    /// Whether `hook` is called for this request (Kubernetes' `ShouldCallHook`).
    async fn should_call(
        &self,
        hook: &Hook,
        attrs: &Attributes<'_>,
        object: Option<&Value>,
        namespace: &OnceCell<Value>,
    ) -> Result<bool, ApiError> {
        if !matching::matches_without_namespace(hook, attrs, object) {
            return Ok(false);
        }
        let which = matching::namespace_labels_needed(hook, attrs, object);
        if let Some(ns) = self.namespace_labels(which, namespace).await? {
            if !hook.namespace_selector.matches_object(ns) {
                return Ok(false);
            }
        }
        Self::conditions_hold(hook, attrs, object)
    }

    /// Whether the hook's match conditions all hold; an evaluation error refuses the
    /// request under `failurePolicy: Fail` (403, as Kubernetes) and skips the hook under
    /// `Ignore`.
    fn conditions_hold(
        hook: &Hook,
        attrs: &Attributes<'_>,
        object: Option<&Value>,
    ) -> Result<bool, ApiError> {
        if hook.match_conditions.is_empty() {
            return Ok(true);
        }
        let request = Value::Object(review::admission_request(attrs));
        match conditions::evaluate(&hook.match_conditions, &request, object, attrs.old_object) {
            conditions::Decision::Call => Ok(true),
            conditions::Decision::Skip(_) => Ok(false),
            conditions::Decision::Error(e) if hook.ignore_failures => {
                tracing::warn!(webhook = %hook.name, error = %e, "failed evaluating match conditions, skipping the webhook");
                Ok(false)
            }
            conditions::Decision::Error(e) => {
                tracing::warn!(webhook = %hook.name, error = %e, "failed evaluating match conditions, failing closed");
                Err(super::forbidden(attrs.rt, &attrs.name, &e))
            }
        }
    }

    /// One call; the verdict, or why it failed.
    async fn call(
        &self,
        hook: &Hook,
        attrs: &Attributes<'_>,
        object: Option<&Value>,
        mutating: bool,
        warnings: &mut Vec<String>,
    ) -> Result<review::Verdict, Failure> {
        if let Some(refusal) = dry_run_refusal(hook, attrs.dry_run) {
            return Err(Failure::Refused(refusal));
        }
        let uid = uuid::Uuid::new_v4().to_string();
        let request = review::request(attrs, &uid, object);
        let body = call::post(&self.storage, hook, &request)
            .await
            .map_err(Failure::Calling)?;
        let verdict = review::verify(&body, &uid, mutating)
            .map_err(|e| Failure::Calling(format!("received invalid webhook response: {e}")))?;
        warnings.extend(verdict.warnings.iter().cloned());
        if !verdict.allowed {
            return Err(Failure::Refused(review::denied(
                &hook.name,
                verdict.status.as_ref(),
            )));
        }
        Ok(verdict)
    }

    /// What a failed call means under the hook's failure policy: `Ok` to go on.
    fn excuse(hook: &Hook, failure: Failure) -> Result<(), ApiError> {
        match failure {
            Failure::Calling(why) if hook.ignore_failures => {
                tracing::warn!(webhook = %hook.name, error = %why, "failed calling webhook, failing open");
                Ok(())
            }
            Failure::Calling(why) => Err(internal_error(format!(
                "failed calling webhook {:?}: {why}",
                hook.name
            ))),
            Failure::Refused(e) => Err(e),
        }
    }

    /// Call one mutating hook and apply its patch; whether the object changed.
    async fn mutate_once(
        &self,
        hook: &Hook,
        attrs: &Attributes<'_>,
        object: &mut Option<&mut Value>,
        warnings: &mut Vec<String>,
    ) -> Result<bool, ApiError> {
        let verdict = match self
            .call(hook, attrs, object.as_deref(), true, warnings)
            .await
        {
            Ok(v) => v,
            Err(failure) => return Self::excuse(hook, failure).map(|()| false),
        };
        let Some(patch) = verdict
            .patch
            .filter(|p| p.as_array().is_some_and(|a| !a.is_empty()))
        else {
            return Ok(false);
        };
        apply_patch(attrs.rt, &hook.name, object.as_deref_mut(), &patch)
    }

    /// The mutating webhooks, in order, on `object` (None for DELETE); whether they
    /// changed it. Their warnings are appended to `warnings`.
    pub async fn mutate(
        &self,
        attrs: &Attributes<'_>,
        mut object: Option<&mut Value>,
        warnings: &mut Vec<String>,
    ) -> Result<bool, ApiError> {
        if matching::exempt(attrs) {
            return Ok(false);
        }
        let hooks = self.configurations.mutating();
        if hooks.is_empty() {
            return Ok(false);
        }
        let mut changed = false;
        // Hooks with `reinvocationPolicy: IfNeeded` called so far, and those a later
        // change asks to call again.
        let mut reinvocable: Vec<&str> = Vec::new();
        let mut again: HashSet<&str> = HashSet::new();
        let namespace = OnceCell::new();
        for hook in &hooks {
            if !self
                .should_call(hook, attrs, object.as_deref(), &namespace)
                .await?
            {
                continue;
            }
            if self.mutate_once(hook, attrs, &mut object, warnings).await? {
                changed = true;
                again.extend(reinvocable.iter().copied());
            }
            if hook.reinvoke_if_needed {
                reinvocable.push(&hook.id);
            }
        }
        // One more round for the hooks whose input changed after they ran.
        for hook in hooks.iter().filter(|h| again.contains(h.id.as_str())) {
            if self
                .should_call(hook, attrs, object.as_deref(), &namespace)
                .await?
            {
                changed |= self.mutate_once(hook, attrs, &mut object, warnings).await?;
            }
        }
        Ok(changed)
    }

    /// The validating webhooks, all at once; the first refusal (in hook order) wins.
    pub async fn validate(
        &self,
        attrs: &Attributes<'_>,
        object: Option<&Value>,
        warnings: &mut Vec<String>,
    ) -> Result<(), ApiError> {
        if matching::exempt(attrs) {
            return Ok(());
        }
        let mut called = Vec::new();
        let namespace = OnceCell::new();
        for hook in self.configurations.validating() {
            if self.should_call(&hook, attrs, object, &namespace).await? {
                called.push(hook);
            }
        }
        if called.is_empty() {
            return Ok(());
        }
        let results = futures::future::join_all(called.iter().map(|hook| async move {
            let mut w = Vec::new();
            let r = self.call(hook, attrs, object, false, &mut w).await;
            (r, w)
        }))
        .await;
        let mut first = Ok(());
        for (hook, (result, w)) in called.iter().zip(results) {
            warnings.extend(w);
            if let Err(failure) = result {
                let r = Self::excuse(hook, failure);
                if first.is_ok() {
                    first = r;
                }
            }
        }
        first
    }
}

/// Kubernetes' refusal of a dry-run request to a hook that may have side effects.
fn dry_run_refusal(hook: &Hook, dry_run: bool) -> Option<ApiError> {
    (dry_run && !matches!(hook.side_effects.as_str(), "None" | "NoneOnDryRun")).then(|| {
        ApiError::bad_request(format!(
            "admission webhook {:?} does not support dry run",
            hook.name
        ))
    })
}

/// Apply a mutating hook's JSON patch to `object` (None: the operation has no object);
/// whether it changed.
fn apply_patch(
    rt: &ResourceType,
    hook: &str,
    object: Option<&mut Value>,
    patch: &Value,
) -> Result<bool, ApiError> {
    let Some(obj) = object else {
        return Err(internal_error(format!(
            "admission webhook {hook:?} attempted to modify the object, which is not supported for this operation"
        )));
    };
    let mut patched = json_patch::apply(obj, patch).map_err(|e| internal_error(e.message))?;
    // The patched object must still be one of its kind (unknown fields dropped, as
    // decoding into the Go type drops them).
    fields::check_unknown(rt, &mut patched, FieldValidation::Ignore)
        .map_err(|e| internal_error(e.message))?;
    let changed = patched != *obj;
    *obj = patched;
    Ok(changed)
}

/// The `options` of an AdmissionReview: `{"kind": "<kind>", "apiVersion":
/// "meta.k8s.io/v1", ...}` with the request's dryRun and fieldManager.
pub fn options(kind: &str, dry_run: bool, field_manager: &str) -> Value {
    let mut o = serde_json::json!({"kind": kind, "apiVersion": "meta.k8s.io/v1"});
    if dry_run {
        o["dryRun"] = serde_json::json!(["All"]);
    }
    if !field_manager.is_empty() {
        o["fieldManager"] = serde_json::json!(field_manager);
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn hook(policy: &str, side_effects: &str) -> Hook {
        let config = json!({"metadata": {"name": "c"}, "webhooks": [{"name": "h.x.io",
            "failurePolicy": policy, "sideEffects": side_effects,
            "clientConfig": {"url": "https://127.0.0.1/"}}]});
        Arc::into_inner(config::compile(&config, true).remove(0)).unwrap()
    }

    #[test]
    fn failure_policy_decides_about_failed_calls_only() {
        let why = "failed to call webhook: Post \"https://127.0.0.1/?timeout=10s\": context deadline exceeded";
        assert!(Webhooks::excuse(&hook("Ignore", "None"), Failure::Calling(why.into())).is_ok());
        let e = Webhooks::excuse(&hook("Fail", "None"), Failure::Calling(why.into())).unwrap_err();
        assert_eq!((e.code, e.reason.as_str()), (500, "InternalError"));
        assert_eq!(
            e.message,
            format!("Internal error occurred: failed calling webhook \"h.x.io\": {why}")
        );
        assert_eq!(
            e.causes[0].message,
            format!("failed calling webhook \"h.x.io\": {why}")
        );
        // A refusal is a refusal under either policy.
        let denied = review::denied("h.x.io", None);
        let e = Webhooks::excuse(&hook("Ignore", "None"), Failure::Refused(denied)).unwrap_err();
        assert_eq!(e.code, 400);
    }

    fn conditional_hook(policy: &str, expressions: &[&str]) -> Hook {
        let conditions: Vec<Value> = expressions
            .iter()
            .enumerate()
            .map(|(i, e)| json!({"name": format!("c{i}"), "expression": e}))
            .collect();
        let config = json!({"metadata": {"name": "c"}, "webhooks": [{"name": "h.x.io",
            "failurePolicy": policy, "sideEffects": "None", "matchConditions": conditions,
            "clientConfig": {"url": "https://127.0.0.1/"}}]});
        Arc::into_inner(config::compile(&config, false).remove(0)).unwrap()
    }

    #[test]
    fn match_conditions_decide_and_the_failure_policy_decides_about_errors() {
        let rt = keelson_resources::find("", "configmaps").unwrap();
        let opts = WriteOptions {
            user: UserInfo {
                name: "jane".into(),
                ..UserInfo::default()
            },
            ..WriteOptions::default()
        };
        let cm = json!({"metadata": {"name": "x", "namespace": "ns", "labels": {"skip": "yes"}}});
        let attrs = Attributes::write(Operation::Create, rt, "", &cm, None, &opts);
        let holds = |policy: &str, exprs: &[&str]| {
            Webhooks::conditions_hold(&conditional_hook(policy, exprs), &attrs, Some(&cm))
        };
        for policy in ["Fail", "Ignore"] {
            // No condition, or all true: called.
            assert!(holds(policy, &[]).unwrap());
            let request = [
                "request.operation == 'CREATE' && request.namespace == 'ns'",
                "request.userInfo.username == 'jane' && request.kind.kind == 'ConfigMap'",
                "request.resource.resource == 'configmaps' && oldObject == null",
                "!has(request.uid) && !has(request.object)",
            ];
            assert!(holds(policy, &request).unwrap());
            // Any false: skipped.
            assert!(!holds(policy, &["true", "!('skip' in object.metadata.labels)"]).unwrap());
        }
        // An error: Ignore skips, Fail refuses with Kubernetes' 403.
        assert!(!holds("Ignore", &["object.data.k == 'v'"]).unwrap());
        let e = holds("Fail", &["object.data.k == 'v'"]).unwrap_err();
        assert_eq!((e.code, e.reason.as_str()), (403, "Forbidden"));
        assert_eq!(
            e.message,
            "configmaps \"x\" is forbidden: expression 'object.data.k == 'v'' resulted in error: no such key: data"
        );
    }

    #[test]
    fn dry_run_goes_only_to_hooks_without_side_effects() {
        assert!(dry_run_refusal(&hook("Fail", "None"), true).is_none());
        assert!(dry_run_refusal(&hook("Fail", "NoneOnDryRun"), true).is_none());
        assert!(dry_run_refusal(&hook("Ignore", "Some"), false).is_none());
        let e = dry_run_refusal(&hook("Ignore", "Some"), true).unwrap();
        assert_eq!(e.code, 400);
        assert_eq!(
            e.message,
            "admission webhook \"h.x.io\" does not support dry run"
        );
    }

    #[test]
    fn patches_apply_to_the_object_and_must_keep_its_kind() {
        let rt = keelson_resources::find("", "configmaps").unwrap();
        let mut cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}});
        let add = json!([{"op": "add", "path": "/metadata/labels", "value": {"a": "b"}}]);
        assert!(apply_patch(rt, "h", Some(&mut cm), &add).unwrap());
        assert_eq!(cm["metadata"]["labels"]["a"], "b");
        // The same patch again changes nothing.
        let same = json!([{"op": "replace", "path": "/metadata/labels/a", "value": "b"}]);
        assert!(!apply_patch(rt, "h", Some(&mut cm), &same).unwrap());
        // Unknown fields are dropped; wrong types are an internal error.
        let unknown = json!([{"op": "add", "path": "/bogus", "value": 1}]);
        assert!(!apply_patch(rt, "h", Some(&mut cm), &unknown).unwrap());
        assert!(cm.get("bogus").is_none());
        let wrong = json!([{"op": "add", "path": "/data", "value": "not a map"}]);
        let e = apply_patch(rt, "h", Some(&mut cm), &wrong).unwrap_err();
        assert_eq!(e.code, 500);
        assert!(
            cm.get("data").is_none(),
            "a failed patch leaves the object as it was"
        );
        let bad_path = json!([{"op": "remove", "path": "/nothing/here"}]);
        assert_eq!(
            apply_patch(rt, "h", Some(&mut cm), &bad_path)
                .unwrap_err()
                .code,
            500
        );
        let e = apply_patch(rt, "h.x.io", None, &add).unwrap_err();
        assert!(e.message.ends_with("admission webhook \"h.x.io\" attempted to modify the object, which is not supported for this operation"));
    }
}
