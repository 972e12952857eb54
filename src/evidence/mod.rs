//! What makes the data set evidence, and the checks an auditor runs on it:
//! the manifest chains ([`chain`]: where an export's manifest joins, and the
//! ledger of every manifest), signatures ([`sign`]: KMS or Ed25519 to sign,
//! the public key alone to verify), [`verify`] (chains, heads, signatures
//! and every data file) and [`coverage`] (which time the completed runs
//! crawled, and the gaps). The formats themselves are in
//! `crate::dataset::chain`; this module reads and writes them through
//! `storage`, and reaches KMS through clients `aws` builds.

pub mod chain;
pub mod coverage;
pub mod sign;
pub mod verify;
