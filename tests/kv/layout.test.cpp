#include <frugal/kv/layout.hpp>
#include <frugal/kv/page_pool.hpp>
#include <frugal/mr/host_resource.hpp>

#include <catch2/catch.hpp>

#include <cstdint>
#include <vector>

TEST_CASE("kv: layout sizes, page addressing and sizing helpers") {
  const frugal::kv::layout l{.num_layers = 32, .num_kv_heads = 8, .head_dim = 128, .page_size = 16};
  CHECK(l.token_bytes() == 8 * 128 * 2);
  CHECK(l.page_bytes() == 32u * 2 * 16 * 8 * 128 * 2);  // 2 MiB
  CHECK(frugal::kv::pages_that_fit(l, std::size_t{80} << 30) == 40960);
  CHECK(frugal::kv::max_concurrency(l, 40960, 2048) == Approx(320.0));
  const frugal::kv::layout fp8{.num_layers = 1,
                               .num_kv_heads = 4,
                               .head_dim = 64,
                               .page_size = 16,
                               .dtype = frugal::kv::dtype::fp8_e4m3,
                               .scales = frugal::kv::scale_granularity::per_head};
  CHECK(fp8.page_bytes() == 2u * 16 * 4 * 64);
  CHECK(fp8.scales_per_layer() == 8);

  frugal::host_resource host;
  const frugal::kv::layout nhd{.num_layers = 2, .num_kv_heads = 3, .head_dim = 4, .page_size = 5};
  frugal::kv::page_pool pool{nhd, 4, host};
  const auto a = pool.addressing();
  CHECK(a.page_stride >= nhd.page_bytes());
  CHECK(a.page_stride % 256 == 0);
  CHECK(a.offset(1, 2, 1, 3, 2, 1) == 2 * a.page_stride + 1 * nhd.layer_page_bytes() +
                                          5 * 3 * 4 * 2 + 3 * (3 * 4 * 2) + 2 * (4 * 2) + 1 * 2);
  auto hnd_layout = nhd;
  hnd_layout.order = frugal::kv::order::hnd;
  frugal::kv::page_pool hnd{hnd_layout, 4, host};
  CHECK(hnd.addressing().head_stride == 5 * 4 * 2);
  CHECK(hnd.addressing().slot_stride == 4 * 2);
  CHECK(pool.memory().size() == 4 * a.page_stride);  // one contiguous allocation
  CHECK_THROWS_AS((frugal::kv::page_pool{nhd, 0, host}), frugal::invalid_argument);
}

TEST_CASE("kv: pages_for rounds tokens up to whole pages; slot_of is page x page_size + offset") {
  const frugal::kv::layout l{.num_layers = 1, .num_kv_heads = 1, .head_dim = 8, .page_size = 16};
  CHECK(l.pages_for(0) == 0);
  CHECK(l.pages_for(1) == 1);
  CHECK(l.pages_for(16) == 1);
  CHECK(l.pages_for(17) == 2);
  CHECK(l.pages_for(std::size_t{16} * 1000 + 15) == 1001);
  const std::vector<std::uint32_t> pages{7, 2, 9};
  CHECK(l.slot_of(pages, 0) == 7 * 16);
  CHECK(l.slot_of(pages, 15) == 7 * 16 + 15);
  CHECK(l.slot_of(pages, 16) == 2 * 16);
  CHECK(l.slot_of(pages, 40) == 9 * 16 + 8);
  const frugal::kv::layout wide{
      .num_layers = 1, .num_kv_heads = 1, .head_dim = 8, .page_size = 0xFFFF};
  const std::vector<std::uint32_t> far{0xFFFFFFF0u};
  CHECK(wide.slot_of(far, 3) == std::int64_t{0xFFFFFFF0} * 0xFFFF + 3);  // no 32-bit overflow
}
