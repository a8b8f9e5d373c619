// The interface the trainers and samplers use to run a video diffusion transformer, whatever
// the family (Wan2.1 flow matching, CogVideoX DDPM). Models keep their own module trees (names =
// checkpoint keys); this layer only fixes the calling convention:
//
//   latents   one tensor per sample, [C, F, H, W] (the latent layout of the model family;
//             CogVideoX implementations document their own channel/frame order)
//   timesteps [B] floating: the value fed to the timestep embedding (flow: 1000 * sigma, or the
//             truncated integer the official samplers use; DDPM: the index t)
//   contexts  one text-encoder output per sample, [L_i, text_dim] (unpadded; the model pads)
//
// and returns one prediction per latent, of the latent's shape, in the model's parameter dtype
// (flow: v = eps - x0; DDPM: as the model was trained, see family()).
#pragma once

#include <string>
#include <vector>

#include "autograd/ops.h"
#include "models/schedules.h"
#include "nn/module.h"
#include "tensor/tensor.h"

namespace sdpo::models {

class DiffusionModel {
 public:
  virtual ~DiffusionModel() = default;

  // The module tree (parameters by checkpoint name; LoRA attaches here).
  virtual nn::Module& module() = 0;
  virtual const nn::Module& module() const = 0;

  // Batched forward when every latent has the same shape: returns [B, C, F, H, W]. Different
  // latent shapes are an error here (use ForwardList). Differentiable.
  virtual Tensor Forward(const std::vector<Tensor>& latents, const Tensor& timesteps,
                         const std::vector<Tensor>& contexts) = 0;

  // Any mix of latent shapes: one prediction per latent, each of its latent's shape. The default
  // runs Forward once when the shapes agree and once per sample otherwise; models with a padded
  // batch path (Wan2.1) override it.
  virtual std::vector<Tensor> ForwardList(const std::vector<Tensor>& latents,
                                          const Tensor& timesteps,
                                          const std::vector<Tensor>& contexts) {
    SDPO_CHECK(!latents.empty(), "DiffusionModel::ForwardList: no latents");
    SDPO_CHECK(timesteps.defined() && timesteps.dim() == 1 &&
                   timesteps.size(0) == static_cast<int64_t>(latents.size()) &&
                   contexts.size() == latents.size(),
               "DiffusionModel::ForwardList: ", latents.size(), " latents need ", latents.size(),
               " timesteps and contexts, got timesteps ",
               timesteps.defined() ? timesteps.str() : "undefined", " and ", contexts.size(),
               " contexts");
    bool same = true;
    for (const Tensor& x : latents) same = same && x.shape() == latents[0].shape();
    std::vector<Tensor> out;
    if (same) {
      Tensor y = Forward(latents, timesteps, contexts);
      for (int64_t i = 0; i < y.size(0); ++i) out.push_back(select(y, 0, i));
      return out;
    }
    for (size_t i = 0; i < latents.size(); ++i) {
      Tensor t = narrow(timesteps, 0, static_cast<int64_t>(i), 1);
      out.push_back(select(Forward({latents[i]}, t, {contexts[i]}), 0, 0));
    }
    return out;
  }

  // kFlow (velocity prediction on x_s = (1 - s) x0 + s eps) or kDdpm: the schedule family the
  // model was trained with, which the samplers check.
  virtual ScheduleFamily family() const = 0;

  // Activation recompute per transformer block during training (memory for compute). Off by
  // default; gradients are identical either way.
  virtual void SetRecompute(bool recompute) = 0;
  virtual bool recompute() const = 0;
};

}  // namespace sdpo::models
