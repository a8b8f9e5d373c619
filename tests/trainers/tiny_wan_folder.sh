# Sourced by the shell tests that need a Wan2.1 checkpoint folder as released, made from the
# shared fixtures (DiT wan21/tiny_a, VAE wan_vae/tiny_a, umT5 tiny_a as the .pth with
# google/umt5-xxl/spiece.model). Sets $fixtures; exits 0 with SKIP when they are not found.
fixtures="${SDPO_FIXTURES:-}"
if [[ -z "$fixtures" ]]; then
  root=$(dirname "$(readlink -f tests/fixtures_path.h)")/..
  fixtures=$(readlink -f "$root/../shared/fixtures" || true)
fi
if [[ ! -f "$fixtures/wan21/tiny_a.weights.safetensors" ]]; then
  echo "SKIP: shared fixtures not found (set SDPO_FIXTURES)"; exit 0
fi

# make_tiny_wan_folder DIR: the checkpoint folder with the official file names.
make_tiny_wan_folder() {
  local ckpt=$1
  mkdir -p "$ckpt/google/umt5-xxl"
  cp "$fixtures/wan21/tiny_a.weights.safetensors" "$ckpt/diffusion_pytorch_model.safetensors"
  cp "$fixtures/wan_vae/tiny_a.weights.safetensors" "$ckpt/Wan2.1_VAE.safetensors"
  cp "$fixtures/wan_vae/tiny_a.config.json" "$ckpt/vae_config.json"
  cp tests/models/umt5/testdata/umt5_tiny_a.pth "$ckpt/models_t5_umt5-xxl-enc-bf16.pth"
  sed 's|"tiny_spm.model"|"google/umt5-xxl/spiece.model"|' "$fixtures/umt5/tiny_a.config.json" \
    > "$ckpt/t5_config.json"
  cp "$fixtures/umt5/tiny_spm.model" "$ckpt/google/umt5-xxl/spiece.model"
}
