//! Status lists kube-org's cache keeps as a digest.
//!
//! Some statuses carry a list with an entry per resource namespace: a Membership's
//! `status.access`, a RoleBinding's `status.resources`. In an organization of 10,000
//! members and 1,000 namespaces those lists are millions of strings, yet kube-org only
//! ever compares them with the next status it computes. The cache therefore drops the
//! list and keeps its digest in an annotation that only exists in memory (never
//! written); a value a tenant put under that key is removed first, so it is never
//! believed.

use std::hash::Hash;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::access::native::keyed_digest;

/// Whether an annotation key is one of the digests only the cache holds (never read
/// from or written to the API server).
pub fn is_cache_only(key: &str) -> bool {
    key.starts_with(CACHE_ONLY_PREFIX)
}

/// The prefix of every key [`compact`] is given.
pub const CACHE_ONLY_PREFIX: &str = "kube-org.io/cached-";

/// Replaces `list` (when the object has a status) by its digest, kept under `key` in
/// `meta`'s annotations.
pub fn compact<T: Hash>(meta: &mut ObjectMeta, key: &str, list: Option<&mut Vec<T>>) {
    debug_assert!(
        is_cache_only(key),
        "{key} must start with {CACHE_ONLY_PREFIX}"
    );
    let annotations = meta.annotations.get_or_insert_default();
    annotations.remove(key);
    if let Some(list) = list {
        let digest = keyed_digest(list.as_slice());
        *list = Vec::new();
        annotations.insert(key.to_string(), digest.to_string());
    }
    if annotations.is_empty() {
        meta.annotations = None;
    }
}

/// Whether the list the object holds (compacted under `key`, or as read from the API
/// server) equals `wanted`.
pub fn same<T: Hash>(meta: &ObjectMeta, key: &str, held: &[T], wanted: &[T]) -> bool {
    let held = meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .and_then(|d| d.parse().ok())
        .unwrap_or_else(|| keyed_digest(held));
    keyed_digest(wanted) == held
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "kube-org.io/cached-test-digest";

    #[test]
    fn a_compacted_list_compares_as_the_list_did() {
        let mut meta = ObjectMeta::default();
        let mut list = vec!["a".to_string(), "b".to_string()];
        let original = list.clone();
        compact(&mut meta, KEY, Some(&mut list));
        assert!(list.is_empty());
        assert!(same(&meta, KEY, &list, &original));
        assert!(!same(&meta, KEY, &list, &original[..1]));
        assert!(same(&ObjectMeta::default(), KEY, &original, &original));
    }

    #[test]
    fn a_tenants_value_under_the_key_is_dropped() {
        let mut meta = ObjectMeta {
            annotations: Some([(KEY.to_string(), "42".to_string())].into()),
            ..Default::default()
        };
        compact::<String>(&mut meta, KEY, None);
        assert!(meta.annotations.is_none());
        let wanted = vec!["a".to_string()];
        let mut list = wanted.clone();
        let mut meta = ObjectMeta {
            annotations: Some([(KEY.to_string(), "42".to_string())].into()),
            ..Default::default()
        };
        compact(&mut meta, KEY, Some(&mut list));
        assert!(same(&meta, KEY, &list, &wanted));
    }
}
