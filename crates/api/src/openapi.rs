//! The OpenAPI document (`/openapi.json`) and the Swagger UI (`/docs`, served from files
//! vendored into the binary: nothing is fetched at build or run time).
//!
//! The document must describe the server exactly: [`answers`] adds the answers every operation
//! gives because of its shape, and [`fields`] states the request fields' rules from the value
//! types that check them.

pub mod answers;
pub mod fields;

use crate::state::AppState;
use crate::{error, routes};
use axum::Router;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::SwaggerUi;

/// Keyframe's HTTP API: what the document says beyond its paths (which the routes describe).
#[derive(OpenApi)]
#[openapi(
    info(title = "Keyframe API", description = "The backend of an AI video platform."),
    components(schemas(error::Problem, error::FieldError)),
    modifiers(&BearerAuth),
    tags((name = "health"), (name = "auth"), (name = "settings"), (name = "projects"), (name = "assets"), (name = "jobs"), (name = "credits"), (name = "subscriptions"),
        (name = "admin"))
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// `GET /metrics`, in the document only when the API's listener serves it.
#[derive(OpenApi)]
#[openapi(paths(crate::prometheus::metrics))]
struct Metrics;

/// The document this server serves: [`ApiDoc`], the paths the routes describe (see
/// [`routes::ApiRoutes`]), the answers each operation gives because of its shape (see
/// [`answers`]), and what the configuration decides (the plans on sale, `/metrics`).
pub fn document(settings: &crate::settings::ApiSettings) -> utoipa::openapi::OpenApi {
    let mut document = ApiDoc::openapi();
    document.merge(routes::ApiRoutes::new().document());
    if settings.metrics_addr.is_none() {
        document.merge(Metrics::openapi());
    }
    answers::complete(&mut document);
    let on_sale: Vec<&str> = settings
        .billing
        .plans
        .all()
        .iter()
        .filter(|plan| plan.stripe_price_id.is_some())
        .map(|plan| plan.name.as_str())
        .collect();
    let checkout = document
        .components
        .as_mut()
        .and_then(|components| components.schemas.get_mut("CheckoutBody"));
    if let Some(utoipa::openapi::RefOr::T(utoipa::openapi::Schema::Object(body))) = checkout
        && let Some(utoipa::openapi::RefOr::T(utoipa::openapi::Schema::Object(plan))) = body.properties.get_mut("plan")
        && !on_sale.is_empty()
    {
        plan.enum_values = Some(on_sale.into_iter().map(Into::into).collect());
    }
    document
}

pub(crate) fn router(settings: &crate::settings::ApiSettings) -> Router<AppState> {
    Router::new().merge(SwaggerUi::new("/docs").url("/openapi.json", document(settings)))
}
