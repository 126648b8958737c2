//! CertificateSigningRequests end to end: the apiserver at `--authorization-mode=Node,RBAC`,
//! the controller-manager as `system:kube-controller-manager` with
//! `--use-service-account-credentials` (csrapproving and csrsigning as
//! `kube-system/certificate-controller`) and the cluster CA as its signing CA, and the
//! real kubectl approving and denying.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use keelson_client::{Api, Client, PostParams};
use keelson_testkit::{binary, free_port, start_process, ApiserverOptions, Cluster, Proc};
use serde_json::json;

use crate::support::{create, eventually, eventually_within};

struct Setup {
    cluster: Cluster,
    admin: Client,
    log: PathBuf,
    _manager: Proc,
}

/// A kubeconfig for a client certificate `cn`/`orgs` issued by the cluster CA.
fn kubeconfig_for(cluster: &Cluster, file: &str, cn: &str, orgs: &[&str]) -> PathBuf {
    let dir = cluster.dir.path();
    let cert = keelson_pki::issue_client_cert(&dir.join("pki"), file, cn, orgs).unwrap();
    let path = dir.join(format!("{file}.kubeconfig"));
    keelson_pki::write_kubeconfig(
        &path,
        &cluster.server_url(),
        &std::fs::read(&cluster.pki.ca_cert).unwrap(),
        &std::fs::read(&cert.cert).unwrap(),
        &std::fs::read(&cert.key).unwrap(),
        cn,
        "keelson",
    )
    .unwrap();
    path
}

async fn start() -> Setup {
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
    let kubeconfig = kubeconfig_for(
        &cluster,
        "controller-manager",
        "system:kube-controller-manager",
        &[],
    );
    let log = cluster.dir.path().join("controller-manager.log");
    let mut cmd = Command::new(binary("keelson-controller-manager").unwrap());
    cmd.arg(format!("--kubeconfig={}", kubeconfig.display()))
        .arg(format!("--port={}", free_port()))
        .arg("--controllers=csrapproving,csrsigning")
        .arg("--use-service-account-credentials")
        .arg(format!(
            "--service-account-private-key-file={}",
            cluster.pki.sa_key.display()
        ))
        .arg(format!(
            "--cluster-signing-cert-file={}",
            cluster.pki.ca_cert.display()
        ))
        .arg(format!(
            "--cluster-signing-key-file={}",
            cluster.pki.ca_key.display()
        ))
        .arg("--cluster-signing-duration=2h")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    let process = start_process(&mut cmd, "controller-manager").unwrap();
    Setup {
        cluster,
        admin,
        log,
        _manager: process,
    }
}

fn kubectl(cluster: &Cluster, kubeconfig: Option<&Path>, args: &[&str]) -> Output {
    let mut all: Vec<String> = Vec::new();
    if let Some(k) = kubeconfig {
        all.push(format!("--kubeconfig={}", k.display()));
    }
    all.extend(args.iter().map(|a| a.to_string()));
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    cluster.kubectl(&refs)
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A request object for a new key with subject `cn`/`orgs`.
fn request(
    name: &str,
    cn: &str,
    orgs: &[&str],
    signer: &str,
    usages: &[&str],
) -> serde_json::Value {
    use base64::Engine as _;
    let (_, pem) = keelson_pki::csr::new_key_and_csr(cn, orgs, &[], &[]).unwrap();
    json!({
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"name": name},
        "spec": {
            "request": base64::engine::general_purpose::STANDARD.encode(pem),
            "signerName": signer,
            "usages": usages,
            "expirationSeconds": 3600,
            // Ignored: the requester is who is authenticated.
            "username": "someone-else",
        },
    })
}

fn leaf_der(pem: &[u8]) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject as _;
    rustls::pki_types::CertificateDer::from_pem_slice(pem)
        .unwrap()
        .to_vec()
}

fn certificate(csr: &CertificateSigningRequest) -> Option<Vec<u8>> {
    csr.status
        .as_ref()
        .and_then(|s| s.certificate.as_ref())
        .map(|c| c.0.clone())
        .filter(|c| !c.is_empty())
}

fn condition_types(csr: &CertificateSigningRequest) -> Vec<String> {
    csr.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .map(|cs| cs.iter().map(|c| c.type_.clone()).collect())
        .unwrap_or_default()
}

async fn issued(api: &Api<CertificateSigningRequest>, name: &str) -> Vec<u8> {
    eventually_within(
        Duration::from_secs(30),
        &format!("{name} issued"),
        || async { certificate(&api.get(name).await.unwrap()) },
    )
    .await
}

#[tokio::test]
async fn node_requests_are_approved_and_signed_others_wait_for_an_operator() {
    let s = start().await;
    let node_kubeconfig =
        kubeconfig_for(&s.cluster, "node-n1", "system:node:n1", &["system:nodes"]);
    let node = Client::from_kubeconfig(&node_kubeconfig).unwrap();
    let as_node: Api<CertificateSigningRequest> = Api::all(node.clone());
    let as_admin: Api<CertificateSigningRequest> = Api::all(s.admin.clone());

    // A node renewing its own client certificate: approved by csrapproving after a
    // SubjectAccessReview for selfnodeclient, then signed.
    let kubelet = "kubernetes.io/kube-apiserver-client-kubelet";
    let started = std::time::SystemTime::now();
    create(
        &as_node,
        request(
            "node-n1",
            "system:node:n1",
            &["system:nodes"],
            kubelet,
            &["digital signature", "client auth"],
        ),
    )
    .await;
    let pem = issued(&as_node, "node-n1").await;
    let csr = as_node.get("node-n1").await.unwrap();
    assert_eq!(csr.spec.username.as_deref(), Some("system:node:n1"));
    assert!(csr
        .spec
        .groups
        .as_ref()
        .unwrap()
        .contains(&"system:nodes".to_string()));
    let approved = &csr.status.as_ref().unwrap().conditions.as_ref().unwrap()[0];
    assert_eq!(approved.type_, "Approved");
    assert_eq!(approved.reason.as_deref(), Some("AutoApproved"));
    assert_eq!(
        approved.message.as_deref(),
        Some("Auto approving self kubelet client certificate after SubjectAccessReview.")
    );
    let der = leaf_der(&pem);
    let id = keelson_pki::identity_from_cert_der(&der).unwrap();
    assert_eq!(id.user, "system:node:n1");
    assert_eq!(id.groups, ["system:nodes"]);
    // expirationSeconds (1 h) is shorter than --cluster-signing-duration (2 h).
    let (from, to) = keelson_pki::csr::validity(&pem).unwrap();
    let lifetime = to.duration_since(from).unwrap();
    assert_eq!(
        lifetime,
        Duration::from_secs(3600 + 300),
        "an hour, backdated five minutes"
    );
    let ends_in = to.duration_since(started).unwrap();
    assert!(ends_in <= Duration::from_secs(3600 + 30), "{ends_in:?}");
    keelson_pki::ClientCaVerifier::from_pem(&std::fs::read(&s.cluster.pki.ca_cert).unwrap())
        .unwrap()
        .verify(&der, &[], rustls::pki_types::UnixTime::now())
        .expect("the certificate chains to the cluster CA");

    // A node asking a kubelet signer for another node's name is refused.
    let other = as_node
        .create(
            &PostParams::default(),
            &serde_json::from_value(request(
                "node-n2",
                "system:node:n2",
                &["system:nodes"],
                kubelet,
                &["digital signature", "client auth"],
            ))
            .unwrap(),
        )
        .await
        .unwrap_err();
    assert_eq!(other.code(), Some(403), "{other}");
    assert!(
        other.to_string().contains(
            "certificatesigningrequests.certificates.k8s.io \"node-n2\" is forbidden: node \"n1\" is not allowed to request a certificate for \"system:node:n2\""
        ),
        "{other}"
    );

    // A user's client certificate request waits for an operator.
    let client = "kubernetes.io/kube-apiserver-client";
    create(
        &as_admin,
        request("jane", "jane", &["devs"], client, &["client auth"]),
    )
    .await;
    create(
        &as_admin,
        request("mallory", "mallory", &[], client, &["client auth"]),
    )
    .await;
    // A node's serving request for its own address waits too: without
    // --approve-kubelet-serving-certificates nothing approves kubelet-serving, even
    // when the Node's addresses name every SAN.
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(node.clone());
    create(
        &nodes,
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}}),
    )
    .await;
    let addresses =
        json!({"status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.5"}]}});
    nodes
        .patch_status(
            "n1",
            &keelson_client::PatchParams::default(),
            &keelson_client::Patch::Merge(&addresses),
        )
        .await
        .unwrap();
    let (_, serving_pem) = keelson_pki::csr::new_key_and_csr(
        "system:node:n1",
        &["system:nodes"],
        &[],
        &["10.0.0.5".parse().unwrap()],
    )
    .unwrap();
    let serving_b64 = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(serving_pem)
    };
    create(
        &as_node,
        json!({
            "apiVersion": "certificates.k8s.io/v1",
            "kind": "CertificateSigningRequest",
            "metadata": {"name": "serving-n1"},
            "spec": {
                "request": serving_b64,
                "signerName": "kubernetes.io/kubelet-serving",
                "usages": ["digital signature", "server auth"],
            },
        }),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pending = as_admin.get("jane").await.unwrap();
    assert!(certificate(&pending).is_none() && condition_types(&pending).is_empty());
    assert_eq!(pending.spec.username.as_deref(), Some("kubernetes-admin"));
    let serving = as_admin.get("serving-n1").await.unwrap();
    assert!(certificate(&serving).is_none() && condition_types(&serving).is_empty());

    let table = kubectl(&s.cluster, None, &["get", "csr"]);
    let table = text(&table);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "AGE",
            "SIGNERNAME",
            "REQUESTOR",
            "REQUESTEDDURATION",
            "CONDITION"
        ],
        "{table}"
    );
    let jane_row = table.lines().find(|l| l.starts_with("jane ")).unwrap();
    assert!(
        jane_row.contains(client)
            && jane_row.contains("kubernetes-admin")
            && jane_row.contains("60m")
            && jane_row.ends_with("Pending"),
        "{jane_row}"
    );
    assert!(table.contains("Approved,Issued"), "{table}");

    // Someone who may update the approval subresource but not approve for the signer.
    let role = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "csr-approval-only"},
        "rules": [
            {"apiGroups": ["certificates.k8s.io"], "resources": ["certificatesigningrequests"], "verbs": ["get", "list"]},
            {"apiGroups": ["certificates.k8s.io"], "resources": ["certificatesigningrequests/approval"], "verbs": ["update"]},
        ],
    });
    let binding = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": "csr-approval-only"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "csr-approval-only"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "eve"}],
    });
    for obj in [role, binding] {
        let out = s
            .cluster
            .kubectl_with("kubectl", &["apply", "-f", "-"], Some(&obj.to_string()));
        assert!(out.status.success(), "{}", text(&out));
    }
    let eve = kubeconfig_for(&s.cluster, "eve", "eve", &[]);
    let refused = eventually("eve's approval refused by the signer check", || async {
        let out = kubectl(&s.cluster, Some(&eve), &["certificate", "approve", "jane"]);
        let t = text(&out);
        (!out.status.success() && t.contains("not permitted")).then_some(t)
    })
    .await;
    assert!(
        refused.contains("certificatesigningrequests.certificates.k8s.io \"jane\" is forbidden: user not permitted to approve requests with signerName \"kubernetes.io/kube-apiserver-client\""),
        "{refused}"
    );
    assert!(condition_types(&as_admin.get("jane").await.unwrap()).is_empty());

    // The operator approves one and denies the other.
    let out = kubectl(&s.cluster, None, &["certificate", "approve", "jane"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("approved"), "{}", text(&out));
    let out = kubectl(&s.cluster, None, &["certificate", "deny", "mallory"]);
    assert!(out.status.success(), "{}", text(&out));
    let pem = issued(&as_admin, "jane").await;
    let id = keelson_pki::identity_from_cert_der(&leaf_der(&pem)).unwrap();
    assert_eq!(
        (id.user.as_str(), id.groups.as_slice()),
        ("jane", &["devs".to_string()][..])
    );
    let jane = as_admin.get("jane").await.unwrap();
    assert_eq!(condition_types(&jane), ["Approved"]);
    assert_eq!(
        jane.status.unwrap().conditions.unwrap()[0]
            .reason
            .as_deref(),
        Some("KubectlApprove")
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mallory = as_admin.get("mallory").await.unwrap();
    assert_eq!(condition_types(&mallory), ["Denied"]);
    assert!(
        certificate(&mallory).is_none(),
        "a denied request is never signed"
    );

    // Approved and Denied never together; approval conditions never removed.
    let mut both = as_admin.get("mallory").await.unwrap();
    both.status
        .as_mut()
        .unwrap()
        .conditions
        .as_mut()
        .unwrap()
        .push(
            k8s_openapi::api::certificates::v1::CertificateSigningRequestCondition {
                type_: "Approved".into(),
                status: "True".into(),
                ..Default::default()
            },
        );
    let err = as_admin
        .replace_subresource::<_, CertificateSigningRequest>(
            "approval",
            "mallory",
            &PostParams::default(),
            &both,
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(422), "{err}");
    assert!(
        err.to_string()
            .contains("Approved and Denied conditions are mutually exclusive"),
        "{err}"
    );

    let log = std::fs::read_to_string(&s.log).unwrap_or_default();
    assert!(
        !log.contains("forbidden: User"),
        "the controllers were refused:\n{log}"
    );
}
