//! Given / when / then for every command: the exact events, or the exact error.

use super::aggregate::verification_requested;
use super::*;
use crate::ids::{LoginAttemptId, SessionId, UserId};
use crate::values::{ApiKeyProvider, EmailAddress, FullName, PasswordHash, SealedSecret, TokenHash};
use chrono::{DateTime, Duration, Utc};
use cqrs_es::Aggregate;
use cqrs_es::test::TestFramework;
use std::collections::BTreeSet;

struct Given {
    id: UserId,
    at: DateTime<Utc>,
}

const POLICY: LockoutPolicy = LockoutPolicy {
    threshold: 3,
    window: Duration::minutes(15),
    lock_for: Duration::minutes(30),
};

fn hash(text: &str) -> TokenHash {
    TokenHash(format!("hash-of-{text}"))
}

fn password(text: &str) -> PasswordHash {
    PasswordHash(format!("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA${text}"))
}

impl Given {
    fn new() -> Self {
        Self {
            id: UserId::new(),
            at: Utc::now(),
        }
    }

    fn token(&self, text: &str) -> ExpiringToken {
        ExpiringToken {
            hash: hash(text),
            expires_at: self.at + Duration::hours(1),
        }
    }

    fn registered(&self) -> UserEvent {
        UserEvent::UserRegistered {
            user_id: self.id,
            email: EmailAddress::parse("email", "ada@example.com").expect("valid"),
            password_hash: password("first"),
            full_name: Some(FullName::parse("full_name", "Ada Lovelace").expect("valid")),
            registered_at: self.at,
        }
    }

    fn register(&self, verification: Option<ExpiringToken>) -> UserCommand {
        let UserEvent::UserRegistered {
            email,
            password_hash,
            full_name,
            ..
        } = self.registered()
        else {
            unreachable!("registered() makes a UserRegistered");
        };
        UserCommand::RegisterUser {
            user_id: self.id,
            email,
            password_hash,
            full_name,
            verification,
            at: self.at,
        }
    }

    fn verification_sent(&self, text: &str) -> UserEvent {
        verification_requested(self.token(text), self.at)
    }

    fn reset_sent(&self, text: &str) -> UserEvent {
        UserEvent::PasswordResetRequested {
            token_hash: hash(text),
            expires_at: self.at + Duration::hours(1),
            requested_at: self.at,
        }
    }

    /// The account locked now, for the policy's 30 minutes, by three failures.
    fn locked(&self) -> UserEvent {
        UserEvent::AccountLocked {
            failures: 3,
            locked_until: self.at + Duration::minutes(30),
            locked_at: self.at,
        }
    }

    fn failed(&self, minutes: i64) -> UserEvent {
        UserEvent::LoginFailed {
            attempt: None,
            failed_at: self.at + Duration::minutes(minutes),
        }
    }
}

fn user() -> TestFramework<User> {
    TestFramework::<User>::with(())
}

#[test]
fn registering_records_the_user_and_the_verification_mail() {
    let g = Given::new();
    user()
        .given_no_previous_events()
        .when(g.register(Some(g.token("verify"))))
        .then_expect_events(vec![g.registered(), g.verification_sent("verify")]);
}

#[test]
fn registering_without_verification_records_only_the_user() {
    let g = Given::new();
    user()
        .given_no_previous_events()
        .when(g.register(None))
        .then_expect_events(vec![g.registered()]);
}

#[test]
fn registering_twice_is_refused() {
    let g = Given::new();
    user()
        .given(vec![g.registered()])
        .when(g.register(None))
        .then_expect_error(UserError::AlreadyRegistered);
}

#[test]
fn commands_on_an_account_that_does_not_exist_are_refused() {
    let g = Given::new();
    user()
        .given_no_previous_events()
        .when(UserCommand::ClearFailedLogins { at: g.at })
        .then_expect_error(UserError::NotFound);
}

#[test]
fn the_mailed_token_verifies_the_address_once() {
    let g = Given::new();
    let verify = || UserCommand::VerifyEmail {
        token_hash: hash("verify"),
        at: g.at,
    };
    user()
        .given(vec![g.registered(), g.verification_sent("verify")])
        .when(verify())
        .then_expect_events(vec![UserEvent::EmailVerified { verified_at: g.at }]);
    user()
        .given(vec![
            g.registered(),
            g.verification_sent("verify"),
            UserEvent::EmailVerified { verified_at: g.at },
        ])
        .when(verify())
        .then_expect_error(UserError::TokenInvalid);
}

#[test]
fn a_verification_token_that_expired_or_was_replaced_is_refused() {
    let g = Given::new();
    user()
        .given(vec![g.registered(), g.verification_sent("verify")])
        .when(UserCommand::VerifyEmail {
            token_hash: hash("verify"),
            at: g.at + Duration::hours(2),
        })
        .then_expect_error(UserError::TokenExpired);
    user()
        .given(vec![
            g.registered(),
            g.verification_sent("old"),
            g.verification_sent("new"),
        ])
        .when(UserCommand::VerifyEmail {
            token_hash: hash("old"),
            at: g.at,
        })
        .then_expect_error(UserError::TokenInvalid);
}

#[test]
fn a_new_verification_mail_is_refused_once_verified() {
    let g = Given::new();
    user()
        .given(vec![g.registered(), UserEvent::EmailVerified { verified_at: g.at }])
        .when(UserCommand::RequestEmailVerification {
            token: g.token("again"),
            at: g.at,
        })
        .then_expect_error(UserError::AlreadyVerified);
    user()
        .given(vec![g.registered()])
        .when(UserCommand::RequestEmailVerification {
            token: g.token("again"),
            at: g.at,
        })
        .then_expect_events(vec![g.verification_sent("again")]);
}

#[test]
fn a_reset_request_records_the_token_hash() {
    let g = Given::new();
    user()
        .given(vec![g.registered()])
        .when(UserCommand::RequestPasswordReset {
            token: g.token("reset"),
            at: g.at,
        })
        .then_expect_events(vec![g.reset_sent("reset")]);
}

#[test]
fn the_reset_token_sets_the_password_once_and_not_after_it_expired() {
    let g = Given::new();
    let reset = |at| UserCommand::ResetPassword {
        token_hash: hash("reset"),
        password_hash: password("second"),
        at,
    };
    let done = UserEvent::PasswordReset {
        password_hash: password("second"),
        reset_at: g.at,
    };
    user()
        .given(vec![g.registered(), g.reset_sent("reset")])
        .when(reset(g.at))
        .then_expect_events(vec![done.clone()]);
    user()
        .given(vec![g.registered(), g.reset_sent("reset"), done])
        .when(reset(g.at))
        .then_expect_error(UserError::TokenInvalid);
    user()
        .given(vec![g.registered(), g.reset_sent("reset")])
        .when(reset(g.at + Duration::hours(1)))
        .then_expect_error(UserError::TokenExpired);
    user()
        .given(vec![g.registered()])
        .when(reset(g.at))
        .then_expect_error(UserError::TokenInvalid);
}

#[test]
fn a_password_change_voids_a_reset_link_sent_before_it() {
    let g = Given::new();
    user()
        .given(vec![
            g.registered(),
            g.reset_sent("reset"),
            UserEvent::PasswordChanged {
                password_hash: password("changed"),
                kept_session: None,
                changed_at: g.at,
            },
        ])
        .when(UserCommand::ResetPassword {
            token_hash: hash("reset"),
            password_hash: password("second"),
            at: g.at,
        })
        .then_expect_error(UserError::TokenInvalid);
}

#[test]
fn changing_the_password_and_the_profile_record_what_changed() {
    let g = Given::new();
    user()
        .given(vec![g.registered()])
        .when(UserCommand::ChangePassword {
            password_hash: password("second"),
            kept_session: None,
            at: g.at,
        })
        .then_expect_events(vec![UserEvent::PasswordChanged {
            password_hash: password("second"),
            kept_session: None,
            changed_at: g.at,
        }]);
    user()
        .given(vec![g.registered()])
        .when(UserCommand::UpdateProfile {
            full_name: None,
            at: g.at,
        })
        .then_expect_events(vec![UserEvent::ProfileUpdated {
            full_name: None,
            updated_at: g.at,
        }]);
    user()
        .given(vec![g.registered()])
        .when(UserCommand::UpdateProfile {
            full_name: Some(FullName::parse("full_name", "Ada Lovelace").expect("valid")),
            at: g.at,
        })
        .then_expect_events(vec![]);
}

fn admitted(attempt: LoginAttemptId, at: DateTime<Utc>) -> UserEvent {
    UserEvent::LoginAttemptAdmitted {
        attempt,
        admitted_at: at,
    }
}

fn fail(attempt: LoginAttemptId, at: DateTime<Utc>) -> UserCommand {
    UserCommand::RecordFailedLogin {
        attempt,
        policy: POLICY,
        at,
    }
}

fn failed_attempt(attempt: LoginAttemptId, at: DateTime<Utc>) -> UserEvent {
    UserEvent::LoginFailed {
        attempt: Some(attempt),
        failed_at: at,
    }
}

#[test]
fn a_guess_is_admitted_while_the_window_has_room() {
    let g = Given::new();
    let attempt = LoginAttemptId::new();
    user()
        .given(vec![g.registered(), g.failed(0), g.failed(1)])
        .when(UserCommand::AdmitLoginAttempt {
            attempt,
            policy: POLICY,
            at: g.at + Duration::minutes(2),
        })
        .then_expect_events(vec![admitted(attempt, g.at + Duration::minutes(2))]);
}

#[test]
fn guesses_still_being_judged_fill_the_window_like_failures() {
    let g = Given::new();
    let (first, second) = (LoginAttemptId::new(), LoginAttemptId::new());
    user()
        .given(vec![
            g.registered(),
            g.failed(0),
            admitted(first, g.at),
            admitted(second, g.at),
        ])
        .when(UserCommand::AdmitLoginAttempt {
            attempt: LoginAttemptId::new(),
            policy: POLICY,
            at: g.at,
        })
        .then_expect_error(UserError::LoginAttemptsExhausted);
}

#[test]
fn a_locked_account_admits_no_guess() {
    let g = Given::new();
    let locked = g.locked();
    user()
        .given(vec![g.registered(), locked])
        .when(UserCommand::AdmitLoginAttempt {
            attempt: LoginAttemptId::new(),
            policy: POLICY,
            at: g.at + Duration::minutes(29),
        })
        .then_expect_error(UserError::AccountLocked {
            until: g.at + Duration::minutes(30),
        });
}

#[test]
fn the_failure_that_reaches_the_threshold_locks_the_account() {
    let g = Given::new();
    let at = g.at + Duration::minutes(2);
    let attempt = LoginAttemptId::new();
    user()
        .given(vec![g.registered(), g.failed(0), g.failed(1), admitted(attempt, at)])
        .when(fail(attempt, at))
        .then_expect_events(vec![
            failed_attempt(attempt, at),
            UserEvent::AccountLocked {
                failures: 3,
                locked_until: at + Duration::minutes(30),
                locked_at: at,
            },
        ]);
}

#[test]
fn a_judged_failure_is_recorded_even_when_the_account_is_already_locked() {
    let g = Given::new();
    let attempt = LoginAttemptId::new();
    let locked = g.locked();
    user()
        .given(vec![g.registered(), admitted(attempt, g.at), locked])
        .when(fail(attempt, g.at))
        .then_expect_events(vec![failed_attempt(attempt, g.at)]);
}

#[test]
fn a_right_guess_is_recorded_as_passed() {
    let g = Given::new();
    let attempt = LoginAttemptId::new();
    user()
        .given(vec![g.registered(), admitted(attempt, g.at)])
        .when(UserCommand::RecordPassedLoginAttempt { attempt, at: g.at })
        .then_expect_events(vec![UserEvent::LoginAttemptPassed {
            attempt,
            passed_at: g.at,
        }]);
}

#[test]
fn failures_outside_the_window_or_before_a_success_do_not_count() {
    let g = Given::new();
    let at = g.at + Duration::minutes(20);
    let attempt = LoginAttemptId::new();
    user()
        .given(vec![g.registered(), g.failed(0), g.failed(1)])
        .when(fail(attempt, at))
        .then_expect_events(vec![failed_attempt(attempt, at)]);
    let cleared = UserEvent::FailedLoginsCleared { cleared_at: g.at };
    user()
        .given(vec![g.registered(), g.failed(0), g.failed(1), cleared])
        .when(fail(attempt, g.at))
        .then_expect_events(vec![failed_attempt(attempt, g.at)]);
}

#[test]
fn a_success_clears_failures_only_when_there_are_some() {
    let g = Given::new();
    user()
        .given(vec![g.registered(), g.failed(0)])
        .when(UserCommand::ClearFailedLogins { at: g.at })
        .then_expect_events(vec![UserEvent::FailedLoginsCleared { cleared_at: g.at }]);
    user()
        .given(vec![g.registered()])
        .when(UserCommand::ClearFailedLogins { at: g.at })
        .then_expect_events(vec![]);
}

#[test]
fn a_reset_lifts_the_lock_and_ends_older_sessions() {
    let g = Given::new();
    let locked = g.locked();
    let mut account = User::default();
    for event in [
        g.registered(),
        locked,
        g.reset_sent("reset"),
        UserEvent::PasswordReset {
            password_hash: password("second"),
            reset_at: g.at,
        },
    ] {
        if matches!(event, UserEvent::PasswordReset { .. }) {
            assert!(account.locked_until(g.at).is_some());
        }
        account.apply(event);
    }
    assert_eq!(account.locked_until(g.at), None);
    assert_eq!(account.session_fence(), Some((g.at, None)));
    assert!(account.ended_session(SessionId::new(), g.at - Duration::seconds(1)));
    assert!(!account.ended_session(SessionId::new(), g.at));
    assert!(account.email_verified(), "the reset link proved the mailbox");
}

fn sealed(text: &str) -> SealedSecret {
    SealedSecret {
        key_id: "m1".to_owned(),
        wrapped_key: format!("wrapped-{text}"),
        ciphertext: format!("sealed-{text}"),
    }
}

fn enrolled(g: &Given) -> Vec<UserEvent> {
    vec![
        g.registered(),
        UserEvent::TotpEnrolmentStarted {
            secret: sealed("totp"),
            started_at: g.at,
        },
    ]
}

fn enabled(g: &Given, step: u64) -> Vec<UserEvent> {
    let mut events = enrolled(g);
    events.push(UserEvent::TotpEnabled { step, enabled_at: g.at });
    events
}

#[test]
fn a_code_of_the_pending_secret_enables_the_second_factor() {
    let g = Given::new();
    user()
        .given(enrolled(&g))
        .when(UserCommand::EnableTotp {
            secret: sealed("totp"),
            step: 100,
            at: g.at,
        })
        .then_expect_events(vec![UserEvent::TotpEnabled {
            step: 100,
            enabled_at: g.at,
        }]);
    user()
        .given(vec![g.registered()])
        .when(UserCommand::EnableTotp {
            secret: sealed("totp"),
            step: 100,
            at: g.at,
        })
        .then_expect_error(UserError::TotpNotSetUp);
    user()
        .given(enrolled(&g))
        .when(UserCommand::EnableTotp {
            secret: sealed("another setup"),
            step: 100,
            at: g.at,
        })
        .then_expect_error(UserError::TotpNotSetUp);
    user()
        .given(enabled(&g, 100))
        .when(UserCommand::StartTotpEnrolment {
            secret: sealed("again"),
            at: g.at,
        })
        .then_expect_error(UserError::TotpAlreadyEnabled);
}

#[test]
fn a_totp_code_is_never_accepted_twice_nor_an_older_one() {
    let g = Given::new();
    for step in [100, 99] {
        user()
            .given(enabled(&g, 100))
            .when(UserCommand::AcceptTotpCode { step, at: g.at })
            .then_expect_error(UserError::TotpCodeReused);
    }
    user()
        .given(enabled(&g, 100))
        .when(UserCommand::AcceptTotpCode { step: 101, at: g.at })
        .then_expect_events(vec![UserEvent::TotpCodeAccepted {
            step: 101,
            accepted_at: g.at,
        }]);
}

#[test]
fn disabling_needs_a_fresh_code_and_the_factor_on() {
    let g = Given::new();
    user()
        .given(enabled(&g, 100))
        .when(UserCommand::DisableTotp { step: 101, at: g.at })
        .then_expect_events(vec![UserEvent::TotpDisabled {
            step: 101,
            disabled_at: g.at,
        }]);
    user()
        .given(enabled(&g, 100))
        .when(UserCommand::DisableTotp { step: 100, at: g.at })
        .then_expect_error(UserError::TotpCodeReused);
    user()
        .given(vec![g.registered()])
        .when(UserCommand::DisableTotp { step: 101, at: g.at })
        .then_expect_error(UserError::TotpNotEnabled);
}

#[test]
fn api_keys_are_stored_sealed_replaced_and_removed() {
    let g = Given::new();
    let provider = ApiKeyProvider::parse("provider", "openai").expect("valid");
    let stored = UserEvent::ApiKeyStored {
        provider: provider.clone(),
        key: sealed("key"),
        last4: "abcd".to_owned(),
        stored_at: g.at,
    };
    user()
        .given(vec![g.registered()])
        .when(UserCommand::StoreApiKey {
            provider: provider.clone(),
            key: sealed("key"),
            last4: "abcd".to_owned(),
            at: g.at,
        })
        .then_expect_events(vec![stored.clone()]);
    user()
        .given(vec![g.registered(), stored])
        .when(UserCommand::RemoveApiKey {
            provider: provider.clone(),
            at: g.at,
        })
        .then_expect_events(vec![UserEvent::ApiKeyRemoved {
            provider: provider.clone(),
            removed_at: g.at,
        }]);
    user()
        .given(vec![g.registered()])
        .when(UserCommand::RemoveApiKey { provider, at: g.at })
        .then_expect_error(UserError::ApiKeyNotFound);
}

#[test]
fn roles_always_keep_user_and_an_admin_cannot_demote_themselves() {
    let g = Given::new();
    let admin = UserId::new();
    let both: BTreeSet<Role> = [Role::User, Role::Admin].into();
    user()
        .given(vec![g.registered()])
        .when(UserCommand::SetRoles {
            roles: [Role::Admin].into(),
            by: Some(admin),
            at: g.at,
        })
        .then_expect_events(vec![UserEvent::RolesChanged {
            roles: both.clone(),
            changed_by: Some(admin),
            changed_at: g.at,
        }]);
    let promoted = UserEvent::RolesChanged {
        roles: both.clone(),
        changed_by: None,
        changed_at: g.at,
    };
    user()
        .given(vec![g.registered(), promoted.clone()])
        .when(UserCommand::SetRoles {
            roles: [Role::User].into(),
            by: Some(g.id),
            at: g.at,
        })
        .then_expect_error(UserError::CannotActOnSelf);
    user()
        .given(vec![g.registered(), promoted])
        .when(UserCommand::SetRoles {
            roles: both,
            by: None,
            at: g.at,
        })
        .then_expect_events(vec![]);
}

#[test]
fn suspension_and_reactivation_by_an_administrator() {
    let g = Given::new();
    let admin = UserId::new();
    let suspended = UserEvent::UserSuspended {
        reason: "spam".to_owned(),
        suspended_by: admin,
        suspended_at: g.at,
    };
    user()
        .given(vec![g.registered()])
        .when(UserCommand::Suspend {
            reason: "spam".to_owned(),
            by: admin,
            at: g.at,
        })
        .then_expect_events(vec![suspended.clone()]);
    user()
        .given(vec![g.registered(), suspended.clone()])
        .when(UserCommand::Suspend {
            reason: "again".to_owned(),
            by: admin,
            at: g.at,
        })
        .then_expect_error(UserError::AlreadySuspended);
    user()
        .given(vec![g.registered()])
        .when(UserCommand::Suspend {
            reason: "me".to_owned(),
            by: g.id,
            at: g.at,
        })
        .then_expect_error(UserError::CannotActOnSelf);
    user()
        .given(vec![g.registered(), suspended])
        .when(UserCommand::Reactivate { by: admin, at: g.at })
        .then_expect_events(vec![UserEvent::UserReactivated {
            reactivated_by: admin,
            reactivated_at: g.at,
        }]);
    user()
        .given(vec![g.registered()])
        .when(UserCommand::Reactivate { by: admin, at: g.at })
        .then_expect_error(UserError::NotSuspended);
}

#[test]
fn a_password_change_ends_every_older_session_but_the_one_that_made_it() {
    let g = Given::new();
    let (kept, other) = (SessionId::new(), SessionId::new());
    let before = g.at - Duration::minutes(1);
    let mut account = User::default();
    account.apply(g.registered());
    account.apply(UserEvent::PasswordChanged {
        password_hash: password("second"),
        kept_session: Some(kept),
        changed_at: g.at,
    });
    assert!(!account.ended_session(kept, before));
    assert!(account.ended_session(other, before));
    assert!(
        !account.ended_session(other, g.at + Duration::seconds(1)),
        "a later login lives"
    );
    account.apply(UserEvent::AllSessionsEnded { ended_at: g.at });
    assert!(
        account.ended_session(kept, before),
        "logging out everywhere spares none"
    );
}
