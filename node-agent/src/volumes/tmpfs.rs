//! tmpfs mounts for memory-backed volumes (emptyDir `medium: Memory`, and secret and
//! projected volumes, which the kubelet keeps off the disk), and the mount table
//! reads that make setup idempotent and teardown complete.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Mount a tmpfs on `dir` unless one is already there. `size` in bytes (none: the
/// kernel's default of half the memory).
pub fn mount_tmpfs(dir: &Path, size: Option<u128>) -> io::Result<()> {
    if is_mount_point(dir)? {
        return Ok(());
    }
    let target = cstr(dir)?;
    let source = CString::new("tmpfs").expect("no NUL");
    let data = CString::new(match size {
        Some(s) => format!("size={s}"),
        None => String::new(),
    })
    .expect("no NUL");
    // SAFETY: all pointers are valid NUL-terminated strings for the call's duration.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            source.as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV,
            data.as_ptr().cast(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Unmount `dir`; a busy mount is detached (lazily unmounted) instead.
pub fn unmount(dir: &Path) -> io::Result<()> {
    let target = cstr(dir)?;
    // SAFETY: a valid NUL-terminated path.
    if unsafe { libc::umount2(target.as_ptr(), 0) } == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() != Some(libc::EBUSY) {
        return Err(err);
    }
    // SAFETY: as above.
    if unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn cstr(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
}

/// Mount points of this process's mount namespace (from `/proc/self/mountinfo`).
pub fn mount_points() -> io::Result<Vec<PathBuf>> {
    let info = std::fs::read_to_string("/proc/self/mountinfo")?;
    Ok(info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape_mountinfo(p)))
        .collect())
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether `dir` (resolved) is a mount point.
pub fn is_mount_point(dir: &Path) -> io::Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let dir = dir.canonicalize()?;
    // A directory on another device than its parent is the root of a mount: answered
    // without reading the mount table, which every resync of every pod would otherwise
    // do (with 100 pods, a third of the agent's CPU went to the kernel formatting
    // mountinfo). A bind mount from the same device still needs the table.
    if let Some(parent) = dir.parent() {
        if std::fs::metadata(&dir)?.dev() != std::fs::metadata(parent)?.dev() {
            return Ok(true);
        }
    }
    Ok(mount_points()?.contains(&dir))
}

/// Mount points at or under `dir`, deepest first.
pub fn mounts_under(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let dir = match dir.canonicalize() {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(e),
    };
    let mut found: Vec<PathBuf> = mount_points()?
        .into_iter()
        .filter(|m| m.starts_with(&dir))
        .collect();
    found.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
    found.dedup();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescapes_mountinfo_paths() {
        assert_eq!(unescape_mountinfo("/a\\040b"), "/a b");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
        assert_eq!(unescape_mountinfo("/end\\04"), "/end\\04");
    }

    #[test]
    fn mounts_sized_tmpfs_once_and_unmounts() {
        let dir = tempfile::tempdir().unwrap();
        let m = dir.path().join("mem");
        std::fs::create_dir(&m).unwrap();
        mount_tmpfs(&m, Some(1 << 20)).unwrap();
        assert!(is_mount_point(&m).unwrap());
        // Idempotent: a second call does not stack another mount.
        mount_tmpfs(&m, Some(1 << 20)).unwrap();
        assert_eq!(mounts_under(dir.path()).unwrap().len(), 1);
        let st = nix_statfs(&m);
        assert_eq!(st, 1 << 20, "size= honoured");
        unmount(&m).unwrap();
        assert!(!is_mount_point(&m).unwrap());
        assert!(mounts_under(dir.path()).unwrap().is_empty());
    }

    fn nix_statfs(p: &Path) -> u64 {
        let c = cstr(p).unwrap();
        let mut st: libc::statfs = unsafe { std::mem::zeroed() };
        // SAFETY: valid path and out-pointer.
        assert_eq!(unsafe { libc::statfs(c.as_ptr(), &mut st) }, 0);
        st.f_blocks * st.f_bsize as u64
    }
}
