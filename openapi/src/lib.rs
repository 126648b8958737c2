//! The OpenAPI documents the apiserver serves, built once at start.
//!
//! kubectl reads three things from an apiserver besides discovery:
//!
//! * `/openapi/v2`, always as gnostic's protobuf encoding of a Swagger 2.0 document
//!   (client-go's `OpenAPISchema` sends `Accept: application/com.github.proto-openapi.spec.v2@v1.0+protobuf`
//!   and `proto.Unmarshal`s the body, so JSON there breaks kubectl). It looks kinds up
//!   by the `x-kubernetes-group-version-kind` of `definitions` (explain with
//!   `--output plaintext-openapiv2`, client-side validation, strategic merge patch
//!   metadata for `apply`), PATCH `consumes` (whether to send a strategic merge patch)
//!   and the PATCH operation's `fieldValidation` parameter (server-side validation).
//! * `/openapi/v3`, an index of one document per group-version with a content hash in
//!   each URL, which kubectl caches for good.
//! * `/openapi/v3/<api/v1|apis/group/version>`, OpenAPI 3.0 documents: `kubectl explain`
//!   finds a resource's kind through its paths and the schema through
//!   `components.schemas`; `apply` checks PATCH for `fieldValidation` and for the
//!   strategic merge patch content type.
//!
//! Serving them as Kubernetes does (`k8s.io/kube-openapi/pkg/handler{,3}`):
//!
//! * `/openapi/v2`: [`OpenApi::v2_for_accept`] with the request's `Accept`; kubectl's
//!   protobuf request must get protobuf, under [`V2_PROTOBUF_CONTENT_TYPE`] (`None`: 406).
//! * `/openapi/v3`: [`OpenApi::v3_index_json`], `application/json`.
//! * `/openapi/v3/<path>`: [`OpenApi::v3_group_version_json`], `application/json`. With a
//!   `hash` query equal to [`OpenApi::v3_hash`], add `Cache-Control: public, immutable`
//!   (Kubernetes also sets `Expires` a year ahead); with a different one, answer 301 to
//!   [`OpenApi::v3_server_relative_url`]. `Vary: Accept` and a quoted `ETag` (the hash)
//!   as Kubernetes sends them.
//!
//! Schemas come from k8s-openapi (its `schemars` impls, already under Kubernetes'
//! definition names); list and patch metadata from
//! `keelson_apimachinery::patch::schema`, the table the apiserver merges with, so the
//! patches kubectl computes are the ones the server applies as meant.

mod catalog;
mod crd;
mod paths;
mod proto;
mod schema;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bytes::Bytes;
use keelson_resources::typed::{bodies, Typed};
use keelson_resources::{ResourceType, Subresource};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha512};

use paths::{Body, In, Names, Operation, Param, PathItem};
use schema::{Definitions, Gvk, V2_REF_PREFIX, V3_REF_PREFIX};

/// The media type kubectl (client-go) puts in `Accept` for `/openapi/v2`. Kubernetes
/// also accepts [`V2_PROTOBUF_CONTENT_TYPE`] there.
pub const V2_PROTOBUF_ACCEPT: &str = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";

/// The `Content-Type` to answer [`V2_PROTOBUF_ACCEPT`] with. Not the same string: Go's
/// `mime.ParseMediaType` rejects the `@` form in a response, and client-go then fails
/// with "mime: unexpected content after media subtype".
pub const V2_PROTOBUF_CONTENT_TYPE: &str =
    "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// The Kubernetes version whose schemas are published (k8s-openapi's feature).
pub const KUBERNETES_VERSION: &str = "v1.33.0";

/// The documents, serialized once. Cloning the `Bytes` handed out is cheap.
pub struct OpenApi {
    /// What [`OpenApi::build`] was given, before any custom resource
    /// ([`OpenApi::with_custom`] starts from it).
    base: Arc<Base>,
    v2_json: Bytes,
    v2_protobuf: Bytes,
    v2_etag: String,
    v3_index: Bytes,
    v3: BTreeMap<String, (Bytes, String)>,
}

impl std::fmt::Debug for OpenApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenApi")
            .field("v2_json_bytes", &self.v2_json.len())
            .field("v2_protobuf_bytes", &self.v2_protobuf.len())
            .field("v3", &self.v3.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// The model of the resources given to [`OpenApi::build`] and their v3 documents.
struct Base {
    model: Model,
    v3: BTreeMap<String, (Bytes, String)>,
}

impl OpenApi {
    /// Builds every document for the given served resources (normally
    /// `keelson_resources::kinds::ALL`).
    pub fn build(resources: &[&'static ResourceType]) -> OpenApi {
        let model = Model::build(resources);
        let v3 = model
            .doc_keys()
            .into_iter()
            .map(|key| {
                let doc = model.v3_document(&key);
                (key, serialized(&doc))
            })
            .collect();
        OpenApi::render(Arc::new(Base { model, v3 }), None)
    }

    /// The documents of what [`OpenApi::build`] was given plus the custom resources
    /// `custom` (each version a CustomResourceDefinition serves, with its schema).
    /// The built-in parts are unchanged: their v3 documents are reused as they are
    /// (hashes included), only the v2 document and the custom groups' v3 documents
    /// are written again.
    pub fn with_custom(&self, custom: &[&'static ResourceType]) -> OpenApi {
        let mut model = self.base.model.clone();
        let mut touched = BTreeSet::new();
        for r in custom {
            if let Some(spec) = r.strategy.custom_spec() {
                touched.extend(model.add_custom(r, &spec));
            }
        }
        model.finish_paths();
        OpenApi::render(self.base.clone(), Some((&model, touched)))
    }

    /// Serializes the documents: `base`'s own, or `custom`'s model with the v3
    /// documents of the keys it touched written again.
    fn render(base: Arc<Base>, custom: Option<(&Model, BTreeSet<String>)>) -> OpenApi {
        let (model, touched) = match &custom {
            Some((model, touched)) => (*model, Some(touched)),
            None => (&base.model, None),
        };
        let v2 = model.v2_document();
        let v2_json = serde_json::to_vec(&v2).expect("a JSON value serializes");
        let v2_protobuf = proto::encode_document(&v2);
        let v2_etag = hash(&v2_json);

        let mut v3 = BTreeMap::new();
        let mut index = Map::new();
        for key in model.doc_keys() {
            let rewritten = touched.is_none_or(|t| t.contains(&key));
            let (bytes, h) = match base.v3.get(&key) {
                Some(done) if !rewritten => done.clone(),
                _ => serialized(&model.v3_document(&key)),
            };
            index.insert(
                key.clone(),
                json!({ "serverRelativeURL": format!("/openapi/v3/{key}?hash={h}") }),
            );
            v3.insert(key, (bytes, h));
        }
        let v3_index =
            serde_json::to_vec(&json!({ "paths": index })).expect("a JSON value serializes");

        OpenApi {
            base,
            v2_json: Bytes::from(v2_json),
            v2_protobuf: Bytes::from(v2_protobuf),
            v2_etag,
            v3_index: Bytes::from(v3_index),
            v3,
        }
    }

    /// `/openapi/v2` as JSON (`Accept: application/json`).
    pub fn v2_json(&self) -> Bytes {
        self.v2_json.clone()
    }

    /// `/openapi/v2` as gnostic protobuf, what kubectl requests ([`V2_PROTOBUF_ACCEPT`];
    /// answer with `Content-Type: ` [`V2_PROTOBUF_CONTENT_TYPE`]).
    pub fn v2_protobuf(&self) -> Bytes {
        self.v2_protobuf.clone()
    }

    /// An ETag for `/openapi/v2` (the hash of its JSON form; both forms change together).
    pub fn v2_etag(&self) -> &str {
        &self.v2_etag
    }

    /// `/openapi/v3`: `{"paths": {"api/v1": {"serverRelativeURL": "/openapi/v3/api/v1?hash=…"}, …}}`.
    pub fn v3_index_json(&self) -> Bytes {
        self.v3_index.clone()
    }

    /// `/openapi/v3/<path>` for `api`, `api/v1`, `apis`, `apis/apps`, `apis/apps/v1`…
    /// (a leading `/` is accepted).
    pub fn v3_group_version_json(&self, path: &str) -> Option<Bytes> {
        self.v3
            .get(path.trim_start_matches('/'))
            .map(|(b, _)| b.clone())
    }

    /// The hash in the index URL of `/openapi/v3/<path>`: the upper-case hex SHA-512 of
    /// the document, as Kubernetes computes it. A request whose `hash` query matches may
    /// be answered with `Cache-Control: public, immutable`.
    pub fn v3_hash(&self, path: &str) -> Option<&str> {
        self.v3
            .get(path.trim_start_matches('/'))
            .map(|(_, h)| h.as_str())
    }

    /// Every `/openapi/v3/<path>` served, sorted.
    pub fn v3_paths(&self) -> impl Iterator<Item = &str> {
        self.v3.keys().map(String::as_str)
    }

    /// `/openapi/v3/<path>?hash=<hash>`, the URL the index gives for `path`. Kubernetes
    /// answers a request for `path` with a stale `hash` by a 301 to this URL.
    pub fn v3_server_relative_url(&self, path: &str) -> Option<String> {
        let path = path.trim_start_matches('/');
        self.v3_hash(path)
            .map(|h| format!("/openapi/v3/{path}?hash={h}"))
    }

    /// `/openapi/v2` for a request's `Accept` header, as Kubernetes negotiates it:
    /// the first acceptable clause by quality wins; JSON for `application/json` and
    /// wildcards, protobuf for either protobuf media type; `None` means 406. Returns the
    /// response `Content-Type` and body.
    pub fn v2_for_accept(&self, accept: &str) -> Option<(&'static str, Bytes)> {
        for media in accept_clauses(accept) {
            match media.as_str() {
                "application/json" | "application/*" | "*/*" => {
                    return Some(("application/json", self.v2_json()))
                }
                m if m == V2_PROTOBUF_ACCEPT || m == V2_PROTOBUF_CONTENT_TYPE => {
                    return Some((V2_PROTOBUF_CONTENT_TYPE, self.v2_protobuf()));
                }
                _ => {}
            }
        }
        None
    }
}

/// The media types of an `Accept` header, parameters dropped, highest quality first
/// (ties keep their order); an empty header accepts anything.
fn accept_clauses(accept: &str) -> Vec<String> {
    if accept.trim().is_empty() {
        return vec!["*/*".to_string()];
    }
    let mut clauses: Vec<(f32, String)> = accept
        .split(',')
        .filter_map(|clause| {
            let mut parts = clause.split(';');
            let media = parts.next()?.trim().to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            (!media.is_empty() && q > 0.0).then_some((q, media))
        })
        .collect();
    clauses.sort_by(|a, b| b.0.total_cmp(&a.0));
    clauses.into_iter().map(|(_, m)| m).collect()
}

/// A document's JSON and its hash.
fn serialized(doc: &Value) -> (Bytes, String) {
    let bytes = serde_json::to_vec(doc).expect("a JSON value serializes");
    let h = hash(&bytes);
    (Bytes::from(bytes), h)
}

fn hash(bytes: &[u8]) -> String {
    let digest = Sha512::digest(bytes);
    let mut out = String::with_capacity(digest.len() * 2);
    for b in digest {
        out.push_str(&format!("{b:02X}"));
    }
    out
}

/// Definitions and paths, before rendering.
#[derive(Clone)]
struct Model {
    defs: Definitions,
    /// Definitions whose OpenAPI v3 form is not derived from their v2 form (custom
    /// resources: v2 drops what v3 keeps), in v2 reference form.
    v3_defs: Definitions,
    paths: Vec<PathItem>,
    bodies: BodyNames,
}

/// Definition names of the subresource bodies in the model ("" when absent).
#[derive(Clone, Default)]
struct BodyNames {
    scale: String,
    eviction: String,
    binding: String,
    token_request: String,
}

impl Model {
    fn build(resources: &[&'static ResourceType]) -> Model {
        let mut generator = schemars::generate::SchemaSettings::draft07()
            .with(|s| {
                s.transforms.clear();
                s.meta_schema = None;
            })
            .into_generator();
        catalog::add_meta(&mut generator);

        // Each served resource once, by group/version/plural; custom resources
        // (described by their CRD's schema) after the others.
        let mut seen = BTreeSet::new();
        let (custom, resources): (Vec<&ResourceType>, Vec<&ResourceType>) = resources
            .iter()
            .copied()
            .filter(|r| seen.insert((r.group, r.version, r.plural)))
            .partition(|r| r.strategy.custom_spec().is_some());

        let uses = |sub: Subresource| resources.iter().any(|r| r.has(sub));
        let body_name =
            |body: &Typed, generator: &mut schemars::SchemaGenerator| (body.add_schema)(generator);
        // Always there: custom resources added later may have a scale subresource.
        let scale = body_name(&bodies::SCALE, &mut generator);
        let eviction = if uses(Subresource::Eviction) {
            body_name(&bodies::EVICTION, &mut generator)
        } else {
            String::new()
        };
        let binding = if uses(Subresource::Binding) {
            body_name(&bodies::BINDING, &mut generator)
        } else {
            String::new()
        };
        let token_request = if uses(Subresource::Token) {
            body_name(&bodies::TOKEN_REQUEST, &mut generator)
        } else {
            String::new()
        };

        // The kind definitions of the kinds' typed models; the others are written below.
        let known: Vec<Option<String>> = resources
            .iter()
            .map(|r| r.typed.map(|t| (t.add_schema)(&mut generator)))
            .collect();

        let mut defs = schema::convert_definitions(generator.take_definitions(false));

        // GVKs of every k8s-openapi kind that made it into the definitions.
        for k in catalog::KINDS.iter().chain(catalog::BODY_KINDS) {
            schema::add_gvks(
                &mut defs,
                &(k.name)(),
                &[Gvk::new(k.group, k.version, k.kind)],
            );
        }
        let core = Gvk::new("", "v1", "");
        let with_kind = |gv: &Gvk, kind: &str| Gvk::new(&gv.group, &gv.version, kind);
        for kind in [
            "Status",
            "APIResourceList",
            "APIGroup",
            "APIGroupList",
            "APIVersions",
        ] {
            schema::add_gvks(
                &mut defs,
                &format!("io.k8s.apimachinery.pkg.apis.meta.v1.{kind}"),
                &[with_kind(&core, kind)],
            );
        }
        let mut group_versions: Vec<(String, String)> = vec![(String::new(), "v1".to_string())];
        for r in &resources {
            let gv = (r.group.to_string(), r.version.to_string());
            if !group_versions.contains(&gv) {
                group_versions.push(gv);
            }
        }
        for kind in ["DeleteOptions", "WatchEvent"] {
            let gvks: Vec<Gvk> = group_versions
                .iter()
                .map(|(g, v)| Gvk::new(g, v, kind))
                .collect();
            schema::add_gvks(
                &mut defs,
                &format!("io.k8s.apimachinery.pkg.apis.meta.v1.{kind}"),
                &gvks,
            );
        }

        let mut paths = Vec::new();
        let namespace_def = resources
            .iter()
            .zip(&known)
            .find(|(r, _)| r.group.is_empty() && r.kind == "Namespace")
            .and_then(|(_, k)| k.clone())
            .unwrap_or_default();
        for (r, known) in resources.iter().zip(known) {
            let gvk = Gvk::new(r.group, r.version, r.kind);
            let listable = !r.strategy.create_only();
            let kind_def = match known {
                Some(name) => {
                    schema::annotate_lists(&mut defs, &name, r.merge);
                    name
                }
                None => {
                    let name = schema::generic_name(&gvk);
                    defs.entry(name.clone())
                        .or_insert_with(|| schema::generic_kind(&gvk));
                    name
                }
            };
            // Strategic merge patch is offered where the server applies it: the kinds
            // its merge table describes (Kubernetes: built-in kinds, not custom resources).
            let strategic = r.merge.is_some();
            let list = if listable {
                let list_name = format!("{kind_def}List");
                defs.entry(list_name.clone())
                    .or_insert_with(|| schema::list_definition(&kind_def, &gvk));
                Some(list_name)
            } else {
                None
            };
            let names = Names {
                kind: kind_def,
                list,
                strategic,
                scale: scale.clone(),
                eviction: eviction.clone(),
                binding: binding.clone(),
                token_request: token_request.clone(),
                namespace: namespace_def.clone(),
            };
            paths.extend(paths::resource_paths(r, &names));
        }
        schema::add_field_strategies(&mut defs);
        group_versions.sort();
        paths.extend(paths::discovery_paths(&group_versions));
        let mut model = Model {
            defs,
            v3_defs: Definitions::new(),
            paths,
            bodies: BodyNames {
                scale,
                eviction,
                binding,
                token_request,
            },
        };
        for r in custom {
            if let Some(spec) = r.strategy.custom_spec() {
                model.add_custom(r, &spec);
            }
        }
        model.finish_paths();
        model
    }

    /// Adds a custom resource version: its kind and list definitions from the CRD's
    /// schema (named as Kubernetes names them, `<reversed group>.<version>.<Kind>`), its
    /// paths and its group's discovery paths. Returns the v3 document keys it touched.
    /// [`Model::finish_paths`] must follow.
    fn add_custom(
        &mut self,
        r: &ResourceType,
        spec: &keelson_resources::custom::VersionSpec,
    ) -> BTreeSet<String> {
        let gvk = Gvk::new(r.group, r.version, r.kind);
        let kind_def = schema::generic_name(&gvk);
        let list_kind = if spec.list_kind.is_empty() {
            format!("{}List", r.kind)
        } else {
            spec.list_kind.clone()
        };
        let list_gvk = Gvk::new(r.group, r.version, &list_kind);
        let list_def = schema::generic_name(&list_gvk);
        let (v2, v3) = crd::kind_definitions(spec.openapi_schema.as_ref(), &gvk);
        self.defs.insert(kind_def.clone(), v2);
        self.v3_defs.insert(kind_def.clone(), v3);
        self.defs.insert(
            list_def.clone(),
            crd::list_definition(&kind_def, &list_gvk, r.kind, r.plural),
        );
        let names = Names {
            kind: kind_def,
            list: Some(list_def),
            // Kubernetes refuses strategic merge patch for custom resources.
            strategic: false,
            scale: self.bodies.scale.clone(),
            eviction: self.bodies.eviction.clone(),
            binding: self.bodies.binding.clone(),
            token_request: self.bodies.token_request.clone(),
            namespace: String::new(),
        };
        let mut added = paths::resource_paths(r, &names);
        added.extend(paths::discovery_paths(&[(
            r.group.to_string(),
            r.version.to_string(),
        )]));
        // `/api/` and `/apis/` are the same whatever is served.
        added.retain(|p| p.doc != "api" && p.doc != "apis");
        let touched = added.iter().map(|p| p.doc.clone()).collect();
        self.paths.extend(added);
        touched
    }

    /// Sorts the paths, each once.
    fn finish_paths(&mut self) {
        self.paths.sort_by(|a, b| a.path.cmp(&b.path));
        self.paths.dedup_by(|a, b| a.path == b.path);
    }

    /// Every v3 document key, sorted.
    fn doc_keys(&self) -> BTreeSet<String> {
        self.paths.iter().map(|p| p.doc.clone()).collect()
    }

    fn v2_document(&self) -> Value {
        let mut paths = Map::new();
        for item in &self.paths {
            paths.insert(item.path.clone(), v2_path_item(item));
        }
        let mut parameters = Map::new();
        let mut shared: Vec<Param> = paths::shared_params();
        shared.extend(paths::shared_path_params());
        shared.sort_by_key(|p| p.shared);
        for p in &shared {
            parameters.insert(p.shared.unwrap_or_default().to_string(), v2_param_object(p));
        }
        let definitions: Map<String, Value> = self
            .defs
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        json!({
            "definitions": definitions,
            "info": { "title": "Kubernetes", "version": KUBERNETES_VERSION },
            "parameters": parameters,
            "paths": paths,
            "security": [{ "BearerToken": [] }],
            "securityDefinitions": {
                "BearerToken": {
                    "description": "Bearer Token authentication",
                    "in": "header",
                    "name": "authorization",
                    "type": "apiKey",
                }
            },
            "swagger": "2.0",
        })
    }

    fn v3_document(&self, key: &str) -> Value {
        let mut paths = Map::new();
        let mut roots = BTreeSet::new();
        for item in self.paths.iter().filter(|p| p.doc == key) {
            let v2 = v2_path_item(item);
            schema::collect_refs(&v2, &mut roots);
            paths.insert(item.path.clone(), v3_path_item(item));
        }
        let def = |name: &str| self.v3_defs.get(name).or_else(|| self.defs.get(name));
        let schemas: Map<String, Value> = schema::closure(&def, roots)
            .into_iter()
            .filter_map(|name| {
                let d = def(&name)?;
                Some((name.clone(), schema::definition_v3(&name, d)))
            })
            .collect();
        json!({
            "components": {
                "schemas": schemas,
                "securitySchemes": {
                    "BearerToken": {
                        "description": "Bearer Token authentication",
                        "in": "header",
                        "name": "authorization",
                        "type": "apiKey",
                    }
                },
            },
            "info": { "title": "Kubernetes", "version": KUBERNETES_VERSION },
            "openapi": "3.0.0",
            "paths": paths,
            "security": [{ "BearerToken": [] }],
        })
    }
}

/// Swagger 2.0 parameter object (no `$ref`).
fn v2_param_object(p: &Param) -> Value {
    let mut m = Map::new();
    m.insert("description".into(), json!(p.description));
    m.insert(
        "in".into(),
        json!(if p.location == In::Path {
            "path"
        } else {
            "query"
        }),
    );
    m.insert("name".into(), json!(p.name));
    if p.required {
        m.insert("required".into(), json!(true));
    }
    m.insert("type".into(), json!(p.ty.as_str()));
    Value::Object(m)
}

fn v2_param(p: &Param) -> Value {
    match p.shared {
        Some(key) => json!({ "$ref": format!("#/parameters/{key}") }),
        None => v2_param_object(p),
    }
}

fn v3_param(p: &Param) -> Value {
    let mut m = Map::new();
    m.insert("description".into(), json!(p.description));
    m.insert(
        "in".into(),
        json!(if p.location == In::Path {
            "path"
        } else {
            "query"
        }),
    );
    m.insert("name".into(), json!(p.name));
    if p.required {
        m.insert("required".into(), json!(true));
    }
    m.insert("schema".into(), json!({ "type": p.ty.as_str() }));
    Value::Object(m)
}

fn body_schema(body: &Body, prefix: &str) -> Value {
    match body {
        Body::Ref(name) => json!({ "$ref": format!("{prefix}{name}") }),
        Body::String => json!({ "type": "string" }),
    }
}

/// Operations keyed by method, in the order Kubernetes' sorted JSON has them, with the
/// path's parameters between (`parameters` sorts after `get`, before `patch`).
fn sorted_item(item: &PathItem, op: impl Fn(&Operation) -> Value, params: Value) -> Value {
    let mut entries: Vec<(String, Value)> = item
        .operations
        .iter()
        .map(|o| (o.method.to_string(), op(o)))
        .collect();
    if !item.params.is_empty() {
        entries.push(("parameters".into(), params));
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    Value::Object(entries.into_iter().collect())
}

fn v2_path_item(item: &PathItem) -> Value {
    sorted_item(
        item,
        v2_operation,
        Value::Array(item.params.iter().map(v2_param).collect()),
    )
}

fn v3_path_item(item: &PathItem) -> Value {
    sorted_item(
        item,
        v3_operation,
        Value::Array(item.params.iter().map(v3_param).collect()),
    )
}

fn v2_operation(op: &Operation) -> Value {
    let mut params: Vec<Value> = Vec::new();
    if let Some(body) = &op.body {
        params.push(json!({
            "in": "body",
            "name": "body",
            "required": body.required,
            "schema": { "$ref": format!("{V2_REF_PREFIX}{}", body.schema) },
        }));
    }
    params.extend(op.params.iter().map(v2_param));
    let mut responses = Map::new();
    for r in &op.responses {
        let mut resp = Map::new();
        resp.insert("description".into(), json!(r.description));
        if let Some(body) = &r.body {
            resp.insert("schema".into(), body_schema(body, V2_REF_PREFIX));
        }
        responses.insert(r.code.to_string(), Value::Object(resp));
    }
    let mut m = Map::new();
    m.insert("consumes".into(), json!(op.consumes));
    m.insert("description".into(), json!(op.description));
    m.insert("operationId".into(), json!(op.id));
    if !params.is_empty() {
        m.insert("parameters".into(), Value::Array(params));
    }
    m.insert("produces".into(), json!(op.produces));
    m.insert("responses".into(), Value::Object(responses));
    m.insert("schemes".into(), json!(["https"]));
    m.insert("tags".into(), json!([op.tag]));
    extensions(op, &mut m);
    Value::Object(m)
}

fn v3_operation(op: &Operation) -> Value {
    let mut m = Map::new();
    m.insert("description".into(), json!(op.description));
    m.insert("operationId".into(), json!(op.id));
    if !op.params.is_empty() {
        m.insert(
            "parameters".into(),
            Value::Array(op.params.iter().map(v3_param).collect()),
        );
    }
    if let Some(body) = &op.body {
        let schema = json!({ "$ref": format!("{V3_REF_PREFIX}{}", body.schema) });
        let content: Map<String, Value> = op
            .consumes
            .iter()
            .map(|c| (c.to_string(), json!({ "schema": schema })))
            .collect();
        let mut rb = Map::new();
        rb.insert("content".into(), Value::Object(content));
        if body.required {
            rb.insert("required".into(), json!(true));
        }
        m.insert("requestBody".into(), Value::Object(rb));
    }
    let mut responses = Map::new();
    for r in &op.responses {
        let mut resp = Map::new();
        if let Some(body) = &r.body {
            let schema = body_schema(body, V3_REF_PREFIX);
            let content: Map<String, Value> = op
                .produces
                .iter()
                .map(|c| (c.to_string(), json!({ "schema": schema })))
                .collect();
            resp.insert("content".into(), Value::Object(content));
        }
        resp.insert("description".into(), json!(r.description));
        responses.insert(r.code.to_string(), Value::Object(resp));
    }
    m.insert("responses".into(), Value::Object(responses));
    m.insert("tags".into(), json!([op.tag]));
    extensions(op, &mut m);
    Value::Object(m)
}

fn extensions(op: &Operation, m: &mut Map<String, Value>) {
    if !op.action.is_empty() {
        m.insert("x-kubernetes-action".into(), json!(op.action));
    }
    if let Some(gvk) = &op.gvk {
        m.insert("x-kubernetes-group-version-kind".into(), gvk.to_json());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_negotiation() {
        assert_eq!(accept_clauses(""), ["*/*"]);
        assert_eq!(
            accept_clauses("application/json;q=0.5, application/com.github.proto-openapi.spec.v2@v1.0+protobuf"),
            ["application/com.github.proto-openapi.spec.v2@v1.0+protobuf", "application/json"]
        );
        let docs = OpenApi::build(&[]);
        let (ct, body) = docs.v2_for_accept(V2_PROTOBUF_ACCEPT).unwrap();
        assert_eq!((ct, body), (V2_PROTOBUF_CONTENT_TYPE, docs.v2_protobuf()));
        assert_eq!(
            docs.v2_for_accept("application/json").unwrap().0,
            "application/json"
        );
        assert_eq!(docs.v2_for_accept("*/*").unwrap().0, "application/json");
        assert!(docs.v2_for_accept("text/html").is_none());
        assert_eq!(
            docs.v3_server_relative_url("/api/v1").unwrap(),
            format!(
                "/openapi/v3/api/v1?hash={}",
                docs.v3_hash("api/v1").unwrap()
            )
        );
    }

    /// A CRD's served version, installed as the apiserver's CRD follower does.
    fn install_widgets(group: &str) -> Vec<&'static ResourceType> {
        install_widgets_described(group, "How many.")
    }

    fn install_widgets_described(group: &str, replicas: &str) -> Vec<&'static ResourceType> {
        use keelson_resources::{custom, kinds::customresourcedefinitions as crds};
        let crd = json!({
            "metadata": {"name": format!("widgets.{group}")},
            "spec": {"group": group, "scope": "Namespaced",
                "names": {"plural": "widgets", "kind": "Widget", "listKind": "WidgetList"},
                "versions": [{"name": "v1", "served": true, "storage": true,
                    "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas"}},
                    "schema": {"openAPIV3Schema": {"type": "object", "description": "A widget.",
                        "properties": {"spec": {"type": "object", "properties": {
                            "replicas": {"type": "integer", "description": replicas, "default": 1},
                            "note": {"type": "string", "nullable": true}}}}}}}]},
            "status": {"acceptedNames": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
                "conditions": [{"type": "Established", "status": "True"}]}
        });
        custom::install(&format!("widgets.{group}"), crds::definitions(&crd));
        custom::served()
            .into_iter()
            .filter(|r| r.group == group)
            .collect()
    }

    #[test]
    fn custom_resources_are_described_and_removed() {
        let group = "docs.example.com";
        let builtins: &[&'static ResourceType] = &[&keelson_resources::kinds::pods::RESOURCE];
        let base = OpenApi::build(builtins);
        let custom = install_widgets(group);
        assert_eq!(custom.len(), 1);
        let docs = base.with_custom(&custom);

        let v2: Value = serde_json::from_slice(&docs.v2_json()).unwrap();
        let def = &v2["definitions"]["com.example.docs.v1.Widget"];
        assert_eq!(def["description"], "A widget.");
        assert_eq!(
            def["x-kubernetes-group-version-kind"],
            json!([{"group": group, "kind": "Widget", "version": "v1"}])
        );
        assert_eq!(
            def["properties"]["metadata"]["$ref"],
            "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
        );
        let replicas = &def["properties"]["spec"]["properties"]["replicas"];
        assert_eq!(replicas["description"], "How many.");
        assert!(replicas.get("default").is_none(), "v2 has no defaults");
        let list = &v2["definitions"]["com.example.docs.v1.WidgetList"];
        assert_eq!(
            list["properties"]["items"]["items"]["$ref"],
            "#/definitions/com.example.docs.v1.Widget"
        );
        let item = format!("/apis/{group}/v1/namespaces/{{namespace}}/widgets/{{name}}");
        let patch = &v2["paths"][&item]["patch"];
        assert_eq!(patch["x-kubernetes-group-version-kind"]["kind"], "Widget");
        let consumes = patch["consumes"].as_array().unwrap();
        assert!(!consumes.contains(&json!("application/strategic-merge-patch+json")));
        assert!(v2["paths"][format!("{item}/scale")].is_object());
        assert!(v2["paths"][format!("/apis/{group}/v1/widgets")].is_object());
        // The protobuf form is the same document.
        assert!(!docs.v2_protobuf().is_empty());
        assert_ne!(docs.v2_etag(), base.v2_etag());

        let key = format!("apis/{group}/v1");
        let index: Value = serde_json::from_slice(&docs.v3_index_json()).unwrap();
        assert_eq!(
            index["paths"][&key]["serverRelativeURL"],
            format!("/openapi/v3/{key}?hash={}", docs.v3_hash(&key).unwrap())
        );
        assert!(index["paths"][format!("apis/{group}")].is_object());
        let v3: Value = serde_json::from_slice(&docs.v3_group_version_json(&key).unwrap()).unwrap();
        let schemas = &v3["components"]["schemas"];
        let def = &schemas["com.example.docs.v1.Widget"];
        assert_eq!(
            def["properties"]["spec"]["properties"]["replicas"]["default"],
            1
        );
        assert_eq!(
            def["properties"]["spec"]["properties"]["note"]["nullable"],
            true
        );
        assert_eq!(
            def["properties"]["metadata"]["$ref"],
            "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
        );
        assert!(schemas["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"].is_object());
        assert!(schemas["io.k8s.api.autoscaling.v1.Scale"].is_object());
        let content = &v3["paths"][&item]["patch"]["requestBody"]["content"];
        assert!(content["application/apply-patch+yaml"].is_object());
        assert!(content
            .get("application/strategic-merge-patch+json")
            .is_none());
        // Built-in documents are untouched.
        assert_eq!(docs.v3_hash("api/v1"), base.v3_hash("api/v1"));
        assert_eq!(
            docs.v3_group_version_json("api/v1"),
            base.v3_group_version_json("api/v1")
        );

        // A changed schema changes the group's document, its hash and the v2 ETag.
        let changed = base.with_custom(&install_widgets_described(group, "How many now."));
        assert_ne!(changed.v3_hash(&key), docs.v3_hash(&key));
        assert_ne!(changed.v2_etag(), docs.v2_etag());
        assert_eq!(changed.v3_hash("api/v1"), base.v3_hash("api/v1"));

        // The CRD goes: so do its definitions and its documents.
        keelson_resources::custom::install(&format!("widgets.{group}"), Vec::new());
        let gone = base.with_custom(&keelson_resources::custom::served());
        let v2: Value = serde_json::from_slice(&gone.v2_json()).unwrap();
        assert!(v2["definitions"]
            .get("com.example.docs.v1.Widget")
            .is_none());
        assert!(gone.v3_hash(&key).is_none());
    }
}
