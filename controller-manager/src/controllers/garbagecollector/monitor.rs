//! One watch per served kind, feeding the graph with each object's metadata. A relist
//! (after the watch fell behind) reports the objects it no longer finds as deleted.

use std::collections::HashSet;
use std::sync::Arc;

use futures::StreamExt;
use keelson_client::runtime::watcher::{self, Event};
use keelson_client::{Api, DynamicObject, KubeObject};
use keelson_resources::ResourceType;
use tokio::sync::oneshot;

use super::graph::Meta;
use super::Collector;
use crate::common::kinds;

/// Kinds the collector does not watch (Kubernetes' default `--gc-ignored-resources`:
/// events come and go in large numbers and never own anything).
pub fn ignored(rt: &ResourceType) -> bool {
    rt.plural == "events" && (rt.group.is_empty() || rt.group == "events.k8s.io")
}

/// Watch `rt` until dropped; `synced` fires after the first list is in the graph.
pub async fn run(gc: Arc<Collector>, rt: &'static ResourceType, synced: oneshot::Sender<()>) {
    let api: Api<DynamicObject> = Api::all_with(gc.client.clone(), &kinds::api_resource(rt));
    let config = watcher::Config::default()
        .metadata_only()
        .without_managed_fields();
    let mut events = watcher::watcher(api, config).boxed();
    let mut synced = Some(synced);
    let mut listed: Option<HashSet<String>> = None;
    while let Some(ev) = events.next().await {
        match ev {
            Err(e) => {
                tracing::debug!(kind = rt.kind, error = %e, "garbage collector watch failed; retrying")
            }
            Ok(Event::Init) => listed = Some(HashSet::new()),
            Ok(Event::InitApply(o)) => {
                if let (Some(meta), Some(seen)) = (Meta::of(rt, &o), listed.as_mut()) {
                    seen.insert(meta.identity.uid.clone());
                    gc.update(|g| g.observe(meta));
                }
            }
            Ok(Event::InitDone) => {
                let present = listed.take().unwrap_or_default();
                gc.update(|g| g.relisted(rt, &present));
                if let Some(tx) = synced.take() {
                    let _ = tx.send(());
                }
            }
            Ok(Event::Apply(o)) => {
                if let Some(meta) = Meta::of(rt, &o) {
                    gc.update(|g| g.observe(meta));
                }
            }
            Ok(Event::Delete(o)) => {
                if let Some(uid) = o.uid() {
                    gc.update(|g| g.observe_deletion(uid));
                }
            }
        }
    }
}
