//! Strategic merge patch, `application/strategic-merge-patch+json`.
//!
//! A JSON merge patch in which lists are not always replaced: the Kubernetes Go types
//! tag some lists to merge by a key field (containers by `name`) or as sets of
//! primitives (finalizers). The tags come from [`super::schema`]; lists it does not
//! know are replaced, maps always merge, `null` deletes a key.
//!
//! Directives, as `kubectl apply` (three-way patch), `kubectl edit` and `kubectl patch`
//! send them:
//!
//! - `$patch: replace` in a map replaces the map with the rest of the patch map;
//!   `$patch: delete` empties it (`{}`; a key the original lacks is not added);
//!   `$patch: merge` is the default and is accepted (Kubernetes rejects it in maps).
//! - In a merging list, an item `{"<key>": v, "$patch": "delete"}` deletes the items
//!   with that key; an item `{"$patch": "replace"}` makes the other patch items replace
//!   the list; `{"$patch": "merge"}` is an error, as in Kubernetes.
//! - `$retainKeys: [..]` in a map clears the original's keys that are not listed; a
//!   patch key missing from the list is a 400.
//! - `$deleteFromPrimitiveList/<field>: [..]` removes those values from a primitive list.
//! - `$setElementOrder/<field>: [..]` gives the order of a merging list: the listed
//!   items come in that order, items only the server has keep their place relative to
//!   them as well as can be.
//!
//! Without `$setElementOrder`, merged lists follow Kubernetes: patch items in patch
//! order, server-only items interleaved by their original order, so that an item the
//! patch adds comes before the server-only items that follow no patch item (as the
//! Kubernetes documentation's `kubectl patch` example shows for a new container).
//!
//! Values the original does not have are taken from the patch with their `null`s and
//! directives removed.
//!
//! Status codes: a patch that is not a JSON object, or malformed `$retainKeys`,
//! `$deleteFromPrimitiveList` or `$setElementOrder` directives: **400 BadRequest**, as in
//! Kubernetes. Lists of lists: **422 Invalid** with Kubernetes' generic message (detail
//! in the cause). Every other failure (an item without its merge key, `$setElementOrder`
//! that contradicts the patch list, an unknown `$patch` value, mixed item types):
//! **422 Invalid** with the detail as the message, where Kubernetes answers 500.
//!
//! Whether a kind supports strategic merge patch at all is the caller's question (a
//! built-in kind has a [`super::schema::Root`]); without a root this merges maps and
//! replaces every list.

// `ApiError` is this crate's error type by design, large as it is.
#![allow(clippy::result_large_err)]

use serde_json::{Map, Value};

use super::json_patch::{json_eq, APPLY_ERROR_MESSAGE};
use super::schema::{list_meta, ListMeta, Root};
use crate::{ApiError, Cause};

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList";
const SET_ELEMENT_ORDER: &str = "$setElementOrder";

const BAD_DOC: &str = "invalid JSON document";
const BAD_PRIMITIVE_LIST: &str = "invalid patch format of primitive list";
const BAD_RETAIN_KEYS: &str = "invalid patch format of retainKeys";
const BAD_SET_ELEMENT_ORDER: &str = "invalid patch format of setElementOrder list";

/// Apply `patch` to `original`, an object whose type starts at `root`.
pub fn apply(original: &Value, patch: &Value, root: Option<Root>) -> Result<Value, ApiError> {
    let Value::Object(patch) = patch else {
        return Err(ApiError::bad_request(BAD_DOC));
    };
    let mut out = match original {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    let ctx = Ctx { root };
    ctx.merge_map(&mut out, patch, &mut Vec::new())
        .map_err(Error::into_api)?;
    Ok(Value::Object(out))
}

enum Error {
    BadRequest(&'static str),
    ListOfLists,
    Other(String),
}

impl Error {
    fn into_api(self) -> ApiError {
        match self {
            Error::BadRequest(m) => ApiError::bad_request(m),
            Error::ListOfLists => {
                let mut e = ApiError::new(422, "Invalid", APPLY_ERROR_MESSAGE);
                e.causes = vec![Cause::new(
                    "FieldValueInvalid",
                    "patch",
                    "lists of lists are not supported",
                )];
                e
            }
            Error::Other(m) => ApiError::new(422, "Invalid", m),
        }
    }
}

type Res<T> = Result<T, Error>;

fn no_merge_key(item: &Map<String, Value>, key: &str) -> Error {
    Error::Other(format!(
        "map: {} does not contain declared merge key: {key}",
        Value::Object(item.clone())
    ))
}

fn unknown_directive(directive: &Value, map: &Map<String, Value>) -> Error {
    let shown = match directive {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    Error::Other(format!(
        "unknown patch type: {shown} in map: {}",
        Value::Object(map.clone())
    ))
}

fn is_directive_key(k: &str) -> bool {
    k == DIRECTIVE
        || k == RETAIN_KEYS
        || k.starts_with(DELETE_FROM_PRIMITIVE_LIST)
        || k.starts_with(SET_ELEMENT_ORDER)
}

/// The identity of a list item: its merge key's value, or the item for primitives.
fn ident<'a>(item: &'a Value, key: &str) -> Option<&'a Value> {
    if key.is_empty() {
        Some(item)
    } else {
        item.get(key)
    }
}

fn position(order: &[&Value], item: &Value, key: &str) -> Option<usize> {
    let id = ident(item, key)?;
    order.iter().position(|o| json_eq(o, id))
}

/// Kubernetes' ordering of a merged list: the items whose identity is in `patch_order`
/// sorted by it; the others (server-only) sorted by `server_order`; then the two
/// interleaved, a server-only item going first only when both are in `server_order`
/// and it comes earlier there.
fn normalize(
    merged: Vec<Value>,
    patch_order: &[&Value],
    server_order: &[&Value],
    key: &str,
) -> Vec<Value> {
    let (mut patched, mut server_only): (Vec<Value>, Vec<Value>) = merged
        .into_iter()
        .partition(|item| position(patch_order, item, key).is_some());
    patched.sort_by_key(|item| position(patch_order, item, key).unwrap_or(usize::MAX));
    server_only.sort_by_key(|item| position(server_order, item, key).unwrap_or(usize::MAX));

    let mut out = Vec::with_capacity(patched.len() + server_only.len());
    let mut left = server_only.into_iter().peekable();
    let mut right = patched.into_iter().peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(l), Some(r)) => matches!(
                (position(server_order, l, key), position(server_order, r, key)),
                (Some(li), Some(ri)) if li < ri
            ),
        };
        let next = if take_left { left.next() } else { right.next() };
        out.extend(next);
    }
    out
}

/// Kubernetes' check that the patch list's items come in `$setElementOrder`'s order.
fn validate_order(patch_list: &[Value], order: &[Value], key: &str) -> Res<()> {
    if patch_list.is_empty() || order.is_empty() {
        return Ok(());
    }
    let items: Vec<&Value> = patch_list
        .iter()
        .filter(|v| key.is_empty() || v.get(DIRECTIVE).and_then(Value::as_str) != Some("delete"))
        .collect();
    let (mut pi, mut oi) = (0, 0);
    while pi < items.len() && oi < order.len() {
        if items[pi].get(DIRECTIVE).is_some() {
            pi += 1;
            continue;
        }
        let same = match (ident(items[pi], key), ident(&order[oi], key)) {
            (Some(a), Some(b)) => json_eq(a, b),
            _ => false,
        };
        if same {
            pi += 1;
        }
        oi += 1;
    }
    if pi < items.len() {
        return Err(Error::Other(format!(
            "The order in patch list:\n{}\n doesn't match {SET_ELEMENT_ORDER} list:\n{}\n",
            Value::Array(patch_list.to_vec()),
            Value::Array(order.to_vec())
        )));
    }
    Ok(())
}

struct Ctx {
    root: Option<Root>,
}

impl Ctx {
    fn meta(&self, path: &[String]) -> ListMeta {
        let p: Vec<&str> = path.iter().map(String::as_str).collect();
        list_meta(self.root, &p)
    }

    /// Merge `patch` into `orig`; `path` names the map's field (list items add nothing).
    fn merge_map(
        &self,
        orig: &mut Map<String, Value>,
        patch: &Map<String, Value>,
        path: &mut Vec<String>,
    ) -> Res<()> {
        match patch.get(DIRECTIVE) {
            None => {}
            Some(Value::String(s)) if s == "replace" => {
                orig.clear();
                let rest: Map<String, Value> = patch
                    .iter()
                    .filter(|(k, _)| *k != DIRECTIVE)
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                return self.merge_map(orig, &rest, path);
            }
            Some(Value::String(s)) if s == "delete" => {
                orig.clear();
                return Ok(());
            }
            Some(Value::String(s)) if s == "merge" => {}
            Some(other) => return Err(unknown_directive(other, patch)),
        }

        if let Some(retain) = patch.get(RETAIN_KEYS) {
            let Value::Array(retain) = retain else {
                return Err(Error::BadRequest(BAD_RETAIN_KEYS));
            };
            let kept = |k: &str| retain.iter().any(|r| r.as_str() == Some(k));
            for (k, v) in patch {
                if !v.is_null() && !is_directive_key(k) && !kept(k) {
                    return Err(Error::BadRequest(BAD_RETAIN_KEYS));
                }
            }
            orig.retain(|k, _| kept(k));
        }

        let mut ordered: Vec<&str> = Vec::new();
        for (k, order) in patch {
            let Some(rest) = k.strip_prefix(SET_ELEMENT_ORDER) else {
                continue;
            };
            let (Some(field), Value::Array(order)) = (rest.strip_prefix('/'), order) else {
                return Err(Error::BadRequest(BAD_SET_ELEMENT_ORDER));
            };
            path.push(field.to_string());
            let done = self.set_element_order(orig, patch, field, order, path);
            path.pop();
            if done? {
                ordered.push(field);
            }
        }

        for (k, pv) in patch {
            if is_directive_key(k) || ordered.contains(&k.as_str()) {
                continue;
            }
            if pv.is_null() {
                orig.shift_remove(k);
                continue;
            }
            path.push(k.clone());
            let replaced = match (orig.get_mut(k), pv) {
                (Some(Value::Object(om)), Value::Object(pm)) => {
                    self.merge_map(om, pm, path).map(|()| None)
                }
                (Some(Value::Array(ol)), Value::Array(pl)) => {
                    let meta = self.meta(path);
                    self.merge_list(std::mem::take(ol), pl, meta, path)
                        .map(|merged| *ol = merged)
                        .map(|()| None)
                }
                _ => self.fresh(pv, path).map(Some),
            };
            path.pop();
            match replaced? {
                None => {}
                Some(Some(v)) => {
                    orig.insert(k.clone(), v);
                }
                Some(None) => {
                    orig.shift_remove(k);
                }
            }
        }

        for (k, pv) in patch {
            let Some(rest) = k.strip_prefix(DELETE_FROM_PRIMITIVE_LIST) else {
                continue;
            };
            let Some(field) = rest.strip_prefix('/') else {
                return Err(Error::BadRequest(BAD_PRIMITIVE_LIST));
            };
            if let (Some(Value::Array(ol)), Value::Array(del)) = (orig.get_mut(field), pv) {
                ol.retain(|x| x.is_object() || !del.iter().any(|d| json_eq(x, d)));
            }
        }
        Ok(())
    }

    /// Merge the list `field` of `patch` into `orig` and put it in `$setElementOrder`'s
    /// order. Returns false when the directive does not apply (the list does not merge,
    /// or the patch's value is not a list), leaving the field to the ordinary merge.
    fn set_element_order(
        &self,
        orig: &mut Map<String, Value>,
        patch: &Map<String, Value>,
        field: &str,
        order: &[Value],
        path: &mut Vec<String>,
    ) -> Res<bool> {
        let meta = self.meta(path);
        let Some(key) = meta.smp_merge_key else {
            return Ok(false);
        };
        let patch_list = match patch.get(field) {
            None => None,
            Some(Value::Array(p)) => Some(p),
            Some(_) => return Ok(false),
        };
        let orig_list = match orig.get(field) {
            Some(Value::Array(o)) => Some(o.clone()),
            _ => None,
        };
        if let Some(p) = patch_list {
            validate_order(p, order, key)?;
        }
        let merged = match (&orig_list, patch_list) {
            (Some(o), Some(p)) => self.merge_list(o.clone(), p, meta, path)?,
            (Some(o), None) => o.clone(),
            (None, Some(p)) => self.merge_list(Vec::new(), p, meta, path)?,
            (None, None) => return Ok(true),
        };
        let server = orig_list.unwrap_or_default();
        let server_order: Vec<&Value> = server.iter().filter_map(|v| ident(v, key)).collect();
        let wanted: Vec<&Value> = order.iter().filter_map(|v| ident(v, key)).collect();
        let sorted = normalize(merged, &wanted, &server_order, key);
        orig.insert(field.to_string(), Value::Array(sorted));
        Ok(true)
    }

    /// Merge a patch list into the original list of the field at `path`.
    fn merge_list(
        &self,
        orig: Vec<Value>,
        patch: &[Value],
        meta: ListMeta,
        path: &mut Vec<String>,
    ) -> Res<Vec<Value>> {
        let Some(key) = meta.smp_merge_key else {
            return self.fresh_list(patch, path);
        };
        if orig.is_empty() && patch.is_empty() {
            return Ok(orig);
        }
        if orig.iter().chain(patch).any(Value::is_array) {
            return Err(Error::ListOfLists);
        }
        let maps = orig.iter().chain(patch).filter(|v| v.is_object()).count();
        if maps != 0 && maps != orig.len() + patch.len() {
            return Err(Error::Other(format!(
                "list element types are not identical: {} {}",
                Value::Array(orig),
                Value::Array(patch.to_vec())
            )));
        }

        if maps == 0 {
            // Primitives merge as a set.
            let mut merged: Vec<Value> = Vec::with_capacity(orig.len() + patch.len());
            for v in orig.iter().chain(patch) {
                if !merged.iter().any(|m| json_eq(m, v)) {
                    merged.push(v.clone());
                }
            }
            let patch_order: Vec<&Value> = patch.iter().collect();
            let server_order: Vec<&Value> = orig.iter().collect();
            return Ok(normalize(merged, &patch_order, &server_order, ""));
        }
        if key.is_empty() {
            return Err(Error::Other(format!(
                "cannot merge lists without merge key for {}",
                path.join(".")
            )));
        }

        let mut list = orig;
        let mut replace = false;
        let mut items: Vec<&Map<String, Value>> = Vec::new();
        for item in patch {
            let Value::Object(m) = item else {
                unreachable!("all items are maps")
            };
            match m.get(DIRECTIVE) {
                None => items.push(m),
                Some(Value::String(s)) if s == "delete" => {
                    let Some(id) = m.get(key) else {
                        return Err(no_merge_key(m, key));
                    };
                    list.retain(|o| !o.get(key).is_some_and(|v| json_eq(v, id)));
                }
                Some(Value::String(s)) if s == "replace" => replace = true,
                Some(Value::String(s)) if s == "merge" => {
                    return Err(Error::Other(
                        "merging lists cannot yet be specified in the patch".to_string(),
                    ))
                }
                Some(other) => return Err(unknown_directive(other, m)),
            }
        }
        if replace {
            let mut out = Vec::with_capacity(items.len());
            for m in items {
                let mut fresh = Map::new();
                self.merge_map(&mut fresh, m, path)?;
                out.push(Value::Object(fresh));
            }
            return Ok(out);
        }

        let server_ids: Vec<Value> = list.iter().filter_map(|v| v.get(key)).cloned().collect();
        for m in &items {
            let Some(id) = m.get(key) else {
                return Err(no_merge_key(m, key));
            };
            let found = list
                .iter_mut()
                .find(|o| o.get(key).is_some_and(|v| json_eq(v, id)));
            match found {
                Some(Value::Object(om)) => self.merge_map(om, m, path)?,
                _ => {
                    let mut fresh = Map::new();
                    self.merge_map(&mut fresh, m, path)?;
                    list.push(Value::Object(fresh));
                }
            }
        }
        let patch_order: Vec<&Value> = items.iter().filter_map(|m| m.get(key)).collect();
        let server_order: Vec<&Value> = server_ids.iter().collect();
        Ok(normalize(list, &patch_order, &server_order, key))
    }

    /// A patch list that replaces the original: maps cleaned of directives and nulls,
    /// items that are only directives dropped.
    fn fresh_list(&self, patch: &[Value], path: &mut Vec<String>) -> Res<Vec<Value>> {
        let mut out = Vec::with_capacity(patch.len());
        for item in patch {
            match item {
                Value::Object(m) if m.contains_key(DIRECTIVE) => {}
                Value::Object(m) => {
                    let mut fresh = Map::new();
                    self.merge_map(&mut fresh, m, path)?;
                    out.push(Value::Object(fresh));
                }
                other => out.push(other.clone()),
            }
        }
        Ok(out)
    }

    /// The value a patch puts where the original has nothing (or something of another
    /// type): `None` when nothing should be there.
    fn fresh(&self, patch: &Value, path: &mut Vec<String>) -> Res<Option<Value>> {
        Ok(match patch {
            Value::Null => None,
            Value::Object(m) if m.get(DIRECTIVE).and_then(Value::as_str) == Some("delete") => None,
            Value::Object(m) => {
                let mut fresh = Map::new();
                self.merge_map(&mut fresh, m, path)?;
                Some(Value::Object(fresh))
            }
            Value::Array(a) => {
                let meta = self.meta(path);
                Some(Value::Array(self.merge_list(Vec::new(), a, meta, path)?))
            }
            scalar => Some(scalar.clone()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deploy(original: Value, patch: Value) -> Value {
        apply(&original, &patch, Some(Root::Deployment)).unwrap()
    }

    fn pod(original: Value, patch: Value) -> Result<Value, ApiError> {
        apply(&original, &patch, Some(Root::Pod))
    }

    fn names(list: &Value) -> Vec<&str> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect()
    }

    #[test]
    fn maps_merge_and_null_deletes() {
        let out = deploy(
            json!({"metadata": {"name": "web", "labels": {"app": "web", "tier": "fe"}},
                   "spec": {"replicas": 1, "paused": true}}),
            json!({"metadata": {"labels": {"tier": null, "env": "prod"}},
                   "spec": {"replicas": 3, "paused": null, "minReadySeconds": 5}}),
        );
        assert_eq!(
            out,
            json!({"metadata": {"name": "web", "labels": {"app": "web", "env": "prod"}},
                   "spec": {"replicas": 3, "minReadySeconds": 5}})
        );
    }

    #[test]
    fn containers_merge_by_name_and_nested_lists_by_their_keys() {
        let original = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "app", "image": "app:1",
             "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
             "ports": [{"containerPort": 80, "protocol": "TCP"}],
             "args": ["--a", "--b"]},
            {"name": "sidecar", "image": "sc:1"},
        ]}}}});
        let patch = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "app", "image": "app:2",
             "env": [{"name": "B", "value": "two"}, {"name": "C", "value": "3"}],
             "ports": [{"containerPort": 80.0, "name": "http"}],
             "args": ["--c"]},
        ]}}}});
        let out = deploy(original, patch);
        let containers = &out["spec"]["template"]["spec"]["containers"];
        assert_eq!(names(containers), ["app", "sidecar"]);
        let app = &containers[0];
        assert_eq!(app["image"], "app:2");
        // env merges by name: B changed, C added after the patch's order, A kept.
        assert_eq!(
            app["env"],
            json!([{"name": "A", "value": "1"}, {"name": "B", "value": "two"}, {"name": "C", "value": "3"}])
        );
        // ports merge by containerPort (80 == 80.0, as Go's float64s).
        let ports = app["ports"].as_array().unwrap();
        assert_eq!(ports.len(), 1);
        assert_eq!(
            (&ports[0]["protocol"], &ports[0]["name"]),
            (&json!("TCP"), &json!("http"))
        );
        // args has no strategy: replaced.
        assert_eq!(app["args"], json!(["--c"]));
        assert_eq!(containers[1], json!({"name": "sidecar", "image": "sc:1"}));
    }

    #[test]
    fn new_item_goes_first_without_set_element_order() {
        // As in the Kubernetes docs' `kubectl patch` example: the added container is
        // listed before the existing one.
        let out = deploy(
            json!({"spec": {"template": {"spec": {"containers": [{"name": "patch-demo-ctr", "image": "nginx"}]}}}}),
            json!({"spec": {"template": {"spec": {"containers": [{"name": "patch-demo-ctr-2", "image": "redis"}]}}}}),
        );
        assert_eq!(
            names(&out["spec"]["template"]["spec"]["containers"]),
            ["patch-demo-ctr-2", "patch-demo-ctr"]
        );
    }

    #[test]
    fn patch_order_and_server_only_items() {
        let original = json!({"spec": {"volumes": [
            {"name": "1"}, {"name": "2", "x": "b"}, {"name": "3"}
        ]}});
        let out = pod(
            original.clone(),
            json!({"spec": {"volumes": [{"name": "3", "x": "c"}, {"name": "1", "x": "a"}]}}),
        )
        .unwrap();
        assert_eq!(
            out["spec"]["volumes"],
            json!([{"name": "2", "x": "b"}, {"name": "3", "x": "c"}, {"name": "1", "x": "a"}])
        );
        let out = pod(
            original,
            json!({"spec": {"volumes": [{"name": "3"}, {"name": "1"}, {"name": "2", "y": 1}]}}),
        )
        .unwrap();
        assert_eq!(names(&out["spec"]["volumes"]), ["3", "1", "2"]);
        assert_eq!(
            out["spec"]["volumes"][2],
            json!({"name": "2", "x": "b", "y": 1})
        );
    }

    /// What client-side `kubectl apply` sends after the user changed an image, dropped
    /// an env var, added another, switched the strategy to Recreate and removed a
    /// finalizer.
    #[test]
    fn kubectl_apply_three_way_patch() {
        let live = json!({
            "metadata": {"name": "web", "finalizers": ["a.example/x", "b.example/y"],
                          "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}},
            "spec": {
                "replicas": 2,
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                    "containers": [
                        {"name": "web", "image": "nginx:1.25",
                         "env": [{"name": "A", "value": "1"}, {"name": "OLD", "value": "x"}, {"name": "Z", "value": "z"}],
                         "terminationMessagePath": "/dev/termination-log"},
                        {"name": "injected", "image": "proxy:1"},
                        {"name": "log", "image": "busybox"},
                    ],
                    "dnsPolicy": "ClusterFirst",
                }}
            }
        });
        let patch = json!({
            "metadata": {
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{\"new\":1}"},
                "$setElementOrder/finalizers": ["a.example/x"],
                "$deleteFromPrimitiveList/finalizers": ["b.example/y"],
            },
            "spec": {
                "strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": null},
                "template": {"spec": {
                    "$setElementOrder/containers": [{"name": "web"}, {"name": "log"}],
                    "containers": [{
                        "name": "web", "image": "nginx:1.27",
                        "$setElementOrder/env": [{"name": "A"}, {"name": "NEW"}, {"name": "Z"}],
                        "env": [{"name": "NEW", "value": "n"}, {"$patch": "delete", "name": "OLD"}],
                    }],
                }},
            }
        });
        let out = deploy(live, patch);
        assert_eq!(out["metadata"]["finalizers"], json!(["a.example/x"]));
        assert_eq!(
            out["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"],
            "{\"new\":1}"
        );
        assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));
        assert_eq!(out["spec"]["replicas"], 2);
        let spec = &out["spec"]["template"]["spec"];
        assert_eq!(spec["dnsPolicy"], "ClusterFirst");
        // The server-only container keeps its place after "web".
        assert_eq!(names(&spec["containers"]), ["web", "injected", "log"]);
        let web = &spec["containers"][0];
        assert_eq!(web["image"], "nginx:1.27");
        assert_eq!(web["terminationMessagePath"], "/dev/termination-log");
        assert_eq!(
            web["env"],
            json!([{"name": "A", "value": "1"}, {"name": "NEW", "value": "n"}, {"name": "Z", "value": "z"}])
        );
        // No directive is left anywhere.
        assert!(!out.to_string().contains('$'));
    }

    #[test]
    fn set_element_order_reorders_and_checks_the_patch_list() {
        let original =
            json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}});
        // Only reordering: no patch list.
        let out = pod(
            original.clone(),
            json!({"spec": {"$setElementOrder/containers": [{"name": "c"}, {"name": "a"}, {"name": "b"}]}}),
        )
        .unwrap();
        assert_eq!(names(&out["spec"]["containers"]), ["c", "a", "b"]);
        // An item of the order the list lacks is ignored.
        let out = pod(
            original.clone(),
            json!({"spec": {"$setElementOrder/containers": [{"name": "b"}, {"name": "zz"}, {"name": "a"}]}}),
        )
        .unwrap();
        assert_eq!(names(&out["spec"]["containers"]), ["b", "a", "c"]);
        // The patch list must follow the order.
        let e = pod(
            original,
            json!({"spec": {
                "$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
                "containers": [{"name": "b", "image": "x"}, {"name": "a", "image": "y"}],
            }}),
        )
        .unwrap_err();
        assert_eq!(e.code, 422);
        assert!(
            e.message.contains("doesn't match $setElementOrder list"),
            "{}",
            e.message
        );
        // A primitive list.
        let out = apply(
            &json!({"metadata": {"finalizers": ["x", "y"]}}),
            &json!({"metadata": {"$setElementOrder/finalizers": ["z", "y", "x"], "finalizers": ["z"]}}), Some(Root::MetadataOnly),
        )
        .unwrap();
        assert_eq!(out["metadata"]["finalizers"], json!(["z", "y", "x"]));
    }

    #[test]
    fn primitive_sets() {
        let cm =
            |orig: Value, patch: Value| apply(&orig, &patch, Some(Root::MetadataOnly)).unwrap();
        let out = cm(
            json!({"metadata": {"finalizers": ["a", "b"]}}),
            json!({"metadata": {"finalizers": ["b", "c"]}}),
        );
        assert_eq!(out["metadata"]["finalizers"], json!(["a", "b", "c"]));
        let out = cm(
            json!({"metadata": {"finalizers": ["a", "b", "c"]}}),
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["b", "zz"]}}),
        );
        assert_eq!(out["metadata"]["finalizers"], json!(["a", "c"]));
        // Deleting from a list the original lacks adds nothing.
        let out = cm(
            json!({"metadata": {}}),
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["b"]}}),
        );
        assert_eq!(out, json!({"metadata": {}}));
        // Patch order wins, as in Kubernetes.
        let out = cm(
            json!({"metadata": {"finalizers": ["1", "2", "3"]}}),
            json!({"metadata": {"finalizers": ["3", "1"]}}),
        );
        assert_eq!(out["metadata"]["finalizers"], json!(["2", "3", "1"]));
    }

    #[test]
    fn list_directives() {
        let original = json!({"spec": {"containers": [
            {"name": "a", "image": "a"}, {"name": "b", "image": "b"}, {"name": "b", "image": "dup"}
        ]}});
        let out = pod(
            original.clone(),
            json!({"spec": {"containers": [{"name": "b", "$patch": "delete"}]}}),
        )
        .unwrap();
        assert_eq!(
            out["spec"]["containers"],
            json!([{"name": "a", "image": "a"}])
        );

        let out = pod(
            original.clone(),
            json!({"spec": {"containers": [{"$patch": "replace"}, {"name": "c", "image": "c", "x": null}]}}),
        )
        .unwrap();
        assert_eq!(
            out["spec"]["containers"],
            json!([{"name": "c", "image": "c"}])
        );

        let out = pod(
            original.clone(),
            json!({"spec": {"containers": [{"$patch": "replace"}]}}),
        )
        .unwrap();
        assert_eq!(out["spec"]["containers"], json!([]));

        let e = pod(
            original.clone(),
            json!({"spec": {"containers": [{"$patch": "merge"}]}}),
        )
        .unwrap_err();
        assert_eq!(e.code, 422);
        let e = pod(
            original.clone(),
            json!({"spec": {"containers": [{"$patch": "delete"}]}}),
        )
        .unwrap_err();
        assert!(
            e.message
                .contains("does not contain declared merge key: name"),
            "{}",
            e.message
        );
        let e = pod(
            original,
            json!({"spec": {"containers": [{"$patch": "frob", "name": "a"}]}}),
        )
        .unwrap_err();
        assert!(
            e.message.starts_with("unknown patch type: frob"),
            "{}",
            e.message
        );
    }

    #[test]
    fn map_directives() {
        let original = json!({"spec": {"nodeSelector": {"a": "1", "b": "2"}, "x": 1}});
        let out = pod(
            original.clone(),
            json!({"spec": {"nodeSelector": {"$patch": "replace", "c": "3"}}}),
        )
        .unwrap();
        assert_eq!(out["spec"]["nodeSelector"], json!({"c": "3"}));
        let out = pod(
            original.clone(),
            json!({"spec": {"nodeSelector": {"$patch": "delete"}}}),
        )
        .unwrap();
        assert_eq!(out["spec"]["nodeSelector"], json!({}));
        // Deleting a map the original lacks does not create it.
        let out = pod(
            original.clone(),
            json!({"spec": {"affinity": {"$patch": "delete"}}}),
        )
        .unwrap();
        assert!(out["spec"].get("affinity").is_none());
        let out = pod(
            original.clone(),
            json!({"spec": {"nodeSelector": {"$patch": "merge", "c": "3"}}}),
        )
        .unwrap();
        assert_eq!(
            out["spec"]["nodeSelector"],
            json!({"a": "1", "b": "2", "c": "3"})
        );
        let out = pod(
            original.clone(),
            json!({"$patch": "replace", "spec": {"y": 2}}),
        )
        .unwrap();
        assert_eq!(out, json!({"spec": {"y": 2}}));
        let e = pod(original, json!({"spec": {"nodeSelector": {"$patch": 7}}})).unwrap_err();
        assert_eq!(e.code, 422);
    }

    #[test]
    fn retain_keys() {
        let original = json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}});
        let out = deploy(
            original.clone(),
            json!({"spec": {"strategy": {"$retainKeys": ["type", "rollingUpdate"], "rollingUpdate": {"maxSurge": 2}}}}),
        );
        assert_eq!(
            out["spec"]["strategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 2}})
        );
        let e = apply(
            &original,
            &json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {"maxSurge": 2}}}}), Some(Root::Deployment),
        )
        .unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (400, "invalid patch format of retainKeys")
        );
        let e = apply(
            &original,
            &json!({"spec": {"$retainKeys": "type"}}),
            Some(Root::Deployment),
        )
        .unwrap_err();
        assert_eq!(e.code, 400);
        // A volume keeps only the retained source.
        let out = pod(
            json!({"spec": {"volumes": [{"name": "v", "emptyDir": {}}]}}),
            json!({"spec": {"volumes": [{"name": "v", "$retainKeys": ["name", "hostPath"], "hostPath": {"path": "/x"}}]}}),
        )
        .unwrap();
        assert_eq!(
            out["spec"]["volumes"],
            json!([{"name": "v", "hostPath": {"path": "/x"}}])
        );
    }

    #[test]
    fn atomic_lists_and_unknown_kinds() {
        let out = pod(
            json!({"spec": {"tolerations": [{"key": "a"}, {"key": "b"}]}}),
            json!({"spec": {"tolerations": [{"key": "c", "value": null}]}}),
        )
        .unwrap();
        assert_eq!(out["spec"]["tolerations"], json!([{"key": "c"}]));
        // A kind the table does not know: maps merge, lists are replaced.
        let out = apply(
            &json!({"metadata": {"finalizers": ["a"]}, "spec": {"items": [{"name": "x"}], "m": {"a": 1}}}),
            &json!({"metadata": {"finalizers": ["b"]}, "spec": {"items": [{"name": "y"}], "m": {"b": 2}}}), None,
        )
        .unwrap();
        assert_eq!(
            out,
            json!({"metadata": {"finalizers": ["b"]}, "spec": {"items": [{"name": "y"}], "m": {"a": 1, "b": 2}}})
        );
    }

    #[test]
    fn fresh_values_lose_nulls_and_directives() {
        let out = pod(
            json!({"metadata": {"name": "p"}}),
            json!({"spec": {"containers": [
                {"name": "a", "image": null, "env": [{"name": "X", "$patch": "delete"}, {"name": "Y", "value": "y"}],
                 "$setElementOrder/env": [{"name": "Y"}]}
            ], "nodeSelector": {"$patch": "replace", "k": "v"}}}),
        )
        .unwrap();
        assert_eq!(
            out,
            json!({"metadata": {"name": "p"}, "spec": {
                "containers": [{"name": "a", "env": [{"name": "Y", "value": "y"}]}],
                "nodeSelector": {"k": "v"}}})
        );
        // A type change takes the patch's value.
        let out = pod(
            json!({"spec": {"x": [1]}}),
            json!({"spec": {"x": {"a": null, "b": 1}}}),
        )
        .unwrap();
        assert_eq!(out, json!({"spec": {"x": {"b": 1}}}));
    }

    #[test]
    fn owner_references_and_status_conditions() {
        let out = deploy(
            json!({"metadata": {"ownerReferences": [{"uid": "1", "name": "a"}]},
                   "status": {"conditions": [{"type": "Available", "status": "False"}, {"type": "Progressing", "status": "True"}]}}),
            json!({"metadata": {"ownerReferences": [{"uid": "2", "name": "b"}]},
                   "status": {"conditions": [{"type": "Available", "status": "True"}]}}),
        );
        assert_eq!(
            out["metadata"]["ownerReferences"],
            json!([{"uid": "2", "name": "b"}, {"uid": "1", "name": "a"}])
        );
        assert_eq!(
            out["status"]["conditions"],
            json!([{"type": "Available", "status": "True"}, {"type": "Progressing", "status": "True"}])
        );
    }

    /// What `kubectl edit` sends after the user removed a container and a port.
    #[test]
    fn kubectl_edit_two_way_patch() {
        let live = json!({"spec": {"containers": [
            {"name": "a", "ports": [{"containerPort": 80}, {"containerPort": 443}]},
            {"name": "b"},
            {"name": "c"},
        ]}});
        let patch = json!({"spec": {
            "$setElementOrder/containers": [{"name": "a"}, {"name": "c"}],
            "containers": [
                {"name": "a", "$setElementOrder/ports": [{"containerPort": 443}],
                 "ports": [{"$patch": "delete", "containerPort": 80}]},
                {"$patch": "delete", "name": "b"},
            ],
        }});
        let out = pod(live, patch).unwrap();
        assert_eq!(
            out,
            json!({"spec": {"containers": [
                {"name": "a", "ports": [{"containerPort": 443}]},
                {"name": "c"},
            ]}})
        );
    }

    #[test]
    fn service_ports_merge_by_port() {
        let out = apply(
            &json!({"spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443}], "clusterIPs": ["10.0.0.1"]}}),
            &json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}], "clusterIPs": ["10.0.0.2"]}}), Some(Root::Service),
        )
        .unwrap();
        assert_eq!(
            out,
            json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}, {"port": 443}], "clusterIPs": ["10.0.0.2"]}})
        );
    }

    #[test]
    fn errors() {
        let original = json!({"spec": {"containers": [{"name": "a"}]}});
        let e = pod(original.clone(), json!([1])).unwrap_err();
        assert_eq!((e.code, e.message.as_str()), (400, "invalid JSON document"));
        let e = pod(
            original.clone(),
            json!({"spec": {"containers": [{"image": "x"}]}}),
        )
        .unwrap_err();
        assert_eq!(e.code, 422);
        assert_eq!(
            e.message,
            "map: {\"image\":\"x\"} does not contain declared merge key: name"
        );
        let e = pod(original.clone(), json!({"spec": {"containers": ["a"]}})).unwrap_err();
        assert_eq!(e.code, 422);
        let e = pod(original.clone(), json!({"spec": {"containers": [["a"]]}})).unwrap_err();
        assert_eq!((e.code, e.message.as_str()), (422, APPLY_ERROR_MESSAGE));
        assert_eq!(e.causes[0].message, "lists of lists are not supported");
        let e = pod(
            original.clone(),
            json!({"spec": {"$setElementOrder/containers": {}}}),
        )
        .unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (400, "invalid patch format of setElementOrder list")
        );
        let e = pod(original, json!({"spec": {"$deleteFromPrimitiveListx": []}})).unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (400, "invalid patch format of primitive list")
        );
    }
}
