//! Priority admission, as Kubernetes' `Priority` plugin: a new pod's
//! `spec.priorityClassName` becomes `spec.priority` and `spec.preemptionPolicy` (no
//! class: the `globalDefault` class, else priority 0); an unknown class is refused
//! (403). PriorityClasses themselves: at most one `globalDefault`, and the built-in
//! `system-` classes cannot be deleted.
//!
//! The classes are kept from the watch cache (loaded from etcd first, then followed),
//! so a pod create reads nothing; a class missing from the cache is looked up in etcd
//! before a pod naming it is refused, so one created a moment ago is still found.

use super::decode_kv;
use crate::storage::Storage;
use crate::watch_cache::{decode, Change, Subscription, WatchCache};
use keelson_apimachinery::{meta, ApiError};
use keelson_resources::kinds::priorityclasses::SYSTEM_CLASSES;
use keelson_resources::ResourceType;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

const PREFIX: &str = "/registry/scheduling.k8s.io/priorityclasses/";

/// What admission needs of one class.
#[derive(Debug, Clone, PartialEq)]
struct Class {
    value: i64,
    global_default: bool,
    preemption_policy: Option<String>,
}

impl Class {
    fn of(obj: &Value) -> Class {
        Class {
            value: obj.get("value").and_then(Value::as_i64).unwrap_or(0),
            global_default: obj
                .get("globalDefault")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            preemption_policy: obj
                .get("preemptionPolicy")
                .and_then(Value::as_str)
                .map(String::from),
        }
    }
}

#[derive(Default)]
struct State {
    /// Whether `classes` holds every class (after the first load).
    loaded: bool,
    classes: HashMap<String, Class>,
}

/// The PriorityClasses admission sees; cheap to clone.
#[derive(Clone, Default)]
pub struct PriorityClassCache {
    state: Arc<RwLock<State>>,
}

fn is_pods(rt: &ResourceType) -> bool {
    rt.group.is_empty() && rt.plural == "pods"
}

fn is_priority_classes(rt: &ResourceType) -> bool {
    rt.group == "scheduling.k8s.io" && rt.plural == "priorityclasses"
}

fn forbidden(resource: &str, group: &str, name: &str, msg: String) -> ApiError {
    let what = if name.is_empty() {
        format!("{resource} is forbidden: {msg}")
    } else {
        format!("{resource} \"{name}\" is forbidden: {msg}")
    };
    ApiError::forbidden(what).with_details(group, resource.split('.').next().unwrap_or(""), name)
}

impl PriorityClassCache {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The `globalDefault` class with the lowest value (Kubernetes' tie-break).
    fn default_class(&self) -> Option<(String, Class)> {
        self.read()
            .classes
            .iter()
            .filter(|(_, c)| c.global_default)
            .min_by_key(|(n, c)| (c.value, (*n).clone()))
            .map(|(n, c)| (n.clone(), c.clone()))
    }

    /// Make sure what admitting `obj` needs is cached: the full list once, and a named
    /// class that the cache does not know (read from etcd).
    pub async fn prepare(&self, storage: &Storage, rt: &ResourceType, obj: &Value) {
        if !is_pods(rt) && !is_priority_classes(rt) {
            return;
        }
        if !self.read().loaded {
            if let Err(e) = self.load(storage).await {
                tracing::warn!(error = %e, "loading PriorityClasses for admission");
            }
        }
        let class = obj
            .pointer("/spec/priorityClassName")
            .and_then(Value::as_str)
            .unwrap_or("");
        if is_pods(rt) && !class.is_empty() && !self.read().classes.contains_key(class) {
            if let Ok(Some(kv)) = storage.get(&format!("{PREFIX}{class}")).await {
                if let Ok(pc) = decode_kv(&kv) {
                    self.write()
                        .classes
                        .insert(class.to_string(), Class::of(&pc));
                }
            }
        }
    }

    /// Read every class from etcd; returns the revision read at.
    async fn load(&self, storage: &Storage) -> Result<i64, crate::storage::StorageError> {
        let page = storage.list(PREFIX, "", 0, 0).await?;
        let mut classes = HashMap::new();
        for kv in &page.kvs {
            if let (Some(name), Some(obj)) = (
                kv.key.strip_prefix(PREFIX),
                decode(&kv.value, kv.mod_revision),
            ) {
                classes.insert(name.to_string(), Class::of(&obj));
            }
        }
        let mut s = self.write();
        s.classes = classes;
        s.loaded = true;
        Ok(page.revision)
    }

    /// Load the classes, then follow their changes in the watch cache; reloads when it
    /// falls behind. Runs until the process ends.
    pub fn follow(&self, cache: Arc<WatchCache>, storage: Storage) {
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                let after = match this.load(&storage).await {
                    Ok(rev) => rev,
                    Err(e) => {
                        tracing::warn!(error = %e, "loading PriorityClasses");
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                        continue;
                    }
                };
                if let Ok(Subscription::Cached { backlog, mut live }) = cache.subscribe(after).await
                {
                    for ev in backlog.iter().filter(|e| e.revision > after) {
                        this.apply(ev);
                    }
                    while let Ok(ev) = live.recv().await {
                        if ev.revision > after {
                            this.apply(&ev);
                        }
                    }
                }
                // Lagged, or the cache does not reach back to the load: start over.
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        });
    }

    fn apply(&self, ev: &crate::watch_cache::RawEvent) {
        let Some(name) = ev.key.strip_prefix(PREFIX) else {
            return;
        };
        let mut s = self.write();
        match (ev.change, ev.object()) {
            (Change::Put, Some(obj)) => {
                s.classes.insert(name.to_string(), Class::of(obj));
            }
            _ => {
                s.classes.remove(name);
            }
        }
    }

    /// Admission of a new object (`name` as sent: empty for `generateName`): resolves a
    /// pod's priority, and keeps PriorityClasses to one `globalDefault`.
    pub fn admit_create(
        &self,
        rt: &ResourceType,
        obj: &mut Value,
        name: &str,
    ) -> Result<(), ApiError> {
        if is_pods(rt) {
            self.admit_pod(obj, name)
        } else if is_priority_classes(rt) {
            self.admit_class(obj, None)
        } else {
            Ok(())
        }
    }

    /// Admission of an update: a pod keeps the priority it was given at creation when
    /// the new version leaves it out; a PriorityClass may not become a second default.
    pub fn admit_update(
        &self,
        rt: &ResourceType,
        new: &mut Value,
        old: &Value,
    ) -> Result<(), ApiError> {
        if is_pods(rt) {
            for field in ["priority", "preemptionPolicy"] {
                let missing = new
                    .pointer(&format!("/spec/{field}"))
                    .is_none_or(Value::is_null);
                if let (true, Some(v), Some(spec)) = (
                    missing,
                    old.pointer(&format!("/spec/{field}")),
                    new.get_mut("spec").and_then(Value::as_object_mut),
                ) {
                    spec.insert(field.into(), v.clone());
                }
            }
            Ok(())
        } else if is_priority_classes(rt) {
            self.admit_class(new, Some(old))
        } else {
            Ok(())
        }
    }

    fn admit_pod(&self, pod: &mut Value, name: &str) -> Result<(), ApiError> {
        let refuse = |msg: String| forbidden("pods", "", name, msg);
        let class_name = pod
            .pointer("/spec/priorityClassName")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let (class_name, priority, policy) = if class_name.is_empty() {
            match self.default_class() {
                Some((n, c)) => (n, c.value, c.preemption_policy),
                None => (String::new(), 0, None),
            }
        } else {
            match self.read().classes.get(&class_name) {
                Some(c) => (class_name.clone(), c.value, c.preemption_policy.clone()),
                None => {
                    return Err(refuse(format!(
                        "no PriorityClass with name {class_name} was found"
                    )))
                }
            }
        };
        let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
            return Ok(());
        };
        if let Some(given) = spec.get("priority").filter(|v| !v.is_null()) {
            if given.as_i64() != Some(priority) {
                return Err(refuse(format!("the integer value of priority ({given}) must not be provided in pod spec; priority admission controller computed {priority} from the given PriorityClass name")));
            }
        }
        if !class_name.is_empty() {
            spec.insert("priorityClassName".into(), json!(class_name));
        }
        spec.insert("priority".into(), json!(priority));
        if let Some(policy) = policy {
            if let Some(given) = spec
                .get("preemptionPolicy")
                .and_then(Value::as_str)
                .filter(|g| *g != policy)
            {
                return Err(refuse(format!("the string value of PreemptionPolicy ({given}) must not be provided in pod spec; priority admission controller computed {policy} from the given PriorityClass name")));
            }
            spec.insert("preemptionPolicy".into(), json!(policy));
        }
        Ok(())
    }

    fn admit_class(&self, pc: &Value, old: Option<&Value>) -> Result<(), ApiError> {
        if !Class::of(pc).global_default {
            return Ok(());
        }
        let name = meta::name(pc);
        match self.default_class() {
            Some((current, _)) if old.is_none() || current != name => Err(forbidden(
                "priorityclasses.scheduling.k8s.io",
                "scheduling.k8s.io",
                name,
                format!("PriorityClass {current} is already marked as default. Only one default can exist"),
            )),
            _ => Ok(()),
        }
    }
}

/// The built-in classes cannot be deleted.
pub fn admit_delete(rt: &ResourceType, name: &str) -> Result<(), ApiError> {
    if is_priority_classes(rt) && SYSTEM_CLASSES.iter().any(|(n, _, _)| *n == name) {
        return Err(forbidden(
            "priorityclasses.scheduling.k8s.io",
            "scheduling.k8s.io",
            name,
            "this is a system priority class and cannot be deleted".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(classes: &[(&str, i64, bool, &str)]) -> PriorityClassCache {
        let c = PriorityClassCache::default();
        {
            let mut s = c.write();
            s.loaded = true;
            for (n, v, d, p) in classes {
                s.classes.insert(
                    n.to_string(),
                    Class {
                        value: *v,
                        global_default: *d,
                        preemption_policy: Some(p.to_string()),
                    },
                );
            }
        }
        c
    }

    fn pods() -> &'static ResourceType {
        keelson_resources::find("", "pods").unwrap()
    }

    #[test]
    fn resolves_named_and_default_classes() {
        let c = cache(&[
            ("high", 1000, false, "Never"),
            ("low", -5, true, "PreemptLowerPriority"),
        ]);
        let mut pod = json!({"spec": {"priorityClassName": "high"}});
        c.admit_create(pods(), &mut pod, "p").unwrap();
        assert_eq!(pod["spec"]["priority"], 1000);
        assert_eq!(pod["spec"]["preemptionPolicy"], "Never");

        let mut pod = json!({"spec": {}});
        c.admit_create(pods(), &mut pod, "p").unwrap();
        assert_eq!(pod["spec"]["priority"], -5);
        assert_eq!(pod["spec"]["priorityClassName"], "low");

        let none = cache(&[]);
        let mut pod = json!({"spec": {}});
        none.admit_create(pods(), &mut pod, "p").unwrap();
        assert_eq!(pod["spec"]["priority"], 0);
        assert!(pod["spec"].get("priorityClassName").is_none());
    }

    #[test]
    fn refuses_unknown_classes_and_conflicting_values() {
        let c = cache(&[("high", 1000, false, "PreemptLowerPriority")]);
        let mut pod = json!({"spec": {"priorityClassName": "foo"}});
        let e = c.admit_create(pods(), &mut pod, "x").unwrap_err();
        assert_eq!(e.code, 403);
        assert_eq!(
            e.message,
            "pods \"x\" is forbidden: no PriorityClass with name foo was found"
        );
        let mut pod = json!({"spec": {"priorityClassName": "high", "priority": 5}});
        let e = c.admit_create(pods(), &mut pod, "").unwrap_err();
        assert_eq!(e.message, "pods is forbidden: the integer value of priority (5) must not be provided in pod spec; priority admission controller computed 1000 from the given PriorityClass name");
        let mut pod = json!({"spec": {"priorityClassName": "high", "priority": 1000}});
        assert!(c.admit_create(pods(), &mut pod, "x").is_ok());
    }

    #[test]
    fn one_global_default_and_system_classes_stay() {
        let rt = keelson_resources::find("scheduling.k8s.io", "priorityclasses").unwrap();
        let c = cache(&[("low", 1, true, "PreemptLowerPriority")]);
        let mut second = json!({"metadata": {"name": "other"}, "value": 2, "globalDefault": true});
        let e = c.admit_create(rt, &mut second, "other").unwrap_err();
        assert_eq!(e.message, "priorityclasses.scheduling.k8s.io \"other\" is forbidden: PriorityClass low is already marked as default. Only one default can exist");
        let mut same = json!({"metadata": {"name": "low"}, "value": 1, "globalDefault": true});
        let old = same.clone();
        assert!(c.admit_update(rt, &mut same, &old).is_ok());
        let e = admit_delete(rt, "system-node-critical").unwrap_err();
        assert_eq!(e.message, "priorityclasses.scheduling.k8s.io \"system-node-critical\" is forbidden: this is a system priority class and cannot be deleted");
        assert!(admit_delete(rt, "low").is_ok());
    }

    #[test]
    fn pod_updates_keep_priority() {
        let c = cache(&[]);
        let old = json!({"spec": {"priority": 7, "preemptionPolicy": "Never"}});
        let mut new = json!({"spec": {"containers": []}});
        c.admit_update(pods(), &mut new, &old).unwrap();
        assert_eq!(new["spec"]["priority"], 7);
        assert_eq!(new["spec"]["preemptionPolicy"], "Never");
    }
}
