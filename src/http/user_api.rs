//! /api: what a signed-in user may see and do. Every handler starts from
//! [`AuthUser`]; Persistence scopes each query to the user's company and
//! memberships, so another company's thread is simply not found.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::extract::AuthUser;
use super::AppState;
use crate::auth::Claimed;
use crate::domain::{CompanyId, MessageId, MessageText, ThreadId, UserId};
use crate::error::AppError;
use crate::hub::messages::OnlineAmong;
use crate::persistence::{
    AddMember, Caller, CreateThread, DeleteMessage, EditMessage, FetchMessages, ListMembers,
    LoadThreads, PageBounds, RemoveMember,
};
use crate::protocol::client::page_limit;
use crate::protocol::views::ThreadKind;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/me", web::get().to(me))
        .route("/threads", web::get().to(list_threads))
        .route("/threads", web::post().to(create_thread))
        .route("/threads/{id}/messages", web::get().to(messages))
        .route("/threads/{id}/members", web::get().to(members))
        .route("/threads/{id}/members", web::post().to(add_member))
        .route("/threads/{id}/members/me", web::delete().to(leave))
        .route("/messages/{id}", web::patch().to(edit_message))
        .route("/messages/{id}", web::delete().to(delete_message));
}

async fn me(caller: AuthUser) -> HttpResponse {
    HttpResponse::Ok().json(caller.user)
}

async fn list_threads(
    caller: AuthUser,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    let threads = state
        .ask(LoadThreads {
            member: caller.claimed,
            with_last_message: true,
        })
        .await?;
    Ok(HttpResponse::Ok().json(json!({ "threads": threads })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewThread {
    pub kind: Option<ThreadKind>,
    pub title: Option<String>,
    pub member_ids: Vec<UserId>,
}

/// Title rules shared by the user and admin APIs.
pub fn checked_title(title: Option<String>) -> Result<Option<String>, AppError> {
    const MAX_TITLE_CHARS: usize = 200;
    match title.map(|t| t.trim().to_string()) {
        Some(t) if t.chars().count() > MAX_TITLE_CHARS => Err(AppError::bad_request(format!(
            "title is longer than {MAX_TITLE_CHARS} characters"
        ))),
        Some(t) if t.is_empty() => Ok(None),
        other => Ok(other),
    }
}

async fn create_thread(
    caller: AuthUser,
    state: web::Data<AppState>,
    body: web::Json<NewThread>,
) -> Result<HttpResponse, AppError> {
    let Claimed {
        company_id,
        user_id,
    } = caller.claimed;
    create_thread_in(&state, company_id, Some(user_id), body.into_inner()).await
}

/// Creates a thread for a user (`creator`, always a member) or the
/// operator (`None`): 201 with the new thread, or 200 with the existing
/// direct thread of the pair.
pub async fn create_thread_in(
    state: &AppState,
    company_id: CompanyId,
    creator: Option<UserId>,
    NewThread {
        kind,
        title,
        member_ids,
    }: NewThread,
) -> Result<HttpResponse, AppError> {
    let created = state
        .ask(CreateThread {
            company_id,
            creator,
            kind: kind.unwrap_or(ThreadKind::Group),
            title: checked_title(title)?,
            member_ids,
        })
        .await?;
    let mut response = if created.created {
        HttpResponse::Created()
    } else {
        HttpResponse::Ok()
    };
    Ok(response.json(created.thread))
}

#[derive(Deserialize)]
pub struct PageQuery {
    before_seq: Option<i64>,
    after_seq: Option<i64>,
    limit: Option<i64>,
}

async fn messages(
    caller: AuthUser,
    state: web::Data<AppState>,
    thread_id: web::Path<ThreadId>,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, AppError> {
    let PageQuery {
        before_seq,
        after_seq,
        limit,
    } = query.into_inner();
    if before_seq.is_some_and(|s| s < 0) || after_seq.is_some_and(|s| s < 0) {
        return Err(AppError::bad_request(
            "before_seq and after_seq must not be negative",
        ));
    }
    let bounds = match after_seq {
        Some(after_seq) => PageBounds::After {
            after_seq,
            before_seq,
        },
        None => PageBounds::Newest { before_seq },
    };
    let page = state
        .ask(FetchMessages {
            reader: caller.claimed,
            thread_id: thread_id.into_inner(),
            bounds,
            limit: page_limit(limit)?,
        })
        .await?;
    Ok(HttpResponse::Ok().json(page))
}

async fn members(
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
        .hub
        .send(OnlineAmong(members.iter().map(|m| m.user_id).collect()))
        .await
        .map_err(|_| AppError::Unavailable)?;
    for member in &mut members {
        member.online = online.contains(&member.user_id);
    }
    Ok(HttpResponse::Ok().json(json!({ "members": members })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewMember {
    pub user_id: UserId,
}

async fn add_member(
    caller: AuthUser,
    state: web::Data<AppState>,
    thread_id: web::Path<ThreadId>,
    body: web::Json<NewMember>,
) -> Result<HttpResponse, AppError> {
    let (thread_id, user_id) = (thread_id.into_inner(), body.user_id);
    state
        .ask(AddMember {
            caller: Caller::User(caller.claimed),
            thread_id,
            user_id,
        })
        .await?;
    Ok(HttpResponse::Created().json(json!({ "thread_id": thread_id, "user_id": user_id })))
}

async fn leave(
    caller: AuthUser,
    state: web::Data<AppState>,
    thread_id: web::Path<ThreadId>,
) -> Result<HttpResponse, AppError> {
    let request = RemoveMember {
        caller: Caller::User(caller.claimed),
        thread_id: thread_id.into_inner(),
        user_id: caller.claimed.user_id,
    };
    state.ask(request).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageEdit {
    pub body: String,
}

async fn edit_message(
    caller: AuthUser,
    state: web::Data<AppState>,
    message_id: web::Path<MessageId>,
    edit: web::Json<MessageEdit>,
) -> Result<HttpResponse, AppError> {
    let body = MessageText::parse(edit.into_inner().body)?;
    let message = state
        .ask(EditMessage {
            editor: caller.claimed,
            message_id: message_id.into_inner(),
            body,
        })
        .await?;
    Ok(HttpResponse::Ok().json(message))
}

async fn delete_message(
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
