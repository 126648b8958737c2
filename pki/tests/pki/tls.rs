//! A real TLS handshake: tokio-rustls server with `server_config`, client with `client_config`.

use std::path::Path;
use std::sync::Arc;

use keelson_pki::{
    client_config, ensure_pki, issue_client_cert, peer_identity, server_config, write_kubeconfig,
    Identity, Kubeconfig, PkiOptions, PkiPaths,
};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// Accepts `n` connections; for each, reports the peer identity and ALPN, and echoes a line.
async fn serve(
    p: &PkiPaths,
    n: usize,
) -> (
    std::net::SocketAddr,
    tokio::task::JoinHandle<Vec<Result<(Option<Identity>, Option<Vec<u8>>), String>>>,
) {
    let cfg = server_config(&p.apiserver_cert, &p.apiserver_key, Some(&p.ca_cert)).unwrap();
    assert_eq!(cfg.alpn_protocols, [b"h2".to_vec(), b"http/1.1".to_vec()]);
    let acceptor = TlsAcceptor::from(Arc::new(cfg));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = tokio::spawn(async move {
        let mut out = Vec::new();
        for _ in 0..n {
            let (tcp, _) = listener.accept().await.unwrap();
            match acceptor.accept(tcp).await {
                Ok(mut tls) => {
                    let (_, conn) = tls.get_ref();
                    let id = peer_identity(conn);
                    let alpn = conn.alpn_protocol().map(<[u8]>::to_vec);
                    let mut buf = [0u8; 5];
                    tls.read_exact(&mut buf).await.unwrap();
                    tls.write_all(&buf).await.unwrap();
                    tls.shutdown().await.ok();
                    out.push(Ok((id, alpn)));
                }
                Err(e) => out.push(Err(e.to_string())),
            }
        }
        out
    });
    (addr, handle)
}

async fn connect(kc: &Kubeconfig, addr: std::net::SocketAddr) -> std::io::Result<()> {
    let connector = TlsConnector::from(Arc::new(client_config(kc).unwrap()));
    let tcp = TcpStream::connect(addr).await?;
    let mut tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await?;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    tls.write_all(b"hello").await?;
    let mut buf = [0u8; 5];
    tls.read_exact(&mut buf).await?;
    assert_eq!(&buf, b"hello");
    Ok(())
}

fn kubeconfig(p: &PkiPaths, dir: &Path, cert: &Path, key: &Path, file: &str) -> Kubeconfig {
    let path = dir.join(file);
    write_kubeconfig(
        &path,
        "https://127.0.0.1:6443",
        &std::fs::read(&p.ca_cert).unwrap(),
        &std::fs::read(cert).unwrap(),
        &std::fs::read(key).unwrap(),
        "u",
        "ctx",
    )
    .unwrap();
    Kubeconfig::load(&path).unwrap()
}

#[tokio::test]
async fn client_cert_identity_and_anonymous() {
    let dir = tempfile::tempdir().unwrap();
    let p = ensure_pki(&dir.path().join("pki"), &PkiOptions::default()).unwrap();
    let sched = issue_client_cert(&p.dir, "scheduler", "system:kube-scheduler", &[]).unwrap();

    let admin_kc = kubeconfig(&p, dir.path(), &p.admin_cert, &p.admin_key, "admin.conf");
    let sched_kc = kubeconfig(&p, dir.path(), &sched.cert, &sched.key, "sched.conf");
    // A token user: no client certificate.
    let mut token_kc = admin_kc.clone();
    token_kc.users[0].user = keelson_pki::AuthInfo {
        token: Some("secret".into()),
        ..Default::default()
    };

    let (addr, server) = serve(&p, 3).await;
    connect(&admin_kc, addr).await.unwrap();
    connect(&sched_kc, addr).await.unwrap();
    connect(&token_kc, addr).await.unwrap();
    let results = server.await.unwrap();
    let ids: Vec<_> = results.into_iter().map(Result::unwrap).collect();
    assert_eq!(
        ids[0],
        (
            Some(Identity {
                user: "kubernetes-admin".into(),
                groups: vec!["system:masters".into()]
            }),
            Some(b"h2".to_vec())
        )
    );
    assert_eq!(
        ids[1].0,
        Some(Identity {
            user: "system:kube-scheduler".into(),
            groups: vec![]
        })
    );
    assert_eq!(ids[2], (None, Some(b"h2".to_vec())));
}

#[tokio::test]
async fn foreign_client_cert_and_foreign_server_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let p = ensure_pki(&dir.path().join("pki"), &PkiOptions::default()).unwrap();
    let other = ensure_pki(&dir.path().join("other"), &PkiOptions::default()).unwrap();

    // Client presenting a certificate from another CA (but trusting the right server CA).
    let mut foreign_client = kubeconfig(
        &p,
        dir.path(),
        &other.admin_cert,
        &other.admin_key,
        "f.conf",
    );
    foreign_client.base_dir = None;
    // Client trusting another CA.
    let wrong_ca = kubeconfig(
        &other,
        dir.path(),
        &other.admin_cert,
        &other.admin_key,
        "w.conf",
    );

    let (addr, server) = serve(&p, 2).await;
    // TLS 1.3: the server's rejection of the client cert surfaces on the first read.
    assert!(connect(&foreign_client, addr).await.is_err());
    assert!(connect(&wrong_ca, addr).await.is_err());
    let results = server.await.unwrap();
    assert!(results.iter().all(Result::is_err), "{results:?}");
}

#[test]
fn server_config_without_client_ca_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let p = ensure_pki(dir.path(), &PkiOptions::default()).unwrap();
    let cfg = server_config(&p.apiserver_cert, &p.apiserver_key, None).unwrap();
    assert_eq!(cfg.alpn_protocols, [b"h2".to_vec(), b"http/1.1".to_vec()]);
    // Mismatched key.
    assert!(server_config(&p.apiserver_cert, &p.admin_key, None).is_err());
    // Key and cert swapped.
    let err = server_config(&p.apiserver_key, &p.apiserver_cert, None).unwrap_err();
    assert!(format!("{err:#}").contains("CERTIFICATE"), "{err:#}");
    assert!(server_config(
        &p.apiserver_cert,
        &p.apiserver_key,
        Some(&dir.path().join("nope"))
    )
    .is_err());
}
