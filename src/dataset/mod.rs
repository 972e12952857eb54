//! The data set as readers see it: where every object lives ([`layout`]),
//! the columns and their Parquet encoding ([`schema`]), one row and the rule
//! that merges two observations of a session ([`record`]), and the run
//! manifest that lists what each run wrote ([`manifest`]), and the chain and
//! signature formats that make manifests evidence ([`chain`]). Nothing here does
//! I/O: the export pipeline writes through `storage`, readers read through it.

pub mod chain;
pub mod layout;
pub mod manifest;
pub mod record;
pub mod schema;

/// Hex SHA-256 of bytes: the one digest the data set records (manifests,
/// chains, signatures, staged parts) and `verify` checks.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}
