//! The endpoints of each served resource, as operations both document forms render.
//!
//! Kubernetes' route installer (`k8s.io/apiserver/pkg/endpoints/installer.go`) decides
//! which paths and verbs a resource has; this module follows the same shape: collection
//! and item paths, the all-namespaces list for namespaced kinds, and one path per
//! subresource. Every operation carries `x-kubernetes-action` and, where Kubernetes sets
//! one, `x-kubernetes-group-version-kind`, which is how kubectl finds the kind a path
//! serves (`kubectl explain`) and whether PATCH takes `fieldValidation`.

use keelson_resources::{ResourceType, Subresource};

use crate::schema::Gvk;

/// Where a parameter goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum In {
    Path,
    Query,
}

/// A parameter's primitive type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ty {
    String,
    Integer,
    Boolean,
}

impl Ty {
    pub fn as_str(self) -> &'static str {
        match self {
            Ty::String => "string",
            Ty::Integer => "integer",
            Ty::Boolean => "boolean",
        }
    }
}

/// A path or query parameter.
#[derive(Debug, Clone)]
pub(crate) struct Param {
    /// Name of the shared definition in the Swagger document's `parameters`, when the
    /// parameter is the same everywhere; `None` for ones with a per-resource description.
    pub shared: Option<&'static str>,
    pub name: &'static str,
    pub location: In,
    pub ty: Ty,
    pub required: bool,
    pub description: String,
}

const fn q(
    shared: &'static str,
    name: &'static str,
    ty: Ty,
    description: &'static str,
) -> SharedParam {
    SharedParam {
        shared,
        name,
        ty,
        description,
    }
}

/// A query parameter the same in every operation that has it.
pub(crate) struct SharedParam {
    shared: &'static str,
    name: &'static str,
    ty: Ty,
    description: &'static str,
}

impl SharedParam {
    fn param(&self) -> Param {
        Param {
            shared: Some(self.shared),
            name: self.name,
            location: In::Query,
            ty: self.ty,
            required: false,
            description: self.description.to_string(),
        }
    }
}

const PRETTY: SharedParam = q("pretty", "pretty", Ty::String, "If 'true', then the output is pretty printed. Defaults to 'false' unless the user-agent indicates a browser or command-line HTTP tool (curl and wget).");
const DRY_RUN: SharedParam = q("dryRun", "dryRun", Ty::String, "When present, indicates that modifications should not be persisted. An invalid or unrecognized dryRun directive will result in an error response and no further processing of the request. Valid values are: - All: all dry run stages will be processed");
const FIELD_MANAGER: SharedParam = q("fieldManager", "fieldManager", Ty::String, "fieldManager is a name associated with the actor or entity that is making these changes. The value must be less than or 128 characters long, and only contain printable characters, as defined by https://golang.org/pkg/unicode/#IsPrint.");
const FIELD_MANAGER_PATCH: SharedParam = q("fieldManager-patch", "fieldManager", Ty::String, "fieldManager is a name associated with the actor or entity that is making these changes. The value must be less than or 128 characters long, and only contain printable characters, as defined by https://golang.org/pkg/unicode/#IsPrint. This field is required for apply requests (application/apply-patch) but optional for non-apply patch types (JsonPatch, MergePatch, StrategicMergePatch).");
const FIELD_VALIDATION: SharedParam = q("fieldValidation", "fieldValidation", Ty::String, "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: - Ignore: This will ignore any unknown fields that are silently dropped from the object, and will ignore all but the last duplicate field that the decoder encounters. - Warn: This will send a warning via the standard warning response header for each unknown field that is dropped from the object, and for each duplicate field that is encountered. The request will still succeed if there are no other errors, and will only persist the last of any duplicate fields. - Strict: This will fail the request with a BadRequest error if any unknown fields would be dropped from the object, or if any duplicate fields are present. The error returned from the server will contain all unknown and duplicate fields encountered.");
const FORCE: SharedParam = q("force", "force", Ty::Boolean, "Force is going to \"force\" Apply requests. It means user will re-acquire conflicting fields owned by other people. Force flag must be unset for non-apply patch requests.");
const GRACE_PERIOD: SharedParam = q("gracePeriodSeconds", "gracePeriodSeconds", Ty::Integer, "The duration in seconds before the object should be deleted. Value must be non-negative integer. The value zero indicates delete immediately. If this value is nil, the default grace period for the specified type will be used. Defaults to a per object value if not specified. zero means delete immediately.");
const IGNORE_STORE_READ_ERROR: SharedParam = q("ignoreStoreReadErrorWithClusterBreakingPotential", "ignoreStoreReadErrorWithClusterBreakingPotential", Ty::Boolean, "if set to true, it will trigger an unsafe deletion of the resource in case the normal deletion flow fails with a corrupt object error. A resource is considered corrupt if it can not be retrieved from the underlying storage successfully because of a) its data can not be transformed e.g. decryption failure, or b) it fails to decode into an object. NOTE: unsafe deletion ignores finalizer constraints, skips precondition checks, and removes the object from the storage. WARNING: This may potentially break the cluster if the workload associated with the resource being unsafe-deleted relies on normal deletion flow. Use only if you REALLY know what you are doing. The default value is false, and the user must opt in to enable it");
const ORPHAN_DEPENDENTS: SharedParam = q("orphanDependents", "orphanDependents", Ty::Boolean, "Deprecated: please use the PropagationPolicy, this field will be deprecated in 1.7. Should the dependent objects be orphaned. If true/false, the \"orphan\" finalizer will be added to/removed from the object's finalizers list. Either this field or PropagationPolicy may be set, but not both.");
const PROPAGATION_POLICY: SharedParam = q("propagationPolicy", "propagationPolicy", Ty::String, "Whether and how garbage collection will be performed. Either this field or OrphanDependents may be set, but not both. The default policy is decided by the existing finalizer set in the metadata.finalizers and the resource-specific default policy. Acceptable values are: 'Orphan' - orphan the dependents; 'Background' - allow the garbage collector to delete the dependents in the background; 'Foreground' - a cascading policy that deletes all dependents in the foreground.");
const ALLOW_WATCH_BOOKMARKS: SharedParam = q("allowWatchBookmarks", "allowWatchBookmarks", Ty::Boolean, "allowWatchBookmarks requests watch events with type \"BOOKMARK\". Servers that do not implement bookmarks may ignore this flag and bookmarks are sent at the server's discretion. Clients should not assume bookmarks are returned at any specific interval, nor may they assume the server will send any BOOKMARK event during a session. If this is not a watch, this field is ignored.");
const CONTINUE: SharedParam = q("continue", "continue", Ty::String, "The continue option should be set when retrieving more results from the server. Since this value is server defined, clients may only use the continue value from a previous query result with identical query parameters (except for the value of continue) and the server may reject a continue value it does not recognize. If the specified continue value is no longer valid whether due to expiration (generally five to fifteen minutes) or a configuration change on the server, the server will respond with a 410 ResourceExpired error together with a continue token.");
const FIELD_SELECTOR: SharedParam = q(
    "fieldSelector",
    "fieldSelector",
    Ty::String,
    "A selector to restrict the list of returned objects by their fields. Defaults to everything.",
);
const LABEL_SELECTOR: SharedParam = q(
    "labelSelector",
    "labelSelector",
    Ty::String,
    "A selector to restrict the list of returned objects by their labels. Defaults to everything.",
);
const LIMIT: SharedParam = q("limit", "limit", Ty::Integer, "limit is a maximum number of responses to return for a list call. If more items exist, the server will set the `continue` field on the list metadata to a value that can be used with the same initial query to retrieve the next set of results.");
const RESOURCE_VERSION: SharedParam = q("resourceVersion", "resourceVersion", Ty::String, "resourceVersion sets a constraint on what resource versions a request may be served from. See https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions for details.\n\nDefaults to unset");
const RESOURCE_VERSION_MATCH: SharedParam = q("resourceVersionMatch", "resourceVersionMatch", Ty::String, "resourceVersionMatch determines how resourceVersion is applied to list calls. It is highly recommended that resourceVersionMatch be set for list calls where resourceVersion is set See https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions for details.\n\nDefaults to unset");
const SEND_INITIAL_EVENTS: SharedParam = q("sendInitialEvents", "sendInitialEvents", Ty::Boolean, "`sendInitialEvents=true` may be set together with `watch=true`. In that case, the watch stream will begin with synthetic events to produce the current state of objects in the collection. Once all such events have been sent, a synthetic \"Bookmark\" event will be sent.");
const TIMEOUT_SECONDS: SharedParam = q("timeoutSeconds", "timeoutSeconds", Ty::Integer, "Timeout for the list/watch call. This limits the duration of the call, regardless of any activity or inactivity.");
const WATCH: SharedParam = q("watch", "watch", Ty::Boolean, "Watch for changes to the described resources and return them as a stream of add, update, and remove notifications. Specify resourceVersion.");
const LOG_CONTAINER: SharedParam = q("container-log", "container", Ty::String, "The container for which to stream logs. Defaults to only container if there is one container in the pod.");
const LOG_FOLLOW: SharedParam = q(
    "follow",
    "follow",
    Ty::Boolean,
    "Follow the log stream of the pod. Defaults to false.",
);
const LOG_INSECURE: SharedParam = q("insecureSkipTLSVerifyBackend", "insecureSkipTLSVerifyBackend", Ty::Boolean, "insecureSkipTLSVerifyBackend indicates that the apiserver should not confirm the validity of the serving certificate of the backend it is connecting to.");
const LOG_LIMIT_BYTES: SharedParam = q("limitBytes", "limitBytes", Ty::Integer, "If set, the number of bytes to read from the server before terminating the log output. This may not display a complete final line of logging, and may return slightly more or slightly less than the specified limit.");
const LOG_PREVIOUS: SharedParam = q(
    "previous",
    "previous",
    Ty::Boolean,
    "Return previous terminated container logs. Defaults to false.",
);
const LOG_SINCE_SECONDS: SharedParam = q("sinceSeconds", "sinceSeconds", Ty::Integer, "A relative time in seconds before the current time from which to show logs. If this value precedes the time a pod was started, only logs since the pod start will be returned. If this value is in the future, no logs will be returned. Only one of sinceSeconds or sinceTime may be specified.");
const LOG_STREAM: SharedParam = q("stream", "stream", Ty::String, "Specify which container log stream to return to the client. Acceptable values are \"All\", \"Stdout\" and \"Stderr\". If not specified, \"All\" is used, and both stdout and stderr are returned interleaved. Note that when \"TailLines\" is specified, \"Stream\" can only be set to nil or \"All\".");
const LOG_TAIL_LINES: SharedParam = q("tailLines", "tailLines", Ty::Integer, "If set, the number of lines from the end of the logs to show. If not specified, logs are shown from the creation of the container or sinceSeconds or sinceTime. Note that when \"TailLines\" is specified, \"Stream\" can only be set to nil or \"All\".");
const LOG_TIMESTAMPS: SharedParam = q("timestamps", "timestamps", Ty::Boolean, "If true, add an RFC3339 or RFC3339Nano timestamp at the beginning of every line of log output. Defaults to false.");
const EXEC_COMMAND: SharedParam = q(
    "command-exec",
    "command",
    Ty::String,
    "Command is the remote command to execute. argv array. Not executed within a shell.",
);
const EXEC_CONTAINER: SharedParam = q("container-exec", "container", Ty::String, "Container in which to execute the command. Defaults to only container if there is only one container in the pod.");
const EXEC_STDERR: SharedParam = q(
    "stderr",
    "stderr",
    Ty::Boolean,
    "Redirect the standard error stream of the pod for this call.",
);
const EXEC_STDIN: SharedParam = q(
    "stdin",
    "stdin",
    Ty::Boolean,
    "Redirect the standard input stream of the pod for this call. Defaults to false.",
);
const EXEC_STDOUT: SharedParam = q(
    "stdout",
    "stdout",
    Ty::Boolean,
    "Redirect the standard output stream of the pod for this call.",
);
const EXEC_TTY: SharedParam = q(
    "tty",
    "tty",
    Ty::Boolean,
    "TTY if true indicates that a tty will be allocated for the exec call. Defaults to false.",
);
const PORTS: SharedParam = q(
    "ports",
    "ports",
    Ty::Integer,
    "List of ports to forward Required when using WebSockets",
);
const PROXY_PATH_QUERY: SharedParam = q(
    "path-proxy",
    "path",
    Ty::String,
    "Path is the URL path to use for the current proxy request.",
);

/// Every shared parameter, for the Swagger document's `parameters`.
pub(crate) const SHARED: &[&SharedParam] = &[
    &PRETTY,
    &DRY_RUN,
    &FIELD_MANAGER,
    &FIELD_MANAGER_PATCH,
    &FIELD_VALIDATION,
    &FORCE,
    &GRACE_PERIOD,
    &IGNORE_STORE_READ_ERROR,
    &ORPHAN_DEPENDENTS,
    &PROPAGATION_POLICY,
    &ALLOW_WATCH_BOOKMARKS,
    &CONTINUE,
    &FIELD_SELECTOR,
    &LABEL_SELECTOR,
    &LIMIT,
    &RESOURCE_VERSION,
    &RESOURCE_VERSION_MATCH,
    &SEND_INITIAL_EVENTS,
    &TIMEOUT_SECONDS,
    &WATCH,
    &LOG_CONTAINER,
    &LOG_FOLLOW,
    &LOG_INSECURE,
    &LOG_LIMIT_BYTES,
    &LOG_PREVIOUS,
    &LOG_SINCE_SECONDS,
    &LOG_STREAM,
    &LOG_TAIL_LINES,
    &LOG_TIMESTAMPS,
    &EXEC_COMMAND,
    &EXEC_CONTAINER,
    &EXEC_STDERR,
    &EXEC_STDIN,
    &EXEC_STDOUT,
    &EXEC_TTY,
    &PORTS,
    &PROXY_PATH_QUERY,
];

/// The shared parameters as `Param`s (for the Swagger `parameters` section).
pub(crate) fn shared_params() -> Vec<Param> {
    SHARED.iter().map(|p| p.param()).collect()
}

fn path_param(name: &'static str, description: String) -> Param {
    Param {
        shared: None,
        name,
        location: In::Path,
        ty: Ty::String,
        required: true,
        description,
    }
}

fn namespace_param() -> Param {
    Param {
        shared: Some("namespace"),
        ..path_param(
            "namespace",
            "object name and auth scope, such as for teams and projects".into(),
        )
    }
}

/// Path-level parameters that are path parameters but shared (namespace).
pub(crate) fn shared_path_params() -> Vec<Param> {
    vec![namespace_param()]
}

fn list_params() -> Vec<Param> {
    [
        &ALLOW_WATCH_BOOKMARKS,
        &CONTINUE,
        &FIELD_SELECTOR,
        &LABEL_SELECTOR,
        &LIMIT,
        &RESOURCE_VERSION,
        &RESOURCE_VERSION_MATCH,
        &SEND_INITIAL_EVENTS,
        &TIMEOUT_SECONDS,
        &WATCH,
    ]
    .iter()
    .map(|p| p.param())
    .collect()
}

fn write_params() -> Vec<Param> {
    vec![
        DRY_RUN.param(),
        FIELD_MANAGER.param(),
        FIELD_VALIDATION.param(),
    ]
}

fn patch_params() -> Vec<Param> {
    vec![
        DRY_RUN.param(),
        FIELD_MANAGER_PATCH.param(),
        FIELD_VALIDATION.param(),
        FORCE.param(),
    ]
}

fn delete_params() -> Vec<Param> {
    [
        &DRY_RUN,
        &GRACE_PERIOD,
        &IGNORE_STORE_READ_ERROR,
        &ORPHAN_DEPENDENTS,
        &PROPAGATION_POLICY,
    ]
    .iter()
    .map(|p| p.param())
    .collect()
}

/// What a response body is.
#[derive(Debug, Clone)]
pub(crate) enum Body {
    /// A definition, by name.
    Ref(String),
    /// Plain text (logs) or bytes (exec, proxy).
    String,
}

#[derive(Debug, Clone)]
pub(crate) struct Response {
    pub code: &'static str,
    pub description: &'static str,
    pub body: Option<Body>,
}

/// A request body.
#[derive(Debug, Clone)]
pub(crate) struct RequestBody {
    /// Definition name.
    pub schema: String,
    pub required: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Operation {
    /// Lower-case HTTP method, as OpenAPI keys operations.
    pub method: &'static str,
    pub id: String,
    pub description: String,
    pub action: &'static str,
    pub gvk: Option<Gvk>,
    pub params: Vec<Param>,
    pub body: Option<RequestBody>,
    pub consumes: Vec<&'static str>,
    pub produces: Vec<&'static str>,
    pub responses: Vec<Response>,
    pub tag: String,
}

#[derive(Debug, Clone)]
pub(crate) struct PathItem {
    pub path: String,
    /// The OpenAPI v3 document the path belongs to (`api/v1`, `apis/apps/v1`, `apis`).
    pub doc: String,
    pub params: Vec<Param>,
    pub operations: Vec<Operation>,
}

const JSON_YAML: &[&str] = &["application/json", "application/yaml"];
const LIST_PRODUCES: &[&str] = &[
    "application/json",
    "application/yaml",
    "application/json;stream=watch",
];
const ANY: &[&str] = &["*/*"];
const TEXT: &[&str] = &["text/plain", "application/json", "application/yaml"];

pub(crate) const STATUS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Status";
pub(crate) const DELETE_OPTIONS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions";
pub(crate) const PATCH: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch";
pub(crate) const API_RESOURCE_LIST: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.APIResourceList";
pub(crate) const API_GROUP: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.APIGroup";
pub(crate) const API_GROUP_LIST: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.APIGroupList";
pub(crate) const API_VERSIONS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.APIVersions";

/// The patch content types; strategic merge patch only for kinds whose schema and merge
/// rules are known (as Kubernetes does for built-in kinds but not custom resources).
fn patch_consumes(strategic: bool) -> Vec<&'static str> {
    let mut out = vec![
        "application/json-patch+json",
        "application/merge-patch+json",
    ];
    if strategic {
        out.push("application/strategic-merge-patch+json");
    }
    out.push("application/apply-patch+yaml");
    out
}

/// `CoreV1`, `AppsV1`, `RbacAuthorizationV1`: the group-version part of operation ids.
pub(crate) fn gv_id(group: &str, version: &str) -> String {
    let group = if group.is_empty() {
        "core"
    } else {
        group.trim_end_matches(".k8s.io")
    };
    let mut out: String = group.split(['.', '-']).map(capitalize).collect();
    out.push_str(&capitalize(version));
    out
}

/// `apps_v1`, `core_v1`: the tag Kubernetes gives a group-version's operations.
fn tag(group: &str, version: &str) -> String {
    let group = if group.is_empty() {
        "core"
    } else {
        group.trim_end_matches(".k8s.io")
    };
    format!("{}_{version}", group.replace(['.', '-'], "_"))
}

fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// The v3 document key of a group-version: `api/v1`, `apis/apps/v1`.
pub(crate) fn doc_key(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// Where a resource's definitions are, as the paths builder needs them.
pub(crate) struct Names {
    pub kind: String,
    /// `None` when no list definition exists (non-listable kinds).
    pub list: Option<String>,
    /// Whether strategic merge patch is advertised for the kind.
    pub strategic: bool,
    pub scale: String,
    pub eviction: String,
    pub binding: String,
    pub token_request: String,
    pub namespace: String,
}

struct Ctx<'a> {
    r: &'a ResourceType,
    names: &'a Names,
    gvk: Gvk,
    gv: String,
    tag: String,
    /// `Namespaced` for namespaced kinds, "" otherwise.
    scope: &'static str,
}

impl Ctx<'_> {
    #[allow(clippy::too_many_arguments)]
    fn op(
        &self,
        method: &'static str,
        verb: &str,
        suffix: &str,
        description: String,
        action: &'static str,
        gvk: Option<Gvk>,
        params: Vec<Param>,
        body: Option<RequestBody>,
        consumes: Vec<&'static str>,
        produces: &[&'static str],
        responses: Vec<Response>,
    ) -> Operation {
        Operation {
            method,
            id: format!("{verb}{}{}{}{suffix}", self.gv, self.scope, self.r.kind),
            description,
            action,
            gvk,
            params,
            body,
            consumes,
            produces: produces.to_vec(),
            responses,
            tag: self.tag.clone(),
        }
    }
}

fn ok(body: &str) -> Response {
    Response {
        code: "200",
        description: "OK",
        body: Some(Body::Ref(body.to_string())),
    }
}

fn created(body: &str) -> Response {
    Response {
        code: "201",
        description: "Created",
        body: Some(Body::Ref(body.to_string())),
    }
}

fn accepted(body: &str) -> Response {
    Response {
        code: "202",
        description: "Accepted",
        body: Some(Body::Ref(body.to_string())),
    }
}

fn unauthorized() -> Response {
    Response {
        code: "401",
        description: "Unauthorized",
        body: None,
    }
}

fn body(schema: &str, required: bool) -> Option<RequestBody> {
    Some(RequestBody {
        schema: schema.to_string(),
        required,
    })
}

/// Every path of one served resource.
pub(crate) fn resource_paths(r: &ResourceType, names: &Names) -> Vec<PathItem> {
    let prefix = if r.group.is_empty() {
        format!("/api/{}", r.version)
    } else {
        format!("/apis/{}/{}", r.group, r.version)
    };
    let ctx = Ctx {
        r,
        names,
        gvk: Gvk::new(r.group, r.version, r.kind),
        gv: gv_id(r.group, r.version),
        tag: tag(r.group, r.version),
        scope: if r.namespaced { "Namespaced" } else { "" },
    };
    let doc = doc_key(r.group, r.version);
    let scoped = if r.namespaced {
        format!("{prefix}/namespaces/{{namespace}}/{}", r.plural)
    } else {
        format!("{prefix}/{}", r.plural)
    };
    let scope_params = || {
        let mut p = Vec::new();
        if r.namespaced {
            p.push(namespace_param());
        }
        p.push(PRETTY.param());
        p
    };
    let item_params = || {
        let mut p = vec![path_param("name", format!("name of the {}", r.kind))];
        p.extend(scope_params());
        p
    };
    let kind = &names.kind;
    let gvk = Some(ctx.gvk.clone());
    let mut out = Vec::new();

    // The collection: list, create, delete collection.
    let mut collection = Vec::new();
    if let Some(list) = &names.list {
        collection.push(ctx.op(
            "get",
            "list",
            "",
            format!("list or watch objects of kind {}", r.kind),
            "list",
            gvk.clone(),
            list_params(),
            None,
            ANY.to_vec(),
            LIST_PRODUCES,
            vec![ok(list), unauthorized()],
        ));
    }
    collection.push(ctx.op(
        "post",
        "create",
        "",
        format!("create {}", article(r.kind)),
        "post",
        gvk.clone(),
        write_params(),
        body(kind, true),
        ANY.to_vec(),
        JSON_YAML,
        vec![ok(kind), created(kind), accepted(kind), unauthorized()],
    ));
    if names.list.is_some() && r.strategy.delete_collection() {
        let mut params = delete_params();
        params.extend(list_params());
        params.retain(|p| p.name != "watch" && p.name != "allowWatchBookmarks");
        let mut op = ctx.op(
            "delete",
            "delete",
            "",
            format!("delete collection of {}", r.kind),
            "deletecollection",
            gvk.clone(),
            params,
            body(DELETE_OPTIONS, false),
            ANY.to_vec(),
            JSON_YAML,
            vec![ok(STATUS), unauthorized()],
        );
        op.id = format!("delete{}Collection{}{}", ctx.gv, ctx.scope, r.kind);
        collection.push(op);
    }
    out.push(PathItem {
        path: scoped.clone(),
        doc: doc.clone(),
        params: scope_params(),
        operations: collection,
    });

    // Kinds without a list (reviews, bindings) are create-only, as in Kubernetes.
    if names.list.is_none() {
        return out;
    }

    // The item: read, replace, patch, delete.
    let item = format!("{scoped}/{{name}}");
    out.push(PathItem {
        path: item.clone(),
        doc: doc.clone(),
        params: item_params(),
        operations: vec![
            ctx.op(
                "get",
                "read",
                "",
                format!("read the specified {}", r.kind),
                "get",
                gvk.clone(),
                Vec::new(),
                None,
                ANY.to_vec(),
                JSON_YAML,
                vec![ok(kind), unauthorized()],
            ),
            ctx.op(
                "put",
                "replace",
                "",
                format!("replace the specified {}", r.kind),
                "put",
                gvk.clone(),
                write_params(),
                body(kind, true),
                ANY.to_vec(),
                JSON_YAML,
                vec![ok(kind), created(kind), unauthorized()],
            ),
            ctx.op(
                "patch",
                "patch",
                "",
                format!("partially update the specified {}", r.kind),
                "patch",
                gvk.clone(),
                patch_params(),
                body(PATCH, true),
                patch_consumes(names.strategic),
                JSON_YAML,
                vec![ok(kind), created(kind), unauthorized()],
            ),
            ctx.op(
                "delete",
                "delete",
                "",
                format!("delete {}", article(r.kind)),
                "delete",
                gvk.clone(),
                delete_params(),
                body(DELETE_OPTIONS, false),
                ANY.to_vec(),
                JSON_YAML,
                vec![ok(STATUS), accepted(STATUS), unauthorized()],
            ),
        ],
    });

    // Every namespace at once.
    if r.namespaced {
        if let Some(list) = &names.list {
            let mut op = ctx.op(
                "get",
                "list",
                "ForAllNamespaces",
                format!("list or watch objects of kind {}", r.kind),
                "list",
                gvk.clone(),
                Vec::new(),
                None,
                ANY.to_vec(),
                LIST_PRODUCES,
                vec![ok(list), unauthorized()],
            );
            op.id = format!("list{}{}ForAllNamespaces", ctx.gv, r.kind);
            let mut params = list_params();
            params.push(PRETTY.param());
            out.push(PathItem {
                path: format!("{prefix}/{}", r.plural),
                doc: doc.clone(),
                params,
                operations: vec![op],
            });
        }
    }

    for &sub in r.subresources {
        out.extend(subresource_paths(&ctx, sub, &item, &doc, &item_params));
    }
    out
}

fn subresource_paths(
    ctx: &Ctx,
    sub: Subresource,
    item: &str,
    doc: &str,
    item_params: &dyn Fn() -> Vec<Param>,
) -> Vec<PathItem> {
    let r = ctx.r;
    let names = ctx.names;
    let path = format!("{item}/{}", sub.path());
    let item_of = |params: Vec<Param>, operations: Vec<Operation>| PathItem {
        path: path.clone(),
        doc: doc.to_string(),
        params,
        operations,
    };
    let own_gvk = Some(ctx.gvk.clone());
    match sub {
        Subresource::Status | Subresource::Scale | Subresource::Approval => {
            let (schema, gvk, suffix, what) = if sub == Subresource::Status {
                (names.kind.clone(), own_gvk, "Status", "status")
            } else if sub == Subresource::Approval {
                (names.kind.clone(), own_gvk, "Approval", "approval")
            } else {
                (
                    names.scale.clone(),
                    Some(Gvk::new("autoscaling", "v1", "Scale")),
                    "Scale",
                    "scale",
                )
            };
            let strategic = sub == Subresource::Scale || names.strategic;
            vec![item_of(
                item_params(),
                vec![
                    ctx.op(
                        "get",
                        "read",
                        suffix,
                        format!("read {what} of the specified {}", r.kind),
                        "get",
                        gvk.clone(),
                        Vec::new(),
                        None,
                        ANY.to_vec(),
                        JSON_YAML,
                        vec![ok(&schema), unauthorized()],
                    ),
                    ctx.op(
                        "put",
                        "replace",
                        suffix,
                        format!("replace {what} of the specified {}", r.kind),
                        "put",
                        gvk.clone(),
                        write_params(),
                        body(&schema, true),
                        ANY.to_vec(),
                        JSON_YAML,
                        vec![ok(&schema), created(&schema), unauthorized()],
                    ),
                    ctx.op(
                        "patch",
                        "patch",
                        suffix,
                        format!("partially update {what} of the specified {}", r.kind),
                        "patch",
                        gvk,
                        patch_params(),
                        body(PATCH, true),
                        patch_consumes(strategic),
                        JSON_YAML,
                        vec![ok(&schema), created(&schema), unauthorized()],
                    ),
                ],
            )]
        }
        Subresource::Binding | Subresource::Eviction | Subresource::Token => {
            let (schema, gvk, suffix) = match sub {
                Subresource::Binding => (
                    names.binding.clone(),
                    Gvk::new("", "v1", "Binding"),
                    "Binding",
                ),
                Subresource::Eviction => (
                    names.eviction.clone(),
                    Gvk::new("policy", "v1", "Eviction"),
                    "Eviction",
                ),
                _ => (
                    names.token_request.clone(),
                    Gvk::new("authentication.k8s.io", "v1", "TokenRequest"),
                    "Token",
                ),
            };
            vec![item_of(
                item_params(),
                vec![ctx.op(
                    "post",
                    "create",
                    suffix,
                    format!("create {} of {}", sub.path(), article(r.kind)),
                    "post",
                    Some(gvk),
                    write_params(),
                    body(&schema, true),
                    ANY.to_vec(),
                    JSON_YAML,
                    vec![
                        ok(&schema),
                        created(&schema),
                        accepted(&schema),
                        unauthorized(),
                    ],
                )],
            )]
        }
        Subresource::Finalize => {
            let schema = if r.kind == "Namespace" {
                names.namespace.clone()
            } else {
                names.kind.clone()
            };
            vec![item_of(
                item_params(),
                vec![ctx.op(
                    "put",
                    "replace",
                    "Finalize",
                    format!("replace finalize of the specified {}", r.kind),
                    "put",
                    Some(ctx.gvk.clone()),
                    write_params(),
                    body(&schema, true),
                    ANY.to_vec(),
                    JSON_YAML,
                    vec![ok(&schema), created(&schema), unauthorized()],
                )],
            )]
        }
        Subresource::Log => {
            let mut params = item_params();
            params.extend(
                [
                    &LOG_CONTAINER,
                    &LOG_FOLLOW,
                    &LOG_INSECURE,
                    &LOG_LIMIT_BYTES,
                    &LOG_PREVIOUS,
                    &LOG_SINCE_SECONDS,
                    &LOG_STREAM,
                    &LOG_TAIL_LINES,
                    &LOG_TIMESTAMPS,
                ]
                .iter()
                .map(|p| p.param()),
            );
            vec![item_of(
                params,
                vec![ctx.op(
                    "get",
                    "read",
                    "Log",
                    format!("read log of the specified {}", r.kind),
                    "get",
                    Some(ctx.gvk.clone()),
                    Vec::new(),
                    None,
                    ANY.to_vec(),
                    TEXT,
                    vec![
                        Response {
                            code: "200",
                            description: "OK",
                            body: Some(Body::String),
                        },
                        unauthorized(),
                    ],
                )],
            )]
        }
        Subresource::Exec => {
            let exec_params: Vec<Param> = [
                &EXEC_COMMAND,
                &EXEC_CONTAINER,
                &EXEC_STDERR,
                &EXEC_STDIN,
                &EXEC_STDOUT,
                &EXEC_TTY,
            ]
            .iter()
            .map(|p| p.param())
            .collect();
            let attach_params: Vec<Param> = exec_params
                .iter()
                .filter(|p| p.name != "command")
                .cloned()
                .collect();
            let connect = |name: &'static str, suffix: &str, extra: Vec<Param>| {
                let mut params = vec![path_param(
                    "name",
                    format!("name of the {}Options", ctx.gvk.kind),
                )];
                if r.namespaced {
                    params.push(namespace_param());
                }
                params.extend(extra);
                let gvk = Gvk::new(r.group, r.version, &format!("{}{suffix}Options", r.kind));
                PathItem {
                    path: format!("{item}/{name}"),
                    doc: doc.to_string(),
                    params,
                    operations: ["get", "post"]
                        .into_iter()
                        .map(|method| connect_op(ctx, method, suffix, gvk.clone(), name))
                        .collect(),
                }
            };
            vec![
                connect("attach", "Attach", attach_params),
                connect("exec", "Exec", exec_params),
                connect("portforward", "PortForward", vec![PORTS.param()]),
            ]
        }
        Subresource::Proxy => {
            let gvk = Gvk::new(r.group, r.version, &format!("{}ProxyOptions", r.kind));
            let methods = ["get", "put", "post", "patch", "delete", "head", "options"];
            let mut params = vec![path_param(
                "name",
                format!("name of the {}ProxyOptions", r.kind),
            )];
            if r.namespaced {
                params.push(namespace_param());
            }
            let mut with_path = params.clone();
            with_path.push(path_param("path", "path to the resource".into()));
            params.push(PROXY_PATH_QUERY.param());
            with_path.push(PROXY_PATH_QUERY.param());
            vec![
                PathItem {
                    path: path.clone(),
                    doc: doc.to_string(),
                    params,
                    operations: methods
                        .into_iter()
                        .map(|m| connect_op(ctx, m, "Proxy", gvk.clone(), "proxy"))
                        .collect(),
                },
                PathItem {
                    path: format!("{path}/{{path}}"),
                    doc: doc.to_string(),
                    params: with_path,
                    operations: methods
                        .into_iter()
                        .map(|m| connect_op(ctx, m, "ProxyWithPath", gvk.clone(), "proxy"))
                        .collect(),
                },
            ]
        }
    }
}

fn connect_op(ctx: &Ctx, method: &'static str, suffix: &str, gvk: Gvk, what: &str) -> Operation {
    let mut op = ctx.op(
        method,
        "connect",
        suffix,
        format!(
            "connect {} requests to {what} of {}",
            method.to_uppercase(),
            ctx.r.kind
        ),
        "connect",
        Some(gvk),
        Vec::new(),
        None,
        ANY.to_vec(),
        ANY,
        vec![
            Response {
                code: "200",
                description: "OK",
                body: Some(Body::String),
            },
            unauthorized(),
        ],
    );
    op.id = format!(
        "connect{}{}{}{}{suffix}",
        ctx.gv,
        capitalize(method),
        ctx.scope,
        ctx.r.kind
    );
    op
}

/// "a Pod", "an Ingress".
fn article(kind: &str) -> String {
    let vowel = kind.starts_with(['A', 'E', 'I', 'O', 'U']);
    format!("{} {kind}", if vowel { "an" } else { "a" })
}

/// The discovery endpoints: `/api/`, `/apis/`, `/apis/<group>/`, `/<gv>/`.
pub(crate) fn discovery_paths(group_versions: &[(String, String)]) -> Vec<PathItem> {
    let get = |id: String, description: &str, schema: &str, tag: String| Operation {
        method: "get",
        id,
        description: description.to_string(),
        action: "",
        gvk: None,
        params: Vec::new(),
        body: None,
        consumes: JSON_YAML.to_vec(),
        produces: JSON_YAML.to_vec(),
        responses: vec![ok(schema), unauthorized()],
        tag,
    };
    let mut out = vec![
        PathItem {
            path: "/api/".into(),
            doc: "api".into(),
            params: Vec::new(),
            operations: vec![get(
                "getCoreAPIVersions".into(),
                "get available API versions",
                API_VERSIONS,
                "core".into(),
            )],
        },
        PathItem {
            path: "/apis/".into(),
            doc: "apis".into(),
            params: Vec::new(),
            operations: vec![get(
                "getAPIVersions".into(),
                "get available API versions",
                API_GROUP_LIST,
                "apis".into(),
            )],
        },
    ];
    let mut groups: Vec<&str> = group_versions
        .iter()
        .map(|(g, _)| g.as_str())
        .filter(|g| !g.is_empty())
        .collect();
    groups.sort();
    groups.dedup();
    for group in groups {
        let tag = group.trim_end_matches(".k8s.io").replace(['.', '-'], "_");
        let id = format!("get{}APIGroup", gv_id(group, ""));
        out.push(PathItem {
            path: format!("/apis/{group}/"),
            doc: format!("apis/{group}"),
            params: Vec::new(),
            operations: vec![get(id, "get information of a group", API_GROUP, tag)],
        });
    }
    for (group, version) in group_versions {
        let key = doc_key(group, version);
        out.push(PathItem {
            path: format!("/{key}/"),
            doc: key,
            params: Vec::new(),
            operations: vec![get(
                format!("get{}APIResources", gv_id(group, version)),
                "get available resources",
                API_RESOURCE_LIST,
                tag(group, version),
            )],
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_id_parts() {
        assert_eq!(gv_id("", "v1"), "CoreV1");
        assert_eq!(gv_id("apps", "v1"), "AppsV1");
        assert_eq!(
            gv_id("rbac.authorization.k8s.io", "v1"),
            "RbacAuthorizationV1"
        );
        assert_eq!(
            gv_id("flowcontrol.apiserver.k8s.io", "v1beta3"),
            "FlowcontrolApiserverV1beta3"
        );
        assert_eq!(tag("", "v1"), "core_v1");
        assert_eq!(tag("networking.k8s.io", "v1"), "networking_v1");
        assert_eq!(article("Ingress"), "an Ingress");
    }
}
