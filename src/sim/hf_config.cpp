// Reads a model's shape from a Hugging Face config.json (Llama, Mistral, Mixtral, Qwen2/3 and
// their MoE, Gemma 1-3, DeepSeek), so the simulator and the frugal program can size models that
// are not presets. Other model types (encoders among them) are refused by name.
#include <frugal/sim/models.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <deque>
#include <fstream>
#include <limits>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

namespace frugal::sim {
namespace {

using json = nlohmann::json;

/// Names of models read at run time; model_shape::name views one of them for the process's life.
std::string_view keep_name(std::string name) {
  static std::mutex mutex;
  static std::deque<std::string> names;  // a deque never moves its elements
  const std::lock_guard lock(mutex);
  for (const std::string& n : names)
    if (n == name) return n;
  return names.emplace_back(std::move(name));
}

[[noreturn]] void fail(std::string_view source, const std::string& problem) {
  FRUGAL_FAIL_AT(source, problem, error);
}

/// The positive integer field `key`; `fallback` when absent and fallback != 0.
std::uint32_t count(const json& j, std::string_view source, const char* key,
                    std::uint32_t fallback = 0) {
  const auto it = j.find(key);
  if (it == j.end() || (it->is_null() && fallback != 0)) {
    if (fallback != 0) return fallback;
    fail(source, std::string("missing field \"") + key + "\"");
  }
  if (!it->is_number_integer())
    fail(source, std::string("field \"") + key + "\" must be an integer, not " +
                     std::string(it->type_name()) + " (" + it->dump() + ")");
  if (!it->is_number_unsigned() || it->get<std::uint64_t>() == 0 ||
      it->get<std::uint64_t>() > std::numeric_limits<std::uint32_t>::max())
    fail(source,
         std::string("field \"") + key + "\" must be a positive 32-bit integer, not " + it->dump());
  return static_cast<std::uint32_t>(it->get<std::uint64_t>());
}

bool flag(const json& j, std::string_view source, const char* key, bool fallback) {
  const auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  if (!it->is_boolean())
    fail(source, std::string("field \"") + key + "\" must be true or false, not " +
                     std::string(it->type_name()) + " (" + it->dump() + ")");
  return it->get<bool>();
}

std::string text(const json& j, const char* key) {
  const auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

/// Whether `key` is present with a value (null counts as absent, as Hugging Face writes unset).
bool has(const json& j, const char* key) {
  const auto it = j.find(key);
  return it != j.end() && !it->is_null();
}

/// The non-negative integer field `key`, `fallback` when absent or null.
std::uint32_t count_or_zero(const json& j, std::string_view source, const char* key,
                            std::uint32_t fallback = 0) {
  if (!has(j, key)) return fallback;
  const json& v = j.at(key);
  if (!v.is_number_unsigned() || v.get<std::uint64_t>() > std::numeric_limits<std::uint32_t>::max())
    fail(source, std::string("field \"") + key + "\" must be a 32-bit integer of 0 or more, not " +
                     v.dump());
  return static_cast<std::uint32_t>(v.get<std::uint64_t>());
}

/// What a model type's Hugging Face config class and modeling code fix, which config.json
/// leaves out: the default of tie_word_embeddings, biases, norms, and how the type writes its
/// experts and its sliding-window layers.
enum class experts_style { none, mixtral, qwen, deepseek };
enum class window_style { none, every_layer, qwen, alternate };
struct type_rules {
  std::string_view type;
  bool tied = false;        ///< tie_word_embeddings' default in the config class
  bool qkv_bias = false;    ///< q/k/v biases whatever attention_bias says (Qwen2)
  bool qk_norm = false;     ///< q_norm and k_norm of head_dim
  std::uint32_t norms = 2;  ///< RMSNorms of hidden_size per layer
  experts_style experts = experts_style::none;
  window_style window = window_style::none;
  std::uint32_t window_pattern = 0;  ///< alternate: every this many layers one is global
};
constexpr type_rules supported_types[] = {
    {.type = "llama"},
    {.type = "mistral", .window = window_style::every_layer},
    {.type = "mixtral", .experts = experts_style::mixtral, .window = window_style::every_layer},
    {.type = "qwen2", .qkv_bias = true, .window = window_style::qwen},
    {.type = "qwen2_moe",
     .qkv_bias = true,
     .experts = experts_style::qwen,
     .window = window_style::qwen},
    {.type = "qwen3", .qk_norm = true, .window = window_style::qwen},
    {.type = "qwen3_moe",
     .qk_norm = true,
     .experts = experts_style::qwen,
     .window = window_style::qwen},
    {.type = "gemma", .tied = true},
    {.type = "gemma2",
     .tied = true,
     .norms = 4,
     .window = window_style::alternate,
     .window_pattern = 2},
    {.type = "gemma3_text",
     .tied = true,
     .qk_norm = true,
     .norms = 4,
     .window = window_style::alternate,
     .window_pattern = 6},
    {.type = "deepseek", .experts = experts_style::deepseek},
    {.type = "deepseek_v2", .experts = experts_style::deepseek},
    {.type = "deepseek_v3", .experts = experts_style::deepseek},
};

std::string supported_type_names() {
  std::string out;
  for (const type_rules& t : supported_types)
    out += (out.empty() ? "" : ", ") + std::string(t.type);
  return out;
}

/// Layers that have experts: every decoder_sparse_step-th layer not in mlp_only_layers (Qwen
/// MoE), or every moe_layer_freq-th layer from first_k_dense_replace on (DeepSeek).
std::uint32_t moe_layer_count(const json& j, std::string_view source, experts_style style,
                              std::uint32_t layers) {
  std::uint32_t moe = 0;
  if (style == experts_style::mixtral) return layers;
  if (style == experts_style::qwen) {
    const std::uint32_t step = count_or_zero(j, source, "decoder_sparse_step", 1);
    if (step == 0) fail(source, "field \"decoder_sparse_step\" must be positive");
    std::vector<std::uint64_t> dense;
    if (has(j, "mlp_only_layers")) {
      const json& list = j.at("mlp_only_layers");
      if (!list.is_array())
        fail(source, "field \"mlp_only_layers\" must be a list of layer numbers");
      for (const json& x : list) {
        if (!x.is_number_unsigned())
          fail(source,
               "field \"mlp_only_layers\" must be a list of layer numbers, not " + list.dump());
        dense.push_back(x.get<std::uint64_t>());
      }
    }
    for (std::uint32_t i = 0; i < layers; ++i)
      if (std::find(dense.begin(), dense.end(), i) == dense.end() && (i + 1) % step == 0) ++moe;
    return moe;
  }
  const std::uint32_t first_dense = count_or_zero(j, source, "first_k_dense_replace", 0);
  const std::uint32_t freq = count_or_zero(j, source, "moe_layer_freq", 1);
  if (freq == 0) fail(source, "field \"moe_layer_freq\" must be positive");
  for (std::uint32_t i = first_dense; i < layers; ++i)
    if (i % freq == 0) ++moe;
  return moe;
}

/// Keys that describe experts (anything naming "expert", "moe_..." or "n_routed_...").
bool is_expert_key(const std::string& key) {
  return key.find("expert") != std::string::npos || key.starts_with("moe_") ||
         key.starts_with("n_routed") || key.starts_with("n_shared");
}

/// The experts of `m` as the type writes them; refuses expert fields the type does not define.
void read_experts(const json& j, std::string_view source, const type_rules& rules, model_shape& m) {
  std::vector<std::string> read;
  const auto take = [&](const char* key, std::uint32_t fallback = 0, bool required = true) {
    read.emplace_back(key);
    if (!has(j, key) && required && fallback == 0)
      fail(source, "model_type \"" + std::string(rules.type) + "\" with experts needs field \"" +
                       key + "\"");
    return count_or_zero(j, source, key, fallback);
  };
  switch (rules.experts) {
    case experts_style::none:
      break;
    case experts_style::mixtral:
      m.num_experts = take("num_local_experts");
      m.experts_per_token = take("num_experts_per_tok");
      m.expert_intermediate_size = m.intermediate_size;
      break;
    case experts_style::qwen:
      m.num_experts = take("num_experts");
      m.experts_per_token = take("num_experts_per_tok");
      m.expert_intermediate_size = take("moe_intermediate_size");
      m.shared_intermediate_size = take("shared_expert_intermediate_size", 0, false);
      m.shared_expert_gate = m.shared_intermediate_size != 0;
      read.emplace_back("decoder_sparse_step");
      break;
    case experts_style::deepseek:
      // DeepSeek's configs write n_routed_experts null for a dense model.
      read.insert(read.end(), {"n_routed_experts", "n_shared_experts", "moe_intermediate_size",
                               "moe_layer_freq", "num_experts_per_tok"});
      if (!has(j, "n_routed_experts")) break;
      m.num_experts = take("n_routed_experts");
      m.experts_per_token = take("num_experts_per_tok");
      m.expert_intermediate_size = take("moe_intermediate_size");
      m.shared_intermediate_size = take("n_shared_experts", 0, false) * m.expert_intermediate_size;
      // DeepSeek-V3's noaux_tc routing adds a score bias per expert.
      m.router_bias = text(j, "topk_method") == "noaux_tc";
      break;
  }
  std::string unknown;
  for (const auto& [key, value] : j.items())
    if (!value.is_null() && is_expert_key(key) &&
        std::find(read.begin(), read.end(), key) == read.end())
      unknown += (unknown.empty() ? "\"" : ", \"") + key + "\"";
  if (!unknown.empty())
    fail(source, "has mixture-of-experts fields frugal does not read for model_type \"" +
                     std::string(rules.type) + "\" (" + unknown +
                     "); refusing to size it as a dense model");
  if (m.num_experts == 0) return;
  if (m.experts_per_token > m.num_experts)
    fail(source, "num_experts_per_tok " + std::to_string(m.experts_per_token) + " exceeds the " +
                     std::to_string(m.num_experts) + " experts");
  m.num_moe_layers = moe_layer_count(j, source, rules.experts, m.num_layers);
}

/// The sliding window and how many layers have it, from layer_types when given, else as the
/// type's modeling code places windowed layers.
void read_window(const json& j, std::string_view source, const type_rules& rules, model_shape& m) {
  if (has(j, "layer_types")) {
    const json& list = j.at("layer_types");
    if (!list.is_array() || list.size() != m.num_layers)
      fail(source, "field \"layer_types\" must list one type per layer (" +
                       std::to_string(m.num_layers) + ")");
    std::uint32_t windowed = 0;
    for (const json& x : list) {
      const std::string t = x.is_string() ? x.get<std::string>() : x.dump();
      if (t == "sliding_attention") {
        ++windowed;
      } else if (t != "full_attention") {
        fail(source, "layer type \"" + t +
                         "\" is not modelled (known: full_attention, "
                         "sliding_attention)");
      }
    }
    m.window_layers = windowed;
    m.sliding_window = windowed != 0 ? count(j, source, "sliding_window") : 0;
    return;
  }
  std::uint32_t windowed = 0;
  switch (rules.window) {
    case window_style::none:
      return;
    case window_style::every_layer:
      windowed = m.num_layers;
      break;
    case window_style::qwen:
      // Qwen2's layers from max_window_layers on use the window, when use_sliding_window.
      if (!flag(j, source, "use_sliding_window", false)) return;
      windowed =
          m.num_layers - std::min(m.num_layers, count_or_zero(j, source, "max_window_layers", 0));
      break;
    case window_style::alternate: {
      // Of every `pattern` layers the last attends to all tokens, the others to the window.
      const std::uint32_t pattern =
          count_or_zero(j, source, "sliding_window_pattern", rules.window_pattern);
      if (pattern == 0) fail(source, "field \"sliding_window_pattern\" must be positive");
      windowed = m.num_layers - m.num_layers / pattern;
      break;
    }
  }
  if (!has(j, "sliding_window") || windowed == 0) return;
  m.sliding_window = count(j, source, "sliding_window");
  m.window_layers = windowed;
}

}  // namespace

model_shape parse_hf_config(std::string_view text_in, std::string_view source) {
  json j;
  try {
    j = json::parse(text_in);
  } catch (const json::parse_error& e) {
    // e.what() reads "[json.exception.parse_error.101] parse error at line 3, column 5: ...".
    std::string what = e.what();
    const auto at = what.find("parse error");
    fail(source, "malformed JSON: " + (at == std::string::npos ? what : what.substr(at)));
  }
  if (!j.is_object()) fail(source, std::string("expected a JSON object, found ") + j.type_name());
  const std::string name_or_path = text(j, "_name_or_path");
  std::string type = text(j, "model_type");
  // Multimodal configs nest the language model under "text_config"; a tie_word_embeddings
  // beside it applies to the whole model.
  const json outer = j;
  if (!j.contains("num_hidden_layers") && j.contains("text_config") &&
      j["text_config"].is_object()) {
    j = j["text_config"];
    const std::string inner = text(j, "model_type");
    type = !inner.empty() ? inner : type + "_text";
  }
  if (type == "gemma3") type = "gemma3_text";
  if (type.empty())
    fail(source, "has no \"model_type\"; frugal sizes the decoder types " + supported_type_names());
  const type_rules* rules = nullptr;
  for (const type_rules& t : supported_types)
    if (t.type == type) rules = &t;
  if (rules == nullptr)
    fail(source, "model_type \"" + type + "\" is not a decoder frugal models (supported: " +
                     supported_type_names() + ")");

  model_shape m;
  m.model_type = keep_name(type);
  m.num_layers = count(j, source, "num_hidden_layers");
  m.hidden_size = count(j, source, "hidden_size");
  m.num_heads = count(j, source, "num_attention_heads");
  m.num_kv_heads = count(j, source, "num_key_value_heads", m.num_heads);
  m.kv_lora_rank = count_or_zero(j, source, "kv_lora_rank");
  if (m.kv_lora_rank != 0) {
    // Multi-head latent attention: q and k heads are a plain part and a rotary part.
    m.q_lora_rank = count_or_zero(j, source, "q_lora_rank");
    m.qk_rope_head_dim = count(j, source, "qk_rope_head_dim");
    m.head_dim = count(j, source, "qk_nope_head_dim") + m.qk_rope_head_dim;
    m.v_head_dim = count(j, source, "v_head_dim");
    if ((m.kv_lora_rank + m.qk_rope_head_dim) % 2 != 0)
      fail(source, "kv_lora_rank + qk_rope_head_dim must be even");
  } else {
    if (m.hidden_size % m.num_heads != 0 && !has(j, "head_dim"))
      fail(source, "hidden_size " + std::to_string(m.hidden_size) +
                       " is not a multiple of num_attention_heads " + std::to_string(m.num_heads) +
                       " and there is no \"head_dim\"");
    m.head_dim = count(j, source, "head_dim", m.hidden_size / m.num_heads);
  }
  if (m.num_heads % m.num_kv_heads != 0)
    fail(source, "num_attention_heads " + std::to_string(m.num_heads) +
                     " is not a multiple of num_key_value_heads " + std::to_string(m.num_kv_heads));
  m.intermediate_size = count(j, source, "intermediate_size");
  m.vocab_size = count(j, source, "vocab_size");
  m.max_context = count(j, source, "max_position_embeddings");
  const bool attention_bias = flag(j, source, "attention_bias", false);
  m.qkv_bias = rules->qkv_bias || attention_bias;
  m.o_bias = attention_bias;  // Llama-style attention_bias covers o_proj too
  m.qk_norm = rules->qk_norm;
  m.norms_per_layer = rules->norms;
  m.tied_embeddings = flag(outer, source, "tie_word_embeddings",
                           flag(j, source, "tie_word_embeddings", rules->tied));
  read_experts(j, source, *rules, m);
  read_window(j, source, *rules, m);
  m.num_parameters = m.parameters_from_shape();

  m.name = keep_name(!name_or_path.empty() ? name_or_path : type);
  return m;
}

model_shape read_hf_config(const std::filesystem::path& file) {
  std::error_code ec;
  if (std::filesystem::is_directory(file, ec))
    fail(file.string(), "is a folder, not a config.json file");
  std::ifstream in(file, std::ios::binary);
  if (!in) fail(file.string(), "cannot open the file");
  std::ostringstream contents;
  contents << in.rdbuf();
  if (in.bad()) fail(file.string(), "cannot read the file");
  return parse_hf_config(contents.str(), file.string());
}

}  // namespace frugal::sim
