//! The `--encryption-provider-config` file: apiserver.config.k8s.io/v1
//! EncryptionConfiguration (YAML or JSON), decoded strictly and validated with
//! kube-apiserver's rules and messages.

use base64::Engine;
use serde::Deserialize;
use std::collections::HashSet;
use std::time::Duration;

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EncryptionConfiguration {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub resources: Vec<ResourceConfiguration>,
}

/// One `resources` entry: which resources, and the providers they use in order.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceConfiguration {
    #[serde(default)]
    pub resources: Vec<String>,
    #[serde(default)]
    pub providers: Vec<ProviderConfiguration>,
}

/// Exactly one of the fields is set.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfiguration {
    pub aesgcm: Option<KeysConfiguration>,
    pub aescbc: Option<KeysConfiguration>,
    pub secretbox: Option<KeysConfiguration>,
    pub identity: Option<IdentityConfiguration>,
    pub kms: Option<KmsConfiguration>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityConfiguration {}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysConfiguration {
    #[serde(default)]
    pub keys: Vec<Key>,
}

#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Key {
    #[serde(default)]
    pub name: String,
    /// Base64 of the raw key.
    #[serde(default)]
    pub secret: String,
}

impl std::fmt::Debug for Key {
    // Never print a secret (configs end up in logs and panics).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("name", &self.name)
            .field("secret", &"REDACTED")
            .finish()
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KmsConfiguration {
    /// `v1` (Kubernetes' default, deprecated and refused here) or `v2`.
    pub api_version: Option<String>,
    #[serde(default)]
    pub name: String,
    /// KMS v1 only.
    #[serde(rename = "cachesize")]
    pub cache_size: Option<i32>,
    /// `unix:///path/to/socket`.
    #[serde(default)]
    pub endpoint: String,
    /// Per-call timeout, a Go duration (`3s`, the default).
    pub timeout: Option<String>,
}

impl KmsConfiguration {
    pub fn api_version(&self) -> &str {
        self.api_version.as_deref().unwrap_or("v1")
    }

    pub fn timeout(&self) -> Result<Duration, String> {
        match &self.timeout {
            None => Ok(Duration::from_secs(3)),
            Some(t) => keelson_apimachinery::duration::parse(t),
        }
    }

    /// The socket path of a `unix://` endpoint.
    pub fn socket_path(&self) -> Result<String, String> {
        let url = url::Url::parse(&self.endpoint)
            .map_err(|e| format!("invalid endpoint for kms provider, error: {e}"))?;
        if url.scheme() != "unix" {
            return Err(format!(
                "unsupported scheme {:?} for KMS provider, only unix is supported",
                url.scheme()
            ));
        }
        // `unix:///run/kms.sock` has the path; `unix://run/kms.sock` puts its first
        // segment in the host, as Go's url.Parse does.
        Ok(format!("{}{}", url.host_str().unwrap_or(""), url.path()))
    }
}

/// A `group/resource` as a `resources` entry names it (`secrets`, `deployments.apps`,
/// `*.apps`, `*.` for every core resource, `*.*` for everything).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GroupResource {
    pub group: String,
    pub resource: String,
}

impl GroupResource {
    /// Kubernetes' `schema.ParseGroupResource`: the group follows the first dot.
    pub fn parse(s: &str) -> GroupResource {
        match s.split_once('.') {
            Some((resource, group)) => GroupResource {
                group: group.into(),
                resource: resource.into(),
            },
            None => GroupResource {
                group: String::new(),
                resource: s.into(),
            },
        }
    }

    pub fn new(group: &str, resource: &str) -> GroupResource {
        GroupResource {
            group: group.into(),
            resource: resource.into(),
        }
    }

    fn any_in(group: &str) -> GroupResource {
        GroupResource::new(group, "*")
    }

    pub fn any() -> GroupResource {
        GroupResource::new("*", "*")
    }
}

impl std::fmt::Display for GroupResource {
    /// As the config spells it (`*.` for every core resource).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.group.is_empty() && self.resource == "*" {
            f.write_str("*.")
        } else if self.group.is_empty() {
            f.write_str(&self.resource)
        } else {
            write!(f, "{}.{}", self.resource, self.group)
        }
    }
}

/// Parse and validate the file's contents.
pub fn parse(data: &[u8]) -> Result<EncryptionConfiguration, String> {
    if data.iter().all(u8::is_ascii_whitespace) {
        return Err("encryption provider configuration file is empty".into());
    }
    let text = std::str::from_utf8(data).map_err(|e| format!("not UTF-8: {e}"))?;
    let config: EncryptionConfiguration = if text.trim_start().starts_with('{') {
        serde_json::from_str(text).map_err(|e| e.to_string())?
    } else {
        serde_yaml::from_str(text).map_err(|e| e.to_string())?
    };
    match (config.api_version.as_str(), config.kind.as_str()) {
        ("apiserver.config.k8s.io/v1", "EncryptionConfiguration") => {}
        // The pre-1.13 spelling, which kube-apiserver read as the same schema.
        ("v1", "EncryptionConfig") => {}
        (api_version, kind) => {
            return Err(format!(
                "no kind {kind:?} is registered for version {api_version:?}: expected apiVersion \
                 apiserver.config.k8s.io/v1, kind EncryptionConfiguration"
            ))
        }
    }
    let errors = validate(&config);
    if !errors.is_empty() {
        return Err(aggregate(&errors));
    }
    check_masking(&config)?;
    Ok(config)
}

/// Kubernetes' aggregate error text: one message, or `[a, b]`.
pub fn aggregate(errors: &[String]) -> String {
    match errors {
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    }
}

const AES_KEY_SIZES: &[usize] = &[16, 24, 32];
const SECRETBOX_KEY_SIZES: &[usize] = &[32];

/// kube-apiserver's ValidateEncryptionConfiguration, with its field paths and messages.
fn validate(c: &EncryptionConfiguration) -> Vec<String> {
    let mut errs = Vec::new();
    if c.resources.is_empty() {
        errs.push("resources: Required value: at least one resources is required".into());
        return errs;
    }
    let mut kms_names = HashSet::new();
    for (i, conf) in c.resources.iter().enumerate() {
        let r = format!("resources[{i}].resources");
        let p = format!("resources[{i}].providers");
        if conf.resources.is_empty() {
            errs.push(format!("{r}: Required value: at least one {r} is required"));
        }
        errs.extend(validate_overlap(&conf.resources, &r));
        errs.extend(validate_names(&conf.resources, &r));
        if conf.providers.is_empty() {
            errs.push(format!("{p}: Required value: at least one {p} is required"));
        }
        for (j, provider) in conf.providers.iter().enumerate() {
            let path = format!("{p}[{j}]");
            let set = [
                provider.kms.is_some(),
                provider.aesgcm.is_some(),
                provider.aescbc.is_some(),
                provider.secretbox.is_some(),
                provider.identity.is_some(),
            ]
            .iter()
            .filter(|b| **b)
            .count();
            if set == 0 {
                errs.push(format!("{path}: Invalid value: provider does not contain any of the expected providers: KMS, AESGCM, AESCBC, Secretbox, Identity"));
                continue;
            }
            if set > 1 {
                errs.push(format!("{path}: Invalid value: more than one provider specified in a single element, should split into different list elements"));
                continue;
            }
            if let Some(kms) = &provider.kms {
                errs.extend(validate_kms(kms, &format!("{path}.kms"), &kms_names));
                kms_names.insert(kms.name.clone());
            } else if let Some(k) = &provider.aesgcm {
                errs.extend(validate_keys(
                    &k.keys,
                    &format!("{path}.aesgcm.keys"),
                    AES_KEY_SIZES,
                ));
            } else if let Some(k) = &provider.aescbc {
                errs.extend(validate_keys(
                    &k.keys,
                    &format!("{path}.aescbc.keys"),
                    AES_KEY_SIZES,
                ));
            } else if let Some(k) = &provider.secretbox {
                errs.extend(validate_keys(
                    &k.keys,
                    &format!("{path}.secretbox.keys"),
                    SECRETBOX_KEY_SIZES,
                ));
            }
        }
    }
    errs
}

fn validate_overlap(resources: &[String], path: &str) -> Vec<String> {
    let parsed: Vec<GroupResource> = resources.iter().map(|r| GroupResource::parse(r)).collect();
    let (mut duplicate, mut overlap) = (false, false);
    for (i, a) in parsed.iter().enumerate() {
        for (j, b) in parsed.iter().enumerate() {
            if i == j {
                continue;
            }
            if a == b {
                duplicate = true;
                continue;
            }
            if *a == GroupResource::any()
                || (a.group == b.group && (a.resource == "*" || b.resource == "*"))
            {
                overlap = true;
            }
        }
    }
    let list = format!("{resources:?}");
    let mut errs = Vec::new();
    if duplicate {
        errs.push(format!(
            "{path}: Invalid value: {list}: the same resource cannot be specified multiple times"
        ));
    }
    if overlap {
        errs.push(format!("{path}: Invalid value: {list}: using overlapping resources such as 'secrets' and '*.' in the same resource list is not allowed as they will be masked"));
    }
    errs
}

fn validate_names(resources: &[String], path: &str) -> Vec<String> {
    let mut errs = Vec::new();
    for (j, res) in resources.iter().enumerate() {
        let at = format!("{path}[{j}]: Invalid value: {res:?}");
        let gr = GroupResource::parse(res);
        let problem = if res.to_lowercase() != *res {
            "resource name should not contain capital letters"
        } else if res == "*" {
            "use '*.' to encrypt all the resources from core API group or *.* to encrypt all resources"
        } else if [
            "apiserveripinfo",
            "serviceipallocations",
            "servicenodeportallocations",
        ]
        .contains(&res.as_str())
        {
            "resources which do not have REST API/s cannot be encrypted"
        } else if gr.group == "events.k8s.io" {
            "'*.events.k8s.io' objects are stored using the 'events' API group in etcd. Use 'events' instead in the config file"
        } else if gr.group == "extensions" {
            "'extensions' group has been removed and cannot be used for encryption"
        } else if gr.group == "*" && gr.resource != "*" {
            "encrypting the same resource across groups is not supported"
        } else {
            continue;
        };
        errs.push(format!("{at}: {problem}"));
    }
    errs
}

fn validate_keys(keys: &[Key], path: &str, sizes: &[usize]) -> Vec<String> {
    if keys.is_empty() {
        return vec![format!(
            "{path}: Required value: at least one keys is required"
        )];
    }
    let mut errs = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let at = format!("{path}[{i}]");
        if key.name.is_empty() {
            errs.push(format!(
                "{at}.name: Required value: name is a mandatory field for a key"
            ));
        }
        if key.secret.is_empty() {
            errs.push(format!(
                "{at}.secret: Required value: secret is a mandatory field for a key"
            ));
            continue;
        }
        match base64::engine::general_purpose::STANDARD.decode(&key.secret) {
            Err(_) => errs.push(format!(
                "{at}.secret: Invalid value: \"REDACTED\": secrets must be base64 encoded"
            )),
            Ok(raw) if !sizes.contains(&raw.len()) => errs.push(format!(
                "{at}.secret: Invalid value: \"REDACTED\": secret is not of the expected length, got {}, expected one of {}",
                raw.len(),
                go_list(sizes)
            )),
            Ok(_) => {}
        }
    }
    errs
}

/// `[16 24 32]`, as Go prints an int slice.
fn go_list(sizes: &[usize]) -> String {
    let items: Vec<String> = sizes.iter().map(usize::to_string).collect();
    format!("[{}]", items.join(" "))
}

fn validate_kms(c: &KmsConfiguration, path: &str, names: &HashSet<String>) -> Vec<String> {
    let mut errs = Vec::new();
    let version = c.api_version();
    if c.name.is_empty() {
        errs.push(format!(
            "{path}.name: Required value: name is a mandatory field for a provider"
        ));
    }
    if version != "v1" && c.name.contains(':') {
        errs.push(format!(
            "{path}.name: Invalid value: {:?}: invalid KMS provider name {}, must not contain ':'",
            c.name, c.name
        ));
    }
    if version != "v1" && names.contains(&c.name) {
        errs.push(format!(
            "{path}.name: Invalid value: {:?}: duplicate KMS provider name {}, names must be unique",
            c.name, c.name
        ));
    }
    match c.timeout() {
        Ok(t) if t.is_zero() => errs.push(format!(
            "{path}.timeout: Invalid value: {:?}: timeout should be a positive value",
            c.timeout.as_deref().unwrap_or_default()
        )),
        Ok(_) => {}
        Err(e) => errs.push(format!("{path}.timeout: Invalid value: {e}")),
    }
    if c.endpoint.is_empty() {
        errs.push(format!(
            "{path}.endpoint: Invalid value: \"\": endpoint is a mandatory field for a kms"
        ));
    } else if let Err(e) = c.socket_path() {
        errs.push(format!(
            "{path}.endpoint: Invalid value: {:?}: {e}",
            c.endpoint
        ));
    }
    if version != "v1" && c.cache_size.is_some() {
        errs.push(format!(
            "{path}.cachesize: Invalid value: {}: cachesize is not supported in v2",
            c.cache_size.unwrap_or_default()
        ));
    }
    if version != "v1" && version != "v2" {
        errs.push(format!(
            "{path}.apiVersion: Invalid value: {version:?}: unsupported apiVersion apiVersion for KMS provider, only v1 and v2 are supported"
        ));
    }
    errs
}

/// A resource named after a `*.group` or `*.*` entry that already covers it would never
/// be used: kube-apiserver refuses the file.
fn check_masking(c: &EncryptionConfiguration) -> Result<(), String> {
    let mut seen: HashSet<GroupResource> = HashSet::new();
    for conf in &c.resources {
        for r in &conf.resources {
            let gr = GroupResource::parse(r);
            for mask in [GroupResource::any_in(&gr.group), GroupResource::any()] {
                if seen.contains(&mask) {
                    return Err(format!(
                        "resource {:?} is masked by earlier rule {:?}",
                        gr.to_string(),
                        mask.to_string()
                    ));
                }
            }
        }
        // Entries of one list may not mask each other (validated above), so the list
        // is added as a whole.
        seen.extend(conf.resources.iter().map(|r| GroupResource::parse(r)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY32: &str = "c2VjcmV0IGlzIHNlY3VyZSwgaXMgaXQgc2VjdXJlPz8=";

    fn yaml(body: &str) -> Result<EncryptionConfiguration, String> {
        parse(
            format!(
                "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\n{body}"
            )
            .as_bytes(),
        )
    }

    #[test]
    fn group_resources_parse_as_kubernetes_does() {
        assert_eq!(
            GroupResource::parse("secrets"),
            GroupResource::new("", "secrets")
        );
        assert_eq!(
            GroupResource::parse("deployments.apps"),
            GroupResource::new("apps", "deployments")
        );
        assert_eq!(
            GroupResource::parse("*.apps"),
            GroupResource::new("apps", "*")
        );
        assert_eq!(GroupResource::parse("*."), GroupResource::new("", "*"));
        assert_eq!(GroupResource::parse("*.*"), GroupResource::any());
        assert_eq!(
            GroupResource::parse("widgets.example.com"),
            GroupResource::new("example.com", "widgets")
        );
        assert_eq!(GroupResource::parse("*.").to_string(), "*.");
        assert_eq!(
            GroupResource::parse("deployments.apps").to_string(),
            "deployments.apps"
        );
    }

    #[test]
    fn a_full_config_in_yaml_and_json() {
        let c = yaml(&format!(
            r#"resources:
  - resources: [secrets, configmaps]
    providers:
      - aescbc:
          keys:
            - name: key1
              secret: {KEY32}
      - identity: {{}}
  - resources: ["*.apps"]
    providers:
      - secretbox:
          keys: [{{name: k, secret: {KEY32}}}]
"#
        ))
        .unwrap();
        assert_eq!(c.resources.len(), 2);
        assert_eq!(
            c.resources[0].providers[0].aescbc.as_ref().unwrap().keys[0].name,
            "key1"
        );
        assert!(c.resources[0].providers[1].identity.is_some());
        let json = format!(
            r#"{{"apiVersion":"apiserver.config.k8s.io/v1","kind":"EncryptionConfiguration",
               "resources":[{{"resources":["secrets"],"providers":[{{"aesgcm":{{"keys":[{{"name":"a","secret":"{KEY32}"}}]}}}}]}}]}}"#
        );
        let c = parse(json.as_bytes()).unwrap();
        assert!(c.resources[0].providers[0].aesgcm.is_some());
    }

    #[test]
    fn the_legacy_kind_is_read() {
        let c = parse(
            b"kind: EncryptionConfig\napiVersion: v1\nresources:\n- resources: [secrets]\n  providers: [{identity: {}}]\n",
        )
        .unwrap();
        assert_eq!(c.resources[0].resources, ["secrets"]);
        let err = parse(b"kind: Pod\napiVersion: v1\nresources: []\n").unwrap_err();
        assert!(err.contains("EncryptionConfiguration"), "{err}");
    }

    #[test]
    fn unknown_fields_and_bad_keys_are_refused_with_kubernetes_messages() {
        let err = yaml("resources:\n- resources: [secrets]\n  providers: [{aescbc: {keys: [{name: k, secret: c2hvcnQ=}]}}]\n").unwrap_err();
        assert_eq!(err, "resources[0].providers[0].aescbc.keys[0].secret: Invalid value: \"REDACTED\": secret is not of the expected length, got 5, expected one of [16 24 32]");
        let err = yaml("resources:\n- resources: [secrets]\n  providers: [{secretbox: {keys: [{name: k, secret: '!!'}]}}]\n").unwrap_err();
        assert!(err.contains("secrets must be base64 encoded"), "{err}");
        let err = yaml("resources:\n- resources: [secrets]\n  provders: []\n").unwrap_err();
        assert!(err.contains("unknown field `provders`"), "{err}");
        let err = yaml("resources:\n- resources: [secrets]\n  providers: [{identity: {}, aescbc: {keys: []}}]\n").unwrap_err();
        assert!(err.contains("more than one provider"), "{err}");
        let err = yaml("resources:\n- resources: [secrets]\n  providers: [{}]\n").unwrap_err();
        assert!(
            err.contains("does not contain any of the expected providers"),
            "{err}"
        );
        let err = yaml("resources:\n- resources: [Secrets, '*', deployments.extensions, events.events.k8s.io, 'secrets.*']\n  providers: [{identity: {}}]\n").unwrap_err();
        for want in [
            "capital letters",
            "use '*.' to encrypt",
            "'extensions' group",
            "Use 'events' instead",
            "same resource across groups",
        ] {
            assert!(err.contains(want), "{want} in {err}");
        }
        assert!(yaml("resources: []\n")
            .unwrap_err()
            .contains("at least one resources"));
    }

    #[test]
    fn overlapping_and_masked_resources_are_refused() {
        let err = yaml("resources:\n- resources: [secrets, '*.']\n  providers: [{identity: {}}]\n")
            .unwrap_err();
        assert!(err.contains("overlapping resources"), "{err}");
        let err =
            yaml("resources:\n- resources: [secrets, secrets]\n  providers: [{identity: {}}]\n")
                .unwrap_err();
        assert!(err.contains("cannot be specified multiple times"), "{err}");
        let err = yaml("resources:\n- resources: ['*.apps']\n  providers: [{identity: {}}]\n- resources: [deployments.apps]\n  providers: [{identity: {}}]\n").unwrap_err();
        assert_eq!(
            err,
            "resource \"deployments.apps\" is masked by earlier rule \"*.apps\""
        );
        let err = yaml("resources:\n- resources: ['*.*']\n  providers: [{identity: {}}]\n- resources: [secrets]\n  providers: [{identity: {}}]\n").unwrap_err();
        assert!(err.contains("masked by earlier rule \"*.*\""), "{err}");
        // The narrower rule first is what Kubernetes documents.
        yaml("resources:\n- resources: [secrets]\n  providers: [{identity: {}}]\n- resources: ['*.']\n  providers: [{identity: {}}]\n- resources: ['*.*']\n  providers: [{identity: {}}]\n").unwrap();
    }

    #[test]
    fn kms_settings() {
        let c = yaml("resources:\n- resources: [secrets]\n  providers: [{kms: {apiVersion: v2, name: vault, endpoint: 'unix:///run/kms/vault.sock', timeout: 5s}}]\n").unwrap();
        let kms = c.resources[0].providers[0].kms.as_ref().unwrap();
        assert_eq!(kms.socket_path().unwrap(), "/run/kms/vault.sock");
        assert_eq!(kms.timeout().unwrap(), Duration::from_secs(5));
        let err = yaml("resources:\n- resources: [secrets]\n  providers: [{kms: {apiVersion: v2, name: 'a:b', endpoint: 'tcp://x', cachesize: 10, timeout: 0s}}]\n").unwrap_err();
        for want in [
            "must not contain ':'",
            "only unix is supported",
            "cachesize is not supported in v2",
            "timeout should be a positive value",
        ] {
            assert!(err.contains(want), "{want} in {err}");
        }
        let err = yaml("resources:\n- resources: [secrets]\n  providers: [{kms: {apiVersion: v2, name: a, endpoint: 'unix:///a'}}, {kms: {apiVersion: v2, name: a, endpoint: 'unix:///b'}}]\n").unwrap_err();
        assert!(err.contains("duplicate KMS provider name a"), "{err}");
    }

    #[test]
    fn secrets_are_not_printed() {
        let c = yaml(&format!("resources:\n- resources: [secrets]\n  providers: [{{aescbc: {{keys: [{{name: k, secret: {KEY32}}}]}}}}]\n")).unwrap();
        assert!(!format!("{c:?}").contains(KEY32));
    }
}
