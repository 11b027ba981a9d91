// What the frugal program's subcommands share; see common.hpp.
#include "common.hpp"

#include <frugal/quant/format.hpp>

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <limits>

namespace frugal::cli {

std::size_t parse_size(std::string_view text) {
  static constexpr std::string_view unit_list =
      "B, KiB/Ki/K, MiB/Mi/M, GiB/Gi/G, TiB/Ti/T (powers of 1024), KB, MB, GB, TB (powers of "
      "1000), or none for bytes";
  const auto bad = [&](const std::string& why) {
    return "size \"" + std::string(text) + "\": " + why + "; units: " + std::string(unit_list) +
           " (examples: 80GiB, 80Gi, 80GB, 0.5TiB, 1e9)";
  };
  std::size_t i = 0;
  while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i]))) ++i;
  const std::size_t number_begin = i;
  bool digits = false, point = false;
  for (; i < text.size(); ++i) {
    const char ch = text[i];
    if (std::isdigit(static_cast<unsigned char>(ch))) {
      digits = true;
    } else if (ch == '.' && !point) {
      point = true;
    } else {
      break;
    }
  }
  if (!digits) FRUGAL_FAIL(bad("no number"), usage_error);
  // An exponent (1e9, 2.5E+3): 'e' followed by digits; "e" alone is no unit either.
  if (i < text.size() && (text[i] == 'e' || text[i] == 'E')) {
    std::size_t j = i + 1;
    if (j < text.size() && (text[j] == '+' || text[j] == '-')) ++j;
    const std::size_t exponent_digits = j;
    while (j < text.size() && std::isdigit(static_cast<unsigned char>(text[j]))) ++j;
    if (j == exponent_digits) FRUGAL_FAIL(bad("an exponent needs digits"), usage_error);
    i = j;
  }
  const std::string number(text.substr(number_begin, i - number_begin));
  while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i]))) ++i;
  std::string unit(text.substr(i));
  while (!unit.empty() && std::isspace(static_cast<unsigned char>(unit.back()))) unit.pop_back();
  std::transform(unit.begin(), unit.end(), unit.begin(),
                 [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });

  struct unit_scale {
    std::string_view name;
    long double scale;
  };
  static constexpr unit_scale units[] = {{"", 1},
                                         {"b", 1},
                                         {"kib", 1024.0L},
                                         {"ki", 1024.0L},
                                         {"k", 1024.0L},
                                         {"mib", 1048576.0L},
                                         {"mi", 1048576.0L},
                                         {"m", 1048576.0L},
                                         {"gib", 1073741824.0L},
                                         {"gi", 1073741824.0L},
                                         {"g", 1073741824.0L},
                                         {"tib", 1099511627776.0L},
                                         {"ti", 1099511627776.0L},
                                         {"t", 1099511627776.0L},
                                         {"kb", 1e3L},
                                         {"mb", 1e6L},
                                         {"gb", 1e9L},
                                         {"tb", 1e12L}};
  const auto u = std::find_if(std::begin(units), std::end(units),
                              [&](const unit_scale& s) { return s.name == unit; });
  if (u == std::end(units)) FRUGAL_FAIL(bad("unknown unit \"" + unit + "\""), usage_error);
  const long double bytes = std::strtold(number.c_str(), nullptr) * u->scale;
  if (!(bytes < 1.8e19L)) FRUGAL_FAIL(bad("too large"), usage_error);
  const long double whole = std::round(bytes);
  if (std::fabs(bytes - whole) > 1e-6L * std::max<long double>(1, bytes))
    FRUGAL_FAIL(bad("not a whole number of bytes"), usage_error);
  return static_cast<std::size_t>(whole);
}

std::string preset_names() {
  std::string out;
  for (const sim::model_shape& m : sim::model_presets) {
    if (!out.empty()) out += ", ";
    out += m.name;
  }
  return out;
}

model_choice resolve_model(const std::string& text) {
  for (const sim::model_shape& m : sim::model_presets)
    if (m.name == text) return {m, "preset", true};
  const bool looks_like_file = text.find('/') != std::string::npos ||
                               (text.size() >= 5 && text.ends_with(".json")) ||
                               std::filesystem::exists(text);
  if (!looks_like_file)
    FRUGAL_FAIL("--model: unknown model \"" + text + "\"; give a preset (" + preset_names() +
                    ") or a Hugging Face config.json file",
                usage_error);
  if (!std::filesystem::exists(text)) FRUGAL_FAIL(text + ": no such file", error);
  return {sim::read_hf_config(text), text, false};
}

kv::dtype parse_kv_dtype(std::string_view text) {
  try {
    return kv::parse_dtype(text);
  } catch (const invalid_argument&) {
    FRUGAL_FAIL(
        "--kv-dtype: unknown KV type \"" + std::string(text) + "\"; known: " + kv::dtype_names(),
        usage_error);
  }
}

std::vector<matrix_kind> matrices(const sim::model_shape& m) {
  const std::size_t h = m.hidden_size, heads = m.num_heads, layers = m.num_layers;
  std::vector<matrix_kind> out;
  if (m.kv_lora_rank != 0) {
    // Multi-head latent attention (DeepSeek-V2/V3).
    const std::size_t q_head = m.head_dim, rope = m.qk_rope_head_dim, latent = m.kv_lora_rank;
    if (m.q_lora_rank != 0) {
      out.push_back({"self_attn.q_a_proj", m.q_lora_rank, h, layers});
      out.push_back({"self_attn.q_b_proj", heads * q_head, m.q_lora_rank, layers});
    } else {
      out.push_back({"self_attn.q_proj", heads * q_head, h, layers});
    }
    out.push_back({"self_attn.kv_a_proj_with_mqa", latent + rope, h, layers});
    out.push_back({"self_attn.kv_b_proj", heads * (q_head - rope + m.v_head_dim), latent, layers});
    out.push_back({"self_attn.o_proj", h, heads * m.v_head_dim, layers});
  } else {
    const std::size_t q = heads * m.head_dim, kv = std::size_t{m.num_kv_heads} * m.head_dim;
    out.insert(out.end(), {{"self_attn.q_proj", q, h, layers},
                           {"self_attn.k_proj", kv, h, layers},
                           {"self_attn.v_proj", kv, h, layers},
                           {"self_attn.o_proj", h, q, layers}});
  }
  const std::size_t dense_layers = layers - m.num_moe_layers, i = m.intermediate_size;
  if (dense_layers != 0)
    out.insert(out.end(), {{"mlp.gate_proj", i, h, dense_layers},
                           {"mlp.up_proj", i, h, dense_layers},
                           {"mlp.down_proj", h, i, dense_layers}});
  if (m.num_moe_layers != 0) {
    const std::size_t e = m.expert_intermediate_size,
                      experts = std::size_t{m.num_moe_layers} * m.num_experts;
    out.insert(out.end(), {{"mlp.experts.gate_proj", e, h, experts},
                           {"mlp.experts.up_proj", e, h, experts},
                           {"mlp.experts.down_proj", h, e, experts}});
    if (const std::size_t s = m.shared_intermediate_size; s != 0)
      out.insert(out.end(), {{"mlp.shared_experts.gate_proj", s, h, m.num_moe_layers},
                             {"mlp.shared_experts.up_proj", s, h, m.num_moe_layers},
                             {"mlp.shared_experts.down_proj", h, s, m.num_moe_layers}});
  }
  out.push_back({"embed_tokens", m.vocab_size, h, 1});
  if (!m.tied_embeddings) out.push_back({"lm_head", m.vocab_size, h, 1});
  return out;
}

sim::workload parse_workload(std::string_view name) {
  for (const sim::workload_spec& w : sim::workload_specs)
    if (w.name == name) return w.kind;
  std::string names;
  for (const sim::workload_spec& w : sim::workload_specs)
    names += (names.empty() ? "" : ", ") + std::string(w.name);
  FRUGAL_FAIL("--workload: unknown workload \"" + std::string(name) + "\"; known: " + names,
              usage_error);
}

bool is_weight_format(std::string_view format) {
  for (const sim::weight_format_spec& f : sim::weight_formats)
    if (f.name == format) return true;
  for (const quant::format_info& f : quant::all_formats())
    if (f.name == format) return true;
  return false;
}

std::string weight_format_names() {
  // A name both lists hold (int8) is listed once, where the simulator's list puts it.
  std::vector<std::string_view> names;
  const auto add = [&](std::string_view name) {
    if (std::find(names.begin(), names.end(), name) == names.end()) names.push_back(name);
  };
  for (const sim::weight_format_spec& f : sim::weight_formats) add(f.name);
  for (const quant::format_info& f : quant::all_formats()) add(f.name);
  std::string out;
  for (const std::string_view name : names) out += (out.empty() ? "" : ", ") + std::string(name);
  return out;
}

std::size_t weight_bytes(const sim::model_shape& m, std::string_view format) {
  for (const sim::weight_format_spec& f : sim::weight_formats)
    if (f.name == format) return sim::weight_bytes(m, f.kind);
  for (const quant::format_info& f : quant::all_formats()) {
    if (f.name != format) continue;
    long double bytes = 0;
    std::uint64_t covered = 0;
    for (const matrix_kind& k : matrices(m)) {
      const std::size_t block = f.block;
      if (block != 0 && k.cols % block != 0)
        FRUGAL_FAIL("weight format " + std::string(format) + " needs rows that are a " +
                        "multiple of " + std::to_string(block) + " elements; " +
                        std::string(m.name) + "'s " + k.name + " rows have " +
                        std::to_string(k.cols),
                    usage_error);
      const quant::layout l = quant::layout_of(f.id, k.rows, k.cols);
      bytes += static_cast<long double>(l.total_bytes) * static_cast<long double>(k.count);
      covered += k.elements();
    }
    // Norms and biases stay in 16 bits.
    const std::uint64_t rest = m.num_parameters > covered ? m.num_parameters - covered : 0;
    return static_cast<std::size_t>(std::ceil(bytes)) + static_cast<std::size_t>(2 * rest);
  }
  FRUGAL_FAIL(
      "unknown weight format \"" + std::string(format) + "\"; known: " + weight_format_names(),
      usage_error);
}

void check_bound(double db, std::string_view option) {
  if (!std::isfinite(db) || db < 0)
    FRUGAL_FAIL(std::string(option) + " must be a finite number of dB, 0 or more (got " +
                    strf("%g", db) + ")",
                usage_error);
}

CLI::Validator bound_text() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        const auto first = text.find_first_not_of(" \t");
        if (first == std::string::npos) return "a number of dB is needed, not an empty text";
        return "";
      },
      "DB");
}

std::string kept_reason(const quant::tensor_entry& t) {
  if (!quant::is_float_readable(t.type)) return "dtype " + std::string(quant::to_string(t.type));
  if (t.elements() == 0) return "empty";
  return "";
}

std::vector<std::string> split_list(const std::vector<std::string>& texts) {
  std::vector<std::string> out;
  for (const std::string& text : texts) {
    std::size_t begin = 0;
    while (begin <= text.size()) {
      std::size_t end = text.find(',', begin);
      if (end == std::string::npos) end = text.size();
      std::string part = text.substr(begin, end - begin);
      const auto first = part.find_first_not_of(" \t");
      const auto last = part.find_last_not_of(" \t");
      if (first != std::string::npos) out.push_back(part.substr(first, last - first + 1));
      begin = end + 1;
    }
  }
  return out;
}

void print_json(const json& j) { std::cout << j.dump(2) << '\n' << std::flush; }

std::string table::str(std::size_t indent) const {
  std::vector<std::size_t> width;
  for (const auto& row : rows_) {
    if (width.size() < row.size()) width.resize(row.size(), 0);
    for (std::size_t c = 0; c < row.size(); ++c) width[c] = std::max(width[c], row[c].size());
  }
  std::string out;
  for (const auto& row : rows_) {
    std::string line(indent, ' ');
    for (std::size_t c = 0; c < row.size(); ++c) {
      const std::string pad(width[c] - row[c].size(), ' ');
      if (c > 0) line += "  ";
      line += c >= right_from_ ? pad + row[c] : row[c] + pad;
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line + '\n';
  }
  return out;
}

json sqnr_json(double db) {
  if (std::isfinite(db)) return db;
  return std::isnan(db) ? "nan" : db > 0 ? "inf" : "-inf";
}

double sqnr_from_json(const json& j) {
  if (j.is_number()) return j.get<double>();
  if (j.is_string()) {
    const std::string& s = j.get_ref<const std::string&>();
    if (s == "inf") return std::numeric_limits<double>::infinity();
    if (s == "-inf") return -std::numeric_limits<double>::infinity();
    if (s == "nan") return std::numeric_limits<double>::quiet_NaN();
  }
  FRUGAL_FAIL("an SQNR is a number, \"inf\", \"-inf\" or \"nan\", not " + j.dump(),
              invalid_argument);
}

std::string sqnr_text(double db) {
  if (std::isfinite(db)) return strf("%.1f", db);
  return std::isnan(db) ? "nan" : db > 0 ? "inf" : "-inf";
}

std::string strf(const char* format, ...) {
  char buffer[512];
  va_list args;
  va_start(args, format);
  const int n = std::vsnprintf(buffer, sizeof buffer, format, args);
  va_end(args);
  if (n < 0) return {};
  if (static_cast<std::size_t>(n) < sizeof buffer) return std::string(buffer, n);
  std::string out(static_cast<std::size_t>(n) + 1, '\0');
  va_start(args, format);
  std::vsnprintf(out.data(), out.size(), format, args);
  va_end(args);
  out.resize(static_cast<std::size_t>(n));
  return out;
}

std::string signed_bytes(long double bytes) {
  const std::string magnitude = format_bytes(static_cast<std::size_t>(std::fabs(bytes) + 0.5L));
  return (bytes < 0 ? "-" : "+") + magnitude;
}

progress::progress(std::string title, std::size_t phases)
    : enabled_(::isatty(STDERR_FILENO) == 1),
      title_(std::move(title)),
      phases_(phases),
      start_(std::chrono::steady_clock::now()) {}

progress::~progress() {
  if (enabled_) std::fprintf(stderr, "\r\033[K");
}

void progress::phase(std::string_view what) {
  ++phase_;
  what_ = what;
  detail_.clear();
  draw();
}

void progress::detail(std::string_view text) {
  detail_ = text;
  draw();
}

void progress::draw() {
  if (!enabled_) return;
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  std::fprintf(stderr, "\r\033[K%s [%zu/%zu] %s%s%s (%.0f s)", title_.c_str(), phase_, phases_,
               what_.c_str(), detail_.empty() ? "" : ": ", detail_.c_str(), seconds);
  std::fflush(stderr);
}

/// `what` without a leading "path/file.cpp:123: " (where in frugal's sources the error was
/// raised): the program's one-line errors name the user's file, line or tensor instead.
std::string without_source_location(const std::string& what) {
  std::string text = what;
  const auto colon = text.find(": ");
  if (colon != std::string::npos) {
    const std::string head = text.substr(0, colon);
    const auto line_colon = head.rfind(':');
    if (line_colon != std::string::npos && line_colon + 1 != head.size()) {
      const std::string file = head.substr(0, line_colon);
      const bool source = file.ends_with(".cpp") || file.ends_with(".hpp") || file.ends_with(".cu");
      const bool digits = head.find_first_not_of("0123456789", line_colon + 1) == std::string::npos;
      if (source && digits) text = text.substr(colon + 2);
    }
  }
  // The library's component prefix ("frugal::sim: ") says where in frugal, not what is wrong.
  if (text.starts_with("frugal::")) {
    const auto end = text.find(": ");
    if (end != std::string::npos && text.find(' ') > end) text = text.substr(end + 2);
  }
  return text;
}

std::string one_line(std::string text) {
  text = without_source_location(text);
  for (char& ch : text)
    if (ch == '\n' || ch == '\r') ch = ' ';
  while (!text.empty() && text.back() == ' ') text.pop_back();
  return text;
}

}  // namespace frugal::cli
