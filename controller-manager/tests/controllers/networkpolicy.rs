//! NetworkPolicy through the components' gRPC client (typed k8s-openapi objects):
//! create with the apiserver's defaults, list, a 422 for bad input, and
//! the namespace controller deleting policies with their namespace.

use crate::support;

use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use keelson_client::{Api, DeleteParams, ListParams, PostParams};
use serde_json::json;
use support::{create, eventually_within, start};

#[tokio::test]
async fn policies_over_grpc_and_deleted_with_their_namespace() {
    let (_cluster, client, _controllers) = start(&["namespace"]).await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    create(&namespaces, json!({"metadata": {"name": "fenced"}})).await;
    let api: Api<NetworkPolicy> = Api::namespaced(client.clone(), "fenced");

    let created = create(
        &api,
        json!({"metadata": {"name": "deny-all"}, "spec": {"egress": [{"ports": [{"port": 53}]}]}}),
    )
    .await;
    let spec = created.spec.expect("spec");
    assert_eq!(
        spec.policy_types,
        Some(vec!["Ingress".into(), "Egress".into()])
    );
    assert!(spec.pod_selector.is_some(), "podSelector defaulted to {{}}");
    let egress = spec.egress.expect("egress");
    let port = &egress[0].ports.as_ref().expect("ports")[0];
    assert_eq!(port.protocol.as_deref(), Some("TCP"));

    let bad: NetworkPolicy = serde_json::from_value(json!({
        "metadata": {"name": "bad"},
        "spec": {"ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/40"}}]}]},
    }))
    .unwrap();
    let err = api.create(&PostParams::default(), &bad).await.unwrap_err();
    assert_eq!(err.code(), Some(422), "{err}");
    assert!(
        err.to_string()
            .contains("spec.ingress[0].from[0].ipBlock.cidr"),
        "{err}"
    );
    let names: Vec<String> = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect();
    assert_eq!(names, ["deny-all"]);

    namespaces
        .delete("fenced", &DeleteParams::default())
        .await
        .unwrap();
    eventually_within(
        Duration::from_secs(30),
        "the namespace and its policy to go",
        || async {
            let gone = namespaces.get_opt("fenced").await.unwrap().is_none();
            gone.then_some(())
        },
    )
    .await;
    let left = Api::<NetworkPolicy>::all(client.clone())
        .list(&ListParams::default())
        .await
        .unwrap();
    assert!(left.items.is_empty(), "{:?}", left.items);
}
