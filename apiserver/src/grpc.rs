//! The gRPC API (`proto/keelson.proto`): the same registry calls as REST, with objects
//! as JSON bytes and errors as gRPC statuses carrying the `metav1.Status` JSON.

use crate::registry::patching::PatchType;
use crate::registry::subresources::ScaleChange;
use crate::registry::{
    DeleteOptions, FieldValidation, ListOptions, Registry, UserInfo, WriteOptions,
};
use crate::view::View;
use bytes::Bytes;
use futures::StreamExt;
use keelson_apimachinery::ApiError;
use keelson_proto as pb;
use keelson_resources::ResourceType;
use serde_json::Value;
use std::pin::Pin;
use std::sync::Arc;
use tonic::{Code, Request, Response, Status};

pub struct GrpcApi {
    pub registry: Registry,
    /// For reviews (TokenReview) that ask the authenticators.
    pub auth: std::sync::Arc<crate::auth::Authenticator>,
}

/// Map an API error to a gRPC status whose details are the Status JSON.
pub fn to_status(e: &ApiError) -> Status {
    let code = match (e.code, e.reason.as_str()) {
        (400 | 422, _) => Code::InvalidArgument,
        (401, _) => Code::Unauthenticated,
        (403, _) => Code::PermissionDenied,
        (404, _) => Code::NotFound,
        (409, "AlreadyExists") => Code::AlreadyExists,
        (409, _) => Code::Aborted,
        (410, _) => Code::OutOfRange,
        (413 | 429, _) => Code::ResourceExhausted,
        (405 | 406 | 415, _) => Code::Unimplemented,
        (503, _) => Code::Unavailable,
        (504, _) => Code::DeadlineExceeded,
        _ => Code::Internal,
    };
    let details = serde_json::to_vec(&e.to_status()).unwrap_or_default();
    Status::with_details(code, e.message.clone(), Bytes::from(details))
}

fn authed<T>(req: &Request<T>) -> Result<UserInfo, Status> {
    req.extensions()
        .get::<UserInfo>()
        .cloned()
        .ok_or_else(|| to_status(&ApiError::unauthorized()))
}

impl GrpcApi {
    /// Authorize `verb` on the object (or collection) `r` names, as REST would.
    async fn authorize(
        &self,
        user: &UserInfo,
        verb: &str,
        rt: &ResourceType,
        r: &pb::ResourceRef,
    ) -> Result<(), Status> {
        let mut a = crate::authz::Attributes::resource(
            user,
            verb,
            rt.group,
            rt.plural,
            &r.namespace,
            &r.name,
        );
        a.api_version = rt.version.to_string();
        a.subresource = r.subresource.clone();
        if rt.group.is_empty() && rt.plural == "namespaces" && a.namespace.is_empty() {
            a.namespace = r.name.clone();
        }
        crate::flowcontrol::admit_grpc(&a)
            .await
            .map_err(|e| to_status(&e))?;
        self.check(&a).await
    }

    /// Ask the authorizer chain about `a` (already admitted by flow control).
    async fn check(&self, a: &crate::authz::Attributes) -> Result<(), Status> {
        let verdict = self.auth.authorizer.authorize(a).await;
        crate::audit::authorized(a, &verdict);
        if verdict.allowed() {
            Ok(())
        } else {
            Err(to_status(&crate::authz::forbidden(a, &verdict.reason)))
        }
    }
}

/// The stored resource a call names (reviews are only created).
fn resource(
    r: Option<&pb::ResourceRef>,
) -> Result<(&'static ResourceType, pb::ResourceRef), Status> {
    let (rt, r) = any_resource(r)?;
    if rt.strategy.create_only() {
        return Err(to_status(&ApiError::method_not_allowed(
            "the server does not allow this method on the requested resource",
        )));
    }
    Ok((rt, r))
}

/// The resource a call names, reviews included.
fn any_resource(
    r: Option<&pb::ResourceRef>,
) -> Result<(&'static ResourceType, pb::ResourceRef), Status> {
    let r = r
        .cloned()
        .ok_or_else(|| to_status(&ApiError::bad_request("ref is required")))?;
    // By version: a custom resource serves each of its CRD's served versions.
    let rt =
        keelson_resources::find_version(&r.group, &r.version, &r.resource).ok_or_else(|| {
            to_status(&ApiError::new(
                404,
                "NotFound",
                format!(
                    "the server could not find the requested resource {}/{}/{}",
                    r.group, r.version, r.resource
                ),
            ))
        })?;
    if rt.namespaced && !r.name.is_empty() && r.namespace.is_empty() {
        return Err(to_status(&ApiError::bad_request(
            "namespace is required for a namespaced resource",
        )));
    }
    Ok((rt, r))
}

fn parse(bytes: &[u8]) -> Result<Value, Status> {
    serde_json::from_slice(bytes).map_err(|e| {
        to_status(&ApiError::bad_request(format!(
            "error decoding JSON body: {e}"
        )))
    })
}

fn obj(v: &Value) -> Response<pb::Object> {
    Response::new(pb::Object {
        json: Bytes::from(serde_json::to_vec(v).unwrap_or_default()),
    })
}

fn write_opts(
    o: Option<pb::WriteOptions>,
    user_agent: &str,
    user: &UserInfo,
) -> Result<WriteOptions, Status> {
    let o = o.unwrap_or_default();
    let fv = if o.field_validation.is_empty() {
        "Strict"
    } else {
        o.field_validation.as_str()
    };
    Ok(WriteOptions {
        dry_run: o.dry_run,
        field_manager: o.field_manager,
        field_validation: FieldValidation::parse(fv).map_err(|e| to_status(&e))?,
        force: false,
        user_agent: user_agent.to_string(),
        user: user.clone(),
    })
}

fn user_agent<T>(req: &Request<T>) -> String {
    req.metadata()
        .get("user-agent")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("grpc")
        .to_string()
}

type WatchStream = Pin<Box<dyn futures::Stream<Item = Result<pb::WatchEvent, Status>> + Send>>;

#[tonic::async_trait]
impl pb::api_server::Api for GrpcApi {
    async fn get(&self, req: Request<pb::GetRequest>) -> Result<Response<pb::Object>, Status> {
        let user = authed(&req)?;
        let (rt, r) = resource(req.get_ref().r#ref.as_ref())?;
        self.authorize(&user, "get", rt, &r).await?;
        let v = match r.subresource.as_str() {
            "scale" => self.registry.get_scale(rt, &r.namespace, &r.name).await,
            _ => self.registry.get(rt, &r.namespace, &r.name).await,
        }
        .map_err(|e| to_status(&e))?;
        Ok(obj(&v))
    }

    async fn list(
        &self,
        req: Request<pb::ListRequest>,
    ) -> Result<Response<pb::ListResponse>, Status> {
        let user = authed(&req)?;
        let q = req.into_inner();
        let (rt, r) = resource(q.r#ref.as_ref())?;
        self.authorize(&user, "list", rt, &r).await?;
        let opts = ListOptions {
            label_selector: q.label_selector,
            field_selector: q.field_selector,
            limit: q.limit,
            continue_token: q.continue_token,
            resource_version: q.resource_version,
            view: view(q.view),
            ..Default::default()
        };
        let res = self
            .registry
            .list(rt, &r.namespace, &opts)
            .await
            .map_err(|e| to_status(&e))?;
        Ok(Response::new(pb::ListResponse {
            items: res.items.iter().map(|i| opts.view.encode(i)).collect(),
            resource_version: res.resource_version.to_string(),
            continue_token: res.continue_token.unwrap_or_default(),
            remaining_item_count: res.remaining,
        }))
    }

    type WatchStream = WatchStream;

    async fn watch(
        &self,
        req: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let user = authed(&req)?;
        let q = req.into_inner();
        let (rt, r) = resource(q.r#ref.as_ref())?;
        self.authorize(&user, "watch", rt, &r).await?;
        let mut field_selector = q.field_selector;
        if !r.name.is_empty() {
            let one = format!("metadata.name={}", r.name);
            field_selector = if field_selector.is_empty() {
                one
            } else {
                format!("{field_selector},{one}")
            };
        }
        let opts = ListOptions {
            label_selector: q.label_selector,
            field_selector,
            resource_version: q.resource_version,
            allow_bookmarks: q.allow_watch_bookmarks,
            send_initial_events: q.send_initial_events,
            timeout_seconds: (q.timeout_seconds > 0).then_some(q.timeout_seconds as u64),
            view: view(q.view),
            resource_version_match: if q.send_initial_events.is_some() {
                "NotOlderThan".into()
            } else {
                String::new()
            },
            ..Default::default()
        };
        let stream = self
            .registry
            .watch(rt, &r.namespace, &opts)
            .await
            .map_err(|e| to_status(&e))?;
        let out = stream.map(|ev| {
            Ok(pb::WatchEvent {
                r#type: ev.kind.to_string(),
                object: ev.object_json(),
            })
        });
        Ok(Response::new(Box::pin(out)))
    }

    async fn create(
        &self,
        req: Request<pb::CreateRequest>,
    ) -> Result<Response<pb::Object>, Status> {
        let user = authed(&req)?;
        let ua = user_agent(&req);
        let q = req.into_inner();
        let (rt, r) = any_resource(q.r#ref.as_ref())?;
        self.authorize(&user, "create", rt, &r).await?;
        let opts = write_opts(q.options, &ua, &user)?;
        let body = parse(&q.object)?;
        let v = match r.subresource.as_str() {
            _ if rt.strategy.create_only() => {
                crate::reviews::answer(&self.auth, rt, &r.namespace, body, &user)
                    .await
                    .map(Arc::new)
            }
            "binding" => self
                .registry
                .bind(rt, &r.namespace, &r.name, &body, &opts)
                .await
                .map(Arc::new),
            "token" => self
                .registry
                .create_token(&r.namespace, &r.name, body, &opts)
                .await
                .map(Arc::new),
            "eviction" => self
                .registry
                .evict(rt, &r.namespace, &r.name, body, &opts)
                .await
                .map(Arc::new),
            _ => self
                .registry
                .create(rt, &r.namespace, body, &opts)
                .await
                .map(|w| w.object),
        }
        .map_err(|e| to_status(&e))?;
        Ok(obj(&v))
    }

    async fn update(
        &self,
        req: Request<pb::UpdateRequest>,
    ) -> Result<Response<pb::Object>, Status> {
        let user = authed(&req)?;
        let ua = user_agent(&req);
        let q = req.into_inner();
        let (rt, r) = resource(q.r#ref.as_ref())?;
        self.authorize(&user, "update", rt, &r).await?;
        let opts = write_opts(q.options, &ua, &user)?;
        let body = parse(&q.object)?;
        let v = match r.subresource.as_str() {
            "scale" => self
                .registry
                .write_scale(
                    rt,
                    &r.namespace,
                    &r.name,
                    ScaleChange::Replace(&body),
                    &opts,
                )
                .await
                .map(Arc::new),
            "finalize" => self
                .registry
                .finalize_namespace(&r.name, &body, &opts)
                .await
                .map(Arc::new),
            sub => self
                .registry
                .update(rt, &r.namespace, &r.name, sub, body, &opts)
                .await
                .map(|w| w.object),
        }
        .map_err(|e| to_status(&e))?;
        Ok(obj(&v))
    }

    async fn patch(&self, req: Request<pb::PatchRequest>) -> Result<Response<pb::Object>, Status> {
        let user = authed(&req)?;
        let ua = user_agent(&req);
        let q = req.into_inner();
        let (rt, r) = resource(q.r#ref.as_ref())?;
        self.authorize(&user, "patch", rt, &r).await?;
        let mut opts = write_opts(q.options, &ua, &user)?;
        opts.force = q.force;
        let ptype = PatchType::from_content_type(&q.patch_type).map_err(|e| to_status(&e))?;
        let v = match r.subresource.as_str() {
            "scale" => {
                let p = parse(&q.patch)?;
                self.registry
                    .write_scale(
                        rt,
                        &r.namespace,
                        &r.name,
                        ScaleChange::Patch(ptype, &p),
                        &opts,
                    )
                    .await
                    .map(Arc::new)
            }
            sub => self
                .registry
                .patch(rt, &r.namespace, &r.name, sub, ptype, &q.patch, &opts)
                .await
                .map(|w| w.object),
        }
        .map_err(|e| to_status(&e))?;
        Ok(obj(&v))
    }

    async fn delete(
        &self,
        req: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::Object>, Status> {
        let user = authed(&req)?;
        let q = req.into_inner();
        let (rt, r) = resource(q.r#ref.as_ref())?;
        self.authorize(&user, "delete", rt, &r).await?;
        let mut opts = delete_opts(&q.delete_options, q.dry_run)?;
        opts.user = user.clone();
        let v = self
            .registry
            .delete(rt, &r.namespace, &r.name, &opts)
            .await
            .map_err(|e| to_status(&e))?;
        Ok(obj(&v))
    }

    async fn delete_collection(
        &self,
        req: Request<pb::DeleteCollectionRequest>,
    ) -> Result<Response<pb::ListResponse>, Status> {
        let user = authed(&req)?;
        let q = req.into_inner();
        let (rt, r) = resource(q.r#ref.as_ref())?;
        self.authorize(&user, "deletecollection", rt, &r).await?;
        let mut opts = delete_opts(&q.delete_options, q.dry_run)?;
        opts.user = user.clone();
        let list = ListOptions {
            label_selector: q.label_selector,
            field_selector: q.field_selector,
            ..Default::default()
        };
        let items = self
            .registry
            .delete_collection(rt, &r.namespace, &list, &opts)
            .await
            .map_err(|e| to_status(&e))?;
        Ok(Response::new(pb::ListResponse {
            items: items.iter().map(|i| View::FULL.encode(i)).collect(),
            ..Default::default()
        }))
    }

    async fn discover(
        &self,
        req: Request<pb::DiscoveryRequest>,
    ) -> Result<Response<pb::Object>, Status> {
        let user = authed(&req)?;
        // The answer is /api's and /apis's: both must be allowed, as for REST.
        for path in ["/api", "/apis"] {
            let a = crate::authz::request::attributes(&user, &axum::http::Method::GET, path, "");
            if path == "/api" {
                crate::flowcontrol::admit_grpc(&a)
                    .await
                    .map_err(|e| to_status(&e))?;
            }
            self.check(&a).await?;
        }
        Ok(obj(&crate::http::discovery::aggregated_all("v2")))
    }
}

fn delete_opts(body: &[u8], dry_run: bool) -> Result<DeleteOptions, Status> {
    let mut opts = DeleteOptions {
        dry_run,
        ..Default::default()
    };
    if !body.is_empty() {
        let v = parse(body)?;
        opts.merge_body(&v).map_err(|e| to_status(&e))?;
    }
    Ok(opts)
}

fn view(v: Option<pb::ObjectView>) -> View {
    let v = v.unwrap_or_default();
    View {
        metadata_only: v.metadata_only,
        omit_managed_fields: v.omit_managed_fields,
    }
}
