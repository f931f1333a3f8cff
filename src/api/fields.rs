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

/// The shape of an RFC 3339 time kube-org accepts in a spec: date, `T`, time with
/// optional fraction, and `Z` or a numeric offset (`2026-12-31T00:00:00Z`,
/// `2026-12-31T09:00:00+09:00`). Stricter than the API server's `date-time` format,
/// which also takes forms (no offset, a space) that would not mean one instant.
pub const RFC3339_PATTERN: &str = r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,9})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$";

/// An instant in RFC 3339 (`2026-12-31T00:00:00Z`), kept as written. A string rather
/// than `metav1.Time`: a value the schema let through but that does not parse (an
/// older CRD, a 30th of February) is then reported on its object instead of breaking
/// the watch of every object of the kind.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Rfc3339(pub String);

/// A time string that does not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0:?} is not an RFC 3339 time such as 2026-12-31T00:00:00Z")]
pub struct InvalidTime(pub String);

impl Rfc3339 {
    /// The instant, if the string is a well-formed RFC 3339 time.
    pub fn parse(&self) -> Result<k8s_openapi::jiff::Timestamp, InvalidTime> {
        let invalid = || InvalidTime(self.0.clone());
        if !matches_rfc3339(&self.0) {
            return Err(invalid());
        }
        k8s_openapi::jiff::Timestamp::from_str(&self.0).map_err(|_| invalid())
    }

    /// The instant in the canonical form kube-org writes (UTC, whole seconds when the
    /// instant has no fraction).
    pub fn at(at: k8s_openapi::jiff::Timestamp) -> Self {
        Rfc3339(at.to_string())
    }
}

/// [`RFC3339_PATTERN`] without a regex engine.
fn matches_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    let number = |r: std::ops::Range<usize>| s.get(r).and_then(|d| d.parse::<u32>().ok());
    if b.len() < 20
        || !digits(0..4)
        || b[4] != b'-'
        || !digits(5..7)
        || b[7] != b'-'
        || !digits(8..10)
        || b[10] != b'T'
        || !digits(11..13)
        || b[13] != b':'
        || !digits(14..16)
        || b[16] != b':'
        || !digits(17..19)
    {
        return false;
    }
    let in_range = |r: std::ops::Range<usize>, lo: u32, hi: u32| {
        number(r).is_some_and(|n| (lo..=hi).contains(&n))
    };
    if !(in_range(5..7, 1, 12)
        && in_range(8..10, 1, 31)
        && in_range(11..13, 0, 23)
        && in_range(14..16, 0, 59)
        && in_range(17..19, 0, 59))
    {
        return false;
    }
    let mut rest = &s[19..];
    if let Some(fraction) = rest.strip_prefix('.') {
        let n = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if !(1..=9).contains(&n) {
            return false;
        }
        rest = &fraction[n..];
    }
    match rest.as_bytes() {
        [b'Z'] => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => {
            [h1, h2, m1, m2].iter().all(|d| d.is_ascii_digit())
                && rest[1..3].parse::<u32>().is_ok_and(|h| h <= 23)
                && rest[4..6].parse::<u32>().is_ok_and(|m| m <= 59)
        }
        _ => false,
    }
}

impl fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for Rfc3339 {
    fn from(value: &str) -> Self {
        Rfc3339(value.to_string())
    }
}

impl JsonSchema for Rfc3339 {
    fn schema_name() -> Cow<'static, str> {
        "Rfc3339".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        let well_formed = format!("self.matches('{}')", RFC3339_PATTERN.replace('\\', "\\\\"));
        json_schema!({
            "type": "string",
            "maxLength": 40,
            "x-kubernetes-validations": [
                {
                    "rule": well_formed,
                    "message": "must be an RFC 3339 time such as 2026-12-31T00:00:00Z or 2026-12-31T09:00:00+09:00",
                },
                {
                    "rule": format!("!{well_formed} || timestamp(self) > timestamp('2000-01-01T00:00:00Z')"),
                    "message": "must be a date and time that exists (not, say, 30 February) after 2000-01-01T00:00:00Z",
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

    #[test]
    fn times_parse_only_in_rfc3339() {
        let at = |s: &str| Rfc3339::from(s).parse().map(|t| t.as_second());
        assert_eq!(at("2026-12-31T00:00:00Z"), Ok(1_798_675_200));
        assert_eq!(at("2026-12-31T09:00:00+09:00"), Ok(1_798_675_200));
        assert_eq!(
            Rfc3339::from("2026-12-31T00:00:00.5Z")
                .parse()
                .unwrap()
                .as_millisecond(),
            1_798_675_200_500
        );
        for bad in [
            "",
            "tomorrow",
            "2026-12-31",
            "2026-12-31T00:00:00",
            "2026-12-31 00:00:00Z",
            "2026-12-31T00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-02-30T00:00:00Z",
            "2026-12-31T24:00:00Z",
            "2026-12-31T00:00:00+0900",
            "2026-12-31T00:00:00.Z",
            "2026-12-31T00:00:00Zjunk",
            "２026-12-31T00:00:00Z",
        ] {
            assert!(Rfc3339::from(bad).parse().is_err(), "{bad:?}");
        }
        let written =
            Rfc3339::at(k8s_openapi::jiff::Timestamp::from_second(1_798_675_200).unwrap());
        assert_eq!(written.0, "2026-12-31T00:00:00Z");
    }
}
