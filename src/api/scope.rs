//! Where a role applies (scope) and how much it grants (access): shared by
//! RoleBindings and by the roles an Invitation offers.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use super::fields::{GoDuration, dns_label_schema};

/// Where a role applies. Exactly one shape:
/// `organization: {}`; `{resourceType, all: true}` (every resource of the type, now and
/// later); or `{resourceType, resources: [names]}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("has(self.organization) != has(self.resourceType)").message("scope must be exactly one of: organization: {}, or a resourceType with all: true or with a list of resources"),
    validation = Rule::new("!has(self.organization) || (!has(self.all) && !has(self.resources))").message("an organization scope takes no 'all' or 'resources'; use resourceType to scope to resources"),
    validation = Rule::new("!has(self.resourceType) || ((has(self.all) && self.all) != (has(self.resources) && size(self.resources) > 0))").message("a resourceType scope needs exactly one of all: true or a non-empty list of resources")
)]
pub struct Scope {
    /// The whole organization. Write `organization: {}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization: Option<OrganizationScope>,

    /// The resource type the role applies to, e.g. `deployment`, `elasticsearch`,
    /// `observability`, `security`, `connected-cluster`, or a type the Organization
    /// declares in `spec.resourceTypes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "dns_label_schema")]
    pub resource_type: Option<String>,

    /// Every resource of `resourceType`, including resources labelled into the
    /// organization later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub all: Option<bool>,

    /// Named resources of `resourceType`: the names of their namespaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub resources: Option<Vec<ResourceName>>,
}

/// The marker for an organization-wide scope (an empty object).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct OrganizationScope {}

/// The name of a resource namespace.
#[derive(
    Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(transparent)]
#[schemars(transparent)]
pub struct ResourceName(#[schemars(schema_with = "dns_label_schema")] pub String);

/// The resolved meaning of a [`Scope`], once admission has guaranteed its shape.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ScopeTarget {
    Organization,
    AllOfType(String),
    Named(String, Vec<String>),
}

impl Scope {
    /// The organization-wide scope.
    pub fn organization() -> Self {
        Scope {
            organization: Some(OrganizationScope {}),
            ..Default::default()
        }
    }

    /// Every resource of a type.
    pub fn all_of(resource_type: &str) -> Self {
        Scope {
            resource_type: Some(resource_type.to_string()),
            all: Some(true),
            ..Default::default()
        }
    }

    /// Named resources of a type.
    pub fn named(resource_type: &str, names: &[&str]) -> Self {
        Scope {
            resource_type: Some(resource_type.to_string()),
            resources: Some(names.iter().map(|n| ResourceName(n.to_string())).collect()),
            ..Default::default()
        }
    }

    /// Resolves the scope, or `None` when its shape is impossible (only reachable when
    /// admission validation was bypassed, e.g. an older CRD).
    pub fn target(&self) -> Option<ScopeTarget> {
        match (
            &self.organization,
            &self.resource_type,
            self.all,
            &self.resources,
        ) {
            (Some(_), None, None, None) => Some(ScopeTarget::Organization),
            (None, Some(kind), Some(true), None) => Some(ScopeTarget::AllOfType(kind.clone())),
            (None, Some(kind), None | Some(false), Some(names)) if !names.is_empty() => {
                let mut names: Vec<String> = names.iter().map(|n| n.0.clone()).collect();
                names.sort();
                names.dedup();
                Some(ScopeTarget::Named(kind.clone(), names))
            }
            _ => None,
        }
    }

    /// A short human summary for status and `kubectl get`: `organization`,
    /// `deployment/*`, `deployment/prod,staging`.
    pub fn summary(&self) -> String {
        match self.target() {
            Some(ScopeTarget::Organization) => "organization".to_string(),
            Some(ScopeTarget::AllOfType(kind)) => format!("{kind}/*"),
            Some(ScopeTarget::Named(kind, names)) => format!("{kind}/{}", names.join(",")),
            None => "invalid".to_string(),
        }
    }
}

/// How much a role grants inside resources.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum Access {
    /// The role's ClusterRole inside each resource in scope (the console and the
    /// resources themselves).
    #[default]
    Full,
    /// Console only: the member sees the organization and which resources exist, and
    /// holds no role inside them.
    Console,
}

/// One role offered or granted: a catalog or custom role, where it applies and how much
/// it grants.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoleAssignment {
    /// The role's name in the catalog (`kubectl org roles`) or a custom role of the
    /// Organization, e.g. `viewer`, `editor`, `admin`, `organization-owner`.
    #[schemars(schema_with = "dns_label_schema")]
    pub role: String,

    /// Where the role applies.
    pub scope: Scope,

    /// `full` (default): the role inside each resource in scope. `console`: sees the
    /// organization and its resources, holds no role inside them.
    #[serde(default)]
    pub access: Access,

    /// In an Invitation: how long the role lasts once accepted, e.g. `8h` or `720h`
    /// (at most a year). The RoleBinding created on acceptance gets `spec.expiresAt` =
    /// `acceptedAt` + this. Not allowed in `spec.membership.groups`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_after: Option<GoDuration>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_resolve_and_summarise() {
        assert_eq!(Scope::organization().summary(), "organization");
        assert_eq!(Scope::all_of("deployment").summary(), "deployment/*");
        assert_eq!(
            Scope::named("deployment", &["b", "a", "b"]).summary(),
            "deployment/a,b"
        );
        let both = Scope {
            all: Some(true),
            ..Scope::named("deployment", &["a"])
        };
        assert_eq!(both.target(), None);
        assert_eq!(Scope::default().target(), None);
    }
}
