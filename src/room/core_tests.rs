use super::*;

const VP8: VideoCodec = VideoCodec::Vp8;
const H264: VideoCodec = VideoCodec::H264;

fn tiers() -> Vec<Tier> {
    [("high", 1280, 720, 30, 1_500_000), ("medium", 640, 360, 30, 600_000), ("low", 320, 180, 15, 150_000)]
        .into_iter()
        .map(|(name, width, height, fps, bitrate_bps)| Tier { name: name.into(), width, height, fps, bitrate_bps })
        .collect()
}

fn core() -> RoomCore {
    RoomCore::new(tiers(), (1280, 720), Duration::from_millis(500))
}

fn id(name: &str) -> ParticipantId {
    ParticipantId::from_path(name)
}

fn format(codec: VideoCodec) -> VideoFormat {
    match codec {
        VideoCodec::Vp8 => VideoFormat::accept(codec, 96, "").unwrap(),
        VideoCodec::H264 => {
            VideoFormat::accept(codec, 102, "packetization-mode=1;profile-level-id=42e01f;level-asymmetry-allowed=1")
                .unwrap()
        }
    }
}

fn join(core: &mut RoomCore, now: Instant, who: &str, publishes: Option<VideoCodec>, receives: Option<VideoCodec>) {
    let receives = receives.map(|c| (format(c), Quality::Auto, None));
    core.handle(now, Input::Join { id: id(who), publishes, receives });
}

fn drain(core: &mut RoomCore) -> Vec<Action> {
    std::iter::from_fn(|| core.poll_action()).collect()
}

fn key(codec: VideoCodec, tier: usize) -> EncodeKey {
    EncodeKey { codec, tier }
}

fn started(actions: &[Action]) -> Vec<EncodeKey> {
    actions.iter().filter_map(|a| if let Action::StartEncode(k) = a { Some(*k) } else { None }).collect()
}

fn stopped(actions: &[Action]) -> Vec<EncodeKey> {
    actions.iter().filter_map(|a| if let Action::StopEncode(k) = a { Some(*k) } else { None }).collect()
}

#[test]
fn receivers_of_one_codec_and_tier_share_one_encode() {
    let t0 = Instant::now();
    let mut c = core();
    join(&mut c, t0, "a", Some(VP8), Some(VP8));
    let first = drain(&mut c);
    assert_eq!(started(&first), [key(VP8, 0)]);
    assert!(first.contains(&Action::Route(id("a"), key(VP8, 0))));
    join(&mut c, t0, "b", Some(H264), Some(VP8));
    let second = drain(&mut c);
    assert!(started(&second).is_empty(), "{second:?}");
    assert!(second.contains(&Action::Route(id("b"), key(VP8, 0))));
    join(&mut c, t0, "c", None, Some(H264));
    assert_eq!(started(&drain(&mut c)), [key(H264, 0)], "an H.264 receiver gets its own encode");
}

#[test]
fn an_encode_stops_with_its_last_receiver_and_not_before() {
    let t0 = Instant::now();
    let mut c = core();
    join(&mut c, t0, "a", None, Some(VP8));
    join(&mut c, t0, "b", None, Some(VP8));
    drain(&mut c);
    c.handle(t0, Input::Leave(id("a")));
    assert!(stopped(&drain(&mut c)).is_empty());
    c.handle(t0, Input::Leave(id("b")));
    assert_eq!(stopped(&drain(&mut c)), [key(VP8, 0)]);
}

#[test]
fn a_recording_keeps_its_encode_running() {
    let t0 = Instant::now();
    let mut c = core();
    c.handle(t0, Input::Consumer(key(H264, 0), true));
    assert_eq!(started(&drain(&mut c)), [key(H264, 0)]);
    join(&mut c, t0, "a", None, Some(H264));
    c.handle(t0, Input::Leave(id("a")));
    assert!(stopped(&drain(&mut c)).is_empty());
    c.handle(t0, Input::Consumer(key(H264, 0), false));
    assert_eq!(stopped(&drain(&mut c)), [key(H264, 0)]);
}

#[test]
fn consumers_of_one_encode_are_counted() {
    // An MP4 recording and a live stream share the H.264 high encode: it runs until
    // the last of them lets go.
    let t0 = Instant::now();
    let mut c = core();
    c.handle(t0, Input::Consumer(key(H264, 0), true));
    c.handle(t0, Input::Consumer(key(H264, 0), true));
    assert_eq!(started(&drain(&mut c)), [key(H264, 0)], "one encode for both");
    c.handle(t0, Input::Consumer(key(H264, 0), false));
    assert!(stopped(&drain(&mut c)).is_empty(), "the other consumer still needs it");
    c.handle(t0, Input::Consumer(key(H264, 0), false));
    assert_eq!(stopped(&drain(&mut c)), [key(H264, 0)]);
    c.handle(t0, Input::Consumer(key(H264, 0), false));
    assert!(drain(&mut c).is_empty(), "an extra release is harmless");
}

#[test]
fn a_pinned_quality_and_a_patch_pick_the_tier() {
    let t0 = Instant::now();
    let mut c = core();
    c.handle(t0, Input::Join { id: id("a"), publishes: None, receives: Some((format(VP8), Quality::Pinned(2), None)) });
    assert_eq!(started(&drain(&mut c)), [key(VP8, 2)]);
    c.handle(t0, Input::Switched(id("a"), key(VP8, 2)));
    assert_eq!(c.receiving(&id("a")), Some(Receiving { codec: VP8, tier: 2, auto: false }));
    c.set_quality(t0, &id("a"), Quality::Pinned(1)).unwrap();
    let actions = drain(&mut c);
    assert_eq!(started(&actions), [key(VP8, 1)]);
    assert!(actions.contains(&Action::Route(id("a"), key(VP8, 1))));
    assert!(stopped(&actions).is_empty(), "low keeps running until the receiver switched");
    c.handle(t0, Input::Switched(id("a"), key(VP8, 1)));
    assert_eq!(stopped(&drain(&mut c)), [key(VP8, 2)]);
    assert_eq!(c.set_quality(t0, &id("nobody"), Quality::Auto), Err(QualityError::UnknownParticipant));
}

#[test]
fn the_h264_level_caps_the_tier() {
    let t0 = Instant::now();
    let mut c = core();
    let level_3 = VideoFormat::accept(H264, 102, "packetization-mode=1;profile-level-id=42e01e").unwrap();
    c.handle(t0, Input::Join { id: id("tv"), publishes: None, receives: Some((level_3, Quality::Auto, None)) });
    assert_eq!(started(&drain(&mut c)), [key(H264, 1)], "level 3 decodes 640x360, not 1280x720");
    c.set_quality(t0, &id("tv"), Quality::Pinned(0)).unwrap();
    assert!(drain(&mut c).is_empty(), "pinned high stays at the best tier it decodes");
}

#[test]
fn an_offer_bandwidth_picks_the_starting_tier() {
    let t0 = Instant::now();
    let mut c = core();
    c.handle(
        t0,
        Input::Join { id: id("a"), publishes: None, receives: Some((format(VP8), Quality::Auto, Some(700_000))) },
    );
    assert_eq!(started(&drain(&mut c)), [key(VP8, 1)]);
}

#[test]
fn loss_moves_an_auto_receiver_down_and_quiet_moves_it_back_up() {
    let t0 = Instant::now();
    let mut c = core();
    join(&mut c, t0, "a", None, Some(VP8));
    c.handle(t0, Input::Switched(id("a"), key(VP8, 0)));
    drain(&mut c);
    let lossy = Feedback { loss: Some(0.8), remb_bps: None };
    c.handle(t0 + Duration::from_secs(1), Input::Feedback(id("a"), lossy, 1_600_000.0));
    let actions = drain(&mut c);
    assert!(actions.contains(&Action::Route(id("a"), key(VP8, 2))), "{actions:?}");
    assert!(actions.contains(&Action::TierChanged(id("a"), 2)));
    c.handle(t0 + Duration::from_secs(1), Input::Switched(id("a"), key(VP8, 2)));
    assert_eq!(stopped(&drain(&mut c)), [key(VP8, 0)]);
    // Ten clean seconds later it tries medium.
    let due = c.poll_timeout().unwrap();
    assert_eq!(due, t0 + Duration::from_secs(11));
    c.handle_timeout(due);
    assert!(drain(&mut c).contains(&Action::Route(id("a"), key(VP8, 1))));
    assert_eq!(c.receiving(&id("a")).map(|r| r.tier), Some(1));
}

#[test]
fn keyframe_requests_are_coalesced_per_encode() {
    let t0 = Instant::now();
    let mut c = core();
    join(&mut c, t0, "a", None, Some(VP8));
    join(&mut c, t0, "b", None, Some(H264));
    drain(&mut c);
    let later = t0 + Duration::from_secs(5);
    c.handle(later, Input::ReceiverNeedsKeyframe(id("a")));
    c.handle(later, Input::ReceiverNeedsKeyframe(id("a")));
    c.handle(later, Input::ReceiverNeedsKeyframe(id("b")));
    let actions = drain(&mut c);
    assert_eq!(
        actions,
        [Action::ForceKeyframe(key(VP8, 0)), Action::ForceKeyframe(key(H264, 0))],
        "one keyframe per encode at once; a lossy VP8 receiver does not cost the H.264 ones"
    );
    let due = c.poll_timeout().unwrap();
    assert_eq!(due, later + Duration::from_millis(500));
    c.handle_timeout(due);
    assert_eq!(drain(&mut c), [Action::ForceKeyframe(key(VP8, 0))], "the deferred request, served");
}

/// A recording starting right after a receiver's keyframe gets its own at once: its
/// file starts at a keyframe, and waiting out the receivers' window would cut up to
/// 500 ms off its start (seen: a recording shorter than the wall time it covered).
#[test]
fn a_recording_gets_its_keyframe_at_once_inside_a_coalescing_window() {
    let t0 = Instant::now();
    let mut c = core();
    join(&mut c, t0, "a", None, Some(VP8));
    drain(&mut c);
    let later = t0 + Duration::from_secs(5);
    c.handle(later, Input::ReceiverNeedsKeyframe(id("a")));
    assert_eq!(drain(&mut c), [Action::ForceKeyframe(key(VP8, 0))]);
    let recording = later + Duration::from_millis(100);
    c.handle(recording, Input::Consumer(key(VP8, 0), true));
    c.handle(recording, Input::EncodeNeedsKeyframe(key(VP8, 0)));
    assert_eq!(drain(&mut c), [Action::ForceKeyframe(key(VP8, 0))], "not deferred to the window's end");
    // Receivers' requests are coalesced from the forced keyframe on.
    c.handle(recording + Duration::from_millis(50), Input::ReceiverNeedsKeyframe(id("a")));
    assert_eq!(drain(&mut c), []);
    assert_eq!(c.poll_timeout(), Some(recording + Duration::from_millis(500)));
}

#[test]
fn the_layout_holds_video_publishers_in_join_order() {
    let t0 = Instant::now();
    let mut c = core();
    join(&mut c, t0, "a", Some(VP8), Some(VP8));
    join(&mut c, t0, "viewer", None, Some(VP8));
    join(&mut c, t0, "b", Some(H264), None);
    let layouts: Vec<Vec<ParticipantId>> = drain(&mut c)
        .into_iter()
        .filter_map(|a| if let Action::Layout(l) = a { Some(l.into_iter().map(|(id, _)| id).collect()) } else { None })
        .collect();
    assert_eq!(layouts.last().unwrap(), &[id("a"), id("b")]);
    c.handle(t0, Input::Leave(id("a")));
    let last = drain(&mut c).into_iter().rev().find_map(|a| if let Action::Layout(l) = a { Some(l) } else { None });
    assert_eq!(last.unwrap(), [(id("b"), Rect { x: 0, y: 0, width: 1280, height: 720 })]);
}

#[test]
fn publishers_get_plis_rate_limited() {
    let t0 = Instant::now();
    let mut c = core();
    join(&mut c, t0, "a", Some(VP8), None);
    drain(&mut c);
    c.handle(t0, Input::PublisherNeedsKeyframe(id("a")));
    c.handle(t0 + Duration::from_millis(100), Input::PublisherNeedsKeyframe(id("a")));
    assert_eq!(drain(&mut c), [Action::Pli(id("a"))]);
    c.handle_timeout(t0 + Duration::from_millis(500));
    assert_eq!(drain(&mut c), [Action::Pli(id("a"))]);
}

fn last_layout(actions: &[Action]) -> Option<Vec<(ParticipantId, Rect)>> {
    actions.iter().rev().find_map(|a| if let Action::Layout(cells) = a { Some(cells.clone()) } else { None })
}

fn main_area(cells: &[(ParticipantId, Rect)]) -> Option<&str> {
    cells.iter().find(|(_, r)| r.y == 0 && r.width == 1280).map(|(id, _)| id.as_str())
}

fn talking(who: &str) -> Input {
    let levels =
        ["a", "b", "c"].iter().map(|p| VoiceLevel { id: id(p), speaking_dbfs: (*p == who).then_some(-30.0) }).collect();
    Input::VoiceLevels(levels)
}

#[test]
fn the_speaker_layout_features_the_pin_else_the_speaker_else_the_first() {
    let t0 = Instant::now();
    let mut c = core();
    for who in ["a", "b", "c"] {
        join(&mut c, t0, who, Some(VP8), Some(VP8));
    }
    drain(&mut c);
    assert_eq!(c.set_layout(LayoutChoice::Speaker { pin: None }), Ok(()));
    assert_eq!(main_area(&last_layout(&drain(&mut c)).unwrap()), Some("a"), "nobody spoke: the first");

    // C talks for a second: she has the floor and the main area.
    let mut actions = Vec::new();
    for ms in (0..=1000).step_by(200) {
        c.handle(t0 + Duration::from_millis(ms), talking("c"));
        actions.extend(drain(&mut c));
    }
    assert!(actions.contains(&Action::Speaker(Some(id("c")))), "{actions:?}");
    assert_eq!(c.speaker(), Some(&id("c")));
    assert_eq!(main_area(&last_layout(&actions).unwrap()), Some("c"));

    // A pin wins over the speaker; an unknown pin is refused and changes nothing.
    assert_eq!(c.set_layout(LayoutChoice::Speaker { pin: Some(id("b")) }), Ok(()));
    assert_eq!(main_area(&last_layout(&drain(&mut c)).unwrap()), Some("b"));
    assert_eq!(c.set_layout(LayoutChoice::Speaker { pin: Some(id("zed")) }), Err(LayoutError::UnknownPin));
    assert!(drain(&mut c).is_empty());
    assert_eq!(c.layout().pin(), Some(&id("b")));

    // The pinned one leaves: the speaker is featured again.
    c.handle(t0 + Duration::from_secs(2), Input::Leave(id("b")));
    assert_eq!(main_area(&last_layout(&drain(&mut c)).unwrap()), Some("c"));
    assert_eq!(c.layout(), &LayoutChoice::Speaker { pin: None });

    // The speaker leaves: nobody has the floor, the first is featured.
    c.handle(t0 + Duration::from_secs(3), Input::Leave(id("c")));
    let actions = drain(&mut c);
    assert!(actions.contains(&Action::Speaker(None)));
    assert_eq!(main_area(&last_layout(&actions).unwrap()), Some("a"));

    // Back to the grid.
    assert_eq!(c.set_layout(LayoutChoice::Grid), Ok(()));
    assert_eq!(last_layout(&drain(&mut c)).unwrap()[0].1, Rect { x: 0, y: 0, width: 1280, height: 720 });
}

#[test]
fn the_grid_does_not_move_when_the_speaker_changes() {
    let t0 = Instant::now();
    let mut c = core();
    for who in ["a", "b", "c"] {
        join(&mut c, t0, who, Some(VP8), Some(VP8));
    }
    drain(&mut c);
    let mut actions = Vec::new();
    for ms in (0..=1200).step_by(200) {
        c.handle(t0 + Duration::from_millis(ms), talking("b"));
        actions.extend(drain(&mut c));
    }
    assert_eq!(actions, vec![Action::Speaker(Some(id("b")))]);
}
