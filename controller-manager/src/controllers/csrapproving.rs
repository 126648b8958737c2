//! CSR approving (Kubernetes' pkg/controller/certificates/approver, `csrapproving`):
//! approves node client certificate requests (`kubernetes.io/kube-apiserver-client-kubelet`)
//! that pass the kubelet client checks, when the requester may, as a
//! SubjectAccessReview answers:
//!
//! - a node renewing its own certificate (`spec.username` is the request's common name,
//!   `system:node:<name>`): `create` on `certificatesigningrequests/selfnodeclient`;
//! - anyone else asking for a node (a bootstrap token): `create` on
//!   `certificatesigningrequests/nodeclient`.
//!
//! With `--approve-kubelet-serving-certificates` (off by default; Kubernetes has no
//! such approver and leaves these to an operator or a third party) it also approves
//! node serving certificate requests (`kubernetes.io/kubelet-serving`) whose names the
//! Node vouches for ([`serving_verdict`]): the requester is `system:node:<n>` in
//! `system:nodes`, the subject is the same, the usages are exactly digital signature
//! and server auth (key encipherment too for RSA keys), and every DNS and IP name is
//! one of Node `<n>`'s `status.addresses`. A request that fails a check stays pending
//! (an operator may still approve it); it is looked at again when its Node changes.
//!
//! Other requests wait for an operator (`kubectl certificate approve|deny`). A node
//! client request recognized but not allowed is retried with backoff, as Kubernetes
//! does, since the requester's permissions may change.

use std::sync::Arc;

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition,
};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use keelson_client::runtime::{HandlerFuncs, Store};
use keelson_client::{Api, KubeObject, PostParams};
use keelson_component::{Queue, Requeue};
use keelson_pki::csr::{parse_csr, CsrInfo};

use super::csrsigning::{
    check_for_signer, has_condition, KUBELET_SERVING, KUBE_APISERVER_CLIENT_KUBELET,
};
use crate::Context;

pub async fn run(ctx: Context) {
    let requests = ctx.informers.get::<CertificateSigningRequest>();
    let queue: Queue<String> = Queue::new("csrapproving", &ctx.queue_metrics);
    let (q1, q2) = (queue.clone(), queue.clone());
    requests.add_handler(
        HandlerFuncs::new()
            .on_add(move |csr: Arc<CertificateSigningRequest>| q1.add(csr.name().to_string()))
            .on_update(move |_, csr: Arc<CertificateSigningRequest>| {
                q2.add(csr.name().to_string())
            }),
    );
    let nodes = ctx
        .options
        .approve_kubelet_serving_certificates
        .then(|| ctx.informers.get::<Node>());
    if let Some(nodes) = &nodes {
        // A serving request left pending for names its Node did not have yet is
        // looked at again when the Node changes.
        let (q3, q4) = (queue.clone(), queue.clone());
        let (s3, s4) = (requests.store(), requests.store());
        nodes.add_handler(
            HandlerFuncs::new()
                .on_add(move |node: Arc<Node>| requeue_serving(&s3, &q3, node.name()))
                .on_update(move |_, node: Arc<Node>| requeue_serving(&s4, &q4, node.name())),
        );
        nodes.wait_for_sync().await;
    }
    requests.wait_for_sync().await;
    let controller = Arc::new(Approving {
        ctx: ctx.clone(),
        requests: requests.store(),
        nodes: nodes.map(|n| n.store()),
    });
    queue
        .run(ctx.options.concurrent_syncs, move |name: String| {
            let c = controller.clone();
            async move { c.sync(&name).await }
        })
        .await;
}

struct Approving {
    ctx: Context,
    requests: Store<CertificateSigningRequest>,
    /// With `--approve-kubelet-serving-certificates`: the Nodes whose addresses vouch
    /// for serving certificate names.
    nodes: Option<Store<Node>>,
}

/// Queue the pending serving requests of node `node`.
fn requeue_serving(requests: &Store<CertificateSigningRequest>, queue: &Queue<String>, node: &str) {
    let requester = format!("system:node:{node}");
    for csr in requests.list() {
        if csr.spec.signer_name == KUBELET_SERVING
            && csr.spec.username.as_deref() == Some(requester.as_str())
            && !decided(&csr)
        {
            queue.add(csr.name().to_string());
        }
    }
}

/// Issued, approved or denied already.
fn decided(csr: &CertificateSigningRequest) -> bool {
    let issued = csr
        .status
        .as_ref()
        .and_then(|s| s.certificate.as_ref())
        .is_some_and(|c| !c.0.is_empty());
    issued || has_condition(csr, "Approved") || has_condition(csr, "Denied")
}

/// Why a kubelet-serving request may not be approved automatically, or `Ok` when the
/// requester is the node it names and the Node's addresses vouch for every name.
/// `node` is the Node the requester is (`None`: no such Node).
pub fn serving_verdict(
    csr: &CertificateSigningRequest,
    info: &CsrInfo,
    node: Option<&Node>,
) -> Result<(), String> {
    let requester = csr.spec.username.as_deref().unwrap_or_default();
    let Some(node_name) = requester.strip_prefix("system:node:") else {
        return Err(format!("requester {requester:?} is not a node"));
    };
    if !csr
        .spec
        .groups
        .as_ref()
        .is_some_and(|g| g.iter().any(|g| g == "system:nodes"))
    {
        return Err(format!(
            "requester {requester:?} is not in group system:nodes"
        ));
    }
    if info.common_name != requester {
        return Err(format!(
            "subject common name {:?} is not the requester {requester:?}",
            info.common_name
        ));
    }
    // Subject organization, usages, no e-mail or URI names: what the signer requires.
    check_for_signer(
        KUBELET_SERVING,
        info,
        csr.spec.usages.as_deref().unwrap_or_default(),
    )?;
    let Some(node) = node else {
        return Err(format!("node {node_name:?} does not exist"));
    };
    let addresses = node
        .status
        .as_ref()
        .and_then(|s| s.addresses.as_deref())
        .unwrap_or_default();
    let has = |types: &[&str], matches: &dyn Fn(&str) -> bool| {
        addresses
            .iter()
            .any(|a| types.contains(&a.type_.as_str()) && matches(&a.address))
    };
    for dns in &info.dns_names {
        if !has(&["Hostname", "InternalDNS", "ExternalDNS"], &|a| {
            a.eq_ignore_ascii_case(dns)
        }) {
            return Err(format!(
                "DNS name {dns:?} is not an address of node {node_name:?}"
            ));
        }
    }
    for ip in &info.ip_addresses {
        if !has(&["InternalIP", "ExternalIP"], &|a| {
            a.parse::<std::net::IpAddr>().ok() == Some(*ip)
        }) {
            return Err(format!(
                "IP address {ip} is not an address of node {node_name:?}"
            ));
        }
    }
    Ok(())
}

/// Which permission approves a node client request, and the condition's message.
pub fn recognizer(
    csr: &CertificateSigningRequest,
    common_name: &str,
) -> (&'static str, &'static str) {
    if csr.spec.username.as_deref() == Some(common_name) {
        (
            "selfnodeclient",
            "Auto approving self kubelet client certificate after SubjectAccessReview.",
        )
    } else {
        (
            "nodeclient",
            "Auto approving kubelet client certificate after SubjectAccessReview.",
        )
    }
}

impl Approving {
    async fn sync(&self, name: &str) -> anyhow::Result<Requeue> {
        let Some(csr) = self.requests.get_by_name(None, name) else {
            return Ok(None);
        };
        if decided(&csr) {
            return Ok(None);
        }
        let Ok(info) = parse_csr(&csr.spec.request.0) else {
            return Ok(None);
        };
        if csr.spec.signer_name == KUBELET_SERVING {
            return self.sync_serving(&csr, &info).await;
        }
        if csr.spec.signer_name != KUBE_APISERVER_CLIENT_KUBELET {
            return Ok(None);
        }
        // Not a valid node client request: the signer will fail it.
        if check_for_signer(
            KUBE_APISERVER_CLIENT_KUBELET,
            &info,
            csr.spec.usages.as_deref().unwrap_or_default(),
        )
        .is_err()
        {
            return Ok(None);
        }
        let (subresource, message) = recognizer(&csr, &info.common_name);
        if !self.allowed(&csr, subresource).await? {
            anyhow::bail!(
                "recognized csr {name:?} as {subresource} but subject access review was not approved"
            );
        }
        if self.approve(&csr, message).await? {
            tracing::info!(csr = name, "csrapproving: approved ({subresource})");
        }
        Ok(None)
    }

    /// A kubelet-serving request: approved when its Node vouches for it and
    /// `--approve-kubelet-serving-certificates` is on; otherwise left pending.
    async fn sync_serving(
        &self,
        csr: &CertificateSigningRequest,
        info: &CsrInfo,
    ) -> anyhow::Result<Requeue> {
        let Some(nodes) = &self.nodes else {
            return Ok(None);
        };
        let node = csr
            .spec
            .username
            .as_deref()
            .and_then(|u| u.strip_prefix("system:node:"))
            .and_then(|n| nodes.get_by_name(None, n));
        if let Err(why) = serving_verdict(csr, info, node.as_deref()) {
            tracing::info!(csr = csr.name(), reason = %why, "csrapproving: serving request left for an operator");
            return Ok(None);
        }
        let message = "Auto approving kubelet serving certificate: the Node's addresses name it.";
        if self.approve(csr, message).await? {
            tracing::info!(csr = csr.name(), "csrapproving: approved (kubelet serving)");
        }
        Ok(None)
    }

    /// Add the Approved condition through the approval subresource; `false` when the
    /// request changed or went meanwhile (the newer version comes as an update).
    async fn approve(
        &self,
        csr: &CertificateSigningRequest,
        message: &str,
    ) -> anyhow::Result<bool> {
        let name = csr.name();
        let mut approved = csr.clone();
        approved
            .status
            .get_or_insert_with(Default::default)
            .conditions
            .get_or_insert_with(Vec::new)
            .push(CertificateSigningRequestCondition {
                type_: "Approved".into(),
                status: "True".into(),
                reason: Some("AutoApproved".into()),
                message: Some(message.into()),
                last_update_time: Some(Time(jiff::Timestamp::now())),
                ..Default::default()
            });
        let api: Api<CertificateSigningRequest> = Api::all(self.ctx.client.clone());
        let result: keelson_client::Result<CertificateSigningRequest> = api
            .replace_subresource("approval", name, &PostParams::default(), &approved)
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if e.is_conflict() || e.is_not_found() => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// May the requester `create` `certificatesigningrequests/<subresource>`?
    async fn allowed(
        &self,
        csr: &CertificateSigningRequest,
        subresource: &str,
    ) -> anyhow::Result<bool> {
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: csr.spec.username.clone(),
                uid: csr.spec.uid.clone(),
                groups: csr.spec.groups.clone(),
                extra: csr.spec.extra.clone(),
                resource_attributes: Some(ResourceAttributes {
                    group: Some("certificates.k8s.io".into()),
                    resource: Some("certificatesigningrequests".into()),
                    subresource: Some(subresource.into()),
                    verb: Some("create".into()),
                    ..Default::default()
                }),
                non_resource_attributes: None,
            },
            ..Default::default()
        };
        let api: Api<SubjectAccessReview> = Api::all(self.ctx.client.clone());
        let answer = api.create(&PostParams::default(), &review).await?;
        Ok(answer.status.is_some_and(|s| s.allowed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::certificates::v1::CertificateSigningRequestSpec;
    use k8s_openapi::api::core::v1::{NodeAddress, NodeStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use k8s_openapi::ByteString;
    use keelson_pki::csr::new_key_and_csr;

    fn node(name: &str, addresses: &[(&str, &str)]) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            status: Some(NodeStatus {
                addresses: Some(
                    addresses
                        .iter()
                        .map(|(t, a)| NodeAddress {
                            type_: t.to_string(),
                            address: a.to_string(),
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// A serving request from `requester` (in `groups`) for `cn`, the DNS and IP names
    /// and the usages.
    fn request(
        requester: &str,
        groups: &[&str],
        cn: &str,
        dns: &[&str],
        ips: &[&str],
        usages: &[&str],
    ) -> (CertificateSigningRequest, CsrInfo) {
        let dns: Vec<String> = dns.iter().map(|d| d.to_string()).collect();
        let ips: Vec<std::net::IpAddr> = ips.iter().map(|i| i.parse().unwrap()).collect();
        let (_, pem) = new_key_and_csr(cn, &["system:nodes"], &dns, &ips).unwrap();
        let info = parse_csr(pem.as_bytes()).unwrap();
        let csr = CertificateSigningRequest {
            spec: CertificateSigningRequestSpec {
                request: ByteString(pem.into_bytes()),
                signer_name: KUBELET_SERVING.into(),
                username: Some(requester.into()),
                groups: Some(groups.iter().map(|g| g.to_string()).collect()),
                usages: Some(usages.iter().map(|u| u.to_string()).collect()),
                ..Default::default()
            },
            ..Default::default()
        };
        (csr, info)
    }

    const SERVING: &[&str] = &["digital signature", "server auth"];
    const NODES: &[&str] = &["system:nodes", "system:authenticated"];

    #[test]
    fn a_nodes_own_names_are_approved() {
        let n1 = node("n1", &[("InternalIP", "10.0.0.5"), ("Hostname", "n1")]);
        let (csr, info) = request(
            "system:node:n1",
            NODES,
            "system:node:n1",
            &["N1"],
            &["10.0.0.5"],
            SERVING,
        );
        assert_eq!(serving_verdict(&csr, &info, Some(&n1)), Ok(()));
        // Fewer names than the Node has are fine too.
        let (csr, info) = request(
            "system:node:n1",
            NODES,
            "system:node:n1",
            &[],
            &["10.0.0.5"],
            SERVING,
        );
        assert_eq!(serving_verdict(&csr, &info, Some(&n1)), Ok(()));
    }

    #[test]
    fn a_name_the_node_does_not_have_is_left_pending() {
        let n1 = node("n1", &[("InternalIP", "10.0.0.5"), ("Hostname", "n1")]);
        let (csr, info) = request(
            "system:node:n1",
            NODES,
            "system:node:n1",
            &["n1"],
            &["10.0.0.5", "10.0.0.99"],
            SERVING,
        );
        assert_eq!(
            serving_verdict(&csr, &info, Some(&n1)).unwrap_err(),
            "IP address 10.0.0.99 is not an address of node \"n1\""
        );
        let (csr, info) = request(
            "system:node:n1",
            NODES,
            "system:node:n1",
            &["kubernetes.default.svc"],
            &[],
            SERVING,
        );
        assert_eq!(
            serving_verdict(&csr, &info, Some(&n1)).unwrap_err(),
            "DNS name \"kubernetes.default.svc\" is not an address of node \"n1\""
        );
        // An IP address is no DNS name: the types must agree.
        let (csr, info) = request(
            "system:node:n1",
            NODES,
            "system:node:n1",
            &["n1"],
            &[],
            SERVING,
        );
        let by_ip_only = node("n1", &[("InternalIP", "10.0.0.5")]);
        assert!(serving_verdict(&csr, &info, Some(&by_ip_only)).is_err());
        // No Node yet: pending until it registers.
        assert_eq!(
            serving_verdict(&csr, &info, None).unwrap_err(),
            "node \"n1\" does not exist"
        );
    }

    #[test]
    fn usages_must_be_exactly_the_serving_ones() {
        let n1 = node("n1", &[("InternalIP", "10.0.0.5")]);
        for usages in [
            &["digital signature", "server auth", "client auth"][..],
            &["server auth"][..],
            // Key encipherment is for RSA keys; this one is ECDSA.
            &["digital signature", "key encipherment", "server auth"][..],
        ] {
            let (csr, info) = request(
                "system:node:n1",
                NODES,
                "system:node:n1",
                &[],
                &["10.0.0.5"],
                usages,
            );
            assert!(
                serving_verdict(&csr, &info, Some(&n1))
                    .unwrap_err()
                    .starts_with("usages did not match"),
                "{usages:?}"
            );
        }
    }

    #[test]
    fn only_the_node_itself_may_ask() {
        let n1 = node("n1", &[("InternalIP", "10.0.0.5")]);
        let ip = &["10.0.0.5"];
        // Another node asking for n1's names.
        let (csr, info) = request("system:node:n2", NODES, "system:node:n1", &[], ip, SERVING);
        assert_eq!(
            serving_verdict(&csr, &info, Some(&n1)).unwrap_err(),
            "subject common name \"system:node:n1\" is not the requester \"system:node:n2\""
        );
        // A user, even an administrator.
        let (csr, info) = request(
            "kubernetes-admin",
            &["system:masters"],
            "system:node:n1",
            &[],
            ip,
            SERVING,
        );
        assert_eq!(
            serving_verdict(&csr, &info, Some(&n1)).unwrap_err(),
            "requester \"kubernetes-admin\" is not a node"
        );
        // A node's name without the nodes' group.
        let (csr, info) = request(
            "system:node:n1",
            &["system:authenticated"],
            "system:node:n1",
            &[],
            ip,
            SERVING,
        );
        assert_eq!(
            serving_verdict(&csr, &info, Some(&n1)).unwrap_err(),
            "requester \"system:node:n1\" is not in group system:nodes"
        );
    }
}
