//! Hostile tenants, against the real control plane: each test acts as the person it is
//! about (impersonating the namespace admin, the owner, the creator of a namespace, the
//! operator's own ServiceAccount), asserts with SubjectAccessReview, and checks the
//! "everything else still works" half: one tenant's act never stops kube-org from
//! repairing or revoking anywhere else.

mod common;

use std::time::Duration;

use common::org::{REACT, TestOrg, all, named};
use common::{
    Can, OPERATOR_USER, can, client, client_as, create_organization, eventually, eventually_can,
    eventually_event, operator, operator_may_not_delete_cluster_admin, unique,
};
use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, RoleBinding as NativeRoleBinding,
};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use kube_org::api::{Membership, Organization, RoleBinding};

const PEOPLE: &[&str] = &["system:authenticated"];

fn edit_in(ns: &str) -> Can<'_> {
    Can::new("create", "deployments.apps", Some(ns))
}
fn view_in(ns: &str) -> Can<'_> {
    Can::new("list", "pods", Some(ns))
}
fn admin_in(ns: &str) -> Can<'_> {
    Can::new("create", "rolebindings.rbac.authorization.k8s.io", Some(ns))
}

/// The Organization's Ready condition: (status, reason, message).
async fn org_ready(client: &Client, name: &str) -> Option<(String, String, String)> {
    let org = Api::<Organization>::all(client.clone())
        .get(name)
        .await
        .ok()?;
    let ready = org
        .status?
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Ready")?;
    Some((ready.status, ready.reason, ready.message))
}

async fn wait_org_reason(client: &Client, name: &str, reason: &str) -> String {
    eventually(
        &format!("organization {name} says {reason}"),
        REACT,
        || async {
            org_ready(client, name)
                .await
                .filter(|(_, r, _)| r == reason)
                .map(|(_, _, message)| message)
        },
    )
    .await
}

/// The Ready reason of a Membership.
async fn membership_reason(org: &TestOrg, name: &str) -> Option<String> {
    let m = org.memberships().get(name).await.ok()?;
    m.status?
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.reason)
}

/// Makes `email` a member holding `role` in `scope`, with the RoleBinding
/// `<local part>-<role>`.
async fn grant(org: &TestOrg, email: &str, role: &str, scope: serde_json::Value) {
    org.member(email).await;
    let local = email.split('@').next().unwrap_or(email);
    org.bind(&format!("{local}-{role}"), email, role, scope, "full")
        .await;
}

/// Carol becomes admin of the named resource `prod` only: a namespace admin, the
/// tenant these tests act as.
async fn carol_administers(org: &TestOrg, prod: &str) {
    grant(
        org,
        "carol@example.com",
        "admin",
        named("deployment", &[prod]),
    )
    .await;
    eventually_can(
        &org.client,
        "carol@example.com",
        admin_in(prod),
        true,
        REACT,
    )
    .await;
}

fn native_bindings(client: &Client, ns: &str) -> Api<NativeRoleBinding> {
    Api::namespaced(client.clone(), ns)
}

/// Case 1: a namespace admin squats kube-org's deterministic name with another roleRef
/// (immutable). kube-org re-creates the binding, and a removal elsewhere still happens.
#[tokio::test]
async fn a_squatted_binding_name_is_repaired_and_stops_nothing_else() {
    let org = TestOrg::new(&["alice@example.com"]).await;
    let c = &org.client;
    let prod = org.resource("deployment").await;
    let dev = org.resource("deployment").await;
    carol_administers(&org, &prod).await;
    grant(
        &org,
        "bob@example.com",
        "viewer",
        named("deployment", &[&dev]),
    )
    .await;
    eventually_can(c, "bob@example.com", view_in(&dev), true, REACT).await;

    // Carol, admin of prod only, takes the name kube-org will need for `edit` there.
    let squatted = format!("kube-org:{}:edit", org.name);
    let squat: NativeRoleBinding = serde_json::from_value(serde_json::json!({
        "metadata": {"name": squatted, "namespace": prod},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "carol@example.com"}],
    }))
    .unwrap();
    let carol = client_as("carol@example.com", PEOPLE).await;
    native_bindings(&carol, &prod)
        .create(&PostParams::default(), &squat)
        .await
        .expect("carol may create RoleBindings in the namespace she administers");

    // Dan becomes editor of every deployment: kube-org needs that very name in prod.
    grant(&org, "dan@example.com", "editor", all("deployment")).await;
    eventually_can(c, "dan@example.com", edit_in(&dev), true, REACT).await;
    eventually_can(c, "dan@example.com", edit_in(&prod), true, REACT).await;

    // And a member removed elsewhere loses access.
    org.memberships()
        .delete("bob-example-com", &DeleteParams::default())
        .await
        .expect("removing bob");
    eventually_can(c, "bob@example.com", view_in(&dev), false, REACT).await;

    let repaired = native_bindings(c, &prod).get(&squatted).await.unwrap();
    assert_eq!(repaired.role_ref.name, "edit");
    let subjects: Vec<String> = repaired
        .subjects
        .iter()
        .flatten()
        .map(|s| s.name.clone())
        .collect();
    assert_eq!(subjects, vec!["dan@example.com".to_string()]);
    wait_org_reason(c, &org.name, "Reconciled").await;
    org.delete().await;
}

/// Case 1, the milder form: a namespace admin holds a managed binding with a finalizer;
/// the member it should stop granting loses access anyway.
#[tokio::test]
async fn a_binding_held_by_a_tenants_finalizer_still_stops_granting() {
    let org = TestOrg::new(&["alice@example.com"]).await;
    let c = &org.client;
    let prod = org.resource("deployment").await;
    carol_administers(&org, &prod).await;
    grant(
        &org,
        "erin@example.com",
        "viewer",
        named("deployment", &[&prod]),
    )
    .await;
    eventually_can(c, "erin@example.com", view_in(&prod), true, REACT).await;

    let held = format!("kube-org:{}:view", org.name);
    let carol = client_as("carol@example.com", PEOPLE).await;
    native_bindings(&carol, &prod)
        .patch(
            &held,
            &PatchParams::default(),
            &Patch::Merge(
                serde_json::json!({"metadata": {"finalizers": ["carol.example.com/hold"]}}),
            ),
        )
        .await
        .expect("carol may edit RoleBindings in her namespace");

    org.memberships()
        .delete("erin-example-com", &DeleteParams::default())
        .await
        .expect("removing erin");
    eventually_can(c, "erin@example.com", view_in(&prod), false, REACT).await;
    eventually("the held binding is gone", REACT, || async {
        native_bindings(c, &prod)
            .get_opt(&held)
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    eventually_can(c, "carol@example.com", admin_in(&prod), true, REACT).await;
    org.delete().await;
}

/// An admission policy (a cluster admin's, standing for anything kube-org cannot
/// repair) refusing kube-org's writes of RoleBindings in one namespace.
async fn refuse_operator_writes_in(client: &Client, namespace: &str) -> String {
    let name = unique("refuse-kube-org");
    let policy: ValidatingAdmissionPolicy = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [{
                "apiGroups": ["rbac.authorization.k8s.io"], "apiVersions": ["*"],
                "operations": ["CREATE", "UPDATE"], "resources": ["rolebindings"],
            }]},
            "matchConditions": [{
                "name": "kube-org-here",
                "expression": format!("request.namespace == '{namespace}' && request.userInfo.username == '{OPERATOR_USER}'"),
            }],
            "validations": [{"expression": "false", "message": "this namespace refuses kube-org's writes (test)"}],
        },
    }))
    .unwrap();
    Api::<ValidatingAdmissionPolicy>::all(client.clone())
        .create(&PostParams::default(), &policy)
        .await
        .expect("creating the refusing policy");
    let binding: ValidatingAdmissionPolicyBinding = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {"policyName": name, "validationActions": ["Deny"]},
    }))
    .unwrap();
    Api::<ValidatingAdmissionPolicyBinding>::all(client.clone())
        .create(&PostParams::default(), &binding)
        .await
        .expect("binding the refusing policy");
    // In force once the operator's dry-run write there is refused.
    let operator = client_as(OPERATOR_USER, &["system:serviceaccounts"]).await;
    let probe: NativeRoleBinding = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "kube-org:probe", "namespace": namespace,
                     "labels": {"app.kubernetes.io/managed-by": "kube-org"}},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
    }))
    .unwrap();
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    eventually("the refusing policy is in force", REACT, || async {
        native_bindings(&operator, namespace)
            .create(&dry_run, &probe)
            .await
            .is_err()
            .then_some(())
    })
    .await;
    name
}

/// Case 1, what cannot be repaired: reported on the Organization (never Ready) and on
/// the RoleBinding concerned, while every other write and removal happens.
#[tokio::test]
async fn an_unwritable_target_is_reported_and_blocks_nothing_else() {
    let org = TestOrg::new(&["alice@example.com"]).await;
    let c = &org.client;
    let prod = org.resource("deployment").await;
    let dev = org.resource("deployment").await;
    grant(
        &org,
        "bob@example.com",
        "viewer",
        named("deployment", &[&dev]),
    )
    .await;
    eventually_can(c, "bob@example.com", view_in(&dev), true, REACT).await;
    wait_org_reason(c, &org.name, "Reconciled").await;
    let policy = refuse_operator_writes_in(c, &prod).await;

    grant(&org, "dan@example.com", "editor", all("deployment")).await;
    eventually_can(c, "dan@example.com", edit_in(&dev), true, REACT).await;
    org.memberships()
        .delete("bob-example-com", &DeleteParams::default())
        .await
        .expect("removing bob");
    eventually_can(c, "bob@example.com", view_in(&dev), false, REACT).await;
    assert!(!can(c, "dan@example.com", edit_in(&prod)).await);

    let message = wait_org_reason(c, &org.name, "SyncFailed").await;
    assert!(message.contains(&prod), "{message}");
    assert!(message.contains("refuses kube-org"), "{message}");
    let problem = eventually("dan's RoleBinding names prod", REACT, || async {
        let b = org.bindings().get("dan-editor").await.ok()?;
        b.status?
            .problems
            .into_iter()
            .find(|p| p.resource == prod && p.reason == "SyncFailed")
    })
    .await;
    assert!(problem.message.contains("kube-org:"), "{}", problem.message);

    // Once the obstacle goes, everything converges.
    Api::<ValidatingAdmissionPolicyBinding>::all(c.clone())
        .delete(&policy, &DeleteParams::default())
        .await
        .expect("removing the policy binding");
    Api::<ValidatingAdmissionPolicy>::all(c.clone())
        .delete(&policy, &DeleteParams::default())
        .await
        .expect("removing the policy");
    eventually_can(c, "dan@example.com", edit_in(&prod), true, REACT).await;
    wait_org_reason(c, &org.name, "Reconciled").await;
    org.delete().await;
}

/// Case 4: a declared Membership outside `allowedEmailDomains` grants nothing, with a
/// condition and an Event; members inside the domains are unaffected.
#[tokio::test]
async fn a_declared_member_outside_the_allowed_domains_gets_nothing() {
    let org = TestOrg::with_spec(
        &["alice@example.com"],
        serde_json::json!({"membership": {"allowedEmailDomains": ["example.com"]}}),
    )
    .await;
    let c = &org.client;
    let prod = org.resource("deployment").await;
    eventually_can(
        c,
        "alice@example.com",
        org.in_home("create", "memberships.kube-org.io"),
        true,
        REACT,
    )
    .await;
    // Alice, the owner, declares an outsider directly (no Invitation to refuse).
    let alice = client_as("alice@example.com", PEOPLE).await;
    for (name, email) in [("mallory", "mallory@evil.test"), ("bob", "bob@example.com")] {
        let m: Membership = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": org.home},
            "spec": {"email": email},
        }))
        .unwrap();
        Api::<Membership>::namespaced(alice.clone(), &org.home)
            .create(&PostParams::default(), &m)
            .await
            .expect("the owner may declare Memberships");
        let b: RoleBinding = serde_json::from_value(serde_json::json!({
            "metadata": {"name": format!("{name}-viewer"), "namespace": org.home},
            "spec": {"member": email, "role": "viewer", "scope": all("deployment")},
        }))
        .unwrap();
        Api::<RoleBinding>::namespaced(alice.clone(), &org.home)
            .create(&PostParams::default(), &b)
            .await
            .expect("the owner may declare RoleBindings");
    }
    eventually_can(c, "bob@example.com", view_in(&prod), true, REACT).await;
    eventually("mallory's Membership is refused", REACT, || async {
        (membership_reason(&org, "mallory").await.as_deref() == Some("DomainNotAllowed"))
            .then_some(())
    })
    .await;
    assert!(!can(c, "mallory@evil.test", view_in(&prod)).await);
    assert!(!can(c, "mallory@evil.test", org.get_org()).await);
    let binding = org.bindings().get("mallory-viewer").await.unwrap();
    let ready = binding.status.unwrap().conditions;
    assert!(
        ready
            .iter()
            .any(|c| c.type_ == "Ready" && c.reason == "MemberRefused"),
        "{ready:?}"
    );
    eventually_event(c, &org.home, "DomainNotAllowed", "mallory", REACT, |_| true).await;
    org.delete().await;
}

/// Case 7: an owner cannot bind a Kubernetes system identity through `spec.user`.
#[tokio::test]
async fn an_owner_cannot_name_a_system_identity_as_a_member() {
    let org = TestOrg::new(&["alice@example.com"]).await;
    eventually_can(
        &org.client,
        "alice@example.com",
        org.in_home("create", "memberships.kube-org.io"),
        true,
        REACT,
    )
    .await;
    let alice = client_as("alice@example.com", PEOPLE).await;
    for user in [
        "system:serviceaccount:kube-system:default",
        "system:anonymous",
        "system:admin",
    ] {
        let m: Membership = serde_json::from_value(serde_json::json!({
            "metadata": {"name": unique("sys"), "namespace": org.home},
            "spec": {"email": "robot@example.com", "user": user},
        }))
        .unwrap();
        let error = Api::<Membership>::namespaced(alice.clone(), &org.home)
            .create(&PostParams::default(), &m)
            .await
            .expect_err("a system identity is refused at admission");
        let message = common::error_message(&error);
        assert!(message.contains("system identity"), "{user}: {message}");
    }
    org.delete().await;
}

/// Case 5: someone who may create namespaces pre-creates `org-<name>`; the
/// organization does not adopt it until a cluster admin marks it.
#[tokio::test]
async fn a_pre_created_home_namespace_is_used_only_once_a_cluster_admin_marks_it() {
    let c = &client().await;
    operator().await;
    let mallory_role: ClusterRole = serde_json::from_value(serde_json::json!({
        "metadata": {"name": unique("namespace-creator")},
        "rules": [{"apiGroups": [""], "resources": ["namespaces"], "verbs": ["create", "get"]}],
    }))
    .unwrap();
    let role = Api::<ClusterRole>::all(c.clone())
        .create(&PostParams::default(), &mallory_role)
        .await
        .unwrap();
    let binding: ClusterRoleBinding = serde_json::from_value(serde_json::json!({
        "metadata": {"name": role.name_any()},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role.name_any()},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "mallory@example.com"}],
    }))
    .unwrap();
    Api::<ClusterRoleBinding>::all(c.clone())
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();
    let name = unique("org");
    let home = format!("org-{name}");
    let mallory = client_as("mallory@example.com", PEOPLE).await;
    let squat: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": home}})).unwrap();
    eventually("mallory creates the namespace first", REACT, || async {
        Api::<Namespace>::all(mallory.clone())
            .create(&PostParams::default(), &squat)
            .await
            .ok()
            .map(|_| ())
    })
    .await;

    create_organization(c, &name, serde_json::json!({}), serde_json::json!({})).await;
    let message = wait_org_reason(c, &name, "HomeNamespaceNotMarked").await;
    assert!(message.contains("kubectl label namespace"), "{message}");
    let ns = Api::<Namespace>::all(c.clone()).get(&home).await.unwrap();
    assert!(!ns.labels().contains_key("kube-org.io/organization"));
    let invite = Can::new("create", "invitations.kube-org.io", Some(&home));
    assert!(!can(c, "alice@example.com", invite).await);
    let bindings = native_bindings(c, &home)
        .list(&Default::default())
        .await
        .unwrap();
    assert!(
        bindings
            .items
            .iter()
            .all(|b| !b.name_any().starts_with("kube-org:")),
        "nothing bound in an unmarked namespace"
    );

    // A cluster admin marks it: now it is the organization's home.
    Api::<Namespace>::all(c.clone())
        .patch(
            &home,
            &PatchParams::default(),
            &Patch::Merge(
                serde_json::json!({"metadata": {"labels": {"kube-org.io/organization": name}}}),
            ),
        )
        .await
        .unwrap();
    wait_org_reason(c, &name, "Reconciled").await;
    eventually_can(c, "alice@example.com", invite, true, REACT).await;
    let _ = Api::<Organization>::all(c.clone())
        .delete(&name, &DeleteParams::default())
        .await;
    let _ = Api::<ClusterRoleBinding>::all(c.clone())
        .delete(&role.name_any(), &DeleteParams::default())
        .await;
    let _ = Api::<ClusterRole>::all(c.clone())
        .delete(&role.name_any(), &DeleteParams::default())
        .await;
    let _ = Api::<Namespace>::all(c.clone())
        .delete(&home, &DeleteParams::default())
        .await;
}

/// Case 6: the second of two Organizations naming one home namespace is refused and
/// its owners get nothing there; the first keeps working.
#[tokio::test]
async fn the_second_of_two_organizations_naming_one_home_is_refused() {
    let first = TestOrg::new(&["alice@example.com"]).await;
    let c = &first.client;
    let second = unique("org");
    create_organization(
        c,
        &second,
        serde_json::json!({}),
        serde_json::json!({"owners": ["mallory@example.com"], "homeNamespace": first.home}),
    )
    .await;
    let message = wait_org_reason(c, &second, "HomeNamespaceTaken").await;
    assert!(message.contains(&first.name), "{message}");
    assert!(
        !can(
            c,
            "mallory@example.com",
            first.in_home("create", "invitations.kube-org.io")
        )
        .await
    );
    let members = first.memberships().list(&Default::default()).await.unwrap();
    assert!(
        members
            .items
            .iter()
            .all(|m| m.spec.email.normalized() != "mallory@example.com"),
        "the refused organization wrote nothing into the home namespace"
    );
    eventually_can(
        c,
        "alice@example.com",
        first.in_home("create", "invitations.kube-org.io"),
        true,
        REACT,
    )
    .await;
    let _ = Api::<Organization>::all(c.clone())
        .delete(&second, &DeleteParams::default())
        .await;
    first.delete().await;
}

/// Case 8: the operator's ServiceAccount is refused by the cluster when it reaches for
/// RBAC objects that are not its own (asked as dry runs: nothing changes either way).
#[tokio::test]
async fn the_operator_may_touch_only_what_it_owns() {
    let c = &client().await;
    let operator = client_as(
        OPERATOR_USER,
        &["system:serviceaccounts", "system:authenticated"],
    )
    .await;
    assert!(operator_may_not_delete_cluster_admin(&operator).await);
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let role = |name: &str| -> ClusterRole {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "kube-org"}},
            "rules": [],
        }))
        .unwrap()
    };
    let roles = Api::<ClusterRole>::all(operator.clone());
    let refused = roles
        .create(&dry_run, &role("not-kube-org"))
        .await
        .expect_err("a ClusterRole not named kube-org:* is refused");
    assert!(
        common::error_message(&refused).contains("kube-org may only write"),
        "{refused}"
    );
    roles
        .create(&dry_run, &role(&format!("kube-org:{}", unique("own"))))
        .await
        .expect("its own names are allowed");
    let unmarked: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": unique("ns")}})).unwrap();
    let refused = Api::<Namespace>::all(operator.clone())
        .create(&dry_run, &unmarked)
        .await
        .expect_err("a namespace that is no organization's home is refused");
    assert!(
        common::error_message(&refused).contains("kube-org may only create namespaces"),
        "{refused}"
    );
    // Secrets are not the operator's at all.
    let secrets = Can::new("list", "secrets", None);
    assert!(!can(c, OPERATOR_USER, secrets).await);
}

/// Case 10: a Membership deleted before kube-org's finalizer was on it still takes the
/// member's RoleBindings and access with it.
#[tokio::test]
async fn a_membership_gone_before_its_finalizer_leaves_no_bindings() {
    let org = TestOrg::new(&["alice@example.com"]).await;
    let c = &org.client;
    let prod = org.resource("deployment").await;
    grant(&org, "frank@example.com", "viewer", all("deployment")).await;
    eventually_can(c, "frank@example.com", view_in(&prod), true, REACT).await;
    eventually("frank's binding is Bound", REACT, || async {
        let b = org.bindings().get("frank-viewer").await.ok()?;
        b.status?
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.reason == "Bound")
            .then_some(())
    })
    .await;
    // As if the Membership had gone before the operator put its finalizer on it: take
    // the finalizer off and delete at that very resourceVersion (retried when the
    // operator puts it back first).
    let memberships = org.memberships();
    eventually("the Membership goes without the finalizer", REACT, || async {
        let m = memberships.get_opt("frank-example-com").await.ok()??;
        let patched = memberships
            .patch(
                "frank-example-com",
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"metadata": {"finalizers": null, "resourceVersion": m.resource_version()}})),
            )
            .await
            .ok()?;
        let precondition = DeleteParams {
            preconditions: Some(kube::api::Preconditions {
                resource_version: patched.resource_version(),
                uid: None,
            }),
            ..DeleteParams::default()
        };
        memberships
            .delete("frank-example-com", &precondition)
            .await
            .ok()
            .map(|_| ())
    })
    .await;
    eventually_can(c, "frank@example.com", view_in(&prod), false, REACT).await;
    eventually("frank's RoleBinding is deleted", REACT, || async {
        org.bindings()
            .get_opt("frank-viewer")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    org.delete().await;
}

/// Tenants racing the operator must not make it spin: after the squat test's kind of
/// repair, a quiet organization stays quiet (no hot loop between two writers).
#[tokio::test]
async fn a_repaired_organization_is_quiet_afterwards() {
    let org = TestOrg::new(&["alice@example.com"]).await;
    let c = &org.client;
    let prod = org.resource("deployment").await;
    grant(
        &org,
        "carol@example.com",
        "viewer",
        named("deployment", &[&prod]),
    )
    .await;
    eventually_can(c, "carol@example.com", view_in(&prod), true, REACT).await;
    wait_org_reason(c, &org.name, "Reconciled").await;
    // Someone edits the managed binding's subjects; kube-org puts them back once.
    let name = format!("kube-org:{}:view", org.name);
    native_bindings(c, &prod)
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "mallory@example.com"}]})),
        )
        .await
        .unwrap();
    eventually_can(c, "carol@example.com", view_in(&prod), true, REACT).await;
    eventually_can(c, "mallory@example.com", view_in(&prod), false, REACT).await;
    let first = native_bindings(c, &prod).get(&name).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let later = native_bindings(c, &prod).get(&name).await.unwrap();
    assert_eq!(
        first.resource_version(),
        later.resource_version(),
        "the repaired binding is not rewritten again and again"
    );
    org.delete().await;
}

/// Case 4, exclusivity: two exclusive organizations whose owners both declare the same
/// person (no Invitation involved): exactly one Membership grants, the other says why;
/// when the person leaves the first, the second grants.
#[tokio::test]
async fn exclusive_membership_holds_for_declared_members() {
    let exclusive = serde_json::json!({"membership": {"exclusive": true}});
    let x = TestOrg::with_spec(&["alice@example.com"], exclusive.clone()).await;
    let y = TestOrg::with_spec(&["alice@example.com"], exclusive).await;
    let c = &x.client;
    let x_res = x.resource("deployment").await;
    let y_res = y.resource("deployment").await;
    let person = format!("{}@example.com", unique("pat"));
    for org in [&x, &y] {
        let m: Membership = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "pat", "namespace": org.home},
            "spec": {"email": person},
        }))
        .unwrap();
        org.memberships()
            .create(&PostParams::default(), &m)
            .await
            .unwrap();
        org.bind("pat-viewer", &person, "viewer", all("deployment"), "full")
            .await;
    }
    // Both may be refused for a moment (each sees the other's Membership); the claim
    // then decides, once.
    let reasons = eventually("exactly one Membership grants", REACT, || async {
        let a = membership_reason(&x, "pat").await?;
        let b = membership_reason(&y, "pat").await?;
        let one = |r: &str, s: &str| r == "Active" && s == "ExclusiveMembership";
        (one(&a, &b) || one(&b, &a)).then_some((a, b))
    })
    .await;
    let (winner, loser, loser_res, winner_res) = match reasons {
        (a, b) if a == "Active" && b == "ExclusiveMembership" => (&x, &y, &y_res, &x_res),
        (a, b) if a == "ExclusiveMembership" && b == "Active" => (&y, &x, &x_res, &y_res),
        other => panic!("exactly one Membership must grant: {other:?}"),
    };
    eventually_can(c, &person, view_in(winner_res), true, REACT).await;
    assert!(!can(c, &person, view_in(loser_res)).await);
    // Stable: a few seconds later nothing has flipped.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        membership_reason(winner, "pat").await.as_deref(),
        Some("Active")
    );
    assert_eq!(
        membership_reason(loser, "pat").await.as_deref(),
        Some("ExclusiveMembership")
    );

    // The person leaves the first organization: the second's Membership grants.
    winner
        .memberships()
        .delete("pat", &DeleteParams::default())
        .await
        .unwrap();
    eventually_can(c, &person, view_in(loser_res), true, REACT).await;
    eventually_can(c, &person, view_in(winner_res), false, REACT).await;
    x.delete().await;
    y.delete().await;
}

/// Case 11: a namespace admin who keeps deleting kube-org's binding in her namespace,
/// and keeps creating and deleting bindings labelled for the organization (each
/// deletion is an urgent change: it cuts the organization's writes short), cannot stall
/// the organization: a grant elsewhere still lands, the new member's status is still
/// written, and once she stops her namespace is repaired.
#[tokio::test]
async fn a_namespace_admin_spamming_deletions_cannot_stall_the_organization() {
    let org = TestOrg::new(&["alice@example.com"]).await;
    let c = &org.client;
    let prod = org.resource("deployment").await;
    let dev = org.resource("deployment").await;
    carol_administers(&org, &prod).await;
    let carol = client_as("carol@example.com", PEOPLE).await;
    let managed = format!("kube-org:{}:edit", org.name);

    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let deletions = std::sync::Arc::new(AtomicU32::new(0));
    let spam = tokio::spawn({
        let (carol, prod, org_name, managed, stop, deletions) = (
            carol.clone(),
            prod.clone(),
            org.name.clone(),
            managed.clone(),
            stop.clone(),
            deletions.clone(),
        );
        async move {
            let api = native_bindings(&carol, &prod);
            for i in 0.. {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let decoy: NativeRoleBinding = serde_json::from_value(serde_json::json!({
                    "metadata": {"name": format!("decoy-{i}"), "namespace": prod, "labels": {
                        "app.kubernetes.io/managed-by": "kube-org",
                        "kube-org.io/organization": org_name}},
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
                    "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "carol@example.com"}],
                }))
                .unwrap();
                let _ = api.create(&PostParams::default(), &decoy).await;
                for name in [decoy.name_any(), managed.clone()] {
                    if api.delete(&name, &DeleteParams::default()).await.is_ok() {
                        deletions.fetch_add(1, Ordering::SeqCst);
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    });
    eventually("carol's deletions under way", REACT, || async {
        (deletions.load(Ordering::SeqCst) >= 20).then_some(())
    })
    .await;

    let before_grant = deletions.load(Ordering::SeqCst);

    // While she goes on: dan becomes editor of every deployment, and his Membership
    // says so.
    grant(&org, "dan@example.com", "editor", all("deployment")).await;
    eventually_can(c, "dan@example.com", edit_in(&dev), true, REACT).await;
    eventually("dan's Membership status is written", REACT, || async {
        membership_reason(&org, "dan-example-com")
            .await
            .filter(|r| r == "Active")
    })
    .await;

    stop.store(true, Ordering::SeqCst);
    spam.await.unwrap();
    assert!(
        deletions.load(Ordering::SeqCst) > before_grant,
        "carol went on deleting while dan's grant landed"
    );
    // Her namespace is repaired once she stops.
    eventually_can(c, "carol@example.com", admin_in(&prod), true, REACT).await;
    eventually_can(c, "dan@example.com", edit_in(&prod), true, REACT).await;
    wait_org_reason(c, &org.name, "Reconciled").await;
    org.delete().await;
}
