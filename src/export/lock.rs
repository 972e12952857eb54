//! The lock of one (account, region) of an output,
//! `<output>/_locks/<account>_<region>.json`: one export at a time writes a
//! pair's partitions, checkpoint and chain (other pairs and other shards never
//! wait for it). It is a lease the holder renews while it runs, and it fences
//! the holder's own writes:
//!
//! - **Fencing.** Every write of the run goes through [`Fenced`] storage,
//!   whose [`Fence`] allows writes only until the last renewal the service
//!   accepted (counted from when that renewal was sent) plus the lease minus
//!   a safety margin, on this process's monotonic clock. A renewal that
//!   stalls, or a process paused past its lease, writes nothing more; the
//!   run fails (exit 5) instead of writing beside the run that took over.
//! - **Renewal.** Every third of the lease, each attempt bounded to a sixth
//!   of it, retried until the fence runs out.
//! - **Takeover** is decided on the taker's own monotonic clock, never by
//!   comparing two machines' clocks: a lock whose version stays unchanged
//!   for a full lease (the holder's, as its file says) is stale. A live
//!   holder renews within a third of that, and the taker then says who holds
//!   it. Only a holder on this host, in this PID namespace (containers with
//!   host networking share a host name, not PIDs), whose process is gone is
//!   stale at once. An unreadable lock file is watched the same way.
//! - Every step is a conditional write; a conditional write whose answer was
//!   lost and that comes back as a conflict is read back, and counts as done
//!   when the lock holds what this run wrote.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::shutdown::CancellationToken;
use crate::storage::{Conditional, Fence, Fenced, Storage, StorageError};
use crate::text::printable;
use crate::time::Clock;

/// How long a lease lasts without renewal; renewed every third of it.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(60);
/// The longest lease a lock file may name: a longer one is not one this
/// tool wrote, and waiting it out would stop a schedule.
pub const MAX_LEASE: Duration = Duration::from_secs(3600);
/// The largest lock file read.
const MAX_LOCK_BYTES: u64 = 64 * 1024;

/// The part of a lease a holder gives up, for clocks that run at slightly
/// different rates and a write in flight when its fence runs out.
fn safety_margin(lease: Duration) -> Duration {
    lease / 6
}

/// Who holds the lock, as written in the lock file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub host: String,
    pub pid: u32,
    /// The holder's PID namespace (`pid:[inode]`), when it could read it.
    #[serde(default)]
    pub pid_namespace: Option<String>,
    pub run_id: String,
    pub started_at: String,
    /// The lease, in milliseconds: a takeover waits this long, on its own
    /// clock, for the lock to change.
    #[serde(default)]
    pub lease_ms: u64,
    /// When the lease runs out by the holder's clock (for people to read:
    /// no decision compares it with another machine's clock).
    pub lease_expires_at: String,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "another export holds the lock on this output: host {host}, pid {pid}, run {run_id}, started {started_at}, lease until {lease_expires_at} (its clock); \
         wait for it to finish (a lock left by a killed run is taken over once it has not changed for a whole lease)",
        host = printable(&.0.host), pid = .0.pid, run_id = printable(&.0.run_id), started_at = printable(&.0.started_at), lease_expires_at = printable(&.0.lease_expires_at)
    )]
    Held(Box<Holder>),
    #[error("the output lock {0} is not one ssm-audit wrote ({1}) and it keeps changing; another tool is writing this output")]
    Foreign(String, String),
    #[error("lost the output lock: {0}")]
    Lost(String),
    #[error("cannot use the output lock: {0}")]
    Storage(#[from] StorageError),
    #[error("cannot encode the output lock: {0}")]
    Encode(#[source] serde_json::Error),
}

/// The state of a held lock.
#[derive(Debug)]
struct Held {
    holder: Holder,
    version: String,
    /// A renewal whose answer never came (it timed out or failed in
    /// transit): what it wrote and when it was sent. If it did land, the
    /// next renewal conflicts, and the lock then holds these bytes.
    unanswered: Option<(Bytes, Instant)>,
}

/// A held lock. Call [`OutputLock::release`] when done; a lock that is not
/// released is taken over once it has not changed for a whole lease.
#[derive(Debug)]
pub struct OutputLock<S> {
    storage: Arc<S>,
    /// One lock per (account, region): shards and other pairs never wait.
    key: String,
    held: Mutex<Held>,
    lease: Duration,
    clock: Clock,
    fence: Fence,
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

/// This process's PID namespace, as Linux names it; None elsewhere.
fn pid_namespace() -> Option<String> {
    std::fs::read_link("/proc/self/ns/pid")
        .ok()
        .map(|target| target.display().to_string())
}

/// Whether a process of this PID namespace is certainly gone. Only Linux's
/// /proc can say so; elsewhere a holder is presumed alive.
fn process_is_gone(pid: u32) -> bool {
    Path::new("/proc/self").exists() && !Path::new(&format!("/proc/{pid}")).exists()
}

fn holder(run_id: &str, started_at: &str, lease: Duration, clock: Clock) -> Holder {
    let expires = clock.now() + lease;
    Holder {
        host: this_host(),
        pid: std::process::id(),
        pid_namespace: pid_namespace(),
        run_id: run_id.to_owned(),
        started_at: started_at.to_owned(),
        lease_ms: u64::try_from(lease.as_millis()).unwrap_or(u64::MAX),
        lease_expires_at: expires.to_rfc3339(),
    }
}

fn encode(holder: &Holder) -> Result<Bytes, LockError> {
    serde_json::to_vec_pretty(holder)
        .map(Bytes::from)
        .map_err(LockError::Encode)
}

/// The lock file's holder, or why it is not one.
fn decode(data: &[u8]) -> Result<Holder, String> {
    if data.len() as u64 > MAX_LOCK_BYTES {
        return Err(format!("{} bytes, more than a lock file holds", data.len()));
    }
    serde_json::from_slice(data).map_err(|e| e.to_string())
}

impl Holder {
    /// Provably gone: it ran on this host, in this PID namespace, and its
    /// process no longer exists.
    fn is_gone(&self) -> bool {
        let same_namespace = matches!(
            (&self.pid_namespace, pid_namespace()),
            (Some(theirs), Some(ours)) if *theirs == ours
        );
        self.host == this_host() && same_namespace && process_is_gone(self.pid)
    }

    /// How long its lock must stay unchanged to be stale.
    fn lease(&self) -> Duration {
        match self.lease_ms {
            0 => DEFAULT_LEASE,
            ms => Duration::from_millis(ms),
        }
    }
}

/// What watching a lock for a lease showed.
enum Watched {
    /// It stayed the same version for the whole lease.
    Unchanged,
    /// It changed (a live holder renewed it) or went away.
    Changed(Option<crate::storage::Versioned>),
}

/// Reads the lock every so often until it changes or `lease` has passed on
/// this process's clock since it was first seen.
async fn watch<S: Storage>(
    storage: &S,
    key: &str,
    version: &str,
    lease: Duration,
) -> Result<Watched, LockError> {
    let first_seen = Instant::now();
    let step = (lease / 12).clamp(Duration::from_millis(20), Duration::from_secs(5));
    while first_seen.elapsed() < lease {
        tokio::time::sleep(step.min(lease.saturating_sub(first_seen.elapsed()))).await;
        match storage.get_versioned(key, MAX_LOCK_BYTES).await? {
            Some(current) if current.version == version => {}
            other => return Ok(Watched::Changed(other)),
        }
    }
    Ok(Watched::Unchanged)
}

/// Takes the lock for `run_id`, or says who holds it. A lock that is not
/// provably stale is watched for a whole lease first (see the module doc).
pub async fn acquire<S: Storage>(
    storage: Arc<S>,
    key: &str,
    run_id: &str,
    lease: Duration,
    clock: Clock,
) -> Result<OutputLock<S>, LockError> {
    let started_at = clock.now().to_rfc3339();
    let ours = holder(run_id, &started_at, lease, clock);
    let mine = encode(&ours)?;
    let fence = Fence::new();
    let granted = |version: String, sent: Instant| {
        fence.extend_to(sent + lease.saturating_sub(safety_margin(lease)));
        OutputLock {
            storage: storage.clone(),
            key: key.to_owned(),
            held: Mutex::new(Held {
                holder: ours.clone(),
                version,
                unanswered: None,
            }),
            lease,
            clock,
            fence: fence.clone(),
        }
    };
    // A few rounds: a lock released or taken over meanwhile is tried again.
    for _ in 0..4 {
        let sent = Instant::now();
        match storage.put_if_absent(key, mine.clone()).await? {
            Conditional::Done { version } => return Ok(granted(version, sent)),
            Conditional::Conflict => {}
        }
        let Some(current) = storage.get_versioned(key, MAX_LOCK_BYTES).await? else {
            continue; // released meanwhile: create it again
        };
        let theirs = decode(&current.data);
        let stale_now = theirs.as_ref().is_ok_and(Holder::is_gone);
        if !stale_now {
            let their_lease = match &theirs {
                Ok(holder) if holder.lease() > MAX_LEASE => {
                    return Err(LockError::Held(Box::new(holder.clone())))
                }
                Ok(holder) => holder.lease(),
                // Not ours to read: watch it as long as our own lease.
                Err(_) => lease,
            };
            tracing::info!(
                wait = ?their_lease,
                "the output lock is held; watching it for one lease before taking it over"
            );
            match watch(storage.as_ref(), key, &current.version, their_lease).await? {
                Watched::Unchanged => {}
                Watched::Changed(None) => continue,
                Watched::Changed(Some(now)) => {
                    return Err(match decode(&now.data) {
                        Ok(holder) => LockError::Held(Box::new(holder)),
                        Err(reason) => LockError::Foreign(key.to_owned(), reason),
                    })
                }
            }
        }
        match &theirs {
            Ok(stale) => {
                tracing::warn!(host = %printable(&stale.host), pid = stale.pid, run_id = %printable(&stale.run_id), "taking over a stale output lock")
            }
            Err(reason) => {
                tracing::warn!(reason = %printable(reason), "taking over an unreadable output lock that did not change for a whole lease")
            }
        }
        let sent = Instant::now();
        if let Conditional::Done { version } = storage
            .put_if_match(key, mine.clone(), &current.version)
            .await?
        {
            return Ok(granted(version, sent));
        }
    }
    Err(LockError::Lost(
        "the lock kept changing while it was being taken".into(),
    ))
}

impl<S: Storage> OutputLock<S> {
    /// The fence this lock keeps: storage fenced by it writes only while the
    /// lease surely holds.
    pub fn fence(&self) -> Fence {
        self.fence.clone()
    }

    /// `inner` storage whose writes need this lock.
    pub fn fenced<T: Storage>(&self, inner: Arc<T>) -> Fenced<T> {
        Fenced::new(inner, self.fence.clone())
    }

    /// Extends the lease, bounded to a sixth of it; fails with
    /// [`LockError::Lost`] if another run took the lock over, with other
    /// errors when the answer did not come (worth another try).
    pub async fn renew(&self) -> Result<(), LockError> {
        let mut held = self.held.lock().await;
        let renewed = holder(
            &held.holder.run_id,
            &held.holder.started_at,
            self.lease,
            self.clock,
        );
        let bytes = encode(&renewed)?;
        let sent = Instant::now();
        let attempt = tokio::time::timeout(
            self.lease / 6,
            self.storage
                .put_if_match(&self.key, bytes.clone(), &held.version),
        )
        .await;
        let landed_at = match attempt {
            Ok(Ok(Conditional::Done { version })) => {
                held.version = version;
                sent
            }
            Ok(Ok(Conditional::Conflict)) => {
                // Ours, if an earlier renewal landed without an answer.
                let current = self
                    .storage
                    .get_versioned(&self.key, MAX_LOCK_BYTES)
                    .await?;
                let earlier = held.unanswered.take();
                match (current, earlier) {
                    (Some(current), Some((data, earlier_sent))) if current.data == data => {
                        held.version = current.version;
                        held.holder = decode(&data).map_err(LockError::Lost)?;
                        self.fence.extend_to(
                            earlier_sent + self.lease.saturating_sub(safety_margin(self.lease)),
                        );
                        return Ok(());
                    }
                    _ => {
                        self.fence.revoke("another run took the lock over");
                        return Err(LockError::Lost(
                            "the lock file changed under this run (another run took it over)"
                                .into(),
                        ));
                    }
                }
            }
            Ok(Err(error)) => {
                held.unanswered = Some((bytes, sent));
                return Err(error.into());
            }
            Err(_) => {
                held.unanswered = Some((bytes, sent));
                return Err(LockError::Storage(StorageError::Remote {
                    op: "renew",
                    location: self.key.clone(),
                    message: format!("no answer within {:?}", self.lease / 6),
                }));
            }
        };
        held.holder = renewed;
        held.unanswered = None;
        self.fence
            .extend_to(landed_at + self.lease.saturating_sub(safety_margin(self.lease)));
        Ok(())
    }

    /// Renews the lease until `stop` is cancelled, retrying a failed renewal
    /// until the fence runs out. If the lock is lost, it revokes the fence
    /// and cancels `on_loss` so the run stops, and returns why.
    pub async fn keep_alive(
        self: Arc<Self>,
        stop: CancellationToken,
        on_loss: CancellationToken,
    ) -> Result<(), LockError> {
        let period = self.lease / 3;
        let retry = (self.lease / 30).max(Duration::from_millis(10));
        loop {
            tokio::select! {
                () = tokio::time::sleep(period) => {}
                () = stop.cancelled() => return Ok(()),
            }
            loop {
                let error = match self.renew().await {
                    Ok(()) => break,
                    Err(error @ LockError::Lost(_)) => error,
                    Err(error) if self.fence.check("write", String::new).is_err() => {
                        LockError::Lost(format!("no renewal succeeded within the lease: {error}"))
                    }
                    Err(error) => {
                        tracing::warn!(%error, "renewing the output lock failed; trying again");
                        tokio::select! {
                            () = tokio::time::sleep(retry) => continue,
                            () = stop.cancelled() => return Ok(()),
                        }
                    }
                };
                self.fence.revoke(&error.to_string());
                tracing::error!(%error, "stopping: the output lock could not be renewed");
                on_loss.cancel();
                return Err(error);
            }
        }
    }

    /// Deletes the lock if this run still holds it; writes through its
    /// fence stop first.
    pub async fn release(&self) -> Result<(), LockError> {
        self.fence.revoke("the lock was released");
        let held = self.held.lock().await;
        match self.storage.delete_if_match(&self.key, &held.version).await? {
            Conditional::Done { .. } => Ok(()),
            Conditional::Conflict => match self.storage.get_versioned(&self.key, MAX_LOCK_BYTES).await? {
                // The delete landed and only its answer was lost.
                None => Ok(()),
                Some(_) => Err(LockError::Lost(
                    "the lock was taken over before release: another run may have written this output too; run `ssm-audit verify`".into(),
                )),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEST_KEY: &str = "_locks/123456789012_eu-west-1.json";
    use crate::storage::{LocalStorage, Versioned};
    use std::sync::atomic::{AtomicBool, Ordering};

    const SHORT: Duration = Duration::from_millis(300);

    fn local() -> (tempfile::TempDir, Arc<LocalStorage>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = Arc::new(LocalStorage::new(dir.path()));
        (dir, storage)
    }

    /// Local storage whose lock writes can stall forever, or land and lose
    /// their answer, as a network does.
    #[derive(Debug, Default)]
    struct Faulty {
        inner: Option<LocalStorage>,
        stall: AtomicBool,
        lose_answer: AtomicBool,
    }

    impl Faulty {
        fn inner(&self) -> &LocalStorage {
            self.inner.as_ref().expect("inner")
        }
    }

    impl Storage for Faulty {
        fn location(&self) -> String {
            self.inner().location()
        }
        async fn preflight(&self) -> Result<(), StorageError> {
            self.inner().preflight().await
        }
        async fn get(&self, key: &str) -> Result<Option<Bytes>, StorageError> {
            self.inner().get(key).await
        }
        async fn put(&self, key: &str, data: Bytes) -> Result<(), StorageError> {
            self.inner().put(key, data).await
        }
        async fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
            self.inner().list(prefix).await
        }
        async fn delete(&self, key: &str) -> Result<(), StorageError> {
            self.inner().delete(key).await
        }
        async fn get_versioned(
            &self,
            key: &str,
            limit: u64,
        ) -> Result<Option<Versioned>, StorageError> {
            self.inner().get_versioned(key, limit).await
        }
        async fn put_if_absent(&self, key: &str, data: Bytes) -> Result<Conditional, StorageError> {
            self.inner().put_if_absent(key, data).await
        }
        async fn put_if_match(
            &self,
            key: &str,
            data: Bytes,
            version: &str,
        ) -> Result<Conditional, StorageError> {
            if self.stall.load(Ordering::SeqCst) {
                std::future::pending::<()>().await;
            }
            let result = self.inner().put_if_match(key, data, version).await;
            if self.lose_answer.swap(false, Ordering::SeqCst) {
                return Err(StorageError::Remote {
                    op: "write",
                    location: key.to_owned(),
                    message: "connection reset".into(),
                });
            }
            result
        }
        async fn delete_if_match(
            &self,
            key: &str,
            version: &str,
        ) -> Result<Conditional, StorageError> {
            self.inner().delete_if_match(key, version).await
        }
    }

    #[tokio::test]
    async fn a_second_run_is_refused_and_named_while_the_first_renews() {
        let (_dir, storage) = local();
        let first = Arc::new(
            acquire(storage.clone(), TEST_KEY, "run-1", SHORT, Clock::system())
                .await
                .expect("free lock"),
        );
        let stop = CancellationToken::new();
        let renewer = tokio::spawn(
            first
                .clone()
                .keep_alive(stop.clone(), CancellationToken::new()),
        );
        let err = acquire(storage.clone(), TEST_KEY, "run-2", SHORT, Clock::system())
            .await
            .expect_err("held");
        let text = err.to_string();
        assert!(
            text.contains("run-1") && text.contains(&std::process::id().to_string()),
            "{text}"
        );
        stop.cancel();
        renewer.await.expect("join").expect("renewed throughout");
        first.release().await.expect("release");
        acquire(storage, TEST_KEY, "run-3", SHORT, Clock::system())
            .await
            .expect("free again");
    }

    #[tokio::test]
    async fn a_lock_unchanged_for_a_whole_lease_is_taken_over_and_fences_the_old_holder() {
        let (_dir, storage) = local();
        let old = acquire(storage.clone(), TEST_KEY, "old", SHORT, Clock::system())
            .await
            .expect("free");
        let fenced = old.fenced(storage.clone());
        fenced
            .put("a", Bytes::from_static(b"1"))
            .await
            .expect("inside the lease");
        // The old holder never renews: the taker waits one lease on its own
        // clock, whatever the old holder's clock said.
        let waited = Instant::now();
        let new = acquire(storage.clone(), TEST_KEY, "new", SHORT, Clock::system())
            .await
            .expect("stale lock taken over");
        assert!(waited.elapsed() >= SHORT);
        assert!(matches!(old.renew().await, Err(LockError::Lost(_))));
        let refused = fenced.put("b", Bytes::from_static(b"2")).await;
        assert!(
            matches!(refused, Err(StorageError::Fenced { .. })),
            "{refused:?}"
        );
        assert!(matches!(old.release().await, Err(LockError::Lost(_))));
        new.release().await.expect("release");
    }

    #[tokio::test]
    async fn a_dead_process_is_stale_at_once_only_in_this_pid_namespace() {
        let (_dir, storage) = local();
        let mut dead = holder("dead", "then", DEFAULT_LEASE, Clock::system());
        dead.pid = u32::MAX - 1; // no such process
        storage
            .put(TEST_KEY, encode(&dead).expect("encode"))
            .await
            .expect("write");
        tokio::time::timeout(
            Duration::from_secs(10),
            acquire(
                storage.clone(),
                TEST_KEY,
                "alive",
                DEFAULT_LEASE,
                Clock::system(),
            ),
        )
        .await
        .expect("no wait for a lease")
        .expect("taken over")
        .release()
        .await
        .expect("release");
        // The same PID in another namespace (another container) says
        // nothing: the lock is watched for its whole lease first.
        dead.pid_namespace = Some("pid:[1]".into());
        dead.lease_ms = SHORT.as_millis() as u64;
        storage
            .put(TEST_KEY, encode(&dead).expect("encode"))
            .await
            .expect("write");
        let waited = Instant::now();
        acquire(storage, TEST_KEY, "alive", DEFAULT_LEASE, Clock::system())
            .await
            .expect("taken over after its lease");
        assert!(waited.elapsed() >= SHORT);
    }

    #[tokio::test]
    async fn a_garbage_lock_file_is_watched_for_a_lease_not_taken_at_once() {
        let (_dir, storage) = local();
        storage
            .put(TEST_KEY, Bytes::from_static(b"\x00not json"))
            .await
            .expect("write");
        let waited = Instant::now();
        acquire(storage.clone(), TEST_KEY, "run", SHORT, Clock::system())
            .await
            .expect("taken over");
        assert!(waited.elapsed() >= SHORT);
    }

    #[tokio::test]
    async fn a_renewal_that_stalls_stops_the_run_and_its_writes_within_the_lease() {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = Arc::new(Faulty {
            inner: Some(LocalStorage::new(dir.path())),
            ..Faulty::default()
        });
        let lock = Arc::new(
            acquire(storage.clone(), TEST_KEY, "run", SHORT, Clock::system())
                .await
                .expect("free"),
        );
        let fenced = lock.fenced(storage.clone());
        storage.stall.store(true, Ordering::SeqCst);
        let on_loss = CancellationToken::new();
        let result = tokio::time::timeout(
            Duration::from_secs(10),
            lock.clone()
                .keep_alive(CancellationToken::new(), on_loss.clone()),
        )
        .await
        .expect("renewal attempts are bounded");
        assert!(matches!(result, Err(LockError::Lost(_))), "{result:?}");
        assert!(on_loss.is_cancelled());
        let refused = fenced.put("late", Bytes::from_static(b"x")).await;
        assert!(
            matches!(refused, Err(StorageError::Fenced { .. })),
            "{refused:?}"
        );
        assert_eq!(storage.get("late").await.expect("read"), None);
    }

    #[tokio::test]
    async fn a_renewal_that_landed_without_an_answer_is_recognised() {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = Arc::new(Faulty {
            inner: Some(LocalStorage::new(dir.path())),
            ..Faulty::default()
        });
        let lock = acquire(storage.clone(), TEST_KEY, "run", SHORT, Clock::system())
            .await
            .expect("free");
        storage.lose_answer.store(true, Ordering::SeqCst);
        assert!(matches!(lock.renew().await, Err(LockError::Storage(_))));
        // The write landed: the next renewal conflicts, reads back what the
        // lost one wrote, and carries on.
        lock.renew().await.expect("our own write recognised");
        lock.renew().await.expect("and renewing goes on");
        lock.release().await.expect("release");
    }
}
