// Reads a model's shape from a Hugging Face config.json (the fields Llama, Mistral and Qwen2 use),
// so the simulator and the frugal program can size models that are not presets.
#include <frugal/sim/models.hpp>

#include <nlohmann/json.hpp>

#include <deque>
#include <fstream>
#include <limits>
#include <mutex>
#include <sstream>
#include <string>

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
  throw error(std::string(source) + ": " + problem);
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
    fail(source, std::string("field \"") + key + "\" must be a positive 32-bit integer, not " +
                     it->dump());
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
  if (!j.is_object())
    fail(source, std::string("expected a JSON object, found ") + j.type_name());
  // Multimodal configs nest the language model under "text_config".
  if (!j.contains("num_hidden_layers") && j.contains("text_config") && j["text_config"].is_object())
    j = j["text_config"];

  model_shape m;
  m.num_layers = count(j, source, "num_hidden_layers");
  m.hidden_size = count(j, source, "hidden_size");
  m.num_heads = count(j, source, "num_attention_heads");
  m.num_kv_heads = count(j, source, "num_key_value_heads", m.num_heads);
  if (m.hidden_size % m.num_heads != 0 && !j.contains("head_dim"))
    fail(source, "hidden_size " + std::to_string(m.hidden_size) +
                     " is not a multiple of num_attention_heads " + std::to_string(m.num_heads) +
                     " and there is no \"head_dim\"");
  m.head_dim = count(j, source, "head_dim", m.hidden_size / m.num_heads);
  if (m.num_heads % m.num_kv_heads != 0)
    fail(source, "num_attention_heads " + std::to_string(m.num_heads) +
                     " is not a multiple of num_key_value_heads " +
                     std::to_string(m.num_kv_heads));
  m.intermediate_size = count(j, source, "intermediate_size");
  m.vocab_size = count(j, source, "vocab_size");
  m.max_context = count(j, source, "max_position_embeddings");
  const std::string type = text(j, "model_type");
  m.qkv_bias = flag(j, source, "attention_bias", type == "qwen2");
  m.tied_embeddings = flag(j, source, "tie_word_embeddings", false);
  m.num_parameters = m.parameters_from_shape();

  std::string name = text(j, "_name_or_path");
  if (name.empty()) {
    const std::filesystem::path folder = std::filesystem::path(source).parent_path().filename();
    name = !folder.empty() && folder != "." ? folder.string() : type;
  }
  if (name.empty()) name = "model";
  m.name = keep_name(std::move(name));
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
