//! A built-in kind's typed model: the k8s-openapi type generated from its Go type.
//!
//! Objects stay JSON all the way to etcd; the typed model is only used to check that a
//! body decodes as the kind's type (a string where an integer belongs is a 400), to
//! find the fields the type does not know (`fieldValidation`), and to describe the kind
//! in OpenAPI. Each kind's file names its type once, in its [`crate::ResourceType`].

use std::borrow::Cow;

use k8s_openapi::Resource;
use schemars::{JsonSchema, SchemaGenerator};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

/// One k8s-openapi type, with what the apiserver and OpenAPI need of it.
#[derive(Clone, Copy)]
pub struct Typed {
    /// The type's own group, version and kind (from k8s-openapi, so they cannot drift).
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    /// Decode into the type and encode again: an error for a body of the wrong shape,
    /// else the body as the type knows it (unknown fields gone).
    pub round_trip: fn(&Value) -> Result<Value, String>,
    /// Adds the type's schema (and all it references) to the generator's definitions;
    /// returns the definition name (`io.k8s.api.core.v1.Pod`).
    pub add_schema: fn(&mut SchemaGenerator) -> String,
    /// The definition name, without generating anything.
    pub schema_name: fn() -> Cow<'static, str>,
}

impl Typed {
    /// The model of k8s-openapi type `T`.
    pub const fn of<T: Resource + DeserializeOwned + Serialize + JsonSchema>() -> Typed {
        Typed {
            group: T::GROUP,
            version: T::VERSION,
            kind: T::KIND,
            round_trip: round_trip::<T>,
            add_schema: add_schema::<T>,
            schema_name: T::schema_name,
        }
    }
}

impl std::fmt::Debug for Typed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Typed({} {} {})", self.group, self.version, self.kind)
    }
}

fn round_trip<T: DeserializeOwned + Serialize>(obj: &Value) -> Result<Value, String> {
    // Deserialize from a borrowed Value: no copy of the object.
    let typed = T::deserialize(obj).map_err(|e| e.to_string())?;
    serde_json::to_value(typed).map_err(|e| e.to_string())
}

fn add_schema<T: JsonSchema>(generator: &mut SchemaGenerator) -> String {
    generator.subschema_for::<T>();
    T::schema_name().into_owned()
}

/// Request and response bodies of subresources, which are no served kind of their own.
pub mod bodies {
    use super::Typed;
    use k8s_openapi::api;

    /// `autoscaling/v1 Scale` (`/scale`).
    pub const SCALE: Typed = Typed::of::<api::autoscaling::v1::Scale>();
    /// `policy/v1 Eviction` (`pods/eviction`).
    pub const EVICTION: Typed = Typed::of::<api::policy::v1::Eviction>();
    /// `v1 Binding` (`pods/binding`, and the `bindings` resource).
    pub const BINDING: Typed = Typed::of::<api::core::v1::Binding>();
    /// `authentication.k8s.io/v1 TokenRequest` (`serviceaccounts/token`).
    pub const TOKEN_REQUEST: Typed = Typed::of::<api::authentication::v1::TokenRequest>();
}
