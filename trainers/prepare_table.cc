#include "trainers/prepare_table.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "io/json.h"
#include "tensor/error.h"

namespace sdpo::trainers {
namespace {

// A table bigger than this is refused before it is read whole (about 10 million
// pairs).
constexpr std::streamoff kMaxTableBytes = 2LL << 30;

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool Contains(const std::vector<std::string>& values, const std::string& v) {
  return std::find(values.begin(), values.end(), v) != values.end();
}

// The fields of one row by column name; absent columns are nullopt.
using RowFields = std::map<std::string, std::string>;

// Turns one row's fields into a PairRow; a bad row throws a message without the
// line (added by the caller). Returns nullopt for a tie (with `tie_reason`
// set).
std::optional<PairRow> MakeRow(const RowFields& fields, const PairTableLayout& layout, int64_t line,
                               std::string* tie_reason) {
  auto get = [&](const std::string& column, bool required) -> std::string {
    auto it = fields.find(column);
    if (it == fields.end() || absl::StripAsciiWhitespace(it->second).empty()) {
      SDPO_CHECK(!required, "empty or missing \"", column, "\"");
      return "";
    }
    return it->second;
  };
  PairRow row;
  row.line = line;
  row.prompt = get(layout.prompt, true);
  row.chosen = get(layout.chosen, true);
  row.rejected = get(layout.rejected, true);
  row.id = layout.id.empty() ? "" : get(layout.id, false);
  if (row.id.empty()) row.id = absl::StrCat("line-", line);
  if (!layout.weight.empty()) {
    const std::string w(absl::StripAsciiWhitespace(get(layout.weight, false)));
    if (!w.empty()) {
      SDPO_CHECK(absl::SimpleAtod(w, &row.weight) && std::isfinite(row.weight) && row.weight >= 0,
                 "\"", layout.weight, "\" is \"", w, "\", expected a finite number >= 0");
    }
  }
  if (!layout.label.empty()) {
    const std::string label(absl::StripAsciiWhitespace(get(layout.label, true)));
    if (Contains(layout.ties, label)) {
      *tie_reason = absl::StrCat("tie (\"", layout.label, "\" is \"", label, "\")");
      return std::nullopt;
    }
    if (Contains(layout.b_wins, label)) {
      std::swap(row.chosen, row.rejected);
    } else {
      SDPO_CHECK(Contains(layout.a_wins, label), "\"", layout.label, "\" is \"", label,
                 "\", expected one of ", absl::StrJoin(layout.a_wins, ", "), " (A wins), ",
                 absl::StrJoin(layout.b_wins, ", "), " (B wins) or ",
                 absl::StrJoin(layout.ties, ", "), " (tie)");
    }
  }
  SDPO_CHECK(row.chosen != row.rejected, "chosen and rejected are the same video \"", row.chosen,
             "\"");
  return row;
}

class TableBuilder {
 public:
  TableBuilder(std::string path, const PairTableLayout& layout, bool skip_bad_rows)
      : layout_(layout), skip_bad_rows_(skip_bad_rows) {
    table_.path = std::move(path);
  }

  // Adds one row; `fields` computes the fields (and may throw for a malformed
  // line).
  template <typename FieldsFn>
  void Add(int64_t line, FieldsFn fields) {
    try {
      std::string tie;
      std::optional<PairRow> row = MakeRow(fields(), layout_, line, &tie);
      if (!row) {
        table_.skipped.push_back({line, tie});
        return;
      }
      auto [it, inserted] = first_line_of_id_.emplace(row->id, line);
      SDPO_CHECK(inserted, "id \"", row->id, "\" repeats line ", it->second);
      table_.rows.push_back(std::move(*row));
    } catch (const Error& e) {
      const std::string reason = ErrorReason(e.what());
      if (!skip_bad_rows_) {
        SDPO_FAIL(table_.path, " line ", line, ": ", reason, " (--skip_bad_rows skips such rows)");
      }
      table_.skipped.push_back({line, reason});
    }
  }

  PairTable Finish() {
    SDPO_CHECK(!table_.rows.empty(), table_.path, ": no usable rows (", table_.skipped.size(),
               " skipped)");
    return std::move(table_);
  }

 private:
  const PairTableLayout& layout_;
  bool skip_bad_rows_;
  PairTable table_;
  std::map<std::string, int64_t> first_line_of_id_;
};

std::string ReadWholeFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  SDPO_CHECK(f.good(), "--pairs=", path, ": cannot open");
  const std::streamoff size = f.tellg();
  SDPO_CHECK(size >= 0 && size <= kMaxTableBytes, "--pairs=", path, ": ", size,
             " bytes, more than the ", kMaxTableBytes, " a pair table may have");
  std::string text(static_cast<size_t>(size), '\0');
  f.seekg(0);
  f.read(text.data(), size);
  SDPO_CHECK(f.good() || size == 0, "--pairs=", path, ": read failed");
  if (text.rfind("\xEF\xBB\xBF", 0) == 0) text.erase(0, 3);  // a UTF-8 byte order mark
  return text;
}

std::string FieldText(const json::Value& v, const std::string& key) {
  if (v.is_string()) return v.as_string();
  if (v.is_number()) return json::Serialize(v);
  SDPO_FAIL("\"", key, "\" is a JSON ", json::TypeName(v.type()), ", expected a string or number");
}

PairTable ReadJsonl(const std::string& path, const std::string& text, const PairTableLayout& layout,
                    bool skip_bad_rows) {
  TableBuilder builder(path, layout, skip_bad_rows);
  std::istringstream in(text);
  int64_t line_no = 0;
  for (std::string line; std::getline(in, line);) {
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (absl::StripAsciiWhitespace(line).empty()) continue;
    builder.Add(line_no, [&] {
      SDPO_CHECK(IsValidUtf8(line), "the line is not valid UTF-8");
      const json::Value v = json::Parse(line, "the line");
      SDPO_CHECK(v.is_object(), "the line is a JSON ", json::TypeName(v.type()),
                 ", expected an object");
      RowFields fields;
      for (const auto& [key, value] : v.as_object()) {
        if (!value.is_null()) fields[key] = FieldText(value, key);
      }
      return fields;
    });
  }
  return builder.Finish();
}

PairTable ReadCsv(const std::string& path, const std::string& text, const PairTableLayout& layout,
                  bool skip_bad_rows) {
  std::vector<CsvRecord> records = ParseCsv(text, path);
  SDPO_CHECK(!records.empty(), path, ": empty table (expected a header line)");
  const CsvRecord& header = records.front();
  std::map<std::string, size_t> column_index;
  for (size_t i = 0; i < header.fields.size(); ++i) {
    const std::string name(absl::StripAsciiWhitespace(header.fields[i]));
    SDPO_CHECK(IsValidUtf8(name), path, " line 1: column ", i + 1, " is not valid UTF-8");
    SDPO_CHECK(column_index.emplace(name, i).second, path, " line 1: column \"", name,
               "\" appears twice");
  }
  std::vector<std::string> required = {layout.prompt, layout.chosen, layout.rejected};
  if (!layout.label.empty()) required.push_back(layout.label);
  for (const std::string& column : required) {
    SDPO_CHECK(column_index.count(column), path, " line 1: no column \"", column,
               "\" in the header (found: ", absl::StrJoin(header.fields, ", "),
               "); name the columns with --prompt_column, --chosen_column, "
               "--rejected_column",
               layout.label.empty() ? "" : ", --label_column");
  }
  TableBuilder builder(path, layout, skip_bad_rows);
  for (size_t r = 1; r < records.size(); ++r) {
    const CsvRecord& record = records[r];
    if (record.fields.size() == 1 && absl::StripAsciiWhitespace(record.fields[0]).empty()) {
      continue;  // a blank line
    }
    builder.Add(record.line, [&] {
      SDPO_CHECK(record.fields.size() == header.fields.size(), "the row has ", record.fields.size(),
                 " fields, the header ", header.fields.size());
      RowFields fields;
      for (const auto& [name, i] : column_index) {
        SDPO_CHECK(IsValidUtf8(record.fields[i]), "\"", name, "\" is not valid UTF-8");
        fields[name] = record.fields[i];
      }
      return fields;
    });
  }
  return builder.Finish();
}

}  // namespace

std::string ErrorReason(std::string what) {
  size_t at = what.find(" (check failed: ");
  if (at == std::string::npos && !what.empty() && what.back() == ']') at = what.rfind(" [");
  if (at != std::string::npos) what.resize(at);
  return what;
}

bool IsValidUtf8(const std::string& s) {
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = s[i];
    int extra = 0;
    uint32_t cp = 0;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      extra = 1, cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      extra = 2, cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      extra = 3, cp = c & 0x07;
    } else {
      return false;
    }
    if (i + extra >= s.size()) return false;
    for (int k = 1; k <= extra; ++k) {
      const unsigned char cc = s[i + k];
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    static constexpr uint32_t kMin[] = {0, 0x80, 0x800, 0x10000};
    if (cp < kMin[extra] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += extra + 1;
  }
  return true;
}

std::vector<CsvRecord> ParseCsv(const std::string& text, const std::string& source) {
  std::vector<CsvRecord> records;
  CsvRecord record{1, {}};
  std::string field;
  int64_t line = 1;
  int64_t quote_line = 0;  // line of the open quote, 0 outside quotes
  bool field_was_quoted = false;
  auto end_field = [&] {
    record.fields.push_back(std::move(field));
    field.clear();
    field_was_quoted = false;
  };
  auto end_record = [&] {
    end_field();
    records.push_back(std::move(record));
    record = CsvRecord{line, {}};
  };
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (quote_line) {
      if (c == '"') {
        if (i + 1 < text.size() && text[i + 1] == '"') {
          field += '"';
          ++i;
        } else {
          quote_line = 0;
        }
      } else {
        if (c == '\n') ++line;
        field += c;
      }
    } else if (c == '"') {
      SDPO_CHECK(field.empty() && !field_was_quoted, source, " line ", line,
                 ": a quote inside an unquoted field (quote the whole field "
                 "and double its "
                 "quotes)");
      quote_line = line;
      field_was_quoted = true;
    } else if (c == ',') {
      end_field();
    } else if (c == '\n') {
      ++line;
      end_record();
    } else if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') {
      // CRLF: the '\n' ends the record.
    } else {
      SDPO_CHECK(!field_was_quoted, source, " line ", line,
                 ": text after a quoted field's closing quote");
      field += c;
    }
  }
  SDPO_CHECK(!quote_line, source, " line ", quote_line, ": a quoted field is never closed");
  if (!field.empty() || !record.fields.empty() || field_was_quoted) end_record();
  return records;
}

PairTable ReadPairTable(const std::string& path, const PairTableLayout& layout,
                        bool skip_bad_rows) {
  const std::string text = ReadWholeFile(path);
  if (EndsWith(path, ".jsonl") || EndsWith(path, ".json")) {
    return ReadJsonl(path, text, layout, skip_bad_rows);
  }
  SDPO_CHECK(EndsWith(path, ".csv"), "--pairs=", path,
             ": expected a .jsonl or .csv file (docs/data.md)");
  return ReadCsv(path, text, layout, skip_bad_rows);
}

}  // namespace sdpo::trainers
