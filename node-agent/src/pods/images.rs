//! Getting a container's image onto the node: the pull policy, `imagePullSecrets`
//! credentials, pull back-off (`ErrImagePull`, then `ImagePullBackOff`), and the Events
//! `kubectl describe pod` shows (`Pulling`, `Pulled`, `Failed`, `BackOff`).

use std::time::Instant;

use base64::Engine;
use k8s_cri::v1 as cri;
use k8s_openapi::api::core::v1::{Container, Pod};
use keelson_component::events::EventType;
use serde_json::Value;

use crate::agent::{field_path, Agent};
use crate::pods::config::{pod_namespace, pod_uid};
use crate::pods::status::Waiting;

/// `docker.io` for images without a registry host, as Docker and containerd read them.
pub fn registry_host(image: &str) -> &str {
    match image.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            first
        }
        _ => "docker.io",
    }
}

/// The pull policy Kubernetes defaults to: `Always` for `:latest` or untagged images.
pub fn pull_policy(c: &Container) -> &str {
    if let Some(p) = c.image_pull_policy.as_deref() {
        return p;
    }
    let image = c.image.as_deref().unwrap_or_default();
    let last = image.rsplit('/').next().unwrap_or(image);
    if image.contains('@') {
        "IfNotPresent"
    } else if !last.contains(':') || last.ends_with(":latest") {
        "Always"
    } else {
        "IfNotPresent"
    }
}

/// Credentials for `host` from a `.dockerconfigjson` (or legacy `.dockercfg`) document.
pub fn auth_for(docker_config: &Value, host: &str) -> Option<cri::AuthConfig> {
    let auths = docker_config.get("auths").unwrap_or(docker_config);
    let candidates = [
        host.to_string(),
        format!("https://{host}"),
        format!("http://{host}"),
        format!("https://{host}/v1/"),
        format!("https://{host}/v2/"),
    ];
    let entry = candidates.iter().find_map(|k| auths.get(k)).or_else(|| {
        (host == "docker.io")
            .then(|| auths.get("https://index.docker.io/v1/"))
            .flatten()
    })?;
    let s = |k: &str| {
        entry
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let (mut username, mut password) = (s("username"), s("password"));
    let auth = s("auth");
    if username.is_empty() && !auth.is_empty() {
        if let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(&auth) {
            if let Some((u, p)) = String::from_utf8_lossy(&decoded).split_once(':') {
                username = u.to_string();
                password = p.to_string();
            }
        }
    }
    Some(cri::AuthConfig {
        username,
        password,
        auth,
        // Empty: containerd 1.6 parses a server address as a URL and refuses
        // `host:port` ("first path segment in URL cannot contain colon"); the keyring
        // lookup above already matched the image's registry, and an empty address lets
        // the credentials reach a mirror serving that registry too.
        server_address: String::new(),
        identity_token: s("identitytoken"),
        registry_token: s("registrytoken"),
    })
}

async fn pull_credentials(agent: &Agent, pod: &Pod, image: &str) -> Option<cri::AuthConfig> {
    let host = registry_host(image);
    let secrets = pod
        .spec
        .as_ref()?
        .image_pull_secrets
        .clone()
        .unwrap_or_default();
    for r in secrets {
        let Some(secret) = agent
            .sources
            .secret(pod_namespace(pod), &r.name)
            .await
            .ok()
            .flatten()
        else {
            continue;
        };
        let data = secret.data.unwrap_or_default();
        let doc = data
            .get(".dockerconfigjson")
            .or_else(|| data.get(".dockercfg"))
            .and_then(|b| serde_json::from_slice::<Value>(&b.0).ok());
        if let Some(auth) = doc.and_then(|d| auth_for(&d, host)) {
            return Some(auth);
        }
    }
    None
}

/// Make sure the container's image is on the node; returns the image reference to
/// create the container from, or why the container must wait.
pub async fn ensure_image(
    agent: &Agent,
    pod: &Pod,
    c: &Container,
    init: bool,
) -> Result<String, Waiting> {
    let image = c.image.clone().unwrap_or_default();
    let fp = field_path(init, &c.name);
    let mut rt = agent.runtime.clone();
    let present = rt.image_status(&image).await.ok().flatten();
    let policy = pull_policy(c);
    if let Some(img) = &present {
        if policy != "Always" {
            agent
                .event(
                    pod,
                    fp,
                    EventType::Normal,
                    "Pulled",
                    &format!("Container image \"{image}\" already present on machine"),
                )
                .await;
            return Ok(img.id.clone());
        }
    } else if policy == "Never" {
        let message =
            format!("Container image \"{image}\" is not present with pull policy of Never");
        agent
            .event(pod, fp, EventType::Warning, "ErrImageNeverPull", &message)
            .await;
        return Err(Waiting {
            reason: "ErrImageNeverPull".into(),
            message,
        });
    }
    let key = format!("{}/{}/pull", pod_uid(pod), c.name);
    if let Some(_wait) = agent.backoff.remaining_since_last(&key) {
        let message = format!("Back-off pulling image \"{image}\"");
        agent
            .event(pod, fp, EventType::Normal, "BackOff", &message)
            .await;
        return Err(Waiting {
            reason: "ImagePullBackOff".into(),
            message,
        });
    }
    agent
        .event(
            pod,
            fp.clone(),
            EventType::Normal,
            "Pulling",
            &format!("Pulling image \"{image}\""),
        )
        .await;
    let started = Instant::now();
    let auth = pull_credentials(agent, pod, &image).await;
    match rt.pull_image(&image, auth, None).await {
        Ok(image_ref) => {
            agent.backoff.reset(&key);
            let size = rt
                .image_status(&image)
                .await
                .ok()
                .flatten()
                .map(|i| i.size)
                .unwrap_or(0);
            let took = started.elapsed();
            agent
                .event(
                    pod,
                    fp,
                    EventType::Normal,
                    "Pulled",
                    &format!(
                        "Successfully pulled image \"{image}\" in {took:.3?} ({took:.3?} including waiting). Image size: {size} bytes."
                    ),
                )
                .await;
            agent.metrics.image_pulls.inc();
            Ok(image_ref)
        }
        Err(e) => {
            agent.backoff.next(&key);
            let message = format!("Failed to pull image \"{image}\": {}", e.message());
            agent
                .event(pod, fp.clone(), EventType::Warning, "Failed", &message)
                .await;
            agent
                .event(pod, fp, EventType::Warning, "Failed", "Error: ErrImagePull")
                .await;
            Err(Waiting {
                reason: "ErrImagePull".into(),
                message,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn registry_hosts() {
        assert_eq!(registry_host("busybox"), "docker.io");
        assert_eq!(registry_host("library/busybox:1"), "docker.io");
        assert_eq!(registry_host("127.0.0.1:5000/a/b:1"), "127.0.0.1:5000");
        assert_eq!(registry_host("keelson.local/pause:1"), "keelson.local");
        assert_eq!(registry_host("localhost/x"), "localhost");
    }

    #[test]
    fn default_pull_policies() {
        let c = |image: &str| -> Container {
            serde_json::from_value(json!({"name": "a", "image": image})).unwrap()
        };
        assert_eq!(pull_policy(&c("busybox")), "Always");
        assert_eq!(pull_policy(&c("busybox:latest")), "Always");
        assert_eq!(pull_policy(&c("busybox:1.36")), "IfNotPresent");
        assert_eq!(pull_policy(&c("127.0.0.1:5000/busybox")), "Always");
        assert_eq!(pull_policy(&c("a@sha256:00")), "IfNotPresent");
    }

    #[test]
    fn credentials_from_docker_config() {
        let doc = json!({"auths": {"127.0.0.1:5000": {"auth": "dXNlcjpwYXNz"}}});
        let a = auth_for(&doc, "127.0.0.1:5000").unwrap();
        assert_eq!((a.username.as_str(), a.password.as_str()), ("user", "pass"));
        assert!(auth_for(&doc, "docker.io").is_none());
        let doc = json!({"https://index.docker.io/v1/": {"username": "u", "password": "p"}});
        assert_eq!(auth_for(&doc, "docker.io").unwrap().username, "u");
    }
}
