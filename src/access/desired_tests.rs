//! Unit tests of [`desired_access`] from YAML fixtures: no cluster involved.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::jiff::Timestamp;

use super::desired::{AccessInput, DesiredAccess, desired_access};
use super::identity::IdentityDefaults;
use super::policy::PolicyRefusal;
use crate::api::{Membership, Organization, RoleBinding};

const ORG: &str = r#"
apiVersion: kube-org.io/v1alpha1
kind: Organization
metadata: {name: acme, uid: 0b4c3b0e-0000-4000-8000-000000000001}
spec:
  owners: [alice@example.com]
  resourceTypes: [deployment, elasticsearch]
  roles:
    - {name: auditor, level: resource, clusterRole: kube-org-auditor}
"#;

fn org() -> Organization {
    serde_yaml::from_str(ORG).expect("org fixture")
}

fn member(name: &str, email: &str) -> Membership {
    serde_yaml::from_str(&format!(
        "{{apiVersion: kube-org.io/v1alpha1, kind: Membership, metadata: {{name: {name}, namespace: org-acme}}, spec: {{email: {email}}}}}"
    ))
    .expect("membership fixture")
}

fn binding(name: &str, yaml_spec: &str) -> RoleBinding {
    serde_yaml::from_str(&format!(
        "{{apiVersion: kube-org.io/v1alpha1, kind: RoleBinding, metadata: {{name: {name}, namespace: org-acme}}, spec: {yaml_spec}}}"
    ))
    .expect("binding fixture")
}

fn resource(name: &str, kind: &str) -> Namespace {
    serde_yaml::from_str(&format!(
        "{{metadata: {{name: {name}, labels: {{kube-org.io/organization: acme, kube-org.io/resource-type: {kind}}}}}}}"
    ))
    .expect("namespace fixture")
}

struct World {
    org: Organization,
    members: Vec<Membership>,
    bindings: Vec<RoleBinding>,
    namespaces: Vec<Namespace>,
    unbindable: BTreeSet<String>,
    refused: BTreeMap<String, PolicyRefusal>,
    identity: IdentityDefaults,
    now: Timestamp,
}

impl World {
    fn new() -> Self {
        World {
            org: org(),
            members: vec![
                member("bob", "bob@example.com"),
                member("carol", "Carol@Example.com"),
            ],
            bindings: vec![],
            namespaces: vec![
                resource("prod", "deployment"),
                resource("staging", "deployment"),
                resource("search", "elasticsearch"),
            ],
            unbindable: BTreeSet::new(),
            refused: BTreeMap::new(),
            identity: IdentityDefaults::default(),
            now: at("2026-12-05T12:00:00Z"),
        }
    }

    /// The same world at another time.
    fn at(mut self, now: &str) -> Self {
        self.now = at(now);
        self
    }

    /// kube-org may not bind `cluster_role`.
    fn unbindable(mut self, cluster_role: &str) -> Self {
        self.unbindable.insert(cluster_role.to_string());
        self
    }

    fn bind(mut self, name: &str, spec: &str) -> Self {
        self.bindings.push(binding(name, spec));
        self
    }

    fn compute(&self) -> DesiredAccess {
        desired_access(&AccessInput {
            org: &self.org,
            memberships: self.members.iter().collect(),
            bindings: self.bindings.iter().collect(),
            namespaces: self.namespaces.iter().collect(),
            unbindable: &self.unbindable,
            refused: &self.refused,
            kept: &Default::default(),
            identity: &self.identity,
            now: self.now,
        })
    }
}

/// (namespace, ClusterRole) pairs a user holds.
fn held(access: &DesiredAccess, user: &str) -> Vec<(String, String)> {
    access
        .role_bindings
        .iter()
        .filter(|rb| rb.grants(user))
        .map(|rb| {
            (
                rb.metadata.namespace.clone().unwrap(),
                rb.cluster_role.clone(),
            )
        })
        .collect()
}

/// The subjects of the visibility ClusterRoleBinding: (kind, name).
fn visible(access: &DesiredAccess) -> Vec<(&str, &str)> {
    access
        .cluster_role_binding
        .subjects
        .iter()
        .flatten()
        .map(|s| (s.kind.as_str(), s.name.as_str()))
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn all_scope_binds_every_resource_of_the_type_including_later_ones() {
    let mut world = World::new().bind(
        "b",
        "{member: bob@example.com, role: editor, scope: {resourceType: deployment, all: true}}",
    );
    assert_eq!(
        held(&world.compute(), "bob@example.com"),
        pairs(&[("prod", "edit"), ("staging", "edit")])
    );
    world.namespaces.push(resource("canary", "deployment"));
    assert_eq!(
        held(&world.compute(), "bob@example.com"),
        pairs(&[("canary", "edit"), ("prod", "edit"), ("staging", "edit")])
    );
}

#[test]
fn grants_to_all_resources_of_a_type_are_one_shared_set_merged_with_named_ones() {
    let access = World::new()
        .bind(
            "b-all",
            "{member: bob@example.com, role: editor, scope: {resourceType: deployment, all: true}}",
        )
        .bind(
            "c-all",
            "{member: carol@example.com, role: viewer, scope: {resourceType: deployment, all: true}}",
        )
        .bind(
            "c-prod",
            "{member: carol@example.com, role: editor, scope: {resourceType: deployment, resources: [prod]}}",
        )
        .bind(
            "b-prod",
            "{member: bob@example.com, role: editor, scope: {resourceType: deployment, resources: [prod]}}",
        )
        .compute();
    let subjects = |ns: &str, role: &str| -> Vec<String> {
        let rb = access
            .role_bindings
            .iter()
            .find(|rb| rb.metadata.namespace.as_deref() == Some(ns) && rb.cluster_role == role)
            .expect("a binding");
        rb.object()
            .subjects
            .unwrap_or_default()
            .into_iter()
            .map(|s| s.name)
            .collect()
    };
    // bob holds edit in prod twice over (all deployments, and prod by name): one subject.
    assert_eq!(
        subjects("prod", "edit"),
        ["bob@example.com", "carol@example.com"]
    );
    assert_eq!(subjects("staging", "edit"), ["bob@example.com"]);
    // The statuses of both all-deployment bindings share one list of namespaces.
    let (b, c) = (&access.bindings["b-all"], &access.bindings["c-all"]);
    assert_eq!(*b.resources, ["prod", "staging"]);
    assert!(std::sync::Arc::ptr_eq(&b.resources, &c.resources));
}

#[test]
fn roles_combine_as_a_union_in_one_binding_per_namespace_and_cluster_role() {
    let access = World::new()
        .bind("a", "{member: bob@example.com, role: viewer, scope: {resourceType: deployment, all: true}}")
        .bind("b", "{member: bob@example.com, role: admin, scope: {resourceType: deployment, resources: [prod]}}")
        .bind("c", "{member: carol@example.com, role: viewer, scope: {resourceType: deployment, all: true}}")
        .compute();
    assert_eq!(
        held(&access, "bob@example.com"),
        pairs(&[("prod", "admin"), ("prod", "view"), ("staging", "view")])
    );
    let prod_view = access
        .role_bindings
        .iter()
        .find(|rb| rb.metadata.namespace.as_deref() == Some("prod") && rb.cluster_role == "view")
        .unwrap()
        .object();
    let subjects: Vec<&str> = prod_view
        .subjects
        .iter()
        .flatten()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(
        subjects,
        ["bob@example.com", "carol@example.com"],
        "aggregated and sorted; emails lower-cased"
    );
    assert_eq!(
        prod_view.metadata.name.as_deref(),
        Some("kube-org:acme:view")
    );
    let bob = &access.members["bob"];
    assert_eq!(bob.roles.len(), 2);
    assert_eq!(
        access
            .access_of(&bob.user)
            .iter()
            .find(|a| a.namespace == "prod")
            .unwrap()
            .cluster_roles,
        ["admin", "view"]
    );
}

#[test]
fn a_missing_named_resource_does_not_stop_the_others() {
    let access = World::new()
        .bind("b", "{member: bob@example.com, role: viewer, scope: {resourceType: deployment, resources: [prod, gone, search]}}")
        .compute();
    assert_eq!(held(&access, "bob@example.com"), pairs(&[("prod", "view")]));
    let outcome = &access.bindings["b"];
    assert_eq!(*outcome.resources, ["prod"]);
    let reasons: Vec<(&str, &str)> = outcome
        .problems
        .iter()
        .map(|p| (p.resource.as_str(), p.reason.as_str()))
        .collect();
    assert_eq!(
        reasons,
        [
            ("gone", "ResourceNotFound"),
            ("search", "WrongResourceType")
        ]
    );
    assert!(!outcome.ready.status);
    assert_eq!(outcome.ready.reason, "ResourcesMissing");
}

#[test]
fn console_access_grants_nothing_inside_resources_but_shows_the_organization() {
    let access = World::new()
        .bind("b", "{member: bob@example.com, role: admin, scope: {resourceType: deployment, all: true}, access: console}")
        .bind("c", "{member: carol@example.com, role: auditor, scope: {resourceType: deployment, all: true}, access: console}")
        .compute();
    assert!(held(&access, "bob@example.com").is_empty());
    assert!(
        held(&access, "carol@example.com").is_empty(),
        "a custom role with console access is console only"
    );
    assert!(access.bindings["c"].ready.status);
    assert_eq!(
        visible(&access),
        [("User", "bob@example.com"), ("User", "carol@example.com")]
    );
    let rules = access.cluster_role.rules.as_ref().unwrap();
    assert_eq!(
        rules[1].resource_names.as_deref().unwrap(),
        ["org-acme", "prod", "search", "staging"]
    );
}

#[test]
fn a_custom_role_with_full_access_binds_its_cluster_role() {
    let access = World::new()
        .bind("c", "{member: carol@example.com, role: auditor, scope: {resourceType: elasticsearch, all: true}}")
        .compute();
    assert_eq!(
        held(&access, "carol@example.com"),
        pairs(&[("search", "kube-org-auditor")])
    );
}

#[test]
fn a_custom_role_kube_org_may_not_bind_grants_nothing_and_says_how_to_fix_it() {
    let access = World::new()
        .unbindable("kube-org-auditor")
        .bind("c", "{member: carol@example.com, role: auditor, scope: {resourceType: elasticsearch, all: true}}")
        .bind("v", "{member: carol@example.com, role: viewer, scope: {resourceType: deployment, all: true}}")
        .compute();
    // The other binding still works: one unbindable role does not block the rest.
    assert_eq!(
        held(&access, "carol@example.com"),
        pairs(&[("prod", "view"), ("staging", "view")])
    );
    let ready = &access.bindings["c"].ready;
    assert_eq!(ready.reason, "ClusterRoleNotBindable");
    assert!(
        ready.message.contains("kube-org.io/aggregate-to-operator"),
        "{}",
        ready.message
    );
}

#[test]
fn bindings_for_non_members_grant_nothing() {
    let access = World::new()
        .bind("x", "{member: mallory@example.com, role: admin, scope: {resourceType: deployment, all: true}}")
        .compute();
    assert!(
        access
            .role_bindings
            .iter()
            .all(|rb| !rb.grants("mallory@example.com"))
    );
    assert_eq!(access.bindings["x"].ready.reason, "MemberNotFound");
}

#[test]
fn members_being_deleted_lose_everything_at_once() {
    let mut world = World::new().bind(
        "b",
        "{member: bob@example.com, role: editor, scope: {resourceType: deployment, all: true}}",
    );
    world.members[0].metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
        ));
    let access = world.compute();
    assert!(held(&access, "bob@example.com").is_empty());
    assert!(!access.members.contains_key("bob"));
}

#[test]
fn organization_level_roles_never_bind_inside_resources() {
    let access = World::new()
        .bind(
            "b",
            "{member: bob@example.com, role: billing-admin, scope: {organization: {}}}",
        )
        .compute();
    assert_eq!(
        held(&access, "bob@example.com"),
        pairs(&[("org-acme", "kube-org:reader")])
    );
    assert!(
        access.access_of(&access.members["bob"].user).is_empty(),
        "the home namespace is not a resource"
    );
}

#[test]
fn the_owner_role_is_admin_everywhere_and_manages_the_home_namespace() {
    let access = World::new()
        .bind(
            "o",
            "{member: bob@example.com, role: organization-owner, scope: {organization: {}}}",
        )
        .compute();
    assert_eq!(
        held(&access, "bob@example.com"),
        pairs(&[
            ("org-acme", "kube-org:owner"),
            ("prod", "admin"),
            ("search", "admin"),
            ("staging", "admin")
        ])
    );
}

#[test]
fn impossible_roles_and_scopes_are_refused_with_a_reason() {
    let access = World::new()
        .bind("a", "{member: bob@example.com, role: nosuchrole, scope: {resourceType: deployment, all: true}}")
        .bind("b", "{member: bob@example.com, role: viewer, scope: {organization: {}}}")
        .bind("c", "{member: bob@example.com, role: billing-admin, scope: {resourceType: deployment, all: true}}")
        .bind("d", "{member: bob@example.com, role: developer, scope: {resourceType: deployment, all: true}}")
        .bind("e", "{member: bob@example.com, role: viewer, scope: {resourceType: observability, all: true}}")
        .compute();
    let reasons: Vec<&str> = access
        .bindings
        .values()
        .map(|o| o.ready.reason.as_str())
        .collect();
    assert_eq!(
        reasons,
        [
            "UnknownRole",
            "NeedsResourceScope",
            "NeedsOrganizationScope",
            "RoleNotForType",
            "UnknownResourceType"
        ]
    );
    assert!(held(&access, "bob@example.com").is_empty());
}

#[test]
fn all_scope_admins_may_read_the_organizations_rolebindings_named_admins_may_not() {
    let access = World::new()
        .bind("a", "{member: bob@example.com, role: admin, scope: {resourceType: deployment, all: true}}")
        .bind("b", "{member: carol@example.com, role: admin, scope: {resourceType: deployment, resources: [prod]}}")
        .compute();
    assert!(
        held(&access, "bob@example.com")
            .contains(&("org-acme".into(), "kube-org:rolebinding-reader".into()))
    );
    assert!(
        !held(&access, "carol@example.com")
            .iter()
            .any(|(ns, _)| ns == "org-acme")
    );
}

#[test]
fn the_same_input_gives_byte_identical_objects() {
    let world = World::new()
        .bind("a", "{member: bob@example.com, role: viewer, scope: {resourceType: deployment, all: true}}")
        .bind("b", "{member: carol@example.com, role: admin, scope: {resourceType: deployment, resources: [staging, prod]}}");
    let objects = |access: DesiredAccess| -> Vec<_> {
        access.role_bindings.iter().map(|rb| rb.object()).collect()
    };
    let once = serde_json::to_string(&objects(world.compute())).unwrap();
    let mut shuffled = World::new();
    shuffled.bindings = world.bindings.iter().rev().cloned().collect();
    shuffled.members.reverse();
    shuffled.namespaces.reverse();
    assert_eq!(
        once,
        serde_json::to_string(&objects(shuffled.compute())).unwrap()
    );
    let owner_ref = &world.compute().role_bindings[0]
        .metadata
        .owner_references
        .clone()
        .unwrap()[0];
    assert_eq!(
        (owner_ref.kind.as_str(), owner_ref.name.as_str()),
        ("Organization", "acme")
    );
}

#[test]
fn refused_memberships_grant_nothing_and_their_bindings_say_why() {
    let mut world = World::new()
        .bind("bob-viewer", "{member: bob@example.com, role: viewer, scope: {resourceType: deployment, all: true}}")
        .bind("carol-viewer", "{member: carol@example.com, role: viewer, scope: {resourceType: deployment, all: true}}");
    world.org.spec.membership.allowed_email_domains = vec![crate::api::organization::EmailDomain(
        "other.org".to_string(),
    )];
    world.members[0].spec.email = crate::api::Email("bob@other.org".to_string());
    world.bindings[0].spec.member = crate::api::Email("bob@other.org".to_string());
    world.refused.insert(
        "bob".to_string(),
        PolicyRefusal {
            reason: "ExclusiveMembership",
            message: "held elsewhere".to_string(),
        },
    );
    let access = world.compute();
    assert!(held(&access, "bob@other.org").is_empty());
    assert!(held(&access, "carol@example.com").is_empty());
    assert_eq!(access.refused["bob"].reason, "ExclusiveMembership");
    assert_eq!(access.refused["carol"].reason, "DomainNotAllowed");
    for name in ["bob-viewer", "carol-viewer"] {
        assert_eq!(
            access.bindings[name].ready.reason, "MemberRefused",
            "{name}"
        );
    }
    assert!(access.members.is_empty());
}

#[test]
fn an_organizations_own_viewer_is_refused_in_a_resource_scope() {
    let mut world = World::new()
        .bind(
            "in-resources",
            "{member: bob@example.com, role: viewer, scope: {resourceType: deployment, all: true}}",
        )
        .bind(
            "on-organization",
            "{member: carol@example.com, role: viewer, scope: {organization: {}}}",
        );
    world.org = crate::access::roles::fixtures::organization_viewer();
    let access = world.compute();
    let refused = &access.bindings["in-resources"].ready;
    assert!(!refused.status);
    assert_eq!(refused.reason, "NeedsOrganizationScope");
    assert!(held(&access, "bob@example.com").is_empty());
    // On the organization it is the organization's role: its ClusterRole in the home
    // namespace, nothing inside resources.
    assert_eq!(
        held(&access, "carol@example.com"),
        pairs(&[
            ("org-acme", "acme-org-viewer"),
            ("org-acme", "kube-org:reader")
        ])
    );
}

#[test]
fn the_username_prefix_names_every_subject_and_status_user_and_spec_user_is_kept() {
    let mut world = World::new()
        .bind("b", "{member: bob@example.com, role: viewer, scope: {resourceType: deployment, resources: [prod]}}")
        .bind("c", "{member: carol@example.com, role: viewer, scope: {resourceType: deployment, resources: [prod]}}");
    world.identity.username_prefix = "oidc:".into();
    world.members[1].spec.user = Some("carol-sso".into());
    let access = world.compute();
    assert_eq!(access.members["bob"].user, "oidc:bob@example.com");
    assert_eq!(access.members["carol"].user, "carol-sso");
    assert_eq!(
        held(&access, "oidc:bob@example.com"),
        pairs(&[("prod", "view")])
    );
    assert!(
        held(&access, "bob@example.com").is_empty(),
        "the unprefixed name gets nothing"
    );
    assert!(visible(&access).contains(&("User", "oidc:bob@example.com")));

    // The Organization's own prefix wins over the operator's.
    world.org.spec.identity.username_prefix = Some("corp#".into());
    let access = world.compute();
    assert_eq!(
        held(&access, "corp#bob@example.com"),
        pairs(&[("prod", "view")])
    );
    // Changing the prefix keeps the bindings' names: each is re-applied with its new
    // subjects in place (one write, no delete), so no binding disappears meanwhile.
    let before: Vec<_> = World::new()
        .bind("b", "{member: bob@example.com, role: viewer, scope: {resourceType: deployment, resources: [prod]}}")
        .compute()
        .role_bindings
        .iter()
        .map(|rb| rb.metadata.name.clone())
        .collect();
    let after: Vec<_> = access
        .role_bindings
        .iter()
        .map(|rb| rb.metadata.name.clone())
        .collect();
    assert_eq!(before, after);
}

#[test]
fn a_prefix_that_makes_a_system_name_grants_nothing() {
    let mut world = World::new().bind(
        "b",
        "{member: bob@example.com, role: viewer, scope: {resourceType: deployment, all: true}}",
    );
    // Admission refuses this prefix; an object older than that rule must still not
    // bind a system identity.
    world.org.spec.identity.username_prefix = Some("system:".into());
    let access = world.compute();
    assert_eq!(access.refused["bob"].reason, "SystemUserNotAllowed");
    assert!(held(&access, "system:bob@example.com").is_empty());
}

#[test]
fn an_auto_join_group_binds_a_group_subject_with_the_groups_prefix_and_reports_each_entry() {
    let mut world = World::new();
    world.identity.groups_prefix = "oidc:".into();
    world.org.spec.membership.groups = serde_yaml::from_str(
        r#"
- group: developers
  roles:
    - {role: editor, scope: {resourceType: deployment, resources: [prod, gone]}}
    - {role: viewer, scope: {resourceType: elasticsearch, all: true}}
- group: auditors
  roles: [{role: no-such-role, scope: {organization: {}}}]
- group: "system:masters"
  roles: [{role: viewer, scope: {resourceType: deployment, all: true}}]
"#,
    )
    .expect("groups");
    let access = world.compute();
    let prod_edit = access
        .role_bindings
        .iter()
        .find(|rb| rb.metadata.namespace.as_deref() == Some("prod") && rb.cluster_role == "edit")
        .expect("prod/edit");
    assert!(prod_edit.grants_group("oidc:developers"));
    assert!(!prod_edit.grants("oidc:developers"), "a Group, not a User");
    let search_view = access
        .role_bindings
        .iter()
        .find(|rb| rb.metadata.namespace.as_deref() == Some("search"))
        .expect("search/view");
    assert_eq!(search_view.groups.names(), ["oidc:developers"]);
    assert!(
        access.role_bindings.iter().all(|rb| !rb
            .groups
            .names()
            .iter()
            .any(|g| g.starts_with("system:"))),
        "never a system group"
    );
    assert!(visible(&access).contains(&("Group", "oidc:developers")));

    let [developers, auditors, system] = &access.groups[..] else {
        panic!("one status per entry: {:?}", access.groups)
    };
    assert_eq!(developers.subject.as_deref(), Some("oidc:developers"));
    assert_eq!(developers.resources, ["prod", "search"]);
    assert_eq!(
        (developers.ready.as_str(), developers.reason.as_str()),
        ("False", "ResourcesMissing")
    );
    assert_eq!(
        (auditors.ready.as_str(), auditors.reason.as_str()),
        ("False", "UnknownRole")
    );
    assert_eq!(system.reason, "SystemGroupNotAllowed");
    assert_eq!(system.subject, None);

    // Removing the entry revokes: no binding names the group any more.
    world.org.spec.membership.groups.remove(0);
    let access = world.compute();
    assert!(access.role_bindings.iter().all(|rb| rb.groups.is_empty()));
}

#[test]
fn a_groups_prefix_that_makes_a_system_group_grants_nothing() {
    let mut world = World::new();
    world.org.spec.identity.groups_prefix = Some("system:".into());
    world.org.spec.membership.groups = serde_yaml::from_str(
        "[{group: masters, roles: [{role: viewer, scope: {resourceType: deployment, all: true}}]}]",
    )
    .expect("groups");
    let access = world.compute();
    assert_eq!(access.groups[0].reason, "SystemGroupNotAllowed");
    assert!(access.role_bindings.iter().all(|rb| rb.groups.is_empty()));
}

fn at(time: &str) -> Timestamp {
    time.parse().expect("a time")
}

/// bob: viewer of every deployment until 12:00:03; carol: editor of prod until 12:00:10,
/// admin of staging with no end.
fn timed_world() -> World {
    World::new()
        .bind(
            "bob-viewer",
            "{member: bob@example.com, role: viewer, scope: {resourceType: deployment, all: true}, expiresAt: '2026-12-05T12:00:03Z'}",
        )
        .bind(
            "carol-editor",
            "{member: carol@example.com, role: editor, scope: {resourceType: deployment, resources: [prod]}, expiresAt: '2026-12-05T13:00:10+01:00'}",
        )
        .bind(
            "carol-admin",
            "{member: carol@example.com, role: admin, scope: {resourceType: deployment, resources: [staging]}}",
        )
}

#[test]
fn a_binding_grants_until_its_expiry_and_nothing_from_that_second_on() {
    let before = timed_world().at("2026-12-05T12:00:02.999Z").compute();
    assert_eq!(
        held(&before, "bob@example.com"),
        pairs(&[("prod", "view"), ("staging", "view")])
    );
    let outcome = &before.bindings["bob-viewer"];
    assert!(outcome.ready.status);
    assert!(
        outcome
            .ready
            .message
            .ends_with("; until 2026-12-05T12:00:03Z"),
        "{}",
        outcome.ready.message
    );
    assert_eq!(outcome.expired_at, None);
    let bob_roles = &before.members["bob"].roles;
    assert_eq!(
        bob_roles[0].expires_at.as_deref(),
        Some("2026-12-05T12:00:03Z")
    );

    let after = timed_world().at("2026-12-05T12:00:03Z").compute();
    assert_eq!(
        held(&after, "bob@example.com"),
        vec![],
        "expired on the second"
    );
    let outcome = &after.bindings["bob-viewer"];
    assert!(!outcome.ready.status);
    assert_eq!(outcome.ready.reason, "Expired");
    assert!(
        outcome
            .ready
            .message
            .starts_with("expired at 2026-12-05T12:00:03Z: bob@example.com no longer holds viewer on deployment/*"),
        "{}",
        outcome.ready.message
    );
    assert_eq!(
        outcome.expired_at.as_ref().map(|t| t.0),
        Some(at("2026-12-05T12:00:03Z"))
    );
    assert!(outcome.resources.is_empty());
    assert!(after.members["bob"].roles.is_empty());
    // Still a member: the organization stays visible, nothing inside resources.
    assert!(visible(&after).contains(&("User", "bob@example.com")));
    // Others are untouched.
    assert_eq!(
        held(&after, "carol@example.com"),
        pairs(&[("prod", "edit"), ("staging", "admin")])
    );
}

#[test]
fn the_next_expiry_is_the_earliest_one_still_ahead() {
    let world = || timed_world();
    assert_eq!(
        world().at("2026-12-05T11:00:00Z").compute().next_expiry,
        Some(at("2026-12-05T12:00:03Z"))
    );
    assert_eq!(
        world().at("2026-12-05T12:00:03Z").compute().next_expiry,
        Some(at("2026-12-05T12:00:10Z")),
        "an expired binding never schedules again (no hot loop)"
    );
    let late = world().at("2026-12-05T12:00:10Z").compute();
    assert_eq!(late.next_expiry, None);
    assert_eq!(
        held(&late, "carol@example.com"),
        pairs(&[("staging", "admin")])
    );
    assert_eq!(World::new().compute().next_expiry, None);
}

#[test]
fn moving_the_expiry_later_grants_again() {
    let mut world = timed_world().at("2026-12-05T12:00:05Z");
    assert_eq!(held(&world.compute(), "bob@example.com"), vec![]);
    world.bindings[0].spec.expires_at = Some("2026-12-05T12:30:00Z".into());
    let access = world.compute();
    assert_eq!(
        held(&access, "bob@example.com"),
        pairs(&[("prod", "view"), ("staging", "view")])
    );
    assert_eq!(access.bindings["bob-viewer"].expired_at, None);
    assert_eq!(access.next_expiry, Some(at("2026-12-05T12:00:10Z")));
    world.bindings[0].spec.expires_at = None;
    assert!(world.compute().bindings["bob-viewer"].ready.status);
}

#[test]
fn an_unreadable_expiry_grants_nothing_and_owner_bindings_never_expire() {
    let mut world = World::new()
        .bind(
            "bob-viewer",
            "{member: bob@example.com, role: viewer, scope: {resourceType: deployment, all: true}, expiresAt: '2026-02-30T00:00:00Z'}",
        )
        .bind(
            "owner-carol",
            "{member: carol@example.com, role: organization-owner, scope: {organization: {}}, expiresAt: '2026-01-01T00:00:00Z'}",
        );
    world.bindings[1]
        .metadata
        .labels
        .get_or_insert_default()
        .insert("kube-org.io/owner".into(), "true".into());
    let access = world.compute();
    assert_eq!(held(&access, "bob@example.com"), vec![]);
    assert_eq!(access.bindings["bob-viewer"].ready.reason, "InvalidExpiry");
    assert!(access.bindings["owner-carol"].ready.status);
    assert_eq!(access.next_expiry, None);
}
