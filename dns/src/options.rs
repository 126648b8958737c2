//! [`DnsOptions`]: the flags of `keelson-dns`.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use clap::Args;

/// How keelson-dns serves, where it forwards, and what it publishes.
#[derive(Args, Clone, Debug)]
pub struct DnsOptions {
    /// Kubeconfig with the apiserver's address and credentials.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// The cluster domain whose names are answered here.
    #[arg(long = "cluster-domain", default_value = "cluster.local")]
    pub cluster_domain: String,
    /// Address the DNS (UDP and TCP) and health ports listen on.
    #[arg(long = "bind-address", default_value = "0.0.0.0")]
    pub bind_address: IpAddr,
    /// The DNS port (UDP and TCP).
    #[arg(long, default_value_t = 53)]
    pub port: u16,
    /// `/health` and `/ready` on the bind address.
    #[arg(long = "health-port", default_value_t = 8080)]
    pub health_port: u16,
    /// `/metrics` (CoreDNS's metric names).
    #[arg(long = "metrics-bind-address", default_value = "0.0.0.0:9153")]
    pub metrics_bind_address: std::net::SocketAddr,
    /// An upstream resolver, `IP` or `IP:PORT` (repeatable). When given, replaces the
    /// nameservers of `--resolv-conf`.
    #[arg(long)]
    pub upstream: Vec<String>,
    /// Where the node's resolvers are read from when no `--upstream` is given.
    #[arg(long = "resolv-conf", default_value = "/etc/resolv.conf")]
    pub resolv_conf: PathBuf,
    /// The ClusterIP of the `kube-dns` Service (created in kube-system if absent).
    #[arg(long = "service-ip", default_value = "10.96.0.10")]
    pub service_ip: IpAddr,
    /// Publish this address as an endpoint of `kube-dns` (needs `--node-name`).
    #[arg(long = "publish-address")]
    pub publish_address: Option<IpAddr>,
    /// The Node this instance runs on: names its EndpointSlice and owns it.
    #[arg(long = "node-name")]
    pub node_name: Option<String>,
}

impl Default for DnsOptions {
    fn default() -> Self {
        DnsOptions {
            kubeconfig: None,
            cluster_domain: "cluster.local".into(),
            bind_address: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port: 53,
            health_port: 8080,
            metrics_bind_address: (Ipv4Addr::UNSPECIFIED, 9153).into(),
            upstream: Vec::new(),
            resolv_conf: PathBuf::from("/etc/resolv.conf"),
            service_ip: IpAddr::V4(Ipv4Addr::new(10, 96, 0, 10)),
            publish_address: None,
            node_name: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        opts: DnsOptions,
    }

    #[test]
    fn default_matches_the_flags_defaults() {
        let parsed = Cli::parse_from(["keelson-dns"]).opts;
        let d = DnsOptions::default();
        assert_eq!(format!("{parsed:?}"), format!("{d:?}"));
    }
}
