//! The map drawn only when it changes. County land, grid fills, the heat and the borders
//! ([`MapLayer`]) are seen by a second camera that renders them into a texture of the
//! target's size, with the wall camera's view; every frame the wall camera puts that texture
//! back with one full-screen copy (`shaders/cached_map.wgsl`) and draws what moves on top:
//! volunteer markers, incident rings, the tour's outlines, egui. The cache camera renders only
//! in frames where something it shows changed — the view (pan, zoom, fly, resize), one of the
//! layers' meshes, materials or the heat texture, a layer shown or hidden — and while the
//! render world still compiles pipelines (a layer whose pipeline is not ready is not drawn
//! yet). On a software rasteriser the map's fills and heat are most of a frame; drawn once,
//! they cost one copy.
//!
//! `--map-cache false` (or [`MapCacheEnabled`] switched off while the wall runs) draws every
//! layer every frame, as before: the tests compare the two pictures pixel for pixel.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bevy::asset::{AssetEvent, uuid_handle};
use bevy::camera::visibility::{NoFrustumCulling, RenderLayers};
use bevy::camera::{CameraUpdateSystems, ImageRenderTarget, RenderTarget};
use bevy::image::Image;
use bevy::prelude::*;
use bevy::render::render_resource::{AsBindGroup, PipelineCache, TextureFormat};
use bevy::shader::ShaderRef;
use bevy::sprite_render::{Material2d, Material2dPlugin};
use bevy::window::PrimaryWindow;

use super::nav::{OffscreenTarget, WallCamera};

const CACHED_MAP_SHADER: Handle<Shader> = uuid_handle!("8d2f4c61-0b7e-4a93-9e15-c3a7d65f20b8");

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

/// The copy of the cache texture onto the target.
#[derive(Asset, TypePath, AsBindGroup, Debug, Clone)]
pub struct CachedMapMaterial {
    #[texture(0)]
    pub map: Handle<Image>,
}

impl Material2d for CachedMapMaterial {
    fn vertex_shader() -> ShaderRef {
        ShaderRef::Handle(CACHED_MAP_SHADER)
    }

    fn fragment_shader() -> ShaderRef {
        ShaderRef::Handle(CACHED_MAP_SHADER)
    }
}

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
    pub material: Handle<CachedMapMaterial>,
    pub camera: Entity,
    /// The full-screen copy.
    pub quad: Entity,
    /// Frames in which the map was drawn into the cache.
    pub renders: u64,
    /// Frames composed from the cache.
    pub frames: u64,
    view: Option<ViewKey>,
    hold: u32,
}

impl MapCache {
    /// Share of frames that drew the map (1.0: every frame).
    pub fn render_share(&self) -> f64 {
        self.renders as f64 / self.frames.max(1) as f64
    }
}

fn visibility(shown: bool) -> Visibility {
    if shown {
        Visibility::Inherited
    } else {
        Visibility::Hidden
    }
}

/// Switch the cache on or off while the wall runs: the layers go to the cache camera's
/// render layer or back to the wall camera's, the copy is shown or hidden.
fn switch_cache(
    mut commands: Commands,
    enabled: Res<MapCacheEnabled>,
    cache: Option<ResMut<MapCache>>,
    layers: Query<Entity, With<MapLayer>>,
    mut cameras: Query<&mut Camera, With<MapCacheCamera>>,
) {
    let Some(mut cache) = cache else {
        return;
    };
    if !enabled.is_changed() || enabled.is_added() {
        return;
    }
    for e in &layers {
        if enabled.0 {
            commands
                .entity(e)
                .insert(RenderLayers::layer(MAP_RENDER_LAYER));
        } else {
            commands.entity(e).remove::<RenderLayers>();
        }
    }
    commands.entity(cache.quad).insert(visibility(enabled.0));
    if let Ok(mut camera) = cameras.get_mut(cache.camera) {
        camera.is_active = false;
    }
    // Drawn afresh when switched back on.
    cache.view = None;
}

fn target_image(size: UVec2) -> Image {
    let mut image = Image::new_target_texture(
        size.x.max(1),
        size.y.max(1),
        TextureFormat::Rgba8UnormSrgb,
        None,
    );
    // Only the GPU writes it: no copy of its pixels in main memory.
    image.data = None;
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

#[allow(clippy::too_many_arguments)]
fn setup_cache(
    mut commands: Commands,
    enabled: Res<MapCacheEnabled>,
    layers: Query<Entity, With<MapLayer>>,
    wall: Query<(&Transform, &Projection), With<WallCamera>>,
    window: Query<&Window, With<PrimaryWindow>>,
    offscreen: Option<Res<OffscreenTarget>>,
    mut images: ResMut<Assets<Image>>,
    mut meshes: ResMut<Assets<Mesh>>,
    mut materials: ResMut<Assets<CachedMapMaterial>>,
) {
    let Ok((tf, projection)) = wall.single() else {
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
    let material = materials.add(CachedMapMaterial { map: image.clone() });
    let quad = commands
        .spawn((
            Name::new("cached map"),
            Mesh2d(meshes.add(Rectangle::new(2.0, 2.0))),
            MeshMaterial2d(material.clone()),
            Transform::default(),
            // Placed in clip space by its shader: never culled by its (world) bounds.
            NoFrustumCulling,
            visibility(enabled.0),
        ))
        .id();
    for e in &layers {
        if enabled.0 {
            commands
                .entity(e)
                .insert(RenderLayers::layer(MAP_RENDER_LAYER));
        }
    }
    commands.insert_resource(MapCache {
        image,
        material,
        camera,
        quad,
        renders: 0,
        frames: 0,
        view: None,
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
    (mut images, mut materials): (ResMut<Assets<Image>>, ResMut<Assets<CachedMapMaterial>>),
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
            if cache.view.is_none_or(|v| v.size != size) {
                let image = images.add(target_image(size));
                if let Some(mut m) = materials.get_mut(&cache.material) {
                    m.map = image.clone();
                }
                cache.image = image;
            }
            if cache
                .view
                .is_none_or(|v| v.size != size || v.scale_factor != scale_factor)
            {
                *target = RenderTarget::Image(ImageRenderTarget {
                    handle: cache.image.clone(),
                    scale_factor,
                });
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

pub(super) fn plugin(app: &mut App) {
    let _ = app.world_mut().resource_mut::<Assets<Shader>>().insert(
        CACHED_MAP_SHADER.id(),
        Shader::from_wgsl(
            include_str!("../../shaders/cached_map.wgsl"),
            "shaders/cached_map.wgsl",
        ),
    );
    let waiting = PipelinesWaiting::default();
    watch::<ColorMaterial>(app);
    app.add_plugins(Material2dPlugin::<CachedMapMaterial>::default())
        .insert_resource(waiting.clone())
        .add_systems(PostStartup, setup_cache)
        .add_systems(
            PostUpdate,
            (switch_cache, track_cache)
                .chain()
                .before(CameraUpdateSystems)
                .before(bevy::transform::TransformSystems::Propagate),
        );
    if let Some(render) = app.get_sub_app_mut(bevy::render::RenderApp) {
        render.insert_resource(waiting).add_systems(
            bevy::render::Render,
            count_waiting.in_set(bevy::render::RenderSystems::Cleanup),
        );
    }
}
