#include "sdpo/objectives.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "sdpo/importance.h"
#include "tensor/error.h"

namespace sdpo {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// log(1 + exp(x)) without overflow.
double Softplus(double x) { return std::max(x, 0.0) + std::log1p(std::exp(-std::abs(x))); }
// 1 / (1 + exp(-x)) without overflow.
double Sigmoid(double x) {
  if (x >= 0.0) return 1.0 / (1.0 + std::exp(-x));
  const double e = std::exp(x);
  return e / (1.0 + e);
}

double Clip(double w, double eps) { return std::clamp(w, 1.0 - eps, 1.0 + eps); }

double ParseDouble(const std::string& key, const std::string& value) {
  double v;
  SDPO_CHECK(absl::SimpleAtod(value, &v), "objective option ", key, "=", value, ": not a number");
  return v;
}

bool ParseBool(const std::string& key, const std::string& value) {
  if (value == "true" || value == "1" || value == "yes") return true;
  if (value == "false" || value == "0" || value == "no") return false;
  SDPO_FAIL("objective option ", key, "=", value, ": expected true | false");
}

// Exact factor from the errors as given to the DPO form.
double ErrorFormFactor(const ObjectiveConfig& c, const TimePoint& tp) {
  switch (c.dpo_error_form) {
    case DpoErrorForm::kNative:
      return 1.0;
    case DpoErrorForm::kEpsilon:
      return ErrorScale(tp, c.error_type, PredictionType::kEpsilon);
    case DpoErrorForm::kX0:
      return ErrorScale(tp, c.error_type, PredictionType::kX0);
    case DpoErrorForm::kV:
      return ErrorScale(tp, c.error_type, PredictionType::kV);
  }
  SDPO_FAIL("unknown DpoErrorForm ", static_cast<int>(c.dpo_error_form));
}

bool PassesMask(const ObjectiveConfig& c, double timestep, double w_w, double w_l) {
  if (c.cm_clip == CmClip::kTimestepRange &&
      (timestep < c.min_timestep || timestep > c.max_timestep)) {
    return false;
  }
  switch (c.mask_rule) {
    case MaskRule::kBoth:
      return w_w >= c.tau && w_l >= c.tau;
    case MaskRule::kProduct:
      return w_w * w_l >= c.tau;
    case MaskRule::kMean:
      return 0.5 * (w_w + w_l) >= c.tau;
  }
  SDPO_FAIL("unknown MaskRule ", static_cast<int>(c.mask_rule));
}

template <typename T>
void CheckSharedHalvesImpl(const T* data, int64_t num_pairs, int64_t row_size, const char* what) {
  SDPO_CHECK(num_pairs >= 0 && row_size >= 0, what, ": bad layout (pairs ", num_pairs,
             ", row size ", row_size, ")");
  SDPO_CHECK(data != nullptr || num_pairs * row_size == 0, what, ": null data");
  const T* losers = data + num_pairs * row_size;
  for (int64_t p = 0; p < num_pairs; ++p) {
    if (std::memcmp(data + p * row_size, losers + p * row_size, sizeof(T) * row_size) != 0) {
      int64_t j = 0;
      while (j < row_size &&
             std::memcmp(data + p * row_size + j, losers + p * row_size + j, sizeof(T)) == 0) {
        ++j;
      }
      SDPO_FAIL(what, ": winner and loser of pair ", p, " differ at element ", j, " (",
                static_cast<double>(data[p * row_size + j]), " vs ",
                static_cast<double>(losers[p * row_size + j]),
                "); the batch builder must share t and noise within a pair");
    }
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Names and parsing.

const char* ObjectiveKindName(ObjectiveKind kind) {
  switch (kind) {
    case ObjectiveKind::kDiffusionDpo:
      return "diffusion_dpo";
    case ObjectiveKind::kDpoCm:
      return "dpo_cm";
    case ObjectiveKind::kSdpo:
      return "sdpo";
  }
  return "unknown";
}
const char* LossShapeName(LossShape shape) {
  switch (shape) {
    case LossShape::kSigmoid:
      return "sigmoid";
    case LossShape::kHinge:
      return "hinge";
    case LossShape::kIpo:
      return "ipo";
  }
  return "unknown";
}
const char* CmClipName(CmClip clip) {
  switch (clip) {
    case CmClip::kNone:
      return "none";
    case CmClip::kTimestepRange:
      return "timestep_range";
    case CmClip::kWeightClip:
      return "weight_clip";
    case CmClip::kLogitClip:
      return "logit_clip";
  }
  return "unknown";
}
const char* MaskRuleName(MaskRule rule) {
  switch (rule) {
    case MaskRule::kBoth:
      return "both";
    case MaskRule::kProduct:
      return "product";
    case MaskRule::kMean:
      return "mean";
  }
  return "unknown";
}
const char* SdpoReadingName(SdpoReading reading) {
  switch (reading) {
    case SdpoReading::kInsideLogit:
      return "inside_logit";
    case SdpoReading::kLossLevel:
      return "loss_level";
    case SdpoReading::kSelfNormalized:
      return "self_normalized";
  }
  return "unknown";
}
const char* LossWeightClipName(LossWeightClip clip) {
  switch (clip) {
    case LossWeightClip::kProduct:
      return "product";
    case LossWeightClip::kEach:
      return "each";
  }
  return "unknown";
}
const char* DpoErrorFormName(DpoErrorForm form) {
  switch (form) {
    case DpoErrorForm::kNative:
      return "native";
    case DpoErrorForm::kEpsilon:
      return "epsilon";
    case DpoErrorForm::kX0:
      return "x0";
    case DpoErrorForm::kV:
      return "v";
  }
  return "unknown";
}

const char* WeightSourceName(WeightSource source) {
  switch (source) {
    case WeightSource::kClosedForm:
      return "closed_form";
    case WeightSource::kSampled:
      return "sampled";
    case WeightSource::kGenerator:
      return "generator";
    case WeightSource::kTimestepCurve:
      return "timestep_curve";
  }
  return "unknown";
}

WeightSource ParseWeightSource(const std::string& name) {
  if (name == "closed_form") return WeightSource::kClosedForm;
  if (name == "sampled") return WeightSource::kSampled;
  if (name == "generator") return WeightSource::kGenerator;
  if (name == "timestep_curve") return WeightSource::kTimestepCurve;
  SDPO_FAIL("unknown importance-weight source '", name,
            "' (expected closed_form | sampled | generator | timestep_curve)");
}

ObjectiveKind ParseObjectiveKind(const std::string& name) {
  if (name == "diffusion_dpo" || name == "dpo") return ObjectiveKind::kDiffusionDpo;
  if (name == "dpo_cm" || name == "cm") return ObjectiveKind::kDpoCm;
  if (name == "sdpo") return ObjectiveKind::kSdpo;
  SDPO_FAIL("unknown objective '", name, "' (expected diffusion_dpo | dpo_cm | sdpo)");
}
LossShape ParseLossShape(const std::string& name) {
  if (name == "sigmoid") return LossShape::kSigmoid;
  if (name == "hinge") return LossShape::kHinge;
  if (name == "ipo") return LossShape::kIpo;
  SDPO_FAIL("unknown loss shape '", name, "' (expected sigmoid | hinge | ipo)");
}
CmClip ParseCmClip(const std::string& name) {
  if (name == "none") return CmClip::kNone;
  if (name == "timestep_range" || name == "c1") return CmClip::kTimestepRange;
  if (name == "weight_clip" || name == "c2") return CmClip::kWeightClip;
  if (name == "logit_clip" || name == "c3") return CmClip::kLogitClip;
  SDPO_FAIL("unknown DPO-C&M clipping reading '", name,
            "' (expected none | timestep_range (c1) | weight_clip (c2) | logit_clip (c3))");
}
MaskRule ParseMaskRule(const std::string& name) {
  if (name == "both") return MaskRule::kBoth;
  if (name == "product") return MaskRule::kProduct;
  if (name == "mean") return MaskRule::kMean;
  SDPO_FAIL("unknown mask rule '", name, "' (expected both | product | mean)");
}
SdpoReading ParseSdpoReading(const std::string& name) {
  if (name == "inside_logit" || name == "a" || name == "A") return SdpoReading::kInsideLogit;
  if (name == "loss_level" || name == "b" || name == "B") return SdpoReading::kLossLevel;
  if (name == "self_normalized" || name == "self_normalised" || name == "c" || name == "C") {
    return SdpoReading::kSelfNormalized;
  }
  SDPO_FAIL("unknown SDPO reading '", name,
            "' (expected inside_logit (A) | loss_level (B) | self_normalized (C))");
}
LossWeightClip ParseLossWeightClip(const std::string& name) {
  if (name == "product") return LossWeightClip::kProduct;
  if (name == "each") return LossWeightClip::kEach;
  SDPO_FAIL("unknown loss-weight clip '", name, "' (expected product | each)");
}
DpoErrorForm ParseDpoErrorForm(const std::string& name) {
  if (name == "native") return DpoErrorForm::kNative;
  if (name == "epsilon" || name == "eps") return DpoErrorForm::kEpsilon;
  if (name == "x0") return DpoErrorForm::kX0;
  if (name == "v") return DpoErrorForm::kV;
  SDPO_FAIL("unknown DPO error form '", name, "' (expected native | epsilon | x0 | v)");
}

// ---------------------------------------------------------------------------------------------
// Config.

ObjectiveConfig ObjectiveConfig::DiffusionDpo() {
  ObjectiveConfig c;
  c.kind = ObjectiveKind::kDiffusionDpo;
  c.beta = 1000.0;  // paper video beta 2 under the explicit-T reading (paper.md 7.3)
  return c;
}

ObjectiveConfig ObjectiveConfig::DpoCm() {
  ObjectiveConfig c;
  c.kind = ObjectiveKind::kDpoCm;
  c.beta = 10.0;  // paper video beta 0.02 under the same reading
  return c;
}

ObjectiveConfig ObjectiveConfig::Sdpo() {
  ObjectiveConfig c;
  c.kind = ObjectiveKind::kSdpo;
  c.beta = 10.0;
  return c;
}

void ValidateObjectiveConfig(const ObjectiveConfig& c) {
  SDPO_CHECK(c.kind == ObjectiveKind::kDiffusionDpo || c.kind == ObjectiveKind::kDpoCm ||
                 c.kind == ObjectiveKind::kSdpo,
             "unknown objective kind ", static_cast<int>(c.kind));
  SDPO_CHECK(
      c.loss == LossShape::kSigmoid || c.loss == LossShape::kHinge || c.loss == LossShape::kIpo,
      "unknown loss shape ", static_cast<int>(c.loss));
  SDPO_CHECK(std::isfinite(c.beta) && c.beta > 0.0, "beta must be finite and > 0, got ", c.beta);
  SDPO_CHECK(c.error_type == PredictionType::kEpsilon || c.error_type == PredictionType::kX0 ||
                 c.error_type == PredictionType::kV,
             "unknown error type ", static_cast<int>(c.error_type));
  SDPO_CHECK(static_cast<int>(c.dpo_error_form) >= 0 && static_cast<int>(c.dpo_error_form) <= 3,
             "unknown DPO error form ", static_cast<int>(c.dpo_error_form));
  SDPO_CHECK(std::isfinite(c.effective_elements) && c.effective_elements > 0.0,
             "effective_elements must be finite and > 0, got ", c.effective_elements);
  SDPO_CHECK(c.tau >= 0.0 && c.tau <= 1.0, "DPO-C&M threshold tau must lie in [0, 1], got ", c.tau);
  SDPO_CHECK(static_cast<int>(c.mask_rule) >= 0 && static_cast<int>(c.mask_rule) <= 2,
             "unknown mask rule ", static_cast<int>(c.mask_rule));
  SDPO_CHECK(static_cast<int>(c.cm_clip) >= 0 && static_cast<int>(c.cm_clip) <= 3,
             "unknown DPO-C&M clipping reading ", static_cast<int>(c.cm_clip));
  SDPO_CHECK(!std::isnan(c.min_timestep) && !std::isnan(c.max_timestep) &&
                 c.min_timestep <= c.max_timestep,
             "timestep range [", c.min_timestep, ", ", c.max_timestep, "] is empty");
  SDPO_CHECK(c.logit_clip > 0.0, "logit_clip must be > 0, got ", c.logit_clip);
  SDPO_CHECK(static_cast<int>(c.sdpo_reading) >= 0 && static_cast<int>(c.sdpo_reading) <= 2,
             "unknown SDPO reading ", static_cast<int>(c.sdpo_reading));
  SDPO_CHECK(static_cast<int>(c.loss_weight_clip) >= 0 && static_cast<int>(c.loss_weight_clip) <= 1,
             "unknown loss-weight clip ", static_cast<int>(c.loss_weight_clip));
  SDPO_CHECK(c.eps >= 0.0 && c.eps <= 1.0, "clip half-width eps must lie in [0, 1], got ", c.eps);
  SDPO_CHECK(static_cast<int>(c.weight_source) >= 0 && static_cast<int>(c.weight_source) <= 3,
             "unknown importance-weight source ", static_cast<int>(c.weight_source));
}

std::string DescribeObjectiveConfig(const ObjectiveConfig& c) {
  std::string s = absl::StrCat(ObjectiveKindName(c.kind), ": loss=", LossShapeName(c.loss),
                               " beta=", c.beta, " (salesforce beta_dpo=", BetaToSalesforce(c.beta),
                               ") errors=", PredictionTypeName(c.error_type),
                               " dpo_error_form=", DpoErrorFormName(c.dpo_error_form));
  if (c.kind == ObjectiveKind::kDiffusionDpo) return s;
  absl::StrAppend(&s, " effective_elements=", c.effective_elements,
                  " weight_source=", WeightSourceName(c.weight_source));
  const bool masked = c.kind == ObjectiveKind::kDpoCm || c.sdpo_use_mask;
  if (masked) {
    absl::StrAppend(&s, " tau=", c.tau, " mask_rule=", MaskRuleName(c.mask_rule),
                    " cm_clip=", CmClipName(c.cm_clip));
    if (c.cm_clip == CmClip::kTimestepRange) {
      absl::StrAppend(&s, " t_range=[", c.min_timestep, ", ", c.max_timestep, "]");
    }
    if (c.kind == ObjectiveKind::kDpoCm && c.cm_clip == CmClip::kLogitClip) {
      absl::StrAppend(&s, " logit_clip=", c.logit_clip);
    }
  } else {
    absl::StrAppend(&s, " mask=off");
  }
  if (c.kind == ObjectiveKind::kSdpo) {
    absl::StrAppend(&s, " reading=", SdpoReadingName(c.sdpo_reading), " eps=", c.eps);
    if (c.sdpo_reading == SdpoReading::kLossLevel) {
      absl::StrAppend(&s, " loss_weight_clip=", LossWeightClipName(c.loss_weight_clip));
    }
  } else if (c.cm_clip == CmClip::kWeightClip) {
    absl::StrAppend(&s, " eps=", c.eps);
  }
  return s;
}

void SetObjectiveOption(ObjectiveConfig* c, const std::string& key, const std::string& value) {
  SDPO_CHECK(c != nullptr, "SetObjectiveOption: null config");
  if (key == "kind" || key == "objective") {
    c->kind = ParseObjectiveKind(value);
  } else if (key == "loss") {
    c->loss = ParseLossShape(value);
  } else if (key == "beta") {
    c->beta = ParseDouble(key, value);
  } else if (key == "beta_salesforce") {
    c->beta = BetaFromSalesforce(ParseDouble(key, value));
  } else if (key == "error_type") {
    c->error_type = ParsePredictionType(value);
  } else if (key == "dpo_error_form") {
    c->dpo_error_form = ParseDpoErrorForm(value);
  } else if (key == "effective_elements") {
    c->effective_elements = ParseDouble(key, value);
  } else if (key == "tau") {
    c->tau = ParseDouble(key, value);
  } else if (key == "mask_rule") {
    c->mask_rule = ParseMaskRule(value);
  } else if (key == "cm_clip") {
    c->cm_clip = ParseCmClip(value);
  } else if (key == "min_timestep") {
    c->min_timestep = ParseDouble(key, value);
  } else if (key == "max_timestep") {
    c->max_timestep = ParseDouble(key, value);
  } else if (key == "logit_clip") {
    c->logit_clip = ParseDouble(key, value);
  } else if (key == "sdpo_reading") {
    c->sdpo_reading = ParseSdpoReading(value);
  } else if (key == "sdpo_use_mask") {
    c->sdpo_use_mask = ParseBool(key, value);
  } else if (key == "loss_weight_clip") {
    c->loss_weight_clip = ParseLossWeightClip(value);
  } else if (key == "eps") {
    c->eps = ParseDouble(key, value);
  } else if (key == "weight_source") {
    c->weight_source = ParseWeightSource(value);
  } else {
    SDPO_FAIL("unknown objective option '", key,
              "' (expected kind, loss, beta, beta_salesforce, error_type, dpo_error_form, "
              "effective_elements, tau, mask_rule, cm_clip, min_timestep, max_timestep, "
              "logit_clip, sdpo_reading, sdpo_use_mask, loss_weight_clip, eps, weight_source)");
  }
}

// ---------------------------------------------------------------------------------------------
// The objective.

ObjectiveResult EvaluateObjective(const ObjectiveConfig& c, const PairBatch& batch) {
  ValidateObjectiveConfig(c);
  const size_t n = batch.size();
  SDPO_CHECK(n > 0, "EvaluateObjective: empty batch");
  SDPO_CHECK(batch.policy_winner.size() == n && batch.policy_loser.size() == n &&
                 batch.reference_winner.size() == n && batch.reference_loser.size() == n,
             "EvaluateObjective: batch of ", n, " timepoints but errors of sizes policy_winner ",
             batch.policy_winner.size(), ", policy_loser ", batch.policy_loser.size(),
             ", reference_winner ", batch.reference_winner.size(), ", reference_loser ",
             batch.reference_loser.size());
  const bool given_weights = !batch.log_weight_winner.empty() || !batch.log_weight_loser.empty();
  if (given_weights) {
    SDPO_CHECK(batch.log_weight_winner.size() == n && batch.log_weight_loser.size() == n,
               "EvaluateObjective: log weights must be given for all ", n, " pairs (winner ",
               batch.log_weight_winner.size(), ", loser ", batch.log_weight_loser.size(), ")");
  }
  // The inputs the weight source needs (given log weights override the source).
  auto check_sized = [&](const std::vector<double>& w, const std::vector<double>& l,
                         const char* what) {
    SDPO_CHECK(w.size() == n && l.size() == n, "EvaluateObjective: weight_source ",
               WeightSourceName(c.weight_source), " needs ", what, " for all ", n,
               " pairs (winner ", w.size(), ", loser ", l.size(), ")");
    for (size_t i = 0; i < n; ++i) {
      SDPO_CHECK(std::isfinite(w[i]) && std::isfinite(l[i]), "EvaluateObjective: ", what,
                 " of pair ", i, " is not finite (", w[i], ", ", l[i], ")");
    }
  };
  if (!given_weights) {
    switch (c.weight_source) {
      case WeightSource::kClosedForm:
        break;
      case WeightSource::kSampled:
        check_sized(batch.noise_dot_winner, batch.noise_dot_loser, "noise projections");
        break;
      case WeightSource::kGenerator:
        check_sized(batch.generator_winner, batch.generator_loser, "generator errors");
        break;
      case WeightSource::kTimestepCurve:
        SDPO_FAIL(
            "EvaluateObjective: weight_source timestep_curve needs the curve's log weights "
            "in PairBatch::log_weight_winner/loser (TimestepWeightCurve::LogWeight)");
    }
  }
  const bool data_weights = !batch.pair_weights.empty();
  if (data_weights) {
    SDPO_CHECK(batch.pair_weights.size() == n, "EvaluateObjective: ", batch.pair_weights.size(),
               " pair weights for ", n, " pairs");
    for (size_t i = 0; i < n; ++i) {
      SDPO_CHECK(std::isfinite(batch.pair_weights[i]) && batch.pair_weights[i] >= 0.0,
                 "EvaluateObjective: pair weight ", i, " is ", batch.pair_weights[i],
                 " (expected finite and >= 0)");
    }
  }
  for (size_t i = 0; i < n; ++i) {
    const double e[4] = {batch.policy_winner[i], batch.policy_loser[i], batch.reference_winner[i],
                         batch.reference_loser[i]};
    const char* names[4] = {"policy_winner", "policy_loser", "reference_winner", "reference_loser"};
    for (int k = 0; k < 4; ++k) {
      SDPO_CHECK(std::isfinite(e[k]) && e[k] >= 0.0, "EvaluateObjective: ", names[k], "[", i,
                 "] = ", e[k], " at timestep ", batch.timepoints[i].timestep,
                 " (errors must be finite MSEs >= 0)");
    }
    if (given_weights) {
      SDPO_CHECK(!std::isnan(batch.log_weight_winner[i]) &&
                     !std::isnan(batch.log_weight_loser[i]) && batch.log_weight_winner[i] != kInf &&
                     batch.log_weight_loser[i] != kInf,
                 "EvaluateObjective: log weight of pair ", i, " is NaN or +inf");
    }
  }

  const bool masked =
      c.kind == ObjectiveKind::kDpoCm || (c.kind == ObjectiveKind::kSdpo && c.sdpo_use_mask);

  ObjectiveResult r;
  r.pairs.resize(n);
  r.grad_policy_winner.assign(n, 0.0);
  r.grad_policy_loser.assign(n, 0.0);

  // 1. Importance weights (stop-gradient) and the mask.
  std::vector<double> w_w(n, 1.0), w_l(n, 1.0);
  for (size_t i = 0; i < n; ++i) {
    PairTerms& p = r.pairs[i];
    const TimePoint& tp = batch.timepoints[i];
    if (given_weights) {
      p.log_weight_winner = batch.log_weight_winner[i];
      p.log_weight_loser = batch.log_weight_loser[i];
    } else {
      // Computed for every objective: Diffusion-DPO ignores them but logs their profile.
      const double d = c.effective_elements;
      const double pw = batch.policy_winner[i], pl = batch.policy_loser[i];
      switch (c.weight_source) {
        case WeightSource::kSampled:
          p.log_weight_winner =
              SampledLogImportanceWeight(tp, c.error_type, pw, batch.noise_dot_winner[i], d);
          p.log_weight_loser =
              SampledLogImportanceWeight(tp, c.error_type, pl, batch.noise_dot_loser[i], d);
          break;
        case WeightSource::kGenerator:
          p.log_weight_winner =
              GeneratorLogRatio(tp, c.error_type, pw, batch.generator_winner[i], d);
          p.log_weight_loser = GeneratorLogRatio(tp, c.error_type, pl, batch.generator_loser[i], d);
          break;
        default:
          p.log_weight_winner = LogImportanceWeight(tp, c.error_type, pw, d);
          p.log_weight_loser = LogImportanceWeight(tp, c.error_type, pl, d);
          break;
      }
    }
    if (data_weights) p.data_weight = batch.pair_weights[i];
    w_w[i] = std::exp(p.log_weight_winner);
    w_l[i] = std::exp(p.log_weight_loser);
    p.active = !masked || PassesMask(c, tp.timestep, w_w[i], w_l[i]);
    if (p.active) ++r.num_active;
  }

  // 2. Coefficients inside the logit and pair loss weights.
  double norm = 1.0;  // reading C: batch mean of the weights of the active pairs
  if (c.kind == ObjectiveKind::kSdpo && c.sdpo_reading == SdpoReading::kSelfNormalized) {
    double sum = 0.0;
    int64_t count = 0;
    for (size_t i = 0; i < n; ++i) {
      if (r.num_active > 0 && !r.pairs[i].active) continue;
      sum += w_w[i] + w_l[i];
      count += 2;
    }
    norm = sum / count;
  }
  auto clip_counted = [&](double w) {
    const double cw = Clip(w, c.eps);
    ++r.num_weights_to_clip;
    if (cw != w) ++r.num_weights_clipped;
    return cw;
  };
  for (size_t i = 0; i < n; ++i) {
    PairTerms& p = r.pairs[i];
    if (c.kind == ObjectiveKind::kSdpo) {
      switch (c.sdpo_reading) {
        case SdpoReading::kInsideLogit:
          p.coef_winner = clip_counted(w_w[i]);
          p.coef_loser = clip_counted(w_l[i]);
          break;
        case SdpoReading::kSelfNormalized:
          // All weights zero: the ratio carries no information, use 1.
          p.coef_winner = norm > 0.0 ? clip_counted(w_w[i] / norm) : 1.0;
          p.coef_loser = norm > 0.0 ? clip_counted(w_l[i] / norm) : 1.0;
          break;
        case SdpoReading::kLossLevel:
          p.pair_weight = c.loss_weight_clip == LossWeightClip::kProduct
                              ? clip_counted(w_w[i] * w_l[i])
                              : clip_counted(w_w[i]) * clip_counted(w_l[i]);
          break;
      }
    } else if (c.kind == ObjectiveKind::kDpoCm && c.cm_clip == CmClip::kWeightClip) {
      p.pair_weight = clip_counted(w_w[i]) * clip_counted(w_l[i]);
    }
  }

  // 3. Logits, per-pair losses and gradients.
  const bool logit_clip = c.kind == ObjectiveKind::kDpoCm && c.cm_clip == CmClip::kLogitClip;
  // Normalised by the active pairs' total dataset weight; with every weight 1 this is exactly the
  // count of active pairs (an integer sum in double), so unit weights change no bit.
  double weight_sum = 0.0;
  for (size_t i = 0; i < n; ++i) {
    if (r.pairs[i].active) weight_sum += r.pairs[i].data_weight;
  }
  const double denom = weight_sum > 0.0 ? weight_sum : 1.0;
  double total = 0.0;
  for (size_t i = 0; i < n; ++i) {
    PairTerms& p = r.pairs[i];
    const TimePoint& tp = batch.timepoints[i];
    const double f = ErrorFormFactor(c, tp);
    SDPO_CHECK(std::isfinite(f), "DPO error form ", DpoErrorFormName(c.dpo_error_form),
               " is undefined for ", PredictionTypeName(c.error_type), " errors at timestep ",
               tp.timestep, " (conversion factor ", f, ")");
    const double d_w = f * (batch.policy_winner[i] - batch.reference_winner[i]);
    const double d_l = f * (batch.policy_loser[i] - batch.reference_loser[i]);
    p.reward_winner = -c.beta * d_w;
    p.reward_loser = -c.beta * d_l;
    p.margin = c.beta * (d_l - d_w);
    const double z = p.coef_loser * d_l - p.coef_winner * d_w;
    double u = c.beta * z;
    double pass = 1.0;  // d u_clipped / d u
    if (logit_clip && std::abs(u) > c.logit_clip) {
      u = std::clamp(u, -c.logit_clip, c.logit_clip);
      pass = 0.0;
    }
    p.logit = u;
    double dl_du = 0.0;
    switch (c.loss) {
      case LossShape::kSigmoid:
        p.loss = Softplus(-u);
        dl_du = -Sigmoid(-u);
        break;
      case LossShape::kHinge:
        p.loss = std::max(0.0, 1.0 - u);
        dl_du = u < 1.0 ? -1.0 : 0.0;
        break;
      case LossShape::kIpo: {
        const double r_ipo = u / c.beta - 1.0 / (2.0 * c.beta);
        p.loss = r_ipo * r_ipo;
        dl_du = 2.0 * r_ipo / c.beta;
        break;
      }
    }
    if (!p.active) continue;
    const double a = p.data_weight * p.pair_weight / denom;
    total += a * p.loss;
    const double g = a * dl_du * pass * c.beta;  // d loss / d z
    r.grad_policy_winner[i] = -g * p.coef_winner * f;
    r.grad_policy_loser[i] = g * p.coef_loser * f;
  }
  r.loss = total;
  SDPO_CHECK(std::isfinite(r.loss), "EvaluateObjective: non-finite loss ", r.loss, " (",
             DescribeObjectiveConfig(c), ")");
  return r;
}

void CheckSharedHalves(const float* data, int64_t num_pairs, int64_t row_size, const char* what) {
  CheckSharedHalvesImpl(data, num_pairs, row_size, what);
}
void CheckSharedHalves(const double* data, int64_t num_pairs, int64_t row_size, const char* what) {
  CheckSharedHalvesImpl(data, num_pairs, row_size, what);
}

}  // namespace sdpo
