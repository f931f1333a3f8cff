//! Which watch events of Memberships and kube-org RoleBindings wake their organization.
//!
//! An organization's reconcile reads the metadata and spec of its Memberships and
//! RoleBindings, not what their statuses say about themselves: the plan decides those
//! statuses, and the status workers compare with the cache as they write. Yet every
//! status write came back as a watch event that woke the organization, which then
//! recomputed its whole plan to find nothing to do. A cold start writes two statuses
//! per member, so at 1,000 members the reconcile ran back to back through the whole
//! status storm, taking a core from the API server that was busy writing them.
//!
//! So an event wakes the organization only if the object is new or gone, or its spec,
//! labels, annotations, finalizers or deletion changed, or what a reconcile does read
//! of the status changed: whether a Membership is refused (exclusive membership in
//! other organizations counts only Memberships that are not; their organizations learn
//! of it through the claims this one then takes or gives back), and whether a
//! RoleBinding was evaluated for a present member (a binding whose Membership went
//! without kube-org's finalizer — anyone's but an owner's — is deleted once its status
//! or the last plan says so, and that status may be written after the Membership is
//! gone). Each of those flips about once per object, not on every status write, and a
//! RoleBinding's flip that the last plan decided wakes nobody.
//!
//! Some changes are urgent ([`Urgent`]): they may change access, and the reconcile
//! that is adding finalizers when one arrives stops early for it.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Mutex;

use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};

use crate::api::Organization;
use crate::api::cached_list::is_cache_only;

/// What a watch event changed of an object, as far as a reconcile reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    /// Nothing a reconcile reads (a status write).
    Unchanged,
    /// Not seen before.
    New,
    /// Labels, annotations or finalizers (kube-org's own finalizer, added to every
    /// Membership on a cold start, among them).
    Metadata,
    /// Gone, its spec changed or its deletion began: access may be revoked.
    Spec,
}

/// The objects of one watched kind as the organization triggers last saw them.
pub struct Changes<K: Resource<DynamicType = ()> + 'static> {
    /// The fingerprints, by a hash of namespace and name (24 bytes an object plus the
    /// map's own: under 1 MB for 10,000 Memberships).
    seen: Mutex<HashMap<u64, Fingerprint>>,
    /// The cache the watch updated before the event came: an object no longer in it
    /// was deleted (the watch set tells a list's objects only once the cache holds
    /// them: [`crate::watch_set`]).
    store: Store<K>,
    /// What a reconcile reads of the object's status, if anything.
    status_read: fn(&K) -> bool,
    /// A finalizer kube-org adds itself: its arrival wakes nobody (the pass that added
    /// it accounted for it), its removal does (it must be put back).
    own_finalizer: Option<&'static str>,
    /// Whether the plans know already what `status_read` now says (a status that says
    /// what the last plan decided is no news to the next).
    status_known: Option<StatusKnown<K>>,
}

type StatusKnown<K> = Box<dyn Fn(&K) -> bool + Send + Sync>;

#[derive(Clone, Copy, PartialEq, Eq)]
struct Fingerprint {
    spec: u64,
    /// Everything else a reconcile reads, kube-org's own finalizer and the status aside.
    metadata: u64,
    /// Whether the object holds kube-org's own finalizer.
    own_finalizer: bool,
    /// What a reconcile reads of the status.
    status_read: bool,
}

impl<K: Resource<DynamicType = ()> + Clone + 'static> Changes<K> {
    /// `status_read`: the one thing a reconcile reads of the status (whether a
    /// Membership is refused; whether a RoleBinding was evaluated for a present
    /// member), part of the metadata fingerprint.
    pub fn new(store: Store<K>, status_read: fn(&K) -> bool) -> Self {
        Changes {
            seen: Mutex::default(),
            store,
            status_read,
            own_finalizer: None,
            status_known: None,
        }
    }

    /// `known` says whether the plans know already what `status_read` says of an
    /// object: its turning true then wakes nobody. (At 10,000 members the first status
    /// of each RoleBinding, saying it was evaluated for a present member, kept the
    /// organization planning back to back during the status storm, while the last plan
    /// had recorded exactly that: [`super::Context::bound`].)
    pub fn status_known_when(mut self, known: impl Fn(&K) -> bool + Send + Sync + 'static) -> Self {
        self.status_known = Some(Box::new(known));
        self
    }

    /// `finalizer` is one kube-org adds itself: its arrival wakes nobody. (At 10,000
    /// members the 10,000 events of a cold start's finalizers otherwise kept the
    /// organization reconciling back to back for 25 s, 60 passes, during the status
    /// storm.)
    pub fn adding_own_finalizer(mut self, finalizer: &'static str) -> Self {
        self.own_finalizer = Some(finalizer);
        self
    }

    /// What the watch event that touched `obj` changed since the last one.
    fn seen(&self, obj: &K) -> Seen {
        let cached = self.store.get(&ObjectRef::from_obj(obj)).is_some();
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let status = (self.status_read)(obj);
        let read = Read {
            status,
            own_finalizer: self.own_finalizer,
            status_known: status && self.status_known.as_ref().is_some_and(|known| known(obj)),
        };
        changed(&mut seen, obj, cached, read)
    }

    /// The organizations the watch event that touched `obj` wakes (`orgs`, unless it
    /// changed nothing a reconcile reads), counted as urgent when access may change.
    pub fn wake(
        &self,
        obj: &K,
        urgent: &Urgent,
        orgs: impl FnOnce() -> Vec<ObjectRef<Organization>>,
    ) -> Vec<ObjectRef<Organization>> {
        let seen = self.seen(obj);
        if seen != Seen::Unchanged {
            tracing::debug!(kind = %K::kind(&()), object = %obj.name_any(), ?seen, "a change wakes its organization");
        }
        match seen {
            Seen::Unchanged => vec![],
            Seen::New | Seen::Metadata => orgs(),
            Seen::Spec => urgent.mark(orgs()),
        }
    }
}

/// What [`fingerprint`] takes besides the object.
#[derive(Clone, Copy, Debug, Default)]
struct Read {
    /// What a reconcile reads of the status.
    status: bool,
    /// The finalizer kube-org adds itself, if any.
    own_finalizer: Option<&'static str>,
    /// Whether the plans know already what `status` says.
    status_known: bool,
}

fn changed<K: Resource>(
    seen: &mut HashMap<u64, Fingerprint>,
    obj: &K,
    cached: bool,
    read: Read,
) -> Seen {
    let key = hash(&(obj.namespace(), obj.name_any()));
    if !cached {
        seen.remove(&key);
        return Seen::Spec;
    }
    let now = fingerprint(obj, read);
    match seen.insert(key, now) {
        // First seen: created, or listed at start (the controller may read those
        // events late, while its first reconcile is under way): a grant to come,
        // not a repair.
        None => Seen::New,
        Some(before) if before == now => Seen::Unchanged,
        Some(before) if before.spec == now.spec && before.metadata == now.metadata => {
            // Only kube-org's own finalizer or what is read of the status changed. Added
            // (by kube-org), the finalizer is nothing new; removed (by someone else), it
            // must be put back. A status saying what the plans know is nothing new.
            let finalizer_news = before.own_finalizer != now.own_finalizer && !now.own_finalizer;
            let status_news = before.status_read != now.status_read && !read.status_known;
            if finalizer_news || status_news {
                Seen::Metadata
            } else {
                Seen::Unchanged
            }
        }
        Some(before) if before.spec == now.spec => Seen::Metadata,
        Some(_) => Seen::Spec,
    }
}

/// How many urgent changes woke each organization: a reconcile writing native RBAC
/// (after its first slice) or adding Membership finalizers stops early when a newer one
/// is waiting, so a repair is not kept behind it.
///
/// Only organizations that exist are counted: the organization a native binding or a
/// namespace names comes from a label, and a namespace admin can label bindings in her
/// namespace with any name (one entry per name she made up, forever, before). A deleted
/// organization's count is forgotten ([`Urgent::forget`]).
pub struct Urgent {
    counts: Mutex<HashMap<String, u64>>,
    organizations: Store<Organization>,
}

impl Urgent {
    pub fn new(organizations: Store<Organization>) -> Self {
        Urgent {
            counts: Mutex::default(),
            organizations,
        }
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts an urgent change for each of `orgs` that exists; returns them all.
    pub fn mark(&self, orgs: Vec<ObjectRef<Organization>>) -> Vec<ObjectRef<Organization>> {
        let mut counts = self.counts();
        for org in orgs.iter().filter(|o| self.organizations.get(o).is_some()) {
            *counts.entry(org.name.clone()).or_default() += 1;
        }
        orgs
    }

    /// The urgent changes of `org` so far.
    pub fn count(&self, org: &str) -> u64 {
        self.counts().get(org).copied().unwrap_or_default()
    }

    /// Drops `org`'s count (it is being deleted).
    pub fn forget(&self, org: &str) {
        self.counts().remove(org);
    }
}

/// What a reconcile reads of an object: everything but its status (and the digests of
/// its status the cache keeps as annotations), resourceVersion and managedFields.
fn fingerprint<K: Resource>(obj: &K, read: Read) -> Fingerprint {
    let meta = obj.meta();
    let annotations: Vec<(&String, &String)> = obj
        .annotations()
        .iter()
        .filter(|(key, _)| !is_cache_only(key))
        .collect();
    let is_own = |f: &String| read.own_finalizer.is_some_and(|own| f == own);
    let finalizers: Vec<&String> = obj.finalizers().iter().filter(|f| !is_own(f)).collect();
    Fingerprint {
        spec: hash(&(
            &meta.uid,
            meta.generation,
            meta.deletion_timestamp.as_ref().map(|t| t.0.as_second()),
        )),
        metadata: hash(&(
            obj.labels(),
            annotations,
            finalizers,
            obj.owner_references()
                .iter()
                .map(|o| &o.uid)
                .collect::<Vec<_>>(),
        )),
        own_finalizer: obj.finalizers().iter().any(is_own),
        status_read: read.status,
    }
}

fn hash(value: &impl Hash) -> u64 {
    let mut hasher = DefaultHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Membership;
    use crate::cache::Compact;

    fn membership(value: serde_json::Value) -> Membership {
        let mut m: Membership = serde_json::from_value(value).unwrap();
        m.compact();
        m
    }

    fn alice() -> serde_json::Value {
        serde_json::json!({
            "apiVersion": "kube-org.io/v1alpha1", "kind": "Membership",
            "metadata": {"name": "alice", "namespace": "org-acme", "uid": "u1",
                         "generation": 1, "resourceVersion": "1"},
            "spec": {"email": "alice@example.com"},
        })
    }

    #[test]
    fn a_status_write_wakes_nobody_and_a_spec_or_metadata_change_does() {
        let mut seen = HashMap::new();
        assert_eq!(
            changed(&mut seen, &membership(alice()), true, Read::default()),
            Seen::New
        );
        assert_eq!(
            changed(&mut seen, &membership(alice()), true, Read::default()),
            Seen::Unchanged,
            "the same again"
        );

        let mut status = alice();
        status["metadata"]["resourceVersion"] = "2".into();
        status["status"] = serde_json::json!({
            "conditions": [{"type": "Ready", "status": "True", "reason": "Active",
                            "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}],
            "access": [{"clusterRoles": ["view"], "namespaces": ["acme-prod"]}],
        });
        assert_eq!(
            changed(
                &mut seen,
                &membership(status.clone()),
                true,
                Read::default()
            ),
            Seen::Unchanged,
            "status only (its digest annotation included)"
        );

        for (change, expected) in [
            (serde_json::json!({"generation": 2}), Seen::Spec),
            (
                serde_json::json!({"deletionTimestamp": "2026-01-01T00:00:00Z"}),
                Seen::Spec,
            ),
            (serde_json::json!({"uid": "u2"}), Seen::Spec),
            (
                serde_json::json!({"finalizers": ["kube-org.io/membership"]}),
                Seen::Metadata,
            ),
            (serde_json::json!({"labels": {"team": "a"}}), Seen::Metadata),
            (
                serde_json::json!({"annotations": {"note": "x"}}),
                Seen::Metadata,
            ),
        ] {
            let mut changed_object = status.clone();
            for (k, v) in change.as_object().unwrap() {
                changed_object["metadata"][k] = v.clone();
            }
            let mut seen = HashMap::new();
            changed(
                &mut seen,
                &membership(status.clone()),
                true,
                Read::default(),
            );
            assert_eq!(
                changed(
                    &mut seen,
                    &membership(changed_object),
                    true,
                    Read::default()
                ),
                expected,
                "{change}"
            );
        }
    }

    #[test]
    fn what_a_reconcile_reads_of_a_status_wakes_it() {
        let mut seen = HashMap::new();
        changed(&mut seen, &membership(alice()), true, Read::default());
        assert_eq!(
            changed(
                &mut seen,
                &membership(alice()),
                true,
                Read {
                    status: true,
                    ..Read::default()
                }
            ),
            Seen::Metadata,
            "refused now"
        );
    }

    #[test]
    fn kube_orgs_own_finalizer_wakes_nobody_when_added_and_wakes_when_removed() {
        let own = Read {
            own_finalizer: Some("kube-org.io/membership"),
            ..Read::default()
        };
        let with = |finalizers: &[&str]| {
            let mut m = alice();
            m["metadata"]["finalizers"] = serde_json::json!(finalizers);
            membership(m)
        };
        let mut seen = HashMap::new();
        changed(&mut seen, &with(&[]), true, own);
        assert_eq!(
            changed(&mut seen, &with(&["kube-org.io/membership"]), true, own),
            Seen::Unchanged,
            "added by kube-org"
        );
        assert_eq!(
            changed(
                &mut seen,
                &with(&["kube-org.io/membership", "example.com/hold"]),
                true,
                own
            ),
            Seen::Metadata,
            "someone else's finalizer"
        );
        assert_eq!(
            changed(&mut seen, &with(&["example.com/hold"]), true, own),
            Seen::Metadata,
            "kube-org's removed: put it back"
        );
        // Without an own finalizer, every finalizer counts.
        let mut seen = HashMap::new();
        changed(&mut seen, &with(&[]), true, Read::default());
        assert_eq!(
            changed(
                &mut seen,
                &with(&["kube-org.io/membership"]),
                true,
                Read::default()
            ),
            Seen::Metadata
        );
    }

    #[test]
    fn a_status_the_plans_know_already_wakes_nobody() {
        let known = |status: bool, status_known: bool| Read {
            status,
            status_known,
            ..Read::default()
        };
        let mut seen = HashMap::new();
        changed(&mut seen, &membership(alice()), true, known(false, false));
        assert_eq!(
            changed(&mut seen, &membership(alice()), true, known(true, true)),
            Seen::Unchanged,
            "what the last plan decided"
        );
        assert_eq!(
            changed(&mut seen, &membership(alice()), true, known(false, false)),
            Seen::Metadata,
            "turned false: news"
        );
        assert_eq!(
            changed(&mut seen, &membership(alice()), true, known(true, false)),
            Seen::Metadata,
            "turned true, not known to the plans: news"
        );
    }

    #[test]
    fn a_deleted_object_wakes_and_is_forgotten() {
        let mut seen = HashMap::new();
        changed(&mut seen, &membership(alice()), true, Read::default());
        assert_eq!(
            changed(&mut seen, &membership(alice()), false, Read::default()),
            Seen::Spec
        );
        assert!(seen.is_empty());
        assert_eq!(
            changed(&mut seen, &membership(alice()), true, Read::default()),
            Seen::New,
            "created again"
        );
    }

    #[test]
    fn urgent_changes_are_counted_per_existing_organization() {
        let (store, mut writer) = kube::runtime::reflector::store::<Organization>();
        for name in ["acme", "beta"] {
            let org: Organization = serde_json::from_value(serde_json::json!({
                "metadata": {"name": name}, "spec": {"owners": ["a@example.com"]},
            }))
            .unwrap();
            writer.apply_watcher_event(&kube::runtime::watcher::Event::Apply(org));
        }
        let urgent = Urgent::new(store);
        assert_eq!(urgent.count("acme"), 0);
        let orgs = urgent.mark(vec![ObjectRef::new("acme"), ObjectRef::new("beta")]);
        assert_eq!(orgs.len(), 2);
        urgent.mark(vec![ObjectRef::new("acme")]);
        assert_eq!((urgent.count("acme"), urgent.count("beta")), (2, 1));

        // A name a tenant put on a binding's label: woken (the controller finds
        // nothing), never counted.
        let made_up = urgent.mark(vec![ObjectRef::new("made-up")]);
        assert_eq!(made_up.len(), 1);
        assert!(!urgent.counts().contains_key("made-up"));

        urgent.forget("acme");
        assert_eq!(urgent.count("acme"), 0);
        assert!(!urgent.counts().contains_key("acme"));
    }
}
