//! Legacy service-account tokens (Kubernetes' tokens controller): a Secret of type
//! `kubernetes.io/service-account-token` naming a ServiceAccount in the
//! `kubernetes.io/service-account.name` annotation gets a long-lived token for it
//! (`data.token`, signed with `--service-account-private-key-file`), the cluster CA
//! (`ca.crt`) and `namespace`. Such a Secret whose account does not exist (or has
//! another uid) is deleted, and so are an account's Secrets when it is deleted.
//! This is how users make tokens that never expire (for CI systems, dashboards); bound
//! tokens (`kubectl create token`) are the better kind.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::ByteString;
use keelson_client::runtime::{HandlerFuncs, Store};
use keelson_client::{Api, DeleteParams, KubeObject, ObjectKey, PostParams, Preconditions};
use keelson_component::{Queue, Requeue};
use keelson_pki::jwt::SigningKey;
use serde_json::json;

use crate::Context;

pub const TOKEN_TYPE: &str = "kubernetes.io/service-account-token";
const NAME_ANNOTATION: &str = "kubernetes.io/service-account.name";
const UID_ANNOTATION: &str = "kubernetes.io/service-account.uid";

struct Controller {
    ctx: Context,
    key: SigningKey,
    root_ca: Option<Vec<u8>>,
    secrets: Store<Secret>,
    accounts: Store<ServiceAccount>,
}

pub async fn run(ctx: Context) {
    let Some(path) = ctx.options.service_account_private_key_file.clone() else {
        tracing::warn!(
            "no --service-account-private-key-file: legacy token Secrets are not filled"
        );
        return;
    };
    let key = match SigningKey::load(&path) {
        Ok(k) => k,
        Err(e) => {
            tracing::error!(error = %e, "serviceaccount-token controller not running");
            return;
        }
    };
    let root_ca = match &ctx.options.root_ca_file {
        Some(p) => std::fs::read(p).ok(),
        None => ctx.client.ca_pem().map(<[u8]>::to_vec),
    };
    let secrets = ctx.informers.get::<Secret>();
    let accounts = ctx.informers.get::<ServiceAccount>();
    let queue: Queue<ObjectKey> = Queue::new("serviceaccount_tokens_secret", &ctx.queue_metrics);
    let (q1, q2) = (queue.clone(), queue.clone());
    secrets.add_handler(
        HandlerFuncs::new()
            .on_add(move |s: Arc<Secret>| {
                if is_token(&s) {
                    q1.add(s.key())
                }
            })
            .on_update(move |_, s: Arc<Secret>| {
                if is_token(&s) {
                    q2.add(s.key())
                }
            }),
    );
    // An account's change (deletion included) concerns its token Secrets.
    let store = secrets.store();
    let q = queue.clone();
    let for_account = move |sa: &ServiceAccount| {
        let ns = sa.metadata.namespace.as_deref().unwrap_or_default();
        for s in store.list_namespace(ns) {
            if is_token(&s) && annotation(&s, NAME_ANNOTATION) == sa.metadata.name.as_deref() {
                q.add(s.key());
            }
        }
    };
    let (f1, f2) = (for_account.clone(), for_account);
    accounts.add_handler(
        HandlerFuncs::new()
            .on_add(move |sa: Arc<ServiceAccount>| f1(&sa))
            .on_delete(move |sa: Arc<ServiceAccount>| f2(&sa)),
    );
    secrets.wait_for_sync().await;
    accounts.wait_for_sync().await;
    let c = Arc::new(Controller {
        ctx: ctx.clone(),
        key,
        root_ca,
        secrets: secrets.store(),
        accounts: accounts.store(),
    });
    queue
        .run(ctx.options.concurrent_syncs, move |key| {
            let c = c.clone();
            async move { c.sync(&key).await }
        })
        .await;
}

fn is_token(s: &Secret) -> bool {
    s.type_.as_deref() == Some(TOKEN_TYPE)
}

fn annotation<'a>(s: &'a Secret, key: &str) -> Option<&'a str> {
    s.metadata
        .annotations
        .as_ref()?
        .get(key)
        .map(String::as_str)
}

impl Controller {
    async fn sync(&self, key: &ObjectKey) -> anyhow::Result<Requeue> {
        let Some(secret) = self.secrets.get(key) else {
            return Ok(None);
        };
        if !is_token(&secret) || secret.metadata.deletion_timestamp.is_some() {
            return Ok(None);
        }
        let ns = key.namespace.as_deref().unwrap_or_default();
        let api: Api<Secret> = Api::namespaced(self.ctx.client.clone(), ns);
        let wanted_uid = annotation(&secret, UID_ANNOTATION).filter(|u| !u.is_empty());
        let account = annotation(&secret, NAME_ANNOTATION)
            .and_then(|name| self.accounts.get_by_name(Some(ns), name))
            .filter(|sa| wanted_uid.is_none_or(|u| sa.uid() == Some(u)));
        let Some(account) = account else {
            // The account is gone (or never was): so is its token, as in Kubernetes.
            // Read again first: the cache may not have the account yet.
            if self.account_exists(ns, &secret, wanted_uid).await? {
                return Ok(Some(std::time::Duration::from_secs(1)));
            }
            let params = DeleteParams::default().preconditions(Preconditions {
                uid: secret.uid().map(str::to_string),
                resource_version: None,
            });
            return match api.delete(&key.name, &params).await {
                Err(e) if !e.is_not_found() && !e.is_conflict() => Err(e.into()),
                _ => Ok(None),
            };
        };
        let data = secret.data.clone().unwrap_or_default();
        let has = |k: &str| data.get(k).is_some_and(|v| !v.0.is_empty());
        let needs_ca = self.root_ca.is_some() && !has("ca.crt");
        if has("token") && has("namespace") && !needs_ca && wanted_uid.is_some() {
            return Ok(None);
        }
        let mut fixed = (*secret).clone();
        let data = fixed.data.get_or_insert_with(BTreeMap::new);
        if !has("token") {
            let claims = json!({
                "iss": "kubernetes/serviceaccount",
                "sub": format!("system:serviceaccount:{ns}:{}", account.name()),
                "kubernetes.io/serviceaccount/namespace": ns,
                "kubernetes.io/serviceaccount/secret.name": secret.name(),
                "kubernetes.io/serviceaccount/service-account.name": account.name(),
                "kubernetes.io/serviceaccount/service-account.uid": account.uid().unwrap_or_default(),
            });
            data.insert(
                "token".into(),
                ByteString(self.key.sign(&claims).into_bytes()),
            );
        }
        data.insert("namespace".into(), ByteString(ns.as_bytes().to_vec()));
        if let Some(ca) = &self.root_ca {
            data.insert("ca.crt".into(), ByteString(ca.clone()));
        }
        fixed
            .metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(
                UID_ANNOTATION.into(),
                account.uid().unwrap_or_default().into(),
            );
        match api.replace(&key.name, &PostParams::default(), &fixed).await {
            Err(e) if e.is_not_found() => Ok(None),
            other => other.map(|_| None).map_err(Into::into),
        }
    }

    async fn account_exists(
        &self,
        ns: &str,
        secret: &Secret,
        uid: Option<&str>,
    ) -> anyhow::Result<bool> {
        let Some(name) = annotation(secret, NAME_ANNOTATION) else {
            return Ok(false);
        };
        let api: Api<ServiceAccount> = Api::namespaced(self.ctx.client.clone(), ns);
        Ok(api
            .get_opt(name)
            .await?
            .is_some_and(|sa| uid.is_none_or(|u| sa.uid() == Some(u))))
    }
}

/// The token a filled Secret holds.
pub fn token_of(secret: &Secret) -> Option<String> {
    String::from_utf8(secret.data.as_ref()?.get("token")?.0.clone()).ok()
}
