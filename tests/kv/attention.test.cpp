// Paged attention against dense attention written here on contiguous K/V (in double): random
// page tables over a pool whose other pages, and the unused tail of every last page, hold NaN,
// so that a read outside a sequence shows in the output.
#include <frugal/kv/attention.hpp>
#include <frugal/kv/cache.hpp>
#include <frugal/kv/detail/attention_math.hpp>
#include <frugal/mr/host_resource.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <vector>

namespace {

namespace kv = frugal::kv;

/// One sequence of the test batch: its K/V rows (tokens x heads x dim) and its pages.
struct test_sequence {
  std::size_t kv_len = 0;
  std::size_t qo_len = 0;
  std::vector<float> k, v;                // what was written
  std::vector<float> k_stored, v_stored;  // what the cache holds, decoded
  std::vector<kv::page_id> pages;
};

struct test_case {
  kv::layout layout;
  std::uint32_t num_qo_heads = 0;
  std::int32_t window_left = -1;
  bool causal = true;
};

/// Dense attention of one query row in double: keys [first, position] of a contiguous sequence.
void dense_attention(const test_sequence& s, const std::vector<float>& k,
                     const std::vector<float>& v, const float* q, float* out, const test_case& c,
                     std::size_t position, std::size_t first, double sm_scale) {
  const std::size_t heads = c.layout.num_kv_heads, dim = c.layout.head_dim;
  const std::size_t group = c.num_qo_heads / heads;
  for (std::size_t qh = 0; qh < c.num_qo_heads; ++qh) {
    const std::size_t h = qh / group;
    std::vector<double> scores;
    double max = -INFINITY;
    for (std::size_t t = first; t <= position; ++t) {
      double dot = 0;
      for (std::size_t d = 0; d < dim; ++d)
        dot += double{q[qh * dim + d]} * k[(t * heads + h) * dim + d];
      scores.push_back(dot * sm_scale);
      max = std::max(max, scores.back());
    }
    double sum = 0;
    for (double& x : scores) sum += (x = std::exp(x - max));
    for (std::size_t d = 0; d < dim; ++d) {
      double acc = 0;
      for (std::size_t t = first; t <= position; ++t)
        acc += scores[t - first] * v[(t * heads + h) * dim + d];
      out[qh * dim + d] = static_cast<float>(acc / sum);
    }
  }
  (void)s;
}

/// Max over output vectors (row, head) of max |a - b| / max |b|.
double max_relative_error(const std::vector<float>& got, const std::vector<float>& want,
                          std::size_t dim) {
  double worst = 0;
  for (std::size_t i = 0; i < want.size(); i += dim) {
    double err = 0, mag = 0;
    for (std::size_t d = 0; d < dim; ++d) {
      const double diff = std::abs(double{got[i + d]} - want[i + d]);
      err = std::isnan(diff) ? INFINITY : std::max(err, diff);
      mag = std::max(mag, std::abs(double{want[i + d]}));
    }
    worst = std::max(worst, err / std::max(mag, 1e-30));
  }
  return worst;
}

/// Per-layer scales fitting the data: amax / the type's largest code, per tensor or per head.
std::vector<float> fit_scales(const kv::layout& l, const std::vector<test_sequence>& seqs) {
  if (kv::element_bytes(l.dtype) != 1) return {};
  const float top = l.dtype == kv::dtype::fp8_e4m3   ? 448.0f
                    : l.dtype == kv::dtype::fp8_e5m2 ? 57344.0f
                                                     : 127.0f;
  const std::size_t heads = l.num_kv_heads, dim = l.head_dim;
  std::vector<float> amax(2 * heads, 0.0f);
  for (const test_sequence& s : seqs)
    for (std::size_t kvi = 0; kvi < 2; ++kvi) {
      const auto& x = kvi == 0 ? s.k : s.v;
      for (std::size_t i = 0; i < x.size(); ++i)
        amax[kvi * heads + (i / dim) % heads] =
            std::max(amax[kvi * heads + (i / dim) % heads], std::abs(x[i]));
    }
  if (l.scales == kv::scale_granularity::per_tensor) {
    const float k = *std::max_element(amax.begin(), amax.begin() + heads);
    const float v = *std::max_element(amax.begin() + heads, amax.end());
    return {k / top, v / top};
  }
  for (float& a : amax) a /= top;
  return amax;
}

/// What the cache holds for `x` after encoding: the same codec round trip, row by row.
std::vector<float> stored(const kv::layout& l, const std::vector<float>& x, std::size_t kvi,
                          const std::vector<float>& scales) {
  std::vector<float> out(x.size());
  std::array<std::byte, 4> cell{};
  for (std::size_t i = 0; i < x.size(); ++i) {
    const std::size_t h = (i / l.head_dim) % l.num_kv_heads;
    const float scale = kv::detail::scale_of(l, scales.data(), kvi, h);
    kv::detail::store_element(l.dtype, cell.data(), x[i], scale);
    const float code = kv::detail::load_code(l.dtype, cell.data());
    out[i] = kv::element_bytes(l.dtype) == 1 ? code * scale : code;
  }
  return out;
}

struct batch_result {
  double error_stored = 0;  // against dense attention over what the cache holds
  double error_full = 0;    // against dense attention over the values written
  std::size_t rows = 0;
};

/// Builds a pool poisoned with 0xFF bytes (NaN for every float type), writes `lengths` sequences
/// onto random pages of it (most pages belong to nobody), and compares paged_attention through
/// both table formats with dense attention.
batch_result run_batch(const test_case& c, const std::vector<std::size_t>& lengths,
                       std::size_t max_queries, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const kv::layout& l = c.layout;
  const std::size_t heads = l.num_kv_heads, dim = l.head_dim, page_size = l.page_size;
  std::size_t needed = 0;
  for (std::size_t n : lengths) needed += (n + page_size - 1) / page_size;
  const auto num_pages = static_cast<std::uint32_t>(needed * 3 + 5);
  frugal::host_resource host;
  kv::page_pool pool{l, num_pages, host};
  std::memset(pool.memory().data(), 0xFF, pool.memory().size());

  std::vector<kv::page_id> free_pages(num_pages);
  std::iota(free_pages.begin(), free_pages.end(), 0u);
  std::shuffle(free_pages.begin(), free_pages.end(), rng);
  std::vector<test_sequence> seqs(lengths.size());
  for (std::size_t i = 0; i < lengths.size(); ++i) {
    test_sequence& s = seqs[i];
    s.kv_len = lengths[i];
    s.qo_len = 1 + rng() % std::min(max_queries, s.kv_len);
    s.k.resize(s.kv_len * heads * dim);
    s.v.resize(s.k.size());
    for (float& x : s.k) x = normal(rng);
    for (float& x : s.v) x = normal(rng);
    for (std::size_t p = 0; p < (s.kv_len + page_size - 1) / page_size; ++p) {
      s.pages.push_back(free_pages.back());
      free_pages.pop_back();
    }
  }
  const std::vector<float> scales = fit_scales(l, seqs);
  const std::uint32_t layer = l.num_layers - 1;
  for (test_sequence& s : seqs) {
    std::vector<std::int64_t> slots(s.kv_len);
    for (std::size_t t = 0; t < s.kv_len; ++t)
      slots[t] = std::int64_t{s.pages[t / page_size]} * static_cast<std::int64_t>(page_size) +
                 static_cast<std::int64_t>(t % page_size);
    kv::write_kv(pool, layer, s.k, s.v, slots, scales);
    s.k_stored = stored(l, s.k, 0, scales);
    s.v_stored = stored(l, s.v, 1, scales);
  }

  // Both page table formats of the batch.
  kv::flashinfer_page_table csr;
  kv::block_tables blocks;
  std::size_t max_pages = 0;
  for (const auto& s : seqs) max_pages = std::max(max_pages, s.pages.size());
  blocks.max_pages = max_pages;
  csr.indptr.push_back(0);
  for (const auto& s : seqs) {
    for (kv::page_id p : s.pages) csr.indices.push_back(static_cast<std::int32_t>(p));
    csr.indptr.push_back(static_cast<std::int32_t>(csr.indices.size()));
    csr.last_page_len.push_back(static_cast<std::int32_t>((s.kv_len - 1) % page_size + 1));
    for (std::size_t p = 0; p < max_pages; ++p)
      blocks.tables.push_back(p < s.pages.size() ? static_cast<std::int32_t>(s.pages[p]) : -1);
    blocks.seq_lens.push_back(static_cast<std::int32_t>(s.kv_len));
  }

  std::vector<std::int32_t> qo_indptr{0};
  for (const auto& s : seqs)
    qo_indptr.push_back(qo_indptr.back() + static_cast<std::int32_t>(s.qo_len));
  const std::size_t rows = static_cast<std::size_t>(qo_indptr.back());
  const std::size_t q_row = c.num_qo_heads * dim;
  std::vector<float> q(rows * q_row);
  for (float& x : q) x = normal(rng);
  const kv::attention_options options{
      .num_qo_heads = c.num_qo_heads, .window_left = c.window_left, .causal = c.causal};
  std::vector<float> out_csr(q.size()), out_blocks(q.size(), -1.0f);
  kv::paged_attention(pool, layer, q, qo_indptr, csr, out_csr, options, scales);
  kv::paged_attention(pool, layer, q, qo_indptr, blocks, out_blocks, options, scales);
  REQUIRE(std::memcmp(out_csr.data(), out_blocks.data(), out_csr.size() * sizeof(float)) == 0);

  std::vector<float> want_stored(q.size()), want_full(q.size());
  const double sm_scale = 1.0 / std::sqrt(static_cast<double>(dim));
  for (std::size_t i = 0; i < seqs.size(); ++i) {
    const test_sequence& s = seqs[i];
    for (std::size_t j = 0; j < s.qo_len; ++j) {
      const std::size_t row = static_cast<std::size_t>(qo_indptr[i]) + j;
      const std::size_t position = c.causal ? s.kv_len - s.qo_len + j : s.kv_len - 1;
      const std::size_t first =
          c.causal && c.window_left >= 0 && position > static_cast<std::size_t>(c.window_left)
              ? position - static_cast<std::size_t>(c.window_left)
              : 0;
      dense_attention(s, s.k_stored, s.v_stored, &q[row * q_row], &want_stored[row * q_row], c,
                      position, first, sm_scale);
      dense_attention(s, s.k, s.v, &q[row * q_row], &want_full[row * q_row], c, position, first,
                      sm_scale);
    }
  }
  return {max_relative_error(out_csr, want_stored, dim),
          max_relative_error(out_csr, want_full, dim), rows};
}

std::vector<std::size_t> random_lengths(std::size_t count, std::size_t max, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::size_t> lengths{1, max};  // the extremes, then random ones
  while (lengths.size() < count) lengths.push_back(1 + rng() % max);
  return lengths;
}

}  // namespace

TEST_CASE("paged_attention equals dense attention for every page size, GQA ratio and order",
          "[kv][attention]") {
  const std::uint32_t page_size = GENERATE(1u, 8u, 16u, 32u);
  const std::uint32_t ratio = GENERATE(1u, 2u, 4u, 8u);
  const kv::order order = GENERATE(kv::order::nhd, kv::order::hnd);
  test_case c;
  c.layout = {.num_layers = 2,
              .num_kv_heads = 2,
              .head_dim = 16,
              .page_size = page_size,
              .dtype = kv::dtype::fp32,
              .order = order};
  c.num_qo_heads = 2 * ratio;
  const auto lengths = random_lengths(6, 2000, page_size * 31 + ratio);
  const batch_result r = run_batch(c, lengths, 8, page_size * 7 + ratio);
  INFO("page_size " << page_size << " ratio " << ratio << " rows " << r.rows);
  CHECK(r.error_full <= 1e-5);
}

TEST_CASE(
    "paged_attention over every KV dtype: exact on the stored values, documented against "
    "full precision",
    "[kv][attention]") {
  const kv::dtype type = GENERATE(kv::dtype::fp32, kv::dtype::fp16, kv::dtype::bf16,
                                  kv::dtype::fp8_e4m3, kv::dtype::fp8_e5m2, kv::dtype::int8);
  const kv::scale_granularity scales =
      GENERATE(kv::scale_granularity::per_tensor, kv::scale_granularity::per_head);
  const kv::order order = GENERATE(kv::order::nhd, kv::order::hnd);
  test_case c;
  c.layout = {.num_layers = 1,
              .num_kv_heads = 4,
              .head_dim = 32,
              .page_size = 16,
              .dtype = type,
              .order = order,
              .scales = scales};
  c.num_qo_heads = 16;
  const auto lengths = random_lengths(5, 700, 11);
  const batch_result r = run_batch(c, lengths, 4, 12);
  INFO(kv::to_string(type) << " per_head " << (scales == kv::scale_granularity::per_head)
                           << ": against stored " << r.error_stored << ", against full "
                           << r.error_full);
  CHECK(r.error_stored <= 1e-5);
  // Against the values before encoding: the type's own rounding, not the kernel's (docs/kv.md
  // gives the measured figures for these sequences of N(0, 1) data). bf16 keeps 8 significant
  // bits (relative rounding up to 2^-9 per element), so it cannot meet fp16's 2e-3.
  const double full_bound = type == kv::dtype::fp32       ? 1e-5
                            : type == kv::dtype::fp16     ? 2e-3
                            : type == kv::dtype::bf16     ? 1e-2
                            : type == kv::dtype::int8     ? 5e-2
                            : type == kv::dtype::fp8_e4m3 ? 0.15
                                                          : 0.25;
  CHECK(r.error_full <= full_bound);
}

TEST_CASE("paged_attention: sliding window and non-causal attention", "[kv][attention]") {
  test_case c;
  c.layout = {
      .num_layers = 1, .num_kv_heads = 2, .head_dim = 8, .page_size = 8, .dtype = kv::dtype::fp32};
  c.num_qo_heads = 4;
  SECTION("window") {
    c.window_left = GENERATE(0, 1, 7, 8, 100);
    const batch_result r = run_batch(c, random_lengths(6, 300, 3), 20, 4);
    INFO("window_left " << c.window_left);
    CHECK(r.error_full <= 1e-5);
  }
  SECTION("not causal: every query sees every key") {
    c.causal = false;
    const batch_result r = run_batch(c, random_lengths(6, 300, 5), 20, 6);
    CHECK(r.error_full <= 1e-5);
  }
}

TEST_CASE("paged_attention is stable for scores far beyond exp's range", "[kv][attention]") {
  frugal::host_resource host;
  const kv::layout l{
      .num_layers = 1, .num_kv_heads = 1, .head_dim = 4, .page_size = 2, .dtype = kv::dtype::fp32};
  kv::page_pool pool{l, 4, host};
  // Two keys with scores 1000 and 990: the weights are 1 and e^-10 (no overflow to inf).
  const std::vector<float> k{100, 0, 0, 0, 99, 0, 0, 0};
  const std::vector<float> v{1, 0, 0, 0, 0, 1, 0, 0};
  const std::vector<std::int64_t> slots{6, 7};
  kv::write_kv(pool, 0, k, v, slots);
  const std::vector<float> q{10, 0, 0, 0};
  kv::flashinfer_page_table table{{0, 1}, {3}, {2}};
  const std::vector<std::int32_t> qo{0, 1};
  std::vector<float> out(4);
  kv::paged_attention(pool, 0, q, qo, table, out, {.num_qo_heads = 1, .sm_scale = 1.0f});
  const double w = std::exp(-10.0);
  CHECK(out[0] == Approx(1 / (1 + w)).epsilon(1e-6));
  CHECK(out[1] == Approx(w / (1 + w)).epsilon(1e-5));
}

TEST_CASE("write_kv and paged_attention over a kv::cache's slots and exports", "[kv][attention]") {
  frugal::host_resource host;
  const kv::layout l{
      .num_layers = 2, .num_kv_heads = 2, .head_dim = 8, .page_size = 4, .dtype = kv::dtype::fp32};
  kv::cache cache{l, 32, host, {.enable_prefix_caching = false, .watermark = 0}};
  std::mt19937_64 rng(9);
  std::normal_distribution<float> normal;
  std::vector<kv::token_id> prompt_a(10, 5), prompt_b(3, 7);
  auto a = cache.add_sequence(prompt_a);
  auto b = cache.add_sequence(prompt_b);
  const std::vector<const kv::sequence*> batch{&a, &b};
  const auto slots = cache.slot_mapping(batch);
  REQUIRE(slots.size() == 13);
  std::vector<float> k(13 * 16), v(13 * 16);
  for (float& x : k) x = normal(rng);
  for (float& x : v) x = normal(rng);
  kv::write_kv(cache.pages(), 1, k, v, slots);
  // One decode query for each sequence: the last token of each.
  const auto table = cache.export_flashinfer(batch);
  std::vector<float> q(2 * 4 * 8);
  for (float& x : q) x = normal(rng);
  const std::vector<std::int32_t> qo{0, 1, 2};
  std::vector<float> out(q.size());
  kv::paged_attention(cache.pages(), 1, q, qo, table, out, {.num_qo_heads = 4});
  // Sequence b alone, over its three contiguous rows (rows 10..12 of k/v), head 3 -> KV head 1.
  const float* qb = &q[(1 * 4 + 3) * 8];
  std::vector<double> w(3);
  double sum = 0;
  for (std::size_t t = 0; t < 3; ++t) {
    double dot = 0;
    for (std::size_t d = 0; d < 8; ++d) dot += double{qb[d]} * k[((10 + t) * 2 + 1) * 8 + d];
    sum += (w[t] = std::exp(dot / std::sqrt(8.0)));
  }
  for (std::size_t d = 0; d < 8; ++d) {
    double want = 0;
    for (std::size_t t = 0; t < 3; ++t) want += w[t] / sum * v[((10 + t) * 2 + 1) * 8 + d];
    CHECK(out[(1 * 4 + 3) * 8 + d] == Approx(want).epsilon(1e-5).margin(1e-6));
  }
}

TEST_CASE("write_kv and paged_attention refuse bad input and change nothing", "[kv][attention]") {
  frugal::host_resource host;
  const kv::layout l{
      .num_layers = 2, .num_kv_heads = 2, .head_dim = 4, .page_size = 4, .dtype = kv::dtype::fp32};
  kv::page_pool pool{l, 4, host};
  std::memset(pool.memory().data(), 0x5A, pool.memory().size());
  const std::vector<std::byte> before(pool.memory().begin(), pool.memory().end());
  const auto unchanged = [&] {
    return std::equal(before.begin(), before.end(), pool.memory().begin());
  };
  const std::vector<float> row(8, 1.0f), two_rows(16, 1.0f);
  const std::vector<std::int64_t> one_slot{3}, bad_slot{16};

  SECTION("write_kv") {
    CHECK_THROWS_AS(kv::write_kv(pool, 2, row, row, one_slot), frugal::invalid_argument);
    CHECK_THROWS_AS(kv::write_kv(pool, 0, two_rows, row, one_slot), frugal::invalid_argument);
    CHECK_THROWS_AS(kv::write_kv(pool, 0, row, row, bad_slot), frugal::invalid_argument);
    const std::vector<float> scales{1.0f, 1.0f};
    CHECK_THROWS_WITH(kv::write_kv(pool, 0, row, row, one_slot, scales),
                      Catch::Contains("takes 0 scales per layer, 2 given"));
    CHECK(unchanged());
    // A negative slot is padding: nothing is written for it.
    const std::vector<std::int64_t> padding{-1};
    kv::write_kv(pool, 0, row, row, padding);
    CHECK(unchanged());
  }
  SECTION("8-bit scales") {
    const kv::layout l8{.num_layers = 1,
                        .num_kv_heads = 2,
                        .head_dim = 4,
                        .page_size = 4,
                        .dtype = kv::dtype::int8,
                        .scales = kv::scale_granularity::per_head};
    kv::page_pool pool8{l8, 2, host};
    std::memset(pool8.memory().data(), 0, pool8.memory().size());
    const std::vector<float> too_few{1.0f, 1.0f}, zero{1, 1, 0, 1}, nan{1, 1, NAN, 1};
    CHECK_THROWS_WITH(kv::write_kv(pool8, 0, row, row, one_slot, too_few),
                      Catch::Contains("int8 KV takes 4 scales per layer, 2 given"));
    CHECK_THROWS_WITH(kv::write_kv(pool8, 0, row, row, one_slot, zero),
                      Catch::Contains("positive and finite"));
    CHECK_THROWS_AS(kv::write_kv(pool8, 0, row, row, one_slot, nan), frugal::invalid_argument);
    CHECK(std::all_of(pool8.memory().begin(), pool8.memory().end(),
                      [](std::byte b) { return b == std::byte{0}; }));
  }
  SECTION("paged_attention") {
    std::vector<float> q(2 * 4, 1.0f), out(2 * 4, -7.0f);
    const std::vector<std::int32_t> qo{0, 1};
    const auto untouched = [&] {
      return std::all_of(out.begin(), out.end(), [](float x) { return x == -7.0f; });
    };
    const kv::attention_options opts{.num_qo_heads = 2};
    kv::flashinfer_page_table good{{0, 1}, {2}, {3}};
    kv::flashinfer_page_table page_outside{{0, 1}, {4}, {3}};
    kv::flashinfer_page_table bad_last{{0, 1}, {2}, {5}};
    kv::flashinfer_page_table zero_last{{0, 1}, {2}, {0}};
    kv::flashinfer_page_table short_last{{0, 1}, {2}, {}};
    kv::flashinfer_page_table bad_indptr{{0, 3}, {2}, {1}};
    CHECK_THROWS_WITH(kv::paged_attention(pool, 0, q, qo, page_outside, out, opts),
                      Catch::Contains("page id 4 is outside the pool"));
    CHECK_THROWS_WITH(kv::paged_attention(pool, 0, q, qo, bad_last, out, opts),
                      Catch::Contains("last_page_len of sequence 0 is outside 1..4"));
    CHECK_THROWS_AS(kv::paged_attention(pool, 0, q, qo, zero_last, out, opts),
                    frugal::invalid_argument);
    CHECK_THROWS_AS(kv::paged_attention(pool, 0, q, qo, short_last, out, opts),
                    frugal::invalid_argument);
    CHECK_THROWS_AS(kv::paged_attention(pool, 0, q, qo, bad_indptr, out, opts),
                    frugal::invalid_argument);
    CHECK_THROWS_WITH(kv::paged_attention(pool, 0, q, qo, good, out, {.num_qo_heads = 3}),
                      Catch::Contains("positive multiple of num_kv_heads"));
    CHECK_THROWS_AS(kv::paged_attention(pool, 0, q, qo, good, out, {.num_qo_heads = 0}),
                    frugal::invalid_argument);
    CHECK_THROWS_AS(kv::paged_attention(pool, 2, q, qo, good, out, opts), frugal::invalid_argument);
    const std::vector<std::int32_t> too_many_queries{0, 4};
    std::vector<float> q4(4 * 8), out4(4 * 8, -7.0f);
    CHECK_THROWS_WITH(kv::paged_attention(pool, 0, q4, too_many_queries, good, out4, opts),
                      Catch::Contains("has 4 queries but 3 tokens"));
    std::vector<float> short_out(4);
    CHECK_THROWS_AS(kv::paged_attention(pool, 0, q, qo, good, short_out, opts),
                    frugal::invalid_argument);
    kv::block_tables blocks{{2}, 1, {5}};
    CHECK_THROWS_WITH(kv::paged_attention(pool, 0, q, qo, blocks, out, opts),
                      Catch::Contains("does not fit max_pages"));
    CHECK(untouched());
    CHECK(unchanged());
  }
}

TEST_CASE("kv dtype names round trip", "[kv][attention]") {
  for (const kv::dtype t : {kv::dtype::fp16, kv::dtype::bf16, kv::dtype::fp8_e4m3,
                            kv::dtype::fp8_e5m2, kv::dtype::int8, kv::dtype::fp32})
    CHECK(kv::parse_dtype(kv::to_string(t)) == t);
  CHECK(kv::parse_dtype("fp8") == kv::dtype::fp8_e4m3);
  CHECK(kv::element_bytes(kv::dtype::fp32) == 4);
  CHECK_THROWS_WITH(kv::parse_dtype("fp4"), Catch::Contains("known: fp16"));
}

TEST_CASE("decode splits merge into the whole attention (the device kernel's plan, on the CPU)",
          "[kv][attention]") {
  // paged_decode_device cuts each sequence's pages into splits (detail::keys_of_split), computes a
  // softmax state and an unnormalised accumulator per split, then merges them with
  // detail::merge_partials. The same plan and merge, run here one key at a time as a kernel's
  // warp does, must give dense attention.
  std::mt19937_64 rng(21);
  std::normal_distribution<float> normal;
  const std::size_t dim = 16, page_size = 16;
  for (const std::size_t length :
       {std::size_t{1}, std::size_t{16}, std::size_t{17}, std::size_t{999}}) {
    for (const std::size_t per_split : {std::size_t{1}, std::size_t{3}, std::size_t{64}}) {
      for (const std::int32_t window : {-1, 0, 40}) {
        std::vector<float> k(length * dim), v(length * dim), q(dim);
        for (float& x : k) x = normal(rng);
        for (float& x : v) x = normal(rng);
        for (float& x : q) x = normal(rng);
        const std::size_t pages = (length + page_size - 1) / page_size;
        const std::size_t last = length - (pages - 1) * page_size;
        const std::size_t splits = kv::detail::num_splits(pages + 2, per_split);  // room to spare
        std::vector<float> maxes(splits), sums(splits), accs(splits * dim, 0.0f);
        for (std::size_t s = 0; s < splits; ++s) {
          const kv::detail::split_keys keys =
              kv::detail::keys_of_split(pages, last, page_size, s, per_split, window);
          REQUIRE(keys.kv_len == length);
          kv::detail::softmax_state state;
          for (std::size_t p = keys.page_begin; p < keys.page_end; ++p)
            for (std::size_t t = p * page_size; t < std::min(keys.kv_len, (p + 1) * page_size);
                 ++t) {
              if (t < keys.first) continue;
              float score = 0;
              for (std::size_t d = 0; d < dim; ++d) score += q[d] * k[t * dim + d];
              score /= 4.0f;  // 1 / sqrt(16)
              const float max = std::max(state.max, score);
              const float correction = state.sum == 0 ? 0.0f : std::exp(state.max - max);
              const float weight = std::exp(score - max);
              state.sum = state.sum * correction + weight;
              state.max = max;
              for (std::size_t d = 0; d < dim; ++d)
                accs[s * dim + d] = accs[s * dim + d] * correction + weight * v[t * dim + d];
            }
          maxes[s] = state.max;
          sums[s] = state.sum;
        }
        test_case c;
        c.layout = {.num_layers = 1,
                    .num_kv_heads = 1,
                    .head_dim = dim,
                    .page_size = 16,
                    .dtype = kv::dtype::fp32};
        c.num_qo_heads = 1;
        test_sequence seq;
        std::vector<float> want(dim), got(dim);
        const std::size_t first =
            window >= 0 && length - 1 > static_cast<std::size_t>(window) ? length - 1 - window : 0;
        dense_attention(seq, k, v, q.data(), want.data(), c, length - 1, first, 0.25);
        for (std::size_t d = 0; d < dim; ++d)
          got[d] =
              kv::detail::merge_partials(maxes.data(), sums.data(), accs.data(), splits, dim, d);
        INFO("length " << length << ", " << per_split << " pages per split, window " << window);
        CHECK(max_relative_error(got, want, dim) <= 1e-5);
      }
    }
  }
  // No key at all: 0, not NaN.
  const float none_max = -INFINITY, none_sum = 0, none_acc = 0;
  CHECK(kv::detail::merge_partials(&none_max, &none_sum, &none_acc, 1, 1, 0) == 0.0f);
}

TEST_CASE(
    "write_kv_device's per-thread work, run for every thread on the CPU, writes write_kv's "
    "bytes",
    "[kv][attention]") {
  frugal::host_resource host;
  const kv::dtype type =
      GENERATE(kv::dtype::fp32, kv::dtype::bf16, kv::dtype::fp8_e5m2, kv::dtype::int8);
  const kv::order order = GENERATE(kv::order::nhd, kv::order::hnd);
  const kv::layout l{.num_layers = 2,
                     .num_kv_heads = 3,
                     .head_dim = 5,
                     .page_size = 4,
                     .dtype = type,
                     .order = order,
                     .scales = kv::scale_granularity::per_head};
  kv::page_pool reference{l, 6, host}, emulated{l, 6, host};
  std::memset(reference.memory().data(), 0xCD, reference.memory().size());
  std::memset(emulated.memory().data(), 0xCD, emulated.memory().size());
  std::mt19937_64 rng(8);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  std::vector<std::int64_t> slots{0, 23, 5, -1, 17, 9, 12};
  std::vector<float> k(slots.size() * 15), v(k.size());
  for (float& x : k) x = normal(rng);
  for (float& x : v) x = normal(rng);
  std::vector<float> scales{0.01f, 0.02f, 0.03f, 0.04f, 0.05f, 0.06f};
  if (l.scales_per_layer() == 0) scales.clear();
  kv::write_kv(reference, 1, k, v, slots, scales);
  slots.push_back(24);  // past the pool: the kernel skips it rather than write out of bounds
  k.resize(k.size() + 15, 1.0f);
  v.resize(v.size() + 15, 1.0f);
  const kv::page_addressing a = emulated.addressing();
  for (std::size_t t = 0; t < slots.size(); ++t)  // every block ...
    for (std::size_t e = 0; e < 2 * 15; ++e)      // ... and every thread
      kv::detail::write_kv_element(l, a, 1, k.data(), v.data(), slots[t], 24, t, e, scales.data());
  CHECK(std::memcmp(reference.memory().data(), emulated.memory().data(),
                    reference.memory().size()) == 0);
}
