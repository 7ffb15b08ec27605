//! The first administrator, from configuration (`KEYFRAME_ADMIN_EMAIL`,
//! `KEYFRAME_ADMIN_PASSWORD`), made at start-up through the same `User` commands as everyone
//! else, and idempotently: an existing admin is left alone. An existing account is promoted
//! only when its address is verified and its password is the configured one: otherwise whoever
//! registered the address first (no mailbox needed) would become an administrator.

use crate::App;
use crate::accounts::NewAccount;
use crate::error::{AppError, Refusal};
use anyhow::Context as _;
use keyframe_domain::ids::UserId;
use keyframe_domain::user::{Role, UserCommand};
use keyframe_domain::values::{EmailAddress, Password};
use keyframe_eventlog::metadata::CommandMetadata;

impl App {
    /// Makes sure the account `email` exists, is verified and is an administrator.
    pub async fn ensure_first_admin(&self, email: &str, password: &str) -> anyhow::Result<()> {
        let address = EmailAddress::parse("KEYFRAME_ADMIN_EMAIL", email).map_err(|e| anyhow::anyhow!("{e}"))?;
        let metadata = CommandMetadata::system();
        let user_id = match self.find_account(email).await.map_err(readable)? {
            Some((user_id, user)) => {
                if user.is_admin() {
                    return Ok(());
                }
                let hash = Some(user.password_hash().clone());
                if !user.email_verified() || !self.passwords.verify(password.to_owned(), hash).await? {
                    anyhow::bail!(
                        "an account with KEYFRAME_ADMIN_EMAIL exists, but its address is not verified or its password is \
                     not KEYFRAME_ADMIN_PASSWORD: refusing to make it an administrator"
                    );
                }
                user_id
            }
            None => {
                let password = Password::parse("KEYFRAME_ADMIN_PASSWORD", password, &[email])
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                let account = NewAccount {
                    user_id: UserId::new(),
                    email: address,
                    password_hash: self.passwords.hash(password).await?,
                    full_name: None,
                    verification: None,
                };
                let user_id = account.user_id;
                match self.create_account(account, &metadata).await {
                    Ok(_) => {
                        // The address comes from the operator, not from a sign-up: nothing to prove.
                        let verify = || UserCommand::MarkEmailVerified {
                            at: keyframe_domain::clock::now(),
                        };
                        let id = user_id.to_string();
                        self.buses
                            .users
                            .execute(&id, verify, &metadata)
                            .await
                            .map_err(|e| readable(AppError::from(e)))?;
                        user_id
                    }
                    // Another process made it meanwhile.
                    Err(AppError::Refused(Refusal::EmailTaken)) => {
                        self.find_account(email)
                            .await
                            .map_err(readable)?
                            .context("the first admin's account vanished")?
                            .0
                    }
                    Err(error) => return Err(readable(error)),
                }
            }
        };
        let id = user_id.to_string();
        let rejected = |e| readable(AppError::from(e));
        let user = self
            .buses
            .users
            .load_current(&id)
            .await
            .map_err(rejected)?
            .context("the first admin's account vanished")?;
        if !user.is_admin() {
            let mut roles = user.roles();
            roles.insert(Role::Admin);
            let promote = || UserCommand::SetRoles {
                roles: roles.clone(),
                by: None,
                at: keyframe_domain::clock::now(),
            };
            self.buses
                .users
                .execute(&id, promote, &metadata)
                .await
                .map_err(rejected)?;
            tracing::info!(user = %user_id, email, "the first administrator is in place");
        }
        Ok(())
    }
}

fn readable(error: AppError) -> anyhow::Error {
    anyhow::anyhow!("setting up the first administrator: {error}")
}
