// KV page transfers over UCX between two processes (fork) on host page pools, over the tcp and
// shared-memory transports, and within one process over self: data intact, the notification
// after the data, descriptor merging, every refusal, a peer dying mid-transfer, and the cache's
// receiving and sending ends.
#include "support/blob_channel.hpp"

#include <frugal/kv/transfer.hpp>
#include <frugal/mr/host_resource.hpp>

#include <catch2/catch.hpp>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

namespace {

namespace kv = frugal::kv;
using namespace std::chrono_literals;
using kv::page_id;

// 2 layers x 2 heads x 16 dims x 16 tokens of fp32: 8 KiB pages.
constexpr kv::layout small_layout{
    .num_layers = 2, .num_kv_heads = 2, .head_dim = 16, .page_size = 16, .dtype = kv::dtype::fp32};

// ---- side channel: length-prefixed blobs over a socketpair (support/blob_channel.hpp) --------

using frugal::test::recv_blob;
using frugal::test::send_blob;
// How long one end waits for the other before the test fails instead of hanging.
constexpr auto side_channel_timeout = 20s;

std::string pages_blob(std::span<const page_id> pages) {
  return {reinterpret_cast<const char*>(pages.data()), pages.size_bytes()};
}
std::vector<page_id> blob_pages(const std::string& blob) {
  std::vector<page_id> pages(blob.size() / sizeof(page_id));
  std::memcpy(pages.data(), blob.data(), blob.size());
  return pages;
}

// ---- the other process ----------------------------------------------------------------------

struct child_process {
  pid_t pid = -1;
  int fd = -1;
  /// @returns the exit code (128 + signal when killed)
  int wait() {
    int status = 0;
    ::waitpid(pid, &status, 0);
    ::close(fd);
    pid = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  void kill() const { ::kill(pid, SIGKILL); }
};

/// Runs `body(fd)` in a forked process; its return value is the exit code (2: it threw).
child_process spawn(const std::function<int(int)>& body) {
  // A child writing into this process over shm uses cma (process_vm_writev): where Yama's
  // ptrace_scope is 1 only ancestors may, unless this process allows it.
  ::prctl(PR_SET_PTRACER, PR_SET_PTRACER_ANY);
  int sv[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::close(sv[0]);
    int rc = 2;
    try {
      rc = body(sv[1]);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "child: %s\n", e.what());
    }
    std::fflush(stderr);
    ::_exit(rc);
  }
  ::close(sv[1]);
  return {pid, sv[0]};
}

// ---- page contents ------------------------------------------------------------------------------

/// Fills page `p` with a pattern naming `tag` and every byte's position.
void fill_page(const kv::page_pool& pool, page_id p, std::uint32_t tag) {
  auto* words = reinterpret_cast<std::uint32_t*>(pool.page_address(p));
  for (std::size_t i = 0; i < pool.layout().page_bytes() / 4; ++i)
    words[i] = tag * 0x9E3779B1u + static_cast<std::uint32_t>(i);
}
bool page_holds(const kv::page_pool& pool, page_id p, std::uint32_t tag) {
  const auto* words = reinterpret_cast<const std::uint32_t*>(pool.page_address(p));
  for (std::size_t i = 0; i < pool.layout().page_bytes() / 4; ++i)
    if (words[i] != tag * 0x9E3779B1u + static_cast<std::uint32_t>(i)) return false;
  return true;
}

std::vector<page_id> allocate_pages(kv::page_pool& pool, std::size_t n) {
  std::vector<page_id> out;
  for (std::size_t i = 0; i < n; ++i) out.push_back(pool.allocate());
  return out;
}

/// Waits for a notification with id `id`; @returns it, or one with an empty peer on timeout.
kv::transfer_notification await_notification(kv::transfer_agent& agent, std::uint64_t id,
                                             std::chrono::milliseconds timeout = 20s) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline)
    for (auto& n : agent.take_notifications())
      if (n.id == id) return n;
  return {};
}

/// UCX 1.13's shared-memory and self transports cannot report a dead peer: probe its process.
kv::transfer_options options_for(const std::string& transports) {
  return {.transports = transports,
          .failure_detection = transports == "tcp" ? kv::peer_failure_detection::ucx
                                                   : kv::peer_failure_detection::process};
}

/// Connects the two ends: each sends its metadata, then loads the other's.
std::string exchange_metadata(kv::transfer_agent& agent, int fd) {
  send_blob(fd, agent.metadata());
  return agent.load_peer(recv_blob(fd, side_channel_timeout));
}

}  // namespace

// Catch2 2 has no SKIP: a build without UCX passes these with a warning.
#define REQUIRE_UCX()                                    \
  do {                                                   \
    if (!kv::transfer_available()) {                     \
      WARN("this build has no UCX (FRUGAL_ENABLE_UCX)"); \
      return;                                            \
    }                                                    \
  } while (0)

TEST_CASE("merge_page_runs merges pages contiguous on both sides, in order", "[kv][transfer]") {
  const std::vector<page_id> local{0, 1, 2, 3, 7, 8, 9, 4};
  const std::vector<page_id> remote{10, 11, 12, 20, 21, 22, 24, 25};
  const auto runs = kv::merge_page_runs(local, remote);
  CHECK(runs ==
        std::vector<kv::page_run>{{0, 10, 3}, {3, 20, 1}, {7, 21, 2}, {9, 24, 1}, {4, 25, 1}});
  CHECK(kv::merge_page_runs({}, {}).empty());
  CHECK_THROWS_AS(kv::merge_page_runs(local, std::span(remote).first(3)), frugal::invalid_argument);
}

TEST_CASE("transfer: pages written to another process arrive intact, notification after data",
          "[kv][transfer][loopback]") {
  REQUIRE_UCX();
  const std::string transports = GENERATE("tcp", "shm");
  CAPTURE(transports);
  frugal::host_resource host;

  // The receiver: reserves 40 pages (the page list goes back over the side channel), then on the
  // notification checks every page holds the sender's data.
  child_process decode = spawn([&](int fd) {
    kv::page_pool pool{small_layout, 64, host};
    kv::transfer_agent agent{"decode", pool, options_for(transports)};
    if (exchange_metadata(agent, fd) != "prefill") return 3;
    const auto pages = allocate_pages(pool, 40);
    send_blob(fd, pages_blob(pages));
    const kv::transfer_notification n = await_notification(agent, 7);
    if (n.peer != "prefill" || n.what != kv::transfer_notification::kind::write_done ||
        n.pages != 40)
      return 4;
    for (std::size_t i = 0; i < pages.size(); ++i)
      if (!page_holds(pool, pages[i], static_cast<std::uint32_t>(i))) return 5;
    send_blob(fd, "checked");
    return 0;
  });

  kv::page_pool pool{small_layout, 64, host};
  kv::transfer_options chunked = options_for(transports);
  chunked.max_put_bytes = 20000;  // runs go out in pieces that split pages
  kv::transfer_agent agent{"prefill", pool, chunked};
  CHECK(exchange_metadata(agent, decode.fd) == "decode");
  const std::vector<page_id> remote = blob_pages(recv_blob(decode.fd, side_channel_timeout));
  REQUIRE(remote.size() == 40);
  // Local pages in two contiguous runs with a gap: 0..19 and 30..49 (the remote side is one run).
  std::vector<page_id> local = allocate_pages(pool, 50);
  local.erase(local.begin() + 20, local.begin() + 30);
  for (std::size_t i = 0; i < local.size(); ++i)
    fill_page(pool, local[i], static_cast<std::uint32_t>(i));

  kv::transfer t = agent.write(local, "decode", remote, 7);
  CHECK(t.pages() == 40);
  CHECK(t.descriptors() == kv::merge_page_runs(local, remote).size());
  CHECK(t.descriptors() == 2);
  CHECK(t.wait(20s) == kv::transfer_status::done);
  CHECK(t.error().empty());
  CHECK(agent.active_transfers() == 0);
  CHECK(recv_blob(decode.fd, side_channel_timeout) == "checked");
  CHECK(decode.wait() == 0);
}

TEST_CASE("transfer: pages read from another process arrive intact, the owner is notified",
          "[kv][transfer][loopback]") {
  REQUIRE_UCX();
  const std::string transports = GENERATE("tcp", "shm");
  CAPTURE(transports);
  frugal::host_resource host;

  child_process prefill = spawn([&](int fd) {
    kv::page_pool pool{small_layout, 32, host};
    kv::transfer_agent agent{"prefill", pool, options_for(transports)};
    exchange_metadata(agent, fd);
    const auto pages = allocate_pages(pool, 12);
    for (std::size_t i = 0; i < pages.size(); ++i)
      fill_page(pool, pages[i], 100 + static_cast<std::uint32_t>(i));
    send_blob(fd, pages_blob(pages));
    const kv::transfer_notification n = await_notification(agent, 9);
    return n.peer == "decode" && n.what == kv::transfer_notification::kind::read_done ? 0 : 4;
  });

  kv::page_pool pool{small_layout, 32, host};
  kv::transfer_agent agent{"decode", pool, options_for(transports)};
  exchange_metadata(agent, prefill.fd);
  const std::vector<page_id> remote = blob_pages(recv_blob(prefill.fd, side_channel_timeout));
  const std::vector<page_id> local = allocate_pages(pool, 12);
  kv::transfer t = agent.read(local, "prefill", remote, 9);
  CHECK(t.descriptors() == 1);
  REQUIRE(t.wait(20s) == kv::transfer_status::done);
  for (std::size_t i = 0; i < local.size(); ++i)
    CHECK(page_holds(pool, local[i], 100 + static_cast<std::uint32_t>(i)));
  CHECK(prefill.wait() == 0);
}

TEST_CASE("transfer: within one process over the self transport", "[kv][transfer][loopback]") {
  REQUIRE_UCX();
  frugal::host_resource host;
  kv::page_pool pool{small_layout, 16, host};
  kv::transfer_agent agent{"solo", pool, options_for("self")};
  CHECK(agent.load_peer(agent.metadata()) == "solo");
  const auto pages = allocate_pages(pool, 8);
  for (page_id p = 0; p < 4; ++p) fill_page(pool, pages[p], 40 + p);
  const std::vector<page_id> from{pages[0], pages[1], pages[2], pages[3]};
  const std::vector<page_id> to{pages[7], pages[6], pages[5], pages[4]};
  kv::transfer t = agent.write(from, "solo", to, 1);
  CHECK(t.descriptors() == 4);  // reversed order: no two pages adjacent on both sides
  REQUIRE(t.wait(10s) == kv::transfer_status::done);
  for (page_id i = 0; i < 4; ++i) CHECK(page_holds(pool, to[i], 40 + i));
  const auto notes = agent.take_notifications();
  REQUIRE(notes.size() == 1);
  CHECK(notes[0] ==
        kv::transfer_notification{"solo", 1, kv::transfer_notification::kind::write_done, 4});
}

TEST_CASE("transfer: refusals happen before anything moves", "[kv][transfer][loopback]") {
  REQUIRE_UCX();
  frugal::host_resource host;
  kv::page_pool a_pool{small_layout, 16, host}, b_pool{small_layout, 16, host};
  kv::layout other = small_layout;
  other.page_size = 64;
  kv::page_pool c_pool{other, 4, host};
  kv::transfer_agent a{"a", a_pool, {.transports = "tcp"}};
  kv::transfer_agent b{"b", b_pool, {.transports = "tcp"}};
  kv::transfer_agent c{"c", c_pool, {.transports = "tcp"}};
  REQUIRE(a.load_peer(b.metadata()) == "b");
  REQUIRE(a.load_peer(c.metadata()) == "c");
  const auto mine = allocate_pages(a_pool, 4);
  const auto theirs = allocate_pages(b_pool, 4);
  for (page_id p : theirs) fill_page(b_pool, p, 7);
  const std::vector<page_id> two{mine[0], mine[1]};

  auto refused = [&](auto&& call, const std::string& reason) {
    CHECK_THROWS_WITH(call(), Catch::Contains(reason));
    CHECK(a.active_transfers() == 0);
  };
  refused([&] { a.write(mine, "nobody", theirs, 1); }, "unknown peer 'nobody'");
  refused([&] { a.write(two, "b", theirs, 1); }, "2 local and 4 remote pages");
  refused([&] { a.write({}, "b", {}, 1); }, "0 local and 0 remote pages");
  refused(
      [&] {
        a.write(std::vector<page_id>{mine[0], 15}, "b", two, 1);
      },
      "local page 15 is not allocated");
  refused(
      [&] {
        a.write(std::vector<page_id>{mine[0], 16}, "b", two, 1);
      },
      "local page 16 is outside the pool of 16 pages");
  refused(
      [&] {
        a.write(two, "b", std::vector<page_id>{0, 99}, 1);
      },
      "page 99 is outside peer 'b''s pool of 16 pages");
  refused(
      [&] {
        a.write(two, "b", std::vector<page_id>{3, 3}, 1);
      },
      "remote page 3 is named twice");
  refused(
      [&] {
        a.read(std::vector<page_id>{mine[1], mine[1]}, "b", two, 1);
      },
      "local page 1 is named twice");
  refused(
      [&] {
        a.write(two, "c", std::vector<page_id>{0, 1}, 1);
      },
      "peer 'c' has another layout (page_size 64, 2 layers, 2 KV heads, head_dim 16, fp32, NHD "
      "there, page_size 16, 2 layers, 2 KV heads, head_dim 16, fp32, NHD here); pages are not "
      "re-tiled");
  CHECK_THROWS_AS(a.write(mine, "nobody", theirs, 1), kv::transfer_error);

  // Metadata blobs: truncated, foreign, another version, trailing bytes, a name loaded twice.
  const std::string blob = b.metadata();
  CHECK_THROWS_WITH(a.load_peer(blob.substr(0, blob.size() - 1)), Catch::Contains("truncated"));
  CHECK_THROWS_WITH(a.load_peer("JUNK" + blob.substr(4)),
                    Catch::Contains("not a frugal KV metadata blob"));
  std::string v2 = blob;
  v2[4] = 2;
  CHECK_THROWS_WITH(a.load_peer(v2),
                    Catch::Contains("metadata version 2, this build reads version 1"));
  CHECK_THROWS_WITH(a.load_peer(blob + "x"), Catch::Contains("1 bytes after the metadata"));
  CHECK_THROWS_WITH(a.load_peer(blob), Catch::Contains("peer 'b' is already loaded"));
  CHECK_THROWS_AS(kv::transfer_agent("", a_pool), frugal::invalid_argument);
  CHECK_THROWS_WITH(kv::transfer_agent("e", a_pool, {.max_put_bytes = 0}),
                    Catch::Contains("max_put_bytes is zero"));
  kv::transfer_agent d{"d", c_pool, options_for("shm")};
  CHECK_THROWS_WITH(a.load_peer(d.metadata()),
                    Catch::Contains("peer 'd' detects failures another way"));
  CHECK_FALSE(a.has_peer("d"));

  // Nothing moved: b's pages hold their old contents, and nobody was notified.
  for (int i = 0; i < 100; ++i) b.progress();
  for (page_id p : theirs) CHECK(page_holds(b_pool, p, 7));
  CHECK(b.take_notifications().empty());
  CHECK(c.take_notifications().empty());
}

TEST_CASE("transfer: the receiver dies mid-transfer, the sender handle names it",
          "[kv][transfer][loopback]") {
  REQUIRE_UCX();
  const std::string transports = GENERATE("tcp", "shm");
  CAPTURE(transports);
  frugal::host_resource host;
  constexpr kv::layout big{.num_layers = 8,
                           .num_kv_heads = 8,
                           .head_dim = 64,
                           .page_size = 8,
                           .dtype = kv::dtype::fp16};  // 128 KiB pages
  constexpr std::uint32_t n = 512;                     // 64 MiB

  child_process decode = spawn([&](int fd) -> int {
    kv::page_pool pool{big, n, host};
    kv::transfer_agent agent{"decode", pool, options_for(transports)};
    exchange_metadata(agent, fd);
    send_blob(fd, pages_blob(allocate_pages(pool, n)));
    for (;;) agent.progress();  // until killed
  });

  kv::page_pool pool{big, n, host};
  kv::transfer_agent agent{"prefill", pool, options_for(transports)};
  exchange_metadata(agent, decode.fd);
  const std::vector<page_id> remote = blob_pages(recv_blob(decode.fd, side_channel_timeout));
  const std::vector<page_id> local = allocate_pages(pool, n);
  kv::transfer t = agent.write(local, "decode", remote, 42);
  decode.kill();
  CHECK(decode.wait() == 128 + SIGKILL);
  REQUIRE(t.wait(20s) == kv::transfer_status::failed);
  CHECK_THAT(t.error(), Catch::Contains("write 42") && Catch::Contains("peer 'decode'"));
  CHECK(agent.active_transfers() == 0);
  CHECK_FALSE(agent.peer_error("decode").empty());
  CHECK(agent.take_failed_peers() == std::vector<std::string>{"decode"});
  CHECK(agent.take_failed_peers().empty());
  CHECK_THROWS_WITH(agent.write(local, "decode", remote, 43),
                    Catch::Contains("peer 'decode' failed"));
  // A new peer under the same name, after the dead one is removed.
  agent.remove_peer("decode");
  CHECK_FALSE(agent.has_peer("decode"));
}

TEST_CASE("transfer: the sender dies mid-transfer, the cache releases the reserved pages",
          "[kv][transfer][loopback]") {
  REQUIRE_UCX();
  const std::string transports = GENERATE("tcp", "shm");
  CAPTURE(transports);
  frugal::host_resource host;
  constexpr kv::layout big{
      .num_layers = 8, .num_kv_heads = 8, .head_dim = 64, .page_size = 8, .dtype = kv::dtype::fp16};
  constexpr std::uint32_t n = 512;
  std::vector<kv::token_id> prompt(n * big.page_size);
  std::iota(prompt.begin(), prompt.end(), 1);

  child_process prefill = spawn([&](int fd) {
    kv::page_pool pool{big, n, host};
    kv::transfer_agent agent{"prefill", pool, options_for(transports)};
    exchange_metadata(agent, fd);
    const std::vector<page_id> remote = blob_pages(recv_blob(fd, side_channel_timeout));
    const auto local = allocate_pages(pool, remote.size());
    kv::transfer t = agent.write(local, "decode", remote, 5);
    agent.progress();
    ::kill(::getpid(), SIGKILL);  // mid-transfer
    return 0;
  });

  kv::cache_options no_watermark;
  no_watermark.watermark = 0.0;
  kv::cache cache{big, n + 8, host, no_watermark};
  kv::transfer_agent agent{"decode", cache.pages(), options_for(transports)};
  exchange_metadata(agent, prefill.fd);
  kv::sequence_receiver rx{cache, agent};
  const auto pages = rx.reserve(5, "prefill", prompt, std::chrono::steady_clock::now() + 60s);
  REQUIRE(pages);
  CHECK(pages->size() == n);
  CHECK(cache.num_free_pages() == 8);
  send_blob(prefill.fd, pages_blob(*pages));
  CHECK(prefill.wait() == 128 + SIGKILL);

  std::vector<kv::sequence_receiver::arrival> done;
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while (done.empty() && std::chrono::steady_clock::now() < deadline) done = rx.poll();
  REQUIRE(done.size() == 1);
  CHECK(done[0].id == 5);
  CHECK_FALSE(done[0].sequence);
  CHECK_THAT(done[0].error, Catch::Contains("sequence 5 from peer 'prefill' lost") &&
                                Catch::Contains("peer 'prefill' failed"));
  CHECK(rx.pending() == 0);
  CHECK(cache.num_free_pages() == cache.num_pages());
  CHECK(cache.stats().cached_pages == 0);  // nothing registered for prefix hits
  CHECK(cache.is_valid());
}

TEST_CASE("transfer: a sequence moves between two caches, prefix registration after arrival",
          "[kv][transfer][loopback]") {
  REQUIRE_UCX();
  const std::string transports = GENERATE("tcp", "shm");
  CAPTURE(transports);
  frugal::host_resource host;
  std::vector<kv::token_id> prompt(16 * 5 + 3);  // 6 pages, the last partial
  std::iota(prompt.begin(), prompt.end(), 7);

  // The prefill side: runs "prefill" (fills its pages), sends them, keeps them until the
  // transfer completes, then its cache is empty again.
  child_process prefill = spawn([&](int fd) {
    kv::cache cache{small_layout, 32, host};
    kv::transfer_agent agent{"prefill", cache.pages(), options_for(transports)};
    exchange_metadata(agent, fd);
    kv::sequence seq = cache.add_sequence(prompt);
    for (std::size_t i = 0; i < seq.pages().size(); ++i)
      fill_page(cache.pages(), seq.pages()[i], 500 + static_cast<std::uint32_t>(i));
    const std::vector<page_id> remote = blob_pages(recv_blob(fd, side_channel_timeout));
    const std::size_t first = seq.pages().size() - remote.size();
    kv::sequence_sender tx{agent};
    tx.send(std::move(seq), first, "decode", remote, 11);
    if (tx.in_flight() != 1) return 3;
    std::vector<kv::sequence_sender::completion> done;
    while (done.empty()) done = tx.poll();
    if (done.size() != 1 || done[0].id != 11 || !done[0].error.empty()) return 4;
    if (!cache.is_valid() || cache.stats().used_pages != 0) return 5;
    return 0;
  });

  kv::cache cache{small_layout, 32, host};
  kv::transfer_agent agent{"decode", cache.pages(), options_for(transports)};
  exchange_metadata(agent, prefill.fd);
  kv::sequence_receiver rx{cache, agent};
  const auto reserved = rx.reserve(11, "prefill", prompt, std::chrono::steady_clock::now() + 20s);
  REQUIRE(reserved);
  CHECK(reserved->size() == 6);
  CHECK(rx.cached_tokens(11) == 0);
  CHECK_THROWS_WITH(rx.reserve(11, "prefill", prompt, std::chrono::steady_clock::now()),
                    Catch::Contains("id 11 is already awaited"));
  send_blob(prefill.fd, pages_blob(*reserved));

  std::vector<kv::sequence_receiver::arrival> done;
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while (done.empty() && std::chrono::steady_clock::now() < deadline) done = rx.poll();
  REQUIRE(done.size() == 1);
  REQUIRE(done[0].sequence);
  CHECK(done[0].error.empty());
  kv::sequence seq = std::move(*done[0].sequence);
  CHECK(seq.num_tokens() == prompt.size());
  for (std::size_t i = 0; i < seq.pages().size(); ++i)
    CHECK(page_holds(cache.pages(), seq.pages()[i], 500 + static_cast<std::uint32_t>(i)));
  CHECK(prefill.wait() == 0);

  // Registered for prefix hits now: the same prompt shares its 5 full pages.
  kv::sequence again = cache.add_sequence(prompt);
  CHECK(again.cached_tokens() == 5 * 16);
  // And a reservation for it asks the peer only for the pages not cached.
  again.release();
  seq.release();
  const auto second = rx.reserve(12, "prefill", prompt, std::chrono::steady_clock::now());
  REQUIRE(second);
  CHECK(second->size() == 1);
  CHECK(rx.cached_tokens(12) == 5 * 16);
  CHECK(cache.is_valid());
}

TEST_CASE("transfer: reservations follow the watermark and expire at their deadline",
          "[kv][transfer][loopback]") {
  REQUIRE_UCX();
  frugal::host_resource host;
  kv::cache_options watermark;
  watermark.watermark = 0.2;  // 2 of 10 pages kept free
  kv::cache cache{small_layout, 10, host, watermark};
  kv::transfer_agent agent{"decode", cache.pages(), {.transports = "tcp"}};
  kv::page_pool peer_pool{small_layout, 4, host};
  kv::transfer_agent peer{"prefill", peer_pool, {.transports = "tcp"}};
  agent.load_peer(peer.metadata());
  kv::sequence_receiver rx{cache, agent};
  std::vector<kv::token_id> nine_pages(16 * 9);
  std::iota(nine_pages.begin(), nine_pages.end(), 1);
  const auto now = std::chrono::steady_clock::now();

  CHECK_FALSE(rx.reserve(1, "prefill", nine_pages, now + 10s));  // 9 + 2 > 10
  CHECK(rx.pending() == 0);
  CHECK(cache.num_free_pages() == 10);
  const auto eight = rx.reserve(2, "prefill", std::span(nine_pages).first(16 * 8), now + 10s);
  REQUIRE(eight);
  CHECK(cache.num_free_pages() == 2);
  CHECK(rx.poll(now).empty());  // before the deadline: still waiting
  const auto expired = rx.poll(now + 11s);
  REQUIRE(expired.size() == 1);
  CHECK(expired[0].error == "sequence 2 from peer 'prefill' did not arrive before its deadline");
  CHECK(cache.num_free_pages() == 10);
  CHECK(cache.stats().cached_pages == 0);
  CHECK(cache.is_valid());
}
