//! Shared pieces of the e2e tests: one cluster per test binary (each test works in its
//! own namespace), and kubectl helpers.

use keelson_testkit::{ok, Cluster};
use serde_json::Value;
use std::sync::LazyLock;

/// The cluster shared by the tests of one test binary. Its processes are stopped by pid
/// when the test binary exits.
pub static CLUSTER: LazyLock<Cluster> =
    LazyLock::new(|| Cluster::start().expect("starting a test cluster"));

/// kubectl binaries to exercise: the default one plus the oldest and newest installed.
pub fn kubectl_versions() -> Vec<String> {
    let mut v = vec!["kubectl".to_string()];
    for minor in ["1.27", "1.33"] {
        let p = format!("/usr/lib/google-cloud-sdk/bin/kubectl.{minor}");
        if std::path::Path::new(&p).exists() {
            v.push(p);
        }
    }
    v
}

/// Create a namespace for one test and return its name.
pub fn namespace(c: &Cluster, name: &str) -> String {
    // `kubectl create namespace` sends a protobuf body.
    ok(c.kubectl(&["create", "namespace", name]));
    name.to_string()
}

/// Parse kubectl's JSON output.
pub fn json(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

/// Apply a manifest from a string with the given kubectl.
pub fn apply(c: &Cluster, kubectl: &str, ns: &str, manifest: &str) -> String {
    ok(c.kubectl_with(kubectl, &["apply", "-n", ns, "-f", "-"], Some(manifest)))
}
