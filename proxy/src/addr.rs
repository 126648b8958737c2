//! Node addresses and routes, through iproute2's `ip` (JSON output).

use std::net::Ipv4Addr;

use anyhow::{bail, Context};

/// An IPv4 CIDR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl Cidr {
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.prefix))
        };
        u32::from(ip) & mask == u32::from(self.addr) & mask
    }
}

pub fn parse_cidr(s: &str) -> anyhow::Result<Cidr> {
    let (a, p) = s.split_once('/').context("expected ADDRESS/PREFIX")?;
    let addr: Ipv4Addr = a.parse().context("not an IPv4 address")?;
    let prefix: u8 = p.parse().context("not a prefix length")?;
    if prefix > 32 {
        bail!("prefix length over 32");
    }
    Ok(Cidr { addr, prefix })
}

/// One IPv4 address on a local interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalAddress {
    pub interface: String,
    pub ip: Ipv4Addr,
    pub prefix: u8,
}

async fn ip(args: &[&str]) -> anyhow::Result<String> {
    let out = tokio::process::Command::new("ip")
        .args(args)
        .output()
        .await
        .context("running ip (iproute2)")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Every IPv4 address of the node (`ip -j -4 addr show`).
pub async fn local_addresses() -> anyhow::Result<Vec<LocalAddress>> {
    let json: serde_json::Value = serde_json::from_str(&ip(&["-j", "-4", "addr", "show"]).await?)?;
    let mut out = Vec::new();
    for link in json.as_array().into_iter().flatten() {
        let interface = link["ifname"].as_str().unwrap_or_default().to_string();
        for a in link["addr_info"].as_array().into_iter().flatten() {
            let (Some(local), Some(prefix)) = (a["local"].as_str(), a["prefixlen"].as_u64()) else {
                continue;
            };
            if let Ok(ip) = local.parse() {
                out.push(LocalAddress {
                    interface: interface.clone(),
                    ip,
                    prefix: prefix as u8,
                });
            }
        }
    }
    Ok(out)
}

/// Whether the node has a route to `ip` (`ip route get`).
pub async fn has_route(to: Ipv4Addr) -> bool {
    ip(&["-4", "route", "get", &to.to_string()]).await.is_ok()
}

/// Routes `cidr` through the interface that holds `via_address`, so locally
/// generated packets to ClusterIPs pass the route lookup that precedes DNAT.
pub async fn ensure_service_route(cidr: &str, via_address: Ipv4Addr) -> anyhow::Result<()> {
    let range = parse_cidr(cidr)?;
    if has_route(range.addr).await {
        return Ok(());
    }
    let dev = local_addresses()
        .await?
        .into_iter()
        .find(|a| a.ip == via_address)
        .map(|a| a.interface)
        .with_context(|| format!("no interface holds the node address {via_address}"))?;
    ip(&[
        "-4",
        "route",
        "replace",
        cidr,
        "dev",
        &dev,
        "src",
        &via_address.to_string(),
    ])
    .await?;
    tracing::info!(%cidr, %dev, "added a route for the Service range (the node has no default route)");
    Ok(())
}

/// The interface that holds announced LoadBalancer addresses.
pub const LB_INTERFACE: &str = "keelson-lb0";
const LB_PEER: &str = "keelson-lb1";

/// Creates the announce interface if missing: a dummy where the kernel has the type,
/// else a veth pair (some kernels lack dummy). Addresses on it are the proxy's own.
pub async fn ensure_lb_interface() -> anyhow::Result<()> {
    if ip(&["link", "show", LB_INTERFACE]).await.is_ok() {
        return Ok(());
    }
    if ip(&["link", "add", LB_INTERFACE, "type", "dummy"])
        .await
        .is_err()
    {
        ip(&[
            "link",
            "add",
            LB_INTERFACE,
            "type",
            "veth",
            "peer",
            "name",
            LB_PEER,
        ])
        .await?;
        ip(&["link", "set", LB_PEER, "up"]).await?;
    }
    ip(&["link", "set", LB_INTERFACE, "up"]).await?;
    Ok(())
}

/// The addresses on the announce interface.
pub async fn lb_addresses() -> anyhow::Result<Vec<Ipv4Addr>> {
    Ok(local_addresses()
        .await?
        .into_iter()
        .filter(|a| a.interface == LB_INTERFACE)
        .map(|a| a.ip)
        .collect())
}

pub async fn add_lb_address(address: Ipv4Addr) -> anyhow::Result<()> {
    ip(&[
        "addr",
        "replace",
        &format!("{address}/32"),
        "dev",
        LB_INTERFACE,
    ])
    .await?;
    Ok(())
}

pub async fn remove_lb_address(address: Ipv4Addr) -> anyhow::Result<()> {
    ip(&["addr", "del", &format!("{address}/32"), "dev", LB_INTERFACE]).await?;
    Ok(())
}

/// Removes the announce interface (with its peer, if a veth).
pub async fn delete_lb_interface() -> anyhow::Result<()> {
    if ip(&["link", "show", LB_INTERFACE]).await.is_ok() {
        ip(&["link", "del", LB_INTERFACE]).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs() {
        let c = parse_cidr("10.201.0.0/16").unwrap();
        assert!(c.contains("10.201.3.4".parse().unwrap()));
        assert!(!c.contains("10.202.0.1".parse().unwrap()));
        assert!(parse_cidr("0.0.0.0/0")
            .unwrap()
            .contains("1.2.3.4".parse().unwrap()));
        assert!(parse_cidr("10.0.0.0/33").is_err());
        assert!(parse_cidr("10.0.0.0").is_err());
    }
}
