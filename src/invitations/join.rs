//! What accepting an invitation creates: the Membership and one kube-org RoleBinding
//! per offered role, with deterministic names so that creating them twice is harmless.
//! Neither has an owner reference to the Invitation: pruning the Invitation (GitOps)
//! must not remove the member.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource, ResourceExt};
use sha2::{Digest, Sha256};

use super::lifecycle::joined_status;
use super::write_status;
use crate::access::names::{ANNOTATION_SOURCE, person_object_name};
use crate::api::fields::Rfc3339;
use crate::api::fields::normalize_email;
use crate::api::{
    Invitation, Membership, MembershipSpec, RoleAssignment, RoleBinding, RoleBindingSpec,
    SignedInSubject,
};

/// The field manager of `status.subject` (the controller's status writes, as `kube-org`,
/// do not own it and so keep it).
pub const SUBJECT_FIELD_MANAGER: &str = "kube-org-accept";

/// Why creating the member's objects failed.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("creating {kind} {name}: {source}")]
    Create {
        kind: &'static str,
        name: String,
        source: kube::Error,
    },
    #[error("Membership {0} exists for another email")]
    NameTaken(String),
    #[error("recording the acceptance of Invitation {0}: {1}")]
    Status(String, kube::Error),
}

/// The name of the Membership an invitation creates.
pub fn membership_name(email: &str) -> String {
    person_object_name("member", &normalize_email(email))
}

/// The name of the RoleBinding created for one offered role.
pub fn binding_name(email: &str, offered: &RoleAssignment) -> String {
    let key = format!(
        "{}|{}|{:?}",
        offered.role,
        offered.scope.summary(),
        offered.access
    );
    let digest = Sha256::digest(key.as_bytes());
    let hash: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{hash}",
        person_object_name(&offered.role, &normalize_email(email))
    )
}

fn source(invitation: &Invitation) -> BTreeMap<String, String> {
    BTreeMap::from([(
        ANNOTATION_SOURCE.to_string(),
        format!("Invitation/{}", invitation.name_any()),
    )])
}

fn meta(invitation: &Invitation, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: invitation.namespace(),
        annotations: Some(source(invitation)),
        ..Default::default()
    }
}

/// The Membership an invitation creates.
pub fn membership_for(invitation: &Invitation) -> Membership {
    let email = invitation.spec.email.normalized();
    Membership {
        metadata: meta(invitation, membership_name(&email)),
        spec: MembershipSpec {
            email: email.as_str().into(),
            user: None,
        },
        status: None,
    }
}

/// When the invitation was accepted (`status.acceptedAt`, written before anything is
/// created), or `now` when the status does not say.
pub fn accepted_at(invitation: &Invitation, now: Timestamp) -> Timestamp {
    invitation
        .status
        .as_ref()
        .and_then(|s| s.accepted_at.as_ref())
        .map_or(now, |t| t.0)
}

/// When the role offered ends if accepted at `accepted_at`: `expiresAfter` later, or
/// never. A duration that does not parse (admission refuses it) ends it at once.
pub fn offered_expiry(offered: &RoleAssignment, accepted_at: Timestamp) -> Option<Rfc3339> {
    let after = offered.expires_after.as_ref()?;
    let at = after
        .to_std()
        .ok()
        .and_then(|d| k8s_openapi::jiff::SignedDuration::try_from(d).ok())
        .and_then(|d| accepted_at.checked_add(d).ok())
        .unwrap_or(accepted_at);
    Some(Rfc3339::at(
        Timestamp::from_second(at.as_second()).unwrap_or(at),
    ))
}

/// The RoleBindings an invitation accepted at `accepted_at` creates, one per offered
/// role (a time-bound one with `spec.expiresAt` = `accepted_at` + `expiresAfter`).
pub fn bindings_for(invitation: &Invitation, accepted_at: Timestamp) -> Vec<RoleBinding> {
    let email = invitation.spec.email.normalized();
    invitation
        .spec
        .roles
        .iter()
        .map(|offered| RoleBinding {
            metadata: meta(invitation, binding_name(&email, offered)),
            spec: RoleBindingSpec {
                member: email.as_str().into(),
                role: offered.role.clone(),
                scope: offered.scope.clone(),
                access: offered.access,
                expires_at: offered_expiry(offered, accepted_at),
            },
            status: None,
        })
        .collect()
}

fn already_exists(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 409)
}

/// Creates the Membership and RoleBindings (those that exist already are kept) and
/// records the invitation as Accepted (its token's hashes went with the Joining write).
/// Safe to repeat.
pub async fn finish(
    client: &Client,
    writes: &crate::metrics::Metrics,
    invitation: &Invitation,
) -> Result<Invitation, JoinError> {
    finish_as(client, writes, invitation, None).await
}

/// Who signed in to accept: recorded on the Membership.
#[derive(Clone, Debug)]
pub struct Person {
    /// `spec.user` of the new Membership, when the cluster's name for the person is not
    /// the default (the provider spells the email with capitals, which the apiserver
    /// keeps).
    pub user: Option<String>,
    pub subject: SignedInSubject,
}

/// [`finish`], recording who signed in (`status.subject`, written by the accept
/// endpoint's own field manager so that the controller's status writes keep it).
pub async fn finish_as(
    client: &Client,
    writes: &crate::metrics::Metrics,
    invitation: &Invitation,
    person: Option<&Person>,
) -> Result<Invitation, JoinError> {
    let namespace = invitation.namespace().unwrap_or_default();
    let memberships: Api<Membership> = Api::namespaced(client.clone(), &namespace);
    let mut membership = membership_for(invitation);
    membership.spec.user = person.and_then(|p| p.user.clone());
    let name = membership.name_any();
    writes.write("memberships", "create");
    if let Err(error) = memberships
        .create(&PostParams::default(), &membership)
        .await
    {
        if !already_exists(&error) {
            return Err(JoinError::Create {
                kind: "Membership",
                name,
                source: error,
            });
        }
        let existing = memberships
            .get(&name)
            .await
            .map_err(|source| JoinError::Create {
                kind: "Membership",
                name: name.clone(),
                source,
            })?;
        if existing.spec.email.normalized() != membership.spec.email.normalized() {
            return Err(JoinError::NameTaken(name));
        }
    }
    if let Some(person) = person {
        let body = serde_json::json!({
            "apiVersion": crate::api::Membership::api_version(&()),
            "kind": crate::api::Membership::kind(&()),
            "status": {"subject": person.subject},
        });
        writes.write("memberships/status", "apply");
        memberships
            .patch_status(
                &name,
                &PatchParams::apply(SUBJECT_FIELD_MANAGER).force(),
                &Patch::Apply(body),
            )
            .await
            .map_err(|source| JoinError::Create {
                kind: "Membership status",
                name: name.clone(),
                source,
            })?;
    }
    let bindings: Api<RoleBinding> = Api::namespaced(client.clone(), &namespace);
    for binding in bindings_for(invitation, accepted_at(invitation, Timestamp::now())) {
        writes.write("rolebindings", "create");
        match bindings.create(&PostParams::default(), &binding).await {
            Ok(_) => {}
            Err(error) if already_exists(&error) => {}
            Err(source) => {
                return Err(JoinError::Create {
                    kind: "RoleBinding",
                    name: binding.name_any(),
                    source,
                });
            }
        }
    }
    let invitations: Api<Invitation> = Api::namespaced(client.clone(), &namespace);
    let mut current = invitation.clone();
    let written = loop {
        let status = joined_status(&current, Timestamp::now());
        match write_status(&invitations, writes, &current, status).await {
            Ok(written) => break written,
            Err(error) if already_exists(&error) => {
                current = invitations
                    .get(&current.name_any())
                    .await
                    .map_err(|e| JoinError::Status(current.name_any(), e))?;
            }
            Err(error) => return Err(JoinError::Status(current.name_any(), error)),
        }
    };
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Access, Scope};
    use crate::invitations::fixtures::{self, role};

    #[test]
    fn names_are_deterministic_and_objects_carry_their_source() {
        let invitation = fixtures::invitation(
            "dave",
            "Dave@Example.com",
            vec![
                role("viewer", Scope::all_of("deployment"), Access::Full),
                role(
                    "viewer",
                    Scope::named("deployment", &["prod"]),
                    Access::Full,
                ),
            ],
        );
        let membership = membership_for(&invitation);
        assert_eq!(membership.spec.email.0, "dave@example.com");
        assert_eq!(membership.name_any(), membership_name("DAVE@example.com"));
        assert_eq!(
            membership
                .annotations()
                .get(ANNOTATION_SOURCE)
                .map(String::as_str),
            Some("Invitation/dave")
        );
        assert!(membership.metadata.owner_references.is_none());

        let bindings = bindings_for(&invitation, Timestamp::UNIX_EPOCH);
        assert_eq!(bindings.len(), 2);
        assert_ne!(bindings[0].name_any(), bindings[1].name_any());
        assert!(
            bindings[0]
                .name_any()
                .starts_with("viewer-dave-example-com-")
        );
        assert_eq!(
            bindings_for(&invitation, Timestamp::UNIX_EPOCH)[1].name_any(),
            bindings[1].name_any()
        );
        assert!(bindings.iter().all(|b| b.spec.expires_at.is_none()));
        assert_eq!(bindings[1].namespace().as_deref(), Some("org-acme"));
        assert!(
            bindings
                .iter()
                .all(|b| b.metadata.owner_references.is_none())
        );
    }

    #[test]
    fn a_time_bound_offer_expires_that_long_after_acceptance() {
        let mut timed = role("viewer", Scope::all_of("deployment"), Access::Full);
        timed.expires_after = Some("8h".into());
        let mut invitation = fixtures::invitation(
            "dave",
            "dave@example.com",
            vec![timed, role("editor", Scope::organization(), Access::Full)],
        );
        let accepted: Timestamp = "2026-12-05T10:00:00.75Z".parse().unwrap();
        invitation.status = Some(crate::api::InvitationStatus {
            accepted_at: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                accepted,
            )),
            ..Default::default()
        });
        let now: Timestamp = "2030-01-01T00:00:00Z".parse().unwrap();
        assert_eq!(accepted_at(&invitation, now), accepted);
        let bindings = bindings_for(&invitation, accepted_at(&invitation, now));
        assert_eq!(
            bindings[0].spec.expires_at,
            Some("2026-12-05T18:00:00Z".into()),
            "acceptedAt + 8h, in whole seconds"
        );
        assert_eq!(bindings[1].spec.expires_at, None);
        // A duration admission would refuse ends the role at once rather than never.
        let mut broken = role("viewer", Scope::all_of("deployment"), Access::Full);
        broken.expires_after = Some("forever".into());
        assert_eq!(
            offered_expiry(&broken, accepted),
            Some("2026-12-05T10:00:00Z".into())
        );
    }
}
