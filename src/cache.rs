//! Caches fed by watches, and knowing when each has had its first complete list.
//!
//! kube's `Store::wait_until_ready` polls one oneshot receiver from every waiting task,
//! and a oneshot remembers only the last task's waker: with several reconciles waiting
//! at once, all but one can sleep forever. `Filled` is a `tokio::sync::watch` instead,
//! which wakes every waiter, and can be read without waiting.

use futures::{Stream, StreamExt};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::watch;

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

/// A cache of `api`'s objects, whether it is filled, and the objects each watch event
/// touched (controller triggers; the stream must be polled to fill the cache).
pub fn reflect_objects<K>(
    api: Api<K>,
    config: watcher::Config,
) -> (
    Store<K>,
    Filled,
    impl Stream<Item = Result<K, watcher::Error>> + Send + 'static,
)
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let (reader, filled, events) = reflect_events(api, config);
    (reader, filled, events.touched_objects())
}

/// Like [`reflect_objects`], but yields the watch events themselves (each already
/// applied to the cache when it is yielded), for keeping an index next to the cache.
pub fn reflect_events<K>(
    api: Api<K>,
    config: watcher::Config,
) -> (
    Store<K>,
    Filled,
    impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
)
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let (reader, writer) = reflector::store();
    let (filled_tx, filled_rx) = watch::channel(false);
    let events = reflector::reflector(writer, watcher(api, config).default_backoff()).inspect(
        move |event| {
            if let Ok(watcher::Event::InitDone) = event {
                filled_tx.send_replace(true);
            }
        },
    );
    (reader, Filled(filled_rx), events)
}

#[cfg(test)]
mod tests {
    use super::*;

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
