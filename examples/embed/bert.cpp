// The BERT encoder forward. Matrix products are a plain loop (matmul_bt below): each output
// element is one dot product whose summation order depends only on the row length, so a
// sequence's embedding is bit-for-bit the same in any batch and with any number of threads.
#include "bert.hpp"

#include <frugal/error.hpp>
#include <frugal/quant/quantize.hpp>
#include <frugal/quant/safetensors.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <thread>

namespace embed {
namespace {

[[noreturn]] void bad_file(const std::string& name, const std::string& why) {
  FRUGAL_FAIL_AT(name, why, frugal::error);
}

/// Runs body(begin, end, part) over [0, n) split in at most `threads` contiguous parts.
template <class F>
void parallel_for(std::size_t n, unsigned threads, F&& body) {
  const std::size_t parts = std::min<std::size_t>(std::max(1u, threads), n);
  if (parts <= 1) {
    if (n > 0) body(std::size_t{0}, n, std::size_t{0});
    return;
  }
  std::vector<std::jthread> workers;
  workers.reserve(parts - 1);
  for (std::size_t p = 1; p < parts; ++p)
    workers.emplace_back([&, p] { body(n * p / parts, n * (p + 1) / parts, p); });
  body(std::size_t{0}, n / parts, std::size_t{0});
}

/// y[r][j] = bias[j] + sum_k x[r][k] * w[j][k] for rows [row_begin, row_end): x is rows x k,
/// w is n x k (a Hugging Face Linear weight), y is rows x n. Eight partial sums per dot product
/// let the compiler use vector registers while the order stays fixed.
void matmul_bt(const float* x, std::size_t row_begin, std::size_t row_end, std::size_t k,
               const float* w, std::size_t n, const float* bias, float* y) {
  constexpr std::size_t lanes = 8;
  const std::size_t k_main = k / lanes * lanes;
  for (std::size_t r = row_begin; r < row_end; ++r) {
    const float* xr = x + r * k;
    float* yr = y + r * n;
    for (std::size_t j = 0; j < n; ++j) {
      const float* wj = w + j * k;
      float acc[lanes] = {};
      for (std::size_t i = 0; i < k_main; i += lanes)
        for (std::size_t l = 0; l < lanes; ++l) acc[l] += xr[i + l] * wj[i + l];
      float sum = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
      for (std::size_t i = k_main; i < k; ++i) sum += xr[i] * wj[i];
      yr[j] = sum + (bias != nullptr ? bias[j] : 0.0f);
    }
  }
}

/// x = LayerNorm(x + residual) per row, statistics in double.
void add_layer_norm(float* x, const float* residual, std::size_t rows, std::size_t cols,
                    const float* gamma, const float* beta, double eps) {
  for (std::size_t r = 0; r < rows; ++r) {
    float* xr = x + r * cols;
    if (residual != nullptr)
      for (std::size_t c = 0; c < cols; ++c) xr[c] += residual[r * cols + c];
    double mean = 0;
    for (std::size_t c = 0; c < cols; ++c) mean += xr[c];
    mean /= static_cast<double>(cols);
    double var = 0;
    for (std::size_t c = 0; c < cols; ++c) var += (xr[c] - mean) * (xr[c] - mean);
    var /= static_cast<double>(cols);
    const double inv = 1.0 / std::sqrt(var + eps);
    for (std::size_t c = 0; c < cols; ++c)
      xr[c] = static_cast<float>((xr[c] - mean) * inv) * gamma[c] + beta[c];
  }
}

std::size_t positive(const nlohmann::json& j, const char* key, const std::string& name) {
  if (!j.contains(key) || !j[key].is_number_integer() || j[key].get<std::int64_t>() <= 0)
    bad_file(name, std::string(key) + " is missing or not a positive integer");
  return j[key].get<std::size_t>();
}

float* as_floats(void* p) { return static_cast<float*>(p); }

}  // namespace

std::string_view to_string(matrix_kind k) noexcept {
  constexpr std::array<std::string_view, matrix_kind_count> names{
      "query", "key", "value", "attention_output", "intermediate", "output"};
  return names[static_cast<std::size_t>(k)];
}

weight_plan uniform_plan(std::optional<frugal::quant::format> f) {
  weight_plan p;
  p.fill(f);
  return p;
}

bert_config bert_config::from_file(const std::filesystem::path& path) {
  const std::string name = path.string();
  std::ifstream in(path);
  if (!in) bad_file(name, "cannot open the model config");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    bad_file(name, std::string("not valid JSON: ") + e.what());
  }
  if (!j.is_object()) bad_file(name, "not a JSON object");
  const auto text = [&](const char* key, const char* fallback) {
    if (!j.contains(key)) return std::string(fallback);
    if (!j[key].is_string()) bad_file(name, std::string(key) + " is not a string");
    return j[key].get<std::string>();
  };
  const std::string type = text("model_type", "");
  if (type != "bert")
    bad_file(name, "model_type is \"" + type + "\", not \"bert\": embed_serve runs BERT encoders");
  if (const auto act = text("hidden_act", "gelu"); act != "gelu")
    bad_file(name, "hidden_act \"" + act + "\" is not supported (only gelu)");
  if (const auto pos = text("position_embedding_type", "absolute"); pos != "absolute")
    bad_file(name, "position_embedding_type \"" + pos + "\" is not supported (only absolute)");
  bert_config c;
  c.vocab_size = positive(j, "vocab_size", name);
  c.hidden = positive(j, "hidden_size", name);
  c.layers = positive(j, "num_hidden_layers", name);
  c.heads = positive(j, "num_attention_heads", name);
  c.intermediate = positive(j, "intermediate_size", name);
  c.max_positions = positive(j, "max_position_embeddings", name);
  c.type_vocab_size = positive(j, "type_vocab_size", name);
  if (j.contains("layer_norm_eps")) {
    if (!j["layer_norm_eps"].is_number() || !(j["layer_norm_eps"].get<double>() > 0))
      bad_file(name, "layer_norm_eps is not a positive number");
    c.layer_norm_eps = j["layer_norm_eps"].get<double>();
  }
  if (c.hidden % c.heads != 0)
    bad_file(name, "hidden_size " + std::to_string(c.hidden) +
                       " is not a multiple of num_attention_heads " + std::to_string(c.heads));
  return c;
}

bert_model::bert_model(const std::filesystem::path& dir, frugal::any_resource_ref weights,
                       const weight_plan& plan)
    : config_(bert_config::from_file(dir / "config.json")), weights_(weights) {
  try {
    const frugal::quant::safetensors_file file(dir / "model.safetensors");
    const std::size_t h = config_.hidden, inter = config_.intermediate;
    word_embeddings_ = load(&file, "embeddings.word_embeddings.weight", {config_.vocab_size, h});
    position_embeddings_ =
        load(&file, "embeddings.position_embeddings.weight", {config_.max_positions, h});
    token_type_embeddings_ =
        load(&file, "embeddings.token_type_embeddings.weight", {config_.type_vocab_size, h});
    embedding_norm_weight_ = load(&file, "embeddings.LayerNorm.weight", {h});
    embedding_norm_bias_ = load(&file, "embeddings.LayerNorm.bias", {h});
    const std::array<const char*, matrix_kind_count> names{
        "attention.self.query",   "attention.self.key", "attention.self.value",
        "attention.output.dense", "intermediate.dense", "output.dense"};
    const std::array<std::pair<std::size_t, std::size_t>, matrix_kind_count> shapes{
        {{h, h}, {h, h}, {h, h}, {h, h}, {inter, h}, {h, inter}}};
    layers_.resize(config_.layers);
    for (std::size_t i = 0; i < config_.layers; ++i) {
      const std::string prefix = "encoder.layer." + std::to_string(i) + ".";
      layer& L = layers_[i];
      for (std::size_t k = 0; k < matrix_kind_count; ++k) {
        linear& l = L.proj[k];
        l.rows = shapes[k].first;
        l.cols = shapes[k].second;
        const std::string w = prefix + names[k] + ".weight";
        l.bias = load(&file, prefix + names[k] + ".bias", {l.rows});
        largest_projection_ = std::max(largest_projection_, l.rows * l.cols);
        projection_elements_ += l.rows * l.cols;
        if (plan[k]) {
          const auto& entry = file.at(w);
          if (entry.shape != std::vector<std::size_t>{l.rows, l.cols})
            bad_file(file.name(), w + " does not have the shape config.json implies");
          const std::vector<float> source = file.to_float(entry);
          try {
            l.quantized = frugal::quant::quantize(*plan[k], source, l.cols, weights_);
            weight_bytes_ += l.quantized.bytes();
            projection_bytes_ += l.quantized.bytes();
            any_quantized_ = true;
            continue;
          } catch (const frugal::invalid_argument& e) {
            kept_float_.push_back(w + ": " + e.what());
          }
        }
        l.weight = load(&file, w, {l.rows, l.cols});
        projection_bytes_ += l.rows * l.cols * sizeof(float);
      }
      L.attention_norm_weight = load(&file, prefix + "attention.output.LayerNorm.weight", {h});
      L.attention_norm_bias = load(&file, prefix + "attention.output.LayerNorm.bias", {h});
      L.output_norm_weight = load(&file, prefix + "output.LayerNorm.weight", {h});
      L.output_norm_bias = load(&file, prefix + "output.LayerNorm.bias", {h});
    }
  } catch (...) {
    release();  // give back what was loaded so far
    throw;
  }
}

bert_model::~bert_model() { release(); }

void bert_model::release() noexcept {
  layers_.clear();
  for (const auto& a : allocations_) weights_.deallocate(a.p, a.bytes, 64);
  allocations_.clear();
}

const float* bert_model::load(const void* f, const std::string& name,
                              std::vector<std::size_t> shape) {
  const auto& file = *static_cast<const frugal::quant::safetensors_file*>(f);
  if (!file.contains(name)) bad_file(file.name(), "no tensor " + name);
  const auto& entry = file.at(name);
  if (entry.shape != shape)
    bad_file(file.name(), name + " does not have the shape config.json implies");
  const std::size_t bytes = entry.elements() * sizeof(float);
  void* p = weights_.allocate(bytes, 64, "embed:weights");
  allocations_.push_back({p, bytes});
  file.to_float(entry, std::span<float>(as_floats(p), entry.elements()));
  weight_bytes_ += bytes;
  return as_floats(p);
}

std::size_t bert_model::bytes_per_token() const noexcept {
  // hidden state, q, k, v, attention context, a projection result, the FFN's inner activation
  return (6 * config_.hidden + config_.intermediate) * sizeof(float);
}

std::size_t bert_model::extra_bytes(std::size_t max_length, unsigned threads) const noexcept {
  constexpr std::size_t slack = 16 * frugal::default_alignment;  // alignment of each buffer
  const std::size_t scores = std::max(1u, threads) * max_length * sizeof(float);
  const std::size_t dequantized = any_quantized_ ? largest_projection_ * sizeof(float) : 0;
  return scores + dequantized + slack;
}

void bert_model::apply(const linear& l, const float* x, std::size_t tokens, float* y,
                       float* scratch, unsigned threads) const {
  const float* w = l.weight;
  if (w == nullptr) {  // quantized: decode into the step's scratch buffer first
    frugal::quant::dequantize(l.quantized, std::span<float>(scratch, l.rows * l.cols),
                              {.threads = std::max(1u, threads)});
    w = scratch;
  }
  parallel_for(tokens, threads, [&](std::size_t b, std::size_t e, std::size_t) {
    matmul_bt(x, b, e, l.cols, w, l.rows, l.bias, y);
  });
}

void bert_model::embed(std::span<const sequence> batch, frugal::batch::workspace& ws,
                       std::span<float> out, unsigned threads) const {
  const std::size_t h = config_.hidden, inter = config_.intermediate;
  const std::size_t heads = config_.heads, head_dim = h / heads;
  FRUGAL_EXPECTS(out.size() == batch.size() * h,
                 "bert_model::embed: output size is not batch x hidden", frugal::invalid_argument);
  std::vector<std::size_t> starts;
  std::size_t tokens = 0, longest = 0;
  for (const auto& s : batch) {
    FRUGAL_EXPECTS(!s.ids.empty() && s.ids.size() <= s.length && s.length <= config_.max_positions,
                   "bert_model::embed: a sequence must have 1 to max_position_embeddings ids "
                   "and length >= its ids",
                   frugal::invalid_argument);
    for (auto id : s.ids)
      FRUGAL_EXPECTS(
          id >= 0 && static_cast<std::size_t>(id) < config_.vocab_size,
          "bert_model::embed: token id " + std::to_string(id) + " outside the vocabulary",
          frugal::invalid_argument);
    starts.push_back(tokens);
    tokens += s.length;
    longest = std::max(longest, s.length);
  }
  if (batch.empty()) return;
  threads = std::max(1u, threads);

  auto step = ws.scoped_step(tokens, extra_bytes(longest, threads));
  const auto buffer = [&](std::size_t floats) {
    return as_floats(ws.allocate(floats * sizeof(float)));
  };
  float* x = buffer(tokens * h);
  float* q = buffer(tokens * h);
  float* k = buffer(tokens * h);
  float* v = buffer(tokens * h);
  float* ctx = buffer(tokens * h);
  float* proj = buffer(tokens * h);
  float* ffn = buffer(tokens * inter);
  float* scores = buffer(threads * longest);
  float* scratch = any_quantized_ ? buffer(largest_projection_) : nullptr;

  // Embeddings: word + position + token type 0, then LayerNorm. [PAD] (id 0) fills the padding.
  for (std::size_t s = 0; s < batch.size(); ++s) {
    for (std::size_t p = 0; p < batch[s].length; ++p) {
      const std::size_t id =
          p < batch[s].ids.size() ? static_cast<std::size_t>(batch[s].ids[p]) : 0;
      float* xr = x + (starts[s] + p) * h;
      for (std::size_t c = 0; c < h; ++c)
        xr[c] = word_embeddings_[id * h + c] + position_embeddings_[p * h + c] +
                token_type_embeddings_[c];
    }
  }
  add_layer_norm(x, nullptr, tokens, h, embedding_norm_weight_, embedding_norm_bias_,
                 config_.layer_norm_eps);

  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  for (const layer& L : layers_) {
    apply(L.proj[0], x, tokens, q, scratch, threads);
    apply(L.proj[1], x, tokens, k, scratch, threads);
    apply(L.proj[2], x, tokens, v, scratch, threads);
    // Attention inside each sequence only, over its real tokens (padding is masked).
    const std::size_t work = batch.size() * heads;
    parallel_for(work, threads, [&](std::size_t b, std::size_t e, std::size_t part) {
      float* row = scores + part * longest;
      for (std::size_t item = b; item < e; ++item) {
        const std::size_t s = item / heads, head = item % heads;
        const std::size_t real = batch[s].ids.size(), base = starts[s];
        for (std::size_t i = 0; i < batch[s].length; ++i) {
          const float* qi = q + (base + i) * h + head * head_dim;
          float peak = -INFINITY;
          for (std::size_t j = 0; j < real; ++j) {
            const float* kj = k + (base + j) * h + head * head_dim;
            float dot = 0;
            for (std::size_t d = 0; d < head_dim; ++d) dot += qi[d] * kj[d];
            row[j] = dot * scale;
            peak = std::max(peak, row[j]);
          }
          float total = 0;
          for (std::size_t j = 0; j < real; ++j) total += row[j] = std::exp(row[j] - peak);
          float* ci = ctx + (base + i) * h + head * head_dim;
          std::fill(ci, ci + head_dim, 0.0f);
          for (std::size_t j = 0; j < real; ++j) {
            const float p = row[j] / total;
            const float* vj = v + (base + j) * h + head * head_dim;
            for (std::size_t d = 0; d < head_dim; ++d) ci[d] += p * vj[d];
          }
        }
      }
    });
    apply(L.proj[3], ctx, tokens, proj, scratch, threads);
    add_layer_norm(x, proj, tokens, h, L.attention_norm_weight, L.attention_norm_bias,
                   config_.layer_norm_eps);
    apply(L.proj[4], x, tokens, ffn, scratch, threads);
    parallel_for(tokens * inter, threads, [&](std::size_t b, std::size_t e, std::size_t) {
      for (std::size_t i = b; i < e; ++i)
        ffn[i] = 0.5f * ffn[i] * (1.0f + std::erf(ffn[i] * 0.70710678118654752f));
    });
    apply(L.proj[5], ffn, tokens, proj, scratch, threads);
    add_layer_norm(x, proj, tokens, h, L.output_norm_weight, L.output_norm_bias,
                   config_.layer_norm_eps);
  }

  // Mean over the real tokens, then L2 normalisation.
  for (std::size_t s = 0; s < batch.size(); ++s) {
    const std::size_t real = batch[s].ids.size();
    std::vector<double> mean(h, 0.0);
    for (std::size_t p = 0; p < real; ++p)
      for (std::size_t c = 0; c < h; ++c) mean[c] += x[(starts[s] + p) * h + c];
    double norm = 0;
    for (auto& m : mean) {
      m /= static_cast<double>(real);
      norm += m * m;
    }
    norm = std::max(std::sqrt(norm), 1e-12);
    for (std::size_t c = 0; c < h; ++c) out[s * h + c] = static_cast<float>(mean[c] / norm);
  }
}

}  // namespace embed
