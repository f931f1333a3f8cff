//! Leader election between two operator processes on the real control plane: only the
//! leader reconciles; when it is killed the other takes over within the lease duration
//! plus a few seconds; a leader killed while sending invitations costs at most one
//! duplicate email; a leader that gets SIGTERM steps down at once.

mod common;
#[path = "invitations/http.rs"]
mod http;
#[path = "invitations/mailpit.rs"]
#[allow(dead_code)] // this file reads mail; it starts no Mailpit of its own
mod mailpit;

use std::time::{Duration, Instant};

use common::{
    Operator, Shard, client, create_organization, eventually, unique, wait_for_namespace,
};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::Api;
use kube::api::PostParams;
use kube_org::api::Invitation;

/// Flags electing a leader among the operators of one test, with a Lease of their own
/// in `kube-org-system` (where the operator's Role lets it keep Leases); they handle
/// only `shard`'s objects, so the tests of this file run in parallel.
fn elect(shard: &Shard, seconds: u64) -> Vec<String> {
    let mut args: Vec<String> = [
        "--leader-elect",
        "--lease-name",
        &shard.value,
        "--lease-namespace",
        "kube-org-system",
        "--lease-duration-seconds",
        &seconds.to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(shard.operator_args());
    args
}

async fn leads(operator: &Operator) -> bool {
    operator.metric("kube_org_leader").await == 1.0
}

/// Waits until `operator` leads.
async fn wait_until_leads(operator: &Operator, what: &str, within: Duration) {
    eventually(what, within, || async {
        leads(operator).await.then_some(())
    })
    .await;
}

/// Creates an Organization in `shard`, with extra `spec` fields; returns its home
/// namespace once the leader created it.
async fn create_org(client: &kube::Client, shard: &Shard, spec: serde_json::Value) -> String {
    let home = create_organization(client, &unique("lead"), shard.labels(), spec).await;
    wait_for_namespace(client, &home, Duration::from_secs(10)).await;
    home
}

/// Invites `email` (viewer of every deployment) into `home`, in `shard`.
async fn invite(client: &kube::Client, shard: &Shard, home: &str, name: &str, email: &str) {
    let invitation: Invitation = serde_json::from_value(serde_json::json!({
        "apiVersion": "kube-org.io/v1alpha1", "kind": "Invitation",
        "metadata": {"name": name, "labels": shard.labels()},
        "spec": {"email": email, "roles": [{"role": "viewer", "scope": {"resourceType": "deployment", "all": true}}]}
    }))
    .expect("invitation");
    Api::<Invitation>::namespaced(client.clone(), home)
        .create(&PostParams::default(), &invitation)
        .await
        .expect("creating an invitation");
}

#[tokio::test]
async fn the_follower_takes_over_when_the_leader_dies() {
    let client = client().await;
    let shard = Shard::new("failover");
    let args = elect(&shard, 4);
    let first = Operator::start(&args).await;
    wait_until_leads(&first, "the first operator leads", Duration::from_secs(10)).await;
    let second = Operator::start(&args).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!leads(&second).await, "two leaders at once");
    // The leader reconciles.
    create_org(&client, &shard, serde_json::json!({})).await;

    first.kill();
    let killed = Instant::now();
    let home = create_organization(
        &client,
        &unique("lead"),
        shard.labels(),
        serde_json::json!({}),
    )
    .await;
    wait_until_leads(
        &second,
        "the follower takes over",
        Duration::from_secs(4 + 6),
    )
    .await;
    // The new leader reconciles.
    wait_for_namespace(&client, &home, Duration::from_secs(10)).await;
    eprintln!(
        "took over {:?} after the leader was killed (lease 4s)",
        killed.elapsed()
    );
    second.stop();
}

#[tokio::test]
async fn a_leader_given_sigterm_steps_down_at_once() {
    client().await; // CRDs and the operator's RBAC
    // A long lease: without stepping down, the next replica would wait 60s.
    let shard = Shard::new("handover");
    let args = elect(&shard, 60);
    let first = Operator::start(&args).await;
    wait_until_leads(&first, "the first operator leads", Duration::from_secs(10)).await;
    let stopping = Instant::now();
    assert_eq!(first.terminate().code(), Some(0), "SIGTERM is a clean exit");
    eprintln!("the leader exited {:?} after SIGTERM", stopping.elapsed());
    let second = Operator::start(&args).await;
    wait_until_leads(
        &second,
        "the next operator leads without waiting for the lease",
        Duration::from_secs(10),
    )
    .await;
    second.stop();
}

/// How many emails Mailpit holds for each address at `domain`.
async fn emails_per_address(domain: &str) -> std::collections::BTreeMap<String, usize> {
    let api =
        std::env::var("KUBE_ORG_MAILPIT_API").expect("KUBE_ORG_MAILPIT_API: run with `make test`");
    let answer = http::get(&format!(
        "{api}/api/v1/search?query=to%3A{domain}&limit=1000"
    ))
    .await;
    assert_eq!(answer.status, 200, "Mailpit search: {}", answer.body);
    let mut counts = std::collections::BTreeMap::new();
    for message in answer.json()["messages"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        for to in message["To"].as_array().cloned().unwrap_or_default() {
            if let Some(address) = to["Address"].as_str().filter(|a| a.ends_with(domain)) {
                *counts.entry(address.to_string()).or_default() += 1;
            }
        }
    }
    counts
}

fn delivered(invitation: &Invitation) -> bool {
    invitation.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == "Delivered" && c.status == "True")
    })
}

#[tokio::test]
async fn a_leader_killed_while_sending_costs_at_most_one_duplicate_email() {
    const INVITATIONS: usize = 80;
    let client = client().await;
    let shard = Shard::new("emails");
    let mut args = elect(&shard, 4);
    let mail = common::shared_mail_args();
    assert!(
        !mail.is_empty(),
        "KUBE_ORG_MAILPIT_SMTP is not set: run with `make test`"
    );
    args.extend(mail);
    args.extend([
        "--accept-base-url".to_string(),
        "http://accept.invalid".to_string(),
    ]);
    let first = Operator::start(&args).await;
    wait_until_leads(&first, "the first operator leads", Duration::from_secs(10)).await;
    let second = Operator::start(&args).await;

    let home = create_org(&client, &shard, serde_json::json!({})).await;
    let domain = format!("{}.example.com", unique("failover"));
    let invitations: Api<Invitation> = Api::namespaced(client.clone(), &home);
    for i in 0..INVITATIONS {
        invite(
            &client,
            &shard,
            &home,
            &format!("i{i}"),
            &format!("i{i}@{domain}"),
        )
        .await;
    }
    // Kill the leader mid-work: some emails out, most not.
    let before_kill = eventually(
        "the leader sends the first emails",
        Duration::from_secs(30),
        || async {
            let sent: usize = emails_per_address(&domain).await.values().sum();
            (sent >= 5).then_some(sent)
        },
    )
    .await;
    first.kill();
    let killed = Instant::now();
    assert!(
        before_kill < INVITATIONS,
        "every email left before the kill; nothing was mid-work"
    );

    eventually(
        "every invitation delivered after the failover",
        Duration::from_secs(90),
        || async {
            let list = invitations.list(&Default::default()).await.ok()?;
            list.items.iter().all(delivered).then_some(())
        },
    )
    .await;
    let counts = emails_per_address(&domain).await;
    let total: usize = counts.values().sum();
    eprintln!(
        "{before_kill} of {INVITATIONS} emails out before the kill; all delivered {:?} after it; {} duplicate(s)",
        killed.elapsed(),
        total - counts.len()
    );
    assert_eq!(
        counts.len(),
        INVITATIONS,
        "every invitee got an email: {counts:?}"
    );
    assert!(
        total <= INVITATIONS + 1,
        "more than one duplicate email for one crash: {counts:?}"
    );
    second.stop();
}

#[tokio::test]
async fn a_leader_that_loses_its_lease_stops_acting() {
    let client = client().await;
    let shard = Shard::new("stolen");
    let args = elect(&shard, 4);
    let lease_name = shard.value.clone();
    let mut leader = Operator::start(&args).await;
    wait_until_leads(&leader, "the operator leads", Duration::from_secs(10)).await;

    // Another holder takes the Lease (as after a network partition healed): the
    // operator must stop acting, and it exits so that Kubernetes restarts it clean.
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-org-system");
    let mut lease = leases.get(&lease_name).await.expect("the Lease");
    let spec = lease.spec.as_mut().expect("a held Lease");
    spec.holder_identity = Some("another-replica".into());
    spec.renew_time = Some(MicroTime(k8s_openapi::jiff::Timestamp::now()));
    spec.lease_duration_seconds = Some(60);
    leases
        .replace(&lease_name, &PostParams::default(), &lease)
        .await
        .expect("taking the Lease");
    let status = eventually("the operator exits", Duration::from_secs(15), || {
        let exited = leader.exited();
        async move { exited }
    })
    .await;
    assert!(
        !status.success(),
        "losing the Lease is a failure exit: {status}"
    );
}

#[tokio::test]
async fn a_follower_serves_the_accept_endpoint() {
    let client = client().await;
    let shard = Shard::new("accept");
    let mut args = elect(&shard, 15);
    args.extend(common::shared_mail_args());
    let leader = Operator::start(&args).await;
    wait_until_leads(&leader, "the operator leads", Duration::from_secs(10)).await;
    let follower = Operator::start(&args).await;
    assert!(!leads(&follower).await, "two leaders at once");

    // The emailed link points at the follower: acceptance must not need the leader.
    let accept_url = serde_json::json!({"invitations": {"acceptURL": follower.base_url}});
    let home = create_org(&client, &shard, accept_url).await;
    let email = format!("{}@example.com", unique("erin"));
    invite(&client, &shard, &home, "erin", &email).await;
    let mail = mailpit::Mailpit::shared()
        .wait_for(&email, 1)
        .await
        .remove(0);
    assert!(
        mail.link().starts_with(&follower.base_url),
        "{}",
        mail.link()
    );

    let answer = http::post_json(
        &format!("{}/invitations/accept", follower.base_url),
        &mail.token(),
    )
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let memberships: Api<kube_org::api::Membership> = Api::namespaced(client.clone(), &home);
    let members = memberships
        .list(&Default::default())
        .await
        .expect("memberships");
    assert!(
        members
            .items
            .iter()
            .any(|m| m.spec.email.normalized() == email),
        "no Membership for {email}"
    );
    assert!(!leads(&follower).await, "the follower took over instead");
}
