// A small synthetic video world in latent space: the embedded demo of the SDPO trainer.
//
// A prompt names a coloured soft blob that moves in a direction at a speed ("a red blob moving
// left fast"). The world renders clean latent videos [C, F, H, W] for a prompt (what a VAE
// would produce for such a video), encodes prompts with a fixed bag-of-word-vectors "text
// encoder" ([L, text_dim]), and scores any latent video against its prompt with an automatic
// reward in [0, 1] (colour, motion and blob quality; see docs/demo.md for the formula).
//
// Everything is a deterministic function of the config and the seeds (counter-based Philox), so
// a demo run is reproducible bit for bit on any machine and thread count.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace sdpo::demo {

enum class Direction { kRight, kLeft, kUp, kDown };
enum class Colour { kRed, kGreen, kBlue, kYellow };
enum class Speed { kSlow, kFast };

constexpr int kNumDirections = 4;
constexpr int kNumColours = 4;
constexpr int kNumSpeeds = 2;

const char* DirectionName(Direction d);  // "right", "left", "up", "down"
const char* ColourName(Colour c);        // "red", "green", "blue", "yellow"
const char* SpeedName(Speed s);          // "slow", "fast"

struct DemoPrompt {
  int id = 0;  // index into DemoWorld::prompts()
  Direction direction = Direction::kRight;
  Colour colour = Colour::kRed;
  Speed speed = Speed::kSlow;
  std::string text;  // "a red blob moving left fast"
};

struct DemoWorldConfig {
  // Latent video shape [C, F, H, W]. C >= 4: channel c carries colour component c % 4.
  int64_t channels = 4;
  int64_t frames = 4;
  int64_t height = 8;
  int64_t width = 8;
  // Text encoder: at most text_len tokens (a prompt has 6 words) of text_dim features.
  int64_t text_len = 8;
  int64_t text_dim = 32;

  // Rendering (pixels are latent cells).
  double blob_sigma = 1.0;         // std of the Gaussian blob
  double amplitude = 2.5;          // peak value of the blob's main channel
  double slow_speed = 0.6;         // cells per frame
  double fast_speed = 1.2;         // cells per frame
  double margin = 1.0;             // the blob centre stays this far inside the frame
  double background_noise = 0.05;  // std of the i.i.d. background noise

  uint64_t text_seed = 0x5D90'7E47ull;  // seed of the word-vector table
};

// Components of the reward (each in [0, 1]) and the reward itself (see docs/demo.md).
struct RewardBreakdown {
  double colour = 0, motion = 0, shape = 0, mass = 0, background = 0;
  double quality = 0;  // shape * mass * background
  double reward = 0;   // colour^0.25 * motion^0.45 * quality^0.30
  // Diagnostics.
  double colour_cosine = 0;     // cosine between the measured and the prompt colour
  double velocity_error = 0;    // rms over frame steps of |displacement - expected| (cells)
  double spread = 0;            // mean rms radius of the blob's energy (cells)
  double mass_ratio = 0;        // blob mass / mean blob mass of clean renders
  double background_level = 0;  // mean over frames of the median cell norm
};

// Ways to spoil a rendered video (for tests, ablations and synthetic "loser" samples).
enum class Degradation {
  kNone,
  kWrongDirection,  // moves in the opposite direction (strength ignored)
  kWrongColour,     // the next colour's channel mix (strength ignored)
  kWrongSpeed,      // the other speed (strength ignored)
  kBlur,            // blob sigma * (1 + strength)
  kNoise,           // background noise std += strength
  kDim,             // amplitude * (1 - strength)
};

class DemoWorld {
 public:
  explicit DemoWorld(DemoWorldConfig config = {});

  const DemoWorldConfig& config() const { return config_; }
  // Latent shape [C, F, H, W].
  std::vector<int64_t> latent_shape() const;

  // All 32 prompts (direction x colour x speed), id = index. The split is fixed: a combination
  // is held out iff (direction + colour + speed) % 4 == 0 (8 prompts, 25%). Every pair of
  // attribute values still occurs in some training prompt, so held-out prompts are new
  // COMBINATIONS of known words.
  const std::vector<DemoPrompt>& prompts() const { return prompts_; }
  const std::vector<DemoPrompt>& train_prompts() const { return train_; }
  const std::vector<DemoPrompt>& heldout_prompts() const { return heldout_; }
  static bool IsHeldOut(Direction d, Colour c, Speed s);
  // The prompt with this exact text; throws sdpo::Error listing the vocabulary otherwise.
  const DemoPrompt& Find(const std::string& text) const;

  // The colour's unit channel-mix vector [C].
  std::vector<double> ColourVector(Colour colour) const;
  // Velocity in cells per frame, (dy, dx): right = +x, down = +y.
  std::pair<double, double> Velocity(Direction d, Speed s) const;

  // A clean latent video [C, F, H, W] f32 for the prompt: the blob starts at a position drawn
  // from `seed` (so that the whole trajectory stays `margin` inside the frame) and moves at the
  // prompt's velocity; plus N(0, background_noise^2) noise. Depends only on (config, prompt,
  // seed).
  Tensor Render(const DemoPrompt& prompt, uint64_t seed) const;
  // Render with one thing wrong (strength in [0, 1] for kBlur, kNoise, kDim).
  Tensor RenderDegraded(const DemoPrompt& prompt, uint64_t seed, Degradation degradation,
                        double strength = 1.0) const;

  // The prompt's text embedding [L, text_dim] f32 (L = number of words): row i is the fixed
  // word vector of word i, from a N(0, 1) table drawn with ops::RandomNormal(text_seed).
  Tensor EncodeText(const DemoPrompt& prompt) const;
  // Any text made of vocabulary words (at most text_len of them); throws sdpo::Error naming an
  // unknown word.
  Tensor EncodeText(const std::string& text) const;
  // The vocabulary (row order of the word table).
  static const std::vector<std::string>& Vocabulary();

  // How well a latent video [C, F, H, W] (any float dtype, CPU) follows the prompt, in [0, 1].
  // Throws sdpo::Error on a shape mismatch or a non-finite value.
  double Reward(const DemoPrompt& prompt, const Tensor& latent) const;
  RewardBreakdown RewardDetails(const DemoPrompt& prompt, const Tensor& latent) const;

 private:
  struct RenderParams {
    double sigma, amplitude, noise;
    Direction direction;
    Colour colour;
    Speed speed;
  };
  Tensor RenderWith(const RenderParams& params, uint64_t seed) const;

  DemoWorldConfig config_;
  std::vector<DemoPrompt> prompts_, train_, heldout_;
  Tensor word_table_;            // [vocab, text_dim] f32
  double reference_mass_ = 1.0;  // mean blob mass of clean renders (mass_ratio = 1)
};

}  // namespace sdpo::demo
