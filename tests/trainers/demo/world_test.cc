#include "trainers/demo/world.h"

#include <cmath>
#include <set>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tensor/error.h"
#include "tensor/ops.h"

namespace sdpo::demo {
namespace {

bool BitEqual(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && a.ToVector() == b.ToVector();
}

const DemoWorld& World() {
  static const DemoWorld* world = new DemoWorld();
  return *world;
}

TEST(DemoWorldTest, PromptsAndSplit) {
  const DemoWorld& w = World();
  ASSERT_EQ(w.prompts().size(), 32u);
  EXPECT_EQ(w.train_prompts().size(), 24u);
  EXPECT_EQ(w.heldout_prompts().size(), 8u);
  std::set<std::string> texts;
  for (size_t i = 0; i < w.prompts().size(); ++i) {
    EXPECT_EQ(w.prompts()[i].id, static_cast<int>(i));
    texts.insert(w.prompts()[i].text);
  }
  EXPECT_EQ(texts.size(), 32u);
  EXPECT_EQ(w.prompts()[0].text, "a red blob moving right slow");
  // Disjoint and covering.
  std::set<int> train, heldout;
  for (const DemoPrompt& p : w.train_prompts()) train.insert(p.id);
  for (const DemoPrompt& p : w.heldout_prompts()) heldout.insert(p.id);
  for (int id : heldout) EXPECT_EQ(train.count(id), 0u) << id;
  EXPECT_EQ(train.size() + heldout.size(), 32u);
  // Held-out prompts are new combinations of seen pairs of attribute values.
  for (const DemoPrompt& h : w.heldout_prompts()) {
    bool dc = false, ds = false, cs = false;
    for (const DemoPrompt& t : w.train_prompts()) {
      dc |= t.direction == h.direction && t.colour == h.colour;
      ds |= t.direction == h.direction && t.speed == h.speed;
      cs |= t.colour == h.colour && t.speed == h.speed;
    }
    EXPECT_TRUE(dc && ds && cs) << h.text;
  }
  EXPECT_EQ(w.Find("a blue blob moving up fast").colour, Colour::kBlue);
  EXPECT_THROW(w.Find("a purple blob"), Error);
}

TEST(DemoWorldTest, RenderShapeRangeAndDeterminism) {
  const DemoWorld& w = World();
  const DemoPrompt& p = w.prompts()[5];
  const Tensor a = w.Render(p, 7);
  EXPECT_EQ(a.shape(), (Shape{4, 4, 8, 8}));
  EXPECT_EQ(a.dtype(), kF32);
  EXPECT_TRUE(BitEqual(a, w.Render(p, 7)));
  EXPECT_FALSE(BitEqual(a, w.Render(p, 8)));
  double max_abs = 0, sum2 = 0;
  for (double v : a.ToVector()) {
    ASSERT_TRUE(std::isfinite(v));
    max_abs = std::max(max_abs, std::abs(v));
    sum2 += v * v;
  }
  EXPECT_GT(max_abs, 1.0);  // a visible blob
  EXPECT_LT(max_abs, 4.0);  // roughly unit scale
  const double rms = std::sqrt(sum2 / static_cast<double>(a.numel()));
  EXPECT_GT(rms, 0.1);
  EXPECT_LT(rms, 1.5);
  // Another shape of world.
  DemoWorldConfig cfg;
  cfg.channels = 16;
  cfg.frames = 5;
  cfg.height = 12;
  cfg.width = 10;
  DemoWorld big(cfg);
  EXPECT_EQ(big.Render(big.prompts()[3], 1).shape(), (Shape{16, 5, 12, 10}));
  EXPECT_GT(big.Reward(big.prompts()[3], big.Render(big.prompts()[3], 1)), 0.8);
}

TEST(DemoWorldTest, BlobMovesAsPrompted) {
  const DemoWorld& w = World();
  for (const DemoPrompt& p : w.prompts()) {
    const Tensor x = w.Render(p, 100 + p.id);
    // Argmax of channel-energy per frame moves in the prompt's direction.
    const auto [vy, vx] = w.Velocity(p.direction, p.speed);
    const Tensor e = ops::Sum(ops::Square(x), {0});  // [F, H, W]
    auto argmax = [&](int64_t f) {
      const Tensor flat = ops::Reshape(ops::Select(e, 0, f), {-1});
      return static_cast<int64_t>(ops::ArgMax(flat, 0).item());
    };
    const int64_t first = argmax(0), last = argmax(3);
    const double dy = static_cast<double>(last / 8 - first / 8);
    const double dx = static_cast<double>(last % 8 - first % 8);
    EXPECT_NEAR(dy, 3 * vy, 1.01) << p.text;
    EXPECT_NEAR(dx, 3 * vx, 1.01) << p.text;
  }
}

TEST(DemoWorldTest, ConfigValidation) {
  DemoWorldConfig c;
  c.channels = 3;
  EXPECT_THROW(DemoWorld{c}, Error);
  c = {};
  c.fast_speed = 3.0;  // leaves the frame
  EXPECT_THROW(DemoWorld{c}, Error);
  c = {};
  c.text_len = 4;
  EXPECT_THROW(DemoWorld{c}, Error);
}

TEST(DemoWorldTest, EncodeTextSharesWordVectors) {
  const DemoWorld& w = World();
  const Tensor a = w.EncodeText(w.Find("a red blob moving left fast"));
  const Tensor b = w.EncodeText(w.Find("a green blob moving left slow"));
  EXPECT_EQ(a.shape(), (Shape{6, 32}));
  EXPECT_TRUE(BitEqual(a, w.EncodeText(w.Find("a red blob moving left fast"))));
  for (int64_t i : {0, 2, 3, 4}) {  // a, blob, moving, left
    EXPECT_TRUE(BitEqual(ops::Select(a, 0, i), ops::Select(b, 0, i))) << i;
  }
  EXPECT_FALSE(BitEqual(ops::Select(a, 0, 1), ops::Select(b, 0, 1)));  // red vs green
  EXPECT_FALSE(BitEqual(ops::Select(a, 0, 5), ops::Select(b, 0, 5)));  // fast vs slow
  // Fixed table: the same across instances, and a function of text_seed.
  EXPECT_TRUE(BitEqual(a, DemoWorld().EncodeText("a red blob moving left fast")));
  DemoWorldConfig other;
  other.text_seed = 1;
  EXPECT_FALSE(BitEqual(a, DemoWorld(other).EncodeText("a red blob moving left fast")));
  // Held-out prompts are expressible with the same words.
  for (const DemoPrompt& p : w.heldout_prompts()) {
    EXPECT_EQ(w.EncodeText(p).shape(), (Shape{6, 32}));
  }
  EXPECT_THROW(w.EncodeText("a purple blob"), Error);
  EXPECT_THROW(w.EncodeText("a a a a a a a a a"), Error);  // longer than text_len
}

TEST(DemoWorldTest, RenderScoresHigh) {
  const DemoWorld& w = World();
  double min_reward = 1;
  for (const DemoPrompt& p : w.prompts()) {
    for (uint64_t seed = 0; seed < 4; ++seed) {
      const RewardBreakdown r = w.RewardDetails(p, w.Render(p, seed * 31 + p.id));
      min_reward = std::min(min_reward, r.reward);
      EXPECT_GT(r.reward, 0.8) << p.text << " seed " << seed << " colour " << r.colour << " motion "
                               << r.motion << " shape " << r.shape << " mass " << r.mass
                               << " background " << r.background;
      EXPECT_LE(r.reward, 1.0);
    }
  }
  RecordProperty("min_render_reward", std::to_string(min_reward));
}

TEST(DemoWorldTest, OtherPromptsScoreClearlyLower) {
  const DemoWorld& w = World();
  for (const DemoPrompt& p : w.prompts()) {
    const Tensor x = w.Render(p, 1000 + p.id);
    const double own = w.Reward(p, x);
    for (const DemoPrompt& q : w.prompts()) {
      if (q.id == p.id) continue;
      EXPECT_LT(w.Reward(q, x), own - 0.3)
          << "rendered \"" << p.text << "\" scored as \"" << q.text << "\"";
    }
  }
}

TEST(DemoWorldTest, NoiseScoresLow) {
  const DemoWorld& w = World();
  for (uint64_t seed = 0; seed < 8; ++seed) {
    const Tensor noise = ops::RandomNormal({4, 4, 8, 8}, seed, 0);
    for (const DemoPrompt& p : w.prompts()) EXPECT_LT(w.Reward(p, noise), 0.1) << p.text;
  }
  EXPECT_LT(w.Reward(w.prompts()[0], Tensor::Zeros({4, 4, 8, 8})), 0.05);
}

TEST(DemoWorldTest, DegradationsScoreLower) {
  const DemoWorld& w = World();
  for (const DemoPrompt& p : {w.prompts()[0], w.prompts()[13], w.prompts()[30]}) {
    const double clean = w.Reward(p, w.Render(p, 3));
    for (Degradation d :
         {Degradation::kWrongDirection, Degradation::kWrongColour, Degradation::kWrongSpeed,
          Degradation::kBlur, Degradation::kNoise, Degradation::kDim}) {
      EXPECT_LT(w.Reward(p, w.RenderDegraded(p, 3, d, 1.0)), clean - 0.2)
          << p.text << " degradation " << static_cast<int>(d);
    }
  }
}

// Smooth and monotone: more of a degradation scores lower, in small steps.
TEST(DemoWorldTest, RewardIsMonotoneInDegradationStrength) {
  const DemoWorld& w = World();
  const DemoPrompt& p = w.prompts()[9];
  for (Degradation d : {Degradation::kBlur, Degradation::kNoise, Degradation::kDim}) {
    double prev = w.Reward(p, w.Render(p, 11));
    for (int i = 1; i <= 10; ++i) {
      const double r = w.Reward(p, w.RenderDegraded(p, 11, d, 0.1 * i));
      EXPECT_LE(r, prev + 0.02) << "degradation " << static_cast<int>(d) << " strength " << 0.1 * i;
      EXPECT_GT(r, prev - 0.4) << "degradation " << static_cast<int>(d) << " strength " << 0.1 * i;
      prev = r;
    }
  }
  // Mixing the clean video with noise: the reward falls as the noise share grows.
  const Tensor clean = w.Render(p, 11);
  const Tensor noise = ops::RandomNormal(clean.shape(), 99, 0);
  double prev = 2;
  for (int i = 0; i <= 10; ++i) {
    const double a = 0.1 * i;
    const Tensor mix = ops::Add(ops::MulScalar(clean, 1 - a), ops::MulScalar(noise, a));
    const double r = w.Reward(p, mix);
    EXPECT_LE(r, prev + 0.02) << "noise share " << a;
    prev = r;
  }
  EXPECT_LT(prev, 0.1);
}

TEST(DemoWorldTest, RewardRejectsBadInput) {
  const DemoWorld& w = World();
  const DemoPrompt& p = w.prompts()[0];
  EXPECT_THROW(w.Reward(p, Tensor::Zeros({4, 4, 8})), Error);
  EXPECT_THROW(w.Reward(p, Tensor::Zeros({4, 4, 8, 9})), Error);
  Tensor x = w.Render(p, 0);
  x.data<float>()[17] = std::nanf("");
  try {
    w.Reward(p, x);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("non-finite"), std::string::npos) << e.what();
  }
  // Other float dtypes are accepted.
  EXPECT_GT(w.Reward(p, ops::Cast(w.Render(p, 0), kBF16)), 0.8);
}

}  // namespace
}  // namespace sdpo::demo
