//! A test organization: an Organization with a unique name (the shared operator creates
//! its home namespace), resource namespaces, Memberships and kube-org RoleBindings.

use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use kube_org::api::{Membership, Organization, RoleBinding};

use super::{Can, client, create_organization, operator, unique, wait_for_namespace};

/// How long the operator may take to react to a change in these tests. Reaction time
/// itself is measured by `make bench-access`; this only bounds a hung test.
pub const REACT: Duration = Duration::from_secs(10);

/// A test organization with a unique name, deleted when the test ends well.
pub struct TestOrg {
    pub client: Client,
    pub name: String,
    pub home: String,
}

impl TestOrg {
    pub async fn new(owners: &[&str]) -> TestOrg {
        Self::with_spec(owners, serde_json::json!({})).await
    }

    /// An organization with extra spec fields (merged over owners and resource types).
    pub async fn with_spec(owners: &[&str], extra: serde_json::Value) -> TestOrg {
        let client = client().await;
        operator().await;
        let name = unique("org");
        let mut spec =
            serde_json::json!({"owners": owners, "resourceTypes": ["deployment", "elasticsearch"]});
        for (key, value) in extra.as_object().expect("an object") {
            spec[key] = value.clone();
        }
        let home = create_organization(&client, &name, serde_json::json!({}), spec).await;
        wait_for_namespace(&client, &home, REACT).await;
        TestOrg { client, name, home }
    }

    /// A namespace labelled into the organization as a resource of `kind`.
    pub async fn resource(&self, kind: &str) -> String {
        let name = unique(kind);
        self.label_resource(&name, kind).await;
        name
    }

    pub async fn label_resource(&self, name: &str, kind: &str) {
        let ns: Namespace = serde_json::from_value(serde_json::json!({"metadata": {
            "name": name,
            "labels": {"kube-org.io/organization": self.name, "kube-org.io/resource-type": kind},
        }}))
        .expect("namespace");
        Api::<Namespace>::all(self.client.clone())
            .patch(
                name,
                &PatchParams::apply("kube-org-tests").force(),
                &Patch::Apply(&ns),
            )
            .await
            .expect("labelling a resource namespace");
    }

    pub async fn member(&self, email: &str) {
        let m: Membership = serde_json::from_value(serde_json::json!({
            "apiVersion": "kube-org.io/v1alpha1", "kind": "Membership",
            "metadata": {"name": email.replace(['@', '.'], "-"), "namespace": self.home},
            "spec": {"email": email},
        }))
        .expect("membership");
        self.memberships()
            .create(&PostParams::default(), &m)
            .await
            .expect("creating a membership");
    }

    /// A member holding one role (full access) through one binding.
    pub async fn member_with_role(
        &self,
        email: &str,
        binding: &str,
        role: &str,
        scope: serde_json::Value,
    ) {
        self.member(email).await;
        self.bind(binding, email, role, scope, "full").await;
    }

    pub async fn bind(
        &self,
        name: &str,
        member: &str,
        role: &str,
        scope: serde_json::Value,
        access: &str,
    ) {
        let b: RoleBinding = serde_json::from_value(serde_json::json!({
            "apiVersion": "kube-org.io/v1alpha1", "kind": "RoleBinding",
            "metadata": {"name": name, "namespace": self.home},
            "spec": {"member": member, "role": role, "scope": scope, "access": access},
        }))
        .expect("rolebinding");
        self.bindings()
            .create(&PostParams::default(), &b)
            .await
            .expect("creating a rolebinding");
    }

    /// "May the user read this Organization object?"
    pub fn get_org(&self) -> Can<'_> {
        Can {
            name: Some(&self.name),
            ..Can::new("get", "organizations.kube-org.io", None)
        }
    }

    /// "May the user `verb` these kube-org objects in the home namespace?"
    pub fn in_home<'a>(&'a self, verb: &'a str, resource: &'a str) -> Can<'a> {
        Can::new(verb, resource, Some(&self.home))
    }

    pub fn memberships(&self) -> Api<Membership> {
        Api::namespaced(self.client.clone(), &self.home)
    }

    pub fn bindings(&self) -> Api<RoleBinding> {
        Api::namespaced(self.client.clone(), &self.home)
    }

    pub async fn delete(self) {
        let _ = Api::<Organization>::all(self.client.clone())
            .delete(&self.name, &DeleteParams::default())
            .await;
    }
}

/// Scope `{resourceType, all: true}`.
pub fn all(kind: &str) -> serde_json::Value {
    serde_json::json!({"resourceType": kind, "all": true})
}

/// Scope `{resourceType, resources: names}`.
pub fn named(kind: &str, names: &[&str]) -> serde_json::Value {
    serde_json::json!({"resourceType": kind, "resources": names})
}

/// Scope `organization: {}`.
pub fn org_scope() -> serde_json::Value {
    serde_json::json!({"organization": {}})
}

/// An organization with one deployment where bob, a member, holds `role` in the scope
/// `scope(resource)` with `access`; returns both.
pub async fn org_where_bob_has(
    role: &str,
    scope: impl FnOnce(&str) -> serde_json::Value,
    access: &str,
) -> (TestOrg, String) {
    let org = TestOrg::new(&["alice@example.com"]).await;
    let res = org.resource("deployment").await;
    org.member("bob@example.com").await;
    org.bind(
        &format!("bob-{role}"),
        "bob@example.com",
        role,
        scope(&res),
        access,
    )
    .await;
    (org, res)
}
