//! Structured logs: with `--log-format json` every line is one JSON object, and the
//! lines a reconcile writes name the object it works on.

mod common;

use std::time::Duration;

use common::{Operator, client, eventually, unique};
use kube::Api;
use kube::api::PostParams;
use kube_org::api::Organization;

#[tokio::test]
async fn json_log_lines_of_a_reconcile_name_the_organization() {
    let client = client().await;
    let operator = Operator::start(&["--log-format".to_string(), "json".to_string()]).await;
    let name = unique("logs");
    let org: Organization = serde_json::from_value(serde_json::json!({
        "apiVersion": "kube-org.io/v1alpha1", "kind": "Organization",
        "metadata": {"name": name}, "spec": {"owners": ["alice@example.com"]}
    }))
    .expect("organization");
    Api::<Organization>::all(client.clone())
        .create(&PostParams::default(), &org)
        .await
        .expect("creating an organization");

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
