//! What keelson-dns writes to the API: the `kube-dns` Service (created when absent,
//! never overwritten) and, per node, an EndpointSlice naming this instance as one of
//! its endpoints, owned by the Node so that deleting the Node removes it.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use keelson_client::{Api, Client, DeleteParams, PostParams};

use crate::zone::SERVICE_NAME_LABEL;

pub const NAMESPACE: &str = "kube-system";
pub const SERVICE_NAME: &str = "kube-dns";
/// The EndpointSlice label that says who keeps a slice (the endpointslice controller
/// leaves slices managed by others alone).
pub use keelson_client::well_known::ENDPOINTSLICE_MANAGED_BY_LABEL as MANAGED_BY_LABEL;
pub const MANAGED_BY: &str = "keelson-dns";
pub const METRICS_PORT: u16 = 9153;
/// How long a withdrawn endpoint stays (not ready) before it is deleted, so that
/// proxies stop sending new queries while in-flight ones are still answered.
pub const LAME_DUCK: Duration = Duration::from_secs(1);

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The `kube-dns` Service: selector-less (its endpoints are published by each
/// instance), on `service_ip`.
pub fn kube_dns_service(service_ip: IpAddr) -> Service {
    let port = |name: &str, protocol: &str, port: u16| ServicePort {
        name: Some(name.into()),
        protocol: Some(protocol.into()),
        port: port.into(),
        target_port: Some(IntOrString::Int(port.into())),
        ..Default::default()
    };
    Service {
        metadata: ObjectMeta {
            name: Some(SERVICE_NAME.into()),
            namespace: Some(NAMESPACE.into()),
            labels: Some(labels(&[
                ("k8s-app", "kube-dns"),
                ("kubernetes.io/cluster-service", "true"),
            ])),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            cluster_ip: Some(service_ip.to_string()),
            cluster_ips: Some(vec![service_ip.to_string()]),
            ports: Some(vec![
                port("dns", "UDP", 53),
                port("dns-tcp", "TCP", 53),
                port("metrics", "TCP", METRICS_PORT),
            ]),
            type_: Some("ClusterIP".into()),
            ..Default::default()
        }),
        status: None,
    }
}

/// Create the `kube-dns` Service unless it exists (whatever its contents).
pub async fn ensure_service(client: &Client, service_ip: IpAddr) -> anyhow::Result<()> {
    let api: Api<Service> = Api::namespaced(client.clone(), NAMESPACE);
    if api.get_opt(SERVICE_NAME).await?.is_some() {
        return Ok(());
    }
    match api
        .create(&PostParams::default(), &kube_dns_service(service_ip))
        .await
    {
        Ok(_) => {
            tracing::info!(ip = %service_ip, "created the kube-dns Service");
            Ok(())
        }
        Err(e) if e.is_already_exists() => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// This instance's endpoint of `kube-dns`.
#[derive(Clone, Debug)]
pub struct EndpointPublisher {
    pub client: Client,
    pub node_name: String,
    pub address: IpAddr,
    /// The DNS port (`--port`).
    pub port: u16,
}

/// `kube-dns-<node>`.
pub fn slice_name(node_name: &str) -> String {
    format!("{SERVICE_NAME}-{node_name}")
}

impl EndpointPublisher {
    pub fn slice_name(&self) -> String {
        slice_name(&self.node_name)
    }

    fn api(&self) -> Api<EndpointSlice> {
        Api::namespaced(self.client.clone(), NAMESPACE)
    }

    /// The slice as it should be, owned by the Node with `node_uid`.
    pub fn desired(&self, node_uid: &str, ready: bool) -> EndpointSlice {
        let port = |name: &str, protocol: &str, port: u16| EndpointPort {
            name: Some(name.into()),
            protocol: Some(protocol.into()),
            port: Some(port.into()),
            ..Default::default()
        };
        EndpointSlice {
            metadata: ObjectMeta {
                name: Some(self.slice_name()),
                namespace: Some(NAMESPACE.into()),
                labels: Some(labels(&[
                    (SERVICE_NAME_LABEL, SERVICE_NAME),
                    (MANAGED_BY_LABEL, MANAGED_BY),
                ])),
                owner_references: Some(vec![OwnerReference {
                    api_version: "v1".into(),
                    kind: "Node".into(),
                    name: self.node_name.clone(),
                    uid: node_uid.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            },
            address_type: if self.address.is_ipv4() {
                "IPv4"
            } else {
                "IPv6"
            }
            .into(),
            endpoints: vec![Endpoint {
                addresses: vec![self.address.to_string()],
                conditions: Some(EndpointConditions {
                    ready: Some(ready),
                    serving: Some(ready),
                    terminating: Some(!ready),
                }),
                node_name: Some(self.node_name.clone()),
                ..Default::default()
            }],
            ports: Some(vec![
                port("dns", "UDP", self.port),
                port("dns-tcp", "TCP", self.port),
                port("metrics", "TCP", METRICS_PORT),
            ]),
        }
    }

    /// Create the slice, or bring it back to [`Self::desired`] if it drifted.
    pub async fn reconcile(&self, ready: bool) -> anyhow::Result<()> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let node = nodes
            .get_opt(&self.node_name)
            .await?
            .ok_or_else(|| anyhow::anyhow!("Node {} does not exist (yet)", self.node_name))?;
        let uid = node
            .metadata
            .uid
            .ok_or_else(|| anyhow::anyhow!("Node {} has no uid", self.node_name))?;
        let want = self.desired(&uid, ready);
        let api = self.api();
        match api.get_opt(&self.slice_name()).await? {
            None => match api.create(&PostParams::default(), &want).await {
                Ok(_) => {
                    tracing::info!(slice = %self.slice_name(), address = %self.address, "published the kube-dns endpoint");
                    Ok(())
                }
                Err(e) if e.is_already_exists() => Ok(()),
                Err(e) => Err(e.into()),
            },
            Some(have) if same(&have, &want) => Ok(()),
            Some(have) => {
                let mut next = want;
                let mut meta = have.metadata.clone();
                let mut l = meta.labels.take().unwrap_or_default();
                l.extend(next.metadata.labels.take().unwrap_or_default());
                meta.labels = Some(l);
                meta.owner_references = next.metadata.owner_references.take();
                next.metadata = meta;
                api.replace(&self.slice_name(), &PostParams::default(), &next)
                    .await?;
                tracing::info!(slice = %self.slice_name(), ready, "updated the kube-dns endpoint");
                Ok(())
            }
        }
    }

    /// Graceful shutdown: mark the endpoint not ready, wait [`LAME_DUCK`], delete it.
    pub async fn withdraw(&self) -> anyhow::Result<()> {
        if let Err(e) = self.reconcile(false).await {
            tracing::warn!(error = %format!("{e:#}"), "marking the kube-dns endpoint not ready");
        }
        tokio::time::sleep(LAME_DUCK).await;
        match self
            .api()
            .delete(&self.slice_name(), &DeleteParams::default())
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// Whether `have` already says what `want` says (other labels and fields may differ).
fn same(have: &EndpointSlice, want: &EndpointSlice) -> bool {
    let labels_ok = want
        .metadata
        .labels
        .iter()
        .flatten()
        .all(|(k, v)| have.metadata.labels.as_ref().and_then(|l| l.get(k)) == Some(v));
    let owners = |s: &EndpointSlice| {
        s.metadata
            .owner_references
            .iter()
            .flatten()
            .map(|o| (o.kind.clone(), o.name.clone(), o.uid.clone()))
            .collect::<Vec<_>>()
    };
    let endpoints = |s: &EndpointSlice| {
        s.endpoints
            .iter()
            .map(|e| {
                let c = e.conditions.clone().unwrap_or_default();
                (
                    e.addresses.clone(),
                    e.node_name.clone(),
                    c.ready,
                    c.serving,
                    c.terminating,
                )
            })
            .collect::<Vec<_>>()
    };
    let ports = |s: &EndpointSlice| {
        s.ports
            .iter()
            .flatten()
            .map(|p| (p.name.clone(), p.protocol.clone(), p.port))
            .collect::<Vec<_>>()
    };
    labels_ok
        && have.address_type == want.address_type
        && owners(have) == owners(want)
        && endpoints(have) == endpoints(want)
        && ports(have) == ports(want)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_is_selectorless_on_the_service_ip_with_three_ports() {
        let s = kube_dns_service("10.96.0.10".parse().unwrap());
        let spec = s.spec.unwrap();
        assert!(spec.selector.is_none());
        assert_eq!(spec.cluster_ip.as_deref(), Some("10.96.0.10"));
        let ports: Vec<_> = spec
            .ports
            .unwrap()
            .into_iter()
            .map(|p| (p.name.unwrap(), p.protocol.unwrap(), p.port))
            .collect();
        assert_eq!(
            ports,
            vec![
                ("dns".into(), "UDP".into(), 53),
                ("dns-tcp".into(), "TCP".into(), 53),
                ("metrics".into(), "TCP".into(), 9153)
            ]
        );
        let l = s.metadata.labels.unwrap();
        assert_eq!(l["k8s-app"], "kube-dns");
        assert_eq!(l["kubernetes.io/cluster-service"], "true");
    }
}
