//! The client library of Keelson's components: typed calls, watches, informers and work
//! queues over the apiserver's gRPC API (`proto/keelson.proto`), in the style of kube-rs.
//!
//! - [`Client`]: one HTTP/2 connection over TLS (tokio-rustls), configured from a
//!   kubeconfig: the cluster CA, a client certificate and/or a bearer token.
//! - [`Api<K>`]: get, list, create, replace, patch, delete, watch, and the status, scale
//!   and binding subresources, with k8s-openapi types; [`DynamicApi`] does the same on
//!   `serde_json::Value` for any group/version/resource.
//! - [`Client::discover`]: what the apiserver serves ([`Discovery`]: groups, versions,
//!   kinds, scope, verbs and subresources, custom resources included).
//! - [`Error`]: [`Error::Api`] carries the apiserver's `metav1.Status` as an
//!   [`ApiError`] (code, reason, causes), exactly as over REST.
//! - [`runtime`]: [`watcher`](runtime::watcher()), [`Store`](runtime::Store),
//!   [`SharedInformer`](runtime::SharedInformer) and [`WorkQueue`](runtime::WorkQueue).
//!
//! ```no_run
//! # async fn f() -> keelson_client::Result<()> {
//! use k8s_openapi::api::core::v1::ConfigMap;
//! use keelson_client::{Api, Client, PostParams};
//!
//! let client = Client::from_kubeconfig_default()?;
//! let cms: Api<ConfigMap> = Api::namespaced(client, "default");
//! match cms.get("settings").await {
//!     Ok(cm) => println!("{:?}", cm.data),
//!     Err(e) if e.is_not_found() => println!("no settings"),
//!     Err(e) => return Err(e),
//! }
//! # Ok(()) }
//! ```

pub mod api;
pub mod client;
pub mod config;
pub mod discovery;
pub mod error;
pub mod object;
pub mod params;
pub mod runtime;
pub mod well_known;

pub use api::{Api, ApiResource, Bookmark, DynamicApi, ListMeta, ObjectList, WatchEvent};
pub use client::{BearerToken, Client};
pub use config::Config;
pub use discovery::{Discovery, ServedResource};
pub use error::{Error, Result};
pub use object::{DynamicObject, KubeObject, ObjectKey};
pub use params::{
    DeleteParams, FieldValidation, ListParams, ObjectView, Patch, PatchParams, PostParams,
    Preconditions, PropagationPolicy, WatchParams,
};

pub use k8s_openapi;
pub use keelson_apimachinery::{ApiError, Cause};
