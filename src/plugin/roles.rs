//! `kubectl org roles`: the built-in catalog and, for one organization, its own roles:
//! custom roles, and overrides that remap a catalog role to another ClusterRole.

use serde::Serialize;

use crate::api::Organization;
use crate::api::organization::{CustomRole, RoleLevel};
use crate::catalog::{self, CatalogRole};

use super::cli::RolesArgs;
use super::cluster::{OrgContext, client};
use super::error::PluginError;
use super::output::{Table, joined, show};

/// Where a role comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum RoleSource {
    /// The built-in catalog.
    Builtin,
    /// The built-in catalog, replaced in this organization by an override.
    Overridden,
    /// The organization's `spec.roles`, under the name of a catalog role.
    Override,
    /// The organization's `spec.roles`, a name of its own.
    Custom,
}

impl RoleSource {
    fn label(self) -> &'static str {
        match self {
            RoleSource::Builtin => "builtin",
            RoleSource::Overridden => "builtin (overridden)",
            RoleSource::Override => "override",
            RoleSource::Custom => "custom",
        }
    }
}

/// One role as `-o yaml|json` prints it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RoleView {
    pub name: String,
    pub level: RoleLevel,
    /// The resource types it can be bound to; empty for organization-level roles, and
    /// for resource roles that fit every type.
    pub resource_types: Vec<String>,
    /// The ClusterRole granted inside each resource in scope; none for roles that grant
    /// nothing inside resources.
    pub cluster_role: Option<String>,
    pub source: RoleSource,
    pub description: String,
}

impl RoleView {
    fn builtin(role: &CatalogRole, source: RoleSource) -> Self {
        RoleView {
            name: role.name.to_string(),
            level: role.level,
            resource_types: role.resource_types.iter().map(|t| t.to_string()).collect(),
            cluster_role: role.cluster_role.map(str::to_string),
            source,
            description: role.description.to_string(),
        }
    }

    fn custom(role: &CustomRole) -> Self {
        let source = if catalog::named(&role.name).next().is_some() {
            RoleSource::Override
        } else {
            RoleSource::Custom
        };
        RoleView {
            name: role.name.clone(),
            level: role.level,
            resource_types: role.resource_types.iter().map(|t| t.0.clone()).collect(),
            cluster_role: role.cluster_role.clone(),
            source,
            description: role.description.clone().unwrap_or_default(),
        }
    }
}

/// Whether two type lists meet (an empty list is every type).
fn types_meet(a: &[String], b: &[String]) -> bool {
    a.is_empty() || b.is_empty() || a.iter().any(|t| b.contains(t))
}

/// The roles to show: the whole catalog; or, for an organization, its own roles first,
/// then the catalog roles its resource types can use, those it overrides marked so.
pub fn roles(org: Option<&Organization>) -> Vec<RoleView> {
    let Some(org) = org else {
        return catalog::BUILTIN
            .iter()
            .map(|r| RoleView::builtin(r, RoleSource::Builtin))
            .collect();
    };
    let uses: Vec<String> = org
        .spec
        .resource_types
        .iter()
        .map(|t| t.0.clone())
        .collect();
    let own: Vec<RoleView> = org.spec.roles.iter().map(RoleView::custom).collect();
    let builtin = catalog::BUILTIN
        .iter()
        .map(|r| RoleView::builtin(r, RoleSource::Builtin))
        .filter(|r| r.level == RoleLevel::Organization || types_meet(&r.resource_types, &uses))
        .map(|mut r| {
            let overridden = own.iter().any(|o| {
                o.name == r.name
                    && o.level == r.level
                    && types_meet(&o.resource_types, &r.resource_types)
            });
            if overridden {
                r.source = RoleSource::Overridden;
            }
            r
        });
    own.iter().cloned().chain(builtin).collect()
}

/// The roles table.
pub fn roles_table(roles: &[RoleView]) -> Table {
    let mut table = Table::new(&[
        "NAME",
        "LEVEL",
        "RESOURCE TYPES",
        "CLUSTERROLE",
        "SOURCE",
        "DESCRIPTION",
    ]);
    for role in roles {
        let (level, types) = match role.level {
            RoleLevel::Organization => ("organization", "-".to_string()),
            RoleLevel::Resource if role.resource_types.is_empty() => ("resource", "any".into()),
            RoleLevel::Resource => ("resource", joined(&role.resource_types, ",")),
        };
        table.row(vec![
            role.name.clone(),
            level.to_string(),
            types,
            role.cluster_role.clone().unwrap_or_else(|| "-".to_string()),
            role.source.label().to_string(),
            role.description.clone(),
        ]);
    }
    table
}

/// `kubectl org roles [--org ORG]`: needs the cluster only with `--org`.
pub async fn list(kube: &super::cli::KubeArgs, args: &RolesArgs) -> Result<(), PluginError> {
    let ctx = match &args.org {
        Some(org) => Some(OrgContext::load(client(kube).await?, org).await?),
        None => None,
    };
    let views = roles(ctx.as_ref().map(|c| &c.organization));
    show(
        args.output.format,
        &views,
        &roles_table(&views),
        "No roles.",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acme() -> Organization {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "kube-org.io/v1alpha1", "kind": "Organization",
            "metadata": {"name": "acme"},
            "spec": {
                "owners": ["alice@example.com"],
                "resourceTypes": ["deployment"],
                "roles": [
                    {"name": "auditor", "clusterRole": "kube-org:auditor", "description": "Reads audit logs."},
                    {"name": "viewer", "resourceTypes": ["deployment"], "clusterRole": "acme-view"},
                ],
            },
        }))
        .expect("an organization")
    }

    fn find<'a>(roles: &'a [RoleView], name: &str, source: RoleSource) -> Option<&'a RoleView> {
        roles.iter().find(|r| r.name == name && r.source == source)
    }

    #[test]
    fn the_catalog_is_shown_whole_without_an_organization() {
        let all = roles(None);
        assert_eq!(all.len(), catalog::BUILTIN.len());
        let analyst = find(&all, "tier-1-analyst", RoleSource::Builtin).expect("a security role");
        assert_eq!(analyst.resource_types, ["security"]);
        assert_eq!(analyst.cluster_role.as_deref(), Some("view"));
        let billing = find(&all, "billing-admin", RoleSource::Builtin).expect("billing-admin");
        assert_eq!(billing.cluster_role, None);
    }

    #[test]
    fn an_organization_adds_its_roles_and_marks_overrides() {
        let org = acme();
        let shown = roles(Some(&org));
        assert_eq!(shown[0].name, "auditor");
        assert_eq!(shown[0].source, RoleSource::Custom);
        assert_eq!(shown[0].cluster_role.as_deref(), Some("kube-org:auditor"));
        let viewer = find(&shown, "viewer", RoleSource::Override).expect("the override");
        assert_eq!(viewer.cluster_role.as_deref(), Some("acme-view"));
        let replaced: Vec<_> = shown
            .iter()
            .filter(|r| r.source == RoleSource::Overridden)
            .map(|r| (r.name.as_str(), r.resource_types.clone()))
            .collect();
        assert_eq!(replaced, [("viewer", vec!["deployment".to_string()])]);
        // Only the types the organization uses, and every organization-level role.
        assert!(find(&shown, "tier-1-analyst", RoleSource::Builtin).is_none());
        assert!(find(&shown, "reader", RoleSource::Builtin).is_some());
        assert!(find(&shown, "organization-owner", RoleSource::Builtin).is_some());
    }

    #[test]
    fn the_table_reads_like_the_catalog() {
        let org = acme();
        let text = roles_table(&roles(Some(&org))).render();
        let mut lines = text.lines();
        let header = lines.next().expect("a header");
        assert!(header.starts_with("NAME "), "{header}");
        assert!(
            header.ends_with("SOURCE                 DESCRIPTION"),
            "{header}"
        );
        let owner = text
            .lines()
            .find(|l| l.starts_with("organization-owner"))
            .expect("organization-owner");
        let cells: Vec<&str> = owner
            .split("   ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect();
        assert_eq!(
            &cells[..5],
            [
                "organization-owner",
                "organization",
                "-",
                "admin",
                "builtin"
            ]
        );
        let reader = text
            .lines()
            .find(|l| l.starts_with("reader"))
            .expect("reader");
        assert!(reader.contains(" any "), "{reader}");
    }
}
