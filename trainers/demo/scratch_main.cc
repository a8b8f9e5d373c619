#include <cstdio>
#include "trainers/demo/world.h"
#include "trainers/demo/images.h"
#include "tensor/ops.h"
using namespace sdpo; using namespace sdpo::demo;
int main(){
  DemoWorld w; std::vector<Tensor> xs;
  for (int i : {0, 9, 18, 27, 5, 14}) xs.push_back(w.Render(w.prompts()[i], i));
  xs.push_back(w.RenderDegraded(w.prompts()[9], 3, Degradation::kBlur, 1.0));
  xs.push_back(w.RenderDegraded(w.prompts()[9], 3, Degradation::kNoise, 0.3));
  WritePng("/tmp/demo_strip.png", xs);
  WriteGif("/tmp/demo.gif", xs, ImageOptions{8, 2.5, 2, 4, 30});
  for (int i : {0, 9, 18, 27, 5, 14}) printf("%s\n", w.prompts()[i].text.c_str());
}
