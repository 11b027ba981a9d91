// Length-prefixed blobs over a socket (a socketpair between a parent and its forked child): how
// the UCX transfer tests and benchmark exchange metadata and page lists beside UCX itself.
//   send_blob(fd, agent.metadata());   agent.load_peer(recv_blob(fd, 20s));
#pragma once

#include <poll.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>

namespace frugal::test {

/// No limit on how long a read waits for its peer.
inline constexpr std::chrono::milliseconds wait_forever{-1};

/// Writes `blob` to `fd`, its length first (4 bytes, host order), all of it.
/// @throws std::runtime_error when a write fails
inline void send_blob(int fd, const std::string& blob) {
  const auto n = static_cast<std::uint32_t>(blob.size());
  std::string out(reinterpret_cast<const char*>(&n), 4);
  out += blob;
  std::size_t at = 0;
  while (at < out.size()) {
    const ssize_t w = ::write(fd, out.data() + at, out.size() - at);
    if (w <= 0) throw std::runtime_error("side channel: write failed");
    at += static_cast<std::size_t>(w);
  }
}

/// Reads exactly `n` bytes from `fd`, waiting at most `timeout` for each part of them.
/// @throws std::runtime_error when the peer closes the socket or the time runs out
inline std::string recv_exact(int fd, std::size_t n,
                              std::chrono::milliseconds timeout = wait_forever) {
  std::string in(n, '\0');
  std::size_t at = 0;
  while (at < n) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(timeout.count())) != 1)
      throw std::runtime_error("side channel: timed out");
    const ssize_t r = ::read(fd, in.data() + at, n - at);
    if (r <= 0) throw std::runtime_error("side channel: closed");
    at += static_cast<std::size_t>(r);
  }
  return in;
}

/// Reads one blob written by send_blob.
/// @throws std::runtime_error as recv_exact
inline std::string recv_blob(int fd, std::chrono::milliseconds timeout = wait_forever) {
  std::uint32_t n = 0;
  std::memcpy(&n, recv_exact(fd, 4, timeout).data(), 4);
  return recv_exact(fd, n, timeout);
}

}  // namespace frugal::test
