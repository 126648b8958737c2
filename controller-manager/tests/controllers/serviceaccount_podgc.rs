//! The ServiceAccount controller (every namespace gets `default`, recreated when
//! deleted) and the pod garbage collector (terminated pods beyond the threshold, oldest
//! first; pods bound to a node that no longer exists) against a real apiserver and etcd.

use crate::support;

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Node, Pod, ServiceAccount};
use keelson_client::{Api, DeleteParams};
use keelson_controller_manager::controllers::podgc;
use keelson_controller_manager::ControllerManagerOptions;
use serde_json::{json, Value};
use support::{cluster, context, create, eventually_within, options, set_phase};

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_namespace_has_a_default_service_account() {
    let (_cluster, client) = cluster().await;
    let _controllers = tokio::spawn(keelson_controller_manager::run(context(
        &client,
        ControllerManagerOptions {
            terminated_pod_gc_threshold: 0,
            ..options(&["serviceaccount"])
        },
    )));
    let default_sa: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
    eventually_within(WAIT, "default/default", || async {
        default_sa.get_opt("default").await.unwrap()
    })
    .await;

    let namespaces: Api<Namespace> = Api::all(client.clone());
    create(&namespaces, json!({"metadata": {"name": "team"}})).await;
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "team");
    let first = eventually_within(WAIT, "team/default", || async {
        accounts.get_opt("default").await.unwrap()
    })
    .await;
    accounts
        .delete("default", &DeleteParams::default())
        .await
        .unwrap();
    let again = eventually_within(WAIT, "team/default recreated", || async {
        accounts
            .get_opt("default")
            .await
            .unwrap()
            .filter(|sa| sa.metadata.uid != first.metadata.uid)
    })
    .await;
    assert_eq!(again.metadata.name.as_deref(), Some("default"));
}

fn pod(name: &str, node: Option<&str>) -> Value {
    json!({"metadata": {"name": name}, "spec": {"nodeName": node,
        "containers": [{"name": "c", "image": "nginx"}]}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_gc_deletes_the_oldest_terminated_pods_and_pods_of_missing_nodes() {
    let (_cluster, client) = cluster().await;
    let ctx = context(
        &client,
        ControllerManagerOptions {
            terminated_pod_gc_threshold: 2,
            ..options(&[])
        },
    );
    let timing = podgc::Timing {
        period: Duration::from_millis(300),
        quarantine: Duration::from_secs(1),
    };
    let _gc = tokio::spawn(podgc::run_with(ctx, timing));
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let nodes: Api<Node> = Api::all(client.clone());
    create(&nodes, json!({"metadata": {"name": "real-node"}})).await;

    // Created oldest first, with names in the opposite order: creation time decides.
    for name in ["d", "c", "b", "a"] {
        create(&pods, pod(name, Some("real-node"))).await;
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    for name in ["d", "c", "b", "a"] {
        set_phase(&pods, name, "Succeeded").await;
    }
    eventually_within(WAIT, "the two oldest terminated pods deleted", || async {
        let left: Vec<String> = pods
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter_map(|p| p.metadata.name)
            .collect();
        (left == ["a", "b"]).then_some(())
    })
    .await;

    // A pod bound to a node that does not exist goes after the quarantine; one on a
    // node that exists stays.
    create(&pods, pod("on-ghost", Some("ghost-node"))).await;
    create(&pods, pod("on-real", Some("real-node"))).await;
    let created = Instant::now();
    eventually_within(WAIT, "the pod of the missing node deleted", || async {
        pods.get_opt("on-ghost")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    assert!(
        created.elapsed() >= Duration::from_secs(1),
        "deleted only after the quarantine"
    );
    assert!(pods.get_opt("on-real").await.unwrap().is_some());
    assert!(pods.get_opt("a").await.unwrap().is_some());
}

/// Conformance "should guarantee kube-root-ca.crt exist in any namespace": created,
/// recreated if deleted, reconciled if modified.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_namespace_has_the_root_ca_bundle() {
    use k8s_openapi::api::core::v1::ConfigMap;
    use keelson_client::{Patch, PatchParams};
    let (cluster, client) = cluster().await;
    let _controllers = tokio::spawn(keelson_controller_manager::run(context(
        &client,
        options(&["root-ca-cert-publisher"]),
    )));
    let ca = std::fs::read_to_string(&cluster.pki.ca_cert).unwrap();
    let bundle = |api: Api<ConfigMap>| async move {
        let cm = api.get_opt("kube-root-ca.crt").await.unwrap()?;
        cm.data?.get("ca.crt").cloned()
    };
    let in_default: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let got = eventually_within(WAIT, "default/kube-root-ca.crt", || {
        bundle(in_default.clone())
    })
    .await;
    assert_eq!(got, ca, "the CA the kubeconfig trusts");

    let namespaces: Api<Namespace> = Api::all(client.clone());
    create(&namespaces, json!({"metadata": {"name": "fresh"}})).await;
    let fresh: Api<ConfigMap> = Api::namespaced(client.clone(), "fresh");
    eventually_within(WAIT, "fresh/kube-root-ca.crt", || bundle(fresh.clone())).await;
    let cm = fresh.get("kube-root-ca.crt").await.unwrap();
    assert!(
        cm.metadata.annotations.unwrap()["kubernetes.io/description"]
            .starts_with("Contains a CA bundle")
    );

    fresh
        .patch(
            "kube-root-ca.crt",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"ca.crt": "tampered"}})),
        )
        .await
        .unwrap();
    eventually_within(WAIT, "the bundle put back", || async {
        (bundle(fresh.clone()).await? == ca).then_some(())
    })
    .await;
    fresh
        .delete("kube-root-ca.crt", &DeleteParams::default())
        .await
        .unwrap();
    eventually_within(WAIT, "the ConfigMap recreated", || bundle(fresh.clone())).await;
}

/// Legacy token Secrets: filled with a token the apiserver accepts, deleted when their
/// account does not exist or goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_secrets_get_a_working_token_and_go_with_their_account() {
    use k8s_openapi::api::core::v1::Secret;
    use keelson_controller_manager::controllers::serviceaccount_token::token_of;
    let (cluster, client) = cluster().await;
    let _controllers = tokio::spawn(keelson_controller_manager::run(context(
        &client,
        ControllerManagerOptions {
            service_account_private_key_file: Some(cluster.pki.sa_key.clone()),
            ..options(&["serviceaccount-token"])
        },
    )));
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    let sa: ServiceAccount = create(&accounts, json!({"metadata": {"name": "ci"}})).await;
    let token_secret = |name: &str, account: &str| {
        json!({"metadata": {"name": name, "annotations": {"kubernetes.io/service-account.name": account}},
               "type": "kubernetes.io/service-account-token"})
    };
    let _: Secret = create(&secrets, token_secret("ci-token", "ci")).await;
    let filled = eventually_within(WAIT, "the token Secret filled", || async {
        let s = secrets.get("ci-token").await.ok()?;
        token_of(&s).map(|_| s)
    })
    .await;
    let data = filled.data.clone().unwrap();
    assert_eq!(data["namespace"].0, b"default");
    assert_eq!(
        data["ca.crt"].0,
        std::fs::read(&cluster.pki.ca_cert).unwrap()
    );
    assert_eq!(
        filled.metadata.annotations.as_ref().unwrap()["kubernetes.io/service-account.uid"],
        sa.metadata.uid.clone().unwrap()
    );

    // The token authenticates as the account (kubectl with no client certificate).
    let token = token_of(&filled).unwrap();
    let whoami = |token: &str| {
        let server = format!("--server={}", cluster.server_url());
        let ca = format!("--certificate-authority={}", cluster.pki.ca_cert.display());
        let token = format!("--token={token}");
        cluster.kubectl_with(
            "kubectl",
            &[
                "--kubeconfig=/dev/null",
                &server,
                &ca,
                &token,
                "auth",
                "whoami",
                "-o",
                "jsonpath={.status.userInfo.username}",
            ],
            None,
        )
    };
    let out = whoami(&token);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "system:serviceaccount:default:ci"
    );
    // A token the Secret does not hold is refused, even with the same claims and a
    // valid signature of the cluster's key (ECDSA signs differently each time).
    let claims: serde_json::Value = {
        use base64::Engine as _;
        let part = token.split('.').nth(1).unwrap();
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(part)
                .unwrap(),
        )
        .unwrap()
    };
    let resigned = keelson_pki::jwt::SigningKey::load(&cluster.pki.sa_key)
        .unwrap()
        .sign(&claims);
    assert_ne!(resigned, token);
    assert!(!whoami(&resigned).status.success());

    // No such account: the Secret goes. The account goes: its Secret goes, and the token
    // stops working.
    let _: Secret = create(&secrets, token_secret("orphan-token", "nobody")).await;
    eventually_within(WAIT, "the orphan token Secret deleted", || async {
        secrets
            .get_opt("orphan-token")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    accounts
        .delete("ci", &DeleteParams::default())
        .await
        .unwrap();
    eventually_within(WAIT, "the account's token Secret deleted", || async {
        secrets
            .get_opt("ci-token")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    eventually_within(WAIT, "the token refused", || async {
        (!whoami(&token).status.success()).then_some(())
    })
    .await;
}
