//! Where everything lives below an output root, and in what order a
//! partition's rows are: the one place that formats and parses the data
//! set's keys. Athena's table (`schemas/athena/create_table.sql`), `publish`,
//! `report` and `verify` all follow what is written here.
//!
//! ```text
//! sessions/dt=YYYY-MM-DD/<account>_<region>.parquet   the data (start date, UTC)
//! _runs/<account>_<region>/<run_id>.json             run manifests (a chain)
//! _runs/<account>_<region>/<run_id>.sig              a manifest's signature
//! _runs/<run_id>.json                                 manifests before chains
//! _chain/<account>_<region>.json                      the chain's head
//! _checkpoint/<account>_<region>/checkpoint.json      crawl checkpoint
//! _checkpoint/<account>_<region>/staged/…             staged pages
//! _locks/<account>_<region>.json                     an (account, region)'s lock
//! _status/<shard>.json                               the last run's pairs
//! ```
//!
//! Names beginning with `_` or `.` are skipped by Athena and Hive, so only
//! `sessions/` is read as data.

use chrono::NaiveDate;

use crate::time::TimeRange;

/// Folder of the partitions below the output root.
pub const SESSIONS_PREFIX: &str = "sessions/";
/// Folder of the run manifests below the output root.
pub const RUNS_PREFIX: &str = "_runs/";
/// Folder of the chains' head files below the output root.
pub const CHAIN_PREFIX: &str = "_chain/";
/// The default checkpoint folder below the output root.
pub const CHECKPOINT_ROOT: &str = "_checkpoint/";
/// The lock of one (account, region)'s part of the output: exports of other
/// pairs, and shards, never wait for it.
pub fn lock_key(account_id: &str, region: &str) -> String {
    format!("_locks/{account_id}_{region}.json")
}

/// The status file of the last multi-pair run of a shard (`all` unsharded):
/// every pair with its outcome.
pub fn status_key(shard: Option<(u32, u32)>) -> String {
    match shard {
        Some((index, count)) => format!("_status/shard-{}-of-{count}.json", index + 1),
        None => "_status/all.json".to_owned(),
    }
}

/// A partition file's identity: its day and the (account, region) it holds.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PartitionKey {
    pub date: NaiveDate,
    pub account_id: String,
    pub region: String,
}

impl PartitionKey {
    /// `sessions/dt=2026-11-01/123456789012_eu-west-1.parquet`.
    pub fn key(&self) -> String {
        format!(
            "{SESSIONS_PREFIX}dt={}/{}_{}.parquet",
            self.date.format("%Y-%m-%d"),
            self.account_id,
            self.region
        )
    }

    /// The partition a key names, or None for any other key (a stray file,
    /// a temporary file, a folder marker).
    pub fn parse(key: &str) -> Option<PartitionKey> {
        let rest = key.strip_prefix(SESSIONS_PREFIX)?.strip_prefix("dt=")?;
        let (day, file) = rest.split_once('/')?;
        let date = NaiveDate::parse_from_str(day, "%Y-%m-%d").ok()?;
        if date.format("%Y-%m-%d").to_string() != day {
            return None;
        }
        let stem = file.strip_suffix(".parquet").filter(|s| !s.contains('/'))?;
        let (account_id, region) = stem.split_once('_')?;
        if account_id.is_empty() || region.is_empty() || region.contains(['/', '_']) {
            return None;
        }
        Some(PartitionKey {
            date,
            account_id: account_id.to_owned(),
            region: region.to_owned(),
        })
    }
}

/// The UTC day a session that started at `start_date` (epoch ms) is filed
/// under, or None for a time outside the calendar.
pub fn partition_date(start_date: i64) -> Option<NaiveDate> {
    crate::time::utc(start_date).map(|t| t.date_naive())
}

/// The key of a run's manifest: in its (account, region)'s folder, so that
/// a run lists only its own chain.
pub fn manifest_key(account_id: &str, region: &str, run_id: &str) -> String {
    format!("{}{run_id}.json", chain_prefix(account_id, region))
}

/// The folder of one (account, region)'s manifests.
pub fn chain_prefix(account_id: &str, region: &str) -> String {
    format!("{RUNS_PREFIX}{account_id}_{region}/")
}

/// The key of the signature of the manifest at `manifest_key`.
pub fn signature_key(manifest_key: &str) -> String {
    let stem = manifest_key.strip_suffix(".json").unwrap_or(manifest_key);
    format!("{stem}.sig")
}

/// The key of one (account, region)'s chain head.
pub fn chain_head_key(account_id: &str, region: &str) -> String {
    format!("{CHAIN_PREFIX}{account_id}_{region}.json")
}

/// What a key below `_runs/` is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunsEntry {
    /// `_runs/<account>_<region>/<run_id>.json`.
    Chained { account_id: String, region: String },
    /// `_runs/<account>_<region>/<run_id>.sig`.
    Signature,
    /// `_runs/<run_id>.json`, written before manifests were chained.
    Unchained,
    /// Anything else: not ssm-audit's.
    Other,
}

/// Sorts a key below `_runs/`.
pub fn runs_entry(key: &str) -> RunsEntry {
    let Some(rest) = key.strip_prefix(RUNS_PREFIX) else {
        return RunsEntry::Other;
    };
    match rest.split_once('/') {
        None if rest.ends_with(".json") => RunsEntry::Unchained,
        None => RunsEntry::Other,
        Some((pair, file)) if !file.contains('/') => {
            let Some((account, region)) = pair.split_once('_') else {
                return RunsEntry::Other;
            };
            if check_account_id(account).is_err() || check_region(region).is_err() {
                return RunsEntry::Other;
            }
            if file.ends_with(".json") {
                RunsEntry::Chained {
                    account_id: account.to_owned(),
                    region: region.to_owned(),
                }
            } else if file.ends_with(".sig") {
                RunsEntry::Signature
            } else {
                RunsEntry::Other
            }
        }
        Some(_) => RunsEntry::Other,
    }
}

/// Refuses an account id that is not 12 digits: it names keys, and one from
/// a misbehaving STS endpoint must not put files outside their folder.
pub fn check_account_id(account_id: &str) -> Result<(), String> {
    if account_id.len() == 12 && account_id.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(format!("account id {account_id:?} is not 12 digits"))
    }
}

/// Refuses a region that is not shaped like an AWS region (`eu-west-1`,
/// `us-gov-east-1`, `cn-north-1`): it names keys too.
pub fn check_region(region: &str) -> Result<(), String> {
    let parts: Vec<&str> = region.split('-').collect();
    let shaped = parts.len() >= 3
        && parts[0].len() == 2
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && parts[parts.len() - 1].bytes().all(|b| b.is_ascii_digit())
        && !parts[parts.len() - 1].is_empty()
        && region.len() <= 32;
    if shaped {
        Ok(())
    } else {
        Err(format!(
            "region {region:?} is not an AWS region name such as eu-west-1"
        ))
    }
}

/// The partition days of `window`, and one day either side: where a
/// session seen in it may have been written before under another start date.
pub fn days_around(window: TimeRange) -> std::ops::RangeInclusive<NaiveDate> {
    let first = partition_date(window.start).and_then(|d| d.pred_opt());
    let last = partition_date(window.end).and_then(|d| d.succ_opt());
    match (first, last) {
        (Some(first), Some(last)) => first..=last,
        _ => NaiveDate::MAX..=NaiveDate::MIN,
    }
}

/// The root of an output's checkpoints in a `--checkpoint` location of its
/// own: one folder per output (named by a digest of its identity), so that
/// outputs sharing a checkpoint location never share a checkpoint.
pub fn separate_checkpoint_root(output_identity: &str) -> String {
    let digest = super::sha256_hex(output_identity.as_bytes());
    format!("output-{}/", &digest[..16])
}

/// The checkpoint folder of one (account, region) below `root` (a prefix
/// ending in `/`, or empty).
pub fn checkpoint_prefix(root: &str, account_id: &str, region: &str) -> String {
    format!("{root}{account_id}_{region}/")
}

/// The order of a partition's rows: by start time, then session id. Files
/// are written in this order so merges can stream them.
pub fn row_order(start_date: i64, session_id: &str) -> (i64, &str) {
    (start_date, session_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_that_name_keys_are_checked() {
        assert!(check_account_id("123456789012").is_ok());
        for bad in [
            "12345678901",
            "12345678901a",
            "../../etc/x",
            "",
            "1234567890123",
        ] {
            assert!(check_account_id(bad).is_err(), "{bad}");
        }
        for good in [
            "eu-west-1",
            "us-gov-east-1",
            "cn-north-1",
            "ap-southeast-4",
            "us-isob-east-1",
        ] {
            assert!(check_region(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "eu-west",
            "EU-west-1",
            "eu-west-1/..",
            "eu_west_1",
            "e-west-1",
            "eu--1",
        ] {
            assert!(check_region(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn partition_keys_round_trip_and_strays_are_not_partitions() {
        let key = PartitionKey {
            date: NaiveDate::from_ymd_opt(2026, 11, 1).expect("a date"),
            account_id: "123456789012".into(),
            region: "eu-west-1".into(),
        };
        assert_eq!(
            key.key(),
            "sessions/dt=2026-11-01/123456789012_eu-west-1.parquet"
        );
        assert_eq!(PartitionKey::parse(&key.key()), Some(key));
        for stray in [
            "sessions/other",
            "sessions/dt=2026-11-01/",
            "sessions/dt=2026-13-01/1_r.parquet",
            "sessions/dt=2026-11-1/1_r.parquet",
            "sessions/dt=2026-11-01/1_r.parquet.tmp",
            "sessions/dt=2026-11-01/noregion.parquet",
            "sessions/dt=2026-11-01/x/1_r.parquet",
            "_runs/x.json",
        ] {
            assert_eq!(PartitionKey::parse(stray), None, "{stray}");
        }
    }

    #[test]
    fn manifest_keys_sort_into_chains_and_strays() {
        let key = manifest_key("123456789012", "eu-west-1", "20261128T010000Z-0a");
        assert_eq!(key, "_runs/123456789012_eu-west-1/20261128T010000Z-0a.json");
        assert_eq!(
            runs_entry(&key),
            RunsEntry::Chained {
                account_id: "123456789012".into(),
                region: "eu-west-1".into()
            }
        );
        assert_eq!(runs_entry(&signature_key(&key)), RunsEntry::Signature);
        assert_eq!(
            runs_entry("_runs/20261128T010000Z-0a.json"),
            RunsEntry::Unchained
        );
        for stray in [
            "_runs/x.txt",
            "_runs/../x.json",
            "_runs/1_eu-west-1/x.json",
            "_runs/123456789012_eu-west-1/a/b.json",
            "sessions/x.json",
        ] {
            assert_eq!(runs_entry(stray), RunsEntry::Other, "{stray}");
        }
    }

    #[test]
    fn partition_dates_are_utc_days() {
        let day = |y, m, d| NaiveDate::from_ymd_opt(y, m, d);
        assert_eq!(partition_date(0), day(1970, 1, 1));
        assert_eq!(partition_date(86_400_000 - 1), day(1970, 1, 1));
        assert_eq!(partition_date(86_400_000), day(1970, 1, 2));
        assert_eq!(partition_date(i64::MAX), None);
    }
}
