//! Timing of `managedFields` tracking on a typical defaulted pod.
//!
//! `cargo run --release -p keelson-apimachinery --example apply_bench [iterations [case]]`

use std::hint::black_box;
use std::time::{Duration, Instant};

use keelson_apimachinery::apply::{apply, track_update, track_update_in_place};
use keelson_apimachinery::patch::schema::Root;
use serde_json::{json, Value};

const T1: &str = "2024-05-01T10:00:00Z";
const T2: &str = "2024-05-01T11:00:00Z";

/// The pod of `apiserver/examples/stages.rs` after create preparation and defaulting.
fn pod() -> Value {
    json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","namespace":"bench","labels":{"app":"bench","tier":"backend","pod-template-hash":"7c5ddbdf54"},"annotations":{"kubernetes.io/psp":"restricted","prometheus.io/scrape":"true"},"uid":"5f0c6e2a-6a3b-4c1e-9d7a-2b8f0e4c1a9d","creationTimestamp":"2024-05-01T10:00:00Z","resourceVersion":""},"spec":{"containers":[{"name":"app","image":"registry.example/bench/app:1.2.3","command":["/app","--port=8080","--log-level=info"],"ports":[{"containerPort":8080,"name":"http","protocol":"TCP"}],"env":[{"name":"MODE","value":"production"},{"name":"REGION","value":"eu-west"}],"resources":{"requests":{"cpu":"100m","memory":"128Mi"},"limits":{"cpu":"500m","memory":"256Mi"}},"readinessProbe":{"httpGet":{"path":"/healthz","port":8080,"scheme":"HTTP"},"periodSeconds":5,"timeoutSeconds":1,"successThreshold":1,"failureThreshold":3},"volumeMounts":[{"name":"config","mountPath":"/etc/app"}],"imagePullPolicy":"IfNotPresent","terminationMessagePath":"/dev/termination-log","terminationMessagePolicy":"File"}],"volumes":[{"name":"config","configMap":{"name":"app-config","defaultMode":420}}],"nodeSelector":{"kubernetes.io/os":"linux"},"dnsPolicy":"ClusterFirst","restartPolicy":"Always","securityContext":{},"terminationGracePeriodSeconds":30,"schedulerName":"default-scheduler","enableServiceLinks":true,"serviceAccountName":"default","serviceAccount":"default","tolerations":[{"key":"node.kubernetes.io/not-ready","operator":"Exists","effect":"NoExecute","tolerationSeconds":300},{"key":"node.kubernetes.io/unreachable","operator":"Exists","effect":"NoExecute","tolerationSeconds":300}],"priority":0,"preemptionPolicy":"PreemptLowerPriority"},"status":{"phase":"Pending","qosClass":"Burstable"}})
}

/// What a client applies for that pod.
fn pod_config(image: &str) -> Value {
    json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","namespace":"bench","labels":{"app":"bench","tier":"backend","pod-template-hash":"7c5ddbdf54"},"annotations":{"kubernetes.io/psp":"restricted","prometheus.io/scrape":"true"}},"spec":{"containers":[{"name":"app","image":image,"command":["/app","--port=8080","--log-level=info"],"ports":[{"containerPort":8080,"name":"http"}],"env":[{"name":"MODE","value":"production"},{"name":"REGION","value":"eu-west"}],"resources":{"requests":{"cpu":"100m","memory":"128Mi"},"limits":{"cpu":"500m","memory":"256Mi"}},"readinessProbe":{"httpGet":{"path":"/healthz","port":8080},"periodSeconds":5},"volumeMounts":[{"name":"config","mountPath":"/etc/app"}]}],"volumes":[{"name":"config","configMap":{"name":"app-config"}}],"nodeSelector":{"kubernetes.io/os":"linux"}}})
}

fn time(name: &str, n: u32, mut f: impl FnMut()) -> Duration {
    // A second argument runs only the cases whose name contains it.
    if std::env::args()
        .nth(2)
        .is_some_and(|only| !name.contains(&only))
    {
        return Duration::ZERO;
    }
    for _ in 0..n / 10 + 1 {
        f();
    }
    // The best of five rounds, as other load only ever adds time.
    let per = (0..5)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..n / 5 {
                f();
            }
            t.elapsed() / (n / 5)
        })
        .min()
        .unwrap_or_default();
    println!("{name:<34} {per:>10.2?}");
    per
}

fn upd(old: Option<&Value>, new: &Value, manager: &str, now: &str) -> Value {
    track_update(old, new, manager, "", Some(Root::Pod), "v1", true, now)
}

fn main() {
    let n: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(5000);
    let pod = pod();
    println!("pod: {} bytes", serde_json::to_vec(&pod).unwrap().len());

    time("track_update create", n, || {
        black_box(upd(None, black_box(&pod), "bench", T1));
    });

    // As the apiserver records a create: on its own copy of the decoded object.
    time("create: *x = track_update(x)", n, || {
        let mut x = black_box(&pod).clone();
        x = upd(None, &x, "bench", T1);
        black_box(x);
    });
    time("create: track_update_in_place(x)", n, || {
        let mut x = black_box(&pod).clone();
        track_update_in_place(None, &mut x, "bench", "", Some(Root::Pod), "v1", true, T1);
        black_box(x);
    });

    let live = upd(None, &pod, "bench", T1);
    println!(
        "stored pod: {} bytes",
        serde_json::to_vec(&live).unwrap().len()
    );
    // For scale: copying (and dropping) the objects involved.
    time("(clone+drop pod)", n, || {
        black_box(black_box(&pod).clone());
    });
    time("(clone+drop stored pod)", n, || {
        black_box(black_box(&live).clone());
    });
    // A client sends back what it read with one field changed.
    let mut edited = live.clone();
    edited["spec"]["containers"][0]["image"] = json!("registry.example/bench/app:1.2.4");
    time("track_update update 1 field", n, || {
        black_box(upd(Some(&live), black_box(&edited), "editor", T2));
    });
    time("update: track_update_in_place(x)", n, || {
        let mut x = black_box(&edited).clone();
        track_update_in_place(
            Some(&live),
            &mut x,
            "editor",
            "",
            Some(Root::Pod),
            "v1",
            true,
            T2,
        );
        black_box(x);
    });
    time("update: *x = track_update(x)", n, || {
        let mut x = black_box(&edited).clone();
        x = upd(Some(&live), &x, "editor", T2);
        black_box(x);
    });
    // The same by the manager that owns the field already.
    time("track_update update 1 field (same)", n, || {
        black_box(upd(Some(&live), black_box(&edited), "bench", T2));
    });
    // A status write (subresource).
    let mut status = live.clone();
    status["status"]["phase"] = json!("Running");
    time("track_update status", n, || {
        black_box(track_update(
            Some(&live),
            black_box(&status),
            "kubelet",
            "status",
            Some(Root::Pod),
            "v1",
            false,
            T2,
        ));
    });
    // No change at all.
    time("track_update no-op", n, || {
        black_box(upd(Some(&live), black_box(&live), "bench", T2));
    });

    let cfg = pod_config("registry.example/bench/app:1.2.3");
    time("apply create", n, || {
        black_box(
            apply(
                None,
                black_box(&cfg),
                "kubectl",
                false,
                "",
                "Pod",
                Some(Root::Pod),
                true,
                T1,
            )
            .unwrap(),
        );
    });
    let applied = apply(
        Some(&live),
        &cfg,
        "kubectl",
        false,
        "",
        "Pod",
        Some(Root::Pod),
        true,
        T1,
    )
    .unwrap();
    let cfg2 = pod_config("registry.example/bench/app:1.2.4");
    time("apply update 1 field", n, || {
        black_box(
            apply(
                Some(&applied),
                black_box(&cfg2),
                "kubectl",
                true,
                "",
                "Pod",
                Some(Root::Pod),
                true,
                T2,
            )
            .unwrap(),
        );
    });
    time("apply no-op", n, || {
        black_box(
            apply(
                Some(&applied),
                black_box(&cfg),
                "kubectl",
                false,
                "",
                "Pod",
                Some(Root::Pod),
                true,
                T2,
            )
            .unwrap(),
        );
    });
}
