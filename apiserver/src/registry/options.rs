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

impl UserInfo {
    /// The apiserver itself, for writes it makes on its own behalf (its loopback
    /// client's identity in Kubernetes).
    pub fn apiserver() -> UserInfo {
        UserInfo {
            name: "system:apiserver".into(),
            uid: String::new(),
            groups: vec!["system:masters".into()],
        }
    }
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
    /// Who writes: admission plugins (node restriction, RBAC's escalation checks) ask.
    pub user: UserInfo,
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
    /// Who deletes: admission webhooks are told.
    pub user: UserInfo,
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

/// The longest `fieldManager` Kubernetes accepts (`metav1validation.FieldManagerMaxLength`).
pub const FIELD_MANAGER_MAX: usize = 128;

/// `metav1validation.ValidateFieldManager`, as `ValidateCreateOptions`,
/// `ValidateUpdateOptions` and `ValidatePatchOptions` apply it: at most 128 bytes, all
/// printable. 422 for `<options_kind>.meta.k8s.io ""` (`CreateOptions`, ...).
pub fn validate_field_manager(options_kind: &str, manager: &str) -> Result<(), ApiError> {
    use keelson_apimachinery::Cause;
    let mut causes = Vec::new();
    if manager.len() > FIELD_MANAGER_MAX {
        causes.push(Cause::new(
            "FieldValueTooLong",
            "fieldManager",
            format!("Too long: may not be more than {FIELD_MANAGER_MAX} bytes"),
        ));
    }
    for (at, c) in manager.char_indices() {
        // Go's unicode.IsPrint: no control or format characters, no space but ' '.
        if c != ' ' && (c.is_control() || c.is_whitespace() || is_format_char(c)) {
            causes.push(Cause::invalid(
                "fieldManager",
                &Value::from(manager),
                format!("invalid character U+{:04X} (at position {at})", c as u32),
            ));
        }
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid("meta.k8s.io", options_kind, "", causes))
    }
}

/// The invisible format characters (Unicode category Cf) people actually meet.
fn is_format_char(c: char) -> bool {
    matches!(c, '\u{ad}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2064}' | '\u{feff}')
}

/// `APIObjectVersioner.ParseResourceVersion` for a `resourceVersion` parameter: "" and
/// "0" mean "any", anything else is an unsigned decimal revision. Kubernetes words the
/// error as below; it answers it with a 500 on some paths (kubernetes#101350, still
/// open), Keelson with a 400: the client sent it.
pub fn parse_resource_version(rv: &str) -> Result<i64, ApiError> {
    if rv.is_empty() {
        return Ok(0);
    }
    let syntax = if !rv.bytes().all(|b| b.is_ascii_digit()) {
        Some("invalid syntax")
    } else if rv.parse::<i64>().is_err() {
        Some("value out of range")
    } else {
        None
    };
    match syntax {
        None => Ok(rv.parse().expect("checked above")),
        Some(why) => Err(ApiError::bad_request(format!(
            "resourceVersion: Invalid value: {rv:?}: strconv.ParseUint: parsing {rv:?}: {why}"
        ))),
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
    fn field_managers_like_kubernetes() {
        assert!(validate_field_manager("CreateOptions", "kubectl-client-side-apply").is_ok());
        assert!(validate_field_manager("CreateOptions", &"m".repeat(128)).is_ok());
        assert!(validate_field_manager("CreateOptions", "").is_ok());
        let e = validate_field_manager("PatchOptions", &"m".repeat(129)).unwrap_err();
        assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"));
        assert_eq!(
            e.message,
            "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Too long: may not be more than 128 bytes"
        );
        assert_eq!(e.causes[0].reason, "FieldValueTooLong");
        // 128 bytes, fewer characters: bytes count.
        assert!(validate_field_manager("CreateOptions", &"\u{e9}".repeat(65)).is_err());
        let e = validate_field_manager("UpdateOptions", "a\u{7}b").unwrap_err();
        assert_eq!(
            e.message,
            "UpdateOptions.meta.k8s.io \"\" is invalid: fieldManager: Invalid value: \"a\u{7}b\": invalid character U+0007 (at position 1)"
        );
    }

    #[test]
    fn resource_versions_are_unsigned_decimals() {
        assert_eq!(parse_resource_version("").unwrap(), 0);
        assert_eq!(parse_resource_version("0").unwrap(), 0);
        assert_eq!(parse_resource_version("42").unwrap(), 42);
        for (rv, why) in [
            ("abc", "invalid syntax"),
            ("-1", "invalid syntax"),
            ("+1", "invalid syntax"),
            ("1.5", "invalid syntax"),
            ("99999999999999999999", "value out of range"),
        ] {
            let e = parse_resource_version(rv).unwrap_err();
            assert_eq!((e.code, e.reason.as_str()), (400, "BadRequest"));
            assert_eq!(
                e.message,
                format!("resourceVersion: Invalid value: {rv:?}: strconv.ParseUint: parsing {rv:?}: {why}")
            );
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
