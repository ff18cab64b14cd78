//! Prepared-statement caching for hand-written SQL.
//!
//! diesel marks every `sql_query` as unsafe to cache, because its text
//! could be built at run time. For our statements that costs a parse and a
//! plan on every execution: measured on this machine, 4-6 ms for the group
//! commit's statements under load, more than the insert itself. Every
//! statement we wrap here is a `const` string with fixed bind types, so one
//! prepared statement per connection serves it for the pool's lifetime
//! (diesel-async keys the cache on the SQL text and the bind types).

use diesel::backend::Backend;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::QueryResult;

/// A query whose SQL text is fixed, so its prepared statement can be kept.
#[derive(Debug, Clone, Copy)]
#[must_use = "Queries are only executed when calling `load`, `get_result` or similar."]
pub struct Prepared<Q>(Q);

/// Wraps a `sql_query` built from a constant string.
pub trait CachePrepared: Sized {
    fn cached(self) -> Prepared<Self> {
        Prepared(self)
    }
}

impl<Q> CachePrepared for Q {}

impl<Q: Query> Query for Prepared<Q> {
    type SqlType = Q::SqlType;
}

impl<Q> QueryId for Prepared<Q> {
    // No static id: the cache key is then the SQL text with its bind types.
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<DB: Backend, Q: QueryFragment<DB>> QueryFragment<DB> for Prepared<Q> {
    fn walk_ast<'b>(&'b self, pass: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        self.0.walk_ast(pass)
    }

    fn is_safe_to_cache_prepared(&self, _backend: &DB) -> QueryResult<bool> {
        Ok(true)
    }
}

// diesel (2.4) offers its query methods (`load`, `execute`, …) only to the
// query types that opt in.
impl<Q> diesel::query_dsl::RunQueryDslSupport for Prepared<Q> {}
