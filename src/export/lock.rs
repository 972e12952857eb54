//! The output lock, `<output>/_lock.json`: one export at a time writes an
//! output. It is a lease: the holder renews it while it runs, and another run
//! takes it over only when it is provably stale (the lease expired, or its
//! holder on this same host is gone). Every step is a conditional write, so
//! two runs can never both believe they hold it.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::dataset::layout::LOCK_KEY;
use crate::shutdown::CancellationToken;
use crate::storage::{Conditional, Storage, StorageError};
use crate::time::Clock;

/// How long a lease lasts without renewal; renewed every third of it.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(60);

/// Who holds the lock, as written in the lock file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub host: String,
    pub pid: u32,
    pub run_id: String,
    pub started_at: String,
    /// Epoch milliseconds after which the lease is stale.
    pub lease_expires_ms: i64,
    pub lease_expires_at: String,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "another export holds the lock on this output: host {host}, pid {pid}, run {run_id}, started {started_at}, lease until {lease_expires_at}; \
         wait for it to finish (a lock left by a killed run is taken over once its lease expires)",
        host = .0.host, pid = .0.pid, run_id = .0.run_id, started_at = .0.started_at, lease_expires_at = .0.lease_expires_at
    )]
    Held(Box<Holder>),
    #[error("lost the output lock (another run took it over): {0}")]
    Lost(String),
    #[error("cannot use the output lock: {0}")]
    Storage(#[from] StorageError),
    #[error("cannot encode the output lock: {0}")]
    Encode(#[source] serde_json::Error),
}

/// A held lock. Call [`OutputLock::release`] when done; a lock that is not
/// released expires with its lease.
#[derive(Debug)]
pub struct OutputLock<S> {
    storage: Arc<S>,
    holder: Mutex<(Holder, String)>,
    lease: Duration,
    clock: Clock,
}

fn this_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown-host".into())
}

/// Whether a process on this host is certainly gone. Only Linux's /proc can
/// say so; elsewhere a holder is presumed alive until its lease expires.
fn process_is_gone(pid: u32) -> bool {
    Path::new("/proc/self").exists() && !Path::new(&format!("/proc/{pid}")).exists()
}

fn holder(run_id: &str, started_at: &str, lease: Duration, clock: Clock) -> Holder {
    let expires = clock.now() + lease;
    Holder {
        host: this_host(),
        pid: std::process::id(),
        run_id: run_id.to_owned(),
        started_at: started_at.to_owned(),
        lease_expires_ms: expires.timestamp_millis(),
        lease_expires_at: expires.to_rfc3339(),
    }
}

fn encode(holder: &Holder) -> Result<Bytes, LockError> {
    serde_json::to_vec_pretty(holder)
        .map(Bytes::from)
        .map_err(LockError::Encode)
}

impl Holder {
    /// Provably stale: the lease ran out, or the holder ran on this host and
    /// its process no longer exists.
    fn is_stale(&self, now_ms: i64) -> bool {
        self.lease_expires_ms < now_ms || (self.host == this_host() && process_is_gone(self.pid))
    }
}

/// Takes the lock for `run_id`, or says who holds it.
pub async fn acquire<S: Storage>(
    storage: Arc<S>,
    run_id: &str,
    lease: Duration,
    clock: Clock,
) -> Result<OutputLock<S>, LockError> {
    let started_at = clock.now().to_rfc3339();
    let ours = holder(run_id, &started_at, lease, clock);
    // Two rounds: a stale lock found in the first is taken over in the second.
    for _ in 0..2 {
        match storage.put_if_absent(LOCK_KEY, encode(&ours)?).await? {
            Conditional::Done { version } => {
                return Ok(OutputLock {
                    storage,
                    holder: Mutex::new((ours, version)),
                    lease,
                    clock,
                })
            }
            Conditional::Conflict => {}
        }
        let Some(current) = storage.get_versioned(LOCK_KEY).await? else {
            continue; // released meanwhile: create it again
        };
        let theirs: Option<Holder> = serde_json::from_slice(&current.data).ok();
        match theirs {
            Some(theirs) if !theirs.is_stale(clock.now_ms()) => {
                return Err(LockError::Held(Box::new(theirs)));
            }
            stale => {
                if let Some(stale) = &stale {
                    tracing::warn!(host = %stale.host, pid = stale.pid, run_id = %stale.run_id, "taking over a stale output lock");
                } else {
                    tracing::warn!("taking over an unreadable output lock");
                }
                if let Conditional::Done { version } = storage
                    .put_if_match(LOCK_KEY, encode(&ours)?, &current.version)
                    .await?
                {
                    return Ok(OutputLock {
                        storage,
                        holder: Mutex::new((ours, version)),
                        lease,
                        clock,
                    });
                }
            }
        }
    }
    match storage.get_versioned(LOCK_KEY).await? {
        Some(current) => match serde_json::from_slice::<Holder>(&current.data) {
            Ok(theirs) => Err(LockError::Held(Box::new(theirs))),
            Err(e) => Err(LockError::Lost(format!("the lock file is unreadable: {e}"))),
        },
        None => Err(LockError::Lost(
            "the lock kept changing while it was taken".into(),
        )),
    }
}

impl<S: Storage> OutputLock<S> {
    /// Extends the lease; fails if another run took the lock over.
    pub async fn renew(&self) -> Result<(), LockError> {
        let mut guard = self.holder.lock().await;
        let (old, version) = &*guard;
        let renewed = holder(&old.run_id, &old.started_at, self.lease, self.clock);
        match self
            .storage
            .put_if_match(LOCK_KEY, encode(&renewed)?, version)
            .await?
        {
            Conditional::Done { version } => {
                *guard = (renewed, version);
                Ok(())
            }
            Conditional::Conflict => Err(LockError::Lost(
                "the lock file changed under this run".into(),
            )),
        }
    }

    /// Renews the lease until `stop` is cancelled. If the lock is lost, it
    /// cancels `on_loss` so the run stops rather than write beside another
    /// run, and returns why.
    pub async fn keep_alive(
        self: Arc<Self>,
        stop: CancellationToken,
        on_loss: CancellationToken,
    ) -> Result<(), LockError> {
        let period = self.lease / 3;
        loop {
            tokio::select! {
                () = tokio::time::sleep(period) => {}
                () = stop.cancelled() => return Ok(()),
            }
            if let Err(error) = self.renew().await {
                tracing::error!(%error, "stopping: the output lock could not be renewed");
                on_loss.cancel();
                return Err(error);
            }
        }
    }

    /// Deletes the lock if this run still holds it.
    pub async fn release(&self) -> Result<(), LockError> {
        let guard = self.holder.lock().await;
        match self.storage.delete_if_match(LOCK_KEY, &guard.1).await? {
            Conditional::Done { .. } => Ok(()),
            Conditional::Conflict => Err(LockError::Lost(
                "the lock was taken over before release".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::LocalStorage;

    #[tokio::test]
    async fn a_second_run_is_refused_and_named_while_the_first_holds_the_lock() {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = Arc::new(LocalStorage::new(dir.path()));
        let first = acquire(storage.clone(), "run-1", DEFAULT_LEASE, Clock::system())
            .await
            .expect("free lock");
        let err = acquire(storage.clone(), "run-2", DEFAULT_LEASE, Clock::system())
            .await
            .expect_err("held");
        let text = err.to_string();
        assert!(
            text.contains("run-1") && text.contains(&std::process::id().to_string()),
            "{text}"
        );
        first.renew().await.expect("renew");
        first.release().await.expect("release");
        acquire(storage, "run-3", DEFAULT_LEASE, Clock::system())
            .await
            .expect("free again");
    }

    #[tokio::test]
    async fn an_expired_lease_is_taken_over_and_the_old_holder_loses_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = Arc::new(LocalStorage::new(dir.path()));
        let old = acquire(
            storage.clone(),
            "old",
            Duration::from_millis(0),
            Clock::system(),
        )
        .await
        .expect("free");
        tokio::time::sleep(Duration::from_millis(5)).await; // let the zero-length lease lapse
        let new = acquire(storage.clone(), "new", DEFAULT_LEASE, Clock::system())
            .await
            .expect("stale lock taken over");
        assert!(matches!(old.renew().await, Err(LockError::Lost(_))));
        assert!(matches!(old.release().await, Err(LockError::Lost(_))));
        new.release().await.expect("release");
    }

    #[tokio::test]
    async fn a_lock_of_a_dead_process_on_this_host_is_stale() {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = Arc::new(LocalStorage::new(dir.path()));
        let mut dead = holder("dead", "then", DEFAULT_LEASE, Clock::system());
        dead.pid = u32::MAX - 1; // no such process
        storage
            .put(LOCK_KEY, encode(&dead).expect("encode"))
            .await
            .expect("write");
        acquire(storage, "alive", DEFAULT_LEASE, Clock::system())
            .await
            .expect("taken over");
    }
}
