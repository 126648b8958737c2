//! Real nodes on one machine: each node is a network namespace joined to a test bridge
//! by a veth pair, with its own containerd (own root, state, socket and CNI config)
//! holding the project's pause and busybox images.
//!
//! Nothing a test makes here outlives it: a node is torn down when dropped, at process
//! exit (the `atexit` hook), and while unwinding from a panic. Teardown removes pod
//! sandboxes through the CRI while containerd still runs, stops containerd by its pid,
//! kills the shims (which outlive containerd) and their containers by the pids in the
//! node's own state files, unmounts what is still mounted under the node's directories,
//! and deletes the namespace and the veth. A namespace has no default route, so a
//! packet to an address nobody answers for fails locally instead of leaving the machine.

use crate::{spawn, Proc};
use anyhow::{bail, Context};
use keelson_containerd::ContainerdConfig;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// What tearing down one containerd needs, kept apart from the owner so that the exit
/// hook can do it for nodes that are never dropped.
#[derive(Debug, Clone)]
struct Teardown {
    key: usize,
    pid: u32,
    socket: PathBuf,
    /// containerd's directory: its state and shims are under it.
    dir: PathBuf,
    /// Everything under it is unmounted (for a node, also the agent's volumes).
    mount_root: PathBuf,
    netns: Option<String>,
    veth: Option<String>,
}

static TEARDOWNS: Mutex<Vec<Teardown>> = Mutex::new(Vec::new());
static BRIDGES: Mutex<Vec<String>> = Mutex::new(Vec::new());
static NEXT_KEY: AtomicUsize = AtomicUsize::new(0);

/// Called first by the crate's exit hook: every node and bridge still standing.
pub(crate) fn teardown_all_at_exit() {
    let pending: Vec<Teardown> = TEARDOWNS
        .lock()
        .map(|mut t| std::mem::take(&mut *t))
        .unwrap_or_default();
    if pending.is_empty() && BRIDGES.lock().map(|b| b.is_empty()).unwrap_or(true) {
        return;
    }
    // Every other child first (node agents among them), so that nothing recreates pods
    // while the nodes' containerds remove them.
    let containerds: Vec<u32> = pending.iter().map(|t| t.pid).collect();
    if let Ok(pids) = crate::PIDS.lock() {
        for pid in pids.iter().filter(|p| !containerds.contains(p)) {
            unsafe {
                libc::kill(*pid as i32, libc::SIGKILL);
            }
        }
    }
    for t in &pending {
        teardown(t, None);
        let _ = std::fs::remove_dir_all(&t.dir);
    }
    let bridges: Vec<String> = BRIDGES
        .lock()
        .map(|mut b| std::mem::take(&mut *b))
        .unwrap_or_default();
    for b in bridges {
        let _ = ip(&["link", "del", &b]);
    }
}

/// Run `ip ARGS`; an error carries its stderr.
fn ip(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("running ip (apt-get install iproute2)")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Run an async block on a runtime of its own, on a thread of its own, so that this
/// works from plain tests, from inside a tokio runtime, and from the exit hook.
fn block_on<T: Send + 'static>(
    f: impl std::future::Future<Output = anyhow::Result<T>> + Send + 'static,
) -> anyhow::Result<T> {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(f)
    })
    .join()
    .unwrap_or_else(|_| bail!("the async helper thread panicked"))
}

/// The project's pause and busybox images as OCI archives, built once per process.
pub fn image_archives() -> anyhow::Result<(PathBuf, PathBuf)> {
    static ARCHIVES: OnceLock<Result<(PathBuf, PathBuf), String>> = OnceLock::new();
    ARCHIVES
        .get_or_init(|| {
            let build = || -> anyhow::Result<(PathBuf, PathBuf)> {
                let dir = tempfile::Builder::new()
                    .prefix(&format!("keelson-images-{:x}x-", std::process::id()))
                    .tempdir()?
                    .keep();
                crate::remove_at_exit(&dir);
                let pause = dir.join("pause.oci.tar");
                let busybox = dir.join("busybox.oci.tar");
                keelson_containerd::image::build_pause()?.write_archive(&pause)?;
                keelson_containerd::image::build_busybox()?.write_archive(&busybox)?;
                Ok((pause, busybox))
            };
            build().map_err(|e| format!("{e:#}"))
        })
        .clone()
        .map_err(|e| anyhow::anyhow!("building the test images: {e}"))
}

/// A containerd started by the test, with everything under one directory, in the host
/// network namespace or in a node's.
pub struct Containerd {
    /// Behind a lock so that a shared node can have its containerd crash and restart.
    proc_: Mutex<Option<Proc>>,
    /// The namespace it runs in (for a restart).
    netns: Option<PathBuf>,
    pub config: ContainerdConfig,
    pub dir: PathBuf,
    pub log: PathBuf,
    key: usize,
}

impl Containerd {
    /// Start containerd with its root, state, socket and CNI config under `dir` (inside
    /// the network namespace at `netns` if given) and wait until its CRI answers.
    pub fn start(dir: &Path, netns: Option<&Path>) -> anyhow::Result<Containerd> {
        Self::start_with(dir, dir, netns, None, None)
    }

    fn start_with(
        dir: &Path,
        mount_root: &Path,
        netns: Option<&Path>,
        netns_name: Option<String>,
        veth: Option<String>,
    ) -> anyhow::Result<Containerd> {
        let config = ContainerdConfig::under(dir);
        std::fs::create_dir_all(&config.cni_conf_dir)?;
        let config_file = dir.join("containerd.toml");
        std::fs::write(&config_file, config.render())?;
        let log = dir.join("containerd.log");
        let child = spawn_containerd(&config_file, netns, std::fs::File::create(&log)?)?;
        let key = NEXT_KEY.fetch_add(1, Ordering::Relaxed);
        TEARDOWNS.lock().expect("teardowns").push(Teardown {
            key,
            pid: child.id(),
            socket: config.socket.clone(),
            dir: dir.to_path_buf(),
            mount_root: mount_root.to_path_buf(),
            netns: netns_name,
            veth,
        });
        let node = Containerd {
            proc_: Mutex::new(Some(Proc {
                child,
                name: "containerd".into(),
            })),
            netns: netns.map(Path::to_path_buf),
            config,
            dir: dir.to_path_buf(),
            log,
            key,
        };
        let socket = node.config.socket.clone();
        block_on(
            async move { keelson_containerd::wait_ready(&socket, Duration::from_secs(30)).await },
        )
        .with_context(|| format!("containerd log:\n{}", node.log_tail()))?;
        Ok(node)
    }

    /// Import the pause and busybox images (built once per process) and wait until the
    /// CRI sees them.
    pub fn import_test_images(&self) -> anyhow::Result<()> {
        let (pause, busybox) = image_archives()?;
        let socket = self.config.socket.clone();
        block_on(async move {
            let channel = keelson_containerd::connect(&socket).await?;
            for archive in [&pause, &busybox] {
                keelson_containerd::import_archive(
                    channel.clone(),
                    keelson_containerd::CRI_NAMESPACE,
                    archive,
                )
                .await?;
            }
            keelson_containerd::import::wait_visible_to_cri(
                channel,
                &[
                    keelson_containerd::PAUSE_IMAGE,
                    keelson_containerd::BUSYBOX_IMAGE,
                ],
                Duration::from_secs(10),
            )
            .await
        })
    }

    pub fn socket(&self) -> &Path {
        &self.config.socket
    }

    pub fn pid(&self) -> Option<u32> {
        self.proc_
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(Proc::pid)
    }

    /// The last lines of containerd's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Tear everything down (see the module notes); also done on drop.
    pub fn stop(&mut self) {
        let Some(mut proc_) = self.proc_.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return;
        };
        let t = {
            let mut all = TEARDOWNS.lock().unwrap_or_else(|e| e.into_inner());
            let i = all.iter().position(|t| t.key == self.key);
            i.map(|i| all.remove(i))
        };
        if let Some(t) = t {
            teardown(&t, Some(&mut proc_));
        }
    }
}

impl Containerd {
    /// Crash containerd (SIGKILL: its shims and containers keep running) and start it
    /// again with the same configuration, as after a crash or an upgrade.
    pub fn crash_and_restart(&self) -> anyhow::Result<()> {
        let mut guard = self.proc_.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(mut old) = guard.take() {
            old.kill();
        }
        let log = std::fs::OpenOptions::new().append(true).open(&self.log)?;
        let child = spawn_containerd(
            &self.dir.join("containerd.toml"),
            self.netns.as_deref(),
            log,
        )?;
        if let Some(t) = TEARDOWNS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter_mut()
            .find(|t| t.key == self.key)
        {
            t.pid = child.id();
        }
        *guard = Some(Proc {
            child,
            name: "containerd".into(),
        });
        drop(guard);
        let socket = self.config.socket.clone();
        block_on(
            async move { keelson_containerd::wait_ready(&socket, Duration::from_secs(30)).await },
        )
        .with_context(|| format!("containerd log:\n{}", self.log_tail()))?;
        Ok(())
    }
}

/// containerd with `config_file`, inside the namespace `netns` when given (through
/// nsenter: `ip netns exec` would remount /sys and hide the cgroups runc needs).
fn spawn_containerd(
    config_file: &Path,
    netns: Option<&Path>,
    log: std::fs::File,
) -> anyhow::Result<std::process::Child> {
    let containerd = std::env::var("KEELSON_CONTAINERD").unwrap_or_else(|_| "containerd".into());
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("nsenter");
            c.arg(format!("--net={}", ns.display()))
                .arg("--")
                .arg(&containerd);
            c
        }
        None => Command::new(&containerd),
    };
    cmd.arg("--config")
        .arg(config_file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    spawn(&mut cmd).context("starting containerd (apt-get install containerd)")
}

impl Drop for Containerd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Stop and remove every pod sandbox through the CRI, with a short deadline.
async fn remove_pods(socket: PathBuf) -> anyhow::Result<()> {
    use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
    use k8s_cri::v1::{ListPodSandboxRequest, RemovePodSandboxRequest, StopPodSandboxRequest};
    let mut cri = RuntimeServiceClient::new(keelson_containerd::connect(&socket).await?);
    let pods = cri
        .list_pod_sandbox(ListPodSandboxRequest { filter: None })
        .await?
        .into_inner()
        .items;
    for pod in pods {
        let id = pod.id;
        let _ = cri
            .stop_pod_sandbox(StopPodSandboxRequest {
                pod_sandbox_id: id.clone(),
            })
            .await;
        let _ = cri
            .remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: id })
            .await;
    }
    Ok(())
}

fn teardown(t: &Teardown, owned: Option<&mut Proc>) {
    let alive = |pid: u32| Path::new(&format!("/proc/{pid}")).exists() && !is_zombie(pid);
    if alive(t.pid) {
        let socket = t.socket.clone();
        let _ = block_on(async move {
            tokio::time::timeout(Duration::from_secs(15), remove_pods(socket))
                .await
                .unwrap_or_else(|_| bail!("timed out"))
        });
    }
    match owned {
        Some(p) => {
            p.terminate(Duration::from_secs(5));
        }
        None => unsafe {
            libc::kill(t.pid as i32, libc::SIGKILL);
            libc::waitpid(t.pid as i32, std::ptr::null_mut(), 0);
        },
    }
    crate::untrack(t.pid);
    kill_shims(&t.dir, &t.socket);
    unmount_under(&t.mount_root);
    if let Some(ns) = &t.netns {
        let _ = ip(&["netns", "del", ns]);
    }
    if let Some(veth) = &t.veth {
        let _ = ip(&["link", "del", veth]);
    }
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| stat_field(&s, 0) == Some("Z".into()))
        .unwrap_or(true)
}

/// A field of /proc/PID/stat after the command name: 0 is the state, 1 the parent pid.
fn stat_field(stat: &str, i: usize) -> Option<String> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(i).map(str::to_string)
}

/// Remove what a containerd rooted at `dir` (socket `socket`) left behind after it
/// stopped: its shims and the containers they parent, and the mounts under `dir`
/// (sandbox shm, network namespace, rootfs). For containerds a test did not start
/// itself, such as the one inside a `keelson up` the test ran.
pub fn clean_up_containerd_leftovers(dir: &Path, socket: &Path) {
    kill_shims(dir, socket);
    unmount_under(dir);
}

/// Kill the shims of this containerd and every process they parent. A shim is known by
/// its `-address` argument, which is this containerd's socket, inside the node's own
/// directory (containerd 1.6 writes no `shim.pid`; a `shim.pid` under the state
/// directory is honoured too).
fn kill_shims(dir: &Path, socket: &Path) {
    let socket = socket.to_string_lossy().into_owned();
    let mut shims: Vec<u32> = Vec::new();
    let mut pid_files = Vec::new();
    find_files(&dir.join("state"), "shim.pid", &mut pid_files, 0);
    for f in pid_files {
        if let Some(pid) = std::fs::read_to_string(&f)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
        {
            if shim_of(pid, &socket) {
                shims.push(pid);
            }
        }
    }
    for pid in all_pids() {
        if !shims.contains(&pid) && shim_of(pid, &socket) {
            shims.push(pid);
        }
    }
    // A killed shim leaves its socket in the machine-wide /run/containerd/s; each task
    // bundle names it in its `address` file.
    let mut address_files = Vec::new();
    find_files(&dir.join("state"), "address", &mut address_files, 0);
    let sockets: Vec<PathBuf> = address_files
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .filter_map(|a| a.trim().strip_prefix("unix://").map(PathBuf::from))
        .filter(|p| p.starts_with("/run/containerd/s/"))
        .collect();
    kill_with_children(&shims);
    for s in sockets {
        let _ = std::fs::remove_file(s);
    }
}

/// Whether `pid` is a containerd shim serving the containerd at `socket`.
fn shim_of(pid: u32, socket: &str) -> bool {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let is_shim = args
        .first()
        .is_some_and(|a| String::from_utf8_lossy(a).contains("containerd-shim"));
    is_shim
        && args
            .windows(2)
            .any(|w| w[0] == b"-address" && w[1] == socket.as_bytes())
}

fn all_pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .collect()
}

/// SIGKILL `parents` and the processes they parent (container init and exec
/// processes), and wait until they are gone.
fn kill_with_children(parents: &[u32]) {
    if parents.is_empty() {
        return;
    }
    // Their children first (container init and exec processes), then the parents.
    let children: Vec<u32> = all_pids()
        .into_iter()
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| stat_field(&s, 1))
                .and_then(|p| p.parse::<u32>().ok())
                .is_some_and(|ppid| parents.contains(&ppid))
        })
        .collect();
    for pid in children.iter().chain(parents.iter()) {
        unsafe {
            libc::kill(*pid as i32, libc::SIGKILL);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline
        && children
            .iter()
            .chain(parents.iter())
            .any(|p| Path::new(&format!("/proc/{p}")).exists() && !is_zombie(*p))
    {
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn find_files(dir: &Path, name: &str, out: &mut Vec<PathBuf>, depth: usize) {
    if depth > 8 {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let Ok(kind) = e.file_type() else { continue };
        if kind.is_dir() {
            find_files(&e.path(), name, out, depth + 1);
        } else if e.file_name() == name {
            out.push(e.path());
        }
    }
}

/// Lazily unmount every mount point under `dir`, deepest first.
fn unmount_under(dir: &Path) {
    let prefix = dir.to_string_lossy().into_owned();
    for _ in 0..3 {
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
        let mut points: Vec<String> = mounts
            .lines()
            .filter_map(|l| l.split(' ').nth(1))
            .map(unescape_mount_path)
            .filter(|p| p == &prefix || p.starts_with(&format!("{prefix}/")))
            .collect();
        if points.is_empty() {
            return;
        }
        points.sort_by_key(|p| std::cmp::Reverse(p.matches('/').count()));
        points.dedup();
        for p in points {
            if let Ok(c) = std::ffi::CString::new(p) {
                unsafe {
                    libc::umount2(c.as_ptr(), libc::MNT_DETACH);
                }
            }
        }
    }
}

/// /proc/mounts writes space, tab, newline and backslash as octal escapes.
fn unescape_mount_path(p: &str) -> String {
    let b = p.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 4 <= b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            if let Ok(v) = u8::from_str_radix(&p[i + 1..i + 4], 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The pid that made a test network or node named `k<hex pid>x<n>...`.
fn owner_pid(name: &str) -> Option<u32> {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let (rest, node) = match name.strip_prefix("kbr") {
        Some(rest) => (rest, None),
        None => {
            let (net, node) = name.strip_prefix('k')?.split_once("-n")?;
            (net, Some(node))
        }
    };
    let (hex, counter) = rest.split_once('x')?;
    if !digits(counter) || node.is_some_and(|n| !digits(n)) {
        return None;
    }
    u32::from_str_radix(hex, 16).ok()
}

/// Remove what test processes killed outright (no exit hook ran) left behind: their
/// nodes' shims, mounts, directories and namespaces, and their bridges. Only names
/// whose owner process is gone are touched.
fn sweep_stale() {
    let dead = |name: &str| {
        owner_pid(name).is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists())
    };
    let namespaces = ip(&["netns", "list"]).unwrap_or_default();
    for ns in namespaces
        .lines()
        .filter_map(|l| l.split_whitespace().next())
    {
        if !dead(ns) {
            continue;
        }
        let prefix = format!("keelson-{ns}-");
        for entry in std::fs::read_dir(std::env::temp_dir())
            .into_iter()
            .flatten()
            .flatten()
        {
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                let dir = entry.path();
                let containerd = dir.join("containerd");
                kill_shims(&containerd, &containerd.join("containerd.sock"));
                unmount_under(&dir);
                let _ = std::fs::remove_dir_all(&dir);
            }
        }
        let _ = ip(&["netns", "del", ns]);
    }
    for entry in std::fs::read_dir(std::env::temp_dir())
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        let owner = name
            .strip_prefix("keelson-images-")
            .and_then(|rest| rest.split_once('x'))
            .and_then(|(hex, _)| u32::from_str_radix(hex, 16).ok());
        if owner.is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists()) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    let links = ip(&["-br", "link"]).unwrap_or_default();
    for link in links.lines().filter_map(|l| l.split_whitespace().next()) {
        let link = link.split('@').next().unwrap_or_default();
        if link.starts_with("kbr") && dead(link) {
            let _ = ip(&["link", "del", link]);
        }
    }
}

/// A Linux bridge in the host namespace that the test's nodes hang off, with an address
/// of its own (the gateway) through which the test process, and an apiserver it
/// starts, reach the nodes.
pub struct TestNetwork {
    id: String,
    bridge: String,
    /// The third octet shared by this network's addresses (see [`TestNetwork::pod_cidr`]).
    block: u8,
    next_node: AtomicUsize,
}

/// Nodes per network; each gets a pod CIDR of its own in 10.201-10.207.
pub const MAX_NODES: usize = 7;

impl TestNetwork {
    /// A bridge named after this process (and a counter, for several networks in one
    /// process), on the first free 10.200.N.0/24.
    pub fn create() -> anyhow::Result<TestNetwork> {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        static CHOOSING: Mutex<()> = Mutex::new(());
        let _choosing = CHOOSING.lock().unwrap_or_else(|e| e.into_inner());
        let n = COUNT.fetch_add(1, Ordering::Relaxed);
        sweep_stale();
        // The owner's pid in hex, `x`, a counter: sweep_stale reads the pid back.
        let id = format!("{:x}x{n}", std::process::id());
        let bridge = format!("kbr{id}");
        let in_use = format!("{}\n{}", ip(&["-br", "addr"])?, ip(&["route"])?);
        let start = (std::process::id() as usize * 7 + n * 31) % 256;
        let block = (0..256)
            .map(|k| ((start + k) % 256) as u8)
            .find(|b| (200..=207).all(|second| !in_use.contains(&format!("10.{second}.{b}."))))
            .context("no free 10.200.N.0/24 for a test network")?;
        ip(&["link", "add", &bridge, "type", "bridge"])?;
        BRIDGES.lock().expect("bridges").push(bridge.clone());
        let net = TestNetwork {
            id,
            bridge,
            block,
            next_node: AtomicUsize::new(0),
        };
        ip(&[
            "addr",
            "add",
            &format!("{}/24", net.gateway_ip()),
            "dev",
            &net.bridge,
        ])?;
        ip(&["link", "set", &net.bridge, "up"])?;
        Ok(net)
    }

    pub fn bridge(&self) -> &str {
        &self.bridge
    }

    /// The bridge's own address: where the host side (test process, apiserver) is seen
    /// from the nodes.
    pub fn gateway_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 200, self.block, 1)
    }

    /// The network the nodes' `eth0` addresses are on.
    pub fn cidr(&self) -> String {
        format!("10.200.{}.0/24", self.block)
    }

    /// The address node `index` gets.
    pub fn node_ip(&self, index: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 200, self.block, 10 + index as u8)
    }

    /// A pod CIDR for node `index` that no other test network uses.
    pub fn pod_cidr(&self, index: usize) -> String {
        format!("10.{}.{}.0/24", 201 + index.min(MAX_NODES - 1), self.block)
    }

    /// Route `cidr` (pods on one node) via that node's address, so that the host side
    /// reaches pod IPs; the route goes when the bridge does.
    pub fn route_pod_cidr(&self, cidr: &str, via: Ipv4Addr) -> anyhow::Result<()> {
        ip(&[
            "route",
            "replace",
            cidr,
            "via",
            &via.to_string(),
            "dev",
            &self.bridge,
        ])?;
        Ok(())
    }

    /// The range the controller-manager's `--service-lb-pool` hands out: addresses on
    /// the node network that no node or client uses.
    pub fn load_balancer_pool(&self) -> String {
        format!("10.200.{0}.240-10.200.{0}.250", self.block)
    }

    /// A host outside the cluster on this network (a namespace with an address on the
    /// bridge, no default route): where "external" clients of a Service stand.
    pub fn add_outside_host(&self) -> anyhow::Result<OutsideHost> {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let n = COUNT.fetch_add(1, Ordering::Relaxed);
        // Named like a node (`k<id>-n<index>`) so that sweep_stale finds it; indexes
        // from 100 never meet a node's.
        let index = 100 + n;
        let name = format!("k{}-n{index}", self.id);
        let veth = format!("k{}v{index}", self.id);
        let address = Ipv4Addr::new(10, 200, self.block, 100 + (n % 100) as u8);
        ip(&["netns", "add", &name])?;
        let host = OutsideHost {
            name: name.clone(),
            veth: veth.clone(),
            ip: address,
        };
        ip(&[
            "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &name,
        ])?;
        ip(&["link", "set", &veth, "master", &self.bridge, "up"])?;
        ip(&[
            "-n",
            &name,
            "addr",
            "add",
            &format!("{address}/24"),
            "dev",
            "eth0",
        ])?;
        ip(&["-n", &name, "link", "set", "eth0", "up"])?;
        ip(&["-n", &name, "link", "set", "lo", "up"])?;
        Ok(host)
    }

    /// A new node on this network, its containerd ready with the project's images.
    pub fn add_node(&self) -> anyhow::Result<NodeHost> {
        let index = self.next_node.fetch_add(1, Ordering::Relaxed);
        if index >= MAX_NODES {
            bail!("at most {MAX_NODES} nodes per test network");
        }
        NodeHost::start(self, index)
    }
}

impl Drop for TestNetwork {
    fn drop(&mut self) {
        let _ = ip(&["link", "del", &self.bridge]);
        if let Ok(mut b) = BRIDGES.lock() {
            b.retain(|x| x != &self.bridge);
        }
    }
}

/// A host outside the cluster: a namespace on the test bridge, deleted on drop.
pub struct OutsideHost {
    pub name: String,
    veth: String,
    pub ip: Ipv4Addr,
}

impl OutsideHost {
    /// `program ARGS` run inside the namespace (`ip netns exec`).
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// `program` run inside the namespace through nsenter, which keeps the host's /sys
    /// (runc needs its cgroup mounts): for a whole machine such as `keelson up`.
    pub fn nsenter_command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/var/run/netns/{}", self.name))
            .arg("--")
            .arg(program);
        c
    }
}

impl Drop for OutsideHost {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.name]);
        let _ = ip(&["link", "del", &self.veth]);
    }
}

/// A node: a network namespace with `lo` and `eth0` (veth to the bridge), no default
/// route, and a containerd inside it.
pub struct NodeHost {
    pub name: String,
    pub index: usize,
    pub ip: Ipv4Addr,
    pub netns_path: PathBuf,
    /// Where the node agent keeps its state (`--root-dir`).
    pub root_dir: PathBuf,
    containerd: Containerd,
    dir: tempfile::TempDir,
}

impl NodeHost {
    fn start(net: &TestNetwork, index: usize) -> anyhow::Result<NodeHost> {
        let name = format!("k{}-n{index}", net.id);
        let veth = format!("k{}v{index}", net.id);
        let ip_addr = net.node_ip(index);
        let dir = tempfile::Builder::new()
            .prefix(&format!("keelson-{name}-"))
            .tempdir()?;
        // For a node that is never dropped; a dropped one removes its own.
        crate::remove_at_exit(dir.path());
        ip(&["netns", "add", &name])?;
        let made = (|| -> anyhow::Result<()> {
            ip(&[
                "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &name,
            ])?;
            ip(&["link", "set", &veth, "master", &net.bridge, "up"])?;
            ip(&[
                "-n",
                &name,
                "addr",
                "add",
                &format!("{ip_addr}/24"),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", &name, "link", "set", "eth0", "up"])?;
            ip(&["-n", &name, "link", "set", "lo", "up"])?;
            Ok(())
        })();
        if let Err(e) = made {
            let _ = ip(&["netns", "del", &name]);
            let _ = ip(&["link", "del", &veth]);
            return Err(e);
        }
        let netns_path = PathBuf::from(format!("/var/run/netns/{name}"));
        let containerd = match Containerd::start_with(
            &dir.path().join("containerd"),
            dir.path(),
            Some(&netns_path),
            Some(name.clone()),
            Some(veth.clone()),
        ) {
            Ok(c) => c,
            Err(e) => {
                // Torn down already if containerd was started; not if it never was.
                let _ = ip(&["netns", "del", &name]);
                let _ = ip(&["link", "del", &veth]);
                return Err(e.context(format!("starting containerd of node {name}")));
            }
        };
        containerd
            .import_test_images()
            .with_context(|| format!("importing images into node {name}"))?;
        let root_dir = dir.path().join("agent");
        std::fs::create_dir_all(&root_dir)?;
        Ok(NodeHost {
            name,
            index,
            ip: ip_addr,
            netns_path,
            root_dir,
            containerd,
            dir,
        })
    }

    pub fn socket(&self) -> &Path {
        self.containerd.socket()
    }

    /// The containerd endpoint as the kubelet's `--container-runtime-endpoint` takes it.
    pub fn runtime_endpoint(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    pub fn cni_conf_dir(&self) -> &Path {
        &self.containerd.config.cni_conf_dir
    }

    pub fn containerd(&self) -> &Containerd {
        &self.containerd
    }

    /// The node's directory (containerd's and the agent's files).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Where the node agent started by the test should log.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("agent.log")
    }

    /// `program` to be run inside the node's network namespace (through nsenter: `ip
    /// netns exec` would remount /sys and hide the cgroup mounts runc needs).
    pub fn nsenter_command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.netns_path.display()))
            .arg("--")
            .arg(program);
        c
    }

    /// Run `ip ARGS` inside the node's namespace (`ip -n NAME ...`).
    pub fn ip(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all)
    }
}

impl Drop for NodeHost {
    fn drop(&mut self) {
        // containerd's teardown also deletes the namespace and the veth.
        self.containerd.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_paths_are_unescaped() {
        assert_eq!(unescape_mount_path("/a\\040b"), "/a b");
        assert_eq!(unescape_mount_path("/plain"), "/plain");
        assert_eq!(unescape_mount_path("/end\\"), "/end\\");
    }

    #[test]
    fn names_carry_their_owner_pid() {
        assert_eq!(owner_pid("kbr1f2x0"), Some(0x1f2));
        assert_eq!(owner_pid("k1f2x10-n3"), Some(0x1f2));
        assert_eq!(owner_pid("kdev"), None);
        assert_eq!(owner_pid("eth0"), None);
        assert_eq!(owner_pid("kdex1-nope"), None);
        assert_eq!(
            owner_pid("k1f2x0v1"),
            None,
            "a veth goes with its namespace"
        );
    }

    #[test]
    fn stat_fields_skip_the_command_name() {
        let stat = "42 (a (weird) name) S 7 42 42 0";
        assert_eq!(stat_field(stat, 0).as_deref(), Some("S"));
        assert_eq!(stat_field(stat, 1).as_deref(), Some("7"));
    }
}
