//! Benchmark: converge 1,000 members x 100 resource namespaces (a mix of all-scope and
//! named bindings) and print how long it took, what was written, and that an idle
//! minute and a restart write nothing. Run with `make bench-access` (starts a local
//! control plane) or `cargo bench --bench access` against the cluster KUBECONFIG names.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{Operator, client, unique};
use futures::{StreamExt, stream};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::RoleBinding as NativeRoleBinding;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use kube_org::api::{Membership, Organization, RoleBinding};

const MEMBERS: usize = 1_000;
const RESOURCES: usize = 100;
const PARALLEL: usize = 16;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn create_all<K>(api: &Api<K>, objects: Vec<K>)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    stream::iter(objects)
        .for_each_concurrent(PARALLEL, |obj| async move {
            api.create(&PostParams::default(), &obj)
                .await
                .expect("creating a benchmark object");
        })
        .await;
}

async fn setup(client: &Client, members: usize, resources: usize) -> (String, String) {
    let org = unique("bench");
    let home = format!("org-{org}");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    // The home namespace is created here so the objects can exist before the operator
    // starts: the benchmark measures convergence from a cold start.
    let home_ns: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": home, "labels": {"kube-org.io/organization": org}}})).expect("ns");
    namespaces
        .create(&PostParams::default(), &home_ns)
        .await
        .expect("home namespace");
    let org_obj: Organization = serde_json::from_value(serde_json::json!({"apiVersion": "kube-org.io/v1alpha1", "kind": "Organization",
        "metadata": {"name": org}, "spec": {"owners": ["owner@example.com"], "resourceTypes": ["deployment"]}}))
    .expect("org");
    Api::<Organization>::all(client.clone())
        .create(&PostParams::default(), &org_obj)
        .await
        .expect("organization");

    let resource_names: Vec<String> = (0..resources).map(|i| format!("{org}-r{i}")).collect();
    stream::iter(resource_names.clone())
        .for_each_concurrent(PARALLEL, |name| {
            let namespaces = namespaces.clone();
            let org = org.clone();
            async move {
                let ns: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": name,
                    "labels": {"kube-org.io/organization": org, "kube-org.io/resource-type": "deployment"}}}))
                .expect("ns");
                namespaces.patch(&name, &PatchParams::apply("kube-org-bench"), &Patch::Apply(&ns)).await.expect("resource namespace");
            }
        })
        .await;

    let memberships: Vec<Membership> = (0..members)
        .map(|i| {
            serde_json::from_value(serde_json::json!({"apiVersion": "kube-org.io/v1alpha1", "kind": "Membership",
                "metadata": {"name": format!("m{i}"), "namespace": home}, "spec": {"email": format!("user{i}@example.com")}}))
            .expect("membership")
        })
        .collect();
    create_all(&Api::namespaced(client.clone(), &home), memberships).await;

    // Every third member views all resources; the others edit three named ones.
    let roles = ["viewer", "editor", "admin"];
    let bindings: Vec<RoleBinding> = (0..members)
        .map(|i| {
            let scope = if i % 3 == 0 {
                serde_json::json!({"resourceType": "deployment", "all": true})
            } else {
                let names: Vec<&String> = (0..3).map(|k| &resource_names[(i * 7 + k * 13) % resources]).collect();
                serde_json::json!({"resourceType": "deployment", "resources": names})
            };
            serde_json::from_value(serde_json::json!({"apiVersion": "kube-org.io/v1alpha1", "kind": "RoleBinding",
                "metadata": {"name": format!("b{i}"), "namespace": home},
                "spec": {"member": format!("user{i}@example.com"), "role": roles[i % 3], "scope": scope}}))
            .expect("binding")
        })
        .collect();
    create_all(&Api::namespaced(client.clone(), &home), bindings).await;
    (org, home)
}

/// How long one change takes to reach the authorizer, measured with SubjectAccessReview.
async fn time_until(client: &Client, user: &str, what: common::Can<'_>, allowed: bool) -> Duration {
    let started = Instant::now();
    while common::can(client, user, what).await != allowed {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no reaction within 60s"
        );
    }
    started.elapsed()
}

/// Reaction times on the converged organization: a member removed, a namespace labelled
/// in, a managed binding deleted behind kube-org's back.
async fn reaction_times(client: &Client, operator: &Operator, org: &str, home: &str) {
    // user0 views every resource (every third member has an all-scope binding).
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let fresh = format!("{org}-late");
    let ns: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": fresh,
        "labels": {"kube-org.io/organization": org, "kube-org.io/resource-type": "deployment"}}}))
    .expect("ns");
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .expect("a new resource namespace");
    let labelled = time_until(
        client,
        "user0@example.com",
        common::Can::new("list", "pods", Some(&fresh)),
        true,
    )
    .await;
    println!(
        "new resource namespace bound for all-scope members in: {} ms",
        labelled.as_millis()
    );
    // Each measurement starts from a settled operator (labelling a namespace rewrites the
    // status of every all-scope member, which a following change would queue behind).
    operator
        .settle(Duration::from_secs(2), Duration::from_secs(300))
        .await;

    let existing = format!("{org}-r0");
    let natives: Api<NativeRoleBinding> = Api::namespaced(client.clone(), &existing);
    let name = format!("kube-org:{org}:view");
    let deleted = natives
        .delete(&name, &Default::default())
        .await
        .expect("deleting a managed binding");
    let old_uid = deleted.left().and_then(|rb| rb.metadata.uid);
    let started = Instant::now();
    while natives
        .get_opt(&name)
        .await
        .expect("get")
        .and_then(|rb| rb.metadata.uid)
        == old_uid
        || natives.get_opt(&name).await.expect("get").is_none()
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "not restored within 60s"
        );
    }
    println!(
        "deleted managed binding re-created in: {} ms",
        started.elapsed().as_millis()
    );
    operator
        .settle(Duration::from_secs(2), Duration::from_secs(300))
        .await;

    let memberships: Api<Membership> = Api::namespaced(client.clone(), home);
    memberships
        .delete("m0", &Default::default())
        .await
        .expect("removing a member");
    let revoked = time_until(
        client,
        "user0@example.com",
        common::Can::new("list", "pods", Some(&existing)),
        false,
    )
    .await;
    println!(
        "member removed: access revoked in {} ms",
        revoked.as_millis()
    );
}

#[tokio::main]
async fn main() {
    let members = env_usize("BENCH_MEMBERS", MEMBERS);
    let resources = env_usize("BENCH_RESOURCES", RESOURCES);
    let idle = Duration::from_secs(env_usize("BENCH_IDLE_SECONDS", 60) as u64);
    let client = client().await;
    let started = Instant::now();
    let (org, home) = setup(&client, members, resources).await;
    println!(
        "setup: {members} members, {resources} resource namespaces, {members} bindings created in {:.1}s",
        started.elapsed().as_secs_f64()
    );

    let operator = Operator::start(&[]).await;
    let started = Instant::now();
    let orgs: Api<Organization> = Api::all(client.clone());
    let bindings: Api<RoleBinding> = Api::namespaced(client.clone(), &home);
    loop {
        let members_seen = orgs
            .get(&org)
            .await
            .ok()
            .and_then(|o| o.status)
            .map(|s| s.members)
            .unwrap_or_default();
        let with_status = bindings
            .list(&ListParams::default())
            .await
            .expect("bindings")
            .items
            .iter()
            .filter(|b| b.status.is_some())
            .count();
        if members_seen as usize == members + 1 && with_status == members + 1 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1800),
            "no convergence within 30 minutes; log:\n{}",
            operator.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let converged_at = started.elapsed();
    let writes = operator
        .settle(Duration::from_secs(3), Duration::from_secs(600))
        .await;
    let natives = Api::<NativeRoleBinding>::all(client.clone())
        .list(&ListParams::default().labels(&format!("kube-org.io/organization={org}")))
        .await
        .expect("native bindings")
        .items
        .len();
    println!(
        "converged: {:.1}s (every member and binding reconciled)",
        converged_at.as_secs_f64()
    );
    println!("native RoleBindings written: {natives} (for {resources} namespaces)");
    println!("API write requests: {writes}");

    tokio::time::sleep(idle).await;
    println!(
        "API writes during {}s idle: {}",
        idle.as_secs(),
        operator.writes().await - writes
    );

    reaction_times(&client, &operator, &org, &home).await;

    operator.stop();
    let restarted = Operator::start(&[]).await;
    let restart_writes = restarted
        .settle(Duration::from_secs(5), Duration::from_secs(600))
        .await;
    println!("API writes on restart with nothing changed: {restart_writes}");
    restarted.stop();
    let _ = orgs.delete(&org, &Default::default()).await;
}
