//! The one way kube-org publishes Events (the access controller, the invitation
//! controller and the accept endpoint): each Event is counted as an API write, its note
//! is cut to what the API server accepts, and failing to publish never fails the caller
//! (an Event is a courtesy; the condition is the record).

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

use crate::access::names::MANAGER;
use crate::metrics::Metrics;

/// The API server refuses Event notes longer than 1 kB: kube-org keeps them within
/// this many bytes.
const NOTE_LIMIT: usize = 1000;

/// Publishes Events as kube-org (the Pod's name as the instance, when known).
#[derive(Clone)]
pub struct Events {
    recorder: Recorder,
    metrics: Metrics,
}

impl Events {
    pub fn new(client: Client, metrics: Metrics) -> Self {
        let reporter = Reporter {
            controller: MANAGER.to_string(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Events {
            recorder: Recorder::new(client, reporter),
            metrics,
        }
    }

    /// Publishes one Event about `object`; `action` says what kube-org was doing
    /// (`Reconcile`, `Accept`).
    pub async fn publish(
        &self,
        object: &ObjectReference,
        type_: EventType,
        reason: &str,
        note: &str,
        action: &str,
    ) {
        let event = Event {
            type_,
            reason: reason.to_string(),
            note: Some(note_within_limit(note)),
            action: action.to_string(),
            secondary: None,
        };
        self.metrics.write("events", "create");
        if let Err(error) = self.recorder.publish(&event, object).await {
            tracing::warn!(%error, reason, "could not publish an Event");
        }
    }
}

/// `note`, cut on a character boundary to at most [`NOTE_LIMIT`] bytes.
fn note_within_limit(note: &str) -> String {
    let mut end = note.len().min(NOTE_LIMIT);
    while !note.is_char_boundary(end) {
        end -= 1;
    }
    note[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_notes_are_cut_on_a_character_boundary() {
        let long = "é".repeat(1500);
        let cut = note_within_limit(&long);
        assert_eq!(cut.len(), NOTE_LIMIT, "500 two-byte characters");
        let odd = format!("x{}", "é".repeat(600));
        assert_eq!(note_within_limit(&odd).len(), NOTE_LIMIT - 1);
        assert_eq!(note_within_limit("short"), "short");
    }
}
