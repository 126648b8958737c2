//! keelson-controller-manager: Kubernetes' control loops, each one small file in
//! [`controllers`] that plugs into the same mechanism:
//!
//! - shared informers from [`Informers`] (one watch per resource type for the process),
//! - event handlers that map a change to the key of the object to reconcile,
//! - a [`Queue`](keelson_component::Queue) whose workers call the controller's
//!   `reconcile(key)` with rate-limited retries.
//!
//! [`common`] holds what several controllers share: owner references and adoption,
//! creation expectations, pod helpers (readiness, availability, deletion ranking).

pub mod common;
pub mod controllers;
pub mod identities;

use std::sync::Arc;
use std::time::Duration;

use keelson_apimachinery::duration;
use keelson_client::Client;
use keelson_component::{Informers, QueueMetrics, Recorder};
use prometheus_client::registry::Registry;

/// The Lease name and health/metrics port.
pub const COMPONENT: keelson_component::Component = keelson_component::Component {
    name: "keelson-controller-manager",
    default_port: 10257,
};

/// Flags of the controller-manager itself (component flags come from
/// [`keelson_component::ComponentOptions`]).
#[derive(clap::Args, Debug, Clone)]
pub struct ControllerManagerOptions {
    /// Controllers to run: `*` for all, `foo` to add one, `-foo` to remove one.
    #[arg(long, value_delimiter = ',', default_value = "*")]
    pub controllers: Vec<String>,
    /// CIDR range for pods; each node gets a `--node-cidr-mask-size` slice of it.
    #[arg(long = "cluster-cidr", default_value = "10.244.0.0/16")]
    pub cluster_cidr: String,
    #[arg(long = "node-cidr-mask-size", default_value_t = 24)]
    pub node_cidr_mask_size: u8,
    /// A node whose Lease is not renewed for this long is marked NotReady/Unknown.
    #[arg(long = "node-monitor-grace-period", default_value = "50s", value_parser = duration::parse)]
    pub node_monitor_grace_period: Duration,
    /// How often node health is checked.
    #[arg(long = "node-monitor-period", default_value = "5s", value_parser = duration::parse)]
    pub node_monitor_period: Duration,
    /// Terminated pods kept before the pod garbage collector deletes the oldest.
    #[arg(long = "terminated-pod-gc-threshold", default_value_t = 12500)]
    pub terminated_pod_gc_threshold: usize,
    /// The CA bundle published to every namespace as the `kube-root-ca.crt` ConfigMap;
    /// defaults to the CA of the controller-manager's kubeconfig.
    #[arg(long = "root-ca-file")]
    pub root_ca_file: Option<std::path::PathBuf>,
    /// Signs the tokens of `kubernetes.io/service-account-token` Secrets (`sa.key`; the
    /// apiserver must verify with the same key). Without it such Secrets stay empty.
    #[arg(long = "service-account-private-key-file")]
    pub service_account_private_key_file: Option<std::path::PathBuf>,
    /// Addresses the service-lb controller gives LoadBalancer Services: comma-separated
    /// IPv4 CIDRs, `A-B` ranges or single addresses. Empty: every Service gets the
    /// InternalIPs of the Ready nodes instead (docs/service-lb.md).
    #[arg(long = "service-lb-pool", default_value = "")]
    pub service_lb_pool: String,
    /// The `spec.loadBalancerClass` the service-lb controller serves, besides unset.
    #[arg(long = "service-lb-class", default_value = "keelson.dev/service-lb")]
    pub service_lb_class: String,
    /// The CA certificate (PEM) the `kubernetes.io/*` CertificateSigningRequest signers
    /// issue with (csrsigning); without it and its key, csrsigning does not run.
    #[arg(long = "cluster-signing-cert-file")]
    pub cluster_signing_cert_file: Option<std::path::PathBuf>,
    /// The CA's private key (PEM), for `--cluster-signing-cert-file`.
    #[arg(long = "cluster-signing-key-file")]
    pub cluster_signing_key_file: Option<std::path::PathBuf>,
    /// The longest certificate csrsigning issues (a request's `expirationSeconds` may ask
    /// for less).
    #[arg(long = "cluster-signing-duration", default_value = "8760h", value_parser = duration::parse)]
    pub cluster_signing_duration: Duration,
    /// Let csrapproving approve `kubernetes.io/kubelet-serving` requests whose names
    /// are all addresses of the requesting node's Node (Kubernetes has no such
    /// approver: without it an operator approves them).
    #[arg(
        long = "approve-kubelet-serving-certificates",
        default_value_t = false,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    pub approve_kubelet_serving_certificates: bool,
    /// Workers per controller.
    #[arg(long = "concurrent-syncs", default_value_t = 5)]
    pub concurrent_syncs: usize,
    /// Run each controller with the credentials of its own service account
    /// (`kube-system/<controller>`), as kube-controller-manager does; the manager's
    /// own credentials then only serve the shared informers, the accounts and their
    /// tokens (see [`identities`]).
    #[arg(
        long = "use-service-account-credentials",
        default_value_t = false,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    pub use_service_account_credentials: bool,
}

impl Default for ControllerManagerOptions {
    fn default() -> Self {
        use clap::Parser;
        #[derive(Parser)]
        struct Wrapper {
            #[command(flatten)]
            o: ControllerManagerOptions,
        }
        Wrapper::parse_from(["keelson-controller-manager"]).o
    }
}

impl ControllerManagerOptions {
    /// Whether `name` is enabled by `--controllers`.
    pub fn enabled(&self, name: &str) -> bool {
        let mut on = false;
        for c in &self.controllers {
            let c = c.trim();
            if c == "*" || c == name {
                on = true;
            }
            if c.strip_prefix('-') == Some(name) {
                return false;
            }
        }
        on
    }
}

/// What every controller gets.
#[derive(Clone)]
pub struct Context {
    pub client: Client,
    pub informers: Informers,
    pub queue_metrics: QueueMetrics,
    pub recorder: Recorder,
    pub options: Arc<ControllerManagerOptions>,
}

impl Context {
    pub fn new(client: Client, options: ControllerManagerOptions, registry: &mut Registry) -> Self {
        Context {
            informers: Informers::new(client.clone()),
            recorder: Recorder::new(client.clone(), "controller-manager"),
            queue_metrics: QueueMetrics::register(registry),
            options: Arc::new(options),
            client,
        }
    }
}

/// Run every enabled controller until the future is dropped.
pub async fn run(ctx: Context) {
    let identities = match identities::Identities::new(&ctx).await {
        Ok(i) => i,
        Err(e) => return tracing::error!(error = %e, "the controllers' credentials"),
    };
    let mut tasks = tokio::task::JoinSet::new();
    let loops = keelson_component::Loops::process();
    for (name, start) in controllers::ALL {
        if ctx.options.enabled(name) {
            tracing::info!(controller = name, "starting controller");
            // A controller that panics is logged and fails /healthz (naming it).
            let loops = loops.clone();
            let work = start(identities.context_for(name, &ctx));
            tasks.spawn(async move { loops.supervise(name, work).await });
        }
    }
    while tasks.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controller_selection() {
        let mut o = ControllerManagerOptions::default();
        assert!(o.enabled("replicaset"));
        o.controllers = vec!["*".into(), "-replicaset".into()];
        assert!(!o.enabled("replicaset"));
        assert!(o.enabled("deployment"));
        o.controllers = vec!["deployment".into()];
        assert!(!o.enabled("replicaset"));
        assert!(o.enabled("deployment"));
    }
}
