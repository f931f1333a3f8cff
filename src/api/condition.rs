//! Status conditions, the standard `metav1.Condition`, and the one rule that keeps
//! status writes quiet: `lastTransitionTime` moves only when `status` changes.

pub use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// `Ready`: the object is fully in effect.
pub const READY: &str = "Ready";

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
/// Conditions are returned sorted by type for a deterministic order.
pub fn merge_conditions(
    current: &[Condition],
    desired: &[DesiredCondition],
    generation: Option<i64>,
    now: &Time,
) -> Vec<Condition> {
    let mut merged: Vec<Condition> = desired
        .iter()
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
