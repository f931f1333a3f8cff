//! Revocation lateness of time-bound roles against a local control plane (`make
//! bench-expiry`): 200 members (BENCH_EXPIRY_BINDINGS to change), each with one viewer
//! RoleBinding whose `spec.expiresAt` is staggered 300 ms apart (with milliseconds,
//! so expiries fall between seconds too) over a minute, all in one organization. For
//! each, a probe asks the cluster's authorizer (SubjectAccessReview) every 10 ms from
//! 100 ms before its `expiresAt` until the member is denied; the lateness is when the
//! first denial came back minus `expiresAt`. Prints p50/p99/max, revocations seen
//! before `expiresAt` (must be 0), and the operator's writes while nothing changed.
//!
//! Not part of `make test` (`test = false` in Cargo.toml).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use kube_org::api::{Membership, Organization, RoleBinding};
use serde_json::json;

/// How often a probe asks near its binding's expiry.
const PROBE_EVERY: Duration = Duration::from_millis(10);
/// How long before `expiresAt` a probe starts (each answer then must be "allowed").
const PROBE_LEAD: SignedDuration = SignedDuration::from_millis(100);

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// What one probe saw.
struct Probe {
    index: usize,
    /// Milliseconds from `expiresAt` to the first denial.
    late_ms: f64,
    /// Whether the member was denied already before `expiresAt`.
    early: bool,
}

async fn probe(
    index: usize,
    client: kube::Client,
    user: String,
    namespace: String,
    at: Timestamp,
) -> Probe {
    let start = at - PROBE_LEAD;
    let wait = start.duration_since(Timestamp::now());
    if wait.is_positive() {
        tokio::time::sleep(wait.unsigned_abs()).await;
    }
    let what = common::Can::new("get", "pods", Some(&namespace));
    let mut early = false;
    loop {
        let allowed = common::can(&client, &user, what).await;
        let now = Timestamp::now();
        if !allowed {
            if now < at {
                early = true;
            }
            return Probe {
                index,
                late_ms: now.duration_since(at).as_secs_f64() * 1000.0,
                early,
            };
        }
        assert!(
            now < at + SignedDuration::from_secs(30),
            "{user} still allowed 30s after {at}"
        );
        tokio::time::sleep(PROBE_EVERY).await;
    }
}

#[tokio::main]
async fn main() {
    let count: usize = std::env::var("BENCH_EXPIRY_BINDINGS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let client = common::client().await;
    let operator = common::Operator::start(&[]).await;

    let name = common::unique("expiry");
    let home = format!("org-{name}");
    let org: Organization = serde_json::from_value(json!({
        "apiVersion": "kube-org.io/v1alpha1", "kind": "Organization",
        "metadata": {"name": name},
        "spec": {"owners": ["owner@example.com"], "resourceTypes": ["deployment"]}
    }))
    .expect("an Organization");
    let orgs: Api<Organization> = Api::all(client.clone());
    orgs.create(&PostParams::default(), &org)
        .await
        .expect("creating the Organization");
    common::wait_for_namespace(&client, &home, Duration::from_secs(30)).await;
    let resource = common::unique("prod");
    let ns: k8s_openapi::api::core::v1::Namespace = serde_json::from_value(json!({"metadata": {
        "name": resource,
        "labels": {"kube-org.io/organization": name, "kube-org.io/resource-type": "deployment"},
    }}))
    .expect("a namespace");
    Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("creating the resource namespace");

    // Expiries from 40 s after the start (room for the setup), 300 ms apart.
    let first = Timestamp::now() + SignedDuration::from_secs(40);
    let expiry = |i: usize| {
        let at = first + SignedDuration::from_millis(300 * i as i64);
        Timestamp::from_millisecond(at.as_millisecond()).expect("a time")
    };
    let user = |i: usize| format!("person-{i:04}@example.com");
    println!(
        "creating {count} members with viewer bindings expiring from {} to {} ...",
        expiry(0),
        expiry(count.saturating_sub(1))
    );
    let memberships: Api<Membership> = Api::namespaced(client.clone(), &home);
    let bindings: Api<RoleBinding> = Api::namespaced(client.clone(), &home);
    let created = std::time::Instant::now();
    futures::stream::iter(0..count)
        .map(|i| {
            let (memberships, bindings) = (memberships.clone(), bindings.clone());
            let email = user(i);
            async move {
                let m: Membership = serde_json::from_value(json!({
                    "apiVersion": "kube-org.io/v1alpha1", "kind": "Membership",
                    "metadata": {"name": format!("m-{i:04}")},
                    "spec": {"email": email},
                }))
                .expect("a Membership");
                memberships
                    .create(&PostParams::default(), &m)
                    .await
                    .expect("creating a Membership");
                let b: RoleBinding = serde_json::from_value(json!({
                    "apiVersion": "kube-org.io/v1alpha1", "kind": "RoleBinding",
                    "metadata": {"name": format!("b-{i:04}")},
                    "spec": {
                        "member": email, "role": "viewer",
                        "scope": {"resourceType": "deployment", "all": true},
                        "expiresAt": expiry(i).to_string(),
                    },
                }))
                .expect("a RoleBinding");
                bindings
                    .create(&PostParams::default(), &b)
                    .await
                    .expect("creating a RoleBinding");
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;
    println!("created in {:.1}s", created.elapsed().as_secs_f64());
    let what = common::Can::new("get", "pods", Some(&resource));
    for i in 0..count {
        common::eventually_can(&client, &user(i), what, true, Duration::from_secs(60)).await;
    }
    let granted = Timestamp::now();
    println!("all {count} granted at {granted}");
    assert!(
        granted < expiry(0) - PROBE_LEAD,
        "the setup took past the first expiry; fewer bindings (BENCH_EXPIRY_BINDINGS) or a faster machine"
    );

    let writes_before = operator.writes().await;
    let reconciles_before = operator.metric("kube_org_reconciles_total").await;
    let probes: Vec<Probe> = futures::future::join_all((0..count).map(|i| {
        tokio::spawn(probe(
            i,
            client.clone(),
            user(i),
            resource.clone(),
            expiry(i),
        ))
    }))
    .await
    .into_iter()
    .map(|p| p.expect("a probe"))
    .collect();
    let writes_during = operator.writes().await - writes_before;
    let reconciles = operator.metric("kube_org_reconciles_total").await - reconciles_before;
    let mut late: Vec<f64> = probes.iter().map(|p| p.late_ms).collect();
    late.sort_by(f64::total_cmp);
    let early = probes.iter().filter(|p| p.early).count();

    // Quiet once every binding is expired: no requeue loop, no status rewrites.
    let settled = operator
        .settle(Duration::from_secs(5), Duration::from_secs(60))
        .await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let idle_writes = operator.writes().await - settled;

    let mut worst: Vec<&Probe> = probes.iter().collect();
    worst.sort_by(|a, b| b.late_ms.total_cmp(&a.late_ms));
    for p in worst.iter().take(8) {
        println!(
            "late: binding {} (expiresAt {}) revoked {:.1} ms after",
            p.index,
            expiry(p.index),
            p.late_ms
        );
    }
    let (_, metrics) = common::http_get(&format!("{}/metrics", operator.metrics_url))
        .await
        .expect("/metrics answers");
    for line in metrics.lines().filter(|l| {
        l.starts_with("kube_org_reconcile_duration_seconds") && l.contains("organization")
    }) {
        println!("  {line}");
    }
    // The operator's log goes with the control plane's work directory; keep a copy.
    if let Some(keep) = std::env::var_os("BENCH_KEEP_LOG") {
        std::fs::copy(&operator.log, &keep).expect("copying the operator's log");
        println!("operator log: {}", std::path::Path::new(&keep).display());
    }
    println!("== summary ==");
    println!("bindings: {count} count");
    println!("revocation_lateness_p50: {:.1} ms", percentile(&late, 50.0));
    println!("revocation_lateness_p99: {:.1} ms", percentile(&late, 99.0));
    println!(
        "revocation_lateness_max: {:.1} ms",
        late.last().copied().unwrap_or(f64::NAN)
    );
    println!("revoked_before_expires_at: {early} count");
    println!("writes_during_expiries: {writes_during} requests");
    println!("idle_writes_after_all_expired: {idle_writes} requests (10 s)");
    println!("reconciles_during_expiries: {reconciles} count");

    let _ = orgs.delete(&name, &DeleteParams::background()).await;
    common::delete_namespace(&client, &resource).await;
    operator.stop();
}
