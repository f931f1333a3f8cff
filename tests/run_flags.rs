//! Flags of `kube-org run` that change what it does, against the real control plane:
//! `--log-format json` (every line one JSON object; the lines of a reconcile name its
//! object), `--organizations-selector` (sharding organizations between operators),
//! `--metrics-listen` (operational endpoints apart from the public one) and what a
//! dying controller does to the process.

mod common;

use std::time::Duration;

use common::{
    Operator, Shard, client, create_organization, eventually, http_get, http_get_status, unique,
    wait_for_namespace,
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

/// The public listener (`--listen`) serves the accept endpoint only; `/metrics`,
/// `/healthz` and `/readyz` are on `--metrics-listen`.
#[tokio::test]
async fn operational_endpoints_listen_apart_from_the_accept_endpoint() {
    client().await;
    let shard = Shard::new("ports");
    let operator = Operator::start(&shard.operator_args()).await;
    for path in ["/metrics", "/healthz", "/readyz"] {
        assert_eq!(
            http_get_status(&format!("{}{path}", operator.metrics_url)).await,
            Some(200),
            "{path} on --metrics-listen"
        );
        assert_eq!(
            http_get_status(&format!("{}{path}", operator.base_url)).await,
            Some(404),
            "{path} must not be on the public --listen"
        );
    }
    let token = "ab".repeat(32);
    assert_eq!(
        http_get_status(&format!(
            "{}/invitations/accept?token={token}",
            operator.base_url
        ))
        .await,
        Some(200),
        "the accept page on --listen"
    );
    assert_eq!(
        http_get_status(&format!(
            "{}/invitations/accept?token={token}",
            operator.metrics_url
        ))
        .await,
        Some(404),
        "no accept page on --metrics-listen"
    );
    let (_, metrics) = http_get(&format!("{}/metrics", operator.metrics_url))
        .await
        .expect("/metrics answers");
    assert!(metrics.contains("kube_org_leader"), "{metrics}");
    operator.stop();
}

/// A controller task that dies while the process leads makes it exit non-zero (and
/// release the Lease), so that Kubernetes restarts it and another replica takes over.
#[tokio::test]
async fn a_dying_controller_stops_the_process_with_an_error() {
    client().await;
    let shard = Shard::new("crash");
    let mut args = shard.operator_args();
    args.extend([
        "--test-crash-controller".to_string(),
        "invitation".to_string(),
    ]);
    let mut operator = Operator::spawn(&args);
    let status = eventually(
        "kube-org run exits after its controller died",
        Duration::from_secs(30),
        || {
            let exited = operator.exited();
            async move { exited }
        },
    )
    .await;
    assert!(!status.success(), "exited with {status}");
    let log = operator.log_tail();
    assert!(
        log.contains("a controller stopped while it should run"),
        "the log says why:\n{log}"
    );
}

/// Text logs written to a file (as `kubectl logs` reads them) carry no ANSI colour
/// codes.
#[tokio::test]
async fn text_logs_to_a_file_have_no_colour_codes() {
    client().await;
    let shard = Shard::new("plain");
    let mut args = shard.operator_args();
    args.extend(["--log-format".to_string(), "text".to_string()]);
    let operator = Operator::start(&args).await;
    let log = operator.log_tail();
    assert!(log.contains("kube-org started"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "colour codes in a log file:\n{log}"
    );
    operator.stop();
}
