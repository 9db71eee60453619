// Volunteer markers, vertex-pulled: the mesh is built once (one quad per volunteer, corners in
// units, the volunteer's index in uv.x; its edge takes the team ring's colour and its inside
// the status fill's); each marker's
// glide (from, to, start, duration, visible) sits in a storage buffer written only when fixes
// arrive, and this shader places the quad where the glide is now.
#import bevy_sprite::mesh2d_functions as mesh_functions

// x: seconds on the glide clock, y: half the marker's size in world metres (zoom), z: the fill's
// share of the marker's width, w: unused.
@group(#{MATERIAL_BIND_GROUP}) @binding(0) var<uniform> params: vec4<f32>;
// Two per marker: (from.xy, to.xy), (start_s, duration_s, visible, unused).
@group(#{MATERIAL_BIND_GROUP}) @binding(1) var<storage, read> glides: array<vec4<f32>>;
// Two per marker: the team ring's colour, the status fill's (linear RGBA).
@group(#{MATERIAL_BIND_GROUP}) @binding(2) var<storage, read> colors: array<vec4<f32>>;

struct Vertex {
    @builtin(instance_index) instance_index: u32,
    @location(0) position: vec3<f32>,
    @location(2) uv: vec2<f32>,
};

struct MarkerOut {
    @builtin(position) position: vec4<f32>,
    // Where in the marker, in marker units (-1..1 across).
    @location(0) local: vec2<f32>,
    @location(1) @interpolate(flat) ring: vec4<f32>,
    @location(2) @interpolate(flat) fill: vec4<f32>,
};

@vertex
fn vertex(v: Vertex) -> MarkerOut {
    let i = u32(v.uv.x + 0.5);
    let path = glides[2u * i];
    let timing = glides[2u * i + 1u];
    var t = 1.0;
    if timing.y > 0.0 {
        t = clamp((params.x - timing.x) / timing.y, 0.0, 1.0);
    }
    let centre = mix(path.xy, path.zw, t);
    // An invisible marker collapses to a point.
    let p = centre + v.position.xy * params.y * timing.z;
    var out: MarkerOut;
    let world_from_local = mesh_functions::get_world_from_local(v.instance_index);
    let world_position = mesh_functions::mesh2d_position_local_to_world(
        world_from_local,
        vec4<f32>(p, v.position.z, 1.0),
    );
    out.position = mesh_functions::mesh2d_position_world_to_clip(world_position);
    out.local = v.position.xy;
    out.ring = colors[2u * i];
    out.fill = colors[2u * i + 1u];
    return out;
}

@fragment
fn fragment(in: MarkerOut) -> @location(0) vec4<f32> {
    let edge = max(abs(in.local.x), abs(in.local.y));
    return select(in.ring, in.fill, edge <= params.z);
}
