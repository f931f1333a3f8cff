//! GitOps citizenship against the real control plane: what Flux / Helm 4 (kstatus, from
//! `sigs.k8s.io/cli-utils`) and Argo CD (the Lua checks of `manifests/argocd/`, run by
//! gopher-lua as Argo CD runs them) say about real kube-org objects reconciled by the
//! operator. Both verdicts come from `gitops-check`, built by `tests/controlplane/build.sh`.
//!
//! - reconciled objects of the four kinds are `Current` / `Healthy` (a delivered, pending
//!   Invitation too: kube-org has done all it can, the rest is a person's click; and
//!   once accepted, the Invitation and the Membership it made);
//! - a refusal no retry resolves (an unknown role, an email outside the allowed domains,
//!   an expired link, an unmarked home namespace) is `Failed` / `Degraded` (`Stalled=True`);
//! - waiting for another object (a member who has no Membership yet), an invitation the
//!   operator cannot send yet, and a spec change not yet observed are `InProgress` /
//!   `Progressing`.

mod common;
#[path = "invitations/http.rs"]
mod http;
#[allow(dead_code)] // this binary reads the shared Mailpit only
#[path = "invitations/mailpit.rs"]
mod mailpit;

use std::process::Command;
use std::time::Duration;

use common::org::{TestOrg, all};
use common::{client, create_namespace, run_with_stdin, tool, unique};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Resource};
use kube_org::api::{Invitation, Organization};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// Long enough for an email to be sent and a status written on 2 busy cores.
const WAIT: Duration = Duration::from_secs(30);

/// `gitops-check ARGS < object`: the `(status, message)` it prints.
fn gitops_check(args: &[&str], object: &Value) -> (String, String) {
    let mut command = Command::new(tool("gitops-check"));
    command.args(args);
    let output = run_with_stdin(command, &object.to_string());
    let answer: Value = serde_json::from_str(&output).expect("JSON answer");
    (
        answer["status"].as_str().unwrap_or_default().to_string(),
        answer["message"].as_str().unwrap_or_default().to_string(),
    )
}

/// What kstatus and Argo CD say about `object`: `(kstatus, argo, argo message)`.
fn verdicts(object: &Value) -> (String, String, String) {
    let cm = format!(
        "{}/manifests/argocd/argocd-cm-patch.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    let (kstatus, _) = gitops_check(&["kstatus"], object);
    let (argo, message) = gitops_check(&["argo-health", &cm], object);
    (kstatus, argo, message)
}

/// Reads the object until kstatus and Argo CD give the expected verdicts; returns it.
async fn wait_for<K>(api: &Api<K>, name: &str, kstatus: &str, argo: &str) -> Value
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + serde::Serialize,
{
    let mut last = None;
    let found = tokio::time::timeout(WAIT, async {
        loop {
            if let Ok(object) = api.get(name).await {
                let mut value = serde_json::to_value(&object).expect("JSON");
                value["metadata"]
                    .as_object_mut()
                    .map(|m| m.remove("managedFields"));
                let got = verdicts(&value);
                if got.0 == kstatus && got.1 == argo {
                    return value;
                }
                last = Some((got, value));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    found.unwrap_or_else(|_| {
        panic!("{name}: waited for kstatus {kstatus} and Argo CD {argo}; last seen {last:#?}")
    })
}

/// The shared operator has no `--accept-base-url`: each organization names its accept
/// endpoint.
async fn accept_url() -> Value {
    json!({"invitations": {"acceptURL": common::operator().await.base_url}})
}

fn condition<'a>(object: &'a Value, type_: &str) -> Option<&'a Value> {
    object["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

fn invitation(name: &str, email: &str, spec: Value) -> Invitation {
    let mut full =
        json!({"email": email, "roles": [{"role": "viewer", "scope": all("deployment")}]});
    for (key, value) in spec.as_object().expect("spec fields") {
        full[key] = value.clone();
    }
    serde_json::from_value(json!({
        "apiVersion": "kube-org.io/v1alpha1", "kind": "Invitation",
        "metadata": {"name": name}, "spec": full,
    }))
    .expect("an Invitation")
}

#[tokio::test]
async fn reconciled_objects_of_every_kind_are_current_and_healthy() {
    let org = TestOrg::with_spec(&["alice@example.com"], accept_url().await).await;
    let carol = format!("{}@example.com", unique("carol"));
    org.resource("deployment").await;
    org.member_with_role("bob@example.com", "bob-viewer", "viewer", all("deployment"))
        .await;
    let invitations: Api<Invitation> = Api::namespaced(org.client.clone(), &org.home);
    invitations
        .create(
            &PostParams::default(),
            &invitation("carol", &carol, json!({})),
        )
        .await
        .expect("creating an Invitation");

    let orgs: Api<Organization> = Api::all(org.client.clone());
    let organization = wait_for(&orgs, &org.name, "Current", "Healthy").await;
    let membership = wait_for(&org.memberships(), "bob-example-com", "Current", "Healthy").await;
    let binding = wait_for(&org.bindings(), "bob-viewer", "Current", "Healthy").await;
    // Pending, link delivered: nothing left for kube-org to do until carol clicks.
    let pending = wait_for(&invitations, "carol", "Current", "Healthy").await;
    assert_eq!(pending["status"]["phase"], "Pending");
    for object in [&organization, &membership, &binding, &pending] {
        assert!(
            condition(object, "Stalled").is_none(),
            "no Stalled condition when all is well: {object:#}"
        );
        // Right after an edit, before kube-org observes it: in progress for both tools.
        let mut edited = object.clone();
        let generation = edited["metadata"]["generation"]
            .as_i64()
            .expect("generation");
        edited["metadata"]["generation"] = json!(generation + 1);
        let (kstatus, argo, message) = verdicts(&edited);
        assert_eq!(
            (kstatus.as_str(), argo.as_str()),
            ("InProgress", "Progressing")
        );
        assert!(message.contains("generation"), "{message}");
    }

    // carol accepts: the Invitation stays Current (Accepted), her Membership is Current.
    let mailpit = mailpit::Mailpit::shared();
    let mail = mailpit.wait_for(&carol, 1).await.pop().expect("the email");
    let url = format!("{}/invitations/accept", common::operator().await.base_url);
    let answer = http::post_json(&url, &mail.token()).await;
    assert_eq!(answer.status, 200, "accepting: {:?}", answer.json());
    let accepted = wait_for(&invitations, "carol", "Current", "Healthy").await;
    assert_eq!(accepted["status"]["phase"], "Accepted");
    let membership = accepted["status"]["membership"]
        .as_str()
        .expect("membership");
    wait_for(&org.memberships(), membership, "Current", "Healthy").await;
    org.delete().await;
}

#[tokio::test]
async fn permanent_refusals_are_failed_and_degraded_until_fixed() {
    let org = TestOrg::with_spec(
        &["alice@example.com"],
        json!({
            "membership": {"allowedEmailDomains": ["example.com"]},
            "invitations": accept_url().await["invitations"],
        }),
    )
    .await;
    org.member("bob@example.com").await;

    // A role the organization does not have: Failed until the role is corrected.
    org.bind(
        "bob-typo",
        "bob@example.com",
        "veiwer",
        all("deployment"),
        "full",
    )
    .await;
    let stalled = wait_for(&org.bindings(), "bob-typo", "Failed", "Degraded").await;
    let stalled_condition = condition(&stalled, "Stalled").expect("Stalled");
    assert_eq!(stalled_condition["status"], "True");
    assert_eq!(stalled_condition["reason"], "UnknownRole");
    assert_eq!(
        condition(&stalled, "Ready").expect("Ready")["status"],
        "False"
    );
    org.bindings()
        .patch(
            "bob-typo",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"role": "viewer"}})),
        )
        .await
        .expect("fixing the role");
    let fixed = wait_for(&org.bindings(), "bob-typo", "Current", "Healthy").await;
    assert!(condition(&fixed, "Stalled").is_none(), "{fixed:#}");

    // A declared member outside the allowed domains.
    org.member("eve@elsewhere.test").await;
    let refused = wait_for(
        &org.memberships(),
        "eve-elsewhere-test",
        "Failed",
        "Degraded",
    )
    .await;
    assert_eq!(
        condition(&refused, "Stalled").expect("Stalled")["reason"],
        "DomainNotAllowed"
    );

    // An invitation whose link expired: it needs spec.resend.
    let invitations: Api<Invitation> = Api::namespaced(org.client.clone(), &org.home);
    invitations
        .create(
            &PostParams::default(),
            &invitation("dave", "dave@example.com", json!({"ttl": "1s"})),
        )
        .await
        .expect("creating an Invitation");
    let expired = wait_for(&invitations, "dave", "Failed", "Degraded").await;
    assert_eq!(expired["status"]["phase"], "Expired");

    // An Organization naming an existing namespace no cluster admin marked for it.
    let client = client().await;
    let name = unique("org");
    let home = unique("unmarked");
    create_namespace(&client, &home).await;
    let orgs: Api<Organization> = Api::all(client.clone());
    let unmarked: Organization = serde_json::from_value(json!({
        "apiVersion": "kube-org.io/v1alpha1", "kind": "Organization",
        "metadata": {"name": name},
        "spec": {"owners": ["alice@example.com"], "homeNamespace": home},
    }))
    .expect("an Organization");
    orgs.create(&PostParams::default(), &unmarked)
        .await
        .expect("creating an Organization");
    let refused = wait_for(&orgs, &name, "Failed", "Degraded").await;
    assert_eq!(
        condition(&refused, "Stalled").expect("Stalled")["reason"],
        "HomeNamespaceNotMarked"
    );
    // The admin marks it: the organization comes up.
    Api::<Namespace>::all(client.clone())
        .patch(
            &home,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"kube-org.io/organization": name}}})),
        )
        .await
        .expect("marking the namespace");
    wait_for(&orgs, &name, "Current", "Healthy").await;
    let _ = orgs.delete(&name, &Default::default()).await;
    org.delete().await;
}

#[tokio::test]
async fn waiting_for_another_object_is_in_progress_and_progressing() {
    let org = TestOrg::new(&["alice@example.com"]).await;
    // A binding for someone who is not (yet) a member: kube-org waits for the
    // Membership, which GitOps may apply later in the same sync.
    org.bind(
        "frank-viewer",
        "frank@example.com",
        "viewer",
        all("deployment"),
        "full",
    )
    .await;
    let waiting = wait_for(&org.bindings(), "frank-viewer", "InProgress", "Progressing").await;
    assert!(condition(&waiting, "Stalled").is_none(), "{waiting:#}");
    assert_eq!(
        condition(&waiting, "Ready").expect("Ready")["status"],
        "False"
    );
    org.member("frank@example.com").await;
    wait_for(&org.bindings(), "frank-viewer", "Current", "Healthy").await;
    wait_for(
        &org.memberships(),
        "frank-example-com",
        "Current",
        "Healthy",
    )
    .await;

    // An invitation the operator cannot send yet (this organization names no accept
    // URL and the shared operator has none): it waits, and is sent once one is set.
    let invitations: Api<Invitation> = Api::namespaced(org.client.clone(), &org.home);
    let grace = format!("{}@example.com", unique("grace"));
    invitations
        .create(
            &PostParams::default(),
            &invitation("grace", &grace, json!({})),
        )
        .await
        .expect("creating an Invitation");
    let unsent = wait_for(&invitations, "grace", "InProgress", "Progressing").await;
    assert_eq!(
        condition(&unsent, "Ready").expect("Ready")["reason"],
        "NotDelivered"
    );
    Api::<Organization>::all(org.client.clone())
        .patch(
            &org.name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": accept_url().await})),
        )
        .await
        .expect("naming the accept URL");
    wait_for(&invitations, "grace", "Current", "Healthy").await;
    org.delete().await;
}

#[test]
fn the_readme_shows_the_argo_cd_health_check_as_shipped() {
    let root = env!("CARGO_MANIFEST_DIR");
    let script =
        std::fs::read_to_string(format!("{root}/manifests/argocd/health.lua")).expect("health.lua");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).expect("README");
    assert!(
        readme.contains(script.trim()),
        "README.md must show manifests/argocd/health.lua as is"
    );
    let cm = std::fs::read_to_string(format!("{root}/manifests/argocd/argocd-cm-patch.yaml"))
        .expect("argocd-cm-patch.yaml");
    let cm: Value = serde_yaml::from_str(&cm).expect("YAML");
    for kind in ["Organization", "Membership", "Invitation", "RoleBinding"] {
        let key = format!("resource.customizations.health.kube-org.io_{kind}");
        assert_eq!(
            cm["data"][&key].as_str().map(str::trim),
            Some(script.trim()),
            "{key} holds health.lua"
        );
    }
}
