//! `#[aiolite(...)]` attributes, parsed once for both derives. Every problem
//! is collected with its span, so one compile reports all of them; a parse
//! error never panics the macro.

use proc_macro2::Span;
use syn::spanned::Spanned;
use syn::{Attribute, Expr, ExprLit, Field, Ident, Lit, LitStr, Type};

/// Which derive reports an error: each reports its own, so deriving both on
/// one struct shows every problem once.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    FromRow,
    Model,
}

#[derive(Default)]
pub(crate) struct Errors(Vec<(Scope, syn::Error)>);

impl Errors {
    pub(crate) fn push(&mut self, scope: Scope, span: Span, message: impl std::fmt::Display) {
        self.0.push((scope, syn::Error::new(span, message)));
    }

    fn push_err(&mut self, scope: Scope, e: syn::Error) {
        self.0.push((scope, e));
    }

    pub(crate) fn has(&self, scope: Scope) -> bool {
        self.0.iter().any(|(s, _)| *s == scope)
    }

    /// This derive's errors, combined into one `compile_error!` list.
    pub(crate) fn take(&self, scope: Scope) -> Option<syn::Error> {
        self.0
            .iter()
            .filter(|(s, _)| *s == scope)
            .map(|(_, e)| e.clone())
            .reduce(|mut a, b| {
                a.combine(b);
                a
            })
    }
}

#[derive(Clone, Copy)]
pub(crate) enum RenameRule {
    Lower,
    Upper,
    Snake,
    Kebab,
    Camel,
    Pascal,
    ScreamingSnake,
    ScreamingKebab,
}

const RULES: &str = "\"lowercase\", \"UPPERCASE\", \"snake_case\", \"kebab-case\", \"camelCase\", \"PascalCase\", \"SCREAMING_SNAKE_CASE\" or \"SCREAMING-KEBAB-CASE\"";

impl RenameRule {
    fn parse(s: &str) -> Option<RenameRule> {
        Some(match s {
            "lowercase" => RenameRule::Lower,
            "UPPERCASE" => RenameRule::Upper,
            "snake_case" => RenameRule::Snake,
            "kebab-case" => RenameRule::Kebab,
            "camelCase" => RenameRule::Camel,
            "PascalCase" => RenameRule::Pascal,
            "SCREAMING_SNAKE_CASE" => RenameRule::ScreamingSnake,
            "SCREAMING-KEBAB-CASE" => RenameRule::ScreamingKebab,
            _ => return None,
        })
    }

    /// Applies the rule to a field's name exactly as sqlx does: `lowercase`
    /// and `UPPERCASE` change case only, the others are heck's conversions
    /// (`userId` is `user_id` in snake_case, `HTTPStatus` is `HTTP_STATUS`
    /// in SCREAMING_SNAKE_CASE, a leading `_` is dropped).
    pub(crate) fn apply(self, name: &str) -> String {
        use heck::{
            ToKebabCase, ToLowerCamelCase, ToShoutyKebabCase, ToShoutySnakeCase, ToSnakeCase,
            ToUpperCamelCase,
        };
        match self {
            RenameRule::Lower => name.to_lowercase(),
            RenameRule::Upper => name.to_uppercase(),
            RenameRule::Snake => name.to_snake_case(),
            RenameRule::Kebab => name.to_kebab_case(),
            RenameRule::ScreamingSnake => name.to_shouty_snake_case(),
            RenameRule::ScreamingKebab => name.to_shouty_kebab_case(),
            RenameRule::Pascal => name.to_upper_camel_case(),
            RenameRule::Camel => name.to_lower_camel_case(),
        }
    }
}

/// `created_at` -> `CreatedAt`.
pub(crate) fn pascal(name: &str) -> String {
    name.split('_')
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut chars = w.chars();
            match chars.next() {
                Some(first) => first.to_uppercase().chain(chars).collect::<String>(),
                None => String::new(),
            }
        })
        .collect()
}

pub(crate) struct Container {
    pub(crate) rename_all: Option<RenameRule>,
    pub(crate) default: bool,
    pub(crate) table: Option<LitStr>,
    /// `table` was written, even if its value was bad (already reported).
    pub(crate) table_given: bool,
}

pub(crate) enum Json {
    No,
    Yes,
    Nullable,
}

pub(crate) struct FieldAttrs {
    pub(crate) rename: Option<LitStr>,
    pub(crate) default: bool,
    pub(crate) flatten: Option<Span>,
    pub(crate) prefix: Option<LitStr>,
    pub(crate) skip: Option<Span>,
    pub(crate) try_from: Option<Type>,
    pub(crate) from: Option<Type>,
    pub(crate) json: Json,
    pub(crate) primary_key: Option<Span>,
    /// The database fills the column on insert (a SQL `DEFAULT`): left out
    /// of INSERT, read back by `insert_returning`.
    pub(crate) db_default: Option<Span>,
    /// A generated column (`GENERATED ALWAYS AS`): never written.
    pub(crate) generated: Option<Span>,
}

const CONTAINER_KEYS: &str = "`rename_all`, `default` or `table`";
const FIELD_KEYS: &str = "`rename`, `default`, `flatten`, `prefix`, `skip`, `try_from`, `from`, `json`, `primary_key`, `db_default` or `generated`";

/// `key = "string"`, with a clear error for any other value. A literal that
/// came through a `macro_rules!` `$x:literal` arrives wrapped in an invisible
/// group, which is looked through.
fn string_value(key: &str, mut value: Option<Expr>, span: Span) -> Result<LitStr, syn::Error> {
    while let Some(Expr::Group(group)) = value {
        value = Some(*group.expr);
    }
    match value {
        Some(Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        })) => Ok(s),
        Some(other) => Err(syn::Error::new(
            other.span(),
            format!("`{key}` expects a string literal: `{key} = \"...\"`"),
        )),
        None => Err(syn::Error::new(
            span,
            format!("`{key}` needs a value: `{key} = \"...\"`"),
        )),
    }
}

fn type_value(key: &str, value: Option<Expr>, span: Span) -> Result<Type, syn::Error> {
    let s = string_value(key, value, span)?;
    s.parse::<Type>().map_err(|_| {
        syn::Error::new(
            s.span(),
            format!("`{key}` expects a type in a string: `{key} = \"i64\"`"),
        )
    })
}

fn no_value(key: &str, value: Option<Expr>, errors: &mut Errors, scope: Scope) {
    if let Some(v) = value {
        errors.push(scope, v.span(), format!("`{key}` takes no value"));
    }
}

/// One `key`, `key = value` or `key(args)` item of an `#[aiolite(...)]` list.
struct Item {
    key: Ident,
    value: Option<Expr>,
    args: Option<proc_macro2::TokenStream>,
}

/// Walks every `#[aiolite(...)]` attribute, reading items leniently (a value
/// of any shape) so that one bad item does not hide the next.
fn items(attrs: &[Attribute], errors: &mut Errors) -> Vec<Item> {
    let mut out = Vec::new();
    for attr in attrs.iter().filter(|a| a.path().is_ident("aiolite")) {
        let parsed = attr.parse_nested_meta(|meta| {
            let key = match meta.path.get_ident() {
                Some(k) => k.clone(),
                None => return Err(meta.error("expected an attribute name")),
            };
            let mut item = Item {
                key,
                value: None,
                args: None,
            };
            if meta.input.peek(syn::Token![=]) {
                item.value = Some(meta.value()?.parse::<Expr>()?);
            } else if meta.input.peek(syn::token::Paren) {
                let content;
                syn::parenthesized!(content in meta.input);
                item.args = Some(content.parse()?);
            }
            out.push(item);
            Ok(())
        });
        if let Err(e) = parsed {
            errors.push_err(Scope::FromRow, e);
        }
    }
    out
}

pub(crate) fn container(attrs: &[Attribute], errors: &mut Errors) -> Container {
    let mut c = Container {
        rename_all: None,
        default: false,
        table: None,
        table_given: false,
    };
    for Item { key, value, args } in items(attrs, errors) {
        let span = key.span();
        if let Some(a) = &args {
            errors.push(
                Scope::FromRow,
                a.span(),
                format!("`{key}` takes no arguments in parentheses"),
            );
            continue;
        }
        match key.to_string().as_str() {
            "rename_all" => match string_value("rename_all", value, span) {
                Ok(s) => match RenameRule::parse(&s.value()) {
                    Some(rule) if c.rename_all.is_none() => c.rename_all = Some(rule),
                    Some(_) => errors.push(Scope::FromRow, span, "duplicate `rename_all`"),
                    None => errors.push(
                        Scope::FromRow,
                        s.span(),
                        format!("unknown `rename_all` rule: expected {RULES}"),
                    ),
                },
                Err(e) => errors.push_err(Scope::FromRow, e),
            },
            "default" => {
                no_value("default", value, errors, Scope::FromRow);
                c.default = true;
            }
            "table" => match string_value("table", value, {
                c.table_given = true;
                span
            }) {
                Ok(s) if c.table.is_none() => c.table = Some(s),
                Ok(_) => errors.push(Scope::Model, span, "duplicate `table`"),
                Err(e) => errors.push_err(Scope::Model, e),
            },
            other => errors.push(
                Scope::FromRow,
                span,
                format!(
                    "unknown aiolite attribute `{other}` on a struct: expected {CONTAINER_KEYS}"
                ),
            ),
        }
    }
    c
}

pub(crate) fn field(f: &Field, errors: &mut Errors) -> FieldAttrs {
    let mut a = FieldAttrs {
        rename: None,
        default: false,
        flatten: None,
        prefix: None,
        skip: None,
        try_from: None,
        from: None,
        json: Json::No,
        primary_key: None,
        db_default: None,
        generated: None,
    };
    for Item { key, value, args } in items(&f.attrs, errors) {
        let span = key.span();
        let name = key.to_string();
        if name != "json" {
            if let Some(args) = &args {
                errors.push(
                    Scope::FromRow,
                    args.span(),
                    format!("`{name}` takes no arguments in parentheses"),
                );
                continue;
            }
        }
        match name.as_str() {
            "rename" => match string_value("rename", value, span) {
                Ok(s) if a.rename.is_none() => a.rename = Some(s),
                Ok(_) => errors.push(Scope::FromRow, span, "duplicate `rename`"),
                Err(e) => errors.push_err(Scope::FromRow, e),
            },
            "prefix" => match string_value("prefix", value, span) {
                Ok(s) => a.prefix = Some(s),
                Err(e) => errors.push_err(Scope::FromRow, e),
            },
            "try_from" => match type_value("try_from", value, span) {
                Ok(t) => a.try_from = Some(t),
                Err(e) => errors.push_err(Scope::FromRow, e),
            },
            "from" => match type_value("from", value, span) {
                Ok(t) => a.from = Some(t),
                Err(e) => errors.push_err(Scope::FromRow, e),
            },
            "default" => {
                no_value(&name, value, errors, Scope::FromRow);
                a.default = true;
            }
            "flatten" => {
                no_value(&name, value, errors, Scope::FromRow);
                a.flatten = Some(span);
            }
            "skip" => {
                no_value(&name, value, errors, Scope::FromRow);
                a.skip = Some(span);
            }
            "primary_key" => {
                no_value(&name, value, errors, Scope::Model);
                if a.primary_key.is_some() {
                    errors.push(Scope::Model, span, "duplicate `primary_key`");
                }
                a.primary_key = Some(span);
            }
            "db_default" => {
                no_value(&name, value, errors, Scope::Model);
                a.db_default = Some(span);
            }
            "generated" => {
                no_value(&name, value, errors, Scope::Model);
                a.generated = Some(span);
            }
            "json" => {
                no_value(&name, value, errors, Scope::FromRow);
                a.json = match args.map(|t| t.to_string()) {
                    None => Json::Yes,
                    Some(t) if t == "nullable" => Json::Nullable,
                    Some(_) => {
                        errors.push(
                            Scope::FromRow,
                            span,
                            "`json` takes only `nullable`: `json` or `json(nullable)`",
                        );
                        Json::Yes
                    }
                };
            }
            other => errors.push(
                Scope::FromRow,
                span,
                format!("unknown aiolite attribute `{other}` on a field: expected {FIELD_KEYS}"),
            ),
        }
    }
    check_combinations(&a, errors);
    a
}

fn check_combinations(a: &FieldAttrs, errors: &mut Errors) {
    let json = !matches!(a.json, Json::No);
    // As sqlx: `try_from` may go with `json` (the JSON is read as the source
    // type, then converted); `from` stands alone.
    if a.from.is_some() && (a.try_from.is_some() || json) {
        let span = a.from.as_ref().map_or_else(Span::call_site, Spanned::span);
        errors.push(
            Scope::FromRow,
            span,
            "`from` cannot be combined with `try_from` or `json` (use `try_from` with `json`)",
        );
    }
    if let Some(span) = a.flatten {
        if a.rename.is_some() || a.from.is_some() || json {
            errors.push(
                Scope::FromRow,
                span,
                "`flatten` reads a nested FromRow type: it cannot be combined with `rename`, `from` or `json` (use `prefix = \"...\"` for its columns; `default` and `try_from` are allowed)",
            );
        }
        if a.skip.is_some() {
            errors.push(
                Scope::FromRow,
                span,
                "a field cannot be both `flatten` and `skip`",
            );
        }
    } else if let Some(prefix) = &a.prefix {
        errors.push(
            Scope::FromRow,
            prefix.span(),
            "`prefix` applies to a `flatten` field only",
        );
    }
    if let (Some(span), Some(_)) = (a.primary_key, a.skip) {
        errors.push(Scope::Model, span, "the primary key cannot be `skip`ped");
    }
    for (what, span) in [("db_default", a.db_default), ("generated", a.generated)] {
        let Some(span) = span else { continue };
        if a.skip.is_some() || a.flatten.is_some() {
            errors.push(
                Scope::Model,
                span,
                format!("`{what}` is for a stored column: not with `skip` or `flatten`"),
            );
        }
        if a.primary_key.is_some() {
            errors.push(
                Scope::Model,
                span,
                format!("`{what}` cannot mark the primary key (an INTEGER PRIMARY KEY is assigned by SQLite already)"),
            );
        }
    }
    if let (Some(span), Some(_)) = (a.db_default, a.generated) {
        errors.push(
            Scope::Model,
            span,
            "use one of `db_default` and `generated`: a generated column is never written",
        );
    }
}

/// The column a plain field reads: `rename`, else `rename_all` applied to the
/// field's name (without `r#`).
pub(crate) fn column_name(ident: &Ident, a: &FieldAttrs, c: &Container) -> String {
    if let Some(r) = &a.rename {
        return r.value();
    }
    let name = ident.to_string();
    let name = name.strip_prefix("r#").unwrap_or(&name).to_owned();
    match c.rename_all {
        Some(rule) => rule.apply(&name),
        None => name,
    }
}
