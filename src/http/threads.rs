//! Creating threads, adding and removing members, once for both APIs. The user and
//! admin routes differ only in who is asking (and so which company and
//! creator a new thread gets); each route is a thin wrapper over these.

use actix_web::HttpResponse;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use crate::domain::{CompanyId, ThreadId, ThreadTitle, UserId};
use crate::error::AppError;
use crate::persistence::{AddMember, Caller, CreateThread, RemoveMember};
use crate::protocol::views::ThreadKind;

/// What either API's create-thread body holds besides the company: the
/// two bodies stay apart because they document different rules.
pub(super) struct ThreadFields {
    pub kind: Option<ThreadKind>,
    pub title: Option<String>,
    pub member_ids: Vec<UserId>,
}

/// Creates a thread for a user (`creator`, always a member) or the
/// operator (`None`): 201 with the new thread, or 200 with the existing
/// direct thread of the pair.
pub(super) async fn create_thread(
    state: &AppState,
    company_id: CompanyId,
    creator: Option<UserId>,
    ThreadFields {
        kind,
        title,
        member_ids,
    }: ThreadFields,
) -> Result<HttpResponse, AppError> {
    let created = state
        .ask(CreateThread {
            company_id,
            creator,
            kind: kind.unwrap_or(ThreadKind::Group),
            title: ThreadTitle::parse(title)?,
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

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMember {
    pub user_id: UserId,
}

/// A membership that was just made.
#[derive(Serialize, ToSchema)]
pub struct Membership {
    pub thread_id: ThreadId,
    pub user_id: UserId,
}

/// Adds a member to a group thread: for a user, one of their company to a
/// thread they are in; for the operator, one of the thread's company.
pub(super) async fn add_member(
    state: &AppState,
    caller: Caller,
    thread_id: ThreadId,
    NewMember { user_id }: NewMember,
) -> Result<HttpResponse, AppError> {
    state
        .ask(AddMember {
            caller,
            thread_id,
            user_id,
        })
        .await?;
    Ok(HttpResponse::Created().json(Membership { thread_id, user_id }))
}

/// Removes a member from a group thread: a user removing themself leaves;
/// the thread's creator may remove others; the operator anyone. 204.
pub(super) async fn remove_member(
    state: &AppState,
    caller: Caller,
    thread_id: ThreadId,
    user_id: UserId,
) -> Result<HttpResponse, AppError> {
    state
        .ask(RemoveMember {
            caller,
            thread_id,
            user_id,
        })
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
