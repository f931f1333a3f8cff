//! Status writes the caches do not show yet.
//!
//! A status pass compares each status it decided with the cached object and writes
//! what differs. The cache hears of a write from its watch, which falls seconds behind
//! while the API server is busy: at 10,000 members each Membership status event lists
//! 1,000 namespaces, and thousands are queued. A pass that started meanwhile compared
//! with the copy from before the write, found it different and wrote it again, moving
//! `lastTransitionTime` (measured: 166 Memberships written twice, 14 s apart, after the
//! converge, at 10,000 members x 1,000 namespaces; a RoleBinding's Event could be
//! published twice the same way). So each status write is remembered until its cache
//! shows it, and a pass first waits, for a bounded time, for those of its organization.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// One write, by the resourceVersions of the copy it was compared with and of the
/// object it made (the API server's reply).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Write {
    read: Option<String>,
    made: Option<String>,
}

/// (resource, namespace, name).
type Key = (&'static str, String, String);

/// The status writes not yet seen in the caches, of every organization.
#[derive(Debug, Default)]
pub struct UnseenWrites(Mutex<BTreeMap<Key, Write>>);

impl UnseenWrites {
    /// Remembers a write of `resource` `namespace/name`, made after comparing with the
    /// copy at resourceVersion `read`; the API server answered `made`.
    pub fn record(
        &self,
        resource: &'static str,
        namespace: &str,
        name: &str,
        read: Option<String>,
        made: Option<String>,
    ) {
        self.lock().insert(
            (resource, namespace.to_string(), name.to_string()),
            Write { read, made },
        );
    }

    /// Forgets the writes in `namespace` that the caches now show and returns how many
    /// are still unseen. `cached` gives the resourceVersion of the cached copy of
    /// `(resource, name)` in `namespace` (`None` when there is none).
    pub fn forget_seen(
        &self,
        namespace: &str,
        cached: impl Fn(&'static str, &str) -> Option<String>,
    ) -> usize {
        let mut writes = self.lock();
        writes.retain(|(resource, ns, name), write| {
            ns != namespace || !shows(write, cached(resource, name).as_deref())
        });
        writes.keys().filter(|(_, ns, _)| ns == namespace).count()
    }

    /// Forgets every write in `namespace`, seen or not (a pass waited long enough).
    pub fn forget(&self, namespace: &str) {
        self.lock().retain(|(_, ns, _), _| ns != namespace);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<Key, Write>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

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

    fn versions(
        list: &[(&'static str, &str, &str)],
    ) -> impl Fn(&'static str, &str) -> Option<String> {
        let list: Vec<(&'static str, String, String)> = list
            .iter()
            .map(|(r, n, v)| (*r, n.to_string(), v.to_string()))
            .collect();
        move |resource, name| {
            list.iter()
                .find(|(r, n, _)| *r == resource && n == name)
                .map(|(_, _, v)| v.clone())
        }
    }

    #[test]
    fn a_write_is_unseen_until_the_cache_moves_past_the_copy_it_was_compared_with() {
        let unseen = UnseenWrites::default();
        unseen.record(
            "memberships",
            "org-a",
            "m1",
            Some("10".into()),
            Some("12".into()),
        );
        unseen.record(
            "memberships",
            "org-a",
            "m2",
            Some("11".into()),
            Some("13".into()),
        );
        unseen.record(
            "memberships",
            "org-b",
            "m1",
            Some("10".into()),
            Some("14".into()),
        );
        // The cache still holds the copies compared with.
        let behind = versions(&[("memberships", "m1", "10"), ("memberships", "m2", "11")]);
        assert_eq!(unseen.forget_seen("org-a", &behind), 2);
        // m1 written as made; m2 changed by someone after (a newer version than ours).
        let caught_up = versions(&[("memberships", "m1", "12"), ("memberships", "m2", "20")]);
        assert_eq!(unseen.forget_seen("org-a", &caught_up), 0);
        // Another organization's writes are its own.
        assert_eq!(unseen.forget_seen("org-b", &behind), 1);
    }

    #[test]
    fn a_deleted_object_or_an_unchanged_write_needs_no_waiting() {
        let unseen = UnseenWrites::default();
        unseen.record(
            "rolebindings",
            "org-a",
            "gone",
            Some("5".into()),
            Some("6".into()),
        );
        // A write that changed nothing leaves the resourceVersion as it was.
        unseen.record(
            "rolebindings",
            "org-a",
            "same",
            Some("7".into()),
            Some("7".into()),
        );
        let cached = versions(&[("rolebindings", "same", "7")]);
        assert_eq!(unseen.forget_seen("org-a", cached), 0);
    }

    #[test]
    fn the_same_name_of_another_resource_is_another_write() {
        let unseen = UnseenWrites::default();
        unseen.record(
            "rolebindings",
            "org-a",
            "x",
            Some("1".into()),
            Some("2".into()),
        );
        let cached = versions(&[("memberships", "x", "2"), ("rolebindings", "x", "1")]);
        assert_eq!(unseen.forget_seen("org-a", &cached), 1);
        unseen.forget("org-a");
        assert_eq!(unseen.forget_seen("org-a", &cached), 0);
    }
}
