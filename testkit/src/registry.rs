//! A real image registry for tests: Debian's `docker-registry` (the distribution
//! registry) serving plain HTTP on an address the test chooses (loopback, or a test
//! bridge's own address so that nodes in their namespaces reach it), optionally behind
//! htpasswd basic auth, filled with skopeo. Stopped by its pid when dropped.

use crate::{spawn, wait_for_port, Proc};
use anyhow::{bail, Context};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// A running registry.
pub struct TestRegistry {
    proc_: Proc,
    addr: SocketAddr,
    credentials: Option<(String, String)>,
    dir: tempfile::TempDir,
}

impl TestRegistry {
    /// Start a registry listening on `ip` (a free port), requiring `credentials`
    /// (user, password) when given.
    pub fn start(ip: IpAddr, credentials: Option<(&str, &str)>) -> anyhow::Result<TestRegistry> {
        let dir = tempfile::Builder::new()
            .prefix("keelson-registry-")
            .tempdir()?;
        let addr = SocketAddr::new(ip, crate::free_port());
        let mut config = format!(
            "version: 0.1\nlog: {{level: warn}}\nstorage:\n  filesystem: {{rootdirectory: {}}}\n  delete: {{enabled: true}}\nhttp:\n  addr: \"{addr}\"\n",
            dir.path().join("data").display()
        );
        if let Some((user, password)) = credentials {
            let htpasswd = dir.path().join("htpasswd");
            std::fs::write(&htpasswd, format!("{user}:{}\n", bcrypt(password)?))?;
            config.push_str(&format!(
                "auth:\n  htpasswd: {{realm: keelson-test, path: {}}}\n",
                htpasswd.display()
            ));
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config)?;
        let log = std::fs::File::create(dir.path().join("registry.log"))?;
        let child = spawn(
            Command::new("docker-registry")
                .arg("serve")
                .arg(&config_path)
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log),
        )
        .context("starting docker-registry (apt-get install docker-registry)")?;
        let mut proc_ = Proc {
            child,
            name: format!("docker-registry {addr}"),
        };
        if let Err(e) = wait_for_port(addr, Duration::from_secs(20), &mut proc_) {
            let log = std::fs::read_to_string(dir.path().join("registry.log")).unwrap_or_default();
            bail!("{e:#}\n{log}");
        }
        Ok(TestRegistry {
            proc_,
            addr,
            credentials: credentials.map(|(u, p)| (u.to_string(), p.to_string())),
            dir,
        })
    }

    /// `ip:port`, as image references and registry configurations name it.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    pub fn pid(&self) -> u32 {
        self.proc_.pid()
    }

    /// Copy the single image of the OCI archive `archive` to `<host>/<repo_tag>` with
    /// skopeo; returns the manifest digest the registry stores it under.
    pub fn push_archive(&self, archive: &Path, repo_tag: &str) -> anyhow::Result<String> {
        let digest_file = self.dir.path().join("pushed.digest");
        let mut cmd = Command::new("skopeo");
        cmd.arg("copy")
            .arg("--dest-tls-verify=false")
            .arg("--digestfile")
            .arg(&digest_file);
        if let Some((u, p)) = &self.credentials {
            cmd.arg(format!("--dest-creds={u}:{p}"));
        }
        let out = cmd
            .arg(format!("oci-archive:{}", archive.display()))
            .arg(format!("docker://{}/{repo_tag}", self.host()))
            .stdin(Stdio::null())
            .output()
            .context("running skopeo (apt-get install skopeo)")?;
        if !out.status.success() {
            bail!(
                "skopeo copy to {}/{repo_tag}: {}",
                self.host(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(std::fs::read_to_string(&digest_file)?.trim().to_string())
    }

    /// The registry's log so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }
}

#[link(name = "crypt")]
extern "C" {
    fn crypt(key: *const libc::c_char, setting: *const libc::c_char) -> *mut libc::c_char;
}

/// A bcrypt hash of `password` (what docker-registry's htpasswd auth accepts), from
/// the system's libcrypt (libxcrypt): no htpasswd tool or extra crate needed.
pub fn bcrypt(password: &str) -> anyhow::Result<String> {
    const ALPHABET: &[u8] = b"./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos() as u64
        ^ (std::process::id() as u64) << 32;
    let mut salt = String::from("$2b$05$");
    for i in 0..22 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        // The last character carries only 2 bits of the salt: keep it canonical.
        let c = if i == 21 {
            b'.'
        } else {
            ALPHABET[(seed >> 58) as usize]
        };
        salt.push(c as char);
    }
    let key = std::ffi::CString::new(password)?;
    let setting = std::ffi::CString::new(salt)?;
    // crypt() returns a static buffer: copy it out under a lock.
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let hashed = unsafe { crypt(key.as_ptr(), setting.as_ptr()) };
    if hashed.is_null() {
        bail!("libcrypt has no bcrypt");
    }
    let hashed = unsafe { std::ffi::CStr::from_ptr(hashed) }
        .to_string_lossy()
        .into_owned();
    if !hashed.starts_with("$2b$05$") || hashed.len() != 60 {
        bail!("libcrypt gave no bcrypt hash: {hashed:?}");
    }
    Ok(hashed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bcrypt_hashes_verify() {
        let h = bcrypt("s3cret").unwrap();
        assert!(h.starts_with("$2b$05$") && h.len() == 60, "{h}");
        // Hashing again with the stored hash as the setting gives the same hash.
        let key = std::ffi::CString::new("s3cret").unwrap();
        let setting = std::ffi::CString::new(h.clone()).unwrap();
        let again = unsafe { std::ffi::CStr::from_ptr(crypt(key.as_ptr(), setting.as_ptr())) };
        assert_eq!(again.to_str().unwrap(), h);
        assert_ne!(bcrypt("other").unwrap(), h);
    }

    #[test]
    fn a_registry_with_auth_refuses_anonymous_pushes() {
        let (_, busybox) = crate::node::image_archives().unwrap();
        let open = TestRegistry::start("127.0.0.1".parse().unwrap(), None).unwrap();
        let digest = open.push_archive(&busybox, "t/busybox:1").unwrap();
        assert!(digest.starts_with("sha256:"), "{digest}");
        let locked = TestRegistry::start("127.0.0.1".parse().unwrap(), Some(("u", "p"))).unwrap();
        locked.push_archive(&busybox, "t/busybox:1").unwrap();
        let anonymous = TestRegistry {
            credentials: None,
            ..locked
        };
        let err = anonymous.push_archive(&busybox, "t/other:1").unwrap_err();
        assert!(
            format!("{err:#}").contains("authentication required"),
            "{err:#}"
        );
    }
}
