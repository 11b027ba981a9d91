// The page pool (frugal/kv/page_pool.hpp): its addressing reaches every element of a page.
#include "kv/fixtures.hpp"

#include <frugal/kv/page_pool.hpp>
#include <frugal/mr/host_resource.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <vector>

namespace kv = frugal::kv;
using kv::test::describe;

TEST_CASE("kv: addressing() reaches each element of a page exactly once") {
  frugal::host_resource host;
  for (const kv::order o : {kv::order::nhd, kv::order::hnd})
    for (const kv::dtype d : {kv::dtype::fp16, kv::dtype::int8}) {
      const kv::layout l{.num_layers = 2,
                         .num_kv_heads = 3,
                         .head_dim = 4,
                         .page_size = 5,
                         .dtype = d,
                         .order = o};
      INFO(describe(l));
      kv::page_pool pool{l, 3, host};
      const kv::page_addressing a = pool.addressing();
      std::vector<int> hits(l.page_bytes() / a.element_size, 0);
      for (std::size_t layer = 0; layer < l.num_layers; ++layer)
        for (std::size_t k_or_v = 0; k_or_v < 2; ++k_or_v)
          for (std::size_t slot = 0; slot < l.page_size; ++slot)
            for (std::size_t head = 0; head < l.num_kv_heads; ++head)
              for (std::size_t dim = 0; dim < l.head_dim; ++dim) {
                const std::size_t offset =
                    a.offset(layer, 1, k_or_v, slot, head, dim) - a.page_stride;
                REQUIRE(offset % a.element_size == 0);
                REQUIRE(offset < l.page_bytes());
                ++hits[offset / a.element_size];
              }
      CHECK(std::all_of(hits.begin(), hits.end(), [](int h) { return h == 1; }));
      CHECK(pool.page_address(1) == a.base + a.page_stride);
    }
}
