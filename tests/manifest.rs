//! The facade pins `ctx-core` and `ctx-macros` to its own version exactly (`=`): the code that
//! `#[cancellable]` expands to calls the facade's `__private` module, and the facade re-exports
//! the core's types, so a mismatched pair from the registry must not resolve at all.

/// The requirement on `name` in the root manifest's `[workspace.dependencies]`.
fn workspace_requirement(name: &str) -> String {
    let manifest = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"));
    let table = manifest
        .split("[workspace.dependencies]")
        .nth(1)
        .and_then(|rest| rest.split("\n[").next())
        .expect("the root manifest has a [workspace.dependencies] table");
    let line = table
        .lines()
        .find(|line| line.trim_start().starts_with(&format!("{name} =")))
        .unwrap_or_else(|| panic!("{name} is a workspace dependency"));
    let version = line.split("version = \"").nth(1).unwrap_or_else(|| panic!("{line}: a version"));
    version.split('"').next().unwrap_or_default().to_owned()
}

#[test]
fn the_inner_crates_are_pinned_to_the_facades_version() {
    let pinned = format!("={}", env!("CARGO_PKG_VERSION"));
    for name in ["ctx-core", "ctx-macros"] {
        assert_eq!(workspace_requirement(name), pinned, "{name}");
    }
}
