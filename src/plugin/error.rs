//! The plugin's errors: each says what went wrong and what to do, and maps to the exit
//! code scripts rely on ([`PluginError::exit_code`]).

use std::error::Error as StdError;

use crate::access::roles::RoleProblem;

/// Exit code: success.
pub const EXIT_OK: u8 = 0;
/// Exit code: the cluster refused or failed, or the input names something that does not
/// exist (an organization, an invitation, a member, a role).
pub const EXIT_ERROR: u8 = 1;
/// Exit code: the command line itself is wrong (clap uses the same code for its errors).
pub const EXIT_USAGE: u8 = 2;

/// Everything a plugin command can fail with.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The command line is wrong in a way clap cannot see on its own.
    #[error("{0}")]
    Usage(String),

    #[error(
        "cannot load the Kubernetes configuration: {0}: set KUBECONFIG, or pass --kubeconfig or --context"
    )]
    KubeConfig(String),

    #[error(
        "organization {0} not found: list organizations with `kubectl get organizations.kube-org.io`"
    )]
    OrganizationNotFound(String),

    #[error("{action}: {}", describe_kube_error(.error))]
    Kube {
        /// What the plugin was doing, e.g. "listing the invitations of acme".
        action: String,
        error: kube::Error,
    },

    #[error("{0}; list the roles with `kubectl org roles --org {1}`")]
    Role(RoleProblem, String),

    #[error(
        "{email} is already invited (invitation {name}, {phase}): send a new link with `kubectl org resend {email} --org {org}`, or remove it with `kubectl org cancel {name} --org {org}`"
    )]
    AlreadyInvited {
        email: String,
        name: String,
        phase: String,
        org: String,
    },

    #[error(
        "no invitation {target} in organization {org}: list them with `kubectl org invitations --org {org}`"
    )]
    InvitationNotFound { target: String, org: String },

    #[error(
        "{email} has several invitations in organization {org} ({names}): name one of them instead of the email"
    )]
    AmbiguousInvitation {
        email: String,
        org: String,
        names: String,
    },

    #[error(
        "invitation {name} for {email} was accepted already: there is nothing to resend; {email} is a member"
    )]
    AlreadyAccepted { name: String, email: String },

    #[error(
        "no Membership for {email} in organization {org}: list members with `kubectl org members --org {org}`"
    )]
    MemberNotFound { email: String, org: String },

    #[error(
        "{email} is not a member of organization {org}: invite them instead: `kubectl org invite {email} --org {org} {role_flags}`"
    )]
    NotAMember {
        email: String,
        org: String,
        /// The flags of the grant, to repeat on `invite`.
        role_flags: String,
    },

    #[error(
        "{email} holds {held} already (rolebinding.kube-org.io/{name}): to change it, revoke that first with `{revoke}`, then grant again"
    )]
    GrantConflict {
        email: String,
        /// The role as held, e.g. `viewer on deployment/* (console)`.
        held: String,
        name: String,
        /// The command that revokes it.
        revoke: String,
    },

    #[error(
        "{email} holds no {wanted} in organization {org} (holds: {holds}): nothing was revoked; see the roles with `kubectl org members --org {org}`"
    )]
    NothingToRevoke {
        email: String,
        org: String,
        /// What was asked for, e.g. `viewer on deployment/*` or `viewer binding`.
        wanted: String,
        /// What the member holds, one line.
        holds: String,
    },

    #[error(
        "the organization-owner role of {email} comes from spec.owners of Organization {org}: kube-org would only recreate rolebinding.kube-org.io/{name}; remove {email} from spec.owners instead (`kubectl edit organization {org}`)"
    )]
    OwnerFromSpec {
        email: String,
        org: String,
        name: String,
    },

    #[error(
        "kube-org keeps Membership {name}: {message}. It stays marked for deletion and goes as soon as that is resolved; until then {email} keeps their access"
    )]
    LeaveRefused {
        email: String,
        name: String,
        /// kube-org's own words (the Membership's Ready condition).
        message: String,
    },

    #[error(
        "you are signed in as {user}, and no Membership of organization {org} is for that user: list the members with `kubectl org members --org {org}`"
    )]
    NotSignedInMember { user: String, org: String },

    #[error(
        "you (user {user}) may not {what} in organization {org}: in kube-org, owners remove members; ask an owner to run `kubectl org remove {email} --org {org}`"
    )]
    MayNotLeave {
        user: String,
        org: String,
        /// What the cluster refused, e.g. "read the Memberships".
        what: String,
        /// The email to remove, or the user name when it is not known.
        email: String,
    },

    #[error(
        "Membership {name} is marked for deletion, but kube-org did not release it within {timeout}: is the operator running? Follow it with `kubectl get orgmember {name} -n {home} -w`"
    )]
    RemovalPending {
        name: String,
        home: String,
        timeout: String,
    },

    /// `why` answered no on standard output: exit 1 without an error line.
    #[error("the cluster does not allow it")]
    AnsweredNo,

    #[error("{failed} of {total} invitations were not created (see the errors above)")]
    SomeInvitationsFailed { failed: usize, total: usize },

    #[error(
        "could not reach the accept endpoint {url}: {reason}: check --url or KUBE_ORG_ACCEPT_URL (the base URL the invitation emails link to)"
    )]
    AcceptUnreachable { url: String, reason: String },

    #[error(
        "{url} answered {status}: it does not look like kube-org's accept endpoint; check --url or KUBE_ORG_ACCEPT_URL (the base URL the invitation emails link to, e.g. https://org.example.com)"
    )]
    AcceptNotAnEndpoint { url: String, status: u16 },

    #[error("the invitation was not accepted ({status}): {message}")]
    AcceptRefused { status: u16, message: String },

    #[error("writing the output: {0}")]
    Output(#[from] std::io::Error),

    #[error("rendering the output: {0}")]
    Render(String),
}

impl PluginError {
    /// Whether the error is told on standard error (`why`'s "no" was told on standard
    /// output already).
    pub fn is_reported(&self) -> bool {
        !matches!(self, PluginError::AnsweredNo)
    }

    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            PluginError::Usage(_) => EXIT_USAGE,
            _ => EXIT_ERROR,
        }
    }

    /// A [`PluginError::Kube`] for `action`.
    pub fn kube(action: impl Into<String>, error: kube::Error) -> Self {
        PluginError::Kube {
            action: action.into(),
            error,
        }
    }
}

/// Whether the cluster refused the request for lack of permission (403).
pub fn is_forbidden(error: &PluginError) -> bool {
    matches!(error, PluginError::Kube { error: kube::Error::Api(status), .. } if status.code == 403)
}

/// What a person needs from a Kubernetes client error: the API server's own message, with
/// a hint for the usual causes; or the whole chain of a transport error.
pub fn describe_kube_error(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => {
            let hint = match status.code {
                401 => ": log in again (the credentials in the kubeconfig were refused)",
                403 => ": ask an owner of the organization or a cluster admin for access",
                404 if status.details.as_ref().is_none_or(|d| d.name.is_empty()) => {
                    ": are kube-org's CRDs installed? `kubectl apply --server-side -f crds/`"
                }
                _ => "",
            };
            format!("{}{hint}", status.message)
        }
        other => format!(
            "cannot reach the Kubernetes API server ({}): check KUBECONFIG or --context",
            chain(other)
        ),
    }
}

/// An error and its sources, joined by ": ".
pub fn chain(error: &dyn StdError) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let next = cause.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::Status;

    fn api_error(code: u16, message: &str, name: Option<&str>) -> kube::Error {
        let mut status = Status::failure(message, "NotFound").with_code(code);
        if let Some(name) = name {
            let details = serde_json::json!({ "name": name });
            status = status.with_details(serde_json::from_value(details).expect("details"));
        }
        kube::Error::Api(status.boxed())
    }

    #[test]
    fn usage_errors_exit_2_and_the_others_1() {
        assert_eq!(PluginError::Usage("x".into()).exit_code(), EXIT_USAGE);
        assert_eq!(
            PluginError::OrganizationNotFound("acme".into()).exit_code(),
            EXIT_ERROR
        );
    }

    #[test]
    fn messages_say_what_to_do() {
        let error = PluginError::OrganizationNotFound("acme".into());
        assert_eq!(
            error.to_string(),
            "organization acme not found: list organizations with `kubectl get organizations.kube-org.io`"
        );
        let forbidden = PluginError::kube(
            "listing the invitations of acme",
            api_error(403, "invitations are forbidden", None),
        );
        assert!(
            forbidden
                .to_string()
                .starts_with("listing the invitations of acme: invitations are forbidden: ask"),
            "{forbidden}"
        );
    }

    #[test]
    fn a_no_from_why_exits_1_without_an_error_line() {
        assert_eq!(PluginError::AnsweredNo.exit_code(), EXIT_ERROR);
        assert!(!PluginError::AnsweredNo.is_reported());
        assert!(PluginError::Usage("x".into()).is_reported());
    }

    #[test]
    fn forbidden_is_told_apart() {
        let forbidden = PluginError::kube("deleting", api_error(403, "forbidden", None));
        assert!(is_forbidden(&forbidden));
        let missing = PluginError::kube("deleting", api_error(404, "gone", Some("x")));
        assert!(!is_forbidden(&missing));
        assert!(!is_forbidden(&PluginError::AnsweredNo));
    }

    #[test]
    fn a_missing_kind_suggests_installing_the_crds() {
        let missing_kind = api_error(
            404,
            "the server could not find the requested resource",
            None,
        );
        assert!(describe_kube_error(&missing_kind).contains("crds/"));
        let missing_object = api_error(404, "\"x\" not found", Some("x"));
        assert_eq!(describe_kube_error(&missing_object), "\"x\" not found");
    }

    #[test]
    fn chains_skip_repeated_causes() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(chain(&io), "refused");
    }
}
