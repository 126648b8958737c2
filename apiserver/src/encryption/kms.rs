//! `kms` (apiVersion v2): envelope encryption through a KMS plugin on a unix socket.
//!
//! As kube-apiserver does since 1.29, the apiserver makes a 32-byte seed when it starts
//! (and again whenever the plugin's key id changes), has the plugin encrypt it once,
//! and derives a fresh AES-256-GCM key for every value: `HKDF-SHA256-Expand(seed,
//! info)` with 32 random `info` bytes. The stored value is the prefix
//! `k8s:enc:kms:v2:<name>:` and a protobuf `EncryptedObject` holding `info || nonce ||
//! GCM(plaintext, etcd key)`, the key id, the encrypted seed and the plugin's
//! annotations. Reading asks the plugin to decrypt a seed once and caches it. Values
//! whose source is a plain DEK (`AES_GCM_KEY`, kube-apiserver before 1.29) are read too.
//!
//! The plugin's `Status` is polled every minute (every 10 s while it fails); a key id
//! change rotates the seed, and writes stop 3 minutes after the last good answer so
//! that a storage migration after a KEK rotation cannot silently keep the old key.

use super::aesgcm::{Gcm, NONCE};
use super::config::KmsConfiguration;
use super::Cipher;
use hkdf::Hkdf;
use prost::Message;
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use tonic::transport::{Channel, Endpoint, Uri};

/// The generated messages and client/server of `proto/kms_v2.proto`.
pub mod proto {
    tonic::include_proto!("v2");
}

use proto::key_management_service_client::KeyManagementServiceClient;
use proto::{EncryptedDekSourceType, EncryptedObject};

pub const PREFIX: &str = "k8s:enc:kms:v2:";
const SEED_SIZE: usize = 32;
const INFO_SIZE: usize = 32;
const POLL_HEALTHY: Duration = Duration::from_secs(60);
const POLL_FAILING: Duration = Duration::from_secs(10);
/// How long writes go on with the current seed after the last good Status.
const WRITE_TTL: Duration = Duration::from_secs(180);
const MAX_KEY_ID: usize = 1024;
const MAX_DEK_SOURCE: usize = 1024;
const MAX_ANNOTATIONS: usize = 32 * 1024;
/// Decrypted seeds kept; one per key id per apiserver start is the usual count.
const MAX_CACHED_DEKS: usize = 4096;

/// One configured KMS v2 provider.
pub struct KmsV2 {
    name: String,
    client: KeyManagementServiceClient<Channel>,
    timeout: Duration,
    state: Mutex<WriteState>,
    deks: Mutex<HashMap<[u8; 32], Arc<Dek>>>,
}

#[derive(Default)]
struct WriteState {
    current: Option<Arc<WriteSeed>>,
    /// Until when the current seed may encrypt.
    expires: Option<Instant>,
    last_error: Option<String>,
}

/// The seed new values are encrypted under, and what is stored beside them.
struct WriteSeed {
    seed: Vec<u8>,
    key_id: String,
    encrypted_seed: Vec<u8>,
    annotations: HashMap<String, Vec<u8>>,
}

/// What a value's `encryptedDEKSource` decrypts to.
enum Dek {
    Seed(Vec<u8>),
    Key(Box<Gcm>),
}

impl KmsV2 {
    /// Connect (lazily: the plugin may start after the apiserver, as kube-apiserver
    /// allows), prime the seed with one Status probe, and keep polling.
    pub async fn start(config: &KmsConfiguration) -> Result<Arc<KmsV2>, String> {
        let path = config.socket_path()?;
        let timeout = config.timeout()?;
        // The URI is required by tonic but unused: the connector dials the socket.
        let channel = Endpoint::from_static("http://localhost")
            .connect_timeout(timeout)
            .connect_with_connector_lazy(tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move {
                    let stream = tokio::net::UnixStream::connect(&path).await?;
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
                }
            }));
        let kms = Arc::new(KmsV2 {
            name: config.name.clone(),
            client: KeyManagementServiceClient::new(channel),
            timeout,
            state: Mutex::default(),
            deks: Mutex::default(),
        });
        let first = kms.probe().await;
        if let Err(e) = &first {
            tracing::warn!(provider = %kms.name, error = %e, "KMS v2 plugin not ready; writes of its resources fail until it is");
        }
        tokio::spawn(poll(Arc::downgrade(&kms), first.is_ok()));
        Ok(kms)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `k8s:enc:kms:v2:<name>:`
    pub fn prefix(&self) -> String {
        format!("{PREFIX}{}:", self.name)
    }

    /// Ask the plugin for its status; rotate the seed when its key id changed.
    pub async fn probe(&self) -> Result<(), String> {
        let result = self.probe_once().await;
        let mut state = self.state.lock().expect("kms state");
        state.last_error = result.as_ref().err().cloned();
        result
    }

    async fn probe_once(&self) -> Result<(), String> {
        let status = self
            .call(|mut c| async move { c.status(proto::StatusRequest {}).await })
            .await
            .map_err(|e| {
                format!(
                    "failed to perform status section of the healthz check for KMS Provider {}, error: {e}",
                    self.name
                )
            })?;
        let mut errs = Vec::new();
        if status.healthz != "ok" {
            errs.push(format!("got unexpected healthz status: {}", status.healthz));
        }
        if status.version != "v2" && status.version != "v2beta1" {
            errs.push(format!(
                "expected KMSv2 API version v2, got {}",
                status.version
            ));
        }
        match validate_key_id(&status.key_id) {
            Err(e) => errs.push(format!("got invalid KMSv2 KeyID: {e}")),
            Ok(()) => {
                if let Err(e) = self.rotate_if_changed(&status.key_id).await {
                    errs.push(e);
                }
            }
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "kmsv2 Provider {} is not healthy, error: {}",
                self.name,
                super::config::aggregate(&errs)
            ))
        }
    }

    /// Keep the seed while the key id is unchanged (and extend its write window);
    /// otherwise make a new one and have the plugin encrypt it.
    async fn rotate_if_changed(&self, key_id: &str) -> Result<(), String> {
        let expires = Instant::now() + WRITE_TTL;
        {
            let mut state = self.state.lock().expect("kms state");
            if state.current.as_ref().is_some_and(|c| c.key_id == key_id) {
                state.expires = Some(expires);
                return Ok(());
            }
        }
        let mut seed = vec![0u8; SEED_SIZE];
        rand::rng().fill_bytes(&mut seed);
        let plaintext = seed.clone();
        let resp = self
            .call(|mut c| {
                let plaintext = plaintext.clone();
                async move {
                    c.encrypt(proto::EncryptRequest {
                        plaintext,
                        uid: uuid::Uuid::new_v4().to_string(),
                    })
                    .await
                }
            })
            .await
            .map_err(|e| format!("failed to rotate DEK: failed to encrypt DEK, error: {e}"))?;
        if resp.key_id != key_id {
            return Err(format!(
                "failed to rotate DEK: Status reported key id {key_id:?} but Encrypt used {:?}",
                resp.key_id
            ));
        }
        let check = EncryptedObject {
            encrypted_data: vec![0],
            key_id: resp.key_id.clone(),
            encrypted_dek_source: resp.ciphertext.clone(),
            annotations: resp.annotations.clone(),
            encrypted_dek_source_type: EncryptedDekSourceType::HkdfSha256XnonceAesGcmSeed as i32,
        };
        validate(&check).map_err(|e| format!("failed to rotate DEK: {e}"))?;
        let write = Arc::new(WriteSeed {
            seed: seed.clone(),
            key_id: resp.key_id,
            encrypted_seed: resp.ciphertext,
            annotations: resp.annotations,
        });
        // Values this apiserver writes are read back without asking the plugin.
        self.remember(cache_key(&check), Arc::new(Dek::Seed(seed)));
        let mut state = self.state.lock().expect("kms state");
        let old = state.current.replace(write);
        state.expires = Some(expires);
        tracing::info!(
            provider = %self.name,
            key_id,
            rotated = old.is_some(),
            "KMS v2 data encryption seed ready"
        );
        Ok(())
    }

    /// One plugin call with the configured timeout.
    async fn call<T, F, Fut>(&self, f: F) -> Result<T, String>
    where
        F: FnOnce(KeyManagementServiceClient<Channel>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        match tokio::time::timeout(self.timeout, f(self.client.clone())).await {
            Ok(Ok(resp)) => Ok(resp.into_inner()),
            Ok(Err(status)) => Err(format!(
                "rpc error: code = {:?} desc = {}",
                status.code(),
                status.message()
            )),
            Err(_) => Err(format!(
                "rpc error: code = DeadlineExceeded desc = no answer within {:?}",
                self.timeout
            )),
        }
    }

    fn write_seed(&self) -> Result<Arc<WriteSeed>, String> {
        let state = self.state.lock().expect("kms state");
        let last = state
            .last_error
            .as_deref()
            .map(|e| format!(" (last error: {e})"))
            .unwrap_or_default();
        let Some(current) = &state.current else {
            return Err(format!(
                "KMS provider {} has no data encryption key yet: its plugin has not answered{last}",
                self.name
            ));
        };
        if state.expires.is_some_and(|t| Instant::now() > t) {
            return Err(format!(
                "the data encryption key of KMS provider {} expired: its plugin has not answered Status for {}s{last}",
                self.name,
                WRITE_TTL.as_secs()
            ));
        }
        Ok(current.clone())
    }

    fn remember(&self, key: [u8; 32], dek: Arc<Dek>) {
        let mut deks = self.deks.lock().expect("dek cache");
        if deks.len() >= MAX_CACHED_DEKS {
            deks.clear();
        }
        deks.insert(key, dek);
    }

    /// Encrypt `plaintext` (bound to the etcd key `authenticated`); the result goes
    /// after [`KmsV2::prefix`].
    pub async fn seal(&self, plaintext: &[u8], authenticated: &[u8]) -> Result<Vec<u8>, String> {
        let write = self.write_seed()?;
        let object = EncryptedObject {
            encrypted_data: seal_with_seed(&write.seed, plaintext, authenticated),
            key_id: write.key_id.clone(),
            encrypted_dek_source: write.encrypted_seed.clone(),
            annotations: write.annotations.clone(),
            encrypted_dek_source_type: EncryptedDekSourceType::HkdfSha256XnonceAesGcmSeed as i32,
        };
        Ok(object.encode_to_vec())
    }

    /// Decrypt what follows the prefix; the flag says the value is stale (another key
    /// id, or the pre-1.29 DEK form) and should be rewritten.
    pub async fn open(&self, data: &[u8], authenticated: &[u8]) -> Result<(Vec<u8>, bool), String> {
        let object = EncryptedObject::decode(data).map_err(|e| e.to_string())?;
        validate(&object)?;
        let key = cache_key(&object);
        let cached = self.deks.lock().expect("dek cache").get(&key).cloned();
        let dek = match cached {
            Some(dek) => dek,
            None => {
                let req = proto::DecryptRequest {
                    ciphertext: object.encrypted_dek_source.clone(),
                    uid: uuid::Uuid::new_v4().to_string(),
                    key_id: object.key_id.clone(),
                    annotations: object.annotations.clone(),
                };
                let plain = self
                    .call(|mut c| async move { c.decrypt(req).await })
                    .await
                    .map_err(|e| format!("failed to decrypt DEK, error: {e}"))?
                    .plaintext;
                let dek = match object.encrypted_dek_source_type() {
                    EncryptedDekSourceType::HkdfSha256XnonceAesGcmSeed => {
                        if plain.len() < SEED_SIZE {
                            return Err(format!(
                                "invalid seed length {} used for key generation",
                                plain.len()
                            ));
                        }
                        Dek::Seed(plain)
                    }
                    EncryptedDekSourceType::AesGcmKey => Dek::Key(Box::new(Gcm::new(&plain)?)),
                };
                let dek = Arc::new(dek);
                self.remember(key, dek.clone());
                dek
            }
        };
        let out = match &*dek {
            Dek::Seed(seed) => open_with_seed(seed, &object.encrypted_data, authenticated),
            Dek::Key(gcm) => gcm.open(&object.encrypted_data, authenticated),
        }
        .map_err(|e| format!("failed to decrypt with KMS provider {}: {e}", self.name))?;
        let current = self
            .state
            .lock()
            .expect("kms state")
            .current
            .as_ref()
            .map(|c| c.key_id.clone());
        let stale = current.as_deref() != Some(object.key_id.as_str())
            || object.encrypted_dek_source_type()
                != EncryptedDekSourceType::HkdfSha256XnonceAesGcmSeed;
        Ok((out, stale))
    }
}

async fn poll(kms: Weak<KmsV2>, mut healthy: bool) {
    loop {
        tokio::time::sleep(if healthy { POLL_HEALTHY } else { POLL_FAILING }).await;
        let Some(kms) = kms.upgrade() else { return };
        healthy = match kms.probe().await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(provider = %kms.name, error = %e, "KMS v2 plugin failed its status probe");
                false
            }
        };
    }
}

/// The AES-256-GCM key for one value: HKDF-SHA256 expand only, the seed as the
/// pseudorandom key (as Go's `hkdf.Expand`).
fn derive(seed: &[u8], info: &[u8]) -> Result<Gcm, String> {
    let hk = Hkdf::<Sha256>::from_prk(seed)
        .map_err(|_| format!("invalid seed length {} used for key generation", seed.len()))?;
    let mut key = [0u8; 32];
    hk.expand(info, &mut key)
        .map_err(|e| format!("failed to KDF expand seed with info: {e}"))?;
    Gcm::new(&key)
}

/// `info || nonce || GCM(plaintext)` under the key derived from `seed` and `info`.
pub fn seal_with_seed(seed: &[u8], plaintext: &[u8], authenticated: &[u8]) -> Vec<u8> {
    let mut info = [0u8; INFO_SIZE];
    rand::rng().fill_bytes(&mut info);
    let gcm = derive(seed, &info).expect("seeds are 32 bytes");
    let sealed = gcm
        .seal(plaintext, authenticated)
        .expect("AES-GCM encrypts any value");
    let mut out = Vec::with_capacity(INFO_SIZE + sealed.len());
    out.extend_from_slice(&info);
    out.extend(sealed);
    out
}

pub fn open_with_seed(seed: &[u8], data: &[u8], authenticated: &[u8]) -> Result<Vec<u8>, String> {
    if data.len() < INFO_SIZE + NONCE {
        return Err("the stored data was shorter than the required size".into());
    }
    let (info, rest) = data.split_at(INFO_SIZE);
    derive(seed, info)?.open(rest, authenticated)
}

fn validate_key_id(key_id: &str) -> Result<(), String> {
    if key_id.is_empty() {
        return Err("keyID is empty".into());
    }
    if key_id.len() > MAX_KEY_ID {
        return Err(format!(
            "keyID is {} bytes, which exceeds the max size of {MAX_KEY_ID}",
            key_id.len()
        ));
    }
    Ok(())
}

/// kube-apiserver's ValidateEncryptedObject.
fn validate(o: &EncryptedObject) -> Result<(), String> {
    if EncryptedDekSourceType::try_from(o.encrypted_dek_source_type).is_err() {
        return Err(format!(
            "unknown encryptedDEKSourceType: {}",
            o.encrypted_dek_source_type
        ));
    }
    if o.encrypted_data.is_empty() {
        return Err("encrypted data is empty".into());
    }
    if o.encrypted_dek_source.is_empty() {
        return Err(
            "failed to validate encrypted DEK source: encrypted DEK source is empty".into(),
        );
    }
    if o.encrypted_dek_source.len() > MAX_DEK_SOURCE {
        return Err(format!(
            "failed to validate encrypted DEK source: encrypted DEK source is {} bytes, which exceeds the max size of {MAX_DEK_SOURCE}",
            o.encrypted_dek_source.len()
        ));
    }
    validate_key_id(&o.key_id).map_err(|e| format!("failed to validate key id: {e}"))?;
    let size: usize = o.annotations.iter().map(|(k, v)| k.len() + v.len()).sum();
    if size > MAX_ANNOTATIONS {
        return Err(format!(
            "failed to validate annotations: annotations exceeded max size of {MAX_ANNOTATIONS}"
        ));
    }
    Ok(())
}

/// Identifies a decrypted DEK source: everything the plugin sees on Decrypt.
fn cache_key(o: &EncryptedObject) -> [u8; 32] {
    let mut h = Sha256::new();
    let mut field = |b: &[u8]| {
        h.update((b.len() as u64).to_be_bytes());
        h.update(b);
    };
    field(&o.encrypted_dek_source_type.to_be_bytes());
    field(&o.encrypted_dek_source);
    field(o.key_id.as_bytes());
    let mut annotations: Vec<_> = o.annotations.iter().collect();
    annotations.sort();
    for (k, v) in annotations {
        field(k.as_bytes());
        field(v);
    }
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encryption::kms_plugin::TestKms;
    use crate::encryption::test_hex as hex;

    /// Made with Python (`cryptography`'s HKDFExpand and AESGCM, the protobuf by hand):
    /// kube-apiserver's KMS v2 envelope around a known seed.
    #[test]
    fn opens_an_envelope_made_elsewhere() {
        let object =
            EncryptedObject::decode(&*hex(include_str!("testdata/kmsv2.hex").trim())).unwrap();
        validate(&object).unwrap();
        assert_eq!(object.key_id, "key-1");
        assert_eq!(object.encrypted_dek_source, b"sealed-seed");
        assert_eq!(
            object.encrypted_dek_source_type(),
            EncryptedDekSourceType::HkdfSha256XnonceAesGcmSeed
        );
        let seed: Vec<u8> = (0..32).collect();
        let plain = open_with_seed(
            &seed,
            &object.encrypted_data,
            b"/registry/secrets/default/db",
        )
        .unwrap();
        assert_eq!(
            plain,
            br#"{"kind":"Secret","apiVersion":"v1","data":{"password":"aHVudGVyMg=="}}"#
        );
        assert!(open_with_seed(&seed, &object.encrypted_data, b"/registry/secrets/x/db").is_err());
    }

    #[test]
    fn envelopes_are_validated() {
        let mut o = EncryptedObject {
            encrypted_data: vec![1],
            key_id: "k".into(),
            encrypted_dek_source: vec![2],
            annotations: HashMap::new(),
            encrypted_dek_source_type: 1,
        };
        validate(&o).unwrap();
        o.encrypted_dek_source_type = 7;
        assert_eq!(
            validate(&o).unwrap_err(),
            "unknown encryptedDEKSourceType: 7"
        );
        o.encrypted_dek_source_type = 0;
        o.key_id.clear();
        assert!(validate(&o).unwrap_err().contains("keyID is empty"));
    }

    async fn plugin() -> (tempfile::TempDir, Arc<TestKms>, KmsConfiguration) {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("kms.sock");
        let plugin = TestKms::new("key-1");
        plugin.clone().serve(&socket).await.unwrap();
        let config = KmsConfiguration {
            api_version: Some("v2".into()),
            name: "test".into(),
            endpoint: format!("unix://{}", socket.display()),
            timeout: Some("2s".into()),
            cache_size: None,
        };
        (dir, plugin, config)
    }

    #[tokio::test]
    async fn one_seed_per_key_id_and_the_plugin_decrypts_only_once() {
        let (_dir, plugin, config) = plugin().await;
        let kms = KmsV2::start(&config).await.unwrap();
        assert_eq!(
            plugin.encrypt_calls(),
            1,
            "the seed is encrypted once at start"
        );
        let a = kms.seal(b"one", b"/registry/secrets/ns/a").await.unwrap();
        let b = kms.seal(b"two", b"/registry/secrets/ns/b").await.unwrap();
        assert_eq!(plugin.encrypt_calls(), 1, "no plugin call per write");
        let (plain, stale) = kms.open(&a, b"/registry/secrets/ns/a").await.unwrap();
        assert_eq!((plain.as_slice(), stale), (&b"one"[..], false));
        assert_eq!(plugin.decrypt_calls(), 0, "its own seed is cached");
        assert!(
            kms.open(&b, b"/registry/secrets/ns/a").await.is_err(),
            "bound to the key"
        );

        // Another apiserver (or this one restarted) asks the plugin once for the seed.
        let other = KmsV2::start(&config).await.unwrap();
        for _ in 0..3 {
            let (plain, _) = other.open(&b, b"/registry/secrets/ns/b").await.unwrap();
            assert_eq!(plain, b"two");
        }
        assert_eq!(plugin.decrypt_calls(), 1);

        // The plugin's key id changes: the next probe rotates the seed, old values are
        // stale (to be rewritten) but still read.
        plugin.set_key_id("key-2");
        kms.probe().await.unwrap();
        assert_eq!(plugin.encrypt_calls(), 3);
        let (plain, stale) = kms.open(&a, b"/registry/secrets/ns/a").await.unwrap();
        assert_eq!((plain.as_slice(), stale), (&b"one"[..], true));
        let c = kms.seal(b"three", b"/registry/secrets/ns/c").await.unwrap();
        let c = EncryptedObject::decode(&*c).unwrap();
        assert_eq!(c.key_id, "key-2");
    }

    #[tokio::test]
    async fn an_unhealthy_plugin_stops_writes_not_reads() {
        let (_dir, plugin, config) = plugin().await;
        let kms = KmsV2::start(&config).await.unwrap();
        let a = kms.seal(b"one", b"/k").await.unwrap();
        plugin.set_healthz("disk on fire");
        let err = kms.probe().await.unwrap_err();
        assert!(
            err.contains("got unexpected healthz status: disk on fire"),
            "{err}"
        );
        // Still within the write window, and reads never depend on Status.
        kms.seal(b"two", b"/k").await.unwrap();
        assert_eq!(kms.open(&a, b"/k").await.unwrap().0, b"one");
        kms.state.lock().unwrap().expires = Some(Instant::now() - Duration::from_secs(1));
        let err = kms.seal(b"two", b"/k").await.unwrap_err();
        assert!(
            err.contains("expired") && err.contains("disk on fire"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_missing_plugin_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let config = KmsConfiguration {
            api_version: Some("v2".into()),
            name: "gone".into(),
            endpoint: format!("unix://{}", dir.path().join("none.sock").display()),
            timeout: Some("1s".into()),
            cache_size: None,
        };
        let kms = KmsV2::start(&config).await.unwrap();
        let err = kms.seal(b"x", b"/k").await.unwrap_err();
        assert!(
            err.contains("KMS provider gone has no data encryption key yet"),
            "{err}"
        );
    }
}
