//! The documents against the real kubectl: a loopback HTTP server serves discovery,
//! `/openapi/v2` (protobuf), `/openapi/v3` and a tiny object store, and each kubectl
//! found (`$KUBECTL`, or `/usr/lib/google-cloud-sdk/bin/kubectl.1.*`, or `kubectl` on
//! `PATH`) runs explain (v3 and v2), create, apply and edit against it. Without any
//! kubectl the test says so and passes.

use crate::common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keelson_openapi::{OpenApi, V2_PROTOBUF_CONTENT_TYPE};
use keelson_resources::{ResourceType, Subresource};
use serde_json::{json, Value};

/// A request the server saw.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    target: String,
    content_type: String,
    body: String,
}

struct Server {
    docs: OpenApi,
    resources: Vec<&'static ResourceType>,
    objects: Mutex<HashMap<String, Value>>,
    seen: Mutex<Vec<Seen>>,
}

fn status(code: u16, reason: &str, message: &str) -> (u16, &'static str, Vec<u8>) {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code,
    });
    (code, "application/json", body.to_string().into_bytes())
}

fn ok_json(code: u16, v: &Value) -> (u16, &'static str, Vec<u8>) {
    (code, "application/json", v.to_string().into_bytes())
}

impl Server {
    fn resource_list(&self, group: &str, version: &str) -> Value {
        let mut resources = Vec::new();
        for r in self
            .resources
            .iter()
            .filter(|r| r.group == group && r.version == version)
        {
            resources.push(json!({
                "name": r.plural, "singularName": r.singular, "namespaced": r.namespaced, "kind": r.kind,
                "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
                "shortNames": r.short_names,
            }));
            for sub in r.subresources {
                let kind = match sub {
                    Subresource::Scale => "Scale",
                    Subresource::Eviction => "Eviction",
                    _ => r.kind,
                };
                resources.push(json!({
                    "name": format!("{}/{}", r.plural, sub.path()), "singularName": "",
                    "namespaced": r.namespaced, "kind": kind, "verbs": ["get", "patch", "update"],
                }));
            }
        }
        let gv = if group.is_empty() {
            version.to_string()
        } else {
            format!("{group}/{version}")
        };
        json!({ "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources })
    }

    fn handle(
        &self,
        method: &str,
        target: &str,
        headers: &HashMap<String, String>,
        body: &[u8],
    ) -> (u16, &'static str, Vec<u8>) {
        let (path, _query) = target.split_once('?').unwrap_or((target, ""));
        self.seen.lock().unwrap().push(Seen {
            method: method.to_string(),
            target: target.to_string(),
            content_type: headers.get("content-type").cloned().unwrap_or_default(),
            body: String::from_utf8_lossy(body).into_owned(),
        });
        let accept = headers.get("accept").cloned().unwrap_or_default();
        match (method, path) {
            ("GET", "/version") => ok_json(
                200,
                &json!({ "major": "1", "minor": "33", "gitVersion": "v1.33.0", "platform": "linux/amd64" }),
            ),
            ("GET", "/api") => ok_json(
                200,
                &json!({ "kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{ "clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1" }] }),
            ),
            ("GET", "/apis") => {
                let mut groups: Vec<Value> = Vec::new();
                let mut names: Vec<&str> = self
                    .resources
                    .iter()
                    .map(|r| r.group)
                    .filter(|g| !g.is_empty())
                    .collect();
                names.dedup();
                names.sort();
                names.dedup();
                for g in names {
                    let mut versions: Vec<&str> = self
                        .resources
                        .iter()
                        .filter(|r| r.group == g)
                        .map(|r| r.version)
                        .collect();
                    versions.sort();
                    versions.dedup();
                    let vs: Vec<Value> = versions
                        .iter()
                        .map(|v| json!({ "groupVersion": format!("{g}/{v}"), "version": v }))
                        .collect();
                    groups.push(json!({ "name": g, "versions": vs, "preferredVersion": vs[0] }));
                }
                ok_json(
                    200,
                    &json!({ "kind": "APIGroupList", "apiVersion": "v1", "groups": groups }),
                )
            }
            ("GET", "/openapi/v2") => match self.docs.v2_for_accept(&accept) {
                Some((content_type, body)) => {
                    assert_eq!(
                        content_type, V2_PROTOBUF_CONTENT_TYPE,
                        "kubectl asks for protobuf"
                    );
                    (200, content_type, body.to_vec())
                }
                None => status(406, "NotAcceptable", "not acceptable"),
            },
            ("GET", "/openapi/v3") => (200, "application/json", self.docs.v3_index_json().to_vec()),
            ("GET", p) if p.starts_with("/openapi/v3/") => {
                match self.docs.v3_group_version_json(&p["/openapi/v3/".len()..]) {
                    Some(doc) => (200, "application/json", doc.to_vec()),
                    None => status(404, "NotFound", "no such document"),
                }
            }
            ("GET", p) if p.starts_with("/api/") || p.starts_with("/apis/") => {
                let parts: Vec<&str> = p.trim_matches('/').split('/').collect();
                match parts.as_slice() {
                    ["api", v] => ok_json(200, &self.resource_list("", v)),
                    ["apis", g, v] => ok_json(200, &self.resource_list(g, v)),
                    _ => match self.objects.lock().unwrap().get(p) {
                        Some(obj) => ok_json(200, obj),
                        None => status(404, "NotFound", "not found"),
                    },
                }
            }
            ("POST", p) => {
                let mut obj: Value = match serde_json::from_slice(body) {
                    Ok(v) => v,
                    Err(e) => return status(400, "BadRequest", &e.to_string()),
                };
                let name = obj["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                obj["metadata"]["resourceVersion"] = json!("1");
                obj["metadata"]["uid"] = json!("00000000-0000-0000-0000-000000000001");
                obj["metadata"]["creationTimestamp"] = json!("2024-01-01T00:00:00Z");
                self.objects
                    .lock()
                    .unwrap()
                    .insert(format!("{p}/{name}"), obj.clone());
                ok_json(201, &obj)
            }
            ("PATCH" | "PUT", p) => match self.objects.lock().unwrap().get(p) {
                Some(obj) => ok_json(200, obj),
                None => status(404, "NotFound", "not found"),
            },
            _ => status(
                404,
                "NotFound",
                "the server could not find the requested resource",
            ),
        }
    }
}

fn serve_one(server: &Server, stream: TcpStream) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut out = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let mut parts = line.split_whitespace();
        let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
            return Ok(());
        };
        let (method, target) = (method.to_string(), target.to_string());
        let mut headers = HashMap::new();
        loop {
            let mut h = String::new();
            reader.read_line(&mut h)?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
        let len: usize = headers
            .get("content-length")
            .and_then(|l| l.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        reader.read_exact(&mut body)?;
        let (code, content_type, payload) = server.handle(&method, &target, &headers, &body);
        write!(
            out,
            "HTTP/1.1 {code} X\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
            payload.len()
        )?;
        out.write_all(&payload)?;
        out.flush()?;
    }
}

fn start(server: Arc<Server>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let server = server.clone();
            std::thread::spawn(move || {
                let _ = serve_one(&server, stream);
            });
        }
    });
    port
}

fn kubectls() -> Vec<PathBuf> {
    if let Ok(k) = std::env::var("KUBECTL") {
        return vec![PathBuf::from(k)];
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/google-cloud-sdk/bin")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("kubectl.1."))
        })
        .collect();
    found.sort();
    if found.is_empty() {
        if let Some(p) = std::env::var_os("PATH")
            .into_iter()
            .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .map(|d| d.join("kubectl"))
            .find(|p| p.is_file())
        {
            found.push(p);
        }
    }
    found
}

struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

fn kubectl(bin: &Path, port: u16, home: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let out = Command::new(bin)
        .arg(format!("--server=http://127.0.0.1:{port}"))
        .arg(format!("--cache-dir={}", home.join("cache").display()))
        .arg("--request-timeout=30s")
        .args(args)
        .env("HOME", home)
        .env("KUBECONFIG", home.join("no-kubeconfig"))
        .envs(env.iter().copied())
        .output()
        .expect("kubectl runs");
    Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

const POD_V1: &str = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web","namespace":"default"},
"spec":{"containers":[{"name":"app","image":"nginx:1","env":[{"name":"A","value":"1"},{"name":"B","value":"2"}]},
{"name":"side","image":"busybox"}]}}"#;
const POD_V2: &str = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web","namespace":"default"},
"spec":{"containers":[{"name":"app","image":"nginx:2","env":[{"name":"A","value":"1"}]},
{"name":"side","image":"busybox"}]}}"#;
const DEPLOY_V1: &str = r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","namespace":"default"},
"spec":{"selector":{"matchLabels":{"app":"web"}},"strategy":{"type":"RollingUpdate","rollingUpdate":{"maxSurge":1}},
"template":{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[{"name":"app","image":"nginx:1"}]}}}}"#;
const DEPLOY_V2: &str = r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","namespace":"default"},
"spec":{"selector":{"matchLabels":{"app":"web"}},"strategy":{"type":"Recreate"},
"template":{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[{"name":"app","image":"nginx:1"}]}}}}"#;
const CM: &str = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cm1","namespace":"default"},"data":{"k":"bar"}}"#;

#[test]
fn real_kubectl() {
    let bins = kubectls();
    if bins.is_empty() {
        eprintln!("no kubectl found: skipped");
        return;
    }
    let resources = common::resources();
    for bin in bins {
        let server = Arc::new(Server {
            docs: OpenApi::build(&resources),
            resources: resources.clone(),
            objects: Mutex::new(HashMap::new()),
            seen: Mutex::new(Vec::new()),
        });
        let port = start(server.clone());
        let home = std::env::temp_dir().join(format!(
            "keelson-openapi-kubectl-{}-{port}",
            std::process::id()
        ));
        std::fs::create_dir_all(&home).unwrap();
        let name = bin.display().to_string();
        let show = std::env::var_os("KEELSON_OPENAPI_SHOW").is_some();
        let run = |args: &[&str]| {
            let r = kubectl(&bin, port, &home, args, &[]);
            if show {
                eprintln!("$ kubectl {}\n{}{}", args.join(" "), r.stdout, r.stderr);
            }
            r
        };

        // explain through /openapi/v3 (the default since 1.27).
        let r = run(&["explain", "pods.spec.containers"]);
        assert!(r.ok, "{name} explain: {}", r.stderr);
        assert!(
            r.stdout.contains("containers") && r.stdout.contains("image"),
            "{name}: {}",
            r.stdout
        );
        assert!(r.stdout.contains("Container"), "{name}: {}", r.stdout);
        let r = run(&[
            "explain",
            "deployments.spec.template.spec.containers.ports.containerPort",
        ]);
        assert!(
            r.ok && r.stdout.contains("integer"),
            "{name}: {} {}",
            r.stdout,
            r.stderr
        );
        let r = run(&["explain", "widgets"]);
        assert!(
            r.ok && r.stdout.contains("Widget"),
            "{name}: {} {}",
            r.stdout,
            r.stderr
        );
        let r = run(&["explain", "configmaps", "--recursive"]);
        assert!(
            r.ok && r.stdout.contains("binaryData"),
            "{name}: {} {}",
            r.stdout,
            r.stderr
        );

        // explain through the protobuf /openapi/v2.
        let r = run(&[
            "explain",
            "deployments.spec",
            "--output",
            "plaintext-openapiv2",
        ]);
        assert!(r.ok, "{name} explain v2: {}", r.stderr);
        assert!(
            r.stdout.contains("replicas") && r.stdout.contains("DeploymentSpec"),
            "{name}: {}",
            r.stdout
        );

        // create: kubectl must find fieldValidation and leave validation to the server.
        let file = home.join("cm.json");
        std::fs::write(&file, CM).unwrap();
        let r = run(&["create", "-f", file.to_str().unwrap()]);
        assert!(r.ok, "{name} create: {}", r.stderr);
        let post = server
            .seen
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|s| s.method == "POST")
            .cloned()
            .expect("a POST");
        assert!(
            post.target.contains("fieldValidation=Strict"),
            "{name}: {}",
            post.target
        );

        // apply twice: create, then a strategic merge patch computed from the documents.
        let file = home.join("pod.json");
        std::fs::write(&file, POD_V1).unwrap();
        let r = run(&["apply", "-f", file.to_str().unwrap()]);
        assert!(r.ok, "{name} apply: {}", r.stderr);
        std::fs::write(&file, POD_V2).unwrap();
        let r = run(&["apply", "-f", file.to_str().unwrap()]);
        assert!(r.ok, "{name} apply again: {}", r.stderr);
        assert!(
            !r.stderr.contains("error calculating patch"),
            "{name}: {}",
            r.stderr
        );
        let patch = server
            .seen
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|s| s.method == "PATCH")
            .cloned()
            .expect("a PATCH");
        assert_eq!(
            patch.content_type, "application/strategic-merge-patch+json",
            "{name}"
        );
        assert!(
            patch.target.contains("fieldValidation=Strict"),
            "{name}: {}",
            patch.target
        );
        // Merged by name: the patch names the changed container and deletes one env entry.
        assert!(
            patch.body.contains("$setElementOrder/containers"),
            "{name}: {}",
            patch.body
        );
        assert!(
            patch.body.contains("\"$patch\":\"delete\""),
            "{name}: {}",
            patch.body
        );

        // A Deployment's strategy type change clears the old type's fields ($retainKeys).
        let file = home.join("deploy.json");
        std::fs::write(&file, DEPLOY_V1).unwrap();
        let r = run(&["apply", "-f", file.to_str().unwrap()]);
        assert!(r.ok, "{name} apply deployment: {}", r.stderr);
        std::fs::write(&file, DEPLOY_V2).unwrap();
        let r = run(&["apply", "-f", file.to_str().unwrap()]);
        assert!(r.ok, "{name} apply deployment again: {}", r.stderr);
        let patch = server
            .seen
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|s| s.method == "PATCH")
            .cloned()
            .expect("a PATCH");
        assert!(
            patch.target.contains("/deployments/web"),
            "{name}: {}",
            patch.target
        );
        assert!(patch.body.contains("$retainKeys"), "{name}: {}", patch.body);

        // edit: the editor changes the file, kubectl patches.
        let before = server.seen.lock().unwrap().len();
        let r = kubectl(
            &bin,
            port,
            &home,
            &["edit", "configmap", "cm1", "-n", "default"],
            &[("KUBE_EDITOR", "sed -i s/bar/baz/")],
        );
        assert!(r.ok, "{name} edit: {} {}", r.stdout, r.stderr);
        let edited = server.seen.lock().unwrap()[before..]
            .iter()
            .any(|s| s.method == "PATCH" && s.body.contains("baz"));
        assert!(edited, "{name}: no PATCH from edit");

        let mut fetched: Vec<String> = server
            .seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.target.starts_with("/openapi"))
            .map(|s| s.target.split('?').next().unwrap_or_default().to_string())
            .collect();
        fetched.sort();
        fetched.dedup();
        eprintln!("{name}: explain (v3, v2), create, apply, edit OK; read {fetched:?}");
        let _ = std::fs::remove_dir_all(&home);
    }
}
