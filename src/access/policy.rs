//! Who may be a member: the organization's membership policy, checked the same way on
//! every path — Invitations, acceptance and Memberships declared directly — so that no
//! path is a way around another.

use std::collections::BTreeMap;

use kube::ResourceExt;

use super::identity::Identity;
use crate::api::condition::READY;
use crate::api::{Email, Membership, Organization, RoleBinding};

/// Why a person may not be (or become) a member, as a condition reason and a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyRefusal {
    pub reason: &'static str,
    pub message: String,
}

/// The prefix of the identities Kubernetes itself names (service accounts, nodes,
/// `system:anonymous`, `system:admin`): never a person.
pub const SYSTEM_PREFIX: &str = "system:";

/// `spec.membership.allowedEmailDomains`: refuses an email outside them (empty allows
/// any).
pub fn domain_refusal(org: &Organization, email: &Email) -> Option<PolicyRefusal> {
    let allowed = &org.spec.membership.allowed_email_domains;
    let domain = email.domain();
    if allowed.is_empty() || allowed.iter().any(|d| d.0.eq_ignore_ascii_case(&domain)) {
        return None;
    }
    let list: Vec<&str> = allowed.iter().map(|d| d.0.as_str()).collect();
    Some(PolicyRefusal {
        reason: "DomainNotAllowed",
        message: format!(
            "{} is not in an allowed email domain of the organization ({})",
            email.normalized(),
            list.join(", ")
        ),
    })
}

/// A user name that is a Kubernetes system identity (admission refuses it too; this
/// holds for objects written before that rule existed, and for the prefixed name).
pub fn user_refusal(user: Option<&str>) -> Option<PolicyRefusal> {
    let user = user?;
    user.starts_with(SYSTEM_PREFIX).then(|| PolicyRefusal {
        reason: "SystemUserNotAllowed",
        message: format!(
            "the user name {user} is a Kubernetes system identity, not a person; remove spec.user to bind the email (and check spec.identity.usernamePrefix)"
        ),
    })
}

/// Why a Membership grants nothing under the organization's own policy. The owners a
/// cluster admin names in `spec.owners` are exempt from the domain rule (the admin
/// chose them), not from the system-identity rule.
pub fn membership_refusal(
    org: &Organization,
    identity: &Identity<'_>,
    membership: &Membership,
) -> Option<PolicyRefusal> {
    let user = identity.member_user(membership);
    if let Some(refusal) = user_refusal(Some(&user)) {
        return Some(refusal);
    }
    let email = membership.spec.email.normalized();
    let named_owner = org.spec.owners.iter().any(|o| o.normalized() == email);
    if named_owner {
        return None;
    }
    domain_refusal(org, &membership.spec.email)
}

/// The policy refusals of an organization's Memberships, by Membership name.
pub fn membership_refusals(
    org: &Organization,
    identity: &Identity<'_>,
    memberships: &[&Membership],
) -> BTreeMap<String, PolicyRefusal> {
    memberships
        .iter()
        .filter_map(|m| membership_refusal(org, identity, m).map(|r| (m.name_any(), r)))
        .collect()
}

/// Reasons a binding's status gives when its member was not found (or refused): the
/// binding never granted anything to a present member.
const MEMBER_ABSENT_REASONS: [&str; 2] = ["MemberNotFound", "MemberRefused"];

/// RoleBindings left behind by a member whose Membership went away without kube-org's
/// finalizer (deleted before the finalizer was added): their status shows they were
/// evaluated for a present member, and no Membership of that email remains. They are
/// deleted as the finalizer would have done. A binding written before its Membership
/// (GitOps applies in any order) says `MemberNotFound` and is kept.
///
/// `bound_before`: uids of bindings the organization's previous plan evaluated for a
/// present member. The status saying so is written later, off the access path, and a
/// Membership deleted meanwhile would otherwise leave its binding behind.
pub fn orphaned_bindings<'a>(
    bindings: &[&'a RoleBinding],
    memberships: &[&Membership],
    bound_before: &std::collections::HashSet<String>,
) -> Vec<&'a RoleBinding> {
    let members: std::collections::HashSet<String> = memberships
        .iter()
        .map(|m| m.spec.email.normalized())
        .collect();
    bindings
        .iter()
        .copied()
        .filter(|b| b.metadata.deletion_timestamp.is_none())
        .filter(|b| !members.contains(&b.spec.member.normalized()))
        .filter(|b| {
            evaluated_for_present_member(b)
                || b.metadata
                    .uid
                    .as_ref()
                    .is_some_and(|u| bound_before.contains(u))
        })
        .collect()
}

/// Whether a binding's Ready reason says it was evaluated for a present member.
pub fn for_present_member(reason: &str) -> bool {
    !MEMBER_ABSENT_REASONS.contains(&reason)
}

/// Whether a binding's status shows it was evaluated for a present member (what
/// [`orphaned_bindings`] reads of it). Its change wakes the organization
/// ([`crate::organizations::triggers`]): a Membership deleted before its finalizer may
/// already be gone when the status saying so is written.
pub fn evaluated_for_present_member(b: &RoleBinding) -> bool {
    ready_reason(b).is_some_and(for_present_member)
}

/// Whether a binding's status shows it was evaluated for an absent member: it grants
/// nothing, and kube-org keeps it (a binding GitOps applies again after its member left
/// waits there for them to come back).
pub fn evaluated_for_absent_member(b: &RoleBinding) -> bool {
    ready_reason(b).is_some_and(|reason| !for_present_member(reason))
}

fn ready_reason(b: &RoleBinding) -> Option<&str> {
    b.status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == READY))
        .map(|c| c.reason.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn org(extra: serde_json::Value) -> Organization {
        let mut spec = serde_json::json!({"owners": ["alice@other.org"]});
        for (k, v) in extra.as_object().unwrap() {
            spec[k] = v.clone();
        }
        serde_json::from_value(serde_json::json!({"metadata": {"name": "acme"}, "spec": spec}))
            .unwrap()
    }

    fn membership(name: &str, email: &str, user: Option<&str>) -> Membership {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "org-acme"},
            "spec": {"email": email, "user": user},
        }))
        .unwrap()
    }

    fn binding(name: &str, member: &str, reason: Option<&str>) -> RoleBinding {
        let mut value = serde_json::json!({
            "metadata": {"name": name, "namespace": "org-acme"},
            "spec": {"member": member, "role": "viewer", "scope": {"resourceType": "deployment", "all": true}},
        });
        if let Some(reason) = reason {
            value["status"] = serde_json::json!({"conditions": [{
                "type": "Ready", "status": "True", "reason": reason, "message": "",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
            }]});
        }
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn declared_members_outside_the_allowed_domains_are_refused_but_named_owners_are_not() {
        let org = org(serde_json::json!({"membership": {"allowedEmailDomains": ["example.com"]}}));
        let inside = membership("a", "Bob@Example.com", None);
        let outside = membership("b", "eve@evil.test", None);
        let owner = membership("c", "alice@other.org", None);
        assert_eq!(
            membership_refusal(&org, &Identity::default(), &inside),
            None
        );
        let refusal = membership_refusal(&org, &Identity::default(), &outside).unwrap();
        assert_eq!(refusal.reason, "DomainNotAllowed");
        assert!(
            refusal.message.contains("example.com"),
            "{}",
            refusal.message
        );
        assert_eq!(membership_refusal(&org, &Identity::default(), &owner), None);
    }

    #[test]
    fn system_identities_are_refused_whoever_the_member_is() {
        let org = org(serde_json::json!({}));
        for user in [
            "system:anonymous",
            "system:admin",
            "system:serviceaccount:kube-system:default",
        ] {
            let m = membership("a", "alice@other.org", Some(user));
            assert_eq!(
                membership_refusal(&org, &Identity::default(), &m).map(|r| r.reason),
                Some("SystemUserNotAllowed"),
                "{user}"
            );
        }
        let m = membership("a", "bob@example.com", Some("oidc:bob@example.com"));
        assert_eq!(membership_refusal(&org, &Identity::default(), &m), None);
        // A prefix admission would refuse today (an object older than the rule): the
        // prefixed name is checked, not only spec.user.
        let old = Identity {
            username_prefix: "system:",
            groups_prefix: "",
        };
        let m = membership("a", "bob@example.com", None);
        assert_eq!(
            membership_refusal(&org, &old, &m).map(|r| r.reason),
            Some("SystemUserNotAllowed")
        );
    }

    #[test]
    fn bindings_of_a_member_gone_without_the_finalizer_are_orphans_but_early_ones_are_not() {
        let bound = binding("bound", "dave@example.com", Some("Bound"));
        let early = binding("early", "erin@example.com", Some("MemberNotFound"));
        let fresh = binding("fresh", "frank@example.com", None);
        let kept = binding("kept", "bob@example.com", Some("Bound"));
        let bob = membership("bob", "bob@example.com", None);
        let orphans = orphaned_bindings(
            &[&bound, &early, &fresh, &kept],
            &[&bob],
            &Default::default(),
        );
        let names: Vec<String> = orphans.iter().map(|b| b.name_any()).collect();
        assert_eq!(names, vec!["bound".to_string()]);
    }

    #[test]
    fn a_binding_the_last_plan_bound_is_an_orphan_before_its_status_says_so() {
        let mut planned = binding("planned", "dave@example.com", Some("MemberNotFound"));
        planned.metadata.uid = Some("u-planned".to_string());
        let mut early = binding("early", "erin@example.com", None);
        early.metadata.uid = Some("u-early".to_string());
        let bound_before = std::collections::HashSet::from(["u-planned".to_string()]);
        let orphans = orphaned_bindings(&[&planned, &early], &[], &bound_before);
        let names: Vec<String> = orphans.iter().map(|b| b.name_any()).collect();
        assert_eq!(names, vec!["planned".to_string()]);
    }

    #[test]
    fn a_binding_without_a_status_is_evaluated_for_neither_kind_of_member() {
        let present = binding("a", "bob@example.com", Some("Bound"));
        let absent = binding("b", "bob@example.com", Some("MemberNotFound"));
        let refused = binding("c", "bob@example.com", Some("MemberRefused"));
        let fresh = binding("d", "bob@example.com", None);
        assert!(evaluated_for_present_member(&present) && !evaluated_for_absent_member(&present));
        assert!(!evaluated_for_present_member(&absent) && evaluated_for_absent_member(&absent));
        assert!(evaluated_for_absent_member(&refused));
        assert!(!evaluated_for_present_member(&fresh) && !evaluated_for_absent_member(&fresh));
    }
}
