//! What the runtime (watcher, store, informer) needs to know about an object.

use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// An API object the runtime can cache: its identity, version and labels.
///
/// Implemented for every k8s-openapi resource with `ObjectMeta`, and for
/// [`DynamicObject`].
pub trait KubeObject: Clone + Serialize + DeserializeOwned + Send + Sync + 'static {
    fn name(&self) -> &str;
    fn namespace(&self) -> Option<&str>;
    fn resource_version(&self) -> Option<&str>;
    fn uid(&self) -> Option<&str>;
    fn label(&self, key: &str) -> Option<&str>;
    /// Drop `metadata.managedFields`, which caches never read and which can be most of
    /// an object's size (client-go's informers strip them the same way).
    fn strip_managed_fields(&mut self) {}

    /// The cache key: `namespace/name`, or `name` for cluster-scoped objects.
    fn key(&self) -> ObjectKey {
        ObjectKey::new(self.namespace(), self.name())
    }
}

impl<K> KubeObject for K
where
    K: k8s_openapi::Metadata<Ty = ObjectMeta>
        + Clone
        + Serialize
        + DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    fn name(&self) -> &str {
        self.metadata().name.as_deref().unwrap_or_default()
    }
    fn namespace(&self) -> Option<&str> {
        self.metadata()
            .namespace
            .as_deref()
            .filter(|n| !n.is_empty())
    }
    fn resource_version(&self) -> Option<&str> {
        self.metadata().resource_version.as_deref()
    }
    fn uid(&self) -> Option<&str> {
        self.metadata().uid.as_deref()
    }
    fn strip_managed_fields(&mut self) {
        self.metadata_mut().managed_fields = None;
    }
    fn label(&self, key: &str) -> Option<&str> {
        self.metadata()
            .labels
            .as_ref()
            .and_then(|l| l.get(key))
            .map(String::as_str)
    }
}

/// Any object as JSON, for dynamic informers (`Api<DynamicObject>`). Derefs to the
/// `serde_json::Value`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DynamicObject(pub Value);

impl DynamicObject {
    fn meta_str(&self, field: &str) -> Option<&str> {
        self.0.get("metadata")?.get(field)?.as_str()
    }
}

impl std::ops::Deref for DynamicObject {
    type Target = Value;
    fn deref(&self) -> &Value {
        &self.0
    }
}

impl std::ops::DerefMut for DynamicObject {
    fn deref_mut(&mut self) -> &mut Value {
        &mut self.0
    }
}

impl From<Value> for DynamicObject {
    fn from(v: Value) -> Self {
        DynamicObject(v)
    }
}

impl KubeObject for DynamicObject {
    fn strip_managed_fields(&mut self) {
        if let Some(m) = self.0.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("managedFields");
        }
    }
    fn name(&self) -> &str {
        self.meta_str("name").unwrap_or_default()
    }
    fn namespace(&self) -> Option<&str> {
        self.meta_str("namespace").filter(|n| !n.is_empty())
    }
    fn resource_version(&self) -> Option<&str> {
        self.meta_str("resourceVersion")
    }
    fn uid(&self) -> Option<&str> {
        self.meta_str("uid")
    }
    fn label(&self, key: &str) -> Option<&str> {
        self.0.get("metadata")?.get("labels")?.get(key)?.as_str()
    }
}

/// The identity of an object in a cache or work queue: `namespace/name` (or `name`),
/// as client-go's `MetaNamespaceKeyFunc` writes it. Orders by namespace, then name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectKey {
    pub fn new(namespace: Option<&str>, name: &str) -> Self {
        ObjectKey {
            namespace: namespace.filter(|n| !n.is_empty()).map(str::to_string),
            name: name.to_string(),
        }
    }

    /// Parse `namespace/name` or `name`.
    pub fn parse(key: &str) -> Self {
        match key.split_once('/') {
            Some((ns, name)) => ObjectKey::new(Some(ns), name),
            None => ObjectKey::new(None, key),
        }
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{ns}/{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use serde_json::json;

    #[test]
    fn keys_and_accessors() {
        let cm: ConfigMap = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "a", "namespace": "ns", "labels": {"app": "web"}, "resourceVersion": "7"}
        }))
        .unwrap();
        assert_eq!(cm.key().to_string(), "ns/a");
        assert_eq!(cm.label("app"), Some("web"));
        assert_eq!(KubeObject::resource_version(&cm), Some("7"));
        let d = DynamicObject(json!({"metadata": {"name": "n1", "labels": {"x": "y"}}}));
        assert_eq!(d.key().to_string(), "n1");
        assert_eq!(d.label("x"), Some("y"));
        assert_eq!(ObjectKey::parse("ns/a"), cm.key());
        assert_eq!(ObjectKey::parse("n1"), d.key());
    }
}
