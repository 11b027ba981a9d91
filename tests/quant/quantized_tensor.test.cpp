#include "mr/test_resources.hpp"

#include <frugal/quant/quantized_tensor.hpp>

#include <catch2/catch.hpp>

#include <cstdint>
#include <utility>

using namespace frugal::quant;
using frugal::testing::budget_resource;

TEST_CASE("quantized_tensor owns one allocation of layout().total_bytes", "[quant][tensor]") {
  budget_resource counted;
  {
    quantized_tensor q(format::int4_g64_asym, 4, 128, counted);
    CHECK(counted.allocations == 1);
    CHECK(counted.in_use() == layout_of(format::int4_g64_asym, 4, 128).total_bytes);
    CHECK(q.bytes() == q.layout().total_bytes);
    CHECK(reinterpret_cast<std::uintptr_t>(q.data()) % quantized_tensor::alignment == 0);
    CHECK(q.bits_per_element() == bits_per_element(format::int4_g64_asym, 4, 128));
    CHECK(q.values() == q.data());
    CHECK(q.scales() == q.data() + q.layout().scales_offset);
    CHECK(q.zero_points() == q.data() + q.layout().zero_points_offset);
    CHECK(q.tensor_scale() == nullptr);
    CHECK(q.host_accessible());
    quantized_tensor moved(std::move(q));
    CHECK(q.empty());  // NOLINT(bugprone-use-after-move): moved-from is empty by contract
    CHECK(q.bytes() == 0);
    CHECK(q.data() == nullptr);
    CHECK(moved.rows() == 4);
    quantized_tensor assigned;
    assigned = std::move(moved);
    CHECK(assigned.cols() == 128);
    CHECK(counted.allocations == 1);
    CHECK(counted.deallocations == 0);
  }
  CHECK(counted.deallocations == 1);
  CHECK(counted.in_use() == 0);
  CHECK_THROWS_AS(quantized_tensor(format::nf4, 2, 32, counted), frugal::invalid_argument);
  CHECK(counted.allocations == 1);
}
