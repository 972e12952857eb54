//! The process's exit codes, as the README and `ssm-audit --help` document
//! them, and [`code_of`], the one place that decides which code a failure
//! gets. Modules return typed errors; only this module reads them for codes.

use crate::config::ConfigError;
use crate::evidence::coverage::{CoverageError, NotCovered};
use crate::evidence::sign::SignError;
use crate::evidence::verify::{VerifyError, VerifyRunError};
use crate::export::checkpoint::CheckpointError;
use crate::export::lock::LockError;
use crate::export::ExportError;
use crate::storage::StorageError;

pub const SUCCESS: u8 = 0;
/// AWS, storage or anything else outside the command's control.
pub const FAILURE: u8 = 1;
/// Invalid flags or configuration; nothing was written.
pub const USAGE: u8 = 2;
/// The crawl is incomplete (a call failed after its retries); rerun to resume.
pub const INCOMPLETE: u8 = 3;
/// Interrupted by SIGINT or SIGTERM; rerun to resume.
pub const INTERRUPTED: u8 = 4;
/// Another export holds the output lock, or took it over during this run
/// (whose writes stopped when its lease could no longer be renewed).
pub const LOCKED: u8 = 5;
/// `verify` found something not as the runs left it: a data file changed,
/// missing or unlisted; a manifest missing, altered, reordered or forked; a
/// head the chain no longer reaches; a signature missing or wrong.
pub const DIFFERENCES: u8 = 6;
/// Partial: published, except (account, region) pairs that failed (the
/// status file lists them; a rerun retries only those), or partitions whose
/// existing file could not be read (their sessions are kept and published by
/// the next run).
pub const PARTIAL: u8 = 7;
/// `coverage` found a gap in the period, or the newest completed run is
/// older than `--max-age`.
pub const NOT_COVERED: u8 = 8;

/// The exit code of a failed command: the first cause in the chain that
/// decides one, else [`FAILURE`].
pub fn code_of(error: &anyhow::Error) -> u8 {
    // A lost lock decides, however deep: it is why the writes stopped.
    let lost_lock = error.chain().any(|cause| {
        matches!(cause.downcast_ref::<LockError>(), Some(LockError::Lost(_)))
            || matches!(
                cause.downcast_ref::<StorageError>(),
                Some(StorageError::Fenced { .. })
            )
    });
    if lost_lock {
        return LOCKED;
    }
    error
        .chain()
        .find_map(|cause| {
            if let Some(e) = cause.downcast_ref::<ExportError>() {
                return export_code(e);
            }
            if cause.is::<ConfigError>() {
                return Some(USAGE);
            }
            if cause.is::<NotCovered>() {
                return Some(NOT_COVERED);
            }
            if let Some(e) = cause.downcast_ref::<VerifyError>() {
                return verify_code(e);
            }
            match cause.downcast_ref::<VerifyRunError>() {
                Some(VerifyRunError::Verify(e)) => return verify_code(e),
                Some(VerifyRunError::Key(SignError::KeyFile { .. })) => return Some(USAGE),
                _ => {}
            }
            match cause.downcast_ref::<CoverageError>() {
                Some(CoverageError::NoDataSet(e)) => verify_code(e),
                _ => None,
            }
        })
        .unwrap_or(FAILURE)
}

fn verify_code(error: &VerifyError) -> Option<u8> {
    match error {
        VerifyError::Differences => Some(DIFFERENCES),
        VerifyError::NoDataSet { .. }
        | VerifyError::NoManifests { .. }
        | VerifyError::AmbiguousHead(..) => Some(USAGE),
        VerifyError::Storage(_) => None,
    }
}

/// None: the cause decides nothing here; a deeper cause may.
fn export_code(error: &ExportError) -> Option<u8> {
    Some(match error {
        ExportError::Config(_) => USAGE,
        ExportError::Checkpoint(
            CheckpointError::Corrupt { .. }
            | CheckpointError::UnknownVersion { .. }
            | CheckpointError::Mismatch { .. },
        ) => USAGE,
        ExportError::Crawl(_) => INCOMPLETE,
        ExportError::PartlyPublished { .. } => PARTIAL,
        // Partial when some pair completed; a run where none did failed.
        ExportError::PairsFailed {
            completed, earlier, ..
        } if completed.is_empty() && *earlier == 0 => FAILURE,
        ExportError::PairsFailed { .. } => PARTIAL,
        ExportError::SigningKey(_) => USAGE,
        ExportError::HeadOut { .. } => FAILURE,
        ExportError::Interrupted => INTERRUPTED,
        ExportError::Lock(LockError::Held(_)) => LOCKED,
        _ => FAILURE,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cause_that_decides_is_found_under_context() {
        let usage = anyhow::Error::new(ConfigError::Flag("--slice".into())).context("export");
        assert_eq!(code_of(&usage), USAGE);
        let interrupted = anyhow::Error::new(ExportError::Interrupted).context("export into x");
        assert_eq!(code_of(&interrupted), INTERRUPTED);
        let differences = anyhow::Error::new(VerifyError::Differences);
        assert_eq!(code_of(&differences), DIFFERENCES);
        assert_eq!(code_of(&anyhow::anyhow!("anything else")), FAILURE);
        let fenced = anyhow::Error::new(ExportError::Lock(LockError::Storage(
            StorageError::Fenced {
                op: "write",
                location: "x".into(),
                reason: "no renewal".into(),
            },
        )));
        assert_eq!(code_of(&fenced), LOCKED);
    }
}
