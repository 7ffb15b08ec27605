//! Job billing end to end: reservations in the request (real HTTP, real Postgres), and the
//! settlement process reading real JetStream, through redelivery and a restart.

use async_nats::HeaderMap;
use keyframe::config::Component;
use keyframe_billing::settlement::{
    RESERVATION_CONSUMER, SETTLEMENT_CONSUMER, SIGNUP_CONSUMER, Settlement, SettlementSettings,
};
use keyframe_domain::ledger::LedgerEvent;
use keyframe_eventlog::commands::CommandBus;
use keyframe_tests::{TestApp, TestUser, short_video, test_api_settings, wait_for};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// `user`'s ledger events, in order.
async fn ledger_events(app: &TestApp, user: &TestUser) -> Vec<LedgerEvent> {
    app.db
        .all_events()
        .await
        .iter()
        .filter(|event| event.aggregate_type == "CreditLedger" && event.aggregate_id == user.id)
        .map(|event| serde_json::from_str(event.payload.get()).expect("a ledger event"))
        .collect()
}

/// Folds the events the way an auditor would: (balance, reserved), checking that neither the
/// balance nor the available credits ever went below zero on the way.
fn audit(events: &[LedgerEvent]) -> (i64, i64) {
    let (mut balance, mut reserved) = (0, 0);
    for event in events {
        match event {
            LedgerEvent::CreditsGranted { amount, .. } | LedgerEvent::CreditsRefunded { amount, .. } => {
                balance += amount
            }
            LedgerEvent::CreditsReserved { amount, .. } => reserved += amount,
            LedgerEvent::CreditsSettled { charged, released, .. } => {
                balance -= charged;
                reserved -= charged + released;
            }
            LedgerEvent::CreditsReleased { amount, .. } => reserved -= amount,
        }
        assert!(balance >= 0 && balance - reserved >= 0, "went negative at {event:?}");
    }
    (balance, reserved)
}

async fn balance(app: &TestApp, user: &TestUser) -> (i64, i64, i64) {
    let body = app.get_json(user, "/api/v1/credits/balance").await;
    let field = |name: &str| body[name].as_i64().expect("a number");
    (field("balance"), field("reserved"), field("available"))
}

async fn request_analysis(app: &TestApp, user: &TestUser, project_id: &str, asset_id: &str) -> reqwest::Response {
    app.request(
        Method::POST,
        "/api/v1/jobs",
        Some(&user.access_token),
        Some(json!({"type": "analyze", "project_id": project_id, "asset_id": asset_id})),
    )
    .await
}

/// `POST /jobs/quote` for an analysis: what it would cost.
async fn quote_analysis(app: &TestApp, user: &TestUser, project_id: &str, asset_id: &str) -> Value {
    let answer = app
        .request(
            Method::POST,
            "/api/v1/jobs/quote",
            Some(&user.access_token),
            Some(json!({"type": "analyze", "project_id": project_id, "asset_id": asset_id})),
        )
        .await;
    assert_eq!(answer.status(), StatusCode::OK);
    answer.json().await.expect("json")
}

async fn post(app: &TestApp, user: &TestUser, path: &str) -> reqwest::Response {
    app.request(Method::POST, path, Some(&user.access_token), None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_requests_against_credit_for_fifty_make_exactly_fifty_jobs() {
    let mut settings = test_api_settings();
    settings.signup_bonus_credits = 50;
    let app = TestApp::builder()
        .components(vec![Component::Api, Component::Relay, Component::Projectors])
        .settings(settings)
        .spawn()
        .await;
    let user = app.register_and_login("many@example.com").await;
    let project_id = app.create_project(&user, "Batch").await;
    let asset = app.upload_video(&user, &project_id, &short_video()).await;
    let asset_id = asset["id"].as_str().expect("asset id").to_owned();

    let quote = quote_analysis(&app, &user, &project_id, &asset_id).await;
    assert_eq!(
        quote,
        json!({"cost_credits": 1, "available_credits": 50, "affordable": true})
    );

    let requests = (0..200).map(|_| request_analysis(&app, &user, &project_id, &asset_id));
    let answers = futures::future::join_all(requests).await;
    let (mut accepted, mut refused) = (BTreeSet::new(), 0);
    for answer in answers {
        match answer.status() {
            StatusCode::ACCEPTED => {
                let job: Value = answer.json().await.expect("json");
                assert_eq!(job["cost_credits"], 1);
                accepted.insert(job["id"].as_str().expect("id").to_owned());
            }
            StatusCode::PAYMENT_REQUIRED => {
                let problem: Value = answer.json().await.expect("json");
                assert_eq!(problem["code"], "insufficient_credits");
                refused += 1;
            }
            other => panic!("unexpected answer {other}: {}", answer.text().await.unwrap_or_default()),
        }
    }
    assert_eq!((accepted.len(), refused), (50, 150));
    assert_eq!(balance(&app, &user).await, (50, 50, 0));

    // Exactly the accepted jobs exist, each with exactly one reservation.
    let requested: BTreeSet<String> = app
        .db
        .all_events()
        .await
        .into_iter()
        .filter(|event| event.aggregate_type == "Job" && event.event_type == "JobRequested")
        .map(|event| event.aggregate_id)
        .collect();
    assert_eq!(requested, accepted);
    let events = ledger_events(&app, &user).await;
    let reserved_jobs: Vec<String> = events
        .iter()
        .filter_map(|event| match event {
            LedgerEvent::CreditsReserved { job_id, .. } => Some(job_id.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(reserved_jobs.len(), 50);
    assert_eq!(reserved_jobs.into_iter().collect::<BTreeSet<_>>(), accepted);
    assert_eq!(audit(&events), (50, 50), "the ledger's events sum to the balance");

    let quote = quote_analysis(&app, &user, &project_id, &asset_id).await;
    assert_eq!(
        quote,
        json!({"cost_credits": 1, "available_credits": 0, "affordable": false})
    );
}

/// The settlement process of the test's own, on the app's database and stream, granting the
/// same signup bonus as the app (as one deployment's processes share their configuration).
fn start_settlement(
    app: &TestApp,
    signup_bonus_credits: i64,
) -> (CancellationToken, tokio::task::JoinHandle<anyhow::Result<()>>) {
    let settings = SettlementSettings {
        signup_bonus_credits,
        ..SettlementSettings::default()
    };
    start_settlement_with(app, settings)
}

fn start_settlement_with(
    app: &TestApp,
    settings: SettlementSettings,
) -> (CancellationToken, tokio::task::JoinHandle<anyhow::Result<()>>) {
    let settlement = Settlement::new(
        std::sync::Arc::new(CommandBus::new(app.db.database().clone())),
        std::sync::Arc::new(CommandBus::new(app.db.database().clone()).cached(16)),
        app.nats().jetstream.clone(),
        app.nats().naming.clone(),
        settings,
    );
    let shutdown = CancellationToken::new();
    (shutdown.clone(), tokio::spawn(settlement.run(shutdown)))
}

/// Publishes `event_type` of aggregate `aggregate_id` to the stream again under a new message
/// id, as a redelivery would hand it over again.
async fn deliver_again(app: &TestApp, aggregate_id: &str, event_type: &str) {
    let (_, event) = app
        .nats()
        .stream_events()
        .await
        .into_iter()
        .find(|(_, event)| event.aggregate_id == aggregate_id && event.event_type == event_type)
        .expect("the event is in the stream");
    let mut headers = HeaderMap::new();
    headers.insert("Nats-Msg-Id", format!("again-{}", uuid::Uuid::now_v7()).as_str());
    app.nats()
        .jetstream
        .publish_with_headers(
            app.nats().naming.event_subject(&event),
            headers,
            serde_json::to_vec(&event).expect("json").into(),
        )
        .await
        .expect("published")
        .await
        .expect("stored");
}

/// Waits until consumer `name` has every message delivered and acked.
async fn wait_until_consumed(app: &TestApp, name: &str) {
    wait_for("every delivery to be acked", Duration::from_secs(30), || async {
        let mut consumer = app
            .nats()
            .jetstream
            .get_consumer_from_stream::<async_nats::jetstream::consumer::pull::Config, _, _>(
                name,
                app.nats().naming.events_stream(),
            )
            .await
            .expect("the consumer");
        let info = consumer.info().await.expect("info");
        info.num_pending == 0 && info.num_ack_pending == 0
    })
    .await;
}

fn count(events: &[LedgerEvent], kind: &str, job_id: &str) -> usize {
    events
        .iter()
        .filter(|event| match event {
            LedgerEvent::CreditsSettled { job_id: id, .. } => kind == "settled" && id.to_string() == job_id,
            LedgerEvent::CreditsReleased { job_id: id, .. } => kind == "released" && id.to_string() == job_id,
            _ => false,
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_run_is_settled_once_through_redelivery_and_a_restart() {
    if keyframe_tests::skipped_in_the_embedded_suite() {
        return;
    }
    let mut settings = test_api_settings();
    settings.signup_bonus_credits = 10;
    let app = TestApp::builder()
        .components(vec![
            Component::Api,
            Component::Relay,
            Component::Projectors,
            Component::Jobs,
        ])
        .settings(settings)
        .spawn()
        .await;
    let (stop_settlement, settlement) = start_settlement(&app, 10);
    let user = app.register_and_login("settle@example.com").await;
    let project_id = app.create_project(&user, "Settle").await;
    let asset = app.upload_video(&user, &project_id, &short_video()).await;
    let asset_id = asset["id"].as_str().expect("asset id").to_owned();

    // A job that succeeds on a real worker is charged its price.
    let worker = app.spawn_worker("w1").await;
    let succeeded: Value = request_analysis(&app, &user, &project_id, &asset_id)
        .await
        .json()
        .await
        .expect("json");
    let succeeded_id = succeeded["id"].as_str().expect("id").to_owned();
    assert_eq!(succeeded["cost_credits"], 1);
    wait_for("the success to be settled", Duration::from_secs(60), || async {
        balance(&app, &user).await == (9, 0, 9)
    })
    .await;
    worker.stop().await;
    let job = app.get_json(&user, &format!("/api/v1/jobs/{succeeded_id}")).await;
    assert_eq!(
        (job["status"].as_str(), job["cost_credits"].as_i64()),
        (Some("succeeded"), Some(1))
    );

    // A cancelled job gets its reservation back, and shows no cost.
    let cancelled: Value = request_analysis(&app, &user, &project_id, &asset_id)
        .await
        .json()
        .await
        .expect("json");
    let cancelled_id = cancelled["id"].as_str().expect("id").to_owned();
    let answer = post(&app, &user, &format!("/api/v1/jobs/{cancelled_id}/cancel")).await;
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(answer.json::<Value>().await.expect("json")["cost_credits"], 0);
    wait_for("the cancellation to be released", Duration::from_secs(20), || async {
        balance(&app, &user).await == (9, 0, 9)
    })
    .await;

    // The process stops. Meanwhile a third job is requested and cancelled, and both earlier
    // ends are delivered again.
    stop_settlement.cancel();
    settlement.await.expect("joined").expect("stopped cleanly");
    let late: Value = request_analysis(&app, &user, &project_id, &asset_id)
        .await
        .json()
        .await
        .expect("json");
    let late_id = late["id"].as_str().expect("id").to_owned();
    let answer = post(&app, &user, &format!("/api/v1/jobs/{late_id}/cancel")).await;
    assert_eq!(answer.status(), StatusCode::OK);
    deliver_again(&app, &succeeded_id, "JobSucceeded").await;
    deliver_again(&app, &cancelled_id, "JobCancelled").await;
    assert_eq!(balance(&app, &user).await, (9, 1, 8), "held while nothing settles");

    // A new process resumes from the durable consumer: the late cancellation is released, the
    // repeats change nothing.
    let (stop_settlement, settlement) = start_settlement(&app, 10);
    wait_for(
        "the late cancellation to be released",
        Duration::from_secs(20),
        || async { balance(&app, &user).await == (9, 0, 9) },
    )
    .await;
    wait_until_consumed(&app, SETTLEMENT_CONSUMER).await;

    // A manual retry is a new run: it reserves again, and its own cancellation releases it.
    let retried = post(&app, &user, &format!("/api/v1/jobs/{late_id}/retry")).await;
    assert_eq!(retried.status(), StatusCode::OK);
    assert_eq!(retried.json::<Value>().await.expect("json")["cost_credits"], 1);
    assert_eq!(balance(&app, &user).await, (9, 1, 8));
    let answer = post(&app, &user, &format!("/api/v1/jobs/{late_id}/cancel")).await;
    assert_eq!(answer.status(), StatusCode::OK);
    wait_for("the retried run to be released", Duration::from_secs(20), || async {
        balance(&app, &user).await == (9, 0, 9)
    })
    .await;
    stop_settlement.cancel();
    settlement.await.expect("joined").expect("stopped cleanly");

    let events = ledger_events(&app, &user).await;
    assert_eq!(count(&events, "settled", &succeeded_id), 1);
    assert_eq!(count(&events, "released", &succeeded_id), 0);
    assert_eq!(count(&events, "released", &cancelled_id), 1);
    assert_eq!(count(&events, "released", &late_id), 2, "one per run");
    assert_eq!(audit(&events), (9, 0));

    // The transactions list tells the runs apart.
    let runs_of_late = || async {
        let page = app.get_json(&user, "/api/v1/credits/transactions?limit=100").await;
        let mut movements: Vec<(String, i64)> = page["items"]
            .as_array()
            .expect("items")
            .iter()
            .filter(|item| item["job_id"] == late_id.as_str())
            .map(|item| {
                (
                    item["kind"].as_str().expect("kind").to_owned(),
                    item["run"].as_i64().expect("run"),
                )
            })
            .collect();
        movements.reverse();
        movements
    };
    let expected: Vec<(String, i64)> = [("reservation", 0), ("release", 0), ("reservation", 1), ("release", 1)]
        .map(|(kind, run)| (kind.to_owned(), run))
        .to_vec();
    wait_for(
        "the transactions to show both runs",
        Duration::from_secs(20),
        || async { runs_of_late().await == expected },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reservation_whose_job_never_appears_is_released_after_the_grace() {
    if keyframe_tests::skipped_in_the_embedded_suite() {
        return;
    }
    let mut settings = test_api_settings();
    settings.signup_bonus_credits = 10;
    let app = TestApp::builder()
        .components(vec![Component::Api, Component::Relay, Component::Projectors])
        .settings(settings)
        .spawn()
        .await;
    let user = app.register_and_login("orphan@example.com").await;
    let project_id = app.create_project(&user, "Orphans").await;
    let asset = app.upload_video(&user, &project_id, &short_video()).await;
    let asset_id = asset["id"].as_str().expect("asset id").to_owned();

    // A job requested as usual keeps its reservation...
    let kept = request_analysis(&app, &user, &project_id, &asset_id).await;
    assert_eq!(kept.status(), StatusCode::ACCEPTED);
    // ... and a reservation made by a request that stopped before recording its job (a
    // crash between the two steps) has no job at all.
    let orphan = reserve_for_a_job_never_recorded(&app, &user, 4).await;
    assert_eq!(balance(&app, &user).await, (10, 5, 5));

    let (stop, settlement) = start_settlement_with(
        &app,
        SettlementSettings {
            reservation_grace: Duration::from_secs(1),
            signup_bonus_credits: 10,
            ..SettlementSettings::default()
        },
    );
    wait_for(
        "the orphaned reservation to be released",
        Duration::from_secs(30),
        || async { balance(&app, &user).await == (10, 1, 9) },
    )
    .await;
    wait_until_consumed(&app, RESERVATION_CONSUMER).await;
    stop.cancel();
    settlement.await.expect("joined").expect("stopped cleanly");

    assert_eq!(
        balance(&app, &user).await,
        (10, 1, 9),
        "the recorded job keeps its credits"
    );
    assert_released_once_as_never_recorded(&app, &user, orphan).await;
}

/// A reservation of `amount` for a job that is never recorded: what a request that stopped
/// between its two steps (reserve, then record the job) leaves behind.
async fn reserve_for_a_job_never_recorded(app: &TestApp, user: &TestUser, amount: i64) -> keyframe_domain::ids::JobId {
    let owner_id = keyframe_domain::ids::UserId(user.id.parse().expect("uuid"));
    let orphan = keyframe_domain::ids::JobId::new();
    let ledgers: CommandBus<keyframe_domain::ledger::CreditLedger> = CommandBus::new(app.db.database().clone());
    ledgers
        .execute(
            &user.id,
            || keyframe_domain::ledger::LedgerCommand::Reserve {
                owner: keyframe_domain::owner::Owner::User(owner_id),
                job_id: orphan,
                run: 0,
                amount,
                member: None,
                at: chrono::Utc::now(),
            },
            &keyframe_eventlog::metadata::CommandMetadata::system(),
        )
        .await
        .expect("reserved");
    orphan
}

/// `orphan`'s reservation was released once, of 4 credits, saying why; nothing else was.
async fn assert_released_once_as_never_recorded(app: &TestApp, user: &TestUser, orphan: keyframe_domain::ids::JobId) {
    let events = ledger_events(app, user).await;
    let released: Vec<&LedgerEvent> = events
        .iter()
        .filter(|event| matches!(event, LedgerEvent::CreditsReleased { .. }))
        .collect();
    assert!(
        matches!(released.as_slice(), [LedgerEvent::CreditsReleased { job_id, reason, amount: 4, .. }]
            if *job_id == orphan && reason == "the job was never recorded"),
        "{released:?}"
    );
}

/// The same without NATS: the settlement of the process follows the log, holds its place at a
/// reservation still in its grace, and releases it when the grace is over.
#[tokio::test(flavor = "multi_thread")]
async fn the_in_process_settlement_releases_a_reservation_whose_job_never_appears_after_the_grace() {
    let mut settings = test_api_settings();
    settings.signup_bonus_credits = 10;
    let app = TestApp::builder()
        .embedded()
        .settings(settings)
        .reservation_grace(Duration::from_secs(1))
        .spawn()
        .await;
    let user = app.register_and_login("orphan@example.com").await;
    let project_id = app.create_project(&user, "Orphans").await;
    let asset = app.upload_video(&user, &project_id, &short_video()).await;
    let asset_id = asset["id"].as_str().expect("asset id").to_owned();
    // No worker runs: the recorded job stays queued, its credits held.
    let kept = request_analysis(&app, &user, &project_id, &asset_id).await;
    assert_eq!(kept.status(), StatusCode::ACCEPTED);
    let orphan = reserve_for_a_job_never_recorded(&app, &user, 4).await;
    wait_for(
        "the orphaned reservation to be released",
        Duration::from_secs(30),
        || async { balance(&app, &user).await == (10, 1, 9) },
    )
    .await;
    assert_released_once_as_never_recorded(&app, &user, orphan).await;
}

#[tokio::test]
async fn a_cached_ledger_sees_what_other_processes_appended_and_stays_right_after_a_refusal() {
    if keyframe_tests::skipped_in_the_embedded_suite() {
        return;
    }
    use keyframe_domain::ids::{JobId, UserId};
    use keyframe_domain::ledger::{CreditLedger, GrantSource, LedgerCommand, LedgerError};
    use keyframe_eventlog::commands::CommandError;
    use keyframe_eventlog::metadata::CommandMetadata;

    let db = keyframe_tests::TestDatabase::create().await;
    // Two processes: this one keeps ledgers in memory, the other does not.
    let here: CommandBus<CreditLedger> = CommandBus::new(db.database.clone()).cached(16);
    let elsewhere: CommandBus<CreditLedger> = CommandBus::new(db.database.clone());
    let owner_id = UserId::new();
    let id = owner_id.to_string();
    let meta = CommandMetadata::system();
    let grant = |amount| {
        move || LedgerCommand::Grant {
            owner: keyframe_domain::owner::Owner::User(owner_id),
            amount,
            source: GrantSource::SignupBonus,
            reason: "grant".to_owned(),
            at: chrono::Utc::now(),
        }
    };
    let admin_grant = |amount| {
        move || LedgerCommand::Grant {
            owner: keyframe_domain::owner::Owner::User(owner_id),
            amount,
            source: GrantSource::Admin { admin_id: owner_id },
            reason: "top-up".to_owned(),
            at: chrono::Utc::now(),
        }
    };
    let reserve = |job_id, amount| {
        move || LedgerCommand::Reserve {
            owner: keyframe_domain::owner::Owner::User(owner_id),
            job_id,
            run: 0,
            amount,
            member: None,
            at: chrono::Utc::now(),
        }
    };

    here.execute(&id, grant(10), &meta).await.expect("granted here");
    elsewhere
        .execute(&id, admin_grant(5), &meta)
        .await
        .expect("granted elsewhere");
    // Only a ledger that saw the other process's grant can reserve 15.
    here.execute(&id, reserve(JobId::new(), 15), &meta)
        .await
        .expect("reserved all 15");

    // Refused here: the ledger kept in memory stays as stored.
    let refused = here.execute(&id, reserve(JobId::new(), 1), &meta).await;
    assert!(
        matches!(
            refused,
            Err(CommandError::Rejected(LedgerError::InsufficientCredits {
                available: 0,
                required: 1
            }))
        ),
        "{refused:?}"
    );
    elsewhere
        .execute(&id, admin_grant(3), &meta)
        .await
        .expect("granted elsewhere");
    here.execute(&id, reserve(JobId::new(), 3), &meta)
        .await
        .expect("reserved the new 3");

    let stored = elsewhere.load(&id).await.expect("loaded").expect("a ledger");
    assert_eq!((stored.balance(), stored.reserved(), stored.available()), (18, 18, 0));
    let sequences: Vec<i64> = sqlx::query_scalar(
        "SELECT sequence FROM events WHERE aggregate_type = 'CreditLedger' AND aggregate_id = $1 ORDER BY sequence",
    )
    .bind(&id)
    .fetch_all(&db.pool)
    .await
    .expect("sequences");
    assert_eq!(sequences, [1, 2, 3, 4, 5], "one event per accepted command, in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_the_request_did_not_credit_gets_its_signup_bonus_from_the_settlement_once() {
    if keyframe_tests::skipped_in_the_embedded_suite() {
        return;
    }
    // The API grants no bonus here, as when its grant failed; the settlement process is the
    // safety net, and a restart of it grants nothing more.
    let mut settings = test_api_settings();
    settings.signup_bonus_credits = 0;
    let app = TestApp::builder()
        .components(vec![Component::Api, Component::Relay, Component::Projectors])
        .settings(settings)
        .spawn()
        .await;
    let user = app.register_and_login("late-bonus@example.com").await;
    assert_eq!(balance(&app, &user).await, (0, 0, 0));
    let bonus = SettlementSettings {
        signup_bonus_credits: 25,
        ..SettlementSettings::default()
    };
    let (stop, settlement) = start_settlement_with(&app, bonus.clone());
    wait_for("the bonus", Duration::from_secs(20), || async {
        balance(&app, &user).await == (25, 0, 25)
    })
    .await;
    stop.cancel();
    settlement.await.expect("joined").expect("stopped cleanly");
    deliver_again(&app, &user.id, "UserRegistered").await;
    let (stop, settlement) = start_settlement_with(&app, bonus);
    wait_until_consumed(&app, SIGNUP_CONSUMER).await;
    stop.cancel();
    settlement.await.expect("joined").expect("stopped cleanly");
    assert_eq!(balance(&app, &user).await, (25, 0, 25));
    assert_eq!(ledger_events(&app, &user).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_billing_part_of_serve_settles_beside_the_api_on_shared_ledgers() {
    if keyframe_tests::skipped_in_the_embedded_suite() {
        return;
    }
    let mut settings = test_api_settings();
    settings.signup_bonus_credits = 100;
    settings.billing.plans = "free:5,pro:1000:price_pro".parse().expect("plans");
    let app = TestApp::builder()
        .components(vec![
            Component::Api,
            Component::Relay,
            Component::Projectors,
            Component::Jobs,
            Component::Billing,
        ])
        .settings(settings)
        .spawn()
        .await;
    let user = app.register_and_login("serve@example.com").await;
    // The bonus in the request, the month's free allowance from the settlement's consumer of
    // registrations (the month's sweep, run at start, found no account yet).
    wait_for("the month's allowance", Duration::from_secs(20), || async {
        balance(&app, &user).await == (105, 0, 105)
    })
    .await;
    let project_id = app.create_project(&user, "Served").await;
    let asset = app.upload_video(&user, &project_id, &short_video()).await;
    let asset_id = asset["id"].as_str().expect("asset id").to_owned();
    let job: Value = request_analysis(&app, &user, &project_id, &asset_id)
        .await
        .json()
        .await
        .expect("json");
    let job_id = job["id"].as_str().expect("id").to_owned();
    let answer = post(&app, &user, &format!("/api/v1/jobs/{job_id}/cancel")).await;
    assert_eq!(answer.status(), StatusCode::OK);
    wait_for("the cancellation to be released", Duration::from_secs(20), || async {
        balance(&app, &user).await == (105, 0, 105)
    })
    .await;
    let events = ledger_events(&app, &user).await;
    assert_eq!(count(&events, "released", &job_id), 1);
    assert_eq!(audit(&events), (105, 0));
    assert_eq!(allowances_of(&app, &user).await.len(), 1);
}

/// Each allowance `user`'s ledger recorded, as (plan, period).
async fn allowances_of(app: &TestApp, user: &TestUser) -> Vec<(String, String)> {
    use keyframe_domain::ledger::GrantSource;
    ledger_events(app, user)
        .await
        .into_iter()
        .filter_map(|event| match event {
            LedgerEvent::CreditsGranted {
                source: GrantSource::Allowance { plan, period },
                ..
            } => Some((plan, period)),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_free_plan_grants_its_allowance_once_a_month_to_every_account_without_a_subscription() {
    if keyframe_tests::skipped_in_the_embedded_suite() {
        return;
    }
    use chrono::{Months, Utc};
    use keyframe_billing::allowance::Allowances;
    use keyframe_domain::ledger::allowance_period;
    use keyframe_domain::subscription::{StripeSubscriptionState, SubscriptionChange, SubscriptionCommand};
    use keyframe_eventlog::metadata::CommandMetadata;
    use std::sync::Arc;

    let mut settings = test_api_settings();
    settings.signup_bonus_credits = 0;
    settings.billing.plans = "free:30,pro:1000:price_pro".parse().expect("plans");
    let free_plan = settings.billing.plans.free().cloned();
    let app = TestApp::builder()
        .components(vec![Component::Api, Component::Relay, Component::Projectors])
        .settings(settings)
        .spawn()
        .await;
    let ledgers = Arc::new(CommandBus::new(app.db.database().clone()).cached(16));
    let subscriptions = Arc::new(CommandBus::new(app.db.database().clone()));
    let allowances = Arc::new(
        Allowances::new(
            app.db.database().clone(),
            ledgers.clone(),
            subscriptions.clone(),
            free_plan.clone(),
        )
        .expect("the free plan grants credits"),
    );
    let now = Utc::now();
    let this_month = allowance_period(now);

    // A new account gets its month's allowance from the settlement, with the signup bonus.
    let no_bonus = SettlementSettings {
        signup_bonus_credits: 0,
        free_plan,
        ..SettlementSettings::default()
    };
    let settlement = Settlement::new(
        Arc::new(CommandBus::new(app.db.database().clone())),
        ledgers.clone(),
        app.nats().jetstream.clone(),
        app.nats().naming.clone(),
        no_bonus,
    )
    .with_allowances(allowances.clone());
    let stop = CancellationToken::new();
    let running = tokio::spawn(settlement.run(stop.clone()));
    let alice = app.register_and_login("alice-free@example.com").await;
    wait_for("alice's allowance", Duration::from_secs(20), || async {
        balance(&app, &alice).await == (30, 0, 30)
    })
    .await;
    wait_until_consumed(&app, SIGNUP_CONSUMER).await;
    stop.cancel();
    running.await.expect("joined").expect("stopped cleanly");
    let current = app.get_json(&alice, "/api/v1/subscriptions/current").await;
    assert_eq!(current["plan"], "free");
    assert_eq!(current["monthly_credits"], 30);

    // Accounts the settlement did not see (it was stopped) are granted by the month's sweep;
    // one paying for a plan is not.
    let bob = app.register_and_login("bob-free@example.com").await;
    let carol = app.register_and_login("carol-pro@example.com").await;
    let carol_id: uuid::Uuid = carol.id.parse().expect("uuid");
    subscriptions
        .execute(
            &carol.id,
            || SubscriptionCommand {
                owner: keyframe_domain::owner::Owner::User(keyframe_domain::ids::UserId(carol_id)),
                stripe_event_id: "evt_carol_start".to_owned(),
                stripe_created: Utc::now(),
                change: SubscriptionChange::Started(StripeSubscriptionState {
                    subscription_id: "sub_carol".to_owned(),
                    customer_id: "cus_carol".to_owned(),
                    plan: "pro".to_owned(),
                    status: "active".to_owned(),
                    current_period_end: None,
                    cancel_at_period_end: false,
                }),
            },
            &CommandMetadata::system(),
        )
        .await
        .expect("carol subscribes");
    wait_for(
        "the directory to list the accounts",
        Duration::from_secs(20),
        || async {
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM user_directory")
                .fetch_one(&app.db.postgres().pool)
                .await
                .expect("count")
                == 3
        },
    )
    .await;
    // The sweep reads the accounts from the event store: an account directory being rebuilt
    // (or behind) hides nobody.
    sqlx::query("TRUNCATE user_directory")
        .execute(&app.db.postgres().pool)
        .await
        .expect("empty the directory");
    assert_eq!(
        allowances.sweep_due(now).await.expect("sweep"),
        2,
        "alice and bob hold it"
    );
    let month = |period: &str| vec![("free".to_owned(), period.to_owned())];
    assert_eq!(allowances_of(&app, &alice).await, month(&this_month));
    assert_eq!(allowances_of(&app, &bob).await, month(&this_month));
    assert!(allowances_of(&app, &carol).await.is_empty());
    assert_eq!(balance(&app, &bob).await, (30, 0, 30));

    // A finished month is not swept again; a sweep that stopped half way and starts over
    // grants nobody twice.
    assert_eq!(allowances.sweep_due(now).await.expect("sweep"), 0);
    sqlx::query("UPDATE allowance_sweeps SET last_account = NULL, finished_at = NULL")
        .execute(&app.db.postgres().pool)
        .await
        .expect("rewind");
    allowances.sweep_due(now).await.expect("sweep again");
    assert_eq!(allowances_of(&app, &alice).await, month(&this_month));
    assert_eq!(balance(&app, &alice).await, (30, 0, 30));

    // A month left unfinished long ago is finished first, for the accounts that existed then
    // (none of these); then the new month is granted.
    sqlx::query("INSERT INTO allowance_sweeps (period) VALUES ('2020-01')")
        .execute(&app.db.postgres().pool)
        .await
        .expect("an old month");
    let next_month = now.checked_add_months(Months::new(1)).expect("a date");
    assert_eq!(allowances.sweep_due(next_month).await.expect("sweep"), 2);
    let unfinished: i64 = sqlx::query_scalar("SELECT count(*) FROM allowance_sweeps WHERE finished_at IS NULL")
        .fetch_one(&app.db.postgres().pool)
        .await
        .expect("count");
    assert_eq!(unfinished, 0);
    let both = vec![
        ("free".to_owned(), this_month.clone()),
        ("free".to_owned(), allowance_period(next_month)),
    ];
    assert_eq!(allowances_of(&app, &alice).await, both);
    assert_eq!(allowances_of(&app, &bob).await, both);
    assert!(allowances_of(&app, &carol).await.is_empty());
    assert_eq!(balance(&app, &bob).await, (60, 0, 60));

    // Months the process was down for are granted when it is back.
    let later = now.checked_add_months(Months::new(3)).expect("a date");
    assert_eq!(
        allowances.sweep_due(later).await.expect("sweep"),
        4,
        "two months, two accounts"
    );
    assert_eq!(allowances_of(&app, &bob).await.len(), 4);
    assert!(allowances_of(&app, &carol).await.is_empty());
    let audit_of_bob = ledger_events(&app, &bob).await;
    assert_eq!(audit(&audit_of_bob), (120, 0));
    assert_eq!(balance(&app, &bob).await, (120, 0, 120));
}
