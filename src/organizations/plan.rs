//! What one reconcile of an Organization decides, as pure functions of what it read:
//! who may leave, who keeps access while refused, the desired RBAC, and the
//! Organization's Ready condition and counts. The shell (`organization.rs`) reads the
//! caches, takes exclusive-membership claims, applies the plan and queues statuses.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Namespace;
use kube::ResourceExt;

use crate::access::leave::{LeaveRefusal, may_leave, owner_emails};
use crate::access::names::MEMBERSHIP_FINALIZER;
use crate::access::policy::PolicyRefusal;
use crate::access::{AccessInput, DesiredAccess, desired::resources_by_type, desired_access};
use crate::api::condition::{DesiredCondition, READY};
use crate::api::{Membership, Organization, RoleBinding};

/// Members on their way out, decided before anything else.
#[derive(Debug, Default, PartialEq)]
pub struct Leaving {
    /// Memberships being deleted whose leaving is refused, with why.
    pub refusals: BTreeMap<String, LeaveRefusal>,
    /// Their names: they stay members, with all their access.
    pub kept: BTreeSet<String>,
}

/// The bindings that still grant at `now` (an expired role makes nobody an owner).
pub fn live_at<'a>(
    bindings: &[&'a RoleBinding],
    now: k8s_openapi::jiff::Timestamp,
) -> Vec<&'a RoleBinding> {
    bindings
        .iter()
        .copied()
        .filter(
            |b| matches!(crate::access::desired::expiry(b), Ok(at) if at.is_none_or(|at| now < at)),
        )
        .collect()
}

/// Which Memberships being deleted may not leave (last owner, resources remain...),
/// counting the bindings that still grant at `now`.
pub fn leaving(
    org: &Organization,
    memberships: &[&Membership],
    bindings: &[&RoleBinding],
    namespaces: &[&Namespace],
    now: k8s_openapi::jiff::Timestamp,
) -> Leaving {
    let bindings = &live_at(bindings, now)[..];
    let resources: usize = resources_by_type(org, &org.home_namespace(), namespaces)
        .values()
        .map(Vec::len)
        .sum();
    let refusals: BTreeMap<String, LeaveRefusal> = memberships
        .iter()
        .filter(|m| {
            m.metadata.deletion_timestamp.is_some()
                && m.finalizers().iter().any(|f| f == MEMBERSHIP_FINALIZER)
        })
        .filter_map(|m| {
            may_leave(org, m, memberships, bindings, resources)
                .err()
                .map(|r| (m.name_any(), r))
        })
        .collect();
    let kept = refusals.keys().cloned().collect();
    Leaving { refusals, kept }
}

/// Whether a Membership counts as a member now: not being deleted, or kept.
pub fn is_staying(m: &Membership, leaving: &Leaving) -> bool {
    m.metadata.deletion_timestamp.is_none() || leaving.kept.contains(&m.name_any())
}

/// What a reconcile reads, after the effectful dereference steps.
pub struct PlanInput<'a> {
    pub org: &'a Organization,
    /// Cached Memberships plus the owners' just applied.
    pub memberships: Vec<&'a Membership>,
    /// Cached RoleBindings (minus owner bindings on their way out) plus the owners'.
    pub bindings: Vec<&'a RoleBinding>,
    pub namespaces: Vec<&'a Namespace>,
    pub leaving: &'a Leaving,
    pub unbindable: &'a BTreeSet<String>,
    pub exclusive_refusals: &'a BTreeMap<String, PolicyRefusal>,
    /// The operator's `spec.identity` defaults.
    pub identity: &'a crate::access::identity::IdentityDefaults,
    /// The time the plan is for (bindings expire against it).
    pub now: k8s_openapi::jiff::Timestamp,
}

/// What the reconcile applies.
#[derive(Debug)]
pub struct Plan {
    pub desired: DesiredAccess,
    /// The Organization's Ready condition if every write succeeds.
    pub ready: DesiredCondition,
    pub members: usize,
    pub owners: usize,
}

/// Decides the organization's access and its Ready condition.
pub fn plan(input: &PlanInput<'_>) -> Plan {
    let org = input.org;
    let desired = desired_access(&AccessInput {
        org,
        memberships: input.memberships.clone(),
        bindings: input.bindings.clone(),
        namespaces: input.namespaces.clone(),
        unbindable: input.unbindable,
        refused: input.exclusive_refusals,
        kept: &input.leaving.kept,
        identity: input.identity,
        now: input.now,
    });
    let members = desired.members.len();
    // One pass over each list (a lookup per member in every Membership was quadratic:
    // a million comparisons, each allocating a name, at 1,000 members).
    let live = live_at(&input.bindings, input.now);
    let owner_emails = owner_emails(&live);
    let owners = input
        .memberships
        .iter()
        .filter(|m| {
            desired
                .members
                .contains_key(m.metadata.name.as_deref().unwrap_or_default())
                && owner_emails.contains(&m.spec.email.normalized())
        })
        .count();
    let resource_count: usize = desired.resources.values().map(Vec::len).sum();
    let ready = DesiredCondition::new(
        READY,
        true,
        "Reconciled",
        format!(
            "{members} member(s), {resource_count} resource(s); access applied in {}",
            org.home_namespace()
        ),
    );
    Plan {
        desired,
        ready,
        members,
        owners,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WORLD: &str = r#"
org:
  apiVersion: kube-org.io/v1alpha1
  kind: Organization
  metadata: {name: acme, uid: 0b4c3b0e-0000-4000-8000-000000000001}
  spec: {owners: [dan@example.com], resourceTypes: [deployment]}
memberships:
  - apiVersion: kube-org.io/v1alpha1
    kind: Membership
    metadata:
      name: alice
      namespace: org-acme
      deletionTimestamp: "2026-12-05T10:00:00Z"
      finalizers: [kube-org.io/membership]
    spec: {email: alice@example.com}
  - apiVersion: kube-org.io/v1alpha1
    kind: Membership
    metadata:
      name: bob
      namespace: org-acme
      deletionTimestamp: "2026-12-05T10:00:00Z"
      finalizers: [kube-org.io/membership]
    spec: {email: bob@example.com}
  - apiVersion: kube-org.io/v1alpha1
    kind: Membership
    metadata: {name: carol, namespace: org-acme}
    spec: {email: carol@example.com}
bindings:
  - apiVersion: kube-org.io/v1alpha1
    kind: RoleBinding
    metadata: {name: alice-owner, namespace: org-acme}
    spec: {member: alice@example.com, role: organization-owner, scope: {organization: {}}}
  - apiVersion: kube-org.io/v1alpha1
    kind: RoleBinding
    metadata: {name: bob-viewer, namespace: org-acme}
    spec: {member: bob@example.com, role: viewer, scope: {resourceType: deployment, all: true}}
  - apiVersion: kube-org.io/v1alpha1
    kind: RoleBinding
    metadata: {name: carol-editor, namespace: org-acme}
    spec: {member: carol@example.com, role: editor, scope: {resourceType: deployment, all: true}}
namespaces:
  - metadata:
      name: prod
      labels: {kube-org.io/organization: acme, kube-org.io/resource-type: deployment}
"#;

    #[derive(serde::Deserialize)]
    struct World {
        org: Organization,
        memberships: Vec<Membership>,
        bindings: Vec<RoleBinding>,
        namespaces: Vec<Namespace>,
    }

    fn world() -> World {
        serde_yaml::from_str(WORLD).expect("world fixture")
    }

    fn decide(world: &World) -> (Leaving, Plan) {
        let memberships: Vec<&Membership> = world.memberships.iter().collect();
        let bindings: Vec<&RoleBinding> = world.bindings.iter().collect();
        let namespaces: Vec<&Namespace> = world.namespaces.iter().collect();
        let now = "2026-12-05T12:00:00Z".parse().unwrap();
        let leaving = leaving(&world.org, &memberships, &bindings, &namespaces, now);
        let plan = plan(&PlanInput {
            org: &world.org,
            memberships,
            bindings,
            namespaces,
            leaving: &leaving,
            unbindable: &BTreeSet::new(),
            exclusive_refusals: &BTreeMap::new(),
            identity: &Default::default(),
            now,
        });
        (leaving, plan)
    }

    fn holds(plan: &Plan, user: &str, namespace: &str, cluster_role: &str) -> bool {
        plan.desired.role_bindings.iter().any(|rb| {
            rb.metadata.namespace.as_deref() == Some(namespace)
                && rb.cluster_role == cluster_role
                && rb.grants(user)
        })
    }

    #[test]
    fn the_last_owner_is_kept_with_all_access_and_a_plain_member_leaves() {
        let (leaving, plan) = decide(&world());
        assert_eq!(
            leaving.refusals.keys().collect::<Vec<_>>(),
            ["alice"],
            "bob may go; alice is the last owner while carol and prod remain"
        );
        assert_eq!(leaving.refusals["alice"].reason(), "LastOwner");
        assert!(holds(
            &plan,
            "alice@example.com",
            "org-acme",
            "kube-org:owner"
        ));
        assert!(!holds(&plan, "bob@example.com", "prod", "view"), "bob left");
        assert!(holds(&plan, "carol@example.com", "prod", "edit"));
        assert_eq!((plan.members, plan.owners), (2, 1));
        assert!(plan.ready.status);
        assert_eq!(
            plan.ready.message,
            "2 member(s), 1 resource(s); access applied in org-acme"
        );
    }

    #[test]
    fn once_another_owner_exists_the_last_owner_may_leave_too() {
        let mut world = world();
        world.bindings[2].spec.role = "organization-owner".into();
        world.bindings[2].spec.scope = serde_yaml::from_str("{organization: {}}").unwrap();
        let (leaving, plan) = decide(&world);
        assert!(leaving.refusals.is_empty(), "{:?}", leaving.refusals);
        assert!(!holds(
            &plan,
            "alice@example.com",
            "org-acme",
            "kube-org:owner"
        ));
        assert!(holds(
            &plan,
            "carol@example.com",
            "org-acme",
            "kube-org:owner"
        ));
        assert_eq!((plan.members, plan.owners), (1, 1));
    }

    #[test]
    fn the_decision_does_not_depend_on_the_order_of_the_caches() {
        let world = world();
        let (leaving, plan) = decide(&world);
        let mut reversed = world;
        reversed.memberships.reverse();
        reversed.bindings.reverse();
        let (leaving_again, plan_again) = decide(&reversed);
        assert_eq!(leaving, leaving_again);
        assert_eq!(plan.desired, plan_again.desired);
    }

    #[test]
    fn an_expired_owner_role_makes_nobody_an_owner() {
        let mut world = world();
        // carol is an owner only until 11:00; alice (the last owner) stays held.
        world.bindings[2].spec.role = "organization-owner".into();
        world.bindings[2].spec.scope = serde_yaml::from_str("{organization: {}}").unwrap();
        world.bindings[2].spec.expires_at = Some("2026-12-05T11:00:00Z".into());
        let (leaving, plan) = decide(&world);
        assert_eq!(leaving.refusals.keys().collect::<Vec<_>>(), ["alice"]);
        assert_eq!((plan.members, plan.owners), (2, 1));
        assert!(!holds(
            &plan,
            "carol@example.com",
            "org-acme",
            "kube-org:owner"
        ));
    }
}
