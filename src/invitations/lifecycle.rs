//! The invitation state machine, as a pure function: given an Invitation, its
//! Organization, the Memberships and Invitations of the home namespace and the time,
//! what the Invitation's status should be and what, if anything, must happen (send a
//! new link, wake up at the deadline). A link dies with the status write that removes
//! its hashes (`status.token`): used, expired, refused or replaced.
//!
//! The shell ([`super::controller`]) only gathers the facts and carries the decision
//! out; everything that can be decided without a cluster is decided and tested here.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::ResourceExt;

use crate::access::roles::RoleTable;
use crate::api::condition::{DesiredCondition, READY, merge_conditions};
use crate::api::fields::normalize_email;
use crate::api::{
    Invitation, InvitationPhase, InvitationStatus, InvitationToken, Membership, Organization,
};

/// Condition type: the email with the current link reached the SMTP server.
pub const DELIVERED: &str = "Delivered";

/// Ready reason while the acceptance is being carried out (Membership and
/// RoleBindings not all created yet). A crash in between is finished by the controller.
pub const REASON_JOINING: &str = "Joining";
/// Ready reason of an accepted invitation.
pub const REASON_ACCEPTED: &str = "Accepted";

/// The operator-wide defaults an Organization can override.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Defaults {
    /// `--smtp-from`.
    pub from: Option<String>,
    /// `--accept-base-url`.
    pub accept_base_url: Option<String>,
    /// Whether an SMTP server is configured at all (`--smtp-url`).
    pub smtp_configured: bool,
}

/// Everything the decision depends on.
pub struct Facts<'a> {
    pub invitation: &'a Invitation,
    /// The organization of the home namespace holding the invitation
    /// ([`crate::access::home::organization_of_home`]).
    pub organization: Option<&'a Organization>,
    /// Why there is none, when `organization` is `None` (a default message otherwise).
    pub no_organization: Option<String>,
    /// The Memberships of the home namespace.
    pub memberships: Vec<&'a Membership>,
    /// The Invitations of the home namespace (the invitation itself may be among them).
    pub invitations: Vec<&'a Invitation>,
    pub defaults: &'a Defaults,
    pub now: Timestamp,
}

/// Which link an invitation is on: raised by `spec.resend` and by automatic re-sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkGeneration {
    pub resend: i64,
    pub auto_resends: i32,
}

/// A new link to issue and email.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendPlan {
    pub generation: LinkGeneration,
    /// 1 for a new link, more for a retry after a failed delivery.
    pub attempt: i32,
    pub expires_at: Timestamp,
    pub from: String,
    pub accept_base_url: String,
}

/// What to do with an invitation now.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Being deleted: its link is dead already (acceptance checks); nothing to do.
    Nothing,
    /// Write `status` if it differs from the current one (a status without `token`
    /// kills the link); wake up at `wake_at` (the expiry deadline).
    Settle {
        status: InvitationStatus,
        wake_at: Option<Timestamp>,
        event: Option<Note>,
    },
    /// Issue a new token and email the link.
    Send(SendPlan),
    /// The invitation was marked Accepted but the Membership and RoleBindings may not
    /// all exist yet (the accepting process stopped half-way): create what is missing.
    FinishAcceptance,
}

/// An Event to publish with a status transition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub warning: bool,
    pub reason: String,
    pub message: String,
}

/// Why an invitation cannot be sent (a `Ready=False` condition with this reason).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub reason: &'static str,
    pub message: String,
}

/// The deciding function.
pub fn decide(facts: &Facts<'_>) -> Decision {
    let invitation = facts.invitation;
    if invitation.metadata.deletion_timestamp.is_some() {
        return Decision::Nothing;
    }
    let current = invitation.status.clone().unwrap_or_default();
    let resend_raised =
        current.expires_at.is_none() || invitation.spec.resend > current.issued_for_resend;
    match current.phase {
        Some(InvitationPhase::Accepted) => return accepted(invitation, &current),
        // Expired stays expired until spec.resend is raised.
        Some(InvitationPhase::Expired) if !resend_raised => {
            return settle(invitation, &current, current.clone(), None, None);
        }
        _ => {}
    }
    let Some(org) = facts.organization else {
        let why = facts.no_organization.clone().unwrap_or_else(|| {
            format!(
                "no Organization has {} as its home namespace",
                invitation.namespace().unwrap_or_default()
            )
        });
        let refusal = Refusal {
            reason: "OrganizationNotFound",
            message: format!("{why}; the invitation waits for one"),
        };
        return refuse(invitation, &current, refusal, facts.now);
    };
    if let Some(refusal) = refusal(invitation, org, &facts.memberships, &facts.invitations) {
        return refuse(invitation, &current, refusal, facts.now);
    }
    let ttl = match ttl(invitation, org) {
        Ok(ttl) => ttl,
        Err(refusal) => return refuse(invitation, &current, refusal, facts.now),
    };

    let link = |auto_resends| LinkGeneration {
        resend: invitation.spec.resend,
        auto_resends,
    };
    let (generation, attempt) = match current.expires_at.as_ref().map(|t| t.0) {
        _ if resend_raised => (link(0), 1),
        _ if !delivered(&current) => (
            link(current.auto_resends),
            current.delivery_attempts.saturating_add(1),
        ),
        Some(expires_at) if facts.now < expires_at => {
            let status = pending_status(invitation, &current, facts.now);
            return settle(invitation, &current, status, Some(expires_at), None);
        }
        _ if current.auto_resends < org.spec.invitations.auto_resend => {
            (link(current.auto_resends.saturating_add(1)), 1)
        }
        expires_at => {
            let expires_at = expires_at.unwrap_or(facts.now);
            return expire(invitation, &current, expires_at, facts.now);
        }
    };
    match delivery_settings(org, facts.defaults) {
        Ok((from, accept_base_url)) => Decision::Send(SendPlan {
            generation,
            attempt,
            expires_at: expiry(facts.now, ttl),
            from,
            accept_base_url,
        }),
        Err(message) => {
            let mut status = current.clone();
            status.phase = Some(InvitationPhase::Pending);
            status.conditions = merge_conditions(
                &current.conditions,
                &[
                    DesiredCondition::new(DELIVERED, false, "NotConfigured", message.clone()),
                    DesiredCondition::new(READY, false, "NotDelivered", message),
                ],
                invitation.metadata.generation,
                &Time(facts.now),
            );
            settle(invitation, &current, status, None, None)
        }
    }
}

fn delivered(status: &InvitationStatus) -> bool {
    status
        .conditions
        .iter()
        .any(|c| c.type_ == DELIVERED && c.status == "True")
}

fn settle(
    invitation: &Invitation,
    current: &InvitationStatus,
    status: InvitationStatus,
    wake_at: Option<Timestamp>,
    event: Option<Note>,
) -> Decision {
    // observedGeneration follows every spec change, also one that changes nothing else
    // (an edited Accepted or Expired invitation): GitOps tools wait for it (kstatus).
    let mut status = status;
    status.observed_generation = invitation.metadata.generation;
    let changed = &status != current;
    Decision::Settle {
        status,
        wake_at,
        event: event.filter(|_| changed),
    }
}

fn accepted(invitation: &Invitation, current: &InvitationStatus) -> Decision {
    let joining = current
        .conditions
        .iter()
        .any(|c| c.type_ == READY && c.reason == REASON_JOINING);
    if joining {
        return Decision::FinishAcceptance;
    }
    settle(invitation, current, current.clone(), None, None)
}

fn refuse(
    invitation: &Invitation,
    current: &InvitationStatus,
    refusal: Refusal,
    now: Timestamp,
) -> Decision {
    let status = InvitationStatus {
        phase: None,
        conditions: merge_conditions(
            &current.conditions,
            &[DesiredCondition::new(
                READY,
                false,
                refusal.reason,
                refusal.message.clone(),
            )],
            invitation.metadata.generation,
            &Time(now),
        ),
        observed_generation: current.observed_generation,
        sent_at: None,
        expires_at: None,
        accepted_at: None,
        membership: None,
        delivery_attempts: 0,
        issued_for_resend: current.issued_for_resend,
        auto_resends: 0,
        token: None,
    };
    let event = Note {
        warning: true,
        reason: refusal.reason.to_string(),
        message: refusal.message,
    };
    settle(invitation, current, status, None, Some(event))
}

fn pending_status(
    invitation: &Invitation,
    current: &InvitationStatus,
    now: Timestamp,
) -> InvitationStatus {
    let mut status = current.clone();
    status.phase = Some(InvitationPhase::Pending);
    status.conditions = merge_conditions(
        &current.conditions,
        &[
            delivered_condition(invitation, current),
            DesiredCondition::new(
                READY,
                true,
                "LinkSent",
                format!(
                    "waiting for {} to accept; the link expires at {}",
                    invitation.spec.email.normalized(),
                    show_time(current.expires_at.as_ref())
                ),
            ),
        ],
        invitation.metadata.generation,
        &Time(now),
    );
    status
}

fn delivered_condition(invitation: &Invitation, status: &InvitationStatus) -> DesiredCondition {
    DesiredCondition::new(
        DELIVERED,
        true,
        "Sent",
        format!(
            "emailed to {} at {} (attempt {})",
            invitation.spec.email.normalized(),
            show_time(status.sent_at.as_ref()),
            status.delivery_attempts
        ),
    )
}

fn expire(
    invitation: &Invitation,
    current: &InvitationStatus,
    expires_at: Timestamp,
    now: Timestamp,
) -> Decision {
    let message = format!(
        "not accepted before {}; raise spec.resend to send a new link",
        Time(expires_at).0
    );
    let mut status = current.clone();
    status.phase = Some(InvitationPhase::Expired);
    status.token = None;
    status.conditions = merge_conditions(
        &current.conditions,
        &[
            delivered_condition(invitation, current),
            DesiredCondition::new(READY, false, "Expired", message.clone()),
        ],
        invitation.metadata.generation,
        &Time(now),
    );
    let event = Note {
        warning: false,
        reason: "Expired".to_string(),
        message,
    };
    settle(invitation, current, status, None, Some(event))
}

fn show_time(time: Option<&Time>) -> String {
    time.map(|t| t.0.to_string())
        .unwrap_or_else(|| "an unknown time".to_string())
}

/// The status recorded before a link is emailed: the intent (generation, expiry,
/// attempt) and the new token's hashes in one write, so a crash between sending and
/// recording costs one duplicate email at most, and the previous link dies at once.
pub fn sending_status(
    invitation: &Invitation,
    plan: &SendPlan,
    token: InvitationToken,
    now: Timestamp,
) -> InvitationStatus {
    let current = invitation.status.clone().unwrap_or_default();
    let message = format!(
        "sending the link to {} (attempt {})",
        invitation.spec.email.normalized(),
        plan.attempt
    );
    let conditions = merge_conditions(
        &current.conditions,
        &[
            DesiredCondition::new(DELIVERED, false, "Sending", message.clone()),
            DesiredCondition::new(READY, false, "Sending", message),
        ],
        invitation.metadata.generation,
        &Time(now),
    );
    InvitationStatus {
        phase: Some(InvitationPhase::Pending),
        conditions,
        observed_generation: invitation.metadata.generation,
        sent_at: None,
        expires_at: Some(Time(plan.expires_at)),
        accepted_at: None,
        membership: None,
        delivery_attempts: plan.attempt,
        issued_for_resend: plan.generation.resend,
        auto_resends: plan.generation.auto_resends,
        token: Some(token),
    }
}

/// The status once the SMTP server took the email.
pub fn delivered_status(invitation: &Invitation, now: Timestamp) -> InvitationStatus {
    let mut current = invitation.status.clone().unwrap_or_default();
    current.sent_at = Some(Time(now));
    current.observed_generation = invitation.metadata.generation;
    pending_status(invitation, &current, now)
}

/// Delivered and Ready reason of an invitation whose email cannot be built from the
/// objects (e.g. a sender or an address no mail server takes).
pub const REASON_INVALID_MESSAGE: &str = "InvalidMessage";

/// The status when the email cannot be built: still Pending, `Delivered=False` and
/// `Ready=False` with reason `InvalidMessage` and what to fix. No link was issued.
pub fn invalid_message_status(
    invitation: &Invitation,
    error: &str,
    now: Timestamp,
) -> InvitationStatus {
    let current = invitation.status.clone().unwrap_or_default();
    let message: String = format!(
        "the invitation email cannot be built: {error}; fix the Organization's spec.displayName or spec.invitations, or the invitation's email, and it is sent"
    )
    .chars()
    .take(1024)
    .collect();
    let conditions = merge_conditions(
        &current.conditions,
        &[
            DesiredCondition::new(DELIVERED, false, REASON_INVALID_MESSAGE, message.clone()),
            DesiredCondition::new(READY, false, REASON_INVALID_MESSAGE, message),
        ],
        invitation.metadata.generation,
        &Time(now),
    );
    InvitationStatus {
        phase: Some(current.phase.unwrap_or(InvitationPhase::Pending)),
        conditions,
        observed_generation: invitation.metadata.generation,
        ..current
    }
}

/// The status after the SMTP server refused or could not be reached: still Pending,
/// `Delivered=False` with the server's error, retried with backoff.
pub fn failed_status(
    invitation: &Invitation,
    error: &str,
    retry_in: Duration,
    now: Timestamp,
) -> InvitationStatus {
    let current = invitation.status.clone().unwrap_or_default();
    let conditions = merge_conditions(
        &current.conditions,
        &[
            DesiredCondition::new(DELIVERED, false, "SMTPError", error.to_string()),
            DesiredCondition::new(
                READY,
                false,
                "NotDelivered",
                format!(
                    "the email could not be sent (attempt {}); retrying in {}s",
                    current.delivery_attempts,
                    retry_in.as_secs()
                ),
            ),
        ],
        invitation.metadata.generation,
        &Time(now),
    );
    InvitationStatus {
        conditions,
        ..current
    }
}

/// The status the accepting process writes first, with a resourceVersion precondition:
/// the one write that makes acceptance happen exactly once.
pub fn joining_status(
    invitation: &Invitation,
    membership: &str,
    now: Timestamp,
) -> InvitationStatus {
    let mut status = invitation.status.clone().unwrap_or_default();
    status.accepted_at = Some(Time(now));
    status.membership = Some(membership.to_string());
    let message = format!("creating Membership {membership} and its RoleBindings");
    accepted_status(invitation, status, false, REASON_JOINING, message, now)
}

/// The status once the Membership and every RoleBinding exist.
pub fn joined_status(invitation: &Invitation, now: Timestamp) -> InvitationStatus {
    let status = invitation.status.clone().unwrap_or_default();
    let membership = status.membership.clone().unwrap_or_default();
    let message = format!("accepted; the person is member {membership}");
    accepted_status(invitation, status, true, REASON_ACCEPTED, message, now)
}

fn accepted_status(
    invitation: &Invitation,
    mut status: InvitationStatus,
    ready: bool,
    reason: &str,
    message: String,
    now: Timestamp,
) -> InvitationStatus {
    let mut desired = vec![DesiredCondition::new(READY, ready, reason, message)];
    if let Some(delivered) = status.conditions.iter().find(|c| c.type_ == DELIVERED) {
        desired.push(DesiredCondition::new(
            DELIVERED,
            delivered.status == "True",
            &delivered.reason,
            delivered.message.clone(),
        ));
    }
    status.phase = Some(InvitationPhase::Accepted);
    status.token = None;
    status.observed_generation = invitation.metadata.generation;
    status.conditions = merge_conditions(
        &status.conditions,
        &desired,
        invitation.metadata.generation,
        &Time(now),
    );
    status
}

/// How long to wait before retrying a failed delivery: 1s, 2s, 4s, ... at most 5 minutes.
pub fn retry_delay(attempt: i32) -> Duration {
    let exponent = attempt.saturating_sub(1).clamp(0, 9) as u32;
    Duration::from_secs((1u64 << exponent).min(300))
}

/// The moment a link issued at `now` stops working: whole seconds (status times have
/// second precision), rounded up so the link lives at least `ttl`.
pub fn expiry(now: Timestamp, ttl: Duration) -> Timestamp {
    let ttl = SignedDuration::try_from(ttl).unwrap_or(SignedDuration::MAX);
    let end = now.saturating_add(ttl).unwrap_or(Timestamp::MAX);
    let round_up = i64::from(end.subsec_nanosecond() > 0);
    Timestamp::from_second(end.as_second().saturating_add(round_up)).unwrap_or(Timestamp::MAX)
}

/// The link's lifetime: the Invitation's `spec.ttl`, else the Organization's.
pub fn ttl(invitation: &Invitation, org: &Organization) -> Result<Duration, Refusal> {
    let ttl = invitation
        .spec
        .ttl
        .clone()
        .unwrap_or_else(|| org.invitation_ttl());
    ttl.to_std().map_err(|error| Refusal {
        reason: "InvalidTTL",
        message: error.to_string(),
    })
}

/// The sender and the accept base URL, from the Organization or the operator's flags.
fn delivery_settings(org: &Organization, defaults: &Defaults) -> Result<(String, String), String> {
    if !defaults.smtp_configured {
        return Err(
            "the operator has no SMTP server configured (--smtp-url); the invitation is sent once it has one"
                .to_string(),
        );
    }
    let policy = &org.spec.invitations;
    let from = policy
        .from
        .as_ref()
        .map(|f| f.0.clone())
        .or_else(|| defaults.from.clone())
        .ok_or_else(|| {
            "no sender address: set spec.invitations.from on the Organization or --smtp-from on the operator".to_string()
        })?;
    let base = policy
        .accept_url
        .clone()
        .or_else(|| defaults.accept_base_url.clone())
        .ok_or_else(|| {
            "no accept link base: set spec.invitations.acceptURL on the Organization or --accept-base-url on the operator".to_string()
        })?;
    Ok((from, base))
}

/// Why an invitation cannot stand, checked in this order: its roles, the domain, an
/// existing membership, an older live invitation for the same person.
pub fn refusal(
    invitation: &Invitation,
    org: &Organization,
    memberships: &[&Membership],
    invitations: &[&Invitation],
) -> Option<Refusal> {
    if let Err(refusal) = check_roles(invitation, org) {
        return Some(refusal);
    }
    let email = invitation.spec.email.normalized();
    if let Some(refusal) = crate::access::policy::domain_refusal(org, &invitation.spec.email) {
        return Some(Refusal {
            reason: refusal.reason,
            message: refusal.message,
        });
    }
    if let Some(member) = memberships
        .iter()
        .find(|m| m.metadata.deletion_timestamp.is_none() && m.spec.email.normalized() == email)
    {
        return Some(Refusal {
            reason: "AlreadyMember",
            message: format!(
                "{email} is already a member (Membership {}); change their RoleBindings instead",
                member.name_any()
            ),
        });
    }
    let age = |i: &Invitation| (i.metadata.creation_timestamp.clone(), i.name_any());
    let older = invitations
        .iter()
        .filter(|other| other.name_any() != invitation.name_any())
        .filter(|other| normalize_email(&other.spec.email.0) == email && is_live(other, org))
        .filter(|other| age(other) < age(invitation))
        .min_by_key(|other| age(other))?;
    Some(Refusal {
        reason: "DuplicateInvitation",
        message: format!(
            "Invitation {} already invites {email}; cancel it (delete it) or this one",
            older.name_any()
        ),
    })
}

/// Whether an invitation competes for its email: not being deleted, not accepted, not
/// expired (unless being re-sent), and with valid roles and lifetime.
fn is_live(invitation: &Invitation, org: &Organization) -> bool {
    if invitation.metadata.deletion_timestamp.is_some() {
        return false;
    }
    let status = invitation.status.clone().unwrap_or_default();
    let phase_live = match status.phase {
        Some(InvitationPhase::Accepted) => false,
        Some(InvitationPhase::Expired) => invitation.spec.resend > status.issued_for_resend,
        _ => true,
    };
    phase_live && check_roles(invitation, org).is_ok() && ttl(invitation, org).is_ok()
}

/// Every offered role must resolve for the organization in the scope it is offered in
/// ([`RoleTable::resolve`], as access will resolve the RoleBindings it becomes).
pub fn check_roles(invitation: &Invitation, org: &Organization) -> Result<(), Refusal> {
    let table = RoleTable::new(org);
    for offered in &invitation.spec.roles {
        table.resolve(offered).map_err(|problem| Refusal {
            reason: problem.reason(),
            message: format!("{problem}; fix spec.roles"),
        })?;
    }
    Ok(())
}

#[cfg(test)]
#[path = "lifecycle_tests.rs"]
mod tests;
