//! The manifests a cluster admin applies: accepted by the real API server, least
//! privilege (no wildcards; `bind` only on what the catalog maps to).

mod common;

use common::{client, parse_yaml};
use k8s_openapi::api::rbac::v1::ClusterRole;

fn manifest(name: &str) -> String {
    std::fs::read_to_string(format!("{}/manifests/{name}", env!("CARGO_MANIFEST_DIR")))
        .expect("manifest file")
}

fn cluster_roles(yaml: &str) -> Vec<ClusterRole> {
    parse_yaml(yaml)
        .into_iter()
        .filter(|o| o.types.as_ref().is_some_and(|t| t.kind == "ClusterRole"))
        .map(|o| {
            serde_json::from_value(serde_json::to_value(o).expect("object")).expect("a ClusterRole")
        })
        .collect()
}

#[tokio::test]
async fn the_kustomization_passes_a_server_side_dry_run() {
    let client = client().await;
    // Namespaced objects need their namespace to exist for a dry run.
    common::create_namespace(&client, "kube-org-system").await;
    let output = std::process::Command::new("kubectl")
        .args([
            "apply",
            "--server-side",
            "--dry-run=server",
            "--force-conflicts",
            "-k",
        ])
        .arg(format!("{}/manifests", env!("CARGO_MANIFEST_DIR")))
        .output()
        .expect("kubectl runs (it is needed for this test)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "dry run failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for expected in [
        "customresourcedefinition.apiextensions.k8s.io/organizations.kube-org.io",
        "deployment.apps/kube-org",
        "clusterrole.rbac.authorization.k8s.io/kube-org-operator",
    ] {
        assert!(
            stdout.contains(expected),
            "{expected} missing from:\n{stdout}"
        );
    }
}

#[test]
fn no_cluster_role_holds_a_wildcard() {
    for file in ["rbac.yaml", "access-clusterroles.yaml"] {
        let roles = cluster_roles(&manifest(file));
        assert!(!roles.is_empty(), "{file} has ClusterRoles");
        for role in roles {
            for rule in role.rules.iter().flatten() {
                let fields = [
                    rule.verbs.clone(),
                    rule.resources.clone().unwrap_or_default(),
                    rule.api_groups.clone().unwrap_or_default(),
                ];
                assert!(
                    !fields.iter().flatten().any(|v| v.contains('*')),
                    "wildcard in {:?} of {file}: {rule:?}",
                    role.metadata.name
                );
            }
        }
    }
}

#[test]
fn the_operator_binds_only_what_the_catalog_maps_to() {
    let roles = cluster_roles(&manifest("rbac.yaml"));
    let bind_rules: Vec<_> = roles
        .iter()
        .flat_map(|r| r.rules.iter().flatten())
        .filter(|rule| rule.verbs.iter().any(|v| v == "bind" || v == "escalate"))
        .collect();
    assert_eq!(bind_rules.len(), 1, "one bind rule: {bind_rules:?}");
    assert!(
        !bind_rules[0].verbs.iter().any(|v| v == "escalate"),
        "never escalate"
    );
    let mut allowed = bind_rules[0]
        .resource_names
        .clone()
        .expect("bind is limited by resourceNames");
    allowed.sort();
    let mut expected: Vec<String> = kube_org::catalog::cluster_roles()
        .into_iter()
        .map(String::from)
        .collect();
    for own in cluster_roles(&manifest("access-clusterroles.yaml")) {
        expected.push(own.metadata.name.expect("named"));
    }
    expected.sort();
    assert_eq!(allowed, expected);
}

/// The command line the Deployment gives the operator, with its literal environment
/// variables as the flags they stand for, parses and validates: the Pod would start.
#[test]
fn the_deployment_runs_the_operator_with_flags_it_accepts() {
    use clap::{CommandFactory, FromArgMatches};

    #[derive(clap::Parser)]
    struct Run {
        #[command(flatten)]
        args: kube_org::run::RunArgs,
    }

    let deployment: k8s_openapi::api::apps::v1::Deployment =
        serde_yaml::from_str(&manifest("deployment.yaml")).expect("a Deployment");
    let spec = deployment
        .spec
        .expect("spec")
        .template
        .spec
        .expect("pod spec");
    let container = &spec.containers[0];
    let mut argv: Vec<String> = vec!["kube-org".into()];
    let args = container.args.clone().unwrap_or_default();
    assert_eq!(args.first().map(String::as_str), Some("run"), "{args:?}");
    argv.extend(args.into_iter().skip(1));
    let command = Run::command();
    for env in container.env.iter().flatten() {
        let Some(value) = &env.value else {
            continue; // from a Secret or the downward API: present at run time
        };
        let flag = command
            .get_arguments()
            .find(|a| a.get_env().and_then(|e| e.to_str()) == Some(env.name.as_str()))
            .and_then(|a| a.get_long())
            .unwrap_or_else(|| panic!("the Deployment sets {}, which no flag reads", env.name));
        argv.push(format!("--{flag}={value}"));
    }
    let matches = command
        .try_get_matches_from(&argv)
        .unwrap_or_else(|error| panic!("{argv:?}: {error}"));
    let run = Run::from_arg_matches(&matches).expect("flags");
    run.args
        .validate()
        .unwrap_or_else(|error| panic!("{argv:?}: {error}"));
    assert!(run.args.leader_elect, "two replicas need leader election");
}

/// Invitation tokens live as hashes in the Invitation's status: the operator holds no
/// cluster-wide right on Secrets, only `get` on the SMTP Secret (and the OpenID Connect
/// client secret, `kube-org-oidc`) in its own namespace.
#[test]
fn the_operator_reads_only_its_smtp_and_oidc_secrets() {
    let rbac = manifest("rbac.yaml");
    for role in cluster_roles(&rbac) {
        for rule in role.rules.iter().flatten() {
            assert!(
                !rule
                    .resources
                    .iter()
                    .flatten()
                    .any(|r| r == "secrets" || r.starts_with("secrets/")),
                "ClusterRole {:?} has a secrets rule: {rule:?}",
                role.metadata.name
            );
        }
    }
    let smtp: k8s_openapi::api::core::v1::Secret =
        serde_yaml::from_str(&manifest("smtp-secret.yaml")).expect("the SMTP Secret");
    let roles: Vec<k8s_openapi::api::rbac::v1::Role> = parse_yaml(&rbac)
        .into_iter()
        .filter(|o| o.types.as_ref().is_some_and(|t| t.kind == "Role"))
        .map(|o| serde_json::from_value(serde_json::to_value(o).expect("object")).expect("a Role"))
        .collect();
    let secret_rules: Vec<_> = roles
        .iter()
        .flat_map(|role| {
            role.rules
                .iter()
                .flatten()
                .map(move |rule| (role.metadata.namespace.clone(), rule))
        })
        .filter(|(_, rule)| rule.resources.iter().flatten().any(|r| r == "secrets"))
        .collect();
    assert_eq!(secret_rules.len(), 1, "{secret_rules:?}");
    let (namespace, rule) = &secret_rules[0];
    assert_eq!(namespace, &smtp.metadata.namespace);
    assert_eq!(rule.verbs, vec!["get".to_string()]);
    assert_eq!(
        rule.resource_names,
        Some(vec![
            smtp.metadata.name.clone().expect("named"),
            "kube-org-oidc".to_string()
        ])
    );
    // The Deployment reads that very Secret.
    let deployment = manifest("deployment.yaml");
    assert!(
        deployment.contains(&format!(
            "{}/{}",
            smtp.metadata.namespace.as_deref().unwrap_or_default(),
            smtp.metadata.name.as_deref().unwrap_or_default()
        )),
        "KUBE_ORG_SMTP_SECRET names the Secret the Role grants"
    );
}

/// The public Service carries only the accept endpoint; `/metrics`, `/healthz` and
/// `/readyz` are on their own port (`--metrics-listen`), which the probes use and a
/// separate cluster-internal Service exposes.
#[test]
fn the_public_service_exposes_only_the_accept_endpoint() {
    use k8s_openapi::api::core::v1::Service;

    let deployment: k8s_openapi::api::apps::v1::Deployment =
        serde_yaml::from_str(&manifest("deployment.yaml")).expect("a Deployment");
    let pod = deployment
        .spec
        .expect("spec")
        .template
        .spec
        .expect("pod spec");
    let container = &pod.containers[0];
    let ports: Vec<(String, i32)> = container
        .ports
        .iter()
        .flatten()
        .map(|p| (p.name.clone().unwrap_or_default(), p.container_port))
        .collect();
    // The flags' defaults: --listen 0.0.0.0:8080, --metrics-listen 0.0.0.0:8081.
    assert_eq!(
        ports,
        vec![("accept".to_string(), 8080), ("metrics".to_string(), 8081)]
    );
    for (what, probe) in [
        ("liveness", container.liveness_probe.as_ref()),
        ("readiness", container.readiness_probe.as_ref()),
    ] {
        let port = probe
            .and_then(|p| p.http_get.as_ref())
            .map(|get| get.port.clone())
            .unwrap_or_else(|| panic!("a {what} probe over HTTP"));
        assert_eq!(
            port,
            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String("metrics".into()),
            "the {what} probe uses the metrics port"
        );
    }

    let services: Vec<Service> = parse_yaml(&manifest("service.yaml"))
        .into_iter()
        .map(|o| {
            serde_json::from_value(serde_json::to_value(o).expect("object")).expect("a Service")
        })
        .collect();
    let target_ports = |name: &str| -> Vec<String> {
        let service = services
            .iter()
            .find(|s| s.metadata.name.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("Service {name} in service.yaml"));
        service
            .spec
            .as_ref()
            .and_then(|s| s.ports.clone())
            .unwrap_or_default()
            .into_iter()
            .map(|p| match p.target_port {
                Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(s)) => s,
                other => format!("{other:?}"),
            })
            .collect()
    };
    assert_eq!(target_ports("kube-org"), vec!["accept".to_string()]);
    assert_eq!(
        target_ports("kube-org-metrics"),
        vec!["metrics".to_string()]
    );
}
