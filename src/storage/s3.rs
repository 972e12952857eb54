//! The S3 backend of the storage seam: a bucket and a key prefix.
//!
//! Every upload carries a SHA-256 checksum (S3 verifies it on arrival) and the
//! server-side encryption the run asks for, so a bucket policy that denies
//! unencrypted uploads accepts every request; objects above a threshold go by
//! multipart upload. Conditional writes use `If-None-Match: *` and
//! `If-Match: <etag>`; a 412 or 409 is a lost race ([`Conditional::Conflict`]),
//! unless reading the object back shows it holds exactly what was written
//! (or, for a delete, is gone): the SDK retries an attempt whose answer was
//! lost, and the retry then meets that attempt's own write.
//! Transient failures are retried by the SDK's retry policy; what still fails
//! is a [`StorageError::Remote`] naming the object.

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart, Delete, ObjectIdentifier,
    ServerSideEncryption,
};
use aws_smithy_runtime_api::http::Response as HttpResponse;
use bytes::Bytes;

use super::key::{folder_prefix, object_key};
use super::{Conditional, Storage, StorageError, Versioned, MAX_CONDITIONAL_BYTES};
use crate::text::error_text;

/// Server-side encryption of every object written.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum Sse {
    /// SSE-S3.
    Aes256,
    /// SSE-KMS, with the bucket's default key when no key id is given.
    Kms { key_id: Option<String> },
}

/// How objects are written.
#[derive(Debug, Clone)]
pub struct S3Options {
    pub sse: Option<Sse>,
    /// Objects larger than this go by multipart upload.
    pub multipart_threshold: usize,
    /// Size of each part but the last (S3's minimum is 5 MiB).
    pub part_size: usize,
}

impl Default for S3Options {
    fn default() -> Self {
        S3Options {
            sse: None,
            multipart_threshold: 16 << 20,
            part_size: 8 << 20,
        }
    }
}

/// A bucket and prefix as storage.
#[derive(Debug, Clone)]
pub struct S3Storage {
    client: aws_sdk_s3::Client,
    bucket: String,
    /// Empty, or ending in `/`.
    prefix: String,
    options: S3Options,
}

/// Whether an SDK error is a failed precondition (412) or a conflicting
/// concurrent conditional write (409): both mean another writer won.
fn is_conflict<E: ProvideErrorMetadata>(error: &SdkError<E, HttpResponse>) -> bool {
    matches!(
        error.code(),
        Some("PreconditionFailed" | "ConditionalRequestConflict")
    ) || matches!(http_status(error), Some(409 | 412))
}

fn http_status<E>(error: &SdkError<E, HttpResponse>) -> Option<u16> {
    error.raw_response().map(|r| r.status().as_u16())
}

impl S3Storage {
    pub fn new(
        client: aws_sdk_s3::Client,
        bucket: &str,
        prefix: &str,
        options: S3Options,
    ) -> S3Storage {
        let prefix = prefix.trim_matches('/');
        S3Storage {
            client,
            bucket: bucket.to_owned(),
            prefix: if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}/")
            },
            options,
        }
    }

    fn full_key(&self, key: &str) -> Result<String, StorageError> {
        Ok(format!("{}{}", self.prefix, object_key(key)?))
    }

    /// The key prefix of a folder `prefix` ("" is the output's own).
    fn folder_key_prefix(&self, prefix: &str) -> Result<String, StorageError> {
        let folder = folder_prefix(prefix)?;
        Ok(if folder.is_empty() {
            self.prefix.clone()
        } else {
            format!("{}{folder}/", self.prefix)
        })
    }

    /// An answer that lacks what S3 always sends (an ETag, an upload id):
    /// never guessed at, because a guessed version would break the next
    /// conditional write.
    fn missing(&self, op: &'static str, key: &str, what: &str) -> StorageError {
        StorageError::Remote {
            op,
            location: self.url(key),
            message: format!("the answer carries no {what}; is this endpoint S3-compatible?"),
        }
    }

    /// A link that downloads `key` without AWS credentials for `expires`.
    pub async fn presigned_get(
        &self,
        key: &str,
        expires: std::time::Duration,
    ) -> Result<String, StorageError> {
        let full_key = self.full_key(key)?;
        let presign_error = |message: String| StorageError::Remote {
            op: "presign a link to",
            location: self.url(key),
            message,
        };
        let config = aws_sdk_s3::presigning::PresigningConfig::expires_in(expires)
            .map_err(|e| presign_error(e.to_string()))?;
        let request = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&full_key)
            .presigned(config)
            .await
            .map_err(|e| presign_error(error_text(&e)))?;
        Ok(request.uri().to_string())
    }

    fn url(&self, key: &str) -> String {
        format!("s3://{}/{}{key}", self.bucket, self.prefix)
    }

    fn remote<E>(
        &self,
        op: &'static str,
        key: &str,
        error: SdkError<E, HttpResponse>,
    ) -> StorageError
    where
        E: std::error::Error + ProvideErrorMetadata + Send + Sync + 'static,
    {
        let status = http_status(&error);
        let message = match (&error, error.code(), status) {
            (SdkError::ServiceError(_), Some(code), _) => {
                format!("{code}: {}", error.message().unwrap_or("no message"))
            }
            (SdkError::ServiceError(_), None, Some(status)) => format!("HTTP {status}"),
            _ => error_text(&error),
        };
        let hint = match (error.code(), status) {
            (Some("AccessDenied"), _) | (_, Some(403)) => {
                " (access denied: check the credentials' s3:PutObject, GetObject, ListBucket and DeleteObject permissions on this prefix, the bucket policy, and KMS permissions with --sse aws:kms)"
            }
            (Some("NoSuchBucket"), _) => " (the bucket does not exist)",
            _ => "",
        };
        StorageError::Remote {
            op,
            location: self.url(key),
            message: format!("{message}{hint}"),
        }
    }

    fn with_sse_put(
        &self,
        request: aws_sdk_s3::operation::put_object::builders::PutObjectFluentBuilder,
    ) -> aws_sdk_s3::operation::put_object::builders::PutObjectFluentBuilder {
        match &self.options.sse {
            None => request,
            Some(Sse::Aes256) => request.server_side_encryption(ServerSideEncryption::Aes256),
            Some(Sse::Kms { key_id }) => request
                .server_side_encryption(ServerSideEncryption::AwsKms)
                .set_ssekms_key_id(key_id.clone()),
        }
    }

    /// One PutObject with checksum and encryption, optionally conditional.
    /// The object and its ETag; with a limit, at most that many bytes are
    /// fetched (a ranged GET) and a larger object is an error.
    async fn read_object(
        &self,
        key: &str,
        limit: Option<u64>,
    ) -> Result<Option<Versioned>, StorageError> {
        let full_key = self.full_key(key)?;
        let output = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&full_key)
            .set_range(limit.map(|limit| format!("bytes=0-{limit}")))
            .send()
            .await
        {
            Ok(output) => output,
            // A range of an empty object is not satisfiable: it is empty.
            Err(error) if limit.is_some() && error.code() == Some("InvalidRange") => {
                return Box::pin(self.read_object(key, None)).await;
            }
            Err(error) if error.as_service_error().is_some_and(|e| e.is_no_such_key()) => {
                return Ok(None)
            }
            Err(error) => return Err(self.remote("read", key, error)),
        };
        let object_version = output.version_id().map(str::to_owned);
        let version = output
            .e_tag()
            .ok_or_else(|| self.missing("read", key, "ETag"))?
            .to_owned();
        let data = output
            .body
            .collect()
            .await
            .map_err(|e| StorageError::Remote {
                op: "read",
                location: self.url(key),
                message: e.to_string(),
            })?;
        let data = data.into_bytes();
        if let Some(limit) = limit.filter(|limit| data.len() as u64 > *limit) {
            return Err(StorageError::TooLarge {
                location: self.url(key),
                limit,
            });
        }
        Ok(Some(Versioned {
            data,
            version,
            object_version,
        }))
    }

    async fn put_object(
        &self,
        key: &str,
        data: Bytes,
        condition: Condition<'_>,
    ) -> Result<Conditional, StorageError> {
        let full_key = self.full_key(key)?;
        let written = data.clone();
        let mut request = self
            .with_sse_put(self.client.put_object())
            .bucket(&self.bucket)
            .key(&full_key)
            .set_content_type(content_type(key).map(str::to_owned))
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .body(ByteStream::from(data));
        request = match condition {
            Condition::None => request,
            Condition::Absent => request.if_none_match("*"),
            Condition::Matches(version) => request.if_match(version),
        };
        match request.send().await {
            Ok(output) => match output.e_tag() {
                Some(etag) => Ok(Conditional::Done {
                    version: etag.to_owned(),
                }),
                None => Err(self.missing("upload", key, "ETag")),
            },
            Err(error) if condition != Condition::None && is_conflict(&error) => {
                // The SDK retries an attempt whose answer was lost; if that
                // attempt landed, the retry meets its own write.
                match self.get_versioned(key, written.len() as u64).await {
                    Ok(Some(current)) if current.data == written => Ok(Conditional::Done {
                        version: current.version,
                    }),
                    Ok(_) | Err(StorageError::TooLarge { .. }) => Ok(Conditional::Conflict),
                    Err(error) => Err(error),
                }
            }
            Err(error) => Err(self.remote("upload", key, error)),
        }
    }

    async fn put_multipart(&self, key: &str, data: Bytes) -> Result<(), StorageError> {
        let full_key = self.full_key(key)?;
        let mut create = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(&full_key)
            .set_content_type(content_type(key).map(str::to_owned))
            .checksum_algorithm(ChecksumAlgorithm::Sha256);
        create = match &self.options.sse {
            None => create,
            Some(Sse::Aes256) => create.server_side_encryption(ServerSideEncryption::Aes256),
            Some(Sse::Kms { key_id }) => create
                .server_side_encryption(ServerSideEncryption::AwsKms)
                .set_ssekms_key_id(key_id.clone()),
        };
        let upload = create
            .send()
            .await
            .map_err(|e| self.remote("start a multipart upload of", key, e))?;
        let upload_id = upload
            .upload_id()
            .ok_or_else(|| self.missing("start a multipart upload of", key, "upload id"))?
            .to_owned();
        let result = self.upload_parts(key, &full_key, &upload_id, data).await;
        if result.is_err() {
            // An abandoned upload costs storage until aborted.
            let _ = self
                .client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(&full_key)
                .upload_id(&upload_id)
                .send()
                .await;
        }
        result
    }

    async fn upload_parts(
        &self,
        key: &str,
        full_key: &str,
        upload_id: &str,
        data: Bytes,
    ) -> Result<(), StorageError> {
        let mut parts = Vec::new();
        let part_size = self.options.part_size.max(5 << 20);
        for (index, start) in (0..data.len()).step_by(part_size).enumerate() {
            let chunk = data.slice(start..(start + part_size).min(data.len()));
            let number = index as i32 + 1;
            let part = self
                .client
                .upload_part()
                .bucket(&self.bucket)
                .key(full_key)
                .upload_id(upload_id)
                .part_number(number)
                .checksum_algorithm(ChecksumAlgorithm::Sha256)
                .body(ByteStream::from(chunk))
                .send()
                .await
                .map_err(|e| self.remote("upload a part of", key, e))?;
            parts.push(
                CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(part.e_tag().map(str::to_owned))
                    .set_checksum_sha256(part.checksum_sha256().map(str::to_owned))
                    .build(),
            );
        }
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(full_key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| self.remote("complete the multipart upload of", key, e))?;
        Ok(())
    }
}

/// A delete request the SDK's builder refused (a field it requires unset).
fn unbuildable(location: String, error: aws_sdk_s3::error::BuildError) -> StorageError {
    StorageError::Remote {
        op: "delete",
        location,
        message: format!("cannot build the request: {error}"),
    }
}

/// The media type of an object, from its name, so that a report opened from
/// a presigned link displays instead of downloading as bytes.
fn content_type(key: &str) -> Option<&'static str> {
    let extension = key.rsplit_once('.')?.1;
    Some(match extension {
        "html" => "text/html; charset=utf-8",
        "csv" => "text/csv; charset=utf-8",
        "json" => "application/json",
        "parquet" => "application/vnd.apache.parquet",
        _ => return None,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Condition<'a> {
    None,
    Absent,
    Matches(&'a str),
}

impl Storage for S3Storage {
    fn location(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }

    async fn preflight(&self) -> Result<(), StorageError> {
        let unusable = |reason: String| StorageError::Unusable {
            location: self.location(),
            reason,
        };
        if let Err(error) = self.client.head_bucket().bucket(&self.bucket).send().await {
            let reason = match http_status(&error) {
                Some(404) => format!("bucket {} does not exist", self.bucket),
                Some(403) => format!(
                    "access to bucket {} is denied to these credentials",
                    self.bucket
                ),
                Some(301) => format!(
                    "bucket {} is in another region: pass that region with --region",
                    self.bucket
                ),
                _ => format!(
                    "cannot reach bucket {}: {}",
                    self.bucket,
                    error_text(&error)
                ),
            };
            return Err(unusable(reason));
        }
        let probe = format!(
            "_preflight/{}-{:08x}",
            std::process::id(),
            fastrand::u32(..)
        );
        match self
            .put_object(
                &probe,
                Bytes::from_static(b"ssm-audit write check"),
                Condition::None,
            )
            .await
        {
            Ok(_) => {}
            Err(error) => return Err(unusable(format!("cannot write under the prefix: {error}"))),
        }
        self.delete(&probe)
            .await
            .map_err(|e| unusable(format!("can write but not delete under the prefix: {e}")))
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, StorageError> {
        Ok(self.read_object(key, None).await?.map(|v| v.data))
    }

    async fn get_versioned(
        &self,
        key: &str,
        limit: u64,
    ) -> Result<Option<Versioned>, StorageError> {
        self.read_object(key, Some(limit)).await
    }

    async fn put(&self, key: &str, data: Bytes) -> Result<(), StorageError> {
        if data.len() > self.options.multipart_threshold {
            return self.put_multipart(key, data).await;
        }
        self.put_object(key, data, Condition::None)
            .await
            .map(|_| ())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        let full_prefix = self.folder_key_prefix(prefix)?;
        let mut keys = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&full_prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.remote("list", prefix, e))?;
            for object in page.contents() {
                if let Some(key) = object.key().and_then(|k| k.strip_prefix(&self.prefix)) {
                    keys.push(key.to_owned());
                }
            }
        }
        keys.sort();
        Ok(keys)
    }

    async fn holds_any(&self, prefix: &str) -> Result<bool, StorageError> {
        let full_prefix = self.folder_key_prefix(prefix)?;
        let page = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&full_prefix)
            .max_keys(1)
            .send()
            .await
            .map_err(|e| self.remote("list", prefix, e))?;
        Ok(!page.contents().is_empty())
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        let full_key = self.full_key(key)?;
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(&full_key)
            .send()
            .await
            .map_err(|e| self.remote("delete", key, e))?;
        Ok(())
    }

    fn deletes_per_request(&self) -> usize {
        super::DELETES_PER_REQUEST
    }

    async fn delete_all(&self, keys: Vec<String>) -> Result<(), StorageError> {
        for batch in keys.chunks(self.deletes_per_request()) {
            let objects = batch
                .iter()
                .map(|key| {
                    let full_key = self.full_key(key)?;
                    ObjectIdentifier::builder()
                        .key(full_key)
                        .build()
                        .map_err(|e| unbuildable(self.url(key), e))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let delete = Delete::builder()
                .set_objects(Some(objects))
                .quiet(true)
                .build()
                .map_err(|e| unbuildable(self.url(&batch[0]), e))?;
            // S3 wants a checksum of a DeleteObjects body (Object Lock
            // buckets refuse one without).
            let deleted = self
                .client
                .delete_objects()
                .bucket(&self.bucket)
                .delete(delete)
                .checksum_algorithm(ChecksumAlgorithm::Sha256)
                .send()
                .await
                .map_err(|e| self.remote("delete", &batch[0], e))?;
            // A request that succeeds can still refuse some of its objects.
            if let Some(refused) = deleted.errors().first() {
                let key = refused.key().unwrap_or("an object");
                return Err(StorageError::Remote {
                    op: "delete",
                    location: format!("s3://{}/{key}", self.bucket),
                    message: format!(
                        "{}: {} ({} of {} objects refused in one DeleteObjects request)",
                        refused.code().unwrap_or("error"),
                        refused.message().unwrap_or("no message"),
                        deleted.errors().len(),
                        batch.len()
                    ),
                });
            }
        }
        Ok(())
    }

    async fn put_if_absent(&self, key: &str, data: Bytes) -> Result<Conditional, StorageError> {
        self.put_object(key, data, Condition::Absent).await
    }

    async fn put_if_match(
        &self,
        key: &str,
        data: Bytes,
        version: &str,
    ) -> Result<Conditional, StorageError> {
        self.put_object(key, data, Condition::Matches(version))
            .await
    }

    async fn delete_if_match(&self, key: &str, version: &str) -> Result<Conditional, StorageError> {
        let full_key = self.full_key(key)?;
        match self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(&full_key)
            .if_match(version)
            .send()
            .await
        {
            Ok(_) => Ok(Conditional::Done {
                version: version.to_owned(),
            }),
            Err(error) if is_conflict(&error) || http_status(&error) == Some(404) => {
                // Gone: an attempt whose answer was lost deleted it.
                match self.get_versioned(key, MAX_CONDITIONAL_BYTES).await? {
                    None => Ok(Conditional::Done {
                        version: version.to_owned(),
                    }),
                    Some(_) => Ok(Conditional::Conflict),
                }
            }
            Err(error) => Err(self.remote("delete", key, error)),
        }
    }
}
