//! Syncing one pod: make the runtime match the pod's spec, then report its status
//! (the kubelet's `SyncPod` / `computePodActions`, `SyncTerminatingPod` and
//! `SyncTerminatedPod` in one file).
//!
//! Order of work for a live pod: sandbox (made again, with its init containers, when it
//! died), volumes, init containers one at a time, then every app container; a container
//! that exited is started again under the restart policy with back-off; a container
//! that fails its liveness probe is killed and started again. Every sync ends with the
//! status write. A pod being deleted has its containers stopped within its grace period
//! (preStop first), its sandbox stopped and removed, its directories removed, and then
//! its API object deleted with a uid precondition.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_cri::v1 as cri;
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use keelson_client::{Api, DeleteParams, Preconditions};
use keelson_component::events::EventType;

use crate::agent::{field_path, Agent};
use crate::env::{self, EnvContext};
use crate::pods::config::{
    self, grace_period, host_network, pod_name, pod_namespace, pod_uid, ContainerInputs,
};
use crate::pods::images::ensure_image;
use crate::pods::probes::{self, ProbeKind};
use crate::pods::runtime::{Instance, PodRuntime, State};
use crate::pods::status::{self, is_sidecar, should_restart, ProbeView, StatusInputs, Waiting};

/// How soon a pod is looked at again when nothing wakes its worker.
pub const RESYNC: Duration = Duration::from_secs(10);
/// Why a container whose configuration cannot be made waits.
const CONFIG_ERROR: &str = "CreateContainerConfigError";
/// The kubelet's minimum grace period for a stop (`minimumGracePeriodInSeconds`).
const MIN_GRACE: i64 = 2;

/// What the worker should do after a sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Sync again after this long (or sooner, when woken).
    After(Duration),
    /// The pod is gone from the node and the API: the worker may end.
    Finished,
}

fn restart_policy(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always")
}

fn api_phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// Wall-clock nanoseconds since the epoch as an `Instant` in the past.
fn instant_of(ns: i64) -> Instant {
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as i64;
    let ago = Duration::from_nanos((now_ns - ns).max(0) as u64);
    Instant::now().checked_sub(ago).unwrap_or_else(Instant::now)
}

/// Sync `pod` (the informer's latest copy).
pub async fn sync(agent: &Arc<Agent>, pod: &Pod) -> anyhow::Result<Next> {
    let uid = pod_uid(pod).to_string();
    let rt = agent.reader.pod(&uid).await?;
    if pod.metadata.deletion_timestamp.is_some() {
        return terminate(agent, Some(pod), &uid, &rt, grace_period(pod)).await;
    }
    if matches!(api_phase(pod), "Succeeded" | "Failed") {
        // Finished pods keep their containers (for logs) but not their sandbox.
        stop_all(agent, pod, &rt, grace_period(pod)).await;
        return Ok(Next::After(RESYNC * 6));
    }
    let mut next = RESYNC;
    let rt = match ensure_sandbox(agent, pod, rt).await {
        Ok(Some(rt)) => rt,
        Ok(None) => {
            // The pod is done and its sandbox is gone: report, nothing to run.
            let rt = agent.reader.pod(&uid).await?;
            write_status(agent, pod, &rt).await;
            return Ok(Next::After(RESYNC));
        }
        Err(w) => {
            tracing::warn!(pod = %format!("{}/{}", pod_namespace(pod), pod_name(pod)), reason = %w.reason, message = %w.message, "pod sandbox");
            let rt = agent.reader.pod(&uid).await?;
            write_status(agent, pod, &rt).await;
            return Ok(Next::After(Duration::from_secs(5)));
        }
    };
    let sandbox = rt
        .sandbox()
        .cloned()
        .expect("ensure_sandbox returns a ready sandbox");
    let vols = match agent.volumes.setup(pod, agent.sources.as_ref()).await {
        Ok(v) => v,
        Err(e) => {
            let message = e.to_string();
            agent
                .event(pod, None, EventType::Warning, "FailedMount", &message)
                .await;
            write_status(agent, pod, &rt).await;
            return Ok(Next::After(Duration::from_secs(5)));
        }
    };
    let ctx = SyncContext {
        agent,
        pod,
        rt: &rt,
        sandbox_id: &sandbox.id,
        pod_ips: &sandbox.ips,
        volumes: &vols,
    };
    let spec = pod.spec.clone().unwrap_or_default();
    // Init containers, one at a time; sidecars start and stay running.
    let mut initialized = true;
    for c in spec.init_containers.iter().flatten() {
        let latest = ctx.latest_in_sandbox(&c.name);
        let sidecar = is_sidecar(c);
        match latest {
            None => {
                if let Some(d) = ctx.start(c, true).await {
                    next = next.min(d);
                }
                initialized = false;
                break;
            }
            Some(i) if i.state == State::Running => {
                if sidecar {
                    if ctx.check_liveness(c, i, true).await {
                        next = Duration::from_millis(100);
                    }
                    continue;
                }
                initialized = false;
                break;
            }
            Some(i) if i.state == State::Exited && i.exit_code == 0 && !sidecar => continue,
            Some(i) if i.state == State::Exited => {
                let policy = if sidecar {
                    "Always"
                } else {
                    restart_policy(pod)
                };
                if !should_restart(policy, i.exit_code) {
                    // restartPolicy Never: the pod has failed (the status says so).
                    initialized = false;
                    break;
                }
                if let Some(d) = ctx.start(c, true).await {
                    next = next.min(d);
                }
                initialized = false;
                break;
            }
            Some(i) => {
                ctx.start_created(i).await;
                initialized = false;
                break;
            }
        }
    }
    if initialized {
        for c in &spec.containers {
            match ctx.latest_in_sandbox(&c.name) {
                None => {
                    if let Some(d) = ctx.start(c, false).await {
                        next = next.min(d);
                    }
                }
                Some(i) if i.state == State::Running => {
                    if ctx.check_liveness(c, i, false).await {
                        next = Duration::from_millis(100);
                    }
                }
                Some(i) if i.state == State::Exited => {
                    if should_restart(restart_policy(pod), i.exit_code) {
                        if let Some(d) = ctx.start(c, false).await {
                            next = next.min(d);
                        }
                    }
                }
                Some(i) => ctx.start_created(i).await,
            }
        }
    }
    let rt = agent.reader.pod(&uid).await?;
    let status = write_status(agent, pod, &rt).await;
    if matches!(status.as_deref(), Some("Succeeded" | "Failed")) {
        stop_all(agent, pod, &rt, grace_period(pod)).await;
    }
    Ok(Next::After(next))
}

struct SyncContext<'a> {
    agent: &'a Arc<Agent>,
    pod: &'a Pod,
    rt: &'a PodRuntime,
    sandbox_id: &'a str,
    pod_ips: &'a [String],
    volumes: &'a crate::volumes::PodVolumes,
}

impl SyncContext<'_> {
    /// The newest instance of `name` made in the current sandbox.
    fn latest_in_sandbox(&self, name: &str) -> Option<&Instance> {
        self.rt
            .containers
            .iter()
            .find(|c| c.name == name && c.sandbox_id == self.sandbox_id)
    }

    /// A container the runtime made but never started: the agent or containerd stopped
    /// between the two calls. Start it now; one that cannot start is removed, so that
    /// the next sync makes it again.
    async fn start_created(&self, i: &Instance) {
        if i.state != State::Created {
            return;
        }
        let mut rt = self.agent.runtime.clone();
        if let Err(e) = rt.start_container(&i.id).await {
            tracing::warn!(container = %i.id, error = %format!("{e:#}"), "starting a container left created; removing it");
            let _ = rt.remove_container(&i.id).await;
        }
    }

    fn backoff_key(&self, name: &str) -> String {
        format!("{}/{}", pod_uid(self.pod), name)
    }

    /// Look after a running container's probes: start them when this agent has none for
    /// it (the agent restarted since it started), and kill it when its liveness (or
    /// startup) probe gave up; true when it was killed (the next sync starts it again).
    async fn check_liveness(&self, c: &Container, i: &Instance, init: bool) -> bool {
        // A container this agent did not start (it restarted since) gets its probes now.
        if !self.agent.probes.has(&i.id) {
            self.agent
                .probes
                .start(self.pod, c, &i.id, self.pod_ips, init);
        }
        let Some(kind) = self.agent.probes.failed(&i.id) else {
            return false;
        };
        let what = match kind {
            ProbeKind::Startup => "startup",
            _ => "liveness",
        };
        self.agent
            .event(
                self.pod,
                field_path(init, &c.name),
                EventType::Normal,
                "Killing",
                &format!(
                    "Container {} failed {what} probe, will be restarted",
                    c.name
                ),
            )
            .await;
        let grace = probes::termination_grace(self.pod, c, kind);
        kill_container(self.agent, self.pod, c, i, grace, false).await;
        true
    }

    /// Start (or restart) container `c`, unless it is in back-off. Returns when to look
    /// again if it could not start now.
    async fn start(&self, c: &Container, init: bool) -> Option<Duration> {
        let agent = self.agent;
        let pod = self.pod;
        let uid = pod_uid(pod);
        let previous = self.rt.latest(&c.name);
        let restart_count = previous.map(|p| p.restart_count + 1).unwrap_or(0);
        let key = self.backoff_key(&c.name);
        if let Some(prev) = previous.filter(|p| p.state == State::Exited) {
            if let Some(wait) = agent.backoff.remaining(&key, instant_of(prev.finished_at)) {
                let delay = agent.backoff.delay(&key);
                let message = format!(
                    "back-off {} restarting failed container={} pod={}_{}({uid})",
                    humantime(delay),
                    c.name,
                    pod_name(pod),
                    pod_namespace(pod)
                );
                agent.set_waiting(
                    uid,
                    &c.name,
                    Some(Waiting {
                        reason: "CrashLoopBackOff".into(),
                        message,
                    }),
                );
                agent
                    .event(
                        pod,
                        field_path(init, &c.name),
                        EventType::Warning,
                        "BackOff",
                        "Back-off restarting failed container",
                    )
                    .await;
                return Some(wait + Duration::from_millis(50));
            }
            agent.backoff.next(&key);
        }
        match self.create_and_start(c, init, restart_count).await {
            Ok(()) => {
                agent.set_waiting(uid, &c.name, None);
                None
            }
            Err(w) => {
                agent.set_waiting(uid, &c.name, Some(w));
                Some(Duration::from_secs(2))
            }
        }
    }

    async fn create_and_start(
        &self,
        c: &Container,
        init: bool,
        restart_count: i32,
    ) -> Result<(), Waiting> {
        let agent = self.agent;
        let pod = self.pod;
        let fp = field_path(init, &c.name);
        let image_ref = ensure_image(agent, pod, c, init).await?;
        let ctx = EnvContext {
            node_name: agent.node_name.clone(),
            host_ips: agent.host_ips(),
            pod_ips: self.pod_ips.to_vec(),
            node_allocatable: agent.allocatable.quantities(),
            master_service: agent.master_service().await,
        };
        let env_result = env::container_env(pod, c, &ctx, agent.sources.as_ref()).await;
        let env = match env_result {
            Ok(e) => e,
            Err(e) => return Err(self.fail(fp, CONFIG_ERROR, e.to_string()).await),
        };
        if let Err(message) = check_non_root(agent, pod, c, &image_ref).await {
            return Err(self.fail(fp, CONFIG_ERROR, message).await);
        }
        let env_map = env::env_map(&env);
        let (command, args) = env::command_and_args(c, &env_map);
        let mut mounts = match self.volumes.mounts(c, &env_map) {
            Ok(m) => m,
            Err(e) => return Err(self.fail(fp, CONFIG_ERROR, e.to_string()).await),
        };
        let (extra, termination_path) = self.managed_files(c).map_err(|e| Waiting {
            reason: CONFIG_ERROR.into(),
            message: format!("preparing the container's files: {e}"),
        })?;
        mounts.extend(extra);
        let config = config::container_config(
            agent,
            pod,
            c,
            ContainerInputs {
                image_ref,
                command,
                args,
                env,
                mounts,
                restart_count,
                init,
                termination_message_host_path: termination_path,
            },
        );
        let sandbox_config = agent.sandbox_config(pod, 0);
        let mut rt = agent.runtime.clone();
        let id = match rt
            .create_container(self.sandbox_id, config, sandbox_config)
            .await
        {
            Ok(id) => id,
            Err(e) => {
                return Err(self
                    .fail(fp, "CreateContainerError", format!("{e:#}"))
                    .await)
            }
        };
        agent
            .event(
                pod,
                fp.clone(),
                EventType::Normal,
                "Created",
                &format!("Created container {}", c.name),
            )
            .await;
        if let Err(e) = rt.start_container(&id).await {
            // The runtime reports the container exited (StartError); back-off applies,
            // so there is no waiting reason of our own.
            self.fail(fp, "RunContainerError", format!("{e:#}")).await;
            return Ok(());
        }
        agent.metrics.containers_started.inc();
        agent
            .event(
                pod,
                fp.clone(),
                EventType::Normal,
                "Started",
                &format!("Started container {}", c.name),
            )
            .await;
        if let Some(hook) = c.lifecycle.as_ref().and_then(|l| l.post_start.as_ref()) {
            if let Err(e) = probes::run_handler(agent, pod, self.pod_ips, &id, hook, 30).await {
                let message = format!("PostStartHook failed: {e}");
                agent
                    .event(
                        pod,
                        fp.clone(),
                        EventType::Warning,
                        "FailedPostStartHook",
                        &message,
                    )
                    .await;
                agent
                    .event(pod, fp, EventType::Normal, "Killing", "FailedPostStartHook")
                    .await;
                let _ = rt
                    .stop_container(&id, grace_period(pod).max(MIN_GRACE))
                    .await;
                return Ok(());
            }
        }
        agent.probes.start(pod, c, &id, self.pod_ips, init);
        Ok(())
    }

    /// Record the `Failed` event of a container that could not be made, and say why it
    /// waits.
    async fn fail(&self, field_path: Option<String>, reason: &str, message: String) -> Waiting {
        self.agent
            .event(
                self.pod,
                field_path,
                EventType::Warning,
                "Failed",
                &format!("Error: {message}"),
            )
            .await;
        Waiting {
            reason: reason.into(),
            message,
        }
    }

    /// The files the agent provides to every container: the termination-message file
    /// and, with the pod's own network, the managed `/etc/hosts`.
    fn managed_files(&self, c: &Container) -> std::io::Result<(Vec<cri::Mount>, Option<String>)> {
        let agent = self.agent;
        let pod = self.pod;
        let dir = agent.pod_dir(pod_uid(pod));
        let mut mounts = Vec::new();
        let hosts = dir.join("etc-hosts");
        let content = if host_network(pod) {
            crate::dns::host_network_hosts_file(
                pod,
                &std::fs::read_to_string("/etc/hosts").unwrap_or_default(),
            )
        } else {
            let (hostname, domain) = crate::dns::pod_hostname(pod, &agent.opts.cluster_domain);
            crate::dns::hosts_file(pod, self.pod_ips, &hostname, &domain)
        };
        std::fs::create_dir_all(&dir)?;
        std::fs::write(&hosts, content)?;
        mounts.push(cri::Mount {
            container_path: "/etc/hosts".into(),
            host_path: hosts.display().to_string(),
            ..Default::default()
        });
        let path = c
            .termination_message_path
            .clone()
            .unwrap_or_else(|| "/dev/termination-log".into());
        let mut termination = None;
        if !path.is_empty() {
            let cdir = dir.join("containers").join(&c.name);
            std::fs::create_dir_all(&cdir)?;
            let file = cdir.join(format!("{:08x}", rand::random::<u32>()));
            std::fs::write(&file, b"")?;
            set_mode(&file, 0o666)?;
            mounts.push(cri::Mount {
                container_path: path,
                host_path: file.display().to_string(),
                ..Default::default()
            });
            termination = Some(file.display().to_string());
        }
        Ok((mounts, termination))
    }
}

fn set_mode(p: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
}

/// `10s`, `1m20s`, `5m0s`, as Go prints a duration.
fn humantime(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 {
        format!("{}m{}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

/// `runAsNonRoot` with no `runAsUser`: the image's user must not be root.
async fn check_non_root(
    agent: &Agent,
    pod: &Pod,
    c: &Container,
    image: &str,
) -> Result<(), String> {
    let sc = config::effective_security(pod, c);
    if sc.run_as_non_root != Some(true) {
        return Ok(());
    }
    if let Some(uid) = sc.run_as_user {
        return if uid == 0 {
            Err(
                "container's runAsUser breaks non-root policy (pod: \"".to_string()
                    + &format!(
                        "{}_{}({})\", container: {})",
                        pod_name(pod),
                        pod_namespace(pod),
                        pod_uid(pod),
                        c.name
                    ),
            )
        } else {
            Ok(())
        };
    }
    let img = agent
        .runtime
        .clone()
        .image_status(image)
        .await
        .ok()
        .flatten();
    let uid = img.as_ref().and_then(|i| i.uid.as_ref()).map(|u| u.value);
    let username = img.map(|i| i.username).unwrap_or_default();
    match uid {
        Some(0) => Err("container has runAsNonRoot and image will run as root (pod: \"".to_string()
            + &format!("{}_{}({})\", container: {})", pod_name(pod), pod_namespace(pod), pod_uid(pod), c.name)),
        None if !username.is_empty() => Err(format!(
            "container has runAsNonRoot and image has non-numeric user ({username}), cannot verify user is non-root (pod: \"{}_{}({})\", container: {})",
            pod_name(pod), pod_namespace(pod), pod_uid(pod), c.name
        )),
        None => Err("container has runAsNonRoot and image will run as root (pod: \"".to_string()
            + &format!("{}_{}({})\", container: {})", pod_name(pod), pod_namespace(pod), pod_uid(pod), c.name)),
        Some(_) => Ok(()),
    }
}

/// A ready sandbox for the pod, made when there is none. `Ok(None)`: the pod has run
/// to completion and must not get a new one.
async fn ensure_sandbox(
    agent: &Arc<Agent>,
    pod: &Pod,
    rt: PodRuntime,
) -> Result<Option<PodRuntime>, Waiting> {
    if rt.sandbox().is_some_and(|s| s.ready) {
        return Ok(Some(rt));
    }
    let spec = pod.spec.clone().unwrap_or_default();
    let ran = spec.containers.iter().any(|c| rt.latest(&c.name).is_some());
    if ran && restart_policy(pod) == "Never" {
        return Ok(None);
    }
    if ran && restart_policy(pod) == "OnFailure" {
        let all_succeeded = spec.containers.iter().all(|c| {
            rt.latest(&c.name)
                .is_some_and(|i| i.state == State::Exited && i.exit_code == 0)
        });
        if all_succeeded {
            return Ok(None);
        }
    }
    let mut runtime = agent.runtime.clone();
    if let Some(old) = rt.sandbox() {
        agent
            .event(
                pod,
                None,
                EventType::Normal,
                "SandboxChanged",
                "Pod sandbox changed, it will be killed and re-created.",
            )
            .await;
        for c in rt.running() {
            let _ = runtime.stop_container(&c.id, MIN_GRACE).await;
        }
        let _ = runtime.stop_pod_sandbox(&old.id).await;
    }
    let attempt = rt.sandbox().map(|s| s.attempt + 1).unwrap_or(0);
    let config = agent.sandbox_config(pod, attempt);
    let log_dir = agent.pod_log_dir(pod);
    if let Err(e) = std::fs::create_dir_all(&log_dir) {
        return Err(Waiting {
            reason: "ContainerCreating".into(),
            message: format!("creating {}: {e}", log_dir.display()),
        });
    }
    let created = match runtime_handler(agent, &spec).await {
        Ok(handler) => runtime.run_pod_sandbox(config, &handler).await,
        Err(e) => Err(e),
    };
    match created {
        Ok(_) => {}
        Err(e) => {
            let message = format!("Failed to create pod sandbox: {e:#}");
            agent
                .event(
                    pod,
                    None,
                    EventType::Warning,
                    "FailedCreatePodSandBox",
                    &message,
                )
                .await;
            return Err(Waiting {
                reason: "ContainerCreating".into(),
                message,
            });
        }
    }
    agent.metrics.sandboxes_started.inc();
    let rt = agent.reader.pod(pod_uid(pod)).await.map_err(|e| Waiting {
        reason: "ContainerCreating".into(),
        message: format!("{e:#}"),
    })?;
    if let Some(sandbox) = rt.sandbox().filter(|s| s.ready) {
        if !host_network(pod) {
            crate::cni::forget_neighbors(&sandbox.ips).await;
        }
        Ok(Some(rt))
    } else {
        Err(Waiting {
            reason: "ContainerCreating".into(),
            message: "the new pod sandbox is not ready".into(),
        })
    }
}

/// The CRI runtime handler of the pod's RuntimeClass (`""`, the runtime's default, when
/// it names none), read when a sandbox is made, as the kubelet's RuntimeClass manager
/// does; a class that does not exist fails the sandbox until it does.
async fn runtime_handler(agent: &Agent, spec: &PodSpec) -> anyhow::Result<String> {
    let Some(name) = spec.runtime_class_name.as_deref() else {
        return Ok(String::new());
    };
    match agent.sources.runtime_class(name).await? {
        Some(class) => Ok(class.handler),
        None => anyhow::bail!("RuntimeClass {name:?} not found"),
    }
}

/// Compute and write the pod's status; returns the phase written.
pub async fn write_status(agent: &Agent, pod: &Pod, rt: &PodRuntime) -> Option<String> {
    // A static pod's status lives on its mirror pod in the API.
    let mirror = if crate::static_pods::is_static(pod) {
        Some(crate::static_pods::mirror(agent, pod).await?)
    } else {
        None
    };
    let with_mirror_status;
    let (pod, target) = match &mirror {
        Some(m) => {
            let mut p = pod.clone();
            p.status = m.status.clone();
            with_mirror_status = p;
            (&with_mirror_status, m)
        }
        None => (pod, pod),
    };
    let uid = pod_uid(pod);
    let waiting = agent.waiting_of(uid);
    let probes = |id: &str| -> ProbeView { agent.probes.view(id) };
    let pod_ips: Vec<String> = if host_network(pod) {
        agent.host_ips()
    } else {
        rt.sandbox()
            .filter(|s| s.ready)
            .map(|s| s.ips.clone())
            .unwrap_or_default()
    };
    let host_ips = agent.host_ips();
    let inputs = StatusInputs {
        host_ips: &host_ips,
        pod_ips: &pod_ips,
        waiting: &waiting,
        probes: &probes,
        start_time: agent.first_seen(uid),
    };
    let status = status::compute(pod, rt, &inputs);
    let phase = status.phase.clone();
    let was_running = pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
    if phase.as_deref() == Some("Running") && !was_running {
        let seen = agent.first_seen(uid);
        let took = status::now().duration_since(seen);
        agent
            .metrics
            .pod_start_duration
            .observe(took.as_secs_f64().max(0.0));
    }
    match agent.status.write(target, &status).await {
        Ok(true) => {
            agent.metrics.status_writes.inc();
        }
        Ok(false) => {}
        Err(e) => {
            tracing::debug!(pod = %pod_name(pod), error = %e, "writing pod status");
        }
    }
    phase
}

/// Stop one container: its preStop hook first (within the grace period), then SIGTERM
/// and SIGKILL after what is left of the grace period.
async fn kill_container(
    agent: &Arc<Agent>,
    pod: &Pod,
    c: &Container,
    i: &Instance,
    grace: i64,
    event: bool,
) {
    let started = Instant::now();
    if event {
        agent
            .event(
                pod,
                field_path(false, &c.name),
                EventType::Normal,
                "Killing",
                &format!("Stopping container {}", c.name),
            )
            .await;
    }
    if let Some(hook) = c.lifecycle.as_ref().and_then(|l| l.pre_stop.as_ref()) {
        let pod_ips: Vec<String> = pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.clone())
            .into_iter()
            .collect();
        let budget = grace.max(MIN_GRACE);
        let run = probes::run_handler(agent, pod, &pod_ips, &i.id, hook, budget);
        match tokio::time::timeout(Duration::from_secs(budget as u64), run).await {
            Ok(Err(e)) => {
                agent
                    .event(
                        pod,
                        field_path(false, &c.name),
                        EventType::Warning,
                        "FailedPreStopHook",
                        &format!("PreStopHook failed: {e}"),
                    )
                    .await
            }
            Ok(Ok(())) => {}
            Err(_) => {}
        }
    }
    let left = grace - started.elapsed().as_secs() as i64;
    let mut rt = agent.runtime.clone();
    if let Err(e) = rt.stop_container(&i.id, left.max(MIN_GRACE)).await {
        tracing::warn!(container = %i.id, error = %e, "stopping container");
    }
    agent.probes.stop(&i.id);
}

/// Stop every running container of the pod (concurrently) and its sandbox.
async fn stop_all(agent: &Arc<Agent>, pod: &Pod, rt: &PodRuntime, grace: i64) {
    let spec = pod.spec.clone().unwrap_or_default();
    let specs: Vec<Container> = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .cloned()
        .collect();
    let kills = rt.running().map(|i| {
        let c = specs
            .iter()
            .find(|c| c.name == i.name)
            .cloned()
            .unwrap_or_else(|| Container {
                name: i.name.clone(),
                ..Default::default()
            });
        let agent = agent.clone();
        let pod = pod.clone();
        let i = i.clone();
        async move { kill_container(&agent, &pod, &c, &i, grace, true).await }
    });
    futures::future::join_all(kills).await;
    let mut runtime = agent.runtime.clone();
    for s in rt.sandboxes.iter().filter(|s| s.ready) {
        if let Err(e) = runtime.stop_pod_sandbox(&s.id).await {
            tracing::warn!(sandbox = %s.id, error = %e, "stopping pod sandbox");
        }
    }
}

/// Take a pod off the node: stop its containers within `grace`, report their final
/// state, remove sandbox, volumes, logs and cgroups, then delete the API object (when
/// there is one). `pod` is `None` for a pod the API no longer has.
pub async fn terminate(
    agent: &Arc<Agent>,
    pod: Option<&Pod>,
    uid: &str,
    rt: &PodRuntime,
    grace: i64,
) -> anyhow::Result<Next> {
    let placeholder;
    let p = match pod {
        Some(p) => p,
        None => {
            placeholder = orphan_pod(uid, rt);
            &placeholder
        }
    };
    stop_all(agent, p, rt, grace).await;
    let rt = agent.reader.pod(uid).await?;
    if rt.running().next().is_some() {
        return Ok(Next::After(Duration::from_secs(1)));
    }
    if let Some(pod) = pod {
        write_status(agent, pod, &rt).await;
    }
    let mut runtime = agent.runtime.clone();
    for s in &rt.sandboxes {
        if let Err(e) = runtime.remove_pod_sandbox(&s.id).await {
            tracing::warn!(sandbox = %s.id, error = %e, "removing pod sandbox");
            return Ok(Next::After(Duration::from_secs(1)));
        }
    }
    if let Err(e) = agent.volumes.teardown(uid) {
        tracing::warn!(pod = uid, error = %e, "tearing down volumes");
        return Ok(Next::After(Duration::from_secs(2)));
    }
    let _ = std::fs::remove_dir_all(agent.pod_dir(uid));
    if pod.is_some() {
        let _ = std::fs::remove_dir_all(agent.pod_log_dir(p));
    }
    remove_pod_cgroups(&config::cgroup_parent(agent, p));
    // A static pod has no API object of its own (its mirror goes with its manifest).
    if let Some(pod) = pod.filter(|p| !crate::static_pods::is_static(p)) {
        let api: Api<Pod> = Api::namespaced(agent.client.clone(), pod_namespace(pod));
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(uid.to_string()),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(pod_name(pod), &dp).await {
            Ok(_) => {}
            Err(e) if e.is_not_found() || e.is_conflict() => {}
            Err(e) => {
                tracing::warn!(pod = %pod_name(pod), error = %e, "deleting pod");
                return Ok(Next::After(Duration::from_secs(1)));
            }
        }
    }
    agent.forget_pod(uid);
    Ok(Next::Finished)
}

/// A stand-in for a pod the API no longer has, from what the runtime knows of it.
fn orphan_pod(uid: &str, rt: &PodRuntime) -> Pod {
    let mut pod = Pod::default();
    pod.metadata.uid = Some(uid.to_string());
    let _ = rt;
    pod
}

/// Remove the pod's cgroup from every v1 hierarchy (runc leaves the parent behind).
fn remove_pod_cgroups(parent: &str) {
    let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    for e in entries.flatten() {
        let dir = e.path().join(parent.trim_start_matches('/'));
        if dir.is_dir() {
            let _ = std::fs::remove_dir(&dir);
        }
    }
}
