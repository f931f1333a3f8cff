//! Flags of `kube-org run` that change what it does, against the real control plane:
//! `--log-format json` (every line one JSON object; the lines of a reconcile name its
//! object) and `--organizations-selector` (sharding organizations between operators).

mod common;

use std::time::Duration;

use common::{
    Operator, Shard, client, create_organization, eventually, unique, wait_for_namespace,
};
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube_org::api::Organization;

/// Deletes the organizations the test created (their operator is still running, so it
/// removes its finalizers).
async fn delete_orgs(client: &kube::Client, homes: &[&str]) {
    let orgs: Api<Organization> = Api::all(client.clone());
    for home in homes {
        let _ = orgs
            .delete(home.trim_start_matches("org-"), &Default::default())
            .await;
    }
}

#[tokio::test]
async fn json_log_lines_of_a_reconcile_name_the_organization() {
    let client = client().await;
    let shard = Shard::new("logs");
    let mut args = shard.operator_args();
    args.extend(["--log-format".to_string(), "json".to_string()]);
    let operator = Operator::start(&args).await;
    let name = unique("logs");
    let home = create_organization(&client, &name, shard.labels(), serde_json::json!({})).await;

    let line = eventually(
        "a log line about the new organization",
        Duration::from_secs(15),
        || async {
            let text = std::fs::read_to_string(&operator.log).ok()?;
            text.lines()
                .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
                .find(|line| {
                    line["fields"]["message"] == "access updated"
                        && line["span"]["organization"] == name.as_str()
                })
        },
    )
    .await;
    assert_eq!(line["level"], "INFO", "{line}");
    let text = std::fs::read_to_string(&operator.log).expect("the log");
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|error| panic!("not a JSON log line ({error}): {line}"));
    }
    delete_orgs(&client, &[&home]).await;
    operator.stop();
}

#[tokio::test]
async fn an_operator_with_an_organizations_selector_handles_only_those() {
    let client = client().await;
    let shard = Shard::new("team");
    let operator = Operator::start(&shard.operator_args()).await;
    let mine = create_organization(
        &client,
        &unique("mine"),
        shard.labels(),
        serde_json::json!({}),
    )
    .await;
    let other = create_organization(
        &client,
        &unique("other"),
        serde_json::json!({}),
        serde_json::json!({}),
    )
    .await;
    wait_for_namespace(&client, &mine, Duration::from_secs(15)).await;
    // Watch long enough for the other organization to have been handled, had it been.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    assert!(
        namespaces
            .get_opt(&other)
            .await
            .expect("reading a namespace")
            .is_none(),
        "the operator handled an organization its selector leaves out"
    );
    delete_orgs(&client, &[&mine, &other]).await;
    operator.stop();
}
