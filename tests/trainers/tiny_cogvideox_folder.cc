#include "tests/trainers/tiny_cogvideox_folder.h"

#include <filesystem>
#include <fstream>

#include "io/json.h"
#include "models/cogvideox/checkpoint.h"
#include "nn/init.h"
#include "tensor/error.h"

namespace sdpo::testing {

namespace fs = std::filesystem;

namespace {

void WriteText(const fs::path& path, const std::string& text) {
  std::ofstream f(path);
  f << text;
  SDPO_CHECK(f.good(), path.string(), ": write failed");
}

void Copy(const fs::path& from, const fs::path& to) {
  SDPO_CHECK(fs::is_regular_file(from), from.string(), ": fixture missing");
  fs::copy_file(from, to, fs::copy_options::overwrite_existing);
}

}  // namespace

void WriteTinyCogVideoXFolder(const std::string& dir, const std::string& fixtures,
                              const TinyCogVideoXOptions& options) {
  const fs::path root(dir), fx(fixtures);
  for (const char* sub : {"transformer", "vae", "text_encoder", "tokenizer"}) {
    fs::create_directories(root / sub);
  }
  // transformer/: the fixture architecture with the tiny T5's width and the pipeline's 226 tokens.
  cogvideox::CogVideoXConfig c = cogvideox::CogVideoXConfig::FromFile(
      (fx / "cogvideox" / (options.five_b ? "tiny_5b.config.json" : "tiny_2b.config.json"))
          .string());
  c.text_embed_dim = options.text_dim;
  c.max_text_seq_length = 226;
  c.sample_frames = options.frames;
  c.sample_height = options.height / 8;
  c.sample_width = options.width / 8;
  nn::SetInitSeed(2101);
  cogvideox::SaveWeights(cogvideox::CogVideoXModel(c),
                         (root / "transformer" / "diffusion_pytorch_model.safetensors").string());
  WriteText(root / "transformer" / "config.json", c.ToJson());

  // vae/: the diffusers config.json is the constructor kwargs, flat.
  Copy(fx / "cogvideox_vae" / "tiny_a.weights.safetensors",
       root / "vae" / "diffusion_pytorch_model.safetensors");
  const json::Value vae_config =
      json::ParseFile((fx / "cogvideox_vae" / "tiny_a.config.json").string());
  const json::Value* kwargs = vae_config.find("AutoencoderKLCogVideoX");
  SDPO_CHECK(kwargs != nullptr, "cogvideox_vae/tiny_a.config.json: no AutoencoderKLCogVideoX");
  json::Value::Object flat = {{"_class_name", json::Value::String("AutoencoderKLCogVideoX")}};
  for (const auto& [k, v] : kwargs->as_object()) flat.push_back({k, v});
  WriteText(root / "vae" / "config.json", json::Serialize(json::Value::MakeObject(flat)));

  // text_encoder/: transformers names and config (t5/README.md: T5Config_equivalent).
  Copy(fx / "t5" / "tiny_a.weights_hf.safetensors", root / "text_encoder" / "model.safetensors");
  WriteText(root / "text_encoder" / "config.json",
            R"({"architectures": ["T5EncoderModel"], "model_type": "t5", "vocab_size": 300,
 "d_model": 48, "d_kv": 12, "d_ff": 96, "num_layers": 3, "num_heads": 4,
 "relative_attention_num_buckets": 32, "relative_attention_max_distance": 128,
 "layer_norm_epsilon": 1e-06, "feed_forward_proj": "gated-gelu", "dense_act_fn": "gelu_new",
 "is_gated_act": true, "torch_dtype": "float32"}
)");
  Copy(fx / "umt5" / "tiny_spm.model", root / "tokenizer" / "spiece.model");
}

}  // namespace sdpo::testing
