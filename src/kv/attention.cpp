// Paged attention on the CPU: write_kv encodes rows into their slots; paged_attention walks each
// query's pages with an online softmax, one page of keys at a time.
#include <frugal/kv/attention.hpp>
#include <frugal/kv/detail/attention_math.hpp>

#include <array>
#if defined(__x86_64__)
#include <immintrin.h>
#endif
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

namespace frugal::kv {

namespace detail {

std::size_t kv_len_of(const paged_kv& table, std::size_t i, std::uint32_t page_size) noexcept {
  if (table.kind == paged_kv::format::block_tables)
    return static_cast<std::size_t>(table.seq_lens[i]);
  const auto pages = static_cast<std::size_t>(table.indptr[i + 1] - table.indptr[i]);
  return pages == 0 ? 0
                    : (pages - 1) * page_size + static_cast<std::size_t>(table.last_page_len[i]);
}

void check_table(const paged_kv& table, const page_pool& pages, const char* who) {
  const std::string name = who;
  const std::uint32_t page_size = pages.layout().page_size;
  auto check_page = [&](std::int32_t id) {
    FRUGAL_EXPECTS(id >= 0 && static_cast<std::uint32_t>(id) < pages.num_pages(),
                   name + ": page id " + std::to_string(id) + " is outside the pool (" +
                       std::to_string(pages.num_pages()) + " pages)",
                   invalid_argument);
  };
  if (table.kind == paged_kv::format::flashinfer) {
    FRUGAL_EXPECTS(!table.indptr.empty() && table.indptr.front() == 0,
                   name + ": indptr must start at 0", invalid_argument);
    const std::size_t batch = table.indptr.size() - 1;
    FRUGAL_EXPECTS(table.last_page_len.size() == batch,
                   name + ": last_page_len has " + std::to_string(table.last_page_len.size()) +
                       " entries for " + std::to_string(batch) + " sequences",
                   invalid_argument);
    for (std::size_t i = 0; i < batch; ++i) {
      FRUGAL_EXPECTS(table.indptr[i + 1] >= table.indptr[i] &&
                         static_cast<std::size_t>(table.indptr[i + 1]) <= table.indices.size(),
                     name + ": indptr is not ascending within indices", invalid_argument);
      const bool has_pages = table.indptr[i + 1] > table.indptr[i];
      FRUGAL_EXPECTS(
          !has_pages || (table.last_page_len[i] >= 1 &&
                         static_cast<std::uint32_t>(table.last_page_len[i]) <= page_size),
          name + ": last_page_len of sequence " + std::to_string(i) + " is outside 1.." +
              std::to_string(page_size),
          invalid_argument);
      for (std::int32_t p = table.indptr[i]; p < table.indptr[i + 1]; ++p)
        check_page(table.indices[p]);
    }
    return;
  }
  const std::size_t batch = table.seq_lens.size();
  FRUGAL_EXPECTS(table.tables.size() >= batch * table.max_pages,
                 name + ": block tables hold fewer than batch x max_pages entries",
                 invalid_argument);
  for (std::size_t i = 0; i < batch; ++i) {
    const std::int32_t len = table.seq_lens[i];
    FRUGAL_EXPECTS(len >= 0 && static_cast<std::size_t>(len) <= table.max_pages * page_size,
                   name + ": seq_lens[" + std::to_string(i) + "] = " + std::to_string(len) +
                       " does not fit max_pages = " + std::to_string(table.max_pages),
                   invalid_argument);
    const std::size_t used = pages.layout().pages_for(static_cast<std::size_t>(len));
    for (std::size_t p = 0; p < used; ++p) check_page(table.tables[i * table.max_pages + p]);
  }
}

void check_scales(const layout& l, std::span<const float> scales, const char* who) {
  const std::size_t wanted = l.scales_per_layer();
  FRUGAL_EXPECTS(scales.size() == wanted,
                 std::string(who) + ": " + std::string(to_string(l.dtype)) + " KV takes " +
                     std::to_string(wanted) + " scales per layer, " +
                     std::to_string(scales.size()) + " given",
                 invalid_argument);
  for (const float s : scales)
    FRUGAL_EXPECTS(std::isfinite(s) && s > 0.0f,
                   std::string(who) + ": KV scales must be positive and finite", invalid_argument);
}

void check_layer(const layout& l, std::uint32_t layer, const char* who) {
  FRUGAL_EXPECTS(layer < l.num_layers,
                 std::string(who) + ": layer " + std::to_string(layer) + " of a " +
                     std::to_string(l.num_layers) + "-layer cache",
                 invalid_argument);
}

}  // namespace detail

namespace {

/// The id of page `j` of sequence `i`.
std::int32_t page_of(const paged_kv& table, std::size_t i, std::size_t j) noexcept {
  return table.kind == paged_kv::format::flashinfer
             ? table.indices[static_cast<std::size_t>(table.indptr[i]) + j]
             : table.tables[i * table.max_pages + j];
}

#if defined(__x86_64__)
/// fp16 -> fp32 with the F16C instructions, 8 at a time: exact, as the table below.
__attribute__((target("avx,f16c"))) void fp16_row_f16c(const std::byte* p, std::size_t n,
                                                       float* out) noexcept {
  std::size_t d = 0;
  for (; d + 8 <= n; d += 8) {
    const __m128i half = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 2 * d));
    _mm256_storeu_ps(out + d, _mm256_cvtph_ps(half));
  }
  for (; d < n; ++d) {
    std::uint16_t bits;
    std::memcpy(&bits, p + 2 * d, 2);
    out[d] = _cvtsh_ss(bits);
  }
}
const bool has_f16c = __builtin_cpu_supports("f16c");
#endif

/// value -> float of every code of a one-byte type, or of fp16: built once per type, on first use.
const std::vector<float>& code_table(dtype t) {
  const auto build = [](dtype type, std::size_t codes) {
    std::vector<float> table(codes);
    for (std::size_t c = 0; c < codes; ++c) {
      const std::array<std::byte, 2> bytes{static_cast<std::byte>(c),
                                           static_cast<std::byte>(c >> 8)};
      table[c] = detail::load_code(type, bytes.data());
    }
    return table;
  };
  static const std::vector<float> fp16 = build(dtype::fp16, 1u << 16);
  static const std::vector<float> e4m3 = build(dtype::fp8_e4m3, 256);
  static const std::vector<float> e5m2 = build(dtype::fp8_e5m2, 256);
  static const std::vector<float> int8 = build(dtype::int8, 256);
  return t == dtype::fp16 ? fp16 : t == dtype::fp8_e4m3 ? e4m3 : t == dtype::fp8_e5m2 ? e5m2 : int8;
}

/// Reads rows of one dtype as floats (times the row's scale for the 8-bit types): in place for
/// fp32, else decoded through F16C, a shift (bf16) or a table (one load per element).
class row_decoder {
 public:
  explicit row_decoder(dtype t) : type_(t) {
    const bool tabled = t == dtype::fp8_e4m3 || t == dtype::fp8_e5m2 || t == dtype::int8;
#if defined(__x86_64__)
    if (t == dtype::fp16 && !has_f16c) table_ = code_table(t).data();
#else
    if (t == dtype::fp16) table_ = code_table(t).data();
#endif
    if (tabled) table_ = code_table(t).data();
  }

  /// The row of `n` elements at `p` as floats: `p` itself for fp32 (pages and rows are 4-byte
  /// aligned), else `out`, decoded. Small, so that the attention loop inlines the fp32 case.
  const float* row(const std::byte* p, std::size_t n, float scale, float* out) const noexcept {
    if (type_ == dtype::fp32) return reinterpret_cast<const float*>(p);
    decode(p, n, scale, out);
    return out;
  }

 private:
  void decode(const std::byte* p, std::size_t n, float scale, float* out) const noexcept {
    switch (type_) {
      case dtype::fp32:  // read in place by row()
        return;
      case dtype::fp16:
#if defined(__x86_64__)
        if (table_ == nullptr) {
          fp16_row_f16c(p, n, out);
          return;
        }
#endif
        for (std::size_t d = 0; d < n; ++d) {
          std::uint16_t bits;
          std::memcpy(&bits, p + 2 * d, 2);
          out[d] = table_[bits];
        }
        return;
      case dtype::bf16:
        for (std::size_t d = 0; d < n; ++d) {
          std::uint16_t bits;
          std::memcpy(&bits, p + 2 * d, 2);
          const std::uint32_t wide = std::uint32_t{bits} << 16;
          std::memcpy(out + d, &wide, 4);
        }
        return;
      case dtype::fp8_e4m3:
      case dtype::fp8_e5m2:
      case dtype::int8: {
        const auto* b = reinterpret_cast<const std::uint8_t*>(p);
        for (std::size_t d = 0; d < n; ++d) out[d] = table_[b[d]] * scale;
        return;
      }
    }
  }

  dtype type_;
  const float* table_ = nullptr;  // code -> value, for the tabled types (and fp16 without F16C)
};

/// Eight floats: GCC's vector extension, lowered to SSE or AVX by the clone that inlines it.
typedef float lanes8 __attribute__((vector_size(8 * sizeof(float))));

/// a . b over n floats in a fixed order that depends only on n: eight running sums (one per
/// lane, over elements i = lane (mod 8)), added pairwise at the end, then the tail in order.
/// The same order for every call, so a query's scores never depend on the batch.
template <std::size_t N>
inline float dot(const float* a, const float* b, std::size_t runtime_n) noexcept {
  const std::size_t n = N != 0 ? N : runtime_n;
  lanes8 sum = {};
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    lanes8 x, y;
    std::memcpy(&x, a + i, sizeof x);
    std::memcpy(&y, b + i, sizeof y);
    sum = sum + x * y;
  }
  float total = ((sum[0] + sum[4]) + (sum[2] + sum[6])) + ((sum[1] + sum[5]) + (sum[3] + sum[7]));
  if constexpr (N == 0 || N % 8 != 0)
    for (; i < n; ++i) total += a[i] * b[i];
  return total;
}

/// acc[i] += weight * x[i] over n floats, eight lanes at a time (each element's arithmetic is
/// the same in every lane and in the tail).
template <std::size_t N>
inline void add_weighted(float* acc, float weight, const float* x, std::size_t runtime_n) noexcept {
  const std::size_t n = N != 0 ? N : runtime_n;
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    lanes8 a, b;
    std::memcpy(&a, acc + i, sizeof a);
    std::memcpy(&b, x + i, sizeof b);
    a = a + weight * b;
    std::memcpy(acc + i, &a, sizeof a);
  }
  if constexpr (N == 0 || N % 8 != 0)
    for (; i < n; ++i) acc[i] += weight * x[i];
}

/// acc[i] *= scale over n floats, eight lanes at a time.
template <std::size_t N>
inline void scale(float* acc, float factor, std::size_t runtime_n) noexcept {
  const std::size_t n = N != 0 ? N : runtime_n;
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    lanes8 a;
    std::memcpy(&a, acc + i, sizeof a);
    a = a * factor;
    std::memcpy(acc + i, &a, sizeof a);
  }
  if constexpr (N == 0 || N % 8 != 0)
    for (; i < n; ++i) acc[i] *= factor;
}

/// exp(x) of eight scores at once, for x <= 0 (a score minus the running maximum): Cody-Waite
/// reduction x = k ln2 + r, |r| <= ln2 / 2, a degree-6 Taylor polynomial of exp(r) (relative
/// error below 2e-7), and 2^k built in the exponent bits. Below -87 the result is 0 (exp's own
/// result is a float denormal there); NaN stays NaN. Only multiplies and adds, each rounded on
/// its own, so every clone gives the same bits.
/// In place on eight floats at `values` (memcpy'd: no alignment assumed).
inline void exp_nonpositive(float* values, float minus) noexcept {
  lanes8 x;
  std::memcpy(&x, values, sizeof x);
  x = x - minus;
  typedef std::int32_t ints8 __attribute__((vector_size(8 * sizeof(std::int32_t))));
  const lanes8 floor_value = lanes8{} - 87.0f;
  const ints8 underflow = x < floor_value;
  const lanes8 xc = underflow ? floor_value : x;
  const lanes8 magic = lanes8{} + 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  const lanes8 k = (xc * 1.44269504088896341f + magic) - magic;
  const lanes8 r = (xc - k * 0.693145751953125f) - k * 1.428606765330187045e-06f;
  lanes8 p = lanes8{} + (1.0f / 720.0f);
  p = p * r + (1.0f / 120.0f);
  p = p * r + (1.0f / 24.0f);
  p = p * r + (1.0f / 6.0f);
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const ints8 exponent = (__builtin_convertvector(k, ints8) + 127) << 23;
  lanes8 two_k;
  std::memcpy(&two_k, &exponent, sizeof two_k);
  const lanes8 result = underflow ? lanes8{} : p * two_k;
  std::memcpy(values, &result, sizeof result);
}

/// Scratch of one query row: scores of one page per query head, the decoded K or V row, and per
/// query head its softmax state and accumulator.
struct scratch {
  std::vector<float> scores, row, acc;
  std::vector<detail::softmax_state> state;
  std::size_t scores_stride = 0;  // page_size rounded up to 8: whole vectors per head
  void size(std::size_t heads, std::size_t page_size, std::size_t dim) {
    scores_stride = (page_size + 7) / 8 * 8;
    scores.assign(heads * scores_stride, 0.0f);
    row.assign(dim, 0.0f);
    acc.assign(heads * dim, 0.0f);
    state.assign(heads, {});
  }
};

/// Everything one paged_attention call reads, checked.
struct attention_pass {
  const page_pool& pages;
  std::uint32_t layer;
  std::span<const float> q;
  std::span<const std::int32_t> qo_indptr;
  const paged_kv& table;
  std::span<float> out;
  const attention_options& options;
  std::span<const float> scales;
  const layout& l;
  page_addressing a;
  const row_decoder& decoder;
  float sm_scale;
  std::size_t group, page_size, q_row, batch;
  scratch s;
};

/// The attention loop, for head size Dim (0: the layout's, known at run time). Each query row
/// and KV head walks its pages one at a time: scores of the group's query heads for the page's
/// keys, one rescale of each head's running state to the page's maximum, then the page's
/// values. Inlined into each clone of paged_attention.
template <std::size_t Dim>
[[gnu::always_inline]] inline void run_attention(attention_pass& pass) {
  const layout& l = pass.l;
  const page_addressing& a = pass.a;
  const std::size_t dim = Dim != 0 ? Dim : l.head_dim;
  const std::size_t group = pass.group, page_size = pass.page_size;
  scratch& s = pass.s;
  for (std::size_t i = 0; i < pass.batch; ++i) {
    const std::size_t kv_len = detail::kv_len_of(pass.table, i, l.page_size);
    const auto q_begin = static_cast<std::size_t>(pass.qo_indptr[i]);
    const auto qo_len = static_cast<std::size_t>(pass.qo_indptr[i + 1]) - q_begin;
    for (std::size_t j = 0; j < qo_len; ++j) {
      const std::size_t position = pass.options.causal ? kv_len - qo_len + j : kv_len - 1;
      const std::size_t first =
          pass.options.causal ? detail::first_key(position, pass.options.window_left) : 0;
      const float* q_heads = pass.q.data() + (q_begin + j) * pass.q_row;
      float* o_heads = pass.out.data() + (q_begin + j) * pass.q_row;
      // Every query head's state at once, so that each page is read once, all heads together.
      std::fill(s.acc.begin(), s.acc.end(), 0.0f);
      std::fill(s.state.begin(), s.state.end(), detail::softmax_state{});
      for (std::size_t p = first / page_size; p * page_size <= position; ++p) {
        const auto page = static_cast<page_id>(page_of(pass.table, i, p));
        const std::size_t t0 = std::max(first, p * page_size) - p * page_size;
        const std::size_t t1 = std::min(position + 1, (p + 1) * page_size) - p * page_size;
        // Memory order: token-major for NHD (a token's heads are contiguous), head-major for HND.
        const bool token_major = l.order == order::nhd;
        const std::size_t outer = token_major ? t1 - t0 : l.num_kv_heads;
        const std::size_t inner = token_major ? l.num_kv_heads : t1 - t0;
        const auto head_of = [&](std::size_t o, std::size_t n) { return token_major ? n : o; };
        const auto token_of = [&](std::size_t o, std::size_t n) {
          return t0 + (token_major ? o : n);
        };
        // Scores of this page's visible keys for every query head.
        for (std::size_t o = 0; o < outer; ++o)
          for (std::size_t n = 0; n < inner; ++n) {
            const std::size_t h = head_of(o, n), t = token_of(o, n);
            const float* key =
                pass.decoder.row(a.base + a.offset(pass.layer, page, 0, t, h), dim,
                                 detail::scale_of(l, pass.scales.data(), 0, h), s.row.data());
            const float* qg = q_heads + h * group * dim;
            for (std::size_t g = 0; g < group; ++g)
              s.scores[(h * group + g) * s.scores_stride + t] =
                  dot<Dim>(qg + g * dim, key, dim) * pass.sm_scale;
          }
        // Rescale each head's state to the page's new maximum; the page's weights.
        for (std::size_t qh = 0; qh < pass.options.num_qo_heads; ++qh) {
          detail::softmax_state& st = s.state[qh];
          float* scores = s.scores.data() + qh * s.scores_stride;
          float page_max = st.max;
          for (std::size_t t = t0; t < t1; ++t) page_max = std::max(page_max, scores[t]);
          if (std::isnan(page_max)) page_max = 0.0f;  // a NaN score stays NaN below
          const float correction = st.sum == 0.0f ? 0.0f : std::exp(st.max - page_max);
          if (correction != 1.0f) scale<Dim>(s.acc.data() + qh * dim, correction, dim);
          st.sum *= correction;
          st.max = page_max;
          for (std::size_t t = t0 / 8 * 8; t < t1; t += 8) exp_nonpositive(scores + t, page_max);
          float sum = st.sum;  // a local: the compiler cannot keep st.sum in a register
          for (std::size_t t = t0; t < t1; ++t) sum += scores[t];
          st.sum = sum;
        }
        // The page's values, weighted.
        for (std::size_t o = 0; o < outer; ++o)
          for (std::size_t n = 0; n < inner; ++n) {
            const std::size_t h = head_of(o, n), t = token_of(o, n);
            const float* value =
                pass.decoder.row(a.base + a.offset(pass.layer, page, 1, t, h), dim,
                                 detail::scale_of(l, pass.scales.data(), 1, h), s.row.data());
            for (std::size_t g = 0; g < group; ++g)
              add_weighted<Dim>(s.acc.data() + (h * group + g) * dim,
                                s.scores[(h * group + g) * s.scores_stride + t], value, dim);
          }
      }
      for (std::size_t qh = 0; qh < pass.options.num_qo_heads; ++qh) {
        const float inv = s.state[qh].sum > 0.0f ? 1.0f / s.state[qh].sum : 0.0f;
        float* o = o_heads + qh * dim;
        for (std::size_t d = 0; d < dim; ++d) o[d] = s.acc[qh * dim + d] * inv;
      }
    }
  }
}

}  // namespace

void write_kv(page_pool& pages, std::uint32_t layer, std::span<const float> k,
              std::span<const float> v, std::span<const std::int64_t> slot_mapping,
              std::span<const float> scales) {
  const layout& l = pages.layout();
  detail::check_layer(l, layer, "kv::write_kv");
  const std::size_t row = std::size_t{l.num_kv_heads} * l.head_dim;
  FRUGAL_EXPECTS(k.size() == slot_mapping.size() * row && v.size() == k.size(),
                 "kv::write_kv: k and v must hold tokens x num_kv_heads x head_dim = " +
                     std::to_string(slot_mapping.size() * row) + " floats (k " +
                     std::to_string(k.size()) + ", v " + std::to_string(v.size()) + ")",
                 invalid_argument);
  detail::check_scales(l, scales, "kv::write_kv");
  const std::int64_t slots = std::int64_t{pages.num_pages()} * l.page_size;
  for (const std::int64_t slot : slot_mapping)
    FRUGAL_EXPECTS(slot < slots,
                   "kv::write_kv: slot " + std::to_string(slot) + " is beyond the pool's " +
                       std::to_string(slots) + " slots",
                   invalid_argument);

  // Row by row here; write_kv_device's threads write element by element
  // (detail::write_kv_element), and the tests run that function for every thread on the CPU and
  // compare its bytes with these.
  const page_addressing a = pages.addressing();
  for (std::size_t t = 0; t < slot_mapping.size(); ++t) {
    const std::int64_t slot = slot_mapping[t];
    if (slot < 0) continue;
    const auto page = static_cast<page_id>(slot / l.page_size);
    const auto offset = static_cast<std::size_t>(slot % l.page_size);
    for (std::size_t kv = 0; kv < 2; ++kv) {
      const float* src = (kv == 0 ? k : v).data() + t * row;
      for (std::size_t h = 0; h < l.num_kv_heads; ++h) {
        const float scale = detail::scale_of(l, scales.data(), kv, h);
        std::byte* dst = a.base + a.offset(layer, page, kv, offset, h);
        for (std::size_t d = 0; d < l.head_dim; ++d)
          detail::store_element(l.dtype, dst + d * a.element_size, src[h * l.head_dim + d], scale);
      }
    }
  }
}

// Compiled for AVX2 and for the baseline ISA, chosen at load time; both clones do the same
// arithmetic (no contraction), so results do not depend on the machine's SIMD width.
__attribute__((target_clones("avx2", "default"))) void paged_attention(
    const page_pool& pages, std::uint32_t layer, std::span<const float> q,
    std::span<const std::int32_t> qo_indptr, const paged_kv& table, std::span<float> out,
    const attention_options& options, std::span<const float> scales) {
  const layout& l = pages.layout();
  const char* who = "kv::paged_attention";
  detail::check_layer(l, layer, who);
  FRUGAL_EXPECTS(options.num_qo_heads > 0 && options.num_qo_heads % l.num_kv_heads == 0,
                 "kv::paged_attention: num_qo_heads (" + std::to_string(options.num_qo_heads) +
                     ") must be a positive multiple of num_kv_heads (" +
                     std::to_string(l.num_kv_heads) + ")",
                 invalid_argument);
  detail::check_table(table, pages, who);
  detail::check_scales(l, scales, who);
  const std::size_t batch = table.batch_size();
  FRUGAL_EXPECTS(qo_indptr.size() == batch + 1 && qo_indptr.front() == 0,
                 "kv::paged_attention: qo_indptr must hold batch + 1 = " +
                     std::to_string(batch + 1) + " entries starting at 0",
                 invalid_argument);
  for (std::size_t i = 0; i < batch; ++i) {
    const std::int32_t qo_len = qo_indptr[i + 1] - qo_indptr[i];
    FRUGAL_EXPECTS(
        qo_len >= 0 && static_cast<std::size_t>(qo_len) <= detail::kv_len_of(table, i, l.page_size),
        "kv::paged_attention: sequence " + std::to_string(i) + " has " + std::to_string(qo_len) +
            " queries but " + std::to_string(detail::kv_len_of(table, i, l.page_size)) + " tokens",
        invalid_argument);
  }
  const std::size_t dim = l.head_dim;
  const std::size_t q_row = std::size_t{options.num_qo_heads} * dim;
  const auto rows = static_cast<std::size_t>(qo_indptr.back());
  FRUGAL_EXPECTS(q.size() == rows * q_row && out.size() == q.size(),
                 "kv::paged_attention: q and out must hold rows x num_qo_heads x head_dim = " +
                     std::to_string(rows * q_row) + " floats (q " + std::to_string(q.size()) +
                     ", out " + std::to_string(out.size()) + ")",
                 invalid_argument);

  const float sm_scale =
      options.sm_scale != 0.0f ? options.sm_scale : 1.0f / std::sqrt(static_cast<float>(dim));
  const std::size_t group = options.num_qo_heads / l.num_kv_heads;
  const std::size_t page_size = l.page_size;
  const page_addressing a = pages.addressing();
  const row_decoder decoder(l.dtype);
  attention_pass pass{pages, layer,   q,        qo_indptr, table,     out,   options, scales, l,
                      a,     decoder, sm_scale, group,     page_size, q_row, batch,   {}};
  pass.s.size(options.num_qo_heads, page_size, dim);
  switch (dim) {
    case 8:
      run_attention<8>(pass);
      break;
    case 16:
      run_attention<16>(pass);
      break;
    case 32:
      run_attention<32>(pass);
      break;
    case 64:
      run_attention<64>(pass);
      break;
    case 128:
      run_attention<128>(pass);
      break;
    case 256:
      run_attention<256>(pass);
      break;
    default:
      run_attention<0>(pass);
      break;
  }
}

}  // namespace frugal::kv
