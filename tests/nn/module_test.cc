#include "nn/module.h"

#include "gtest/gtest.h"
#include "nn/attention.h"
#include "nn/init.h"
#include "nn/layers.h"
#include "tests/nn/test_util.h"

namespace sdpo::nn {
namespace {

using testing::ExpectErrorContains;

// A miniature DiT block tree: names mirror Wan's checkpoint keys.
class Block : public Module {
 public:
  explicit Block(int64_t dim) {
    modulation = RegisterParameter("modulation", InitNormal({1, 6, dim}, 0.1));
    AttentionOptions o;
    o.dim = dim;
    o.num_heads = 2;
    o.qk_norm = QkNorm::kRmsNormAcrossHeads;
    self_attn = RegisterModule("self_attn", std::make_unique<Attention>(o));
    norm3 = RegisterModule("norm3", std::make_unique<LayerNorm>(dim, 1e-6));
    ffn = RegisterModule("ffn", std::make_unique<MLP>(dim, 2 * dim, dim, Activation::kGeluTanh));
  }
  std::string TypeName() const override { return "Block"; }
  Tensor modulation;
  Attention* self_attn;
  LayerNorm* norm3;
  MLP* ffn;
};

class Tiny : public Module {
 public:
  explicit Tiny(int64_t dim, int64_t layers) {
    patch_embedding =
        RegisterModule("patch_embedding", std::make_unique<PatchEmbed>(3, dim, Int3{1, 2, 2}));
    blocks = RegisterModule("blocks", std::make_unique<ModuleList>());
    for (int64_t i = 0; i < layers; ++i) blocks->Append(std::make_unique<Block>(dim));
    RegisterBuffer("freqs", Tensor::Ones({4}), /*persistent=*/false);
    RegisterBuffer("table", Tensor::Ones({2}), /*persistent=*/true);
  }
  PatchEmbed* patch_embedding;
  ModuleList* blocks;
};

TEST(ModuleTest, NamesFollowRegistrationOrderAndMatchCheckpointKeys) {
  SetInitSeed(1);
  Tiny m(4, 2);
  std::vector<std::string> names;
  for (auto& [n, p] : m.NamedParameters()) names.push_back(n);
  std::vector<std::string> block0 = {"blocks.0.modulation",
                                     "blocks.0.self_attn.q.weight",
                                     "blocks.0.self_attn.q.bias",
                                     "blocks.0.self_attn.k.weight",
                                     "blocks.0.self_attn.k.bias",
                                     "blocks.0.self_attn.v.weight",
                                     "blocks.0.self_attn.v.bias",
                                     "blocks.0.self_attn.o.weight",
                                     "blocks.0.self_attn.o.bias",
                                     "blocks.0.self_attn.norm_q.weight",
                                     "blocks.0.self_attn.norm_k.weight",
                                     "blocks.0.norm3.weight",
                                     "blocks.0.norm3.bias",
                                     "blocks.0.ffn.0.weight",
                                     "blocks.0.ffn.0.bias",
                                     "blocks.0.ffn.2.weight",
                                     "blocks.0.ffn.2.bias"};
  ASSERT_EQ(names.size(), 2 + 2 * block0.size());
  EXPECT_EQ(names[0], "patch_embedding.weight");
  EXPECT_EQ(names[1], "patch_embedding.bias");
  for (size_t i = 0; i < block0.size(); ++i) EXPECT_EQ(names[2 + i], block0[i]);
  EXPECT_EQ(names[2 + block0.size()], "blocks.1.modulation");
  EXPECT_EQ(m.FindParameter("blocks.1.ffn.2.bias").shape(), Shape({4}));
  EXPECT_EQ(m.FindParameter("patch_embedding.weight").shape(), Shape({4, 3, 1, 2, 2}));
  EXPECT_FALSE(m.FindParameter("blocks.2.ffn.2.bias").defined());
  EXPECT_FALSE(m.FindParameter("blocks.1.nothing").defined());
  EXPECT_NE(m.FindModule("blocks.1.self_attn"), nullptr);
  EXPECT_EQ(m.FindModule("blocks.1.self_attn")->TypeName(), "Attention");
  EXPECT_EQ(m.blocks->at<Block>(1)->TypeName(), "Block");

  std::vector<std::string> modules;
  for (auto& [n, mod] : m.NamedModules()) modules.push_back(n);
  EXPECT_EQ(modules[0], "");
  EXPECT_EQ(modules[1], "patch_embedding");
  EXPECT_EQ(modules[2], "blocks");
  EXPECT_EQ(modules[3], "blocks.0");
  EXPECT_EQ(modules[4], "blocks.0.self_attn");
  EXPECT_EQ(modules[5], "blocks.0.self_attn.q");

  // The state dict holds parameters and persistent buffers only.
  TensorMap sd = m.StateDict();
  EXPECT_EQ(sd.size(), names.size() + 1);
  EXPECT_EQ(sd.count("table"), 1u);
  EXPECT_EQ(sd.count("freqs"), 0u);
  EXPECT_EQ(m.NumParameters(), [&] {
    int64_t n = 0;
    for (auto& [k, p] : m.NamedParameters()) n += p.numel();
    return n;
  }());
}

TEST(ModuleTest, DottedChildNamesCreateContainers) {
  AttentionOptions o;
  o.dim = 4;
  o.num_heads = 2;
  o.qk_norm = QkNorm::kLayerNormPerHead;
  o.DiffusersNames();
  Attention a(o);
  std::vector<std::string> names;
  for (auto& [n, p] : a.NamedParameters()) names.push_back(n);
  std::vector<std::string> want = {"to_q.weight",     "to_q.bias",     "to_k.weight",
                                   "to_k.bias",       "to_v.weight",   "to_v.bias",
                                   "to_out.0.weight", "to_out.0.bias", "norm_q.weight",
                                   "norm_q.bias",     "norm_k.weight", "norm_k.bias"};
  EXPECT_EQ(names, want);
  EXPECT_EQ(a.FindParameter("norm_q.weight").shape(), Shape({2}));

  MLP mlp(3, 5, 3, Activation::kGeluTanh, true, "net.0.proj", "net.2");
  names.clear();
  for (auto& [n, p] : mlp.NamedParameters()) names.push_back(n);
  EXPECT_EQ(names, (std::vector<std::string>{"net.0.proj.weight", "net.0.proj.bias", "net.2.weight",
                                             "net.2.bias"}));
}

TEST(ModuleTest, RegistrationRejectsBadNames) {
  Module m;
  m.RegisterParameter("w", Tensor::Zeros({2}));
  ExpectErrorContains([&] { m.RegisterParameter("w", Tensor::Zeros({2})); }, {"'w'", "already"});
  ExpectErrorContains([&] { m.RegisterModule("w", std::make_unique<Module>()); }, {"already"});
  ExpectErrorContains([&] { m.RegisterParameter("a.b", Tensor::Zeros({2})); }, {"'a.b'"});
  ExpectErrorContains([&] { m.RegisterParameter("", Tensor::Zeros({2})); }, {"invalid name"});
  ExpectErrorContains([&] { m.RegisterParameter("i", Tensor::Zeros({2}, kI64)); }, {"floating"});
}

TEST(ModuleTest, StateDictRoundTrip) {
  SetInitSeed(2);
  Tiny a(4, 2);
  SetInitSeed(3);
  Tiny b(4, 2);
  ASSERT_FALSE(testing::AllClose(a.blocks->at<Block>(0)->modulation,
                                 b.blocks->at<Block>(0)->modulation, 0, 0));
  // Snapshot a's values (the state dict aliases the parameters).
  TensorMap snapshot;
  for (auto& [k, v] : a.StateDict()) snapshot[k] = ops::Clone(v);
  Tensor handle = b.blocks->at<Block>(1)->self_attn->q()->weight();
  LoadReport r = b.LoadStateDict(snapshot);
  EXPECT_EQ(r.loaded.size(), snapshot.size());
  EXPECT_TRUE(r.missing.empty());
  EXPECT_TRUE(r.unexpected.empty());
  for (auto& [k, v] : b.StateDict()) {
    EXPECT_TRUE(testing::AllClose(v, snapshot.at(k), 0, 0)) << k;
  }
  // Loading writes into the existing tensors: handles held by layers see the values.
  EXPECT_TRUE(testing::AllClose(handle, snapshot.at("blocks.1.self_attn.q.weight"), 0, 0));
  EXPECT_TRUE(handle.requires_grad());

  // A bf16 checkpoint converts into the f32 master copy.
  TensorMap bf16;
  for (auto& [k, v] : snapshot) bf16[k] = ops::Cast(v, kBF16);
  b.LoadStateDict(bf16);
  EXPECT_EQ(handle.dtype(), kF32);
  EXPECT_TRUE(testing::AllClose(handle, snapshot.at("blocks.1.self_attn.q.weight"), 1e-2, 1e-2));
}

TEST(ModuleTest, StrictLoadListsMissingAndUnexpectedKeys) {
  Tiny m(4, 1);
  TensorMap sd;
  for (auto& [k, v] : m.StateDict()) sd[k] = ops::Clone(v);
  sd.erase("blocks.0.ffn.2.bias");
  sd.erase("table");
  sd["blocks.0.ffn.3.weight"] = Tensor::Zeros({4, 4});
  ExpectErrorContains([&] { m.LoadStateDict(sd); },
                      {"2 missing key(s)", "blocks.0.ffn.2.bias", "table",
                       "1 unexpected key(s): blocks.0.ffn.3.weight"});
  // Partial: loads what matches, reports the rest.
  Tensor bias = m.FindParameter("blocks.0.ffn.2.bias");
  ops::Fill(bias, 7);
  ops::Fill(sd.at("blocks.0.ffn.0.bias"), 3);
  LoadReport r = m.LoadStateDict(sd, /*strict=*/false);
  EXPECT_EQ(r.missing, (std::vector<std::string>{"blocks.0.ffn.2.bias", "table"}));
  EXPECT_EQ(r.unexpected, (std::vector<std::string>{"blocks.0.ffn.3.weight"}));
  EXPECT_EQ(r.loaded.size(), sd.size() - 1);
  EXPECT_EQ(bias.at({0}), 7);  // untouched
  EXPECT_EQ(m.FindParameter("blocks.0.ffn.0.bias").at({1}), 3);
}

TEST(ModuleTest, ShapeMismatchNamesKeyAndBothShapesAndWritesNothing) {
  Tiny m(4, 1);
  TensorMap sd;
  for (auto& [k, v] : m.StateDict()) sd[k] = ops::AddScalar(v, 1);
  sd["blocks.0.self_attn.k.weight"] = Tensor::Zeros({4, 5});
  Tensor before = ops::Clone(m.FindParameter("blocks.0.ffn.0.weight"));
  for (bool strict : {true, false}) {
    ExpectErrorContains([&] { m.LoadStateDict(sd, strict); },
                        {"shape mismatch", "blocks.0.self_attn.k.weight", "[4, 4]", "[4, 5]"});
  }
  EXPECT_TRUE(testing::AllClose(m.FindParameter("blocks.0.ffn.0.weight"), before, 0, 0));
}

TEST(ModuleTest, CastParametersKeepsHandlesAndFlags) {
  Linear l(3, 2);
  Tensor w = l.weight();
  std::vector<double> values = w.ToVector();
  l.SetRequiresGrad(false);
  Tensor(l.weight()).set_requires_grad(true);
  l.CastParameters(kF64);
  EXPECT_EQ(w.dtype(), kF64);
  EXPECT_EQ(l.weight().dtype(), kF64);
  EXPECT_EQ(w.ToVector(), values);
  EXPECT_TRUE(w.requires_grad());
  EXPECT_FALSE(l.bias().requires_grad());
  EXPECT_EQ(l.NumParameters(/*trainable_only=*/true), 6);
  EXPECT_EQ(l.NamedTrainableParameters().size(), 1u);
  l.SetComputeDType(kF64);
  Tensor y = l.Forward(Tensor::Ones({1, 3}, kF64));
  EXPECT_EQ(y.dtype(), kF64);
}

TEST(ModuleTest, ComputeDTypePropagatesToChildrenAddedLater) {
  Module root;
  root.SetComputeDType(kBF16);
  Linear* l = root.RegisterModule("l", std::make_unique<Linear>(2, 2));
  EXPECT_EQ(l->compute_dtype(), kBF16);
  EXPECT_EQ(l->weight().dtype(), kF32);  // master stays f32
  root.SetComputeDType(kF32);
  EXPECT_EQ(l->compute_dtype(), kF32);
}

TEST(ModuleTest, ZeroGradAndDescribe) {
  Linear l(2, 2);
  Tensor y = sum(l.Forward(Tensor::Ones({1, 2})));
  Backward(y);
  EXPECT_TRUE(l.weight().grad().defined());
  l.ZeroGrad();
  EXPECT_FALSE(l.weight().grad().defined());
  EXPECT_NE(l.Describe().find("Linear (6 params)"), std::string::npos);
}

TEST(ModuleTest, InitIsReproducibleAndSkippable) {
  SetInitSeed(5);
  Linear a(3, 4);
  SetInitSeed(5);
  Linear b(3, 4);
  EXPECT_EQ(a.weight().ToVector(), b.weight().ToVector());
  for (double v : a.weight().ToVector()) EXPECT_LE(std::abs(v), 1 / std::sqrt(3.0));
  SkipInitGuard skip;
  Linear c(3, 4);
  for (double v : c.weight().ToVector()) EXPECT_EQ(v, 0);
}

}  // namespace
}  // namespace sdpo::nn
