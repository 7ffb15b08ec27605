//! Videos end to end: uploads through the real HTTP API into real storage, analysis jobs run
//! by real workers with real ffmpeg over real NATS, followed live over Server-Sent Events.

use keyframe::config::Component;
use keyframe_tests::{TestApp, TestUser, collect_events, make_avi, make_video, test_api_settings, wait_for};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::Duration;

/// API, relay, projectors and the jobs coordinator.
async fn spawn(settings: keyframe_api::settings::ApiSettings) -> TestApp {
    TestApp::builder()
        .components(vec![
            Component::Api,
            Component::Relay,
            Component::Projectors,
            Component::Jobs,
        ])
        .settings(settings)
        .spawn()
        .await
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("keyframe-test-videos-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).expect("dir");
    dir.join(name)
}

/// 10 s at 320x240: colour bars 0-4 s, black 4-6 s, a test pattern 6-10 s; a tone throughout
/// except silence 7-9 s.
fn video_with_a_cut_a_black_gap_and_a_silence() -> PathBuf {
    let path = scratch("scenes.mp4");
    make_video(
        &path,
        &[
            "-f",
            "lavfi",
            "-i",
            "smptebars=s=320x240:r=25:d=4",
            "-f",
            "lavfi",
            "-i",
            "color=c=black:s=320x240:r=25:d=2",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=s=320x240:r=25:d=4",
            "-f",
            "lavfi",
            "-i",
            "sine=f=440:d=7:r=44100",
            "-f",
            "lavfi",
            "-i",
            "anullsrc=r=44100:cl=mono:d=2",
            "-f",
            "lavfi",
            "-i",
            "sine=f=660:d=1:r=44100",
            "-filter_complex",
            "[0:v][1:v][2:v]concat=n=3:v=1:a=0[v];[3:a][4:a][5:a]concat=n=3:v=0:a=1[a]",
            "-map",
            "[v]",
            "-map",
            "[a]",
        ],
    );
    path
}

/// A video long enough to still be analysing when a test acts on its running job.
fn long_video() -> PathBuf {
    let path = scratch("long.mp4");
    make_video(
        &path,
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=s=640x360:r=30:d=120",
            "-f",
            "lavfi",
            "-i",
            "sine=f=440:d=120:r=44100",
        ],
    );
    path
}

async fn upload_bytes(app: &TestApp, user: &TestUser, project_id: &str, bytes: Vec<u8>) -> reqwest::Response {
    app.http
        .post(format!(
            "{}/api/v1/projects/{project_id}/assets?filename=clip.mp4",
            app.base_url
        ))
        .bearer_auth(&user.access_token)
        .header("content-type", "video/mp4")
        .body(bytes)
        .send()
        .await
        .expect("answered")
}

async fn job(app: &TestApp, user: &TestUser, job_id: &str) -> Value {
    let response = app
        .request(
            Method::GET,
            &format!("/api/v1/jobs/{job_id}"),
            Some(&user.access_token),
            None,
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.expect("json")
}

async fn wait_for_status(app: &TestApp, user: &TestUser, job_id: &str, status: &str, deadline: Duration) -> Value {
    wait_for(&format!("job {job_id} {status}"), deadline, || async {
        job(app, user, job_id).await["status"] == status
    })
    .await;
    job(app, user, job_id).await
}

async fn analyze(app: &TestApp, user: &TestUser, project_id: &str, asset_id: &str, max_retries: u32) -> String {
    let response = app
        .request(
            Method::POST,
            "/api/v1/jobs",
            Some(&user.access_token),
            Some(
                json!({"type": "analyze", "project_id": project_id, "asset_id": asset_id, "max_retries": max_retries}),
            ),
        )
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let job: Value = response.json().await.expect("json");
    assert_eq!(job["status"], "queued");
    job["id"].as_str().expect("id").to_owned()
}

/// Reads a Server-Sent Event stream to its end: `(id, event, data)` per event.
async fn read_events(
    app: &TestApp,
    user: &TestUser,
    job_id: &str,
    last_event_id: Option<&str>,
) -> Vec<(String, String, Value)> {
    collect_events(open_events(app, user, job_id, last_event_id).await).await
}

async fn open_events(app: &TestApp, user: &TestUser, job_id: &str, last_event_id: Option<&str>) -> reqwest::Response {
    keyframe_tests::open_job_events(app, &user.access_token, job_id, last_event_id).await
}

fn near(actual: &Value, expected_ms: u64) -> bool {
    actual.as_u64().is_some_and(|ms| ms.abs_diff(expected_ms) <= 300)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_uploaded_video_is_analysed_and_the_analysis_finds_the_cuts_the_black_and_the_silence() {
    let app = spawn(test_api_settings()).await;
    let user = app.register_and_login("analyst@example.com").await;
    let project_id = app.create_project(&user, "Trailer").await;
    let video = video_with_a_cut_a_black_gap_and_a_silence();
    let asset = app.upload_video(&user, &project_id, &video).await;
    assert_eq!(asset["content_type"], "video/mp4");
    assert_eq!(asset["filename"], "clip.mp4");
    assert_eq!(asset["size_bytes"], std::fs::metadata(&video).expect("file").len());
    assert!(near(&asset["duration_ms"], 10_000), "{asset}");
    assert_eq!(
        (asset["width"].as_u64(), asset["height"].as_u64()),
        (Some(320), Some(240))
    );
    assert_eq!(asset["sha256"].as_str().map(str::len), Some(64));
    let asset_id = asset["id"].as_str().expect("id");

    let job_id = analyze(&app, &user, &project_id, asset_id, 2).await;
    // Follow it live from before any worker runs: every transition arrives, in order.
    let stream = open_events(&app, &user, &job_id, None).await;
    let worker = app.spawn_worker("w1").await;
    let events = collect_events(stream).await;
    let names: Vec<&str> = events.iter().map(|(_, event, _)| event.as_str()).collect();
    assert_eq!(names.first(), Some(&"snapshot"));
    assert_eq!(names.get(1), Some(&"JobStarted"), "{names:?}");
    assert_eq!(names.last(), Some(&"JobSucceeded"), "{names:?}");
    assert!(
        names
            .iter()
            .all(|n| ["snapshot", "JobStarted", "JobProgressed", "JobSucceeded"].contains(n)),
        "{names:?}"
    );
    let ids: Vec<i64> = events
        .iter()
        .map(|(id, _, _)| id.parse().expect("numeric id"))
        .collect();
    assert!(
        ids.windows(2).skip(1).all(|w| w[1] == w[0] + 1),
        "consecutive event ids: {ids:?}"
    );
    assert_eq!(
        events.last().map(|(_, _, data)| data["status"].clone()),
        Some(json!("succeeded"))
    );

    // Resuming after the start gives exactly what followed it.
    let resumed = read_events(&app, &user, &job_id, Some(&events[1].0)).await;
    assert_eq!(
        resumed
            .iter()
            .map(|(id, event, _)| (id.clone(), event.clone()))
            .collect::<Vec<_>>(),
        events[2..]
            .iter()
            .map(|(id, event, _)| (id.clone(), event.clone()))
            .collect::<Vec<_>>()
    );

    // Resuming after the last event of an ended job: 204, so an EventSource stops.
    let ended = app
        .http
        .get(format!("{}/api/v1/jobs/{job_id}/events", app.base_url))
        .bearer_auth(&user.access_token)
        .header(
            "last-event-id",
            events.last().map(|(id, _, _)| id.clone()).unwrap_or_default(),
        )
        .send()
        .await
        .expect("answered");
    assert_eq!(ended.status(), StatusCode::NO_CONTENT);

    let done = job(&app, &user, &job_id).await;
    assert_eq!(done["status"], "succeeded");
    assert_eq!(done["attempts"], 1);
    assert_eq!(done["progress"], 100);
    let result = &done["result"];
    let cuts: Vec<&Value> = result["scene_cuts"]
        .as_array()
        .expect("cuts")
        .iter()
        .map(|c| &c["at_ms"])
        .collect();
    assert!(cuts.iter().any(|at| near(at, 4_000)), "a cut at 4 s: {cuts:?}");
    assert!(cuts.iter().any(|at| near(at, 6_000)), "a cut at 6 s: {cuts:?}");
    let black = result["black_spans"].as_array().expect("black");
    assert!(
        black
            .iter()
            .any(|s| near(&s["start_ms"], 4_000) && near(&s["end_ms"], 6_000)),
        "black 4-6 s: {black:?}"
    );
    let silent = result["silent_spans"].as_array().expect("silence");
    assert!(
        silent
            .iter()
            .any(|s| near(&s["start_ms"], 7_000) && near(&s["end_ms"], 9_000)),
        "silence 7-9 s: {silent:?}"
    );
    assert!(
        result["loudness"]["integrated_lufs"]
            .as_f64()
            .is_some_and(|l| (-40.0..0.0).contains(&l))
    );
    assert_eq!(result["loudness"]["curve"].as_array().map(Vec::len), Some(10));
    let highlights = result["highlights"].as_array().expect("highlights");
    assert!(!highlights.is_empty());
    for highlight in highlights {
        let (start, end) = (
            highlight["start_ms"].as_u64().expect("start"),
            highlight["end_ms"].as_u64().expect("end"),
        );
        assert!(
            !(start >= 4_000 && end <= 6_000),
            "the black gap is no highlight: {highlight}"
        );
    }

    // Hard cuts only: no fade, no dissolve.
    assert_eq!(result["transitions"], json!([]), "{result}");

    // One thumbnail per shot that is not black: the bars and the test card. They are
    // downloadable JPEGs; another user sees none of it.
    let thumbnails = done["artifacts"].as_array().expect("artifacts");
    assert_eq!(thumbnails.len(), 2, "{thumbnails:?}");
    assert_eq!(
        result["thumbnails"],
        json!(["thumb-01.jpg", "thumb-02.jpg"]),
        "{result}"
    );
    let url = thumbnails[0]["url"].as_str().expect("url");
    let image = app.request(Method::GET, url, Some(&user.access_token), None).await;
    assert_eq!(image.status(), StatusCode::OK);
    assert_eq!(image.headers()["content-type"], "image/jpeg");
    assert!(image.bytes().await.expect("bytes").starts_with(&[0xFF, 0xD8]));
    let stranger = app.register_and_login("stranger@example.com").await;
    for path in [
        format!("/api/v1/jobs/{job_id}"),
        url.to_owned(),
        format!("/api/v1/jobs/{job_id}/events"),
    ] {
        let response = app
            .request(Method::GET, &path, Some(&stranger.access_token), None)
            .await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
    }

    // A clip job cuts the best highlight into a playable MP4.
    let clip = app
        .request(
            Method::POST,
            "/api/v1/jobs",
            Some(&user.access_token),
            Some(
                json!({"type": "clip", "project_id": project_id, "parameters": {"source_job_id": job_id, "count": 1}}),
            ),
        )
        .await;
    assert_eq!(clip.status(), StatusCode::ACCEPTED);
    let clip_id = clip.json::<Value>().await.expect("json")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let clip = wait_for_status(&app, &user, &clip_id, "succeeded", Duration::from_secs(60)).await;
    let artifact = &clip["artifacts"][0];
    assert_eq!(artifact["name"], "clip-01.mp4");
    let file = app
        .request(
            Method::GET,
            artifact["url"].as_str().expect("url"),
            Some(&user.access_token),
            None,
        )
        .await;
    assert_eq!(file.headers()["content-type"], "video/mp4");
    assert_eq!(&file.bytes().await.expect("bytes")[4..8], b"ftyp");

    // Lists, filters and statistics.
    wait_for("both jobs listed as succeeded", Duration::from_secs(10), || async {
        let list: Value = app.get_json(&user, "/api/v1/jobs?status=succeeded").await;
        list["items"].as_array().map(Vec::len) == Some(2)
    })
    .await;
    let clips: Value = app.get_json(&user, "/api/v1/jobs?type=clip").await;
    assert_eq!(clips["items"].as_array().map(Vec::len), Some(1));
    let stats: Value = app.get_json(&user, "/api/v1/jobs/stats").await;
    assert_eq!(stats["total"], 2);
    assert_eq!(stats["by_status"]["succeeded"], 2);
    assert_eq!(stats["by_type"]["analyze"], 1);
    assert!(stats["mean_run_ms"].as_f64().is_some_and(|ms| ms > 0.0), "{stats}");

    // A finished job can be deleted (its artifacts go), a second cancel is a conflict.
    let cancel = app
        .request(
            Method::POST,
            &format!("/api/v1/jobs/{clip_id}/cancel"),
            Some(&user.access_token),
            None,
        )
        .await;
    assert_eq!(cancel.status(), StatusCode::CONFLICT);
    assert_eq!(
        cancel.json::<Value>().await.expect("json")["code"],
        "job_not_cancellable"
    );
    let deleted = app
        .request(
            Method::DELETE,
            &format!("/api/v1/jobs/{clip_id}"),
            Some(&user.access_token),
            None,
        )
        .await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let gone = app
        .request(
            Method::GET,
            &format!("/api/v1/jobs/{clip_id}"),
            Some(&user.access_token),
            None,
        )
        .await;
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
    worker.stop().await;
}

/// Uploads in AVI, what many cameras and older tools write, are taken like the others: the
/// container is told by the bytes, served with AVI's media type, and analysed.
#[tokio::test(flavor = "multi_thread")]
async fn an_avi_upload_is_recognised_by_its_bytes_and_analysed() {
    let app = spawn(test_api_settings()).await;
    let user = app.register_and_login("camera@example.com").await;
    let project_id = app.create_project(&user, "Old camera").await;
    let video = scratch("camera.avi");
    make_avi(
        &video,
        &[
            "-f",
            "lavfi",
            "-i",
            "smptebars=s=320x240:r=25:d=3",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=s=320x240:r=25:d=3",
            "-f",
            "lavfi",
            "-i",
            "sine=f=440:d=6:r=44100",
            "-filter_complex",
            "[0:v][1:v]concat=n=2:v=1:a=0[v]",
            "-map",
            "[v]",
            "-map",
            "2:a",
        ],
    );
    assert_eq!(&std::fs::read(&video).expect("file")[8..12], b"AVI ");
    // The client's name and media type say MP4; the bytes say AVI, and the bytes win.
    let asset = app.upload_video(&user, &project_id, &video).await;
    assert_eq!(asset["content_type"], "video/x-msvideo", "{asset}");
    assert!(near(&asset["duration_ms"], 6_000), "{asset}");
    let asset_id = asset["id"].as_str().expect("id");

    let job_id = analyze(&app, &user, &project_id, asset_id, 0).await;
    let _worker = app.spawn_worker("w1").await;
    let done = wait_for_status(&app, &user, &job_id, "succeeded", Duration::from_secs(60)).await;
    let cuts: Vec<&Value> = done["result"]["scene_cuts"]
        .as_array()
        .expect("cuts")
        .iter()
        .map(|cut| &cut["at_ms"])
        .collect();
    assert!(cuts.iter().any(|at| near(at, 3_000)), "the cut at 3 s: {done}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_uploads_are_refused_cleanly_and_leave_nothing_stored() {
    let mut settings = test_api_settings();
    settings.max_upload_bytes = 200 * 1024;
    let app = spawn(settings).await;
    let user = app.register_and_login("uploader@example.com").await;
    let project_id = app.create_project(&user, "Trailer").await;

    let text = upload_bytes(
        &app,
        &user,
        &project_id,
        b"just some notes, renamed to .mp4\n".repeat(20),
    )
    .await;
    assert_eq!(text.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(text.json::<Value>().await.expect("json")["code"], "unsupported_media");
    // A file shorter than the bytes the checks look at, in a form: the part ends before they
    // have seen enough, and the answer is the same (it once was a 500: the part's stream was
    // read again after its end).
    let webp = b"RIFF\x1a\x00\x00\x00WEBPVP8L\x0e\x00\x00\x00/\x00\x00\x00".to_vec();
    let form =
        reqwest::multipart::Form::new().part("file", reqwest::multipart::Part::bytes(webp).file_name("file.webp"));
    let short = app
        .http
        .post(format!("{}/api/v1/projects/{project_id}/assets", app.base_url))
        .bearer_auth(&user.access_token)
        .multipart(form)
        .send()
        .await
        .expect("answered");
    assert_eq!(short.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

    // Without faststart the index is at the end: half the file has none.
    let whole = scratch("whole.mp4");
    make_video(
        &whole,
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=s=160x120:r=25:d=3",
            "-f",
            "lavfi",
            "-i",
            "sine=d=3",
        ],
    );
    let mut truncated = std::fs::read(&whole).expect("video");
    truncated.truncate(truncated.len() / 2);
    let broken = upload_bytes(&app, &user, &project_id, truncated).await;
    assert_eq!(broken.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let problem: Value = broken.json().await.expect("json");
    assert_eq!(problem["code"], "invalid_video");
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("could not be read")),
        "{problem}"
    );

    let big = scratch("big.mp4");
    make_video(
        &big,
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=s=640x480:r=25:d=6",
            "-f",
            "lavfi",
            "-i",
            "sine=d=6",
            "-b:v",
            "2M",
        ],
    );
    let bytes = std::fs::read(&big).expect("video");
    assert!(bytes.len() > 200 * 1024, "the big video is big: {}", bytes.len());
    let declared = upload_bytes(&app, &user, &project_id, bytes.clone()).await;
    assert_eq!(declared.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(declared.json::<Value>().await.expect("json")["code"], "too_large");
    // Streamed without a length: refused once the limit is passed.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = bytes.chunks(16 * 1024).map(|c| Ok(c.to_vec())).collect();
    let streamed = app
        .http
        .post(format!("{}/api/v1/projects/{project_id}/assets", app.base_url))
        .bearer_auth(&user.access_token)
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .expect("answered");
    assert_eq!(streamed.status(), StatusCode::PAYLOAD_TOO_LARGE);

    let audio_only = scratch("tone.mkv");
    let status = std::process::Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "sine=d=2",
        ])
        .arg(&audio_only)
        .status()
        .expect("ffmpeg");
    assert!(status.success());
    let no_video = upload_bytes(&app, &user, &project_id, std::fs::read(&audio_only).expect("audio")).await;
    assert_eq!(no_video.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(no_video.json::<Value>().await.expect("json")["code"], "invalid_video");

    assert_eq!(app.stored_files(), Vec::<PathBuf>::new(), "nothing stays in storage");
    let other = app.register_and_login("other@example.com").await;
    let foreign = upload_bytes(&app, &other, &project_id, std::fs::read(&whole).expect("video")).await;
    assert_eq!(
        foreign.status(),
        StatusCode::NOT_FOUND,
        "another user's project does not exist"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_uploads_cannot_overshoot_the_quota_and_deleting_a_project_frees_it() {
    let video = scratch("small.mp4");
    make_video(
        &video,
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=s=160x120:r=25:d=2",
            "-f",
            "lavfi",
            "-i",
            "sine=d=2",
        ],
    );
    let bytes = std::fs::read(&video).expect("video");
    let mut settings = test_api_settings();
    settings.storage_quota_bytes = bytes.len() as u64 * 5 / 2;
    let app = spawn(settings).await;
    let user = app.register_and_login("quota@example.com").await;
    let project_id = app.create_project(&user, "Trailer").await;

    let uploads = (0..6).map(|_| upload_bytes(&app, &user, &project_id, bytes.clone()));
    let answers = futures::future::join_all(uploads).await;
    let mut created = 0;
    for answer in answers {
        match answer.status() {
            StatusCode::CREATED => created += 1,
            StatusCode::PAYLOAD_TOO_LARGE => {
                assert_eq!(answer.json::<Value>().await.expect("json")["code"], "quota_exceeded");
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(created, 2, "two videos fit, whatever the interleaving");
    assert_eq!(app.stored_files().len(), 2);

    let deleted = app
        .request(
            Method::DELETE,
            &format!("/api/v1/projects/{project_id}"),
            Some(&user.access_token),
            None,
        )
        .await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.stored_files().len(), 0, "the deleted project's videos are gone");
    let fresh = app.create_project(&user, "Trailer").await;
    app.upload_video(&user, &fresh, &video).await;
    // The same as a browser form sends it: multipart, the name from the part.
    let form = reqwest::multipart::Form::new().text("note", "ignored").part(
        "file",
        reqwest::multipart::Part::bytes(bytes.clone()).file_name("holiday/beach.mp4"),
    );
    let multipart = app
        .http
        .post(format!("{}/api/v1/projects/{fresh}/assets", app.base_url))
        .bearer_auth(&user.access_token)
        .multipart(form)
        .send()
        .await
        .expect("answered");
    assert_eq!(multipart.status(), StatusCode::CREATED);
    let asset: Value = multipart.json().await.expect("json");
    assert_eq!(asset["filename"], "beach.mp4");
    assert_eq!(asset["size_bytes"], bytes.len());
    assert_eq!(app.stored_files().len(), 2);
}

/// Whether an ffmpeg is working on something under `marker` (the user's storage folder).
fn ffmpeg_running_on(marker: &str) -> bool {
    let output = std::process::Command::new("pgrep")
        .args(["-f", &format!("ffmpeg.*{marker}")])
        .output();
    output.is_ok_and(|o| !o.stdout.is_empty())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_workers_job_finishes_on_another_worker_and_cancel_stops_a_running_ffmpeg() {
    let app = spawn(test_api_settings()).await;
    let user = app.register_and_login("resilient@example.com").await;
    let user_id = user.id.clone();
    let project_id = app.create_project(&user, "Trailer").await;
    let asset = app.upload_video(&user, &project_id, &long_video()).await;
    let asset_id = asset["id"].as_str().expect("id");

    let job_id = analyze(&app, &user, &project_id, asset_id, 2).await;
    let doomed = app.spawn_worker("doomed").await;
    wait_for_status(&app, &user, &job_id, "running", Duration::from_secs(30)).await;
    wait_for("ffmpeg at work", Duration::from_secs(10), || async {
        ffmpeg_running_on(&user_id)
    })
    .await;
    doomed.kill().await;
    wait_for(
        "the killed worker's ffmpeg dies with it",
        Duration::from_secs(5),
        || async { !ffmpeg_running_on(&user_id) },
    )
    .await;
    let survivor = app.spawn_worker("survivor").await;
    let done = wait_for_status(&app, &user, &job_id, "succeeded", Duration::from_secs(120)).await;
    assert_eq!(done["attempts"], 2, "the lost attempt counts");

    // Cancel while ffmpeg runs: it is stopped within two seconds.
    let job_id = analyze(&app, &user, &project_id, asset_id, 2).await;
    wait_for_status(&app, &user, &job_id, "running", Duration::from_secs(30)).await;
    wait_for("ffmpeg at work", Duration::from_secs(10), || async {
        ffmpeg_running_on(&user_id)
    })
    .await;
    let cancelled = app
        .request(
            Method::POST,
            &format!("/api/v1/jobs/{job_id}/cancel"),
            Some(&user.access_token),
            None,
        )
        .await;
    assert_eq!(cancelled.status(), StatusCode::OK);
    assert_eq!(cancelled.json::<Value>().await.expect("json")["status"], "cancelled");
    let asked = tokio::time::Instant::now();
    wait_for("ffmpeg stopped after cancel", Duration::from_secs(2), || async {
        !ffmpeg_running_on(&user_id)
    })
    .await;
    eprintln!("ffmpeg stopped {} ms after the cancel", asked.elapsed().as_millis());
    let retry = app
        .request(
            Method::POST,
            &format!("/api/v1/jobs/{job_id}/retry"),
            Some(&user.access_token),
            None,
        )
        .await;
    assert_eq!(retry.status(), StatusCode::OK);
    let running_retry = app
        .request(
            Method::POST,
            &format!("/api/v1/jobs/{job_id}/retry"),
            Some(&user.access_token),
            None,
        )
        .await;
    assert_eq!(running_retry.status(), StatusCode::CONFLICT);
    survivor.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupt_video_fails_its_job_with_a_readable_reason_after_the_retries() {
    let app = spawn(test_api_settings()).await;
    let user = app.register_and_login("unlucky@example.com").await;
    let project_id = app.create_project(&user, "Trailer").await;
    let asset = app
        .upload_video(&user, &project_id, &video_with_a_cut_a_black_gap_and_a_silence())
        .await;
    let asset_id = asset["id"].as_str().expect("id").to_owned();
    // The stored bytes rot after the upload.
    for file in app.stored_files() {
        std::fs::write(&file, vec![0u8; 4096]).expect("corrupt");
    }
    let worker = app.spawn_worker("w1").await;
    let job_id = analyze(&app, &user, &project_id, &asset_id, 1).await;
    let failed = wait_for_status(&app, &user, &job_id, "failed", Duration::from_secs(60)).await;
    assert_eq!(failed["attempts"], 2, "one try and one retry");
    let reason = failed["error"].as_str().expect("a reason");
    assert!(reason.contains("could not be read"), "{reason}");
    worker.stop().await;
}
