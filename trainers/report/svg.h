// A small, dependency-free SVG line-plot writer: several named (x, y) series, title, axis labels,
// optional shaded band per series (e.g. mean +- std or a quantile range). Used by the
// importance-weight profile tool and by the trainer for loss / accuracy curves.
//
// Non-finite points break a line (and a band) into segments instead of poisoning the range.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace sdpo::plot {

struct Series {
  std::string name;
  std::vector<double> x, y;
  std::string color;  // any SVG colour; empty = next colour of the built-in palette
  bool dashed = false;
  bool markers = false;  // draw a dot at every finite point
  // Optional shaded band: either both empty or both of x.size() values.
  std::vector<double> band_lo, band_hi;
};

enum class LegendPosition { kNone, kTopRight, kTopLeft, kBottomRight, kBottomLeft };

struct LinePlot {
  std::string title, subtitle, x_label, y_label;
  std::vector<Series> series;
  int width = 800, height = 480;
  // Axis limits; unset = from the finite data (lines and bands), rounded to nice ticks.
  std::optional<double> x_min, x_max, y_min, y_max;
  LegendPosition legend = LegendPosition::kTopRight;  // inside the plot area
};

// The SVG document. Throws sdpo::Error on inconsistent series (x/y/band sizes).
std::string RenderSvg(const LinePlot& plot);
// Writes RenderSvg(plot) to `path` atomically (temporary file + rename).
void WriteSvg(const LinePlot& plot, const std::string& path);

// Tick positions: "nice" steps (1, 2, 5 x 10^k) covering [lo, hi] with about `target` ticks.
std::vector<double> NiceTicks(double lo, double hi, int target = 6);
// Escapes &, <, >, " and ' for XML text and attributes.
std::string XmlEscape(const std::string& text);

}  // namespace sdpo::plot
