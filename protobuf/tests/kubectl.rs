//! Bodies real kubectl (1.32 and 1.33 send identical ones) POSTed to a capturing
//! server for `kubectl create ...`, next to what the same command prints with
//! `--dry-run=client -o json`, which is the Go JSON of the very object it encodes.
//! Regenerate with any kubectl that sends protobuf; tests/kubectl/README.md says how.

use std::fs;
use std::path::Path;

use serde_json::{json, Value};

fn fixtures() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kubectl");
    let mut names: Vec<String> = fs::read_dir(&dir)
        .expect("tests/kubectl")
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_suffix(".json")
                .map(str::to_string)
        })
        .collect();
    names.sort();
    names
}

fn read(name: &str, ext: &str) -> Vec<u8> {
    fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/kubectl/{name}.{ext}")))
        .unwrap()
}

#[test]
fn kubectl_create_bodies_decode_to_what_kubectl_prints() {
    let names = fixtures();
    assert!(names.len() >= 15, "{names:?}");
    let mut failures = Vec::new();
    for name in names {
        let body = read(&name, "pb");
        assert!(body.starts_with(b"k8s\0"), "{name}.pb is not protobuf");
        let want: Value = serde_json::from_slice(&read(&name, "json")).unwrap();
        match keelson_protobuf::decode(&body) {
            Ok(got) if got == want => {}
            Ok(got) => failures.push(format!("{name}\n got: {got}\nwant: {want}")),
            Err(e) => failures.push(format!("{name}: {e}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn kubectl_create_token() {
    // `kubectl create token sa1 --duration=1h --audience=api` (no --dry-run there).
    let got = keelson_protobuf::decode(&read("token", "pb")).unwrap();
    assert_eq!(
        got,
        json!({
            "kind": "TokenRequest",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"creationTimestamp": null},
            "spec": {"audiences": ["api"], "expirationSeconds": 3600},
            "status": {"expirationTimestamp": null}
        })
    );
}
