//! ssm-audit keeps a permanent, queryable record of AWS Systems Manager
//! Session Manager sessions. See `ARCHITECTURE.md` for the map.

pub mod sim;
