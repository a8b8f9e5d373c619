#include "models/forward_tool.h"

#include <cstdlib>

#include "models/checkpoint_util.h"
#include "tensor/cuda/cuda_available.h"
#include "tensor/error.h"

namespace sdpo::forward_tool {

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

Device ParseDevice(const std::string& flag) {
  if (flag == "cpu") return Device::CPU();
  int index = 0;
  if (flag != "cuda") {
    const std::string digits = flag.rfind("cuda:", 0) == 0 ? flag.substr(5) : "";
    SDPO_CHECK(!digits.empty() && digits.size() <= 4 &&
                   digits.find_first_not_of("0123456789") == std::string::npos,
               "--device=", flag, ": expected cpu, cuda or cuda:N with N a GPU index");
    index = std::stoi(digits);
  }
  SDPO_CHECK(CudaAvailable(), "--device=", flag, ": CUDA is unavailable in this process (",
             CudaUnavailableReason(), "); use --device=cpu");
  return Device::CUDA(index);
}

}  // namespace sdpo::forward_tool
