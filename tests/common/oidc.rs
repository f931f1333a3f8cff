//! Signing in at the test environment's OpenID Connect provider the way a person does,
//! over HTTP: the authorization request (authorization code with PKCE, state and
//! nonce), the provider's real login form, the redirects, the token endpoint.
//!
//! The launcher starts the provider (`tests/controlplane/oidc`, on zitadel/oidc) and
//! exports `KUBE_ORG_TEST_OIDC_*`; its users and the apiserver's claim mapping are
//! described in `tests/controlplane/launcher/oidc.go`. Nothing here needs a server of
//! its own: the redirect to the client's redirect URI is read from the `Location`
//! header and never followed.
//!
//! ```ignore
//! let provider = Provider::from_env();
//! let token = provider.id_token("alice@example.com").await; // alice's ID token
//! let (username, groups, uid) = whoami(&client_with(&token).await).await?;
//! let output = kubectl_with(&token, &["auth", "can-i", "get", "pods"]).await;
//! ```
//!
//! `client_with` and `kubectl_with` carry only the token: the launcher's kubeconfig
//! also holds an admin client certificate, which the apiserver would authenticate
//! before looking at any token (`kubectl --token` with that kubeconfig is the admin).

use std::sync::{Arc, OnceLock};

use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use kube::api::PostParams;
use kube::{Api, Client};
use serde_json::json;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls;
use url::Url;

/// The redirect URI the tests' sign-ins use with either client. The provider accepts
/// any port and path on `http://127.0.0.1`; nothing listens there.
pub const REDIRECT_URI: &str = "http://127.0.0.1:8000/callback";

/// The scopes asking for every claim the apiserver maps (email, email_verified, groups).
pub const SCOPES: &str = "openid email profile groups";

/// One test identity (`KUBE_ORG_TEST_OIDC_USERS`).
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub subject: String,
    pub email: String,
    pub email_verified: bool,
    pub password: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub groups: Vec<String>,
}

/// The provider the launcher started.
#[derive(Clone, Debug)]
pub struct Provider {
    pub issuer: String,
    /// PEM file of the CA that signed the provider's certificate.
    pub ca: String,
    /// The confidential client (authorization code, secret, PKCE).
    pub client_id: String,
    pub client_secret: String,
    /// The public client (PKCE, no secret), as kubelogin uses it.
    pub public_client_id: String,
    /// What the apiserver puts before the email and each group.
    pub username_prefix: String,
    pub groups_prefix: String,
    pub users: Vec<User>,
}

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: run the tests with `make test` (or tests/controlplane/launcher), \
             which starts the OpenID Connect provider"
        )
    })
}

/// A client of the provider: the confidential one (with its secret) or the public one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientKind {
    Confidential,
    Public,
}

/// The endpoints of the discovery document.
#[derive(Clone, Debug, serde::Deserialize)]
pub struct Discovery {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
}

/// An authorization request in flight: what the client keeps to check the answer.
#[derive(Clone, Debug)]
pub struct Authorization {
    /// Where the person's browser is sent first.
    pub url: String,
    pub state: String,
    pub nonce: String,
    pub code_verifier: String,
    pub redirect_uri: String,
    pub client: ClientKind,
}

/// The token endpoint's answer.
#[derive(Clone, Debug, serde::Deserialize)]
pub struct Tokens {
    pub id_token: String,
    pub access_token: String,
    #[serde(default)]
    pub refresh_token: Option<String>,
    #[serde(default)]
    pub expires_in: Option<u64>,
}

/// Why a sign-in produced no authorization code.
#[derive(Clone, Debug)]
pub enum SignInError {
    /// The login form came back (wrong email or password): its status and the text
    /// of the error it shows.
    Refused { status: u16, message: String },
    /// The provider redirected to the client with `error=` (an invalid request).
    Denied { error: String, description: String },
    /// Anything else: a page or status the flow did not expect.
    Unexpected {
        status: u16,
        url: String,
        body: String,
    },
}

impl std::fmt::Display for SignInError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SignInError::Refused { status, message } => {
                write!(
                    f,
                    "the login form refused the sign-in ({status}): {message}"
                )
            }
            SignInError::Denied { error, description } => {
                write!(f, "the provider denied the request: {error}: {description}")
            }
            SignInError::Unexpected { status, url, body } => {
                write!(f, "unexpected answer {status} from {url}: {body}")
            }
        }
    }
}

impl Provider {
    /// The provider the launcher exported; panics with a clear message without one.
    pub fn from_env() -> Provider {
        let users_file = var("KUBE_ORG_TEST_OIDC_USERS");
        let users = std::fs::read_to_string(&users_file)
            .unwrap_or_else(|e| panic!("reading {users_file}: {e}"));
        Provider {
            issuer: var("KUBE_ORG_TEST_OIDC_ISSUER"),
            ca: var("KUBE_ORG_TEST_OIDC_CA"),
            client_id: var("KUBE_ORG_TEST_OIDC_CLIENT_ID"),
            client_secret: var("KUBE_ORG_TEST_OIDC_CLIENT_SECRET"),
            public_client_id: var("KUBE_ORG_TEST_OIDC_PUBLIC_CLIENT_ID"),
            username_prefix: var("KUBE_ORG_TEST_OIDC_USERNAME_PREFIX"),
            groups_prefix: var("KUBE_ORG_TEST_OIDC_GROUPS_PREFIX"),
            users: serde_json::from_str(&users)
                .unwrap_or_else(|e| panic!("parsing {users_file}: {e}")),
        }
    }

    /// The test user with this email (any case).
    pub fn user(&self, email: &str) -> &User {
        self.users
            .iter()
            .find(|u| u.email.eq_ignore_ascii_case(email))
            .unwrap_or_else(|| panic!("no test user {email} (see KUBE_ORG_TEST_OIDC_USERS)"))
    }

    /// The username the apiserver gives this user.
    pub fn username(&self, user: &User) -> String {
        format!("{}{}", self.username_prefix, user.email)
    }

    /// The provider's discovery document.
    pub async fn discovery(&self) -> Discovery {
        let url = format!("{}/.well-known/openid-configuration", self.issuer);
        let answer = self.get(&url).await;
        assert_eq!(answer.status, 200, "GET {url}: {}", answer.body);
        serde_json::from_str(&answer.body).unwrap_or_else(|e| panic!("{url}: {e}"))
    }

    /// A fresh authorization request (code flow, PKCE S256, random state and nonce).
    pub async fn authorization(
        &self,
        client: ClientKind,
        redirect_uri: &str,
        scopes: &str,
    ) -> Authorization {
        let discovery = self.discovery().await;
        let (state, nonce, code_verifier) = (random(), random(), random());
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(code_verifier.as_bytes()));
        let mut url = Url::parse(&discovery.authorization_endpoint).expect("an endpoint URL");
        url.query_pairs_mut()
            .append_pair("client_id", self.client_id_of(client))
            .append_pair("response_type", "code")
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("scope", scopes)
            .append_pair("state", &state)
            .append_pair("nonce", &nonce)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        Authorization {
            url: url.into(),
            state,
            nonce,
            code_verifier,
            redirect_uri: redirect_uri.to_string(),
            client,
        }
    }

    fn client_id_of(&self, client: ClientKind) -> &str {
        match client {
            ClientKind::Confidential => &self.client_id,
            ClientKind::Public => &self.public_client_id,
        }
    }

    /// Drives a browser's part of a sign-in: opens `start` (an authorization URL, the
    /// provider's or one a relying party redirected to), fills the login form with
    /// `email` and `password`, posts it and follows the provider's redirects until one
    /// leaves the provider for `redirect_prefix`. Returns that redirect, unfollowed.
    pub async fn sign_in_at(
        &self,
        start: &str,
        email: &str,
        password: &str,
        redirect_prefix: &str,
    ) -> Result<Url, SignInError> {
        let page = match self.follow(start, redirect_prefix).await? {
            Step::Page(page) => page,
            Step::Left(url) => return Ok(url), // signed in already: never here
        };
        let form =
            LoginForm::parse(&page.body, &page.url).ok_or_else(|| SignInError::Unexpected {
                status: page.status,
                url: page.url.to_string(),
                body: page.body.clone(),
            })?;
        let mut body = url::form_urlencoded::Serializer::new(String::new());
        for (name, value) in &form.hidden {
            body.append_pair(name, value);
        }
        body.append_pair(&form.username_field, email)
            .append_pair(&form.password_field, password);
        let answer = self
            .request(
                "POST",
                form.action.as_str(),
                &[("Content-Type", "application/x-www-form-urlencoded")],
                body.finish().as_bytes(),
            )
            .await;
        match answer.location(&form.action) {
            Some(next) if next.as_str().starts_with(redirect_prefix) => Ok(next),
            Some(next) => match self.follow(next.as_str(), redirect_prefix).await? {
                Step::Left(url) => Ok(url),
                Step::Page(page) => Err(SignInError::Unexpected {
                    status: page.status,
                    url: page.url.to_string(),
                    body: page.body,
                }),
            },
            None if LoginForm::parse(&answer.body, &form.action).is_some() => {
                Err(SignInError::Refused {
                    status: answer.status,
                    message: form_error(&answer.body),
                })
            }
            None => Err(SignInError::Unexpected {
                status: answer.status,
                url: form.action.to_string(),
                body: answer.body,
            }),
        }
    }

    /// GETs `url` and follows redirects within the provider until a page answers
    /// (`Step::Page`) or a redirect leaves for `redirect_prefix` (`Step::Left`).
    async fn follow(&self, url: &str, redirect_prefix: &str) -> Result<Step, SignInError> {
        let mut url = Url::parse(url).expect("an absolute URL");
        for _ in 0..10 {
            if url.as_str().starts_with(redirect_prefix) {
                return Ok(Step::Left(url));
            }
            let answer = self.get(url.as_str()).await;
            match answer.location(&url) {
                Some(next) => url = next,
                None if answer.status == 200 || answer.status == 401 => {
                    return Ok(Step::Page(Page {
                        status: answer.status,
                        url,
                        body: answer.body,
                    }));
                }
                None => {
                    return Err(SignInError::Unexpected {
                        status: answer.status,
                        url: url.to_string(),
                        body: answer.body,
                    });
                }
            }
        }
        panic!("more than 10 redirects from {url}");
    }

    /// The code the provider sent back to `authorization`'s redirect URI, after
    /// checking the state.
    pub fn code(
        &self,
        authorization: &Authorization,
        callback: &Url,
    ) -> Result<String, SignInError> {
        let query: std::collections::HashMap<_, _> = callback.query_pairs().into_owned().collect();
        if let Some(error) = query.get("error") {
            return Err(SignInError::Denied {
                error: error.clone(),
                description: query.get("error_description").cloned().unwrap_or_default(),
            });
        }
        assert_eq!(
            query.get("state"),
            Some(&authorization.state),
            "the state came back unchanged in {callback}"
        );
        Ok(query
            .get("code")
            .unwrap_or_else(|| panic!("no code in {callback}"))
            .clone())
    }

    /// Exchanges a code at the token endpoint (with the client's secret, if it has
    /// one, and the PKCE verifier). `Err` is the endpoint's status and JSON error.
    pub async fn exchange(
        &self,
        authorization: &Authorization,
        code: &str,
        code_verifier: &str,
    ) -> Result<Tokens, (u16, String)> {
        let discovery = self.discovery().await;
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        form.append_pair("grant_type", "authorization_code")
            .append_pair("code", code)
            .append_pair("redirect_uri", &authorization.redirect_uri)
            .append_pair("code_verifier", code_verifier);
        let mut headers = vec![("Content-Type", "application/x-www-form-urlencoded")];
        let basic;
        match authorization.client {
            ClientKind::Confidential => {
                // client_secret_basic: id and secret form-encoded, then base64.
                let encode = |s: &str| -> String {
                    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
                };
                basic = format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(format!(
                        "{}:{}",
                        encode(&self.client_id),
                        encode(&self.client_secret)
                    ))
                );
                headers.push(("Authorization", &basic));
            }
            ClientKind::Public => {
                form.append_pair("client_id", &self.public_client_id);
            }
        }
        let answer = self
            .request(
                "POST",
                &discovery.token_endpoint,
                &headers,
                form.finish().as_bytes(),
            )
            .await;
        if answer.status != 200 {
            return Err((answer.status, answer.body));
        }
        let tokens: Tokens = serde_json::from_str(&answer.body)
            .unwrap_or_else(|e| panic!("token endpoint answer ({e}): {}", answer.body));
        let claims = claims(&tokens.id_token);
        assert_eq!(
            claims["nonce"], authorization.nonce,
            "the ID token carries the nonce"
        );
        assert_eq!(claims["iss"], self.issuer.as_str());
        Ok(tokens)
    }

    /// The whole sign-in of a test user with one client: the user's tokens, or why
    /// there are none.
    pub async fn sign_in(
        &self,
        client: ClientKind,
        email: &str,
        password: &str,
    ) -> Result<Tokens, SignInError> {
        let authorization = self.authorization(client, REDIRECT_URI, SCOPES).await;
        let callback = self
            .sign_in_at(&authorization.url, email, password, REDIRECT_URI)
            .await?;
        let code = self.code(&authorization, &callback)?;
        let tokens = self
            .exchange(&authorization, &code, &authorization.code_verifier)
            .await
            .unwrap_or_else(|(status, body)| panic!("token endpoint: {status} {body}"));
        Ok(tokens)
    }

    /// A test user's ID token (signed in with their password at the confidential client).
    pub async fn id_token(&self, email: &str) -> String {
        let user = self.user(email).clone();
        self.sign_in(ClientKind::Confidential, &user.email, &user.password)
            .await
            .unwrap_or_else(|e| panic!("signing in as {email}: {e}"))
            .id_token
    }

    async fn get(&self, url: &str) -> Answer {
        self.request("GET", url, &[], b"").await
    }

    /// One HTTPS request to the provider (HTTP/1.0: the answer ends when the
    /// connection closes), verified against the launcher's CA.
    pub async fn request(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Answer {
        let parsed = Url::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(parsed.scheme(), "https", "the provider serves HTTPS: {url}");
        let host = parsed.host_str().expect("a host").to_string();
        let port = parsed.port_or_known_default().expect("a port");
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .unwrap_or_else(|e| panic!("connecting to {host}:{port}: {e}"));
        let name = rustls::pki_types::ServerName::try_from(host.clone()).expect("a server name");
        let mut stream = tokio_rustls::TlsConnector::from(self.tls())
            .connect(name, tcp)
            .await
            .unwrap_or_else(|e| panic!("TLS with {host}:{port}: {e}"));
        let path = match parsed.query() {
            Some(query) => format!("{}?{query}", parsed.path()),
            None => parsed.path().to_string(),
        };
        let mut head = format!(
            "{method} {path} HTTP/1.0\r\nHost: {host}:{port}\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).await.expect("writing");
        stream.write_all(body).await.expect("writing the body");
        stream.flush().await.expect("flushing");
        let mut raw = Vec::new();
        if let Err(error) = stream.read_to_end(&mut raw).await {
            // A peer closing without close_notify still sent the whole answer.
            assert!(
                error.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty(),
                "reading the answer from {url}: {error}"
            );
        }
        Answer::parse(&raw)
    }

    fn tls(&self) -> Arc<rustls::ClientConfig> {
        static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
        CONFIG
            .get_or_init(|| {
                use rustls::pki_types::{CertificateDer, pem::PemObject};
                let mut roots = rustls::RootCertStore::empty();
                for cert in CertificateDer::pem_file_iter(&self.ca)
                    .unwrap_or_else(|e| panic!("reading {}: {e}", self.ca))
                {
                    roots
                        .add(cert.expect("a PEM certificate"))
                        .expect("a CA certificate");
                }
                // ring is the provider kube-org builds rustls with (Cargo.toml).
                let config = rustls::ClientConfig::builder_with_provider(Arc::new(
                    rustls::crypto::ring::default_provider(),
                ))
                .with_safe_default_protocol_versions()
                .expect("TLS versions")
                .with_root_certificates(roots)
                .with_no_client_auth();
                Arc::new(config)
            })
            .clone()
    }
}

// --- the person's own credentials: only the ID token, no client certificate, no
// impersonation

/// The cluster the kubeconfig's current context names (its server and CA).
pub fn current_cluster() -> kube::config::NamedCluster {
    let config = kube::config::Kubeconfig::read().expect("the cluster's kubeconfig");
    let context_name = config.current_context.clone().expect("a current context");
    let cluster_name = config
        .contexts
        .iter()
        .find(|c| c.name == context_name)
        .and_then(|c| c.context.as_ref())
        .map(|c| c.cluster.clone())
        .expect("the current context names a cluster");
    config
        .clusters
        .into_iter()
        .find(|c| c.name == cluster_name)
        .expect("the current context's cluster")
}

/// A kubeconfig for the cluster under test whose only credential is `token`: the
/// launcher's kubeconfig also holds an admin client certificate, which the apiserver
/// would authenticate before looking at any token.
pub fn token_kubeconfig(token: &str) -> std::path::PathBuf {
    let cluster = current_cluster();
    let cluster_name = cluster.name.clone();
    let yaml = serde_yaml::to_string(&json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [cluster],
        "users": [{"name": "oidc", "user": {"token": token}}],
        "contexts": [{"name": "oidc", "context": {"cluster": cluster_name, "user": "oidc"}}],
        "current-context": "oidc",
    }))
    .expect("a kubeconfig");
    let dir = std::env::var_os("KUBE_ORG_CONTROLPLANE_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let path = dir.join(format!("{}.kubeconfig", super::unique("oidc-token")));
    std::fs::write(&path, yaml).expect("writing the token kubeconfig");
    path
}

/// The person's own kubectl: `kubectl ARGS` with only their token.
pub async fn kubectl_with(token: &str, args: &[&str]) -> std::process::Output {
    let kubeconfig = token_kubeconfig(token);
    let output = tokio::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(args)
        .output()
        .await
        .expect("running kubectl");
    let _ = std::fs::remove_file(kubeconfig);
    output
}

/// A kube client whose only credential is `token`.
pub async fn client_with(token: &str) -> Client {
    let mut config = kube::Config::infer().await.expect("a client configuration");
    config.auth_info = kube::config::AuthInfo {
        token: Some(token.to_string().into()),
        ..Default::default()
    };
    Client::try_from(config).expect("a client")
}

/// Who the apiserver says the client is (a SelfSubjectReview): username, groups, uid.
pub async fn whoami(client: &Client) -> Result<(String, Vec<String>, String), kube::Error> {
    let review: SelfSubjectReview = serde_json::from_value(
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}),
    )
    .expect("a SelfSubjectReview");
    let answer = Api::<SelfSubjectReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await?;
    let user = answer
        .status
        .and_then(|s| s.user_info)
        .expect("a SelfSubjectReview answers with the user");
    Ok((
        user.username.unwrap_or_default(),
        user.groups.unwrap_or_default(),
        user.uid.unwrap_or_default(),
    ))
}

/// The claims of a JWT (its payload, decoded; the signature is the apiserver's job).
pub fn claims(jwt: &str) -> serde_json::Value {
    let payload = jwt.split('.').nth(1).expect("a JWT has three parts");
    let bytes = URL_SAFE_NO_PAD
        .decode(payload)
        .expect("a base64url JWT payload");
    serde_json::from_slice(&bytes).expect("a JSON JWT payload")
}

/// 256 random bits, base64url: a state, nonce or PKCE verifier (43 characters).
fn random() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("random bytes");
    URL_SAFE_NO_PAD.encode(bytes)
}

enum Step {
    Page(Page),
    Left(Url),
}

struct Page {
    status: u16,
    url: Url,
    body: String,
}

/// An HTTP answer.
#[derive(Clone, Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    /// Parses a raw HTTP/1.1 answer (status line, headers, body).
    pub fn parse(raw: &[u8]) -> Answer {
        let text = String::from_utf8_lossy(raw).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text.as_str(), ""));
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|line| line.split_whitespace().nth(1))
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("no status line in {head:?}"));
        let headers = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        Answer {
            status,
            headers,
            body: body.to_string(),
        }
    }

    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// Where a redirect (3xx) points, resolved against the URL asked.
    fn location(&self, base: &Url) -> Option<Url> {
        if !(300..400).contains(&self.status) {
            return None;
        }
        let location = self.header("Location")?;
        Some(
            base.join(location)
                .unwrap_or_else(|e| panic!("Location {location}: {e}")),
        )
    }
}

/// The login form of a page: where it posts, its hidden fields and the names of the
/// email and password fields, read from the HTML as a browser would.
struct LoginForm {
    action: Url,
    hidden: Vec<(String, String)>,
    username_field: String,
    password_field: String,
}

impl LoginForm {
    fn parse(html: &str, base: &Url) -> Option<LoginForm> {
        let form_start = html.find("<form")?;
        let form = &html[form_start..html[form_start..].find("</form>")? + form_start];
        let form_tag = &form[..form.find('>')?];
        let action = base
            .join(&attribute(form_tag, "action").unwrap_or_default())
            .ok()?;
        let (mut hidden, mut username_field, mut password_field) = (Vec::new(), None, None);
        for input in form.split("<input").skip(1) {
            let tag = &input[..input.find('>')?];
            let name = attribute(tag, "name")?;
            match attribute(tag, "type").as_deref().unwrap_or("text") {
                "hidden" => hidden.push((name, attribute(tag, "value").unwrap_or_default())),
                "password" => password_field = Some(name),
                "text" | "email" if username_field.is_none() => username_field = Some(name),
                _ => {}
            }
        }
        Some(LoginForm {
            action,
            hidden,
            username_field: username_field?,
            password_field: password_field?,
        })
    }
}

/// The value of `name="…"` in a tag, with HTML character references decoded.
fn attribute(tag: &str, name: &str) -> Option<String> {
    let start = tag.find(&format!(" {name}=\""))? + name.len() + 3;
    let end = start + tag[start..].find('"')?;
    Some(unescape_html(&tag[start..end]))
}

/// The text of the login page's error (`id="error"`), or the whole page.
fn form_error(html: &str) -> String {
    html.find("id=\"error\"")
        .and_then(|start| {
            let text = &html[start..];
            let open = text.find('>')? + 1;
            let close = text.find("</")?;
            Some(unescape_html(text[open..close].trim()))
        })
        .unwrap_or_else(|| html.to_string())
}

/// HTML character references decoded (those the provider's and kube-org's pages use).
pub fn unescape_html(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&#34;", "\"")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#43;", "+")
        .replace("&amp;", "&")
}
