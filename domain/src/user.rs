//! The `User` aggregate: an account, identified by a unique e-mail address and a password hash.
//!
//! E-mail uniqueness spans aggregates, so it is enforced before `RegisterUser` runs, by the
//! reservation table (see the API's registration handler); the aggregate guards its own life.

use crate::ids::UserId;
use crate::values::{EmailAddress, FullName, PasswordHash};
use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

/// A Keyframe account.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct User {
    id: Option<UserId>,
    email: EmailAddress,
    password_hash: PasswordHash,
    full_name: Option<FullName>,
    registered_at: Option<DateTime<Utc>>,
}

impl User {
    /// The user's id, once registered.
    pub fn id(&self) -> Option<UserId> {
        self.id
    }

    /// The normalised e-mail address.
    pub fn email(&self) -> &EmailAddress {
        &self.email
    }

    /// The password hash to verify a login against.
    pub fn password_hash(&self) -> &PasswordHash {
        &self.password_hash
    }

    /// The name the user gave, if any.
    pub fn full_name(&self) -> Option<&FullName> {
        self.full_name.as_ref()
    }

    /// When the account was created.
    pub fn registered_at(&self) -> Option<DateTime<Utc>> {
        self.registered_at
    }

    /// The roles the user holds (administration comes later; everyone is a `user`).
    pub fn roles(&self) -> Vec<String> {
        vec!["user".to_owned()]
    }
}

/// Commands for [`User`].
#[derive(Debug)]
pub enum UserCommand {
    /// Create the account. The e-mail must already be reserved and the password hashed.
    RegisterUser {
        /// The new user's id (also the aggregate id).
        user_id: UserId,
        /// The reserved, normalised address.
        email: EmailAddress,
        /// argon2id hash of the chosen password.
        password_hash: PasswordHash,
        /// Optional display name.
        full_name: Option<FullName>,
        /// When the request arrived.
        at: DateTime<Utc>,
    },
}

/// Events of [`User`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum UserEvent {
    /// An account was created.
    UserRegistered {
        /// The user's id.
        user_id: UserId,
        /// Normalised e-mail address.
        email: EmailAddress,
        /// argon2id PHC string; never the password.
        password_hash: PasswordHash,
        /// Optional display name.
        full_name: Option<FullName>,
        /// When it happened.
        registered_at: DateTime<Utc>,
    },
}

impl DomainEvent for UserEvent {
    fn event_type(&self) -> String {
        match self {
            Self::UserRegistered { .. } => "UserRegistered",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}

/// Rules a [`UserCommand`] can break.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    /// The aggregate already holds a registered account.
    #[error("this account is already registered")]
    AlreadyRegistered,
}

impl Aggregate for User {
    const TYPE: &'static str = "User";
    type Command = UserCommand;
    type Event = UserEvent;
    type Error = UserError;
    type Services = ();

    async fn handle(&mut self, command: UserCommand, _: &(), sink: &EventSink<Self>) -> Result<(), UserError> {
        match command {
            UserCommand::RegisterUser {
                user_id,
                email,
                password_hash,
                full_name,
                at,
            } => {
                if self.id.is_some() {
                    return Err(UserError::AlreadyRegistered);
                }
                let event = UserEvent::UserRegistered {
                    user_id,
                    email,
                    password_hash,
                    full_name,
                    registered_at: at,
                };
                sink.write(event, self).await;
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: UserEvent) {
        match event {
            UserEvent::UserRegistered {
                user_id,
                email,
                password_hash,
                full_name,
                registered_at,
            } => {
                self.id = Some(user_id);
                self.email = email;
                self.password_hash = password_hash;
                self.full_name = full_name;
                self.registered_at = Some(registered_at);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;

    fn registered(user_id: UserId, at: DateTime<Utc>) -> UserEvent {
        UserEvent::UserRegistered {
            user_id,
            email: EmailAddress::parse("email", "ada@example.com").expect("valid"),
            password_hash: PasswordHash("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".to_owned()),
            full_name: Some(FullName::parse("full_name", "Ada Lovelace").expect("valid")),
            registered_at: at,
        }
    }

    fn register(user_id: UserId, at: DateTime<Utc>) -> UserCommand {
        let UserEvent::UserRegistered {
            email,
            password_hash,
            full_name,
            ..
        } = registered(user_id, at);
        UserCommand::RegisterUser {
            user_id,
            email,
            password_hash,
            full_name,
            at,
        }
    }

    #[test]
    fn registering_a_new_user_records_user_registered() {
        let (id, at) = (UserId::new(), Utc::now());
        TestFramework::<User>::with(())
            .given_no_previous_events()
            .when(register(id, at))
            .then_expect_events(vec![registered(id, at)]);
    }

    #[test]
    fn registering_twice_is_refused() {
        let (id, at) = (UserId::new(), Utc::now());
        TestFramework::<User>::with(())
            .given(vec![registered(id, at)])
            .when(register(id, at))
            .then_expect_error(UserError::AlreadyRegistered);
    }
}
