//! ssm-audit keeps a permanent, queryable record of AWS Systems Manager
//! Session Manager sessions. See `ARCHITECTURE.md` for the map.

pub mod api;
pub mod aws;
pub mod checkpoint;
pub mod cli;
pub mod config;
pub mod crawl;
pub mod export;
pub mod lock;
pub mod manifest;
pub mod publish;
pub mod record;
pub mod report;
pub mod schema;
pub mod sim;
pub mod stage;
pub mod storage;
pub mod verify;
pub mod window;
