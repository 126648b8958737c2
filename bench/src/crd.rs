//! Custom resources: creates per second of a custom resource whose schema has
//! defaults and CEL rules (`x-kubernetes-validations`), beside creates of a ConfigMap
//! of the same size in the same run; the time from creating a CRD to the first
//! successful create of its kind; the apiserver's RSS with 100 CRDs installed.

use crate::client::Https;
use crate::{creates, ms, percentile, rss_mib};
use keelson_testkit::Cluster;
use serde_json::json;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct CrdArgs {
    /// Objects of each kind to create.
    #[arg(long, default_value_t = 5_000)]
    objects: usize,
    /// Concurrent writers.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// CRDs installed for the memory figure.
    #[arg(long, default_value_t = 100)]
    crds: usize,
}

fn crd(group: &str, plural: &str, kind: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.{group}")},
        "spec": {
            "group": group, "scope": "Namespaced",
            "names": {"plural": plural, "kind": kind},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "data": {"type": "object", "additionalProperties": {"type": "string"}},
                    "spec": {"type": "object",
                        "x-kubernetes-validations": [
                            {"rule": "self.mode == 'fast' || self.replicas <= 100", "message": "safe mode runs at most 100 replicas"},
                            {"rule": "self.replicas >= oldSelf.replicas", "message": "replicas may only grow"}],
                        "properties": {
                        "mode": {"type": "string", "enum": ["fast", "safe"], "default": "safe"},
                        "replicas": {"type": "integer", "minimum": 0, "default": 1}}}}}},
                "additionalPrinterColumns": [{"name": "Mode", "type": "string", "jsonPath": ".spec.mode"}]}],
        },
    }))
    .expect("JSON")
}

/// The same payload in both kinds: a `data` map of 8 keys.
fn data() -> serde_json::Value {
    let mut m = serde_json::Map::new();
    for i in 0..8 {
        m.insert(format!("key-{i}"), json!("x".repeat(48)));
    }
    serde_json::Value::Object(m)
}

pub async fn run(args: CrdArgs) -> anyhow::Result<()> {
    let cluster = tokio::task::spawn_blocking(Cluster::start).await??;
    let pid = cluster.apiservers[0].proc_.pid();
    let api = Https::connect(&cluster, 8).await?;
    api.ensure_namespace("bench").await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = rss_mib(pid);

    // CRD create to the first create of its kind that succeeds.
    let group = "bench.keelson.dev";
    let t = Instant::now();
    let (status, text) = api
        .request(
            "POST",
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
            crd(group, "records", "Record"),
        )
        .await?;
    anyhow::ensure!(
        status == 201,
        "CRD: {status} {}",
        String::from_utf8_lossy(&text)
    );
    let cr_path = format!("/apis/{group}/v1/namespaces/bench/records");
    let first = loop {
        let body = serde_json::to_vec(
            &json!({"apiVersion": format!("{group}/v1"), "kind": "Record", "metadata": {"name": "first"}, "spec": {}}),
        )?;
        let (status, _) = api.request("POST", &cr_path, body).await?;
        if status == 201 {
            break t.elapsed();
        }
        anyhow::ensure!(t.elapsed() < Duration::from_secs(30), "never served");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };

    let payload = data();
    let p2 = payload.clone();
    let (cm_rate, mut cm_lat) = creates(
        &api,
        "/api/v1/namespaces/bench/configmaps",
        move |i| serde_json::to_vec(&json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("cm-{i:06}")}, "data": payload})).expect("JSON"),
        args.objects,
        args.concurrency,
    )
    .await?;
    let (cr_rate, mut cr_lat) = creates(
        &api,
        &cr_path,
        move |i| serde_json::to_vec(&json!({"apiVersion": "bench.keelson.dev/v1", "kind": "Record", "metadata": {"name": format!("cr-{i:06}")}, "data": p2, "spec": {}})).expect("JSON"),
        args.objects,
        args.concurrency,
    )
    .await?;
    cm_lat.sort();
    cr_lat.sort();

    let before = rss_mib(pid);
    for i in 0..args.crds {
        let (status, text) = api
            .request(
                "POST",
                "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                crd(&format!("g{i}.bench.keelson.dev"), "things", "Thing"),
            )
            .await?;
        anyhow::ensure!(
            status == 201,
            "CRD {i}: {status} {}",
            String::from_utf8_lossy(&text)
        );
    }
    // Let every CRD be named, established and served.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let with_crds = rss_mib(pid);

    println!();
    println!("| figure | value |");
    println!("| --- | --- |");
    println!(
        "| ConfigMap creates/s (8 x 48-byte values, concurrency {}) | {cm_rate:.0} (p50 {} / p99 {}) |",
        args.concurrency,
        ms(percentile(&cm_lat, 0.5)),
        ms(percentile(&cm_lat, 0.99))
    );
    println!(
        "| custom resource creates/s (same data, schema with 2 defaults, an enum and 2 CEL rules) | {cr_rate:.0} (p50 {} / p99 {}) |",
        ms(percentile(&cr_lat, 0.5)),
        ms(percentile(&cr_lat, 0.99))
    );
    println!(
        "| ratio custom resource / ConfigMap | {:.2} |",
        cr_rate / cm_rate
    );
    println!(
        "| CRD create to the first create of its kind | {} |",
        ms(first)
    );
    println!("| apiserver RSS idle | {idle:.1} MiB |");
    println!(
        "| apiserver RSS before / with {} more CRDs ({} objects stored) | {before:.1} / {with_crds:.1} MiB |",
        args.crds,
        2 * args.objects
    );
    drop(api);
    drop(cluster);
    Ok(())
}
