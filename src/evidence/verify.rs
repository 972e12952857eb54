//! `ssm-audit verify`: proves the data set is what its runs wrote. It walks
//! each (account, region)'s manifest chain (a manifest missing, altered,
//! reordered, forked or misplaced is a finding), compares the head file and
//! any head the operator kept (`--expect-head`), checks signatures when given
//! a public key, and hashes every data file against the newest manifest that
//! wrote it (changed, missing, or present but listed by none).

use futures_util::stream::{self, StreamExt};
use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::config::{AwsSettings, VerifyConfig, VerifyKeys};
use crate::dataset::chain::{ExpectedHead, ManifestSignature, MAX_EVIDENCE_BYTES};
use crate::dataset::layout::{self, RUNS_PREFIX, SESSIONS_PREFIX};
use crate::dataset::sha256_hex;
use crate::evidence::chain::{read_ledger, Entry, Ledger, Pair};
use crate::evidence::sign::Verifier;
use crate::storage::{Storage, StorageError};
use crate::text::printable;

/// The largest data file hashed: far above any partition ssm-audit writes.
const MAX_DATA_FILE_BYTES: u64 = 16 * 1024 * 1024 * 1024;

/// What verification found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyReport {
    pub manifests: usize,
    pub chains: Vec<ChainSummary>,
    pub files_checked: usize,
    /// Every data file hashed, with the object version read.
    pub checked: Vec<CheckedFile>,
    /// Where signatures were checked against, when they were.
    pub signatures_checked_with: Option<String>,
    pub findings: Vec<Finding>,
}

/// One (account, region)'s chain as verified.
#[derive(Debug, Clone, Serialize)]
pub struct ChainSummary {
    pub account_id: String,
    pub region: String,
    pub length: u64,
    /// `ACCOUNT/REGION=SEQUENCE:SHA256` of its newest manifest.
    pub head: Option<String>,
    pub signed: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckedFile {
    pub path: String,
    pub sha256: String,
    pub object_version: Option<String>,
    /// The manifest that vouches for it.
    pub manifest: String,
}

/// One thing that is not as the runs left it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub kind: FindingKind,
    /// The file, manifest or chain it is about.
    pub subject: String,
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING-KEBAB-CASE")]
pub enum FindingKind {
    /// A data file whose digest is not its newest manifest's.
    Changed,
    /// A data file a manifest lists that is not there.
    Missing,
    /// A data file no manifest lists.
    Unlisted,
    /// A manifest that does not parse.
    Unreadable,
    /// A sequence number with no manifest.
    Gap,
    /// A manifest whose predecessor's digest differs: the predecessor was
    /// altered, or this one forged.
    Broken,
    /// Two manifests with one sequence number.
    Fork,
    /// A manifest that finished before its predecessor.
    Reordered,
    /// A manifest outside its own chain's folder, or named for another run.
    Misplaced,
    /// A manifest from before chains that no chain vouches for.
    Unchained,
    /// The head file disagrees with the chain, or is missing.
    Head,
    /// The chain no longer reaches a head kept apart from the bucket.
    ExpectedHead,
    Unsigned,
    BadSignature,
}

impl std::fmt::Display for Finding {
    /// One line whatever the names hold: they come from listings and
    /// manifests, which anyone with write access shapes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:<9} {}", self.kind.label(), printable(&self.subject))?;
        if !self.detail.is_empty() {
            write!(f, " ({})", printable(&self.detail))?;
        }
        Ok(())
    }
}

impl FindingKind {
    fn label(self) -> &'static str {
        match self {
            FindingKind::Changed => "CHANGED",
            FindingKind::Missing => "MISSING",
            FindingKind::Unlisted => "UNLISTED",
            FindingKind::Unreadable => "UNREADABLE",
            FindingKind::Gap => "GAP",
            FindingKind::Broken => "BROKEN",
            FindingKind::Fork => "FORK",
            FindingKind::Reordered => "REORDERED",
            FindingKind::Misplaced => "MISPLACED",
            FindingKind::Unchained => "UNCHAINED",
            FindingKind::Head => "HEAD",
            FindingKind::ExpectedHead => "EXPECTED-HEAD",
            FindingKind::Unsigned => "UNSIGNED",
            FindingKind::BadSignature => "BAD-SIGNATURE",
        }
    }
}

impl VerifyReport {
    pub fn is_clean(&self) -> bool {
        self.findings.is_empty()
    }

    fn find(&mut self, kind: FindingKind, subject: impl Into<String>, detail: impl Into<String>) {
        self.findings.push(Finding {
            kind,
            subject: subject.into(),
            detail: detail.into(),
        });
    }

    /// One line, for reports and summaries.
    pub fn headline(&self) -> String {
        let signed = match &self.signatures_checked_with {
            Some(source) => format!("signatures checked with {}", printable(source)),
            None => "signatures not checked (no --public-key or --kms-key)".into(),
        };
        format!(
            "{} findings; {} files checked against {} run manifests in {} chains; {signed}",
            self.findings.len(),
            self.files_checked,
            self.manifests,
            self.chains.len()
        )
    }
}

impl std::fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for finding in &self.findings {
            writeln!(f, "{finding}")?;
        }
        for chain in &self.chains {
            writeln!(
                f,
                "chain     {}/{}: {} manifests, {} signed, head {}",
                chain.account_id,
                chain.region,
                chain.length,
                chain.signed,
                chain.head.as_deref().map(printable).unwrap_or_default()
            )?;
        }
        let count = |kind| self.findings.iter().filter(|f| f.kind == kind).count();
        write!(
            f,
            "{} files checked against {} run manifests: {} changed, {} missing, {} unlisted; {} findings in all",
            self.files_checked,
            self.manifests,
            count(FindingKind::Changed),
            count(FindingKind::Missing),
            count(FindingKind::Unlisted),
            self.findings.len(),
        )?;
        match &self.signatures_checked_with {
            Some(source) => write!(f, "; signatures checked with {}", printable(source)),
            None => write!(
                f,
                "; signatures not checked (give --public-key or --kms-key)"
            ),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("{location} holds no run manifests under {RUNS_PREFIX}: is it an ssm-audit output?")]
    NoManifests { location: String },
    #[error("{location} holds no ssm-audit data set (nothing under {SESSIONS_PREFIX} or {RUNS_PREFIX}); check the location")]
    NoDataSet { location: String },
    #[error("--expect-head {0} names no (account, region) and the data set has {1}; write it as ACCOUNT/REGION=SEQUENCE:SHA256")]
    AmbiguousHead(String, usize),
    /// Verification ran and found differences (exit code 6).
    #[error("the data set differs from what its runs wrote")]
    Differences,
}

/// What to hold the data set to, beyond its own manifests.
#[derive(Debug, Default)]
pub struct VerifyOptions {
    pub expect_heads: Vec<ExpectedHead>,
    pub verifier: Option<Verifier>,
    /// Hash only the partitions of these days (a report's period); None:
    /// every file. Chains and signatures are always checked whole.
    pub files_between: Option<(chrono::NaiveDate, chrono::NaiveDate)>,
    /// The data files the caller already listed and read (a report, whose
    /// statement must be about the bytes it summed up); None: list and read
    /// them here.
    pub files_seen: Option<FilesSeen>,
}

/// What a caller found below `sessions/`, handed to [`verify_ledger`] so that
/// it neither lists nor reads again what was just listed and read.
#[derive(Debug, Default)]
pub struct FilesSeen {
    /// Every key below `sessions/` when it was listed.
    pub listed: Vec<String>,
    /// The files read, by key: what their bytes hashed to. A file listed but
    /// not here is read by the check.
    pub read: BTreeMap<String, HashedFile>,
}

/// A data file as read: the SHA-256 of its bytes, and the storage's version
/// of the object (S3 version IDs) when it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashedFile {
    pub sha256: String,
    pub object_version: Option<String>,
}

impl HashedFile {
    pub fn of(file: &crate::storage::Versioned) -> HashedFile {
        HashedFile {
            sha256: sha256_hex(&file.data),
            object_version: file.object_version.clone(),
        }
    }
}

/// Reads a data file for hashing, bounded: a file larger than any partition
/// ssm-audit writes is not read whole.
pub async fn read_data_file<S: Storage>(
    storage: &S,
    key: &str,
) -> Result<Option<crate::storage::Versioned>, StorageError> {
    storage.get_versioned(key, MAX_DATA_FILE_BYTES).await
}

/// Refuses a location that holds no data set (it does not exist, or is not
/// an ssm-audit output): a report from it would say "nobody connected". An
/// existing data set with nothing in a period is another matter.
pub async fn require_data_set<S: Storage>(storage: &S) -> Result<(), VerifyError> {
    if storage.holds_any(SESSIONS_PREFIX).await? || storage.holds_any(RUNS_PREFIX).await? {
        return Ok(());
    }
    Err(VerifyError::NoDataSet {
        location: storage.location(),
    })
}

/// Runs `verify`: the key to check signatures with, then the data set.
pub async fn run(config: &VerifyConfig) -> Result<VerifyReport, VerifyRunError> {
    let storage = crate::aws::storage_for(&config.output, None, &config.aws, &config.s3).await?;
    let options = options_for(&config.keys, &config.aws).await?;
    Ok(verify(&storage, &options).await?)
}

/// The options `keys` ask for: the public key read from its file, or from
/// KMS (kms:GetPublicKey only).
pub async fn options_for(
    keys: &VerifyKeys,
    aws: &AwsSettings,
) -> Result<VerifyOptions, VerifyRunError> {
    let verifier = match (&keys.public_key, &keys.kms_key) {
        (Some(path), _) => Some(Verifier::from_public_key_file(path)?),
        (None, Some(key)) => {
            let sdk_config = crate::aws::load_sdk_config(aws).await?;
            Some(Verifier::from_kms(&crate::aws::kms_client(&sdk_config), key).await?)
        }
        (None, None) => None,
    };
    Ok(VerifyOptions {
        expect_heads: keys.expect_heads.clone(),
        verifier,
        files_between: None,
        files_seen: None,
    })
}

/// Why `verify` could not run (findings are not errors: see
/// [`VerifyReport::is_clean`]).
#[derive(Debug, thiserror::Error)]
pub enum VerifyRunError {
    #[error(transparent)]
    Aws(#[from] crate::aws::AwsError),
    #[error(transparent)]
    Key(#[from] crate::evidence::sign::SignError),
    #[error(transparent)]
    Verify(#[from] VerifyError),
}

/// Verifies the whole data set.
pub async fn verify<S: Storage>(
    storage: &S,
    options: &VerifyOptions,
) -> Result<VerifyReport, VerifyError> {
    require_data_set(storage).await?;
    verify_ledger(storage, &read_ledger(storage).await?, options).await
}

/// Verifies a data set whose manifests are already read (a report measures
/// coverage from them too).
pub async fn verify_ledger<S: Storage>(
    storage: &S,
    ledger: &Ledger,
    options: &VerifyOptions,
) -> Result<VerifyReport, VerifyError> {
    if ledger.is_empty() {
        return Err(VerifyError::NoManifests {
            location: storage.location(),
        });
    }
    let mut report = VerifyReport {
        manifests: ledger.manifests(),
        signatures_checked_with: options.verifier.as_ref().map(|v| v.source.clone()),
        ..VerifyReport::default()
    };
    for (key, reason) in &ledger.unreadable {
        report.find(
            FindingKind::Unreadable,
            key,
            format!("{reason}; it vouches for nothing"),
        );
    }
    for (pair, entries) in &ledger.chains {
        walk_chain(&mut report, pair, entries);
    }
    check_heads(&mut report, ledger);
    check_expected_heads(&mut report, ledger, &options.expect_heads)?;
    check_unchained(&mut report, ledger);
    if let Some(verifier) = &options.verifier {
        check_signatures(storage, &mut report, ledger, verifier).await?;
    }
    check_files(
        storage,
        &mut report,
        ledger,
        options.files_between,
        options.files_seen.as_ref(),
    )
    .await?;
    Ok(report)
}

/// Sequence numbers from 1 without gaps or forks, each link naming its
/// predecessor's digest, finishing after it, in its own folder.
fn walk_chain(report: &mut VerifyReport, (account, region): &Pair, entries: &[Entry]) {
    let mut by_sequence: BTreeMap<u64, Vec<&Entry>> = BTreeMap::new();
    for entry in entries {
        let manifest = &entry.manifest;
        let expected_key = layout::manifest_key(account, region, &manifest.run_id);
        if manifest.account_id != *account
            || manifest.region != *region
            || entry.key != expected_key
        {
            report.find(
                FindingKind::Misplaced,
                &entry.key,
                format!(
                    "it is run {} of {}/{}, which belongs at {expected_key}",
                    manifest.run_id, manifest.account_id, manifest.region
                ),
            );
        }
        match entry.sequence() {
            Some(sequence) => by_sequence.entry(sequence).or_default().push(entry),
            None => report.find(
                FindingKind::Broken,
                &entry.key,
                "it is in a chain's folder but has no link",
            ),
        }
    }
    let last = by_sequence.keys().next_back().copied().unwrap_or(0);
    let mut previous: Option<&Entry> = None;
    for sequence in 1..=last {
        let Some(here) = by_sequence.get(&sequence) else {
            let detail = match previous {
                Some(before) => format!(
                    "no manifest has it: removed; the one before is {}",
                    before.key
                ),
                None => "no manifest has it: removed".to_owned(),
            };
            report.find(
                FindingKind::Gap,
                format!("{account}/{region} sequence {sequence}"),
                detail,
            );
            previous = None;
            continue;
        };
        if here.len() > 1 {
            report.find(
                FindingKind::Fork,
                format!("{account}/{region} sequence {sequence}"),
                format!(
                    "{} manifests claim it: {}",
                    here.len(),
                    here.iter()
                        .map(|e| e.key.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        }
        for entry in here {
            let Some(link) = &entry.manifest.chain else {
                continue;
            };
            match (sequence, &link.previous_sha256, previous) {
                (1, None, _) => {}
                (1, Some(_), _) => report.find(
                    FindingKind::Broken,
                    &entry.key,
                    "sequence 1 names a predecessor",
                ),
                (_, None, _) => report.find(
                    FindingKind::Broken,
                    &entry.key,
                    format!("sequence {sequence} says it is the first"),
                ),
                (_, Some(named), Some(before)) if *named != before.sha256 => report.find(
                    FindingKind::Broken,
                    &entry.key,
                    format!(
                        "it names sha256 {named} before it, but {} (sequence {}) has {}: that one was altered, or this one forged",
                        before.key,
                        sequence - 1,
                        before.sha256
                    ),
                ),
                (_, Some(_), Some(before))
                    if finished(&entry.manifest) < finished(&before.manifest) =>
                {
                    report.find(
                        FindingKind::Reordered,
                        &entry.key,
                        format!(
                            "it finished at {}, before {} (sequence {}) at {}",
                            entry.manifest.finished_at,
                            before.key,
                            sequence - 1,
                            before.manifest.finished_at
                        ),
                    )
                }
                _ => {}
            }
        }
        previous = (here.len() == 1).then(|| here[0]);
    }
    let head = by_sequence
        .iter()
        .next_back()
        .filter(|(_, e)| e.len() == 1)
        .map(|(sequence, e)| format!("{account}/{region}={sequence}:{}", e[0].sha256));
    report.chains.push(ChainSummary {
        account_id: account.clone(),
        region: region.clone(),
        length: last,
        head,
        signed: 0,
    });
}

fn finished(
    manifest: &crate::dataset::manifest::RunManifest,
) -> Option<chrono::DateTime<chrono::FixedOffset>> {
    chrono::DateTime::parse_from_rfc3339(&manifest.finished_at).ok()
}

/// The newest link of each chain, as its entries say.
fn newest(entries: &[Entry]) -> Option<&Entry> {
    let last = entries.iter().filter_map(Entry::sequence).max()?;
    let mut at_last = entries.iter().filter(|e| e.sequence() == Some(last));
    let newest = at_last.next()?;
    at_last.next().is_none().then_some(newest)
}

/// Each chain's head file names its newest manifest.
fn check_heads(report: &mut VerifyReport, ledger: &Ledger) {
    for (pair, entries) in &ledger.chains {
        let subject = layout::chain_head_key(&pair.0, &pair.1);
        let Some(newest) = newest(entries) else {
            continue;
        };
        match ledger.heads.get(pair) {
            None => report.find(
                FindingKind::Head,
                subject,
                "missing: the chain's head file was removed",
            ),
            Some(Err(reason)) => {
                report.find(FindingKind::Head, subject, format!("unreadable: {reason}"))
            }
            Some(Ok(head)) => {
                let sequence = newest.sequence().unwrap_or(0);
                if head.sequence != sequence || head.sha256 != newest.sha256 {
                    report.find(
                        FindingKind::Head,
                        subject,
                        format!(
                            "it names sequence {} with sha256 {}, the chain ends at sequence {sequence} ({}) with {}",
                            head.sequence, head.sha256, newest.key, newest.sha256
                        ),
                    );
                }
            }
        }
    }
    for (pair, head) in &ledger.heads {
        if !ledger.chains.contains_key(pair) {
            let detail = match head {
                Ok(head) => format!(
                    "it names sequence {} ({}), but no manifest of {}/{} is left",
                    head.sequence, head.manifest, pair.0, pair.1
                ),
                Err(reason) => {
                    format!("unreadable ({reason}), and no manifest of its chain is left")
                }
            };
            report.find(
                FindingKind::Head,
                layout::chain_head_key(&pair.0, &pair.1),
                detail,
            );
        }
    }
}

/// The chain still holds each kept head, unchanged, so nothing after it was
/// cut off (a head file in the bucket can be rewritten; a kept one cannot).
fn check_expected_heads(
    report: &mut VerifyReport,
    ledger: &Ledger,
    expected: &[ExpectedHead],
) -> Result<(), VerifyError> {
    for head in expected {
        let pair = match &head.pair {
            Some(pair) => pair.clone(),
            None if ledger.chains.len() == 1 => {
                ledger.chains.keys().next().cloned().unwrap_or_default()
            }
            None => {
                return Err(VerifyError::AmbiguousHead(
                    format!("{}:{}", head.sequence, head.sha256),
                    ledger.chains.len(),
                ))
            }
        };
        let subject = format!("{}/{}={}:{}", pair.0, pair.1, head.sequence, head.sha256);
        let entries = ledger
            .chains
            .get(&pair)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let at: Vec<&Entry> = entries
            .iter()
            .filter(|e| e.sequence() == Some(head.sequence))
            .collect();
        let last = entries
            .iter()
            .filter_map(Entry::sequence)
            .max()
            .unwrap_or(0);
        if at.iter().any(|e| e.sha256 == head.sha256) {
            continue;
        }
        let detail = if at.is_empty() && last < head.sequence {
            format!("the chain ends at sequence {last}: the manifests after it were removed")
        } else if at.is_empty() {
            format!("no manifest has sequence {}: removed", head.sequence)
        } else {
            format!(
                "sequence {} is {} with sha256 {}: the chain was rewritten",
                head.sequence, at[0].key, at[0].sha256
            )
        };
        report.find(FindingKind::ExpectedHead, subject, detail);
    }
    Ok(())
}

/// Unchained manifests are fine where no chain has started; where one has,
/// its first link must vouch for each by digest.
fn check_unchained(report: &mut VerifyReport, ledger: &Ledger) {
    for entry in &ledger.unchained {
        let pair = (
            entry.manifest.account_id.clone(),
            entry.manifest.region.clone(),
        );
        let Some(entries) = ledger.chains.get(&pair) else {
            continue;
        };
        let adopted = entries
            .iter()
            .filter(|e| e.sequence() == Some(1))
            .filter_map(|e| e.manifest.chain.as_ref())
            .flat_map(|link| link.adopted.iter())
            .find(|a| a.manifest == entry.key);
        match adopted {
            Some(a) if a.sha256 == entry.sha256 => {}
            Some(a) => report.find(
                FindingKind::Unchained,
                &entry.key,
                format!(
                    "the chain adopted it with sha256 {}, it has {}: altered",
                    a.sha256, entry.sha256
                ),
            ),
            None => report.find(
                FindingKind::Unchained,
                &entry.key,
                format!(
                    "written outside {}/{}'s chain, which does not vouch for it",
                    pair.0, pair.1
                ),
            ),
        }
    }
}

/// Every chained manifest carries a valid signature by the given key.
async fn check_signatures<S: Storage>(
    storage: &S,
    report: &mut VerifyReport,
    ledger: &Ledger,
    verifier: &Verifier,
) -> Result<(), VerifyError> {
    for (pair, entries) in &ledger.chains {
        let mut signed = 0;
        let mut reads = stream::iter(entries)
            .map(|entry| async move {
                let key = layout::signature_key(&entry.key);
                let read = if ledger.signatures.contains(&key) {
                    Some(storage.get_versioned(&key, MAX_EVIDENCE_BYTES).await)
                } else {
                    None
                };
                (entry, key, read)
            })
            .buffered(crate::storage::REQUESTS_AT_ONCE);
        while let Some((entry, key, read)) = reads.next().await {
            let Some(read) = read else {
                report.find(FindingKind::Unsigned, &entry.key, format!("no {key}"));
                continue;
            };
            let parsed = match read {
                Ok(Some(found)) => serde_json::from_slice::<ManifestSignature>(&found.data)
                    .map_err(|e| format!("unreadable: {e}")),
                Ok(None) => Err("removed while verifying".into()),
                Err(StorageError::TooLarge { limit, .. }) => {
                    Err(format!("larger than {limit} bytes"))
                }
                Err(e) => return Err(e.into()),
            };
            match parsed.and_then(|s| verifier.check(&s, &entry.sha256)) {
                Ok(()) => signed += 1,
                Err(reason) => report.find(FindingKind::BadSignature, &entry.key, reason),
            }
        }
        if let Some(summary) = report
            .chains
            .iter_mut()
            .find(|c| c.account_id == pair.0 && c.region == pair.1)
        {
            summary.signed = signed;
        }
    }
    Ok(())
}

/// Each data file against the newest manifest that wrote it: unchained
/// manifests first (by finish time), then each chain in sequence. Files the
/// caller already read (`seen`) are checked as they were read.
async fn check_files<S: Storage>(
    storage: &S,
    report: &mut VerifyReport,
    ledger: &Ledger,
    between: Option<(chrono::NaiveDate, chrono::NaiveDate)>,
    seen: Option<&FilesSeen>,
) -> Result<(), VerifyError> {
    let wanted = |path: &str| match (between, layout::PartitionKey::parse(path)) {
        (Some((from, to)), Some(partition)) => (from..=to).contains(&partition.date),
        _ => true,
    };
    let mut unchained: Vec<&Entry> = ledger.unchained.iter().collect();
    unchained.sort_by(|a, b| {
        (&a.manifest.finished_at, &a.manifest.run_id)
            .cmp(&(&b.manifest.finished_at, &b.manifest.run_id))
    });
    let mut expected: BTreeMap<String, (String, String)> = BTreeMap::new();
    for entry in unchained
        .into_iter()
        .chain(ledger.chains.values().flatten())
    {
        for file in &entry.manifest.files {
            if wanted(&file.path) {
                expected.insert(file.path.clone(), (file.sha256.clone(), entry.key.clone()));
            }
        }
    }
    let present: BTreeSet<String> = match seen {
        Some(seen) => seen.listed.clone(),
        None => storage.list(SESSIONS_PREFIX).await?,
    }
    .into_iter()
    .filter(|p| wanted(p))
    .collect();
    // Read ahead a few files at a time (S3 answers one in tens of
    // milliseconds); each is hashed as it arrives and dropped.
    let mut reads = stream::iter(&expected)
        .map(|(path, expected)| async move {
            if let Some(hashed) = seen.and_then(|s| s.read.get(path)) {
                return (path, expected, Ok(Some(hashed.clone())));
            }
            let read = read_data_file(storage, path).await;
            let hashed = read.map(|found| found.as_ref().map(HashedFile::of));
            (path, expected, hashed)
        })
        .buffered(crate::storage::REQUESTS_AT_ONCE);
    while let Some((path, (sha256, manifest), read)) = reads.next().await {
        let found = match read {
            Ok(found) => found,
            Err(StorageError::TooLarge { limit, .. }) => {
                report.find(
                    FindingKind::Changed,
                    path,
                    format!("larger than {limit} bytes"),
                );
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let Some(found) = found else {
            report.find(FindingKind::Missing, path, format!("{manifest} lists it"));
            continue;
        };
        report.files_checked += 1;
        let HashedFile {
            sha256: actual,
            object_version,
        } = found;
        if actual != *sha256 {
            report.find(
                FindingKind::Changed,
                path,
                format!("{manifest} wrote sha256 {sha256}, found {actual}"),
            );
        }
        report.checked.push(CheckedFile {
            path: path.clone(),
            sha256: actual,
            object_version,
            manifest: manifest.clone(),
        });
    }
    for path in present.into_iter().filter(|p| !expected.contains_key(p)) {
        report.find(
            FindingKind::Unlisted,
            path,
            "present, but no run manifest wrote it",
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::manifest::{ApiCounts, RunManifest, SessionCounts, WrittenFile};
    use crate::storage::watched::Watched;
    use crate::storage::LocalStorage;
    use bytes::Bytes;

    fn written(path: &str, data: &[u8]) -> WrittenFile {
        WrittenFile {
            path: path.into(),
            rows: 1,
            bytes: data.len() as u64,
            sha256: sha256_hex(data),
        }
    }

    /// A data set of one manifest written before chains, listing `files`.
    fn ledger_of(files: Vec<WrittenFile>) -> Ledger {
        let manifest = RunManifest {
            manifest_version: 1,
            run_id: "run-1".into(),
            resumed_from: None,
            attempts: 1,
            tool_version: "test".into(),
            started_at: "2026-11-02T00:00:00Z".into(),
            finished_at: "2026-11-02T00:01:00Z".into(),
            output: "/test".into(),
            account_id: "123456789012".into(),
            region: "eu-west-1".into(),
            config: serde_json::Value::Null,
            window: String::new(),
            sessions: SessionCounts::default(),
            api: ApiCounts::default(),
            files,
            pending: Vec::new(),
            crawled: None,
            chain: None,
        };
        Ledger {
            unchained: vec![Entry {
                key: "_runs/run-1.json".into(),
                sha256: String::new(),
                manifest,
            }],
            ..Ledger::default()
        }
    }

    #[tokio::test]
    async fn files_the_caller_read_are_checked_as_read_and_the_rest_read_here() {
        let dir = tempfile::tempdir().expect("tempdir");
        let local = LocalStorage::new(dir.path());
        let key = |n: u32| format!("sessions/dt=2026-11-0{n}/123456789012_eu-west-1.parquet");
        for n in 1..=4 {
            local
                .put(&key(n), Bytes::from(format!("file {n}")))
                .await
                .expect("put");
        }
        // 1 and 2 were read by the caller, 2 changed since its manifest; 3
        // was not read; 4 no manifest wrote; 5 is gone.
        let ledger = ledger_of(
            (1..=3)
                .map(|n| written(&key(n), format!("file {n}").as_bytes()))
                .chain([written(&key(2), b"file 2 as written")])
                .chain([written(&key(5), b"file 5")])
                .collect(),
        );
        let seen = FilesSeen {
            listed: (1..=4).map(key).collect(),
            read: [1, 2]
                .map(|n| {
                    let hashed = HashedFile {
                        sha256: sha256_hex(format!("file {n}").as_bytes()),
                        object_version: None,
                    };
                    (key(n), hashed)
                })
                .into(),
        };
        let storage = Watched::new(local);
        let mut report = VerifyReport::default();
        check_files(&storage, &mut report, &ledger, None, Some(&seen))
            .await
            .expect("checked");
        assert!(storage.lists().is_empty(), "the caller's listing is used");
        assert_eq!(
            storage.reads(),
            BTreeMap::from([(key(3), 1), (key(5), 1)]),
            "only what the caller did not read"
        );
        assert_eq!(report.files_checked, 3);
        let found: Vec<(FindingKind, String)> = report
            .findings
            .iter()
            .map(|f| (f.kind, f.subject.clone()))
            .collect();
        assert_eq!(
            found,
            [
                (FindingKind::Changed, key(2)),
                (FindingKind::Missing, key(5)),
                (FindingKind::Unlisted, key(4)),
            ]
        );
    }
}
