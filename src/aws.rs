//! Everything about reaching AWS: the SDK configuration built from the user's
//! settings and the standard chain, the account id from
//! `sts:GetCallerIdentity`, and the SSM client with a call counter that feeds
//! the run manifest (calls, retries, throttles).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_ssm::config::retry::{RetryPartition, TokenBucket};
use aws_sdk_ssm::error::ProvideErrorMetadata;
use aws_sdk_ssm::operation::describe_sessions::DescribeSessionsError;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeTransmitInterceptorContextRef, FinalizerInterceptorContextRef,
};
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use serde::Serialize;

use crate::config::AwsSettings;

/// Attempts per call when neither `--max-attempts` nor `AWS_MAX_ATTEMPTS`
/// says otherwise: a throttled crawl needs more than the SDK's 3.
const DEFAULT_MAX_ATTEMPTS: u32 = 10;

/// Why AWS could not be reached or answered; all exit code 1.
#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    #[error(
        "no AWS region is configured: pass --region, or set AWS_REGION or a region in the profile"
    )]
    NoRegion,
    #[error("cannot learn the account id from sts:GetCallerIdentity ({0}); check credentials and the endpoint, or pass --account-id")]
    Identity(String),
}

/// Loads the SDK configuration: the user's flags first, then the standard
/// AWS chain (environment, profiles, SSO, credential_process, ECS, IMDS).
pub async fn load_sdk_config(settings: &AwsSettings) -> Result<SdkConfig, AwsError> {
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).timeout_config(
        TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(5))
            .operation_attempt_timeout(Duration::from_secs(60))
            .build(),
    );
    if let Some(region) = &settings.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(profile) = &settings.profile {
        loader = loader.profile_name(profile);
    }
    if let Some(url) = &settings.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    let attempts = settings.max_attempts.or_else(|| {
        std::env::var_os("AWS_MAX_ATTEMPTS")
            .is_none()
            .then_some(DEFAULT_MAX_ATTEMPTS)
    });
    if let Some(attempts) = attempts {
        // Setting the attempts replaces the whole retry configuration, so the
        // mode the user chose must be carried over.
        let adaptive =
            std::env::var("AWS_RETRY_MODE").is_ok_and(|m| m.eq_ignore_ascii_case("adaptive"));
        let retry = if adaptive {
            RetryConfig::adaptive()
        } else {
            RetryConfig::standard()
        };
        loader = loader.retry_config(retry.with_max_attempts(attempts));
    }
    let config = loader.load().await;
    if config.region().is_none() {
        return Err(AwsError::NoRegion);
    }
    Ok(config)
}

/// The account whose sessions are crawled: `--account-id`, or the caller's.
pub async fn account_id(config: &SdkConfig, settings: &AwsSettings) -> Result<String, AwsError> {
    if let Some(account) = &settings.account_id {
        return Ok(account.clone());
    }
    let identity = aws_sdk_sts::Client::new(config)
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| AwsError::Identity(error_text(&e)))?;
    identity
        .account()
        .map(str::to_owned)
        .ok_or_else(|| AwsError::Identity("the answer holds no account".into()))
}

/// What the SSM client did, attempt by attempt.
#[derive(Debug, Default)]
pub struct CallCounters {
    attempts: AtomicU64,
    throttled: AtomicU64,
    server_errors: AtomicU64,
    transport_errors: AtomicU64,
}

/// A snapshot of [`CallCounters`] for the manifest and the summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CallStats {
    /// HTTP attempts, retries included.
    pub attempts: u64,
    pub throttled: u64,
    pub server_errors: u64,
    /// Attempts that got no HTTP answer (refused, dropped, timed out).
    pub transport_errors: u64,
}

impl CallCounters {
    pub fn snapshot(&self) -> CallStats {
        CallStats {
            attempts: self.attempts.load(Ordering::Relaxed),
            throttled: self.throttled.load(Ordering::Relaxed),
            server_errors: self.server_errors.load(Ordering::Relaxed),
            transport_errors: self.transport_errors.load(Ordering::Relaxed),
        }
    }
}

/// Counts every attempt the SDK makes, so retries and throttles are visible
/// even though the SDK retries on its own.
#[derive(Debug, Clone)]
struct CountingInterceptor(Arc<CallCounters>);

impl Intercept for CountingInterceptor {
    fn name(&self) -> &'static str {
        "ssm-audit-call-counter"
    }

    fn read_before_attempt(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.0.attempts.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(Err(error)) = context.output_or_error() else {
            return Ok(());
        };
        let code = error
            .as_operation_error()
            .and_then(|e| e.downcast_ref::<DescribeSessionsError>())
            .and_then(|e| e.code());
        let status = context.response().map(|r| r.status().as_u16());
        let counter = match (code, status) {
            (Some(c), _) if is_throttling(c) => &self.0.throttled,
            (_, Some(s)) if s >= 500 => &self.0.server_errors,
            (_, None) => &self.0.transport_errors,
            _ => return Ok(()),
        };
        counter.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// The error codes the SDK's retry classifier treats as throttling.
fn is_throttling(code: &str) -> bool {
    matches!(
        code,
        "ThrottlingException"
            | "Throttling"
            | "ThrottledException"
            | "RequestThrottledException"
            | "TooManyRequestsException"
            | "ProvisionedThroughputExceededException"
            | "TransactionInProgressException"
            | "RequestLimitExceeded"
            | "BandwidthLimitExceeded"
            | "LimitExceededException"
            | "RequestThrottled"
            | "SlowDown"
            | "PriorRequestNotComplete"
            | "EC2ThrottledException"
    )
}

/// An SSM client that counts its attempts into `counters`.
pub fn ssm_client(config: &SdkConfig, counters: Arc<CallCounters>) -> aws_sdk_ssm::Client {
    // The SDK's default retry quota (a 500-token bucket that successes do
    // not refill) suits long-lived services; a nightly crawl that meets
    // throttling on a skewed month would exhaust it and fail for good. Each
    // call stays bounded by its max attempts and jittered backoff.
    let partition = RetryPartition::custom("ssm-audit-describe-sessions")
        .token_bucket(TokenBucket::unlimited())
        .build();
    let ssm_config = aws_sdk_ssm::config::Builder::from(config)
        .interceptor(CountingInterceptor(counters))
        .retry_partition(partition)
        .build();
    aws_sdk_ssm::Client::from_conf(ssm_config)
}

/// An S3 client on the same configuration (credentials, region, endpoint
/// settings such as `AWS_ENDPOINT_URL_S3`).
pub fn s3_client(config: &SdkConfig, force_path_style: bool) -> aws_sdk_s3::Client {
    let s3_config = aws_sdk_s3::config::Builder::from(config)
        .force_path_style(force_path_style)
        .build();
    aws_sdk_s3::Client::from_conf(s3_config)
}

/// Storage for a location, loading the SDK configuration only when the
/// location is in S3 (a local data set needs no AWS settings at all).
pub async fn storage_for(
    location: &crate::config::Location,
    settings: &AwsSettings,
    s3: &crate::config::S3Settings,
) -> Result<crate::storage::AnyStorage, AwsError> {
    use crate::config::Location;
    use crate::storage::{AnyStorage, LocalStorage, S3Options, S3Storage};
    match location {
        Location::Local(path) => Ok(AnyStorage::Local(LocalStorage::new(path.clone()))),
        Location::S3 { bucket, prefix } => {
            let sdk_config = load_sdk_config(settings).await?;
            let options = S3Options {
                sse: s3.sse(),
                ..S3Options::default()
            };
            Ok(AnyStorage::S3(S3Storage::new(
                s3_client(&sdk_config, s3.force_path_style),
                bucket,
                prefix,
                options,
            )))
        }
    }
}

/// One line that says what an SDK call's error was: the service's error code
/// and message when the service answered, otherwise each cause in turn
/// ("dispatch failure: io error: … Connection refused (os error 111)").
/// The SDK's own `DisplayErrorContext` also prints a debug dump, which
/// reads badly in an operator's page.
pub fn error_text<E>(error: &E) -> String
where
    E: std::error::Error + ProvideErrorMetadata + 'static,
{
    if let Some(code) = error.code() {
        return match error.message() {
            Some(message) => format!("{code}: {message}"),
            None => code.to_owned(),
        };
    }
    let mut parts: Vec<String> = Vec::new();
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = cause {
        let text = current.to_string();
        // Wrappers often repeat their source's text; say each thing once.
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cause = current.source();
    }
    parts.join(": ")
}
