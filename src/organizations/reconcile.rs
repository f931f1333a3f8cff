//! One reconcile per Organization, as named steps: dereference (read the caches) ->
//! home namespace -> owners -> compute (pure) -> apply native RBAC -> members leaving ->
//! status.

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
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{self, finalizer};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Resource, ResourceExt};
use tracing::{info, warn};

use super::apply::{self, Managed, WholeObject, Writer, sync};
use super::status::write_if_changed;
use super::status_queue::StatusPlan;
use super::unseen::Written;
use super::{Context, Error};
use crate::access::desired::{BindingOutcome, DesiredAccess};
use crate::access::home::home_refusal;
use crate::access::leave::{LeaveRefusal, held_on_leaving, owner_emails};
use crate::access::names::{
    ANNOTATION_SOURCE, LABEL_ORGANIZATION, LABEL_OWNER, MEMBERSHIP_FINALIZER, managed_labels,
    person_object_name,
};
use crate::access::policy::{PolicyRefusal, orphaned_bindings};
use crate::api::condition::{DesiredCondition, READY, merge_conditions};
use crate::api::invitation::InvitationPhase;
use crate::api::membership::{AccessGroup, MembershipStatus};
use crate::api::organization::OrganizationStatus;
use crate::api::rolebinding::RoleBindingStatus;
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
struct Snapshot {
    memberships: Vec<Arc<Membership>>,
    bindings: Vec<Arc<RoleBinding>>,
    namespaces: Vec<Arc<Namespace>>,
    native_bindings: Vec<Arc<CachedRoleBinding>>,
    cluster_roles: Vec<Arc<ClusterRole>>,
    cluster_role_bindings: Vec<Arc<ClusterRoleBinding>>,
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

fn now() -> Time {
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
    note_bound(ctx, &name, &snapshot, &desired);
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
    // Only owners' Memberships are held (`held_on_leaving`); counted from every binding
    // the plan read, expired ones too (one finalizer too many costs nothing later).
    let owner_set = owner_emails(&bindings);
    let lacking_finalizer: Vec<&Arc<Membership>> = snapshot
        .memberships
        .iter()
        .filter(|m| !holds_finalizer(m) && held_on_leaving(org, &owner_set, m))
        .collect();
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
    delete_orphaned_bindings(org, ctx, &snapshot, &memberships, &desired).await?;
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

/// The uids of the cached RoleBindings `desired` evaluated for a present member.
fn bound_for_present_members(
    snapshot: &Snapshot,
    desired: &DesiredAccess,
) -> std::collections::HashSet<String> {
    snapshot
        .bindings
        .iter()
        .filter(|b| {
            desired
                .bindings
                .get(&b.name_any())
                .is_some_and(|o| crate::access::policy::for_present_member(&o.ready.reason))
        })
        .filter_map(|b| b.metadata.uid.clone())
        .collect()
}

/// Adds what this plan evaluated for a present member to [`Context::bound`] as soon as
/// it is planned, before any status it decides is written: a RoleBinding's first status
/// saying so then wakes nobody ([`super::triggers`]; noted only at the end of the pass,
/// the 1,000 first statuses of a cold start woke 170 passes at 1,000 members). Added,
/// not replaced: a pass cut short must not drop what an earlier plan knew before the
/// orphan rule used it.
fn note_bound(ctx: &Context, org: &str, snapshot: &Snapshot, desired: &DesiredAccess) {
    let bound_now = bound_for_present_members(snapshot, desired);
    let mut bound = ctx.bound.lock().unwrap_or_else(|p| p.into_inner());
    bound.entry(org.to_string()).or_default().extend(bound_now);
}

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

/// Deletes the RoleBindings of members whose Membership went away before kube-org's
/// finalizer was on it (see [`orphaned_bindings`]).
async fn delete_orphaned_bindings(
    org: &Organization,
    ctx: &Context,
    snapshot: &Snapshot,
    memberships: &[&Membership],
    desired: &DesiredAccess,
) -> Result<(), Error> {
    let bindings: Vec<&RoleBinding> = snapshot.bindings.iter().map(|b| b.as_ref()).collect();
    // What this plan evaluated for a present member replaces what the last one did
    // (and what this one noted early, [`note_bound`]).
    let bound_now = bound_for_present_members(snapshot, desired);
    let bound_before = {
        let mut bound = ctx.bound.lock().unwrap_or_else(|p| p.into_inner());
        bound.insert(org.name_any(), bound_now).unwrap_or_default()
    };
    let mut gone = BTreeSet::new();
    for orphan in orphaned_bindings(&bindings, memberships, &bound_before) {
        apply::delete(
            &namespaced(ctx, orphan),
            &ctx.metrics,
            "rolebindings.kube-org.io",
            &orphan.name_any(),
        )
        .await?;
        info!(organization = %org.name_any(), member = %orphan.spec.member, binding = %orphan.name_any(), "member gone; their RoleBinding deleted");
        gone.insert(orphan.spec.member.normalized());
    }
    // A member whose Membership went without kube-org's finalizer (not an owner) is
    // told about as one released by it.
    for email in gone {
        publish_member_removed(ctx, org, &email).await;
    }
    Ok(())
}

/// The Event of a member who left: one per member (a bulk removal is rare; each is
/// something an owner asks "who removed whom").
async fn publish_member_removed(ctx: &Context, org: &Organization, email: &str) {
    info!(organization = %org.name_any(), member = %email, "member left; access revoked");
    publish(
        ctx,
        org,
        EventType::Normal,
        "MemberRemoved",
        &format!("{email} left the organization; their access is revoked"),
    )
    .await;
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
async fn give_back_claim(ctx: &Context, org: &Organization, email: &str) -> Result<(), Error> {
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
fn namespaced<K>(ctx: &Context, obj: &K) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default())
}

/// How long a pass writes native RBAC at least before an urgent change may cut it short
/// (longer when planning took longer, so that a stream of changes still lets each pass
/// write at least as long as it planned).
const WRITE_SLICE: Duration = Duration::from_millis(250);

/// Puts kube-org's finalizer on every Membership so that deleting one first revokes
/// access and checks the last-owner rule: a few at a time, until done or until a change
/// the next reconcile must see ([`super::triggers::Urgent`]: the count differs from
/// `urgent_before`; or the Organization changed). Returns whether some are left for the
/// next reconcile.
///
/// A cold start adds one per member. The stream used to end at a deadline as well
/// (half the time the pass took so far), from before urgent changes could end it: at
/// 10,000 members each pass then planned for 10-28 s to patch for half that, and the
/// finalizers took three minutes, two of them planning.
async fn ensure_membership_finalizers(
    ctx: &Context,
    org: &Organization,
    missing: &[&Arc<Membership>],
    urgent_before: u64,
) -> Result<bool, Error> {
    // A change that may change access since the pass began (a deleted binding, a new
    // namespace, a member removed, the Organization edited or deleted) ends the stream
    // early: the reconcile it queued comes next. Checked before each write starts
    // (`WRITE_CONCURRENCY` run at once; those under way finish), so there is no batch
    // to wait for.
    let name = org.name_any();
    let mut tried = 0;
    // By index (see `apply::sync`).
    let writes = (0..missing.len())
        .map_while(|i| {
            let stop = tried > 0
                && (ctx.urgent.count(&name) != urgent_before || organization_changed(ctx, org));
            tried += usize::from(!stop);
            (!stop).then_some(i)
        })
        // The copy the cache holds now, not the snapshot's: a status written since
        // changed its resourceVersion, or an earlier pass's patch added the finalizer.
        .filter_map(|i| {
            ctx.stores
                .memberships
                .get(&ObjectRef::from_obj(missing[i].as_ref()))
        })
        .filter(|m| !holds_finalizer(m))
        .map(|m| async move {
            let mut finalizers = m.finalizers().to_vec();
            finalizers.push(MEMBERSHIP_FINALIZER.to_string());
            patch_finalizers(ctx, &m, finalizers).await
        });
    let applied = all_ok(writes).await?;
    let stale = applied.iter().filter(|a| **a == Applied::Stale).count();
    if tried > 0 {
        let added = applied.iter().filter(|a| **a == Applied::Yes).count();
        tracing::debug!(organization = %org.name_any(), count = added, stale, "added Membership finalizers");
    }
    // A copy found out of date (a status write changed it meanwhile, and status writes
    // wake nobody: `super::triggers`) is tried again by the next pass.
    Ok(tried < missing.len() || stale > 0)
}

/// Whether the cached Organization is no longer the one this pass reconciles: its
/// spec changed (a new generation), it is being deleted, or it is gone.
fn organization_changed(ctx: &Context, org: &Organization) -> bool {
    ctx.stores
        .organizations
        .get(&ObjectRef::from_obj(org))
        .is_none_or(|cached| {
            cached.metadata.generation != org.metadata.generation
                || cached.metadata.deletion_timestamp.is_some()
        })
}

/// Removes kube-org's finalizer from a Membership. Releasing must happen: one that met
/// a changed copy is an error, so the reconcile is retried.
async fn release_finalizer(ctx: &Context, m: &Membership) -> Result<(), Error> {
    let finalizers = m
        .finalizers()
        .iter()
        .filter(|f| *f != MEMBERSHIP_FINALIZER)
        .cloned()
        .collect();
    if patch_finalizers(ctx, m, finalizers).await? == Applied::Stale {
        return Err(Error::Finalizer(format!(
            "the finalizers of Membership {} changed meanwhile; releasing again",
            m.name_any()
        )));
    }
    Ok(())
}

/// Sets a Membership's finalizers to `finalizers`, guarded by a JSON Patch test.
/// Removing kube-org's finalizer is guarded by the finalizers read (status writes may
/// have happened meanwhile; removing is always right). Adding it is guarded by the
/// resourceVersion read as well: a copy that is out of date (another operator's
/// Organization cleanup just released this Membership) must not put it back. A failed
/// test is reported as [`Applied::Stale`]: adding is tried again by the next pass,
/// while releasing (which must happen) retries as an error.
async fn patch_finalizers(
    ctx: &Context,
    m: &Membership,
    finalizers: Vec<String>,
) -> Result<Applied, Error> {
    let api = namespaced(ctx, m);
    let adding = finalizers.len() > m.finalizers().len();
    let read = adding.then(|| m.resource_version()).flatten();
    let ops = finalizer_patch(m.finalizers(), &finalizers, read.as_deref());
    let patch = Patch::<()>::Json(
        serde_json::from_value(ops).map_err(|e| Error::Finalizer(e.to_string()))?,
    );
    ctx.metrics.write("memberships", "patch");
    match api
        .patch_metadata(&m.name_any(), &PatchParams::default(), &patch)
        .await
    {
        Ok(_) => Ok(Applied::Yes),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(Applied::Gone),
        Err(kube::Error::Api(status)) if [409, 422].contains(&status.code) => Ok(Applied::Stale),
        Err(error) => Err(error.into()),
    }
}

/// What a guarded finalizer patch did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Applied {
    Yes,
    /// The Membership is gone: nothing is left to hold.
    Gone,
    /// The copy read was out of date: adding is tried again by the next pass.
    Stale,
}

/// The JSON Patch that turns finalizers `current` into `wanted` only if they are still
/// `current` (and, given, the object is still at `resource_version`).
fn finalizer_patch(
    current: &[String],
    wanted: &[String],
    resource_version: Option<&str>,
) -> serde_json::Value {
    let mut ops = Vec::new();
    if let Some(version) = resource_version {
        ops.push(serde_json::json!({"op": "test", "path": "/metadata/resourceVersion", "value": version}));
    }
    if current.is_empty() {
        ops.push(serde_json::json!({"op": "add", "path": "/metadata/finalizers", "value": wanted}));
    } else {
        ops.push(
            serde_json::json!({"op": "test", "path": "/metadata/finalizers", "value": current}),
        );
        ops.push(
            serde_json::json!({"op": "replace", "path": "/metadata/finalizers", "value": wanted}),
        );
    }
    serde_json::Value::Array(ops)
}

/// The Memberships being deleted whose member may not leave yet, with the reason.
/// Members whose Membership is being deleted: those allowed to leave already lost their
/// access (the computation left them out); delete their RoleBindings and let the
/// Membership go. Those refused get an Event (once per reason).
async fn release_leaving_members(
    org: &Organization,
    ctx: &Context,
    memberships: &[&Membership],
    bindings: &[&RoleBinding],
    refusals: &BTreeMap<String, LeaveRefusal>,
) -> Result<(), Error> {
    for leaving in memberships.iter().filter(|m| {
        m.meta().deletion_timestamp.is_some()
            && m.finalizers().iter().any(|f| f == MEMBERSHIP_FINALIZER)
    }) {
        let email = leaving.spec.email.normalized();
        match refusals.get(&leaving.name_any()).map_or(Ok(()), Err) {
            Ok(()) => {
                for b in bindings
                    .iter()
                    .filter(|b| b.spec.member.normalized() == email)
                {
                    apply::delete(
                        &namespaced(ctx, *b),
                        &ctx.metrics,
                        "rolebindings.kube-org.io",
                        &b.name_any(),
                    )
                    .await?;
                }
                release_finalizer(ctx, leaving).await?;
                // Exclusive membership: the person is free to join elsewhere at once.
                let stays = memberships.iter().any(|m| {
                    m.meta().deletion_timestamp.is_none() && m.spec.email.normalized() == email
                });
                let claimed = ctx
                    .stores
                    .claims
                    .get(
                        &kube::runtime::reflector::ObjectRef::new(&crate::exclusive::claim_name(
                            &email,
                        ))
                        .within(&ctx.claims_namespace),
                    )
                    .and_then(|lease| crate::exclusive::cached_holder(&lease))
                    .is_some_and(|(_, holder)| holder.organization == org.name_any());
                if !stays && claimed {
                    give_back_claim(ctx, org, &email).await?;
                }
                publish_member_removed(ctx, org, &email).await;
            }
            Err(refusal) => {
                if leaving
                    .status
                    .as_ref()
                    .is_none_or(|s| !s.conditions.iter().any(|c| c.reason == refusal.reason()))
                {
                    warn!(organization = %org.name_any(), member = %email, reason = refusal.reason(), "member may not leave yet");
                    publish(
                        ctx,
                        *leaving,
                        EventType::Warning,
                        refusal.reason(),
                        &refusal.to_string(),
                    )
                    .await;
                }
            }
        }
    }
    Ok(())
}

/// Writes the statuses of a plan ([`super::status_queue`]) against the objects as the
/// cache holds them now.
pub async fn write_statuses(plan: &StatusPlan, ctx: &Context) -> Result<(), Error> {
    let org = plan.org.as_ref();
    wait_for_own_status_writes(ctx, &org.home_namespace()).await;
    let index = &ctx.stores.index;
    let home = Key::Namespace(org.home_namespace());
    let bindings = index.bindings.get(&home);
    let memberships = if plan.memberships {
        index.memberships.get(&home)
    } else {
        Vec::new()
    };
    futures::try_join!(
        write_binding_statuses(org, ctx, &bindings, &plan.desired),
        write_membership_statuses(org, ctx, &memberships, &plan.desired, &plan.refusals)
    )
    .map(|_| ())
}

/// The resource names status writes are remembered under ([`super::unseen`]).
const MEMBERSHIPS: &str = "memberships";
const BINDINGS: &str = "rolebindings.kube-org.io";

/// How long a status pass waits for the caches to show the previous pass's writes
/// before it compares with them anyway (at worst writing a status again).
const UNSEEN_STATUSES_WAIT: Duration = Duration::from_secs(30);

/// Waits until the Membership and RoleBinding caches show the status writes made in
/// `namespace` (see [`super::unseen`]), for at most [`UNSEEN_STATUSES_WAIT`].
async fn wait_for_own_status_writes(ctx: &Context, namespace: &str) {
    let stores = &ctx.stores;
    let cached = |resource: &'static str, namespace: &str, name: &str| match resource {
        MEMBERSHIPS => cached_version(&stores.memberships, namespace, name),
        BINDINGS => cached_version(&stores.bindings, namespace, name),
        // Nothing else is recorded; were it, it would not be waited for.
        _ => None,
    };
    let unseen = ctx
        .unseen_statuses
        .wait(namespace, UNSEEN_STATUSES_WAIT, cached)
        .await;
    if unseen > 0 {
        warn!(%namespace, unseen, "the caches do not show this operator's last status writes; comparing with them anyway");
    }
}

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
    let unseen = ctx
        .unseen_access
        .wait(name, UNSEEN_ACCESS_WAIT, cached)
        .await;
    if unseen > 0 {
        warn!(organization = %name, unseen, "the caches do not show this operator's last RBAC writes; comparing with them anyway");
    }
}

/// The resourceVersion of the cached copy of `namespace/name` (no namespace: a
/// cluster-scoped object).
fn cached_version<K>(store: &Store<K>, namespace: &str, name: &str) -> Option<String>
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

/// Whether a Membership needs no finalizer added: it holds kube-org's, or is being
/// deleted (none can be added then).
fn holds_finalizer(m: &Membership) -> bool {
    m.meta().deletion_timestamp.is_some()
        || m.finalizers().iter().any(|f| f == MEMBERSHIP_FINALIZER)
}

async fn write_binding_statuses<'a>(
    org: &Organization,
    ctx: &'a Context,
    cached: &'a [Arc<RoleBinding>],
    desired: &'a DesiredAccess,
) -> Result<(), Error> {
    // By index (see `apply::sync`).
    let writes = (0..cached.len()).filter_map(move |i| {
        let binding = &cached[i];
        let outcome = desired.bindings.get(&binding.name_any())?;
        Some(write_binding_status(ctx, binding, outcome))
    });
    let transitions: Vec<Transition> = all_ok(writes).await?.into_iter().flatten().collect();
    publish_transitions(ctx, org, "RoleBinding", transitions).await;
    Ok(())
}

/// Runs independent writes with bounded concurrency and keeps what each returned;
/// fails on the first error. `writes` is consumed lazily: a write's future exists only
/// while it runs (a few KB each, times 10,000 Memberships when collected up front).
async fn all_ok<T, F>(writes: impl IntoIterator<Item = F>) -> Result<Vec<T>, Error>
where
    F: std::future::Future<Output = Result<T, Error>>,
{
    use futures::{StreamExt, TryStreamExt};
    futures::stream::iter(writes)
        .buffer_unordered(super::WRITE_CONCURRENCY)
        .try_collect()
        .await
}

/// An object whose Ready condition changed in this reconcile: announced by an Event.
#[derive(Debug)]
struct Transition {
    object: k8s_openapi::api::core::v1::ObjectReference,
    name: String,
    type_: EventType,
    reason: String,
    note: String,
}

/// At most this many objects get an Event each per reconcile; a larger change is one
/// Event on the Organization that summarises it (no Event storm on a bulk change).
const EVENTS_PER_RECONCILE: usize = 5;

/// Publishes the Ready transitions of one reconcile (see [`summarise`]).
async fn publish_transitions(
    ctx: &Context,
    org: &Organization,
    kind: &str,
    transitions: Vec<Transition>,
) {
    for event in summarise(&org.object_ref(&()), kind, transitions) {
        publish_to(ctx, &event.object, event.type_, &event.reason, &event.note).await;
    }
}

/// The Events for one reconcile's Ready transitions: one per object for a few, one on
/// the Organization for many (counts per reason, a few names each).
fn summarise(
    organization: &k8s_openapi::api::core::v1::ObjectReference,
    kind: &str,
    transitions: Vec<Transition>,
) -> Vec<Transition> {
    if transitions.len() <= EVENTS_PER_RECONCILE {
        return transitions;
    }
    let warning = transitions.iter().any(|t| t.type_ == EventType::Warning);
    let mut by_reason: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for t in &transitions {
        by_reason.entry(&t.reason).or_default().push(&t.name);
    }
    let parts: Vec<String> = by_reason
        .iter()
        .map(|(reason, names)| {
            let shown: Vec<&str> = names.iter().take(3).copied().collect();
            let more = names.len().saturating_sub(shown.len());
            let tail = if more > 0 {
                format!(", +{more}")
            } else {
                String::new()
            };
            format!("{reason} {} ({}{tail})", names.len(), shown.join(", "))
        })
        .collect();
    vec![Transition {
        object: organization.clone(),
        name: organization.name.clone().unwrap_or_default(),
        type_: if warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: format!("{kind}sChanged"),
        note: format!(
            "{} {kind}s changed: {}",
            transitions.len(),
            parts.join("; ")
        ),
    }]
}

/// One binding's status; its Ready transition, if any (for an Event).
async fn write_binding_status(
    ctx: &Context,
    binding: &RoleBinding,
    outcome: &BindingOutcome,
) -> Result<Option<Transition>, Error> {
    let current = binding.status.clone().unwrap_or_default();
    let mut status = RoleBindingStatus {
        conditions: merge_conditions(
            &current.conditions,
            std::slice::from_ref(&outcome.ready),
            binding.metadata.generation,
            &now(),
        ),
        observed_generation: binding.metadata.generation,
        scope: Some(outcome.scope.clone()),
        // Copied below only if the status is written.
        resources: Vec::new(),
        problems: outcome.problems.clone(),
        expired_at: outcome.expired_at.clone(),
    };
    let unchanged = binding.has_status(&status, &outcome.resources);
    if !unchanged {
        status.resources = outcome.resources.to_vec();
    }
    let ready_before = current.conditions.iter().find(|c| c.type_ == READY);
    let changed_ready = ready_before.is_none_or(|c| {
        (c.status == "True") != outcome.ready.status || c.reason != outcome.ready.reason
    });
    let wrote = write_status(ctx, BINDINGS, binding, unchanged, &status).await?;
    if !(wrote && changed_ready) {
        return Ok(None);
    }
    let (type_, reason) = if outcome.ready.status {
        (EventType::Normal, "Granted")
    } else if outcome.ready.reason == crate::access::desired::EXPIRED {
        // The end that was asked for, not a problem.
        (EventType::Normal, crate::access::desired::EXPIRED)
    } else {
        (EventType::Warning, outcome.ready.reason.as_str())
    };
    Ok(Some(Transition {
        object: binding.object_ref(&()),
        name: binding.name_any(),
        type_,
        reason: reason.to_string(),
        note: outcome.ready.message.clone(),
    }))
}

/// A RoleBinding's or Membership's status write (unless `unchanged`), started once no
/// reconcile is writing native RBAC ([`super::priority`]).
async fn write_status<K, S>(
    ctx: &Context,
    resource: &'static str,
    obj: &K,
    unchanged: bool,
    status: &S,
) -> Result<bool, Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    S: serde::Serialize,
{
    if !unchanged {
        ctx.access_first.clear().await;
    }
    let reply = write_if_changed(
        &namespaced(ctx, obj),
        &ctx.metrics,
        resource,
        obj,
        unchanged,
        status,
    )
    .await?;
    let Some(reply) = reply else {
        return Ok(false);
    };
    let namespace = obj.namespace().unwrap_or_default();
    ctx.unseen_statuses.record(
        &namespace,
        Written {
            resource,
            namespace: &namespace,
            name: &obj.name_any(),
            read: obj.resource_version(),
            made: reply.metadata.resource_version,
        },
    );
    Ok(true)
}

fn membership_source(m: &Membership) -> String {
    if let Some(source) = m.annotations().get(ANNOTATION_SOURCE) {
        source.clone()
    } else if m.labels().contains_key(LABEL_OWNER) {
        "Owner".to_string()
    } else {
        "Declared".to_string()
    }
}

async fn write_membership_statuses<'a>(
    org: &'a Organization,
    ctx: &'a Context,
    cached: &'a [Arc<Membership>],
    desired: &'a DesiredAccess,
    refusals: &'a BTreeMap<String, LeaveRefusal>,
) -> Result<(), Error> {
    // By index (see `apply::sync`).
    let writes = (0..cached.len()).filter_map(move |i| {
        let m = &cached[i];
        let name = m.name_any();
        let listed = refusals.contains_key(&name)
            || desired.refused.contains_key(&name)
            || desired.members.contains_key(&name);
        if !listed && m.meta().deletion_timestamp.is_some() {
            return None;
        }
        // Built when its write starts (a few at a time): a member's access list has an
        // entry per resource namespace.
        let status_of = move || {
            let outcome = desired.members.get(&name).cloned().unwrap_or_default();
            let access = desired.access_of(&outcome.user);
            let ready = if let Some(refusal) = refusals.get(&name) {
                DesiredCondition::new(READY, false, refusal.reason(), refusal.to_string())
            } else if let Some(refusal) = desired.refused.get(&name) {
                DesiredCondition::new(READY, false, refusal.reason, refusal.message.clone())
            } else if desired.members.contains_key(&name) {
                DesiredCondition::new(
                    READY,
                    true,
                    "Active",
                    format!(
                        "member of {} as {} with {} role(s) in {} resource(s)",
                        org.name_any(),
                        outcome.user,
                        outcome.roles.len(),
                        access.len()
                    ),
                )
            } else {
                DesiredCondition::new(
                    READY,
                    false,
                    "DuplicateMember",
                    format!(
                        "another Membership of {} already has {}; this one grants nothing",
                        org.name_any(),
                        m.spec.email
                    ),
                )
            };
            let current = m.status.clone().unwrap_or_default();
            // A policy refusal is announced once, when it starts.
            let refusal = desired
                .refused
                .get(&name)
                .filter(|r| {
                    !current
                        .conditions
                        .iter()
                        .any(|c| c.type_ == READY && c.reason == r.reason)
                })
                .cloned();
            let status = MembershipStatus {
                conditions: merge_conditions(
                    &current.conditions,
                    &[ready],
                    m.metadata.generation,
                    &now(),
                ),
                observed_generation: m.metadata.generation,
                joined_at: m.metadata.creation_timestamp.clone(),
                source: Some(membership_source(m)),
                // The name bound (none while the membership grants nothing); who signed
                // in to accept is written once by the accept endpoint and kept.
                user: desired.members.get(&name).map(|o| o.user.clone()),
                subject: current.subject.clone(),
                roles: outcome.roles,
                access: AccessGroup::group(access),
            };
            (status, refusal)
        };
        Some(async move {
            let (status, refusal) = status_of();
            write_status(ctx, MEMBERSHIPS, m.as_ref(), m.has_status(&status), &status).await?;
            Ok(refusal.map(|refusal| Transition {
                object: m.object_ref(&()),
                name: m.name_any(),
                type_: EventType::Warning,
                reason: refusal.reason.to_string(),
                note: refusal.message.clone(),
            }))
        })
    });
    let transitions: Vec<Transition> = all_ok(writes).await?.into_iter().flatten().collect();
    publish_transitions(ctx, org, "Membership", transitions).await;
    Ok(())
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

/// Takes kube-org's finalizer off these Memberships.
async fn release_membership_finalizers(
    ctx: &Context,
    memberships: &[Membership],
) -> Result<(), Error> {
    for m in memberships
        .iter()
        .filter(|m| m.finalizers().iter().any(|f| f == MEMBERSHIP_FINALIZER))
    {
        // The Organization goes once this returns: a release that did not apply is
        // tried again, or the Membership (and its namespace) would be held forever.
        release_finalizer(ctx, m).await?;
    }
    Ok(())
}

/// Publishes an Event about `obj`; a failure to publish is logged, never fatal.
async fn publish<K: Resource<DynamicType = ()>>(
    ctx: &Context,
    obj: &K,
    type_: EventType,
    reason: &str,
    note: &str,
) {
    publish_to(ctx, &obj.object_ref(&()), type_, reason, note).await;
}

async fn publish_to(
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

    fn transition(name: &str, reason: &str, warning: bool) -> Transition {
        Transition {
            object: k8s_openapi::api::core::v1::ObjectReference {
                name: Some(name.to_string()),
                ..Default::default()
            },
            name: name.to_string(),
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.to_string(),
            note: String::new(),
        }
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

    #[test]
    fn finalizers_change_only_if_they_are_still_what_was_read() {
        let ours = vec![MEMBERSHIP_FINALIZER.to_string()];
        // Adding: only on the copy read (resourceVersion), and its finalizers.
        let added = finalizer_patch(&[], &ours, Some("42"));
        assert_eq!(
            added[0],
            serde_json::json!({"op": "test", "path": "/metadata/resourceVersion", "value": "42"})
        );
        assert_eq!(added[1]["op"], "add");
        let theirs = vec!["example.com/hold".to_string()];
        let both = [theirs.clone(), ours.clone()].concat();
        let patch = finalizer_patch(&theirs, &both, Some("43"));
        assert_eq!(
            patch[1],
            serde_json::json!({"op": "test", "path": "/metadata/finalizers", "value": theirs})
        );
        assert_eq!(patch[2]["value"], serde_json::json!(both));
        // Removing: only the finalizers are tested.
        let removed = finalizer_patch(&both, &theirs, None);
        assert_eq!(removed.as_array().unwrap().len(), 2);
        assert_eq!(removed[1]["value"], serde_json::json!(theirs));
    }

    #[test]
    fn a_few_transitions_get_an_event_each_and_a_bulk_change_one_summary() {
        let org = k8s_openapi::api::core::v1::ObjectReference {
            name: Some("acme".to_string()),
            ..Default::default()
        };
        let few: Vec<Transition> = (0..3)
            .map(|i| transition(&format!("b{i}"), "Granted", false))
            .collect();
        assert_eq!(summarise(&org, "RoleBinding", few).len(), 3);

        let mut many: Vec<Transition> = (0..1000)
            .map(|i| transition(&format!("b{i}"), "Granted", false))
            .collect();
        many.push(transition("x", "UnknownRole", true));
        let events = summarise(&org, "RoleBinding", many);
        assert_eq!(events.len(), 1);
        let event = &events[0];
        assert_eq!(event.object.name.as_deref(), Some("acme"));
        assert_eq!(event.reason, "RoleBindingsChanged");
        assert_eq!(
            event.type_,
            EventType::Warning,
            "a refusal among them is worth a warning"
        );
        assert!(
            event.note.starts_with(
                "1001 RoleBindings changed: Granted 1000 (b0, b1, b2, +997); UnknownRole 1 (x)"
            ),
            "{}",
            event.note
        );
    }
}
