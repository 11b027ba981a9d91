// frugal/sim/models.hpp: model shapes for the serving simulator, from the models' published
// config.json files, and the memory each needs: weights per format, KV per token, activations.
//   const auto& m = frugal::sim::find_model("llama-3-8b");
//   std::size_t kv = m.kv_bytes_per_token(frugal::kv::dtype::fp16);   // 131,072 bytes
#pragma once

#include <frugal/error.hpp>
#include <frugal/kv/layout.hpp>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>

namespace frugal::sim {

/// @brief The shape of a decoder-only transformer, as its Hugging Face config.json gives it.
struct model_shape {
  std::string_view name;
  std::uint32_t num_layers = 0;         ///< num_hidden_layers
  std::uint32_t hidden_size = 0;
  std::uint32_t num_heads = 0;          ///< num_attention_heads
  std::uint32_t num_kv_heads = 0;       ///< num_key_value_heads
  std::uint32_t head_dim = 0;
  std::uint32_t intermediate_size = 0;  ///< of the gated MLP (gate, up, down)
  std::uint32_t vocab_size = 0;
  std::uint32_t max_context = 0;        ///< max_position_embeddings
  bool qkv_bias = false;                ///< biases on the q, k and v projections (Qwen2)
  bool tied_embeddings = false;         ///< lm_head shares the embedding matrix
  std::uint64_t num_parameters = 0;     ///< the published parameter count

  /// @brief Parameters implied by the shape: embeddings, lm_head (unless tied), per layer the
  /// attention projections (and their biases), the gated MLP and two RMSNorms, a final norm.
  /// Equals num_parameters for every preset (tests/batch/simulator.test.cpp checks it).
  constexpr std::uint64_t parameters_from_shape() const noexcept {
    const std::uint64_t h = hidden_size, q = std::uint64_t{num_heads} * head_dim,
                        kv = std::uint64_t{num_kv_heads} * head_dim;
    const std::uint64_t attention = h * q + 2 * h * kv + q * h + (qkv_bias ? q + 2 * kv : 0);
    const std::uint64_t mlp = 3 * h * intermediate_size;
    const std::uint64_t layer = attention + mlp + 2 * h;
    const std::uint64_t embeddings = std::uint64_t{vocab_size} * h * (tied_embeddings ? 1 : 2);
    return num_layers * layer + embeddings + h;
  }

  /// @brief The paged KV layout of this model (K and V of every layer per page).
  constexpr kv::layout kv_layout(kv::dtype dtype, std::uint32_t page_size = 16) const noexcept {
    return {.num_layers = num_layers, .num_kv_heads = num_kv_heads, .head_dim = head_dim,
            .page_size = page_size, .dtype = dtype};
  }
  /// @brief KV bytes one token holds: 2 (K, V) x layers x KV heads x head_dim x element size.
  constexpr std::size_t kv_bytes_per_token(kv::dtype dtype) const noexcept {
    return 2 * std::size_t{num_layers} * num_kv_heads * head_dim * kv::element_bytes(dtype);
  }

  /// @brief Activation bytes per token of a step, a rough model of one layer's live
  /// intermediates (layers run one after another and reuse the memory): the residual stream and
  /// the normed input (2 x hidden), plus the larger of the attention phase (q, k, v and the
  /// attention output) and the MLP phase (gate and up, 2 x intermediate, and their product),
  /// in 16-bit elements.
  constexpr std::size_t activation_bytes_per_token() const noexcept {
    const std::size_t q = std::size_t{num_heads} * head_dim,
                      kv = std::size_t{num_kv_heads} * head_dim;
    const std::size_t attention = q + 2 * kv + hidden_size;
    const std::size_t mlp = 3 * std::size_t{intermediate_size};
    return 2 * (2 * std::size_t{hidden_size} + std::max(attention, mlp));
  }
  /// @brief Bytes of one sampled sequence's logits (fp32 over the vocabulary).
  constexpr std::size_t logits_bytes() const noexcept { return 4 * std::size_t{vocab_size}; }
};

/// @brief The presets, from the published config.json of each model on Hugging Face.
inline constexpr std::array<model_shape, 4> model_presets{{
    // meta-llama/Meta-Llama-3-8B
    {.name = "llama-3-8b", .num_layers = 32, .hidden_size = 4096, .num_heads = 32,
     .num_kv_heads = 8, .head_dim = 128, .intermediate_size = 14336, .vocab_size = 128256,
     .max_context = 8192, .num_parameters = 8'030'261'248},
    // meta-llama/Llama-2-13b-hf (no grouped-query attention: 40 KV heads)
    {.name = "llama-2-13b", .num_layers = 40, .hidden_size = 5120, .num_heads = 40,
     .num_kv_heads = 40, .head_dim = 128, .intermediate_size = 13824, .vocab_size = 32000,
     .max_context = 4096, .num_parameters = 13'015'864'320},
    // mistralai/Mistral-7B-v0.1
    {.name = "mistral-7b", .num_layers = 32, .hidden_size = 4096, .num_heads = 32,
     .num_kv_heads = 8, .head_dim = 128, .intermediate_size = 14336, .vocab_size = 32000,
     .max_context = 32768, .num_parameters = 7'241'732'096},
    // Qwen/Qwen2.5-7B (biases on q, k, v; lm_head not tied)
    {.name = "qwen2.5-7b", .num_layers = 28, .hidden_size = 3584, .num_heads = 28,
     .num_kv_heads = 4, .head_dim = 128, .intermediate_size = 18944, .vocab_size = 152064,
     .max_context = 131072, .qkv_bias = true, .num_parameters = 7'615'616'512},
}};

namespace detail {
template <class Range, class Name>
std::string known_names(const Range& range, Name name) {
  std::string out;
  for (const auto& x : range) {
    if (!out.empty()) out += ", ";
    out += '"';
    out += name(x);
    out += '"';
  }
  return out;
}
}  // namespace detail

/// @brief The preset called `name`.
/// @throws invalid_argument for an unknown name, listing the known ones
inline const model_shape& find_model(std::string_view name) {
  for (const model_shape& m : model_presets)
    if (m.name == name) return m;
  throw invalid_argument("frugal::sim: unknown model \"" + std::string(name) + "\"; known: " +
                         detail::known_names(model_presets, [](const model_shape& m) {
                           return m.name;
                         }));
}

/// @brief The shape in a Hugging Face config.json (num_hidden_layers, hidden_size,
/// num_attention_heads, intermediate_size, vocab_size, max_position_embeddings; optional
/// num_key_value_heads, head_dim, tie_word_embeddings, attention_bias, model_type "qwen2" for
/// q/k/v biases). num_parameters is parameters_from_shape(). The name ("_name_or_path", else
/// the file's folder, else "model_type") is kept for the rest of the process.
/// @throws frugal::error naming the file and the problem: unreadable file, malformed JSON (with
/// line and column), a missing field, a field of the wrong type or out of range
model_shape read_hf_config(const std::filesystem::path& file);

/// @brief As read_hf_config, from the text of a config.json; `source` names it in errors.
model_shape parse_hf_config(std::string_view json, std::string_view source);

/// @brief A weight format and its storage cost in bits per parameter (scales not counted).
struct weight_format {
  std::string_view name;
  std::uint32_t bits = 16;
};
inline constexpr std::array<weight_format, 5> weight_formats{
    {{"fp16", 16}, {"bf16", 16}, {"fp8", 8}, {"int8", 8}, {"int4", 4}}};

/// @brief Bits per parameter of the weight format called `name`.
/// @throws invalid_argument for an unknown name, listing the known ones
inline std::uint32_t weight_bits(std::string_view name) {
  for (const weight_format& f : weight_formats)
    if (f.name == name) return f.bits;
  throw invalid_argument("frugal::sim: unknown weight format \"" + std::string(name) +
                         "\"; known: " +
                         detail::known_names(weight_formats, [](const weight_format& f) {
                           return f.name;
                         }));
}

/// @brief Bytes of the model's weights in format `format`: parameters x bits / 8, rounded up.
inline std::size_t weight_bytes(const model_shape& m, std::string_view format) {
  return static_cast<std::size_t>((m.num_parameters * weight_bits(format) + 7) / 8);
}

}  // namespace frugal::sim
