//! `POST /events/v1/streams/{id}`: the poll endpoint of an event stream
//! (RFC 8936), behind a token with the stream's own scope. Errors answer
//! in RFC 8936's shape (`{"err", "description"}`, application/json), not
//! as SCIM errors: pollers are SET receivers, not SCIM clients.

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use scimd_auth::{Denied, Grant};
use scimd_events::EventError;
use scimd_events::poll::PollRequest;
use serde_json::json;

use crate::AppState;

/// Largest poll request: acknowledgements of a thousand SETs and their errors.
const POLL_LIMIT: usize = 1024 * 1024;

pub async fn poll(
    State(state): State<AppState>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    let grant = request
        .extensions()
        .get::<Option<Arc<Grant>>>()
        .cloned()
        .flatten();
    // The scope first, from the id in the path: a token without it learns
    // nothing of which streams exist.
    let scope = state.events.scope_of(&id);
    if grant.as_ref().is_some_and(|g| !g.allows(&scope)) {
        return crate::auth::refusal(&Denied::Insufficient(scope));
    }
    let stream = match state.events.stream(&id).await {
        Ok(s) if s.id == id => s,
        Ok(_) => return failure(&EventError::NoStream(id)),
        Err(e) => return failure(&e),
    };
    let (parts, body) = request.into_parts();
    // A poll acknowledges (and so drops) SETs: no page of another site may
    // send one to a server in BYPASS.
    if let Err(refused) = crate::extract::check_sender(&parts.headers, &state.public_base) {
        return refused.into_response();
    }
    let bytes = match crate::extract::bytes_within(&parts.headers, body, POLL_LIMIT).await {
        Ok(bytes) => bytes,
        Err(e) => {
            let why = e.scim("the poll request", POLL_LIMIT);
            let status = StatusCode::from_u16(why.status()).unwrap_or(StatusCode::BAD_REQUEST);
            return error(status, "invalid_request", &why.to_string());
        }
    };
    let answer = match PollRequest::parse(&bytes) {
        Ok(request) => state.events.poll(&stream.id, request).await,
        Err(e) => Err(e),
    };
    match answer {
        Ok(answer) => {
            let body = json!({"sets": answer.sets, "moreAvailable": answer.more_available});
            json_response(StatusCode::OK, body.to_string())
        }
        Err(e) => failure(&e),
    }
}

fn failure(e: &EventError) -> Response {
    match e {
        EventError::NoStream(_) => error(StatusCode::NOT_FOUND, "invalid_request", &e.to_string()),
        EventError::Invalid(why) => error(StatusCode::BAD_REQUEST, "invalid_request", why),
        EventError::Busy(_)
        | EventError::Store(scimd_core::store::StoreError::Unavailable(_))
        | EventError::Store(scimd_core::store::StoreError::Conflict) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "the store cannot answer for now; poll again",
        ),
        other => {
            tracing::error!(error = %other, "poll failed");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "the poll failed; see the server log",
            )
        }
    }
}

/// An RFC 8936/8935-shaped error answer.
fn error(status: StatusCode, err: &str, description: &str) -> Response {
    let body = json!({"err": err, "description": description});
    let mut response = json_response(status, body.to_string());
    response
        .headers_mut()
        .insert(header::CONTENT_LANGUAGE, HeaderValue::from_static("en"));
    response
}

fn json_response(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
