//! Pod Security admission's configuration, from `--admission-control-config-file`: an
//! apiserver.config.k8s.io/v1 AdmissionConfiguration (YAML or JSON) whose `PodSecurity`
//! plugin entry holds a pod-security.admission.config.k8s.io/v1 PodSecurityConfiguration,
//! inline (`configuration`) or in a file (`path`, relative to the AdmissionConfiguration's
//! directory). Without it, everything is privileged and nothing is exempt, as in
//! Kubernetes. Validation and its messages follow
//! k8s.io/pod-security-admission/admission/api/validation.

use super::policy::{Level, LevelVersion, Policy, Version};
use keelson_apimachinery::validation::{dns1123_label, dns1123_subdomain};
use keelson_apimachinery::Cause;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::Path;

/// Cluster defaults and exemptions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    /// The policy of namespaces without Pod Security labels.
    pub defaults: Policy,
    pub exemptions: Exemptions,
}

/// Requests Pod Security admission lets through unchecked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Exemptions {
    pub usernames: Vec<String>,
    pub runtime_classes: Vec<String>,
    pub namespaces: Vec<String>,
}

const ADMISSION_VERSIONS: &[&str] = &["apiserver.config.k8s.io/v1", "apiserver.k8s.io/v1alpha1"];
const POD_SECURITY_VERSIONS: &[&str] = &[
    "pod-security.admission.config.k8s.io/v1",
    "pod-security.admission.config.k8s.io/v1beta1",
    "pod-security.admission.config.k8s.io/v1alpha1",
];
pub const PLUGIN_NAME: &str = "PodSecurity";

/// Read `--admission-control-config-file` (none: the defaults).
pub fn load(path: Option<&Path>) -> anyhow::Result<Config> {
    let Some(path) = path else {
        return Ok(Config::default());
    };
    let data =
        std::fs::read(path).map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    from_admission_configuration(&data, dir)
        .map_err(|e| anyhow::anyhow!("admission configuration {}: {e}", path.display()))
}

fn parse(data: &[u8]) -> Result<Value, String> {
    // YAML is a superset of JSON.
    serde_yaml::from_slice::<Value>(data).map_err(|e| format!("couldn't decode: {e}"))
}

fn check_type(obj: &Value, versions: &[&str], kind: &str) -> Result<(), String> {
    let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let got_kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
    if got_kind.is_empty() {
        return Err(format!("Object 'Kind' is missing in '{obj}'"));
    }
    if got_kind != kind || !versions.contains(&api_version) {
        return Err(format!(
            "expected {kind} ({}), got {got_kind} ({api_version})",
            versions.join(", ")
        ));
    }
    Ok(())
}

/// An AdmissionConfiguration's PodSecurity entry; `dir` resolves a relative `path`.
pub fn from_admission_configuration(data: &[u8], dir: &Path) -> Result<Config, String> {
    let obj = parse(data)?;
    check_type(&obj, ADMISSION_VERSIONS, "AdmissionConfiguration")?;
    let plugins = obj.get("plugins").and_then(Value::as_array);
    let Some(entry) = plugins
        .into_iter()
        .flatten()
        .find(|p| p.get("name").and_then(Value::as_str) == Some(PLUGIN_NAME))
    else {
        return Ok(Config::default());
    };
    if let Some(conf) = entry.get("configuration").filter(|c| !c.is_null()) {
        return from_pod_security_configuration(conf);
    }
    match entry
        .get("path")
        .and_then(Value::as_str)
        .filter(|p| !p.is_empty())
    {
        Some(p) => {
            let file = dir.join(p);
            let data =
                std::fs::read(&file).map_err(|e| format!("reading {}: {e}", file.display()))?;
            from_pod_security_configuration(&parse(&data)?)
        }
        None => Ok(Config::default()),
    }
}

fn strings(v: &Value, pointer: &str) -> Vec<String> {
    v.pointer(pointer)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|s| s.as_str().unwrap_or("").to_string())
        .collect()
}

/// A PodSecurityConfiguration, defaulted (privileged, latest) and validated.
pub fn from_pod_security_configuration(obj: &Value) -> Result<Config, String> {
    check_type(obj, POD_SECURITY_VERSIONS, "PodSecurityConfiguration")?;
    let mut causes = Vec::new();
    let default = |field: &str, fallback: &str| {
        obj.pointer(&format!("/defaults/{field}"))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .unwrap_or(fallback)
            .to_string()
    };
    let mut level_version = |mode: &str| {
        let level = default(mode, "privileged");
        let version = default(&format!("{mode}-version"), "latest");
        let l = Level::parse(&level).unwrap_or_else(|e| {
            causes.push(Cause::invalid(format!("defaults.{mode}"), &json!(level), e));
            Level::Privileged
        });
        let v = Version::parse(&version).unwrap_or_else(|e| {
            causes.push(Cause::invalid(
                format!("defaults.{mode}-version"),
                &json!(version),
                e,
            ));
            Version::LATEST
        });
        LevelVersion {
            level: l,
            version: v,
        }
    };
    let defaults = Policy {
        enforce: level_version("enforce"),
        warn: level_version("warn"),
        audit: level_version("audit"),
    };
    let exemptions = Exemptions {
        namespaces: strings(obj, "/exemptions/namespaces"),
        runtime_classes: strings(obj, "/exemptions/runtimeClasses"),
        usernames: strings(obj, "/exemptions/usernames"),
    };
    let named = |errs: Vec<String>| {
        move |path: String, item: &str| {
            (!errs.is_empty()).then(|| Cause::invalid(path, &json!(item), errs.join(", ")))
        }
    };
    validate_list(
        &mut causes,
        "exemptions.namespaces",
        &exemptions.namespaces,
        |p, s| named(dns1123_label(s))(p, s),
    );
    validate_list(
        &mut causes,
        "exemptions.runtimeClasses",
        &exemptions.runtime_classes,
        |p, s| named(dns1123_subdomain(s))(p, s),
    );
    validate_list(
        &mut causes,
        "exemptions.usernames",
        &exemptions.usernames,
        |p, s| s.is_empty().then(|| Cause::required(p)),
    );
    match causes.len() {
        0 => Ok(Config {
            defaults,
            exemptions,
        }),
        1 => Err(causes[0].display()),
        _ => Err(format!(
            "[{}]",
            causes
                .iter()
                .map(Cause::display)
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// Each entry valid (`check` gives its error) and unique.
fn validate_list(
    causes: &mut Vec<Cause>,
    field: &str,
    items: &[String],
    check: impl Fn(String, &str) -> Option<Cause>,
) {
    let mut seen = BTreeSet::new();
    for (i, item) in items.iter().enumerate() {
        let path = format!("{field}[{i}]");
        if let Some(cause) = check(path.clone(), item) {
            causes.push(cause);
        } else if !seen.insert(item.as_str()) {
            causes.push(Cause::duplicate(path, &json!(item)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::admission::podsecurity::policy::Level;

    #[test]
    fn no_file_means_everything_privileged() {
        let c = load(None).unwrap();
        assert!(c.defaults.fully_privileged());
        assert_eq!(c.exemptions, Exemptions::default());
    }

    #[test]
    fn inline_yaml_configuration() {
        let yaml = br#"
apiVersion: apiserver.config.k8s.io/v1
kind: AdmissionConfiguration
plugins:
- name: EventRateLimit
  path: eventconfig.yaml
- name: PodSecurity
  configuration:
    apiVersion: pod-security.admission.config.k8s.io/v1
    kind: PodSecurityConfiguration
    defaults:
      enforce: baseline
      enforce-version: v1.30
      warn: restricted
    exemptions:
      usernames: ["system:serviceaccount:ci:builder"]
      runtimeClasses: ["kata"]
      namespaces: ["kube-system"]
"#;
        let c = from_admission_configuration(yaml, Path::new("/nonexistent")).unwrap();
        assert_eq!(c.defaults.enforce.to_string(), "baseline:v1.30");
        assert_eq!(c.defaults.warn.to_string(), "restricted:latest");
        assert_eq!(c.defaults.audit.level, Level::Privileged);
        assert_eq!(c.exemptions.usernames, ["system:serviceaccount:ci:builder"]);
        assert_eq!(c.exemptions.runtime_classes, ["kata"]);
        assert_eq!(c.exemptions.namespaces, ["kube-system"]);
    }

    #[test]
    fn json_configuration_by_relative_path() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("podsecurity.json"),
            r#"{"apiVersion": "pod-security.admission.config.k8s.io/v1beta1", "kind": "PodSecurityConfiguration",
                "defaults": {"audit": "restricted", "audit-version": "latest"}}"#,
        )
        .unwrap();
        let admission = dir.path().join("admission.json");
        std::fs::write(
            &admission,
            r#"{"apiVersion": "apiserver.config.k8s.io/v1", "kind": "AdmissionConfiguration",
                "plugins": [{"name": "PodSecurity", "path": "podsecurity.json"}]}"#,
        )
        .unwrap();
        let c = load(Some(&admission)).unwrap();
        assert_eq!(c.defaults.audit.to_string(), "restricted:latest");
        assert_eq!(c.defaults.enforce.level, Level::Privileged);
    }

    #[test]
    fn invalid_configurations_are_refused_with_kubernetes_messages() {
        let conf = json!({"apiVersion": "pod-security.admission.config.k8s.io/v1", "kind": "PodSecurityConfiguration",
            "defaults": {"enforce": "strict"}});
        assert_eq!(
            from_pod_security_configuration(&conf).unwrap_err(),
            r#"defaults.enforce: Invalid value: "strict": must be one of privileged, baseline, restricted"#
        );
        let conf = json!({"apiVersion": "pod-security.admission.config.k8s.io/v1", "kind": "PodSecurityConfiguration",
            "defaults": {"warn-version": "1.25"},
            "exemptions": {"namespaces": ["a", "a", "Bad_NS"], "usernames": [""]}});
        let err = from_pod_security_configuration(&conf).unwrap_err();
        assert!(err.starts_with(r#"[defaults.warn-version: Invalid value: "1.25": must be "latest" or "v1.x", exemptions.namespaces[1]: Duplicate value: "a", exemptions.namespaces[2]: Invalid value: "Bad_NS": a lowercase RFC 1123 label"#), "{err}");
        assert!(
            err.ends_with(r#"exemptions.usernames[0]: Required value]"#),
            "{err}"
        );
        let wrong = json!({"apiVersion": "v1", "kind": "ConfigMap"});
        assert!(from_pod_security_configuration(&wrong)
            .unwrap_err()
            .starts_with("expected PodSecurityConfiguration"));
        let missing = br#"{"apiVersion": "apiserver.config.k8s.io/v1"}"#;
        assert!(from_admission_configuration(missing, Path::new("."))
            .unwrap_err()
            .starts_with("Object 'Kind' is missing"));
    }
}
