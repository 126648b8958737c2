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
//! Other requests wait for an operator (`kubectl certificate approve|deny`). A request
//! recognized but not allowed is retried with backoff, as Kubernetes does, since the
//! requester's permissions may change.

use std::sync::Arc;

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use keelson_client::runtime::{HandlerFuncs, Store};
use keelson_client::{Api, KubeObject, PostParams};
use keelson_component::{Queue, Requeue};
use keelson_pki::csr::parse_csr;

use super::csrsigning::{check_for_signer, has_condition, KUBE_APISERVER_CLIENT_KUBELET};
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
    requests.wait_for_sync().await;
    let controller = Arc::new(Approving {
        ctx: ctx.clone(),
        requests: requests.store(),
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
        let issued = csr
            .status
            .as_ref()
            .and_then(|s| s.certificate.as_ref())
            .is_some_and(|c| !c.0.is_empty());
        if csr.spec.signer_name != KUBE_APISERVER_CLIENT_KUBELET
            || issued
            || has_condition(&csr, "Approved")
            || has_condition(&csr, "Denied")
        {
            return Ok(None);
        }
        let Ok(info) = parse_csr(&csr.spec.request.0) else {
            return Ok(None);
        };
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
        let mut approved = (*csr).clone();
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
            Ok(_) => {
                tracing::info!(csr = name, "csrapproving: approved ({subresource})");
                Ok(None)
            }
            Err(e) if e.is_conflict() || e.is_not_found() => Ok(None),
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
