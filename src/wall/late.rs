//! Fixes that arrive while a frame is prepared are drawn in that frame. The feed is drained at
//! the start of each update (`feed::drain_feed`); with pipelined rendering the update then
//! waits for the render thread to finish the previous frame before its own is extracted, and
//! a fix that arrived during the update or that wait used to wait for the next update and be
//! drawn a frame later. At extraction, the last moment before a frame is drawn, this drains
//! the feed again (a small budget), glides the volunteers that moved to their new fixes and
//! writes their glides straight into the markers' GPU buffer, so the frame about to be drawn
//! shows them. The main world's copy of the buffer is rewritten in the next update as usual.

use std::time::Duration;

use bevy::diagnostic::FrameCount;
use bevy::prelude::*;
use bevy::render::render_asset::RenderAssets;
use bevy::render::renderer::RenderQueue;
use bevy::render::storage::{GpuShaderBuffer, ShaderBuffer};
use bevy::render::{ExtractSchedule, MainWorld, Render, RenderApp, RenderSystems};

use super::feed::{FeedChannel, WallModel, drain_with_budget};
use super::probe::{Latency, collect_for};
use super::volunteers::{ShowVolunteers, VolunteerMarkers, glide_buffer, track};

/// How long extraction may spend on late messages: both threads wait for it.
const LATE_BUDGET: Duration = Duration::from_millis(2);

/// Render world: glides to write into the markers' buffer this frame (the buffer, and its
/// contents as [`glide_buffer`] lays them out).
#[derive(Resource, Default)]
pub struct LateGlides(pub Option<(AssetId<ShaderBuffer>, Vec<Vec4>)>);

/// Extraction, before the assets are: what arrived since the update, into the model and the
/// markers.
pub fn drain_late(mut main: ResMut<MainWorld>, mut late: ResMut<LateGlides>) {
    late.0 = None;
    let world: &mut World = &mut main;
    if !(world.contains_resource::<FeedChannel>()
        && world.contains_resource::<WallModel>()
        && world.contains_resource::<VolunteerMarkers>())
    {
        return;
    }
    // The main world numbers a frame at its end, before it is extracted.
    let frame = world
        .get_resource::<FrameCount>()
        .map_or(0, |f| f.0.wrapping_sub(1));
    let show = world.get_resource::<ShowVolunteers>().is_none_or(|s| s.0);
    world.resource_scope(|world, mut channel: Mut<FeedChannel>| {
        world.resource_scope(|world, mut model: Mut<WallModel>| {
            // Live only: a replayed moment or a loading snapshot waits for the update.
            if model.synced_at.is_none() || model.replay.is_some() {
                return;
            }
            if drain_with_budget(&mut channel, &mut model, LATE_BUDGET) == 0 {
                return;
            }
            if let Some(mut latency) = world.get_resource_mut::<Latency>() {
                collect_for(&mut model, &mut latency, frame);
            }
            let mut markers = world.resource_mut::<VolunteerMarkers>();
            track(&mut model, &mut markers);
            if markers.glides_dirty {
                // Written here for this frame; `glides_dirty` stays set, so the next update
                // writes the main world's copy too.
                late.0 = Some((markers.buffer.id(), glide_buffer(&markers, show)));
            }
        });
    });
}

/// Render world, after the assets are prepared: the late glides into the GPU buffer.
fn write_late(
    mut late: ResMut<LateGlides>,
    buffers: Res<RenderAssets<GpuShaderBuffer>>,
    queue: Res<RenderQueue>,
) {
    let Some((id, glides)) = late.0.take() else {
        return;
    };
    let Some(gpu) = buffers.get(id) else {
        return;
    };
    let bytes: Vec<u8> = glides
        .iter()
        .flat_map(|v| v.to_array())
        .flat_map(f32::to_le_bytes)
        .collect();
    if bytes.len() as u64 == gpu.buffer.size() {
        queue.write_buffer(&gpu.buffer, 0, &bytes);
    }
}

pub(super) fn plugin(app: &mut App) {
    if let Some(render) = app.get_sub_app_mut(RenderApp) {
        render
            .init_resource::<LateGlides>()
            .add_systems(
                ExtractSchedule,
                drain_late
                    .before(bevy::render::render_asset::AssetExtractionSystems)
                    .before(bevy::render::erased_render_asset::AssetExtractionSystems),
            )
            .add_systems(
                Render,
                write_late
                    .after(RenderSystems::PrepareAssets)
                    .before(RenderSystems::Render),
            );
    }
}
