//! Compile-fail tests: every misuse of a derive attribute is one
//! spanned error (never a macro panic), and several are reported at once;
//! SQL that is not text says what to pass (`sql_not_text.rs`).
//! Regenerate the expected output with `TRYBUILD=overwrite` after a
//! deliberate change of wording.

#[test]
fn derive_misuse_is_reported_with_spans() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
