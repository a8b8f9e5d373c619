#include "models/cogvideox/checkpoint.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "models/checkpoint_util.h"
#include "nn/init.h"
#include "tensor/ops.h"

namespace sdpo::cogvideox {
namespace {

using ckpt::CopyEntry;
using ckpt::DirName;
using ckpt::IsFile;
using ckpt::IsLoraName;
using ckpt::ListFirst;
using ckpt::ShapeOf;

bool StartsWith(const std::string& s, const std::string& p) { return s.rfind(p, 0) == 0; }

}  // namespace

LoadReport LoadWeights(CogVideoXModel& model, const std::string& path, const LoadOptions& options) {
  std::unique_ptr<ShardedCheckpoint> ck = ShardedCheckpoint::Open(path);
  return LoadWeights(model, *ck, options);
}

LoadReport LoadWeights(CogVideoXModel& model, const ShardedCheckpoint& ck,
                       const LoadOptions& options) {
  const std::vector<std::string> names = ck.names();
  SDPO_CHECK(!names.empty(), "CogVideoX checkpoint ", ck.path(), ": holds no tensors");
  std::string prefix;
  for (const char* p : {"model.diffusion_model.", "diffusion_model.", "transformer.", "model."}) {
    if (std::all_of(names.begin(), names.end(),
                    [p](const std::string& n) { return StartsWith(n, p); })) {
      prefix = p;
      break;
    }
  }
  const std::string where = absl::StrCat("CogVideoX checkpoint ", ck.path(),
                                         prefix.empty() ? "" : " (prefix \"" + prefix + "\")");
  std::vector<std::pair<std::string, Tensor>> targets;
  for (auto& [name, p] : model.NamedParameters()) {
    if (!IsLoraName(name)) targets.emplace_back(name, p);
  }
  std::set<std::string> wanted;
  std::vector<std::string> missing, mismatched, bad_dtype;
  for (const auto& [name, p] : targets) {
    wanted.insert(prefix + name);
    const TensorEntry* e = ck.find(prefix + name);
    if (e == nullptr) {
      missing.push_back(
          absl::StrCat("\"", prefix + name, "\": expected shape ", ShapeStr(p.shape())));
      continue;
    }
    const bool floating = e->dtype == SafetensorsDType::kF32 ||
                          e->dtype == SafetensorsDType::kBF16 ||
                          e->dtype == SafetensorsDType::kF16 || e->dtype == SafetensorsDType::kF64;
    if (!floating) {
      bad_dtype.push_back(absl::StrCat("\"", prefix + name,
                                       "\": expected a floating dtype (F32, BF16, F16 or F64), "
                                       "found ",
                                       SafetensorsDTypeName(e->dtype), " ", ShapeOf(*e)));
    }
    if (Shape(e->shape.begin(), e->shape.end()) != p.shape()) {
      mismatched.push_back(absl::StrCat("\"", prefix + name, "\": expected shape ",
                                        ShapeStr(p.shape()), ", found ", ShapeOf(*e)));
    }
  }
  std::vector<std::string> unexpected;
  for (const std::string& n : names) {
    if (!wanted.count(n) && n != prefix + "patch_embed.pos_embedding") unexpected.push_back(n);
  }
  SDPO_CHECK(missing.empty(), where, ": ", missing.size(), " missing key(s) for a model with ",
             model.config().ToJson(), ": ", ListFirst(missing));
  SDPO_CHECK(mismatched.empty(), where, ": shape mismatch for ", mismatched.size(),
             " key(s): ", ListFirst(mismatched));
  SDPO_CHECK(bad_dtype.empty(), where, ": wrong dtype for ", bad_dtype.size(),
             " key(s): ", ListFirst(bad_dtype));
  SDPO_CHECK(!options.strict || unexpected.empty(), where, ": ", unexpected.size(),
             " unexpected key(s) the model does not have: ", ListFirst(unexpected));

  LoadReport report;
  report.path = ck.path();
  report.prefix = prefix;
  report.ignored = unexpected;
  NoGradGuard no_grad;
  for (const auto& [name, p] : targets) {
    const TensorEntry& e = ck.at(prefix + name);
    CopyEntry(e, p);
    report.dtypes[SafetensorsDTypeName(e.dtype)]++;
    report.tensors++;
    report.values += p.numel();
  }
  return report;
}

CogVideoXConfig ResolveConfig(const ShardedCheckpoint& ck, std::string* source) {
  auto it = ck.metadata().find("config");
  if (it != ck.metadata().end()) {
    if (source) *source = absl::StrCat(ck.path(), " metadata \"config\"");
    return CogVideoXConfig::FromJsonString(it->second, absl::StrCat(ck.path(), " metadata config"));
  }
  const std::string json = DirName(ck.path()) + "/config.json";
  SDPO_CHECK(IsFile(json), "CogVideoX checkpoint ", ck.path(),
             ": no config (no metadata \"config\" and no ", json,
             "); pass one (--config CONFIG.json)");
  if (source) *source = json;
  return CogVideoXConfig::FromFile(json);
}

std::unique_ptr<CogVideoXModel> LoadModel(const std::string& path,
                                          const std::optional<CogVideoXConfig>& config,
                                          const LoadOptions& options, LoadReport* report) {
  std::unique_ptr<ShardedCheckpoint> ck = ShardedCheckpoint::Open(path);
  CogVideoXConfig c = config ? *config : ResolveConfig(*ck);
  std::unique_ptr<CogVideoXModel> model;
  {
    nn::SkipInitGuard skip;
    model = std::make_unique<CogVideoXModel>(c);
  }
  LoadReport r = LoadWeights(*model, *ck, options);
  if (report) *report = std::move(r);
  return model;
}

void SaveWeights(const CogVideoXModel& model, const std::string& path, bool keep_dtype) {
  std::vector<Tensor> keep;
  std::vector<TensorToWrite> out;
  for (const auto& [name, p] : model.NamedParameters()) {
    Tensor t = ops::Contiguous(ops::To(keep_dtype ? p : ops::Cast(p, kF32), Device::CPU()));
    keep.push_back(t);
    TensorToWrite w;
    w.name = name;
    w.dtype = ToSafetensorsDType(t.dtype());
    w.shape = t.shape();
    w.data = t.raw_data();
    w.nbytes = t.nbytes();
    out.push_back(w);
  }
  WriteSafetensors(path, out, {{"config", model.config().ToJson()}, {"format", "pt"}});
}

}  // namespace sdpo::cogvideox
