// Parameter names of the Wan2.1 VAE: the official `WanVAE_` state_dict names (the .pth released
// as Wan2.1_VAE.pth, and the ComfyUI single-file safetensors) and the diffusers
// `AutoencoderKLWan` names (`vae/diffusion_pytorch_model.safetensors`), both directions, for the
// Wan2.1 layout (num_res_blocks = 2: three residual blocks per decoder stage, then its
// upsampler). Only names change; shapes are the same on both sides.
//
//   conv1 / conv2                        <-> quant_conv / post_quant_conv
//   {en,de}coder.conv1                   <-> {en,de}coder.conv_in
//   {en,de}coder.head.0 / .head.2        <-> {en,de}coder.norm_out / .conv_out
//   {en,de}coder.middle.0 / .2           <-> {en,de}coder.mid_block.resnets.0 / .1
//   {en,de}coder.middle.1                <-> {en,de}coder.mid_block.attentions.0
//   encoder.downsamples.<i>              <-> encoder.down_blocks.<i>
//   decoder.upsamples.<4b+r> (r < 3)     <-> decoder.up_blocks.<b>.resnets.<r>
//   decoder.upsamples.<4b+3>             <-> decoder.up_blocks.<b>.upsamplers.0
// and inside residual blocks residual.0 / .2 / .3 / .6 and shortcut <-> norm1 / conv1 / norm2 /
// conv2 and conv_shortcut. The mapping follows diffusers' scripts/convert_wan_to_diffusers.py.
#pragma once

#include <optional>
#include <string>

namespace sdpo::wan21 {

// nullopt for a name that is not a Wan2.1 VAE parameter on that side.
std::optional<std::string> VaeOfficialToDiffusers(const std::string& official);
std::optional<std::string> VaeDiffusersToOfficial(const std::string& diffusers);

}  // namespace sdpo::wan21
