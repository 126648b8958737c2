//! The configuration file of one node's containerd.
//!
//! Several containerd instances run side by side on one machine when each has its own
//! root, state and socket; everything a node owns lives under those. The settings below
//! are the ones found necessary on the machines Keelson runs on (see `render`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use crate::registries::RegistryAuth;

/// One node's containerd.
#[derive(Debug, Clone)]
pub struct ContainerdConfig {
    /// Persistent data: content store, snapshots, metadata.
    pub root: PathBuf,
    /// Runtime state: shims, task bundles, pod network namespaces.
    pub state: PathBuf,
    /// The gRPC socket (CRI and containerd's own services).
    pub socket: PathBuf,
    /// Where the CNI plugin binaries are (Debian: `/usr/lib/cni`).
    pub cni_bin_dir: PathBuf,
    /// The CNI configuration directory the node agent writes into.
    pub cni_conf_dir: PathBuf,
    /// The pod sandbox image; must already be imported (never pulled).
    pub sandbox_image: String,
    /// runc's state directory; `None` keeps runc's default (`/run/containerd/runc`),
    /// shared by every containerd on the machine.
    pub runc_root: Option<PathBuf>,
    /// A directory of per-registry `hosts.toml` files (mirrors, TLS), the CRI plugin's
    /// `registry.config_path`; the hook for air-gapped registries. containerd reads it
    /// at every pull, so files written there later take effect without a restart.
    pub registry_config_dir: Option<PathBuf>,
    /// Registry credentials by the host they are presented to, rendered as the CRI
    /// plugin's `registry.configs."<host>".auth` (the only place containerd 1.6 takes
    /// them from besides a pull's own credentials). See [`crate::registries`].
    pub registry_auths: BTreeMap<String, RegistryAuth>,
    /// The snapshotter images are unpacked into and containers run from.
    pub snapshotter: String,
}

impl ContainerdConfig {
    /// A node whose containerd keeps everything under `dir`: `root/`, `state/`,
    /// `containerd.sock`, `cni-conf/`, `runc/` and the registry hosts directory
    /// `certs.d/` (which may stay empty or absent).
    pub fn under(dir: &std::path::Path) -> ContainerdConfig {
        ContainerdConfig {
            root: dir.join("root"),
            state: dir.join("state"),
            socket: dir.join("containerd.sock"),
            cni_bin_dir: PathBuf::from("/usr/lib/cni"),
            cni_conf_dir: dir.join("cni-conf"),
            sandbox_image: crate::image::PAUSE_IMAGE.to_string(),
            runc_root: Some(dir.join("runc")),
            registry_config_dir: Some(dir.join("certs.d")),
            registry_auths: BTreeMap::new(),
            snapshotter: "overlayfs".to_string(),
        }
    }

    /// The TOML containerd reads (`containerd --config FILE`).
    ///
    /// - `restrict_oom_score_adj`: without CAP_SYS_RESOURCE runc cannot write the
    ///   sandbox's -998, and every RunPodSandbox fails.
    /// - `netns_mounts_under_state_dir`: pod network namespaces are mounted under this
    ///   node's state directory, not in the machine-wide `/var/run/netns`.
    /// - `stream_server_port = "0"`: each containerd's exec/attach server on its own port.
    pub fn render(&self) -> String {
        let cri = "plugins.\"io.containerd.grpc.v1.cri\"";
        let mut s = String::new();
        let _ = writeln!(s, "version = 2");
        let _ = writeln!(s, "root = {}", quote(&self.root.to_string_lossy()));
        let _ = writeln!(s, "state = {}", quote(&self.state.to_string_lossy()));
        let _ = writeln!(s, "\n[grpc]");
        let _ = writeln!(s, "  address = {}", quote(&self.socket.to_string_lossy()));
        let _ = writeln!(s, "\n[{cri}]");
        let _ = writeln!(s, "  sandbox_image = {}", quote(&self.sandbox_image));
        let _ = writeln!(s, "  restrict_oom_score_adj = true");
        let _ = writeln!(s, "  netns_mounts_under_state_dir = true");
        let _ = writeln!(s, "  stream_server_address = \"127.0.0.1\"");
        let _ = writeln!(s, "  stream_server_port = \"0\"");
        let _ = writeln!(s, "  [{cri}.cni]");
        let _ = writeln!(
            s,
            "    bin_dir = {}",
            quote(&self.cni_bin_dir.to_string_lossy())
        );
        let _ = writeln!(
            s,
            "    conf_dir = {}",
            quote(&self.cni_conf_dir.to_string_lossy())
        );
        let _ = writeln!(s, "  [{cri}.containerd]");
        let _ = writeln!(s, "    snapshotter = {}", quote(&self.snapshotter));
        let _ = writeln!(s, "    default_runtime_name = \"runc\"");
        let _ = writeln!(s, "    [{cri}.containerd.runtimes.runc]");
        let _ = writeln!(s, "      runtime_type = \"io.containerd.runc.v2\"");
        if let Some(root) = &self.runc_root {
            let _ = writeln!(s, "      [{cri}.containerd.runtimes.runc.options]");
            let _ = writeln!(s, "        Root = {}", quote(&root.to_string_lossy()));
        }
        if self.registry_config_dir.is_some() || !self.registry_auths.is_empty() {
            let _ = writeln!(s, "  [{cri}.registry]");
        }
        if let Some(dir) = &self.registry_config_dir {
            let _ = writeln!(s, "    config_path = {}", quote(&dir.to_string_lossy()));
        }
        for (host, auth) in &self.registry_auths {
            let _ = writeln!(s, "    [{cri}.registry.configs.{}.auth]", quote(host));
            for (key, value) in [
                ("username", &auth.username),
                ("password", &auth.password),
                ("auth", &auth.auth),
                ("identitytoken", &auth.identity_token),
            ] {
                if let Some(v) = value {
                    let _ = writeln!(s, "      {key} = {}", quote(v));
                }
            }
        }
        s
    }
}

/// A TOML basic string.
pub(crate) fn quote(v: &str) -> String {
    let mut out = String::with_capacity(v.len() + 2);
    out.push('"');
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_settings_this_machine_needs() {
        let c = ContainerdConfig::under(std::path::Path::new("/tmp/n0"));
        let toml = c.render();
        for line in [
            "version = 2",
            "root = \"/tmp/n0/root\"",
            "state = \"/tmp/n0/state\"",
            "address = \"/tmp/n0/containerd.sock\"",
            "sandbox_image = \"keelson.local/pause:1\"",
            "restrict_oom_score_adj = true",
            "bin_dir = \"/usr/lib/cni\"",
            "conf_dir = \"/tmp/n0/cni-conf\"",
            "snapshotter = \"overlayfs\"",
            "runtime_type = \"io.containerd.runc.v2\"",
            "Root = \"/tmp/n0/runc\"",
            "config_path = \"/tmp/n0/certs.d\"",
        ] {
            assert!(toml.contains(line), "missing {line:?} in\n{toml}");
        }
        assert!(!toml.contains("registry.configs"));
    }

    #[test]
    fn renders_registry_credentials_by_host() {
        let mut c = ContainerdConfig::under(std::path::Path::new("/tmp/n0"));
        c.registry_config_dir = None;
        c.registry_auths.insert(
            "10.0.0.1:5000".into(),
            RegistryAuth {
                username: Some("alice".into()),
                password: Some("p\"w".into()),
                ..Default::default()
            },
        );
        let toml = c.render();
        assert!(!toml.contains("config_path"), "{toml}");
        let expected = "  [plugins.\"io.containerd.grpc.v1.cri\".registry]\n    [plugins.\"io.containerd.grpc.v1.cri\".registry.configs.\"10.0.0.1:5000\".auth]\n      username = \"alice\"\n      password = \"p\\\"w\"\n";
        assert!(toml.ends_with(expected), "{toml}");
    }

    #[test]
    fn quotes_paths_safely() {
        assert_eq!(quote("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000A\"");
    }
}
