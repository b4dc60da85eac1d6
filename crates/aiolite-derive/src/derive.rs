//! `#[derive(FromRow)]` and `#[derive(Model)]`.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Fields, Ident, Type};

use crate::attrs::{self, Container, Errors, FieldAttrs, Json, Scope};

struct FieldInfo {
    ident: Ident,
    ty: Type,
    attrs: FieldAttrs,
    /// The column of a plain field.
    column: String,
}

struct Parsed {
    container: Container,
    fields: Vec<FieldInfo>,
    errors: Errors,
}

fn parse(input: &DeriveInput) -> Parsed {
    let mut errors = Errors::default();
    let container = attrs::container(&input.attrs, &mut errors);
    let mut fields = Vec::new();
    match &input.data {
        Data::Struct(s) => match &s.fields {
            Fields::Named(named) => {
                for f in &named.named {
                    let a = attrs::field(f, &mut errors);
                    let Some(ident) = f.ident.clone() else {
                        continue;
                    };
                    let column = attrs::column_name(&ident, &a, &container);
                    fields.push(FieldInfo {
                        ident,
                        ty: f.ty.clone(),
                        attrs: a,
                        column,
                    });
                }
            }
            _ => errors.push(
                Scope::FromRow,
                input.ident.span(),
                "aiolite derives need a struct with named fields",
            ),
        },
        _ => errors.push(
            Scope::FromRow,
            input.ident.span(),
            "aiolite derives need a struct with named fields",
        ),
    }
    Parsed {
        container,
        fields,
        errors,
    }
}

/// `struct Point(i64, i64)`: the first columns by position, as sqlx reads a
/// tuple struct.
fn tuple_from_row(input: &DeriveInput, fields: &syn::FieldsUnnamed) -> TokenStream {
    let name = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    let mut errors = Errors::default();
    for f in &fields.unnamed {
        if let Some(attr) = f.attrs.iter().find(|a| a.path().is_ident("aiolite")) {
            errors.push(
                Scope::FromRow,
                attr.span(),
                "a tuple struct reads its columns by position: its fields take no aiolite attributes (name the fields to use them)",
            );
        }
    }
    if let Some(e) = errors.take(Scope::FromRow) {
        return e.into_compile_error();
    }
    let count = fields.unnamed.len();
    let reads = fields.unnamed.iter().enumerate().map(|(i, f)| {
        let ty = &f.ty;
        let label = format!("{name}.{i}");
        quote_spanned! {ty.span()=>
            ::aiolite::__private::get::<#ty>(row, ::core::option::Option::Some(#i), #label)?
        }
    });
    let indexes = 0..count;
    quote! {
        #[automatically_derived]
        impl #impl_generics ::aiolite::FromRow for #name #ty_generics #where_clause {
            type Plan = ();

            fn plan(stmt: &::aiolite::rusqlite::Statement<'_>, _: &str) -> ::aiolite::Result<()> {
                ::aiolite::__private::width(stmt, #count)
            }

            #[inline]
            fn from_row(row: &::aiolite::rusqlite::Row<'_>, _: &()) -> ::aiolite::Result<Self> {
                ::core::result::Result::Ok(Self(#(#reads,)*))
            }

            fn is_null(row: &::aiolite::rusqlite::Row<'_>, _: &()) -> bool {
                true #(&& ::aiolite::__private::is_null(row, ::core::option::Option::Some(#indexes)))*
            }
        }
    }
}

pub(crate) fn from_row(input: &DeriveInput) -> TokenStream {
    if let Data::Struct(syn::DataStruct {
        fields: Fields::Unnamed(fields),
        ..
    }) = &input.data
    {
        return tuple_from_row(input, fields);
    }
    let p = parse(input);
    if let Some(e) = p.errors.take(Scope::FromRow) {
        return e.into_compile_error();
    }
    let name = &input.ident;
    // Each flattened type must be FromRow: said once, as a bound spanned on
    // the type it is read as (the field's, or its `try_from` source), so a
    // type that is not gives one error there.
    let flat_source = |f: &FieldInfo| f.attrs.try_from.clone().unwrap_or_else(|| f.ty.clone());
    let mut generics = input.generics.clone();
    {
        let where_clause = generics.make_where_clause();
        for f in p
            .fields
            .iter()
            .filter(|f| f.attrs.flatten.is_some() && f.attrs.skip.is_none())
        {
            let ty = flat_source(f);
            where_clause
                .predicates
                .push(syn::parse_quote_spanned! {ty.span()=> #ty: ::aiolite::FromRow });
        }
    }
    let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();

    let mut columns = Vec::new(); // plan.0 entries
    let mut nested_plans = Vec::new(); // plan.1.. types and builders
    let mut nested_null = Vec::new();
    let mut nested_gaps = Vec::new(); // a defaulted flatten field whose columns are missing
    let mut with_default = Vec::new(); // field values when the struct's Default fills gaps
    let mut without_default = Vec::new();
    let mut any_skip = false;
    let default_of = |ident: &Ident| {
        if p.container.default {
            let d = format_ident!("__aiolite_d_{}", ident.to_string().trim_start_matches("r#"));
            quote! { #d }
        } else {
            quote! { ::core::default::Default::default() }
        }
    };

    for f in &p.fields {
        let ident = &f.ident;
        let ty = &f.ty;
        let a = &f.attrs;
        let field_name = ident.to_string().trim_start_matches("r#").to_owned();
        let label = format!("{name}.{field_name}");
        if a.skip.is_some() {
            any_skip = true;
            let d = default_of(ident);
            with_default.push(quote! { #ident: #d });
            without_default.push(quote! { #ident: ::core::default::Default::default() });
            continue;
        }
        if a.flatten.is_some() {
            let k = syn::Index::from(nested_plans.len() + 1);
            let prefix = a
                .prefix
                .as_ref()
                .map_or_else(String::new, syn::LitStr::value);
            let source = flat_source(f);
            let defaulted = a.default || p.container.default;
            // Spanned on the type read: a type that is not FromRow is
            // reported there.
            let as_from_row = quote_spanned! {source.span()=> <#source as ::aiolite::FromRow> };
            let build = quote_spanned! {source.span()=>
                #as_from_row::plan(stmt, &::aiolite::__private::join(prefix, #prefix))
            };
            // A defaulted flatten field whose columns are missing takes its
            // default, as sqlx's ColumnNotFound fallback does.
            let build = if defaulted {
                quote! { ::aiolite::__private::optional_plan(#build)? }
            } else {
                quote! { ::core::option::Option::Some(#build?) }
            };
            nested_plans.push((
                quote_spanned! {source.span()=> ::core::option::Option<#as_from_row::Plan> },
                build,
            ));
            nested_null.push(quote_spanned! {source.span()=>
                plan.#k.as_ref().is_none_or(|p| #as_from_row::is_null(row, p))
            });
            if defaulted {
                nested_gaps.push(quote! { plan.#k.is_none() });
            }
            let read = quote_spanned! {source.span()=>
                #as_from_row::from_row(row, p).map_err(|e| ::aiolite::__private::nested(e, #label))?
            };
            let read = if a.try_from.is_some() {
                quote_spanned! {ty.span()=>
                    ::aiolite::__private::convert::<_, #ty>(#read, #label)?
                }
            } else {
                read
            };
            // The plan of a flatten field without a default is always
            // there (its absence fails `plan`): no `Default` bound for it.
            let not_found = quote! {
                return ::core::result::Result::Err(::aiolite::Error::ColumnNotFound(
                    ::std::string::String::from(#label),
                ))
            };
            let missing = if !defaulted {
                not_found.clone()
            } else if p.container.default {
                default_of(ident)
            } else {
                quote! { ::core::default::Default::default() }
            };
            with_default.push(quote! {
                #ident: match &plan.#k {
                    ::core::option::Option::Some(p) => #read,
                    ::core::option::Option::None => #missing,
                }
            });
            // Used only for a row without gaps, where every plan is there
            // (and the struct's default is not bound).
            let missing = if p.container.default {
                not_found
            } else {
                missing
            };
            without_default.push(quote! {
                #ident: match &plan.#k {
                    ::core::option::Option::Some(p) => #read,
                    ::core::option::Option::None => #missing,
                }
            });
            continue;
        }
        let k = columns.len();
        let column = &f.column;
        let optional = a.default || p.container.default;
        columns.push(quote! { ::aiolite::__private::column(stmt, prefix, #column, #optional)? });
        let index = quote! { plan.0[#k] };
        let read = match (&a.json, &a.try_from, &a.from) {
            (Json::Yes, Some(source), _) => quote_spanned! {ty.span()=>
                ::aiolite::__private::convert::<#source, #ty>(
                    ::aiolite::__private::get::<::aiolite::Json<#source>>(row, #index, #label)?.0,
                    #label,
                )?
            },
            (Json::Nullable, Some(source), _) => quote_spanned! {ty.span()=>
                match ::aiolite::__private::get::<::core::option::Option<::aiolite::Json<::core::option::Option<#source>>>>(row, #index, #label)?
                    .and_then(|__aiolite_json| __aiolite_json.0)
                {
                    ::core::option::Option::Some(v) => ::core::option::Option::Some(::aiolite::__private::convert(v, #label)?),
                    ::core::option::Option::None => ::core::option::Option::None,
                }
            },
            (Json::Yes, None, _) => quote_spanned! {ty.span()=>
                ::aiolite::__private::get::<::aiolite::Json<#ty>>(row, #index, #label)?.0
            },
            // SQL NULL and the JSON text `null` are both None.
            (Json::Nullable, None, _) => quote_spanned! {ty.span()=>
                ::aiolite::__private::get::<::core::option::Option<::aiolite::Json<_>>>(row, #index, #label)?
                    .and_then(|__aiolite_json| __aiolite_json.0)
            },
            (Json::No, Some(source), _) => quote_spanned! {ty.span()=>
                ::aiolite::__private::try_get::<#source, #ty>(row, #index, #label)?
            },
            (Json::No, None, Some(source)) => quote_spanned! {ty.span()=>
                <#ty as ::core::convert::From<#source>>::from(
                    ::aiolite::__private::get::<#source>(row, #index, #label)?
                )
            },
            (Json::No, None, None) => quote_spanned! {ty.span()=>
                ::aiolite::__private::get::<#ty>(row, #index, #label)?
            },
        };
        if p.container.default || a.default {
            let d = default_of(ident);
            let d = if a.default && !p.container.default {
                quote! { ::core::default::Default::default() }
            } else {
                d
            };
            with_default.push(quote! {
                #ident: match #index {
                    ::core::option::Option::Some(_) => #read,
                    ::core::option::Option::None => #d,
                }
            });
        } else {
            with_default.push(quote! { #ident: #read });
        }
        without_default.push(quote! { #ident: #read });
    }

    let body = if p.container.default {
        // Gaps (missing columns, skipped fields, a flattened type whose
        // columns are missing) take the struct's own `Default`, as in sqlx;
        // built only for rows of a plan with gaps.
        let bindings = p.fields.iter().map(|f| {
            let ident = &f.ident;
            let d = format_ident!("__aiolite_d_{}", ident.to_string().trim_start_matches("r#"));
            quote! { #ident: #d }
        });
        quote! {
            if #any_skip || plan.0.iter().any(::core::option::Option::is_none) #(|| #nested_gaps)* {
                #[allow(unused_variables)]
                let Self { #(#bindings,)* .. } = <Self as ::core::default::Default>::default();
                ::core::result::Result::Ok(Self { #(#with_default,)* })
            } else {
                ::core::result::Result::Ok(Self { #(#without_default,)* })
            }
        }
    } else {
        quote! { ::core::result::Result::Ok(Self { #(#with_default,)* }) }
    };
    let plan_types = nested_plans.iter().map(|(t, _)| t);
    let plan_builders = nested_plans.iter().map(|(_, b)| b);
    // The plan type names each flattened type's plan; spanned on the first
    // flattened field, so a type that is not FromRow gives one error, there,
    // rather than a second one on the derive.
    let plan_span = p
        .fields
        .iter()
        .find(|f| f.attrs.flatten.is_some() && f.attrs.skip.is_none())
        .map_or_else(Span::call_site, |f| f.ty.span());
    let plan_item = quote_spanned! {plan_span=>
        type Plan = (
            ::std::boxed::Box<[::core::option::Option<usize>]>,
            #(#plan_types,)*
        );
    };
    let plan_ty = quote_spanned! {plan_span=> Self::Plan };

    // The impl itself is checked against the trait's `Plan: Send + 'static`
    // bound, which names each flattened type's plan: spanned like the plan.
    quote_spanned! {plan_span=>
        #[automatically_derived]
        impl #impl_generics ::aiolite::FromRow for #name #ty_generics #where_clause {
            #plan_item

            fn plan(
                stmt: &::aiolite::rusqlite::Statement<'_>,
                prefix: &str,
            ) -> ::aiolite::Result<#plan_ty> {
                ::core::result::Result::Ok((
                    ::std::boxed::Box::new([#(#columns,)*]),
                    #(#plan_builders,)*
                ))
            }

            #[inline]
            fn from_row(
                row: &::aiolite::rusqlite::Row<'_>,
                plan: &#plan_ty,
            ) -> ::aiolite::Result<Self> {
                #body
            }

            fn is_null(row: &::aiolite::rusqlite::Row<'_>, plan: &#plan_ty) -> bool {
                plan.0.iter().all(|i| ::aiolite::__private::is_null(row, *i))
                    #(&& #nested_null)*
            }
        }
    }
}

const INTEGERS: [&str; 8] = ["i8", "i16", "i32", "i64", "u8", "u16", "u32", "u64"];

fn is_integer(ty: &Type) -> bool {
    match ty {
        Type::Path(p) if p.qself.is_none() => p.path.segments.last().is_some_and(|s| {
            s.arguments.is_empty() && INTEGERS.contains(&s.ident.to_string().as_str())
        }),
        _ => false,
    }
}

pub(crate) fn model(input: &DeriveInput) -> TokenStream {
    let mut p = parse(input);
    let name = &input.ident;
    if p.container.table.is_none() && !p.container.table_given {
        p.errors.push(
            Scope::Model,
            name.span(),
            format!("a Model needs its table: add `#[aiolite(table = \"...\")]` to `{name}`"),
        );
    }
    let mut key: Option<&FieldInfo> = None;
    for f in &p.fields {
        if let (Some(span), None) = (f.attrs.flatten, f.attrs.skip) {
            p.errors.push(
                Scope::Model,
                span,
                "a Model maps one table: `flatten` is for FromRow-only structs",
            );
        }
        if let Some(span) = f.attrs.primary_key {
            match key {
                None => key = Some(f),
                Some(first) => p.errors.push(
                    Scope::Model,
                    span,
                    format!(
                        "a Model has one primary key, and `{}` is already it",
                        first.ident
                    ),
                ),
            }
        }
    }
    let Some(key) = key else {
        p.errors.push(
            Scope::Model,
            name.span(),
            format!("a Model needs a primary key: mark one field of `{name}` with `#[aiolite(primary_key)]`"),
        );
        return p
            .errors
            .take(Scope::Model)
            .map(syn::Error::into_compile_error)
            .unwrap_or_default();
    };
    if let Some(e) = p.errors.take(Scope::Model) {
        return e.into_compile_error();
    }
    if p.errors.has(Scope::FromRow) {
        // #[derive(FromRow)] reports them.
        return TokenStream::new();
    }
    let Some(table) = p.container.table.as_ref() else {
        return TokenStream::new();
    };

    let vis = &input.vis;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    let column_enum = format_ident!("{}Column", name);
    let stored: Vec<&FieldInfo> = p
        .fields
        .iter()
        .filter(|f| f.attrs.skip.is_none() && f.attrs.flatten.is_none())
        .collect();
    let variants: Vec<Ident> = stored
        .iter()
        .map(|f| {
            Ident::new(
                &attrs::pascal(f.ident.to_string().trim_start_matches("r#")),
                f.ident.span(),
            )
        })
        .collect();
    let names: Vec<&String> = stored.iter().map(|f| &f.column).collect();
    let variant_docs = names.iter().map(|n| format!("The `{n}` column."));
    let enum_doc = format!(
        "The columns of `{}` (the `{name}` model): sea-query identifiers, so a misspelt column does not compile.",
        table.value()
    );
    let values = stored.iter().map(|f| {
        let ident = &f.ident;
        let ty = &f.ty;
        match (&f.attrs.json, &f.attrs.try_from, &f.attrs.from) {
            (Json::Yes, _, _) => quote_spanned! {ty.span()=>
                ::aiolite::Encode::encode(&::aiolite::Json(&self.#ident))?
            },
            (Json::Nullable, _, _) => quote_spanned! {ty.span()=>
                ::aiolite::Encode::encode(&self.#ident.as_ref().map(::aiolite::Json))?
            },
            (Json::No, Some(source), _) | (Json::No, None, Some(source)) => {
                quote_spanned! {ty.span()=>
                    ::aiolite::Encode::encode(&<#source as ::core::convert::From<#ty>>::from(
                        ::core::clone::Clone::clone(&self.#ident),
                    ))?
                }
            }
            (Json::No, None, None) => quote_spanned! {ty.span()=>
                ::aiolite::Encode::encode(&self.#ident)?
            },
        }
    });
    let key_ident = &key.ident;
    let key_ty = &key.ty;
    let key_variant = Ident::new(
        &attrs::pascal(key.ident.to_string().trim_start_matches("r#")),
        key.ident.span(),
    );
    let auto_key = is_integer(key_ty)
        && matches!(key.attrs.json, Json::No)
        && key.attrs.try_from.is_none()
        && key.attrs.from.is_none();
    let count = stored.len();
    let variant_of = |f: &&FieldInfo| {
        Ident::new(
            &attrs::pascal(f.ident.to_string().trim_start_matches("r#")),
            f.ident.span(),
        )
    };
    let filled: Vec<Ident> = stored
        .iter()
        .filter(|f| f.attrs.db_default.is_some() || f.attrs.generated.is_some())
        .map(variant_of)
        .collect();
    let generated: Vec<Ident> = stored
        .iter()
        .filter(|f| f.attrs.generated.is_some())
        .map(variant_of)
        .collect();

    quote! {
        #[doc = #enum_doc]
        #[derive(::core::clone::Clone, ::core::marker::Copy, ::core::fmt::Debug, ::core::cmp::PartialEq, ::core::cmp::Eq, ::core::hash::Hash)]
        #vis enum #column_enum {
            #(#[doc = #variant_docs] #variants,)*
        }

        #[automatically_derived]
        impl ::aiolite::sea_query::Iden for #column_enum {
            fn quoted(&self) -> ::std::borrow::Cow<'static, str> {
                ::aiolite::__private::quoted(<Self as ::aiolite::sea_query::IdenStatic>::as_str(self))
            }

            fn unquoted(&self) -> &str {
                <Self as ::aiolite::sea_query::IdenStatic>::as_str(self)
            }
        }

        #[automatically_derived]
        impl ::aiolite::sea_query::IdenStatic for #column_enum {
            fn as_str(&self) -> &'static str {
                match self {
                    #(Self::#variants => #names,)*
                }
            }
        }

        impl #impl_generics #name #ty_generics #where_clause {
            /// `SELECT` every column of the table: add filters, order and
            /// limits, then run it with `query_all`.
            #vis fn select() -> ::aiolite::sea_query::SelectStatement {
                <Self as ::aiolite::Model>::select()
            }

            /// Every column, in field order.
            #vis fn all_columns() -> &'static [#column_enum] {
                <Self as ::aiolite::Model>::columns()
            }
        }

        #[automatically_derived]
        impl #impl_generics ::aiolite::Model for #name #ty_generics #where_clause {
            type Column = #column_enum;
            type Key = #key_ty;
            const TABLE: &'static str = #table;
            const PRIMARY_KEY: #column_enum = #column_enum::#key_variant;
            const AUTO_KEY: bool = #auto_key;
            const FILLED_BY_DATABASE: &'static [#column_enum] = &[#(#column_enum::#filled,)*];
            const GENERATED: &'static [#column_enum] = &[#(#column_enum::#generated,)*];

            fn columns() -> &'static [#column_enum] {
                const COLUMNS: [#column_enum; #count] = [#(#column_enum::#variants,)*];
                &COLUMNS
            }

            fn key(&self) -> #key_ty {
                ::core::clone::Clone::clone(&self.#key_ident)
            }

            fn values(&self) -> ::aiolite::Result<::std::vec::Vec<::aiolite::sea_query::Value>> {
                ::core::result::Result::Ok(::std::vec![#(#values,)*])
            }
        }
    }
}
