//! The JSON body and query-string extractors of msbd's routes: axum's, with their rejections
//! answered as every other error is, an [`msb_api::ErrorBody`] (400 `invalid`, or 415 when the
//! body is not JSON), as the API document says, instead of axum's plain-text 400/422.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::ApiError;

/// A JSON request body, or a JSON response.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<serde_json::Value>::from_request(request, state).await {
            Ok(axum::Json(value)) => Json::from_value(value),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

impl<T: DeserializeOwned> Json<T> {
    /// Parses a body already read.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ApiError> {
        let axum::Json(value) =
            axum::Json::<serde_json::Value>::from_bytes(bytes).map_err(json_rejection)?;
        Json::from_value(value)
    }

    /// JSON Schema's `integer` is any number with no fractional part, `8.0` as well as `8`;
    /// serde takes only the latter for an integer field, so integral numbers are made integers
    /// first (a float field takes either).
    fn from_value(mut value: serde_json::Value) -> Result<Self, ApiError> {
        integral_numbers_as_integers(&mut value);
        serde_json::from_value(value)
            .map(Json)
            .map_err(|e| ApiError::Invalid(format!("the JSON body does not fit: {e}")))
    }
}

fn integral_numbers_as_integers(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Number(n) if n.is_f64() => {
            let f = n.as_f64().unwrap_or(f64::NAN);
            if f.fract() == 0.0 && f >= i64::MIN as f64 && f < u64::MAX as f64 {
                *value = if f < 0.0 {
                    Value::from(f as i64)
                } else {
                    Value::from(f as u64)
                };
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integral_numbers_as_integers),
        Value::Object(fields) => fields.values_mut().for_each(integral_numbers_as_integers),
        _ => {}
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::MissingJsonContentType(e) => ApiError::UnsupportedMediaType(e.body_text()),
        other => ApiError::Invalid(other.body_text()),
    }
}

/// A query string.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| Query(value))
            .map_err(|rejection| ApiError::Invalid(rejection.body_text()))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn integral_numbers_become_integers() {
        let mut value = serde_json::json!({"a": 8.0, "b": [-2.0, 0.5], "c": "9.0", "d": 1e300});
        super::integral_numbers_as_integers(&mut value);
        assert_eq!(
            value,
            serde_json::json!({"a": 8, "b": [-2, 0.5], "c": "9.0", "d": 1e300})
        );
    }
}
