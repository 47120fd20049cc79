//! Discovery endpoints (RFC 7644 section 4), generated from the registry so
//! they advertise exactly what the server does.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use scimd_core::ScimError;
use serde_json::{Value, json};

use crate::resources::scim_json;
use crate::{ApiError, AppState};

fn base(state: &AppState) -> &str {
    &state.service.config().base_url
}

pub async fn service_provider_config(State(state): State<AppState>) -> Response {
    let config = state.service.config();
    let body = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
        "documentationUri": "https://github.com/scimd/scimd",
        "patch": {"supported": true},
        "bulk": {
            "supported": true,
            "maxOperations": config.bulk_max_operations,
            "maxPayloadSize": config.bulk_max_payload,
        },
        "filter": {"supported": true, "maxResults": config.max_count},
        "pagination": {
            "cursor": true,
            "index": true,
            "defaultPaginationMethod": "index",
            "defaultPageSize": config.default_count,
            "maxPageSize": config.max_count,
            "cursorTimeout": config.cursor_timeout,
        },
        "changePassword": {"supported": true},
        "sort": {"supported": true},
        "etag": {"supported": true},
        "authenticationSchemes": authentication_schemes(&state),
        "meta": {
            "resourceType": "ServiceProviderConfig",
            "location": format!("{}/ServiceProviderConfig", base(&state)),
        },
    });
    let mut body = body;
    // RFC 9967 section 4: the events scimd emits through its streams; "when
    // absent indicates the SCIM Service Provider does not support or is not
    // currently configured for Security Events": shown once a stream exists.
    if state.events.configured().await {
        body["securityEvents"] = json!({
            "asyncRequest": "none",
            "eventUris": scimd_core::events::EVENT_URIS,
        });
    }
    scim_json(StatusCode::OK, &body)
}

/// What a client must present; in BYPASS mode, a loud "nothing".
fn authentication_schemes(state: &AppState) -> Value {
    if state.auth.bypass() {
        return json!([{
            "type": "none",
            "name": "BYPASS",
            "description": "WARNING: protection mode is BYPASS; requests are accepted without any token",
            "primary": true,
        }]);
    }
    json!([{
        "type": "oauthbearertoken",
        "name": "OAuth Bearer Token",
        "description": format!(
            "OAuth 2.0 bearer tokens (client_credentials at {}/oauth/token) carrying the scope each endpoint needs",
            state.public_base
        ),
        "specUri": "https://www.rfc-editor.org/rfc/rfc6750",
        "primary": true,
    }])
}

fn resource_type_doc(state: &AppState, rt: &scimd_core::schema::ResourceTypeDef) -> Value {
    let mut doc = serde_json::to_value(&rt.doc).unwrap_or(Value::Null);
    if let Some(obj) = doc.as_object_mut() {
        obj.insert(
            "schemas".into(),
            json!(["urn:ietf:params:scim:schemas:core:2.0:ResourceType"]),
        );
        obj.insert(
            "meta".into(),
            json!({"resourceType": "ResourceType", "location": format!("{}/ResourceTypes/{}", base(state), rt.doc.id)}),
        );
    }
    doc
}

fn schema_doc(state: &AppState, schema: &scimd_core::schema::Schema) -> Value {
    let mut doc = serde_json::to_value(schema).unwrap_or(Value::Null);
    if let Some(obj) = doc.as_object_mut() {
        obj.insert(
            "schemas".into(),
            json!(["urn:ietf:params:scim:schemas:core:2.0:Schema"]),
        );
        obj.insert(
            "meta".into(),
            json!({"resourceType": "Schema", "location": format!("{}/Schemas/{}", base(state), schema.id)}),
        );
    }
    doc
}

fn list(items: Vec<Value>) -> Response {
    let body = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
        "totalResults": items.len(),
        "startIndex": 1,
        "itemsPerPage": items.len(),
        "Resources": items,
    });
    scim_json(StatusCode::OK, &body)
}

pub async fn resource_types(State(state): State<AppState>) -> Response {
    let registry = state.service.registry().clone();
    list(
        registry
            .resource_types()
            .iter()
            .map(|rt| resource_type_doc(&state, rt))
            .collect(),
    )
}

pub async fn resource_type(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let registry = state.service.registry().clone();
    let rt = registry
        .resource_types()
        .iter()
        .find(|rt| rt.doc.id.eq_ignore_ascii_case(&id))
        .ok_or_else(|| ApiError(ScimError::NotFound(format!("no resource type {id}"))))?;
    Ok(scim_json(StatusCode::OK, &resource_type_doc(&state, rt)))
}

pub async fn schemas(State(state): State<AppState>) -> Response {
    let registry = state.service.registry().clone();
    list(
        registry
            .schemas()
            .iter()
            .map(|s| schema_doc(&state, s))
            .collect(),
    )
}

pub async fn schema(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let registry = state.service.registry().clone();
    let schema = registry
        .schema(&id)
        .ok_or_else(|| ApiError(ScimError::NotFound(format!("no schema {id}"))))?;
    Ok(scim_json(StatusCode::OK, &schema_doc(&state, schema)))
}

pub async fn refuse_filter(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let filtered = req.uri().query().is_some_and(|q| {
        q.split('&').any(|pair| {
            pair.split('=')
                .next()
                .is_some_and(|k| k.eq_ignore_ascii_case("filter"))
        })
    });
    if filtered {
        return axum::response::IntoResponse::into_response(ApiError(ScimError::Forbidden(
            "discovery endpoints do not support filtering".into(),
        )));
    }
    next.run(req).await
}

pub async fn read_only() -> ApiError {
    ApiError(ScimError::MethodNotAllowed(
        "discovery endpoints are read-only".into(),
    ))
}

pub async fn ready(State(state): State<AppState>) -> Result<&'static str, ApiError> {
    state
        .service
        .store()
        .ping()
        .await
        .map_err(|e| ApiError(ScimError::Unavailable(e.to_string())))?;
    Ok("ready")
}
