//! Alert sounds, because nobody watches the wall all the time: a tone per tier (synthesised at
//! start, no asset files) when a breach alert is raised or climbs, and a repeating alarm while
//! a critical one waits for acknowledgement. `--mute` silences the speaker; the decision is
//! still made and logged.

use std::time::{Duration, Instant};

use bevy::audio::{AudioPlayer, AudioSource, PlaybackSettings};
use bevy::prelude::*;

use super::alerts::{Tier, alert_lines, loudest_since};
use super::feed::WallModel;
use crate::protocol::TimestampMs;

/// A critical alert left unacknowledged sounds again this often.
pub const CRITICAL_REPEAT: Duration = Duration::from_secs(30);
const SAMPLE_RATE: u32 = 22_050;

/// No sound (`--mute`).
#[derive(Resource, Clone, Copy, Debug, Default)]
pub struct Mute(pub bool);

/// What the wall decided to sound (the speaker plays `pending`; tests and the log read the
/// rest).
#[derive(Resource, Debug, Default)]
pub struct SoundCues {
    /// The latest cue.
    pub last: Option<Tier>,
    /// Cues so far.
    pub count: u64,
    /// To be played this frame.
    pub pending: Option<Tier>,
    /// Alerts raised or climbed up to this feed time have been sounded.
    heard_ms: TimestampMs,
    critical_at: Option<Instant>,
    checked_at: Option<Instant>,
}

/// A mono 16-bit PCM WAV of `notes` (frequency Hz, seconds; 0 Hz is a rest), each with short
/// fades so it does not click.
pub fn wav(notes: &[(f32, f32)]) -> Vec<u8> {
    let mut samples: Vec<i16> = Vec::new();
    for &(hz, secs) in notes {
        let n = (secs * SAMPLE_RATE as f32) as usize;
        let fade = (0.005 * SAMPLE_RATE as f32) as usize;
        for i in 0..n {
            let t = i as f32 / SAMPLE_RATE as f32;
            let edge = (i.min(n - i) as f32 / fade as f32).min(1.0);
            let v = if hz > 0.0 {
                (t * hz * std::f32::consts::TAU).sin() * 0.45 * edge
            } else {
                0.0
            };
            samples.push((v * i16::MAX as f32) as i16);
        }
    }
    let data_len = (samples.len() * 2) as u32;
    let mut out = Vec::with_capacity(44 + data_len as usize);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&SAMPLE_RATE.to_le_bytes());
    out.extend_from_slice(&(SAMPLE_RATE * 2).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        out.extend_from_slice(&s.to_le_bytes());
    }
    out
}

/// The notes of each tier: a chime, two falling tones, an alarm.
pub fn notes(tier: Tier) -> &'static [(f32, f32)] {
    match tier {
        Tier::Quiet => &[],
        Tier::Attention => &[(880.0, 0.25)],
        Tier::Urgent => &[(880.0, 0.18), (0.0, 0.06), (660.0, 0.3)],
        Tier::Critical => &[
            (988.0, 0.15),
            (740.0, 0.15),
            (988.0, 0.15),
            (740.0, 0.15),
            (988.0, 0.15),
            (740.0, 0.3),
        ],
    }
}

#[derive(Resource)]
struct Tones([Handle<AudioSource>; 3]);

fn setup_tones(mut commands: Commands, sources: Option<ResMut<Assets<AudioSource>>>) {
    let Some(mut sources) = sources else {
        return; // no audio plugin (snapshots)
    };
    let mut tone = |tier| {
        sources.add(AudioSource {
            bytes: wav(notes(tier)).into(),
        })
    };
    commands.insert_resource(Tones([
        tone(Tier::Attention),
        tone(Tier::Urgent),
        tone(Tier::Critical),
    ]));
}

/// Decide what to sound: the loudest tier among alerts raised or climbed since the last
/// decision, and again every [`CRITICAL_REPEAT`] while a critical alert is unacknowledged.
pub fn alert_cues(
    model: Res<WallModel>,
    mut learnt: MessageReader<super::nav::Learnt>,
    mut cues: ResMut<SoundCues>,
) {
    // Read every frame, so nothing waits in the queue while there is no state.
    let alerts_moved = learnt.read().fold(false, |any, l| any | l.alerts());
    let Some(live) = model.live() else {
        return;
    };
    let mut cue = None;
    if alerts_moved {
        let tier = loudest_since(live, cues.heard_ms);
        cues.heard_ms = live
            .alerts
            .values()
            .map(|a| a.raised_at_ms.max(a.escalated_at_ms.unwrap_or(0)))
            .max()
            .unwrap_or(cues.heard_ms)
            .max(cues.heard_ms);
        if tier > Tier::Quiet {
            cue = Some(tier);
        }
    }
    if cues
        .checked_at
        .is_none_or(|t| t.elapsed() > Duration::from_secs(1))
    {
        cues.checked_at = Some(Instant::now());
        let critical_waiting = alert_lines(live, 1)
            .first()
            .is_some_and(|l| l.tier == Tier::Critical);
        if critical_waiting
            && cues
                .critical_at
                .is_none_or(|t| t.elapsed() > CRITICAL_REPEAT)
        {
            cue = Some(Tier::Critical);
        }
    }
    if let Some(tier) = cue {
        if tier == Tier::Critical {
            cues.critical_at = Some(Instant::now());
        }
        cues.last = Some(tier);
        cues.count += 1;
        cues.pending = Some(tier);
        tracing::info!(target: "datawall::wall", "alert sound: {tier:?}");
    }
}

/// Play the pending cue (unless muted).
fn play_cues(
    mut commands: Commands,
    mut cues: ResMut<SoundCues>,
    tones: Option<Res<Tones>>,
    mute: Res<Mute>,
) {
    let Some(tier) = cues.pending.take() else {
        return;
    };
    let (Some(tones), false) = (tones, mute.0) else {
        return;
    };
    let i = match tier {
        Tier::Quiet => return,
        Tier::Attention => 0,
        Tier::Urgent => 1,
        Tier::Critical => 2,
    };
    commands.spawn((AudioPlayer(tones.0[i].clone()), PlaybackSettings::DESPAWN));
}

pub(super) fn plugin(app: &mut App) {
    app.init_resource::<SoundCues>()
        .init_resource::<Mute>()
        .add_systems(Startup, setup_tones)
        .add_systems(
            Update,
            (alert_cues, play_cues)
                .chain()
                .after(super::nav::WallSet::Input),
        );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tones_are_valid_wavs_of_the_right_length_and_differ_by_tier() {
        let a = wav(notes(Tier::Attention));
        assert_eq!(&a[..4], b"RIFF");
        assert_eq!(&a[8..16], b"WAVEfmt ");
        let data = u32::from_le_bytes(a[40..44].try_into().unwrap()) as usize;
        assert_eq!(data, a.len() - 44);
        assert_eq!(data, (0.25 * SAMPLE_RATE as f32) as usize * 2);
        let loudest = a[44..]
            .chunks(2)
            .map(|c| i16::from_le_bytes([c[0], c[1]]).unsigned_abs())
            .max()
            .unwrap();
        assert!(loudest > 10_000, "audible: peak {loudest}");
        assert!(wav(notes(Tier::Critical)).len() > wav(notes(Tier::Urgent)).len());
        assert!(notes(Tier::Quiet).is_empty(), "a handled alert is silent");
    }
}
