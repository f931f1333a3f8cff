//! `kube-org run`: the operator process. Starts the watches and the HTTP server, and
//! stops both cleanly on SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use kube::Client;
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tracing::info;

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

    /// Invitations: SMTP, sender, accept link, rate limit.
    #[command(flatten)]
    pub invitations: crate::invitations::InvitationArgs,
}

/// How log lines are written.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Runs until SIGINT or SIGTERM.
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    init_logging(args.log_format);
    let client = Client::try_default()
        .await
        .context("connecting to the Kubernetes API (KUBECONFIG or in-cluster)")?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let ready = Arc::new(AtomicBool::new(false));
    let metrics = Metrics::default();
    let mut registry = Registry::default();
    metrics.register(&mut registry);

    // Invitations: the controller, the accept endpoint and their metrics.
    let invitations =
        crate::invitations::Invitations::new(client.clone(), &args.invitations, &mut registry)
            .await
            .context("setting up invitations")?;
    let accept_routes = invitations.router();
    let invitations_stop = {
        let mut stop = stop_rx.clone();
        async move {
            let _ = stop.changed().await;
        }
    };
    let invitations = tokio::spawn(invitations.run(invitations_stop));

    let state = AppState {
        ready: ready.clone(),
        registry: Arc::new(registry),
    };

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    info!(address = %args.listen, "HTTP server listening");
    let server = tokio::spawn(serve(listener, state, stop_rx.clone(), accept_routes));

    let controller_stop = {
        let mut stop = stop_rx.clone();
        async move {
            let _ = stop.changed().await;
        }
    };
    let controller = tokio::spawn(crate::controller::run(
        client.clone(),
        metrics.clone(),
        controller_stop,
    ));
    ready.store(true, Ordering::SeqCst);
    info!("kube-org started");

    let signal = shutdown_signal(args.stop_on_stdin_close);
    let name = signal.await;
    info!(signal = name, "shutting down");
    ready.store(false, Ordering::SeqCst);
    let _ = stop_tx.send(true);
    server.await.context("HTTP server task")??;
    controller.await.context("access controller task")?;
    // Let the invitation controller finish what it is doing (graceful shutdown).
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), invitations).await;
    info!("kube-org stopped");
    Ok(())
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
