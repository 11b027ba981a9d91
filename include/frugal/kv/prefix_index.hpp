// frugal/kv/prefix_index.hpp: which KV pages hold which prefix (content hash -> page), and the
// order in which cached pages are evicted: kv::cache's one eviction policy, in one place.
//   index.on_release(seq_pages, drop);   index.on_hit(page);
//   frugal::kv::page_id victim = index.evict();
#pragma once

#include <frugal/detail/pointer_map.hpp>
#include <frugal/kv/copy_op.hpp>
#include <frugal/kv/page_pool.hpp>

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace frugal::kv {

/// @brief The prefix map and eviction order of a kv::cache's pages (see docs/kv.md). A page is
/// *cached* when no sequence holds it and its content is registered under a hash: it is then in
/// the eviction queue, least recently released first. Within one release the sequence's last
/// pages go first (a prefix's tail is worth less than its head, which more requests share).
/// Changing the eviction order is a change to this class alone. O(1) per operation.
class prefix_index {
 public:
  static constexpr page_id no_page = 0xFFFFFFFFu;

  /// @param num_pages pages of the pool the index covers
  /// @param enabled false: nothing is registered (the map stays empty and takes no memory)
  prefix_index(std::uint32_t num_pages, bool enabled);

  // ---- the prefix map ---------------------------------------------------------------------

  /// @brief The page registered under hash `h`, or no_page.
  page_id find(std::uint64_t h) const noexcept {
    const std::uint32_t p = map_.find(h, hash_of_page());
    return p == detail::pointer_map::npos ? no_page : p;
  }
  /// @brief The hash `p` is registered under; 0 for none.
  std::uint64_t hash_of(page_id p) const noexcept { return hash_[p]; }
  /// @brief Registers page `p` under hash `h`, unless p already has a hash or h a page.
  void insert(page_id p, std::uint64_t h) noexcept;

  // ---- the eviction order -----------------------------------------------------------------

  /// @brief A sequence lets go of `pages` (in its order). `drop(p)` releases the sequence's hold
  /// on p and returns true when p is now unheld and registered: p then joins the eviction queue.
  /// Pages are visited tail first, so within one sequence the last pages are evicted first.
  template <class Drop>
  void on_release(std::span<const page_id> pages, Drop&& drop) noexcept {
    for (auto it = pages.rbegin(); it != pages.rend(); ++it)
      if (drop(*it)) push_back(*it);
  }
  /// @brief A cached page is taken again by a prefix hit: it leaves the eviction queue.
  void on_hit(page_id p) noexcept { remove(p); }
  /// @brief Evicts the next cached page: it leaves the queue and the map, and loses its hash.
  /// Requires cached_count() > 0.
  page_id evict() noexcept;
  /// @brief Forgets every cached page (`free_page(p)` for each, in eviction order) and every hash.
  template <class Free>
  void clear(Free&& free_page) {
    while (head_ != no_page) {
      const page_id p = head_;
      remove(p);
      hash_[p] = 0;
      free_page(p);
    }
    reset_map();
  }

  /// @brief Pages in the eviction queue.
  std::uint32_t cached_count() const noexcept { return cached_count_; }
  /// @brief Host bytes of the index: per-page hashes and queue links, and the map when enabled.
  std::size_t memory_bytes() const noexcept;
  /// @brief The queue holds exactly the allocated, unheld pages of `pages`, linked both ways, and
  /// cached_count() of them; every map entry points at an allocated page carrying its hash, and
  /// every hash has its entry.
  bool is_valid(const page_pool& pages) const;

 private:
  void push_back(page_id p) noexcept;
  void remove(page_id p) noexcept;
  void reset_map();

  bool enabled_;
  /// The map's view of the pages: the hash page p carries.
  struct page_hash_of {
    const std::vector<std::uint64_t>* hash;
    std::uint64_t operator()(std::uint32_t p) const noexcept { return (*hash)[p]; }
  };
  page_hash_of hash_of_page() const noexcept { return {&hash_}; }

  std::vector<std::uint64_t> hash_;   // per page: content hash while registered (0: none)
  std::vector<page_id> prev_, next_;  // the eviction queue, head evicted first
  page_id head_ = no_page, tail_ = no_page;
  std::uint32_t cached_count_ = 0;  // == length of the queue
  detail::pointer_map map_;         // hash -> page
};

}  // namespace frugal::kv
