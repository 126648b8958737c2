//! The webhooks of every Mutating- and ValidatingWebhookConfiguration, followed from the
//! watch cache and kept ready to call: rules and selectors parsed, the TLS client built
//! from the `caBundle` once per configuration change rather than once per request.
//!
//! Hooks are kept in Kubernetes' order: configurations by name, then each
//! configuration's webhooks in their order.

use crate::authz::follow::Sink;
use keelson_apimachinery::selector::LabelSelector;
use keelson_relay::Relay;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

pub const MUTATING_PREFIX: &str =
    "/registry/admissionregistration.k8s.io/mutatingwebhookconfigurations/";
pub const VALIDATING_PREFIX: &str =
    "/registry/admissionregistration.k8s.io/validatingwebhookconfigurations/";

/// One `rules[]` entry.
#[derive(Debug, Clone)]
pub struct Rule {
    pub operations: Vec<String>,
    pub api_groups: Vec<String>,
    pub api_versions: Vec<String>,
    pub resources: Vec<String>,
    pub scope: String,
}

/// Where the AdmissionReview goes.
#[derive(Debug, Clone)]
pub enum Target {
    /// `clientConfig.url`.
    Url(String),
    /// `clientConfig.service`: resolved to a ready endpoint on every call.
    Service {
        namespace: String,
        name: String,
        port: u16,
        path: String,
    },
}

/// One webhook, ready to call.
pub struct Hook {
    /// `<configuration>/<index>/<name>`: identifies the hook across reinvocation.
    pub id: String,
    pub configuration: String,
    pub name: String,
    pub rules: Vec<Rule>,
    /// `matchPolicy: Equivalent`.
    pub equivalent: bool,
    pub namespace_selector: LabelSelector,
    pub object_selector: LabelSelector,
    /// `matchConditions`, compiled.
    pub match_conditions: Vec<super::conditions::MatchCondition>,
    /// `failurePolicy: Ignore`.
    pub ignore_failures: bool,
    pub side_effects: String,
    pub timeout: Duration,
    /// `reinvocationPolicy: IfNeeded` (mutating webhooks only).
    pub reinvoke_if_needed: bool,
    pub target: Target,
    /// The client for this hook's `caBundle`, or why there is none; a hook without one
    /// fails every call, which its failure policy then decides about.
    pub relay: Result<Relay, String>,
}

fn strings(v: &Value, key: &str) -> Vec<String> {
    keelson_apimachinery::meta::path_strings(v, key)
}

fn selector(v: Option<&Value>) -> LabelSelector {
    match v {
        None | Some(Value::Null) => LabelSelector::everything(),
        // Stored objects were validated; a selector that no longer parses matches
        // nothing rather than everything.
        Some(s) => LabelSelector::from_object(s).unwrap_or_else(|_| LabelSelector::nothing()),
    }
}

/// The roots a hook without `caBundle` trusts: the system's, loaded once.
fn system_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| rustls_native_certs::load_native_certs().certs)
}

fn relay_for(ca_bundle: Option<&str>) -> Result<Relay, String> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_bundle.filter(|b| !b.is_empty()) {
        Some(b64) => {
            use base64::Engine as _;
            let pem = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|e| format!("caBundle is not base64: {e}"))?;
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| format!("caBundle: {e}"))?;
                roots.add(cert).map_err(|e| format!("caBundle: {e}"))?;
            }
            if roots.is_empty() {
                return Err("caBundle holds no certificate".into());
            }
        }
        None => {
            roots.add_parsable_certificates(system_roots().iter().cloned());
        }
    }
    let config = keelson_relay::tls::client_config(None, Some(roots)).map_err(|e| e.to_string())?;
    Ok(Relay::new().with_tls(config))
}

fn target(config: &Value) -> Result<Target, String> {
    if let Some(url) = config.get("url").and_then(Value::as_str) {
        return Ok(Target::Url(url.to_string()));
    }
    let s = config
        .get("service")
        .filter(|s| s.is_object())
        .ok_or("clientConfig has neither url nor service")?;
    let str_of = |k: &str| s.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let port = s.get("port").and_then(Value::as_u64).unwrap_or(443);
    Ok(Target::Service {
        namespace: str_of("namespace"),
        name: str_of("name"),
        port: u16::try_from(port).map_err(|_| "service port out of range")?,
        path: str_of("path"),
    })
}

fn rule(r: &Value) -> Rule {
    Rule {
        operations: strings(r, "operations"),
        api_groups: strings(r, "apiGroups"),
        api_versions: strings(r, "apiVersions"),
        resources: strings(r, "resources"),
        scope: r
            .get("scope")
            .and_then(Value::as_str)
            .unwrap_or("*")
            .to_string(),
    }
}

/// The hooks of one configuration object.
pub fn compile(config: &Value, mutating: bool) -> Vec<Arc<Hook>> {
    let configuration = keelson_apimachinery::meta::name(config).to_string();
    let hooks = config
        .get("webhooks")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    hooks
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let s = |k: &str| h.get(k).and_then(Value::as_str).unwrap_or("");
            let name = s("name").to_string();
            let client_config = h.get("clientConfig").unwrap_or(&Value::Null);
            let (target, relay) = match target(client_config) {
                Ok(t) => (
                    t,
                    relay_for(client_config.get("caBundle").and_then(Value::as_str)),
                ),
                Err(e) => (Target::Url(String::new()), Err(e.to_string())),
            };
            Arc::new(Hook {
                id: format!("{configuration}/{i}/{name}"),
                configuration: configuration.clone(),
                name,
                rules: h
                    .get("rules")
                    .and_then(Value::as_array)
                    .map(|rs| rs.iter().map(rule).collect())
                    .unwrap_or_default(),
                equivalent: s("matchPolicy") != "Exact",
                namespace_selector: selector(h.get("namespaceSelector")),
                object_selector: selector(h.get("objectSelector")),
                match_conditions: super::conditions::compile(h),
                ignore_failures: s("failurePolicy") == "Ignore",
                side_effects: s("sideEffects").to_string(),
                timeout: Duration::from_secs(
                    h.get("timeoutSeconds")
                        .and_then(Value::as_u64)
                        .unwrap_or(10)
                        .clamp(1, 30),
                ),
                reinvoke_if_needed: mutating && s("reinvocationPolicy") == "IfNeeded",
                target,
                relay,
            })
        })
        .collect()
}

/// Every configuration's hooks, by etcd key (so in name order within each kind).
#[derive(Default)]
pub struct Configurations {
    by_key: RwLock<BTreeMap<String, Vec<Arc<Hook>>>>,
}

impl Configurations {
    fn hooks(&self, prefix: &str) -> Vec<Arc<Hook>> {
        let m = self.by_key.read().unwrap_or_else(|e| e.into_inner());
        m.range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .flat_map(|(_, hooks)| hooks.iter().cloned())
            .collect()
    }

    /// Whether there is no configuration at all: the common case, which then costs a
    /// write nothing more than this look.
    pub fn is_empty(&self) -> bool {
        self.by_key
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    }

    /// The mutating webhooks, in the order they are called.
    pub fn mutating(&self) -> Vec<Arc<Hook>> {
        self.hooks(MUTATING_PREFIX)
    }

    /// The validating webhooks.
    pub fn validating(&self) -> Vec<Arc<Hook>> {
        self.hooks(VALIDATING_PREFIX)
    }

    fn compile_at(key: &str, obj: &Value) -> Vec<Arc<Hook>> {
        compile(obj, key.starts_with(MUTATING_PREFIX))
    }
}

impl Sink for Configurations {
    fn prefixes(&self) -> &'static [&'static str] {
        &[MUTATING_PREFIX, VALIDATING_PREFIX]
    }

    fn reset(&self, objects: Vec<(String, Arc<Value>)>) {
        let compiled = objects
            .iter()
            .map(|(k, o)| (k.clone(), Self::compile_at(k, o)))
            .collect();
        *self.by_key.write().unwrap_or_else(|e| e.into_inner()) = compiled;
    }

    fn apply(&self, key: &str, object: Option<&Arc<Value>>) {
        let compiled = object.map(|o| Self::compile_at(key, o));
        let mut m = self.by_key.write().unwrap_or_else(|e| e.into_inner());
        match compiled {
            Some(hooks) => {
                m.insert(key.to_string(), hooks);
            }
            None => {
                m.remove(key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(name: &str, hooks: &[&str]) -> Arc<Value> {
        let hooks: Vec<Value> = hooks
            .iter()
            .map(|h| json!({"name": h, "sideEffects": "None", "clientConfig": {"url": "https://127.0.0.1/x"},
                "rules": [{"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*"]}]}))
            .collect();
        Arc::new(json!({"metadata": {"name": name}, "webhooks": hooks}))
    }

    #[test]
    fn hooks_run_by_configuration_name_then_webhook_order() {
        let c = Configurations::default();
        c.reset(vec![
            (
                format!("{MUTATING_PREFIX}b"),
                config("b", &["b1.x.io", "b0.x.io"]),
            ),
            (format!("{MUTATING_PREFIX}a"), config("a", &["a2.x.io"])),
            (format!("{VALIDATING_PREFIX}v"), config("v", &["v.x.io"])),
        ]);
        let names =
            |hooks: Vec<Arc<Hook>>| hooks.iter().map(|h| h.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(c.mutating()), ["a2.x.io", "b1.x.io", "b0.x.io"]);
        assert_eq!(names(c.validating()), ["v.x.io"]);
        c.apply(&format!("{MUTATING_PREFIX}a"), None);
        c.apply(
            &format!("{MUTATING_PREFIX}c"),
            Some(&config("c", &["c.x.io"])),
        );
        assert_eq!(names(c.mutating()), ["b1.x.io", "b0.x.io", "c.x.io"]);
        let h = &c.mutating()[0];
        assert!(!h.ignore_failures && h.equivalent && !h.reinvoke_if_needed);
        assert_eq!(h.timeout, Duration::from_secs(10));
        assert!(h.relay.is_ok());
    }

    #[test]
    fn a_bad_ca_bundle_leaves_the_hook_without_a_client() {
        let mut v = (*config("a", &["a.x.io"])).clone();
        v["webhooks"][0]["clientConfig"]["caBundle"] = json!("bm90IHBlbQ==");
        let hooks = compile(&v, false);
        assert_eq!(
            hooks[0].relay.as_ref().err().map(String::as_str),
            Some("caBundle holds no certificate")
        );
    }
}
