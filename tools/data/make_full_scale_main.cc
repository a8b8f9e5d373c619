// make_full_scale: full-scale random inputs for the trainer
// (tools/data/full_scale.h).
//   bazel run -c opt //tools/data:make_full_scale --
//   --checkpoint_out=$PWD/wan13b
//       --data_out=$PWD/pairs81 --context_out=$PWD/context.safetensors
#include "tools/data/full_scale.h"

int main(int argc, char** argv) { return sdpo::tools::MakeFullScaleMain(argc, argv); }
