//! The effectful shell around [`lifecycle::decide`]: a kube-runtime Controller on
//! Invitations, re-triggered by their Organization, their home Namespace (its
//! `kube-org.io/organization` label decides which Organization it belongs to, see
//! [`crate::access::home`]), the Memberships of the home namespace and sibling
//! Invitations for the same person.
//!
//! Decisions are made on the cache; anything that writes is decided again on the live
//! object first, and every status write carries a resourceVersion precondition, so a
//! stale cache cannot send a second email or overwrite an acceptance.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::Controller;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, Resource, ResourceExt};
use tracing::Instrument;

use super::email::{Invite, Mailer, accept_link};
use super::join::{self, JoinError};
use super::lifecycle::{
    self, Decision, Defaults, Facts, Note, REASON_INVALID_MESSAGE, SendPlan, delivered_status,
    failed_status, invalid_message_status, retry_delay, sending_status,
};
use super::metrics::Metrics;
use super::token::{Token, TokenError};
use super::write_status;
use crate::access::home::{no_organization_message, organization_of_home};
use crate::api::{Invitation, InvitationPhase, Membership, Organization};
use crate::cache::{Filled, all_filled, wait_all_filled};
use crate::index::{Index, Key};
use crate::watch_set::WatchSet;

/// Why a reconcile failed (it is retried).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Kube(#[from] kube::Error),
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error(transparent)]
    Join(#[from] JoinError),
}

impl Error {
    /// The `reason` label of the reconcile error metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(error) => crate::metrics::kube_error_reason(error),
            Error::Token(_) => "Token",
            Error::Join(_) => "Join",
        }
    }
}

/// The `controller` label of this controller's metrics.
const CONTROLLER: &str = "invitation";

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub defaults: Defaults,
    pub mailer: Option<Mailer>,
    pub invitations: Store<Invitation>,
    pub organizations: Store<Organization>,
    pub memberships: Store<Membership>,
    /// Namespaces labelled `kube-org.io/organization`.
    pub namespaces: Store<Namespace>,
    /// Whether the Invitation, Organization, Membership and Namespace caches are filled.
    pub filled: Vec<Filled>,
    pub events: crate::events::Events,
    pub metrics: Arc<Metrics>,
    /// Reconciles, errors, durations and API writes, shared with the access controller.
    pub shared: crate::metrics::Metrics,
    /// Invitation uid -> no delivery retry before this instant (backoff after a failure).
    retry_at: Mutex<HashMap<String, Instant>>,
    /// A permit is held from handing an email to the SMTP server until Delivered is
    /// recorded: a crash duplicates at most as many emails as there are permits
    /// (`--emails-in-flight`, default 1).
    unrecorded: tokio::sync::Semaphore,
}

/// The controller and the caches it reads, ready to run.
pub struct InvitationController {
    watches: WatchSet,
    client: Client,
    /// `--emails-in-flight`.
    emails_in_flight: u16,
}

impl InvitationController {
    /// The controller on the process's shared watches (whose Invitation watch
    /// `--invitations-selector` limits). It subscribes to them only when it runs (on
    /// the leader), so a follower queues nothing.
    pub fn new(client: Client, watches: &WatchSet, emails_in_flight: u16) -> Self {
        InvitationController {
            watches: watches.clone(),
            client,
            emails_in_flight,
        }
    }

    /// The kube controller: Invitations, woken by their siblings (the same person), by
    /// Memberships of the person, by their Organization and by their home namespace.
    fn controller(&self) -> Controller<Invitation> {
        let watches = &self.watches;
        let invitations = watches.invitations.store();
        let index = watches.invitations.index();
        let cache = index.clone();
        let by_person = move |namespace: Option<String>, email: String, except: Option<String>| {
            let Some(namespace) = namespace else {
                return Vec::new();
            };
            cache
                .get(&Key::Namespace(namespace))
                .into_iter()
                .filter(|i| i.spec.email.normalized() == email)
                .filter(|i| Some(i.name_any()) != except)
                .map(|i| ObjectRef::from_obj(&*i))
                .collect::<Vec<_>>()
        };
        let by_person = Arc::new(by_person);
        let siblings = by_person.clone();
        let members = by_person;
        let (in_home, in_namespace) = (index.clone(), index);
        // A change to one Invitation wakes the others to the same person (a refusal for
        // a duplicate may clear), from the same watch: no second watch of Invitations.
        let (sibling_tx, sibling_rx) = futures::channel::mpsc::unbounded();
        let invitation_events = watches.invitations.subscribe().inspect(move |invitation| {
            let others = siblings(
                invitation.namespace(),
                invitation.spec.email.normalized(),
                Some(invitation.name_any()),
            );
            for other in others {
                let _ = sibling_tx.unbounded_send(other);
            }
        });
        Controller::for_shared_stream(invitation_events, invitations)
            .reconcile_on(sibling_rx)
            .watches_shared_stream(
                watches.memberships.subscribe(),
                move |membership: Arc<Membership>| {
                    members(
                        membership.namespace(),
                        membership.spec.email.normalized(),
                        None,
                    )
                },
            )
            .watches_shared_stream(
                watches.organizations.subscribe(),
                move |org: Arc<Organization>| invitations_in(&in_home, &org.home_namespace()),
            )
            // Marking (or unmarking) a home namespace decides its organization.
            .watches_shared_stream(watches.namespaces.subscribe(), move |ns: Arc<Namespace>| {
                invitations_in(&in_namespace, &ns.name_any())
            })
    }

    /// The cache of Invitations (for metrics).
    pub fn invitations(&self) -> Store<Invitation> {
        self.watches.invitations.store()
    }

    /// Runs until `stop` turns true.
    #[allow(clippy::too_many_arguments)]
    pub async fn run(
        self,
        concurrency: u16,
        defaults: Defaults,
        mailer: Option<Mailer>,
        metrics: Arc<Metrics>,
        events: crate::events::Events,
        shared: crate::metrics::Metrics,
        stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let context = Arc::new(Context {
            shared,
            client: self.client.clone(),
            defaults,
            mailer,
            invitations: self.watches.invitations.store(),
            organizations: self.watches.organizations.store(),
            memberships: self.watches.memberships.store(),
            namespaces: self.watches.namespaces.store(),
            filled: vec![
                self.watches.invitations.filled(),
                self.watches.organizations.filled(),
                self.watches.memberships.filled(),
                self.watches.namespaces.filled(),
            ],
            events,
            metrics,
            retry_at: Mutex::new(HashMap::new()),
            unrecorded: tokio::sync::Semaphore::new(self.emails_in_flight.max(1).into()),
        });
        let controller = self
            .controller()
            .with_config(kube::runtime::controller::Config::default().concurrency(concurrency))
            .graceful_shutdown_on(crate::shutdown::stopped(stop.clone()))
            .run(reconcile, error_policy, context.clone())
            .for_each(|result| {
                if let Err(error) = result {
                    tracing::debug!(%error, "invitation reconcile");
                }
                futures::future::ready(())
            });
        let caches_filled = || all_filled(&context.filled);
        crate::shutdown::run_until_stopped(
            "invitation",
            controller,
            stop,
            caches_filled,
            crate::shutdown::RECONCILE_GRACE,
        )
        .await;
    }
}

fn error_policy(invitation: Arc<Invitation>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.shared
        .reconcile_failed(CONTROLLER, error.metric_label());
    match error {
        Error::Kube(kube::Error::Api(status)) if status.code == 409 => {
            Action::requeue(Duration::from_millis(200))
        }
        error => {
            tracing::warn!(invitation = %invitation.name_any(), namespace = invitation.namespace().unwrap_or_default(), %error, "invitation reconcile failed; retrying");
            Action::requeue(Duration::from_secs(5))
        }
    }
}

impl Context {
    /// The organization of home namespace `namespace`, or why there is none.
    fn organization(&self, namespace: &str) -> Result<Organization, String> {
        let ns = self.namespaces.get(&ObjectRef::new(namespace));
        let organizations = self.organizations.state();
        let orgs = || organizations.iter().map(AsRef::as_ref);
        ns.as_deref()
            .and_then(|ns| organization_of_home(ns, orgs()))
            .cloned()
            .ok_or_else(|| no_organization_message(namespace, ns.as_deref(), orgs()))
    }

    fn decide(&self, invitation: &Invitation, now: Timestamp) -> Decision {
        let namespace = invitation.namespace();
        let same_namespace = |ns: Option<String>| ns == namespace;
        let organization = self.organization(namespace.as_deref().unwrap_or_default());
        let memberships = self
            .memberships
            .state_filter(|m| same_namespace(m.namespace()));
        let invitations = self
            .invitations
            .state_filter(|i| same_namespace(i.namespace()));
        lifecycle::decide(&Facts {
            invitation,
            organization: organization.as_ref().ok(),
            no_organization: organization.as_ref().err().cloned(),
            memberships: memberships.iter().map(AsRef::as_ref).collect(),
            invitations: invitations.iter().map(AsRef::as_ref).collect(),
            defaults: &self.defaults,
            now,
        })
    }

    async fn publish(&self, invitation: &Invitation, note: &Note) {
        let type_ = if note.warning {
            EventType::Warning
        } else {
            EventType::Normal
        };
        self.events
            .publish(
                &invitation.object_ref(&()),
                type_,
                &note.reason,
                &note.message,
                "Reconcile",
            )
            .await;
    }
}

/// Whether a decision needs no write: the status is as it should be.
fn quiet(decision: &Decision, invitation: &Invitation) -> bool {
    match decision {
        Decision::Nothing => true,
        Decision::Settle { status, .. } => invitation.status.as_ref() == Some(status),
        Decision::Send(_) | Decision::FinishAcceptance => false,
    }
}

/// Waits until `at` (plus a millisecond, so the deadline has passed when it fires).
fn until(at: Timestamp, now: Timestamp) -> Action {
    let wait = at.duration_since(now).as_millis().max(0) as u64 + 1;
    Action::requeue(Duration::from_millis(wait))
}

fn follow_up(decision: &Decision, now: Timestamp) -> Action {
    match decision {
        Decision::Settle {
            wake_at: Some(at), ..
        } => until(*at, now),
        _ => Action::await_change(),
    }
}

async fn reconcile(invitation: Arc<Invitation>, ctx: Arc<Context>) -> Result<Action, Error> {
    // Every log line of the reconcile names the invitation.
    let span = tracing::info_span!(
        "reconcile",
        invitation = %invitation.name_any(),
        namespace = %invitation.namespace().unwrap_or_default()
    );
    ctx.shared
        .reconcile(CONTROLLER, reconcile_invitation(invitation, &ctx))
        .instrument(span)
        .await
}

async fn reconcile_invitation(invitation: Arc<Invitation>, ctx: &Context) -> Result<Action, Error> {
    // Decisions need the Organizations and Memberships; wait for the first listing.
    wait_all_filled(&ctx.filled).await;
    let decision = ctx.decide(&invitation, Timestamp::now());
    if quiet(&decision, &invitation) {
        return Ok(follow_up(&decision, Timestamp::now()));
    }
    let api: Api<Invitation> = Api::namespaced(
        ctx.client.clone(),
        &invitation.namespace().unwrap_or_default(),
    );
    let Some(live) = api.get_opt(&invitation.name_any()).await? else {
        return Ok(Action::await_change());
    };
    let now = Timestamp::now();
    let decision = ctx.decide(&live, now);
    match decision {
        Decision::Nothing => Ok(Action::await_change()),
        Decision::Settle {
            ref status,
            ref event,
            ..
        } => {
            if live.status.as_ref() != Some(status) {
                write_status(&api, &ctx.shared, &live, status.clone()).await?;
                record_expiry(ctx, &live, status, now);
            }
            if let Some(note) = event {
                ctx.publish(&live, note).await;
            }
            Ok(follow_up(&decision, Timestamp::now()))
        }
        Decision::FinishAcceptance => {
            join::finish(&ctx.client, &ctx.shared, &live).await?;
            Ok(Action::await_change())
        }
        Decision::Send(plan) => send(ctx, &api, live, plan).await,
    }
}

fn record_expiry(
    ctx: &Context,
    before: &Invitation,
    after: &crate::api::InvitationStatus,
    now: Timestamp,
) {
    let was = before.status.as_ref().and_then(|s| s.phase);
    if after.phase == Some(InvitationPhase::Expired)
        && was != Some(InvitationPhase::Expired)
        && let Some(expires_at) = &after.expires_at
    {
        let late = now.duration_since(expires_at.0).as_secs_f64().max(0.0);
        ctx.metrics.expiry_lateness.observe(late);
    }
}

/// Mints a token, records the intent with the token's hashes (one status write, which
/// also kills the previous link), emails the link, records the outcome. A crash after
/// the email left and before the outcome is recorded sends the
/// email once more on restart (with a new link; the first one is dead); since only one
/// email at a time is in that window (by default), a crash duplicates at most one email.
async fn send(
    ctx: &Context,
    api: &Api<Invitation>,
    live: Invitation,
    plan: SendPlan,
) -> Result<Action, Error> {
    let uid = live.uid().unwrap_or_default();
    if plan.attempt > 1 {
        let not_before = ctx
            .retry_at
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&uid)
            .copied();
        if let Some(at) = not_before
            && at > Instant::now()
        {
            return Ok(Action::requeue(at - Instant::now()));
        }
    }
    let namespace = live.namespace().unwrap_or_default();
    let Ok(org) = ctx.organization(&namespace) else {
        return Ok(Action::await_change());
    };
    let token = Token::mint()?;
    let link = accept_link(&plan.accept_base_url, token.expose());
    // Build the message before anything is written: a message that cannot be built
    // from these objects (a sender, an address or a link no mail server takes) is
    // reported on this invitation alone and waits for the objects to change.
    let invite = Invite {
        organization: &org,
        invitation: &live,
        from: &plan.from,
        link: &link,
        expires_at: plan.expires_at,
    };
    let message = match invite.message() {
        Ok(message) => message,
        Err(error) => return invalid_message(ctx, api, &live, &error).await,
    };
    let sending = write_status(
        api,
        &ctx.shared,
        &live,
        sending_status(&live, &plan, token.record(), Timestamp::now()),
    )
    .await?;

    // The semaphore is never closed; were it, sending without a permit is still right.
    let unrecorded = ctx.unrecorded.acquire().await.ok();
    let sent = match &ctx.mailer {
        Some(mailer) => mailer.send(message).await,
        None => Err(super::email::EmailError::NotConfigured),
    };
    drop(token);
    match sent {
        Ok(()) => {
            ctx.metrics.emails_sent.inc();
            ctx.retry_at
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&uid);
            write_status(
                api,
                &ctx.shared,
                &sending,
                delivered_status(&sending, Timestamp::now()),
            )
            .await?;
            drop(unrecorded);
            let note = Note {
                warning: false,
                reason: "Sent".to_string(),
                message: format!(
                    "invitation emailed to {}; the link expires at {}",
                    live.spec.email.normalized(),
                    plan.expires_at
                ),
            };
            ctx.publish(&live, &note).await;
            Ok(until(plan.expires_at, Timestamp::now()))
        }
        Err(error) => {
            drop(unrecorded);
            ctx.metrics.emails_failed.inc();
            let delay = retry_delay(plan.attempt);
            ctx.retry_at
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(uid, Instant::now() + delay);
            let message = error.to_string();
            tracing::warn!(invitation = %live.name_any(), %namespace, error = %message, "sending an invitation failed");
            let status = failed_status(&sending, &message, delay, Timestamp::now());
            write_status(api, &ctx.shared, &sending, status).await?;
            let note = Note {
                warning: true,
                reason: "DeliveryFailed".to_string(),
                message,
            };
            ctx.publish(&live, &note).await;
            Ok(Action::requeue(delay))
        }
    }
}

/// Reports a message that cannot be built on the invitation (`Delivered=False` and
/// `Ready=False`, reason `InvalidMessage`, and a Warning Event), once: the same failure
/// seen again writes nothing. No token is stored and nothing is retried until the
/// Invitation or its Organization changes (both wake this controller).
async fn invalid_message(
    ctx: &Context,
    api: &Api<Invitation>,
    live: &Invitation,
    error: &super::email::EmailError,
) -> Result<Action, Error> {
    let message = error.to_string();
    let status = invalid_message_status(live, &message, Timestamp::now());
    if live.status.as_ref() != Some(&status) {
        ctx.metrics.emails_failed.inc();
        tracing::warn!(invitation = %live.name_any(), namespace = %live.namespace().unwrap_or_default(), error = %message, "the invitation email cannot be built");
        write_status(api, &ctx.shared, live, status).await?;
        let note = Note {
            warning: true,
            reason: REASON_INVALID_MESSAGE.to_string(),
            message,
        };
        ctx.publish(live, &note).await;
    }
    Ok(Action::await_change())
}

/// The cached Invitations in `namespace` (an Organization's home), as triggers.
fn invitations_in(invitations: &Index<Invitation>, namespace: &str) -> Vec<ObjectRef<Invitation>> {
    invitations
        .get(&Key::Namespace(namespace.to_string()))
        .into_iter()
        .map(|i| ObjectRef::from_obj(&*i))
        .collect()
}
