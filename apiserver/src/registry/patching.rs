//! PATCH in its four content types, and managedFields bookkeeping for every write.

use super::{fields, metadata, Registry, WriteOptions, Written};
use keelson_apimachinery::patch::{json_patch, merge_patch, strategic};
use keelson_apimachinery::{apply, meta, ApiError, Cause};
use keelson_resources::{ResourceType, Subresource};
use serde_json::{json, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    Json,
    Merge,
    Strategic,
    Apply,
}

impl PatchType {
    pub fn from_content_type(ct: &str) -> Result<Self, ApiError> {
        let base = ct.split(';').next().unwrap_or("").trim();
        match base {
            "application/json-patch+json" => Ok(PatchType::Json),
            "application/merge-patch+json" => Ok(PatchType::Merge),
            "application/strategic-merge-patch+json" => Ok(PatchType::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+json" | "application/apply-patch+cbor" => Ok(PatchType::Apply),
            _ => Err(ApiError::new(
                415,
                "UnsupportedMediaType",
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json",
            )),
        }
    }
}

/// The field manager of a write: the client's, or one derived from its User-Agent.
pub fn manager(opts: &WriteOptions) -> String {
    if !opts.field_manager.is_empty() {
        opts.field_manager.clone()
    } else {
        apply::default_manager(&opts.user_agent)
    }
}

/// Record in `new`'s managedFields the fields this (non-apply) write changed.
pub fn track_fields(
    rt: &ResourceType,
    old: Option<&Value>,
    new: &mut Value,
    opts: &WriteOptions,
    subresource: &str,
) {
    let now = metadata::now_rfc3339();
    let ignore_status = rt.has(Subresource::Status) && subresource.is_empty();
    apply::track_update_in_place(
        old,
        new,
        &manager(opts),
        subresource,
        rt.merge_schema(),
        &rt.api_version(),
        ignore_status,
        &now,
    );
}

fn parse_body(ptype: PatchType, body: &[u8]) -> Result<Value, ApiError> {
    let parsed: Result<Value, String> = match ptype {
        PatchType::Apply => serde_yaml::from_slice::<Value>(body).map_err(|e| e.to_string()),
        _ => serde_json::from_slice(body).map_err(|e| e.to_string()),
    };
    parsed.map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))
}

impl Registry {
    #[allow(clippy::too_many_arguments)]
    pub async fn patch(
        &self,
        rt: &'static ResourceType,
        ns: &str,
        name: &str,
        subresource: &str,
        ptype: PatchType,
        body: &[u8],
        opts: &WriteOptions,
    ) -> Result<Written, ApiError> {
        super::options::validate_field_manager("PatchOptions", &opts.field_manager)?;
        let patch = parse_body(ptype, body)?;
        if ptype == PatchType::Strategic && rt.merge.is_none() {
            return Err(ApiError::new(
                415,
                "UnsupportedMediaType",
                format!(
                    "strategic merge patch is not supported for {}",
                    rt.group_resource()
                ),
            ));
        }
        if ptype == PatchType::Apply {
            if opts.field_manager.is_empty() {
                return Err(ApiError::invalid(
                    rt.group,
                    rt.kind,
                    name,
                    vec![Cause::required("fieldManager")],
                ));
            }
            if !patch.is_object() {
                return Err(ApiError::bad_request("apply patch must be an object"));
            }
        }
        if ptype == PatchType::Apply && subresource.is_empty() {
            // Apply can create; only into a live namespace.
            self.admit_namespace_if_new(rt, ns, name).await?;
            self.priorities.prepare(&self.storage, rt, &patch).await;
        }
        let mut warnings = Vec::new();
        let mut w = self
            .admitted_update(rt, ns, name, opts, Some(subresource), |old| {
                warnings.clear();
                self.patched(
                    rt,
                    ns,
                    name,
                    subresource,
                    ptype,
                    &patch,
                    old,
                    opts,
                    &mut warnings,
                )
            })
            .await?;
        w.warnings.splice(0..0, warnings);
        Ok(w)
    }

    #[allow(clippy::too_many_arguments)]
    fn patched(
        &self,
        rt: &'static ResourceType,
        ns: &str,
        name: &str,
        subresource: &str,
        ptype: PatchType,
        patch: &Value,
        old: Option<&Value>,
        opts: &WriteOptions,
        warnings: &mut Vec<String>,
    ) -> Result<Value, ApiError> {
        if ptype == PatchType::Apply {
            let mut applied = patch.clone();
            metadata::check_type(rt, &mut applied)?;
            metadata::check_namespace(rt, &mut applied, ns)?;
            let applied_name = meta::name(&applied);
            if applied_name.is_empty() {
                meta::metadata_mut(&mut applied).insert("name".into(), json!(name));
            } else if applied_name != name {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({applied_name}) does not match the name on the URL ({name})"
                )));
            }
            warnings.extend(fields::check_unknown(
                rt,
                &mut applied,
                opts.field_validation,
            )?);
            let ignore_status = rt.has(Subresource::Status) && subresource.is_empty();
            let now = metadata::now_rfc3339();
            let merged = match (old, subresource) {
                (Some(live), "status") => apply::apply_to_subresource(
                    live,
                    &applied,
                    &opts.field_manager,
                    "status",
                    opts.force,
                    rt.group,
                    rt.kind,
                    rt.merge_schema(),
                    &now,
                )?,
                (None, "status") => return Err(ApiError::not_found(rt.group, rt.plural, name)),
                _ => apply::apply(
                    old,
                    &applied,
                    &opts.field_manager,
                    opts.force,
                    rt.group,
                    rt.kind,
                    rt.merge_schema(),
                    ignore_status,
                    &now,
                )?,
            };
            return match old {
                None => {
                    let mut obj = merged;
                    self.priorities.admit_create(rt, &mut obj, name)?;
                    metadata::prepare_create(rt, &mut obj)?;
                    rt.strategy.prepare_for_create(&mut obj);
                    self.admit(rt, &mut obj, None)?;
                    Ok(obj)
                }
                Some(old) => {
                    // Managed fields were computed by apply; keep them through update.
                    let mut wo = opts.clone();
                    wo.field_manager = opts.field_manager.clone();
                    let new = self.apply_update_keep_managed(rt, old, merged, subresource, &wo)?;
                    Ok(new)
                }
            };
        }
        let Some(old) = old else {
            return Err(ApiError::not_found(rt.group, rt.plural, name));
        };
        let mut new = match ptype {
            PatchType::Json => json_patch::apply(old, patch)?,
            PatchType::Merge => merge_patch::apply(old, patch),
            PatchType::Strategic => strategic::apply(old, patch, rt.merge)?,
            PatchType::Apply => unreachable!("handled above"),
        };
        metadata::check_type(rt, &mut new)?;
        metadata::check_namespace(rt, &mut new, ns)?;
        if meta::name(&new) != name {
            return Err(ApiError::invalid(
                rt.group,
                rt.kind,
                name,
                vec![Cause::immutable("metadata.name", &json!(meta::name(&new)))],
            ));
        }
        warnings.extend(fields::check_unknown(rt, &mut new, opts.field_validation)?);
        // A patch may carry a resourceVersion precondition.
        let precondition = meta::resource_version(&new).to_string();
        let precondition = if precondition == meta::resource_version(old) {
            String::new()
        } else {
            precondition
        };
        self.apply_update(rt, Some(old), new, &precondition, subresource, opts)
    }

    /// An update whose managedFields were already computed (server-side apply).
    fn apply_update_keep_managed(
        &self,
        rt: &ResourceType,
        old: &Value,
        new: Value,
        subresource: &str,
        opts: &WriteOptions,
    ) -> Result<Value, ApiError> {
        let managed = new.pointer("/metadata/managedFields").cloned();
        let mut out = self.apply_update(rt, Some(old), new, "", subresource, opts)?;
        if let Some(mf) = managed {
            meta::metadata_mut(&mut out).insert("managedFields".into(), mf);
        }
        Ok(out)
    }
}
