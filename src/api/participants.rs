//! Changing a participant at run time: `PATCH /rooms/{room}/participants/{id}` with
//! `{"quality": "low"}` (a tier name or `auto`), and the `?quality=` of a join.

use std::collections::HashMap;

use serde::Deserialize;
use warp::http::StatusCode;
use warp::reply::{Reply, Response};

use super::{ApiError, BodyStream, Shared, parse_json, read_json, room_name};
use crate::auth::{Access, Permission};
use crate::media::tier::{Quality, Tier, parse_quality};
use crate::room::{ParticipantId, UpdateError};

/// The JSON body of a `PATCH`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Update {
    quality: Option<String>,
}

fn unknown_quality(text: &str, tiers: &[Tier]) -> ApiError {
    let names: Vec<&str> = std::iter::once("auto").chain(tiers.iter().map(|t| t.name.as_str())).collect();
    ApiError::new(StatusCode::BAD_REQUEST, format!("unknown quality {text:?} (one of {})", names.join(", ")))
}

/// The join's `?quality=`: `auto` when absent.
pub(crate) fn quality_param(query: &HashMap<String, String>, tiers: &[Tier]) -> Result<Quality, ApiError> {
    match query.get("quality") {
        None => Ok(Quality::Auto),
        Some(text) => parse_quality(text, tiers).ok_or_else(|| unknown_quality(text, tiers)),
    }
}

impl From<UpdateError> for ApiError {
    fn from(e: UpdateError) -> Self {
        let status = match e {
            UpdateError::UnknownParticipant => StatusCode::NOT_FOUND,
            UpdateError::NotYours => StatusCode::FORBIDDEN,
            UpdateError::NoVideo => StatusCode::CONFLICT,
        };
        Self::new(status, e.to_string())
    }
}

/// The quality a `PATCH` body asks for (400 naming what is wrong). Pure, so the
/// fuzz targets run exactly what the route runs.
pub(crate) fn parse_update(body: &[u8], tiers: &[Tier]) -> Result<Quality, ApiError> {
    let update: Update = parse_json(body)?;
    let Some(text) = update.quality else {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "nothing to change: the body has no \"quality\""));
    };
    parse_quality(&text, tiers).ok_or_else(|| unknown_quality(&text, tiers))
}

/// `PATCH /rooms/{room}/participants/{id}`: the participant itself (same token
/// identity) or an admin may change what it receives.
pub(super) async fn update(
    room: String,
    id: String,
    content_type: Option<String>,
    authorization: Option<String>,
    body: BodyStream,
    api: &Shared,
) -> Result<Response, ApiError> {
    let room = room_name(&room)?;
    let by = match api.authorize(authorization.as_deref(), Some(room.as_str()), &[])? {
        Access::Token(claims) if !claims.allows(Permission::Admin) => Some(claims.sub),
        _ => None,
    };
    let body = read_json(content_type.as_deref(), body).await?;
    let quality = parse_update(&body, &api.rooms.context().config.media.tiers())?;
    let info = api.rooms.set_quality(&room, ParticipantId::from_path(&id), by, quality).await?;
    Ok(warp::reply::json(&info).into_response())
}

/// The JSON body of a mute: either may be absent (unchanged).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MuteBody {
    audio: Option<bool>,
    video: Option<bool>,
}

/// What a mute body changes, `(audio, video)`: at least one of them (400 otherwise).
pub(crate) fn parse_mute(body: &[u8]) -> Result<(Option<bool>, Option<bool>), ApiError> {
    let mute: MuteBody = parse_json(body)?;
    if mute.audio.is_none() && mute.video.is_none() {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "nothing to mute: give \"audio\" and/or \"video\""));
    }
    Ok((mute.audio, mute.video))
}

/// `POST /rooms/{room}/participants/{id}/mute`, a moderator's (or an admin's) call:
/// muted audio is in no mix, muted video is a black cell.
pub(super) async fn mute(
    room: String,
    id: String,
    content_type: Option<String>,
    authorization: Option<String>,
    body: BodyStream,
    api: &Shared,
) -> Result<Response, ApiError> {
    let room = room_name(&room)?;
    api.authorize(authorization.as_deref(), Some(room.as_str()), &[Permission::Moderate])?;
    let (audio, video) = parse_mute(&read_json(content_type.as_deref(), body).await?)?;
    let info = api.rooms.mute(&room, ParticipantId::from_path(&id), audio, video).await?;
    Ok(warp::reply::json(&info).into_response())
}
