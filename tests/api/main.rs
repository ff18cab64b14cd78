//! confab's integration suite: one binary, every test against a real
//! server on a random port with its own database.

#[allow(dead_code)]
mod support;

mod admin_api;
mod bench;
mod browser;
mod capacity;
mod cli;
mod cluster;
mod concurrency;
mod connect;
mod errors;
mod faults;
mod group_commit;
mod hostile;
mod limits;
mod logs;
mod membership;
mod messaging;
mod openapi;
mod ops;
mod presence;
mod process;
mod properties;
mod receipts;
mod security;
mod tenancy;
mod typing;
mod user_api;
mod web;
mod websocket;
