//! Invitations: the email with a one-time link, its expiry on the second, and the
//! accept endpoint that turns a click into a Membership and RoleBindings.
//!
//! - [`lifecycle`]: the state machine, a pure function (unit-tested without a cluster);
//! - [`token`]: minting, hashing and verifying tokens (their hashes live in the
//!   Invitation's status);
//! - [`email`]: the message and the pooled SMTP transport;
//! - [`controller`]: the reconcile loop around the state machine;
//! - [`accept`] and [`join`]: accepting exactly once, and what acceptance creates;
//! - [`http`] and [`ratelimit`]: the accept endpoint as an axum Router, answering from
//!   the watch-fed caches in [`index`];
//! - [`config`]: the flags; [`metrics`]: the Prometheus metrics.

pub mod accept;
pub mod config;
pub mod controller;
pub mod email;
pub mod http;
pub mod index;
pub mod join;
pub mod kubeconfig;
pub mod lifecycle;
pub mod login;
pub mod metrics;
pub mod ratelimit;
pub mod token;
pub mod welcome;

#[cfg(test)]
mod fixtures;

use std::sync::Arc;

use axum::Router;
use k8s_openapi::api::core::v1::Secret;
use kube::api::PostParams;
use kube::{Api, Client, ResourceExt};
use lettre::transport::smtp::authentication::Credentials;
use prometheus_client::registry::Registry;

use config::SmtpUrl;
pub use config::{ConfigError, InvitationArgs};
use controller::InvitationController;
use email::{EmailError, Mailer};
use lifecycle::Defaults;
use metrics::Metrics;

use crate::api::{Invitation, InvitationStatus};

/// Replaces an Invitation's status, on the condition that the object is unchanged since
/// it was read (its resourceVersion): a concurrent writer makes this fail with 409.
pub(crate) async fn write_status(
    api: &Api<Invitation>,
    writes: &crate::metrics::Metrics,
    invitation: &Invitation,
    status: InvitationStatus,
) -> Result<Invitation, kube::Error> {
    writes.write("invitations/status", "replace");
    let mut object = invitation.clone();
    object.status = Some(status);
    api.replace_status(&invitation.name_any(), &PostParams::default(), &object)
        .await
}

/// Why invitations could not be set up at start.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(
        "reading the SMTP Secret {0} (the operator may get only the Secret its Role kube-org-smtp-secret names, see manifests/rbac.yaml): {1}"
    )]
    Secret(String, kube::Error),
    #[error(transparent)]
    Email(#[from] EmailError),
}

/// Invitations in the operator process: the controller and the accept endpoint.
pub struct Invitations {
    controller: InvitationController,
    defaults: Defaults,
    mailer: Option<Mailer>,
    metrics: Arc<Metrics>,
    events: crate::events::Events,
    router: Router,
}

impl Invitations {
    /// Reads the flags (and the SMTP Secret), registers the metrics into `registry`,
    /// and starts the accept endpoint's watches. Exclusive-membership claims are kept in
    /// `claims_namespace` (the operator's namespace).
    pub async fn new(
        client: Client,
        watches: &crate::watch_set::WatchSet,
        args: &InvitationArgs,
        claims_namespace: &str,
        registry: &mut Registry,
        writes: crate::metrics::Metrics,
        identity: &crate::access::identity::IdentityDefaults,
    ) -> Result<Invitations, SetupError> {
        let smtp = args.smtp_url.as_deref().map(SmtpUrl::parse).transpose()?;
        let credentials = match &args.smtp_secret {
            Some(reference) => Some(smtp_credentials(&client, reference).await?),
            None => None,
        };
        let mailer = smtp
            .as_ref()
            .map(|url| Mailer::new(url, credentials))
            .transpose()?;
        if let Some(url) = &smtp {
            tracing::info!(server = %url.display(), "invitation emails go through this SMTP server");
        }
        let defaults = Defaults {
            from: args.smtp_from.clone(),
            accept_base_url: args
                .accept_base_url
                .as_deref()
                .map(config::accept_base_url)
                .transpose()?,
            smtp_configured: mailer.is_some(),
        };
        let controller = InvitationController::new(client.clone(), watches, args.emails_in_flight);
        let metrics = Metrics::register(registry, Some(controller.invitations()));
        let events = crate::events::Events::new(client.clone(), writes.clone());
        let login = login_provider(&client, args).await?;
        let cluster = kubeconfig::ClusterAccess::from_flags(
            &args.cluster,
            args.login.oidc_issuer_url.as_deref(),
            args.login.oidc_client_id.as_deref(),
        )?;
        let acceptor = accept::Acceptor {
            cache: index::AcceptCache::start(watches),
            client,
            claims_namespace: claims_namespace.to_string(),
            identity: identity.clone(),
        };
        let router = http::router(http::AcceptState {
            acceptor,
            writes,
            metrics: metrics.clone(),
            limiter: Arc::new(ratelimit::RateLimiter::new(
                args.accept_rate_limit,
                args.accept_rate_limit_global,
            )),
            trusted_proxies: Arc::new(args.trusted_proxies.clone()),
            events: events.clone(),
            login: login.map(Arc::new),
            cluster: cluster.map(Arc::new),
        });
        Ok(Invitations {
            controller,
            defaults,
            mailer,
            metrics,
            events,
            router,
        })
    }

    /// The accept endpoint, to merge into the HTTP server.
    pub fn router(&self) -> Router {
        self.router.clone()
    }

    /// Runs the controller until `shutdown` resolves.
    pub async fn run(
        self,
        concurrency: u16,
        shared: crate::metrics::Metrics,
        stop: tokio::sync::watch::Receiver<bool>,
    ) {
        self.controller
            .run(
                concurrency,
                self.defaults,
                self.mailer,
                self.metrics,
                self.events,
                shared,
                stop,
            )
            .await
    }
}

/// The cluster's OpenID Connect provider from the flags (its client secret read from
/// the Secret now), or None when sign-in is not configured.
async fn login_provider(
    client: &Client,
    args: &InvitationArgs,
) -> Result<Option<login::Provider>, SetupError> {
    let Some((issuer, client_id, redirect_url)) =
        args.login.validate(args.accept_base_url.as_deref())?
    else {
        return Ok(None);
    };
    let reference = args.login.oidc_secret.clone().unwrap_or_default();
    let (namespace, name) = config::secret_ref(&reference)?;
    let secret = Api::<Secret>::namespaced(client.clone(), &namespace)
        .get(&name)
        .await
        .map_err(|e| SetupError::Secret(reference.clone(), e))?;
    let client_secret = secret
        .data
        .as_ref()
        .and_then(|d| d.get("client-secret"))
        .and_then(|v| String::from_utf8(v.0.clone()).ok())
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ConfigError::SecretKey(reference.clone(), "client-secret"))?;
    let ca = match &args.login.oidc_ca_file {
        Some(path) => Some(std::fs::read(path).map_err(|e| {
            ConfigError::Oidc(format!("reading --oidc-ca-file {}: {e}", path.display()))
        })?),
        None => None,
    };
    let tls = login::tls_config(ca.as_deref())
        .map_err(|e| ConfigError::Oidc(format!("--oidc-ca-file: {e}")))?;
    tracing::info!(%issuer, %client_id, redirect = %redirect_url, "invitees of organizations with requireLogin sign in at this OpenID Connect provider");
    Ok(Some(login::Provider::new(
        login::LoginConfig {
            issuer,
            client_id,
            client_secret,
            redirect_url,
        },
        tls,
    )))
}

async fn smtp_credentials(client: &Client, reference: &str) -> Result<Credentials, SetupError> {
    let (namespace, name) = config::secret_ref(reference)?;
    let secret = Api::<Secret>::namespaced(client.clone(), &namespace)
        .get(&name)
        .await
        .map_err(|e| SetupError::Secret(reference.to_string(), e))?;
    let value = |key: &'static str| {
        secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .and_then(|v| String::from_utf8(v.0.clone()).ok())
            .ok_or_else(|| ConfigError::SecretKey(reference.to_string(), key))
    };
    Ok(Credentials::new(value("username")?, value("password")?))
}
