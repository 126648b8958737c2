//! How the pod-setup modules ([`crate::env`], [`crate::volumes`]) read the API objects a
//! pod refers to. A trait, so those modules are unit-tested with in-memory objects; the
//! agent uses [`ApiSources`] over its gRPC client.

use futures::future::BoxFuture;
use k8s_openapi::api::authentication::v1::{
    BoundObjectReference, TokenRequest, TokenRequestSpec, TokenRequestStatus,
};
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolume, PersistentVolumeClaim, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::node::v1::RuntimeClass;
use keelson_client::{Api, Client, ListParams, PostParams};

/// The objects a pod's environment and volumes are made from.
pub trait PodSources: Send + Sync {
    fn config_map(&self, ns: &str, name: &str) -> BoxFuture<'_, anyhow::Result<Option<ConfigMap>>>;
    fn secret(&self, ns: &str, name: &str) -> BoxFuture<'_, anyhow::Result<Option<Secret>>>;
    /// Every Service of a namespace (for the service environment variables).
    fn services(&self, ns: &str) -> BoxFuture<'_, anyhow::Result<Vec<Service>>>;
    /// A TokenRequest for `sa`, bound to the pod `(name, uid)`.
    fn service_account_token(
        &self,
        ns: &str,
        sa: &str,
        req: TokenRequestSpec,
        bound_pod: (&str, &str),
    ) -> BoxFuture<'_, anyhow::Result<TokenRequestStatus>>;
    fn pvc(
        &self,
        ns: &str,
        name: &str,
    ) -> BoxFuture<'_, anyhow::Result<Option<PersistentVolumeClaim>>>;
    fn pv(&self, name: &str) -> BoxFuture<'_, anyhow::Result<Option<PersistentVolume>>>;
    /// The RuntimeClass a pod names (for its CRI runtime handler).
    fn runtime_class(&self, name: &str) -> BoxFuture<'_, anyhow::Result<Option<RuntimeClass>>>;
}

/// [`PodSources`] over the API (reads go to the apiserver every time; the agent's
/// callers decide how often to ask).
#[derive(Clone)]
pub struct ApiSources {
    client: Client,
}

impl ApiSources {
    pub fn new(client: Client) -> Self {
        ApiSources { client }
    }
}

impl PodSources for ApiSources {
    fn config_map(&self, ns: &str, name: &str) -> BoxFuture<'_, anyhow::Result<Option<ConfigMap>>> {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), ns);
        let name = name.to_string();
        Box::pin(async move { Ok(api.get_opt(&name).await?) })
    }

    fn secret(&self, ns: &str, name: &str) -> BoxFuture<'_, anyhow::Result<Option<Secret>>> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), ns);
        let name = name.to_string();
        Box::pin(async move { Ok(api.get_opt(&name).await?) })
    }

    fn services(&self, ns: &str) -> BoxFuture<'_, anyhow::Result<Vec<Service>>> {
        let api: Api<Service> = Api::namespaced(self.client.clone(), ns);
        Box::pin(async move { Ok(api.list(&ListParams::default()).await?.items) })
    }

    fn service_account_token(
        &self,
        ns: &str,
        sa: &str,
        mut req: TokenRequestSpec,
        bound_pod: (&str, &str),
    ) -> BoxFuture<'_, anyhow::Result<TokenRequestStatus>> {
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), ns);
        let sa = sa.to_string();
        req.bound_object_ref = Some(BoundObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: Some(bound_pod.0.to_string()),
            uid: Some(bound_pod.1.to_string()),
        });
        let body = TokenRequest {
            spec: req,
            ..Default::default()
        };
        Box::pin(async move {
            let tr: TokenRequest = api
                .create_subresource("token", &sa, &PostParams::default(), &body)
                .await?;
            tr.status.ok_or_else(|| {
                anyhow::anyhow!("the TokenRequest for {sa} came back without status")
            })
        })
    }

    fn pvc(
        &self,
        ns: &str,
        name: &str,
    ) -> BoxFuture<'_, anyhow::Result<Option<PersistentVolumeClaim>>> {
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), ns);
        let name = name.to_string();
        Box::pin(async move { Ok(api.get_opt(&name).await?) })
    }

    fn pv(&self, name: &str) -> BoxFuture<'_, anyhow::Result<Option<PersistentVolume>>> {
        let api: Api<PersistentVolume> = Api::all(self.client.clone());
        let name = name.to_string();
        Box::pin(async move { Ok(api.get_opt(&name).await?) })
    }

    fn runtime_class(&self, name: &str) -> BoxFuture<'_, anyhow::Result<Option<RuntimeClass>>> {
        let api: Api<RuntimeClass> = Api::all(self.client.clone());
        let name = name.to_string();
        Box::pin(async move { Ok(api.get_opt(&name).await?) })
    }
}

/// In-memory objects for unit tests of the modules that read through [`PodSources`].
#[cfg(test)]
pub(crate) mod memory {
    use super::*;
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    /// Objects keyed by `ns/name` (PVs by name); tokens are `token-<n>` with a fixed
    /// lifetime, and every request is recorded.
    #[derive(Default)]
    pub struct MemorySources {
        pub config_maps: Mutex<BTreeMap<String, ConfigMap>>,
        pub secrets: Mutex<BTreeMap<String, Secret>>,
        pub services: Mutex<Vec<Service>>,
        pub pvcs: Mutex<BTreeMap<String, PersistentVolumeClaim>>,
        pub pvs: Mutex<BTreeMap<String, PersistentVolume>>,
        /// `(ns, sa, spec)` of every TokenRequest.
        pub token_requests: Mutex<Vec<(String, String, TokenRequestSpec)>>,
    }

    fn key(ns: &str, name: &str) -> String {
        format!("{ns}/{name}")
    }

    impl MemorySources {
        pub fn add_config_map(&self, ns: &str, name: &str, data: &[(&str, &str)]) {
            let cm = ConfigMap {
                metadata: meta(ns, name),
                data: Some(
                    data.iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..Default::default()
            };
            self.config_maps.lock().unwrap().insert(key(ns, name), cm);
        }

        pub fn add_secret(&self, ns: &str, name: &str, data: &[(&str, &str)]) {
            let s = Secret {
                metadata: meta(ns, name),
                data: Some(
                    data.iter()
                        .map(|(k, v)| {
                            (
                                k.to_string(),
                                k8s_openapi::ByteString(v.as_bytes().to_vec()),
                            )
                        })
                        .collect(),
                ),
                ..Default::default()
            };
            self.secrets.lock().unwrap().insert(key(ns, name), s);
        }
    }

    fn meta(ns: &str, name: &str) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some(name.into()),
            namespace: Some(ns.into()),
            ..Default::default()
        }
    }

    impl PodSources for MemorySources {
        fn config_map(
            &self,
            ns: &str,
            name: &str,
        ) -> BoxFuture<'_, anyhow::Result<Option<ConfigMap>>> {
            let r = self
                .config_maps
                .lock()
                .unwrap()
                .get(&key(ns, name))
                .cloned();
            Box::pin(async move { Ok(r) })
        }
        fn secret(&self, ns: &str, name: &str) -> BoxFuture<'_, anyhow::Result<Option<Secret>>> {
            let r = self.secrets.lock().unwrap().get(&key(ns, name)).cloned();
            Box::pin(async move { Ok(r) })
        }
        fn services(&self, ns: &str) -> BoxFuture<'_, anyhow::Result<Vec<Service>>> {
            let r: Vec<Service> = self
                .services
                .lock()
                .unwrap()
                .iter()
                .filter(|s| s.metadata.namespace.as_deref() == Some(ns))
                .cloned()
                .collect();
            Box::pin(async move { Ok(r) })
        }
        fn service_account_token(
            &self,
            ns: &str,
            sa: &str,
            mut req: TokenRequestSpec,
            bound_pod: (&str, &str),
        ) -> BoxFuture<'_, anyhow::Result<TokenRequestStatus>> {
            req.bound_object_ref = Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(bound_pod.0.into()),
                uid: Some(bound_pod.1.into()),
            });
            let lifetime = req.expiration_seconds.unwrap_or(3600);
            let mut reqs = self.token_requests.lock().unwrap();
            reqs.push((ns.into(), sa.into(), req));
            let token = format!("token-{}", reqs.len());
            let expires =
                std::time::SystemTime::now() + std::time::Duration::from_secs(lifetime as u64);
            let secs = expires
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs() as i64;
            let status: TokenRequestStatus = serde_json::from_value(serde_json::json!({
                "token": token,
                "expirationTimestamp": chrono::DateTime::from_timestamp(secs, 0).unwrap().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            }))
            .unwrap();
            Box::pin(async move { Ok(status) })
        }
        fn pvc(
            &self,
            ns: &str,
            name: &str,
        ) -> BoxFuture<'_, anyhow::Result<Option<PersistentVolumeClaim>>> {
            let r = self.pvcs.lock().unwrap().get(&key(ns, name)).cloned();
            Box::pin(async move { Ok(r) })
        }
        fn pv(&self, name: &str) -> BoxFuture<'_, anyhow::Result<Option<PersistentVolume>>> {
            let r = self.pvs.lock().unwrap().get(name).cloned();
            Box::pin(async move { Ok(r) })
        }
        fn runtime_class(
            &self,
            _name: &str,
        ) -> BoxFuture<'_, anyhow::Result<Option<RuntimeClass>>> {
            Box::pin(async move { Ok(None) })
        }
    }
}

/// [`ApiSources`] against a real apiserver and etcd.
#[cfg(test)]
mod api_tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Namespace, PersistentVolume, Pod};
    use serde::de::DeserializeOwned;
    use serde_json::json;

    fn obj<T: DeserializeOwned>(v: serde_json::Value) -> T {
        serde_json::from_value(v).unwrap()
    }

    #[tokio::test]
    async fn reads_objects_and_requests_bound_tokens() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let cluster = tokio::task::spawn_blocking(keelson_testkit::Cluster::start)
            .await
            .unwrap()
            .expect("test cluster (cargo build -p keelson-apiserver first)");
        let client = Client::from_kubeconfig(&cluster.kubeconfig).unwrap();
        let pp = PostParams::default();
        Api::<Namespace>::all(client.clone())
            .create(&pp, &obj(json!({"metadata": {"name": "apps"}})))
            .await
            .unwrap();
        Api::<ConfigMap>::namespaced(client.clone(), "apps")
            .create(
                &pp,
                &obj(json!({"metadata": {"name": "cfg"}, "data": {"k": "v"}})),
            )
            .await
            .unwrap();
        Api::<Secret>::namespaced(client.clone(), "apps")
            .create(
                &pp,
                &obj(json!({"metadata": {"name": "sec"}, "stringData": {"p": "pw"}})),
            )
            .await
            .unwrap();
        Api::<Service>::namespaced(client.clone(), "apps")
            .create(
                &pp,
                &obj(json!({"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}})),
            )
            .await
            .unwrap();
        Api::<ServiceAccount>::namespaced(client.clone(), "apps")
            .create(&pp, &obj(json!({"metadata": {"name": "builder"}})))
            .await
            .unwrap();
        let pod = Api::<Pod>::namespaced(client.clone(), "apps")
            .create(
                &pp,
                &obj(json!({"metadata": {"name": "p"}, "spec": {
                "serviceAccountName": "builder",
                "containers": [{"name": "c", "image": "busybox"}]}})),
            )
            .await
            .unwrap();
        Api::<PersistentVolumeClaim>::namespaced(client.clone(), "apps")
            .create(
                &pp,
                &obj(json!({"metadata": {"name": "claim"}, "spec": {
                "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})),
            )
            .await
            .unwrap();
        Api::<PersistentVolume>::all(client.clone())
            .create(
                &pp,
                &obj(json!({"metadata": {"name": "pv-1"}, "spec": {
                "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                "hostPath": {"path": "/tmp/pv-1"}}})),
            )
            .await
            .unwrap();

        let src = ApiSources::new(client.clone());
        let cm = src.config_map("apps", "cfg").await.unwrap().unwrap();
        assert_eq!(cm.data.unwrap()["k"], "v");
        assert!(src.config_map("apps", "nope").await.unwrap().is_none());
        let sec = src.secret("apps", "sec").await.unwrap().unwrap();
        assert_eq!(sec.data.unwrap()["p"].0, b"pw");
        assert!(src.secret("apps", "nope").await.unwrap().is_none());
        let svcs = src.services("apps").await.unwrap();
        assert_eq!(svcs.len(), 1);
        assert!(svcs[0].spec.as_ref().unwrap().cluster_ip.is_some());
        assert!(src.pvc("apps", "claim").await.unwrap().is_some());
        assert!(src.pvc("apps", "nope").await.unwrap().is_none());
        assert!(src.pv("pv-1").await.unwrap().is_some());
        assert!(src.pv("nope").await.unwrap().is_none());

        let uid = pod.metadata.uid.clone().unwrap();
        let spec = TokenRequestSpec {
            audiences: vec!["vault".into()],
            expiration_seconds: Some(3607),
            ..Default::default()
        };
        let status = src
            .service_account_token("apps", "builder", spec.clone(), ("p", &uid))
            .await
            .unwrap();
        // A JWT whose claims name the pod it is bound to.
        let claims = status.token.split('.').nth(1).unwrap();
        use base64::Engine;
        let claims: serde_json::Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(claims)
                .unwrap(),
        )
        .unwrap();
        assert_eq!(claims["sub"], "system:serviceaccount:apps:builder");
        assert_eq!(claims["aud"], json!(["vault"]));
        assert_eq!(claims["kubernetes.io"]["pod"]["uid"], uid.as_str());
        let lifetime = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
        assert_eq!(lifetime, 3607);
        assert_eq!(
            status.expiration_timestamp.0.as_second(),
            claims["exp"].as_i64().unwrap()
        );

        // A stale uid (the pod was replaced) is refused.
        let err = src
            .service_account_token("apps", "builder", spec, ("p", "not-the-uid"))
            .await
            .unwrap_err();
        assert!(format!("{err:#}").contains("does not match"), "{err:#}");
    }
}
