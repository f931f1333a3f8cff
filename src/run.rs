//! `kube-org run`: the operator process. Starts the watches and two HTTP servers (the
//! public accept endpoint on `--listen`; `/metrics`, `/healthz` and `/readyz` on
//! `--metrics-listen`), and stops them cleanly on SIGINT or SIGTERM.
//!
//! A controller task that ends while it should run (a panic, or an unexpected return)
//! makes the process unready at once and exit non-zero, releasing the Lease: Kubernetes
//! restarts it and the other replica takes over, instead of a leader that holds the
//! Lease and reconciles nothing.

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
use tracing::{error, info, warn};

use crate::metrics::Metrics;

/// Command-line flags of `kube-org run`; each has an environment-variable equivalent.
#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// Address of the public HTTP server: the invitation accept endpoint only.
    #[arg(long, env = "KUBE_ORG_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,

    /// Address of the operational HTTP server: `/metrics`, `/healthz` and `/readyz`
    /// (for probes and Prometheus; do not expose it publicly).
    #[arg(long, env = "KUBE_ORG_METRICS_LISTEN", default_value = "0.0.0.0:8081")]
    pub metrics_listen: SocketAddr,

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

    /// Makes the named controller task (`access` or `invitation`) panic as soon as it
    /// starts: only for the test that a dying controller stops the process.
    #[arg(long, env = "KUBE_ORG_TEST_CRASH_CONTROLLER", hide = true)]
    pub test_crash_controller: Option<String>,

    /// Invitations: SMTP, sender, accept link, rate limit.
    #[command(flatten)]
    pub invitations: crate::invitations::InvitationArgs,

    /// How the cluster names people (defaults of `spec.identity`).
    #[command(flatten)]
    pub identity: crate::access::identity::IdentityDefaults,
}

impl RunArgs {
    /// Checks what clap cannot: values whose meaning depends on their content.
    pub fn validate(&self) -> Result<(), crate::invitations::ConfigError> {
        if let Some(sa) = &self.impersonate {
            crate::invitations::config::namespace_and_name(sa)
                .ok_or_else(|| crate::invitations::ConfigError::ServiceAccount(sa.clone()))?;
        }
        if self.listen == self.metrics_listen {
            return Err(crate::invitations::ConfigError::SameListenAddress(
                self.listen.to_string(),
            ));
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
    // Colours only on a terminal: a log file or `kubectl logs` gets plain text.
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(terminal);
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

    // One watch per kind for the whole process, on every replica.
    let watches = crate::watch_set::WatchSet::start(
        &client,
        args.invitations.invitations_selector.as_deref(),
    );
    // Invitations: the controller, the accept endpoint and their metrics.
    let invitations = crate::invitations::Invitations::new(
        client.clone(),
        &watches,
        &args.invitations,
        &args.lease_namespace,
        &mut registry,
        metrics.clone(),
        &args.identity,
    )
    .await
    .context("setting up invitations")?;
    let accept_routes = invitations.router();
    let state = AppState {
        ready: ready.clone(),
        registry: Arc::new(registry),
        metrics: metrics.clone(),
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {} (--listen)", args.listen))?;
    let metrics_listener = tokio::net::TcpListener::bind(args.metrics_listen)
        .await
        .with_context(|| format!("listening on {} (--metrics-listen)", args.metrics_listen))?;
    info!(address = %args.listen, "accept endpoint listening");
    info!(address = %args.metrics_listen, "metrics, health and readiness listening");
    // Every replica serves the accept endpoint, leader or not.
    let server = tokio::spawn(serve(listener, stop_rx.clone(), accept_routes));
    let metrics_server = tokio::spawn(serve(
        metrics_listener,
        stop_rx.clone(),
        operational_routes(state),
    ));
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
    let mut controllers: Vec<(&'static str, tokio::task::JoinHandle<()>)> = Vec::new();
    let mut died = None;
    if leads {
        metrics.leader.set(1);
        info!("leading: starting the controllers");
        let crash = args.test_crash_controller.as_deref();
        controllers.push((
            "access controller",
            spawn_controller(
                "access",
                crash,
                crate::organizations::run(
                    client.clone(),
                    watches.clone(),
                    metrics.clone(),
                    args.organizations_selector.clone(),
                    args.concurrency,
                    args.lease_namespace.clone(),
                    args.identity.clone(),
                    stop_rx.clone(),
                ),
            ),
        ));
        controllers.push((
            "invitation controller",
            spawn_controller(
                "invitation",
                crash,
                invitations.run(args.concurrency, metrics.clone(), stop_rx.clone()),
            ),
        ));
        tokio::select! {
            name = &mut signal => info!(signal = name, "shutting down"),
            _ = leading.wait_for(|leads| !*leads) => {
                warn!("lost leadership; stopping so that only the leader acts");
                lost_leadership = true;
            }
            (name, end) = first_to_end(&mut controllers) => {
                // Unready at once: no new traffic while the process stops.
                ready.store(false, Ordering::SeqCst);
                error!(controller = name, how = %end, "a controller stopped while it should run; exiting so that another replica takes over");
                died = Some((name, end));
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
    for (what, task) in [("accept", server), ("metrics", metrics_server)] {
        match tokio::time::timeout(GRACE, task).await {
            Ok(joined) => joined.with_context(|| format!("{what} HTTP server task"))??,
            Err(_) => warn!("the {what} HTTP server did not stop within {GRACE:?}; exiting anyway"),
        }
    }
    if let Some((name, end)) = died {
        anyhow::bail!("the {name} {end}");
    }
    if lost_leadership {
        anyhow::bail!("lost leadership");
    }
    info!("kube-org stopped");
    Ok(())
}

/// How a supervised task ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskEnd {
    /// It returned, though it should run until told to stop.
    Returned,
    /// It panicked, with this message.
    Panicked(String),
    /// It was cancelled.
    Cancelled,
}

impl std::fmt::Display for TaskEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TaskEnd::Returned => f.write_str("returned unexpectedly"),
            TaskEnd::Panicked(message) => write!(f, "panicked: {message}"),
            TaskEnd::Cancelled => f.write_str("was cancelled"),
        }
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_string())
}

/// Resolves when the first of `tasks` ends (never, when there are none), removing it
/// from `tasks` and saying which it was and how it ended. The others keep running and
/// stay in `tasks`.
pub async fn first_to_end(
    tasks: &mut Vec<(&'static str, tokio::task::JoinHandle<()>)>,
) -> (&'static str, TaskEnd) {
    if tasks.is_empty() {
        return std::future::pending().await;
    }
    let (result, index, _) =
        futures::future::select_all(tasks.iter_mut().map(|(_, task)| task)).await;
    let (name, _) = tasks.remove(index);
    let end = match result {
        Ok(()) => TaskEnd::Returned,
        Err(error) if error.is_panic() => TaskEnd::Panicked(panic_message(&*error.into_panic())),
        Err(_) => TaskEnd::Cancelled,
    };
    (name, end)
}

/// Spawns a controller; when `crash` names it (`--test-crash-controller`), the task
/// panics instead, as a controller hitting a bug would.
fn spawn_controller(
    name: &'static str,
    crash: Option<&str>,
    controller: impl std::future::Future<Output = ()> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    let crash = crash == Some(name);
    tokio::spawn(async move {
        if crash {
            panic!("the {name} controller crashes on purpose (--test-crash-controller)");
        }
        controller.await
    })
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
    metrics: Metrics,
}

/// `/healthz`, `/readyz` and `/metrics`: the operational endpoints.
fn operational_routes(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(state)
}

async fn serve(
    listener: tokio::net::TcpListener,
    mut stop: watch::Receiver<bool>,
    app: Router,
) -> anyhow::Result<()> {
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
    state.metrics.measure_caches();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn forever() -> tokio::task::JoinHandle<()> {
        tokio::spawn(std::future::pending())
    }

    #[tokio::test]
    async fn a_panicking_controller_is_noticed_and_the_others_keep_running() {
        let mut tasks = vec![
            ("access controller", forever()),
            (
                "invitation controller",
                tokio::spawn(async { panic!("boom on bad input") }),
            ),
        ];
        let (name, end) = first_to_end(&mut tasks).await;
        assert_eq!(name, "invitation controller");
        assert_eq!(end, TaskEnd::Panicked("boom on bad input".to_string()));
        assert_eq!(tasks.len(), 1, "the other task is still supervised");
        assert!(!tasks[0].1.is_finished());
        tasks[0].1.abort();
    }

    #[tokio::test]
    async fn a_controller_that_returns_is_noticed_too() {
        let mut tasks = vec![("access controller", tokio::spawn(async {}))];
        let (name, end) = first_to_end(&mut tasks).await;
        assert_eq!(
            (name, end.to_string().as_str()),
            ("access controller", "returned unexpectedly")
        );
        assert!(tasks.is_empty());
        // With nothing left to supervise it never resolves.
        let nothing =
            tokio::time::timeout(Duration::from_millis(50), first_to_end(&mut tasks)).await;
        assert!(nothing.is_err());
    }

    #[tokio::test]
    async fn the_test_crash_flag_crashes_only_the_named_controller() {
        let mut tasks = vec![
            (
                "access controller",
                spawn_controller("access", Some("invitation"), std::future::pending()),
            ),
            (
                "invitation controller",
                spawn_controller("invitation", Some("invitation"), std::future::pending()),
            ),
        ];
        let (name, end) = first_to_end(&mut tasks).await;
        assert_eq!(name, "invitation controller");
        assert!(matches!(end, TaskEnd::Panicked(_)), "{end:?}");
        tasks[0].1.abort();
    }

    #[test]
    fn the_two_listeners_need_different_addresses() {
        use clap::Parser;

        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: RunArgs,
        }

        let defaults = Cli::try_parse_from(["kube-org"]).expect("defaults parse");
        assert_eq!(defaults.args.listen.port(), 8080);
        assert_eq!(defaults.args.metrics_listen.port(), 8081);
        assert!(defaults.args.validate().is_ok());
        let same = Cli::try_parse_from([
            "kube-org",
            "--listen",
            "127.0.0.1:9000",
            "--metrics-listen",
            "127.0.0.1:9000",
        ])
        .expect("flags parse");
        assert!(matches!(
            same.args.validate(),
            Err(crate::invitations::ConfigError::SameListenAddress(_))
        ));
        let proxies = Cli::try_parse_from(["kube-org", "--trusted-proxies", "10.0.0.0/8,fd00::/8"])
            .expect("CIDRs parse");
        assert_eq!(proxies.args.invitations.trusted_proxies.len(), 2);
        assert!(Cli::try_parse_from(["kube-org", "--trusted-proxies", "ingress"]).is_err());
    }

    #[test]
    fn readyz_follows_the_ready_flag() {
        let state = AppState {
            ready: Arc::new(AtomicBool::new(true)),
            registry: Arc::new(Registry::default()),
            metrics: Metrics::default(),
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        assert_eq!(
            runtime.block_on(readyz(State(state.clone()))).0,
            StatusCode::OK
        );
        state.ready.store(false, Ordering::SeqCst);
        assert_eq!(
            runtime.block_on(readyz(State(state))).0,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}
