#include "bench/random_weights.h"

#include <cmath>
#include <map>

#include "io/json.h"
#include "tensor/ops.h"

namespace sdpo::bench {
namespace {

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

void RandomizeParameters(nn::Module& module, uint64_t seed) {
  uint64_t i = 0;
  for (auto& [name, p] : module.NamedParameters()) {
    Tensor r = ops::RandomNormal(p.shape(), seed, (i++) << 32, kF32);
    if (EndsWith(name, "bias")) {
      r = ops::MulScalar(r, 0.05);
    } else if (EndsWith(name, "gamma") || p.dim() == 1) {
      r = ops::AddScalar(ops::MulScalar(r, 0.1), 1.0);
    } else {
      const double fan_in = static_cast<double>(p.numel() / p.size(0));
      r = ops::MulScalar(r, 1.0 / std::sqrt(fan_in));
    }
    ops::CopyInto(p, r);
  }
}

void CheckNamesList(const nn::Module& module, const std::string& path) {
  const json::Value list = json::ParseFile(path);
  std::map<std::string, Shape> expected;
  for (const json::Value& t : list.at("tensors").as_array()) {
    Shape shape;
    for (const json::Value& d : t.at("shape").as_array()) shape.push_back(d.as_int());
    expected[t.at("name").as_string()] = shape;
  }
  const auto params = module.NamedParameters();
  SDPO_CHECK(params.size() == expected.size(), path, ": ", expected.size(),
             " tensors listed, the model has ", params.size());
  for (const auto& [name, p] : params) {
    auto it = expected.find(name);
    SDPO_CHECK(it != expected.end(), path, ": the model's '", name, "' is not listed");
    SDPO_CHECK(it->second == p.shape(), path, ": '", name, "' is listed as ", ShapeStr(it->second),
               ", the model has ", ShapeStr(p.shape()));
  }
}

}  // namespace sdpo::bench
