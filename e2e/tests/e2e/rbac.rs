//! Authorization with the real kubectl against an apiserver at
//! `--authorization-mode=Node,RBAC`: the default roles (view, edit, admin aggregated by
//! the controller-manager's aggregation controller), Kubernetes' denial messages,
//! escalation prevention, anonymous requests, reconciliation of the defaults across a
//! restart, and the Node authorizer with NodeRestriction for node identities.
//!
//! Users are impersonated by the admin (`--as`), which is itself authorized: the admin
//! is in `system:masters`.

use keelson_e2e::json;
use keelson_testkit::{eventually, fails, free_port, ok, ApiserverOptions, Cluster, Proc};
use std::sync::LazyLock;
use std::time::Duration;

struct RbacCluster {
    cluster: Cluster,
    _controller_manager: Proc,
}

static RBAC: LazyLock<RbacCluster> = LazyLock::new(|| {
    let cluster = Cluster::start_with(
        1,
        ApiserverOptions {
            extra_args: vec!["--authorization-mode=Node,RBAC".into()],
            ..Default::default()
        },
    )
    .expect("starting an RBAC cluster");
    // Only the aggregation controller: view, edit and admin are made of the
    // aggregate-to-* roles.
    let cm = cluster
        .start_component(
            "keelson-controller-manager",
            "controller-manager",
            &[
                format!("--port={}", free_port()),
                "--controllers=clusterrole-aggregation".into(),
            ],
        )
        .expect("starting the controller-manager");
    RbacCluster {
        cluster,
        _controller_manager: cm,
    }
});

fn c() -> &'static Cluster {
    &RBAC.cluster
}

fn kubectl(args: &[&str]) -> std::process::Output {
    c().kubectl(args)
}

/// kubectl as `user` (impersonated by the admin).
fn as_user(user: &str, args: &[&str]) -> std::process::Output {
    let who = format!("--as={user}");
    let mut all = vec![who.as_str()];
    all.extend_from_slice(args);
    c().kubectl(&all)
}

fn can_i(user: &str, args: &[&str]) -> bool {
    let who = format!("--as={user}");
    let mut all = vec!["auth", "can-i", who.as_str()];
    all.extend_from_slice(args);
    let out = c().kubectl(&all);
    String::from_utf8_lossy(&out.stdout).trim() == "yes"
}

fn namespace(name: &str) -> String {
    ok(kubectl(&["create", "namespace", name]));
    name.to_string()
}

/// Wait until the aggregation controller has filled `role`.
fn aggregated(role: &str) {
    eventually(
        Duration::from_secs(30),
        &format!("{role} aggregated"),
        || {
            let out = kubectl(&["get", "clusterrole", role, "-o", "json"]);
            let v = json(&String::from_utf8_lossy(&out.stdout));
            v["rules"].as_array().filter(|r| !r.is_empty()).map(|_| ())
        },
    );
}

#[test]
fn view_edit_and_admin_in_one_namespace_answer_as_kubernetes() {
    for role in ["view", "edit", "admin"] {
        aggregated(role);
    }
    let ns = namespace("team");
    let other = namespace("elsewhere");
    for (user, role) in [("jane", "view"), ("bob", "edit"), ("alice", "admin")] {
        ok(kubectl(&[
            "create",
            "rolebinding",
            &format!("{user}-{role}"),
            &format!("--clusterrole={role}"),
            &format!("--user={user}"),
            "-n",
            &ns,
        ]));
    }
    eventually(
        Duration::from_secs(10),
        "the bindings to take effect",
        || can_i("alice", &["create", "rolebindings", "-n", &ns]).then_some(()),
    );

    // view: reads, no secrets, no writes, nothing elsewhere.
    ok(as_user("jane", &["get", "pods", "-n", &ns]));
    let denied = fails(as_user("jane", &["get", "pods", "-n", &other]));
    assert!(
        denied.contains(r#"pods is forbidden: User "jane" cannot list resource "pods" in API group "" in the namespace "elsewhere""#),
        "{denied}"
    );
    let denied = fails(as_user("jane", &["create", "configmap", "c", "-n", &ns]));
    assert!(
        denied.contains(r#"configmaps is forbidden: User "jane" cannot create resource "configmaps" in API group "" in the namespace "team""#),
        "{denied}"
    );
    assert!(!can_i("jane", &["get", "secrets", "-n", &ns]));
    assert!(can_i("jane", &["get", "deployments.apps", "-n", &ns]));
    assert!(can_i(
        "jane",
        &["get", "pods", "--subresource=log", "-n", &ns]
    ));
    assert!(!can_i("jane", &["list", "nodes"]));

    // edit: writes workloads and secrets, no RBAC.
    ok(as_user("bob", &["create", "configmap", "c", "-n", &ns]));
    ok(as_user(
        "bob",
        &[
            "create",
            "secret",
            "generic",
            "s",
            "--from-literal=a=b",
            "-n",
            &ns,
        ],
    ));
    assert!(can_i("bob", &["create", "deployments.apps", "-n", &ns]));
    assert!(!can_i("bob", &["create", "deployments.apps", "-n", &other]));
    assert!(!can_i("bob", &["create", "rolebindings", "-n", &ns]));

    // admin: grants what it holds in its namespace...
    ok(as_user(
        "alice",
        &[
            "create",
            "rolebinding",
            "dave-view",
            "--clusterrole=view",
            "--user=dave",
            "-n",
            &ns,
        ],
    ));
    eventually(Duration::from_secs(10), "dave's binding", || {
        can_i("dave", &["list", "pods", "-n", &ns]).then_some(())
    });
    // ... but not what it does not (nodes are cluster-scoped, not admin's).
    let role = r#"{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"Role",
        "metadata":{"name":"too-much"},
        "rules":[{"apiGroups":[""],"resources":["pods"],"verbs":["get"]},
                 {"apiGroups":["apps"],"resources":["deployments"],"verbs":["escalate"]}]}"#;
    let denied = fails(c().kubectl_with(
        "kubectl",
        &["--as=alice", "create", "-n", &ns, "-f", "-"],
        Some(role),
    ));
    assert!(
        denied.contains(r#"roles.rbac.authorization.k8s.io "too-much" is forbidden: user "alice" (groups=["system:authenticated"]) is attempting to grant RBAC permissions not currently held:"#)
            && denied.contains(r#"{APIGroups:["apps"], Resources:["deployments"], Verbs:["escalate"]}"#),
        "{denied}"
    );
    // Nor bind a role beyond its own: cluster-admin.
    let denied = fails(as_user(
        "alice",
        &[
            "create",
            "rolebinding",
            "root",
            "--clusterrole=cluster-admin",
            "--user=alice",
            "-n",
            &ns,
        ],
    ));
    assert!(
        denied.contains("is attempting to grant RBAC permissions not currently held"),
        "{denied}"
    );

    // kubectl auth can-i --list: the namespace's rules, from the real authorizer.
    let list = ok(as_user("jane", &["auth", "can-i", "--list", "-n", &ns]));
    let pods = list
        .lines()
        .find(|l| l.split_whitespace().next() == Some("pods"))
        .unwrap_or_else(|| panic!("no pods line:\n{list}"));
    assert!(pods.contains("[get list watch]"), "{pods}");
    assert!(
        !list
            .lines()
            .any(|l| l.split_whitespace().next() == Some("secrets")),
        "{list}"
    );
    assert!(
        list.contains("selfsubjectaccessreviews.authorization.k8s.io"),
        "{list}"
    );
}

#[test]
fn bind_and_escalate_let_a_user_grant_what_it_does_not_hold() {
    let ns = namespace("delegation");
    // carol may manage bindings and roles in the namespace, and nothing else.
    ok(kubectl(&[
        "create",
        "role",
        "binder",
        "--verb=create,get,list,update,delete",
        "--resource=rolebindings.rbac.authorization.k8s.io,roles.rbac.authorization.k8s.io",
        "-n",
        &ns,
    ]));
    ok(kubectl(&[
        "create",
        "rolebinding",
        "carol-binder",
        "--role=binder",
        "--user=carol",
        "-n",
        &ns,
    ]));
    eventually(Duration::from_secs(10), "carol's binding", || {
        can_i("carol", &["create", "rolebindings", "-n", &ns]).then_some(())
    });
    let bind = [
        "create",
        "rolebinding",
        "erin-edit",
        "--clusterrole=edit",
        "--user=erin",
        "-n",
        &ns,
    ];
    let denied = fails(as_user("carol", &bind));
    assert!(
        denied.contains("is attempting to grant RBAC permissions not currently held"),
        "{denied}"
    );
    // `bind` on that one cluster role lets her.
    ok(kubectl(&[
        "create",
        "role",
        "bind-edit",
        "--verb=bind",
        "--resource=clusterroles.rbac.authorization.k8s.io",
        "--resource-name=edit",
        "-n",
        &ns,
    ]));
    ok(kubectl(&[
        "create",
        "rolebinding",
        "carol-bind-edit",
        "--role=bind-edit",
        "--user=carol",
        "-n",
        &ns,
    ]));
    eventually(Duration::from_secs(10), "carol may bind edit", || {
        as_user("carol", &bind).status.success().then_some(())
    });
    // `escalate` lets her write a role with more than she holds.
    let role = [
        "create",
        "role",
        "readers",
        "--verb=get",
        "--resource=secrets",
        "-n",
        &ns,
    ];
    assert!(fails(as_user("carol", &role)).contains("not currently held"));
    ok(kubectl(&[
        "create",
        "role",
        "escalator",
        "--verb=escalate",
        "--resource=roles.rbac.authorization.k8s.io",
        "-n",
        &ns,
    ]));
    ok(kubectl(&[
        "create",
        "rolebinding",
        "carol-escalate",
        "--role=escalator",
        "--user=carol",
        "-n",
        &ns,
    ]));
    eventually(Duration::from_secs(10), "carol may escalate", || {
        as_user("carol", &role).status.success().then_some(())
    });
}

#[test]
fn anonymous_requests_reach_only_public_information() {
    let url = c().server_url();
    let curl = |path: &str| {
        let out = std::process::Command::new("curl")
            .args(["-sk", "-w", "\n%{http_code}", &format!("{url}{path}")])
            .output()
            .expect("curl");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", ""));
        (code.to_string(), body.to_string())
    };
    for path in ["/healthz", "/livez", "/readyz", "/version"] {
        assert_eq!(curl(path).0, "200", "{path}");
    }
    let (code, body) = curl("/api/v1/namespaces/default/pods");
    assert_eq!(code, "403", "{body}");
    let status = json(&body);
    assert_eq!(status["reason"], "Forbidden");
    assert_eq!(
        status["message"],
        r#"pods is forbidden: User "system:anonymous" cannot list resource "pods" in API group "" in the namespace "default""#
    );
    let (code, body) = curl("/metrics");
    assert_eq!(code, "403", "{body}");
    assert_eq!(
        json(&body)["message"],
        r#"forbidden: User "system:anonymous" cannot get path "/metrics""#
    );
}

#[test]
fn the_default_policy_is_reconciled_without_losing_what_operators_added() {
    // A cluster of its own: a second apiserver joins it below.
    let mut own = Cluster::start_with(
        1,
        ApiserverOptions {
            extra_args: vec!["--authorization-mode=Node,RBAC".into()],
            ..Default::default()
        },
    )
    .expect("a cluster");
    let k = |args: &[&str]| own.kubectl(args);
    // An operator adds a rule to a default role and deletes another default role.
    let added = r#"[{"op":"add","path":"/rules/-","value":{"apiGroups":["example.com"],"resources":["widgets"],"verbs":["get"]}}]"#;
    ok(k(&[
        "patch",
        "clusterrole",
        "system:basic-user",
        "--type=json",
        "-p",
        added,
    ]));
    ok(k(&["delete", "clusterrole", "system:public-info-viewer"]));
    // A role the operator owns (autoupdate=false) is left alone.
    ok(k(&[
        "annotate",
        "--overwrite",
        "clusterrole",
        "system:monitoring",
        "rbac.authorization.kubernetes.io/autoupdate=false",
    ]));
    let one_rule = r#"[{"op":"replace","path":"/rules","value":[{"nonResourceURLs":["/metrics"],"verbs":["get"]}]}]"#;
    ok(k(&[
        "patch",
        "clusterrole",
        "system:monitoring",
        "--type=json",
        "-p",
        one_rule,
    ]));

    // A second apiserver starting reconciles the defaults, as every start does.
    let i = own.add_apiserver().expect("a second apiserver");
    let kubeconfig = own.dir.path().join("second.kubeconfig");
    own.write_kubeconfig(
        &kubeconfig,
        &format!("https://127.0.0.1:{}", own.apiservers[i].port),
    )
    .unwrap();
    let kc = format!("--kubeconfig={}", kubeconfig.display());
    let get = |name: &str| {
        json(&ok(own.kubectl_with(
            "kubectl",
            &[&kc, "get", "clusterrole", name, "-o", "json"],
            None,
        )))
    };
    let basic = get("system:basic-user");
    let rules = basic["rules"].as_array().unwrap();
    assert!(
        rules.iter().any(|r| r["apiGroups"][0] == "example.com"),
        "{basic}"
    );
    assert!(
        rules
            .iter()
            .any(|r| r["resources"][0] == "selfsubjectaccessreviews"),
        "{basic}"
    );
    let viewer = get("system:public-info-viewer");
    assert_eq!(
        viewer["metadata"]["annotations"]["rbac.authorization.kubernetes.io/autoupdate"],
        "true"
    );
    let monitoring = get("system:monitoring");
    assert_eq!(
        monitoring["rules"].as_array().unwrap().len(),
        1,
        "{monitoring}"
    );
    // kubectl auth reconcile: creates what is missing, adds rules, keeps the rest.
    let manifest = r#"{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"ClusterRole",
        "metadata":{"name":"system:basic-user"},
        "rules":[{"apiGroups":["example.com"],"resources":["gadgets"],"verbs":["list"]}]}"#;
    ok(own.kubectl_with("kubectl", &["auth", "reconcile", "-f", "-"], Some(manifest)));
    let basic = get("system:basic-user");
    let rules = basic["rules"].as_array().unwrap();
    assert!(
        rules.iter().any(|r| r["resources"][0] == "gadgets"),
        "{basic}"
    );
    assert!(
        rules.iter().any(|r| r["resources"][0] == "widgets"),
        "{basic}"
    );
}

#[test]
fn a_node_reads_only_its_own_pods_objects_and_changes_only_itself() {
    let ns = namespace("node-authz");
    let dir = c().dir.path().join("nodes");
    let server = c().server_url();
    let kubeconfig = |node: &str| {
        let creds = keelson_pki::issue_node_credentials(
            &c().pki,
            &dir.join(node),
            node,
            &["127.0.0.1".to_string()],
            &server,
        )
        .expect("node credentials");
        format!("--kubeconfig={}", creds.kubeconfig.display())
    };
    let (n1, n2) = (kubeconfig("n1"), kubeconfig("n2"));
    for node in ["n1", "n2"] {
        let manifest =
            format!(r#"{{"apiVersion":"v1","kind":"Node","metadata":{{"name":"{node}"}}}}"#);
        ok(c().kubectl_with("kubectl", &["create", "-f", "-"], Some(&manifest)));
    }
    for (secret, node) in [("for-n1", "n1"), ("for-n2", "n2")] {
        ok(kubectl(&[
            "create",
            "secret",
            "generic",
            secret,
            "--from-literal=k=v",
            "-n",
            &ns,
        ]));
        let pod = format!(
            r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"uses-{secret}"}},
              "spec":{{"nodeName":"{node}","containers":[{{"name":"c","image":"busybox"}}],
                      "volumes":[{{"name":"s","secret":{{"secretName":"{secret}"}}}}]}}}}"#
        );
        ok(c().kubectl_with("kubectl", &["create", "-n", &ns, "-f", "-"], Some(&pod)));
    }
    let node_kubectl = |kc: &str, args: &[&str]| {
        let mut all = vec![kc];
        all.extend_from_slice(args);
        c().kubectl_with("kubectl", &all, None)
    };
    eventually(Duration::from_secs(10), "n1 reads its pod's secret", || {
        node_kubectl(&n1, &["get", "secret", "for-n1", "-n", &ns])
            .status
            .success()
            .then_some(())
    });
    let denied = fails(node_kubectl(&n1, &["get", "secret", "for-n2", "-n", &ns]));
    assert!(
        denied.contains(r#"secrets "for-n2" is forbidden: User "system:node:n1" cannot get resource "secrets" in API group "" in the namespace "node-authz": no relationship found between node 'n1' and this object"#),
        "{denied}"
    );
    ok(node_kubectl(&n2, &["get", "secret", "for-n2", "-n", &ns]));
    // Listing secrets is never a node's business.
    fails(node_kubectl(&n1, &["get", "secrets", "-n", &ns]));
    // Its own Node: yes; another's: NodeRestriction says no.
    ok(node_kubectl(&n1, &["label", "node", "n1", "zone=a"]));
    let denied = fails(node_kubectl(&n1, &["label", "node", "n2", "zone=a"]));
    assert!(
        denied.contains(r#"nodes "n2" is forbidden: node "n1" is not allowed to modify node "n2""#),
        "{denied}"
    );
    // Pods are read; a node may not create an ordinary pod.
    ok(node_kubectl(&n1, &["get", "pods", "-n", &ns]));
    let denied = fails(node_kubectl(
        &n1,
        &["run", "p", "--image=busybox", "-n", &ns],
    ));
    assert!(denied.contains("can only create mirror pods"), "{denied}");
}
