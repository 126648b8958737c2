//! Selecting tests by codename and running them: each in a namespace of its own, several
//! at once, each bounded by the per-test timeout. A test fails by panicking (its
//! assertion message is the failure), as in Go's e2e framework where `Expect` aborts.

use crate::framework::{self, Ctx};
use crate::tests::Test;
use futures::StreamExt;
use std::io::Write;
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

pub struct Options {
    pub parallel: usize,
    pub timeout: Duration,
    pub image: String,
}

/// What one test did.
pub struct Outcome {
    pub codename: &'static str,
    pub duration: Duration,
    /// None when the test passed.
    pub failure: Option<String>,
}

/// Tests whose codename contains one of `focus` (all when empty) and none of `skip`.
pub fn select(tests: Vec<Test>, focus: &[String], skip: &[String]) -> Vec<Test> {
    tests
        .into_iter()
        .filter(|t| focus.is_empty() || focus.iter().any(|f| t.codename.contains(f.as_str())))
        .filter(|t| !skip.iter().any(|s| t.codename.contains(s.as_str())))
        .collect()
}

/// Run the tests, printing a line for each as it ends; outcomes in completion order.
pub async fn run(tests: Vec<Test>, client: kube::Client, opts: &Options) -> Vec<Outcome> {
    quiet_panics();
    futures::stream::iter(tests)
        .map(|t| {
            let client = client.clone();
            async move {
                let o = run_one(t, client, opts).await;
                report(&o);
                o
            }
        })
        .buffer_unordered(opts.parallel)
        .collect()
        .await
}

fn report(o: &Outcome) {
    let secs = o.duration.as_secs_f64();
    let mut out = std::io::stdout().lock();
    let _ = match &o.failure {
        None => writeln!(out, "PASS {} ({secs:.1}s)", o.codename),
        Some(msg) => writeln!(out, "FAIL {} ({secs:.1}s)\n    {}", o.codename, indent(msg)),
    };
    let _ = out.flush();
}

fn indent(msg: &str) -> String {
    msg.lines().collect::<Vec<_>>().join("\n    ")
}

tokio::task_local! {
    /// Where the panic hook leaves the message (with its location) of a test's panic.
    static PANIC_SLOT: Arc<Mutex<Option<String>>>;
}

/// Panics inside tests are failures, reported once by the runner: the hook records the
/// message and location for the test's task instead of printing a backtrace banner.
fn quiet_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let msg = panic_message(info.payload());
            let at = info
                .location()
                .map(|l| format!(" (at {}:{})", l.file(), l.line()))
                .unwrap_or_default();
            let recorded = PANIC_SLOT
                .try_with(|slot| {
                    let mut s = slot.lock().unwrap_or_else(|p| p.into_inner());
                    if s.is_none() {
                        *s = Some(format!("{msg}{at}"));
                    }
                })
                .is_ok();
            if !recorded {
                default(info);
            }
        }));
    });
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else {
        "panicked".to_string()
    }
}

async fn run_one(t: Test, client: kube::Client, opts: &Options) -> Outcome {
    let started = Instant::now();
    let ns_name = framework::namespace_name(t.codename);
    let failure = match framework::create_namespace(&client, &ns_name).await {
        Err(e) => Some(format!("creating namespace {ns_name}: {e}")),
        Ok(()) => {
            let ctx = Ctx::new(client.clone(), ns_name.clone(), opts.image.clone());
            let slot = Arc::new(Mutex::new(None));
            let task = tokio::spawn(PANIC_SLOT.scope(slot.clone(), (t.run)(ctx)));
            let abort = task.abort_handle();
            let failure = match tokio::time::timeout(opts.timeout, task).await {
                Ok(Ok(())) => None,
                Ok(Err(e)) => {
                    let recorded = slot.lock().unwrap_or_else(|p| p.into_inner()).take();
                    Some(recorded.unwrap_or_else(|| match e.try_into_panic() {
                        Ok(p) => panic_message(&*p),
                        Err(e) => e.to_string(),
                    }))
                }
                Err(_) => {
                    abort.abort();
                    Some(format!("timed out after {}s", opts.timeout.as_secs()))
                }
            };
            if let Err(e) = framework::delete_namespace(&client, &ns_name).await {
                // The verdict stands; a namespace left behind is only reported.
                eprintln!("deleting namespace {ns_name}: {e}");
            }
            failure
        }
    };
    Outcome {
        codename: t.codename,
        duration: started.elapsed(),
        failure,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(names: &[&'static str]) -> Vec<Test> {
        names
            .iter()
            .map(|n| Test {
                codename: n,
                run: |_| Box::pin(async {}),
            })
            .collect()
    }

    fn codenames(tests: &[Test]) -> Vec<&'static str> {
        tests.iter().map(|t| t.codename).collect()
    }

    #[test]
    fn focus_and_skip_are_substrings() {
        let all = [
            "[sig-node] Pods a",
            "[sig-node] Probing b",
            "[sig-storage] c",
        ];
        let s = |f: &[&str], k: &[&str]| {
            let f: Vec<String> = f.iter().map(|x| x.to_string()).collect();
            let k: Vec<String> = k.iter().map(|x| x.to_string()).collect();
            codenames(&select(named(&all), &f, &k))
        };
        assert_eq!(s(&[], &[]), all);
        assert_eq!(
            s(&["[sig-node]"], &[]),
            ["[sig-node] Pods a", "[sig-node] Probing b"]
        );
        assert_eq!(
            s(&["Pods", "c"], &[]),
            ["[sig-node] Pods a", "[sig-storage] c"]
        );
        assert_eq!(s(&["[sig-node]"], &["Probing"]), ["[sig-node] Pods a"]);
        assert!(s(&["nothing"], &[]).is_empty());
    }
}
