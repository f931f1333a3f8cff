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
use futures::{StreamExt, TryStreamExt};
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::api::{Invitation, Membership, Organization, RoleBinding};

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

    // Invitations: the controller, the accept endpoint and their metrics.
    let mut registry = prometheus_client::registry::Registry::default();
    let invitations =
        crate::invitations::Invitations::new(client.clone(), &args.invitations, &mut registry)
            .await
            .context("setting up invitations")?;
    let extra_routes = invitations.router();
    let mut invitations_stop = stop_rx.clone();
    let invitations = invitations.run(async move {
        let _ = invitations_stop.changed().await;
    });

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    info!(address = %args.listen, "HTTP server listening");
    let server = tokio::spawn(serve(
        listener,
        ready.clone(),
        stop_rx.clone(),
        extra_routes,
        Arc::new(registry),
    ));

    let watches = futures::future::join(
        futures::future::join4(
            log_watch::<Organization>(Api::all(client.clone()), stop_rx.clone()),
            log_watch::<Membership>(Api::all(client.clone()), stop_rx.clone()),
            log_watch::<Invitation>(Api::all(client.clone()), stop_rx.clone()),
            log_watch::<RoleBinding>(Api::all(client.clone()), stop_rx.clone()),
        ),
        invitations,
    );
    ready.store(true, Ordering::SeqCst);
    info!("kube-org started");

    let signal = shutdown_signal(args.stop_on_stdin_close);
    tokio::pin!(watches);
    tokio::select! {
        _ = &mut watches => warn!("watches ended unexpectedly"),
        name = signal => info!(signal = name, "shutting down"),
    }
    ready.store(false, Ordering::SeqCst);
    let _ = stop_tx.send(true);
    // Let the controllers finish what they are doing (graceful shutdown).
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), watches).await;
    server.await.context("HTTP server task")??;
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

/// Watches one kind and logs what it sees, until stopped.
async fn log_watch<K>(api: Api<K>, mut stop: watch::Receiver<bool>)
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
    K::DynamicType: Default,
{
    let kind = K::kind(&K::DynamicType::default()).to_string();
    let mut events = watcher(api, watcher::Config::default()).boxed();
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            event = events.try_next() => match event {
                Ok(Some(watcher::Event::Apply(obj))) => info!(%kind, name = %obj.name_any(), namespace = obj.namespace(), "applied"),
                Ok(Some(watcher::Event::Delete(obj))) => info!(%kind, name = %obj.name_any(), namespace = obj.namespace(), "deleted"),
                Ok(Some(watcher::Event::InitDone)) => info!(%kind, "watching"),
                Ok(Some(_)) => {}
                Ok(None) => return,
                Err(error) => {
                    warn!(%kind, %error, "watch failed; retrying");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
            }
        }
    }
}

async fn serve(
    listener: tokio::net::TcpListener,
    ready: Arc<AtomicBool>,
    mut stop: watch::Receiver<bool>,
    extra_routes: Router,
    registry: Arc<prometheus_client::registry::Registry>,
) -> anyhow::Result<()> {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(ready)
        .route("/metrics", get(move || metrics(registry.clone())))
        .merge(extra_routes);
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

async fn metrics(registry: Arc<prometheus_client::registry::Registry>) -> axum::response::Response {
    use axum::response::IntoResponse;
    match crate::invitations::metrics::render(&registry) {
        Ok(text) => (
            [(
                axum::http::header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn readyz(State(ready): State<Arc<AtomicBool>>) -> (StatusCode, &'static str) {
    if ready.load(Ordering::SeqCst) {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}
