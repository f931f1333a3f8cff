//! The objects of a cache grouped by key (a namespace, an organization), kept next to
//! the cache from the same watch events, so that a reconcile reads its organization's
//! objects instead of filtering every object of the kind: at 10,000 members in 100
//! organizations, `Store::state()` copies 10,000 pointers for each reconcile's 100
//! Memberships, and every Namespace event scanned every managed native binding.
//!
//! Pure and in memory, fed by [`Index::upsert`], [`Index::remove`] and
//! [`Index::reset`] (the cache's content after a complete list), so it is tested
//! without an API server. It always agrees with its cache: the watch applies each
//! event to the cache first, then the index copies what the cache holds
//! ([`crate::watch_set`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use kube::{Resource, ResourceExt};

use crate::access::names::{LABEL_MANAGED_BY, LABEL_ORGANIZATION, MANAGER};

/// An object's place in its cache: namespace (empty when cluster-scoped) and name.
type Place = (String, String);

/// The keys an object is found under.
pub type KeysOf<K> = fn(&K) -> Vec<Key>;

/// What objects are grouped by.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Key {
    /// In this namespace.
    Namespace(String),
    /// Labelled for this organization (`kube-org.io/organization`).
    Organization(String),
    /// Labelled for this organization and managed by kube-org (the native objects it
    /// writes).
    ManagedFor(String),
    /// Home namespace of the organization (an Organization's key).
    Home(String),
}

/// A cache's objects by [`Key`].
pub struct Index<K> {
    keys_of: KeysOf<K>,
    inner: RwLock<Inner<K>>,
}

struct Inner<K> {
    by_key: HashMap<Key, BTreeMap<Place, Arc<K>>>,
    /// The keys each object was filed under, to unfile it when it changes or goes.
    keys: HashMap<Place, Vec<Key>>,
}

impl<K> Default for Inner<K> {
    fn default() -> Self {
        Inner {
            by_key: HashMap::new(),
            keys: HashMap::new(),
        }
    }
}

fn place<K: Resource>(obj: &K) -> Place {
    (obj.namespace().unwrap_or_default(), obj.name_any())
}

impl<K: Resource> Index<K> {
    pub fn new(keys_of: KeysOf<K>) -> Self {
        Index {
            keys_of,
            inner: RwLock::default(),
        }
    }

    /// An index that files nothing (for caches no reconcile reads by key).
    pub fn none() -> Self {
        Index::new(|_| Vec::new())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner<K>> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Files `obj` (as the cache holds it now) under its keys, replacing the copy filed
    /// before.
    pub fn upsert(&self, obj: Arc<K>) {
        let at = place(obj.as_ref());
        let keys = (self.keys_of)(obj.as_ref());
        let mut inner = self.write();
        inner.unfile(&at);
        inner.file(at, keys, obj);
    }

    /// Unfiles the object at `obj`'s place (it left the cache).
    pub fn remove(&self, obj: &K) {
        self.write().unfile(&place(obj));
    }

    /// Files exactly `objects` (the cache after a complete list: objects deleted while
    /// the watch was down leave the cache without an event of their own). Returns the
    /// objects filed before that are not among them (deleted meanwhile), as last filed.
    pub fn reset(&self, objects: impl IntoIterator<Item = Arc<K>>) -> Vec<Arc<K>> {
        let mut fresh = Inner::default();
        for obj in objects {
            fresh.file(place(obj.as_ref()), (self.keys_of)(obj.as_ref()), obj);
        }
        let mut inner = self.write();
        let before = std::mem::replace(&mut *inner, fresh);
        // An object filed under several keys is gone once.
        let gone: BTreeMap<Place, Arc<K>> = before
            .by_key
            .into_values()
            .flatten()
            .filter(|(at, _)| !inner.keys.contains_key(at))
            .collect();
        gone.into_values().collect()
    }

    /// The objects filed under `key`, by namespace and name.
    pub fn get(&self, key: &Key) -> Vec<Arc<K>> {
        let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
        inner
            .by_key
            .get(key)
            .map(|objects| objects.values().cloned().collect())
            .unwrap_or_default()
    }
}

impl<K> Inner<K> {
    fn file(&mut self, at: Place, keys: Vec<Key>, obj: Arc<K>) {
        if keys.is_empty() {
            return;
        }
        for key in &keys {
            self.by_key
                .entry(key.clone())
                .or_default()
                .insert(at.clone(), obj.clone());
        }
        self.keys.insert(at, keys);
    }

    fn unfile(&mut self, at: &Place) {
        for key in self.keys.remove(at).unwrap_or_default() {
            if let Some(objects) = self.by_key.get_mut(&key) {
                objects.remove(at);
                if objects.is_empty() {
                    self.by_key.remove(&key);
                }
            }
        }
    }
}

/// Filed under its namespace (Memberships, RoleBindings, Invitations: an
/// organization's are in its home namespace).
pub fn by_namespace<K: Resource>(obj: &K) -> Vec<Key> {
    obj.namespace().map(Key::Namespace).into_iter().collect()
}

/// Filed under the organization it is labelled for (Namespaces).
pub fn by_organization<K: Resource>(obj: &K) -> Vec<Key> {
    obj.labels()
        .get(LABEL_ORGANIZATION)
        .map(|org| Key::Organization(org.clone()))
        .into_iter()
        .collect()
}

/// Filed under the organization kube-org manages it for (native ClusterRoles and
/// ClusterRoleBindings).
pub fn by_manager<K: Resource>(obj: &K) -> Vec<Key> {
    let labels = obj.labels();
    if labels.get(LABEL_MANAGED_BY).map(String::as_str) != Some(MANAGER) {
        return Vec::new();
    }
    labels
        .get(LABEL_ORGANIZATION)
        .map(|org| Key::ManagedFor(org.clone()))
        .into_iter()
        .collect()
}

/// Filed under the organization kube-org manages it for and under its namespace
/// (native RoleBindings: a Namespace event wakes whoever has bindings in it).
pub fn by_manager_and_namespace<K: Resource>(obj: &K) -> Vec<Key> {
    let mut keys = by_manager(obj);
    if !keys.is_empty() {
        keys.extend(obj.namespace().map(Key::Namespace));
    }
    keys
}

/// Filed under its home namespace (Organizations).
pub fn by_home(org: &crate::api::Organization) -> Vec<Key> {
    vec![Key::Home(org.home_namespace())]
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Namespace;
    use k8s_openapi::api::rbac::v1::RoleBinding;

    fn namespace(name: &str, org: Option<&str>) -> Arc<Namespace> {
        let labels = org.map(|o| serde_json::json!({LABEL_ORGANIZATION: o}));
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name, "labels": labels},
            }))
            .unwrap(),
        )
    }

    fn names(objects: &[Arc<Namespace>]) -> Vec<String> {
        objects.iter().map(|o| o.name_any()).collect()
    }

    fn acme() -> Key {
        Key::Organization("acme".into())
    }

    #[test]
    fn an_object_is_found_under_its_current_keys_only() {
        let index = Index::new(by_organization::<Namespace>);
        index.upsert(namespace("b", Some("acme")));
        index.upsert(namespace("a", Some("acme")));
        index.upsert(namespace("c", Some("globex")));
        index.upsert(namespace("d", None));
        assert_eq!(names(&index.get(&acme())), ["a", "b"]);

        // Relabelled: filed under its new organization, gone from the old one.
        index.upsert(namespace("b", Some("globex")));
        assert_eq!(names(&index.get(&acme())), ["a"]);
        assert_eq!(
            names(&index.get(&Key::Organization("globex".into()))),
            ["b", "c"]
        );

        // Unlabelled, then deleted.
        index.upsert(namespace("a", None));
        assert!(index.get(&acme()).is_empty());
        index.remove(&namespace("c", Some("globex")));
        assert_eq!(
            names(&index.get(&Key::Organization("globex".into()))),
            ["b"]
        );
    }

    #[test]
    fn a_complete_list_replaces_everything_filed_before() {
        let index = Index::new(by_organization::<Namespace>);
        index.upsert(namespace("gone-while-the-watch-was-down", Some("acme")));
        index.upsert(namespace("kept", Some("acme")));
        let gone = index.reset([
            namespace("kept", Some("acme")),
            namespace("new", Some("acme")),
        ]);
        assert_eq!(names(&index.get(&acme())), ["kept", "new"]);
        assert_eq!(names(&gone), ["gone-while-the-watch-was-down"]);
    }

    #[test]
    fn the_latest_copy_is_the_one_returned() {
        let index = Index::new(by_organization::<Namespace>);
        index.upsert(namespace("a", Some("acme")));
        let mut newer = (*namespace("a", Some("acme"))).clone();
        newer.metadata.resource_version = Some("2".into());
        index.upsert(Arc::new(newer));
        let found = index.get(&acme());
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].resource_version().as_deref(), Some("2"));
    }

    #[test]
    fn native_bindings_are_filed_by_manager_and_by_namespace() {
        let binding = |ns: &str, managed: bool| -> RoleBinding {
            let mut labels = serde_json::json!({LABEL_ORGANIZATION: "acme"});
            if managed {
                labels[LABEL_MANAGED_BY] = MANAGER.into();
            }
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "view", "namespace": ns, "labels": labels},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
            }))
            .unwrap()
        };
        assert_eq!(
            by_manager_and_namespace(&binding("r1", true)),
            [Key::ManagedFor("acme".into()), Key::Namespace("r1".into())]
        );
        assert!(by_manager_and_namespace(&binding("r1", false)).is_empty());
    }
}
