//! keelson-proxy's flags, named as kube-proxy's where kube-proxy has one.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map(|i| s.split_at(i))
        .unwrap_or((s, "s"));
    let n: f64 = num.parse().map_err(|_| format!("invalid duration {s:?}"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("invalid duration unit in {s:?} (ms, s, m, h)")),
    };
    Ok(Duration::from_secs_f64(secs))
}

#[derive(clap::Args, Clone, Debug)]
pub struct ProxyOptions {
    /// Path to a kubeconfig with the proxy's credentials.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,

    /// The node this proxy runs on (default: the hostname).
    #[arg(long)]
    pub hostname_override: Option<String>,

    /// The pod network, comma-separated CIDRs. Traffic to a ClusterIP from outside it
    /// is masqueraded; pods reaching an externalTrafficPolicy: Local Service from
    /// inside it may use any endpoint.
    #[arg(long, value_delimiter = ',')]
    pub cluster_cidr: Vec<String>,

    /// The Service ClusterIP range. When the node has no route that covers it (no
    /// default route), the proxy adds one through the node's interface, so that the
    /// node itself can reach ClusterIPs (DNAT happens after the route lookup).
    #[arg(long)]
    pub service_cluster_ip_range: Option<String>,

    /// Only `nftables` is implemented.
    #[arg(long, default_value = "nftables")]
    pub proxy_mode: String,

    /// Where NodePorts answer: `primary` (the Node's InternalIP addresses, the default)
    /// or comma-separated CIDRs of node addresses.
    #[arg(long, value_delimiter = ',', default_value = "primary")]
    pub nodeport_addresses: Vec<String>,

    /// `/healthz` and `/livez` (plain HTTP), as kube-proxy's 10256.
    #[arg(long, default_value = "0.0.0.0:10256")]
    pub healthz_bind_address: SocketAddr,

    /// `/metrics` (plain HTTP), as kube-proxy's 10249.
    #[arg(long, default_value = "127.0.0.1:10249")]
    pub metrics_bind_address: SocketAddr,

    /// Minimum time between two syncs: changes that arrive in between are applied
    /// together (kube-proxy's --nftables-min-sync-period).
    #[arg(long = "nftables-min-sync-period", default_value = "1s", value_parser = parse_duration)]
    pub min_sync_period: Duration,

    /// The longest time between two full checks of the table
    /// (kube-proxy's --nftables-sync-period).
    #[arg(long = "nftables-sync-period", default_value = "30s", value_parser = parse_duration)]
    pub sync_period: Duration,

    /// Make LoadBalancer ingress addresses that no node holds reachable on the node
    /// network: the node chosen for a Service adds the address to its
    /// `keelson-lb0` interface, so the kernel answers ARP for it.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub announce_load_balancer_ips: bool,

    /// Enforce networking.k8s.io/v1 NetworkPolicy for this node's pods.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub enforce_network_policy: bool,

    /// Remove the proxy's nftables tables and addresses, then exit.
    #[arg(long)]
    pub cleanup: bool,
}

impl Default for ProxyOptions {
    fn default() -> Self {
        ProxyOptions {
            kubeconfig: None,
            hostname_override: None,
            cluster_cidr: Vec::new(),
            service_cluster_ip_range: None,
            proxy_mode: "nftables".into(),
            nodeport_addresses: vec!["primary".into()],
            healthz_bind_address: "0.0.0.0:10256".parse().expect("literal"),
            metrics_bind_address: "127.0.0.1:10249".parse().expect("literal"),
            min_sync_period: Duration::from_secs(1),
            sync_period: Duration::from_secs(30),
            announce_load_balancer_ips: true,
            enforce_network_policy: true,
            cleanup: false,
        }
    }
}

impl ProxyOptions {
    /// The node name: the flag, else the machine's hostname (kube-proxy's rule).
    pub fn node_name(&self) -> anyhow::Result<String> {
        if let Some(n) = &self.hostname_override {
            return Ok(n.to_lowercase());
        }
        let name = std::fs::read_to_string("/proc/sys/kernel/hostname")?;
        Ok(name.trim().to_lowercase())
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        if self.proxy_mode != "nftables" {
            anyhow::bail!(
                "--proxy-mode={}: only \"nftables\" is implemented",
                self.proxy_mode
            );
        }
        for c in &self.cluster_cidr {
            crate::addr::parse_cidr(c).map_err(|e| anyhow::anyhow!("--cluster-cidr {c:?}: {e}"))?;
        }
        for c in &self.nodeport_addresses {
            if c != "primary" {
                crate::addr::parse_cidr(c)
                    .map_err(|e| anyhow::anyhow!("--nodeport-addresses {c:?}: {e}"))?;
            }
        }
        if let Some(r) = &self.service_cluster_ip_range {
            crate::addr::parse_cidr(r)
                .map_err(|e| anyhow::anyhow!("--service-cluster-ip-range {r:?}: {e}"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_as_kube_proxy_writes_them() {
        assert_eq!(parse_duration("1s").unwrap(), Duration::from_secs(1));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("3y").is_err());
    }

    #[test]
    fn only_nftables_mode() {
        let opts = ProxyOptions {
            proxy_mode: "iptables".into(),
            ..Default::default()
        };
        assert!(opts.validate().is_err());
        assert!(ProxyOptions::default().validate().is_ok());
    }
}
