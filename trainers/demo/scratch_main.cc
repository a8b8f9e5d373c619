#include <cstdio>
#include "trainers/demo/world.h"
#include "tensor/ops.h"
using namespace sdpo; using namespace sdpo::demo;
void P(const char* tag, const RewardBreakdown& r){
  printf("%-22s R=%.3f col=%.3f(cos %.3f) mot=%.3f(err %.3f) shape=%.3f(spr %.2f) mass=%.3f(rho %.2f) bg=%.3f(lvl %.3f)\n",
    tag, r.reward, r.colour, r.colour_cosine, r.motion, r.velocity_error, r.shape, r.spread, r.mass, r.mass_ratio, r.background, r.background_level);
}
int main(){
  DemoWorld w; const DemoPrompt& p = w.prompts()[9];
  P("clean", w.RewardDetails(p, w.Render(p, 11)));
  const char* names[]={"none","dir","col","speed","blur","noise","dim"};
  for (int d=4; d<=6; ++d) for (int i=1;i<=10;++i){ char t[64]; snprintf(t,64,"%s %.1f",names[d],0.1*i);
    P(t, w.RewardDetails(p, w.RenderDegraded(p, 11, (Degradation)d, 0.1*i)));}
  for (int d=1; d<=3; ++d) P(names[d], w.RewardDetails(p, w.RenderDegraded(p, 11, (Degradation)d, 1)));
  Tensor clean = w.Render(p, 11), noise = ops::RandomNormal(clean.shape(), 99, 0);
  for (int i=0;i<=10;++i){ double a=0.1*i; char t[64]; snprintf(t,64,"mix %.1f",a);
    P(t, w.RewardDetails(p, ops::Add(ops::MulScalar(clean,1-a), ops::MulScalar(noise,a))));}
}
