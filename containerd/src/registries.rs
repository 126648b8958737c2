//! Registry mirrors and credentials per registry host, in one file shaped as k3s's
//! `registries.yaml`:
//!
//! ```yaml
//! mirrors:
//!   docker.io:
//!     endpoint: ["http://10.0.0.1:5000"]
//! configs:
//!   "10.0.0.1:5000":
//!     auth: {username: u, password: p}
//!     tls: {insecure_skip_verify: true}
//! ```
//!
//! containerd 1.6 takes this in two places: mirrors and TLS as one `hosts.toml` per
//! registry host in the CRI plugin's `registry.config_path` directory (read at every
//! pull, so changes need no restart), and credentials as
//! `registry.configs."<host>".auth` in its own configuration (the hosts files carry no
//! credentials in 1.6; the CRI looks them up by the host it is talking to, so a
//! mirror's credentials are keyed by the mirror's host). `configs.<host>.tls` may not
//! sit in the configuration once `config_path` is set, so TLS goes into the hosts files.

use anyhow::{bail, Context};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::config::quote;

/// The parsed `registries.yaml`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registries {
    /// Per registry host (as images name it: `docker.io`, `10.0.0.1:5000`), the
    /// endpoints to pull from, in order.
    #[serde(default)]
    pub mirrors: BTreeMap<String, Mirror>,
    /// Per host contacted (a registry or a mirror endpoint's host): credentials and TLS.
    #[serde(default)]
    pub configs: BTreeMap<String, RegistryConfig>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mirror {
    /// URLs (`http://host:port` or `https://host[/path]`), tried in order.
    #[serde(default)]
    pub endpoint: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    pub auth: Option<RegistryAuth>,
    pub tls: Option<RegistryTls>,
}

/// Credentials as containerd's CRI `AuthConfig`: a user and password, a base64
/// `user:password`, or an identity token.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryAuth {
    pub username: Option<String>,
    pub password: Option<String>,
    pub auth: Option<String>,
    pub identity_token: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryTls {
    /// Client certificate and key (both or neither).
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// CA bundle that signs the registry's certificate.
    pub ca_file: Option<PathBuf>,
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// First line of every hosts file Keelson writes: files without it are an operator's
/// and are never touched.
const MARKER: &str = "# Written by keelson from the registries configuration; edits are replaced.";

impl Registries {
    /// Parse and check a `registries.yaml` document (an empty document is no settings).
    pub fn parse(yaml: &str) -> anyhow::Result<Registries> {
        if yaml.trim().is_empty() {
            return Ok(Registries::default());
        }
        let r: Option<Registries> =
            serde_yaml::from_str(yaml).context("the registries configuration is not valid")?;
        let r = r.unwrap_or_default();
        r.validate()?;
        Ok(r)
    }

    /// [`Registries::parse`] of the file at `path`.
    pub fn load(path: &Path) -> anyhow::Result<Registries> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Registries::parse(&text).with_context(|| format!("in {}", path.display()))
    }

    fn validate(&self) -> anyhow::Result<()> {
        for (host, mirror) in &self.mirrors {
            check_host(host).with_context(|| format!("mirrors: {host:?}"))?;
            for e in &mirror.endpoint {
                endpoint_host(e).with_context(|| format!("mirrors.{host}.endpoint"))?;
            }
        }
        for (host, config) in &self.configs {
            check_host(host).with_context(|| format!("configs: {host:?}"))?;
            if let Some(a) = &config.auth {
                let user = a.username.as_deref().is_some_and(|u| !u.is_empty());
                let token = a.identity_token.as_deref().is_some_and(|t| !t.is_empty());
                let auth = a.auth.as_deref().is_some_and(|t| !t.is_empty());
                if !user && !token && !auth {
                    bail!(
                        "configs.{host}.auth: needs username and password, auth or identity_token"
                    );
                }
            }
            if let Some(t) = &config.tls {
                if t.cert_file.is_some() != t.key_file.is_some() {
                    bail!("configs.{host}.tls: cert_file and key_file go together");
                }
            }
        }
        Ok(())
    }

    /// The `hosts.toml` of every registry host that needs one, by directory name (the
    /// host itself): each mirrored registry, and each host with TLS settings.
    pub fn hosts_files(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let tls_hosts = self
            .configs
            .iter()
            .filter(|(_, c)| c.tls.is_some())
            .map(|(h, _)| h);
        let mut hosts: Vec<&String> = self.mirrors.keys().chain(tls_hosts).collect();
        hosts.sort();
        hosts.dedup();
        for host in hosts {
            out.insert(host.clone(), self.render_hosts(host));
        }
        out
    }

    /// One registry's `hosts.toml`: its endpoints as `[host."URL"]` entries (pull and
    /// resolve, as mirrors are) tried in order, then the registry itself as `server`.
    /// An endpoint on the registry's own host names its scheme (the way to say a
    /// registry speaks plain HTTP) and is also the server.
    fn render_hosts(&self, host: &str) -> String {
        let endpoints: &[String] = self
            .mirrors
            .get(host)
            .map(|m| m.endpoint.as_slice())
            .unwrap_or_default();
        let upstream = if host == "docker.io" {
            "registry-1.docker.io"
        } else {
            host
        };
        let own = endpoints
            .iter()
            .find(|e| endpoint_host(e).is_ok_and(|h| h == host || h == upstream));
        let server = match own {
            Some(e) => e.trim_end_matches('/').to_string(),
            None => format!("https://{upstream}"),
        };
        let mut s = String::new();
        let _ = writeln!(s, "{MARKER}");
        let _ = writeln!(s, "server = {}", quote(&server));
        let server_host = endpoint_host(&server).unwrap_or_default();
        self.render_tls(&mut s, &server_host, "");
        // Every endpoint, the server's own too, and the server when there is no
        // endpoint: containerd 1.6 refuses a hosts file without a `[host]` table
        // ("invalid `host` tree") and falls back to HTTPS.
        let only_server = [server.clone()];
        let entries = if endpoints.is_empty() {
            &only_server[..]
        } else {
            endpoints
        };
        for e in entries {
            let _ = writeln!(s, "\n[host.{}]", quote(e.trim_end_matches('/')));
            let _ = writeln!(s, "  capabilities = [\"pull\", \"resolve\"]");
            let h = endpoint_host(e).unwrap_or_default();
            self.render_tls(&mut s, &h, "  ");
        }
        s
    }

    fn render_tls(&self, s: &mut String, host: &str, indent: &str) {
        let Some(tls) = self.configs.get(host).and_then(|c| c.tls.as_ref()) else {
            return;
        };
        if tls.insecure_skip_verify {
            let _ = writeln!(s, "{indent}skip_verify = true");
        }
        if let Some(ca) = &tls.ca_file {
            let _ = writeln!(s, "{indent}ca = {}", quote(&ca.to_string_lossy()));
        }
        if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
            let _ = writeln!(
                s,
                "{indent}client = [[{}, {}]]",
                quote(&cert.to_string_lossy()),
                quote(&key.to_string_lossy())
            );
        }
    }

    /// Credentials by the host they are presented to.
    pub fn auths(&self) -> BTreeMap<String, RegistryAuth> {
        self.configs
            .iter()
            .filter_map(|(h, c)| Some((h.clone(), c.auth.clone()?)))
            .collect()
    }

    /// Write [`Registries::hosts_files`] into `dir` (containerd's `config_path`), each
    /// through a temporary file, and remove the host directories an earlier call wrote
    /// that are no longer configured. Files an operator wrote are left alone.
    pub fn write_hosts_dir(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let files = self.hosts_files();
        for (host, text) in &files {
            let host_dir = dir.join(host);
            let path = host_dir.join("hosts.toml");
            if is_foreign(&path) {
                tracing::warn!(file = %path.display(), "not replacing a hosts.toml keelson did not write");
                continue;
            }
            std::fs::create_dir_all(&host_dir)?;
            let tmp = host_dir.join(".hosts.toml.tmp");
            std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
            std::fs::rename(&tmp, &path)?;
        }
        for entry in std::fs::read_dir(dir)?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path().join("hosts.toml");
            if !files.contains_key(&name) && path.is_file() && !is_foreign(&path) {
                std::fs::remove_file(&path)?;
                let _ = std::fs::remove_dir(entry.path());
            }
        }
        Ok(())
    }
}

/// A hosts file that exists and was not written by [`Registries::write_hosts_dir`].
fn is_foreign(path: &Path) -> bool {
    match std::fs::read_to_string(path) {
        Ok(text) => !text.starts_with(MARKER),
        Err(_) => false,
    }
}

/// A registry host as images name it, and safe as a directory name: `name[:port]` or
/// `[v6]:port`, no scheme, no path.
fn check_host(host: &str) -> anyhow::Result<()> {
    if host == "*" {
        bail!("containerd 1.6 has no default registry configuration: name each registry host");
    }
    let ok_chars = host
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_' | '[' | ']'));
    if host.is_empty() || !ok_chars || host.starts_with('.') || host.contains("..") {
        bail!("not a registry host (expected name[:port], without scheme or path)");
    }
    Ok(())
}

/// The `host[:port]` of an endpoint URL with an http or https scheme.
fn endpoint_host(endpoint: &str) -> anyhow::Result<String> {
    let u = url::Url::parse(endpoint).with_context(|| format!("{endpoint:?} is not a URL"))?;
    if u.scheme() != "http" && u.scheme() != "https" {
        bail!("{endpoint:?}: only http and https endpoints");
    }
    let host = u
        .host_str()
        .with_context(|| format!("{endpoint:?} has no host"))?;
    Ok(match u.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
mirrors:
  docker.io:
    endpoint: ["http://127.0.0.1:5000", "https://mirror.example:8443/v2"]
  "10.1.2.3:5000":
    endpoint: ["http://10.1.2.3:5000"]
configs:
  "127.0.0.1:5000":
    auth: {username: alice, password: "s3cret \"quoted\""}
  "mirror.example:8443":
    tls: {insecure_skip_verify: true, ca_file: /etc/ca.pem, cert_file: /c.pem, key_file: /k.pem}
  private.example:
    auth: {identity_token: tok}
"#;

    #[test]
    fn mirrors_become_hosts_files() {
        let r = Registries::parse(EXAMPLE).unwrap();
        let files = r.hosts_files();
        assert_eq!(
            files.keys().collect::<Vec<_>>(),
            ["10.1.2.3:5000", "docker.io", "mirror.example:8443"]
        );
        let docker = &files["docker.io"];
        assert!(docker.starts_with(MARKER));
        assert!(
            docker.contains("server = \"https://registry-1.docker.io\"\n"),
            "{docker}"
        );
        let local = docker.find("[host.\"http://127.0.0.1:5000\"]").unwrap();
        let remote = docker
            .find("[host.\"https://mirror.example:8443/v2\"]")
            .unwrap();
        assert!(local < remote, "endpoints keep their order:\n{docker}");
        assert!(docker.contains("capabilities = [\"pull\", \"resolve\"]"));
        assert!(docker.contains("  skip_verify = true\n  ca = \"/etc/ca.pem\"\n  client = [[\"/c.pem\", \"/k.pem\"]]"), "{docker}");
        // The local endpoint has no TLS settings.
        let local_block = &docker[local..remote];
        assert!(!local_block.contains("skip_verify"), "{local_block}");
        // A registry that names itself over plain HTTP: that is its server.
        let plain = &files["10.1.2.3:5000"];
        assert!(
            plain.contains("server = \"http://10.1.2.3:5000\"\n"),
            "{plain}"
        );
        assert!(plain.contains("[host.\"http://10.1.2.3:5000\"]"), "{plain}");
        // A TLS-only host gets its own file, with TLS at the top (the server's).
        let tls = &files["mirror.example:8443"];
        assert!(tls.contains("[host.\"https://mirror.example:8443\"]\n  capabilities = [\"pull\", \"resolve\"]\n  skip_verify = true"), "{tls}");
        assert!(
            tls.contains("server = \"https://mirror.example:8443\"\nskip_verify = true\n"),
            "{tls}"
        );
    }

    #[test]
    fn credentials_by_host() {
        let r = Registries::parse(EXAMPLE).unwrap();
        let auths = r.auths();
        assert_eq!(auths.len(), 2);
        assert_eq!(auths["127.0.0.1:5000"].username.as_deref(), Some("alice"));
        assert_eq!(
            auths["private.example"].identity_token.as_deref(),
            Some("tok")
        );
    }

    #[test]
    fn empty_documents_are_no_settings() {
        assert_eq!(Registries::parse("").unwrap(), Registries::default());
        assert_eq!(
            Registries::parse("# nothing\n").unwrap(),
            Registries::default()
        );
        assert_eq!(
            Registries::parse("mirrors: {}\n").unwrap(),
            Registries::default()
        );
    }

    #[test]
    fn bad_documents_are_errors() {
        for bad in [
            "mirrors: [1, 2]",
            "mirrors: {docker.io: {endpoints: [\"http://x\"]}}",
            "mirrors: {docker.io: {endpoint: [\"ftp://x\"]}}",
            "mirrors: {docker.io: {endpoint: [\"not a url\"]}}",
            "mirrors: {\"../etc\": {endpoint: [\"http://x\"]}}",
            "mirrors: {\"https://docker.io\": {endpoint: [\"http://x\"]}}",
            "mirrors: {\"*\": {endpoint: [\"http://x\"]}}",
            "configs: {\"a/b\": {auth: {username: u, password: p}}}",
            "configs: {x.io: {auth: {}}}",
            "configs: {x.io: {tls: {cert_file: /a}}}",
            "configs: {x.io: {auth: {user: u}}}",
            "{{{",
            "- a\n- b",
        ] {
            assert!(Registries::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn the_hosts_dir_follows_the_configuration() {
        let dir = tempfile::tempdir().unwrap();
        let r = Registries::parse(EXAMPLE).unwrap();
        // An operator's own file for a host keelson also configures stays as it is.
        std::fs::create_dir_all(dir.path().join("10.1.2.3:5000")).unwrap();
        std::fs::write(
            dir.path().join("10.1.2.3:5000/hosts.toml"),
            "server = \"x\"\n",
        )
        .unwrap();
        r.write_hosts_dir(dir.path()).unwrap();
        let docker = std::fs::read_to_string(dir.path().join("docker.io/hosts.toml")).unwrap();
        assert_eq!(docker, r.hosts_files()["docker.io"]);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("10.1.2.3:5000/hosts.toml")).unwrap(),
            "server = \"x\"\n"
        );
        // docker.io no longer mirrored: its directory goes; the operator's stays.
        let fewer = Registries::parse("mirrors: {}\n").unwrap();
        fewer.write_hosts_dir(dir.path()).unwrap();
        assert!(!dir.path().join("docker.io").exists());
        assert!(dir.path().join("10.1.2.3:5000/hosts.toml").exists());
    }
}
