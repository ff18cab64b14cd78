//! A connection checked out of the pool, which never goes back with an
//! open transaction.
//!
//! A request abandoned at its deadline (its future dropped mid-transaction)
//! leaves the connection's transaction manager marked broken. deadpool only
//! checks that at the next checkout, so the connection would wait in the
//! pool with its transaction open, holding that transaction's row locks
//! (a thread's, say, which every send to the thread then waits for) until
//! some later checkout happened to discard it. Dropping a broken one here
//! takes it out of the pool and closes it at once: Postgres rolls the
//! transaction back as soon as the statements already sent have run.

use std::ops::{Deref, DerefMut};

use diesel_async::pooled_connection::deadpool::Object;
use diesel_async::{AnsiTransactionManager, AsyncPgConnection, TransactionManager};

pub struct DbConn(Option<Object<AsyncPgConnection>>);

impl DbConn {
    pub(super) fn new(conn: Object<AsyncPgConnection>) -> Self {
        Self(Some(conn))
    }
}

impl Deref for DbConn {
    type Target = AsyncPgConnection;

    fn deref(&self) -> &AsyncPgConnection {
        match &self.0 {
            Some(conn) => conn,
            // Only `drop` takes it out.
            None => unreachable!("a checked-out connection is present until it is dropped"),
        }
    }
}

impl DerefMut for DbConn {
    fn deref_mut(&mut self) -> &mut AsyncPgConnection {
        match &mut self.0 {
            Some(conn) => conn,
            None => unreachable!("a checked-out connection is present until it is dropped"),
        }
    }
}

impl Drop for DbConn {
    fn drop(&mut self) {
        let Some(mut conn) = self.0.take() else {
            return;
        };
        if AnsiTransactionManager::is_broken_transaction_manager(&mut *conn) {
            // Detached from the pool; dropping the connection closes it.
            drop(Object::take(conn));
        }
    }
}
