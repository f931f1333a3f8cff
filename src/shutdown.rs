//! Stopping controllers: gracefully, but always.
//!
//! kube's graceful shutdown stops the watches and then lets in-flight reconciles finish.
//! Two things can then wait forever: kube's runner, which holds every reconcile until
//! the controller's cache is filled, and a reconcile waiting for one of our caches. Both
//! wait on watches that were just stopped. So a stop that comes before the caches are
//! filled ends the controller at once (nothing has been reconciled yet), and otherwise
//! in-flight reconciles get a bounded grace. Cutting a reconcile short is safe: every
//! write is idempotent and the next leader recomputes everything.

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;
use tracing::warn;

/// How long in-flight reconciles may take to finish after a stop.
pub const RECONCILE_GRACE: Duration = Duration::from_secs(5);

/// Resolves once `stop` turns true (or its sender is gone).
pub async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// Runs `controller` (built with `graceful_shutdown_on(stopped(stop))`) until it ends by
/// itself, or: at once after `stop` when `caches_filled` says no, else `grace` after it.
pub async fn run_until_stopped(
    name: &str,
    controller: impl Future<Output = ()>,
    stop: watch::Receiver<bool>,
    caches_filled: impl Fn() -> bool,
    grace: Duration,
) {
    let deadline = async {
        stopped(stop).await;
        if caches_filled() {
            tokio::time::sleep(grace).await;
            warn!(
                controller = name,
                "in-flight reconciles did not finish within {grace:?} of the stop; abandoned"
            );
        }
    };
    tokio::select! {
        _ = controller => {}
        _ = deadline => {}
    }
}
