// Trained Wan2.1 adapters for other tools (trainers/lora_export.h): the key names PEFT
// (WanTransformer3DModel paths), diffusers' load_lora_weights and ComfyUI's LoRA loader read,
// and the merged DiT.
#include "trainers/lora_export.h"

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "gtest/gtest.h"
#include "models/wan21/checkpoint.h"
#include "nn/checkpoint_io.h"
#include "tensor/ops.h"
#include "tests/error_testing.h"
#include "tests/fixtures_path.h"

namespace sdpo::trainers {
namespace {

using sdpo::testing::FreshTmpDir;

// The tiny fixture DiT with rank-4 adapters on attention and FFN (random B).
std::unique_ptr<wan21::WanModel> AdaptedTinyWan(std::string* dit) {
  *dit = sdpo::testing::FixturePath("wan21/tiny_a.weights.safetensors");
  if (dit->empty()) return nullptr;
  auto model = wan21::LoadModel(*dit);
  nn::LoraConfig c;
  c.rank = 4;
  c.alpha = 8;
  c.targets = {"blocks.*.self_attn.{q,k,v,o}", "blocks.*.cross_attn.{q,k,v,o}",
               "blocks.*.ffn.{0,2}"};
  nn::AttachLora(*model, c);
  uint64_t seed = 5;
  for (auto& [path, l] : nn::LoraLayers(*model)) {
    ops::CopyInto(l->lora_B()->weight(),
                  ops::RandomNormal(l->lora_B()->weight().shape(), seed++, 0));
  }
  return model;
}

TEST(LoraExportTest, WanKeyNamesOfEachFormat) {
  std::string dit;
  auto model = AdaptedTinyWan(&dit);
  if (!model) GTEST_SKIP() << sdpo::testing::FixturesNotFoundMessage();
  const nn::LoraWeights native = nn::LoraStateDict(*model);
  const size_t n = native.tensors.size();  // 2 layers x 10 adapted Linears x (A, B)
  ASSERT_EQ(n, 40u);
  const std::string dir = FreshTmpDir("lora_export");

  // PEFT: a directory for PeftModel.from_pretrained(WanTransformer3DModel, dir).
  const auto files = WriteLoraAs(native, "wan21", nn::LoraFormat::kPeft, dir + "/peft");
  ASSERT_EQ(files.size(), 2u);
  const nn::TensorMap peft = nn::ReadSafetensors(dir + "/peft/adapter_model.safetensors");
  EXPECT_EQ(peft.size(), n);
  for (const char* key : {"base_model.model.blocks.0.attn1.to_q.lora_A.weight",
                          "base_model.model.blocks.1.attn1.to_out.0.lora_B.weight",
                          "base_model.model.blocks.0.attn2.to_k.lora_A.weight",
                          "base_model.model.blocks.1.ffn.net.0.proj.lora_A.weight",
                          "base_model.model.blocks.1.ffn.net.2.lora_B.weight"}) {
    EXPECT_EQ(peft.count(key), 1u) << key;
  }
  std::ifstream cfg_in(dir + "/peft/adapter_config.json");
  std::stringstream cfg;
  cfg << cfg_in.rdbuf();
  EXPECT_NE(cfg.str().find("\"lora_alpha\":8"), std::string::npos) << cfg.str();
  EXPECT_NE(cfg.str().find("\"blocks.0.attn2.to_out.0\""), std::string::npos) << cfg.str();

  // diffusers: pipe.load_lora_weights(file); scale alpha / rank = 2 folded into lora_B.
  WriteLoraAs(native, "wan21", nn::LoraFormat::kDiffusers, dir + "/diffusers.safetensors");
  const nn::TensorMap diff = nn::ReadSafetensors(dir + "/diffusers.safetensors");
  EXPECT_EQ(diff.size(), n);
  const Tensor b = native.tensors.at("blocks.0.cross_attn.v.lora_B.weight");
  const Tensor b_diff = diff.at("transformer.blocks.0.attn2.to_v.lora_B.weight");
  EXPECT_EQ(ops::MulScalar(b, 2).ToVector(), b_diff.ToVector());

  // ComfyUI: official names under diffusion_model., with alpha.
  WriteLoraAs(native, "wan21", nn::LoraFormat::kComfyUi, dir + "/comfy.safetensors");
  const nn::TensorMap comfy = nn::ReadSafetensors(dir + "/comfy.safetensors");
  EXPECT_EQ(comfy.size(), n + n / 2);
  EXPECT_EQ(comfy.count("diffusion_model.blocks.1.self_attn.o.lora_A.weight"), 1u);
  EXPECT_EQ(comfy.count("diffusion_model.blocks.0.ffn.2.lora_B.weight"), 1u);
  EXPECT_EQ(comfy.at("diffusion_model.blocks.0.ffn.2.alpha").item(), 8.0);
}

TEST(LoraExportTest, MergedDitEqualsTheAdaptedModel) {
  std::string dit;
  auto model = AdaptedTinyWan(&dit);
  if (!model) GTEST_SKIP() << sdpo::testing::FixturesNotFoundMessage();
  const std::string dir = FreshTmpDir("lora_merge");
  nn::SaveLora(*model, dir + "/adapters.safetensors");
  WriteMergedWan(dit, dir + "/adapters.safetensors", dir + "/merged.safetensors", false);
  // A strict load: every key is a base parameter, none is an adapter.
  auto merged = wan21::LoadModel(dir + "/merged.safetensors");
  nn::MergeLora(*model);
  std::map<std::string, Tensor> want;
  for (auto& [name, p] : model->NamedParameters()) want[name] = p;
  int64_t compared = 0;
  for (auto& [name, p] : merged->NamedParameters()) {
    ASSERT_EQ(want.count(name), 1u) << name;
    EXPECT_EQ(p.ToVector(), want[name].ToVector()) << name;
    ++compared;
  }
  EXPECT_EQ(compared + 40, static_cast<int64_t>(want.size()));  // all but the adapters
  // diffusers names load too (the loader's name table).
  WriteMergedWan(dit, dir + "/adapters.safetensors", dir + "/merged_diffusers.safetensors", true);
  wan21::LoadReport report;
  wan21::LoadModel(dir + "/merged_diffusers.safetensors", std::nullopt, {}, &report);
  EXPECT_EQ(report.format, wan21::NameFormat::kDiffusers);
}

}  // namespace
}  // namespace sdpo::trainers
