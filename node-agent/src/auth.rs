//! Who may call the agent's API, decided as the kubelet decides it in webhook mode
//! (pkg/kubelet/server/auth.go and the delegating authenticator/authorizer).
//!
//! Authentication, first match wins: a client certificate that chained to
//! `--client-ca-file` (user = CN, groups = O); else an `Authorization: Bearer` token,
//! checked with a TokenReview when `--authentication-token-webhook` is on; else
//! `system:anonymous` when `--anonymous-auth` allows it; else 401. A token the
//! apiserver does not accept is a 401 even when anonymous requests are allowed.
//!
//! Authorization with `--authorization-mode=Webhook`: a SubjectAccessReview for the
//! request as an API request on this Node (`get nodes/<name>/proxy`, `.../stats`,
//! `.../metrics`, `.../log`), 403 when not allowed. Answers from the apiserver (not
//! its errors) are cached for the configured TTLs in bounded caches, so a busy caller
//! costs one review per TTL.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use http::{HeaderMap, Method, StatusCode};
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use keelson_client::{Api, Client, PostParams};
use keelson_pki::Identity;

use crate::options::{AuthorizationMode, NodeAgentOptions};

/// Entries each cache holds at most (the webhook authorizer's LRU size in Kubernetes).
pub const CACHE_CAPACITY: usize = 8192;

/// An authenticated caller, as the SubjectAccessReview names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct User {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

pub const ANONYMOUS: &str = "system:anonymous";
const UNAUTHENTICATED: &str = "system:unauthenticated";
const AUTHENTICATED: &str = "system:authenticated";

impl User {
    fn anonymous() -> User {
        User {
            name: ANONYMOUS.into(),
            groups: vec![UNAUTHENTICATED.into()],
            ..Default::default()
        }
    }

    /// Every authenticated caller is in `system:authenticated` (the kubelet's
    /// authenticated-group adder).
    fn authenticated(mut self) -> User {
        if !self.groups.iter().any(|g| g == AUTHENTICATED) {
            self.groups.push(AUTHENTICATED.into());
        }
        self
    }
}

/// What a request does, as the API request that would allow it: `<verb>` on
/// `nodes/<subresource>` named for this node (core group, v1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Attributes {
    pub verb: &'static str,
    pub subresource: &'static str,
    pub node: String,
}

/// The kubelet's mapping: the verb from the method, the subresource from the path
/// (`/stats/*` stats, `/metrics*` metrics, `/logs/*` log, everything else proxy).
pub fn attributes(method: &Method, path: &str, node: &str) -> Attributes {
    let verb = match *method {
        Method::GET | Method::HEAD => "get",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        // The kubelet leaves other methods without a verb: only `*` grants them.
        _ => "",
    };
    let subresource = if is_subpath(path, "/stats/") {
        "stats"
    } else if is_subpath(path, "/metrics") {
        "metrics"
    } else if is_subpath(path, "/logs/") {
        "log"
    } else {
        "proxy"
    };
    Attributes {
        verb,
        subresource,
        node: node.to_string(),
    }
}

/// `path` is `base` (without its trailing slash) or below it.
fn is_subpath(path: &str, base: &str) -> bool {
    let base = base.trim_end_matches('/');
    path == base
        || path
            .strip_prefix(base)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Why a request is refused, with the kubelet's status and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// 401 `Unauthorized`.
    Unauthenticated,
    /// 403 `Forbidden (user=..., verb=..., resource=nodes, subresource(s)=[...])`.
    Forbidden(String),
    /// 500: the apiserver could not be asked.
    Error(String),
}

impl Refusal {
    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::Unauthenticated => StatusCode::UNAUTHORIZED,
            Refusal::Forbidden(_) => StatusCode::FORBIDDEN,
            Refusal::Error(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn message(&self) -> String {
        match self {
            Refusal::Unauthenticated => "Unauthorized".into(),
            Refusal::Forbidden(m) | Refusal::Error(m) => m.clone(),
        }
    }
}

fn describe(user: &User, a: &Attributes) -> String {
    format!(
        "user={}, verb={}, resource=nodes, subresource(s)=[{}]",
        user.name, a.verb, a.subresource
    )
}

/// The two questions the agent asks the apiserver. A trait so the caching is tested
/// without one.
pub trait Reviewer: Send + Sync {
    /// The user a bearer token belongs to; `None` when the apiserver does not
    /// authenticate it.
    fn token_review(&self, token: &str) -> BoxFuture<'_, anyhow::Result<Option<User>>>;
    /// Whether `user` may do `attrs`.
    fn access_review(&self, user: &User, attrs: &Attributes)
        -> BoxFuture<'_, anyhow::Result<bool>>;
}

/// [`Reviewer`] over the agent's API client (TokenReview and SubjectAccessReview,
/// created as the node's own identity).
#[derive(Clone)]
pub struct ApiReviewer {
    client: Client,
}

impl ApiReviewer {
    pub fn new(client: Client) -> Self {
        ApiReviewer { client }
    }
}

impl Reviewer for ApiReviewer {
    fn token_review(&self, token: &str) -> BoxFuture<'_, anyhow::Result<Option<User>>> {
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_string()),
                audiences: None,
            },
            ..Default::default()
        };
        Box::pin(async move {
            let api: Api<TokenReview> = Api::all(self.client.clone());
            let status = api
                .create(&PostParams::default(), &review)
                .await?
                .status
                .unwrap_or_default();
            if status.authenticated != Some(true) {
                return Ok(None);
            }
            let info = status.user.unwrap_or_default();
            Ok(Some(User {
                name: info.username.unwrap_or_default(),
                uid: info.uid.unwrap_or_default(),
                groups: info.groups.unwrap_or_default(),
                extra: info.extra.unwrap_or_default(),
            }))
        })
    }

    fn access_review(
        &self,
        user: &User,
        attrs: &Attributes,
    ) -> BoxFuture<'_, anyhow::Result<bool>> {
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(user.name.clone()),
                uid: Some(user.uid.clone()).filter(|u| !u.is_empty()),
                groups: Some(user.groups.clone()),
                extra: Some(user.extra.clone()).filter(|e| !e.is_empty()),
                resource_attributes: Some(ResourceAttributes {
                    verb: Some(attrs.verb.into()),
                    group: Some(String::new()),
                    version: Some("v1".into()),
                    resource: Some("nodes".into()),
                    subresource: Some(attrs.subresource.into()),
                    name: Some(attrs.node.clone()),
                    ..Default::default()
                }),
                non_resource_attributes: None,
            },
            ..Default::default()
        };
        Box::pin(async move {
            let api: Api<SubjectAccessReview> = Api::all(self.client.clone());
            let status = api
                .create(&PostParams::default(), &review)
                .await?
                .status
                .unwrap_or_default();
            // Denied and "no opinion" are both not allowed: the webhook is the only
            // authorizer.
            Ok(status.allowed)
        })
    }
}

/// A map whose entries expire, holding at most `capacity` of them: when full, the
/// oldest insertion goes first.
pub struct TtlCache<K, V> {
    capacity: usize,
    inner: Mutex<TtlInner<K, V>>,
}

struct TtlInner<K, V> {
    entries: HashMap<K, (V, Instant, u64)>,
    /// Insertion order: (sequence, key); stale pairs (the key was re-inserted or
    /// removed since) are skipped.
    order: VecDeque<(u64, K)>,
    next: u64,
}

impl<K: Hash + Eq + Clone, V: Clone> TtlCache<K, V> {
    pub fn new(capacity: usize) -> Self {
        TtlCache {
            capacity: capacity.max(1),
            inner: Mutex::new(TtlInner {
                entries: HashMap::new(),
                order: VecDeque::new(),
                next: 0,
            }),
        }
    }

    pub fn get(&self, key: &K, now: Instant) -> Option<V> {
        let mut inner = self.inner.lock().expect("cache lock");
        match inner.entries.get(key) {
            Some((v, expires, _)) if now < *expires => Some(v.clone()),
            Some(_) => {
                inner.entries.remove(key);
                None
            }
            None => None,
        }
    }

    pub fn insert(&self, key: K, value: V, ttl: Duration, now: Instant) {
        if ttl.is_zero() {
            return;
        }
        let mut inner = self.inner.lock().expect("cache lock");
        let seq = inner.next;
        inner.next += 1;
        let replaced = inner
            .entries
            .insert(key.clone(), (value, now + ttl, seq))
            .is_some();
        inner.order.push_back((seq, key));
        if !replaced {
            while inner.entries.len() > self.capacity {
                let Some((s, k)) = inner.order.pop_front() else {
                    break;
                };
                if inner.entries.get(&k).is_some_and(|e| e.2 == s) {
                    inner.entries.remove(&k);
                }
            }
        }
        // Keep the order queue from growing past the live entries by much.
        if inner.order.len() > 2 * self.capacity {
            let TtlInner { entries, order, .. } = &mut *inner;
            order.retain(|(s, k)| entries.get(k).is_some_and(|e| e.2 == *s));
        }
    }

    pub fn len(&self) -> usize {
        self.inner.lock().expect("cache lock").entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Authentication and authorization of the agent's callers.
pub struct Auth {
    reviewer: Arc<dyn Reviewer>,
    node: String,
    token_webhook: bool,
    anonymous: bool,
    mode: AuthorizationMode,
    token_ttl: Duration,
    authorized_ttl: Duration,
    unauthorized_ttl: Duration,
    /// Keyed by the token's SHA-256, so the cache holds no credentials.
    tokens: TtlCache<[u8; 32], Option<User>>,
    decisions: TtlCache<(User, Attributes), bool>,
}

impl Auth {
    pub fn new(reviewer: Arc<dyn Reviewer>, node: &str, opts: &NodeAgentOptions) -> Self {
        Auth {
            reviewer,
            node: node.to_string(),
            token_webhook: opts.authentication_token_webhook,
            anonymous: opts.anonymous_auth,
            mode: opts.authorization_mode,
            token_ttl: opts.authentication_token_webhook_cache_ttl,
            authorized_ttl: opts.authorization_webhook_cache_authorized_ttl,
            unauthorized_ttl: opts.authorization_webhook_cache_unauthorized_ttl,
            tokens: TtlCache::new(CACHE_CAPACITY),
            decisions: TtlCache::new(CACHE_CAPACITY),
        }
    }

    /// Authenticate and authorize one request. On success the bearer token is taken
    /// out of `headers`: what the agent relays (to containerd's stream server) never
    /// carries the caller's credentials.
    pub async fn check(
        &self,
        cert: Option<&Identity>,
        method: &Method,
        path: &str,
        headers: &mut HeaderMap,
    ) -> Result<User, Refusal> {
        let user = self.authenticate(cert, headers).await?;
        self.authorize(&user, &attributes(method, path, &self.node))
            .await?;
        headers.remove(http::header::AUTHORIZATION);
        Ok(user)
    }

    pub async fn authenticate(
        &self,
        cert: Option<&Identity>,
        headers: &HeaderMap,
    ) -> Result<User, Refusal> {
        if let Some(id) = cert {
            return Ok(User {
                name: id.user.clone(),
                groups: id.groups.clone(),
                ..Default::default()
            }
            .authenticated());
        }
        if let Some(token) = self.token_webhook.then(|| bearer(headers)).flatten() {
            return match self.review_token(token).await {
                Ok(Some(user)) => Ok(user.authenticated()),
                Ok(None) => Err(Refusal::Unauthenticated),
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "TokenReview failed");
                    Err(Refusal::Unauthenticated)
                }
            };
        }
        if self.anonymous {
            return Ok(User::anonymous());
        }
        Err(Refusal::Unauthenticated)
    }

    async fn review_token(&self, token: &str) -> anyhow::Result<Option<User>> {
        let key: [u8; 32] = ring::digest::digest(&ring::digest::SHA256, token.as_bytes())
            .as_ref()
            .try_into()
            .expect("SHA-256 is 32 bytes");
        if let Some(cached) = self.tokens.get(&key, Instant::now()) {
            return Ok(cached);
        }
        let answer = self.reviewer.token_review(token).await?;
        self.tokens
            .insert(key, answer.clone(), self.token_ttl, Instant::now());
        Ok(answer)
    }

    pub async fn authorize(&self, user: &User, attrs: &Attributes) -> Result<(), Refusal> {
        if self.mode == AuthorizationMode::AlwaysAllow {
            return Ok(());
        }
        let key = (user.clone(), attrs.clone());
        let allowed = match self.decisions.get(&key, Instant::now()) {
            Some(allowed) => allowed,
            None => match self.reviewer.access_review(user, attrs).await {
                Ok(allowed) => {
                    let ttl = if allowed {
                        self.authorized_ttl
                    } else {
                        self.unauthorized_ttl
                    };
                    self.decisions.insert(key, allowed, ttl, Instant::now());
                    allowed
                }
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "SubjectAccessReview failed");
                    return Err(Refusal::Error(format!(
                        "Authorization error ({})",
                        describe(user, attrs)
                    )));
                }
            },
        };
        if allowed {
            Ok(())
        } else {
            tracing::debug!(user = %user.name, verb = attrs.verb, subresource = attrs.subresource, "forbidden");
            Err(Refusal::Forbidden(format!(
                "Forbidden ({})",
                describe(user, attrs)
            )))
        }
    }
}

/// The token of an `Authorization: Bearer <token>` header (scheme case-insensitive);
/// `None` for no header, another scheme or an empty token, as the kubelet ignores them.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let mut parts = value.split_whitespace();
    let scheme = parts.next()?;
    let token = parts.next()?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn verbs_come_from_the_method() {
        let verb = |m: Method| attributes(&m, "/pods", "n1").verb;
        assert_eq!(verb(Method::GET), "get");
        assert_eq!(verb(Method::HEAD), "get");
        assert_eq!(verb(Method::POST), "create");
        assert_eq!(verb(Method::PUT), "update");
        assert_eq!(verb(Method::PATCH), "patch");
        assert_eq!(verb(Method::DELETE), "delete");
        assert_eq!(verb(Method::OPTIONS), "");
    }

    #[test]
    fn subresources_come_from_the_path() {
        let sub = |p: &str| attributes(&Method::GET, p, "n1").subresource;
        assert_eq!(sub("/stats/summary"), "stats");
        assert_eq!(sub("/stats"), "stats");
        assert_eq!(sub("/stats/"), "stats");
        assert_eq!(sub("/metrics"), "metrics");
        assert_eq!(sub("/metrics/cadvisor"), "metrics");
        assert_eq!(sub("/logs/"), "log");
        assert_eq!(sub("/logs/syslog"), "log");
        // Prefixes that are not path segments are not subpaths.
        assert_eq!(sub("/statsz"), "proxy");
        assert_eq!(sub("/metricsfoo"), "proxy");
        assert_eq!(sub("/logsx"), "proxy");
        for p in [
            "/containerLogs/ns/pod/c",
            "/exec/ns/pod/c",
            "/attach/ns/pod/c",
            "/portForward/ns/pod",
            "/pods",
            "/run/ns/pod/c",
            "/healthz",
            "/",
        ] {
            assert_eq!(sub(p), "proxy", "{p}");
        }
        let a = attributes(&Method::POST, "/exec/ns/pod/c", "node-7");
        assert_eq!(
            a,
            Attributes {
                verb: "create",
                subresource: "proxy",
                node: "node-7".into()
            }
        );
    }

    #[test]
    fn bearer_tokens_as_the_kubelet_reads_them() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(http::header::AUTHORIZATION, v.parse().unwrap());
            m
        };
        assert_eq!(bearer(&h("Bearer abc")), Some("abc"));
        assert_eq!(bearer(&h("bearer  abc")), Some("abc"));
        assert_eq!(bearer(&h("Basic abc")), None);
        assert_eq!(bearer(&h("Bearer")), None);
        assert_eq!(bearer(&HeaderMap::new()), None);
    }

    #[test]
    fn cache_entries_expire() {
        let c = TtlCache::new(10);
        let t0 = Instant::now();
        c.insert("a", 1, Duration::from_secs(30), t0);
        assert_eq!(c.get(&"a", t0 + Duration::from_secs(29)), Some(1));
        assert_eq!(c.get(&"a", t0 + Duration::from_secs(30)), None);
        assert!(c.is_empty(), "an expired entry is dropped when read");
        c.insert("b", 2, Duration::ZERO, t0);
        assert_eq!(c.get(&"b", t0), None, "a zero TTL caches nothing");
    }

    #[test]
    fn cache_is_bounded_and_drops_the_oldest() {
        let c = TtlCache::new(3);
        let t0 = Instant::now();
        let ttl = Duration::from_secs(60);
        let k = |s: &str| s.to_string();
        for (i, key) in ["a", "b", "c"].into_iter().enumerate() {
            c.insert(k(key), i, ttl, t0);
        }
        // Re-inserting "a" makes it the newest; "b" is now the oldest.
        c.insert(k("a"), 10, ttl, t0);
        assert_eq!(c.len(), 3);
        c.insert(k("d"), 3, ttl, t0);
        assert_eq!(c.len(), 3);
        assert_eq!(c.get(&k("b"), t0), None);
        assert_eq!(c.get(&k("a"), t0), Some(10));
        assert_eq!(c.get(&k("c"), t0), Some(2));
        assert_eq!(c.get(&k("d"), t0), Some(3));
        for i in 0..10_000 {
            c.insert(format!("k{i}"), i, ttl, t0);
        }
        assert_eq!(c.len(), 3);
        assert_eq!(c.get(&k("k9999"), t0), Some(9999));
        assert_eq!(c.get(&k("k9996"), t0), None);
        assert!(c.inner.lock().unwrap().order.len() <= 6);
    }

    /// Counts the reviews asked; allows `allowed_user`, authenticates `good-token`.
    struct Fake {
        tokens: AtomicUsize,
        reviews: AtomicUsize,
        allowed_user: &'static str,
        /// Access reviews fail (the apiserver cannot be reached) while set.
        failing: std::sync::atomic::AtomicBool,
    }

    impl Reviewer for Fake {
        fn token_review(&self, token: &str) -> BoxFuture<'_, anyhow::Result<Option<User>>> {
            self.tokens.fetch_add(1, Ordering::SeqCst);
            let user = (token == "good-token").then(|| User {
                name: "system:serviceaccount:ns:sa".into(),
                uid: "u-1".into(),
                groups: vec!["system:serviceaccounts".into()],
                extra: BTreeMap::new(),
            });
            Box::pin(async move { Ok(user) })
        }

        fn access_review(
            &self,
            user: &User,
            _attrs: &Attributes,
        ) -> BoxFuture<'_, anyhow::Result<bool>> {
            self.reviews.fetch_add(1, Ordering::SeqCst);
            let allowed = user.name == self.allowed_user;
            let failing = self.failing.load(Ordering::SeqCst);
            Box::pin(async move {
                anyhow::ensure!(!failing, "connection refused");
                Ok(allowed)
            })
        }
    }

    fn auth(opts: NodeAgentOptions) -> (Arc<Fake>, Auth) {
        let fake = Arc::new(Fake {
            tokens: AtomicUsize::new(0),
            reviews: AtomicUsize::new(0),
            allowed_user: "kube-apiserver-kubelet-client",
            failing: false.into(),
        });
        let auth = Auth::new(fake.clone(), "n1", &opts);
        (fake, auth)
    }

    fn webhook() -> NodeAgentOptions {
        NodeAgentOptions {
            authentication_token_webhook: true,
            authorization_mode: AuthorizationMode::Webhook,
            ..Default::default()
        }
    }

    fn with_token(t: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::AUTHORIZATION,
            format!("Bearer {t}").parse().unwrap(),
        );
        h
    }

    #[tokio::test]
    async fn decisions_are_cached_both_ways() {
        let (fake, auth) = auth(webhook());
        let kubelet_client = Identity {
            user: "kube-apiserver-kubelet-client".into(),
            groups: vec![],
        };
        let jane = Identity {
            user: "jane".into(),
            groups: vec!["devs".into()],
        };
        for _ in 0..3 {
            let user = auth
                .check(
                    Some(&kubelet_client),
                    &Method::GET,
                    "/pods",
                    &mut HeaderMap::new(),
                )
                .await
                .unwrap();
            assert_eq!(user.groups, vec![AUTHENTICATED.to_string()]);
            let refused = auth
                .check(
                    Some(&jane),
                    &Method::POST,
                    "/exec/a/b/c",
                    &mut HeaderMap::new(),
                )
                .await
                .unwrap_err();
            assert_eq!(
                refused,
                Refusal::Forbidden(
                    "Forbidden (user=jane, verb=create, resource=nodes, subresource(s)=[proxy])"
                        .into()
                )
            );
            assert_eq!(refused.status(), StatusCode::FORBIDDEN);
        }
        assert_eq!(
            fake.reviews.load(Ordering::SeqCst),
            2,
            "one review per decision"
        );
        // Another subresource is another decision.
        auth.check(
            Some(&kubelet_client),
            &Method::GET,
            "/stats/summary",
            &mut HeaderMap::new(),
        )
        .await
        .unwrap();
        assert_eq!(fake.reviews.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn tokens_are_reviewed_once_and_removed_from_the_request() {
        let (fake, auth) = auth(webhook());
        for _ in 0..3 {
            let mut headers = with_token("good-token");
            let err = auth
                .check(None, &Method::GET, "/pods", &mut headers)
                .await
                .unwrap_err();
            assert_eq!(
                err.message(),
                "Forbidden (user=system:serviceaccount:ns:sa, verb=get, resource=nodes, subresource(s)=[proxy])"
            );
            let user = auth.authenticate(None, &headers).await.unwrap();
            assert_eq!(user.uid, "u-1");
            assert_eq!(
                user.groups,
                vec!["system:serviceaccounts".to_string(), AUTHENTICATED.into()]
            );
            let bad = auth
                .authenticate(None, &with_token("bad-token"))
                .await
                .unwrap_err();
            assert_eq!(bad, Refusal::Unauthenticated);
        }
        assert_eq!(
            fake.tokens.load(Ordering::SeqCst),
            2,
            "good and bad, once each"
        );
    }

    #[tokio::test]
    async fn anonymous_only_when_allowed_and_never_for_a_bad_token() {
        let (_, auth_off) = auth(webhook());
        assert_eq!(
            auth_off
                .authenticate(None, &HeaderMap::new())
                .await
                .unwrap_err()
                .status(),
            StatusCode::UNAUTHORIZED
        );
        let (_, auth_on) = auth(NodeAgentOptions {
            anonymous_auth: true,
            ..webhook()
        });
        let anon = auth_on.authenticate(None, &HeaderMap::new()).await.unwrap();
        assert_eq!(anon.name, ANONYMOUS);
        assert_eq!(anon.groups, vec![UNAUTHENTICATED.to_string()]);
        assert_eq!(
            auth_on.authenticate(None, &with_token("bad-token")).await,
            Err(Refusal::Unauthenticated)
        );
        // Without the token webhook a token is not a credential at all.
        let (fake, no_webhook) = auth(NodeAgentOptions {
            anonymous_auth: true,
            authentication_token_webhook: false,
            ..webhook()
        });
        let user = no_webhook
            .authenticate(None, &with_token("good-token"))
            .await
            .unwrap();
        assert_eq!(user.name, ANONYMOUS);
        assert_eq!(fake.tokens.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn failed_reviews_are_errors_and_not_cached() {
        let (fake, auth) = auth(webhook());
        let client = Identity {
            user: "kube-apiserver-kubelet-client".into(),
            groups: vec![],
        };
        fake.failing.store(true, Ordering::SeqCst);
        let err = auth
            .check(
                Some(&client),
                &Method::GET,
                "/metrics",
                &mut HeaderMap::new(),
            )
            .await
            .unwrap_err();
        assert_eq!(err.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            err.message(),
            "Authorization error (user=kube-apiserver-kubelet-client, verb=get, resource=nodes, subresource(s)=[metrics])"
        );
        fake.failing.store(false, Ordering::SeqCst);
        auth.check(
            Some(&client),
            &Method::GET,
            "/metrics",
            &mut HeaderMap::new(),
        )
        .await
        .unwrap();
        assert_eq!(fake.reviews.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn always_allow_asks_nobody() {
        let (fake, auth) = auth(NodeAgentOptions {
            anonymous_auth: true,
            ..Default::default()
        });
        auth.check(None, &Method::DELETE, "/pods", &mut HeaderMap::new())
            .await
            .unwrap();
        assert_eq!(fake.reviews.load(Ordering::SeqCst), 0);
    }
}
