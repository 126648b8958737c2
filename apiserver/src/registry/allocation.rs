//! ClusterIP and NodePort allocation for Services.
//!
//! Every allocated address and port is a key in etcd
//! (`/registry/ranges/serviceips/<ip>`, `/registry/ranges/servicenodeports/<port>`)
//! claimed in the same transaction that writes the Service, and released in the
//! transaction that deletes it. Two apiservers can therefore never hand out the same
//! address, and a crash between allocation and write cannot leak one.

use keelson_apimachinery::{ApiError, Cause};
use rand::Rng;
use serde_json::{json, Value};
use std::net::Ipv4Addr;

const IP_KEYS: &str = "/registry/ranges/serviceips/";
const PORT_KEYS: &str = "/registry/ranges/servicenodeports/";

/// Claims and releases that go into the Service's write.
#[derive(Debug, Default)]
pub struct Allocation {
    pub claims: Vec<String>,
    pub releases: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct ServiceAllocator {
    base: u32,
    size: u32,
    ports: (u16, u16),
}

/// Parse `a.b.c.d/n`.
pub fn parse_cidr(cidr: &str) -> anyhow::Result<(Ipv4Addr, u8)> {
    let (ip, bits) = cidr
        .split_once('/')
        .ok_or_else(|| anyhow::anyhow!("{cidr:?} is not a CIDR"))?;
    let ip: Ipv4Addr = ip.parse()?;
    let bits: u8 = bits.parse()?;
    anyhow::ensure!(
        (8..=30).contains(&bits),
        "service CIDR {cidr} must have a prefix from /8 to /30"
    );
    Ok((ip, bits))
}

impl ServiceAllocator {
    pub fn new(cidr: &str, ports: (u16, u16)) -> anyhow::Result<Self> {
        let (ip, bits) = parse_cidr(cidr)?;
        let size = 1u32 << (32 - bits);
        let base = u32::from(ip) & !(size - 1);
        Ok(ServiceAllocator { base, size, ports })
    }

    /// The first usable address, which the `kubernetes` Service gets.
    pub fn first_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.base + 1)
    }

    fn contains(&self, ip: Ipv4Addr) -> bool {
        let v = u32::from(ip);
        v > self.base && v < self.base + self.size - 1
    }

    fn random_ip(&self) -> Ipv4Addr {
        // Skip the network address, the first address (kept for `kubernetes`) and the
        // broadcast address.
        Ipv4Addr::from(self.base + rand::rng().random_range(2..self.size - 1))
    }

    fn random_port(&self) -> u16 {
        rand::rng().random_range(self.ports.0..=self.ports.1)
    }

    /// Keys for values the client chose itself: when one of these is taken the request
    /// fails instead of trying another value.
    pub fn requested_keys(&self, svc: &Value) -> Vec<String> {
        let mut keys = Vec::new();
        if let Some(ip) = svc.pointer("/spec/clusterIP").and_then(Value::as_str) {
            if !ip.is_empty() && ip != "None" {
                keys.push(format!("{IP_KEYS}{ip}"));
            }
        }
        for p in ports(svc) {
            if let Some(n) = p.get("nodePort").and_then(Value::as_u64).filter(|n| *n > 0) {
                keys.push(format!("{PORT_KEYS}{n}"));
            }
        }
        if let Some(n) = health_check_node_port(svc) {
            keys.push(format!("{PORT_KEYS}{n}"));
        }
        keys
    }

    /// Fill in `spec.clusterIP(s)` and node ports of `svc`, given the stored `old`
    /// version on update; returns what to claim and release.
    pub fn allocate(&self, svc: &mut Value, old: Option<&Value>) -> Result<Allocation, ApiError> {
        let mut alloc = Allocation::default();
        let svc_type = svc
            .pointer("/spec/type")
            .and_then(Value::as_str)
            .unwrap_or("ClusterIP")
            .to_string();
        let old_ip = old
            .and_then(|o| o.pointer("/spec/clusterIP"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let name = keelson_apimachinery::meta::name(svc).to_string();
        let spec = svc.get_mut("spec").filter(|s| s.is_object());
        let Some(spec) = spec else { return Ok(alloc) };

        // ClusterIP.
        let wants_ip = svc_type != "ExternalName";
        let requested = spec
            .get("clusterIP")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let ip = if !wants_ip {
            String::new()
        } else if requested == "None" {
            "None".to_string()
        } else if !requested.is_empty() {
            let parsed: Ipv4Addr = requested.parse().map_err(|_| {
                invalid(
                    &name,
                    "spec.clusterIPs",
                    &requested,
                    "must be a valid IP address",
                )
            })?;
            if !self.contains(parsed) && requested != old_ip {
                return Err(invalid(
                    &name,
                    "spec.clusterIPs",
                    &requested,
                    "failed to allocate IP: the provided IP is not in the valid range. The range of valid IPs is the service CIDR",
                ));
            }
            requested
        } else if !old_ip.is_empty() && old_ip != "None" {
            old_ip.clone()
        } else {
            self.random_ip().to_string()
        };
        if ip.is_empty() {
            spec.as_object_mut().expect("object").remove("clusterIP");
            spec.as_object_mut().expect("object").remove("clusterIPs");
        } else {
            spec["clusterIP"] = json!(ip);
            spec["clusterIPs"] = json!([ip]);
        }
        if ip != old_ip {
            if !ip.is_empty() && ip != "None" {
                alloc.claims.push(format!("{IP_KEYS}{ip}"));
            }
            if !old_ip.is_empty() && old_ip != "None" {
                alloc.releases.push(format!("{IP_KEYS}{old_ip}"));
            }
        }

        // NodePorts.
        let wants_ports = svc_type == "NodePort" || svc_type == "LoadBalancer";
        let old_ports: Vec<u64> = old
            .map(ports)
            .unwrap_or_default()
            .iter()
            .filter_map(|p| p.get("nodePort").and_then(Value::as_u64))
            .collect();
        let mut new_ports = Vec::new();
        if let Some(list) = spec.get_mut("ports").and_then(Value::as_array_mut) {
            for p in list.iter_mut() {
                let Some(po) = p.as_object_mut() else {
                    continue;
                };
                if !wants_ports {
                    po.remove("nodePort");
                    continue;
                }
                let n = po.get("nodePort").and_then(Value::as_u64).unwrap_or(0);
                let n = if n == 0 {
                    // Keep the port this service already had for the same port number.
                    let port = po.get("port").cloned();
                    old.map(ports)
                        .unwrap_or_default()
                        .iter()
                        .find(|op| op.get("port").cloned() == port)
                        .and_then(|op| op.get("nodePort").and_then(Value::as_u64))
                        .filter(|op| !new_ports.contains(op))
                        .unwrap_or_else(|| u64::from(self.random_port()))
                } else {
                    n
                };
                po.insert("nodePort".into(), json!(n));
                new_ports.push(n);
            }
        }
        // The health check node port of an externalTrafficPolicy: Local LoadBalancer
        // (kube-proxy serves it on every node), from the same range.
        let old_hc = old.and_then(health_check_node_port);
        let wants_hc = svc_type == "LoadBalancer"
            && spec.get("externalTrafficPolicy").and_then(Value::as_str) == Some("Local");
        let hc = if wants_hc {
            let requested = spec
                .get("healthCheckNodePort")
                .and_then(Value::as_u64)
                .filter(|n| *n > 0);
            let n = requested.or(old_hc).unwrap_or_else(|| loop {
                let n = u64::from(self.random_port());
                if !new_ports.contains(&n) {
                    break n;
                }
            });
            spec["healthCheckNodePort"] = json!(n);
            Some(n)
        } else {
            spec.as_object_mut()
                .expect("object")
                .remove("healthCheckNodePort");
            None
        };
        let mut old_ports = old_ports;
        old_ports.extend(old_hc);
        new_ports.extend(hc);
        for n in &new_ports {
            if !old_ports.contains(n) {
                alloc.claims.push(format!("{PORT_KEYS}{n}"));
            }
        }
        for n in &old_ports {
            if !new_ports.contains(n) {
                alloc.releases.push(format!("{PORT_KEYS}{n}"));
            }
        }
        Ok(alloc)
    }

    /// What a deleted Service releases.
    pub fn release(&self, svc: &Value) -> Vec<String> {
        let mut keys = Vec::new();
        if let Some(ip) = svc.pointer("/spec/clusterIP").and_then(Value::as_str) {
            if !ip.is_empty() && ip != "None" {
                keys.push(format!("{IP_KEYS}{ip}"));
            }
        }
        for p in ports(svc) {
            if let Some(n) = p.get("nodePort").and_then(Value::as_u64) {
                keys.push(format!("{PORT_KEYS}{n}"));
            }
        }
        keys.extend(health_check_node_port(svc).map(|n| format!("{PORT_KEYS}{n}")));
        keys
    }

    /// The 422 for a claim the client asked for that is taken.
    pub fn taken_error(&self, svc: &Value, key: &str) -> ApiError {
        let name = keelson_apimachinery::meta::name(svc);
        if let Some(ip) = key.strip_prefix(IP_KEYS) {
            invalid(
                name,
                "spec.clusterIPs",
                ip,
                &format!("failed to allocate IP {ip}: provided IP is already allocated"),
            )
        } else {
            let port = key.strip_prefix(PORT_KEYS).unwrap_or(key);
            let mut e = invalid(
                name,
                "spec.ports[0].nodePort",
                port,
                "provided port is already allocated",
            );
            e.causes[0].field = "spec.ports[0].nodePort".into();
            e
        }
    }
}

fn health_check_node_port(svc: &Value) -> Option<u64> {
    svc.pointer("/spec/healthCheckNodePort")
        .and_then(Value::as_u64)
        .filter(|n| *n > 0)
}

fn ports(svc: &Value) -> Vec<Value> {
    svc.pointer("/spec/ports")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn invalid(name: &str, field: &str, value: &str, detail: &str) -> ApiError {
    ApiError::invalid(
        "",
        "Service",
        name,
        vec![Cause::invalid(field, &json!(value), detail)],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_check_node_port_for_local_load_balancers_only() {
        let a = ServiceAllocator::new("10.96.0.0/12", (30000, 32767)).unwrap();
        let mut svc = json!({"spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Local", "ports": [{"port": 80}]}});
        let alloc = a.allocate(&mut svc, None).unwrap();
        let hc = svc["spec"]["healthCheckNodePort"]
            .as_u64()
            .expect("allocated");
        assert_ne!(Some(hc), svc["spec"]["ports"][0]["nodePort"].as_u64());
        assert!(alloc.claims.contains(&format!("{PORT_KEYS}{hc}")));
        assert!(a.release(&svc).contains(&format!("{PORT_KEYS}{hc}")));
        // Kept on update; released when the policy goes back to Cluster.
        let old = svc.clone();
        let mut same = json!({"spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Local", "ports": [{"port": 80}]}});
        a.allocate(&mut same, Some(&old)).unwrap();
        assert_eq!(same["spec"]["healthCheckNodePort"].as_u64(), Some(hc));
        let mut cluster = json!({"spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Cluster", "ports": [{"port": 80}]}});
        let alloc = a.allocate(&mut cluster, Some(&old)).unwrap();
        assert!(cluster["spec"].get("healthCheckNodePort").is_none());
        assert!(alloc.releases.contains(&format!("{PORT_KEYS}{hc}")));
    }

    #[test]
    fn allocates_in_range_and_keeps_on_update() {
        let a = ServiceAllocator::new("10.96.0.0/12", (30000, 32767)).unwrap();
        assert_eq!(a.first_ip().to_string(), "10.96.0.1");
        let mut svc = json!({"spec": {"type": "NodePort", "ports": [{"port": 80}]}});
        let alloc = a.allocate(&mut svc, None).unwrap();
        assert_eq!(alloc.claims.len(), 2);
        let ip: Ipv4Addr = svc["spec"]["clusterIP"].as_str().unwrap().parse().unwrap();
        assert!(a.contains(ip));
        let port = svc["spec"]["ports"][0]["nodePort"].as_u64().unwrap();
        assert!((30000..=32767).contains(&port));

        // An update that drops NodePort releases the port and keeps the IP.
        let old = svc.clone();
        let mut new = json!({"spec": {"type": "ClusterIP", "clusterIP": ip.to_string(), "ports": [{"port": 80, "nodePort": port}]}});
        let alloc = a.allocate(&mut new, Some(&old)).unwrap();
        assert!(alloc.claims.is_empty());
        assert_eq!(alloc.releases, vec![format!("{PORT_KEYS}{port}")]);
        assert!(new["spec"]["ports"][0].get("nodePort").is_none());
    }

    #[test]
    fn rejects_ip_outside_range() {
        let a = ServiceAllocator::new("10.96.0.0/12", (30000, 32767)).unwrap();
        let mut svc = json!({"spec": {"clusterIP": "192.168.1.1", "ports": [{"port": 80}]}});
        assert_eq!(a.allocate(&mut svc, None).unwrap_err().code, 422);
    }
}
