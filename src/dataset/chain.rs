//! The evidence formats beside the run manifests: each (account, region)'s
//! manifests form a hash chain (sequence number and the SHA-256 of the
//! previous manifest, [`ChainLink`]); the newest link is named by a head
//! file ([`ChainHead`]) and can be kept apart from the bucket in its text
//! form (`123456789012/eu-west-1=17:<sha256>`); a manifest's signature is a
//! sidecar ([`ManifestSignature`]) over a short statement of the manifest's
//! digest ([`signing_statement`]). Formats only: reading, walking and
//! signing live in `crate::evidence`.

use serde::{Deserialize, Serialize};

/// Where a manifest sits in its (account, region)'s chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainLink {
    /// 1 for the first chained manifest of an (account, region).
    pub sequence: u64,
    /// SHA-256 of the previous manifest's bytes; None only for the first.
    pub previous_sha256: Option<String>,
    /// Manifests written before manifests were chained (format 1) that the
    /// first link vouches for, so that none can be added or changed later.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adopted: Vec<AdoptedManifest>,
}

/// An unchained manifest the first link of a chain vouches for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdoptedManifest {
    pub manifest: String,
    pub sha256: String,
}

/// The newest link of one (account, region)'s chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainHead {
    pub account_id: String,
    pub region: String,
    pub sequence: u64,
    pub sha256: String,
    /// The manifest's key below the output root.
    pub manifest: String,
}

/// The largest head file or signature read: both are a few hundred bytes.
pub const MAX_EVIDENCE_BYTES: u64 = 64 * 1024;

impl ChainHead {
    /// `ACCOUNT/REGION=SEQUENCE:SHA256`: what a run prints and
    /// `--chain-head-out` keeps, and what `verify --expect-head` takes.
    pub fn anchor(&self) -> String {
        format!(
            "{}/{}={}:{}",
            self.account_id, self.region, self.sequence, self.sha256
        )
    }
}

/// A head an operator kept apart from the bucket: `verify --expect-head`
/// proves the chain still reaches it with the same digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedHead {
    /// None: the data set's only (account, region).
    pub pair: Option<(String, String)>,
    pub sequence: u64,
    pub sha256: String,
}

impl ExpectedHead {
    /// Parses `SEQ:SHA256` or `ACCOUNT/REGION=SEQ:SHA256`.
    pub fn parse(text: &str) -> Result<ExpectedHead, String> {
        let text = text.trim();
        let (pair, rest) = match text.split_once('=') {
            Some((pair, rest)) => {
                let (account, region) = pair
                    .split_once('/')
                    .ok_or_else(|| format!("{pair:?} is not ACCOUNT/REGION"))?;
                super::layout::check_account_id(account)?;
                super::layout::check_region(region)?;
                (Some((account.to_owned(), region.to_owned())), rest)
            }
            None => (None, text),
        };
        let (sequence, sha256) = rest
            .split_once(':')
            .ok_or_else(|| format!("{rest:?} is not SEQUENCE:SHA256"))?;
        let sequence: u64 = sequence
            .parse()
            .map_err(|_| format!("sequence {sequence:?} is not a number"))?;
        if sequence == 0 {
            return Err("sequences start at 1".into());
        }
        if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("{sha256:?} is not a hex SHA-256"));
        }
        Ok(ExpectedHead {
            pair,
            sequence,
            sha256: sha256.to_ascii_lowercase(),
        })
    }
}

/// A manifest's signature, stored beside it as `<run_id>.sig`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestSignature {
    pub format: u32,
    /// The manifest's key below the output root.
    pub manifest: String,
    pub manifest_sha256: String,
    /// KMS's name of the algorithm (`ECDSA_SHA_256`,
    /// `RSASSA_PKCS1_V1_5_SHA_256`, `RSASSA_PSS_SHA_256`) or `ED25519`.
    pub algorithm: String,
    /// The KMS key's ARN, or `ed25519:` and the SHA-256 of the public key.
    pub key: String,
    /// Base64 of the signature over [`signing_statement`].
    pub signature: String,
}

pub const SIGNATURE_FORMAT: u32 = 1;

/// The bytes a signature covers: short enough for KMS to sign as a raw
/// message (at most 4 KiB), and bound to this use so that a signature made
/// by the same key for anything else never verifies as a manifest's.
pub fn signing_statement(manifest_sha256: &str) -> Vec<u8> {
    format!("ssm-audit run manifest\nsha256:{manifest_sha256}\n").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchors_round_trip_and_bad_ones_say_why() {
        let head = ChainHead {
            account_id: "123456789012".into(),
            region: "eu-west-1".into(),
            sequence: 17,
            sha256: "ab".repeat(32),
            manifest: "_runs/x.json".into(),
        };
        let parsed = ExpectedHead::parse(&head.anchor()).expect("parses");
        assert_eq!(
            parsed.pair,
            Some(("123456789012".into(), "eu-west-1".into()))
        );
        assert_eq!((parsed.sequence, parsed.sha256), (17, "ab".repeat(32)));
        let bare = ExpectedHead::parse(&format!("3:{}", "CD".repeat(32))).expect("parses");
        assert_eq!((bare.pair, bare.sequence), (None, 3));
        assert_eq!(bare.sha256, "cd".repeat(32));
        for bad in [
            "",
            "3",
            "x:ab",
            "0:".to_owned().as_str(),
            &format!("1:{}", "g".repeat(64)),
            &format!("123/eu-west-1=1:{}", "a".repeat(64)),
            &format!("123456789012=1:{}", "a".repeat(64)),
        ] {
            assert!(ExpectedHead::parse(bad).is_err(), "{bad}");
        }
    }
}
