#include "trainers/report/svg.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "tensor/error.h"

namespace sdpo::plot {
namespace {

constexpr const char* kPalette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                                    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};
constexpr int kPaletteSize = sizeof(kPalette) / sizeof(kPalette[0]);

struct Range {
  double lo = std::numeric_limits<double>::infinity();
  double hi = -std::numeric_limits<double>::infinity();
  void Add(double v) {
    if (!std::isfinite(v)) return;
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  bool Empty() const { return !(lo <= hi); }
};

std::string Num(double v) { return absl::StrFormat("%.2f", v); }

std::string TickLabel(double v, double step) {
  if (std::abs(v) < step * 1e-9) v = 0.0;
  const double a = std::abs(v);
  if (a != 0.0 && (a >= 1e5 || a < 1e-3)) return absl::StrFormat("%.3g", v);
  // Enough decimals to resolve the step.
  const int decimals = std::max(0, static_cast<int>(std::ceil(-std::log10(step) - 1e-9)));
  return absl::StrFormat("%.*f", std::min(decimals, 6), v);
}

// Finalises an axis range: explicit limits win; otherwise the data range expanded to ticks.
void FinishRange(Range* r, const std::optional<double>& lo, const std::optional<double>& hi) {
  if (r->Empty()) {
    r->lo = 0.0;
    r->hi = 1.0;
  }
  if (r->lo == r->hi) {
    const double pad = r->lo == 0.0 ? 1.0 : 0.05 * std::abs(r->lo);
    r->lo -= pad;
    r->hi += pad;
  }
  if (!lo && !hi) {
    const std::vector<double> t = NiceTicks(r->lo, r->hi);
    const double step = t.size() >= 2 ? t[1] - t[0] : (r->hi - r->lo);
    r->lo = std::floor(r->lo / step + 1e-9) * step;
    r->hi = std::ceil(r->hi / step - 1e-9) * step;
  }
  if (lo) r->lo = *lo;
  if (hi) r->hi = *hi;
  SDPO_CHECK(r->lo < r->hi, "plot axis range [", r->lo, ", ", r->hi, "] is empty");
}

}  // namespace

std::string XmlEscape(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&apos;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::vector<double> NiceTicks(double lo, double hi, int target) {
  SDPO_CHECK(std::isfinite(lo) && std::isfinite(hi) && lo < hi && target >= 2,
             "NiceTicks needs a finite non-empty range, got [", lo, ", ", hi, "]");
  const double raw = (hi - lo) / target;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  const double norm = raw / mag;
  const double step = (norm < 1.5 ? 1.0 : norm < 3.0 ? 2.0 : norm < 7.0 ? 5.0 : 10.0) * mag;
  std::vector<double> ticks;
  for (double k = std::ceil(lo / step - 1e-9); k * step <= hi + step * 1e-9; k += 1.0) {
    ticks.push_back(k * step);
    if (ticks.size() > 1000) break;
  }
  return ticks;
}

std::string RenderSvg(const LinePlot& plot) {
  SDPO_CHECK(plot.width >= 200 && plot.height >= 150, "plot size ", plot.width, "x", plot.height,
             " is too small (min 200x150)");
  Range xr, yr;
  for (const Series& s : plot.series) {
    SDPO_CHECK(s.x.size() == s.y.size(), "plot series '", s.name, "': ", s.x.size(),
               " x values but ", s.y.size(), " y values");
    SDPO_CHECK(s.band_lo.size() == s.band_hi.size() &&
                   (s.band_lo.empty() || s.band_lo.size() == s.x.size()),
               "plot series '", s.name, "': band needs 0 or ", s.x.size(), " values, got ",
               s.band_lo.size(), " / ", s.band_hi.size());
    for (size_t i = 0; i < s.x.size(); ++i) {
      if (!std::isfinite(s.x[i])) continue;
      if (std::isfinite(s.y[i])) {
        xr.Add(s.x[i]);
        yr.Add(s.y[i]);
      }
      if (!s.band_lo.empty() && std::isfinite(s.band_lo[i]) && std::isfinite(s.band_hi[i])) {
        xr.Add(s.x[i]);
        yr.Add(s.band_lo[i]);
        yr.Add(s.band_hi[i]);
      }
    }
  }
  FinishRange(&xr, plot.x_min, plot.x_max);
  FinishRange(&yr, plot.y_min, plot.y_max);

  const double left = 78, right = 20, bottom = 56;
  const double top = 20 + (plot.title.empty() ? 0 : 22) + (plot.subtitle.empty() ? 0 : 16);
  const double pw = plot.width - left - right, ph = plot.height - top - bottom;
  auto px = [&](double x) { return left + (x - xr.lo) / (xr.hi - xr.lo) * pw; };
  auto py = [&](double y) { return top + (yr.hi - y) / (yr.hi - yr.lo) * ph; };

  std::string svg = absl::StrFormat(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
      "font-family=\"sans-serif\" font-size=\"12\">\n",
      plot.width, plot.height, plot.width, plot.height);
  absl::StrAppend(&svg, "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n");
  absl::StrAppend(&svg, "<defs><clipPath id=\"plotarea\"><rect x=\"", Num(left), "\" y=\"",
                  Num(top), "\" width=\"", Num(pw), "\" height=\"", Num(ph),
                  "\"/></clipPath></defs>\n");
  if (!plot.title.empty()) {
    absl::StrAppend(&svg, "<text x=\"", Num(plot.width / 2.0),
                    "\" y=\"24\" text-anchor=\"middle\" font-size=\"15\">", XmlEscape(plot.title),
                    "</text>\n");
  }
  if (!plot.subtitle.empty()) {
    absl::StrAppend(&svg, "<text x=\"", Num(plot.width / 2.0), "\" y=\"",
                    plot.title.empty() ? 24 : 42, "\" text-anchor=\"middle\" fill=\"#555\">",
                    XmlEscape(plot.subtitle), "</text>\n");
  }
  // Grid and ticks.
  const std::vector<double> xt = NiceTicks(xr.lo, xr.hi), yt = NiceTicks(yr.lo, yr.hi);
  const double xstep = xt.size() >= 2 ? xt[1] - xt[0] : xr.hi - xr.lo;
  const double ystep = yt.size() >= 2 ? yt[1] - yt[0] : yr.hi - yr.lo;
  for (double v : xt) {
    absl::StrAppend(&svg, "<line x1=\"", Num(px(v)), "\" y1=\"", Num(top), "\" x2=\"", Num(px(v)),
                    "\" y2=\"", Num(top + ph), "\" stroke=\"#e0e0e0\"/>\n");
    absl::StrAppend(&svg, "<text x=\"", Num(px(v)), "\" y=\"", Num(top + ph + 16),
                    "\" text-anchor=\"middle\">", XmlEscape(TickLabel(v, xstep)), "</text>\n");
  }
  for (double v : yt) {
    absl::StrAppend(&svg, "<line x1=\"", Num(left), "\" y1=\"", Num(py(v)), "\" x2=\"",
                    Num(left + pw), "\" y2=\"", Num(py(v)), "\" stroke=\"#e0e0e0\"/>\n");
    absl::StrAppend(&svg, "<text x=\"", Num(left - 6), "\" y=\"", Num(py(v) + 4),
                    "\" text-anchor=\"end\">", XmlEscape(TickLabel(v, ystep)), "</text>\n");
  }
  absl::StrAppend(&svg, "<rect x=\"", Num(left), "\" y=\"", Num(top), "\" width=\"", Num(pw),
                  "\" height=\"", Num(ph), "\" fill=\"none\" stroke=\"#333\"/>\n");
  if (!plot.x_label.empty()) {
    absl::StrAppend(&svg, "<text x=\"", Num(left + pw / 2), "\" y=\"", Num(plot.height - 12.0),
                    "\" text-anchor=\"middle\">", XmlEscape(plot.x_label), "</text>\n");
  }
  if (!plot.y_label.empty()) {
    absl::StrAppend(&svg, "<text x=\"16\" y=\"", Num(top + ph / 2),
                    "\" text-anchor=\"middle\" transform=\"rotate(-90 16 ", Num(top + ph / 2),
                    ")\">", XmlEscape(plot.y_label), "</text>\n");
  }

  // Bands first (under every line), then lines.
  std::vector<std::string> colors;
  for (size_t k = 0; k < plot.series.size(); ++k) {
    const Series& s = plot.series[k];
    colors.push_back(s.color.empty() ? kPalette[k % kPaletteSize] : s.color);
  }
  absl::StrAppend(&svg, "<g clip-path=\"url(#plotarea)\">\n");
  for (size_t k = 0; k < plot.series.size(); ++k) {
    const Series& s = plot.series[k];
    if (s.band_lo.empty()) continue;
    size_t i = 0;
    while (i < s.x.size()) {
      auto ok = [&](size_t j) {
        return std::isfinite(s.x[j]) && std::isfinite(s.band_lo[j]) && std::isfinite(s.band_hi[j]);
      };
      if (!ok(i)) {
        ++i;
        continue;
      }
      size_t j = i;
      while (j < s.x.size() && ok(j)) ++j;
      std::string pts;
      for (size_t q = i; q < j; ++q)
        absl::StrAppend(&pts, Num(px(s.x[q])), ",", Num(py(s.band_hi[q])), " ");
      for (size_t q = j; q-- > i;)
        absl::StrAppend(&pts, Num(px(s.x[q])), ",", Num(py(s.band_lo[q])), " ");
      absl::StrAppend(&svg, "<polygon points=\"", pts, "\" fill=\"", XmlEscape(colors[k]),
                      "\" fill-opacity=\"0.18\" stroke=\"none\"/>\n");
      i = j;
    }
  }
  for (size_t k = 0; k < plot.series.size(); ++k) {
    const Series& s = plot.series[k];
    const std::string style =
        absl::StrCat("fill=\"none\" stroke=\"", XmlEscape(colors[k]), "\" stroke-width=\"1.8\"",
                     s.dashed ? " stroke-dasharray=\"6,4\"" : "");
    std::string pts;
    int count = 0;
    auto flush = [&]() {
      if (count >= 2) absl::StrAppend(&svg, "<polyline points=\"", pts, "\" ", style, "/>\n");
      pts.clear();
      count = 0;
    };
    for (size_t i = 0; i < s.x.size(); ++i) {
      if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i])) {
        flush();
        continue;
      }
      absl::StrAppend(&pts, Num(px(s.x[i])), ",", Num(py(s.y[i])), " ");
      ++count;
      if (s.markers) {
        absl::StrAppend(&svg, "<circle cx=\"", Num(px(s.x[i])), "\" cy=\"", Num(py(s.y[i])),
                        "\" r=\"2.5\" fill=\"", XmlEscape(colors[k]), "\"/>\n");
      }
    }
    flush();
  }
  absl::StrAppend(&svg, "</g>\n");

  // Legend (top right, inside the plot area).
  if (plot.legend != LegendPosition::kNone && !plot.series.empty()) {
    size_t longest = 0;
    for (const Series& s : plot.series) longest = std::max(longest, s.name.size());
    const double lw = 40 + 7.0 * longest, lh = 8 + 18.0 * plot.series.size();
    const bool at_left =
        plot.legend == LegendPosition::kTopLeft || plot.legend == LegendPosition::kBottomLeft;
    const bool at_top =
        plot.legend == LegendPosition::kTopLeft || plot.legend == LegendPosition::kTopRight;
    const double lx = at_left ? left + 8 : left + pw - lw - 8;
    const double ly = at_top ? top + 8 : top + ph - lh - 8;
    absl::StrAppend(&svg, "<rect x=\"", Num(lx), "\" y=\"", Num(ly), "\" width=\"", Num(lw),
                    "\" height=\"", Num(lh),
                    "\" fill=\"white\" fill-opacity=\"0.85\" stroke=\"#999\"/>\n");
    for (size_t k = 0; k < plot.series.size(); ++k) {
      const double yy = ly + 14 + 18.0 * k;
      absl::StrAppend(&svg, "<line x1=\"", Num(lx + 6), "\" y1=\"", Num(yy - 4), "\" x2=\"",
                      Num(lx + 30), "\" y2=\"", Num(yy - 4), "\" stroke=\"", XmlEscape(colors[k]),
                      "\" stroke-width=\"2\"",
                      plot.series[k].dashed ? " stroke-dasharray=\"6,4\"" : "", "/>\n");
      absl::StrAppend(&svg, "<text x=\"", Num(lx + 36), "\" y=\"", Num(yy), "\">",
                      XmlEscape(plot.series[k].name), "</text>\n");
    }
  }
  absl::StrAppend(&svg, "</svg>\n");
  return svg;
}

void WriteSvg(const LinePlot& plot, const std::string& path) {
  const std::string svg = RenderSvg(plot);
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    SDPO_CHECK(out.good(), "cannot open ", tmp, " for writing");
    out << svg;
    out.flush();
    SDPO_CHECK(out.good(), "failed writing ", tmp);
  }
  SDPO_CHECK(std::rename(tmp.c_str(), path.c_str()) == 0, "cannot rename ", tmp, " to ", path);
}

}  // namespace sdpo::plot
