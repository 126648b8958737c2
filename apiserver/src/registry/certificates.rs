//! What the registry does for certificates.k8s.io CertificateSigningRequests beyond
//! their strategy (`resources/src/kinds/certificatesigningrequests.rs`), because it
//! needs the requesting user or the authorizer:
//!
//! - the requester (`spec.username`, `uid`, `groups`) is the authenticated user, never
//!   the body (Kubernetes' `csrStrategy.PrepareForCreate`);
//! - `/status` keeps the Approved and Denied conditions, `/approval` keeps the
//!   certificate and the Failed condition (the status and approval strategies);
//! - admission as Kubernetes' plugins: `CertificateApproval` (an approver needs
//!   `approve` on `signers` named the signerName, or `<domain>/*`), `CertificateSigning`
//!   (`sign` to write a certificate), `CertificateSubjectRestriction` (no
//!   `system:masters` from `kubernetes.io/kube-apiserver-client`), and, as NodeRestriction
//!   for certificates, a node asking a kubelet signer only for its own name.

use super::admission::forbidden;
use super::UserInfo;
use crate::authz::node::node_name;
use crate::authz::{Attributes, Authorizer};
use keelson_apimachinery::{meta, ApiError};
use keelson_resources::kinds::certificatesigningrequests::{conditions_of, APPROVED, DENIED};
use keelson_resources::ResourceType;
use serde_json::{json, Value};

pub const GROUP: &str = "certificates.k8s.io";
pub const KUBE_APISERVER_CLIENT: &str = "kubernetes.io/kube-apiserver-client";
pub const KUBE_APISERVER_CLIENT_KUBELET: &str = "kubernetes.io/kube-apiserver-client-kubelet";
pub const KUBELET_SERVING: &str = "kubernetes.io/kubelet-serving";

fn is_csr(rt: &ResourceType) -> bool {
    rt.group == GROUP && rt.plural == "certificatesigningrequests"
}

fn signer_name(obj: &Value) -> &str {
    obj.pointer("/spec/signerName")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// On create: who asks is who is authenticated.
pub fn set_requester(rt: &ResourceType, obj: &mut Value, user: &UserInfo) {
    if !is_csr(rt) {
        return;
    }
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    spec.insert("username".into(), json!(user.name));
    if user.uid.is_empty() {
        spec.remove("uid");
    } else {
        spec.insert("uid".into(), json!(user.uid));
    }
    spec.insert("groups".into(), json!(user.groups));
    spec.remove("extra");
}

fn is_approval(c: &Value) -> bool {
    matches!(
        c.get("type").and_then(Value::as_str),
        Some(APPROVED | DENIED)
    )
}

fn is_failed(c: &Value) -> bool {
    c.get("type").and_then(Value::as_str) == Some("Failed")
}

/// `sent` with each Approved and Denied condition replaced by the stored one at the
/// same rank, when `sent` has as many of each type as `old`; `None` otherwise.
fn preserved_in_place(sent: &[Value], old: &[Value]) -> Option<Vec<Value>> {
    let mut kept = sent.to_vec();
    for kind in [APPROVED, DENIED] {
        let of_kind = |c: &&Value| c.get("type").and_then(Value::as_str) == Some(kind);
        let before: Vec<&Value> = old.iter().filter(of_kind).collect();
        let at: Vec<usize> = sent
            .iter()
            .enumerate()
            .filter(|(_, c)| of_kind(c))
            .map(|(i, _)| i)
            .collect();
        if before.len() != at.len() {
            return None;
        }
        for (i, c) in at.into_iter().zip(before) {
            kept[i] = c.clone();
        }
    }
    Some(kept)
}

/// What `/status` and `/approval` may change, applied to the merged object (`new` has
/// the old metadata and spec and the sent status), and the conditions' timestamps.
pub fn prepare_update(rt: &ResourceType, subresource: &str, new: &mut Value, old: &Value) {
    if !is_csr(rt) {
        return;
    }
    let old_conditions: Vec<Value> = old
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let sent: Vec<Value> = new
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let conditions: Vec<Value> = match subresource {
        // The signer may not approve or deny: the Approved and Denied conditions stay
        // as they were, where the request has them (Kubernetes'
        // preserveConditionInstances), or are put back when it dropped or added some.
        "status" => match preserved_in_place(&sent, &old_conditions) {
            Some(kept) => kept,
            None => sent
                .into_iter()
                .filter(|c| !is_approval(c))
                .chain(old_conditions.iter().filter(|c| is_approval(c)).cloned())
                .collect(),
        },
        // The approver's conditions are what it sends, except Failed, which is the
        // signer's (Kubernetes' approval strategy preserves only Failed).
        "approval" => sent
            .into_iter()
            .filter(|c| !is_failed(c))
            .chain(old_conditions.iter().filter(|c| is_failed(c)).cloned())
            .collect(),
        _ => sent,
    };
    if !new.get("status").is_some_and(Value::is_object) {
        new["status"] = json!({});
    }
    if subresource == "approval" {
        match old.pointer("/status/certificate") {
            Some(cert) => new["status"]["certificate"] = cert.clone(),
            None => {
                new["status"]
                    .as_object_mut()
                    .map(|s| s.remove("certificate"));
            }
        }
    }
    let now = json!(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    let conditions: Vec<Value> = conditions
        .into_iter()
        .map(|mut c| {
            let unset = |c: &Value, f: &str| c.get(f).is_none_or(|v| v.is_null() || v == "");
            if unset(&c, "lastUpdateTime") {
                c["lastUpdateTime"] = now.clone();
            }
            if unset(&c, "lastTransitionTime") {
                let before = old_conditions
                    .iter()
                    .find(|o| o.get("type") == c.get("type"));
                c["lastTransitionTime"] = match before {
                    Some(o)
                        if o.get("status") == c.get("status")
                            && !unset(o, "lastTransitionTime") =>
                    {
                        o["lastTransitionTime"].clone()
                    }
                    _ => now.clone(),
                };
            }
            c
        })
        .collect();
    if conditions.is_empty() {
        new["status"]
            .as_object_mut()
            .map(|s| s.remove("conditions"));
    } else {
        new["status"]["conditions"] = json!(conditions);
    }
}

/// Whether `user` may `verb` the signer `signer`, by name or as `<domain>/*`
/// (Kubernetes' `IsAuthorizedForSignerName`).
pub async fn authorized_for_signer(
    authorizer: &Authorizer,
    user: &UserInfo,
    verb: &str,
    signer: &str,
) -> bool {
    let ask = |name: String| Attributes {
        api_version: "*".into(),
        ..Attributes::resource(user, verb, GROUP, "signers", "", &name)
    };
    if authorizer
        .authorize(&ask(signer.to_string()))
        .await
        .allowed()
    {
        return true;
    }
    match signer.split_once('/') {
        Some((domain, _)) => authorizer
            .authorize(&ask(format!("{domain}/*")))
            .await
            .allowed(),
        None => false,
    }
}

/// The admission checks of a create (`old` None) or update of a request by `user`.
pub async fn admit(
    authorizer: Option<&Authorizer>,
    rt: &ResourceType,
    obj: &Value,
    old: Option<&Value>,
    user: &UserInfo,
) -> Result<(), ApiError> {
    if !is_csr(rt) {
        return Ok(());
    }
    let name = meta::name(obj);
    let signer = signer_name(obj);
    let Some(old) = old else {
        return admit_create(rt, name, signer, obj, user);
    };
    let Some(authorizer) = authorizer else {
        return Ok(());
    };
    let approval = |o: &Value| -> Vec<Value> {
        [APPROVED, DENIED]
            .iter()
            .flat_map(|t| conditions_of(o, t))
            .cloned()
            .collect()
    };
    if approval(obj) != approval(old)
        && !authorized_for_signer(authorizer, user, "approve", signer).await
    {
        return Err(forbidden(
            rt,
            name,
            &format!("user not permitted to approve requests with signerName {signer:?}"),
        ));
    }
    let certificate = |o: &Value| o.pointer("/status/certificate").cloned();
    if certificate(obj) != certificate(old)
        && !authorized_for_signer(authorizer, user, "sign", signer).await
    {
        return Err(forbidden(
            rt,
            name,
            &format!("user not permitted to sign requests with signerName {signer:?}"),
        ));
    }
    Ok(())
}

fn admit_create(
    rt: &ResourceType,
    name: &str,
    signer: &str,
    obj: &Value,
    user: &UserInfo,
) -> Result<(), ApiError> {
    let request = obj
        .pointer("/spec/request")
        .and_then(Value::as_str)
        .unwrap_or("");
    let info = {
        use base64::Engine as _;
        let pem = base64::engine::general_purpose::STANDARD
            .decode(request)
            .unwrap_or_default();
        // Validation has already refused a request that does not parse.
        match keelson_pki::csr::parse_csr(&pem) {
            Ok(info) => info,
            Err(_) => return Ok(()),
        }
    };
    if signer == KUBE_APISERVER_CLIENT && info.organizations.iter().any(|o| o == "system:masters") {
        return Err(forbidden(
            rt,
            name,
            &format!("use of {signer} signer with system:masters group is not allowed"),
        ));
    }
    if let Some(node) = node_name(user) {
        let own = format!("system:node:{node}");
        if (signer == KUBE_APISERVER_CLIENT_KUBELET || signer == KUBELET_SERVING)
            && info.common_name != own
        {
            return Err(forbidden(
                rt,
                name,
                &format!(
                    "node {node:?} is not allowed to request a certificate for {:?}",
                    info.common_name
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csr() -> &'static ResourceType {
        keelson_resources::find(GROUP, "certificatesigningrequests").unwrap()
    }

    #[test]
    fn the_requester_is_the_user_not_the_body() {
        let mut obj = json!({"spec": {"username": "admin", "groups": ["system:masters"], "extra": {"a": ["b"]}}});
        let user = UserInfo {
            name: "jane".into(),
            uid: String::new(),
            groups: vec!["devs".into(), "system:authenticated".into()],
        };
        set_requester(csr(), &mut obj, &user);
        assert_eq!(
            obj["spec"],
            json!({"username": "jane", "groups": ["devs", "system:authenticated"]})
        );
    }

    #[test]
    fn status_keeps_approval_and_approval_keeps_the_rest() {
        let old = json!({"status": {
            "conditions": [{"type": "Approved", "status": "True", "lastUpdateTime": "t0", "lastTransitionTime": "t0"}],
        }});
        // A signer removing Approval and adding Failed: Approved stays, Failed is stamped.
        let mut signed = json!({"status": {"conditions": [{"type": "Failed", "status": "True"}], "certificate": "c"}});
        prepare_update(csr(), "status", &mut signed, &old);
        let types: Vec<&str> = signed["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["type"].as_str().unwrap())
            .collect();
        assert_eq!(types, ["Failed", "Approved"]);
        assert!(signed["status"]["conditions"][0]["lastUpdateTime"].is_string());
        assert_eq!(signed["status"]["certificate"], "c");
        // An approver setting a certificate and dropping Failed: neither happens.
        let mut approved = json!({"status": {"conditions": [{"type": "Denied", "status": "True"}], "certificate": "forged"}});
        prepare_update(csr(), "approval", &mut approved, &signed);
        let types: Vec<&str> = approved["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["type"].as_str().unwrap())
            .collect();
        assert_eq!(types, ["Denied", "Failed"]);
        assert_eq!(approved["status"]["certificate"], "c");
    }

    #[test]
    fn status_keeps_approval_conditions_where_the_request_has_them() {
        let old = json!({"status": {"conditions": [
            {"type": "Approved", "status": "True", "reason": "by-admin", "lastUpdateTime": "t0", "lastTransitionTime": "t0"},
        ]}});
        // The signer sends the conditions it read plus its own, with Approved changed:
        // Approved stays first and as stored, the new one stays last.
        let mut sent = json!({"status": {"conditions": [
            {"type": "Approved", "status": "True", "reason": "forged"},
            {"type": "StatusUpdate", "status": "True", "reason": "E2E"},
        ]}});
        prepare_update(csr(), "status", &mut sent, &old);
        let conditions = sent["status"]["conditions"].as_array().unwrap();
        assert_eq!(conditions[0]["reason"], "by-admin");
        assert_eq!(conditions[1]["type"], "StatusUpdate");
        assert_eq!(conditions.len(), 2);
    }
}
