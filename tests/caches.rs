//! Access waits only for the caches its decision reads: an operator that cannot read
//! Invitations at all (its Invitation cache never fills) still grants and revokes,
//! because only the Organization's pending-invitation count reads that cache.

mod common;

use common::org::{REACT, TestOrg, all};
use common::{Can, Operator, Shard, client, create_organization, eventually_can, unique};
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, RoleBinding};
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};

/// A ServiceAccount with the operator's permissions minus every right on Invitations;
/// returns `namespace/name`.
async fn operator_blind_to_invitations(client: &Client) -> String {
    let name = unique("no-invitations");
    let namespace = "kube-org-system";
    let operator: ClusterRole = Api::all(client.clone())
        .get("kube-org-operator")
        .await
        .expect("the operator's aggregated ClusterRole");
    let mut rules = operator.rules.unwrap_or_default();
    for rule in &mut rules {
        if rule.api_groups.iter().flatten().any(|g| g == "kube-org.io") {
            rule.resources
                .get_or_insert_default()
                .retain(|r| !r.starts_with("invitations"));
        }
    }
    rules.retain(|rule| rule.resources.as_ref().is_none_or(|r| !r.is_empty()));
    let subject =
        serde_json::json!([{"kind": "ServiceAccount", "name": name, "namespace": namespace}]);
    let objects = (
        serde_json::json!({"metadata": {"name": name, "namespace": namespace}}),
        serde_json::json!({"metadata": {"name": name}, "rules": rules}),
        serde_json::json!({
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
            "subjects": subject,
        }),
        // Claims and leader election live in the operator's namespace.
        serde_json::json!({
            "metadata": {"name": name, "namespace": namespace},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "kube-org-leader-election"},
            "subjects": subject,
        }),
    );
    let pp = PostParams::default();
    Api::<ServiceAccount>::namespaced(client.clone(), namespace)
        .create(&pp, &serde_json::from_value(objects.0).unwrap())
        .await
        .expect("ServiceAccount");
    Api::<ClusterRole>::all(client.clone())
        .create(&pp, &serde_json::from_value(objects.1).unwrap())
        .await
        .expect("ClusterRole");
    Api::<ClusterRoleBinding>::all(client.clone())
        .create(&pp, &serde_json::from_value(objects.2).unwrap())
        .await
        .expect("ClusterRoleBinding");
    Api::<RoleBinding>::namespaced(client.clone(), namespace)
        .create(&pp, &serde_json::from_value(objects.3).unwrap())
        .await
        .expect("RoleBinding");
    format!("{namespace}/{name}")
}

#[tokio::test]
async fn access_is_granted_and_revoked_while_the_invitation_cache_cannot_fill() {
    let client = client().await;
    let service_account = operator_blind_to_invitations(&client).await;
    let user = format!(
        "system:serviceaccount:{}",
        service_account.replace('/', ":")
    );
    assert!(
        !common::can(
            &client,
            &user,
            Can::new("list", "invitations.kube-org.io", None)
        )
        .await,
        "the test's operator must not be able to list Invitations"
    );
    let shard = Shard::new("blind");
    let mut operator = Operator::spawn_as(&service_account, &shard.operator_args());

    let name = unique("blind");
    let home = create_organization(
        &client,
        &name,
        shard.labels(),
        serde_json::json!({"resourceTypes": ["deployment"]}),
    )
    .await;
    common::wait_for_namespace(&client, &home, REACT).await;
    let org = TestOrg {
        client: client.clone(),
        name,
        home,
    };
    let prod = org.resource("deployment").await;
    org.member_with_role("bob@example.com", "bob-viewer", "viewer", all("deployment"))
        .await;
    let list_pods = Can::new("list", "pods", Some(&prod));
    eventually_can(&client, "bob@example.com", list_pods, true, REACT).await;

    // The organization is not stuck waiting for Invitations: a revocation applies too.
    org.bindings()
        .delete("bob-viewer", &DeleteParams::default())
        .await
        .expect("deleting the binding");
    eventually_can(&client, "bob@example.com", list_pods, false, REACT).await;
    assert!(
        operator.exited().is_none(),
        "the operator keeps running:\n{}",
        operator.log_tail()
    );
    operator.stop();
    org.delete().await;
}
