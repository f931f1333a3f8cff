//! One watch per kind for the whole process, shared by the access controller, the
//! invitation controller and the accept endpoint (each used to watch Memberships,
//! Invitations, Organizations and Namespaces itself: three copies of the same objects).
//!
//! The watches start with the process, on every replica: followers serve the accept
//! endpoint from them, and a follower that becomes leader starts its controllers on
//! caches that are already filled.
//!
//! Each watch feeds one cache and fans every object it touches out to its subscribers
//! (controller triggers). A subscriber that joins late first receives what the cache
//! holds, so a controller started on a filled cache still reconciles everything once.
//! Subscribers are unbounded channels: a slow or stopped consumer never holds up the
//! cache (the objects it has not read yet are what it would reconcile anyway).

use std::sync::{Arc, Mutex};

use futures::channel::mpsc::{UnboundedSender, unbounded};
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Namespace;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;

use crate::access::names::LABEL_ORGANIZATION;
use crate::api::{Invitation, Membership, Organization};
use crate::cache::{Filled, Filling, reflect_events};
use crate::index::{self, Index, KeysOf};

/// What subscribers hear of a watch event the cache has applied: only objects as the
/// cache holds them then (an object it lacks was deleted), so a subscriber may take the
/// cache for the truth.
///
/// A (re)list fills the cache at its end, all at once: its objects are told then, from
/// the cache, with those filed before that the list no longer has (deleted while the
/// watch was down, which have no event of their own; only an indexed cache knows them).
/// Told as each listed object arrived, they came before the cache held them: the
/// organization triggers took each for deleted (every object woke its organization as
/// urgent at start, and its first status write woke it again as new: 100-170 passes
/// back to back at 1,000 members), and the accept endpoint's token index dropped them.
///
/// The cache is marked filled once its index holds the list, not before: a reconcile
/// woken by "filled" reads the index at once.
fn touched_by<K>(
    event: watcher::Event<K>,
    cache: &Store<K>,
    index: &Index<K>,
    filling: &Filling,
) -> Vec<Arc<K>>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    match event {
        watcher::Event::Apply(object) | watcher::Event::Delete(object) => {
            // File what the cache holds now.
            match cache.get(&ObjectRef::from_obj(&object)) {
                Some(current) => {
                    index.upsert(current.clone());
                    vec![current]
                }
                None => {
                    index.remove(&object);
                    vec![Arc::new(object)]
                }
            }
        }
        watcher::Event::Init | watcher::Event::InitApply(_) => vec![],
        watcher::Event::InitDone => {
            let mut listed = cache.state();
            let gone = index.reset(listed.iter().cloned());
            tracing::debug!(
                kind = %K::kind(&Default::default()),
                objects = listed.len(),
                gone = gone.len(),
                "cache filled"
            );
            filling.done();
            listed.extend(gone);
            listed
        }
    }
}

/// The shared watches.
#[derive(Clone)]
pub struct WatchSet {
    pub organizations: Watched<Organization>,
    pub memberships: Watched<Membership>,
    /// Only those `--invitations-selector` selects.
    pub invitations: Watched<Invitation>,
    /// Only namespaces labelled `kube-org.io/organization` (homes and resources).
    pub namespaces: Watched<Namespace>,
}

impl WatchSet {
    /// Starts the watches (tasks on the current runtime).
    pub fn start(client: &Client, invitations_selector: Option<&str>) -> WatchSet {
        let mut invitations = watcher::Config::default().any_semantic();
        if let Some(selector) = invitations_selector {
            invitations = invitations.labels(selector);
        }
        WatchSet {
            organizations: Watched::start_indexed(
                Api::all(client.clone()),
                watcher::Config::default(),
                index::by_home,
            ),
            memberships: Watched::start_indexed(
                Api::all(client.clone()),
                watcher::Config::default()
                    .any_semantic()
                    .page_size(crate::cache::MEMBERSHIPS_PAGE),
                index::by_namespace,
            ),
            invitations: Watched::start_indexed(
                Api::all(client.clone()),
                invitations,
                index::by_namespace,
            ),
            namespaces: Watched::start_indexed(
                Api::all(client.clone()),
                watcher::Config::default().labels(LABEL_ORGANIZATION),
                index::by_organization,
            ),
        }
    }
}

type Subscribers<K> = Arc<Mutex<Vec<UnboundedSender<Arc<K>>>>>;

/// One watched kind: its cache, whether the cache is filled, and its subscribers.
pub struct Watched<K>
where
    K: Resource + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    store: Store<K>,
    index: Arc<Index<K>>,
    filled: Filled,
    subscribers: Subscribers<K>,
}

impl<K> Clone for Watched<K>
where
    K: Resource + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    fn clone(&self) -> Self {
        Watched {
            store: self.store.clone(),
            index: self.index.clone(),
            filled: self.filled.clone(),
            subscribers: self.subscribers.clone(),
        }
    }
}

impl<K> Watched<K>
where
    K: Resource
        + crate::cache::Compact
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    /// Starts watching `api` with `config` (no index).
    pub fn start(api: Api<K>, config: watcher::Config) -> Self {
        Self::start_with(api, config, Index::none())
    }

    /// Starts watching `api` with `config`, and indexes the cache by `keys_of`.
    pub fn start_indexed(api: Api<K>, config: watcher::Config, keys_of: KeysOf<K>) -> Self {
        Self::start_with(api, config, Index::new(keys_of))
    }

    fn start_with(api: Api<K>, config: watcher::Config, index: Index<K>) -> Self {
        let (store, events) = reflect_events(api, config);
        let index = Arc::new(index);
        let filling = Filling::default();
        let filled = filling.filled();
        let subscribers: Subscribers<K> = Arc::default();
        let (fan_out, cache, indexed) = (subscribers.clone(), store.clone(), index.clone());
        tokio::spawn(events.for_each(move |event| {
            let touched = match event {
                Ok(event) => touched_by(event, &cache, &indexed, &filling),
                Err(error) => {
                    tracing::debug!(%error, "watch error (retried)");
                    vec![]
                }
            };
            if !touched.is_empty() {
                let mut subscribers = fan_out.lock().unwrap_or_else(|p| p.into_inner());
                subscribers.retain(|tx| {
                    touched
                        .iter()
                        .all(|object| tx.unbounded_send(object.clone()).is_ok())
                });
            }
            futures::future::ready(())
        }));
        Watched {
            store,
            index,
            filled,
            subscribers,
        }
    }

    /// The cache.
    pub fn store(&self) -> Store<K> {
        self.store.clone()
    }

    /// The cache by key.
    pub fn index(&self) -> Arc<Index<K>> {
        self.index.clone()
    }

    /// Whether the cache has had its first complete list.
    pub fn filled(&self) -> Filled {
        self.filled.clone()
    }

    /// Every object the watch touches from now on (applied or deleted; the cache is
    /// updated first), after every object the cache holds now.
    pub fn subscribe(&self) -> impl Stream<Item = Arc<K>> + Send + 'static {
        let (tx, rx) = unbounded();
        // Under the lock, so nothing the watch delivers meanwhile comes before the
        // replay.
        let mut subscribers = self.subscribers.lock().unwrap_or_else(|p| p.into_inner());
        for object in self.store.state() {
            let _ = tx.unbounded_send(object);
        }
        subscribers.push(tx);
        rx
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::ResourceExt;

    fn namespace(name: &str) -> Namespace {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": {LABEL_ORGANIZATION: "acme"}},
        }))
        .unwrap()
    }

    fn names(objects: &[Arc<Namespace>]) -> Vec<String> {
        let mut names: Vec<String> = objects.iter().map(|o| o.name_any()).collect();
        names.sort();
        names
    }

    /// A watch set's cache, index and "filled" flag, fed events as the watch set handles
    /// them: the cache applies each first.
    struct Watch {
        writer: kube::runtime::reflector::store::Writer<Namespace>,
        index: Index<Namespace>,
        filling: Filling,
    }

    impl Watch {
        fn new() -> Watch {
            Watch {
                writer: kube::runtime::reflector::store::<Namespace>().1,
                index: Index::new(index::by_organization::<Namespace>),
                filling: Filling::default(),
            }
        }

        /// What subscribers are told of `event`.
        fn tell(&mut self, event: watcher::Event<Namespace>) -> Vec<Arc<Namespace>> {
            self.writer.apply_watcher_event(&event);
            touched_by(event, &self.writer.as_reader(), &self.index, &self.filling)
        }

        fn cached(&self, name: &str) -> bool {
            self.writer.as_reader().get(&ObjectRef::new(name)).is_some()
        }
    }

    #[test]
    fn a_list_is_told_once_the_cache_holds_it_with_what_went_meanwhile() {
        let mut watch = Watch::new();
        assert!(watch.tell(watcher::Event::Init).is_empty());
        let listed = watch.tell(watcher::Event::InitApply(namespace("a")));
        assert!(listed.is_empty(), "not in the cache yet");
        let filled = watch.filling.filled();
        assert!(!filled.is_filled(), "filled before the list's end");
        let done = watch.tell(watcher::Event::InitDone);
        assert_eq!(names(&done), ["a"]);
        assert!(watch.cached("a"));
        // Filled only with the index holding the list: a reconcile reads the index.
        assert!(filled.is_filled());
        let by_org = watch.index.get(&index::Key::Organization("acme".into()));
        assert_eq!(names(&by_org), ["a"]);

        let applied = watch.tell(watcher::Event::Apply(namespace("b")));
        assert_eq!(names(&applied), ["b"]);

        // The watch broke; "a" was deleted meanwhile, "c" created: the relist tells "b"
        // and "c" as the cache holds them, and "a" as gone (the cache lacks it).
        watch.tell(watcher::Event::Init);
        watch.tell(watcher::Event::InitApply(namespace("b")));
        watch.tell(watcher::Event::InitApply(namespace("c")));
        let relisted = watch.tell(watcher::Event::InitDone);
        assert_eq!(names(&relisted), ["a", "b", "c"]);
        assert!(!watch.cached("a"));

        let deleted = watch.tell(watcher::Event::Delete(namespace("b")));
        assert_eq!(names(&deleted), ["b"]);
        assert!(!watch.cached("b"));
    }
}
