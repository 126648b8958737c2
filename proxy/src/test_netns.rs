//! For unit tests that need the real `nft`: a network namespace of the test's own,
//! deleted on every path (the host's ruleset is never touched).

/// A scratch network namespace.
pub struct Netns(pub String);

impl Netns {
    pub fn new(tag: &str) -> Netns {
        let name = format!("keelson-px-{}-{tag}", std::process::id());
        let out = std::process::Command::new("ip")
            .args(["netns", "add", &name])
            .output()
            .expect("ip (iproute2)");
        assert!(
            out.status.success(),
            "ip netns add: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Netns(name)
    }

    /// Runs `nft ARGS` inside the namespace with `stdin`: (success, stdout + stderr).
    pub fn nft(&self, args: &[&str], stdin: &str) -> (bool, String) {
        use std::io::Write;
        let mut child = std::process::Command::new("ip")
            .args(["netns", "exec", &self.0, "nft"])
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("nft (nftables)");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes())
            .expect("write to nft");
        let out = child.wait_with_output().expect("nft");
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    }

    /// `nft -f -` with `transaction`, panicking with nft's message on failure.
    pub fn load(&self, transaction: &str) {
        let (ok, text) = self.nft(&["-f", "-"], transaction);
        assert!(ok, "nft -f - failed: {text}\n--- input ---\n{transaction}");
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.0])
            .status();
    }
}
