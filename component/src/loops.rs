//! Supervised loops: a controller loop that panics is logged and fails `/healthz`.
//!
//! Kubernetes' controller-manager crashes on a controller's panic and is restarted. A
//! Keelson process runs many loops as tasks, and tokio would only end the task that
//! panicked: the process would look healthy while one controller no longer ran.
//! [`Loops::supervise`] records such a death, and the health endpoints answer 500 naming
//! the loop until the process is restarted. A loop that returns (a controller disabled
//! by its flags, or one dropped because leadership ended) is not a failure.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, LazyLock, Mutex};

use futures::FutureExt;

/// The loops of one process (cheap to clone; clones share their record).
#[derive(Clone, Default)]
pub struct Loops {
    /// (loop name, why it died), in the order they died.
    dead: Arc<Mutex<Vec<(String, String)>>>,
}

static PROCESS: LazyLock<Loops> = LazyLock::new(Loops::default);

impl Loops {
    /// The record `/healthz` of [`crate::Component::run`] reports on.
    pub fn process() -> Loops {
        PROCESS.clone()
    }

    /// Run the loop `name`; if it panics, log it and record it as dead.
    pub async fn supervise(&self, name: &str, work: impl Future<Output = ()>) {
        if let Err(panic) = AssertUnwindSafe(work).catch_unwind().await {
            let why = panic_text(panic.as_ref());
            tracing::error!(controller = name, panic = %why, "controller loop panicked; it no longer runs");
            self.dead
                .lock()
                .expect("loops lock")
                .push((name.to_string(), why));
        }
    }

    /// `Err` with one `[-]` line per dead loop, as Kubernetes' healthz prints failed checks.
    pub fn check(&self) -> Result<(), String> {
        let dead = self.dead.lock().expect("loops lock");
        if dead.is_empty() {
            return Ok(());
        }
        Err(dead
            .iter()
            .map(|(name, why)| format!("[-]controller {name} failed: panicked: {why}"))
            .collect::<Vec<_>>()
            .join("\n"))
    }
}

/// A panic's message (`panic!` carries a `&str` or a `String`).
pub fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(a non-string panic payload)".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_loop_is_recorded_and_a_returning_one_is_not() {
        let loops = Loops::default();
        loops.supervise("disabled", async {}).await;
        assert!(loops.check().is_ok());
        loops
            .supervise("deployment", async {
                let empty: Vec<u8> = Vec::new();
                let _ = empty[usize::from(empty.is_empty())];
            })
            .await;
        let e = loops.check().unwrap_err();
        assert!(
            e.starts_with("[-]controller deployment failed: panicked: index out of bounds"),
            "{e}"
        );
        // Clones share the record; a loop dropped mid-way (leadership lost) is no death.
        let other = loops.clone();
        let pending = other.supervise("job", std::future::pending());
        drop(pending);
        assert_eq!(other.check().unwrap_err().lines().count(), 1);
    }
}
