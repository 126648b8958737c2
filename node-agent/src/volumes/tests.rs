//! Volumes on a temp dir with in-memory sources (tests run as root: tmpfs mounts work).

use super::*;
use crate::sources::memory::MemorySources;
use serde_json::json;
use std::os::unix::fs::MetadataExt;

fn pod(spec: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "ns1", "uid": format!("uid-{}", rand::random::<u32>()),
                     "labels": {"app": "web"}},
        "spec": spec,
    }))
    .unwrap()
}

fn uid(p: &Pod) -> String {
    p.metadata.uid.clone().unwrap()
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

fn manager(dir: &Path) -> VolumeManager {
    VolumeManager::new(dir.join("pods"))
        .with_node_allocatable([("memory".to_string(), Quantity("2Gi".into()))].into())
}

fn container(v: serde_json::Value) -> Container {
    serde_json::from_value(v).unwrap()
}

#[tokio::test]
async fn empty_dirs_on_disk_and_in_memory_then_teardown() {
    let tmp = tempfile::tempdir().unwrap();
    let mgr = manager(tmp.path());
    let p = pod(
        json!({"containers": [], "securityContext": {"fsGroup": 2000}, "volumes": [
            {"name": "scratch", "emptyDir": {}},
            {"name": "cache", "emptyDir": {"medium": "Memory", "sizeLimit": "2Mi"}}
        ]}),
    );
    let src = MemorySources::default();
    let vols = mgr.setup(&p, &src).await.unwrap();
    let scratch = &vols.volumes["scratch"];
    let base = tmp.path().join("pods").join(uid(&p)).join("volumes");
    assert_eq!(
        scratch.host_path,
        base.join("kubernetes.io~empty-dir/scratch")
    );
    assert!(!scratch.read_only);
    // 0777, plus setgid for the fsGroup, owned by the group.
    assert_eq!(mode(&scratch.host_path), 0o2777);
    assert_eq!(fs::metadata(&scratch.host_path).unwrap().gid(), 2000);
    let cache = &vols.volumes["cache"].host_path;
    assert!(tmpfs::is_mount_point(cache).unwrap());

    // Setting up again (an agent restart) changes nothing and stacks no mounts.
    mgr.setup(&p, &src).await.unwrap();
    assert_eq!(tmpfs::mounts_under(&base).unwrap().len(), 1);

    // A symlink to the outside is removed, never followed.
    let outside = tmp.path().join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("keep"), "x").unwrap();
    std::os::unix::fs::symlink(&outside, scratch.host_path.join("link")).unwrap();
    fs::write(cache.join("f"), "in memory").unwrap();

    mgr.teardown(&uid(&p)).unwrap();
    assert!(!base.exists());
    assert!(outside.join("keep").exists());
    assert!(tmpfs::mounts_under(tmp.path()).unwrap().is_empty());
    // Tearing down twice is fine.
    mgr.teardown(&uid(&p)).unwrap();
    assert!(mgr.teardown("../x").is_err());
}

#[tokio::test]
async fn config_maps_and_secrets() {
    let tmp = tempfile::tempdir().unwrap();
    let mgr = manager(tmp.path());
    let src = MemorySources::default();
    src.add_config_map("ns1", "cfg", &[("app.conf", "a=1"), ("other", "o")]);
    src.add_secret("ns1", "creds", &[("user", "admin"), ("pass", "pw")]);
    let p = pod(json!({"containers": [], "volumes": [
        {"name": "all", "configMap": {"name": "cfg"}},
        {"name": "some", "configMap": {"name": "cfg", "defaultMode": 0o600,
            "items": [{"key": "app.conf", "path": "conf/app.conf"}, {"key": "other", "path": "o", "mode": 0o400}]}},
        {"name": "maybe", "configMap": {"name": "absent", "optional": true}},
        {"name": "sec", "secret": {"secretName": "creds", "defaultMode": 0o440}}
    ]}));
    let vols = mgr.setup(&p, &src).await.unwrap();
    let all = &vols.volumes["all"];
    assert!(all.read_only);
    assert_eq!(
        fs::read_to_string(all.host_path.join("app.conf")).unwrap(),
        "a=1"
    );
    assert_eq!(
        fs::read_link(all.host_path.join("app.conf")).unwrap(),
        Path::new("..data/app.conf")
    );
    assert_eq!(mode(&all.host_path.join("app.conf")), 0o644);
    let some = &vols.volumes["some"].host_path;
    assert_eq!(
        fs::read_to_string(some.join("conf/app.conf")).unwrap(),
        "a=1"
    );
    assert_eq!(mode(&some.join("conf/app.conf")), 0o600);
    assert_eq!(mode(&some.join("o")), 0o400);
    assert!(!some.join("other").exists());
    let maybe = &vols.volumes["maybe"].host_path;
    assert!(maybe.join("..data").exists());
    assert_eq!(
        fs::read_dir(maybe).unwrap().count(),
        2,
        "..data and the version dir only"
    );
    let sec = &vols.volumes["sec"].host_path;
    assert!(sec.ends_with("kubernetes.io~secret/sec"));
    assert!(tmpfs::is_mount_point(sec).unwrap(), "secrets live on tmpfs");
    assert_eq!(fs::read_to_string(sec.join("pass")).unwrap(), "pw");
    assert_eq!(mode(&sec.join("pass")), 0o440);
    mgr.teardown(&uid(&p)).unwrap();

    // Errors name the volume as Kubernetes' FailedMount events do.
    for (vol, want) in [
        (json!({"name": "x", "configMap": {"name": "nope"}}),
         "MountVolume.SetUp failed for volume \"x\" : configmap \"nope\" not found"),
        (json!({"name": "y", "secret": {"secretName": "nope"}}),
         "MountVolume.SetUp failed for volume \"y\" : secret \"nope\" not found"),
        (json!({"name": "z", "configMap": {"name": "cfg", "items": [{"key": "k", "path": "k"}]}}),
         "MountVolume.SetUp failed for volume \"z\" : configmap references non-existent config key: k"),
        (json!({"name": "w", "secret": {"secretName": "creds", "items": [{"key": "k", "path": "k"}]}}),
         "MountVolume.SetUp failed for volume \"w\" : references non-existent secret key: k"),
        (json!({"name": "v", "configMap": {"name": "cfg", "items": [{"key": "other", "path": "../escape"}]}}),
         "MountVolume.SetUp failed for volume \"v\" : invalid path: must not start with '..': ../escape"),
    ] {
        let p = pod(json!({"containers": [], "volumes": [vol]}));
        let err = mgr.setup(&p, &src).await.unwrap_err();
        assert_eq!(err.to_string(), want);
        mgr.teardown(&uid(&p)).unwrap();
    }
    // An optional item that is missing is skipped.
    let p = pod(json!({"containers": [], "volumes": [
        {"name": "o", "configMap": {"name": "cfg", "optional": true, "items": [{"key": "k", "path": "k"}, {"key": "other", "path": "other"}]}}]}));
    let vols = mgr.setup(&p, &src).await.unwrap();
    assert!(vols.volumes["o"].host_path.join("other").exists());
    assert!(!vols.volumes["o"].host_path.join("k").exists());
    mgr.teardown(&uid(&p)).unwrap();
}

#[tokio::test]
async fn downward_api_files() {
    let tmp = tempfile::tempdir().unwrap();
    let mgr = manager(tmp.path());
    let src = MemorySources::default();
    let p = pod(
        json!({"containers": [{"name": "app", "resources": {"requests": {"cpu": "250m"}}}],
        "volumes": [{"name": "info", "downwardAPI": {"items": [
            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
            {"path": "meta/name", "fieldRef": {"fieldPath": "metadata.name"}, "mode": 0o600},
            {"path": "cpu_req", "resourceFieldRef": {"containerName": "app", "resource": "requests.cpu", "divisor": "1m"}},
            {"path": "mem_limit", "resourceFieldRef": {"containerName": "app", "resource": "limits.memory", "divisor": "1Mi"}}
        ]}}]}),
    );
    let vols = mgr.setup(&p, &src).await.unwrap();
    let d = &vols.volumes["info"].host_path;
    assert_eq!(fs::read_to_string(d.join("labels")).unwrap(), "app=\"web\"");
    assert_eq!(fs::read_to_string(d.join("meta/name")).unwrap(), "web");
    assert_eq!(mode(&d.join("meta/name")), 0o600);
    assert_eq!(fs::read_to_string(d.join("cpu_req")).unwrap(), "250");
    assert_eq!(
        fs::read_to_string(d.join("mem_limit")).unwrap(),
        "2048",
        "node allocatable"
    );
    mgr.teardown(&uid(&p)).unwrap();

    let p = pod(
        json!({"containers": [], "volumes": [{"name": "bad", "downwardAPI": {"items": [
        {"path": "x", "fieldRef": {"fieldPath": "spec.nodeName"}}]}}]}),
    );
    let err = mgr.setup(&p, &src).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "MountVolume.SetUp failed for volume \"bad\" : unsupported fieldPath: spec.nodeName"
    );
    mgr.teardown(&uid(&p)).unwrap();
}

fn kube_api_access() -> serde_json::Value {
    json!({"name": "kube-api-access-x7k2p", "projected": {"defaultMode": 420, "sources": [
        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token", "audience": "vault"}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}
    ]}})
}

#[tokio::test]
async fn projected_service_account_volume_and_fs_group() {
    let tmp = tempfile::tempdir().unwrap();
    let mgr = manager(tmp.path());
    let src = MemorySources::default();
    src.add_config_map("ns1", "kube-root-ca.crt", &[("ca.crt", "PEM")]);
    let p = pod(json!({"containers": [], "serviceAccountName": "builder",
        "securityContext": {"fsGroup": 3000}, "volumes": [kube_api_access()]}));
    let vols = mgr.setup(&p, &src).await.unwrap();
    let d = &vols.volumes["kube-api-access-x7k2p"].host_path;
    assert!(d.ends_with("kubernetes.io~projected/kube-api-access-x7k2p"));
    assert!(tmpfs::is_mount_point(d).unwrap());
    assert_eq!(fs::read_to_string(d.join("token")).unwrap(), "token-1");
    assert_eq!(fs::read_to_string(d.join("ca.crt")).unwrap(), "PEM");
    assert_eq!(fs::read_to_string(d.join("namespace")).unwrap(), "ns1");
    // With an fsGroup the token is 0600 made group-readable; files belong to the group.
    assert_eq!(mode(&d.join("token")), 0o640);
    assert_eq!(fs::metadata(d.join("token")).unwrap().gid(), 3000);
    assert_eq!(mode(&d.join("ca.crt")), 0o644);
    {
        let reqs = src.token_requests.lock().unwrap();
        assert_eq!(reqs.len(), 1);
        let (ns, sa, spec) = &reqs[0];
        assert_eq!((ns.as_str(), sa.as_str()), ("ns1", "builder"));
        assert_eq!(spec.audiences, ["vault"]);
        assert_eq!(spec.expiration_seconds, Some(3607));
        let bound = spec.bound_object_ref.as_ref().unwrap();
        assert_eq!(bound.kind.as_deref(), Some("Pod"));
        assert_eq!(bound.name.as_deref(), Some("web"));
        assert_eq!(bound.uid.as_deref(), Some(uid(&p).as_str()));
    }
    // A fresh token is reused; nothing changed, so no new version is written.
    let before = fs::read_link(d.join("..data")).unwrap();
    mgr.refresh(&p, &src).await.unwrap();
    assert_eq!(fs::read_link(d.join("..data")).unwrap(), before);
    assert_eq!(src.token_requests.lock().unwrap().len(), 1);

    // Without the root CA ConfigMap the projection fails as Kubernetes words it.
    src.config_maps.lock().unwrap().clear();
    let err = mgr.refresh(&p, &src).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "MountVolume.SetUp failed for volume \"kube-api-access-x7k2p\" : configmap \"kube-root-ca.crt\" not found"
    );
    // ... and the files already there stay.
    assert_eq!(fs::read_to_string(d.join("ca.crt")).unwrap(), "PEM");
    mgr.teardown(&uid(&p)).unwrap();
}

#[tokio::test]
async fn refresh_follows_sources_and_rotates_tokens() {
    let tmp = tempfile::tempdir().unwrap();
    let mgr = manager(tmp.path());
    let src = MemorySources::default();
    src.add_config_map("ns1", "cfg", &[("k", "v1")]);
    let p = pod(json!({"containers": [], "volumes": [
        {"name": "c", "configMap": {"name": "cfg"}},
        {"name": "t", "projected": {"sources": [{"serviceAccountToken": {"path": "token", "expirationSeconds": 1}}]}}
    ]}));
    let vols = mgr.setup(&p, &src).await.unwrap();
    let c = &vols.volumes["c"].host_path;
    let t = &vols.volumes["t"].host_path;
    let v1 = fs::read_link(c.join("..data")).unwrap();
    // Held open before the update: it keeps reading the old version.
    let old_file = fs::read_to_string(c.join("..data/k")).unwrap();

    src.add_config_map("ns1", "cfg", &[("k", "v2"), ("new", "n")]);
    mgr.refresh(&p, &src).await.unwrap();
    assert_eq!(fs::read_to_string(c.join("k")).unwrap(), "v2");
    assert_eq!(fs::read_to_string(c.join("new")).unwrap(), "n");
    assert_ne!(fs::read_link(c.join("..data")).unwrap(), v1);
    assert!(!c.join(&v1).exists(), "the old version is removed");
    assert_eq!(old_file, "v1");

    // The 1-second token is past 80% of its life after a second: a new one is fetched.
    // (On a loaded machine the refresh above may already have rotated it once.)
    let before = fs::read_to_string(t.join("token")).unwrap();
    assert!(before == "token-1" || before == "token-2", "{before}");
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    mgr.refresh(&p, &src).await.unwrap();
    let after = fs::read_to_string(t.join("token")).unwrap();
    assert!(
        after.starts_with("token-") && after != before,
        "{before} -> {after}"
    );
    mgr.teardown(&uid(&p)).unwrap();
}

#[tokio::test]
async fn host_paths_and_claims() {
    let tmp = tempfile::tempdir().unwrap();
    let mgr = manager(tmp.path());
    let src = MemorySources::default();
    let data = tmp.path().join("data");
    let p = pod(json!({"containers": [], "volumes": [
        {"name": "h", "hostPath": {"path": data.to_str().unwrap(), "type": "DirectoryOrCreate"}}]}));
    let vols = mgr.setup(&p, &src).await.unwrap();
    assert_eq!(vols.volumes["h"].host_path, data);
    assert!(data.is_dir());

    let missing = tmp.path().join("nope");
    let p = pod(json!({"containers": [], "volumes": [
        {"name": "h", "hostPath": {"path": missing.to_str().unwrap(), "type": "File"}}]}));
    let err = mgr.setup(&p, &src).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("MountVolume.SetUp failed for volume \"h\" : hostPath type check failed: {} is not a file", missing.display())
    );

    let claim = |phase: &str, volume: &str| -> k8s_openapi::api::core::v1::PersistentVolumeClaim {
        serde_json::from_value(
            json!({"metadata": {"name": "claim", "namespace": "ns1", "uid": "c-1"},
            "spec": {"volumeName": volume}, "status": {"phase": phase}}),
        )
        .unwrap()
    };
    src.pvcs
        .lock()
        .unwrap()
        .insert("ns1/claim".into(), claim("Bound", "pv-1"));
    src.pvs.lock().unwrap().insert("pv-1".into(), serde_json::from_value(json!({
        "metadata": {"name": "pv-1"},
        "spec": {"hostPath": {"path": data.to_str().unwrap()}, "claimRef": {"name": "claim", "namespace": "ns1", "uid": "c-1"}}
    })).unwrap());
    let p = pod(json!({"containers": [], "volumes": [
        {"name": "d", "persistentVolumeClaim": {"claimName": "claim", "readOnly": true}}]}));
    let vols = mgr.setup(&p, &src).await.unwrap();
    assert_eq!(
        vols.volumes["d"],
        MountedVolume {
            host_path: data.clone(),
            read_only: true
        }
    );

    // A local PV too.
    src.pvs.lock().unwrap().insert(
        "pv-1".into(),
        serde_json::from_value(json!({
            "metadata": {"name": "pv-1"}, "spec": {"local": {"path": data.to_str().unwrap()}}
        }))
        .unwrap(),
    );
    assert_eq!(
        mgr.setup(&p, &src).await.unwrap().volumes["d"].host_path,
        data
    );

    src.pvcs
        .lock()
        .unwrap()
        .insert("ns1/claim".into(), claim("Pending", ""));
    let err = mgr.setup(&p, &src).await.unwrap_err();
    assert_eq!(err.to_string(), "MountVolume.SetUp failed for volume \"d\" : PVC ns1/claim has non-bound phase (\"Pending\") or empty pvc.Spec.VolumeName (\"\")");
    src.pvcs.lock().unwrap().clear();
    let err = mgr.setup(&p, &src).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "MountVolume.SetUp failed for volume \"d\" : persistentvolumeclaim \"claim\" not found"
    );
    // hostPath volumes were used in place: teardown leaves them alone.
    mgr.teardown(&uid(&p)).unwrap();
    assert!(data.is_dir());
}

#[tokio::test]
async fn container_mounts() {
    let tmp = tempfile::tempdir().unwrap();
    let mgr = manager(tmp.path());
    let src = MemorySources::default();
    src.add_config_map("ns1", "cfg", &[("app.conf", "a=1")]);
    let p = pod(json!({"containers": [], "volumes": [
        {"name": "work", "emptyDir": {}},
        {"name": "cfg", "configMap": {"name": "cfg"}}
    ]}));
    let vols = mgr.setup(&p, &src).await.unwrap();
    let work = vols.volumes["work"].host_path.clone();
    let env: HashMap<String, String> = [("POD_NAME".to_string(), "web".to_string())].into();

    let c = container(json!({"name": "app", "volumeMounts": [
        {"name": "work", "mountPath": "/work"},
        {"name": "work", "mountPath": "/logs", "subPathExpr": "logs/$(POD_NAME)", "mountPropagation": "HostToContainer"},
        {"name": "work", "mountPath": "/ro", "subPath": "ro", "readOnly": true},
        {"name": "cfg", "mountPath": "/etc/app"},
        {"name": "cfg", "mountPath": "/etc/app.conf", "subPath": "app.conf"}
    ]}));
    let m = vols.mounts(&c, &env).unwrap();
    assert_eq!(m.len(), 5);
    assert_eq!(
        (m[0].container_path.as_str(), m[0].readonly),
        ("/work", false)
    );
    assert_eq!(m[0].host_path, work.to_str().unwrap());
    let logs = work.canonicalize().unwrap().join("logs/web");
    assert_eq!(m[1].host_path, logs.to_str().unwrap());
    assert!(logs.is_dir(), "subPath created");
    assert_eq!(mode(&logs), 0o777, "with the volume's mode");
    assert_eq!(
        m[1].propagation,
        MountPropagation::PropagationHostToContainer as i32
    );
    assert!(m[2].readonly);
    assert!(m[3].readonly, "configMap volumes are always read-only");
    assert!(
        m[4].host_path.contains("/..20"),
        "a subPath file resolves to the current version: {}",
        m[4].host_path
    );
    assert_eq!(fs::read_to_string(&m[4].host_path).unwrap(), "a=1");

    // A symlink planted in a writable volume cannot point a subPath outside it.
    std::os::unix::fs::symlink("/etc", work.join("evil")).unwrap();
    let bad = |vm: serde_json::Value| container(json!({"name": "app", "volumeMounts": [vm]}));
    for (vm, want) in [
        (
            json!({"name": "work", "mountPath": "/x", "subPath": "../../etc"}),
            "unable to provision SubPath `../../etc`: must not contain '..'".to_string(),
        ),
        (
            json!({"name": "work", "mountPath": "/x", "subPath": "/etc"}),
            "error SubPath `/etc` must not be an absolute path".to_string(),
        ),
        (
            json!({"name": "work", "mountPath": "/x", "subPath": "evil/cron.d"}),
            format!(
                "subpath \"evil/cron.d\" not within volume path \"{}\"",
                work.canonicalize().unwrap().display()
            ),
        ),
        (
            json!({"name": "work", "mountPath": "/x", "subPathExpr": "$(MISSING)/$(ALSO)"}),
            "missing value for ALSO, MISSING".to_string(),
        ),
        (
            json!({"name": "nope", "mountPath": "/x"}),
            "cannot find volume \"nope\" to mount into container \"app\"".to_string(),
        ),
        (
            json!({"name": "work", "mountPath": "/x", "mountPropagation": "Bidirectional"}),
            "Bidirectional mount propagation is available only to privileged containers"
                .to_string(),
        ),
    ] {
        assert_eq!(
            vols.mounts(&bad(vm.clone()), &env).unwrap_err().to_string(),
            want,
            "{vm}"
        );
    }
    assert!(!Path::new("/etc/cron.d-never").exists());
    let privileged = container(
        json!({"name": "app", "securityContext": {"privileged": true},
        "volumeMounts": [{"name": "work", "mountPath": "/x", "mountPropagation": "Bidirectional"}]}),
    );
    assert_eq!(
        vols.mounts(&privileged, &env).unwrap()[0].propagation,
        MountPropagation::PropagationBidirectional as i32
    );
    mgr.teardown(&uid(&p)).unwrap();
}
