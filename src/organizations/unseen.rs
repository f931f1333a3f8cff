//! Writes the caches do not show yet.
//!
//! A pass compares what it decided with the cached objects and writes what differs.
//! A cache hears of a write from its watch, which falls behind while the API server is
//! busy: at 10,000 members each Membership status event lists 1,000 namespaces, and
//! thousands are queued. A pass that started meanwhile compared with the copy from
//! before the write, found it different and wrote it again: a status moved its
//! `lastTransitionTime` (measured: 166 Memberships written twice, 14 s apart, after
//! the converge, at 10,000 members x 1,000 namespaces; a RoleBinding's Event could be
//! published twice the same way), and a native binding created by a pass cut short was
//! created again by the next one, refused as existing and applied. So each write is
//! remembered until its cache shows it, and a pass first waits, for a bounded time,
//! for those of its group (one organization's statuses, or its native RBAC).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One write, by the resourceVersions of the copy it was compared with and of the
/// object it made (the API server's reply; `None` for a delete).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Write {
    read: Option<String>,
    made: Option<String>,
}

/// (resource, namespace, name).
type Key = (&'static str, String, String);

/// One object written, as [`UnseenWrites::record`] takes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written<'a> {
    /// The resource (its metric label).
    pub resource: &'static str,
    /// Empty for a cluster-scoped object.
    pub namespace: &'a str,
    pub name: &'a str,
    /// The resourceVersion of the cached copy the write was decided from.
    pub read: Option<String>,
    /// The resourceVersion the API server answered (`None`: deleted).
    pub made: Option<String>,
}

/// The writes not yet seen in the caches, by group (a pass polls only its own group's).
#[derive(Debug, Default)]
pub struct UnseenWrites(Mutex<HashMap<String, BTreeMap<Key, Write>>>);

impl UnseenWrites {
    /// Remembers a write of `group`.
    pub fn record(&self, group: &str, written: Written<'_>) {
        self.lock().entry(group.to_string()).or_default().insert(
            (
                written.resource,
                written.namespace.to_string(),
                written.name.to_string(),
            ),
            Write {
                read: written.read,
                made: written.made,
            },
        );
    }

    /// Forgets the writes of `group` that the caches now show and returns how many are
    /// still unseen. `cached` gives the resourceVersion of the cached copy of
    /// `(resource, namespace, name)` (`None` when there is none).
    pub fn forget_seen(
        &self,
        group: &str,
        cached: impl Fn(&'static str, &str, &str) -> Option<String>,
    ) -> usize {
        let mut groups = self.lock();
        let Some(writes) = groups.get_mut(group) else {
            return 0;
        };
        writes.retain(|(resource, namespace, name), write| {
            !shows(write, cached(resource, namespace, name).as_deref())
        });
        let unseen = writes.len();
        if unseen == 0 {
            groups.remove(group);
        }
        unseen
    }

    /// Forgets every write of `group`, seen or not.
    pub fn forget(&self, group: &str) {
        self.lock().remove(group);
    }

    /// [`Self::wait`], and says so when the caches still do not show some writes of
    /// `group` (`writes` names them in the warning): the caller compares with the
    /// caches anyway, at worst writing something again.
    pub async fn wait_or_warn(
        &self,
        group: &str,
        limit: Duration,
        writes: &str,
        cached: impl Fn(&'static str, &str, &str) -> Option<String>,
    ) {
        let unseen = self.wait(group, limit, cached).await;
        if unseen > 0 {
            tracing::warn!(
                %group,
                unseen,
                "the caches do not show this operator's last {writes} writes; comparing with them anyway"
            );
        }
    }

    /// Waits until the caches show every write of `group` ([`Self::forget_seen`]),
    /// polling, for at most `limit`; then forgets what they still do not show and
    /// returns how many that was (0: all seen).
    async fn wait(
        &self,
        group: &str,
        limit: Duration,
        cached: impl Fn(&'static str, &str, &str) -> Option<String>,
    ) -> usize {
        let started = Instant::now();
        loop {
            let unseen = self.forget_seen(group, &cached);
            if unseen == 0 {
                return 0;
            }
            if started.elapsed() >= limit {
                self.forget(group);
                return unseen;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, BTreeMap<Key, Write>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// How often [`UnseenWrites::wait`] looks at the caches again.
const POLL: Duration = Duration::from_millis(20);

/// Whether a cached copy at resourceVersion `cached` shows `write`: it is the object
/// written, or no longer the one compared with (someone wrote after, or it was deleted
/// and is gone from the cache). resourceVersions are compared for equality only: they
/// are opaque.
fn shows(write: &Write, cached: Option<&str>) -> bool {
    match cached {
        None => true,
        Some(version) => {
            write.made.as_deref() == Some(version) || write.read.as_deref() != Some(version)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cache's resourceVersions: (resource, namespace, name, version).
    fn versions(
        list: &[(&'static str, &str, &str, &str)],
    ) -> impl Fn(&'static str, &str, &str) -> Option<String> {
        let list: Vec<(&'static str, String, String, String)> = list
            .iter()
            .map(|(r, ns, n, v)| (*r, ns.to_string(), n.to_string(), v.to_string()))
            .collect();
        move |resource, namespace, name| {
            list.iter()
                .find(|(r, ns, n, _)| *r == resource && ns == namespace && n == name)
                .map(|(.., v)| v.clone())
        }
    }

    fn write<'a>(
        resource: &'static str,
        namespace: &'a str,
        name: &'a str,
        read: &str,
        made: Option<&str>,
    ) -> Written<'a> {
        Written {
            resource,
            namespace,
            name,
            read: Some(read.to_string()),
            made: made.map(str::to_string),
        }
    }

    #[test]
    fn a_write_is_unseen_until_the_cache_moves_past_the_copy_it_was_compared_with() {
        let unseen = UnseenWrites::default();
        unseen.record(
            "org-a",
            write("memberships", "org-a", "m1", "10", Some("12")),
        );
        unseen.record(
            "org-a",
            write("memberships", "org-a", "m2", "11", Some("13")),
        );
        unseen.record(
            "org-b",
            write("memberships", "org-b", "m1", "10", Some("14")),
        );
        // The cache still holds the copies compared with.
        let behind = versions(&[
            ("memberships", "org-a", "m1", "10"),
            ("memberships", "org-a", "m2", "11"),
            ("memberships", "org-b", "m1", "10"),
        ]);
        assert_eq!(unseen.forget_seen("org-a", &behind), 2);
        // m1 written as made; m2 changed by someone after (a newer version than ours).
        let caught_up = versions(&[
            ("memberships", "org-a", "m1", "12"),
            ("memberships", "org-a", "m2", "20"),
            ("memberships", "org-b", "m1", "10"),
        ]);
        assert_eq!(unseen.forget_seen("org-a", &caught_up), 0);
        // Another group's writes are its own.
        assert_eq!(unseen.forget_seen("org-b", &caught_up), 1);
    }

    #[test]
    fn a_deleted_object_or_an_unchanged_write_needs_no_waiting() {
        let unseen = UnseenWrites::default();
        unseen.record(
            "acme",
            write("rolebindings.rbac", "res-1", "gone", "5", Some("6")),
        );
        // A write that changed nothing leaves the resourceVersion as it was.
        unseen.record(
            "acme",
            write("rolebindings.rbac", "res-1", "same", "7", Some("7")),
        );
        let cached = versions(&[("rolebindings.rbac", "res-1", "same", "7")]);
        assert_eq!(unseen.forget_seen("acme", cached), 0);
    }

    #[test]
    fn a_delete_is_seen_once_the_cache_no_longer_has_the_copy_it_deleted() {
        let unseen = UnseenWrites::default();
        unseen.record(
            "acme",
            write("rolebindings.rbac", "res-1", "old", "5", None),
        );
        let still = versions(&[("rolebindings.rbac", "res-1", "old", "5")]);
        assert_eq!(unseen.forget_seen("acme", &still), 1);
        assert_eq!(unseen.forget_seen("acme", versions(&[])), 0);
    }

    #[test]
    fn the_same_name_in_another_namespace_or_resource_is_another_write() {
        let unseen = UnseenWrites::default();
        unseen.record(
            "acme",
            write("rolebindings.rbac", "res-1", "x", "1", Some("2")),
        );
        let cached = versions(&[
            ("memberships", "res-1", "x", "2"),
            ("rolebindings.rbac", "res-2", "x", "2"),
            ("rolebindings.rbac", "res-1", "x", "1"),
        ]);
        assert_eq!(unseen.forget_seen("acme", &cached), 1);
        unseen.forget("acme");
        assert_eq!(unseen.forget_seen("acme", &cached), 0);
    }

    #[tokio::test]
    async fn waiting_ends_when_the_cache_shows_the_writes_or_at_the_limit() {
        let unseen = UnseenWrites::default();
        unseen.record("acme", write("clusterroles", "", "cr", "1", Some("2")));
        let shown = versions(&[("clusterroles", "", "cr", "2")]);
        assert_eq!(unseen.wait("acme", Duration::from_secs(5), &shown).await, 0);
        unseen.record("acme", write("clusterroles", "", "cr", "2", Some("3")));
        let behind = versions(&[("clusterroles", "", "cr", "2")]);
        let started = Instant::now();
        assert_eq!(
            unseen
                .wait("acme", Duration::from_millis(100), &behind)
                .await,
            1
        );
        assert!(started.elapsed() >= Duration::from_millis(100));
        // Given up on: forgotten, so the next pass does not wait for it again.
        assert_eq!(unseen.forget_seen("acme", &behind), 0);
    }
}
