// examples/llama/llama.hpp: a Llama-architecture model whose every byte lives in frugal memory:
// weights loaded from llama2.c's legacy .bin or a Hugging Face folder (config.json +
// model.safetensors), optionally quantized to any frugal format, and a batched forward pass that
// reads and writes the KV cache through frugal::kv's pages.
//   llama::model m = llama::load("stories260K.bin", weights_memory, {.format = "int8_channel"});
//   m.forward(pages, scales, batch, workspace, logits);
#pragma once

#include <frugal/kv/attention.hpp>
#include <frugal/kv/page_pool.hpp>
#include <frugal/mr/resource_ref.hpp>
#include <frugal/quant/quantized_tensor.hpp>
#include <frugal/tensor/tensor.hpp>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace llama {

/// @brief A malformed or unsupported model (the program exits 1 with its message).
struct model_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// @brief The shape of a Llama-architecture model.
struct config {
  std::uint32_t dim = 0;
  std::uint32_t hidden_dim = 0;
  std::uint32_t n_layers = 0;
  std::uint32_t n_heads = 0;
  std::uint32_t n_kv_heads = 0;
  std::uint32_t vocab_size = 0;
  std::uint32_t seq_len = 0;
  float rms_norm_eps = 1e-5f;
  float rope_theta = 10000.0f;
  bool tied_embeddings = true;
  std::int32_t bos_token = 1;
  std::int32_t eos_token = 1;  ///< llama2.c models end a story with BOS (1)

  std::uint32_t head_dim() const noexcept { return dim / n_heads; }
  std::uint32_t kv_dim() const noexcept { return n_kv_heads * head_dim(); }
  friend bool operator==(const config&, const config&) = default;
};

/// @brief One 2-D projection (out x in, y = W x): float32, or quantized at load.
struct matrix {
  std::string name;
  std::size_t rows = 0, cols = 0;
  frugal::tensor<float> dense;                ///< when not quantized
  frugal::quant::quantized_tensor quantized;  ///< when quantized
  bool is_quantized() const noexcept { return !quantized.empty(); }
  std::size_t bytes() const noexcept {
    return is_quantized() ? quantized.bytes() : rows * cols * sizeof(float);
  }
};

/// @brief The weights of one layer.
struct layer_weights {
  frugal::tensor<float> rms_att, rms_ffn;  ///< dim each
  matrix wq, wk, wv, wo;                   ///< q (dim x dim), k, v (kv_dim x dim), o (dim x dim)
  matrix w1, w2, w3;                       ///< gate (hidden x dim), down (dim x hidden), up
};

/// @brief How weights are loaded.
struct load_options {
  /// A frugal format name to quantize every 2-D projection to; empty keeps float32.
  std::string format;
};

/// @brief One step's batch: sequences with their new tokens (prefill chunks and decodes mixed),
/// where those tokens' K/V go, and the page table of the sequences after this step.
struct batch {
  std::span<const std::int32_t> tokens;     ///< the step's tokens, sequence after sequence
  std::span<const std::int64_t> slots;      ///< one KV slot per token
  std::span<const std::int32_t> qo_indptr;  ///< sequences + 1 entries: tokens of sequence i
  frugal::kv::paged_kv table;               ///< pages of each sequence, including this step's
  std::span<const std::size_t> logit_rows;  ///< token rows whose logits are wanted, ascending
};

/// @brief A loaded model. Weights live in the resource given to load() (which must outlive it).
class model {
 public:
  const llama::config& config() const noexcept { return config_; }
  /// Bytes of every weight: projections (quantized or not), embeddings and norms.
  std::size_t weight_bytes() const noexcept;
  /// Format of the projections ("float32" when not quantized).
  const std::string& weight_format() const noexcept { return format_; }
  /// Projections the format could not hold (row length not a multiple of its block): float32.
  const std::vector<std::string>& kept_float() const noexcept { return kept_float_; }
  /// Bytes of activations one token of a step needs (what a batch::workspace reserves per token).
  std::size_t activation_bytes_per_token() const noexcept;
  /// Bytes a step needs beside its tokens: logits of `rows` rows and a dequantization buffer.
  std::size_t step_extra_bytes(std::size_t logit_rows) const noexcept;

  /// @brief The forward pass of one step: writes the tokens' K/V into `pages` (through
  /// kv::write_kv) and attends through kv::paged_attention; fills `logits` (logit_rows x vocab).
  /// Each row's arithmetic is the same whatever else is in the batch.
  /// @param kv_scales per layer, pages.layout().scales_per_layer() floats (8-bit KV), else empty
  /// @param scratch the step's activation memory (a batch::workspace inside a step)
  void forward(frugal::kv::page_pool& pages, std::span<const float> kv_scales, const batch& b,
               frugal::any_resource_ref scratch, std::span<float> logits) const;

  /// @brief How a forward pass stores a layer's K/V and attends: given the layer, the step's
  /// q (rows x dim), k and v (rows x kv_dim, RoPE applied), it fills out (rows x dim).
  using attend_fn = std::function<void(std::uint32_t layer, const float* q, const float* k,
                                       const float* v, std::size_t rows, float* out)>;
  /// @brief The forward pass with any attention: tokens at their positions; logits of the
  /// rows asked for. forward() is this with paged attention.
  void forward_rows(std::span<const std::int32_t> tokens, std::span<const std::size_t> positions,
                    const attend_fn& attend, frugal::any_resource_ref scratch,
                    std::span<const std::size_t> logit_rows, std::span<float> logits) const;

  /// @brief `tokens` as one sequence through forward() on a private fp32 cache of contiguous
  /// pages (from `scratch`): logits of `logit_rows`; `inspect`, when given, sees the cache's pages
  /// after the pass. What teacher forcing and KV calibration need.
  void forward_sequence(
      std::span<const std::int32_t> tokens, frugal::any_resource_ref scratch,
      std::span<const std::size_t> logit_rows, std::span<float> logits,
      const std::function<void(const frugal::kv::page_pool&)>& inspect = {}) const;

  /// @brief K and V of `tokens` as forward computes them (RoPE applied to K), for calibrating
  /// 8-bit KV scales: per layer the largest |K| and |V|.
  std::vector<std::pair<float, float>> kv_amax(std::span<const std::int32_t> tokens,
                                               frugal::any_resource_ref scratch) const;

  /// @brief y = W x for `rows` rows (x: rows x cols, y: rows x W.rows), row arithmetic
  /// independent of `rows`; `dequant` holds W.rows x W.cols floats when W is quantized.
  static void matmul(const matrix& w, const float* x, std::size_t rows, float* y, float* dequant);

  // The weights (public: the example's tests read them to write other formats).
  frugal::tensor<float> token_embedding;  ///< vocab x dim
  frugal::tensor<float> rms_final;        ///< dim
  std::vector<layer_weights> layers;
  std::optional<matrix> classifier;  ///< vocab x dim when not tied to the embedding

 private:
  friend model load(const std::filesystem::path&, frugal::any_resource_ref, const load_options&);
  llama::config config_;
  std::string format_ = "float32";
  std::vector<std::string> kept_float_;
  std::size_t largest_matrix_ = 0;
};

/// @brief Loads llama2.c's legacy .bin (a file) or a Hugging Face folder (config.json +
/// model.safetensors, LlamaForCausalLM tensor names).
/// @throws model_error for a missing, truncated or malformed file, an unsupported config (not
///   llama, heads that do not divide, missing tensors, shapes that disagree)
/// @throws frugal::invalid_argument for an unknown format name
model load(const std::filesystem::path& path, frugal::any_resource_ref memory,
           const load_options& options = {});

/// @brief Rotates pairs (2i, 2i + 1) of each head of `x` (heads x head_dim) by
/// position * theta^(-2i / head_dim): llama2.c's interleaved rotary embedding.
void rope(float* x, std::size_t heads, std::size_t head_dim, std::size_t position, float theta);

/// @brief y = W x for `rows` rows of x (rows x in), W dense (out x in); each row's sums run in
/// the same order whatever `rows` is (tiles of rows share SIMD lanes, not reductions).
void dense_matmul(const float* weights, std::size_t out, std::size_t in, const float* x,
                  std::size_t rows, float* y);

/// @brief x * w / sqrt(mean(x^2) + eps), n values.
void rms_norm(float* out, const float* x, const float* w, std::size_t n, float eps);

}  // namespace llama
