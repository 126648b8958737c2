//! Serving certificate rotation ([`keelson_node_agent::certificates::serving`]) against a
//! real apiserver at `--authorization-mode=Node,RBAC` and a real controller-manager
//! (csrapproving with `--approve-kubelet-serving-certificates`, csrsigning with the
//! cluster CA): a TLS listener built as the agent builds its own keeps running while
//! the certificate it presents is replaced, first because it is nearly spent, then
//! because the Node's addresses changed; a restart serves the stored one.

use std::net::IpAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::{Node, NodeAddress};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use keelson_client::{Api, Client, ListParams, Patch, PatchParams, PostParams};
use keelson_node_agent::certificates::rotation_deadline;
use keelson_node_agent::certificates::serving::{self, ServingCertificate, CURRENT_FILE};
use keelson_node_agent::NodeAgentOptions;
use keelson_testkit::{binary, free_port, start_process, ApiserverOptions, Cluster};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const NODE: &str = "serving-node";

fn addresses(ips: &[&str]) -> Vec<NodeAddress> {
    ips.iter()
        .map(|ip| NodeAddress {
            type_: "InternalIP".into(),
            address: ip.to_string(),
        })
        .chain([NodeAddress {
            type_: "Hostname".into(),
            address: NODE.into(),
        }])
        .collect()
}

/// Answer TLS on `listener` with `config` until aborted: each connection echoes.
fn serve(listener: tokio::net::TcpListener, config: rustls::ServerConfig) {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = [0u8; 64];
                while let Ok(n) = tls.read(&mut buf).await {
                    if n == 0 || tls.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                    let _ = tls.flush().await;
                }
            });
        }
    });
}

type Tls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

/// Connect to `port`, verifying the server's certificate against the cluster CA for
/// the name `as_ip`; the certificate it presented and the open connection.
async fn connect(
    ca: &std::path::Path,
    port: u16,
    as_ip: &str,
) -> anyhow::Result<(CertificateDer<'static>, Tls)> {
    let mut roots = rustls::RootCertStore::empty();
    for c in keelson_pki::load_certs(ca)? {
        roots.add(c)?;
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let name = ServerName::IpAddress(as_ip.parse::<IpAddr>()?.into());
    let tls = connector.connect(name, tcp).await?;
    let leaf = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    Ok((leaf, tls))
}

async fn echo(tls: &mut Tls, what: &[u8]) -> Vec<u8> {
    tls.write_all(what).await.unwrap();
    let mut buf = vec![0u8; what.len()];
    tls.read_exact(&mut buf).await.unwrap();
    buf
}

/// The first certificate of a PEM text.
fn der(pem: &[u8]) -> CertificateDer<'static> {
    use rustls::pki_types::pem::PemObject as _;
    CertificateDer::pem_slice_iter(pem).next().unwrap().unwrap()
}

fn pem(der: &CertificateDer<'_>) -> Vec<u8> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    )
    .into_bytes()
}

/// Wait (up to 30 s) until the listener presents a certificate other than `old` that
/// verifies for `as_ip`.
async fn next_certificate(
    ca: &std::path::Path,
    port: u16,
    as_ip: &str,
    old: &CertificateDer<'_>,
) -> CertificateDer<'static> {
    let started = Instant::now();
    loop {
        if let Ok((leaf, _)) = connect(ca, port, as_ip).await {
            if leaf != *old {
                return leaf;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no new certificate for {as_ip} within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn serving_requests(admin: &Client) -> Vec<CertificateSigningRequest> {
    let api: Api<CertificateSigningRequest> = Api::all(admin.clone());
    let mut list = api.list(&ListParams::default()).await.unwrap().items;
    list.retain(|c| c.spec.signer_name == serving::SIGNER);
    list
}

#[tokio::test]
async fn a_serving_certificate_is_replaced_under_a_running_listener() {
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
    let admin = Client::from_kubeconfig(&cluster.kubeconfig).unwrap();

    // The controller-manager, approving serving requests the Node vouches for and
    // signing them with the cluster CA for an hour.
    let manager_cert = keelson_pki::issue_client_cert(
        &dir.join("pki"),
        "controller-manager",
        "system:kube-controller-manager",
        &[],
    )
    .unwrap();
    let manager_kubeconfig = dir.join("controller-manager.kubeconfig");
    keelson_pki::write_kubeconfig(
        &manager_kubeconfig,
        &cluster.server_url(),
        &std::fs::read(&pki.ca_cert).unwrap(),
        &std::fs::read(&manager_cert.cert).unwrap(),
        &std::fs::read(&manager_cert.key).unwrap(),
        "system:kube-controller-manager",
        "keelson",
    )
    .unwrap();
    let log = dir.join("controller-manager.log");
    let mut cmd = Command::new(binary("keelson-controller-manager").unwrap());
    cmd.arg(format!("--kubeconfig={}", manager_kubeconfig.display()))
        .arg(format!("--port={}", free_port()))
        .arg("--controllers=csrapproving,csrsigning")
        .arg("--use-service-account-credentials")
        .arg("--approve-kubelet-serving-certificates")
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
        .stderr(std::fs::File::create(&log).unwrap());
    let _manager = start_process(&mut cmd, "controller-manager").unwrap();

    // The node: its credentials, its Node with one address and its host name.
    let creds = keelson_pki::issue_node_credentials(
        pki,
        &dir.join("node"),
        NODE,
        &["127.0.0.1".into()],
        &cluster.server_url(),
    )
    .unwrap();
    let node_client = Client::from_kubeconfig(&creds.kubeconfig).unwrap();
    let nodes: Api<Node> = Api::all(node_client.clone());
    nodes
        .create(
            &PostParams::default(),
            &Node {
                metadata: ObjectMeta {
                    name: Some(NODE.into()),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let set_addresses = |ips: &'static [&'static str]| {
        let nodes = nodes.clone();
        async move {
            let patch = serde_json::json!({"status": {"addresses": addresses(ips)}});
            nodes
                .patch_status(NODE, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .unwrap();
        }
    };
    set_addresses(&["127.0.0.1"]).await;

    // What it served before: a certificate that lives 40 seconds (plus the signer's
    // five minutes of backdating), stored as a previous rotation would have left it,
    // past 70% of its lifetime already.
    let root = dir.join("agent-pki");
    std::fs::create_dir_all(&root).unwrap();
    let signer = keelson_pki::csr::Signer::load(&pki.ca_cert, &pki.ca_key).unwrap();
    let (key, csr) = keelson_pki::csr::new_key_and_csr(
        &format!("system:node:{NODE}"),
        &["system:nodes"],
        &[NODE.into()],
        &["127.0.0.1".parse().unwrap()],
    )
    .unwrap();
    let usages: Vec<String> = serving::USAGES.iter().map(|u| u.to_string()).collect();
    let short = signer
        .sign(csr.as_bytes(), &usages, Duration::from_secs(40))
        .unwrap();
    std::fs::write(root.join(CURRENT_FILE), format!("{short}{key}")).unwrap();
    let (from, to) = keelson_pki::csr::validity(short.as_bytes()).unwrap();
    assert!(rotation_deadline(from, to) <= SystemTime::now() + Duration::from_secs(10));

    let fallback = (
        std::fs::read(&creds.serving.cert).unwrap(),
        std::fs::read(&creds.serving.key).unwrap(),
    );
    let manager =
        Arc::new(ServingCertificate::load(&root, NODE, (&fallback.0, &fallback.1)).unwrap());
    assert_eq!(der(&manager.current().pem()), der(short.as_bytes()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let tls =
        keelson_node_agent::server::tls_config(&NodeAgentOptions::default(), manager.current())
            .unwrap();
    serve(listener, tls);
    let (first, mut open) = connect(&pki.ca_cert, port, "127.0.0.1").await.unwrap();
    assert_eq!(first, der(short.as_bytes()));

    // Nothing is asked before the Node's addresses are known.
    let (addresses_tx, addresses_rx) = tokio::sync::watch::channel(Vec::new());
    let rotation = tokio::spawn(manager.clone().run(node_client.clone(), addresses_rx));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(serving_requests(&admin).await.is_empty());

    // Known: the nearly spent certificate is replaced by one from the node's request,
    // an hour long, for the same names; the listener never stopped, and the
    // connection opened before still answers.
    let started = Instant::now();
    addresses_tx.send(addresses(&["127.0.0.1"])).unwrap();
    let second = next_certificate(&pki.ca_cert, port, "127.0.0.1", &first).await;
    let rotated_in = started.elapsed();
    let (from2, to2) = keelson_pki::csr::validity(&pem(&second)).unwrap();
    assert_eq!(
        to2.duration_since(from2).unwrap(),
        Duration::from_secs(3600 + 300)
    );
    assert!(to2 > to + Duration::from_secs(3000), "notAfter moved on");
    assert_eq!(echo(&mut open, b"still here").await, b"still here");
    let requests = serving_requests(&admin).await;
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(
        request.spec.username.as_deref(),
        Some(format!("system:node:{NODE}").as_str())
    );
    let mut got_usages = request.spec.usages.clone().unwrap();
    got_usages.sort();
    assert_eq!(got_usages, ["digital signature", "server auth"]);
    let approved = &request
        .status
        .as_ref()
        .unwrap()
        .conditions
        .as_ref()
        .unwrap()[0];
    assert_eq!(
        (approved.type_.as_str(), approved.reason.as_deref()),
        ("Approved", Some("AutoApproved"))
    );
    // Stored: what a restart serves.
    assert_eq!(
        der(&std::fs::read(root.join(CURRENT_FILE)).unwrap()),
        second
    );

    // The Node gains an address: a new certificate at once, naming it, though the
    // current one has most of its hour left.
    set_addresses(&["127.0.0.1", "127.0.0.2"]).await;
    let started = Instant::now();
    addresses_tx
        .send(addresses(&["127.0.0.1", "127.0.0.2"]))
        .unwrap();
    let third = next_certificate(&pki.ca_cert, port, "127.0.0.2", &second).await;
    let readdressed_in = started.elapsed();
    assert!(connect(&pki.ca_cert, port, "127.0.0.1").await.is_ok());
    assert_eq!(serving_requests(&admin).await.len(), 2);

    // A name the Node does not have: the request stays pending and the agent keeps
    // serving what it has.
    addresses_tx
        .send(addresses(&["127.0.0.1", "127.0.0.2", "127.0.0.3"]))
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pending = serving_requests(&admin).await;
    assert_eq!(pending.len(), 3);
    assert!(pending.iter().any(|c| c
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_none_or(|c| c.is_empty())));
    let (now_served, _) = connect(&pki.ca_cert, port, "127.0.0.2").await.unwrap();
    assert_eq!(now_served, third);
    rotation.abort();

    // A restart serves the stored certificate and asks for nothing while it is good.
    let restarted = ServingCertificate::load(&root, NODE, (&fallback.0, &fallback.1)).unwrap();
    assert_eq!(der(&restarted.current().pem()), third);
    eprintln!("rotated in {rotated_in:?}; re-addressed in {readdressed_in:?}");
}
