//! The real `kubectl` accepts a kubeconfig from `write_kubeconfig`: it trusts the CA, verifies
//! the serving certificate for 127.0.0.1 and presents the admin client certificate. Skipped
//! (with a message) when `kubectl` is not on PATH.

use std::sync::{Arc, Mutex};

use keelson_pki::{
    ensure_pki, peer_identity, server_config, write_kubeconfig, Identity, PkiOptions,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

fn kubectl_available() -> bool {
    std::process::Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[tokio::test]
async fn kubectl_connects_with_admin_cert() {
    if !kubectl_available() {
        eprintln!("kubectl not found; skipping");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let p = ensure_pki(&dir.path().join("pki"), &PkiOptions::default()).unwrap();
    let mut cfg = server_config(&p.apiserver_cert, &p.apiserver_key, Some(&p.ca_cert)).unwrap();
    // This toy server speaks HTTP/1.1 only.
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(cfg));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();

    // Every connection: (client identity, request head), or the handshake error. (The
    // gcloud kubectl "dispatcher" makes a request of its own before the real kubectl.)
    let seen = Arc::new(Mutex::new(
        Vec::<Result<(Option<Identity>, String), String>>::new(),
    ));
    let server = tokio::spawn({
        let seen = seen.clone();
        async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let mut tls = match acceptor.accept(tcp).await {
                    Ok(tls) => tls,
                    Err(e) => {
                        seen.lock()
                            .unwrap()
                            .push(Err(format!("TLS handshake: {e}")));
                        continue;
                    }
                };
                let id = peer_identity(tls.get_ref().1);
                let mut req = Vec::new();
                let mut buf = [0u8; 4096];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(n) if n > 0 => req.extend_from_slice(&buf[..n]),
                        _ => break,
                    }
                }
                let body = r#"{"major":"1","minor":"33","gitVersion":"v1.33.0-keelson"}"#;
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                tls.write_all(resp.as_bytes()).await.ok();
                tls.shutdown().await.ok();
                seen.lock()
                    .unwrap()
                    .push(Ok((id, String::from_utf8_lossy(&req).into_owned())));
            }
        }
    });

    let kubeconfig = dir.path().join("admin.conf");
    write_kubeconfig(
        &kubeconfig,
        &format!("https://{addr}"),
        &std::fs::read(&p.ca_cert).unwrap(),
        &std::fs::read(&p.admin_cert).unwrap(),
        &std::fs::read(&p.admin_key).unwrap(),
        "kubernetes-admin",
        "kubernetes-admin@keelson",
    )
    .unwrap();

    let out = tokio::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["get", "--raw", "/version", "--request-timeout=20s"])
        .env_remove("KUBECONFIG")
        .output()
        .await
        .unwrap();
    server.abort();
    let seen = seen.lock().unwrap().clone();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "kubectl failed: {}\n{stdout}\nserver saw: {seen:?}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("v1.33.0-keelson"), "{stdout}");
    assert!(!seen.is_empty());
    for conn in seen {
        let (id, req) = conn.unwrap();
        assert!(req.starts_with("GET /version"), "{req}");
        assert_eq!(
            id,
            Some(Identity {
                user: "kubernetes-admin".into(),
                groups: vec!["system:masters".into()]
            })
        );
    }
}
