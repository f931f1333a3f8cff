//! Validated scalar fields shared by several kinds.
//!
//! Each newtype carries its own OpenAPI schema with CEL rules and messages a person
//! understands, so the same check applies wherever the field appears (an owner in an
//! Organization, a member in a RoleBinding, an invitee in an Invitation).

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// The shape an email address must have. Deliberately loose (one `@`, a dot in the
/// domain, no spaces and no control characters): the mailbox itself is proven by the
/// invitation link.
pub const EMAIL_PATTERN: &str = r"^[^@\s\p{Cc}]+@[^@\s\p{Cc}]+\.[^@\s\p{Cc}]+$";

/// CEL: the string holds no control character (CR, LF, tab, NUL, DEL, C1) and no
/// Unicode line or paragraph separator. Every string that reaches an email header, a
/// log line or a web page carries it: a line break in a display name would otherwise
/// end a mail header early (header injection) or forge a log line.
pub const NO_CONTROL_CHARACTERS: &str = r"!self.matches('[\\p{Cc}\\p{Zl}\\p{Zp}]')";

/// CEL: [`NO_CONTROL_CHARACTERS`], and no white space either (URLs).
pub const NO_SPACE_OR_CONTROL_CHARACTERS: &str = r"!self.matches('[\\s\\p{Cc}\\p{Zl}\\p{Zp}]')";

/// Whether `text` holds a character [`NO_CONTROL_CHARACTERS`] refuses.
pub fn has_control_characters(text: &str) -> bool {
    text.chars()
        .any(|c| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}'))
}

/// Go's `time.ParseDuration` syntax restricted to positive values in the units that
/// make sense for an invitation: `72h`, `30m`, `1h30m`, `90s`.
pub const DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$";

/// An email address. Compared case-insensitively: [`Email::normalized`] is the form
/// kube-org uses as an identity and as the default RBAC user name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Email(pub String);

impl Email {
    /// The address in lower case with surrounding white space removed.
    pub fn normalized(&self) -> String {
        normalize_email(&self.0)
    }

    /// The part after the `@`, lower case.
    pub fn domain(&self) -> String {
        let normalized = self.normalized();
        normalized
            .rsplit_once('@')
            .map(|(_, domain)| domain.to_string())
            .unwrap_or_default()
    }
}

/// Lower-cases and trims an email address, the single definition of "the same person".
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for Email {
    fn from(value: &str) -> Self {
        Email(value.to_string())
    }
}

impl JsonSchema for Email {
    fn schema_name() -> Cow<'static, str> {
        "Email".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "maxLength": 254,
            "x-kubernetes-validations": [{
                "rule": format!("self.matches('{}')", EMAIL_PATTERN.replace('\\', "\\\\")),
                "message": "must be an email address such as jane@example.com",
            }],
        })
    }
}

/// A duration in Go syntax (`72h`, `30m`, `1h30m`), at least one second and at most a
/// year.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct GoDuration(pub String);

/// A duration string that does not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0:?} is not a duration such as 72h, 30m or 1h30m")]
pub struct InvalidDuration(pub String);

impl GoDuration {
    /// The parsed, positive duration.
    pub fn to_std(&self) -> Result<std::time::Duration, InvalidDuration> {
        let invalid = || InvalidDuration(self.0.clone());
        let parsed = kube::core::Duration::from_str(&self.0).map_err(|_| invalid())?;
        if parsed.is_negative() {
            return Err(invalid());
        }
        Ok(parsed.into())
    }
}

impl fmt::Display for GoDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for GoDuration {
    fn from(value: &str) -> Self {
        GoDuration(value.to_string())
    }
}

impl JsonSchema for GoDuration {
    fn schema_name() -> Cow<'static, str> {
        "GoDuration".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        let well_formed = format!("self.matches('{}')", DURATION_PATTERN.replace('\\', "\\\\"));
        json_schema!({
            "type": "string",
            "maxLength": 32,
            "x-kubernetes-validations": [
                {
                    "rule": well_formed,
                    "message": "must be a positive duration such as 72h, 30m or 1h30m (units: ms, s, m, h)",
                },
                {
                    "rule": format!("!{well_formed} || (duration(self) >= duration('1s') && duration(self) <= duration('8760h'))"),
                    "message": "must be between 1s and 8760h (one year)",
                },
            ],
        })
    }
}

/// Whether `s` is a lower-case DNS label (RFC 1123): what [`dns_label_schema`] admits.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Schema for a Kubernetes object name that is also a DNS label (namespaces, roles).
pub fn dns_label_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "maxLength": 63,
        "x-kubernetes-validations": [{
            "rule": "self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",
            "message": "must be a lower-case DNS label: letters, digits and '-', starting and ending with a letter or digit",
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_compare_case_insensitively() {
        assert_eq!(
            Email::from(" Jane@Example.COM ").normalized(),
            "jane@example.com"
        );
        assert_eq!(Email::from("Jane@Example.COM").domain(), "example.com");
    }

    #[test]
    fn dns_labels() {
        assert!(is_dns_label("deployment"));
        assert!(is_dns_label("tier-1-analyst"));
        for bad in ["", "-a", "a-", "A", "a.b", "a_b", &"x".repeat(64)] {
            assert!(!is_dns_label(bad), "{bad:?}");
        }
    }

    #[test]
    fn durations_parse_like_go() {
        assert_eq!(
            GoDuration::from("72h").to_std().unwrap().as_secs(),
            72 * 3600
        );
        assert_eq!(GoDuration::from("1h30m").to_std().unwrap().as_secs(), 5400);
        assert!(GoDuration::from("-1h").to_std().is_err());
        assert!(GoDuration::from("three days").to_std().is_err());
    }
}
