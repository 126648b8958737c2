//! CSR signing (Kubernetes' pkg/controller/certificates/signer): the cluster CA
//! (`--cluster-signing-cert-file`, `--cluster-signing-key-file`) issues certificates for
//! approved CertificateSigningRequests of the built-in signers:
//!
//! - `kubernetes.io/kube-apiserver-client`: client certificates for any subject;
//! - `kubernetes.io/kube-apiserver-client-kubelet`: a node's client certificate
//!   (`system:node:<name>` in `system:nodes`, client auth, no SANs);
//! - `kubernetes.io/kubelet-serving`: a node's serving certificate (the same subject,
//!   server auth, DNS or IP SANs only).
//!
//! A certificate lives `expirationSeconds` (at least ten minutes) or
//! `--cluster-signing-duration`, whichever is shorter, and never past the CA. A request
//! its signer refuses gets a `Failed` condition saying why, as Kubernetes' signer does;
//! requests for other signers are left to their own controllers.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::ByteString;
use keelson_client::runtime::{HandlerFuncs, Store};
use keelson_client::{Api, KubeObject, PostParams};
use keelson_component::{Queue, Requeue};
use keelson_pki::csr::{parse_csr, CsrInfo, KeyAlgorithm, Signer};

use crate::Context;

pub const KUBE_APISERVER_CLIENT: &str = "kubernetes.io/kube-apiserver-client";
pub const KUBE_APISERVER_CLIENT_KUBELET: &str = "kubernetes.io/kube-apiserver-client-kubelet";
pub const KUBELET_SERVING: &str = "kubernetes.io/kubelet-serving";

/// The shortest certificate issued, whatever `expirationSeconds` asks.
const MIN_DURATION: Duration = Duration::from_secs(600);

pub async fn run(ctx: Context) {
    let (Some(cert), Some(key)) = (
        ctx.options.cluster_signing_cert_file.clone(),
        ctx.options.cluster_signing_key_file.clone(),
    ) else {
        tracing::info!(
            "csrsigning: no --cluster-signing-cert-file/--cluster-signing-key-file; not signing"
        );
        return;
    };
    let signer = match Signer::load(&cert, &key) {
        Ok(s) => s,
        Err(e) => return tracing::error!(error = %e, "csrsigning: the signing CA"),
    };
    let requests = ctx.informers.get::<CertificateSigningRequest>();
    let queue: Queue<String> = Queue::new("csrsigning", &ctx.queue_metrics);
    let (q1, q2) = (queue.clone(), queue.clone());
    requests.add_handler(
        HandlerFuncs::new()
            .on_add(move |csr: Arc<CertificateSigningRequest>| q1.add(csr.name().to_string()))
            .on_update(move |_, csr: Arc<CertificateSigningRequest>| {
                q2.add(csr.name().to_string())
            }),
    );
    requests.wait_for_sync().await;
    let controller = Arc::new(Signing {
        ctx: ctx.clone(),
        requests: requests.store(),
        signer,
    });
    queue
        .run(ctx.options.concurrent_syncs, move |name: String| {
            let c = controller.clone();
            async move { c.sync(&name).await }
        })
        .await;
}

struct Signing {
    ctx: Context,
    requests: Store<CertificateSigningRequest>,
    signer: Signer,
}

/// Whether the request carries a condition of type `t` (status True).
pub fn has_condition(csr: &CertificateSigningRequest, t: &str) -> bool {
    csr.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == t && c.status == "True"))
}

fn has_certificate(csr: &CertificateSigningRequest) -> bool {
    csr.status
        .as_ref()
        .and_then(|s| s.certificate.as_ref())
        .is_some_and(|c| !c.0.is_empty())
}

/// How long the certificate for a request lives (Kubernetes' `duration`).
pub fn lifetime(max: Duration, expiration_seconds: Option<i32>) -> Duration {
    match expiration_seconds {
        Some(s) => Duration::from_secs(s.max(0) as u64)
            .max(MIN_DURATION)
            .min(max),
        None => max,
    }
}

impl Signing {
    async fn sync(&self, name: &str) -> anyhow::Result<Requeue> {
        let Some(csr) = self.requests.get_by_name(None, name) else {
            return Ok(None);
        };
        let signer_name = csr.spec.signer_name.as_str();
        if ![
            KUBE_APISERVER_CLIENT,
            KUBE_APISERVER_CLIENT_KUBELET,
            KUBELET_SERVING,
        ]
        .contains(&signer_name)
            || has_certificate(&csr)
            || !has_condition(&csr, "Approved")
            || has_condition(&csr, "Denied")
            || has_condition(&csr, "Failed")
        {
            return Ok(None);
        }
        let info = parse_csr(&csr.spec.request.0)
            .map_err(|e| anyhow::anyhow!("unable to parse csr {name:?}: {e}"))?;
        let api: Api<CertificateSigningRequest> = Api::all(self.ctx.client.clone());
        let mut updated = (*csr).clone();
        if let Err(why) = check_for_signer(
            signer_name,
            &info,
            csr.spec.usages.as_deref().unwrap_or_default(),
        ) {
            tracing::info!(csr = name, signer = signer_name, reason = %why, "csrsigning: refused");
            updated
                .status
                .get_or_insert_with(Default::default)
                .conditions
                .get_or_insert_with(Vec::new)
                .push(CertificateSigningRequestCondition {
                    type_: "Failed".into(),
                    status: "True".into(),
                    reason: Some("SignerValidationFailure".into()),
                    message: Some(why),
                    last_update_time: Some(Time(jiff::Timestamp::now())),
                    ..Default::default()
                });
        } else {
            let ttl = lifetime(
                self.ctx.options.cluster_signing_duration,
                csr.spec.expiration_seconds,
            );
            let pem = self.signer.sign(
                &csr.spec.request.0,
                csr.spec.usages.as_deref().unwrap_or_default(),
                ttl,
            )?;
            updated
                .status
                .get_or_insert_with(Default::default)
                .certificate = Some(ByteString(pem.into_bytes()));
            tracing::info!(csr = name, signer = signer_name, ?ttl, "csrsigning: issued");
        }
        match api
            .replace_status(name, &PostParams::default(), &updated)
            .await
        {
            Ok(_) => Ok(None),
            // The cache was behind; the newer version comes as an update.
            Err(e) if e.is_conflict() || e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

fn usage_set(usages: &[String]) -> std::collections::BTreeSet<&str> {
    usages.iter().map(String::as_str).collect()
}

/// Whether `usages` is exactly one of the sets (Kubernetes compares sets).
fn usages_are(usages: &[String], allowed: &[&[&str]]) -> bool {
    let got = usage_set(usages);
    allowed.iter().any(|set| {
        set.iter()
            .copied()
            .collect::<std::collections::BTreeSet<_>>()
            == got
    })
}

/// What the signer `signer` requires of a request, as Kubernetes' signers check it
/// (`isKubeletClient`/`ValidateKubeletClientCSR`, `ValidateKubeletServingCSR`,
/// `validAPIServerClientUsages`). The error is the `Failed` condition's message.
pub fn check_for_signer(signer: &str, info: &CsrInfo, usages: &[String]) -> Result<(), String> {
    let rsa = info.key_algorithm == KeyAlgorithm::Rsa;
    match signer {
        KUBE_APISERVER_CLIENT => {
            let got = usage_set(usages);
            if !got.contains("client auth") {
                return Err("missing required usage: client auth".into());
            }
            if let Some(u) = got
                .iter()
                .find(|u| !["digital signature", "key encipherment", "client auth"].contains(u))
            {
                return Err(format!("invalid usage for client certificate: {u}"));
            }
            Ok(())
        }
        KUBE_APISERVER_CLIENT_KUBELET => {
            node_subject(info)?;
            if !info.dns_names.is_empty() {
                return Err("dnsNames are not allowed".into());
            }
            if !info.email_addresses.is_empty() {
                return Err("email addresses are not allowed".into());
            }
            if !info.ip_addresses.is_empty() {
                return Err("IP addresses are not allowed".into());
            }
            if !info.uris.is_empty() {
                return Err("URIs are not allowed".into());
            }
            let plain: &[&str] = &["digital signature", "client auth"];
            let with_rsa: &[&str] = &["digital signature", "key encipherment", "client auth"];
            let allowed: &[&[&str]] = if rsa { &[plain, with_rsa] } else { &[plain] };
            if !usages_are(usages, allowed) {
                return Err(format!(
                    "usages did not match {:?}",
                    allowed.last().unwrap()
                ));
            }
            Ok(())
        }
        KUBELET_SERVING => {
            node_subject(info)?;
            if info.dns_names.is_empty() && info.ip_addresses.is_empty() {
                return Err("DNS or IP subjectAltName is required".into());
            }
            if !info.email_addresses.is_empty() {
                return Err("email subjectAltNames are not allowed".into());
            }
            if !info.uris.is_empty() {
                return Err("URI subjectAltNames are not allowed".into());
            }
            let plain: &[&str] = &["digital signature", "server auth"];
            let with_rsa: &[&str] = &["digital signature", "key encipherment", "server auth"];
            let allowed: &[&[&str]] = if rsa { &[plain, with_rsa] } else { &[plain] };
            if !usages_are(usages, allowed) {
                return Err(format!(
                    "usages did not match {:?}",
                    allowed.last().unwrap()
                ));
            }
            Ok(())
        }
        other => Err(format!("signer {other:?} is not served by csrsigning")),
    }
}

/// `system:node:<name>` in exactly `system:nodes`.
fn node_subject(info: &CsrInfo) -> Result<(), String> {
    if info.organizations != ["system:nodes"] {
        return Err("subject organization is not system:nodes".into());
    }
    if !info.common_name.starts_with("system:node:") {
        return Err("subject common name does not begin with system:node:".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use keelson_pki::csr::new_key_and_csr;

    fn info(cn: &str, orgs: &[&str], dns: &[&str]) -> CsrInfo {
        let dns: Vec<String> = dns.iter().map(|d| d.to_string()).collect();
        let (_, pem) = new_key_and_csr(cn, orgs, &dns, &[]).unwrap();
        parse_csr(pem.as_bytes()).unwrap()
    }

    fn usages(u: &[&str]) -> Vec<String> {
        u.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn kubelet_client_requests_are_a_node_identity_without_names() {
        let node = info("system:node:n1", &["system:nodes"], &[]);
        let ok = usages(&["digital signature", "client auth"]);
        assert_eq!(
            check_for_signer(KUBE_APISERVER_CLIENT_KUBELET, &node, &ok),
            Ok(())
        );
        // Key encipherment is for RSA keys; this one is ECDSA.
        let rsa_usages = usages(&["digital signature", "key encipherment", "client auth"]);
        assert!(check_for_signer(KUBE_APISERVER_CLIENT_KUBELET, &node, &rsa_usages).is_err());
        let server = usages(&["digital signature", "server auth"]);
        assert!(
            check_for_signer(KUBE_APISERVER_CLIENT_KUBELET, &node, &server)
                .unwrap_err()
                .starts_with("usages did not match")
        );
        let jane = info("jane", &["system:nodes"], &[]);
        assert_eq!(
            check_for_signer(KUBE_APISERVER_CLIENT_KUBELET, &jane, &ok).unwrap_err(),
            "subject common name does not begin with system:node:"
        );
        let other_org = info("system:node:n1", &["devs"], &[]);
        assert_eq!(
            check_for_signer(KUBE_APISERVER_CLIENT_KUBELET, &other_org, &ok).unwrap_err(),
            "subject organization is not system:nodes"
        );
        let named = info("system:node:n1", &["system:nodes"], &["n1.example"]);
        assert_eq!(
            check_for_signer(KUBE_APISERVER_CLIENT_KUBELET, &named, &ok).unwrap_err(),
            "dnsNames are not allowed"
        );
    }

    #[test]
    fn kubelet_serving_needs_names_and_server_auth() {
        let ok = usages(&["digital signature", "server auth"]);
        let named = info("system:node:n1", &["system:nodes"], &["n1.example"]);
        assert_eq!(check_for_signer(KUBELET_SERVING, &named, &ok), Ok(()));
        let bare = info("system:node:n1", &["system:nodes"], &[]);
        assert_eq!(
            check_for_signer(KUBELET_SERVING, &bare, &ok).unwrap_err(),
            "DNS or IP subjectAltName is required"
        );
    }

    #[test]
    fn api_server_client_certificates_are_for_client_auth_only() {
        let jane = info("jane", &["devs"], &[]);
        assert_eq!(
            check_for_signer(KUBE_APISERVER_CLIENT, &jane, &usages(&["client auth"])),
            Ok(())
        );
        assert_eq!(
            check_for_signer(
                KUBE_APISERVER_CLIENT,
                &jane,
                &usages(&["client auth", "server auth"])
            )
            .unwrap_err(),
            "invalid usage for client certificate: server auth"
        );
    }

    #[test]
    fn lifetimes_are_capped_and_floored() {
        let year = Duration::from_secs(8760 * 3600);
        assert_eq!(lifetime(year, None), year);
        assert_eq!(lifetime(year, Some(3600)), Duration::from_secs(3600));
        assert_eq!(
            lifetime(Duration::from_secs(1800), Some(3600)),
            Duration::from_secs(1800)
        );
        assert_eq!(lifetime(year, Some(60)), MIN_DURATION);
    }
}
