//! Many (account, region) pairs in one run: which pairs (accounts times
//! regions, less exclusions, this shard's share), the plan a `--dry-run`
//! prints, one SDK configuration per account (an assumed role, shared by its
//! regions), the pairs run concurrently (`--pairs-at-once`) under the one
//! bound of requests in flight, and the status file that lists every pair
//! with its outcome. A pair that fails never stops the others; a rerun
//! within `--retry-window` of a partial run crawls only what failed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;

use crate::aws;
use crate::config::{ExportConfig, Regions, Shard};
use crate::dataset::layout;
use crate::dataset::sha256_hex;
use crate::evidence::chain;
use crate::shutdown::CancellationToken;
use crate::storage::{AnyStorage, Storage};

use super::{run_pair, ExportError, RunOutcome, Shared};

/// One (account, region).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Pair {
    pub account_id: String,
    pub region: String,
}

impl std::fmt::Display for Pair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.account_id, self.region)
    }
}

/// A pair that did not complete, and why.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FailedPair {
    pub account_id: String,
    pub region: String,
    pub reason: String,
    /// The end of the window its newest completed run crawled, if any: the
    /// metrics' coverage age for a pair that failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub covered_until: Option<chrono::DateTime<chrono::Utc>>,
}

/// Reads how far each failed pair's newest completed run reached (its chain
/// head and that manifest: two reads a pair), `at_once` pairs at a time.
async fn read_coverage(output: &Arc<AnyStorage>, failed: &mut [FailedPair], at_once: usize) {
    let gate = Arc::new(tokio::sync::Semaphore::new(at_once.max(1)));
    let mut reads = JoinSet::new();
    for (index, pair) in failed.iter().enumerate() {
        let Ok(permit) = gate.clone().acquire_owned().await else {
            break;
        };
        let output = output.clone();
        let (account_id, region) = (pair.account_id.clone(), pair.region.clone());
        reads.spawn(async move {
            let _permit = permit;
            let until = chain::covered_until(output.as_ref(), &account_id, &region).await;
            (index, until)
        });
    }
    while let Some(joined) = reads.join_next().await {
        if let Ok((index, until)) = joined {
            failed[index].covered_until = until;
        }
    }
}

/// The shard (0-based) a pair belongs to among `count`: a hash of account
/// and region, so every task computes the same split with no coordination,
/// and pairs spread evenly whatever their names.
pub fn shard_of(pair: &Pair, count: u32) -> u32 {
    let digest = sha256_hex(format!("{}/{}", pair.account_id, pair.region).as_bytes());
    let head = u64::from_str_radix(&digest[..16], 16).unwrap_or(0);
    (head % u64::from(count.max(1))) as u32
}

/// Accounts times regions, less `exclude`, this shard's share, sorted.
pub fn pairs_of(
    accounts: &[String],
    regions: &[String],
    exclude: &[String],
    shard: Option<Shard>,
) -> Vec<Pair> {
    let excluded: BTreeSet<&str> = exclude.iter().map(String::as_str).collect();
    let mut pairs: Vec<Pair> = accounts
        .iter()
        .filter(|a| !excluded.contains(a.as_str()))
        .flat_map(|account| {
            regions.iter().map(move |region| Pair {
                account_id: account.clone(),
                region: region.clone(),
            })
        })
        .filter(|pair| shard.is_none_or(|s| shard_of(pair, s.count) == s.index))
        .collect();
    pairs.sort();
    pairs.dedup();
    pairs
}

/// What a run would do.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub accounts: usize,
    pub regions: usize,
    pub shard: Option<String>,
    pub pairs: Vec<Pair>,
    /// Windows each pair starts with: the Active list and one History
    /// window; more only where the data proves heavy.
    pub windows_per_pair: usize,
    /// DescribeSessions calls at the least: one per starting window (an
    /// empty pair costs exactly this).
    pub calls_at_least: u64,
    /// STS calls: one AssumeRole per account (and one GetCallerIdentity
    /// through it), renewed after `--role-duration`.
    pub sts_calls: u64,
}

impl std::fmt::Display for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for pair in &self.pairs {
            writeln!(f, "pair {pair}")?;
        }
        write!(
            f,
            "plan: {} pairs ({} accounts x {} regions{}), {} windows each to start; at least {} DescribeSessions calls (an empty pair costs {}, a busy one about 1.15 per 200 sessions more), {} STS calls",
            self.pairs.len(),
            self.accounts,
            self.regions,
            self.shard
                .as_ref()
                .map(|s| format!(", shard {s}"))
                .unwrap_or_default(),
            self.windows_per_pair,
            self.calls_at_least,
            self.windows_per_pair,
            self.sts_calls,
        )
    }
}

fn plan(config: &ExportConfig, pairs: Vec<Pair>) -> Plan {
    let scope = &config.scope;
    let regions: BTreeSet<&str> = pairs.iter().map(|p| p.region.as_str()).collect();
    let regions = regions.len();
    let windows_per_pair = config.states.len();
    let planned_accounts: BTreeSet<&str> = pairs.iter().map(|p| p.account_id.as_str()).collect();
    let sts_calls = if scope.role.is_some() {
        2 * planned_accounts.len() as u64
    } else {
        0
    };
    Plan {
        accounts: planned_accounts.len(),
        regions,
        shard: scope.shard.map(|s| s.to_string()),
        calls_at_least: (pairs.len() * windows_per_pair) as u64,
        windows_per_pair,
        sts_calls,
        pairs,
    }
}

/// The plan of a scope that names its accounts and regions: no call at all.
pub fn plan_without_calls(config: &ExportConfig, region: &str) -> Option<Plan> {
    let scope = &config.scope;
    let accounts = scope.accounts.as_ref()?;
    let regions = match &scope.regions {
        None => vec![region.to_owned()],
        Some(Regions::Listed(regions)) => regions.clone(),
        Some(Regions::AllEnabled) => return None,
    };
    let pairs = pairs_of(accounts, &regions, &scope.exclude_accounts, scope.shard);
    Some(plan(config, pairs))
}

/// The status file of a multi-pair run.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Status {
    format: u32,
    /// What the run was asked: a rerun with other flags redoes everything.
    fingerprint: String,
    started_at: chrono::DateTime<chrono::Utc>,
    finished_at: chrono::DateTime<chrono::Utc>,
    shard: Option<String>,
    pairs: Vec<PairStatus>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct PairStatus {
    account_id: String,
    region: String,
    /// `completed`, `failed`, or `not-run` (completed by an earlier run
    /// this one retried after).
    outcome: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    run_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sessions: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    chain_head: Option<String>,
}

impl PairStatus {
    /// An account that has no pairs (suspended, or its regions unknown).
    fn account_only(account: &str, outcome: &str, reason: &str) -> PairStatus {
        PairStatus {
            account_id: account.to_owned(),
            region: "-".to_owned(),
            outcome: outcome.to_owned(),
            reason: Some(reason.to_owned()),
            run_id: None,
            sessions: None,
            chain_head: None,
        }
    }
}

/// With `--regions all-enabled`: each account is reached (bounded like the
/// pairs) and asked for its enabled regions. Returns this shard's pairs,
/// and the accounts whose regions could not be listed (failed, so that a
/// retry tries them again).
async fn enabled_pairs(
    shared: &Arc<Shared>,
    base: &aws_config::SdkConfig,
    caller: &str,
    accounts: &[String],
    cells: &BTreeMap<String, Arc<AccountConfig>>,
) -> (Vec<Pair>, Vec<PairStatus>) {
    let scope = &shared.config.scope;
    let excluded: BTreeSet<&String> = scope.exclude_accounts.iter().collect();
    let at_once = Arc::new(tokio::sync::Semaphore::new(scope.pairs_at_once.max(1)));
    let mut tasks = JoinSet::new();
    for account in accounts.iter().filter(|a| !excluded.contains(a)) {
        let cell = cells.get(account).cloned().unwrap_or_default();
        let (shared, base, caller, account) = (
            shared.clone(),
            base.clone(),
            caller.to_owned(),
            account.clone(),
        );
        let at_once = at_once.clone();
        tasks.spawn(async move {
            let _turn = at_once.acquire_owned().await;
            let reached = cell
                .get_or_init(|| reach_account(&shared.config, &base, &caller, &account))
                .await
                .clone();
            let regions = match reached {
                Ok(config) => aws::enabled_regions(&config)
                    .await
                    .map_err(|e| e.to_string()),
                Err(reason) => Err(reason),
            };
            (account, regions)
        });
    }
    let mut pairs = Vec::new();
    let mut unlisted = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let Ok((account, regions)) = joined else {
            continue;
        };
        match regions {
            Ok(regions) => pairs.extend(pairs_of(
                std::slice::from_ref(&account),
                &regions,
                &[],
                scope.shard,
            )),
            Err(reason) => {
                tracing::warn!(account, %reason, "skipping an account whose regions are unknown");
                unlisted.push(PairStatus::account_only(&account, "failed", &reason));
            }
        }
    }
    pairs.sort();
    (pairs, unlisted)
}

const STATUS_FORMAT: u32 = 1;
/// The largest status file read: a line per pair, 85,000 pairs.
const MAX_STATUS_BYTES: u64 = 64 * 1024 * 1024;

/// What a run was asked, as far as which pairs it must redo depends on it.
fn fingerprint(config: &ExportConfig) -> String {
    let asked = serde_json::json!({
        "window": config.window_spec,
        "states": config.states.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        "filters": config.filters,
        "scope": config.scope,
    });
    sha256_hex(asked.to_string().as_bytes())
}

/// Runs every pair of the scope; see the module doc.
pub(crate) async fn run(
    shared: Arc<Shared>,
    base: aws_config::SdkConfig,
    caller: String,
    region: String,
    shutdown: CancellationToken,
) -> Result<RunOutcome, ExportError> {
    let config = &shared.config;
    let scope = &config.scope;
    let mut skipped_accounts: Vec<PairStatus> = Vec::new();
    let accounts = match (&scope.accounts, &scope.organization) {
        (Some(list), _) => list.clone(),
        (None, Some(filter)) => {
            let org =
                aws::organization_accounts(&base, &filter.include_ou, &filter.exclude_ou).await?;
            for (account, status) in &org.suspended {
                tracing::warn!(
                    account,
                    status,
                    "skipping an account of the organization that is not active"
                );
                skipped_accounts.push(PairStatus::account_only(
                    account,
                    "skipped",
                    &format!("the account is {status}"),
                ));
            }
            org.active
        }
        (None, None) => vec![caller.clone()],
    };
    let account_cells: BTreeMap<String, Arc<AccountConfig>> = accounts
        .iter()
        .map(|a| (a.clone(), Arc::new(AccountConfig::default())))
        .collect();
    let pairs = match &scope.regions {
        None => pairs_of(
            &accounts,
            std::slice::from_ref(&region),
            &scope.exclude_accounts,
            scope.shard,
        ),
        Some(Regions::Listed(regions)) => {
            pairs_of(&accounts, regions, &scope.exclude_accounts, scope.shard)
        }
        Some(Regions::AllEnabled) => {
            let (pairs, unlisted) =
                enabled_pairs(&shared, &base, &caller, &accounts, &account_cells).await;
            skipped_accounts.extend(unlisted);
            pairs
        }
    };
    let planned = plan(config, pairs);
    if scope.dry_run {
        return Ok(RunOutcome::Planned(planned));
    }
    let started_at = config.clock.now();
    let status_key = layout::status_key(scope.shard.map(|s| (s.index, s.count)));
    let fingerprint = fingerprint(config);
    let (pairs, not_run) = after_retry(
        shared.output.as_ref(),
        &status_key,
        &fingerprint,
        planned.pairs,
        started_at,
        scope.retry_window,
    )
    .await;
    shared.progress.add_pairs(pairs.len());
    tracing::info!(
        pairs = pairs.len(),
        accounts = planned.accounts,
        regions = planned.regions,
        shard = ?scope.shard.map(|s| s.to_string()),
        "crawling (account, region) pairs"
    );

    // One configuration per account, shared by its regions, set up by the
    // first of its pairs to run: accounts are reached concurrently (bounded
    // like the pairs), not one after another before any crawl. A pair's task
    // is spawned only when it may run, so that waiting pairs cost nothing;
    // an account's configuration (its credential provider and STS client, a
    // few hundred kilobytes) lives only while its pairs do.
    let mut account_cells = account_cells;
    let at_once = Arc::new(tokio::sync::Semaphore::new(scope.pairs_at_once.max(1)));
    let mut tasks = JoinSet::new();
    let mut results = Vec::new();
    let mut running = BTreeMap::new();
    let mut pairs = pairs.into_iter().peekable();
    while let Some(pair) = pairs.next() {
        let last_of_account = pairs
            .peek()
            .is_none_or(|next| next.account_id != pair.account_id);
        let cell = if last_of_account {
            account_cells.remove(&pair.account_id)
        } else {
            account_cells.get(&pair.account_id).cloned()
        }
        .unwrap_or_default();
        let Ok(turn) = at_once.clone().acquire_owned().await else {
            break;
        };
        while let Some(joined) = tasks.try_join_next_with_id() {
            collect(joined, &mut running, &mut results);
        }
        let (shared, shutdown) = (shared.clone(), shutdown.clone());
        let (base, caller) = (base.clone(), caller.clone());
        let spawned_pair = pair.clone();
        let handle = tasks.spawn(async move {
            let _turn = turn;
            let account = cell
                .get_or_init(|| reach_account(&shared.config, &base, &caller, &pair.account_id))
                .await
                .clone();
            let result = match account {
                Err(reason) => {
                    // A pair that could not start is done too.
                    drop(shared.progress.pair());
                    Err(PairError::Setup(reason))
                }
                Ok(_) if shutdown.is_cancelled() => {
                    Err(PairError::Export(ExportError::Interrupted))
                }
                Ok(account_config) => {
                    let sdk = aws::in_region(&account_config, &pair.region);
                    run_pair(
                        shared,
                        sdk,
                        pair.account_id.clone(),
                        pair.region.clone(),
                        shutdown,
                    )
                    .await
                    .map_err(PairError::Export)
                }
            };
            (pair, result)
        });
        running.insert(handle.id(), spawned_pair);
    }
    while let Some(joined) = tasks.join_next_with_id().await {
        collect(joined, &mut running, &mut results);
    }
    results.sort_by(|a, b| a.0.cmp(&b.0));

    let mut completed = Vec::new();
    let mut failed = Vec::new();
    let mut statuses: Vec<PairStatus> = not_run
        .iter()
        .map(|pair| PairStatus {
            account_id: pair.account_id.clone(),
            region: pair.region.clone(),
            outcome: "not-run".into(),
            reason: Some("completed by the run this one retried after".into()),
            run_id: None,
            sessions: None,
            chain_head: None,
        })
        .collect();
    for skipped in skipped_accounts {
        if skipped.outcome == "failed" {
            failed.push(FailedPair {
                account_id: skipped.account_id.clone(),
                region: skipped.region.clone(),
                reason: skipped.reason.clone().unwrap_or_default(),
                covered_until: None,
            });
        }
        statuses.push(skipped);
    }
    let mut interrupted = false;
    for (pair, result) in results {
        match result {
            Ok(summary) => {
                tracing::info!(pair = %pair, "{summary}");
                statuses.push(PairStatus {
                    account_id: pair.account_id.clone(),
                    region: pair.region.clone(),
                    outcome: "completed".into(),
                    reason: None,
                    run_id: Some(summary.run_id.clone()),
                    sessions: Some(summary.sessions.distinct),
                    chain_head: Some(summary.chain_head.clone()),
                });
                completed.push(summary);
            }
            Err(error) => {
                interrupted |= matches!(error, PairError::Export(ExportError::Interrupted));
                let reason = crate::text::chain_text(&error);
                tracing::warn!(pair = %pair, %reason, "the pair did not complete");
                statuses.push(PairStatus {
                    account_id: pair.account_id.clone(),
                    region: pair.region.clone(),
                    outcome: "failed".into(),
                    reason: Some(reason.clone()),
                    run_id: None,
                    sessions: None,
                    chain_head: None,
                });
                failed.push(FailedPair {
                    account_id: pair.account_id,
                    region: pair.region,
                    reason,
                    covered_until: None,
                });
            }
        }
    }
    if !interrupted {
        read_coverage(&shared.output, &mut failed, scope.pairs_at_once).await;
    }
    statuses.sort_by(|a, b| (&a.account_id, &a.region).cmp(&(&b.account_id, &b.region)));
    let status = Status {
        format: STATUS_FORMAT,
        fingerprint,
        started_at,
        finished_at: config.clock.now(),
        shard: scope.shard.map(|s| s.to_string()),
        pairs: statuses,
    };
    match serde_json::to_vec_pretty(&status) {
        Ok(bytes) => {
            if let Err(error) = shared.output.put(&status_key, bytes.into()).await {
                tracing::error!(%error, key = %status_key, "cannot write the status file");
            }
        }
        Err(error) => tracing::error!(%error, "cannot encode the status file"),
    }
    if interrupted {
        return Err(ExportError::Interrupted);
    }
    if failed.is_empty() {
        Ok(RunOutcome::Exported(completed))
    } else {
        Err(ExportError::PairsFailed {
            completed,
            earlier: not_run.len(),
            failed,
        })
    }
}

type PairResult = (Pair, Result<super::ExportSummary, PairError>);

/// Keeps a finished pair's outcome; a task that panicked fails its pair.
fn collect(
    joined: Result<(tokio::task::Id, PairResult), tokio::task::JoinError>,
    running: &mut BTreeMap<tokio::task::Id, Pair>,
    results: &mut Vec<PairResult>,
) {
    match joined {
        Ok((id, done)) => {
            running.remove(&id);
            results.push(done);
        }
        Err(error) => {
            if let Some(pair) = running.remove(&error.id()) {
                let reason = format!("its task failed: {error}");
                results.push((pair, Err(PairError::Setup(reason))));
            }
        }
    }
}

/// An account's SDK configuration, set up once by the first of its pairs.
type AccountConfig = tokio::sync::OnceCell<Result<aws_config::SdkConfig, String>>;

/// The SDK configuration that reaches `account`: its assumed role, or the
/// caller's own credentials for the caller's account.
async fn reach_account(
    config: &ExportConfig,
    base: &aws_config::SdkConfig,
    caller: &str,
    account: &str,
) -> Result<aws_config::SdkConfig, String> {
    let found = match &config.scope.role {
        Some(role) => aws::assume_role_config(base, role, account)
            .await
            .map_err(|e| e.to_string()),
        None if account == caller => Ok(base.clone()),
        None => Err(format!(
            "account {account} is not the caller's ({caller}) and no role reaches it: pass --role-name or --role-arn-template"
        )),
    };
    if let Err(reason) = &found {
        tracing::warn!(account, %reason, "skipping the account's pairs");
    }
    found
}

/// Why a pair did not complete.
#[derive(Debug, thiserror::Error)]
enum PairError {
    #[error("{0}")]
    Setup(String),
    #[error(transparent)]
    Export(ExportError),
}

/// The pairs to crawl now: all of them, unless the last run of this shard
/// with the same flags left some failed less than `retry_window` ago; then
/// only those (and pairs it did not know). Returns (to crawl, skipped).
async fn after_retry<S: Storage>(
    output: &S,
    status_key: &str,
    fingerprint: &str,
    pairs: Vec<Pair>,
    now: chrono::DateTime<chrono::Utc>,
    retry_window: std::time::Duration,
) -> (Vec<Pair>, Vec<Pair>) {
    let previous = match output.get_versioned(status_key, MAX_STATUS_BYTES).await {
        Ok(Some(found)) => serde_json::from_slice::<Status>(&found.data).ok(),
        _ => None,
    };
    let Some(previous) = previous else {
        return (pairs, Vec::new());
    };
    let recent = chrono::Duration::from_std(retry_window)
        .is_ok_and(|window| now - previous.finished_at < window && now >= previous.finished_at);
    let had_failures = previous.pairs.iter().any(|p| p.outcome == "failed");
    if previous.fingerprint != fingerprint || !recent || !had_failures {
        return (pairs, Vec::new());
    }
    let done: BTreeSet<(String, String)> = previous
        .pairs
        .iter()
        .filter(|p| p.outcome != "failed")
        .map(|p| (p.account_id.clone(), p.region.clone()))
        .collect();
    let (skipped, redo): (Vec<Pair>, Vec<Pair>) = pairs
        .into_iter()
        .partition(|p| done.contains(&(p.account_id.clone(), p.region.clone())));
    tracing::info!(
        retried = redo.len(),
        skipped = skipped.len(),
        "the last run of these flags left pairs failed {} ago: crawling only those",
        humantime::format_duration(std::time::Duration::from_secs(
            (now - previous.finished_at).num_seconds().max(0) as u64
        ))
    );
    (redo, skipped)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accounts(n: usize) -> Vec<String> {
        (0..n)
            .map(|i| format!("{:012}", 100_000_000_000u64 + i as u64))
            .collect()
    }

    #[test]
    fn shards_split_the_pairs_evenly_with_none_in_two_and_none_left_out() {
        let accounts = accounts(5000);
        let regions: Vec<String> = ["us-east-1", "eu-west-1", "ap-south-1"]
            .iter()
            .map(|r| r.to_string())
            .collect();
        let all = pairs_of(&accounts, &regions, &[], None);
        assert_eq!(all.len(), 15_000);
        let count = 8;
        let mut union = Vec::new();
        for index in 0..count {
            let share = pairs_of(&accounts, &regions, &[], Some(Shard { index, count }));
            // Balanced within a few percent of the mean.
            let mean = all.len() as f64 / f64::from(count);
            assert!(
                (share.len() as f64 - mean).abs() < mean * 0.05,
                "{}",
                share.len()
            );
            union.extend(share);
        }
        union.sort();
        assert_eq!(union, all, "every pair in exactly one shard");
        let without = pairs_of(&accounts[..2], &regions, &accounts[..1], None);
        assert!(without.iter().all(|p| p.account_id == accounts[1]));
    }
}
