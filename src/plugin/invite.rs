//! `kubectl org invite`: one Invitation per email, with a name derived from the email so
//! that inviting the same person twice is refused by the API server itself.

use kube::api::PostParams;

use crate::access::names::person_object_name;
use crate::access::roles::RoleTable;
use crate::api::fields::normalize_email;
use crate::api::{Access, GoDuration, Invitation, InvitationSpec, RoleAssignment};

use super::cli::InviteArgs;
use super::cluster::{FIELD_MANAGER, OrgContext, invitations_for, phase};
use super::error::PluginError;
use super::output::{emit, note, role_label};
use super::scope::assignments;

/// The name of the Invitation for `email`: `invite-<email slug>-<hash>`.
pub fn invitation_name(email: &str) -> String {
    person_object_name("invite", &normalize_email(email))
}

/// The Invitation for `email` in namespace `home`.
pub fn build_invitation(
    email: &str,
    home: &str,
    roles: &[RoleAssignment],
    ttl: Option<&GoDuration>,
) -> Invitation {
    let email = normalize_email(email);
    let mut invitation = Invitation::new(
        &invitation_name(&email),
        InvitationSpec {
            email: email.as_str().into(),
            roles: roles.to_vec(),
            ttl: ttl.cloned(),
            resend: 0,
        },
    );
    invitation.metadata.namespace = Some(home.to_string());
    invitation
}

/// The emails in order, each once (compared as kube-org compares them).
pub fn distinct_emails(emails: &[String]) -> Vec<String> {
    let mut seen = std::collections::BTreeSet::new();
    emails
        .iter()
        .filter(|e| seen.insert(normalize_email(e)))
        .cloned()
        .collect()
}

/// The roles of an invitation in one line: `viewer on deployment/*, billing-admin on
/// organization`.
pub fn describe_roles(roles: &[RoleAssignment]) -> String {
    super::output::joined(
        roles.iter().map(|r| match &r.expires_after {
            Some(after) => format!(
                "{} for {after}",
                role_label(&r.role, &r.scope.summary(), r.access)
            ),
            None => role_label(&r.role, &r.scope.summary(), r.access),
        }),
        ", ",
    )
}

/// Creates the invitations; reports each, and fails (exit 1) when any email failed.
pub async fn invite(ctx: &OrgContext, args: &InviteArgs) -> Result<(), PluginError> {
    let access: Vec<Access> = args.access.iter().copied().map(Access::from).collect();
    let table = RoleTable::new(&ctx.organization);
    let roles = assignments(&args.roles, &args.scopes, &access, &table, &ctx.name)?;
    let existing = ctx.list_invitations().await?;
    let emails = distinct_emails(&args.emails);
    let mut failures = Vec::new();
    for email in &emails {
        let invitation = build_invitation(email, &ctx.home, &roles, args.ttl.as_ref());
        match create(ctx, &existing, invitation).await {
            Ok(created) => emit(&created)?,
            Err(error) => failures.push(error),
        }
    }
    // One email: its error is the error. Several: each on its own line, then a count.
    if emails.len() == 1 {
        return failures.pop().map_or(Ok(()), Err);
    }
    for error in &failures {
        note(&format!("error: {error}"));
    }
    match failures.len() {
        0 => Ok(()),
        failed => Err(PluginError::SomeInvitationsFailed {
            failed,
            total: emails.len(),
        }),
    }
}

/// Creates one invitation unless one exists for the email; the line to print.
async fn create(
    ctx: &OrgContext,
    existing: &[Invitation],
    invitation: Invitation,
) -> Result<String, PluginError> {
    let email = invitation.spec.email.to_string();
    let name = invitation.metadata.name.clone().unwrap_or_default();
    let already = |name: String, phase: String| PluginError::AlreadyInvited {
        email: email.clone(),
        name,
        phase,
        org: ctx.name.clone(),
    };
    if let Some(other) = invitations_for(existing.to_vec(), &email).first() {
        let other_name = other.metadata.name.clone().unwrap_or_default();
        let phase = phase(other).map_or_else(|| "not sent yet".to_string(), |p| format!("{p:?}"));
        return Err(already(other_name, phase));
    }
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..Default::default()
    };
    match ctx.invitations().create(&params, &invitation).await {
        Ok(_) => Ok(format!(
            "invitation.kube-org.io/{name} created for {email}: {}\n",
            describe_roles(&invitation.spec.roles)
        )),
        Err(kube::Error::Api(status)) if status.is_already_exists() => {
            Err(already(name, "created meanwhile".to_string()))
        }
        Err(error) => Err(PluginError::kube(format!("inviting {email}"), error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Scope;

    #[test]
    fn an_invitation_is_named_after_the_normalized_email() {
        let roles = [RoleAssignment {
            role: "viewer".into(),
            scope: Scope::all_of("deployment"),
            access: Access::Full,
            expires_after: None,
        }];
        let ttl = GoDuration::from("24h");
        let invitation = build_invitation(" Bob@Example.com", "org-acme", &roles, Some(&ttl));
        assert_eq!(
            invitation.metadata.name,
            Some(invitation_name("bob@example.com"))
        );
        assert_eq!(
            invitation_name("BOB@example.com"),
            invitation_name("bob@example.com")
        );
        assert!(invitation_name("bob@example.com").starts_with("invite-bob-example-com-"));
        assert_eq!(invitation.metadata.namespace.as_deref(), Some("org-acme"));
        assert_eq!(invitation.spec.email.0, "bob@example.com");
        assert_eq!(invitation.spec.roles, roles);
        assert_eq!(invitation.spec.ttl, Some(ttl));
        assert_eq!(invitation.spec.resend, 0);
        let json = serde_json::to_value(&invitation).expect("serializes");
        assert_eq!(json["apiVersion"], "kube-org.io/v1alpha1");
        assert_eq!(json["kind"], "Invitation");
        assert_eq!(
            json["spec"]["roles"][0]["scope"],
            serde_json::json!({"resourceType": "deployment", "all": true})
        );
    }

    #[test]
    fn emails_given_twice_are_invited_once() {
        let emails = ["a@example.com", "b@example.com", "A@EXAMPLE.com"].map(String::from);
        assert_eq!(distinct_emails(&emails), ["a@example.com", "b@example.com"]);
    }

    #[test]
    fn roles_read_as_one_line() {
        let roles = [
            RoleAssignment {
                role: "viewer".into(),
                scope: Scope::named("deployment", &["prod"]),
                access: Access::Full,
                expires_after: None,
            },
            RoleAssignment {
                role: "billing-admin".into(),
                scope: Scope::organization(),
                access: Access::Console,
                expires_after: Some("8h".into()),
            },
        ];
        assert_eq!(
            describe_roles(&roles),
            "viewer on deployment/prod, billing-admin on organization (console) for 8h"
        );
    }
}
