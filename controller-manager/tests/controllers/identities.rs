//! The controller-manager as Kubernetes runs it under RBAC: the apiserver at
//! `--authorization-mode=Node,RBAC`, the manager's own identity a client certificate
//! for `system:kube-controller-manager` (not the admin), and every controller writing
//! as its own service account (`--use-service-account-credentials`). The manager's
//! role cannot create pods, ReplicaSets or ServiceAccounts outside kube-system's
//! controller accounts, so what the controllers achieve here they achieved with their
//! `system:controller:*` roles; a rule missing from one shows as a 403 in the log,
//! which must have none.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ConfigMap, Event, Namespace, Pod, ServiceAccount};
use k8s_openapi::api::rbac::v1::ClusterRole;
use keelson_client::{Api, Client, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use keelson_testkit::{binary, free_port, start_process, ApiserverOptions, Cluster, Proc};
use serde_json::{json, Value};

use crate::support::{create, eventually, eventually_within};

struct Setup {
    cluster: Cluster,
    admin: Client,
    /// The manager's own identity, `system:kube-controller-manager`.
    manager: Client,
    log: PathBuf,
    _manager: Proc,
}

/// An RBAC cluster with `keelson-controller-manager --controllers=<controllers>`
/// running as `system:kube-controller-manager` with service-account credentials.
async fn start(controllers: &str) -> Setup {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let opts = ApiserverOptions {
        extra_args: vec!["--authorization-mode=Node,RBAC".into()],
        ..Default::default()
    };
    let cluster = tokio::task::spawn_blocking(move || Cluster::start_with(1, opts))
        .await
        .unwrap()
        .expect("starting the test cluster (cargo build --workspace --bins first)");
    let admin = Client::from_kubeconfig(&cluster.kubeconfig).unwrap();
    let dir = cluster.dir.path();
    let cert = keelson_pki::issue_client_cert(
        &dir.join("pki"),
        "controller-manager",
        "system:kube-controller-manager",
        &[],
    )
    .unwrap();
    let kubeconfig = dir.join("controller-manager.kubeconfig");
    keelson_pki::write_kubeconfig(
        &kubeconfig,
        &cluster.server_url(),
        &std::fs::read(&cluster.pki.ca_cert).unwrap(),
        &std::fs::read(&cert.cert).unwrap(),
        &std::fs::read(&cert.key).unwrap(),
        "system:kube-controller-manager",
        "keelson",
    )
    .unwrap();
    let log = dir.join("controller-manager.log");
    let mut cmd = Command::new(binary("keelson-controller-manager").unwrap());
    cmd.arg(format!("--kubeconfig={}", kubeconfig.display()))
        .arg(format!("--port={}", free_port()))
        .arg(format!("--controllers={controllers}"))
        .arg("--use-service-account-credentials")
        .arg(format!(
            "--service-account-private-key-file={}",
            cluster.pki.sa_key.display()
        ))
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    let process = start_process(&mut cmd, "controller-manager").unwrap();
    Setup {
        manager: Client::from_kubeconfig(&kubeconfig).unwrap(),
        cluster,
        admin,
        log,
        _manager: process,
    }
}

impl Setup {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// No request of the manager or its controllers was refused by authentication or
    /// authorization. (A 403 from admission, e.g. a pod created in a namespace being
    /// deleted, says `forbidden: unable to create new content`, not `forbidden: User`.)
    fn assert_no_denials(&self) {
        let log = self.log();
        let denied: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("forbidden: User") || l.contains("Unauthorized"))
            .collect();
        assert!(
            denied.is_empty(),
            "the controller-manager was refused:\n{}",
            denied.join("\n")
        );
    }
}

#[tokio::test]
async fn controllers_write_as_their_service_accounts() {
    let s = start("*").await;
    let c = &s.admin;

    // The manager's own identity may not create pods: the pods below are the
    // controllers' accounts' doing. Its refusal reads as the log check expects.
    let denied = create_pod_as(&s.manager, "default").await;
    assert_eq!(denied.code(), Some(403), "{denied}");
    assert!(
        denied
            .to_string()
            .contains("forbidden: User \"system:kube-controller-manager\""),
        "{denied}"
    );

    // The accounts exist; the manager itself may not create pods (its role is
    // informers, accounts and tokens only), so pods below come from the accounts.
    let accounts: Api<ServiceAccount> = Api::namespaced(c.clone(), "kube-system");
    for name in [
        "deployment-controller",
        "replicaset-controller",
        "namespace-controller",
        "service-account-controller",
        "node-controller",
        "clusterrole-aggregation-controller",
    ] {
        eventually(&format!("ServiceAccount kube-system/{name}"), || async {
            accounts.get_opt(name).await.unwrap()
        })
        .await;
    }

    // A new namespace gets its `default` ServiceAccount.
    let namespaces: Api<Namespace> = Api::all(c.clone());
    create(&namespaces, json!({"metadata": {"name": "team-a"}})).await;
    let team: Api<ServiceAccount> = Api::namespaced(c.clone(), "team-a");
    eventually("ServiceAccount team-a/default", || async {
        team.get_opt("default").await.unwrap()
    })
    .await;

    // A Deployment gets its ReplicaSet and pods (no scheduler: the pods just exist).
    let deployments: Api<Deployment> = Api::namespaced(c.clone(), "team-a");
    create(
        &deployments,
        json!({
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "c", "image": "busybox"}]},
                },
            },
        }),
    )
    .await;
    let sets: Api<ReplicaSet> = Api::namespaced(c.clone(), "team-a");
    eventually("the Deployment's ReplicaSet", || async {
        let list = sets.list(&ListParams::default()).await.unwrap();
        (list.items.len() == 1).then_some(())
    })
    .await;
    let pods: Api<Pod> = Api::namespaced(c.clone(), "team-a");
    eventually("two pods of the ReplicaSet", || async {
        let list = pods.list(&ListParams::default()).await.unwrap();
        (list.items.len() == 2).then_some(())
    })
    .await;
    // Events are recorded as the controllers' accounts too.
    let events: Api<Event> = Api::namespaced(c.clone(), "team-a");
    eventually(
        "the deployment controller's ScalingReplicaSet Event",
        || async {
            let list = events.list(&ListParams::default()).await.unwrap();
            list.items
                .iter()
                .any(|e| e.reason.as_deref() == Some("ScalingReplicaSet"))
                .then_some(())
        },
    )
    .await;

    // Deleting a namespace completes: its content goes, then the namespace.
    let config_maps: Api<ConfigMap> = Api::namespaced(c.clone(), "team-a");
    create(&config_maps, json!({"metadata": {"name": "settings"}})).await;
    namespaces
        .delete("team-a", &DeleteParams::default())
        .await
        .unwrap();
    eventually_within(Duration::from_secs(60), "namespace team-a gone", || async {
        namespaces
            .get_opt("team-a")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;

    // Let the other controllers (node, quota, garbage collector ...) run a while.
    tokio::time::sleep(Duration::from_secs(3)).await;
    s.assert_no_denials();
    assert!(
        s.log()
            .contains("controllers run with their service accounts' credentials"),
        "{}",
        s.cluster.log_tail("controller-manager.log")
    );
}

async fn create_pod_as(client: &Client, ns: &str) -> keelson_client::Error {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}}))
    .unwrap();
    pods.create(&PostParams::default(), &pod)
        .await
        .expect_err("the manager's identity must not create pods")
}

/// Whether `role` has a rule on `resource`.
fn has_rule(role: &ClusterRole, resource: &str) -> bool {
    role.rules
        .iter()
        .flatten()
        .any(|r| r.resources.iter().flatten().any(|x| x == resource))
}

#[tokio::test]
async fn clusterrole_aggregation_follows_labels() {
    let s = start("clusterrole-aggregation").await;
    let roles: Api<ClusterRole> = Api::all(s.admin.clone());
    let aggregated = ["view", "edit", "admin"];
    // The default aggregate-to-* roles are gathered at start.
    for name in aggregated {
        eventually(&format!("{name} aggregated"), || async {
            let role = roles.get(name).await.unwrap();
            has_rule(&role, "pods").then_some(())
        })
        .await;
    }

    let widgets = json!({"verbs": ["get", "list", "watch"], "apiGroups": ["example.com"], "resources": ["widgets"]});
    create(
        &roles,
        json!({
            "metadata": {
                "name": "widgets-view",
                "labels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"},
            },
            "rules": [widgets],
        }),
    )
    .await;
    // view selects it; edit aggregates view and admin aggregates edit.
    for name in aggregated {
        eventually(&format!("{name} gains widgets"), || async {
            let role = roles.get(name).await.unwrap();
            has_rule(&role, "widgets").then_some(())
        })
        .await;
    }
    let view = roles.get("view").await.unwrap();
    let view_rules: Value = serde_json::to_value(&view.rules).unwrap();
    assert_eq!(
        view_rules
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| **r == widgets)
            .count(),
        1,
        "the rule is added once: {view_rules}"
    );

    // A rule change follows too.
    let gadgets = json!({"verbs": ["get"], "apiGroups": ["example.com"], "resources": ["gadgets"]});
    roles
        .patch(
            "widgets-view",
            &PatchParams::default(),
            &Patch::Merge(json!({"rules": [widgets, gadgets]})),
        )
        .await
        .unwrap();
    for name in aggregated {
        eventually(&format!("{name} gains gadgets"), || async {
            let role = roles.get(name).await.unwrap();
            has_rule(&role, "gadgets").then_some(())
        })
        .await;
    }

    // Without the label it is no longer gathered.
    roles
        .patch(
            "widgets-view",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {
                "rbac.authorization.k8s.io/aggregate-to-view": null}}})),
        )
        .await
        .unwrap();
    for name in aggregated {
        eventually(&format!("{name} loses widgets"), || async {
            let role = roles.get(name).await.unwrap();
            (!has_rule(&role, "widgets") && !has_rule(&role, "gadgets") && has_rule(&role, "pods"))
                .then_some(())
        })
        .await;
    }
    s.assert_no_denials();
}
