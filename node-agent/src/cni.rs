//! The pod network of a node: the CNI configuration containerd's CRI plugin uses for
//! every sandbox (bridge + host-local on the Node's `spec.podCIDR`, portmap for
//! hostPort, loopback), and a route to every other node's podCIDR via that node's IP,
//! so pods reach pods on other nodes without masquerading.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use keelson_client::runtime::watcher::{self, watcher, Event};
use keelson_client::{Api, Client};
use serde_json::json;

/// The file the agent owns in `--cni-conf-dir`.
pub const CONF_NAME: &str = "10-keelson.conflist";

/// The CNI network configuration list for a node whose pods live in `pod_cidr`;
/// host-local keeps its leases in `data_dir` (its default, `/var/lib/cni/networks`, would
/// be shared by every node on the machine).
pub fn conflist(bridge: &str, pod_cidr: &str, data_dir: &Path) -> serde_json::Value {
    json!({
        "cniVersion": "0.4.0",
        "name": "keelson",
        "plugins": [
            {
                "type": "bridge",
                "bridge": bridge,
                "isGateway": true,
                "ipMasq": false,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "dataDir": data_dir,
                    "ranges": [[{"subnet": pod_cidr}]],
                    "routes": [{"dst": "0.0.0.0/0"}]
                }
            },
            {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true}
        ]
    })
}

/// Write the configuration (atomically; unchanged files are left alone).
pub fn write_conf(
    dir: &Path,
    bridge: &str,
    pod_cidr: &str,
    data_dir: &Path,
) -> anyhow::Result<bool> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(CONF_NAME);
    let text = serde_json::to_string_pretty(&conflist(bridge, pod_cidr, data_dir))?;
    if std::fs::read_to_string(&path).ok().as_deref() == Some(text.as_str()) {
        return Ok(false);
    }
    let tmp = dir.join(format!(".{CONF_NAME}.tmp"));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, &path)?;
    Ok(true)
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = std::process::Command::new("ip").args(args).output()?;
    anyhow::ensure!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

/// Forwarding must be on for the node to route between its bridge and other nodes.
fn enable_forwarding() {
    if let Err(e) = std::fs::write("/proc/sys/net/ipv4/ip_forward", "1") {
        tracing::warn!(error = %e, "enabling IPv4 forwarding");
    }
}

/// Keep the CNI configuration and the routes to other nodes' pod CIDRs in step with
/// the Nodes. Runs until aborted.
pub async fn run(
    client: Client,
    node_name: String,
    node_ip: IpAddr,
    conf_dir: std::path::PathBuf,
    bridge: String,
    data_dir: std::path::PathBuf,
) {
    enable_forwarding();
    let api: Api<Node> = Api::all(client);
    let stream = watcher(api, watcher::Config::default());
    futures::pin_mut!(stream);
    // node name -> (podCIDR, InternalIP) of the other nodes, and routes in place.
    let mut others: BTreeMap<String, (String, String)> = BTreeMap::new();
    let mut routed: BTreeMap<String, String> = BTreeMap::new();
    while let Some(ev) = stream.next().await {
        let ev = match ev {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, "node watch failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let (node, deleted) = match ev {
            Event::InitApply(n) | Event::Apply(n) => (n, false),
            Event::Delete(n) => (n, true),
            Event::Init => {
                others.clear();
                continue;
            }
            Event::InitDone => {
                sync_routes(&others, &mut routed, node_ip);
                continue;
            }
        };
        let name = node.metadata.name.clone().unwrap_or_default();
        let cidr = node.spec.as_ref().and_then(|s| s.pod_cidr.clone());
        if name == node_name {
            if let Some(cidr) = cidr {
                match write_conf(&conf_dir, &bridge, &cidr, &data_dir) {
                    Ok(true) => tracing::info!(pod_cidr = %cidr, "wrote the CNI configuration"),
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(error = %format!("{e:#}"), "writing the CNI configuration")
                    }
                }
            }
            continue;
        }
        let internal_ip = node
            .status
            .as_ref()
            .and_then(|s| s.addresses.as_ref())
            .and_then(|a| a.iter().find(|a| a.type_ == "InternalIP"))
            .map(|a| a.address.clone());
        match (deleted, cidr, internal_ip) {
            (false, Some(c), Some(i)) => {
                others.insert(name, (c, i));
            }
            _ => {
                others.remove(&name);
            }
        }
        sync_routes(&others, &mut routed, node_ip);
    }
}

/// Make the routes match `others` (podCIDR via node IP), removing stale ones.
fn sync_routes(
    others: &BTreeMap<String, (String, String)>,
    routed: &mut BTreeMap<String, String>,
    node_ip: IpAddr,
) {
    let wanted: BTreeMap<String, String> = others
        .values()
        .filter(|(_, via)| via.parse::<IpAddr>().ok() != Some(node_ip))
        .map(|(c, v)| (c.clone(), v.clone()))
        .collect();
    for (cidr, via) in &wanted {
        if routed.get(cidr) == Some(via) {
            continue;
        }
        match ip(&["route", "replace", cidr, "via", via]) {
            Ok(()) => {
                tracing::info!(%cidr, %via, "route to another node's pods");
                routed.insert(cidr.clone(), via.clone());
            }
            Err(e) => tracing::warn!(error = %format!("{e:#}"), "adding a pod route"),
        }
    }
    let stale: Vec<String> = routed
        .keys()
        .filter(|c| !wanted.contains_key(*c))
        .cloned()
        .collect();
    for cidr in stale {
        let via = routed.remove(&cidr).unwrap_or_default();
        if let Err(e) = ip(&["route", "del", &cidr, "via", &via]) {
            tracing::debug!(error = %format!("{e:#}"), "removing a pod route");
        }
    }
}

/// Forgets what the node's neighbour (ARP) table says about a new pod's address.
/// host-local IPAM hands out addresses that earlier pods had; the node may still hold
/// the old pod's MAC for one (REACHABLE for up to a minute), and until that entry goes
/// stale every packet the node routes to the new pod (from other nodes, through a
/// Service) goes to a MAC nobody has. Same-bridge pod-to-pod traffic is unaffected
/// (each pod has its own table), which is why this shows only under address reuse.
pub async fn forget_neighbors(ips: &[String]) {
    for ip in ips {
        if ip.parse::<std::net::IpAddr>().is_err() {
            continue;
        }
        let out = tokio::process::Command::new("ip")
            .args(["neigh", "flush", "to", ip])
            .output()
            .await;
        if let Err(e) = out {
            tracing::debug!(%ip, error = %e, "ip neigh flush");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_conflist_names_the_cidr_and_does_not_masquerade() {
        let c = conflist("cni0", "10.244.1.0/24", Path::new("/x/cni"));
        assert_eq!(c["plugins"][0]["ipam"]["dataDir"], "/x/cni");
        assert_eq!(
            c["plugins"][0]["ipam"]["ranges"][0][0]["subnet"],
            "10.244.1.0/24"
        );
        assert_eq!(c["plugins"][0]["ipMasq"], false);
        assert_eq!(c["plugins"][1]["type"], "portmap");
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("leases");
        assert!(write_conf(dir.path(), "cni0", "10.244.1.0/24", &d).unwrap());
        assert!(
            !write_conf(dir.path(), "cni0", "10.244.1.0/24", &d).unwrap(),
            "unchanged"
        );
        assert!(write_conf(dir.path(), "cni0", "10.244.2.0/24", &d).unwrap());
    }
}
