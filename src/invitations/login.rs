//! Signing the invitee in at the cluster's OpenID Connect provider before accepting
//! (`spec.invitations.requireLogin`): the authorization code flow with PKCE (S256),
//! state and nonce, as a confidential client, and the ID token's verification.
//!
//! Built on what kube-org already compiles (hyper and rustls through kube, ring as
//! rustls' crypto provider) rather than the `openidconnect` crate: without its reqwest
//! feature that crate still adds 89 crates here (a second RustCrypto generation
//! next to the first — digest, sha2, hmac, der, pkcs8, spki twice — rsa, p256, p384,
//! ed25519-dalek, chrono beside jiff, thiserror 1 beside 2, serde_with, rand 0.8) for
//! one flow. What this module does is small and checked by unit tests: the ID token
//! comes straight from the token endpoint over verified TLS, authenticated with the
//! client secret (OpenID Connect Core 3.1.3.7 lets TLS stand in for the signature
//! there); its signature is verified anyway with ring against the provider's JWKS
//! (RS256/384/512, PS256/384/512, ES256/384 only — never `none` or an HMAC), then `iss`,
//! `aud`, `azp`, `exp`, `iat` and `nonce`.
//!
//! No server-side state: what the callback must check (state, nonce, PKCE verifier and
//! the invitation token) travels in an HttpOnly, SameSite=Lax cookie scoped to
//! `/invitations`, so any replica can finish a sign-in another one started.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::sync::RwLock;
use url::Url;

/// The callback path, under the accept endpoint's base URL.
pub const CALLBACK_PATH: &str = "/invitations/callback";
/// The cookie that carries a sign-in in flight.
pub const COOKIE: &str = "kube_org_login";
/// How long a sign-in may take, from the confirm button to the callback.
pub const LOGIN_TTL: Duration = Duration::from_secs(600);
/// The scopes asked for: the email and whether the provider verified it.
pub const SCOPES: &str = "openid email profile";
/// Clock skew tolerated on `exp` and `iat`.
const LEEWAY_SECONDS: i64 = 60;
/// Largest answer read from the provider.
const ANSWER_LIMIT: usize = 1024 * 1024;
/// How long one request to the provider may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Flags for signing invitees in at the cluster's OpenID Connect provider
/// (`spec.invitations.requireLogin`); flattened into `kube-org run`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct LoginArgs {
    /// The cluster's OpenID Connect issuer (the one the apiserver trusts), e.g.
    /// `https://login.example.com`. Organizations with
    /// `spec.invitations.requireLogin: true` then have invitees sign in there.
    #[arg(long, env = "KUBE_ORG_OIDC_ISSUER_URL")]
    pub oidc_issuer_url: Option<String>,

    /// kube-org's client id at the provider (a confidential client allowed the
    /// authorization code flow with PKCE and the redirect URL below).
    #[arg(long, env = "KUBE_ORG_OIDC_CLIENT_ID")]
    pub oidc_client_id: Option<String>,

    /// A Secret `namespace/name` with key `client-secret`: the client's secret (read at
    /// start).
    #[arg(long, env = "KUBE_ORG_OIDC_SECRET")]
    pub oidc_secret: Option<String>,

    /// Where the provider sends the browser back; default
    /// `<--accept-base-url>/invitations/callback`. Register it with the client.
    #[arg(long, env = "KUBE_ORG_OIDC_REDIRECT_URL")]
    pub oidc_redirect_url: Option<String>,

    /// A PEM bundle of the CA(s) that sign the provider's certificate; default: the
    /// public web roots.
    #[arg(long, env = "KUBE_ORG_OIDC_CA_FILE")]
    pub oidc_ca_file: Option<std::path::PathBuf>,
}

impl LoginArgs {
    /// Checks the flags together: None when sign-in is not configured.
    pub fn validate(
        &self,
        accept_base_url: Option<&str>,
    ) -> Result<Option<(String, String, Url)>, super::ConfigError> {
        use super::ConfigError;
        let Some(issuer) = &self.oidc_issuer_url else {
            if self.oidc_client_id.is_some() || self.oidc_secret.is_some() {
                return Err(ConfigError::Oidc(
                    "--oidc-client-id and --oidc-secret need --oidc-issuer-url".into(),
                ));
            }
            return Ok(None);
        };
        match Url::parse(issuer) {
            Ok(url) if url.scheme() == "https" && url.host_str().is_some() => {}
            _ => {
                return Err(ConfigError::Oidc(format!(
                    "--oidc-issuer-url {issuer:?} must be an https:// URL"
                )));
            }
        }
        let client_id = self
            .oidc_client_id
            .clone()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| ConfigError::Oidc("--oidc-issuer-url needs --oidc-client-id".into()))?;
        match &self.oidc_secret {
            Some(reference) => {
                super::config::secret_ref(reference)?;
            }
            None => {
                return Err(ConfigError::Oidc(
                    "--oidc-issuer-url needs --oidc-secret (namespace/name of a Secret with key client-secret)".into(),
                ));
            }
        }
        let redirect = match (&self.oidc_redirect_url, accept_base_url) {
            (Some(url), _) => url.clone(),
            (None, Some(base)) => format!("{}{CALLBACK_PATH}", base.trim_end_matches('/')),
            (None, None) => {
                return Err(ConfigError::Oidc(
                    "--oidc-issuer-url needs --oidc-redirect-url (or --accept-base-url)".into(),
                ));
            }
        };
        let redirect = Url::parse(&redirect)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
            .ok_or_else(|| {
                ConfigError::Oidc(format!(
                    "--oidc-redirect-url {redirect:?} must be an http:// or https:// URL"
                ))
            })?;
        Ok(Some((issuer.clone(), client_id, redirect)))
    }
}

/// The provider and this client, from the flags (the secret from its Secret).
#[derive(Clone)]
pub struct LoginConfig {
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
    pub redirect_url: Url,
}

impl std::fmt::Debug for LoginConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginConfig")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("client_secret", &"…")
            .field("redirect_url", &self.redirect_url.as_str())
            .finish()
    }
}

/// Why a sign-in failed.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("the OpenID Connect provider could not be reached: {0}")]
    Http(String),
    #[error("the OpenID Connect provider answered {status} at {what}: {body}")]
    Status {
        what: &'static str,
        status: u16,
        body: String,
    },
    #[error("the OpenID Connect provider's {what} is not valid: {detail}")]
    Malformed { what: &'static str, detail: String },
    #[error("the sign-in could not be verified: {0}")]
    Invalid(&'static str),
    #[error("the provider refused the sign-in: {error} {description}")]
    Denied { error: String, description: String },
}

/// What is verified about the person who signed in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedIn {
    pub issuer: String,
    pub subject: String,
    /// As the provider gives it (the apiserver keeps its case in the user name).
    pub email: String,
    pub email_verified: bool,
}

/// A sign-in in flight: what the callback checks. Kept in the browser's cookie.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    pub state: String,
    pub nonce: String,
    pub verifier: String,
    /// The invitation token the person confirmed with.
    pub token: String,
    /// Unix seconds after which the sign-in is stale.
    pub expires: i64,
}

impl Pending {
    /// A fresh sign-in for `token`, with random state, nonce and PKCE verifier.
    pub fn new(token: &str, now: i64) -> Result<Pending, getrandom::Error> {
        Ok(Pending {
            state: random()?,
            nonce: random()?,
            verifier: random()?,
            token: token.to_string(),
            expires: now.saturating_add(LOGIN_TTL.as_secs() as i64),
        })
    }

    /// The cookie's value.
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    /// The cookie's value read back; None when it is not one of ours.
    pub fn decode(value: &str) -> Option<Pending> {
        let bytes = URL_SAFE_NO_PAD.decode(value.trim()).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// The `Set-Cookie` header that stores it (`Secure` when the callback is HTTPS).
    pub fn set_cookie(&self, secure: bool) -> String {
        format!(
            "{COOKIE}={}; Path=/invitations; Max-Age={}; HttpOnly; SameSite=Lax{}",
            self.encode(),
            LOGIN_TTL.as_secs(),
            if secure { "; Secure" } else { "" }
        )
    }

    /// The `Set-Cookie` header that removes it.
    pub fn clear_cookie(secure: bool) -> String {
        format!(
            "{COOKIE}=; Path=/invitations; Max-Age=0; HttpOnly; SameSite=Lax{}",
            if secure { "; Secure" } else { "" }
        )
    }

    /// This sign-in, from a request's `Cookie` headers.
    pub fn from_cookies<'a>(headers: impl Iterator<Item = &'a str>) -> Option<Pending> {
        headers
            .flat_map(|h| h.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == COOKIE)
            .and_then(|(_, value)| Pending::decode(value))
    }

    /// Whether `state` is this sign-in's (constant time) and it is not stale.
    pub fn answers(&self, state: &str, now: i64) -> bool {
        use subtle::ConstantTimeEq;
        let same: bool = self.state.as_bytes().ct_eq(state.as_bytes()).into();
        same && now <= self.expires
    }

    /// The PKCE challenge of the verifier (S256).
    pub fn challenge(&self) -> String {
        URL_SAFE_NO_PAD.encode(Sha256::digest(self.verifier.as_bytes()))
    }
}

/// 256 random bits, base64url.
fn random() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// The parts of the discovery document used here.
#[derive(Clone, Debug, Deserialize)]
pub struct Discovery {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    #[serde(default)]
    pub token_endpoint_auth_methods_supported: Option<Vec<String>>,
}

/// One key of a JWKS.
#[derive(Clone, Debug, Deserialize)]
pub struct Jwk {
    pub kty: String,
    #[serde(default)]
    pub kid: Option<String>,
    #[serde(default, rename = "use")]
    pub use_: Option<String>,
    #[serde(default)]
    pub n: Option<String>,
    #[serde(default)]
    pub e: Option<String>,
    #[serde(default)]
    pub crv: Option<String>,
    #[serde(default)]
    pub x: Option<String>,
    #[serde(default)]
    pub y: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Jwks {
    pub keys: Vec<Jwk>,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
}

/// `aud`: one string or a list.
#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn contains(&self, id: &str) -> bool {
        match self {
            Audience::One(a) => a == id,
            Audience::Many(list) => list.iter().any(|a| a == id),
        }
    }
    fn len(&self) -> usize {
        match self {
            Audience::One(_) => 1,
            Audience::Many(list) => list.len(),
        }
    }
}

#[derive(Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    aud: Audience,
    exp: i64,
    iat: i64,
    #[serde(default)]
    nonce: Option<String>,
    #[serde(default)]
    azp: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    email_verified: Option<bool>,
}

/// Verifies an ID token (signature with `jwks`, then the claims) and says who it names.
/// Pure: unit-tested with tokens signed here.
pub fn verify_id_token(
    jwt: &str,
    jwks: &Jwks,
    issuer: &str,
    client_id: &str,
    nonce: &str,
    now: i64,
) -> Result<SignedIn, LoginError> {
    let mut parts = jwt.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(LoginError::Invalid("the ID token is not a signed JWT"));
    };
    let decode = |part: &str| URL_SAFE_NO_PAD.decode(part.trim_end_matches('='));
    let header: Header = decode(header)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(LoginError::Invalid("the ID token's header is not readable"))?;
    let signature =
        decode(signature).map_err(|_| LoginError::Invalid("the ID token's signature"))?;
    let signed = &jwt[..jwt.len() - jwt.rsplit('.').next().unwrap_or_default().len() - 1];
    let candidates: Vec<&Jwk> = jwks
        .keys
        .iter()
        .filter(|k| k.use_.as_deref().is_none_or(|u| u == "sig"))
        .filter(|k| match (&header.kid, &k.kid) {
            (Some(wanted), Some(kid)) => wanted == kid,
            _ => true,
        })
        .collect();
    if !candidates
        .iter()
        .any(|key| verify_signature(&header.alg, key, signed.as_bytes(), &signature))
    {
        return Err(LoginError::Invalid(
            "the ID token's signature does not verify with the provider's keys",
        ));
    }
    let claims: Claims = decode(payload)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(LoginError::Invalid(
            "the ID token's claims are not readable",
        ))?;
    if claims.iss != issuer {
        return Err(LoginError::Invalid("the ID token is from another issuer"));
    }
    if !claims.aud.contains(client_id) {
        return Err(LoginError::Invalid("the ID token is for another client"));
    }
    if claims.aud.len() > 1 && claims.azp.as_deref() != Some(client_id) {
        return Err(LoginError::Invalid(
            "the ID token was issued to another party (azp)",
        ));
    }
    if claims.exp.saturating_add(LEEWAY_SECONDS) < now {
        return Err(LoginError::Invalid("the ID token has expired"));
    }
    if claims.iat > now.saturating_add(LEEWAY_SECONDS) {
        return Err(LoginError::Invalid("the ID token is issued in the future"));
    }
    let same_nonce = claims.nonce.as_deref().is_some_and(|n| {
        use subtle::ConstantTimeEq;
        n.as_bytes().ct_eq(nonce.as_bytes()).into()
    });
    if !same_nonce {
        return Err(LoginError::Invalid(
            "the ID token's nonce is not this sign-in's",
        ));
    }
    let email = claims
        .email
        .filter(|e| !e.is_empty())
        .ok_or(LoginError::Invalid(
            "the ID token has no email (the provider must grant the email scope)",
        ))?;
    Ok(SignedIn {
        issuer: claims.iss,
        subject: claims.sub,
        email,
        email_verified: claims.email_verified == Some(true),
    })
}

/// Verifies a JWS signature with one key, for the asymmetric algorithms only.
fn verify_signature(alg: &str, key: &Jwk, message: &[u8], signature: &[u8]) -> bool {
    use ring::signature as sig;
    let b64 = |v: &Option<String>| v.as_deref().and_then(|s| URL_SAFE_NO_PAD.decode(s).ok());
    match key.kty.as_str() {
        "RSA" => {
            let params: &sig::RsaParameters = match alg {
                "RS256" => &sig::RSA_PKCS1_2048_8192_SHA256,
                "RS384" => &sig::RSA_PKCS1_2048_8192_SHA384,
                "RS512" => &sig::RSA_PKCS1_2048_8192_SHA512,
                "PS256" => &sig::RSA_PSS_2048_8192_SHA256,
                "PS384" => &sig::RSA_PSS_2048_8192_SHA384,
                "PS512" => &sig::RSA_PSS_2048_8192_SHA512,
                _ => return false,
            };
            let (Some(n), Some(e)) = (b64(&key.n), b64(&key.e)) else {
                return false;
            };
            sig::RsaPublicKeyComponents { n, e }
                .verify(params, message, signature)
                .is_ok()
        }
        "EC" => {
            let (params, crv): (&sig::EcdsaVerificationAlgorithm, &str) = match alg {
                "ES256" => (&sig::ECDSA_P256_SHA256_FIXED, "P-256"),
                "ES384" => (&sig::ECDSA_P384_SHA384_FIXED, "P-384"),
                _ => return false,
            };
            let (Some(x), Some(y)) = (b64(&key.x), b64(&key.y)) else {
                return false;
            };
            if key.crv.as_deref() != Some(crv) {
                return false;
            }
            let mut point = vec![4u8];
            point.extend(x);
            point.extend(y);
            sig::UnparsedPublicKey::new(params, point)
                .verify(message, signature)
                .is_ok()
        }
        _ => false,
    }
}

/// The provider, as this process talks to it: HTTPS (verified against `--oidc-ca-file`,
/// else the public web roots), the discovery document and keys fetched when first
/// needed and kept (the keys fetched again when a token names one not known).
#[derive(Clone)]
pub struct Provider {
    pub config: LoginConfig,
    http: HyperClient<hyper_rustls::HttpsConnector<HttpConnector>, Full<bytes::Bytes>>,
    known: Arc<RwLock<Option<(Discovery, Jwks)>>>,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("config", &self.config)
            .finish()
    }
}

/// The trust roots for the provider: a PEM bundle, else the public web roots.
pub fn tls_config(ca_pem: Option<&[u8]>) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    match ca_pem {
        Some(pem) => {
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| format!("not a PEM certificate: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("not a CA certificate: {e}"))?;
            }
            if roots.is_empty() {
                return Err("no certificate in the bundle".to_string());
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(config)
}

impl Provider {
    pub fn new(config: LoginConfig, tls: rustls::ClientConfig) -> Provider {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        let http = HyperClient::builder(TokioExecutor::new()).build(https);
        Provider {
            config,
            http,
            known: Arc::new(RwLock::new(None)),
        }
    }

    async fn request(
        &self,
        what: &'static str,
        request: http::Request<Full<bytes::Bytes>>,
    ) -> Result<(u16, Vec<u8>), LoginError> {
        let call = async {
            let answer = self
                .http
                .request(request)
                .await
                .map_err(|e| LoginError::Http(format!("{what}: {e}")))?;
            let status = answer.status().as_u16();
            let body = Limited::new(answer.into_body(), ANSWER_LIMIT)
                .collect()
                .await
                .map_err(|e| LoginError::Http(format!("{what}: {e}")))?
                .to_bytes()
                .to_vec();
            Ok((status, body))
        };
        tokio::time::timeout(REQUEST_TIMEOUT, call)
            .await
            .map_err(|_| LoginError::Http(format!("{what}: no answer in {REQUEST_TIMEOUT:?}")))?
    }

    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        what: &'static str,
        url: &str,
    ) -> Result<T, LoginError> {
        let request = http::Request::get(url)
            .header(http::header::ACCEPT, "application/json")
            .body(Full::default())
            .map_err(|e| LoginError::Http(format!("{what}: {e}")))?;
        let (status, body) = self.request(what, request).await?;
        if status != 200 {
            return Err(LoginError::Status {
                what,
                status,
                body: String::from_utf8_lossy(&body).chars().take(300).collect(),
            });
        }
        serde_json::from_slice(&body).map_err(|e| LoginError::Malformed {
            what,
            detail: e.to_string(),
        })
    }

    /// The discovery document and keys, fetched once (or again with `refresh`).
    async fn known(&self, refresh: bool) -> Result<(Discovery, Jwks), LoginError> {
        let cached = self.known.read().unwrap_or_else(|p| p.into_inner()).clone();
        if !refresh && let Some(known) = cached {
            return Ok(known);
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.config.issuer.trim_end_matches('/')
        );
        let discovery: Discovery = self.get_json("discovery document", &url).await?;
        if discovery.issuer != self.config.issuer {
            return Err(LoginError::Malformed {
                what: "discovery document",
                detail: format!(
                    "it names issuer {} where --oidc-issuer-url is {}",
                    discovery.issuer, self.config.issuer
                ),
            });
        }
        let jwks: Jwks = self.get_json("key set", &discovery.jwks_uri).await?;
        let known = (discovery, jwks);
        *self.known.write().unwrap_or_else(|p| p.into_inner()) = Some(known.clone());
        Ok(known)
    }

    /// Where to send the person's browser to sign in for `pending`.
    pub async fn authorization_url(&self, pending: &Pending) -> Result<Url, LoginError> {
        let (discovery, _) = self.known(false).await?;
        let mut url =
            Url::parse(&discovery.authorization_endpoint).map_err(|e| LoginError::Malformed {
                what: "authorization endpoint",
                detail: e.to_string(),
            })?;
        url.query_pairs_mut()
            .append_pair("client_id", &self.config.client_id)
            .append_pair("response_type", "code")
            .append_pair("redirect_uri", self.config.redirect_url.as_str())
            .append_pair("scope", SCOPES)
            .append_pair("state", &pending.state)
            .append_pair("nonce", &pending.nonce)
            .append_pair("code_challenge", &pending.challenge())
            .append_pair("code_challenge_method", "S256")
            .append_pair("prompt", "login");
        Ok(url)
    }

    /// The token request for `code` (client_secret_basic unless the provider lists only
    /// client_secret_post).
    fn token_request(
        &self,
        discovery: &Discovery,
        pending: &Pending,
        code: &str,
    ) -> Result<http::Request<Full<bytes::Bytes>>, LoginError> {
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        form.append_pair("grant_type", "authorization_code")
            .append_pair("code", code)
            .append_pair("redirect_uri", self.config.redirect_url.as_str())
            .append_pair("code_verifier", &pending.verifier);
        let mut request = http::Request::post(&discovery.token_endpoint)
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(http::header::ACCEPT, "application/json");
        let basic = discovery
            .token_endpoint_auth_methods_supported
            .as_ref()
            .is_none_or(|m| m.iter().any(|m| m == "client_secret_basic"));
        if basic {
            let encode = |s: &str| -> String {
                url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
            };
            let credentials = STANDARD.encode(format!(
                "{}:{}",
                encode(&self.config.client_id),
                encode(&self.config.client_secret)
            ));
            request = request.header(http::header::AUTHORIZATION, format!("Basic {credentials}"));
        } else {
            form.append_pair("client_id", &self.config.client_id)
                .append_pair("client_secret", &self.config.client_secret);
        }
        request
            .body(Full::new(bytes::Bytes::from(form.finish())))
            .map_err(|e| LoginError::Http(format!("token endpoint: {e}")))
    }

    /// Exchanges the callback's code and verifies the ID token it brings.
    pub async fn finish(
        &self,
        pending: &Pending,
        code: &str,
        now: i64,
    ) -> Result<SignedIn, LoginError> {
        let (discovery, jwks) = self.known(false).await?;
        let request = self.token_request(&discovery, pending, code)?;
        let (status, body) = self.request("token endpoint", request).await?;
        if status != 200 {
            let error: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            return Err(LoginError::Denied {
                error: error["error"].as_str().unwrap_or("token_error").to_string(),
                description: error["error_description"]
                    .as_str()
                    .unwrap_or(&format!("(HTTP {status})"))
                    .to_string(),
            });
        }
        #[derive(Deserialize)]
        struct Tokens {
            id_token: Option<String>,
        }
        let tokens: Tokens = serde_json::from_slice(&body).map_err(|e| LoginError::Malformed {
            what: "token answer",
            detail: e.to_string(),
        })?;
        let id_token = tokens.id_token.ok_or(LoginError::Invalid(
            "the provider sent no ID token (is the openid scope allowed?)",
        ))?;
        let verify = |jwks: &Jwks| {
            verify_id_token(
                &id_token,
                jwks,
                &self.config.issuer,
                &self.config.client_id,
                &pending.nonce,
                now,
            )
        };
        match verify(&jwks) {
            // The provider may have rotated its keys since they were fetched.
            Err(LoginError::Invalid(reason)) if reason.contains("signature") => {
                let (_, jwks) = self.known(true).await?;
                verify(&jwks)
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};

    const ISSUER: &str = "https://idp.example.com";

    struct Signer {
        key: EcdsaKeyPair,
        rng: SystemRandom,
    }

    impl Signer {
        fn new() -> Signer {
            let rng = SystemRandom::new();
            let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                .expect("a key");
            let key =
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
                    .expect("a key pair");
            Signer { key, rng }
        }

        fn jwks(&self, kid: &str) -> Jwks {
            let point = self.key.public_key().as_ref();
            Jwks {
                keys: vec![Jwk {
                    kty: "EC".into(),
                    kid: Some(kid.into()),
                    use_: Some("sig".into()),
                    n: None,
                    e: None,
                    crv: Some("P-256".into()),
                    x: Some(URL_SAFE_NO_PAD.encode(&point[1..33])),
                    y: Some(URL_SAFE_NO_PAD.encode(&point[33..65])),
                }],
            }
        }

        fn sign(&self, alg: &str, claims: serde_json::Value) -> String {
            let header =
                URL_SAFE_NO_PAD.encode(serde_json::json!({"alg": alg, "kid": "k1"}).to_string());
            let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
            let message = format!("{header}.{payload}");
            let signature = self.key.sign(&self.rng, message.as_bytes()).expect("signs");
            format!("{message}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
        }
    }

    fn claims() -> serde_json::Value {
        serde_json::json!({
            "iss": ISSUER, "sub": "u-1", "aud": "kube-org", "exp": 2_000, "iat": 1_000,
            "nonce": "n0nce", "email": "Dora@Example.com", "email_verified": true,
        })
    }

    fn verify(signer: &Signer, jwt: &str) -> Result<SignedIn, LoginError> {
        verify_id_token(jwt, &signer.jwks("k1"), ISSUER, "kube-org", "n0nce", 1_500)
    }

    #[test]
    fn a_good_token_names_the_person_as_the_provider_spells_the_email() {
        let signer = Signer::new();
        let signed_in = verify(&signer, &signer.sign("ES256", claims())).expect("verifies");
        assert_eq!(
            signed_in,
            SignedIn {
                issuer: ISSUER.into(),
                subject: "u-1".into(),
                email: "Dora@Example.com".into(),
                email_verified: true,
            }
        );
        let mut unverified = claims();
        unverified["email_verified"] = serde_json::json!(false);
        assert!(
            !verify(&signer, &signer.sign("ES256", unverified))
                .unwrap()
                .email_verified
        );
        let mut as_string = claims();
        as_string["email_verified"] = serde_json::json!("true");
        assert!(
            verify(&signer, &signer.sign("ES256", as_string)).is_err(),
            "a string is not a boolean"
        );
    }

    #[test]
    fn every_claim_that_binds_the_token_to_this_sign_in_is_checked() {
        let signer = Signer::new();
        for (field, value) in [
            ("iss", serde_json::json!("https://evil.example.com")),
            ("aud", serde_json::json!("another-client")),
            ("aud", serde_json::json!(["kube-org", "other"])),
            ("exp", serde_json::json!(1_000)),
            ("iat", serde_json::json!(3_000)),
            ("nonce", serde_json::json!("replayed")),
            ("email", serde_json::json!("")),
        ] {
            let mut c = claims();
            c[field] = value.clone();
            assert!(
                verify(&signer, &signer.sign("ES256", c)).is_err(),
                "{field} = {value}"
            );
        }
        let mut far = claims();
        far["exp"] = serde_json::json!(i64::MAX);
        far["iat"] = serde_json::json!(i64::MIN);
        assert!(
            verify(&signer, &signer.sign("ES256", far)).is_ok(),
            "no overflow"
        );
        let mut c = claims();
        c.as_object_mut().unwrap().remove("nonce");
        assert!(
            verify(&signer, &signer.sign("ES256", c)).is_err(),
            "no nonce"
        );
        let mut azp = claims();
        azp["aud"] = serde_json::json!(["kube-org", "other"]);
        azp["azp"] = serde_json::json!("kube-org");
        assert!(verify(&signer, &signer.sign("ES256", azp)).is_ok());
    }

    #[test]
    fn forged_unsigned_and_symmetric_tokens_are_refused() {
        let signer = Signer::new();
        let other = Signer::new();
        let good = signer.sign("ES256", claims());
        assert!(
            verify(&other, &good).is_err(),
            "another provider's key does not verify"
        );
        let mut tampered = claims();
        tampered["email"] = serde_json::json!("mallory@example.com");
        let (head, _) = good.split_once('.').unwrap();
        let (_, sig) = good.rsplit_once('.').unwrap();
        let forged = format!(
            "{head}.{}.{sig}",
            URL_SAFE_NO_PAD.encode(tampered.to_string())
        );
        assert!(verify(&signer, &forged).is_err(), "changed claims");
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
            URL_SAFE_NO_PAD.encode(claims().to_string())
        );
        assert!(verify(&signer, &none).is_err(), "alg none");
        assert!(
            verify(&signer, &signer.sign("HS256", claims())).is_err(),
            "HMAC"
        );
        for junk in ["", "a.b", "a.b.c.d", "!!.??.**"] {
            assert!(verify(&signer, junk).is_err(), "{junk:?}");
        }
    }

    #[test]
    fn login_flags_go_together() {
        let none = LoginArgs::default();
        assert_eq!(none.validate(None).unwrap(), None);
        let full = LoginArgs {
            oidc_issuer_url: Some("https://idp.example.com".into()),
            oidc_client_id: Some("kube-org".into()),
            oidc_secret: Some("kube-org-system/kube-org-oidc".into()),
            ..Default::default()
        };
        let (_, _, redirect) = full
            .validate(Some("https://org.example.com/"))
            .unwrap()
            .unwrap();
        assert_eq!(
            redirect.as_str(),
            "https://org.example.com/invitations/callback"
        );
        assert!(full.validate(None).is_err(), "no redirect URL");
        for broken in [
            LoginArgs {
                oidc_issuer_url: Some("http://idp.example.com".into()),
                ..full.clone()
            },
            LoginArgs {
                oidc_client_id: None,
                ..full.clone()
            },
            LoginArgs {
                oidc_secret: Some("no-namespace".into()),
                ..full.clone()
            },
            LoginArgs {
                oidc_issuer_url: None,
                ..full.clone()
            },
        ] {
            assert!(
                broken.validate(Some("https://org.example.com")).is_err(),
                "{broken:?}"
            );
        }
    }

    #[test]
    fn the_cookie_round_trips_and_the_state_and_age_are_checked() {
        let pending = Pending::new("t0ken", 1_000).unwrap();
        assert_ne!(pending.state, pending.nonce);
        let header = pending.set_cookie(true);
        assert!(header.contains("HttpOnly") && header.contains("Secure"));
        let value = header.split(';').next().unwrap();
        let read =
            Pending::from_cookies(["other=1; ".to_string() + value].iter().map(|s| s.as_str()))
                .expect("read back");
        assert_eq!(read, pending);
        assert!(read.answers(&pending.state, 1_000));
        assert!(!read.answers("another-state", 1_000));
        assert!(!read.answers(&pending.state, 1_000 + LOGIN_TTL.as_secs() as i64 + 1));
        assert!(Pending::decode("not base64 json").is_none());
        // S256 of the RFC 7636 example verifier.
        let mut rfc = pending.clone();
        rfc.verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk".into();
        assert_eq!(
            rfc.challenge(),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }
}
