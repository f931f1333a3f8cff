//! Unit tests of [`RoleTable`] from YAML fixtures: every refusal reason, the
//! organization's roles replacing catalog roles of the same name, and the listing.

use std::collections::BTreeSet;

use super::*;
use crate::api::rolebinding::RoleBindingSpec;

/// `viewer` is an organization-level role here (it replaces the catalog's resource-level
/// `viewer`); `admin` is remapped for deployments only; `auditor` is a name of its own.
const ORG: &str = r#"
apiVersion: kube-org.io/v1alpha1
kind: Organization
metadata: {name: acme}
spec:
  owners: [alice@example.com]
  resourceTypes: [deployment, elasticsearch]
  roles:
    - {name: viewer, level: organization, clusterRole: acme-org-viewer, description: Reads the organization's reports.}
    - {name: admin, resourceTypes: [deployment], clusterRole: acme-admin}
    - {name: auditor, clusterRole: kube-org-auditor, description: Reads audit logs.}
    - {name: deployer, resourceTypes: [deployment], clusterRole: not-bindable}
"#;

fn org() -> Organization {
    serde_yaml::from_str(ORG).expect("org fixture")
}

fn assignment(yaml: &str) -> RoleAssignment {
    serde_yaml::from_str(yaml).expect("assignment fixture")
}

/// Resolves `yaml` (a `{role, scope}`) in `org`: the ClusterRole and source, or the
/// refusal reason.
fn outcome(table: &RoleTable<'_>, yaml: &str) -> Result<(Option<String>, RoleSource), String> {
    table
        .resolve(&assignment(yaml))
        .map(|r| (r.cluster_role, r.source))
        .map_err(|p| p.reason().to_string())
}

fn ok(
    cluster_role: Option<&str>,
    source: RoleSource,
) -> Result<(Option<String>, RoleSource), String> {
    Ok((cluster_role.map(str::to_string), source))
}

fn refused(reason: &str) -> Result<(Option<String>, RoleSource), String> {
    Err(reason.to_string())
}

#[test]
fn resolves_catalog_and_organization_roles_or_says_why_not() {
    let org = org();
    let unbindable: BTreeSet<String> = ["not-bindable".to_string()].into();
    let table = RoleTable::new(&org).refusing(&unbindable);
    let cases = [
        // The catalog.
        (
            "{role: developer, scope: {resourceType: elasticsearch, all: true}}",
            ok(Some("edit"), RoleSource::Builtin),
        ),
        (
            "{role: reader, scope: {resourceType: deployment, resources: [prod]}}",
            ok(Some("view"), RoleSource::Builtin),
        ),
        (
            "{role: billing-admin, scope: {organization: {}}}",
            ok(None, RoleSource::Builtin),
        ),
        (
            "{role: organization-owner, scope: {organization: {}}}",
            ok(Some("admin"), RoleSource::Builtin),
        ),
        // The organization's own roles.
        (
            "{role: viewer, scope: {organization: {}}}",
            ok(Some("acme-org-viewer"), RoleSource::Override),
        ),
        (
            "{role: admin, scope: {resourceType: deployment, all: true}}",
            ok(Some("acme-admin"), RoleSource::Override),
        ),
        (
            "{role: auditor, scope: {resourceType: elasticsearch, all: true}}",
            ok(Some("kube-org-auditor"), RoleSource::Custom),
        ),
        // UnknownRole.
        (
            "{role: wizard, scope: {organization: {}}}",
            refused("UnknownRole"),
        ),
        (
            "{role: wizard, scope: {resourceType: deployment, all: true}}",
            refused("UnknownRole"),
        ),
        // RoleNotForType: the catalog's, and the override's (the catalog's elasticsearch
        // admin is replaced too).
        (
            "{role: developer, scope: {resourceType: deployment, all: true}}",
            refused("RoleNotForType"),
        ),
        (
            "{role: admin, scope: {resourceType: elasticsearch, all: true}}",
            refused("RoleNotForType"),
        ),
        // NeedsOrganizationScope: the catalog's, and the override case: the
        // organization's viewer is organization-level, the catalog viewer is gone.
        (
            "{role: billing-admin, scope: {resourceType: deployment, all: true}}",
            refused("NeedsOrganizationScope"),
        ),
        (
            "{role: viewer, scope: {resourceType: deployment, all: true}}",
            refused("NeedsOrganizationScope"),
        ),
        (
            "{role: viewer, scope: {resourceType: elasticsearch, resources: [search]}}",
            refused("NeedsOrganizationScope"),
        ),
        // NeedsResourceScope.
        (
            "{role: developer, scope: {organization: {}}}",
            refused("NeedsResourceScope"),
        ),
        (
            "{role: auditor, scope: {organization: {}}}",
            refused("NeedsResourceScope"),
        ),
        // UnknownResourceType, before anything else about the role.
        (
            "{role: reader, scope: {resourceType: security, all: true}}",
            refused("UnknownResourceType"),
        ),
        (
            "{role: wizard, scope: {resourceType: security, all: true}}",
            refused("UnknownResourceType"),
        ),
        // ClusterRoleNotBindable.
        (
            "{role: deployer, scope: {resourceType: deployment, all: true}}",
            refused("ClusterRoleNotBindable"),
        ),
        // InvalidScope (admission bypassed).
        (
            "{role: reader, scope: {resourceType: deployment}}",
            refused("InvalidScope"),
        ),
    ];
    for (yaml, expected) in cases {
        assert_eq!(outcome(&table, yaml), expected, "{yaml}");
    }
    // Without the refusal, the same role binds.
    assert_eq!(
        outcome(
            &RoleTable::new(&org),
            "{role: deployer, scope: {resourceType: deployment, all: true}}"
        ),
        ok(Some("not-bindable"), RoleSource::Custom)
    );
}

#[test]
fn a_resolved_role_carries_its_scope_and_description() {
    let org = org();
    let table = RoleTable::new(&org);
    let viewer = table
        .resolve(&assignment("{role: viewer, scope: {organization: {}}}"))
        .expect("the organization's viewer");
    assert_eq!(viewer.level, RoleLevel::Organization);
    assert_eq!(viewer.target, ScopeTarget::Organization);
    assert_eq!(viewer.description, "Reads the organization's reports.");
    assert!(viewer.is_custom());

    // An override without a description says what it grants, not the catalog's words.
    let admin = table
        .resolve(&assignment(
            "{role: admin, scope: {resourceType: deployment, resources: [prod, dev]}}",
        ))
        .expect("the organization's admin");
    assert_eq!(
        admin.target,
        ScopeTarget::Named("deployment".into(), vec!["dev".into(), "prod".into()])
    );
    assert!(
        admin.description.contains("`acme-admin` ClusterRole"),
        "{admin:?}"
    );

    let developer = table
        .resolve(&assignment(
            "{role: developer, scope: {resourceType: elasticsearch, all: true}}",
        ))
        .expect("the catalog's developer");
    assert_eq!(
        developer.description,
        catalog::named("developer").next().unwrap().description
    );
    assert!(!developer.is_custom());
}

#[test]
fn a_rolebinding_spec_resolves_like_an_invitation_role() {
    let org = org();
    let table = RoleTable::new(&org);
    let spec: RoleBindingSpec = serde_yaml::from_str(
        "{member: bob@example.com, role: viewer, scope: {resourceType: deployment, all: true}}",
    )
    .expect("spec fixture");
    let offered = assignment("{role: viewer, scope: {resourceType: deployment, all: true}}");
    assert_eq!(
        table.resolve(&spec),
        Err(RoleProblem::NeedsOrganizationScope("viewer".into()))
    );
    assert_eq!(table.resolve(&spec), table.resolve(&offered));
}

fn usable<'a>(entries: &'a [RoleEntry], name: &str, source: RoleSource) -> Vec<&'a [String]> {
    entries
        .iter()
        .filter(|e| e.name == name && e.source == source)
        .map(|e| e.usable_in.as_deref().expect("listed for an organization"))
        .collect()
}

#[test]
fn entries_say_where_each_role_is_usable() {
    let org = org();
    let entries = RoleTable::new(&org).entries();
    let none: &[String] = &[];
    // The organization's own roles come first, in its order.
    let own: Vec<&str> = entries[..4].iter().map(|e| e.name.as_str()).collect();
    assert_eq!(own, ["viewer", "admin", "auditor", "deployer"]);
    assert_eq!(
        usable(&entries, "viewer", RoleSource::Override),
        [["organization".to_string()]]
    );
    // The override case: no catalog viewer is usable anywhere.
    let catalog_viewers = usable(&entries, "viewer", RoleSource::Overridden);
    assert_eq!(
        catalog_viewers,
        [none, none],
        "deployment and elasticsearch"
    );
    assert!(usable(&entries, "viewer", RoleSource::Builtin).is_empty());
    assert_eq!(
        usable(&entries, "admin", RoleSource::Override),
        [["deployment".to_string()]]
    );
    assert_eq!(
        usable(&entries, "admin", RoleSource::Overridden),
        [none, none]
    );
    assert_eq!(
        usable(&entries, "auditor", RoleSource::Custom),
        [["deployment".to_string(), "elasticsearch".to_string()]]
    );
    assert_eq!(
        usable(&entries, "developer", RoleSource::Builtin),
        [["elasticsearch".to_string()]]
    );
    assert_eq!(
        usable(&entries, "billing-admin", RoleSource::Builtin),
        [["organization".to_string()]]
    );
    // Types the organization does not use are not listed.
    assert!(entries.iter().all(|e| e.name != "tier-1-analyst"));
}

#[test]
fn entries_and_resolve_agree() {
    let org = org();
    let table = RoleTable::new(&org);
    for entry in table.entries() {
        for place in entry.usable_in.clone().unwrap_or_default() {
            let scope = if place == USABLE_IN_ORGANIZATION {
                Scope::organization()
            } else {
                Scope::all_of(&place)
            };
            let resolved = table
                .resolve(&RoleAssignment {
                    role: entry.name.clone(),
                    scope,
                    access: Default::default(),
                    expires_after: None,
                })
                .unwrap_or_else(|p| panic!("{} in {place}: {p}", entry.name));
            assert_eq!(resolved.cluster_role, entry.cluster_role, "{}", entry.name);
            assert_eq!(resolved.description, entry.description, "{}", entry.name);
            assert_eq!(resolved.source, entry.source, "{}", entry.name);
        }
    }
}

#[test]
fn the_bare_catalog_lists_every_entry() {
    let entries = catalog_entries();
    assert_eq!(entries.len(), catalog::BUILTIN.len());
    assert!(entries.iter().all(|e| e.source == RoleSource::Builtin));
    assert!(entries.iter().all(|e| e.usable_in.is_none()));
}

/// An organization of every catalog type, without roles of its own.
fn every_type() -> Organization {
    serde_yaml::from_str(
        "{apiVersion: kube-org.io/v1alpha1, kind: Organization, metadata: {name: plain}, spec: {owners: [alice@example.com], resourceTypes: [deployment, elasticsearch, observability, security, connected-cluster, custom-type]}}",
    )
    .expect("org fixture")
}

#[test]
fn the_catalog_entry_for_the_type_wins_and_presets_fit_any_type() {
    let org = every_type();
    let table = RoleTable::new(&org);
    let builtin = |cluster_role| ok(cluster_role, RoleSource::Builtin);
    let cases = [
        (
            "{role: admin, scope: {resourceType: elasticsearch, all: true}}",
            builtin(Some("admin")),
        ),
        (
            "{role: viewer, scope: {resourceType: connected-cluster, all: true}}",
            builtin(Some("view")),
        ),
        (
            "{role: editor, scope: {resourceType: deployment, all: true}}",
            builtin(Some("edit")),
        ),
        (
            "{role: developer, scope: {resourceType: deployment, all: true}}",
            refused("RoleNotForType"),
        ),
        (
            "{role: editor, scope: {resourceType: connected-cluster, all: true}}",
            refused("RoleNotForType"),
        ),
        (
            "{role: reader, scope: {resourceType: custom-type, all: true}}",
            builtin(Some("view")),
        ),
        (
            "{role: owner, scope: {resourceType: deployment, all: true}}",
            builtin(Some("admin")),
        ),
        (
            "{role: billing-admin, scope: {organization: {}}}",
            builtin(None),
        ),
        (
            "{role: organization-owner, scope: {organization: {}}}",
            builtin(Some("admin")),
        ),
        (
            "{role: admin, scope: {organization: {}}}",
            refused("NeedsResourceScope"),
        ),
    ];
    for (yaml, expected) in cases {
        assert_eq!(outcome(&table, yaml), expected, "{yaml}");
    }
}
