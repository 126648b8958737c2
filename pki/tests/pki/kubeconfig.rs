use keelson_pki::{client_config, ensure_pki, write_kubeconfig, Kubeconfig, PkiOptions};

#[test]
fn round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let p = ensure_pki(&dir.path().join("pki"), &PkiOptions::default()).unwrap();
    let ca = std::fs::read(&p.ca_cert).unwrap();
    let cert = std::fs::read(&p.admin_cert).unwrap();
    let key = std::fs::read(&p.admin_key).unwrap();
    let path = dir.path().join("sub/admin.kubeconfig");
    write_kubeconfig(
        &path,
        "https://127.0.0.1:6443",
        &ca,
        &cert,
        &key,
        "kubernetes-admin",
        "kubernetes-admin@keelson",
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let text = std::fs::read_to_string(&path).unwrap();
    for needle in [
        "apiVersion: v1",
        "kind: Config",
        "current-context: kubernetes-admin@keelson",
        "certificate-authority-data: ",
        "client-certificate-data: ",
        "client-key-data: ",
        "server: https://127.0.0.1:6443",
    ] {
        assert!(text.contains(needle), "{needle:?} not in\n{text}");
    }

    let kc = Kubeconfig::load(&path).unwrap();
    assert_eq!(kc.current_context, "kubernetes-admin@keelson");
    let ctx = kc.current().unwrap();
    assert_eq!(ctx.server, "https://127.0.0.1:6443");
    assert_eq!(ctx.user_name, "kubernetes-admin");
    assert_eq!(ctx.ca_pem.as_deref(), Some(&ca[..]));
    assert_eq!(ctx.client_cert_pem.as_deref(), Some(&cert[..]));
    assert_eq!(ctx.client_key_pem.as_deref(), Some(&key[..]));
    assert_eq!(ctx.token, None);
    // Serializing again gives the same document.
    assert_eq!(
        Kubeconfig::from_yaml(&kc.to_yaml().unwrap())
            .unwrap()
            .to_yaml()
            .unwrap(),
        text
    );
    // And it makes a client config.
    let cc = client_config(&kc).unwrap();
    assert_eq!(cc.alpn_protocols, [b"h2".to_vec()]);
    assert!(cc.client_auth_cert_resolver.has_certs());
}

#[test]
fn file_paths_and_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let p = ensure_pki(&dir.path().join("pki"), &PkiOptions::default()).unwrap();
    std::fs::write(dir.path().join("tok"), "file-token\n").unwrap();
    let yaml = format!(
        r#"
apiVersion: v1
kind: Config
clusters:
- name: c1
  cluster:
    server: https://10.0.0.1:6443
    certificate-authority: pki/ca.crt
    tls-server-name: kubernetes
- name: c2
  cluster:
    server: https://example.test
    insecure-skip-tls-verify: true
users:
- name: files
  user:
    client-certificate: {cert}
    client-key: pki/admin.key
- name: tok
  user:
    token: abc.def
- name: tokfile
  user:
    tokenFile: tok
- name: exec
  user:
    exec:
      command: something
      apiVersion: client.authentication.k8s.io/v1
contexts:
- name: a
  context: {{cluster: c1, user: files, namespace: kube-system}}
- name: b
  context: {{cluster: c1, user: tok}}
- name: c
  context: {{cluster: c2, user: tokfile}}
- name: anon
  context: {{cluster: c1}}
- name: broken
  context: {{cluster: nope, user: tok}}
current-context: b
preferences: {{}}
"#,
        cert = p.admin_cert.display()
    );
    let path = dir.path().join("config");
    std::fs::write(&path, yaml).unwrap();
    let kc = Kubeconfig::load(&path).unwrap();

    let a = kc.context("a").unwrap();
    assert_eq!(a.ca_pem.unwrap(), std::fs::read(&p.ca_cert).unwrap());
    assert_eq!(
        a.client_cert_pem.unwrap(),
        std::fs::read(&p.admin_cert).unwrap()
    );
    assert_eq!(
        a.client_key_pem.unwrap(),
        std::fs::read(&p.admin_key).unwrap()
    );
    assert_eq!(a.namespace.as_deref(), Some("kube-system"));
    assert_eq!(a.tls_server_name.as_deref(), Some("kubernetes"));

    let b = kc.current().unwrap();
    assert_eq!(b.context_name, "b");
    assert_eq!(b.token.as_deref(), Some("abc.def"));
    assert!(b.client_cert_pem.is_none());
    let cc = client_config(&kc).unwrap();
    assert!(!cc.client_auth_cert_resolver.has_certs());

    let c = kc.context("c").unwrap();
    assert_eq!(c.token.as_deref(), Some("file-token"));
    assert!(c.insecure_skip_tls_verify);
    assert!(c.ca_pem.is_none());
    assert!(keelson_pki::client_config_for(&c).is_err());

    let anon = kc.context("anon").unwrap();
    assert!(anon.token.is_none() && anon.client_cert_pem.is_none());

    let err = format!("{:#}", kc.context("broken").unwrap_err());
    assert!(err.contains("cluster \"nope\""), "{err}");
    assert!(kc.context("missing").is_err());
}

#[test]
fn errors() {
    assert!(Kubeconfig::from_yaml("kind: Pod\n").is_err());
    assert!(Kubeconfig::from_yaml("clusters: 5\n").is_err());
    let empty = Kubeconfig::from_yaml("").unwrap();
    assert!(empty.current().is_err());
    let nulls = Kubeconfig::from_yaml("apiVersion: v1\nkind: Config\nclusters: null\nusers:\ncontexts: []\ncurrent-context: \"\"\npreferences: {}\n").unwrap();
    assert!(nulls.clusters.is_empty() && nulls.users.is_empty());
    let bad_b64 = "kind: Config\nclusters: [{name: c, cluster: {server: 'https://x', certificate-authority-data: '%%%'}}]\ncontexts: [{name: x, context: {cluster: c}}]\ncurrent-context: x\n";
    let err = format!(
        "{:#}",
        Kubeconfig::from_yaml(bad_b64)
            .unwrap()
            .current()
            .unwrap_err()
    );
    assert!(err.contains("base64"), "{err}");
    assert!(Kubeconfig::load(std::path::Path::new("/nonexistent/kubeconfig")).is_err());
}

#[test]
fn component_kubeconfigs() {
    let dir = tempfile::tempdir().unwrap();
    let p = ensure_pki(&dir.path().join("pki"), &PkiOptions::default()).unwrap();
    let server = "https://10.0.0.1:6443";
    let confs = keelson_pki::write_component_kubeconfigs(&p, dir.path(), server).unwrap();
    assert_eq!(
        confs.written,
        ["scheduler", "controller-manager", "proxy", "dns"]
    );
    for (path, file, user, cert, key) in [
        (
            &confs.scheduler,
            "scheduler.conf",
            "system:kube-scheduler",
            &p.scheduler_cert,
            &p.scheduler_key,
        ),
        (
            &confs.controller_manager,
            "controller-manager.conf",
            "system:kube-controller-manager",
            &p.controller_manager_cert,
            &p.controller_manager_key,
        ),
        (
            &confs.proxy,
            "proxy.conf",
            "system:kube-proxy",
            &p.proxy_cert,
            &p.proxy_key,
        ),
        (
            &confs.dns,
            "dns.conf",
            "system:keelson-dns",
            &p.dns_cert,
            &p.dns_key,
        ),
    ] {
        assert_eq!(path, &dir.path().join(file));
        let ctx = Kubeconfig::load(path).unwrap().current().unwrap();
        assert_eq!(ctx.context_name, format!("{user}@keelson"));
        assert_eq!(ctx.user_name, user);
        assert_eq!(ctx.server, server);
        assert_eq!(ctx.ca_pem.unwrap(), std::fs::read(&p.ca_cert).unwrap());
        let cert_pem = ctx.client_cert_pem.unwrap();
        assert_eq!(cert_pem, std::fs::read(cert).unwrap());
        assert_eq!(ctx.client_key_pem.unwrap(), std::fs::read(key).unwrap());
        let leaf = keelson_pki::load_certs(cert).unwrap().remove(0);
        assert_eq!(
            keelson_pki::identity_from_cert_der(&leaf).unwrap().user,
            user
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{file}");
        }
    }

    // Again: nothing rewritten (same bytes, same modification time).
    let stamp = |p: &std::path::Path| {
        (
            std::fs::read(p).unwrap(),
            std::fs::metadata(p).unwrap().modified().unwrap(),
        )
    };
    let before = stamp(&confs.proxy);
    std::thread::sleep(std::time::Duration::from_millis(20));
    let again = keelson_pki::write_component_kubeconfigs(&p, dir.path(), server).unwrap();
    assert!(again.written.is_empty(), "{:?}", again.written);
    assert_eq!(stamp(&confs.proxy), before);

    // A re-issued certificate, or another server, rewrites what changed.
    std::fs::remove_file(&p.dns_cert).unwrap();
    let p = ensure_pki(&dir.path().join("pki"), &PkiOptions::default()).unwrap();
    assert_eq!(p.issued, ["dns"]);
    let again = keelson_pki::write_component_kubeconfigs(&p, dir.path(), server).unwrap();
    assert_eq!(again.written, ["dns"]);
    let ctx = Kubeconfig::load(&again.dns).unwrap().current().unwrap();
    assert_eq!(
        ctx.client_cert_pem.unwrap(),
        std::fs::read(&p.dns_cert).unwrap()
    );
    let moved =
        keelson_pki::write_component_kubeconfigs(&p, dir.path(), "https://10.0.0.2:6443").unwrap();
    assert_eq!(moved.written.len(), 4);
}
