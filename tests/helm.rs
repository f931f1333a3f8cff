//! The Helm chart `charts/kube-org`: `helm lint` passes, its rendering passes a
//! server-side dry run against the real API server, and with default values it renders
//! exactly the objects `manifests/` installs (so the two cannot drift). `helm` is Helm
//! 4.3.2, built by `tests/controlplane/build.sh` from `helm.sh/helm/v4`.

mod common;

use std::collections::BTreeMap;
use std::process::Command;

use common::{run_with_stdin, tool};
use serde::Deserialize;

fn root() -> &'static str {
    env!("CARGO_MANIFEST_DIR")
}

/// `helm template kube-org charts/kube-org --include-crds ARGS`.
fn render(args: &[&str]) -> String {
    let mut helm = Command::new(tool("helm"));
    helm.args([
        "template",
        "kube-org",
        &format!("{}/charts/kube-org", root()),
    ])
    .arg("--include-crds")
    .args(args);
    run_with_stdin(helm, "")
}

/// The objects of a YAML stream, by `kind namespace/name`.
fn objects(yaml: &str) -> BTreeMap<String, serde_yaml::Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .filter_map(|document| {
            let value = serde_yaml::Value::deserialize(document).expect("valid YAML");
            (!value.is_null()).then_some(value)
        })
        .map(|mut value| {
            strip_documented_differences(&mut value);
            let meta = &value["metadata"];
            let key = format!(
                "{} {} {}/{}",
                value["apiVersion"].as_str().unwrap_or_default(),
                value["kind"].as_str().unwrap_or_default(),
                meta["namespace"].as_str().unwrap_or_default(),
                meta["name"].as_str().unwrap_or_default()
            );
            (key, value)
        })
        .collect()
}

/// Numbers compare by value: `crds/` writes `minimum: 0.0`, kustomize prints `0`.
fn numbers_as_floats(value: &mut serde_yaml::Value) {
    match value {
        serde_yaml::Value::Number(n) => {
            *value = serde_yaml::Value::Number(n.as_f64().unwrap_or(f64::NAN).into())
        }
        serde_yaml::Value::Sequence(items) => items.iter_mut().for_each(numbers_as_floats),
        serde_yaml::Value::Mapping(map) => map.values_mut().for_each(numbers_as_floats),
        _ => {}
    }
}

/// The differences the chart may have (README, "Helm"): the labels Helm tooling adds.
fn strip_documented_differences(value: &mut serde_yaml::Value) {
    numbers_as_floats(value);
    if let Some(labels) = value
        .get_mut("metadata")
        .and_then(|m| m.get_mut("labels"))
        .and_then(|l| l.as_mapping_mut())
    {
        for label in [
            "helm.sh/chart",
            "app.kubernetes.io/managed-by",
            "app.kubernetes.io/instance",
            "app.kubernetes.io/version",
        ] {
            labels.remove(label);
        }
    }
}

#[test]
fn the_chart_passes_helm_lint() {
    let mut helm = Command::new(tool("helm"));
    helm.args(["lint", "--strict", &format!("{}/charts/kube-org", root())]);
    run_with_stdin(helm, "");
}

#[test]
fn with_default_values_the_chart_renders_what_manifests_installs() {
    let mut kustomize = Command::new("kubectl");
    kustomize.args(["kustomize", &format!("{}/manifests", root())]);
    let manifests = objects(&run_with_stdin(kustomize, ""));
    let chart = objects(&render(&[]));
    let only_manifests: Vec<_> = manifests
        .keys()
        .filter(|k| !chart.contains_key(*k))
        .collect();
    let only_chart: Vec<_> = chart
        .keys()
        .filter(|k| !manifests.contains_key(*k))
        .collect();
    assert!(
        only_manifests.is_empty() && only_chart.is_empty(),
        "only in manifests/: {only_manifests:?}; only in the chart: {only_chart:?}"
    );
    for (key, object) in &manifests {
        assert_eq!(
            Some(object),
            chart.get(key),
            "{key} differs between manifests/ and charts/kube-org"
        );
    }
    assert!(manifests.len() >= 20, "{:?}", manifests.keys());
}

#[tokio::test]
async fn the_rendered_chart_passes_a_server_side_dry_run() {
    let client = common::client().await;
    // Namespaced objects need their namespace to exist for a dry run.
    common::create_namespace(&client, "kube-org-system").await;
    for values in [
        vec![],
        vec![
            "--set",
            "identity.usernamePrefix=oidc:,identity.groupsPrefix=oidc:,oidc.issuerURL=https://login.example.com,oidc.clientID=kube-org,cluster.serverURL=https://k8s.example.com:6443",
            "--set",
            "smtp.existingSecret=mail,replicaCount=3,image.tag=0.2.0,image.pullPolicy=Always,trustedProxies=10.0.0.0/8",
        ],
    ] {
        let rendered = render(&values);
        let mut kubectl = Command::new("kubectl");
        kubectl.args([
            "apply",
            "--server-side",
            "--dry-run=server",
            "--force-conflicts",
            "-f",
            "-",
        ]);
        let out = run_with_stdin(kubectl, &rendered);
        for expected in [
            "customresourcedefinition.apiextensions.k8s.io/organizations.kube-org.io",
            "deployment.apps/kube-org",
            "validatingadmissionpolicy.admissionregistration.k8s.io/",
        ] {
            assert!(out.contains(expected), "{expected} missing from:\n{out}");
        }
    }
}
