//! The map drawn only when it changes. County land, grid fills, the heat and the borders
//! ([`MapLayer`]) are seen by a second camera that renders them into a texture of the
//! target's size, with the wall camera's view; every frame, before the wall camera's passes,
//! that texture is copied into the wall camera's main texture (a GPU copy, not a draw: the
//! same bytes, and no shading), and the wall camera draws what moves on top of it without
//! clearing: volunteer markers, incident rings, the tour's outlines, egui. The cache camera
//! renders only in frames where something it shows changed (the view: pan, zoom, fly,
//! resize; one of the layers' meshes, materials or the heat texture; a layer shown or
//! hidden) and while the render world still compiles pipelines (a layer whose pipeline is not
//! ready is not drawn yet). On a software rasteriser the map's fills and heat are most of a
//! frame; drawn once, they cost one copy.
//!
//! `--map-cache false` (or [`MapCacheEnabled`] switched off while the wall runs) draws every
//! layer every frame, as before: the tests compare the two pictures pixel for pixel.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bevy::asset::AssetEvent;
use bevy::camera::visibility::RenderLayers;
use bevy::camera::{
    CameraMainTextureUsages, CameraUpdateSystems, ClearColorConfig, ImageRenderTarget, RenderTarget,
};
use bevy::core_pipeline::{Core2d, Core2dSystems};
use bevy::image::Image;
use bevy::prelude::*;
use bevy::render::render_asset::RenderAssets;
use bevy::render::render_resource::{
    LoadOp, Operations, PipelineCache, RenderPassColorAttachment, RenderPassDescriptor, StoreOp,
    TextureFormat, TextureUsages,
};
use bevy::render::renderer::{RenderContext, ViewQuery};
use bevy::render::sync_world::RenderEntity;
use bevy::render::texture::GpuImage;
use bevy::render::view::ViewTarget;
use bevy::render::{Extract, ExtractSchedule, RenderApp};
use bevy::sprite_render::Material2d;
use bevy::window::PrimaryWindow;

use super::nav::{OffscreenTarget, WallCamera};

/// The render layer the cache camera sees.
pub const MAP_RENDER_LAYER: usize = 1;

/// Draw the map into a texture only when it changes (`--map-cache`, on by default).
#[derive(Resource, Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapCacheEnabled(pub bool);

/// An entity of the static map: drawn into the cache, not by the wall camera. `image`: a
/// texture its material reads (the heat's density), whose change redraws the cache.
#[derive(Component, Clone, Copy, Debug, Default)]
pub struct MapLayer {
    pub image: Option<AssetId<Image>>,
}

/// Something the map layers show changed this frame (a material's asset, see [`watch`]).
#[derive(Resource, Default)]
struct MaterialsChanged(bool);

/// Redraw the cache when a map layer's material of type `M` changes.
fn material_changed<M: Material2d>(
    mut events: MessageReader<AssetEvent<M>>,
    layers: Query<&MeshMaterial2d<M>, With<MapLayer>>,
    mut changed: ResMut<MaterialsChanged>,
) {
    for e in events.read() {
        if let AssetEvent::Modified { id } | AssetEvent::Added { id } = e
            && layers.iter().any(|m| m.0.id() == *id)
        {
            changed.0 = true;
        }
    }
}

/// Map layers drawn with the material `M` (besides `ColorMaterial`): redraw the cache when
/// one of their materials changes.
pub fn watch<M: Material2d>(app: &mut App) {
    app.init_resource::<MaterialsChanged>().add_systems(
        PostUpdate,
        material_changed::<M>
            .before(track_cache)
            .before(CameraUpdateSystems),
    );
}

/// The camera that draws the map layers into the cache texture.
#[derive(Component)]
pub struct MapCacheCamera;

/// Pipelines the render world is still compiling (set there after each frame).
#[derive(Resource, Clone, Default)]
pub struct PipelinesWaiting(pub Arc<AtomicUsize>);

/// The view the cache was last drawn for: camera position, zoom, target size and scale.
#[derive(Clone, Copy, Debug, PartialEq)]
struct ViewKey {
    translation: Vec3,
    scale: f32,
    size: UVec2,
    scale_factor: f32,
}

/// Frames the cache camera keeps drawing after a change: the frame of the change, and one
/// more for anything the render world prepares a frame late.
const HOLD_FRAMES: u32 = 2;

/// The cache: its texture, camera and counts.
#[derive(Resource)]
pub struct MapCache {
    pub image: Handle<Image>,
    pub camera: Entity,
    /// Frames in which the map was drawn into the cache.
    pub renders: u64,
    /// Frames composed from the cache.
    pub frames: u64,
    view: Option<ViewKey>,
    /// The size and scale factor the texture and the camera's target were made for.
    target: (UVec2, f32),
    hold: u32,
}

/// The wall camera's clear: none while the cache's copy fills its texture.
fn wall_clear(cached: bool) -> ClearColorConfig {
    if cached {
        ClearColorConfig::None
    } else {
        ClearColorConfig::Default
    }
}

/// The map's layers seen by the cache camera (`cached`) or by the wall camera.
fn place_layers(commands: &mut Commands, layers: &Query<Entity, With<MapLayer>>, cached: bool) {
    for e in layers {
        if cached {
            commands
                .entity(e)
                .insert(RenderLayers::layer(MAP_RENDER_LAYER));
        } else {
            commands.entity(e).remove::<RenderLayers>();
        }
    }
}

/// Switch the cache on or off while the wall runs: the layers go to the cache camera's
/// render layer or back to the wall camera's, which clears its texture again.
#[allow(clippy::type_complexity)]
fn switch_cache(
    mut commands: Commands,
    enabled: Res<MapCacheEnabled>,
    cache: Option<ResMut<MapCache>>,
    layers: Query<Entity, With<MapLayer>>,
    mut cameras: Query<&mut Camera, With<MapCacheCamera>>,
    mut wall: Query<&mut Camera, (With<WallCamera>, Without<MapCacheCamera>)>,
) {
    let Some(mut cache) = cache else {
        return;
    };
    if !enabled.is_changed() || enabled.is_added() {
        return;
    }
    place_layers(&mut commands, &layers, enabled.0);
    if let Ok(mut camera) = cameras.get_mut(cache.camera) {
        camera.is_active = false;
    }
    if let Ok(mut camera) = wall.single_mut() {
        camera.clear_color = wall_clear(enabled.0);
    }
    // Drawn afresh when switched back on.
    cache.view = None;
}

/// An image only the GPU draws into and reads from (the map cache, the offscreen target):
/// no copy of its pixels in main memory (8.3 MB at 1080p), none uploaded, none kept on
/// resize.
pub(super) fn target_image(size: UVec2) -> Image {
    let mut image = Image::new_target_texture(
        size.x.max(1),
        size.y.max(1),
        TextureFormat::Rgba8UnormSrgb,
        None,
    );
    // The cache is copied from into the wall camera's texture each frame.
    image.texture_descriptor.usage |= TextureUsages::COPY_SRC;
    image.data = None;
    image.copy_on_resize = false;
    image
}

/// Physical size and scale factor of the wall camera's target.
fn target_of(
    window: Option<&Window>,
    offscreen: Option<&OffscreenTarget>,
    images: &Assets<Image>,
) -> Option<(UVec2, f32)> {
    if let Some(o) = offscreen {
        return images.get(&o.0).map(|i| (i.size(), 1.0));
    }
    window.map(|w| (w.physical_size(), w.scale_factor()))
}

fn setup_cache(
    mut commands: Commands,
    enabled: Res<MapCacheEnabled>,
    layers: Query<Entity, With<MapLayer>>,
    mut wall: Query<(Entity, &Transform, &Projection, &mut Camera), With<WallCamera>>,
    window: Query<&Window, With<PrimaryWindow>>,
    offscreen: Option<Res<OffscreenTarget>>,
    mut images: ResMut<Assets<Image>>,
) {
    let Ok((wall, tf, projection, mut wall_camera)) = wall.single_mut() else {
        return;
    };
    let (size, scale_factor) = target_of(window.single().ok(), offscreen.as_deref(), &images)
        .unwrap_or((UVec2::new(1920, 1080), 1.0));
    let image = images.add(target_image(size));
    let camera = commands
        .spawn((
            MapCacheCamera,
            Camera2d,
            Camera {
                order: -1,
                is_active: enabled.0,
                ..default()
            },
            RenderTarget::Image(ImageRenderTarget {
                handle: image.clone(),
                scale_factor,
            }),
            Msaa::Off,
            bevy::core_pipeline::tonemapping::Tonemapping::None,
            projection.clone(),
            *tf,
            RenderLayers::layer(MAP_RENDER_LAYER),
        ))
        .id();
    // The copy lands in the wall camera's main texture, which it then draws over.
    wall_camera.clear_color = wall_clear(enabled.0);
    commands
        .entity(wall)
        .insert(CameraMainTextureUsages::default().with(TextureUsages::COPY_DST));
    place_layers(&mut commands, &layers, enabled.0);
    commands.insert_resource(MapCache {
        image,
        camera,
        renders: 0,
        frames: 0,
        view: None,
        target: (size, scale_factor),
        hold: HOLD_FRAMES,
    });
}

/// Before the cameras update: follow the wall camera, resize with the target, and draw the
/// cache this frame only if what it shows changed.
#[allow(clippy::too_many_arguments, clippy::type_complexity)]
fn track_cache(
    cache: Option<ResMut<MapCache>>,
    enabled: Res<MapCacheEnabled>,
    wall: Query<(&Transform, &Projection), (With<WallCamera>, Without<MapCacheCamera>)>,
    mut cam: Query<
        (
            &mut Camera,
            &mut Transform,
            &mut Projection,
            &mut RenderTarget,
        ),
        With<MapCacheCamera>,
    >,
    changed_layers: Query<
        (),
        (
            With<MapLayer>,
            Without<MapCacheCamera>,
            Or<(
                Changed<Visibility>,
                Changed<Transform>,
                Changed<Mesh2d>,
                Added<MapLayer>,
            )>,
        ),
    >,
    layer_assets: Query<(&Mesh2d, &MapLayer)>,
    (mut mesh_events, mut image_events, mut materials_changed): (
        MessageReader<AssetEvent<Mesh>>,
        MessageReader<AssetEvent<Image>>,
        ResMut<MaterialsChanged>,
    ),
    window: Query<&Window, With<PrimaryWindow>>,
    offscreen: Option<Res<OffscreenTarget>>,
    waiting: Res<PipelinesWaiting>,
    mut images: ResMut<Assets<Image>>,
) {
    let Some(mut cache) = cache else {
        return;
    };
    if !enabled.0 {
        return;
    }
    let (Ok((tf, projection)), Ok((mut camera, mut cache_tf, mut cache_projection, mut target))) =
        (wall.single(), cam.single_mut())
    else {
        return;
    };
    let mut changed = !changed_layers.is_empty() || std::mem::take(&mut materials_changed.0);
    // The layers' own assets changed (fills recoloured, borders rebuilt, heat redrawn).
    changed |= mesh_events.read().any(|e| match e {
        AssetEvent::Modified { id } | AssetEvent::Added { id } => {
            layer_assets.iter().any(|(m, _)| m.0.id() == *id)
        }
        _ => false,
    });
    changed |= image_events.read().any(|e| match e {
        AssetEvent::Modified { id } | AssetEvent::Added { id } => {
            layer_assets.iter().any(|(_, l)| l.image == Some(*id))
        }
        _ => false,
    });
    // The view: the cache camera follows the wall camera; the texture follows the target.
    let scale = match projection {
        Projection::Orthographic(o) => o.scale,
        _ => 1.0,
    };
    if let Some((size, scale_factor)) =
        target_of(window.single().ok(), offscreen.as_deref(), &images)
    {
        let key = ViewKey {
            translation: tf.translation,
            scale,
            size,
            scale_factor,
        };
        if cache.view != Some(key) {
            if cache.target != (size, scale_factor) {
                if cache.target.0 != size {
                    cache.image = images.add(target_image(size));
                }
                *target = RenderTarget::Image(ImageRenderTarget {
                    handle: cache.image.clone(),
                    scale_factor,
                });
                cache.target = (size, scale_factor);
            }
            *cache_tf = *tf;
            *cache_projection = projection.clone();
            cache.view = Some(key);
            changed = true;
        }
    }
    if changed || waiting.0.load(Ordering::Relaxed) > 0 {
        cache.hold = HOLD_FRAMES;
    }
    let draw = cache.hold > 0;
    cache.hold = cache.hold.saturating_sub(1);
    if camera.is_active != draw {
        camera.is_active = draw;
    }
    cache.frames += 1;
    if draw {
        cache.renders += 1;
    }
}

/// Render world, after the frame: how many pipelines are still compiling.
fn count_waiting(cache: Res<PipelineCache>, waiting: Res<PipelinesWaiting>) {
    waiting
        .0
        .store(cache.waiting_pipelines().count(), Ordering::Relaxed);
}

/// Render world: the cache texture and the wall camera's view to copy it into, this frame.
#[derive(Resource, Default)]
struct CacheCopy {
    image: Option<AssetId<Image>>,
    view: Option<Entity>,
}

fn extract_copy(
    mut copy: ResMut<CacheCopy>,
    cache: Extract<Option<Res<MapCache>>>,
    enabled: Extract<Option<Res<MapCacheEnabled>>>,
    wall: Extract<Query<&RenderEntity, With<WallCamera>>>,
) {
    let on = enabled.as_ref().is_some_and(|e| e.0);
    copy.image = cache.as_ref().filter(|_| on).map(|c| c.image.id());
    copy.view = wall.single().ok().map(|e| e.id());
}

/// Render world, in the wall camera's 2D schedule before its passes: the cache into its
/// main texture. A cache not ready (or of another size or format) leaves the background
/// colour instead, as a clear would.
fn copy_cached_map(
    view: ViewQuery<&ViewTarget>,
    copy: Res<CacheCopy>,
    images: Res<RenderAssets<GpuImage>>,
    clear: Res<ClearColor>,
    mut ctx: RenderContext,
) {
    let (Some(image), true) = (copy.image, copy.view == Some(view.entity())) else {
        return;
    };
    let target = view.into_inner();
    let texture = target.main_texture();
    let ready = images
        .get(image)
        .filter(|g| g.texture.size() == texture.size() && g.texture.format() == texture.format());
    match ready {
        Some(g) => ctx.command_encoder().copy_texture_to_texture(
            g.texture.as_image_copy(),
            texture.as_image_copy(),
            texture.size(),
        ),
        None => {
            let _ = ctx.begin_tracked_render_pass(RenderPassDescriptor {
                label: Some("map_cache_clear"),
                color_attachments: &[Some(RenderPassColorAttachment {
                    view: target.main_texture_view(),
                    depth_slice: None,
                    resolve_target: None,
                    ops: Operations {
                        load: LoadOp::Clear(clear.0.to_linear().into()),
                        store: StoreOp::Store,
                    },
                })],
                depth_stencil_attachment: None,
                timestamp_writes: None,
                occlusion_query_set: None,
                multiview_mask: None,
            });
        }
    }
}

pub(super) fn plugin(app: &mut App) {
    let waiting = PipelinesWaiting::default();
    watch::<ColorMaterial>(app);
    app.insert_resource(waiting.clone())
        .add_systems(PostStartup, setup_cache)
        .add_systems(
            PostUpdate,
            (switch_cache, track_cache)
                .chain()
                .before(CameraUpdateSystems)
                .before(bevy::transform::TransformSystems::Propagate),
        );
    if let Some(render) = app.get_sub_app_mut(RenderApp) {
        render
            .insert_resource(waiting)
            .init_resource::<CacheCopy>()
            .add_systems(ExtractSchedule, extract_copy)
            .add_systems(
                bevy::render::Render,
                count_waiting.in_set(bevy::render::RenderSystems::Cleanup),
            )
            .add_systems(Core2d, copy_cached_map.before(Core2dSystems::MainPass));
    }
}
