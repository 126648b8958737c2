//! Images from real registries on the two-node cluster: Debian's docker-registry on the
//! test bridge's address (the nodes' containerd runs in their namespaces and reaches
//! the host side there), filled with skopeo from the project's archives. Pulls with
//! Pulling/Pulled events and an `imageID` naming the pushed digest, an `imagePullSecrets`
//! login, a refused anonymous pull ending in `ErrImagePull` then `ImagePullBackOff`,
//! and `docker.io` served by the local registry through a mirror in the registries
//! configuration (rendered to each node's containerd hosts directory, which containerd
//! reads at every pull).

use keelson_e2e::{DOCKER_IO, NODE_CLUSTER};
use keelson_testkit::ok;
use keelson_testkit::registry::TestRegistry;
use serde_json::Value;

fn kubectl(args: &[&str]) -> String {
    ok(NODE_CLUSTER.kubectl(args))
}

fn apply(ns: &str, manifest: &str) {
    NODE_CLUSTER.apply(ns, manifest)
}

fn wait_pod(
    ns: &str,
    name: &str,
    what: &str,
    registries: &[&TestRegistry],
    pred: impl Fn(&Value) -> bool,
) -> Value {
    NODE_CLUSTER.wait_pod_or(ns, name, what, pred, || {
        let logs: Vec<String> = registries.iter().map(|r| r.log()).collect();
        format!("registry logs:\n{}", logs.join("\n"))
    })
}

fn waiting_reason(pod: &Value) -> String {
    pod["status"]["containerStatuses"][0]["state"]["waiting"]["reason"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn events(ns: &str, name: &str) -> Vec<(String, String)> {
    NODE_CLUSTER.events(ns, name)
}

#[test]
fn pods_pull_from_registries_with_pull_secrets_and_mirrors() {
    let c = &*NODE_CLUSTER;
    let gateway = std::net::IpAddr::V4(c.network.gateway_ip());
    let open = TestRegistry::start(gateway, None).expect("open registry");
    let locked =
        TestRegistry::start(gateway, Some(("keelson", "pull-s3cret"))).expect("registry with auth");
    let (_, busybox) = keelson_testkit::node::image_archives().unwrap();
    let digest = open.push_archive(&busybox, "keelson/busybox:1").unwrap();
    locked.push_archive(&busybox, "private/busybox:1").unwrap();

    // Both registries speak plain HTTP (an endpoint on their own host says so), and
    // docker.io is mirrored by the shared mirror of the e2e suite.
    let (o, l) = (open.host(), locked.host());
    keelson_e2e::write_node_registries(&DOCKER_IO, &[o.clone(), l.clone()]);

    let ns = "images-registry";
    kubectl(&["create", "namespace", ns]);
    ok(c.kubectl(&[
        "create",
        "secret",
        "docker-registry",
        "regcred",
        "-n",
        ns,
        &format!("--docker-server={l}"),
        "--docker-username=keelson",
        "--docker-password=pull-s3cret",
    ]));
    apply(
        ns,
        &format!(
            r#"
apiVersion: v1
kind: Pod
metadata: {{name: pulled}}
spec:
  containers: [{{name: main, image: "{o}/keelson/busybox:1", imagePullPolicy: Always, command: ["sleep", "3600"]}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: with-secret}}
spec:
  imagePullSecrets: [{{name: regcred}}]
  containers: [{{name: main, image: "{l}/private/busybox:1", imagePullPolicy: Always, command: ["sleep", "3600"]}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: without-secret}}
spec:
  containers: [{{name: main, image: "{l}/private/busybox:1", imagePullPolicy: Always, command: ["sleep", "3600"]}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: mirrored}}
spec:
  containers: [{{name: main, image: "docker.io/library/mirrored:1", command: ["sleep", "3600"]}}]
"#
        ),
    );
    let all = [&open, &locked];

    // A plain pull: Pulling, Pulled, and the digest the registry holds.
    let pod = wait_pod(ns, "pulled", "running", &all, |p| {
        p["status"]["phase"] == "Running"
    });
    let image_id = pod["status"]["containerStatuses"][0]["imageID"]
        .as_str()
        .unwrap_or_default();
    assert!(
        image_id.ends_with(&format!("@{digest}")),
        "imageID {image_id:?}, pushed {digest}"
    );
    let ev = events(ns, "pulled");
    let image = format!("{o}/keelson/busybox:1");
    assert!(
        ev.iter().any(|(r, m)| r == "Pulling" && m.contains(&image)),
        "{ev:?}"
    );
    assert!(
        ev.iter()
            .any(|(r, m)| r == "Pulled" && m.contains("Successfully pulled") && m.contains(&image)),
        "{ev:?}"
    );

    // The pull secret's credentials reach the registry.
    let pod = wait_pod(ns, "with-secret", "running", &all, |p| {
        p["status"]["phase"] == "Running"
    });
    assert!(
        pod["status"]["containerStatuses"][0]["imageID"]
            .as_str()
            .unwrap_or_default()
            .contains("@sha256:"),
        "{pod}"
    );

    // Without them the registry refuses: ErrImagePull (brief: the Event records it),
    // then back-off.
    wait_pod(
        ns,
        "without-secret",
        "ErrImagePull or ImagePullBackOff",
        &all,
        |p| {
            matches!(
                waiting_reason(p).as_str(),
                "ErrImagePull" | "ImagePullBackOff"
            )
        },
    );
    wait_pod(ns, "without-secret", "ImagePullBackOff", &all, |p| {
        waiting_reason(p) == "ImagePullBackOff"
    });
    let ev = events(ns, "without-secret");
    assert!(
        ev.iter()
            .any(|(r, m)| r == "Failed" && m.contains("Failed to pull image")),
        "{ev:?}"
    );
    assert!(ev.iter().any(|(r, _)| r == "BackOff"), "{ev:?}");
    assert!(
        ev.iter()
            .any(|(r, m)| r == "Failed" && m == "Error: ErrImagePull"),
        "{ev:?}"
    );
    assert!(
        ev.iter()
            .any(|(r, m)| r == "Failed"
                && (m.contains("401") || m.to_lowercase().contains("authoriz"))),
        "the failure names the refused authorization: {ev:?}"
    );

    // docker.io through the mirror: no registry outside is reachable, so this pull
    // succeeds only if the mirror served it.
    let pod = wait_pod(ns, "mirrored", "running", &all, |p| {
        p["status"]["phase"] == "Running"
    });
    let image_id = pod["status"]["containerStatuses"][0]["imageID"]
        .as_str()
        .unwrap_or_default();
    // The same archive was pushed there; containerd names the first repo digest of the
    // image, which may be the other name when the node pulled that one first.
    assert!(image_id.ends_with(&format!("@{digest}")), "{image_id:?}");
    let ev = events(ns, "mirrored");
    assert!(
        ev.iter().any(|(r, m)| r == "Pulled"
            && m.contains("Successfully pulled image \"docker.io/library/mirrored:1\"")),
        "{ev:?}"
    );

    ok(c.kubectl(&["delete", "namespace", ns, "--wait=false"]));
}
