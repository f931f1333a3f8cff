//! How the cluster names people: the one place the RBAC user name of a member is
//! decided.
//!
//! A cluster's authenticator gives a person a user name made of a prefix and a claim
//! (the apiserver's `claimMappings.username`: `oidc:` + the email is common) and group
//! names with a prefix of their own. kube-org must bind that very name, or every grant
//! goes to a name nobody logs in as. The prefixes come from the Organization
//! (`spec.identity`), else from the operator's flags (one setting serves a cluster).

use crate::api::{Membership, Organization};

use super::policy::SYSTEM_PREFIX;

/// The operator-wide defaults of `spec.identity` (`kube-org run` flags).
#[derive(clap::Args, Clone, Debug, Default, PartialEq, Eq)]
pub struct IdentityDefaults {
    /// What the cluster's authenticator puts before a person's email to make their user
    /// name (e.g. `oidc:`), for Organizations that set no `spec.identity.usernamePrefix`.
    /// Must agree with the apiserver's claim mapping. Default: none.
    #[arg(long, env = "KUBE_ORG_USERNAME_PREFIX", default_value = "", value_parser = prefix)]
    pub username_prefix: String,

    /// What the cluster's authenticator puts before each group name (e.g. `oidc:`), for
    /// Organizations that set no `spec.identity.groupsPrefix`. Default: none.
    #[arg(long, env = "KUBE_ORG_GROUPS_PREFIX", default_value = "", value_parser = prefix)]
    pub groups_prefix: String,
}

/// Why a prefix is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PrefixError {
    #[error("a prefix cannot start with system: (Kubernetes system identities are not people)")]
    System,
    #[error("a prefix cannot have spaces, line breaks or other control characters")]
    Whitespace,
    #[error("a prefix has at most 64 characters")]
    TooLong,
}

/// Checks a prefix flag (the CRD checks the same for `spec.identity`).
pub fn prefix(text: &str) -> Result<String, PrefixError> {
    if text.starts_with(SYSTEM_PREFIX) {
        Err(PrefixError::System)
    } else if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Err(PrefixError::Whitespace)
    } else if text.chars().count() > 64 {
        Err(PrefixError::TooLong)
    } else {
        Ok(text.to_string())
    }
}

/// The prefixes in force for one organization.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Identity<'a> {
    pub username_prefix: &'a str,
    pub groups_prefix: &'a str,
}

impl IdentityDefaults {
    /// The prefixes `org` uses: its own, else these defaults.
    pub fn of<'a>(&'a self, org: &'a Organization) -> Identity<'a> {
        let own = &org.spec.identity;
        Identity {
            username_prefix: own
                .username_prefix
                .as_deref()
                .unwrap_or(&self.username_prefix),
            groups_prefix: own.groups_prefix.as_deref().unwrap_or(&self.groups_prefix),
        }
    }
}

impl Identity<'_> {
    /// The user name kube-org binds for `email` with no `spec.user`: the prefix + the
    /// email in lower case.
    pub fn username_of_email(&self, email: &str) -> String {
        format!(
            "{}{}",
            self.username_prefix,
            crate::api::fields::normalize_email(email)
        )
    }

    /// The RBAC user name of a membership: `spec.user` as written, or
    /// [`Identity::username_of_email`].
    pub fn member_user(&self, membership: &Membership) -> String {
        membership
            .spec
            .user
            .clone()
            .unwrap_or_else(|| self.username_of_email(&membership.spec.email.0))
    }

    /// The user name the cluster gives a person who signed in with `email` (the
    /// provider's spelling: the apiserver keeps its case).
    pub fn signed_in_username(&self, email: &str) -> String {
        format!("{}{}", self.username_prefix, email)
    }

    /// The RBAC group name of an identity-provider group.
    pub fn group(&self, group: &str) -> String {
        format!("{}{group}", self.groups_prefix)
    }
}

/// The user name kube-org bound for `membership`, as its status reports it
/// (`status.user`); before kube-org reports, `spec.user` or the email in lower case.
/// For code outside the operator (the plugin), which does not know the operator's
/// `--username-prefix`.
pub fn reported_user(membership: &Membership) -> String {
    membership
        .status
        .as_ref()
        .and_then(|s| s.user.clone())
        .or_else(|| membership.spec.user.clone())
        .unwrap_or_else(|| membership.spec.email.normalized())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn org(identity: serde_json::Value) -> Organization {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "acme"},
            "spec": {"owners": ["a@example.com"], "identity": identity},
        }))
        .unwrap()
    }

    fn member(email: &str, user: Option<&str>) -> Membership {
        Membership::new(
            "m",
            crate::api::MembershipSpec {
                email: email.into(),
                user: user.map(str::to_string),
            },
        )
    }

    #[test]
    fn the_organization_prefix_wins_over_the_operator_default_and_empty_means_none() {
        let defaults = IdentityDefaults {
            username_prefix: "oidc:".into(),
            groups_prefix: "oidc-groups:".into(),
        };
        let plain = org(serde_json::json!({}));
        let own = org(serde_json::json!({"usernamePrefix": "corp#", "groupsPrefix": ""}));
        let bob = member("Bob@Example.com", None);
        assert_eq!(
            defaults.of(&plain).member_user(&bob),
            "oidc:bob@example.com"
        );
        assert_eq!(defaults.of(&own).member_user(&bob), "corp#bob@example.com");
        assert_eq!(defaults.of(&plain).group("devs"), "oidc-groups:devs");
        assert_eq!(defaults.of(&own).group("devs"), "devs");
        let none = IdentityDefaults::default();
        assert_eq!(none.of(&plain).member_user(&bob), "bob@example.com");
        assert_eq!(
            none.of(&plain).signed_in_username("Bob@Example.com"),
            "Bob@Example.com"
        );
    }

    #[test]
    fn the_reported_user_is_the_status_then_spec_user_then_the_email() {
        let mut m = member("Bob@Example.com", None);
        assert_eq!(reported_user(&m), "bob@example.com");
        m.spec.user = Some("bob-sso".into());
        assert_eq!(reported_user(&m), "bob-sso");
        m.status = Some(crate::api::MembershipStatus {
            user: Some("oidc:bob-sso".into()),
            ..Default::default()
        });
        assert_eq!(reported_user(&m), "oidc:bob-sso");
    }

    #[test]
    fn spec_user_is_taken_as_written_without_the_prefix() {
        let defaults = IdentityDefaults {
            username_prefix: "oidc:".into(),
            ..Default::default()
        };
        let plain = org(serde_json::json!({}));
        let m = member("bob@example.com", Some("oidc:Bob@Example.com"));
        assert_eq!(defaults.of(&plain).member_user(&m), "oidc:Bob@Example.com");
    }

    #[test]
    fn prefixes_that_name_system_identities_or_carry_whitespace_are_refused() {
        assert_eq!(prefix("oidc:"), Ok("oidc:".into()));
        assert_eq!(prefix(""), Ok(String::new()));
        assert_eq!(prefix("system:"), Err(PrefixError::System));
        assert_eq!(prefix("system:serviceaccount:"), Err(PrefixError::System));
        assert_eq!(prefix("a b"), Err(PrefixError::Whitespace));
        assert_eq!(prefix("a\n"), Err(PrefixError::Whitespace));
        assert_eq!(prefix(&"x".repeat(65)), Err(PrefixError::TooLong));
    }
}
