//! `--use-service-account-credentials`: each controller writes (and records Events) as
//! its own service account `kube-system/<account>`, bound by the apiserver's default
//! policy to `system:controller:<account>`, as kube-controller-manager's
//! `SAControllerClientBuilder` does. The manager's own identity
//! (`system:kube-controller-manager`) keeps the shared informers, creates the accounts
//! and requests their tokens; the serviceaccount-token controller keeps it too, as in
//! Kubernetes.
//!
//! Tokens come from TokenRequest (`serviceaccounts/<name>/token`, one hour, the
//! apiserver's own audiences) and are requested again once 80% of their lifetime has
//! passed, as client-go's cached token source with its 20% leeway. The controllers'
//! clients share one connection that carries no client certificate (the apiserver
//! would prefer a certificate to the token), each with its own replaceable token.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use keelson_client::{Api, BearerToken, Client, PostParams};
use keelson_component::Recorder;
use tokio::task::JoinSet;

use crate::Context;

/// The namespace of the controllers' accounts.
pub const NAMESPACE: &str = "kube-system";
/// Requested token lifetime, as kube-controller-manager's.
pub const TOKEN_SECONDS: i64 = 3600;
/// Fraction of a token's lifetime after which it is requested again.
const REFRESH_AT: f64 = 0.8;

/// Each controller's account by its `--controllers` name (Kubernetes' names;
/// `service-lb-controller` is Keelson's own). `None`: runs with the manager's own
/// credentials.
pub const ACCOUNTS: &[(&str, Option<&str>)] = &[
    (
        "clusterrole-aggregation",
        Some("clusterrole-aggregation-controller"),
    ),
    ("cronjob", Some("cronjob-controller")),
    ("csrapproving", Some("certificate-controller")),
    ("csrsigning", Some("certificate-controller")),
    ("daemonset", Some("daemon-set-controller")),
    ("deployment", Some("deployment-controller")),
    ("disruption", Some("disruption-controller")),
    ("endpoints", Some("endpoint-controller")),
    ("endpointslice", Some("endpointslice-controller")),
    (
        "endpointslicemirroring",
        Some("endpointslicemirroring-controller"),
    ),
    ("garbagecollector", Some("generic-garbage-collector")),
    ("job", Some("job-controller")),
    ("namespace", Some("namespace-controller")),
    ("nodeipam", Some("node-controller")),
    ("nodelifecycle", Some("node-controller")),
    ("podgc", Some("pod-garbage-collector")),
    ("replicaset", Some("replicaset-controller")),
    ("replicationcontroller", Some("replication-controller")),
    ("resourcequota", Some("resourcequota-controller")),
    ("root-ca-cert-publisher", Some("root-ca-cert-publisher")),
    ("service-lb", Some("service-lb-controller")),
    ("serviceaccount", Some("service-account-controller")),
    // It signs tokens into Secrets for every account: the manager's own identity.
    ("serviceaccount-token", None),
    ("statefulset", Some("statefulset-controller")),
    ("ttlafterfinished", Some("ttl-after-finished-controller")),
];

/// The account `controller` runs as with `--use-service-account-credentials`.
pub fn account_of(controller: &str) -> Option<&'static str> {
    ACCOUNTS
        .iter()
        .find(|(c, _)| *c == controller)
        .and_then(|(_, a)| *a)
}

/// The clients of the controllers' accounts, kept fresh while this value lives.
pub struct Identities {
    clients: BTreeMap<&'static str, Client>,
    /// One token refresher per account; dropped (aborted) with the identities.
    _refreshers: JoinSet<()>,
}

impl Identities {
    /// Without `--use-service-account-credentials`: every controller runs as the
    /// manager.
    pub fn shared() -> Identities {
        Identities {
            clients: BTreeMap::new(),
            _refreshers: JoinSet::new(),
        }
    }

    /// What `ctx.options` asks for: the accounts of the enabled controllers with
    /// `--use-service-account-credentials`, else the manager's identity for all.
    pub async fn new(ctx: &Context) -> anyhow::Result<Identities> {
        if !ctx.options.use_service_account_credentials {
            return Ok(Identities::shared());
        }
        let enabled = crate::controllers::ALL
            .iter()
            .map(|(name, _)| *name)
            .filter(|name| ctx.options.enabled(name));
        Identities::for_controllers(&ctx.client, enabled).await
    }

    /// Create the accounts of `controllers` that are missing and obtain their tokens;
    /// waits (retrying with backoff) until every account has one.
    pub async fn for_controllers<'a>(
        root: &Client,
        controllers: impl IntoIterator<Item = &'a str>,
    ) -> anyhow::Result<Identities> {
        let config = root.config().anonymous()?;
        let base = Client::new(config)?;
        let mut accounts: Vec<&'static str> =
            controllers.into_iter().filter_map(account_of).collect();
        accounts.sort_unstable();
        accounts.dedup();
        let first = accounts.iter().map(|account| {
            let root = root.clone();
            async move { (*account, obtain(&root, account).await) }
        });
        let mut clients = BTreeMap::new();
        let mut refreshers = JoinSet::new();
        for (account, (token, lifetime)) in futures::future::join_all(first).await {
            let bearer = BearerToken::new(&token)?;
            clients.insert(account, base.with_bearer_token(bearer.clone()));
            refreshers.spawn(refresh(root.clone(), account, bearer, lifetime));
        }
        tracing::info!(
            accounts = clients.len(),
            "controllers run with their service accounts' credentials"
        );
        Ok(Identities {
            clients,
            _refreshers: refreshers,
        })
    }

    /// `ctx` with `controller`'s client and Event recorder; the informers stay shared.
    pub fn context_for(&self, controller: &str, ctx: &Context) -> Context {
        let Some(client) = account_of(controller).and_then(|a| self.clients.get(a)) else {
            return ctx.clone();
        };
        Context {
            client: client.clone(),
            recorder: Recorder::new(client.clone(), "controller-manager"),
            ..ctx.clone()
        }
    }
}

/// The account (created if missing) and a token for it, retried until both succeed.
async fn obtain(root: &Client, account: &str) -> (String, Duration) {
    let mut delay = Duration::from_millis(500);
    loop {
        match ensure_account(root, account).await {
            Ok(()) => match request_token(root, account).await {
                Ok(t) => return t,
                Err(e) => tracing::warn!(account, error = %e, "requesting a token"),
            },
            Err(e) => tracing::warn!(account, error = %e, "creating the service account"),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(30));
    }
}

async fn ensure_account(root: &Client, account: &str) -> keelson_client::Result<()> {
    let api: Api<ServiceAccount> = Api::namespaced(root.clone(), NAMESPACE);
    if api.get_opt(account).await?.is_some() {
        return Ok(());
    }
    let sa = ServiceAccount {
        metadata: ObjectMeta {
            name: Some(account.to_string()),
            namespace: Some(NAMESPACE.to_string()),
            ..Default::default()
        },
        ..Default::default()
    };
    match api.create(&PostParams::default(), &sa).await {
        Ok(_) => {
            tracing::info!(account, namespace = NAMESPACE, "created ServiceAccount");
            Ok(())
        }
        Err(e) if e.is_already_exists() => Ok(()),
        Err(e) => Err(e),
    }
}

/// A TokenRequest for `account`: the token and its lifetime.
async fn request_token(root: &Client, account: &str) -> anyhow::Result<(String, Duration)> {
    let api: Api<ServiceAccount> = Api::namespaced(root.clone(), NAMESPACE);
    let request = TokenRequest {
        spec: TokenRequestSpec {
            // Empty: the apiserver's own audiences.
            audiences: Vec::new(),
            expiration_seconds: Some(TOKEN_SECONDS),
            bound_object_ref: None,
        },
        ..Default::default()
    };
    let answer: TokenRequest = api
        .create_subresource("token", account, &PostParams::default(), &request)
        .await?;
    let status = answer
        .status
        .ok_or_else(|| anyhow::anyhow!("the TokenRequest answer has no status"))?;
    let left = jiff::Timestamp::now().duration_until(status.expiration_timestamp.0);
    let lifetime = if left.is_positive() {
        left.unsigned_abs()
    } else {
        Duration::from_secs(TOKEN_SECONDS as u64)
    };
    Ok((status.token, lifetime))
}

/// When to request a token again: after 80% of its lifetime.
pub fn refresh_after(lifetime: Duration) -> Duration {
    lifetime.mul_f64(REFRESH_AT)
}

/// Replace `bearer`'s token before it expires, forever. A failed request is retried
/// with backoff while the current token is still valid.
async fn refresh(root: Client, account: &'static str, bearer: BearerToken, lifetime: Duration) {
    let mut lifetime = lifetime;
    loop {
        tokio::time::sleep(refresh_after(lifetime)).await;
        let mut delay = Duration::from_secs(1);
        loop {
            let renewed = async {
                ensure_account(&root, account).await?;
                let (token, lifetime) = request_token(&root, account).await?;
                bearer.set(&token)?;
                anyhow::Ok(lifetime)
            };
            match renewed.await {
                Ok(l) => {
                    tracing::debug!(account, "renewed the service account token");
                    lifetime = l;
                    break;
                }
                Err(e) => tracing::warn!(account, error = %e, "renewing the token"),
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(30));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_controller_has_an_identity() {
        for (name, _) in crate::controllers::ALL {
            assert!(
                ACCOUNTS.iter().any(|(c, _)| c == name),
                "{name} has no entry in ACCOUNTS"
            );
        }
        assert_eq!(account_of("nodeipam"), Some("node-controller"));
        assert_eq!(account_of("nodelifecycle"), Some("node-controller"));
        assert_eq!(account_of("serviceaccount-token"), None);
    }

    #[test]
    fn tokens_are_renewed_after_eighty_percent() {
        assert_eq!(
            refresh_after(Duration::from_secs(3600)),
            Duration::from_secs(2880)
        );
    }
}
