// examples/embed/serve.hpp: dynamic batching of embedding requests and the model-level
// comparison of quantized weights against float32.
//   embed::batching_options opts{.max_batch_tokens = 4096};
//   embed::run_summary summary;
//   auto vectors = embed::embed_all(model, requests, opts, summary);   // one per request
#pragma once

#include "bert.hpp"

#include <cstddef>
#include <cstdint>
#include <vector>

namespace embed {

/// @brief How requests become batches.
struct batching_options {
  /// Dynamic packing: requests in arrival order join a batch while its tokens stay within this
  /// budget (a request longer than the budget is refused up front).
  std::size_t max_batch_tokens = 4096;
  /// At most this many sequences per batch.
  std::size_t max_batch_sequences = 64;
  /// The baseline instead: fixed batches of max_batch_sequences, each padded to its longest.
  bool padded = false;
  unsigned threads = 1;
};

/// @brief What a run did.
struct run_summary {
  std::size_t sentences = 0;
  std::size_t tokens = 0;           // real tokens ([CLS] and [SEP] included)
  std::size_t computed_tokens = 0;  // tokens plus padding
  std::size_t batches = 0;
  std::size_t peak_workspace_bytes = 0;  // most the workspace held from its upstream
  /// A static engine's reservation: every batch padded to max_length x max_batch_sequences.
  std::size_t padded_workspace_bytes = 0;
  double seconds = 0;
};

/// @brief Embeds every request (token ids, 1..max_length each) through batches of `opts`, each
/// batch's activations from one step of a batch::workspace over host memory; returns one
/// embedding per request, in order.
/// @throws frugal::invalid_argument when a request is longer than max_batch_tokens or
///   max_length, or the options are zero.
std::vector<std::vector<float>> embed_all(const bert_model& model,
                                          const std::vector<std::vector<std::int32_t>>& requests,
                                          const batching_options& opts, std::size_t max_length,
                                          run_summary& summary);

/// @brief Agreement of embeddings `b` with reference embeddings `a` (same sentences, rows
/// L2-normalised).
struct agreement {
  double mean_cosine = 0, min_cosine = 0;
  double spearman = 0;      // rank correlation of all pairwise similarities (1 when < 2 pairs)
  double nn_agreement = 0;  // fraction of sentences whose nearest neighbour is the same
};
agreement compare_embeddings(const std::vector<std::vector<float>>& a,
                             const std::vector<std::vector<float>>& b);

}  // namespace embed
