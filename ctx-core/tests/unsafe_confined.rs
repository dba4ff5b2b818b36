//! `unsafe` is confined to `src/lock.rs` (issue 13 allows it there alone). ctx-core's manifest
//! denies `unsafe_code` rather than forbidding it, so that one module can allow it; this test
//! keeps any other module from doing the same unnoticed.

use std::fs;
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`.
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).expect("src/ is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            files.extend(sources(&path));
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            files.push(path);
        }
    }
    files
}

/// The code of a line, without a trailing `//` comment (good enough for this crate's sources,
/// which have no `//` inside string literals on lines that use `unsafe`).
fn code(line: &str) -> &str {
    line.split("//").next().unwrap_or_default()
}

#[test]
fn unsafe_code_is_only_in_the_lock_module() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut allows = Vec::new();
    for file in sources(&src) {
        let text = fs::read_to_string(&file).expect("a source file is readable");
        let name = file.strip_prefix(&src).expect("under src/").to_string_lossy().into_owned();
        let lines: Vec<&str> = text.lines().collect();
        for (index, line) in lines.iter().enumerate() {
            let code = code(line);
            let uses_unsafe = ["unsafe {", "unsafe impl", "unsafe fn", "unsafe extern"]
                .iter()
                .any(|form| code.contains(form));
            assert!(
                !uses_unsafe || name == "lock.rs",
                "{name}:{}: `unsafe` outside lock.rs",
                index + 1
            );
            if code.contains("allow(unsafe_code)") {
                allows
                    .push((name.clone(), lines.get(index + 1).map(|next| next.trim().to_owned())));
            }
        }
    }
    assert_eq!(
        allows,
        [("lib.rs".to_owned(), Some("mod lock;".to_owned()))],
        "`unsafe_code` is allowed once, on `mod lock;`"
    );
}
