#include "models/wan21/vae_names.h"

#include <cstdint>
#include <initializer_list>
#include <string_view>

namespace sdpo::wan21 {
namespace {

// Concatenates pieces (std::string_view, std::string, integers).
std::string Cat(std::initializer_list<std::string_view> parts) {
  std::string out;
  for (std::string_view p : parts) out.append(p.data(), p.size());
  return out;
}

struct Rename {
  std::string_view official;
  std::string_view diffusers;
};

// Inside a residual block. Prefixes: the rest of the name (weight, bias, gamma) is kept.
constexpr Rename kResidual[] = {
    {"residual.0.", "norm1."}, {"residual.2.", "conv1."},       {"residual.3.", "norm2."},
    {"residual.6.", "conv2."}, {"shortcut.", "conv_shortcut."},
};
// Whole-model and per-coder prefixes.
constexpr Rename kTop[] = {{"conv1.", "quant_conv."}, {"conv2.", "post_quant_conv."}};
constexpr Rename kCoder[] = {
    {"conv1.", "conv_in."},
    {"head.0.", "norm_out."},
    {"head.2.", "conv_out."},
    {"middle.0.", "mid_block.resnets.0."},
    {"middle.2.", "mid_block.resnets.1."},
    {"middle.1.", "mid_block.attentions.0."},
};
// Stage parts kept as they are: resampling convs and the attention block's parameters.
constexpr std::string_view kResample[] = {"resample.1.", "time_conv."};
constexpr std::string_view kAttention[] = {"norm.", "to_qkv.", "proj."};
constexpr int64_t kDecoderStage = 4;  // three residual blocks, then the upsampler

bool Consume(std::string_view& s, std::string_view prefix) {
  if (s.substr(0, prefix.size()) != prefix) return false;
  s.remove_prefix(prefix.size());
  return true;
}

// The leaf of a parameter: "weight", "bias" or "gamma".
bool IsLeaf(std::string_view s) { return s == "weight" || s == "bias" || s == "gamma"; }

// Reads "<digits>." from the front of s.
std::optional<int64_t> Index(std::string_view& s) {
  const size_t dot = s.find('.');
  if (dot == std::string_view::npos || dot == 0 || dot > 3) return std::nullopt;
  for (size_t i = 0; i < dot; ++i) {
    if (s[i] < '0' || s[i] > '9') return std::nullopt;
  }
  if (dot > 1 && s[0] == '0') return std::nullopt;  // one spelling per index
  int64_t v = 0;
  for (size_t i = 0; i < dot; ++i) v = v * 10 + (s[i] - '0');
  s.remove_prefix(dot + 1);
  return v;
}

std::optional<std::string> Residual(std::string_view rest, bool to_diffusers) {
  for (const Rename& r : kResidual) {
    std::string_view tail = rest;
    if (Consume(tail, to_diffusers ? r.official : r.diffusers) && IsLeaf(tail)) {
      return Cat({to_diffusers ? r.diffusers : r.official, tail});
    }
  }
  return std::nullopt;
}

std::optional<std::string> Listed(std::string_view rest, const std::string_view* begin,
                                  const std::string_view* end) {
  for (const std::string_view* p = begin; p != end; ++p) {
    std::string_view tail = rest;
    if (Consume(tail, *p) && IsLeaf(tail)) return std::string(rest);
  }
  return std::nullopt;
}

std::optional<std::string> Resample(std::string_view rest) {
  return Listed(rest, std::begin(kResample), std::end(kResample));
}

// The part after "encoder." or "decoder.".
std::optional<std::string> Coder(std::string_view rest, bool decoder, bool to_diffusers) {
  for (const Rename& r : kCoder) {
    std::string_view tail = rest;
    if (!Consume(tail, to_diffusers ? r.official : r.diffusers)) continue;
    const std::string_view to = to_diffusers ? r.diffusers : r.official;
    std::optional<std::string> inner;
    if (r.official == "middle.1.") {
      inner = Listed(tail, std::begin(kAttention), std::end(kAttention));
    } else if (r.official == "middle.0." || r.official == "middle.2.") {
      inner = Residual(tail, to_diffusers);
    } else if (r.official == "head.0.") {
      inner = tail == "gamma" ? std::optional<std::string>("gamma") : std::nullopt;
    } else {
      inner = tail == "weight" || tail == "bias" ? std::optional<std::string>(tail) : std::nullopt;
    }
    if (!inner) return std::nullopt;
    return Cat({to, *inner});
  }
  if (!decoder) {
    std::string_view tail = rest;
    if (!Consume(tail, to_diffusers ? "downsamples." : "down_blocks.")) return std::nullopt;
    const std::optional<int64_t> i = Index(tail);
    if (!i) return std::nullopt;
    std::optional<std::string> inner = Resample(tail);
    if (!inner) inner = Residual(tail, to_diffusers);
    if (!inner) return std::nullopt;
    return Cat({to_diffusers ? "down_blocks." : "downsamples.", std::to_string(*i), ".", *inner});
  }
  std::string_view tail = rest;
  if (to_diffusers) {
    if (!Consume(tail, "upsamples.")) return std::nullopt;
    const std::optional<int64_t> i = Index(tail);
    if (!i) return std::nullopt;
    const int64_t stage = *i / kDecoderStage, within = *i % kDecoderStage;
    if (within == kDecoderStage - 1) {
      std::optional<std::string> inner = Resample(tail);
      if (!inner) return std::nullopt;
      return Cat({"up_blocks.", std::to_string(stage), ".upsamplers.0.", *inner});
    }
    std::optional<std::string> inner = Residual(tail, true);
    if (!inner) return std::nullopt;
    return Cat(
        {"up_blocks.", std::to_string(stage), ".resnets.", std::to_string(within), ".", *inner});
  }
  if (!Consume(tail, "up_blocks.")) return std::nullopt;
  const std::optional<int64_t> stage = Index(tail);
  if (!stage) return std::nullopt;
  if (Consume(tail, "upsamplers.0.")) {
    std::optional<std::string> inner = Resample(tail);
    if (!inner) return std::nullopt;
    return Cat(
        {"upsamples.", std::to_string(*stage * kDecoderStage + kDecoderStage - 1), ".", *inner});
  }
  if (!Consume(tail, "resnets.")) return std::nullopt;
  const std::optional<int64_t> within = Index(tail);
  if (!within || *within >= kDecoderStage - 1) return std::nullopt;
  std::optional<std::string> inner = Residual(tail, false);
  if (!inner) return std::nullopt;
  return Cat({"upsamples.", std::to_string(*stage * kDecoderStage + *within), ".", *inner});
}

std::optional<std::string> Translate(std::string_view name, bool to_diffusers) {
  for (const Rename& r : kTop) {
    std::string_view tail = name;
    if (Consume(tail, to_diffusers ? r.official : r.diffusers) &&
        (tail == "weight" || tail == "bias")) {
      return Cat({to_diffusers ? r.diffusers : r.official, tail});
    }
  }
  for (const char* coder : {"encoder.", "decoder."}) {
    std::string_view tail = name;
    if (!Consume(tail, coder)) continue;
    std::optional<std::string> inner = Coder(tail, coder[0] == 'd', to_diffusers);
    if (!inner) return std::nullopt;
    return Cat({coder, *inner});
  }
  return std::nullopt;
}

}  // namespace

std::optional<std::string> VaeOfficialToDiffusers(const std::string& official) {
  return Translate(official, true);
}

std::optional<std::string> VaeDiffusersToOfficial(const std::string& diffusers) {
  return Translate(diffusers, false);
}

}  // namespace sdpo::wan21
