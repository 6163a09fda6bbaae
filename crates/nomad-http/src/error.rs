//! `ApiError`: every failure a handler can return, rendered as Nomad renders errors.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use nomad_server::ServerError;

/// An error answered with Nomad's status code and a plain-text body holding only the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// The body (the bare message, as Nomad sends it).
    pub message: String,
}

impl ApiError {
    /// An error with an explicit status.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }

    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404 with a message, e.g. `job not found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// 404 with an empty body: the path names no endpoint.
    pub fn no_route() -> Self {
        Self::new(StatusCode::NOT_FOUND, "")
    }

    /// 405 `Invalid method`.
    pub fn invalid_method() -> Self {
        Self::new(StatusCode::METHOD_NOT_ALLOWED, "Invalid method")
    }

    /// 500.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// 501: an endpoint or operation this agent does not implement.
    pub fn not_supported(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_IMPLEMENTED,
            format!("{what} is not supported by this agent"),
        )
    }

    /// Nomad's `Request body is empty` (400).
    pub fn empty_body() -> Self {
        Self::bad_request("Request body is empty")
    }

    /// Picks a status from the message the way Nomad does for uncoded errors: a few well-known
    /// suffixes map to 403/400, everything else is a 500.
    pub fn from_message(message: impl Into<String>) -> Self {
        let message = message.into();
        const FORBIDDEN: &[&str] = &[
            "Permission denied",
            "ACL token not found",
            "Job registration, dispatch, and scale are disabled by the scheduler configuration",
        ];
        let status = if FORBIDDEN.iter().any(|s| message.ends_with(s)) {
            StatusCode::FORBIDDEN
        } else if message.ends_with("Filter expression cannot be used with other filter parameters")
        {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::INTERNAL_SERVER_ERROR
        };
        Self::new(status, message)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.message)
    }
}

impl std::error::Error for ApiError {}

impl From<ServerError> for ApiError {
    fn from(e: ServerError) -> Self {
        match e {
            ServerError::BadRequest(m) => ApiError::bad_request(m),
            ServerError::NotFound(m) => ApiError::not_found(m),
            ServerError::PermissionDenied => {
                ApiError::new(StatusCode::FORBIDDEN, "Permission denied")
            }
            ServerError::Internal(m) => ApiError::from_message(m),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(status = self.status.as_u16(), error = %self.message, "request failed");
        } else if !self.message.is_empty() {
            tracing::debug!(status = self.status.as_u16(), error = %self.message, "request refused");
        }
        let mut resp = (self.status, self.message).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_errors_map_to_nomad_statuses() {
        assert_eq!(
            ApiError::from(ServerError::BadRequest("x".into())).status,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            ApiError::from(ServerError::NotFound("job not found".into())).status,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            ApiError::from(ServerError::PermissionDenied).status,
            StatusCode::FORBIDDEN
        );
        let e = ApiError::from(ServerError::Internal(
            "1 error occurred:\n\t* Missing job ID\n\n".into(),
        ));
        assert_eq!(e.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            ApiError::from(ServerError::Internal("rpc: Permission denied".into())).status,
            StatusCode::FORBIDDEN
        );
    }

    #[test]
    fn body_is_plain_text() {
        let r = ApiError::not_found("job not found").into_response();
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "text/plain; charset=utf-8"
        );
    }
}
