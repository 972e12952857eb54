//! `ssm-sim`: a local stand-in for the SSM DescribeSessions endpoint (and
//! `sts:GetCallerIdentity`) that real AWS clients cannot tell from the service
//! for this operation. Tests, benchmarks and `make demo` stand on it.
//!
//! - [`model`]: the wire shape of a session, shared with data files.
//! - [`data`]: seeded generation and JSON Lines loading.
//! - [`store`]: the query engine (filters, order, tokens, retention, churn).
//! - [`server`]: HTTP routing, fault injection and statistics.

pub mod data;
pub mod model;
pub mod server;
pub mod store;
