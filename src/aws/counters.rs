//! Counts what the SSM client does attempt by attempt (the SDK retries on
//! its own, so only an interceptor sees retries, throttles and faults).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

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
pub(super) struct CountingInterceptor(pub(super) Arc<CallCounters>);

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
pub(super) fn is_throttling(code: &str) -> bool {
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
