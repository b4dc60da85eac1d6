//! Conditions on a model's typed columns, without sea-query's blanket
//! `ExprTrait` in scope.
//!
//! `ExprTrait` is implemented for every `T: Into<Expr>`, integers, strings
//! and dates included, and has `max`, `min`, `eq`, `add`, ...: with it in
//! scope, `a.max(b)` on an `i64` is ambiguous (E0034) and `a.eq(&b)` becomes
//! an `Expr`. So the prelude brings [`ColumnExpr`] instead, implemented only
//! for column identifiers (`IdenStatic`, as every `#[derive(Model)]` column
//! enum is), as sea-orm's `ColumnTrait` is for its columns.

use sea_query::{Expr, ExprTrait, IdenStatic};

/// Conditions built from a column: `UserColumn::Age.gte(18)` is
/// `"age" >= 18`. Each method is `Expr::col(self)` followed by sea-query's
/// method of the same name; for everything else, start from
/// [`expr`](ColumnExpr::expr) and import `sea_query::ExprTrait` where you
/// need it (not in a module that also globs the prelude: both would offer
/// these methods on columns).
///
/// ```
/// use aiolite_query::ColumnExpr;
/// use aiolite_query::sea_query::{Query, SqliteQueryBuilder};
///
/// #[derive(Clone, Copy)]
/// enum UserColumn { Age }
/// impl aiolite_query::sea_query::Iden for UserColumn {
///     fn unquoted(&self) -> &str { "age" }
/// }
/// impl aiolite_query::sea_query::IdenStatic for UserColumn {
///     fn as_str(&self) -> &'static str { "age" }
/// }
///
/// let sql = Query::select()
///     .column(UserColumn::Age)
///     .from("users")
///     .and_where(UserColumn::Age.gte(18))
///     .to_string(SqliteQueryBuilder);
/// assert_eq!(sql, r#"SELECT "age" FROM "users" WHERE "age" >= 18"#);
/// // Ordinary code keeps its meaning next to it:
/// assert_eq!(3_i64.max(5), 5);
/// ```
pub trait ColumnExpr: IdenStatic + Copy + Sized {
    /// The column as an expression, for sea-query's other operators.
    fn expr(self) -> Expr {
        Expr::col(self)
    }
    /// `column = value`.
    fn eq<V: Into<Expr>>(self, value: V) -> Expr {
        self.expr().eq(value)
    }
    /// `column <> value`.
    fn ne<V: Into<Expr>>(self, value: V) -> Expr {
        self.expr().ne(value)
    }
    /// `column > value`.
    fn gt<V: Into<Expr>>(self, value: V) -> Expr {
        self.expr().gt(value)
    }
    /// `column >= value`.
    fn gte<V: Into<Expr>>(self, value: V) -> Expr {
        self.expr().gte(value)
    }
    /// `column < value`.
    fn lt<V: Into<Expr>>(self, value: V) -> Expr {
        self.expr().lt(value)
    }
    /// `column <= value`.
    fn lte<V: Into<Expr>>(self, value: V) -> Expr {
        self.expr().lte(value)
    }
    /// `column BETWEEN low AND high`.
    fn between<L: Into<Expr>, H: Into<Expr>>(self, low: L, high: H) -> Expr {
        self.expr().between(low, high)
    }
    /// `column IN (values...)`.
    fn is_in<V: Into<Expr>, I: IntoIterator<Item = V>>(self, values: I) -> Expr {
        self.expr().is_in(values)
    }
    /// `column NOT IN (values...)`.
    fn is_not_in<V: Into<Expr>, I: IntoIterator<Item = V>>(self, values: I) -> Expr {
        self.expr().is_not_in(values)
    }
    /// `column LIKE pattern`.
    fn like(self, pattern: &str) -> Expr {
        self.expr().like(pattern)
    }
    /// `column NOT LIKE pattern`.
    fn not_like(self, pattern: &str) -> Expr {
        self.expr().not_like(pattern)
    }
    /// `column IS NULL`.
    fn is_null(self) -> Expr {
        self.expr().is_null()
    }
    /// `column IS NOT NULL`.
    fn is_not_null(self) -> Expr {
        self.expr().is_not_null()
    }
}

impl<C: IdenStatic + Copy> ColumnExpr for C {}
