//! Pod Security levels, policy versions and the namespace labels that choose them
//! (k8s.io/pod-security-admission/api): `pod-security.kubernetes.io/<mode>` and
//! `<mode>-version` for the modes enforce, audit and warn.

use keelson_apimachinery::Cause;
use serde_json::json;
use std::collections::BTreeMap;
use std::fmt;

pub const LABEL_PREFIX: &str = "pod-security.kubernetes.io/";
pub const ENFORCE_LABEL: &str = "pod-security.kubernetes.io/enforce";
pub const ENFORCE_VERSION_LABEL: &str = "pod-security.kubernetes.io/enforce-version";
pub const AUDIT_LABEL: &str = "pod-security.kubernetes.io/audit";
pub const AUDIT_VERSION_LABEL: &str = "pod-security.kubernetes.io/audit-version";
pub const WARN_LABEL: &str = "pod-security.kubernetes.io/warn";
pub const WARN_VERSION_LABEL: &str = "pod-security.kubernetes.io/warn-version";

/// A Pod Security Standard, least to most restrictive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Privileged,
    Baseline,
    Restricted,
}

impl Level {
    /// As `api.ParseLevel`: an unknown level is an error, and means `restricted`.
    pub fn parse(s: &str) -> Result<Level, String> {
        match s {
            "privileged" => Ok(Level::Privileged),
            "baseline" => Ok(Level::Baseline),
            "restricted" => Ok(Level::Restricted),
            _ => Err("must be one of privileged, baseline, restricted".into()),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Privileged => "privileged",
            Level::Baseline => "baseline",
            Level::Restricted => "restricted",
        }
    }
}

/// A policy version: `v1.<minor>`, or `latest` (newer than any numbered version).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Version(Option<u32>);

impl Version {
    pub const LATEST: Version = Version(None);

    pub const fn minor(minor: u32) -> Version {
        Version(Some(minor))
    }

    /// As `api.ParseVersion`: `latest` or `v1.x`; anything else is an error, and means
    /// `latest`.
    pub fn parse(s: &str) -> Result<Version, String> {
        const MSG: &str = r#"must be "latest" or "v1.x""#;
        if s == "latest" {
            return Ok(Version::LATEST);
        }
        let digits = s.strip_prefix("v1.").ok_or(MSG)?;
        let canonical = !digits.is_empty()
            && digits.bytes().all(|b| b.is_ascii_digit())
            && (digits == "0" || !digits.starts_with('0'));
        if !canonical {
            return Err(MSG.into());
        }
        digits.parse().map(Version::minor).map_err(|_| MSG.into())
    }

    /// Whether this version is at least `v1.<minor>` (`latest` always is).
    pub fn at_least(self, minor: u32) -> bool {
        self.0.is_none_or(|m| m >= minor)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => f.write_str("latest"),
            Some(m) => write!(f, "v1.{m}"),
        }
    }
}

/// A level at a version, written `restricted:latest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LevelVersion {
    pub level: Level,
    pub version: Version,
}

impl LevelVersion {
    pub const PRIVILEGED: LevelVersion = LevelVersion {
        level: Level::Privileged,
        version: Version::LATEST,
    };

    /// Equal for admission purposes: the version of `privileged` does not matter.
    fn equivalent(&self, other: &LevelVersion) -> bool {
        self.level == other.level
            && (self.level == Level::Privileged || self.version == other.version)
    }
}

impl fmt::Display for LevelVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.level.as_str(), self.version)
    }
}

/// What a namespace enforces, audits and warns about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub enforce: LevelVersion,
    pub audit: LevelVersion,
    pub warn: LevelVersion,
}

impl Default for Policy {
    /// Kubernetes' defaults without configuration: everything privileged.
    fn default() -> Self {
        Policy {
            enforce: LevelVersion::PRIVILEGED,
            audit: LevelVersion::PRIVILEGED,
            warn: LevelVersion::PRIVILEGED,
        }
    }
}

impl Policy {
    pub fn fully_privileged(&self) -> bool {
        [self.enforce, self.audit, self.warn]
            .iter()
            .all(|lv| lv.level == Level::Privileged)
    }

    pub fn equivalent(&self, other: &Policy) -> bool {
        self.enforce.equivalent(&other.enforce)
            && self.audit.equivalent(&other.audit)
            && self.warn.equivalent(&other.warn)
    }
}

/// A label that does not parse: `metadata.labels[<key>]`, its value and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelError {
    pub key: &'static str,
    pub value: String,
    pub detail: String,
}

impl LabelError {
    pub fn cause(&self) -> Cause {
        Cause::invalid(
            format!("metadata.labels[{}]", self.key),
            &json!(self.value),
            &self.detail,
        )
    }

    /// As Go's `field.Error.Error()`, for audit annotations.
    pub fn display(&self) -> String {
        format!(
            "metadata.labels[{}]: Invalid value: {:?}: {}",
            self.key, self.value, self.detail
        )
    }
}

/// The policy a namespace's labels choose, as `api.PolicyToEvaluate`: missing labels
/// take the cluster defaults; a bad enforce level means restricted, a bad audit or warn
/// level privileged (they fail open), a bad version latest; and a namespace that sets
/// an enforce level stricter than the warn level it does not set warns at that level
/// (and version) too.
pub fn policy_for(
    labels: &BTreeMap<String, String>,
    defaults: &Policy,
) -> (Policy, Vec<LabelError>) {
    let mut p = *defaults;
    let mut errors = Vec::new();
    if labels.is_empty() {
        return (p, errors);
    }
    let level = |key: &'static str, fallback: Level, errors: &mut Vec<LabelError>| {
        labels.get(key).map(|v| {
            Level::parse(v).map_err(|detail| {
                errors.push(LabelError {
                    key,
                    value: v.clone(),
                    detail,
                });
                fallback
            })
        })
    };
    let version = |key: &'static str, errors: &mut Vec<LabelError>| {
        labels.get(key).map(|v| {
            Version::parse(v).unwrap_or_else(|detail| {
                errors.push(LabelError {
                    key,
                    value: v.clone(),
                    detail,
                });
                Version::LATEST
            })
        })
    };
    let enforce_level = level(ENFORCE_LABEL, Level::Restricted, &mut errors);
    if let Some(l) = enforce_level {
        p.enforce.level = l.unwrap_or_else(|l| l);
    }
    if let Some(v) = version(ENFORCE_VERSION_LABEL, &mut errors) {
        p.enforce.version = v;
    }
    if let Some(l) = level(AUDIT_LABEL, Level::Privileged, &mut errors) {
        p.audit.level = l.unwrap_or_else(|l| l);
    }
    if let Some(v) = version(AUDIT_VERSION_LABEL, &mut errors) {
        p.audit.version = v;
    }
    let warn_level = level(WARN_LABEL, Level::Privileged, &mut errors);
    if let Some(l) = warn_level {
        p.warn.level = l.unwrap_or_else(|l| l);
    }
    let warn_version = version(WARN_VERSION_LABEL, &mut errors);
    if let Some(v) = warn_version {
        p.warn.version = v;
    }
    let has_enforce_level = matches!(enforce_level, Some(Ok(_)));
    if warn_level.is_none() && has_enforce_level && p.enforce.level > p.warn.level {
        p.warn.level = p.enforce.level;
        if warn_version.is_none() {
            p.warn.version = p.enforce.version;
        }
    }
    (p, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn versions_parse_as_kubernetes_parses_them() {
        assert_eq!(Version::parse("latest"), Ok(Version::LATEST));
        assert_eq!(Version::parse("v1.0"), Ok(Version::minor(0)));
        assert_eq!(Version::parse("v1.25"), Ok(Version::minor(25)));
        for bad in ["v1.025", "v1.", "1.25", "v2.0", "v1.2a", "Latest", ""] {
            assert_eq!(
                Version::parse(bad),
                Err(r#"must be "latest" or "v1.x""#.to_string()),
                "{bad}"
            );
        }
        assert!(Version::LATEST.at_least(99));
        assert!(Version::minor(22).at_least(22));
        assert!(!Version::minor(21).at_least(22));
        assert_eq!(
            LevelVersion {
                level: Level::Restricted,
                version: Version::LATEST
            }
            .to_string(),
            "restricted:latest"
        );
    }

    #[test]
    fn labels_choose_the_policy_and_bad_labels_fall_back() {
        let defaults = Policy::default();
        let (p, errs) = policy_for(&labels(&[(ENFORCE_LABEL, "baseline")]), &defaults);
        assert!(errs.is_empty());
        assert_eq!(p.enforce.to_string(), "baseline:latest");
        // warn follows an enforce level stricter than its own default.
        assert_eq!(p.warn.to_string(), "baseline:latest");
        assert_eq!(p.audit.to_string(), "privileged:latest");

        let (p, _) = policy_for(
            &labels(&[
                (ENFORCE_LABEL, "restricted"),
                (ENFORCE_VERSION_LABEL, "v1.24"),
                (WARN_LABEL, "baseline"),
            ]),
            &defaults,
        );
        assert_eq!(p.warn.to_string(), "baseline:latest");
        let (p, _) = policy_for(
            &labels(&[
                (ENFORCE_LABEL, "restricted"),
                (ENFORCE_VERSION_LABEL, "v1.24"),
            ]),
            &defaults,
        );
        assert_eq!(p.warn.to_string(), "restricted:v1.24");

        let (p, errs) = policy_for(
            &labels(&[
                (ENFORCE_LABEL, "strict"),
                (AUDIT_LABEL, "loud"),
                (WARN_VERSION_LABEL, "v9"),
            ]),
            &defaults,
        );
        assert_eq!(p.enforce.level, Level::Restricted);
        assert_eq!(p.audit.level, Level::Privileged);
        // An invalid enforce level does not make warn follow it.
        assert_eq!(p.warn.level, Level::Privileged);
        assert_eq!(errs.len(), 3);
        assert_eq!(
            errs[0].display(),
            r#"metadata.labels[pod-security.kubernetes.io/enforce]: Invalid value: "strict": must be one of privileged, baseline, restricted"#
        );
    }
}
