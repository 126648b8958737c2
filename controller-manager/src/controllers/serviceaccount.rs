//! ServiceAccounts (Kubernetes' pkg/controller/serviceaccount): every active namespace
//! has a `default` ServiceAccount, created with the namespace and again whenever it is
//! deleted.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use keelson_client::runtime::{HandlerFuncs, Store};
use keelson_client::{Api, Client, PostParams};
use keelson_component::{Queue, Requeue};
use serde_json::json;

use crate::Context;

/// The ServiceAccounts every namespace gets.
const MANAGED: &[&str] = &["default"];

pub async fn run(ctx: Context) {
    let namespaces = ctx.informers.get::<Namespace>();
    let accounts = ctx.informers.get::<ServiceAccount>();
    let queue: Queue<String> = Queue::new("serviceaccount", &ctx.queue_metrics);
    let (q1, q2) = (queue.clone(), queue.clone());
    namespaces.add_handler(
        HandlerFuncs::new()
            .on_add(move |ns: Arc<Namespace>| q1.add(ns.metadata.name.clone().unwrap_or_default()))
            .on_update(move |_, ns: Arc<Namespace>| {
                q2.add(ns.metadata.name.clone().unwrap_or_default())
            }),
    );
    let q = queue.clone();
    accounts.add_handler(
        HandlerFuncs::new().on_delete(move |sa: Arc<ServiceAccount>| {
            if MANAGED.contains(&sa.metadata.name.as_deref().unwrap_or_default()) {
                q.add(sa.metadata.namespace.clone().unwrap_or_default());
            }
        }),
    );
    namespaces.wait_for_sync().await;
    accounts.wait_for_sync().await;
    let (client, namespaces, accounts) = (ctx.client.clone(), namespaces.store(), accounts.store());
    // One worker, as Kubernetes runs this controller.
    queue
        .run(1, move |ns: String| {
            let (client, namespaces, accounts) =
                (client.clone(), namespaces.clone(), accounts.clone());
            async move { sync(&client, &namespaces, &accounts, &ns).await }
        })
        .await;
}

async fn sync(
    client: &Client,
    namespaces: &Store<Namespace>,
    accounts: &Store<ServiceAccount>,
    name: &str,
) -> anyhow::Result<Requeue> {
    let Some(ns) = namespaces.get_by_name(None, name) else {
        return Ok(None);
    };
    let phase = ns.status.as_ref().and_then(|s| s.phase.as_deref());
    if ns.metadata.deletion_timestamp.is_some() || phase.is_some_and(|p| p != "Active") {
        return Ok(None);
    }
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), name);
    for sa in MANAGED {
        if accounts.get_by_name(Some(name), sa).is_some() {
            continue;
        }
        let account: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": sa}}))?;
        match api.create(&PostParams::default(), &account).await {
            Ok(_) => tracing::info!(
                namespace = name,
                service_account = sa,
                "created ServiceAccount"
            ),
            Err(e) if e.is_already_exists() => {}
            // The namespace started terminating since the cache saw it.
            Err(e) if e.code() == Some(403) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(None)
}
