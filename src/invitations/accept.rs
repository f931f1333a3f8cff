//! Accepting an invitation with its token, exactly once.
//!
//! The token finds its Secret by lookup id and is verified in constant time. The one
//! write that decides the race is the Invitation's status going to Accepted (reason
//! `Joining`) with a resourceVersion precondition: of two concurrent clicks, or two
//! replicas, exactly one wins; the other sees Accepted and gets the neutral answer.
//! Only then are the Membership and RoleBindings created (a crash in between is
//! finished by the controller) and the token Secret deleted.

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};

use super::join::{self, membership_name};
use super::lifecycle::{self, joining_status};
use super::token::{self, LABEL_TOKEN_ID, StoredToken};
use super::write_status;
use crate::api::{Invitation, InvitationPhase, Membership, Organization};

/// How often a lost resourceVersion race is retried before giving up.
const ATTEMPTS: usize = 5;

/// What accepting a token did.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// The person is a member now.
    Joined {
        organization: String,
        membership: String,
        invitation: Box<Invitation>,
    },
    /// Unknown, used, expired or cancelled: one answer for all, so the endpoint is no
    /// oracle.
    Invalid,
    /// The token is valid but the person cannot join; the message says why.
    Refused(String),
}

/// A failure of the cluster, not of the token.
#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    #[error("reading {what}: {source}")]
    Read {
        what: &'static str,
        source: kube::Error,
    },
    #[error("recording the acceptance: {0}")]
    Write(kube::Error),
    #[error("the invitation kept changing; try again")]
    Contended,
}

fn read(what: &'static str) -> impl FnOnce(kube::Error) -> AcceptError {
    move |source| AcceptError::Read { what, source }
}

/// Accepts the invitation `token` belongs to.
pub async fn accept(
    client: &Client,
    writes: &crate::metrics::Metrics,
    token: &str,
) -> Result<Outcome, AcceptError> {
    if !token::well_formed(token) {
        return Ok(Outcome::Invalid);
    }
    let Some(stored) = find(client, token).await? else {
        return Ok(Outcome::Invalid);
    };
    let invitations: Api<Invitation> = Api::namespaced(client.clone(), &stored.namespace);
    for _ in 0..ATTEMPTS {
        let Some(invitation) = invitations
            .get_opt(&stored.invitation)
            .await
            .map_err(read("the Invitation"))?
        else {
            return Ok(Outcome::Invalid);
        };
        if !link_is_current(&invitation, &stored, Timestamp::now()) {
            return Ok(Outcome::Invalid);
        }
        let organizations = list(Api::<Organization>::all(client.clone()), "Organizations").await?;
        let Some(org) = organizations
            .iter()
            .find(|o| o.home_namespace() == stored.namespace)
        else {
            return Ok(Outcome::Invalid);
        };
        if let Some(message) = refusal(client, &invitation, org, &organizations).await? {
            // A concurrent accept may have won meanwhile, and its new Membership is what
            // refuses this one: answer as for a used link unless the Invitation is
            // unchanged since it was read.
            let now = invitations
                .get_opt(&stored.invitation)
                .await
                .map_err(read("the Invitation"))?;
            if now.and_then(|i| i.resource_version()) != invitation.resource_version() {
                continue;
            }
            return Ok(Outcome::Refused(message));
        }
        let email = invitation.spec.email.normalized();
        let status = joining_status(&invitation, &membership_name(&email), Timestamp::now());
        match write_status(&invitations, writes, &invitation, status).await {
            Ok(joining) => {
                let organization = org
                    .spec
                    .display_name
                    .clone()
                    .unwrap_or_else(|| org.name_any());
                let membership = membership_name(&email);
                // Acceptance is recorded; should creating the objects fail now, the
                // controller finishes the job (the status says Joining).
                let invitation = match join::finish(client, writes, &joining).await {
                    Ok(joined) => joined,
                    Err(error) => {
                        tracing::warn!(invitation = %joining.name_any(), %error, "finishing an acceptance failed; the controller will retry");
                        joining
                    }
                };
                return Ok(Outcome::Joined {
                    organization,
                    membership,
                    invitation: Box::new(invitation),
                });
            }
            Err(kube::Error::Api(status)) if status.code == 409 => continue,
            Err(error) => return Err(AcceptError::Write(error)),
        }
    }
    Err(AcceptError::Contended)
}

async fn list<K>(api: Api<K>, what: &'static str) -> Result<Vec<K>, AcceptError>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    Ok(api
        .list(&ListParams::default())
        .await
        .map_err(read(what))?
        .items)
}

/// The token's Secret, if the token is one.
async fn find(client: &Client, token: &str) -> Result<Option<StoredToken>, AcceptError> {
    let secrets: Api<Secret> = Api::all(client.clone());
    let selector = format!("{LABEL_TOKEN_ID}={}", token::lookup_id(token));
    let found = secrets
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(read("token Secrets"))?;
    Ok(found
        .items
        .iter()
        .filter_map(|secret| token::read_secret(secret).ok())
        .find(|stored| stored.matches(token)))
}

/// Whether the stored link is the invitation's current, pending, unexpired link.
pub fn link_is_current(invitation: &Invitation, stored: &StoredToken, now: Timestamp) -> bool {
    let Some(status) = invitation.status.as_ref() else {
        return false;
    };
    invitation.uid().as_deref() == Some(stored.invitation_uid.as_str())
        && invitation.metadata.deletion_timestamp.is_none()
        && status.phase == Some(InvitationPhase::Pending)
        && invitation.spec.resend <= status.issued_for_resend
        && status.issued_for_resend == stored.generation.resend
        && status.auto_resends == stored.generation.auto_resends
        && status.expires_at.as_ref().map(|t| t.0) == Some(stored.expires_at)
        && now < stored.expires_at
}

/// Why this person cannot join now: the controller's refusals, re-checked live, and
/// exclusive membership.
async fn refusal(
    client: &Client,
    invitation: &Invitation,
    org: &Organization,
    organizations: &[Organization],
) -> Result<Option<String>, AcceptError> {
    let namespace = org.home_namespace();
    let memberships = list(Api::<Membership>::all(client.clone()), "Memberships").await?;
    let siblings = list(
        Api::<Invitation>::namespaced(client.clone(), &namespace),
        "Invitations",
    )
    .await?;
    let home_members: Vec<&Membership> = memberships
        .iter()
        .filter(|m| m.namespace().as_deref() == Some(namespace.as_str()))
        .collect();
    let siblings: Vec<&Invitation> = siblings.iter().collect();
    if let Some(refusal) = lifecycle::refusal(invitation, org, &home_members, &siblings) {
        return Ok(Some(refusal.message));
    }
    Ok(exclusive_conflict(
        invitation,
        org,
        organizations,
        &memberships,
    ))
}

/// An organization with exclusive membership admits no one who belongs to another
/// organization, and no member of an exclusive organization joins another.
pub fn exclusive_conflict(
    invitation: &Invitation,
    org: &Organization,
    organizations: &[Organization],
    memberships: &[Membership],
) -> Option<String> {
    let email = invitation.spec.email.normalized();
    let home = org.home_namespace();
    let other = organizations
        .iter()
        .filter(|o| o.home_namespace() != home)
        .filter(|o| org.spec.membership.exclusive || o.spec.membership.exclusive)
        .find(|o| {
            let other_home = o.home_namespace();
            memberships.iter().any(|m| {
                m.namespace().as_deref() == Some(other_home.as_str())
                    && m.metadata.deletion_timestamp.is_none()
                    && m.spec.email.normalized() == email
            })
        })?;
    let which = if org.spec.membership.exclusive {
        format!(
            "organization {} admits only people who belong to no other organization",
            org.name_any()
        )
    } else {
        format!(
            "organization {} does not let its members join another organization",
            other.name_any()
        )
    };
    Some(format!(
        "{email} is a member of organization {}, and {which}; leave {} first, then use this link again",
        other.name_any(),
        other.name_any()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::InvitationStatus;
    use crate::invitations::fixtures::{self, organization};
    use crate::invitations::lifecycle::LinkGeneration;
    use crate::invitations::token::{Token, read_secret, secret_for};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn org(name: &str, exclusive: bool) -> Organization {
        organization(
            name,
            serde_json::json!({"membership": {"exclusive": exclusive}}),
        )
    }

    fn member(namespace: &str, email: &str) -> Membership {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "m", "namespace": namespace},
            "spec": {"email": email}
        }))
        .unwrap()
    }

    fn invitation() -> Invitation {
        let mut invitation = fixtures::invitation("dave", "Dave@example.com", vec![]);
        invitation.metadata.namespace = Some("org-a".into());
        invitation.metadata.uid = Some("u1".into());
        invitation
    }

    #[test]
    fn exclusive_organizations_refuse_members_of_others_and_say_so() {
        let orgs = [org("a", true), org("b", false)];
        let invitation = invitation();
        let in_b = [member("org-b", "dave@example.com")];
        let message = exclusive_conflict(&invitation, &orgs[0], &orgs, &in_b).unwrap();
        assert!(message.contains("member of organization b"), "{message}");
        assert_eq!(exclusive_conflict(&invitation, &orgs[0], &orgs, &[]), None);
        // Joining a non-exclusive organization from a non-exclusive one is fine ...
        let open = [org("a", false), org("b", false)];
        assert_eq!(
            exclusive_conflict(&invitation, &open[0], &open, &in_b),
            None
        );
        // ... but a member of an exclusive organization cannot join another.
        let strict_b = [org("a", false), org("b", true)];
        let message = exclusive_conflict(&invitation, &strict_b[0], &strict_b, &in_b).unwrap();
        assert!(
            message.contains("does not let its members join"),
            "{message}"
        );
    }

    #[test]
    fn only_the_current_pending_unexpired_link_is_accepted() {
        let mut invitation = invitation();
        let expires = Timestamp::from_second(2_000).unwrap();
        let generation = LinkGeneration {
            resend: 1,
            auto_resends: 0,
        };
        let stored = read_secret(&secret_for(
            &invitation,
            &Token::mint().unwrap(),
            generation,
            expires,
        ))
        .unwrap();
        invitation.spec.resend = 1;
        invitation.status = Some(InvitationStatus {
            phase: Some(InvitationPhase::Pending),
            expires_at: Some(Time(expires)),
            issued_for_resend: 1,
            ..Default::default()
        });
        let before = Timestamp::from_second(1_999).unwrap();
        assert!(link_is_current(&invitation, &stored, before));
        assert!(
            !link_is_current(&invitation, &stored, expires),
            "expired at expiresAt"
        );

        let mut resent = invitation.clone();
        resent.spec.resend = 2;
        assert!(
            !link_is_current(&resent, &stored, before),
            "a resend kills the old link"
        );

        let mut accepted = invitation.clone();
        accepted.status.as_mut().unwrap().phase = Some(InvitationPhase::Accepted);
        assert!(!link_is_current(&accepted, &stored, before), "used");

        let mut recreated = invitation.clone();
        recreated.metadata.uid = Some("u2".into());
        assert!(
            !link_is_current(&recreated, &stored, before),
            "another object of the same name"
        );
    }
}
