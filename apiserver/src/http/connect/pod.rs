//! `pods/log`, `pods/exec`, `pods/attach`, `pods/portforward`: kube-apiserver's checks
//! (pod, container, node, options), then the node agent's `/containerLogs`, `/exec`,
//! `/attach`, `/portForward`.

use super::node;
use super::{backend_uri, host_port, relay_error, text_plain, ApiState, Backend};
use crate::http::resources::Query;
use crate::http::route::ResourceTarget;
use crate::registry::parse_bool;
use axum::body::Body;
use axum::http::{Method, Request, Response, Uri};
use http_body_util::{BodyExt, Limited};
use keelson_apimachinery::{ApiError, Cause};
use serde_json::{json, Value};

/// The annotation naming the container `kubectl` and the apiserver pick by default.
const DEFAULT_CONTAINER_ANNOTATION: &str = "kubectl.kubernetes.io/default-container";

fn names(pod: &Value, list: &str) -> Vec<String> {
    pod.pointer(&format!("/spec/{list}"))
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .filter_map(|c| c.get("name")?.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// The container a request is about: the one asked for (any kind of container), else the
/// default-container annotation, else the only container.
pub fn choose_container(pod: &Value, requested: &str) -> Result<String, ApiError> {
    let pod_name = pod
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let containers = names(pod, "containers");
    let init = names(pod, "initContainers");
    let ephemeral = names(pod, "ephemeralContainers");
    let exists = |c: &str| {
        containers
            .iter()
            .chain(&init)
            .chain(&ephemeral)
            .any(|n| n == c)
    };
    if !requested.is_empty() {
        if exists(requested) {
            return Ok(requested.to_string());
        }
        return Err(ApiError::bad_request(format!(
            "container {requested} is not valid for pod {pod_name}"
        )));
    }
    let annotated = pod
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(DEFAULT_CONTAINER_ANNOTATION))
        .and_then(Value::as_str)
        .filter(|c| exists(c));
    if let Some(c) = annotated {
        return Ok(c.to_string());
    }
    match containers.as_slice() {
        [only] => Ok(only.clone()),
        [] => Err(ApiError::bad_request(format!(
            "a container name must be specified for pod {pod_name}"
        ))),
        many => {
            let mut msg = format!(
                "a container name must be specified for pod {pod_name}, choose one of: [{}]",
                many.join(" ")
            );
            if !init.is_empty() {
                msg.push_str(&format!(
                    " or one of the init containers: [{}]",
                    init.join(" ")
                ));
            }
            if !ephemeral.is_empty() {
                msg.push_str(&format!(
                    " or one of the ephemeral containers: [{}]",
                    ephemeral.join(" ")
                ));
            }
            Err(ApiError::bad_request(msg))
        }
    }
}

/// The node a pod runs on, and its agent's address.
async fn node_of(
    state: &ApiState,
    t: &ResourceTarget,
    pod: &Value,
) -> Result<(String, node::NodeAddress), ApiError> {
    let node_name = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if node_name.is_empty() {
        return Err(ApiError::bad_request(format!(
            "pod {} does not have a host assigned",
            t.name
        )));
    }
    let addr = node::resolve(state, &node_name).await?;
    Ok((node_name, addr))
}

/// `PodLogOptions` from the query, checked as Kubernetes' `ValidatePodLogOptions`.
#[derive(Debug, Default, PartialEq)]
pub struct LogOptions {
    pub container: String,
    pub follow: bool,
    pub previous: bool,
    pub timestamps: bool,
    pub since_seconds: Option<i64>,
    pub since_time: Option<String>,
    pub tail_lines: Option<i64>,
    pub limit_bytes: Option<i64>,
}

fn int_param(q: &Query, name: &str) -> Result<Option<i64>, ApiError> {
    match q.get(name) {
        "" => Ok(None),
        s => s.parse().map(Some).map_err(|_| {
            ApiError::bad_request(format!("invalid value {s:?} for {name}: not an integer"))
        }),
    }
}

impl LogOptions {
    pub fn parse(q: &Query, pod_name: &str) -> Result<LogOptions, ApiError> {
        let since_time = match q.get("sinceTime") {
            "" => None,
            s => Some(
                chrono::DateTime::parse_from_rfc3339(s)
                    .map_err(|e| {
                        ApiError::bad_request(format!("invalid value {s:?} for sinceTime: {e}"))
                    })?
                    .with_timezone(&chrono::Utc)
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            ),
        };
        let opts = LogOptions {
            container: q.get("container").to_string(),
            follow: parse_bool(q.get("follow")),
            previous: parse_bool(q.get("previous")),
            timestamps: parse_bool(q.get("timestamps")),
            since_seconds: int_param(q, "sinceSeconds")?,
            since_time,
            tail_lines: int_param(q, "tailLines")?,
            limit_bytes: int_param(q, "limitBytes")?,
        };
        let mut causes = Vec::new();
        if let Some(n) = opts.tail_lines.filter(|n| *n < 0) {
            causes.push(Cause::invalid(
                "tailLines",
                &json!(n),
                "must be greater than or equal to 0",
            ));
        }
        if let Some(n) = opts.limit_bytes.filter(|n| *n < 1) {
            causes.push(Cause::invalid(
                "limitBytes",
                &json!(n),
                "must be greater than 0",
            ));
        }
        match (opts.since_seconds, &opts.since_time) {
            (Some(_), Some(_)) => causes.push(Cause::forbidden(
                "",
                "at most one of `sinceTime` or `sinceSeconds` may be specified",
            )),
            (Some(n), None) if n < 1 => causes.push(Cause::invalid(
                "sinceSeconds",
                &json!(n),
                "must be greater than 0",
            )),
            _ => {}
        }
        if !causes.is_empty() {
            return Err(ApiError::invalid("", "PodLogOptions", pod_name, causes));
        }
        Ok(opts)
    }

    /// The node agent's `/containerLogs` query.
    fn kubelet_query(&self) -> String {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        for (flag, name) in [
            (self.follow, "follow"),
            (self.previous, "previous"),
            (self.timestamps, "timestamps"),
        ] {
            if flag {
                q.append_pair(name, "true");
            }
        }
        if let Some(n) = self.since_seconds {
            q.append_pair("sinceSeconds", &n.to_string());
        }
        if let Some(t) = &self.since_time {
            q.append_pair("sinceTime", t);
        }
        if let Some(n) = self.tail_lines {
            q.append_pair("tailLines", &n.to_string());
        }
        if let Some(n) = self.limit_bytes {
            q.append_pair("limitBytes", &n.to_string());
        }
        q.finish()
    }
}

/// `GET pods/log`: the agent's `/containerLogs` body, streamed; an agent's error answer
/// becomes a Status with its code and text, as kube-apiserver's log REST does.
pub async fn log(
    state: &ApiState,
    t: &ResourceTarget,
    req: Request<Body>,
) -> Result<Response<Body>, ApiError> {
    if req.method() != Method::GET {
        return Err(ApiError::method_not_allowed(format!(
            "{} is not supported on pods/log",
            req.method()
        )));
    }
    let q = Query::parse(req.uri().query());
    let opts = LogOptions::parse(&q, &t.name)?;
    let pod = state.registry.get(t.rt, &t.namespace, &t.name).await?;
    let container = choose_container(&pod, &opts.container)?;
    let (node_name, addr) = node_of(state, t, &pod).await?;
    let query = opts.kubelet_query();
    let path = format!(
        "/containerLogs/{}/{}/{container}{}{query}",
        t.namespace,
        t.name,
        if query.is_empty() { "" } else { "?" }
    );
    let backend = Backend {
        uri: backend_uri("https", &host_port(&addr.host, addr.kubelet_port), &path)?,
        what: format!("node \"{node_name}\""),
        via_kubelet: true,
    };
    let out = Request::get("/")
        .body(Body::empty())
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let resp = state
        .connect
        .kubelet
        .forward(out, &backend.uri)
        .await
        .map_err(|e| relay_error(&backend, e))?;
    let status = resp.status();
    if !status.is_success() {
        let body = Limited::new(resp.into_body(), 64 * 1024)
            .collect()
            .await
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).trim().to_string())
            .unwrap_or_default();
        return Err(backend_status(status.as_u16(), body, &t.name));
    }
    let mut resp = resp.map(Body::new);
    text_plain(&mut resp);
    Ok(resp)
}

/// An error answer from a node agent as a Status (Kubernetes' generic server response).
fn backend_status(code: u16, body: String, pod_name: &str) -> ApiError {
    let reason = match code {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        409 => "Conflict",
        429 => "TooManyRequests",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "InternalError",
    };
    let message = if body.is_empty() {
        format!("the node agent answered {code} for the log of pod {pod_name}")
    } else {
        body
    };
    ApiError::new(code, reason, message)
}

/// `pods/exec`, `pods/attach`, `pods/portforward`: the agent URL the request is relayed
/// to (any upgrade headers go along).
pub async fn stream_backend(
    state: &ApiState,
    t: &ResourceTarget,
    method: &Method,
    uri: &Uri,
) -> Result<Backend, ApiError> {
    if method != Method::GET && method != Method::POST {
        return Err(ApiError::method_not_allowed(format!(
            "{method} is not supported on pods/{}",
            t.subresource
        )));
    }
    let q = Query::parse(uri.query());
    let pod = state.registry.get(t.rt, &t.namespace, &t.name).await?;
    let path = match t.subresource.as_str() {
        "portforward" => {
            let query = uri.query().unwrap_or("");
            format!(
                "/portForward/{}/{}{}{query}",
                t.namespace,
                t.name,
                if query.is_empty() { "" } else { "?" }
            )
        }
        kind => {
            let commands = q.all("command");
            if kind == "exec" && commands.is_empty() {
                return Err(ApiError::bad_request("you must specify at least 1 command"));
            }
            let container = choose_container(&pod, q.get("container"))?;
            format!(
                "/{kind}/{}/{}/{container}?{}",
                t.namespace,
                t.name,
                stream_query(&q, &commands)
            )
        }
    };
    let (node_name, addr) = node_of(state, t, &pod).await?;
    Ok(Backend {
        uri: backend_uri("https", &host_port(&addr.host, addr.kubelet_port), &path)?,
        what: format!("node \"{node_name}\""),
        via_kubelet: true,
    })
}

/// The agent's exec/attach query: the commands, and each stream flag both as the API
/// names it (`stdin`) and as the kubelet reads it (`input`).
fn stream_query(q: &Query, commands: &[&str]) -> String {
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    for c in commands {
        out.append_pair("command", c);
    }
    for (api, kubelet) in [
        ("stdin", "input"),
        ("stdout", "output"),
        ("stderr", "error"),
        ("tty", "tty"),
    ] {
        if parse_bool(q.get(api)) {
            out.append_pair(api, "true");
            if kubelet != api {
                out.append_pair(kubelet, "1");
            }
        }
    }
    out.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> Value {
        json!({"metadata": {"name": "web"}, "spec": {
            "initContainers": [{"name": "setup"}],
            "containers": [{"name": "app"}, {"name": "sidecar"}],
        }})
    }

    #[test]
    fn container_defaulting_as_kubernetes() {
        let err = choose_container(&pod(), "").unwrap_err();
        assert_eq!(err.code, 400);
        assert_eq!(
            err.message,
            "a container name must be specified for pod web, choose one of: [app sidecar] or one of the init containers: [setup]"
        );
        assert_eq!(choose_container(&pod(), "setup").unwrap(), "setup");
        let err = choose_container(&pod(), "nope").unwrap_err();
        assert_eq!(err.message, "container nope is not valid for pod web");
        let mut annotated = pod();
        annotated["metadata"]["annotations"] =
            json!({"kubectl.kubernetes.io/default-container": "sidecar"});
        assert_eq!(choose_container(&annotated, "").unwrap(), "sidecar");
        let one = json!({"metadata": {"name": "x"}, "spec": {"containers": [{"name": "only"}]}});
        assert_eq!(choose_container(&one, "").unwrap(), "only");
    }

    #[test]
    fn log_options_validate_as_kubernetes() {
        let parse = |q: &str| LogOptions::parse(&Query::parse(Some(q)), "web");
        let ok = parse("follow=true&tailLines=10&limitBytes=5&container=c").unwrap();
        assert_eq!(ok.kubelet_query(), "follow=true&tailLines=10&limitBytes=5");
        let err = parse("tailLines=-1").unwrap_err();
        assert_eq!(err.code, 422);
        assert_eq!(
            err.message,
            "PodLogOptions \"web\" is invalid: tailLines: Invalid value: -1: must be greater than or equal to 0"
        );
        assert_eq!(parse("limitBytes=0").unwrap_err().code, 422);
        assert_eq!(parse("sinceSeconds=0").unwrap_err().code, 422);
        let both = parse("sinceSeconds=5&sinceTime=2026-01-01T00:00:00Z").unwrap_err();
        assert!(
            both.message
                .contains("at most one of `sinceTime` or `sinceSeconds`"),
            "{}",
            both.message
        );
        assert_eq!(parse("tailLines=ten").unwrap_err().code, 400);
        assert_eq!(parse("sinceTime=yesterday").unwrap_err().code, 400);
        let t = parse("sinceTime=2026-01-01T01:00:00%2B01:00").unwrap();
        assert_eq!(t.kubelet_query(), "sinceTime=2026-01-01T00%3A00%3A00Z");
    }

    #[test]
    fn exec_query_names_streams_both_ways() {
        let q = Query::parse(Some(
            "command=sh&command=-c&command=echo+hi&stdin=true&stdout=1&tty=false",
        ));
        assert_eq!(
            stream_query(&q, &q.all("command")),
            "command=sh&command=-c&command=echo+hi&stdin=true&input=1&stdout=true&output=1"
        );
    }
}
