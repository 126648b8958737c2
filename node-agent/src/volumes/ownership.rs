//! `fsGroup`: the kubelet's SetVolumeOwnership. Every file and directory of a volume
//! goes to the group, gains group read (and write on writable volumes), and
//! directories gain the setgid bit so new files inherit the group.

use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Group (and owner) bits added on writable volumes.
pub const RW_MASK: u32 = 0o660;
/// Bits added on read-only volumes (configMap, secret, downwardAPI, projected).
pub const RO_MASK: u32 = 0o440;
const EXEC_MASK: u32 = 0o110;
const SETGID: u32 = 0o2000;

/// Give `root` and everything under it (symlinks not followed) to group `gid`.
pub fn set_volume_ownership(root: &Path, gid: u32, read_only: bool) -> io::Result<()> {
    let meta = fs::symlink_metadata(root)?;
    lchown_group(root, gid)?;
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    let mut mask = if read_only { RO_MASK } else { RW_MASK };
    if meta.is_dir() {
        mask |= SETGID | EXEC_MASK;
    }
    fs::set_permissions(
        root,
        fs::Permissions::from_mode((meta.permissions().mode() & 0o7777) | mask),
    )?;
    if meta.is_dir() {
        for entry in fs::read_dir(root)? {
            set_volume_ownership(&entry?.path(), gid, read_only)?;
        }
    }
    Ok(())
}

fn lchown_group(path: &Path, gid: u32) -> io::Result<()> {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: a valid NUL-terminated path; uid -1 leaves the owner unchanged.
    let rc = unsafe { libc::lchown(c.as_ptr(), u32::MAX, gid) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn group_setgid_and_masks() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("v");
        fs::create_dir(&root).unwrap();
        fs::set_permissions(&root, fs::Permissions::from_mode(0o700)).unwrap();
        fs::write(root.join("f"), "x").unwrap();
        fs::set_permissions(root.join("f"), fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", root.join("link")).unwrap();
        let before = fs::metadata("/etc/hostname").map(|m| m.gid()).ok();

        set_volume_ownership(&root, 4321, false).unwrap();
        let d = fs::metadata(&root).unwrap();
        assert_eq!(d.gid(), 4321);
        assert_eq!(d.permissions().mode() & 0o7777, 0o2770);
        let f = fs::metadata(root.join("f")).unwrap();
        assert_eq!(f.gid(), 4321);
        assert_eq!(f.permissions().mode() & 0o777, 0o660);
        // The link itself changes group, never its target.
        assert_eq!(fs::symlink_metadata(root.join("link")).unwrap().gid(), 4321);
        assert_eq!(fs::metadata("/etc/hostname").map(|m| m.gid()).ok(), before);

        fs::set_permissions(root.join("f"), fs::Permissions::from_mode(0o600)).unwrap();
        set_volume_ownership(&root.join("f"), 4321, true).unwrap();
        let f = fs::metadata(root.join("f")).unwrap();
        assert_eq!(f.permissions().mode() & 0o777, 0o640);
    }
}
