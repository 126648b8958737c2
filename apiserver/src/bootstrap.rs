//! What an apiserver makes sure exists: the system namespaces, the built-in
//! PriorityClasses, the `default/kubernetes`
//! Service and its Endpoints naming every live apiserver; and the periodic etcd
//! compaction Kubernetes does.

use crate::registry::{Registry, WriteOptions};
use crate::storage::Storage;
use keelson_resources::find;
use keelson_resources::kinds::priorityclasses::{system_class, SYSTEM_CLASSES};
use serde_json::{json, Value};
use std::time::Duration;

/// The namespaces every cluster starts with.
pub const SYSTEM_NAMESPACES: &[&str] =
    &["default", "kube-system", "kube-public", "kube-node-lease"];

/// Prefix of the keys by which live apiservers announce themselves (one per address,
/// attached to an etcd lease, so a stopped apiserver drops out on its own).
const MASTER_LEASES: &str = "/registry/masterleases/";

fn system_opts() -> WriteOptions {
    WriteOptions {
        field_manager: "keelson-apiserver".into(),
        ..Default::default()
    }
}

async fn ensure(registry: &Registry, plural: &str, ns: &str, obj: Value) -> anyhow::Result<()> {
    let rt = find("", plural).ok_or_else(|| anyhow::anyhow!("{plural} not served"))?;
    match registry.create(rt, ns, obj, &system_opts()).await {
        Ok(_) => Ok(()),
        Err(e) if e.code == 409 => Ok(()),
        Err(e) => Err(anyhow::anyhow!("creating {plural} in {ns:?}: {e}")),
    }
}

pub async fn system_objects(registry: &Registry, secure_port: u16) -> anyhow::Result<()> {
    for ns in SYSTEM_NAMESPACES {
        ensure(
            registry,
            "namespaces",
            "",
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        )
        .await?;
    }
    let pc = find("scheduling.k8s.io", "priorityclasses")
        .ok_or_else(|| anyhow::anyhow!("priorityclasses not served"))?;
    for (name, value, description) in SYSTEM_CLASSES {
        let obj = system_class(name, *value, description);
        match registry.create(pc, "", obj, &system_opts()).await {
            Ok(_) => {}
            Err(e) if e.code == 409 => {}
            Err(e) => return Err(anyhow::anyhow!("creating PriorityClass {name}: {e}")),
        }
    }
    let ip = registry.services.first_ip().to_string();
    ensure(
        registry,
        "services",
        "default",
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "kubernetes", "labels": {"component": "apiserver", "provider": "kubernetes"}},
            "spec": {
                "type": "ClusterIP",
                "clusterIP": ip,
                "sessionAffinity": "None",
                "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": secure_port}],
            },
        }),
    )
    .await
}

/// Announce this apiserver and keep `default/kubernetes` Endpoints and EndpointSlice
/// naming every live one. Runs until the process ends.
pub async fn endpoints_reconciler(
    registry: Registry,
    storage: Storage,
    advertise_ip: std::net::IpAddr,
    port: u16,
) {
    if advertise_ip.is_loopback() {
        tracing::warn!(%advertise_ip, "not publishing default/kubernetes endpoints: the advertise address is loopback (set --advertise-address)");
        return;
    }
    let key = format!("{MASTER_LEASES}{advertise_ip}:{port}");
    let mut lease = None;
    loop {
        if lease
            .as_ref()
            .is_none_or(|h: &tokio::task::JoinHandle<()>| h.is_finished())
        {
            match storage
                .put_leased(&key, port.to_string().into_bytes(), 15)
                .await
            {
                Ok(h) => lease = Some(h),
                Err(e) => tracing::warn!(error = %e, "could not announce this apiserver"),
            }
        }
        if let Err(e) = reconcile_endpoints(&registry, &storage).await {
            tracing::warn!(error = %e, "reconciling default/kubernetes endpoints");
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

/// The live apiservers as port -> sorted addresses, from their lease keys `<ip>:<port>`.
fn live_apiservers(keys: &[String]) -> std::collections::BTreeMap<u16, Vec<String>> {
    let mut by_port: std::collections::BTreeMap<u16, Vec<String>> = Default::default();
    for k in keys {
        if let Some((ip, port)) = k
            .rsplit_once(':')
            .and_then(|(ip, p)| Some((ip, p.parse::<u16>().ok()?)))
        {
            by_port.entry(port).or_default().push(ip.to_string());
        }
    }
    for ips in by_port.values_mut() {
        ips.sort();
        ips.dedup();
    }
    by_port
}

async fn reconcile_endpoints(registry: &Registry, storage: &Storage) -> anyhow::Result<()> {
    let page = storage.list(MASTER_LEASES, "", 0, 0).await?;
    let keys: Vec<String> = page
        .kvs
        .iter()
        .filter_map(|kv| kv.key.strip_prefix(MASTER_LEASES).map(String::from))
        .collect();
    let live = live_apiservers(&keys);
    let Some((first_port, first_ips)) = live.iter().next() else {
        return Ok(());
    };
    // Apiservers normally share one port; when several run on one host they differ,
    // and each port gets its own subset.
    let subsets: Vec<Value> = live
        .iter()
        .map(|(port, ips)| {
            let addresses: Vec<Value> = ips.iter().map(|ip| json!({"ip": ip})).collect();
            json!({"addresses": addresses, "ports": [{"name": "https", "port": port, "protocol": "TCP"}]})
        })
        .collect();
    let eps = json!({
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": subsets,
    });
    let rt = find("", "endpoints").ok_or_else(|| anyhow::anyhow!("endpoints not served"))?;
    upsert(registry, rt, eps).await?;
    if let Some(rt) = find("discovery.k8s.io", "endpointslices") {
        let endpoints: Vec<Value> = first_ips
            .iter()
            .map(|ip| json!({"addresses": [ip], "conditions": {"ready": true}}))
            .collect();
        let slice = json!({
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"kubernetes.io/service-name": "kubernetes"}},
            "addressType": "IPv4",
            "endpoints": endpoints,
            "ports": [{"name": "https", "port": first_port, "protocol": "TCP"}],
        });
        upsert(registry, rt, slice).await?;
    }
    Ok(())
}

/// Create, or update to `obj`'s content when it differs (the registry skips no-op writes).
async fn upsert(
    registry: &Registry,
    rt: &'static keelson_resources::ResourceType,
    obj: Value,
) -> anyhow::Result<()> {
    let name = keelson_apimachinery::meta::name(&obj).to_string();
    match registry.get(rt, "default", &name).await {
        Ok(_) => registry
            .update(rt, "default", &name, "", obj, &system_opts())
            .await
            .map(|_| ()),
        Err(e) if e.code == 404 => registry
            .create(rt, "default", obj, &system_opts())
            .await
            .map(|_| ()),
        Err(e) => Err(e),
    }
    .map_err(|e| anyhow::anyhow!("{}: {e}", rt.plural))
}

/// Compact etcd history every `interval`, to the revision seen one interval earlier (as
/// Kubernetes does), so watches and continue tokens older than that get 410 Gone.
pub async fn compactor(
    storage: Storage,
    cache: std::sync::Arc<crate::watch_cache::WatchCache>,
    interval: Duration,
) {
    if interval.is_zero() {
        return;
    }
    let mut previous: Option<i64> = None;
    loop {
        tokio::time::sleep(interval).await;
        let now = match storage.revision().await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "compactor: reading revision");
                continue;
            }
        };
        if let Some(rev) = previous {
            // The watch window forgets the compacted history too, so a watch from before
            // it gets 410 Gone here as it would from etcd (and memory stays bounded).
            cache.forget_through(rev);
            match storage.compact(rev).await {
                Ok(()) => tracing::info!(revision = rev, "compacted etcd"),
                Err(e) => tracing::debug!(error = %e, "compaction skipped"),
            }
        }
        previous = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_apiservers_group_by_port() {
        let keys = vec![
            "10.0.0.2:6443".to_string(),
            "10.0.0.1:6443".into(),
            "10.0.0.1:7443".into(),
            "junk".into(),
        ];
        let live = live_apiservers(&keys);
        assert_eq!(live[&6443], vec!["10.0.0.1", "10.0.0.2"]);
        assert_eq!(live[&7443], vec!["10.0.0.1"]);
        assert_eq!(live.len(), 2);
    }
}
