// embed_serve's forward on the real all-MiniLM-L6-v2 (fetched by scripts/setup): float32
// embeddings against a float64 reference forward written here, one sentence at a time, and
// the same embedding for a sentence whatever batch it is packed into.
#include "bert.hpp"

#include "serve.hpp"
#include "tokenizer.hpp"

#include <frugal/mr/host_resource.hpp>
#include <frugal/mr/pool.hpp>
#include <frugal/quant/safetensors.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <vector>

namespace {

const std::filesystem::path model_dir = FRUGAL_EMBED_MODEL_DIR;
const std::filesystem::path sentences_file = FRUGAL_EMBED_SENTENCES;

void require_model() {
  if (!std::filesystem::exists(model_dir / "model.safetensors"))
    FAIL("all-MiniLM-L6-v2 is missing at " << model_dir.string()
                                           << ": run `source scripts/setup` to fetch it");
}

std::vector<std::vector<std::int32_t>> test_requests() {
  const auto tok = embed::wordpiece_tokenizer::from_file(model_dir / "tokenizer.json", 256);
  std::ifstream in(sentences_file);
  std::vector<std::vector<std::int32_t>> out;
  for (std::string line; std::getline(in, line);) out.push_back(tok.encode(line));
  REQUIRE(out.size() == 50);
  return out;
}

/// The BERT encoder in double precision, written from the architecture (Devlin et al. 2019;
/// sentence-transformers' mean pooling and normalisation), sharing no code with bert.cpp.
class reference_bert {
 public:
  explicit reference_bert(const std::filesystem::path& dir) : file_(dir / "model.safetensors") {}

  std::vector<double> embed(const std::vector<std::int32_t>& ids) const {
    const std::size_t n = ids.size(), h = 384, heads = 12, d = 32, inter = 1536;
    std::vector<double> x(n * h);
    const auto& word = get("embeddings.word_embeddings.weight");
    const auto& pos = get("embeddings.position_embeddings.weight");
    const auto& type = get("embeddings.token_type_embeddings.weight");
    for (std::size_t t = 0; t < n; ++t)
      for (std::size_t c = 0; c < h; ++c)
        x[t * h + c] = word[ids[t] * h + c] + pos[t * h + c] + type[c];
    layer_norm(x, "embeddings.LayerNorm", n, h);
    for (int l = 0; l < 6; ++l) {
      const std::string p = "encoder.layer." + std::to_string(l) + ".";
      const auto q = linear(x, p + "attention.self.query", n, h, h);
      const auto k = linear(x, p + "attention.self.key", n, h, h);
      const auto v = linear(x, p + "attention.self.value", n, h, h);
      std::vector<double> ctx(n * h, 0.0);
      for (std::size_t head = 0; head < heads; ++head)
        for (std::size_t i = 0; i < n; ++i) {
          std::vector<double> s(n);
          for (std::size_t j = 0; j < n; ++j) {
            double dot = 0;
            for (std::size_t e = 0; e < d; ++e)
              dot += q[i * h + head * d + e] * k[j * h + head * d + e];
            s[j] = dot / std::sqrt(static_cast<double>(d));
          }
          const double m = *std::max_element(s.begin(), s.end());
          double z = 0;
          for (auto& e : s) z += e = std::exp(e - m);
          for (std::size_t j = 0; j < n; ++j)
            for (std::size_t e = 0; e < d; ++e)
              ctx[i * h + head * d + e] += s[j] / z * v[j * h + head * d + e];
        }
      auto a = linear(ctx, p + "attention.output.dense", n, h, h);
      for (std::size_t i = 0; i < a.size(); ++i) a[i] += x[i];
      layer_norm(a, p + "attention.output.LayerNorm", n, h);
      auto f = linear(a, p + "intermediate.dense", n, h, inter);
      for (auto& e : f) e = 0.5 * e * (1.0 + std::erf(e / std::sqrt(2.0)));
      x = linear(f, p + "output.dense", n, inter, h);
      for (std::size_t i = 0; i < x.size(); ++i) x[i] += a[i];
      layer_norm(x, p + "output.LayerNorm", n, h);
    }
    std::vector<double> mean(h, 0.0);
    for (std::size_t t = 0; t < n; ++t)
      for (std::size_t c = 0; c < h; ++c) mean[c] += x[t * h + c] / static_cast<double>(n);
    double norm = 0;
    for (double e : mean) norm += e * e;
    for (auto& e : mean) e /= std::sqrt(norm);
    return mean;
  }

 private:
  const std::vector<double>& get(const std::string& name) const {
    auto it = cache_.find(name);
    if (it == cache_.end()) {
      const auto f = file_.to_float(file_.at(name));
      it = cache_.emplace(name, std::vector<double>(f.begin(), f.end())).first;
    }
    return it->second;
  }
  // y = x W^T + b, W stored out x in.
  std::vector<double> linear(const std::vector<double>& x, const std::string& name, std::size_t n,
                             std::size_t in, std::size_t out) const {
    const auto& w = get(name + ".weight");
    const auto& b = get(name + ".bias");
    std::vector<double> y(n * out);
    for (std::size_t t = 0; t < n; ++t)
      for (std::size_t o = 0; o < out; ++o) {
        double s = b[o];
        for (std::size_t i = 0; i < in; ++i) s += x[t * in + i] * w[o * in + i];
        y[t * out + o] = s;
      }
    return y;
  }
  void layer_norm(std::vector<double>& x, const std::string& name, std::size_t n,
                  std::size_t h) const {
    const auto& g = get(name + ".weight");
    const auto& b = get(name + ".bias");
    for (std::size_t t = 0; t < n; ++t) {
      double m = 0, v = 0;
      for (std::size_t c = 0; c < h; ++c) m += x[t * h + c] / static_cast<double>(h);
      for (std::size_t c = 0; c < h; ++c) v += (x[t * h + c] - m) * (x[t * h + c] - m);
      v /= static_cast<double>(h);
      for (std::size_t c = 0; c < h; ++c)
        x[t * h + c] = (x[t * h + c] - m) / std::sqrt(v + 1e-12) * g[c] + b[c];
    }
  }

  frugal::quant::safetensors_file file_;
  mutable std::map<std::string, std::vector<double>> cache_;
};

double cosine(const std::vector<float>& a, const std::vector<double>& b) {
  double ab = 0, aa = 0, bb = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    ab += a[i] * b[i];
    aa += static_cast<double>(a[i]) * a[i];
    bb += b[i] * b[i];
  }
  return ab / std::sqrt(aa * bb);
}

}  // namespace

TEST_CASE("float32 embeddings match a float64 reference forward on 50 sentences", "[embed]") {
  require_model();
  const auto requests = test_requests();
  frugal::pool_resource weights{frugal::host_resource{}};
  const embed::bert_model model(model_dir, weights);
  embed::run_summary summary;
  const auto got = embed::embed_all(model, requests, {.threads = 2}, 256, summary);
  const reference_bert reference(model_dir);
  double worst = 1.0;
  for (std::size_t i = 0; i < requests.size(); ++i) {
    const double c = cosine(got[i], reference.embed(requests[i]));
    CAPTURE(i, c);
    CHECK(c >= 0.99999);
    worst = std::min(worst, c);
  }
  WARN("lowest cosine to the float64 reference: " << worst);
}

TEST_CASE("a sentence's embedding does not depend on its batch, padding or threads", "[embed]") {
  require_model();
  const auto requests = test_requests();
  frugal::pool_resource weights{frugal::host_resource{}};
  const embed::bert_model model(model_dir, weights);
  frugal::host_resource host;
  frugal::batch::workspace ws{host, {.bytes_per_token = model.bytes_per_token()}};
  const std::size_t h = model.hidden();

  std::vector<std::vector<float>> alone(requests.size(), std::vector<float>(h));
  for (std::size_t i = 0; i < requests.size(); ++i) {
    const embed::sequence s{requests[i], requests[i].size()};
    model.embed(std::span(&s, 1), ws, alone[i]);
  }
  std::mt19937 rng(18);
  double worst = 0;
  for (const auto& [threads, padded] : {std::pair{1u, false}, {2u, true}, {3u, false}}) {
    {
      embed::batching_options opts{.max_batch_tokens = 64 + 97 * threads,
                                   .max_batch_sequences = 3 + 5 * threads,
                                   .padded = padded,
                                   .threads = threads};
      auto order = requests;
      std::vector<std::size_t> index(requests.size());
      for (std::size_t i = 0; i < index.size(); ++i) index[i] = i;
      std::shuffle(index.begin(), index.end(), rng);
      for (std::size_t i = 0; i < index.size(); ++i) order[i] = requests[index[i]];
      embed::run_summary summary;
      const auto got = embed::embed_all(model, order, opts, 256, summary);
      CHECK(summary.batches > 1);
      if (padded) CHECK(summary.computed_tokens > summary.tokens);
      for (std::size_t i = 0; i < index.size(); ++i)
        for (std::size_t c = 0; c < h; ++c)
          worst = std::max(worst, static_cast<double>(std::abs(got[i][c] - alone[index[i]][c])));
    }
  }
  CHECK(worst <= 1e-6);
  // Every batch's activations came from the workspace and went back after it.
  CHECK(ws.stats().bytes_in_use == 0);
  CHECK(ws.stats().steps == requests.size());
}

TEST_CASE("the workspace follows each batch's tokens, far below a padded reservation", "[embed]") {
  require_model();
  const auto requests = test_requests();
  frugal::pool_resource weights{frugal::host_resource{}};
  const embed::bert_model model(model_dir, weights);
  embed::run_summary s;
  (void)embed::embed_all(model, requests, {.max_batch_tokens = 256, .max_batch_sequences = 32}, 256,
                         s);
  CHECK(s.tokens == s.computed_tokens);
  CHECK(s.peak_workspace_bytes >= 256 * model.bytes_per_token() / 2);
  CHECK(s.peak_workspace_bytes <
        256 * model.bytes_per_token() + (std::size_t{1} << 20) + model.extra_bytes(256, 1));
  CHECK(s.padded_workspace_bytes > 10 * s.peak_workspace_bytes);
}

TEST_CASE("quantized projections: int8 keeps the embeddings, weights shrink", "[embed]") {
  require_model();
  const auto requests = test_requests();
  frugal::pool_resource weights{frugal::host_resource{}};
  const embed::bert_model fp32(model_dir, weights);
  const embed::bert_model int8(model_dir, weights,
                               embed::uniform_plan(frugal::quant::format::int8_channel));
  const embed::bert_model q4(model_dir, weights, embed::uniform_plan(frugal::quant::format::q4_0));
  CHECK(int8.kept_float().empty());
  CHECK(int8.projection_bytes() < fp32.projection_bytes() / 3);
  CHECK(q4.projection_bytes() < int8.projection_bytes() * 3 / 5);
  CHECK(int8.weight_bytes() - int8.projection_bytes() ==
        fp32.weight_bytes() - fp32.projection_bytes());
  embed::run_summary s;
  const auto a = embed::embed_all(fp32, requests, {}, 256, s);
  const auto b = embed::embed_all(int8, requests, {}, 256, s);
  const auto c = embed::embed_all(q4, requests, {}, 256, s);
  const auto g8 = embed::compare_embeddings(a, b);
  const auto g4 = embed::compare_embeddings(a, c);
  CHECK(g8.mean_cosine > 0.995);
  CHECK(g8.min_cosine > 0.99);
  CHECK(g4.mean_cosine < g8.mean_cosine);
  CHECK(g8.spearman > 0.99);
  const auto self = embed::compare_embeddings(a, a);
  CHECK(self.mean_cosine == Approx(1.0));
  CHECK(self.spearman == Approx(1.0));
  CHECK(self.nn_agreement == 1.0);
}
