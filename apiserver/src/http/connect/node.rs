//! A node's agent address: `status.addresses` by preferred type, port from
//! `status.daemonEndpoints.kubeletEndpoint.Port` (10250 when unset), as kube-apiserver's
//! kubelet connection info does.

use super::ApiState;
use keelson_apimachinery::ApiError;
use serde_json::Value;

/// The kubelet's default port.
pub const DEFAULT_KUBELET_PORT: u16 = 10250;

/// Where a node's agent listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeAddress {
    pub host: String,
    pub kubelet_port: u16,
}

/// Read the Node `name` and pick its address.
pub async fn resolve(state: &ApiState, name: &str) -> Result<NodeAddress, ApiError> {
    let nodes = keelson_resources::find("", "nodes").expect("nodes are served");
    let node = state.registry.get(nodes, "", name).await?;
    address_of(&node, &state.connect.preferred_address_types)
        .map_err(|why| ApiError::unavailable(format!("node \"{name}\": {why}")))
}

/// The first address of the first preferred type that has one.
pub fn address_of(node: &Value, preferred: &[String]) -> Result<NodeAddress, String> {
    let addresses: Vec<(&str, &str)> = node
        .pointer("/status/addresses")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|a| {
                    Some((
                        a.get("type")?.as_str()?,
                        a.get("address")?.as_str().filter(|s| !s.is_empty())?,
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    let host = preferred
        .iter()
        .find_map(|want| {
            addresses
                .iter()
                .find(|(ty, _)| ty == want)
                .map(|(_, a)| a.to_string())
        })
        .ok_or_else(|| {
            let known: Vec<String> = addresses
                .iter()
                .map(|(ty, a)| format!("{ty}: {a}"))
                .collect();
            format!(
                "no address of the preferred types [{}]; known addresses: [{}]",
                preferred.join(", "),
                known.join(", ")
            )
        })?;
    let port = node
        .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
        .and_then(Value::as_u64)
        .filter(|p| (1..=u64::from(u16::MAX)).contains(p))
        .map(|p| p as u16)
        .unwrap_or(DEFAULT_KUBELET_PORT);
    Ok(NodeAddress {
        host,
        kubelet_port: port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn preferred() -> Vec<String> {
        ["InternalIP", "ExternalIP", "Hostname"]
            .map(String::from)
            .to_vec()
    }

    #[test]
    fn preferred_type_wins_and_port_defaults() {
        let node = json!({"status": {"addresses": [
            {"type": "Hostname", "address": "n1"},
            {"type": "ExternalIP", "address": "203.0.113.5"},
            {"type": "InternalIP", "address": "10.0.0.5"},
        ]}});
        assert_eq!(
            address_of(&node, &preferred()).unwrap(),
            NodeAddress {
                host: "10.0.0.5".into(),
                kubelet_port: 10250
            }
        );
        let only_host = json!({"status": {"addresses": [{"type": "Hostname", "address": "n1"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 11250}}}});
        assert_eq!(
            address_of(&only_host, &preferred()).unwrap(),
            NodeAddress {
                host: "n1".into(),
                kubelet_port: 11250
            }
        );
        let err = address_of(&only_host, &["InternalIP".to_string()]).unwrap_err();
        assert!(err.contains("known addresses: [Hostname: n1]"), "{err}");
        assert!(address_of(&json!({}), &preferred()).is_err());
        let bad_port = json!({"status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.5"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 70000}}}});
        assert_eq!(
            address_of(&bad_port, &preferred()).unwrap().kubelet_port,
            10250
        );
    }
}
