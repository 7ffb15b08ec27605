//! Holds the server to its OpenAPI document: every answer a route gives during a test (its
//! status and media type) must be one the document lists for that operation. A [`TestApp`]
//! checks when it drops, so every end-to-end test checks the answers it caused, whatever
//! client it sent its requests with.
//!
//! [`TestApp`]: crate::TestApp

use keyframe_api::{Answer, AnswerObserver};
use serde_json::Value;
use std::sync::{Arc, Mutex, OnceLock};

/// The answers one test's servers gave.
#[derive(Clone, Default)]
pub struct Contract {
    answers: Arc<Mutex<Vec<Answer>>>,
}

impl Contract {
    /// What the servers show their answers to.
    pub fn observer(&self) -> AnswerObserver {
        let answers = self.answers.clone();
        Arc::new(move |answer| {
            if let Ok(mut answers) = answers.lock() {
                answers.push(answer);
            }
        })
    }

    /// The answers seen so far.
    pub fn answers(&self) -> Vec<Answer> {
        self.answers.lock().map(|answers| answers.clone()).unwrap_or_default()
    }

    /// Each answer so far that the document does not list, described.
    pub fn violations(&self) -> Vec<String> {
        let answers = self.answers.lock().map(|answers| answers.clone()).unwrap_or_default();
        let mut violations: Vec<String> = answers.iter().filter_map(undocumented).collect();
        violations.sort();
        violations.dedup();
        violations
    }
}

/// The document, as JSON (made once per test binary).
fn document() -> &'static Value {
    static DOCUMENT: OnceLock<Value> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let settings = keyframe_api::settings::ApiSettings::new("the document does not depend on it");
        serde_json::to_value(keyframe_api::openapi::document(&settings)).expect("the document is JSON")
    })
}

/// Why `answer` is not what the document promises, if it is not.
fn undocumented(answer: &Answer) -> Option<String> {
    let label = format!(
        "{} {} answered {} {}",
        answer.method,
        answer.route,
        answer.status.as_u16(),
        answer.media_type.as_deref().unwrap_or("(no body)")
    );
    let Some(item) = document()["paths"].get(&answer.route) else {
        // The documentation itself and the pages mailed links open are not API operations.
        let outside_api = !answer.route.starts_with("/api/");
        return (!outside_api).then(|| format!("{label}: the route is not in the document"));
    };
    let Some(operation) = item.get(answer.method.as_str().to_lowercase()) else {
        // A method the route does not take: the 405 every route gives.
        return (answer.status != 405).then(|| format!("{label}: the method is not in the document"));
    };
    let Some(response) = operation["responses"].get(answer.status.as_str()) else {
        return Some(format!("{label}: the status is not documented"));
    };
    let documented: Vec<&str> = response
        .get("content")
        .and_then(Value::as_object)
        .map(|content| content.keys().map(String::as_str).collect())
        .unwrap_or_default();
    match answer.media_type.as_deref() {
        None if documented.is_empty() => None,
        Some(media_type) if documented.contains(&media_type) => None,
        // A body the document gives no media type for (a download of any kind).
        Some(_) if documented.contains(&"*/*") => None,
        _ => Some(format!("{label}: the document lists {documented:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{Method, StatusCode};

    fn answer(method: Method, route: &str, status: u16, media_type: Option<&str>) -> Answer {
        Answer {
            method,
            route: route.to_owned(),
            status: StatusCode::from_u16(status).expect("a status"),
            media_type: media_type.map(str::to_owned),
        }
    }

    #[test]
    fn an_answer_the_document_lists_passes_and_others_are_named() {
        let contract = Contract::default();
        let observe = contract.observer();
        observe(answer(Method::GET, "/api/v1/projects", 200, Some("application/json")));
        observe(answer(
            Method::GET,
            "/api/v1/projects",
            401,
            Some("application/problem+json"),
        ));
        observe(answer(Method::GET, "/verify-email", 200, Some("text/html")));
        observe(answer(
            Method::PUT,
            "/api/v1/projects",
            405,
            Some("application/problem+json"),
        ));
        assert_eq!(contract.violations(), Vec::<String>::new());

        observe(answer(Method::GET, "/api/v1/projects", 418, Some("application/json")));
        observe(answer(Method::GET, "/api/v1/projects", 401, Some("application/json")));
        observe(answer(Method::GET, "/api/v1/nowhere", 200, Some("application/json")));
        let violations = contract.violations();
        assert_eq!(violations.len(), 3, "{violations:#?}");
        assert!(
            violations
                .iter()
                .any(|v| v.contains("418") && v.contains("status is not documented"))
        );
        assert!(violations.iter().any(|v| v.contains("401 application/json")));
        assert!(violations.iter().any(|v| v.contains("not in the document")));
    }
}
