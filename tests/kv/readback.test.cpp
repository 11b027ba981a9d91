// Over a host page pool, a stand-in engine writes each token's id into every (layer, K/V, head,
// dim) element of its slot, using only slot_mapping() and the pool's base pointer and strides;
// every sequence is then read back through export_block_tables() and export_flashinfer(), for
// both page orders and several shapes and element types, with shared prefixes, forks (and their
// copy-on-write copies) and a round trip through the host tier.
#include "kv/fixtures.hpp"

#include <frugal/kv/cache.hpp>
#include <frugal/mr/host_resource.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstring>
#include <numeric>
#include <span>
#include <string>
#include <vector>

namespace kv = frugal::kv;
using kv::copy_op;
using kv::token_id;
using kv::test::describe;

namespace {

/// What every element of a token's slot holds: its id as a uint16 for 2-byte types, its low byte
/// for 1-byte types.
std::uint32_t element_value(token_id t, std::size_t element_size) {
  return element_size == 2 ? static_cast<std::uint16_t>(t) : static_cast<std::uint8_t>(t);
}
void store(std::byte* at, token_id t, std::size_t element_size) {
  if (element_size == 2) {
    const auto v = static_cast<std::uint16_t>(t);
    std::memcpy(at, &v, 2);
  } else {
    *at = static_cast<std::byte>(static_cast<std::uint8_t>(t));
  }
}
std::uint32_t load(const std::byte* at, std::size_t element_size) {
  if (element_size == 2) {
    std::uint16_t v = 0;
    std::memcpy(&v, at, 2);
    return v;
  }
  return static_cast<std::uint8_t>(*at);
}

/// A stand-in inference engine: it keeps each sequence's tokens, performs the cache's copies on
/// the CPU and "computes" new tokens by writing their ids into their slots.
class engine {
 public:
  engine(const kv::layout& l, bool prefix_caching)
      : kv_(l, 256, memory_,
            {.enable_prefix_caching = prefix_caching, .watermark = 0.0, .host_pages = 32}) {}

  /// Adds a sequence and computes its prompt (the tokens the prefix cache did not serve).
  std::size_t add(std::vector<token_id> prompt) {
    seqs_.push_back(kv_.add_sequence(prompt));
    tokens_.push_back(std::move(prompt));
    const std::size_t i = seqs_.size() - 1;
    step({i}, {tokens_[i].size() - seqs_[i].cached_tokens()});
    return i;
  }
  std::size_t fork(std::size_t parent) {
    seqs_.push_back(kv_.fork(seqs_[parent]));
    tokens_.push_back(tokens_[parent]);
    return seqs_.size() - 1;
  }
  /// Appends `count` fresh tokens to each sequence of the batch, then computes them in one step.
  void decode(const std::vector<std::size_t>& batch, std::size_t count = 1) {
    for (const std::size_t i : batch) {
      const std::vector<token_id> fresh = fresh_tokens(count);
      kv_.append(seqs_[i], fresh);
      tokens_[i].insert(tokens_[i].end(), fresh.begin(), fresh.end());
    }
    step(batch, std::vector<std::size_t>(batch.size(), count));
  }
  void release(std::size_t i) { seqs_[i].release(); }
  void swap_out(std::size_t i) {
    const auto ops = kv_.swap_out(seqs_[i]);
    kv::copy_pages_host(kv_.pages(), *kv_.host_pages(), ops);
  }
  void swap_in(std::size_t i) {
    const auto ops = kv_.swap_in(seqs_[i]);
    kv::copy_pages_host(*kv_.host_pages(), kv_.pages(), ops);
  }

  /// Fresh token ids, distinct from every earlier one (so even their low bytes differ from
  /// their neighbours').
  std::vector<token_id> fresh_tokens(std::size_t count) {
    std::vector<token_id> t(count);
    std::iota(t.begin(), t.end(), next_token_);
    next_token_ += static_cast<token_id>(count);
    return t;
  }
  const std::vector<token_id>& tokens(std::size_t i) const { return tokens_[i]; }
  const kv::sequence& sequence(std::size_t i) const { return seqs_[i]; }
  kv::cache& cache() { return kv_; }

  /// The running sequences, for the exports.
  std::vector<std::size_t> running() const {
    std::vector<std::size_t> out;
    for (std::size_t i = 0; i < seqs_.size(); ++i)
      if (!seqs_[i].empty() && !seqs_[i].swapped_out()) out.push_back(i);
    return out;
  }
  std::vector<const kv::sequence*> pointers(const std::vector<std::size_t>& batch) const {
    std::vector<const kv::sequence*> out;
    for (const std::size_t i : batch) out.push_back(&seqs_[i]);
    return out;
  }

  /// Reads element (layer, kv, head, dim) of token slot `slot` of page `page` through the
  /// per-layer K/V base pointers and strides.
  std::uint32_t read(std::int32_t page, std::size_t slot, std::size_t layer, std::size_t k_or_v,
                     std::size_t head, std::size_t dim) const {
    const kv::page_addressing a = kv_.pages().addressing();
    const std::byte* base = k_or_v == 0 ? a.k_base(layer) : a.v_base(layer);
    return load(base + static_cast<std::size_t>(page) * a.page_stride + slot * a.slot_stride +
                    head * a.head_stride + dim * a.element_size,
                a.element_size);
  }

  /// The first element of `sequence`'s token `t` (in page `page`) not holding the token's id,
  /// described; "" when all do.
  std::string check_token(std::size_t sequence, std::size_t t, std::int32_t page) const {
    const kv::layout& l = kv_.layout();
    const std::size_t element_size = kv::element_bytes(l.dtype);
    const std::uint32_t expected = element_value(tokens_[sequence][t], element_size);
    for (std::size_t layer = 0; layer < l.num_layers; ++layer)
      for (std::size_t k_or_v = 0; k_or_v < 2; ++k_or_v)
        for (std::size_t head = 0; head < l.num_kv_heads; ++head)
          for (std::size_t dim = 0; dim < l.head_dim; ++dim) {
            const std::uint32_t got = read(page, t % l.page_size, layer, k_or_v, head, dim);
            if (got != expected)
              return "sequence " + std::to_string(sequence) + " token " + std::to_string(t) +
                     " (page " + std::to_string(page) + ") layer " + std::to_string(layer) +
                     (k_or_v ? " V" : " K") + " head " + std::to_string(head) + " dim " +
                     std::to_string(dim) + ": " + std::to_string(got) + ", expected " +
                     std::to_string(expected);
          }
    return "";
  }

 private:
  /// One engine step: perform the pending copy-on-write copies, then write the new tokens of
  /// the batch (new_counts[b] for batch[b]) at the slots slot_mapping gives, in batch order.
  void step(const std::vector<std::size_t>& batch, const std::vector<std::size_t>& new_counts) {
    const std::vector<copy_op> copies = kv_.take_copy_ops();
    kv::copy_pages_host(kv_.pages(), kv_.pages(), copies);
    const std::vector<std::int64_t> slots = kv_.slot_mapping(pointers(batch));
    REQUIRE(slots.size() == std::accumulate(new_counts.begin(), new_counts.end(), std::size_t{0}));
    std::size_t at = 0;
    for (std::size_t b = 0; b < batch.size(); ++b) {
      const std::vector<token_id>& t = tokens_[batch[b]];
      for (std::size_t j = t.size() - new_counts[b]; j < t.size(); ++j) write(slots[at++], t[j]);
    }
  }

  /// Writes `t` into every element of slot `slot` (= page * page_size + offset), from the pool's
  /// base pointer and strides alone.
  void write(std::int64_t slot, token_id t) {
    const kv::layout& l = kv_.layout();
    const kv::page_addressing a = kv_.pages().addressing();
    const auto page = static_cast<std::size_t>(slot) / l.page_size;
    const auto offset = static_cast<std::size_t>(slot) % l.page_size;
    const std::span<std::byte> memory = kv_.pages().memory();
    for (std::size_t layer = 0; layer < l.num_layers; ++layer)
      for (std::size_t k_or_v = 0; k_or_v < 2; ++k_or_v)
        for (std::size_t head = 0; head < l.num_kv_heads; ++head)
          for (std::size_t dim = 0; dim < l.head_dim; ++dim) {
            std::byte* at = a.base + page * a.page_stride + layer * a.layer_stride +
                            k_or_v * a.kv_stride + offset * a.slot_stride + head * a.head_stride +
                            dim * a.element_size;
            REQUIRE((at >= memory.data() && at + a.element_size <= memory.data() + memory.size()));
            store(at, t, a.element_size);
          }
  }

  frugal::host_resource memory_;
  kv::cache kv_;
  std::vector<kv::sequence> seqs_;  // after kv_: released first
  std::vector<std::vector<token_id>> tokens_;
  token_id next_token_ = 1;
};

/// Reads every running sequence back through vLLM's block tables.
void read_back_block_tables(engine& e) {
  const std::vector<std::size_t> batch = e.running();
  const kv::block_tables bt = e.cache().export_block_tables(e.pointers(batch), -1);
  const std::size_t page_size = e.cache().layout().page_size;
  REQUIRE(bt.seq_lens.size() == batch.size());
  for (std::size_t b = 0; b < batch.size(); ++b) {
    const std::vector<token_id>& tokens = e.tokens(batch[b]);
    REQUIRE(static_cast<std::size_t>(bt.seq_lens[b]) == tokens.size());
    for (std::size_t t = 0; t < tokens.size(); ++t) {
      const std::int32_t page = bt.tables[b * bt.max_pages + t / page_size];
      REQUIRE(page >= 0);
      const std::string wrong = e.check_token(batch[b], t, page);
      INFO("block tables: " << wrong);
      REQUIRE(wrong.empty());
    }
  }
}

/// Reads every running sequence back through FlashInfer's CSR page table.
void read_back_flashinfer(engine& e) {
  const std::vector<std::size_t> batch = e.running();
  const kv::flashinfer_page_table fi = e.cache().export_flashinfer(e.pointers(batch));
  const std::size_t page_size = e.cache().layout().page_size;
  REQUIRE(fi.indptr.size() == batch.size() + 1);
  for (std::size_t b = 0; b < batch.size(); ++b) {
    const std::vector<token_id>& tokens = e.tokens(batch[b]);
    const auto pages = static_cast<std::size_t>(fi.indptr[b + 1] - fi.indptr[b]);
    REQUIRE(pages > 0);
    REQUIRE(fi.last_page_len[b] >= 1);
    REQUIRE(static_cast<std::size_t>(fi.last_page_len[b]) <= page_size);
    REQUIRE((pages - 1) * page_size + static_cast<std::size_t>(fi.last_page_len[b]) ==
            tokens.size());
    for (std::size_t t = 0; t < tokens.size(); ++t) {
      const std::int32_t page = fi.indices[static_cast<std::size_t>(fi.indptr[b]) + t / page_size];
      const std::string wrong = e.check_token(batch[b], t, page);
      INFO("flashinfer: " << wrong);
      REQUIRE(wrong.empty());
    }
  }
}

void read_back(engine& e) {
  REQUIRE(e.cache().is_valid());
  read_back_block_tables(e);
  read_back_flashinfer(e);
}

}  // namespace

TEST_CASE("kv: each token written through slot_mapping reads back through both page tables") {
  const kv::order order = GENERATE(kv::order::nhd, kv::order::hnd);
  const bool prefix_caching = GENERATE(true, false);
  const kv::layout shapes[] = {
      {.num_layers = 1, .num_kv_heads = 1, .head_dim = 1, .page_size = 1, .dtype = kv::dtype::fp16},
      {.num_layers = 2, .num_kv_heads = 3, .head_dim = 4, .page_size = 5, .dtype = kv::dtype::fp16},
      {.num_layers = 3, .num_kv_heads = 2, .head_dim = 8, .page_size = 4, .dtype = kv::dtype::int8},
      {.num_layers = 2,
       .num_kv_heads = 4,
       .head_dim = 2,
       .page_size = 16,
       .dtype = kv::dtype::bf16},
      {.num_layers = 1,
       .num_kv_heads = 2,
       .head_dim = 3,
       .page_size = 3,
       .dtype = kv::dtype::fp8_e4m3},
  };
  for (kv::layout l : shapes) {
    l.order = order;
    INFO(describe(l) << (prefix_caching ? ", prefix caching" : ", no prefix caching"));
    engine e{l, prefix_caching};
    const std::size_t page = l.page_size;

    // a: 3 full pages and 1 token; b shares a's first 2 pages (a prefix hit), then differs.
    const std::size_t a = e.add(e.fresh_tokens(3 * page + 1));
    std::vector<token_id> b_prompt(e.tokens(a).begin(),
                                   e.tokens(a).begin() + static_cast<std::ptrdiff_t>(2 * page + 1));
    const auto b_tail = e.fresh_tokens(page);  // 3 pages and 1 token
    b_prompt.insert(b_prompt.end(), b_tail.begin(), b_tail.end());
    const std::size_t b = e.add(b_prompt);
    CHECK(e.sequence(b).cached_tokens() == (prefix_caching ? (2 * page + 1) / page * page : 0));
    if (prefix_caching) CHECK(e.sequence(b).pages()[1] == e.sequence(a).pages()[1]);
    read_back(e);

    // c forks a and writes into a's partial last page (copy-on-write); a then grows in place.
    const std::size_t c = e.fork(a);
    e.decode({c}, 2);
    CHECK(e.cache().stats().cow_copies == (page > 1 ? 1 : 0));
    e.decode({a}, page + 1);
    read_back(e);

    // d forks b; both decode in one batch (the first copies the shared page, the second not).
    const std::size_t d = e.fork(b);
    e.decode({b, d});
    CHECK(e.cache().stats().cow_copies == (page > 1 ? 2 : 0));
    read_back(e);

    // x continues a's conversation: its prompt hits a's pages, appended ones included. When x
    // finishes, y repeats x's prompt and hits the pages x computed and left cached.
    std::vector<token_id> x_prompt = e.tokens(a);
    const auto x_tail = e.fresh_tokens(page + 1);
    x_prompt.insert(x_prompt.end(), x_tail.begin(), x_tail.end());
    const std::size_t x = e.add(x_prompt);
    if (prefix_caching) CHECK(e.sequence(x).cached_tokens() == e.tokens(a).size() / page * page);
    read_back(e);
    e.release(x);
    const std::size_t y = e.add(x_prompt);
    if (prefix_caching) CHECK(e.sequence(y).cached_tokens() == (x_prompt.size() - 1) / page * page);
    read_back(e);

    // b goes to the host tier while the others decode, then comes back.
    e.swap_out(b);
    for (int i = 0; i < 3; ++i) e.decode(e.running());
    read_back(e);
    e.swap_in(b);
    read_back(e);

    // Decode everyone for a few pages; a fork mid-way shares c's pages, then both diverge.
    for (std::size_t i = 0; i < 2 * page + 1; ++i) {
      if (i == 2) (void)e.fork(c);
      e.decode(e.running());
    }
    read_back(e);
    CHECK(e.cache().take_copy_ops().empty());
    CHECK(e.cache().is_valid());
  }
}
