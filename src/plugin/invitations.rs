//! `kubectl org invitations`, `resend` and `cancel`: the organization's Invitations, as
//! kube-org reports them.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams};
use serde::Serialize;

use crate::api::{Invitation, InvitationPhase, RoleAssignment};

use super::cli::{ListArgs, TargetArgs};
use super::cluster::{FIELD_MANAGER, OrgContext, phase, phase_name};
use super::error::PluginError;
use super::invite::describe_roles;
use super::output::{Table, condition_status, emit, relative, show};

/// One invitation as `-o yaml|json` prints it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InvitationView {
    pub name: String,
    pub email: String,
    pub roles: Vec<RoleView>,
    /// `Pending`, `Accepted`, `Expired`, or `-` before kube-org has seen it.
    pub phase: String,
    /// `True` when the email reached the SMTP server, `False` while it has not, `-`
    /// before the first attempt.
    pub delivered: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Time>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<Time>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accepted_at: Option<Time>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub membership: Option<String>,
    pub resend: i64,
}

/// A role offered, with its scope in the short form.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RoleView {
    pub role: String,
    pub scope: String,
    pub access: crate::api::Access,
    /// How long the role lasts once accepted, for a time-bound one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_after: Option<crate::api::GoDuration>,
}

impl InvitationView {
    pub fn new(invitation: &Invitation) -> Self {
        let status = invitation.status.clone().unwrap_or_default();
        InvitationView {
            name: invitation.metadata.name.clone().unwrap_or_default(),
            email: invitation.spec.email.to_string(),
            roles: invitation.spec.roles.iter().map(RoleView::new).collect(),
            phase: phase_name(invitation),
            delivered: condition_status(&status.conditions, "Delivered"),
            expires_at: status.expires_at,
            sent_at: status.sent_at,
            accepted_at: status.accepted_at,
            membership: status.membership,
            resend: invitation.spec.resend,
        }
    }
}

impl RoleView {
    fn new(role: &RoleAssignment) -> Self {
        RoleView {
            role: role.role.clone(),
            scope: role.scope.summary(),
            access: role.access,
            expires_after: role.expires_after.clone(),
        }
    }
}

/// The table of invitations, expiry relative to `now` (none once accepted).
pub fn invitations_table(invitations: &[Invitation], now: Timestamp) -> Table {
    let mut table = Table::new(&["NAME", "EMAIL", "ROLES", "PHASE", "EXPIRES", "DELIVERED"]);
    for invitation in invitations {
        let view = InvitationView::new(invitation);
        let expires = match (&view.expires_at, phase(invitation)) {
            (_, Some(InvitationPhase::Accepted)) | (None, _) => "-".to_string(),
            (Some(at), _) => relative(now, at),
        };
        table.row(vec![
            view.name,
            view.email,
            describe_roles(&invitation.spec.roles),
            view.phase,
            expires,
            view.delivered,
        ]);
    }
    table
}

/// `kubectl org invitations`.
pub async fn list(ctx: &OrgContext, args: &ListArgs) -> Result<(), PluginError> {
    let mut invitations = ctx.list_invitations().await?;
    invitations.sort_by_key(|i| i.spec.email.normalized());
    let views: Vec<InvitationView> = invitations.iter().map(InvitationView::new).collect();
    let table = invitations_table(&invitations, Timestamp::now());
    let empty = format!("No invitations in organization {}.", ctx.name);
    show(args.output.format, &views, &table, &empty)
}

/// The merge patch that raises `spec.resend` by one, only if the object is still at the
/// version read (so two people resending at once send twice, never lose one).
pub fn resend_patch(invitation: &Invitation) -> serde_json::Value {
    serde_json::json!({
        "metadata": {"resourceVersion": invitation.metadata.resource_version},
        "spec": {"resend": invitation.spec.resend + 1},
    })
}

/// `kubectl org resend`: raises `spec.resend`, retrying when someone else changed the
/// invitation in between.
pub async fn resend(ctx: &OrgContext, args: &TargetArgs) -> Result<(), PluginError> {
    const ATTEMPTS: usize = 3;
    let mut invitation = ctx.find_invitation(&args.target).await?;
    let name = invitation.metadata.name.clone().unwrap_or_default();
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..Default::default()
    };
    let mut attempt = 1;
    loop {
        if phase(&invitation) == Some(InvitationPhase::Accepted) {
            return Err(PluginError::AlreadyAccepted {
                name,
                email: invitation.spec.email.to_string(),
            });
        }
        let patch = resend_patch(&invitation);
        match ctx
            .invitations()
            .patch(&name, &params, &Patch::Merge(&patch))
            .await
        {
            Ok(patched) => {
                return emit(&format!(
                    "invitation.kube-org.io/{name} resend raised to {}: kube-org emails {} a new link (the old one stops working)\n",
                    patched.spec.resend, patched.spec.email
                ));
            }
            Err(kube::Error::Api(status)) if status.is_conflict() && attempt < ATTEMPTS => {
                attempt += 1;
                invitation = ctx.find_invitation(&name).await?;
            }
            Err(error) => return Err(ctx.error(&format!("resending invitation {name}"), error)),
        }
    }
}

/// `kubectl org cancel`: deletes the invitation, so its link stops working.
pub async fn cancel(ctx: &OrgContext, args: &TargetArgs) -> Result<(), PluginError> {
    let invitation = ctx.find_invitation(&args.target).await?;
    let name = invitation.metadata.name.clone().unwrap_or_default();
    ctx.invitations()
        .delete(&name, &DeleteParams::default())
        .await
        .map_err(|e| ctx.error(&format!("deleting invitation {name}"), e))?;
    let email = &invitation.spec.email;
    let effect = if phase(&invitation) == Some(InvitationPhase::Accepted) {
        format!("it was accepted already, so {email} stays a member")
    } else {
        format!("the link sent to {email} no longer works")
    };
    emit(&format!(
        "invitation.kube-org.io/{name} deleted: {effect}\n"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invitation(status: serde_json::Value) -> Invitation {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "kube-org.io/v1alpha1", "kind": "Invitation",
            "metadata": {"name": "invite-bob", "namespace": "org-acme", "resourceVersion": "42"},
            "spec": {
                "email": "bob@example.com",
                "resend": 2,
                "roles": [{"role": "viewer", "scope": {"resourceType": "deployment", "all": true}}],
            },
            "status": status,
        }))
        .expect("an invitation")
    }

    #[test]
    fn the_table_shows_phase_expiry_and_delivery() {
        let now = Timestamp::from_second(1_700_000_000).expect("now");
        let pending = invitation(serde_json::json!({
            "phase": "Pending",
            "expiresAt": "2023-11-15T22:13:20Z",
            "conditions": [{"type": "Delivered", "status": "True", "reason": "Sent", "message": "",
                            "lastTransitionTime": "2023-11-14T22:13:20Z"}],
        }));
        let accepted = invitation(serde_json::json!({
            "phase": "Accepted", "expiresAt": "2023-11-15T22:13:20Z",
        }));
        let fresh = invitation(serde_json::Value::Null);
        assert_eq!(
            invitations_table(&[pending, accepted, fresh], now).render(),
            "NAME         EMAIL             ROLES                    PHASE      EXPIRES   DELIVERED\n\
             invite-bob   bob@example.com   viewer on deployment/*   Pending    in 24h    True\n\
             invite-bob   bob@example.com   viewer on deployment/*   Accepted   -         -\n\
             invite-bob   bob@example.com   viewer on deployment/*   -          -         -\n"
        );
    }

    #[test]
    fn the_view_carries_what_scripts_need() {
        let view = InvitationView::new(&invitation(serde_json::json!({
            "phase": "Expired", "expiresAt": "2023-11-15T22:13:20Z",
        })));
        let json = serde_json::to_value(&view).expect("serializes");
        assert_eq!(
            json,
            serde_json::json!({
                "name": "invite-bob", "email": "bob@example.com",
                "roles": [{"role": "viewer", "scope": "deployment/*", "access": "full"}],
                "phase": "Expired", "delivered": "-",
                "expiresAt": "2023-11-15T22:13:20Z", "resend": 2,
            })
        );
    }

    #[test]
    fn resend_raises_the_counter_at_the_version_read() {
        assert_eq!(
            resend_patch(&invitation(serde_json::Value::Null)),
            serde_json::json!({"metadata": {"resourceVersion": "42"}, "spec": {"resend": 3}})
        );
    }
}
