// The map drawn once into a texture (land, grid fills, heat, borders) and put back on the
// screen every frame: one quad covering the target, each pixel copied from the same pixel of
// the texture (no filtering, so the copy is exact). Depth 0 is the far plane (reverse Z): any
// marker or line drawn this frame lies in front of it.

@group(#{MATERIAL_BIND_GROUP}) @binding(0) var map: texture_2d<f32>;

struct Out {
    @builtin(position) position: vec4<f32>,
};

@vertex
fn vertex(@location(0) position: vec3<f32>) -> Out {
    var out: Out;
    // The mesh is a 2 × 2 rectangle: its corners are the clip-space corners.
    out.position = vec4<f32>(position.xy, 0.0, 1.0);
    return out;
}

@fragment
fn fragment(in: Out) -> @location(0) vec4<f32> {
    return textureLoad(map, vec2<i32>(floor(in.position.xy)), 0);
}
