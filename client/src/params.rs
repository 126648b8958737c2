//! Options of the API calls, in the style of kube-rs.

use serde::Serialize;
use serde_json::{json, Value};

use crate::error::{Error, Result};

/// How much of each object a list or watch returns: a Keelson extension of the gRPC API
/// (the server omits the parts instead of the client decoding and dropping them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ObjectView {
    /// Only metadata, as a `meta.k8s.io/v1` `PartialObjectMetadata` (decode it as
    /// [`DynamicObject`](crate::DynamicObject) or `PartialObjectMeta`).
    pub metadata_only: bool,
    /// Leave out `metadata.managedFields`.
    pub omit_managed_fields: bool,
}

impl ObjectView {
    pub(crate) fn to_proto(self) -> Option<keelson_proto::ObjectView> {
        (self != ObjectView::default()).then_some(keelson_proto::ObjectView {
            metadata_only: self.metadata_only,
            omit_managed_fields: self.omit_managed_fields,
        })
    }
}

/// Options of [`Api::list`](crate::Api::list).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListParams {
    /// Label selector, e.g. `app=web,tier!=db`.
    pub label_selector: Option<String>,
    /// Field selector, e.g. `metadata.name=a` or `spec.nodeName=n1`.
    pub field_selector: Option<String>,
    /// Page size; `None` or 0 lists everything.
    pub limit: Option<u32>,
    /// The `continue` token of the previous page.
    pub continue_token: Option<String>,
    pub resource_version: Option<String>,
    pub view: ObjectView,
}

impl ListParams {
    pub fn labels(mut self, selector: &str) -> Self {
        self.label_selector = Some(selector.to_string());
        self
    }
    pub fn fields(mut self, selector: &str) -> Self {
        self.field_selector = Some(selector.to_string());
        self
    }
    pub fn limit(mut self, limit: u32) -> Self {
        self.limit = Some(limit);
        self
    }
    pub fn continue_token(mut self, token: &str) -> Self {
        self.continue_token = Some(token.to_string());
        self
    }
    pub fn at(mut self, resource_version: &str) -> Self {
        self.resource_version = Some(resource_version.to_string());
        self
    }
}

/// Options of [`Api::watch`](crate::Api::watch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchParams {
    pub label_selector: Option<String>,
    pub field_selector: Option<String>,
    /// Ask for BOOKMARK events (default: yes).
    pub bookmarks: bool,
    /// Start with the current state as ADDED events, then a BOOKMARK annotated
    /// `k8s.io/initial-events-end` (requires `bookmarks`).
    pub send_initial_events: bool,
    /// Server-side timeout in seconds; `None`: the server's default (30 minutes).
    pub timeout: Option<u32>,
    pub view: ObjectView,
}

impl Default for WatchParams {
    fn default() -> Self {
        WatchParams {
            label_selector: None,
            field_selector: None,
            bookmarks: true,
            send_initial_events: false,
            timeout: None,
            view: ObjectView::default(),
        }
    }
}

impl WatchParams {
    pub fn labels(mut self, selector: &str) -> Self {
        self.label_selector = Some(selector.to_string());
        self
    }
    pub fn fields(mut self, selector: &str) -> Self {
        self.field_selector = Some(selector.to_string());
        self
    }
    pub fn timeout(mut self, seconds: u32) -> Self {
        self.timeout = Some(seconds);
        self
    }
    pub fn disable_bookmarks(mut self) -> Self {
        self.bookmarks = false;
        self
    }
    pub fn initial_events(mut self) -> Self {
        self.send_initial_events = true;
        self.bookmarks = true;
        self
    }
}

/// `fieldValidation`: what the server does with unknown or duplicate fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldValidation {
    Strict,
    Warn,
    Ignore,
}

impl FieldValidation {
    pub fn as_str(self) -> &'static str {
        match self {
            FieldValidation::Strict => "Strict",
            FieldValidation::Warn => "Warn",
            FieldValidation::Ignore => "Ignore",
        }
    }
}

/// Options of create and replace calls.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PostParams {
    pub dry_run: bool,
    pub field_manager: Option<String>,
    /// `None`: the gRPC default, Strict.
    pub field_validation: Option<FieldValidation>,
}

impl PostParams {
    pub fn dry_run(mut self) -> Self {
        self.dry_run = true;
        self
    }
    pub fn field_manager(mut self, manager: &str) -> Self {
        self.field_manager = Some(manager.to_string());
        self
    }
    pub(crate) fn to_proto(&self) -> keelson_proto::WriteOptions {
        write_options(self.dry_run, &self.field_manager, self.field_validation)
    }
}

fn write_options(
    dry_run: bool,
    manager: &Option<String>,
    validation: Option<FieldValidation>,
) -> keelson_proto::WriteOptions {
    keelson_proto::WriteOptions {
        dry_run,
        field_manager: manager.clone().unwrap_or_default(),
        field_validation: validation
            .map(|v| v.as_str().to_string())
            .unwrap_or_default(),
    }
}

/// Options of patch calls.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PatchParams {
    pub dry_run: bool,
    /// Server-side apply: take ownership of fields other managers own.
    pub force: bool,
    /// Required for server-side apply.
    pub field_manager: Option<String>,
    pub field_validation: Option<FieldValidation>,
}

impl PatchParams {
    /// Server-side apply as `manager`.
    pub fn apply(manager: &str) -> Self {
        PatchParams {
            field_manager: Some(manager.to_string()),
            ..Default::default()
        }
    }
    /// Force conflicts (server-side apply only).
    pub fn force(mut self) -> Self {
        self.force = true;
        self
    }
    pub fn dry_run(mut self) -> Self {
        self.dry_run = true;
        self
    }
    pub(crate) fn to_proto(&self) -> keelson_proto::WriteOptions {
        write_options(self.dry_run, &self.field_manager, self.field_validation)
    }
}

/// A patch body and its kind.
#[derive(Debug, Clone, PartialEq)]
pub enum Patch<T: Serialize> {
    /// Server-side apply (`application/apply-patch+yaml`; the JSON is sent as is).
    Apply(T),
    /// RFC 6902 JSON patch: an array of operations.
    Json(Value),
    /// RFC 7386 JSON merge patch.
    Merge(T),
    /// Kubernetes strategic merge patch.
    Strategic(T),
}

impl<T: Serialize> Patch<T> {
    pub fn content_type(&self) -> &'static str {
        match self {
            Patch::Apply(_) => "application/apply-patch+yaml",
            Patch::Json(_) => "application/json-patch+json",
            Patch::Merge(_) => "application/merge-patch+json",
            Patch::Strategic(_) => "application/strategic-merge-patch+json",
        }
    }

    pub(crate) fn body(&self) -> Result<Vec<u8>> {
        match self {
            Patch::Apply(t) | Patch::Merge(t) | Patch::Strategic(t) => serde_json::to_vec(t),
            Patch::Json(v) => serde_json::to_vec(v),
        }
        .map_err(Error::Encode)
    }
}

/// `propagationPolicy` of a delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PropagationPolicy {
    Orphan,
    Background,
    Foreground,
}

/// Preconditions of a delete.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Preconditions {
    pub uid: Option<String>,
    pub resource_version: Option<String>,
}

/// Options of delete calls.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeleteParams {
    pub dry_run: bool,
    pub grace_period_seconds: Option<u32>,
    pub propagation_policy: Option<PropagationPolicy>,
    pub preconditions: Option<Preconditions>,
}

impl DeleteParams {
    pub fn background() -> Self {
        DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            ..Default::default()
        }
    }
    pub fn foreground() -> Self {
        DeleteParams {
            propagation_policy: Some(PropagationPolicy::Foreground),
            ..Default::default()
        }
    }
    pub fn orphan() -> Self {
        DeleteParams {
            propagation_policy: Some(PropagationPolicy::Orphan),
            ..Default::default()
        }
    }
    pub fn grace_period(mut self, seconds: u32) -> Self {
        self.grace_period_seconds = Some(seconds);
        self
    }
    pub fn dry_run(mut self) -> Self {
        self.dry_run = true;
        self
    }
    pub fn preconditions(mut self, p: Preconditions) -> Self {
        self.preconditions = Some(p);
        self
    }

    /// The `metav1.DeleteOptions` JSON (empty when there is nothing to say).
    pub(crate) fn body(&self) -> Vec<u8> {
        let mut v = json!({"kind": "DeleteOptions", "apiVersion": "v1"});
        let mut any = false;
        if let Some(g) = self.grace_period_seconds {
            v["gracePeriodSeconds"] = json!(g);
            any = true;
        }
        if let Some(p) = self.propagation_policy {
            v["propagationPolicy"] = json!(format!("{p:?}"));
            any = true;
        }
        if let Some(pre) = &self.preconditions {
            let mut m = serde_json::Map::new();
            if let Some(u) = &pre.uid {
                m.insert("uid".into(), json!(u));
            }
            if let Some(rv) = &pre.resource_version {
                m.insert("resourceVersion".into(), json!(rv));
            }
            v["preconditions"] = Value::Object(m);
            any = true;
        }
        if any {
            serde_json::to_vec(&v).unwrap_or_default()
        } else {
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delete_options_body() {
        assert!(DeleteParams::default().body().is_empty());
        let b = DeleteParams::foreground()
            .grace_period(0)
            .preconditions(Preconditions {
                uid: Some("u1".into()),
                resource_version: None,
            })
            .body();
        let v: Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["propagationPolicy"], "Foreground");
        assert_eq!(v["gracePeriodSeconds"], 0);
        assert_eq!(v["preconditions"], json!({"uid": "u1"}));
    }

    #[test]
    fn patch_content_types() {
        assert_eq!(
            Patch::Merge(json!({})).content_type(),
            "application/merge-patch+json"
        );
        assert_eq!(
            Patch::<()>::Json(json!([])).content_type(),
            "application/json-patch+json"
        );
        assert_eq!(
            Patch::Apply(json!({})).content_type(),
            "application/apply-patch+yaml"
        );
    }
}
