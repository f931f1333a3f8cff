//! The invitation email (a text and an HTML part) and the pooled SMTP transport that
//! sends it.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::PoolConfig;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::config::{SmtpSecurity, SmtpUrl};
use crate::access::roles::RoleTable;
use crate::api::fields::has_control_characters;
use crate::api::scope::ScopeTarget;
use crate::api::{Access, Invitation, Organization};

/// The path of the accept endpoint.
pub const ACCEPT_PATH: &str = "/invitations/accept";

/// Why an email could not be built or sent.
#[derive(Debug, thiserror::Error)]
pub enum EmailError {
    #[error("{0:?} is not a usable email address: {1}")]
    Address(String, String),
    #[error(
        "the accept link base {0:?} is not a usable URL: it is empty or contains spaces or control characters"
    )]
    Link(String),
    #[error("building the email: {0}")]
    Build(String),
    #[error("no SMTP server configured")]
    NotConfigured,
    #[error("SMTP server {server}: {error}")]
    Smtp { server: String, error: String },
    #[error("TLS settings for {0}: {1}")]
    Tls(String, String),
}

impl EmailError {
    /// Whether the message itself cannot be built from the objects (a sender, an
    /// address or a link no mail server would take): sending again cannot help until
    /// the Organization or the Invitation changes, unlike a server that failed.
    pub fn is_invalid_message(&self) -> bool {
        matches!(
            self,
            EmailError::Address(..) | EmailError::Link(_) | EmailError::Build(_)
        )
    }
}

/// The longest sender name an email carries (longer display names are cut).
pub const MAX_DISPLAY_NAME: usize = 200;

/// `text` made safe for one line of a mail header: control characters and line or
/// paragraph separators become spaces, runs of white space one space, at most `max`
/// characters. Admission already refuses such characters; this guards objects that
/// predate the rule or bypassed it.
pub fn one_line(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max * 4));
    let mut count = 0;
    let mut space = false;
    for c in text.chars() {
        if count >= max {
            break;
        }
        let blank = c.is_whitespace() || c.is_control() || matches!(c, '\u{2028}' | '\u{2029}');
        if blank {
            space = !out.is_empty();
            continue;
        }
        if space {
            // A space only with room for a character after it: never a trailing one.
            if count + 2 > max {
                break;
            }
            out.push(' ');
            count += 1;
            space = false;
        }
        out.push(c);
        count += 1;
    }
    out
}

/// The link in the email.
pub fn accept_link(base: &str, token: &str) -> String {
    format!("{}{ACCEPT_PATH}?token={token}", base.trim_end_matches('/'))
}

/// One role offered, as the email shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OfferedRole {
    pub role: String,
    pub scope: String,
    pub console_only: bool,
    pub description: String,
}

/// The roles an invitation offers, with their descriptions as [`RoleTable::resolve`]
/// gives them: the Organization's words for its own roles (which replace catalog roles
/// of the same name), else the catalog's.
pub fn offered_roles(org: &Organization, invitation: &Invitation) -> Vec<OfferedRole> {
    let table = RoleTable::new(org);
    invitation
        .spec
        .roles
        .iter()
        .map(|offered| OfferedRole {
            role: offered.role.clone(),
            scope: {
                let scope = match offered.scope.target() {
                    Some(ScopeTarget::Organization) => "the whole organization".to_string(),
                    Some(ScopeTarget::AllOfType(kind)) => format!("every {kind} resource"),
                    Some(ScopeTarget::Named(kind, names)) => {
                        format!("{kind} resources {}", names.join(", "))
                    }
                    None => offered.scope.summary(),
                };
                match &offered.expires_after {
                    Some(after) => format!("{scope}, for {after} after you accept"),
                    None => scope,
                }
            },
            console_only: offered.access == Access::Console,
            // Only invitations whose roles resolve are sent (check_roles).
            description: table
                .resolve(offered)
                .map(|role| role.description)
                .unwrap_or_default(),
        })
        .collect()
}

/// What the accept page shows once the invitation is accepted.
const AFTERWARDS: &str =
    "Once you accept, the page shows where you can go and how to connect with kubectl.";

/// What the email says.
pub struct Invite<'a> {
    pub organization: &'a Organization,
    pub invitation: &'a Invitation,
    pub from: &'a str,
    pub link: &'a str,
    pub expires_at: Timestamp,
}

impl Invite<'_> {
    /// The display name (else the object's name), on one line.
    fn organization_name(&self) -> String {
        let display = self
            .organization
            .spec
            .display_name
            .as_deref()
            .map(|n| one_line(n, MAX_DISPLAY_NAME))
            .unwrap_or_default();
        if display.is_empty() {
            one_line(
                self.organization
                    .metadata
                    .name
                    .as_deref()
                    .unwrap_or_default(),
                MAX_DISPLAY_NAME,
            )
        } else {
            display
        }
    }

    /// The subject line.
    pub fn subject(&self) -> String {
        format!("You are invited to join {}", self.organization_name())
    }

    /// The plain-text part.
    pub fn text(&self) -> String {
        let mut text = format!(
            "You are invited to join {} as {}.\n\nRoles offered:\n",
            self.organization_name(),
            self.invitation.spec.email.normalized()
        );
        for role in offered_roles(self.organization, self.invitation) {
            text.push_str(&format!(
                "- {} on {}{}: {}\n",
                role.role,
                role.scope,
                if role.console_only {
                    " (console only)"
                } else {
                    ""
                },
                role.description
            ));
        }
        text.push_str(&format!(
            "\n{}\n{}\n\nThe link works once and expires at {} (UTC). {}\nIf you did not expect this invitation, ignore this email.\n",
            self.how_to_accept(),
            self.link,
            show(self.expires_at),
            AFTERWARDS
        ));
        text
    }

    /// What accepting takes: a confirmation, and a sign-in when the organization
    /// requires one (`spec.invitations.requireLogin`).
    fn how_to_accept(&self) -> String {
        if self.organization.spec.invitations.require_login {
            format!(
                "To accept, open this link, confirm and sign in with your organization account ({}):",
                self.invitation.spec.email.normalized()
            )
        } else {
            "To accept, open this link and confirm:".to_string()
        }
    }

    /// The HTML part.
    pub fn html(&self) -> String {
        let mut roles = String::new();
        for role in offered_roles(self.organization, self.invitation) {
            roles.push_str(&format!(
                "<li><strong>{}</strong> on {}{}<br>{}</li>",
                escape(&role.role),
                escape(&role.scope),
                if role.console_only {
                    " (console only)"
                } else {
                    ""
                },
                escape(&role.description)
            ));
        }
        format!(
            "<!DOCTYPE html><html><body style=\"font-family:sans-serif\">\
             <p>You are invited to join <strong>{org}</strong> as {email}.</p>\
             <p>Roles offered:</p><ul>{roles}</ul>\
             <p>{how}<br><a href=\"{link}\">Accept the invitation</a></p>\
             <p>The link works once and expires at {expires} (UTC). {afterwards}<br>\
             If you did not expect this invitation, ignore this email.</p></body></html>",
            org = escape(&self.organization_name()),
            email = escape(&self.invitation.spec.email.normalized()),
            how = escape(self.how_to_accept().trim_end_matches(':')),
            link = escape(self.link),
            expires = show(self.expires_at),
            afterwards = AFTERWARDS,
        )
    }

    /// The whole message, or why it cannot be built from these objects. Never panics:
    /// every string is checked or made one line before it reaches a header, and a
    /// panic inside the mail library is turned into [`EmailError::Build`].
    pub fn message(&self) -> Result<Message, EmailError> {
        let from_text = self.from.trim();
        if from_text.is_empty() || has_control_characters(from_text) {
            return Err(EmailError::Address(
                self.from.to_string(),
                "a sender address must be one line without control characters".to_string(),
            ));
        }
        let from_address: lettre::Address =
            from_text
                .parse()
                .map_err(|e: lettre::address::AddressError| {
                    EmailError::Address(self.from.to_string(), e.to_string())
                })?;
        let to_text = self.invitation.spec.email.normalized();
        if has_control_characters(&to_text) {
            return Err(EmailError::Address(
                to_text,
                "an address must not contain control characters".to_string(),
            ));
        }
        let to: lettre::Address = to_text
            .parse()
            .map_err(|e: lettre::address::AddressError| {
                EmailError::Address(to_text.clone(), e.to_string())
            })?;
        if self.link.is_empty()
            || has_control_characters(self.link)
            || self.link.chars().any(char::is_whitespace)
        {
            // Never the whole link: it carries the token.
            let base = self.link.split('?').next().unwrap_or_default();
            let base = base.strip_suffix(ACCEPT_PATH).unwrap_or(base);
            return Err(EmailError::Link(base.chars().take(256).collect()));
        }
        let name = self.organization_name();
        let build = || {
            Message::builder()
                .from(Mailbox::new(
                    (!name.is_empty()).then(|| name.clone()),
                    from_address,
                ))
                .to(Mailbox::new(None, to))
                .subject(self.subject())
                .multipart(MultiPart::alternative_plain_html(self.text(), self.html()))
                .map_err(|e| EmailError::Build(e.to_string()))
        };
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(build)).unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "the mail library failed".to_string());
            Err(EmailError::Build(what))
        })
    }
}

fn show(time: Timestamp) -> String {
    time.strftime("%Y-%m-%d %H:%M:%S").to_string()
}

/// Escapes text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A pooled SMTP transport.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    server: String,
}

impl Mailer {
    /// A transport to `url`; `credentials` win over those in the URL.
    pub fn new(url: &SmtpUrl, credentials: Option<Credentials>) -> Result<Mailer, EmailError> {
        let server = url.display();
        let tls = |host: &str| {
            TlsParameters::new(host.to_string())
                .map_err(|e| EmailError::Tls(server.clone(), e.to_string()))
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&url.host)
            .port(url.port)
            .timeout(Some(Duration::from_secs(20)))
            .pool_config(
                PoolConfig::new()
                    .max_size(8)
                    .idle_timeout(Duration::from_secs(30)),
            );
        builder = match url.security {
            SmtpSecurity::Plain => builder.tls(Tls::None),
            SmtpSecurity::StartTls => builder.tls(Tls::Required(tls(&url.host)?)),
            SmtpSecurity::Tls => builder.tls(Tls::Wrapper(tls(&url.host)?)),
        };
        if let Some(credentials) = credentials.or_else(|| url.url_credentials()) {
            builder = builder.credentials(credentials);
        }
        Ok(Mailer {
            transport: builder.build(),
            server,
        })
    }

    /// Sends one message; the error carries the server's answer.
    pub async fn send(&self, message: Message) -> Result<(), EmailError> {
        self.transport
            .send(message)
            .await
            .map(|_| ())
            .map_err(|error| EmailError::Smtp {
                server: self.server.clone(),
                error: error_chain(&error),
            })
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Scope;
    use crate::api::organization::{CustomRole, RoleLevel};
    use crate::catalog;
    use crate::invitations::fixtures::{self, organization, role};

    fn org() -> Organization {
        let mut org = organization(
            "acme",
            serde_json::json!({"displayName": "Acme <Platform> Team"}),
        );
        org.spec.roles.push(CustomRole {
            name: "auditor".into(),
            level: RoleLevel::Resource,
            resource_types: vec![],
            cluster_role: Some("view".into()),
            description: Some("Reads everything for the audit.".into()),
        });
        org
    }

    /// The email of `invitation` from `org`, with a fixed sender, link and expiry.
    fn invite<'a>(org: &'a Organization, invitation: &'a Invitation) -> Invite<'a> {
        Invite {
            organization: org,
            invitation,
            from: "noreply@example.com",
            link: "https://org.example.com/invitations/accept?token=x",
            expires_at: Timestamp::UNIX_EPOCH,
        }
    }

    fn invitation() -> Invitation {
        fixtures::invitation(
            "dave",
            "Dave@Example.com",
            vec![
                role("viewer", Scope::all_of("deployment"), Access::Full),
                role(
                    "auditor",
                    Scope::named("deployment", &["prod"]),
                    Access::Console,
                ),
                role("billing-admin", Scope::organization(), Access::Full),
            ],
        )
    }

    #[test]
    fn an_organization_that_requires_sign_in_says_so_and_every_email_says_what_follows() {
        let mut org = org();
        let invitation = invitation();
        let plain = invite(&org, &invitation).text();
        assert!(plain.contains("open this link and confirm:"), "{plain}");
        assert!(plain.contains("how to connect with kubectl"), "{plain}");
        org.spec.invitations.require_login = true;
        let signing_in = invite(&org, &invitation);
        assert!(
            signing_in
                .text()
                .contains("confirm and sign in with your organization account (dave@example.com)"),
            "{}",
            signing_in.text()
        );
        assert!(
            signing_in
                .html()
                .contains("sign in with your organization account")
        );
    }

    #[test]
    fn the_email_names_the_organization_roles_expiry_and_link() {
        let org = org();
        let invitation = invitation();
        let link = accept_link("https://org.example.com/", &"a".repeat(64));
        assert_eq!(
            link,
            format!(
                "https://org.example.com/invitations/accept?token={}",
                "a".repeat(64)
            )
        );
        let invite = Invite {
            organization: &org,
            invitation: &invitation,
            from: "noreply@example.com",
            link: &link,
            expires_at: Timestamp::from_second(1_767_225_600).unwrap(),
        };
        let text = invite.text();
        let viewer = catalog::named("viewer").next().unwrap().description;
        for wanted in [
            "Acme <Platform> Team",
            "dave@example.com",
            viewer,
            "auditor on deployment resources prod (console only): Reads everything for the audit.",
            catalog::named("billing-admin").next().unwrap().description,
            link.as_str(),
            "2026-01-01 00:00:00",
        ] {
            assert!(text.contains(wanted), "{wanted:?} missing from:\n{text}");
        }
        let html = invite.html();
        assert!(html.contains("Acme &lt;Platform&gt; Team"), "{html}");
        assert!(!html.contains("<Platform>"));
        assert!(html.contains(&format!("href=\"{link}\"")));
        assert_eq!(
            invite.subject(),
            "You are invited to join Acme <Platform> Team"
        );

        let mut timed = invitation.clone();
        timed.spec.roles[1].expires_after = Some("8h".into());
        let timed_text = Invite {
            organization: &org,
            invitation: &timed,
            from: "noreply@example.com",
            link: &link,
            expires_at: Timestamp::from_second(1_767_225_600).unwrap(),
        }
        .text();
        assert!(
            timed_text.contains(
                "auditor on deployment resources prod, for 8h after you accept (console only)"
            ),
            "{timed_text}"
        );

        let message = String::from_utf8(invite.message().unwrap().formatted()).unwrap();
        assert!(message.contains("multipart/alternative"));
        assert!(message.contains("text/plain"));
        assert!(message.contains("text/html"));
    }

    #[test]
    fn a_display_name_with_line_breaks_is_one_header_line() {
        let org = organization(
            "acme",
            serde_json::json!({"displayName": "Acme\r\nBcc: everyone@example.com\u{2028}\tTeam"}),
        );
        let invitation = invitation();
        let link = accept_link("https://org.example.com", &"a".repeat(64));
        let invite = Invite {
            organization: &org,
            invitation: &invitation,
            from: "noreply@example.com",
            link: &link,
            expires_at: Timestamp::UNIX_EPOCH,
        };
        assert_eq!(
            invite.subject(),
            "You are invited to join Acme Bcc: everyone@example.com Team"
        );
        let message = String::from_utf8(invite.message().unwrap().formatted()).unwrap();
        let headers = message.split("\r\n\r\n").next().unwrap();
        assert!(
            !headers
                .lines()
                .any(|l| l.to_ascii_lowercase().starts_with("bcc:")),
            "{headers}"
        );
    }

    #[test]
    fn unusable_input_is_a_typed_error_without_the_token() {
        let org = org();
        let invitation = invitation();
        let token = "f".repeat(64);
        let link = accept_link("https://org.example.com/a\r\nb", &token);
        let good = accept_link("https://org.example.com", &token);
        for (from, link) in [
            ("kube-org@example.com\r\nBcc: x@example.com", link.as_str()),
            ("", link.as_str()),
            ("kube-org@example.com", link.as_str()),
            ("kube-org@example.com", ""),
            ("kube(org@example.com", good.as_str()),
        ] {
            let invite = Invite {
                organization: &org,
                invitation: &invitation,
                from,
                link,
                expires_at: Timestamp::UNIX_EPOCH,
            };
            let error = invite.message().unwrap_err();
            assert!(error.is_invalid_message(), "{error}");
            assert!(!error.to_string().contains(&token), "{error}");
        }
    }

    #[test]
    fn an_invitee_address_the_mail_library_refuses_is_an_error() {
        let org = org();
        let invitation = fixtures::invitation(
            "bad",
            "bad(addr@example.com",
            vec![role("viewer", Scope::all_of("deployment"), Access::Full)],
        );
        let invite = invite(&org, &invitation);
        assert!(matches!(invite.message(), Err(EmailError::Address(..))));
    }

    #[test]
    fn a_bad_sender_is_an_error() {
        let org = org();
        let invitation = invitation();
        let invite = Invite {
            from: "not an address",
            link: "x",
            ..invite(&org, &invitation)
        };
        assert!(matches!(invite.message(), Err(EmailError::Address(..))));
    }

    #[test]
    fn an_organizations_own_viewer_is_described_in_its_words() {
        use crate::access::roles::fixtures::{VIEWER_DESCRIPTION, organization_viewer};
        let org = organization_viewer();
        let invitation = fixtures::invitation(
            "dave",
            "dave@example.com",
            vec![role("viewer", Scope::organization(), Access::Full)],
        );
        let offered = offered_roles(&org, &invitation);
        assert_eq!(offered[0].description, VIEWER_DESCRIPTION);
        let text = invite(&org, &invitation).text();
        assert!(
            text.contains(&format!(
                "viewer on the whole organization: {VIEWER_DESCRIPTION}"
            )),
            "{text}"
        );
        for catalog_viewer in catalog::named("viewer") {
            assert!(!text.contains(catalog_viewer.description), "{text}");
        }
    }
}
