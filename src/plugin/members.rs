//! `kubectl org members` and `kubectl org access`: what kube-org reports in each
//! Membership's status (the roles a member holds, and where that lets them go).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde::Serialize;

use crate::access::identity::reported_user;
use crate::api::Membership;
use crate::api::membership::{AccessGroup, MemberRole, NamespaceAccess};

use super::cli::{AccessArgs, ListArgs};
use super::cluster::OrgContext;
use super::error::PluginError;
use super::output::{Table, condition_status, joined, note, role_label, show};

/// One member as `-o yaml|json` prints it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberView {
    pub name: String,
    pub email: String,
    /// The RBAC user name kube-org bound (`status.user`: the username prefix + the
    /// email, or `spec.user`); before kube-org reports it, `spec.user` or the email.
    pub user: String,
    /// `Owner`, `Declared` or `Invitation/<name>`; `-` before kube-org has seen it.
    pub source: String,
    /// The `Ready` condition: `True`, `False`, `Unknown`, or `-`.
    pub ready: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub joined_at: Option<Time>,
    pub roles: Vec<MemberRole>,
    pub access: Vec<NamespaceAccess>,
    /// For an SSO auto-join entry (`spec.membership.groups`): the identity-provider
    /// group; `email` is then empty and `user` is the RBAC Group bound.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

impl MemberView {
    /// The organization's auto-join group entries, with what kube-org reported of each.
    pub fn groups(org: &crate::api::Organization) -> Vec<MemberView> {
        let reported = org
            .status
            .as_ref()
            .map(|s| s.groups.clone())
            .unwrap_or_default();
        org.spec
            .membership
            .groups
            .iter()
            .map(|entry| {
                let status = reported.iter().find(|g| g.group == entry.group);
                MemberView {
                    name: format!("group:{}", entry.group),
                    email: String::new(),
                    user: status
                        .and_then(|g| g.subject.clone())
                        .unwrap_or_else(|| "-".to_string()),
                    source: "Group".to_string(),
                    ready: status
                        .map(|g| g.ready.clone())
                        .unwrap_or_else(|| "-".to_string()),
                    joined_at: None,
                    roles: entry
                        .roles
                        .iter()
                        .map(|r| MemberRole {
                            role: r.role.clone(),
                            scope: r.scope.summary(),
                            access: r.access,
                            binding: String::new(),
                            expires_at: None,
                        })
                        .collect(),
                    access: vec![],
                    group: Some(entry.group.clone()),
                }
            })
            .collect()
    }

    pub fn new(membership: &Membership) -> Self {
        let status = membership.status.clone().unwrap_or_default();
        MemberView {
            name: membership.metadata.name.clone().unwrap_or_default(),
            email: membership.spec.email.normalized(),
            user: reported_user(membership),
            source: status.source.unwrap_or_else(|| "-".to_string()),
            ready: condition_status(&status.conditions, "Ready"),
            joined_at: status.joined_at,
            roles: status.roles,
            access: AccessGroup::by_namespace(&status.access),
            group: None,
        }
    }
}

/// One role, with its end for a time-bound one.
fn role_cell(r: &MemberRole) -> String {
    let label = role_label(&r.role, &r.scope, r.access);
    match &r.expires_at {
        Some(at) => format!("{label} until {at}"),
        None => label,
    }
}

/// The roles of a member in one cell.
fn roles_cell(roles: &[MemberRole]) -> String {
    joined(roles.iter().map(role_cell), ", ")
}

/// The members table.
pub fn members_table(members: &[MemberView]) -> Table {
    let mut table = Table::new(&["EMAIL", "USER", "SOURCE", "ROLES", "READY"]);
    for member in members {
        table.row(vec![
            match &member.group {
                Some(group) => format!("group:{group}"),
                None => member.email.clone(),
            },
            member.user.clone(),
            member.source.clone(),
            roles_cell(&member.roles),
            member.ready.clone(),
        ]);
    }
    table
}

/// `kubectl org members`.
pub async fn members(ctx: &OrgContext, args: &ListArgs) -> Result<(), PluginError> {
    let mut views: Vec<MemberView> = ctx
        .list_memberships()
        .await?
        .iter()
        .map(MemberView::new)
        .collect();
    views.sort_by(|a, b| a.email.cmp(&b.email));
    views.extend(MemberView::groups(&ctx.organization));
    let empty = format!("No members in organization {}.", ctx.name);
    show(args.output.format, &views, &members_table(&views), &empty)
}

/// Where one member can go, as `-o yaml|json` prints it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessView {
    pub email: String,
    /// The RBAC user name that holds this access.
    pub user: String,
    pub organization: String,
    pub access: Vec<NamespaceAccess>,
}

/// The access table: each namespace and the ClusterRoles held there.
pub fn access_table(access: &[NamespaceAccess]) -> Table {
    let mut table = Table::new(&["NAMESPACE", "CLUSTERROLES"]);
    for entry in access {
        table.row(vec![
            entry.namespace.clone(),
            joined(&entry.cluster_roles, ","),
        ]);
    }
    table
}

/// `kubectl org access EMAIL`.
pub async fn access(ctx: &OrgContext, args: &AccessArgs) -> Result<(), PluginError> {
    let membership = ctx.find_membership(&args.email).await?;
    let reconciled = membership
        .status
        .as_ref()
        .is_some_and(|s| s.observed_generation.is_some());
    let member = MemberView::new(&membership);
    if !reconciled {
        note(&format!(
            "note: kube-org has not reported on {}'s Membership yet (is the operator running?); access may be incomplete",
            member.email
        ));
    }
    let empty = format!(
        "{} holds no ClusterRole inside any resource of organization {}.",
        member.email, ctx.name
    );
    let table = access_table(&member.access);
    let ending: Vec<String> = member
        .roles
        .iter()
        .filter(|r| r.expires_at.is_some())
        .map(role_cell)
        .collect();
    if args.output.format.is_none() && !ending.is_empty() {
        note(&format!("note: time-bound: {}", ending.join(", ")));
    }
    let view = AccessView {
        email: member.email,
        user: member.user,
        organization: ctx.name.clone(),
        access: member.access,
    };
    show(args.output.format, &view, &table, &empty)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bob() -> Membership {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "kube-org.io/v1alpha1", "kind": "Membership",
            "metadata": {"name": "bob", "namespace": "org-acme"},
            "spec": {"email": "Bob@Example.com"},
            "status": {
                "source": "Declared",
                "user": "oidc:bob@example.com",
                "observedGeneration": 1,
                "conditions": [{"type": "Ready", "status": "True", "reason": "Bound", "message": "",
                                "lastTransitionTime": "2023-11-14T22:13:20Z"}],
                "roles": [
                    {"role": "viewer", "scope": "deployment/*", "access": "full", "binding": "bob-viewer",
                     "expiresAt": "2026-12-31T00:00:00Z"},
                    {"role": "billing-admin", "scope": "organization", "access": "console", "binding": "bob-billing"},
                ],
                "access": [
                    {"clusterRoles": ["view"], "namespaces": ["acme-staging"]},
                    {"clusterRoles": ["edit", "view"], "namespaces": ["acme-prod"]},
                ],
            },
        }))
        .expect("a membership")
    }

    #[test]
    fn members_show_roles_with_scopes() {
        let carol: Membership = serde_json::from_value(serde_json::json!({
            "apiVersion": "kube-org.io/v1alpha1", "kind": "Membership",
            "metadata": {"name": "carol"}, "spec": {"email": "carol@example.com", "user": "carol"},
        }))
        .expect("a membership");
        let views = [MemberView::new(&bob()), MemberView::new(&carol)];
        assert_eq!(views[1].user, "carol");
        assert_eq!(
            members_table(&views).render(),
            "EMAIL               USER                   SOURCE     ROLES                                                                                        READY\n\
             bob@example.com     oidc:bob@example.com   Declared   viewer on deployment/* until 2026-12-31T00:00:00Z, billing-admin on organization (console)   True\n\
             carol@example.com   carol                  -          -                                                                                            -\n"
        );
    }

    #[test]
    fn auto_join_groups_are_listed_after_the_members() {
        let org: crate::api::Organization = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "acme"},
            "spec": {"owners": ["a@example.com"], "membership": {"groups": [
                {"group": "developers", "roles": [{"role": "viewer", "scope": {"resourceType": "deployment", "all": true}}]},
            ]}},
            "status": {"groups": [{"group": "developers", "subject": "oidc:developers", "ready": "True",
                                   "reason": "Bound", "message": "", "resources": ["prod"]}]},
        }))
        .expect("an organization");
        let views = MemberView::groups(&org);
        assert_eq!(
            members_table(&views).render(),
            "EMAIL              USER              SOURCE   ROLES                    READY\n\
             group:developers   oidc:developers   Group    viewer on deployment/*   True\n"
        );
        let json = serde_json::to_value(&views[0]).expect("serializes");
        assert_eq!(json["group"], "developers");
        assert!(serde_json::to_value(MemberView::new(&bob())).unwrap()["group"].is_null());
    }

    #[test]
    fn access_lists_namespaces_and_cluster_roles() {
        let view = MemberView::new(&bob());
        assert_eq!(
            access_table(&view.access).render(),
            "NAMESPACE      CLUSTERROLES\nacme-prod      edit,view\nacme-staging   view\n"
        );
        let json = serde_json::to_value(&view).expect("serializes");
        assert_eq!(json["email"], "bob@example.com");
        assert_eq!(json["user"], "oidc:bob@example.com");
        assert_eq!(json["roles"][0]["scope"], "deployment/*");
        assert_eq!(
            json["access"],
            serde_json::json!([
                {"namespace": "acme-prod", "clusterRoles": ["edit", "view"]},
                {"namespace": "acme-staging", "clusterRoles": ["view"]},
            ])
        );
    }
}
