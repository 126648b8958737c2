//! Identities with the real kubectl. Service-account tokens: `kubectl create token`
//! (TokenRequest), the token as a bearer credential (`kubectl auth whoami`), TokenReview,
//! tokens bound to a pod and to the ServiceAccount stop working when those are deleted,
//! and the OIDC discovery documents publish the key that signed them. Impersonation
//! (`--as`) and the access reviews of `kubectl auth can-i`.

use base64::Engine as _;
use keelson_e2e::{json, namespace, CLUSTER};
use keelson_testkit::{eventually, ok};
use serde_json::Value;
use std::process::Output;
use std::time::Duration;

/// kubectl with only the server, its CA and `token`: no client certificate.
fn kubectl_as(token: &str, args: &[&str]) -> Output {
    let c = &*CLUSTER;
    let server = format!("--server={}", c.server_url());
    let ca = format!("--certificate-authority={}", c.pki.ca_cert.display());
    let token = format!("--token={token}");
    let mut all = vec![
        "--kubeconfig=/dev/null",
        server.as_str(),
        ca.as_str(),
        token.as_str(),
    ];
    all.extend_from_slice(args);
    c.kubectl_with("kubectl", &all, None)
}

fn whoami(token: &str) -> Result<Value, String> {
    let out = kubectl_as(token, &["auth", "whoami", "-o", "json"]);
    if out.status.success() {
        Ok(json(&String::from_utf8_lossy(&out.stdout)))
    } else {
        Err(String::from_utf8_lossy(&out.stderr).to_string())
    }
}

/// The JSON of a JWT's header or payload.
fn jwt_part(token: &str, i: usize) -> Value {
    let part = token.split('.').nth(i).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[test]
fn tokens_for_service_accounts_authenticate_until_their_objects_go() {
    let c = &*CLUSTER;
    let ns = namespace(c, "sa-tokens");
    ok(c.kubectl(&["create", "serviceaccount", "app", "-n", &ns]));
    let token = ok(c.kubectl(&["create", "token", "app", "-n", &ns, "--duration=15m"]));
    let token = token.trim().to_string();

    let me = whoami(&token).expect("the token authenticates");
    let info = &me["status"]["userInfo"];
    assert_eq!(info["username"], format!("system:serviceaccount:{ns}:app"));
    let groups: Vec<&str> = info["groups"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        groups,
        [
            "system:serviceaccounts",
            &format!("system:serviceaccounts:{ns}"),
            "system:authenticated"
        ]
    );
    // The token works for the API at large (authorization is not enforced yet).
    ok(kubectl_as(&token, &["get", "pods", "-n", &ns]));

    // Kubernetes' claims, and a key the OIDC documents publish.
    let claims = jwt_part(&token, 1);
    assert_eq!(claims["sub"], format!("system:serviceaccount:{ns}:app"));
    assert_eq!(
        claims["iss"],
        "https://kubernetes.default.svc.cluster.local"
    );
    assert_eq!(
        claims["aud"][0],
        "https://kubernetes.default.svc.cluster.local"
    );
    let lifetime = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
    assert_eq!(lifetime, 900);
    assert_eq!(claims["kubernetes.io"]["serviceaccount"]["name"], "app");
    let config = json(&ok(c.kubectl(&[
        "get",
        "--raw",
        "/.well-known/openid-configuration",
    ])));
    assert_eq!(config["issuer"], claims["iss"]);
    // Where this (loopback-bound) apiserver serves it.
    assert_eq!(
        config["jwks_uri"],
        format!("{}/openid/v1/jwks", c.server_url())
    );
    let keys = json(&ok(c.kubectl(&["get", "--raw", "/openid/v1/jwks"])));
    let kid = jwt_part(&token, 0)["kid"].clone();
    assert!(
        keys["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["kid"] == kid),
        "{keys}"
    );

    // TokenReview answers for the token (as a kubelet or another service would ask),
    // and reviews show in discovery as create-only. (`--raw`: kubectl's client-side
    // validation of a kind without PATCH asks for CRDs, which Keelson does not serve.)
    let review = format!(
        "{{\"apiVersion\": \"authentication.k8s.io/v1\", \"kind\": \"TokenReview\", \"spec\": {{\"token\": \"{token}\"}}}}"
    );
    let ask = |body: &str| {
        json(&ok(c.kubectl_with(
            "kubectl",
            &[
                "create",
                "--raw",
                "/apis/authentication.k8s.io/v1/tokenreviews",
                "-f",
                "-",
            ],
            Some(body),
        )))
    };
    let answer = ask(&review);
    assert_eq!(answer["status"]["authenticated"], true, "{answer}");
    assert_eq!(
        answer["status"]["user"]["username"],
        format!("system:serviceaccount:{ns}:app")
    );
    assert!(!answer["status"]["user"]["uid"].as_str().unwrap().is_empty());
    let elsewhere = review.replace("\"spec\": {", "\"spec\": {\"audiences\": [\"vault\"], ");
    let answer = ask(&elsewhere);
    assert_eq!(
        answer["status"]["authenticated"], false,
        "another audience: {answer}"
    );
    let listed = ok(c.kubectl(&[
        "api-resources",
        "--api-group=authentication.k8s.io",
        "-o",
        "wide",
    ]));
    for name in ["selfsubjectreviews", "tokenreviews"] {
        let line = listed
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{listed}"));
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(fields[4..], ["create"], "only create: {line}");
    }
    let get = c.kubectl(&["get", "tokenreviews"]);
    assert!(!get.status.success(), "reviews cannot be listed");

    // Bound to a pod: valid while the pod lives. (On a node, so that deleting it is
    // graceful; no kubelet runs here to finish the deletion.)
    ok(c.kubectl_with(
        "kubectl",
        &["apply", "-n", &ns, "-f", "-"],
        Some("{\"apiVersion\": \"v1\", \"kind\": \"Pod\", \"metadata\": {\"name\": \"holder\"}, \"spec\": {\"nodeName\": \"ghost\", \"containers\": [{\"name\": \"c\", \"image\": \"busybox\"}]}}"),
    ));
    let bound = ok(c.kubectl(&[
        "create",
        "token",
        "app",
        "-n",
        &ns,
        "--bound-object-kind=Pod",
        "--bound-object-name=holder",
    ]));
    let bound = bound.trim().to_string();
    assert_eq!(
        jwt_part(&bound, 1)["kubernetes.io"]["pod"]["name"],
        "holder"
    );
    whoami(&bound).expect("a pod-bound token authenticates");

    // Bad requests get Kubernetes' answers.
    let short = c.kubectl(&["create", "token", "app", "-n", &ns, "--duration=5m"]);
    assert!(!short.status.success());
    assert!(
        String::from_utf8_lossy(&short.stderr)
            .contains("may not specify a duration less than 10 minutes"),
        "{}",
        String::from_utf8_lossy(&short.stderr)
    );
    let missing = c.kubectl(&["create", "token", "nobody", "-n", &ns]);
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("serviceaccounts \"nobody\" not found")
    );
    let forged = format!("{}x", &token[..token.len() - 1]);
    assert!(whoami(&forged).unwrap_err().contains("Unauthorized"));

    // While the pod shuts down (its grace period) the token still works, as the pod may
    // still need the API; checked again once the 10 s the apiserver trusts a checked
    // token have passed.
    ok(c.kubectl(&["delete", "pod", "holder", "-n", &ns, "--wait=false"]));
    std::thread::sleep(Duration::from_secs(11));
    whoami(&bound).expect("a token of a pod in its grace period authenticates");

    // The pod goes: its token stops working (within those 10 s); the ServiceAccount
    // goes: all its tokens stop.
    ok(c.kubectl(&[
        "delete",
        "pod",
        "holder",
        "-n",
        &ns,
        "--grace-period=0",
        "--force",
    ]));
    eventually(
        Duration::from_secs(20),
        "the pod-bound token refused",
        || whoami(&bound).err().filter(|e| e.contains("Unauthorized")),
    );
    whoami(&token).expect("the unbound token still works");
    ok(c.kubectl(&["delete", "serviceaccount", "app", "-n", &ns]));
    eventually(
        Duration::from_secs(20),
        "the account's token refused",
        || whoami(&token).err().filter(|e| e.contains("Unauthorized")),
    );
}

/// Impersonation (`kubectl --as`) and the access reviews behind `kubectl auth can-i`.
/// Keelson enforces no authorization yet, so every review answers yes, as
/// kube-apiserver's AlwaysAllow authorizer does; bad reviews are still refused.
#[test]
fn impersonation_and_access_reviews() {
    let c = &*CLUSTER;
    let me = json(&ok(c.kubectl(&[
        "auth",
        "whoami",
        "--as=jane",
        "--as-group=dev",
        "-o",
        "json",
    ])));
    assert_eq!(me["status"]["userInfo"]["username"], "jane");
    assert_eq!(
        me["status"]["userInfo"]["groups"],
        serde_json::json!(["dev", "system:authenticated"])
    );
    let me = json(&ok(c.kubectl(&[
        "auth",
        "whoami",
        "--as=system:serviceaccount:ci:bot",
        "-o",
        "json",
    ])));
    assert_eq!(
        me["status"]["userInfo"]["groups"],
        serde_json::json!([
            "system:serviceaccounts",
            "system:serviceaccounts:ci",
            "system:authenticated"
        ])
    );

    assert_eq!(
        ok(c.kubectl(&["auth", "can-i", "create", "pods"])).trim(),
        "yes"
    );
    assert_eq!(
        ok(c.kubectl(&["auth", "can-i", "delete", "nodes", "--as=jane"])).trim(),
        "yes"
    );
    let rules = ok(c.kubectl(&["auth", "can-i", "--list", "-n", "default"]));
    assert!(rules.lines().any(|l| l.starts_with("*.*")), "{rules}");

    let post = |path: &str, body: &str| {
        c.kubectl_with("kubectl", &["create", "--raw", path, "-f", "-"], Some(body))
    };
    let sar = "/apis/authorization.k8s.io/v1/subjectaccessreviews";
    let out = post(
        sar,
        r#"{"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": {"user": "jane", "resourceAttributes": {"verb": "get", "resource": "pods"}}}"#,
    );
    assert_eq!(
        json(&String::from_utf8_lossy(&out.stdout))["status"]["allowed"],
        true
    );
    let out = post(
        sar,
        r#"{"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": {"resourceAttributes": {"verb": "get", "resource": "pods"}}}"#,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("at least one of user or group must be specified"),
        "{err}"
    );
    let local = "/apis/authorization.k8s.io/v1/namespaces/default/localsubjectaccessreviews";
    let out = post(
        local,
        r#"{"apiVersion": "authorization.k8s.io/v1", "kind": "LocalSubjectAccessReview", "spec": {"user": "jane", "resourceAttributes": {"namespace": "other", "verb": "get", "resource": "pods"}}}"#,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("must match metadata.namespace"), "{err}");
}
