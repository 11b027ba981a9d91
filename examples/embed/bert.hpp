// examples/embed/bert.hpp: a BERT sentence encoder on the CPU (embeddings, post-LayerNorm
// layers, GELU, mean pooling over real tokens, L2 normalisation). Weights live in a frugal
// resource, the 2-D projections optionally quantized at load; a batch's activations come from a
// batch::workspace sized to that batch's tokens.
//   frugal::host_resource host;
//   frugal::pool_resource pool{frugal::host_resource{}};
//   embed::bert_model model{dir, pool};                           // float32 weights
//   frugal::batch::workspace ws{host, {.bytes_per_token = model.bytes_per_token()}};
//   model.embed(batch, ws, out);                       // out: batch.size() x hidden floats
#pragma once

#include <frugal/batch/workspace.hpp>
#include <frugal/mr/resource_ref.hpp>
#include <frugal/quant/format.hpp>
#include <frugal/quant/quantized_tensor.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace embed {

/// @brief The fields of a Hugging Face BERT config.json that the forward uses.
struct bert_config {
  std::size_t vocab_size = 0, hidden = 0, layers = 0, heads = 0, intermediate = 0;
  std::size_t max_positions = 0, type_vocab_size = 0;
  double layer_norm_eps = 1e-12;

  /// @brief Reads and checks `path`.
  /// @throws frugal::error naming the file when it is missing or not JSON, when model_type is
  ///   not "bert", hidden_act not "gelu", position_embedding_type not "absolute", or a size is
  ///   missing, zero, or inconsistent (hidden not a multiple of heads).
  static bert_config from_file(const std::filesystem::path& path);
};

/// @brief The six projection matrices of a layer, the unit of a per-kind quantization plan.
enum class matrix_kind : std::uint8_t { query, key, value, attention_output, intermediate, output };
inline constexpr std::size_t matrix_kind_count = 6;
std::string_view to_string(matrix_kind k) noexcept;

/// @brief A format per matrix kind; std::nullopt keeps float32.
using weight_plan = std::array<std::optional<frugal::quant::format>, matrix_kind_count>;
/// @brief The same format for every kind.
weight_plan uniform_plan(std::optional<frugal::quant::format> f);

/// @brief One sequence of a batch: its token ids, computed as `length` >= ids.size() positions
/// (the extra positions are [PAD], masked out of attention and pooling: the padded baseline).
struct sequence {
  std::span<const std::int32_t> ids;
  std::size_t length = 0;
};

class bert_model {
 public:
  /// @brief Loads config.json and model.safetensors from `dir`, weights allocated from `weights`
  /// (which must outlive the model), the projections quantized as `plan` says.
  /// @throws frugal::error for a bad config (see bert_config), a missing or malformed
  ///   model.safetensors, or a missing or mis-shaped tensor.
  bert_model(const std::filesystem::path& dir, frugal::any_resource_ref weights,
             const weight_plan& plan = {});
  bert_model(const bert_model&) = delete;
  bert_model& operator=(const bert_model&) = delete;
  ~bert_model();

  const bert_config& config() const noexcept { return config_; }
  std::size_t hidden() const noexcept { return config_.hidden; }
  /// @brief Activation bytes per computed token (what workspace_options::bytes_per_token takes).
  std::size_t bytes_per_token() const noexcept;
  /// @brief Per-batch bytes not proportional to tokens (score rows, a dequantization buffer),
  /// for sequences of at most `max_length` tokens and `threads` workers.
  std::size_t extra_bytes(std::size_t max_length, unsigned threads) const noexcept;

  /// @brief Embeds `batch` (every sequence 1..max_positions ids) into `out` (batch.size() x
  /// hidden(), L2-normalised), activations from one step of `ws`. The result for a sequence does
  /// not depend on the rest of the batch, its padding, or `threads`.
  /// @throws frugal::invalid_argument for an empty or too long sequence, an id outside the
  ///   vocabulary, or a wrong output size; out_of_memory when the workspace refuses.
  void embed(std::span<const sequence> batch, frugal::batch::workspace& ws, std::span<float> out,
             unsigned threads = 1) const;

  /// @brief Bytes of every weight as stored (quantized projections at their layout size).
  std::size_t weight_bytes() const noexcept { return weight_bytes_; }
  /// @brief Bytes and element count of the 2-D projections as stored.
  std::size_t projection_bytes() const noexcept { return projection_bytes_; }
  std::size_t projection_elements() const noexcept { return projection_elements_; }
  /// @brief Projections the plan asked to quantize whose shape the format cannot hold (kept
  /// float32), as "encoder.layer.N....weight: reason".
  const std::vector<std::string>& kept_float() const noexcept { return kept_float_; }

 private:
  struct linear {
    std::size_t rows = 0, cols = 0;             // out x in
    const float* weight = nullptr;              // float32 weights, or
    frugal::quant::quantized_tensor quantized;  // the quantized ones
    const float* bias = nullptr;
  };
  struct layer {
    std::array<linear, matrix_kind_count> proj;
    const float *attention_norm_weight = nullptr, *attention_norm_bias = nullptr;
    const float *output_norm_weight = nullptr, *output_norm_bias = nullptr;
  };
  struct allocation {
    void* p;
    std::size_t bytes;
  };

  void release() noexcept;
  const float* load(const void* file, const std::string& name, std::vector<std::size_t> shape);
  void apply(const linear& l, const float* x, std::size_t tokens, float* y, float* scratch,
             unsigned threads) const;

  bert_config config_;
  frugal::any_resource_ref weights_;
  std::vector<allocation> allocations_;
  const float *word_embeddings_ = nullptr, *position_embeddings_ = nullptr;
  const float* token_type_embeddings_ = nullptr;
  const float *embedding_norm_weight_ = nullptr, *embedding_norm_bias_ = nullptr;
  std::vector<layer> layers_;
  std::size_t weight_bytes_ = 0, projection_bytes_ = 0, projection_elements_ = 0;
  std::size_t largest_projection_ = 0;
  bool any_quantized_ = false;
  std::vector<std::string> kept_float_;
};

}  // namespace embed
