//! Tidy: the architecture's boundaries as a test (rust-analyzer's
//! `xtask/src/tidy.rs` is the model). It reads `src/` as text and fails when
//! a module reaches past what `ARCHITECTURE.md` says it may:
//!
//! - the product's modules import each other only along [`ALLOWED`], so
//!   arrows point one way (storage is a leaf, the data set knows no I/O);
//! - files and buckets are touched only in `storage/`, SDK clients are built
//!   only in `aws/`;
//! - the simulator (`src/sim/`, its own binary) is never imported by the
//!   product;
//! - every file starts with a `//!` doc of what it owns, and lint levels live
//!   in `Cargo.toml`, not in `#![deny]` attributes;
//! - `unsafe` code is in `allocator.rs` only (`unsafe_code` is denied in
//!   `Cargo.toml`, and allowed there for one call into glibc).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Which product modules each top-level module may import (`crate::…`).
const ALLOWED: &[(&str, &[&str])] = &[
    ("allocator", &[]),
    ("api", &[]),
    ("text", &[]),
    ("time", &[]),
    ("cli", &[]),
    ("shutdown", &[]),
    ("progress", &["shutdown"]),
    ("storage", &["text"]),
    ("dataset", &["api", "time"]),
    (
        "config",
        &["api", "cli", "dataset", "progress", "storage", "time"],
    ),
    ("aws", &["config", "storage", "text"]),
    ("evidence", &["aws", "config", "dataset", "storage", "text"]),
    (
        "export",
        &[
            "api", "aws", "config", "dataset", "evidence", "progress", "shutdown", "storage",
            "text", "time",
        ],
    ),
    (
        "report",
        &[
            "aws", "cli", "config", "dataset", "evidence", "storage", "text", "time",
        ],
    ),
    ("exit", &["config", "evidence", "export", "storage"]),
];

/// Files outside `storage/` that may use `std::fs`, and why.
const FS_ALLOWED: &[(&str, &str)] = &[
    (
        "export/lock.rs",
        "reads the host's name, its PID namespace and /proc to tell whether a lock holder in this PID namespace is gone; never the output",
    ),
    (
        "config.rs",
        "reads the --accounts-file the operator names; never the output",
    ),
    (
        "evidence/sign.rs",
        "reads the signing key and public key files the operator names; never the output",
    ),
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file below `dir`, as (path relative to `root`, text).
fn rust_files(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("read src")
        .map(|e| e.expect("entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(root, &path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let relative = path
                .strip_prefix(root)
                .expect("below its root")
                .to_string_lossy()
                .replace('\\', "/");
            out.push((relative, std::fs::read_to_string(&path).expect("read")));
        }
    }
}

fn product_files() -> Vec<(String, String)> {
    let mut files = Vec::new();
    rust_files(&src(), &src(), &mut files);
    files.retain(|(path, _)| !path.starts_with("sim/"));
    assert!(files.len() > 20, "src/ was not found: {}", src().display());
    files
}

/// The top-level module a file belongs to (`export/crawl.rs` → `export`);
/// None for the crate roots.
fn module_of(path: &str) -> Option<&str> {
    let first = path.split('/').next()?;
    match first {
        "lib.rs" | "main.rs" => None,
        _ => Some(first.strip_suffix(".rs").unwrap_or(first)),
    }
}

/// The code of a file without its comments, so doc links and prose do not
/// count as imports, and without its unit tests, which may reach anywhere
/// to set up what they test.
fn code(text: &str) -> String {
    text.lines()
        .take_while(|line| line.trim() != "#[cfg(test)]")
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level modules a file names through `crate::`.
fn crate_imports(text: &str) -> BTreeSet<String> {
    let code = code(text);
    let mut found = BTreeSet::new();
    for (index, _) in code.match_indices("crate::") {
        // `ssm_audit::` in the binary is the same crate seen from outside.
        let name: String = code[index + "crate::".len()..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            found.insert(name);
        }
    }
    found
}

#[test]
fn modules_import_each_other_only_along_the_allowed_arrows() {
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut violations = Vec::new();
    for (path, text) in product_files() {
        let Some(module) = module_of(&path) else {
            continue;
        };
        let Some(may) = allowed.get(module) else {
            violations.push(format!(
                "{path}: module {module} is not in tidy's ALLOWED map; add it with the arrows ARCHITECTURE.md gives it"
            ));
            continue;
        };
        for import in crate_imports(&text) {
            if import != module && !may.contains(&import.as_str()) {
                violations.push(format!("{path}: {module} imports {import}"));
            }
        }
    }
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

#[test]
fn the_arrows_themselves_have_no_cycle() {
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    fn reaches(from: &str, to: &str, allowed: &BTreeMap<&str, &[&str]>, depth: usize) -> bool {
        depth < 32
            && allowed.get(from).is_some_and(|next| {
                next.iter()
                    .any(|n| *n == to || reaches(n, to, allowed, depth + 1))
            })
    }
    for module in allowed.keys() {
        assert!(
            !reaches(module, module, &allowed, 0),
            "{module} reaches itself"
        );
    }
}

#[test]
fn files_and_buckets_are_touched_only_in_storage_and_clients_built_only_in_aws() {
    let mut violations = Vec::new();
    for (path, text) in product_files() {
        let code = code(&text);
        let in_storage = path.starts_with("storage/");
        let fs_allowed = FS_ALLOWED.iter().any(|(p, _)| *p == path);
        for needle in ["std::fs", "tokio::fs", "File::create", "OpenOptions"] {
            if code.contains(needle) && !in_storage && !fs_allowed {
                violations.push(format!("{path}: uses {needle} outside storage/"));
            }
        }
        if code.contains("aws_sdk_s3") && !in_storage && !path.starts_with("aws/") {
            violations.push(format!(
                "{path}: uses the S3 client outside storage/ and aws/"
            ));
        }
        for needle in [
            "Client::new(",
            "Client::from_conf(",
            "config::Builder::from(",
        ] {
            if code.contains(needle) && !path.starts_with("aws/") {
                violations.push(format!(
                    "{path}: builds an SDK client ({needle}) outside aws/"
                ));
            }
        }
    }
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

#[test]
fn the_product_never_depends_on_the_simulator() {
    let mut violations = Vec::new();
    for (path, text) in product_files() {
        let code = code(&text);
        for needle in ["mod sim", "crate::sim", "ssm_sim", "sim::"] {
            if code.contains(needle) {
                violations.push(format!("{path}: mentions {needle}"));
            }
        }
    }
    assert!(violations.is_empty(), "{}", violations.join("\n"));
    let cargo = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
        .expect("Cargo.toml");
    assert!(
        cargo.contains("path = \"src/sim/main.rs\""),
        "the simulator is its own binary crate"
    );
}

#[test]
fn every_file_says_what_it_owns_and_lints_live_in_cargo_toml() {
    let mut all = Vec::new();
    rust_files(&src(), &src(), &mut all);
    let tests = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it");
    let mut test_files = Vec::new();
    rust_files(&tests, &tests, &mut test_files);
    let mut violations = Vec::new();
    for (path, text) in all.iter().chain(&test_files) {
        if !text.trim_start().starts_with("//!") {
            violations.push(format!("{path}: does not start with a //! doc"));
        }
        let code = code(text);
        let is_tidy = path == "tidy.rs"; // names the attributes it looks for
        let sets_lints = ["#![deny", "#![warn", "#![allow"]
            .iter()
            .any(|attribute| code.contains(attribute));
        if sets_lints && !is_tidy {
            violations.push(format!(
                "{path}: sets lint levels in the code; they belong in Cargo.toml's [lints]"
            ));
        }
    }
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

/// The `unsafe` code a file's code (without comments) holds, if any.
fn unsafe_uses(text: &str) -> Vec<&'static str> {
    let code = code(text);
    [
        "unsafe {",
        "unsafe fn",
        "unsafe impl",
        "unsafe extern",
        "allow(unsafe_code)",
    ]
    .into_iter()
    .filter(|needle| code.contains(needle))
    .collect()
}

#[test]
fn unsafe_code_is_in_the_allocator_module_only() {
    let mut all = Vec::new();
    rust_files(&src(), &src(), &mut all);
    let mut violations = Vec::new();
    for (path, text) in &all {
        let uses = unsafe_uses(text);
        if !uses.is_empty() && path != "allocator.rs" {
            violations.push(format!(
                "{path}: {uses:?}; unsafe code belongs in allocator.rs only"
            ));
        }
    }
    assert!(violations.is_empty(), "{}", violations.join("\n"));
    let allocator = all.iter().find(|(path, _)| path == "allocator.rs");
    assert!(
        allocator.is_some_and(|(_, text)| !unsafe_uses(text).is_empty()),
        "allocator.rs is where the one call into glibc is"
    );
}

/// The checks above must be able to fail: fed a file that breaks each rule,
/// each finds it.
#[test]
fn tidy_sees_what_it_looks_for() {
    let bad = "//! doc\nuse crate::export::Thing;\nfn f() { std::fs::write(\"x\", \"y\"); }\n// crate::report in a comment\n#[cfg(test)]\nuse crate::cli::Cli;\n";
    assert_eq!(
        crate_imports(bad),
        BTreeSet::from(["export".to_owned()]),
        "comments and unit tests do not count, code does"
    );
    assert_eq!(module_of("storage/local.rs"), Some("storage"));
    assert_eq!(module_of("verify.rs"), Some("verify"));
    assert_eq!(module_of("main.rs"), None);
    assert!(code(bad).contains("std::fs"));
    assert_eq!(
        unsafe_uses("//! doc\n// unsafe { in a comment }\nfn f() { unsafe { g() } }\n"),
        ["unsafe {"]
    );
}
