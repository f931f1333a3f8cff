//! Objects for the unit tests of this module.

use crate::api::{
    Access, Invitation, InvitationSpec, InvitationToken, Organization, RoleAssignment, Scope,
};

/// One offered role.
pub fn role(role: &str, scope: Scope, access: Access) -> RoleAssignment {
    RoleAssignment {
        role: role.into(),
        scope,
        access,
        expires_after: None,
    }
}

/// An invitation in `org-acme` with uid `uid-<name>` and generation 1.
pub fn invitation(name: &str, email: &str, roles: Vec<RoleAssignment>) -> Invitation {
    let mut invitation = Invitation::new(
        name,
        InvitationSpec {
            email: email.into(),
            roles,
            ttl: None,
            resend: 0,
        },
    );
    invitation.metadata.namespace = Some("org-acme".into());
    invitation.metadata.uid = Some(format!("uid-{name}"));
    invitation.metadata.generation = Some(1);
    invitation
}

/// An organization named `name` whose spec is `spec` (JSON) with one owner added.
pub fn organization(name: &str, spec: serde_json::Value) -> Organization {
    let mut full = serde_json::json!({"owners": ["alice@example.com"]});
    if let (Some(full), Some(extra)) = (full.as_object_mut(), spec.as_object()) {
        full.extend(extra.clone());
    }
    serde_json::from_value(serde_json::json!({"metadata": {"name": name}, "spec": full}))
        .expect("a valid Organization")
}

/// The hashes of a freshly minted token.
pub fn token() -> InvitationToken {
    crate::invitations::token::Token::mint()
        .expect("random")
        .record()
}
