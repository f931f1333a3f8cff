//! The whole desired RBAC of one organization, as a pure function.
//!
//! Aggregated: one native RoleBinding per (namespace, ClusterRole) whose subjects are
//! every member holding it there, so objects grow with namespaces x roles, not with
//! members x namespaces. Output is sorted and deterministic: the same input gives
//! byte-identical objects.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, RoleRef};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::{Resource, ResourceExt};

use super::identity::{Identity, IdentityDefaults};
use super::names::{
    LABEL_OWNER, LABEL_RESOURCE_TYPE, OWNER_CLUSTER_ROLE, READER_CLUSTER_ROLE,
    ROLEBINDING_READER_CLUSTER_ROLE, managed_labels, native_binding_name,
    organization_cluster_role_name,
};
use super::native::{
    DesiredRoleBinding, NameSets, Names, RBAC_GROUP, SeenSets, group_subject, user_subject,
};
use super::policy::{PolicyRefusal, SYSTEM_PREFIX, membership_refusals};
use super::roles::{ResolvedRole, RoleProblem, RoleTable};
use crate::api::condition::{DesiredCondition, READY};
use crate::api::fields::normalize_email;
use crate::api::membership::{MemberRole, NamespaceAccess};
use crate::api::organization::GroupStatus;
use crate::api::rolebinding::TargetProblem;
use crate::api::scope::ScopeTarget;
use crate::api::{Access, Membership, Organization, RoleBinding, RoleBindingSpec};
use crate::catalog::ORGANIZATION_OWNER;

/// What the computation reads: cached objects of one organization.
pub struct AccessInput<'a> {
    pub org: &'a Organization,
    /// The organization's Memberships; those being deleted grant nothing.
    pub memberships: Vec<&'a Membership>,
    /// The organization's RoleBindings (kube-org kind).
    pub bindings: Vec<&'a RoleBinding>,
    /// Namespaces labelled with the organization.
    pub namespaces: Vec<&'a Namespace>,
    /// Custom ClusterRoles kube-org may not bind: RoleBindings using them grant nothing
    /// and say why, instead of failing every write of the organization.
    pub unbindable: &'a BTreeSet<String>,
    /// Memberships refused by a decision taken outside this function (exclusive
    /// membership held by another organization), by name; they grant nothing.
    pub refused: &'a BTreeMap<String, PolicyRefusal>,
    /// Memberships being deleted whose leaving is refused (last owner...), by name:
    /// they keep all their access.
    pub kept: &'a BTreeSet<String>,
    /// The operator's `spec.identity` defaults (`--username-prefix`, `--groups-prefix`).
    pub identity: &'a IdentityDefaults,
    /// The time the access is computed for: a binding whose `spec.expiresAt` is at or
    /// before it grants nothing. Passed in, never read here.
    pub now: Timestamp,
}

/// Everything the organization needs, plus the status of each object it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct DesiredAccess {
    /// Native RoleBindings, sorted by (namespace, ClusterRole), compact (built as API
    /// objects only to be written).
    pub role_bindings: Vec<DesiredRoleBinding>,
    /// Lets every member see the organization and which resources exist.
    pub cluster_role: ClusterRole,
    pub cluster_role_binding: ClusterRoleBinding,
    /// Per kube-org RoleBinding name.
    pub bindings: BTreeMap<String, BindingOutcome>,
    /// Per Membership name.
    pub members: BTreeMap<String, MemberOutcome>,
    /// Resource namespaces per type.
    pub resources: BTreeMap<String, Vec<String>>,
    /// Memberships that grant nothing under the organization's policy, by name.
    pub refused: BTreeMap<String, PolicyRefusal>,
    /// The home namespace (not a resource: [`DesiredAccess::access_of`] leaves it out).
    pub home: String,
    /// Each `spec.membership.groups` entry (SSO auto-join), in the spec's order.
    pub groups: Vec<GroupStatus>,
    /// The earliest `spec.expiresAt` after `now` among the bindings: when this access
    /// next changes by itself (the reconcile is scheduled for it).
    pub next_expiry: Option<Timestamp>,
}

impl DesiredAccess {
    /// Where `user` can go: each resource namespace and the ClusterRoles held there,
    /// sorted. Computed when a status is written rather than kept for every member (an
    /// entry per member and namespace is most of a large organization's plan).
    pub fn access_of(&self, user: &str) -> Vec<NamespaceAccess> {
        let mut access: Vec<NamespaceAccess> = Vec::new();
        let mut seen = SeenSets::default();
        for rb in &self.role_bindings {
            let namespace = rb.metadata.namespace.as_deref().unwrap_or_default();
            if namespace == self.home || !rb.users.contains_remembering(user, &mut seen) {
                continue;
            }
            match access.last_mut() {
                Some(last) if last.namespace == namespace => {
                    last.cluster_roles.push(rb.cluster_role.clone())
                }
                _ => access.push(NamespaceAccess {
                    namespace: namespace.to_string(),
                    cluster_roles: vec![rb.cluster_role.clone()],
                }),
            }
        }
        access
    }
}

/// The status of one kube-org RoleBinding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindingOutcome {
    pub scope: String,
    /// The namespaces bound; for a binding to all resources of a type, the one list of
    /// the type shared by every such binding.
    pub resources: Arc<[String]>,
    pub problems: Vec<TargetProblem>,
    pub ready: DesiredCondition,
    /// When the binding expired (whole seconds, as `status.expiredAt` keeps it), if it has.
    pub expired_at: Option<Time>,
}

/// The status of one Membership (its access: [`DesiredAccess::access_of`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemberOutcome {
    pub user: String,
    pub roles: Vec<MemberRole>,
}

/// The RBAC user name of a membership: `spec.user`, or the organization's username
/// prefix + the email in lower case ([`Identity::member_user`]).
pub fn member_user(membership: &Membership, identity: &Identity<'_>) -> String {
    identity.member_user(membership)
}

/// Who holds which ClusterRole where (each name allocated once, shared). A grant to all
/// resources of a type is kept once for the type, not once per namespace of it: at
/// 10,000 members and 1,000 namespaces that is the difference between thousands of
/// entries and millions.
#[derive(Default)]
struct Grants {
    /// (resource type, ClusterRole) -> names holding it in every namespace of the type.
    by_type: BTreeMap<(String, String), BTreeSet<Arc<str>>>,
    /// namespace -> ClusterRole -> names holding it there.
    by_namespace: BTreeMap<String, BTreeMap<String, BTreeSet<Arc<str>>>>,
}

impl Grants {
    fn in_namespace(&mut self, namespace: &str, cluster_role: &str, name: &Arc<str>) {
        let roles = match self.by_namespace.get_mut(namespace) {
            Some(roles) => roles,
            None => self.by_namespace.entry(namespace.to_string()).or_default(),
        };
        let names = match roles.get_mut(cluster_role) {
            Some(names) => names,
            None => roles.entry(cluster_role.to_string()).or_default(),
        };
        names.insert(name.clone());
    }

    fn in_type(&mut self, kind: &str, cluster_role: &str, name: &Arc<str>) {
        self.by_type
            .entry((kind.to_string(), cluster_role.to_string()))
            .or_default()
            .insert(name.clone());
    }

    /// Every name granted anything.
    fn names(&self) -> BTreeSet<Arc<str>> {
        let by_type = self.by_type.values().flatten();
        let by_namespace = self
            .by_namespace
            .values()
            .flat_map(|r| r.values().flatten());
        by_type.chain(by_namespace).cloned().collect()
    }
}

/// Computes the organization's whole desired RBAC.
/// What an organization with nothing in it is given (for tests of what comes after).
#[cfg(test)]
pub fn nothing_for(org: &Organization) -> DesiredAccess {
    desired_access(&AccessInput {
        org,
        memberships: vec![],
        bindings: vec![],
        namespaces: vec![],
        unbindable: &Default::default(),
        refused: &Default::default(),
        kept: &Default::default(),
        identity: &Default::default(),
        now: k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
    })
}

pub fn desired_access(input: &AccessInput<'_>) -> DesiredAccess {
    let org = input.org;
    let org_name = org.name_any();
    let home = org.home_namespace();
    let table = RoleTable::new(org).refusing(input.unbindable);
    let resources = resources_by_type(org, &home, &input.namespaces);
    let shared_resources = SharedResources::new(&resources);
    let bind_context = BindContext {
        table: &table,
        resources: &shared_resources,
        home: &home,
    };
    let identity = input.identity.of(org);

    // Memberships the policy refuses grant nothing (checked on every path, not only
    // for Invitations).
    let mut refused = membership_refusals(org, &identity, &input.memberships);
    refused.extend(
        input
            .refused
            .iter()
            .filter(|(name, _)| !refused.contains_key(*name))
            .map(|(name, r)| (name.clone(), r.clone()))
            .collect::<Vec<_>>(),
    );
    // Active members by normalized email (the first by name wins a duplicate).
    let mut memberships: Vec<&Membership> = input
        .memberships
        .iter()
        .copied()
        .filter(|m| m.meta().deletion_timestamp.is_none() || input.kept.contains(&m.name_any()))
        .filter(|m| !refused.contains_key(&m.name_any()))
        .collect();
    memberships.sort_by_key(|m| m.name_any());
    let mut members: BTreeMap<String, (String, Arc<str>)> = BTreeMap::new();
    for m in &memberships {
        members
            .entry(m.spec.email.normalized())
            .or_insert_with(|| (m.name_any(), Arc::from(member_user(m, &identity))));
    }

    let mut grants = Grants::default();
    let mut member_roles: BTreeMap<String, Vec<MemberRole>> = BTreeMap::new();
    let mut outcomes = BTreeMap::new();
    let mut next_expiry: Option<Timestamp> = None;
    let mut bindings = input.bindings.clone();
    bindings.sort_by_key(|b| b.name_any());
    for binding in bindings {
        let email = normalize_email(&binding.spec.member.0);
        let scope = binding.spec.scope.summary();
        // Time first: an expired binding grants nothing, whatever else holds.
        let expires_at = match expiry(binding) {
            Ok(Some(at)) if input.now >= at => {
                outcomes.insert(binding.name_any(), expired(scope, binding, &email, at));
                continue;
            }
            Ok(at) => at,
            Err(error) => {
                let message = format!(
                    "spec.expiresAt: {error}; this binding grants nothing until it is fixed"
                );
                outcomes.insert(
                    binding.name_any(),
                    grants_nothing(scope, "InvalidExpiry", message),
                );
                continue;
            }
        };
        if let Some(at) = expires_at {
            next_expiry = Some(next_expiry.map_or(at, |next| next.min(at)));
        }
        let Some((membership, user)) = members.get(&email) else {
            if let Some(refusal) = input.memberships.iter().find_map(|m| {
                (m.spec.email.normalized() == email)
                    .then(|| refused.get(&m.name_any()))
                    .flatten()
            }) {
                let message = format!(
                    "the Membership of {email} is refused ({}: {}); this binding grants nothing",
                    refusal.reason, refusal.message
                );
                outcomes.insert(
                    binding.name_any(),
                    grants_nothing(scope, "MemberRefused", message),
                );
                continue;
            }
            let message = format!(
                "{email} is not a member of the organization: add a Membership or send an Invitation; this binding grants nothing until then"
            );
            outcomes.insert(
                binding.name_any(),
                grants_nothing(scope, "MemberNotFound", message),
            );
            continue;
        };
        let mut outcome = bind(&bind_context, binding, user, &mut grants);
        if let Some(at) = expires_at {
            outcome.ready.message = format!("{}; until {at}", outcome.ready.message);
        }
        if outcome.ready.status {
            member_roles
                .entry(membership.clone())
                .or_default()
                .push(MemberRole {
                    role: binding.spec.role.clone(),
                    scope: scope.clone(),
                    access: binding.spec.access,
                    binding: binding.name_any(),
                    expires_at: expires_at.map(|at| at.to_string()),
                });
        }
        outcomes.insert(binding.name_any(), outcome);
    }

    // SSO auto-join: each group entry's roles, bound to the prefixed RBAC Group.
    let mut group_grants = Grants::default();
    let groups = bind_groups(&bind_context, org, &identity, &mut group_grants);

    let role_bindings =
        native_role_bindings(org, &org_name, &shared_resources, &grants, &group_grants);
    let member_outcomes = member_outcomes(&memberships, &members, member_roles);
    let users: BTreeSet<Arc<str>> = members.values().map(|(_, user)| user.clone()).collect();
    let group_subjects = group_grants.names();
    let (cluster_role, cluster_role_binding) =
        organization_visibility(org, &org_name, &home, &resources, (&users, &group_subjects));
    DesiredAccess {
        role_bindings,
        cluster_role,
        cluster_role_binding,
        bindings: outcomes,
        members: member_outcomes,
        resources,
        refused,
        home,
        groups,
        next_expiry,
    }
}

/// When `binding` stops granting: its `spec.expiresAt`, or never. The bindings kube-org
/// makes for `spec.owners` never expire (who owns is the Organization's to say).
pub fn expiry(binding: &RoleBinding) -> Result<Option<Timestamp>, crate::api::fields::InvalidTime> {
    if binding.labels().contains_key(LABEL_OWNER) {
        return Ok(None);
    }
    binding
        .spec
        .expires_at
        .as_ref()
        .map(|at| at.parse())
        .transpose()
}

/// The status of a binding whose time is up.
fn expired(scope: String, binding: &RoleBinding, email: &str, at: Timestamp) -> BindingOutcome {
    let message = format!(
        "expired at {at}: {email} no longer holds {} on {scope}; move spec.expiresAt later to grant it again",
        binding.spec.role
    );
    BindingOutcome {
        expired_at: Some(Time(
            Timestamp::from_second(at.as_second()).unwrap_or(Timestamp::UNIX_EPOCH),
        )),
        ..grants_nothing(scope, EXPIRED, message)
    }
}

/// The Ready reason of a binding past its `spec.expiresAt`.
pub const EXPIRED: &str = "Expired";

/// Binds every `spec.membership.groups` entry (the same role and scope rules as a
/// RoleBinding; a refused role grants nothing and the others still bind) and says what
/// came of each. A group that is, or whose prefixed name is, a Kubernetes system group
/// grants nothing.
fn bind_groups(
    ctx: &BindContext<'_>,
    org: &Organization,
    identity: &Identity<'_>,
    grants: &mut Grants,
) -> Vec<GroupStatus> {
    org.spec
        .membership
        .groups
        .iter()
        .map(|entry| {
            let subject = identity.group(&entry.group);
            if entry.group.is_empty()
                || entry.group.starts_with(SYSTEM_PREFIX)
                || subject.starts_with(SYSTEM_PREFIX)
            {
                return GroupStatus {
                    group: entry.group.clone(),
                    subject: None,
                    ready: "False".to_string(),
                    reason: "SystemGroupNotAllowed".to_string(),
                    message: format!(
                        "{subject:?} is a Kubernetes system group, not an identity provider's; this entry grants nothing"
                    ),
                    resources: vec![],
                };
            }
            let name: Arc<str> = Arc::from(subject.as_str());
            let mut resources = BTreeSet::new();
            let mut problems = Vec::new();
            let mut bound = Vec::new();
            for role in &entry.roles {
                let binding = RoleBinding::new(
                    &entry.group,
                    RoleBindingSpec {
                        member: entry.group.as_str().into(),
                        role: role.role.clone(),
                        scope: role.scope.clone(),
                        access: role.access,
                        expires_at: None,
                    },
                );
                let outcome = bind(ctx, &binding, &name, grants);
                resources.extend(outcome.resources.iter().cloned());
                if outcome.ready.status {
                    bound.push(outcome.ready.message);
                } else {
                    problems.push((outcome.ready.reason, outcome.ready.message));
                }
            }
            let (ready, reason, message) = match problems.first() {
                None => ("True", "Bound".to_string(), bound.join("; ")),
                Some((reason, _)) => (
                    "False",
                    reason.clone(),
                    problems
                        .iter()
                        .map(|(_, message)| message.as_str())
                        .collect::<Vec<_>>()
                        .join("; "),
                ),
            };
            GroupStatus {
                group: entry.group.clone(),
                subject: Some(subject),
                ready: ready.to_string(),
                reason,
                message,
                resources: resources.into_iter().collect(),
            }
        })
        .collect()
}

/// The organization's resource namespaces per declared type (the home namespace and
/// types the organization does not declare are not resources).
pub fn resources_by_type(
    org: &Organization,
    home: &str,
    namespaces: &[&Namespace],
) -> BTreeMap<String, Vec<String>> {
    let mut by_type: BTreeMap<String, Vec<String>> = org
        .spec
        .resource_types
        .iter()
        .map(|t| (t.0.clone(), Vec::new()))
        .collect();
    for ns in namespaces {
        let name = ns.name_any();
        if name == home || ns.meta().deletion_timestamp.is_some() {
            continue;
        }
        if let Some(kind) = ns.labels().get(LABEL_RESOURCE_TYPE)
            && let Some(list) = by_type.get_mut(kind)
        {
            list.push(name);
        }
    }
    for list in by_type.values_mut() {
        list.sort();
    }
    by_type
}

/// The resource namespaces per type, each list shared by the statuses of every binding
/// to all resources of the type (rather than copied into each).
struct SharedResources {
    by_type: BTreeMap<String, Arc<[String]>>,
    /// Every resource namespace, sorted.
    every: Arc<[String]>,
}

impl SharedResources {
    fn new(resources: &BTreeMap<String, Vec<String>>) -> Self {
        let mut every: Vec<String> = resources.values().flatten().cloned().collect();
        every.sort();
        every.dedup();
        SharedResources {
            by_type: resources
                .iter()
                .map(|(kind, list)| (kind.clone(), Arc::from(list.as_slice())))
                .collect(),
            every: every.into(),
        }
    }

    /// The namespaces of `kind`, sorted.
    fn of_type(&self, kind: &str) -> Arc<[String]> {
        self.by_type
            .get(kind)
            .cloned()
            .unwrap_or_else(|| Arc::from([]))
    }
}

struct BindContext<'a> {
    table: &'a RoleTable<'a>,
    resources: &'a SharedResources,
    home: &'a str,
}

/// The status of a binding that grants nothing.
fn grants_nothing(scope: String, reason: &str, message: String) -> BindingOutcome {
    BindingOutcome {
        scope,
        resources: Arc::from([]),
        problems: vec![],
        ready: DesiredCondition::new(READY, false, reason, message),
        expired_at: None,
    }
}

fn refused(scope: String, problem: RoleProblem) -> BindingOutcome {
    grants_nothing(
        scope,
        problem.reason(),
        format!("{problem}; this binding grants nothing"),
    )
}

/// Resolves one binding of an active member into grants and its status.
fn bind(
    ctx: &BindContext<'_>,
    binding: &RoleBinding,
    user: &Arc<str>,
    grants: &mut Grants,
) -> BindingOutcome {
    let spec = &binding.spec;
    let scope = spec.scope.summary();
    let role = match ctx.table.resolve(spec) {
        Ok(role) => role,
        Err(problem) => return refused(scope, problem),
    };
    let full = spec.access == Access::Full;
    let (targets, problems) = match &role.target {
        ScopeTarget::Organization => {
            return bind_organization_role(ctx, &role, spec.access, scope, user, grants);
        }
        ScopeTarget::AllOfType(kind) => {
            if full && let Some(cluster_role) = &role.cluster_role {
                grants.in_type(kind, cluster_role, user);
                if cluster_role == "admin" {
                    grants.in_namespace(ctx.home, ROLEBINDING_READER_CLUSTER_ROLE, user);
                }
            }
            (ctx.resources.of_type(kind), vec![])
        }
        ScopeTarget::Named(kind, names) => {
            let available = ctx.resources.of_type(kind);
            let (found, missing): (Vec<String>, Vec<String>) = names
                .iter()
                .cloned()
                .partition(|n| available.binary_search(n).is_ok());
            if full && let Some(cluster_role) = &role.cluster_role {
                for ns in &found {
                    grants.in_namespace(ns, cluster_role, user);
                }
            }
            let problems = missing
                .into_iter()
                .map(|name| missing_resource(ctx, kind, name))
                .collect();
            (found.into(), problems)
        }
    };
    let ready = if problems.is_empty() {
        DesiredCondition::new(
            READY,
            true,
            "Bound",
            bound_message(&role, spec.access, targets.len()),
        )
    } else {
        let names: Vec<&str> = problems
            .iter()
            .map(|p: &TargetProblem| p.resource.as_str())
            .collect();
        DesiredCondition::new(
            READY,
            false,
            "ResourcesMissing",
            format!(
                "{} bound; not bound: {} (see status.problems)",
                bound_message(&role, spec.access, targets.len()),
                names.join(", ")
            ),
        )
    };
    BindingOutcome {
        scope,
        resources: targets,
        problems,
        ready,
        expired_at: None,
    }
}

fn bound_message(role: &ResolvedRole, access: Access, count: usize) -> String {
    let what = match (access, &role.cluster_role) {
        (Access::Console, _) => "console access (no role inside resources)".to_string(),
        (Access::Full, Some(cluster_role)) => format!("ClusterRole {cluster_role}"),
        (Access::Full, None) => "no role inside resources".to_string(),
    };
    format!("{} in {count} resource(s): {what}", role.name)
}

fn missing_resource(ctx: &BindContext<'_>, kind: &str, name: String) -> TargetProblem {
    let other_type = ctx
        .resources
        .by_type
        .iter()
        .find(|(_, list)| list.contains(&name))
        .map(|(t, _)| t.clone());
    match other_type {
        Some(other) => TargetProblem {
            message: format!("namespace {name} is a resource of type {other}, not {kind}"),
            resource: name,
            reason: "WrongResourceType".to_string(),
        },
        None => TargetProblem {
            message: format!(
                "no namespace {name} labelled kube-org.io/organization and kube-org.io/resource-type={kind}; it is bound as soon as one is"
            ),
            resource: name,
            reason: "ResourceNotFound".to_string(),
        },
    }
}

/// Organization-level roles never bind inside resources, except the owner's, which is
/// defined as its ClusterRole in every resource of every type.
fn bind_organization_role(
    ctx: &BindContext<'_>,
    role: &ResolvedRole,
    access: Access,
    scope: String,
    user: &Arc<str>,
    grants: &mut Grants,
) -> BindingOutcome {
    let mut resources = Arc::from([]);
    if role.name == ORGANIZATION_OWNER && !role.is_custom() {
        grants.in_namespace(ctx.home, OWNER_CLUSTER_ROLE, user);
        if access == Access::Full
            && let Some(cluster_role) = &role.cluster_role
        {
            for kind in ctx.resources.by_type.keys() {
                grants.in_type(kind, cluster_role, user);
            }
            resources = ctx.resources.every.clone();
        }
    } else {
        grants.in_namespace(ctx.home, READER_CLUSTER_ROLE, user);
        if let Some(cluster_role) = &role.cluster_role {
            grants.in_namespace(ctx.home, cluster_role, user);
        }
    }
    let message = format!("{} on the organization", role.name);
    BindingOutcome {
        scope,
        resources,
        problems: vec![],
        ready: DesiredCondition::new(READY, true, "Bound", message),
        expired_at: None,
    }
}

fn managed_meta(
    org: &Organization,
    org_name: &str,
    name: String,
    namespace: Option<String>,
) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace,
        labels: Some(managed_labels(org_name)),
        owner_references: org.controller_owner_ref(&()).map(|owner| vec![owner]),
        ..Default::default()
    }
}

fn native_role_bindings(
    org: &Organization,
    org_name: &str,
    resources: &SharedResources,
    grants: &Grants,
    group_grants: &Grants,
) -> Vec<DesiredRoleBinding> {
    /// The sets of names of one binding: (users, groups).
    type Parts = (Vec<Names>, Vec<Names>);
    fn add<'a>(
        all: &mut BTreeMap<(&'a str, &'a str), Parts>,
        grants: &'a Grants,
        resources: &'a SharedResources,
        pick: fn(&mut Parts) -> &mut Vec<Names>,
    ) {
        for ((kind, cluster_role), names) in &grants.by_type {
            // One set for every namespace of the type.
            let shared: Names = names.iter().cloned().collect();
            for namespace in resources
                .by_type
                .get(kind)
                .into_iter()
                .flat_map(|l| l.iter())
            {
                pick(all.entry((namespace, cluster_role)).or_default()).push(shared.clone());
            }
        }
        for (namespace, roles) in &grants.by_namespace {
            for (cluster_role, names) in roles {
                pick(all.entry((namespace, cluster_role)).or_default())
                    .push(names.iter().cloned().collect());
            }
        }
    }
    let mut all: BTreeMap<(&str, &str), Parts> = BTreeMap::new();
    add(&mut all, grants, resources, |parts| &mut parts.0);
    add(&mut all, group_grants, resources, |parts| &mut parts.1);
    all.into_iter()
        .map(
            |((namespace, cluster_role), (users, groups))| DesiredRoleBinding {
                metadata: managed_meta(
                    org,
                    org_name,
                    native_binding_name(org_name, cluster_role),
                    Some(namespace.to_string()),
                ),
                cluster_role: cluster_role.to_string(),
                users: NameSets::new(users),
                groups: NameSets::new(groups),
            },
        )
        .collect()
}

fn member_outcomes(
    memberships: &[&Membership],
    members: &BTreeMap<String, (String, Arc<str>)>,
    mut roles: BTreeMap<String, Vec<MemberRole>>,
) -> BTreeMap<String, MemberOutcome> {
    memberships
        .iter()
        .filter(|m| {
            members
                .get(&m.spec.email.normalized())
                .is_some_and(|(name, _)| *name == m.name_any())
        })
        .map(|m| {
            let mut member_roles = roles.remove(&m.name_any()).unwrap_or_default();
            member_roles.sort();
            let user = members
                .get(&m.spec.email.normalized())
                .map(|(_, user)| user.to_string())
                .unwrap_or_default();
            (
                m.name_any(),
                MemberOutcome {
                    user,
                    roles: member_roles,
                },
            )
        })
        .collect()
}

/// Every member may read the Organization object and `get` each resource namespace by
/// name: the console view of "which resources exist", and nothing inside them.
fn organization_visibility(
    org: &Organization,
    org_name: &str,
    home: &str,
    resources: &BTreeMap<String, Vec<String>>,
    (users, groups): (&BTreeSet<Arc<str>>, &BTreeSet<Arc<str>>),
) -> (ClusterRole, ClusterRoleBinding) {
    let name = organization_cluster_role_name(org_name);
    let mut namespaces: Vec<String> = resources.values().flatten().cloned().collect();
    namespaces.push(home.to_string());
    namespaces.sort();
    namespaces.dedup();
    let rules = vec![
        PolicyRule {
            api_groups: Some(vec![crate::api::GROUP.to_string()]),
            resources: Some(vec!["organizations".to_string()]),
            resource_names: Some(vec![org_name.to_string()]),
            verbs: vec!["get".to_string()],
            ..Default::default()
        },
        PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["namespaces".to_string()]),
            resource_names: Some(namespaces),
            verbs: vec!["get".to_string()],
            ..Default::default()
        },
    ];
    let cluster_role = ClusterRole {
        metadata: managed_meta(org, org_name, name.clone(), None),
        rules: Some(rules),
        aggregation_rule: None,
    };
    let binding = ClusterRoleBinding {
        metadata: managed_meta(org, org_name, name.clone(), None),
        role_ref: RoleRef {
            api_group: RBAC_GROUP.to_string(),
            kind: "ClusterRole".to_string(),
            name,
        },
        subjects: Some(
            users
                .iter()
                .map(|u| user_subject(u))
                .chain(groups.iter().map(|g| group_subject(g)))
                .collect(),
        ),
    };
    (cluster_role, binding)
}
