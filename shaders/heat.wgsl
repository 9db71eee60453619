// Ticket heatmap: the CPU accumulates open tickets (weighted by priority and age) into a
// density texture when tickets change; this shader only maps density to a colour ramp.
#import bevy_sprite::mesh2d_vertex_output::VertexOutput

// x: opacity, y: density below which nothing is drawn, z/w: unused.
@group(#{MATERIAL_BIND_GROUP}) @binding(0) var<uniform> params: vec4<f32>;
@group(#{MATERIAL_BIND_GROUP}) @binding(1) var density: texture_2d<f32>;
@group(#{MATERIAL_BIND_GROUP}) @binding(2) var density_sampler: sampler;

// Linear-light ramp: deep blue, cyan, yellow, red (kept in step with theme::HEAT_RAMP).
fn ramp(t: f32) -> vec3<f32> {
    let c0 = vec3<f32>(0.02, 0.05, 0.45);
    let c1 = vec3<f32>(0.0, 0.55, 0.80);
    let c2 = vec3<f32>(1.0, 0.75, 0.02);
    let c3 = vec3<f32>(1.0, 0.04, 0.01);
    if t < 0.33 {
        return mix(c0, c1, t / 0.33);
    } else if t < 0.66 {
        return mix(c1, c2, (t - 0.33) / 0.33);
    }
    return mix(c2, c3, clamp((t - 0.66) / 0.34, 0.0, 1.0));
}

@fragment
fn fragment(mesh: VertexOutput) -> @location(0) vec4<f32> {
    let v = textureSample(density, density_sampler, mesh.uv).r;
    if v <= params.y {
        discard;
    }
    let a = params.x * smoothstep(params.y, params.y + 0.12, v);
    return vec4<f32>(ramp(v), a);
}
