#include "models/cogvideox/vae_config.h"

#include "models/checkpoint_util.h"
#include "tensor/error.h"

namespace sdpo::cogvideox {

namespace {

constexpr char kClass[] = "AutoencoderKLCogVideoX";

std::vector<int64_t> IntList(const json::Value& v, const std::string& key,
                             const std::string& source) {
  SDPO_CHECK(v.is_array(), source, ": ", kClass, " key '", key, "' must be an array, found ",
             json::TypeName(v.type()));
  std::vector<int64_t> out;
  for (const json::Value& item : v.as_array()) out.push_back(json::ExpectInt(item, key, source));
  return out;
}

// A list of strings that must all equal `expected` (the only block type the VAE has).
void ExpectStrings(const json::Value& v, const std::string& key, const std::string& expected,
                   const std::string& source) {
  SDPO_CHECK(v.is_array(), source, ": ", kClass, " key '", key, "' must be an array, found ",
             json::TypeName(v.type()));
  for (const json::Value& item : v.as_array()) {
    const std::string s = json::ExpectString(item, key, source);
    SDPO_CHECK(s == expected, source, ": ", kClass, " key '", key, "' holds '", s, "'; only '",
               expected, "' is supported");
  }
}

void ExpectFalse(const json::Value& v, const std::string& key, const std::string& source) {
  SDPO_CHECK(!json::ExpectBool(v, key, source), source, ": ", kClass, " key '", key,
             "' is true; only false (the released CogVideoX VAEs) is supported");
}

}  // namespace

CogVideoXVaeConfig CogVideoXVaeConfig::CogVideoX2B() { return CogVideoXVaeConfig(); }

CogVideoXVaeConfig CogVideoXVaeConfig::CogVideoX5B() {
  CogVideoXVaeConfig c;
  c.scaling_factor = 0.7;
  return c;
}

int64_t CogVideoXVaeConfig::temporal_levels() const {
  int64_t levels = 0;
  for (int64_t r = temporal_compression_ratio; r > 1; r /= 2) ++levels;
  return levels;
}

int64_t CogVideoXVaeConfig::spatial_factor() const {
  return int64_t{1} << (static_cast<int64_t>(block_out_channels.size()) - 1);
}

void CogVideoXVaeConfig::Validate(const std::string& source) const {
  ckpt::CheckSizeLimits({{"in_channels", in_channels, 1, 64},
                         {"out_channels", out_channels, 1, 64},
                         {"latent_channels", latent_channels, 1, 4096},
                         {"layers_per_block", layers_per_block, 1, 64},
                         {"norm_num_groups", norm_num_groups, 1, 4096},
                         {"temporal_compression_ratio", temporal_compression_ratio, 1, 64},
                         {"num_sample_frames_batch_size", encode_frame_batch, 1, 4096},
                         {"num_latent_frames_batch_size", decode_latent_batch, 1, 1024}},
                        source);
  SDPO_CHECK(block_out_channels.size() >= 1 && block_out_channels.size() <= 8, source, ": ", kClass,
             " block_out_channels must have 1 to 8 entries, got ", block_out_channels.size());
  for (int64_t c : block_out_channels) {
    SDPO_CHECK(c >= 1 && c <= 65536 && c % norm_num_groups == 0, source, ": ", kClass,
               " block_out_channels entries must be in [1, 65536] and multiples of "
               "norm_num_groups (",
               norm_num_groups, "), got ", c);
  }
  SDPO_CHECK((temporal_compression_ratio & (temporal_compression_ratio - 1)) == 0, source, ": ",
             kClass, " temporal_compression_ratio must be a power of 2, got ",
             temporal_compression_ratio);
  SDPO_CHECK(temporal_levels() < static_cast<int64_t>(block_out_channels.size()), source, ": ",
             kClass, " temporal_compression_ratio ", temporal_compression_ratio,
             " needs more than ", block_out_channels.size() - 1, " downsampling blocks");
  SDPO_CHECK(norm_eps > 0 && norm_eps < 1, source, ": ", kClass,
             " norm_eps must be in (0, 1), got ", norm_eps);
  SDPO_CHECK(scaling_factor > 0, source, ": ", kClass, " scaling_factor must be > 0, got ",
             scaling_factor);
}

CogVideoXVaeConfig CogVideoXVaeConfig::FromJson(const json::Value& value,
                                                const std::string& source) {
  SDPO_CHECK(value.is_object(), source, ": a ", kClass, " config must be a JSON object, found ",
             json::TypeName(value.type()));
  CogVideoXVaeConfig c;
  const bool wrapped = value.contains(kClass);
  const json::Value& args = wrapped ? value.at(kClass) : value;
  SDPO_CHECK(args.is_object(), source, ": '", kClass, "' must be an object, found ",
             json::TypeName(args.type()));
  if (wrapped) {
    for (const auto& [key, v] : value.as_object()) {
      if (key == kClass) {
        continue;
      } else if (key == "num_sample_frames_batch_size") {
        c.encode_frame_batch = json::ExpectInt(v, key, source);
      } else if (key == "num_latent_frames_batch_size") {
        c.decode_latent_batch = json::ExpectInt(v, key, source);
      } else if (key == "use_tiling" || key == "use_slicing") {
        ExpectFalse(v, key, source);
      } else {
        SDPO_FAIL(source, ": unknown key '", key, "' next to '", kClass, "'");
      }
    }
  }
  for (const auto& [key, v] : args.as_object()) {
    if (key == "in_channels") {
      c.in_channels = json::ExpectInt(v, key, source);
    } else if (key == "out_channels") {
      c.out_channels = json::ExpectInt(v, key, source);
    } else if (key == "block_out_channels") {
      c.block_out_channels = IntList(v, key, source);
    } else if (key == "latent_channels") {
      c.latent_channels = json::ExpectInt(v, key, source);
    } else if (key == "layers_per_block") {
      c.layers_per_block = json::ExpectInt(v, key, source);
    } else if (key == "norm_num_groups") {
      c.norm_num_groups = json::ExpectInt(v, key, source);
    } else if (key == "norm_eps") {
      c.norm_eps = json::ExpectDouble(v, key, source);
    } else if (key == "temporal_compression_ratio") {
      c.temporal_compression_ratio = static_cast<int64_t>(json::ExpectDouble(v, key, source));
      SDPO_CHECK(
          static_cast<double>(c.temporal_compression_ratio) == json::ExpectDouble(v, key, source),
          source, ": ", kClass, " temporal_compression_ratio must be a whole number");
    } else if (key == "scaling_factor") {
      c.scaling_factor = json::ExpectDouble(v, key, source);
    } else if (key == "down_block_types") {
      ExpectStrings(v, key, "CogVideoXDownBlock3D", source);
    } else if (key == "up_block_types") {
      ExpectStrings(v, key, "CogVideoXUpBlock3D", source);
    } else if (key == "act_fn") {
      SDPO_CHECK(json::ExpectString(v, key, source) == "silu", source, ": ", kClass,
                 " act_fn must be 'silu'");
    } else if (key == "use_quant_conv" || key == "use_post_quant_conv") {
      ExpectFalse(v, key, source);
    } else if (key == "sample_height" || key == "sample_width" || key == "force_upcast" ||
               key == "shift_factor" || key == "latents_mean" || key == "latents_std") {
      continue;  // tiling hints and values the CogVideoX pipelines do not read
    } else if (key == "invert_scale_latents") {
      ExpectFalse(v, key, source);
    } else if (!key.empty() && key[0] == '_') {
      continue;  // "_class_name", "_diffusers_version"
    } else {
      SDPO_FAIL(source, ": unknown ", kClass, " config key '", key, "'");
    }
  }
  c.Validate(source);
  return c;
}

CogVideoXVaeConfig CogVideoXVaeConfig::FromFile(const std::string& path) {
  return FromJson(json::ParseFile(path), path);
}

std::string CogVideoXVaeConfig::ToJson() const {
  json::Value::Array channels;
  for (int64_t ch : block_out_channels) channels.push_back(json::Value::Int(ch));
  json::Value args = json::Value::MakeObject({
      {"in_channels", json::Value::Int(in_channels)},
      {"out_channels", json::Value::Int(out_channels)},
      {"block_out_channels", json::Value::MakeArray(std::move(channels))},
      {"latent_channels", json::Value::Int(latent_channels)},
      {"layers_per_block", json::Value::Int(layers_per_block)},
      {"norm_num_groups", json::Value::Int(norm_num_groups)},
      {"norm_eps", json::Value::Double(norm_eps)},
      {"temporal_compression_ratio", json::Value::Int(temporal_compression_ratio)},
      {"scaling_factor", json::Value::Double(scaling_factor)},
  });
  return json::Serialize(json::Value::MakeObject({
      {kClass, std::move(args)},
      {"num_sample_frames_batch_size", json::Value::Int(encode_frame_batch)},
      {"num_latent_frames_batch_size", json::Value::Int(decode_latent_batch)},
  }));
}

bool CogVideoXVaeConfig::operator==(const CogVideoXVaeConfig& o) const {
  return in_channels == o.in_channels && out_channels == o.out_channels &&
         block_out_channels == o.block_out_channels && latent_channels == o.latent_channels &&
         layers_per_block == o.layers_per_block && norm_num_groups == o.norm_num_groups &&
         norm_eps == o.norm_eps && temporal_compression_ratio == o.temporal_compression_ratio &&
         scaling_factor == o.scaling_factor && encode_frame_batch == o.encode_frame_batch &&
         decode_latent_batch == o.decode_latent_batch;
}

}  // namespace sdpo::cogvideox
