//! Test support: storage that passes every call to the storage it wraps and
//! records what was asked of it (the reads of each key, how many were under
//! way at once, the listings), or refuses to list. The tests of what reads
//! the data set (publishing, reports) assert on it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Mutex;

use bytes::Bytes;

use super::{Conditional, Storage, StorageError, Versioned};

#[derive(Debug)]
pub struct Watched<S> {
    pub inner: S,
    refuse_listing: bool,
    reads: Mutex<BTreeMap<String, usize>>,
    lists: Mutex<Vec<String>>,
    under_way: AtomicUsize,
    most_under_way: AtomicUsize,
}

impl<S: Storage> Watched<S> {
    pub fn new(inner: S) -> Watched<S> {
        Watched {
            inner,
            refuse_listing: false,
            reads: Mutex::default(),
            lists: Mutex::default(),
            under_way: AtomicUsize::new(0),
            most_under_way: AtomicUsize::new(0),
        }
    }

    /// Storage that panics when listed: an output of years and thousands of
    /// (account, region) pairs is too large to list for each pair each night.
    pub fn unlisted(inner: S) -> Watched<S> {
        Watched {
            refuse_listing: true,
            ..Watched::new(inner)
        }
    }

    /// Reads (`get` and `get_versioned`) of each key.
    pub fn reads(&self) -> BTreeMap<String, usize> {
        self.reads.lock().expect("not poisoned").clone()
    }

    /// All reads of every key.
    pub fn read_count(&self) -> usize {
        self.reads().values().sum()
    }

    /// The prefixes listed, in order.
    pub fn lists(&self) -> Vec<String> {
        self.lists.lock().expect("not poisoned").clone()
    }

    /// The most reads under way at once.
    pub fn most_reads_at_once(&self) -> usize {
        self.most_under_way.load(SeqCst)
    }

    async fn read<T>(&self, key: &str, read: impl std::future::Future<Output = T>) -> T {
        *self
            .reads
            .lock()
            .expect("not poisoned")
            .entry(key.to_owned())
            .or_default() += 1;
        let now = self.under_way.fetch_add(1, SeqCst) + 1;
        self.most_under_way.fetch_max(now, SeqCst);
        // A read takes a while: the others asked for meanwhile start.
        for _ in 0..3 {
            tokio::task::yield_now().await;
        }
        let found = read.await;
        self.under_way.fetch_sub(1, SeqCst);
        found
    }
}

impl<S: Storage> Storage for Watched<S> {
    fn location(&self) -> String {
        self.inner.location()
    }
    async fn preflight(&self) -> Result<(), StorageError> {
        self.inner.preflight().await
    }
    async fn get(&self, key: &str) -> Result<Option<Bytes>, StorageError> {
        self.read(key, self.inner.get(key)).await
    }
    async fn put(&self, key: &str, data: Bytes) -> Result<(), StorageError> {
        self.inner.put(key, data).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        assert!(!self.refuse_listing, "listed {prefix}");
        self.lists
            .lock()
            .expect("not poisoned")
            .push(prefix.to_owned());
        self.inner.list(prefix).await
    }
    async fn holds_any(&self, prefix: &str) -> Result<bool, StorageError> {
        self.inner.holds_any(prefix).await
    }
    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.inner.delete(key).await
    }
    async fn get_versioned(
        &self,
        key: &str,
        limit: u64,
    ) -> Result<Option<Versioned>, StorageError> {
        self.read(key, self.inner.get_versioned(key, limit)).await
    }
    async fn put_if_absent(&self, key: &str, data: Bytes) -> Result<Conditional, StorageError> {
        self.inner.put_if_absent(key, data).await
    }
    async fn put_if_match(
        &self,
        key: &str,
        data: Bytes,
        version: &str,
    ) -> Result<Conditional, StorageError> {
        self.inner.put_if_match(key, data, version).await
    }
    async fn delete_if_match(&self, key: &str, version: &str) -> Result<Conditional, StorageError> {
        self.inner.delete_if_match(key, version).await
    }
}
