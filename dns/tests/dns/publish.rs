//! The kube-dns Service and this instance's EndpointSlice, kept correct, withdrawn on
//! shutdown; `/health` and `/ready`.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use keelson_client::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_dns_service_and_endpoint_slice_are_published_and_kept() {
    let (_cluster, client) = cluster().await;
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(json!({"metadata": {"name": "dns-node-1"}})).unwrap();
    let node = match nodes.create(&PostParams::default(), &node).await {
        Ok(n) => n,
        Err(e) if e.is_already_exists() => nodes.get("dns-node-1").await.unwrap(),
        Err(e) => panic!("creating the node: {e}"),
    };
    let uid = node.metadata.uid.clone().unwrap();

    let mut opts = options();
    // Only written to the API (which refuses loopback endpoints); the server itself
    // listens on loopback.
    opts.publish_address = Some("192.0.2.53".parse().unwrap());
    opts.node_name = Some("dns-node-1".into());
    let dns = Dns::start(&client, opts).await;
    assert_eq!(
        http_get(dns.health_port, "/health").await,
        Some((200, "OK".into()))
    );
    assert_eq!(
        http_get(dns.health_port, "/ready").await,
        Some((200, "OK".into()))
    );

    let services: Api<Service> = Api::namespaced(client.clone(), "kube-system");
    let svc = poll(Duration::from_secs(10), "the kube-dns Service", || async {
        services.get_opt("kube-dns").await.unwrap()
    })
    .await;
    let spec = svc.spec.clone().unwrap();
    assert_eq!(spec.cluster_ip.as_deref(), Some("10.96.0.10"));
    assert!(spec.selector.is_none());
    let ports: Vec<_> = spec
        .ports
        .unwrap()
        .into_iter()
        .map(|p| (p.name.unwrap(), p.protocol.unwrap(), p.port))
        .collect();
    assert_eq!(
        ports,
        vec![
            ("dns".to_string(), "UDP".to_string(), 53),
            ("dns-tcp".into(), "TCP".into(), 53),
            ("metrics".into(), "TCP".into(), 9153)
        ]
    );
    let labels = svc.metadata.labels.clone().unwrap();
    assert_eq!(labels["k8s-app"], "kube-dns");
    assert_eq!(labels["kubernetes.io/cluster-service"], "true");

    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "kube-system");
    let check = |s: &EndpointSlice, ready: bool| {
        let l = s.metadata.labels.clone().unwrap();
        assert_eq!(l["kubernetes.io/service-name"], "kube-dns");
        assert_eq!(l["endpointslice.kubernetes.io/managed-by"], "keelson-dns");
        assert_eq!(s.address_type, "IPv4");
        let owner = &s.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
            ("Node", "dns-node-1", uid.as_str())
        );
        assert_eq!(s.endpoints.len(), 1);
        let ep = &s.endpoints[0];
        assert_eq!(ep.addresses, vec!["192.0.2.53".to_string()]);
        assert_eq!(ep.node_name.as_deref(), Some("dns-node-1"));
        let c = ep.conditions.clone().unwrap();
        assert_eq!((c.ready, c.serving), (Some(ready), Some(ready)));
        let ports: Vec<_> = s
            .ports
            .clone()
            .unwrap()
            .into_iter()
            .map(|p| (p.name.unwrap(), p.protocol.unwrap(), p.port.unwrap()))
            .collect();
        assert_eq!(
            ports,
            vec![
                ("dns".to_string(), "UDP".to_string(), dns.port as i32),
                ("dns-tcp".into(), "TCP".into(), dns.port as i32),
                ("metrics".into(), "TCP".into(), 9153)
            ]
        );
    };
    let slice = poll(
        Duration::from_secs(10),
        "the kube-dns-dns-node-1 slice",
        || async { slices.get_opt("kube-dns-dns-node-1").await.unwrap() },
    )
    .await;
    check(&slice, true);

    // An existing Service is never overwritten.
    services
        .patch(
            "kube-dns",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"operator": "mine"}}})),
        )
        .await
        .expect("label the Service");

    // Deleted: it comes back. Edited: it is put right.
    slices
        .delete("kube-dns-dns-node-1", &DeleteParams::default())
        .await
        .expect("delete the slice");
    let back = poll(Duration::from_secs(5), "the slice to come back", || async {
        slices.get_opt("kube-dns-dns-node-1").await.unwrap()
    })
    .await;
    check(&back, true);
    let mut edited = back.clone();
    edited.endpoints[0].addresses = vec!["192.0.2.54".into()];
    slices
        .replace("kube-dns-dns-node-1", &PostParams::default(), &edited)
        .await
        .expect("edit the slice");
    poll(
        Duration::from_secs(5),
        "the slice to be put right",
        || async {
            let s = slices.get("kube-dns-dns-node-1").await.unwrap();
            (s.endpoints[0].addresses == vec!["192.0.2.53".to_string()]).then_some(())
        },
    )
    .await;
    let svc = services.get("kube-dns").await.unwrap();
    assert_eq!(
        svc.metadata
            .labels
            .unwrap()
            .get("operator")
            .map(String::as_str),
        Some("mine")
    );

    // The published endpoint answers.
    let m = query(
        dns.port,
        "kube-dns.kube-system.svc.cluster.local.",
        hickory_proto::rr::RecordType::A,
        false,
    )
    .await;
    assert_eq!(answers(&m), vec!["A 10.96.0.10"]);

    // Graceful shutdown: not ready first, then gone.
    let mut watch_ready = Vec::new();
    let stop = tokio::spawn(dns.stop());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while let Some(s) = slices.get_opt("kube-dns-dns-node-1").await.unwrap() {
        watch_ready.push(s.endpoints[0].conditions.clone().unwrap_or_default().ready);
        assert!(
            std::time::Instant::now() < deadline,
            "the slice was never withdrawn"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.await.expect("join").expect("clean stop");
    assert!(
        watch_ready.contains(&Some(false)),
        "the endpoint was marked not ready before it went: {watch_ready:?}"
    );
}
