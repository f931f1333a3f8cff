//! The invitation flags of `kube-org run` and what they parse into.

use lettre::transport::smtp::authentication::Credentials;
use percent_encoding::percent_decode_str;
use url::Url;

/// Flags for invitations (emails and the accept endpoint); each has an environment
/// variable equivalent. Flattened into `kube-org run`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct InvitationArgs {
    /// SMTP server for invitation emails: `smtp://host:port` (plain),
    /// `smtp+starttls://host:port` (STARTTLS, default port 587) or `smtps://host:port`
    /// (TLS, default port 465). Credentials may be given as `smtp://user:pass@host`;
    /// prefer --smtp-secret. Without it, invitations wait with Delivered=False.
    #[arg(long, env = "KUBE_ORG_SMTP_URL")]
    pub smtp_url: Option<String>,

    /// A Secret `namespace/name` with keys `username` and `password` for the SMTP server
    /// (read at start).
    #[arg(long, env = "KUBE_ORG_SMTP_SECRET")]
    pub smtp_secret: Option<String>,

    /// Sender address of invitation emails when the Organization sets no
    /// `spec.invitations.from`.
    #[arg(long, env = "KUBE_ORG_SMTP_FROM")]
    pub smtp_from: Option<String>,

    /// Base URL of the accept endpoint as invitees reach it (e.g.
    /// `https://org.example.com`) when the Organization sets no
    /// `spec.invitations.acceptURL`. Links are `<base>/invitations/accept?token=...`.
    #[arg(long, env = "KUBE_ORG_ACCEPT_BASE_URL")]
    pub accept_base_url: Option<String>,

    /// Requests per minute one client may make to the accept endpoint (a client is an
    /// IPv4 address or an IPv6 /64 network).
    #[arg(long, env = "KUBE_ORG_ACCEPT_RATE_LIMIT", default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..))]
    pub accept_rate_limit: u32,

    /// Requests per minute all clients together may make to the accept endpoint: caps
    /// the load many addresses can put on the API server.
    #[arg(long, env = "KUBE_ORG_ACCEPT_RATE_LIMIT_GLOBAL", default_value_t = 600, value_parser = clap::value_parser!(u32).range(1..))]
    pub accept_rate_limit_global: u32,

    /// Reverse proxies (ingress controllers, load balancers) in front of the accept
    /// endpoint, as comma-separated addresses or CIDR networks (e.g.
    /// `10.0.0.0/8,fd00::/8`). Only for a request whose TCP peer is one of them is the
    /// client taken from `X-Forwarded-For`: the right-most address that is not a
    /// trusted proxy. Default: none (the header is ignored).
    #[arg(
        long,
        env = "KUBE_ORG_TRUSTED_PROXIES",
        value_delimiter = ',',
        value_name = "CIDR"
    )]
    pub trusted_proxies: Vec<super::ratelimit::Cidr>,

    /// Replaced by --trusted-proxies (it believed X-Forwarded-For from anyone); setting
    /// it stops the process with a message saying what to set instead.
    #[arg(long, env = "KUBE_ORG_ACCEPT_TRUST_FORWARDED_FOR", hide = true)]
    pub accept_trust_forwarded_for: bool,

    /// Handle only Invitations matching this label selector (to shard invitations
    /// between operators; default: all).
    #[arg(long, env = "KUBE_ORG_INVITATIONS_SELECTOR")]
    pub invitations_selector: Option<String>,

    /// How many invitation emails may be with the SMTP server before their delivery is
    /// recorded. A crash sends those again, so this is the most duplicate emails one
    /// crash can cause; raising it sends faster.
    #[arg(long, env = "KUBE_ORG_EMAILS_IN_FLIGHT", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub emails_in_flight: u16,

    /// Signing invitees in at the cluster's OpenID Connect provider.
    #[command(flatten)]
    pub login: super::login::LoginArgs,

    /// The cluster as invitees reach it (for the kubeconfig the success page offers).
    #[command(flatten)]
    pub cluster: super::kubeconfig::ClusterArgs,
}

impl InvitationArgs {
    /// Checks every flag that has a format, before anything connects anywhere.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.accept_trust_forwarded_for {
            return Err(ConfigError::TrustForwardedFor);
        }
        if let Some(url) = &self.smtp_url {
            SmtpUrl::parse(url)?;
        }
        if let Some(reference) = &self.smtp_secret {
            secret_ref(reference)?;
        }
        if let Some(url) = &self.accept_base_url {
            accept_base_url(url)?;
        }
        self.login.validate(self.accept_base_url.as_deref())?;
        self.cluster.validate()?;
        Ok(())
    }
}

/// How the SMTP connection is secured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// No encryption (a local relay or a test server).
    Plain,
    /// Plain connection upgraded with STARTTLS; refused if the server cannot.
    StartTls,
    /// TLS from the first byte (SMTPS).
    Tls,
}

/// A parsed `--smtp-url`.
#[derive(Clone, PartialEq, Eq)]
pub struct SmtpUrl {
    pub security: SmtpSecurity,
    pub host: String,
    pub port: u16,
    pub credentials: Option<(String, String)>,
}

impl std::fmt::Debug for SmtpUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpUrl")
            .field("security", &self.security)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("credentials", &self.credentials.as_ref().map(|_| "…"))
            .finish()
    }
}

/// A flag that does not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("--smtp-url {0:?} is not a URL: {1}")]
    SmtpUrl(String, String),
    #[error("--smtp-url scheme {0:?} is not one of smtp://, smtp+starttls:// or smtps://")]
    SmtpScheme(String),
    #[error("--smtp-url needs a host")]
    SmtpHost,
    #[error("--smtp-secret {0:?} must be namespace/name")]
    SecretName(String),
    #[error("the SMTP Secret {0} has no key {1:?}")]
    SecretKey(String, &'static str),
    #[error("--accept-base-url {0:?} must be an http:// or https:// URL")]
    AcceptBaseUrl(String),
    #[error("--impersonate {0:?} must be namespace/name of a ServiceAccount")]
    ServiceAccount(String),
    #[error(
        "--listen and --metrics-listen are both {0}: the public accept endpoint and the operational endpoints need different addresses"
    )]
    SameListenAddress(String),
    #[error("{0}")]
    Oidc(String),
    #[error("{0}")]
    Cluster(String),
    #[error(
        "--accept-trust-forwarded-for is replaced by --trusted-proxies: list the addresses or CIDRs of the proxies in front of the accept endpoint (X-Forwarded-For is believed only from them)"
    )]
    TrustForwardedFor,
}

impl SmtpUrl {
    pub fn parse(text: &str) -> Result<SmtpUrl, ConfigError> {
        let url =
            Url::parse(text).map_err(|e| ConfigError::SmtpUrl(redact(text), e.to_string()))?;
        let (security, default_port) = match url.scheme() {
            "smtp" => (SmtpSecurity::Plain, 25),
            "smtp+starttls" => (SmtpSecurity::StartTls, 587),
            "smtps" => (SmtpSecurity::Tls, 465),
            other => return Err(ConfigError::SmtpScheme(other.to_string())),
        };
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or(ConfigError::SmtpHost)?
            .to_string();
        let credentials = (!url.username().is_empty()).then(|| {
            let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
            (
                decode(url.username()),
                decode(url.password().unwrap_or_default()),
            )
        });
        Ok(SmtpUrl {
            security,
            host,
            port: url.port().unwrap_or(default_port),
            credentials,
        })
    }

    /// The URL without credentials, for logs.
    pub fn display(&self) -> String {
        let scheme = match self.security {
            SmtpSecurity::Plain => "smtp",
            SmtpSecurity::StartTls => "smtp+starttls",
            SmtpSecurity::Tls => "smtps",
        };
        format!("{scheme}://{}:{}", self.host, self.port)
    }

    /// Credentials from the URL.
    pub fn url_credentials(&self) -> Option<Credentials> {
        self.credentials
            .as_ref()
            .map(|(user, password)| Credentials::new(user.clone(), password.clone()))
    }
}

fn redact(text: &str) -> String {
    match Url::parse(text) {
        Ok(mut url) => {
            let _ = url.set_password(None);
            url.to_string()
        }
        Err(_) => "(unparsable)".to_string(),
    }
}

/// Splits `namespace/name`.
pub fn secret_ref(text: &str) -> Result<(String, String), ConfigError> {
    namespace_and_name(text).ok_or_else(|| ConfigError::SecretName(text.to_string()))
}

/// Splits `namespace/name`; None unless both parts are there.
pub fn namespace_and_name(text: &str) -> Option<(String, String)> {
    match text.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            Some((ns.to_string(), name.to_string()))
        }
        _ => None,
    }
}

/// Checks `--accept-base-url`.
pub fn accept_base_url(text: &str) -> Result<String, ConfigError> {
    match Url::parse(text) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host_str().is_some() => {
            Ok(text.to_string())
        }
        _ => Err(ConfigError::AcceptBaseUrl(text.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_urls_select_the_security() {
        let plain = SmtpUrl::parse("smtp://127.0.0.1:1025").unwrap();
        assert_eq!(plain.security, SmtpSecurity::Plain);
        assert_eq!((plain.host.as_str(), plain.port), ("127.0.0.1", 1025));
        assert!(plain.credentials.is_none());

        let starttls = SmtpUrl::parse("smtp+starttls://mail.example.com").unwrap();
        assert_eq!(starttls.security, SmtpSecurity::StartTls);
        assert_eq!(starttls.port, 587);

        let tls = SmtpUrl::parse("smtps://bot:p%40ss+word@mail.example.com").unwrap();
        assert_eq!(tls.security, SmtpSecurity::Tls);
        assert_eq!(tls.port, 465);
        assert_eq!(
            tls.credentials,
            Some(("bot".to_string(), "p@ss+word".to_string()))
        );
        assert!(!format!("{tls:?}").contains("p@ss"));
        assert_eq!(tls.display(), "smtps://mail.example.com:465");
    }

    #[test]
    fn bad_flags_are_refused_with_the_reason() {
        assert_eq!(
            SmtpUrl::parse("http://mail"),
            Err(ConfigError::SmtpScheme("http".into()))
        );
        assert!(matches!(
            SmtpUrl::parse("not a url"),
            Err(ConfigError::SmtpUrl(..))
        ));
        let leaked = SmtpUrl::parse("smtp://user:secret@")
            .unwrap_err()
            .to_string();
        assert!(!leaked.contains("secret"), "{leaked}");
        assert_eq!(
            secret_ref("kube-org/smtp"),
            Ok(("kube-org".into(), "smtp".into()))
        );
        assert!(secret_ref("smtp").is_err());
        assert!(secret_ref("a/b/c").is_err());
        assert!(accept_base_url("https://org.example.com").is_ok());
        assert!(accept_base_url("org.example.com").is_err());
        let old_flag = InvitationArgs {
            accept_trust_forwarded_for: true,
            ..Default::default()
        };
        assert!(
            old_flag
                .validate()
                .unwrap_err()
                .to_string()
                .contains("--trusted-proxies")
        );
    }
}
