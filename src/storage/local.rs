//! The local-directory backend of the storage seam. Every put is a staging
//! file in the same directory, fsynced, renamed into place, and the
//! directory fsynced; conditional writes hold an advisory lock on a sidecar
//! file so check-then-write sequences of processes on one machine do not
//! interleave. Version tags are SHA-256 digests of the content.
//!
//! The output may be a folder other people can write to, so nothing here
//! follows a symbolic link below the root (a planted link would make a
//! clean-up delete its target's files): every path is checked component by
//! component and refused, named, if one is a link; files are opened with
//! `O_NOFOLLOW`, and staging files are created with `O_EXCL` under names no
//! one can predict. Files are created 0640 and folders 0750, whatever the
//! umask.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use sha2::{Digest, Sha256};

use super::key::{folder_prefix, object_key};
use super::{Conditional, Storage, StorageError, Versioned};

/// A local directory as storage.
#[derive(Debug, Clone)]
pub struct LocalStorage {
    root: PathBuf,
    stale: StaleStaging,
}

/// Staging files that killed writers left, per directory, as last read: a
/// put removes those of its key. Reading the directory on every put made
/// staging a crawl's parts quadratic (a part per page, all in one
/// directory); it is read again only once [`STALE_STAGING_REREAD`] has
/// passed. That is soon enough: a key is written only by the run holding its output
/// lock, which it took over from a writer that died only once that
/// writer's lease ran out, and no lease is shorter. Holds the directories
/// written in the last [`STALE_STAGING_REREAD`], not their files.
#[derive(Debug, Clone, Default)]
struct StaleStaging(std::sync::Arc<std::sync::Mutex<std::collections::HashMap<PathBuf, Reading>>>);

/// When a directory was read, and the staging files of others it held then
/// that no put has removed since.
type Reading = (std::time::Instant, Vec<String>);

/// How long a directory's staging files, as read, are trusted: no longer
/// than the shortest output-lock lease (`config` asserts it).
pub const STALE_STAGING_REREAD: std::time::Duration = std::time::Duration::from_millis(100);

impl StaleStaging {
    /// Removes the staging files of `name` in `dir` that another process
    /// left, reading the directory again if it was last read long enough
    /// ago for a lease to have run out since.
    fn sweep(&self, dir: &Path, name: &str) {
        let mut readings = self.0.lock().unwrap_or_else(|e| e.into_inner());
        // A reading that old would be read again; dropping it keeps one
        // per directory written lately, however many a long process writes.
        readings.retain(|_, (read_at, _)| read_at.elapsed() < STALE_STAGING_REREAD);
        let (_, stale) = readings
            .entry(dir.to_path_buf())
            .or_insert_with(|| (std::time::Instant::now(), left_by_others(dir)));
        let of_key = format!(".{name}.tmp-");
        stale.retain(|file| {
            let ours = file.starts_with(&of_key);
            if ours {
                let _ = std::fs::remove_file(dir.join(file));
            }
            !ours
        });
    }
}

/// The staging files in `dir` that another process wrote (see
/// [`LocalStorage::put_blocking`] for their names); readers skip dot-files,
/// as Athena does, so until swept they are only clutter.
fn left_by_others(dir: &Path) -> Vec<String> {
    let ours = format!(".tmp-{}-", std::process::id());
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with('.') && name.contains(".tmp-") && !name.contains(&ours))
        .collect()
}

/// Distinguishes staging files of concurrent puts within one process.
static STAGING_SERIAL: AtomicU64 = AtomicU64::new(0);

impl LocalStorage {
    pub fn new(root: impl Into<PathBuf>) -> LocalStorage {
        LocalStorage {
            root: root.into(),
            stale: StaleStaging::default(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path_of(&self, key: &str) -> Result<PathBuf, StorageError> {
        let path = self.root.join(object_key(key)?);
        refuse_links_below(&self.root, &path)?;
        Ok(path)
    }

    fn io<'a>(
        op: &'static str,
        path: &'a Path,
    ) -> impl FnOnce(std::io::Error) -> StorageError + 'a {
        move |source| StorageError::Io {
            op,
            location: path.display().to_string(),
            source,
        }
    }

    /// Creates the directory of `path` (each missing folder 0750); returns
    /// it with the file name.
    fn prepare_dir(path: &Path) -> Result<(&Path, String), StorageError> {
        let dir = path
            .parent()
            .ok_or_else(|| StorageError::InvalidKey(path.display().to_string()))?;
        if !dir.is_dir() {
            let mut missing = Vec::new();
            let mut current = Some(dir);
            while let Some(folder) = current.filter(|f| !f.as_os_str().is_empty() && !f.exists()) {
                missing.push(folder);
                current = folder.parent();
            }
            for folder in missing.into_iter().rev() {
                match std::fs::DirBuilder::new().mode(FOLDER_MODE).create(folder) {
                    Ok(()) => std::fs::set_permissions(
                        folder,
                        std::fs::Permissions::from_mode(FOLDER_MODE),
                    )
                    .map_err(Self::io("set the mode of", folder))?,
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(Self::io("create directory", folder)(e)),
                }
            }
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| StorageError::InvalidKey(path.display().to_string()))?;
        Ok((dir, name))
    }

    fn put_blocking(stale: &StaleStaging, path: &Path, data: &[u8]) -> Result<(), StorageError> {
        let (dir, name) = Self::prepare_dir(path)?;
        let staging = dir.join(format!(
            ".{name}.tmp-{}-{}-{:016x}",
            std::process::id(),
            STAGING_SERIAL.fetch_add(1, Ordering::Relaxed),
            fastrand::u64(..)
        ));
        let result = (|| {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(FILE_MODE)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&staging)
                .map_err(Self::io("create", &staging))?;
            file.set_permissions(std::fs::Permissions::from_mode(FILE_MODE))
                .map_err(Self::io("set the mode of", &staging))?;
            file.write_all(data).map_err(Self::io("write", &staging))?;
            file.sync_all().map_err(Self::io("fsync", &staging))?;
            std::fs::rename(&staging, path).map_err(Self::io("rename into place", path))?;
            // The rename is durable only once the directory entry is.
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(Self::io("fsync directory", dir))
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&staging);
            return result;
        }
        stale.sweep(dir, &name);
        result
    }

    /// Runs `f` holding an exclusive advisory lock on a sidecar file of
    /// `path`, so that check-then-write sequences of concurrent processes on
    /// this machine do not interleave.
    fn with_key_lock<T>(
        path: &Path,
        f: impl FnOnce() -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        let (dir, name) = Self::prepare_dir(path)?;
        let lock_path = dir.join(format!(".{name}.flock"));
        let lock_file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(FILE_MODE)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&lock_path)
            .map_err(Self::io("open", &lock_path))?;
        lock_file
            .set_permissions(std::fs::Permissions::from_mode(FILE_MODE))
            .map_err(Self::io("set the mode of", &lock_path))?;
        lock_file.lock().map_err(Self::io("lock", &lock_path))?;
        let result = f();
        let _ = lock_file.unlock();
        result
    }

    /// Runs a conditional write under the key's lock: `decide` sees the
    /// object as it is and writes, or answers, in one critical section.
    fn conditionally(
        path: &Path,
        decide: impl FnOnce(Option<Versioned>) -> Result<Conditional, StorageError>,
    ) -> Result<Conditional, StorageError> {
        Self::with_key_lock(path, || decide(Self::read_versioned(path)?))
    }

    /// Writes `data` to `path`; its version.
    fn write_versioned(
        stale: &StaleStaging,
        path: &Path,
        data: &[u8],
    ) -> Result<Conditional, StorageError> {
        Self::put_blocking(stale, path, data)?;
        Ok(Conditional::Done {
            version: content_version(data),
        })
    }

    /// The file and its version, reading at most `limit` bytes of it.
    fn read_versioned_limited(path: &Path, limit: u64) -> Result<Option<Versioned>, StorageError> {
        use std::io::Read;
        let file = match open_no_follow(path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Self::io("read", path)(e)),
        };
        let mut data = Vec::new();
        file.take(limit.saturating_add(1))
            .read_to_end(&mut data)
            .map_err(Self::io("read", path))?;
        if data.len() as u64 > limit {
            return Err(StorageError::TooLarge {
                location: path.display().to_string(),
                limit,
            });
        }
        Ok(Some(Versioned {
            version: content_version(&data),
            data: Bytes::from(data),
            object_version: None,
        }))
    }

    fn read_versioned(path: &Path) -> Result<Option<Versioned>, StorageError> {
        Self::read_versioned_limited(path, super::MAX_CONDITIONAL_BYTES)
    }

    /// Walks `dir` depth first, handing `visit` each file that is an object
    /// (dot-files are not: a writer's staging file, a probe) until it
    /// returns false; a symbolic link anywhere is refused. Returns whether
    /// `visit` stopped the walk.
    fn walk_files(dir: &Path, visit: &mut dyn FnMut(&Path) -> bool) -> Result<bool, StorageError> {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(Self::io("list", dir)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(Self::io("list", dir))?;
            let path = entry.path();
            let file_type = entry.file_type().map_err(Self::io("stat", &path))?;
            if file_type.is_symlink() {
                return Err(StorageError::Link {
                    location: path.display().to_string(),
                });
            }
            let stopped = if file_type.is_dir() {
                Self::walk_files(&path, visit)?
            } else {
                !entry.file_name().to_string_lossy().starts_with('.') && !visit(&path)
            };
            if stopped {
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn list_blocking(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<(), StorageError> {
        Self::walk_files(dir, &mut |path| {
            if let Ok(relative) = path.strip_prefix(root) {
                out.push(relative.to_string_lossy().replace('\\', "/"));
            }
            true
        })?;
        Ok(())
    }

    /// The directory of a folder `prefix` ("" is the root).
    fn folder_path(&self, prefix: &str) -> Result<PathBuf, StorageError> {
        let folder = folder_prefix(prefix)?;
        if folder.is_empty() {
            Ok(self.root.clone())
        } else {
            self.path_of(folder)
        }
    }

    /// Whether `dir` holds a file [`Self::list_blocking`] would list; stops
    /// at the first.
    fn holds_any_blocking(dir: &Path) -> Result<bool, StorageError> {
        Self::walk_files(dir, &mut |_| false)
    }
}

/// The mode of every file and folder this backend creates (the umask does
/// not widen or narrow it): the owner writes, its group reads.
const FILE_MODE: u32 = 0o640;
const FOLDER_MODE: u32 = 0o750;

fn open_no_follow(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// Refuses `path` if a folder or file on the way from `root` to it is a
/// symbolic link (the root itself may be one: the operator chose it).
fn refuse_links_below(root: &Path, path: &Path) -> Result<(), StorageError> {
    let Ok(relative) = path.strip_prefix(root) else {
        return Ok(());
    };
    let mut current = root.to_path_buf();
    for component in relative.components() {
        current.push(component);
        match std::fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(StorageError::Link {
                    location: current.display().to_string(),
                })
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                return Err(StorageError::Io {
                    op: "inspect",
                    location: current.display().to_string(),
                    source: e,
                })
            }
        }
    }
    Ok(())
}

/// The local version tag of some bytes: their SHA-256 (what S3 calls the ETag
/// is opaque too; only equality matters).
fn content_version(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, StorageError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|join| {
        Err(StorageError::Io {
            op: "run",
            location: "a storage task".into(),
            source: std::io::Error::other(join.to_string()),
        })
    })
}

impl Storage for LocalStorage {
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    async fn preflight(&self) -> Result<(), StorageError> {
        let root = self.root.clone();
        blocking(move || {
            let unusable = |reason: String| StorageError::Unusable {
                location: root.display().to_string(),
                reason,
            };
            // The nearest existing ancestor is where a directory would be
            // created; checking there writes nothing that stays.
            let mut probe_dir = root.as_path();
            while !probe_dir.exists() {
                probe_dir = match probe_dir.parent() {
                    Some(p) if !p.as_os_str().is_empty() => p,
                    _ => Path::new("."),
                };
            }
            if !probe_dir.is_dir() {
                return Err(unusable(format!(
                    "{} is not a directory",
                    probe_dir.display()
                )));
            }
            let probe = probe_dir.join(format!(".ssm-audit-probe-{}", std::process::id()));
            std::fs::File::create(&probe).map_err(|e| {
                unusable(format!(
                    "cannot create files in {}: {e}",
                    probe_dir.display()
                ))
            })?;
            let _ = std::fs::remove_file(&probe);
            Ok(())
        })
        .await
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, StorageError> {
        let path = self.path_of(key)?;
        blocking(move || {
            match open_no_follow(&path).and_then(|mut file| {
                let mut data = Vec::new();
                std::io::Read::read_to_end(&mut file, &mut data).map(|_| data)
            }) {
                Ok(data) => Ok(Some(Bytes::from(data))),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(Self::io("read", &path)(e)),
            }
        })
        .await
    }

    async fn put(&self, key: &str, data: Bytes) -> Result<(), StorageError> {
        let path = self.path_of(key)?;
        let stale = self.stale.clone();
        blocking(move || Self::put_blocking(&stale, &path, &data)).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        let dir = self.folder_path(prefix)?;
        let root = self.root.clone();
        blocking(move || {
            let mut keys = Vec::new();
            Self::list_blocking(&root, &dir, &mut keys)?;
            keys.sort();
            Ok(keys)
        })
        .await
    }

    async fn holds_any(&self, prefix: &str) -> Result<bool, StorageError> {
        let dir = self.folder_path(prefix)?;
        blocking(move || Self::holds_any_blocking(&dir)).await
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        let path = self.path_of(key)?;
        let root = self.root.clone();
        blocking(move || {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Self::io("delete", &path)(e)),
            }
            // Directories are implied by keys, as in an object store: an
            // emptied one goes too (remove_dir refuses non-empty ones).
            let mut dir = path.parent();
            while let Some(d) = dir.filter(|d| *d != root && d.starts_with(&root)) {
                if std::fs::remove_dir(d).is_err() {
                    break;
                }
                dir = d.parent();
            }
            Ok(())
        })
        .await
    }

    async fn get_versioned(
        &self,
        key: &str,
        limit: u64,
    ) -> Result<Option<Versioned>, StorageError> {
        let path = self.path_of(key)?;
        blocking(move || Self::read_versioned_limited(&path, limit)).await
    }

    // A conditional write that finds exactly its own bytes (a delete: finds
    // nothing) is done, as `Storage` documents.
    async fn put_if_absent(&self, key: &str, data: Bytes) -> Result<Conditional, StorageError> {
        let path = self.path_of(key)?;
        let stale = self.stale.clone();
        blocking(move || {
            Self::conditionally(&path, |current| match current {
                None => Self::write_versioned(&stale, &path, &data),
                Some(current) if current.data == data => Ok(Conditional::Done {
                    version: current.version,
                }),
                Some(_) => Ok(Conditional::Conflict),
            })
        })
        .await
    }

    async fn put_if_match(
        &self,
        key: &str,
        data: Bytes,
        version: &str,
    ) -> Result<Conditional, StorageError> {
        let path = self.path_of(key)?;
        let version = version.to_owned();
        let stale = self.stale.clone();
        blocking(move || {
            Self::conditionally(&path, |current| match current {
                Some(current) if current.version == version => {
                    Self::write_versioned(&stale, &path, &data)
                }
                Some(current) if current.data == data => Ok(Conditional::Done {
                    version: current.version,
                }),
                _ => Ok(Conditional::Conflict),
            })
        })
        .await
    }

    async fn delete_if_match(&self, key: &str, version: &str) -> Result<Conditional, StorageError> {
        let path = self.path_of(key)?;
        let version = version.to_owned();
        blocking(move || {
            Self::conditionally(&path, |current| match current {
                Some(current) if current.version != version => Ok(Conditional::Conflict),
                Some(_) => {
                    std::fs::remove_file(&path).map_err(Self::io("delete", &path))?;
                    Ok(Conditional::Done { version })
                }
                None => Ok(Conditional::Done { version }),
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // What every backend does is the conformance suite in
    // tests/it/storage.rs; these are the local directory's own duties.
    #[tokio::test]
    async fn a_folder_of_dot_files_holds_nothing_as_it_lists_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LocalStorage::new(dir.path());
        std::fs::create_dir_all(dir.path().join("a/b")).expect("folders");
        std::fs::write(
            dir.path().join("a/b/.one.tmp-1-0"),
            "left by a killed writer",
        )
        .expect("write");
        assert!(store.list("a/").await.expect("list").is_empty());
        assert!(!store.holds_any("a/").await.expect("holds_any"));
        std::fs::write(dir.path().join("a/b/one"), "1").expect("write");
        assert!(store.holds_any("a/").await.expect("holds_any"));
    }

    #[tokio::test]
    async fn files_behave_like_objects_and_killed_writers_leave_no_trace() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("out");
        let store = LocalStorage::new(&root);
        store.preflight().await.expect("writable");
        assert!(!root.exists(), "preflight leaves nothing");

        store
            .put("a/b/one.txt", Bytes::from_static(b"1"))
            .await
            .expect("put");
        let stale = root.join("a/b/.one.txt.tmp-1-0");
        std::fs::write(&stale, "left by a killed writer").expect("write");
        assert_eq!(
            store.list("a/").await.expect("list"),
            ["a/b/one.txt"],
            "dot-files are not objects"
        );
        let other_key = root.join("a/b/.two.txt.tmp-1-0");
        std::fs::write(&other_key, "left by a killed writer").expect("write");
        // The run after the killed writer's: a process of its own.
        let next_run = LocalStorage::new(&root);
        next_run
            .put("a/b/one.txt", Bytes::from_static(b"11"))
            .await
            .expect("replace");
        assert!(
            !stale.exists(),
            "the next put of the key sweeps the stale staging file"
        );
        assert!(other_key.exists(), "another key's is that key's to sweep");
        next_run
            .put("a/b/two.txt", Bytes::from_static(b"2"))
            .await
            .expect("put");
        assert!(
            !other_key.exists(),
            "a reading keeps other keys' files for their own puts"
        );
        // One left after that reading is found by a reading old enough for
        // a lease to have run out since.
        let later = root.join("a/b/.three.txt.tmp-1-0");
        std::fs::write(&later, "left by a killed writer").expect("write");
        std::thread::sleep(STALE_STAGING_REREAD);
        next_run
            .put("a/b/three.txt", Bytes::from_static(b"3"))
            .await
            .expect("put");
        assert!(!later.exists(), "the directory is read again");
        next_run.delete("a/b/two.txt").await.expect("delete");
        next_run.delete("a/b/three.txt").await.expect("delete");

        store.delete("a/b/one.txt").await.expect("delete");
        assert!(!root.join("a").exists(), "emptied directories go too");
        assert!(root.exists(), "the root stays");
    }

    #[tokio::test]
    async fn preflight_refuses_a_file_as_output() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("f");
        std::fs::write(&file, "x").expect("write");
        let err = LocalStorage::new(file.join("out"))
            .preflight()
            .await
            .expect_err("a file");
        assert!(err.to_string().contains("not a directory"), "{err}");
    }
}
