//! Flags of `kube-org run` that change what it does, against the real control plane:
//! `--log-format json` (every line one JSON object; the lines of a reconcile name its
//! object) and `--organizations-selector` (sharding organizations between operators).

mod common;

use std::time::Duration;

use common::{Operator, client, eventually, unique};
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::PostParams;
use kube_org::api::Organization;

/// Every operator reconciles every Organization it selects: the tests of this file run
/// one at a time so that only one test's operator acts.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Creates an Organization with `labels`; returns its home namespace.
async fn create_org(client: &kube::Client, name: &str, labels: serde_json::Value) -> String {
    let org: Organization = serde_json::from_value(serde_json::json!({
        "apiVersion": "kube-org.io/v1alpha1", "kind": "Organization",
        "metadata": {"name": name, "labels": labels}, "spec": {"owners": ["alice@example.com"]}
    }))
    .expect("organization");
    Api::<Organization>::all(client.clone())
        .create(&PostParams::default(), &org)
        .await
        .expect("creating an organization");
    format!("org-{name}")
}

#[tokio::test]
async fn json_log_lines_of_a_reconcile_name_the_organization() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let client = client().await;
    let operator = Operator::start(&["--log-format".to_string(), "json".to_string()]).await;
    let name = unique("logs");
    create_org(&client, &name, serde_json::json!({})).await;

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
    operator.stop();
}

#[tokio::test]
async fn an_operator_with_an_organizations_selector_handles_only_those() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let client = client().await;
    let team = unique("team");
    let operator = Operator::start(&[
        "--organizations-selector".to_string(),
        format!("kube-org.io/test-team={team}"),
    ])
    .await;
    let mine = create_org(
        &client,
        &unique("mine"),
        serde_json::json!({"kube-org.io/test-team": team}),
    )
    .await;
    let other = create_org(&client, &unique("other"), serde_json::json!({})).await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    eventually(
        "the selected organization's home namespace",
        Duration::from_secs(15),
        || async { namespaces.get_opt(&mine).await.ok().flatten() },
    )
    .await;
    // Watch long enough for the other organization to have been handled, had it been.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        namespaces
            .get_opt(&other)
            .await
            .expect("reading a namespace")
            .is_none(),
        "the operator handled an organization its selector leaves out"
    );
    let orgs: Api<Organization> = Api::all(client.clone());
    for home in [&mine, &other] {
        let name = home.trim_start_matches("org-");
        let _ = orgs.delete(name, &Default::default()).await;
    }
    operator.stop();
}
