//! Members leaving: kube-org's finalizer on the Memberships whose leaving may be refused
//! (owners', every member's of an exclusive organization: [`held_on_leaving`]), releasing
//! those allowed to go, and deleting the RoleBindings of members gone without it (the
//! orphaned-binding step, fed by what each plan evaluated for a present member).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use kube::api::{Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use tracing::{info, warn};

use super::apply;
use super::reconcile::{Snapshot, all_ok, give_back_claim, namespaced, publish};
use super::{Context, Error};
use crate::access::desired::DesiredAccess;
use crate::access::leave::{LeaveRefusal, held_on_leaving, owner_emails};
use crate::access::names::MEMBERSHIP_FINALIZER;
use crate::access::policy::orphaned_bindings;
use crate::api::{Membership, Organization, RoleBinding};

/// What a guarded finalizer patch did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Applied {
    Yes,
    /// The Membership is gone: nothing is left to hold.
    Gone,
    /// The copy read was out of date: adding is tried again by the next pass.
    Stale,
}

/// The uids of the cached RoleBindings `desired` evaluated for a present member.
fn bound_for_present_members(snapshot: &Snapshot, desired: &DesiredAccess) -> HashSet<String> {
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
/// orphan rule used it. Returns what this plan evaluated so, for
/// [`delete_orphaned_bindings`] (reporting failed writes later changes no binding's
/// reason between present and absent member).
pub(super) fn note_bound(
    ctx: &Context,
    org: &str,
    snapshot: &Snapshot,
    desired: &DesiredAccess,
) -> HashSet<String> {
    let bound_now = bound_for_present_members(snapshot, desired);
    let mut bound = ctx.bound.lock().unwrap_or_else(|p| p.into_inner());
    bound
        .entry(org.to_string())
        .or_default()
        .extend(bound_now.iter().cloned());
    bound_now
}

/// Deletes the RoleBindings of members whose Membership went away before kube-org's
/// finalizer was on it (see [`orphaned_bindings`]).
pub(super) async fn delete_orphaned_bindings(
    org: &Organization,
    ctx: &Context,
    snapshot: &Snapshot,
    memberships: &[&Membership],
    bound_now: HashSet<String>,
) -> Result<(), Error> {
    let bindings: Vec<&RoleBinding> = snapshot.bindings.iter().map(|b| b.as_ref()).collect();
    // What this plan evaluated for a present member ([`note_bound`]) replaces what the
    // last one did (and what this one noted early).
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

/// Puts kube-org's finalizer on the Memberships in `missing` (those whose leaving may be
/// refused: [`lacking_finalizer`]), so that deleting one first checks the leave rules
/// and revokes access: a few at a time, until done or until a change
/// the next reconcile must see ([`super::triggers::Urgent`]: the count differs from
/// `urgent_before`; or the Organization changed). Returns whether some are left for the
/// next reconcile.
///
/// A cold start adds one per owner (one per member in an exclusive organization; it
/// was one per member before only owners were held). The stream used to end at a deadline as well
/// (half the time the pass took so far), from before urgent changes could end it: at
/// 10,000 members each pass then planned for 10-28 s to patch for half that, and the
/// finalizers took three minutes, two of them planning.
pub(super) async fn ensure_membership_finalizers(
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
pub(super) async fn release_leaving_members(
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

/// Whether a Membership needs no finalizer added: it holds kube-org's, or is being
/// deleted (none can be added then).
fn holds_finalizer(m: &Membership) -> bool {
    m.meta().deletion_timestamp.is_some()
        || m.finalizers().iter().any(|f| f == MEMBERSHIP_FINALIZER)
}

/// The cached Memberships that should hold kube-org's finalizer and do not: only those
/// whose leaving may be refused ([`held_on_leaving`]), owners counted from every
/// binding the plan read, expired ones too (one finalizer too many costs nothing later).
pub(super) fn lacking_finalizer<'a>(
    org: &Organization,
    snapshot: &'a Snapshot,
    bindings: &[&RoleBinding],
) -> Vec<&'a Arc<Membership>> {
    let owners = owner_emails(bindings);
    snapshot
        .memberships
        .iter()
        .filter(|m| !holds_finalizer(m) && held_on_leaving(org, &owners, m))
        .collect()
}

/// Takes kube-org's finalizer off these Memberships.
pub(super) async fn release_membership_finalizers(
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
