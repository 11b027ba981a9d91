// bert_model on a tiny BERT written here (random weights, hidden size 8): loading errors, and
// projections a format cannot hold kept in float32 and listed. Needs no real model.
#include "bert.hpp"
#include "serve.hpp"

#include <frugal/error.hpp>
#include <frugal/mr/host_resource.hpp>
#include <frugal/mr/pool.hpp>
#include <frugal/quant/safetensors.hpp>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <vector>

namespace fs = std::filesystem;
namespace fq = frugal::quant;

namespace {

constexpr std::size_t hidden = 8, inter = 16, vocab = 10, positions = 16;

nlohmann::json tiny_config() {
  return {{"model_type", "bert"},       {"hidden_act", "gelu"},
          {"vocab_size", vocab},        {"hidden_size", hidden},
          {"num_hidden_layers", 1},     {"num_attention_heads", 2},
          {"intermediate_size", inter}, {"max_position_embeddings", positions},
          {"type_vocab_size", 2},       {"layer_norm_eps", 1e-12}};
}

/// Writes config.json and model.safetensors of a one-layer BERT into `dir`, leaving out the
/// tensor `skip` and giving `reshape` one row too many.
void write_tiny_bert(const fs::path& dir, const std::string& skip = "",
                     const std::string& reshape = "") {
  fs::create_directories(dir);
  std::ofstream(dir / "config.json") << tiny_config().dump();
  std::map<std::string, std::vector<std::size_t>> shapes{
      {"embeddings.word_embeddings.weight", {vocab, hidden}},
      {"embeddings.position_embeddings.weight", {positions, hidden}},
      {"embeddings.token_type_embeddings.weight", {2, hidden}},
      {"embeddings.LayerNorm.weight", {hidden}},
      {"embeddings.LayerNorm.bias", {hidden}}};
  const std::string p = "encoder.layer.0.";
  for (const char* n : {"attention.self.query", "attention.self.key", "attention.self.value",
                        "attention.output.dense"}) {
    shapes[p + n + ".weight"] = {hidden, hidden};
    shapes[p + n + ".bias"] = {hidden};
  }
  shapes[p + "intermediate.dense.weight"] = {inter, hidden};
  shapes[p + "intermediate.dense.bias"] = {inter};
  shapes[p + "output.dense.weight"] = {hidden, inter};
  shapes[p + "output.dense.bias"] = {hidden};
  for (const char* n : {"attention.output.LayerNorm", "output.LayerNorm"}) {
    shapes[p + n + ".weight"] = {hidden};
    shapes[p + n + ".bias"] = {hidden};
  }
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 0.5f);
  std::vector<std::vector<float>> data;
  std::vector<fq::tensor_to_write> tensors;
  for (auto& [name, shape] : shapes) {
    if (name == skip) continue;
    if (name == reshape) ++shape[0];
    std::size_t n = 1;
    for (auto d : shape) n *= d;
    auto& values = data.emplace_back(n);
    for (auto& v : values) v = normal(rng) + (name.find("LayerNorm.weight") != std::string::npos);
    tensors.push_back({name, fq::dtype::f32, shape, std::as_bytes(std::span<const float>(values))});
  }
  fq::write_safetensors(dir / "model.safetensors", tensors);
}

}  // namespace

TEST_CASE("a projection a format cannot hold stays float32 and is listed", "[embed]") {
  const fs::path dir = fs::temp_directory_path() / "frugal_embed_tiny_bert";
  write_tiny_bert(dir);
  frugal::pool_resource weights{frugal::host_resource{}};
  {
    const embed::bert_model fp32(dir, weights);
    // int8_g32 needs rows of a multiple of 32 elements: 8 and 16 columns do not qualify.
    const embed::bert_model g32(dir, weights, embed::uniform_plan(fq::format::int8_g32));
    CHECK(g32.kept_float().size() == 6);
    CHECK_THAT(g32.kept_float().front(), Catch::Contains("encoder.layer.0."));
    CHECK(g32.weight_bytes() == fp32.weight_bytes());
    const embed::bert_model channel(dir, weights, embed::uniform_plan(fq::format::int8_channel));
    CHECK(channel.kept_float().empty());
    CHECK(channel.projection_bytes() < fp32.projection_bytes());

    frugal::host_resource host;
    frugal::batch::workspace ws{host, {.bytes_per_token = fp32.bytes_per_token()}};
    const std::vector<std::int32_t> ids{2, 5, 7, 3};
    const embed::sequence s{ids, ids.size()};
    std::vector<float> a(hidden), b(hidden), c(hidden);
    fp32.embed(std::span(&s, 1), ws, a);
    g32.embed(std::span(&s, 1), ws, b);
    channel.embed(std::span(&s, 1), ws, c);
    CHECK(a == b);  // nothing was quantized
    CHECK(a != c);
    double norm = 0;
    for (float v : a) norm += static_cast<double>(v) * v;
    CHECK(norm == Approx(1.0));

    const std::vector<std::int32_t> bad_id{2, 10, 3};
    const embed::sequence bad{bad_id, bad_id.size()};
    CHECK_THROWS_AS(fp32.embed(std::span(&bad, 1), ws, a), frugal::invalid_argument);
    CHECK(ws.stats().bytes_in_use == 0);
    CHECK(weights.stats().bytes_in_use > 0);
  }
  CHECK(weights.stats().bytes_in_use == 0);  // the models gave every weight back
  fs::remove_all(dir);
}

TEST_CASE("a missing or mis-shaped tensor is an error naming it, and nothing leaks", "[embed]") {
  const fs::path dir = fs::temp_directory_path() / "frugal_embed_tiny_bert_bad";
  frugal::pool_resource weights{frugal::host_resource{}};
  write_tiny_bert(dir, "encoder.layer.0.output.dense.weight");
  CHECK_THROWS_WITH(embed::bert_model(dir, weights),
                    Catch::Contains("no tensor encoder.layer.0.output.dense.weight"));
  CHECK(weights.stats().bytes_in_use == 0);
  fs::remove_all(dir);
  write_tiny_bert(dir, "", "encoder.layer.0.attention.self.key.weight");
  CHECK_THROWS_WITH(embed::bert_model(dir, weights, embed::uniform_plan(fq::format::int8)),
                    Catch::Contains("attention.self.key.weight does not have the shape"));
  CHECK(weights.stats().bytes_in_use == 0);
  fs::remove_all(dir);
}

TEST_CASE("config.json: not BERT, unsupported or inconsistent is refused", "[embed]") {
  const fs::path dir = fs::temp_directory_path() / "frugal_embed_config";
  fs::create_directories(dir);
  const auto with = [&](const nlohmann::json& j) {
    std::ofstream(dir / "config.json") << j.dump();
    return dir / "config.json";
  };
  CHECK(embed::bert_config::from_file(with(tiny_config())).heads == 2);
  auto j = tiny_config();
  j["model_type"] = "llama";
  CHECK_THROWS_WITH(embed::bert_config::from_file(with(j)), Catch::Contains("not \"bert\""));
  j = tiny_config();
  j["hidden_act"] = "relu";
  CHECK_THROWS_WITH(embed::bert_config::from_file(with(j)), Catch::Contains("relu"));
  j = tiny_config();
  j["position_embedding_type"] = "relative_key";
  CHECK_THROWS_WITH(embed::bert_config::from_file(with(j)), Catch::Contains("relative_key"));
  j = tiny_config();
  j["hidden_size"] = -8;
  CHECK_THROWS_WITH(embed::bert_config::from_file(with(j)), Catch::Contains("hidden_size"));
  j = tiny_config();
  j["num_attention_heads"] = 3;
  CHECK_THROWS_WITH(embed::bert_config::from_file(with(j)), Catch::Contains("multiple"));
  std::ofstream(dir / "config.json") << "[1, 2";
  CHECK_THROWS_WITH(embed::bert_config::from_file(dir / "config.json"),
                    Catch::Contains("not valid JSON"));
  fs::remove_all(dir);
  CHECK_THROWS_WITH(embed::bert_config::from_file(dir / "config.json"),
                    Catch::Contains("cannot open"));
}

TEST_CASE("tiny BERT: packed, padded and threaded batches give each sequence's own embedding",
          "[embed]") {
  // The same paths as the real-model tests (which the sanitizer run leaves out for their
  // time), on a model small enough for AddressSanitizer to go through in milliseconds.
  const fs::path dir = fs::temp_directory_path() / "frugal_embed_tiny_bert_packing";
  write_tiny_bert(dir);
  frugal::pool_resource weights{frugal::host_resource{}};
  const embed::bert_model fp32(dir, weights);
  const embed::bert_model int8(dir, weights, embed::uniform_plan(fq::format::int8_channel));
  const std::vector<std::vector<std::int32_t>> requests{
      {2, 3},
      {2, 5, 6, 7, 8, 9, 3},
      {2, 4, 3},
      {2, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 3},
      {2, 1, 3}};
  for (const embed::bert_model* model : {&fp32, &int8}) {
    embed::run_summary s;
    const auto alone = embed::embed_all(*model, requests, {.max_batch_sequences = 1}, 16, s);
    CHECK(s.batches == requests.size());
    for (const auto& [threads, padded] : {std::pair{1u, false}, {2u, true}, {3u, false}}) {
      const auto packed = embed::embed_all(
          *model, requests,
          {.max_batch_tokens = 20, .max_batch_sequences = 4, .padded = padded, .threads = threads},
          16, s);
      CHECK(s.batches == 2);
      CHECK(packed == alone);
    }
  }
  embed::run_summary s;
  CHECK_THROWS_AS(embed::embed_all(fp32, requests, {.max_batch_tokens = 10}, 16, s),
                  frugal::invalid_argument);  // a request longer than the token budget
  fs::remove_all(dir);
}
