//! Times each stage of the apiserver's create pipeline in-process, for the pod the
//! benchmark uses (see docs/benchmarks.md):
//! `cargo run --release -p keelson-apiserver --example stages`.

use keelson_apiserver::registry::{fields, metadata, patching, FieldValidation, WriteOptions};
use serde_json::json;
use std::time::Instant;
fn main() {
    let rt = keelson_resources::find("", "pods").unwrap();
    let pod = json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","namespace":"bench","labels":{"app":"bench","tier":"backend","pod-template-hash":"7c5ddbdf54"},"annotations":{"kubernetes.io/psp":"restricted","prometheus.io/scrape":"true"}},"spec":{"containers":[{"name":"app","image":"registry.example/bench/app:1.2.3","command":["/app","--port=8080","--log-level=info"],"ports":[{"containerPort":8080,"name":"http"}],"env":[{"name":"MODE","value":"production"},{"name":"REGION","value":"eu-west"}],"resources":{"requests":{"cpu":"100m","memory":"128Mi"},"limits":{"cpu":"500m","memory":"256Mi"}},"readinessProbe":{"httpGet":{"path":"/healthz","port":8080},"periodSeconds":5},"volumeMounts":[{"name":"config","mountPath":"/etc/app"}]}],"volumes":[{"name":"config","configMap":{"name":"app-config"}}],"nodeSelector":{"kubernetes.io/os":"linux"}}});
    let bytes = serde_json::to_vec(&pod).unwrap();
    let n = 3000;
    let opts = WriteOptions {
        field_manager: "bench".into(),
        ..Default::default()
    };
    let t = Instant::now();
    for _ in 0..n {
        let _: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    }
    println!("parse {:?}", t.elapsed() / n);
    let t = Instant::now();
    for _ in 0..n {
        let mut o = pod.clone();
        fields::check_unknown(rt, &mut o, FieldValidation::Strict).unwrap();
    }
    println!("check_unknown {:?}", t.elapsed() / n);
    let t = Instant::now();
    for _ in 0..n {
        let mut o = pod.clone();
        metadata::prepare_create(rt, &mut o).unwrap();
        rt.strategy.prepare_for_create(&mut o);
    }
    println!("prepare {:?}", t.elapsed() / n);
    let mut o = pod.clone();
    metadata::prepare_create(rt, &mut o).unwrap();
    rt.strategy.prepare_for_create(&mut o);
    let t = Instant::now();
    for _ in 0..n {
        let mut x = o.clone();
        rt.strategy.default(&mut x);
    }
    println!("default {:?}", t.elapsed() / n);
    rt.strategy.default(&mut o);
    let t = Instant::now();
    for _ in 0..n {
        let _ = metadata::validate(rt, &o);
        let _ = rt.strategy.validate(&o);
    }
    println!("validate {:?}", t.elapsed() / n);
    let t = Instant::now();
    for _ in 0..n {
        let mut x = o.clone();
        patching::track_fields(rt, None, &mut x, &opts, "");
    }
    println!("track_fields {:?}", t.elapsed() / n);
    patching::track_fields(rt, None, &mut o, &opts, "");
    let t = Instant::now();
    for _ in 0..n {
        let _ = serde_json::to_vec(&o).unwrap();
    }
    println!(
        "encode {:?} ({} bytes)",
        t.elapsed() / n,
        serde_json::to_vec(&o).unwrap().len()
    );
    let t = Instant::now();
    for _ in 0..n {
        let _ = o.clone();
    }
    println!("clone {:?}", t.elapsed() / n);
}
