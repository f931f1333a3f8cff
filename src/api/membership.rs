//! Membership: one person in one organization (namespaced, in the home namespace).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::condition::Condition;
use super::fields::Email;
use super::scope::Access;

/// A member of an organization, identified by email.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "kube-org.io",
    version = "v1alpha1",
    kind = "Membership",
    namespaced,
    shortname = "orgmember",
    category = "kube-org",
    status = "MembershipStatus",
    doc = "A member of an organization. Deleting it revokes all the member's access at once.",
    printcolumn(name = "Email", type_ = "string", json_path = ".spec.email"),
    printcolumn(
        name = "User",
        type_ = "string",
        json_path = ".spec.user",
        priority = 1
    ),
    printcolumn(name = "Source", type_ = "string", json_path = ".status.source"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "Joined", type_ = "date", json_path = ".status.joinedAt"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.email == oldSelf.email").message("email cannot be changed; delete the Membership and create another"),
    validation = Rule::new("!has(self.user) || !self.user.startsWith('system:')").message("spec.user cannot name a Kubernetes system identity (system:...): those are service accounts, nodes and the API server's own users, not people; leave spec.user out to bind the email")
)]
pub struct MembershipSpec {
    /// The member's email address (compared in lower case).
    pub email: Email,

    /// The Kubernetes RBAC user name of the member; default: the email in lower case
    /// (clusters map the OIDC email claim to the user name). Never a `system:` identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub user: Option<String>,
}

/// What kube-org observed of a membership.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct MembershipStatus {
    /// `Ready` and specific conditions, each with a reason and a message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,

    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// When the person became a member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub joined_at: Option<Time>,

    /// Where the membership came from: `Owner` (spec.owners of the Organization),
    /// `Declared` (written directly), or `Invitation/<name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,

    /// Every role the member holds: the union of their bindings.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<MemberRole>,

    /// Where the member can go: each resource namespace and the ClusterRoles held there.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["namespace".into()]))]
    pub access: Vec<NamespaceAccess>,
}

/// One role a member holds.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberRole {
    /// The role's name.
    pub role: String,
    /// Where it applies.
    pub scope: String,
    /// `full` or `console`.
    pub access: Access,
    /// The kube-org RoleBinding that grants it.
    pub binding: String,
}

/// The ClusterRoles a member holds in one resource namespace.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceAccess {
    /// The resource namespace.
    pub namespace: String,
    /// The ClusterRoles bound to the member there.
    pub cluster_roles: Vec<String>,
}
