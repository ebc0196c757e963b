//! Compile-time behaviour of the attribute macros: every misuse is an error
//! on the offending token (`tests/ui/fail`), every accepted form compiles
//! and runs (`tests/ui/pass`). Regenerate the `.stderr` files with
//! `TRYBUILD=overwrite cargo test --test ui` and read them.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/fail/*.rs");
    t.pass("tests/ui/pass/*.rs");
}
