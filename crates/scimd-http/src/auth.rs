//! OAuth on the wire: the bearer-token guard in front of every SCIM route
//! (RFC 6750), the token endpoint (RFC 6749 section 4.4), the JWK Set and
//! RFC 8414 metadata. Decisions are made by `scimd_auth`; this module only
//! translates headers and answers.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use axum::Json;
use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, RawPathParams, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use scimd_auth::{AuthError, Denied, GrantError, Need, TokenRequest};
use scimd_core::ScimError;
use scimd_core::changelog::{Actor, ActorSource};
use scimd_core::store::StoreError;
use serde_json::json;

use crate::extract::{self, BodyError};
use crate::telemetry::Route;
use crate::{ApiError, AppState};

/// Checks the caller's token for `need` before the handler runs; the grant
/// is left in the request extensions for handlers that check more (Bulk).
/// With a route (metrics on), it also records the request's metrics: the
/// guard is already the one layer every guarded request passes, and so it
/// is also where a path that names nothing is refused (before the path's
/// parameters are read, which would refuse it as a plain-text 400).
pub async fn guard(
    State((state, need, route)): State<(AppState, Need, Option<Route>)>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(refused) = extract::unnameable_path(request.uri().path()) {
        return refused.into_response();
    }
    let (mut parts, body) = request.into_parts();
    let params = match RawPathParams::from_request_parts(&mut parts, &state).await {
        Ok(params) => params,
        Err(rejection) => return rejection.into_response(),
    };
    let request = Request::from_parts(parts, body);
    let endpoint = params
        .iter()
        .find(|(name, _)| *name == "endpoint")
        .map(|(_, value)| value);
    let Some(route) = route else {
        return checked(&state, need, endpoint, request, next).await;
    };
    let started = std::time::Instant::now();
    let method = request.method().clone();
    let response = checked(&state, need, endpoint, request, next).await;
    crate::telemetry::record(&state, &route, &method, endpoint, &response, started);
    response
}

async fn checked(
    state: &AppState,
    need: Need,
    endpoint: Option<&str>,
    mut request: Request,
    next: Next,
) -> Response {
    // An endpoint that serves no resource type needs only a valid token;
    // the handler then answers 404 (a 403 naming an invented scope would
    // mislead).
    let need = match endpoint {
        Some(e) if state.service.registry().by_endpoint(e).is_none() => Need::AnyToken,
        _ => need,
    };
    if several_credentials(request.headers()) {
        // RFC 6750 section 3.1: more than one credential is invalid_request,
        // not "the first one wins".
        let mut response = ApiError(ScimError::BadRequest(
            "the request carries more than one Authorization header".into(),
        ))
        .into_response();
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(r#"Bearer realm="scimd", error="invalid_request""#),
        );
        return response;
    }
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match state.auth.authorize(need, endpoint, authorization).await {
        Ok(grant) => {
            if let Some(g) = &grant
                && let Err(wait) = state.auth.admit(&g.client_id)
            {
                return too_many(&g.client_id, wait);
            }
            let actor = RequestActor::of(&request, grant.clone());
            request.extensions_mut().insert(grant);
            // Every change the request makes is logged as this actor's.
            Actor::scope_of(Arc::new(actor), next.run(request)).await
        }
        Err(denied) => refusal(&denied),
    }
}

/// Who a request acts for, as the change log records it: the token's
/// client and (when it differs) subject, the request id, the address. The
/// strings are made only if the request records a change.
struct RequestActor {
    grant: Option<Arc<scimd_auth::Grant>>,
    request_id: Option<HeaderValue>,
    address: Option<SocketAddr>,
    made: OnceLock<Arc<Actor>>,
}

impl RequestActor {
    fn of(request: &Request, grant: Option<Arc<scimd_auth::Grant>>) -> RequestActor {
        RequestActor {
            grant,
            request_id: request.headers().get("x-request-id").cloned(),
            address: request
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0),
            made: OnceLock::new(),
        }
    }
}

impl ActorSource for RequestActor {
    fn actor(&self) -> Arc<Actor> {
        self.made
            .get_or_init(|| {
                let grant = self.grant.as_deref();
                Arc::new(Actor {
                    via: "http".into(),
                    client_id: grant.map(|g| g.client_id.clone()),
                    subject: grant
                        .filter(|g| g.subject != g.client_id)
                        .map(|g| g.subject.clone()),
                    request_id: self
                        .request_id
                        .as_ref()
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string),
                    address: self.address.map(|a| a.to_string()),
                })
            })
            .clone()
    }
}

/// A client over its request rate: 429 with `Retry-After` (whole seconds,
/// at least 1) and a SCIM error; Entra ID and Okta back off on it.
fn too_many(client_id: &str, wait: std::time::Duration) -> Response {
    let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
    metrics::counter!("scimd_rate_limited_total").increment(1);
    let mut response = ApiError(ScimError::TooManyRequests(format!(
        "client '{client_id}' is over its request rate; retry in {seconds} s"
    )))
    .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}

/// The RFC 6750 answer to a refused request, with a SCIM error body.
pub fn refusal(denied: &Denied) -> Response {
    let (error, challenge) = match denied {
        Denied::NoToken => (
            ScimError::Unauthorized("a bearer token is required".into()),
            r#"Bearer realm="scimd""#.to_string(),
        ),
        Denied::Invalid(why) => (
            ScimError::Unauthorized(why.to_string()),
            format!(
                r#"Bearer realm="scimd", error="invalid_token", error_description="{}""#,
                quoted(&why.to_string())
            ),
        ),
        Denied::Insufficient(scope) => (
            ScimError::Forbidden(format!("the token lacks the scope {scope}")),
            format!(
                r#"Bearer realm="scimd", error="insufficient_scope", scope="{}""#,
                quoted(scope)
            ),
        ),
    };
    let mut response = ApiError(error).into_response();
    if let Ok(value) = HeaderValue::from_str(&challenge) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

/// More than one `Authorization` header: which one counts would be a guess
/// (RFC 6750 section 3.1 and RFC 6749 section 3.2 make it invalid_request).
fn several_credentials(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::AUTHORIZATION)
        .iter()
        .nth(1)
        .is_some()
}

/// Keeps a text inside an auth-param quoted string.
fn quoted(text: &str) -> String {
    text.chars()
        .filter(|c| *c != '"' && *c != '\\' && !c.is_control())
        .collect()
}

/// A form posted to the token or introspection endpoint, with the peer
/// address and any HTTP Basic client credentials.
struct ClientForm {
    form: TokenRequest,
    basic: Option<(String, String)>,
    address: String,
}

/// A client_credentials form is well under a kilobyte; a signed client
/// assertion (RFC 7523) a few.
const FORM_LIMIT: usize = 64 * 1024;

async fn client_form(request: Request) -> Result<ClientForm, GrantError> {
    let address = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_else(|| "unknown".into());
    if several_credentials(request.headers()) {
        return Err(GrantError::InvalidRequest(
            "use one Authorization header".into(),
        ));
    }
    let basic = match request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        None => None,
        Some(h) => match scimd_auth::parse_basic(h) {
            Some(credentials) => Some(credentials),
            None => return Err(GrantError::InvalidClient),
        },
    };
    let (parts, body) = request.into_parts();
    let bytes = match extract::bytes_within(&parts.headers, body, FORM_LIMIT).await {
        Ok(bytes) => bytes,
        Err(BodyError::TooLarge) => return Err(GrantError::RequestTooLarge(FORM_LIMIT)),
        Err(e) => {
            return Err(GrantError::InvalidRequest(
                e.scim("the request body", FORM_LIMIT).to_string(),
            ));
        }
    };
    let request = Request::from_parts(parts, Body::from(bytes));
    match axum::Form::<TokenRequest>::from_request(request, &()).await {
        Ok(axum::Form(form)) => Ok(ClientForm {
            form,
            basic,
            address,
        }),
        Err(rejection) => Err(GrantError::InvalidRequest(format!(
            "the body must be application/x-www-form-urlencoded: {}",
            rejection.body_text()
        ))),
    }
}

/// `POST /oauth/token`: the client_credentials grant.
pub async fn token(State(state): State<AppState>, request: Request) -> Response {
    let granted = match client_form(request).await {
        Ok(c) => state.auth.grant(c.form, c.basic, &c.address).await,
        Err(e) => Err(e),
    };
    match granted {
        Ok(answer) => {
            crate::telemetry::token_outcome("issued");
            let mut response = Json(answer).into_response();
            no_store(response.headers_mut());
            response
        }
        Err(e) => {
            crate::telemetry::token_outcome(e.code());
            grant_error(&e)
        }
    }
}

/// `POST /oauth/introspect` (RFC 7662), for resource servers that trust
/// this scimd as their authorization server.
pub async fn introspect(State(state): State<AppState>, request: Request) -> Response {
    let c = match client_form(request).await {
        Ok(c) => c,
        Err(e) => return grant_error(&e),
    };
    let Some(token) = c.form.token.clone() else {
        return grant_error(&GrantError::InvalidRequest("token is required".into()));
    };
    match state
        .auth
        .introspect(&token, c.basic, &c.form, &c.address)
        .await
    {
        Ok(answer) => {
            let mut response = Json(answer).into_response();
            no_store(response.headers_mut());
            response
        }
        Err(e) => grant_error(&e),
    }
}

fn no_store(headers: &mut HeaderMap) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

/// An RFC 6749 section 5.2 error answer.
fn grant_error(e: &GrantError) -> Response {
    let status = match e {
        GrantError::InvalidClient => StatusCode::UNAUTHORIZED,
        GrantError::SlowDown { .. } => StatusCode::TOO_MANY_REQUESTS,
        GrantError::RequestTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        GrantError::Internal(AuthError::Store(StoreError::Unavailable(_))) => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        GrantError::Internal(inner) => {
            tracing::error!(error = %inner, "token endpoint failure");
            StatusCode::INTERNAL_SERVER_ERROR
        }
        _ => StatusCode::BAD_REQUEST,
    };
    let description = match e {
        GrantError::Internal(AuthError::Store(StoreError::Unavailable(_))) => {
            "the store cannot be reached for now; retry".to_string()
        }
        GrantError::Internal(_) => "internal error; see the server log".to_string(),
        other => other.to_string(),
    };
    let mut response = (
        status,
        Json(json!({ "error": e.code(), "error_description": description })),
    )
        .into_response();
    let headers = response.headers_mut();
    no_store(headers);
    match e {
        GrantError::InvalidClient => {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"Basic realm="scimd""#),
            );
        }
        GrantError::SlowDown { retry_after } => {
            if let Ok(v) = HeaderValue::from_str(&retry_after.to_string()) {
                headers.insert(header::RETRY_AFTER, v);
            }
        }
        _ => {}
    }
    response
}

/// `GET /.well-known/jwks.json`
pub async fn jwks(State(state): State<AppState>) -> Response {
    Json(state.auth.keys().jwks()).into_response()
}

/// `GET /.well-known/oauth-authorization-server` (RFC 8414)
pub async fn metadata(State(state): State<AppState>) -> Response {
    Json(state.auth.metadata(&state.public_base)).into_response()
}
