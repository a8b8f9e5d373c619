#include "models/forward_tool.h"

#include <cstdlib>

#include "models/checkpoint_util.h"
#include "tensor/error.h"

namespace sdpo::forward_tool {

Flags ParseFlags(int argc, char** argv, const std::set<std::string>& allowed,
                 const std::set<std::string>& required, const std::string& usage) {
  Flags flags;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      flags.help = true;
      return flags;
    }
    SDPO_CHECK(a.rfind("--", 0) == 0, "unexpected argument \"", a, "\"\n", usage);
    const size_t eq = a.find('=');
    if (eq != std::string::npos) {
      flags.values[a.substr(2, eq - 2)] = a.substr(eq + 1);
    } else {
      SDPO_CHECK(i + 1 < argc, "flag ", a, " needs a value\n", usage);
      flags.values[a.substr(2)] = argv[++i];
    }
  }
  for (const auto& [k, v] : flags.values) {
    SDPO_CHECK(allowed.count(k) == 1, "unknown flag --", k, "\n", usage);
  }
  for (const std::string& r : required) {
    SDPO_CHECK(flags.has(r), "missing --", r, "\n", usage);
  }
  return flags;
}

std::string Resolve(const std::string& path) {
  if (path.empty() || path[0] == '/') return path;
  const char* wd = std::getenv("BUILD_WORKING_DIRECTORY");
  return wd ? std::string(wd) + "/" + path : path;
}

Tensor ReadCaseTensor(const SafetensorsFile& file, const std::string& name, DType dtype) {
  const TensorEntry& e = file.at(name);
  return Tensor::FromVector(ReadAsF64(e), Shape(e.shape.begin(), e.shape.end()), dtype);
}

void CheckFiniteOutput(const Tensor& out, const std::string& name) {
  const auto [index, value] = ckpt::FirstNonFinite(out);
  SDPO_CHECK(index < 0, name, " ", ShapeStr(out.shape()), " has a non-finite value (", value,
             ") at flat index ", index,
             ": the forward overflowed or the weights/inputs are not finite; nothing written");
}

}  // namespace sdpo::forward_tool
