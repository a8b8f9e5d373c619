#include "trainers/cogvideox_folder.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "tensor/error.h"

namespace sdpo::trainers {

namespace fs = std::filesystem;

CogVideoXFolder FindCogVideoXCheckpoint(const std::string& dir) {
  std::error_code ec;
  SDPO_CHECK(fs::is_directory(dir, ec), "--checkpoint=", dir,
             ": not a directory (expected a diffusers CogVideoX folder with transformer/, vae/, "
             "text_encoder/ and tokenizer/)");
  const fs::path d(dir);
  SDPO_CHECK(fs::is_directory(d / "transformer", ec), "--checkpoint=", dir,
             ": no transformer/ folder (expected the diffusers CogVideoX layout: transformer/, "
             "vae/, text_encoder/, tokenizer/)");
  CogVideoXFolder folder;
  folder.dir = dir;
  folder.transformer = (d / "transformer").string();
  if (fs::is_directory(d / "vae", ec)) folder.vae = (d / "vae").string();
  if (fs::is_directory(d / "text_encoder", ec)) {
    folder.text_encoder = (d / "text_encoder").string();
  }
  if (fs::is_regular_file(d / kCogVideoXTokenizer, ec)) {
    folder.tokenizer = (d / kCogVideoXTokenizer).string();
  }
  return folder;
}

std::unique_ptr<umt5::PromptEncoder> OpenCogVideoXTextEncoder(const CogVideoXFolder& folder,
                                                              const CogVideoXTextOptions& options) {
  umt5::PromptEncoderOptions o;
  o.weights = options.weights.empty() ? folder.text_encoder : options.weights;
  SDPO_CHECK(!o.weights.empty(), folder.dir,
             ": no text_encoder/ folder (the T5 v1.1 encoder: config.json and model*.safetensors; "
             "or give --text_encoder)");
  o.tokenizer = options.tokenizer.empty() ? folder.tokenizer : options.tokenizer;
  SDPO_CHECK(!o.tokenizer.empty(), folder.dir, ": no ", kCogVideoXTokenizer,
             " (the T5 tokenizer's SentencePiece model; a tokenizer.json alone is not read; or "
             "give --tokenizer)");
  SDPO_CHECK(options.text_len > 0, "CogVideoX text length must be > 0, got ", options.text_len);
  o.text_len = options.text_len;
  o.mode = umt5::ContextMode::kFull;
  o.cache_dir = options.cache_dir;
  std::unique_ptr<umt5::PromptEncoder> encoder = umt5::PromptEncoder::Open(o);
  const umt5::T5Config& c = encoder->config();
  SDPO_CHECK(options.text_dim <= 0 || c.dim == options.text_dim, o.weights,
             ": the text encoder gives ", c.dim, "-wide embeddings but the transformer takes ",
             options.text_dim,
             " (text_embed_dim in transformer/config.json): the text encoder "
             "and the transformer do not belong to the same model");
  return encoder;
}

std::unique_ptr<CogVideoXVaeRunner> CogVideoXVaeRunner::Open(const CogVideoXFolder& folder,
                                                             Device device, std::string* why_not) {
  (void)device;
  *why_not = folder.vae.empty() ? absl::StrCat(folder.dir, " has no vae/ folder")
                                : "this build has no CogVideoX VAE yet";
  return nullptr;
}

}  // namespace sdpo::trainers
