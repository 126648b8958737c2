//! The Kubernetes REST API over HTTP: routing, discovery, OpenAPI, health, metrics and
//! resource requests.

pub mod connect;
pub mod discovery;
pub mod resources;
pub mod respond;
pub mod route;
pub mod table;

use crate::metrics::{DurationLabels, Metrics};
use crate::registry::{Registry, UserInfo};
use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue, Method, Request, Response};
use http_body_util::{BodyExt, Limited};
use keelson_apimachinery::ApiError;
use respond::{error_response, json_response, Format};
use route::Target;
use std::sync::Arc;
use std::time::Instant;

/// Kubernetes' limit on request bodies.
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// Everything a request handler needs.
pub struct ApiState {
    pub registry: Registry,
    /// For reviews (TokenReview) that ask the authenticators.
    pub auth: Arc<crate::auth::Authenticator>,
    /// The OpenAPI documents, rebuilt when CRDs change.
    pub openapi: Arc<crate::openapi::Published>,
    pub metrics: Metrics,
    /// `host:port` clients should use, for `/api`'s serverAddressByClientCIDRs.
    pub advertise: String,
    /// Relays for the subresources answered by a node agent or a pod.
    pub connect: connect::Connector,
}

fn verb_of(method: &Method, t: &Target, watch: bool) -> &'static str {
    match (method, t) {
        (&Method::GET, Target::Resource(r)) if watch || r.watch_path => "WATCH",
        (&Method::GET, Target::Resource(r)) if r.name.is_empty() => "LIST",
        (&Method::GET, _) => "GET",
        (&Method::POST, _) => "POST",
        (&Method::PUT, _) => "PUT",
        (&Method::PATCH, _) => "PATCH",
        (&Method::DELETE, Target::Resource(r)) if r.name.is_empty() => "DELETECOLLECTION",
        (&Method::DELETE, _) => "DELETE",
        _ => "OTHER",
    }
}

fn text(code: u16, body: &'static str) -> Response<Body> {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = axum::http::StatusCode::from_u16(code).expect("valid code");
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn bytes_response(body: Bytes, ct: &'static str) -> Response<Body> {
    let mut r = Response::new(Body::from(body));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    r
}

/// Serve one REST request from an authenticated user (`None`: anonymous, which may
/// only reach health endpoints).
pub async fn serve(
    state: Arc<ApiState>,
    req: Request<Body>,
    user: Option<UserInfo>,
) -> Response<Body> {
    let started = Instant::now();
    let (parts, body) = req.into_parts();
    let target = route::resolve(parts.uri.path());
    match &user {
        // Authorization looks at the URL only, as Kubernetes' does.
        Some(user) => {
            let attrs = crate::authz::request::attributes(
                user,
                &parts.method,
                parts.uri.path(),
                parts.uri.query().unwrap_or(""),
            );
            let verdict = state.auth.authorizer.authorize(&attrs).await;
            crate::audit::authorized(&attrs, &verdict);
            if !verdict.allowed() {
                return error_response(&crate::authz::forbidden(&attrs, &verdict.reason));
            }
        }
        // Without anonymous requests, health and version stay public.
        None if matches!(target, Ok(Target::Health(_) | Target::Version)) => {}
        None => return error_response(&ApiError::unauthorized()),
    }
    let target = match target {
        Ok(t) => t,
        Err(e) => return error_response(&e),
    };
    let query = resources::Query::parse(parts.uri.query());
    let is_watch = query.flag("watch");
    let labels = match &target {
        Target::Resource(r) => DurationLabels {
            verb: verb_of(&parts.method, &target, is_watch).to_string(),
            group: r.rt.group.to_string(),
            version: r.rt.version.to_string(),
            resource: r.rt.plural.to_string(),
            subresource: r.subresource.clone(),
        },
        _ => DurationLabels {
            verb: verb_of(&parts.method, &target, false).to_string(),
            group: String::new(),
            version: String::new(),
            resource: String::new(),
            subresource: String::new(),
        },
    };
    if let Target::Resource(t) = &target {
        if connect::is_connect(&t.subresource) {
            // Streamed both ways (and maybe upgraded): never buffered here.
            let response = connect::handle(&state, t, Request::from_parts(parts, body)).await;
            state
                .metrics
                .request(labels, response.status().as_u16(), started.elapsed());
            return response;
        }
    }
    let body = match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            let err = if e
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                ApiError::too_large(format!(
                    "Request entity too large: limit is {MAX_BODY_BYTES}"
                ))
            } else {
                ApiError::bad_request(format!("reading the request body: {e}"))
            };
            return error_response(&err);
        }
    };
    crate::audit::request_body(&parts.method, &parts.headers, &body);
    let response = match target {
        Target::Resource(t) => {
            let user = user.clone().unwrap_or_default();
            resources::handle(&state, &parts.method, t, query, &parts.headers, body, &user).await
        }
        Target::Health(which) => {
            if which == "readyz" && !state.registry.storage.ping().await {
                text(
                    500,
                    "[-]etcd failed: etcd is not reachable\nreadyz check failed\n",
                )
            } else {
                text(200, "ok")
            }
        }
        Target::Metrics => {
            let mut r = Response::new(Body::from(state.metrics.render()));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            r
        }
        Target::Version => json_response(200, &discovery::version(), Format::Json),
        Target::Root => {
            let mut paths = vec![
                "/api".to_string(),
                "/api/v1".into(),
                "/apis".into(),
                "/healthz".into(),
                "/livez".into(),
                "/metrics".into(),
                "/openapi/v2".into(),
                "/openapi/v3".into(),
                "/readyz".into(),
                "/version".into(),
            ];
            for (g, v) in discovery::group_versions() {
                if !g.is_empty() {
                    paths.push(format!("/apis/{g}"));
                    paths.push(format!("/apis/{g}/{v}"));
                }
            }
            json_response(200, &serde_json::json!({"paths": paths}), Format::Json)
        }
        Target::CoreVersions | Target::Groups => {
            let core = matches!(target, Target::CoreVersions);
            match discovery::aggregated_version(&parts.headers) {
                Some(v) => {
                    let mut r = json_response(200, &discovery::aggregated(core, v), Format::Json);
                    let ct = format!(
                        "application/json;g=apidiscovery.k8s.io;v={v};as=APIGroupDiscoveryList"
                    );
                    r.headers_mut().insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_str(&ct).expect("ascii"),
                    );
                    r
                }
                None if core => json_response(
                    200,
                    &discovery::core_versions(&state.advertise),
                    Format::Json,
                ),
                None => json_response(200, &discovery::groups(), Format::Json),
            }
        }
        Target::Group(g) => match discovery::group(&g) {
            Some(doc) => json_response(200, &doc, Format::Json),
            None => error_response(&ApiError::new(
                404,
                "NotFound",
                "the server could not find the requested resource",
            )),
        },
        Target::ResourceList { group, version } => match discovery::resource_list(&group, &version)
        {
            Some(doc) => json_response(200, &doc, Format::Json),
            None => error_response(&ApiError::new(
                404,
                "NotFound",
                "the server could not find the requested resource",
            )),
        },
        Target::OpenIdConfiguration | Target::OpenIdKeys => match &state.registry.token_issuer {
            Some(issuer) => {
                let doc = if matches!(target, Target::OpenIdKeys) {
                    issuer.jwks()
                } else {
                    issuer.openid_configuration()
                };
                json_response(200, &doc, Format::Json)
            }
            None => error_response(&ApiError::new(
                404,
                "NotFound",
                "the server could not find the requested resource",
            )),
        },
        Target::OpenApiV2 => {
            let openapi = state.openapi.current();
            let accept = parts
                .headers
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("application/json");
            match openapi.v2_for_accept(accept) {
                Some((ct, body)) => {
                    let mut r = Response::new(Body::from(body));
                    r.headers_mut()
                        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
                    if let Ok(etag) = HeaderValue::from_str(&format!("\"{}\"", openapi.v2_etag())) {
                        r.headers_mut().insert(header::ETAG, etag);
                    }
                    r.headers_mut()
                        .insert(header::VARY, HeaderValue::from_static("Accept"));
                    r
                }
                None => error_response(&ApiError::not_acceptable(
                    "only application/json and the OpenAPI v2 protobuf are served",
                )),
            }
        }
        Target::OpenApiV3Index => {
            bytes_response(state.openapi.current().v3_index_json(), "application/json")
        }
        Target::OpenApiV3(path) => {
            // One version of the documents for the body, its hash and the redirect.
            let openapi = state.openapi.current();
            match openapi.v3_group_version_json(&path) {
                Some(b) => {
                    let hash = openapi.v3_hash(&path).unwrap_or("");
                    let asked = query.get("hash");
                    if !asked.is_empty() && asked != hash {
                        // A stale hash: send the client to the current document.
                        let mut r = text(301, "");
                        if let Some(url) = openapi
                            .v3_server_relative_url(&path)
                            .and_then(|u| HeaderValue::from_str(&u).ok())
                        {
                            r.headers_mut().insert(header::LOCATION, url);
                        }
                        return r;
                    }
                    let mut r = bytes_response(b, "application/json");
                    r.headers_mut()
                        .insert(header::VARY, HeaderValue::from_static("Accept"));
                    if let Ok(etag) = HeaderValue::from_str(&format!("\"{hash}\"")) {
                        r.headers_mut().insert(header::ETAG, etag);
                    }
                    let cache = if asked.is_empty() {
                        "no-cache, private"
                    } else {
                        "public, immutable"
                    };
                    r.headers_mut()
                        .insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
                    r
                }
                None => error_response(&ApiError::new(
                    404,
                    "NotFound",
                    "the server could not find the requested resource",
                )),
            }
        }
    };
    if labels.verb != "WATCH" {
        state
            .metrics
            .request(labels, response.status().as_u16(), started.elapsed());
    }
    response
}
