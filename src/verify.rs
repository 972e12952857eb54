//! `ssm-audit verify`: proves the data set is what the runs wrote. Every
//! file a run manifest lists is hashed again and compared with the latest
//! manifest that wrote it; files that are missing, changed, or present but
//! listed by no manifest are reported.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::dataset::layout::{RUNS_PREFIX, SESSIONS_PREFIX};
use crate::dataset::manifest::{sha256_hex, RunManifest, MANIFEST_VERSION, MAX_MANIFEST_BYTES};
use crate::storage::{Storage, StorageError};
use crate::text::printable;

/// What verification found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyReport {
    pub manifests: usize,
    pub files_checked: usize,
    pub changed: Vec<Changed>,
    pub missing: Vec<String>,
    pub unlisted: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Changed {
    pub path: String,
    pub run_id: String,
    pub expected_sha256: String,
    pub actual_sha256: String,
}

impl VerifyReport {
    pub fn is_clean(&self) -> bool {
        self.changed.is_empty() && self.missing.is_empty() && self.unlisted.is_empty()
    }
}

impl std::fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for c in &self.changed {
            writeln!(
                f,
                "CHANGED   {} (run {} wrote sha256 {}, found {})",
                printable(&c.path),
                printable(&c.run_id),
                printable(&c.expected_sha256),
                c.actual_sha256
            )?;
        }
        // Names come from listings and manifests, which anyone with write
        // access shapes: one finding per line, whatever the name holds.
        for path in &self.missing {
            writeln!(f, "MISSING   {}", printable(path))?;
        }
        for path in &self.unlisted {
            writeln!(
                f,
                "UNLISTED  {} (present, but no run manifest wrote it)",
                printable(path)
            )?;
        }
        write!(
            f,
            "{} files checked against {} run manifests: {} changed, {} missing, {} unlisted",
            self.files_checked,
            self.manifests,
            self.changed.len(),
            self.missing.len(),
            self.unlisted.len()
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("run manifest {key} is unreadable ({reason}); it cannot vouch for any file")]
    Manifest { key: String, reason: String },
    #[error("{location} holds no run manifests under {RUNS_PREFIX}: is it an ssm-audit output?")]
    NoManifests { location: String },
    #[error("{location} holds no ssm-audit data set (nothing under {SESSIONS_PREFIX} or {RUNS_PREFIX}); check the location")]
    NoDataSet { location: String },
    /// Verification ran and found differences (exit code 6).
    #[error("the data set differs from what its runs wrote")]
    Differences,
}

/// Refuses a location that holds no data set (it does not exist, or is not
/// an ssm-audit output): a report from it would say "nobody connected". An
/// existing data set with nothing in a period is another matter.
pub async fn require_data_set<S: Storage>(storage: &S) -> Result<(), VerifyError> {
    if !storage.list(SESSIONS_PREFIX).await?.is_empty()
        || !storage.list(RUNS_PREFIX).await?.is_empty()
    {
        return Ok(());
    }
    Err(VerifyError::NoDataSet {
        location: storage.location(),
    })
}

/// Checks every data file under the sessions folder against the manifests.
pub async fn verify<S: Storage>(storage: &S) -> Result<VerifyReport, VerifyError> {
    require_data_set(storage).await?;
    let mut manifests = Vec::new();
    for key in storage.list(RUNS_PREFIX).await? {
        if !key.ends_with(".json") {
            continue;
        }
        let Some(bytes) = storage
            .get_versioned(&key, MAX_MANIFEST_BYTES)
            .await?
            .map(|v| v.data)
        else {
            continue; // removed since it was listed
        };
        let manifest: RunManifest =
            serde_json::from_slice(&bytes).map_err(|e| VerifyError::Manifest {
                key: key.clone(),
                reason: e.to_string(),
            })?;
        if manifest.manifest_version != MANIFEST_VERSION {
            return Err(VerifyError::Manifest {
                key,
                reason: format!(
                    "format version {} is not {MANIFEST_VERSION}",
                    manifest.manifest_version
                ),
            });
        }
        manifests.push(manifest);
    }
    if manifests.is_empty() {
        return Err(VerifyError::NoManifests {
            location: storage.location(),
        });
    }
    // Later runs rewrite partitions (merges): the latest writer vouches.
    manifests.sort_by(|a, b| (&a.finished_at, &a.run_id).cmp(&(&b.finished_at, &b.run_id)));
    let mut expected: BTreeMap<String, (String, String)> = BTreeMap::new();
    for manifest in &manifests {
        for file in &manifest.files {
            expected.insert(
                file.path.clone(),
                (file.sha256.clone(), manifest.run_id.clone()),
            );
        }
    }
    let present: BTreeSet<String> = storage.list(SESSIONS_PREFIX).await?.into_iter().collect();
    let mut report = VerifyReport {
        manifests: manifests.len(),
        ..VerifyReport::default()
    };
    for (path, (sha256, run_id)) in &expected {
        let Some(bytes) = storage.get(path).await? else {
            report.missing.push(path.clone());
            continue;
        };
        report.files_checked += 1;
        let actual = sha256_hex(&bytes);
        if &actual != sha256 {
            report.changed.push(Changed {
                path: path.clone(),
                run_id: run_id.clone(),
                expected_sha256: sha256.clone(),
                actual_sha256: actual,
            });
        }
    }
    report.unlisted = present
        .into_iter()
        .filter(|p| !expected.contains_key(p))
        .collect();
    Ok(report)
}
