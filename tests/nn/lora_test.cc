#include "nn/lora.h"

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "nn/attention.h"
#include "nn/init.h"
#include "tests/autograd/gradcheck.h"
#include "tests/nn/test_util.h"

namespace sdpo::nn {
namespace {

using testing::AllClose;
using testing::ExpectErrorContains;
using testing::Randn;

class Blk : public Module {
 public:
  Blk() {
    AttentionOptions o;
    o.dim = 8;
    o.num_heads = 2;
    o.qk_norm = QkNorm::kRmsNormAcrossHeads;
    self_attn = RegisterModule("self_attn", std::make_unique<Attention>(o));
    ffn = RegisterModule("ffn", std::make_unique<MLP>(8, 16, 8, Activation::kGeluTanh));
  }
  Tensor Forward(const Tensor& x) const {
    Tensor h = add(x, self_attn->Forward(x));
    return add(h, ffn->Forward(h));
  }
  Attention* self_attn;
  MLP* ffn;
};

class Net : public Module {
 public:
  Net() {
    blocks = RegisterModule("blocks", std::make_unique<ModuleList>());
    for (int i = 0; i < 2; ++i) blocks->Append(std::make_unique<Blk>());
    head = RegisterModule("head", std::make_unique<Linear>(8, 4));
  }
  Tensor Forward(const Tensor& x) const {
    Tensor h = x;
    for (int64_t i = 0; i < blocks->size(); ++i) h = blocks->at<Blk>(i)->Forward(h);
    return head->Forward(h);
  }
  ModuleList* blocks;
  Linear* head;
};

LoraConfig Config() {
  LoraConfig c;
  c.rank = 2;
  c.alpha = 3;
  c.targets = {"blocks.*.self_attn.{q,k,v,o}", "blocks.*.ffn.*"};
  return c;
}

// Gives every adapter B random values (B = 0 makes adapters a no-op).
void RandomizeB(Module& m, uint64_t seed) {
  for (auto& [path, l] : LoraLayers(m)) {
    ops::CopyInto(l->lora_B()->weight(), Randn(l->lora_B()->weight().shape(), seed++));
  }
}

TEST(LoraPatternTest, Glob) {
  EXPECT_TRUE(MatchModulePattern("blocks.*.self_attn.{q,k,v,o}", "blocks.12.self_attn.k"));
  EXPECT_FALSE(MatchModulePattern("blocks.*.self_attn.{q,k,v,o}", "blocks.12.self_attn.norm_q"));
  EXPECT_FALSE(MatchModulePattern("blocks.*.self_attn.q", "blocks.1.2.self_attn.q"));
  EXPECT_TRUE(MatchModulePattern("blocks.**.q", "blocks.1.2.self_attn.q"));
  EXPECT_TRUE(MatchModulePattern("**.to_out.0", "transformer_blocks.3.attn1.to_out.0"));
  EXPECT_TRUE(MatchModulePattern("blocks.*.ffn.*", "blocks.0.ffn.2"));
  EXPECT_FALSE(MatchModulePattern("blocks.*.ffn.*", "blocks.0.ffn"));
  EXPECT_FALSE(MatchModulePattern("blocks.*.ffn", "blocks.0.ffn.2"));  // whole path
  EXPECT_TRUE(MatchModulePattern("blocks.1*.attn{1,2}.to_{q,v}", "blocks.17.attn2.to_v"));
  EXPECT_FALSE(MatchModulePattern("blocks.1*.attn{1,2}.to_{q,v}", "blocks.27.attn2.to_v"));
  ExpectErrorContains([] { MatchModulePattern("a.{b", "a.b"); }, {"unbalanced"});
}

TEST(LoraTest, AttachSelectsLinearsAndFreezesTheBase) {
  SetInitSeed(1);
  Net net;
  std::vector<std::string> paths = AttachLora(net, Config());
  std::vector<std::string> want;
  for (int b = 0; b < 2; ++b) {
    for (const char* n : {"q", "k", "v", "o"}) {
      want.push_back(absl::StrCat("blocks.", b, ".self_attn.", n));
    }
    want.push_back(absl::StrCat("blocks.", b, ".ffn.0"));
    want.push_back(absl::StrCat("blocks.", b, ".ffn.2"));
  }
  EXPECT_EQ(paths, want);
  auto trainable = net.NamedTrainableParameters();
  ASSERT_EQ(trainable.size(), 2 * want.size());
  EXPECT_EQ(trainable[0].first, "blocks.0.self_attn.q.lora_A.weight");
  EXPECT_EQ(trainable[1].first, "blocks.0.self_attn.q.lora_B.weight");
  EXPECT_EQ(trainable[1].second.shape(), Shape({8, 2}));
  EXPECT_EQ(net.FindParameter("blocks.1.ffn.0.lora_A.weight").shape(), Shape({2, 8}));
  EXPECT_EQ(net.FindParameter("blocks.1.ffn.0.lora_B.weight").shape(), Shape({16, 2}));
  EXPECT_FALSE(net.FindParameter("blocks.0.self_attn.q.weight").requires_grad());
  EXPECT_FALSE(net.head->weight().requires_grad());
  for (double v : net.FindParameter("blocks.0.ffn.2.lora_B.weight").ToVector()) EXPECT_EQ(v, 0);

  // Patterns that select nothing, or layers already adapted, are errors.
  LoraConfig none = Config();
  none.targets = {"blocks.*.cross_attn.q"};
  ExpectErrorContains([&] { AttachLora(net, none); }, {"'blocks.*.cross_attn.q'", "no Linear"});
  LoraConfig again = Config();
  again.targets = {"head", "blocks.0.ffn.0"};
  ExpectErrorContains([&] { AttachLora(net, again); }, {"'blocks.0.ffn.0' already"});
  LoraConfig dropout = Config();
  dropout.dropout = 0.1;
  ExpectErrorContains([&] { AttachLora(net, dropout); }, {"dropout"});
}

TEST(LoraTest, ZeroBEqualsBaseAndAdaptersOffEqualsBase) {
  SetInitSeed(2);
  Net net;
  Tensor x = Randn({2, 3, 8}, 5);
  Tensor base = net.Forward(x);
  AttachLora(net, Config());
  EXPECT_EQ(net.Forward(x).ToVector(), base.ToVector());  // B = 0: exactly the base
  RandomizeB(net, 10);
  Tensor adapted = net.Forward(x);
  EXPECT_FALSE(AllClose(adapted, base, 1e-3, 1e-3));
  SetLoraEnabled(net, false);
  EXPECT_EQ(net.Forward(x).ToVector(), base.ToVector());
  SetLoraEnabled(net, true);
  EXPECT_EQ(net.Forward(x).ToVector(), adapted.ToVector());
  {
    // The preference trainer's reference forward: same weights, adapters off, no graph.
    LoraDisabledScope reference(net);
    NoGradGuard no_grad;
    EXPECT_EQ(net.Forward(x).ToVector(), base.ToVector());
  }
  EXPECT_EQ(net.Forward(x).ToVector(), adapted.ToVector());
}

TEST(LoraTest, AdapterMathAndGradientsReachOnlyAdapters) {
  SetInitSeed(3);
  Linear l(5, 4);
  l.AttachLora(3, 6);
  ops::CopyInto(l.lora_B()->weight(), Randn({4, 3}, 11));
  Tensor x = Randn({2, 5}, 12);
  // y = x W^T + b + (alpha / r) x A^T B^T
  Tensor want = ops::Add(
      ops::Add(ops::Matmul(x, ops::Transpose(l.weight(), 0, 1)), l.bias()),
      ops::MulScalar(ops::Matmul(ops::Matmul(x, ops::Transpose(l.lora_A()->weight(), 0, 1)),
                                 ops::Transpose(l.lora_B()->weight(), 0, 1)),
                     2.0));
  EXPECT_TRUE(AllClose(l.Forward(x), want, 1e-5, 1e-6));

  Net net;
  AttachLora(net, Config());
  RandomizeB(net, 20);
  Backward(sum(net.Forward(Randn({1, 3, 8}, 13))));
  for (auto& [name, p] : net.NamedParameters()) {
    bool adapter = name.find("lora_") != std::string::npos;
    EXPECT_EQ(p.grad().defined(), adapter) << name;
  }

  // Finite differences through the adapter branch (f64).
  Linear g(3, 2);
  g.AttachLora(2, 4);
  g.CastParameters(kF64);
  g.SetComputeDType(kF64);
  ops::CopyInto(g.lora_B()->weight(), Randn({2, 2}, 14));
  Tensor xin = sdpo::testing::RandomLeaf({4, 3}, 15);
  auto r = sdpo::testing::GradCheck([&](const std::vector<Tensor>& in) { return g.Forward(in[0]); },
                                    {xin, g.lora_A()->weight(), g.lora_B()->weight()});
  EXPECT_TRUE(r.ok) << r.message;
}

TEST(LoraTest, MergedEqualsUnmerged) {
  SetInitSeed(4);
  Net net;
  AttachLora(net, Config());
  RandomizeB(net, 30);
  Tensor x = Randn({2, 3, 8}, 6);
  Tensor adapted = net.Forward(x);
  Tensor w0 = ops::Clone(net.FindParameter("blocks.1.self_attn.v.weight"));
  MergeLora(net);
  EXPECT_TRUE(net.blocks->at<Blk>(0)->ffn->fc1()->lora_merged());
  EXPECT_FALSE(AllClose(net.FindParameter("blocks.1.self_attn.v.weight"), w0, 1e-3, 1e-3));
  {
    NoGradGuard no_grad;  // merged weights serve inference
    EXPECT_TRUE(AllClose(net.Forward(x), adapted, 1e-5, 1e-5));
  }
  // Training through merged adapters, or switching them off, is refused.
  ExpectErrorContains([&] { net.Forward(x); }, {"merged", "unmerge"});
  ExpectErrorContains([&] { SetLoraEnabled(net, false); }, {"merged"});
  ExpectErrorContains([&] { MergeLora(net); }, {"already merged"});
  UnmergeLora(net);
  EXPECT_TRUE(AllClose(net.FindParameter("blocks.1.self_attn.v.weight"), w0, 0, 1e-6));
  EXPECT_TRUE(AllClose(net.Forward(x), adapted, 1e-5, 1e-6));
  ExpectErrorContains([&] { UnmergeLora(net); }, {"not merged"});
}

TEST(LoraTest, AdapterStateDictRoundTrip) {
  SetInitSeed(5);
  Net net;
  AttachLora(net, Config());
  RandomizeB(net, 40);
  Tensor x = Randn({1, 3, 8}, 7);
  Tensor adapted = net.Forward(x);
  LoraWeights w = LoraStateDict(net);
  EXPECT_EQ(w.tensors.size(), 24u);
  EXPECT_EQ(w.tensors.count("blocks.0.self_attn.q.lora_A.weight"), 1u);
  EXPECT_EQ(w.tensors.count("blocks.1.ffn.2.lora_B.weight"), 1u);
  EXPECT_EQ(w.tensors.count("blocks.0.self_attn.q.weight"), 0u);
  EXPECT_EQ(w.metadata.at("lora_rank"), "2");
  EXPECT_EQ(w.metadata.at("lora_alpha"), "3");
  EXPECT_EQ(w.metadata.at("lora_target_modules").substr(0, 40),
            "blocks.0.self_attn.q,blocks.0.self_attn.");

  // Same base weights, no adapters: loading attaches them (rank/alpha from the metadata).
  SetInitSeed(5);
  Net fresh;
  EXPECT_FALSE(AllClose(fresh.Forward(x), adapted, 1e-3, 1e-3));
  LoadLoraStateDict(fresh, w);
  EXPECT_EQ(fresh.Forward(x).ToVector(), adapted.ToVector());
  EXPECT_EQ(fresh.NumParameters(/*trainable_only=*/true), net.NumParameters(true));
  EXPECT_DOUBLE_EQ(fresh.blocks->at<Blk>(1)->self_attn->k()->lora_scale(), 1.5);

  // Into existing adapters, with a key prefix.
  LoraWeights prefixed = LoraStateDict(net, "diffusion_model.");
  EXPECT_EQ(prefixed.tensors.count("diffusion_model.blocks.0.ffn.0.lora_A.weight"), 1u);
  RandomizeB(fresh, 77);
  LoadLoraStateDict(fresh, prefixed, true, "diffusion_model.");
  EXPECT_EQ(fresh.Forward(x).ToVector(), adapted.ToVector());
}

TEST(LoraTest, AdapterLoadErrors) {
  Net net;
  AttachLora(net, Config());
  LoraWeights w = LoraStateDict(net);
  {
    LoraWeights partial = w;
    partial.tensors.erase("blocks.1.ffn.2.lora_A.weight");
    partial.tensors.erase("blocks.1.ffn.2.lora_B.weight");
    ExpectErrorContains([&] { LoadLoraStateDict(net, partial); },
                        {"1 adapted layer(s)", "blocks.1.ffn.2"});
    LoadLoraStateDict(net, partial, /*strict=*/false);
  }
  {
    LoraWeights half = w;
    half.tensors.erase("blocks.1.ffn.2.lora_B.weight");
    ExpectErrorContains([&] { LoadLoraStateDict(net, half); }, {"only one of lora_A / lora_B"});
  }
  {
    LoraWeights odd = w;
    odd.tensors["blocks.0.ffn.0.weight"] = Tensor::Zeros({16, 8});
    ExpectErrorContains([&] { LoadLoraStateDict(net, odd); },
                        {"unexpected key 'blocks.0.ffn.0.weight'"});
  }
  {
    LoraWeights other = w;
    other.metadata["lora_alpha"] = "8";
    ExpectErrorContains([&] { LoadLoraStateDict(net, other); }, {"alpha 3", "alpha 8"});
    other.metadata.erase("lora_alpha");
    ExpectErrorContains([&] { LoadLoraStateDict(net, other); }, {"lacks lora_alpha"});
  }
  {
    LoraWeights shape = w;
    shape.tensors["blocks.0.ffn.0.lora_B.weight"] = Tensor::Zeros({16, 3});
    ExpectErrorContains([&] { LoadLoraStateDict(net, shape); },
                        {"'blocks.0.ffn.0.lora_B.weight'", "[16, 3]", "[16, 2]"});
  }
  {
    LoraWeights nowhere = w;
    nowhere.tensors["blocks.0.cross.lora_A.weight"] = Tensor::Zeros({2, 8});
    nowhere.tensors["blocks.0.cross.lora_B.weight"] = Tensor::Zeros({8, 2});
    ExpectErrorContains([&] { LoadLoraStateDict(net, nowhere); },
                        {"'blocks.0.cross' is not a Linear"});
  }
  ExpectErrorContains([&] { LoadLoraStateDict(net, w, true, "transformer."); },
                      {"prefix 'transformer.'"});
}

// --- formats for other tools --------------------------------------------------------------------

TEST(LoraFormatTest, KeyNamesAndScaleOfEachFormat) {
  Net net;
  AttachLora(net, Config());  // rank 2, alpha 3
  RandomizeB(net, 7);
  const LoraWeights native = LoraStateDict(net);
  const Tensor a = native.tensors.at("blocks.0.self_attn.q.lora_A.weight");
  const Tensor b = native.tensors.at("blocks.0.self_attn.q.lora_B.weight");
  const size_t n = native.tensors.size();

  const LoraExport same = ConvertLora(native, LoraFormat::kNative);
  EXPECT_EQ(same.tensors.size(), n);
  EXPECT_EQ(same.metadata.at("lora_alpha"), "3");

  // PEFT: base_model.model.<path>, alpha in adapter_config.json.
  const LoraExport peft = ConvertLora(native, LoraFormat::kPeft);
  EXPECT_EQ(peft.tensors.size(), n);
  EXPECT_TRUE(
      AllClose(peft.tensors.at("base_model.model.blocks.0.self_attn.q.lora_A.weight"), a, 0, 0));
  EXPECT_TRUE(peft.tensors.count("base_model.model.blocks.1.ffn.fc2.lora_B.weight") ||
              peft.tensors.count("base_model.model.blocks.1.ffn.2.lora_B.weight"));
  const std::string& cfg = peft.adapter_config_json;
  for (const char* part : {"\"peft_type\":\"LORA\"", "\"r\":2", "\"lora_alpha\":3",
                           "\"blocks.0.self_attn.q\"", "\"target_modules\":["}) {
    EXPECT_NE(cfg.find(part), std::string::npos) << part << " not in " << cfg;
  }

  // diffusers: transformer.<path>, alpha / rank folded into lora_B.
  const LoraExport diff =
      ConvertLora(native, LoraFormat::kDiffusers, [](const std::string& p) { return "x." + p; });
  EXPECT_EQ(diff.tensors.size(), n);
  EXPECT_TRUE(
      AllClose(diff.tensors.at("transformer.x.blocks.0.self_attn.q.lora_A.weight"), a, 0, 0));
  EXPECT_TRUE(AllClose(diff.tensors.at("transformer.x.blocks.0.self_attn.q.lora_B.weight"),
                       ops::MulScalar(b, 1.5), 1e-7, 0));

  // ComfyUI: diffusion_model.<path> and a scalar alpha per layer.
  const LoraExport comfy = ConvertLora(native, LoraFormat::kComfyUi);
  EXPECT_EQ(comfy.tensors.size(), n + n / 2);
  EXPECT_TRUE(
      AllClose(comfy.tensors.at("diffusion_model.blocks.0.self_attn.q.lora_B.weight"), b, 0, 0));
  const Tensor alpha = comfy.tensors.at("diffusion_model.blocks.0.self_attn.q.alpha");
  EXPECT_EQ(alpha.numel(), 1);
  EXPECT_EQ(alpha.item(), 3.0);

  EXPECT_EQ(ParseLoraFormat("comfyui"), LoraFormat::kComfyUi);
  ExpectErrorContains([] { ParseLoraFormat("kohya"); }, {"kohya", "peft, diffusers or comfyui"});
  LoraWeights no_alpha = native;
  no_alpha.metadata.erase("lora_alpha");
  ExpectErrorContains([&] { ConvertLora(no_alpha, LoraFormat::kPeft); }, {"lora_alpha"});
}

}  // namespace
}  // namespace sdpo::nn
