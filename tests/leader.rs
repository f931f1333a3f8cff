//! Leader election between two operator processes on the real control plane: only the
//! leader reconciles; when it is killed the other takes over within the lease duration
//! plus a few seconds; a leader that stops steps down at once.

mod common;

use std::time::{Duration, Instant};

use common::{Operator, client, eventually, unique};
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::PostParams;
use kube_org::api::Organization;

fn elect(lease: &str, namespace: &str, seconds: u64) -> Vec<String> {
    [
        "--leader-elect",
        "--lease-name",
        lease,
        "--lease-namespace",
        namespace,
        "--lease-duration-seconds",
        &seconds.to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

async fn leads(operator: &Operator) -> bool {
    operator.metric("kube_org_leader").await == 1.0
}

async fn create_org(client: &kube::Client) -> String {
    let name = unique("lead");
    let org: Organization = serde_json::from_value(
        serde_json::json!({"apiVersion": "kube-org.io/v1alpha1", "kind": "Organization",
        "metadata": {"name": name}, "spec": {"owners": ["alice@example.com"]}}),
    )
    .expect("organization");
    Api::<Organization>::all(client.clone())
        .create(&PostParams::default(), &org)
        .await
        .expect("creating an organization");
    format!("org-{name}")
}

#[tokio::test]
async fn the_follower_takes_over_when_the_leader_dies() {
    let client = client().await;
    let lease_ns = common::namespace(&client, "lease").await;
    let args = elect("failover", &lease_ns, 4);
    let first = Operator::start(&args).await;
    eventually(
        "the first operator leads",
        Duration::from_secs(10),
        || async { leads(&first).await.then_some(()) },
    )
    .await;
    let second = Operator::start(&args).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!leads(&second).await, "two leaders at once");

    let namespaces: Api<Namespace> = Api::all(client.clone());
    let home = create_org(&client).await;
    eventually("the leader reconciles", Duration::from_secs(10), || async {
        namespaces.get_opt(&home).await.ok().flatten()
    })
    .await;

    first.kill();
    let killed = Instant::now();
    let home = create_org(&client).await;
    eventually(
        "the follower takes over",
        Duration::from_secs(4 + 6),
        || async { leads(&second).await.then_some(()) },
    )
    .await;
    eventually(
        "the new leader reconciles",
        Duration::from_secs(10),
        || async { namespaces.get_opt(&home).await.ok().flatten() },
    )
    .await;
    eprintln!(
        "took over {:?} after the leader was killed (lease 4s)",
        killed.elapsed()
    );
    second.stop();
}

#[tokio::test]
async fn a_stopping_leader_steps_down_at_once() {
    let client = client().await;
    let lease_ns = common::namespace(&client, "lease").await;
    // A long lease: without stepping down, the next replica would wait 60s.
    let args = elect("handover", &lease_ns, 60);
    let first = Operator::start(&args).await;
    eventually(
        "the first operator leads",
        Duration::from_secs(10),
        || async { leads(&first).await.then_some(()) },
    )
    .await;
    assert_eq!(first.stop().code(), Some(0));
    let second = Operator::start(&args).await;
    eventually(
        "the next operator leads without waiting for the lease",
        Duration::from_secs(10),
        || async { leads(&second).await.then_some(()) },
    )
    .await;
    second.stop();
}
