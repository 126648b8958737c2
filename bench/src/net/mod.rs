//! The network benchmarks (issue 10): keelson-proxy's nftables programming beside
//! `nft -f FILE` loading the same ruleset, the proxy's RSS at 1,000 Services, keelson-dns
//! queries per second beside dnsmasq answering one static record, and request latency
//! through a ClusterIP beside straight to the pod IP. Every figure has its baseline
//! measured in the same run; nothing here asserts on time.
//!
//! Kernel state is only ever touched inside network namespaces this module makes (the
//! measuring parts re-execute this binary under `nsenter`), and every process and
//! namespace is removed by its guard on every path.

mod dns;
mod latency;
mod proxy;

pub use dns::{run_dns, DnsArgs};
pub use latency::{run_service_latency, tcp_latency, LatencyArgs, TcpLatencyArgs};
pub use proxy::{proxy_rules, run_proxy, ProxyArgs};

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::Value;

use crate::percentile;

/// A network namespace of the benchmark's own (loopback only, so no default route),
/// deleted on drop.
pub(super) struct Netns {
    name: String,
}

impl Netns {
    pub(super) fn create(tag: &str) -> anyhow::Result<Netns> {
        let name = format!("kbench-{tag}-{}", std::process::id());
        run(Command::new("ip").args(["netns", "add", &name]))?;
        let ns = Netns { name };
        run(Command::new("ip").args(["-n", &ns.name, "link", "set", "lo", "up"]))?;
        Ok(ns)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

pub(super) fn netns_path(name: &str) -> PathBuf {
    PathBuf::from(format!("/var/run/netns/{name}"))
}

pub(super) fn nsenter(netns: &Path, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut c = Command::new("nsenter");
    c.arg(format!("--net={}", netns.display()))
        .arg("--")
        .arg(program);
    c
}

/// A process this benchmark started: SIGKILLed by its pid and reaped on drop.
pub(super) struct Owned(pub(super) Child);

impl Owned {
    pub(super) fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs a command to completion; its stdout, or an error with its stderr.
pub(super) fn run(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("running {:?}", cmd.get_program()))?;
    if !out.status.success() {
        bail!(
            "{:?} {:?} failed: {}",
            cmd.get_program(),
            cmd.get_args().collect::<Vec<_>>(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// This binary re-executed under `nsenter` with `args`; the last stdout line as JSON.
pub(super) fn reexec_in(netns: &Path, args: &[String]) -> anyhow::Result<Value> {
    let exe = std::env::current_exe()?;
    let out = run(nsenter(netns, exe).args(args).stderr(Stdio::inherit()))?;
    let line = out.lines().last().context("no figures from the child")?;
    Ok(serde_json::from_str(line)?)
}

pub(super) fn vm_hwm_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

pub(super) fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    percentile(&v, 0.5)
}

pub(super) fn secs(v: &Value) -> Duration {
    Duration::from_secs_f64(v.as_f64().unwrap_or_default())
}
