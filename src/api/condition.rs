//! Status conditions, the standard `metav1.Condition`, and the one rule that keeps
//! status writes quiet: `lastTransitionTime` moves only when `status` changes.
//!
//! GitOps tools read these conditions with kstatus (Flux, Helm 4, `kubectl wait`-style
//! pollers): `Ready=True` is `Current`, `Ready=False` is `InProgress`, `Stalled=True` is
//! `Failed`. kube-org adds `Stalled` (see [`stalled`]) only when `Ready=False` has a
//! reason no retry resolves, so that a typo in a role name fails a GitOps sync instead of
//! keeping it waiting until its timeout.

pub use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// `Ready`: the object is fully in effect.
pub const READY: &str = "Ready";

/// `Stalled`: kstatus's "the controller can make no progress until someone changes
/// something" (kstatus `Failed`). Present only while it is `True`.
pub const STALLED: &str = "Stalled";

/// The reasons of `Ready=False` that no retry or wait resolves: the object itself, or
/// another one a person owns (the Organization, a namespace's label, the operator's
/// grants), must change. Every other `Ready=False` is progress that kube-org retries or
/// watches for (`Sending`, `NotDelivered`, `Joining`, `SyncFailed`, `MemberNotFound`,
/// `ResourcesMissing`, `OrganizationNotFound`, ...): kstatus `InProgress`.
pub const PERMANENT_REASONS: &[&str] = &[
    // a role or scope the organization does not have (spec or the Organization must change)
    "UnknownRole",
    "RoleNotForType",
    "NeedsOrganizationScope",
    "NeedsResourceScope",
    "UnknownResourceType",
    "InvalidScope",
    // a cluster admin must grant kube-org `bind` on the ClusterRole
    "ClusterRoleNotBindable",
    // membership policy and identities refused
    "DomainNotAllowed",
    "SystemUserNotAllowed",
    "SystemGroupNotAllowed",
    "ExclusiveMembership",
    "MemberRefused",
    "DuplicateMember",
    "DuplicateInvitation",
    "AlreadyMember",
    // an invitation that cannot be sent as written, or whose link ran out (spec.resend)
    "InvalidTTL",
    "InvalidMessage",
    "Expired",
    // the home namespace: a cluster admin must mark it, or another must be named
    "HomeNamespaceNotMarked",
    "HomeNamespaceTaken",
];

/// The `Stalled` condition `desired` implies: `Ready=False` with a permanent reason
/// gives `Stalled=True` with the same reason and message; anything else gives none.
pub fn stalled(desired: &[DesiredCondition]) -> Option<DesiredCondition> {
    if desired.iter().any(|c| c.type_ == STALLED) {
        return None;
    }
    desired
        .iter()
        .find(|c| c.type_ == READY && !c.status && PERMANENT_REASONS.contains(&c.reason.as_str()))
        .map(|ready| DesiredCondition::new(STALLED, true, &ready.reason, ready.message.clone()))
}

/// The desired content of one condition, without timestamps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredCondition {
    pub type_: String,
    pub status: bool,
    pub reason: String,
    pub message: String,
}

impl DesiredCondition {
    pub fn new(type_: &str, status: bool, reason: &str, message: impl Into<String>) -> Self {
        Self {
            type_: type_.to_string(),
            status,
            reason: reason.to_string(),
            message: message.into(),
        }
    }
}

fn status_word(status: bool) -> &'static str {
    if status { "True" } else { "False" }
}

/// Merges `desired` into `current`, keeping `lastTransitionTime` of every condition whose
/// status did not change, so the result equals `current` when nothing changed.
/// Conditions are returned sorted by type for a deterministic order. The [`stalled`]
/// condition `desired` implies is added here, so every kind gets it the same way (and
/// drops it as soon as `Ready` is no longer permanently `False`).
pub fn merge_conditions(
    current: &[Condition],
    desired: &[DesiredCondition],
    generation: Option<i64>,
    now: &Time,
) -> Vec<Condition> {
    let mut merged: Vec<Condition> = desired
        .iter()
        .chain(stalled(desired).as_ref())
        .map(|want| {
            let previous = current.iter().find(|c| c.type_ == want.type_);
            let status = status_word(want.status);
            let last_transition_time = match previous {
                Some(prev) if prev.status == status => prev.last_transition_time.clone(),
                _ => now.clone(),
            };
            Condition {
                type_: want.type_.clone(),
                status: status.to_string(),
                reason: want.reason.clone(),
                message: want.message.clone(),
                observed_generation: generation,
                last_transition_time,
            }
        })
        .collect();
    merged.sort_by(|a, b| a.type_.cmp(&b.type_));
    merged
}

/// Whether the condition of `type_` is `True`.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == type_ && c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn at(seconds: i64) -> Time {
        Time(Timestamp::from_second(seconds).unwrap())
    }

    #[test]
    fn transition_time_moves_only_on_a_status_change() {
        let first = merge_conditions(
            &[],
            &[DesiredCondition::new(READY, false, "Pending", "waiting")],
            Some(1),
            &at(10),
        );
        assert_eq!(first[0].last_transition_time, at(10));

        let same_status = merge_conditions(
            &first,
            &[DesiredCondition::new(READY, false, "StillPending", "still")],
            Some(1),
            &at(20),
        );
        assert_eq!(same_status[0].last_transition_time, at(10));
        assert_eq!(same_status[0].reason, "StillPending");

        let flipped = merge_conditions(
            &same_status,
            &[DesiredCondition::new(READY, true, "Ready", "ok")],
            Some(2),
            &at(30),
        );
        assert_eq!(flipped[0].last_transition_time, at(30));
        assert_eq!(flipped[0].observed_generation, Some(2));
    }

    #[test]
    fn a_permanent_refusal_stalls_and_a_transient_one_does_not() {
        let refused = [DesiredCondition::new(
            READY,
            false,
            "UnknownRole",
            "no role x",
        )];
        let stalled_once = merge_conditions(&[], &refused, Some(1), &at(10));
        assert_eq!(stalled_once.len(), 2);
        let derived = &stalled_once[1];
        assert_eq!(
            (derived.type_.as_str(), derived.status.as_str()),
            (STALLED, "True")
        );
        assert_eq!(
            (derived.reason.as_str(), derived.message.as_str()),
            ("UnknownRole", "no role x")
        );

        // Quiet: the same input later changes nothing, timestamps included.
        assert_eq!(
            merge_conditions(&stalled_once, &refused, Some(1), &at(20)),
            stalled_once
        );

        // Transient reasons are progress, not a stall.
        for reason in [
            "Sending",
            "NotDelivered",
            "SyncFailed",
            "ResourcesMissing",
            "MemberNotFound",
        ] {
            let desired = [DesiredCondition::new(READY, false, reason, "wait")];
            assert!(stalled(&desired).is_none(), "{reason}");
        }
        // Fixed: Stalled disappears, Ready transitions.
        let fixed = merge_conditions(
            &stalled_once,
            &[DesiredCondition::new(READY, true, "Bound", "ok")],
            Some(2),
            &at(30),
        );
        assert_eq!(fixed.len(), 1);
        assert_eq!(fixed[0].last_transition_time, at(30));
    }

    #[test]
    fn stalled_keeps_its_transition_time_across_reasons() {
        let first = merge_conditions(
            &[],
            &[DesiredCondition::new(READY, false, "UnknownRole", "a")],
            Some(1),
            &at(10),
        );
        let second = merge_conditions(
            &first,
            &[DesiredCondition::new(READY, false, "InvalidScope", "b")],
            Some(2),
            &at(20),
        );
        let derived = second.iter().find(|c| c.type_ == STALLED).unwrap();
        assert_eq!(derived.reason, "InvalidScope");
        assert_eq!(derived.last_transition_time, at(10));
        // An explicit Stalled in desired wins over the derived one.
        let explicit = [
            DesiredCondition::new(READY, false, "UnknownRole", "a"),
            DesiredCondition::new(STALLED, false, "Other", "b"),
        ];
        assert!(stalled(&explicit).is_none());
    }

    #[test]
    fn unchanged_input_gives_identical_output() {
        let desired = [
            DesiredCondition::new("B", true, "Ok", "b"),
            DesiredCondition::new("A", true, "Ok", "a"),
        ];
        let once = merge_conditions(&[], &desired, Some(3), &at(1));
        let twice = merge_conditions(&once, &desired, Some(3), &at(99));
        assert_eq!(once, twice);
        assert_eq!(once[0].type_, "A");
        assert!(is_true(&once, "B"));
    }
}
