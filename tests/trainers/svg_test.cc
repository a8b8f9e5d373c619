#include "trainers/report/svg.h"

#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tensor/error.h"

namespace sdpo::plot {
namespace {

int Count(const std::string& s, const std::string& needle) {
  int n = 0;
  for (size_t p = s.find(needle); p != std::string::npos; p = s.find(needle, p + 1)) ++n;
  return n;
}

TEST(SvgTest, NiceTicks) {
  EXPECT_EQ(NiceTicks(0, 1000), (std::vector<double>{0, 200, 400, 600, 800, 1000}));
  const std::vector<double> t = NiceTicks(-0.013, 0.0021);
  ASSERT_GE(t.size(), 3u);
  EXPECT_NEAR(t[1] - t[0], 0.002, 1e-15);
  EXPECT_THROW(NiceTicks(1, 1), Error);
}

TEST(SvgTest, EscapesText) {
  EXPECT_EQ(XmlEscape("a<b & \"c\" > 'd'"), "a&lt;b &amp; &quot;c&quot; &gt; &apos;d&apos;");
  LinePlot p;
  p.title = "loss <w&l>";
  p.series.push_back({"beta=\"2\"", {0, 1}, {1, 2}});
  const std::string svg = RenderSvg(p);
  EXPECT_NE(svg.find("loss &lt;w&amp;l&gt;"), std::string::npos);
  EXPECT_NE(svg.find("beta=&quot;2&quot;"), std::string::npos);
  EXPECT_EQ(svg.find("<w&l>"), std::string::npos);
}

TEST(SvgTest, SeriesBandsLegendAndGaps) {
  LinePlot p;
  p.title = "weights";
  p.subtitle = "demo";
  p.x_label = "t";
  p.y_label = "log w";
  Series a{"winner", {0, 1, 2, 3, 4}, {0, -1, NAN, -1, 0}};
  a.band_lo = {-1, -2, -2, -2, -1};
  a.band_hi = {1, 0, 0, 0, 1};
  Series b{"loser", {0, 4}, {-0.5, -0.5}};
  b.dashed = true;
  b.markers = true;
  p.series = {a, b};
  const std::string svg = RenderSvg(p);
  EXPECT_EQ(svg.rfind("<svg", 0), 0u);
  EXPECT_NE(svg.find("</svg>"), std::string::npos);
  EXPECT_EQ(Count(svg, "<polyline"), 3);  // winner split by the NaN into two, loser one
  EXPECT_EQ(Count(svg, "<polygon"), 1);   // one band (the band itself has no gap)
  EXPECT_EQ(Count(svg, "<circle"), 2);
  EXPECT_NE(svg.find("stroke-dasharray"), std::string::npos);
  EXPECT_NE(svg.find(">winner</text>"), std::string::npos);
  EXPECT_NE(svg.find(">demo</text>"), std::string::npos);
  EXPECT_EQ(svg.find("nan"), std::string::npos);
  EXPECT_EQ(svg.find("inf"), std::string::npos);
  p.legend = LegendPosition::kNone;
  EXPECT_EQ(RenderSvg(p).find(">winner</text>"), std::string::npos);
}

TEST(SvgTest, EmptyAndFlatData) {
  LinePlot p;
  EXPECT_NE(RenderSvg(p).find("</svg>"), std::string::npos);
  p.series.push_back({"flat", {1, 2, 3}, {5, 5, 5}});
  EXPECT_NE(RenderSvg(p).find("<polyline"), std::string::npos);
  p.y_min = 0;
  p.y_max = 10;
  EXPECT_NE(RenderSvg(p).find("<polyline"), std::string::npos);
}

TEST(SvgTest, BadSeriesThrow) {
  LinePlot p;
  p.series.push_back({"bad", {1, 2, 3}, {1, 2}});
  EXPECT_THROW(RenderSvg(p), Error);
  p.series[0].y = {1, 2, 3};
  p.series[0].band_lo = {0};
  p.series[0].band_hi = {0};
  EXPECT_THROW(RenderSvg(p), Error);
  LinePlot q;
  q.y_min = 1;
  q.y_max = 0;
  EXPECT_THROW(RenderSvg(q), Error);
}

TEST(SvgTest, WritesFileAtomically) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string path = std::string(tmp ? tmp : "/tmp") + "/plot_test.svg";
  LinePlot p;
  p.series.push_back({"x", {0, 1}, {0, 1}});
  WriteSvg(p, path);
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  EXPECT_EQ(ss.str(), RenderSvg(p));
  EXPECT_FALSE(std::ifstream(path + ".tmp").good());
  EXPECT_THROW(WriteSvg(p, "/nonexistent-dir/x.svg"), Error);
}

}  // namespace
}  // namespace sdpo::plot
