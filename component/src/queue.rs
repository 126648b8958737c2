//! A controller's work queue with Kubernetes' `workqueue_*` metrics, and the worker
//! loop: take a key, reconcile it, requeue with backoff on error.

use std::future::Future;
use std::hash::Hash;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use keelson_client::runtime::WorkQueue;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

type Labels = Vec<(String, String)>;

/// The `workqueue_*` metric families, registered once per process and labelled by
/// queue name.
#[derive(Clone)]
pub struct QueueMetrics {
    depth: Family<Labels, Gauge>,
    adds: Family<Labels, Counter>,
    retries: Family<Labels, Counter>,
    work_duration: Family<Labels, Histogram>,
}

impl QueueMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = QueueMetrics {
            depth: Family::default(),
            adds: Family::default(),
            retries: Family::default(),
            work_duration: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(1e-8, 10.0, 10))
            }),
        };
        registry.register(
            "workqueue_depth",
            "Current depth of workqueue",
            m.depth.clone(),
        );
        registry.register(
            "workqueue_adds",
            "Total number of adds handled by workqueue",
            m.adds.clone(),
        );
        registry.register(
            "workqueue_retries",
            "Total number of retries handled by workqueue",
            m.retries.clone(),
        );
        registry.register(
            "workqueue_work_duration_seconds",
            "How long in seconds processing an item from workqueue takes.",
            m.work_duration.clone(),
        );
        m
    }
}

/// What a reconcile asks for when it succeeds.
pub type Requeue = Option<Duration>;

/// A named, deduplicating, rate-limited queue. Cheap to clone; event handlers hold
/// clones and call [`Queue::add`].
pub struct Queue<T> {
    inner: WorkQueue<T>,
    labels: Arc<Labels>,
    metrics: QueueMetrics,
}

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Queue {
            inner: self.inner.clone(),
            labels: self.labels.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

impl<T: Eq + Hash + Clone + Send + Sync + std::fmt::Debug + 'static> Queue<T> {
    pub fn new(name: &str, metrics: &QueueMetrics) -> Self {
        Queue {
            inner: WorkQueue::new(),
            labels: Arc::new(vec![("name".to_string(), name.to_string())]),
            metrics: metrics.clone(),
        }
    }

    pub fn add(&self, item: T) {
        self.metrics.adds.get_or_create(&self.labels).inc();
        self.inner.add(item);
        self.update_depth();
    }

    pub fn add_after(&self, item: T, delay: Duration) {
        self.metrics.adds.get_or_create(&self.labels).inc();
        self.inner.add_after(item, delay);
    }

    fn update_depth(&self) {
        self.metrics
            .depth
            .get_or_create(&self.labels)
            .set(self.inner.len() as i64);
    }

    /// Run `workers` concurrent workers until the future is dropped. `reconcile`
    /// returns `Ok(Some(d))` to look at the key again after `d`, `Ok(None)` when
    /// done, and an error to retry with the queue's backoff (5 ms doubling to 1000 s,
    /// as client-go's default controller rate limiter).
    pub async fn run<F, Fut>(self, workers: usize, reconcile: F)
    where
        F: Fn(T) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = anyhow::Result<Requeue>> + Send,
    {
        struct ShutDown<T: Eq + Hash + Clone + Send + 'static>(WorkQueue<T>);
        impl<T: Eq + Hash + Clone + Send + 'static> Drop for ShutDown<T> {
            fn drop(&mut self) {
                self.0.shut_down();
            }
        }
        let _shut_down_on_drop = ShutDown(self.inner.clone());
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..workers.max(1) {
            let (queue, reconcile) = (self.clone(), reconcile.clone());
            tasks.spawn(async move { queue.work(reconcile).await });
        }
        while tasks.join_next().await.is_some() {}
    }

    async fn work<F, Fut>(self, reconcile: F)
    where
        F: Fn(T) -> Fut,
        Fut: Future<Output = anyhow::Result<Requeue>>,
    {
        while let Some(item) = self.inner.get().await {
            self.update_depth();
            let started = Instant::now();
            // A panic is this key's failure: the key is released and retried with
            // backoff like any error, and the worker lives on.
            let result = match AssertUnwindSafe(reconcile(item.clone()))
                .catch_unwind()
                .await
            {
                Ok(r) => r,
                Err(panic) => Err(anyhow::anyhow!(
                    "reconcile panicked: {}",
                    crate::loops::panic_text(panic.as_ref())
                )),
            };
            self.metrics
                .work_duration
                .get_or_create(&self.labels)
                .observe(started.elapsed().as_secs_f64());
            match result {
                Ok(requeue) => {
                    self.inner.forget(&item);
                    if let Some(after) = requeue {
                        self.inner.add_after(item.clone(), after);
                    }
                }
                Err(e) => {
                    self.metrics.retries.get_or_create(&self.labels).inc();
                    tracing::warn!(queue = %self.labels[0].1, key = ?item, error = %format!("{e:#}"), "reconcile failed; retrying");
                    self.inner.add_rate_limited(item.clone());
                }
            }
            self.inner.done(&item);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::Mutex;

    /// A reconcile that panics on a key's first attempt used to kill its worker and
    /// leave the key marked as processing forever; now the key is retried with backoff
    /// and the worker keeps serving the other keys.
    #[tokio::test]
    async fn a_panicking_reconcile_releases_the_key_and_retries_it() {
        let mut registry = Registry::default();
        let metrics = QueueMetrics::register(&mut registry);
        let queue: Queue<String> = Queue::new("panics", &metrics);
        let attempts: Arc<Mutex<HashMap<String, Vec<Instant>>>> = Arc::default();
        let seen = attempts.clone();
        let reconcile = move |key: String| {
            let seen = seen.clone();
            async move {
                let n = {
                    let mut seen = seen.lock().unwrap();
                    let tries = seen.entry(key.clone()).or_default();
                    tries.push(Instant::now());
                    tries.len()
                };
                if key == "bad" && n == 1 {
                    panic!("reconcile of {key} blew up");
                }
                Ok(None)
            }
        };
        queue.add("bad".to_string());
        // One worker: the same worker must survive the panic to reconcile "good".
        let runner = tokio::spawn(queue.clone().run(1, reconcile));
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            {
                let seen = attempts.lock().unwrap();
                if seen.get("bad").is_some_and(|t| t.len() == 2) && seen.contains_key("good") {
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "retries: {:?}",
                attempts.lock().unwrap()
            );
            if !attempts.lock().unwrap().contains_key("good") {
                queue.add("good".to_string());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        runner.abort();
        let seen = attempts.lock().unwrap();
        let bad = &seen["bad"];
        // Retried after the rate limiter's first backoff (5 ms), not at once.
        assert!(bad[1] - bad[0] >= Duration::from_millis(4), "{bad:?}");
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains("workqueue_retries_total{name=\"panics\"} 1"),
            "{text}"
        );
    }
}
