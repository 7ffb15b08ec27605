//! The metadata stamped on every event of a command: who did it and within which request.
//! Auditors read it from the log; it travels with each event to NATS.

use keyframe_domain::ids::UserId;
use std::collections::HashMap;
use std::fmt;
use uuid::Uuid;

/// Who caused a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    /// A signed-in user.
    User(UserId),
    /// Someone not signed in (registration, login).
    Anonymous,
    /// Keyframe itself (start-up, process managers).
    System,
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::User(id) => id.fmt(f),
            Self::Anonymous => f.write_str("anonymous"),
            Self::System => f.write_str("system"),
        }
    }
}

/// The metadata of one command, copied onto each of its events.
#[derive(Debug, Clone)]
pub struct CommandMetadata {
    /// Who.
    pub actor: Actor,
    /// The HTTP request (or job) that carried the command.
    pub request_id: String,
    /// The chain of work this belongs to; the request id when it starts a chain.
    pub correlation_id: String,
    /// What directly caused it: a request id, or an event's message id.
    pub causation_id: String,
    /// The client's address, when there is a client.
    pub client_ip: Option<String>,
    /// The client's `User-Agent`, when there is a client.
    pub user_agent: Option<String>,
}

impl CommandMetadata {
    /// Metadata for work Keyframe starts itself (tests, tools, start-up).
    pub fn system() -> Self {
        let id = Uuid::now_v7().to_string();
        Self {
            actor: Actor::System,
            request_id: id.clone(),
            correlation_id: id.clone(),
            causation_id: id,
            client_ip: None,
            user_agent: None,
        }
    }

    /// The same request, acting as `actor`.
    pub fn with_actor(mut self, actor: Actor) -> Self {
        self.actor = actor;
        self
    }

    /// The map stored in each event's `metadata` column.
    pub fn to_map(&self) -> HashMap<String, String> {
        let mut map = HashMap::from([
            ("actor".to_owned(), self.actor.to_string()),
            ("request_id".to_owned(), self.request_id.clone()),
            ("correlation_id".to_owned(), self.correlation_id.clone()),
            ("causation_id".to_owned(), self.causation_id.clone()),
        ]);
        if let Some(ip) = &self.client_ip {
            map.insert("client_ip".to_owned(), ip.clone());
        }
        if let Some(agent) = &self.user_agent {
            map.insert("user_agent".to_owned(), agent.clone());
        }
        map
    }
}
