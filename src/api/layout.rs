//! `PUT /rooms/{room}/layout`: how the composite is arranged, `{"layout": "grid"}` or
//! `{"layout": "speaker", "pin": "<participant id>" | null}`. A moderator's (or an
//! admin's) call when auth is on.

use serde::Deserialize;
use warp::http::StatusCode;
use warp::reply::{Reply, Response};

use super::{ApiError, BodyStream, Shared, parse_json, read_json, room_name};
use crate::auth::Permission;
use crate::room::{LayoutChoice, LayoutError, ParticipantId};

/// The JSON body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LayoutBody {
    layout: String,
    #[serde(default)]
    pin: Option<String>,
}

impl From<LayoutError> for ApiError {
    fn from(e: LayoutError) -> Self {
        let status = match e {
            LayoutError::UnknownRoom => StatusCode::NOT_FOUND,
            LayoutError::UnknownPin => StatusCode::BAD_REQUEST,
        };
        Self::new(status, e.to_string())
    }
}

/// Parses the body into a layout (400 naming what is wrong).
pub(crate) fn parse(body: &[u8]) -> Result<LayoutChoice, ApiError> {
    let body: LayoutBody = parse_json(body)?;
    match (body.layout.as_str(), body.pin) {
        ("grid", None) => Ok(LayoutChoice::Grid),
        ("grid", Some(_)) => Err(ApiError::new(StatusCode::BAD_REQUEST, "a pin needs the speaker layout")),
        ("speaker", pin) => Ok(LayoutChoice::Speaker { pin: pin.map(|p| ParticipantId::from_path(&p)) }),
        (other, _) => Err(ApiError::new(StatusCode::BAD_REQUEST, format!("unknown layout {other:?} (grid, speaker)"))),
    }
}

/// `PUT /rooms/{room}/layout` -> 200 the room state.
pub(super) async fn put(
    room: String,
    content_type: Option<String>,
    authorization: Option<String>,
    body: BodyStream,
    api: &Shared,
) -> Result<Response, ApiError> {
    let room = room_name(&room)?;
    api.authorize(authorization.as_deref(), Some(room.as_str()), &[Permission::Moderate])?;
    let layout = parse(&read_json(content_type.as_deref(), body).await?)?;
    let state = api.rooms.set_layout(&room, layout).await?;
    Ok(warp::reply::json(&state).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_parse_to_layouts_or_say_what_is_wrong() {
        assert_eq!(parse(br#"{"layout":"grid"}"#).unwrap(), LayoutChoice::Grid);
        assert_eq!(parse(br#"{"layout":"speaker"}"#).unwrap(), LayoutChoice::Speaker { pin: None });
        assert_eq!(parse(br#"{"layout":"speaker","pin":null}"#).unwrap(), LayoutChoice::Speaker { pin: None });
        assert_eq!(
            parse(br#"{"layout":"speaker","pin":"abc"}"#).unwrap(),
            LayoutChoice::Speaker { pin: Some(ParticipantId::from_path("abc")) }
        );
        for (body, says) in [
            (&br#"{"layout":"mosaic"}"#[..], "unknown layout"),
            (br#"{"layout":"grid","pin":"abc"}"#, "needs the speaker layout"),
            (br#"{"pin":"abc"}"#, "invalid JSON"),
            (br#"{"layout":"grid","extra":1}"#, "invalid JSON"),
            (b"grid", "invalid JSON"),
        ] {
            let e = parse(body).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST);
            assert!(e.message.contains(says), "{}: {}", String::from_utf8_lossy(body), e.message);
        }
    }
}
