//! Leader election with a `coordination.k8s.io/v1` Lease: only the leader reconciles and
//! sends email. The decision is a pure function of the Lease and the clock; the loop
//! around it reads and writes the Lease with resourceVersion preconditions, so two
//! replicas can never both win the same round.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::PostParams;
use kube::{Api, Client};
use tokio::sync::watch;
use tracing::{info, warn};

/// Where the Lease lives and how it is held.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub name: String,
    pub namespace: String,
    /// This replica's identity (the Pod name).
    pub identity: String,
    /// How long a holder that stopped renewing keeps the Lease.
    pub duration: Duration,
    /// How often the holder renews (and a follower retries).
    pub retry: Duration,
}

/// What to do with the Lease as it is now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Nobody holds it (or the holder's time ran out): take it.
    Acquire,
    /// We hold it: renew it.
    Renew,
    /// Someone else holds it until `until`.
    Follow { holder: String, until: Timestamp },
}

/// Decides from the Lease's spec (None: no Lease yet) and the time.
pub fn decide(spec: Option<&LeaseSpec>, me: &str, now: Timestamp) -> Decision {
    let Some(spec) = spec else {
        return Decision::Acquire;
    };
    let holder = spec.holder_identity.as_deref().unwrap_or_default();
    if holder.is_empty() {
        return Decision::Acquire;
    }
    if holder == me {
        return Decision::Renew;
    }
    let renewed = spec
        .renew_time
        .as_ref()
        .map(|t| t.0)
        .unwrap_or(Timestamp::UNIX_EPOCH);
    let until =
        renewed + SignedDuration::from_secs(spec.lease_duration_seconds.unwrap_or(0).into());
    if until <= now {
        Decision::Acquire
    } else {
        Decision::Follow {
            holder: holder.to_string(),
            until,
        }
    }
}

/// The spec a holder writes when acquiring or renewing.
fn held_spec(
    current: Option<&LeaseSpec>,
    config: &LeaseConfig,
    now: Timestamp,
    acquiring: bool,
) -> LeaseSpec {
    let transitions = current.and_then(|s| s.lease_transitions).unwrap_or(0);
    LeaseSpec {
        holder_identity: Some(config.identity.clone()),
        lease_duration_seconds: Some(config.duration.as_secs() as i32),
        acquire_time: if acquiring {
            Some(MicroTime(now))
        } else {
            current.and_then(|s| s.acquire_time.clone())
        },
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(if acquiring && current.is_some() {
            transitions + 1
        } else {
            transitions
        }),
        ..Default::default()
    }
}

/// One round: read the Lease, decide, write. Returns whether we lead afterwards.
async fn round(api: &Api<Lease>, config: &LeaseConfig) -> Result<bool, kube::Error> {
    let now = Timestamp::now();
    let current = api.get_opt(&config.name).await?;
    let spec = current.as_ref().and_then(|l| l.spec.as_ref());
    match decide(spec, &config.identity, now) {
        Decision::Follow { .. } => Ok(false),
        decision => {
            let acquiring = decision == Decision::Acquire;
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(config.name.clone()),
                    namespace: Some(config.namespace.clone()),
                    resource_version: current
                        .as_ref()
                        .and_then(|l| l.metadata.resource_version.clone()),
                    ..Default::default()
                },
                spec: Some(held_spec(spec, config, now, acquiring)),
            };
            let written = match current {
                None => api.create(&PostParams::default(), &lease).await,
                Some(_) => {
                    api.replace(&config.name, &PostParams::default(), &lease)
                        .await
                }
            };
            match written {
                Ok(_) => Ok(true),
                // Another replica wrote first: it won this round.
                Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
                Err(error) => Err(error),
            }
        }
    }
}

/// Gives the Lease up so another replica takes over at once (on SIGTERM).
async fn release(api: &Api<Lease>, config: &LeaseConfig) {
    let Ok(Some(mut lease)) = api.get_opt(&config.name).await else {
        return;
    };
    let Some(spec) = lease.spec.as_mut() else {
        return;
    };
    if spec.holder_identity.as_deref() != Some(config.identity.as_str()) {
        return;
    }
    spec.holder_identity = None;
    spec.renew_time = None;
    match api
        .replace(&config.name, &PostParams::default(), &lease)
        .await
    {
        Ok(_) => info!(lease = %config.name, "leadership released"),
        Err(error) => warn!(lease = %config.name, %error, "could not release the lease"),
    }
}

/// Runs the election until `stop` turns true; `leading` tells whether this replica leads.
/// A leader that cannot renew within the lease duration steps down.
pub async fn run(
    client: Client,
    config: LeaseConfig,
    leading: watch::Sender<bool>,
    mut stop: watch::Receiver<bool>,
) {
    let api: Api<Lease> = Api::namespaced(client, &config.namespace);
    let mut last_renewal = tokio::time::Instant::now();
    loop {
        let was_leading = *leading.borrow();
        let leads = match round(&api, &config).await {
            Ok(leads) => leads,
            Err(error) => {
                warn!(lease = %config.name, %error, "lease round failed");
                was_leading && last_renewal.elapsed() < config.duration
            }
        };
        if leads {
            last_renewal = tokio::time::Instant::now();
        }
        if leads != was_leading {
            info!(lease = %config.name, identity = %config.identity, leading = leads, "leadership changed");
            let _ = leading.send(leads);
        }
        tokio::select! {
            _ = tokio::time::sleep(config.retry) => {}
            _ = stop.changed() => {
                if *leading.borrow() {
                    release(&api, &config).await;
                }
                let _ = leading.send(false);
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held_by(holder: &str, renewed_at: i64, seconds: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.to_string()),
            renew_time: Some(MicroTime(Timestamp::from_second(renewed_at).unwrap())),
            lease_duration_seconds: Some(seconds),
            ..Default::default()
        }
    }

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(second).unwrap()
    }

    #[test]
    fn a_missing_or_released_lease_is_taken() {
        assert_eq!(decide(None, "a", at(100)), Decision::Acquire);
        assert_eq!(
            decide(Some(&LeaseSpec::default()), "a", at(100)),
            Decision::Acquire
        );
    }

    #[test]
    fn the_holder_renews_and_others_follow_until_it_expires() {
        let lease = held_by("a", 100, 15);
        assert_eq!(decide(Some(&lease), "a", at(105)), Decision::Renew);
        assert_eq!(
            decide(Some(&lease), "b", at(114)),
            Decision::Follow {
                holder: "a".into(),
                until: at(115)
            }
        );
        assert_eq!(decide(Some(&lease), "b", at(115)), Decision::Acquire);
    }

    #[test]
    fn taking_over_counts_a_transition() {
        let config = LeaseConfig {
            name: "l".into(),
            namespace: "n".into(),
            identity: "b".into(),
            duration: Duration::from_secs(15),
            retry: Duration::from_secs(2),
        };
        let before = LeaseSpec {
            lease_transitions: Some(3),
            ..held_by("a", 100, 15)
        };
        let taken = held_spec(Some(&before), &config, at(200), true);
        assert_eq!(taken.lease_transitions, Some(4));
        assert_eq!(taken.holder_identity.as_deref(), Some("b"));
        let renewed = held_spec(Some(&taken), &config, at(202), false);
        assert_eq!(renewed.lease_transitions, Some(4));
        assert_eq!(renewed.acquire_time, taken.acquire_time);
    }
}
