//! Root CA publisher (Kubernetes' pkg/controller/certificates/rootcacertpublisher):
//! every active namespace has a `kube-root-ca.crt` ConfigMap holding the cluster CA
//! bundle under `ca.crt`, so that pods can verify the apiserver. It is created with the
//! namespace, created again when deleted, and put back when someone changes it.
//!
//! The bundle is `--root-ca-file`, else the CA the controller-manager's own kubeconfig
//! trusts.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use keelson_client::runtime::{HandlerFuncs, Store};
use keelson_client::{Api, KubeObject, PostParams};
use keelson_component::{Queue, Requeue};

use crate::Context;

pub const NAME: &str = "kube-root-ca.crt";
const KEY: &str = "ca.crt";
const DESCRIPTION_ANNOTATION: &str = "kubernetes.io/description";
const DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.";

pub async fn run(ctx: Context) {
    let bundle = match root_ca(&ctx) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "root-ca-cert-publisher has no CA bundle to publish; not running");
            return;
        }
    };
    let namespaces = ctx.informers.get::<Namespace>();
    let config_maps = ctx.informers.get::<ConfigMap>();
    let queue: Queue<String> = Queue::new("root_ca_cert_publisher", &ctx.queue_metrics);
    let (q1, q2) = (queue.clone(), queue.clone());
    namespaces.add_handler(
        HandlerFuncs::new()
            .on_add(move |ns: Arc<Namespace>| q1.add(ns.name().to_string()))
            .on_update(move |_, ns: Arc<Namespace>| q2.add(ns.name().to_string())),
    );
    let (q1, q2) = (queue.clone(), queue.clone());
    let ours = |cm: &ConfigMap| cm.metadata.name.as_deref() == Some(NAME);
    config_maps.add_handler(
        HandlerFuncs::new()
            .on_update(move |_, cm: Arc<ConfigMap>| {
                if ours(&cm) {
                    q1.add(cm.metadata.namespace.clone().unwrap_or_default())
                }
            })
            .on_delete(move |cm: Arc<ConfigMap>| {
                if ours(&cm) {
                    q2.add(cm.metadata.namespace.clone().unwrap_or_default())
                }
            }),
    );
    namespaces.wait_for_sync().await;
    config_maps.wait_for_sync().await;
    let publisher = Arc::new(Publisher {
        ctx: ctx.clone(),
        namespaces: namespaces.store(),
        config_maps: config_maps.store(),
        bundle,
    });
    queue
        .run(ctx.options.concurrent_syncs, move |ns: String| {
            let p = publisher.clone();
            async move { p.sync(&ns).await }
        })
        .await;
}

fn root_ca(ctx: &Context) -> anyhow::Result<String> {
    let pem = match &ctx.options.root_ca_file {
        Some(path) => std::fs::read(path)
            .map_err(|e| anyhow::anyhow!("reading --root-ca-file {}: {e}", path.display()))?,
        None => ctx
            .client
            .ca_pem()
            .ok_or_else(|| anyhow::anyhow!("no --root-ca-file and the kubeconfig names no CA"))?
            .to_vec(),
    };
    Ok(String::from_utf8(pem)?)
}

struct Publisher {
    ctx: Context,
    namespaces: Store<Namespace>,
    config_maps: Store<ConfigMap>,
    bundle: String,
}

impl Publisher {
    async fn sync(&self, ns: &str) -> anyhow::Result<Requeue> {
        let Some(namespace) = self.namespaces.get_by_name(None, ns) else {
            return Ok(None);
        };
        let terminating = namespace.metadata.deletion_timestamp.is_some()
            || namespace.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Terminating");
        if terminating {
            return Ok(None);
        }
        let data = BTreeMap::from([(KEY.to_string(), self.bundle.clone())]);
        let api: Api<ConfigMap> = Api::namespaced(self.ctx.client.clone(), ns);
        let result = match self.config_maps.get_by_name(Some(ns), NAME) {
            None => {
                let cm = ConfigMap {
                    metadata: ObjectMeta {
                        name: Some(NAME.into()),
                        namespace: Some(ns.into()),
                        annotations: Some(BTreeMap::from([(
                            DESCRIPTION_ANNOTATION.to_string(),
                            DESCRIPTION.to_string(),
                        )])),
                        ..Default::default()
                    },
                    data: Some(data),
                    ..Default::default()
                };
                api.create(&PostParams::default(), &cm).await.map(drop)
            }
            Some(cm) => {
                let described =
                    cm.metadata.annotations.as_ref().is_some_and(|a| {
                        a.get(DESCRIPTION_ANNOTATION).is_some_and(|d| !d.is_empty())
                    });
                if cm.data.as_ref() == Some(&data) && described {
                    return Ok(None);
                }
                let mut fixed = (*cm).clone();
                fixed.data = Some(data);
                fixed
                    .metadata
                    .annotations
                    .get_or_insert_with(BTreeMap::new)
                    .insert(DESCRIPTION_ANNOTATION.into(), DESCRIPTION.into());
                api.replace(NAME, &PostParams::default(), &fixed)
                    .await
                    .map(drop)
            }
        };
        match result {
            // A namespace that started terminating, or a copy another worker made.
            Err(e) if e.is_already_exists() || e.code() == Some(403) || e.is_not_found() => {
                Ok(None)
            }
            other => other.map(|_| None).map_err(Into::into),
        }
    }
}
