//! Invitation: an email invitation to join an organization with chosen roles
//! (namespaced, in the home namespace).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::condition::Condition;
use super::fields::{Email, GoDuration};
use super::scope::RoleAssignment;

/// Invites a person by email to join the organization with the roles chosen here.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "kube-org.io",
    version = "v1alpha1",
    kind = "Invitation",
    namespaced,
    shortname = "inv",
    category = "kube-org",
    status = "InvitationStatus",
    doc = "Invites a person by email to join the organization with the roles it names. The link in the email works once, until it expires.",
    printcolumn(name = "Email", type_ = "string", json_path = ".spec.email"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    // A string, not a date: kubectl shows a date as an age, and a future one as `<invalid>`.
    printcolumn(name = "Expires", type_ = "string", json_path = ".status.expiresAt"),
    printcolumn(
        name = "Delivered",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Delivered\")].status",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.email == oldSelf.email").message("email cannot be changed; cancel this invitation and create another"),
    validation = Rule::new("self.resend >= oldSelf.resend").message("resend can only be raised (raise it by one to send a new link)")
)]
pub struct InvitationSpec {
    /// The invitee's email address.
    pub email: Email,

    /// The roles the invitee gets on accepting (at least one).
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new("size(self) > 0").message("an invitation offers at least one role in spec.roles"))]
    pub roles: Vec<RoleAssignment>,

    /// How long the link stays valid, e.g. `24h`; default: the Organization's
    /// `spec.invitations.ttl` (72h unless set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<GoDuration>,

    /// Raise by one to send the invitation again: a new link, a new expiry, and the old
    /// link stops working. Works on pending and expired invitations.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub resend: i64,
}

/// Where an invitation is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum InvitationPhase {
    /// Sent (or being sent) and waiting for an answer.
    Pending,
    /// Accepted: the Membership exists.
    Accepted,
    /// Not accepted in time; raise `spec.resend` to send a new link.
    Expired,
}

/// What kube-org observed of an invitation.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct InvitationStatus {
    /// `Pending`, `Accepted` or `Expired`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<InvitationPhase>,

    /// `Delivered` (the email reached the SMTP server) and `Ready`, each with a reason
    /// and a message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,

    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// When the current link was last emailed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<Time>,

    /// When the current link stops working.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Time>,

    /// When the invitation was accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted_at: Option<Time>,

    /// The Membership created on acceptance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub membership: Option<String>,

    /// How many times sending the current link was attempted.
    #[serde(default)]
    pub delivery_attempts: i32,

    /// The `spec.resend` value the current link was issued for.
    #[serde(default)]
    pub issued_for_resend: i64,

    /// How many times the invitation was re-sent automatically after expiring.
    #[serde(default)]
    pub auto_resends: i32,

    /// The hashes of the current link's token, while the link works (removed when it is
    /// used, expires, is replaced by a resend or the invitation is refused). The link is
    /// the one issued for `issuedForResend`/`autoResends` and expires at `expiresAt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<InvitationToken>,
}

/// The hashes that recognise an invitation link's token; the token itself is only in the
/// email. They are safe to show: each is a SHA-256 of a 256-bit random token (with its
/// own domain separation), so neither can be turned back into the token nor guessed,
/// and knowing them does not let anyone accept. Keeping them here rather than in a
/// Secret means kube-org needs no rights on Secrets.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct InvitationToken {
    /// Finds the invitation a token belongs to: 160 bits of a hash of the token, hex.
    #[schemars(length(max = 64))]
    pub lookup_id: String,

    /// Verifies a token (compared in constant time): a SHA-256 of the token, hex.
    #[schemars(length(max = 64))]
    pub verifier: String,
}
