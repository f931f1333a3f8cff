//! Accepting an invitation with its token, exactly once.
//!
//! The token is looked up by its lookup id in the endpoint's watch-fed cache
//! ([`super::index`]) and verified in constant time; the one Invitation is then read
//! again by name, so the decision is made on the current object. The one write that
//! decides the race is the Invitation's status going to Accepted (reason `Joining`,
//! without the token's hashes) with a resourceVersion precondition: of two concurrent
//! clicks, or two replicas, exactly one wins; the other sees Accepted and gets the
//! neutral answer. Only then are the Membership and RoleBindings created (a crash in
//! between is finished by the controller).
//!
//! Exclusive membership is serialised per person by a claim ([`crate::exclusive`]),
//! taken before the acceptance is recorded and given back if it then is not (unless a
//! concurrent join used it meanwhile). No request
//! lists anything cluster-wide: the organization is read by name, the home namespace's
//! Memberships and Invitations are listed in that namespace only, and the person's other
//! memberships come from the cache.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::jiff::Timestamp;
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};

use super::index::{AcceptCache, NotReady};
use super::join::{self, membership_name};
use super::lifecycle::{self, joining_status};
use super::login::SignedIn;
use super::token;
use super::write_status;
use crate::access::home::organization_of_home;
use crate::access::identity::IdentityDefaults;
use crate::access::names::LABEL_ORGANIZATION;
use crate::api::SignedInSubject;
use crate::api::fields::normalize_email;
use crate::api::{Invitation, InvitationPhase, Membership, Organization};
use crate::exclusive::{self, Claimed, MemberOf};

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
        /// The Organization, for the answer (where the person can go now).
        org: Box<Organization>,
        /// The RBAC user name bound.
        user: String,
    },
    /// The organization requires signing in (`spec.invitations.requireLogin`) and
    /// nobody signed in.
    LoginRequired,
    /// Someone signed in whose verified email is not the invited one; nothing was
    /// created.
    WrongPerson {
        signed_in: String,
        invited: String,
        invitation: Box<Invitation>,
    },
    /// The provider has not verified the email of the person who signed in.
    Unverified {
        signed_in: String,
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
    #[error("claiming exclusive membership: {0}")]
    Claim(kube::Error),
    #[error("the invitation kept changing; try again")]
    Contended,
    #[error(transparent)]
    NotReady(#[from] NotReady),
}

fn read(what: &'static str) -> impl FnOnce(kube::Error) -> AcceptError {
    move |source| AcceptError::Read { what, source }
}

/// What accepting needs: the client, the caches, and where claims live.
#[derive(Clone)]
pub struct Acceptor {
    pub client: Client,
    pub cache: AcceptCache,
    /// The operator's namespace (`--lease-namespace`), where exclusive-membership
    /// claims are kept.
    pub claims_namespace: String,
    /// The operator's `spec.identity` defaults.
    pub identity: IdentityDefaults,
}

/// Whether accepting `token` needs a sign-in first: None for a link that cannot be
/// used (answered like any such link).
pub async fn requires_login(acceptor: &Acceptor, token: &str) -> Result<Option<bool>, AcceptError> {
    if !token::well_formed(token) {
        return Ok(None);
    }
    let Some(cached) = acceptor.cache.find(token).await? else {
        return Ok(None);
    };
    let namespace = cached.namespace().unwrap_or_default();
    let org = organization(&acceptor.client, &namespace).await?;
    Ok(org.map(|org| org.spec.invitations.require_login))
}

/// Why the person who signed in may not accept `invitation`, if they may not: the
/// provider must have verified their email, and it must be the invited one (compared
/// in lower case).
pub fn signed_in_refusal(signed_in: &SignedIn, invitation: &Invitation) -> Option<Outcome> {
    if !signed_in.email_verified {
        return Some(Outcome::Unverified {
            signed_in: signed_in.email.clone(),
            invitation: Box::new(invitation.clone()),
        });
    }
    let invited = invitation.spec.email.normalized();
    (normalize_email(&signed_in.email) != invited).then(|| Outcome::WrongPerson {
        signed_in: signed_in.email.clone(),
        invited,
        invitation: Box::new(invitation.clone()),
    })
}

/// Accepts the invitation `token` belongs to; `signed_in` is who signed in at the
/// cluster's OpenID Connect provider to do so, if anyone did.
pub async fn accept(
    acceptor: &Acceptor,
    writes: &crate::metrics::Metrics,
    token: &str,
    signed_in: Option<&SignedIn>,
) -> Result<Outcome, AcceptError> {
    if !token::well_formed(token) {
        return Ok(Outcome::Invalid);
    }
    let Some(cached) = acceptor.cache.find(token).await? else {
        return Ok(Outcome::Invalid);
    };
    let client = &acceptor.client;
    let namespace = cached.namespace().unwrap_or_default();
    let Some(org) = organization(client, &namespace).await? else {
        return Ok(Outcome::Invalid);
    };
    let mut taken = None;
    let outcome = attempts(
        acceptor,
        writes,
        (token, signed_in),
        &cached,
        &org,
        &mut taken,
    )
    .await;
    if let Some(taken) = taken
        && !matches!(outcome, Ok(Outcome::Joined { .. }))
        && let Err(error) = exclusive::undo(client, &acceptor.claims_namespace, &taken).await
    {
        tracing::warn!(%error, organization = %org.name_any(), "giving back an exclusive-membership claim failed; it lapses on its own");
    }
    outcome
}

async fn attempts(
    acceptor: &Acceptor,
    writes: &crate::metrics::Metrics,
    (token, signed_in): (&str, Option<&SignedIn>),
    cached: &Invitation,
    org: &Organization,
    taken: &mut Option<exclusive::Taken>,
) -> Result<Outcome, AcceptError> {
    let client = &acceptor.client;
    let name = cached.name_any();
    let namespace = cached.namespace().unwrap_or_default();
    let invitations: Api<Invitation> = Api::namespaced(client.clone(), &namespace);
    for _ in 0..ATTEMPTS {
        let Some(invitation) = invitations
            .get_opt(&name)
            .await
            .map_err(read("the Invitation"))?
        else {
            return Ok(Outcome::Invalid);
        };
        if !link_is_current(&invitation, token, Timestamp::now()) {
            return Ok(Outcome::Invalid);
        }
        // Who signed in is checked before anything is written.
        match signed_in {
            None if org.spec.invitations.require_login => return Ok(Outcome::LoginRequired),
            None => {}
            Some(signed_in) => {
                if let Some(refused) = signed_in_refusal(signed_in, &invitation) {
                    return Ok(refused);
                }
            }
        }
        let email = invitation.spec.email.normalized();
        let mut refused = refusal(client, &invitation, org).await?;
        if refused.is_none() {
            let member_of = member_of(acceptor, &email).await?;
            match exclusive::claim(client, &acceptor.claims_namespace, &email, org, &member_of)
                .await
                .map_err(AcceptError::Claim)?
            {
                Claimed::Refused(message) => refused = Some(message),
                Claimed::Taken(claim) => *taken = Some(claim),
                Claimed::AlreadyHeld | Claimed::NotNeeded => {}
            }
        }
        if let Some(message) = refused {
            // A concurrent accept may have won meanwhile, and its new Membership is what
            // refuses this one: answer as for a used link unless the Invitation is
            // unchanged since it was read.
            let now = invitations
                .get_opt(&name)
                .await
                .map_err(read("the Invitation"))?;
            if now.and_then(|i| i.resource_version()) != invitation.resource_version() {
                continue;
            }
            return Ok(Outcome::Refused(message));
        }
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
                // controller finishes the job (the status says Joining), so the claim
                // stays.
                let identity = acceptor.identity.of(org);
                let default_user = identity.username_of_email(&email);
                let person = signed_in.map(|s| {
                    let username = identity.signed_in_username(&s.email);
                    join::Person {
                        user: (username != default_user).then(|| username.clone()),
                        subject: SignedInSubject {
                            issuer: s.issuer.clone(),
                            subject: s.subject.clone(),
                            email: s.email.clone(),
                            username,
                        },
                    }
                });
                let user = person
                    .as_ref()
                    .and_then(|p| p.user.clone())
                    .unwrap_or(default_user);
                let finished = join::finish_as(client, writes, &joining, person.as_ref()).await;
                let invitation = match finished {
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
                    org: Box::new(org.clone()),
                    user,
                });
            }
            Err(kube::Error::Api(status)) if status.code == 409 => continue,
            Err(error) => return Err(AcceptError::Write(error)),
        }
    }
    Err(AcceptError::Contended)
}

/// The organization of home namespace `namespace`
/// ([`organization_of_home`]), read by name: the Namespace, then the Organization its
/// label names.
async fn organization(
    client: &Client,
    namespace: &str,
) -> Result<Option<Organization>, AcceptError> {
    let Some(ns) = Api::<Namespace>::all(client.clone())
        .get_opt(namespace)
        .await
        .map_err(read("the home Namespace"))?
    else {
        return Ok(None);
    };
    let Some(marked) = ns.labels().get(LABEL_ORGANIZATION) else {
        return Ok(None);
    };
    let org = Api::<Organization>::all(client.clone())
        .get_opt(marked)
        .await
        .map_err(read("the Organization"))?;
    Ok(organization_of_home(&ns, org.as_ref()).cloned())
}

/// The organizations `email` is a live member of, from the cached Memberships, each
/// namespace's organization read by name.
async fn member_of(acceptor: &Acceptor, email: &str) -> Result<Vec<MemberOf>, AcceptError> {
    let mut orgs: BTreeMap<String, Option<Organization>> = BTreeMap::new();
    for membership in acceptor.cache.memberships_of(email) {
        if membership.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let namespace = membership.namespace().unwrap_or_default();
        if let std::collections::btree_map::Entry::Vacant(entry) = orgs.entry(namespace) {
            let org = organization(&acceptor.client, entry.key()).await?;
            entry.insert(org);
        }
    }
    Ok(orgs
        .into_values()
        .flatten()
        .map(|org| MemberOf {
            exclusive: org.spec.membership.exclusive,
            organization: org.name_any(),
        })
        .collect())
}

/// Whether `token` is the invitation's current, pending, unexpired link.
pub fn link_is_current(invitation: &Invitation, token: &str, now: Timestamp) -> bool {
    let Some(status) = invitation.status.as_ref() else {
        return false;
    };
    let Some(record) = status.token.as_ref() else {
        return false;
    };
    // Evaluated in full, the constant-time compare included, whatever fails first.
    let matches = token::matches(record, token);
    let live = invitation.metadata.deletion_timestamp.is_none()
        && status.phase == Some(InvitationPhase::Pending)
        && invitation.spec.resend <= status.issued_for_resend
        && status.expires_at.as_ref().is_some_and(|t| now < t.0);
    matches && live
}

/// Why this person cannot join now: the controller's refusals, re-checked live on the
/// home namespace's Memberships and Invitations.
async fn refusal(
    client: &Client,
    invitation: &Invitation,
    org: &Organization,
) -> Result<Option<String>, AcceptError> {
    let namespace = org.home_namespace();
    let memberships = list(
        Api::<Membership>::namespaced(client.clone(), &namespace),
        "Memberships",
    )
    .await?;
    let siblings = list(
        Api::<Invitation>::namespaced(client.clone(), &namespace),
        "Invitations",
    )
    .await?;
    let memberships: Vec<&Membership> = memberships.iter().collect();
    let siblings: Vec<&Invitation> = siblings.iter().collect();
    Ok(lifecycle::refusal(invitation, org, &memberships, &siblings).map(|r| r.message))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::InvitationStatus;
    use crate::invitations::fixtures;
    use crate::invitations::token::Token;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    #[test]
    fn only_the_current_pending_unexpired_link_is_accepted() {
        let mut invitation = fixtures::invitation("dave", "Dave@example.com", vec![]);
        let token = Token::mint().unwrap();
        let expires = Timestamp::from_second(2_000).unwrap();
        invitation.spec.resend = 1;
        invitation.status = Some(InvitationStatus {
            phase: Some(InvitationPhase::Pending),
            expires_at: Some(Time(expires)),
            issued_for_resend: 1,
            token: Some(token.record()),
            ..Default::default()
        });
        let token = token.expose();
        let before = Timestamp::from_second(1_999).unwrap();
        assert!(link_is_current(&invitation, token, before));
        assert!(
            !link_is_current(&invitation, token, expires),
            "expired at expiresAt"
        );
        let other = Token::mint().unwrap();
        assert!(
            !link_is_current(&invitation, other.expose(), before),
            "unknown"
        );

        let mut resent = invitation.clone();
        resent.spec.resend = 2;
        assert!(
            !link_is_current(&resent, token, before),
            "a resend kills the old link"
        );
        let mut reissued = invitation.clone();
        reissued.status.as_mut().unwrap().token = Some(other.record());
        assert!(!link_is_current(&reissued, token, before), "replaced link");

        let mut accepted = invitation.clone();
        let status = accepted.status.as_mut().unwrap();
        status.phase = Some(InvitationPhase::Accepted);
        assert!(!link_is_current(&accepted, token, before), "used");
        let mut burned = invitation.clone();
        burned.status.as_mut().unwrap().token = None;
        assert!(!link_is_current(&burned, token, before), "burned");

        let mut cancelled = invitation.clone();
        cancelled.metadata.deletion_timestamp = Some(Time(before));
        assert!(!link_is_current(&cancelled, token, before), "cancelled");
    }
}
