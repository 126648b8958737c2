//! Typed and dynamic calls: [`Api<K>`] in the style of kube-rs, over the gRPC API.

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::Arc;

use futures::stream::BoxStream;
use futures::StreamExt;
use k8s_openapi::api::autoscaling::v1::Scale;
use k8s_openapi::{NamespaceResourceScope, Resource};
use keelson_apimachinery::ApiError;
use keelson_proto as pb;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::client::Client;
use crate::error::{api_error_from_status, Error, Result};
use crate::params::{DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchParams};

/// Which resource an [`Api`] talks to: group, version, plural and scope.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ApiResource {
    /// `""` for the core group.
    pub group: String,
    pub version: String,
    pub kind: String,
    /// Plural resource name, as in URLs (`pods`, `deployments`).
    pub plural: String,
    pub namespaced: bool,
}

impl ApiResource {
    /// The resource of a k8s-openapi type.
    pub fn erase<K: Resource + 'static>() -> Self {
        ApiResource {
            group: K::GROUP.to_string(),
            version: K::VERSION.to_string(),
            kind: K::KIND.to_string(),
            plural: K::URL_PATH_SEGMENT.to_string(),
            namespaced: std::any::TypeId::of::<K::Scope>()
                == std::any::TypeId::of::<NamespaceResourceScope>(),
        }
    }

    /// A resource by name, e.g. `ApiResource::new("apps", "v1", "Deployment", "deployments", true)`.
    pub fn new(group: &str, version: &str, kind: &str, plural: &str, namespaced: bool) -> Self {
        ApiResource {
            group: group.to_string(),
            version: version.to_string(),
            kind: kind.to_string(),
            plural: plural.to_string(),
            namespaced,
        }
    }

    /// `group/version`, or `version` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

/// `metadata` of a list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListMeta {
    pub resource_version: String,
    /// Set when more pages follow: pass it as [`ListParams::continue_token`].
    pub continue_token: Option<String>,
    pub remaining_item_count: Option<i64>,
}

/// A list of objects with its metadata.
#[derive(Debug, Clone)]
pub struct ObjectList<K> {
    pub metadata: ListMeta,
    pub items: Vec<K>,
}

impl<K> ObjectList<K> {
    pub fn iter(&self) -> std::slice::Iter<'_, K> {
        self.items.iter()
    }
}

impl<K> IntoIterator for ObjectList<K> {
    type Item = K;
    type IntoIter = std::vec::IntoIter<K>;
    fn into_iter(self) -> Self::IntoIter {
        self.items.into_iter()
    }
}

impl<'a, K> IntoIterator for &'a ObjectList<K> {
    type Item = &'a K;
    type IntoIter = std::slice::Iter<'a, K>;
    fn into_iter(self) -> Self::IntoIter {
        self.items.iter()
    }
}

/// A BOOKMARK event: only a resourceVersion (and annotations).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bookmark {
    pub resource_version: String,
    pub annotations: BTreeMap<String, String>,
}

impl Bookmark {
    /// The bookmark that ends the initial events of a `sendInitialEvents` watch.
    pub fn is_initial_events_end(&self) -> bool {
        self.annotations
            .get("k8s.io/initial-events-end")
            .is_some_and(|v| v == "true")
    }
}

/// One event of a watch.
#[derive(Debug, Clone)]
pub enum WatchEvent<K> {
    Added(K),
    Modified(K),
    /// The last state of the object, at the resourceVersion of the deletion.
    Deleted(K),
    Bookmark(Bookmark),
    /// The watch failed (410 Expired when the resourceVersion was compacted) and ends.
    Error(ApiError),
}

/// Typed calls for one resource, optionally in one namespace.
///
/// ```no_run
/// # async fn f(client: keelson_client::Client) -> keelson_client::Result<()> {
/// use k8s_openapi::api::core::v1::Pod;
/// use keelson_client::{Api, ListParams};
/// let pods: Api<Pod> = Api::namespaced(client, "default");
/// for p in pods.list(&ListParams::default().labels("app=web")).await? {
///     println!("{:?}", p.metadata.name);
/// }
/// # Ok(()) }
/// ```
pub struct Api<K> {
    client: Client,
    resource: Arc<ApiResource>,
    namespace: Option<String>,
    _k: PhantomData<fn() -> K>,
}

impl<K> Clone for Api<K> {
    fn clone(&self) -> Self {
        Api {
            client: self.client.clone(),
            resource: self.resource.clone(),
            namespace: self.namespace.clone(),
            _k: PhantomData,
        }
    }
}

impl<K> std::fmt::Debug for Api<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api")
            .field("resource", &self.resource)
            .field("namespace", &self.namespace)
            .finish()
    }
}

/// Calls on any resource, with objects as `serde_json::Value`.
pub type DynamicApi = Api<Value>;

impl<K: Resource + 'static> Api<K> {
    /// Every namespace (or a cluster-scoped resource).
    pub fn all(client: Client) -> Self {
        Api::all_with(client, &ApiResource::erase::<K>())
    }

    /// One namespace.
    pub fn namespaced(client: Client, namespace: &str) -> Self
    where
        K: Resource<Scope = NamespaceResourceScope>,
    {
        Api::namespaced_with(client, namespace, &ApiResource::erase::<K>())
    }

    /// The client's default namespace (the kubeconfig context's, else `default`).
    pub fn default_namespaced(client: Client) -> Self
    where
        K: Resource<Scope = NamespaceResourceScope>,
    {
        let ns = client.default_namespace().to_string();
        Api::namespaced(client, &ns)
    }
}

impl<K> Api<K> {
    /// A resource given at run time, across namespaces (or cluster-scoped).
    pub fn all_with(client: Client, resource: &ApiResource) -> Self {
        Api {
            client,
            resource: Arc::new(resource.clone()),
            namespace: None,
            _k: PhantomData,
        }
    }

    /// A resource given at run time, in one namespace.
    pub fn namespaced_with(client: Client, namespace: &str, resource: &ApiResource) -> Self {
        Api {
            client,
            resource: Arc::new(resource.clone()),
            namespace: Some(namespace.to_string()),
            _k: PhantomData,
        }
    }

    pub fn resource(&self) -> &ApiResource {
        &self.resource
    }

    pub fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    fn rref(&self, namespace: Option<&str>, name: &str, subresource: &str) -> pb::ResourceRef {
        pb::ResourceRef {
            group: self.resource.group.clone(),
            version: self.resource.version.clone(),
            resource: self.resource.plural.clone(),
            namespace: namespace
                .or(self.namespace.as_deref())
                .unwrap_or_default()
                .to_string(),
            name: name.to_string(),
            subresource: subresource.to_string(),
        }
    }
}

fn decode<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| Error::decode(what, e))
}

fn encode<T: Serialize>(obj: &T) -> Result<(Vec<u8>, Option<String>)> {
    let v = serde_json::to_value(obj).map_err(Error::Encode)?;
    let ns = v
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .map(str::to_string);
    Ok((serde_json::to_vec(&v).map_err(Error::Encode)?, ns))
}

impl<K: Serialize + DeserializeOwned + Send + 'static> Api<K> {
    fn what(&self) -> &str {
        if self.resource.kind.is_empty() {
            &self.resource.plural
        } else {
            &self.resource.kind
        }
    }

    fn list_response<T: DeserializeOwned>(&self, r: pb::ListResponse) -> Result<ObjectList<T>> {
        let items = r
            .items
            .iter()
            .map(|b| decode(self.what(), b))
            .collect::<Result<Vec<T>>>()?;
        Ok(ObjectList {
            metadata: ListMeta {
                resource_version: r.resource_version,
                continue_token: Some(r.continue_token).filter(|c| !c.is_empty()),
                remaining_item_count: r.remaining_item_count,
            },
            items,
        })
    }

    /// Get one object.
    pub async fn get(&self, name: &str) -> Result<K> {
        let req = pb::GetRequest {
            r#ref: Some(self.rref(None, name, "")),
            resource_version: String::new(),
        };
        let obj = self.client.grpc().get(self.client.request(req)).await?;
        decode(self.what(), &obj.into_inner().json)
    }

    /// Get one object; `None` if it does not exist.
    pub async fn get_opt(&self, name: &str) -> Result<Option<K>> {
        match self.get(name).await {
            Ok(o) => Ok(Some(o)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// List objects (one page if `lp.limit` is set).
    pub async fn list(&self, lp: &ListParams) -> Result<ObjectList<K>> {
        let req = pb::ListRequest {
            r#ref: Some(self.rref(None, "", "")),
            label_selector: lp.label_selector.clone().unwrap_or_default(),
            field_selector: lp.field_selector.clone().unwrap_or_default(),
            limit: lp.limit.map(i64::from).unwrap_or(0),
            continue_token: lp.continue_token.clone().unwrap_or_default(),
            resource_version: lp.resource_version.clone().unwrap_or_default(),
            view: lp.view.to_proto(),
        };
        let r = self.client.grpc().list(self.client.request(req)).await?;
        self.list_response(r.into_inner())
    }

    /// Create an object. Without a namespace on the `Api`, the object's own is used.
    pub async fn create(&self, pp: &PostParams, obj: &K) -> Result<K> {
        let (body, ns) = encode(obj)?;
        let req = pb::CreateRequest {
            r#ref: Some(self.rref(ns.as_deref().filter(|_| self.namespace.is_none()), "", "")),
            object: body.into(),
            options: Some(pp.to_proto()),
        };
        let obj = self.client.grpc().create(self.client.request(req)).await?;
        decode(self.what(), &obj.into_inner().json)
    }

    async fn update_raw<T: DeserializeOwned>(
        &self,
        name: &str,
        subresource: &str,
        pp: &PostParams,
        body: Vec<u8>,
        ns: Option<String>,
    ) -> Result<T> {
        let req = pb::UpdateRequest {
            r#ref: Some(self.rref(
                ns.as_deref().filter(|_| self.namespace.is_none()),
                name,
                subresource,
            )),
            object: body.into(),
            options: Some(pp.to_proto()),
        };
        let obj = self.client.grpc().update(self.client.request(req)).await?;
        decode(self.what(), &obj.into_inner().json)
    }

    /// Replace an object. A `metadata.resourceVersion` in `obj` is a precondition: a
    /// stale one fails with 409 Conflict.
    pub async fn replace(&self, name: &str, pp: &PostParams, obj: &K) -> Result<K> {
        let (body, ns) = encode(obj)?;
        self.update_raw(name, "", pp, body, ns).await
    }

    /// Replace the status subresource.
    pub async fn replace_status(&self, name: &str, pp: &PostParams, obj: &K) -> Result<K> {
        let (body, ns) = encode(obj)?;
        self.update_raw(name, "status", pp, body, ns).await
    }

    async fn patch_raw<P: Serialize, T: DeserializeOwned>(
        &self,
        name: &str,
        subresource: &str,
        pp: &PatchParams,
        patch: &Patch<P>,
    ) -> Result<T> {
        let req = pb::PatchRequest {
            r#ref: Some(self.rref(None, name, subresource)),
            patch_type: patch.content_type().to_string(),
            patch: patch.body()?.into(),
            options: Some(pp.to_proto()),
            force: pp.force,
        };
        let obj = self.client.grpc().patch(self.client.request(req)).await?;
        decode(self.what(), &obj.into_inner().json)
    }

    /// Patch an object (merge, JSON, strategic, or server-side apply).
    pub async fn patch<P: Serialize>(
        &self,
        name: &str,
        pp: &PatchParams,
        patch: &Patch<P>,
    ) -> Result<K> {
        self.patch_raw(name, "", pp, patch).await
    }

    /// Patch the status subresource.
    pub async fn patch_status<P: Serialize>(
        &self,
        name: &str,
        pp: &PatchParams,
        patch: &Patch<P>,
    ) -> Result<K> {
        self.patch_raw(name, "status", pp, patch).await
    }

    /// Delete an object. Returns the deleted object, or the object still present with
    /// `metadata.deletionTimestamp` set when finalizers or a grace period keep it.
    pub async fn delete(&self, name: &str, dp: &DeleteParams) -> Result<K> {
        let req = pb::DeleteRequest {
            r#ref: Some(self.rref(None, name, "")),
            delete_options: dp.body().into(),
            dry_run: dp.dry_run,
        };
        let obj = self.client.grpc().delete(self.client.request(req)).await?;
        decode(self.what(), &obj.into_inner().json)
    }

    /// Delete every object matching the selectors of `lp`; returns what was deleted.
    pub async fn delete_collection(
        &self,
        dp: &DeleteParams,
        lp: &ListParams,
    ) -> Result<ObjectList<K>> {
        let req = pb::DeleteCollectionRequest {
            r#ref: Some(self.rref(None, "", "")),
            label_selector: lp.label_selector.clone().unwrap_or_default(),
            field_selector: lp.field_selector.clone().unwrap_or_default(),
            delete_options: dp.body().into(),
            dry_run: dp.dry_run,
        };
        let r = self
            .client
            .grpc()
            .delete_collection(self.client.request(req))
            .await?;
        self.list_response(r.into_inner())
    }

    /// The scale subresource.
    pub async fn get_scale(&self, name: &str) -> Result<Scale> {
        let req = pb::GetRequest {
            r#ref: Some(self.rref(None, name, "scale")),
            resource_version: String::new(),
        };
        let obj = self.client.grpc().get(self.client.request(req)).await?;
        decode("Scale", &obj.into_inner().json)
    }

    /// Replace the scale subresource (`spec.replicas`).
    pub async fn replace_scale(&self, name: &str, pp: &PostParams, scale: &Scale) -> Result<Scale> {
        let (body, _) = encode(scale)?;
        self.update_raw(name, "scale", pp, body, None).await
    }

    /// Patch the scale subresource.
    pub async fn patch_scale<P: Serialize>(
        &self,
        name: &str,
        pp: &PatchParams,
        patch: &Patch<P>,
    ) -> Result<Scale> {
        self.patch_raw(name, "scale", pp, patch).await
    }

    /// POST to a subresource, e.g. `pods/binding` with a `Binding`; the response is
    /// decoded as `R` (use `serde_json::Value` if unsure).
    pub async fn create_subresource<T: Serialize, R: DeserializeOwned>(
        &self,
        subresource: &str,
        name: &str,
        pp: &PostParams,
        data: &T,
    ) -> Result<R> {
        let (body, _) = encode(data)?;
        let req = pb::CreateRequest {
            r#ref: Some(self.rref(None, name, subresource)),
            object: body.into(),
            options: Some(pp.to_proto()),
        };
        let obj = self.client.grpc().create(self.client.request(req)).await?;
        decode(subresource, &obj.into_inner().json)
    }

    /// PUT to a subresource, e.g. `namespaces/finalize` with a `Namespace`; the response
    /// is decoded as `R`.
    pub async fn replace_subresource<T: Serialize, R: DeserializeOwned>(
        &self,
        subresource: &str,
        name: &str,
        pp: &PostParams,
        data: &T,
    ) -> Result<R> {
        let (body, ns) = encode(data)?;
        self.update_raw(name, subresource, pp, body, ns).await
    }

    /// Watch for changes after `resource_version` (`""` or `"0"`: the current state as
    /// ADDED events first). A compacted resourceVersion yields a
    /// [`WatchEvent::Error`] with code 410, after which the stream ends.
    pub async fn watch(
        &self,
        wp: &WatchParams,
        resource_version: &str,
    ) -> Result<BoxStream<'static, Result<WatchEvent<K>>>> {
        let req = pb::WatchRequest {
            r#ref: Some(self.rref(None, "", "")),
            label_selector: wp.label_selector.clone().unwrap_or_default(),
            field_selector: wp.field_selector.clone().unwrap_or_default(),
            resource_version: resource_version.to_string(),
            allow_watch_bookmarks: wp.bookmarks || wp.send_initial_events,
            send_initial_events: wp.send_initial_events.then_some(true),
            timeout_seconds: wp.timeout.map(i64::from).unwrap_or(0),
            view: wp.view.to_proto(),
        };
        let stream = self.client.grpc().watch(self.client.request(req)).await?;
        let what: Arc<str> = self.what().into();
        Ok(stream
            .into_inner()
            .map(move |ev| match ev {
                Ok(ev) => decode_event(&what, ev),
                Err(status) => Err(Error::from(status)),
            })
            .boxed())
    }
}

fn decode_event<K: DeserializeOwned>(what: &str, ev: pb::WatchEvent) -> Result<WatchEvent<K>> {
    Ok(match ev.r#type.as_str() {
        "ADDED" => WatchEvent::Added(decode(what, &ev.object)?),
        "MODIFIED" => WatchEvent::Modified(decode(what, &ev.object)?),
        "DELETED" => WatchEvent::Deleted(decode(what, &ev.object)?),
        "BOOKMARK" => {
            let v: Value = decode("bookmark", &ev.object)?;
            let meta = v.get("metadata");
            let s = |k: &str| meta.and_then(|m| m.get(k));
            WatchEvent::Bookmark(Bookmark {
                resource_version: s("resourceVersion")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                annotations: s("annotations")
                    .and_then(Value::as_object)
                    .map(|m| {
                        m.iter()
                            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        }
        "ERROR" => {
            let v: Value = decode("watch error status", &ev.object)?;
            WatchEvent::Error(api_error_from_status(&v).unwrap_or_else(|| {
                ApiError::internal(format!("watch error without a Status: {v}"))
            }))
        }
        other => {
            return Err(Error::from(ApiError::internal(format!(
                "unknown watch event type {other:?}"
            ))))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
    use serde_json::json;

    #[test]
    fn resource_metadata_from_k8s_openapi() {
        let pods = ApiResource::erase::<Pod>();
        assert_eq!(
            (
                pods.group.as_str(),
                pods.version.as_str(),
                pods.plural.as_str()
            ),
            ("", "v1", "pods")
        );
        assert!(pods.namespaced);
        assert!(!ApiResource::erase::<Node>().namespaced);
        let d = ApiResource::erase::<k8s_openapi::api::apps::v1::Deployment>();
        assert_eq!(d.api_version(), "apps/v1");
        assert_eq!(d.plural, "deployments");
    }

    #[test]
    fn watch_events_decode() {
        let ev = |t: &str, o: Value| pb::WatchEvent {
            r#type: t.into(),
            object: serde_json::to_vec(&o).unwrap().into(),
        };
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "resourceVersion": "5"}});
        match decode_event::<ConfigMap>("ConfigMap", ev("ADDED", cm)).unwrap() {
            WatchEvent::Added(c) => assert_eq!(c.metadata.name.as_deref(), Some("a")),
            other => panic!("{other:?}"),
        }
        let bm = json!({"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"resourceVersion": "9", "annotations": {"k8s.io/initial-events-end": "true"}}});
        match decode_event::<ConfigMap>("ConfigMap", ev("BOOKMARK", bm)).unwrap() {
            WatchEvent::Bookmark(b) => {
                assert_eq!(b.resource_version, "9");
                assert!(b.is_initial_events_end());
            }
            other => panic!("{other:?}"),
        }
        let gone = ApiError::gone("too old resource version: 3").to_status();
        match decode_event::<ConfigMap>("ConfigMap", ev("ERROR", gone)).unwrap() {
            WatchEvent::Error(e) => assert_eq!((e.code, e.reason.as_str()), (410, "Expired")),
            other => panic!("{other:?}"),
        }
        assert!(decode_event::<ConfigMap>("ConfigMap", ev("WHAT", json!({}))).is_err());
    }
}
