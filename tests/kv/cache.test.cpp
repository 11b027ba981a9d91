#include "kv/fixtures.hpp"
#include "mr/test_resources.hpp"

#include <frugal/kv/cache.hpp>

#include <catch2/catch.hpp>

#include <vector>

using frugal::kv::cache;
using frugal::kv::copy_op;
using frugal::kv::page_id;
using frugal::kv::sequence;
using frugal::kv::token_id;
using frugal::kv::test::no_watermark;
using frugal::kv::test::small_layout;
using frugal::kv::test::tokens;

TEST_CASE("kv: append is all or nothing") {
  frugal::host_resource host;
  cache kv{small_layout(), 3, host, no_watermark(false)};
  sequence seq = kv.add_sequence(tokens(0, 5));  // 2 pages, 3 slots left in the last
  const auto before = kv.stats();
  CHECK_FALSE(kv.try_append(seq, tokens(5, 8)));  // needs 2 more pages, 1 is free
  CHECK(seq.num_tokens() == 5);
  CHECK(kv.stats().used_pages == before.used_pages);
  CHECK(kv.num_free_pages() == 1);
  CHECK_THROWS_AS(kv.append(seq, tokens(5, 8)), frugal::out_of_memory);
  CHECK(seq.num_tokens() == 5);
  CHECK(kv.try_append(seq, tokens(5, 7)));  // exactly fits: 3 + 4
  CHECK(kv.num_free_pages() == 0);
  CHECK(kv.is_valid());
}

TEST_CASE("kv: a sequence that can never fit is refused at once") {
  frugal::host_resource host;
  cache kv{small_layout(), 4, host, no_watermark()};
  try {
    (void)kv.try_add_sequence(tokens(0, 17));  // 5 pages of 4
    FAIL("a sequence larger than the cache was accepted");
  } catch (const frugal::invalid_argument& e) {
    CHECK(std::string(e.what()).find("can never fit") != std::string::npos);
  }
  CHECK(kv.num_free_pages() == 4);
  CHECK_THROWS_AS(kv.add_sequence(std::vector<token_id>{}), frugal::invalid_argument);
}

TEST_CASE("kv: out of pages now gives nullopt or out_of_memory, and changes nothing") {
  frugal::host_resource host;
  cache kv{small_layout(), 4, host, no_watermark()};
  sequence a = kv.add_sequence(tokens(0, 12));  // 3 pages
  const auto before = kv.stats();
  CHECK_FALSE(kv.try_add_sequence(tokens(100, 8)).has_value());
  try {
    (void)kv.add_sequence(tokens(100, 8));
    FAIL("no out_of_memory");
  } catch (const frugal::out_of_memory& e) {
    CHECK(std::string(e.what()).find("2 pages needed, 1 free") != std::string::npos);
  }
  CHECK(kv.stats().used_pages == before.used_pages);
  CHECK(kv.stats().cached_pages == before.cached_pages);
  CHECK(kv.is_valid());
}

TEST_CASE("kv: the watermark keeps pages free for running sequences") {
  frugal::host_resource host;
  cache kv{small_layout(), 10, host, {.watermark = 0.2}};         // 2 pages kept free
  sequence a = kv.add_sequence(tokens(0, 24));                    // 6 pages: 4 left
  CHECK_FALSE(kv.try_add_sequence(tokens(100, 12)).has_value());  // 3 > 4 - 2
  sequence b = kv.add_sequence(tokens(100, 8));                   // 2 = 4 - 2: admitted
  CHECK(kv.num_free_pages() == 2);
  kv.append(a, tokens(24, 8));  // running sequences may use the reserve
  CHECK(kv.num_free_pages() == 0);
}

TEST_CASE("kv: prefix caching reuses full pages and always leaves the last token to compute") {
  frugal::host_resource host;
  cache kv{small_layout(), 16, host, no_watermark()};
  const auto prompt = tokens(0, 10);  // pages: [0..3] [4..7] [8 9]
  sequence first = kv.add_sequence(prompt);
  CHECK(first.cached_tokens() == 0);
  sequence second = kv.add_sequence(prompt);
  CHECK(second.cached_tokens() == 8);
  CHECK(second.pages()[0] == first.pages()[0]);
  CHECK(second.pages()[1] == first.pages()[1]);
  CHECK(second.pages()[2] != first.pages()[2]);  // the partial page is never shared
  CHECK(kv.pages().refcount(first.pages()[0]) == 2);

  // A prompt of exactly two full pages reuses only the first: its last token must be computed.
  sequence third = kv.add_sequence(tokens(0, 8));
  CHECK(third.cached_tokens() == 4);
  // Another extra key (adapter, salt) shares nothing.
  sequence other = kv.add_sequence(prompt, /*extra_key=*/42);
  CHECK(other.cached_tokens() == 0);
  // A different second page stops the run after the first.
  auto diverging = prompt;
  diverging[5] = 999;
  sequence fourth = kv.add_sequence(diverging);
  CHECK(fourth.cached_tokens() == 4);
  CHECK(kv.stats().prefix_hit_rate == Approx((8.0 + 4 + 4) / (10 + 10 + 8 + 10 + 10)));
  CHECK(kv.is_valid());
}

TEST_CASE("kv: pages filled by appends become cached too") {
  frugal::host_resource host;
  cache kv{small_layout(), 16, host, no_watermark()};
  sequence a = kv.add_sequence(tokens(0, 3));
  kv.append(a, tokens(3, 6));  // now [0..3] [4..7] [8]
  a.release();
  CHECK(kv.stats().cached_pages == 2);  // the two full pages, kept for reuse
  sequence b = kv.add_sequence(tokens(0, 9));
  CHECK(b.cached_tokens() == 8);
  CHECK(kv.stats().cached_pages == 0);
}

TEST_CASE("kv: eviction takes the least recently released pages first, tail before head") {
  frugal::host_resource host;
  cache kv{small_layout(), 6, host, no_watermark()};
  std::vector<page_id> a_pages, b_pages;
  {
    sequence a = kv.add_sequence(tokens(0, 12));    // 3 full pages
    sequence b = kv.add_sequence(tokens(100, 12));  // 3 full pages
    a_pages.assign(a.pages().begin(), a.pages().end());
    b_pages.assign(b.pages().begin(), b.pages().end());
    a.release();  // released first: least recently used
  }               // then b
  CHECK(kv.stats().cached_pages == 6);
  CHECK(kv.stats().free_pages == 0);
  // Each new page evicts one cached page: a's tail, a's middle, a's head, then b's tail, ...
  const std::vector<page_id> expected{a_pages[2], a_pages[1], a_pages[0],
                                      b_pages[2], b_pages[1], b_pages[0]};
  std::vector<sequence> fresh;
  for (std::size_t i = 0; i < expected.size(); ++i) {
    fresh.push_back(kv.add_sequence(tokens(1000 + 10 * static_cast<int>(i), 1)));
    CHECK(fresh.back().pages()[0] == expected[i]);
  }
  CHECK(kv.stats().evictions == 6);
  CHECK(kv.is_valid());
}

TEST_CASE("kv: a hit refreshes a cached page, so it is evicted after the others") {
  frugal::host_resource host;
  cache kv{small_layout(), 4, host, no_watermark()};
  page_id first_head = 0;
  {
    sequence a = kv.add_sequence(tokens(0, 8));
    sequence b = kv.add_sequence(tokens(100, 8));
    first_head = a.pages()[0];
  }
  {
    sequence again = kv.add_sequence(tokens(0, 5));  // hits a's head, then releases it last
    CHECK(again.pages()[0] == first_head);
  }
  sequence x = kv.add_sequence(tokens(500, 12));  // needs 3 pages: a's head must survive
  for (page_id p : x.pages()) CHECK(p != first_head);
  // The hit page itself counts as free, but taking it leaves nothing for the second page.
  CHECK_FALSE(kv.try_add_sequence(tokens(0, 5)).has_value());
  x.release();
  CHECK(kv.add_sequence(tokens(0, 5)).cached_tokens() == 4);
}

TEST_CASE("kv: fork shares pages, and the first write into a shared partial page copies it") {
  frugal::host_resource host;
  cache kv{small_layout(), 8, host, no_watermark()};
  sequence parent = kv.add_sequence(tokens(0, 6));  // [0..3] [4 5]
  sequence child = kv.fork(parent);
  CHECK(child.num_tokens() == 6);
  CHECK(std::equal(child.pages().begin(), child.pages().end(), parent.pages().begin()));
  CHECK(kv.pages().refcount(parent.pages()[1]) == 2);
  const page_id shared = parent.pages()[1];
  kv.append(child, tokens(6, 1));
  CHECK(child.pages()[0] == parent.pages()[0]);  // full page: still shared
  CHECK(child.pages()[1] != shared);
  const auto ops = kv.take_copy_ops();
  REQUIRE(ops.size() == 1);
  CHECK(ops[0] == copy_op{shared, child.pages()[1]});
  CHECK(kv.take_copy_ops().empty());
  kv.append(parent, tokens(6, 1));  // the parent now holds its page alone: no copy
  CHECK(parent.pages()[1] == shared);
  CHECK(kv.take_copy_ops().empty());
  CHECK(kv.stats().cow_copies == 1);
  CHECK(kv.is_valid());
}

TEST_CASE("kv: exports for FlashInfer, vLLM block tables and slot mapping") {
  frugal::host_resource host;
  cache kv{small_layout(), 16, host, no_watermark(false)};
  sequence a = kv.add_sequence(tokens(0, 9));  // 3 pages, last holds 1
  sequence b = kv.add_sequence(tokens(0, 4));  // 1 page, full
  const sequence* batch[] = {&a, &b};
  const auto fi = kv.export_flashinfer(batch);
  CHECK(fi.indptr == std::vector<std::int32_t>{0, 3, 4});
  CHECK(fi.indices == std::vector<std::int32_t>{static_cast<std::int32_t>(a.pages()[0]),
                                                static_cast<std::int32_t>(a.pages()[1]),
                                                static_cast<std::int32_t>(a.pages()[2]),
                                                static_cast<std::int32_t>(b.pages()[0])});
  CHECK(fi.last_page_len == std::vector<std::int32_t>{1, 4});
  const auto bt = kv.export_block_tables(batch, -1);
  CHECK(bt.max_pages == 3);
  CHECK(bt.tables == std::vector<std::int32_t>{static_cast<std::int32_t>(a.pages()[0]),
                                               static_cast<std::int32_t>(a.pages()[1]),
                                               static_cast<std::int32_t>(a.pages()[2]),
                                               static_cast<std::int32_t>(b.pages()[0]), -1, -1});
  CHECK(bt.seq_lens == std::vector<std::int32_t>{9, 4});
  kv.append(a, tokens(9, 2));  // slots 1 and 2 of a's last page
  const sequence* just_a[] = {&a};
  const auto slots = kv.slot_mapping(just_a);
  CHECK(slots == std::vector<std::int64_t>{a.pages()[2] * 4 + 1, a.pages()[2] * 4 + 2});
  // Caller buffers that are too small are refused before anything is written.
  std::vector<std::int32_t> indptr(2, 7), indices(4, 7), last(2, 7);
  CHECK_THROWS_AS(kv.export_flashinfer(batch, indptr, indices, last), frugal::invalid_argument);
  CHECK(indptr == std::vector<std::int32_t>{7, 7});
}

TEST_CASE("kv: swap out to the host tier and back, with the copies to perform") {
  frugal::host_resource host;
  cache kv{small_layout(), 8, host, {.watermark = 0.0, .host_pages = 4}};
  sequence seq = kv.add_sequence(tokens(0, 7));  // 2 pages
  // Write a recognisable byte into each device page, perform the swap copies on the CPU.
  for (page_id p : seq.pages())
    kv.pages().page_address(p)[0] = std::byte{static_cast<unsigned char>(p + 1)};
  const std::vector<page_id> device_pages(seq.pages().begin(), seq.pages().end());
  const auto out = kv.swap_out(seq);
  REQUIRE(out.size() == 2);
  CHECK(out[0].src == device_pages[0]);
  CHECK(out[0].kind == frugal::kv::copy_kind::device_to_host);
  frugal::kv::perform_copies_host(kv, out);
  CHECK(seq.swapped_out());
  CHECK(seq.pages().empty());
  CHECK(kv.host_pages()->num_free() == 2);
  CHECK_THROWS_AS(kv.append(seq, tokens(7, 1)), frugal::invalid_argument);
  const sequence* batch[] = {&seq};
  CHECK_THROWS_AS(kv.export_block_tables(batch), frugal::invalid_argument);
  const auto in = kv.swap_in(seq);
  REQUIRE(in.size() == 2);
  CHECK(in[0].kind == frugal::kv::copy_kind::host_to_device);
  frugal::kv::perform_copies_host(kv, in);
  CHECK_FALSE(seq.swapped_out());
  for (std::size_t i = 0; i < 2; ++i)
    CHECK(kv.pages().page_address(seq.pages()[i])[0] ==
          std::byte{static_cast<unsigned char>(device_pages[i] + 1)});
  CHECK(kv.host_pages()->num_free() == 4);
  CHECK(kv.stats().swaps_out == 1);
  CHECK(kv.stats().swaps_in == 1);
  kv.append(seq, tokens(7, 1));
  CHECK(kv.is_valid());
}

TEST_CASE("kv: reset_prefix_cache refuses while pages are in use") {
  frugal::host_resource host;
  cache kv{small_layout(), 8, host, no_watermark()};
  sequence a = kv.add_sequence(tokens(0, 8));
  CHECK_FALSE(kv.reset_prefix_cache());
  a.release();
  CHECK(kv.stats().cached_pages == 2);
  CHECK(kv.reset_prefix_cache());
  CHECK(kv.stats().cached_pages == 0);
  CHECK(kv.stats().free_pages == 8);
  CHECK(kv.add_sequence(tokens(0, 8)).cached_tokens() == 0);
  CHECK(kv.is_valid());
}

TEST_CASE("kv: swaps hand out pending copy-on-write copies first, so one ordered list is right") {
  // A copy-on-write copy is pending when its destination page is released and reused by a swap:
  // performed in the order returned, the swap's copy lands last.
  frugal::host_resource host;
  cache kv{small_layout(), 8, host, {.watermark = 0.0, .host_pages = 4}};
  sequence s = kv.add_sequence(tokens(100, 3));
  const auto out = kv.swap_out(s);
  sequence a = kv.add_sequence(tokens(0, 6));
  sequence b = kv.fork(a);
  kv.append(b, tokens(6, 1));  // pending copy {a's last page -> b's new page}
  const page_id cow_dst = b.pages()[1];
  b.release();  // the destination is free again, its copy still pending
  const auto in = kv.swap_in(s);
  REQUIRE(in.size() == 2);
  CHECK(in[0] == copy_op{a.pages()[1], cow_dst, frugal::kv::copy_kind::device_to_device});
  CHECK(in[1].kind == frugal::kv::copy_kind::host_to_device);
  CHECK(kv.take_copy_ops().empty());
  CHECK(out.size() == 1);
  CHECK(kv.is_valid());
}

TEST_CASE("kv::cache: pages held back until computed are never prefix hits", "[kv][cache]") {
  frugal::host_resource host;
  cache kv{small_layout(), 16, host, no_watermark()};
  const std::vector<token_id> prompt{1, 2, 3, 4, 5, 6, 7, 8, 9};  // two full pages of 4
  auto a = kv.try_add_sequence(prompt, 0, 0);
  REQUIRE(a);
  // Nothing of a is computed yet: an equal prompt finds no page to reuse.
  auto b = kv.try_add_sequence(prompt, 0, 0);
  REQUIRE(b);
  CHECK(b->cached_tokens() == 0);
  b->release();  // never computed either: its pages are freed, not cached
  CHECK(kv.stats().cached_pages == 0);
  kv.mark_computed(*a, 5);  // the first page is written
  auto c = kv.add_sequence(prompt);
  CHECK(c.cached_tokens() == 4);
  c.release();
  kv.mark_computed(*a, 9);
  auto d = kv.add_sequence(prompt);
  CHECK(d.cached_tokens() == 8);
  CHECK(kv.is_valid());
  // Released before its second page was computed: that page is freed, not cached.
  auto e = kv.try_add_sequence(std::vector<token_id>{7, 7, 7, 7, 7, 7, 7, 7, 7}, 0, 4);
  REQUIRE(e);
  const auto cached_before = kv.stats().cached_pages;
  e->release();
  CHECK(kv.stats().cached_pages == cached_before + 1);
  CHECK(kv.is_valid());
}

TEST_CASE("kv: try_swap_out refuses, changing nothing, when the host tier is short") {
  frugal::host_resource host;
  cache kv{small_layout(), 8, host, {.watermark = 0.0, .host_pages = 2}};
  sequence seq = kv.add_sequence(tokens(0, 10));  // 3 pages, the host tier has 2
  kv.append(seq, tokens(10, 1));
  const std::vector<page_id> pages(seq.pages().begin(), seq.pages().end());
  const auto before = kv.stats();
  CHECK_FALSE(kv.try_swap_out(seq).has_value());
  CHECK_THROWS_AS(kv.swap_out(seq), frugal::out_of_memory);
  CHECK_FALSE(seq.swapped_out());
  CHECK(std::vector<page_id>(seq.pages().begin(), seq.pages().end()) == pages);
  CHECK(kv.host_pages()->num_free() == 2);
  CHECK(kv.stats().swaps_out == before.swaps_out);
  CHECK(kv.stats().free_pages == before.free_pages);
  CHECK(kv.is_valid());
  // A sequence that fits is swapped out, with its copies.
  sequence small = kv.add_sequence(tokens(100, 5));  // 2 pages
  const auto ops = kv.try_swap_out(small);
  REQUIRE(ops.has_value());
  CHECK(ops->size() == 2);
  CHECK(small.swapped_out());
  CHECK(kv.host_pages()->num_free() == 0);
  // The argument rules are swap_out's: a swapped-out sequence is refused.
  CHECK_THROWS_AS(kv.try_swap_out(small), frugal::invalid_argument);
}
