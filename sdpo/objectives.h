// Preference objectives on per-sample errors: Diffusion-DPO, DPO-C&M and SDPO.
//
// Inputs per pair i (winner w, loser l, sharing one timestep and one noise draw):
//   e_pol_w, e_pol_l  per-sample mean squared errors of the policy (differentiable),
//   e_ref_w, e_ref_l  the same for the frozen reference (constants, no gradient),
//   t                 the shared TimePoint.
// The objective returns the scalar loss and d loss / d e_pol for every pair; the importance
// weights and the reference errors are constants (stop-gradient). trainers/preference_step.h
// turns this into a loss whose gradient w.r.t. the per-sample MSEs is this d loss / d e_pol.
//
// beta convention (diffusers `train_diffusion_dpo.py`):
//   logit = beta * [ (e_ref_w - e_ref_l) - (e_pol_w - e_pol_l) ],   loss = -log sigmoid(logit).
// Salesforce DiffusionDPO writes -0.5 * beta_dpo * (model_diff - ref_diff): beta_dpo = 2 beta.
// See docs/objectives.md for every formula, its derivation, and why each default was chosen.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "models/schedules.h"

namespace sdpo {

enum class ObjectiveKind { kDiffusionDpo, kDpoCm, kSdpo };
// Per-pair loss shape of the logit (diffusers names): -log sigmoid, hinge, IPO.
enum class LossShape { kSigmoid, kHinge, kIpo };
// DPO-C&M "clipping" readings (paper.md section 4): C1 timestep range, C2 clipped weight as a
// pair loss weight, C3 clipped DPO logit; kNone = masking only.
enum class CmClip { kNone, kTimestepRange, kWeightClip, kLogitClip };
// C&M mask on the pair: both weights >= tau (default), their product >= tau, their mean >= tau.
enum class MaskRule { kBoth, kProduct, kMean };
// SDPO readings (paper.md section 5): A clipped weights inside the log-sigmoid on each
// log-ratio term (default); B clipped weight on the pair's loss; C self-normalised weights
// (divided by the batch mean) inside the log-sigmoid.
enum class SdpoReading { kInsideLogit, kLossLevel, kSelfNormalized };
// Reading B: clip the product w_w * w_l (default), or clip each weight and multiply.
enum class LossWeightClip { kProduct, kEach };
// Parameterisation the DPO differences are measured in: the errors as given (the model's
// native target, default), or rescaled exactly to eps / x0 / v form (Diffusion-DPO's
// omega(lambda_t) weighting changes accordingly).
enum class DpoErrorForm { kNative, kEpsilon, kX0, kV };
// Where the importance weights come from (docs/objectives.md section 3): the closed-form
// expectation -KL(q || p_theta) (<= 0, default); (i) the log ratio at the drawn x_prev
// (PairBatch::noise_dot_*); (ii) the ratio p_theta / p_gen against the policy that generated the
// pair (PairBatch::generator_*); (iii) a timestep-only curve w(t) (given as log weights by the
// caller, TimestepWeightCurve). (i)-(iii) can exceed one.
enum class WeightSource { kClosedForm, kSampled, kGenerator, kTimestepCurve };

struct ObjectiveConfig {
  ObjectiveKind kind = ObjectiveKind::kSdpo;
  LossShape loss = LossShape::kSigmoid;
  double beta = 10.0;  // diffusers convention, see above
  // What the given errors measure (flow: v; CogVideoX: v; SD-style DDPM: epsilon).
  PredictionType error_type = PredictionType::kV;
  DpoErrorForm dpo_error_form = DpoErrorForm::kNative;
  // Importance-weight normalisation D_eff (see importance.h) and source.
  double effective_elements = 1.0;
  WeightSource weight_source = WeightSource::kClosedForm;

  // DPO-C&M (also the mask of SDPO when sdpo_use_mask).
  double tau = 0.9;
  MaskRule mask_rule = MaskRule::kBoth;
  CmClip cm_clip = CmClip::kTimestepRange;
  double min_timestep = 0.0;     // C1: pairs with t outside [min, max] are masked out; the
  double max_timestep = 1000.0;  // trainer's TimestepSampler should draw from the same range
  double logit_clip = 5.0;       // C3: |logit| clamp (gradient zero beyond it)

  // SDPO.
  SdpoReading sdpo_reading = SdpoReading::kInsideLogit;
  bool sdpo_use_mask = true;
  LossWeightClip loss_weight_clip = LossWeightClip::kProduct;
  double eps = 0.2;  // clip range [1 - eps, 1 + eps] (SDPO; C&M reading C2)

  // Recommended defaults of each objective.
  static ObjectiveConfig DiffusionDpo();
  static ObjectiveConfig DpoCm();
  static ObjectiveConfig Sdpo();
};

// Throws sdpo::Error naming the bad field (tau outside [0, 1], eps outside [0, 1], beta <= 0, an
// enum value out of range, ...).
void ValidateObjectiveConfig(const ObjectiveConfig& config);
// One line listing every field that matters for config.kind.
std::string DescribeObjectiveConfig(const ObjectiveConfig& config);

// Setting fields from strings (trainer flags / config files). Unknown keys and values throw
// sdpo::Error listing the accepted ones. Keys: kind, loss, beta, beta_salesforce, error_type,
// dpo_error_form, effective_elements, tau, mask_rule, cm_clip, min_timestep, max_timestep,
// logit_clip, sdpo_reading, sdpo_use_mask, loss_weight_clip, eps, weight_source.
void SetObjectiveOption(ObjectiveConfig* config, const std::string& key, const std::string& value);
ObjectiveKind ParseObjectiveKind(const std::string& name);  // diffusion_dpo | dpo_cm | sdpo
LossShape ParseLossShape(const std::string& name);          // sigmoid | hinge | ipo
CmClip ParseCmClip(const std::string& name);  // none | timestep_range | weight_clip | logit_clip
MaskRule ParseMaskRule(const std::string& name);  // both | product | mean
SdpoReading ParseSdpoReading(
    const std::string& name);  // inside_logit | loss_level | self_normalized
LossWeightClip ParseLossWeightClip(const std::string& name);  // product | each
DpoErrorForm ParseDpoErrorForm(const std::string& name);      // native | epsilon | x0 | v
// closed_form | sampled | generator | timestep_curve
WeightSource ParseWeightSource(const std::string& name);
const char* ObjectiveKindName(ObjectiveKind kind);
const char* LossShapeName(LossShape shape);
const char* CmClipName(CmClip clip);
const char* MaskRuleName(MaskRule rule);
const char* SdpoReadingName(SdpoReading reading);
const char* LossWeightClipName(LossWeightClip clip);
const char* DpoErrorFormName(DpoErrorForm form);
const char* WeightSourceName(WeightSource source);

// beta conversions. Salesforce: beta_dpo = 2 beta. The paper's beta (SIPO Table A1) under the
// reading log sigmoid(-beta_p T omega [...]) with omega = 1/2 and explicit T [inferred, paper.md
// 7.3]: beta = beta_p * T / 2.
inline double BetaFromSalesforce(double beta_dpo) { return 0.5 * beta_dpo; }
inline double BetaToSalesforce(double beta) { return 2.0 * beta; }
inline double BetaFromPaper(double beta_paper, double num_train_steps = 1000.0) {
  return 0.5 * beta_paper * num_train_steps;
}

// A batch of B preference pairs.
struct PairBatch {
  std::vector<TimePoint> timepoints;  // [B], shared by winner and loser
  std::vector<double> policy_winner, policy_loser;
  std::vector<double> reference_winner, reference_loser;
  // Optional [B] normalised log importance weights (detached). Empty: computed from the policy
  // errors as config.weight_source says (with config.error_type / effective_elements).
  std::vector<double> log_weight_winner, log_weight_loser;
  // weight_source sampled: mean over the elements of z * (pred - target) per sample, z the
  // standard normal draw of x_prev (SampledLogImportanceWeight).
  std::vector<double> noise_dot_winner, noise_dot_loser;
  // weight_source generator: the errors of the policy that generated the pair (GeneratorLogRatio).
  std::vector<double> generator_winner, generator_loser;
  // Optional [B] dataset weights of the pairs (>= 0; empty: all 1). Each scales its pair's term;
  // the mean is normalised by the sum of the active pairs' weights (docs/objectives.md 1).
  std::vector<double> pair_weights;

  size_t size() const { return timepoints.size(); }
};

// Per-pair terms, for diagnostics and tests.
struct PairTerms {
  double log_weight_winner = 0.0;  // normalised log w (stop-gradient)
  double log_weight_loser = 0.0;
  double coef_winner = 1.0;  // weight on the winner's log-ratio term inside the logit
  double coef_loser = 1.0;
  double pair_weight = 1.0;    // weight on the pair's loss (SDPO reading B, C&M reading C2)
  double data_weight = 1.0;    // the pair's dataset weight (PairBatch::pair_weights)
  bool active = true;          // not masked out
  double logit = 0.0;          // what enters the loss shape (after the C3 clamp)
  double margin = 0.0;         // unweighted DPO logit beta*[(ref_w - ref_l) - (pol_w - pol_l)]
  double reward_winner = 0.0;  // implicit rewards -beta (e_pol - e_ref) (in dpo_error_form)
  double reward_loser = 0.0;
  double loss = 0.0;  // the pair's loss before mask and pair weight
};

struct ObjectiveResult {
  double loss = 0.0;
  // d loss / d policy_winner[i] and d loss / d policy_loser[i].
  std::vector<double> grad_policy_winner, grad_policy_loser;
  std::vector<PairTerms> pairs;
  int64_t num_active = 0;
  int64_t num_weights_clipped = 0;  // weights that the [1 - eps, 1 + eps] clip changed
  int64_t num_weights_to_clip = 0;  // weights the clip was applied to
};

// Loss = sum_i active_i * d_i * pair_weight_i * loss_i / W, with d_i the dataset weight and
// W = sum_i active_i * d_i (1 when that sum is 0). With every d_i = 1, W = number of active pairs.
ObjectiveResult EvaluateObjective(const ObjectiveConfig& config, const PairBatch& batch);

// Batch-builder invariant (shared t and shared noise): a buffer of 2 * num_pairs rows of
// `row_size` values laid out winners first, then losers, must have bit-identical halves.
// Throws sdpo::Error naming `what` and the first differing pair / element.
void CheckSharedHalves(const float* data, int64_t num_pairs, int64_t row_size, const char* what);
void CheckSharedHalves(const double* data, int64_t num_pairs, int64_t row_size, const char* what);

}  // namespace sdpo
