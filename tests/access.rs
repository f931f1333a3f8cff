//! Organizations, members and scoped roles against the real control plane, asserted the
//! way the cluster decides: SubjectAccessReview for the member.

mod common;

use std::time::{Duration, Instant};

use common::org::{REACT, TestOrg, all, named, org_scope, org_where_bob_has};
use common::{Can, can, client, eventually, eventually_can, eventually_event, unique};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{ClusterRole, RoleBinding as NativeRoleBinding};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use kube_org::api::Organization;

/// An organization where bob views every deployment; returns it and one resource.
async fn bob_views_all() -> (TestOrg, String) {
    let (org, res) = org_where_bob_has("viewer", |_| all("deployment"), "full").await;
    assert_level(&org.client, "bob@example.com", &res, "viewer").await;
    (org, res)
}

/// What admin, editor and viewer may do in a namespace, as three questions.
fn admin_only(ns: &str) -> Can<'_> {
    Can::new("create", "rolebindings.rbac.authorization.k8s.io", Some(ns))
}
fn editor_up(ns: &str) -> Can<'_> {
    Can::new("create", "deployments.apps", Some(ns))
}
fn viewer_up(ns: &str) -> Can<'_> {
    Can::new("list", "pods", Some(ns))
}

/// Asserts the exact level a user holds in a namespace: "admin", "editor", "viewer" or
/// "none", waiting for the operator to converge first.
async fn assert_level(client: &Client, user: &str, ns: &str, level: &str) {
    let (admin, edit, view) = match level {
        "admin" => (true, true, true),
        "editor" => (false, true, true),
        "viewer" => (false, false, true),
        "none" => (false, false, false),
        other => panic!("unknown level {other}"),
    };
    eventually_can(client, user, viewer_up(ns), view, REACT).await;
    eventually_can(client, user, editor_up(ns), edit, REACT).await;
    eventually_can(client, user, admin_only(ns), admin, REACT).await;
}

#[tokio::test]
async fn an_owner_administers_every_resource_and_manages_the_organization() {
    let org = TestOrg::new(&["alice@example.com"]).await;
    let c = &org.client;
    let deployment = org.resource("deployment").await;
    let search = org.resource("elasticsearch").await;
    assert_level(c, "alice@example.com", &deployment, "admin").await;
    assert_level(c, "alice@example.com", &search, "admin").await;
    eventually_can(
        c,
        "alice@example.com",
        org.in_home("create", "invitations.kube-org.io"),
        true,
        REACT,
    )
    .await;
    eventually_can(c, "alice@example.com", org.get_org(), true, REACT).await;
    assert!(
        !can(c, "alice@example.com", viewer_up("default")).await,
        "nothing outside the organization"
    );

    let orgs: Api<Organization> = Api::all(c.clone());
    let status = eventually("organization status counts", REACT, || async {
        let status = orgs.get(&org.name).await.ok()?.status?;
        (status.owners == 1
            && status.members == 1
            && status.resources.get("deployment") == Some(&1))
        .then_some(status)
    })
    .await;
    assert!(
        status
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True"),
        "{status:?}"
    );
    assert_eq!(
        status.observed_generation,
        orgs.get(&org.name).await.unwrap().metadata.generation
    );
    org.delete().await;
}

#[tokio::test]
async fn a_billing_admin_reads_the_organization_and_nothing_inside_resources() {
    let (org, res) = org_where_bob_has("billing-admin", |_| org_scope(), "full").await;
    let c = &org.client;
    eventually_can(
        c,
        "bob@example.com",
        org.in_home("list", "memberships.kube-org.io"),
        true,
        REACT,
    )
    .await;
    eventually_can(c, "bob@example.com", org.get_org(), true, REACT).await;
    assert_level(c, "bob@example.com", &res, "none").await;
    assert!(
        !can(
            c,
            "bob@example.com",
            org.in_home("create", "invitations.kube-org.io")
        )
        .await
    );
    org.delete().await;
}

#[tokio::test]
async fn all_scope_roles_cover_resources_labelled_later() {
    let org = TestOrg::new(&["alice@example.com"]).await;
    let c = &org.client;
    let before = org.resource("deployment").await;
    let search = org.resource("elasticsearch").await;
    for (who, role) in [("bob", "admin"), ("carol", "editor"), ("dave", "viewer")] {
        let email = format!("{who}@example.com");
        org.member(&email).await;
        org.bind(
            &format!("{who}-{role}"),
            &email,
            role,
            all("deployment"),
            "full",
        )
        .await;
    }
    let later = org.resource("deployment").await;
    for ns in [&before, &later] {
        assert_level(c, "bob@example.com", ns, "admin").await;
        assert_level(c, "carol@example.com", ns, "editor").await;
        assert_level(c, "dave@example.com", ns, "viewer").await;
    }
    assert_level(c, "bob@example.com", &search, "none").await;

    // Unlabelling a namespace takes it out of every scope.
    let namespaces: Api<Namespace> = Api::all(c.clone());
    let unlabel = serde_json::json!({"metadata": {"labels": {"kube-org.io/organization": null}}});
    namespaces
        .patch(&later, &PatchParams::default(), &Patch::Merge(&unlabel))
        .await
        .expect("unlabelling");
    assert_level(c, "dave@example.com", &later, "none").await;
    org.delete().await;
}

#[tokio::test]
async fn named_scopes_bind_what_exists_and_report_what_does_not() {
    let org = TestOrg::new(&["alice@example.com"]).await;
    let c = &org.client;
    let (one, two) = (
        org.resource("deployment").await,
        org.resource("deployment").await,
    );
    let missing = unique("missing");
    for email in ["bob@example.com", "carol@example.com", "dave@example.com"] {
        org.member(email).await;
    }
    org.bind(
        "bob-admin",
        "bob@example.com",
        "admin",
        named("deployment", &[&one, &missing]),
        "full",
    )
    .await;
    org.bind(
        "carol-editor",
        "carol@example.com",
        "editor",
        named("deployment", &[&one]),
        "full",
    )
    .await;
    org.bind(
        "dave-viewer",
        "dave@example.com",
        "viewer",
        named("deployment", &[&two]),
        "full",
    )
    .await;
    assert_level(c, "bob@example.com", &one, "admin").await;
    assert_level(c, "bob@example.com", &two, "none").await;
    assert_level(c, "carol@example.com", &one, "editor").await;
    assert_level(c, "carol@example.com", &two, "none").await;
    assert_level(c, "dave@example.com", &two, "viewer").await;
    assert_level(c, "dave@example.com", &one, "none").await;

    let bindings = org.bindings();
    let status = eventually(
        "bob's binding reports the missing resource",
        REACT,
        || async {
            let status = bindings.get("bob-admin").await.ok()?.status?;
            (!status.problems.is_empty()).then_some(status)
        },
    )
    .await;
    assert_eq!(status.resources, vec![one.clone()]);
    assert_eq!(status.problems[0].resource, missing);
    assert_eq!(status.problems[0].reason, "ResourceNotFound");
    let ready = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .expect("Ready");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "ResourcesMissing")
    );

    // The missing resource appears: bound at once, the problem clears.
    org.label_resource(&missing, "deployment").await;
    assert_level(c, "bob@example.com", &missing, "admin").await;
    eventually("the problem clears", REACT, || async {
        bindings
            .get("bob-admin")
            .await
            .ok()?
            .status
            .filter(|s| s.problems.is_empty())
            .map(|_| ())
    })
    .await;
    org.delete().await;
}

#[tokio::test]
async fn console_access_shows_resources_but_grants_nothing_inside() {
    let (org, res) = org_where_bob_has("admin", |_| all("deployment"), "console").await;
    let c = &org.client;
    let see_ns = Can {
        name: Some(&res),
        ..Can::new("get", "namespaces", None)
    };
    eventually_can(c, "bob@example.com", see_ns, true, REACT).await;
    assert_level(c, "bob@example.com", &res, "none").await;
    org.delete().await;
}

#[tokio::test]
async fn a_custom_role_grants_its_cluster_role_once_kube_org_may_bind_it() {
    let client = client().await;
    let role_name = unique("kube-org-test-cm-reader");
    let role: ClusterRole = serde_json::from_value(serde_json::json!({
        "metadata": {"name": role_name},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}],
    }))
    .expect("cluster role");
    let cluster_roles = Api::<ClusterRole>::all(client.clone());
    cluster_roles
        .create(&PostParams::default(), &role)
        .await
        .expect("creating the ClusterRole");
    let org = TestOrg::with_spec(
        &["alice@example.com"],
        serde_json::json!({"roles": [{"name": "cm-reader", "clusterRole": role_name, "description": "reads ConfigMaps"}]}),
    )
    .await;
    let res = org.resource("deployment").await;
    org.member("bob@example.com").await;
    org.bind(
        "bob-cm",
        "bob@example.com",
        "cm-reader",
        all("deployment"),
        "full",
    )
    .await;

    // The operator (least privilege) may not bind this ClusterRole yet: the binding says
    // so and how to fix it, and the rest of the organization still works.
    let bindings = org.bindings();
    let ready = eventually("bob-cm reports why it grants nothing", REACT, || async {
        let status = bindings.get("bob-cm").await.ok()?.status?;
        status
            .conditions
            .into_iter()
            .find(|c| c.type_ == "Ready" && c.reason == "ClusterRoleNotBindable")
    })
    .await;
    assert_eq!(ready.status, "False");
    assert!(
        ready.message.contains("aggregate-to-operator"),
        "{}",
        ready.message
    );
    eventually_can(&client, "bob@example.com", org.get_org(), true, REACT).await;
    assert!(
        !can(
            &client,
            "bob@example.com",
            Can::new("list", "configmaps", Some(&res))
        )
        .await
    );

    // A cluster admin grants `bind` the documented way (manifests/rbac.yaml).
    let grant: ClusterRole = serde_json::from_value(serde_json::json!({
        "metadata": {"name": format!("{role_name}-bind"), "labels": {"kube-org.io/aggregate-to-operator": "true"}},
        "rules": [{"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles"],
                   "verbs": ["bind"], "resourceNames": [role_name]}],
    }))
    .expect("cluster role");
    cluster_roles
        .create(&PostParams::default(), &grant)
        .await
        .expect("creating the bind grant");
    // kube-org looks again every 30s while a ClusterRole is not bindable.
    eventually_can(
        &client,
        "bob@example.com",
        Can::new("list", "configmaps", Some(&res)),
        true,
        Duration::from_secs(45),
    )
    .await;
    assert!(
        !can(
            &client,
            "bob@example.com",
            Can::new("list", "secrets", Some(&res))
        )
        .await
    );
    org.delete().await;
    let _ = cluster_roles
        .delete(&format!("{role_name}-bind"), &Default::default())
        .await;
}

#[tokio::test]
async fn overlapping_roles_combine_and_removing_one_leaves_no_gap() {
    let org = TestOrg::new(&["alice@example.com"]).await;
    let c = &org.client;
    let res = org.resource("deployment").await;
    org.member_with_role("bob@example.com", "bob-viewer", "viewer", all("deployment"))
        .await;
    org.bind(
        "bob-editor",
        "bob@example.com",
        "editor",
        named("deployment", &[&res]),
        "full",
    )
    .await;
    assert_level(c, "bob@example.com", &res, "editor").await;

    // Watch the viewer's access continuously while the editor role goes away.
    let watcher = {
        let (c, res) = (c.clone(), res.clone());
        tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(3);
            let mut checks = 0;
            while Instant::now() < deadline {
                assert!(
                    can(&c, "bob@example.com", viewer_up(&res)).await,
                    "viewer access had a gap"
                );
                checks += 1;
            }
            checks
        })
    };
    org.bindings()
        .delete("bob-editor", &DeleteParams::default())
        .await
        .expect("deleting the editor binding");
    assert_level(c, "bob@example.com", &res, "viewer").await;
    let checks = watcher.await.expect("the gap watcher");
    assert!(checks > 10, "only {checks} checks ran");
    org.delete().await;
}

#[tokio::test]
async fn removing_a_member_revokes_access_at_once_and_deletes_their_bindings() {
    let (org, res) = bob_views_all().await;
    let c = &org.client;
    let memberships = org.memberships();
    // bob is no owner: nothing could refuse his leaving, so kube-org holds his
    // Membership with no finalizer (and saved the write). His status is there.
    let bob = eventually("bob's Membership Ready", REACT, || async {
        let m = memberships.get("bob-example-com").await.ok()?;
        let ready = m
            .status
            .as_ref()?
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        ready.then_some(m)
    })
    .await;
    assert!(
        !bob.finalizers()
            .iter()
            .any(|f| f == "kube-org.io/membership"),
        "a plain member's Membership is held: {:?}",
        bob.finalizers()
    );

    let started = Instant::now();
    memberships
        .delete("bob-example-com", &DeleteParams::default())
        .await
        .expect("deleting the membership");
    eventually_can(c, "bob@example.com", viewer_up(&res), false, REACT).await;
    eprintln!(
        "access revoked {:?} after the Membership was deleted",
        started.elapsed()
    );
    let bindings = org.bindings();
    eventually(
        "bob's RoleBinding deleted and the Membership gone",
        REACT,
        || async {
            let gone = bindings.get_opt("bob-viewer").await.ok()?.is_none()
                && memberships.get_opt("bob-example-com").await.ok()?.is_none();
            gone.then_some(())
        },
    )
    .await;
    eventually_event(c, "default", "MemberRemoved", &org.name, REACT, |e| {
        e.note
            .as_deref()
            .is_some_and(|n| n.contains("bob@example.com"))
    })
    .await;
    org.delete().await;
}

#[tokio::test]
async fn a_tampered_or_deleted_native_binding_is_restored() {
    let (org, res) = bob_views_all().await;
    let c = &org.client;
    let natives: Api<NativeRoleBinding> = Api::namespaced(c.clone(), &res);
    let name = format!("kube-org:{}:view", org.name);

    let tamper = serde_json::json!({"subjects": [{"kind": "User", "name": "mallory@example.com", "apiGroup": "rbac.authorization.k8s.io"}]});
    natives
        .patch(&name, &PatchParams::default(), &Patch::Merge(&tamper))
        .await
        .expect("tampering");
    eventually("the tampered binding repaired", REACT, || async {
        let rb = natives.get(&name).await.ok()?;
        let names: Vec<String> = rb
            .subjects
            .unwrap_or_default()
            .into_iter()
            .map(|s| s.name)
            .collect();
        (names == ["bob@example.com"]).then_some(())
    })
    .await;

    natives
        .delete(&name, &DeleteParams::default())
        .await
        .expect("deleting the native binding");
    eventually("the deleted binding restored", REACT, || async {
        natives.get_opt(&name).await.ok().flatten().map(|_| ())
    })
    .await;
    assert_level(c, "bob@example.com", &res, "viewer").await;
    org.delete().await;
}

#[tokio::test]
async fn the_last_owner_cannot_leave_while_others_remain() {
    let org = TestOrg::new(&["alice@example.com"]).await;
    org.member("bob@example.com").await;
    let memberships = org.memberships();
    let owner = eventually(
        "alice's owner Membership with its finalizer",
        REACT,
        || async {
            let list = memberships.list(&Default::default()).await.ok()?;
            list.items.into_iter().find(|m| {
                m.spec.email.0 == "alice@example.com"
                    && m.finalizers().iter().any(|f| f == "kube-org.io/membership")
            })
        },
    )
    .await;
    memberships
        .delete(&owner.name_any(), &DeleteParams::default())
        .await
        .expect("asking alice to leave");
    let condition = eventually("the refusal in alice's status", REACT, || async {
        let m = memberships.get(&owner.name_any()).await.ok()?;
        m.status?
            .conditions
            .into_iter()
            .find(|c| c.type_ == "Ready" && c.reason == "LastOwner")
    })
    .await;
    assert_eq!(condition.status, "False");
    assert!(
        condition.message.contains("last owner"),
        "{}",
        condition.message
    );
    eventually_event(
        &org.client,
        &org.home,
        "LastOwner",
        &owner.name_any(),
        REACT,
        |_| true,
    )
    .await;
    // Still a member, still an owner.
    assert!(memberships.get(&owner.name_any()).await.is_ok());
    let res = org.resource("deployment").await;
    assert_level(&org.client, "alice@example.com", &res, "admin").await;
    org.delete().await;
}

#[tokio::test]
async fn admins_of_all_resources_see_the_organizations_bindings_admins_of_named_ones_do_not() {
    let org = TestOrg::new(&["alice@example.com"]).await;
    let c = &org.client;
    let res = org.resource("deployment").await;
    org.member("bob@example.com").await;
    org.member("carol@example.com").await;
    org.bind(
        "bob-admin",
        "bob@example.com",
        "admin",
        all("deployment"),
        "full",
    )
    .await;
    org.bind(
        "carol-admin",
        "carol@example.com",
        "admin",
        named("deployment", &[&res]),
        "full",
    )
    .await;
    let org_bindings = org.in_home("list", "rolebindings.kube-org.io");
    let native_bindings = Can::new("list", "rolebindings.rbac.authorization.k8s.io", Some(&res));
    eventually_can(c, "bob@example.com", org_bindings, true, REACT).await;
    eventually_can(c, "carol@example.com", native_bindings, true, REACT).await;
    assert!(
        !can(c, "carol@example.com", org_bindings).await,
        "admins of named resources see only their namespaces' bindings"
    );
    org.delete().await;
}

#[tokio::test]
async fn deleting_an_organization_removes_what_kube_org_created_and_keeps_resources() {
    let org = TestOrg::new(&["alice@example.com"]).await;
    let c = org.client.clone();
    let res = org.resource("deployment").await;
    assert_level(&c, "alice@example.com", &res, "admin").await;
    let (name, home) = (org.name.clone(), org.home.clone());
    org.delete().await;
    let namespaces: Api<Namespace> = Api::all(c.clone());
    let roles: Api<ClusterRole> = Api::all(c.clone());
    let natives: Api<NativeRoleBinding> = Api::namespaced(c.clone(), &res);
    eventually(
        "the organization's objects garbage-collected",
        Duration::from_secs(60),
        || async {
            let home_gone = namespaces
                .get_opt(&home)
                .await
                .ok()?
                .is_none_or(|ns| ns.metadata.deletion_timestamp.is_some());
            let role_gone = roles
                .get_opt(&format!("kube-org:organization:{name}"))
                .await
                .ok()?
                .is_none();
            let natives_gone = natives
                .list(&Default::default())
                .await
                .ok()?
                .items
                .iter()
                .all(|rb| !rb.name_any().starts_with("kube-org:"));
            (home_gone && role_gone && natives_gone).then_some(())
        },
    )
    .await;
    let kept = namespaces
        .get(&res)
        .await
        .expect("the resource namespace still exists");
    assert!(kept.metadata.deletion_timestamp.is_none());
    assert_level(&c, "alice@example.com", &res, "none").await;
}

/// What the API server keeps of a binding written as protobuf, to compare with what was
/// sent: name, labels, annotations, owners, roleRef and subjects.
type Content = (
    Option<String>,
    Option<std::collections::BTreeMap<String, String>>,
    Option<std::collections::BTreeMap<String, String>>,
    Option<Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference>>,
    k8s_openapi::api::rbac::v1::RoleRef,
    Option<Vec<k8s_openapi::api::rbac::v1::Subject>>,
);

fn content(
    meta: &kube::api::ObjectMeta,
    role_ref: &k8s_openapi::api::rbac::v1::RoleRef,
    subjects: &Option<Vec<k8s_openapi::api::rbac::v1::Subject>>,
) -> Content {
    (
        meta.name.clone(),
        meta.labels.clone(),
        meta.annotations.clone(),
        meta.owner_references.clone(),
        role_ref.clone(),
        subjects.clone(),
    )
}

/// `n` users named `<prefix><i>-ü@example.com` (not ASCII: lengths count bytes).
fn users(prefix: &str, n: usize) -> Option<Vec<k8s_openapi::api::rbac::v1::Subject>> {
    Some(
        (0..n)
            .map(|i| k8s_openapi::api::rbac::v1::Subject {
                kind: "User".into(),
                api_group: Some("rbac.authorization.k8s.io".into()),
                name: format!("{prefix}{i}-ü@example.com"),
                namespace: None,
            })
            .collect(),
    )
}

/// The metadata kube-org gives a binding: a name, labels, an owner (real: the garbage
/// collector keeps the binding), here also an empty annotation.
fn written_meta(
    name: &str,
    namespace: Option<&str>,
    owner: k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
) -> kube::api::ObjectMeta {
    kube::api::ObjectMeta {
        name: Some(name.into()),
        namespace: namespace.map(Into::into),
        labels: Some(
            [(
                "kube-org.io/organization".to_string(),
                "protobuf".to_string(),
            )]
            .into(),
        ),
        annotations: Some([("note".to_string(), String::new())].into()),
        owner_references: Some(vec![owner]),
        ..Default::default()
    }
}

/// Writes `binding` as kube-org does (a create, or an unconditional replace), then
/// asserts that the API server keeps what was sent (`parts`).
async fn write_and_read_back<K>(api: &Api<K>, binding: &K, create: bool, parts: fn(&K) -> Content)
where
    K: kube::Resource
        + kube_org::wire::WireForm
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    use kube_org::metadata_reply;
    let (pp, name) = (PostParams::default(), binding.name_any());
    let made = if create {
        metadata_reply::create(api, &pp, binding).await
    } else {
        metadata_reply::replace(api, &name, &pp, binding).await
    }
    .expect("written");
    let stored = api.get(&name).await.expect("the binding");
    assert_eq!(
        stored.meta().resource_version,
        made.metadata.resource_version
    );
    assert_eq!(parts(&stored), parts(binding));
}

fn view_role() -> k8s_openapi::api::rbac::v1::RoleRef {
    k8s_openapi::api::rbac::v1::RoleRef {
        api_group: "rbac.authorization.k8s.io".into(),
        kind: "ClusterRole".into(),
        name: "view".into(),
    }
}

/// kube-org sends its native RoleBindings as Kubernetes' protobuf (src/wire.rs, encoded
/// by hand): the API server must read every field as written, and the binding must
/// grant. A create and a replace, read back as JSON.
#[tokio::test]
async fn a_native_binding_sent_as_protobuf_is_stored_as_written_and_grants() {
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::Resource as _;

    let client = client().await;
    let ns = common::namespace(&client, "protobuf").await;
    let owners: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let owner = owners
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({"metadata": {"name": "owner"}})).unwrap(),
        )
        .await
        .expect("an owner");
    let owner = owner.controller_owner_ref(&()).expect("an owner reference");
    let mut binding = NativeRoleBinding {
        metadata: written_meta("kube-org:protobuf:view", Some(&ns), owner),
        role_ref: view_role(),
        subjects: users("pb", 300),
    };
    assert!(
        kube_org::wire::role_binding(&binding).is_some(),
        "sent as protobuf"
    );
    let api: Api<NativeRoleBinding> = Api::namespaced(client.clone(), &ns);
    let parts = |b: &NativeRoleBinding| content(&b.metadata, &b.role_ref, &b.subjects);
    write_and_read_back(&api, &binding, true, parts).await;
    assert!(can(&client, "pb299-ü@example.com", viewer_up(&ns)).await);

    // A replace with fewer subjects (no resourceVersion: unconditional, as kube-org's).
    binding.subjects = users("pb", 2);
    write_and_read_back(&api, &binding, false, parts).await;
    assert!(can(&client, "pb1-ü@example.com", viewer_up(&ns)).await);
    assert!(!can(&client, "pb2-ü@example.com", viewer_up(&ns)).await);
    common::delete_namespace(&client, &ns).await;
}

/// The same for the organization's ClusterRoleBinding (cluster-scoped, owned here by a
/// Namespace).
#[tokio::test]
async fn a_cluster_role_binding_sent_as_protobuf_is_stored_as_written_and_grants() {
    use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
    use kube::Resource as _;

    let client = client().await;
    let ns = common::namespace(&client, "protobuf-crb").await;
    let owner = Api::<Namespace>::all(client.clone())
        .get(&ns)
        .await
        .expect("the namespace")
        .controller_owner_ref(&())
        .expect("an owner reference");
    let prefix = format!("{ns}-");
    let mut binding = ClusterRoleBinding {
        metadata: written_meta(&format!("kube-org:{ns}"), None, owner),
        role_ref: view_role(),
        subjects: users(&prefix, 300),
    };
    assert!(
        kube_org::wire::cluster_role_binding(&binding).is_some(),
        "sent as protobuf"
    );
    let api: Api<ClusterRoleBinding> = Api::all(client.clone());
    let parts = |b: &ClusterRoleBinding| content(&b.metadata, &b.role_ref, &b.subjects);
    write_and_read_back(&api, &binding, true, parts).await;
    assert!(
        can(
            &client,
            &format!("{prefix}299-ü@example.com"),
            viewer_up(&ns)
        )
        .await
    );

    binding.subjects = users(&prefix, 2);
    write_and_read_back(&api, &binding, false, parts).await;
    assert!(!can(&client, &format!("{prefix}2-ü@example.com"), viewer_up(&ns)).await);
    api.delete(&binding.name_any(), &Default::default())
        .await
        .expect("deleting the binding");
    common::delete_namespace(&client, &ns).await;
}
