//! Membership: one person in one organization (namespaced, in the home namespace).

use std::collections::BTreeMap;

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
        json_path = ".status.user",
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

    /// The Kubernetes RBAC user name of the member; default: the organization's
    /// username prefix (`spec.identity.usernamePrefix`, else the operator's
    /// `--username-prefix`) + the email in lower case (clusters map the OIDC email
    /// claim to the user name). Taken as is, without the prefix. Never a `system:`
    /// identity.
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

    /// The RBAC user name bound for the member (the username prefix + the email in
    /// lower case, or `spec.user`); absent while the membership grants nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,

    /// Who signed in to accept the invitation, when the organization requires sign-in
    /// (`spec.invitations.requireLogin`): written once, at acceptance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<SignedInSubject>,

    /// Every role the member holds: the union of their bindings.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<MemberRole>,

    /// Where the member can go: the resource namespaces, grouped by the ClusterRoles
    /// held there (`kubectl org access EMAIL` lists them one namespace a line).
    // Atomic: only kube-org writes it, and as a keyed list server-side apply recorded
    // every namespace in managedFields (a second copy of the list in the API server).
    // Grouped: a list of names costs the API server a fraction of a list of objects (a
    // status write with 100 namespaces: 3 ms of its CPU grouped, 7 ms as an entry per
    // namespace), and a member usually holds the same role in many namespaces.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Atomic)]
    pub access: Vec<AccessGroup>,
}

/// On a Membership in kube-org's cache only (never written): a digest of
/// `status.access`, which the cache drops ([`super::cached_list`]).
const CACHED_ACCESS_DIGEST: &str = "kube-org.io/cached-access-digest";

impl Membership {
    /// Replaces `status.access` by its digest (what kube-org's cache keeps).
    pub fn compact_status(&mut self) {
        let access = self.status.as_mut().map(|s| &mut s.access);
        super::cached_list::compact(&mut self.metadata, CACHED_ACCESS_DIGEST, access);
    }

    /// Whether the Membership's status already is `desired` (whether it came from the
    /// API server or from the cache).
    pub fn has_status(&self, desired: &MembershipStatus) -> bool {
        let Some(current) = self.status.as_ref() else {
            return false;
        };
        // Destructured so that a new field cannot be forgotten here.
        let MembershipStatus {
            conditions,
            observed_generation,
            joined_at,
            source,
            user,
            subject,
            roles,
            access,
        } = desired;
        *conditions == current.conditions
            && *observed_generation == current.observed_generation
            && *joined_at == current.joined_at
            && *source == current.source
            && *user == current.user
            && *subject == current.subject
            && *roles == current.roles
            && super::cached_list::same(
                &self.metadata,
                CACHED_ACCESS_DIGEST,
                &current.access,
                access,
            )
    }
}

/// The person who signed in at the OpenID Connect provider to accept an invitation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SignedInSubject {
    /// The provider (the ID token's `iss`).
    pub issuer: String,
    /// The person's stable identifier at the provider (the ID token's `sub`).
    pub subject: String,
    /// The email the provider verified (the ID token's `email`, as given).
    pub email: String,
    /// The user name the cluster gives this person: the username prefix + the email
    /// as the provider gives it (the apiserver does not change its case).
    pub username: String,
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
    /// When it ends (the binding's `spec.expiresAt`), for a time-bound role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

/// Resource namespaces where a member holds the same ClusterRoles.
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, KubeSchema,
)]
#[serde(rename_all = "camelCase")]
pub struct AccessGroup {
    /// The ClusterRoles bound to the member in each of these namespaces.
    // Defaults: a status written by an earlier release (an entry per namespace) still
    // reads, and is rewritten by the next status pass.
    #[serde(default)]
    #[x_kube(merge_strategy = ListMerge::Atomic)]
    pub cluster_roles: Vec<String>,
    /// The resource namespaces, sorted.
    #[serde(default)]
    #[x_kube(merge_strategy = ListMerge::Atomic)]
    pub namespaces: Vec<String>,
}

impl AccessGroup {
    /// Groups `access` (one entry per namespace) by ClusterRoles: groups sorted by
    /// their ClusterRoles, namespaces in the order given.
    pub fn group(access: Vec<NamespaceAccess>) -> Vec<AccessGroup> {
        let mut groups: BTreeMap<Vec<String>, Vec<String>> = BTreeMap::new();
        for entry in access {
            groups
                .entry(entry.cluster_roles)
                .or_default()
                .push(entry.namespace);
        }
        groups
            .into_iter()
            .map(|(cluster_roles, namespaces)| AccessGroup {
                cluster_roles,
                namespaces,
            })
            .collect()
    }

    /// One entry per namespace, sorted by namespace (what the plugin prints).
    pub fn by_namespace(groups: &[AccessGroup]) -> Vec<NamespaceAccess> {
        let mut access: Vec<NamespaceAccess> = groups
            .iter()
            .flat_map(|g| {
                g.namespaces.iter().map(|ns| NamespaceAccess {
                    namespace: ns.clone(),
                    cluster_roles: g.cluster_roles.clone(),
                })
            })
            .collect();
        access.sort();
        access
    }
}

/// The ClusterRoles a member holds in one resource namespace.
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, KubeSchema,
)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceAccess {
    /// The resource namespace.
    pub namespace: String,
    /// The ClusterRoles bound to the member there.
    pub cluster_roles: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(access: &[(&str, &str)]) -> Membership {
        let mut m = Membership::new(
            "bob",
            MembershipSpec {
                email: Email("bob@example.com".into()),
                user: None,
            },
        );
        m.status = Some(MembershipStatus {
            source: Some("Declared".into()),
            access: AccessGroup::group(
                access
                    .iter()
                    .map(|(ns, role)| NamespaceAccess {
                        namespace: ns.to_string(),
                        cluster_roles: vec![role.to_string()],
                    })
                    .collect(),
            ),
            ..Default::default()
        });
        m
    }

    #[test]
    fn the_cache_keeps_a_digest_of_access_that_still_tells_changes_apart() {
        let full = member(&[("prod", "view"), ("dev", "edit")]);
        let mut cached = full.clone();
        cached.compact_status();
        assert!(cached.status.as_ref().unwrap().access.is_empty());
        let same = full.status.clone().unwrap();
        assert!(full.has_status(&same));
        assert!(cached.has_status(&same), "compacting loses no equality");
        let mut fewer = same.clone();
        fewer.access.pop();
        assert!(!cached.has_status(&fewer));
        let mut other_source = same.clone();
        other_source.source = Some("Owner".into());
        assert!(!cached.has_status(&other_source));
    }

    #[test]
    fn access_is_grouped_by_cluster_roles_and_read_back_one_namespace_a_line() {
        let entry = |ns: &str, roles: &[&str]| NamespaceAccess {
            namespace: ns.to_string(),
            cluster_roles: roles.iter().map(|r| r.to_string()).collect(),
        };
        let by_namespace = vec![
            entry("a", &["view"]),
            entry("b", &["edit", "view"]),
            entry("c", &["view"]),
            entry("d", &["admin"]),
        ];
        let groups = AccessGroup::group(by_namespace.clone());
        let yaml = serde_json::to_value(&groups).unwrap();
        assert_eq!(
            yaml,
            serde_json::json!([
                {"clusterRoles": ["admin"], "namespaces": ["d"]},
                {"clusterRoles": ["edit", "view"], "namespaces": ["b"]},
                {"clusterRoles": ["view"], "namespaces": ["a", "c"]},
            ])
        );
        assert_eq!(AccessGroup::by_namespace(&groups), by_namespace);
        assert!(AccessGroup::group(vec![]).is_empty());
    }

    #[test]
    fn a_status_written_by_an_earlier_release_still_reads_and_differs() {
        let old: MembershipStatus = serde_json::from_value(serde_json::json!({
            "access": [{"namespace": "prod", "clusterRoles": ["view"]}],
        }))
        .expect("an entry per namespace still reads");
        let mut m = member(&[("prod", "view")]);
        let wanted = m.status.clone().unwrap();
        m.status = Some(MembershipStatus {
            source: wanted.source.clone(),
            ..old
        });
        assert!(
            !m.has_status(&wanted),
            "so the next status pass rewrites it"
        );
    }

    #[test]
    fn a_tenants_digest_annotation_is_not_believed() {
        let mut m = member(&[("prod", "view")]);
        let wanted = m.status.clone().unwrap();
        m.metadata.annotations = Some(
            [(CACHED_ACCESS_DIGEST.to_string(), "42".to_string())]
                .into_iter()
                .collect(),
        );
        let mut cached = m.clone();
        cached.compact_status();
        assert!(cached.has_status(&wanted));
        let none = member(&[]);
        let mut cached_none = none.clone();
        cached_none.status = None;
        cached_none.compact_status();
        assert!(cached_none.metadata.annotations.is_none());
        assert!(!cached_none.has_status(&wanted));
    }
}
