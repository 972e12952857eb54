//! Reading the manifest chains: [`next_link`] finds where an export's
//! manifest joins its (account, region)'s chain (from the head file, then
//! forward over any manifest a crash left before the head moved), and
//! [`read_ledger`] reads every manifest, signature and head of a data set
//! for `verify` and `coverage`.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use futures_util::stream::{self, StreamExt};

use crate::dataset::chain::{AdoptedManifest, ChainHead, ChainLink, MAX_EVIDENCE_BYTES};
use crate::dataset::layout::{self, RunsEntry, CHAIN_PREFIX, RUNS_PREFIX};
use crate::dataset::manifest::{readable_version, RunManifest, MAX_MANIFEST_BYTES};
use crate::dataset::sha256_hex;
use crate::storage::{Storage, StorageError};

/// One (account, region).
pub type Pair = (String, String);

/// A manifest as read: its key, the digest of its bytes, and its content.
#[derive(Debug, Clone)]
pub struct Entry {
    pub key: String,
    pub sha256: String,
    pub manifest: RunManifest,
}

impl Entry {
    pub fn sequence(&self) -> Option<u64> {
        self.manifest.chain.as_ref().map(|c| c.sequence)
    }
}

/// Everything below `_runs/` and `_chain/`, sorted.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Chained manifests by the folder they are in, by (sequence, key).
    pub chains: BTreeMap<Pair, Vec<Entry>>,
    /// Manifests from before chains (format 1, `_runs/<run_id>.json`).
    pub unchained: Vec<Entry>,
    /// Keys of the signatures present.
    pub signatures: BTreeSet<String>,
    /// Head files by pair; Err holds why one is unreadable.
    pub heads: BTreeMap<Pair, Result<ChainHead, String>>,
    /// Manifests that could not be read, with the reason.
    pub unreadable: Vec<(String, String)>,
    /// Other files below `_runs/` or `_chain/`.
    pub strays: Vec<String>,
}

impl Ledger {
    pub fn manifests(&self) -> usize {
        self.chains.values().map(Vec::len).sum::<usize>() + self.unchained.len()
    }

    pub fn is_empty(&self) -> bool {
        self.manifests() == 0 && self.unreadable.is_empty()
    }
}

/// Reads a manifest, bounded; Ok(None) when it vanished since listed.
async fn read_entry<S: Storage>(
    storage: &S,
    key: &str,
) -> Result<Option<Result<Entry, String>>, StorageError> {
    let bytes = match storage.get_versioned(key, MAX_MANIFEST_BYTES).await {
        Ok(Some(found)) => found.data,
        Ok(None) => return Ok(None),
        Err(StorageError::TooLarge { limit, .. }) => {
            return Ok(Some(Err(format!("it is larger than {limit} bytes"))))
        }
        Err(e) => return Err(e),
    };
    Ok(Some(parse_entry(key, &bytes)))
}

fn parse_entry(key: &str, bytes: &[u8]) -> Result<Entry, String> {
    let manifest: RunManifest = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    if !readable_version(manifest.manifest_version) {
        return Err(format!(
            "format version {} is not one this ssm-audit reads",
            manifest.manifest_version
        ));
    }
    Ok(Entry {
        key: key.to_owned(),
        sha256: sha256_hex(bytes),
        manifest,
    })
}

/// Reads every manifest, signature name and head of the data set.
pub async fn read_ledger<S: Storage>(storage: &S) -> Result<Ledger, StorageError> {
    let mut ledger = Ledger::default();
    let mut manifests = Vec::new();
    for key in storage.list(RUNS_PREFIX).await? {
        let pair = match layout::runs_entry(&key) {
            RunsEntry::Signature => {
                ledger.signatures.insert(key);
                continue;
            }
            RunsEntry::Other => {
                ledger.strays.push(key);
                continue;
            }
            RunsEntry::Chained { account_id, region } => Some((account_id, region)),
            RunsEntry::Unchained => None,
        };
        manifests.push((key, pair));
    }
    // A few manifests in flight at once, in order.
    let mut reads = stream::iter(manifests)
        .map(|(key, pair)| async move {
            let read = read_entry(storage, &key).await;
            (key, pair, read)
        })
        .buffered(crate::storage::REQUESTS_AT_ONCE);
    while let Some((key, pair, read)) = reads.next().await {
        match read? {
            None => {}
            Some(Err(reason)) => ledger.unreadable.push((key, reason)),
            Some(Ok(entry)) => match pair {
                Some(pair) => ledger.chains.entry(pair).or_default().push(entry),
                None => ledger.unchained.push(entry),
            },
        }
    }
    for entries in ledger.chains.values_mut() {
        entries.sort_by(|a, b| (a.sequence(), &a.key).cmp(&(b.sequence(), &b.key)));
    }
    for key in storage.list(CHAIN_PREFIX).await? {
        let pair = key
            .strip_prefix(CHAIN_PREFIX)
            .and_then(|f| f.strip_suffix(".json"))
            .and_then(|stem| stem.split_once('_'))
            .filter(|(a, r)| layout::check_account_id(a).is_ok() && layout::check_region(r).is_ok())
            .map(|(a, r)| (a.to_owned(), r.to_owned()));
        let Some(pair) = pair else {
            ledger.strays.push(key);
            continue;
        };
        let head = match storage.get_versioned(&key, MAX_EVIDENCE_BYTES).await {
            Ok(Some(found)) => {
                serde_json::from_slice::<ChainHead>(&found.data).map_err(|e| e.to_string())
            }
            Ok(None) => continue,
            Err(StorageError::TooLarge { limit, .. }) => {
                Err(format!("it is larger than {limit} bytes"))
            }
            Err(e) => return Err(e),
        };
        ledger.heads.insert(pair, head);
    }
    Ok(ledger)
}

/// The end of the window that the run at the head of (account, region)'s
/// chain crawled: how far a pair that failed tonight is still covered.
/// None when the pair has no readable head or manifest.
pub async fn covered_until<S: Storage>(
    storage: &S,
    account_id: &str,
    region: &str,
) -> Option<chrono::DateTime<chrono::Utc>> {
    let head_key = layout::chain_head_key(account_id, region);
    let found = storage
        .get_versioned(&head_key, MAX_EVIDENCE_BYTES)
        .await
        .ok()??;
    let head: ChainHead = serde_json::from_slice(&found.data).ok()?;
    match read_entry(storage, &head.manifest).await {
        Ok(Some(Ok(entry))) => entry.manifest.crawled().map(|c| c.end),
        _ => None,
    }
}

/// Where the next manifest of (account, region) joins the chain.
pub async fn next_link<S: Storage>(
    storage: &S,
    account_id: &str,
    region: &str,
) -> Result<ChainLink, StorageError> {
    let head_key = layout::chain_head_key(account_id, region);
    let head = match storage.get_versioned(&head_key, MAX_EVIDENCE_BYTES).await? {
        Some(found) => match serde_json::from_slice::<ChainHead>(&found.data) {
            Ok(head) => Some(head),
            Err(error) => {
                tracing::warn!(key = %head_key, %error, "the chain's head file is unreadable; continuing from the manifests (verify reports it)");
                None
            }
        },
        None => None,
    };
    let keys: Vec<String> = storage
        .list(&layout::chain_prefix(account_id, region))
        .await?
        .into_iter()
        .filter(|k| matches!(layout::runs_entry(k), RunsEntry::Chained { .. }))
        .collect();
    let scan_from: Vec<String> = match &head {
        // A run that crashed after writing its manifest left the head one
        // behind: follow links forward from the head.
        // Run ids begin with their start second, and two runs can share
        // one: compare that, not the whole name.
        Some(head) => {
            let since = started_second(&head.manifest);
            keys.into_iter()
                .filter(|k| *k != head.manifest && started_second(k) >= since)
                .collect()
        }
        None if keys.is_empty() => Vec::new(),
        None => {
            tracing::warn!(account_id, region, "the chain has no head file; continuing from its highest sequence (verify reports the missing head)");
            keys
        }
    };
    let mut candidates = Vec::new();
    for key in scan_from {
        if let Some(Ok(entry)) = read_entry(storage, &key).await? {
            if let Some(link) = &entry.manifest.chain {
                candidates.push((link.sequence, link.previous_sha256.clone(), entry.sha256));
            }
        }
    }
    candidates.sort_by_key(|c| c.0);
    let mut newest: Option<(u64, String)> = head.map(|h| (h.sequence, h.sha256));
    let trusted_head = newest.is_some();
    for (sequence, previous, sha256) in candidates {
        let follows = match &newest {
            Some((head_sequence, head_sha)) if trusted_head => {
                sequence == head_sequence + 1 && previous.as_deref() == Some(head_sha.as_str())
            }
            // No head file: the highest sequence wins.
            _ => true,
        };
        if follows {
            newest = Some((sequence, sha256));
        }
    }
    Ok(match newest {
        Some((sequence, sha256)) => ChainLink {
            sequence: sequence + 1,
            previous_sha256: Some(sha256),
            adopted: Vec::new(),
        },
        None => ChainLink {
            sequence: 1,
            previous_sha256: None,
            adopted: unchained_of(storage, account_id, region).await?,
        },
    })
}

/// The start second a manifest's run id begins with (`20261128T010000Z`).
fn started_second(key: &str) -> &str {
    let name = key.rsplit('/').next().unwrap_or(key);
    name.split('-').next().unwrap_or(name)
}

/// The unchained manifests of (account, region), for the first link to
/// vouch for.
async fn unchained_of<S: Storage>(
    storage: &S,
    account_id: &str,
    region: &str,
) -> Result<Vec<AdoptedManifest>, StorageError> {
    let mut adopted = Vec::new();
    for key in storage.list(RUNS_PREFIX).await? {
        if layout::runs_entry(&key) != RunsEntry::Unchained {
            continue;
        }
        if let Some(Ok(entry)) = read_entry(storage, &key).await? {
            if entry.manifest.account_id == account_id && entry.manifest.region == region {
                adopted.push(AdoptedManifest {
                    manifest: key,
                    sha256: entry.sha256,
                });
            }
        }
    }
    Ok(adopted)
}

/// Moves the head of (account, region)'s chain to the manifest just written.
pub async fn write_head<S: Storage>(storage: &S, head: &ChainHead) -> Result<(), StorageError> {
    let bytes = serde_json::to_vec_pretty(head).unwrap_or_default();
    storage
        .put(
            &layout::chain_head_key(&head.account_id, &head.region),
            Bytes::from(bytes),
        )
        .await
}
