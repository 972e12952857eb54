//! One row of the data set: a session as ssm-audit records it, the rule that
//! decides which of two observations of one session wins ([`Rank::supersedes`],
//! used by staging and by every merge alike), and the conversion from the
//! SDK's `Session`.

use std::collections::HashMap;

use aws_sdk_ssm::types::Session;

use crate::dataset::layout;

/// A session as stored in the Parquet data set (see `schema` for the columns).
/// Times are epoch milliseconds, UTC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub session_id: String,
    pub account_id: String,
    pub region: String,
    pub status: Option<String>,
    pub target: Option<String>,
    pub owner: Option<String>,
    pub document_name: Option<String>,
    pub reason: Option<String>,
    pub details: Option<String>,
    pub access_type: Option<String>,
    pub s3_output_url: Option<String>,
    pub cloudwatch_output_url: Option<String>,
    pub max_session_duration_minutes: Option<i32>,
    pub start_date: i64,
    pub end_date: Option<i64>,
    pub first_seen_at: i64,
    pub last_seen_at: i64,
}

/// Why a session from the service cannot become a row.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("a session without a SessionId")]
    MissingSessionId,
    #[error("session {0} has no StartDate, so it has no partition")]
    MissingStartDate(String),
    #[error("session {0} has a StartDate or EndDate outside 1970 to 9999")]
    DateOutOfRange(String),
}

/// How strongly an observation speaks for a session's final state. Ending is
/// one-way, so an ended observation beats an open one whatever their times;
/// between two of the same kind the later one wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rank {
    pub ended: bool,
    pub observed_at: i64,
}

impl Rank {
    /// Whether an observation of this rank replaces one of rank `current`:
    /// the data set's one merge rule. On equal rank the observation merged
    /// in later wins, so reading the same observations again in the same
    /// order always gives the same row.
    pub fn supersedes(self, current: Rank) -> bool {
        self >= current
    }
}

const ENDED_STATUSES: [&str; 3] = ["Terminated", "Terminating", "Failed"];

/// Whether a session with this end date and status has ended: the one rule,
/// for rows held as records or as columns.
pub fn is_ended(end_date: Option<i64>, status: Option<&str>) -> bool {
    end_date.is_some() || status.is_some_and(|s| ENDED_STATUSES.contains(&s))
}

/// Milliseconds of an SDK timestamp, rounded to the nearest. The wire carries
/// fractional epoch seconds (`1550676938.352`), which the SDK parses into
/// binary floating point, so `.001` can arrive as 999,999 ns; truncating, as
/// `DateTime::to_millis` does, would shift such times by a millisecond.
pub fn epoch_millis(t: &aws_sdk_ssm::primitives::DateTime) -> Option<i64> {
    t.secs()
        .checked_mul(1000)?
        .checked_add((i64::from(t.subsec_nanos()) + 500_000) / 1_000_000)
        .filter(|ms| (EARLIEST_MS..=LATEST_MS).contains(ms))
}

/// The dates a session may carry: 1970-01-01 to 9999-12-31 (UTC), the days
/// partitions can be named for. A service sending another is not believed.
pub const EARLIEST_MS: i64 = 0;
pub const LATEST_MS: i64 = 253_402_300_799_999;

impl SessionRecord {
    /// Converts one SDK session observed at `observed_at` (epoch ms).
    pub fn from_sdk(
        session: &Session,
        account_id: &str,
        region: &str,
        observed_at: i64,
    ) -> Result<SessionRecord, RecordError> {
        let session_id = session
            .session_id()
            .ok_or(RecordError::MissingSessionId)?
            .to_string();
        let start_date = session
            .start_date()
            .ok_or_else(|| RecordError::MissingStartDate(session_id.clone()))?;
        let start_date = epoch_millis(start_date)
            .ok_or_else(|| RecordError::DateOutOfRange(session_id.clone()))?;
        let end_date = match session.end_date() {
            Some(end) => Some(
                epoch_millis(end).ok_or_else(|| RecordError::DateOutOfRange(session_id.clone()))?,
            ),
            None => None,
        };
        let owned = |v: Option<&str>| v.map(str::to_owned);
        Ok(SessionRecord {
            account_id: account_id.to_owned(),
            region: region.to_owned(),
            status: session.status().map(|s| s.as_str().to_owned()),
            target: owned(session.target()),
            owner: owned(session.owner()),
            document_name: owned(session.document_name()),
            reason: owned(session.reason()),
            details: owned(session.details()),
            access_type: session.access_type().map(|a| a.as_str().to_owned()),
            s3_output_url: owned(session.output_url().and_then(|u| u.s3_output_url())),
            cloudwatch_output_url: owned(
                session
                    .output_url()
                    .and_then(|u| u.cloud_watch_output_url()),
            ),
            max_session_duration_minutes: session
                .max_session_duration()
                .and_then(|m| m.trim().parse().ok()),
            start_date,
            end_date,
            first_seen_at: observed_at,
            last_seen_at: observed_at,
            session_id,
        })
    }

    pub fn is_ended(&self) -> bool {
        is_ended(self.end_date, self.status.as_deref())
    }

    pub fn rank(&self) -> Rank {
        Rank {
            ended: self.is_ended(),
            observed_at: self.last_seen_at,
        }
    }

    /// Merges another observation of the same session into this one: the
    /// stronger observation's fields win, and the seen-at span covers both.
    pub fn absorb(&mut self, other: SessionRecord) {
        let first_seen_at = self.first_seen_at.min(other.first_seen_at);
        let last_seen_at = self.last_seen_at.max(other.last_seen_at);
        if other.rank().supersedes(self.rank()) {
            *self = other;
        }
        self.first_seen_at = first_seen_at;
        self.last_seen_at = last_seen_at;
    }

    /// This row's place in its partition (see [`layout::row_order`]).
    pub fn row_order(&self) -> (i64, &str) {
        layout::row_order(self.start_date, &self.session_id)
    }
}

/// Merges fresh observations into a partition's rows by session id and
/// returns them in partition order.
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
    sort_rows(&mut rows);
    rows
}

/// Sorts rows into partition order.
pub fn sort_rows(rows: &mut [SessionRecord]) {
    rows.sort_by(|a, b| a.row_order().cmp(&b.row_order()));
}

#[cfg(test)]
mod properties {
    use super::*;
    use aws_sdk_ssm::primitives::DateTime;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Whatever the service sends, converting a session never panics;
        /// a row it gives has a date in the calendar and the fields as sent.
        #[test]
        fn any_wire_session_converts_or_is_refused(
            id in proptest::option::of(".{0,64}"),
            secs in prop_oneof![any::<i64>(), -1_000_i64..300_000_000_000],
            nanos in 0u32..1_000_000_000,
            end in proptest::option::of(any::<i64>()),
            reason in proptest::option::of("\\PC{0,300}|[\\x00-\\x1f=+@-]{0,8}"),
            duration in proptest::option::of(".{0,12}"),
        ) {
            let session = Session::builder()
                .set_session_id(id.clone())
                .start_date(DateTime::from_secs_and_nanos(secs, nanos))
                .set_end_date(end.map(DateTime::from_secs))
                .set_reason(reason.clone())
                .set_max_session_duration(duration)
                .build();
            match SessionRecord::from_sdk(&session, "123456789012", "eu-west-1", 5) {
                Ok(row) => {
                    prop_assert!((EARLIEST_MS..=LATEST_MS).contains(&row.start_date));
                    prop_assert_eq!(Some(row.session_id), id);
                    prop_assert_eq!(row.reason, reason);
                }
                Err(error) => prop_assert!(!error.to_string().is_empty()),
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use aws_sdk_ssm::primitives::DateTime;
    use aws_sdk_ssm::types::{SessionManagerOutputUrl, SessionStatus};

    pub fn record(id: &str, start: i64, status: &str, seen: i64) -> SessionRecord {
        SessionRecord {
            session_id: id.into(),
            account_id: "123456789012".into(),
            region: "eu-west-1".into(),
            status: Some(status.into()),
            target: Some("i-0123456789abcdef0".into()),
            owner: Some("arn:aws:iam::123456789012:user/a".into()),
            document_name: None,
            reason: Some("why, \"quoted\" ü".into()),
            details: None,
            access_type: Some("Standard".into()),
            s3_output_url: None,
            cloudwatch_output_url: Some(String::new()),
            max_session_duration_minutes: Some(60),
            start_date: start,
            end_date: (status == "Terminated").then_some(start + 5_000),
            first_seen_at: seen,
            last_seen_at: seen,
        }
    }

    #[test]
    fn converts_every_field() {
        let session = Session::builder()
            .session_id("alice-0123")
            .target("i-1")
            .status(SessionStatus::Terminated)
            .start_date(DateTime::from_millis(1_700_000_000_123))
            .end_date(DateTime::from_millis(1_700_000_100_000))
            .owner("arn:aws:iam::1:user/alice")
            .reason("r")
            .output_url(
                SessionManagerOutputUrl::builder()
                    .s3_output_url("s3://x")
                    .build(),
            )
            .max_session_duration("90")
            .build();
        let r = SessionRecord::from_sdk(&session, "1", "eu-west-1", 5).expect("converts");
        assert_eq!(r.start_date, 1_700_000_000_123);
        assert_eq!(r.end_date, Some(1_700_000_100_000));
        assert_eq!(r.status.as_deref(), Some("Terminated"));
        assert_eq!(r.s3_output_url.as_deref(), Some("s3://x"));
        assert_eq!(r.cloudwatch_output_url, None);
        assert_eq!(r.max_session_duration_minutes, Some(90));
        assert_eq!((r.first_seen_at, r.last_seen_at), (5, 5));
    }

    #[test]
    fn wire_fractions_round_to_the_nearest_millisecond() {
        for millis in [
            1_795_305_600_001_i64,
            1_794_719_851_089,
            1_550_676_938_352,
            999,
        ] {
            let parsed = DateTime::from_secs_f64(millis as f64 / 1000.0);
            assert_eq!(epoch_millis(&parsed), Some(millis));
        }
    }

    #[test]
    fn a_session_without_start_date_is_refused() {
        let session = Session::builder().session_id("x").build();
        assert_eq!(
            SessionRecord::from_sdk(&session, "1", "r", 0),
            Err(RecordError::MissingStartDate("x".into()))
        );
    }

    #[test]
    fn ended_beats_active_and_later_beats_earlier() {
        let mut active_late = record("s", 0, "Connected", 200);
        active_late.absorb(record("s", 0, "Terminated", 100));
        assert_eq!(active_late.status.as_deref(), Some("Terminated"));
        assert_eq!(
            (active_late.first_seen_at, active_late.last_seen_at),
            (100, 200)
        );

        let mut old = record("s", 0, "Connected", 100);
        let mut newer = record("s", 0, "Disconnected", 300);
        newer.first_seen_at = 300;
        old.absorb(newer);
        assert_eq!(old.status.as_deref(), Some("Disconnected"));
        assert_eq!(old.first_seen_at, 100);
    }

    #[test]
    fn on_equal_rank_the_later_merged_observation_wins_everywhere() {
        let open = Rank {
            ended: false,
            observed_at: 100,
        };
        let ended = Rank {
            ended: true,
            observed_at: 50,
        };
        assert!(ended.supersedes(open), "ended beats open whatever the time");
        assert!(!open.supersedes(ended));
        assert!(open.supersedes(open), "a tie goes to the later merged");

        let mut kept = record("s", 0, "Connected", 100);
        let mut tie = record("s", 0, "Disconnected", 100);
        tie.reason = Some("the later one".into());
        kept.absorb(tie.clone());
        assert_eq!(kept.status.as_deref(), Some("Disconnected"));
        let merged = merge(vec![record("s", 0, "Connected", 100)], vec![tie]);
        assert_eq!(merged, vec![kept], "merge and absorb agree");
    }

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
}
