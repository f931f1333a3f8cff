//! Invitation benchmark against a local control plane and Mailpit (`make
//! bench-invitations`): creates 1,000 invitations (KUBE_ORG_BENCH_INVITATIONS to change)
//! with expiries staggered over a minute, then prints how many emails per second the
//! operator delivered and how late after `expiresAt` each invitation was seen Expired
//! (p50, p99, max), as a watching client observes it and as the operator recorded it.
//!
//! Not part of `make test` (`test = false` in Cargo.toml).

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/invitations/http.rs"]
mod http;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use kube_org::api::{Invitation, InvitationPhase, Organization};
use serde_json::json;

#[derive(Default, Clone, Copy)]
struct Seen {
    delivered: Option<Instant>,
    expires_at: Option<Timestamp>,
    expired: Option<Timestamp>,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[tokio::main]
async fn main() {
    let count: usize = std::env::var("KUBE_ORG_BENCH_INVITATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let smtp = std::env::var("KUBE_ORG_MAILPIT_SMTP")
        .expect("KUBE_ORG_MAILPIT_SMTP is not set: run `make bench-invitations`");
    let client = common::client().await;
    let operator = common::Operator::start(
        &[
            "--smtp-url",
            &format!("smtp://{smtp}"),
            "--smtp-from",
            "bench@example.com",
            "--accept-base-url",
            "http://bench.invalid",
        ]
        .map(String::from),
    )
    .await;

    let name = common::unique("bench");
    let home = format!("org-{name}");
    common::create_namespace(&client, &home).await;
    let org: Organization = serde_json::from_value(json!({
        "apiVersion": "kube-org.io/v1alpha1", "kind": "Organization",
        "metadata": {"name": name},
        "spec": {"displayName": "Bench", "owners": ["owner@example.com"]}
    }))
    .expect("an Organization");
    let orgs: Api<Organization> = Api::all(client.clone());
    orgs.create(&PostParams::default(), &org)
        .await
        .expect("creating the Organization");

    let api: Api<Invitation> = Api::namespaced(client.clone(), &home);
    let seen: Arc<Mutex<HashMap<String, Seen>>> = Arc::default();
    let recorder = seen.clone();
    let watch = tokio::spawn(
        watcher(api.clone(), watcher::Config::default())
            .default_backoff()
            .applied_objects()
            .try_for_each(move |invitation: Invitation| {
                let now_instant = Instant::now();
                let now = Timestamp::now();
                let mut seen = recorder.lock().expect("lock");
                let entry = seen.entry(invitation.name_any()).or_default();
                if let Some(status) = &invitation.status {
                    let delivered = status
                        .conditions
                        .iter()
                        .any(|c| c.type_ == "Delivered" && c.status == "True");
                    if delivered && entry.delivered.is_none() {
                        entry.delivered = Some(now_instant);
                    }
                    entry.expires_at = status.expires_at.as_ref().map(|t| t.0);
                    if status.phase == Some(InvitationPhase::Expired) && entry.expired.is_none() {
                        entry.expired = Some(now);
                    }
                }
                futures::future::ready(Ok(()))
            }),
    );

    println!("creating {count} invitations (ttl 45s + i mod 60 s) ...");
    let start = Instant::now();
    futures::stream::iter(0..count)
        .map(|i| {
            let api = api.clone();
            async move {
                let invitation: Invitation = serde_json::from_value(json!({
                    "apiVersion": "kube-org.io/v1alpha1", "kind": "Invitation",
                    "metadata": {"name": format!("inv-{i:04}")},
                    "spec": {
                        "email": format!("person-{i:04}@example.com"),
                        "ttl": format!("{}s", 45 + i % 60),
                        "roles": [{"role": "viewer", "scope": {"resourceType": "deployment", "all": true}}]
                    }
                }))
                .expect("an Invitation");
                api.create(&PostParams::default(), &invitation)
                    .await
                    .expect("creating an Invitation");
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<()>>()
        .await;
    let created = start.elapsed();
    println!("created in {:.1}s", created.as_secs_f64());

    let deadline = Instant::now() + Duration::from_secs(600);
    let all = |pick: fn(&Seen) -> bool| {
        let seen = seen.lock().expect("lock");
        seen.values().filter(|s| pick(s)).count()
    };
    while all(|s| s.delivered.is_some()) < count && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let last_delivery = seen
        .lock()
        .expect("lock")
        .values()
        .filter_map(|s| s.delivered)
        .max()
        .unwrap_or(start);
    let delivered = all(|s| s.delivered.is_some());
    let seconds = last_delivery.duration_since(start).as_secs_f64();
    println!(
        "delivered {delivered}/{count} emails in {seconds:.1}s: {:.1} emails/s (from the first create to the last Delivered=True)",
        delivered as f64 / seconds
    );

    while all(|s| s.expired.is_some()) < count && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut lateness: Vec<f64> = seen
        .lock()
        .expect("lock")
        .values()
        .filter_map(|s| Some(s.expired?.duration_since(s.expires_at?).as_secs_f64()))
        .collect();
    lateness.sort_by(f64::total_cmp);
    println!(
        "expired {}/{count}; lateness seen by a watching client: p50 {:.3}s, p99 {:.3}s, max {:.3}s",
        lateness.len(),
        percentile(&lateness, 50.0),
        percentile(&lateness, 99.0),
        lateness.last().copied().unwrap_or(f64::NAN)
    );
    let metrics = http::get(&format!("{}/metrics", operator.metrics_url)).await;
    assert_eq!(metrics.status, 200, "GET /metrics: {}", metrics.body);
    let value = |metric: &str| {
        metrics
            .body
            .lines()
            .find(|line| line.starts_with(metric))
            .and_then(|line| line.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    let (sum, n) = (
        value("kube_org_invitation_expiry_lateness_seconds_sum"),
        value("kube_org_invitation_expiry_lateness_seconds_count"),
    );
    println!(
        "operator metrics: {} emails sent, {} failed, expiry lateness as written: mean {:.3}s over {n}",
        value("kube_org_invitation_emails_sent_total"),
        value("kube_org_invitation_emails_failed_total"),
        sum / n
    );
    for line in metrics
        .body
        .lines()
        .filter(|l| l.starts_with("kube_org_invitation_expiry_lateness_seconds_bucket"))
    {
        println!("  {line}");
    }

    watch.abort();
    let _ = orgs.delete(&name, &DeleteParams::background()).await;
    common::delete_namespace(&client, &home).await;
    operator.stop();
}
