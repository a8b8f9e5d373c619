// The preference table `//trainers:prepare` reads: one row per pair (a prompt,
// the chosen video, the rejected video, an optional weight and id), as JSONL
// (one object per line) or CSV with a header. Other layouts (VideoAlign /
// VideoDPO style: video_a, video_b and a label saying which one won) are read
// through PairTableLayout's column names. docs/data.md describes both.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace sdpo::trainers {

struct PairTableLayout {
  std::string prompt = "prompt";
  std::string chosen = "chosen";      // with `label`: video A
  std::string rejected = "rejected";  // with `label`: video B
  std::string weight = "weight";      // optional column (default 1)
  std::string id = "id";              // optional column (default: the row's line number)
  // Optional: the column saying which video won. A value in a_wins keeps (A, B)
  // as (chosen, rejected), one in b_wins swaps them, one in ties skips the row,
  // anything else is a bad row.
  std::string label;
  std::vector<std::string> a_wins = {"A", "a", "video_a", "1"};
  std::vector<std::string> b_wins = {"B", "b", "video_b", "2"};
  std::vector<std::string> ties = {"tie", "same", "equal", "=", "0"};
};

struct PairRow {
  int64_t line = 0;  // 1-based line of the table where the row starts
  std::string id, prompt, chosen, rejected;
  double weight = 1;
};

struct SkippedRow {
  int64_t line = 0;
  std::string reason;
};

struct PairTable {
  std::string path;
  std::vector<PairRow> rows;
  std::vector<SkippedRow> skipped;  // ties, and bad rows when skip_bad_rows is set
};

// Reads `path` (".jsonl" or ".csv"). Table-level problems (no file, a missing
// header column, no rows) are errors. A bad row (not UTF-8, invalid JSON or
// CSV, an empty or missing prompt or video, a bad weight, an unknown label, an
// id seen before) is an sdpo::Error naming the file and line, or, with
// skip_bad_rows, lands in `skipped` with the reason.
PairTable ReadPairTable(const std::string& path, const PairTableLayout& layout, bool skip_bad_rows);

// One CSV record per element (RFC 4180: quoted fields may hold commas, doubled
// quotes and line breaks), each with the line it starts on. A quote left open
// at the end is an error.
struct CsvRecord {
  int64_t line = 0;
  std::vector<std::string> fields;
};
std::vector<CsvRecord> ParseCsv(const std::string& text, const std::string& source);

bool IsValidUtf8(const std::string& s);

// An sdpo::Error's message without its "(check failed: ...) [file:line]" tail:
// the reason a skipped row is reported with.
std::string ErrorReason(std::string what);

}  // namespace sdpo::trainers
