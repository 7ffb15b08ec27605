//! Given / when / then for every command: the exact events, or the exact error.

use super::*;
use crate::ids::{SessionId, UserId};
use crate::values::TokenHash;
use chrono::Duration;
use chrono::{DateTime, Utc};
use cqrs_es::test::TestFramework;

struct Given {
    session_id: SessionId,
    user_id: UserId,
    at: DateTime<Utc>,
}

impl Given {
    fn new() -> Self {
        Self {
            session_id: SessionId::new(),
            user_id: UserId::new(),
            at: Utc::now(),
        }
    }

    fn started(&self) -> SessionEvent {
        SessionEvent::SessionStarted {
            session_id: self.session_id,
            user_id: self.user_id,
            refresh_token_hash: hash("first"),
            refresh_expires_at: self.at + Duration::days(30),
            user_agent: Some("curl/8".to_owned()),
            ip: Some("127.0.0.1".to_owned()),
            started_at: self.at,
        }
    }

    fn start(&self) -> SessionCommand {
        SessionCommand::StartSession {
            session_id: self.session_id,
            user_id: self.user_id,
            refresh_token_hash: hash("first"),
            refresh_expires_at: self.at + Duration::days(30),
            user_agent: Some("curl/8".to_owned()),
            ip: Some("127.0.0.1".to_owned()),
            at: self.at,
        }
    }

    fn rotate(&self, presented: &str, at: DateTime<Utc>) -> SessionCommand {
        SessionCommand::RotateRefreshToken {
            presented_hash: hash(presented),
            new_hash: hash("second"),
            refresh_expires_at: at + Duration::days(30),
            at,
        }
    }

    fn ended(&self) -> SessionEvent {
        SessionEvent::SessionEnded {
            reason: SessionEndReason::Logout,
            ended_at: self.at,
        }
    }
}

fn hash(token: &str) -> TokenHash {
    TokenHash(format!("hash-of-{token}"))
}

#[test]
fn logging_in_starts_a_session() {
    let g = Given::new();
    TestFramework::<Session>::with(())
        .given_no_previous_events()
        .when(g.start())
        .then_expect_events(vec![g.started()]);
}

#[test]
fn starting_a_started_session_is_refused() {
    let g = Given::new();
    TestFramework::<Session>::with(())
        .given(vec![g.started()])
        .when(g.start())
        .then_expect_error(SessionError::AlreadyStarted);
}

#[test]
fn refreshing_with_the_current_token_rotates_it() {
    let g = Given::new();
    let at = g.at + Duration::minutes(5);
    TestFramework::<Session>::with(())
        .given(vec![g.started()])
        .when(g.rotate("first", at))
        .then_expect_events(vec![SessionEvent::RefreshTokenRotated {
            refresh_token_hash: hash("second"),
            refresh_expires_at: at + Duration::days(30),
            rotated_at: at,
        }]);
}

fn rotated(at: DateTime<Utc>) -> SessionEvent {
    SessionEvent::RefreshTokenRotated {
        refresh_token_hash: hash("second"),
        refresh_expires_at: at + Duration::days(30),
        rotated_at: at,
    }
}

#[test]
fn refreshing_with_a_replaced_token_is_refused_as_reuse() {
    let g = Given::new();
    let at = g.at + Duration::minutes(5);
    TestFramework::<Session>::with(())
        .given(vec![g.started(), rotated(at)])
        .when(g.rotate("first", at))
        .then_expect_error(SessionError::RefreshTokenReused);
}

#[test]
fn refreshing_with_a_token_the_family_never_had_is_refused_as_invalid() {
    let g = Given::new();
    TestFramework::<Session>::with(())
        .given(vec![g.started()])
        .when(g.rotate("forged", g.at))
        .then_expect_error(SessionError::RefreshTokenInvalid);
}

#[test]
fn a_replaced_token_coming_back_ends_the_family_and_says_why() {
    let g = Given::new();
    let at = g.at + Duration::minutes(5);
    let later = at + Duration::minutes(1);
    TestFramework::<Session>::with(())
        .given(vec![g.started(), rotated(at)])
        .when(SessionCommand::RevokeForReuse {
            presented_hash: hash("first"),
            at: later,
        })
        .then_expect_events(vec![
            SessionEvent::RefreshTokenReuseDetected {
                presented_hash: hash("first"),
                detected_at: later,
            },
            SessionEvent::SessionEnded {
                reason: SessionEndReason::RefreshTokenReused,
                ended_at: later,
            },
        ]);
}

#[test]
fn revoking_for_reuse_needs_a_token_the_family_replaced() {
    let g = Given::new();
    TestFramework::<Session>::with(())
        .given(vec![g.started()])
        .when(SessionCommand::RevokeForReuse {
            presented_hash: hash("first"),
            at: g.at,
        })
        .then_expect_error(SessionError::RefreshTokenInvalid);
}

#[test]
fn keyframe_may_end_any_session_for_a_rule_the_api_checked() {
    let g = Given::new();
    TestFramework::<Session>::with(())
        .given(vec![g.started()])
        .when(SessionCommand::EndSession {
            requested_by: EndRequester::Authority,
            reason: SessionEndReason::UserSuspended,
            at: g.at,
        })
        .then_expect_events(vec![SessionEvent::SessionEnded {
            reason: SessionEndReason::UserSuspended,
            ended_at: g.at,
        }]);
}

#[test]
fn refreshing_after_the_token_expired_is_refused() {
    let g = Given::new();
    TestFramework::<Session>::with(())
        .given(vec![g.started()])
        .when(g.rotate("first", g.at + Duration::days(31)))
        .then_expect_error(SessionError::RefreshTokenExpired);
}

#[test]
fn refreshing_an_unknown_session_is_refused() {
    let g = Given::new();
    TestFramework::<Session>::with(())
        .given_no_previous_events()
        .when(g.rotate("first", g.at))
        .then_expect_error(SessionError::NotFound);
}

#[test]
fn refreshing_an_ended_session_is_refused() {
    let g = Given::new();
    TestFramework::<Session>::with(())
        .given(vec![g.started(), g.ended()])
        .when(g.rotate("first", g.at))
        .then_expect_error(SessionError::Ended);
}

#[test]
fn logging_out_ends_the_session() {
    let g = Given::new();
    TestFramework::<Session>::with(())
        .given(vec![g.started()])
        .when(SessionCommand::EndSession {
            requested_by: EndRequester::Owner(g.user_id),
            reason: SessionEndReason::Logout,
            at: g.at,
        })
        .then_expect_events(vec![g.ended()]);
}

#[test]
fn logging_out_twice_is_refused() {
    let g = Given::new();
    TestFramework::<Session>::with(())
        .given(vec![g.started(), g.ended()])
        .when(SessionCommand::EndSession {
            requested_by: EndRequester::Owner(g.user_id),
            reason: SessionEndReason::Logout,
            at: g.at,
        })
        .then_expect_error(SessionError::Ended);
}

#[test]
fn someone_else_cannot_end_a_session() {
    let g = Given::new();
    TestFramework::<Session>::with(())
        .given(vec![g.started()])
        .when(SessionCommand::EndSession {
            requested_by: EndRequester::Owner(UserId::new()),
            reason: SessionEndReason::Logout,
            at: g.at,
        })
        .then_expect_error(SessionError::NotFound);
}
