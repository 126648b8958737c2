//! certificates.k8s.io/v1 CertificateSigningRequest (cluster-scoped).
//!
//! A request for a certificate from a named signer. The requester sends a PKCS#10
//! request; an approver adds an `Approved` or `Denied` condition through `/approval`;
//! the signer writes `status.certificate` (or a `Failed` condition) through `/status`.
//! Who asked (`spec.username`, `uid`, `groups`) is the apiserver's to write, from the
//! authenticated user (`apiserver/src/registry/certificates.rs`), and so is what each
//! subresource may change. Validation follows Kubernetes' `ValidateCertificateSigningRequest*`.

use crate::strategy::Strategy;
use crate::table::{age_cell, human_duration, name_cell, Column, TableRow};
use crate::{ResourceType, Root, Subresource, Typed};
use keelson_apimachinery::{validation, Cause};
use serde_json::{json, Value};

pub static RESOURCE: ResourceType = ResourceType {
    group: "certificates.k8s.io",
    version: "v1",
    kind: "CertificateSigningRequest",
    plural: "certificatesigningrequests",
    singular: "certificatesigningrequest",
    namespaced: false,
    short_names: &["csr"],
    categories: &[],
    subresources: &[Subresource::Status, Subresource::Approval],
    strategy: &CertificateSigningRequests,
    typed: Some(Typed::of::<
        k8s_openapi::api::certificates::v1::CertificateSigningRequest,
    >()),
    merge: Some(Root::CertificateSigningRequest),
};

struct CertificateSigningRequests;

pub const APPROVED: &str = "Approved";
pub const DENIED: &str = "Denied";
pub const FAILED: &str = "Failed";

/// Kubernetes' `allValidUsages`, sorted as its error message lists them.
pub const USAGES: &[&str] = &[
    "any",
    "cert sign",
    "client auth",
    "code signing",
    "content commitment",
    "crl sign",
    "data encipherment",
    "decipher only",
    "digital signature",
    "email protection",
    "encipher only",
    "ipsec end system",
    "ipsec tunnel",
    "ipsec user",
    "key agreement",
    "key encipherment",
    "microsoft sgc",
    "netscape sgc",
    "ocsp signing",
    "s/mime",
    "server auth",
    "signing",
    "timestamping",
];

/// The conditions of `obj` of type `t`.
pub fn conditions_of<'a>(obj: &'a Value, t: &str) -> Vec<&'a Value> {
    conditions(obj)
        .iter()
        .filter(|c| c.get("type").and_then(Value::as_str) == Some(t))
        .collect()
}

fn conditions(obj: &Value) -> &[Value] {
    obj.pointer("/status/conditions")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn certificate(obj: &Value) -> &str {
    obj.pointer("/status/certificate")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// `status.certificate` must be PEM CERTIFICATE blocks when set (`validateCertificate`).
fn certificate_problem(b64: &str) -> Option<String> {
    use base64::Engine as _;
    if b64.is_empty() {
        return None;
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap_or_default();
    keelson_pki::csr::certificates_problem(&bytes)
}

/// `ValidateSignerName`.
fn signer_name_problems(name: &str, at: &str, out: &mut Vec<Cause>) {
    if name.is_empty() {
        out.push(Cause::required(at));
        return;
    }
    let Some((domain, path)) = name.split_once('/').filter(|(_, p)| !p.contains('/')) else {
        out.push(Cause::invalid(
            at,
            &json!(name),
            "must be a fully qualified domain and path of the form 'example.com/signer-name'",
        ));
        return;
    };
    if domain.is_empty()
        || !domain.contains('.')
        || !validation::dns1123_subdomain(domain).is_empty()
    {
        out.push(Cause::invalid(
            at,
            &json!(name),
            "validating domain component: must be a fully qualified domain name",
        ));
    }
    if path.is_empty() {
        out.push(Cause::invalid(
            at,
            &json!(name),
            "validating path component: must not be empty",
        ));
    } else if !validation::path_segment_name(path).is_empty() {
        out.push(Cause::invalid(
            at,
            &json!(name),
            "validating path component: must be a valid path segment",
        ));
    }
}

/// The PKCS#10 request's problem, if any (`validateCSR`: it parses and its signature
/// verifies).
fn request_problem(b64: &str) -> Option<String> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap_or_default();
    keelson_pki::csr::parse_csr(&bytes).err()
}

impl Strategy for CertificateSigningRequests {
    /// Kubernetes' CSR field selector (kubectl and the conformance test list by signer).
    fn selectable_fields(&self, obj: &Value) -> Vec<(&'static str, String)> {
        let signer = obj
            .pointer("/spec/signerName")
            .and_then(Value::as_str)
            .unwrap_or("");
        vec![("spec.signerName", signer.to_string())]
    }

    fn selectable_field_names(&self) -> &'static [&'static str] {
        &["spec.signerName"]
    }

    /// Kubernetes does not care what requests are called; a name is still a URL segment.
    fn validate_name(&self, name: &str) -> Vec<String> {
        validation::path_segment_name(name)
    }

    /// A request starts with no status: nobody creates a pre-approved request.
    fn prepare_for_create(&self, obj: &mut Value) {
        if let Some(o) = obj.as_object_mut() {
            o.insert("status".into(), json!({}));
        }
    }

    /// The spec never changes after create.
    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        if let Some(o) = new.as_object_mut() {
            o.insert("spec".into(), old.get("spec").cloned().unwrap_or(json!({})));
        }
    }

    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut out = Vec::new();
        let spec = obj.get("spec").cloned().unwrap_or(json!({}));
        let request = spec.get("request").and_then(Value::as_str).unwrap_or("");
        if let Some(problem) = request_problem(request) {
            out.push(Cause::invalid(
                "spec.request",
                &json!("<request data>"),
                problem,
            ));
        }
        let usages: Vec<&str> = spec
            .get("usages")
            .and_then(Value::as_array)
            .map(|a| a.iter().map(|u| u.as_str().unwrap_or("")).collect())
            .unwrap_or_default();
        if usages.is_empty() {
            out.push(Cause::required("spec.usages"));
        }
        for (i, u) in usages.iter().enumerate() {
            if !USAGES.contains(u) {
                out.push(Cause::not_supported(
                    format!("spec.usages[{i}]"),
                    &json!(u),
                    USAGES,
                ));
            } else if usages[..i].contains(u) {
                out.push(Cause::duplicate(format!("spec.usages[{i}]"), &json!(u)));
            }
        }
        let signer = spec.get("signerName").and_then(Value::as_str).unwrap_or("");
        if signer == "kubernetes.io/legacy-unknown" {
            out.push(Cause::invalid(
                "spec.signerName",
                &json!(signer),
                "the legacy signerName is not allowed via this API version",
            ));
        } else {
            signer_name_problems(signer, "spec.signerName", &mut out);
        }
        if let Some(secs) = spec.get("expirationSeconds").and_then(Value::as_i64) {
            if secs < 600 {
                out.push(Cause::invalid(
                    "spec.expirationSeconds",
                    &json!(secs),
                    "may not specify a duration less than 600 seconds (10 minutes)",
                ));
            }
        }
        validate_conditions(obj, &mut out);
        if let Some(problem) = certificate_problem(certificate(obj)) {
            out.push(Cause::invalid(
                "status.certificate",
                &json!("<certificate data>"),
                problem,
            ));
        }
        out
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        let mut out = Vec::new();
        for t in [APPROVED, DENIED, FAILED] {
            if conditions_of(new, t).len() < conditions_of(old, t).len() {
                out.push(Cause::forbidden(
                    "status.conditions",
                    format!("updates may not remove a condition of type {t:?}"),
                ));
            }
        }
        let (before, after) = (certificate(old), certificate(new));
        if !before.is_empty() && before != after {
            out.push(Cause::forbidden(
                "status.certificate",
                "updates may not modify existing certificate content",
            ));
        }
        out
    }

    fn columns(&self) -> Vec<Column> {
        vec![
            Column::name(),
            Column::new(
                "Age",
                "date",
                "CreationTimestamp is a timestamp representing the server time when this object was created.",
            ),
            Column::new(
                "SignerName",
                "string",
                "Requested signer for the request. It is a qualified name in the form: `scope-hostname.io/name`.",
            ),
            Column::new("Requestor", "string", "Name of the user that requested this certificate."),
            Column::new(
                "RequestedDuration",
                "string",
                "expirationSeconds is the requested duration of validity of the issued certificate.",
            ),
            Column::new(
                "Condition",
                "string",
                "Conditions applied to the request, such as approval or denial.",
            ),
        ]
    }

    fn row(&self, obj: &Value) -> TableRow {
        let spec = obj.get("spec").cloned().unwrap_or(json!({}));
        let or_none = |s: &str| {
            if s.is_empty() {
                "<none>".to_string()
            } else {
                s.to_string()
            }
        };
        let duration = spec
            .get("expirationSeconds")
            .and_then(Value::as_i64)
            .map(human_duration)
            .unwrap_or_else(|| "<none>".into());
        vec![
            name_cell(obj),
            age_cell(obj),
            json!(or_none(
                spec.get("signerName").and_then(Value::as_str).unwrap_or("")
            )),
            json!(spec.get("username").and_then(Value::as_str).unwrap_or("")),
            json!(duration),
            json!(condition_summary(obj)),
        ]
    }
}

/// kubectl's CONDITION column: Pending, Approved or Denied, then `,Failed` and
/// `,Issued` (`extractCSRStatus`).
pub fn condition_summary(obj: &Value) -> String {
    let has = |t: &str| !conditions_of(obj, t).is_empty();
    let mut s = if has(DENIED) {
        "Denied".to_string()
    } else if has(APPROVED) {
        "Approved".to_string()
    } else {
        "Pending".to_string()
    };
    if has(FAILED) {
        s.push_str(",Failed");
    }
    if !certificate(obj).is_empty() {
        s.push_str(",Issued");
    }
    s
}

/// `validateConditions`: types set, Approved/Denied/Failed only `True`, never both
/// Approved and Denied, no type twice.
fn validate_conditions(obj: &Value, out: &mut Vec<Cause>) {
    let (mut approved, mut denied) = (false, false);
    let mut seen: Vec<&str> = Vec::new();
    for (i, c) in conditions(obj).iter().enumerate() {
        let at = format!("status.conditions[{i}]");
        let t = c.get("type").and_then(Value::as_str).unwrap_or("");
        if t.is_empty() {
            out.push(Cause::required(format!("{at}.type")));
        }
        let status = c.get("status").and_then(Value::as_str).unwrap_or("");
        let allowed: &[&str] = if [APPROVED, DENIED, FAILED].contains(&t) {
            &["True"]
        } else {
            &["False", "True", "Unknown"]
        };
        if status.is_empty() {
            out.push(Cause::required(format!("{at}.status")));
        } else if !allowed.contains(&status) {
            out.push(Cause::not_supported(
                format!("{at}.status"),
                &json!(status),
                allowed,
            ));
        }
        let exclusive = |out: &mut Vec<Cause>| {
            out.push(Cause::invalid(
                format!("{at}.type"),
                &json!(t),
                "Approved and Denied conditions are mutually exclusive",
            ))
        };
        if t == APPROVED {
            approved = true;
            if denied {
                exclusive(out);
            }
        } else if t == DENIED {
            denied = true;
            if approved {
                exclusive(out);
            }
        }
        if seen.contains(&t) {
            out.push(Cause::duplicate(format!("{at}.type"), &json!(t)));
        }
        seen.push(t);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn csr() -> Value {
        let (_, pem) = keelson_pki::csr::new_key_and_csr("jane", &["devs"], &[], &[]).unwrap();
        json!({
            "metadata": {"name": "jane"},
            "spec": {
                "request": b64(&pem),
                "signerName": "kubernetes.io/kube-apiserver-client",
                "usages": ["client auth"],
            },
            "status": {},
        })
    }

    fn fields(causes: &[Cause]) -> Vec<String> {
        causes
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect()
    }

    #[test]
    fn a_good_request_passes() {
        assert_eq!(
            fields(&CertificateSigningRequests.validate(&csr())),
            Vec::<String>::new()
        );
    }

    #[test]
    fn request_signer_usages_and_duration_are_checked() {
        let mut bad = csr();
        bad["spec"]["request"] = json!(b64("not a request"));
        bad["spec"]["signerName"] = json!("");
        bad["spec"]["usages"] = json!(["client auth", "flying", "client auth"]);
        bad["spec"]["expirationSeconds"] = json!(599);
        let got = fields(&CertificateSigningRequests.validate(&bad));
        assert_eq!(got.len(), 5, "{got:#?}");
        assert!(got[0].starts_with("spec.request: Invalid value: \"<request data>\": PEM block type must be CERTIFICATE REQUEST"));
        assert!(got[1].starts_with(
            "spec.usages[1]: Unsupported value: \"flying\": supported values: \"any\""
        ));
        assert_eq!(got[2], "spec.usages[2]: Duplicate value: \"client auth\"");
        assert_eq!(got[3], "spec.signerName: Required value");
        assert_eq!(got[4], "spec.expirationSeconds: Invalid value: 599: may not specify a duration less than 600 seconds (10 minutes)");
        bad["spec"]["usages"] = json!([]);
        bad["spec"]["signerName"] = json!("no-slash");
        let got = fields(&CertificateSigningRequests.validate(&bad));
        assert!(got.contains(&"spec.usages: Required value".to_string()));
        assert!(got
            .iter()
            .any(|g| g.contains("must be a fully qualified domain and path")));
    }

    #[test]
    fn conditions_approved_and_denied_exclude_each_other_and_stay() {
        let mut both = csr();
        both["status"]["conditions"] = json!([
            {"type": "Approved", "status": "True"},
            {"type": "Denied", "status": "True"},
            {"type": "Failed", "status": "False"},
        ]);
        let got = fields(&CertificateSigningRequests.validate(&both));
        assert_eq!(
            got,
            [
                "status.conditions[1].type: Invalid value: \"Denied\": Approved and Denied conditions are mutually exclusive",
                "status.conditions[2].status: Unsupported value: \"False\": supported values: \"True\"",
            ]
        );
        let mut approved = csr();
        approved["status"]["conditions"] = json!([{"type": "Approved", "status": "True"}]);
        let got = fields(&CertificateSigningRequests.validate_update(&csr(), &approved));
        assert_eq!(got, ["status.conditions: Forbidden: updates may not remove a condition of type \"Approved\""]);
    }

    #[test]
    fn the_table_prints_kubectl_columns() {
        let mut obj = csr();
        obj["spec"]["username"] = json!("jane");
        obj["spec"]["expirationSeconds"] = json!(3600);
        obj["status"]["conditions"] = json!([{"type": "Approved", "status": "True"}]);
        let names: Vec<&str> = CertificateSigningRequests
            .columns()
            .iter()
            .map(|c| c.name)
            .collect();
        assert_eq!(
            names,
            [
                "Name",
                "Age",
                "SignerName",
                "Requestor",
                "RequestedDuration",
                "Condition"
            ]
        );
        let row = CertificateSigningRequests.row(&obj);
        assert_eq!(row[2], "kubernetes.io/kube-apiserver-client");
        assert_eq!(row[3], "jane");
        assert_eq!(row[4], "60m");
        assert_eq!(row[5], "Approved");
        obj["status"]["certificate"] = json!("x");
        assert_eq!(condition_summary(&obj), "Approved,Issued");
    }
}
