//! The one rule for storage keys, shared by every backend: a key is a
//! relative, `/`-separated path of non-empty parts, none of them `.` or
//! `..`, with no control characters or backslashes. A local directory and an
//! S3 prefix therefore accept and refuse exactly the same keys, and no key
//! can name anything outside the storage's root.

use super::StorageError;

/// Checks `key` (an object, not a folder) and returns it unchanged.
pub fn object_key(key: &str) -> Result<&str, StorageError> {
    let clean = !key.is_empty()
        && key.split('/').all(|part| {
            !part.is_empty()
                && part != "."
                && part != ".."
                && !part.chars().any(|c| c.is_control() || c == '\\')
        });
    if clean {
        Ok(key)
    } else {
        Err(StorageError::InvalidKey(key.to_owned()))
    }
}

/// Checks a listing prefix: empty (the whole storage), or a valid key
/// followed by `/`. Returns the folder without its trailing `/`.
pub fn folder_prefix(prefix: &str) -> Result<&str, StorageError> {
    if prefix.is_empty() {
        return Ok("");
    }
    match prefix.strip_suffix('/') {
        Some(folder) if object_key(folder).is_ok() => Ok(folder),
        _ => Err(StorageError::InvalidKey(prefix.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_relative_paths_of_plain_parts() {
        for good in [
            "a",
            "a/b.parquet",
            "sessions/dt=2026-11-01/1_r.parquet",
            "_lock.json",
        ] {
            assert_eq!(object_key(good).ok(), Some(good));
        }
        for bad in [
            "", "/a", "a/", "a//b", "a/./b", "./a", "a/..", "../a", "a\\b", "a\nb", "a\0b",
        ] {
            assert!(object_key(bad).is_err(), "{bad:?}");
        }
        assert_eq!(folder_prefix("").ok(), Some(""));
        assert_eq!(folder_prefix("a/b/").ok(), Some("a/b"));
        for bad in ["a", "/", "a//", "../"] {
            assert!(folder_prefix(bad).is_err(), "{bad:?}");
        }
    }
}
