//! The simulator's session store and its DescribeSessions query engine:
//! request validation, filters, newest-first order, opaque query-bound
//! pagination tokens, the 30-day History retention, and the optional change
//! of data while a crawl runs.
//!
//! Sessions are kept in two vectors (Active, History) sorted newest first, so
//! a time-filtered query binary-searches its range and a page resumes from
//! the key of the last item it returned. Keys, not offsets, make tokens stay
//! right when sessions are added or moved between the lists mid-crawl.

use std::cmp::Reverse;
use std::hash::{Hash, Hasher};

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use ssm_audit::api::{SessionState, ACCESS_TYPES, STATUSES};

use super::model::SimSession;

const DAY_MS: i64 = 86_400_000;
/// How far back the History list reaches, as the service documents.
pub const HISTORY_RETENTION_MS: i64 = 30 * DAY_MS;

/// How the simulator reads `InvokedAfter`/`InvokedBefore`. The service does
/// not document whether the bounds are inclusive, so a crawler is tested
/// against every reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BoundaryMode {
    /// `InvokedAfter` inclusive, `InvokedBefore` exclusive.
    Documented,
    /// Both inclusive, compared at whole seconds (the widest reading).
    Inclusive,
    /// Both exclusive, compared at milliseconds (the narrowest reading).
    Exclusive,
}

/// The order results come in. AWS documents none; the service appears to
/// list newest first. A crawler must be exact under either.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ResultOrder {
    NewestFirst,
    OldestFirst,
}

/// A broken pagination the simulator can play, to test that a crawl still
/// ends: real services have shipped each of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TokenFault {
    /// Tokens behave.
    None,
    /// A request with a token gets that same token back as its next one.
    Repeat,
    /// The last page carries `NextToken: ""` instead of none.
    Empty,
    /// Every token is refused with InvalidNextToken.
    Invalid,
}

/// A DescribeSessions error, with the service's error type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub error_type: &'static str,
    pub message: String,
}

impl ApiError {
    fn validation(message: impl Into<String>) -> Self {
        ApiError {
            status: 400,
            error_type: "ValidationException",
            message: message.into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeSessionsRequest {
    pub state: Option<String>,
    pub max_results: Option<i64>,
    pub next_token: Option<String>,
    pub filters: Option<Vec<FilterInput>>,
}

#[derive(Debug, Deserialize)]
pub struct FilterInput {
    pub key: Option<String>,
    pub value: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeSessionsResponse<'a> {
    pub sessions: Vec<&'a SimSession>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// Query behaviour the simulator's flags set.
#[derive(Debug, Clone)]
pub struct QueryOptions {
    pub boundary_mode: BoundaryMode,
    /// `MaxResults` counts items scanned before filters, as SSM's Describe
    /// calls do, so filtered pages come back short or empty.
    pub limit_before_filter: bool,
    pub token_lifetime_ms: i64,
    pub order: ResultOrder,
    pub token_fault: TokenFault,
}

#[derive(Debug, Clone)]
enum Filter {
    After(i64),
    Before(i64),
    Target(String),
    Owner(String),
    Status(String),
    SessionId(String),
    AccessType(String),
}

/// What a `NextToken` carries: the query it belongs to, where to resume, and
/// when it was issued. Base64 of JSON: opaque to clients, readable in a debugger.
#[derive(Debug, Serialize, Deserialize)]
struct Token {
    /// Fingerprint of the state and filters the token was issued for.
    q: String,
    /// The order key (start, id) of the last item scanned.
    s: i64,
    i: String,
    /// Issue time, epoch milliseconds of the simulator's clock.
    t: i64,
}

/// Sessions sorted newest first, per list.
#[derive(Debug, Default)]
pub struct Store {
    active: Vec<SimSession>,
    history: Vec<SimSession>,
    /// Counter for ids of sessions the churn mode starts.
    churn_serial: u64,
}

fn order_key(s: &SimSession) -> (Reverse<i64>, &str) {
    (Reverse(s.start_date), s.session_id.as_str())
}

impl Store {
    pub fn new(sessions: Vec<SimSession>) -> Store {
        let (mut active, mut history): (Vec<_>, Vec<_>) = sessions
            .into_iter()
            .partition(|s| s.state() == SessionState::Active);
        active.sort_by(|a, b| order_key(a).cmp(&order_key(b)));
        history.sort_by(|a, b| order_key(a).cmp(&order_key(b)));
        Store {
            active,
            history,
            churn_serial: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.active.len() + self.history.len()
    }

    /// The sessions `state`'s list holds.
    pub fn count(&self, state: SessionState) -> usize {
        self.list(state).len()
    }

    /// Every session, Active first, as a data file would hold them.
    pub fn all(&self) -> impl Iterator<Item = &SimSession> {
        self.active.iter().chain(self.history.iter())
    }

    fn list(&self, state: SessionState) -> &[SimSession] {
        match state {
            SessionState::Active => &self.active,
            SessionState::History => &self.history,
        }
    }

    fn insert(&mut self, session: SimSession) {
        let list = match session.state() {
            SessionState::Active => &mut self.active,
            SessionState::History => &mut self.history,
        };
        let at = list.partition_point(|s| order_key(s) < order_key(&session));
        list.insert(at, session);
    }

    /// The data changing under a crawl: the oldest Active session ends (moves
    /// to History with an EndDate) and a new session starts.
    pub fn churn(&mut self, now_ms: i64) {
        if let Some(oldest) = self.active.pop() {
            let mut ended = oldest;
            ended.status = Some("Terminated".into());
            ended.end_date = Some(now_ms.max(ended.start_date));
            self.insert(ended);
        }
        self.churn_serial += 1;
        let template = self.history.first().or(self.active.first()).cloned();
        let mut started = template.unwrap_or_else(|| SimSession {
            session_id: String::new(),
            target: Some("i-0123456789abcdef0".into()),
            status: None,
            start_date: 0,
            end_date: None,
            document_name: Some("SSM-SessionManagerRunShell".into()),
            owner: Some("arn:aws:iam::123456789012:user/churn".into()),
            reason: None,
            details: None,
            output_url: None,
            max_session_duration: None,
            access_type: Some("Standard".into()),
        });
        started.session_id = format!("churn-{:017x}", self.churn_serial);
        started.status = Some("Connected".into());
        started.start_date = now_ms;
        started.end_date = None;
        self.insert(started);
    }

    /// Answers one DescribeSessions request at the simulator's time `now_ms`.
    pub fn describe(
        &self,
        request: &DescribeSessionsRequest,
        options: &QueryOptions,
        now_ms: i64,
    ) -> Result<DescribeSessionsResponse<'_>, ApiError> {
        let state = match request.state.as_deref() {
            Some("Active") => SessionState::Active,
            Some("History") => SessionState::History,
            Some(other) => {
                return Err(ApiError::validation(format!(
                    "1 validation error detected: Value '{other}' at 'state' failed to satisfy constraint: Member must satisfy enum value set: [Active, History]"
                )))
            }
            None => {
                return Err(ApiError::validation(
                    "1 validation error detected: Value null at 'state' failed to satisfy constraint: Member must not be null",
                ))
            }
        };
        let max_results = match request.max_results {
            None => 20,
            Some(n @ 1..=200) => n as usize,
            Some(n) => {
                return Err(ApiError::validation(format!(
                    "1 validation error detected: Value '{n}' at 'maxResults' failed to satisfy constraint: Member must have value between 1 and 200"
                )))
            }
        };
        let filters = parse_filters(request.filters.as_deref())?;
        let fingerprint = query_fingerprint(state, request.filters.as_deref());

        let list = self.list(state);
        let (range_start, range_end) = if options.limit_before_filter {
            (0, list.len())
        } else {
            time_range(list, &filters)
        };
        // The unserved part of the range: [low, high) of the newest-first
        // list, served from `low` up (newest first) or `high` down.
        let (mut low, mut high) = (range_start, range_end);
        if let Some(raw) = &request.next_token {
            if options.token_fault == TokenFault::Invalid {
                return Err(invalid_token("The token is not valid"));
            }
            let token = decode_token(raw)?;
            if token.q != fingerprint {
                return Err(invalid_token("The token does not belong to this request"));
            }
            if now_ms - token.t > options.token_lifetime_ms {
                return Err(invalid_token("The token has expired"));
            }
            let last = (Reverse(token.s), token.i.as_str());
            match options.order {
                ResultOrder::NewestFirst => {
                    low = low.max(list.partition_point(|s| order_key(s) <= last));
                }
                ResultOrder::OldestFirst => {
                    high = high.min(list.partition_point(|s| order_key(s) < last));
                }
            }
        }

        let retention_floor = now_ms - HISTORY_RETENTION_MS;
        let mut sessions = Vec::new();
        let mut scanned = 0;
        let mut last_scanned = None;
        while low < high {
            let full = if options.limit_before_filter {
                scanned == max_results
            } else {
                sessions.len() == max_results
            };
            if full {
                break;
            }
            let session = match options.order {
                ResultOrder::NewestFirst => {
                    low += 1;
                    &list[low - 1]
                }
                ResultOrder::OldestFirst => {
                    high -= 1;
                    &list[high]
                }
            };
            scanned += 1;
            last_scanned = Some(session);
            let retained = state == SessionState::Active
                || session.end_date.unwrap_or(session.start_date) >= retention_floor;
            if retained
                && filters
                    .iter()
                    .all(|f| matches(f, session, options.boundary_mode))
            {
                sessions.push(session);
            }
        }
        let next_token = match (low < high, last_scanned) {
            (true, Some(last)) => Some(encode_token(&Token {
                q: fingerprint,
                s: last.start_date,
                i: last.session_id.clone(),
                t: now_ms,
            })),
            _ => None,
        };
        let next_token = match options.token_fault {
            TokenFault::Repeat if next_token.is_some() && request.next_token.is_some() => {
                request.next_token.clone()
            }
            TokenFault::Empty if next_token.is_none() => Some(String::new()),
            _ => next_token,
        };
        Ok(DescribeSessionsResponse {
            sessions,
            next_token,
        })
    }
}

/// The slice of `list` (sorted newest first) the time filters can match,
/// widened by a second each side so that every boundary reading is covered;
/// `matches` makes the exact decision.
fn time_range(list: &[SimSession], filters: &[Filter]) -> (usize, usize) {
    let mut start = 0;
    let mut end = list.len();
    for filter in filters {
        match filter {
            Filter::Before(t) => {
                start = start.max(list.partition_point(|s| s.start_date >= t + 1000));
            }
            Filter::After(t) => {
                end = end.min(list.partition_point(|s| s.start_date >= t - 1000));
            }
            _ => {}
        }
    }
    (start, end.max(start))
}

fn matches(filter: &Filter, s: &SimSession, mode: BoundaryMode) -> bool {
    let whole_seconds = s.start_date.div_euclid(1000) * 1000;
    match filter {
        Filter::After(t) => match mode {
            BoundaryMode::Documented => s.start_date >= *t,
            BoundaryMode::Inclusive => whole_seconds >= *t,
            BoundaryMode::Exclusive => s.start_date > *t,
        },
        Filter::Before(t) => match mode {
            BoundaryMode::Documented | BoundaryMode::Exclusive => s.start_date < *t,
            BoundaryMode::Inclusive => whole_seconds <= *t,
        },
        Filter::Target(v) => s.target.as_deref() == Some(v),
        Filter::Owner(v) => s.owner.as_deref() == Some(v),
        Filter::Status(v) => s.status.as_deref() == Some(v),
        Filter::SessionId(v) => s.session_id == *v,
        Filter::AccessType(v) => s.access_type.as_deref() == Some(v),
    }
}

fn parse_filters(input: Option<&[FilterInput]>) -> Result<Vec<Filter>, ApiError> {
    let Some(input) = input else {
        return Ok(Vec::new());
    };
    if input.is_empty() || input.len() > 6 {
        return Err(ApiError::validation(format!(
            "1 validation error detected: Value at 'filters' failed to satisfy constraint: Member must have length less than or equal to 6 and greater than or equal to 1 (got {})",
            input.len()
        )));
    }
    input
        .iter()
        .map(|f| {
            let value = f.value.clone().unwrap_or_default();
            if value.is_empty() || value.chars().count() > 400 {
                return Err(ApiError::validation(
                    "1 validation error detected: Value at 'filters.member.value' failed to satisfy constraint: Member must have length between 1 and 400",
                ));
            }
            let time = |v: &str| {
                chrono::DateTime::parse_from_rfc3339(v)
                    .map(|t| t.timestamp_millis())
                    .map_err(|_| {
                        ApiError::validation(format!(
                            "Invalid time {v:?}: use the form YYYY-MM-DDTHH:MM:SSZ"
                        ))
                    })
            };
            let one_of = |allowed: &[&str], v: String| {
                if allowed.contains(&v.as_str()) {
                    Ok(v)
                } else {
                    Err(ApiError::validation(format!(
                        "Invalid filter value {v:?}: use one of {allowed:?}"
                    )))
                }
            };
            Ok(match f.key.as_deref().unwrap_or_default() {
                "InvokedAfter" => Filter::After(time(&value)?),
                "InvokedBefore" => Filter::Before(time(&value)?),
                "Target" => Filter::Target(value),
                "Owner" => Filter::Owner(value),
                "Status" => Filter::Status(one_of(&STATUSES, value)?),
                "SessionId" => Filter::SessionId(value),
                "AccessType" => Filter::AccessType(one_of(&ACCESS_TYPES, value)?),
                other => {
                    return Err(ApiError {
                        status: 400,
                        error_type: "InvalidFilterKey",
                        message: format!("The filter key {other:?} is not valid"),
                    })
                }
            })
        })
        .collect()
}

fn query_fingerprint(state: SessionState, filters: Option<&[FilterInput]>) -> String {
    let mut parts: Vec<(String, String)> = filters
        .unwrap_or_default()
        .iter()
        .map(|f| {
            (
                f.key.clone().unwrap_or_default(),
                f.value.clone().unwrap_or_default(),
            )
        })
        .collect();
    parts.sort();
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    state.as_str().hash(&mut hasher);
    parts.hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

fn invalid_token(message: &str) -> ApiError {
    ApiError {
        status: 400,
        error_type: "InvalidNextToken",
        message: message.to_string(),
    }
}

fn encode_token(token: &Token) -> String {
    let json = serde_json::to_vec(token).unwrap_or_default();
    base64::engine::general_purpose::STANDARD.encode(json)
}

fn decode_token(raw: &str) -> Result<Token, ApiError> {
    base64::engine::general_purpose::STANDARD
        .decode(raw)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or_else(|| invalid_token("The token is not valid"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(id: &str, start: i64, status: &str) -> SimSession {
        SimSession {
            session_id: id.into(),
            target: Some("i-1".into()),
            status: Some(status.into()),
            start_date: start,
            end_date: (status == "Terminated").then_some(start + 1000),
            document_name: None,
            owner: Some("arn:aws:iam::1:user/a".into()),
            reason: None,
            details: None,
            output_url: None,
            max_session_duration: None,
            access_type: None,
        }
    }

    fn options(mode: BoundaryMode, lbf: bool) -> QueryOptions {
        QueryOptions {
            boundary_mode: mode,
            limit_before_filter: lbf,
            token_lifetime_ms: 60_000,
            order: ResultOrder::NewestFirst,
            token_fault: TokenFault::None,
        }
    }

    fn request(
        state: &str,
        max: i64,
        filters: &[(&str, &str)],
        token: Option<String>,
    ) -> DescribeSessionsRequest {
        DescribeSessionsRequest {
            state: Some(state.into()),
            max_results: Some(max),
            next_token: token,
            filters: (!filters.is_empty()).then(|| {
                filters
                    .iter()
                    .map(|(k, v)| FilterInput {
                        key: Some(k.to_string()),
                        value: Some(v.to_string()),
                    })
                    .collect()
            }),
        }
    }

    const NOW: i64 = 1_790_000_000_000;

    fn crawl(
        store: &Store,
        opts: &QueryOptions,
        filters: &[(&str, &str)],
        max: i64,
    ) -> (Vec<String>, usize) {
        let mut ids = Vec::new();
        let mut token = None;
        let mut pages = 0;
        loop {
            let resp = store
                .describe(&request("History", max, filters, token), opts, NOW)
                .expect("page");
            pages += 1;
            ids.extend(resp.sessions.iter().map(|s| s.session_id.clone()));
            match resp.next_token {
                Some(t) => token = Some(t),
                None => return (ids, pages),
            }
        }
    }

    /// 25 sessions, five sharing each of five StartDates.
    fn five_per_second() -> Store {
        Store::new(
            (0..25)
                .map(|i| {
                    session(
                        &format!("s{i:02}"),
                        NOW - 10_000 - (i / 5) * 1000,
                        "Terminated",
                    )
                })
                .collect(),
        )
    }

    #[test]
    fn pages_cover_everything_newest_first_even_with_shared_start_dates() {
        let store = five_per_second();
        let (ids, pages) = crawl(&store, &options(BoundaryMode::Documented, false), &[], 4);
        assert_eq!(ids.len(), 25);
        assert_eq!(pages, 7);
        assert_eq!(ids[0], "s00");
        assert_eq!(ids[24], "s24");
    }

    #[test]
    fn oldest_first_pages_cover_everything_in_the_reverse_order() {
        let store = five_per_second();
        for lbf in [false, true] {
            let mut opts = options(BoundaryMode::Documented, lbf);
            opts.order = ResultOrder::OldestFirst;
            let (ids, _) = crawl(&store, &opts, &[], 4);
            let (newest_first, _) = crawl(&store, &options(BoundaryMode::Documented, lbf), &[], 4);
            let mut reversed = newest_first.clone();
            reversed.reverse();
            assert_eq!(ids, reversed, "limit before filter: {lbf}");
        }
    }

    #[test]
    fn limit_before_filter_gives_short_and_empty_pages_but_loses_nothing() {
        let sessions: Vec<_> = (0..30)
            .map(|i| session(&format!("s{i:02}"), NOW - 100_000 + i * 1000, "Terminated"))
            .collect();
        let store = Store::new(sessions);
        let after = chrono::DateTime::from_timestamp_millis(NOW - 100_000 + 10_000)
            .expect("time")
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        let opts = options(BoundaryMode::Documented, true);
        let (ids, pages) = crawl(&store, &opts, &[("InvokedBefore", &after)], 5);
        assert_eq!(ids.len(), 10);
        assert_eq!(pages, 6, "every page scans five items");
    }

    #[test]
    fn boundary_modes_differ_exactly_at_the_edge() {
        let edge = 1_789_999_200_000; // a whole second
        let store = Store::new(vec![
            session("edge", edge, "Terminated"),
            session("in", edge + 500, "Terminated"),
        ]);
        let at = chrono::DateTime::from_timestamp_millis(edge)
            .expect("time")
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        let count = |mode, key: &str| {
            crawl(&store, &options(mode, false), &[(key, &at)], 10)
                .0
                .len()
        };
        assert_eq!(count(BoundaryMode::Documented, "InvokedAfter"), 2);
        assert_eq!(count(BoundaryMode::Exclusive, "InvokedAfter"), 1);
        assert_eq!(count(BoundaryMode::Documented, "InvokedBefore"), 0);
        assert_eq!(count(BoundaryMode::Inclusive, "InvokedBefore"), 2);
    }

    #[test]
    fn tokens_are_bound_to_their_query_and_expire() {
        let store = Store::new(
            (0..5)
                .map(|i| session(&format!("s{i}"), NOW - i * 1000, "Terminated"))
                .collect(),
        );
        let opts = options(BoundaryMode::Documented, false);
        let token = store
            .describe(&request("History", 2, &[], None), &opts, NOW)
            .expect("page")
            .next_token
            .expect("more");
        let replayed = store.describe(
            &request("History", 2, &[("Owner", "x")], Some(token.clone())),
            &opts,
            NOW,
        );
        assert_eq!(
            replayed.expect_err("other query").error_type,
            "InvalidNextToken"
        );
        let late = store.describe(
            &request("History", 2, &[], Some(token.clone())),
            &opts,
            NOW + 60_001,
        );
        assert_eq!(late.expect_err("expired").error_type, "InvalidNextToken");
        assert!(store
            .describe(&request("History", 2, &[], Some(token)), &opts, NOW + 1000)
            .is_ok());
    }

    #[test]
    fn bad_requests_get_the_service_error_types() {
        let store = Store::new(Vec::new());
        let opts = options(BoundaryMode::Documented, false);
        let err = |r| {
            store
                .describe(&r, &opts, NOW)
                .expect_err("rejected")
                .error_type
        };
        assert_eq!(err(request("Gone", 5, &[], None)), "ValidationException");
        assert_eq!(
            err(request("Active", 201, &[], None)),
            "ValidationException"
        );
        assert_eq!(
            err(request("Active", 5, &[("Color", "red")], None)),
            "InvalidFilterKey"
        );
        assert_eq!(
            err(request("Active", 5, &[("InvokedAfter", "yesterday")], None)),
            "ValidationException"
        );
        let seven = [("Owner", "a"); 7];
        assert_eq!(
            err(request("Active", 5, &seven, None)),
            "ValidationException"
        );
    }

    #[test]
    fn history_forgets_after_thirty_days_and_churn_moves_sessions() {
        let mut store = Store::new(vec![
            session("old", NOW - HISTORY_RETENTION_MS - 10_000, "Terminated"),
            session("live", NOW - 5_000, "Connected"),
        ]);
        let opts = options(BoundaryMode::Documented, false);
        assert_eq!(crawl(&store, &opts, &[], 10).0, Vec::<String>::new());
        store.churn(NOW);
        assert_eq!(crawl(&store, &opts, &[], 10).0, vec!["live".to_string()]);
        assert_eq!(store.active.len(), 1);
        assert!(store.active[0].session_id.starts_with("churn-"));
    }
}
