//! Files of configMap, secret, downwardAPI and projected volumes, written as the
//! kubelet's AtomicWriter writes them so a container never sees half an update:
//!
//! ```text
//! <volume>/..2026_12_07_12_30_00.1234567   the payload, one directory per version
//! <volume>/..data -> ..2026_12_07_12_30_00.1234567   swapped with one rename
//! <volume>/<key>  -> ..data/<key>          what the user sees, stable across versions
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use super::ownership;

const DATA_DIR: &str = "..data";
const DATA_DIR_TMP: &str = "..data_tmp";
const MAX_PATH_LEN: usize = 4096;
const MAX_FILE_NAME_LEN: usize = 255;

/// One file of a payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileProjection {
    pub data: Vec<u8>,
    /// Permission bits (`0644` unless the volume says otherwise).
    pub mode: u32,
}

/// Relative path → file.
pub type Payload = BTreeMap<String, FileProjection>;

/// Check and clean the payload's paths: relative, no `..` element, not starting with
/// `..`, within length limits.
pub fn validate_payload(payload: Payload) -> Result<Payload, String> {
    let mut out = Payload::new();
    for (path, file) in payload {
        let cleaned = validate_path(&path)?;
        out.insert(cleaned, file);
    }
    Ok(out)
}

fn validate_path(path: &str) -> Result<String, String> {
    if path.is_empty() {
        return Err("invalid path: must not be empty".into());
    }
    if path.len() > MAX_PATH_LEN {
        return Err(format!(
            "invalid path: must be less than or equal to {MAX_PATH_LEN} characters"
        ));
    }
    if Path::new(path).is_absolute() {
        return Err(format!("invalid path: must be relative path: {path}"));
    }
    if path.starts_with("..") {
        return Err(format!("invalid path: must not start with '..': {path}"));
    }
    let mut parts = Vec::new();
    for c in Path::new(path).components() {
        match c {
            Component::Normal(s) => {
                let s = s.to_string_lossy();
                if s.len() > MAX_FILE_NAME_LEN {
                    return Err(format!("invalid path: element too long: {path}"));
                }
                parts.push(s.into_owned());
            }
            Component::CurDir => {}
            _ => return Err(format!("invalid path: must not contain '..': {path}")),
        }
    }
    if parts.is_empty() {
        return Err(format!("invalid path: {path}"));
    }
    Ok(parts.join("/"))
}

/// Make `target` show `payload`, swapping atomically. Nothing is written when the
/// current version already holds exactly this payload. `fs_group` (the pod's
/// `fsGroup`) owns the new files. Returns whether a new version was written.
pub fn write(target: &Path, payload: &Payload, fs_group: Option<u32>) -> io::Result<bool> {
    let payload = validate_payload(payload.clone())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let old_dir = fs::read_link(target.join(DATA_DIR)).ok();
    let changed = match &old_dir {
        Some(old) => !same_payload(&target.join(old), &payload, fs_group.is_some())?,
        None => true,
    };
    if changed {
        let ts = new_version_dir(target)?;
        for (path, file) in &payload {
            let dest = ts.join(path);
            if let Some(parent) = dest.parent() {
                create_dirs(parent)?;
            }
            fs::write(&dest, &file.data)?;
            fs::set_permissions(&dest, fs::Permissions::from_mode(file.mode & 0o7777))?;
        }
        if let Some(gid) = fs_group {
            ownership::set_volume_ownership(&ts, gid, true)?;
        }
        let ts_name = ts
            .file_name()
            .expect("a version directory has a name")
            .to_owned();
        let tmp = target.join(DATA_DIR_TMP);
        let _ = fs::remove_file(&tmp);
        symlink(&ts_name, &tmp)?;
        fs::rename(&tmp, target.join(DATA_DIR))?;
        if let Some(old) = &old_dir {
            if old.as_os_str() != ts_name {
                fs::remove_dir_all(target.join(old))?;
            }
        }
    }
    sync_user_visible(target, &payload)?;
    Ok(changed)
}

/// `..YYYY_MM_DD_HH_MM_SS.<random>`, mode 0755.
fn new_version_dir(target: &Path) -> io::Result<PathBuf> {
    let stamp = chrono::Utc::now().format("%Y_%m_%d_%H_%M_%S");
    loop {
        let n: u32 = rand::random::<u32>() % 1_000_000_000;
        let dir = target.join(format!("..{stamp}.{n}"));
        match fs::create_dir(&dir) {
            Ok(()) => {
                fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))?;
                return Ok(dir);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

fn create_dirs(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        create_dirs(parent)?;
    }
    match fs::create_dir(dir) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
        _ => {}
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755))
}

/// Whether `dir` holds exactly the payload's files with its contents and modes.
fn same_payload(dir: &Path, payload: &Payload, fs_group: bool) -> io::Result<bool> {
    let mut found = BTreeSet::new();
    if !collect_files(dir, dir, &mut found)? {
        return Ok(false);
    }
    if found.len() != payload.len() || payload.keys().any(|k| !found.contains(k)) {
        return Ok(false);
    }
    for (path, file) in payload {
        let p = dir.join(path);
        let meta = fs::symlink_metadata(&p)?;
        // With an fsGroup the files were made group-readable after writing.
        let want = file.mode & 0o7777 | if fs_group { ownership::RO_MASK } else { 0 };
        if meta.permissions().mode() & 0o7777 != want {
            return Ok(false);
        }
        if fs::read(&p)? != file.data {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Regular files under `dir` as relative paths; false when something else is there.
fn collect_files(root: &Path, dir: &Path, out: &mut BTreeSet<String>) -> io::Result<bool> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let ft = entry.file_type()?;
        if ft.is_dir() {
            if !collect_files(root, &entry.path(), out)? {
                return Ok(false);
            }
        } else if ft.is_file() {
            let rel = entry
                .path()
                .strip_prefix(root)
                .map_err(io::Error::other)?
                .to_string_lossy()
                .into_owned();
            out.insert(rel);
        } else {
            return Ok(false);
        }
    }
    Ok(true)
}

/// One `<name> -> ..data/<name>` symlink per top-level name of the payload; names of
/// earlier versions that are gone are removed.
fn sync_user_visible(target: &Path, payload: &Payload) -> io::Result<()> {
    let wanted: BTreeSet<&str> = payload
        .keys()
        .map(|p| p.split('/').next().unwrap_or(p))
        .collect();
    for name in &wanted {
        let link = target.join(name);
        let dest = Path::new(DATA_DIR).join(name);
        match fs::read_link(&link) {
            Ok(current) if current == dest => {}
            Ok(_) => {
                fs::remove_file(&link)?;
                symlink(&dest, &link)?;
            }
            Err(_) => {
                if fs::symlink_metadata(&link).is_ok() {
                    // Something that is not ours; leave it and say so.
                    return Err(io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        format!("{} exists and is not a payload link", link.display()),
                    ));
                }
                symlink(&dest, &link)?;
            }
        }
    }
    for entry in fs::read_dir(target)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("..") || wanted.contains(name.as_str()) {
            continue;
        }
        let Ok(dest) = fs::read_link(entry.path()) else {
            continue;
        };
        if dest.starts_with(DATA_DIR) {
            fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(files: &[(&str, &str, u32)]) -> Payload {
        files
            .iter()
            .map(|(p, d, m)| {
                (
                    p.to_string(),
                    FileProjection {
                        data: d.as_bytes().to_vec(),
                        mode: *m,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn writes_versions_behind_data_link_and_swaps() {
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path();
        let p1 = payload(&[("a", "1", 0o644), ("sub/b", "2", 0o600)]);
        assert!(write(t, &p1, None).unwrap());
        let v1 = fs::read_link(t.join("..data")).unwrap();
        assert!(v1.to_string_lossy().starts_with("..20"), "{v1:?}");
        assert_eq!(fs::read_link(t.join("a")).unwrap(), Path::new("..data/a"));
        assert_eq!(
            fs::read_link(t.join("sub")).unwrap(),
            Path::new("..data/sub")
        );
        assert_eq!(fs::read_to_string(t.join("sub/b")).unwrap(), "2");
        let mode = fs::metadata(t.join("sub/b")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);

        // The same payload writes nothing.
        assert!(!write(t, &p1, None).unwrap());
        assert_eq!(fs::read_link(t.join("..data")).unwrap(), v1);

        // A new payload: a new version, the old one and its vanished names gone.
        let p2 = payload(&[("a", "one", 0o644), ("c", "3", 0o400)]);
        assert!(write(t, &p2, None).unwrap());
        let v2 = fs::read_link(t.join("..data")).unwrap();
        assert_ne!(v1, v2);
        assert!(!t.join(&v1).exists());
        assert!(fs::symlink_metadata(t.join("sub")).is_err());
        assert_eq!(fs::read_to_string(t.join("a")).unwrap(), "one");
        assert_eq!(fs::read_to_string(t.join("c")).unwrap(), "3");
        assert!(!t.join("..data_tmp").exists());

        // A mode change alone is a change.
        let p3 = payload(&[("a", "one", 0o644), ("c", "3", 0o444)]);
        assert!(write(t, &p3, None).unwrap());
    }

    #[test]
    fn refuses_escaping_paths() {
        for bad in ["../x", "a/../../x", "/etc/passwd", "..data", "", "a/.."] {
            let dir = tempfile::tempdir().unwrap();
            let err = write(dir.path(), &payload(&[(bad, "x", 0o644)]), None).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{bad}");
        }
        assert_eq!(validate_path("./a//b").unwrap(), "a/b");
    }
}
