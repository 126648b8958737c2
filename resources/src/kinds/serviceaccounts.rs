//! core/v1 ServiceAccount.
//!
//! No rules beyond metadata; the table counts `secrets`. Tokens are minted through
//! the `token` subresource.

use crate::strategy::{name_age_columns, name_age_row, Strategy};
use crate::table::{Column, TableRow};
use crate::{ResourceType, Root, Subresource, Typed};
use serde_json::{json, Value};

pub static RESOURCE: ResourceType = ResourceType {
    group: "",
    version: "v1",
    kind: "ServiceAccount",
    plural: "serviceaccounts",
    singular: "serviceaccount",
    namespaced: true,
    short_names: &["sa"],
    categories: &[],
    subresources: &[Subresource::Token],
    strategy: &ServiceAccounts,
    typed: Some(Typed::of::<k8s_openapi::api::core::v1::ServiceAccount>()),
    merge: Some(Root::ServiceAccount),
};

struct ServiceAccounts;

impl Strategy for ServiceAccounts {
    fn columns(&self) -> Vec<Column> {
        name_age_columns(vec![Column::new(
            "Secrets",
            "string",
            "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use. Pods are only limited to this list if this service account has a \"kubernetes.io/enforce-mountable-secrets\" annotation set to \"true\". The \"kubernetes.io/enforce-mountable-secrets\" annotation is deprecated since v1.32. Prefer separate namespaces to isolate access to mounted secrets. This field should not be used to find auto-generated service account token secrets for use outside of pods. Instead, tokens can be requested directly using the TokenRequest API, or service account token secrets can be manually created. More info: https://kubernetes.io/docs/concepts/configuration/secret",
        )])
    }

    fn row(&self, obj: &Value) -> TableRow {
        let count = obj
            .get("secrets")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        name_age_row(obj, vec![json!(count)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_counts_secrets() {
        let sa = json!({"metadata": {"name": "default"}, "secrets": [{"name": "a"}]});
        let row = RESOURCE.strategy.row(&sa);
        assert_eq!(row[0], "default");
        assert_eq!(row[1], 1);
        assert_eq!(RESOURCE.strategy.row(&json!({}))[1], 0);
        assert!(RESOURCE.has(Subresource::Token));
        assert!(!RESOURCE.strategy.tracks_generation());
    }
}
