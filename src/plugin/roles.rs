//! `kubectl org roles`: the built-in catalog and, for one organization, its own roles:
//! custom roles, and overrides that replace a catalog role of the same name. What is
//! listed, and where each role is usable, is [`RoleTable::entries`]: the resolver access
//! and invitations use.

use crate::access::roles::{RoleTable, catalog_entries};
use crate::api::Organization;
use crate::api::organization::RoleLevel;

pub use crate::access::roles::{RoleEntry as RoleView, RoleSource};

use super::cli::RolesArgs;
use super::cluster::{OrgContext, client};
use super::error::PluginError;
use super::output::{Table, joined, show};

/// The word the table shows for a source.
fn source_label(source: RoleSource) -> &'static str {
    match source {
        RoleSource::Builtin => "builtin",
        RoleSource::Overridden => "builtin (overridden)",
        RoleSource::Override => "override",
        RoleSource::Custom => "custom",
    }
}

/// The roles to show: the whole catalog; or, for an organization, its own roles first,
/// then the catalog roles its resource types can use, those it replaced marked so.
pub fn roles(org: Option<&Organization>) -> Vec<RoleView> {
    match org {
        Some(org) => RoleTable::new(org).entries(),
        None => catalog_entries(),
    }
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
            source_label(role.source).to_string(),
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
    use crate::catalog;

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

    #[test]
    fn an_organizations_own_viewer_hides_the_catalog_viewer() {
        let org = crate::access::roles::fixtures::organization_viewer();
        let shown = roles(Some(&org));
        let own = find(&shown, "viewer", RoleSource::Override).expect("the organization's");
        assert_eq!(own.level, RoleLevel::Organization);
        assert_eq!(
            own.usable_in.as_deref(),
            Some(&["organization".to_string()][..])
        );
        assert!(find(&shown, "viewer", RoleSource::Builtin).is_none());
        let replaced = find(&shown, "viewer", RoleSource::Overridden).expect("listed as replaced");
        assert_eq!(replaced.usable_in.as_deref(), Some(&[][..]));
        // Nothing named viewer is usable in a resource scope.
        assert!(
            shown
                .iter()
                .filter(|r| r.name == "viewer")
                .flat_map(|r| r.usable_in.iter().flatten())
                .all(|place| place == "organization")
        );
        let table = roles_table(&shown).render();
        assert!(
            table
                .lines()
                .filter(|l| l.starts_with("viewer "))
                .all(|l| !l.contains(" builtin ") || l.contains("builtin (overridden)")),
            "{table}"
        );
    }
}
