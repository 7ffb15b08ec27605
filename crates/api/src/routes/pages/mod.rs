//! The pages the mailed links open, served as plain HTML: `/verify-email` confirms an
//! address, `/reset-password` sets a new password, `/invitations` shows an invitation to an
//! organisation and how to accept it.
//!
//! A GET only shows a form; the token is spent by the POST that form sends. Mail scanners open
//! the links in a mail to check them, and a GET that spent the token would use it up before the
//! person did. The work itself is the same use cases' as the JSON API's
//! (`POST /api/v1/auth/verify-email` and `POST /api/v1/auth/password-reset/confirm`, in
//! `keyframe_app::accounts`): these handlers call them and word their answers as a page. No
//! JavaScript and nothing fetched from anywhere: every page forbids all but its own inline
//! style and forms posting back here, and sends no `Referer`, since the token is in the URL. These
//! pages are not part of the JSON API, nor of its OpenAPI document.

use crate::context::{RequestContext, current_request_id};
use crate::error::{ApiError, Code};
use crate::limits::{RATELIMIT, RATELIMIT_POLICY};
use crate::state::AppState;
use axum::Router;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Form, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use keyframe_app::opaque_tokens::opaque_token_owner;
use keyframe_eventlog::metadata::Actor;
use serde::Deserialize;

mod html;

use html::{Page, PageForm, html};

/// Where the verification mail's link points (the path `crate::mail` writes into the mail).
const VERIFY_PATH: &str = "/verify-email";
/// Where the reset mail's link points.
const RESET_PATH: &str = "/reset-password";
/// Where an invitation mail's link points.
const INVITATION_PATH: &str = "/invitations";
/// The JSON endpoint that accepts an invitation.
const ACCEPT_INVITATION: &str = "POST /api/v1/invitations/accept";

/// Only the page's own inline style, forms that post back here, no framing, no `<base>`.
const CONTENT_SECURITY_POLICY: &str =
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Longer than any token Keyframe mails (about 80 characters) by far: anything longer is not
/// one of ours, and is not worth echoing into a page.
const MAX_TOKEN_LEN: usize = 256;

/// The JSON endpoint that mails a new verification link, named where a link no longer works.
const RESEND_VERIFICATION: &str = "POST /api/v1/auth/resend-verification";
/// The JSON endpoint that mails a new reset link.
const REQUEST_RESET: &str = "POST /api/v1/auth/password-reset/request";

/// The pages. The POSTs spend tokens without a session, so they count against the client's
/// address (the `auth-ip` limit) like their JSON twins; the GETs do no work and are not counted.
pub(crate) fn router(state: AppState) -> Router<AppState> {
    let links = Router::new()
        .route(VERIFY_PATH, get(show_verification))
        .route(RESET_PATH, get(show_reset))
        .route(INVITATION_PATH, get(show_invitation));
    let submissions = Router::new()
        .route(VERIFY_PATH, post(verify))
        .route(RESET_PATH, post(reset))
        .route_layer(axum::middleware::from_fn_with_state(state, limit_submissions));
    links.merge(submissions)
}

/// The query of a mailed link. Other parameters (a mail tracker's `utm_*`) are ignored.
#[derive(Deserialize)]
struct LinkQuery {
    #[serde(default)]
    token: String,
}

/// The confirmation form. A missing field reads as empty, and is answered as such.
#[derive(Deserialize)]
struct VerifyForm {
    #[serde(default)]
    token: String,
}

/// The new-password form. No `Debug`: it holds a password, which must never reach a log.
#[derive(Deserialize)]
struct ResetForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    new_password: String,
}

/// `GET /verify-email?token=`: asks to confirm; the token stays unspent.
async fn show_verification(query: Result<Query<LinkQuery>, QueryRejection>) -> Response {
    match link_token(query) {
        Some(token) => html(StatusCode::OK, &verification_form(token)),
        None => incomplete_link(),
    }
}

/// `POST /verify-email`: confirms the address, as `POST /api/v1/auth/verify-email` does.
async fn verify(
    State(state): State<AppState>,
    context: RequestContext,
    form: Result<Form<VerifyForm>, FormRejection>,
) -> Response {
    let token = match form {
        Ok(Form(form)) => form.token.trim().to_owned(),
        Err(rejection) => return unreadable_form(&rejection),
    };
    if !could_be_token(&token) {
        return incomplete_link();
    }
    let verified = state
        .app
        .verify_email(&token, &context.metadata(Actor::Anonymous))
        .await;
    let error = match verified.map_err(ApiError::from) {
        Ok(_) => {
            return html(
                StatusCode::OK,
                &Page::text(
                    "Address confirmed",
                    [
                        "Thank you: your e-mail address is confirmed. You can now log in to Keyframe.",
                        "You can close this page.",
                    ],
                ),
            );
        }
        Err(error) => error,
    };
    let (status, code) = error.status_and_code();
    match code {
        // The domain cannot tell a used link from an unknown one (a used token is simply no
        // longer pending), so the page covers both, the likely one first.
        Code::InvalidToken => html(
            status,
            &Page::text(
                "This link no longer works",
                [
                    "This confirmation link was already used, or a newer mail replaced it.".to_owned(),
                    "If you already confirmed your address, there is nothing more to do: you can log in.".to_owned(),
                    format!(
                        "Otherwise, ask for a new link ({RESEND_VERIFICATION} with your e-mail address) \
                         and open the newest mail."
                    ),
                ],
            ),
        ),
        Code::TokenExpired => html(
            status,
            &Page::text(
                "This link has expired",
                [
                    "Confirmation links work for a limited time, and this one's time has passed.".to_owned(),
                    format!(
                        "Ask for a new link ({RESEND_VERIFICATION} with your e-mail address) and open it \
                         soon after it arrives."
                    ),
                ],
            ),
        ),
        Code::AlreadyVerified => html(
            status,
            &Page::text(
                "Address already confirmed",
                [
                    "Good news: this e-mail address is already confirmed. There is nothing more to do; \
                     you can log in to Keyframe.",
                ],
            ),
        ),
        _ => trouble_page(error),
    }
}

/// `GET /invitations?token=`: what the invitation offers and how to accept it. Accepting needs
/// the invited person logged in, so this page only shows; whatever became of the invitation
/// (used, revoked, replaced, expired, or a mistyped link) it says so, never a bare 404.
async fn show_invitation(State(state): State<AppState>, query: Result<Query<LinkQuery>, QueryRejection>) -> Response {
    let Some(token) = link_token(query) else {
        return incomplete_link();
    };
    let preview = match state.app.preview_invitation(&token).await {
        Ok(preview) => preview,
        Err(error) => return trouble_page(error.into()),
    };
    let Some(preview) = preview else {
        return html(
            StatusCode::OK,
            &Page::text(
                "This invitation link does not work",
                [
                    "No invitation has this link: part of it may be missing, or the organisation was deleted.",
                    "Open the link from the mail again, or ask whoever invited you to send a new invitation.",
                ],
            ),
        );
    };
    let offer = format!(
        "{} invited {} to join the organisation \"{}\" on Keyframe as {}.",
        preview.invited_by,
        preview.email,
        preview.organization_name,
        preview.role.as_str()
    );
    let page = match preview.usable {
        Ok(()) => Page {
            heading: "You are invited",
            paragraphs: vec![
                offer,
                format!(
                    "To accept, log in to Keyframe with {} (its address must be verified) and send this \
                     token to {ACCEPT_INVITATION}: {token}",
                    preview.email
                ),
                format!(
                    "The invitation works once, until {} (UTC). If you do not want to join, ignore it.",
                    preview.expires_at.format("%Y-%m-%d %H:%M")
                ),
            ],
            form: None,
        },
        Err(why) => Page {
            heading: "This invitation can no longer be accepted",
            paragraphs: vec![offer, sentence(&why.to_string())],
            form: None,
        },
    };
    html(StatusCode::OK, &page)
}

/// `GET /reset-password?token=`: the new-password form; the token stays unspent.
async fn show_reset(query: Result<Query<LinkQuery>, QueryRejection>) -> Response {
    match link_token(query) {
        Some(token) => html(StatusCode::OK, &reset_form(token, Vec::new())),
        None => incomplete_link(),
    }
}

/// `POST /reset-password`: sets the password, as `POST /api/v1/auth/password-reset/confirm`
/// does (every session of the account ends). A refused password shows the form again.
async fn reset(
    State(state): State<AppState>,
    context: RequestContext,
    form: Result<Form<ResetForm>, FormRejection>,
) -> Response {
    let (token, new_password) = match form {
        Ok(Form(form)) => (form.token.trim().to_owned(), form.new_password),
        Err(rejection) => return unreadable_form(&rejection),
    };
    if !could_be_token(&token) {
        return incomplete_link();
    }
    let reset = state
        .app
        .reset_password(&token, &new_password, &context.metadata(Actor::Anonymous))
        .await;
    let error = match reset.map_err(ApiError::from) {
        Ok(_) => {
            return html(
                StatusCode::OK,
                &Page::text(
                    "Password changed",
                    ["Password changed. Every session of this account was ended; log in again with the new password."],
                ),
            );
        }
        Err(error) => error,
    };
    let (status, code) = error.status_and_code();
    match (error, code) {
        // The policy's reasons; the token is still unspent, so the same form can try again.
        (ApiError::Validation(problems), _) => {
            let reasons = problems
                .into_iter()
                .map(|problem| sentence(&format!("the new password {}", problem.message)))
                .collect();
            html(status, &reset_form(token, reasons))
        }
        (_, Code::InvalidToken) => html(
            status,
            &Page::text(
                "This link no longer works",
                [
                    "This reset link was already used, or a newer one replaced it, or the password was \
                     changed since it was sent."
                        .to_owned(),
                    format!(
                        "To set a new password, ask for a new link ({REQUEST_RESET} with your e-mail \
                         address) and use the newest mail."
                    ),
                ],
            ),
        ),
        (_, Code::TokenExpired) => html(
            status,
            &Page::text(
                "This link has expired",
                [
                    "Reset links work for a limited time, and this one's time has passed. Your password \
                     is unchanged."
                        .to_owned(),
                    format!(
                        "Ask for a new link ({REQUEST_RESET} with your e-mail address) and use it soon \
                         after it arrives."
                    ),
                ],
            ),
        ),
        (error, _) => trouble_page(error),
    }
}

/// Counts a submission against the client's address under the same `auth-ip` policy and key as
/// [`crate::throttle::limit_by_client_address`], but refuses with a page instead of JSON.
async fn limit_submissions(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if let Err(refused) = crate::throttle::count_client_address(&state, &request) {
        return trouble_page(refused);
    }
    next.run(request).await
}

/// The token of a link, when it has one that could be ours.
fn link_token(query: Result<Query<LinkQuery>, QueryRejection>) -> Option<String> {
    let Ok(Query(LinkQuery { token })) = query else {
        return None;
    };
    let token = token.trim();
    could_be_token(token).then(|| token.to_owned())
}

/// Whether `token` has the shape of one Keyframe mails (`<owner id>.<secret>`) and a sane
/// length. Whether it is the account's pending one is the command's to say.
fn could_be_token(token: &str) -> bool {
    token.len() <= MAX_TOKEN_LEN && opaque_token_owner(token).is_some()
}

/// The page a link opens to verify an address.
fn verification_form(token: String) -> Page {
    Page {
        heading: "Confirm your e-mail address",
        paragraphs: vec![
            "You are about to confirm the e-mail address of your Keyframe account.".to_owned(),
            "Press the button to finish.".to_owned(),
        ],
        form: Some(PageForm::ConfirmAddress { token }),
    }
}

/// The page a reset link opens, with the reasons the last password was refused, if it was.
fn reset_form(token: String, refused: Vec<String>) -> Page {
    Page {
        heading: "Choose a new password",
        paragraphs: vec![
            "Choose a new password for your Keyframe account.".to_owned(),
            "Setting it ends every session of the account: you then log in again, everywhere, with \
             the new password."
                .to_owned(),
        ],
        form: Some(PageForm::NewPassword { token, refused }),
    }
}

/// A link without its token, or with only part of it (mail programs split long lines).
fn incomplete_link() -> Response {
    html(
        StatusCode::BAD_REQUEST,
        &Page::text(
            "This link is incomplete",
            [
                "The link is missing its token, or part of it.",
                "Open the link from the mail again. If your mail program split it over two lines, copy \
                 the whole link into the address bar.",
            ],
        ),
    )
}

/// A body that is not the form these pages send: never a 500.
fn unreadable_form(rejection: &FormRejection) -> Response {
    let status = if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        StatusCode::PAYLOAD_TOO_LARGE
    } else {
        StatusCode::BAD_REQUEST
    };
    html(
        status,
        &Page::text(
            "The form could not be read",
            [
                "What the browser sent is not the form this page expects.",
                "Open the link from the mail again and send the form from there.",
            ],
        ),
    )
}

/// Any other failure, as a page with the problem's own status.
fn trouble_page(error: ApiError) -> Response {
    let (status, _) = error.status_and_code();
    let (heading, paragraphs) = match &error {
        ApiError::RateLimited(standing) => (
            "Too many attempts",
            vec![format!(
                "Too many attempts came from your network. Wait {} seconds, then send the form again.",
                standing.reset_secs()
            )],
        ),
        _ if status.is_server_error() => (
            "Something went wrong",
            vec![
                "Something went wrong on our side. Try again in a moment.".to_owned(),
                format!("If it keeps happening, quote this request id: {}", current_request_id()),
            ],
        ),
        other => ("That did not work", vec![sentence(&other.to_string())]),
    };
    // The problem's own answer logs an unexpected failure (once, with the request id) and
    // carries `Retry-After` and the rate-limit fields: the page keeps those and drops its JSON.
    let problem = error.into_response();
    let mut response = html(
        status,
        &Page {
            heading,
            paragraphs,
            form: None,
        },
    );
    for name in [header::RETRY_AFTER, RATELIMIT_POLICY, RATELIMIT] {
        if let Some(value) = problem.headers().get(&name) {
            response.headers_mut().insert(name, value.clone());
        }
    }
    response
}

/// `text` with a capital first letter and a full stop: API details are written in lower case
/// to be quoted; a page shows them as sentences.
fn sentence(text: &str) -> String {
    let mut chars = text.trim().chars();
    let mut out: String = chars
        .next()
        .map(|first| first.to_uppercase().collect::<String>())
        .unwrap_or_default();
    out.push_str(chars.as_str());
    if !out.ends_with('.') {
        out.push('.');
    }
    out
}

#[cfg(test)]
mod tests;
