#include "models/wan21/vae_config.h"

#include <cmath>

#include "tensor/error.h"

namespace sdpo::wan21 {

const std::array<double, 16> kWanVaeLatentMean = {
    -0.7571, -0.7089, -0.9113, 0.1075,  -0.1745, 0.9653,  -0.1517, 1.5508,
    0.4134,  -0.0715, 0.5517,  -0.3632, -0.1922, -0.9497, 0.2503,  -0.2921};
const std::array<double, 16> kWanVaeLatentStd = {2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708,
                                                 2.6052, 2.0743, 3.2687, 2.1526, 2.8652, 1.5579,
                                                 1.6382, 1.1253, 2.8251, 1.9160};

int64_t WanVaeConfig::spatial_factor() const {
  return int64_t{1} << (static_cast<int64_t>(dim_mult.size()) - 1);
}

int64_t WanVaeConfig::temporal_factor() const {
  int64_t f = 1;
  for (size_t i = 0; i + 1 < dim_mult.size(); ++i) f *= temperal_downsample[i] ? 2 : 1;
  return f;
}

void WanVaeConfig::Validate(const std::string& source) const {
  SDPO_CHECK(dim >= 1 && dim <= (1 << 16), source, ": WanVAE_ dim must be in [1, 65536], got ",
             dim);
  SDPO_CHECK(z_dim >= 1 && z_dim <= (1 << 16), source,
             ": WanVAE_ z_dim must be in [1, 65536], got ", z_dim);
  // The decoder halves the input channels of levels 1..3 (hard-coded in the official code), so
  // more than 4 levels would not match any official model.
  SDPO_CHECK(dim_mult.size() >= 1 && dim_mult.size() <= 4, source,
             ": WanVAE_ dim_mult must have 1 to 4 entries, got ", dim_mult.size());
  for (int64_t m : dim_mult) {
    SDPO_CHECK(m >= 1 && m <= 64, source, ": WanVAE_ dim_mult entries must be in [1, 64], got ", m);
  }
  SDPO_CHECK(num_res_blocks >= 1 && num_res_blocks <= 64, source,
             ": WanVAE_ num_res_blocks must be in [1, 64], got ", num_res_blocks);
  SDPO_CHECK(temperal_downsample.size() + 1 >= dim_mult.size(), source,
             ": WanVAE_ temperal_downsample needs ", dim_mult.size() - 1,
             " entries (one per downsample), got ", temperal_downsample.size());
}

namespace {

std::vector<int64_t> IntList(const json::Value& v, const std::string& key,
                             const std::string& source) {
  SDPO_CHECK(v.is_array(), source, ": WanVAE_ key '", key, "' must be an array, found ",
             json::TypeName(v.type()));
  std::vector<int64_t> out;
  for (const json::Value& item : v.as_array()) out.push_back(json::ExpectInt(item, key, source));
  return out;
}

}  // namespace

WanVaeConfig WanVaeConfig::FromJson(const json::Value& value, const std::string& source) {
  SDPO_CHECK(value.is_object(), source, ": a WanVAE_ config must be a JSON object, found ",
             json::TypeName(value.type()));
  const json::Value& args = value.contains("WanVAE_") ? value.at("WanVAE_") : value;
  SDPO_CHECK(args.is_object(), source, ": 'WanVAE_' must be an object, found ",
             json::TypeName(args.type()));
  WanVaeConfig c;
  for (const auto& [key, v] : args.as_object()) {
    if (key == "dim") {
      c.dim = json::ExpectInt(v, key, source);
    } else if (key == "z_dim") {
      c.z_dim = json::ExpectInt(v, key, source);
    } else if (key == "dim_mult") {
      c.dim_mult = IntList(v, key, source);
    } else if (key == "num_res_blocks") {
      c.num_res_blocks = json::ExpectInt(v, key, source);
    } else if (key == "attn_scales") {
      SDPO_CHECK(v.is_array(), source, ": WanVAE_ key 'attn_scales' must be an array, found ",
                 json::TypeName(v.type()));
      c.attn_scales.clear();
      for (const json::Value& s : v.as_array())
        c.attn_scales.push_back(json::ExpectDouble(s, key, source));
    } else if (key == "temperal_downsample") {
      SDPO_CHECK(v.is_array(), source, ": WanVAE_ key '", key, "' must be an array, found ",
                 json::TypeName(v.type()));
      c.temperal_downsample.clear();
      for (const json::Value& b : v.as_array())
        c.temperal_downsample.push_back(json::ExpectBool(b, key, source));
    } else if (key == "dropout") {
      c.dropout = json::ExpectDouble(v, key, source);
    } else if (!key.empty() && key[0] == '_') {
      continue;  // "_class_name" and the like
    } else {
      SDPO_FAIL(source, ": unknown WanVAE_ config key '", key,
                "' (expected dim, z_dim, dim_mult, num_res_blocks, attn_scales, "
                "temperal_downsample, dropout)");
    }
  }
  c.Validate(source);
  return c;
}

WanVaeConfig WanVaeConfig::FromFile(const std::string& path) {
  return FromJson(json::ParseFile(path), path);
}

std::string WanVaeConfig::ToJson() const {
  json::Value::Array mult, scales, temporal;
  for (int64_t m : dim_mult) mult.push_back(json::Value::Int(m));
  for (double s : attn_scales) scales.push_back(json::Value::Double(s));
  for (bool t : temperal_downsample) temporal.push_back(json::Value::Bool(t));
  json::Value args = json::Value::MakeObject({
      {"dim", json::Value::Int(dim)},
      {"z_dim", json::Value::Int(z_dim)},
      {"dim_mult", json::Value::MakeArray(std::move(mult))},
      {"num_res_blocks", json::Value::Int(num_res_blocks)},
      {"attn_scales", json::Value::MakeArray(std::move(scales))},
      {"temperal_downsample", json::Value::MakeArray(std::move(temporal))},
      {"dropout", json::Value::Double(dropout)},
  });
  return json::Serialize(json::Value::MakeObject({{"WanVAE_", std::move(args)}}));
}

bool WanVaeConfig::operator==(const WanVaeConfig& o) const {
  return dim == o.dim && z_dim == o.z_dim && dim_mult == o.dim_mult &&
         num_res_blocks == o.num_res_blocks && attn_scales == o.attn_scales &&
         temperal_downsample == o.temperal_downsample && dropout == o.dropout;
}

}  // namespace sdpo::wan21
