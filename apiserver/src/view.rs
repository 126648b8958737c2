//! How much of each object a list or watch sends back.
//!
//! Controllers drop `metadata.managedFields` from their caches and the garbage collector
//! reads nothing but metadata, yet decoding those bytes was a large part of every
//! watcher's CPU. Over gRPC a client can ask for a smaller view (Kubernetes offers the
//! metadata-only one over REST as `as=PartialObjectMetadata`). Each view of a change is
//! encoded once and shared by every watcher that asked for it.

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Value;

/// Which parts of an object to send.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct View {
    /// Only `metadata`, as a `meta.k8s.io/v1` `PartialObjectMetadata`.
    pub metadata_only: bool,
    /// Leave out `metadata.managedFields`.
    pub omit_managed_fields: bool,
}

impl View {
    /// The whole object, as REST always sends it.
    pub const FULL: View = View {
        metadata_only: false,
        omit_managed_fields: false,
    };
    /// How many distinct views there are (for per-view caches of encoded bytes).
    pub const COUNT: usize = 4;

    /// A dense index in `0..COUNT`.
    pub fn index(self) -> usize {
        usize::from(self.metadata_only) * 2 + usize::from(self.omit_managed_fields)
    }

    /// The JSON of `obj` as this view shows it.
    pub fn encode(self, obj: &Value) -> bytes::Bytes {
        let bytes = if self == View::FULL {
            serde_json::to_vec(obj)
        } else {
            serde_json::to_vec(&Shaped { obj, view: self })
        };
        bytes::Bytes::from(bytes.unwrap_or_default())
    }
}

/// `obj` seen through a view, serialized without copying it.
struct Shaped<'a> {
    obj: &'a Value,
    view: View,
}

impl Serialize for Shaped<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let Some(fields) = self.obj.as_object() else {
            return self.obj.serialize(s);
        };
        let metadata = fields.get("metadata").map(|m| Metadata {
            metadata: m,
            omit_managed_fields: self.view.omit_managed_fields,
        });
        if self.view.metadata_only {
            let mut out = s.serialize_map(Some(3))?;
            out.serialize_entry("apiVersion", "meta.k8s.io/v1")?;
            out.serialize_entry("kind", "PartialObjectMetadata")?;
            if let Some(m) = &metadata {
                out.serialize_entry("metadata", m)?;
            }
            return out.end();
        }
        let mut out = s.serialize_map(Some(fields.len()))?;
        for (k, v) in fields {
            match &metadata {
                Some(m) if k == "metadata" => out.serialize_entry(k, m)?,
                _ => out.serialize_entry(k, v)?,
            }
        }
        out.end()
    }
}

struct Metadata<'a> {
    metadata: &'a Value,
    omit_managed_fields: bool,
}

impl Serialize for Metadata<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.metadata.as_object() {
            Some(m) if self.omit_managed_fields => {
                let mut out = s.serialize_map(None)?;
                for (k, v) in m.iter().filter(|(k, _)| *k != "managedFields") {
                    out.serialize_entry(k, v)?;
                }
                out.end()
            }
            _ => self.metadata.serialize(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "a", "namespace": "ns", "uid": "u1", "resourceVersion": "7",
                         "ownerReferences": [{"kind": "ReplicaSet", "name": "rs", "uid": "u0"}],
                         "managedFields": [{"manager": "m", "operation": "Update"}]},
            "spec": {"nodeName": "n1"},
            "status": {"phase": "Running"}
        })
    }

    fn decode(b: bytes::Bytes) -> Value {
        serde_json::from_slice(&b).unwrap()
    }

    #[test]
    fn full_view_is_the_object() {
        assert_eq!(decode(View::FULL.encode(&pod())), pod());
    }

    #[test]
    fn omitting_managed_fields_keeps_everything_else() {
        let view = View {
            omit_managed_fields: true,
            ..View::default()
        };
        let mut want = pod();
        want["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("managedFields");
        assert_eq!(decode(view.encode(&pod())), want);
    }

    #[test]
    fn metadata_only_is_partial_object_metadata() {
        let view = View {
            metadata_only: true,
            omit_managed_fields: true,
        };
        let got = decode(view.encode(&pod()));
        assert_eq!(got["kind"], "PartialObjectMetadata");
        assert_eq!(got["apiVersion"], "meta.k8s.io/v1");
        assert_eq!(got["metadata"]["ownerReferences"][0]["uid"], "u0");
        assert_eq!(got["metadata"]["resourceVersion"], "7");
        assert!(got.get("spec").is_none() && got.get("status").is_none());
        assert!(got["metadata"].get("managedFields").is_none());
        let with_fields = View {
            metadata_only: true,
            omit_managed_fields: false,
        };
        assert_eq!(
            decode(with_fields.encode(&pod()))["metadata"]["managedFields"][0]["manager"],
            "m"
        );
    }

    #[test]
    fn indexes_are_distinct() {
        let all: std::collections::HashSet<usize> = [false, true]
            .into_iter()
            .flat_map(|m| {
                [false, true].map(move |o| {
                    View {
                        metadata_only: m,
                        omit_managed_fields: o,
                    }
                    .index()
                })
            })
            .collect();
        assert_eq!(all.len(), View::COUNT);
        assert!(all.iter().all(|i| *i < View::COUNT));
    }
}
