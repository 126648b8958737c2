//! One watch per served kind, feeding the graph with each object's metadata. A relist
//! (after the watch fell behind) reports the objects it no longer finds as deleted.
//!
//! Which kinds are watched follows discovery ([`Monitors::sync`]): a kind served from
//! now on (a new CustomResourceDefinition) gets a monitor, a kind no longer served
//! loses its monitor, as Kubernetes' `resyncMonitors` does.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures::StreamExt;
use keelson_client::runtime::watcher::{self, Event};
use keelson_client::{Api, ApiResource, Discovery, DynamicObject, KubeObject};
use tokio::sync::oneshot;
use tokio::task::{AbortHandle, JoinSet};

use super::graph::Meta;
use super::Collector;

/// Kinds the collector does not watch (Kubernetes' default `--gc-ignored-resources`:
/// events come and go in large numbers and never own anything).
pub fn ignored(r: &ApiResource) -> bool {
    r.plural == "events" && (r.group.is_empty() || r.group == "events.k8s.io")
}

/// The kinds the collector watches: each served kind it may delete, once, in its
/// preferred version (Kubernetes' `GetDeletableResources`).
pub fn monitored(d: &Discovery) -> impl Iterator<Item = &ApiResource> {
    d.preferred()
        .filter(|r| r.supports(&["delete", "list", "watch"]))
        .map(|r| &r.resource)
        .filter(|r| !ignored(r))
}

/// The running monitors, by group and plural. Dropping this stops them.
#[derive(Default)]
pub struct Monitors {
    tasks: JoinSet<()>,
    running: HashMap<(String, String), (ApiResource, AbortHandle)>,
}

impl Monitors {
    /// Watch exactly the kinds `d` makes [`monitored`]: start the missing ones (and
    /// restart one whose preferred version changed), stop the ones no longer served.
    /// Returns a signal per started monitor, fired after its first list is in the graph
    /// (dropped unfired if the monitor is stopped first).
    pub fn sync(&mut self, gc: &Arc<Collector>, d: &Discovery) -> Vec<oneshot::Receiver<()>> {
        while self.tasks.try_join_next().is_some() {}
        let wanted: HashMap<(String, String), &ApiResource> = monitored(d)
            .map(|r| ((r.group.clone(), r.plural.clone()), r))
            .collect();
        let stale: Vec<(String, String)> = self
            .running
            .iter()
            .filter(|(key, (r, _))| wanted.get(*key).is_none_or(|w| *w != r))
            .map(|(key, _)| key.clone())
            .collect();
        for key in stale {
            if let Some((r, task)) = self.running.remove(&key) {
                tracing::info!(resource = %r.plural, group = %r.group, version = %r.version, "garbage collector: stopping the monitor of a kind no longer served (in this version)");
                task.abort();
            }
        }
        let first = self.running.is_empty();
        let mut synced = Vec::new();
        for (key, r) in wanted {
            if self.running.contains_key(&key) {
                continue;
            }
            if !first {
                tracing::info!(resource = %r.plural, group = %r.group, version = %r.version, "garbage collector: monitoring a newly served kind");
            }
            let (tx, rx) = oneshot::channel();
            let task = self.tasks.spawn(run(gc.clone(), r.clone(), tx));
            self.running.insert(key, (r.clone(), task));
            synced.push(rx);
        }
        synced
    }

    /// The kinds watched now.
    pub fn len(&self) -> usize {
        self.running.len()
    }
}

/// Watch `r` until dropped; `synced` fires after the first list is in the graph.
async fn run(gc: Arc<Collector>, r: ApiResource, synced: oneshot::Sender<()>) {
    let api: Api<DynamicObject> = Api::all_with(gc.client.clone(), &r);
    let config = watcher::Config::default()
        .metadata_only()
        .without_managed_fields();
    let mut events = watcher::watcher(api, config).boxed();
    let mut synced = Some(synced);
    let mut listed: Option<HashSet<String>> = None;
    while let Some(ev) = events.next().await {
        match ev {
            Err(e) => {
                tracing::debug!(kind = %r.kind, error = %e, "garbage collector watch failed; retrying")
            }
            Ok(Event::Init) => listed = Some(HashSet::new()),
            Ok(Event::InitApply(o)) => {
                if let (Some(meta), Some(seen)) = (Meta::of(&r, &o), listed.as_mut()) {
                    seen.insert(meta.identity.uid.clone());
                    gc.update(|g| g.observe(meta));
                }
            }
            Ok(Event::InitDone) => {
                let present = listed.take().unwrap_or_default();
                gc.update(|g| g.relisted(&r.group, &r.kind, &present));
                if let Some(tx) = synced.take() {
                    let _ = tx.send(());
                }
            }
            Ok(Event::Apply(o)) => {
                if let Some(meta) = Meta::of(&r, &o) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deletable_kinds_are_monitored_once_without_events() {
        let all = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];
        let resource = |plural: &str, kind: &str, verbs: &[&str]| {
            serde_json::json!({"resource": plural, "scope": "Namespaced",
                "responseKind": {"kind": kind}, "verbs": verbs})
        };
        let doc = serde_json::json!({"kind": "APIGroupDiscoveryList", "items": [
            {"metadata": {"name": ""}, "versions": [{"version": "v1", "resources": [
                resource("configmaps", "ConfigMap", &all),
                resource("events", "Event", &all),
                resource("bindings", "Binding", &["create"]),
            ]}]},
            {"metadata": {"name": "events.k8s.io"}, "versions": [{"version": "v1", "resources": [
                resource("events", "Event", &all)]}]},
            {"metadata": {"name": "example.com"}, "versions": [
                {"version": "v2", "resources": [resource("widgets", "Widget", &all)]},
                {"version": "v1", "resources": [resource("widgets", "Widget", &all)]},
            ]},
        ]});
        let d = Discovery::from_aggregated(&serde_json::to_vec(&doc).unwrap()).unwrap();
        let watched: Vec<String> = monitored(&d)
            .map(|r| format!("{}/{}", r.api_version(), r.plural))
            .collect();
        assert_eq!(watched, ["v1/configmaps", "example.com/v2/widgets"]);
    }
}
