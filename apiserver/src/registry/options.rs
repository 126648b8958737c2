//! Request options shared by the REST and gRPC front ends.

use keelson_apimachinery::ApiError;
use serde_json::Value;

/// Who is making the request.
#[derive(Debug, Clone, Default)]
pub struct UserInfo {
    pub name: String,
    /// Empty when the credential names none (a service account's uid, a token file's).
    pub uid: String,
    pub groups: Vec<String>,
}

/// `fieldValidation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FieldValidation {
    Ignore,
    #[default]
    Warn,
    Strict,
}

impl FieldValidation {
    pub fn parse(s: &str) -> Result<Self, ApiError> {
        match s {
            "" | "Warn" => Ok(FieldValidation::Warn),
            "Ignore" => Ok(FieldValidation::Ignore),
            "Strict" => Ok(FieldValidation::Strict),
            other => Err(ApiError::bad_request(format!(
                "fieldValidation must be one of \"Ignore\", \"Warn\", or \"Strict\", got {other:?}"
            ))),
        }
    }
}

/// Options of create, update and patch.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    pub dry_run: bool,
    pub field_manager: String,
    pub field_validation: FieldValidation,
    /// Server-side apply: take ownership of conflicting fields.
    pub force: bool,
    pub user_agent: String,
}

/// Parse `dryRun`: only `All` is defined.
pub fn parse_dry_run(values: &[&str]) -> Result<bool, ApiError> {
    let mut dry = false;
    for v in values {
        match *v {
            "All" => dry = true,
            "" => {}
            other => {
                return Err(ApiError::bad_request(format!(
                    "dryRun: Unsupported value: {other:?}: supported values: \"All\""
                )))
            }
        }
    }
    Ok(dry)
}

/// Options of list and watch.
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    pub label_selector: String,
    pub field_selector: String,
    pub limit: i64,
    pub continue_token: String,
    pub resource_version: String,
    /// `Exact` or `NotOlderThan` (or empty).
    pub resource_version_match: String,
    pub allow_bookmarks: bool,
    /// `sendInitialEvents`: absent, true or false (false with an empty resourceVersion
    /// starts from now without the current state).
    pub send_initial_events: Option<bool>,
    pub timeout_seconds: Option<u64>,
    /// How much of each object to send (gRPC only; REST sends whole objects).
    pub view: crate::view::View,
}

impl ListOptions {
    /// Kubernetes' `ValidateListOptions`: which combinations of resourceVersionMatch,
    /// resourceVersion, continue and sendInitialEvents a list or a watch accepts. 422 for
    /// `ListOptions.meta.k8s.io`, as Kubernetes answers.
    pub fn validate(&self, watch: bool) -> Result<(), ApiError> {
        use keelson_apimachinery::Cause;
        let m = self.resource_version_match.as_str();
        let mut causes = Vec::new();
        let forbidden = |detail: &str| Cause::forbidden("resourceVersionMatch", detail);
        if watch {
            if self.send_initial_events.is_some() && m != "NotOlderThan" {
                causes.push(forbidden(
                    "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
                ));
            }
            if !m.is_empty() {
                if m != "NotOlderThan" {
                    causes.push(Cause::not_supported(
                        "resourceVersionMatch",
                        &Value::from(m),
                        &["NotOlderThan"],
                    ));
                }
                if !self.continue_token.is_empty() {
                    causes.push(forbidden(
                        "resourceVersionMatch is forbidden when continue is provided",
                    ));
                }
            }
        } else {
            if !m.is_empty() {
                if self.resource_version.is_empty() {
                    causes.push(forbidden(
                        "resourceVersionMatch is forbidden unless resourceVersion is provided",
                    ));
                }
                if !self.continue_token.is_empty() {
                    causes.push(forbidden(
                        "resourceVersionMatch is forbidden when continue is provided",
                    ));
                }
                if m != "Exact" && m != "NotOlderThan" {
                    causes.push(Cause::not_supported(
                        "resourceVersionMatch",
                        &Value::from(m),
                        &["Exact", "NotOlderThan", ""],
                    ));
                }
                if m == "Exact" && self.resource_version == "0" {
                    causes.push(forbidden(
                        "resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"",
                    ));
                }
            }
            if self.send_initial_events.is_some() {
                causes.push(Cause::forbidden(
                    "sendInitialEvents",
                    "sendInitialEvents is forbidden for list",
                ));
            }
        }
        if causes.is_empty() {
            Ok(())
        } else {
            Err(ApiError::invalid("meta.k8s.io", "ListOptions", "", causes))
        }
    }
}

/// `metav1.DeleteOptions`.
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    pub grace_period_seconds: Option<i64>,
    /// `Orphan`, `Background` or `Foreground`.
    pub propagation_policy: Option<String>,
    pub precondition_uid: Option<String>,
    pub precondition_resource_version: Option<String>,
    pub dry_run: bool,
}

impl DeleteOptions {
    /// Merge a DeleteOptions JSON body (if any) over query-string options.
    pub fn merge_body(&mut self, body: &Value) -> Result<(), ApiError> {
        if body.is_null() {
            return Ok(());
        }
        if !body.is_object() {
            return Err(ApiError::bad_request("DeleteOptions must be an object"));
        }
        if let Some(g) = body.get("gracePeriodSeconds").filter(|v| !v.is_null()) {
            self.grace_period_seconds =
                Some(g.as_i64().ok_or_else(|| {
                    ApiError::bad_request("gracePeriodSeconds must be an integer")
                })?);
        }
        if let Some(p) = body.get("propagationPolicy").and_then(Value::as_str) {
            self.propagation_policy = Some(p.to_string());
        } else if let Some(orphan) = body.get("orphanDependents").and_then(Value::as_bool) {
            self.propagation_policy = Some(if orphan { "Orphan" } else { "Background" }.into());
        }
        if let Some(pre) = body.get("preconditions") {
            if let Some(u) = pre.get("uid").and_then(Value::as_str) {
                self.precondition_uid = Some(u.to_string());
            }
            if let Some(rv) = pre.get("resourceVersion").and_then(Value::as_str) {
                self.precondition_resource_version = Some(rv.to_string());
            }
        }
        if let Some(d) = body.get("dryRun").and_then(Value::as_array) {
            let vals: Vec<&str> = d.iter().filter_map(Value::as_str).collect();
            self.dry_run |= parse_dry_run(&vals)?;
        }
        self.validate()
    }

    pub fn validate(&self) -> Result<(), ApiError> {
        if let Some(p) = &self.propagation_policy {
            if !matches!(p.as_str(), "Orphan" | "Background" | "Foreground") {
                return Err(ApiError::invalid(
                    "",
                    "DeleteOptions",
                    "",
                    vec![keelson_apimachinery::Cause::not_supported(
                        "propagationPolicy",
                        &Value::String(p.clone()),
                        &["Foreground", "Background", "Orphan"],
                    )],
                ));
            }
        }
        if let Some(g) = self.grace_period_seconds {
            if g < 0 {
                return Err(ApiError::invalid(
                    "",
                    "DeleteOptions",
                    "",
                    vec![keelson_apimachinery::Cause::invalid(
                        "gracePeriodSeconds",
                        &Value::from(g),
                        "must be greater than or equal to 0",
                    )],
                ));
            }
        }
        Ok(())
    }
}

/// Kubernetes' boolean query parameters accept `true`, `1` and friends.
pub fn parse_bool(s: &str) -> bool {
    matches!(s, "true" | "True" | "TRUE" | "1" | "t" | "T")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(rv: &str, m: &str, cont: &str, initial: bool) -> ListOptions {
        ListOptions {
            resource_version: rv.into(),
            resource_version_match: m.into(),
            continue_token: cont.into(),
            send_initial_events: initial.then_some(true),
            allow_bookmarks: true,
            ..Default::default()
        }
    }

    #[test]
    fn list_options_combinations_like_kubernetes() {
        assert!(opts("5", "Exact", "", false).validate(false).is_ok());
        assert!(opts("", "", "", false).validate(false).is_ok());
        assert!(opts("", "NotOlderThan", "", true).validate(true).is_ok());
        for (o, watch) in [
            (opts("", "Exact", "", false), false),
            (opts("5", "Sometimes", "", false), false),
            (opts("0", "Exact", "", false), false),
            (opts("5", "Exact", "token", false), false),
            (opts("", "", "", true), false),
            (opts("", "", "", true), true),
            (opts("", "Exact", "", true), true),
        ] {
            let e = o.validate(watch).unwrap_err();
            assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"), "{o:?}");
        }
    }
}
