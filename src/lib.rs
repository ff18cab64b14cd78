//! confab: a real-time chat service.
//!
//! The tree follows the architecture: [`session`] actors speak the
//! WebSocket protocol ([`protocol`]), register with the one [`hub`] that
//! routes events, and ask [`persistence`] to commit before anything is
//! acked. [`http`] serves the user, admin and operations endpoints;
//! [`startup`] wires it all together.

pub mod auth;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod domain;
pub mod error;
pub mod events;
pub mod http;
pub mod hub;
pub mod logging;
pub mod metrics;
pub mod outbound;
pub mod persistence;
pub mod protocol;
pub mod session;
pub mod startup;
pub mod storage;
pub mod thumbnail;
pub mod webhooks;
