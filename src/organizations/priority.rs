//! Access before statuses: while a reconcile writes native RBAC, the status workers
//! start no new write.
//!
//! A cold start writes ~2,000 statuses at 1,000 members. Sent alongside, they made the
//! API server answer the native writes of a repair (a deleted binding, a new namespace,
//! a revoked member) two to three times slower: 104 native writes took 2 s during the
//! status storm. Status writes already sent finish; the next ones wait until no
//! reconcile is writing access.

use tokio::sync::watch;

/// How many reconciles are writing native RBAC now.
pub struct AccessFirst(watch::Sender<usize>);

impl Default for AccessFirst {
    fn default() -> Self {
        AccessFirst(watch::Sender::new(0))
    }
}

/// Held while a reconcile writes native RBAC.
pub struct Writing<'a>(&'a AccessFirst);

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        self.0.0.send_modify(|n| *n -= 1);
    }
}

impl AccessFirst {
    /// Marks native RBAC being written until the guard is dropped.
    pub fn writing(&self) -> Writing<'_> {
        self.0.send_modify(|n| *n += 1);
        Writing(self)
    }

    /// Waits until no reconcile is writing native RBAC.
    pub async fn clear(&self) {
        let mut writing = self.0.subscribe();
        let _ = writing.wait_for(|n| *n == 0).await;
    }
}

#[cfg(test)]
mod tests {
    use super::AccessFirst;
    use std::time::Duration;

    #[tokio::test]
    async fn status_writes_wait_until_every_access_write_is_done() {
        let first = AccessFirst::default();
        first.clear().await;
        let a = first.writing();
        let b = first.writing();
        let waiting = tokio::time::timeout(Duration::from_millis(20), first.clear()).await;
        assert!(waiting.is_err(), "waits while access is written");
        drop(a);
        let waiting = tokio::time::timeout(Duration::from_millis(20), first.clear()).await;
        assert!(waiting.is_err(), "waits while one reconcile still writes");
        drop(b);
        tokio::time::timeout(Duration::from_secs(1), first.clear())
            .await
            .expect("free once no reconcile writes access");
    }
}
