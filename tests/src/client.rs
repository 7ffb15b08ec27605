//! Typed client helpers: what a client of the API does, one method per step (register, log in,
//! create a project, upload a video, ...).

use crate::{TestApp, TestUser, wait_for};
use serde_json::{Value, json};
use std::time::Duration;

/// An HTTP client (after making ring the TLS provider, as every Keyframe process does).
pub fn http_client() -> reqwest::Client {
    keyframe_media::storage::install_tls_provider();
    reqwest::Client::new()
}

impl TestApp {
    /// `METHOD path` with an optional bearer token and JSON body.
    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> reqwest::Response {
        let mut request = self.http.request(method, format!("{}{path}", self.base_url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.expect("the request is answered")
    }

    /// `GET path` with a bearer token, read after `position` (`x-keyframe-min-position`).
    pub async fn get_after(&self, path: &str, token: &str, position: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.base_url))
            .bearer_auth(token)
            .header("x-keyframe-min-position", position)
            .send()
            .await
            .expect("the request is answered")
    }

    /// Proves `email` with the token from the newest verification mail sent to it.
    pub async fn verify_email(&self, email: &str) {
        const SUBJECT: &str = "Confirm your e-mail";
        let sent = self
            .mail
            .to(email)
            .iter()
            .filter(|mail| mail.subject.contains(SUBJECT))
            .count()
            .max(1);
        let mail = self.mail.wait_for(email, SUBJECT, sent).await;
        let verified = self
            .request(
                reqwest::Method::POST,
                "/api/v1/auth/verify-email",
                None,
                Some(json!({"token": mail.token()})),
            )
            .await;
        assert_eq!(verified.status(), 200, "verify {email}");
    }

    /// Waits until the `session_list` read model holds `count` sessions of `user_id`.
    pub async fn wait_for_sessions_projected(&self, user_id: &str, count: i64) {
        wait_for("the sessions in the read model", Duration::from_secs(10), || async {
            let user_id: uuid::Uuid = user_id.parse().expect("a user id");
            keyframe_database::portable!(self.db.database().reader(), pool => {
                sqlx::query_scalar::<_, i64>("SELECT count(*) FROM session_list WHERE user_id = $1")
                    .bind(user_id)
                    .fetch_one(pool)
                    .await
            })
            .expect("count")
                == count
        })
        .await;
    }

    /// Registers `email`, verifies it from the mail, and logs in.
    pub async fn register_and_login(&self, email: &str) -> TestUser {
        let password = "correct horse battery staple".to_owned();
        let registered = self
            .request(
                reqwest::Method::POST,
                "/api/v1/auth/register",
                None,
                Some(json!({"email": email, "password": password})),
            )
            .await;
        assert_eq!(registered.status(), 201, "register {email}");
        let body: Value = registered.json().await.expect("json");
        let id = body["user"]["id"].as_str().expect("user id").to_owned();
        self.verify_email(email).await;
        let login = self
            .request(
                reqwest::Method::POST,
                "/api/v1/auth/login",
                None,
                Some(json!({"email": email, "password": password})),
            )
            .await;
        assert_eq!(login.status(), 200, "login {email}");
        let tokens: Value = login.json().await.expect("json");
        TestUser {
            id,
            email: email.to_owned(),
            password,
            access_token: tokens["access_token"].as_str().expect("access token").to_owned(),
            refresh_token: tokens["refresh_token"].as_str().expect("refresh token").to_owned(),
        }
    }
}

impl TestApp {
    /// Creates a project of `user`'s; answers its id.
    pub async fn create_project(&self, user: &TestUser, name: &str) -> String {
        let created = self
            .request(
                reqwest::Method::POST,
                "/api/v1/projects",
                Some(&user.access_token),
                Some(json!({ "name": name })),
            )
            .await;
        assert_eq!(created.status(), reqwest::StatusCode::CREATED);
        created.json::<Value>().await.expect("json")["id"]
            .as_str()
            .expect("id")
            .to_owned()
    }

    /// Uploads the video at `path` into `project_id`; answers the asset.
    pub async fn upload_video(&self, user: &TestUser, project_id: &str, path: &std::path::Path) -> Value {
        let response = self
            .http
            .post(format!(
                "{}/api/v1/projects/{project_id}/assets?filename=clip.mp4",
                self.base_url
            ))
            .bearer_auth(&user.access_token)
            .header("content-type", "video/mp4")
            .body(std::fs::read(path).expect("video"))
            .send()
            .await
            .expect("answered");
        assert_eq!(response.status(), reqwest::StatusCode::CREATED);
        response.json().await.expect("json")
    }

    /// `GET path` as `user`, as JSON.
    pub async fn get_json(&self, user: &TestUser, path: &str) -> Value {
        let response = self
            .request(reqwest::Method::GET, path, Some(&user.access_token), None)
            .await;
        response.json().await.expect("json")
    }
}
