use super::*;

fn acme() -> Organization {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "kube-org.io/v1alpha1", "kind": "Organization",
        "metadata": {"name": "acme"},
        "spec": {"owners": ["alice@example.com"], "resourceTypes": ["deployment"]},
    }))
    .expect("an organization")
}

fn bob() -> Membership {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "kube-org.io/v1alpha1", "kind": "Membership",
        "metadata": {"name": "bob", "namespace": "org-acme"},
        "spec": {"email": "bob@example.com"},
    }))
    .expect("a membership")
}

fn binding(name: &str, role: &str, scope: serde_json::Value) -> RoleBinding {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "kube-org.io/v1alpha1", "kind": "RoleBinding",
        "metadata": {"name": name, "namespace": "org-acme"},
        "spec": {"member": "bob@example.com", "role": role, "scope": scope},
    }))
    .expect("a binding")
}

/// bob views every deployment.
fn bob_viewer() -> RoleBinding {
    binding(
        "bob-viewer",
        "viewer",
        serde_json::json!({"resourceType": "deployment", "all": true}),
    )
}

fn prod() -> Namespace {
    serde_json::from_value(
        serde_json::json!({"metadata": {"name": "acme-prod", "labels": {
            "kube-org.io/organization": "acme", "kube-org.io/resource-type": "deployment",
        }}}),
    )
    .expect("a namespace")
}

fn native(name: &str, cluster_role: &str, users: &[&str], managed: bool) -> NativeRoleBinding {
    let labels = if managed {
        serde_json::json!({"app.kubernetes.io/managed-by": "kube-org", "kube-org.io/organization": "acme"})
    } else {
        serde_json::json!({})
    };
    let subjects: Vec<serde_json::Value> = users
        .iter()
        .map(|u| serde_json::json!({"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": u}))
        .collect();
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "namespace": "acme-prod", "labels": labels},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": cluster_role},
        "subjects": subjects,
    }))
    .expect("a native binding")
}

fn cluster_role(name: &str, rules: serde_json::Value) -> ClusterRole {
    serde_json::from_value(serde_json::json!({"metadata": {"name": name}, "rules": rules}))
        .expect("a cluster role")
}

fn visibility() -> ClusterRoleBinding {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": "kube-org:organization:acme", "labels": {
            "app.kubernetes.io/managed-by": "kube-org", "kube-org.io/organization": "acme"}},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "kube-org:organization:acme"},
        "subjects": [{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "bob@example.com"}],
    }))
    .expect("a cluster role binding")
}

fn list_pods() -> Request {
    Request {
        verb: "list".into(),
        group: String::new(),
        resource: "pods".into(),
        subresource: None,
        name: None,
        namespace: Some("acme-prod".into()),
    }
}

fn roles() -> Vec<ClusterRole> {
    vec![
        cluster_role(
            "view",
            serde_json::json!([{"apiGroups": [""], "resources": ["configmaps", "pods"], "verbs": ["get", "list", "watch"]}]),
        ),
        cluster_role(
            "edit",
            serde_json::json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["create", "delete", "get", "list"]}]),
        ),
        cluster_role(
            "kube-org:organization:acme",
            serde_json::json!([{"apiGroups": ["kube-org.io"], "resources": ["organizations"], "resourceNames": ["acme"], "verbs": ["get"]}]),
        ),
    ]
}

/// The chain for bob in acme, with [`roles`] as the cluster's ClusterRoles.
fn explain_for(
    request: &Request,
    role_bindings: &[NativeRoleBinding],
    cluster_role_bindings: &[ClusterRoleBinding],
    intents: &[Intent],
) -> Explanation {
    explain(&Evidence {
        user: "bob@example.com",
        org: "acme",
        request,
        role_bindings,
        cluster_role_bindings,
        cluster_roles: &roles(),
        roles: &[],
        intents,
    })
}

/// What bob sees for `request`.
fn view_of(request: Request, allowed: bool, explanation: Explanation) -> WhyView {
    WhyView {
        email: "bob@example.com".into(),
        user: "bob@example.com".into(),
        organization: "acme".into(),
        granted_by_kube_org: allowed && explanation.from_kube_org(),
        request,
        allowed,
        reason: String::new(),
        explanation,
    }
}

fn grants_of<'a>(intents: &'a [Intent], object: &str) -> &'a [Grant] {
    &intents
        .iter()
        .find(|i| i.source.object() == object)
        .unwrap_or_else(|| panic!("no intent of {object}"))
        .grants
}

fn grant(namespace: Option<&str>, binding: &str, cluster_role: &str) -> Grant {
    Grant {
        namespace: namespace.map(str::to_string),
        binding: binding.into(),
        cluster_role: cluster_role.into(),
    }
}

#[test]
fn intents_are_kube_orgs_own_computation_per_object() {
    let bindings = [
        bob_viewer(),
        binding(
            "bob-billing",
            "billing-admin",
            serde_json::json!({"organization": {}}),
        ),
        // Someone else's binding is not bob's.
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "carol-admin", "namespace": "org-acme"},
            "spec": {"member": "carol@example.com", "role": "admin",
                     "scope": {"resourceType": "deployment", "all": true}},
        }))
        .expect("a binding"),
    ];
    let intents = intents(&acme(), &bob(), &bindings, &[prod()]);
    let objects: Vec<String> = intents.iter().map(|i| i.source.object()).collect();
    assert_eq!(
        objects,
        [
            "membership/bob",
            "rolebinding/bob-billing",
            "rolebinding/bob-viewer"
        ]
    );
    assert_eq!(
        grants_of(&intents, "membership/bob"),
        [grant(
            None,
            "kube-org:organization:acme",
            "kube-org:organization:acme"
        )]
    );
    assert_eq!(
        grants_of(&intents, "rolebinding/bob-viewer"),
        [grant(Some("acme-prod"), "kube-org:acme:view", "view")]
    );
    // An organization-level role reads the home namespace's kube-org objects.
    assert_eq!(
        grants_of(&intents, "rolebinding/bob-billing"),
        [grant(
            Some("org-acme"),
            "kube-org:acme:kube-org:reader",
            "kube-org:reader"
        )]
    );
    // A namespace that is no resource of the organization is bound by nothing.
    let elsewhere = intents_without_resources(&bindings);
    assert!(grants_of(&elsewhere, "rolebinding/bob-viewer").is_empty());
}

fn intents_without_resources(bindings: &[RoleBinding]) -> Vec<Intent> {
    intents(&acme(), &bob(), bindings, &[])
}

#[test]
fn the_chain_runs_from_the_kube_org_binding_to_the_rule() {
    let viewer = [bob_viewer()];
    let intents = intents(&acme(), &bob(), &viewer, &[prod()]);
    let role_bindings = [
        native(
            "kube-org:acme:view",
            "view",
            &["alice@example.com", "bob@example.com"],
            true,
        ),
        native("kube-org:acme:edit", "edit", &["alice@example.com"], true),
    ];
    let request = list_pods();
    let explanation = explain_for(&request, &role_bindings, &[visibility()], &intents);
    assert!(explanation.from_kube_org());
    assert!(explanation.pending.is_empty(), "{explanation:?}");
    let granting: Vec<&Link> = explanation.granting().collect();
    assert_eq!(granting.len(), 1);
    let link = granting[0];
    assert_eq!(
        link.binding.text(),
        "RoleBinding acme-prod/kube-org:acme:view"
    );
    assert_eq!(link.role, "ClusterRole view");
    assert_eq!(link.rule.as_deref(), Some("get,list,watch pods"));
    assert_eq!(link.kube_org.len(), 1);
    assert_eq!(link.kube_org[0].grants(), "viewer on deployment/*");
    // The organization's visibility names bob too, and does not allow this.
    let visible = &explanation.links[0];
    assert_eq!(visible.binding.kind, "ClusterRoleBinding");
    assert_eq!(visible.rule, None);
    assert_eq!(visible.kube_org[0].object(), "membership/bob");

    let view = WhyView {
        reason: "RBAC: allowed by RoleBinding \"kube-org:acme:view/acme-prod\"".into(),
        ..view_of(request, true, explanation)
    };
    let text = render(&view);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "yes: bob@example.com may list pods in namespace acme-prod"
    );
    assert!(lines[1].starts_with("the cluster says: RBAC: allowed"));
    assert_eq!(lines[2], "granted through kube-org organization acme:");
    let row: Vec<&str> = lines[5]
        .split("   ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(
        row,
        [
            "rolebinding/bob-viewer",
            "viewer on deployment/*",
            "RoleBinding acme-prod/kube-org:acme:view",
            "ClusterRole view",
            "get,list,watch pods"
        ],
        "{text}"
    );
    assert_eq!(lines.len(), 6, "{text}");
    let json = serde_json::to_value(&view).expect("serializes");
    assert_eq!(json["grantedByKubeOrg"], true);
    assert_eq!(json["links"][1]["kubeOrg"][0]["kind"], "RoleBinding");
    assert_eq!(json["links"][1]["kubeOrg"][0]["name"], "bob-viewer");
    assert_eq!(json["links"][0]["kubeOrg"][0]["kind"], "Membership");
}

#[test]
fn a_grant_from_outside_kube_org_is_named_as_such() {
    let role_bindings = [native("extra", "edit", &["bob@example.com"], false)];
    let request = Request {
        verb: "delete".into(),
        ..list_pods()
    };
    let explanation = explain_for(
        &request,
        &role_bindings,
        &[],
        &intents(&acme(), &bob(), &[], &[prod()]),
    );
    assert!(!explanation.from_kube_org());
    let view = view_of(request, true, explanation);
    let text = render(&view);
    assert!(
        text.contains("no kube-org object grants this; it comes from:"),
        "{text}"
    );
    let row = text.lines().find(|l| l.starts_with("- ")).expect("a row");
    assert!(
        row.starts_with("-")
            && row.contains("RoleBinding acme-prod/extra")
            && row.ends_with("create,delete,get,list pods"),
        "{text}"
    );
    // The visibility ClusterRoleBinding kube-org means to make does not exist: pending.
    assert!(text.contains("note: membership/bob (member of acme) means to bind ClusterRole kube-org:organization:acme"), "{text}");
}

#[test]
fn a_refusal_shows_what_is_held_and_what_is_not_bound_yet() {
    let bindings = [
        bob_viewer(),
        binding(
            "bob-admin",
            "admin",
            serde_json::json!({"resourceType": "deployment", "resources": ["acme-prod"]}),
        ),
    ];
    let role_bindings = [native(
        "kube-org:acme:view",
        "view",
        &["bob@example.com"],
        true,
    )];
    let request = Request {
        verb: "delete".into(),
        ..list_pods()
    };
    let intents = intents(&acme(), &bob(), &bindings, &[prod()]);
    let explanation = explain_for(&request, &role_bindings, &[visibility()], &intents);
    assert_eq!(explanation.granting().count(), 0);
    assert_eq!(
        explanation.pending,
        [Pending {
            source: intents[1].source.clone(),
            grant: grant(Some("acme-prod"), "kube-org:acme:admin", "admin"),
        }]
    );
    let view = view_of(request, false, explanation);
    let text = render(&view);
    assert!(
        text.starts_with("no: bob@example.com may not delete pods in namespace acme-prod\nno kube-org object grants this.\n"),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("rolebinding/bob-viewer") && l.ends_with(" -")),
        "{text}"
    );
    assert!(
        text.contains("note: rolebinding/bob-admin (admin on deployment/acme-prod) means to bind ClusterRole admin through RoleBinding acme-prod/kube-org:acme:admin, which does not name user bob@example.com yet"),
        "{text}"
    );
}

#[test]
fn a_binding_beside_kube_orgs_is_shown_too() {
    let role_bindings = [
        native("kube-org:acme:view", "view", &["bob@example.com"], true),
        native("extra", "edit", &["bob@example.com"], false),
    ];
    let request = list_pods();
    let explanation = explain_for(
        &request,
        &role_bindings,
        &[visibility()],
        &intents(&acme(), &bob(), &[bob_viewer()], &[prod()]),
    );
    let text = render(&view_of(request, true, explanation));
    let rows: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("KUBE-ORG OBJECT"))
        .skip(1)
        .collect();
    assert_eq!(rows.len(), 2, "{text}");
    assert!(
        rows[0].starts_with("- ") && rows[0].contains("RoleBinding acme-prod/extra"),
        "{text}"
    );
    assert!(rows[1].starts_with("rolebinding/bob-viewer"), "{text}");
}

#[test]
fn another_organizations_binding_is_not_this_ones() {
    let mut theirs = native("kube-org:other:edit", "edit", &["bob@example.com"], true);
    theirs
        .labels_mut()
        .insert("kube-org.io/organization".into(), "other".into());
    let request = list_pods();
    let explanation = explain_for(&request, &[theirs], &[], &[]);
    let link = explanation.granting().next().expect("a grant");
    assert!(link.kube_org.is_empty());
    assert_eq!(link.managed_for.as_deref(), Some("other"));
    assert_eq!(
        chain_table(std::iter::once(link))
            .render()
            .lines()
            .nth(1)
            .expect("a row")
            .split("   ")
            .next(),
        Some("(kube-org of other)")
    );
}

#[test]
fn cluster_wide_questions_ignore_namespaced_bindings() {
    let role_bindings = [native("extra", "edit", &["bob@example.com"], false)];
    let request = Request {
        namespace: None,
        ..list_pods()
    };
    let explanation = explain_for(&request, &role_bindings, &[], &[]);
    assert!(explanation.links.is_empty());
}

#[test]
fn an_auto_join_group_is_not_the_members_binding() {
    let mut org = acme();
    org.spec.membership.groups = serde_json::from_value(serde_json::json!([{
        "group": "developers",
        "roles": [{"role": "editor", "scope": {"resourceType": "deployment", "all": true}}],
    }]))
    .expect("groups");
    let intents = intents(&org, &bob(), &[bob_viewer()], &[prod()]);
    assert_eq!(
        grants_of(&intents, "rolebinding/bob-viewer"),
        [grant(Some("acme-prod"), "kube-org:acme:view", "view")],
        "the group's edit binding is not bob's"
    );
}
