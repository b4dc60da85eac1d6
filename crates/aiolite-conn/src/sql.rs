//! SQL text: the type every statement method takes, the checks it passes
//! before prepare, and the three places that decide whether a statement only
//! reads, side by side:
//!
//! - [`looks_like_read`] (first keyword `SELECT`, `VALUES` or `WITH`) lets a
//!   request join a read batch; the worker still asks SQLite before it does.
//! - [`writer_only`]: what a pool sends to its writer whatever SQLite says
//!   (transaction control, ATTACH, PRAGMA, connection-state functions).
//! - SQLite's own `sqlite3_stmt_readonly`, asked by the worker
//!   (`Worker::is_read_only`) and cached per SQL text by the pool's routes:
//!   the answer for everything else.

use std::borrow::Cow;
use std::rc::Rc;
use std::sync::Arc;

use crate::error::{Error, Result};

/// SQL text, as every statement method takes it (`execute`, `fetch_one`,
/// `stream`, ... on every handle).
///
/// Accepted: `&str` of any lifetime, `&String`, `String`, `Cow<str>`,
/// `Arc<str>` and `Box<str>`. The text goes to the worker thread with the
/// request, so it is owned there: a `String`, a `Box<str>` or an owned
/// `Cow` moves, a borrowed string (`&str`, `&String`, a borrowed `Cow`, an
/// `Arc<str>`) is copied once.
///
/// ```
/// # async fn demo(db: aiolite_conn::Database) -> aiolite_conn::Result<()> {
/// let sql = format!("SELECT count(*) FROM {}", "users");
/// db.fetch_one(&sql, ()).await?;
/// db.fetch_one(sql.as_str(), ()).await?;
/// db.fetch_one("SELECT 1", ()).await?;
/// db.fetch_one(sql, ()).await?;
/// # Ok(()) }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not SQL text",
    label = "SQL text expected here",
    note = "pass the SQL as `&str`, `&String`, `String`, `Cow<str>`, `Arc<str>` or `Box<str>`"
)]
pub trait IntoSql {
    /// The text, owned, for the request.
    fn into_sql(self) -> Cow<'static, str>;
}

impl IntoSql for &str {
    fn into_sql(self) -> Cow<'static, str> {
        Cow::Owned(self.to_owned())
    }
}

impl IntoSql for &String {
    fn into_sql(self) -> Cow<'static, str> {
        Cow::Owned(self.clone())
    }
}

impl IntoSql for String {
    fn into_sql(self) -> Cow<'static, str> {
        Cow::Owned(self)
    }
}

impl IntoSql for Cow<'_, str> {
    fn into_sql(self) -> Cow<'static, str> {
        Cow::Owned(self.into_owned())
    }
}

impl IntoSql for Arc<str> {
    fn into_sql(self) -> Cow<'static, str> {
        Cow::Owned(String::from(&*self))
    }
}

impl IntoSql for Rc<str> {
    fn into_sql(self) -> Cow<'static, str> {
        Cow::Owned(String::from(&*self))
    }
}

impl IntoSql for Box<str> {
    fn into_sql(self) -> Cow<'static, str> {
        Cow::Owned(self.into_string())
    }
}

/// SQL text owned by a request (what [`IntoSql`] makes).
pub(crate) type Sql = Cow<'static, str>;

/// The checks every statement's SQL passes before prepare: no NUL byte, and
/// at least one statement (SQLite prepares empty text into no statement at
/// all, which rusqlite then reports as API misuse).
pub(crate) fn check_sql(sql: &str) -> Result<()> {
    check_nul(sql)?;
    if holds_no_statement(sql) {
        return Err(Error::EmptySql);
    }
    Ok(())
}

/// Scripts may be empty (as Python's `executescript`); NUL is still refused.
pub(crate) fn check_nul(sql: &str) -> Result<()> {
    // `contains` on bytes is memchr, a word at a time; every request pays
    // this scan, so the byte-by-byte search runs only to report the offset.
    if !sql.as_bytes().contains(&0) {
        return Ok(());
    }
    match sql.bytes().position(|b| b == 0) {
        Some(offset) => Err(Error::NulInSql { offset }),
        None => Ok(()),
    }
}

/// Whether `sql` is only white space (SQLite's), comments and semicolons.
/// Ordinary SQL answers on its first byte.
fn holds_no_statement(sql: &str) -> bool {
    let mut s = sql;
    loop {
        s = s.trim_start_matches([' ', '\t', '\n', '\x0b', '\x0c', '\r', ';']);
        if let Some(rest) = s.strip_prefix("--") {
            s = rest.split_once('\n').map_or("", |(_, r)| r);
        } else if let Some(rest) = s.strip_prefix("/*") {
            s = rest.split_once("*/").map_or("", |(_, r)| r);
        } else {
            return s.is_empty();
        }
    }
}

/// Whether a request's SQL starts like a query that only reads (the worker
/// still asks SQLite, see [`Worker::prepare`]).
pub(crate) fn looks_like_read(sql: &str) -> bool {
    let word = first_word(sql);
    ["SELECT", "VALUES", "WITH"]
        .iter()
        .any(|k| word.eq_ignore_ascii_case(k))
}

/// The statement's first word, after white space and comments.
pub(crate) fn first_word(sql: &str) -> &str {
    let mut s = sql;
    loop {
        s = s.trim_start();
        if let Some(rest) = s.strip_prefix("--") {
            s = rest.split_once('\n').map_or("", |(_, r)| r);
        } else if let Some(rest) = s.strip_prefix("/*") {
            s = rest.split_once("*/").map_or("", |(_, r)| r);
        } else {
            break;
        }
    }
    // By bytes, not chars: every request's SQL passes here. An ASCII letter
    // is one byte, and no other char starts with one, so the first byte
    // that is not a letter is a char boundary.
    let end = s
        .bytes()
        .position(|b| !b.is_ascii_alphabetic())
        .unwrap_or(s.len());
    &s[..end]
}

/// The statement's first keyword, upper-cased, after white space and comments.
pub(crate) fn first_keyword(sql: &str) -> String {
    first_word(sql).to_ascii_uppercase()
}

/// Whether the statement starts with INSERT, UPDATE, DELETE or REPLACE, the
/// test Python's `sqlite3` uses for its implicit BEGIN.
pub(crate) fn is_dml(sql: &str) -> bool {
    matches!(
        first_keyword(sql).as_str(),
        "INSERT" | "UPDATE" | "DELETE" | "REPLACE"
    )
}

/// Statements that must run on the writer whatever `sqlite3_stmt_readonly`
/// says: transaction control (BEGIN is "read-only"), ATTACH/DETACH (they
/// change the connection), PRAGMA, and the functions that report the state of
/// one connection (on a reader they would report the reader's).
pub(crate) fn writer_only(sql: &str) -> bool {
    let keyword = first_keyword(sql);
    if matches!(
        keyword.as_str(),
        "BEGIN"
            | "COMMIT"
            | "END"
            | "ROLLBACK"
            | "SAVEPOINT"
            | "RELEASE"
            | "ATTACH"
            | "DETACH"
            | "PRAGMA"
            | "VACUUM"
            | "ANALYZE"
            | "REINDEX"
    ) {
        return true;
    }
    let lower = sql.to_ascii_lowercase();
    // `changes` also matches `total_changes`; a column of that name is sent to
    // the writer too, which is safe, only less parallel.
    lower.contains("last_insert_rowid") || lower.contains("changes")
}

/// `BEGIN`, `SAVEPOINT`, `COMMIT`, `END`, `ROLLBACK` and `RELEASE` through a
/// pool's statement methods: the transaction would be rolled back after the
/// request (or there is none to end), so the work the caller believes inside
/// one would autocommit.
/// (No allocation: it runs on every routed request.)
pub(crate) fn refuse_transaction_control(sql: &str) -> Result<()> {
    let word = first_word(sql);
    let refused = [
        ("BEGIN", "BEGIN"),
        ("SAVEPOINT", "SAVEPOINT"),
        ("COMMIT", "COMMIT"),
        ("END", "COMMIT"),
        ("ROLLBACK", "ROLLBACK"),
        ("RELEASE", "RELEASE"),
    ]
    .into_iter()
    .find(|(k, _)| word.eq_ignore_ascii_case(k));
    match refused {
        Some((_, what)) => Err(Error::TransactionControl(what)),
        None => Ok(()),
    }
}

/// A single-row `INSERT` that `execute_many` may pack, many parameter sets
/// to one statement: `INSERT [OR ABORT|IGNORE|REPLACE] INTO name [(columns)]
/// VALUES (?, .., ?)` or `REPLACE INTO ..`, nothing before or after (no
/// comment, no upsert, no RETURNING, no SELECT). Returns the text up to and
/// including `VALUES`, and the number of placeholders.
///
/// Why only these: packed, the rows of a pack are one statement. With the
/// ABORT resolution (IGNORE and REPLACE fall back on it for the errors they
/// do not resolve) a failing statement leaves nothing of itself, so the
/// pack can be replayed row by row to fail exactly where the rows alone
/// would have. `OR FAIL` keeps part of a failed statement and `OR ROLLBACK`
/// ends the transaction: those are never packed.
pub(crate) fn packable_insert(sql: &str) -> Option<(&str, usize)> {
    let text = sql.trim_end();
    let text = text.strip_suffix(';').unwrap_or(text).trim_end();
    let body = text.strip_suffix(')')?;
    let open = body.rfind('(')?;
    let placeholders = body[open + 1..].split(',');
    let mut k = 0;
    for p in placeholders {
        if p.trim() != "?" {
            return None;
        }
        k += 1;
    }
    let head = text[..open].trim_end();
    let keyword_at = head.len().checked_sub("VALUES".len())?;
    if !head.is_char_boundary(keyword_at)
        || !head[keyword_at..].eq_ignore_ascii_case("VALUES")
        || !head[..keyword_at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_whitespace() || matches!(c, ')' | '"' | '`' | ']'))
    {
        return None;
    }
    let tokens = insert_tokens(&head[..keyword_at])?;
    let mut t = tokens.iter().map(String::as_str).peekable();
    let is = |tok: Option<&str>, word: &str| tok.is_some_and(|w| w.eq_ignore_ascii_case(word));
    match t.next() {
        Some(w) if w.eq_ignore_ascii_case("INSERT") => {
            if is(t.peek().copied(), "OR") {
                t.next();
                let resolution = t.next()?;
                if !["ABORT", "IGNORE", "REPLACE"]
                    .iter()
                    .any(|r| resolution.eq_ignore_ascii_case(r))
                {
                    return None;
                }
            }
        }
        Some(w) if w.eq_ignore_ascii_case("REPLACE") => {}
        _ => return None,
    }
    if !is(t.next(), "INTO") {
        return None;
    }
    let name = |tok: Option<&str>| tok.is_some_and(|w| !matches!(w, "(" | ")" | "," | "."));
    if !name(t.next()) {
        return None;
    }
    if t.peek() == Some(&".") {
        t.next();
        if !name(t.next()) {
            return None;
        }
    }
    if t.peek() == Some(&"(") {
        t.next();
        loop {
            if !name(t.next()) {
                return None;
            }
            match t.next() {
                Some(",") => {}
                Some(")") => break,
                _ => return None,
            }
        }
    }
    if t.next().is_some() {
        return None;
    }
    Some((text[..open].trim_end(), k))
}

/// The words, quoted names and `( ) , .` of an INSERT's head; `None` for
/// anything else (a comment, a string, an operator), so nothing unusual is
/// ever packed.
fn insert_tokens(head: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut chars = head.char_indices().peekable();
    while let Some(&(i, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if matches!(c, '(' | ')' | ',' | '.') {
            out.push(c.to_string());
            chars.next();
        } else if c.is_ascii_alphabetic() || c == '_' {
            let mut end = i;
            while let Some(&(j, c)) = chars.peek() {
                if c.is_ascii_alphanumeric() || c == '_' || c == '$' {
                    end = j + c.len_utf8();
                    chars.next();
                } else {
                    break;
                }
            }
            out.push(head[i..end].to_owned());
        } else if matches!(c, '"' | '`' | '[') {
            let close = if c == '[' { ']' } else { c };
            chars.next();
            let mut name = String::new();
            loop {
                let (_, c) = chars.next()?;
                if c == close {
                    if close != ']' && chars.peek().is_some_and(|&(_, n)| n == close) {
                        chars.next();
                        name.push(c);
                        continue;
                    }
                    break;
                }
                name.push(c);
            }
            // Quoted: never mistaken for a keyword or punctuation.
            out.push(format!("\"{name}\""));
        } else {
            return None;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_without_a_statement() {
        for blank in [
            "", " \t\r\n", ";", " ; ;\n", "-- c", "-- c\n;", "/* c */", "/* open", "/**/;--",
        ] {
            assert!(holds_no_statement(blank), "{blank:?}");
            assert!(
                matches!(check_sql(blank), Err(Error::EmptySql)),
                "{blank:?}"
            );
            assert!(check_nul(blank).is_ok(), "{blank:?}");
        }
        for sql in [
            "SELECT 1",
            "; SELECT 1",
            "-- c\nSELECT 1",
            "/* c */ x",
            "\u{a0}",
        ] {
            assert!(!holds_no_statement(sql), "{sql:?}");
        }
    }

    #[test]
    fn dml_detection() {
        assert!(is_dml("insert into t values (1)"));
        assert!(is_dml("  -- c\n /* x */ UPDATE t SET a = 1"));
        assert!(is_dml("Replace INTO t VALUES (1)"));
        assert!(!is_dml("SELECT 1"));
        assert!(!is_dml("CREATE TABLE t(x)"));
        assert!(!is_dml("-- only a comment"));
        assert!(!is_dml("INSERTED"));
    }

    #[test]
    fn first_words() {
        assert_eq!(first_word("SELECT 1"), "SELECT");
        assert_eq!(first_word("\u{a0} /* c */ with x AS (SELECT 1)"), "with");
        assert_eq!(first_word("--\nVALUES(1)"), "VALUES");
        // A letter that is not ASCII ends the word on its boundary.
        assert_eq!(first_word("SELECTé 1"), "SELECT");
        assert_eq!(first_word("é SELECT"), "");
        assert_eq!(first_word(""), "");
        assert!(looks_like_read("  select 1"));
        assert!(!looks_like_read("SELECTED"));
    }

    #[test]
    fn nul_is_refused() {
        assert!(matches!(
            check_sql("UPDATE t SET x = 1 \0 WHERE id = 2"),
            Err(Error::NulInSql { offset: 19 })
        ));
        assert!(check_sql("SELECT 1").is_ok());
    }

    #[test]
    fn packable_inserts() {
        for (sql, head, k) in [
            (
                "INSERT INTO t(a, b) VALUES (?, ?)",
                "INSERT INTO t(a, b) VALUES",
                2,
            ),
            (
                "insert into main.t values(?);",
                "insert into main.t values",
                1,
            ),
            (
                "INSERT OR IGNORE INTO \"my t\" (\"a\", [b]) VALUES (?,?,?)  ",
                "INSERT OR IGNORE INTO \"my t\" (\"a\", [b]) VALUES",
                3,
            ),
            ("REPLACE INTO t VALUES (?)", "REPLACE INTO t VALUES", 1),
            (
                "INSERT OR REPLACE INTO t(a) VALUES ( ? )",
                "INSERT OR REPLACE INTO t(a) VALUES",
                1,
            ),
        ] {
            assert_eq!(packable_insert(sql), Some((head, k)), "{sql}");
        }
        for sql in [
            "INSERT OR FAIL INTO t(a) VALUES (?)",
            "INSERT OR ROLLBACK INTO t(a) VALUES (?)",
            "INSERT INTO t(a) VALUES (?) RETURNING a",
            "INSERT INTO t(a) VALUES (?) ON CONFLICT DO NOTHING",
            "INSERT INTO t(a) VALUES (?), (?)",
            "INSERT INTO t(a) VALUES (?1)",
            "INSERT INTO t(a) VALUES (:a)",
            "INSERT INTO t(a) VALUES (1)",
            "INSERT INTO t(a) VALUES (?, 1)",
            "INSERT INTO t(a) SELECT x FROM u UNION ALL VALUES (?)",
            "INSERT INTO t AS x(a) VALUES (?)",
            "INSERT INTO t(a) /* c */ VALUES (?)",
            "-- c\nINSERT INTO t(a) VALUES (?)",
            "WITH c AS (SELECT 1) INSERT INTO t(a) VALUES (?)",
            "UPDATE t SET a = ? WHERE b IN (?)",
            "INSERT INTO t(a) VALUES ()",
            "INSERT INTO t(a) XVALUES (?)",
            "INSERT INTO tVALUES (?)",
        ] {
            assert_eq!(packable_insert(sql), None, "{sql}");
        }
    }
}
