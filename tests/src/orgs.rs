//! Typed client steps for organisations: create one, invite, join from the mail, change roles.

use crate::{TestApp, TestUser};
use reqwest::Method;
use serde_json::{Value, json};

impl TestApp {
    /// `user` creates an organisation; answers its id.
    pub async fn create_org(&self, user: &TestUser, name: &str) -> String {
        let created = self
            .request(
                Method::POST,
                "/api/v1/orgs",
                Some(&user.access_token),
                Some(json!({ "name": name })),
            )
            .await;
        assert_eq!(created.status(), 201, "create organisation {name}");
        created.json::<Value>().await.expect("json")["id"]
            .as_str()
            .expect("id")
            .to_owned()
    }

    /// `inviter` invites `email` into `org` as `role`; answers the response.
    pub async fn invite(&self, inviter: &TestUser, org: &str, email: &str, role: &str) -> reqwest::Response {
        self.request(
            Method::POST,
            &format!("/api/v1/orgs/{org}/invitations"),
            Some(&inviter.access_token),
            Some(json!({ "email": email, "role": role })),
        )
        .await
    }

    /// The token of the `nth` (from 1) invitation mail sent to `email`.
    pub async fn invitation_token(&self, email: &str, nth: usize) -> String {
        self.mail.wait_for(email, "invited you to", nth).await.token()
    }

    /// `user` accepts the invitation `token`; answers the response.
    pub async fn accept(&self, user: &TestUser, token: &str) -> reqwest::Response {
        self.request(
            Method::POST,
            "/api/v1/invitations/accept",
            Some(&user.access_token),
            Some(json!({ "token": token })),
        )
        .await
    }

    /// Registers `email`, has `inviter` invite it into `org` as `role`, and accepts from the
    /// mail: answers the new member.
    pub async fn join_org(&self, inviter: &TestUser, org: &str, email: &str, role: &str) -> TestUser {
        let invited = self.invite(inviter, org, email, role).await;
        assert_eq!(invited.status(), 201, "invite {email}");
        let token = self.invitation_token(email, 1).await;
        let member = self.register_and_login(email).await;
        let accepted = self.accept(&member, &token).await;
        assert_eq!(accepted.status(), 200, "{email} accepts");
        member
    }

    /// `actor` sets `member`'s role in `org`; answers the response.
    pub async fn set_role(&self, actor: &TestUser, org: &str, member: &str, role: &str) -> reqwest::Response {
        self.request(
            Method::PATCH,
            &format!("/api/v1/orgs/{org}/members/{member}"),
            Some(&actor.access_token),
            Some(json!({ "role": role })),
        )
        .await
    }
}
