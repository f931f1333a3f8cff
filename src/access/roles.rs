//! The one role resolver: what a role name means in one organization, where it may be
//! bound and what it grants. Access ([`super::desired`]), invitations (their check and
//! their email) and the `kubectl org` plugin (`invite`, `roles`) all ask [`RoleTable`];
//! none of them decides on its own.
//!
//! # An organization's role replaces the catalog role of that name entirely
//!
//! A role is defined either by the built-in catalog ([`crate::catalog`]) or by the
//! Organization's `spec.roles`. When `spec.roles` has a role named N, that role is the
//! only meaning of N in the organization: no catalog entry named N is consulted, for any
//! scope or resource type. Its level, resource types, ClusterRole and description are the
//! organization's. So an organization-level `viewer` is refused in resource scopes
//! (`NeedsOrganizationScope`, the catalog `viewer` is gone), and an override of `viewer`
//! for `[deployment]` only leaves `viewer` unusable in other types (`RoleNotForType`): to
//! keep a role in every type, leave its `resourceTypes` empty. A role the organization
//! defines without a description is described by what it grants, never by the catalog
//! text of the role it replaced.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::api::organization::{CustomRole, RoleLevel};
use crate::api::rolebinding::RoleBindingSpec;
use crate::api::scope::ScopeTarget;
use crate::api::{Organization, RoleAssignment, Scope};
use crate::catalog::{self, CatalogRole};

/// A role asked for somewhere: the `{role, scope}` of a RoleBinding or of a role an
/// Invitation offers.
pub trait Assignment {
    fn role(&self) -> &str;
    fn scope(&self) -> &Scope;
}

impl Assignment for RoleAssignment {
    fn role(&self) -> &str {
        &self.role
    }
    fn scope(&self) -> &Scope {
        &self.scope
    }
}

impl Assignment for RoleBindingSpec {
    fn role(&self) -> &str {
        &self.role
    }
    fn scope(&self) -> &Scope {
        &self.scope
    }
}

/// Where a role comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum RoleSource {
    /// The built-in catalog.
    Builtin,
    /// The built-in catalog, replaced in this organization by a role of the same name
    /// (listed, never resolved to).
    Overridden,
    /// The organization's `spec.roles`, under the name of a catalog role.
    Override,
    /// The organization's `spec.roles`, a name of its own.
    Custom,
}

/// A role as it applies in one organization, for one assignment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedRole {
    pub name: String,
    pub level: RoleLevel,
    /// Where it applies: the assignment's scope, resolved.
    pub target: ScopeTarget,
    /// The ClusterRole bound inside resources in scope (resource level), or in the home
    /// namespace (custom organization-level roles).
    pub cluster_role: Option<String>,
    /// What the role lets a person do (the organization's words for its own roles).
    pub description: String,
    /// `Builtin`, `Override` or `Custom`; never `Overridden`.
    pub source: RoleSource,
}

impl ResolvedRole {
    /// Whether the role comes from the Organization's `spec.roles`.
    pub fn is_custom(&self) -> bool {
        self.source != RoleSource::Builtin
    }
}

/// Why a role name cannot be used where it was asked for.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RoleProblem {
    #[error(
        "role {0:?} is neither in the catalog (kubectl org roles) nor in the organization's spec.roles"
    )]
    UnknownRole(String),
    #[error("role {role:?} does not apply to resources of type {resource_type:?}")]
    RoleNotForType { role: String, resource_type: String },
    #[error("role {0:?} is an organization-level role; use the scope organization: {{}}")]
    NeedsOrganizationScope(String),
    #[error("role {0:?} applies inside resources; scope it to a resourceType")]
    NeedsResourceScope(String),
    #[error("resource type {0:?} is not in the organization's spec.resourceTypes")]
    UnknownResourceType(String),
    #[error(
        "kube-org may not bind ClusterRole {cluster_role:?} (role {role:?}); a cluster admin grants it with a ClusterRole labelled kube-org.io/aggregate-to-operator=true allowing bind on it (see manifests/rbac.yaml)"
    )]
    ClusterRoleNotBindable { role: String, cluster_role: String },
    #[error(
        "role {0:?}: scope must be exactly one of organization: {{}}, {{resourceType, all: true}} or {{resourceType, resources: [...]}}"
    )]
    InvalidScope(String),
}

impl RoleProblem {
    /// The CamelCase reason shown in conditions.
    pub fn reason(&self) -> &'static str {
        match self {
            RoleProblem::UnknownRole(_) => "UnknownRole",
            RoleProblem::RoleNotForType { .. } => "RoleNotForType",
            RoleProblem::NeedsOrganizationScope(_) => "NeedsOrganizationScope",
            RoleProblem::NeedsResourceScope(_) => "NeedsResourceScope",
            RoleProblem::UnknownResourceType(_) => "UnknownResourceType",
            RoleProblem::ClusterRoleNotBindable { .. } => "ClusterRoleNotBindable",
            RoleProblem::InvalidScope(_) => "InvalidScope",
        }
    }
}

/// One role as `kubectl org roles` lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RoleEntry {
    pub name: String,
    pub level: RoleLevel,
    /// The resource types it is defined for; empty for organization-level roles, and
    /// for resource roles that fit every type.
    pub resource_types: Vec<String>,
    /// The ClusterRole granted inside each resource in scope; none for roles that grant
    /// nothing inside resources.
    pub cluster_role: Option<String>,
    pub source: RoleSource,
    pub description: String,
    /// Where the organization can bind it, as [`RoleTable::resolve`] decides:
    /// `organization`, or the resource types of `spec.resourceTypes` in which the name
    /// resolves to this very role. Empty when it can be bound nowhere (a catalog role the
    /// organization replaced, a type it does not use). Absent for the bare catalog.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usable_in: Option<Vec<String>>,
}

/// The scope word of [`RoleEntry::usable_in`] for the organization itself.
pub const USABLE_IN_ORGANIZATION: &str = "organization";

/// The whole built-in catalog, as listed without an organization.
pub fn catalog_entries() -> Vec<RoleEntry> {
    catalog::BUILTIN
        .iter()
        .map(|role| Definition::Catalog(role).entry(RoleSource::Builtin, None))
        .collect()
}

/// One definition of a role: a catalog entry or a role of the organization. Equal
/// definitions are the same one (no two catalog entries share a name and a type).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Definition<'a> {
    Catalog(&'static CatalogRole),
    Organization(&'a CustomRole),
}

impl Definition<'_> {
    fn name(&self) -> &str {
        match self {
            Definition::Catalog(role) => role.name,
            Definition::Organization(role) => &role.name,
        }
    }

    fn level(&self) -> RoleLevel {
        match self {
            Definition::Catalog(role) => role.level,
            Definition::Organization(role) => role.level,
        }
    }

    fn cluster_role(&self) -> Option<&str> {
        match self {
            Definition::Catalog(role) => role.cluster_role,
            Definition::Organization(role) => role.cluster_role.as_deref(),
        }
    }

    fn resource_types(&self) -> Vec<&str> {
        match self {
            Definition::Catalog(role) => role.resource_types.to_vec(),
            Definition::Organization(role) => {
                role.resource_types.iter().map(|t| t.0.as_str()).collect()
            }
        }
    }

    /// Whether it names `resource_type` itself (not through an empty list).
    fn lists(&self, resource_type: &str) -> bool {
        match self {
            Definition::Catalog(role) => role.resource_types.contains(&resource_type),
            Definition::Organization(role) => {
                role.resource_types.iter().any(|t| t.0 == resource_type)
            }
        }
    }

    /// Whether it fits every type (an empty list).
    fn fits_any_type(&self) -> bool {
        match self {
            Definition::Catalog(role) => role.resource_types.is_empty(),
            Definition::Organization(role) => role.resource_types.is_empty(),
        }
    }

    fn description(&self) -> String {
        match self {
            Definition::Catalog(role) => role.description.to_string(),
            Definition::Organization(role) => role
                .description
                .clone()
                .filter(|d| !d.trim().is_empty())
                .unwrap_or_else(|| granted(role.level, role.cluster_role.as_deref())),
        }
    }

    fn source(&self) -> RoleSource {
        match self {
            Definition::Catalog(_) => RoleSource::Builtin,
            Definition::Organization(role) if catalog::named(&role.name).next().is_some() => {
                RoleSource::Override
            }
            Definition::Organization(_) => RoleSource::Custom,
        }
    }

    fn entry(&self, source: RoleSource, usable_in: Option<Vec<String>>) -> RoleEntry {
        RoleEntry {
            name: self.name().to_string(),
            level: self.level(),
            resource_types: self
                .resource_types()
                .into_iter()
                .map(str::to_string)
                .collect(),
            cluster_role: self.cluster_role().map(str::to_string),
            source,
            description: self.description(),
            usable_in,
        }
    }
}

/// The description of an organization's role that has none: what it grants.
fn granted(level: RoleLevel, cluster_role: Option<&str>) -> String {
    match (level, cluster_role) {
        (RoleLevel::Resource, Some(cluster_role)) => format!(
            "Defined by the organization: the `{cluster_role}` ClusterRole in each resource in scope."
        ),
        (RoleLevel::Resource, None) => {
            "Defined by the organization: no ClusterRole inside resources.".to_string()
        }
        (RoleLevel::Organization, Some(cluster_role)) => format!(
            "Defined by the organization: reads the organization and holds the `{cluster_role}` ClusterRole in its home namespace."
        ),
        (RoleLevel::Organization, None) => {
            "Defined by the organization: reads the organization; no ClusterRole inside resources."
                .to_string()
        }
    }
}

/// The roles of one organization: the only place that decides what a role name means.
pub struct RoleTable<'a> {
    org: &'a Organization,
    /// Custom ClusterRoles kube-org is not allowed to bind (it would be refused).
    unbindable: &'a BTreeSet<String>,
}

/// No ClusterRole known to be unbindable.
static NONE_UNBINDABLE: BTreeSet<String> = BTreeSet::new();

impl<'a> RoleTable<'a> {
    pub fn new(org: &'a Organization) -> Self {
        Self {
            org,
            unbindable: &NONE_UNBINDABLE,
        }
    }

    /// The same table, refusing the organization's roles whose ClusterRole is in
    /// `unbindable`.
    pub fn refusing(self, unbindable: &'a BTreeSet<String>) -> Self {
        Self { unbindable, ..self }
    }

    /// What `assignment` means in this organization, or why it cannot be used there.
    /// See the module documentation for how the organization's roles replace the
    /// catalog's.
    pub fn resolve<A: Assignment + ?Sized>(
        &self,
        assignment: &A,
    ) -> Result<ResolvedRole, RoleProblem> {
        let name = assignment.role();
        let target = assignment
            .scope()
            .target()
            .ok_or_else(|| RoleProblem::InvalidScope(name.to_string()))?;
        let definition = self.define(name, &target)?;
        Ok(ResolvedRole {
            name: name.to_string(),
            level: definition.level(),
            target,
            cluster_role: definition.cluster_role().map(str::to_string),
            description: definition.description(),
            source: definition.source(),
        })
    }

    /// Every role the organization can see: its own (`spec.roles`) first, then the
    /// catalog's organization-level roles and its roles for the resource types the
    /// organization uses; each saying where [`Self::resolve`] lets it be bound. Catalog
    /// roles the organization replaced are `Overridden` and usable nowhere.
    pub fn entries(&self) -> Vec<RoleEntry> {
        let own = self.org.spec.roles.iter().map(Definition::Organization);
        let builtin = catalog::BUILTIN
            .iter()
            .map(Definition::Catalog)
            .filter(|d| {
                d.level() == RoleLevel::Organization
                    || d.fits_any_type()
                    || self.org.spec.resource_types.iter().any(|t| d.lists(&t.0))
            });
        own.chain(builtin)
            .map(|definition| {
                let source = match definition {
                    Definition::Catalog(role) if self.own(role.name).is_some() => {
                        RoleSource::Overridden
                    }
                    _ => definition.source(),
                };
                definition.entry(source, Some(self.usable_in(&definition)))
            })
            .collect()
    }

    /// The scopes (the organization, or each type it uses) in which the definition's
    /// name resolves to this very definition.
    fn usable_in(&self, definition: &Definition<'a>) -> Vec<String> {
        let probes: Vec<ScopeTarget> = match definition.level() {
            RoleLevel::Organization => vec![ScopeTarget::Organization],
            RoleLevel::Resource => self
                .org
                .spec
                .resource_types
                .iter()
                .map(|t| ScopeTarget::AllOfType(t.0.clone()))
                .collect(),
        };
        probes
            .into_iter()
            .filter(|probe| {
                self.define(definition.name(), probe)
                    .is_ok_and(|found| found == *definition)
            })
            .map(|probe| match probe {
                ScopeTarget::AllOfType(kind) | ScopeTarget::Named(kind, _) => kind,
                ScopeTarget::Organization => USABLE_IN_ORGANIZATION.to_string(),
            })
            .collect()
    }

    /// The organization's own role named `name` (the first, should a name repeat).
    fn own(&self, name: &str) -> Option<&'a CustomRole> {
        self.org.spec.roles.iter().find(|r| r.name == name)
    }

    fn uses_type(&self, resource_type: &str) -> bool {
        self.org
            .spec
            .resource_types
            .iter()
            .any(|t| t.0 == resource_type)
    }

    /// The definition `name` has for `target`: the organization's role of that name if
    /// there is one, else the catalog's entries of that name (one listing the type wins
    /// over one fitting every type).
    fn define(&self, name: &str, target: &ScopeTarget) -> Result<Definition<'a>, RoleProblem> {
        let candidates: Vec<Definition<'a>> = match self.own(name) {
            Some(own) => vec![Definition::Organization(own)],
            None => catalog::named(name).map(Definition::Catalog).collect(),
        };
        let definition = match target {
            ScopeTarget::Organization => candidates
                .iter()
                .find(|d| d.level() == RoleLevel::Organization)
                .copied()
                .ok_or_else(|| {
                    if candidates.is_empty() {
                        RoleProblem::UnknownRole(name.to_string())
                    } else {
                        RoleProblem::NeedsResourceScope(name.to_string())
                    }
                })?,
            ScopeTarget::AllOfType(kind) | ScopeTarget::Named(kind, _) => {
                if !self.uses_type(kind) {
                    return Err(RoleProblem::UnknownResourceType(kind.clone()));
                }
                let fitting = candidates
                    .iter()
                    .find(|d| d.lists(kind))
                    .or_else(|| candidates.iter().find(|d| d.fits_any_type()));
                match fitting {
                    Some(d) if d.level() == RoleLevel::Resource => *d,
                    Some(_) => return Err(RoleProblem::NeedsOrganizationScope(name.to_string())),
                    None if candidates
                        .iter()
                        .any(|d| d.level() == RoleLevel::Organization) =>
                    {
                        return Err(RoleProblem::NeedsOrganizationScope(name.to_string()));
                    }
                    None if candidates.is_empty() => {
                        return Err(RoleProblem::UnknownRole(name.to_string()));
                    }
                    None => {
                        return Err(RoleProblem::RoleNotForType {
                            role: name.to_string(),
                            resource_type: kind.clone(),
                        });
                    }
                }
            }
        };
        self.bindable(&definition)?;
        Ok(definition)
    }

    /// Refuses an organization's role whose ClusterRole kube-org may not bind.
    fn bindable(&self, definition: &Definition<'_>) -> Result<(), RoleProblem> {
        match definition {
            Definition::Organization(role) => match &role.cluster_role {
                Some(cluster_role) if self.unbindable.contains(cluster_role) => {
                    Err(RoleProblem::ClusterRoleNotBindable {
                        role: role.name.clone(),
                        cluster_role: cluster_role.clone(),
                    })
                }
                _ => Ok(()),
            },
            Definition::Catalog(_) => Ok(()),
        }
    }
}

#[cfg(test)]
#[path = "roles_tests.rs"]
mod tests;

/// The fixture every caller's test of the resolver shares.
#[cfg(test)]
pub mod fixtures {
    use crate::api::Organization;

    /// The description of [`organization_viewer`]'s own `viewer`.
    pub const VIEWER_DESCRIPTION: &str = "Reads the organization's invoices and reports.";

    /// Organization `acme` (home `org-acme`, type `deployment`) whose own `viewer` is an
    /// organization-level role: it replaces the catalog's resource-level `viewer`, which
    /// no caller may then accept in a resource scope.
    pub fn organization_viewer() -> Organization {
        serde_yaml::from_str(&format!(
            r#"
apiVersion: kube-org.io/v1alpha1
kind: Organization
metadata: {{name: acme, uid: 0b4c3b0e-0000-4000-8000-000000000002}}
spec:
  owners: [alice@example.com]
  resourceTypes: [deployment]
  roles:
    - {{name: viewer, level: organization, clusterRole: acme-org-viewer, description: "{VIEWER_DESCRIPTION}"}}
"#
        ))
        .expect("organization fixture")
    }
}
