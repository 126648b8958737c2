//! Admission webhooks with the real kubectl: Validating- and
//! MutatingWebhookConfigurations pointing (`url:`) at an HTTPS server this test runs on
//! loopback, with a certificate from a CA it generates (given as `caBundle`).
//!
//! Every configuration is scoped to its test's namespace (`namespaceSelector` on
//! `kubernetes.io/metadata.name`), so tests sharing the cluster never see each other's
//! webhooks. A configuration takes effect once the apiserver's watch has delivered it:
//! [`Hooks::wait_active`] creates probe ConfigMaps until the server has seen one.

use keelson_e2e::{json, namespace, CLUSTER};
use keelson_testkit::ok;
use keelson_testkit::Cluster;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the test server answers on each path (the object is the request's).
fn answer(path: &str, review: &Value) -> Option<Vec<u8>> {
    let req = &review["request"];
    let uid = req["uid"].as_str().unwrap_or("").to_string();
    let obj = if req["object"].is_object() {
        &req["object"]
    } else {
        &req["oldObject"]
    };
    let name = obj["metadata"]["name"].as_str().unwrap_or("");
    let mut response = json!({"uid": uid, "allowed": true});
    if !name.starts_with("probe-") {
        match path {
            "/deny" if name.starts_with("deny-") => {
                response["allowed"] = json!(false);
                response["status"] = json!({"code": 403, "reason": "Forbidden", "message": format!("{name} is not a name we like")});
            }
            "/warn" => response["warnings"] = json!(["webhook says: careful with configmaps"]),
            "/protect"
                if req["operation"] == "DELETE" && obj["metadata"]["labels"]["protect"] == "no" =>
            {
                response["warnings"] = json!(["deleting a configmap that was protected"]);
            }
            "/protect"
                if req["operation"] == "DELETE"
                    && obj["metadata"]["labels"]["protect"] == "yes" =>
            {
                response["allowed"] = json!(false);
                response["status"] = json!({"message": "this configmap is protected"});
            }
            // Mutating webhooks see no object on DELETE: nothing to patch.
            "/label" if req["operation"] != "DELETE" => {
                use base64::Engine as _;
                let labels_exist = obj["metadata"]["labels"].is_object();
                let patch = if labels_exist {
                    json!([{"op": "add", "path": "/metadata/labels/mutated-by-webhook", "value": "yes"}])
                } else {
                    json!([{"op": "add", "path": "/metadata/labels", "value": {"mutated-by-webhook": "yes"}}])
                };
                response["patchType"] = json!("JSONPatch");
                response["patch"] = json!(base64::engine::general_purpose::STANDARD
                    .encode(serde_json::to_vec(&patch).unwrap()));
            }
            "/sleep" => std::thread::sleep(Duration::from_secs(3)),
            "/garbage" => return Some(b"this is not an AdmissionReview".to_vec()),
            "/wrong-uid" => response["uid"] = json!("not-the-request-uid"),
            _ => {}
        }
    }
    Some(
        serde_json::to_vec(
            &json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}),
        )
        .unwrap(),
    )
}

/// The HTTPS webhook server: its port, CA (PEM) and every review it received (path and
/// request).
struct Server {
    port: u16,
    ca_pem: String,
    seen: Arc<Mutex<Vec<(String, Value)>>>,
}

fn tls_config() -> (Arc<rustls::ServerConfig>, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "webhook test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::from_ca_cert_der(ca_cert.der(), &ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![leaf.der().clone()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )
    .unwrap();
    (Arc::new(config), ca_cert.pem())
}

/// One HTTP/1.1 exchange on an accepted connection.
fn serve_one(
    config: Arc<rustls::ServerConfig>,
    tcp: std::net::TcpStream,
    seen: Arc<Mutex<Vec<(String, Value)>>>,
) -> std::io::Result<()> {
    let conn = rustls::ServerConnection::new(config).map_err(std::io::Error::other)?;
    let mut stream = rustls::StreamOwned::new(conn, tcp);
    let mut reader = BufReader::new(&mut stream);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let path = line
        .split_whitespace()
        .nth(1)
        .unwrap_or("/")
        .split('?')
        .next()
        .unwrap_or("/")
        .to_string();
    let mut length = 0;
    loop {
        let mut h = String::new();
        reader.read_line(&mut h)?;
        if h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    let review: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    seen.lock().unwrap().push((path.clone(), review.clone()));
    let out = answer(&path, &review).unwrap_or_default();
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        out.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(&out)?;
    stream.flush()?;
    stream.conn.send_close_notify();
    let _ = stream.flush();
    Ok(())
}

impl Server {
    fn start() -> Server {
        let (config, ca_pem) = tls_config();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        std::thread::spawn(move || {
            for tcp in listener.incoming().flatten() {
                let (config, seen) = (config.clone(), s.clone());
                std::thread::spawn(move || {
                    let _ = serve_one(config, tcp, seen);
                });
            }
        });
        Server { port, ca_pem, seen }
    }

    fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }

    fn ca_bundle(&self) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(&self.ca_pem)
    }

    /// The reviews received for object `name`, with their paths.
    fn seen_for(&self, name: &str) -> Vec<(String, Value)> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, r)| {
                let req = &r["request"];
                req["name"] == name
                    || req["object"]["metadata"]["name"] == name
                    || req["oldObject"]["metadata"]["name"] == name
            })
            .cloned()
            .collect()
    }
}

/// One webhook of a configuration: name, path, and the fields that differ from the
/// defaults (merged in).
fn hook(server: &Server, ns: &str, name: &str, path: &str, extra: Value) -> Value {
    let mut h = json!({
        "name": name,
        "admissionReviewVersions": ["v1"],
        "sideEffects": "None",
        "timeoutSeconds": 1,
        "clientConfig": {"url": server.url(path), "caBundle": server.ca_bundle()},
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}},
        "rules": [{"operations": ["CREATE", "UPDATE", "DELETE"], "apiGroups": [""],
                   "apiVersions": ["v1"], "resources": ["configmaps"]}],
    });
    for (k, v) in extra.as_object().cloned().unwrap_or_default() {
        h[k] = v;
    }
    h
}

/// Configurations created by one test, deleted when it ends (also on failure).
struct Hooks<'a> {
    c: &'a Cluster,
    ns: String,
    created: Vec<(String, String)>,
    probes: AtomicUsize,
}

impl<'a> Hooks<'a> {
    fn new(c: &'a Cluster, ns: &str) -> Self {
        Hooks {
            c,
            ns: ns.to_string(),
            created: Vec::new(),
            probes: AtomicUsize::new(0),
        }
    }

    fn create(&mut self, kind: &str, name: &str, hooks: Vec<Value>) {
        let config = json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": kind,
            "metadata": {"name": name},
            "webhooks": hooks,
        });
        ok(self
            .c
            .kubectl_with("kubectl", &["create", "-f", "-"], Some(&config.to_string())));
        self.created.push((kind.to_string(), name.to_string()));
    }

    /// Create probe ConfigMaps (label `case: probe`) until `server` has seen one: the
    /// configurations created so far are then in effect.
    fn wait_active(&self, server: &Server) {
        self.wait_calls(server, 1)
    }

    /// Create probe ConfigMaps until one has been sent to `calls` hooks.
    fn wait_calls(&self, server: &Server, calls: usize) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let n = self.probes.fetch_add(1, Ordering::Relaxed);
            let name = format!("probe-{n}");
            let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": name, "labels": {"case": "probe"}}});
            ok(self.c.kubectl_with(
                "kubectl",
                &["create", "-n", &self.ns, "-f", "-"],
                Some(&cm.to_string()),
            ));
            if server.seen_for(&name).len() >= calls {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the webhook configurations never took effect"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Hooks<'_> {
    fn drop(&mut self) {
        for (kind, name) in &self.created {
            let resource = format!("{}.admissionregistration.k8s.io", kind.to_lowercase());
            let _ = self.c.kubectl(&["delete", &resource, name, "--wait=false"]);
        }
    }
}

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// kubectl fails; its stderr.
fn refused(c: &Cluster, args: &[&str], stdin: Option<&str>) -> String {
    let out = c.kubectl_with("kubectl", args, stdin);
    assert!(
        !out.status.success(),
        "kubectl {args:?} unexpectedly succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    stderr_of(&out)
}

fn configmap(name: &str, labels: Value) -> String {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels},
        "data": {"k": "v"}})
    .to_string()
}

fn exists(c: &Cluster, ns: &str, name: &str) -> bool {
    c.kubectl(&["get", "configmap", "-n", ns, name])
        .status
        .success()
}

#[test]
fn validating_webhook_allows_denies_and_warns() {
    let c = &*CLUSTER;
    let ns = namespace(c, "webhook-validate");
    let server = Server::start();
    let mut hooks = Hooks::new(c, &ns);
    hooks.create(
        "ValidatingWebhookConfiguration",
        "e2e-validate",
        vec![
            hook(&server, &ns, "deny.webhooks.keelson.io", "/deny", json!({})),
            hook(&server, &ns, "warn.webhooks.keelson.io", "/warn", json!({})),
        ],
    );
    // The table kubectl prints: NAME, WEBHOOKS, AGE.
    let table = ok(c.kubectl(&["get", "validatingwebhookconfigurations", "e2e-validate"]));
    assert!(
        table.starts_with("NAME") && table.contains("WEBHOOKS"),
        "{table}"
    );
    assert!(
        table
            .lines()
            .nth(1)
            .is_some_and(|l| l.split_whitespace().nth(1) == Some("2")),
        "{table}"
    );
    hooks.wait_active(&server);

    // Allowed, with the other webhook's warning shown by kubectl.
    let out = c.kubectl_with(
        "kubectl",
        &["create", "-n", &ns, "-f", "-"],
        Some(&configmap("fine", json!({}))),
    );
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains("Warning: webhook says: careful with configmaps"),
        "{}",
        stderr_of(&out)
    );
    let seen = server.seen_for("fine");
    assert_eq!(seen.len(), 2, "both webhooks are called: {seen:?}");
    let req = &seen[0].1["request"];
    assert_eq!(req["operation"], "CREATE");
    assert_eq!(req["namespace"], json!(ns));
    assert_eq!(
        req["resource"],
        json!({"group": "", "version": "v1", "resource": "configmaps"})
    );
    assert_eq!(req["userInfo"]["username"], "kubernetes-admin");
    assert_eq!(req["dryRun"], false);
    assert_eq!(req["options"]["kind"], "CreateOptions");

    // Denied: the webhook's message and code, nothing stored.
    let err = refused(
        c,
        &["create", "-n", &ns, "-f", "-"],
        Some(&configmap("deny-me", json!({}))),
    );
    assert!(
        err.contains(r#"admission webhook "deny.webhooks.keelson.io" denied the request: deny-me is not a name we like"#),
        "{err}"
    );
    assert!(err.contains("Forbidden"), "the webhook's reason: {err}");
    assert!(!exists(c, &ns, "deny-me"));

    // Server-side dry run reaches webhooks (sideEffects None) as dryRun and stores
    // nothing.
    ok(c.kubectl_with(
        "kubectl",
        &["create", "-n", &ns, "--dry-run=server", "-f", "-"],
        Some(&configmap("dry", json!({}))),
    ));
    let seen = server.seen_for("dry");
    assert!(
        !seen.is_empty() && seen.iter().all(|(_, r)| r["request"]["dryRun"] == true),
        "{seen:?}"
    );
    assert!(!exists(c, &ns, "dry"));
}

#[test]
fn mutating_webhook_patches_and_updates_and_deletes_are_intercepted() {
    let c = &*CLUSTER;
    let ns = namespace(c, "webhook-mutate");
    let server = Server::start();
    let mut hooks = Hooks::new(c, &ns);
    hooks.create(
        "MutatingWebhookConfiguration",
        "e2e-mutate",
        vec![hook(
            &server,
            &ns,
            "label.webhooks.keelson.io",
            "/label",
            json!({}),
        )],
    );
    hooks.create(
        "ValidatingWebhookConfiguration",
        "e2e-protect",
        vec![hook(
            &server,
            &ns,
            "protect.webhooks.keelson.io",
            "/protect",
            json!({}),
        )],
    );
    hooks.wait_calls(&server, 2);

    // Create: the label the webhook adds is stored.
    ok(c.kubectl_with(
        "kubectl",
        &["create", "-n", &ns, "-f", "-"],
        Some(&configmap("patched", json!({"protect": "yes"}))),
    ));
    let stored = json(&ok(c.kubectl(&[
        "get",
        "configmap",
        "-n",
        &ns,
        "patched",
        "-o",
        "json",
    ])));
    assert_eq!(
        stored["metadata"]["labels"]["mutated-by-webhook"], "yes",
        "{stored}"
    );

    // Update (kubectl label is a patch): the webhook sees UPDATE with the old object, and
    // its label survives the client removing it.
    ok(c.kubectl(&[
        "label",
        "configmap",
        "-n",
        &ns,
        "patched",
        "mutated-by-webhook-",
        "extra=1",
    ]));
    let stored = json(&ok(c.kubectl(&[
        "get",
        "configmap",
        "-n",
        &ns,
        "patched",
        "-o",
        "json",
    ])));
    assert_eq!(
        stored["metadata"]["labels"]["mutated-by-webhook"], "yes",
        "{stored}"
    );
    assert_eq!(stored["metadata"]["labels"]["extra"], "1");
    let updates: Vec<Value> = server
        .seen_for("patched")
        .into_iter()
        .filter(|(p, r)| p == "/label" && r["request"]["operation"] == "UPDATE")
        .map(|(_, r)| r)
        .collect();
    assert!(!updates.is_empty(), "no UPDATE review");
    assert_eq!(
        updates[0]["request"]["oldObject"]["metadata"]["labels"]["mutated-by-webhook"],
        "yes"
    );
    assert_eq!(updates[0]["request"]["options"]["kind"], "UpdateOptions");

    // Server-side apply creates go through mutating admission too.
    let applied = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "applied"}, "data": {"a": "b"}});
    ok(c.kubectl_with(
        "kubectl",
        &["apply", "--server-side", "-n", &ns, "-f", "-"],
        Some(&applied.to_string()),
    ));
    let stored = json(&ok(c.kubectl(&[
        "get",
        "configmap",
        "-n",
        &ns,
        "applied",
        "-o",
        "json",
    ])));
    assert_eq!(
        stored["metadata"]["labels"]["mutated-by-webhook"], "yes",
        "{stored}"
    );

    // Delete: refused while protected (the webhook's message, default code 400), then
    // allowed once the label is gone.
    let err = refused(c, &["delete", "configmap", "-n", &ns, "patched"], None);
    assert!(
        err.contains(r#"admission webhook "protect.webhooks.keelson.io" denied the request: this configmap is protected"#),
        "{err}"
    );
    assert!(exists(c, &ns, "patched"));
    let deletes: Vec<Value> = server
        .seen_for("patched")
        .into_iter()
        .filter(|(p, r)| p == "/protect" && r["request"]["operation"] == "DELETE")
        .map(|(_, r)| r)
        .collect();
    assert!(!deletes.is_empty());
    assert!(deletes[0]["request"].get("object").is_none());
    assert_eq!(deletes[0]["request"]["options"]["kind"], "DeleteOptions");
    // No longer protected: allowed, with the webhook's warning shown by kubectl.
    ok(c.kubectl(&[
        "label",
        "configmap",
        "-n",
        &ns,
        "patched",
        "protect=no",
        "--overwrite",
    ]));
    let out = c.kubectl(&["delete", "configmap", "-n", &ns, "patched"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains("Warning: deleting a configmap that was protected"),
        "{}",
        stderr_of(&out)
    );
    assert!(!exists(c, &ns, "patched"));
}

#[test]
fn failure_policies_on_timeouts_and_bad_responses() {
    let c = &*CLUSTER;
    let ns = namespace(c, "webhook-failures");
    let server = Server::start();
    let mut hooks = Hooks::new(c, &ns);
    // Each hook sees only objects labelled with its case (and the probes).
    let case = |name: &str, path: &str, policy: &str, label: &str| {
        hook(
            &server,
            &ns,
            name,
            path,
            json!({"failurePolicy": policy, "objectSelector": {"matchExpressions": [
                {"key": "case", "operator": "In", "values": [label, "probe"]}]}}),
        )
    };
    hooks.create(
        "ValidatingWebhookConfiguration",
        "e2e-failures",
        vec![
            case(
                "timeout-ignore.webhooks.keelson.io",
                "/sleep",
                "Ignore",
                "timeout-ignore",
            ),
            case(
                "timeout-fail.webhooks.keelson.io",
                "/sleep",
                "Fail",
                "timeout-fail",
            ),
            case(
                "garbage-ignore.webhooks.keelson.io",
                "/garbage",
                "Ignore",
                "garbage-ignore",
            ),
            case(
                "garbage-fail.webhooks.keelson.io",
                "/garbage",
                "Fail",
                "garbage-fail",
            ),
            case(
                "uid-fail.webhooks.keelson.io",
                "/wrong-uid",
                "Fail",
                "uid-fail",
            ),
        ],
    );
    hooks.wait_active(&server);
    let create = |name: &str| {
        c.kubectl_with(
            "kubectl",
            &["create", "-n", &ns, "-f", "-"],
            Some(&configmap(name, json!({"case": name}))),
        )
    };

    let started = Instant::now();
    let out = create("timeout-ignore");
    println!(
        "timeout-ignore create took {:?} (timeoutSeconds 1, webhook sleeps 3 s)",
        started.elapsed()
    );
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(exists(c, &ns, "timeout-ignore"));

    let out = create("timeout-fail");
    assert!(!out.status.success());
    let err = stderr_of(&out);
    let expected = format!(
        "Internal error occurred: failed calling webhook \"timeout-fail.webhooks.keelson.io\": failed to call webhook: Post \"{}?timeout=1s\": context deadline exceeded",
        server.url("/sleep")
    );
    assert!(err.contains(&expected), "{err}");
    assert!(!exists(c, &ns, "timeout-fail"));

    let out = create("garbage-ignore");
    assert!(out.status.success(), "{}", stderr_of(&out));

    let out = create("garbage-fail");
    let err = stderr_of(&out);
    assert!(!out.status.success());
    assert!(
        err.contains("Internal error occurred: failed calling webhook \"garbage-fail.webhooks.keelson.io\": received invalid webhook response: the response is not a JSON AdmissionReview"),
        "{err}"
    );
    assert!(!exists(c, &ns, "garbage-fail"));

    let out = create("uid-fail");
    let err = stderr_of(&out);
    assert!(!out.status.success());
    assert!(
        err.contains(r#"received invalid webhook response: expected response.uid="#)
            && err.contains(r#"got "not-the-request-uid""#),
        "{err}"
    );
    assert!(!exists(c, &ns, "uid-fail"));
}

#[test]
fn namespace_and_object_selectors_skip_webhooks() {
    let c = &*CLUSTER;
    let ns = namespace(c, "webhook-selectors");
    let server = Server::start();
    let mut hooks = Hooks::new(c, &ns);
    // Denies every `deny-*` ConfigMap in namespaces labelled `webhooks: on`, and in
    // this namespace those labelled `checked: yes`.
    hooks.create(
        "ValidatingWebhookConfiguration",
        "e2e-selectors",
        vec![
            hook(&server, &ns, "probe.webhooks.keelson.io", "/allow", json!({})),
            hook(
                &server,
                &ns,
                "by-namespace.webhooks.keelson.io",
                "/deny",
                json!({"namespaceSelector": {"matchLabels": {"webhooks": "on", "kubernetes.io/metadata.name": ns}}}),
            ),
            hook(
                &server,
                &ns,
                "by-object.webhooks.keelson.io",
                "/deny",
                json!({"objectSelector": {"matchLabels": {"checked": "yes"}}}),
            ),
        ],
    );
    hooks.wait_active(&server);

    // Neither selector matches: allowed, and no deny hook was asked.
    ok(c.kubectl_with(
        "kubectl",
        &["create", "-n", &ns, "-f", "-"],
        Some(&configmap("deny-unchecked", json!({}))),
    ));
    let seen = server.seen_for("deny-unchecked");
    assert!(seen.iter().all(|(p, _)| p == "/allow"), "{seen:?}");

    // The object selector matches.
    let err = refused(
        c,
        &["create", "-n", &ns, "-f", "-"],
        Some(&configmap("deny-checked", json!({"checked": "yes"}))),
    );
    assert!(
        err.contains(r#"admission webhook "by-object.webhooks.keelson.io" denied the request"#),
        "{err}"
    );

    // The namespace selector matches once the namespace has the label.
    ok(c.kubectl(&["label", "namespace", &ns, "webhooks=on"]));
    let err = refused(
        c,
        &["create", "-n", &ns, "-f", "-"],
        Some(&configmap("deny-labelled-ns", json!({}))),
    );
    assert!(
        err.contains(r#"admission webhook "by-namespace.webhooks.keelson.io" denied the request"#),
        "{err}"
    );
    assert!(!exists(c, &ns, "deny-labelled-ns"));
}

#[test]
fn invalid_configurations_are_refused() {
    let c = &*CLUSTER;
    let bad = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "e2e-invalid"},
        "webhooks": [{"name": "bad", "admissionReviewVersions": ["v1"], "sideEffects": "Some",
            "timeoutSeconds": 60, "clientConfig": {"url": "http://127.0.0.1/x"}}],
    });
    let err = refused(c, &["create", "-f", "-"], Some(&bad.to_string()));
    for msg in [
        r#"webhooks[0].name: Invalid value: "bad": should be a domain with at least three segments separated by dots"#,
        r#"webhooks[0].sideEffects: Unsupported value: "Some": supported values: "None", "NoneOnDryRun""#,
        "webhooks[0].timeoutSeconds: Invalid value: 60: the timeout value must be between 1 and 30 seconds",
        r#"webhooks[0].clientConfig.url: Invalid value: "http://127.0.0.1/x": 'https' is the only allowed URL scheme"#,
    ] {
        assert!(err.contains(msg), "missing {msg:?} in {err}");
    }
    assert!(!c
        .kubectl(&["get", "validatingwebhookconfiguration", "e2e-invalid"])
        .status
        .success());
}

#[test]
fn mutating_webhooks_run_in_configuration_order_and_are_reinvoked_if_needed() {
    let c = &*CLUSTER;
    let ns = namespace(c, "webhook-reinvoke");
    let server = Server::start();
    let mut hooks = Hooks::new(c, &ns);
    // `e2e-reinvoke-a` runs first (configurations in name order) and asks to be called
    // again when a later webhook changes the object; `e2e-reinvoke-b` adds a label.
    hooks.create(
        "MutatingWebhookConfiguration",
        "e2e-reinvoke-b",
        vec![hook(
            &server,
            &ns,
            "label.webhooks.keelson.io",
            "/label",
            json!({}),
        )],
    );
    hooks.create(
        "MutatingWebhookConfiguration",
        "e2e-reinvoke-a",
        vec![hook(
            &server,
            &ns,
            "first.webhooks.keelson.io",
            "/record",
            json!({"reinvocationPolicy": "IfNeeded"}),
        )],
    );
    hooks.wait_calls(&server, 2);
    ok(c.kubectl_with(
        "kubectl",
        &["create", "-n", &ns, "-f", "-"],
        Some(&configmap("again", json!({}))),
    ));
    let calls: Vec<(String, Value)> = server.seen_for("again");
    let paths: Vec<&str> = calls.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(paths, ["/record", "/label", "/record"]);
    let labels = |i: usize| calls[i].1["request"]["object"]["metadata"]["labels"].clone();
    assert!(labels(0).get("mutated-by-webhook").is_none());
    assert_eq!(
        labels(2)["mutated-by-webhook"],
        "yes",
        "the reinvocation sees the later change"
    );
}

#[test]
fn match_conditions_skip_webhooks_and_must_compile() {
    let c = &*CLUSTER;
    let ns = namespace(c, "webhook-conditions");
    let server = Server::start();
    let mut hooks = Hooks::new(c, &ns);
    let not_exempt = "!has(object.metadata.labels) || !('exempt' in object.metadata.labels)";
    let boom = "has(object.metadata.labels) && 'boom' in object.metadata.labels";
    hooks.create(
        "ValidatingWebhookConfiguration",
        "e2e-conditions",
        vec![
            hook(&server, &ns, "probe.webhooks.keelson.io", "/allow", json!({})),
            // Denies `deny-*` ConfigMaps unless they are labelled `exempt`.
            hook(
                &server,
                &ns,
                "conditions.webhooks.keelson.io",
                "/deny",
                json!({"matchConditions": [
                    {"name": "not-exempt", "expression": not_exempt},
                    {"name": "writes", "expression": "request.operation in ['CREATE', 'UPDATE'] && oldObject == null"},
                ]}),
            ),
            // For ConfigMaps labelled `boom`, a condition that fails to evaluate.
            hook(
                &server,
                &ns,
                "failing.webhooks.keelson.io",
                "/allow",
                json!({"failurePolicy": "Fail", "matchConditions": [
                    {"name": "boom", "expression": boom},
                    {"name": "missing", "expression": "object.data.missing == 'x'"},
                ]}),
            ),
        ],
    );
    hooks.wait_active(&server);

    // Excluded by the condition: allowed, and the denying hook was never called.
    ok(c.kubectl_with(
        "kubectl",
        &["create", "-n", &ns, "-f", "-"],
        Some(&configmap("deny-exempt", json!({"exempt": "yes"}))),
    ));
    let seen = server.seen_for("deny-exempt");
    assert!(
        !seen.is_empty() && seen.iter().all(|(p, _)| p == "/allow"),
        "{seen:?}"
    );

    // Not excluded: the hook is called and denies.
    let err = refused(
        c,
        &["create", "-n", &ns, "-f", "-"],
        Some(&configmap("deny-plain", json!({}))),
    );
    assert!(
        err.contains(r#"admission webhook "conditions.webhooks.keelson.io" denied the request"#),
        "{err}"
    );
    assert!(server
        .seen_for("deny-plain")
        .iter()
        .any(|(p, _)| p == "/deny"));
    assert!(!exists(c, &ns, "deny-plain"));

    // An evaluation error under failurePolicy Fail refuses the request (403).
    let err = refused(
        c,
        &["create", "-n", &ns, "-f", "-"],
        Some(&configmap("boom-1", json!({"boom": "yes"}))),
    );
    assert!(
        err.contains(r#"configmaps "boom-1" is forbidden: expression 'object.data.missing == 'x'' resulted in error: no such key: missing"#),
        "{err}"
    );
    assert!(!exists(c, &ns, "boom-1"));

    // A condition that does not compile is refused with the configuration.
    let mut bad = hook(&server, &ns, "bad.webhooks.keelson.io", "/allow", json!({}));
    bad["matchConditions"] = json!([{"name": "broken", "expression": "object.metadata.name =="}]);
    let config = json!({"apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration", "metadata": {"name": "e2e-conditions-bad"},
        "webhooks": [bad]});
    let err = refused(c, &["create", "-f", "-"], Some(&config.to_string()));
    assert!(
        err.contains(r#"The ValidatingWebhookConfiguration "e2e-conditions-bad" is invalid"#)
            && err.contains(r#"webhooks[0].matchConditions[0].expression: Invalid value: "object.metadata.name ==": compilation failed: ERROR: <input>:1:24: Syntax error"#),
        "{err}"
    );
    assert!(!c
        .kubectl(&[
            "get",
            "validatingwebhookconfiguration",
            "e2e-conditions-bad"
        ])
        .status
        .success());
}
