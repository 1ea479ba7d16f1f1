//! The contract's error shape: `{"error": "..."}` with a fitting status, and the
//! mapping from each module's error enum to a status.

use warp::http::StatusCode;
use warp::reply::{self, Reply, Response};

use crate::auth::AuthError;
use crate::room::{JoinError, LeaveError, RecordingError};

/// An HTTP error response.
#[derive(Debug)]
pub struct ApiError {
    /// Status code.
    pub status: StatusCode,
    /// Human-readable reason.
    pub message: String,
    /// Seconds after which a retry may succeed (`Retry-After`, with 503 and 429).
    pub retry_after_s: Option<u32>,
    /// Why, in a word, for `mcu_join_failures_total{reason}` when a join fails.
    pub reason: &'static str,
}

impl ApiError {
    /// An error with `status` and `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        let reason = match status.as_u16() {
            401 => "unauthorized",
            403 => "forbidden",
            404 => "not_found",
            413 => "too_large",
            415 => "content_type",
            429 => "rate_limited",
            503 => "unavailable",
            500..=599 => "internal",
            _ => "bad_request",
        };
        Self { status, message: message.into(), retry_after_s: None, reason }
    }

    /// Adds `Retry-After`.
    pub fn retry_after(mut self, seconds: u32) -> Self {
        self.retry_after_s = Some(seconds);
        self
    }
}

impl Reply for ApiError {
    fn into_response(self) -> Response {
        let mut response =
            reply::with_status(reply::json(&serde_json::json!({ "error": self.message })), self.status).into_response();
        if let Some(seconds) = self.retry_after_s {
            response.headers_mut().insert(warp::http::header::RETRY_AFTER, seconds.into());
        }
        response
    }
}

impl From<JoinError> for ApiError {
    fn from(e: JoinError) -> Self {
        // A server that is shutting down is back (or replaced) soon; a full one later.
        let retry_after_s = match &e {
            JoinError::ShuttingDown => Some(5),
            JoinError::RoomFull(_)
            | JoinError::ViewersFull(_)
            | JoinError::ServerFull(_)
            | JoinError::OverBudget(_) => Some(30),
            _ => None,
        };
        let status = match &e {
            JoinError::Offer(_) => StatusCode::BAD_REQUEST,
            JoinError::Negotiation(_) => StatusCode::BAD_REQUEST,
            JoinError::RoomFull(_)
            | JoinError::ViewersFull(_)
            | JoinError::ServerFull(_)
            | JoinError::OverBudget(_)
            | JoinError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            JoinError::UnknownRoom => StatusCode::NOT_FOUND,
            JoinError::Media(_) | JoinError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self { status, message: e.to_string(), retry_after_s, reason: e.reason() }
    }
}

impl From<LeaveError> for ApiError {
    fn from(e: LeaveError) -> Self {
        match e {
            LeaveError::UnknownParticipant => Self::new(StatusCode::NOT_FOUND, "unknown participant"),
            LeaveError::NotYours => Self::new(StatusCode::FORBIDDEN, e.to_string()),
        }
    }
}

impl From<RecordingError> for ApiError {
    fn from(e: RecordingError) -> Self {
        let status = match &e {
            RecordingError::UnknownRoom | RecordingError::NotRecording => StatusCode::NOT_FOUND,
            RecordingError::AlreadyRecording => StatusCode::CONFLICT,
            RecordingError::Store(_) | RecordingError::Media(_) => StatusCode::INTERNAL_SERVER_ERROR,
            RecordingError::OverBudget(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        let mut error = Self::new(status, e.to_string());
        if matches!(e, RecordingError::OverBudget(_)) {
            error.retry_after_s = Some(30);
        }
        error
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        let status = match &e {
            AuthError::Missing | AuthError::Invalid(_) => StatusCode::UNAUTHORIZED,
            AuthError::Forbidden(_) => StatusCode::FORBIDDEN,
        };
        Self::new(status, e.to_string())
    }
}

/// An [`ApiError`] raised inside a filter chain, answered as is by [`recover`].
#[derive(Debug)]
struct Rejected(ApiError);

impl warp::reject::Reject for Rejected {}

/// Rejects the request with `error` (for filters that must reject, not reply).
pub fn rejection(error: ApiError) -> warp::Rejection {
    warp::reject::custom(Rejected(error))
}

/// Turns warp's own rejections (no route, wrong method, ...) into the JSON shape.
pub async fn recover(rejection: warp::Rejection) -> Result<Response, std::convert::Infallible> {
    let error = if let Some(Rejected(e)) = rejection.find::<Rejected>() {
        ApiError { status: e.status, message: e.message.clone(), retry_after_s: e.retry_after_s, reason: e.reason }
    } else if rejection.find::<warp::cors::CorsForbidden>().is_some() {
        ApiError::new(StatusCode::FORBIDDEN, "origin not allowed (CORS)")
    } else if rejection.is_not_found() {
        ApiError::new(StatusCode::NOT_FOUND, "not found")
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
    } else if rejection.find::<warp::reject::PayloadTooLarge>().is_some() {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "request body too large")
    } else if let Some(e) = rejection.find::<warp::reject::InvalidQuery>() {
        ApiError::new(StatusCode::BAD_REQUEST, e.to_string())
    } else if let Some(e) = rejection.find::<warp::reject::InvalidHeader>() {
        ApiError::new(StatusCode::BAD_REQUEST, e.to_string())
    } else {
        tracing::debug!(?rejection, "unhandled rejection");
        ApiError::new(StatusCode::BAD_REQUEST, "bad request")
    };
    Ok(error.into_response())
}
