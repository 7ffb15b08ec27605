//! The pages' HTML: one template, its style, and escaping of everything that comes from a
//! request.

use super::{CONTENT_SECURITY_POLICY, RESET_PATH, VERIFY_PATH};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use keyframe_domain::values::PASSWORD_MIN_CHARS;

/// The one place a page becomes an answer, with the headers every page carries.
pub(super) fn html(status: StatusCode, page: &Page) -> Response {
    let headers = [
        (
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        ),
        // The page holds the token: no cache, shared or private, keeps it.
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        // The URL holds the token: no request from the page may name it to anyone.
        (header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ),
        (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
    ];
    (status, headers, page.render()).into_response()
}

/// One page: a heading (also the title), paragraphs of plain text, and perhaps a form.
pub(super) struct Page {
    /// The `<h1>`, and the `<title>` before "· Keyframe".
    pub(super) heading: &'static str,
    /// Plain text, escaped when rendered.
    pub(super) paragraphs: Vec<String>,
    /// What the page asks for, if anything.
    pub(super) form: Option<PageForm>,
}

/// The forms the pages show.
pub(super) enum PageForm {
    /// The token and a button.
    ConfirmAddress {
        /// The token from the link.
        token: String,
    },
    /// The token, the new password, and why the last one was refused.
    NewPassword {
        /// The token from the link.
        token: String,
        /// The policy's reasons, as sentences; empty on the first showing.
        refused: Vec<String>,
    },
}

/// Small, readable on a phone, light or dark as the device prefers.
const STYLE: &str = "\
:root{color-scheme:light dark}\
body{margin:0;font:16px/1.5 system-ui,-apple-system,\"Segoe UI\",Roboto,sans-serif;\
background:#f4f5f7;color:#1d2127}\
main{max-width:30rem;margin:3rem auto;padding:1.75rem 1.5rem;background:#fff;border-radius:12px;\
box-shadow:0 1px 3px rgba(0,0,0,.12)}\
.brand{margin:0 0 .75rem;font-weight:600;color:#59616c}\
h1{margin:0 0 1rem;font-size:1.4rem;line-height:1.3}\
label{display:block;margin:1.25rem 0 .25rem;font-weight:600}\
input[type=password]{box-sizing:border-box;width:100%;padding:.6rem .7rem;font:inherit;color:inherit;\
background:transparent;border:1px solid #8e96a1;border-radius:8px}\
.hint{margin:.35rem 0 0;font-size:.9rem;color:#59616c}\
.refused{margin:.75rem 0 0;color:#a1242c}\
.refused p{margin:.25rem 0}\
button{margin-top:1.25rem;padding:.65rem 1.2rem;font:inherit;font-weight:600;color:#fff;background:#2456c4;\
border:0;border-radius:8px;cursor:pointer}\
@media (prefers-color-scheme:dark){body{background:#15171a;color:#e5e8ec}\
main{background:#1f2328;box-shadow:none}.brand,.hint{color:#a3abb6}.refused{color:#ff8f95}}\
@media (max-width:32rem){main{margin:0;border-radius:0;box-shadow:none}}";

impl Page {
    /// A page of text only.
    pub(super) fn text<const N: usize>(heading: &'static str, paragraphs: [impl Into<String>; N]) -> Self {
        Self {
            heading,
            paragraphs: paragraphs.into_iter().map(Into::into).collect(),
            form: None,
        }
    }

    /// The whole document. Every piece of text goes through [`escape`].
    pub(super) fn render(&self) -> String {
        let mut body = String::new();
        for paragraph in &self.paragraphs {
            body.push_str(&format!("<p>{}</p>\n", escape(paragraph)));
        }
        if let Some(form) = &self.form {
            body.push_str(&form.render());
        }
        format!(
            "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
             <meta name=\"robots\" content=\"noindex\">\n<title>{heading} · Keyframe</title>\n\
             <style>{style}</style>\n</head>\n<body>\n<main>\n<p class=\"brand\">Keyframe</p>\n\
             <h1>{heading}</h1>\n{body}</main>\n</body>\n</html>\n",
            heading = escape(self.heading),
            style = STYLE,
        )
    }
}

impl PageForm {
    /// The `<form>`; the token only ever appears here, in the hidden input's value.
    fn render(&self) -> String {
        match self {
            Self::ConfirmAddress { token } => format!(
                "<form method=\"post\" action=\"{VERIFY_PATH}\">\n{}\
                 <button type=\"submit\">Confirm my address</button>\n</form>\n",
                hidden_token(token),
            ),
            Self::NewPassword { token, refused } => {
                let (invalid, reasons) = if refused.is_empty() {
                    ("", String::new())
                } else {
                    let reasons: String = refused
                        .iter()
                        .map(|reason| format!("<p>{}</p>", escape(reason)))
                        .collect();
                    (
                        " aria-invalid=\"true\"",
                        format!("<div class=\"refused\" role=\"alert\">{reasons}</div>\n"),
                    )
                };
                // `minlength` is counted in UTF-16 units, never fewer than the characters the
                // policy counts, so it cannot refuse a password the server accepts. No
                // `maxlength`, for the same reason the other way round: the server checks it.
                format!(
                    "<form method=\"post\" action=\"{RESET_PATH}\">\n{}\
                     <label for=\"new_password\">New password</label>\n\
                     <input id=\"new_password\" name=\"new_password\" type=\"password\" \
                     autocomplete=\"new-password\" required minlength=\"{PASSWORD_MIN_CHARS}\" \
                     aria-describedby=\"password-hint\" autofocus{invalid}>\n\
                     <p id=\"password-hint\" class=\"hint\">At least {PASSWORD_MIN_CHARS} characters. A few \
                     unrelated words are easy to remember and hard to guess.</p>\n{reasons}\
                     <button type=\"submit\">Set the new password</button>\n</form>\n",
                    hidden_token(token),
                )
            }
        }
    }
}

/// The hidden input that carries the token from the link into the POST.
pub(super) fn hidden_token(token: &str) -> String {
    format!("<input type=\"hidden\" name=\"token\" value=\"{}\">\n", escape(token))
}

/// `text` made safe to put in HTML, between tags or inside a quoted attribute value.
pub(super) fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#x27;"),
            other => escaped.push(other),
        }
    }
    escaped
}
