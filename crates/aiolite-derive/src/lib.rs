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
/// | struct | `rename_all = "camelCase"` | column names from field names, by sqlx's rules (heck's conversions; `lowercase` and `UPPERCASE` change case only): `lowercase`, `UPPERCASE`, `snake_case`, `kebab-case`, `camelCase`, `PascalCase`, `SCREAMING_SNAKE_CASE`, `SCREAMING-KEBAB-CASE` |
/// | struct | `default` | a missing column (or a flattened type's missing columns) takes its field from the struct's `Default` |
/// | field | `rename = "col"` | read column `col` |
/// | field | `default` | a missing column gives `Default::default()`; on a `flatten` field, when its columns are missing |
/// | field | `flatten`, `prefix = "p_"` | a nested `FromRow` type reading columns `p_...`; as `Option<T>`, `None` when all of them are NULL; with `try_from = "T"`, read as `T` and converted |
/// | field | `skip` | not read; `Default::default()` |
/// | field | `try_from = "i64"` / `from = "i64"` | read an `i64`, then convert with `TryFrom` / `From` |
/// | field | `json` / `json(nullable)` | JSON text into any `Deserialize` type (`serde_json` feature); `nullable`: SQL NULL and the JSON `null` are `None`; with `try_from = "T"`, the JSON is read as `T` and converted |
///
/// A tuple struct (`struct Point(i64, i64)`) reads the first columns by
/// position. Attribute values may come through a `macro_rules!` `$x:literal`.
///
/// A decode failure names the field path (`User.age`, `Post.author.name` in
/// a flattened field), the column, the Rust type and what SQLite had (with
/// the value, for a failed `try_from`). Every misused attribute is a compile
/// error at its span, all of them in one compile. The README has a compiled
/// example.
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
/// behind `insert`, `insert_returning`, `insert_many`, `find`, `update`,
/// `update_columns`, `update_changed`, `delete` and `upsert`. An integer key
/// whose column is the table's rowid (`INTEGER PRIMARY KEY`) is assigned by
/// SQLite on `insert`; any other key (`BIGINT PRIMARY KEY`, `WITHOUT ROWID`,
/// text) is written as the model holds it. `try_from`/`from` fields are
/// written back with `From<Field>` on the source type.
///
/// Field attributes of `Model` only:
///
/// | attribute | effect |
/// |---|---|
/// | `primary_key` | the key `find`, `update` and `delete` use |
/// | `db_default` | the database fills it (a SQL `DEFAULT`): left out of `INSERT`, read back by `insert_returning` |
/// | `generated` | a `GENERATED ALWAYS AS` column: never written |
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

/// Why a file that refinery's scanner skips looks like a migration meant to
/// run (`None`: it does not). The same rules as `Migrations::from_dir` in
/// aiolite-conn, which a proc-macro crate cannot call.
fn misnamed(file: &str) -> Option<&'static str> {
    let mut chars = file.chars();
    let (first, second) = (chars.next(), chars.next());
    let versioned = |prefixes: &[char]| {
        first.is_some_and(|c| prefixes.contains(&c)) && second.is_some_and(|c| c.is_ascii_digit())
    };
    let lower = file.to_ascii_lowercase();
    let why = if lower.ends_with(".rs") && versioned(&['V', 'U']) {
        "refinery's Rust migrations are not run by aiolite; write it as SQL (V{n}__{name}.sql)"
    } else if !lower.ends_with(".sql") {
        return None;
    } else if lower.ends_with(".up.sql") || lower.ends_with(".down.sql") {
        "a reversible migration of another tool (sqlx, diesel); refinery and aiolite read V{n}__{name}.sql, applied once; rename it, or move it out of the folder"
    } else if first.is_some_and(|c| c.is_ascii_digit()) {
        "named the way sqlx names migrations ({version}_{name}.sql); refinery and aiolite read V{version}__{name}.sql; rename it, or move it out of the folder"
    } else if versioned(&['v', 'u']) {
        "the V or U prefix must be upper case (refinery skips this file); rename it, or move it out of the folder"
    } else if versioned(&['V', 'U']) {
        "a migration is named V{n}__{name}.sql, two underscores after the version and the name letters, digits and _ only (refinery skips this file); rename it, or move it out of the folder"
    } else {
        return None;
    };
    Some(why)
}

/// The files of the set are exactly those refinery's own scanner finds
/// (subfolders included); every other file is looked at to refuse a
/// misnamed migration and to warn about any other `.sql` file.
fn expand(dir: &LitStr) -> syn::Result<proc_macro2::TokenStream> {
    let error = |message: String| syn::Error::new(dir.span(), message);
    let root = std::env::var("CARGO_MANIFEST_DIR")
        .map_err(|_| error("CARGO_MANIFEST_DIR is not set: build with cargo".to_owned()))?;
    let path = Path::new(&root).join(dir.value());
    let unreadable = |what: &Path, e: &dyn std::fmt::Display| {
        error(format!("cannot read {}: {e}", what.display()))
    };
    let found: Vec<PathBuf> =
        refinery_core::find_migration_files(&path, refinery_core::MigrationType::Sql)
            .map_err(|e| unreadable(&path, &e))?
            .collect();
    let canonical = path.canonicalize().map_err(|e| unreadable(&path, &e))?;
    let shown = |p: &Path| {
        p.strip_prefix(&canonical)
            .unwrap_or(p)
            .display()
            .to_string()
    };
    let mut errors: Option<syn::Error> = None;
    let mut fail = |message: String| match &mut errors {
        Some(all) => all.combine(error(message)),
        None => errors = Some(error(message)),
    };
    let mut warnings = Vec::new();
    for entry in walkdir::WalkDir::new(&canonical).sort_by_file_name() {
        let entry = entry.map_err(|e| unreadable(e.path().unwrap_or(&canonical), &e))?;
        let file_path = entry.path();
        if file_path.is_dir() || found.iter().any(|f| f == file_path) {
            continue;
        }
        let file = entry.file_name().to_string_lossy();
        if let Some(why) = misnamed(&file) {
            fail(format!(
                "{} is not read as a migration: {why}",
                shown(file_path)
            ));
        } else if file.ends_with(".sql") {
            warnings.push(format!(
                "{} is not a migration name (V{{n}}__{{name}}.sql): skipped, as refinery skips it",
                shown(file_path)
            ));
        }
    }
    let mut files: Vec<(i32, String, &PathBuf)> = Vec::new();
    for file_path in &found {
        let file = file_path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let stem = file.strip_suffix(".sql").unwrap_or(&file);
        let version = match refinery_core::parse_migration_name(stem) {
            Ok((_, version, _)) => version,
            Err(e) => {
                fail(format!("{}: {e}", shown(file_path)));
                continue;
            }
        };
        if let Some((_, other, _)) = files.iter().find(|(v, _, _)| *v == version) {
            fail(format!(
                "{} and {other} have the same version {version}",
                shown(file_path)
            ));
            continue;
        }
        files.push((version, file, file_path));
    }
    if let Some(errors) = errors {
        return Err(errors);
    }
    files.sort_by_key(|(v, _, _)| *v);
    let items = files.iter().map(|(_, file, file_path)| {
        let full = file_path.to_string_lossy().into_owned();
        // include_str! makes cargo rebuild when a file changes; new files
        // need `cargo:rerun-if-changed=<dir>` in build.rs.
        quote! { (#file, ::core::include_str!(#full)) }
    });
    // A proc macro has no warning API on stable: the use of a deprecated
    // constant is one, shown at the macro's argument with the note as text.
    let warnings = warnings.iter().map(|note| {
        quote::quote_spanned! {dir.span()=>
            let () = {
                #[deprecated(note = #note)]
                #[allow(non_upper_case_globals)]
                const skipped_migration_file: () = ();
                skipped_migration_file
            };
        }
    });
    Ok(quote! {
        {
            #(#warnings)*
            ::aiolite::migrate::Migrations::__embedded(&[#(#items),*])
        }
    })
}

#[cfg(test)]
mod tests {
    use super::misnamed;

    #[test]
    fn misnamed_files() {
        for file in [
            "20240101120000_create.sql",
            "1_create.sql",
            "V1__create.up.sql",
            "create.down.sql",
            "v3__lower.sql",
            "u3__lower.sql",
            "V2__add-index.sql",
            "V1_one_underscore.sql",
            "V4__rust.rs",
        ] {
            assert!(misnamed(file).is_some(), "{file}");
        }
        for file in [
            "README.md",
            "seed.sql",
            "schema.sql",
            "mod.rs",
            "Vacuum.sql",
        ] {
            assert_eq!(misnamed(file), None, "{file}");
        }
    }
}
