//! Invitation tokens: 256 bits from the operating system's CSPRNG, sent only in the
//! email link and stored only as hashes, in a Secret owned by the Invitation (so the
//! garbage collector removes it with the Invitation).
//!
//! Two one-way values are derived from a token with domain separation: a *lookup id*,
//! a label on the Secret that finds it without knowing the namespace, and a *verifier*,
//! compared in constant time. Neither reveals the token.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use kube::{Resource, ResourceExt};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::lifecycle::LinkGeneration;
use crate::access::names::{LABEL_MANAGED_BY, MANAGER};
use crate::api::Invitation;

/// Label on token Secrets: the token's lookup id.
pub const LABEL_TOKEN_ID: &str = "kube-org.io/invitation-token";
/// Token bytes (256 bits).
const TOKEN_BYTES: usize = 32;
/// Length of a token as it appears in a link (hex).
pub const TOKEN_LENGTH: usize = TOKEN_BYTES * 2;

const KEY_VERIFIER: &str = "verifier";
const KEY_RESEND: &str = "resend";
const KEY_AUTO_RESENDS: &str = "autoResends";
const KEY_EXPIRES_AT: &str = "expiresAt";

/// Why a token could not be minted or a Secret not read.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the operating system's random number generator failed: {0}")]
    Random(String),
    #[error("token Secret {0} is malformed: {1}")]
    Malformed(String, &'static str),
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

/// The label value that finds a token's Secret (160 bits of a hash of the token).
pub fn lookup_id(token: &str) -> String {
    hex(&digest("lookup", token)[..20])
}

/// The hash stored to verify a token.
pub fn verifier(token: &str) -> [u8; 32] {
    digest("verify", token)
}

/// The name of an invitation's token Secret.
pub fn secret_name(invitation: &str) -> String {
    const SUFFIX: &str = "-invitation-token";
    if invitation.len() + SUFFIX.len() <= 253 {
        format!("{invitation}{SUFFIX}")
    } else {
        let digest = Sha256::digest(invitation.as_bytes());
        format!("invitation-token-{}", hex(&digest[..16]))
    }
}

/// What a token Secret records about its link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredToken {
    pub namespace: String,
    pub secret: String,
    pub secret_uid: Option<String>,
    /// The Invitation it belongs to: (name, uid), from the owner reference.
    pub invitation: String,
    pub invitation_uid: String,
    pub generation: LinkGeneration,
    pub expires_at: Timestamp,
    verifier: Vec<u8>,
}

impl StoredToken {
    /// Whether `token` is this link's token, compared in constant time.
    pub fn matches(&self, token: &str) -> bool {
        self.verifier.as_slice().ct_eq(&verifier(token)).into()
    }
}

/// The token Secret for a new link of `invitation`, owned by it.
pub fn secret_for(
    invitation: &Invitation,
    token: &Token,
    generation: LinkGeneration,
    expires_at: Timestamp,
) -> Secret {
    let name = invitation.name_any();
    let owner = OwnerReference {
        api_version: Invitation::api_version(&()).to_string(),
        kind: Invitation::kind(&()).to_string(),
        name: name.clone(),
        uid: invitation.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    };
    let data = BTreeMap::from([
        (
            KEY_VERIFIER.to_string(),
            ByteString(verifier(token.expose()).to_vec()),
        ),
        (
            KEY_RESEND.to_string(),
            ByteString(generation.resend.to_string().into_bytes()),
        ),
        (
            KEY_AUTO_RESENDS.to_string(),
            ByteString(generation.auto_resends.to_string().into_bytes()),
        ),
        (
            KEY_EXPIRES_AT.to_string(),
            ByteString(expires_at.to_string().into_bytes()),
        ),
    ]);
    Secret {
        metadata: ObjectMeta {
            name: Some(secret_name(&name)),
            namespace: invitation.namespace(),
            labels: Some(BTreeMap::from([
                (LABEL_MANAGED_BY.to_string(), MANAGER.to_string()),
                (LABEL_TOKEN_ID.to_string(), lookup_id(token.expose())),
            ])),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        type_: Some("kube-org.io/invitation-token".to_string()),
        data: Some(data),
        ..Default::default()
    }
}

/// Reads a token Secret back.
pub fn read_secret(secret: &Secret) -> Result<StoredToken, TokenError> {
    let name = secret.name_any();
    let malformed = |what| TokenError::Malformed(name.clone(), what);
    let owner = secret
        .owner_references()
        .iter()
        .find(|o| o.kind == Invitation::kind(&()) && o.api_version == Invitation::api_version(&()))
        .ok_or_else(|| malformed("no Invitation owner"))?;
    let data = secret.data.as_ref().ok_or_else(|| malformed("no data"))?;
    let text = |key: &str| {
        data.get(key)
            .and_then(|value| std::str::from_utf8(&value.0).ok())
            .map(str::to_string)
    };
    let verifier = data
        .get(KEY_VERIFIER)
        .map(|v| v.0.clone())
        .filter(|v| v.len() == 32)
        .ok_or_else(|| malformed("no verifier"))?;
    let resend = text(KEY_RESEND)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| malformed("no resend"))?;
    let auto_resends = text(KEY_AUTO_RESENDS)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| malformed("no autoResends"))?;
    let expires_at = text(KEY_EXPIRES_AT)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| malformed("no expiresAt"))?;
    Ok(StoredToken {
        namespace: secret.namespace().unwrap_or_default(),
        secret: name.clone(),
        secret_uid: secret.uid(),
        invitation: owner.name.clone(),
        invitation_uid: owner.uid.clone(),
        generation: LinkGeneration {
            resend,
            auto_resends,
        },
        expires_at,
        verifier,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invitations::fixtures;

    fn invitation() -> Invitation {
        let mut invitation = fixtures::invitation("dave", "dave@example.com", vec![]);
        invitation.metadata.uid = Some("uid-1".into());
        invitation
    }

    #[test]
    fn tokens_are_random_well_formed_and_not_stored() {
        let a = Token::mint().unwrap();
        let b = Token::mint().unwrap();
        assert_ne!(a.expose(), b.expose());
        assert!(well_formed(a.expose()));
        assert!(!well_formed("abc"));
        assert!(!well_formed(&"G".repeat(TOKEN_LENGTH)));
        assert_eq!(format!("{a:?}"), "Token(…)");

        let generation = LinkGeneration {
            resend: 2,
            auto_resends: 1,
        };
        let expires = Timestamp::from_second(1_700_000_000).unwrap();
        let secret = secret_for(&invitation(), &a, generation, expires);
        let serialized = serde_json::to_string(&secret).unwrap();
        assert!(
            !serialized.contains(a.expose()),
            "the token itself is stored"
        );
        assert_eq!(
            secret.labels().get(LABEL_TOKEN_ID),
            Some(&lookup_id(a.expose()))
        );
        assert_eq!(
            secret.metadata.name.as_deref(),
            Some("dave-invitation-token")
        );

        let stored = read_secret(&secret).unwrap();
        assert!(stored.matches(a.expose()));
        assert!(!stored.matches(b.expose()));
        assert_eq!(stored.generation, generation);
        assert_eq!(stored.expires_at, expires);
        assert_eq!(
            (stored.invitation.as_str(), stored.invitation_uid.as_str()),
            ("dave", "uid-1")
        );
    }

    #[test]
    fn lookup_id_and_verifier_are_independent() {
        let token = "0".repeat(TOKEN_LENGTH);
        assert_eq!(lookup_id(&token).len(), 40);
        assert!(!hex(&verifier(&token)).starts_with(&lookup_id(&token)));
    }

    #[test]
    fn secret_names_stay_valid_for_long_invitation_names() {
        let long = "x".repeat(250);
        let name = secret_name(&long);
        assert!(name.len() <= 253);
        assert_ne!(name, secret_name(&"y".repeat(250)));
    }

    #[test]
    fn malformed_secrets_are_errors_not_panics() {
        let mut secret = secret_for(
            &invitation(),
            &Token::mint().unwrap(),
            LinkGeneration {
                resend: 0,
                auto_resends: 0,
            },
            Timestamp::UNIX_EPOCH,
        );
        secret.data.as_mut().unwrap().remove(KEY_VERIFIER);
        assert!(matches!(
            read_secret(&secret),
            Err(TokenError::Malformed(_, "no verifier"))
        ));
        secret.metadata.owner_references = None;
        assert!(read_secret(&secret).is_err());
    }
}
