//! Subresources served by the generic store: `scale`, `pods/binding`, and
//! deletecollection.

use super::patching::PatchType;
use super::{metadata, DeleteOptions, ListOptions, Registry, WriteOptions};
use keelson_apimachinery::patch::{json_patch, merge_patch};
use keelson_apimachinery::selector::LabelSelector;
use keelson_apimachinery::{meta, ApiError, Cause};
use keelson_resources::custom::jsonpath;
use keelson_resources::strategy::ScalePaths;
use keelson_resources::ResourceType;
use serde_json::{json, Value};

/// The `autoscaling/v1 Scale` view of a scalable object of `rt`.
pub fn to_scale(rt: &ResourceType, obj: &Value) -> Value {
    if let Some(paths) = rt.strategy.scale_paths() {
        return custom_scale(obj, &paths);
    }
    let selector = match obj.pointer("/spec/selector") {
        // ReplicationControllers have a plain map selector.
        Some(Value::Object(m))
            if !m.contains_key("matchLabels") && !m.contains_key("matchExpressions") =>
        {
            let mut pairs: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect();
            pairs.sort();
            pairs.join(",")
        }
        Some(sel) => LabelSelector::from_object(sel)
            .map(|s| s.to_string())
            .unwrap_or_default(),
        None => String::new(),
    };
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": scale_metadata(obj),
        "spec": {"replicas": obj.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(0)},
        "status": {
            "replicas": obj.pointer("/status/replicas").and_then(Value::as_i64).unwrap_or(0),
            "selector": selector,
        },
    })
}

/// Scale metadata: the object's identity and version.
fn scale_metadata(obj: &Value) -> Value {
    let m = obj.get("metadata").cloned().unwrap_or(json!({}));
    let mut scale_meta = json!({});
    for f in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ] {
        if let Some(v) = m.get(f) {
            scale_meta[f] = v.clone();
        }
    }
    scale_meta
}

/// A custom resource's Scale, from the paths its CRD names: replicas missing from
/// the object count as 0; the selector is copied as a string, as Kubernetes does.
fn custom_scale(obj: &Value, paths: &ScalePaths) -> Value {
    let first = |p: &str| jsonpath::find(obj, p).first().map(|v| (*v).clone());
    let int = |p: &str| first(p).and_then(|v| v.as_i64()).unwrap_or(0);
    let selector = if paths.label_selector.is_empty() {
        String::new()
    } else {
        first(&paths.label_selector)
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default()
    };
    let mut status = json!({"replicas": int(&paths.status_replicas)});
    if !selector.is_empty() {
        status["selector"] = json!(selector);
    }
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": scale_metadata(obj),
        "spec": {"replicas": int(&paths.spec_replicas)},
        "status": status,
    })
}

fn success(code: u16) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": code})
}

impl Registry {
    pub async fn get_scale(
        &self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
    ) -> Result<Value, ApiError> {
        Ok(to_scale(rt, &self.get(rt, ns, name).await?))
    }

    /// Change `spec.replicas` through a new Scale (`update`) or a patch to the current
    /// one (`patch`).
    pub async fn write_scale(
        &self,
        rt: &'static ResourceType,
        ns: &str,
        name: &str,
        change: ScaleChange<'_>,
        opts: &WriteOptions,
    ) -> Result<Value, ApiError> {
        let kind = match change {
            ScaleChange::Replace(_) => "UpdateOptions",
            ScaleChange::Patch(..) => "PatchOptions",
        };
        super::options::validate_field_manager(kind, &opts.field_manager)?;
        let w = self
            .guaranteed_update(rt, ns, name, opts, |old| {
                let old = old.ok_or_else(|| ApiError::not_found(rt.group, rt.plural, name))?;
                let current = to_scale(rt, old);
                let mut wanted = match &change {
                    ScaleChange::Replace(s) => (*s).clone(),
                    ScaleChange::Patch(PatchType::Json, p) => json_patch::apply(&current, p)?,
                    ScaleChange::Patch(_, p) => merge_patch::apply(&current, p),
                };
                let _ = super::fields::check_kind(
                    &keelson_resources::typed::bodies::SCALE,
                    &mut wanted,
                    opts.field_validation,
                )?;
                let rv = meta::resource_version(&wanted);
                if !rv.is_empty() && rv != meta::resource_version(old) {
                    return Err(ApiError::stale(rt.group, rt.plural, name));
                }
                let replicas = wanted
                    .pointer("/spec/replicas")
                    .cloned()
                    .unwrap_or(json!(0));
                if replicas.as_i64().is_none_or(|r| r < 0) {
                    return Err(ApiError::invalid(
                        "autoscaling",
                        "Scale",
                        name,
                        vec![Cause::invalid(
                            "spec.replicas",
                            &replicas,
                            "must be greater than or equal to 0",
                        )],
                    ));
                }
                let mut new = old.clone();
                match rt.strategy.scale_paths() {
                    Some(paths) => {
                        jsonpath::set(&mut new, &paths.spec_replicas, replicas).ok_or_else(
                            || {
                                ApiError::internal(format!(
                                    "cannot set {} of {name}",
                                    paths.spec_replicas
                                ))
                            },
                        )?;
                    }
                    None => new["spec"]["replicas"] = replicas,
                }
                self.apply_update(rt, Some(old), new, "", "scale", opts)
            })
            .await?;
        Ok(to_scale(rt, &w.object))
    }

    /// `pods/binding`: assign a pod to a node, once.
    pub async fn bind(
        &self,
        rt: &'static ResourceType,
        ns: &str,
        name: &str,
        binding: &Value,
        opts: &WriteOptions,
    ) -> Result<Value, ApiError> {
        let node = binding
            .pointer("/target/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if node.is_empty() {
            return Err(ApiError::invalid(
                "",
                "Binding",
                name,
                vec![Cause::required("target.name")],
            ));
        }
        let kind = binding
            .pointer("/target/kind")
            .and_then(Value::as_str)
            .unwrap_or("Node");
        if kind != "Node" && !kind.is_empty() {
            return Err(ApiError::invalid(
                "",
                "Binding",
                name,
                vec![Cause::not_supported("target.kind", &json!(kind), &["Node"])],
            ));
        }
        self.guaranteed_update(rt, ns, name, opts, |old| {
            let old = old.ok_or_else(|| ApiError::not_found(rt.group, rt.plural, name))?;
            if let Some(uid) = binding.pointer("/metadata/uid").and_then(Value::as_str) {
                if uid != meta::uid(old) {
                    return Err(ApiError::conflict(rt.group, rt.plural, name, "Precondition failed: UID in precondition does not match"));
                }
            }
            if old.pointer("/metadata/deletionTimestamp").is_some_and(|v| !v.is_null()) {
                return Err(ApiError::conflict(rt.group, rt.plural, name, "pod is being deleted, cannot be assigned to a host"));
            }
            let current = old.pointer("/spec/nodeName").and_then(Value::as_str).unwrap_or("");
            if !current.is_empty() {
                return Err(ApiError::conflict(rt.group, rt.plural, name, &format!("pod {name} is already assigned to node \"{current}\"")));
            }
            let mut new = old.clone();
            new["spec"]["nodeName"] = json!(node);
            let now = metadata::now_rfc3339();
            let mut conds: Vec<Value> = new.pointer("/status/conditions").and_then(Value::as_array).cloned().unwrap_or_default();
            conds.retain(|c| c.get("type").and_then(Value::as_str) != Some("PodScheduled"));
            conds.push(json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now}));
            if !new.get("status").is_some_and(Value::is_object) {
                new["status"] = json!({});
            }
            new["status"]["conditions"] = json!(conds);
            super::patching::track_fields(rt, Some(old), &mut new, opts, "binding");
            Ok(new)
        })
        .await?;
        Ok(success(201))
    }

    /// DELETE on a collection: every object the selectors match.
    pub async fn delete_collection(
        &self,
        rt: &'static ResourceType,
        ns: &str,
        list: &ListOptions,
        opts: &DeleteOptions,
    ) -> Result<Vec<Value>, ApiError> {
        if !rt.strategy.delete_collection() {
            // Kubernetes' answer where a kind has no deletecollection (Namespaces).
            return Err(ApiError::method_not_allowed(
                "the server does not allow this method on the requested resource",
            ));
        }
        let items = self.list(rt, ns, list).await?.items;
        let mut deleted = Vec::new();
        for item in items {
            match self
                .delete(rt, meta::namespace(&item), meta::name(&item), opts)
                .await
            {
                Ok(obj) => deleted.push(obj),
                Err(e) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        Ok(deleted)
    }
}

/// How a scale write says what it wants.
pub enum ScaleChange<'a> {
    Replace(&'a Value),
    Patch(PatchType, &'a Value),
}

impl Registry {
    /// `namespaces/<name>/finalize`: replace `spec.finalizers`; a terminating namespace
    /// with no finalizers left is removed.
    pub async fn finalize_namespace(
        &self,
        name: &str,
        body: &Value,
        opts: &WriteOptions,
    ) -> Result<Value, ApiError> {
        let rt = keelson_resources::find("", "namespaces").expect("namespaces are served");
        let fins = body
            .pointer("/spec/finalizers")
            .cloned()
            .unwrap_or(json!([]));
        let w = self
            .guaranteed_update(rt, "", name, opts, |old| {
                let old = old.ok_or_else(|| ApiError::not_found("", "namespaces", name))?;
                let mut new = old.clone();
                new["spec"]["finalizers"] = fins.clone();
                super::patching::track_fields(rt, Some(old), &mut new, opts, "finalize");
                Ok(new)
            })
            .await?;
        Ok(std::sync::Arc::unwrap_or_clone(w.object))
    }
}
