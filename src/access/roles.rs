//! Resolving a role name for one organization: the built-in catalog, overridden or
//! extended by the Organization's `spec.roles`.

use std::collections::BTreeSet;

use crate::api::Organization;
use crate::api::organization::RoleLevel;
use crate::catalog;

/// A role as it applies in one organization.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedRole {
    pub name: String,
    pub level: RoleLevel,
    /// The ClusterRole bound inside resources in scope (resource level), or in the home
    /// namespace (custom organization-level roles).
    pub cluster_role: Option<String>,
    /// Whether the role comes from the Organization's `spec.roles`.
    pub custom: bool,
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
        }
    }
}

/// The roles of one organization.
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

    /// The same table, refusing custom roles whose ClusterRole is in `unbindable`.
    pub fn refusing(self, unbindable: &'a BTreeSet<String>) -> Self {
        Self { unbindable, ..self }
    }

    /// A custom role, unless kube-org may not bind its ClusterRole.
    fn custom(
        &self,
        name: &str,
        level: RoleLevel,
        cluster_role: &Option<String>,
    ) -> Result<ResolvedRole, RoleProblem> {
        if let Some(cluster_role) = cluster_role
            .as_ref()
            .filter(|c| self.unbindable.contains(*c))
        {
            return Err(RoleProblem::ClusterRoleNotBindable {
                role: name.to_string(),
                cluster_role: cluster_role.clone(),
            });
        }
        Ok(ResolvedRole {
            name: name.to_string(),
            level,
            cluster_role: cluster_role.clone(),
            custom: true,
        })
    }

    fn uses_type(&self, resource_type: &str) -> bool {
        self.org
            .spec
            .resource_types
            .iter()
            .any(|t| t.0 == resource_type)
    }

    /// The organization-level role `name`.
    pub fn organization_role(&self, name: &str) -> Result<ResolvedRole, RoleProblem> {
        if let Some(custom) = self.org.spec.roles.iter().find(|r| r.name == name) {
            return match custom.level {
                RoleLevel::Organization => {
                    self.custom(name, RoleLevel::Organization, &custom.cluster_role)
                }
                RoleLevel::Resource => Err(RoleProblem::NeedsResourceScope(name.to_string())),
            };
        }
        match catalog::organization_role(name) {
            Some(role) => Ok(ResolvedRole {
                name: name.to_string(),
                level: RoleLevel::Organization,
                cluster_role: role.cluster_role.map(str::to_string),
                custom: false,
            }),
            None if catalog::named(name).next().is_some() => {
                Err(RoleProblem::NeedsResourceScope(name.to_string()))
            }
            None => Err(RoleProblem::UnknownRole(name.to_string())),
        }
    }

    /// The resource-level role `name` for resources of `resource_type`.
    pub fn resource_role(
        &self,
        name: &str,
        resource_type: &str,
    ) -> Result<ResolvedRole, RoleProblem> {
        if !self.uses_type(resource_type) {
            return Err(RoleProblem::UnknownResourceType(resource_type.to_string()));
        }
        let customs: Vec<_> = self
            .org
            .spec
            .roles
            .iter()
            .filter(|r| r.name == name)
            .collect();
        if let Some(custom) = customs.iter().find(|r| {
            r.resource_types.is_empty() || r.resource_types.iter().any(|t| t.0 == resource_type)
        }) {
            return match custom.level {
                RoleLevel::Resource => self.custom(name, RoleLevel::Resource, &custom.cluster_role),
                RoleLevel::Organization => {
                    Err(RoleProblem::NeedsOrganizationScope(name.to_string()))
                }
            };
        }
        if let Some(role) = catalog::lookup(name, resource_type) {
            return match role.level {
                RoleLevel::Resource => Ok(ResolvedRole {
                    name: name.to_string(),
                    level: RoleLevel::Resource,
                    cluster_role: role.cluster_role.map(str::to_string),
                    custom: false,
                }),
                RoleLevel::Organization => {
                    Err(RoleProblem::NeedsOrganizationScope(name.to_string()))
                }
            };
        }
        if catalog::organization_role(name).is_some() {
            Err(RoleProblem::NeedsOrganizationScope(name.to_string()))
        } else if !customs.is_empty() || catalog::named(name).next().is_some() {
            Err(RoleProblem::RoleNotForType {
                role: name.to_string(),
                resource_type: resource_type.to_string(),
            })
        } else {
            Err(RoleProblem::UnknownRole(name.to_string()))
        }
    }
}
