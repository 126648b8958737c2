//! Shared pieces of the e2e tests: one cluster per test binary (each test works in its
//! own namespace), and kubectl helpers.

pub mod net;

use keelson_testkit::{free_port, ok, Cluster, Proc};
use serde_json::Value;
use std::sync::LazyLock;
use std::time::Duration;

/// The cluster shared by the tests of one test binary. Its processes are stopped by pid
/// when the test binary exits.
pub static CLUSTER: LazyLock<Cluster> =
    LazyLock::new(|| Cluster::start().expect("starting a test cluster"));

/// A cluster of two real nodes (network namespaces with their own containerd and node
/// agent) shared by the tests of one test binary; torn down by pid at exit.
pub static NODE_CLUSTER: LazyLock<keelson_testkit::node_cluster::NodeCluster> =
    LazyLock::new(|| {
        keelson_testkit::node_cluster::NodeCluster::start(2)
            .expect("starting a cluster of real nodes")
    });

/// Docker Hub for the two-node cluster: a real registry on the test bridge that every
/// node's containerd mirrors `docker.io` to (no test may reach the internet). It holds
/// `library/httpd:latest` (the seed scenario's web server, see
/// `keelson_containerd::image::ImageSpec::httpd`) and `library/mirrored:1` (busybox).
pub static DOCKER_IO: LazyLock<keelson_testkit::registry::TestRegistry> = LazyLock::new(|| {
    let c = &*NODE_CLUSTER;
    let registry =
        keelson_testkit::registry::TestRegistry::start(c.network.gateway_ip().into(), None)
            .expect("starting the docker.io mirror");
    let (_, busybox) = keelson_testkit::node::image_archives().expect("test images");
    registry
        .push_archive(&busybox, "library/mirrored:1")
        .expect("pushing library/mirrored:1");
    let httpd = keelson_containerd::image::build(
        &keelson_containerd::image::ImageSpec::httpd("docker.io/library/httpd:latest"),
        std::path::Path::new(keelson_containerd::image::HOST_BUSYBOX),
    )
    .expect("building the httpd image");
    let archive = tempfile::NamedTempFile::new().expect("temp file");
    httpd.write_archive(archive.path()).expect("writing httpd");
    registry
        .push_archive(archive.path(), "library/httpd:latest")
        .expect("pushing library/httpd:latest");
    write_node_registries(&registry, &[]);
    registry
});

/// Writes the nodes' registry configuration: `docker.io` mirrored by `docker_io`, and
/// `others` (`host:port` of plain-HTTP registries) reachable. Tests that add
/// registries call this with all of theirs (the file replaces the previous one).
pub fn write_node_registries(
    docker_io: &keelson_testkit::registry::TestRegistry,
    others: &[String],
) {
    let d = docker_io.host();
    let mut yaml = format!("mirrors:\n  docker.io: {{endpoint: [\"http://{d}\"]}}\n");
    for o in others {
        yaml.push_str(&format!("  \"{o}\": {{endpoint: [\"http://{o}\"]}}\n"));
    }
    let registries =
        keelson_containerd::registries::Registries::parse(&yaml).expect("registries.yaml");
    for n in &NODE_CLUSTER.nodes {
        let dir = n
            .host
            .containerd()
            .config
            .registry_config_dir
            .clone()
            .expect("the nodes' containerd reads a hosts directory");
        registries
            .write_hosts_dir(&dir)
            .expect("writing hosts.toml");
    }
}

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

/// A cluster with the whole control plane as separate processes: the scheduler, the
/// controller-manager and `keelson hollow-nodes` simulating the nodes.
pub struct ControlPlane {
    pub cluster: Cluster,
    pub scheduler: Proc,
    pub controller_manager: Proc,
    pub hollow_nodes: Proc,
    /// The ports of the scheduler's and controller-manager's /healthz and /metrics.
    pub scheduler_port: u16,
    pub controller_manager_port: u16,
}

/// The control plane shared by the tests of one test binary (3 hollow nodes in 3 zones).
pub static CONTROL_PLANE: LazyLock<ControlPlane> =
    LazyLock::new(|| ControlPlane::start(3).expect("starting the control plane"));

impl ControlPlane {
    pub fn start(nodes: usize) -> anyhow::Result<ControlPlane> {
        let cluster = Cluster::start()?;
        let (scheduler_port, controller_manager_port) = (free_port(), free_port());
        let scheduler = cluster.start_component(
            "keelson-scheduler",
            "scheduler",
            &[format!("--port={scheduler_port}")],
        )?;
        let controller_manager = cluster.start_component(
            "keelson-controller-manager",
            "controller-manager",
            &[
                format!("--port={controller_manager_port}"),
                // Short enough that node-lifecycle tests need not wait 50s.
                "--node-monitor-grace-period=20s".into(),
            ],
        )?;
        let hollow_nodes = cluster.start_component(
            "keelson",
            "hollow-nodes",
            &[
                "hollow-nodes".into(),
                format!("--count={nodes}"),
                format!("--zones={nodes}"),
                "--renew-interval=2s".into(),
                "--ready-delay=200ms".into(),
                "--run-duration=1s".into(),
            ],
        )?;
        let plane = ControlPlane {
            cluster,
            scheduler,
            controller_manager,
            hollow_nodes,
            scheduler_port,
            controller_manager_port,
        };
        let want = nodes.to_string();
        keelson_testkit::eventually(Duration::from_secs(30), "hollow nodes Ready", || {
            let out = plane.cluster.kubectl(&[
                "get",
                "nodes",
                "-o",
                "jsonpath={range .items[*]}{.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}{end}",
            ]);
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            (text.lines().filter(|l| *l == "True").count().to_string() == want).then_some(())
        });
        Ok(plane)
    }

    pub fn kubectl(&self, args: &[&str]) -> std::process::Output {
        self.cluster.kubectl(args)
    }
}
