//! The integration tests, one binary (so the AWS SDK is linked once, not
//! once per file): each module starts `ssm-sim` (and `moto_server` for S3)
//! on a free port in its own temp directory and runs the real `ssm-audit`.

mod common;
mod contract;
mod evidence;
mod export;
mod network;
mod organization;
mod report_verify;
mod resume;
mod s3;
mod sim;
mod storage;
mod tidy;

/// The simulator's wire model, shared by file rather than through the
/// product's library, which never contains the simulator.
#[path = "../../src/sim/model.rs"]
#[allow(dead_code)]
mod sim_model;
