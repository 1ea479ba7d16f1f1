//! A join, from offer to participant, without ever blocking the room:
//!
//! 1. the offer is inspected (a `400` names what is wrong before any room is touched);
//! 2. the registry holds the room open for this join ([`PendingJoin`]) and the room
//!    reserves a place and hands out the tracks to send (a quick message);
//! 3. the offer is negotiated and ICE gathered **outside** the room, in a task of its
//!    own, so the room keeps handling PLIs, leaves and state meanwhile, and a client
//!    that disconnects mid-join cannot leave a half-built peer behind;
//! 4. the negotiated peer is handed to the room, which admits it (building its media
//!    on the first admission) or refuses it (the peer is closed).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

use super::budget::{EncodeLoad, RoomLoad};
use super::registry::{PendingJoin, Rooms};
use super::task::{Admission, RoomCommand, RoomEvent};
use super::{JoinAnswer, JoinError, JoinRequest, ParticipantId, Role, RoomName};
use crate::rtc::offer::{OfferSummary, inspect_offer};
use crate::rtc::peer::{self, NegotiationError, OutgoingTracks, PeerEvent};

/// What the room reserved for a join.
pub(super) struct Reservation {
    /// The participant id, if the join completes.
    pub id: ParticipantId,
    /// The tracks the server sends on this peer.
    pub tracks: OutgoingTracks,
    /// Where the peer's events go.
    pub events: tokio::sync::mpsc::UnboundedSender<RoomEvent>,
}

/// Runs one join to completion (see the module documentation).
pub(super) async fn join(rooms: &Arc<Rooms>, room: &RoomName, request: JoinRequest) -> Result<JoinAnswer, JoinError> {
    let summary = request.role.restrict(inspect_offer(&request.offer)?)?;
    let budget = rooms.admit(join_cores(rooms, room, &summary))?;
    let pending = rooms.hold_for_join(room, request.role != Role::Viewer)?;
    // Everything from the reservation on runs in a task of its own: the HTTP request
    // future is dropped when its client disconnects, and a join cut anywhere in the
    // middle must still release what it holds.
    let (answer_tx, answer_rx) = oneshot::channel();
    let ctx = Arc::clone(rooms.context());
    tokio::spawn(async move {
        let mut pending = pending;
        let result = reserve_negotiate_admit(&ctx, &mut pending, request, summary, &answer_tx).await;
        if let Err(Ok(answer)) = answer_tx.send(result) {
            // The client went away after the room admitted it: undo the join.
            let (reply, _) = oneshot::channel();
            let _ = pending.commands.send(RoomCommand::Leave { id: answer.id, by: None, reply }).await;
        }
        drop(pending);
        drop(budget);
    });
    answer_rx.await.unwrap_or_else(|_| Err(JoinError::Internal("join task ended without an answer".into())))
}

/// What this join adds to the server's load: see [`RoomLoad::join_cores`]. A
/// receiver is counted at the first tier, where it starts.
fn join_cores(rooms: &Rooms, room: &RoomName, offer: &OfferSummary) -> f64 {
    let tier = rooms.context().config.media.tiers().into_iter().next();
    let receives = offer.received_video().zip(tier).map(|(format, tier)| EncodeLoad::of(format.codec, &tier));
    RoomLoad::join_cores(rooms.room_load(room).as_ref(), offer.published_video().is_some(), receives)
}

async fn reserve_negotiate_admit(
    ctx: &crate::room::ServerContext,
    pending: &mut PendingJoin,
    request: JoinRequest,
    summary: OfferSummary,
    requester: &oneshot::Sender<Result<JoinAnswer, JoinError>>,
) -> Result<JoinAnswer, JoinError> {
    let role = request.role;
    let reservation = ask(pending, |reply| RoomCommand::Reserve { summary: summary.clone(), role, reply }).await??;
    pending.reserved = Some(reservation.id.clone());
    let id = reservation.id.clone();
    let events = reservation.events.clone();
    let peer_id = id.clone();
    let on_event: Arc<dyn Fn(PeerEvent) + Send + Sync> = Arc::new(move |event| {
        let _ = events.send(RoomEvent::Peer(peer_id.clone(), event));
    });
    let gather_timeout = Duration::from_millis(ctx.config.server.join_timeout_ms);
    let peer = peer::answer_offer(&ctx.engine, request.offer, &summary, reservation.tracks, gather_timeout, on_event)
        .await
        .map_err(|e| match e {
            NegotiationError::WebRtc(e) => JoinError::Negotiation(e.to_string()),
            NegotiationError::GatheringTimeout(ms) => {
                JoinError::Internal(format!("ICE candidate gathering did not complete within {ms} ms"))
            }
            NegotiationError::NoCandidates => JoinError::Internal("the server has no usable ICE candidate".into()),
        })?;
    if requester.is_closed() {
        // The HTTP client disconnected while we negotiated: nobody will use this peer.
        peer.close().await;
        return Err(JoinError::Internal("the client went away during negotiation".into()));
    }
    let answer = peer.answer.clone();
    let admission = Admission {
        id: id.clone(),
        peer,
        summary,
        name: request.name,
        owner: request.owner,
        quality: request.quality,
        role,
    };
    let (reply, admitted) = oneshot::channel();
    if let Err(tokio::sync::mpsc::error::SendError(RoomCommand::Admit { admission, .. })) =
        pending.commands.send(RoomCommand::Admit { admission, reply }).await
    {
        // Only at shutdown: the room stopped taking commands.
        admission.peer.close().await;
        return Err(JoinError::ShuttingDown);
    }
    admitted.await.map_err(|_| JoinError::ShuttingDown)??;
    Ok(JoinAnswer { id, answer })
}

/// Sends a command to the room a join holds and waits for the reply. The room only
/// stops answering at shutdown (a held room does not close otherwise).
async fn ask<T>(
    pending: &PendingJoin,
    command: impl FnOnce(oneshot::Sender<T>) -> RoomCommand,
) -> Result<T, JoinError> {
    let (reply, rx) = oneshot::channel();
    pending.commands.send(command(reply)).await.map_err(|_| JoinError::ShuttingDown)?;
    rx.await.map_err(|_| JoinError::ShuttingDown)
}
