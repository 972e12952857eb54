//! Staging and the dedupe set: every page the crawler fetches is written
//! durably as a small Parquet "part" through the storage seam, and only a
//! compact winner entry per `SessionId` stays in memory (where the winning
//! observation's row lives, its rank, its seen-at span). Memory therefore
//! grows with distinct sessions only, never with their fields.
//!
//! Parts are named by (state, job, page sequence), so a page fetched again
//! after a crash replaces its own part instead of adding a second one.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;

use crate::api::SessionState;
use crate::dataset::record::SessionRecord;
use crate::dataset::schema::{self, SchemaError};
use crate::dataset::sha256_hex;
use crate::export::crawl::Page;
use crate::export::dedupe::{DedupeSet, Winner, MAX_PAGE_ROWS};
use crate::storage::{Storage, StorageError};

/// Counts for the run manifest and the summary line.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StageCounts {
    pub pages: u64,
    pub empty_pages: u64,
    pub seen_active: u64,
    pub seen_history: u64,
    /// Sessions a query returned that belong to a neighbouring window.
    pub outside_window: u64,
    /// Windows started again because the service refused their NextToken.
    pub token_restarts: u64,
}

/// A staging or re-reading failure.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error("cannot stage a page: {0}")]
    Storage(#[from] StorageError),
    #[error("staged part {key} is unreadable: {source}")]
    Part { key: String, source: SchemaError },
    #[error("staged part {key} holds {rows} rows, more than a page can; it was not written by ssm-audit: rerun with --restart")]
    OversizedPart { key: String, rows: usize },
    #[error("cannot encode a page as Parquet: {0}")]
    Encode(SchemaError),
    #[error("a staging task failed: {0}")]
    Task(String),
}

/// The stager: owns the staged parts and the dedupe set during a crawl.
#[derive(Debug)]
pub struct Stager<S> {
    storage: Arc<S>,
    prefix: String,
    parts: Vec<String>,
    part_index: HashMap<String, u32>,
    winners: DedupeSet,
    counts: StageCounts,
}

/// What a finished crawl left for publishing.
#[derive(Debug)]
pub struct Staged {
    pub parts: Vec<String>,
    pub winners: DedupeSet,
    pub counts: StageCounts,
}

/// The key of a staged part below `prefix`.
pub fn part_key(prefix: &str, state: SessionState, job_id: u32, seq: u32) -> String {
    format!(
        "{prefix}{}-{job_id:05}-{seq:06}.parquet",
        state.as_str().to_lowercase()
    )
}

/// A part written: its key and the SHA-256 of its bytes, which the
/// checkpoint chains so a resume can tell the part is what was staged.
#[derive(Debug, Clone)]
pub struct WrittenPart {
    pub key: String,
    pub sha256: String,
}

/// Encodes a page as a Parquet part and writes it durably; None for a page
/// with no sessions, which needs no part.
async fn write_part<S: Storage>(
    storage: &Arc<S>,
    prefix: &str,
    page: &Page,
) -> Result<Option<WrittenPart>, StageError> {
    if page.records.is_empty() {
        return Ok(None);
    }
    let key = part_key(prefix, page.state, page.job_id, page.seq);
    let bytes = schema::write_parquet(&page.records, schema::Packing::Staged)
        .map_err(StageError::Encode)?;
    let sha256 = sha256_hex(&bytes);
    storage.put(&key, Bytes::from(bytes)).await?;
    Ok(Some(WrittenPart { key, sha256 }))
}

/// The (job id, page sequence) of a part key written by [`part_key`].
pub fn parse_part_key(key: &str) -> Option<(u32, u32)> {
    let name = key.rsplit('/').next()?.strip_suffix(".parquet")?;
    let mut fields = name.rsplitn(3, '-');
    let seq = fields.next()?.parse().ok()?;
    let job = fields.next()?.parse().ok()?;
    matches!(fields.next()?, "active" | "history").then_some((job, seq))
}

impl<S: Storage> Stager<S> {
    /// A stager writing parts below `prefix` (ending in `/`).
    pub fn new(storage: Arc<S>, prefix: String) -> Stager<S> {
        Stager {
            storage,
            prefix,
            parts: Vec::new(),
            part_index: HashMap::new(),
            winners: DedupeSet::new(),
            counts: StageCounts::default(),
        }
    }

    /// Stages one page durably, then lets its sessions into the dedupe set.
    /// Returns the part's key, or None for a page with no sessions.
    pub async fn stage(&mut self, page: Page) -> Result<Option<WrittenPart>, StageError> {
        let part = write_part(&self.storage, &self.prefix, &page).await?;
        self.admit_page(part.as_ref().map(|p| p.key.as_str()), page);
        Ok(part)
    }

    /// Stages a batch of pages, writing their parts concurrently (a round
    /// trip each on S3), then admits them in batch order; returns each page
    /// (without its records) with its part. On a write error nothing of the
    /// batch is admitted, and the error names the part.
    pub async fn stage_all(
        &mut self,
        pages: Vec<Page>,
    ) -> Result<Vec<(Page, Option<WrittenPart>)>, StageError> {
        let mut writes = tokio::task::JoinSet::new();
        for (index, page) in pages.into_iter().enumerate() {
            let storage = self.storage.clone();
            let prefix = self.prefix.clone();
            writes.spawn(async move {
                let key = write_part(&storage, &prefix, &page).await?;
                Ok::<_, StageError>((index, key, page))
            });
        }
        let mut written = Vec::with_capacity(writes.len());
        while let Some(joined) = writes.join_next().await {
            let result = joined.map_err(|e| StageError::Task(e.to_string()))?;
            written.push(result?);
        }
        written.sort_by_key(|(index, _, _)| *index);
        let mut pages = Vec::with_capacity(written.len());
        for (_, part, page) in written {
            let page = self.admit_page(part.as_ref().map(|p| p.key.as_str()), page);
            pages.push((page, part));
        }
        Ok(pages)
    }

    /// Counts a staged page and lets its sessions into the dedupe set;
    /// returns the page without its records (for its token and position).
    fn admit_page(&mut self, key: Option<&str>, mut page: Page) -> Page {
        self.counts.pages += 1;
        self.counts.outside_window += page.outside_window as u64;
        self.counts.token_restarts += u64::from(page.token_restarts);
        let records = std::mem::take(&mut page.records);
        match key {
            Some(key) => self.admit(key, page.state, records),
            None => self.counts.empty_pages += 1,
        }
        page
    }

    /// Reads a part staged by an earlier attempt back into the dedupe set.
    pub async fn readmit(&mut self, key: &str) -> Result<(), StageError> {
        let Some(bytes) = self.storage.get(key).await? else {
            return Ok(());
        };
        self.readmit_bytes(key, bytes)
    }

    /// Lets a part staged by an earlier attempt, read already, back into the
    /// dedupe set.
    pub fn readmit_bytes(&mut self, key: &str, bytes: Bytes) -> Result<(), StageError> {
        let records = schema::read_parquet(bytes).map_err(|source| StageError::Part {
            key: key.to_owned(),
            source,
        })?;
        if records.len() > MAX_PAGE_ROWS {
            return Err(StageError::OversizedPart {
                key: key.to_owned(),
                rows: records.len(),
            });
        }
        let file_name = key.rsplit('/').next().unwrap_or(key);
        let state = if file_name.starts_with("active-") {
            SessionState::Active
        } else {
            SessionState::History
        };
        self.admit(key, state, records);
        Ok(())
    }

    fn admit(&mut self, key: &str, state: SessionState, records: Vec<SessionRecord>) {
        let part = match self.part_index.get(key) {
            Some(&index) => index,
            None => {
                let index = self.parts.len() as u32;
                self.parts.push(key.to_owned());
                self.part_index.insert(key.to_owned(), index);
                index
            }
        };
        for (row, record) in records.into_iter().enumerate() {
            match state {
                SessionState::Active => self.counts.seen_active += 1,
                SessionState::History => self.counts.seen_history += 1,
            }
            let rank = record.rank();
            let candidate = Winner {
                start_date: record.start_date,
                observed_at: rank.observed_at,
                first_seen_at: record.first_seen_at,
                last_seen_at: record.last_seen_at,
                part,
                // Pages are checked against MAX_PAGE_ROWS before staging.
                row: u16::try_from(row).unwrap_or(u16::MAX),
                ended: rank.ended,
            };
            match self.winners.get_mut(&record.session_id) {
                Some(current) => {
                    let first = current.first_seen_at.min(candidate.first_seen_at);
                    let last = current.last_seen_at.max(candidate.last_seen_at);
                    // The same part read again replaces its own rows.
                    if candidate.rank().supersedes(current.rank()) || candidate.part == current.part
                    {
                        *current = candidate;
                    }
                    current.first_seen_at = first;
                    current.last_seen_at = last;
                }
                None => self.winners.insert_new(&record.session_id, candidate),
            }
        }
    }

    pub fn counts(&self) -> &StageCounts {
        &self.counts
    }

    pub fn distinct_sessions(&self) -> usize {
        self.winners.len()
    }

    pub fn into_staged(self) -> Staged {
        Staged {
            parts: self.parts,
            winners: self.winners,
            counts: self.counts,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::dataset::record::tests::record;
    use crate::storage::LocalStorage;

    /// A window's last page, as the crawler hands it over.
    pub(crate) fn page(
        job_id: u32,
        seq: u32,
        state: SessionState,
        records: Vec<SessionRecord>,
    ) -> Page {
        Page {
            job_id,
            state,
            seq,
            records,
            next_token: None,
            outside_window: 0,
            split_into: Vec::new(),
            token_restarts: 0,
        }
    }

    #[tokio::test]
    async fn the_stronger_observation_wins_and_seen_spans_merge() {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = Arc::new(LocalStorage::new(dir.path()));
        let mut stager = Stager::new(storage.clone(), "stage/".into());
        stager
            .stage(page(
                0,
                0,
                SessionState::Active,
                vec![
                    record("s", 10, "Connected", 100),
                    record("t", 11, "Connected", 100),
                ],
            ))
            .await
            .expect("stage");
        stager
            .stage(page(1, 0, SessionState::History, vec![]))
            .await
            .expect("empty page");
        stager
            .stage(page(
                2,
                0,
                SessionState::History,
                vec![record("s", 10, "Terminated", 50)],
            ))
            .await
            .expect("stage");
        let staged = stager.into_staged();
        assert_eq!(staged.parts.len(), 2, "no part for an empty page");
        let s = *staged.winners.winners().find("s").expect("s staged");
        assert_eq!(
            staged.parts[s.part as usize],
            "stage/history-00002-000000.parquet"
        );
        assert_eq!((s.first_seen_at, s.last_seen_at), (50, 100));
        assert_eq!(staged.counts.empty_pages, 1);
        assert_eq!(staged.counts.seen_history + staged.counts.seen_active, 3);
    }

    #[tokio::test]
    async fn a_batch_is_written_at_once_and_admitted_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = Arc::new(LocalStorage::new(dir.path()));
        let mut stager = Stager::new(storage.clone(), "stage/".into());
        let mut first = page(
            0,
            0,
            SessionState::Active,
            vec![record("s", 10, "Connected", 100)],
        );
        first.next_token = Some("t".into());
        let batch = vec![
            first,
            page(1, 0, SessionState::History, vec![]),
            page(
                2,
                4,
                SessionState::History,
                vec![record("s", 10, "Terminated", 100)],
            ),
        ];
        let pages = stager.stage_all(batch).await.expect("stage");
        let order: Vec<_> = pages
            .iter()
            .map(|(p, _)| (p.job_id, p.seq, p.next_token.clone(), p.records.len()))
            .collect();
        assert_eq!(
            order,
            [
                (0, 0, Some("t".into()), 0),
                (1, 0, None, 0),
                (2, 4, None, 0)
            ]
        );
        let staged = stager.into_staged();
        assert_eq!(storage.list("stage/").await.expect("list").len(), 2);
        let s = *staged.winners.winners().find("s").expect("s staged");
        assert_eq!(
            staged.parts[s.part as usize], "stage/history-00002-000004.parquet",
            "ended wins"
        );
        assert_eq!((staged.counts.pages, staged.counts.empty_pages), (3, 1));
    }

    #[tokio::test]
    async fn readmitting_parts_rebuilds_the_same_winners() {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = Arc::new(LocalStorage::new(dir.path()));
        let mut first = Stager::new(storage.clone(), "stage/".into());
        let key = first
            .stage(page(
                3,
                1,
                SessionState::History,
                vec![record("a", 1, "Terminated", 5)],
            ))
            .await
            .expect("stage")
            .expect("a part")
            .key;
        let mut second = Stager::new(storage, "stage/".into());
        second.readmit(&key).await.expect("readmit");
        second.readmit(&key).await.expect("readmit twice");
        assert_eq!(parse_part_key(&key), Some((3, 1)));
        assert_eq!(parse_part_key("stage/other-1-2.parquet"), None);
        let staged = second.into_staged();
        assert_eq!(staged.parts, vec![key]);
        assert_eq!(staged.winners.winners().find("a").map(|w| w.row), Some(0));
    }
}
