//! Manifest signatures: [`Signer`] signs a manifest's digest with an
//! asymmetric KMS key (the job needs only `kms:Sign`) or a local Ed25519
//! key; [`Verifier`] checks them with the public key alone (a PEM file, or
//! `kms:GetPublicKey`), so an auditor verifies with read-only access.
//! Verification is local, by aws-lc-rs, for every key type.

use std::path::Path;

use aws_lc_rs::signature::{
    self, Ed25519KeyPair, KeyPair, UnparsedPublicKey, VerificationAlgorithm,
};
use base64::Engine as _;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{PrivatePkcs8KeyDer, SubjectPublicKeyInfoDer};

use crate::dataset::chain::{signing_statement, ManifestSignature, SIGNATURE_FORMAT};
use crate::dataset::sha256_hex;

/// The algorithms a KMS key signs manifests with (KMS's names).
pub const KMS_ALGORITHMS: &[&str] = &[
    "ECDSA_SHA_256",
    "RSASSA_PKCS1_V1_5_SHA_256",
    "RSASSA_PSS_SHA_256",
];
const ED25519: &str = "ED25519";

/// The largest key file read: a PEM key is a few kilobytes.
const MAX_KEY_FILE_BYTES: u64 = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("cannot read the key file {path}: {reason}")]
    KeyFile { path: String, reason: String },
    #[error("KMS refused to {op} with key {key}: {message}; check the key id, its key usage (SIGN_VERIFY), the algorithm (--sign-kms-algorithm) and the kms:{op} permission")]
    Kms {
        op: &'static str,
        key: String,
        message: String,
    },
}

/// Signs manifests for an export.
#[derive(Debug)]
pub enum Signer {
    Kms {
        client: aws_sdk_kms::Client,
        key_id: String,
        algorithm: String,
    },
    Ed25519 {
        pair: Box<Ed25519KeyPair>,
        key_name: String,
    },
}

impl Signer {
    /// A signer with the Ed25519 private key in a PKCS#8 PEM file
    /// (`openssl genpkey -algorithm ed25519`).
    pub fn from_key_file(path: &Path) -> Result<Signer, SignError> {
        let error = |reason: String| SignError::KeyFile {
            path: path.display().to_string(),
            reason,
        };
        let pem = read_key_file(path).map_err(error)?;
        let der = PrivatePkcs8KeyDer::from_pem_slice(&pem).map_err(|e| {
            error(format!(
                "no PKCS#8 private key (BEGIN PRIVATE KEY) in it: {e}"
            ))
        })?;
        let pair = Ed25519KeyPair::from_pkcs8(der.secret_pkcs8_der())
            .map_err(|e| error(format!("not an Ed25519 private key: {e}")))?;
        let key_name = ed25519_key_name(pair.public_key().as_ref());
        Ok(Signer::Ed25519 {
            pair: Box::new(pair),
            key_name,
        })
    }

    pub fn kms(client: aws_sdk_kms::Client, key_id: String, algorithm: String) -> Signer {
        Signer::Kms {
            client,
            key_id,
            algorithm,
        }
    }

    /// Signs the manifest whose bytes have `manifest_sha256`.
    pub async fn sign(
        &self,
        manifest_key: &str,
        manifest_sha256: &str,
    ) -> Result<ManifestSignature, SignError> {
        let statement = signing_statement(manifest_sha256);
        let (algorithm, key, bytes) = match self {
            Signer::Ed25519 { pair, key_name } => (
                ED25519.to_owned(),
                key_name.clone(),
                pair.sign(&statement).as_ref().to_vec(),
            ),
            Signer::Kms {
                client,
                key_id,
                algorithm,
            } => {
                let answer = client
                    .sign()
                    .key_id(key_id)
                    .message(aws_smithy_types::Blob::new(statement))
                    .message_type(aws_sdk_kms::types::MessageType::Raw)
                    .signing_algorithm(aws_sdk_kms::types::SigningAlgorithmSpec::from(
                        algorithm.as_str(),
                    ))
                    .send()
                    .await
                    .map_err(|e| SignError::Kms {
                        op: "Sign",
                        key: key_id.clone(),
                        message: crate::text::error_text(&e),
                    })?;
                let signature = answer.signature().ok_or_else(|| SignError::Kms {
                    op: "Sign",
                    key: key_id.clone(),
                    message: "the answer held no signature".into(),
                })?;
                (
                    algorithm.clone(),
                    answer.key_id().unwrap_or(key_id).to_owned(),
                    signature.as_ref().to_vec(),
                )
            }
        };
        Ok(ManifestSignature {
            format: SIGNATURE_FORMAT,
            manifest: manifest_key.to_owned(),
            manifest_sha256: manifest_sha256.to_owned(),
            algorithm,
            key,
            signature: base64::engine::general_purpose::STANDARD.encode(bytes),
        })
    }
}

/// Checks manifest signatures with a public key.
#[derive(Debug, Clone)]
pub struct Verifier {
    /// SubjectPublicKeyInfo DER.
    public_key: Vec<u8>,
    /// Where the key came from, for messages.
    pub source: String,
}

impl Verifier {
    /// The public key in a PEM file (`BEGIN PUBLIC KEY`): an Ed25519 key,
    /// or a KMS key's public key (`aws kms get-public-key`, DER or PEM).
    pub fn from_public_key_file(path: &Path) -> Result<Verifier, SignError> {
        let error = |reason: String| SignError::KeyFile {
            path: path.display().to_string(),
            reason,
        };
        let bytes = read_key_file(path).map_err(error)?;
        let der = match SubjectPublicKeyInfoDer::from_pem_slice(&bytes) {
            Ok(der) => der.as_ref().to_vec(),
            // DER as KMS's GetPublicKey returns it.
            Err(_) if bytes.first() == Some(&0x30) => bytes,
            Err(e) => {
                return Err(error(format!(
                    "no public key (BEGIN PUBLIC KEY, or DER) in it: {e}"
                )))
            }
        };
        Ok(Verifier {
            public_key: der,
            source: path.display().to_string(),
        })
    }

    /// The public key of a KMS key (needs only `kms:GetPublicKey`).
    pub async fn from_kms(
        client: &aws_sdk_kms::Client,
        key_id: &str,
    ) -> Result<Verifier, SignError> {
        let answer = client
            .get_public_key()
            .key_id(key_id)
            .send()
            .await
            .map_err(|e| SignError::Kms {
                op: "GetPublicKey",
                key: key_id.to_owned(),
                message: crate::text::error_text(&e),
            })?;
        let der = answer.public_key().ok_or_else(|| SignError::Kms {
            op: "GetPublicKey",
            key: key_id.to_owned(),
            message: "the answer held no public key".into(),
        })?;
        Ok(Verifier {
            public_key: der.as_ref().to_vec(),
            source: format!("KMS key {}", answer.key_id().unwrap_or(key_id)),
        })
    }

    /// Checks that `signature` is this key's over the manifest whose bytes
    /// have `manifest_sha256`; the reason when it is not.
    pub fn check(
        &self,
        signature: &ManifestSignature,
        manifest_sha256: &str,
    ) -> Result<(), String> {
        if signature.manifest_sha256 != manifest_sha256 {
            return Err(format!(
                "it signs sha256 {}, the manifest has {manifest_sha256}",
                signature.manifest_sha256
            ));
        }
        let algorithm: &'static dyn VerificationAlgorithm = match signature.algorithm.as_str() {
            "ECDSA_SHA_256" => &signature::ECDSA_P256_SHA256_ASN1,
            "RSASSA_PKCS1_V1_5_SHA_256" => &signature::RSA_PKCS1_2048_8192_SHA256,
            "RSASSA_PSS_SHA_256" => &signature::RSA_PSS_2048_8192_SHA256,
            ED25519 => &signature::ED25519,
            other => return Err(format!("unknown algorithm {other:?}")),
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&signature.signature)
            .map_err(|e| format!("the signature is not base64: {e}"))?;
        UnparsedPublicKey::new(algorithm, &self.public_key)
            .verify(&signing_statement(manifest_sha256), &bytes)
            .map_err(|_| format!("it does not verify with {}", self.source))
    }
}

/// `ed25519:` and the SHA-256 of the raw public key: names the key in a
/// signature without a key id service.
fn ed25519_key_name(raw_public_key: &[u8]) -> String {
    format!("ed25519:{}", sha256_hex(raw_public_key))
}

/// A key file's bytes, bounded: a named device or a huge file is refused.
fn read_key_file(path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read as _;
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    file.take(MAX_KEY_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_KEY_FILE_BYTES {
        return Err(format!("it is larger than {MAX_KEY_FILE_BYTES} bytes"));
    }
    Ok(bytes)
}

/// A fresh Ed25519 pair as PEM (private PKCS#8, public SubjectPublicKeyInfo),
/// as `openssl genpkey -algorithm ed25519` and `openssl pkey -pubout` write
/// them; the tests sign with it.
pub fn generate_ed25519_pem() -> (String, String) {
    use aws_lc_rs::encoding::{AsDer, PublicKeyX509Der};
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).expect("generate");
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("parse");
    let spki = AsDer::<PublicKeyX509Der>::as_der(pair.public_key()).expect("der");
    let pem = |label: &str, der: &[u8]| {
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).expect("ascii"))
            .collect();
        format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            lines.join("\n")
        )
    };
    (
        pem("PRIVATE KEY", pkcs8.as_ref()),
        pem("PUBLIC KEY", spki.as_ref()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_ed25519_signature_verifies_with_the_public_key_only_and_a_tampered_one_does_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (private, public) = generate_ed25519_pem();
        let (other_private, other_public) = generate_ed25519_pem();
        drop(other_private);
        std::fs::write(dir.path().join("sign.pem"), private).expect("write");
        std::fs::write(dir.path().join("sign.pub"), public).expect("write");
        std::fs::write(dir.path().join("other.pub"), other_public).expect("write");
        let signer = Signer::from_key_file(&dir.path().join("sign.pem")).expect("key");
        let digest = "ab".repeat(32);
        let signature = signer.sign("_runs/x.json", &digest).await.expect("signs");
        assert!(signature.key.starts_with("ed25519:"));
        let verifier = Verifier::from_public_key_file(&dir.path().join("sign.pub")).expect("key");
        verifier.check(&signature, &digest).expect("verifies");

        let other = Verifier::from_public_key_file(&dir.path().join("other.pub")).expect("key");
        assert!(other.check(&signature, &digest).is_err(), "another key");
        let altered = "cd".repeat(32);
        assert!(
            verifier.check(&signature, &altered).is_err(),
            "another manifest"
        );
        let mut forged = signature.clone();
        forged.manifest_sha256 = altered.clone();
        assert!(
            verifier.check(&forged, &altered).is_err(),
            "a relabelled signature"
        );
        let mut flipped = signature.clone();
        let mut bytes = base64::engine::general_purpose::STANDARD
            .decode(&flipped.signature)
            .expect("b64");
        bytes[0] ^= 1;
        flipped.signature = base64::engine::general_purpose::STANDARD.encode(bytes);
        assert!(verifier.check(&flipped, &digest).is_err(), "a flipped bit");
        let mut renamed = signature;
        renamed.algorithm = "ECDSA_SHA_256".into();
        assert!(
            verifier.check(&renamed, &digest).is_err(),
            "another algorithm"
        );
    }

    #[test]
    fn key_files_that_are_not_keys_are_refused_by_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("junk.pem");
        std::fs::write(&path, "not a key").expect("write");
        let error = Signer::from_key_file(&path).expect_err("refused");
        assert!(error.to_string().contains("junk.pem"), "{error}");
        assert!(Verifier::from_public_key_file(&path).is_err());
        assert!(Signer::from_key_file(&dir.path().join("absent.pem")).is_err());
    }
}
