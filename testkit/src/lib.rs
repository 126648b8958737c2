//! Test harness: brings up a real cluster (etcd + keelson-apiserver as child processes)
//! for integration and e2e tests, and drives it with the real `kubectl`.
//!
//! Every process is stopped by the pid this harness started: when the [`Cluster`] is
//! dropped, at process exit for clusters kept in a `static` (an `atexit` hook), and by
//! the kernel if the test process dies (`PR_SET_PDEATHSIG`). Nothing is ever killed by
//! name.
//!
//! The binaries come from the workspace's target directory (`cargo build` first), or
//! from `KEELSON_BIN_DIR`.

use anyhow::{bail, Context};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

pub mod node;
pub mod node_cluster;
pub mod registry;

/// Signals for [`Proc::signal`].
pub mod signal {
    pub use libc::{SIGCONT, SIGKILL, SIGSTOP, SIGTERM};
}

static PIDS: Mutex<Vec<u32>> = Mutex::new(Vec::new());
static HOOK: std::sync::Once = std::sync::Once::new();

/// Directories of clusters kept in a `static` (never dropped), removed at exit.
static DIRS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

extern "C" fn kill_children_at_exit() {
    // Nodes first: their pods go through the CRI while containerd still runs.
    node::teardown_all_at_exit();
    if let Ok(pids) = PIDS.lock() {
        for pid in pids.iter() {
            unsafe {
                libc::kill(*pid as i32, libc::SIGKILL);
            }
        }
    }
    if let Ok(dirs) = DIRS.lock() {
        for d in dirs.iter() {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

fn track(pid: u32) {
    HOOK.call_once(|| unsafe {
        libc::atexit(kill_children_at_exit);
    });
    PIDS.lock().expect("pids").push(pid);
}

/// Remove `dir` at process exit.
fn remove_at_exit(dir: &Path) {
    HOOK.call_once(|| unsafe {
        libc::atexit(kill_children_at_exit);
    });
    DIRS.lock().expect("dirs").push(dir.to_path_buf());
}

fn untrack(pid: u32) {
    PIDS.lock().expect("pids").retain(|p| *p != pid);
}

type SpawnRequest = (Command, std::sync::mpsc::Sender<std::io::Result<Child>>);

/// The kernel's parent-death signal fires when the *thread* that forked the child exits,
/// so children are forked from one thread that lives as long as the test process.
static SPAWNER: LazyLock<Mutex<std::sync::mpsc::Sender<SpawnRequest>>> = LazyLock::new(|| {
    let (tx, rx) = std::sync::mpsc::channel::<SpawnRequest>();
    std::thread::Builder::new()
        .name("testkit-spawner".into())
        .spawn(move || {
            for (mut cmd, reply) in rx {
                let _ = reply.send(cmd.spawn());
            }
        })
        .expect("spawner thread");
    Mutex::new(tx)
});

/// Start `cmd` as a [`Proc`] (stopped by its pid when dropped, and killed by the
/// kernel if this test process dies).
pub fn start_process(cmd: &mut Command, name: &str) -> anyhow::Result<Proc> {
    Ok(Proc {
        child: spawn(cmd)?,
        name: name.to_string(),
    })
}

/// Spawn a child that the kernel kills if this test process dies.
fn spawn(cmd: &mut Command) -> anyhow::Result<Child> {
    let program = format!("{:?}", cmd.get_program());
    let mut owned = std::mem::replace(cmd, Command::new(""));
    unsafe {
        owned.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let (tx, rx) = std::sync::mpsc::channel();
    SPAWNER
        .lock()
        .expect("spawner")
        .send((owned, tx))
        .expect("spawner alive");
    let child = rx
        .recv()
        .expect("spawner reply")
        .with_context(|| format!("spawning {program}"))?;
    track(child.id());
    Ok(child)
}

/// A child process stopped by its pid on drop.
pub struct Proc {
    child: Child,
    pub name: String,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
    /// Send a signal to this process (by pid).
    pub fn signal(&self, sig: i32) {
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
    }
    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        self.signal(libc::SIGKILL);
        let _ = self.child.wait();
        untrack(self.child.id());
    }
    /// SIGTERM, wait up to `grace`, then SIGKILL. Returns the exit status if it exited.
    pub fn terminate(&mut self, grace: Duration) -> Option<std::process::ExitStatus> {
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                untrack(self.child.id());
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill();
        None
    }
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
    /// Wait up to `timeout` for the process to exit on its own; its exit status, or
    /// `None` if it still runs (it is then left running: stop it or drop it).
    pub fn wait_for_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                untrack(self.child.id());
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.is_running() {
            self.kill();
        }
    }
}

/// A free loopback port for a server a test starts.
///
/// Taken below the kernel's ephemeral range (32768 and up), so that an outgoing
/// connection cannot grab it between this probe and the server's bind, and never
/// handed out twice by this process, so that clusters started in parallel threads
/// cannot collide (a collision shows up as a client reaching another cluster's
/// apiserver: "invalid peer certificate").
pub fn free_port() -> u16 {
    static TAKEN: Mutex<Option<std::collections::HashSet<u16>>> = Mutex::new(None);
    let mut taken = TAKEN.lock().unwrap_or_else(|e| e.into_inner());
    let taken = taken.get_or_insert_with(Default::default);
    // Start from a pid-dependent offset so successive test binaries spread out.
    let span = 32_000 - 20_000;
    let mut candidate = 20_000 + (std::process::id() as usize * 7919 + taken.len() * 13) % span;
    for _ in 0..span {
        let port = candidate as u16;
        if !taken.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            taken.insert(port);
            return port;
        }
        candidate = 20_000 + (candidate - 20_000 + 1) % span;
    }
    panic!("no free port in 20000-31999");
}

fn wait_for_port(addr: SocketAddr, timeout: Duration, proc_: &mut Proc) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if !proc_.is_running() {
            bail!("{} exited before listening on {addr}", proc_.name);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("{} did not listen on {addr} within {timeout:?}", proc_.name)
}

/// The directory holding the workspace's built binaries.
pub fn bin_dir() -> PathBuf {
    if let Ok(d) = std::env::var("KEELSON_BIN_DIR") {
        return PathBuf::from(d);
    }
    // Test executables live in target/<profile>/deps, examples in target/<profile>/examples.
    let exe = std::env::current_exe().expect("current exe");
    let mut dir = exe.parent().expect("exe dir").to_path_buf();
    if dir.ends_with("deps") || dir.ends_with("examples") {
        dir.pop();
    }
    dir
}

pub fn binary(name: &str) -> anyhow::Result<PathBuf> {
    let p = bin_dir().join(name);
    if !p.exists() {
        bail!(
            "{} not found: run `cargo build --workspace --bins` first (or set KEELSON_BIN_DIR)",
            p.display()
        );
    }
    Ok(p)
}

/// A single-member etcd on loopback.
pub struct Etcd {
    pub proc_: Proc,
    pub url: String,
    pub data_dir: PathBuf,
}

impl Etcd {
    pub fn start(dir: &Path) -> anyhow::Result<Etcd> {
        let (client, peer) = (free_port(), free_port());
        let data_dir = dir.join("etcd");
        let url = format!("http://127.0.0.1:{client}");
        let log = std::fs::File::create(dir.join("etcd.log"))?;
        let child = spawn(
            Command::new(std::env::var("KEELSON_ETCD").unwrap_or_else(|_| "etcd".into()))
                .arg("--name=test")
                .arg(format!("--data-dir={}", data_dir.display()))
                .arg(format!("--listen-client-urls={url}"))
                .arg(format!("--advertise-client-urls={url}"))
                .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer}"))
                .arg(format!(
                    "--initial-advertise-peer-urls=http://127.0.0.1:{peer}"
                ))
                .arg(format!("--initial-cluster=test=http://127.0.0.1:{peer}"))
                .arg("--unsafe-no-fsync")
                // Extra etcd flags for experiments and benchmarks (whitespace-separated).
                .args(
                    std::env::var("KEELSON_ETCD_ARGS")
                        .unwrap_or_default()
                        .split_whitespace(),
                )
                .stdout(Stdio::null())
                .stderr(log),
        )
        .context("starting etcd (apt-get install etcd-server)")?;
        let mut proc_ = Proc {
            child,
            name: "etcd".into(),
        };
        wait_for_port(
            format!("127.0.0.1:{client}").parse()?,
            Duration::from_secs(20),
            &mut proc_,
        )?;
        Ok(Etcd {
            proc_,
            url,
            data_dir,
        })
    }
}

/// Options for the apiservers a [`Cluster`] starts.
#[derive(Debug, Clone, Default)]
pub struct ApiserverOptions {
    pub extra_args: Vec<String>,
    /// `--bind-address` (default 127.0.0.1); `0.0.0.0` when nodes in network
    /// namespaces must reach it.
    pub bind_address: Option<String>,
    /// Extra names and addresses in the serving certificate.
    pub extra_sans: Vec<String>,
    /// `--kubelet-certificate-authority` with the cluster CA: node agents' serving
    /// certificates are verified (they must chain to it and name the address used).
    pub verify_kubelets: bool,
}

/// A keelson-apiserver process.
pub struct Apiserver {
    pub proc_: Proc,
    pub port: u16,
}

/// etcd, one or more apiservers, PKI and an admin kubeconfig, in a temporary directory.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub etcd: Etcd,
    pub apiservers: Vec<Apiserver>,
    pub kubeconfig: PathBuf,
    pub pki: keelson_pki::PkiPaths,
    /// A static token file entry: `test-token` for user `tester` in group `testers`.
    pub token: String,
    opts: ApiserverOptions,
}

impl Cluster {
    /// etcd plus one apiserver.
    pub fn start() -> anyhow::Result<Cluster> {
        Cluster::start_with(1, ApiserverOptions::default())
    }

    pub fn start_with(apiservers: usize, opts: ApiserverOptions) -> anyhow::Result<Cluster> {
        let dir = tempfile::Builder::new().prefix("keelson-test-").tempdir()?;
        // Removed on drop, or at process exit for a cluster that is never dropped.
        HOOK.call_once(|| unsafe {
            libc::atexit(kill_children_at_exit);
        });
        DIRS.lock().expect("dirs").push(dir.path().to_path_buf());
        let pki = keelson_pki::ensure_pki(
            &dir.path().join("pki"),
            &keelson_pki::PkiOptions {
                extra_sans: opts.extra_sans.clone(),
                ..Default::default()
            },
        )?;
        let token = "test-token-0123456789".to_string();
        std::fs::write(
            dir.path().join("tokens.csv"),
            format!("{token},tester,1001,\"testers\"\n"),
        )?;
        let etcd = Etcd::start(dir.path())?;
        let mut cluster = Cluster {
            kubeconfig: dir.path().join("admin.kubeconfig"),
            dir,
            etcd,
            apiservers: Vec::new(),
            pki,
            token,
            opts,
        };
        for _ in 0..apiservers.max(1) {
            cluster.add_apiserver()?;
        }
        let server = format!("https://127.0.0.1:{}", cluster.apiservers[0].port);
        cluster.write_kubeconfig(&cluster.kubeconfig.clone(), &server)?;
        Ok(cluster)
    }

    pub fn write_kubeconfig(&self, path: &Path, server: &str) -> anyhow::Result<()> {
        let ca = std::fs::read(&self.pki.ca_cert)?;
        let cert = std::fs::read(&self.pki.admin_cert)?;
        let key = std::fs::read(&self.pki.admin_key)?;
        keelson_pki::write_kubeconfig(
            path,
            server,
            &ca,
            &cert,
            &key,
            "kubernetes-admin",
            "keelson",
        )
    }

    /// Start one more apiserver on a free port; returns its index.
    pub fn add_apiserver(&mut self) -> anyhow::Result<usize> {
        let i = self.apiservers.len();
        let port = free_port();
        let log = std::fs::File::create(self.dir.path().join(format!("apiserver-{i}.log")))?;
        let mut cmd = Command::new(binary("keelson-apiserver")?);
        cmd.arg(format!("--secure-port={port}"))
            .arg(format!(
                "--bind-address={}",
                self.opts.bind_address.as_deref().unwrap_or("127.0.0.1")
            ))
            .arg(format!("--etcd-servers={}", self.etcd.url))
            .arg(format!(
                "--tls-cert-file={}",
                self.pki.apiserver_cert.display()
            ))
            .arg(format!(
                "--tls-private-key-file={}",
                self.pki.apiserver_key.display()
            ))
            .arg(format!("--client-ca-file={}", self.pki.ca_cert.display()))
            .arg(format!(
                "--token-auth-file={}",
                self.dir.path().join("tokens.csv").display()
            ))
            .arg(format!(
                "--service-account-signing-key-file={}",
                self.pki.sa_key.display()
            ))
            .arg(format!(
                "--kubelet-client-certificate={}",
                self.pki.apiserver_kubelet_client_cert.display()
            ))
            .arg(format!(
                "--kubelet-client-key={}",
                self.pki.apiserver_kubelet_client_key.display()
            ))
            .args(self.opts.verify_kubelets.then(|| {
                format!(
                    "--kubelet-certificate-authority={}",
                    self.pki.ca_cert.display()
                )
            }))
            .args(&self.opts.extra_args)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::null())
            .stderr(log);
        let child = spawn(&mut cmd)?;
        let mut proc_ = Proc {
            child,
            name: format!("keelson-apiserver-{i}"),
        };
        wait_for_port(
            format!("127.0.0.1:{port}").parse()?,
            Duration::from_secs(30),
            &mut proc_,
        )
        .with_context(|| self.log_tail(&format!("apiserver-{i}.log")))?;
        self.apiservers.push(Apiserver { proc_, port });
        Ok(i)
    }

    /// Start a control-plane component binary (`keelson-scheduler`,
    /// `keelson-controller-manager`, or `keelson` with a subcommand in `args`) against
    /// this cluster's admin kubeconfig. Its log is `<log_name>.log` in the cluster
    /// directory; the process is stopped by pid when the returned [`Proc`] is dropped.
    pub fn start_component(
        &self,
        binary_name: &str,
        log_name: &str,
        args: &[String],
    ) -> anyhow::Result<Proc> {
        self.start_component_as(binary_name, log_name, args, &self.kubeconfig)
    }

    /// [`Cluster::start_component`] with the credentials of `kubeconfig` (a component's
    /// own identity, e.g. from [`Cluster::component_kubeconfigs`]).
    pub fn start_component_as(
        &self,
        binary_name: &str,
        log_name: &str,
        args: &[String],
        kubeconfig: &Path,
    ) -> anyhow::Result<Proc> {
        let log = std::fs::File::create(self.dir.path().join(format!("{log_name}.log")))?;
        let mut cmd = Command::new(binary(binary_name)?);
        cmd.args(args)
            .arg(format!("--kubeconfig={}", kubeconfig.display()))
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::null())
            .stderr(log);
        let child = spawn(&mut cmd)?;
        Ok(Proc {
            child,
            name: log_name.to_string(),
        })
    }

    /// Each component's own kubeconfig (scheduler, controller-manager, proxy, DNS) for
    /// `server`, written into `dir`: no component needs the admin's credentials.
    pub fn component_kubeconfigs(
        &self,
        dir: &Path,
        server: &str,
    ) -> anyhow::Result<keelson_pki::ComponentKubeconfigs> {
        std::fs::create_dir_all(dir)?;
        keelson_pki::write_component_kubeconfigs(&self.pki, dir, server)
    }

    /// The last lines of a log file in the cluster directory, for failure messages.
    pub fn log_tail(&self, file: &str) -> String {
        let text = std::fs::read_to_string(self.dir.path().join(file)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    pub fn server_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.apiservers[0].port)
    }

    /// Run the default kubectl (`/usr/bin/kubectl`, or `KUBECTL`).
    pub fn kubectl(&self, args: &[&str]) -> Output {
        let bin = std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".into());
        self.kubectl_with(&bin, args, None)
    }

    /// Run a given kubectl binary, optionally with stdin.
    pub fn kubectl_with(&self, bin: &str, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = Command::new(bin);
        cmd.args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", self.dir.path())
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("running {bin}: {e}"));
        if let Some(input) = stdin {
            use std::io::Write;
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(input.as_bytes())
                .expect("write stdin");
        }
        child.wait_with_output().expect("kubectl output")
    }
}

/// Assert a kubectl run succeeded and return its stdout.
pub fn ok(out: Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "command failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    stdout
}

/// Assert a kubectl run failed and return its stderr.
pub fn fails(out: Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "command unexpectedly succeeded:\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    stderr
}

/// Poll `f` until it returns Some, or panic after `timeout`.
pub fn eventually<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
