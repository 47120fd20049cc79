use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use scimd_core::ScimError;
use serde_json::json;

use crate::SCIM_JSON;

/// A SCIM error on its way to the client: the one place error bodies are
/// rendered (RFC 7644 section 3.12).
#[derive(Debug)]
pub struct ApiError(pub ScimError);

impl From<ScimError> for ApiError {
    fn from(e: ScimError) -> Self {
        ApiError(e)
    }
}

/// The SCIM error body of `error`: the response of a failed request, and
/// the `response` of a failed Bulk operation.
pub fn error_body(error: &ScimError) -> serde_json::Value {
    let detail = match error {
        ScimError::Internal(detail) => {
            tracing::error!(%detail, "internal error");
            "internal server error; see the server log".to_string()
        }
        ScimError::InsufficientStorage(detail) => {
            tracing::warn!(%detail, "write refused: no space left");
            "the store's disk is full: nothing was written; retry once space is freed".to_string()
        }
        other => other.detail(),
    };
    let mut body = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
        "status": error.status().to_string(),
        "detail": detail,
    });
    if let (Some(t), Some(obj)) = (error.scim_type(), body.as_object_mut()) {
        obj.insert("scimType".into(), t.into());
    }
    body
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.0.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = error_body(&self.0);
        let mut response = (status, body.to_string()).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(SCIM_JSON));
        response
    }
}
