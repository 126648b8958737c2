//! Fake addresses. Nothing sends traffic to them: they are data for the API objects.
//!
//! - Node `i`'s InternalIP is in 10.200.0.0/16: `10.200.(i / 254).(i % 254 + 1)`.
//! - Pod IPs come from the node's `spec.podCIDR` when it has one (IPv4), else from the
//!   node's own /24 in 10.64.0.0/10: `10.64.0.0 + (i * 256)`, hosts .1 to .254.

use std::collections::HashSet;
use std::net::Ipv4Addr;

/// The InternalIP of node `index` (wraps after 65,024 nodes).
pub fn node_ip(index: usize) -> Ipv4Addr {
    let i = index % (256 * 254);
    Ipv4Addr::new(10, 200, (i / 254) as u8, (i % 254 + 1) as u8)
}

/// The fallback pod range of node `index`: a /24 in 10.64.0.0/10 (wraps after 16,384).
pub fn fallback_pod_cidr(index: usize) -> (Ipv4Addr, u8) {
    let base = u32::from(Ipv4Addr::new(10, 64, 0, 0));
    let i = (index % (1 << 14)) as u32;
    (Ipv4Addr::from(base + (i << 8)), 24)
}

/// Parse an IPv4 CIDR such as `10.244.3.0/24`; `None` for IPv6 or garbage.
pub fn parse_cidr(s: &str) -> Option<(Ipv4Addr, u8)> {
    let (ip, prefix) = s.split_once('/')?;
    let ip: Ipv4Addr = ip.parse().ok()?;
    let prefix: u8 = prefix.parse().ok()?;
    if prefix > 30 {
        return None;
    }
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    };
    Some((Ipv4Addr::from(u32::from(ip) & mask), prefix))
}

/// Hands out pod IPs of one node: the next free host address of the range, skipping
/// addresses still in use.
#[derive(Debug)]
pub struct PodIps {
    cidr: (Ipv4Addr, u8),
    next: u32,
    in_use: HashSet<Ipv4Addr>,
}

impl PodIps {
    pub fn new(cidr: (Ipv4Addr, u8)) -> Self {
        PodIps {
            cidr,
            next: 0,
            in_use: HashSet::new(),
        }
    }

    /// Switch to a new range (the node got a `spec.podCIDR`); addresses in use stay so.
    pub fn set_cidr(&mut self, cidr: (Ipv4Addr, u8)) {
        if self.cidr != cidr {
            self.cidr = cidr;
            self.next = 0;
        }
    }

    pub fn cidr(&self) -> (Ipv4Addr, u8) {
        self.cidr
    }

    /// Host addresses in the range (without the network and broadcast addresses).
    fn hosts(&self) -> u32 {
        (1u32 << (32 - u32::from(self.cidr.1)))
            .saturating_sub(2)
            .max(1)
    }

    /// The next free address; `None` if the whole range is in use.
    pub fn allocate(&mut self) -> Option<Ipv4Addr> {
        let hosts = self.hosts();
        let base = u32::from(self.cidr.0);
        for _ in 0..hosts {
            let ip = Ipv4Addr::from(base.wrapping_add(1 + self.next % hosts));
            self.next = (self.next + 1) % hosts;
            if self.in_use.insert(ip) {
                return Some(ip);
            }
        }
        None
    }

    /// Mark an address as used (a pod adopted after a restart).
    pub fn reserve(&mut self, ip: Ipv4Addr) {
        self.in_use.insert(ip);
    }

    pub fn release(&mut self, ip: Ipv4Addr) {
        self.in_use.remove(&ip);
    }

    pub fn in_use(&self) -> usize {
        self.in_use.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ips_are_distinct() {
        let ips: HashSet<_> = (0..5000).map(node_ip).collect();
        assert_eq!(ips.len(), 5000);
        assert_eq!(node_ip(0), Ipv4Addr::new(10, 200, 0, 1));
        assert_eq!(node_ip(254), Ipv4Addr::new(10, 200, 1, 1));
    }

    #[test]
    fn pod_ips_unique_and_reused_after_release() {
        assert_eq!(
            fallback_pod_cidr(3),
            (Ipv4Addr::new(10, 64, 3, 0), 24),
            "node 3's /24"
        );
        assert_eq!(fallback_pod_cidr(300).0, Ipv4Addr::new(10, 65, 44, 0));
        let mut a = PodIps::new(parse_cidr("10.244.1.7/30").unwrap());
        assert_eq!(a.cidr(), (Ipv4Addr::new(10, 244, 1, 4), 30));
        let x = a.allocate().unwrap();
        let y = a.allocate().unwrap();
        assert_eq!(
            (x, y),
            (Ipv4Addr::new(10, 244, 1, 5), Ipv4Addr::new(10, 244, 1, 6))
        );
        assert_eq!(a.allocate(), None, "a /30 has two hosts");
        a.release(x);
        assert_eq!(a.allocate(), Some(x));
        assert_eq!(a.in_use(), 2);
        assert!(parse_cidr("fd00::/64").is_none());
    }
}
