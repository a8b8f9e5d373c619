// Prompts to T5 token ids, as the Wan pipeline tokenizes them:
//
//   bazel run //models/umt5:tokenize -- --tokenizer=spiece.model --text_len=512
//       --texts=texts.json --out=ids.json
//
// --texts is a JSON list of strings, or an object with "cases" whose items have
// a "text" (the fixtures' tokenizer_cases.json). The output is a JSON list, in
// input order, of
// {"ids": [...], "mask": [...]} padded to text_len (see
// models/umt5/tokenizer.h). Relative paths are taken from the directory `bazel
// run` was started in.
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "io/command_line.h"
#include "io/json.h"
#include "models/forward_tool.h"
#include "models/umt5/tokenizer.h"

ABSL_FLAG(std::string, tokenizer, "", "the SentencePiece model (spiece.model)");
ABSL_FLAG(int64_t, text_len, 0, "tokens per text: truncated or padded to this length");
ABSL_FLAG(std::string, texts, "", "a JSON list of strings, or {\"cases\": [{\"text\": ...}]}");
ABSL_FLAG(std::string, out, "", "the output JSON: [{\"ids\": [...], \"mask\": [...]}, ...]");

namespace {

using namespace sdpo;  // NOLINT
using forward_tool::Resolve;

constexpr char kUsage[] =
    "usage: tokenize --tokenizer spiece.model --text_len "
    "N --texts texts.json --out ids.json\n"
    "  texts.json: a JSON list of strings, or "
    "{\"cases\": [{\"text\": ...}, ...]}\n";

std::vector<std::string> ReadTexts(const std::string& path) {
  const json::Value root = json::ParseFile(path);
  const json::Value* list = &root;
  if (root.is_object()) {
    list = root.find("cases");
    SDPO_CHECK(list != nullptr, path, ": an object needs a \"cases\" list");
  }
  SDPO_CHECK(list->is_array(), path, ": expected a list of strings (or \"cases\"), found ",
             json::TypeName(list->type()));
  std::vector<std::string> texts;
  for (size_t i = 0; i < list->as_array().size(); ++i) {
    const json::Value& item = list->as_array()[i];
    const json::Value& text = item.is_object() ? item.at("text") : item;
    texts.push_back(json::ExpectString(text, absl::StrCat("item ", i), path));
  }
  return texts;
}

int Run(int argc, char** argv) {
  ParseCommandLine(argc, argv, kUsage);
  const int64_t text_len = absl::GetFlag(FLAGS_text_len);
  SDPO_CHECK(text_len > 0, "--text_len must be a positive integer, got ", text_len, "\n", kUsage);
  for (const auto& [name, value] : {std::pair{"tokenizer", absl::GetFlag(FLAGS_tokenizer)},
                                    std::pair{"texts", absl::GetFlag(FLAGS_texts)},
                                    std::pair{"out", absl::GetFlag(FLAGS_out)}}) {
    SDPO_CHECK(!value.empty(), "--", name, " is required\n", kUsage);
  }
  auto tokenizer = umt5::Tokenizer::Open(Resolve(absl::GetFlag(FLAGS_tokenizer)));
  const std::vector<std::string> texts = ReadTexts(Resolve(absl::GetFlag(FLAGS_texts)));
  const umt5::Tokens tokens = tokenizer->Encode(texts, text_len);
  const std::vector<double> ids = tokens.ids.ToVector(), mask = tokens.mask.ToVector();
  std::string out = "[";
  for (size_t i = 0; i < texts.size(); ++i) {
    auto row = [&](const std::vector<double>& v) {
      return absl::StrJoin(
          v.begin() + i * text_len, v.begin() + (i + 1) * text_len, ", ",
          [](std::string* o, double x) { absl::StrAppend(o, static_cast<int64_t>(x)); });
    };
    absl::StrAppend(&out, i == 0 ? "\n" : ",\n", "{\"ids\": [", row(ids), "], \"mask\": [",
                    row(mask), "]}");
  }
  out += "\n]\n";
  const std::string out_path = Resolve(absl::GetFlag(FLAGS_out));
  std::ofstream f(out_path, std::ios::binary);
  SDPO_CHECK(f.good(), out_path, ": cannot open for writing");
  f << out;
  f.close();
  SDPO_CHECK(f.good(), out_path, ": write failed");
  std::fprintf(stderr, "tokenized %zu texts to %lld tokens each into %s\n", texts.size(),
               static_cast<long long>(text_len), out_path.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return sdpo::RunReportingErrors("tokenize", [&] { return Run(argc, argv); });
}
