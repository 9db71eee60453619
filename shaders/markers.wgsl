// Volunteer markers, vertex-pulled: the mesh is built once (two quads per volunteer: the team
// ring and the status fill, corners in units, the volunteer's index in uv.x); each marker's
// glide (from, to, start, duration, visible) sits in a storage buffer written only when fixes
// arrive, and this shader places the quad where the glide is now.
#import bevy_sprite::{
    mesh2d_functions as mesh_functions,
    mesh2d_vertex_output::VertexOutput,
}

// x: seconds on the glide clock, y: half the marker's size in world metres (zoom), z/w: unused.
@group(#{MATERIAL_BIND_GROUP}) @binding(0) var<uniform> params: vec4<f32>;
// Two per marker: (from.xy, to.xy), (start_s, duration_s, visible, unused).
@group(#{MATERIAL_BIND_GROUP}) @binding(1) var<storage, read> glides: array<vec4<f32>>;

struct Vertex {
    @builtin(instance_index) instance_index: u32,
    @location(0) position: vec3<f32>,
    @location(2) uv: vec2<f32>,
    @location(4) color: vec4<f32>,
};

@vertex
fn vertex(v: Vertex) -> VertexOutput {
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
    var out: VertexOutput;
    let world_from_local = mesh_functions::get_world_from_local(v.instance_index);
    out.world_position = mesh_functions::mesh2d_position_local_to_world(
        world_from_local,
        vec4<f32>(p, v.position.z, 1.0),
    );
    out.position = mesh_functions::mesh2d_position_world_to_clip(out.world_position);
    out.world_normal = vec3<f32>(0.0, 0.0, 1.0);
    out.uv = v.uv;
    out.color = v.color;
    return out;
}

@fragment
fn fragment(in: VertexOutput) -> @location(0) vec4<f32> {
    return in.color;
}
