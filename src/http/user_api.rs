//! /api: what a signed-in user may see and do. Every handler starts from
//! [`AuthUser`]; Persistence scopes each query to the user's company and
//! memberships, so another company's thread is simply not found.

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::extract::AuthUser;
use super::responses::{
    BadRequest, Conflict, NotCreator, NotFound, PayloadTooLarge, Unauthorized, Unavailable,
};
use super::threads::{self, Membership, NewMember, ThreadFields};
use super::AppState;
use crate::auth::Claimed;
use crate::domain::{Mentions, MessageId, MessageText, Seq, ThreadId, ThreadTitle, UserId};
use crate::error::AppError;
use crate::hub::messages::OnlineAmong;
use crate::persistence::{
    Caller, DeleteMessage, EditMessage, FetchChanges, FetchMessages, ListMembers, LoadThreads,
    PageBounds, RenameThread,
};
use crate::protocol::client::{page_limit, strict_page_limit};
use crate::protocol::views::{
    ChangesPage, MemberView, MessagePage, ThreadKind, ThreadListItem, UserView,
};
use crate::protocol::{MessageView, ThreadView};

pub fn routes(cfg: &mut web::ServiceConfig) {
    // One resource per path, so that another method answers 405.
    cfg.service(web::resource("/me").get(me).patch(super::people::update_me))
        .configure(super::people::routes)
        .configure(super::search::routes)
        .configure(super::uploads::routes)
        .service(
            web::resource("/threads")
                .get(list_threads)
                .post(create_thread),
        )
        .service(web::resource("/threads/{id}").patch(rename_thread))
        .service(web::resource("/threads/{id}/messages").get(messages))
        .service(web::resource("/threads/{id}/changes").get(changes))
        .service(
            web::resource("/threads/{id}/members")
                .get(members)
                .post(add_member),
        )
        // Before the {user_id} resource: "me" is not a user id.
        .service(web::resource("/threads/{id}/members/me").delete(leave))
        .service(web::resource("/threads/{id}/members/{user_id}").delete(remove_member))
        .service(
            web::resource("/messages/{id}")
                .patch(edit_message)
                .delete(delete_message),
        );
}

/// The caller.
#[utoipa::path(
    get,
    path = "/api/me",
    tag = "user",
    security(("user_token" = [])),
    responses((status = 200, body = UserView), Unauthorized, Unavailable)
)]
pub(super) async fn me(caller: AuthUser) -> HttpResponse {
    HttpResponse::Ok().json(caller.user)
}

#[derive(Serialize, ToSchema)]
pub struct ThreadList {
    /// Most recently active first.
    pub threads: Vec<ThreadListItem>,
}

/// The caller's threads with cursors, unread counts and the last message.
#[utoipa::path(
    get,
    path = "/api/threads",
    tag = "user",
    security(("user_token" = [])),
    responses((status = 200, body = ThreadList), Unauthorized, Unavailable)
)]
pub(super) async fn list_threads(
    caller: AuthUser,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    let threads = state
        .ask(LoadThreads {
            member: caller.claimed,
            with_last_message: true,
        })
        .await?;
    Ok(HttpResponse::Ok().json(ThreadList { threads }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewThread {
    /// Default: group.
    kind: Option<ThreadKind>,
    /// Trimmed; empty means none. No NUL.
    #[schema(max_length = 200, pattern = r"^[^\x00]*$")]
    title: Option<String>,
    /// Users of the caller's company; the caller is added. A direct thread
    /// has exactly two members in all.
    #[schema(max_items = 1000)]
    member_ids: Vec<UserId>,
}

/// Creates a thread with the caller as a member.
#[utoipa::path(
    post,
    path = "/api/threads",
    tag = "user",
    security(("user_token" = [])),
    request_body = NewThread,
    responses(
        (status = 201, description = "Created", body = ThreadView),
        (status = 200, description = "The direct thread of this pair already exists", body = ThreadView),
        BadRequest, Unauthorized, NotFound, PayloadTooLarge, Unavailable
    )
)]
pub(super) async fn create_thread(
    caller: AuthUser,
    state: web::Data<AppState>,
    body: web::Json<NewThread>,
) -> Result<HttpResponse, AppError> {
    let Claimed {
        company_id,
        user_id,
    } = caller.claimed;
    let NewThread {
        kind,
        title,
        member_ids,
    } = body.into_inner();
    let fields = ThreadFields {
        kind,
        title,
        member_ids,
    };
    threads::create_thread(&state, company_id, Some(user_id), fields).await
}

/// Without `after_seq`: the newest page (before `before_seq` if given).
/// With it: the oldest messages after it.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    #[param(minimum = 0)]
    before_seq: Option<i64>,
    #[param(minimum = 0)]
    after_seq: Option<i64>,
    /// Default 100; larger values are cut to 500.
    #[param(minimum = 1)]
    limit: Option<i64>,
}

impl PageQuery {
    /// The slice of history and the page size this query asks for.
    fn parse(self) -> Result<(PageBounds, i64), AppError> {
        let seq = |raw: Option<i64>| {
            raw.map(|raw| {
                Seq::new(raw).ok_or_else(|| {
                    AppError::bad_request("before_seq and after_seq must not be negative")
                })
            })
            .transpose()
        };
        let (before_seq, after_seq) = (seq(self.before_seq)?, seq(self.after_seq)?);
        let bounds = match after_seq {
            Some(after_seq) => PageBounds::After {
                after_seq,
                before_seq,
            },
            None => PageBounds::Newest { before_seq },
        };
        Ok((bounds, page_limit(self.limit)?))
    }
}

/// A page of a thread's history, ascending by seq.
#[utoipa::path(
    get,
    path = "/api/threads/{id}/messages",
    tag = "user",
    security(("user_token" = [])),
    params(("id" = ThreadId, Path, description = "The thread"), PageQuery),
    responses((status = 200, body = MessagePage), BadRequest, Unauthorized, NotFound, Unavailable)
)]
pub(super) async fn messages(
    caller: AuthUser,
    state: web::Data<AppState>,
    thread_id: web::Path<ThreadId>,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, AppError> {
    let (bounds, limit) = query.into_inner().parse()?;
    let page = state
        .ask(FetchMessages {
            reader: caller.claimed,
            thread_id: thread_id.into_inner(),
            bounds,
            limit,
        })
        .await?;
    Ok(HttpResponse::Ok().json(page))
}

/// Where a page of the change feed starts.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ChangesQuery {
    /// Changes with a higher rev are returned; 0 for all.
    #[param(minimum = 0)]
    after_rev: i64,
    /// Default 100.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
}

/// The change feed: every message whose latest change (new, edit, delete,
/// reaction) has `rev > after_rev`, in its current state, ascending by rev.
/// Applying pages until `has_more` is false gives the thread's current
/// state.
#[utoipa::path(
    get,
    path = "/api/threads/{id}/changes",
    tag = "user",
    security(("user_token" = [])),
    params(("id" = ThreadId, Path, description = "The thread"), ChangesQuery),
    responses((status = 200, body = ChangesPage), BadRequest, Unauthorized, NotFound, Unavailable)
)]
pub(super) async fn changes(
    caller: AuthUser,
    state: web::Data<AppState>,
    thread_id: web::Path<ThreadId>,
    query: web::Query<ChangesQuery>,
) -> Result<HttpResponse, AppError> {
    let ChangesQuery { after_rev, limit } = query.into_inner();
    let page = state
        .ask(FetchChanges {
            reader: caller.claimed,
            thread_id: thread_id.into_inner(),
            after_rev: Seq::parse("after_rev", after_rev)?,
            limit: strict_page_limit(limit)?,
        })
        .await?;
    Ok(HttpResponse::Ok().json(page))
}

#[derive(Serialize, ToSchema)]
pub struct MemberList {
    pub members: Vec<MemberView>,
}

/// The thread's members with their cursors and whether they are online.
#[utoipa::path(
    get,
    path = "/api/threads/{id}/members",
    tag = "user",
    security(("user_token" = [])),
    params(("id" = ThreadId, Path, description = "The thread")),
    responses((status = 200, body = MemberList), BadRequest, Unauthorized, NotFound, Unavailable)
)]
pub(super) async fn members(
    caller: AuthUser,
    state: web::Data<AppState>,
    thread_id: web::Path<ThreadId>,
) -> Result<HttpResponse, AppError> {
    let mut members = state
        .ask(ListMembers {
            reader: caller.claimed,
            thread_id: thread_id.into_inner(),
        })
        .await?;
    let online = state
        .hub()
        .send(OnlineAmong(members.iter().map(|m| m.user_id).collect()))
        .await
        .map_err(|_| AppError::Unavailable)?;
    for member in &mut members {
        member.online = online.contains(&member.user_id);
    }
    Ok(HttpResponse::Ok().json(MemberList { members }))
}

/// Adds a user of the caller's company to a group thread the caller is in.
#[utoipa::path(
    post,
    path = "/api/threads/{id}/members",
    tag = "user",
    security(("user_token" = [])),
    params(("id" = ThreadId, Path, description = "The thread")),
    request_body = NewMember,
    responses(
        (status = 201, body = Membership),
        BadRequest, Unauthorized, NotFound, Conflict, PayloadTooLarge, Unavailable
    )
)]
pub(super) async fn add_member(
    caller: AuthUser,
    state: web::Data<AppState>,
    thread_id: web::Path<ThreadId>,
    body: web::Json<NewMember>,
) -> Result<HttpResponse, AppError> {
    let caller = Caller::User(caller.claimed);
    threads::add_member(&state, caller, thread_id.into_inner(), body.into_inner()).await
}

/// The caller leaves a group thread.
#[utoipa::path(
    delete,
    path = "/api/threads/{id}/members/me",
    tag = "user",
    security(("user_token" = [])),
    params(("id" = ThreadId, Path, description = "The thread")),
    responses(
        (status = 204, description = "Left"),
        BadRequest, Unauthorized, NotFound, Conflict, Unavailable
    )
)]
pub(super) async fn leave(
    caller: AuthUser,
    state: web::Data<AppState>,
    thread_id: web::Path<ThreadId>,
) -> Result<HttpResponse, AppError> {
    let (who, thread_id) = (caller.claimed, thread_id.into_inner());
    threads::remove_member(&state, Caller::User(who), thread_id, who.user_id).await
}

/// The thread's creator removes a member of a group thread. Naming
/// themself, the creator leaves, as with `members/me`.
#[utoipa::path(
    delete,
    path = "/api/threads/{id}/members/{user_id}",
    tag = "user",
    operation_id = "remove_thread_member",
    security(("user_token" = [])),
    params(
        ("id" = ThreadId, Path, description = "The thread"),
        ("user_id" = UserId, Path, description = "The member to remove")
    ),
    responses(
        (status = 204, description = "Removed"),
        BadRequest, Unauthorized, NotCreator, NotFound, Conflict, Unavailable
    )
)]
pub(super) async fn remove_member(
    caller: AuthUser,
    state: web::Data<AppState>,
    path: web::Path<(ThreadId, UserId)>,
) -> Result<HttpResponse, AppError> {
    let (thread_id, user_id) = path.into_inner();
    threads::remove_member(&state, Caller::User(caller.claimed), thread_id, user_id).await
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ThreadChange {
    /// The new title, trimmed: 1 to 200 characters, no NUL; null clears
    /// it. Required, so that an empty body changes nothing by accident.
    // `deserialize_with` keeps serde from reading a missing field as null.
    #[serde(deserialize_with = "Option::deserialize")]
    #[schema(
        required = true,
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00]*[^\s\x00][^\x00]*$"
    )]
    title: Option<String>,
}

/// Renames a group thread the caller is in. Every member's sessions get
/// `chat:thread-updated`.
#[utoipa::path(
    patch,
    path = "/api/threads/{id}",
    tag = "user",
    operation_id = "rename_thread",
    security(("user_token" = [])),
    params(("id" = ThreadId, Path, description = "The thread")),
    request_body = ThreadChange,
    responses(
        (status = 200, description = "The thread as the caller sees it", body = ThreadView),
        BadRequest, Unauthorized, NotFound, Conflict, PayloadTooLarge, Unavailable
    )
)]
pub(super) async fn rename_thread(
    caller: AuthUser,
    state: web::Data<AppState>,
    thread_id: web::Path<ThreadId>,
    body: web::Json<ThreadChange>,
) -> Result<HttpResponse, AppError> {
    let title = ThreadTitle::parse_rename(body.into_inner().title)?;
    let thread = state
        .ask(RenameThread {
            renamer: caller.claimed,
            thread_id: thread_id.into_inner(),
            title,
        })
        .await?;
    Ok(HttpResponse::Ok().json(thread))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageEdit {
    /// 1 to 8000 characters, not all whitespace, no NUL.
    #[schema(
        min_length = 1,
        max_length = 8000,
        pattern = r"^[^\x00]*[^\s\x00][^\x00]*$"
    )]
    pub body: String,
    /// Replaces the users the message mentions (members of the thread, at
    /// most 50, no repeats); absent keeps the old list.
    #[schema(max_items = 50)]
    pub mentions: Option<Vec<UserId>>,
}

/// Edits the body of one of the caller's own live messages.
#[utoipa::path(
    patch,
    path = "/api/messages/{id}",
    tag = "user",
    security(("user_token" = [])),
    params(("id" = MessageId, Path, description = "The message")),
    request_body = MessageEdit,
    responses(
        (status = 200, body = MessageView),
        BadRequest, Unauthorized, NotFound, PayloadTooLarge, Unavailable
    )
)]
pub(super) async fn edit_message(
    caller: AuthUser,
    state: web::Data<AppState>,
    message_id: web::Path<MessageId>,
    edit: web::Json<MessageEdit>,
) -> Result<HttpResponse, AppError> {
    let MessageEdit { body, mentions } = edit.into_inner();
    let body = MessageText::parse(body)?;
    let mentions = mentions.map(Mentions::parse).transpose()?;
    let message = state
        .ask(EditMessage {
            editor: caller.claimed,
            message_id: message_id.into_inner(),
            body,
            mentions,
        })
        .await?;
    Ok(HttpResponse::Ok().json(message))
}

/// Deletes one of the caller's own messages: it becomes a tombstone with
/// the same seq. Deleting a tombstone again answers the tombstone.
#[utoipa::path(
    delete,
    path = "/api/messages/{id}",
    tag = "user",
    security(("user_token" = [])),
    params(("id" = MessageId, Path, description = "The message")),
    responses((status = 200, body = MessageView), BadRequest, Unauthorized, NotFound, Unavailable)
)]
pub(super) async fn delete_message(
    caller: AuthUser,
    state: web::Data<AppState>,
    message_id: web::Path<MessageId>,
) -> Result<HttpResponse, AppError> {
    let request = DeleteMessage {
        caller: Caller::User(caller.claimed),
        message_id: message_id.into_inner(),
    };
    Ok(HttpResponse::Ok().json(state.ask(request).await?))
}
