//! A room: the online members of one thread, who is typing there, and the
//! reorder buffer that makes the changes to its messages leave in rev order.

use std::collections::{HashMap, HashSet};

use super::reorder::{Reorder, Routed};
use crate::domain::{ThreadId, UserId};

pub struct Room {
    /// Online users who are members. Only members are ever in here: users
    /// enter from their own membership list (connect) or from a committed
    /// membership change, and leave on removal or when they go offline.
    pub members: HashSet<UserId>,
    /// Users typing here, with the generation of their latest typing-start.
    pub typing: HashMap<UserId, u64>,
    pub reorder: Reorder,
}

impl Room {
    pub fn new(thread_id: ThreadId, from: Routed) -> Self {
        Self {
            members: HashSet::new(),
            typing: HashMap::new(),
            reorder: Reorder::new(thread_id, from),
        }
    }
}
