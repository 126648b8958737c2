//! Client certificate rotation ([`keelson_node_agent::certificates`]) against a real
//! apiserver at `--authorization-mode=Node,RBAC` and a real controller-manager (csrapproving
//! and csrsigning with the cluster CA): an agent whose certificate is nearly spent asks
//! for a new one, gets it approved and signed, writes it to its kubeconfig and uses it.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use keelson_client::{Api, Client, ListParams, PostParams};
use keelson_node_agent::certificates;
use keelson_testkit::{binary, free_port, start_process, ApiserverOptions, Cluster};

const NODE: &str = "rotating-node";

async fn whoami(client: &Client) -> String {
    let api: Api<SelfSubjectReview> = Api::all(client.clone());
    let review = api
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .unwrap();
    review.status.unwrap().user_info.unwrap().username.unwrap()
}

#[tokio::test]
async fn a_short_lived_client_certificate_is_replaced_before_it_expires() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let opts = ApiserverOptions {
        extra_args: vec!["--authorization-mode=Node,RBAC".into()],
        ..Default::default()
    };
    let cluster = tokio::task::spawn_blocking(move || Cluster::start_with(1, opts))
        .await
        .unwrap()
        .expect("starting the test cluster (cargo build --workspace --bins first)");
    let dir = cluster.dir.path();
    let pki = &cluster.pki;

    // The controller-manager, signing with the cluster CA for at most an hour.
    let manager_cert = keelson_pki::issue_client_cert(
        &dir.join("pki"),
        "controller-manager",
        "system:kube-controller-manager",
        &[],
    )
    .unwrap();
    let manager_kubeconfig = dir.join("controller-manager.kubeconfig");
    let ca_pem = std::fs::read(&pki.ca_cert).unwrap();
    keelson_pki::write_kubeconfig(
        &manager_kubeconfig,
        &cluster.server_url(),
        &ca_pem,
        &std::fs::read(&manager_cert.cert).unwrap(),
        &std::fs::read(&manager_cert.key).unwrap(),
        "system:kube-controller-manager",
        "keelson",
    )
    .unwrap();
    let mut cmd = Command::new(binary("keelson-controller-manager").unwrap());
    cmd.arg(format!("--kubeconfig={}", manager_kubeconfig.display()))
        .arg(format!("--port={}", free_port()))
        .arg("--controllers=csrapproving,csrsigning")
        .arg("--use-service-account-credentials")
        .arg(format!(
            "--service-account-private-key-file={}",
            pki.sa_key.display()
        ))
        .arg(format!(
            "--cluster-signing-cert-file={}",
            pki.ca_cert.display()
        ))
        .arg(format!(
            "--cluster-signing-key-file={}",
            pki.ca_key.display()
        ))
        .arg("--cluster-signing-duration=1h")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let _manager = start_process(&mut cmd, "controller-manager").unwrap();

    // The node's first certificate lives 20 seconds (plus the signer's five minutes of
    // backdating): past 90% of its 320 s already, so rotation is due at once wherever
    // in 70-90% the deadline falls (with 40 s, 90% was 6 s ahead and the check below
    // failed about one run in ten).
    let signer = keelson_pki::csr::Signer::load(&pki.ca_cert, &pki.ca_key).unwrap();
    let user = format!("system:node:{NODE}");
    let (key, csr) = keelson_pki::csr::new_key_and_csr(&user, &["system:nodes"], &[], &[]).unwrap();
    let usages = ["digital signature".to_string(), "client auth".to_string()];
    let short = signer
        .sign(csr.as_bytes(), &usages, Duration::from_secs(20))
        .unwrap();
    let kubeconfig = dir.join("kubelet.kubeconfig");
    keelson_pki::write_kubeconfig(
        &kubeconfig,
        &cluster.server_url(),
        &ca_pem,
        short.as_bytes(),
        key.as_bytes(),
        &user,
        "keelson",
    )
    .unwrap();
    let (from, to) = keelson_pki::csr::validity(short.as_bytes()).unwrap();
    assert!(certificates::rotation_deadline(from, to) <= SystemTime::now());

    let (client, current) = certificates::client::rotating_client(&kubeconfig).unwrap();
    assert_eq!(whoami(&client).await, user);
    let started = Instant::now();
    let rotation = tokio::spawn(certificates::client::run(
        client.clone(),
        NODE.into(),
        kubeconfig.clone(),
        current.clone(),
    ));
    while current.pem() == short.as_bytes() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no new certificate before the first one expired (20 s)"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let rotated_in = started.elapsed();
    rotation.abort();

    // The new certificate: the same identity, an hour long, from the node's own CSR
    // that csrapproving approved.
    let pem = current.pem();
    let (from, to) = keelson_pki::csr::validity(&pem).unwrap();
    assert_eq!(
        to.duration_since(from).unwrap(),
        Duration::from_secs(3600 + 300)
    );
    let requests: Api<CertificateSigningRequest> =
        Api::all(Client::from_kubeconfig(&cluster.kubeconfig).unwrap());
    let list = requests.list(&ListParams::default()).await.unwrap();
    assert_eq!(list.items.len(), 1);
    let csr = &list.items[0];
    assert_eq!(csr.spec.username.as_deref(), Some(user.as_str()));
    assert_eq!(csr.spec.signer_name, certificates::client::SIGNER);
    let approved = &csr.status.as_ref().unwrap().conditions.as_ref().unwrap()[0];
    assert_eq!(
        (approved.type_.as_str(), approved.reason.as_deref()),
        ("Approved", Some("AutoApproved"))
    );

    // The kubeconfig holds the new certificate and key, and they authenticate a new
    // connection; the rotating client still works.
    let on_disk = keelson_pki::Kubeconfig::load(&kubeconfig)
        .unwrap()
        .current()
        .unwrap();
    assert_eq!(on_disk.client_cert_pem.as_deref(), Some(pem.as_slice()));
    assert_ne!(on_disk.client_key_pem.as_deref(), Some(key.as_bytes()));
    let fresh = Client::from_kubeconfig(&kubeconfig).unwrap();
    assert_eq!(whoami(&fresh).await, user);
    assert_eq!(whoami(&client).await, user);
    eprintln!("rotated in {rotated_in:?}");
}
