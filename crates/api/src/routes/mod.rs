//! The routes, one module per resource. No route module imports another: what several share
//! lives outside `routes` (wire types in `views`, paging in `paging`, session answers in
//! `auth::answers`), and the routers are put together here.

pub mod account;
pub mod admin;
pub mod assets;
pub mod auth;
pub mod credits;
pub mod health;
pub mod jobs;
pub mod orgs;
pub mod pages;
pub mod projects;
pub mod sessions;
pub mod settings;
pub mod subscriptions;
pub mod two_factor;

use crate::error::{ApiError, Code};
use crate::state::AppState;
use axum::Router;
use axum::http::StatusCode;
use utoipa::openapi::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The API's routes, in groups by what guards them. Each route's path and method are written
/// once, in its handler's `#[utoipa::path]`: the same attribute registers the route here and
/// describes it in the OpenAPI document.
pub(crate) struct ApiRoutes {
    /// Open to every client; a handler that needs a caller extracts one (an access token).
    open: OpenApiRouter<AppState>,
    /// The auth endpoints a client calls without a session: counted against its address (the
    /// `auth-ip` rate limit).
    per_address: OpenApiRouter<AppState>,
    /// Administration: the authorization policy is asked once in front of every route.
    admin: OpenApiRouter<AppState>,
}

impl ApiRoutes {
    /// Every route of the JSON API.
    pub(crate) fn new() -> Self {
        let per_address = OpenApiRouter::new()
            .routes(routes!(auth::register))
            .routes(routes!(auth::login))
            .routes(routes!(two_factor::login_totp))
            .routes(routes!(auth::refresh))
            .routes(routes!(account::verify_email))
            .routes(routes!(account::resend_verification))
            .routes(routes!(account::request_password_reset))
            .routes(routes!(account::confirm_password_reset));
        let own_account = OpenApiRouter::new()
            .routes(routes!(auth::logout))
            .routes(routes!(sessions::logout_all))
            .routes(routes!(auth::me, account::update_profile))
            .routes(routes!(account::change_password))
            .routes(routes!(sessions::list))
            .routes(routes!(sessions::revoke))
            .routes(routes!(two_factor::setup))
            .routes(routes!(two_factor::enable))
            .routes(routes!(two_factor::disable));
        let open = OpenApiRouter::new()
            .merge(health::routes())
            .merge(own_account)
            .merge(settings::routes())
            .merge(projects::routes())
            .merge(assets::routes())
            .merge(jobs::routes())
            .merge(credits::routes())
            .merge(orgs::routes())
            .merge(subscriptions::routes());
        Self {
            open,
            per_address,
            admin: admin::routes(),
        }
    }

    /// What the routes say of themselves: the paths of the OpenAPI document, and the schemas
    /// they use.
    pub(crate) fn document(&self) -> OpenApi {
        let mut document = self.open.get_openapi().clone();
        document.merge(self.per_address.get_openapi().clone());
        document.merge(self.admin.get_openapi().clone());
        document
    }

    /// The routes with their guards, as one router.
    pub(crate) fn into_router(self, state: &AppState) -> Router<AppState> {
        let (open, _) = self.open.split_for_parts();
        let (per_address, _) = self.per_address.split_for_parts();
        let (admin, _) = self.admin.split_for_parts();
        let per_address = per_address.route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::throttle::limit_by_client_address,
        ));
        let admin = admin.route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            admin::require_admin,
        ));
        open.merge(per_address)
            .merge(admin)
            .layer(axum::middleware::from_fn_with_state(
                state.clone(),
                crate::consistency::remember_own_writes,
            ))
    }
}

/// Any path Keyframe does not serve.
pub async fn not_found() -> ApiError {
    ApiError::NotFound {
        detail: "no such endpoint".to_owned(),
    }
}

/// A known path with a method it does not take.
pub async fn method_not_allowed() -> ApiError {
    ApiError::BadRequest {
        status: StatusCode::METHOD_NOT_ALLOWED,
        code: Code::MethodNotAllowed,
        detail: "this endpoint does not take that method".to_owned(),
    }
}
