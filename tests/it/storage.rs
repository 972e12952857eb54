//! The storage conformance suite: what every backend of the storage seam
//! must do, run against a local directory on its own and against S3
//! (moto_server) inside a prefix.

use bytes::Bytes;
use ssm_audit::storage::{Conditional, LocalStorage, S3Options, S3Storage, Storage, StorageError};

use crate::common::*;

/// What every backend must do; run against the local directory and S3.
async fn conformance<S: Storage>(storage: &S) {
    storage.preflight().await.expect("preflight");
    assert_eq!(
        storage.list("").await.expect("list"),
        Vec::<String>::new(),
        "preflight leaves nothing"
    );
    assert!(!storage.holds_any("").await.expect("holds_any"));
    assert_eq!(storage.get("a/missing").await.expect("get"), None);

    storage
        .put("a/b/one", Bytes::from_static(b"1"))
        .await
        .expect("put");
    storage
        .put("a/two", Bytes::from_static(b"2"))
        .await
        .expect("put");
    storage
        .put("a/two", Bytes::from_static(b"22"))
        .await
        .expect("replace");
    storage
        .put("c/three", Bytes::from_static(b"3"))
        .await
        .expect("put");
    assert_eq!(
        storage.get("a/two").await.expect("get"),
        Some(Bytes::from_static(b"22"))
    );
    assert_eq!(
        storage.list("a/").await.expect("list"),
        ["a/b/one", "a/two"]
    );
    assert_eq!(
        storage.list("").await.expect("list"),
        ["a/b/one", "a/two", "c/three"]
    );
    assert_eq!(
        storage.list("zzz/").await.expect("list"),
        Vec::<String>::new()
    );
    for (prefix, holds) in [
        ("", true),
        ("a/", true),
        ("a/b/", true),
        ("b/", false),
        ("zzz/", false),
    ] {
        assert_eq!(
            storage.holds_any(prefix).await.expect("holds_any"),
            holds,
            "holds_any {prefix:?}"
        );
    }

    // Create-only.
    let Conditional::Done { version: v1 } = storage
        .put_if_absent("lock", Bytes::from_static(b"a"))
        .await
        .expect("create")
    else {
        panic!("the first create wins")
    };
    assert_eq!(
        storage
            .put_if_absent("lock", Bytes::from_static(b"b"))
            .await
            .expect("create"),
        Conditional::Conflict
    );
    let read = storage
        .get_versioned("lock", 1024)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(
        (read.data, read.version.clone()),
        (Bytes::from_static(b"a"), v1.clone())
    );

    // A read with a limit never returns more, and names what is too large.
    storage
        .put("big", Bytes::from(vec![b'x'; 2000]))
        .await
        .expect("write");
    let too_large = storage.get_versioned("big", 1999).await;
    assert!(
        matches!(&too_large, Err(StorageError::TooLarge { location, limit: 1999 }) if location.contains("big")),
        "{too_large:?}"
    );
    assert_eq!(
        storage
            .get_versioned("big", 2000)
            .await
            .expect("read")
            .map(|v| v.data.len()),
        Some(2000)
    );
    storage.put("empty", Bytes::new()).await.expect("write");
    assert_eq!(
        storage
            .get_versioned("empty", 10)
            .await
            .expect("read")
            .map(|v| v.data.len()),
        Some(0)
    );
    storage.delete("big").await.expect("delete");
    storage.delete("empty").await.expect("delete");

    // Replace-if-unchanged.
    let Conditional::Done { version: v2 } = storage
        .put_if_match("lock", Bytes::from_static(b"c"), &v1)
        .await
        .expect("update")
    else {
        panic!("the holder of v1 may update")
    };
    assert_ne!(v1, v2);
    assert_eq!(
        storage
            .put_if_match("lock", Bytes::from_static(b"d"), &v1)
            .await
            .expect("update"),
        Conditional::Conflict
    );
    assert_eq!(
        storage.get("lock").await.expect("get"),
        Some(Bytes::from_static(b"c"))
    );
    // A conditional write that meets exactly its own bytes (the retry of an
    // attempt whose answer was lost) is done, with the current version.
    assert_eq!(
        storage
            .put_if_match("lock", Bytes::from_static(b"c"), &v1)
            .await
            .expect("update"),
        Conditional::Done {
            version: v2.clone()
        }
    );
    assert_eq!(
        storage
            .put_if_absent("lock", Bytes::from_static(b"c"))
            .await
            .expect("create"),
        Conditional::Done {
            version: v2.clone()
        }
    );

    // Delete, plain and conditional.
    assert_eq!(
        storage.delete_if_match("lock", &v1).await.expect("delete"),
        Conditional::Conflict
    );
    assert!(matches!(
        storage.delete_if_match("lock", &v2).await.expect("delete"),
        Conditional::Done { .. }
    ));
    assert_eq!(storage.get("lock").await.expect("get"), None);
    // A conditional delete that finds the object gone is done.
    assert!(matches!(
        storage.delete_if_match("lock", &v2).await.expect("delete"),
        Conditional::Done { .. }
    ));
    storage.delete("a/two").await.expect("delete");
    storage
        .delete("a/two")
        .await
        .expect("deleting a missing object is fine");
    assert_eq!(storage.list("a/").await.expect("list"), ["a/b/one"]);

    // Deleting many: more than one request's worth on S3, a missing key
    // among them, and nothing else touched.
    let many: Vec<String> = (0..ssm_audit::storage::DELETES_PER_REQUEST + 3)
        .map(|i| format!("many/{i:05}"))
        .collect();
    for key in &many {
        storage
            .put(key, Bytes::from_static(b"x"))
            .await
            .expect("put");
    }
    let mut doomed = many.clone();
    doomed.insert(500, "many/missing".to_owned());
    storage.delete_all(doomed).await.expect("delete all");
    assert_eq!(
        storage.list("many/").await.expect("list"),
        Vec::<String>::new()
    );
    assert_eq!(storage.list("a/").await.expect("list"), ["a/b/one"]);

    // A large object survives intact (multipart on S3 with a small threshold).
    let large: Vec<u8> = (0..11 * 1024 * 1024)
        .map(|i: u32| (i % 251) as u8)
        .collect();
    storage
        .put("big/object", Bytes::from(large.clone()))
        .await
        .expect("large put");
    assert_eq!(
        storage
            .get("big/object")
            .await
            .expect("get")
            .expect("exists")
            .len(),
        large.len()
    );
    assert_eq!(
        storage.get("big/object").await.expect("get"),
        Some(Bytes::from(large))
    );

    // One key rule for every backend: what a directory and a bucket would
    // read differently (`a//b`, `a/./b`, a trailing `/`) is refused by both.
    for key in [
        "../escape",
        "/absolute",
        "a/../b",
        "",
        "a//b",
        "a/./b",
        "a/",
        "a\\b",
        "a\nb",
    ] {
        assert!(
            matches!(storage.get(key).await, Err(StorageError::InvalidKey(_))),
            "get {key:?}"
        );
        assert!(
            matches!(
                storage.put(key, Bytes::from_static(b"x")).await,
                Err(StorageError::InvalidKey(_))
            ),
            "put {key:?}"
        );
    }
    for prefix in ["a", "a//", "../", "/"] {
        assert!(
            matches!(storage.list(prefix).await, Err(StorageError::InvalidKey(_))),
            "list {prefix:?}"
        );
        assert!(
            matches!(
                storage.holds_any(prefix).await,
                Err(StorageError::InvalidKey(_))
            ),
            "holds_any {prefix:?}"
        );
    }
}

#[test]
fn the_local_backend_passes_the_conformance_suite() {
    let dir = tempfile::tempdir().expect("tempdir");
    runtime().block_on(conformance(&LocalStorage::new(dir.path().join("root"))));
}

#[test]
fn the_s3_backend_passes_the_conformance_suite_inside_its_prefix() {
    let moto = Moto::start();
    moto.create_bucket("conformance");
    let options = S3Options {
        multipart_threshold: 6 << 20,
        part_size: 5 << 20,
        ..S3Options::default()
    };
    runtime().block_on(conformance(&S3Storage::new(
        moto.client(),
        "conformance",
        "some/prefix",
        options,
    )));
    // The prefix really scopes the keys: every object in the bucket is the
    // storage's key below the prefix, and nothing else is there.
    let mut in_bucket: Vec<String> = runtime().block_on(async {
        moto.client()
            .list_objects_v2()
            .bucket("conformance")
            .send()
            .await
            .expect("list")
            .contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_owned))
            .collect()
    });
    in_bucket.sort();
    let listed = runtime()
        .block_on(
            S3Storage::new(
                moto.client(),
                "conformance",
                "some/prefix",
                S3Options::default(),
            )
            .list(""),
        )
        .expect("list");
    assert!(!listed.is_empty(), "the suite leaves objects behind");
    let expected: Vec<String> = listed.iter().map(|k| format!("some/prefix/{k}")).collect();
    assert_eq!(in_bucket, expected);
}
