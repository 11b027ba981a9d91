// frugal/mr/cuda_virtual_resource.hpp: device memory over one reserved virtual address range:
// the address space is reserved up front, physical memory is committed granule by granule as
// allocations need it, and trim() hands free granules back to the device.
// snippet: cuda
//   frugal::cuda_virtual_resource gpu{{.reserve_bytes = std::size_t{64} << 30}};  // 64 GiB of VA
//   void* p = gpu.allocate(std::size_t{3} << 20);  // commits two 2 MiB granules
//   gpu.deallocate(p, std::size_t{3} << 20);       // still committed, reused first
//   gpu.trim();                                    // committed_bytes() == 0 again
#pragma once

#include <frugal/config.hpp>

#if !FRUGAL_HAS_CUDA
#error \
    "frugal/mr/cuda_virtual_resource.hpp needs the CUDA runtime: link frugal::cuda (it defines FRUGAL_HAS_CUDA=1)"
#endif

#include <frugal/mr/concepts.hpp>
#include <frugal/mr/detail/cuda_driver.hpp>
#include <frugal/mr/detail/cuda_support.hpp>
#include <frugal/mr/detail/range_map.hpp>
#include <frugal/mr/resource_stats.hpp>

#include <cudaTypedefs.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace frugal {

/// @brief Construction options of cuda_virtual_resource.
struct cuda_virtual_options {
  /// Value of `device` that selects the device current at construction.
  static constexpr int current_device = -1;

  /// Virtual address space to reserve, rounded up to the allocation granularity. It bounds the
  /// total of live allocations; reserving far more than the device holds costs nothing.
  std::size_t reserve_bytes = 0;
  /// Device ordinal that backs the memory, or current_device.
  int device = current_device;
};

/// @brief Device memory carved first-fit out of one reserved virtual address range, committed
/// on demand with the CUDA driver's virtual memory API. See docs/concepts.md#resource.
///
/// - Construction reserves `reserve_bytes` of address space (cuMemAddressReserve) and commits
///   nothing. allocate() finds the first free range that fits, then commits the granules it
///   covers that are not yet backed (cuMemCreate + cuMemMap + cuMemSetAccess, one granule of
///   cuMemGetAllocationGranularity's minimum size, usually 2 MiB, at a time).
/// - deallocate() returns the range to the free map; its memory stays committed, so the next
///   allocation there costs no driver call. trim() unmaps the granules that hold no allocation.
/// - All bookkeeping is on the host: the free-range map (detail::range_map, in 256-byte units),
///   one committed flag per granule, and the live allocations.
/// - Alignments are powers of two up to the granularity; larger ones throw invalid_argument.
///
/// The driver functions are looked up at run time, so nothing links libcuda; construction
/// throws cuda_error when the driver is missing. Equality is identity: memory must go back to
/// the resource it came from. Movable (a move keeps the identity; the moved-from object may
/// only be destroyed or assigned to), not copyable. Not thread-safe: wrap it in
/// frugal::synchronized to share it between threads. The destructor unmaps everything,
/// including allocations still live, and frees the address range.
class cuda_virtual_resource {
 public:
  /// Unit of the free-range map: every allocation starts on a 256-byte boundary.
  static constexpr std::size_t unit_bytes = default_alignment;

  /// @brief Reserves the address range; commits nothing.
  /// @throws invalid_argument when reserve_bytes is 0 or the device ordinal is negative;
  ///         cuda_error when the driver or its virtual memory functions are unavailable;
  ///         out_of_memory when the address space cannot be reserved
  explicit cuda_virtual_resource(cuda_virtual_options options) : state_(std::make_unique<state>()) {
    FRUGAL_EXPECTS(options.reserve_bytes > 0, "cuda_virtual_resource: reserve_bytes must be > 0",
                   invalid_argument);
    FRUGAL_EXPECTS(options.device >= 0 || options.device == cuda_virtual_options::current_device,
                   "cuda_virtual_resource: device must be an ordinal or current_device",
                   invalid_argument);
    state& s = *state_;
    s.driver = &detail::cuda_driver_api::get();
    s.device = options.device;
    if (s.device == cuda_virtual_options::current_device) {
      const cudaError_t status = cudaGetDevice(&s.device);
      if (status != cudaSuccess) {
        (void)cudaGetLastError();
        FRUGAL_FAIL(std::string("cuda_virtual_resource: cudaGetDevice "
                                "failed: ") +
                        cudaGetErrorName(status),
                    cuda_error);
      }
    }
    const detail::scoped_device on(s.device, /*bind=*/true);
    on.check(who, s.device);

    const CUmemAllocationProp properties = s.allocation_properties();
    s.driver->check(s.driver->mem_get_allocation_granularity(&s.granularity, &properties,
                                                             CU_MEM_ALLOC_GRANULARITY_MINIMUM),
                    "cuMemGetAllocationGranularity");
    FRUGAL_EXPECTS(
        detail::is_pow2(s.granularity) && s.granularity % unit_bytes == 0,
        "cuda_virtual_resource: unexpected allocation granularity " + std::to_string(s.granularity),
        cuda_error);
    FRUGAL_EXPECTS(options.reserve_bytes <= static_cast<std::size_t>(-1) - s.granularity,
                   "cuda_virtual_resource: reserve_bytes is too large", invalid_argument);
    const std::size_t reserved = detail::align_up(options.reserve_bytes, s.granularity);
    // Host structures first: once the range is reserved, nothing else can fail.
    s.ranges = detail::range_map(reserved / unit_bytes);
    s.committed.assign(reserved / s.granularity, false);

    CUdeviceptr base = 0;
    const CUresult result = s.driver->mem_address_reserve(&base, reserved, s.granularity, 0, 0);
    if (result == CUDA_ERROR_OUT_OF_MEMORY)
      FRUGAL_OUT_OF_MEMORY(reserved, "cannot reserve that much virtual address space", who);
    s.driver->check(result, "cuMemAddressReserve");
    s.base = base;
    s.reserved_bytes = reserved;
  }

  cuda_virtual_resource(cuda_virtual_resource&&) noexcept = default;
  cuda_virtual_resource& operator=(cuda_virtual_resource&&) noexcept = default;
  cuda_virtual_resource(const cuda_virtual_resource&) = delete;
  cuda_virtual_resource& operator=(const cuda_virtual_resource&) = delete;
  ~cuda_virtual_resource() = default;

  /// @brief Allocates `bytes` bytes of device memory aligned to `alignment`, committing the
  /// granules the range covers that are not yet backed. O(free ranges) to find the range, plus
  /// three driver calls per newly committed granule (create, map, release the handle) and one
  /// cuMemSetAccess per run of adjacent new granules.
  /// @param alignment a power of two no larger than granularity()
  /// @returns device memory inside the reserved range, or nullptr when bytes is 0
  /// @throws invalid_argument for a bad alignment; out_of_memory when no free range of the
  ///         reserved address space fits or the device cannot back the granules; cuda_error for
  ///         other driver errors. The resource is unchanged after any of them.
  void* allocate(std::size_t bytes, std::size_t alignment = default_alignment) {
    detail::check_alignment(alignment, who);
    state& s = *state_;
    FRUGAL_EXPECTS(alignment <= s.granularity,
                   std::string(who) + ": alignment " + std::to_string(alignment) +
                       " exceeds the allocation granularity " + std::to_string(s.granularity),
                   invalid_argument);
    if (bytes == 0) return nullptr;
    if (bytes > s.reserved_bytes)
      FRUGAL_OUT_OF_MEMORY(bytes,
                           describe(stats()) + "; larger than the reserved address space of " +
                               format_bytes(s.reserved_bytes),
                           who);
    const std::size_t units = (bytes + unit_bytes - 1) / unit_bytes;
    const std::size_t unit_alignment = alignment > unit_bytes ? alignment / unit_bytes : 1;
    const auto start = s.ranges.find_first_fit(units, unit_alignment);
    if (!start)
      FRUGAL_OUT_OF_MEMORY(bytes,
                           describe(stats()) + "; the reserved address space of " +
                               format_bytes(s.reserved_bytes) + " has no free range that fits",
                           who);

    // Each step undoes itself on failure and the ones before it are undone here, without throwing.
    const auto [live, inserted] = s.live.emplace(*start, live_range{units, bytes});
    FRUGAL_ASSERT(inserted, "cuda_virtual_resource: a free range was recorded as live");
    std::vector<std::size_t> fresh;
    try {
      fresh = s.commit(*start * unit_bytes / s.granularity,
                       ceil_div((*start + units) * unit_bytes, s.granularity), bytes);
      [[maybe_unused]] const bool taken = s.ranges.take(*start, units);  // throws bad_alloc only
      FRUGAL_ASSERT(taken, "cuda_virtual_resource: the range found free could not be taken");
    } catch (...) {
      s.decommit(fresh);
      s.live.erase(live);
      throw;
    }
    s.bytes_in_use += bytes;
    s.peak_bytes_in_use = std::max(s.peak_bytes_in_use, s.bytes_in_use);
    return s.pointer(*start * unit_bytes);
  }

  /// @brief As allocate, but returns nullptr instead of throwing.
  void* try_allocate(std::size_t bytes, std::size_t alignment = default_alignment) noexcept {
    try {
      return allocate(bytes, alignment);
    } catch (...) {
      return nullptr;
    }
  }

  /// @brief Returns the range at `p` to the free map; its granules stay committed until trim().
  /// O(log free ranges). nullptr is a no-op. An unknown pointer, double free or a size other than
  /// the one allocated goes to the misuse handler and changes nothing.
  void deallocate(void* p, std::size_t bytes,
                  [[maybe_unused]] std::size_t alignment = default_alignment) noexcept {
    if (p == nullptr) return;
    state& s = *state_;
    const auto address = static_cast<CUdeviceptr>(reinterpret_cast<std::uintptr_t>(p));
    if (address < s.base || address - s.base >= s.reserved_bytes ||
        (address - s.base) % unit_bytes != 0) {
      misuse(misuse_kind::unknown_pointer, p, bytes, "pointer is not from this resource");
      return;
    }
    const std::size_t start = static_cast<std::size_t>(address - s.base) / unit_bytes;
    const auto live = s.live.find(start);
    if (live == s.live.end()) {
      const bool freed = s.ranges.is_free(start, 1);
      misuse(freed ? misuse_kind::double_free : misuse_kind::unknown_pointer, p, bytes,
             freed ? "pointer was already freed" : "pointer is not the start of an allocation");
      return;
    }
    if (live->second.bytes != bytes) {
      misuse(misuse_kind::size_mismatch, p, bytes, "size differs from the allocated",
             live->second.bytes);
      return;
    }
    try {
      if (!s.ranges.release(start, live->second.units)) {
        misuse(misuse_kind::other, p, bytes, "range overlaps free space (corrupt metadata)");
        return;
      }
    } catch (...) {
      misuse(misuse_kind::other, p, bytes, "host heap exhausted; the range is leaked");
      return;
    }
    s.bytes_in_use -= bytes;
    s.live.erase(live);
  }

  /// @brief Decommits (cuMemUnmap) every committed granule that no live allocation touches.
  /// O(free ranges + granules decommitted). Live allocations are unaffected.
  /// @returns the bytes handed back to the device
  /// @throws cuda_error when the driver fails; the granules decommitted until then stay so
  std::size_t trim() {
    state& s = *state_;
    if (s.committed_granules == 0) return 0;
    const detail::scoped_device on(s.device, /*bind=*/true);
    on.check(who, s.device);
    std::size_t released = 0;
    for (const auto& [offset, length] : s.ranges.free_ranges()) {
      // Only granules lying entirely inside the free range hold no allocation.
      const std::size_t first = ceil_div(offset * unit_bytes, s.granularity);
      const std::size_t end = (offset + length) * unit_bytes / s.granularity;
      for (std::size_t granule = first; granule < end; ++granule) {
        if (!s.committed[granule]) continue;
        s.driver->check(s.driver->mem_unmap(s.base + granule * s.granularity, s.granularity),
                        "cuMemUnmap");
        s.committed[granule] = false;
        --s.committed_granules;
        released += s.granularity;
      }
    }
    return released;
  }

  /// @brief Counters: bytes_in_use (requested bytes of live allocations), bytes_reserved (the
  /// committed bytes), their peaks, largest_free_block (the largest free range of the address
  /// space, committed or not) and allocations (live ones). bytes_in_use <= bytes_reserved.
  resource_stats stats() const noexcept {
    const state& s = *state_;
    resource_stats out;
    out.bytes_in_use = s.bytes_in_use;
    out.bytes_reserved = s.committed_granules * s.granularity;
    out.peak_bytes_in_use = s.peak_bytes_in_use;
    out.peak_bytes_reserved = s.peak_committed_granules * s.granularity;
    out.largest_free_block = s.ranges.largest_free() * unit_bytes;
    out.allocations = s.live.size();
    return out;
  }

  /// @brief Bytes of virtual address space reserved (reserve_bytes rounded up to granularity()).
  std::size_t reserved_address_space() const noexcept { return state_->reserved_bytes; }
  /// @brief Bytes of device memory committed (mapped) right now.
  std::size_t committed_bytes() const noexcept {
    return state_->committed_granules * state_->granularity;
  }
  /// @brief The commit unit: cuMemGetAllocationGranularity's minimum for the device.
  std::size_t granularity() const noexcept { return state_->granularity; }
  /// @brief The device ordinal that backs the memory.
  int device() const noexcept { return state_->device; }
  /// @brief Start of the reserved address range (every allocation lies inside it).
  void* base() const noexcept { return state_->pointer(0); }

  /// @brief Walks the metadata: the range map is valid, live allocations and free ranges add up
  /// to the reserved units, every live range is committed and not free, the committed count is
  /// right. O(live allocations + granules + free ranges); for tests and debug checks.
  bool is_valid() const noexcept {
    const state& s = *state_;
    if (!s.ranges.is_valid()) return false;
    std::size_t live_units = 0;
    std::size_t live_bytes = 0;
    for (const auto& [start, range] : s.live) {
      live_units += range.units;
      live_bytes += range.bytes;
      if (s.ranges.is_free(start, 1) || s.ranges.is_free(start + range.units - 1, 1)) return false;
      const std::size_t end = ceil_div((start + range.units) * unit_bytes, s.granularity);
      for (std::size_t g = start * unit_bytes / s.granularity; g < end; ++g)
        if (!s.committed[g]) return false;
    }
    std::size_t committed = 0;
    for (bool c : s.committed) committed += c ? 1 : 0;
    return live_units == s.ranges.allocated_units() && live_bytes == s.bytes_in_use &&
           committed == s.committed_granules;
  }

  friend bool operator==(const cuda_virtual_resource& a, const cuda_virtual_resource& b) noexcept {
    return a.state_ == b.state_;
  }
  friend constexpr void get_property(const cuda_virtual_resource&, device_accessible) noexcept {}

 private:
  static constexpr const char* who = "cuda_virtual_resource";

  static constexpr std::size_t ceil_div(std::size_t x, std::size_t y) noexcept {
    return (x + y - 1) / y;
  }

  struct live_range {
    std::size_t units;  ///< length in the range map
    std::size_t bytes;  ///< as requested, for size checks and bytes_in_use
  };

  /// Everything, behind one pointer so that a move keeps the identity. Invariants:
  /// ranges.allocated_units() == sum of live[].units; bytes_in_use == sum of live[].bytes;
  /// committed_granules == count of true in committed; every granule a live range touches is
  /// committed.
  struct state {
    const detail::cuda_driver_api* driver = nullptr;
    int device = 0;
    std::size_t granularity = 0;
    CUdeviceptr base = 0;  // 0 until the range is reserved
    std::size_t reserved_bytes = 0;
    detail::range_map ranges;     // over [0, reserved_bytes / unit_bytes)
    std::vector<bool> committed;  // per granule: backed by device memory
    std::size_t committed_granules = 0;
    std::size_t peak_committed_granules = 0;
    std::unordered_map<std::size_t, live_range> live;  // start unit -> range
    std::size_t bytes_in_use = 0;
    std::size_t peak_bytes_in_use = 0;

    state() = default;
    state(const state&) = delete;
    state& operator=(const state&) = delete;

    ~state() {
      if (base == 0) return;
      const detail::scoped_device on(device, /*bind=*/true);
      // Handles were released when mapped, so unmapping frees the memory. Errors are ignored:
      // the process may be shutting down and the driver already gone.
      for (std::size_t g = 0; g < committed.size(); ++g)
        if (committed[g]) (void)driver->mem_unmap(base + g * granularity, granularity);
      (void)driver->mem_address_free(base, reserved_bytes);
    }

    void* pointer(std::size_t offset) const noexcept {
      return reinterpret_cast<void*>(static_cast<std::uintptr_t>(base + offset));
    }

    CUmemAllocationProp allocation_properties() const noexcept {
      CUmemAllocationProp properties{};
      properties.type = CU_MEM_ALLOCATION_TYPE_PINNED;
      properties.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
      properties.location.id = device;
      return properties;
    }

    /// Throws out_of_memory for CUDA_ERROR_OUT_OF_MEMORY, cuda_error for other failures.
    void check_commit(CUresult result, const char* call, std::size_t bytes) const {
      if (result == CUDA_ERROR_OUT_OF_MEMORY) {
        resource_stats now;
        now.bytes_in_use = bytes_in_use;
        now.bytes_reserved = committed_granules * granularity;
        now.largest_free_block = ranges.largest_free() * unit_bytes;
        now.allocations = live.size();
        FRUGAL_OUT_OF_MEMORY(bytes,
                             describe(now) + "; " + call + " could not back a " +
                                 format_bytes(granularity) + " granule; " +
                                 detail::device_memory_state(device),
                             who);
      }
      driver->check(result, call);
    }

    /// Commits every uncommitted granule in [first, end) for an allocation of `bytes`.
    /// @returns the granules committed now; on an exception, commits nothing
    std::vector<std::size_t> commit(std::size_t first, std::size_t end, std::size_t bytes) {
      std::vector<std::size_t> fresh;
      for (std::size_t g = first; g < end; ++g)
        if (!committed[g]) fresh.push_back(g);
      if (fresh.empty()) return fresh;
      const detail::scoped_device on(device, /*bind=*/true);
      on.check(who, device);
      std::size_t mapped = 0;
      try {
        const CUmemAllocationProp properties = allocation_properties();
        for (; mapped < fresh.size(); ++mapped) {
          CUmemGenericAllocationHandle handle{};
          check_commit(driver->mem_create(&handle, granularity, &properties, 0), "cuMemCreate",
                       bytes);
          const CUdeviceptr at = base + fresh[mapped] * granularity;
          const CUresult map_result = driver->mem_map(at, granularity, 0, handle, 0);
          // The mapping keeps the memory alive; releasing the handle now means cuMemUnmap frees it.
          const CUresult release_result = driver->mem_release(handle);
          check_commit(map_result, "cuMemMap", bytes);
          if (release_result != CUDA_SUCCESS) {
            (void)driver->mem_unmap(at, granularity);
            driver->check(release_result, "cuMemRelease");
          }
        }
        // Read-write access for the device, once per run of adjacent fresh granules.
        CUmemAccessDesc access{};
        access.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
        access.location.id = device;
        access.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
        for (std::size_t i = 0; i < fresh.size();) {
          std::size_t j = i + 1;
          while (j < fresh.size() && fresh[j] == fresh[j - 1] + 1) ++j;
          check_commit(driver->mem_set_access(base + fresh[i] * granularity, (j - i) * granularity,
                                              &access, 1),
                       "cuMemSetAccess", bytes);
          i = j;
        }
      } catch (...) {
        for (std::size_t k = 0; k < mapped; ++k)
          (void)driver->mem_unmap(base + fresh[k] * granularity, granularity);
        throw;
      }
      for (std::size_t g : fresh) committed[g] = true;
      committed_granules += fresh.size();
      peak_committed_granules = std::max(peak_committed_granules, committed_granules);
      return fresh;
    }

    /// Undoes commit(): unmaps `granules` (best effort, never throws).
    void decommit(const std::vector<std::size_t>& granules) noexcept {
      if (granules.empty()) return;
      const detail::scoped_device on(device, /*bind=*/true);
      for (std::size_t g : granules) {
        if (!committed[g]) continue;
        (void)driver->mem_unmap(base + g * granularity, granularity);
        committed[g] = false;
        --committed_granules;
      }
    }
  };

  /// Reports misuse from a noexcept path: "<problem> (pointer P, <bytes> bytes[, allocated A])".
  static void misuse(misuse_kind kind, const void* p, std::size_t bytes, const char* problem,
                     std::size_t allocated_bytes = 0) noexcept {
    try {
      char pointer[32];
      std::snprintf(pointer, sizeof pointer, "%p", p);
      std::string message =
          std::string(problem) + " (pointer " + pointer + ", " + std::to_string(bytes) + " bytes";
      if (kind == misuse_kind::size_mismatch)
        message += ", allocated " + std::to_string(allocated_bytes);
      detail::report_misuse(kind, who, p, bytes, message + ")");
    } catch (...) {
      // Building the message ran out of host memory; nothing more can be said.
    }
  }

  std::unique_ptr<state> state_;
};

}  // namespace frugal

static_assert(frugal::resource_with<frugal::cuda_virtual_resource, frugal::device_accessible>);
static_assert(!frugal::has_property_v<frugal::cuda_virtual_resource, frugal::host_accessible>);
static_assert(frugal::try_allocatable<frugal::cuda_virtual_resource>);
