//! The storage seam: everything ssm-audit writes (partitions, staged pages,
//! checkpoints, the lock, run manifests) goes through [`Storage`], addressed
//! by `/`-separated keys relative to a root. [`LocalStorage`] serves a local
//! directory, [`S3Storage`] a bucket and prefix; [`AnyStorage`] is the one the
//! job picks at run time from `--output` and `--checkpoint`.
//!
//! Every `put` is an atomic publish: a reader sees the old object or the new
//! one, never a part. Conditional writes report a lost race as
//! [`Conditional::Conflict`], never as an error; a conditional write that
//! finds the object already holding exactly the bytes it writes (a delete:
//! finds it gone) is done, because on S3 that is what the SDK's retry of an
//! attempt whose answer was lost meets. Both backends accept and
//! refuse the same keys ([`object_key`]).
//!
//! **API boundary**: nothing else in the product touches files or buckets,
//! and this module depends on nothing of the product but the leaf `text`
//! (`tests/it/tidy.rs` checks both).

use std::future::Future;

use bytes::Bytes;

mod key;
mod local;
mod s3;
#[cfg(test)]
pub mod watched;

pub use key::{folder_prefix, object_key};
pub use local::{LocalStorage, STALE_STAGING_REREAD};
pub use s3::{S3Options, S3Storage, Sse};

/// Requests to storage a sequence of independent reads or deletes keeps in
/// flight: an object on S3 is tens of milliseconds away, so one at a time
/// would make an organization's verify, or a crawl's clean-up, take hours.
pub const REQUESTS_AT_ONCE: usize = 16;

/// Objects deleted in one request, at most (S3's `DeleteObjects` limit).
pub const DELETES_PER_REQUEST: usize = 1000;

/// Deletes `keys` one `delete` each, [`REQUESTS_AT_ONCE`] at a time.
async fn delete_each<S: Storage + ?Sized>(
    storage: &S,
    keys: Vec<String>,
) -> Result<(), StorageError> {
    use futures_util::{stream, StreamExt};
    let mut deletes = stream::iter(keys)
        .map(|key| async move { storage.delete(&key).await })
        .buffer_unordered(REQUESTS_AT_ONCE);
    while let Some(deleted) = deletes.next().await {
        deleted?;
    }
    Ok(())
}

/// A storage operation that failed, with the object it was about.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("cannot {op} {location}: {source}")]
    Io {
        op: &'static str,
        location: String,
        source: std::io::Error,
    },
    #[error("invalid storage key {0:?}: keys are relative, /-separated, without . or .. parts")]
    InvalidKey(String),
    #[error("output location {location} is not usable: {reason}")]
    Unusable { location: String, reason: String },
    #[error("cannot {op} {location}: {message}")]
    Remote {
        op: &'static str,
        location: String,
        message: String,
    },
    #[error("refusing to follow the symbolic link {location} inside the output or checkpoint folder: ssm-audit never reads, writes or deletes through a link there; remove it")]
    Link { location: String },
    #[error("{location} is larger than the {limit} bytes such a file may have; it was not written by ssm-audit: move it aside")]
    TooLarge { location: String, limit: u64 },
    #[error("refusing to {op} {location}: this run's lease on the output lock may have run out ({reason}); another run may hold it now")]
    Fenced {
        op: &'static str,
        location: String,
        reason: String,
    },
}

/// Object storage as ssm-audit needs it.
pub trait Storage: Send + Sync + 'static {
    /// Where this storage lives, for messages and manifests (`/path` or `s3://…`).
    fn location(&self) -> String;

    /// Checks, before any remote call, that the output can be written. Leaves
    /// nothing behind.
    fn preflight(&self) -> impl Future<Output = Result<(), StorageError>> + Send;

    /// The object's bytes, or None when it does not exist.
    fn get(&self, key: &str) -> impl Future<Output = Result<Option<Bytes>, StorageError>> + Send;

    /// Creates or replaces an object atomically and durably.
    fn put(&self, key: &str, data: Bytes) -> impl Future<Output = Result<(), StorageError>> + Send;

    /// Keys below `prefix` (a folder, ending in `/`), in lexical order.
    fn list(&self, prefix: &str) -> impl Future<Output = Result<Vec<String>, StorageError>> + Send;

    /// Whether any key lies below `prefix` (a folder, ending in `/`). By
    /// default from [`Storage::list`]; storage that can stop at the first
    /// key does, so that asking whether a data set exists does not list it.
    fn holds_any(&self, prefix: &str) -> impl Future<Output = Result<bool, StorageError>> + Send {
        async move { Ok(!self.list(prefix).await?.is_empty()) }
    }

    /// Deletes an object; deleting a missing object is not an error.
    fn delete(&self, key: &str) -> impl Future<Output = Result<(), StorageError>> + Send;

    /// Deletes every object of `keys`; a missing one is not an error. By
    /// default one `delete` per object, [`REQUESTS_AT_ONCE`] at a time;
    /// storage that deletes many objects in one request (S3) does so.
    fn delete_all(
        &self,
        keys: Vec<String>,
    ) -> impl Future<Output = Result<(), StorageError>> + Send {
        delete_each(self, keys)
    }

    /// The objects one request of [`Storage::delete_all`] deletes, at most:
    /// 1 unless the storage deletes in batches.
    fn deletes_per_request(&self) -> usize {
        1
    }

    /// The object with the version tag that conditional writes compare, if
    /// it holds at most `limit` bytes; a larger one is
    /// [`StorageError::TooLarge`], never read whole (a lock, a checkpoint or
    /// a manifest someone made huge must not exhaust memory).
    fn get_versioned(
        &self,
        key: &str,
        limit: u64,
    ) -> impl Future<Output = Result<Option<Versioned>, StorageError>> + Send;

    /// Creates the object only if no object has that key (If-None-Match: *).
    fn put_if_absent(
        &self,
        key: &str,
        data: Bytes,
    ) -> impl Future<Output = Result<Conditional, StorageError>> + Send;

    /// Replaces the object only if it is still at `version` (If-Match).
    fn put_if_match(
        &self,
        key: &str,
        data: Bytes,
        version: &str,
    ) -> impl Future<Output = Result<Conditional, StorageError>> + Send;

    /// Deletes the object only if it is still at `version`.
    fn delete_if_match(
        &self,
        key: &str,
        version: &str,
    ) -> impl Future<Output = Result<Conditional, StorageError>> + Send;
}

/// An object's bytes and the version tag of exactly those bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    pub data: Bytes,
    pub version: String,
    /// The object's version in a versioned bucket (S3's version id), which
    /// an auditor can fetch again; None on disk or in an unversioned bucket.
    pub object_version: Option<String>,
}

/// The largest object a conditional write compares against (a lock or a
/// checkpoint): a larger one at such a key is not ssm-audit's.
pub const MAX_CONDITIONAL_BYTES: u64 = 64 * 1024 * 1024;

/// The outcome of a conditional write: a lost race is an answer, not an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conditional {
    /// Written; the object's new version tag.
    Done { version: String },
    /// The condition failed: the object exists, changed, or is gone.
    Conflict,
}

/// A permit to write that runs out: the output lock extends it after each
/// renewal it knows the service accepted, up to a deadline on this
/// process's monotonic clock, and revokes it when the lock is lost.
/// [`Fenced`] storage checks it before every write, so a run that may have
/// lost its lock (a stalled renewal, a paused process) writes nothing more.
#[derive(Debug, Clone, Default)]
pub struct Fence {
    state: std::sync::Arc<std::sync::Mutex<FenceState>>,
}

#[derive(Debug, Default)]
struct FenceState {
    valid_until: Option<tokio::time::Instant>,
    revoked: Option<String>,
}

impl Fence {
    pub fn new() -> Fence {
        Fence::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FenceState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Allows writes until `until`, unless revoked.
    pub fn extend_to(&self, until: tokio::time::Instant) {
        let mut state = self.lock();
        state.valid_until = Some(state.valid_until.map_or(until, |v| v.max(until)));
    }

    /// Allows no more writes, for `reason`.
    pub fn revoke(&self, reason: &str) {
        self.lock().revoked.get_or_insert_with(|| reason.to_owned());
    }

    /// Ok while writes are allowed.
    pub fn check(
        &self,
        op: &'static str,
        location: impl FnOnce() -> String,
    ) -> Result<(), StorageError> {
        let state = self.lock();
        let reason = match (&state.revoked, state.valid_until) {
            (Some(reason), _) => reason.clone(),
            (None, None) => "the lock was never taken".to_owned(),
            (None, Some(until)) if tokio::time::Instant::now() >= until => {
                "no renewal succeeded in time".to_owned()
            }
            (None, Some(_)) => return Ok(()),
        };
        Err(StorageError::Fenced {
            op,
            location: location(),
            reason,
        })
    }
}

/// Storage whose writes each check a [`Fence`] first; reads pass through.
#[derive(Debug)]
pub struct Fenced<S> {
    inner: std::sync::Arc<S>,
    fence: Fence,
}

impl<S: Storage> Fenced<S> {
    pub fn new(inner: std::sync::Arc<S>, fence: Fence) -> Fenced<S> {
        Fenced { inner, fence }
    }

    fn check(&self, op: &'static str, key: &str) -> Result<(), StorageError> {
        self.fence.check(op, || {
            format!("{}/{key}", self.inner.location().trim_end_matches('/'))
        })
    }
}

impl<S: Storage> Storage for Fenced<S> {
    fn location(&self) -> String {
        self.inner.location()
    }

    async fn preflight(&self) -> Result<(), StorageError> {
        self.inner.preflight().await
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, StorageError> {
        self.inner.get(key).await
    }

    async fn put(&self, key: &str, data: Bytes) -> Result<(), StorageError> {
        self.check("write", key)?;
        self.inner.put(key, data).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        self.inner.list(prefix).await
    }

    async fn holds_any(&self, prefix: &str) -> Result<bool, StorageError> {
        self.inner.holds_any(prefix).await
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.check("delete", key)?;
        self.inner.delete(key).await
    }

    async fn delete_all(&self, keys: Vec<String>) -> Result<(), StorageError> {
        // The fence is checked before every request, as for any write.
        let per_request = self.inner.deletes_per_request();
        if per_request <= 1 {
            return delete_each(self, keys).await;
        }
        for batch in keys.chunks(per_request) {
            self.check("delete", &batch[0])?;
            self.inner.delete_all(batch.to_vec()).await?;
        }
        Ok(())
    }

    fn deletes_per_request(&self) -> usize {
        self.inner.deletes_per_request()
    }

    async fn get_versioned(
        &self,
        key: &str,
        limit: u64,
    ) -> Result<Option<Versioned>, StorageError> {
        self.inner.get_versioned(key, limit).await
    }

    async fn put_if_absent(&self, key: &str, data: Bytes) -> Result<Conditional, StorageError> {
        self.check("write", key)?;
        self.inner.put_if_absent(key, data).await
    }

    async fn put_if_match(
        &self,
        key: &str,
        data: Bytes,
        version: &str,
    ) -> Result<Conditional, StorageError> {
        self.check("write", key)?;
        self.inner.put_if_match(key, data, version).await
    }

    async fn delete_if_match(&self, key: &str, version: &str) -> Result<Conditional, StorageError> {
        self.check("delete", key)?;
        self.inner.delete_if_match(key, version).await
    }
}

/// Local or S3 storage, chosen at run time.
#[derive(Debug)]
pub enum AnyStorage {
    Local(LocalStorage),
    S3(S3Storage),
}

macro_rules! delegate {
    ($self:ident, $backend:ident => $call:expr) => {
        match $self {
            AnyStorage::Local($backend) => $call,
            AnyStorage::S3($backend) => $call,
        }
    };
}

impl Storage for AnyStorage {
    fn location(&self) -> String {
        delegate!(self, s => s.location())
    }

    async fn preflight(&self) -> Result<(), StorageError> {
        delegate!(self, s => s.preflight().await)
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, StorageError> {
        delegate!(self, s => s.get(key).await)
    }

    async fn put(&self, key: &str, data: Bytes) -> Result<(), StorageError> {
        delegate!(self, s => s.put(key, data).await)
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        delegate!(self, s => s.list(prefix).await)
    }

    async fn holds_any(&self, prefix: &str) -> Result<bool, StorageError> {
        delegate!(self, s => s.holds_any(prefix).await)
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        delegate!(self, s => s.delete(key).await)
    }

    async fn delete_all(&self, keys: Vec<String>) -> Result<(), StorageError> {
        delegate!(self, s => s.delete_all(keys).await)
    }

    fn deletes_per_request(&self) -> usize {
        delegate!(self, s => s.deletes_per_request())
    }

    async fn get_versioned(
        &self,
        key: &str,
        limit: u64,
    ) -> Result<Option<Versioned>, StorageError> {
        delegate!(self, s => s.get_versioned(key, limit).await)
    }

    async fn put_if_absent(&self, key: &str, data: Bytes) -> Result<Conditional, StorageError> {
        delegate!(self, s => s.put_if_absent(key, data).await)
    }

    async fn put_if_match(
        &self,
        key: &str,
        data: Bytes,
        version: &str,
    ) -> Result<Conditional, StorageError> {
        delegate!(self, s => s.put_if_match(key, data, version).await)
    }

    async fn delete_if_match(&self, key: &str, version: &str) -> Result<Conditional, StorageError> {
        delegate!(self, s => s.delete_if_match(key, version).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Storage whose first delete revokes the fence: a lease lost while a
    /// run clears its staged parts.
    #[derive(Debug)]
    struct LosesTheLockOnDelete {
        fence: Fence,
        deletes: AtomicUsize,
    }

    impl Storage for LosesTheLockOnDelete {
        fn location(&self) -> String {
            "/test".into()
        }
        async fn preflight(&self) -> Result<(), StorageError> {
            unreachable!("only deletes are asked")
        }
        async fn get(&self, _: &str) -> Result<Option<Bytes>, StorageError> {
            unreachable!("only deletes are asked")
        }
        async fn put(&self, _: &str, _: Bytes) -> Result<(), StorageError> {
            unreachable!("only deletes are asked")
        }
        async fn list(&self, _: &str) -> Result<Vec<String>, StorageError> {
            unreachable!("only deletes are asked")
        }
        async fn delete(&self, _: &str) -> Result<(), StorageError> {
            self.deletes.fetch_add(1, Ordering::SeqCst);
            self.fence.revoke("another run took the lock over");
            Ok(())
        }
        async fn get_versioned(&self, _: &str, _: u64) -> Result<Option<Versioned>, StorageError> {
            unreachable!("only deletes are asked")
        }
        async fn put_if_absent(&self, _: &str, _: Bytes) -> Result<Conditional, StorageError> {
            unreachable!("only deletes are asked")
        }
        async fn put_if_match(
            &self,
            _: &str,
            _: Bytes,
            _: &str,
        ) -> Result<Conditional, StorageError> {
            unreachable!("only deletes are asked")
        }
        async fn delete_if_match(&self, _: &str, _: &str) -> Result<Conditional, StorageError> {
            unreachable!("only deletes are asked")
        }
    }

    #[tokio::test]
    async fn a_lock_lost_while_deleting_many_stops_the_next_delete() {
        let fence = Fence::new();
        fence.extend_to(tokio::time::Instant::now() + std::time::Duration::from_secs(3600));
        let inner = std::sync::Arc::new(LosesTheLockOnDelete {
            fence: fence.clone(),
            deletes: AtomicUsize::new(0),
        });
        let fenced = Fenced::new(inner.clone(), fence);
        let keys = (0..5).map(|i| format!("staged/{i}")).collect();
        let refused = fenced.delete_all(keys).await;
        assert!(
            matches!(refused, Err(StorageError::Fenced { .. })),
            "{refused:?}"
        );
        assert_eq!(
            inner.deletes.load(Ordering::SeqCst),
            1,
            "storage that deletes one object a request is fenced before each"
        );
    }
}
