//! Reading back committed messages for the hub, when an announcement did
//! not reach it: a seq gap that outlived the reorder hold, or whatever a
//! node missed while its bus was away. Internal: no caller, no scoping;
//! the hub only routes the result to members of each thread's room.

use diesel::sql_types::{Array, BigInt, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;

use super::prepared::CachePrepared;
use super::rows::{message_views, MessageRow};
use super::{Answer, Db, Query};
use crate::error::AppError;
use crate::events::LoadMessagesAfter;
use crate::protocol::MessageView;

const LOAD_RANGES: &str = "
    SELECT m.id, m.thread_id, m.company_id, m.seq, m.sender_id, m.client_msg_id, m.kind,
           m.body, m.metadata, m.created_at, m.edited_at, m.deleted_at
    FROM unnest($1::uuid[], $2::bigint[], $3::bigint[]) AS r(thread_id, after_seq, up_to_seq)
    CROSS JOIN LATERAL (
        SELECT * FROM messages
        WHERE messages.thread_id = r.thread_id
          AND messages.seq > r.after_seq AND messages.seq <= r.up_to_seq
        ORDER BY messages.seq
        LIMIT $4
    ) m
    ORDER BY m.thread_id, m.seq";

impl Query for LoadMessagesAfter {
    type Output = Vec<MessageView>;
    async fn run(self, db: Db) -> Result<Answer<Vec<MessageView>>, AppError> {
        if self.ranges.is_empty() {
            return Ok(Vec::new().into());
        }
        let mut conn = db.conn().await?;
        let threads: Vec<uuid::Uuid> = self.ranges.iter().map(|r| r.thread_id.0).collect();
        let after: Vec<i64> = self.ranges.iter().map(|r| r.after_seq).collect();
        let up_to: Vec<i64> = self.ranges.iter().map(|r| r.up_to_seq).collect();
        let rows: Vec<MessageRow> = diesel::sql_query(LOAD_RANGES)
            .bind::<Array<SqlUuid>, _>(threads)
            .bind::<Array<BigInt>, _>(after)
            .bind::<Array<BigInt>, _>(up_to)
            .bind::<BigInt, _>(self.limit_per_thread)
            .cached()
            .load(&mut conn)
            .await?;
        Ok(message_views(rows)?.into())
    }
}
