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

using ckpt::DirName;
using ckpt::IsFile;
using ckpt::IsLoraName;

bool StartsWith(const std::string& s, const std::string& p) { return s.rfind(p, 0) == 0; }

// The prefix every key of the checkpoint shares ("" when none of the known ones).
std::string KeyPrefix(const std::vector<std::string>& names) {
  for (const char* p : {"model.diffusion_model.", "diffusion_model.", "transformer.", "model."}) {
    if (std::all_of(names.begin(), names.end(),
                    [p](const std::string& n) { return StartsWith(n, p); })) {
      return p;
    }
  }
  return "";
}

std::string Where(const CheckpointView& ck, const std::string& prefix) {
  return absl::StrCat("CogVideoX checkpoint ", ck.path(),
                      prefix.empty() ? "" : " (prefix \"" + prefix + "\")");
}

}  // namespace

void CheckConfigMatchesFile(const CogVideoXConfig& config, const CheckpointView& ck) {
  const std::string prefix = KeyPrefix(ck.names());
  std::vector<ckpt::ExpectedShape> expected;
  for (const auto& [name, shape] : ParameterShapes(config)) {
    expected.push_back({absl::StrCat("\"", prefix + name, "\""), ck.find(prefix + name), shape});
  }
  ckpt::CheckShapes(expected, Where(ck, prefix), config.ToJson());
}

LoadReport LoadWeights(CogVideoXModel& model, const std::string& path, const LoadOptions& options) {
  std::unique_ptr<CheckpointView> ck = OpenCheckpoint(path);
  return LoadWeights(model, *ck, options);
}

LoadReport LoadWeights(CogVideoXModel& model, const CheckpointView& ck,
                       const LoadOptions& options) {
  const std::vector<std::string> names = ck.names();
  SDPO_CHECK(!names.empty(), "CogVideoX checkpoint ", ck.path(), ": holds no tensors");
  const std::string prefix = KeyPrefix(names);
  const std::string where = Where(ck, prefix);
  std::vector<ckpt::ExpectedParameter> expected;
  std::set<std::string> wanted;
  for (auto& [name, p] : model.NamedParameters()) {
    if (IsLoraName(name)) continue;
    wanted.insert(prefix + name);
    expected.push_back({absl::StrCat("\"", prefix + name, "\""), ck.find(prefix + name), p});
  }
  std::vector<std::string> unexpected;
  for (const std::string& n : names) {
    if (!wanted.count(n) && n != prefix + "patch_embed.pos_embedding") unexpected.push_back(n);
  }

  NoGradGuard no_grad;
  const ckpt::CopyCounts counts = ckpt::CheckAndCopy(expected, unexpected, options.strict, where,
                                                     model.config().ToJson());
  LoadReport report;
  report.path = ck.path();
  report.prefix = prefix;
  report.ignored = unexpected;
  report.dtypes = counts.dtypes;
  report.tensors = counts.tensors;
  report.values = counts.values;
  return report;
}

CogVideoXConfig ResolveConfig(const CheckpointView& ck, std::string* source) {
  auto it = ck.metadata().find("config");
  if (it != ck.metadata().end()) {
    if (source) *source = absl::StrCat(ck.path(), " metadata \"config\"");
    return CogVideoXConfig::FromJsonString(it->second, absl::StrCat(ck.path(), " metadata config"));
  }
  const std::string json = DirName(ck.path()) + "/config.json";
  SDPO_CHECK(IsFile(json), "CogVideoX checkpoint ", ck.path(),
             ": no config (no metadata \"config\" and no ", json,
             "); put the model's diffusers config.json next to the weights, at ", json,
             ", or give it to the forward tool with --config");
  if (source) *source = json;
  return CogVideoXConfig::FromFile(json);
}

std::unique_ptr<CogVideoXModel> LoadModel(const std::string& path,
                                          const std::optional<CogVideoXConfig>& config,
                                          const LoadOptions& options, LoadReport* report) {
  std::unique_ptr<CheckpointView> ck = OpenCheckpoint(path);
  CogVideoXConfig c = config ? *config : ResolveConfig(*ck);
  CheckConfigMatchesFile(c, *ck);  // before the model allocates what the config says
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
