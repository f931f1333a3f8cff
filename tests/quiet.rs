//! Quiet when nothing changes: after converging, the operator makes no API writes and
//! runs no reconciles; a restarted operator makes no writes either.

mod common;

use std::time::Duration;

use common::{Operator, client, eventually, unique, wait_for_namespace};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use kube_org::api::{Membership, Organization, RoleBinding};

async fn create<K>(api: &Api<K>, value: serde_json::Value)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let obj: K = serde_json::from_value(value).expect("object");
    api.create(&PostParams::default(), &obj)
        .await
        .expect("creating");
}

/// Whether any object of `api` is being deleted (None when the list fails).
async fn any_being_deleted<K>(api: &Api<K>) -> Option<bool>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let list = api.list(&Default::default()).await.ok()?;
    Some(
        list.items
            .iter()
            .any(|o| o.meta().deletion_timestamp.is_some()),
    )
}

/// Waits until what earlier test binaries deleted is gone: the operator reconciles every
/// Organization in the cluster, and removing the finalizers of a teardown in progress
/// are writes it must make, which this test would otherwise count as idle writes.
async fn wait_for_earlier_teardowns(client: &Client) {
    let orgs: Api<Organization> = Api::all(client.clone());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    eventually(
        "organizations and namespaces deleted earlier are gone",
        Duration::from_secs(120),
        || async {
            let deleting =
                any_being_deleted(&orgs).await? || any_being_deleted(&namespaces).await?;
            (!deleting).then_some(())
        },
    )
    .await;
}

/// An organization with every kind of outcome: all-scope and named bindings, a missing
/// named resource, a binding for a non-member, console access, a billing admin.
async fn busy_organization(client: &Client) -> (String, String) {
    let org = unique("quiet");
    let home = format!("org-{org}");
    create(
        &Api::<Organization>::all(client.clone()),
        serde_json::json!({"apiVersion": "kube-org.io/v1alpha1", "kind": "Organization", "metadata": {"name": org},
            "spec": {"owners": ["alice@example.com"], "resourceTypes": ["deployment"]}}),
    )
    .await;
    wait_for_namespace(client, &home, Duration::from_secs(10)).await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let resources: Vec<String> = (0..3).map(|_| unique("res")).collect();
    for ns in &resources {
        let labelled: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": ns,
            "labels": {"kube-org.io/organization": org, "kube-org.io/resource-type": "deployment"}}}))
        .expect("namespace");
        namespaces
            .patch(
                ns,
                &PatchParams::apply("kube-org-tests"),
                &Patch::Apply(&labelled),
            )
            .await
            .expect("labelling");
    }
    let memberships: Api<Membership> = Api::namespaced(client.clone(), &home);
    let bindings: Api<RoleBinding> = Api::namespaced(client.clone(), &home);
    for who in ["bob", "carol", "dave"] {
        create(
            &memberships,
            serde_json::json!({"apiVersion": "kube-org.io/v1alpha1", "kind": "Membership",
            "metadata": {"name": who}, "spec": {"email": format!("{who}@example.com")}}),
        )
        .await;
    }
    let binding = |name: &str, member: &str, role: &str, scope: serde_json::Value, access: &str| {
        serde_json::json!({"apiVersion": "kube-org.io/v1alpha1", "kind": "RoleBinding", "metadata": {"name": name},
            "spec": {"member": member, "role": role, "scope": scope, "access": access}})
    };
    for value in [
        binding(
            "b1",
            "bob@example.com",
            "editor",
            serde_json::json!({"resourceType": "deployment", "all": true}),
            "full",
        ),
        binding(
            "b2",
            "carol@example.com",
            "admin",
            serde_json::json!({"resourceType": "deployment", "resources": [resources[0], "missing"]}),
            "full",
        ),
        binding(
            "b3",
            "dave@example.com",
            "viewer",
            serde_json::json!({"resourceType": "deployment", "all": true}),
            "console",
        ),
        binding(
            "b4",
            "dave@example.com",
            "billing-admin",
            serde_json::json!({"organization": {}}),
            "full",
        ),
        binding(
            "b5",
            "mallory@example.com",
            "admin",
            serde_json::json!({"resourceType": "deployment", "all": true}),
            "full",
        ),
    ] {
        create(&bindings, value).await;
    }
    (org, home)
}

#[tokio::test]
async fn after_converging_nothing_is_written_and_a_restart_writes_nothing() {
    let client = client().await;
    let operator = Operator::start(&[]).await;
    // Finalizers left by earlier test binaries' operators are this operator's to remove.
    wait_for_earlier_teardowns(&client).await;
    let (org, home) = busy_organization(&client).await;

    let orgs: Api<Organization> = Api::all(client.clone());
    eventually(
        "the organization reconciled with every member",
        Duration::from_secs(20),
        || async {
            orgs.get(&org)
                .await
                .ok()?
                .status
                .filter(|s| s.members == 4)
                .map(|_| ())
        },
    )
    .await;
    let bindings: Api<RoleBinding> = Api::namespaced(client.clone(), &home);
    eventually(
        "every binding has a status",
        Duration::from_secs(20),
        || async {
            let list = bindings.list(&Default::default()).await.ok()?;
            list.items.iter().all(|b| b.status.is_some()).then_some(())
        },
    )
    .await;
    let converged = operator
        .settle(Duration::from_secs(2), Duration::from_secs(30))
        .await;
    assert!(
        converged > 0,
        "the operator wrote nothing at all: the counter is broken"
    );
    let reconciles = operator.metric("kube_org_reconciles_total").await;

    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        operator.writes().await,
        converged,
        "writes while nothing changed"
    );
    assert_eq!(
        operator.metric("kube_org_reconciles_total").await,
        reconciles,
        "reconciles while nothing changed (a hot loop)"
    );

    let status_before = orgs.get(&org).await.expect("org").status;
    assert_eq!(
        operator.stop().code(),
        Some(0),
        "the operator stops cleanly"
    );
    let restarted = Operator::start(&[]).await;
    let writes = restarted
        .settle(Duration::from_secs(3), Duration::from_secs(30))
        .await;
    assert_eq!(
        writes,
        0,
        "writes on start-up with nothing changed: {:?}\nlog:\n{}",
        restarted
            .writes_by_kind()
            .await
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .collect::<Vec<_>>(),
        restarted.log_tail()
    );
    assert!(
        restarted.metric("kube_org_reconciles_total").await >= 1.0,
        "the restarted operator did reconcile"
    );
    assert_eq!(
        orgs.get(&org).await.expect("org").status,
        status_before,
        "status untouched by the restart"
    );
}
