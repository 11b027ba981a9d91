// What the frugal program's subcommands share: option parsing (sizes, models, formats), the
// model's weight matrices and their size in any format, output (tables, JSON) and progress.
//   frugal::cli::model_choice m = frugal::cli::resolve_model("llama-3-8b");   // or a config.json
//   std::size_t bytes = frugal::cli::weight_bytes(m.shape, "int4_g64");
#pragma once

#include "commands.hpp"

#include <frugal/error.hpp>
#include <frugal/kv/layout.hpp>
#include <frugal/quant/safetensors.hpp>
#include <frugal/sim/models.hpp>
#include <frugal/sim/workload.hpp>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace frugal::cli {

using json = nlohmann::json;

/// @brief Bad usage found after CLI11 parsed the options (an unknown name, a bad size): exit 2.
struct usage_error : invalid_argument {
  using invalid_argument::invalid_argument;
};

/// @brief A model given on the command line: a preset, or a shape read from a config.json.
struct model_choice {
  sim::model_shape shape;
  std::string source;  ///< "preset" or the config.json path
  bool preset = true;
};

/// @brief The preset named `text`, or, when `text` names a file (a path, or ending in .json),
/// the shape in that Hugging Face config.json.
/// @throws usage_error for a name that is neither a preset nor a path
/// @throws frugal::error for a config.json that cannot be read or is malformed (names the file)
model_choice resolve_model(const std::string& text);

/// @brief Known preset names, comma-separated, for help texts.
std::string preset_names();

/// @brief The KV cache element type named `text` (kv::parse_dtype's names, fp32 included; "fp8"
/// means fp8_e4m3). @throws usage_error listing the known names
kv::dtype parse_kv_dtype(std::string_view text);

/// @brief One kind of weight matrix of a model: rows x cols (output x input features), and how
/// many the model holds (one per layer, or one).
struct matrix_kind {
  std::string name;  ///< as Hugging Face names it: "self_attn.q_proj", "mlp.down_proj", ...
  std::size_t rows = 0, cols = 0;
  std::size_t count = 0;
  std::size_t elements() const noexcept { return rows * cols * count; }
};

/// @brief The 2-D weight matrices of `m`: the attention projections (MLA's too) of every layer,
/// the dense gated MLPs, every routed and shared expert of the MoE layers, the embeddings and
/// (unless tied) the LM head. What is left of num_parameters (norms, biases, the routers, small
/// and kept precise) stays in 16 bits in weight_bytes().
std::vector<matrix_kind> matrices(const sim::model_shape& m);

/// @brief The workload `--workload` names (sim::parse_workload's table).
/// @throws usage_error "--workload: unknown workload "NAME"; known: sharegpt, alpaca, fixed"
sim::workload parse_workload(std::string_view name);

/// @brief Whether `format` is a weight format frugal knows: a simulator format (fp16, bf16, fp8,
/// int8, int4) or a quantization format name (int4_g64, nvfp4, ...).
bool is_weight_format(std::string_view format);
/// @brief Every weight format name, comma-separated, for help texts and errors.
std::string weight_format_names();

/// @brief Bytes of `m`'s weights stored in `format`. Simulator formats cost parameters x bits / 8
/// (scales not counted, as sim::weight_bytes). Quantization formats cost each matrix at
/// quant::bits_per_element for its shape (scales and zero points included), the rest in 16 bits.
/// @throws usage_error for an unknown format, or a matrix shape the format cannot take
std::size_t weight_bytes(const sim::model_shape& m, std::string_view format);

/// @brief The accuracy bound `frugal quant --bound` and `frugal report --min-sqnr` default to:
/// 30 dB of SQNR keeps the quantization noise a thousandth of the signal's power, where
/// weight-only quantization of LLMs is commonly reported to leave perplexity about unchanged.
inline constexpr double default_min_sqnr_db = 30.0;

/// @brief An SQNR bound given as `option`: finite and not negative.
/// @throws usage_error naming the option otherwise (nan, inf, a negative number)
void check_bound(double db, std::string_view option);

/// @brief A CLI11 validator for a bound's text: a number (CLI11 would take '' as the default).
CLI::Validator bound_text();

/// @brief Why a stored tensor is kept as it is instead of quantized, or "" when it is to be
/// quantized: the one rule of `frugal quant` and `frugal report --weights`. Tensors of a type
/// that is not F32, F16 or BF16 (integer ids, masks, F64, FP8) are kept ("dtype I64"), as are
/// empty ones ("empty"); every other tensor, 1-D ones (norms, biases) included, is viewed as
/// rows x cols with cols its last dimension and quantized.
std::string kept_reason(const quant::tensor_entry& t);

/// @brief `text` split at commas, each part trimmed; empty parts dropped.
std::vector<std::string> split_list(const std::vector<std::string>& texts);

/// @brief Writes `j` to stdout, indented, with a final newline.
void print_json(const json& j);

/// @brief A plain text table: every column padded to its widest cell; columns before
/// `right_from` are left-aligned (names), the others right-aligned (figures).
class table {
 public:
  explicit table(std::vector<std::string> header, std::size_t right_from = 1)
      : right_from_(right_from) {
    rows_.push_back(std::move(header));
  }
  void add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  /// @brief The table, each line indented by `indent` spaces.
  std::string str(std::size_t indent = 2) const;

 private:
  std::vector<std::vector<std::string>> rows_;
  std::size_t right_from_;
};

/// @brief An SQNR in dB as the program's JSON writes it: a number when finite, else the string
/// "inf" (an exact representation: no error), "-inf" (a zero signal with a nonzero error) or
/// "nan" (NaN in the data). JSON has no numbers for these, and null would not say which.
json sqnr_json(double db);
/// @brief The SQNR that sqnr_json() wrote (a number, "inf", "-inf" or "nan"), for renderers
/// that read the program's JSON back. @throws frugal::invalid_argument for anything else
double sqnr_from_json(const json& j);
/// @brief An SQNR in dB for text output: "%.1f" when finite, else "inf", "-inf" or "nan".
std::string sqnr_text(double db);

/// @brief printf into a std::string.
std::string strf(const char* format, ...) __attribute__((format(printf, 1, 2)));

/// @brief "12.3 GiB"-style bytes (frugal::format_bytes) with a sign for differences.
std::string signed_bytes(long double bytes);

/// @brief Progress on stderr, on a terminal only (isatty): "[2/5] fragmentation ..." rewritten
/// in place, with the seconds spent so far; cleared when done. Silent when stderr is not a
/// terminal, so pipes, files and tests see no progress text.
class progress {
 public:
  progress(std::string title, std::size_t phases);
  progress(const progress&) = delete;
  progress& operator=(const progress&) = delete;
  ~progress();
  /// @brief Starts the next phase, called `what`.
  void phase(std::string_view what);
  /// @brief Updates the current phase's detail ("tensor 3 of 9").
  void detail(std::string_view text);

 private:
  void draw();
  bool enabled_;
  std::string title_, what_, detail_;
  std::size_t phase_ = 0, phases_;
  std::chrono::steady_clock::time_point start_;
};

/// @brief `text` with line breaks replaced, for one-line error messages.
std::string one_line(std::string text);
/// @brief `what` without a leading "path/file.cpp:123: " (where in frugal's sources an error was
/// raised): the program's errors name the user's file, line or tensor instead.
std::string without_source_location(const std::string& what);

}  // namespace frugal::cli
