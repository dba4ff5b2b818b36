//! The compile errors of `#[cancellable]`: one `tests/ui/*.rs` case per error the macro can
//! emit (and the type errors it arranges to point at the user's code), each pinned by its
//! `.stderr`. Regenerate with `TRYBUILD=overwrite cargo test --test cancellable_ui` and review.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
}
