// The model: loading both file forms, quantizing at load, and the batched forward pass.
#include "llama.hpp"

#include <frugal/error.hpp>
#include <frugal/quant/format.hpp>
#include <frugal/quant/quantize.hpp>
#include <frugal/quant/safetensors.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <functional>
#include <numeric>

namespace llama {

namespace {

constexpr std::size_t row_tile = 16;  // rows one matmul pass computes together (SIMD lanes)
constexpr std::size_t align = 256;

std::vector<char> read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw model_error("cannot open " + path.string());
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return bytes;
}

void check_config(const config& c, const std::string& where) {
  const auto fail = [&](const std::string& why) {
    throw model_error(where + ": unsupported model: " + why);
  };
  if (c.dim == 0 || c.hidden_dim == 0 || c.n_layers == 0 || c.n_heads == 0 || c.n_kv_heads == 0 ||
      c.vocab_size == 0 || c.seq_len == 0)
    fail("every dimension must be positive");
  if (c.dim % c.n_heads != 0)
    fail("dim " + std::to_string(c.dim) + " is not a multiple of the " + std::to_string(c.n_heads) +
         " heads");
  if (c.n_heads % c.n_kv_heads != 0)
    fail("the " + std::to_string(c.n_heads) + " query heads are not a multiple of the " +
         std::to_string(c.n_kv_heads) + " KV heads");
  if (c.head_dim() % 2 != 0) fail("head size " + std::to_string(c.head_dim()) + " is odd");
  if (!(c.rms_norm_eps > 0) || !(c.rope_theta > 0))
    fail("rms_norm_eps and rope_theta must be positive");
  if (c.dim > (1u << 16) || c.hidden_dim > (1u << 18) || c.n_layers > 1024 ||
      c.vocab_size > (1u << 22) || c.seq_len > (1u << 22))
    fail("a dimension is beyond what this example serves");
}

/// Weights are filled one tensor at a time from a source of floats.
using fill_fn =
    std::function<void(const std::string& name, std::size_t rows, std::size_t cols, float* out)>;

frugal::tensor<float> load_vector(const std::string& name, std::size_t n, const fill_fn& fill,
                                  frugal::any_resource_ref memory) {
  auto t = frugal::make_tagged_tensor<float>(memory, "weights:" + name, n);
  fill(name, 1, n, t.data());
  return t;
}

}  // namespace

// ---- small kernels -----------------------------------------------------------------------------

void rms_norm(float* out, const float* x, const float* w, std::size_t n, float eps) {
  float ss = 0.0f;
  for (std::size_t i = 0; i < n; ++i) ss += x[i] * x[i];
  ss = ss / static_cast<float>(n) + eps;
  const float inv = 1.0f / std::sqrt(ss);
  for (std::size_t i = 0; i < n; ++i) out[i] = w[i] * (inv * x[i]);
}

void rope(float* x, std::size_t heads, std::size_t head_dim, std::size_t position, float theta) {
  for (std::size_t h = 0; h < heads; ++h)
    for (std::size_t i = 0; i < head_dim; i += 2) {
      const float freq =
          1.0f / std::pow(theta, static_cast<float>(i) / static_cast<float>(head_dim));
      const float angle = static_cast<float>(position) * freq;
      const float c = std::cos(angle), s = std::sin(angle);
      float* p = x + h * head_dim + i;
      const float a = p[0], b = p[1];
      p[0] = a * c - b * s;
      p[1] = a * s + b * c;
    }
}

// A tile of row_tile floats, one per row: GCC's vector extension, lowered to whatever SIMD the
// clone below targets. Element-wise multiply and add, each rounded on its own (no contraction),
// so every clone gives the same bits.
typedef float row_vector __attribute__((vector_size(8 * sizeof(float))));
static_assert(row_tile == 16, "dense_matmul keeps a tile in two 8-float vectors");

__attribute__((target_clones("avx2", "default"))) void dense_matmul(const float* weights,
                                                                    std::size_t out, std::size_t in,
                                                                    const float* x,
                                                                    std::size_t rows, float* y) {
  // Rows in tiles of row_tile: x transposed so that each SIMD lane is one row, and every lane
  // sums its products in the order i = 0, 1, ... as a one-row call does, so a row's result does
  // not depend on how many rows share the call.
  std::vector<float> xt;  // a tile of x transposed, memcpy'd into vectors (no alignment assumed)
  if (rows > 1) xt.resize(row_tile * in);
  for (std::size_t r0 = 0; r0 < rows; r0 += row_tile) {
    const std::size_t n = std::min(row_tile, rows - r0);
    if (n == 1) {
      const float* xr = x + r0 * in;
      for (std::size_t o = 0; o < out; ++o) {
        const float* wr = weights + o * in;
        float sum = 0.0f;
        for (std::size_t i = 0; i < in; ++i) sum = sum + wr[i] * xr[i];
        y[r0 * out + o] = sum;
      }
      continue;
    }
    for (std::size_t i = 0; i < in; ++i)
      for (std::size_t t = 0; t < row_tile; ++t)
        xt[i * row_tile + t] = t < n ? x[(r0 + t) * in + i] : 0.0f;
    // Four outputs at a time share each load of the tile (eight accumulators in registers).
    std::size_t o = 0;
    for (; o + 4 <= out; o += 4) {
      const float* w0 = weights + o * in;
      const float *w1 = w0 + in, *w2 = w1 + in, *w3 = w2 + in;
      row_vector l0 = {}, h0 = {}, l1 = {}, h1 = {}, l2 = {}, h2 = {}, l3 = {}, h3 = {};
      for (std::size_t i = 0; i < in; ++i) {
        row_vector x_low, x_high;
        std::memcpy(&x_low, xt.data() + i * row_tile, sizeof x_low);
        std::memcpy(&x_high, xt.data() + i * row_tile + 8, sizeof x_high);
        l0 = l0 + w0[i] * x_low;
        h0 = h0 + w0[i] * x_high;
        l1 = l1 + w1[i] * x_low;
        h1 = h1 + w1[i] * x_high;
        l2 = l2 + w2[i] * x_low;
        h2 = h2 + w2[i] * x_high;
        l3 = l3 + w3[i] * x_low;
        h3 = h3 + w3[i] * x_high;
      }
      for (std::size_t t = 0; t < n; ++t) {
        float* yr = y + (r0 + t) * out + o;
        yr[0] = t < 8 ? l0[t] : h0[t - 8];
        yr[1] = t < 8 ? l1[t] : h1[t - 8];
        yr[2] = t < 8 ? l2[t] : h2[t - 8];
        yr[3] = t < 8 ? l3[t] : h3[t - 8];
      }
    }
    for (; o < out; ++o) {
      const float* wr = weights + o * in;
      row_vector low = {}, high = {};
      for (std::size_t i = 0; i < in; ++i) {
        row_vector x_low, x_high;
        std::memcpy(&x_low, xt.data() + i * row_tile, sizeof x_low);
        std::memcpy(&x_high, xt.data() + i * row_tile + 8, sizeof x_high);
        low = low + wr[i] * x_low;
        high = high + wr[i] * x_high;
      }
      for (std::size_t t = 0; t < n; ++t) y[(r0 + t) * out + o] = t < 8 ? low[t] : high[t - 8];
    }
  }
}

void model::matmul(const matrix& w, const float* x, std::size_t rows, float* y, float* dequant) {
  const float* weights = w.dense.data();
  if (w.is_quantized()) {
    frugal::quant::dequantize(w.quantized, std::span<float>(dequant, w.rows * w.cols),
                              {.threads = 1});
    weights = dequant;
  }
  dense_matmul(weights, w.rows, w.cols, x, rows, y);
}

// ---- loading -----------------------------------------------------------------------------------

namespace {

/// Fills every weight of `m` through `fill`, quantizing projections to `format` when given.
void load_weights(model& m, const config& c, const fill_fn& fill, frugal::any_resource_ref memory,
                  std::optional<frugal::quant::format> format, std::vector<std::string>& kept_float,
                  std::size_t& largest) {
  std::vector<float> staging;
  const auto load_matrix = [&](const std::string& name, std::size_t rows, std::size_t cols) {
    matrix w;
    w.name = name;
    w.rows = rows;
    w.cols = cols;
    largest = std::max(largest, rows * cols);
    bool holds = false;
    if (format) {
      try {
        (void)frugal::quant::layout_of(*format, rows, cols);
        holds = true;
      } catch (const frugal::invalid_argument&) {
        kept_float.push_back(name);
      }
    }
    if (holds) {
      staging.resize(rows * cols);
      fill(name, rows, cols, staging.data());
      w.quantized = frugal::quant::quantize(*format, staging, cols, memory, {.threads = 1});
    } else {
      w.dense = frugal::make_tagged_tensor<float>(memory, "weights:" + name, rows * cols);
      fill(name, rows, cols, w.dense.data());
    }
    return w;
  };
  const std::size_t dim = c.dim, kv_dim = c.kv_dim(), hidden = c.hidden_dim;
  m.token_embedding = frugal::make_tagged_tensor<float>(memory, "weights:token_embedding",
                                                        std::size_t{c.vocab_size} * dim);
  fill("token_embedding", c.vocab_size, dim, m.token_embedding.data());
  m.layers.resize(c.n_layers);
  for (std::uint32_t l = 0; l < c.n_layers; ++l) {
    const std::string p = "layers." + std::to_string(l) + ".";
    layer_weights& lw = m.layers[l];
    lw.rms_att = load_vector(p + "rms_att", dim, fill, memory);
    lw.wq = load_matrix(p + "wq", dim, dim);
    lw.wk = load_matrix(p + "wk", kv_dim, dim);
    lw.wv = load_matrix(p + "wv", kv_dim, dim);
    lw.wo = load_matrix(p + "wo", dim, dim);
    lw.rms_ffn = load_vector(p + "rms_ffn", dim, fill, memory);
    lw.w1 = load_matrix(p + "w1", hidden, dim);
    lw.w2 = load_matrix(p + "w2", dim, hidden);
    lw.w3 = load_matrix(p + "w3", hidden, dim);
  }
  m.rms_final = load_vector("rms_final", dim, fill, memory);
  if (!c.tied_embeddings) {
    // The classifier is kept in float32, as the embedding it would otherwise share.
    matrix w;
    w.name = "classifier";
    w.rows = c.vocab_size;
    w.cols = dim;
    w.dense = frugal::make_tagged_tensor<float>(memory, "weights:classifier", w.rows * w.cols);
    fill("classifier", w.rows, w.cols, w.dense.data());
    m.classifier = std::move(w);
  }
}

void check_finite(const std::string& where, const std::string& name, const float* x,
                  std::size_t n) {
  for (std::size_t i = 0; i < n; ++i)
    if (!std::isfinite(x[i]))
      throw model_error(where + ": tensor " + name + " holds a non-finite value");
}

/// llama2.c's legacy format: a header of seven int32, then float32 arrays in a fixed order.
config read_bin(const std::vector<char>& bytes, const std::string& where,
                std::function<const float*(const std::string&)>& locate) {
  if (bytes.size() < 7 * sizeof(std::int32_t))
    throw model_error(where + ": truncated: " + std::to_string(bytes.size()) +
                      " bytes, shorter than the 28-byte header");
  std::int32_t h[7];
  std::memcpy(h, bytes.data(), sizeof h);
  for (int i = 0; i < 7; ++i)
    if (h[i] == 0 || (i != 5 && h[i] < 0))
      throw model_error(where + ": not a llama2.c model: header field " + std::to_string(i) +
                        " is " + std::to_string(h[i]));
  config c;
  c.dim = static_cast<std::uint32_t>(h[0]);
  c.hidden_dim = static_cast<std::uint32_t>(h[1]);
  c.n_layers = static_cast<std::uint32_t>(h[2]);
  c.n_heads = static_cast<std::uint32_t>(h[3]);
  c.n_kv_heads = static_cast<std::uint32_t>(h[4]);
  c.tied_embeddings = h[5] > 0;
  c.vocab_size = static_cast<std::uint32_t>(h[5] > 0 ? h[5] : -static_cast<std::int64_t>(h[5]));
  c.seq_len = static_cast<std::uint32_t>(h[6]);
  check_config(c, where);

  const std::size_t dim = c.dim, kv_dim = c.kv_dim(), hidden = c.hidden_dim, L = c.n_layers;
  struct part {
    std::string name;
    std::size_t floats;
  };
  std::vector<part> parts{{"token_embedding", std::size_t{c.vocab_size} * dim},
                          {"rms_att", L * dim},
                          {"wq", L * dim * dim},
                          {"wk", L * kv_dim * dim},
                          {"wv", L * kv_dim * dim},
                          {"wo", L * dim * dim},
                          {"rms_ffn", L * dim},
                          {"w1", L * hidden * dim},
                          {"w2", L * dim * hidden},
                          {"w3", L * hidden * dim},
                          {"rms_final", dim},
                          {"freq_cis", std::size_t{c.seq_len} * c.head_dim()}};
  if (!c.tied_embeddings) parts.push_back({"classifier", std::size_t{c.vocab_size} * dim});
  std::size_t offset = sizeof h;
  auto offsets = std::make_shared<std::vector<std::pair<std::string, std::size_t>>>();
  for (const part& p : parts) {
    offsets->emplace_back(p.name, offset);
    offset += p.floats * sizeof(float);
  }
  if (bytes.size() != offset)
    throw model_error(where + ": " + (bytes.size() < offset ? "truncated" : "has trailing bytes") +
                      ": " + std::to_string(bytes.size()) + " bytes where the header promises " +
                      std::to_string(offset));
  // "layers.N.wq" -> the N-th slice of the "wq" array.
  locate = [&bytes, offsets, c](const std::string& name) -> const float* {
    std::string base = name;
    std::size_t layer = 0;
    if (name.rfind("layers.", 0) == 0) {
      const std::size_t dot = name.find('.', 7);
      layer = std::stoul(name.substr(7, dot - 7));
      base = name.substr(dot + 1);
    }
    const auto it = std::find_if(offsets->begin(), offsets->end(),
                                 [&](const auto& e) { return e.first == base; });
    const std::size_t dim = c.dim, kv_dim = c.kv_dim(), hidden = c.hidden_dim;
    const std::size_t per_layer = base == "rms_att" || base == "rms_ffn"         ? dim
                                  : base == "wq" || base == "wo"                 ? dim * dim
                                  : base == "wk" || base == "wv"                 ? kv_dim * dim
                                  : base == "w1" || base == "w2" || base == "w3" ? hidden * dim
                                                                                 : 0;
    return reinterpret_cast<const float*>(bytes.data() + it->second) + layer * per_layer;
  };
  return c;
}

/// Hugging Face's config.json for LlamaForCausalLM.
config read_hf_config(const std::filesystem::path& path) {
  const std::string where = path.string();
  nlohmann::json j;
  try {
    std::ifstream in(path);
    if (!in) throw model_error("cannot open " + where);
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw model_error(where + ": not valid JSON: " + e.what());
  }
  if (!j.is_object()) throw model_error(where + ": not a JSON object");
  const std::string type = j.value("model_type", "");
  if (type != "llama")
    throw model_error(where + ": unsupported model_type \"" + type +
                      "\"; this example serves \"llama\" (LlamaForCausalLM)");
  const auto field = [&](const char* name) -> std::uint32_t {
    if (!j.contains(name) || !j[name].is_number_integer() || j[name].get<std::int64_t>() <= 0)
      throw model_error(where + ": " + name + " is missing or not a positive integer");
    return j[name].get<std::uint32_t>();
  };
  config c;
  c.dim = field("hidden_size");
  c.hidden_dim = field("intermediate_size");
  c.n_layers = field("num_hidden_layers");
  c.n_heads = field("num_attention_heads");
  c.n_kv_heads = j.contains("num_key_value_heads") ? field("num_key_value_heads") : c.n_heads;
  c.vocab_size = field("vocab_size");
  c.seq_len = field("max_position_embeddings");
  try {
    c.rms_norm_eps = j.value("rms_norm_eps", 1e-6f);
    c.rope_theta = j.value("rope_theta", 10000.0f);
    c.tied_embeddings = j.value("tie_word_embeddings", false);
    c.bos_token = j.value("bos_token_id", 1);
    const auto& eos = j.contains("eos_token_id") ? j["eos_token_id"] : nlohmann::json(2);
    c.eos_token =
        eos.is_array() ? (eos.empty() ? 2 : eos[0].get<std::int32_t>()) : eos.get<std::int32_t>();
  } catch (const nlohmann::json::exception& e) {
    throw model_error(where + ": a field has the wrong type: " + e.what());
  }
  if (j.contains("head_dim") && j["head_dim"].is_number_integer() &&
      j["head_dim"].get<std::int64_t>() !=
          static_cast<std::int64_t>(c.dim / std::max(c.n_heads, 1u)))
    throw model_error(where + ": unsupported model: head_dim differs from hidden_size / heads");
  if (j.contains("rope_scaling") && !j["rope_scaling"].is_null())
    throw model_error(where + ": unsupported model: rope_scaling is not modelled");
  check_config(c, where);
  return c;
}

}  // namespace

std::size_t model::weight_bytes() const noexcept {
  std::size_t bytes = (token_embedding.size() + rms_final.size()) * sizeof(float);
  for (const layer_weights& l : layers) {
    bytes += (l.rms_att.size() + l.rms_ffn.size()) * sizeof(float);
    for (const matrix* w : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w1, &l.w2, &l.w3}) bytes += w->bytes();
  }
  if (classifier) bytes += classifier->bytes();
  return bytes;
}

std::size_t model::activation_bytes_per_token() const noexcept {
  const std::size_t floats = 5 * std::size_t{config_.dim} + 2 * std::size_t{config_.kv_dim()} +
                             2 * std::size_t{config_.hidden_dim};
  return floats * sizeof(float);
}

std::size_t model::step_extra_bytes(std::size_t logit_rows) const noexcept {
  const std::size_t dequant = format_ == "float32" ? 0 : largest_matrix_ * sizeof(float);
  return logit_rows * config_.vocab_size * sizeof(float) + dequant + 12 * align;
}

model load(const std::filesystem::path& path, frugal::any_resource_ref memory,
           const load_options& options) {
  std::optional<frugal::quant::format> format;
  if (!options.format.empty() && options.format != "float32" && options.format != "fp32")
    format = frugal::quant::parse_format(options.format);
  model m;
  if (format) m.format_ = std::string(frugal::quant::to_string(*format));
  const std::string where = path.string();

  if (std::filesystem::is_directory(path)) {
    m.config_ = read_hf_config(path / "config.json");
    const config& c = m.config_;
    std::optional<frugal::quant::safetensors_file> file;
    try {
      file.emplace(path / "model.safetensors");
    } catch (const frugal::error& e) {
      throw model_error(e.what());
    }
    const auto hf_name = [&](const std::string& name) -> std::string {
      if (name == "token_embedding") return "model.embed_tokens.weight";
      if (name == "rms_final") return "model.norm.weight";
      if (name == "classifier") return "lm_head.weight";
      const std::size_t dot = name.find('.', 7);
      const std::string p = "model.layers." + name.substr(7, dot - 7) + ".";
      const std::string base = name.substr(dot + 1);
      if (base == "rms_att") return p + "input_layernorm.weight";
      if (base == "rms_ffn") return p + "post_attention_layernorm.weight";
      if (base == "wq") return p + "self_attn.q_proj.weight";
      if (base == "wk") return p + "self_attn.k_proj.weight";
      if (base == "wv") return p + "self_attn.v_proj.weight";
      if (base == "wo") return p + "self_attn.o_proj.weight";
      if (base == "w1") return p + "mlp.gate_proj.weight";
      if (base == "w2") return p + "mlp.down_proj.weight";
      return p + "mlp.up_proj.weight";
    };
    const fill_fn fill = [&](const std::string& name, std::size_t rows, std::size_t cols,
                             float* out) {
      const std::string key = hf_name(name);
      if (!file->contains(key)) throw model_error(where + ": missing tensor " + key);
      const auto& entry = file->at(key);
      const bool vector = rows == 1;
      const bool shape_ok =
          vector ? entry.shape.size() == 1 && entry.shape[0] == cols
                 : entry.shape.size() == 2 && entry.shape[0] == rows && entry.shape[1] == cols;
      if (!shape_ok)
        throw model_error(where + ": tensor " + key +
                          " does not have the shape the config gives (" + std::to_string(rows) +
                          " x " + std::to_string(cols) + ")");
      if (!frugal::quant::is_float_readable(entry.type))
        throw model_error(where + ": tensor " + key + " is not a float tensor");
      file->to_float(entry, std::span<float>(out, rows * cols));
      check_finite(where, key, out, rows * cols);
      // Hugging Face stores q and k rows in rotate-half order; this engine rotates interleaved
      // pairs (llama2.c's form): row (h, j * half + i) of the file is row (h, 2i + j) here.
      const bool q = name.ends_with(".wq"), k = name.ends_with(".wk");
      if (q || k) {
        const std::size_t heads = q ? c.n_heads : c.n_kv_heads, hd = c.head_dim(), half = hd / 2;
        std::vector<float> copy(out, out + rows * cols);
        for (std::size_t h = 0; h < heads; ++h)
          for (std::size_t j = 0; j < 2; ++j)
            for (std::size_t i = 0; i < half; ++i)
              std::memcpy(out + (h * hd + 2 * i + j) * cols,
                          copy.data() + (h * hd + j * half + i) * cols, cols * sizeof(float));
      }
    };
    load_weights(m, c, fill, memory, format, m.kept_float_, m.largest_matrix_);
    return m;
  }

  const std::vector<char> bytes = read_file(path);
  std::function<const float*(const std::string&)> locate;
  m.config_ = read_bin(bytes, where, locate);
  const fill_fn fill = [&](const std::string& name, std::size_t rows, std::size_t cols,
                           float* out) {
    const float* src = locate(name);
    std::memcpy(out, src, rows * cols * sizeof(float));
    check_finite(where, name, out, rows * cols);
  };
  load_weights(m, m.config_, fill, memory, format, m.kept_float_, m.largest_matrix_);
  return m;
}

// ---- forward -----------------------------------------------------------------------------------

namespace {

/// Memory of one forward pass, returned to `scratch` when it ends (an arena ignores the frees).
class scratch_floats {
 public:
  scratch_floats(frugal::any_resource_ref r, std::size_t n, const char* tag)
      : r_(r), bytes_(std::max<std::size_t>(n, 1) * sizeof(float)) {
    p_ = static_cast<float*>(r_.allocate(bytes_, align, tag));
  }
  ~scratch_floats() { r_.deallocate(p_, bytes_, align); }
  scratch_floats(const scratch_floats&) = delete;
  scratch_floats& operator=(const scratch_floats&) = delete;
  float* get() const noexcept { return p_; }

 private:
  frugal::any_resource_ref r_;
  std::size_t bytes_;
  float* p_;
};

}  // namespace

void model::forward(frugal::kv::page_pool& pages, std::span<const float> kv_scales, const batch& b,
                    frugal::any_resource_ref scratch, std::span<float> logits) const {
  const llama::config& c = config_;
  const std::size_t T = b.tokens.size(), dim = c.dim, kv_dim = c.kv_dim();
  const std::size_t per_layer_scales = pages.layout().scales_per_layer();
  FRUGAL_EXPECTS(b.slots.size() == T && !b.qo_indptr.empty() &&
                     static_cast<std::size_t>(b.qo_indptr.back()) == T &&
                     kv_scales.size() == per_layer_scales * c.n_layers,
                 "llama::model::forward: the batch's sizes disagree", frugal::invalid_argument);
  frugal::kv::detail::check_table(b.table, pages, "llama::model::forward");
  // Each token's position: the last qo_len of its sequence's kv_len tokens.
  std::vector<std::size_t> position(T);
  for (std::size_t i = 0; i + 1 < b.qo_indptr.size(); ++i) {
    const std::size_t kv_len = frugal::kv::detail::kv_len_of(b.table, i, pages.layout().page_size);
    const auto begin = static_cast<std::size_t>(b.qo_indptr[i]);
    const auto end = static_cast<std::size_t>(b.qo_indptr[i + 1]);
    FRUGAL_EXPECTS(begin <= end && end - begin <= kv_len,
                   "llama::model::forward: a sequence has more new tokens than tokens",
                   frugal::invalid_argument);
    for (std::size_t t = begin; t < end; ++t) position[t] = kv_len - (end - begin) + (t - begin);
  }
  const frugal::kv::attention_options options{.num_qo_heads = c.n_heads};
  const attend_fn paged = [&](std::uint32_t l, const float* q, const float* k, const float* v,
                              std::size_t rows, float* out) {
    const auto scales = kv_scales.subspan(l * per_layer_scales, per_layer_scales);
    frugal::kv::write_kv(pages, l, {k, rows * kv_dim}, {v, rows * kv_dim}, b.slots, scales);
    frugal::kv::paged_attention(pages, l, {q, rows * dim}, b.qo_indptr, b.table, {out, rows * dim},
                                options, scales);
  };
  forward_rows(b.tokens, position, paged, scratch, b.logit_rows, logits);
}

void model::forward_rows(std::span<const std::int32_t> tokens,
                         std::span<const std::size_t> positions, const attend_fn& attend,
                         frugal::any_resource_ref scratch, std::span<const std::size_t> logit_rows,
                         std::span<float> logits) const {
  const llama::config& c = config_;
  const std::size_t T = tokens.size(), dim = c.dim, kv_dim = c.kv_dim(), hidden = c.hidden_dim;
  const std::size_t hd = c.head_dim(), rows = logit_rows.size();
  FRUGAL_EXPECTS(positions.size() == T && logits.size() == rows * c.vocab_size,
                 "llama::model::forward: the batch's sizes disagree", frugal::invalid_argument);
  for (const std::int32_t t : tokens)
    FRUGAL_EXPECTS(t >= 0 && static_cast<std::uint32_t>(t) < c.vocab_size,
                   "llama::model::forward: token " + std::to_string(t) +
                       " is outside the vocabulary of " + std::to_string(c.vocab_size),
                   frugal::invalid_argument);
  for (const std::size_t r : logit_rows)
    FRUGAL_EXPECTS(r < T, "llama::model::forward: a logit row is outside the batch",
                   frugal::invalid_argument);

  scratch_floats x(scratch, T * dim, "activations"), xb(scratch, T * dim, "activations"),
      q(scratch, T * dim, "activations"), att(scratch, T * dim, "activations"),
      k(scratch, T * kv_dim, "activations"), v(scratch, T * kv_dim, "activations"),
      h1(scratch, T * hidden, "activations"), h3(scratch, T * hidden, "activations");
  const std::size_t dequant_floats = format_ == "float32" ? 0 : largest_matrix_;
  scratch_floats dequant(scratch, dequant_floats, "dequantized weights");

  for (std::size_t t = 0; t < T; ++t)
    std::memcpy(x.get() + t * dim,
                token_embedding.data() + static_cast<std::size_t>(tokens[t]) * dim,
                dim * sizeof(float));
  for (std::uint32_t l = 0; l < c.n_layers; ++l) {
    const layer_weights& w = layers[l];
    for (std::size_t t = 0; t < T; ++t)
      rms_norm(xb.get() + t * dim, x.get() + t * dim, w.rms_att.data(), dim, c.rms_norm_eps);
    matmul(w.wq, xb.get(), T, q.get(), dequant.get());
    matmul(w.wk, xb.get(), T, k.get(), dequant.get());
    matmul(w.wv, xb.get(), T, v.get(), dequant.get());
    for (std::size_t t = 0; t < T; ++t) {
      rope(q.get() + t * dim, c.n_heads, hd, positions[t], c.rope_theta);
      rope(k.get() + t * kv_dim, c.n_kv_heads, hd, positions[t], c.rope_theta);
    }
    attend(l, q.get(), k.get(), v.get(), T, att.get());
    matmul(w.wo, att.get(), T, xb.get(), dequant.get());
    for (std::size_t i = 0; i < T * dim; ++i) x.get()[i] += xb.get()[i];

    for (std::size_t t = 0; t < T; ++t)
      rms_norm(xb.get() + t * dim, x.get() + t * dim, w.rms_ffn.data(), dim, c.rms_norm_eps);
    matmul(w.w1, xb.get(), T, h1.get(), dequant.get());
    matmul(w.w3, xb.get(), T, h3.get(), dequant.get());
    for (std::size_t i = 0; i < T * hidden; ++i) {
      const float g = h1.get()[i];
      h1.get()[i] = g / (1.0f + std::exp(-g)) * h3.get()[i];
    }
    matmul(w.w2, h1.get(), T, xb.get(), dequant.get());
    for (std::size_t i = 0; i < T * dim; ++i) x.get()[i] += xb.get()[i];
  }

  // Logits of the rows asked for: final norm, then the classifier (the embedding when tied).
  for (std::size_t r = 0; r < rows; ++r)
    rms_norm(xb.get() + r * dim, x.get() + logit_rows[r] * dim, rms_final.data(), dim,
             c.rms_norm_eps);
  if (classifier) {
    matmul(*classifier, xb.get(), rows, logits.data(), dequant.get());
  } else {
    dense_matmul(token_embedding.data(), c.vocab_size, dim, xb.get(), rows, logits.data());
  }
}

void model::forward_sequence(
    std::span<const std::int32_t> tokens, frugal::any_resource_ref scratch,
    std::span<const std::size_t> logit_rows, std::span<float> logits,
    const std::function<void(const frugal::kv::page_pool&)>& inspect) const {
  const std::size_t T = tokens.size();
  if (T == 0) return;
  constexpr std::uint32_t page_size = 16;
  const frugal::kv::layout l{.num_layers = config_.n_layers,
                             .num_kv_heads = config_.n_kv_heads,
                             .head_dim = config_.head_dim(),
                             .page_size = page_size,
                             .dtype = frugal::kv::dtype::fp32};
  const auto num_pages = static_cast<std::uint32_t>((T + page_size - 1) / page_size);
  frugal::kv::page_pool pool{l, num_pages, scratch};
  std::vector<std::int64_t> slots(T);
  std::iota(slots.begin(), slots.end(), 0);  // token t in slot t: pages 0, 1, ... in order
  std::vector<std::int32_t> indices(num_pages);
  std::iota(indices.begin(), indices.end(), 0);
  const frugal::kv::flashinfer_page_table table{
      {0, static_cast<std::int32_t>(num_pages)},
      indices,
      {static_cast<std::int32_t>((T - 1) % page_size + 1)}};
  const std::vector<std::int32_t> qo{0, static_cast<std::int32_t>(T)};
  forward(pool, {}, {tokens, slots, qo, table, logit_rows}, scratch, logits);
  if (inspect) inspect(pool);
}

std::vector<std::pair<float, float>> model::kv_amax(std::span<const std::int32_t> tokens,
                                                    frugal::any_resource_ref scratch) const {
  const llama::config& c = config_;
  std::vector<std::pair<float, float>> amax(c.n_layers, {0.0f, 0.0f});
  forward_sequence(tokens, scratch, {}, {}, [&](const frugal::kv::page_pool& pool) {
    const frugal::kv::page_addressing a = pool.addressing();
    const std::uint32_t page_size = pool.layout().page_size;
    for (std::uint32_t layer = 0; layer < c.n_layers; ++layer)
      for (std::size_t t = 0; t < tokens.size(); ++t)
        for (std::size_t kv = 0; kv < 2; ++kv)
          for (std::size_t h = 0; h < c.n_kv_heads; ++h) {
            const auto* row = reinterpret_cast<const float*>(
                a.base + a.offset(layer, static_cast<frugal::kv::page_id>(t / page_size), kv,
                                  t % page_size, h));
            float& m = kv == 0 ? amax[layer].first : amax[layer].second;
            for (std::size_t d = 0; d < c.head_dim(); ++d) m = std::max(m, std::abs(row[d]));
          }
  });
  return amax;
}

}  // namespace llama
