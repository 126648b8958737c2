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
    use std::sync::Mutex;
    use std::time::Duration;

    fn discovery(resources: &[(&str, &str, &str, &str)]) -> Discovery {
        let all = [
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        ];
        let items: Vec<serde_json::Value> = resources
            .iter()
            .map(|(group, version, kind, plural)| {
                serde_json::json!({"metadata": {"name": group}, "versions": [{"version": version,
                    "resources": [{"resource": plural, "scope": "Namespaced",
                        "responseKind": {"kind": kind}, "verbs": all}]}]})
            })
            .collect();
        let doc = serde_json::json!({"kind": "APIGroupDiscoveryList", "items": items});
        Discovery::from_aggregated(&serde_json::to_vec(&doc).unwrap()).unwrap()
    }

    /// A collector whose client points at a closed port: its monitors only retry.
    fn collector() -> Arc<Collector> {
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
        let config = keelson_client::Config {
            server: "https://127.0.0.1:1".parse().unwrap(),
            tls_server_name: None,
            tls: Arc::new(tls),
            token: None,
            ca_pem: None,
            default_namespace: "default".into(),
            user_agent: "test".into(),
            connect_timeout: Duration::from_secs(1),
            request_timeout: None,
        };
        let metrics = keelson_component::QueueMetrics::register(&mut Default::default());
        let (_, served) = tokio::sync::watch::channel(Arc::new(Discovery::default()));
        Arc::new(Collector {
            client: keelson_client::Client::new(config).unwrap(),
            graph: Mutex::default(),
            delete_queue: keelson_component::Queue::new("d", &metrics),
            orphan_queue: keelson_component::Queue::new("o", &metrics),
            served,
        })
    }

    fn watched(m: &Monitors) -> Vec<String> {
        let mut v: Vec<String> = m
            .running
            .values()
            .map(|(r, _)| format!("{}/{}", r.api_version(), r.plural))
            .collect();
        v.sort();
        v
    }

    #[tokio::test]
    async fn monitors_start_for_new_kinds_and_stop_for_kinds_no_longer_served() {
        let gc = collector();
        let mut m = Monitors::default();
        let first = discovery(&[
            ("", "v1", "ConfigMap", "configmaps"),
            ("example.com", "v1", "Widget", "widgets"),
        ]);
        assert_eq!(m.sync(&gc, &first).len(), 2);
        assert!(m.sync(&gc, &first).is_empty(), "nothing new");
        // A new kind, and a new preferred version of one watched.
        let second = discovery(&[
            ("", "v1", "ConfigMap", "configmaps"),
            ("example.com", "v2", "Widget", "widgets"),
            ("example.com", "v1", "Gadget", "gadgets"),
        ]);
        let mut started = m.sync(&gc, &second);
        assert_eq!(started.len(), 2);
        assert_eq!(
            watched(&m),
            [
                "example.com/v1/gadgets",
                "example.com/v2/widgets",
                "v1/configmaps"
            ]
        );
        // Their CRDs gone: their monitors stop, and one never synced is not waited for.
        let third = discovery(&[("", "v1", "ConfigMap", "configmaps")]);
        assert!(m.sync(&gc, &third).is_empty());
        assert_eq!(watched(&m), ["v1/configmaps"]);
        assert_eq!(m.len(), 1);
        let signal = tokio::time::timeout(Duration::from_secs(5), started.pop().unwrap())
            .await
            .expect("a stopped monitor drops its signal");
        assert!(signal.is_err(), "it never listed");
    }

    #[test]
    fn deletable_kinds_are_monitored_once_without_events() {
        let all = [
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        ];
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
