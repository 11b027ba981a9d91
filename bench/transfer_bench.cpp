// KV page transfers between two processes over UCX: frugal's transfer_agent against a plain UCP
// put loop of the same bytes, over the same transport and endpoint error mode, in one run.
//
//   BM_move_pages: 1,000 pages of 64 KiB (62.5 MiB) from this process into a receiver process
//     (forked once per transport; it only progresses its workers):
//       frugal_merged    agent.write of pages contiguous on both sides: 1 descriptor
//       frugal_scattered agent.write with the remote pages in reverse order: 1,000 descriptors
//       ucp_put_loop     1,000 ucp_put_nbx of 64 KiB in the same reversed order, then a flush
//     frugal's numbers include the completion notification after the data. Transports: tcp
//     (UCX's peer-failure handling; UCX 1.13 then moves RMA as active messages) and shm
//     (process probes, no UCX error handling: cma puts). Counter: bytes_per_second. Only the
//     receiver of the transport being measured runs; the other one waits.
//   BM_descriptors: descriptors to move one 8,192-token request between two caches, page sizes
//     16 and 64, with Llama-3-8B-shaped pages (32 layers) over never-backed address space:
//     pages (frugal's page-major pages, one descriptor each before merging), layer_split (a
//     layer-major cache's K and V per layer per page, what an engine without page-major pages
//     posts), merged_fresh (after merging, both caches empty before), merged_churned (after
//     merging, both caches fragmented by 2,000 random sequences first).
#include "support/blob_channel.hpp"

#include <frugal/kv/cache.hpp>
#include <frugal/kv/transfer.hpp>
#include <frugal/mr/host_resource.hpp>
#include <frugal/mr/virtual_resource.hpp>

#include <benchmark/benchmark.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <ucp/api/ucp.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <map>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

namespace kv = frugal::kv;
using namespace std::chrono_literals;

// 4 layers x 8 KV heads x 64 dims x 8 tokens of fp16: 64 KiB pages, stride = size.
constexpr kv::layout page_64k{
    .num_layers = 4, .num_kv_heads = 8, .head_dim = 64, .page_size = 8, .dtype = kv::dtype::fp16};
constexpr std::uint32_t num_pages = 1000;

using frugal::test::recv_blob;  // no timeout: a receiver waits while the other transport runs
using frugal::test::send_blob;

void check(ucs_status_t s, const char* call) {
  if (s != UCS_OK) throw std::runtime_error(std::string(call) + ": " + ucs_status_string(s));
}

kv::transfer_options options_for(const std::string& transport) {
  return {.transports = transport,
          .failure_detection = transport == "tcp" ? kv::peer_failure_detection::ucx
                                                  : kv::peer_failure_detection::process};
}

/// A plain UCP endpoint of its own (context, worker, memory map), as an engine without frugal
/// would write it; the error mode follows the agent's, so both take the same protocols.
struct raw_ucp {
  ucp_context_h context = nullptr;
  ucp_worker_h worker = nullptr;
  ucp_mem_h memh = nullptr;
  ucp_ep_h ep = nullptr;
  ucp_rkey_h rkey = nullptr;
  std::uint64_t remote_base = 0;

  raw_ucp(const std::string& transport, void* memory, std::size_t bytes) {
    ucp_config_t* config = nullptr;
    check(ucp_config_read(nullptr, nullptr, &config), "ucp_config_read");
    check(ucp_config_modify(config, "TLS", transport.c_str()), "ucp_config_modify");
    ucp_params_t params{};
    params.field_mask = UCP_PARAM_FIELD_FEATURES;
    params.features = UCP_FEATURE_RMA | UCP_FEATURE_AM;
    check(ucp_init(&params, config, &context), "ucp_init");
    ucp_config_release(config);
    ucp_worker_params_t wp{};
    wp.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
    wp.thread_mode = UCS_THREAD_MODE_SINGLE;
    check(ucp_worker_create(context, &wp, &worker), "ucp_worker_create");
    ucp_mem_map_params_t map{};
    map.field_mask = UCP_MEM_MAP_PARAM_FIELD_ADDRESS | UCP_MEM_MAP_PARAM_FIELD_LENGTH;
    map.address = memory;
    map.length = bytes;
    check(ucp_mem_map(context, &map, &memh), "ucp_mem_map");
  }
  /// Worker address, packed rkey and base address, for the other end.
  std::string describe(void* base) const {
    ucp_address_t* address = nullptr;
    std::size_t address_length = 0;
    check(ucp_worker_get_address(worker, &address, &address_length), "ucp_worker_get_address");
    void* packed = nullptr;
    std::size_t packed_length = 0;
    check(ucp_rkey_pack(context, memh, &packed, &packed_length), "ucp_rkey_pack");
    std::string out;
    const auto a = static_cast<std::uint32_t>(address_length);
    const auto r = static_cast<std::uint32_t>(packed_length);
    const auto b = reinterpret_cast<std::uint64_t>(base);
    out.append(reinterpret_cast<const char*>(&a), 4);
    out.append(reinterpret_cast<const char*>(address), address_length);
    out.append(reinterpret_cast<const char*>(&r), 4);
    out.append(static_cast<const char*>(packed), packed_length);
    out.append(reinterpret_cast<const char*>(&b), 8);
    ucp_worker_release_address(worker, address);
    ucp_rkey_buffer_release(packed);
    return out;
  }
  void connect(const std::string& blob, bool peer_error_mode) {
    std::uint32_t a = 0, r = 0;
    std::memcpy(&a, blob.data(), 4);
    std::memcpy(&r, blob.data() + 4 + a, 4);
    std::memcpy(&remote_base, blob.data() + 8 + a + r, 8);
    ucp_ep_params_t ep_params{};
    ep_params.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS | UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE;
    ep_params.address = reinterpret_cast<const ucp_address_t*>(blob.data() + 4);
    ep_params.err_mode = peer_error_mode ? UCP_ERR_HANDLING_MODE_PEER : UCP_ERR_HANDLING_MODE_NONE;
    check(ucp_ep_create(worker, &ep_params, &ep), "ucp_ep_create");
    check(ucp_ep_rkey_unpack(ep, blob.data() + 8 + a, &rkey), "ucp_ep_rkey_unpack");
  }
  ~raw_ucp() {
    if (ep != nullptr) {
      ucp_rkey_destroy(rkey);
      ucp_request_param_t close{};
      close.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
      close.flags = UCP_EP_CLOSE_FLAG_FORCE;
      wait(ucp_ep_close_nbx(ep, &close));
    }
    ucp_mem_unmap(context, memh);
    ucp_worker_destroy(worker);
    ucp_cleanup(context);
  }
  raw_ucp(const raw_ucp&) = delete;
  raw_ucp& operator=(const raw_ucp&) = delete;
  void wait(ucs_status_ptr_t request) {
    if (request == nullptr) return;
    if (UCS_PTR_IS_ERR(request)) return;
    while (ucp_request_check_status(request) == UCS_INPROGRESS) ucp_worker_progress(worker);
    ucp_request_free(request);
  }
};

/// The receiving process of one transport: a pool, its agent and a plain UCP end over the same
/// memory, progressed until the parent closes the side channel.
struct receiver {
  pid_t pid = -1;
  int fd = -1;
  std::string agent_metadata, raw_description;
};

// The receivers are forked at start, before this process makes any UCX object (a child must
// not inherit another transport's sockets and memory maps).
std::map<std::string, receiver>& receivers() {
  static std::map<std::string, receiver> r;
  return r;
}

/// Forks the receiver before this process makes any UCX object of its own.
receiver spawn_receiver(const std::string& transport, void (*body)(const std::string&, int)) {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) throw std::runtime_error("socketpair");
  receiver r;
  r.pid = ::fork();
  if (r.pid == 0) {
    ::close(sv[0]);
    for (auto& [name, other] : receivers()) ::close(other.fd);  // else their EOF never comes
    body(transport, sv[1]);
    ::_exit(0);
  }
  ::close(sv[1]);
  r.fd = sv[0];
  return r;
}

struct sender {
  frugal::host_resource host;
  kv::page_pool pool{page_64k, num_pages, host};
  receiver peer;
  kv::transfer_agent agent;
  raw_ucp raw;
  std::vector<kv::page_id> pages;

  std::string transport_;

  sender(const std::string& transport, receiver r)
      : peer(r),
        agent("sender", pool, options_for(transport)),
        raw(transport, pool.memory().data(), pool.memory().size()),
        transport_(transport) {
    for (std::uint32_t i = 0; i < num_pages; ++i) pages.push_back(pool.allocate());
    send_blob(peer.fd, agent.metadata());
    agent.load_peer(recv_blob(peer.fd));
    raw.connect(recv_blob(peer.fd), transport == "tcp");
    // Untimed: touch every page on both sides once, so no variant pays the first page faults.
    std::memset(pool.memory().data(), 1, pool.memory().size());
    kv::transfer t = agent.write(pages, "receiver", pages, 0);
    if (t.wait(120s) != kv::transfer_status::done) throw std::runtime_error(t.error());
  }
  ~sender() {
    ::close(peer.fd);
    ::waitpid(peer.pid, nullptr, 0);
    receivers().at(transport_).fd = -1;
  }

  static void run_receiver(const std::string& transport, int fd) {
    frugal::host_resource host;
    kv::page_pool pool{page_64k, num_pages, host};
    kv::transfer_agent agent{"receiver", pool, options_for(transport)};
    raw_ucp raw(transport, pool.memory().data(), pool.memory().size());
    agent.load_peer(recv_blob(fd));
    send_blob(fd, agent.metadata());
    send_blob(fd, raw.describe(pool.memory().data()));
    // Until the parent closes the side channel. 'p' pauses (blocks on the channel, so a
    // receiver of another transport does not take a core from the one being measured), 'r'
    // resumes progressing.
    bool paused = false;
    for (;;) {
      if (!paused) {
        agent.progress();
        ucp_worker_progress(raw.worker);
      }
      char byte = 0;
      const ssize_t n = ::recv(fd, &byte, 1, paused ? 0 : MSG_DONTWAIT);
      if (n == 0) ::_exit(0);  // no teardown to wait on
      if (n == 1) paused = byte == 'p';
    }
  }
};

std::map<std::string, std::unique_ptr<sender>>& senders() {
  static std::map<std::string, std::unique_ptr<sender>> s;
  return s;
}

sender& sender_for(const std::string& transport) {
  auto& s = senders()[transport];
  if (!s) s = std::make_unique<sender>(transport, receivers().at(transport));
  // Only the receiver of the transport measured progresses; the others wait on their channel.
  // (A receiver whose sender is not made yet waits for its metadata, not spinning.)
  for (auto& [name, other] : senders())
    if (other) (void)!::write(other->peer.fd, name == transport ? "r" : "p", 1);
  return *s;
}

void BM_move_pages(benchmark::State& state, const std::string& transport, const std::string& how) {
  sender& s = sender_for(transport);
  std::vector<kv::page_id> remote(s.pages.rbegin(), s.pages.rend());  // scattered
  if (how == "frugal_merged") remote = s.pages;
  const std::size_t page_bytes = page_64k.page_bytes();
  std::size_t descriptors = 0;
  std::uint64_t id = 0;
  for (auto _ : state) {
    if (how == "ucp_put_loop") {
      ucp_request_param_t param{};
      param.op_attr_mask = UCP_OP_ATTR_FIELD_MEMH;
      param.memh = s.raw.memh;
      for (std::uint32_t i = 0; i < num_pages; ++i) {
        const ucs_status_ptr_t r =
            ucp_put_nbx(s.raw.ep, s.pool.page_address(s.pages[i]), page_bytes,
                        s.raw.remote_base + std::uint64_t{remote[i]} * s.pool.page_stride(),
                        s.raw.rkey, &param);
        if (UCS_PTR_IS_ERR(r)) check(UCS_PTR_STATUS(r), "ucp_put_nbx");
        if (r != nullptr) ucp_request_free(r);  // completes in the background
      }
      ucp_request_param_t flush{};
      s.raw.wait(ucp_ep_flush_nbx(s.raw.ep, &flush));
      descriptors = num_pages;
    } else {
      kv::transfer t = s.agent.write(s.pages, "receiver", remote, ++id);
      if (t.wait(60s) != kv::transfer_status::done) state.SkipWithError(t.error().c_str());
      descriptors = t.descriptors();
    }
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * num_pages * page_bytes));
  state.counters["descriptors"] = static_cast<double>(descriptors);
}

BENCHMARK_CAPTURE(BM_move_pages, tcp_frugal_merged, std::string("tcp"),
                  std::string("frugal_merged"))
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_move_pages, tcp_frugal_scattered, std::string("tcp"),
                  std::string("frugal_scattered"))
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_move_pages, tcp_ucp_put_loop, std::string("tcp"), std::string("ucp_put_loop"))
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_move_pages, shm_frugal_merged, std::string("shm"),
                  std::string("frugal_merged"))
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_move_pages, shm_frugal_scattered, std::string("shm"),
                  std::string("frugal_scattered"))
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_move_pages, shm_ucp_put_loop, std::string("shm"), std::string("ucp_put_loop"))
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// ---- descriptors per request ----------------------------------------------------------------

frugal::virtual_resource& reserved_memory() {
  static frugal::virtual_resource memory{{.reserve_bytes = std::size_t{1} << 40, .commit = false}};
  return memory;
}

/// Fragments a cache: 2,000 sequences of 16..2,048 tokens added and released at random, with
/// 40% of its pages left held.
std::vector<kv::sequence> churn(kv::cache& cache, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<kv::sequence> live;
  std::vector<kv::token_id> prompt;
  for (int i = 0; i < 2000; ++i) {
    prompt.assign(std::uniform_int_distribution<std::size_t>(16, 2048)(rng), 0);
    std::iota(prompt.begin(), prompt.end(), i * 4096);
    while (cache.num_free_pages() < (prompt.size() + 15) / 16 + cache.num_pages() * 6 / 10 &&
           !live.empty())
      live.erase(live.begin() + static_cast<std::ptrdiff_t>(rng() % live.size()));
    if (auto seq = cache.try_add_sequence(prompt)) live.push_back(std::move(*seq));
  }
  return live;
}

void BM_descriptors(benchmark::State& state, std::uint32_t page_size) {
  const kv::layout l{.num_layers = 32,
                     .num_kv_heads = 8,
                     .head_dim = 128,
                     .page_size = page_size,
                     .dtype = kv::dtype::fp16};
  constexpr std::size_t tokens = 8192;
  const auto capacity = static_cast<std::uint32_t>(4 * 65536 / page_size);  // 256 Ki tokens
  std::vector<kv::token_id> request(tokens);
  std::iota(request.begin(), request.end(), -1000000);
  kv::cache_options no_prefix;
  no_prefix.enable_prefix_caching = false;
  no_prefix.watermark = 0.0;

  std::size_t pages = 0, fresh = 0, churned = 0;
  for (auto _ : state) {
    kv::cache prefill{l, capacity, reserved_memory(), no_prefix};
    kv::cache decode{l, capacity, reserved_memory(), no_prefix};
    {
      kv::sequence a = prefill.add_sequence(request);
      kv::sequence b = decode.add_sequence(request);
      pages = a.pages().size();
      fresh = kv::merge_page_runs(a.pages(), b.pages()).size();
    }
    auto keep_p = churn(prefill, 1);
    auto keep_d = churn(decode, 2);
    kv::sequence a = prefill.add_sequence(request);
    kv::sequence b = decode.add_sequence(request);
    churned = kv::merge_page_runs(a.pages(), b.pages()).size();
  }
  state.counters["pages"] = static_cast<double>(pages);
  state.counters["layer_split"] = static_cast<double>(pages * 2 * l.num_layers);
  state.counters["merged_fresh"] = static_cast<double>(fresh);
  state.counters["merged_churned"] = static_cast<double>(churned);
}
BENCHMARK_CAPTURE(BM_descriptors, page_size_16, 16u)->Iterations(1)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_descriptors, page_size_64, 64u)->Iterations(1)->Unit(benchmark::kMillisecond);

}  // namespace

int main(int argc, char** argv) {
  for (const char* transport : {"tcp", "shm"})
    receivers()[transport] = spawn_receiver(transport, &sender::run_receiver);
  ::alarm(900);  // a transfer that never completes ends the run instead of hanging it
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  senders().clear();  // closes each side channel: the receivers exit
  for (auto& [transport, r] : receivers())
    if (r.fd >= 0 && ::close(r.fd) == 0) ::waitpid(r.pid, nullptr, 0);
  return 0;
}
