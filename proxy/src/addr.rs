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

/// The interface that holds `address` (the node's own address: where ARP for
/// announced addresses is answered).
pub async fn interface_of(address: Ipv4Addr) -> anyhow::Result<String> {
    local_addresses()
        .await?
        .into_iter()
        .find(|a| a.ip == address)
        .map(|a| a.interface)
        .with_context(|| format!("no interface holds {address}"))
}

/// Broadcasts a gratuitous ARP (an unsolicited reply) for `address` from `interface`,
/// so that hosts on the link update the MAC they hold for it at once when the address
/// moves to this node, instead of after their entry goes stale (tens of seconds).
pub fn send_gratuitous_arp(interface: &str, address: Ipv4Addr) -> std::io::Result<()> {
    const ETH_P_ARP: u16 = 0x0806;
    let name = std::ffi::CString::new(interface)
        .map_err(|_| std::io::Error::other("interface name with a NUL"))?;
    // SAFETY: plain libc calls on a socket this function owns and closes; every
    // pointer passed points to a live, correctly sized local.
    unsafe {
        let index = libc::if_nametoindex(name.as_ptr());
        if index == 0 {
            return Err(std::io::Error::last_os_error());
        }
        let fd = libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW,
            i32::from(ETH_P_ARP.to_be()),
        );
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let result = (|| {
            // The interface's MAC, from this network namespace (not /sys, which may
            // belong to another namespace).
            let mut req: libc::ifreq = std::mem::zeroed();
            for (i, b) in interface.bytes().take(libc::IFNAMSIZ - 1).enumerate() {
                req.ifr_name[i] = b as libc::c_char;
            }
            if libc::ioctl(fd, libc::SIOCGIFHWADDR, &mut req) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let data = req.ifr_ifru.ifru_hwaddr.sa_data;
            let mac: [u8; 6] = std::array::from_fn(|i| data[i] as u8);
            let frame = arp_frame(mac, address);
            let mut to: libc::sockaddr_ll = std::mem::zeroed();
            to.sll_family = libc::AF_PACKET as u16;
            to.sll_protocol = ETH_P_ARP.to_be();
            to.sll_ifindex = index as i32;
            to.sll_halen = 6;
            to.sll_addr[..6].copy_from_slice(&[0xff; 6]);
            let sent = libc::sendto(
                fd,
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&to as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            );
            if sent < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })();
        libc::close(fd);
        result
    }
}

/// An Ethernet broadcast frame carrying an ARP reply that says `address` is at `mac`.
fn arp_frame(mac: [u8; 6], address: Ipv4Addr) -> Vec<u8> {
    let mut f = Vec::with_capacity(42);
    f.extend_from_slice(&[0xff; 6]); // destination: broadcast
    f.extend_from_slice(&mac);
    f.extend_from_slice(&[0x08, 0x06]); // ARP
    f.extend_from_slice(&[0x00, 0x01, 0x08, 0x00, 6, 4]); // Ethernet, IPv4
    f.extend_from_slice(&[0x00, 0x02]); // reply
    f.extend_from_slice(&mac);
    f.extend_from_slice(&address.octets());
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&address.octets());
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gratuitous_arp_frame_names_the_address_twice() {
        let f = arp_frame([2, 0, 0, 0, 0, 1], "10.0.0.7".parse().unwrap());
        assert_eq!(f.len(), 42);
        assert_eq!(&f[12..14], &[0x08, 0x06]);
        assert_eq!(&f[20..22], &[0, 2]);
        assert_eq!(&f[28..32], &[10, 0, 0, 7]);
        assert_eq!(&f[38..42], &[10, 0, 0, 7]);
    }

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
