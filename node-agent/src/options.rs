//! [`NodeAgentOptions`]: the flags of `keelson-node-agent`, named as the kubelet names
//! them where the kubelet has one.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use keelson_apimachinery::duration;

/// The sandbox image the agent asks for when `--pod-infra-container-image` is not given:
/// the project's own (built from busybox-static and imported, never pulled).
pub const DEFAULT_PAUSE_IMAGE: &str = "keelson.local/pause:1";

#[derive(Debug, Clone, Args)]
pub struct NodeAgentOptions {
    /// Kubeconfig with the apiserver's address and this node's credentials.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Rotate the client certificate of `--kubeconfig` before it expires, through a
    /// CertificateSigningRequest (see `certificates`).
    #[arg(long = "rotate-certificates", default_value_t = false, num_args = 0..=1,
          require_equals = true, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub rotate_certificates: bool,
    /// Serve the agent's API with a certificate requested from
    /// `kubernetes.io/kubelet-serving` for the Node's addresses, renewed before it
    /// expires (see `certificates::serving`); until the first is issued, with
    /// `--tls-cert-file` or the self-signed one.
    #[arg(long = "rotate-server-certificates", default_value_t = false, num_args = 0..=1,
          require_equals = true, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub rotate_server_certificates: bool,
    /// The Node's name (default: the host name, lower-cased).
    #[arg(long = "hostname-override")]
    pub hostname_override: Option<String>,
    /// The Node's InternalIP (default: the address of the first non-loopback interface
    /// that is up).
    #[arg(long = "node-ip")]
    pub node_ip: Option<IpAddr>,
    /// containerd's CRI socket.
    #[arg(
        long = "container-runtime-endpoint",
        default_value = "unix:///run/containerd/containerd.sock"
    )]
    pub container_runtime_endpoint: String,
    /// Where the agent keeps pod directories (volumes, etc-hosts, termination logs).
    #[arg(long = "root-dir", default_value = "/var/lib/keelson/agent")]
    pub root_dir: PathBuf,
    /// Where containers' logs are written (`<ns>_<pod>_<uid>/<container>/<attempt>.log`).
    #[arg(long = "pod-logs-dir", default_value = "/var/log/pods")]
    pub pod_logs_dir: PathBuf,
    /// The sandbox ("pause") image; it must be present in containerd already.
    #[arg(long = "pod-infra-container-image", default_value = DEFAULT_PAUSE_IMAGE)]
    pub pod_infra_container_image: String,
    /// Cluster DNS server addresses for pods with dnsPolicy ClusterFirst.
    #[arg(long = "cluster-dns", value_delimiter = ',')]
    pub cluster_dns: Vec<IpAddr>,
    #[arg(long = "cluster-domain", default_value = "cluster.local")]
    pub cluster_domain: String,
    /// The HTTPS port of the agent's API (logs, exec, attach, port-forward, metrics).
    #[arg(long, default_value_t = 10250)]
    pub port: u16,
    /// Address the agent's API listens on (default: all addresses).
    #[arg(long, default_value = "0.0.0.0")]
    pub address: IpAddr,
    /// Serving certificate of the agent's API (default: one made at start, signed by
    /// nobody; the apiserver does not verify it unless told to). With
    /// `--rotate-server-certificates`, served only until an issued one replaces it.
    #[arg(long = "tls-cert-file")]
    pub tls_cert_file: Option<PathBuf>,
    #[arg(long = "tls-private-key-file")]
    pub tls_private_key_file: Option<PathBuf>,
    /// Client certificates signed by this CA authenticate callers of the agent's API
    /// (user = CN, groups = O).
    #[arg(long = "client-ca-file")]
    pub client_ca_file: Option<PathBuf>,
    /// Authenticate bearer tokens with a TokenReview against the apiserver.
    #[arg(long = "authentication-token-webhook", default_value_t = false, num_args = 0..=1,
          require_equals = true, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub authentication_token_webhook: bool,
    /// How long TokenReview answers are cached.
    #[arg(long = "authentication-token-webhook-cache-ttl", default_value = "2m", value_parser = duration::parse)]
    pub authentication_token_webhook_cache_ttl: Duration,
    /// Callers with no credentials are `system:anonymous` (group `system:unauthenticated`)
    /// instead of refused with 401; they are authorized like anyone else.
    #[arg(long = "anonymous-auth", default_value_t = false, num_args = 0..=1,
          require_equals = true, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub anonymous_auth: bool,
    /// `AlwaysAllow`: every authenticated caller may do everything. `Webhook`: each
    /// request is authorized with a SubjectAccessReview against the apiserver.
    #[arg(long = "authorization-mode", value_enum, default_value = "AlwaysAllow")]
    pub authorization_mode: AuthorizationMode,
    /// How long an "allowed" SubjectAccessReview answer is cached.
    #[arg(long = "authorization-webhook-cache-authorized-ttl", default_value = "5m", value_parser = duration::parse)]
    pub authorization_webhook_cache_authorized_ttl: Duration,
    /// How long a "denied" SubjectAccessReview answer is cached.
    #[arg(long = "authorization-webhook-cache-unauthorized-ttl", default_value = "30s", value_parser = duration::parse)]
    pub authorization_webhook_cache_unauthorized_ttl: Duration,
    /// Labels to add when registering the Node: `k=v,k2=v2`.
    #[arg(long = "node-labels", value_delimiter = ',', value_parser = parse_label)]
    pub node_labels: Vec<(String, String)>,
    /// Taints to register the Node with: `key=value:Effect,key:Effect`.
    #[arg(long = "register-with-taints", value_delimiter = ',')]
    pub register_with_taints: Vec<String>,
    #[arg(long = "max-pods", default_value_t = 110)]
    pub max_pods: u32,
    /// Resources kept back for the system: `cpu=100m,memory=100Mi,ephemeral-storage=1Gi`.
    #[arg(long = "system-reserved", value_delimiter = ',', value_parser = parse_label)]
    pub system_reserved: Vec<(String, String)>,
    /// Resources kept back for Kubernetes' own daemons, same form.
    #[arg(long = "kube-reserved", value_delimiter = ',', value_parser = parse_label)]
    pub kube_reserved: Vec<(String, String)>,
    /// Directory of static pod manifests.
    #[arg(long = "pod-manifest-path")]
    pub pod_manifest_path: Option<PathBuf>,
    /// How often `--pod-manifest-path` is read for changes.
    #[arg(long = "file-check-frequency", default_value = "20s", value_parser = duration::parse)]
    pub file_check_frequency: Duration,
    /// cgroup under which the per-QoS pod cgroups are made.
    #[arg(long = "cgroup-root", default_value = "/")]
    pub cgroup_root: String,
    /// How often the Node's Lease is renewed.
    #[arg(long = "node-lease-renew-interval", default_value = "10s", value_parser = duration::parse)]
    pub lease_renew_interval: Duration,
    /// `spec.leaseDurationSeconds` of the node Lease.
    #[arg(long = "node-lease-duration-seconds", default_value_t = 40)]
    pub lease_duration_seconds: i32,
    /// How often node status is computed (and written when it changed).
    #[arg(long = "node-status-update-frequency", default_value = "10s", value_parser = duration::parse)]
    pub node_status_update_frequency: Duration,
    /// How often node status is written even when nothing changed.
    #[arg(long = "node-status-report-frequency", default_value = "5m", value_parser = duration::parse)]
    pub node_status_report_frequency: Duration,
    /// How often container state is listed from the runtime (PLEG relist period).
    #[arg(long = "relist-period", default_value = "1s", value_parser = duration::parse)]
    pub relist_period: Duration,
    /// Where the agent writes the CNI configuration for containerd's CRI plugin. Empty:
    /// do not manage pod networking (the runtime's own CNI configuration is used).
    #[arg(long = "cni-conf-dir", default_value = "/etc/cni/net.d")]
    pub cni_conf_dir: PathBuf,
    /// The Linux bridge pods attach to.
    #[arg(long = "cni-bridge", default_value = "cni0")]
    pub cni_bridge: String,
    /// A directory of image tarballs (OCI or docker archives) imported at start.
    #[arg(long = "image-import-dir")]
    pub image_import_dir: Option<PathBuf>,
    /// Image file system usage (percent) at which unused images are removed (100: never).
    #[arg(long = "image-gc-high-threshold", default_value_t = 85, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub image_gc_high_threshold: u8,
    /// Usage (percent) image garbage collection frees down to.
    #[arg(long = "image-gc-low-threshold", default_value_t = 80, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub image_gc_low_threshold: u8,
    /// Images detected more recently than this are never garbage collected.
    #[arg(long = "minimum-image-ttl-duration", default_value = "2m", value_parser = duration::parse)]
    pub minimum_image_ttl_duration: Duration,
}

/// `--authorization-mode`, as the kubelet names the modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthorizationMode {
    #[value(name = "AlwaysAllow")]
    AlwaysAllow,
    #[value(name = "Webhook")]
    Webhook,
}

impl Default for NodeAgentOptions {
    fn default() -> Self {
        #[derive(clap::Parser)]
        #[command(no_binary_name = true)]
        struct W {
            #[command(flatten)]
            o: NodeAgentOptions,
        }
        <W as clap::Parser>::try_parse_from(std::iter::empty::<String>())
            .expect("defaults parse")
            .o
    }
}

impl NodeAgentOptions {
    /// The Node's name: `--hostname-override` or the host name, lower-cased.
    pub fn node_name(&self) -> String {
        self.hostname_override
            .clone()
            .unwrap_or_else(host_name)
            .to_lowercase()
    }

    /// The path of the CRI unix socket from `--container-runtime-endpoint`.
    pub fn runtime_socket(&self) -> anyhow::Result<PathBuf> {
        let e = &self.container_runtime_endpoint;
        match e.strip_prefix("unix://") {
            Some(p) => Ok(PathBuf::from(p)),
            None if e.starts_with('/') => Ok(PathBuf::from(e)),
            None => anyhow::bail!(
                "--container-runtime-endpoint {e:?}: only unix:// sockets are supported"
            ),
        }
    }
}

/// The kernel's host name.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

/// `k=v` (the value may be empty).
pub fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.trim().to_string())),
        _ => Err(format!("{s:?}: expected key=value")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_kubelets() {
        let o = NodeAgentOptions::default();
        assert_eq!(o.port, 10250);
        assert_eq!(o.max_pods, 110);
        assert_eq!(o.cluster_domain, "cluster.local");
        assert_eq!(
            o.runtime_socket().unwrap(),
            PathBuf::from("/run/containerd/containerd.sock")
        );
        assert_eq!(o.lease_renew_interval, Duration::from_secs(10));
        assert_eq!(o.pod_infra_container_image, DEFAULT_PAUSE_IMAGE);
        assert!(!o.authentication_token_webhook);
        assert!(!o.anonymous_auth);
        assert!(!o.rotate_server_certificates);
        assert_eq!(o.authorization_mode, AuthorizationMode::AlwaysAllow);
        assert_eq!(
            o.authentication_token_webhook_cache_ttl,
            Duration::from_secs(120)
        );
        assert_eq!(
            o.authorization_webhook_cache_authorized_ttl,
            Duration::from_secs(300)
        );
        assert_eq!(
            o.authorization_webhook_cache_unauthorized_ttl,
            Duration::from_secs(30)
        );
    }

    /// Go's boolean flags: `--flag`, `--flag=true`, `--flag=false`.
    #[test]
    fn auth_flags_parse_as_the_kubelets() {
        #[derive(clap::Parser)]
        #[command(no_binary_name = true)]
        struct W {
            #[command(flatten)]
            o: NodeAgentOptions,
        }
        let parse = |args: &[&str]| <W as clap::Parser>::try_parse_from(args).map(|w| w.o);
        let o = parse(&[
            "--authentication-token-webhook",
            "--anonymous-auth=false",
            "--authorization-mode=Webhook",
            "--authorization-webhook-cache-unauthorized-ttl=5s",
        ])
        .unwrap();
        assert!(o.authentication_token_webhook);
        assert!(!o.anonymous_auth);
        assert_eq!(o.authorization_mode, AuthorizationMode::Webhook);
        assert_eq!(
            o.authorization_webhook_cache_unauthorized_ttl,
            Duration::from_secs(5)
        );
        let o = parse(&[
            "--anonymous-auth=true",
            "--authentication-token-webhook=false",
        ])
        .unwrap();
        assert!(o.anonymous_auth);
        assert!(!o.authentication_token_webhook);
        assert!(parse(&["--authorization-mode=RBAC"]).is_err());
    }

    #[test]
    fn endpoints_must_be_unix_sockets() {
        let o = NodeAgentOptions {
            container_runtime_endpoint: "tcp://1.2.3.4:5".into(),
            ..Default::default()
        };
        assert!(o.runtime_socket().is_err());
    }
}
