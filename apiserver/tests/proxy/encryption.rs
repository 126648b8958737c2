//! Secrets at rest: a real apiserver started with `--encryption-provider-config`, real
//! etcd read back with the real `etcdctl`, the real kubectl, and the test KMS v2 plugin
//! on a unix socket. Each test has its own cluster; a config change is a rewrite of
//! the file and an apiserver restart, as an operator does it.

use crate::support::RT;
use base64::Engine;
use keelson_apiserver::encryption::kms_plugin::TestKms;
use keelson_testkit::{fails, ok, ApiserverOptions, Cluster};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// A cluster whose apiserver reads its encryption config from `config`.
struct Env {
    cluster: Cluster,
    config: PathBuf,
    /// Holds `config` (and the KMS socket); outlives the cluster's apiserver.
    dir: tempfile::TempDir,
}

impl Env {
    fn start(config: &str) -> Env {
        let dir = tempfile::Builder::new()
            .prefix("keelson-encryption-")
            .tempdir()
            .expect("tempdir");
        let path = dir.path().join("encryption.yaml");
        std::fs::write(&path, config).expect("write config");
        let cluster = Cluster::start_with(
            1,
            ApiserverOptions {
                extra_args: vec![format!("--encryption-provider-config={}", path.display())],
                ..Default::default()
            },
        )
        .expect("cluster");
        Env {
            cluster,
            config: path,
            dir,
        }
    }

    /// Write a new config and restart the apiserver on it (a new port; the kubeconfig
    /// follows).
    fn restart_with(&mut self, config: &str) -> anyhow::Result<()> {
        std::fs::write(&self.config, config)?;
        let mut old = self.cluster.apiservers.remove(0);
        old.proc_.terminate(Duration::from_secs(10));
        self.cluster.add_apiserver()?;
        let kubeconfig = self.cluster.kubeconfig.clone();
        self.cluster
            .write_kubeconfig(&kubeconfig, &self.cluster.server_url())
    }

    fn kubectl(&self, args: &[&str]) -> std::process::Output {
        self.cluster.kubectl(args)
    }

    fn secret(&self, name: &str, password: &str) {
        ok(self.kubectl(&[
            "create",
            "secret",
            "generic",
            name,
            &format!("--from-literal=password={password}"),
        ]));
    }

    /// The password of a Secret, as the API returns it.
    fn password(&self, name: &str) -> String {
        let b64 = ok(self.kubectl(&["get", "secret", name, "-o", "jsonpath={.data.password}"]));
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .expect("base64"),
        )
        .expect("utf-8")
    }

    /// The raw value at `key`, as `ETCDCTL_API=3 etcdctl get` prints it.
    fn etcd(&self, key: &str) -> Vec<u8> {
        let out = Command::new(std::env::var("KEELSON_ETCDCTL").unwrap_or("etcdctl".into()))
            .env("ETCDCTL_API", "3")
            .args([
                "--endpoints",
                &self.cluster.etcd.url,
                "get",
                key,
                "--print-value-only",
            ])
            .output()
            .expect("etcdctl (apt-get install etcd-client)");
        assert!(
            out.status.success(),
            "etcdctl: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut v = out.stdout;
        // etcdctl ends the value with a newline.
        assert_eq!(v.pop(), Some(b'\n'), "no value at {key}");
        v
    }

    /// Put raw bytes at `key` with etcdctl (the value from stdin, binary-safe).
    fn etcd_put(&self, key: &str, value: &[u8]) {
        use std::io::Write;
        let mut child = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &self.cluster.etcd.url, "put", key])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("etcdctl");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(value)
            .expect("write");
        assert!(child.wait().expect("etcdctl").success());
    }
}

fn key(byte: u8) -> String {
    base64::engine::general_purpose::STANDARD.encode([byte; 32])
}

/// An EncryptionConfiguration with one entry.
fn config(resources: &[&str], providers: &[String]) -> String {
    format!(
        "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [{}]\n    providers:\n{}",
        resources.join(", "),
        providers.concat()
    )
}

fn keyed(kind: &str, keys: &[(&str, u8)]) -> String {
    let keys: Vec<String> = keys
        .iter()
        .map(|(name, byte)| format!("{{name: {name}, secret: {}}}", key(*byte)))
        .collect();
    format!("      - {kind}: {{keys: [{}]}}\n", keys.join(", "))
}

fn identity() -> String {
    "      - identity: {}\n".into()
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// Asserts the stored value carries `prefix` and none of the object's plaintext.
fn assert_encrypted(stored: &[u8], prefix: &str, plaintext: &[&str]) {
    assert!(
        stored.starts_with(prefix.as_bytes()),
        "want prefix {prefix}, etcd has {:?}",
        String::from_utf8_lossy(&stored[..stored.len().min(64)])
    );
    for p in plaintext {
        assert!(!contains(stored, p), "{p:?} in plaintext at rest");
    }
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[test]
fn secrets_encrypted_over_plaintext_then_rotated_and_a_missing_key_is_an_error() {
    // Before encryption: identity only, Secrets in plaintext.
    let mut env = Env::start(&config(&["secrets"], &[identity()]));
    env.secret("before", "hunter2-before");
    let stored = env.etcd("/registry/secrets/default/before");
    assert!(
        contains(&stored, &b64("hunter2-before")),
        "plaintext before encryption"
    );

    // Turn aescbc on (identity second, for what is already stored).
    let on = config(&["secrets"], &[keyed("aescbc", &[("key1", 1)]), identity()]);
    env.restart_with(&on).expect("restart with aescbc");
    env.secret("after", "hunter2-after");
    assert_encrypted(
        &env.etcd("/registry/secrets/default/after"),
        "k8s:enc:aescbc:v1:key1:",
        &[&b64("hunter2-after"), "Secret"],
    );
    assert_eq!(env.password("after"), "hunter2-after");
    assert_eq!(
        env.password("before"),
        "hunter2-before",
        "plaintext still reads"
    );
    let listed = ok(env.kubectl(&["get", "secrets", "-o", "name"]));
    assert!(
        listed.contains("secret/before") && listed.contains("secret/after"),
        "{listed}"
    );

    // A second apiserver gets the ciphertext from etcd's watch and decrypts it: its
    // watches see the Secret's data, from its watch cache (a resourceVersion after it
    // started) and from etcd directly (one from before).
    let list_rv = |env: &Env, kubeconfig: &str| {
        ok(env.kubectl(&[
            "--kubeconfig",
            kubeconfig,
            "get",
            "secrets",
            "-o",
            "jsonpath={.metadata.resourceVersion}",
        ]))
    };
    let first = env.cluster.kubeconfig.to_str().expect("path").to_string();
    let old_rv = list_rv(&env, &first);
    let second = env.cluster.add_apiserver().expect("second apiserver");
    let kubeconfig2 = env.dir.path().join("second.kubeconfig");
    env.cluster
        .write_kubeconfig(
            &kubeconfig2,
            &format!("https://127.0.0.1:{}", env.cluster.apiservers[second].port),
        )
        .expect("kubeconfig");
    let kubeconfig2 = kubeconfig2.to_str().expect("path").to_string();
    let cached_rv = list_rv(&env, &kubeconfig2);
    env.secret("watched", "hunter2-watched");
    for rv in [cached_rv, old_rv] {
        let events = ok(env.kubectl(&[
            "--kubeconfig",
            &kubeconfig2,
            "get",
            "--raw",
            &format!(
                "/api/v1/namespaces/default/secrets?watch=1&resourceVersion={}&timeoutSeconds=2",
                rv.trim()
            ),
        ]));
        assert!(
            events.contains("\"ADDED\"") && events.contains(&b64("hunter2-watched")),
            "from {rv}: {events}"
        );
    }
    drop(env.cluster.apiservers.remove(second));

    // Rotation: key2 first, key1 still read; replacing every Secret re-encrypts it.
    // The replaced objects are unchanged (a no-op update): only the stale value (read
    // with another key, or plaintext) makes the registry write them again.
    let rotate = |env: &mut Env, keys: &[(&str, u8)], want: &str| {
        env.restart_with(&config(&["secrets"], &[keyed("aescbc", keys), identity()]))
            .expect("restart");
        let all = ok(env.kubectl(&["get", "secrets", "-A", "-o", "json"]));
        ok(env
            .cluster
            .kubectl_with("kubectl", &["replace", "-f", "-"], Some(&all)));
        for name in ["before", "after", "watched"] {
            assert_encrypted(
                &env.etcd(&format!("/registry/secrets/default/{name}")),
                want,
                &[&b64(&format!("hunter2-{name}"))],
            );
            assert_eq!(env.password(name), format!("hunter2-{name}"));
        }
    };
    rotate(
        &mut env,
        &[("key2", 2), ("key1", 1)],
        "k8s:enc:aescbc:v1:key2:",
    );
    // Once more, checking the revision: the stale value is written again.
    let rv_before = ok(env.kubectl(&[
        "get",
        "secret",
        "after",
        "-o",
        "jsonpath={.metadata.resourceVersion}",
    ]));
    rotate(
        &mut env,
        &[("key3", 3), ("key2", 2)],
        "k8s:enc:aescbc:v1:key3:",
    );
    let rv_after = ok(env.kubectl(&[
        "get",
        "secret",
        "after",
        "-o",
        "jsonpath={.metadata.resourceVersion}",
    ]));
    assert_ne!(rv_before, rv_after, "a stale value is written again");
    // With nothing stale, the same replace is a no-op again (no new revision).
    let all = ok(env.kubectl(&["get", "secret", "after", "-o", "json"]));
    ok(env
        .cluster
        .kubectl_with("kubectl", &["replace", "-f", "-"], Some(&all)));
    let rv_again = ok(env.kubectl(&[
        "get",
        "secret",
        "after",
        "-o",
        "jsonpath={.metadata.resourceVersion}",
    ]));
    assert_eq!(rv_after, rv_again);

    // Drop key3: what it wrote is a clear 500 naming the key, on get and on list, and
    // the apiserver goes on serving everything else.
    env.restart_with(&config(&["secrets"], &[keyed("aescbc", &[("key4", 4)])]))
        .expect("restart without key3");
    let err = fails(env.kubectl(&["get", "secret", "after"]));
    assert!(
        err.contains("Error from server (InternalError)")
            && err.contains("unable to transform key \"/registry/secrets/default/after\"")
            && err.contains("no matching key was found for the provided AES transformer")
            && err.contains("key3"),
        "{err}"
    );
    let err = fails(env.kubectl(&["get", "secrets"]));
    assert!(
        err.contains("InternalError") && err.contains("unable to transform key"),
        "{err}"
    );
    ok(env.kubectl(&["get", "namespaces"]));
    env.secret("fresh", "hunter2-fresh");
    assert_eq!(env.password("fresh"), "hunter2-fresh");

    // Without identity, a plaintext value has no provider: "no matching prefix found".
    env.etcd_put(
        "/registry/secrets/default/planted",
        br#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"planted","namespace":"default"}}"#,
    );
    let err = fails(env.kubectl(&["get", "secret", "planted"]));
    assert!(err.contains("no matching prefix found"), "{err}");

    // A config kube-apiserver would refuse stops the apiserver with its message.
    let bad = config(
        &["secrets"],
        &["      - aescbc: {keys: [{name: k, secret: c2hvcnQ=}]}\n".into()],
    );
    let err = env.restart_with(&bad).expect_err("a 5-byte key is refused");
    let log = format!("{err:#}");
    assert!(
        log.contains("secret is not of the expected length, got 5, expected one of [16 24 32]"),
        "{log}"
    );
}

#[test]
fn aesgcm_secretbox_and_kms_v2_write_their_prefixes_and_configmaps_when_listed() {
    // aesgcm for Secrets only.
    let mut env = Env::start(&config(
        &["secrets"],
        &[keyed("aesgcm", &[("gcm1", 5)]), identity()],
    ));
    env.secret("gcm", "hunter2-gcm");
    ok(env.kubectl(&[
        "create",
        "configmap",
        "plain",
        "--from-literal=k=visible-value",
    ]));
    let gcm = env.etcd("/registry/secrets/default/gcm");
    assert_encrypted(
        &gcm,
        "k8s:enc:aesgcm:v1:gcm1:",
        &[&b64("hunter2-gcm"), "Secret"],
    );
    assert_eq!(env.password("gcm"), "hunter2-gcm");
    assert!(
        contains(
            &env.etcd("/registry/configmaps/default/plain"),
            "visible-value"
        ),
        "ConfigMaps are not listed: stored as they are"
    );
    // The etcd key is authenticated: the same ciphertext under another name does
    // not decrypt (no swapping Secrets behind the apiserver's back).
    env.etcd_put("/registry/secrets/default/copied", &gcm);
    let err = fails(env.kubectl(&["get", "secret", "copied"]));
    assert!(
        err.contains(
            "failed to decrypt with aesgcm key \"gcm1\": cipher: message authentication failed"
        ),
        "{err}"
    );

    // secretbox for Secrets and ConfigMaps; aesgcm still reads.
    let boxed = config(
        &["secrets", "configmaps"],
        &[
            keyed("secretbox", &[("box1", 6)]),
            keyed("aesgcm", &[("gcm1", 5)]),
            identity(),
        ],
    );
    env.restart_with(&boxed).expect("restart with secretbox");
    env.secret("box", "hunter2-box");
    ok(env.kubectl(&[
        "create",
        "configmap",
        "listed",
        "--from-literal=k=hidden-value",
    ]));
    assert_encrypted(
        &env.etcd("/registry/secrets/default/box"),
        "k8s:enc:secretbox:v1:box1:",
        &[&b64("hunter2-box")],
    );
    assert_encrypted(
        &env.etcd("/registry/configmaps/default/listed"),
        "k8s:enc:secretbox:v1:box1:",
        &["hidden-value", "ConfigMap"],
    );
    let value = ok(env.kubectl(&["get", "configmap", "listed", "-o", "jsonpath={.data.k}"]));
    assert_eq!(value, "hidden-value");
    assert_eq!(env.password("gcm"), "hunter2-gcm");
    let listed = ok(env.kubectl(&["get", "configmaps", "-o", "name"]));
    assert!(
        listed.contains("configmap/listed") && listed.contains("configmap/plain"),
        "{listed}"
    );

    // KMS v2 through the test plugin on a unix socket.
    let socket = env.dir.path().join("kms.sock");
    let plugin = TestKms::new("kek-1");
    RT.block_on(plugin.clone().serve(&socket))
        .expect("KMS plugin");
    let kms = config(
        &["secrets"],
        &[
            format!(
                "      - kms: {{apiVersion: v2, name: testkms, endpoint: 'unix://{}', timeout: 3s}}\n",
                socket.display()
            ),
            keyed("secretbox", &[("box1", 6)]),
            keyed("aesgcm", &[("gcm1", 5)]),
            identity(),
        ],
    );
    env.restart_with(&kms).expect("restart with kms");
    assert_eq!(plugin.encrypt_calls(), 1, "one seed per apiserver start");
    env.secret("kms", "hunter2-kms");
    env.secret("kms2", "hunter2-kms2");
    assert_eq!(plugin.encrypt_calls(), 1, "no plugin call per write");
    let stored = env.etcd("/registry/secrets/default/kms");
    assert_encrypted(
        &stored,
        "k8s:enc:kms:v2:testkms:",
        &[&b64("hunter2-kms"), "Secret"],
    );
    // After the prefix: the EncryptedObject protobuf, with the plugin's key id.
    assert!(
        contains(&stored, "kek-1"),
        "the key id is stored in the envelope"
    );
    assert_eq!(env.password("kms"), "hunter2-kms");
    assert_eq!(env.password("box"), "hunter2-box");

    // Restarted, the apiserver has a new seed and asks the plugin for the old one once.
    env.restart_with(&kms).expect("restart");
    assert_eq!(env.password("kms"), "hunter2-kms");
    assert_eq!(env.password("kms2"), "hunter2-kms2");
    assert_eq!(
        plugin.decrypt_calls(),
        1,
        "the old seed is decrypted once and cached"
    );
    assert_eq!(plugin.encrypt_calls(), 2);
}
