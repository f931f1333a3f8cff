//! Prometheus metrics of invitations: how many are in each phase (counted from the
//! controller's cache at scrape time), emails sent and failed, how late expiry is
//! written, and what the accept endpoint answered.

use std::sync::Arc;

use kube::runtime::reflector::Store;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::api::{Invitation, InvitationPhase};

/// Buckets of the expiry lateness histogram, in seconds.
const LATENESS_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 30.0,
];

/// The invitation metrics; cheap to share.
#[derive(Debug)]
pub struct Metrics {
    pub emails_sent: Counter,
    pub emails_failed: Counter,
    /// Seconds between `expiresAt` and the moment the Expired status was written.
    pub expiry_lateness: Histogram,
    /// Answers of the accept endpoint, by outcome.
    pub accepts: Family<Vec<(String, String)>, Counter>,
}

impl Metrics {
    /// Registers the metrics (names prefixed `kube_org_`) and returns them.
    pub fn register(
        registry: &mut Registry,
        invitations: Option<Store<Invitation>>,
    ) -> Arc<Metrics> {
        let metrics = Arc::new(Metrics {
            emails_sent: Counter::default(),
            emails_failed: Counter::default(),
            expiry_lateness: Histogram::new(LATENESS_BUCKETS),
            accepts: Family::default(),
        });
        let registry = registry.sub_registry_with_prefix("kube_org");
        registry.register(
            "invitation_emails_sent",
            "Invitation emails the SMTP server accepted",
            metrics.emails_sent.clone(),
        );
        registry.register(
            "invitation_emails_failed",
            "Invitation emails that could not be sent (each attempt)",
            metrics.emails_failed.clone(),
        );
        registry.register_with_unit(
            "invitation_expiry_lateness",
            "Time between an invitation's expiresAt and the write of its Expired status",
            Unit::Seconds,
            metrics.expiry_lateness.clone(),
        );
        registry.register(
            "invitation_accepts",
            "Answers of the accept endpoint, by outcome",
            metrics.accepts.clone(),
        );
        if let Some(store) = invitations {
            registry.register_collector(Box::new(PhaseCollector { store }));
        }
        metrics
    }

    /// Counts one answer of the accept endpoint.
    pub fn accepted(&self, outcome: &str) {
        self.accepts
            .get_or_create(&vec![("outcome".to_string(), outcome.to_string())])
            .inc();
    }
}

/// The phase label of an invitation; `Refused` for one held back by a condition.
pub fn phase_label(invitation: &Invitation) -> &'static str {
    match invitation.status.as_ref().and_then(|s| s.phase) {
        Some(InvitationPhase::Pending) => "Pending",
        Some(InvitationPhase::Accepted) => "Accepted",
        Some(InvitationPhase::Expired) => "Expired",
        None if invitation.status.is_some() => "Refused",
        None => "New",
    }
}

#[derive(Debug)]
struct PhaseCollector {
    store: Store<Invitation>,
}

impl Collector for PhaseCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let family: Family<Vec<(String, String)>, Gauge> = Family::default();
        for phase in ["New", "Pending", "Accepted", "Expired", "Refused"] {
            let _ = family.get_or_create(&vec![("phase".to_string(), phase.to_string())]);
        }
        for invitation in self.store.state() {
            family
                .get_or_create(&vec![(
                    "phase".to_string(),
                    phase_label(&invitation).to_string(),
                )])
                .inc();
        }
        let metric = encoder.encode_descriptor(
            "invitations",
            "Invitations by phase",
            None,
            family.metric_type(),
        )?;
        family.encode(metric)
    }
}

/// Renders a registry in the Prometheus text format.
pub fn render(registry: &Registry) -> Result<String, std::fmt::Error> {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry)?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_render_with_their_names() {
        let mut registry = Registry::default();
        let (store, mut writer) = kube::runtime::reflector::store::<Invitation>();
        let invitation: Invitation = serde_json::from_value(serde_json::json!({
            "apiVersion": "kube-org.io/v1alpha1", "kind": "Invitation",
            "metadata": {"name": "a", "namespace": "n"},
            "spec": {"email": "a@example.com", "roles": []},
            "status": {"phase": "Pending"}
        }))
        .unwrap();
        writer.apply_watcher_event(&kube::runtime::watcher::Event::Apply(invitation));
        let metrics = Metrics::register(&mut registry, Some(store));
        metrics.emails_sent.inc();
        metrics.expiry_lateness.observe(0.2);
        metrics.accepted("joined");
        let text = render(&registry).unwrap();
        for wanted in [
            "kube_org_invitation_emails_sent_total 1",
            "kube_org_invitation_emails_failed_total 0",
            "kube_org_invitation_expiry_lateness_seconds_count 1",
            "kube_org_invitation_accepts_total{outcome=\"joined\"} 1",
            "kube_org_invitations{phase=\"Pending\"} 1",
            "kube_org_invitations{phase=\"Expired\"} 0",
        ] {
            assert!(text.contains(wanted), "{wanted:?} missing from:\n{text}");
        }
    }
}
