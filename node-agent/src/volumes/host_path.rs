//! hostPath volumes (with the kubelet's type checks) and PersistentVolumeClaims bound to
//! hostPath or local PersistentVolumes: both are paths on the node, used in place.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Pod;

use crate::sources::PodSources;

/// Check (or create) `path` per the hostPath `type`, with the kubelet's messages.
pub fn check_type(path: &str, type_: &str) -> Result<(), String> {
    let p = Path::new(path);
    let meta = fs::metadata(p).ok();
    let exists = meta.is_some() || fs::symlink_metadata(p).is_ok();
    let ft = meta.as_ref().map(|m| m.file_type());
    let is = |f: &dyn Fn(&fs::FileType) -> bool| ft.as_ref().is_some_and(f);
    match type_ {
        "" => Ok(()),
        "DirectoryOrCreate" if !exists => fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(p)
            .map_err(|e| format!("hostPath type check failed: {path}: {e}")),
        "DirectoryOrCreate" | "Directory" => is(&|f| f.is_dir())
            .then_some(())
            .ok_or_else(|| format!("hostPath type check failed: {path} is not a directory")),
        "FileOrCreate" if !exists => fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o644)
            .open(p)
            .map(drop)
            .map_err(|e| format!("hostPath type check failed: {path}: {e}")),
        "FileOrCreate" | "File" => is(&|f| f.is_file())
            .then_some(())
            .ok_or_else(|| format!("hostPath type check failed: {path} is not a file")),
        "Socket" => is(&|f| f.is_socket())
            .then_some(())
            .ok_or_else(|| format!("hostPath type check failed: {path} is not a socket file")),
        "CharDevice" => is(&|f| f.is_char_device())
            .then_some(())
            .ok_or_else(|| format!("hostPath type check failed: {path} is not a character device")),
        "BlockDevice" => is(&|f| f.is_block_device())
            .then_some(())
            .ok_or_else(|| format!("hostPath type check failed: {path} is not a block device")),
        other => Err(format!("{other} is an invalid volume type")),
    }
}

/// The node path behind a claim: the claim must be Bound to a hostPath or local
/// PersistentVolume that names it.
pub async fn claim_path(pod: &Pod, claim: &str, src: &dyn PodSources) -> Result<PathBuf, String> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let pvc = src
        .pvc(ns, claim)
        .await
        .map_err(|e| format!("error reading PVC {ns}/{claim}: {e:#}"))?
        .ok_or_else(|| format!("persistentvolumeclaim \"{claim}\" not found"))?;
    let phase = pvc
        .status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_default();
    let volume_name = pvc
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .unwrap_or_default();
    if phase != "Bound" || volume_name.is_empty() {
        return Err(format!(
            "PVC {ns}/{claim} has non-bound phase ({phase:?}) or empty pvc.Spec.VolumeName ({volume_name:?})"
        ));
    }
    let pv = src
        .pv(&volume_name)
        .await
        .map_err(|e| format!("error reading PV {volume_name}: {e:#}"))?
        .ok_or_else(|| format!("persistentvolume \"{volume_name}\" not found"))?;
    let spec = pv.spec.unwrap_or_default();
    let bound_uid = spec.claim_ref.as_ref().and_then(|r| r.uid.clone());
    let claim_uid = pvc.metadata.uid.clone();
    if bound_uid.is_some() && claim_uid.is_some() && bound_uid != claim_uid {
        return Err(format!(
            "PV {volume_name} is bound to another claim than {ns}/{claim}"
        ));
    }
    if let Some(hp) = &spec.host_path {
        check_type(&hp.path, hp.type_.as_deref().unwrap_or(""))?;
        return Ok(PathBuf::from(&hp.path));
    }
    if let Some(local) = &spec.local {
        if !Path::new(&local.path).exists() {
            return Err(format!("path \"{}\" does not exist", local.path));
        }
        return Ok(PathBuf::from(&local.path));
    }
    Err(format!(
        "PV {volume_name}: only hostPath and local PersistentVolumes can be mounted on this node"
    ))
}

/// `Ok(true)` when `path` exists as anything (a dangling symlink included).
pub fn lexists(path: &Path) -> io::Result<bool> {
    match fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn type_checks() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let file = d.join("f");
        fs::write(&file, "x").unwrap();
        let sock_path = d.join("s.sock");
        let _sock = std::os::unix::net::UnixListener::bind(&sock_path).unwrap();
        let s = |p: &Path| p.to_str().unwrap().to_string();
        let missing = d.join("missing");

        let cases: Vec<(String, &str, Result<(), String>)> = vec![
            (s(d), "Directory", Ok(())),
            (s(d), "", Ok(())),
            (s(&missing), "", Ok(())),
            (
                s(&file),
                "Directory",
                Err(format!(
                    "hostPath type check failed: {} is not a directory",
                    s(&file)
                )),
            ),
            (
                s(&missing),
                "Directory",
                Err(format!(
                    "hostPath type check failed: {} is not a directory",
                    s(&missing)
                )),
            ),
            (s(&file), "File", Ok(())),
            (
                s(d),
                "File",
                Err(format!(
                    "hostPath type check failed: {} is not a file",
                    s(d)
                )),
            ),
            (s(&sock_path), "Socket", Ok(())),
            (
                s(&file),
                "Socket",
                Err(format!(
                    "hostPath type check failed: {} is not a socket file",
                    s(&file)
                )),
            ),
            ("/dev/null".into(), "CharDevice", Ok(())),
            (
                s(&file),
                "CharDevice",
                Err(format!(
                    "hostPath type check failed: {} is not a character device",
                    s(&file)
                )),
            ),
            (
                "/dev/null".into(),
                "BlockDevice",
                Err("hostPath type check failed: /dev/null is not a block device".into()),
            ),
            (s(d), "Bogus", Err("Bogus is an invalid volume type".into())),
            (
                s(&file),
                "DirectoryOrCreate",
                Err(format!(
                    "hostPath type check failed: {} is not a directory",
                    s(&file)
                )),
            ),
            (
                s(d),
                "FileOrCreate",
                Err(format!(
                    "hostPath type check failed: {} is not a file",
                    s(d)
                )),
            ),
        ];
        for (path, t, want) in cases {
            assert_eq!(check_type(&path, t), want, "{path} {t}");
        }

        let newdir = d.join("a/b/c");
        check_type(newdir.to_str().unwrap(), "DirectoryOrCreate").unwrap();
        let m = fs::metadata(&newdir).unwrap();
        assert!(m.is_dir());
        assert_eq!(m.permissions().mode() & 0o777, 0o755 & !umask());
        let newfile = d.join("new.txt");
        check_type(newfile.to_str().unwrap(), "FileOrCreate").unwrap();
        assert!(fs::metadata(&newfile).unwrap().is_file());
        // FileOrCreate does not create missing parents, as the kubelet's does not.
        assert!(check_type(d.join("no/such.txt").to_str().unwrap(), "FileOrCreate").is_err());
    }

    fn umask() -> u32 {
        // SAFETY: umask is process-wide but restoring it immediately is harmless.
        unsafe {
            let m = libc::umask(0o022);
            libc::umask(m);
            m as u32
        }
    }
}
