//! Statement parameters that can cross to the worker thread.

use std::fmt;

use rusqlite::types::ToSql;
use rusqlite::Statement;

use crate::error::{Error, Result};

/// Parameters for one statement, owned so they can be sent to the worker.
///
/// Implemented for:
/// - `()`: no parameters;
/// - tuples of up to 16 owned values, `(1, "Alice".to_string(), None::<i64>)`;
///   `&'static str` literals work too;
/// - `Vec<T>`, `[T; N]` of one [`ToSql`] type, e.g. `Vec<Value>`;
/// - [`NamedParams`], built with [`named_params!`](crate::named_params).
///
/// The number of values must equal the statement's parameter count, and named
/// parameters must match the statement's names exactly: a mismatch is an error,
/// never a silently NULL parameter.
pub trait Params: Send + 'static {
    #[doc(hidden)]
    fn bind(&self, stmt: &mut Statement<'_>) -> Result<()>;

    /// How many values these parameters bind by position; `None` for named
    /// ones. `execute_many` packs sets into one multi-row INSERT only when
    /// every set says how many it binds.
    #[doc(hidden)]
    fn positional_len(&self) -> Option<usize> {
        None
    }

    /// Binds the values to parameters `offset + 1 ..` of a packed
    /// statement; called only after `positional_len` answered.
    #[doc(hidden)]
    fn bind_at(&self, _stmt: &mut Statement<'_>, _offset: usize) -> Result<()> {
        Err(Error::Misuse(
            "these parameters do not bind by position".to_owned(),
        ))
    }
}

fn check_count(stmt: &Statement<'_>, given: usize) -> Result<()> {
    let expected = stmt.parameter_count();
    if expected != given {
        return Err(Error::ParameterCount {
            expected,
            given,
            sql: None,
        });
    }
    Ok(())
}

impl Params for () {
    fn bind(&self, stmt: &mut Statement<'_>) -> Result<()> {
        check_count(stmt, 0)
    }
}

impl<T: ToSql + Send + 'static> Params for Vec<T> {
    fn bind(&self, stmt: &mut Statement<'_>) -> Result<()> {
        check_count(stmt, self.len())?;
        bind_slice_at(stmt, self, 0)
    }

    fn positional_len(&self) -> Option<usize> {
        Some(self.len())
    }

    fn bind_at(&self, stmt: &mut Statement<'_>, offset: usize) -> Result<()> {
        bind_slice_at(stmt, self, offset)
    }
}

impl<T: ToSql + Send + 'static, const N: usize> Params for [T; N] {
    fn bind(&self, stmt: &mut Statement<'_>) -> Result<()> {
        check_count(stmt, N)?;
        bind_slice_at(stmt, self, 0)
    }

    fn positional_len(&self) -> Option<usize> {
        Some(N)
    }

    fn bind_at(&self, stmt: &mut Statement<'_>, offset: usize) -> Result<()> {
        bind_slice_at(stmt, self, offset)
    }
}

fn bind_slice_at<T: ToSql>(stmt: &mut Statement<'_>, values: &[T], offset: usize) -> Result<()> {
    for (i, v) in values.iter().enumerate() {
        stmt.raw_bind_parameter(offset + i + 1, v)?;
    }
    Ok(())
}

macro_rules! tuple_params {
    ($count:literal: $($name:ident $idx:tt),+) => {
        impl<$($name: ToSql + Send + 'static),+> Params for ($($name,)+) {
            fn bind(&self, stmt: &mut Statement<'_>) -> Result<()> {
                check_count(stmt, $count)?;
                self.bind_at(stmt, 0)
            }

            fn positional_len(&self) -> Option<usize> {
                Some($count)
            }

            fn bind_at(&self, stmt: &mut Statement<'_>, offset: usize) -> Result<()> {
                $(stmt.raw_bind_parameter(offset + $idx + 1, &self.$idx)?;)+
                Ok(())
            }
        }
    };
}

tuple_params!(1: A 0);
tuple_params!(2: A 0, B 1);
tuple_params!(3: A 0, B 1, C 2);
tuple_params!(4: A 0, B 1, C 2, D 3);
tuple_params!(5: A 0, B 1, C 2, D 3, E 4);
tuple_params!(6: A 0, B 1, C 2, D 3, E 4, F 5);
tuple_params!(7: A 0, B 1, C 2, D 3, E 4, F 5, G 6);
tuple_params!(8: A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7);
tuple_params!(9: A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8);
tuple_params!(10: A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9);
tuple_params!(11: A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10);
tuple_params!(12: A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11);
tuple_params!(13: A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11, M 12);
tuple_params!(14: A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11, M 12, N 13);
tuple_params!(15: A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11, M 12, N 13, O 14);
tuple_params!(16: A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11, M 12, N 13, O 14, P 15);

/// Owned named parameters (`:name`, `@name`, `$name`).
///
/// Build them with [`named_params!`](crate::named_params) or [`NamedParams::push`].
/// Every parameter of the statement must be given, and every given name must
/// exist in the statement.
#[derive(Default)]
pub struct NamedParams {
    pairs: Vec<(String, Box<dyn ToSql + Send>)>,
}

impl NamedParams {
    /// No parameters yet.
    pub fn new() -> Self {
        NamedParams::default()
    }

    /// Adds `name = value`; the name includes its prefix (`":id"`).
    pub fn push(mut self, name: impl Into<String>, value: impl ToSql + Send + 'static) -> Self {
        self.pairs.push((name.into(), Box::new(value)));
        self
    }
}

impl fmt::Debug for NamedParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.pairs.iter().map(|(n, _)| n))
            .finish()
    }
}

impl Params for NamedParams {
    fn bind(&self, stmt: &mut Statement<'_>) -> Result<()> {
        for (name, value) in &self.pairs {
            let index = stmt.parameter_index(name)?.ok_or_else(|| {
                Error::ParameterName(format!("the statement has no parameter named {name:?}"))
            })?;
            stmt.raw_bind_parameter(index, value)?;
        }
        for i in 1..=stmt.parameter_count() {
            match stmt.parameter_name(i) {
                Some(name) if self.pairs.iter().any(|(n, _)| n == name) => {}
                Some(name) => {
                    return Err(Error::ParameterName(format!(
                        "no value was given for parameter {name:?}"
                    )))
                }
                None => {
                    return Err(Error::ParameterName(format!(
                        "parameter {i} is positional; named parameters cannot fill it"
                    )))
                }
            }
        }
        Ok(())
    }
}

/// Builds [`NamedParams`]: `named_params! { ":name": "Alice", ":age": 30 }`.
///
/// ```
/// # async fn demo(conn: aiolite_conn::Connection) -> aiolite_conn::Result<()> {
/// use aiolite_conn::named_params;
/// conn.execute(
///     "INSERT INTO users(name, age) VALUES (:name, :age)",
///     named_params! { ":name": "Alice", ":age": 30 },
/// ).await?;
/// # Ok(()) }
/// ```
#[macro_export]
macro_rules! named_params {
    () => { $crate::NamedParams::new() };
    ($($name:literal : $value:expr),+ $(,)?) => {
        $crate::NamedParams::new()$(.push($name, $value))+
    };
}
