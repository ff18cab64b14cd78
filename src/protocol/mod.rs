//! The wire protocol: frames in ([`client`]), frames out ([`server`]) and
//! the JSON views of records both sides share ([`views`]). Everything a
//! client sends is parsed here into typed values; nothing past this module
//! sees raw JSON from the network.

pub mod client;
pub mod server;
pub mod views;

pub use client::{ClientEvent, ClientFrame, FrameRef};
pub use server::{Ack, ServerEvent};
pub use views::{MessageView, ThreadView};
