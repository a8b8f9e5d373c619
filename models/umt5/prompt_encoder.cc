#include "models/umt5/prompt_encoder.h"

#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "io/checkpoint.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "models/checkpoint_util.h"
#include "nn/checkpoint_io.h"
#include "tensor/ops.h"

namespace sdpo::umt5 {
namespace {

constexpr char kHashMemo[] = "encoder_hashes.json";

class Sha256Stream {
 public:
  Sha256Stream() : ctx_(EVP_MD_CTX_new()) {
    SDPO_CHECK(ctx_ != nullptr && EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr) == 1,
               "SHA-256: OpenSSL initialisation failed");
  }
  ~Sha256Stream() { EVP_MD_CTX_free(ctx_); }
  Sha256Stream(const Sha256Stream&) = delete;
  Sha256Stream& operator=(const Sha256Stream&) = delete;
  void Update(const void* data, size_t n) {
    SDPO_CHECK(EVP_DigestUpdate(ctx_, data, n) == 1, "SHA-256: OpenSSL update failed");
  }
  std::string HexDigest() {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    SDPO_CHECK(EVP_DigestFinal_ex(ctx_, digest, &n) == 1, "SHA-256: OpenSSL final failed");
    std::string hex;
    for (unsigned int i = 0; i < n; ++i)
      absl::StrAppend(&hex, absl::Hex(digest[i], absl::kZeroPad2));
    return hex;
  }

 private:
  EVP_MD_CTX* ctx_;
};

const char* ModeName(ContextMode mode) { return mode == ContextMode::kFull ? "full" : "trimmed"; }

// The numerics in the cache key: "f32" as before the bf16 mode existed (earlier caches stay
// valid); the bf16 mode by a name no earlier (whole-bf16) cache entry used.
const char* ComputeKey(ProjectionInputs inputs) {
  return inputs == ProjectionInputs::kBF16 ? "bf16-projections" : "f32";
}

// Reads the memo of file hashes (path -> {size, mtime, sha256}); empty when absent or unreadable
// (it is only a memo: a bad one is recomputed).
json::Value ReadMemo(const std::string& path) {
  if (!ckpt::IsFile(path)) return json::Value::MakeObject({});
  try {
    json::Value v = json::ParseFile(path);
    if (v.is_object()) return v;
  } catch (const Error&) {
  }
  return json::Value::MakeObject({});
}

void WriteTextAtomically(const std::string& path, const std::string& text) {
  const std::string tmp = absl::StrCat(path, ".tmp.", ::getpid());
  {
    std::ofstream f(tmp, std::ios::binary);
    SDPO_CHECK(f.good(), tmp, ": cannot open for writing");
    f << text;
    f.close();
    SDPO_CHECK(f.good(), tmp, ": write failed");
  }
  std::filesystem::rename(tmp, path);
}

// SHA-256 of the encoder's files (names and contents), each file's hash memoised in cache_dir.
std::string EncoderHash(const std::string& weights, const std::string& cache_dir) {
  const std::string memo_path = cache_dir.empty() ? "" : cache_dir + "/" + kHashMemo;
  json::Value memo = memo_path.empty() ? json::Value::MakeObject({}) : ReadMemo(memo_path);
  json::Value::Object entries = memo.as_object();
  bool changed = false;
  std::string summary;
  for (const std::string& file : WeightFiles(weights)) {
    struct stat st {};
    SDPO_CHECK(::stat(file.c_str(), &st) == 0, file, ": cannot stat the encoder file");
    const std::string abs = std::filesystem::absolute(file).string();
    const int64_t size = st.st_size;
    const int64_t mtime_ns =
        static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
    std::string sha;
    for (const auto& [key, value] : entries) {
      if (key != abs || !value.is_object()) continue;
      const json::Value *s = value.find("size"), *m = value.find("mtime_ns"),
                        *h = value.find("sha256");
      if (s && m && h && s->is_int() && m->is_int() && h->is_string() && s->as_int() == size &&
          m->as_int() == mtime_ns) {
        sha = h->as_string();
      }
    }
    if (sha.empty()) {
      sha = Sha256File(file);
      entries.erase(std::remove_if(entries.begin(), entries.end(),
                                   [&](const auto& e) { return e.first == abs; }),
                    entries.end());
      entries.push_back({abs, json::Value::MakeObject({{"size", json::Value::Int(size)},
                                                       {"mtime_ns", json::Value::Int(mtime_ns)},
                                                       {"sha256", json::Value::String(sha)}})});
      changed = true;
    }
    absl::StrAppend(&summary, std::filesystem::path(file).filename().string(), " ", sha, "\n");
  }
  if (changed && !memo_path.empty()) {
    WriteTextAtomically(memo_path, json::Serialize(json::Value::MakeObject(entries)) + "\n");
  }
  return Sha256(summary);
}

}  // namespace

std::string Sha256(std::string_view bytes) {
  Sha256Stream s;
  s.Update(bytes.data(), bytes.size());
  return s.HexDigest();
}

std::string Sha256File(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  SDPO_CHECK(f.good(), path, ": cannot open for hashing");
  Sha256Stream s;
  std::vector<char> buffer(1 << 22);
  while (f) {
    f.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    if (f.gcount() > 0) s.Update(buffer.data(), static_cast<size_t>(f.gcount()));
  }
  SDPO_CHECK(f.eof(), path, ": read failed while hashing");
  return s.HexDigest();
}

std::vector<std::string> WeightFiles(const std::string& path) {
  const std::unique_ptr<CheckpointView> view = OpenCheckpoint(path);
  std::vector<std::string> files = {view->path()};
  if (const auto* sharded = dynamic_cast<const ShardedCheckpoint*>(view.get())) {
    for (const auto& shard : sharded->shards()) files.push_back(shard->path());
  }
  std::sort(files.begin(), files.end());
  files.erase(std::unique(files.begin(), files.end()), files.end());
  return files;
}

std::unique_ptr<PromptEncoder> PromptEncoder::Open(const PromptEncoderOptions& options) {
  SDPO_CHECK(!options.weights.empty(), "PromptEncoder: no encoder weights given");
  auto p = std::unique_ptr<PromptEncoder>(new PromptEncoder());
  p->options_ = options;
  {
    OfficialSource named = ToOfficialNames(OpenWeightFile(options.weights));
    p->config_ = ResolveConfig(options.weights, *named.source, options.config);
  }
  p->options_.config = p->config_;
  p->text_len_ = options.text_len > 0 ? options.text_len : p->config_.text_len;
  SDPO_CHECK(p->text_len_ > 0, options.weights,
             ": the text length is unknown (no text_len in the config): set text_len");
  p->mode_ =
      options.mode.value_or(p->config_.shared_pos ? ContextMode::kFull : ContextMode::kTrimmed);
  std::string tokenizer = options.tokenizer;
  if (tokenizer.empty()) {
    SDPO_CHECK(!p->config_.tokenizer.empty(), options.weights,
               ": no tokenizer given and the config names none");
    const std::string dir =
        ckpt::IsFile(options.weights) ? ckpt::DirName(options.weights) : options.weights;
    tokenizer = dir + "/" + p->config_.tokenizer;
  }
  p->tokenizer_ = Tokenizer::Open(tokenizer);
  if (!options.cache_dir.empty()) std::filesystem::create_directories(options.cache_dir);
  p->encoder_hash_ = EncoderHash(options.weights, options.cache_dir);
  return p;
}

T5Encoder& PromptEncoder::Encoder() {
  if (encoder_ == nullptr) {
    LoadOptions load;
    load.config = config_;
    encoder_ = LoadEncoder(options_.weights, load);
    encoder_->SetProjectionInputs(options_.projection_inputs);
  }
  return *encoder_;
}

std::string PromptEncoder::CachePath(const std::string& text) const {
  const std::string key =
      Sha256(absl::StrCat("t5-context v1\n", encoder_hash_, "\n", text_len_, "\n", ModeName(mode_),
                          "\n", ComputeKey(options_.projection_inputs), "\n", text));
  return absl::StrCat(options_.cache_dir, "/", key, ".safetensors");
}

std::vector<Tensor> PromptEncoder::EncodePrompts(const std::vector<std::string>& texts) {
  std::vector<Tensor> out(texts.size());
  std::map<std::string, Tensor> done;  // this call's texts
  const bool cache = !options_.cache_dir.empty();
  for (size_t i = 0; i < texts.size(); ++i) {
    const std::string& text = texts[i];
    if (auto it = done.find(text); it != done.end()) {
      out[i] = it->second;
      continue;
    }
    const std::string path = cache ? CachePath(text) : "";
    if (cache && ckpt::IsFile(path)) {
      std::map<std::string, std::string> meta;
      nn::TensorMap t = nn::ReadSafetensors(path, &meta);
      SDPO_CHECK(meta["text"] == text && meta["encoder_sha256"] == encoder_hash_ &&
                     t.count("context") > 0 && t["context"].dim() == 2 &&
                     t["context"].size(1) == config_.dim,
                 path, ": the cached embedding does not belong to prompt ", i,
                 " and this encoder (remove the file)");
      out[i] = ops::Cast(t["context"], kF32);
      ++cache_hits_;
    } else {
      const Tokens tokens = tokenizer_->Encode({text}, text_len_);
      const bool trimmed = mode_ == ContextMode::kTrimmed;
      Tensor hidden;
      {
        NoGradGuard no_grad;
        hidden = Encoder().Forward(tokens.ids, trimmed ? tokens.mask : Tensor());
      }
      hidden = ops::To(ops::Cast(hidden, kF32), Device::CPU());
      out[i] =
          ops::Clone(trimmed ? TrimToTokens(hidden, tokens.mask)[0] : ops::Select(hidden, 0, 0));
      ++encoded_;
      if (cache) {
        nn::SaveSafetensors(path, {{"context", out[i]}},
                            {{"text", text},
                             {"encoder_sha256", encoder_hash_},
                             {"text_len", std::to_string(text_len_)},
                             {"mode", ModeName(mode_)},
                             {"compute", ProjectionInputsName(options_.projection_inputs)}});
      }
    }
    done[text] = out[i];
  }
  return out;
}

}  // namespace sdpo::umt5
