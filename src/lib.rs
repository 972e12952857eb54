//! ssm-audit keeps a permanent, queryable record of AWS Systems Manager
//! Session Manager sessions. See `ARCHITECTURE.md` for the map.
//!
//! The modules in the order data flows through them: the command line
//! ([`cli`]) becomes a validated configuration ([`config`]); [`export`]
//! crawls DescribeSessions through [`aws`] and writes the data set
//! ([`dataset`]) through [`storage`], chaining and signing its manifests with
//! [`evidence`]; [`evidence`] verifies it and measures its coverage, and
//! [`report`] reads it back for auditors.
//! [`exit`] turns any failure into the process's exit code; [`progress`]
//! shows how far an export has got. [`allocator`] holds the one setting the
//! binary gives the C library's allocator.

pub mod allocator;
pub mod api;
pub mod aws;
pub mod cli;
pub mod config;
pub mod dataset;
pub mod evidence;
pub mod exit;
pub mod export;
pub mod progress;
pub mod report;
pub mod shutdown;
pub mod storage;
pub mod text;
pub mod time;
