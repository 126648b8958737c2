//! Where a Service port leads: the ready addresses of its Endpoints with the matching
//! target port, as kube-apiserver's `ResolveEndpoint` finds them. `services/proxy` and
//! admission webhooks given as a Service both go through here.

use super::{decode_kv, key};
use crate::storage::Storage;
use keelson_apimachinery::ApiError;
use serde_json::Value;

async fn read(
    storage: &Storage,
    plural: &str,
    ns: &str,
    name: &str,
) -> Result<Option<Value>, ApiError> {
    let rt = keelson_resources::find("", plural).expect("core kinds are served");
    match storage.get(&key(rt, ns, name)).await {
        Ok(Some(kv)) => decode_kv(&kv).map(Some),
        Ok(None) => Ok(None),
        Err(e) => Err(super::storage_error(e, rt, name)),
    }
}

/// The (address, port) pairs behind `port` (a port's name or number) of Service
/// `namespace/name`: 404 when the Service is missing, 503 when the port is not one of
/// its ports or nothing is ready behind it.
pub async fn service_backends(
    storage: &Storage,
    namespace: &str,
    name: &str,
    port: &str,
) -> Result<Vec<(String, u16)>, ApiError> {
    let svc = read(storage, "services", namespace, name)
        .await?
        .ok_or_else(|| ApiError::not_found("", "services", name))?;
    let port_name = svc
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|p| {
            let pname = p.get("name").and_then(Value::as_str).unwrap_or("");
            let number = p.get("port").and_then(Value::as_u64).map(|n| n.to_string());
            pname == port || number.as_deref() == Some(port)
        })
        .map(|p| {
            p.get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        })
        .ok_or_else(|| {
            ApiError::unavailable(format!(
                "no service port {port:?} found for service {name:?}"
            ))
        })?;
    let no_endpoints =
        || ApiError::unavailable(format!("no endpoints available for service {name:?}"));
    let eps = read(storage, "endpoints", namespace, name)
        .await?
        .ok_or_else(no_endpoints)?;
    let mut candidates: Vec<(String, u16)> = Vec::new();
    for subset in eps
        .get("subsets")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let port = subset
            .get("ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|p| p.get("name").and_then(Value::as_str).unwrap_or("") == port_name)
            .and_then(|p| p.get("port")?.as_u64())
            .and_then(|p| u16::try_from(p).ok());
        let Some(port) = port else { continue };
        // `addresses` are the ready ones (`notReadyAddresses` are not).
        for addr in subset
            .get("addresses")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(ip) = addr.get("ip").and_then(Value::as_str) {
                candidates.push((ip.to_string(), port));
            }
        }
    }
    if candidates.is_empty() {
        return Err(no_endpoints());
    }
    Ok(candidates)
}
