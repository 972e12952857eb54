//! Everything about reaching AWS: the SDK configuration built from the user's
//! settings and the standard chain, the account id from
//! `sts:GetCallerIdentity`, the SSM client with a call counter that feeds the
//! run manifest (calls, retries, throttles, in [`counters`]), and the S3
//! client behind storage locations, and the KMS client that signs manifests.
//! **API boundary**: the only module that
//! builds SDK clients (`tests/it/tidy.rs` checks it).

mod counters;
mod network;

pub use counters::{CallCounters, CallStats};

use std::sync::Arc;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_ssm::config::retry::{RetryPartition, TokenBucket};
use aws_sdk_ssm::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ssm::operation::describe_sessions::DescribeSessionsError;

use crate::config::{AwsSettings, Destination, Location, S3Settings};
use crate::storage::{AnyStorage, LocalStorage, S3Options, S3Storage};
use crate::text::error_text;
use counters::CountingInterceptor;

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
    #[error("cannot list the organization's accounts ({0}); run from the management account or a delegated administrator, with organizations:ListAccounts (and ListAccountsForParent, ListOrganizationalUnitsForParent for OU filters)")]
    Organization(String),
    #[error("cannot list the account's enabled regions ({0}); the role needs account:ListRegions, or pass --regions")]
    Regions(String),
    #[error("cannot set up the HTTP client ({0}); check --ca-bundle (AWS_CA_BUNDLE)")]
    Network(String),
    #[error("cannot assume {role}: {message}; check that the role exists in the account, that its trust policy names this caller (and the --external-id), and sts:AssumeRole on it")]
    AssumeRole { role: String, message: String },
}

/// The SDK configuration of one account reached through `role`: its
/// credentials come from sts:AssumeRole, cached and renewed before they
/// expire, and are shared by every client built from it (all the account's
/// regions), so an account costs one AssumeRole per credential lifetime.
/// The role is assumed once here, so that a role that cannot be assumed
/// fails its account before any SSM call.
pub async fn assume_role_config(
    base: &SdkConfig,
    role: &crate::config::RoleSpec,
    account_id: &str,
) -> Result<SdkConfig, AwsError> {
    use aws_sdk_s3::config::SharedCredentialsProvider;
    let arn = role.arn(account_id);
    // STS throttles a fleet's AssumeRoles: adaptive retry paces them (a
    // client-side rate that backs off on each throttle).
    let attempts = base
        .retry_config()
        .map_or(DEFAULT_MAX_ATTEMPTS, |r| r.max_attempts());
    let paced = base
        .to_builder()
        .retry_config(RetryConfig::adaptive().with_max_attempts(attempts))
        .build();
    let mut builder = aws_config::sts::AssumeRoleProvider::builder(&arn)
        .session_name(&role.session_name)
        .session_length(role.duration)
        .configure(&paced);
    if let Some(id) = &role.external_id {
        builder = builder.external_id(id);
    }
    let provider = builder.build().await;
    // One cache for every client of the account (each region's SSM
    // client), so its regions share the assumed credentials.
    let config = base
        .to_builder()
        .credentials_provider(SharedCredentialsProvider::new(provider))
        .identity_cache(aws_config::identity::IdentityCache::lazy().build())
        .build();
    // Through the cache: the role is assumed once, and the credentials are
    // proven to be the account's own before any of its data is read.
    let answer = aws_sdk_sts::Client::from_conf(
        aws_sdk_sts::config::Builder::from(&config)
            .retry_config(RetryConfig::adaptive().with_max_attempts(attempts))
            .build(),
    )
    .get_caller_identity()
    .send()
    .await
    .map_err(|e| AwsError::AssumeRole {
        role: arn.clone(),
        message: assume_role_refusal(&e).unwrap_or_else(|| error_text(&e)),
    })?;
    match answer.account() {
        Some(found) if found == account_id => Ok(config),
        found => Err(AwsError::AssumeRole {
            role: arn,
            message: format!(
                "the credentials belong to account {}, not {account_id}",
                found.unwrap_or("(none)")
            ),
        }),
    }
}

/// The accounts of the caller's organization.
#[derive(Debug, Clone, Default)]
pub struct OrgAccounts {
    /// Active accounts kept by the OU filter, sorted.
    pub active: Vec<String>,
    /// Accounts skipped because they are not active, with their status.
    pub suspended: Vec<(String, String)>,
}

/// Lists the organization's accounts (organizations:ListAccounts), keeps
/// those below `include_ou` (all when empty) and none below `exclude_ou`
/// (organizations:ListAccountsForParent and ListOrganizationalUnitsForParent,
/// at any depth). Organizations throttles hard: adaptive retry paces it.
pub async fn organization_accounts(
    base: &SdkConfig,
    include_ou: &[String],
    exclude_ou: &[String],
) -> Result<OrgAccounts, AwsError> {
    let attempts = base
        .retry_config()
        .map_or(DEFAULT_MAX_ATTEMPTS, |r| r.max_attempts());
    let client = aws_sdk_organizations::Client::from_conf(
        aws_sdk_organizations::config::Builder::from(base)
            .retry_config(RetryConfig::adaptive().with_max_attempts(attempts))
            .build(),
    );
    fn refused<E>(op: &str, error: &E) -> AwsError
    where
        E: std::error::Error + ProvideErrorMetadata + 'static,
    {
        AwsError::Organization(format!("{op}: {}", error_text(error)))
    }
    let mut listed = Vec::new();
    let mut pages = client.list_accounts().into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| refused("ListAccounts", &e))?;
        for account in page.accounts() {
            if let Some(id) = account.id() {
                let status = account
                    .state()
                    .map(|s| s.as_str().to_owned())
                    .or_else(|| account.status().map(|s| s.as_str().to_owned()))
                    .unwrap_or_default();
                listed.push((id.to_owned(), status));
            }
        }
    }
    let below = |ous: Vec<String>| {
        let client = client.clone();
        async move {
            let mut found = std::collections::BTreeSet::new();
            let mut queue = ous;
            while let Some(parent) = queue.pop() {
                let mut accounts = client
                    .list_accounts_for_parent()
                    .parent_id(&parent)
                    .into_paginator()
                    .send();
                while let Some(page) = accounts.next().await {
                    let page = page.map_err(|e| refused("ListAccountsForParent", &e))?;
                    found.extend(
                        page.accounts()
                            .iter()
                            .filter_map(|a| a.id().map(str::to_owned)),
                    );
                }
                let mut children = client
                    .list_organizational_units_for_parent()
                    .parent_id(&parent)
                    .into_paginator()
                    .send();
                while let Some(page) = children.next().await {
                    let page = page.map_err(|e| refused("ListOrganizationalUnitsForParent", &e))?;
                    queue.extend(
                        page.organizational_units()
                            .iter()
                            .filter_map(|ou| ou.id().map(str::to_owned)),
                    );
                }
            }
            Ok::<_, AwsError>(found)
        }
    };
    let included = if include_ou.is_empty() {
        None
    } else {
        Some(below(include_ou.to_vec()).await?)
    };
    let excluded = below(exclude_ou.to_vec()).await?;
    let mut found = OrgAccounts::default();
    for (id, status) in listed {
        if excluded.contains(&id) || included.as_ref().is_some_and(|keep| !keep.contains(&id)) {
            continue;
        }
        if status == "ACTIVE" {
            found.active.push(id);
        } else {
            found.suspended.push((id, status));
        }
    }
    found.active.sort();
    Ok(found)
}

/// The regions `account_config`'s account has enabled (account:ListRegions,
/// asked by the account itself).
pub async fn enabled_regions(account_config: &SdkConfig) -> Result<Vec<String>, AwsError> {
    use aws_sdk_account::types::RegionOptStatus;
    let client = aws_sdk_account::Client::new(account_config);
    let mut regions = Vec::new();
    let mut pages = client
        .list_regions()
        .region_opt_status_contains(RegionOptStatus::Enabled)
        .region_opt_status_contains(RegionOptStatus::EnabledByDefault)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| AwsError::Regions(error_text(&e)))?;
        regions.extend(
            page.regions()
                .iter()
                .filter_map(|r| r.region_name().map(str::to_owned)),
        );
    }
    regions.sort();
    regions.dedup();
    Ok(regions)
}

/// STS's own words when it refused the AssumeRole behind a failed call
/// (`AccessDenied: User is not authorized ...`), found in the error's causes.
fn assume_role_refusal(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    use aws_sdk_sts::operation::assume_role::AssumeRoleError;
    let mut cause = Some(error);
    while let Some(current) = cause {
        if let Some(SdkError::ServiceError(refused)) = current
            .downcast_ref::<SdkError<AssumeRoleError, aws_smithy_runtime_api::http::Response>>()
        {
            let refused = refused.err();
            return Some(format!(
                "{}: {}",
                refused.code().unwrap_or("refused"),
                refused.message().unwrap_or("no message")
            ));
        }
        cause = current.source();
    }
    None
}

/// `config` in another region (same credentials and their cache).
pub fn in_region(config: &SdkConfig, region: &str) -> SdkConfig {
    config
        .to_builder()
        .region(Region::new(region.to_owned()))
        .build()
}

/// Loads the SDK configuration: the user's flags first, then the standard
/// AWS chain (environment, profiles, SSO, credential_process, ECS, IMDS).
pub async fn load_sdk_config(settings: &AwsSettings) -> Result<SdkConfig, AwsError> {
    let mut timeouts = TimeoutConfig::builder()
        .connect_timeout(settings.connect_timeout.unwrap_or(Duration::from_secs(5)))
        .operation_attempt_timeout(Duration::from_secs(60));
    if let Some(read) = settings.read_timeout {
        timeouts = timeouts.read_timeout(read);
    }
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(timeouts.build())
        .http_client(network::http_client(&settings.network)?);
    if let Ok(name) = aws_config::AppName::new(format!("ssm-audit-{}", settings.command)) {
        loader = loader.app_name(name);
    }
    if let Some(bundle) = &settings.network.ca_bundle {
        tracing::debug!(path = %bundle.path.display(), certificates = bundle.certificates, "trusting the CA bundle's certificates beside the system's");
    }
    if settings.network.proxy_from_env {
        tracing::debug!(
            "AWS calls go through the proxy of HTTPS_PROXY/HTTP_PROXY, NO_PROXY exempting"
        );
    }
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

/// Attempts per call, retries included: `--max-attempts`, else
/// `AWS_MAX_ATTEMPTS`, else [`DEFAULT_MAX_ATTEMPTS`].
pub fn max_attempts(settings: &AwsSettings) -> u32 {
    settings
        .max_attempts
        .or_else(|| {
            std::env::var("AWS_MAX_ATTEMPTS")
                .ok()
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(DEFAULT_MAX_ATTEMPTS)
        .max(1)
}

/// What a failed DescribeSessions attempt means for the next one: the one
/// place that decides which SSM errors are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The service's rate limit: retry when the pacer allows.
    Throttled,
    /// A server error, a dropped connection or a timeout: retry after a
    /// backoff.
    Transient,
    /// Anything else (a bad request, a refused token, denied access).
    Permanent,
}

/// Classifies a failed DescribeSessions attempt.
pub fn classify(
    error: &SdkError<DescribeSessionsError, aws_smithy_runtime_api::http::Response>,
) -> Failure {
    match error {
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            match service.err().code() {
                Some(code) if counters::is_throttling(code) => Failure::Throttled,
                _ if status == 429 => Failure::Throttled,
                _ if status >= 500 => Failure::Transient,
                _ => Failure::Permanent,
            }
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            Failure::Transient
        }
        _ => Failure::Permanent,
    }
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

/// An SSM client for one (account, region) that counts its attempts into
/// `counters`, with a retry partition of its own (the SDK shares one retry
/// quota per service and region by default, across every account). It makes
/// one attempt per call: the crawler retries, paced by the (account, region)'s
/// pacer, so that retries too stay under the learned rate.
pub fn ssm_client(
    config: &SdkConfig,
    counters: Arc<CallCounters>,
    account_id: &str,
    region: &str,
) -> aws_sdk_ssm::Client {
    // The partition keeps this client's SDK state apart from other
    // (account, region) pairs; its quota is unlimited because the SDK's
    // default (a 500-token bucket that successes do not refill) would fail
    // a long throttled crawl for good should retries ever be turned back on.
    let partition = RetryPartition::custom(format!("ssm-audit-{account_id}-{region}"))
        .token_bucket(TokenBucket::unlimited())
        .build();
    let ssm_config = aws_sdk_ssm::config::Builder::from(config)
        .interceptor(CountingInterceptor(counters))
        .retry_config(RetryConfig::disabled())
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

/// A KMS client on the same configuration (`AWS_ENDPOINT_URL_KMS` too), for
/// signing manifests and reading a key's public key.
pub fn kms_client(config: &SdkConfig) -> aws_sdk_kms::Client {
    aws_sdk_kms::Client::new(config)
}

/// When the credentials `settings` resolve to expire, if they do (SSO, an
/// assumed or ECS/EC2 role); None for long-lived keys or when none resolve.
pub async fn credentials_expiry(settings: &AwsSettings) -> Option<std::time::SystemTime> {
    use aws_sdk_s3::config::ProvideCredentials;
    let config = load_sdk_config(settings).await.ok()?;
    let provider = config.credentials_provider()?;
    provider.provide_credentials().await.ok()?.expiry()
}

/// Storage for a location. An S3 location needs the SDK configuration:
/// `loaded` when the caller has one, else loaded from `settings` (a local
/// data set needs no AWS settings at all).
pub async fn storage_for(
    location: &Location,
    loaded: Option<&SdkConfig>,
    settings: &AwsSettings,
    s3: &S3Settings,
) -> Result<AnyStorage, AwsError> {
    match location {
        Location::Local(path) => Ok(AnyStorage::Local(LocalStorage::new(path.clone()))),
        Location::S3 { bucket, prefix } => {
            let client = match loaded {
                Some(config) => s3_client(config, s3.force_path_style),
                None => s3_client(&load_sdk_config(settings).await?, s3.force_path_style),
            };
            let options = S3Options {
                sse: s3.sse.clone(),
                ..S3Options::default()
            };
            Ok(AnyStorage::S3(S3Storage::new(
                client, bucket, prefix, options,
            )))
        }
    }
}

/// The storage a single-file destination is written through, and its key:
/// a file's folder on disk, or the bucket's root.
pub async fn destination_storage(
    destination: &Destination,
    loaded: Option<&SdkConfig>,
    settings: &AwsSettings,
    s3: &S3Settings,
) -> Result<(AnyStorage, String), AwsError> {
    match destination {
        Destination::File(path) => {
            let folder = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(std::path::Path::new("."));
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            Ok((AnyStorage::Local(LocalStorage::new(folder)), name))
        }
        Destination::S3 { bucket, key } => {
            let bucket_root = Location::S3 {
                bucket: bucket.clone(),
                prefix: String::new(),
            };
            let storage = storage_for(&bucket_root, loaded, settings, s3).await?;
            Ok((storage, key.clone()))
        }
    }
}
