//! The CRDs against the real API server: they become Established, every example
//! applies, and invalid manifests are rejected at admission with a message a person
//! understands.

mod common;

use common::{Mode, apply, client, error_message, parse_yaml, unique};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;

#[tokio::test]
async fn crds_are_established_with_names_and_categories() {
    let client = client().await;
    let api: Api<CustomResourceDefinition> = Api::all(client);
    for (name, short) in [
        ("organizations.kube-org.io", "org"),
        ("memberships.kube-org.io", "orgmember"),
        ("invitations.kube-org.io", "inv"),
        ("rolebindings.kube-org.io", "orgrb"),
    ] {
        let crd = api
            .get(name)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let status = crd.status.expect("CRD status");
        let conditions = status.conditions.unwrap_or_default();
        for wanted in ["Established", "NamesAccepted"] {
            assert!(
                conditions
                    .iter()
                    .any(|c| c.type_ == wanted && c.status == "True"),
                "{name} is not {wanted}: {conditions:?}"
            );
        }
        let names = status.accepted_names.expect("accepted names");
        assert_eq!(names.short_names, Some(vec![short.to_string()]));
        assert_eq!(names.categories, Some(vec!["kube-org".to_string()]));
    }
}

/// Applies every example (dry run: full admission without persisting, so a cluster
/// running the examples for real is left alone), creating the namespaces they live in.
#[tokio::test]
async fn every_example_applies() {
    let client = client().await;
    let mut files: Vec<_> = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/examples"))
        .expect("examples/ exists")
        .map(|entry| entry.expect("readable examples/").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 5, "expected the examples, found {files:?}");
    let mut created = Vec::new();
    let mut applied = 0;
    for file in &files {
        let yaml = std::fs::read_to_string(file).expect("readable example");
        for object in parse_yaml(&yaml) {
            if let Some(ns) = &object.metadata.namespace
                && common::create_namespace(&client, ns).await
            {
                created.push(ns.clone());
            }
            apply(&client, &object, Mode::DryRun)
                .await
                .unwrap_or_else(|e| {
                    panic!(
                        "{} ({:?}) was rejected: {}",
                        file.display(),
                        object.metadata.name,
                        error_message(&e)
                    )
                });
            applied += 1;
        }
    }
    for ns in created {
        common::delete_namespace(&client, &ns).await;
    }
    assert!(applied >= 10, "only {applied} objects in examples/");
}

const ORGANIZATION: &str = r#"
apiVersion: kube-org.io/v1alpha1
kind: Organization
metadata: {name: NAME}
spec:
  owners: [alice@example.com]
"#;

const MEMBERSHIP: &str = r#"
apiVersion: kube-org.io/v1alpha1
kind: Membership
metadata: {name: NAME, namespace: NS}
spec:
  email: bob@example.com
"#;

const ROLEBINDING: &str = r#"
apiVersion: kube-org.io/v1alpha1
kind: RoleBinding
metadata: {name: NAME, namespace: NS}
spec:
  member: bob@example.com
  role: viewer
  scope: {resourceType: deployment, all: true}
"#;

const INVITATION: &str = r#"
apiVersion: kube-org.io/v1alpha1
kind: Invitation
metadata: {name: NAME, namespace: NS}
spec:
  email: dave@example.com
  roles:
    - role: viewer
      scope: {organization: {}}
"#;

/// One manifest the API server must refuse: a valid base with one field replaced
/// (`path` is dot-separated from the object's root; `value` is YAML).
struct Invalid {
    what: &'static str,
    base: &'static str,
    path: &'static str,
    value: &'static str,
    expect: &'static str,
}

const fn bad(
    what: &'static str,
    base: &'static str,
    path: &'static str,
    value: &'static str,
    expect: &'static str,
) -> Invalid {
    Invalid {
        what,
        base,
        path,
        value,
        expect,
    }
}

const INVALID: &[Invalid] = &[
    bad(
        "no owners",
        ORGANIZATION,
        "spec.owners",
        "[]",
        "an organization needs at least one owner",
    ),
    bad(
        "owners missing",
        ORGANIZATION,
        "spec.owners",
        "~",
        "spec.owners: Required value",
    ),
    bad(
        "owner not an email",
        ORGANIZATION,
        "spec.owners",
        "[alice]",
        "must be an email address",
    ),
    bad(
        "owner with a space",
        ORGANIZATION,
        "spec.owners",
        "['alice smith@example.com']",
        "must be an email address",
    ),
    bad(
        "ttl in words",
        ORGANIZATION,
        "spec.invitations",
        "{ttl: 3 days}",
        "must be a positive duration such as 72h",
    ),
    bad(
        "negative ttl",
        ORGANIZATION,
        "spec.invitations",
        "{ttl: -1h}",
        "must be a positive duration such as 72h",
    ),
    bad(
        "zero ttl",
        ORGANIZATION,
        "spec.invitations",
        "{ttl: 0s}",
        "must be between 1s and 8760h",
    ),
    bad(
        "ttl over a year",
        ORGANIZATION,
        "spec.invitations",
        "{ttl: 9000h}",
        "must be between 1s and 8760h",
    ),
    bad(
        "negative autoResend",
        ORGANIZATION,
        "spec.invitations",
        "{autoResend: -1}",
        "should be greater than or equal to 0",
    ),
    bad(
        "acceptURL not http",
        ORGANIZATION,
        "spec.invitations",
        "{acceptURL: 'ftp://example.com'}",
        "acceptURL must start with https:// or http://",
    ),
    bad(
        "from not an email",
        ORGANIZATION,
        "spec.invitations",
        "{from: noreply}",
        "must be an email address",
    ),
    bad(
        "domain with @",
        ORGANIZATION,
        "spec.membership",
        "{allowedEmailDomains: ['@example.com']}",
        "must be an email domain such as example.com",
    ),
    bad(
        "home namespace not a DNS label",
        ORGANIZATION,
        "spec.homeNamespace",
        "Team_NS",
        "must be a lower-case DNS label",
    ),
    bad(
        "name too long for org-<name>",
        ORGANIZATION,
        "metadata.name",
        "a-very-long-organization-name-that-cannot-have-a-home-namespace",
        "at most 59 characters",
    ),
    bad(
        "organization role with resource types",
        ORGANIZATION,
        "spec.roles",
        "[{name: auditor, level: organization, resourceTypes: [deployment]}]",
        "an organization-level role applies to no resource types",
    ),
    bad(
        "unknown role level",
        ORGANIZATION,
        "spec.roles",
        "[{name: auditor, level: team}]",
        "Unsupported value: \"team\"",
    ),
    bad(
        "empty resource types",
        ORGANIZATION,
        "spec.resourceTypes",
        "[]",
        "should have at least 1 items",
    ),
    bad(
        "membership email not an email",
        MEMBERSHIP,
        "spec.email",
        "bob-at-example.com",
        "must be an email address",
    ),
    bad(
        "membership without email",
        MEMBERSHIP,
        "spec.email",
        "~",
        "spec.email: Required value",
    ),
    bad(
        "two scope shapes",
        ROLEBINDING,
        "spec.scope",
        "{organization: {}, resourceType: deployment, all: true}",
        "scope must be exactly one of",
    ),
    bad(
        "empty scope",
        ROLEBINDING,
        "spec.scope",
        "{}",
        "scope must be exactly one of",
    ),
    bad(
        "type without all or resources",
        ROLEBINDING,
        "spec.scope",
        "{resourceType: deployment}",
        "needs exactly one of all: true or a non-empty list of resources",
    ),
    bad(
        "type with all and resources",
        ROLEBINDING,
        "spec.scope",
        "{resourceType: deployment, all: true, resources: [prod]}",
        "needs exactly one of all: true or a non-empty list of resources",
    ),
    bad(
        "organization scope with all",
        ROLEBINDING,
        "spec.scope",
        "{organization: {}, all: true}",
        "an organization scope takes no 'all' or 'resources'",
    ),
    bad(
        "unknown access",
        ROLEBINDING,
        "spec.access",
        "admin",
        "supported values: \"full\", \"console\"",
    ),
    bad(
        "role not a name",
        ROLEBINDING,
        "spec.role",
        "Admin!",
        "must be a lower-case DNS label",
    ),
    bad(
        "resource not a name",
        ROLEBINDING,
        "spec.scope",
        "{resourceType: deployment, resources: ['Prod Cluster']}",
        "must be a lower-case DNS label",
    ),
    bad(
        "member not an email",
        ROLEBINDING,
        "spec.member",
        "bob",
        "must be an email address",
    ),
    bad(
        "invitation without roles",
        INVITATION,
        "spec.roles",
        "[]",
        "an invitation offers at least one role",
    ),
    bad(
        "invitation ttl in words",
        INVITATION,
        "spec.ttl",
        "one week",
        "must be a positive duration such as 72h",
    ),
    bad(
        "negative resend",
        INVITATION,
        "spec.resend",
        "-1",
        "should be greater than or equal to 0",
    ),
    bad(
        "displayName with CR/LF (mail header injection)",
        ORGANIZATION,
        "spec.displayName",
        "\"Acme\\r\\nBcc: everyone@example.com\"",
        "displayName must be one line of text: no line breaks",
    ),
    bad(
        "displayName with a tab",
        ORGANIZATION,
        "spec.displayName",
        "\"Acme\\tTeam\"",
        "displayName must be one line of text",
    ),
    bad(
        "displayName too long",
        ORGANIZATION,
        "spec.displayName",
        "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        "Too long",
    ),
    bad(
        "role description with a line break",
        ORGANIZATION,
        "spec.roles",
        "[{name: auditor, clusterRole: view, description: \"reads\\nX-Injected: yes\"}]",
        "description must be one line of text",
    ),
    bad(
        "sender with CR/LF",
        ORGANIZATION,
        "spec.invitations",
        "{from: \"kube-org@example.com\\r\\nBcc: x@example.com\"}",
        "must be an email address",
    ),
    bad(
        "sender with a control character",
        ORGANIZATION,
        "spec.invitations",
        "{from: \"kube\\u0007org@example.com\"}",
        "must be an email address",
    ),
    bad(
        "acceptURL with a line break",
        ORGANIZATION,
        "spec.invitations",
        "{acceptURL: \"https://org.example.com/\\r\\nLocation: https://evil.example\"}",
        "acceptURL must be a URL without spaces, line breaks or other control characters",
    ),
    bad(
        "acceptURL with a space",
        ORGANIZATION,
        "spec.invitations",
        "{acceptURL: \"https://org.example.com/a b\"}",
        "acceptURL must be a URL without spaces",
    ),
    bad(
        "invitee not an email",
        INVITATION,
        "spec.email",
        "dave@",
        "must be an email address",
    ),
    bad(
        "invitation role with two scopes",
        INVITATION,
        "spec.roles",
        "[{role: viewer, scope: {organization: {}, resourceType: deployment, all: true}}]",
        "scope must be exactly one of",
    ),
    bad(
        "a system: username prefix",
        ORGANIZATION,
        "spec.identity",
        "{usernamePrefix: 'system:'}",
        "usernamePrefix cannot start with system:",
    ),
    bad(
        "a groups prefix with a space",
        ORGANIZATION,
        "spec.identity",
        "{groupsPrefix: 'o idc:'}",
        "groupsPrefix must have no spaces",
    ),
    bad(
        "an auto-join system group",
        ORGANIZATION,
        "spec.membership",
        "{groups: [{group: 'system:masters', roles: [{role: viewer, scope: {organization: {}}}]}]}",
        "group cannot name a Kubernetes system group",
    ),
    bad(
        "an auto-join group without roles",
        ORGANIZATION,
        "spec.membership",
        "{groups: [{group: developers, roles: []}]}",
        "spec.membership.groups[0].roles",
    ),
];

/// Replaces (or with `~`, removes) the value at a dot-separated path.
fn set_path(root: &mut serde_yaml::Value, path: &str, value: &str) {
    let value: serde_yaml::Value = serde_yaml::from_str(value).expect("case value is YAML");
    let mut keys: Vec<&str> = path.split('.').collect();
    let last = keys.pop().expect("non-empty path");
    let mut node = root;
    for key in keys {
        node = node
            .get_mut(key)
            .unwrap_or_else(|| panic!("path {path} not in base"));
    }
    let map = node.as_mapping_mut().expect("a mapping");
    if value.is_null() {
        map.remove(last);
    } else {
        map.insert(last.into(), value);
    }
}

fn render(base: &str, name: &str, namespace: &str) -> serde_yaml::Value {
    serde_yaml::from_str(&base.replace("NAME", name).replace("NS", namespace))
        .expect("base is YAML")
}

#[tokio::test]
async fn invalid_manifests_are_rejected_with_clear_messages() {
    let client = client().await;
    let namespace = common::namespace(&client, "invalid").await;
    assert!(INVALID.len() >= 20);

    // The bases themselves are accepted: a rejection below is caused by the one change.
    for base in [ORGANIZATION, MEMBERSHIP, ROLEBINDING, INVITATION] {
        let object =
            serde_yaml::from_value(render(base, &unique("valid"), &namespace)).expect("object");
        apply(&client, &object, Mode::DryRun)
            .await
            .unwrap_or_else(|e| {
                panic!("the valid base was rejected: {}\n{base}", error_message(&e))
            });
    }

    let mut failures = Vec::new();
    for case in INVALID {
        let mut manifest = render(case.base, &unique("invalid"), &namespace);
        set_path(&mut manifest, case.path, case.value);
        let object = serde_yaml::from_value(manifest).expect("object");
        match apply(&client, &object, Mode::DryRun).await {
            Ok(_) => failures.push(format!("{}: accepted", case.what)),
            Err(error) => {
                let message = error_message(&error);
                if !message.contains(case.expect) {
                    failures.push(format!(
                        "{}: expected {:?} in {:?}",
                        case.what, case.expect, message
                    ));
                }
            }
        }
    }
    common::delete_namespace(&client, &namespace).await;
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        INVALID.len(),
        failures.join("\n")
    );
}

/// Fields that cannot change once set: the API server refuses the update.
#[tokio::test]
async fn immutable_fields_are_refused_on_update() {
    let client = client().await;
    let namespace = common::namespace(&client, "immutable").await;
    let org_name = unique("immutable");
    let cases = [
        (
            ORGANIZATION,
            org_name.as_str(),
            "spec.homeNamespace",
            "elsewhere",
            "homeNamespace cannot be changed",
        ),
        (
            MEMBERSHIP,
            "member",
            "spec.email",
            "other@example.com",
            "email cannot be changed",
        ),
        (
            INVITATION,
            "invite",
            "spec.email",
            "other@example.com",
            "email cannot be changed",
        ),
    ];
    let mut failures = Vec::new();
    for (base, name, path, value, expect) in cases {
        let original = render(base, name, &namespace);
        apply(
            &client,
            &serde_yaml::from_value(original.clone()).expect("object"),
            Mode::Apply,
        )
        .await
        .unwrap_or_else(|e| panic!("creating {name}: {}", error_message(&e)));
        let mut changed = original;
        set_path(&mut changed, path, value);
        match apply(
            &client,
            &serde_yaml::from_value(changed).expect("object"),
            Mode::DryRun,
        )
        .await
        {
            Ok(_) => failures.push(format!("{path} of {name}: change accepted")),
            Err(error) if !error_message(&error).contains(expect) => failures.push(format!(
                "{path} of {name}: expected {expect:?} in {:?}",
                error_message(&error)
            )),
            Err(_) => {}
        }
    }

    // resend only goes up.
    let mut raised = render(INVITATION, "invite", &namespace);
    set_path(&mut raised, "spec.resend", "2");
    apply(
        &client,
        &serde_yaml::from_value(raised.clone()).expect("object"),
        Mode::Apply,
    )
    .await
    .unwrap_or_else(|e| panic!("raising resend: {}", error_message(&e)));
    set_path(&mut raised, "spec.resend", "1");
    match apply(
        &client,
        &serde_yaml::from_value(raised).expect("object"),
        Mode::DryRun,
    )
    .await
    {
        Ok(_) => failures.push("lowering resend was accepted".to_string()),
        Err(error) if !error_message(&error).contains("resend can only be raised") => {
            failures.push(format!("lowering resend: {:?}", error_message(&error)))
        }
        Err(_) => {}
    }

    let orgs: Api<kube_org::api::Organization> = Api::all(client.clone());
    let _ = orgs.delete(&org_name, &Default::default()).await;
    common::delete_namespace(&client, &namespace).await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
