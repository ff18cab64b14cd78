//! One batch of cursor advances: one statement, in its own implicit
//! transaction.

use std::collections::HashMap;

use chrono::Utc;
use diesel::sql_types::{Array, BigInt, Bool, Nullable, Uuid as SqlUuid};
use diesel::QueryableByName;
use diesel_async::RunQueryDsl;
use uuid::Uuid;

use super::super::prepared::CachePrepared;
use super::super::Db;
use super::{AdvanceCursor, CursorKind, CursorOutcome};
use crate::domain::UserId;
use crate::error::AppError;
use crate::events::{ChatEvent, ReceiptRange};

// Per advance (`ord` counts from 1 in arrival order): thread, user,
// company, up_to_seq, "read" (else delivered); at most one per membership.
// - `current` locks the memberships, in (thread, user) order. In READ
//   COMMITTED a locked row is its latest committed version, even when
//   another writer committed after this statement's snapshot; so the new
//   cursors are computed from the values they replace, and two advances of
//   one cursor never report the same range twice.
// - An advance that moves nothing writes nothing and tells nobody.
// - `senders` are the current members other than the reader who sent a
//   message in a range that moved: the people its receipt concerns. A read
//   range always covers the delivered range it moves (delivered follows
//   read), so one index range scan of the thread's seqs serves both.
// - An advance with no row: not a member of a thread of the caller's
//   company.
macro_rules! advance_batch {
    ($input:literal) => {
        concat!(
            $input,
            "
    current AS (
        SELECT i.ord, i.read, m.thread_id, m.user_id, m.last_delivered_seq AS old_delivered,
               m.last_read_seq AS old_read, LEAST(i.up_to_seq, t.last_seq) AS up_to
        FROM input i
        JOIN memberships m ON m.thread_id = i.thread_id AND m.user_id = i.user_id
        JOIN threads t ON t.id = m.thread_id AND t.company_id = i.company_id
        ORDER BY m.thread_id, m.user_id
        FOR UPDATE OF m
    ),
    target AS (
        SELECT c.*,
               CASE WHEN c.read THEN GREATEST(c.old_delivered, c.old_read, c.up_to)
                    ELSE GREATEST(c.old_delivered, c.up_to) END AS new_delivered,
               CASE WHEN c.read THEN GREATEST(c.old_read, c.up_to)
                    ELSE c.old_read END AS new_read
        FROM current c
    ),
    updated AS (
        UPDATE memberships m
        SET last_delivered_seq = n.new_delivered, last_read_seq = n.new_read
        FROM target n
        WHERE m.thread_id = n.thread_id AND m.user_id = n.user_id
          AND (n.new_delivered > n.old_delivered OR n.new_read > n.old_read)
    ),
    senders AS (
        SELECT n.ord, msg.sender_id,
               bool_or(msg.seq > n.old_delivered AND msg.seq <= n.new_delivered) AS delivered,
               bool_or(msg.seq > n.old_read AND msg.seq <= n.new_read) AS read
        FROM target n
        JOIN messages msg ON msg.thread_id = n.thread_id
         AND msg.seq > CASE WHEN n.new_read > n.old_read THEN n.old_read
                            ELSE n.old_delivered END
         AND msg.seq <= CASE WHEN n.new_read > n.old_read THEN n.new_read
                             ELSE n.new_delivered END
        JOIN memberships mm ON mm.thread_id = msg.thread_id AND mm.user_id = msg.sender_id
        WHERE msg.sender_id <> n.user_id
        GROUP BY n.ord, msg.sender_id
    )
    SELECT n.ord, n.old_delivered, n.old_read, n.new_delivered, n.new_read,
           s.sender_id, s.delivered, s.read
    FROM target n LEFT JOIN senders s ON s.ord = n.ord"
        )
    };
}

// A batch of one advance (most of them at everyday load), with scalars:
// Postgres keeps a generic plan for it, where the array form is re-planned
// at every execution.
const ADVANCE_ONE: &str = advance_batch!(
    "
    WITH input AS (
        SELECT $1::uuid AS thread_id, $2::uuid AS user_id, $3::uuid AS company_id,
               $4::bigint AS up_to_seq, $5::boolean AS read, 1::bigint AS ord
    ),"
);

const ADVANCE_MANY: &str = advance_batch!(
    "
    WITH input AS (
        SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::bigint[], $5::boolean[])
            WITH ORDINALITY AS i(thread_id, user_id, company_id, up_to_seq, read, ord)
    ),"
);

/// One advance's cursors before and after, once per sender it concerns
/// (or once with no sender).
#[derive(QueryableByName)]
struct AdvanceRow {
    #[diesel(sql_type = BigInt)]
    ord: i64,
    #[diesel(sql_type = BigInt)]
    old_delivered: i64,
    #[diesel(sql_type = BigInt)]
    old_read: i64,
    #[diesel(sql_type = BigInt)]
    new_delivered: i64,
    #[diesel(sql_type = BigInt)]
    new_read: i64,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    sender_id: Option<Uuid>,
    #[diesel(sql_type = Nullable<Bool>)]
    delivered: Option<bool>,
    #[diesel(sql_type = Nullable<Bool>)]
    read: Option<bool>,
}

/// What one advance committed: its answer, and the receipt to route.
pub(super) struct Advanced {
    pub outcome: CursorOutcome,
    pub event: Option<ChatEvent>,
}

/// Writes the batch; one answer per request, in order. `Err` when the
/// statement failed (nothing was written).
pub(super) async fn advance_all(
    db: &Db,
    requests: &[&AdvanceCursor],
) -> Result<Vec<Result<Advanced, AppError>>, AppError> {
    let mut conn = db.conn().await?;
    let is_read = |r: &&AdvanceCursor| r.kind == CursorKind::Read;
    let rows: Vec<AdvanceRow> = match requests {
        [one] => {
            diesel::sql_query(ADVANCE_ONE)
                .bind::<SqlUuid, _>(one.thread_id.0)
                .bind::<SqlUuid, _>(one.member.user_id.0)
                .bind::<SqlUuid, _>(one.member.company_id.0)
                .bind::<BigInt, _>(one.up_to_seq.get())
                .bind::<Bool, _>(is_read(one))
                .cached()
                .load(&mut conn)
                .await?
        }
        _ => {
            diesel::sql_query(ADVANCE_MANY)
                .bind::<Array<SqlUuid>, _>(
                    requests.iter().map(|r| r.thread_id.0).collect::<Vec<_>>(),
                )
                .bind::<Array<SqlUuid>, _>(
                    requests
                        .iter()
                        .map(|r| r.member.user_id.0)
                        .collect::<Vec<_>>(),
                )
                .bind::<Array<SqlUuid>, _>(
                    requests
                        .iter()
                        .map(|r| r.member.company_id.0)
                        .collect::<Vec<_>>(),
                )
                .bind::<Array<BigInt>, _>(
                    requests
                        .iter()
                        .map(|r| r.up_to_seq.get())
                        .collect::<Vec<_>>(),
                )
                .bind::<Array<Bool>, _>(requests.iter().map(is_read).collect::<Vec<_>>())
                .cached()
                .load(&mut conn)
                .await?
        }
    };
    let mut by_ord: HashMap<i64, Vec<&AdvanceRow>> = HashMap::new();
    for row in &rows {
        by_ord.entry(row.ord).or_default().push(row);
    }
    let at = Utc::now();
    Ok(requests
        .iter()
        .zip(1_i64..)
        .map(|(request, ord)| {
            let own = by_ord.get(&ord).map(Vec::as_slice).unwrap_or_default();
            advanced(request, own, at)
        })
        .collect())
}

/// One request's answer and receipt, from its rows.
fn advanced(
    request: &AdvanceCursor,
    rows: &[&AdvanceRow],
    at: chrono::DateTime<Utc>,
) -> Result<Advanced, AppError> {
    let first = rows.first().ok_or(AppError::NotMember)?;
    let outcome = CursorOutcome {
        last_delivered_seq: first.new_delivered,
        last_read_seq: first.new_read,
    };
    // Who a moved cursor concerns, if it moved.
    let range = |moved: bool, up_to_seq: i64, covers: fn(&AdvanceRow) -> bool| {
        moved.then(|| ReceiptRange {
            up_to_seq,
            senders: rows
                .iter()
                .filter(|row| covers(row))
                .filter_map(|row| row.sender_id.map(UserId))
                .collect(),
        })
    };
    let delivered = range(
        first.new_delivered > first.old_delivered,
        first.new_delivered,
        |row| row.delivered == Some(true),
    );
    let read = range(first.new_read > first.old_read, first.new_read, |row| {
        row.read == Some(true)
    });
    let event = (delivered.is_some() || read.is_some()).then_some(ChatEvent::CursorAdvanced {
        thread_id: request.thread_id,
        user_id: request.member.user_id,
        origin: request.origin,
        delivered,
        read,
        at,
    });
    Ok(Advanced { outcome, event })
}
