#include "mr/fixtures.hpp"
#include "mr/test_resources.hpp"

#include <frugal/mr/pool.hpp>
#include <frugal/mr/stats_adaptor.hpp>
#include <frugal/mr/tracking_adaptor.hpp>
#include <frugal/tensor/tensor.hpp>

#include <catch2/catch.hpp>

#include <limits>

using frugal::make_tagged_tensor;
using frugal::make_tensor;
using frugal::tensor;
using extents_2d = cuda::std::dextents<std::size_t, 2>;

TEMPLATE_TEST_CASE("tensor: over every resource of the conformance suite", "[tensor]",
                   FRUGAL_CONFORMANCE_FIXTURES) {
  TestType f;
  const auto before = frugal::testing::stats_of(f.r);
  {
    tensor<float, extents_2d> t(f.r, extents_2d(64, 33));
    REQUIRE_FALSE(t.empty());
    CHECK(t.size() == 64 * 33);
    CHECK(t.bytes() == 64 * 33 * sizeof(float));
    CHECK(reinterpret_cast<std::uintptr_t>(t.data()) % 256 == 0);
    CHECK(t.host_accessible() == TestType::host);
    if constexpr (TestType::writable && TestType::host) {
      auto v = t.view();
      for (std::size_t i = 0; i < 64; ++i)
        for (std::size_t j = 0; j < 33; ++j) v(i, j) = static_cast<float>(i * 100 + j);
      CHECK(t.data()[5 * 33 + 7] == 507.0f);
    }
  }
  if (const auto after = frugal::testing::stats_of(f.r)) {
    CHECK(after->allocations == before->allocations);
    if (TestType::reclaims_every_free) CHECK(after->bytes_in_use == before->bytes_in_use);
  }
}

TEST_CASE("tensor: mdspan indexing matches manual row-major offsets") {
  frugal::pool_resource pool{frugal::host_resource{}};
  auto t = make_tensor<int>(pool, 3, 4, 5);
  CHECK(t.rank() == 3);
  CHECK(t.extent(0) == 3);
  CHECK(t.extent(2) == 5);
  CHECK(t.stride(0) == 20);
  CHECK(t.stride(1) == 5);
  CHECK(t.stride(2) == 1);
  auto v = t.view();
  for (std::size_t i = 0; i < 3; ++i)
    for (std::size_t j = 0; j < 4; ++j)
      for (std::size_t k = 0; k < 5; ++k) {
        CHECK(&v(i, j, k) == t.data() + i * 20 + j * 5 + k);
        v(i, j, k) = static_cast<int>(i * 100 + j * 10 + k);
      }
  CHECK(t.data()[2 * 20 + 3 * 5 + 4] == 234);
}

TEST_CASE("tensor: static extents") {
  frugal::host_resource host;
  tensor<double, cuda::std::extents<std::size_t, 4, 8>> t(host, {});
  CHECK(t.size() == 32);
  CHECK(t.stride(0) == 8);
  t.view()(3, 7) = 2.5;
  CHECK(t.data()[31] == 2.5);
}

TEST_CASE("tensor: move-only, a moved-from tensor is empty and destroying it does nothing") {
  frugal::stats_adaptor counted{frugal::host_resource{}};
  auto a = make_tensor<float>(counted, 1000);
  float* p = a.data();
  tensor<float> b = std::move(a);
  CHECK(a.empty());
  CHECK(a.data() == nullptr);
  CHECK(a.size() == 0);
  CHECK(b.data() == p);
  CHECK(counted.stats().allocations == 1);
  tensor<float> c;
  c = std::move(b);
  CHECK(c.data() == p);
  c = make_tensor<float>(counted, 10);  // the old memory goes back first
  CHECK(counted.stats().allocations == 1);
  CHECK(counted.stats().bytes_in_use == 10 * sizeof(float));
  c.reset();
  c.reset();  // double release is impossible: the second reset has nothing to free
  CHECK(counted.stats().allocations == 0);
  STATIC_REQUIRE_FALSE(std::is_copy_constructible_v<tensor<float>>);
}

TEST_CASE("tensor: tags reach the tracking adaptor") {
  frugal::tracking_adaptor tracker{frugal::host_resource{}};
  {
    auto up = frugal::make_tagged_tensor<float>(tracker, "layer3.mlp.up", 128, 256);
    auto plain = make_tensor<float>(tracker, 16);
    const auto records = tracker.outstanding();
    REQUIRE(records.size() == 2);
    bool found = false;
    for (const auto& r : records)
      if (r.tag == "layer3.mlp.up") {
        found = true;
        CHECK(r.bytes == 128 * 256 * sizeof(float));
      }
    CHECK(found);
    CHECK(up.tag() == "layer3.mlp.up");
    CHECK(tracker.report().find("layer3.mlp.up") != std::string::npos);
  }
  CHECK(tracker.outstanding_bytes() == 0);
}

TEST_CASE("tensor: a zero, negative or overflowing shape is rejected before allocating") {
  frugal::stats_adaptor counted{frugal::host_resource{}};
  CHECK_THROWS_AS(make_tensor<float>(counted, 4, 0), frugal::invalid_argument);
  CHECK_THROWS_AS(make_tensor<float>(counted, -3), frugal::invalid_argument);
  // (A cuda::std::extents cannot hold a negative extent: its constructor's precondition forbids
  // it, so negative sizes are caught where they enter, in make_tensor.)
  CHECK_THROWS_AS(make_tagged_tensor<float>(counted, "x", 2, -1), frugal::invalid_argument);
  const std::size_t huge = std::numeric_limits<std::size_t>::max() / 2;
  try {
    tensor<float, extents_2d> t(counted, extents_2d(huge, 4));
    FAIL("an overflowing shape was accepted");
  } catch (const frugal::invalid_argument& e) {
    CHECK(std::string(e.what()).find("overflows") != std::string::npos);
  }
  CHECK(counted.total_allocations() == 0);
}

TEST_CASE("tensor: out_of_memory from the resource propagates and leaves nothing behind") {
  frugal::testing::budget_resource upstream(1 << 20);
  frugal::pool_resource pool{frugal::ref(upstream), {.max_size = 1 << 20}};
  auto keep = make_tensor<float>(pool, 1000);
  const auto before = pool.stats();
  CHECK_THROWS_AS(make_tensor<float>(pool, 1 << 20), frugal::out_of_memory);
  CHECK(pool.stats() == before);
}
