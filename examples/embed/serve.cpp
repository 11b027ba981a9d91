// Dynamic batching and the comparison metrics.
#include "serve.hpp"

#include <frugal/error.hpp>
#include <frugal/mr/host_resource.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>

namespace embed {
namespace {

double dot(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0;
  for (std::size_t i = 0; i < a.size(); ++i) s += static_cast<double>(a[i]) * b[i];
  return s;
}

double cosine(const std::vector<float>& a, const std::vector<float>& b) {
  const double na = std::sqrt(dot(a, a)), nb = std::sqrt(dot(b, b));
  return na == 0 || nb == 0 ? 0.0 : dot(a, b) / (na * nb);
}

/// Ranks 1..n, ties sharing their mean rank.
std::vector<double> ranks(const std::vector<double>& v) {
  std::vector<std::size_t> order(v.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](auto i, auto j) { return v[i] < v[j]; });
  std::vector<double> r(v.size());
  for (std::size_t i = 0; i < order.size();) {
    std::size_t j = i;
    while (j + 1 < order.size() && v[order[j + 1]] == v[order[i]]) ++j;
    const double mean_rank = (static_cast<double>(i) + static_cast<double>(j)) / 2.0 + 1.0;
    for (std::size_t k = i; k <= j; ++k) r[order[k]] = mean_rank;
    i = j + 1;
  }
  return r;
}

double pearson(const std::vector<double>& x, const std::vector<double>& y) {
  const double n = static_cast<double>(x.size());
  const double mx = std::accumulate(x.begin(), x.end(), 0.0) / n;
  const double my = std::accumulate(y.begin(), y.end(), 0.0) / n;
  double sxy = 0, sxx = 0, syy = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    sxy += (x[i] - mx) * (y[i] - my);
    sxx += (x[i] - mx) * (x[i] - mx);
    syy += (y[i] - my) * (y[i] - my);
  }
  return sxx == 0 || syy == 0 ? (sxx == syy ? 1.0 : 0.0) : sxy / std::sqrt(sxx * syy);
}

}  // namespace

std::vector<std::vector<float>> embed_all(const bert_model& model,
                                          const std::vector<std::vector<std::int32_t>>& requests,
                                          const batching_options& opts, std::size_t max_length,
                                          run_summary& summary) {
  FRUGAL_EXPECTS(opts.max_batch_tokens > 0 && opts.max_batch_sequences > 0 && max_length > 0,
                 "embed_all: batch limits and max_length must be positive",
                 frugal::invalid_argument);
  for (std::size_t i = 0; i < requests.size(); ++i)
    FRUGAL_EXPECTS(!requests[i].empty() && requests[i].size() <= max_length &&
                       (opts.padded || requests[i].size() <= opts.max_batch_tokens),
                   "embed_all: request " + std::to_string(i) + " has " +
                       std::to_string(requests[i].size()) +
                       " tokens, more than max_length or the batch token budget (or none)",
                   frugal::invalid_argument);
  const auto started = std::chrono::steady_clock::now();
  frugal::host_resource host;
  const unsigned threads = std::max(1u, opts.threads);
  // Activations of a step, rounded to 64 KiB: a CPU needs no 2 MiB granules.
  frugal::batch::workspace ws{
      host, {.bytes_per_token = model.bytes_per_token(), .granularity = std::size_t{64} << 10}};
  const std::size_t h = model.hidden();
  std::vector<std::vector<float>> result(requests.size());
  summary = {};
  summary.sentences = requests.size();
  summary.padded_workspace_bytes = model.bytes_per_token() * max_length * opts.max_batch_sequences +
                                   model.extra_bytes(max_length, threads);

  std::vector<sequence> batch;
  std::vector<std::size_t> members;
  std::vector<float> out;
  const auto flush = [&] {
    if (batch.empty()) return;
    if (opts.padded) {
      std::size_t longest = 0;
      for (const auto& s : batch) longest = std::max(longest, s.ids.size());
      for (auto& s : batch) s.length = longest;
    }
    for (const auto& s : batch) summary.computed_tokens += s.length;
    out.assign(batch.size() * h, 0.0f);
    model.embed(batch, ws, out, threads);
    for (std::size_t i = 0; i < members.size(); ++i)
      result[members[i]].assign(out.begin() + static_cast<std::ptrdiff_t>(i * h),
                                out.begin() + static_cast<std::ptrdiff_t>((i + 1) * h));
    ++summary.batches;
    batch.clear();
    members.clear();
  };
  std::size_t batch_tokens = 0;
  for (std::size_t i = 0; i < requests.size(); ++i) {
    const std::size_t n = requests[i].size();
    const bool full = batch.size() >= opts.max_batch_sequences ||
                      (!opts.padded && batch_tokens + n > opts.max_batch_tokens);
    if (full) {
      flush();
      batch_tokens = 0;
    }
    batch.push_back({requests[i], n});
    members.push_back(i);
    batch_tokens += n;
    summary.tokens += n;
  }
  flush();
  summary.peak_workspace_bytes = ws.stats().peak_bytes_reserved;
  summary.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return result;
}

agreement compare_embeddings(const std::vector<std::vector<float>>& a,
                             const std::vector<std::vector<float>>& b) {
  FRUGAL_EXPECTS(a.size() == b.size() && !a.empty(),
                 "compare_embeddings: need the same, non-zero number of embeddings",
                 frugal::invalid_argument);
  agreement g;
  g.min_cosine = 1.0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double c = cosine(a[i], b[i]);
    g.mean_cosine += c;
    g.min_cosine = std::min(g.min_cosine, c);
  }
  g.mean_cosine /= static_cast<double>(a.size());
  const std::size_t n = a.size();
  std::vector<double> sa, sb;
  std::vector<std::size_t> nn_a(n, 0), nn_b(n, 0);
  std::vector<double> best_a(n, -2.0), best_b(n, -2.0);
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t j = i + 1; j < n; ++j) {
      const double x = cosine(a[i], a[j]), y = cosine(b[i], b[j]);
      sa.push_back(x);
      sb.push_back(y);
      // Nearest neighbours: the first of equal similarities wins, in both.
      if (x > best_a[i]) best_a[i] = x, nn_a[i] = j;
      if (x > best_a[j]) best_a[j] = x, nn_a[j] = i;
      if (y > best_b[i]) best_b[i] = y, nn_b[i] = j;
      if (y > best_b[j]) best_b[j] = y, nn_b[j] = i;
    }
  g.spearman = sa.size() < 2 ? 1.0 : pearson(ranks(sa), ranks(sb));
  std::size_t same = 0;
  for (std::size_t i = 0; i < n; ++i) same += nn_a[i] == nn_b[i];
  g.nn_agreement = n < 2 ? 1.0 : static_cast<double>(same) / static_cast<double>(n);
  return g;
}

}  // namespace embed
