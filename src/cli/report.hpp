// The parts of `frugal report`: its options, one function per waste (each returns every figure of
// its section as JSON, from which the text and the pictures are drawn), and the pictures.
//   frugal::cli::json kv = frugal::cli::report::serving_sections(options, model, progress);
#pragma once

#include "common.hpp"

#include <filesystem>
#include <optional>
#include <string>

namespace frugal::cli::report {

/// @brief The options of `frugal report` (see docs/cli/report.md).
struct options {
  std::string model = "llama-3-8b";
  std::string gpu_memory = "80GiB";
  std::string workload = "sharegpt";
  std::string weights_file;  ///< a .safetensors checkpoint; empty: synthetic weights
  double min_sqnr_db = default_min_sqnr_db;  ///< the weight plan's bound (as frugal quant's)
  std::size_t sample_rows = 32;              ///< rows of each matrix quantized (the rest is scaled)
  std::size_t requests = 1000;               ///< requests the serving simulation plays
  std::uint32_t max_len = 4096;              ///< longest sequence; static batching's reservation
  std::uint32_t max_num_seqs = 1024;         ///< dynamic batching: sequences per step at most
  std::size_t trace_steps = 600;             ///< engine steps of the synthetic allocation trace
  std::size_t leak_steps = 100;              ///< steps of the retained-intermediate run
  std::uint64_t seed = 1;
  std::string svg_dir;  ///< where the pictures go; empty: none
  bool json = false;

  // Resolved by run(): the sizes and the workload.
  std::size_t gpu_bytes = 0;
  sim::workload workload_kind = sim::workload::sharegpt;
};

/// @brief 1. Weights: FP16 versus the cheapest format per matrix that meets min_sqnr_db, on
/// synthetic weights (Gaussian with outlier input channels) or the checkpoint's tensors, both
/// subsampled to sample_rows rows per matrix and scaled to the full size.
json weights_section(const options& o, const sim::model_shape& m, progress& p);

/// @brief 2. Fragmentation: a synthetic serving allocation trace replayed through a naive
/// first-fit heap of exactly gpu_bytes and through frugal's pool capped at gpu_bytes.
json fragmentation_section(const options& o, const sim::model_shape& m, progress& p);

/// @brief 3 and 4. KV cache (static worst-case reservation versus paged) and batching (static
/// versus dynamic), from the serving simulator with FP16 weights (the planned weights when
/// `fp16_fits` is false); plus, under "frugal", the dynamic run with the weights at
/// `planned_weight_bytes`. Keys "kv", "batching", "frugal".
json serving_sections(const options& o, const model_choice& m, std::size_t planned_weight_bytes,
                      bool fp16_fits, progress& p);

/// @brief 5. Leaks: a decode loop that keeps every step's logits in a history it never trims,
/// run under frugal::tracking_adaptor; the leak report names the tag and the bytes, and the fixed
/// loop holds nothing after its steps.
json leak_section(const options& o, const sim::model_shape& m, progress& p);

/// @brief Writes memory_over_time.svg, kv_static_vs_paged.svg and format_error_vs_bits.svg into
/// `dir` (created when missing) from the report's JSON; returns the paths written.
/// @throws frugal::error naming a file that cannot be written
std::vector<std::string> write_pictures(const json& report, const std::filesystem::path& dir);

}  // namespace frugal::cli::report
