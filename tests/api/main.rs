//! confab's integration suite: one binary, every test against a real
//! server on a random port with its own database.

// A test that unwraps fails, which is what it should do; the workspace's
// unwrap_used denial is for code that serves.
#![allow(clippy::unwrap_used)]

#[allow(dead_code)]
mod support;

mod admin_api;
mod architecture;
mod browser;
mod capacity;
mod changes;
mod cli;
mod cluster;
mod concurrency;
mod connect;
mod conversations;
mod deactivation;
mod errors;
mod faults;
mod group_commit;
mod hostile;
mod limits;
mod logs;
mod membership;
mod messaging;
mod migrations;
mod openapi;
mod ops;
mod people;
mod postgres_tls;
mod presence;
mod process;
mod properties;
mod reactions;
mod receipts;
mod replies;
mod search;
mod security;
mod tenancy;
mod typing;
mod uploads;
mod user_api;
mod web;
mod webhooks;
mod websocket;
