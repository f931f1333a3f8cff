//! `kube-org run`: the operator process. Starts the watches and the HTTP server, and
//! stops both cleanly on SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use kube::Client;
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::metrics::Metrics;

/// Command-line flags of `kube-org run`; each has an environment-variable equivalent.
#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// Address of the HTTP server (health, readiness, metrics, invitation acceptance).
    #[arg(long, env = "KUBE_ORG_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,

    /// Log format.
    #[arg(long, env = "KUBE_ORG_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,

    /// Stop when standard input closes: lets a supervising process (a test harness)
    /// end the operator by exiting, whatever way it exits.
    #[arg(long, env = "KUBE_ORG_STOP_ON_STDIN_CLOSE", hide = true)]
    pub stop_on_stdin_close: bool,

    /// How many objects each controller reconciles at once (Organizations for access,
    /// Invitations for email); one object is never reconciled twice at the same time.
    #[arg(long, env = "KUBE_ORG_CONCURRENCY", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..))]
    pub concurrency: u16,

    /// Handle access only for Organizations matching this label selector (to shard
    /// organizations between operators; default: all).
    #[arg(long, env = "KUBE_ORG_ORGANIZATIONS_SELECTOR")]
    pub organizations_selector: Option<String>,

    /// Elect a leader among replicas with a Lease: only the leader reconciles and sends
    /// email; every replica serves the accept endpoint.
    #[arg(long, env = "KUBE_ORG_LEADER_ELECT")]
    pub leader_elect: bool,

    /// Name of the leader-election Lease.
    #[arg(long, env = "KUBE_ORG_LEASE_NAME", default_value = "kube-org")]
    pub lease_name: String,

    /// Namespace of the leader-election Lease (in a Pod: its own namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "kube-org-system")]
    pub lease_namespace: String,

    /// Seconds a leader that stopped renewing keeps the Lease; a follower takes over
    /// at most this long (plus one renewal interval, a fifth of it) after a crash.
    #[arg(long, env = "KUBE_ORG_LEASE_DURATION_SECONDS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(2..=300))]
    pub lease_duration_seconds: u64,

    /// Act as this ServiceAccount (`namespace/name`) through impersonation: runs the
    /// operator with exactly the permissions `manifests/` grants it (used by the tests).
    #[arg(long, env = "KUBE_ORG_IMPERSONATE", hide = true)]
    pub impersonate: Option<String>,

    /// Invitations: SMTP, sender, accept link, rate limit.
    #[command(flatten)]
    pub invitations: crate::invitations::InvitationArgs,
}

impl RunArgs {
    /// Checks what clap cannot: values whose meaning depends on their content.
    pub fn validate(&self) -> Result<(), crate::invitations::ConfigError> {
        if let Some(sa) = &self.impersonate {
            crate::invitations::config::namespace_and_name(sa)
                .ok_or_else(|| crate::invitations::ConfigError::ServiceAccount(sa.clone()))?;
        }
        self.invitations.validate()
    }
}

/// How log lines are written.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube=warn,kube_org=info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Runs until SIGINT or SIGTERM; fails at once on a flag that does not make sense.
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    args.validate()?;
    init_logging(args.log_format);
    let client = connect(args.impersonate.as_deref()).await?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let ready = Arc::new(AtomicBool::new(false));
    let metrics = Metrics::default();
    let mut registry = Registry::default();
    metrics.register(&mut registry);

    // Invitations: the controller, the accept endpoint and their metrics.
    let invitations = crate::invitations::Invitations::new(
        client.clone(),
        &args.invitations,
        &args.lease_namespace,
        &mut registry,
        metrics.clone(),
    )
    .await
    .context("setting up invitations")?;
    let accept_routes = invitations.router();
    let state = AppState {
        ready: ready.clone(),
        registry: Arc::new(registry),
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    info!(address = %args.listen, "HTTP server listening");
    // Every replica serves the accept endpoint, leader or not.
    let server = tokio::spawn(serve(listener, state, stop_rx.clone(), accept_routes));
    ready.store(true, Ordering::SeqCst);
    info!("kube-org started");

    let signal = shutdown_signal(args.stop_on_stdin_close);
    tokio::pin!(signal);
    let election = Election::start(&args, &client);
    let mut leading = election.leading.clone();
    let mut lost_leadership = false;
    // Followers wait here until they lead (or are told to stop).
    let leads = tokio::select! {
        name = &mut signal => { info!(signal = name, "shutting down"); false }
        result = leading.wait_for(|leads| *leads) => result.is_ok(),
    };
    let mut controllers = Vec::new();
    if leads {
        metrics.leader.set(1);
        info!("leading: starting the controllers");
        controllers.push((
            "access controller",
            tokio::spawn(crate::controller::run(
                client.clone(),
                metrics.clone(),
                args.organizations_selector.clone(),
                args.concurrency,
                args.lease_namespace.clone(),
                stop_rx.clone(),
            )),
        ));
        controllers.push((
            "invitation controller",
            tokio::spawn(invitations.run(args.concurrency, metrics.clone(), stop_rx.clone())),
        ));
        tokio::select! {
            name = &mut signal => info!(signal = name, "shutting down"),
            _ = leading.wait_for(|leads| !*leads) => {
                warn!("lost leadership; stopping so that only the leader acts");
                lost_leadership = true;
            }
        }
    }
    ready.store(false, Ordering::SeqCst);
    let _ = stop_tx.send(true);
    // Graceful, but bounded: an open keep-alive connection or a slow reconcile must not
    // keep the process alive after SIGTERM.
    let stopping = controllers.into_iter().map(|(name, task)| async move {
        if tokio::time::timeout(GRACE, task).await.is_err() {
            warn!("the {name} did not stop within {GRACE:?}; exiting anyway");
        }
    });
    futures::future::join_all(stopping).await;
    // Controllers are stopped: hand the Lease over at once, so another replica takes
    // over without waiting for it to expire.
    election.step_down().await;
    metrics.leader.set(0);
    match tokio::time::timeout(GRACE, server).await {
        Ok(joined) => joined.context("HTTP server task")??,
        Err(_) => warn!("HTTP server did not stop within {GRACE:?}; exiting anyway"),
    }
    if lost_leadership {
        anyhow::bail!("lost leadership");
    }
    info!("kube-org stopped");
    Ok(())
}

/// How long each part of the process may take to stop after SIGTERM.
const GRACE: Duration = Duration::from_secs(10);

/// Connects with KUBECONFIG or the in-cluster config, acting as `service_account`
/// (`namespace/name`) when given.
async fn connect(service_account: Option<&str>) -> anyhow::Result<Client> {
    let mut config = kube::Config::infer()
        .await
        .context("reading the Kubernetes client configuration (KUBECONFIG or in-cluster)")?;
    if let Some((namespace, name)) =
        service_account.and_then(crate::invitations::config::namespace_and_name)
    {
        config.auth_info.impersonate = Some(format!("system:serviceaccount:{namespace}:{name}"));
        config.auth_info.impersonate_groups = Some(vec![
            "system:serviceaccounts".to_string(),
            format!("system:serviceaccounts:{namespace}"),
            "system:authenticated".to_string(),
        ]);
    }
    Client::try_from(config).context("building the Kubernetes client")
}

/// Leader election, or its absence: `leading` tells whether this replica may act.
struct Election {
    leading: watch::Receiver<bool>,
    /// Without election, the sender lives here so that leadership is never seen as lost.
    _always: Option<watch::Sender<bool>>,
    running: Option<(watch::Sender<bool>, tokio::task::JoinHandle<()>)>,
}

impl Election {
    fn start(args: &RunArgs, client: &Client) -> Election {
        let (leading_tx, leading) = watch::channel(!args.leader_elect);
        if !args.leader_elect {
            return Election {
                leading,
                _always: Some(leading_tx),
                running: None,
            };
        }
        let config = crate::leader::LeaseConfig {
            name: args.lease_name.clone(),
            namespace: args.lease_namespace.clone(),
            identity: identity(),
            duration: Duration::from_secs(args.lease_duration_seconds),
            retry: Duration::from_secs((args.lease_duration_seconds / 5).max(1)),
        };
        info!(lease = %format!("{}/{}", config.namespace, config.name), identity = %config.identity, "waiting to lead");
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = tokio::spawn(crate::leader::run(
            client.clone(),
            config,
            leading_tx,
            stop_rx,
        ));
        Election {
            leading,
            _always: None,
            running: Some((stop_tx, task)),
        }
    }

    /// Releases the Lease if this replica holds it (bounded: the API may be gone).
    async fn step_down(self) {
        if let Some((stop, task)) = self.running {
            let _ = stop.send(true);
            if tokio::time::timeout(GRACE, task).await.is_err() {
                warn!("could not release the Lease within {GRACE:?}; it will expire");
            }
        }
    }
}

/// This replica's identity in the Lease: the Pod name, else host name and process id.
fn identity() -> String {
    std::env::var("POD_NAME").unwrap_or_else(|_| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        format!("{}-{}", host.trim(), std::process::id())
    })
}

/// Resolves on SIGINT or SIGTERM (or, when asked, standard input closing), naming it.
async fn shutdown_signal(stop_on_stdin_close: bool) -> &'static str {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler cannot fail on Unix");
    let stdin_closed = async {
        if stop_on_stdin_close {
            let mut sink = tokio::io::sink();
            let _ = tokio::io::copy(&mut tokio::io::stdin(), &mut sink).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT",
        _ = terminate.recv() => "SIGTERM",
        _ = stdin_closed => "stdin closed",
    }
}

/// What the HTTP handlers share.
#[derive(Clone)]
struct AppState {
    ready: Arc<AtomicBool>,
    registry: Arc<Registry>,
}

async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    mut stop: watch::Receiver<bool>,
    accept_routes: Router,
) -> anyhow::Result<()> {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(state)
        .merge(accept_routes);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        let _ = stop.changed().await;
    })
    .await
    .context("HTTP server")
}

async fn metrics_text(
    State(state): State<AppState>,
) -> (StatusCode, [(&'static str, &'static str); 1], String) {
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, &state.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(
                "content-type",
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        ),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [("content-type", "text/plain")],
            "encoding metrics failed".into(),
        ),
    }
}

async fn readyz(State(state): State<AppState>) -> (StatusCode, &'static str) {
    if state.ready.load(Ordering::SeqCst) {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}
