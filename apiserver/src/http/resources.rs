//! REST handlers for resource requests: one function per verb, all calling the generic
//! [`crate::registry::Registry`].

use super::respond::{add_warnings, decode_body, error_response, json_response, negotiate, Format};
use super::route::ResourceTarget;
use super::table::{partial_metadata, table, Include};
use super::ApiState;
use crate::registry::fields;
use crate::registry::patching::PatchType;
use crate::registry::subresources::ScaleChange;
use crate::registry::watch::WatchEvent;
use crate::registry::{
    parse_bool, DeleteOptions, FieldValidation, ListOptions, UserInfo, WriteOptions,
};
use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderValue, Method, Response};
use futures::StreamExt;
use keelson_apimachinery::ApiError;
use serde_json::{json, Value};
use std::collections::HashMap;

/// Parsed query string; repeated keys keep every value.
pub struct Query(HashMap<String, Vec<String>>);

impl Query {
    pub fn parse(q: Option<&str>) -> Query {
        let mut m: HashMap<String, Vec<String>> = HashMap::new();
        for (k, v) in url::form_urlencoded::parse(q.unwrap_or("").as_bytes()) {
            m.entry(k.into_owned()).or_default().push(v.into_owned());
        }
        Query(m)
    }
    pub fn get(&self, k: &str) -> &str {
        self.0
            .get(k)
            .and_then(|v| v.first())
            .map(String::as_str)
            .unwrap_or("")
    }
    pub fn all(&self, k: &str) -> Vec<&str> {
        self.0
            .get(k)
            .map(|v| v.iter().map(String::as_str).collect())
            .unwrap_or_default()
    }
    pub fn flag(&self, k: &str) -> bool {
        parse_bool(self.get(k))
    }
}

fn list_options(q: &Query) -> Result<ListOptions, ApiError> {
    let limit = match q.get("limit") {
        "" => 0,
        s => s
            .parse::<i64>()
            .map_err(|_| ApiError::bad_request(format!("invalid limit {s:?}")))?,
    };
    let timeout_seconds = match q.get("timeoutSeconds") {
        "" => None,
        s => Some(
            s.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid timeoutSeconds {s:?}")))?,
        ),
    };
    Ok(ListOptions {
        label_selector: q.get("labelSelector").to_string(),
        field_selector: q.get("fieldSelector").to_string(),
        limit,
        continue_token: q.get("continue").to_string(),
        resource_version: q.get("resourceVersion").to_string(),
        resource_version_match: q.get("resourceVersionMatch").to_string(),
        allow_bookmarks: q.flag("allowWatchBookmarks"),
        send_initial_events: (!q.get("sendInitialEvents").is_empty())
            .then(|| q.flag("sendInitialEvents")),
        timeout_seconds,
        view: Default::default(),
    })
}

fn write_options(
    q: &Query,
    headers: &HeaderMap,
    user: &UserInfo,
) -> Result<WriteOptions, ApiError> {
    Ok(WriteOptions {
        dry_run: crate::registry::options::parse_dry_run(&q.all("dryRun"))?,
        field_manager: q.get("fieldManager").to_string(),
        field_validation: FieldValidation::parse(q.get("fieldValidation"))?,
        force: q.flag("force"),
        user_agent: headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string(),
        user: user.clone(),
    })
}

fn list_kind(kind: &str) -> String {
    format!("{kind}List")
}

/// Render one object in the negotiated format.
fn object_response(
    t: &ResourceTarget,
    code: u16,
    obj: &Value,
    format: Format,
    q: &Query,
) -> Response<Body> {
    match format {
        Format::Table { v1beta1 } => {
            let meta =
                json!({"resourceVersion": keelson_apimachinery::meta::resource_version(obj)});
            json_response(
                code,
                &table(
                    t.rt,
                    std::slice::from_ref(obj),
                    meta,
                    Include::parse(q.get("includeObject")),
                    v1beta1,
                    true,
                ),
                Format::Json,
            )
        }
        Format::Metadata => json_response(code, &partial_metadata(obj), Format::Json),
        f => json_response(code, obj, f),
    }
}

pub async fn handle(
    state: &ApiState,
    method: &Method,
    t: ResourceTarget,
    q: Query,
    headers: &HeaderMap,
    body: Bytes,
    user: &UserInfo,
) -> Response<Body> {
    let mut r = match handle_inner(state, method, &t, &q, headers, body, user).await {
        Ok(r) => r,
        Err(e) => error_response(&e),
    };
    // A deprecated custom resource version warns on every request, as Kubernetes does.
    add_warnings(&mut r, &t.rt.strategy.warnings());
    r
}

async fn handle_inner(
    state: &ApiState,
    method: &Method,
    t: &ResourceTarget,
    q: &Query,
    headers: &HeaderMap,
    body: Bytes,
    user: &UserInfo,
) -> Result<Response<Body>, ApiError> {
    let format = negotiate(headers)?;
    let reg = &state.registry;
    let (rt, ns, name, sub) = (
        t.rt,
        t.namespace.as_str(),
        t.name.as_str(),
        t.subresource.as_str(),
    );
    if rt.strategy.create_only() {
        // A review: a question answered, nothing stored.
        if *method != Method::POST || !name.is_empty() {
            return Err(ApiError::method_not_allowed(
                "the server does not allow this method on the requested resource",
            ));
        }
        let review = decode_body(headers, &body)?;
        let answer = crate::reviews::answer(&state.auth, rt, ns, review, user).await?;
        return Ok(json_response(201, &answer, format));
    }
    if rt.namespaced && !name.is_empty() && ns.is_empty() && *method != Method::GET {
        return Err(ApiError::not_found(rt.group, rt.plural, name));
    }
    let is_watch = t.watch_path || q.flag("watch");
    match (method.clone(), name.is_empty(), sub) {
        (Method::GET, true, "") if is_watch => watch(state, t, q, format).await,
        (Method::GET, false, "") if is_watch => {
            // /watch/namespaces/x/pods/name: a watch on one object.
            let mut q2 = Query::parse(None);
            q2.0 = q.0.clone();
            let fs = format!("metadata.name={name}");
            q2.0.insert("fieldSelector".into(), vec![fs]);
            watch(state, t, &q2, format).await
        }
        (Method::GET, true, "") => {
            let opts = list_options(q)?;
            let res = reg.list(rt, ns, &opts).await?;
            let include = Include::parse(q.get("includeObject"));
            // Encoding a large list is the other half of its CPU: off the workers too.
            Ok(crate::offload::run(res.items.len(), move || {
                list_response(rt, res, format, include)
            })
            .await)
        }
        (Method::GET, false, "" | "status" | "approval") => {
            let obj = reg.get(rt, ns, name).await?;
            Ok(object_response(t, 200, &obj, format, q))
        }
        (Method::GET, false, "scale") => Ok(json_response(
            200,
            &reg.get_scale(rt, ns, name).await?,
            format,
        )),
        (Method::POST, true, "") => {
            let opts = write_options(q, headers, user)?;
            let obj = decode_body(headers, &body)?;
            let duplicates = fields::check_duplicates(rt, &obj, &body, opts.field_validation)?;
            let mut w = reg.create(rt, ns, obj, &opts).await?;
            w.warnings.extend(duplicates);
            let mut r = object_response(t, 201, &w.object, format, q);
            add_warnings(&mut r, &w.warnings);
            crate::audit::annotate(&mut r, &w.audit_annotations);
            Ok(r)
        }
        (Method::POST, false, "binding") => {
            let opts = write_options(q, headers, user)?;
            let obj = decode_body(headers, &body)?;
            let status = reg.bind(rt, ns, name, &obj, &opts).await?;
            Ok(json_response(201, &status, Format::Json))
        }
        (Method::POST, false, "token") => {
            let opts = write_options(q, headers, user)?;
            let obj = decode_body(headers, &body)?;
            let token = reg.create_token(ns, name, obj, &opts).await?;
            Ok(json_response(201, &token, format))
        }
        (Method::POST, false, "eviction") => {
            let opts = write_options(q, headers, user)?;
            let obj = decode_body(headers, &body)?;
            let status = reg.evict(rt, ns, name, obj, &opts).await?;
            Ok(json_response(201, &status, Format::Json))
        }
        (Method::PUT, false, "" | "status" | "approval") => {
            let opts = write_options(q, headers, user)?;
            let obj = decode_body(headers, &body)?;
            let duplicates = fields::check_duplicates(rt, &obj, &body, opts.field_validation)?;
            let mut w = reg.update(rt, ns, name, sub, obj, &opts).await?;
            w.warnings.extend(duplicates);
            let mut r = object_response(t, if w.created { 201 } else { 200 }, &w.object, format, q);
            add_warnings(&mut r, &w.warnings);
            crate::audit::annotate(&mut r, &w.audit_annotations);
            Ok(r)
        }
        (Method::PUT, false, "finalize") => {
            let opts = write_options(q, headers, user)?;
            let obj = decode_body(headers, &body)?;
            let w = reg.finalize_namespace(name, &obj, &opts).await?;
            Ok(object_response(t, 200, &w, format, q))
        }
        (Method::PUT, false, "scale") => {
            let opts = write_options(q, headers, user)?;
            let obj = decode_body(headers, &body)?;
            let scale = reg
                .write_scale(rt, ns, name, ScaleChange::Replace(&obj), &opts)
                .await?;
            Ok(json_response(200, &scale, format))
        }
        (Method::PATCH, false, _) => {
            let opts = write_options(q, headers, user)?;
            let ct = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let ptype = PatchType::from_content_type(ct)?;
            if sub == "scale" {
                let patch: Value = serde_json::from_slice(&body)
                    .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
                let scale = reg
                    .write_scale(rt, ns, name, ScaleChange::Patch(ptype, &patch), &opts)
                    .await?;
                return Ok(json_response(200, &scale, format));
            }
            if !sub.is_empty() && sub != "status" && sub != "approval" {
                return Err(ApiError::method_not_allowed(format!(
                    "PATCH is not supported on {}/{sub}",
                    rt.plural
                )));
            }
            let w = reg.patch(rt, ns, name, sub, ptype, &body, &opts).await?;
            let mut r = object_response(t, if w.created { 201 } else { 200 }, &w.object, format, q);
            add_warnings(&mut r, &w.warnings);
            crate::audit::annotate(&mut r, &w.audit_annotations);
            Ok(r)
        }
        (Method::DELETE, false, "") => {
            let mut opts = delete_options(q, headers, &body)?;
            opts.user = user.clone();
            let (obj, warnings) = reg.delete_warned(rt, ns, name, &opts).await?;
            // 202 when the object stays (finalizers, grace period), as Kubernetes does.
            let stays = obj
                .pointer("/metadata/deletionTimestamp")
                .is_some_and(|v| !v.is_null())
                && reg.get(rt, ns, name).await.is_ok()
                && !opts.dry_run;
            let mut r = object_response(t, if stays { 202 } else { 200 }, &obj, format, q);
            add_warnings(&mut r, &warnings);
            Ok(r)
        }
        (Method::DELETE, true, "") => {
            let mut opts = delete_options(q, headers, &body)?;
            opts.user = user.clone();
            let list = list_options(q)?;
            let items = reg.delete_collection(rt, ns, &list, &opts).await?;
            Ok(json_response(
                200,
                &json!({"kind": list_kind(rt.kind), "apiVersion": rt.api_version(), "metadata": {}, "items": items}),
                format,
            ))
        }
        _ => Err(ApiError::method_not_allowed(
            "the server does not allow this method on the requested resource",
        )),
    }
}

fn delete_options(q: &Query, headers: &HeaderMap, body: &Bytes) -> Result<DeleteOptions, ApiError> {
    let mut opts = DeleteOptions {
        dry_run: crate::registry::options::parse_dry_run(&q.all("dryRun"))?,
        ..Default::default()
    };
    if !q.get("gracePeriodSeconds").is_empty() {
        opts.grace_period_seconds = Some(
            q.get("gracePeriodSeconds")
                .parse()
                .map_err(|_| ApiError::bad_request("invalid gracePeriodSeconds"))?,
        );
    }
    if !q.get("propagationPolicy").is_empty() {
        opts.propagation_policy = Some(q.get("propagationPolicy").to_string());
    }
    if !q.get("orphanDependents").is_empty() && opts.propagation_policy.is_none() {
        opts.propagation_policy = Some(
            if q.flag("orphanDependents") {
                "Orphan"
            } else {
                "Background"
            }
            .into(),
        );
    }
    if !body.is_empty() {
        let v = decode_body(headers, body)?;
        opts.merge_body(&v)?;
    }
    opts.validate()?;
    Ok(opts)
}

/// A watch as a chunked stream of JSON lines.
async fn watch(
    state: &ApiState,
    t: &ResourceTarget,
    q: &Query,
    format: Format,
) -> Result<Response<Body>, ApiError> {
    let opts = list_options(q)?;
    let stream = state.registry.watch(t.rt, &t.namespace, &opts).await?;
    let rt = t.rt;
    let include = Include::parse(q.get("includeObject"));
    let mut first = true;
    let body = stream.map(move |ev: WatchEvent| {
        let object = match format {
            Format::Table { v1beta1 } if ev.kind != "ERROR" && ev.kind != "BOOKMARK" => {
                let meta = json!({"resourceVersion": keelson_apimachinery::meta::resource_version(&ev.object)});
                let t = table(rt, std::slice::from_ref(&*ev.object), meta, include, v1beta1, first);
                first = false;
                t
            }
            Format::Metadata if ev.kind != "ERROR" => partial_metadata(&ev.object),
            // Plain JSON: the bytes encoded once for every watcher.
            _ => return Ok::<_, std::io::Error>(ev.to_line()),
        };
        let mut line = serde_json::to_vec(&json!({"type": ev.kind, "object": object})).unwrap_or_default();
        line.push(b'\n');
        Ok::<_, std::io::Error>(Bytes::from(line))
    });
    let mut r = Response::new(Body::from_stream(body));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    Ok(r)
}

/// The answer to a list: the items as the client asked for them (a Table, metadata
/// only, or the list kind), with the list's resourceVersion, continue token and
/// remaining count.
fn list_response(
    rt: &'static keelson_resources::ResourceType,
    res: crate::registry::list::ListResult,
    format: Format,
    include: Include,
) -> Response<Body> {
    let mut meta = json!({"resourceVersion": res.resource_version.to_string()});
    if let Some(c) = &res.continue_token {
        meta["continue"] = json!(c);
    }
    if let Some(r) = res.remaining {
        meta["remainingItemCount"] = json!(r);
    }
    match format {
        Format::Table { v1beta1 } => json_response(
            200,
            &table(rt, &res.items, meta, include, v1beta1, true),
            Format::Json,
        ),
        Format::Metadata => {
            let items: Vec<Value> = res.items.iter().map(partial_metadata).collect();
            json_response(
                200,
                &json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": meta, "items": items}),
                Format::Json,
            )
        }
        f => json_response(
            200,
            &json!({"kind": list_kind(rt.kind), "apiVersion": rt.api_version(), "metadata": meta, "items": res.items}),
            f,
        ),
    }
}
