//! List with label and field selectors, `limit`/`continue` and `remainingItemCount`.

use super::{collection_prefix, storage_error, ListOptions, Registry};
use crate::storage::StorageError;
use base64::Engine;
use keelson_apimachinery::selector::{FieldSelector, LabelSelector};
use keelson_apimachinery::{meta, ApiError};
use keelson_resources::ResourceType;
use serde_json::{json, Value};

/// Which objects of a collection a list or watch wants.
pub struct Filter {
    rt: &'static ResourceType,
    namespace: String,
    labels: Option<LabelSelector>,
    fields: Option<FieldSelector>,
}

impl Filter {
    pub fn new(
        rt: &'static ResourceType,
        namespace: &str,
        opts: &ListOptions,
    ) -> Result<Self, ApiError> {
        let labels = if opts.label_selector.trim().is_empty() {
            None
        } else {
            Some(LabelSelector::parse(&opts.label_selector)?)
        };
        // Only an absent selector is no selector: " " is a term Kubernetes cannot read.
        let fields = if opts.field_selector.is_empty() {
            None
        } else {
            let fs = FieldSelector::parse(&opts.field_selector)?;
            let allowed = rt.strategy.selectable_field_names();
            for f in fs.requirements().iter().map(|r| r.field.as_str()) {
                if f != "metadata.name" && f != "metadata.namespace" && !allowed.contains(&f) {
                    return Err(ApiError::bad_request(format!(
                        "\"{f}\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
                    )));
                }
            }
            Some(fs)
        };
        Ok(Filter {
            rt,
            namespace: namespace.to_string(),
            labels,
            fields,
        })
    }

    pub fn is_everything(&self) -> bool {
        self.labels.is_none() && self.fields.is_none()
    }

    pub fn matches(&self, obj: &Value) -> bool {
        if self.rt.namespaced
            && !self.namespace.is_empty()
            && meta::namespace(obj) != self.namespace
        {
            return false;
        }
        if let Some(ls) = &self.labels {
            if !ls.matches(&meta::labels(obj)) {
                return false;
            }
        }
        if let Some(fs) = &self.fields {
            let extra = self.rt.strategy.selectable_fields(obj);
            let get = |f: &str| -> Option<String> {
                match f {
                    "metadata.name" => Some(meta::name(obj).to_string()),
                    "metadata.namespace" => Some(meta::namespace(obj).to_string()),
                    _ => extra.iter().find(|(n, _)| *n == f).map(|(_, v)| v.clone()),
                }
            };
            if !fs.matches(get) {
                return false;
            }
        }
        true
    }
}

/// One page of a list.
#[derive(Debug)]
pub struct ListResult {
    pub items: Vec<Value>,
    pub resource_version: i64,
    pub continue_token: Option<String>,
    pub remaining: Option<i64>,
}

fn encode_token(rv: i64, start: &str) -> String {
    let raw = json!({"v": "meta.k8s.io/v1", "rv": rv, "start": start}).to_string();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

/// `storage.DecodeContinue`, with its checks and words: 400 `invalid continue token: ...`.
/// A token's resourceVersion below zero asks for the latest revision (Kubernetes hands
/// such tokens out with a 410 for an expired one); zero is refused.
fn decode_token(token: &str) -> Result<(i64, String), ApiError> {
    const INVALID: &str = "continue key is not valid";
    let bad = |detail: String| ApiError::bad_request(format!("invalid continue token: {detail}"));
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .map_err(|e| bad(format!("{INVALID}: {e}")))?;
    let v: Value = serde_json::from_slice(&raw).map_err(|e| bad(format!("{INVALID}: {e}")))?;
    let version = v.get("v").and_then(Value::as_str).unwrap_or_default();
    if version != "meta.k8s.io/v1" {
        return Err(bad(format!(
            "{INVALID}: server does not recognize this encoded version {version}"
        )));
    }
    let rv = match v.get("rv") {
        None | Some(Value::Null) => 0,
        Some(rv) => rv
            .as_i64()
            .ok_or_else(|| bad(format!("{INVALID}: rv: {rv} is not an int64")))?,
    };
    if rv == 0 {
        return Err(bad(format!(
            "{INVALID}: incorrect encoded start resourceVersion (version meta.k8s.io/v1)"
        )));
    }
    let start = v.get("start").and_then(Value::as_str).unwrap_or_default();
    if start.is_empty() {
        return Err(bad(format!(
            "{INVALID}: encoded start key empty (version meta.k8s.io/v1)"
        )));
    }
    // Path traversal: the key, rooted, must already be clean (Go's path.Clean).
    let rooted = if start.starts_with('/') {
        start.to_string()
    } else {
        format!("/{start}")
    };
    if !is_clean_path(&rooted) {
        return Err(bad(format!("{INVALID}: {start}")));
    }
    Ok((rv.max(0), rooted[1..].to_string()))
}

/// Whether Go's `path.Clean` leaves a rooted path unchanged: no empty, `.` or `..`
/// segments and no trailing slash (but `/` itself).
fn is_clean_path(p: &str) -> bool {
    if p == "/" {
        return true;
    }
    p.split('/')
        .skip(1)
        .all(|seg| !seg.is_empty() && seg != "." && seg != "..")
}

const TOO_OLD_CONTINUE: &str = "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.";

impl Registry {
    pub async fn list(
        &self,
        rt: &'static ResourceType,
        ns: &str,
        opts: &ListOptions,
    ) -> Result<ListResult, ApiError> {
        opts.validate(false)?;
        let filter = Filter::new(rt, ns, opts)?;
        let prefix = collection_prefix(rt, ns);
        let (mut start, mut revision) = if !opts.continue_token.is_empty() {
            let (rv, start) = decode_token(&opts.continue_token)?;
            if !opts.resource_version.is_empty() && opts.resource_version != "0" {
                return Err(ApiError::bad_request(
                    "specifying resource version is not allowed when using continue",
                ));
            }
            (format!("{prefix}{start}"), rv)
        } else {
            let rv = super::options::parse_resource_version(&opts.resource_version)?;
            let rv = match opts.resource_version_match.as_str() {
                "Exact" => rv,
                "" | "NotOlderThan" => 0,
                other => {
                    return Err(ApiError::bad_request(format!(
                        "resourceVersionMatch: Unsupported value: {other:?}: supported values: \"Exact\", \"NotOlderThan\""
                    )))
                }
            };
            (String::new(), rv)
        };
        let limit = opts.limit.max(0);
        let filter = std::sync::Arc::new(filter);
        let mut items = Vec::new();
        loop {
            let want = if limit == 0 {
                0
            } else if filter.is_everything() {
                // Saturating: `limit` is the client's, up to i64::MAX.
                limit.saturating_sub(items.len() as i64).saturating_add(1)
            } else {
                limit.saturating_mul(2).max(200)
            };
            let page = self
                .storage
                .list(&prefix, &start, want, revision)
                .await
                .map_err(|e| match e {
                    StorageError::Compacted { .. } if !opts.continue_token.is_empty() => {
                        ApiError::gone(TOO_OLD_CONTINUE)
                    }
                    StorageError::Compacted { .. } => {
                        ApiError::gone(format!("too old resource version: {revision}"))
                    }
                    e => storage_error(e, rt, ""),
                })?;
            // The first read pins the revision; a continued or Exact list stays at the
            // one it asked for (etcd's header carries the store's current revision).
            if revision == 0 {
                revision = page.revision;
            }
            let n = page.kvs.len();
            let last_key = page.kvs.last().map(|kv| kv.key.clone());
            let remaining = page.remaining;
            let f = filter.clone();
            let (decoded, full_at) =
                crate::offload::run(n, move || decode_page(rt, &f, &page.kvs, items, limit))
                    .await?;
            items = decoded;
            if let Some(i) = full_at {
                // Full page and more keys exist: hand out a continue token.
                let last = meta_key(&items, rt, &prefix);
                let remaining = filter.is_everything().then_some((n - i) as i64 + remaining);
                return Ok(ListResult {
                    items,
                    resource_version: revision,
                    continue_token: Some(encode_token(revision, &format!("{last}\u{0}"))),
                    remaining,
                });
            }
            match last_key {
                Some(key) if limit != 0 && remaining != 0 => start = format!("{key}\u{0}"),
                _ => break,
            }
        }
        Ok(ListResult {
            items,
            resource_version: revision,
            continue_token: None,
            remaining: None,
        })
    }
}

/// Decode the page's objects and keep those `filter` wants, after `items`, until there
/// are `limit` (0: no limit). Also says at which of `kvs` the page filled, when it did
/// with keys left over.
fn decode_page(
    rt: &ResourceType,
    filter: &Filter,
    kvs: &[crate::storage::Kv],
    mut items: Vec<Value>,
    limit: i64,
) -> Result<(Vec<Value>, Option<usize>), ApiError> {
    for (i, kv) in kvs.iter().enumerate() {
        if limit > 0 && items.len() as i64 == limit {
            return Ok((items, Some(i)));
        }
        let obj = super::decode_as(rt, kv)?;
        if filter.matches(&obj) {
            items.push(obj);
        }
    }
    Ok((items, None))
}

/// The key of the last item relative to the collection prefix.
fn meta_key(items: &[Value], rt: &ResourceType, prefix: &str) -> String {
    let last = items.last().expect("a full page has items");
    let full = super::key(rt, meta::namespace(last), meta::name(last));
    full.strip_prefix(prefix).unwrap_or(&full).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_tokens_round_trip_and_reject_garbage() {
        let t = encode_token(42, "default/web\u{0}");
        assert_eq!(
            decode_token(&t).unwrap(),
            (42, "default/web\u{0}".to_string())
        );
        assert_eq!(decode_token("not-a-token").unwrap_err().code, 400);
        let token = |raw: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
        let evil = token(r#"{"v":"meta.k8s.io/v1","rv":1,"start":"../secrets"}"#);
        assert_eq!(decode_token(&evil).unwrap_err().code, 400);
    }

    #[test]
    fn continue_tokens_are_checked_like_kubernetes() {
        let token = |raw: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
        let err = |raw: &str| {
            let e = decode_token(&token(raw)).unwrap_err();
            assert_eq!((e.code, e.reason.as_str()), (400, "BadRequest"), "{raw}");
            e.message
        };
        assert_eq!(
            err(r#"{"v":"meta.k8s.io/v1","rv":0,"start":"a"}"#),
            "invalid continue token: continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)"
        );
        assert_eq!(
            err(r#"{"v":"meta.k8s.io/v1","rv":3,"start":""}"#),
            "invalid continue token: continue key is not valid: encoded start key empty (version meta.k8s.io/v1)"
        );
        assert_eq!(
            err(r#"{"v":"meta.k8s.io/v2","rv":3,"start":"a"}"#),
            "invalid continue token: continue key is not valid: server does not recognize this encoded version meta.k8s.io/v2"
        );
        for start in ["a//b", "a/./b", "a/../../b", "a/"] {
            let raw = format!(r#"{{"v":"meta.k8s.io/v1","rv":3,"start":"{start}"}}"#);
            assert_eq!(
                err(&raw),
                format!("invalid continue token: continue key is not valid: {start}")
            );
        }
        assert!(err(r#"{"v":"meta.k8s.io/v1","rv":"x","start":"a"}"#)
            .starts_with("invalid continue token: continue key is not valid"));
        // Below zero: the latest revision (0 to the storage layer).
        assert_eq!(
            decode_token(&token(
                r#"{"v":"meta.k8s.io/v1","rv":-1,"start":"default/web\u0000"}"#
            ))
            .unwrap(),
            (0, "default/web\u{0}".to_string())
        );
        // A rooted start key is the same key.
        assert_eq!(
            decode_token(&token(
                r#"{"v":"meta.k8s.io/v1","rv":9,"start":"/default/web"}"#
            ))
            .unwrap(),
            (9, "default/web".to_string())
        );
    }
}
