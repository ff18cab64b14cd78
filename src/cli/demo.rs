//! `confab demo`: a company to try confab with in a minute. Seeding goes
//! through the same Persistence requests as the admin API and chat:send,
//! and is idempotent: a second run finds the company, its users and its
//! threads by name, and resends messages with the same client_msg_id,
//! which the server answers with the original instead of a copy.

use std::collections::HashMap;
use std::net::SocketAddr;

use actix::Addr;
use chrono::{Duration, Utc};
use clap::Args;
use uuid::Uuid;

use super::{login_link, offline_persistence, serve, user_token_signer, CliError};
use crate::auth::Claimed;
use crate::config::Settings;
use crate::domain::{ClientMsgId, DisplayName, MessageContent, MessageKind, ThreadTitle};
use crate::persistence::{
    ask, CompanyUsers, CreateCompany, CreateThread, CreateUser, FindCompanyByName, LoadThreads,
    Persistence, SendMessage,
};
use crate::protocol::views::{ThreadKind, UserView};
use crate::protocol::ThreadView;
use crate::startup::Application;

const COMPANY: &str = "Demo";
const USERS: [&str; 4] = ["Ann", "Bob", "Cleo", "Dev"];

/// More people of the company, in no demo thread and without a link: enough
/// for the directory (`GET /api/users?q=`) to be worth searching and for
/// starting new conversations.
const COLLEAGUES: [&str; 16] = [
    "Amara Okafor",
    "Ben Whitaker",
    "Chloé Martin",
    "Dmitri Volkov",
    "Elena García",
    "Farid Haddad",
    "Grace Liu",
    "Hannah Schmidt",
    "Ines Duarte",
    "Jonas Berg",
    "Kenji Watanabe",
    "Lena Novak",
    "Mateo Rossi",
    "Nadia Benali",
    "Oskar Lindqvist",
    "Priya Raman",
];

/// A thread of the demo: title (None: the direct thread), members, and
/// (sender, body) messages, all by index into [`USERS`].
struct DemoThread {
    title: Option<&'static str>,
    members: &'static [usize],
    messages: &'static [(usize, &'static str)],
}

const THREADS: [DemoThread; 3] = [
    DemoThread {
        title: Some("General"),
        members: &[0, 1, 2, 3],
        messages: &[
            (
                0,
                "Welcome to confab! Open another user's link in a second window and say hi.",
            ),
            (1, "Hi all! Typing, read marks and edits show up live."),
            (2, "Morning. Who is looking at the launch checklist?"),
        ],
    },
    DemoThread {
        title: Some("Launch plan"),
        members: &[0, 1, 2],
        messages: &[
            (1, "The checklist is done, please have a look."),
            (0, "Thanks, I will review it today."),
        ],
    },
    DemoThread {
        title: None,
        members: &[0, 1],
        messages: &[(1, "Lunch at noon?")],
    },
];

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Seed and print the links, then exit instead of serving (the links
    /// work with a server that uses the same jwt_secret).
    #[arg(long)]
    pub no_serve: bool,
}

pub async fn run(mut settings: Settings, args: DemoArgs) -> Result<(), CliError> {
    if args.no_serve && settings.jwt_secret.is_empty() {
        return Err(CliError::Usage(
            "demo --no-serve: no jwt_secret configured, so no server could accept the links; set CONFAB_JWT_SECRET"
                .into(),
        ));
    }
    crate::persistence::migrate::prepare_database(&settings.database_url).await?;
    let signer = user_token_signer(&mut settings);
    let users = seed(&offline_persistence(&settings)?).await?;

    let ttl = i64::try_from(settings.token_ttl_seconds)
        .map_err(|_| CliError::Usage("demo: token_ttl_seconds is too large".into()))?;
    let expires_at = Utc::now() + Duration::seconds(ttl);
    let mut tokens = Vec::with_capacity(users.len());
    for user in &users {
        tokens.push((
            user.display_name.clone(),
            signer.mint(user.id, user.company_id, expires_at, None)?,
        ));
    }
    let print_links = |addr: SocketAddr| {
        println!("Demo company {COMPANY:?}: open a link per window to chat as that user.");
        for (name, token) in &tokens {
            println!("  {name:<5} {}", login_link(addr, token));
        }
        println!(
            "In the page, People finds {} more colleagues to message or start a group with.",
            COLLEAGUES.len()
        );
    };
    if args.no_serve {
        print_links(settings.bind_addr());
        return Ok(());
    }
    let app = Application::build(settings).await?;
    print_links(app.local_addr());
    serve(app).await
}

/// Finds or creates the company, users, threads and messages; returns the
/// users in [`USERS`] order.
async fn seed(persistence: &Addr<Persistence>) -> Result<Vec<UserView>, CliError> {
    let company = match ask(persistence, FindCompanyByName(COMPANY.into())).await? {
        Some(company) => company,
        None => {
            let name = DisplayName::parse("name", COMPANY.to_string())?;
            ask(persistence, CreateCompany { name }).await?
        }
    };
    let mut existing: HashMap<String, UserView> = HashMap::new();
    for user in ask(persistence, CompanyUsers(company.id)).await? {
        existing.entry(user.display_name.clone()).or_insert(user);
    }
    let mut users = Vec::with_capacity(USERS.len());
    for name in USERS {
        let user = match existing.remove(name) {
            Some(user) => user,
            None => {
                let request = CreateUser {
                    company_id: company.id,
                    display_name: DisplayName::parse("display_name", name.to_string())?,
                    external_id: None,
                };
                ask(persistence, request).await?
            }
        };
        users.push(user);
    }
    for name in COLLEAGUES {
        if existing.remove(name).is_none() {
            let request = CreateUser {
                company_id: company.id,
                display_name: DisplayName::parse("display_name", name.to_string())?,
                external_id: None,
            };
            ask(persistence, request).await?;
        }
    }

    let claimed: Vec<Claimed> = users
        .iter()
        .map(|u| Claimed {
            user_id: u.id,
            company_id: u.company_id,
        })
        .collect();
    // Every demo thread has Ann (index 0), so her list shows which exist.
    let anns_threads: Vec<ThreadView> = ask(
        persistence,
        LoadThreads {
            member: claimed[0],
            with_last_message: false,
        },
    )
    .await?
    .into_iter()
    .map(|item| item.thread)
    .collect();

    for (thread_index, spec) in THREADS.iter().enumerate() {
        let found = spec.title.and_then(|title| {
            anns_threads
                .iter()
                .find(|t| t.kind == ThreadKind::Group && t.title.as_deref() == Some(title))
        });
        let thread_id = match found {
            Some(thread) => thread.id,
            None => {
                let request = CreateThread {
                    company_id: company.id,
                    creator: Some(claimed[0].user_id),
                    kind: match spec.title {
                        Some(_) => ThreadKind::Group,
                        None => ThreadKind::Direct,
                    },
                    title: ThreadTitle::parse(spec.title.map(String::from))?,
                    member_ids: spec.members.iter().map(|&i| claimed[i].user_id).collect(),
                };
                ask(persistence, request).await?.thread.id
            }
        };
        for (message_index, &(sender, body)) in spec.messages.iter().enumerate() {
            let content = MessageContent::parse(Some(MessageKind::Text), Some(body.into()), None)?;
            let request = SendMessage {
                sender: claimed[sender],
                thread_id,
                client_msg_id: demo_client_msg_id(thread_index, message_index),
                content,
                origin: None,
            };
            ask(persistence, request).await?;
        }
    }
    Ok(users)
}

/// Fixed per message, so a rerun is a resend the server deduplicates
/// (client_msg_id is unique per sender).
fn demo_client_msg_id(thread: usize, message: usize) -> ClientMsgId {
    const DEMO_PREFIX: u128 = 0xdec0_0000_0000_4000_8000_0000_0000_0000;
    ClientMsgId(Uuid::from_u128(
        DEMO_PREFIX | ((thread as u128) << 16) | message as u128,
    ))
}
