//! The lockout under pressure: however guesses arrive (back to back, in bursts, over several API
//! processes), at most the threshold of them is judged against the account's password per
//! window, every judged failure is on record, and a locked account lets nobody in.

use futures::future::join_all;
use keyframe_tests::{Sibling, TestApp, test_api_settings};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;

const PASSWORD: &str = "correct horse battery staple";
/// `KEYFRAME_LOCKOUT_THRESHOLD`'s default, which the tests run with.
const THRESHOLD: usize = 5;

/// `POST /api/v1/auth/login` at `base_url`: the status and the problem's code, if any.
async fn login(app: &TestApp, base_url: &str, email: &str, password: &str) -> (StatusCode, Option<String>) {
    let response = app
        .http
        .post(format!("{base_url}/api/v1/auth/login"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .expect("answered");
    let status = response.status();
    let body: Value = response.json().await.expect("a JSON body");
    (status, body["code"].as_str().map(str::to_owned))
}

/// How many events of `event_type` the account has.
async fn count_events(app: &TestApp, user_id: &str, event_type: &str) -> usize {
    app.db
        .all_events()
        .await
        .iter()
        .filter(|event| event.aggregate_id == user_id && event.event_type == event_type)
        .count()
}

fn wrong_guesses(count: usize) -> Vec<String> {
    (0..count).map(|guess| format!("wrong guess number {guess}")).collect()
}

fn refused(answer: &(StatusCode, Option<String>)) -> bool {
    answer.0 == StatusCode::UNAUTHORIZED && answer.1.as_deref() == Some("invalid_credentials")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_right_password_right_after_five_wrong_ones_is_refused_every_time() {
    let app = TestApp::spawn().await;
    for round in 0..10 {
        let email = format!("ada{round}@example.com");
        let ada = app.register_and_login(&email).await;
        for guess in 0..THRESHOLD {
            let answer = login(&app, &app.base_url, &email, &format!("wrong guess number {guess}")).await;
            assert!(refused(&answer), "round {round}, guess {guess}: {answer:?}");
        }
        let right = login(&app, &app.base_url, &email, PASSWORD).await;
        assert!(
            refused(&right),
            "round {round}: the fifth failure locked the account: {right:?}"
        );
        assert_eq!(
            count_events(&app, &ada.id, "LoginFailed").await,
            THRESHOLD,
            "round {round}"
        );
        assert_eq!(count_events(&app, &ada.id, "AccountLocked").await, 1, "round {round}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_of_forty_wrong_guesses_judges_five_against_the_password() {
    let app = TestApp::spawn().await;
    let ada = app.register_and_login("ada@example.com").await;
    let verified_before = app.passwords_verified();
    let passwords = wrong_guesses(40);
    let guesses = passwords
        .iter()
        .map(|password| login(&app, &app.base_url, &ada.email, password));
    let answers = join_all(guesses).await;
    assert!(answers.iter().all(refused), "{answers:?}");
    assert_eq!(app.passwords_verified() - verified_before, THRESHOLD as u64);
    assert_eq!(count_events(&app, &ada.id, "LoginFailed").await, THRESHOLD);
    assert_eq!(count_events(&app, &ada.id, "LoginAttemptAdmitted").await, THRESHOLD + 1);
    assert_eq!(count_events(&app, &ada.id, "AccountLocked").await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_burst_over_two_api_processes_judges_at_most_five_in_all() {
    if keyframe_tests::skipped_in_the_embedded_suite() {
        return;
    }
    let app = TestApp::spawn().await;
    let sibling: Sibling = app.sibling().settings(test_api_settings()).spawn().await;
    let ada = app.register_and_login("ada@example.com").await;
    let verified_before = app.passwords_verified() + sibling.passwords_verified();
    let passwords = wrong_guesses(40);
    let guesses = passwords.iter().enumerate().map(|(guess, password)| {
        let base_url = if guess % 2 == 0 {
            &app.base_url
        } else {
            &sibling.base_url
        };
        login(&app, base_url, &ada.email, password)
    });
    let answers = join_all(guesses).await;
    assert!(answers.iter().all(refused), "{answers:?}");
    let judged = app.passwords_verified() + sibling.passwords_verified() - verified_before;
    let failed = count_events(&app, &ada.id, "LoginFailed").await;
    assert!((1..=THRESHOLD as u64).contains(&judged), "{judged} guesses judged");
    assert_eq!(failed as u64, judged, "every judged failure is on record");
}

#[tokio::test(flavor = "multi_thread")]
async fn after_five_answered_failures_a_burst_holding_the_right_password_lets_nobody_in() {
    let app = TestApp::spawn().await;
    let ada = app.register_and_login("ada@example.com").await;
    for guess in 0..THRESHOLD {
        let answer = login(&app, &app.base_url, &ada.email, &format!("wrong guess {guess}")).await;
        assert!(refused(&answer));
    }
    let verified_before = app.passwords_verified();
    let burst = (0..20).map(|guess| {
        let password = if guess % 2 == 0 {
            PASSWORD
        } else {
            "another wrong guess"
        };
        login(&app, &app.base_url, &ada.email, password)
    });
    let answers = join_all(burst).await;
    assert!(answers.iter().all(refused), "{answers:?}");
    assert_eq!(app.passwords_verified(), verified_before, "nothing judged while locked");
    assert_eq!(count_events(&app, &ada.id, "LoginFailed").await, THRESHOLD);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_right_password_is_refused_until_the_lock_ends() {
    let mut settings = test_api_settings();
    settings.lockout.lock_for = chrono::Duration::seconds(2);
    let app = TestApp::builder()
        .components(vec![
            keyframe::config::Component::Api,
            keyframe::config::Component::Relay,
        ])
        .settings(settings)
        .spawn()
        .await;
    let ada = app.register_and_login("ada@example.com").await;
    for guess in 0..THRESHOLD {
        assert!(refused(
            &login(&app, &app.base_url, &ada.email, &format!("wrong guess {guess}")).await
        ));
    }
    let locked_at = std::time::Instant::now();
    let mut refusals = 0;
    loop {
        let answer = login(&app, &app.base_url, &ada.email, PASSWORD).await;
        if answer.0 == StatusCode::OK {
            break;
        }
        assert!(refused(&answer), "{answer:?}");
        refusals += 1;
        assert!(locked_at.elapsed() < Duration::from_secs(10), "the lock never ended");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(refusals > 0, "the right password was refused while locked");
    assert!(
        locked_at.elapsed() >= Duration::from_millis(1_500),
        "let in {:?} into a 2 s lock",
        locked_at.elapsed()
    );
}
