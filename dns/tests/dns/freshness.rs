//! Answers follow the API within a second: a new Service, a deleted one, a new
//! endpoint of a headless Service.

use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use keelson_client::{Api, DeleteParams, PostParams};
use serde_json::json;

use crate::support::*;

const WITHIN: Duration = Duration::from_secs(1);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_and_endpoints_show_within_a_second() {
    let (_cluster, client) = cluster().await;
    namespace(&client, "fresh").await;
    let dns = Dns::start(&client, options()).await;
    let name = "late.fresh.svc.cluster.local.";
    let before = query(dns.port, name, RecordType::A, false).await;
    assert_eq!(before.metadata.response_code, ResponseCode::NXDomain);

    let services: Api<Service> = Api::namespaced(client.clone(), "fresh");
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": "late"}, "spec": {"ports": [{"port": 80}]}
    }))
    .unwrap();
    let created = services
        .create(&PostParams::default(), &svc)
        .await
        .expect("create");
    let since = Instant::now();
    let ip = created.spec.unwrap().cluster_ip.unwrap();
    poll(WITHIN, "the new Service to resolve", || async {
        let m = query(dns.port, name, RecordType::A, false).await;
        (answers(&m) == vec![format!("A {ip}")]).then_some(())
    })
    .await;
    println!("new Service resolved after {:?}", since.elapsed());

    services
        .delete("late", &DeleteParams::default())
        .await
        .expect("delete");
    poll(WITHIN, "the deleted Service to be NXDOMAIN", || async {
        let m = query(dns.port, name, RecordType::A, false).await;
        (m.metadata.response_code == ResponseCode::NXDomain).then_some(())
    })
    .await;

    // A headless Service gains an endpoint.
    let headless: Service = serde_json::from_value(json!({
        "metadata": {"name": "hl"}, "spec": {"clusterIP": "None"}
    }))
    .unwrap();
    services
        .create(&PostParams::default(), &headless)
        .await
        .expect("create");
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "fresh");
    let slice = |ips: &[&str]| -> EndpointSlice {
        serde_json::from_value(json!({
            "metadata": {"name": "hl-1", "labels": {"kubernetes.io/service-name": "hl"}},
            "addressType": "IPv4",
            "endpoints": ips.iter().map(|ip| json!({"addresses": [ip]})).collect::<Vec<_>>(),
        }))
        .unwrap()
    };
    slices
        .create(&PostParams::default(), &slice(&["10.4.0.1"]))
        .await
        .expect("slice");
    let hl = "hl.fresh.svc.cluster.local.";
    poll(WITHIN, "the headless Service's endpoint", || async {
        let m = query(dns.port, hl, RecordType::A, false).await;
        (answers(&m) == vec!["A 10.4.0.1".to_string()]).then_some(())
    })
    .await;
    let mut current = slices.get("hl-1").await.expect("get");
    current.endpoints = slice(&["10.4.0.1", "10.4.0.2"]).endpoints;
    slices
        .replace("hl-1", &PostParams::default(), &current)
        .await
        .expect("replace");
    poll(WITHIN, "the second endpoint", || async {
        let m = query(dns.port, hl, RecordType::A, false).await;
        (answers(&m).len() == 2).then_some(())
    })
    .await;
    dns.stop().await.expect("clean stop");
}
