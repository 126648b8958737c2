//! Pod Security admission, as Kubernetes' (k8s.io/pod-security-admission/admission):
//! each namespace chooses, with `pod-security.kubernetes.io/{enforce,audit,warn}` labels
//! (and their `-version`s), the Pod Security Standard (privileged, baseline, restricted)
//! that pods there are refused for violating (enforce, 403), recorded for (audit, an
//! audit annotation) and warned about (warn, a `Warning` header).
//!
//! - Pods: created, or updated in a way that matters (an image, a container added): all
//!   three modes.
//! - Workloads with a pod template (Deployments, ReplicaSets, StatefulSets, DaemonSets,
//!   Jobs, CronJobs, ReplicationControllers, PodTemplates): audit and warn only; their
//!   pods meet enforce when they are created.
//! - Namespaces: the labels must parse (422 otherwise, unless they were already wrong);
//!   an update that tightens enforce warns about the existing pods that would be refused.
//!
//! Cluster defaults (for namespaces without labels) and exemptions (users, runtime
//! classes, namespaces) come from [`config`]. Audit annotations are handed to the caller
//! with the warnings ([`Admitted`]), keyed as Kubernetes keys them.

pub mod checks;
pub mod config;
pub mod namespaces;
pub mod policy;

use super::forbidden;
use crate::registry::{decode_kv, UserInfo};
use crate::storage::Storage;
use crate::watch_cache::WatchCache;
use checks::{evaluate, Pod, Verdict};
use config::Config;
use keelson_apimachinery::{meta, ApiError};
use keelson_resources::ResourceType;
use namespaces::{labels_of, NamespaceLabels};
use policy::{policy_for, LabelError, Level, LevelVersion, Policy};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Audit annotation keys (`pod-security.kubernetes.io/` + Kubernetes' keys).
pub const ENFORCE_POLICY_ANNOTATION: &str = "pod-security.kubernetes.io/enforce-policy";
pub const AUDIT_VIOLATIONS_ANNOTATION: &str = "pod-security.kubernetes.io/audit-violations";
pub const EXEMPT_ANNOTATION: &str = "pod-security.kubernetes.io/exempt";
pub const ERROR_ANNOTATION: &str = "pod-security.kubernetes.io/error";

/// A namespace update checks at most this many existing pods, for at most this long.
const MAX_PODS_TO_CHECK: usize = 3000;
const POD_CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// What an admitted write takes back to the client (warnings) and to the audit log
/// (annotations).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Admitted {
    pub warnings: Vec<String>,
    pub audit_annotations: BTreeMap<String, String>,
}

impl Admitted {
    fn annotated(key: &str, value: impl Into<String>) -> Self {
        Admitted {
            warnings: Vec::new(),
            audit_annotations: BTreeMap::from([(key.to_string(), value.into())]),
        }
    }
}

/// The kinds that embed a pod template, and where.
fn template_pointer(rt: &ResourceType) -> Option<&'static str> {
    match (rt.group, rt.plural) {
        ("", "podtemplates") => Some("/template"),
        ("", "replicationcontrollers")
        | ("apps", "replicasets" | "deployments" | "statefulsets" | "daemonsets")
        | ("batch", "jobs") => Some("/spec/template"),
        ("batch", "cronjobs") => Some("/spec/jobTemplate/spec/template"),
        _ => None,
    }
}

fn is_core(rt: &ResourceType, plural: &str) -> bool {
    rt.group.is_empty() && rt.plural == plural
}

static EMPTY: Value = Value::Null;

/// Pod Security admission's state; cheap to clone.
#[derive(Clone)]
pub struct PodSecurity {
    config: Arc<Config>,
    namespaces: Arc<NamespaceLabels>,
    storage: Storage,
}

impl PodSecurity {
    pub fn new(storage: Storage, cache: Arc<WatchCache>) -> Self {
        let namespaces = Arc::new(NamespaceLabels::default());
        namespaces.follow(cache);
        PodSecurity {
            config: Arc::new(Config::default()),
            namespaces,
            storage,
        }
    }

    /// Use these cluster defaults and exemptions.
    pub fn configure(&mut self, config: Config) {
        self.config = Arc::new(config);
    }

    /// Admit a create (`old` None) or an update of `obj` by `user`.
    pub async fn validate(
        &self,
        rt: &ResourceType,
        obj: &Value,
        old: Option<&Value>,
        user: &UserInfo,
    ) -> Result<Admitted, ApiError> {
        if is_core(rt, "namespaces") {
            return self.validate_namespace(obj, old).await;
        }
        if is_core(rt, "pods") {
            return self.validate_pod(rt, obj, old, user).await;
        }
        match template_pointer(rt) {
            Some(pointer) => self.validate_workload(obj, old, user, pointer).await,
            None => Ok(Admitted::default()),
        }
    }

    fn exempt_namespace(&self, ns: &str) -> bool {
        exempt_namespace(&self.config, ns)
    }

    /// The exemption, if any, of a pod or workload write in `ns` by `user`.
    fn exemption(&self, ns: &str, user: &UserInfo) -> Option<Admitted> {
        if self.exempt_namespace(ns) {
            return Some(Admitted::annotated(EXEMPT_ANNOTATION, "namespace"));
        }
        if !user.name.is_empty() && self.config.exemptions.usernames.contains(&user.name) {
            return Some(Admitted::annotated(EXEMPT_ANNOTATION, "user"));
        }
        None
    }

    async fn validate_pod(
        &self,
        rt: &ResourceType,
        pod: &Value,
        old: Option<&Value>,
        user: &UserInfo,
    ) -> Result<Admitted, ApiError> {
        let ns = meta::namespace(pod);
        if let Some(exempt) = self.exemption(ns, user) {
            return Ok(exempt);
        }
        let labels = self
            .namespaces
            .get(&self.storage, ns)
            .await?
            .ok_or_else(|| {
                ApiError::internal(format!(
                    "Internal error occurred: failed to lookup namespace {ns:?}"
                ))
            })?;
        let (policy, errors) = policy_for(&labels, &self.config.defaults);
        if errors.is_empty() && policy.fully_privileged() {
            return Ok(Admitted::annotated(
                ENFORCE_POLICY_ANNOTATION,
                LevelVersion::PRIVILEGED.to_string(),
            ));
        }
        if let Some(old) = old {
            if !significant_pod_update(pod, old) {
                return Ok(Admitted::default());
            }
        }
        let meta = pod.get("metadata").unwrap_or(&EMPTY);
        let spec = pod.get("spec").unwrap_or(&EMPTY);
        evaluate_pod(&self.config, &policy, &errors, &Pod::new(meta, spec), true)
            .map_err(|msg| forbidden(rt, meta::name(pod), &msg))
    }

    async fn validate_workload(
        &self,
        obj: &Value,
        old: Option<&Value>,
        user: &UserInfo,
        template: &str,
    ) -> Result<Admitted, ApiError> {
        if let Some(old) = old {
            if !main_resource_changed(obj, old) {
                return Ok(Admitted::default());
            }
        }
        let ns = meta::namespace(obj);
        if let Some(exempt) = self.exemption(ns, user) {
            return Ok(exempt);
        }
        let labels = match self.namespaces.get(&self.storage, ns).await {
            Ok(Some(labels)) => labels,
            // Workloads are never refused: a failed lookup is only recorded.
            Ok(None) => {
                return Ok(Admitted::annotated(
                    ERROR_ANNOTATION,
                    format!("failed to lookup namespace {ns:?}: namespace not found"),
                ))
            }
            Err(e) => {
                return Ok(Admitted::annotated(
                    ERROR_ANNOTATION,
                    format!("failed to lookup namespace {ns:?}: {}", e.message),
                ))
            }
        };
        let (policy, errors) = policy_for(&labels, &self.config.defaults);
        if errors.is_empty()
            && policy.warn.level == Level::Privileged
            && policy.audit.level == Level::Privileged
        {
            return Ok(Admitted::default());
        }
        let Some(template) = obj.pointer(template).filter(|t| !t.is_null()) else {
            return Ok(Admitted::default());
        };
        let meta = template.get("metadata").unwrap_or(&EMPTY);
        let spec = template.get("spec").unwrap_or(&EMPTY);
        Ok(
            evaluate_pod(&self.config, &policy, &errors, &Pod::new(meta, spec), false)
                .expect("only enforce refuses"),
        )
    }

    async fn validate_namespace(
        &self,
        ns: &Value,
        old: Option<&Value>,
    ) -> Result<Admitted, ApiError> {
        let name = meta::name(ns);
        let labels = labels_of(ns);
        let (policy, errors) = policy_for(&labels, &self.config.defaults);
        let invalid = || {
            ApiError::invalid(
                "",
                "Namespace",
                name,
                errors.iter().map(LabelError::cause).collect(),
            )
        };
        let exempt_warning = || Admitted {
            warnings: exempt_namespace_warning(&self.config, name, &policy, &labels)
                .into_iter()
                .collect(),
            ..Default::default()
        };
        let Some(old) = old else {
            if !errors.is_empty() {
                return Err(invalid());
            }
            if self.exempt_namespace(name) {
                return Ok(exempt_warning());
            }
            return Ok(Admitted::default());
        };
        let (old_policy, old_errors) = policy_for(&labels_of(old), &self.config.defaults);
        // Labels that were already wrong in the same way may stay.
        if !errors.is_empty() && (old_errors.is_empty() || errors != old_errors) {
            return Err(invalid());
        }
        // Existing pods are checked only when enforce tightens.
        let (new, was) = (policy.enforce, old_policy.enforce);
        if new == was
            || new.level == Level::Privileged
            || (new.version == was.version && new.level <= was.level)
        {
            return Ok(Admitted::default());
        }
        if self.exempt_namespace(name) {
            return Ok(exempt_warning());
        }
        Ok(Admitted {
            warnings: self.check_existing_pods(name, new).await,
            ..Default::default()
        })
    }

    /// `EvaluatePodsInNamespace`: which existing pods the new enforce level would
    /// refuse, one warning per distinct set of reasons, naming the first pod (by name)
    /// and how many others share it.
    async fn check_existing_pods(&self, ns: &str, enforce: LevelVersion) -> Vec<String> {
        let deadline = Instant::now() + POD_CHECK_TIMEOUT;
        let prefix = format!("/registry/pods/{ns}/");
        let page = match self.storage.list(&prefix, "", 0, 0).await {
            Ok(page) => page,
            Err(e) => {
                tracing::warn!(error = %e, namespace = ns, "listing pods for PodSecurity");
                return vec![
                    "failed to list pods while checking new PodSecurity enforce level".into(),
                ];
            }
        };
        let pods: Vec<Value> = page
            .kvs
            .iter()
            .filter_map(|kv| decode_kv(kv).ok())
            .collect();
        let mut pods = self.prioritize(&pods);
        let total = pods.len();
        pods.truncate(MAX_PODS_TO_CHECK);
        let mut checked = pods.len();
        // reasons → (first pod name, count), in the order first seen.
        let mut found: Vec<(String, String, usize)> = Vec::new();
        for (i, pod) in pods.iter().enumerate() {
            let meta = pod.get("metadata").unwrap_or(&EMPTY);
            let spec = pod.get("spec").unwrap_or(&EMPTY);
            let verdict = evaluate(enforce, &Pod::new(meta, spec));
            if !verdict.allowed() {
                let reasons = verdict.reasons();
                let name = meta::name(pod);
                match found.iter_mut().find(|(r, _, _)| *r == reasons) {
                    Some((_, first, count)) => {
                        if name < first.as_str() {
                            *first = name.to_string();
                        }
                        *count += 1;
                    }
                    None => found.push((reasons, name.to_string(), 1)),
                }
            }
            if Instant::now() > deadline {
                checked = i + 1;
                break;
            }
        }
        let mut warnings = Vec::new();
        if checked < total {
            warnings.push(format!(
                "new PodSecurity enforce level only checked against the first {checked} of {total} existing pods"
            ));
        }
        if !found.is_empty() {
            warnings.push(format!(
                "existing pods in namespace {ns:?} violate the new PodSecurity enforce level \"{enforce}\""
            ));
        }
        let mut per_pod: Vec<String> = found
            .into_iter()
            .map(|(reasons, first, count)| match count {
                1 => format!("{first}: {reasons}"),
                2 => format!("{first} (and 1 other pod): {reasons}"),
                n => format!("{first} (and {} other pods): {reasons}", n - 1),
            })
            .collect();
        per_pod.sort();
        warnings.extend(per_pod);
        warnings
    }

    /// Pods in exempt runtime classes are left out; one pod per controller comes first,
    /// the others (likely the same template) after.
    fn prioritize<'a>(&self, pods: &'a [Value]) -> Vec<&'a Value> {
        let mut first = Vec::new();
        let mut rest = Vec::new();
        let mut controllers = HashSet::new();
        for pod in pods {
            let spec = pod.get("spec").unwrap_or(&EMPTY);
            if exempt_runtime_class(&self.config, &Pod::new(&EMPTY, spec)) {
                continue;
            }
            let controller = pod
                .pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
                .and_then(|r| r.get("uid"))
                .and_then(Value::as_str);
            match controller {
                Some(uid) if !controllers.insert(uid) => rest.push(pod),
                _ => first.push(pod),
            }
        }
        first.extend(rest);
        first
    }
}

fn exempt_namespace(config: &Config, ns: &str) -> bool {
    !ns.is_empty() && config.exemptions.namespaces.iter().any(|n| n == ns)
}

fn exempt_runtime_class(config: &Config, pod: &Pod) -> bool {
    pod.runtime_class()
        .is_some_and(|rc| config.exemptions.runtime_classes.iter().any(|r| r == rc))
}

/// `EvaluatePod`: enforce (when asked), audit, then warn, each level-version
/// evaluated once. Err is the refusal's message.
pub fn evaluate_pod(
    config: &Config,
    policy: &Policy,
    errors: &[LabelError],
    pod: &Pod,
    enforce: bool,
) -> Result<Admitted, String> {
    if exempt_runtime_class(config, pod) {
        return Ok(Admitted::annotated(EXEMPT_ANNOTATION, "runtimeClass"));
    }
    let mut admitted = Admitted::default();
    if !errors.is_empty() {
        admitted.audit_annotations.insert(
            ERROR_ANNOTATION.into(),
            format!("Failed to parse policy: {}", aggregate(errors)),
        );
    }
    let mut results: HashMap<LevelVersion, Verdict> = HashMap::new();
    let mut verdict = |lv: LevelVersion| {
        results
            .entry(lv)
            .or_insert_with(|| evaluate(lv, pod))
            .clone()
    };
    if enforce {
        admitted
            .audit_annotations
            .insert(ENFORCE_POLICY_ANNOTATION.into(), policy.enforce.to_string());
        let v = verdict(policy.enforce);
        if !v.allowed() {
            return Err(format!(
                "violates PodSecurity \"{}\": {}",
                policy.enforce,
                v.details()
            ));
        }
    }
    let audit = verdict(policy.audit);
    if !audit.allowed() {
        admitted.audit_annotations.insert(
            AUDIT_VIOLATIONS_ANNOTATION.into(),
            format!(
                "would violate PodSecurity \"{}\": {}",
                policy.audit,
                audit.details()
            ),
        );
    }
    let warn = verdict(policy.warn);
    if !warn.allowed() {
        admitted.warnings.push(format!(
            "would violate PodSecurity \"{}\": {}",
            policy.warn,
            warn.details()
        ));
    }
    Ok(admitted)
}

/// `namespace "x" is exempt from Pod Security, and the policy (enforce=...) will be
/// ignored`, when its labels set a policy that would apply.
pub fn exempt_namespace_warning(
    config: &Config,
    name: &str,
    policy: &Policy,
    labels: &namespaces::Labels,
) -> Option<String> {
    if policy.fully_privileged() || policy.equivalent(&config.defaults) {
        return None;
    }
    let set = |mode: &str| {
        labels.contains_key(&format!("{}{mode}", policy::LABEL_PREFIX))
            || labels.contains_key(&format!("{}{mode}-version", policy::LABEL_PREFIX))
    };
    let parts: Vec<String> = [
        ("enforce", policy.enforce),
        ("audit", policy.audit),
        ("warn", policy.warn),
    ]
    .into_iter()
    .filter(|(mode, lv)| lv.level != Level::Privileged && set(mode))
    .map(|(mode, lv)| format!("{mode}={lv}"))
    .collect();
    Some(format!(
        "namespace {name:?} is exempt from Pod Security, and the policy ({}) will be ignored",
        parts.join(", ")
    ))
}

/// Field errors aggregated as Go's `ErrorList.ToAggregate()` prints them.
fn aggregate(errors: &[LabelError]) -> String {
    let all: Vec<String> = errors.iter().map(LabelError::display).collect();
    if all.len() == 1 {
        all.into_iter().next().unwrap_or_default()
    } else {
        format!("[{}]", all.join(", "))
    }
}

/// `isSignificantPodUpdate`: only a pod update that could change what the checks see
/// (a container's image or seccomp annotation, containers added) is checked again;
/// status, bindings and label changes are not.
fn significant_pod_update(pod: &Value, old: &Value) -> bool {
    let list = |p: &Value, l: &str| -> Vec<Value> {
        p.pointer(&format!("/spec/{l}"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let annotation = |p: &Value, c: &Value| {
        let key = format!(
            "container.seccomp.security.alpha.kubernetes.io/{}",
            c.get("name").and_then(Value::as_str).unwrap_or("")
        );
        p.pointer("/metadata/annotations")
            .and_then(|a| a.get(&key))
            .cloned()
    };
    let changed = |c: &Value, o: &Value| {
        c.get("image") != o.get("image") || annotation(pod, c) != annotation(old, c)
    };
    for l in ["containers", "initContainers"] {
        let (now, before) = (list(pod, l), list(old, l));
        if now.len() != before.len() || now.iter().zip(&before).any(|(c, o)| changed(c, o)) {
            return true;
        }
    }
    let before = list(old, "ephemeralContainers");
    list(pod, "ephemeralContainers").iter().any(|c| {
        match before.iter().find(|o| o.get("name") == c.get("name")) {
            None => true,
            Some(o) => changed(c, o),
        }
    })
}

/// Whether a workload update changed more than its status and replica count: Kubernetes
/// skips writes to subresources (status, scale), and only those change nothing else.
fn main_resource_changed(obj: &Value, old: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(o) = v.as_object_mut() {
            o.remove("status");
        }
        if let Some(spec) = v.get_mut("spec").and_then(Value::as_object_mut) {
            spec.remove("replicas");
        }
        if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            for k in ["resourceVersion", "managedFields", "generation"] {
                m.remove(k);
            }
        }
        v
    };
    strip(obj) != strip(old)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn privileged_pod() -> Value {
        json!({"metadata": {"name": "p", "namespace": "ns"},
               "spec": {"containers": [{"name": "c", "image": "busybox", "securityContext": {"privileged": true}}]}})
    }

    fn labels(pairs: &[(&str, &str)]) -> namespaces::Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn run(
        config: &Config,
        ns_labels: &[(&str, &str)],
        pod: &Value,
        enforce: bool,
    ) -> Result<Admitted, String> {
        let (policy, errors) = policy_for(&labels(ns_labels), &config.defaults);
        evaluate_pod(
            config,
            &policy,
            &errors,
            &Pod::new(&pod["metadata"], &pod["spec"]),
            enforce,
        )
    }

    #[test]
    fn enforce_refuses_warn_warns_audit_annotates() {
        let c = Config::default();
        let pod = privileged_pod();
        let err = run(&c, &[(policy::ENFORCE_LABEL, "baseline")], &pod, true).unwrap_err();
        assert_eq!(
            err,
            r#"violates PodSecurity "baseline:latest": privileged (container "c" must not set securityContext.privileged=true)"#
        );
        // Workloads are never refused; warn follows enforce.
        let a = run(&c, &[(policy::ENFORCE_LABEL, "baseline")], &pod, false).unwrap();
        assert_eq!(
            a.warnings,
            [
                r#"would violate PodSecurity "baseline:latest": privileged (container "c" must not set securityContext.privileged=true)"#
            ]
        );
        let a = run(
            &c,
            &[
                (policy::WARN_LABEL, "restricted"),
                (policy::AUDIT_LABEL, "baseline"),
            ],
            &pod,
            true,
        )
        .unwrap();
        assert_eq!(a.warnings.len(), 1);
        assert!(a.warnings[0].starts_with(
            r#"would violate PodSecurity "restricted:latest": privileged (container "c""#
        ));
        assert_eq!(
            a.audit_annotations[ENFORCE_POLICY_ANNOTATION],
            "privileged:latest"
        );
        assert_eq!(
            a.audit_annotations[AUDIT_VIOLATIONS_ANNOTATION],
            r#"would violate PodSecurity "baseline:latest": privileged (container "c" must not set securityContext.privileged=true)"#
        );
        // Bad labels: enforce means restricted, and the error is recorded.
        let err = run(&c, &[(policy::ENFORCE_LABEL, "bogus")], &pod, true).unwrap_err();
        assert!(
            err.starts_with(r#"violates PodSecurity "restricted:latest""#),
            "{err}"
        );
        let a = run(&c, &[(policy::AUDIT_LABEL, "bogus")], &pod, true).unwrap();
        assert_eq!(
            a.audit_annotations[ERROR_ANNOTATION],
            r#"Failed to parse policy: metadata.labels[pod-security.kubernetes.io/audit]: Invalid value: "bogus": must be one of privileged, baseline, restricted"#
        );
    }

    #[test]
    fn defaults_and_runtime_class_exemptions_come_from_the_configuration() {
        let mut c = Config::default();
        c.defaults.enforce.level = Level::Baseline;
        assert!(run(&c, &[], &privileged_pod(), true).is_err());
        // A namespace label overrides the default.
        assert!(run(
            &c,
            &[(policy::ENFORCE_LABEL, "privileged")],
            &privileged_pod(),
            true
        )
        .is_ok());
        c.exemptions.runtime_classes = vec!["kata".into()];
        let mut pod = privileged_pod();
        pod["spec"]["runtimeClassName"] = json!("kata");
        let a = run(&c, &[], &pod, true).unwrap();
        assert_eq!(a.audit_annotations[EXEMPT_ANNOTATION], "runtimeClass");
        assert!(a.warnings.is_empty());
    }

    #[test]
    fn exempt_namespaces_warn_that_their_labels_are_ignored() {
        let c = Config::default();
        let l = labels(&[
            (policy::ENFORCE_LABEL, "restricted"),
            (policy::AUDIT_LABEL, "baseline"),
        ]);
        let (p, _) = policy_for(&l, &c.defaults);
        assert_eq!(
            exempt_namespace_warning(&c, "kube-system", &p, &l).unwrap(),
            r#"namespace "kube-system" is exempt from Pod Security, and the policy (enforce=restricted:latest, audit=baseline:latest) will be ignored"#
        );
        let l = labels(&[(policy::ENFORCE_LABEL, "privileged")]);
        let (p, _) = policy_for(&l, &c.defaults);
        assert_eq!(exempt_namespace_warning(&c, "kube-system", &p, &l), None);
    }

    #[test]
    fn only_significant_pod_updates_are_checked() {
        let old = privileged_pod();
        let mut status = old.clone();
        status["status"] = json!({"phase": "Running"});
        status["metadata"]["labels"] = json!({"a": "b"});
        status["spec"]["nodeName"] = json!("n1");
        assert!(!significant_pod_update(&status, &old));
        let mut image = old.clone();
        image["spec"]["containers"][0]["image"] = json!("busybox:2");
        assert!(significant_pod_update(&image, &old));
        let mut ephemeral = old.clone();
        ephemeral["spec"]["ephemeralContainers"] = json!([{"name": "debug", "image": "busybox"}]);
        assert!(significant_pod_update(&ephemeral, &old));
        assert!(!significant_pod_update(&ephemeral, &ephemeral.clone()));
    }

    #[test]
    fn workload_status_and_scale_writes_are_not_checked() {
        let old = json!({"metadata": {"name": "d", "resourceVersion": "1", "generation": 1},
            "spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "c"}]}}}});
        let mut status = old.clone();
        status["status"] = json!({"replicas": 1});
        status["metadata"]["resourceVersion"] = json!("2");
        assert!(!main_resource_changed(&status, &old));
        let mut scaled = old.clone();
        scaled["spec"]["replicas"] = json!(3);
        assert!(!main_resource_changed(&scaled, &old));
        let mut labelled = old.clone();
        labelled["metadata"]["labels"] = json!({"a": "b"});
        assert!(main_resource_changed(&labelled, &old));
    }
}
