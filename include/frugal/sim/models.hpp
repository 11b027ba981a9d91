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
#include <vector>

namespace frugal::sim {

/// @brief The shape of a decoder-only transformer, as its Hugging Face config.json gives it:
/// dense or mixture-of-experts MLPs, grouped-query or multi-head latent attention (DeepSeek's
/// MLA), and sliding-window layers beside full-attention ones.
struct model_shape {
  std::string_view name;
  std::string_view model_type;   ///< config.json's model_type ("llama", "mixtral", ...)
  std::uint32_t num_layers = 0;  ///< num_hidden_layers
  std::uint32_t hidden_size = 0;
  std::uint32_t num_heads = 0;          ///< num_attention_heads
  std::uint32_t num_kv_heads = 0;       ///< num_key_value_heads
  std::uint32_t head_dim = 0;           ///< of q and k (MLA: qk_nope_head_dim + qk_rope_head_dim)
  std::uint32_t intermediate_size = 0;  ///< of the dense gated MLP (gate, up, down)
  std::uint32_t vocab_size = 0;
  std::uint32_t max_context = 0;      ///< max_position_embeddings
  bool qkv_bias = false;              ///< biases on the q, k and v projections (Qwen2)
  bool o_bias = false;                ///< a bias on the output projection (attention_bias)
  bool qk_norm = false;               ///< RMSNorms of head_dim on q and k (Qwen3, Gemma-3)
  std::uint32_t norms_per_layer = 2;  ///< RMSNorms of hidden_size per layer (Gemma-2: 4)
  bool tied_embeddings = false;       ///< lm_head shares the embedding matrix
  std::uint64_t num_parameters = 0;   ///< the parameter count (parameters_from_shape())

  // ---- mixture of experts: num_experts == 0 means every layer has the dense MLP -----------
  std::uint32_t num_experts = 0;               ///< routed experts of each MoE layer
  std::uint32_t experts_per_token = 0;         ///< routed experts a token runs through
  std::uint32_t expert_intermediate_size = 0;  ///< of each routed expert's gated MLP
  std::uint32_t shared_intermediate_size = 0;  ///< of the shared experts together (0: none)
  bool shared_expert_gate = false;   ///< a hidden -> 1 gate on the shared expert (Qwen2-MoE)
  bool router_bias = false;          ///< a per-expert score bias in the router (DeepSeek-V3)
  std::uint32_t num_moe_layers = 0;  ///< layers with experts; the others have the dense MLP

  // ---- multi-head latent attention (DeepSeek-V2/V3): kv_lora_rank == 0 means none ---------
  std::uint32_t kv_lora_rank = 0;      ///< the cached latent's size
  std::uint32_t q_lora_rank = 0;       ///< 0: q is projected directly from the hidden state
  std::uint32_t qk_rope_head_dim = 0;  ///< the rotary part of q and k (cached beside the latent)
  std::uint32_t v_head_dim = 0;

  // ---- sliding-window attention: window_layers of the layers attend to the last tokens ----
  std::uint32_t sliding_window = 0;  ///< tokens a windowed layer attends to (0: no window)
  std::uint32_t window_layers = 0;   ///< layers with the window; the others attend to all

  /// @brief Parameters of one layer's attention: the projections, their biases and norms.
  constexpr std::uint64_t attention_parameters() const noexcept {
    const std::uint64_t h = hidden_size, heads = num_heads;
    if (kv_lora_rank != 0) {
      const std::uint64_t q_head = head_dim, rope = qk_rope_head_dim, latent = kv_lora_rank;
      const std::uint64_t q = q_lora_rank != 0
                                  ? h * q_lora_rank + q_lora_rank + q_lora_rank * heads * q_head
                                  : h * heads * q_head;
      const std::uint64_t kv_a = h * (latent + rope) + latent;  // projection and its norm
      const std::uint64_t kv_b = latent * heads * (q_head - rope + v_head_dim);
      return q + kv_a + kv_b + heads * v_head_dim * h + (o_bias ? h : 0);
    }
    const std::uint64_t q = heads * head_dim, kv = std::uint64_t{num_kv_heads} * head_dim;
    return h * q + 2 * h * kv + q * h + (qkv_bias ? q + 2 * kv : 0) + (o_bias ? h : 0) +
           (qk_norm ? 2 * std::uint64_t{head_dim} : 0);
  }
  /// @brief Parameters of one MoE layer's MLP when `experts` routed experts are counted: those
  /// experts, the shared experts (and their gate) and the router.
  constexpr std::uint64_t moe_parameters(std::uint64_t experts) const noexcept {
    const std::uint64_t h = hidden_size;
    return experts * 3 * h * expert_intermediate_size + 3 * h * shared_intermediate_size +
           (shared_expert_gate ? h : 0) + std::uint64_t{num_experts} * h +
           (router_bias ? num_experts : 0);
  }
  /// @brief Parameters implied by the shape: embeddings, lm_head (unless tied), per layer the
  /// attention, the MLP (dense, or every expert's) and the norms, and a final norm.
  /// Equals num_parameters for every preset (tests/batch/simulator.test.cpp checks it).
  constexpr std::uint64_t parameters_from_shape() const noexcept {
    return parameters_with_experts(num_experts);
  }
  /// @brief Parameters one token runs through: as parameters_from_shape(), with only
  /// experts_per_token routed experts of each MoE layer (the embeddings counted once).
  constexpr std::uint64_t active_parameters() const noexcept {
    return parameters_with_experts(experts_per_token);
  }
  constexpr std::uint64_t parameters_with_experts(std::uint64_t experts) const noexcept {
    const std::uint64_t h = hidden_size;
    const std::uint64_t dense_layers = num_layers - num_moe_layers;
    const std::uint64_t layers = num_layers * (attention_parameters() + norms_per_layer * h) +
                                 dense_layers * 3 * h * intermediate_size +
                                 num_moe_layers * moe_parameters(experts);
    const std::uint64_t embeddings = std::uint64_t{vocab_size} * h * (tied_embeddings ? 1 : 2);
    return layers + embeddings + h;
  }

  /// @brief Elements one token keeps in one layer's cache: K and V of every KV head (MLA: the
  /// latent and the rotary key, one per token).
  constexpr std::size_t kv_elements_per_layer() const noexcept {
    return kv_lora_rank != 0 ? std::size_t{kv_lora_rank} + qk_rope_head_dim
                             : 2 * std::size_t{num_kv_heads} * head_dim;
  }
  /// @brief The paged KV layout of this model (K and V of every layer per page). MLA caches one
  /// latent per token, laid out as one "head" of half its size for K and for V: the bytes match.
  constexpr kv::layout kv_layout(kv::dtype dtype, std::uint32_t page_size = 16) const noexcept {
    if (kv_lora_rank != 0)
      return {.num_layers = num_layers,
              .num_kv_heads = 1,
              .head_dim = static_cast<std::uint32_t>(kv_elements_per_layer() / 2),
              .page_size = page_size,
              .dtype = dtype};
    return {.num_layers = num_layers,
            .num_kv_heads = num_kv_heads,
            .head_dim = head_dim,
            .page_size = page_size,
            .dtype = dtype};
  }
  /// @brief KV bytes one token holds while it is inside every window: over all layers, 2 (K, V)
  /// x KV heads x head_dim x element size each (MLA: kv_lora_rank + qk_rope_head_dim).
  constexpr std::size_t kv_bytes_per_token(kv::dtype dtype) const noexcept {
    return num_layers * kv_elements_per_layer() * kv::element_bytes(dtype);
  }
  /// @brief KV bytes of one sequence of `tokens` tokens held in pages of `page_size` tokens
  /// (1: token by token, as a contiguous reservation): full-attention layers hold every token's
  /// pages; a sliding-window layer at most the pages of its window plus one (the window's first
  /// page is partly behind it), ceil(sliding_window / page_size) + 1.
  constexpr std::size_t kv_bytes_per_sequence(kv::dtype dtype, std::size_t tokens,
                                              std::uint32_t page_size = 1) const noexcept {
    const std::size_t p = page_size == 0 ? 1 : page_size;
    const std::size_t pages = (tokens + p - 1) / p;
    const std::size_t window_pages =
        sliding_window == 0 ? pages
                            : std::min<std::size_t>(pages, (sliding_window + p - 1) / p + 1);
    const std::size_t layer_token = kv_elements_per_layer() * kv::element_bytes(dtype);
    return ((num_layers - window_layers) * pages + std::size_t{window_layers} * window_pages) * p *
           layer_token;
  }

  /// @brief Activation bytes per token of a step, a rough model of one layer's live
  /// intermediates (layers run one after another and reuse the memory): the residual stream and
  /// the normed input (2 x hidden), plus the larger of the attention phase (q, k, v and the
  /// attention output) and the MLP phase (gate and up, 2 x intermediate, and their product; of
  /// the experts a token runs through and the shared ones, in an MoE layer), in 16-bit elements.
  constexpr std::size_t activation_bytes_per_token() const noexcept {
    const std::size_t q = std::size_t{num_heads} * head_dim,
                      kv = std::size_t{num_kv_heads} * head_dim;
    const std::size_t attention = q + 2 * kv + hidden_size;
    const std::size_t moe_intermediate =
        std::size_t{experts_per_token} * expert_intermediate_size + shared_intermediate_size;
    const std::size_t mlp =
        3 * std::max<std::size_t>(num_moe_layers < num_layers ? intermediate_size : 0,
                                  num_moe_layers != 0 ? moe_intermediate : 0);
    return 2 * (2 * std::size_t{hidden_size} + std::max(attention, mlp));
  }
  /// @brief Bytes of one sampled sequence's logits (fp32 over the vocabulary).
  constexpr std::size_t logits_bytes() const noexcept { return 4 * std::size_t{vocab_size}; }
};

/// @brief The presets, from the published config.json of each model on Hugging Face. The
/// published parameter counts are checked against these shapes in tests/batch/simulator.test.cpp.
inline constexpr std::array<model_shape, 8> model_presets{{
    // meta-llama/Meta-Llama-3-8B
    {.name = "llama-3-8b",
     .model_type = "llama",
     .num_layers = 32,
     .hidden_size = 4096,
     .num_heads = 32,
     .num_kv_heads = 8,
     .head_dim = 128,
     .intermediate_size = 14336,
     .vocab_size = 128256,
     .max_context = 8192,
     .num_parameters = 8'030'261'248},
    // meta-llama/Llama-2-13b-hf (no grouped-query attention: 40 KV heads)
    {.name = "llama-2-13b",
     .model_type = "llama",
     .num_layers = 40,
     .hidden_size = 5120,
     .num_heads = 40,
     .num_kv_heads = 40,
     .head_dim = 128,
     .intermediate_size = 13824,
     .vocab_size = 32000,
     .max_context = 4096,
     .num_parameters = 13'015'864'320},
    // mistralai/Mistral-7B-v0.1 (sliding_window 4096 on every layer)
    {.name = "mistral-7b",
     .model_type = "mistral",
     .num_layers = 32,
     .hidden_size = 4096,
     .num_heads = 32,
     .num_kv_heads = 8,
     .head_dim = 128,
     .intermediate_size = 14336,
     .vocab_size = 32000,
     .max_context = 32768,
     .num_parameters = 7'241'732'096,
     .sliding_window = 4096,
     .window_layers = 32},
    // Qwen/Qwen2.5-7B (biases on q, k, v; lm_head not tied)
    {.name = "qwen2.5-7b",
     .model_type = "qwen2",
     .num_layers = 28,
     .hidden_size = 3584,
     .num_heads = 28,
     .num_kv_heads = 4,
     .head_dim = 128,
     .intermediate_size = 18944,
     .vocab_size = 152064,
     .max_context = 131072,
     .qkv_bias = true,
     .num_parameters = 7'615'616'512},
    // Qwen/Qwen2.5-72B (use_sliding_window false: every layer attends to all tokens)
    {.name = "qwen2.5-72b",
     .model_type = "qwen2",
     .num_layers = 80,
     .hidden_size = 8192,
     .num_heads = 64,
     .num_kv_heads = 8,
     .head_dim = 128,
     .intermediate_size = 29568,
     .vocab_size = 152064,
     .max_context = 131072,
     .qkv_bias = true,
     .num_parameters = 72'706'203'648},
    // mistralai/Mixtral-8x7B-v0.1 (8 experts of 14336, 2 per token, in every layer)
    {.name = "mixtral-8x7b",
     .model_type = "mixtral",
     .num_layers = 32,
     .hidden_size = 4096,
     .num_heads = 32,
     .num_kv_heads = 8,
     .head_dim = 128,
     .intermediate_size = 14336,
     .vocab_size = 32000,
     .max_context = 32768,
     .num_parameters = 46'702'792'704,
     .num_experts = 8,
     .experts_per_token = 2,
     .expert_intermediate_size = 14336,
     .num_moe_layers = 32},
    // google/gemma-2-9b (head_dim 256, 4 norms per layer, tied embeddings, a 4096-token window
    // on every other layer)
    {.name = "gemma-2-9b",
     .model_type = "gemma2",
     .num_layers = 42,
     .hidden_size = 3584,
     .num_heads = 16,
     .num_kv_heads = 8,
     .head_dim = 256,
     .intermediate_size = 14336,
     .vocab_size = 256000,
     .max_context = 8192,
     .norms_per_layer = 4,
     .tied_embeddings = true,
     .num_parameters = 9'241'705'984,
     .sliding_window = 4096,
     .window_layers = 21},
    // deepseek-ai/DeepSeek-V2-Lite (MLA with a 512 latent; 64 routed experts of 1408, 6 per
    // token, 2 shared, in every layer but the first)
    {.name = "deepseek-v2-lite",
     .model_type = "deepseek_v2",
     .num_layers = 27,
     .hidden_size = 2048,
     .num_heads = 16,
     .num_kv_heads = 16,
     .head_dim = 192,
     .intermediate_size = 10944,
     .vocab_size = 102400,
     .max_context = 163840,
     .num_parameters = 15'706'484'224,
     .num_experts = 64,
     .experts_per_token = 6,
     .expert_intermediate_size = 1408,
     .shared_intermediate_size = 2 * 1408,
     .num_moe_layers = 26,
     .kv_lora_rank = 512,
     .qk_rope_head_dim = 64,
     .v_head_dim = 128},
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

/// Name tables of an enum: arrays of entries with a `kind` (the enumerator) and a `name`.
/// The entry of `table` for `kind` (the first entry for a value no entry has).
template <class Table, class Kind>
const auto& entry_of(const Table& table, Kind kind) noexcept {
  for (const auto& e : table)
    if (e.kind == kind) return e;
  return table.front();
}

/// The kind of the entry of `table` called `name`.
/// @throws invalid_argument "frugal::sim: unknown WHAT "NAME"; known: ..." listing the table
template <class Table>
auto kind_named(const Table& table, std::string_view name, std::string_view what) {
  for (const auto& e : table)
    if (e.name == name) return e.kind;
  FRUGAL_FAIL("frugal::sim: unknown " + std::string(what) + " \"" + std::string(name) +
                  "\"; known: " + known_names(table, [](const auto& e) { return e.name; }),
              invalid_argument);
}

/// The names of `table`, in its order.
template <class Table>
std::vector<std::string> names_of(const Table& table) {
  std::vector<std::string> names;
  for (const auto& e : table) names.emplace_back(e.name);
  return names;
}
}  // namespace detail

/// @brief The preset called `name`.
/// @throws invalid_argument for an unknown name, listing the known ones
inline const model_shape& find_model(std::string_view name) {
  for (const model_shape& m : model_presets)
    if (m.name == name) return m;
  FRUGAL_FAIL("frugal::sim: unknown model \"" + std::string(name) + "\"; known: " +
                  detail::known_names(model_presets, [](const model_shape& m) { return m.name; }),
              invalid_argument);
}

/// @brief The shape in a Hugging Face config.json. Supported model_type values: llama, mistral,
/// mixtral, qwen2, qwen2_moe, qwen3, qwen3_moe, gemma, gemma2, gemma3 (gemma3_text), deepseek,
/// deepseek_v2, deepseek_v3; anything else (an encoder such as bert) is refused. Required:
/// num_hidden_layers, hidden_size, num_attention_heads, intermediate_size, vocab_size,
/// max_position_embeddings; optional: num_key_value_heads, head_dim, attention_bias,
/// tie_word_embeddings (default: the type's config class: tied for Gemma, untied otherwise),
/// the type's expert fields (num_local_experts; num_experts, moe_intermediate_size,
/// shared_expert_intermediate_size, decoder_sparse_step, mlp_only_layers; n_routed_experts,
/// n_shared_experts, first_k_dense_replace, moe_layer_freq; num_experts_per_tok), DeepSeek's
/// MLA fields (kv_lora_rank, q_lora_rank, qk_nope_head_dim, qk_rope_head_dim, v_head_dim) and
/// the window (sliding_window with layer_types, sliding_window_pattern, or Qwen's
/// use_sliding_window and max_window_layers). num_parameters is parameters_from_shape(). The
/// name ("_name_or_path", else "model_type") is kept for the rest of the process.
/// @throws frugal::error naming the file and the problem: unreadable file, malformed JSON (with
/// line and column), a missing field, a field of the wrong type or out of range, a model_type
/// frugal does not model, expert fields the type does not define
model_shape read_hf_config(const std::filesystem::path& file);

/// @brief As read_hf_config, from the text of a config.json; `source` names it in errors.
model_shape parse_hf_config(std::string_view json, std::string_view source);

/// @brief The weight formats the simulator prices by their bits per parameter.
enum class weight_format : std::uint8_t { fp16, bf16, fp8, int8, int4 };

/// @brief A weight format, its name and its storage cost in bits per parameter (scales not
/// counted).
struct weight_format_spec {
  weight_format kind;
  std::string_view name;
  std::uint32_t bits = 16;
};
inline constexpr std::array<weight_format_spec, 5> weight_formats{
    {{weight_format::fp16, "fp16", 16},
     {weight_format::bf16, "bf16", 16},
     {weight_format::fp8, "fp8", 8},
     {weight_format::int8, "int8", 8},
     {weight_format::int4, "int4", 4}}};

/// @brief The entry of weight_formats for `f`.
inline const weight_format_spec& spec_of(weight_format f) noexcept {
  return detail::entry_of(weight_formats, f);
}

/// @brief "fp16", "bf16", "fp8", "int8" or "int4".
inline std::string_view to_string(weight_format f) noexcept { return spec_of(f).name; }

/// @brief The weight format called `name` (as to_string writes it).
/// @throws invalid_argument for an unknown name, listing the known ones
inline weight_format parse_weight_format(std::string_view name) {
  return detail::kind_named(weight_formats, name, "weight format");
}

/// @brief Bits per parameter of weight format `f`.
inline std::uint32_t weight_bits(weight_format f) noexcept { return spec_of(f).bits; }

/// @brief Bytes of the model's weights in format `f`: parameters x bits / 8, rounded up.
inline std::size_t weight_bytes(const model_shape& m, weight_format f) noexcept {
  return static_cast<std::size_t>((m.num_parameters * weight_bits(f) + 7) / 8);
}

}  // namespace frugal::sim
