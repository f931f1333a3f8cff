//! Whether a member may leave (their Membership is being deleted): the last owner stays
//! while others or resources remain, and the sole member stays while resources remain.

use kube::{Resource, ResourceExt};

use crate::api::{Membership, Organization, RoleBinding};
use crate::catalog::ORGANIZATION_OWNER;

/// Why a member cannot leave yet.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LeaveRefusal {
    #[error("{email} is listed in spec.owners of Organization {org}: remove them there instead")]
    ListedInOwners { email: String, org: String },
    #[error(
        "{email} is the last owner of {org} while {others} other member(s) and {resources} resource(s) remain: make someone else an owner first"
    )]
    LastOwner {
        email: String,
        org: String,
        others: usize,
        resources: usize,
    },
    #[error(
        "{email} is the only member of {org} while {resources} resource(s) remain: remove the resources (unlabel their namespaces) first"
    )]
    ResourcesRemain {
        email: String,
        org: String,
        resources: usize,
    },
}

impl LeaveRefusal {
    /// The CamelCase reason shown in conditions and Events.
    pub fn reason(&self) -> &'static str {
        match self {
            LeaveRefusal::ListedInOwners { .. } => "ListedInOwners",
            LeaveRefusal::LastOwner { .. } => "LastOwner",
            LeaveRefusal::ResourcesRemain { .. } => "ResourcesRemain",
        }
    }
}

/// The emails (normalised) of those who hold the organization-owner role through a
/// binding (not being deleted).
pub fn owner_emails(bindings: &[&RoleBinding]) -> std::collections::HashSet<String> {
    bindings
        .iter()
        .filter(|b| b.spec.role == ORGANIZATION_OWNER && b.meta().deletion_timestamp.is_none())
        .map(|b| b.spec.member.normalized())
        .collect()
}

/// Whether kube-org holds this member's Membership with its finalizer: those whose
/// leaving the rules above could refuse — owners (through a binding, or listed in
/// `spec.owners`) — and every member of an exclusive organization, whose claim on the
/// person is given back the moment they leave. Anyone else may always go: a Membership
/// gone without the finalizer takes its RoleBindings with it (the orphaned-binding
/// step). The sole-member rule never holds a non-owner: `spec.owners` lists at least
/// one email, and kube-org keeps that owner's Membership. A member who becomes an owner
/// gets the finalizer on the next pass; one who stops being one keeps it (it is
/// released on leaving as for anyone), which costs no write.
///
/// Why not every member: at 1,000 members the finalizers were a third of a cold
/// converge's writes, and every Membership status waited for them.
pub fn held_on_leaving(
    org: &Organization,
    owners: &std::collections::HashSet<String>,
    m: &Membership,
) -> bool {
    let email = m.spec.email.normalized();
    org.spec.membership.exclusive
        || owners.contains(&email)
        || org.spec.owners.iter().any(|o| o.normalized() == email)
}

/// Decides whether `leaving` may go, given every Membership and RoleBinding of the
/// organization and how many resources it has. Memberships being deleted at the same
/// time do not count as staying.
pub fn may_leave(
    org: &Organization,
    leaving: &Membership,
    memberships: &[&Membership],
    bindings: &[&RoleBinding],
    resources: usize,
) -> Result<(), LeaveRefusal> {
    let email = leaving.spec.email.normalized();
    let org_name = org.name_any();
    let staying: Vec<String> = memberships
        .iter()
        .filter(|m| m.meta().deletion_timestamp.is_none())
        .map(|m| m.spec.email.normalized())
        .filter(|other| *other != email)
        .collect();
    let owners = owner_emails(bindings);
    let owner_stays = staying.iter().any(|other| owners.contains(other));
    if owners.contains(&email) && !owner_stays && (!staying.is_empty() || resources > 0) {
        return Err(LeaveRefusal::LastOwner {
            email,
            org: org_name,
            others: staying.len(),
            resources,
        });
    }
    if staying.is_empty() && resources > 0 {
        return Err(LeaveRefusal::ResourcesRemain {
            email,
            org: org_name,
            resources,
        });
    }
    if org.spec.owners.iter().any(|o| o.normalized() == email) {
        // kube-org would only create the Membership again.
        return Err(LeaveRefusal::ListedInOwners {
            email,
            org: org_name,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn org(owners: &str) -> Organization {
        serde_yaml::from_str(&format!(
            "{{metadata: {{name: acme}}, spec: {{owners: [{owners}]}}}}"
        ))
        .unwrap()
    }
    fn member(email: &str, leaving: bool) -> Membership {
        let mut m: Membership = serde_yaml::from_str(&format!(
            "{{metadata: {{name: {}, namespace: org-acme}}, spec: {{email: {email}}}}}",
            email.replace('@', "-")
        ))
        .unwrap();
        if leaving {
            m.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
        }
        m
    }
    fn owner_binding(email: &str) -> RoleBinding {
        serde_yaml::from_str(&format!(
            "{{metadata: {{name: o-{}, namespace: org-acme}}, spec: {{member: {email}, role: organization-owner, scope: {{organization: {{}}}}}}}}",
            email.replace('@', "-")
        ))
        .unwrap()
    }

    #[test]
    fn the_last_owner_stays_while_others_or_resources_remain() {
        let org = org("root@example.com");
        let (bob, carol) = (
            member("bob@example.com", true),
            member("carol@example.com", false),
        );
        let bindings = [owner_binding("bob@example.com")];
        let refusal = may_leave(
            &org,
            &bob,
            &[&bob, &carol],
            &bindings.iter().collect::<Vec<_>>(),
            0,
        )
        .unwrap_err();
        assert_eq!(refusal.reason(), "LastOwner");
        // Another owner stays: bob may go.
        let bindings = [
            owner_binding("bob@example.com"),
            owner_binding("carol@example.com"),
        ];
        assert!(
            may_leave(
                &org,
                &bob,
                &[&bob, &carol],
                &bindings.iter().collect::<Vec<_>>(),
                3
            )
            .is_ok()
        );
    }

    #[test]
    fn the_sole_member_leaves_only_without_resources() {
        let org = org("root@example.com");
        let bob = member("bob@example.com", true);
        assert_eq!(
            may_leave(&org, &bob, &[&bob], &[], 2).unwrap_err().reason(),
            "ResourcesRemain"
        );
        assert!(may_leave(&org, &bob, &[&bob], &[], 0).is_ok());
    }

    #[test]
    fn owners_listed_in_the_organization_are_removed_there() {
        let org = org("bob@example.com");
        let (bob, root) = (
            member("Bob@example.com", true),
            member("root@example.com", false),
        );
        let bindings = [
            owner_binding("bob@example.com"),
            owner_binding("root@example.com"),
        ];
        let bindings: Vec<_> = bindings.iter().collect();
        assert_eq!(
            may_leave(&org, &bob, &[&bob, &root], &bindings, 0)
                .unwrap_err()
                .reason(),
            "ListedInOwners"
        );
        // The last owner hears the more important reason.
        assert_eq!(
            may_leave(&org, &bob, &[&bob, &root], &bindings[..1], 0)
                .unwrap_err()
                .reason(),
            "LastOwner"
        );
    }

    #[test]
    fn owners_and_members_of_exclusive_organizations_are_held_with_the_finalizer() {
        let org = org("root@example.com");
        let bindings = [owner_binding("Bob@example.com")];
        let owners = owner_emails(&bindings.iter().collect::<Vec<_>>());
        assert!(held_on_leaving(
            &org,
            &owners,
            &member("bob@example.com", false)
        ));
        assert!(held_on_leaving(
            &org,
            &owners,
            &member("root@example.com", false)
        ));
        assert!(!held_on_leaving(
            &org,
            &owners,
            &member("carol@example.com", false)
        ));
        let mut exclusive = org;
        exclusive.spec.membership.exclusive = true;
        assert!(held_on_leaving(
            &exclusive,
            &owners,
            &member("carol@example.com", false)
        ));
    }

    #[test]
    fn an_ordinary_member_leaves_freely() {
        let org = org("root@example.com");
        let (bob, root) = (
            member("bob@example.com", true),
            member("root@example.com", false),
        );
        let bindings = [owner_binding("root@example.com")];
        assert!(
            may_leave(
                &org,
                &bob,
                &[&bob, &root],
                &bindings.iter().collect::<Vec<_>>(),
                5
            )
            .is_ok()
        );
    }
}
