#include "nn/checkpoint_io.h"

#include <cstdlib>

#include "gtest/gtest.h"
#include "nn/init.h"
#include "nn/layers.h"
#include "nn/optim.h"
#include "tests/nn/test_util.h"

namespace sdpo::nn {
namespace {

using testing::AllClose;
using testing::ExpectErrorContains;
using testing::Randn;

std::string TempPath(const std::string& name) {
  const char* dir = std::getenv("TEST_TMPDIR");
  return std::string(dir != nullptr ? dir : "/tmp") + "/" + name;
}

class Pair : public Module {
 public:
  Pair() {
    a = RegisterModule("a", std::make_unique<Linear>(3, 4));
    b = RegisterModule("b", std::make_unique<MLP>(4, 5, 2, Activation::kSilu));
  }
  Tensor Forward(const Tensor& x) const { return b->Forward(a->Forward(x)); }
  Linear* a;
  MLP* b;
};

TEST(CheckpointIoTest, ModuleRoundTripThroughSafetensors) {
  SetInitSeed(1);
  Pair src;
  std::string path = TempPath("pair.safetensors");
  SaveSafetensors(path, src.StateDict(), {{"format", "pt"}});
  SetInitSeed(2);
  Pair dst;
  LoadReport r = LoadSafetensors(dst, path);
  EXPECT_EQ(r.loaded.size(), 6u);
  for (auto& [k, v] : dst.StateDict()) {
    EXPECT_EQ(v.ToVector(), src.StateDict().at(k).ToVector()) << k;
  }
  // A bf16 file converts into the f32 master weights.
  TensorMap bf16;
  for (auto& [k, v] : src.StateDict()) bf16[k] = ops::Cast(v, kBF16);
  SaveSafetensors(path, bf16);
  auto source = SafetensorsSource::Open(path);
  EXPECT_EQ(source->Read("a.weight").dtype(), kBF16);
  SetInitSeed(3);
  Pair low;
  LoadSafetensors(low, path);
  EXPECT_EQ(low.a->weight().dtype(), kF32);
  EXPECT_TRUE(AllClose(low.a->weight(), src.a->weight(), 1e-2, 1e-3));
  // Strict loading names missing keys and the file.
  TensorMap partial = src.StateDict();
  partial.erase("b.2.bias");
  SaveSafetensors(path, partial);
  ExpectErrorContains([&] { LoadSafetensors(low, path); }, {"pair.safetensors", "b.2.bias"});
}

TEST(CheckpointIoTest, OptimizerStateRoundTrip) {
  SetInitSeed(4);
  Pair m;
  AdamW opt(m.NamedParameters());
  Backward(sum(m.Forward(Randn({2, 3}, 5))));
  opt.Step();
  std::string path = TempPath("optimizer.safetensors");
  SaveSafetensors(path, opt.StateDict());
  TensorMap back = ReadSafetensors(path);
  EXPECT_EQ(back.at("step").dtype(), kI64);
  EXPECT_EQ(back.at("step").item(), 1);
  AdamW other(m.NamedParameters());
  other.LoadStateDict(back);
  EXPECT_EQ(other.step(), 1);
  EXPECT_EQ(other.StateDict().at("a.weight.exp_avg").ToVector(),
            opt.StateDict().at("a.weight.exp_avg").ToVector());
}

TEST(CheckpointIoTest, LoraFileRoundTrip) {
  SetInitSeed(6);
  Pair m;
  LoraConfig c;
  c.rank = 2;
  c.alpha = 4;
  c.targets = {"a", "b.*"};
  AttachLora(m, c);
  for (auto& [p, l] : LoraLayers(m))
    ops::CopyInto(l->lora_B()->weight(), Randn(l->lora_B()->weight().shape(), 7));
  Tensor x = Randn({2, 3}, 8);
  Tensor y = m.Forward(x);
  std::string path = TempPath("adapter.safetensors");
  SaveLora(m, path, "transformer.");
  std::map<std::string, std::string> meta;
  TensorMap raw = ReadSafetensors(path, &meta);
  EXPECT_EQ(raw.size(), 6u);
  EXPECT_EQ(raw.count("transformer.b.0.lora_A.weight"), 1u);
  EXPECT_EQ(meta.at("lora_rank"), "2");
  EXPECT_EQ(meta.at("lora_alpha"), "4");
  SetInitSeed(6);
  Pair fresh;
  LoadLora(fresh, path, true, "transformer.");
  EXPECT_EQ(fresh.Forward(x).ToVector(), y.ToVector());
}

// A module whose parameters are named like tensors of tests/io/testdata/views.pth.
class ViewsModule : public Module {
 public:
  ViewsModule() {
    RegisterParameter("plain", Tensor::Zeros({3, 5}));
    RegisterModule("shared", std::make_unique<SharedPart>());
  }
  class SharedPart : public Module {
   public:
    SharedPart() {
      RegisterParameter("a", Tensor::Zeros({2, 3}, kBF16));  // f32 on disk: converted
      RegisterParameter("b", Tensor::Zeros({6}));
    }
  };
};

TEST(CheckpointIoTest, OpenTensorSourceLoadsATorchFileIntoAModule) {
  auto source = OpenTensorSource("tests/io/testdata/views.pth");
  EXPECT_EQ(source->KeyShape("transposed"), (Shape{6, 4}));
  EXPECT_EQ(source->Read("long").dtype(), kI64);
  ViewsModule m;
  LoadReport report = m.LoadStateDict(*source, /*strict=*/false);
  EXPECT_EQ(report.loaded.size(), 3u);
  EXPECT_TRUE(report.missing.empty());
  EXPECT_TRUE(AllClose(m.FindParameter("shared.a").ToVector(),
                       std::vector<double>{0, 1, 2, 3, 4, 5}, 0, 0));
  EXPECT_TRUE(AllClose(m.FindParameter("shared.b").ToVector(),
                       std::vector<double>{6, 7, 8, 9, 10, 11}, 0, 0));
  EXPECT_TRUE(AllClose(m.FindParameter("plain"), source->Read("plain"), 0, 0));
}

TEST(CheckpointIoTest, EachNamedSourceOpensOnlyItsFormat) {
  const std::string st = TempPath("one.safetensors");
  SaveSafetensors(st, {{"w", Tensor::Ones({2})}});
  EXPECT_EQ(OpenTensorSource(st)->Keys(), std::vector<std::string>{"w"});
  EXPECT_EQ(SafetensorsSource::Open(st)->Keys(), std::vector<std::string>{"w"});
  EXPECT_TRUE(PthSource::Open("tests/io/testdata/views.pth")->Read("bool").defined());
  ExpectErrorContains([&] { PthSource::Open(st); }, {st, "not a PyTorch checkpoint"});
  ExpectErrorContains([&] { SafetensorsSource::Open("tests/io/testdata/views.pth"); },
                      {"views.pth"});
}

}  // namespace
}  // namespace sdpo::nn
