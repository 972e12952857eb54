//! Publishing: turns the staged winners into the data set's partitions,
//! `sessions/dt=YYYY-MM-DD/<account>_<region>.parquet`, one at a time.
//!
//! A partition that exists is merged, never overwritten: its rows stay, the
//! stronger observation of a session wins, `first_seen_at` keeps its earliest
//! value. Only partitions that received sessions are touched, so partitions
//! older than the crawl window (sessions the service has forgotten) are never
//! rewritten. Each file is published atomically through the storage seam.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::record::SessionRecord;
use crate::schema::{self, SchemaError};
use crate::stage::{Staged, Winner};
use crate::storage::{Storage, StorageError};

/// One file a run wrote, as the run manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct WrittenFile {
    pub path: String,
    pub rows: usize,
    pub bytes: u64,
    pub sha256: String,
}

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
}

/// The partition key of a session that started at `start_date` (epoch ms).
pub fn partition_date(start_date: i64) -> String {
    chrono::DateTime::from_timestamp_millis(start_date)
        .unwrap_or_default()
        .format("%Y-%m-%d")
        .to_string()
}

/// The key of one partition file.
pub fn partition_key(date: &str, account_id: &str, region: &str) -> String {
    format!("sessions/dt={date}/{account_id}_{region}.parquet")
}

/// Hex SHA-256 of bytes, as the manifest records it.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Merges every staged winner into its partition and publishes the
/// partitions in date order. Returns the files written.
pub async fn publish<S: Storage, P: Storage>(
    storage: &S,
    parts_storage: &P,
    staged: &Staged,
    account_id: &str,
    region: &str,
) -> Result<Vec<WrittenFile>, PublishError> {
    // date -> part -> winners in that part; built here rather than kept
    // during the crawl, so the crawl holds one entry per session only.
    let mut by_date: BTreeMap<String, BTreeMap<u32, Vec<&Winner>>> = BTreeMap::new();
    for winner in staged.winners.values() {
        by_date
            .entry(partition_date(winner.start_date))
            .or_default()
            .entry(winner.part)
            .or_default()
            .push(winner);
    }
    let mut written = Vec::with_capacity(by_date.len());
    for (date, parts) in by_date {
        let key = partition_key(&date, account_id, region);
        let mut fresh = Vec::new();
        for (part, winners) in parts {
            let part_key = &staged.parts[part as usize];
            let bytes = parts_storage
                .get(part_key)
                .await?
                .ok_or_else(|| PublishError::Part {
                    key: part_key.clone(),
                    reason: "it is gone".into(),
                })?;
            let rows = schema::read_parquet(bytes).map_err(|e| PublishError::Part {
                key: part_key.clone(),
                reason: e.to_string(),
            })?;
            for winner in winners {
                let mut record =
                    rows.get(winner.row as usize)
                        .cloned()
                        .ok_or_else(|| PublishError::Part {
                            key: part_key.clone(),
                            reason: format!("it has no row {}", winner.row),
                        })?;
                record.first_seen_at = winner.first_seen_at;
                record.last_seen_at = winner.last_seen_at;
                fresh.push(record);
            }
        }
        let existing = match storage.get(&key).await? {
            Some(bytes) => {
                schema::read_parquet(bytes).map_err(|source| PublishError::Existing {
                    key: key.clone(),
                    source,
                })?
            }
            None => Vec::new(),
        };
        let rows = merge(existing, fresh);
        let bytes = schema::write_parquet(&rows).map_err(|source| PublishError::Encode {
            key: key.clone(),
            source,
        })?;
        let file = WrittenFile {
            path: key.clone(),
            rows: rows.len(),
            bytes: bytes.len() as u64,
            sha256: sha256_hex(&bytes),
        };
        storage.put(&key, Bytes::from(bytes)).await?;
        written.push(file);
    }
    Ok(written)
}

/// Merges fresh observations into a partition's rows and sorts the result by
/// `start_date`, then `session_id`.
pub fn merge(existing: Vec<SessionRecord>, fresh: Vec<SessionRecord>) -> Vec<SessionRecord> {
    let mut by_id: HashMap<String, SessionRecord> =
        HashMap::with_capacity(existing.len() + fresh.len());
    for record in existing.into_iter().chain(fresh) {
        match by_id.get_mut(&record.session_id) {
            Some(current) => current.absorb(record),
            None => {
                by_id.insert(record.session_id.clone(), record);
            }
        }
    }
    let mut rows: Vec<SessionRecord> = by_id.into_values().collect();
    rows.sort_by(|a, b| (a.start_date, &a.session_id).cmp(&(b.start_date, &b.session_id)));
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::tests::record;

    #[test]
    fn merge_keeps_old_rows_first_seen_and_takes_newer_state() {
        let existing = vec![
            record("old", 5, "Terminated", 10),
            record("live", 7, "Connected", 10),
        ];
        let fresh = vec![
            record("live", 7, "Terminated", 20),
            record("new", 1, "Failed", 20),
        ];
        let rows = merge(existing, fresh);
        let ids: Vec<_> = rows.iter().map(|r| r.session_id.as_str()).collect();
        assert_eq!(ids, ["new", "old", "live"]);
        assert_eq!(rows[2].status.as_deref(), Some("Terminated"));
        assert_eq!((rows[2].first_seen_at, rows[2].last_seen_at), (10, 20));
    }

    #[test]
    fn partition_dates_are_utc() {
        assert_eq!(partition_date(0), "1970-01-01");
        assert_eq!(partition_date(86_400_000 - 1), "1970-01-01");
        assert_eq!(partition_date(86_400_000), "1970-01-02");
        assert_eq!(
            partition_key("2026-11-01", "1", "eu-west-1"),
            "sessions/dt=2026-11-01/1_eu-west-1.parquet"
        );
    }
}
