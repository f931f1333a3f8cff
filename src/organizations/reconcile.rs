//! One reconcile per Organization, as named steps: dereference (read the caches) ->
//! home namespace -> owners -> claims -> plan (pure, [`super::plan`]) -> apply native
//! RBAC ([`super::apply`]) -> members leaving ([`super::leaving`]) -> the Organization's
//! status, the RoleBindings' and Memberships' handed to the status workers
//! ([`super::status`]); and the Organization's cleanup when it is deleted.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};

use crate::access::native::{CachedRoleBinding, DesiredRoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::PostParams;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{self, finalizer};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Resource, ResourceExt};
use tracing::{info, warn};

use super::apply::{self, Managed, WholeObject, Writer, sync};
use super::leaving::{
    delete_orphaned_bindings, ensure_membership_finalizers, lacking_finalizer, note_bound,
    release_leaving_members, release_membership_finalizers,
};
use super::status::write_if_changed;
use super::status_queue::StatusPlan;
use super::{Context, Error};
use crate::access::desired::DesiredAccess;
use crate::access::home::home_refusal;
use crate::access::names::{LABEL_ORGANIZATION, LABEL_OWNER, managed_labels, person_object_name};
use crate::access::policy::PolicyRefusal;
use crate::api::condition::{DesiredCondition, READY, merge_conditions};
use crate::api::invitation::InvitationPhase;
use crate::api::organization::OrganizationStatus;
use crate::api::{
    Email, Membership, MembershipSpec, Organization, RoleBinding, RoleBindingSpec, Scope,
};
use crate::catalog::ORGANIZATION_OWNER;
use crate::index::Key;

/// The finalizer on Organizations: release Membership finalizers before it goes.
pub const ORGANIZATION_FINALIZER: &str = "kube-org.io/organization";

/// Reconciles one Organization (with its finalizer).
pub async fn reconcile(org: &Arc<Organization>, ctx: &Context) -> Result<Action, Error> {
    wait_for_caches(ctx).await;
    let api: Api<Organization> = Api::all(ctx.client.clone());
    // kube's finalizer helper patches the Organization to add its finalizer (not there
    // yet) or to remove it (after cleanup): count those writes too.
    let has_finalizer = org.finalizers().iter().any(|f| f == ORGANIZATION_FINALIZER);
    if has_finalizer == org.meta().deletion_timestamp.is_some() {
        ctx.metrics.write("organizations", "patch");
    }
    let result = finalizer(&api, ORGANIZATION_FINALIZER, org.clone(), |event| async {
        match event {
            finalizer::Event::Apply(org) => apply_organization(&org, ctx).await,
            finalizer::Event::Cleanup(org) => cleanup(&org, ctx).await,
        }
    })
    .await;
    match result {
        Ok(action) => Ok(action),
        Err(finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e)) => Err(e),
        // Cleaned up, and the Organization is gone already: nothing is left to do.
        Err(finalizer::Error::RemoveFinalizer(kube::Error::Api(status))) if status.code == 404 => {
            Ok(Action::await_change())
        }
        // Our copy predates the finalizer we just added (another trigger ran this
        // reconcile before the watch brought the patched Organization): the patch's test
        // fails with 422. The watch event that follows reconciles again; the requeue
        // covers a 422 of any other cause.
        Err(finalizer::Error::AddFinalizer(kube::Error::Api(status))) if status.code == 422 => {
            tracing::debug!("finalizer added from a stale copy; waiting for the current one");
            Ok(Action::requeue(Duration::from_secs(1)))
        }
        // A write raced ours (a stale copy): the error metric says Conflict or KubeApi.
        Err(finalizer::Error::AddFinalizer(e) | finalizer::Error::RemoveFinalizer(e)) => {
            Err(Error::Kube(e))
        }
        Err(other) => Err(Error::Finalizer(other.to_string())),
    }
}

/// A reconcile never computes from a half-filled cache: that would revoke access. (The
/// Invitation cache is not waited for: only the Organization's pending count reads it.)
async fn wait_for_caches(ctx: &Context) {
    crate::cache::wait_all_filled(&ctx.stores.filled).await;
}

/// The cached objects of one organization.
pub(super) struct Snapshot {
    pub memberships: Vec<Arc<Membership>>,
    pub bindings: Vec<Arc<RoleBinding>>,
    pub namespaces: Vec<Arc<Namespace>>,
    pub native_bindings: Vec<Arc<CachedRoleBinding>>,
    pub cluster_roles: Vec<Arc<ClusterRole>>,
    pub cluster_role_bindings: Vec<Arc<ClusterRoleBinding>>,
}

fn dereference(org: &Organization, ctx: &Context) -> Snapshot {
    let name = org.name_any();
    let index = &ctx.stores.index;
    let home = Key::Namespace(org.home_namespace());
    let managed = Key::ManagedFor(name.clone());
    Snapshot {
        memberships: index.memberships.get(&home),
        bindings: index.bindings.get(&home),
        namespaces: index.namespaces.get(&Key::Organization(name)),
        native_bindings: index.native_bindings.get(&managed),
        cluster_roles: index.cluster_roles.get(&managed),
        cluster_role_bindings: index.cluster_role_bindings.get(&managed),
    }
}

/// How many of the organization's Invitations are pending (from the Invitation cache).
fn pending_invitations(org: &Organization, ctx: &Context) -> usize {
    ctx.stores
        .index
        .invitations
        .get(&Key::Namespace(org.home_namespace()))
        .iter()
        .filter(|i| i.status.as_ref().and_then(|s| s.phase) == Some(InvitationPhase::Pending))
        .count()
}

pub(super) fn now() -> Time {
    let seconds = k8s_openapi::jiff::Timestamp::now().as_second();
    Time(
        k8s_openapi::jiff::Timestamp::from_second(seconds)
            .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
    )
}

async fn apply_organization(shared: &Arc<Organization>, ctx: &Context) -> Result<Action, Error> {
    // Shared with the status plans this pass hands over, not copied.
    let org: &Organization = shared;
    let started = std::time::Instant::now();
    let name = org.name_any();
    // Urgent changes after this point may cut this pass's writes short and end its
    // finalizer stream early.
    let urgent_before = ctx.urgent.count(&name);
    if let Some(refusal) = ensure_home_namespace(org, ctx).await? {
        let ready = DesiredCondition::new(READY, false, refusal.reason, refusal.message.clone());
        let was = org
            .status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == READY))
            .map(|c| c.reason.clone());
        write_org_status(org, ctx, &[ready], None).await?;
        if was.as_deref() != Some(refusal.reason) {
            publish(
                ctx,
                org,
                EventType::Warning,
                refusal.reason,
                &refusal.message,
            )
            .await;
        }
        return Ok(Action::await_change());
    }
    // Compare with caches that show this organization's own last writes (a pass cut
    // short requeues at once, before its creates come back through the watch).
    wait_for_own_access_writes(ctx, &name).await;
    let caught_up = started.elapsed();
    let snapshot = dereference(org, ctx);
    let (owner_memberships, owner_bindings) = ensure_owners(org, ctx, &snapshot).await?;

    // Compute from the cache plus the owner objects just applied (the cache may not
    // have them yet), so owners get access in this same pass.
    let mut memberships: Vec<&Membership> =
        snapshot.memberships.iter().map(|m| m.as_ref()).collect();
    memberships.extend(owner_memberships.iter().filter(|m| {
        !snapshot
            .memberships
            .iter()
            .any(|c| c.name_any() == m.name_any())
    }));
    let mut bindings: Vec<&RoleBinding> = snapshot
        .bindings
        .iter()
        .map(|b| b.as_ref())
        .filter(|b| {
            // Owner bindings of emails no longer in spec.owners are on their way out.
            !b.labels().contains_key(LABEL_OWNER)
                || owner_bindings.iter().any(|o| o.name_any() == b.name_any())
        })
        .collect();
    bindings.extend(owner_bindings.iter().filter(|b| {
        !snapshot
            .bindings
            .iter()
            .any(|c| c.name_any() == b.name_any())
    }));
    let namespaces: Vec<&Namespace> = snapshot.namespaces.iter().map(|n| n.as_ref()).collect();

    // A member refused leave stays a member, with all their access.
    let now = k8s_openapi::jiff::Timestamp::now();
    let leaving = super::plan::leaving(org, &memberships, &bindings, &namespaces, now);
    let unbindable = unbindable_cluster_roles(org, ctx).await?;
    let exclusive_refusals = exclusive_membership(org, ctx, &memberships, &leaving).await?;
    let super::plan::Plan {
        mut desired,
        ready,
        members,
        owners,
    } = super::plan::plan(&super::plan::PlanInput {
        org,
        memberships: memberships.clone(),
        bindings: bindings.clone(),
        namespaces,
        leaving: &leaving,
        unbindable: &unbindable,
        exclusive_refusals: &exclusive_refusals,
        identity: &ctx.identity,
        now,
    });
    let next_expiry = desired.next_expiry;
    let refusals = leaving.refusals;
    let bound_now = note_bound(ctx, &name, &snapshot, &desired);
    let planned = started.elapsed();

    // Access first: every native object is attempted, whatever fails elsewhere, and
    // no status write starts meanwhile. An urgent change (a deleted binding to restore,
    // a member to revoke) cuts the writes short once they ran as long as planning did
    // (and `WRITE_SLICE`): the next pass plans from it and writes the rest, instead of
    // making the repair wait for thousands of creates of a cold start.
    let writer = Writer {
        client: &ctx.client,
        metrics: &ctx.metrics,
        unseen: &ctx.unseen_access,
        group: &name,
    };
    let writing = ctx.access_first.writing();
    let (writing_since, slice) = (std::time::Instant::now(), WRITE_SLICE.max(planned));
    let cut = || writing_since.elapsed() >= slice && ctx.urgent.count(&name) != urgent_before;
    let mut synced = sync(
        &writer,
        &desired.role_bindings,
        &snapshot.native_bindings,
        &cut,
    )
    .await;
    synced.add(
        sync(
            &writer,
            std::slice::from_ref(&desired.cluster_role),
            &snapshot.cluster_roles,
            &cut,
        )
        .await,
    );
    synced.add(
        sync(
            &writer,
            std::slice::from_ref(&desired.cluster_role_binding),
            &snapshot.cluster_role_bindings,
            &cut,
        )
        .await,
    );
    if synced.applied + synced.deleted > 0 {
        info!(organization = %name, applied = synced.applied, deleted = synced.deleted, failed = synced.failures.len(), cut_short = synced.cut_short, first = ?synced.examples, "access updated");
        tracing::debug!(
            caught_up_ms = caught_up.as_millis() as u64,
            planned_ms = planned.as_millis() as u64,
            written_ms = started.elapsed().as_millis() as u64,
            "access pass"
        );
    }
    if synced.cut_short {
        // The rest of this pass (finalizers, statuses) belongs to the next one.
        return Ok(Action::requeue(Duration::ZERO));
    }
    for failure in &synced.failures {
        warn!(organization = %name, %failure, "a managed object could not be written; the others were");
    }
    drop(writing);
    report_failed_targets(&mut desired, &synced.failures);
    let desired = Arc::new(desired);
    let access_written = started.elapsed();

    // RoleBinding statuses need no Membership finalizer: handed over before the
    // finalizer stream, they are written while it runs. (Handed over only after it,
    // a cold start's 1,000 RoleBinding statuses waited for its 1,000 patches, and every
    // status came 1.5-2 s later at 1,000 members.)
    let lacking_finalizer = lacking_finalizer(org, &snapshot, &bindings);
    if !lacking_finalizer.is_empty() {
        ctx.statuses.push(StatusPlan {
            org: shared.clone(),
            desired: desired.clone(),
            refusals: refusals.clone(),
            memberships: false,
        });
    }

    // Bookkeeping after access: finalizers (a Membership deleted before it has one is
    // handled by the orphaned-binding step; they stay on this path so that an
    // Organization's cleanup, serialised with it, always sees them), members leaving;
    // statuses go to the status workers.
    let more_finalizers =
        ensure_membership_finalizers(ctx, org, &lacking_finalizer, urgent_before).await?;
    release_leaving_members(org, ctx, &memberships, &bindings, &refusals).await?;
    delete_orphaned_bindings(org, ctx, &snapshot, &memberships, bound_now).await?;
    let bookkept = started.elapsed();

    let ready = if synced.failures.is_empty() {
        ready
    } else {
        sync_failed(&synced.failures)
    };
    let counts = Counts {
        members,
        owners,
        // Until the Invitation cache is filled the count stays as it was; filling it
        // replays every Invitation, which wakes this organization again.
        pending: ctx
            .stores
            .invitations_filled
            .is_filled()
            .then(|| pending_invitations(org, ctx)),
        resources: &desired.resources,
        groups: &desired.groups,
    };
    let was_failing = org
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == READY))
        .is_some_and(|c| c.reason == SYNC_FAILED && c.message == ready.message);
    write_org_status(org, ctx, std::slice::from_ref(&ready), Some(counts)).await?;
    tracing::debug!(
        planned_ms = planned.as_millis() as u64,
        access_written_ms = access_written.as_millis() as u64,
        bookkept_ms = bookkept.as_millis() as u64,
        done_ms = started.elapsed().as_millis() as u64,
        "reconciled"
    );
    // The RoleBindings' and Memberships' statuses: written after, off this path (the
    // Memberships' once every Membership has its finalizer). Writing each Membership's
    // status as soon as it held its finalizer was tried: no faster (the API server is
    // the limit), and every pass of the finalizer stream then compared every finalized
    // Membership's status (peak RSS 2-3 MiB higher at 1,000 members).
    ctx.statuses.push(StatusPlan {
        org: shared.clone(),
        desired,
        refusals,
        memberships: !more_finalizers,
    });
    if !synced.failures.is_empty() {
        if !was_failing {
            publish(ctx, org, EventType::Warning, SYNC_FAILED, &ready.message).await;
        }
        ctx.metrics.reconcile_failed(super::CONTROLLER, SYNC_FAILED);
        // Retried with the controller's pace; the watch also wakes it when a tenant
        // removes what blocked the write.
        return Ok(by_expiry(Some(SYNC_RETRY), next_expiry));
    }
    let again = if more_finalizers {
        // Right away, after whatever else is waiting for this organization.
        Some(Duration::ZERO)
    } else if unbindable.is_empty() {
        None
    } else {
        // Nothing announces that a cluster admin granted `bind`: look again later.
        Some(UNBINDABLE_RECHECK)
    };
    Ok(by_expiry(again, next_expiry))
}

/// Requeues after `again`, or sooner for the organization's next binding expiry
/// (scheduled for the deadline, a millisecond past it, never polled; an expired
/// binding has no future expiry, so it schedules nothing). Timed from the clock now,
/// not from when the plan was computed.
fn by_expiry(again: Option<Duration>, next_expiry: Option<k8s_openapi::jiff::Timestamp>) -> Action {
    let now = k8s_openapi::jiff::Timestamp::now();
    let until_expiry = next_expiry.map(|at| {
        let wait = at.duration_since(now).as_millis().max(0) as u64 + 1;
        Duration::from_millis(wait).min(FAR_EXPIRY_STEP)
    });
    match (again, until_expiry) {
        (Some(a), Some(b)) => Action::requeue(a.min(b)),
        (Some(d), None) | (None, Some(d)) => Action::requeue(d),
        (None, None) => Action::await_change(),
    }
}

/// The longest wait for an expiry: one further away (any `expiresAt` a user writes, say
/// in 2099) is approached a day at a time. The controller's timer queue panics on a
/// deadline more than about two years ahead, and a day also bounds the effect of a
/// clock that jumped.
const FAR_EXPIRY_STEP: Duration = Duration::from_secs(24 * 3600);

/// The reason of an Organization (and of the targets concerned) when a managed object
/// could not be written.
const SYNC_FAILED: &str = "SyncFailed";

/// How soon an organization with a failed write tries again.
const SYNC_RETRY: Duration = Duration::from_secs(5);

/// The Organization's Ready condition when some managed objects could not be written:
/// never Ready, and the message names where.
fn sync_failed(failures: &[super::apply::SyncFailure]) -> DesiredCondition {
    let mut places: Vec<String> = failures.iter().map(ToString::to_string).collect();
    places.sort();
    let shown: Vec<&str> = places.iter().take(5).map(String::as_str).collect();
    let more = places.len().saturating_sub(shown.len());
    let mut message = format!(
        "{} managed object(s) could not be written (every other change was applied): {}",
        places.len(),
        shown.join("; ")
    );
    if more > 0 {
        message.push_str(&format!("; and {more} more"));
    }
    DesiredCondition::new(READY, false, SYNC_FAILED, message)
}

/// Marks each kube-org RoleBinding whose resources include a namespace where a write
/// failed: a per-target problem, and not Ready. Failures come in the order the writes
/// ended; problems are listed by namespace, so that a status stays the same while the
/// same writes keep failing (each retry rewrote every status concerned, up to a
/// hundred problems each, until etcd ran out of space).
fn report_failed_targets(desired: &mut DesiredAccess, failures: &[super::apply::SyncFailure]) {
    use crate::api::rolebinding::TargetProblem;
    let mut failures: Vec<&super::apply::SyncFailure> = failures.iter().collect();
    failures.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    for outcome in desired.bindings.values_mut() {
        let mut failed_here = false;
        for failure in &failures {
            let Some(namespace) = &failure.namespace else {
                continue;
            };
            if outcome.resources.contains(namespace)
                && !outcome.problems.iter().any(|p| &p.resource == namespace)
            {
                outcome.problems.push(TargetProblem {
                    resource: namespace.clone(),
                    reason: SYNC_FAILED.to_string(),
                    message: format!("could not write {}: {}", failure.name, failure.error),
                });
                failed_here = true;
            }
        }
        if failed_here {
            outcome.ready = DesiredCondition::new(
                READY,
                false,
                SYNC_FAILED,
                format!(
                    "{}; not applied in some resources (see status.problems)",
                    outcome.ready.message
                ),
            );
        }
    }
}

/// The reason of a Membership refused because the person belongs, exclusively, to
/// another organization.
const EXCLUSIVE_MEMBERSHIP: &str = "ExclusiveMembership";

/// Reasons of a Membership that grants nothing: it does not count as "a member of
/// that organization" for exclusive membership elsewhere.
const REFUSED_MEMBERSHIP_REASONS: [&str; 3] = [
    EXCLUSIVE_MEMBERSHIP,
    "DomainNotAllowed",
    "SystemUserNotAllowed",
];

/// How long a claim this organization holds, with no Membership of the person, is kept
/// before it is given back: an acceptance takes the claim a moment before it creates
/// the Membership. A member who leaves gives it back at once.
const CLAIM_GRACE: Duration = Duration::from_secs(60);

/// Exclusive membership for the members as they are (declared directly or accepted):
/// the Memberships that must grant nothing because the person belongs, exclusively,
/// to another organization (see [`crate::exclusive::member_claim`]). Takes the claims an
/// exclusive organization's members need and gives back those nobody needs.
async fn exclusive_membership(
    org: &Organization,
    ctx: &Context,
    memberships: &[&Membership],
    leaving: &super::plan::Leaving,
) -> Result<BTreeMap<String, PolicyRefusal>, Error> {
    use crate::exclusive::{MemberClaim, cached_holder, member_claim};
    let name = org.name_any();
    let claims: BTreeMap<String, crate::exclusive::Holder> = ctx
        .stores
        .claims
        .state()
        .iter()
        .filter_map(|lease| cached_holder(lease))
        .collect();
    let live: Vec<&&Membership> = memberships
        .iter()
        .filter(|m| super::plan::is_staying(m, leaving))
        .filter(|m| {
            let identity = ctx.identity.of(org);
            crate::access::policy::membership_refusal(org, &identity, m).is_none()
        })
        .collect();
    let now = k8s_openapi::jiff::Timestamp::now();
    let mut refused = BTreeMap::new();
    // Who is a member where, built once per reconcile and only when needed.
    let home = org.home_namespace();
    let mut elsewhere: Option<BTreeMap<String, Vec<crate::exclusive::MemberOf>>> = None;
    for m in &live {
        let email = m.spec.email.normalized();
        let claim = claims.get(&email);
        if !org.spec.membership.exclusive && claim.is_none() {
            continue;
        }
        let elsewhere = elsewhere.get_or_insert_with(|| memberships_elsewhere(ctx, &home));
        let member_of = elsewhere.get(&email).cloned().unwrap_or_default();
        match member_claim(
            &email,
            claim,
            &name,
            org.spec.membership.exclusive,
            &member_of,
            now,
        ) {
            MemberClaim::Granted => {}
            MemberClaim::Refused(message) => {
                refused.insert(m.name_any(), exclusive_refusal(message));
            }
            MemberClaim::Take => {
                match crate::exclusive::claim(
                    &ctx.client,
                    &ctx.claims_namespace,
                    &email,
                    org,
                    &member_of,
                )
                .await?
                {
                    crate::exclusive::Claimed::Refused(message) => {
                        refused.insert(m.name_any(), exclusive_refusal(message));
                    }
                    crate::exclusive::Claimed::Taken(_) => {
                        ctx.metrics.write("leases", "create");
                        info!(organization = %name, member = %email, "exclusive membership claimed")
                    }
                    crate::exclusive::Claimed::AlreadyHeld
                    | crate::exclusive::Claimed::NotNeeded => {}
                }
            }
        }
    }
    // Give back what this organization holds for people who are no longer members.
    let held: Vec<(&String, &crate::exclusive::Holder)> = claims
        .iter()
        .filter(|(_, holder)| holder.organization == name)
        .collect();
    let live_emails: std::collections::HashSet<String> = if held.is_empty() {
        Default::default()
    } else {
        live.iter().map(|m| m.spec.email.normalized()).collect()
    };
    for (email, holder) in held {
        let settled = holder.since.is_none_or(|since| {
            now.duration_since(since).as_secs() >= CLAIM_GRACE.as_secs() as i64
        });
        if !live_emails.contains(email) && settled {
            give_back_claim(ctx, org, email).await?;
        }
    }
    Ok(refused)
}

fn exclusive_refusal(message: String) -> PolicyRefusal {
    PolicyRefusal {
        reason: EXCLUSIVE_MEMBERSHIP,
        message: format!("{message}; this Membership grants nothing meanwhile"),
    }
}

/// Whether a Membership's status says it grants nothing (refused by policy or by
/// exclusive membership): it does not count as a membership elsewhere. Its change wakes
/// the Membership's organization ([`super::triggers`]).
pub fn is_refused(m: &Membership) -> bool {
    m.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == READY && REFUSED_MEMBERSHIP_REASONS.contains(&c.reason.as_str()))
    })
}

/// For every person, the organizations (other than the one homed in `home`) where they
/// are a member that grants: not being deleted, not refused.
fn memberships_elsewhere(
    ctx: &Context,
    home: &str,
) -> BTreeMap<String, Vec<crate::exclusive::MemberOf>> {
    let mut by_email: BTreeMap<String, Vec<crate::exclusive::MemberOf>> = BTreeMap::new();
    for m in ctx.stores.memberships.state() {
        let Some(namespace) = m.namespace().filter(|ns| ns != home) else {
            continue;
        };
        if m.meta().deletion_timestamp.is_some() || is_refused(&m) {
            continue;
        }
        if let Some(o) = ctx
            .stores
            .index
            .organizations
            .get(&Key::Home(namespace))
            .first()
        {
            by_email.entry(m.spec.email.normalized()).or_default().push(
                crate::exclusive::MemberOf {
                    organization: o.name_any(),
                    exclusive: o.spec.membership.exclusive,
                },
            );
        }
    }
    for member_of in by_email.values_mut() {
        member_of.sort_by(|a, b| a.organization.cmp(&b.organization));
        member_of.dedup();
    }
    by_email
}

/// Gives back `email`'s exclusive-membership claim if `org` holds it.
pub(super) async fn give_back_claim(
    ctx: &Context,
    org: &Organization,
    email: &str,
) -> Result<(), Error> {
    if crate::exclusive::release(&ctx.client, &ctx.claims_namespace, email, org).await? {
        ctx.metrics.write("leases", "delete");
        info!(organization = %org.name_any(), member = %email, "exclusive membership claim given back");
    }
    Ok(())
}

/// How often an organization with a ClusterRole kube-org may not bind checks again.
const UNBINDABLE_RECHECK: Duration = Duration::from_secs(30);

/// The ClusterRoles of `spec.roles` that kube-org is not allowed to bind (asked with a
/// SelfSubjectAccessReview each, unless recently found bindable). The catalog's ClusterRoles are granted by
/// `manifests/rbac.yaml`; custom ones need a grant of their own.
async fn unbindable_cluster_roles(
    org: &Organization,
    ctx: &Context,
) -> Result<BTreeSet<String>, Error> {
    let custom: BTreeSet<&String> = org
        .spec
        .roles
        .iter()
        .filter_map(|r| r.cluster_role.as_ref())
        .collect();
    let reviews: Api<SelfSubjectAccessReview> = Api::all(ctx.client.clone());
    let mut unbindable = BTreeSet::new();
    for cluster_role in custom {
        if ctx.bindable.is_known(cluster_role) {
            continue;
        }
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    verb: Some("bind".to_string()),
                    group: Some("rbac.authorization.k8s.io".to_string()),
                    resource: Some("clusterroles".to_string()),
                    name: Some(cluster_role.clone()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let answer = reviews.create(&PostParams::default(), &review).await?;
        if answer.status.is_some_and(|s| s.allowed) {
            ctx.bindable.remember(cluster_role);
        } else {
            unbindable.insert(cluster_role.clone());
        }
    }
    Ok(unbindable)
}

struct Counts<'a> {
    members: usize,
    owners: usize,
    pending: Option<usize>,
    resources: &'a BTreeMap<String, Vec<String>>,
    /// `spec.membership.groups` entries (SSO auto-join).
    groups: &'a [crate::api::organization::GroupStatus],
}

async fn write_org_status(
    org: &Organization,
    ctx: &Context,
    conditions: &[DesiredCondition],
    counts: Option<Counts<'_>>,
) -> Result<(), Error> {
    let current = org.status.clone().unwrap_or_default();
    let mut status = OrganizationStatus {
        conditions: merge_conditions(
            &current.conditions,
            conditions,
            org.metadata.generation,
            &now(),
        ),
        observed_generation: org.metadata.generation,
        home_namespace: Some(org.home_namespace()),
        ..current.clone()
    };
    if let Some(counts) = counts {
        status.members = counts.members as i32;
        status.owners = counts.owners as i32;
        if let Some(pending) = counts.pending {
            status.pending_invitations = pending as i32;
        }
        status.resources = counts
            .resources
            .iter()
            .map(|(t, list)| (t.clone(), list.len() as i32))
            .collect();
        status.groups = counts.groups.to_vec();
    }
    write_if_changed(
        &Api::all(ctx.client.clone()),
        &ctx.metrics,
        "organizations",
        org,
        org.status.as_ref() == Some(&status),
        &status,
    )
    .await?;
    Ok(())
}

/// Creates the home namespace (owned by the Organization, so it goes with it), or uses
/// an existing one only when a cluster admin marked it for this organization (the
/// `kube-org.io/organization=<org>` label): anyone who may create namespaces could
/// otherwise pre-create `org-<name>`, keep their own RoleBindings there and write
/// kube-org objects into it. Returns why the organization cannot use it, if so.
async fn ensure_home_namespace(
    org: &Organization,
    ctx: &Context,
) -> Result<Option<PolicyRefusal>, Error> {
    let home = org.home_namespace();
    let name = org.name_any();
    let api: Api<Namespace> = Api::all(ctx.client.clone());
    let cached = ctx
        .stores
        .namespaces
        .get(&kube::runtime::reflector::ObjectRef::new(&home))
        .map(|ns| (*ns).clone());
    let existing = match cached {
        Some(ns) => Some(ns),
        None => api.get_opt(&home).await?,
    };
    if let Some(ns) = existing {
        return Ok(home_refusal(org, &ns));
    }
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(home.clone()),
            labels: Some(BTreeMap::from([(
                LABEL_ORGANIZATION.to_string(),
                name.clone(),
            )])),
            owner_references: org.controller_owner_ref(&()).map(|o| vec![o]),
            ..Default::default()
        },
        ..Default::default()
    };
    ctx.metrics.write("namespaces", "create");
    match api.create(&PostParams::default(), &ns).await {
        Ok(_) => {}
        // Someone created it meanwhile (a twin organization, a squatter): whose is it?
        Err(kube::Error::Api(status)) if status.code == 409 => {
            return match api.get_opt(&home).await? {
                Some(ns) => Ok(home_refusal(org, &ns)),
                None => Ok(None),
            };
        }
        Err(error) => return Err(error.into()),
    }
    info!(organization = %name, namespace = %home, "created home namespace");
    publish(
        ctx,
        org,
        EventType::Normal,
        "HomeNamespaceCreated",
        &format!("created namespace {home}"),
    )
    .await;
    Ok(None)
}

/// The Membership and organization-owner RoleBinding each `spec.owners` email implies.
pub fn owner_objects(
    org: &Organization,
    existing: &[Arc<Membership>],
) -> (Vec<Membership>, Vec<RoleBinding>) {
    let home = org.home_namespace();
    let mut labels = managed_labels(&org.name_any());
    labels.insert(LABEL_OWNER.to_string(), "true".to_string());
    let meta = |name: String| ObjectMeta {
        name: Some(name),
        namespace: Some(home.clone()),
        labels: Some(labels.clone()),
        owner_references: org.controller_owner_ref(&()).map(|o| vec![o]),
        ..Default::default()
    };
    let mut emails: Vec<String> = org.spec.owners.iter().map(Email::normalized).collect();
    emails.sort();
    emails.dedup();
    let memberships = emails
        .iter()
        .filter(|email| {
            !existing.iter().any(|m| {
                m.spec.email.normalized() == **email && !m.labels().contains_key(LABEL_OWNER)
            })
        })
        .map(|email| Membership {
            metadata: meta(person_object_name("owner", email)),
            spec: MembershipSpec {
                email: Email(email.clone()),
                user: None,
            },
            status: None,
        })
        .collect();
    let bindings = emails
        .iter()
        .map(|email| RoleBinding {
            metadata: meta(person_object_name("owner", email)),
            spec: RoleBindingSpec {
                member: Email(email.clone()),
                role: ORGANIZATION_OWNER.to_string(),
                scope: Scope::organization(),
                access: Default::default(),
                expires_at: None,
            },
            status: None,
        })
        .collect();
    (memberships, bindings)
}

/// Applies the owner objects that are missing or differ; deletes owner bindings for
/// emails no longer in `spec.owners` (other roles the person holds stay).
async fn ensure_owners(
    org: &Organization,
    ctx: &Context,
    snapshot: &Snapshot,
) -> Result<(Vec<Membership>, Vec<RoleBinding>), Error> {
    let (memberships, bindings) = owner_objects(org, &snapshot.memberships);
    for m in &memberships {
        let cached = snapshot
            .memberships
            .iter()
            .find(|c| c.name_any() == m.name_any());
        if cached.is_none_or(|c| c.spec != m.spec || c.owner_references() != m.owner_references()) {
            apply::apply(&namespaced(ctx, m), &ctx.metrics, "memberships", m).await?;
        }
    }
    for b in &bindings {
        let cached = snapshot
            .bindings
            .iter()
            .find(|c| c.name_any() == b.name_any());
        // An expiresAt someone set on it is ignored, not fought over.
        let spec = |c: &RoleBinding| RoleBindingSpec {
            expires_at: None,
            ..c.spec.clone()
        };
        if cached.is_none_or(|c| spec(c) != b.spec || c.owner_references() != b.owner_references())
        {
            apply::apply(
                &namespaced(ctx, b),
                &ctx.metrics,
                "rolebindings.kube-org.io",
                b,
            )
            .await?;
        }
    }
    for stale in snapshot
        .bindings
        .iter()
        .filter(|b| b.labels().contains_key(LABEL_OWNER))
    {
        if !bindings.iter().any(|b| b.name_any() == stale.name_any())
            && stale.meta().deletion_timestamp.is_none()
        {
            apply::delete(
                &namespaced(ctx, stale.as_ref()),
                &ctx.metrics,
                "rolebindings.kube-org.io",
                &stale.name_any(),
            )
            .await?;
            info!(organization = %org.name_any(), member = %stale.spec.member, "owner removed from spec.owners; owner binding deleted");
        }
    }
    Ok((memberships, bindings))
}

/// The API of a namespaced kube-org object's kind, in its namespace.
pub(super) fn namespaced<K>(ctx: &Context, obj: &K) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default())
}

/// How long a pass writes native RBAC at least before an urgent change may cut it short
/// (longer when planning took longer, so that a stream of changes still lets each pass
/// write at least as long as it planned).
const WRITE_SLICE: Duration = Duration::from_millis(250);

/// How long a reconcile waits for the caches to show its organization's last native
/// writes before it compares with them anyway (at worst writing an object again).
const UNSEEN_ACCESS_WAIT: Duration = Duration::from_secs(10);

/// Waits until the native RBAC caches show the writes the last pass made for
/// organization `name` (see [`super::unseen`]), for at most [`UNSEEN_ACCESS_WAIT`].
async fn wait_for_own_access_writes(ctx: &Context, name: &str) {
    let stores = &ctx.stores;
    let cached = |resource: &'static str, namespace: &str, name: &str| match resource {
        <DesiredRoleBinding as Managed>::RESOURCE => {
            cached_version(&stores.native_bindings, namespace, name)
        }
        <ClusterRole as WholeObject>::RESOURCE => {
            cached_version(&stores.cluster_roles, namespace, name)
        }
        <ClusterRoleBinding as WholeObject>::RESOURCE => {
            cached_version(&stores.cluster_role_bindings, namespace, name)
        }
        _ => None,
    };
    ctx.unseen_access
        .wait_or_warn(name, UNSEEN_ACCESS_WAIT, "RBAC", cached)
        .await;
}

/// The resourceVersion of the cached copy of `namespace/name` (no namespace: a
/// cluster-scoped object).
pub(super) fn cached_version<K>(store: &Store<K>, namespace: &str, name: &str) -> Option<String>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    let key = ObjectRef::new(name);
    let key = if namespace.is_empty() {
        key
    } else {
        key.within(namespace)
    };
    store.get(&key).and_then(|obj| obj.resource_version())
}

/// Runs independent writes with bounded concurrency and keeps what each returned;
/// fails on the first error. `writes` is consumed lazily: a write's future exists only
/// while it runs (a few KB each, times 10,000 Memberships when collected up front).
pub(super) async fn all_ok<T, F>(writes: impl IntoIterator<Item = F>) -> Result<Vec<T>, Error>
where
    F: std::future::Future<Output = Result<T, Error>>,
{
    use futures::{StreamExt, TryStreamExt};
    futures::stream::iter(writes)
        .buffer_unordered(super::WRITE_CONCURRENCY)
        .try_collect()
        .await
}

/// Deleting an Organization: garbage collection removes what it owns (home namespace
/// if created, native bindings, its ClusterRole); Membership finalizers are released so
/// nothing hangs.
async fn cleanup(org: &Organization, ctx: &Context) -> Result<Action, Error> {
    ctx.bound
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&org.name_any());
    ctx.urgent.forget(&org.name_any());
    let home = ctx
        .stores
        .namespaces
        .get(&kube::runtime::reflector::ObjectRef::new(
            &org.home_namespace(),
        ));
    if home.is_some_and(|ns| belongs_to_another(ctx, org, &ns)) {
        // A refused twin: the namespace and its Memberships are another organization's.
        return Ok(Action::await_change());
    }
    ctx.unseen_statuses.forget(&org.home_namespace());
    ctx.unseen_access.forget(&org.name_any());
    // Read from the API server, not the cache: a status worker may have put a
    // finalizer on a Membership a moment ago.
    let api: Api<Membership> = Api::namespaced(ctx.client.clone(), &org.home_namespace());
    let memberships = api.list(&Default::default()).await?;
    release_membership_finalizers(ctx, &memberships.items).await?;
    info!(organization = %org.name_any(), "organization deleted; its objects go with it");
    Ok(Action::await_change())
}

/// Whether `ns` is the home of another existing Organization (so `org` is its refused
/// twin). A label naming no Organization (or `org`) leaves the namespace to `org`.
fn belongs_to_another(ctx: &Context, org: &Organization, ns: &Namespace) -> bool {
    let Some(marked) = ns.labels().get(LABEL_ORGANIZATION) else {
        return false;
    };
    marked != &org.name_any()
        && ctx
            .stores
            .organizations
            .get(&kube::runtime::reflector::ObjectRef::new(marked))
            .is_some_and(|other| other.home_namespace() == ns.name_any())
}

/// Publishes an Event about `obj`; a failure to publish is logged, never fatal.
pub(super) async fn publish<K: Resource<DynamicType = ()>>(
    ctx: &Context,
    obj: &K,
    type_: EventType,
    reason: &str,
    note: &str,
) {
    publish_to(ctx, &obj.object_ref(&()), type_, reason, note).await;
}

pub(super) async fn publish_to(
    ctx: &Context,
    object: &k8s_openapi::api::core::v1::ObjectReference,
    type_: EventType,
    reason: &str,
    note: &str,
) {
    ctx.events
        .publish(object, type_, reason, note, "Reconcile")
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_failed_writes_in_any_order_give_the_same_problems() {
        let org: Organization = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "acme"}, "spec": {"owners": ["a@example.com"]},
        }))
        .unwrap();
        let failure = |ns: &str| super::super::apply::SyncFailure {
            namespace: Some(ns.to_string()),
            name: "kube-org:acme:view".to_string(),
            error: format!("denied in {ns}"),
        };
        let failures = [failure("acme-c"), failure("acme-a"), failure("acme-b")];
        let problems = |failures: &[super::super::apply::SyncFailure]| {
            let mut desired = crate::access::desired::nothing_for(&org);
            desired.bindings.insert(
                "all".to_string(),
                crate::access::desired::BindingOutcome {
                    scope: "deployment/*".to_string(),
                    resources: ["acme-a", "acme-b", "acme-c", "acme-d"]
                        .map(String::from)
                        .into(),
                    problems: vec![],
                    ready: DesiredCondition::new(READY, true, "Granted", "granted"),
                    expired_at: None,
                },
            );
            report_failed_targets(&mut desired, failures);
            let outcome = &desired.bindings["all"];
            assert_eq!(outcome.ready.reason, SYNC_FAILED);
            outcome
                .problems
                .iter()
                .map(|p| p.resource.clone())
                .collect::<Vec<_>>()
        };
        let mut reversed = failures.clone();
        reversed.reverse();
        assert_eq!(problems(&failures), ["acme-a", "acme-b", "acme-c"]);
        assert_eq!(problems(&reversed), problems(&failures));
    }

    #[test]
    fn an_expiry_is_waited_for_to_the_millisecond_and_a_far_one_a_day_at_a_time() {
        let in_ms = |ms: i64| {
            Some(
                k8s_openapi::jiff::Timestamp::now()
                    + k8s_openapi::jiff::SignedDuration::from_millis(ms),
            )
        };
        let wait = |action: Action| format!("{action:?}");
        assert_eq!(wait(by_expiry(None, None)), wait(Action::await_change()));
        assert_eq!(
            wait(by_expiry(None, in_ms(-5_000))),
            wait(Action::requeue(Duration::from_millis(1))),
            "passed already: at once"
        );
        assert_eq!(
            wait(by_expiry(Some(Duration::ZERO), in_ms(60_000))),
            wait(Action::requeue(Duration::ZERO))
        );
        // 2099 is a day away as far as the timer queue is concerned.
        assert_eq!(
            wait(by_expiry(None, in_ms(80 * 365 * 24 * 3_600_000))),
            wait(Action::requeue(FAR_EXPIRY_STEP))
        );
        assert_eq!(
            wait(by_expiry(
                Some(SYNC_RETRY),
                in_ms(80 * 365 * 24 * 3_600_000)
            )),
            wait(Action::requeue(SYNC_RETRY))
        );
    }
}
