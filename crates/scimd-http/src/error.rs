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

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.0.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let detail = match &self.0 {
            ScimError::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                "internal server error; see the server log".to_string()
            }
            other => other.detail(),
        };
        let mut body = json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
            "status": self.0.status().to_string(),
            "detail": detail,
        });
        if let (Some(t), Some(obj)) = (self.0.scim_type(), body.as_object_mut()) {
            obj.insert("scimType".into(), t.into());
        }
        let mut response = (status, body.to_string()).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(SCIM_JSON));
        response
    }
}
