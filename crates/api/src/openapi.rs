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

/// Keyframe's HTTP API.
#[derive(OpenApi)]
#[openapi(
    info(title = "Keyframe API", description = "The backend of an AI video platform."),
    paths(
        routes::health::live, routes::health::ready,
        routes::auth::register, routes::auth::login, routes::auth::refresh, routes::auth::logout, routes::auth::me,
        routes::account::verify_email, routes::account::resend_verification, routes::account::request_password_reset,
        routes::account::confirm_password_reset, routes::account::change_password, routes::account::update_profile,
        routes::sessions::list, routes::sessions::revoke, routes::sessions::logout_all,
        routes::two_factor::setup, routes::two_factor::enable, routes::two_factor::disable, routes::two_factor::login_totp,
        routes::settings::show, routes::settings::store_api_key, routes::settings::remove_api_key,
        routes::admin::list_users, routes::admin::show_user, routes::admin::set_roles, routes::admin::suspend,
        routes::admin::reactivate, routes::admin::stats,
        routes::projects::create, routes::projects::list, routes::projects::show, routes::projects::update,
        routes::projects::delete,
        routes::assets::upload, routes::assets::list,
        routes::jobs::create, routes::jobs::analyze_asset, routes::jobs::list, routes::jobs::stats, routes::jobs::show,
        routes::jobs::cancel, routes::jobs::retry, routes::jobs::delete, routes::jobs::events, routes::jobs::artifact,
        routes::jobs::quote,
        routes::credits::balance, routes::credits::transactions, routes::admin::grant_credits,
        routes::subscriptions::plans, routes::subscriptions::current, routes::subscriptions::checkout,
        routes::subscriptions::webhook,
    ),
    components(schemas(error::Problem, error::FieldError)),
    modifiers(&BearerAuth, &ShapeAnswers),
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

/// Adds the answers each operation gives because of its shape (see [`answers`]).
struct ShapeAnswers;

impl Modify for ShapeAnswers {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        answers::complete(openapi);
    }
}

/// The document this server serves: [`ApiDoc`] with what its configuration decides (the plans
/// on sale).
pub fn document(settings: &crate::settings::ApiSettings) -> utoipa::openapi::OpenApi {
    let mut document = ApiDoc::openapi();
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
