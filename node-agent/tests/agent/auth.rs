//! Who may call the agent ([`keelson_node_agent::auth`]) against a real apiserver at
//! `--authorization-mode=Node,RBAC`: the reviews are created with the node's own
//! identity (`system:node:<name>`, as the agent runs), and the answers come from the
//! default policy (`system:kubelet-api-admin` bound to the apiserver's kubelet client)
//! and from what the test binds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{HeaderMap, Method, StatusCode};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use keelson_client::{Api, Client, PostParams};
use keelson_node_agent::auth::{ApiReviewer, Auth, Refusal, User};
use keelson_node_agent::options::AuthorizationMode;
use keelson_node_agent::NodeAgentOptions;
use keelson_pki::Identity;
use keelson_testkit::{ApiserverOptions, Cluster};

const NODE: &str = "agent-authz-node";

struct Setup {
    cluster: Cluster,
    admin: Client,
    /// The node's own client (`system:node:<NODE>` in `system:nodes`).
    node: Client,
}

async fn start() -> Setup {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let opts = ApiserverOptions {
        extra_args: vec!["--authorization-mode=Node,RBAC".into()],
        ..Default::default()
    };
    let cluster = tokio::task::spawn_blocking(move || Cluster::start_with(1, opts))
        .await
        .unwrap()
        .expect("starting the test cluster (cargo build -p keelson-apiserver first)");
    let admin = Client::from_kubeconfig(&cluster.kubeconfig).unwrap();
    let creds = keelson_pki::issue_node_credentials(
        &cluster.pki,
        &cluster.dir.path().join("node"),
        NODE,
        &["127.0.0.1".into()],
        &cluster.server_url(),
    )
    .unwrap();
    let node = Client::from_kubeconfig(&creds.kubeconfig).unwrap();
    Setup {
        cluster,
        admin,
        node,
    }
}

/// The agent's checks in webhook mode, with a short "denied" TTL so a new binding
/// shows within seconds.
fn webhook(node: &Client, anonymous: bool) -> Auth {
    let opts = NodeAgentOptions {
        authentication_token_webhook: true,
        anonymous_auth: anonymous,
        authorization_mode: AuthorizationMode::Webhook,
        authorization_webhook_cache_unauthorized_ttl: Duration::from_secs(1),
        ..Default::default()
    };
    Auth::new(Arc::new(ApiReviewer::new(node.clone())), NODE, &opts)
}

fn cert(user: &str, groups: &[&str]) -> Identity {
    Identity {
        user: user.into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
    }
}

fn bearer(token: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        http::header::AUTHORIZATION,
        format!("Bearer {token}").parse().unwrap(),
    );
    h
}

async fn check(
    auth: &Auth,
    id: Option<&Identity>,
    method: Method,
    path: &str,
    headers: &mut HeaderMap,
) -> Result<User, Refusal> {
    auth.check(id, &method, path, headers).await
}

/// A ClusterRole granting `verbs` on `nodes/<subresource>`, bound to `subject`.
async fn grant(admin: &Client, name: &str, verbs: &[&str], subresource: &str, subject: Subject) {
    let role = ClusterRole {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec![format!("nodes/{subresource}")]),
            verbs: verbs.iter().map(|v| v.to_string()).collect(),
            ..Default::default()
        }]),
        ..Default::default()
    };
    Api::<ClusterRole>::all(admin.clone())
        .create(&PostParams::default(), &role)
        .await
        .unwrap();
    let binding = ClusterRoleBinding {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: name.into(),
        },
        subjects: Some(vec![subject]),
    };
    Api::<ClusterRoleBinding>::all(admin.clone())
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();
}

/// Repeats `f` until it returns `Some` (RBAC follows bindings through a watch, and
/// denials are cached for a second); the time it took.
async fn eventually<F, Fut>(what: &str, mut f: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !f().await {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    start.elapsed()
}

#[tokio::test]
async fn certificates_are_authorized_with_subject_access_reviews() {
    let s = start().await;
    let auth = webhook(&s.node, false);

    // The apiserver's kubelet client, by user name alone (not through
    // system:masters): system:kubelet-api-admin grants every subresource and verb.
    let kubelet_client = cert("kube-apiserver-kubelet-client", &[]);
    for (method, path) in [
        (Method::GET, "/containerLogs/default/p/c"),
        (Method::POST, "/exec/default/p/c"),
        (Method::GET, "/portForward/default/p"),
        (Method::GET, "/stats/summary"),
        (Method::GET, "/metrics"),
        (Method::GET, "/logs/"),
        (Method::GET, "/pods"),
    ] {
        let user = check(
            &auth,
            Some(&kubelet_client),
            method.clone(),
            path,
            &mut HeaderMap::new(),
        )
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e:?}"));
        assert_eq!(user.groups, vec!["system:authenticated".to_string()]);
    }

    // A user the policy grants nothing: the kubelet's message, per subresource.
    let jane = cert("jane", &["devs"]);
    let refused = check(
        &auth,
        Some(&jane),
        Method::POST,
        "/exec/default/p/c",
        &mut HeaderMap::new(),
    )
    .await
    .unwrap_err();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        refused.message(),
        "Forbidden (user=jane, verb=create, resource=nodes, subresource(s)=[proxy])"
    );
    let refused = check(
        &auth,
        Some(&jane),
        Method::GET,
        "/stats/summary",
        &mut HeaderMap::new(),
    )
    .await
    .unwrap_err();
    assert_eq!(
        refused.message(),
        "Forbidden (user=jane, verb=get, resource=nodes, subresource(s)=[stats])"
    );

    // The node itself is not a caller of its own proxy subresource under the Node
    // authorizer.
    let own = cert(&format!("system:node:{NODE}"), &["system:nodes"]);
    assert!(matches!(
        check(
            &auth,
            Some(&own),
            Method::GET,
            "/pods",
            &mut HeaderMap::new()
        )
        .await,
        Err(Refusal::Forbidden(_))
    ));

    // system:masters may do everything, as with the apiserver.
    let admin = cert("someone", &["system:masters"]);
    check(
        &auth,
        Some(&admin),
        Method::DELETE,
        "/pods",
        &mut HeaderMap::new(),
    )
    .await
    .unwrap();

    // Bound to nodes/stats get: stats opens (once the cached denial expired), the
    // other subresources and verbs stay closed.
    grant(
        &s.admin,
        "jane-node-stats",
        &["get"],
        "stats",
        Subject {
            kind: "User".into(),
            api_group: Some("rbac.authorization.k8s.io".into()),
            name: "jane".into(),
            namespace: None,
        },
    )
    .await;
    let took = eventually("jane's stats binding", || async {
        check(
            &auth,
            Some(&jane),
            Method::GET,
            "/stats/summary",
            &mut HeaderMap::new(),
        )
        .await
        .is_ok()
    })
    .await;
    println!("jane's binding took effect after {took:?}");
    for (method, path, sub) in [
        (Method::POST, "/stats/summary", "stats"),
        (Method::GET, "/metrics", "metrics"),
        (Method::GET, "/containerLogs/default/p/c", "proxy"),
    ] {
        let refused = check(
            &auth,
            Some(&jane),
            method.clone(),
            path,
            &mut HeaderMap::new(),
        )
        .await
        .unwrap_err();
        let verb = if method == Method::POST {
            "create"
        } else {
            "get"
        };
        assert_eq!(
            refused.message(),
            format!("Forbidden (user=jane, verb={verb}, resource=nodes, subresource(s)=[{sub}])")
        );
    }
    drop(s.cluster);
}

#[tokio::test]
async fn tokens_are_reviewed_and_anonymous_is_a_choice() {
    let s = start().await;
    let auth = webhook(&s.node, false);

    // A service account's token, as a metrics scraper in a pod would present it.
    Api::<Namespace>::all(s.admin.clone())
        .create(
            &PostParams::default(),
            &Namespace {
                metadata: ObjectMeta {
                    name: Some("monitoring".into()),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let sas: Api<ServiceAccount> = Api::namespaced(s.admin.clone(), "monitoring");
    sas.create(
        &PostParams::default(),
        &ServiceAccount {
            metadata: ObjectMeta {
                name: Some("scraper".into()),
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let tr: TokenRequest = sas
        .create_subresource(
            "token",
            "scraper",
            &PostParams::default(),
            &TokenRequest {
                spec: TokenRequestSpec {
                    audiences: vec![],
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let token = tr.status.unwrap().token;

    let mut headers = bearer(&token);
    let refused = check(&auth, None, Method::GET, "/metrics", &mut headers)
        .await
        .unwrap_err();
    assert_eq!(
        refused.message(),
        "Forbidden (user=system:serviceaccount:monitoring:scraper, verb=get, resource=nodes, subresource(s)=[metrics])"
    );
    let user = auth.authenticate(None, &headers).await.unwrap();
    assert!(
        !user.uid.is_empty(),
        "the TokenReview's uid is kept: {user:?}"
    );
    for g in [
        "system:serviceaccounts",
        "system:serviceaccounts:monitoring",
        "system:authenticated",
    ] {
        assert!(user.groups.iter().any(|x| x == g), "{g} in {user:?}");
    }

    grant(
        &s.admin,
        "scraper-node-metrics",
        &["get"],
        "metrics",
        Subject {
            kind: "ServiceAccount".into(),
            api_group: None,
            name: "scraper".into(),
            namespace: Some("monitoring".into()),
        },
    )
    .await;
    eventually("the scraper's metrics binding", || async {
        check(&auth, None, Method::GET, "/metrics", &mut bearer(&token))
            .await
            .is_ok()
    })
    .await;
    // Allowed: the token is not passed on to what the agent relays to.
    let mut headers = bearer(&token);
    check(&auth, None, Method::GET, "/metrics", &mut headers)
        .await
        .unwrap();
    assert!(headers.get(http::header::AUTHORIZATION).is_none());
    assert!(matches!(
        check(&auth, None, Method::GET, "/pods", &mut bearer(&token)).await,
        Err(Refusal::Forbidden(_))
    ));

    // A static token of the apiserver's --token-auth-file is a credential too.
    let tester = auth
        .authenticate(None, &bearer(&s.cluster.token))
        .await
        .unwrap();
    assert_eq!(tester.name, "tester");
    assert!(tester.groups.iter().any(|g| g == "testers"), "{tester:?}");

    // Tokens the apiserver does not know, and no credentials at all: 401.
    for headers in [
        bearer("not-a-token"),
        bearer(&format!("{token}x")),
        HeaderMap::new(),
    ] {
        let refused = check(&auth, None, Method::GET, "/healthz", &mut headers.clone())
            .await
            .unwrap_err();
        assert_eq!(refused, Refusal::Unauthenticated);
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(refused.message(), "Unauthorized");
    }

    // --anonymous-auth: no credentials is system:anonymous, whom the policy grants
    // nothing on nodes; a bad token is still a 401.
    let open = webhook(&s.node, true);
    let refused = check(&open, None, Method::GET, "/healthz", &mut HeaderMap::new())
        .await
        .unwrap_err();
    assert_eq!(
        refused.message(),
        "Forbidden (user=system:anonymous, verb=get, resource=nodes, subresource(s)=[proxy])"
    );
    assert_eq!(
        check(
            &open,
            None,
            Method::GET,
            "/healthz",
            &mut bearer("not-a-token")
        )
        .await,
        Err(Refusal::Unauthenticated)
    );
    drop(s.cluster);
}

/// When the apiserver cannot be asked, the request fails with the kubelet's 500.
#[tokio::test]
async fn an_unreachable_apiserver_is_an_authorization_error() {
    let s = start().await;
    let auth = webhook(&s.node, false);
    let jane = cert("jane", &[]);
    let mut cluster = s.cluster;
    for a in &mut cluster.apiservers {
        a.proc_.kill();
    }
    let refused = tokio::time::timeout(
        Duration::from_secs(60),
        check(
            &auth,
            Some(&jane),
            Method::GET,
            "/pods",
            &mut HeaderMap::new(),
        ),
    )
    .await
    .expect("the review gives up")
    .unwrap_err();
    assert_eq!(refused.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        refused.message(),
        "Authorization error (user=jane, verb=get, resource=nodes, subresource(s)=[proxy])"
    );
}
