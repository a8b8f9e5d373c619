#include "models/forward_tool.h"

#include <cstdlib>
#include <vector>

#include "models/checkpoint_util.h"
#include "tensor/cuda/cuda_available.h"
#include "tensor/error.h"
#include "tensor/ops.h"

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

size_t WriteOutputs(const std::string& path, const std::map<std::string, Tensor>& outputs,
                    DType dtype, const std::map<std::string, std::string>& metadata) {
  SDPO_CHECK(dtype == kF32 || dtype == kF64, "the outputs of ", path,
             " are written as F32 or F64, got ", DTypeName(dtype));
  // The values as written (a cast to F32 can overflow), all checked before anything is written.
  std::vector<Tensor> host;
  for (const auto& [name, t] : outputs) {
    host.push_back(ops::Contiguous(ops::Cast(ops::To(t, Device::CPU()), dtype)));
    CheckFiniteOutput(host.back(), name);
  }
  std::vector<TensorToWrite> write;
  const SafetensorsDType file_dtype =
      dtype == kF64 ? SafetensorsDType::kF64 : SafetensorsDType::kF32;
  size_t i = 0;
  for (const auto& [name, t] : outputs) {
    const Tensor& o = host[i++];
    write.push_back({name, file_dtype, o.shape(), o.raw_data(), o.nbytes()});
  }
  WriteSafetensors(path, write, metadata);
  return write.size();
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
