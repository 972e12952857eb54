//! Publishing: turns the staged winners into the data set's partitions,
//! `sessions/dt=YYYY-MM-DD/<account>_<region>.parquet`, a few days at a time.
//!
//! A partition that exists is merged, never overwritten: its rows stay, the
//! stronger observation of a session wins, `first_seen_at` keeps its earliest
//! value. Only partitions that received sessions are touched, so partitions
//! older than the crawl window (sessions the service has forgotten) are never
//! rewritten. Each file is published atomically through the storage seam.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use chrono::NaiveDate;

use crate::dataset::layout::{self, PartitionKey};
use crate::dataset::manifest::{PendingPartition, WrittenFile};
use crate::dataset::record::{merge, Rank, SessionRecord};
use crate::dataset::schema::{
    self, MergeColumns, Packing, ParquetSink, ParquetSource, SchemaError,
};
use crate::dataset::sha256_hex;
use crate::export::dedupe::{DedupeSet, Winner, Winners};
use crate::export::stage::Staged;
use crate::storage::{Storage, StorageError};
use crate::text::printable;
use arrow_array::RecordBatch;
use futures_util::future::BoxFuture;
use futures_util::stream::{self, FuturesOrdered, StreamExt};

/// A partition that could not be merged or written.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("cannot publish partition: {0}")]
    Storage(#[from] StorageError),
    #[error("{key} is not readable as an ssm-audit partition ({source}); move it aside and rerun")]
    Existing { key: String, source: SchemaError },
    #[error("staged part {key} is missing or unreadable ({reason}); rerun with --restart to crawl again")]
    Part { key: String, reason: String },
    #[error("cannot encode partition {key}: {source}")]
    Encode { key: String, source: SchemaError },
    #[error("{key} is not sorted by start_date and session_id")]
    Unsorted { key: String },
    #[error("publishing stopped before every partition was written ({0}); rerun to publish them")]
    Interrupted(String),
    #[error("session {session_id} has a StartDate ({start_date} ms) outside the calendar, so it has no partition")]
    OutsideCalendar { session_id: String, start_date: i64 },
}

/// Merges every staged winner into its partition and publishes the
/// partitions in date order. Returns the files written.
///
/// A partition is written as a stream: its winners, sorted by
/// (`start_date`, `session_id`), are merged with the existing file's rows,
/// which are in that order already, through a small cache of decoded parts.
/// Memory holds a batch of rows and the encoded file, not the partition's
/// rows, however many sessions one day has.
///
/// A session is its `session_id`: when the service reports a start date
/// that differs from the one an existing partition holds (a correction, a
/// change of precision), the session is moved, not doubled. The existing
/// partitions whose dates lie in `scan` (the crawl window's, and a day
/// either side) are first read for their ids and start dates; a session
/// found there under another start date is merged with its old row, written
/// where the merged row's start date says, and removed from where it was.
/// Partitions that gain or lose such a session are merged in memory.
///
/// A partition whose existing file cannot be read (a newer version's, one
/// another tool rewrote) stops nothing else: its sessions are written to
/// `pending` (parts below the `parts_storage` prefix given, read back by the
/// next run) and it is listed in the outcome; every other partition is
/// published.
pub async fn publish<S: Storage + 'static, P: Storage + 'static>(
    storage: Arc<S>,
    parts_storage: Arc<P>,
    staged: Staged,
    account_id: &str,
    region: &str,
    scan: std::ops::RangeInclusive<NaiveDate>,
    pending: &Pending,
) -> Result<Published, PublishError> {
    let Staged {
        parts: part_keys,
        winners: dedupe,
        ..
    } = staged;
    if dedupe.is_empty() {
        // Nothing to write, and no session that could have moved: most
        // pairs of an organization, whose scan would be 32 requests to find
        // out.
        return Ok(Published::default());
    }
    let (moves, scanned) = {
        let mut parts = PartCache::new(parts_storage.as_ref(), &part_keys);
        let (moves, scanned) = find_moves(
            storage.as_ref(),
            &dedupe,
            &mut parts,
            account_id,
            region,
            scan,
        )
        .await?;
        (Arc::new(moves), Arc::new(scanned))
    };
    // Only the moves look sessions up by id: the days walk the winners by
    // index, so the id table (a tenth of the dedupe set) is freed before
    // they start, where memory peaks.
    let winners = Arc::new(dedupe.into_winners());
    let part_keys: Arc<[String]> = part_keys.into();
    // Built here rather than kept during the crawl, so the crawl holds one
    // entry per session only; 4 bytes per session.
    let mut by_date: BTreeMap<NaiveDate, Vec<u32>> = BTreeMap::new();
    for (index, (id, winner)) in winners.iter().enumerate() {
        let date = layout::partition_date(winner.start_date).ok_or_else(|| {
            PublishError::OutsideCalendar {
                session_id: id.to_string(),
                start_date: winner.start_date,
            }
        })?;
        by_date.entry(date).or_default().push(index as u32);
    }
    let mut dates: std::collections::BTreeSet<NaiveDate> = by_date.keys().copied().collect();
    dates.extend(moves.days.iter().copied());
    // Days are independent, so they are merged and encoded on every core
    // the runtime has, and one day's waits on storage (its existing file,
    // its parts, the durable write) overlap another's work. Each has its
    // own cache of parts; a part straddling midnight is decoded twice.
    let mut days = dates
        .into_iter()
        .map(|date| {
            let mut indexes = by_date.remove(&date).unwrap_or_default();
            let order = |index: &u32| {
                let index = *index as usize;
                layout::row_order(winners.winner(index).start_date, winners.id(index))
            };
            indexes.sort_unstable_by(|a, b| order(a).cmp(&order(b)));
            let day = Day {
                storage: storage.clone(),
                parts_storage: parts_storage.clone(),
                winners: winners.clone(),
                part_keys: part_keys.clone(),
                moves: moves.clone(),
                scanned: scanned.clone(),
                pending: pending.clone(),
                date,
                key: PartitionKey {
                    date,
                    account_id: account_id.to_owned(),
                    region: region.to_owned(),
                }
                .key(),
            };
            let rows = indexes.len();
            (rows, async move { (rows, day.publish(indexes).await) })
        })
        .collect::<Vec<_>>();
    // The busiest day first: it takes longest, and on a night whose hot day
    // merges with yesterday's file of it, it is what the run waits for.
    days.sort_by_key(|(rows, _)| std::cmp::Reverse(*rows));
    let mut days = days.into_iter().peekable();
    // Dropping the set (on an error) aborts the days still running.
    let mut running = tokio::task::JoinSet::new();
    let mut in_flight = DaysInFlight::default();
    let mut published = Published::default();
    loop {
        while let Some((rows, day)) = days.next_if(|(rows, _)| in_flight.starts_now(*rows)) {
            in_flight.start(rows);
            running.spawn(day);
        }
        let Some(joined) = running.join_next().await else {
            break;
        };
        let (rows, outcome) = match joined {
            Ok(joined) => joined,
            Err(error) => match error.try_into_panic() {
                Ok(panic) => std::panic::resume_unwind(panic),
                Err(error) => return Err(PublishError::Interrupted(error.to_string())),
            },
        };
        in_flight.end(rows);
        match outcome? {
            DayOutcome::Written(file) => published.files.push(file),
            DayOutcome::Pending(partition) => published.pending.push(partition),
        }
    }
    published.files.sort_by(|a, b| a.path.cmp(&b.path));
    published
        .pending
        .sort_by(|a, b| a.partition.cmp(&b.partition));
    Ok(published)
}

/// Partitions merged and written at once, at most.
const PARTITIONS_AT_ONCE: usize = 4;
/// Fresh rows of the partitions in flight, at most (unless one day holds
/// more): about one row group's.
const ROWS_AT_ONCE: usize = schema::ROW_GROUP_SIZE;
/// A day of at most this many fresh rows runs beside a busy one: its
/// fresh rows are one batch, encoded inline (see [`schema::ParquetSink`])
/// unless its existing file is large, which the rows budget never counted
/// either (four such days could always run at once).
/// On 100,000 sessions, 80% of them on one day, the other 29 days took
/// 0.07 s after that day's 0.38 s; beside it, a first night publishes about
/// 0.04 s sooner and a second night (each quiet day merged with last
/// night's file) ends about 0.15 s sooner (BENCHMARKS.md, "Publishing the
/// quiet days beside the hot one").
const SMALL_DAY_ROWS: usize = schema::SINK_BATCH;

/// Small days merged and written at once, at most, when no larger day
/// runs: each is a few round trips to storage (its staged parts, then its
/// file) and little memory, so on S3 four at a time left a month's quiet
/// days waiting on each other's requests after the busy one.
const SMALL_DAYS_AT_ONCE: usize = crate::storage::REQUESTS_AT_ONCE;

/// The days being merged: how many, their fresh rows, and how many of them
/// are larger than [`SMALL_DAY_ROWS`].
#[derive(Debug, Default)]
struct DaysInFlight {
    days: usize,
    rows: usize,
    larger: usize,
}

impl DaysInFlight {
    /// Whether a day of `rows` fresh rows starts now. A busy day's encoder
    /// holds a row group; busy days go alone, so memory stays that of one
    /// day however many run. A small day goes beside them (fresh rows of
    /// one sink batch at most), so a skewed month's ordinary days are
    /// written while its hot day is, and when only small days run, up to
    /// [`SMALL_DAYS_AT_ONCE`] of them do.
    fn starts_now(&self, rows: usize) -> bool {
        let small = rows <= SMALL_DAY_ROWS;
        self.days == 0
            || (self.days < PARTITIONS_AT_ONCE && (self.rows + rows <= ROWS_AT_ONCE || small))
            || (small && self.larger == 0 && self.days < SMALL_DAYS_AT_ONCE)
    }

    fn start(&mut self, rows: usize) {
        self.days += 1;
        self.rows += rows;
        self.larger += usize::from(rows > SMALL_DAY_ROWS);
    }

    fn end(&mut self, rows: usize) {
        self.days -= 1;
        self.rows -= rows;
        self.larger -= usize::from(rows > SMALL_DAY_ROWS);
    }
}

/// One day's partition, to merge and write.
struct Day<S, P> {
    storage: Arc<S>,
    parts_storage: Arc<P>,
    winners: Arc<Winners>,
    part_keys: Arc<[String]>,
    moves: Arc<Moves>,
    scanned: Arc<ScannedFiles>,
    pending: Pending,
    date: NaiveDate,
    key: String,
}

/// What became of one day's partition.
enum DayOutcome {
    Written(WrittenFile),
    /// Its existing file could not be merged; its sessions wait in pending.
    Pending(PendingPartition),
}

impl<S: Storage, P: Storage> Day<S, P> {
    /// Merges the winners at `indexes` (sorted by row order) into the day's
    /// partition and writes it.
    async fn publish(self, indexes: Vec<u32>) -> Result<DayOutcome, PublishError> {
        let Day {
            storage,
            parts_storage,
            winners,
            part_keys,
            moves,
            scanned,
            pending,
            date,
            key,
        } = self;
        tracing::trace!(partition = %key, rows = indexes.len(), "merging a partition");
        let mut parts = PartCache::new(parts_storage.as_ref(), &part_keys);
        let existing = match scanned.take(date) {
            Some(found) => found,
            None => storage.get(&key).await?,
        };
        let merged = if moves.touches(date) {
            // Rare: a session moved into or out of this day.
            let in_order = indexes
                .iter()
                .map(|&index| index as usize)
                .filter(|&index| !moves.replaces(winners.id(index)))
                .map(|index| winners.winner(index));
            let (removed, added) = moves.of(date);
            merge_in_memory(&key, existing, in_order, &removed, added, &mut parts).await
        } else {
            let in_order = indexes.iter().map(|&index| winners.winner(index as usize));
            let streamed = {
                let wanted = in_order.clone().map(|winner| winner.part);
                let mut batches = PartBatches::new(parts_storage.as_ref(), &part_keys, wanted);
                merge_streaming(&key, existing.clone(), in_order.clone(), &mut batches).await
            };
            match streamed {
                Err(PublishError::Unsorted { .. }) => {
                    // Not a file this version wrote in order: merge in memory.
                    tracing::warn!(%key, "existing partition is not sorted; merging it in memory");
                    let none = std::collections::HashSet::new();
                    merge_in_memory(&key, existing, in_order, &none, Vec::new(), &mut parts).await
                }
                other => other,
            }
        };
        let (bytes, rows) = match merged {
            Ok(merged) => merged,
            Err(error @ PublishError::Existing { .. }) => {
                tracing::error!(error = %printable(&error.to_string()), "keeping this day's sessions for the next run; publishing the others");
                let mut fresh: Vec<SessionRecord> = Vec::with_capacity(indexes.len());
                for &index in &indexes {
                    let index = index as usize;
                    if !moves.replaces(winners.id(index)) {
                        fresh.push(parts.row(winners.winner(index)).await?);
                    }
                }
                fresh.extend(moves.of(date).1);
                let kept = pending.keep(parts_storage.as_ref(), date, &fresh).await?;
                return Ok(DayOutcome::Pending(PendingPartition {
                    partition: key,
                    reason: error.to_string(),
                    sessions: fresh.len(),
                    kept_in: kept,
                }));
            }
            Err(error) => return Err(error),
        };
        let file = WrittenFile {
            path: key.clone(),
            rows,
            bytes: bytes.len() as u64,
            sha256: sha256_hex(&bytes),
        };
        storage.put(&key, Bytes::from(bytes)).await?;
        tracing::debug!(partition = %key, rows, bytes = file.bytes, "partition written");
        Ok(DayOutcome::Written(file))
    }
}

/// What publishing did.
#[derive(Debug, Default)]
pub struct Published {
    pub files: Vec<WrittenFile>,
    /// Partitions that could not be merged; their sessions are kept.
    pub pending: Vec<PendingPartition>,
}

/// Where the sessions of partitions that could not be published wait for
/// the next run: Parquet parts below `prefix` in the checkpoint location, at
/// most [`PENDING_PART_ROWS`] rows each (a staged part's row numbers are
/// 16-bit), named by the run that kept them.
#[derive(Debug, Clone)]
pub struct Pending {
    pub prefix: String,
    pub run_id: String,
}

/// The rows of one pending part, at most.
pub const PENDING_PART_ROWS: usize = 50_000;

impl Pending {
    /// The key prefix of one day's pending parts.
    pub fn day_prefix(prefix: &str, date: NaiveDate) -> String {
        format!("{prefix}dt={date}/")
    }

    /// The day a pending part's key is for.
    pub fn day_of(prefix: &str, key: &str) -> Option<NaiveDate> {
        let rest = key.strip_prefix(prefix)?.strip_prefix("dt=")?;
        NaiveDate::parse_from_str(rest.split('/').next()?, "%Y-%m-%d").ok()
    }

    /// Writes `rows` as this run's pending parts for `date`; returns where.
    async fn keep<P: Storage>(
        &self,
        storage: &P,
        date: NaiveDate,
        rows: &[SessionRecord],
    ) -> Result<String, PublishError> {
        let day = Self::day_prefix(&self.prefix, date);
        for (number, chunk) in rows.chunks(PENDING_PART_ROWS).enumerate() {
            let key = format!("{day}{}-{number:04}.parquet", self.run_id);
            let bytes = schema::write_parquet(chunk, Packing::Staged).map_err(|source| {
                PublishError::Encode {
                    key: key.clone(),
                    source,
                }
            })?;
            storage.put(&key, Bytes::from(bytes)).await?;
        }
        Ok(day)
    }
}

/// Sessions whose start date moved since an earlier run wrote them.
#[derive(Debug, Default)]
struct Moves {
    /// Per session id: the day its old row is in, and the merged row.
    moved: std::collections::HashMap<String, (NaiveDate, SessionRecord)>,
    /// Days that lose an old row or gain a merged one.
    days: std::collections::BTreeSet<NaiveDate>,
}

impl Moves {
    fn insert(&mut self, old_day: NaiveDate, merged: SessionRecord) {
        self.days.insert(old_day);
        self.days.extend(layout::partition_date(merged.start_date));
        self.moved
            .insert(merged.session_id.clone(), (old_day, merged));
    }

    /// Whether the winner of `id` is replaced by a merged row.
    fn replaces(&self, id: &str) -> bool {
        self.moved.contains_key(id)
    }

    fn touches(&self, date: NaiveDate) -> bool {
        self.days.contains(&date)
    }

    /// The ids to remove from `date`'s existing file, and the merged rows it
    /// gains.
    fn of(&self, date: NaiveDate) -> (std::collections::HashSet<String>, Vec<SessionRecord>) {
        let removed = self
            .moved
            .iter()
            .filter(|(_, (old_day, _))| *old_day == date)
            .map(|(id, _)| id.clone())
            .collect();
        let added = self
            .moved
            .values()
            .filter(|(_, merged)| layout::partition_date(merged.start_date) == Some(date))
            .map(|(_, merged)| merged.clone())
            .collect();
        (removed, added)
    }
}

/// The existing files of the days the scan for moves asked for, kept for
/// their day's merge so that it does not ask again: on S3 a request each,
/// a day of the scan each, for every (account, region) every night. A day
/// found without a file is kept as such (a first night's 32 days); files
/// are kept while they add up to at most [`KEPT_SCANNED_BYTES`], and the
/// rest (a busy day's) are read again when merged. The output's lock keeps
/// other writers of this pair out meanwhile.
#[derive(Debug, Default)]
struct ScannedFiles {
    files: std::sync::Mutex<std::collections::HashMap<NaiveDate, Option<Bytes>>>,
}

/// The most bytes of existing files [`ScannedFiles`] keeps. They are held
/// while the busy day merges, where memory peaks: 16 MB raised a million
/// sessions' second night from 165 to 180 MB (BENCHMARKS.md). 4 MB keeps
/// every file of a pair of 100,000 sessions a month or fewer.
const KEPT_SCANNED_BYTES: usize = 4 << 20;

impl ScannedFiles {
    /// The day's existing file as the scan found it (`Some(None)`: there was
    /// none), or None when the scan did not ask for it or did not keep it.
    fn take(&self, date: NaiveDate) -> Option<Option<Bytes>> {
        self.files.lock().expect("not poisoned").remove(&date)
    }
}

/// Reads the ids and start dates of the existing partitions in `scan` and
/// merges each session found under another start date than its winner's
/// with its old row. Returns the moves, and what it found of each day's
/// file for the day's merge ([`ScannedFiles`]).
///
/// Each day's file is asked for by its key, a request a day of `scan`
/// whatever else the output holds: a listing of `sessions/` would grow
/// with every day and every (account, region) ever exported, and each
/// pair of an organization would pay for all of it every night.
/// [`crate::storage::REQUESTS_AT_ONCE`] requests are under way at once, in
/// date order (on a first night each finds nothing; on S3 each is a round
/// trip, and four at a time put the first merge 0.2 s later than one
/// listing of a small output).
async fn find_moves<S: Storage, P: Storage>(
    storage: &S,
    dedupe: &DedupeSet,
    parts: &mut PartCache<'_, P>,
    account_id: &str,
    region: &str,
    scan: std::ops::RangeInclusive<NaiveDate>,
) -> Result<(Moves, ScannedFiles), PublishError> {
    let mut moves = Moves::default();
    let mut kept = std::collections::HashMap::new();
    let mut kept_bytes = 0;
    let days = scan
        .start()
        .iter_days()
        .take_while(|date| date <= scan.end());
    let mut files = stream::iter(days)
        .map(|date| async move {
            let key = PartitionKey {
                date,
                account_id: account_id.to_owned(),
                region: region.to_owned(),
            }
            .key();
            let file = storage.get(&key).await;
            (date, key, file)
        })
        .buffered(crate::storage::REQUESTS_AT_ONCE);
    while let Some((date, key, file)) = files.next().await {
        let Some(bytes) = file? else {
            kept.insert(date, None);
            continue;
        };
        if kept_bytes + bytes.len() <= KEPT_SCANNED_BYTES {
            kept_bytes += bytes.len();
            kept.insert(date, Some(bytes.clone()));
        }
        // Two columns first; the whole file only when a session moved.
        let mut moved_here = std::collections::HashSet::new();
        let scanned = schema::for_each_identity(bytes.clone(), |id, start_date| {
            if dedupe
                .find(id)
                .is_some_and(|winner| winner.start_date != start_date)
            {
                moved_here.insert(id.to_owned());
            }
        });
        let rows = match scanned.and_then(|()| {
            if moved_here.is_empty() {
                Ok(Vec::new())
            } else {
                schema::read_parquet(bytes)
            }
        }) {
            Ok(rows) => rows,
            Err(error) => {
                // Reported when its own day is published (or left pending).
                tracing::warn!(%key, error = %printable(&error.to_string()), "cannot read an existing partition for moved sessions");
                continue;
            }
        };
        for mut old in rows
            .into_iter()
            .filter(|row| moved_here.contains(&row.session_id))
        {
            let Some(winner) = dedupe.find(&old.session_id) else {
                continue;
            };
            old.absorb(parts.row(winner).await?);
            tracing::info!(session_id = %printable(&old.session_id), from = %date, "a session's start date moved; moving its row");
            moves.insert(date, old);
        }
    }
    let scanned = ScannedFiles {
        files: std::sync::Mutex::new(kept),
    };
    Ok((moves, scanned))
}

/// Merges sorted winners with a sorted existing partition into a new file.
///
/// Rows stay in the Arrow batches they were decoded in (the existing file's,
/// the staged parts'): the merge picks, for each output row, the batch and
/// row it copies and the seen-at span it gets, and [`schema::gather`] copies
/// a batch's worth at once. A second night's busy day merged 80,000 rows with
/// as many of the night before; making each a `SessionRecord` (a dozen
/// strings allocated, copied and freed) was most of its time.
async fn merge_streaming<P: Storage>(
    key: &str,
    existing: Option<Bytes>,
    winners: impl Iterator<Item = &Winner>,
    parts: &mut PartBatches<'_, P>,
) -> Result<(Vec<u8>, usize), PublishError> {
    let encode = |source| PublishError::Encode {
        key: key.to_owned(),
        source,
    };
    let mut sink = ParquetSink::new(Packing::Published).map_err(encode)?;
    let mut old = match existing {
        Some(bytes) => Some(ExistingBatches::new(key, bytes)?),
        None => None,
    };
    let mut out = Gathered::default();
    // Winners in time order visit a part's rows together: the part at hand
    // is kept, not asked for (and its batch cloned) once a row.
    let mut at_hand: Option<(u32, RecordBatch)> = None;
    for winner in winners {
        let kept = match at_hand.take() {
            Some(kept) if kept.0 == winner.part => kept,
            _ => parts.batch(winner.part).await?,
        };
        let (part, batch) = at_hand.insert(kept);
        let part = *part;
        let fresh = MergeColumns::of(batch).map_err(|e| parts.unreadable(winner.part, &e))?;
        let row = usize::from(winner.row);
        if row >= fresh.rows() {
            return Err(PublishError::Part {
                key: parts.key(winner.part),
                reason: format!("it has no row {row}"),
            });
        }
        let order = fresh.row_order(row);
        // Rows of the existing file before this one stay as they are.
        while let Some(existing) = old.as_mut() {
            let Some((batch_no, batch, at, columns)) = existing.at_hand()? else {
                break;
            };
            if columns.row_order(at) >= order {
                break;
            }
            let seen = (columns.first_seen_at(at), columns.last_seen_at(at));
            out.pick(&mut sink, Source::Existing(batch_no), batch, at, seen)
                .map_err(encode)?;
            existing.advance()?;
        }
        let at_hand = match old.as_ref() {
            Some(existing) => existing.at_hand()?,
            None => None,
        };
        let same = match at_hand {
            Some((batch_no, batch, at, columns)) => {
                (columns.row_order(at) == order).then(|| {
                    // `SessionRecord::absorb`: the stronger observation's
                    // fields, the seen-at span of both.
                    let kept = Rank {
                        ended: columns.is_ended(at),
                        observed_at: columns.last_seen_at(at),
                    };
                    let offered = Rank {
                        ended: fresh.is_ended(row),
                        observed_at: winner.last_seen_at,
                    };
                    let seen = (
                        columns.first_seen_at(at).min(winner.first_seen_at),
                        columns.last_seen_at(at).max(winner.last_seen_at),
                    );
                    (offered.supersedes(kept), batch_no, batch.clone(), at, seen)
                })
            }
            None => None,
        };
        match same {
            Some((fresh_wins, batch_no, old_batch, at, seen)) => {
                if fresh_wins {
                    out.pick(&mut sink, Source::Part(part), batch, row, seen)
                } else {
                    out.pick(&mut sink, Source::Existing(batch_no), &old_batch, at, seen)
                }
                .map_err(encode)?;
                if let Some(existing) = old.as_mut() {
                    existing.advance()?;
                }
            }
            None => out
                .pick(
                    &mut sink,
                    Source::Part(part),
                    batch,
                    row,
                    (winner.first_seen_at, winner.last_seen_at),
                )
                .map_err(encode)?,
        }
    }
    while let Some(existing) = old.as_mut() {
        let Some((batch_no, batch, at, columns)) = existing.at_hand()? else {
            break;
        };
        let seen = (columns.first_seen_at(at), columns.last_seen_at(at));
        out.pick(&mut sink, Source::Existing(batch_no), batch, at, seen)
            .map_err(encode)?;
        existing.advance()?;
    }
    out.flush(&mut sink).map_err(encode)?;
    let rows = sink.rows();
    Ok((sink.finish().map_err(encode)?, rows))
}

/// Where an output row is copied from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Source {
    /// A batch of the existing file, by its number.
    Existing(u32),
    /// A staged part.
    Part(u32),
}

/// The rows of the next output batch, as picks from source batches.
#[derive(Default)]
struct Gathered {
    sources: Vec<RecordBatch>,
    numbers: std::collections::HashMap<Source, usize>,
    picks: Vec<(usize, usize)>,
    seen: Vec<(i64, i64)>,
}

impl Gathered {
    /// Adds a row, first flushing when the batch is full or holds as many
    /// sources as it may: winners of a service that lists in no order jump
    /// from part to part, and each source kept is a decoded part.
    fn pick(
        &mut self,
        sink: &mut ParquetSink,
        source: Source,
        batch: &RecordBatch,
        row: usize,
        seen: (i64, i64),
    ) -> Result<(), SchemaError> {
        if self.picks.len() >= schema::SINK_BATCH
            || (self.sources.len() >= PART_CACHE && !self.numbers.contains_key(&source))
        {
            self.flush(sink)?;
        }
        let sources = &mut self.sources;
        let number = *self.numbers.entry(source).or_insert_with(|| {
            sources.push(batch.clone());
            sources.len() - 1
        });
        self.picks.push((number, row));
        self.seen.push(seen);
        Ok(())
    }

    /// Copies the picked rows into one batch for the sink, and lets go of
    /// the sources.
    fn flush(&mut self, sink: &mut ParquetSink) -> Result<(), SchemaError> {
        if self.picks.is_empty() {
            return Ok(());
        }
        let batch = schema::gather(&self.sources, &self.picks, &self.seen)?;
        self.sources.clear();
        self.numbers.clear();
        self.picks.clear();
        self.seen.clear();
        sink.push(batch)
    }
}

/// The fallback for an existing file that is not in order, and for a day a
/// session moved into or out of: all rows in memory, merged by session id.
/// `removed` ids leave the existing rows; `added` rows join the fresh ones.
async fn merge_in_memory<P: Storage>(
    key: &str,
    existing: Option<Bytes>,
    winners: impl Iterator<Item = &Winner>,
    removed: &std::collections::HashSet<String>,
    added: Vec<SessionRecord>,
    parts: &mut PartCache<'_, P>,
) -> Result<(Vec<u8>, usize), PublishError> {
    let mut old = match existing {
        Some(bytes) => schema::read_parquet(bytes).map_err(|source| PublishError::Existing {
            key: key.to_owned(),
            source,
        })?,
        None => Vec::new(),
    };
    old.retain(|row| !removed.contains(&row.session_id));
    let mut fresh = added;
    for winner in winners {
        fresh.push(parts.row(winner).await?);
    }
    let rows = merge(old, fresh);
    let bytes = schema::write_parquet(&rows, Packing::Published).map_err(|source| {
        PublishError::Encode {
            key: key.to_owned(),
            source,
        }
    })?;
    Ok((bytes, rows.len()))
}

/// The rows of an existing partition, in file order, checked to be sorted,
/// a decoded batch at a time.
struct ExistingBatches<'a> {
    key: &'a str,
    source: ParquetSource,
    /// The batch being read, its number, and the row at hand.
    batch: Option<(u32, RecordBatch)>,
    row: usize,
    /// The last row of the batch before, to check the order across batches.
    previous: Option<(i64, String)>,
}

impl<'a> ExistingBatches<'a> {
    fn new(key: &'a str, bytes: Bytes) -> Result<ExistingBatches<'a>, PublishError> {
        let source = ParquetSource::new(bytes).map_err(|source| PublishError::Existing {
            key: key.to_owned(),
            source,
        })?;
        let mut rows = ExistingBatches {
            key,
            source,
            batch: None,
            row: 0,
            previous: None,
        };
        rows.next_batch(0)?;
        Ok(rows)
    }

    fn unreadable(&self, source: SchemaError) -> PublishError {
        PublishError::Existing {
            key: self.key.to_owned(),
            source,
        }
    }

    /// The batch and row at hand with the batch's merge columns, None at
    /// the end of the file. `next_batch` typed the columns when it read the
    /// batch, so this cannot fail on a batch it kept; should it, the error
    /// names the file as that check's does. Typed again per call (six
    /// downcasts) because the columns borrow the batch they are kept with.
    fn at_hand(
        &self,
    ) -> Result<Option<(u32, &RecordBatch, usize, MergeColumns<'_>)>, PublishError> {
        let Some((number, batch)) = &self.batch else {
            return Ok(None);
        };
        let columns = MergeColumns::of(batch).map_err(|e| self.unreadable(e))?;
        Ok(Some((*number, batch, self.row, columns)))
    }

    /// Moves to the next row, checking that it comes after this one.
    fn advance(&mut self) -> Result<(), PublishError> {
        let Some((number, batch)) = &self.batch else {
            return Ok(());
        };
        let columns = MergeColumns::of(batch).map_err(|e| self.unreadable(e))?;
        let next = self.row + 1;
        if next < columns.rows() {
            if columns.row_order(self.row) >= columns.row_order(next) {
                return Err(PublishError::Unsorted {
                    key: self.key.to_owned(),
                });
            }
            self.row = next;
            return Ok(());
        }
        let (start, id) = columns.row_order(self.row);
        self.previous = Some((start, id.to_owned()));
        let following = number + 1;
        self.next_batch(following)
    }

    /// Reads the next non-empty batch, numbered `number`, and checks that
    /// its first row comes after the last one read.
    fn next_batch(&mut self, number: u32) -> Result<(), PublishError> {
        self.row = 0;
        self.batch = None;
        while let Some(batch) = self.source.next_batch().map_err(|e| self.unreadable(e))? {
            if batch.num_rows() == 0 {
                continue;
            }
            let columns = MergeColumns::of(&batch).map_err(|e| self.unreadable(e))?;
            if let Some((start, id)) = &self.previous {
                if layout::row_order(*start, id) >= columns.row_order(0) {
                    return Err(PublishError::Unsorted {
                        key: self.key.to_owned(),
                    });
                }
            }
            self.batch = Some((number, batch));
            break;
        }
        Ok(())
    }
}

/// Decoded staged parts as batches, the most recently used kept, for the
/// streaming merge (the row-wise fallbacks use [`PartCache`]). The parts the
/// merge will need are known before it starts (its winners' parts, in
/// order), so they are read [`PARTS_AHEAD`] at a time ahead of it, in the
/// order it will miss them in its cache, and decoded on its thread.
struct PartBatches<'a, P> {
    storage: &'a P,
    keys: &'a [String],
    recent: std::collections::VecDeque<(u32, RecordBatch)>,
    /// Parts not yet asked for, in the order the merge will miss them.
    to_read: std::vec::IntoIter<u32>,
    /// Reads under way, in that order.
    reading: FuturesOrdered<BoxFuture<'a, (u32, Result<RecordBatch, PublishError>)>>,
}

/// Staged parts read ahead of the merge, at most. A part is one object: on
/// S3 a round trip, which the merge of a busy day (a part per 200 of its
/// sessions) waited for one after another: 12.4 s for 100,000 sessions at
/// 20 ms a request, 2.2 to 2.5 s with 16 ahead (BENCHMARKS.md). Decoding
/// them ahead too, on blocking threads, was no faster and held 30 MB more
/// at a million sessions.
const PARTS_AHEAD: usize = 16;

impl<'a, P: Storage> PartBatches<'a, P> {
    /// For a merge that asks for the parts `wanted`, in order, one call per
    /// row (a part asked for again at once is no new read).
    fn new(
        storage: &'a P,
        keys: &'a [String],
        wanted: impl Iterator<Item = u32>,
    ) -> PartBatches<'a, P> {
        let mut parts = PartBatches {
            storage,
            keys,
            recent: std::collections::VecDeque::with_capacity(PART_CACHE),
            to_read: misses(wanted).into_iter(),
            reading: FuturesOrdered::new(),
        };
        parts.read_ahead();
        parts
    }

    fn key(&self, part: u32) -> String {
        self.keys
            .get(part as usize)
            .cloned()
            .unwrap_or_else(|| format!("part {part}"))
    }

    fn unreadable(&self, part: u32, error: &SchemaError) -> PublishError {
        PublishError::Part {
            key: self.key(part),
            reason: error.to_string(),
        }
    }

    /// Starts reads until [`PARTS_AHEAD`] are under way.
    fn read_ahead(&mut self) {
        while self.reading.len() < PARTS_AHEAD {
            let Some(part) = self.to_read.next() else {
                return;
            };
            let (storage, key) = (self.storage, self.key(part));
            self.reading.push_back(Box::pin(async move {
                (part, read_part_batch(storage, key).await)
            }));
        }
    }

    /// A part's rows as one batch (a part is one page).
    async fn batch(&mut self, part: u32) -> Result<(u32, RecordBatch), PublishError> {
        if !to_front(&mut self.recent, part) {
            // The read ahead is the part asked for unless the merge asked in
            // another order than it said; then the part is read now.
            let read = match self.reading.next().await {
                Some((read, batch)) if read == part => batch,
                Some(_) | None => {
                    self.reading.clear();
                    self.to_read = Vec::new().into_iter();
                    read_part_batch(self.storage, self.key(part)).await
                }
            };
            self.read_ahead();
            admit(&mut self.recent, part, read?);
        }
        let (part, batch) = &self.recent[0];
        Ok((*part, batch.clone()))
    }
}

/// The cache policy of [`PartBatches`], which [`misses`] replays: a part
/// found moves to the front (true); one not found is [`admit`]ted once read.
fn to_front<T>(recent: &mut std::collections::VecDeque<(u32, T)>, part: u32) -> bool {
    match recent.iter().position(|(p, _)| *p == part) {
        Some(0) => true,
        Some(position) => {
            if let Some(entry) = recent.remove(position) {
                recent.push_front(entry);
            }
            true
        }
        None => false,
    }
}

/// Puts a part read in front, the least recently used leaving once
/// [`PART_CACHE`] are kept.
fn admit<T>(recent: &mut std::collections::VecDeque<(u32, T)>, part: u32, value: T) {
    if recent.len() == PART_CACHE {
        recent.pop_back();
    }
    recent.push_front((part, value));
}

/// The parts [`PartBatches`]' cache misses when asked for `wanted` in
/// order: what it reads, in that order.
fn misses(wanted: impl Iterator<Item = u32>) -> Vec<u32> {
    let mut recent = std::collections::VecDeque::with_capacity(PART_CACHE);
    let mut missed = Vec::new();
    for part in wanted {
        if !to_front(&mut recent, part) {
            admit(&mut recent, part, ());
            missed.push(part);
        }
    }
    missed
}

/// One staged part's rows as one batch.
async fn read_part_batch<P: Storage>(
    storage: &P,
    key: String,
) -> Result<RecordBatch, PublishError> {
    let bytes = part_bytes(storage, &key).await?;
    let unreadable = |e: SchemaError| PublishError::Part {
        key: key.clone(),
        reason: e.to_string(),
    };
    let batches = schema::read_batches(bytes).map_err(unreadable)?;
    match batches.len() {
        0 => Ok(RecordBatch::new_empty(schema::schema())),
        1 => Ok(batches
            .into_iter()
            .next()
            .unwrap_or_else(|| RecordBatch::new_empty(schema::schema()))),
        _ => arrow_select::concat::concat_batches(&schema::schema(), &batches)
            .map_err(|e| unreadable(SchemaError::from(e))),
    }
}

/// Decoded staged parts, the most recently used kept. Winners sorted by
/// start time visit a part's rows together, so a few parts suffice.
struct PartCache<'a, P> {
    storage: &'a P,
    keys: &'a [String],
    /// A row is taken out when it wins (each winner is asked for once; a
    /// row asked for again reads its part again), so that no row is copied.
    recent: std::collections::VecDeque<(u32, Vec<Option<SessionRecord>>)>,
}

/// Decoded parts one day keeps at once: at most 200 rows each. With
/// [`PARTITIONS_AT_ONCE`] days in flight, 64 parts (about 13 MB) at most,
/// and as many again read ahead ([`PARTS_AHEAD`]); with
/// [`SMALL_DAYS_AT_ONCE`] small days, each of at most 4,096 fresh rows, four
/// times that (a month of 100,000 sessions spread evenly peaked 30 MB
/// higher on its second night).
const PART_CACHE: usize = 16;

impl<'a, P: Storage> PartCache<'a, P> {
    fn new(storage: &'a P, keys: &'a [String]) -> PartCache<'a, P> {
        PartCache {
            storage,
            keys,
            recent: std::collections::VecDeque::with_capacity(PART_CACHE),
        }
    }

    /// The winning row, with the seen-at span of all its observations.
    async fn row(&mut self, winner: &Winner) -> Result<SessionRecord, PublishError> {
        let part_key = &self.keys[winner.part as usize];
        let cached = self.recent.iter().position(|(part, rows)| {
            *part == winner.part && rows.get(winner.row as usize).is_some_and(Option::is_some)
        });
        match cached {
            Some(0) => {}
            Some(position) => {
                if let Some(entry) = self.recent.remove(position) {
                    self.recent.push_front(entry);
                }
            }
            None => {
                let rows = read_part(self.storage, part_key).await?;
                // A part read again replaces the copy its taken rows left.
                self.recent.retain(|(part, _)| *part != winner.part);
                if self.recent.len() == PART_CACHE {
                    self.recent.pop_back();
                }
                self.recent
                    .push_front((winner.part, rows.into_iter().map(Some).collect()));
            }
        }
        let mut record = self.recent[0]
            .1
            .get_mut(winner.row as usize)
            .and_then(Option::take)
            .ok_or_else(|| PublishError::Part {
                key: part_key.clone(),
                reason: format!("it has no row {}", winner.row),
            })?;
        record.first_seen_at = winner.first_seen_at;
        record.last_seen_at = winner.last_seen_at;
        Ok(record)
    }
}

/// One staged part's rows.
async fn read_part<P: Storage>(storage: &P, key: &str) -> Result<Vec<SessionRecord>, PublishError> {
    let bytes = part_bytes(storage, key).await?;
    schema::read_parquet(bytes).map_err(|e| PublishError::Part {
        key: key.to_owned(),
        reason: e.to_string(),
    })
}

/// One staged part's bytes; a part the checkpoint vouched for that is
/// gone is an error, never an empty page.
async fn part_bytes<P: Storage>(storage: &P, key: &str) -> Result<Bytes, PublishError> {
    storage.get(key).await?.ok_or_else(|| PublishError::Part {
        key: key.to_owned(),
        reason: "it is gone".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::SessionState;
    use crate::dataset::record::{self, tests::record};
    use crate::export::stage::tests::page;
    use crate::export::stage::Stager;
    use crate::storage::watched::Watched;
    use crate::storage::LocalStorage;

    #[test]
    fn a_busy_day_goes_alone_but_for_small_days_and_small_days_go_sixteen_at_once() {
        let busy = ROWS_AT_ONCE + 1;
        let running = |rows: &[usize]| {
            let mut in_flight = DaysInFlight::default();
            for &day in rows {
                in_flight.start(day);
            }
            in_flight
        };
        assert!(running(&[]).starts_now(busy), "the first day always starts");
        assert!(!running(&[busy]).starts_now(busy), "two busy days");
        assert!(
            !running(&[busy]).starts_now(SMALL_DAY_ROWS + 1),
            "a day over a batch"
        );
        assert!(
            running(&[busy]).starts_now(SMALL_DAY_ROWS),
            "a small day beside it"
        );
        assert!(
            running(&[1000, 1000]).starts_now(ROWS_AT_ONCE - 2000),
            "days within a row group"
        );
        assert!(
            !running(&[busy, 1, 1, 1]).starts_now(1),
            "at most four beside a busy day"
        );
        assert!(
            !running(&[SMALL_DAY_ROWS + 1, 1, 1, 1]).starts_now(1),
            "at most four beside a day over a batch"
        );
        assert!(
            running(&[1; PARTITIONS_AT_ONCE]).starts_now(SMALL_DAY_ROWS),
            "small days go on"
        );
        assert!(
            !running(&[1; SMALL_DAYS_AT_ONCE]).starts_now(1),
            "at most sixteen small days"
        );
        let mut ended = running(&[busy, 1]);
        ended.end(busy);
        assert!(
            running(&[1; 5]).starts_now(1) && ended.starts_now(1) && ended.larger == 0,
            "once the busy day ends"
        );
    }

    /// Publishes `staged` as the tests' (account, region), days around theirs.
    async fn publish_the_tests_pair<S: Storage, P: Storage>(
        output: std::sync::Arc<S>,
        parts: std::sync::Arc<P>,
        staged: Staged,
    ) -> Published {
        publish(
            output,
            parts,
            staged,
            "123456789012",
            "eu-west-1",
            days_of_the_tests(),
            &Pending {
                prefix: "pending/".into(),
                run_id: "run".into(),
            },
        )
        .await
        .expect("publish")
    }

    async fn publish_and_read(
        storage: &std::sync::Arc<LocalStorage>,
        staged: Staged,
    ) -> Vec<SessionRecord> {
        let written = publish_the_tests_pair(storage.clone(), storage.clone(), staged)
            .await
            .files;
        assert_eq!(written.len(), 1);
        let bytes = storage
            .get(&written[0].path)
            .await
            .expect("get")
            .expect("written");
        let rows = schema::read_parquet(bytes).expect("read");
        assert_eq!(written[0].rows, rows.len());
        rows
    }

    /// The days the tests' sessions start on, and one either side.
    fn days_of_the_tests() -> std::ops::RangeInclusive<NaiveDate> {
        let day = NaiveDate::from_ymd_opt(1970, 1, 1).expect("a date");
        day.pred_opt().expect("a day before")..=day.succ_opt().expect("a day after")
    }

    /// The partition of the day the tests' start dates fall on.
    fn first_day_key() -> String {
        PartitionKey {
            date: NaiveDate::from_ymd_opt(1970, 1, 1).expect("a date"),
            account_id: "123456789012".into(),
            region: "eu-west-1".into(),
        }
        .key()
    }

    /// Writes `rows`, in the order given, as the partition at `key`.
    async fn put_partition(storage: &LocalStorage, key: &str, rows: &[SessionRecord]) {
        let bytes = schema::write_parquet(rows, Packing::Published).expect("encode");
        storage.put(key, bytes.into()).await.expect("put");
    }

    #[tokio::test]
    async fn a_crawl_that_found_nothing_publishes_without_asking_the_output_anything() {
        let dir = tempfile::tempdir().expect("tempdir");
        let output = std::sync::Arc::new(Watched::unlisted(LocalStorage::new(dir.path())));
        let parts = std::sync::Arc::new(Watched::unlisted(LocalStorage::new(dir.path())));
        let stager = Stager::new(parts.clone(), "stage/".into());
        let published =
            publish_the_tests_pair(output.clone(), parts.clone(), stager.into_staged()).await;
        assert!(published.files.is_empty() && published.pending.is_empty());
        assert_eq!(
            output.read_count() + parts.read_count(),
            0,
            "{:?}",
            output.reads()
        );
    }

    #[tokio::test]
    async fn a_moved_session_is_found_by_each_days_key_asked_once_without_listing_the_output() {
        let dir = tempfile::tempdir().expect("tempdir");
        let output = std::sync::Arc::new(Watched::unlisted(LocalStorage::new(dir.path())));
        let parts_dir = tempfile::tempdir().expect("tempdir");
        let parts = std::sync::Arc::new(LocalStorage::new(parts_dir.path()));
        // Last night "s-1" started on the 1st; tonight the service says
        // the 2nd. Another account's file that day is not this pair's.
        let mut before = record("s-1", 1_000, "Connected", 7);
        before.first_seen_at = 3;
        put_partition(&output.inner, &first_day_key(), &[before.clone()]).await;
        let stranger = first_day_key().replace("123456789012", "210987654321");
        output
            .put(&stranger, Bytes::from_static(b"not parquet"))
            .await
            .expect("put");
        let now = record("s-1", 86_400_000 + 5, "Terminated", 9);
        let mut stager = Stager::new(parts.clone(), "stage/".into());
        stager
            .stage(page(0, 0, SessionState::History, vec![now.clone()]))
            .await
            .expect("stage");
        let published = publish_the_tests_pair(output.clone(), parts, stager.into_staged()).await;
        let second_day = first_day_key().replace("1970-01-01", "1970-01-02");
        // Each day of the scan is asked for once: its merge uses what the
        // scan found, the file or that there was none.
        let day_before = first_day_key().replace("1970-01-01", "1969-12-31");
        assert_eq!(
            output.reads(),
            BTreeMap::from([
                (day_before, 1),
                (first_day_key(), 1),
                (second_day.clone(), 1)
            ])
        );
        let mut written: Vec<&str> = published.files.iter().map(|f| f.path.as_str()).collect();
        written.sort_unstable();
        assert_eq!(written, [first_day_key().as_str(), second_day.as_str()]);
        let read = |key: String| {
            let output = output.clone();
            async move {
                let bytes = output.get(&key).await.expect("get").expect("written");
                schema::read_parquet(bytes).expect("reads")
            }
        };
        assert_eq!(read(first_day_key()).await, Vec::new(), "moved out");
        let moved = read(second_day).await;
        assert_eq!(moved.len(), 1);
        assert_eq!(moved[0].start_date, now.start_date);
        assert_eq!(
            moved[0].first_seen_at, before.first_seen_at,
            "seen since last night"
        );
    }

    /// 40 parts of 3 rows each, part `n`'s first session `p-n-0`, in a
    /// folder of their own (kept while the storage lives).
    fn counted_parts() -> (Watched<LocalStorage>, Vec<String>, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let local = LocalStorage::new(dir.path());
        let keys: Vec<String> = (0..40).map(|n| format!("stage/part-{n}.parquet")).collect();
        for (n, key) in keys.iter().enumerate() {
            let rows: Vec<SessionRecord> = (0..3)
                .map(|i| record(&format!("p-{n}-{i}"), 1_000 + i, "Terminated", 7))
                .collect();
            let bytes = schema::write_parquet(&rows, Packing::Staged).expect("encode");
            std::fs::create_dir_all(dir.path().join("stage")).expect("folder");
            std::fs::write(dir.path().join(key), bytes).expect("write");
        }
        (Watched::new(local), keys, dir)
    }

    async fn first_session(
        parts: &mut PartBatches<'_, Watched<LocalStorage>>,
        part: u32,
    ) -> String {
        let (read, batch) = parts.batch(part).await.expect("part");
        assert_eq!(read, part);
        let ids = batch
            .column(0)
            .as_any()
            .downcast_ref::<arrow_array::StringArray>()
            .expect("session ids")
            .value(0)
            .to_owned();
        ids
    }

    #[tokio::test]
    async fn staged_parts_are_read_ahead_in_the_order_the_merge_misses_them() {
        // Every part in turn, some row by row, then the first five again
        // (gone from the cache of 16 by then), then one still cached.
        let wanted: Vec<u32> = (0..40)
            .flat_map(|n| std::iter::repeat_n(n, 1 + (n as usize % 3)))
            .chain(0..5)
            .chain([39])
            .collect();
        assert_eq!(misses(wanted.iter().copied()).len(), 45);
        let (storage, keys, _dir) = counted_parts();
        let mut parts = PartBatches::new(&storage, &keys, wanted.iter().copied());
        for &part in &wanted {
            assert_eq!(first_session(&mut parts, part).await, format!("p-{part}-0"));
        }
        assert_eq!(storage.read_count(), 45, "each miss read once");
        let most = storage.most_reads_at_once();
        assert!(most > 1 && most <= PARTS_AHEAD, "{most} reads at once");
    }

    #[tokio::test]
    async fn a_part_asked_out_of_the_order_foretold_is_still_the_right_one() {
        let (storage, keys, _dir) = counted_parts();
        let mut parts = PartBatches::new(&storage, &keys, 0..40);
        assert_eq!(first_session(&mut parts, 0).await, "p-0-0");
        assert_eq!(first_session(&mut parts, 30).await, "p-30-0");
        // The reads ahead are dropped: from here on, each part is read when asked.
        assert_eq!(first_session(&mut parts, 1).await, "p-1-0");
        assert_eq!(first_session(&mut parts, 0).await, "p-0-0");
    }

    #[tokio::test]
    async fn a_row_taken_from_the_part_cache_is_read_again_when_asked_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = std::sync::Arc::new(LocalStorage::new(dir.path()));
        let mut stager = Stager::new(storage.clone(), "stage/".into());
        for (seq, id) in ["a", "b"].into_iter().enumerate() {
            stager
                .stage(page(
                    0,
                    seq as u32,
                    SessionState::History,
                    vec![record(id, 10, "Terminated", 200)],
                ))
                .await
                .expect("stage");
        }
        let staged = stager.into_staged();
        let mut parts = PartCache::new(storage.as_ref(), &staged.parts);
        let winner = |part: u32, row: u16| Winner {
            start_date: 10,
            observed_at: 200,
            first_seen_at: 150,
            last_seen_at: 250,
            part,
            row,
            ended: true,
        };
        let first = parts.row(&winner(0, 0)).await.expect("a row");
        assert_eq!(
            (
                first.session_id.as_str(),
                first.first_seen_at,
                first.last_seen_at
            ),
            ("a", 150, 250)
        );
        assert_eq!(parts.row(&winner(1, 0)).await.expect("b").session_id, "b");
        assert_eq!(
            parts.row(&winner(0, 0)).await.expect("a again"),
            first,
            "a row already taken is read from its part again"
        );
        assert!(matches!(
            parts.row(&winner(1, 1)).await,
            Err(PublishError::Part { .. })
        ));
    }

    #[tokio::test]
    async fn the_merge_of_batches_gives_the_rows_the_merge_of_records_gives() {
        // Fresh rows staged on pages in no time order (the service does not
        // promise one), so the winners of a day jump from part to part;
        // more rows than one output batch; half of them already in the
        // existing file, as stronger or weaker observations.
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = std::sync::Arc::new(LocalStorage::new(dir.path()));
        let mut random = fastrand::Rng::with_seed(11);
        let statuses = ["Connected", "Terminated", "Failed", "Terminating"];
        let mut row = |id: usize| {
            let mut row = record(
                &format!("s-{id:05}"),
                random.i64(0..86_400_000),
                statuses[random.usize(..statuses.len())],
                random.i64(100..400),
            );
            row.first_seen_at = row.last_seen_at - random.i64(0..50);
            row
        };
        let old: Vec<SessionRecord> = (0..6_000).map(&mut row).collect();
        let mut fresh: Vec<SessionRecord> = (3_000..9_000).map(&mut row).collect();
        // A session seen again keeps its start date; the rest of what the
        // service says of it is drawn anew.
        for (index, session) in fresh.iter_mut().enumerate() {
            if let Some(before) = old.get(3_000 + index) {
                session.start_date = before.start_date;
            }
        }
        random.shuffle(&mut fresh);
        let mut sorted_old = old.clone();
        record::sort_rows(&mut sorted_old);
        let key = first_day_key();
        put_partition(&storage, &key, &sorted_old).await;
        let mut stager = Stager::new(storage.clone(), "stage/".into());
        for (seq, chunk) in fresh.chunks(200).enumerate() {
            stager
                .stage(page(0, seq as u32, SessionState::History, chunk.to_vec()))
                .await
                .expect("stage");
        }
        let rows = publish_and_read(&storage, stager.into_staged()).await;
        assert_eq!(rows, record::merge(old, fresh));
    }

    #[tokio::test]
    async fn streaming_merge_keeps_order_and_old_rows_and_falls_back_on_unsorted_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = std::sync::Arc::new(LocalStorage::new(dir.path()));
        // Publishing consumes what was staged; each publish stages anew.
        let staged = || async {
            let mut stager = Stager::new(storage.clone(), "stage/".into());
            let fresh = vec![
                record("c", 20, "Terminated", 200),
                record("a", 10, "Terminated", 200),
                record("b", 5, "Terminated", 200),
            ];
            stager
                .stage(page(0, 0, SessionState::History, fresh))
                .await
                .expect("stage");
            stager.into_staged()
        };
        let key = first_day_key();
        let old = vec![
            record("x", 1, "Terminated", 100),
            record("a", 10, "Connected", 100),
            record("y", 30, "Failed", 100),
        ];

        put_partition(&storage, &key, &old).await;
        let rows = publish_and_read(&storage, staged().await).await;
        let ids: Vec<_> = rows.iter().map(|r| r.session_id.as_str()).collect();
        assert_eq!(ids, ["x", "b", "a", "c", "y"]);
        let a = &rows[2];
        assert_eq!(
            (a.status.as_deref(), a.first_seen_at, a.last_seen_at),
            (Some("Terminated"), 100, 200)
        );

        let mut unsorted = old.clone();
        unsorted.reverse();
        put_partition(&storage, &key, &unsorted).await;
        assert_eq!(
            publish_and_read(&storage, staged().await).await,
            rows,
            "the in-memory fallback gives the same file"
        );
    }
}
