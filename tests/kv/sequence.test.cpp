// The sequence handle (frugal/kv/sequence.hpp): destroying it releases its pages; a moved-from,
// released or foreign handle is refused by the cache that did not make it.
#include "kv/fixtures.hpp"
#include "mr/test_resources.hpp"

#include <frugal/kv/cache.hpp>

#include <catch2/catch.hpp>

#include <utility>
#include <vector>

using frugal::kv::cache;
using frugal::kv::sequence;
using frugal::kv::token_id;
using frugal::kv::test::no_watermark;
using frugal::kv::test::small_layout;
using frugal::kv::test::tokens;

TEST_CASE("kv: pages are allocated on demand and released with the sequence") {
  frugal::host_resource host;
  cache kv{small_layout(), 8, host, no_watermark(false)};
  {
    sequence seq = kv.add_sequence(tokens(0, 6));  // 2 pages: 4 + 2 tokens
    CHECK(seq.pages().size() == 2);
    CHECK(seq.num_tokens() == 6);
    CHECK(seq.cached_tokens() == 0);
    CHECK(kv.num_free_pages() == 6);
    kv.append(seq, tokens(6, 2));  // fills the second page: no new page
    CHECK(seq.pages().size() == 2);
    kv.append(seq, tokens(8, 1));  // the third page
    CHECK(seq.pages().size() == 3);
    CHECK(kv.num_free_pages() == 5);
    CHECK(kv.is_valid());
    const auto st = kv.stats();
    CHECK(st.used_pages == 3);
    CHECK(st.slots_allocated == 12);
    CHECK(st.slots_used == 9);
    CHECK(st.waste() == Approx(0.25));
  }
  CHECK(kv.num_free_pages() == 8);
  CHECK(kv.stats().used_pages == 0);
  CHECK(kv.is_valid());
}

TEST_CASE("kv: released, empty or foreign sequences are refused with nothing changed") {
  frugal::host_resource host;
  cache kv{small_layout(), 8, host, no_watermark()};
  cache other{small_layout(), 8, host, no_watermark()};
  sequence a = kv.add_sequence(tokens(0, 5));
  sequence foreign = other.add_sequence(tokens(0, 5));
  const auto before = kv.stats();
  sequence moved = std::move(a);
  CHECK_THROWS_AS(kv.append(a, tokens(5, 1)), frugal::invalid_argument);  // moved from: empty
  CHECK_THROWS_AS(kv.append(foreign, tokens(5, 1)), frugal::invalid_argument);
  CHECK_THROWS_AS((void)kv.fork(foreign), frugal::invalid_argument);
  const sequence* batch[] = {&foreign};
  CHECK_THROWS_AS(kv.export_flashinfer(batch), frugal::invalid_argument);
  moved.release();
  moved.release();  // idempotent
  CHECK_THROWS_AS(kv.append(moved, tokens(5, 1)), frugal::invalid_argument);
  CHECK(kv.stats().used_pages == before.used_pages - 2);
  CHECK(kv.is_valid());
  CHECK_THROWS_AS(
      (cache{frugal::kv::layout{.num_layers = 0, .num_kv_heads = 1, .head_dim = 1}, 4, host}),
      frugal::invalid_argument);
}
