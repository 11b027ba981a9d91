// The prefix map and the eviction queue of a kv::cache.
#include <frugal/kv/prefix_index.hpp>

#include <algorithm>

namespace frugal::kv {

prefix_index::prefix_index(std::uint32_t num_pages, bool enabled)
    : enabled_(enabled), hash_(num_pages, 0), prev_(num_pages, no_page), next_(num_pages, no_page) {
  if (enabled_) map_.reserve(num_pages);
}

void prefix_index::insert(page_id p, std::uint64_t h) noexcept {
  if (hash_[p] == 0 && map_.find(h, hash_of_page()) == detail::pointer_map::npos) {
    hash_[p] = h;                       // first: the map reads the key from it
    map_.insert(h, p, hash_of_page());  // capacity reserved for one entry per page
  }
}

void prefix_index::push_back(page_id p) noexcept {
  prev_[p] = tail_;
  next_[p] = no_page;
  if (tail_ != no_page)
    next_[tail_] = p;
  else
    head_ = p;
  tail_ = p;
  ++cached_count_;
}

void prefix_index::remove(page_id p) noexcept {
  if (prev_[p] != no_page)
    next_[prev_[p]] = next_[p];
  else
    head_ = next_[p];
  if (next_[p] != no_page)
    prev_[next_[p]] = prev_[p];
  else
    tail_ = prev_[p];
  prev_[p] = next_[p] = no_page;
  --cached_count_;
}

page_id prefix_index::evict() noexcept {
  // The least recently released cached page (see docs/kv.md#eviction-order).
  const page_id p = head_;
  remove(p);
  map_.erase(hash_[p], hash_of_page());
  hash_[p] = 0;
  return p;
}

void prefix_index::reset_map() {
  map_ = detail::pointer_map();
  if (enabled_) map_.reserve(static_cast<std::uint32_t>(hash_.size()));
  std::fill(hash_.begin(), hash_.end(), 0);
}

std::size_t prefix_index::memory_bytes() const noexcept {
  std::size_t bytes = hash_.capacity() * sizeof(std::uint64_t) +
                      (prev_.capacity() + next_.capacity()) * sizeof(page_id);
  if (enabled_) bytes += map_.memory_bytes();
  return bytes;
}

bool prefix_index::is_valid(const page_pool& pages) const {
  const std::uint32_t n = pages.num_pages();
  if (hash_.size() != n) return false;
  // The queue holds exactly the cached pages, linked both ways.
  std::uint32_t listed = 0;
  page_id prev = no_page;
  for (page_id p = head_; p != no_page; p = next_[p]) {
    if (prev_[p] != prev || pages.refcount(p) != 0 || !pages.is_allocated(p)) return false;
    if (++listed > n) return false;
    prev = p;
  }
  if (prev != tail_ || listed != cached_count_) return false;
  // Every map entry points at an allocated page carrying a hash, and every hash finds its page.
  bool entries_ok = true;
  std::size_t entries = 0;
  map_.for_each([&](std::uint32_t p) {
    ++entries;
    if (p >= n || hash_[p] == 0 || !pages.is_allocated(p)) entries_ok = false;
  });
  std::size_t hashed = 0;
  for (page_id p = 0; p < n; ++p) {
    if (hash_[p] == 0) continue;
    ++hashed;
    if (map_.find(hash_[p], hash_of_page()) != p) return false;
  }
  return entries_ok && entries == hashed;
}

}  // namespace frugal::kv
