//! Labels, names and the ClusterRoles kube-org ships: the vocabulary shared by the pure
//! core, the shell that applies it and the manifests.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

/// On a Namespace: the organization it belongs to. On objects kube-org manages: the
/// organization they were made for (pruning selects by it).
pub const LABEL_ORGANIZATION: &str = "kube-org.io/organization";
/// On a Namespace: its resource type.
pub const LABEL_RESOURCE_TYPE: &str = "kube-org.io/resource-type";
/// On kube-org objects made from `spec.owners`: the object is managed by kube-org.
pub const LABEL_OWNER: &str = "kube-org.io/owner";
/// On Memberships: where it came from (`Invitation/<name>`), when not declared.
pub const ANNOTATION_SOURCE: &str = "kube-org.io/source";
/// The standard label naming the manager of an object.
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// kube-org's name as a manager.
pub const MANAGER: &str = "kube-org";
/// The finalizer on Memberships: revoke access and enforce the last-owner rule first.
pub const MEMBERSHIP_FINALIZER: &str = "kube-org.io/membership";

/// Shipped ClusterRole: manage the kube-org objects of the home namespace (owners).
pub const OWNER_CLUSTER_ROLE: &str = "kube-org:owner";
/// Shipped ClusterRole: read the kube-org objects of the home namespace
/// (organization-level roles such as billing admin).
pub const READER_CLUSTER_ROLE: &str = "kube-org:reader";
/// Shipped ClusterRole: read the organization's RoleBindings (admins of all resources of
/// a type).
pub const ROLEBINDING_READER_CLUSTER_ROLE: &str = "kube-org:rolebinding-reader";

/// The labels of every native object kube-org manages for `org`.
pub fn managed_labels(org: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_MANAGED_BY.to_string(), MANAGER.to_string()),
        (LABEL_ORGANIZATION.to_string(), org.to_string()),
    ])
}

/// The label selector matching what kube-org manages for every organization.
pub fn managed_selector() -> String {
    format!("{LABEL_MANAGED_BY}={MANAGER},{LABEL_ORGANIZATION}")
}

/// The native RoleBinding granting `cluster_role` in a namespace for `org`.
pub fn native_binding_name(org: &str, cluster_role: &str) -> String {
    format!("kube-org:{org}:{cluster_role}")
}

/// The per-organization ClusterRole (and its binding) that lets members see the
/// organization and which resources exist.
pub fn organization_cluster_role_name(org: &str) -> String {
    format!("kube-org:organization:{org}")
}

/// A stable, valid object name for something about one person: a readable slug of the
/// email and a short hash, so different addresses never collide.
pub fn person_object_name(prefix: &str, email: &str) -> String {
    let slug: String = email
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let slug: String = slug.trim_matches('-').chars().take(40).collect();
    let digest = Sha256::digest(email.as_bytes());
    let hash: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    format!("{prefix}-{}-{hash}", slug.trim_end_matches('-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn person_names_are_valid_and_distinct() {
        let a = person_object_name("owner", "alice.x@example.com");
        let b = person_object_name("owner", "alice-x@example.com");
        assert_ne!(a, b);
        assert!(a.starts_with("owner-alice-x-example-com-"));
        assert!(a.len() <= 63);
        let long = person_object_name("owner", &format!("{}@example.com", "x".repeat(200)));
        assert!(long.len() <= 63, "{long}");
    }
}
