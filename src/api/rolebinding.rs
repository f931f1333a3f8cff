//! RoleBinding (`rolebindings.kube-org.io`): one role for one member in one scope.
//! Not to be confused with `k8s_openapi::api::rbac::v1::RoleBinding`, which kube-org
//! creates from these.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::condition::Condition;
use super::fields::{Email, Rfc3339, dns_label_schema};
use super::scope::{Access, Scope};

/// Grants a member one role in one scope of the organization.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "kube-org.io",
    version = "v1alpha1",
    kind = "RoleBinding",
    namespaced,
    shortname = "orgrb",
    category = "kube-org",
    status = "RoleBindingStatus",
    doc = "Grants a member of the organization one role in one scope: the organization, all resources of a type, or named resources.",
    printcolumn(name = "Member", type_ = "string", json_path = ".spec.member"),
    printcolumn(name = "Role", type_ = "string", json_path = ".spec.role"),
    printcolumn(name = "Scope", type_ = "string", json_path = ".status.scope"),
    printcolumn(
        name = "Access",
        type_ = "string",
        json_path = ".spec.access",
        priority = 1
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    // A string, not a date: kubectl shows a date as an age, and a future one as `<invalid>`.
    printcolumn(name = "Expires", type_ = "string", json_path = ".spec.expiresAt"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct RoleBindingSpec {
    /// The member's email address.
    pub member: Email,

    /// The role's name in the catalog (`kubectl org roles`) or a custom role of the
    /// Organization.
    #[schemars(schema_with = "dns_label_schema")]
    pub role: String,

    /// Where the role applies: `organization: {}`, `{resourceType, all: true}` or
    /// `{resourceType, resources: [names]}`.
    pub scope: Scope,

    /// `full` (default): the role inside each resource in scope. `console`: sees the
    /// organization and its resources, holds no role inside them.
    #[serde(default)]
    pub access: Access,

    /// When the role ends, in RFC 3339 (`2026-12-31T00:00:00Z`): from that second on the
    /// binding grants nothing and says `Ready=False, Expired`. Move it later to grant
    /// again; leave it out for a role that does not end. Ignored on the bindings
    /// kube-org makes for the Organization's `spec.owners`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Rfc3339>,
}

/// What kube-org observed of a role binding.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoleBindingStatus {
    /// `Ready` and specific conditions, each with a reason and a message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,

    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// The scope in short form: `organization`, `deployment/*`, `deployment/a,b`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,

    /// The resource namespaces bound now.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,

    /// Targets that could not be bound, each with the reason; the others are bound.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["resource".into()]))]
    pub problems: Vec<TargetProblem>,

    /// When the binding expired (its `spec.expiresAt`), while it is expired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expired_at: Option<Time>,
}

/// A resource in scope that could not be bound.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct TargetProblem {
    /// The resource (namespace) name.
    pub resource: String,
    /// Why, in CamelCase, e.g. `ResourceNotFound`.
    pub reason: String,
    /// What is wrong and what to do, for a person.
    pub message: String,
}

/// On a RoleBinding in kube-org's cache only (never written): a digest of
/// `status.resources`, which the cache drops ([`super::cached_list`]).
const CACHED_RESOURCES_DIGEST: &str = "kube-org.io/cached-resources-digest";

impl RoleBinding {
    /// Replaces `status.resources` by its digest (what kube-org's cache keeps).
    pub fn compact_status(&mut self) {
        let resources = self.status.as_mut().map(|s| &mut s.resources);
        super::cached_list::compact(&mut self.metadata, CACHED_RESOURCES_DIGEST, resources);
    }

    /// Whether the status already is `desired` with `resources` as its
    /// `status.resources` (`desired.resources` is not read: a status pass compares
    /// without copying every list), whether the object came from the cache or not.
    pub fn has_status(&self, desired: &RoleBindingStatus, resources: &[String]) -> bool {
        let Some(current) = self.status.as_ref() else {
            return false;
        };
        // Destructured so that a new field cannot be forgotten here.
        let RoleBindingStatus {
            conditions,
            observed_generation,
            scope,
            resources: _,
            problems,
            expired_at,
        } = desired;
        *conditions == current.conditions
            && *observed_generation == current.observed_generation
            && *scope == current.scope
            && *problems == current.problems
            && *expired_at == current.expired_at
            && super::cached_list::same(
                &self.metadata,
                CACHED_RESOURCES_DIGEST,
                &current.resources,
                resources,
            )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::scope::Scope;

    fn binding(resources: &[&str]) -> RoleBinding {
        let mut rb = RoleBinding::new(
            "bob-viewer",
            RoleBindingSpec {
                member: Email("bob@example.com".into()),
                role: "viewer".into(),
                scope: serde_json::from_value::<Scope>(
                    serde_json::json!({"resourceType": "deployment", "all": true}),
                )
                .expect("a scope"),
                access: Access::Full,
                expires_at: None,
            },
        );
        rb.status = Some(RoleBindingStatus {
            scope: Some("deployment/*".into()),
            resources: resources.iter().map(|r| r.to_string()).collect(),
            ..Default::default()
        });
        rb
    }

    #[test]
    fn the_cache_keeps_a_digest_of_resources_that_still_tells_changes_apart() {
        let full = binding(&["dev", "prod"]);
        let mut cached = full.clone();
        cached.compact_status();
        assert!(cached.status.as_ref().unwrap().resources.is_empty());
        let same = full.status.clone().unwrap();
        let resources = same.resources.clone();
        assert!(full.has_status(&same, &resources));
        assert!(
            cached.has_status(&same, &resources),
            "compacting loses no equality"
        );
        assert!(!cached.has_status(&same, &resources[..1]));
        let mut other_scope = same.clone();
        other_scope.scope = Some("deployment/prod".into());
        assert!(!cached.has_status(&other_scope, &resources));
        let mut none = full.clone();
        none.status = None;
        none.compact_status();
        assert!(none.metadata.annotations.is_none());
        assert!(!none.has_status(&same, &resources));
    }
}
