//! The test environment's OpenID Connect provider, as the person meets it: they sign in
//! at its login form (driven over HTTP), get an ID token, and the cluster knows them by
//! it — `kubectl --token` and a kube client carrying only that token, no client
//! certificate and no impersonation. The apiserver's claim mapping is the launcher's
//! (`tests/controlplane/launcher/oidc.go`): username "oidc:" + email, groups "oidc:" +
//! each group, email_verified required.

mod common;

use std::time::Duration;

use common::oidc::{
    self, ClientKind, Provider, REDIRECT_URI, SCOPES, SignInError, client_with, kubectl_with,
    whoami,
};
use common::{delete_namespace, eventually, namespace};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

/// `kubectl auth can-i VERB RESOURCE -n NAMESPACE` with only `token`: "yes" or "no".
async fn can_i(token: &str, verb: &str, resource: &str, ns: &str) -> String {
    let output = kubectl_with(token, &["auth", "can-i", verb, resource, "-n", ns]).await;
    let answer = String::from_utf8_lossy(&output.stdout).trim().to_string();
    assert!(
        answer == "yes" || answer == "no",
        "kubectl auth can-i: {answer} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    answer
}

/// Grants `subject` (a User or Group, by name) get and list on pods in `ns` with a
/// plain Role and RoleBinding, as a cluster admin would.
async fn grant_pod_reading(admin: &Client, ns: &str, kind: &str, subject: &str) {
    let role: Role = serde_json::from_value(json!({
        "metadata": {"name": "pod-reader"},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}],
    }))
    .expect("a Role");
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "pod-reader"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": subject}],
    }))
    .expect("a RoleBinding");
    Api::<Role>::namespaced(admin.clone(), ns)
        .create(&PostParams::default(), &role)
        .await
        .expect("creating the Role");
    Api::<RoleBinding>::namespaced(admin.clone(), ns)
        .create(&PostParams::default(), &binding)
        .await
        .expect("creating the RoleBinding");
}

#[tokio::test]
async fn alice_signs_in_and_the_cluster_knows_her_by_her_email() {
    let provider = Provider::from_env();
    let alice = provider.user("alice@example.com").clone();
    let token = provider.id_token(&alice.email).await;

    let claims = oidc::claims(&token);
    assert_eq!(claims["email"], "alice@example.com", "{claims}");
    assert_eq!(claims["email_verified"], true, "{claims}");
    assert_eq!(claims["groups"], json!(["developers"]), "{claims}");
    assert_eq!(claims["sub"], alice.subject.as_str(), "{claims}");
    assert!(
        claims["aud"].to_string().contains(&provider.client_id),
        "{claims}"
    );

    // Her own kubectl, with only the token.
    let output = kubectl_with(&token, &["auth", "whoami", "-o", "json"]).await;
    assert!(
        output.status.success(),
        "kubectl auth whoami: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let review: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("kubectl auth whoami -o json");
    let user = &review["status"]["userInfo"];
    assert_eq!(user["username"], "oidc:alice@example.com", "{review}");
    assert_eq!(provider.username(&alice), "oidc:alice@example.com");
    let groups: Vec<&str> = user["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .filter_map(|g| g.as_str())
        .collect();
    assert!(groups.contains(&"oidc:developers"), "{review}");
    assert!(groups.contains(&"system:authenticated"), "{review}");
    assert_eq!(user["uid"], alice.subject.as_str(), "{review}");

    // A kube client with only the token sees the same.
    let (username, groups, uid) = whoami(&client_with(&token).await)
        .await
        .expect("the apiserver accepts alice's ID token");
    assert_eq!(username, "oidc:alice@example.com");
    assert!(
        groups.contains(&"oidc:developers".to_string()),
        "{groups:?}"
    );
    assert_eq!(uid, alice.subject);
}

#[tokio::test]
async fn a_plain_rolebinding_to_the_oidc_username_grants_exactly_there() {
    let provider = Provider::from_env();
    let admin = common::connect().await;
    let granted = namespace(&admin, "oidc-granted").await;
    let elsewhere = namespace(&admin, "oidc-elsewhere").await;
    let token = provider.id_token("alice@example.com").await;
    assert_eq!(can_i(&token, "get", "pods", &granted).await, "no");

    grant_pod_reading(&admin, &granted, "User", "oidc:alice@example.com").await;
    eventually(
        "alice's own kubectl may get pods where she was granted",
        Duration::from_secs(10),
        || async { (can_i(&token, "get", "pods", &granted).await == "yes").then_some(()) },
    )
    .await;
    assert_eq!(can_i(&token, "get", "pods", &elsewhere).await, "no");
    assert_eq!(can_i(&token, "delete", "pods", &granted).await, "no");

    // The requests themselves, not only the authorizer's answer.
    let alice = client_with(&token).await;
    Api::<Pod>::namespaced(alice.clone(), &granted)
        .list(&ListParams::default())
        .await
        .expect("alice lists pods where she was granted");
    match Api::<Pod>::namespaced(alice, &elsewhere)
        .list(&ListParams::default())
        .await
    {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 403, "{status:?}"),
        other => panic!("alice listed pods elsewhere: {other:?}"),
    }

    // The unprefixed name is nobody the cluster authenticates.
    let bare = namespace(&admin, "oidc-bare").await;
    grant_pod_reading(&admin, &bare, "User", "alice@example.com").await;
    assert_eq!(can_i(&token, "get", "pods", &bare).await, "no");

    for ns in [granted, elsewhere, bare] {
        delete_namespace(&admin, &ns).await;
    }
}

#[tokio::test]
async fn a_rolebinding_to_the_prefixed_group_grants_its_members() {
    let provider = Provider::from_env();
    let admin = common::connect().await;
    let team = namespace(&admin, "oidc-team").await;
    grant_pod_reading(&admin, &team, "Group", "oidc:developers").await;
    let alice = provider.id_token("alice@example.com").await;
    let bob = provider.id_token("bob@example.com").await;
    eventually(
        "a developer may get pods in the team's namespace",
        Duration::from_secs(10),
        || async { (can_i(&alice, "get", "pods", &team).await == "yes").then_some(()) },
    )
    .await;
    assert_eq!(can_i(&bob, "get", "pods", &team).await, "no");
    delete_namespace(&admin, &team).await;
}

#[tokio::test]
async fn an_unverified_email_is_refused_by_the_cluster() {
    let provider = Provider::from_env();
    let token = provider.id_token("unverified@example.com").await;
    // The provider signs the person in and says the address is unverified ...
    let claims = oidc::claims(&token);
    assert_eq!(claims["email"], "unverified@example.com", "{claims}");
    assert_eq!(claims["email_verified"], false, "{claims}");
    // ... and the apiserver refuses the token.
    let output = kubectl_with(&token, &["auth", "whoami"]).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("Unauthorized"), "{stderr}");
    match whoami(&client_with(&token).await).await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 401, "{status:?}"),
        other => panic!("an unverified email was authenticated: {other:?}"),
    }
}

#[tokio::test]
async fn a_wrong_password_gets_no_code() {
    let provider = Provider::from_env();
    for (email, password) in [
        ("alice@example.com", "not-alice-password"),
        ("nobody@example.com", "alice-password"),
    ] {
        let authorization = provider
            .authorization(ClientKind::Confidential, REDIRECT_URI, SCOPES)
            .await;
        match provider
            .sign_in_at(&authorization.url, email, password, REDIRECT_URI)
            .await
        {
            Err(SignInError::Refused { status, message }) => {
                assert_eq!(status, 401);
                assert_eq!(message, "wrong email or password", "{email}");
            }
            other => panic!("{email} with a wrong password: {other:?}"),
        }
    }
}

#[tokio::test]
async fn the_public_client_signs_in_with_pkce_alone() {
    let provider = Provider::from_env();
    let bob = provider.user("bob@example.com").clone();
    let tokens = provider
        .sign_in(ClientKind::Public, &bob.email, &bob.password)
        .await
        .expect("bob signs in at the public client");
    let claims = oidc::claims(&tokens.id_token);
    assert!(
        claims["aud"]
            .to_string()
            .contains(&provider.public_client_id),
        "{claims}"
    );
    let (username, groups, _) = whoami(&client_with(&tokens.id_token).await)
        .await
        .expect("the apiserver accepts ID tokens of the public client too");
    assert_eq!(username, "oidc:bob@example.com");
    assert!(groups.contains(&"oidc:operators".to_string()), "{groups:?}");

    // Without the right PKCE verifier the code is worth nothing.
    let authorization = provider
        .authorization(ClientKind::Public, REDIRECT_URI, SCOPES)
        .await;
    let callback = provider
        .sign_in_at(&authorization.url, &bob.email, &bob.password, REDIRECT_URI)
        .await
        .expect("bob signs in");
    let code = provider.code(&authorization, &callback).expect("a code");
    let wrong = "a".repeat(43);
    match provider.exchange(&authorization, &code, &wrong).await {
        Err((status, body)) => {
            assert_eq!(status, 400, "{body}");
            assert!(body.contains("invalid_grant"), "{body}");
        }
        Ok(_) => panic!("a code was exchanged with the wrong PKCE verifier"),
    }
}

#[tokio::test]
async fn the_cluster_keeps_the_case_the_provider_gives_the_email() {
    // kube-org binds prefix + the lower-case email; a provider that keeps an address's
    // case gets another name from the apiserver. Dora is that person.
    let provider = Provider::from_env();
    let dora = provider.user("dora@example.com").clone();
    assert_eq!(dora.email, "Dora@Example.com");
    let token = provider.id_token(&dora.email).await;
    let (username, groups, _) = whoami(&client_with(&token).await)
        .await
        .expect("the apiserver accepts Dora's ID token");
    assert_eq!(username, "oidc:Dora@Example.com");
    assert_eq!(groups, ["system:authenticated"], "Dora is in no group");
}
