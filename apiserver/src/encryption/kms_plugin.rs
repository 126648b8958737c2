//! A minimal KMS v2 plugin for tests and trials: AES-256-GCM under one fixed key on a
//! unix socket, with a key id that can be changed (a KEK rotation) and a health text.
//! `cargo run -p keelson-apiserver --example kms_plugin -- /run/kms.sock` serves it.
//! Not for production: the key is a constant.

use super::aesgcm::Gcm;
use super::kms::proto;
use super::Cipher;
use proto::key_management_service_server::{KeyManagementService, KeyManagementServiceServer};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tonic::{Request, Response, Status};

/// The fixed key encryption key.
const KEK: &[u8; 32] = b"keelson-test-kms-plugin-key-0001";
const ANNOTATION: &str = "version.kms.keelson.dev";

pub struct TestKms {
    kek: Gcm,
    key_id: Mutex<String>,
    healthz: Mutex<String>,
    encrypts: AtomicUsize,
    decrypts: AtomicUsize,
}

impl TestKms {
    pub fn new(key_id: &str) -> Arc<TestKms> {
        Arc::new(TestKms {
            kek: Gcm::new(KEK).expect("32 bytes"),
            key_id: Mutex::new(key_id.into()),
            healthz: Mutex::new("ok".into()),
            encrypts: AtomicUsize::new(0),
            decrypts: AtomicUsize::new(0),
        })
    }

    /// The key id Status and Encrypt report from now on (the key stays the same).
    pub fn set_key_id(&self, key_id: &str) {
        *self.key_id.lock().expect("key id") = key_id.into();
    }

    /// What Status answers in `healthz` ("ok" is healthy).
    pub fn set_healthz(&self, healthz: &str) {
        *self.healthz.lock().expect("healthz") = healthz.into();
    }

    pub fn encrypt_calls(&self) -> usize {
        self.encrypts.load(Ordering::SeqCst)
    }

    pub fn decrypt_calls(&self) -> usize {
        self.decrypts.load(Ordering::SeqCst)
    }

    /// Serve on a new unix socket at `path` until the runtime ends.
    pub async fn serve(self: Arc<Self>, path: &Path) -> std::io::Result<()> {
        let _ = std::fs::remove_file(path);
        let listener = tokio::net::UnixListener::bind(path)?;
        let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
        tokio::spawn(async move {
            let served = tonic::transport::Server::builder()
                .add_service(KeyManagementServiceServer::from_arc(self))
                .serve_with_incoming(incoming)
                .await;
            if let Err(e) = served {
                tracing::warn!(error = %e, "test KMS plugin stopped");
            }
        });
        Ok(())
    }
}

#[tonic::async_trait]
impl KeyManagementService for TestKms {
    async fn status(
        &self,
        _: Request<proto::StatusRequest>,
    ) -> Result<Response<proto::StatusResponse>, Status> {
        Ok(Response::new(proto::StatusResponse {
            version: "v2".into(),
            healthz: self.healthz.lock().expect("healthz").clone(),
            key_id: self.key_id.lock().expect("key id").clone(),
        }))
    }

    async fn encrypt(
        &self,
        req: Request<proto::EncryptRequest>,
    ) -> Result<Response<proto::EncryptResponse>, Status> {
        self.encrypts.fetch_add(1, Ordering::SeqCst);
        let key_id = self.key_id.lock().expect("key id").clone();
        // The key id is bound in, so Decrypt notices a mismatched one.
        let ciphertext = self
            .kek
            .seal(&req.get_ref().plaintext, key_id.as_bytes())
            .map_err(Status::internal)?;
        Ok(Response::new(proto::EncryptResponse {
            ciphertext,
            key_id,
            annotations: [(ANNOTATION.to_string(), b"1".to_vec())].into(),
        }))
    }

    async fn decrypt(
        &self,
        req: Request<proto::DecryptRequest>,
    ) -> Result<Response<proto::DecryptResponse>, Status> {
        self.decrypts.fetch_add(1, Ordering::SeqCst);
        let req = req.get_ref();
        if req.annotations.get(ANNOTATION).map(Vec::as_slice) != Some(b"1") {
            return Err(Status::invalid_argument("missing or unknown annotation"));
        }
        let plaintext = self
            .kek
            .open(&req.ciphertext, req.key_id.as_bytes())
            .map_err(|e| Status::invalid_argument(format!("cannot decrypt: {e}")))?;
        Ok(Response::new(proto::DecryptResponse { plaintext }))
    }
}
