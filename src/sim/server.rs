//! The simulator's HTTP front: routes AWS JSON 1.1 `AmazonSSM.DescribeSessions`
//! and query-protocol `sts:GetCallerIdentity` and `sts:AssumeRole` on
//! `POST /` (to the account and region the request's signature names, see
//! `tenants`), injects the faults
//! its flags ask for (latency, throttling, 500s, dropped connections), and
//! serves its statistics (`GET /_stats`) and its current data (`GET /_data`).
//!
//! It is a plain hyper server rather than a framework because a dropped
//! connection is injected by failing the service future, which makes hyper
//! close the connection without a response, as a broken network would.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use ssm_audit::api::SessionState;
use tokio::net::TcpListener;

use super::store::{ApiError, DescribeSessionsRequest, QueryOptions, Store};
use super::tenants::{caller_of, Caller, Tenants};

/// Faults and pacing the simulator applies to DescribeSessions calls.
#[derive(Debug, Clone)]
pub struct FaultOptions {
    pub latency: Duration,
    pub jitter: Duration,
    /// Sustained requests per second before `ThrottlingException`; None: no limit.
    pub rate_limit: Option<f64>,
    /// Token-bucket size: how many requests may arrive at once.
    pub burst: f64,
    /// How long a `ThrottlingException` takes to come back: the service
    /// refuses a call without the work of answering it, but not without a
    /// network round trip.
    pub throttle_latency: Duration,
    /// Share (0..=1) of calls answered with `InternalServerError`.
    pub error_share: f64,
    /// Share (0..=1) of calls whose connection is dropped without an answer.
    pub drop_share: f64,
    /// Every this many DescribeSessions calls, one Active session ends and a
    /// new one starts; 0: the data never changes.
    pub churn_every: u64,
}

/// Everything the server needs; built by `ssm-sim serve` from its flags.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    pub query: QueryOptions,
    pub faults: FaultOptions,
    /// Added to the machine's clock to give the simulator's "now".
    pub clock_offset_ms: i64,
    pub account_id: String,
    pub seed: u64,
    /// Appends one line per AWS operation served (`service:Operation`, the
    /// caller's `app/` user-agent name, and `caller` or `assumed`,
    /// tab-separated): what an IAM policy must allow.
    pub operations_log: Option<Arc<std::fs::File>>,
    /// Serve HTTPS with this certificate instead of HTTP.
    pub tls: Option<Tls>,
}

/// The TLS side of an HTTPS simulator.
#[derive(Clone)]
pub struct Tls(pub tokio_rustls::TlsAcceptor);

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls")
    }
}

/// Counters that tests and benchmarks read through `GET /_stats`.
#[derive(Debug, Default)]
pub struct Stats {
    describe_calls: AtomicU64,
    describe_ok: AtomicU64,
    identity_calls: AtomicU64,
    assume_role_calls: AtomicU64,
    throttled: AtomicU64,
    faults: AtomicU64,
    dropped: AtomicU64,
    client_errors: AtomicU64,
    items_served: AtomicU64,
    full_pages: AtomicU64,
    short_pages: AtomicU64,
    empty_pages: AtomicU64,
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
    active_calls: AtomicU64,
    history_calls: AtomicU64,
    /// Microseconds after the simulator started, plus one (0: none yet),
    /// when the first DescribeSessions call arrived and when the last
    /// successful one was answered.
    first_call_us: AtomicU64,
    last_answer_us: AtomicU64,
}

/// The one field of a DescribeSessions request that `/_stats` counts calls
/// by, read before a throttle or a fault answers the call.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StateAsked {
    state: Option<String>,
}

#[derive(Debug, Serialize)]
struct StatsView {
    describe_calls: u64,
    describe_ok: u64,
    identity_calls: u64,
    assume_role_calls: u64,
    /// DescribeSessions calls per `account/region`, with `--accounts-file`.
    calls_by_pair: std::collections::BTreeMap<String, u64>,
    throttled: u64,
    faults: u64,
    dropped: u64,
    client_errors: u64,
    items_served: u64,
    /// Pages with MaxResults sessions, with fewer (not none), with none.
    full_pages: u64,
    short_pages: u64,
    empty_pages: u64,
    in_flight: u64,
    max_in_flight: u64,
    /// Milliseconds from the first DescribeSessions call's arrival to the
    /// last successful one's answer: how long a client kept the API busy,
    /// whatever it did before and after (a benchmark's share of a rate
    /// limit over the calls alone). 0 before a call has succeeded.
    describe_span_ms: u64,
    sessions: usize,
    /// DescribeSessions calls per `State` asked, throttled and failed ones
    /// included (the call budget of the adaptive-crawl benchmarks is per
    /// state), and the sessions each list holds.
    calls_by_state: std::collections::BTreeMap<&'static str, u64>,
    sessions_by_state: std::collections::BTreeMap<&'static str, usize>,
}

#[derive(Debug)]
struct TokenBucket {
    tokens: f64,
    last: Instant,
}

#[derive(Debug)]
struct State {
    store: RwLock<Store>,
    /// Other accounts, when `--accounts-file` named them.
    tenants: Option<Tenants>,
    /// What a region of another account with no data answers from.
    empty: Store,
    options: ServerOptions,
    stats: Stats,
    bucket: Mutex<TokenBucket>,
    /// With other accounts: a rate limit of its own per `account/region`,
    /// as AWS meters them.
    pair_buckets: Mutex<std::collections::HashMap<String, TokenBucket>>,
    rng: Mutex<fastrand::Rng>,
    /// What `Stats`' times count from.
    started: Instant,
}

impl State {
    /// Microseconds since the simulator started, plus one: never 0, which
    /// stands for "not yet" in `Stats`.
    fn clock_us(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX - 1) + 1
    }
}

/// Request bodies larger than this are refused; DescribeSessions requests
/// are a few hundred bytes.
const MAX_BODY: usize = 1 << 20;

/// A request the simulator answers by dropping the connection.
#[derive(Debug, thiserror::Error)]
#[error("connection dropped on purpose")]
struct Dropped;

/// A bound, not yet serving simulator. Binding first lets the caller learn the
/// chosen port (port 0) before anything is served.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    state: Arc<State>,
}

impl Server {
    pub async fn bind(
        addr: SocketAddr,
        store: Store,
        tenants: Option<Tenants>,
        options: ServerOptions,
    ) -> std::io::Result<Server> {
        let listener = TcpListener::bind(addr).await?;
        let burst = options.faults.burst;
        let seed = options.seed;
        Ok(Server {
            listener,
            state: Arc::new(State {
                store: RwLock::new(store),
                tenants,
                empty: Store::new(Vec::new()),
                options,
                stats: Stats::default(),
                pair_buckets: Mutex::new(std::collections::HashMap::new()),
                bucket: Mutex::new(TokenBucket {
                    tokens: burst,
                    last: Instant::now(),
                }),
                rng: Mutex::new(fastrand::Rng::with_seed(seed)),
                started: Instant::now(),
            }),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes.
    pub async fn serve(
        self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> std::io::Result<()> {
        tokio::pin!(shutdown);
        loop {
            let (stream, _) = tokio::select! {
                accepted = self.listener.accept() => accepted?,
                () = &mut shutdown => return Ok(()),
            };
            let state = self.state.clone();
            tokio::spawn(async move {
                match state.options.tls.clone() {
                    // A failed handshake is the client's (an untrusted CA).
                    Some(Tls(tls)) => {
                        if let Ok(stream) = tls.accept(stream).await {
                            serve_connection(state, stream).await;
                        }
                    }
                    None => serve_connection(state, stream).await,
                }
            });
        }
    }
}

async fn serve_connection<S>(state: Arc<State>, stream: S)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| handle(state.clone(), req));
    // Errors here are dropped connections, injected or the client's.
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

/// The `app/NAME` the caller's user agent carries (ssm-audit names its
/// command there), or "-".
fn app_of(req: &Request<Incoming>) -> String {
    ["x-amz-user-agent", "user-agent"]
        .iter()
        .filter_map(|h| req.headers().get(*h).and_then(|v| v.to_str().ok()))
        .flat_map(str::split_whitespace)
        .find_map(|token| token.strip_prefix("app/"))
        .unwrap_or("-")
        .to_owned()
}

/// Records one served operation in the operations log, if there is one,
/// with who called it: `assumed` (a role's credentials in another account,
/// what a member-account role must allow) or `caller` (the job's own).
fn record_operation(state: &State, operation: &str, app: &str, caller: &Caller) {
    if let Some(file) = &state.options.operations_log {
        use std::io::Write;
        let principal = if caller.account_id.is_some() {
            "assumed"
        } else {
            "caller"
        };
        // One write per line: lines from concurrent requests never mix.
        let mut writer: &std::fs::File = file.as_ref();
        let _ = writer.write_all(format!("{operation}\t{app}\t{principal}\n").as_bytes());
    }
}

/// The IAM action of an STS query-protocol body (`Action=...`).
fn sts_operation(body: &[u8]) -> String {
    let action = form_urlencoded::parse(body)
        .find(|(k, _)| k == "Action")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    format!("sts:{action}")
}

fn now_ms(state: &State) -> i64 {
    chrono::Utc::now().timestamp_millis() + state.options.clock_offset_ms
}

async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Dropped> {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/_stats") => Ok(json_response(StatusCode::OK, &stats_view(&state))),
        (&Method::GET, "/_data") => Ok(data_response(&state)),
        (&Method::GET, "/_health") => Ok(text_response(StatusCode::OK, "ok")),
        (&Method::POST, "/listRegions") => {
            let caller = caller_of(
                req.headers()
                    .get("authorization")
                    .and_then(|v| v.to_str().ok()),
            );
            record_operation(&state, "account:ListRegions", &app_of(&req), &caller);
            let account = caller
                .account_id
                .unwrap_or_else(|| state.options.account_id.clone());
            Ok(
                match state
                    .tenants
                    .as_ref()
                    .and_then(|t| t.list_regions(&account))
                {
                    Some(answer) => json_response(StatusCode::OK, &answer),
                    None => api_error(&ApiError {
                        status: 403,
                        error_type: "AccessDeniedException",
                        message: format!("no account {account} in this simulator"),
                    }),
                },
            )
        }
        (&Method::POST, "/") => {
            let target = req
                .headers()
                .get("x-amz-target")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let app = app_of(&req);
            let caller = caller_of(
                req.headers()
                    .get("authorization")
                    .and_then(|v| v.to_str().ok()),
            );
            let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(_) => {
                    return Ok(text_response(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "request body too large",
                    ))
                }
            };
            let operation = match target.as_deref() {
                Some(target) => match target.split_once('.') {
                    Some(("AmazonSSM", op)) => format!("ssm:{op}"),
                    Some(("AWSOrganizationsV20161128", op)) => format!("organizations:{op}"),
                    _ => target.to_owned(),
                },
                None => sts_operation(&body),
            };
            record_operation(&state, &operation, &app, &caller);
            match target.as_deref() {
                Some("AmazonSSM.DescribeSessions") => {
                    describe_sessions(&state, &caller, &body).await
                }
                Some(target) if target.starts_with("AWSOrganizationsV20161128.") => {
                    let operation = target.trim_start_matches("AWSOrganizationsV20161128.");
                    Ok(match &state.tenants {
                        None => api_error(&ApiError {
                            status: 400,
                            error_type: "AWSOrganizationsNotInUseException",
                            message: "this simulator has no organization (--accounts-file)".into(),
                        }),
                        Some(tenants) => match tenants.organizations(operation, &body) {
                            Ok(answer) => json_response(StatusCode::OK, &answer),
                            Err(message) => api_error(&ApiError {
                                status: 400,
                                error_type: "InvalidInputException",
                                message,
                            }),
                        },
                    })
                }
                Some(other) => Ok(api_error(&ApiError {
                    status: 400,
                    error_type: "UnknownOperationException",
                    message: format!(
                        "the simulator serves AmazonSSM.DescribeSessions only, not {other}"
                    ),
                })),
                None => Ok(query_protocol(&state, &caller, &body)),
            }
        }
        _ => Ok(text_response(StatusCode::NOT_FOUND, "not found")),
    }
}

async fn describe_sessions(
    state: &State,
    caller: &Caller,
    body: &[u8],
) -> Result<Response<Full<Bytes>>, Dropped> {
    let stats = &state.stats;
    let calls = stats.describe_calls.fetch_add(1, Ordering::Relaxed) + 1;
    let _ = stats.first_call_us.compare_exchange(
        0,
        state.clock_us(),
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    let asked = serde_json::from_slice::<StateAsked>(body)
        .ok()
        .and_then(|r| r.state);
    let by_state = [
        (SessionState::Active, &stats.active_calls),
        (SessionState::History, &stats.history_calls),
    ];
    if let Some((_, counter)) = by_state
        .iter()
        .find(|(listed, _)| asked.as_deref() == Some(listed.as_str()))
    {
        counter.fetch_add(1, Ordering::Relaxed);
    }
    let in_flight = stats.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    stats.max_in_flight.fetch_max(in_flight, Ordering::SeqCst);
    let result = describe_sessions_in_flight(state, caller, body, calls).await;
    stats.in_flight.fetch_sub(1, Ordering::SeqCst);
    result
}

async fn describe_sessions_in_flight(
    state: &State,
    caller: &Caller,
    body: &[u8],
    calls: u64,
) -> Result<Response<Full<Bytes>>, Dropped> {
    let faults = &state.options.faults;
    let stats = &state.stats;
    let metered_as = state.tenants.as_ref().map(|_| {
        format!(
            "{}/{}",
            caller
                .account_id
                .as_deref()
                .unwrap_or(&state.options.account_id),
            caller.region.as_deref().unwrap_or("")
        )
    });
    if !take_token(state, metered_as) {
        stats.throttled.fetch_add(1, Ordering::Relaxed);
        if !faults.throttle_latency.is_zero() {
            tokio::time::sleep(faults.throttle_latency).await;
        }
        return Ok(api_error(&ApiError {
            status: 400,
            error_type: "ThrottlingException",
            message: "Rate exceeded".into(),
        }));
    }
    let (delay, roll_error, roll_drop) = {
        let mut rng = state.rng.lock().unwrap_or_else(|e| e.into_inner());
        let jitter = faults.jitter.mul_f64(rng.f64());
        (faults.latency + jitter, rng.f64(), rng.f64())
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if roll_drop < faults.drop_share {
        stats.dropped.fetch_add(1, Ordering::Relaxed);
        return Err(Dropped);
    }
    if roll_error < faults.error_share {
        stats.faults.fetch_add(1, Ordering::Relaxed);
        return Ok(api_error(&ApiError {
            status: 500,
            error_type: "InternalServerError",
            message: "An internal error occurred (injected by ssm-sim)".into(),
        }));
    }
    let request: DescribeSessionsRequest = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => {
            stats.client_errors.fetch_add(1, Ordering::Relaxed);
            return Ok(api_error(&ApiError {
                status: 400,
                error_type: "SerializationException",
                message: format!("the request body is not a DescribeSessions request: {e}"),
            }));
        }
    };
    let now = now_ms(state);
    if faults.churn_every > 0 && calls.is_multiple_of(faults.churn_every) {
        state
            .store
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .churn(now);
    }
    let tenant_store;
    let store = match (&state.tenants, &caller.account_id) {
        (Some(tenants), Some(account)) => {
            let region = caller.region.clone().unwrap_or_default();
            tenants.count_call(account, &region);
            let Some(tenant) = tenants.accounts.get(account) else {
                return Ok(api_error(&ApiError {
                    status: 400,
                    error_type: "AccessDeniedException",
                    message: format!("no account {account} in this simulator"),
                }));
            };
            if tenant.disabled_regions.contains(&region) {
                return Ok(api_error(&ApiError {
                    status: 400,
                    error_type: "UnrecognizedClientException",
                    message: "The security token included in the request is invalid.".into(),
                }));
            }
            match tenant.stores.get(&region) {
                Some(store) => {
                    tenant_store = store.read().unwrap_or_else(|e| e.into_inner());
                    &*tenant_store
                }
                None => &state.empty,
            }
        }
        _ => {
            if let Some(tenants) = &state.tenants {
                let region = caller.region.clone().unwrap_or_default();
                tenants.count_call(&state.options.account_id, &region);
            }
            tenant_store = state.store.read().unwrap_or_else(|e| e.into_inner());
            &*tenant_store
        }
    };
    match store.describe(&request, &state.options.query, now) {
        Ok(response) => {
            stats.describe_ok.fetch_add(1, Ordering::Relaxed);
            stats
                .last_answer_us
                .fetch_max(state.clock_us(), Ordering::SeqCst);
            stats
                .items_served
                .fetch_add(response.sessions.len() as u64, Ordering::Relaxed);
            let asked = request.max_results.unwrap_or(20) as usize;
            let fill = match response.sessions.len() {
                0 => &stats.empty_pages,
                n if n >= asked => &stats.full_pages,
                _ => &stats.short_pages,
            };
            fill.fetch_add(1, Ordering::Relaxed);
            let mut resp = json_response(StatusCode::OK, &response);
            resp.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("application/x-amz-json-1.1"),
            );
            Ok(resp)
        }
        Err(error) => {
            stats.client_errors.fetch_add(1, Ordering::Relaxed);
            Ok(api_error(&error))
        }
    }
}

/// The token bucket behind the request-rate limit: the simulator's one, or
/// the (account, region)'s when it serves other accounts.
fn take_token(state: &State, pair: Option<String>) -> bool {
    let faults = &state.options.faults;
    let Some(rate) = faults.rate_limit else {
        return true;
    };
    let mut pairs;
    let mut shared;
    let bucket: &mut TokenBucket = match pair {
        Some(pair) => {
            pairs = state.pair_buckets.lock().unwrap_or_else(|e| e.into_inner());
            pairs.entry(pair).or_insert_with(|| TokenBucket {
                tokens: faults.burst,
                last: Instant::now(),
            })
        }
        None => {
            shared = state.bucket.lock().unwrap_or_else(|e| e.into_inner());
            &mut shared
        }
    };
    let now = Instant::now();
    let refill = now.duration_since(bucket.last).as_secs_f64() * rate;
    bucket.tokens = (bucket.tokens + refill).min(faults.burst);
    bucket.last = now;
    if bucket.tokens >= 1.0 {
        bucket.tokens -= 1.0;
        true
    } else {
        false
    }
}

/// Query protocol (form-encoded `Action=...`): `sts:GetCallerIdentity`, and
/// `sts:AssumeRole` into the accounts of `--accounts-file`.
fn query_protocol(state: &State, caller: &Caller, body: &[u8]) -> Response<Full<Bytes>> {
    let form: std::collections::HashMap<String, String> = form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let sts_error = |status: StatusCode, code: &str, message: &str| {
        xml_response(
            status,
            format!(
                "<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{}</Message></Error><RequestId>{}</RequestId></ErrorResponse>",
                xml_escape(message),
                request_id(state)
            ),
        )
    };
    match form.get("Action").map(String::as_str) {
        Some("GetCallerIdentity") => {
            state.stats.identity_calls.fetch_add(1, Ordering::Relaxed);
            let account = xml_escape(
                caller
                    .account_id
                    .as_deref()
                    .unwrap_or(&state.options.account_id),
            );
            xml_response(
                StatusCode::OK,
                format!(
                    "<GetCallerIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><GetCallerIdentityResult><Arn>arn:aws:iam::{account}:user/ssm-sim</Arn><UserId>AIDASIMULATOR00000001</UserId><Account>{account}</Account></GetCallerIdentityResult><ResponseMetadata><RequestId>{}</RequestId></ResponseMetadata></GetCallerIdentityResponse>",
                    request_id(state)
                ),
            )
        }
        Some("AssumeRole") => {
            state
                .stats
                .assume_role_calls
                .fetch_add(1, Ordering::Relaxed);
            let Some(tenants) = &state.tenants else {
                return sts_error(
                    StatusCode::FORBIDDEN,
                    "AccessDenied",
                    "this simulator serves no other account (--accounts-file)",
                );
            };
            let role_arn = form.get("RoleArn").map(String::as_str).unwrap_or("");
            let account = match tenants.assume(role_arn, form.get("ExternalId").map(String::as_str))
            {
                Ok(account) => account,
                Err(reason) => return sts_error(StatusCode::FORBIDDEN, "AccessDenied", &reason),
            };
            let seconds: i64 = form
                .get("DurationSeconds")
                .and_then(|d| d.parse().ok())
                .unwrap_or(3600);
            // Real time: the SDK compares expiry with the machine's clock.
            let expires = (chrono::Utc::now() + chrono::Duration::seconds(seconds))
                .format("%Y-%m-%dT%H:%M:%SZ");
            let session = xml_escape(
                form.get("RoleSessionName")
                    .map(String::as_str)
                    .unwrap_or("s"),
            );
            let key_suffix = request_id(state)[..4].to_ascii_uppercase();
            xml_response(
                StatusCode::OK,
                format!(
                    "<AssumeRoleResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><AssumeRoleResult><Credentials><AccessKeyId>ASIA{account}{key_suffix}</AccessKeyId><SecretAccessKey>sim-secret</SecretAccessKey><SessionToken>sim-token-{account}</SessionToken><Expiration>{expires}</Expiration></Credentials><AssumedRoleUser><AssumedRoleId>AROASIMULATOR:{session}</AssumedRoleId><Arn>arn:aws:sts::{account}:assumed-role/ssm-audit/{session}</Arn></AssumedRoleUser></AssumeRoleResult><ResponseMetadata><RequestId>{}</RequestId></ResponseMetadata></AssumeRoleResponse>",
                    request_id(state)
                ),
            )
        }
        other => sts_error(
            StatusCode::BAD_REQUEST,
            "InvalidAction",
            &format!(
                "the simulator answers GetCallerIdentity and AssumeRole only, not {}",
                other.unwrap_or("a request without Action")
            ),
        ),
    }
}

fn request_id(state: &State) -> String {
    let mut rng = state.rng.lock().unwrap_or_else(|e| e.into_inner());
    format!(
        "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
        rng.u32(..),
        rng.u16(..),
        rng.u16(..0x1000),
        rng.u16(..0x1000),
        rng.u64(..1 << 48)
    )
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn stats_view(state: &State) -> StatsView {
    let s = &state.stats;
    let store = state.store.read().unwrap_or_else(|e| e.into_inner());
    let load = |c: &AtomicU64| c.load(Ordering::SeqCst);
    StatsView {
        describe_calls: load(&s.describe_calls),
        describe_ok: load(&s.describe_ok),
        identity_calls: load(&s.identity_calls),
        assume_role_calls: load(&s.assume_role_calls),
        calls_by_pair: state
            .tenants
            .as_ref()
            .map(|t| t.calls.lock().unwrap_or_else(|e| e.into_inner()).clone())
            .unwrap_or_default(),
        throttled: load(&s.throttled),
        faults: load(&s.faults),
        dropped: load(&s.dropped),
        client_errors: load(&s.client_errors),
        items_served: load(&s.items_served),
        full_pages: load(&s.full_pages),
        short_pages: load(&s.short_pages),
        empty_pages: load(&s.empty_pages),
        in_flight: load(&s.in_flight),
        max_in_flight: load(&s.max_in_flight),
        describe_span_ms: match (load(&s.first_call_us), load(&s.last_answer_us)) {
            (first, last) if first > 0 && last > first => (last - first) / 1000,
            _ => 0,
        },
        sessions: store.len(),
        calls_by_state: [
            (SessionState::Active.as_str(), load(&s.active_calls)),
            (SessionState::History.as_str(), load(&s.history_calls)),
        ]
        .into(),
        sessions_by_state: [SessionState::Active, SessionState::History]
            .map(|listed| (listed.as_str(), store.count(listed)))
            .into(),
    }
}

fn data_response(state: &State) -> Response<Full<Bytes>> {
    let store = state.store.read().unwrap_or_else(|e| e.into_inner());
    let mut out = Vec::new();
    for session in store.all() {
        if serde_json::to_writer(&mut out, session).is_ok() {
            out.push(b'\n');
        }
    }
    let mut resp = Response::new(Full::new(Bytes::from(out)));
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/x-ndjson"),
    );
    resp
}

fn api_error(error: &ApiError) -> Response<Full<Bytes>> {
    let body = serde_json::json!({"__type": error.error_type, "message": error.message});
    let mut resp = json_response(
        StatusCode::from_u16(error.status).unwrap_or(StatusCode::BAD_REQUEST),
        &body,
    );
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/x-amz-json-1.1"),
    );
    if let Ok(v) = hyper::header::HeaderValue::from_str(error.error_type) {
        resp.headers_mut().insert("x-amzn-errortype", v);
    }
    resp
}

fn json_response<T: Serialize>(status: StatusCode, body: &T) -> Response<Full<Bytes>> {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut resp = Response::new(Full::new(Bytes::from(bytes)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    resp
}

fn xml_response(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/xml"),
    );
    resp
}

fn text_response(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = status;
    resp
}
