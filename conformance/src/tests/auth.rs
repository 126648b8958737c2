//! The sig-auth conformance tests (test/e2e/auth/service_accounts.go, subjectreviews.go,
//! certificates.go). Where upstream runs agnhost, busybox does what it can: a pod's files
//! are read from its log (upstream uses `kubectl exec`), and for OIDC discovery the pod
//! checks its token and hands its in-cluster credentials to the runner, which fetches the
//! documents with them and verifies the signature (busybox `wget` cannot speak TLS to
//! the apiserver; see `service_account_issuer_discovery`).

use super::Test;
use crate::framework::*;
use futures::future::BoxFuture;
use k8s_openapi::api::authentication::v1::TokenReview;
use k8s_openapi::api::authorization::v1::{LocalSubjectAccessReview, SubjectAccessReview};
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition,
};
use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use k8s_openapi::ByteString;
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::ResourceExt;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;

mod jwt;

const WAIT: Duration = Duration::from_secs(15);
/// Go's `wait.ForeverTestTimeout`.
const FOREVER: Duration = Duration::from_secs(30);
/// Where the ServiceAccount admission mounts the API token (`DefaultAPITokenMountPath`).
const TOKEN_MOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
const ROOT_CA: &str = "kube-root-ca.crt";

fn pp() -> PostParams {
    PostParams::default()
}

/// Runs a cleanup when dropped: whether the test passes, fails or times out (an abort
/// drops it too). Upstream's `defer Delete(...)` for cluster-scoped objects, which the
/// test namespace's deletion does not reach.
struct Cleanup(Option<BoxFuture<'static, ()>>);

impl Cleanup {
    fn new(f: impl std::future::Future<Output = ()> + Send + 'static) -> Self {
        Cleanup(Some(Box::pin(f)))
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let (Some(f), Ok(rt)) = (self.0.take(), tokio::runtime::Handle::try_current()) {
            rt.spawn(f);
        }
    }
}

async fn create_sa(ctx: &Ctx, sa: Value) -> ServiceAccount {
    let sa: ServiceAccount = obj(sa);
    ctx.api::<ServiceAccount>()
        .create(&pp(), &sa)
        .await
        .unwrap_or_else(|e| panic!("creating serviceaccount {}: {e}", sa.name_any()))
}

/// `key=value` lines of a log.
fn log_values(log: &str) -> HashMap<&str, &str> {
    log.lines().filter_map(|l| l.split_once('=')).collect()
}

// ---- test/e2e/auth/service_accounts.go ------------------------------------------------

async fn serviceaccount_lifecycle(ctx: Ctx) {
    let (client, ns) = (ctx.client.clone(), ctx.ns.clone());
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
    let name = "testserviceaccount";
    let sa: ServiceAccount =
        obj(json!({"metadata": {"name": name, "labels": {"test-serviceaccount-static": "true"}}}));
    let created = api
        .create(&pp(), &sa)
        .await
        .expect("creating the serviceaccount");
    assert_eq!(api.get(name).await.unwrap().uid(), created.uid());

    let wp = WatchParams::default()
        .labels("test-serviceaccount-static=true")
        .timeout(180)
        .disable_bookmarks();
    let mut w = Watcher::start(&api, &wp, "").await;
    assert!(matches!(w.next(WAIT).await, WatchEvent::Added(s) if s.name_any() == name));

    // What Go's json.Marshal makes of ServiceAccount{AutomountServiceAccountToken: &false}.
    let patch =
        json!({"metadata": {"creationTimestamp": null}, "automountServiceAccountToken": false});
    api.patch(name, &PatchParams::default(), &Patch::Strategic(patch))
        .await
        .expect("patching the serviceaccount");
    assert!(
        matches!(w.next(WAIT).await, WatchEvent::Modified(s) if s.automount_service_account_token == Some(false))
    );

    let list = Api::<ServiceAccount>::all(client)
        .list(&ListParams::default().labels("test-serviceaccount-static=true"))
        .await
        .unwrap();
    assert!(list.items.iter().any(|s| s.name_any() == name
        && s.namespace().as_deref() == Some(ns.as_str())
        && s.automount_service_account_token == Some(false)));

    api.delete_collection(&DeleteParams::default(), &ListParams::default())
        .await
        .expect("deletecollection");
    assert!(matches!(w.next(WAIT).await, WatchEvent::Deleted(s) if s.name_any() == name));
}

/// The token, CA and namespace files in every container, matching the namespace's root CA
/// ConfigMap and a token the TokenReview API authenticates as the pod's service account.
async fn mount_api_token(ctx: Ctx) {
    let sa = create_sa(&ctx, json!({"metadata": {"name": "mount-test"}})).await;
    // Each file base64 on one line (a token has no newline, a CA bundle several).
    let script = format!(
        "for f in token ca.crt namespace; do echo \"$f=$(base64 -w0 {TOKEN_MOUNT}/$f)\"; done; \
         echo read=done; trap 'exit 0' TERM; while true; do sleep 1; done"
    );
    let name = "pod-service-account-mount-test";
    let pod = ctx.pod(
        name,
        json!({
            "serviceAccountName": sa.name_any(),
            "containers": [ctx.sh("test", &script)],
            "terminationGracePeriodSeconds": 0,
        }),
    );
    ctx.create_pod(&pod).await;
    ctx.wait_running(name).await;
    ctx.wait_log(name, "test", "read=done", WAIT).await;
    let log = ctx.logs(name, "test").await;
    let values = log_values(&log);
    let file = |f: &str| -> String {
        let b64 = values
            .get(f)
            .unwrap_or_else(|| panic!("no {f} in the log:\n{log}"));
        let bytes = jwt::base64_decode(b64).unwrap_or_else(|e| panic!("{f}: {e}:\n{log}"));
        String::from_utf8(bytes).unwrap_or_else(|e| panic!("{f} is not UTF-8: {e}"))
    };
    let (token, ca, namespace) = (file("token"), file("ca.crt"), file("namespace"));

    let root_ca = ctx
        .api::<ConfigMap>()
        .get(ROOT_CA)
        .await
        .unwrap_or_else(|e| panic!("reading {ROOT_CA}: {e}"));
    let want_ca = root_ca.data.unwrap_or_default().remove("ca.crt");
    assert_eq!(
        Some(&ca),
        want_ca.as_ref(),
        "the mounted ca.crt differs from {ROOT_CA}"
    );
    assert!(ca.contains("BEGIN CERTIFICATE"), "{ca}");
    assert_eq!(namespace, ctx.ns);

    let review: TokenReview = obj(json!({"spec": {"token": token}}));
    let review = Api::<TokenReview>::all(ctx.client.clone())
        .create(&pp(), &review)
        .await
        .expect("creating a TokenReview");
    let status = review.status.expect("TokenReview status");
    assert_eq!(
        status.authenticated,
        Some(true),
        "the mounted token is not authenticated: {status:?}"
    );
    assert_eq!(status.error.unwrap_or_default(), "");
    let user = status.user.expect("the token's user");
    assert_eq!(
        user.username.as_deref(),
        Some(format!("system:serviceaccount:{}:mount-test", ctx.ns).as_str())
    );
    let groups = user.groups.unwrap_or_default();
    for g in [
        "system:authenticated".to_string(),
        "system:serviceaccounts".to_string(),
        format!("system:serviceaccounts:{}", ctx.ns),
    ] {
        assert!(groups.contains(&g), "expected group {g}, had {groups:?}");
    }
}

/// The ServiceAccount admission mounts the token only when neither the pod spec nor (for a
/// pod spec that does not say) the ServiceAccount opts out; the pod spec wins.
async fn opt_out_of_automount(ctx: Ctx) {
    create_sa(
        &ctx,
        json!({"metadata": {"name": "mount"}, "automountServiceAccountToken": true}),
    )
    .await;
    create_sa(
        &ctx,
        json!({"metadata": {"name": "nomount"}, "automountServiceAccountToken": false}),
    )
    .await;
    let cases: [(&str, &str, Option<bool>, bool); 9] = [
        ("pod-service-account-defaultsa", "default", None, true),
        ("pod-service-account-mountsa", "mount", None, true),
        ("pod-service-account-nomountsa", "nomount", None, false),
        // The pod spec wins when opting in...
        (
            "pod-service-account-defaultsa-mountspec",
            "default",
            Some(true),
            true,
        ),
        (
            "pod-service-account-mountsa-mountspec",
            "mount",
            Some(true),
            true,
        ),
        (
            "pod-service-account-nomountsa-mountspec",
            "nomount",
            Some(true),
            true,
        ),
        // ...and when opting out.
        (
            "pod-service-account-defaultsa-nomountspec",
            "default",
            Some(false),
            false,
        ),
        (
            "pod-service-account-mountsa-nomountspec",
            "mount",
            Some(false),
            false,
        ),
        (
            "pod-service-account-nomountsa-nomountspec",
            "nomount",
            Some(false),
            false,
        ),
    ];
    for (name, sa, automount, want) in cases {
        let mut spec = json!({
            "serviceAccountName": sa,
            "containers": [ctx.sh("token-test", "true")],
        });
        if let Some(a) = automount {
            spec["automountServiceAccountToken"] = json!(a);
        }
        let created = ctx.create_pod(&ctx.pod(name, spec)).await;
        let spec = created.spec.expect("pod spec");
        let mounted = spec.containers.iter().any(|c| {
            c.volume_mounts
                .iter()
                .flatten()
                .any(|m| m.mount_path == TOKEN_MOUNT)
        });
        assert_eq!(
            mounted, want,
            "{name}: expected the token volume mount {want}, got {mounted}: {:?}",
            spec.containers[0].volume_mounts
        );
    }
}

/// A projected serviceAccountToken volume holds a JWT (agnhost `mounttest --file_content`).
async fn projected_service_account_token(ctx: Ctx) {
    let name = format!("test-pod-{:x}", Rng::new().below(u64::MAX));
    let path = "/test-volume/token";
    let pod = ctx.pod(
        &name,
        json!({
            "containers": [with(
                ctx.sh("test-container", &format!("echo \"content of file \\\"{path}\\\": $(cat {path})\"")),
                json!({"volumeMounts": [{"name": "test-volume", "mountPath": "/test-volume", "readOnly": true}]}),
            )],
            "volumes": [{"name": "test-volume", "projected": {"sources": [
                {"serviceAccountToken": {"path": "token", "expirationSeconds": 3600}},
            ]}}],
        }),
    );
    let (ok, log) = ctx.run_to_end(pod, "test-container").await;
    assert!(ok, "pod {name} failed; its log:\n{log}");
    let prefix = format!("content of file \"{path}\": ");
    let token = log
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} in the log:\n{log}"));
    // Upstream's pattern: [A-Za-z0-9-_=]+\.[A-Za-z0-9-_=]+\.?[A-Za-z0-9-_.+/=]*
    let b64url = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_=".contains(c))
    };
    let parts: Vec<&str> = token.split('.').collect();
    assert!(
        parts.len() == 3 && parts.iter().all(|p| b64url(p)),
        "not a JWT: {token:?}"
    );
    let (_, claims) = jwt::unverified_parts(token).unwrap_or_else(|e| panic!("{e}: {token}"));
    assert_eq!(
        claims["sub"],
        format!("system:serviceaccount:{}:default", ctx.ns),
        "{claims}"
    );
}

/// The pod's half of agnhost's `test-service-account-issuer-discovery`: decode the projected
/// token, check its issuer, key id and audience, and hand the token and the in-cluster
/// credentials (API token, CA) to the runner through the log.
const OIDC_VALIDATOR: &str = r#"set -e
tok=$(cat /var/run/secrets/tokens/sa-token)
echo "OK: Got token"
b64url() { s=$(echo "$1" | tr '_-' '/+'); while [ $(( ${#s} % 4 )) -ne 0 ]; do s="$s="; done; echo "$s" | base64 -d; }
header=$(b64url "$(echo "$tok" | cut -d. -f1)")
claims=$(b64url "$(echo "$tok" | cut -d. -f2)")
iss=$(echo "$claims" | sed -n 's/.*"iss":"\([^"]*\)".*/\1/p')
kid=$(echo "$header" | sed -n 's/.*"kid":"\([^"]*\)".*/\1/p')
[ -n "$iss" ] && [ -n "$kid" ] || { echo "FAIL: no iss or kid: $header $claims"; exit 1; }
echo "OK: got issuer $iss"
echo "$claims" | grep -qF '"oidc-discovery-test"' || { echo "FAIL: audience: $claims"; exit 1; }
echo "token=$tok"
echo "api-token=$(cat /var/run/secrets/kubernetes.io/serviceaccount/token)"
echo "ca=$(base64 -w0 /var/run/secrets/kubernetes.io/serviceaccount/ca.crt)"
"#;

/// The DER certificates of a PEM bundle.
fn pem_certificates(pem: &str) -> Vec<Vec<u8>> {
    pem.split("-----BEGIN CERTIFICATE-----")
        .skip(1)
        .map(|block| {
            let body = block
                .split("-----END CERTIFICATE-----")
                .next()
                .unwrap_or("");
            let b64: String = body.split_whitespace().collect();
            jwt::base64_decode(&b64).unwrap_or_else(|e| panic!("a CA certificate: {e}"))
        })
        .collect()
}

/// GET `url` as agnhost's in-cluster OIDC client does: the pod's API token, the pod's CA
/// as the only root, the URL's host as the TLS server name. A `kubernetes.default.svc...`
/// host is reached at the `kubernetes` Service's endpoint (its EndpointSlice), where the
/// pod's DNS and Service routing would take it.
async fn in_cluster_get(ctx: &Ctx, url: &str, ca_pem: &str, token: &str) -> String {
    let uri: http::Uri = url.parse().unwrap_or_else(|e| panic!("{url}: {e}"));
    let host = uri.host().unwrap_or_else(|| panic!("{url} has no host"));
    let origin = if host.starts_with("kubernetes.default.svc") {
        let slices = Api::<EndpointSlice>::namespaced(ctx.client.clone(), "default")
            .list(&ListParams::default().labels("kubernetes.io/service-name=kubernetes"))
            .await
            .unwrap_or_else(|e| panic!("the kubernetes Service's EndpointSlices: {e}"));
        let slice = slices
            .items
            .first()
            .expect("an EndpointSlice of the kubernetes Service");
        let address = slice
            .endpoints
            .first()
            .and_then(|e| e.addresses.first())
            .expect("an endpoint of the kubernetes Service");
        let port = slice
            .ports
            .iter()
            .flatten()
            .find_map(|p| p.port)
            .expect("the kubernetes Service's port");
        let address = if address.contains(':') {
            format!("[{address}]")
        } else {
            address.clone()
        };
        format!("https://{address}:{port}")
    } else {
        format!("https://{}", uri.authority().expect("an authority"))
    };
    let mut config = kube::Config::new(origin.parse().expect("origin"));
    config.root_cert = Some(pem_certificates(ca_pem));
    config.tls_server_name = Some(host.to_string());
    let client = kube::Client::try_from(config).unwrap_or_else(|e| panic!("a client: {e}"));
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let req = http::Request::get(path)
        .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Vec::new())
        .unwrap();
    client
        .request_text(req)
        .await
        .unwrap_or_else(|e| panic!("GET {url} (at {origin}): {e}"))
}

/// Upstream's agnhost pod fetches the discovery documents itself; the busybox image's
/// `wget` cannot (its TLS sends no signature_algorithms, so a TLS 1.2 server may only sign
/// with SHA-1, which rustls and OpenSSL refuse). So the pod checks and hands over its
/// token and in-cluster credentials, and the runner makes the in-cluster client's requests
/// with them and verifies the signature, as go-oidc does.
async fn service_account_issuer_discovery(ctx: Ctx) {
    // Let the pod's service account read the discovery documents, as upstream does (the
    // default binding for system:serviceaccounts would do too).
    let role = "system:service-account-issuer-discovery";
    let crbs: Api<ClusterRoleBinding> = Api::all(ctx.client.clone());
    let crb_name = format!("{}-{role}", ctx.ns);
    let crb: ClusterRoleBinding = obj(json!({
        "metadata": {"name": crb_name},
        "subjects": [{"kind": "ServiceAccount", "apiGroup": "", "name": "default", "namespace": ctx.ns}],
        "roleRef": {"name": role, "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole"},
    }));
    crbs.create(&pp(), &crb)
        .await
        .unwrap_or_else(|e| panic!("granting {role}: {e}"));
    let _cleanup = Cleanup::new({
        let (crbs, name) = (crbs.clone(), crb_name.clone());
        async move {
            let _ = crbs.delete(&name, &DeleteParams::default()).await;
        }
    });

    let audience = "oidc-discovery-test";
    let name = "oidc-discovery-validator";
    let pod = ctx.pod(
        name,
        json!({
            "serviceAccountName": "default",
            "containers": [with(
                ctx.sh(name, OIDC_VALIDATOR),
                json!({"volumeMounts": [{"mountPath": "/var/run/secrets/tokens", "name": "sa-token", "readOnly": true}]}),
            )],
            "volumes": [{"name": "sa-token", "projected": {"sources": [
                {"serviceAccountToken": {"path": "sa-token", "expirationSeconds": 600, "audience": audience}},
            ]}}],
        }),
    );
    let (ok, log) = ctx.run_to_end(pod, name).await;
    assert!(ok, "the validator pod failed; its log:\n{log}");
    let values = log_values(&log);
    let value = |k: &str| -> &str {
        values
            .get(k)
            .copied()
            .unwrap_or_else(|| panic!("no {k} in the log:\n{log}"))
    };
    let token = value("token");
    let ca = String::from_utf8(jwt::base64_decode(value("ca")).expect("ca")).expect("ca");
    let api_token = value("api-token");

    let (header, claims) = jwt::unverified_parts(token).unwrap_or_else(|e| panic!("{e}"));
    let issuer = claims["iss"].as_str().expect("iss").to_string();
    let text = in_cluster_get(
        &ctx,
        &format!("{issuer}/.well-known/openid-configuration"),
        &ca,
        api_token,
    )
    .await;
    let configuration: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(configuration["issuer"], issuer, "{configuration}");
    let jwks_uri = configuration["jwks_uri"]
        .as_str()
        .unwrap_or_else(|| panic!("no jwks_uri: {configuration}"));
    let text = in_cluster_get(&ctx, jwks_uri, &ca, api_token).await;
    let jwks: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    jwt::verify(token, &jwks).unwrap_or_else(|e| panic!("{e}; JWKS: {jwks}"));
    assert!(
        claims["aud"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x == audience)),
        "{claims}"
    );
    assert_eq!(
        claims["sub"],
        format!("system:serviceaccount:{}:default", ctx.ns)
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        claims["exp"].as_u64().is_some_and(|exp| exp > now),
        "{claims}"
    );
    let algs = &configuration["id_token_signing_alg_values_supported"];
    assert!(
        algs.as_array()
            .is_some_and(|a| a.iter().any(|x| *x == header["alg"])),
        "the token's alg {} is not among {algs}",
        header["alg"]
    );

    crbs.delete(&crb_name, &DeleteParams::default())
        .await
        .unwrap_or_else(|e| panic!("deleting {crb_name}: {e}"));
}

/// The root CA ConfigMap is published in every namespace, recreated when deleted and
/// reconciled when changed.
async fn root_ca_configmap(ctx: Ctx) {
    let api: Api<ConfigMap> = ctx.api();
    let has_ca = |cm: &ConfigMap| {
        cm.data
            .as_ref()
            .and_then(|d| d.get("ca.crt"))
            .is_some_and(|v| !v.is_empty())
    };
    let present = || async {
        match api.get(ROOT_CA).await {
            Ok(cm) => Ok(cm),
            Err(kube::Error::Api(s)) if s.code == 404 => Err("not found".to_string()),
            Err(e) => panic!("reading {ROOT_CA}: {e}"),
        }
    };
    let first = poll("the root CA configmap", FOREVER, present).await;
    assert!(has_ca(&first), "{first:?}");

    api.delete(ROOT_CA, &DeleteParams::default().grace_period(0))
        .await
        .unwrap_or_else(|e| panic!("deleting {ROOT_CA}: {e}"));
    let recreated = poll("a new root CA configmap", FOREVER, present).await;
    assert_ne!(recreated.uid(), first.uid(), "not recreated");

    // An unconditional update (no resourceVersion), as upstream sends it.
    let emptied: ConfigMap = obj(json!({"metadata": {"name": ROOT_CA}, "data": {"ca.crt": ""}}));
    api.replace(ROOT_CA, &pp(), &emptied)
        .await
        .unwrap_or_else(|e| panic!("updating {ROOT_CA}: {e}"));
    poll("the root CA configmap reconciled", FOREVER, || async {
        let cm = present().await?;
        if has_ca(&cm) {
            Ok(())
        } else {
            Err(format!("{:?}", cm.data))
        }
    })
    .await;
}

async fn update_serviceaccount(ctx: Ctx) {
    let api: Api<ServiceAccount> = ctx.api();
    let name = format!("e2e-sa-{:x}", Rng::new().below(0xfffff));
    let created = create_sa(
        &ctx,
        json!({"metadata": {"name": name}, "automountServiceAccountToken": false}),
    )
    .await;
    assert_eq!(created.automount_service_account_token, Some(false));
    // client-go's RetryOnConflict around get, change, update.
    for _ in 0..5 {
        let mut sa = api
            .get(&name)
            .await
            .unwrap_or_else(|e| panic!("get {name}: {e}"));
        sa.automount_service_account_token = Some(true);
        match api.replace(&name, &pp(), &sa).await {
            Ok(updated) => {
                assert_eq!(updated.automount_service_account_token, Some(true));
                return;
            }
            Err(kube::Error::Api(s)) if s.code == 409 => continue,
            Err(e) => panic!("updating {name}: {e}"),
        }
    }
    panic!("updating {name}: too many conflicts");
}

// ---- test/e2e/auth/subjectreviews.go --------------------------------------------------

/// A SubjectAccessReview and a LocalSubjectAccessReview for a service account answer what
/// the same request, made while impersonating it, gets.
async fn subject_review_api_operations(ctx: Ctx) {
    let ns = ctx.ns.clone();
    let sa = create_sa(&ctx, json!({"metadata": {"name": "e2e"}})).await;
    let username = format!("system:serviceaccount:{ns}:e2e");
    let groups = vec![
        "system:authenticated".to_string(),
        "system:serviceaccounts".to_string(),
        format!("system:serviceaccounts:{ns}"),
    ];
    let uid = sa.uid().expect("the serviceaccount's uid");
    let attributes =
        json!({"verb": "list", "resource": "configmaps", "namespace": ns, "version": "v1"});

    let sar: SubjectAccessReview = obj(json!({"spec": {
        "resourceAttributes": attributes, "user": username, "groups": groups, "uid": uid,
    }}));
    let sar = Api::<SubjectAccessReview>::all(ctx.client.clone())
        .create(&pp(), &sar)
        .await
        .expect("creating a SubjectAccessReview");
    let sar_status = sar.status.expect("SubjectAccessReview status");

    // The impersonated client: the admin's credentials with client-go's Impersonate-*
    // headers.
    let mut req = http::Request::get(format!("/api/v1/namespaces/{ns}/configmaps"))
        .header("Impersonate-User", &username)
        .header("Impersonate-Uid", &uid);
    for g in &groups {
        req = req.header("Impersonate-Group", g);
    }
    let listed = ctx
        .client
        .request::<Value>(req.body(Vec::new()).unwrap())
        .await;
    let actually_allowed = match &listed {
        Err(kube::Error::Api(s)) if s.code == 403 && s.reason == "Forbidden" => false,
        Err(e) => panic!("listing configmaps as {username}: unexpected error {e}"),
        Ok(_) => true,
    };
    assert_eq!(
        sar_status.allowed, actually_allowed,
        "SubjectAccessReview for {username} in {ns}: allowed {}, request allowed {actually_allowed}, \
         request error {listed:?}; review status {sar_status:?}",
        sar_status.allowed
    );

    // Upstream names the user by the service account's bare name here.
    let lsar: LocalSubjectAccessReview = obj(json!({
        "metadata": {"namespace": ns},
        "spec": {"resourceAttributes": attributes, "user": "e2e", "groups": groups, "uid": uid},
    }));
    let lsar = ctx
        .api::<LocalSubjectAccessReview>()
        .create(&pp(), &lsar)
        .await
        .expect("creating a LocalSubjectAccessReview");
    let lsar_status = lsar.status.expect("LocalSubjectAccessReview status");
    assert_eq!(
        lsar_status.allowed, actually_allowed,
        "LocalSubjectAccessReview for {username} in {ns}: allowed {}, request allowed \
         {actually_allowed}, request error {listed:?}; review status {lsar_status:?}",
        lsar_status.allowed
    );
}

// ---- test/e2e/auth/certificates.go ----------------------------------------------------

/// A PKCS#10 request for `e2e.example.com` (P-256, SAN DNS:e2e.example.com), made once with
/// openssl: upstream makes a fresh one with Go's crypto, which the runner does not link.
const CSR_PEM: &str = "-----BEGIN CERTIFICATE REQUEST-----
MIIBAjCBqQIBADAaMRgwFgYDVQQDDA9lMmUuZXhhbXBsZS5jb20wWTATBgcqhkjO
PQIBBggqhkjOPQMBBwNCAASylxUsTKtqDW8LlPXtsRxD3L0saMv2wFdMOfHgvS7I
e1nDxFEaNtMpAL2Tg25yBB5uNy8IGE211+HdKdr1jYiHoC0wKwYJKoZIhvcNAQkO
MR4wHDAaBgNVHREEEzARgg9lMmUuZXhhbXBsZS5jb20wCgYIKoZIzj0EAwIDSAAw
RQIhALlKQlnv2XWuBdSkoXCCERV5u9qLCQrcpZ34rt+rrZMvAiBfdn+mnkB8r0qn
3mrC1R9lCnZuWW260K90bhBa2NA9nA==
-----END CERTIFICATE REQUEST-----
";

/// A self-signed certificate for `e2e.example.com` (upstream's `GenerateSelfSignedCertKey`),
/// valid until 2126.
const CERT_PEM: &str = "-----BEGIN CERTIFICATE-----
MIIBpjCCAU2gAwIBAgIUdwgvTG8ou2TnFi8ltGzyYGvIricwCgYIKoZIzj0EAwIw
GjEYMBYGA1UEAwwPZTJlLmV4YW1wbGUuY29tMCAXDTI2MTIwNzE5MDczOVoYDzIx
MjYxMTEzMTkwNzM5WjAaMRgwFgYDVQQDDA9lMmUuZXhhbXBsZS5jb20wWTATBgcq
hkjOPQIBBggqhkjOPQMBBwNCAAS87lxOHJ1+xczEx4/nWntgUSAxSYQZggCOCtmB
sslLsWHx5tNwJMu9Osli8QJ9ISp9qgjIcB/fPGb6aX5gWs6oo28wbTAdBgNVHQ4E
FgQU/Vk+dVLgZ+r7Li4uCl6lCA+osy0wHwYDVR0jBBgwFoAU/Vk+dVLgZ+r7Li4u
Cl6lCA+osy0wDwYDVR0TAQH/BAUwAwEB/zAaBgNVHREEEzARgg9lMmUuZXhhbXBs
ZS5jb20wCgYIKoZIzj0EAwIDRwAwRAIgEPH80ozPegfvTRMCjo29mTqAItdBLFO6
0klOpjrTYb4CIBuFv5Ma6QFRu3NV8SzH5KJJIfgbt0bv5r/RkCCNI0CF
-----END CERTIFICATE-----
";

const CSR_GROUP: &str = "certificates.k8s.io";

fn csr_condition(
    type_: &str,
    reason: &str,
    message: Option<&str>,
) -> CertificateSigningRequestCondition {
    CertificateSigningRequestCondition {
        type_: type_.into(),
        status: "True".into(),
        reason: Some(reason.into()),
        message: message.map(Into::into),
        ..Default::default()
    }
}

/// GET a subresource as JSON, to check the kind and group/version it is served as.
async fn get_raw(ctx: &Ctx, path: String) -> Value {
    ctx.client
        .request::<Value>(http::Request::get(&path).body(Vec::new()).unwrap())
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

async fn csr_api_operations(ctx: Ctx) {
    let client = ctx.client.clone();
    let api: Api<CertificateSigningRequest> = Api::all(client.clone());
    let signer = format!("example.com/e2e-{}", ctx.ns);
    let by_signer = ListParams::default().fields(&format!("spec.signerName={signer}"));
    // CSRs are cluster-scoped: whatever happens, remove this test's.
    let _cleanup = Cleanup::new({
        let (api, by_signer) = (api.clone(), by_signer.clone());
        async move {
            let _ = api
                .delete_collection(&DeleteParams::default(), &by_signer)
                .await;
        }
    });
    let mut template: CertificateSigningRequest = obj(json!({
        "metadata": {"generateName": "e2e-example-csr-"},
        "spec": {
            "request": "",
            "signerName": signer,
            "expirationSeconds": 3600,
            "usages": ["digital signature", "key encipherment", "server auth"],
        },
    }));
    template.spec.request = ByteString(CSR_PEM.as_bytes().to_vec());

    // Discovery.
    let groups = client
        .list_api_groups()
        .await
        .unwrap_or_else(|e| panic!("GET /apis: {e}"));
    assert!(
        groups
            .groups
            .iter()
            .any(|g| g.name == CSR_GROUP && g.versions.iter().any(|v| v.version == "v1")),
        "expected the certificates API group/version in /apis"
    );
    let group = get_raw(&ctx, format!("/apis/{CSR_GROUP}")).await;
    assert!(
        group["versions"]
            .as_array()
            .is_some_and(|vs| vs.iter().any(|v| v["version"] == "v1")),
        "expected certificates API version v1, got {group}"
    );
    let resources = client
        .list_api_group_resources(&format!("{CSR_GROUP}/v1"))
        .await
        .unwrap_or_else(|e| panic!("GET /apis/{CSR_GROUP}/v1: {e}"));
    for want in [
        "certificatesigningrequests",
        "certificatesigningrequests/approval",
        "certificatesigningrequests/status",
    ] {
        assert!(
            resources.resources.iter().any(|r| r.name == want),
            "expected {want} in /apis/{CSR_GROUP}/v1"
        );
    }

    // create, get, list, watch, patch, update.
    for _ in 0..2 {
        api.create(&pp(), &template).await.expect("create");
    }
    let created = api.create(&pp(), &template).await.expect("create");
    let name = created.name_any();
    let gotten = api.get(&name).await.expect("get");
    assert_eq!(gotten.uid(), created.uid());
    assert_eq!(gotten.spec.expiration_seconds, Some(3600));
    let csrs = api.list(&by_signer).await.expect("list");
    assert_eq!(csrs.items.len(), 3, "filtered list should have 3 items");

    let rv = csrs.metadata.resource_version.unwrap_or_default();
    let wp = WatchParams::default()
        .fields(&format!("metadata.name={name}"))
        .disable_bookmarks();
    let mut w = Watcher::start(&api, &wp, &rv).await;
    let patched = api
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"patched": "true"}}})),
        )
        .await
        .expect("patch");
    assert_eq!(
        patched.annotations().get("patched").map(String::as_str),
        Some("true")
    );
    let mut to_update = patched.clone();
    to_update
        .annotations_mut()
        .insert("updated".into(), "true".into());
    let updated = api.replace(&name, &pp(), &to_update).await.expect("update");
    assert_eq!(
        updated.annotations().get("updated").map(String::as_str),
        Some("true")
    );
    loop {
        match w.next(FOREVER).await {
            WatchEvent::Modified(csr) => {
                if csr.annotations().get("patched").map(String::as_str) == Some("true") {
                    break;
                }
            }
            other => panic!("expected MODIFIED, got {}", describe(&other)),
        }
    }

    // The approval subresource.
    let base = format!("/apis/{CSR_GROUP}/v1/certificatesigningrequests/{name}");
    for sub in ["approval", "status"] {
        let got = get_raw(&ctx, format!("{base}/{sub}")).await;
        assert_eq!(got["apiVersion"], "certificates.k8s.io/v1", "{sub}: {got}");
        assert_eq!(got["kind"], "CertificateSigningRequest", "{sub}: {got}");
        assert_eq!(
            got["metadata"]["uid"].as_str(),
            created.uid().as_deref(),
            "{sub}"
        );
    }
    let patched = api
        .patch_subresource(
            "approval",
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({
                "metadata": {"annotations": {"patchedapproval": "true"}},
                "status": {"conditions": [{"type": "ApprovalPatch", "status": "True", "reason": "e2e"}]},
            })),
        )
        .await
        .expect("patch /approval");
    let conditions = patched
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    assert_eq!(conditions.len(), 1, "{conditions:?}");
    assert_eq!(conditions[0].type_, "ApprovalPatch");
    assert_eq!(
        patched
            .annotations()
            .get("patchedapproval")
            .map(String::as_str),
        Some("true")
    );
    let mut to_approve = patched.clone();
    to_approve
        .status
        .get_or_insert_with(Default::default)
        .conditions
        .get_or_insert_with(Vec::new)
        .push(csr_condition(
            "Approved",
            "E2E",
            Some("Set from an e2e test"),
        ));
    let approved = api
        .replace_subresource("approval", &name, &pp(), &to_approve)
        .await
        .expect("update /approval");
    let conditions = approved
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    assert_eq!(conditions.len(), 2, "{conditions:?}");
    assert_eq!(conditions[1].type_, "Approved");

    // The status subresource.
    let certificate = serde_json::to_value(ByteString(CERT_PEM.as_bytes().to_vec())).unwrap();
    let patched = api
        .patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({
                "metadata": {"annotations": {"patchedstatus": "true"}},
                "status": {"certificate": certificate},
            })),
        )
        .await
        .expect("patch /status");
    assert_eq!(
        patched.status.as_ref().and_then(|s| s.certificate.as_ref()),
        Some(&ByteString(CERT_PEM.as_bytes().to_vec())),
        "patched object should have the applied certificate"
    );
    assert_eq!(
        patched
            .annotations()
            .get("patchedstatus")
            .map(String::as_str),
        Some("true")
    );
    let mut to_update = patched.clone();
    let conditions = to_update
        .status
        .get_or_insert_with(Default::default)
        .conditions
        .get_or_insert_with(Vec::new);
    conditions.push(csr_condition(
        "StatusUpdate",
        "E2E",
        Some("Set from an e2e test"),
    ));
    let want = conditions.len();
    let updated = api
        .replace_status(&name, &pp(), &to_update)
        .await
        .expect("update /status");
    let conditions = updated
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    assert_eq!(conditions.len(), want, "{conditions:?}");
    assert_eq!(
        conditions.last().map(|c| c.type_.as_str()),
        Some("StatusUpdate")
    );

    // delete, deletecollection.
    api.delete(&name, &DeleteParams::default())
        .await
        .expect("delete");
    let gone = status_of(api.get(&name).await);
    assert_eq!(gone.code, 404, "{gone:?}");
    assert_eq!(api.list(&by_signer).await.expect("list").items.len(), 2);
    api.delete_collection(&DeleteParams::default(), &by_signer)
        .await
        .expect("deletecollection");
    assert_eq!(api.list(&by_signer).await.expect("list").items.len(), 0);
}

#[rustfmt::skip]
pub fn tests() -> Vec<Test> {
    vec![
        test!("[sig-auth] ServiceAccounts should run through the lifecycle of a ServiceAccount [Conformance]", serviceaccount_lifecycle),
        test!("[sig-auth] ServiceAccounts should mount an API token into pods [Conformance]", mount_api_token),
        test!("[sig-auth] ServiceAccounts should allow opting out of API token automount [Conformance]", opt_out_of_automount),
        test!("[sig-auth] ServiceAccounts should mount projected service account token [Conformance]", projected_service_account_token),
        test!("[sig-auth] ServiceAccounts ServiceAccountIssuerDiscovery should support OIDC discovery of service account issuer [Conformance]", service_account_issuer_discovery),
        test!("[sig-auth] ServiceAccounts should guarantee kube-root-ca.crt exist in any namespace [Conformance]", root_ca_configmap),
        test!("[sig-auth] ServiceAccounts should update a ServiceAccount [Conformance]", update_serviceaccount),
        test!("[sig-auth] SubjectReview should support SubjectReview API operations [Conformance]", subject_review_api_operations),
        test!("[sig-auth] Certificates API [Privileged:ClusterAdmin] should support CSR API operations [Conformance]", csr_api_operations),
    ]
}
