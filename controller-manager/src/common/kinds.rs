//! The kinds the apiserver serves, from discovery ([`Client::discover`]), for the
//! controllers that act on every kind: the garbage collector and namespace deletion.
//! Built-in kinds and custom resources alike; nothing here knows a kind by name.
//!
//! [`follow`] keeps a snapshot current the way Kubernetes' garbage collector keeps its
//! monitors: read again every [`RESYNC`], and at once when a CustomResourceDefinition
//! changes. A CRD's watch event comes a moment before the apiserver serves (or stops
//! serving) its resource, so after a change discovery is read again every
//! [`SETTLE_RETRY`] until it shows the change (at most [`SETTLE_FOR`]: a CRD whose names
//! are not accepted is never served).

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use keelson_client::discovery::group_resource;
use keelson_client::runtime::watcher::{self, Event};
use keelson_client::{Api, ApiResource, Client, Discovery, DynamicApi, DynamicObject, KubeObject};
use tokio::sync::watch;
use tokio::time::Instant;

/// How often discovery is read without a CRD change (Kubernetes' garbage collector
/// resyncs its monitors every 30 s).
pub const RESYNC: Duration = Duration::from_secs(30);
/// How soon discovery is read again while it does not show a CRD change yet.
pub const SETTLE_RETRY: Duration = Duration::from_millis(250);
/// How long a CRD change is waited for in discovery.
pub const SETTLE_FOR: Duration = Duration::from_secs(10);
/// Between attempts of the first discovery.
const FIRST_RETRY: Duration = Duration::from_secs(1);

/// Dynamic calls on `r`, in `namespace` when the kind is namespaced.
pub fn api(client: &Client, r: &ApiResource, namespace: Option<&str>) -> DynamicApi {
    match namespace.filter(|_| r.namespaced) {
        Some(ns) => DynamicApi::namespaced_with(client.clone(), ns, r),
        None => DynamicApi::all_with(client.clone(), r),
    }
}

/// The CustomResourceDefinitions, whose changes change what is served.
fn crds() -> ApiResource {
    ApiResource::new(
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        false,
    )
}

/// Discovery once it first answers, and the future that keeps it current (the
/// receiver sees every change); dropping the future stops the refreshes.
pub async fn follow(
    client: Client,
) -> (
    watch::Receiver<Arc<Discovery>>,
    impl Future<Output = ()> + Send,
) {
    let first = loop {
        match client.discover().await {
            Ok(d) => break d,
            Err(e) => {
                tracing::warn!(error = %e, "discovery failed; retrying");
                tokio::time::sleep(FIRST_RETRY).await;
            }
        }
    };
    let (tx, rx) = watch::channel(Arc::new(first));
    (rx, keep_current(client, tx))
}

async fn keep_current(client: Client, tx: watch::Sender<Arc<Discovery>>) {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &crds());
    let config = watcher::Config::default()
        .metadata_only()
        .without_managed_fields();
    let mut events = watcher::watcher(api, config).boxed();
    let mut waiting = Waiting::default();
    let mut resync = tokio::time::interval_at(Instant::now() + RESYNC, RESYNC);
    loop {
        let settle = async {
            if waiting.is_empty() {
                std::future::pending::<()>().await
            }
            tokio::time::sleep(SETTLE_RETRY).await
        };
        tokio::select! {
            _ = resync.tick() => {}
            _ = settle => {}
            ev = events.next() => match ev {
                // The initial list (and a relist) is read once it is complete.
                Some(Ok(Event::Init | Event::InitApply(_))) => continue,
                Some(Ok(Event::InitDone)) => {}
                Some(Ok(Event::Apply(crd))) => waiting.expect(crd.name(), true),
                Some(Ok(Event::Delete(crd))) => waiting.expect(crd.name(), false),
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "CustomResourceDefinition watch failed; retrying");
                    continue;
                }
                None => std::future::pending().await,
            },
        }
        match client.discover().await {
            Ok(d) => {
                waiting.seen(&d);
                tx.send_if_modified(|current| {
                    let changed = **current != d;
                    if changed {
                        *current = Arc::new(d);
                    }
                    changed
                });
            }
            Err(e) => tracing::warn!(error = %e, "discovery failed; keeping what it said last"),
        }
        waiting.expire(Instant::now());
    }
}

/// CRD changes discovery has not shown yet: group-resource (a CRD's name is
/// `<plural>.<group>`) → (whether it should be served, until when to look).
#[derive(Default)]
struct Waiting(HashMap<String, (bool, Instant)>);

impl Waiting {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn expect(&mut self, crd: &str, served: bool) {
        self.0
            .insert(crd.to_string(), (served, Instant::now() + SETTLE_FOR));
    }

    /// Forget the changes `d` shows.
    fn seen(&mut self, d: &Discovery) {
        let served: HashSet<String> = d.all().iter().map(|r| r.group_resource()).collect();
        self.0
            .retain(|gr, (should, _)| served.contains(gr) != *should);
    }

    fn expire(&mut self, now: Instant) {
        self.0.retain(|_, (_, until)| now < *until);
    }
}

/// Whether `d` serves `group`/`plural` (any version).
pub fn serves(d: &Discovery, group: &str, plural: &str) -> bool {
    let gr = group_resource(group, plural);
    d.all().iter().any(|r| r.group_resource() == gr)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn discovery(resources: &[(&str, &str)]) -> Discovery {
        let items: Vec<serde_json::Value> = resources
            .iter()
            .map(|(g, plural)| {
                serde_json::json!({"metadata": {"name": g}, "versions": [{"version": "v1",
                    "resources": [{"resource": plural, "scope": "Namespaced",
                        "responseKind": {"kind": "K"}, "verbs": ["list"]}]}]})
            })
            .collect();
        let doc = serde_json::json!({"kind": "APIGroupDiscoveryList", "items": items});
        Discovery::from_aggregated(&serde_json::to_vec(&doc).unwrap()).unwrap()
    }

    #[test]
    fn a_crd_change_is_waited_for_until_discovery_shows_it() {
        let mut w = Waiting::default();
        w.expect("widgets.example.com", true);
        w.expect("gadgets.example.com", false);
        let before = discovery(&[("", "pods"), ("example.com", "gadgets")]);
        w.seen(&before);
        assert_eq!(w.0.len(), 2, "neither change shows yet");
        let after = discovery(&[("", "pods"), ("example.com", "widgets")]);
        assert!(serves(&after, "example.com", "widgets"));
        assert!(!serves(&after, "example.com", "gadgets"));
        w.seen(&after);
        assert!(w.is_empty());
        // A change that never shows (names not accepted) is given up.
        w.expect("clash.example.com", true);
        w.seen(&after);
        w.expire(Instant::now() + SETTLE_FOR);
        assert!(w.is_empty());
    }
}
