//! The etcd storage layer: the only code that talks to etcd.
//!
//! Objects are stored as JSON under `/registry/...` keys, without their
//! `resourceVersion`: an object's resourceVersion is its key's etcd `mod_revision`, set
//! by the registry when it reads. Every write is a transaction conditioned on the
//! revision the writer read (or on the key not existing, for create), so concurrent
//! writers through any number of apiservers never lose an update.
//!
//! With `--encryption-provider-config`, values are encrypted here on the way in and
//! decrypted on the way out ([`crate::encryption`]), so everything above this module
//! (the registry, the watch cache) sees plaintext only.

use bytes::Bytes;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, PutOptions, Txn, TxnOp, TxnOpResponse,
    WatchOptions,
};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::encryption::Encryption;
use crate::metrics::Metrics;

/// Keys fetched per etcd range request.
const READ_CHUNK: i64 = 500;

/// One stored key.
#[derive(Debug, Clone)]
pub struct Kv {
    pub key: String,
    pub value: Bytes,
    pub mod_revision: i64,
    /// Read with a provider or key other than the one that writes now (encryption at
    /// rest): a write should store it again even if the object did not change.
    pub stale: bool,
}

/// One page of a range read.
#[derive(Debug)]
pub struct Page {
    pub kvs: Vec<Kv>,
    /// The store revision the page was read at.
    pub revision: i64,
    /// Keys left in the range after this page.
    pub remaining: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("key not found")]
    NotFound,
    #[error("key already exists")]
    AlreadyExists,
    /// The key's revision is not the one the write was conditioned on. Carries the
    /// current value (None when the key is gone), so callers can retry without another
    /// read.
    #[error("revision conflict")]
    Conflict(Option<Kv>),
    /// The requested revision was compacted away.
    #[error("revision {requested} is compacted (oldest available {compacted})")]
    Compacted { requested: i64, compacted: i64 },
    /// [`Storage::commit`]: these claim keys already exist.
    #[error("already claimed: {0:?}")]
    ClaimTaken(Vec<String>),
    /// [`Storage::commit`]: the lease it attached was gone (revoked behind the
    /// apiserver's back); the next [`Storage::lease_for`] grants a new one.
    #[error("lease not found")]
    LeaseGone,
    #[error("etcd: {0}")]
    Unavailable(String),
    /// A value could not be encrypted or decrypted (Kubernetes' wording).
    #[error("unable to transform key {key:?}: {message}")]
    Transform { key: String, message: String },
}

impl From<etcd_client::Error> for StorageError {
    fn from(e: etcd_client::Error) -> Self {
        if let etcd_client::Error::GRpcStatus(s) = &e {
            if s.message().contains("required revision has been compacted") {
                return StorageError::Compacted {
                    requested: 0,
                    compacted: 0,
                };
            }
        }
        StorageError::Unavailable(e.to_string())
    }
}

/// An atomic write for [`Storage::commit`].
#[derive(Debug, Default)]
pub struct Commit {
    pub key: String,
    /// The new value; `None` deletes the key.
    pub value: Option<Vec<u8>>,
    /// `None`: the key must not exist. `Some(rev)`: its mod_revision must be `rev`.
    pub expected: Option<i64>,
    pub claims: Vec<String>,
    pub releases: Vec<String>,
    /// The etcd lease the value is attached to (from [`Storage::lease_for`]): the key
    /// is deleted when it expires.
    pub lease: Option<i64>,
}

pub type Result<T> = std::result::Result<T, StorageError>;

/// A cloneable handle on etcd (etcd-client multiplexes over one channel per endpoint).
#[derive(Clone)]
pub struct Storage {
    /// Gets, transactions, leases and the watch: small answers that writes wait for.
    client: Client,
    /// Range reads (lists) on a connection of their own. HTTP/2 flow control is per
    /// connection: list answers not yet read fill its window, and a get or a commit
    /// behind them on the same connection waited seconds (a flood of pod lists held
    /// Lease renewals for ~10 s in `keelson-bench fairness`).
    bulk: Arc<etcd_client::KvClient>,
    metrics: Metrics,
    leases: Arc<tokio::sync::Mutex<Option<SharedLease>>>,
    encryption: Option<Arc<Encryption>>,
}

/// An etcd lease that writes with a time to live share for a while, as kube-apiserver's
/// lease manager does: one lease per object would cost a grant per write and leave
/// etcd with thousands of leases to expire.
#[derive(Debug, Clone, Copy)]
struct SharedLease {
    id: i64,
    /// The time to live it was asked for (a different one gets its own lease).
    ttl: Duration,
    /// When it stops being handed out: keys attached to it live between `ttl` and
    /// `ttl` plus the reuse window.
    reuse_until: Instant,
}

/// How long one lease is reused: 5% of the time to live, at most a minute
/// (kube-apiserver's `--lease-reuse-duration-seconds` default).
fn lease_reuse_window(ttl: Duration) -> Duration {
    (ttl / 20).min(Duration::from_secs(60))
}

/// The key just after every key that starts with `prefix`, for range ends.
pub fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

fn to_kv(kv: &etcd_client::KeyValue) -> Kv {
    Kv {
        key: String::from_utf8_lossy(kv.key()).into_owned(),
        value: Bytes::copy_from_slice(kv.value()),
        mod_revision: kv.mod_revision(),
        stale: false,
    }
}

impl Storage {
    pub async fn connect(endpoints: &[String], metrics: Metrics) -> anyhow::Result<Self> {
        let endpoints: Vec<String> = endpoints
            .iter()
            .map(|e| e.trim_start_matches("http://").to_string())
            .collect();
        let opts = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_timeout(Duration::from_secs(30))
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5));
        let client = Client::connect(&endpoints, Some(opts.clone())).await?;
        let bulk = Arc::new(Client::connect(&endpoints, Some(opts)).await?.kv_client());
        Ok(Storage {
            client,
            bulk,
            metrics,
            leases: Arc::default(),
            encryption: None,
        })
    }

    /// Encrypt values at rest as `encryption` says (`--encryption-provider-config`).
    pub fn with_encryption(mut self, encryption: Arc<Encryption>) -> Self {
        self.encryption = Some(encryption);
        self
    }

    /// The value to store at `key` for `value`.
    async fn seal(&self, key: &str, value: Vec<u8>) -> Result<Vec<u8>> {
        match &self.encryption {
            None => Ok(value),
            Some(e) => e
                .seal(key, value)
                .await
                .map_err(|message| StorageError::Transform {
                    key: key.to_string(),
                    message,
                }),
        }
    }

    /// The plaintext of the value stored at `key`, and whether it is stale.
    pub async fn open(&self, key: &str, value: Bytes) -> Result<(Bytes, bool)> {
        match &self.encryption {
            None => Ok((value, false)),
            Some(e) => e
                .open(key, value)
                .await
                .map(|o| (o.data, o.stale))
                .map_err(|message| StorageError::Transform {
                    key: key.to_string(),
                    message,
                }),
        }
    }

    /// A key-value as read from etcd, decrypted.
    async fn read(&self, kv: &etcd_client::KeyValue) -> Result<Kv> {
        let mut kv = to_kv(kv);
        if self.encryption.is_some() {
            (kv.value, kv.stale) = self.open(&kv.key, kv.value).await?;
        }
        Ok(kv)
    }

    /// The current value in a failed transaction's answer, decrypted.
    async fn current_of(&self, ops: Vec<TxnOpResponse>) -> Result<Option<Kv>> {
        let found = ops.into_iter().find_map(|op| match op {
            TxnOpResponse::Get(g) => g.kvs().first().cloned(),
            _ => None,
        });
        match found {
            Some(kv) => Ok(Some(self.read(&kv).await?)),
            None => Ok(None),
        }
    }

    fn observe(&self, op: &'static str, started: Instant) {
        self.metrics.etcd_request(op, started.elapsed());
    }

    pub async fn get(&self, key: &str) -> Result<Option<Kv>> {
        let started = Instant::now();
        let resp = self.client.kv_client().get(key, None).await?;
        self.observe("get", started);
        match resp.kvs().first() {
            Some(kv) => Ok(Some(self.read(kv).await?)),
            None => Ok(None),
        }
    }

    /// The current store revision.
    pub async fn revision(&self) -> Result<i64> {
        let started = Instant::now();
        let resp = self
            .client
            .kv_client()
            .get("/registry/", Some(GetOptions::new().with_count_only()))
            .await?;
        self.observe("revision", started);
        Ok(resp.header().map_or(0, |h| h.revision()))
    }

    /// How many keys start with `prefix` (etcd counts; no values travel).
    pub async fn count(&self, prefix: &str) -> Result<i64> {
        let started = Instant::now();
        let opts = GetOptions::new()
            .with_range(prefix_end(prefix))
            .with_count_only();
        let resp = (*self.bulk).clone().get(prefix, Some(opts)).await?;
        self.observe("count", started);
        Ok(resp.count())
    }

    /// Keys with `prefix`, starting at `start` (inclusive; "" for the beginning), at most
    /// `limit` (0 for all), read at `revision` (0 for the latest). Large reads are paged
    /// at one pinned revision, so the result is one consistent snapshot without any one
    /// etcd response growing past gRPC's message limit.
    pub async fn list(&self, prefix: &str, start: &str, limit: i64, revision: i64) -> Result<Page> {
        let mut out = Page {
            kvs: Vec::new(),
            revision,
            remaining: 0,
        };
        let mut from = start.to_string();
        loop {
            let want = if limit == 0 {
                READ_CHUNK
            } else {
                (limit - out.kvs.len() as i64).min(READ_CHUNK)
            };
            let page = self.list_once(prefix, &from, want, out.revision).await?;
            // etcd's header carries the current revision even for reads at an older one:
            // keep the revision of the first page for the whole snapshot.
            if out.revision == 0 {
                out.revision = page.revision;
            }
            out.remaining = page.remaining;
            let more = page.remaining > 0 && !page.kvs.is_empty();
            if let Some(last) = page.kvs.last() {
                from = format!("{}\u{0}", last.key);
            }
            out.kvs.extend(page.kvs);
            if !more || (limit > 0 && out.kvs.len() as i64 >= limit) {
                return Ok(out);
            }
        }
    }

    async fn list_once(
        &self,
        prefix: &str,
        start: &str,
        limit: i64,
        revision: i64,
    ) -> Result<Page> {
        let started = Instant::now();
        let from = if start.is_empty() { prefix } else { start };
        let mut opts = GetOptions::new().with_range(prefix_end(prefix));
        if limit > 0 {
            opts = opts.with_limit(limit);
        }
        if revision > 0 {
            opts = opts.with_revision(revision);
        }
        let resp =
            (*self.bulk).clone().get(from, Some(opts)).await.map_err(
                |e| match StorageError::from(e) {
                    StorageError::Compacted { .. } => StorageError::Compacted {
                        requested: revision,
                        compacted: 0,
                    },
                    other => other,
                },
            )?;
        self.observe("list", started);
        let mut kvs = Vec::with_capacity(resp.kvs().len());
        for kv in resp.kvs() {
            kvs.push(self.read(kv).await?);
        }
        let remaining = (resp.count() - kvs.len() as i64).max(0);
        Ok(Page {
            kvs,
            revision: resp.header().map_or(0, |h| h.revision()),
            remaining,
        })
    }

    /// Put `value` at `key` when the key does not exist. Returns the new revision.
    pub async fn create(&self, key: &str, value: Vec<u8>) -> Result<i64> {
        let value = self.seal(key, value).await?;
        let started = Instant::now();
        let txn = Txn::new()
            .when([Compare::create_revision(key, CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, value, None)]);
        let resp = self.client.kv_client().txn(txn).await?;
        self.observe("create", started);
        if !resp.succeeded() {
            return Err(StorageError::AlreadyExists);
        }
        Ok(resp.header().map_or(0, |h| h.revision()))
    }

    /// Put `value` at `key` when its mod_revision is still `expected`.
    pub async fn update(&self, key: &str, value: Vec<u8>, expected: i64) -> Result<i64> {
        let value = self.seal(key, value).await?;
        let started = Instant::now();
        let txn = Txn::new()
            .when([Compare::mod_revision(key, CompareOp::Equal, expected)])
            .and_then([TxnOp::put(key, value, None)])
            .or_else([TxnOp::get(key, None)]);
        let resp = self.client.kv_client().txn(txn).await?;
        self.observe("update", started);
        if resp.succeeded() {
            return Ok(resp.header().map_or(0, |h| h.revision()));
        }
        Err(StorageError::Conflict(
            self.current_of(resp.op_responses()).await?,
        ))
    }

    /// Delete `key` when its mod_revision is still `expected`. Returns the revision of
    /// the deletion.
    pub async fn delete(&self, key: &str, expected: i64) -> Result<i64> {
        let started = Instant::now();
        let txn = Txn::new()
            .when([Compare::mod_revision(key, CompareOp::Equal, expected)])
            .and_then([TxnOp::delete(key, None)])
            .or_else([TxnOp::get(key, None)]);
        let resp = self.client.kv_client().txn(txn).await?;
        self.observe("delete", started);
        if resp.succeeded() {
            return Ok(resp.header().map_or(0, |h| h.revision()));
        }
        Err(StorageError::Conflict(
            self.current_of(resp.op_responses()).await?,
        ))
    }

    /// One atomic write: put or delete `key` (conditioned on `expected`: `None` means the
    /// key must not exist), claim the `claims` keys (each must not exist), and delete the
    /// `releases` keys. Used where an object owns allocation keys, such as a Service and
    /// its ClusterIP and NodePorts, so that both change together or not at all.
    pub async fn commit(&self, mut c: Commit) -> Result<i64> {
        if let Some(v) = c.value.take() {
            c.value = Some(self.seal(&c.key, v).await?);
        }
        let started = Instant::now();
        let mut when = Vec::new();
        match c.expected {
            None => when.push(Compare::create_revision(
                c.key.as_str(),
                CompareOp::Equal,
                0,
            )),
            Some(rev) => when.push(Compare::mod_revision(c.key.as_str(), CompareOp::Equal, rev)),
        }
        for k in &c.claims {
            when.push(Compare::create_revision(k.as_str(), CompareOp::Equal, 0));
        }
        let mut ops = Vec::new();
        match c.value {
            Some(v) => ops.push(TxnOp::put(
                c.key.as_str(),
                v,
                c.lease.map(|id| PutOptions::new().with_lease(id)),
            )),
            None => ops.push(TxnOp::delete(c.key.as_str(), None)),
        }
        for k in &c.claims {
            ops.push(TxnOp::put(k.as_str(), c.key.as_bytes().to_vec(), None));
        }
        for k in &c.releases {
            ops.push(TxnOp::delete(k.as_str(), None));
        }
        let mut otherwise = vec![TxnOp::get(c.key.as_str(), None)];
        for k in &c.claims {
            otherwise.push(TxnOp::get(
                k.as_str(),
                Some(GetOptions::new().with_count_only()),
            ));
        }
        let txn = Txn::new().when(when).and_then(ops).or_else(otherwise);
        let resp = match self.client.kv_client().txn(txn).await {
            Ok(resp) => resp,
            Err(e) => {
                if c.lease.is_some() && e.to_string().contains("lease not found") {
                    *self.leases.lock().await = None;
                    return Err(StorageError::LeaseGone);
                }
                return Err(e.into());
            }
        };
        self.observe("commit", started);
        if resp.succeeded() {
            return Ok(resp.header().map_or(0, |h| h.revision()));
        }
        let mut responses = resp.op_responses().into_iter();
        let current = match responses.next() {
            Some(TxnOpResponse::Get(g)) => match g.kvs().first() {
                Some(kv) => Some(self.read(kv).await?),
                None => None,
            },
            _ => None,
        };
        let key_ok = match c.expected {
            None => current.is_none(),
            Some(rev) => current.as_ref().is_some_and(|kv| kv.mod_revision == rev),
        };
        if !key_ok {
            return Err(match c.expected {
                None => StorageError::AlreadyExists,
                Some(_) => StorageError::Conflict(current),
            });
        }
        let taken: Vec<String> = c
            .claims
            .iter()
            .zip(responses)
            .filter(|(_, r)| matches!(r, TxnOpResponse::Get(g) if g.count() > 0))
            .map(|(k, _)| k.clone())
            .collect();
        Err(StorageError::ClaimTaken(taken))
    }

    /// Plain put, for bookkeeping keys that need no precondition.
    pub async fn put(&self, key: &str, value: Vec<u8>) -> Result<i64> {
        let value = self.seal(key, value).await?;
        let resp = self.client.kv_client().put(key, value, None).await?;
        Ok(resp.header().map_or(0, |h| h.revision()))
    }

    /// Compact history up to `revision`.
    pub async fn compact(&self, revision: i64) -> Result<()> {
        self.client.kv_client().compact(revision, None).await?;
        Ok(())
    }

    /// A raw etcd watch over every key with `prefix`, from `start_revision`, with the
    /// previous value of each key. Values come as stored: [`Storage::open`] decrypts.
    pub async fn watch(
        &self,
        prefix: &str,
        start_revision: i64,
    ) -> Result<etcd_client::WatchStream> {
        let opts = WatchOptions::new()
            .with_range(prefix_end(prefix))
            .with_start_revision(start_revision)
            .with_prev_key()
            .with_progress_notify();
        Ok(self.client.watch_client().watch(prefix, Some(opts)).await?)
    }

    /// Put `value` at `key` attached to a new lease of `ttl_seconds`, and keep the lease
    /// alive until the returned task is dropped or the process ends. The key disappears
    /// `ttl_seconds` after this apiserver stops renewing it.
    pub async fn put_leased(
        &self,
        key: &str,
        value: Vec<u8>,
        ttl_seconds: i64,
    ) -> Result<tokio::task::JoinHandle<()>> {
        let value = self.seal(key, value).await?;
        let mut leases = self.client.lease_client();
        let lease = leases.grant(ttl_seconds, None).await?;
        let id = lease.id();
        self.client
            .kv_client()
            .put(key, value, Some(PutOptions::new().with_lease(id)))
            .await?;
        let (mut keeper, mut responses) = leases.keep_alive(id).await?;
        Ok(tokio::spawn(async move {
            let period = Duration::from_secs((ttl_seconds / 3).max(1) as u64);
            loop {
                tokio::time::sleep(period).await;
                if keeper.keep_alive().await.is_err() {
                    break;
                }
                match responses.message().await {
                    Ok(Some(r)) if r.ttl() > 0 => {}
                    _ => break,
                }
            }
        }))
    }

    /// A lease for keys that should disappear `ttl` from now (up to the reuse window
    /// later): the current shared one while it is fresh, else a newly granted one.
    pub async fn lease_for(&self, ttl: Duration) -> Result<i64> {
        let mut shared = self.leases.lock().await;
        let now = Instant::now();
        if let Some(l) = shared.filter(|l| l.ttl == ttl && now < l.reuse_until) {
            return Ok(l.id);
        }
        let window = lease_reuse_window(ttl);
        let seconds = (ttl + window).as_secs().max(1) as i64;
        let started = Instant::now();
        let granted = self.client.lease_client().grant(seconds, None).await?;
        self.observe("grant", started);
        let lease = SharedLease {
            id: granted.id(),
            ttl,
            reuse_until: now + window,
        };
        *shared = Some(lease);
        Ok(lease.id)
    }

    /// Whether etcd answers (for `/readyz`).
    pub async fn ping(&self) -> bool {
        let mut kv = self.client.kv_client();
        let fut = kv.get(
            "/registry/health",
            Some(GetOptions::new().with_count_only()),
        );
        matches!(
            tokio::time::timeout(Duration::from_secs(2), fut).await,
            Ok(Ok(_))
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_last_byte() {
        assert_eq!(prefix_end("/registry/pods/"), b"/registry/pods0".to_vec());
        assert_eq!(prefix_end("a\u{7f}"), vec![b'a', 0x80]);
    }
}
