//! Caches fed by watches, and knowing when each has had its first complete list.
//!
//! kube's `Store::wait_until_ready` polls one oneshot receiver from every waiting task,
//! and a oneshot remembers only the last task's waker: with several reconciles waiting
//! at once, all but one can sleep forever. `Filled` is a `tokio::sync::watch` instead,
//! which wakes every waiter, and can be read without waiting.

use futures::Stream;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::watch;

/// The page sizes of the first list of kinds whose objects can be large: kube's default
/// of 500 objects per page would hold one response of 150 MB in memory at once for
/// native RoleBindings of 3,000 subjects (~300 kB of JSON each), and 30 MB for
/// Memberships whose status lists 1,000 namespaces. The cache keeps little of each
/// object; the page is the peak. Smaller pages cost a round trip each.
pub const NATIVE_BINDINGS_PAGE: u32 = 50;
pub const MEMBERSHIPS_PAGE: u32 = 250;

/// Whether a cache has been filled by its first complete list (it stays filled).
#[derive(Clone, Debug)]
pub struct Filled(watch::Receiver<bool>);

impl Filled {
    pub fn is_filled(&self) -> bool {
        *self.0.borrow()
    }

    /// Waits until the cache is filled (forever if its watch is never polled again).
    pub async fn wait(&self) {
        let mut filled = self.0.clone();
        let _ = filled.wait_for(|filled| *filled).await;
    }
}

/// Whether every cache is filled.
pub fn all_filled(caches: &[Filled]) -> bool {
    caches.iter().all(Filled::is_filled)
}

/// Waits until every cache is filled.
pub async fn wait_all_filled(caches: &[Filled]) {
    for cache in caches {
        cache.wait().await;
    }
}

/// Marks one cache filled; [`Filled`] receivers see it. The watch set marks a cache
/// filled only once the index kept next to it holds the list too
/// ([`crate::watch_set`]): a reconcile woken by "filled" reads the index at once, and
/// an index still empty then made it compute an organization without members (at
/// restart it deleted the native bindings of 1,000 members and wrote them back).
pub struct Filling(watch::Sender<bool>);

impl Default for Filling {
    fn default() -> Self {
        Filling(watch::channel(false).0)
    }
}

impl Filling {
    /// What waiters hold.
    pub fn filled(&self) -> Filled {
        Filled(self.0.subscribe())
    }

    /// The cache (and its index) holds its first complete list.
    pub fn done(&self) {
        self.0.send_replace(true);
    }
}

/// A cache of `api`'s objects, and the watch events (each already applied to the cache
/// when it is yielded: controller triggers, and the index kept next to the cache,
/// [`crate::index`]; the stream must be polled to fill the cache).
pub fn reflect_events<K>(
    api: Api<K>,
    config: watcher::Config,
) -> (
    Store<K>,
    impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
)
where
    K: Resource + Compact + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let (reader, writer) = reflector::store();
    let stream = watcher(api, config)
        .default_backoff()
        .modify(strip_and_compact);
    (reader, reflector::reflector(writer, stream))
}

/// How many objects `store` holds and their size as JSON, as kept (see
/// [`crate::metrics::CacheCost`]); serialised one at a time into a counter.
pub fn cost<K>(cache: &'static str, store: &Store<K>) -> crate::metrics::CacheCost
where
    K: Resource + serde::Serialize + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let objects = store.state();
    let mut count = Count(0);
    for obj in &objects {
        let _ = serde_json::to_writer(&mut count, obj.as_ref());
    }
    crate::metrics::CacheCost {
        cache,
        objects: objects.len(),
        json_bytes: count.0,
    }
}

/// What a cache keeps of an object of one kind beyond [`strip`]: by default all of it;
/// kinds whose bulky parts kube-org only compares keep a digest of them instead.
pub trait Compact {
    fn compact(&mut self) {}
}

impl Compact for crate::api::Organization {}
impl Compact for crate::api::Invitation {}
impl Compact for crate::access::native::CachedRoleBinding {}
impl Compact for k8s_openapi::api::core::v1::Namespace {}
impl Compact for k8s_openapi::api::rbac::v1::ClusterRole {}
impl Compact for k8s_openapi::api::rbac::v1::ClusterRoleBinding {}
impl Compact for k8s_openapi::api::coordination::v1::Lease {}

impl Compact for crate::api::RoleBinding {
    /// `status.resources` (every namespace bound: 1,000 entries for an all-resources
    /// binding in an organization of 1,000 resources) is only compared with the next
    /// status.
    fn compact(&mut self) {
        self.compact_status();
    }
}

impl Compact for crate::api::Membership {
    /// `status.access` (every namespace and ClusterRole of the member: 100 entries in
    /// an organization of 100 resources) is only compared with the next status.
    fn compact(&mut self) {
        self.compact_status();
    }
}

fn strip_and_compact<K: Resource + Compact>(obj: &mut K) {
    strip(obj);
    obj.compact();
}

/// What no reconcile reads, dropped before an object is cached: server-side apply's
/// `managedFields` (often larger than the object) and kubectl's last-applied copy.
fn strip<K: Resource>(obj: &mut K) {
    let meta = obj.meta_mut();
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
        if annotations.is_empty() {
            meta.annotations = None;
        }
    }
}

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_objects_lose_what_no_reconcile_reads() {
        let mut ns: k8s_openapi::api::core::v1::Namespace =
            serde_json::from_value(serde_json::json!({
                "metadata": {
                    "name": "a",
                    "labels": {"kube-org.io/organization": "acme"},
                    "annotations": {LAST_APPLIED: "{}"},
                    "managedFields": [{"manager": "kubectl", "operation": "Apply"}],
                }
            }))
            .unwrap();
        strip(&mut ns);
        assert_eq!(ns.metadata.managed_fields, None);
        assert_eq!(ns.metadata.annotations, None);
        assert_eq!(ns.metadata.labels.unwrap().len(), 1);
    }

    #[test]
    fn a_caches_cost_is_its_objects_and_their_size_as_json() {
        let (reader, mut writer) = reflector::store::<k8s_openapi::api::core::v1::Namespace>();
        let ns = |name: &str| -> k8s_openapi::api::core::v1::Namespace {
            serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).unwrap()
        };
        for name in ["a", "bb"] {
            writer.apply_watcher_event(&watcher::Event::Apply(ns(name)));
        }
        let expected = ["a", "bb"]
            .map(|name| serde_json::to_vec(&ns(name)).unwrap().len())
            .iter()
            .sum();
        assert_eq!(
            cost("namespaces", &reader),
            crate::metrics::CacheCost {
                cache: "namespaces",
                objects: 2,
                json_bytes: expected,
            }
        );
    }

    #[tokio::test]
    async fn every_waiter_wakes_when_the_cache_fills() {
        let (tx, rx) = watch::channel(false);
        let filled = Filled(rx);
        let waiters: Vec<_> = (0..8)
            .map(|_| {
                let filled = filled.clone();
                tokio::spawn(async move { filled.wait().await })
            })
            .collect();
        tokio::task::yield_now().await;
        assert!(!all_filled(std::slice::from_ref(&filled)));
        tx.send_replace(true);
        for waiter in waiters {
            tokio::time::timeout(std::time::Duration::from_secs(1), waiter)
                .await
                .expect("a waiter was not woken")
                .expect("waiter task");
        }
        assert!(all_filled(&[filled]));
    }
}
