//! Compile-fail tests of the derives: every misuse of an attribute is one
//! spanned error (never a macro panic), and several are reported at once.
//! Regenerate the expected output with `TRYBUILD=overwrite` after a
//! deliberate change of wording.

#[test]
fn derive_misuse_is_reported_with_spans() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
