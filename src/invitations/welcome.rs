//! What the success page says: where the person can go now (each resource namespace and
//! the ClusterRoles held there, from the roles just accepted) and how to connect.
//!
//! The access comes from the same pure function the controller applies
//! ([`crate::access::desired_access`]), fed with the organization, the new Membership,
//! its RoleBindings and the organization's cached namespaces: the page says what the
//! controller is about to grant, without waiting for it.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Namespace;
use serde::Serialize;

use super::join::{bindings_for, membership_for};
use crate::access::identity::IdentityDefaults;
use crate::access::{AccessInput, desired_access};
use crate::api::membership::NamespaceAccess;
use crate::api::{Invitation, Organization};

/// One role accepted, as the answer lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AcceptedRole {
    pub role: String,
    pub scope: String,
}

/// Where the person can go.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Reach {
    /// The RBAC user name bound.
    pub user: String,
    pub roles: Vec<AcceptedRole>,
    pub access: Vec<NamespaceAccess>,
}

/// What `invitation`'s roles let `user` reach in `org`, given its labelled namespaces.
pub fn reach(
    org: &Organization,
    invitation: &Invitation,
    user: &str,
    namespaces: &[&Namespace],
    identity: &IdentityDefaults,
) -> Reach {
    let mut membership = membership_for(invitation);
    membership.spec.user = Some(user.to_string());
    // Where the roles reach at acceptance (a time-bound one still holds then).
    let accepted = super::join::accepted_at(invitation, k8s_openapi::jiff::Timestamp::now());
    let bindings = bindings_for(invitation, accepted);
    let none = BTreeSet::new();
    let refused = BTreeMap::new();
    let desired = desired_access(&AccessInput {
        org,
        memberships: vec![&membership],
        bindings: bindings.iter().collect(),
        namespaces: namespaces.to_vec(),
        unbindable: &none,
        refused: &refused,
        kept: &none,
        identity,
        now: accepted,
    });
    Reach {
        user: user.to_string(),
        roles: invitation
            .spec
            .roles
            .iter()
            .map(|r| AcceptedRole {
                role: r.role.clone(),
                scope: r.scope.summary(),
            })
            .collect(),
        access: desired.access_of(user),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Access, Scope};
    use crate::invitations::fixtures::{self, role};

    fn namespace(name: &str, kind: &str) -> Namespace {
        serde_json::from_value(serde_json::json!({"metadata": {"name": name, "labels": {
            "kube-org.io/organization": "acme", "kube-org.io/resource-type": kind}}}))
        .unwrap()
    }

    #[test]
    fn the_answer_lists_each_namespace_the_accepted_roles_reach() {
        let org: Organization = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "acme"}, "spec": {"owners": ["a@example.com"]},
        }))
        .unwrap();
        let invitation = fixtures::invitation(
            "dave",
            "dave@example.com",
            vec![
                role("viewer", Scope::all_of("deployment"), Access::Full),
                role("admin", Scope::named("deployment", &["prod"]), Access::Full),
            ],
        );
        let (prod, dev) = (
            namespace("prod", "deployment"),
            namespace("dev", "deployment"),
        );
        let reach = reach(
            &org,
            &invitation,
            "oidc:dave@example.com",
            &[&prod, &dev],
            &IdentityDefaults::default(),
        );
        assert_eq!(reach.user, "oidc:dave@example.com");
        assert_eq!(
            reach.access,
            [
                NamespaceAccess {
                    namespace: "dev".into(),
                    cluster_roles: vec!["view".into()]
                },
                NamespaceAccess {
                    namespace: "prod".into(),
                    cluster_roles: vec!["admin".into(), "view".into()]
                },
            ]
        );
        assert_eq!(reach.roles[1].scope, "deployment/prod");
    }
}
