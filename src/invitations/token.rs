//! Invitation tokens: 256 bits from the operating system's CSPRNG, sent only in the
//! email link and stored only as hashes, in the Invitation's `status.token` (so kube-org
//! needs no rights on Secrets, and the record goes with the Invitation).
//!
//! Two one-way values are derived from a token with domain separation: a *lookup id*,
//! which finds the Invitation (the accept endpoint's cache is indexed by it), and a
//! *verifier*, compared in constant time. Neither reveals the token, and neither is
//! enough to accept: a SHA-256 of 256 random bits cannot be inverted or guessed.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::api::{Invitation, InvitationToken};

/// Token bytes (256 bits).
const TOKEN_BYTES: usize = 32;
/// Length of a token as it appears in a link (hex).
pub const TOKEN_LENGTH: usize = TOKEN_BYTES * 2;

/// Why a token could not be minted.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the operating system's random number generator failed: {0}")]
    Random(String),
}

/// A freshly minted token. Its text goes into the email and nowhere else.
pub struct Token(String);

impl Token {
    /// 256 bits from the operating system's CSPRNG, hex-encoded.
    pub fn mint() -> Result<Token, TokenError> {
        let mut bytes = [0u8; TOKEN_BYTES];
        getrandom::fill(&mut bytes).map_err(|e| TokenError::Random(e.to_string()))?;
        Ok(Token(hex(&bytes)))
    }

    /// The text to put in the link.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// What the Invitation's status records of this token: its hashes only.
    pub fn record(&self) -> InvitationToken {
        InvitationToken {
            lookup_id: lookup_id(&self.0),
            verifier: hex(&verifier(&self.0)),
        }
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(…)")
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn digest(purpose: &str, token: &str) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(b"kube-org invitation token ");
    hasher.update(purpose.as_bytes());
    hasher.update(b"\0");
    hasher.update(token.as_bytes());
    hasher.finalize().into()
}

/// Whether `text` has the shape of a token (64 lower-case hex digits); anything else is
/// answered without a lookup.
pub fn well_formed(text: &str) -> bool {
    text.len() == TOKEN_LENGTH && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The id that finds a token's Invitation (160 bits of a hash of the token, hex).
pub fn lookup_id(token: &str) -> String {
    hex(&digest("lookup", token)[..20])
}

/// The hash stored to verify a token.
pub fn verifier(token: &str) -> [u8; 32] {
    digest("verify", token)
}

/// Whether `token` is the one `record` was made from, compared in constant time.
pub fn matches(record: &InvitationToken, token: &str) -> bool {
    let expected = hex(&verifier(token));
    record.verifier.len() == expected.len()
        && bool::from(record.verifier.as_bytes().ct_eq(expected.as_bytes()))
}

/// The lookup id of an Invitation's current link, if it has one.
pub fn current_lookup_id(invitation: &Invitation) -> Option<&str> {
    invitation
        .status
        .as_ref()
        .and_then(|s| s.token.as_ref())
        .map(|t| t.lookup_id.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_well_formed_and_not_stored() {
        let a = Token::mint().unwrap();
        let b = Token::mint().unwrap();
        assert_ne!(a.expose(), b.expose());
        assert!(well_formed(a.expose()));
        assert!(!well_formed("abc"));
        assert!(!well_formed(&"G".repeat(TOKEN_LENGTH)));
        assert_eq!(format!("{a:?}"), "Token(…)");

        let record = a.record();
        let serialized = serde_json::to_string(&record).unwrap();
        assert!(
            !serialized.contains(a.expose()),
            "the token itself is stored"
        );
        assert!(serialized.contains("lookupId"), "{serialized}");
        assert_eq!(record.lookup_id, lookup_id(a.expose()));
        assert!(matches(&record, a.expose()));
        assert!(!matches(&record, b.expose()));
        let mut truncated = record.clone();
        truncated.verifier.pop();
        assert!(!matches(&truncated, a.expose()));
    }

    #[test]
    fn lookup_id_and_verifier_are_independent() {
        let token = "0".repeat(TOKEN_LENGTH);
        assert_eq!(lookup_id(&token).len(), 40);
        assert!(!hex(&verifier(&token)).starts_with(&lookup_id(&token)));
    }
}
