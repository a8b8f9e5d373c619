#include "trainers/demo/world.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "tensor/ops.h"
#include "tensor/philox.h"

namespace sdpo::demo {
namespace {

// Reward constants (documented in docs/demo.md). Each component is Soft(error / scale).
constexpr double kColourScale = 0.1;      // on 1 - cos(measured colour, prompt colour)
constexpr double kVelocityScale = 0.3;    // cells per frame
constexpr double kSpreadSlack = 1.25;     // spread allowed before a penalty, in sigmas
constexpr double kSpreadScale = 0.5;      // in sigmas
constexpr double kMassScale = 0.5;        // on |ln(mass ratio)|
constexpr double kBackgroundSlack = 2.0;  // in units of the render's noise floor
constexpr double kBackgroundScale = 0.1;  // in units of the amplitude
constexpr double kWeightColour = 0.25, kWeightMotion = 0.45, kWeightQuality = 0.30;

// A smooth score in (0, 1]: 1 at x = 0, 1/2 at |x| = 1, heavy (Cauchy) tails so that bad samples
// still differ from each other.
constexpr uint64_t kCalibrationSeed = 0xCA11B8A7Eull;

double Soft(double x) { return 1.0 / (1.0 + x * x); }

// Channel-mix patterns over colour components 0..3 (normalised to unit length over C).
constexpr double kColourPattern[kNumColours][4] = {
    {1.0, 0.0, 0.0, 0.5},  // red
    {0.0, 1.0, 0.0, 0.5},  // green
    {0.0, 0.0, 1.0, 0.5},  // blue
    {0.7, 0.7, 0.0, 0.5},  // yellow
};

uint64_t SplitMix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Independent streams derived from one user seed.
uint64_t PositionKey(uint64_t seed) { return SplitMix64(seed ^ 0x706F736974696F6Eull); }
uint64_t NoiseKey(uint64_t seed) { return SplitMix64(seed ^ 0x6E6F697365000000ull); }

double Median(std::vector<double> v) {
  const size_t n = v.size();
  std::nth_element(v.begin(), v.begin() + n / 2, v.end());
  double hi = v[n / 2];
  if (n % 2 == 1) return hi;
  double lo = *std::max_element(v.begin(), v.begin() + n / 2);
  return 0.5 * (lo + hi);
}

}  // namespace

const char* DirectionName(Direction d) {
  switch (d) {
    case Direction::kRight:
      return "right";
    case Direction::kLeft:
      return "left";
    case Direction::kUp:
      return "up";
    case Direction::kDown:
      return "down";
  }
  return "?";
}

const char* ColourName(Colour c) {
  switch (c) {
    case Colour::kRed:
      return "red";
    case Colour::kGreen:
      return "green";
    case Colour::kBlue:
      return "blue";
    case Colour::kYellow:
      return "yellow";
  }
  return "?";
}

const char* SpeedName(Speed s) { return s == Speed::kSlow ? "slow" : "fast"; }

const std::vector<std::string>& DemoWorld::Vocabulary() {
  static const std::vector<std::string>* vocab =
      new std::vector<std::string>{"a",     "blob", "moving", "red",  "green", "blue", "yellow",
                                   "right", "left", "up",     "down", "slow",  "fast"};
  return *vocab;
}

bool DemoWorld::IsHeldOut(Direction d, Colour c, Speed s) {
  return (static_cast<int>(d) + static_cast<int>(c) + static_cast<int>(s)) % 4 == 0;
}

DemoWorld::DemoWorld(DemoWorldConfig config) : config_(config) {
  const DemoWorldConfig& c = config_;
  SDPO_CHECK(c.channels >= 4, "DemoWorldConfig: channels must be >= 4 (colour components), got ",
             c.channels);
  SDPO_CHECK(c.frames >= 2, "DemoWorldConfig: frames must be >= 2 (motion), got ", c.frames);
  SDPO_CHECK(c.height >= 4 && c.width >= 4, "DemoWorldConfig: height and width must be >= 4, got ",
             c.height, "x", c.width);
  SDPO_CHECK(c.text_len >= 6, "DemoWorldConfig: text_len must be >= 6 (words per prompt), got ",
             c.text_len);
  SDPO_CHECK(c.text_dim >= 1, "DemoWorldConfig: text_dim must be >= 1, got ", c.text_dim);
  SDPO_CHECK(c.blob_sigma > 0 && c.amplitude > 0 && c.background_noise >= 0 && c.margin >= 0 &&
                 c.slow_speed >= 0 && c.fast_speed >= c.slow_speed,
             "DemoWorldConfig: need blob_sigma > 0, amplitude > 0, background_noise >= 0, margin "
             ">= 0 and 0 <= slow_speed <= fast_speed");
  const double travel = c.fast_speed * static_cast<double>(c.frames - 1);
  const double room = static_cast<double>(std::min(c.height, c.width) - 1) - 2 * c.margin;
  SDPO_CHECK(travel <= room, "DemoWorldConfig: a fast blob travels ", travel, " cells over ",
             c.frames, " frames but the frame leaves only ", room, " cells inside the margin (",
             c.height, "x", c.width, ", margin ", c.margin, ")");

  for (int d = 0; d < kNumDirections; ++d) {
    for (int col = 0; col < kNumColours; ++col) {
      for (int s = 0; s < kNumSpeeds; ++s) {
        DemoPrompt p;
        p.id = static_cast<int>(prompts_.size());
        p.direction = static_cast<Direction>(d);
        p.colour = static_cast<Colour>(col);
        p.speed = static_cast<Speed>(s);
        p.text = absl::StrCat("a ", ColourName(p.colour), " blob moving ",
                              DirectionName(p.direction), " ", SpeedName(p.speed));
        prompts_.push_back(p);
        (IsHeldOut(p.direction, p.colour, p.speed) ? heldout_ : train_).push_back(p);
      }
    }
  }
  word_table_ =
      ops::RandomNormal({static_cast<int64_t>(Vocabulary().size()), c.text_dim}, c.text_seed, 0);
  // The mass a clean render measures (below the analytic A * 2 pi sigma^2 because the measure
  // subtracts the background level): the mean over one render of every prompt.
  reference_mass_ = 1.0;
  double mass = 0;
  for (const DemoPrompt& p : prompts_) {
    mass += RewardDetails(p, Render(p, kCalibrationSeed + static_cast<uint64_t>(p.id))).mass_ratio;
  }
  reference_mass_ = mass / static_cast<double>(prompts_.size());
  SDPO_CHECK(reference_mass_ > 0, "DemoWorld: renders have no blob mass; amplitude ", c.amplitude,
             " is too small for background_noise ", c.background_noise);
}

std::vector<int64_t> DemoWorld::latent_shape() const {
  return {config_.channels, config_.frames, config_.height, config_.width};
}

const DemoPrompt& DemoWorld::Find(const std::string& text) const {
  for (const DemoPrompt& p : prompts_) {
    if (p.text == text) return p;
  }
  SDPO_FAIL("DemoWorld: no prompt \"", text,
            "\"; prompts read \"a <colour> blob moving <direction> <speed>\" with colour in "
            "{red, green, blue, yellow}, direction in {right, left, up, down}, speed in {slow, "
            "fast}");
}

std::vector<double> DemoWorld::ColourVector(Colour colour) const {
  std::vector<double> v(config_.channels);
  double norm2 = 0;
  for (int64_t c = 0; c < config_.channels; ++c) {
    v[c] = kColourPattern[static_cast<int>(colour)][c % 4];
    norm2 += v[c] * v[c];
  }
  for (double& x : v) x /= std::sqrt(norm2);
  return v;
}

std::pair<double, double> DemoWorld::Velocity(Direction d, Speed s) const {
  const double v = s == Speed::kSlow ? config_.slow_speed : config_.fast_speed;
  switch (d) {
    case Direction::kRight:
      return {0.0, v};
    case Direction::kLeft:
      return {0.0, -v};
    case Direction::kUp:
      return {-v, 0.0};
    case Direction::kDown:
      return {v, 0.0};
  }
  return {0.0, 0.0};
}

Tensor DemoWorld::Render(const DemoPrompt& prompt, uint64_t seed) const {
  return RenderDegraded(prompt, seed, Degradation::kNone);
}

Tensor DemoWorld::RenderDegraded(const DemoPrompt& prompt, uint64_t seed, Degradation degradation,
                                 double strength) const {
  SDPO_CHECK(std::isfinite(strength) && strength >= 0 && strength <= 1,
             "DemoWorld::RenderDegraded: strength must be in [0, 1], got ", strength);
  RenderParams p{config_.blob_sigma, config_.amplitude, config_.background_noise,
                 prompt.direction,   prompt.colour,     prompt.speed};
  switch (degradation) {
    case Degradation::kNone:
      break;
    case Degradation::kWrongDirection: {
      static constexpr Direction kOpposite[] = {Direction::kLeft, Direction::kRight,
                                                Direction::kDown, Direction::kUp};
      p.direction = kOpposite[static_cast<int>(prompt.direction)];
      break;
    }
    case Degradation::kWrongColour:
      p.colour = static_cast<Colour>((static_cast<int>(prompt.colour) + 1) % kNumColours);
      break;
    case Degradation::kWrongSpeed:
      p.speed = prompt.speed == Speed::kSlow ? Speed::kFast : Speed::kSlow;
      break;
    case Degradation::kBlur:
      p.sigma *= 1.0 + strength;
      break;
    case Degradation::kNoise:
      p.noise += strength;
      break;
    case Degradation::kDim:
      p.amplitude *= 1.0 - strength;
      break;
  }
  return RenderWith(p, seed);
}

Tensor DemoWorld::RenderWith(const RenderParams& p, uint64_t seed) const {
  const int64_t C = config_.channels, F = config_.frames, H = config_.height, W = config_.width;
  const auto [vy, vx] = Velocity(p.direction, p.speed);
  // Start position: uniform over the positions that keep a FAST trajectory in this direction
  // inside the margin (so that a speed change keeps the start position of the same seed).
  const double steps = static_cast<double>(F - 1);
  auto start = [&](double extent, double v, uint64_t counter) {
    const double travel = (v > 0 ? 1.0 : v < 0 ? -1.0 : 0.0) * config_.fast_speed * steps;
    const double lo = config_.margin + std::max(0.0, -travel);
    const double hi = extent - 1 - config_.margin - std::max(0.0, travel);
    return lo + (hi - lo) * PhiloxUniform(counter, PositionKey(seed));
  };
  const double y0 = start(static_cast<double>(H), vy, 0);
  const double x0 = start(static_cast<double>(W), vx, 1);
  const std::vector<double> colour = ColourVector(p.colour);

  Tensor out = p.noise > 0
                   ? ops::MulScalar(ops::RandomNormal({C, F, H, W}, NoiseKey(seed), 0), p.noise)
                   : Tensor::Zeros({C, F, H, W});
  out = ops::Contiguous(out);
  float* x = out.data<float>();
  const double inv2s2 = 1.0 / (2.0 * p.sigma * p.sigma);
  for (int64_t f = 0; f < F; ++f) {
    const double cy = y0 + vy * static_cast<double>(f), cx = x0 + vx * static_cast<double>(f);
    for (int64_t h = 0; h < H; ++h) {
      for (int64_t w = 0; w < W; ++w) {
        const double dy = static_cast<double>(h) - cy, dx = static_cast<double>(w) - cx;
        const double g = p.amplitude * std::exp(-(dy * dy + dx * dx) * inv2s2);
        for (int64_t c = 0; c < C; ++c) {
          x[((c * F + f) * H + h) * W + w] += static_cast<float>(g * colour[c]);
        }
      }
    }
  }
  return out;
}

Tensor DemoWorld::EncodeText(const DemoPrompt& prompt) const { return EncodeText(prompt.text); }

Tensor DemoWorld::EncodeText(const std::string& text) const {
  const std::vector<std::string> words = absl::StrSplit(text, ' ', absl::SkipEmpty());
  SDPO_CHECK(!words.empty(), "DemoWorld::EncodeText: empty text");
  SDPO_CHECK(static_cast<int64_t>(words.size()) <= config_.text_len, "DemoWorld::EncodeText: \"",
             text, "\" has ", words.size(), " words, more than text_len = ", config_.text_len);
  const std::vector<std::string>& vocab = Vocabulary();
  std::vector<int64_t> rows;
  for (const std::string& word : words) {
    auto it = std::find(vocab.begin(), vocab.end(), word);
    SDPO_CHECK(it != vocab.end(), "DemoWorld::EncodeText: unknown word \"", word, "\" in \"", text,
               "\"; the vocabulary is {", absl::StrJoin(vocab, ", "), "}");
    rows.push_back(it - vocab.begin());
  }
  return ops::IndexSelect(word_table_, 0,
                          Tensor::FromVector(rows, {static_cast<int64_t>(rows.size())}));
}

double DemoWorld::Reward(const DemoPrompt& prompt, const Tensor& latent) const {
  return RewardDetails(prompt, latent).reward;
}

RewardBreakdown DemoWorld::RewardDetails(const DemoPrompt& prompt, const Tensor& latent) const {
  const int64_t C = config_.channels, F = config_.frames, H = config_.height, W = config_.width;
  SDPO_CHECK(latent.defined(), "DemoWorld::Reward: undefined latent for \"", prompt.text, "\"");
  SDPO_CHECK(latent.shape() == latent_shape(), "DemoWorld::Reward: latent for \"", prompt.text,
             "\" has shape ", ShapeStr(latent.shape()), ", expected ", ShapeStr(latent_shape()),
             " [C, F, H, W]");
  SDPO_CHECK(IsFloating(latent.dtype()), "DemoWorld::Reward: latent must be floating, got ",
             DTypeName(latent.dtype()));
  const std::vector<double> x = latent.ToVector();
  for (size_t i = 0; i < x.size(); ++i) {
    SDPO_CHECK(std::isfinite(x[i]), "DemoWorld::Reward: latent for \"", prompt.text,
               "\" has a non-finite value ", x[i], " at flat index ", i);
  }
  auto at = [&](int64_t c, int64_t f, int64_t h, int64_t w) {
    return x[((c * F + f) * H + h) * W + w];
  };
  const double sigma = config_.blob_sigma, amp = config_.amplitude;
  RewardBreakdown r;

  std::vector<double> cy(F), cx(F);
  std::vector<double> channel_mass(C, 0.0);
  double spread_sum = 0, mass_sum = 0, background_sum = 0;
  std::vector<double> norm(H * W), energy(H * W);
  for (int64_t f = 0; f < F; ++f) {
    for (int64_t i = 0; i < H * W; ++i) {
      double s = 0;
      for (int64_t c = 0; c < C; ++c) s += at(c, f, i / W, i % W) * at(c, f, i / W, i % W);
      norm[i] = std::sqrt(s);
    }
    const double median = Median(norm);
    background_sum += median;
    // The blob: the energy of the norm above the frame's median (its background level).
    double e_sum = 0, m_sum = 0, sy = 0, sx = 0;
    for (int64_t i = 0; i < H * W; ++i) {
      const double excess = std::max(0.0, norm[i] - median);
      energy[i] = excess * excess;
      e_sum += energy[i];
      m_sum += excess;
      sy += energy[i] * static_cast<double>(i / W);
      sx += energy[i] * static_cast<double>(i % W);
    }
    mass_sum += m_sum;
    if (e_sum > 1e-12) {
      cy[f] = sy / e_sum;
      cx[f] = sx / e_sum;
      double r2 = 0;
      for (int64_t i = 0; i < H * W; ++i) {
        const double dy = static_cast<double>(i / W) - cy[f];
        const double dx = static_cast<double>(i % W) - cx[f];
        r2 += energy[i] * (dy * dy + dx * dx);
        for (int64_t c = 0; c < C; ++c) channel_mass[c] += energy[i] * at(c, f, i / W, i % W);
      }
      spread_sum += std::sqrt(r2 / e_sum);
    } else {  // an empty frame: no blob to locate
      cy[f] = 0.5 * static_cast<double>(H - 1);
      cx[f] = 0.5 * static_cast<double>(W - 1);
      spread_sum += 0.5 * std::sqrt(static_cast<double>(H * H + W * W));
    }
  }

  // Colour: cosine between the energy-weighted channel means and the prompt's colour vector.
  const std::vector<double> want = ColourVector(prompt.colour);
  double dot = 0, n2 = 0;
  for (int64_t c = 0; c < C; ++c) {
    dot += channel_mass[c] * want[c];
    n2 += channel_mass[c] * channel_mass[c];
  }
  r.colour_cosine = n2 > 0 ? dot / std::sqrt(n2) : 0.0;
  r.colour = Soft((1.0 - r.colour_cosine) / kColourScale);

  // Motion: rms error of the per-frame centroid displacement against the prompt's velocity.
  const auto [vy, vx] = Velocity(prompt.direction, prompt.speed);
  double err2 = 0;
  for (int64_t f = 0; f + 1 < F; ++f) {
    const double ey = cy[f + 1] - cy[f] - vy, ex = cx[f + 1] - cx[f] - vx;
    err2 += ey * ey + ex * ex;
  }
  r.velocity_error = std::sqrt(err2 / static_cast<double>(F - 1));
  r.motion = Soft(r.velocity_error / kVelocityScale);

  // Quality: a compact blob (spread), of the right mass, over a clean background.
  r.spread = spread_sum / static_cast<double>(F);
  const double over = std::max(0.0, r.spread - kSpreadSlack * sigma) / (kSpreadScale * sigma);
  r.shape = Soft(over);
  r.mass_ratio = mass_sum / static_cast<double>(F) / reference_mass_;
  r.mass = Soft(std::log(std::max(r.mass_ratio, 1e-9)) / kMassScale);
  r.background_level = background_sum / static_cast<double>(F);
  const double floor =
      kBackgroundSlack * config_.background_noise * std::sqrt(static_cast<double>(C));
  const double dirt = std::max(0.0, r.background_level - floor) / (kBackgroundScale * amp);
  r.background = Soft(dirt);
  r.quality = r.shape * r.mass * r.background;

  r.reward = std::pow(r.colour, kWeightColour) * std::pow(r.motion, kWeightMotion) *
             std::pow(r.quality, kWeightQuality);
  return r;
}

}  // namespace sdpo::demo
