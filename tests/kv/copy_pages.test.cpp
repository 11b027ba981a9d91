// The page-copy kernel's work split (frugal/kv/detail/copy_pages.hpp) run on the host: every
// thread of the grid the kernel would launch, in turn, against memcpy of the same ops. Page
// sizes that are not a multiple of the access width (1001, 1003 bytes with 16-byte aligned bases
// and strides) make the byte-wise tail run; the bytes between pages and the pages no op writes
// must keep their poison.
#include "kv/random_copy_ops.hpp"

#include <frugal/kv/detail/copy_pages.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <numeric>
#include <random>
#include <vector>

namespace {

using frugal::kv::copy_kernel_tuning;
using frugal::kv::copy_op;
using frugal::kv::page_id;
namespace detail = frugal::kv::detail;

constexpr std::byte poison{0xCD};

/// Host memory whose usable part starts `offset` bytes past a 256-byte boundary.
struct host_buffer {
  std::vector<std::byte> storage;
  std::byte* p;
  host_buffer(std::size_t bytes, std::size_t offset) : storage(bytes + 256 + offset, poison) {
    const auto address = reinterpret_cast<std::uintptr_t>(storage.data());
    p = storage.data() + (256 - address % 256) % 256 + offset;
  }
};

struct copy_case {
  std::size_t page_bytes, src_stride, dst_stride;
  std::size_t src_offset = 0, dst_offset = 0;  // from a 256-byte boundary
};

/// Runs the emulated kernel and memcpy on the same ops; true when every destination byte (the
/// pages, the gaps between them, the pages no op names) is the same.
bool emulation_matches_memcpy(const copy_case& c, const copy_kernel_tuning& tuning,
                              std::uint64_t seed) {
  const std::uint32_t src_pages = 30, dst_pages = 40;
  host_buffer src(src_pages * c.src_stride, c.src_offset);
  host_buffer dst(dst_pages * c.dst_stride, c.dst_offset);
  host_buffer expected(dst_pages * c.dst_stride, c.dst_offset);
  std::mt19937_64 rng(seed);
  for (std::size_t i = 0; i < src_pages * c.src_stride; ++i)
    src.p[i] = static_cast<std::byte>(rng());
  const std::vector<copy_op> ops = random_ops(35, src_pages, dst_pages, seed + 1);
  for (const copy_op& op : ops)
    std::memcpy(expected.p + op.dst * c.dst_stride, src.p + op.src * c.src_stride, c.page_bytes);
  detail::copy_pages_emulated(src.p, dst.p, c.src_stride, c.dst_stride, c.page_bytes, ops.data(),
                              ops.size(), tuning);
  return std::memcmp(dst.p, expected.p, dst_pages * c.dst_stride) == 0;
}

int width_of(const copy_case& c, int limit) {
  return detail::copy_access_width(c.src_offset, c.dst_offset, c.src_stride, c.dst_stride, limit);
}

}  // namespace

TEST_CASE("kv copy emulation: odd page sizes run the byte-wise tail after 16-byte words",
          "[kv][copy]") {
  // 1001 = 62 * 16 + 9 and 1003 = 62 * 16 + 11: aligned bases and strides give 16-byte words
  // and a tail of 9 or 11 bytes, which only the tail loop copies.
  const copy_case cases[] = {{1001, 1008, 1024}, {1003, 1024, 1008}, {1001, 1024, 1024},
                             {17, 32, 48},       {15, 16, 32},       {1, 16, 16}};
  for (const copy_case& c : cases) {
    REQUIRE(width_of(c, 16) == 16);
    for (const std::size_t chunk : {std::size_t{64}, std::size_t{16} << 10}) {
      for (const int threads : {32, 64}) {
        CAPTURE(c.page_bytes, c.src_stride, c.dst_stride, chunk, threads);
        const copy_kernel_tuning tuning{.threads_per_block = threads,
                                        .vec_bytes = 16,
                                        .bytes_per_block = chunk,
                                        .max_blocks_x = 7};
        CHECK(emulation_matches_memcpy(c, tuning, c.page_bytes + chunk + threads));
      }
    }
  }
}

TEST_CASE("kv copy emulation: every access width with odd pages and offset bases", "[kv][copy]") {
  // vec_bytes caps the width; the bases' and strides' alignment caps it further.
  const copy_case aligned{1003, 1024, 1040};
  for (const int width : {16, 8, 4, 2, 1}) {
    CAPTURE(width);
    REQUIRE(width_of(aligned, width) == width);
    CHECK(emulation_matches_memcpy(
        aligned,
        {.threads_per_block = 32, .vec_bytes = width, .bytes_per_block = 128, .max_blocks_x = 5},
        17 + width));
  }
  const copy_case offsets[] = {{1001, 1008, 1016, 8, 0},   // 8-byte words, 1 byte of tail
                               {1003, 1004, 1012, 4, 4},   // 4-byte words, 3 bytes of tail
                               {1001, 1002, 1010, 2, 6},   // 2-byte words, 1 byte of tail
                               {1000, 1004, 1012, 4, 2}};  // 2-byte words, no tail
  const int expected_width[] = {8, 4, 2, 2};
  for (std::size_t i = 0; i < std::size(offsets); ++i) {
    const copy_case& c = offsets[i];
    CAPTURE(c.page_bytes, c.src_offset, c.dst_offset);
    REQUIRE(width_of(c, 16) == expected_width[i]);
    CHECK(emulation_matches_memcpy(c, {.threads_per_block = 64, .bytes_per_block = 256}, 99 + i));
  }
}

TEST_CASE("kv copy launch shape: chunks, caps and the tail's place", "[kv][copy]") {
  const copy_kernel_tuning tuning{
      .threads_per_block = 128, .bytes_per_block = 1000, .max_blocks_x = 3};
  // 1000 rounds down to 992 bytes a chunk at 16-byte words; a 2 MiB page needs 2115 of them.
  detail::copy_launch shape = detail::plan_copy(std::size_t{2} << 20, 10, 16, tuning);
  CHECK(shape.chunk_bytes == 992);
  CHECK(shape.grid_x == 3);
  CHECK(shape.grid_y == ((std::size_t{2} << 20) + 991) / 992);
  CHECK(shape.threads == 128);
  // Chunks cover the whole words only: 1001 bytes are 62 words (992 bytes, one chunk) and a
  // 9-byte tail; 2001 bytes are 125 words (2000 bytes, three chunks) and a 1-byte tail.
  shape = detail::plan_copy(1001, 2, 16, tuning);
  CHECK(shape.grid_y == 1);
  CHECK(shape.grid_x == 2);
  shape = detail::plan_copy(2001, 2, 16, tuning);
  CHECK(shape.grid_y == 3);
  // A page smaller than one word still gets one row of blocks (for the tail).
  shape = detail::plan_copy(9, 1, 16, tuning);
  CHECK(shape.grid_y == 1);
  // A chunk smaller than a word becomes one word; the y grid is capped at 65535.
  shape = detail::plan_copy(std::size_t{1} << 30, 1, 16, {.bytes_per_block = 4});
  CHECK(shape.chunk_bytes == 16);
  CHECK(shape.grid_y == 65535);
}
