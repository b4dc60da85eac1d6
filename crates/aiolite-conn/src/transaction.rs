//! The async transaction guard.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::channel::Channel;
use crate::connection::Connection;
use crate::error::{Error, Result};
use crate::options::TransactionBehavior;
use crate::worker::{
    caller_identity, Deferred, Kind, Lease, LeaseControl, Message, OwnedTransaction, Worker,
};

/// An open transaction, from [`Connection::begin`].
///
/// It has the same statement methods as [`Connection`] (`execute`,
/// `fetch_all`, `stream`, `call`, ...), and they run inside the transaction.
/// While the guard lives it owns the connection: requests from other handles
/// wait until it ends. It ends with [`commit`](Transaction::commit),
/// [`rollback`](Transaction::rollback), or by being dropped, which rolls back
/// (the rollback is queued; `drop` never blocks).
///
/// What the transaction opens ends with it: a [`RowStream`](crate::RowStream)
/// from [`stream`](Transaction::stream) reads inside the transaction and
/// stops there, so read it to the end before committing; polled after the
/// transaction ended, it yields [`Error::TransactionEnded`]. A stream never
/// keeps the transaction, or the connection, from being released.
///
/// If SQLite rolls the transaction back on its own (`INSERT OR ROLLBACK`,
/// `RAISE(ROLLBACK, ..)`, `SQLITE_FULL`, ...), the guard is dead: the failing
/// statement, every later one, and `commit()` return
/// [`Error::RolledBack`] with the cause; `rollback()` succeeds. Nothing runs
/// in autocommit in its name.
///
/// [`Error::TransactionEnded`]: crate::Error::TransactionEnded
/// [`Error::RolledBack`]: crate::Error::RolledBack
#[must_use = "a transaction is rolled back when dropped; call commit()"]
pub struct Transaction {
    conn: Connection,
    channel: Channel,
    control: Arc<LeaseControl>,
}

impl Transaction {
    /// The guard of a lease about to be begun; registered from now until
    /// its drop (see `Shared::leased_by_caller`).
    pub(crate) fn new(
        conn: Connection,
        channel: Channel,
        control: Arc<LeaseControl>,
    ) -> Transaction {
        channel.shared.register_guard(&control);
        Transaction {
            conn,
            channel,
            control,
        }
    }

    pub(crate) fn channel(&self) -> &Channel {
        &self.channel
    }

    /// Opens a savepoint: a transaction nested in this one. While it lives,
    /// statements go through it; it ends with [`Savepoint::release`] (its work
    /// joins this transaction), [`Savepoint::rollback`], or by being dropped
    /// (rolled back). Savepoints nest.
    ///
    /// ```
    /// # async fn demo(tx: &mut aiolite_conn::Transaction) -> aiolite_conn::Result<()> {
    /// tx.execute("INSERT INTO log(msg) VALUES ('kept')", ()).await?;
    /// let sp = tx.savepoint().await?;
    /// sp.execute("INSERT INTO log(msg) VALUES ('undone')", ()).await?;
    /// sp.rollback().await?; // 'kept' stays, 'undone' is gone
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// SQLite's error.
    ///
    /// # Cancel safety
    /// If dropped after the SAVEPOINT ran, the savepoint stays open, empty,
    /// and ends with the transaction.
    pub async fn savepoint(&mut self) -> Result<Savepoint<'_>> {
        Savepoint::open(&self.channel).await
    }

    /// Commits and releases the connection. If the COMMIT fails, the
    /// transaction is rolled back and the error returned.
    ///
    /// # Errors
    /// SQLite's error (a deferred foreign-key violation, `SQLITE_BUSY`, I/O);
    /// [`Error::RolledBack`](crate::Error::RolledBack) when SQLite had
    /// rolled the transaction back already.
    ///
    /// # Cancel safety
    /// If the future is dropped before the worker starts the COMMIT, the
    /// transaction is rolled back; once started, the commit completes and is not
    /// followed by a rollback.
    pub async fn commit(self) -> Result<()> {
        // Dropped here before the worker starts the request: the request is
        // skipped, `self` goes with the future, and its drop ends the lease
        // (rolled back). Dropped once it started: the COMMIT completes, and
        // the lease ends with this request.
        let grouped = self
            .channel
            .run_as(Kind::EndLease, Worker::commit_lease)
            .await?;
        match grouped {
            // Answered once the group's COMMIT ran (or failed). Dropped
            // while waiting: the member is committed with the group all the
            // same; only its answer is lost.
            Some(outcome) => outcome.await.unwrap_or(Err(crate::Error::Closed)),
            None => Ok(()),
        }
    }

    /// Rolls back and releases the connection. A transaction SQLite already
    /// rolled back rolls back without error.
    ///
    /// # Errors
    /// SQLite's error.
    ///
    /// # Cancel safety
    /// The transaction is rolled back whether or not the future completes.
    pub async fn rollback(self) -> Result<()> {
        // Dropped before it runs or while it runs: the rollback happens
        // either way (here, or through the guard's drop).
        self.channel
            .run_as(Kind::EndLease, Worker::rollback_lease)
            .await
    }
}

impl Drop for Transaction {
    fn drop(&mut self) {
        // The lease ends with the guard, not with the last sender of its
        // channel (a stream may hold one): the worker sees this before its
        // next message and rolls back unless commit or rollback ended the
        // lease already.
        self.control.end();
        self.channel.shared.unregister_guard(&self.control);
        let _ = self.channel.sender.try_send(Message::Wake);
    }
}

crate::query_methods::one_queue_hooks!(Transaction);
crate::query_methods::impl_query_methods!(Transaction);
crate::query_methods::impl_call!(Transaction);
crate::query_methods::impl_handle!(Transaction, call);

/// A savepoint inside a [`Transaction`] (or inside another savepoint), from
/// [`Transaction::savepoint`]. It borrows its parent, so the parent cannot be
/// used until it ends. Dropped without [`release`](Savepoint::release), it is
/// rolled back before the parent's next statement.
#[must_use = "a savepoint is rolled back when dropped; call release()"]
pub struct Savepoint<'a> {
    channel: Channel,
    name: String,
    done: bool,
    _parent: PhantomData<&'a mut ()>,
}

impl Savepoint<'_> {
    async fn open<'b>(channel: &Channel) -> Result<Savepoint<'b>> {
        let name = channel.shared.savepoint_name();
        let sql = format!("SAVEPOINT {name}");
        channel
            .run(move |w| Ok(w.conn.execute_batch(&sql)?))
            .await?;
        Ok(Savepoint {
            channel: channel.clone(),
            name,
            done: false,
            _parent: PhantomData,
        })
    }

    pub(crate) fn channel(&self) -> &Channel {
        &self.channel
    }

    /// Opens a savepoint nested in this one.
    ///
    /// # Errors
    /// SQLite's error.
    ///
    /// # Cancel safety
    /// As [`Transaction::savepoint`].
    pub async fn savepoint(&mut self) -> Result<Savepoint<'_>> {
        Savepoint::open(&self.channel).await
    }

    /// Keeps the savepoint's work as part of the enclosing transaction.
    ///
    /// # Errors
    /// SQLite's error.
    ///
    /// # Cancel safety
    /// If dropped before the RELEASE ran, the savepoint is rolled back.
    pub async fn release(self) -> Result<()> {
        let sql = format!("RELEASE {}", self.name);
        self.finish(Kind::Plain, sql).await
    }

    /// Undoes the savepoint's work; the enclosing transaction goes on. In a
    /// transaction SQLite already rolled back, there is nothing left to undo:
    /// it succeeds.
    ///
    /// # Errors
    /// SQLite's error.
    ///
    /// # Cancel safety
    /// The savepoint is rolled back whether or not the future completes.
    pub async fn rollback(self) -> Result<()> {
        let sql = format!("ROLLBACK TO {0}; RELEASE {0}", self.name);
        self.finish(Kind::Undo, sql).await
    }

    /// Runs the statement that ends the savepoint. If it fails, or the future
    /// is dropped before it answers, `Drop` still rolls the savepoint back.
    async fn finish(mut self, kind: Kind, sql: String) -> Result<()> {
        self.done = true;
        let r = self
            .channel
            .run_as(kind, move |w| {
                if w.dead_lease().is_some() {
                    // Only an Undo gets here in a dead lease.
                    return Ok(());
                }
                Ok(w.conn.execute_batch(&sql)?)
            })
            .await;
        if r.is_err() {
            self.done = false;
        }
        r
    }
}

impl Drop for Savepoint<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.channel
                .release(Deferred::RollbackTo(std::mem::take(&mut self.name)));
        }
    }
}

crate::query_methods::one_queue_hooks!(Savepoint<'_>);
crate::query_methods::impl_query_methods!(Savepoint<'_>);
crate::query_methods::impl_call!(Savepoint<'_>);
crate::query_methods::impl_handle!(Savepoint<'_>, call);

impl fmt::Debug for Savepoint<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Savepoint")
            .field("name", &self.name)
            .finish()
    }
}

impl fmt::Debug for Transaction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transaction")
            .field("connection", &self.conn)
            .finish()
    }
}

/// Beginning a transaction: the guard form (`begin`, whose lease the guard
/// owns) and the closure form (`transaction`, one request on the worker).
impl Connection {
    /// Begins a `DEFERRED` transaction and returns its guard.
    ///
    /// While the guard is alive it owns the connection: requests from other
    /// handles wait until it commits, rolls back or is dropped, so no other
    /// task's statement can land inside it. Requests on the connection itself
    /// from the task holding the guard fail at once with
    /// [`Error::InsideOwnTransaction`] (they would wait for the guard); use
    /// the guard's own methods.
    ///
    /// `begin` returns as soon as its `BEGIN` is queued, without waiting for
    /// the worker to run it: the guard's first statement follows it into
    /// the worker, so the guard form costs the same round trips as its
    /// statements and the commit, no more (as Python's `sqlite3` begins
    /// implicitly with the first statement). If the `BEGIN` fails, that
    /// first statement (and every later one, and `commit`) returns
    /// [`Error::BeginFailed`] with the cause, and nothing of the guard runs.
    ///
    /// ```
    /// # async fn demo(conn: aiolite_conn::Connection) -> aiolite_conn::Result<()> {
    /// let tx = conn.begin().await?;
    /// tx.execute("UPDATE accounts SET balance = balance - 10 WHERE id = 1", ()).await?;
    /// tx.execute("UPDATE accounts SET balance = balance + 10 WHERE id = 2", ()).await?;
    /// tx.commit().await?; // dropped without commit: rolled back
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::Closed`]; [`Error::InsideOwnTransaction`] when this task
    /// holds a guard of this connection already. The `BEGIN`'s own error
    /// ("cannot start a transaction within a transaction" after an
    /// `execute("BEGIN")`) comes as [`Error::BeginFailed`] from the guard's
    /// first request.
    ///
    /// # Cancel safety
    /// Cancel safe: the future only waits for room in a full queue; dropped
    /// there, it queued nothing. A guard dropped before its `BEGIN` ran
    /// begins nothing; after, its transaction is rolled back.
    pub async fn begin(&self) -> Result<Transaction> {
        self.begin_with(TransactionBehavior::Deferred).await
    }

    /// Begins a transaction with the given locking behavior; see
    /// [`begin`](Connection::begin).
    ///
    /// # Errors
    /// As [`begin`](Connection::begin). For `Immediate` or `Exclusive`,
    /// `SQLITE_BUSY` when another connection keeps the write lock past the
    /// busy timeout comes as [`Error::BeginFailed`] from the guard's first
    /// request (`is_busy()` is true for it).
    ///
    /// # Cancel safety
    /// Cancel safe, as [`begin`](Connection::begin).
    pub async fn begin_with(&self, behavior: TransactionBehavior) -> Result<Transaction> {
        let shared = &self.channel().shared;
        if shared.leased_by_caller() {
            // Its BEGIN would queue behind the caller's own transaction.
            return Err(Error::InsideOwnTransaction);
        }
        let (lease_tx, lease_rx) = mpsc::channel(self.queue_bound());
        let control = Arc::new(LeaseControl::new(caller_identity()));
        let lease = Lease {
            rx: lease_rx,
            control: Arc::clone(&control),
            wake: lease_tx.downgrade(),
        };
        let channel = Channel {
            sender: lease_tx,
            shared: Arc::clone(shared),
            lease: Some(Arc::clone(&control)),
            main: Some(self.channel().sender.downgrade()),
        };
        // The guard exists from here on (a request its holder sends around
        // it is refused), and its drop ends the lease wherever the BEGIN is:
        // still queued (the worker then begins nothing), running, or done.
        // The BEGIN is not waited for: the guard's first request goes into
        // the lease right behind it, so the lease costs no round trip of its
        // own; what the BEGIN did reaches that request (`Error::BeginFailed`).
        // Dropped while the main queue is full, this future queues nothing,
        // and the guard it made goes with it.
        let tx = Transaction::new(self.clone(), channel, Arc::clone(&control));
        let first = self
            .channel()
            .post(move |w| w.begin_lease(behavior, lease), Kind::Begin)
            .await?;
        if first && shared.is_only_guard() {
            // Nothing queued ahead of the BEGIN and no other transaction
            // holding the worker: the guard's first answer is microseconds
            // away, worth polling for (see `LeaseControl::near`).
            control.draw_near();
        }
        Ok(tx)
    }

    /// Runs `f` inside a `DEFERRED` transaction on the worker thread: commits
    /// when it returns `Ok`, rolls back when it returns `Err` or panics. `f`
    /// gets `&mut rusqlite::Transaction`, so it can nest savepoints
    /// (`tx.savepoint()`).
    ///
    /// ```
    /// # async fn demo(conn: aiolite_conn::Connection) -> aiolite_conn::Result<()> {
    /// let moved = conn
    ///     .transaction(|tx| {
    ///         tx.execute("UPDATE accounts SET balance = balance - 10 WHERE id = 1", [])?;
    ///         tx.execute("UPDATE accounts SET balance = balance + 10 WHERE id = 2", [])?;
    ///         Ok::<_, aiolite_conn::Error>(10)
    ///     })
    ///     .await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// `f`'s error, or SQLite's (converted into `E`), or [`Error::Panic`].
    ///
    /// # Cancel safety
    /// If the future is dropped before the transaction starts, it never runs;
    /// once running it completes (commit or rollback) on the worker.
    pub async fn transaction<F, T, E>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut rusqlite::Transaction<'_>) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<Error> + Send + 'static,
    {
        self.transaction_with(TransactionBehavior::Deferred, f)
            .await
    }

    /// [`transaction`](Connection::transaction) with a chosen locking behavior.
    ///
    /// # Errors
    /// As [`transaction`](Connection::transaction).
    ///
    /// # Cancel safety
    /// As [`transaction`](Connection::transaction).
    pub async fn transaction_with<F, T, E>(
        &self,
        behavior: TransactionBehavior,
        f: F,
    ) -> Result<T, E>
    where
        F: FnOnce(&mut rusqlite::Transaction<'_>) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<Error> + Send + 'static,
    {
        let behavior = match behavior {
            TransactionBehavior::Deferred => rusqlite::TransactionBehavior::Deferred,
            TransactionBehavior::Immediate => rusqlite::TransactionBehavior::Immediate,
            TransactionBehavior::Exclusive => rusqlite::TransactionBehavior::Exclusive,
        };
        let r = self
            .channel()
            .run(move |w| {
                let shared = Arc::clone(&w.shared);
                let outcome = {
                    let mut tx = w.conn.transaction_with_behavior(behavior)?;
                    // The closure's transaction is a guard's: if SQLite rolls
                    // it back inside `f` and `f` goes on, the commit hook
                    // refuses the autocommit of every later write. Freed on
                    // every way out, a panic in `f` included.
                    let _owned = OwnedTransaction::new(&shared);
                    match f(&mut tx) {
                        Ok(_) if tx.is_autocommit() => {
                            // Dropping `tx` tries a rollback, which finds
                            // nothing to roll back.
                            drop(tx);
                            Err(E::from(Error::RolledBack { cause: None }))
                        }
                        Ok(v) => {
                            let started = std::time::Instant::now();
                            let committed = shared.guard_commit(|| tx.commit());
                            crate::worker::events::statement(
                                "COMMIT",
                                w.queue_wait(),
                                started.elapsed(),
                                w.slow_statement(),
                            );
                            committed?;
                            Ok(v)
                        }
                        // Dropping `tx` rolls back.
                        Err(e) => Err(e),
                    }
                };
                // It may have created TEMP objects or attached a database.
                w.note_schema(None);
                Ok(outcome)
            })
            .await;
        r.unwrap_or_else(|e| Err(E::from(e)))
    }
}
