//! Native RoleBindings in the compact form kube-org keeps in memory.
//!
//! An organization of 1,000 members and 100 namespaces has about 300 native
//! RoleBindings of up to 1,000 subjects each: held as API objects (four `String`s per
//! subject) they were most of the operator's memory, once in the cache and once more in
//! every computed plan. Here the desired side keeps each user name once (shared `Arc`s)
//! and a grant to all resources of a type as one name set shared by every namespace of
//! the type ([`NameSets`]), the cache keeps a digest per subject, and the API object is
//! built only to be written.
//!
//! Digests are keyed with process-random keys, so a tenant cannot craft a subject whose
//! digest collides with another's (an extra subject would then look like a wanted one).

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hash};
use std::sync::{Arc, OnceLock};

use k8s_openapi::api::rbac::v1::{RoleBinding as NativeRoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Deserializer};

pub const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// A digest of `value` with this process's random keys: equal values, equal digests;
/// nobody outside the process can craft two values with one digest.
pub fn keyed_digest<T: Hash + ?Sized>(value: &T) -> u64 {
    static KEYS: OnceLock<RandomState> = OnceLock::new();
    KEYS.get_or_init(RandomState::new).hash_one(value)
}

/// The digest of one subject.
pub fn subject_digest(
    kind: &str,
    api_group: Option<&str>,
    name: &str,
    namespace: Option<&str>,
) -> u64 {
    keyed_digest(&(kind, api_group, name, namespace))
}

fn user_digest(user: &str) -> u64 {
    subject_digest("User", Some(RBAC_GROUP), user, None)
}

fn group_digest(group: &str) -> u64 {
    subject_digest("Group", Some(RBAC_GROUP), group, None)
}

/// The subjects of a binding as a sorted list of digests (a multiset: order on the
/// server does not matter, what is granted does).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SubjectDigests(Vec<u64>);

impl SubjectDigests {
    fn new(mut digests: Vec<u64>) -> Self {
        digests.sort_unstable();
        SubjectDigests(digests)
    }

    pub fn of_subjects(subjects: &[Subject]) -> Self {
        Self::new(
            subjects
                .iter()
                .map(|s| {
                    subject_digest(
                        &s.kind,
                        s.api_group.as_deref(),
                        &s.name,
                        s.namespace.as_deref(),
                    )
                })
                .collect(),
        )
    }

    /// Whether every subject of `self` is in `other`.
    pub fn within(&self, other: &SubjectDigests) -> bool {
        self.0.iter().all(|d| other.0.binary_search(d).is_ok())
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Deserialises a subject list straight into digests: no subject is kept as strings.
fn digests<'de, D: Deserializer<'de>>(deserializer: D) -> Result<SubjectDigests, D::Error> {
    struct Visitor;
    impl<'de> serde::de::Visitor<'de> for Visitor {
        type Value = SubjectDigests;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a list of subjects or null")
        }
        fn visit_unit<E>(self) -> Result<SubjectDigests, E> {
            Ok(SubjectDigests::default())
        }
        fn visit_none<E>(self) -> Result<SubjectDigests, E> {
            Ok(SubjectDigests::default())
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<SubjectDigests, D::Error> {
            d.deserialize_seq(self)
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<SubjectDigests, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
            while let Some(s) = seq.next_element::<Subject>()? {
                out.push(subject_digest(
                    &s.kind,
                    s.api_group.as_deref(),
                    &s.name,
                    s.namespace.as_deref(),
                ));
            }
            Ok(SubjectDigests::new(out))
        }
    }
    deserializer.deserialize_option(Visitor)
}

/// A native RoleBinding as kube-org's cache keeps it: metadata, roleRef, and a digest
/// per subject. Read from the API only (never written back; serialised only to measure
/// the cache).
#[derive(Clone, Debug, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CachedRoleBinding {
    pub metadata: ObjectMeta,
    pub role_ref: RoleRef,
    #[serde(default, deserialize_with = "digests")]
    pub subjects: SubjectDigests,
}

impl k8s_openapi::Resource for CachedRoleBinding {
    const API_VERSION: &'static str = <NativeRoleBinding as k8s_openapi::Resource>::API_VERSION;
    const GROUP: &'static str = <NativeRoleBinding as k8s_openapi::Resource>::GROUP;
    const KIND: &'static str = <NativeRoleBinding as k8s_openapi::Resource>::KIND;
    const VERSION: &'static str = <NativeRoleBinding as k8s_openapi::Resource>::VERSION;
    const URL_PATH_SEGMENT: &'static str =
        <NativeRoleBinding as k8s_openapi::Resource>::URL_PATH_SEGMENT;
    type Scope = k8s_openapi::NamespaceResourceScope;
}

impl k8s_openapi::ListableResource for CachedRoleBinding {
    const LIST_KIND: &'static str = <NativeRoleBinding as k8s_openapi::ListableResource>::LIST_KIND;
}

impl k8s_openapi::Metadata for CachedRoleBinding {
    type Ty = ObjectMeta;
    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// Sorted names without duplicates, shared by every binding that holds exactly them.
pub type Names = Arc<[Arc<str>]>;

/// The names of one kind of subject of a desired binding, as one or more sorted sets
/// that may overlap (a user holding a role in all resources of a type and, by name, in
/// one of them). The sets are kept apart rather than merged: a grant to all resources
/// of a type is one set shared by every namespace of the type, where merging would
/// copy it into each (3,000,000 entries at 10,000 members and 1,000 namespaces).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NameSets(Vec<Names>);

impl NameSets {
    /// The union of `parts` (empty parts are dropped).
    pub fn new(parts: Vec<Names>) -> Self {
        NameSets(parts.into_iter().filter(|p| !p.is_empty()).collect())
    }

    /// One set of `names` (sorted and deduplicated here).
    pub fn of<S: AsRef<str>>(names: impl IntoIterator<Item = S>) -> Self {
        let mut names: Vec<Arc<str>> = names.into_iter().map(|n| Arc::from(n.as_ref())).collect();
        names.sort_unstable();
        names.dedup();
        Self::new(vec![names.into()])
    }

    pub fn contains(&self, name: &str) -> bool {
        self.0
            .iter()
            .any(|part| part.binary_search_by(|n| (**n).cmp(name)).is_ok())
    }

    /// [`NameSets::contains`] for a caller asking about one name in many bindings:
    /// `seen` remembers the answer per shared set, so a set shared by every namespace
    /// of a type is searched once rather than once per namespace.
    pub fn contains_remembering(&self, name: &str, seen: &mut SeenSets) -> bool {
        self.0.iter().any(|part| {
            *seen
                .0
                .entry(Arc::as_ptr(part) as *const () as usize)
                .or_insert_with(|| part.binary_search_by(|n| (**n).cmp(name)).is_ok())
        })
    }

    /// Every name once, sorted.
    pub fn names(&self) -> Vec<&str> {
        match self.0.as_slice() {
            [one] => one.iter().map(|n| &**n).collect(),
            parts => {
                let mut all: Vec<&str> =
                    parts.iter().flat_map(|p| p.iter()).map(|n| &**n).collect();
                all.sort_unstable();
                all.dedup();
                all
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// What replacing a cached object by a desired one does: nothing, only add (a write
/// that can go first), or take something away from someone (a write that goes after
/// every gain, so moving a grant never opens a gap).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    Same,
    Gains,
    Loses,
}

/// Answers of [`NameSets::contains_remembering`] for one name, by set (its address:
/// valid while the sets asked about are alive, which is while the caller holds them).
#[derive(Default)]
pub struct SeenSets(std::collections::HashMap<usize, bool>);

/// One aggregated native RoleBinding kube-org wants: every user (and auto-join group)
/// holding `cluster_role` in `namespace`. `metadata` is shared by all bindings of an
/// organization.
#[derive(Clone, Debug, PartialEq)]
pub struct DesiredRoleBinding {
    pub metadata: ObjectMeta,
    pub cluster_role: String,
    pub users: NameSets,
    /// RBAC Groups (`spec.membership.groups`, prefixed).
    pub groups: NameSets,
}

impl DesiredRoleBinding {
    pub fn role_ref(&self) -> RoleRef {
        RoleRef {
            api_group: RBAC_GROUP.to_string(),
            kind: "ClusterRole".to_string(),
            name: self.cluster_role.clone(),
        }
    }

    pub fn digests(&self) -> SubjectDigests {
        SubjectDigests::new(
            self.users
                .names()
                .into_iter()
                .map(user_digest)
                .chain(self.groups.names().into_iter().map(group_digest))
                .collect(),
        )
    }

    /// What replacing `cached` by this binding does (the subjects' digests computed
    /// once: a binding of a type's every namespace has thousands).
    pub fn compare(&self, cached: &CachedRoleBinding) -> Change {
        let digests = self.digests();
        let role = &cached.role_ref;
        let same_role = role.name == self.cluster_role
            && role.kind == "ClusterRole"
            && role.api_group == RBAC_GROUP;
        if same_role && cached.subjects == digests {
            Change::Same
        } else if cached.subjects.within(&digests) {
            Change::Gains
        } else {
            Change::Loses
        }
    }

    /// The API object, built to be written.
    pub fn object(&self) -> NativeRoleBinding {
        NativeRoleBinding {
            metadata: self.metadata.clone(),
            role_ref: self.role_ref(),
            subjects: Some(
                self.users
                    .names()
                    .into_iter()
                    .map(user_subject)
                    .chain(self.groups.names().into_iter().map(group_subject))
                    .collect(),
            ),
        }
    }

    /// Whether `user` is a subject.
    pub fn grants(&self, user: &str) -> bool {
        self.users.contains(user)
    }

    /// Whether the RBAC Group `group` is a subject.
    pub fn grants_group(&self, group: &str) -> bool {
        self.groups.contains(group)
    }
}

/// The RBAC subject of a group name.
pub fn group_subject(group: &str) -> Subject {
    Subject {
        api_group: Some(RBAC_GROUP.to_string()),
        kind: "Group".to_string(),
        name: group.to_string(),
        namespace: None,
    }
}

/// The RBAC subject of a user name.
pub fn user_subject(user: &str) -> Subject {
    Subject {
        api_group: Some(RBAC_GROUP.to_string()),
        kind: "User".to_string(),
        name: user.to_string(),
        namespace: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cached(json: serde_json::Value) -> CachedRoleBinding {
        serde_json::from_value(json).expect("a RoleBinding")
    }

    fn desired(users: &[&str]) -> DesiredRoleBinding {
        DesiredRoleBinding {
            metadata: ObjectMeta::default(),
            cluster_role: "view".into(),
            users: NameSets::of(users),
            groups: NameSets::default(),
        }
    }

    #[test]
    fn groups_are_group_subjects_and_count_in_the_content() {
        let mut want = desired(&["ann@x.io"]);
        want.groups = NameSets::of(["oidc:devs"]);
        let object = want.object();
        let kinds: Vec<(&str, &str)> = object
            .subjects
            .iter()
            .flatten()
            .map(|s| (s.kind.as_str(), s.name.as_str()))
            .collect();
        assert_eq!(kinds, [("User", "ann@x.io"), ("Group", "oidc:devs")]);
        let group =
            serde_json::json!({"apiGroup": RBAC_GROUP, "kind": "Group", "name": "oidc:devs"});
        let actual = binding(serde_json::json!([group.clone(), user("ann@x.io")]));
        assert_eq!(want.compare(&actual), Change::Same);
        assert!(want.grants_group("oidc:devs") && !want.grants("oidc:devs"));
        // Without the group: a difference, and dropping it loses a grant.
        let without = desired(&["ann@x.io"]);
        assert_eq!(
            without.compare(&actual),
            Change::Loses,
            "dropping the group loses a grant"
        );
        assert_eq!(
            want.compare(&binding(serde_json::json!([user("ann@x.io")]))),
            Change::Gains
        );
        // A User named like the group is not the group.
        let as_user = binding(serde_json::json!([user("ann@x.io"), user("oidc:devs")]));
        assert_eq!(want.compare(&as_user), Change::Loses);
    }

    fn binding(subjects: serde_json::Value) -> CachedRoleBinding {
        cached(serde_json::json!({
            "metadata": {"name": "kube-org:acme:view", "namespace": "prod"},
            "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": "view"},
            "subjects": subjects,
        }))
    }

    fn user(name: &str) -> serde_json::Value {
        serde_json::json!({"apiGroup": RBAC_GROUP, "kind": "User", "name": name})
    }

    #[test]
    fn a_cached_binding_matches_the_desired_one_whatever_the_order() {
        let actual = binding(serde_json::json!([user("bob@x.io"), user("ann@x.io")]));
        assert_eq!(
            desired(&["ann@x.io", "bob@x.io"]).compare(&actual),
            Change::Same
        );
        assert_eq!(actual.metadata.name.as_deref(), Some("kube-org:acme:view"));
    }

    #[test]
    fn an_extra_or_changed_subject_is_a_difference() {
        let want = desired(&["ann@x.io"]);
        let extra = binding(serde_json::json!([user("ann@x.io"), user("eve@x.io")]));
        assert_eq!(
            want.compare(&extra),
            Change::Loses,
            "eve would lose her grant"
        );
        let group = binding(serde_json::json!([
            {"apiGroup": RBAC_GROUP, "kind": "Group", "name": "ann@x.io"}
        ]));
        assert_eq!(
            want.compare(&group),
            Change::Loses,
            "a Group is not the User"
        );
        let sa = binding(serde_json::json!([
            {"kind": "ServiceAccount", "name": "ann@x.io", "namespace": "prod"}
        ]));
        assert_eq!(want.compare(&sa), Change::Loses);
    }

    #[test]
    fn adding_a_user_only_gains() {
        let actual = binding(serde_json::json!([user("ann@x.io")]));
        assert_eq!(
            desired(&["ann@x.io", "bob@x.io"]).compare(&actual),
            Change::Gains
        );
        assert_eq!(desired(&["bob@x.io"]).compare(&actual), Change::Loses);
    }

    #[test]
    fn missing_or_null_subjects_are_none() {
        let none = cached(serde_json::json!({
            "metadata": {"name": "x"},
            "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": "view"},
        }));
        assert!(none.subjects.is_empty());
        let null = binding(serde_json::Value::Null);
        assert!(null.subjects.is_empty());
        assert_eq!(desired(&[]).compare(&null), Change::Same);
    }

    #[test]
    fn a_different_role_is_a_difference() {
        let mut actual = binding(serde_json::json!([user("ann@x.io")]));
        actual.role_ref.name = "edit".into();
        assert_eq!(
            desired(&["ann@x.io"]).compare(&actual),
            Change::Gains,
            "a new roleRef, nobody loses"
        );
    }

    fn part(names: &[&str]) -> Names {
        names.iter().map(|n| Arc::from(*n)).collect()
    }

    #[test]
    fn overlapping_sets_grant_and_list_each_name_once() {
        let shared = part(&["ann@x.io", "bob@x.io"]);
        let want = DesiredRoleBinding {
            users: NameSets::new(vec![
                shared.clone(),
                part(&["bob@x.io", "cid@x.io"]),
                part(&[]),
            ]),
            ..desired(&[])
        };
        assert_eq!(want.users.names(), ["ann@x.io", "bob@x.io", "cid@x.io"]);
        assert!(want.grants("cid@x.io") && want.grants("ann@x.io") && !want.grants("dan@x.io"));
        let actual = binding(serde_json::json!([
            user("cid@x.io"),
            user("bob@x.io"),
            user("ann@x.io")
        ]));
        assert_eq!(
            want.compare(&actual),
            Change::Same,
            "bob is one subject, not two"
        );
        assert_eq!(want.object().subjects.map(|s| s.len()), Some(3));
        // The shared set is not copied.
        assert!(Arc::ptr_eq(&want.users.0[0], &shared));
    }

    #[test]
    fn the_object_lists_every_user_in_order() {
        let rb = desired(&["ann@x.io", "bob@x.io"]).object();
        let names: Vec<&str> = rb
            .subjects
            .iter()
            .flatten()
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(names, ["ann@x.io", "bob@x.io"]);
        assert!(desired(&["ann@x.io", "bob@x.io"]).grants("bob@x.io"));
        assert!(!desired(&["ann@x.io"]).grants("bob@x.io"));
    }
}
