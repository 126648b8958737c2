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

/// Cut short or corrupted anywhere, a body is an error or some object, never a panic.
#[test]
fn damaged_bodies_do_not_panic() {
    for name in fixtures().iter().map(String::as_str).chain(["token"]) {
        let body = read(name, "pb");
        for len in 0..body.len() {
            let _ = keelson_protobuf::decode(&body[..len]);
        }
        for i in 4..body.len() {
            for byte in [0x00, 0x01, 0x7f, 0x80, 0xff, body[i] ^ 0x02, body[i] ^ 0x05] {
                let mut damaged = body.clone();
                damaged[i] = byte;
                let _ = keelson_protobuf::decode(&damaged);
            }
        }
    }
    // Deep nesting is refused, not recursed into without end.
    let mut raw: Vec<u8> = Vec::new();
    for _ in 0..10_000 {
        // JSONSchemaProps.not (28) holding the previous level.
        let mut level = vec![0xe2, 0x01];
        let mut len = raw.len();
        while len >= 0x80 {
            level.push((len as u8) | 0x80);
            len >>= 7;
        }
        level.push(len as u8);
        level.extend(&raw);
        raw = level;
        if raw.len() > 200_000 {
            break;
        }
    }
    let err = keelson_protobuf::decode_object("apiextensions.k8s.io/v1", "JSONSchemaProps", &raw)
        .unwrap_err();
    assert!(err.to_string().contains("nest too deep"), "{err}");
}
