//! Encryption at rest (`--encryption-provider-config`), as kube-apiserver does it.
//!
//! The config names resources and, for each, an ordered list of providers. The first
//! provider (its first key) encrypts every write; every provider and key is tried on
//! reads, chosen by the value's prefix: `k8s:enc:aescbc:v1:<key>:`,
//! `k8s:enc:aesgcm:v1:<key>:`, `k8s:enc:secretbox:v1:<key>:`,
//! `k8s:enc:kms:v2:<provider>:`, and no prefix for `identity`. A value read with
//! anything but the first provider and key is *stale*: the registry rewrites it even
//! when the object did not change, which is how `kubectl replace` migrates to a new key.
//! Formats and error texts follow k8s.io/apiserver/pkg/storage/value byte for byte, so
//! an etcd snapshot decrypts with the other's config both ways; aesgcm and KMS v2 bind
//! each value to its etcd key (the additional authenticated data).
//!
//! [`crate::storage::Storage`] applies this to every value it writes and reads; the
//! watch cache decrypts what etcd's watch delivers through it too.

pub mod aescbc;
pub mod aesgcm;
pub mod config;
pub mod identity;
pub mod kms;
pub mod kms_plugin;
pub mod secretbox;

use base64::Engine;
use bytes::Bytes;
use config::{EncryptionConfiguration, GroupResource, KeysConfiguration};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// One key of a keyed provider (aescbc, aesgcm, secretbox).
pub trait Cipher: Send + Sync {
    /// The bytes that follow `<prefix><key name>:`.
    fn seal(&self, plaintext: &[u8], authenticated: &[u8]) -> Result<Vec<u8>, String>;
    fn open(&self, data: &[u8], authenticated: &[u8]) -> Result<Vec<u8>, String>;
}

/// Makes a provider's cipher from a raw key.
type MakeCipher = fn(&[u8]) -> Result<Box<dyn Cipher>, String>;

/// A provider with named keys: `<prefix><name>:<cipher output>`.
struct Keyed {
    /// `k8s:enc:aescbc:v1:`
    prefix: &'static str,
    /// `aescbc`, for messages.
    provider: &'static str,
    /// `AES` or `Secretbox`, as Kubernetes' "no matching key" message names them.
    family: &'static str,
    keys: Vec<(String, Box<dyn Cipher>)>,
}

impl Keyed {
    fn build(
        conf: &KeysConfiguration,
        prefix: &'static str,
        provider: &'static str,
        family: &'static str,
        make: MakeCipher,
    ) -> Result<Keyed, String> {
        let mut keys = Vec::new();
        for key in &conf.keys {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(&key.secret)
                .map_err(|e| format!("could not obtain secret for named key {}: {e}", key.name))?;
            let cipher = make(&raw).map_err(|e| {
                format!(
                    "error while creating cipher for named key {}: {e}",
                    key.name
                )
            })?;
            keys.push((key.name.clone(), cipher));
        }
        Ok(Keyed {
            prefix,
            provider,
            family,
            keys,
        })
    }

    fn seal(&self, plaintext: &[u8], authenticated: &[u8]) -> Result<Vec<u8>, String> {
        let (name, cipher) = &self.keys[0];
        let sealed = cipher.seal(plaintext, authenticated)?;
        let mut out = Vec::with_capacity(self.prefix.len() + name.len() + 1 + sealed.len());
        out.extend_from_slice(self.prefix.as_bytes());
        out.extend_from_slice(name.as_bytes());
        out.push(b':');
        out.extend(sealed);
        Ok(out)
    }

    /// `data` follows the provider prefix. Every key whose name matches is tried (two
    /// entries may share a name across providers of one type); stale unless the first.
    fn open(&self, data: &[u8], authenticated: &[u8]) -> Result<(Vec<u8>, bool), String> {
        let mut errs = Vec::new();
        for (i, (name, cipher)) in self.keys.iter().enumerate() {
            let Some(rest) = data
                .strip_prefix(name.as_bytes())
                .and_then(|r| r.strip_prefix(b":"))
            else {
                continue;
            };
            match cipher.open(rest, authenticated) {
                Ok(plain) => return Ok((plain, i != 0)),
                Err(e) => errs.push(format!(
                    "failed to decrypt with {} key {name:?}: {e}",
                    self.provider
                )),
            }
        }
        if !errs.is_empty() {
            return Err(config::aggregate(&errs));
        }
        let mut msg = format!(
            "no matching key was found for the provided {} transformer",
            self.family
        );
        if let Some(name) = stored_key_name(data) {
            msg.push_str(&format!(" (the value was written with key {name:?})"));
        }
        Err(msg)
    }
}

/// The key name a keyed value starts with, when it looks like one.
fn stored_key_name(data: &[u8]) -> Option<&str> {
    let end = data.iter().take(128).position(|&b| b == b':')?;
    let name = std::str::from_utf8(&data[..end]).ok()?;
    (!name.is_empty() && name.chars().all(|c| c.is_ascii_graphic())).then_some(name)
}

enum Provider {
    Identity,
    Keyed(Keyed),
    Kms {
        /// `k8s:enc:kms:v2:<name>:`
        prefix: String,
        kms: Arc<kms::KmsV2>,
    },
}

impl Provider {
    fn describe(&self) -> String {
        match self {
            Provider::Identity => "identity".into(),
            Provider::Keyed(k) => format!("{} (key {})", k.provider, k.keys[0].0),
            Provider::Kms { kms, .. } => format!("kms {}", kms.name()),
        }
    }
}

/// The providers of one resource, in the config's order.
pub struct Transformer {
    providers: Vec<Arc<Provider>>,
}

/// A value as read: the plaintext, and whether it should be rewritten (read with
/// anything but the writing provider and key).
#[derive(Debug)]
pub struct Opened {
    pub data: Bytes,
    pub stale: bool,
}

impl Transformer {
    /// The value to store for `plaintext` at the etcd key `key`.
    pub async fn seal(&self, key: &str, plaintext: Vec<u8>) -> Result<Vec<u8>, String> {
        match &*self.providers[0] {
            Provider::Identity => Ok(plaintext),
            Provider::Keyed(k) => k.seal(&plaintext, key.as_bytes()),
            Provider::Kms { prefix, kms } => {
                let sealed = kms.seal(&plaintext, key.as_bytes()).await?;
                let mut out = Vec::with_capacity(prefix.len() + sealed.len());
                out.extend_from_slice(prefix.as_bytes());
                out.extend(sealed);
                Ok(out)
            }
        }
    }

    /// The plaintext of the value stored at `key`: the first provider whose prefix
    /// matches and that decrypts it wins (Kubernetes' prefix transformers).
    pub async fn open(&self, key: &str, data: Bytes) -> Result<Opened, String> {
        let mut errs = Vec::new();
        for (i, provider) in self.providers.iter().enumerate() {
            let opened = match &**provider {
                Provider::Identity => {
                    // Encrypted data is not identity's to read: on to the next provider.
                    if identity::open(&data).is_err() {
                        continue;
                    }
                    return Ok(Opened {
                        data,
                        stale: i != 0,
                    });
                }
                Provider::Keyed(k) => match data.strip_prefix(k.prefix.as_bytes()) {
                    Some(rest) => k.open(rest, key.as_bytes()),
                    None => continue,
                },
                Provider::Kms { prefix, kms } => match data.strip_prefix(prefix.as_bytes()) {
                    Some(rest) => kms.open(rest, key.as_bytes()).await,
                    None => continue,
                },
            };
            match opened {
                Ok((plain, stale)) => {
                    return Ok(Opened {
                        data: plain.into(),
                        stale: stale || i != 0,
                    })
                }
                Err(e) => errs.push(e),
            }
        }
        if errs.is_empty() {
            Err("no matching prefix found".into())
        } else {
            Err(config::aggregate(&errs))
        }
    }
}

/// The transformers of every served resource the config names, by etcd key prefix.
pub struct Encryption {
    /// `/registry/secrets` -> its transformer.
    by_prefix: HashMap<String, Arc<Transformer>>,
    /// What each resource writes with, for the startup log.
    summary: Vec<(String, String)>,
}

impl Encryption {
    /// Read, validate and build the config at `path` (connecting to KMS plugins).
    pub async fn load(path: &Path) -> anyhow::Result<Encryption> {
        let data = std::fs::read(path).map_err(|e| {
            anyhow::anyhow!(
                "error reading encryption provider configuration file {:?}: {e}",
                path.display()
            )
        })?;
        let config = config::parse(&data).map_err(|e| {
            anyhow::anyhow!(
                "error while parsing encryption provider configuration file {:?}: {e}",
                path.display()
            )
        })?;
        Encryption::build(&config, keelson_resources::kinds::ALL)
            .await
            .map_err(|e| anyhow::anyhow!("error while building transformers: {e}"))
    }

    /// Transformers for `resources` (the served catalog) from a parsed config.
    pub async fn build(
        config: &EncryptionConfiguration,
        resources: &[&keelson_resources::ResourceType],
    ) -> Result<Encryption, String> {
        // Providers per config entry, shared by the entry's resources.
        let mut by_resource: HashMap<GroupResource, Vec<Arc<Provider>>> = HashMap::new();
        for entry in &config.resources {
            let mut providers = Vec::new();
            for p in &entry.providers {
                providers.push(Arc::new(build_provider(p).await?));
            }
            for r in &entry.resources {
                by_resource
                    .entry(GroupResource::parse(r))
                    .or_default()
                    .extend(providers.iter().cloned());
            }
        }
        let by_resource: HashMap<GroupResource, Arc<Transformer>> = by_resource
            .into_iter()
            .map(|(gr, providers)| (gr, Arc::new(Transformer { providers })))
            .collect();
        let mut by_prefix = HashMap::new();
        let mut summary = Vec::new();
        for rt in resources {
            // A kind kept under another's keys (events.k8s.io Events) is that resource.
            let stored = rt.strategy.shared_storage().map_or(*rt, |s| s.resource);
            let gr = GroupResource::new(stored.group, stored.plural);
            let found = by_resource
                .get(&gr)
                .or_else(|| by_resource.get(&GroupResource::new(&gr.group, "*")))
                .or_else(|| by_resource.get(&GroupResource::any()));
            if let Some(t) = found {
                let prefix = stored.key_prefix();
                if !by_prefix.contains_key(&prefix) {
                    summary.push((gr.to_string(), t.providers[0].describe()));
                }
                by_prefix.insert(prefix, t.clone());
            }
        }
        summary.sort();
        Ok(Encryption { by_prefix, summary })
    }

    /// Each encrypted resource and what writes it, e.g. `("secrets", "aescbc (key key1)")`.
    pub fn summary(&self) -> &[(String, String)] {
        &self.summary
    }

    /// The transformer of the resource stored at `key`; None for resources the config
    /// does not name and for keys that are not objects (allocations, master leases).
    pub fn transformer(&self, key: &str) -> Option<&Transformer> {
        let rest = key.strip_prefix("/registry/")?;
        // `/registry/<group>/<resource>/...` first, then `/registry/<resource>/...`.
        let first = rest.find('/')?;
        let second = rest[first + 1..].find('/').map(|i| first + 1 + i);
        let cut = |n: usize| &key[.."/registry/".len() + n];
        if let Some(second) = second {
            if let Some(t) = self.by_prefix.get(cut(second)) {
                return Some(t);
            }
        }
        self.by_prefix.get(cut(first)).map(|t| &**t)
    }

    /// What to store at `key` for `plaintext`.
    pub async fn seal(&self, key: &str, plaintext: Vec<u8>) -> Result<Vec<u8>, String> {
        match self.transformer(key) {
            Some(t) => t.seal(key, plaintext).await,
            None => Ok(plaintext),
        }
    }

    /// The plaintext of the value stored at `key`.
    pub async fn open(&self, key: &str, data: Bytes) -> Result<Opened, String> {
        match self.transformer(key) {
            Some(t) => t.open(key, data).await,
            // Not configured: identity, which still refuses encrypted values.
            None => {
                identity::open(&data)?;
                Ok(Opened { data, stale: false })
            }
        }
    }
}

async fn build_provider(p: &config::ProviderConfiguration) -> Result<Provider, String> {
    if let Some(c) = &p.aescbc {
        return Ok(Provider::Keyed(Keyed::build(
            c,
            "k8s:enc:aescbc:v1:",
            "aescbc",
            "AES",
            |k| Ok(Box::new(aescbc::AesCbc::new(k)?)),
        )?));
    }
    if let Some(c) = &p.aesgcm {
        return Ok(Provider::Keyed(Keyed::build(
            c,
            "k8s:enc:aesgcm:v1:",
            "aesgcm",
            "AES",
            |k| Ok(Box::new(aesgcm::Gcm::new(k)?)),
        )?));
    }
    if let Some(c) = &p.secretbox {
        return Ok(Provider::Keyed(Keyed::build(
            c,
            "k8s:enc:secretbox:v1:",
            "secretbox",
            "Secretbox",
            |k| Ok(Box::new(secretbox::Secretbox::new(k)?)),
        )?));
    }
    if let Some(c) = &p.kms {
        return match c.api_version() {
            "v2" => {
                let kms = kms::KmsV2::start(c).await.map_err(|e| {
                    format!("could not configure KMSv2-Plugin's probe {:?}, error: {e}", c.name)
                })?;
                Ok(Provider::Kms {
                    prefix: kms.prefix(),
                    kms,
                })
            }
            "v1" => Err(format!(
                "KMS provider {:?}: KMSv1 is deprecated and will only receive security updates going forward. Use KMSv2 instead (apiVersion: v2); Keelson does not implement KMSv1",
                c.name
            )),
            other => Err(format!(
                "could not configure KMS plugin {:?}, unsupported KMS API version {other:?}",
                c.name
            )),
        };
    }
    Ok(Provider::Identity)
}

/// Bytes from a hex string, for the providers' test vectors.
#[cfg(test)]
pub(crate) fn test_hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY1: &str = "c2VjcmV0IGlzIHNlY3VyZSwgaXMgaXQgc2VjdXJlPz8="; // 32 bytes
    const KEY2: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="; // 32 bytes

    async fn build(yaml: &str) -> Encryption {
        let config = config::parse(
            format!(
                "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\n{yaml}"
            )
            .as_bytes(),
        )
        .unwrap();
        Encryption::build(&config, keelson_resources::kinds::ALL)
            .await
            .unwrap()
    }

    fn providers(entries: &[&str]) -> String {
        format!("    providers:\n{}", entries.join(""))
    }

    fn keyed(kind: &str, keys: &[(&str, &str)]) -> String {
        let keys: Vec<String> = keys
            .iter()
            .map(|(n, s)| format!("{{name: {n}, secret: {s}}}"))
            .collect();
        format!("      - {kind}: {{keys: [{}]}}\n", keys.join(", "))
    }

    const IDENTITY: &str = "      - identity: {}\n";
    const SECRET: &str = "/registry/secrets/default/db";
    const PLAIN: &[u8] = br#"{"kind":"Secret"}"#;

    #[tokio::test]
    async fn each_provider_writes_its_prefix_and_reads_back() {
        for kind in ["aescbc", "aesgcm", "secretbox"] {
            let e = build(&format!(
                "resources:\n  - resources: [secrets]\n{}",
                providers(&[&keyed(kind, &[("key1", KEY1)])])
            ))
            .await;
            let sealed = e.seal(SECRET, PLAIN.to_vec()).await.unwrap();
            let prefix = format!("k8s:enc:{kind}:v1:key1:");
            assert!(sealed.starts_with(prefix.as_bytes()), "{kind}");
            assert!(
                !sealed.windows(6).any(|w| w == b"Secret"),
                "{kind}: no plaintext"
            );
            let opened = e.open(SECRET, sealed.into()).await.unwrap();
            assert_eq!((&opened.data[..], opened.stale), (PLAIN, false), "{kind}");
            // A plaintext value without identity configured is refused.
            let err = e.open(SECRET, Bytes::from_static(PLAIN)).await.unwrap_err();
            assert_eq!(err, "no matching prefix found");
        }
    }

    #[tokio::test]
    async fn aesgcm_binds_the_etcd_key() {
        let e = build(&format!(
            "resources:\n  - resources: [secrets]\n{}",
            providers(&[&keyed("aesgcm", &[("key1", KEY1)])])
        ))
        .await;
        let sealed = e.seal(SECRET, PLAIN.to_vec()).await.unwrap();
        let err = e
            .open("/registry/secrets/default/other", sealed.into())
            .await
            .unwrap_err();
        assert_eq!(
            err,
            "failed to decrypt with aesgcm key \"key1\": cipher: message authentication failed"
        );
    }

    #[tokio::test]
    async fn identity_reads_old_plaintext_and_marks_it_stale() {
        let e = build(&format!(
            "resources:\n  - resources: [secrets]\n{}",
            providers(&[&keyed("aescbc", &[("key1", KEY1)]), IDENTITY])
        ))
        .await;
        let opened = e.open(SECRET, Bytes::from_static(PLAIN)).await.unwrap();
        assert_eq!((&opened.data[..], opened.stale), (PLAIN, true));
        // Identity first (decrypting a cluster): new writes are plaintext, old
        // encrypted values still read through the provider after it.
        let sealed = e.seal(SECRET, PLAIN.to_vec()).await.unwrap();
        let e2 = build(&format!(
            "resources:\n  - resources: [secrets]\n{}",
            providers(&[IDENTITY, &keyed("aescbc", &[("key1", KEY1)])])
        ))
        .await;
        assert_eq!(e2.seal(SECRET, PLAIN.to_vec()).await.unwrap(), PLAIN);
        let opened = e2.open(SECRET, sealed.into()).await.unwrap();
        assert_eq!((&opened.data[..], opened.stale), (PLAIN, true));
    }

    #[tokio::test]
    async fn rotation_first_key_writes_every_key_reads() {
        let old = build(&format!(
            "resources:\n  - resources: [secrets]\n{}",
            providers(&[&keyed("aescbc", &[("key1", KEY1)])])
        ))
        .await;
        let by_key1 = old.seal(SECRET, PLAIN.to_vec()).await.unwrap();
        let new = build(&format!(
            "resources:\n  - resources: [secrets]\n{}",
            providers(&[&keyed("aescbc", &[("key2", KEY2), ("key1", KEY1)])])
        ))
        .await;
        let opened = new.open(SECRET, by_key1.clone().into()).await.unwrap();
        assert_eq!((&opened.data[..], opened.stale), (PLAIN, true));
        let by_key2 = new.seal(SECRET, PLAIN.to_vec()).await.unwrap();
        assert!(by_key2.starts_with(b"k8s:enc:aescbc:v1:key2:"));
        assert!(
            !new.open(SECRET, by_key2.clone().into())
                .await
                .unwrap()
                .stale
        );
        // Once key1 is dropped, its values are a clear error.
        let err = old.open(SECRET, by_key2.into()).await.unwrap_err();
        assert_eq!(
            err,
            "no matching key was found for the provided AES transformer (the value was written with key \"key2\")"
        );
        // A key of the same name but other bytes fails to decrypt, never garbage.
        let impostor = build(&format!(
            "resources:\n  - resources: [secrets]\n{}",
            providers(&[&keyed("aescbc", &[("key1", KEY2)])])
        ))
        .await;
        match impostor.open(SECRET, by_key1.into()).await {
            Err(e) => assert!(
                e.starts_with("failed to decrypt with aescbc key \"key1\""),
                "{e}"
            ),
            // CBC cannot tell a wrong key from noise when the padding happens to be
            // valid (1 in 256); the bytes are then not the object (JSON decode fails).
            Ok(o) => assert_ne!(&o.data[..], PLAIN),
        }
    }

    #[tokio::test]
    async fn unconfigured_providers_and_resources() {
        let e = build(&format!(
            "resources:\n  - resources: [secrets]\n{}",
            providers(&[&keyed("secretbox", &[("key1", KEY1)]), IDENTITY])
        ))
        .await;
        let cbc = build(&format!(
            "resources:\n  - resources: [secrets]\n{}",
            providers(&[&keyed("aescbc", &[("key1", KEY1)])])
        ))
        .await;
        let sealed = cbc.seal(SECRET, PLAIN.to_vec()).await.unwrap();
        assert_eq!(
            e.open(SECRET, sealed.clone().into()).await.unwrap_err(),
            "no matching prefix found"
        );
        // ConfigMaps are not named: stored as they are, encrypted ones refused.
        let cm = "/registry/configmaps/default/c";
        assert_eq!(e.seal(cm, PLAIN.to_vec()).await.unwrap(), PLAIN);
        assert_eq!(
            e.open(cm, sealed.into()).await.unwrap_err(),
            "identity transformer tried to read encrypted data"
        );
    }

    #[tokio::test]
    async fn resources_resolve_from_etcd_keys_with_wildcards() {
        let e = build(&format!(
            "resources:\n  - resources: [secrets, deployments.apps]\n{}\n  - resources: ['*.batch']\n{}\n  - resources: ['*.']\n{}",
            providers(&[&keyed("aescbc", &[("a", KEY1)])]),
            providers(&[&keyed("aesgcm", &[("b", KEY1)])]),
            providers(&[&keyed("secretbox", &[("c", KEY1)])]),
        ))
        .await;
        let writes = |key: &'static str| {
            let e = &e;
            async move {
                let v = e.seal(key, PLAIN.to_vec()).await.unwrap();
                String::from_utf8_lossy(&v[..v.len().min(24)]).into_owned()
            }
        };
        assert!(writes("/registry/secrets/ns/s")
            .await
            .starts_with("k8s:enc:aescbc:v1:a:"));
        assert!(writes("/registry/apps/deployments/ns/d")
            .await
            .starts_with("k8s:enc:aescbc:v1:a:"));
        assert!(writes("/registry/batch/jobs/ns/j")
            .await
            .starts_with("k8s:enc:aesgcm:v1:b:"));
        assert!(writes("/registry/batch/cronjobs/ns/j")
            .await
            .starts_with("k8s:enc:aesgcm:v1:b:"));
        assert!(writes("/registry/configmaps/ns/c")
            .await
            .starts_with("k8s:enc:secretbox:v1:c:"));
        // A namespace named like a group is still a core key.
        assert!(writes("/registry/pods/apps/p")
            .await
            .starts_with("k8s:enc:secretbox:v1:c:"));
        // events.k8s.io Events are stored as core Events.
        assert!(writes("/registry/events/ns/e")
            .await
            .starts_with("k8s:enc:secretbox:v1:c:"));
        assert!(writes("/registry/apps/statefulsets/ns/s")
            .await
            .starts_with("{"));
        // Not objects: never encrypted.
        assert!(writes("/registry/ranges/serviceips/10.96.0.1")
            .await
            .starts_with("{"));
        assert!(writes("/registry/masterleases/10.0.0.1")
            .await
            .starts_with("{"));

        let all = build(&format!(
            "resources:\n  - resources: ['*.*']\n{}",
            providers(&[&keyed("aescbc", &[("a", KEY1)])])
        ))
        .await;
        assert!(all
            .transformer("/registry/apps/statefulsets/ns/s")
            .is_some());
        assert!(
            all.transformer("/registry/leases/x").is_none(),
            "not a served resource"
        );
        assert!(all
            .transformer("/registry/coordination.k8s.io/leases/ns/l")
            .is_some());
    }

    #[tokio::test]
    async fn kms_v1_is_refused_with_a_clear_message() {
        let config = config::parse(b"apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers: [{kms: {name: old, endpoint: 'unix:///tmp/x.sock', cachesize: 10}}]\n").unwrap();
        let err = Encryption::build(&config, keelson_resources::kinds::ALL)
            .await
            .err()
            .unwrap();
        assert!(err.contains("KMSv1 is deprecated"), "{err}");
    }

    #[tokio::test]
    async fn kms_v2_values_through_the_test_plugin() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("kms.sock");
        let plugin = kms_plugin::TestKms::new("key-1");
        plugin.clone().serve(&socket).await.unwrap();
        let e = build(&format!(
            "resources:\n  - resources: [secrets]\n    providers:\n      - kms: {{apiVersion: v2, name: testkms, endpoint: 'unix://{}'}}\n      - identity: {{}}\n",
            socket.display()
        ))
        .await;
        let sealed = e.seal(SECRET, PLAIN.to_vec()).await.unwrap();
        assert!(sealed.starts_with(b"k8s:enc:kms:v2:testkms:"));
        let opened = e.open(SECRET, sealed.into()).await.unwrap();
        assert_eq!((&opened.data[..], opened.stale), (PLAIN, false));
        assert_eq!(
            e.summary(),
            [("secrets".to_string(), "kms testkms".to_string())]
        );
    }
}
