//! The RoleBindings' and Memberships' statuses of a plan, written by the status workers
//! ([`super::status_queue`]) against the objects as the cache holds them then: each only
//! when it differs from the cached status, by server-side apply on the status
//! subresource with a metadata-only reply ([`crate::metadata_reply`]), after the cache
//! shows the previous pass's writes; a few transitions get an Event each, a bulk change
//! one summary on the Organization.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kube::api::{Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::events::EventType;
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::reconcile::{all_ok, cached_version, namespaced, now, publish_to};
use super::status_queue::StatusPlan;
use super::unseen::Written;
use super::{Context, Error};
use crate::access::desired::{BindingOutcome, DesiredAccess};
use crate::access::leave::LeaveRefusal;
use crate::access::names::{ANNOTATION_SOURCE, LABEL_OWNER};
use crate::api::condition::{DesiredCondition, READY, merge_conditions};
use crate::api::membership::{AccessGroup, MembershipStatus};
use crate::api::rolebinding::RoleBindingStatus;
use crate::api::{FIELD_MANAGER, Membership, Organization, RoleBinding};
use crate::index::Key;
use crate::metrics::Metrics;

/// Writes `status` on `obj` unless `unchanged` (the caller compared it with the cached
/// status); returns the API server's reply (the object's metadata) if it wrote.
pub async fn write_if_changed<K, S>(
    api: &Api<K>,
    metrics: &Metrics,
    resource: &str,
    obj: &K,
    unchanged: bool,
    status: &S,
) -> Result<Option<PartialObjectMeta<K>>, Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    S: Serialize,
{
    if unchanged {
        return Ok(None);
    }
    // Serialised straight from `status` (a `serde_json::Value` copy of a 1,000-entry
    // access list cost more memory than the list).
    let body = StatusApply {
        api_version: &K::api_version(&()),
        kind: &K::kind(&()),
        status,
    };
    metrics.write(resource, "apply");
    match crate::metadata_reply::patch_status(
        api,
        &obj.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    {
        Ok(reply) => Ok(Some(reply)),
        // Deleted meanwhile: its status no longer matters.
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(None),
        Err(error) => Err(error.into()),
    }
}

/// The body of a status apply: the object's type and its status, borrowed.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StatusApply<'a, S> {
    api_version: &'a str,
    kind: &'a str,
    status: &'a S,
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
    ctx.unseen_statuses
        .wait_or_warn(namespace, UNSEEN_STATUSES_WAIT, "status", cached)
        .await;
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

#[cfg(test)]
mod tests {
    use super::*;

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
