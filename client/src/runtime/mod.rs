//! Controller runtime pieces, after kube-rs's `kube::runtime` and client-go's tools:
//!
//! - [`watcher()`]: list, then watch from the list's resourceVersion; resume after a
//!   watch ends, relist on 410 Gone, back off on errors. A stream of [`watcher::Event`]s.
//! - [`reflector`](mod@reflector): a [`Store`] (local cache by namespace/name, queryable by namespace
//!   and label selector) kept up to date from watcher events.
//! - [`SharedInformer`]: one watcher and store shared by any number of handlers and
//!   notification streams.
//! - [`WorkQueue`]: a deduplicating, rate-limited work queue for controllers.

mod backoff;
pub mod informer;
pub mod reflector;
pub mod watcher;
pub mod workqueue;

pub use backoff::Backoff;
pub use informer::{EventHandler, HandlerFuncs, Notification, SharedInformer};
pub use reflector::{reflector, store, Store, Writer};
pub use watcher::watcher;
pub use workqueue::{RateLimiter, WorkQueue};
