//! The HTTP client behind every AWS call: the SDK's own connector (hyper,
//! rustls with aws-lc, the system's trusted roots), plus what the SDK's
//! default client leaves out and company networks need, as the AWS CLI does:
//! the proxy of HTTPS_PROXY / HTTP_PROXY / NO_PROXY (awslabs/aws-sdk-rust#169:
//! the default client ignores them), and the extra certificates of
//! `--ca-bundle` / AWS_CA_BUNDLE (a TLS-intercepting proxy's CA).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode, TlsContext, TrustStore};
use aws_smithy_http_client::Connector;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;

use crate::config::Network;

/// The client for `network`, shared by every SDK client of the run.
pub(super) fn http_client(network: &Network) -> Result<SharedHttpClient, super::AwsError> {
    let mut trust = TrustStore::default().with_native_roots(true);
    if let Some(bundle) = &network.ca_bundle {
        trust = trust.with_pem_certificate(bundle.pem.clone());
    }
    let tls = TlsContext::builder()
        .with_trust_store(trust)
        .build()
        .map_err(|e| super::AwsError::Network(e.to_string()))?;
    let proxy = if network.proxy_from_env {
        ProxyConfig::from_env()
    } else {
        ProxyConfig::disabled()
    };
    Ok(SharedHttpClient::new(EgressClient {
        tls,
        proxy,
        connectors: Mutex::default(),
    }))
}

/// Connect and read timeouts: what tells one connector from another.
type Timeouts = (Option<Duration>, Option<Duration>);

/// One connector (and so one connection pool) per pair of timeouts, as the
/// SDK's own client keeps them: every SSM, S3 and STS client of a run shares
/// the pools.
#[derive(Debug)]
struct EgressClient {
    tls: TlsContext,
    proxy: ProxyConfig,
    connectors: Mutex<HashMap<Timeouts, SharedHttpConnector>>,
}

impl HttpClient for EgressClient {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        let key = (settings.connect_timeout(), settings.read_timeout());
        let mut connectors = self
            .connectors
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        connectors
            .entry(key)
            .or_insert_with(|| {
                let mut builder = Connector::builder().connector_settings(settings.clone());
                // The timeouts need the runtime's sleep.
                builder.set_sleep_impl(components.sleep_impl());
                SharedHttpConnector::new(
                    builder
                        .proxy_config(self.proxy.clone())
                        .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
                        .tls_context(self.tls.clone())
                        .build(),
                )
            })
            .clone()
    }
}
