//! New files in migrations/ are picked up by `embed_migrations!` (used by the
//! examples and tests) only if cargo knows to look.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
