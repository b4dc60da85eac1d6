//! Procedural macros of [aiolite](https://docs.rs/aiolite). Not for direct use:
//! `aiolite` re-exports them, and the code they generate names `::aiolite::...`
//! paths only, so users depend on `aiolite` alone.

mod attrs;
mod derive;

use std::path::{Path, PathBuf};

use proc_macro::TokenStream;
use quote::quote;
use syn::{parse_macro_input, LitStr};

/// `#[derive(FromRow)]`: decode a result row into the struct by column name,
/// on the worker thread. Columns are resolved to indexes once per statement.
///
/// Attributes, under `#[aiolite(...)]` with sqlx's names:
///
/// | where | attribute | effect |
/// |---|---|---|
/// | struct | `rename_all = "camelCase"` | column names from field names: `lowercase`, `UPPERCASE`, `snake_case`, `kebab-case`, `camelCase`, `PascalCase`, `SCREAMING_SNAKE_CASE`, `SCREAMING-KEBAB-CASE` |
/// | struct | `default` | a missing column takes its field from the struct's `Default` |
/// | field | `rename = "col"` | read column `col` |
/// | field | `default` | a missing column gives `Default::default()` |
/// | field | `flatten`, `prefix = "p_"` | a nested `FromRow` type reading columns `p_...`; as `Option<T>`, `None` when all of them are NULL |
/// | field | `skip` | not read; `Default::default()` |
/// | field | `try_from = "i64"` / `from = "i64"` | read an `i64`, then convert with `TryFrom` / `From` |
/// | field | `json` / `json(nullable)` | JSON text into any `Deserialize` type (`serde_json` feature); `nullable`: NULL is `None` |
///
/// A decode failure names the field (`User.age`), the column, the Rust type
/// and what SQLite had. Every misused attribute is a compile error at its
/// span, all of them in one compile. The README has a compiled example.
#[proc_macro_derive(FromRow, attributes(aiolite))]
pub fn derive_from_row(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as syn::DeriveInput);
    derive::from_row(&input).into()
}

/// `#[derive(Model)]`: map the struct to a table, with typed columns and
/// CRUD (with `#[derive(FromRow)]`, whose attributes it shares).
///
/// `#[aiolite(table = "users")]` on the struct and `#[aiolite(primary_key)]`
/// on one field are required. It generates `UserColumn` (one variant per
/// stored field, a sea-query identifier, so a misspelt column does not
/// compile), `User::select()` and `User::all_columns()`, and the `Model` impl
/// behind `insert`, `insert_many`, `find`, `update`, `delete` and `upsert`.
/// An integer key is the table's `INTEGER PRIMARY KEY`: `insert` lets SQLite
/// assign it. `try_from`/`from` fields are written back with `From<Field>`
/// on the source type.
#[proc_macro_derive(Model, attributes(aiolite))]
pub fn derive_model(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as syn::DeriveInput);
    derive::model(&input).into()
}

/// Embeds the SQL migrations of a directory (relative to the crate's
/// `Cargo.toml`) into the binary, as an `aiolite::migrate::Migrations`.
/// See `aiolite::embed_migrations`.
#[proc_macro]
pub fn embed_migrations(input: TokenStream) -> TokenStream {
    let dir = parse_macro_input!(input as LitStr);
    expand(&dir)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// `V{n}__{name}` or `U{n}__{name}` (refinery's stem), with `n` an `i32`.
fn parse_stem(stem: &str) -> Option<i32> {
    let rest = stem.strip_prefix('V').or_else(|| stem.strip_prefix('U'))?;
    let (version, name) = rest.split_once("__")?;
    let valid_name = !name.is_empty() && name.chars().all(|c| c.is_alphanumeric() || c == '_');
    if !valid_name || version.is_empty() || !version.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    version.parse().ok()
}

fn expand(dir: &LitStr) -> syn::Result<proc_macro2::TokenStream> {
    let root = std::env::var("CARGO_MANIFEST_DIR").map_err(|_| {
        syn::Error::new(
            dir.span(),
            "CARGO_MANIFEST_DIR is not set: build with cargo",
        )
    })?;
    let path = Path::new(&root).join(dir.value());
    let entries = std::fs::read_dir(&path).map_err(|e| {
        syn::Error::new(
            dir.span(),
            format!(
                "cannot read the migrations directory {}: {e}",
                path.display()
            ),
        )
    })?;
    let mut files: Vec<(i32, String, PathBuf)> = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| syn::Error::new(dir.span(), e.to_string()))?;
        let file_path = entry.path();
        let Some(file) = file_path
            .file_name()
            .and_then(|f| f.to_str())
            .map(str::to_owned)
        else {
            continue;
        };
        let Some(stem) = file.strip_suffix(".sql") else {
            continue;
        };
        if !(file.starts_with('V') || file.starts_with('U')) {
            continue;
        }
        let version = parse_stem(stem).ok_or_else(|| {
            syn::Error::new(
                dir.span(),
                format!(
                    "{file}: a migration file is named V{{version}}__{{name}}.sql or U{{version}}__{{name}}.sql (version a number, name letters, digits and _)"
                ),
            )
        })?;
        if let Some((_, other, _)) = files.iter().find(|(v, _, _)| *v == version) {
            return Err(syn::Error::new(
                dir.span(),
                format!("{file} and {other} have the same version {version}"),
            ));
        }
        files.push((version, file, file_path));
    }
    files.sort_by_key(|(v, _, _)| *v);
    let items = files.iter().map(|(_, file, file_path)| {
        let full = file_path.to_string_lossy().into_owned();
        // include_str! makes cargo rebuild when a file changes; new files
        // need `cargo:rerun-if-changed=<dir>` in build.rs.
        quote! { (#file, ::core::include_str!(#full)) }
    });
    Ok(quote! {
        ::aiolite::migrate::Migrations::__embedded(&[#(#items),*])
    })
}

#[cfg(test)]
mod tests {
    use super::parse_stem;

    #[test]
    fn stems() {
        assert_eq!(parse_stem("V1__create_users"), Some(1));
        assert_eq!(parse_stem("U20__seed_data"), Some(20));
        assert_eq!(parse_stem("V1_create"), None);
        assert_eq!(parse_stem("V__create"), None);
        assert_eq!(parse_stem("Vx__create"), None);
        assert_eq!(parse_stem("V1__"), None);
        assert_eq!(parse_stem("V1__bad-name"), None);
        assert_eq!(parse_stem("V99999999999__big"), None);
    }
}
