//! ServiceAccount admission, as kube-apiserver's plugin does it for a new pod: the
//! pod runs as `default` unless it names an account, and unless the pod (or else its
//! ServiceAccount) sets `automountServiceAccountToken: false`, it gets the
//! `kube-api-access-<suffix>` projected volume (a bound token, the cluster's root CA,
//! its namespace) mounted read-only at `/var/run/secrets/kubernetes.io/serviceaccount`
//! in every container and init container that does not mount something there
//! already. Mirror pods (static pods' copies) are left as they are.
//!
//! Unlike Kubernetes, a pod whose ServiceAccount does not exist (yet) is admitted:
//! the serviceaccount controller creates `default` shortly after its namespace, and
//! clients (and this project's tests) create pods right after the namespace. The
//! token request fails on the node until the account exists, and the node retries.

use crate::storage::Storage;
use keelson_apimachinery::meta;
use rand::Rng;
use serde_json::{json, Map, Value};

/// Where the token, `ca.crt` and `namespace` appear in containers.
pub const MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// The volume's name before its random suffix.
pub const VOLUME_PREFIX: &str = "kube-api-access-";
const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";
/// Kubernetes' token lifetime for this volume: 1 hour and 7 seconds, which marks the
/// tokens whose use past an hour the apiserver only warns about.
const TOKEN_EXPIRATION_SECONDS: i64 = 3607;
/// The characters of Kubernetes' generated name suffixes (no vowels, no look-alikes).
const SUFFIX_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// Whether the pod is a mirror pod (exempt).
pub fn is_mirror(pod: &Value) -> bool {
    pod.pointer("/metadata/annotations")
        .and_then(|a| a.get(MIRROR_ANNOTATION))
        .is_some()
}

/// The account a pod runs as, after defaulting: `serviceAccountName`, else the
/// deprecated `serviceAccount`, else `default`. Both fields are set to it.
pub fn default_service_account(pod: &mut Value) -> String {
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return "default".into();
    };
    let get = |spec: &Map<String, Value>, k: &str| {
        spec.get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let mut name = get(spec, "serviceAccountName");
    if name.is_empty() {
        name = get(spec, "serviceAccount");
    }
    if name.is_empty() {
        name = "default".into();
    }
    spec.insert("serviceAccountName".into(), json!(name));
    spec.insert("serviceAccount".into(), json!(name));
    name
}

/// Whether the token is mounted: the pod's `automountServiceAccountToken` decides,
/// else the ServiceAccount's (when it could be read), else yes.
pub fn should_automount(pod: &Value, service_account: Option<&Value>) -> bool {
    if let Some(b) = pod
        .pointer("/spec/automountServiceAccountToken")
        .and_then(Value::as_bool)
    {
        return b;
    }
    service_account
        .and_then(|sa| sa.get("automountServiceAccountToken"))
        .and_then(Value::as_bool)
        .unwrap_or(true)
}

/// The projected volume of the token, root CA and namespace.
pub fn token_volume(name: &str) -> Value {
    json!({
        "name": name,
        "projected": {
            "defaultMode": 420,
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": TOKEN_EXPIRATION_SECONDS, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [
                    {"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}
                ]}}
            ]
        }
    })
}

fn random_suffix() -> String {
    let mut rng = rand::rng();
    (0..5)
        .map(|_| SUFFIX_ALPHABET[rng.random_range(0..SUFFIX_ALPHABET.len())] as char)
        .collect()
}

/// Add the token volume and its mounts. A pod that already has a `kube-api-access-*`
/// volume keeps it (and containers mount that one); a container that mounts anything
/// at [`MOUNT_PATH`] is left alone; the volume is added only if some container needs
/// it.
pub fn mount_token(pod: &mut Value) {
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let existing = spec
        .get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| v.get("name").and_then(Value::as_str))
        .find(|n| n.starts_with(VOLUME_PREFIX))
        .map(str::to_string);
    let volume_name = existing
        .clone()
        .unwrap_or_else(|| format!("{VOLUME_PREFIX}{}", random_suffix()));
    let mount = json!({"name": volume_name, "readOnly": true, "mountPath": MOUNT_PATH});
    let mut needed = false;
    for list in ["initContainers", "containers"] {
        let Some(containers) = spec.get_mut(list).and_then(Value::as_array_mut) else {
            continue;
        };
        for c in containers.iter_mut().filter_map(Value::as_object_mut) {
            let mounts = c.entry("volumeMounts").or_insert_with(|| json!([]));
            if !mounts.is_array() {
                // Not ours to fix: validation reports it.
                continue;
            }
            let mounts = mounts.as_array_mut().expect("array");
            let taken = mounts
                .iter()
                .any(|m| m.get("mountPath").and_then(Value::as_str) == Some(MOUNT_PATH));
            if !taken {
                mounts.push(mount.clone());
                needed = true;
            }
        }
    }
    if existing.is_none() && needed {
        // A `volumes` that is not a list is left for validation to report.
        if let Some(volumes) = spec
            .entry("volumes")
            .or_insert_with(|| json!([]))
            .as_array_mut()
        {
            volumes.push(token_volume(&volume_name));
        }
    }
}

/// The plugin on a new pod, reading the pod's ServiceAccount from storage when the
/// pod itself does not say whether to mount the token. A ServiceAccount that is
/// missing or cannot be read counts as saying nothing.
pub async fn admit(storage: &Storage, pod: &mut Value) {
    if is_mirror(pod) {
        return;
    }
    let name = default_service_account(pod);
    let explicit = pod
        .pointer("/spec/automountServiceAccountToken")
        .is_some_and(Value::is_boolean);
    let account = if explicit {
        None
    } else {
        let key = format!("/registry/serviceaccounts/{}/{name}", meta::namespace(pod));
        match storage.get(&key).await {
            Ok(Some(kv)) => serde_json::from_slice::<Value>(&kv.value).ok(),
            _ => None,
        }
    };
    admit_pod(pod, account.as_ref());
}

/// The plugin on a new pod. `service_account` is the pod's account as stored, when it
/// exists; the caller reads it after [`default_service_account`] names it.
pub fn admit_pod(pod: &mut Value, service_account: Option<&Value>) {
    if is_mirror(pod) {
        return;
    }
    default_service_account(pod);
    if should_automount(pod, service_account) {
        mount_token(pod);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(spec: Value) -> Value {
        json!({"metadata": {"name": "p", "namespace": "ns"}, "spec": spec})
    }

    fn token_volume_of(p: &Value) -> Option<&Value> {
        p["spec"]["volumes"]
            .as_array()?
            .iter()
            .find(|v| v["name"].as_str().unwrap_or("").starts_with(VOLUME_PREFIX))
    }

    #[test]
    fn adds_volume_and_mounts_to_every_container() {
        let mut p = pod(json!({
            "initContainers": [{"name": "init", "image": "busybox"}],
            "containers": [
                {"name": "a", "image": "busybox", "volumeMounts": [{"name": "data", "mountPath": "/data"}]},
                {"name": "b", "image": "busybox"}
            ],
            "volumes": [{"name": "data", "emptyDir": {}}]
        }));
        admit_pod(&mut p, None);
        assert_eq!(p["spec"]["serviceAccountName"], "default");
        assert_eq!(p["spec"]["serviceAccount"], "default");
        let vol = token_volume_of(&p).expect("token volume added");
        let name = vol["name"].as_str().unwrap();
        let suffix = name.strip_prefix(VOLUME_PREFIX).unwrap();
        assert_eq!(suffix.len(), 5);
        assert!(suffix
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
        assert_eq!(vol["projected"]["defaultMode"], 420);
        let sources = &vol["projected"]["sources"];
        assert_eq!(
            sources[0]["serviceAccountToken"],
            json!({"expirationSeconds": 3607, "path": "token"})
        );
        assert_eq!(sources[1]["configMap"]["name"], "kube-root-ca.crt");
        assert_eq!(
            sources[1]["configMap"]["items"],
            json!([{"key": "ca.crt", "path": "ca.crt"}])
        );
        assert_eq!(
            sources[2]["downwardAPI"]["items"][0]["fieldRef"]["fieldPath"],
            "metadata.namespace"
        );
        assert_eq!(
            p["spec"]["volumes"].as_array().unwrap().len(),
            2,
            "data stays first"
        );
        let want = json!({"name": name, "readOnly": true, "mountPath": MOUNT_PATH});
        assert_eq!(
            p["spec"]["initContainers"][0]["volumeMounts"],
            json!([want])
        );
        assert_eq!(p["spec"]["containers"][0]["volumeMounts"][1], want);
        assert_eq!(
            p["spec"]["containers"][0]["volumeMounts"][0]["name"],
            "data"
        );
        assert_eq!(p["spec"]["containers"][1]["volumeMounts"], json!([want]));
    }

    #[test]
    fn opt_outs() {
        // (pod's automount, account's automount, mounted?)
        for (pod_says, sa_says, mounted) in [
            (None, None, true),
            (Some(false), None, false),
            (None, Some(false), false),
            (Some(true), Some(false), true),
            (Some(false), Some(true), false),
            (None, Some(true), true),
        ] {
            let mut spec = json!({"containers": [{"name": "c", "image": "x"}]});
            if let Some(b) = pod_says {
                spec["automountServiceAccountToken"] = json!(b);
            }
            let sa = sa_says.map(
                |b| json!({"metadata": {"name": "default"}, "automountServiceAccountToken": b}),
            );
            let mut p = pod(spec);
            admit_pod(&mut p, sa.as_ref());
            assert_eq!(
                token_volume_of(&p).is_some(),
                mounted,
                "{pod_says:?} {sa_says:?}"
            );
            assert_eq!(
                p["spec"]["containers"][0]["volumeMounts"].is_array(),
                mounted
            );
        }
    }

    #[test]
    fn names_the_account_from_either_field() {
        let mut p = pod(json!({"serviceAccount": "builder", "containers": []}));
        admit_pod(&mut p, None);
        assert_eq!(p["spec"]["serviceAccountName"], "builder");
        assert_eq!(p["spec"]["serviceAccount"], "builder");
        let mut p =
            pod(json!({"serviceAccountName": "ci", "serviceAccount": "old", "containers": []}));
        admit_pod(&mut p, None);
        assert_eq!(p["spec"]["serviceAccountName"], "ci");
        assert_eq!(p["spec"]["serviceAccount"], "ci");
        // No containers need the token: no volume.
        assert!(token_volume_of(&p).is_none());
    }

    #[test]
    fn existing_mounts_and_volumes_are_respected() {
        let mut p = pod(json!({
            "containers": [
                {"name": "own", "image": "x", "volumeMounts": [{"name": "mine", "mountPath": MOUNT_PATH}]},
                {"name": "plain", "image": "x"}
            ],
            "volumes": [{"name": "mine", "secret": {"secretName": "s"}},
                        {"name": "kube-api-access-abcde", "projected": {"sources": []}}]
        }));
        admit_pod(&mut p, None);
        assert_eq!(
            p["spec"]["volumes"].as_array().unwrap().len(),
            2,
            "no second token volume"
        );
        assert_eq!(
            p["spec"]["containers"][0]["volumeMounts"],
            json!([{"name": "mine", "mountPath": MOUNT_PATH}])
        );
        assert_eq!(
            p["spec"]["containers"][1]["volumeMounts"][0]["name"],
            "kube-api-access-abcde"
        );

        // Every container mounts its own thing there: nothing added at all.
        let mut p = pod(json!({"containers": [
            {"name": "own", "image": "x", "volumeMounts": [{"name": "mine", "mountPath": MOUNT_PATH}]}],
            "volumes": [{"name": "mine", "emptyDir": {}}]}));
        let before = p.clone();
        admit_pod(&mut p, None);
        assert_eq!(p["spec"]["volumes"], before["spec"]["volumes"]);
    }

    #[test]
    fn mirror_pods_are_exempt_and_odd_shapes_do_not_panic() {
        let mut p = json!({"metadata": {"name": "m", "annotations": {MIRROR_ANNOTATION: "abc"}},
                           "spec": {"containers": [{"name": "c", "image": "x"}]}});
        let before = p.clone();
        admit_pod(&mut p, None);
        assert_eq!(p, before);

        for mut odd in [
            json!({"metadata": {}}),
            json!({"spec": null}),
            json!({"spec": {"containers": "nope"}}),
            json!({"spec": {"containers": [1, {"name": "c", "volumeMounts": "x"}], "volumes": 3}}),
        ] {
            admit_pod(&mut odd, None);
        }
    }
}
