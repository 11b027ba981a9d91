// Disaggregated serving: prefill here, decode in a forked process, KV pages between them over
// UCX (frugal::kv::transfer_agent), control messages over loopback TCP.
//
// Control protocol (each message: u32 length, u8 type, payload; integers little-endian):
//   hello     both ways   the agent's metadata blob
//   request   P -> D      index, max_new_tokens, prompt tokens
//   pages     D -> P      index, prompt tokens the decode cache already holds, the pages to write
//   first     P -> D      index, the first generated token, the request's generator state
//   result    D -> P      index, hit_eos, the generated tokens
//   done      P -> D      no more requests
//   summary   D -> P      decode steps, peak pages used
// The decode process reserves pages in request order as its cache allows (watermark rules);
// the prefill process computes a prompt when its pages are reserved, writes them, and sends
// the first token once the write is complete.
#include "disaggregated.hpp"

#include <frugal/batch/workspace.hpp>
#include <frugal/kv/transfer.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <deque>
#include <map>
#include <optional>

namespace llama {

namespace {

namespace kv = frugal::kv;
using clock_type = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr std::size_t workspace_granularity = 64 << 10;

enum class message_type : std::uint8_t { hello, request, pages, first, result, done, summary };

/// Little-endian fields into and out of a message payload.
struct payload {
  std::string bytes;
  std::size_t at = 0;

  template <class T>
  payload& put(T v) {
    for (std::size_t i = 0; i < sizeof(T); ++i)
      bytes.push_back(static_cast<char>((static_cast<std::uint64_t>(v) >> (8 * i)) & 0xFF));
    return *this;
  }
  template <class T>
  payload& put_list(std::span<const T> values) {
    put<std::uint32_t>(static_cast<std::uint32_t>(values.size()));
    for (const T v : values) put<T>(v);
    return *this;
  }
  template <class T>
  T get() {
    if (bytes.size() - at < sizeof(T)) throw std::runtime_error("control message truncated");
    std::uint64_t v = 0;
    for (std::size_t i = 0; i < sizeof(T); ++i)
      v |= std::uint64_t{static_cast<unsigned char>(bytes[at + i])} << (8 * i);
    at += sizeof(T);
    return static_cast<T>(v);
  }
  template <class T>
  std::vector<T> get_list() {
    std::vector<T> out(get<std::uint32_t>());
    for (T& v : out) v = get<T>();
    return out;
  }
};

/// One end of the control connection: framed messages, reads without blocking the caller
/// longer than it asks.
class channel {
 public:
  explicit channel(int fd) : fd_(fd) {
    const int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  ~channel() { ::close(fd_); }
  channel(const channel&) = delete;
  channel& operator=(const channel&) = delete;

  void send(message_type type, const payload& p) {
    std::string frame;
    const auto length = static_cast<std::uint32_t>(p.bytes.size() + 1);
    for (int i = 0; i < 4; ++i) frame.push_back(static_cast<char>((length >> (8 * i)) & 0xFF));
    frame.push_back(static_cast<char>(type));
    frame += p.bytes;
    std::size_t at = 0;
    while (at < frame.size()) {
      const ssize_t n = ::send(fd_, frame.data() + at, frame.size() - at, MSG_NOSIGNAL);
      if (n <= 0) throw std::runtime_error("the control connection dropped");
      at += static_cast<std::size_t>(n);
    }
  }

  /// @returns the next message, waiting at most `timeout`; nullopt when none came.
  /// @throws std::runtime_error when the other end closed the connection
  std::optional<std::pair<message_type, payload>> receive(std::chrono::milliseconds timeout) {
    for (;;) {
      if (buffer_.size() >= 4) {
        std::uint32_t length = 0;
        for (int i = 0; i < 4; ++i)
          length |= std::uint32_t{static_cast<unsigned char>(buffer_[i])} << (8 * i);
        if (buffer_.size() >= 4 + std::size_t{length}) {
          payload p;
          p.bytes = buffer_.substr(5, length - 1);
          const auto type = static_cast<message_type>(buffer_[4]);
          buffer_.erase(0, 4 + std::size_t{length});
          return std::pair{type, std::move(p)};
        }
      }
      pollfd pfd{fd_, POLLIN, 0};
      if (::poll(&pfd, 1, static_cast<int>(timeout.count())) <= 0) return std::nullopt;
      char chunk[65536];
      const ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
      if (n <= 0) throw std::runtime_error("the control connection closed");
      buffer_.append(chunk, static_cast<std::size_t>(n));
      timeout = 0ms;
    }
  }

  std::pair<message_type, payload> receive_blocking(std::chrono::milliseconds timeout) {
    auto m = receive(timeout);
    if (!m) throw std::runtime_error("no control message within the timeout");
    return std::move(*m);
  }

 private:
  int fd_;
  std::string buffer_;
};

kv::layout layout_for(const model& m, const serve_options& o) {
  const config& c = m.config();
  return {.num_layers = c.n_layers,
          .num_kv_heads = c.n_kv_heads,
          .head_dim = c.head_dim(),
          .page_size = o.page_size,
          .dtype = o.kv_dtype};
}

kv::transfer_options transfer_options_for(const std::string& transport) {
  // UCX 1.13's shared-memory transports cannot report a dead peer; probe its process instead.
  return {.transports = transport,
          .failure_detection = transport == "shm" ? kv::peer_failure_detection::process
                                                  : kv::peer_failure_detection::ucx};
}

/// One step of the model over `seqs`: `tokens` (qo_indptr splits them per sequence) are the
/// tokens each sequence gained last; logits of the last token of each sequence, in order.
void step(const model& m, kv::cache& cache, frugal::batch::workspace& ws,
          std::span<const kv::sequence* const> seqs, std::span<const std::int32_t> tokens,
          std::span<const std::int32_t> qo_indptr, std::vector<float>& logits) {
  const config& c = m.config();
  const std::vector<std::int64_t> slots = cache.slot_mapping(seqs);
  const kv::flashinfer_page_table table = cache.export_flashinfer(seqs);
  std::vector<std::size_t> rows;
  for (std::size_t i = 1; i < qo_indptr.size(); ++i)
    rows.push_back(static_cast<std::size_t>(qo_indptr[i]) - 1);
  ws.begin_step(tokens.size(), m.step_extra_bytes(rows.size()));
  auto* out = static_cast<float*>(ws.allocate(rows.size() * c.vocab_size * sizeof(float)));
  const batch b{tokens, slots, qo_indptr, table, rows};
  m.forward(cache.pages(), {}, b, ws, {out, rows.size() * c.vocab_size});
  logits.assign(out, out + rows.size() * c.vocab_size);
  ws.end_step();
}

// ---- the decode process -------------------------------------------------------------------

struct decode_job {
  prompt tokens;
  std::uint32_t max_new = 0;
  std::optional<kv::sequence> seq;
  bool have_first = false;
  std::uint64_t rng = 0;
  std::vector<std::int32_t> output;
};

int run_decode(const model& m, frugal::any_resource_ref memory, const serve_options& options,
               const disaggregated_options& how, int fd) {
  const config& c = m.config();
  channel control{fd};
  kv::cache_options cache_options;
  cache_options.enable_prefix_caching = options.prefix_caching;
  cache_options.watermark = 0.01;  // running sequences grow into it
  kv::cache cache{layout_for(m, options), options.pages, memory, cache_options};
  kv::transfer_agent agent{"decode", cache.pages(), transfer_options_for(how.transport)};
  control.send(message_type::hello, payload{agent.metadata()});
  agent.load_peer(control.receive_blocking(30s).second.bytes);
  kv::sequence_receiver receiver{cache, agent};
  frugal::batch::workspace ws{
      memory,
      {.bytes_per_token = m.activation_bytes_per_token(), .granularity = workspace_granularity}};

  std::map<std::uint32_t, decode_job> jobs;
  std::deque<std::uint32_t> to_reserve;
  std::vector<std::uint32_t> running;
  std::size_t received = 0, steps = 0;
  std::uint32_t pages_used_peak = 0;
  bool done = false;
  std::vector<float> logits;
  std::vector<std::int32_t> tokens, qo_indptr;
  std::vector<const kv::sequence*> seqs;

  auto finish = [&](std::uint32_t index, decode_job& job) {
    const bool eos = job.output.back() == c.eos_token;
    control.send(message_type::result, payload{}
                                           .put<std::uint32_t>(index)
                                           .put<std::uint8_t>(eos ? 1 : 0)
                                           .put_list<std::int32_t>(job.output));
    jobs.erase(index);
  };
  auto finished = [&](const decode_job& job) {
    return job.output.back() == c.eos_token || job.output.size() >= job.max_new;
  };

  while (!done || !jobs.empty()) {
    const bool busy = !running.empty();
    while (auto msg = control.receive(busy ? 0ms : 1ms)) {
      payload& p = msg->second;
      switch (msg->first) {
        case message_type::request: {
          const auto index = p.get<std::uint32_t>();
          decode_job& job = jobs[index];
          job.max_new = p.get<std::uint32_t>();
          job.tokens = p.get_list<std::int32_t>();
          to_reserve.push_back(index);
          break;
        }
        case message_type::first: {
          decode_job& job = jobs.at(p.get<std::uint32_t>());
          job.output.push_back(p.get<std::int32_t>());
          job.rng = p.get<std::uint64_t>();
          job.have_first = true;
          break;
        }
        case message_type::done:
          done = true;
          break;
        default:
          throw std::runtime_error("decode: unexpected control message");
      }
    }
    // Reservations in request order, as the cache allows.
    while (!to_reserve.empty()) {
      const std::uint32_t index = to_reserve.front();
      const auto pages =
          receiver.reserve(index, "prefill", jobs.at(index).tokens, clock_type::now() + 60s);
      if (!pages) break;
      control.send(
          message_type::pages,
          payload{}
              .put<std::uint32_t>(index)
              .put<std::uint32_t>(static_cast<std::uint32_t>(receiver.cached_tokens(index)))
              .put_list<kv::page_id>(*pages));
      to_reserve.pop_front();
    }
    for (auto& a : receiver.poll()) {
      if (!a.sequence) throw std::runtime_error("decode: " + a.error);
      jobs.at(static_cast<std::uint32_t>(a.id)).seq = std::move(a.sequence);
      if (how.kill_decode_after > 0 && ++received >= how.kill_decode_after) ::raise(SIGKILL);
    }
    for (auto& [index, job] : jobs)
      if (job.seq && job.have_first &&
          std::find(running.begin(), running.end(), index) == running.end())
        running.push_back(index);
    // Requests finished by their first token.
    for (std::size_t i = 0; i < running.size();) {
      decode_job& job = jobs.at(running[i]);
      if (finished(job)) {
        finish(running[i], job);
        running.erase(running.begin() + static_cast<std::ptrdiff_t>(i));
      } else {
        ++i;
      }
    }
    if (running.empty()) continue;

    // One decode step: each running sequence's last token into the cache, then sampled.
    tokens.clear();
    seqs.clear();
    qo_indptr.assign(1, 0);
    for (const std::uint32_t index : running) {
      decode_job& job = jobs.at(index);
      if (!cache.try_append(*job.seq, {&job.output.back(), 1}))
        throw std::runtime_error("decode: the KV cache is full (raise --pages)");
      tokens.push_back(job.output.back());
      qo_indptr.push_back(static_cast<std::int32_t>(tokens.size()));
      seqs.push_back(&*job.seq);
    }
    kv::perform_copies_host(cache, cache.take_copy_ops());
    step(m, cache, ws, seqs, tokens, qo_indptr, logits);
    ++steps;
    pages_used_peak = std::max(pages_used_peak, cache.stats().used_pages);
    for (std::size_t i = 0; i < running.size();) {
      decode_job& job = jobs.at(running[i]);
      const std::span<const float> row(logits.data() + i * c.vocab_size, c.vocab_size);
      job.output.push_back(sample_token(row, options.sample, job.rng));
      if (finished(job)) {
        finish(running[i], job);
        running.erase(running.begin() + static_cast<std::ptrdiff_t>(i));
        logits.erase(logits.begin() + static_cast<std::ptrdiff_t>(i * c.vocab_size),
                     logits.begin() + static_cast<std::ptrdiff_t>((i + 1) * c.vocab_size));
      } else {
        ++i;
      }
    }
  }
  control.send(message_type::summary,
               payload{}.put<std::uint64_t>(steps).put<std::uint32_t>(pages_used_peak));
  return cache.is_valid() && cache.stats().used_pages == 0 ? 0 : 3;
}

// ---- the prefill process ------------------------------------------------------------------

/// A listening socket on 127.0.0.1 (an ephemeral port).
int listen_loopback(std::uint16_t& port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof address;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
      ::listen(fd, 1) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0)
    throw std::runtime_error(std::string("loopback control socket: ") + std::strerror(errno));
  port = ntohs(address.sin_port);
  return fd;
}

int connect_loopback(std::uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = htons(port);
  if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0)
    throw std::runtime_error(std::string("connect to the prefill process: ") +
                             std::strerror(errno));
  return fd;
}

std::string describe_exit(int status) {
  if (WIFSIGNALED(status)) return "killed by signal " + std::to_string(WTERMSIG(status));
  return "exit code " + std::to_string(WEXITSTATUS(status));
}

}  // namespace

serve_result serve_disaggregated(const model& m, frugal::any_resource_ref memory,
                                 const serve_options& requested, std::span<const prompt> prompts,
                                 const disaggregated_options& how) {
  const config& c = m.config();
  check_prompts(m, prompts);
  if (how.transport != "tcp" && how.transport != "shm")
    throw std::invalid_argument("--transport must be tcp or shm, not " + how.transport);
  if (frugal::kv::layout{
          .num_layers = 1, .num_kv_heads = 1, .head_dim = 1, .dtype = requested.kv_dtype}
          .scales_per_layer() > 0)
    throw std::invalid_argument("--disaggregated serves 16- and 32-bit KV only");
  if (!kv::transfer_available())
    throw std::invalid_argument("--disaggregated needs UCX (this build has FRUGAL_ENABLE_UCX off)");
  // The engine resolves the page count from --pages / --kv-memory.
  const serve_options options = engine{m, memory, requested}.options();
  const kv::layout l = layout_for(m, options);

  std::uint16_t port = 0;
  const int listener = listen_loopback(port);
  std::fflush(nullptr);
  const pid_t child = ::fork();
  if (child < 0) throw std::runtime_error("fork failed");
  if (child == 0) {
    ::close(listener);
    int rc = 2;
    try {
      rc = run_decode(m, memory, options, how, connect_loopback(port));
    } catch (const std::exception& e) {
      std::fprintf(stderr, "llama_serve (decode): %s\n", e.what());
    }
    std::fflush(stderr);
    ::_exit(rc);
  }
  // The decode process's cma reads of this process are allowed even where Yama restricts
  // ptrace to descendants (shared-memory transport).
  ::prctl(PR_SET_PTRACER, PR_SET_PTRACER_ANY);
  pollfd pfd{listener, POLLIN, 0};
  const int fd = ::poll(&pfd, 1, 30000) == 1 ? ::accept(listener, nullptr, nullptr) : -1;
  ::close(listener);
  if (fd < 0) {
    ::kill(child, SIGKILL);
    ::waitpid(child, nullptr, 0);
    throw std::runtime_error("the decode process did not connect");
  }

  serve_result result;
  serve_summary& summary = result.summary;
  result.requests.resize(prompts.size());
  std::optional<std::string> failure;
  {
    channel control{fd};
    kv::cache_options cache_options;
    cache_options.enable_prefix_caching = options.prefix_caching;
    cache_options.watermark = 0.0;
    kv::cache cache{l, options.pages, memory, cache_options};
    {
      kv::transfer_agent agent{"prefill", cache.pages(), transfer_options_for(how.transport)};
      kv::sequence_sender sender{agent};
      frugal::batch::workspace ws{memory,
                                  {.bytes_per_token = m.activation_bytes_per_token(),
                                   .granularity = workspace_granularity}};
      // First tokens wait here until their pages are written: (index, token, generator).
      std::map<std::uint64_t, std::pair<std::int32_t, std::uint64_t>> first_tokens;
      std::size_t results = 0;
      const auto start = clock_type::now();
      try {
        control.send(message_type::hello, payload{agent.metadata()});
        agent.load_peer(control.receive_blocking(30s).second.bytes);
        for (std::size_t i = 0; i < prompts.size(); ++i) {
          const auto room = static_cast<std::uint32_t>(c.seq_len - prompts[i].size());
          control.send(message_type::request,
                       payload{}
                           .put<std::uint32_t>(static_cast<std::uint32_t>(i))
                           .put<std::uint32_t>(std::min(options.max_new_tokens, room))
                           .put_list<std::int32_t>(prompts[i]));
          result.requests[i].index = i;
          result.requests[i].prompt_tokens = prompts[i].size();
        }
        control.send(message_type::done, payload{});
        std::vector<float> logits;
        bool have_summary = false;
        while (results < prompts.size() || !have_summary) {
          for (const auto& done : sender.poll()) {
            if (!done.error.empty()) throw std::runtime_error(done.error);
            const auto [token, rng] = first_tokens.at(done.id);
            control.send(message_type::first,
                         payload{}
                             .put<std::uint32_t>(static_cast<std::uint32_t>(done.id))
                             .put<std::int32_t>(token)
                             .put<std::uint64_t>(rng));
            first_tokens.erase(done.id);
          }
          auto msg = control.receive(sender.in_flight() > 0 ? 0ms : 5ms);
          if (!msg) continue;
          payload& p = msg->second;
          if (msg->first == message_type::result) {
            request_result& r = result.requests[p.get<std::uint32_t>()];
            r.hit_eos = p.get<std::uint8_t>() != 0;
            r.output = p.get_list<std::int32_t>();
            summary.generated_tokens += r.output.size();
            ++results;
          } else if (msg->first == message_type::summary) {
            summary.steps = p.get<std::uint64_t>();
            summary.pages_used_peak = p.get<std::uint32_t>();
            have_summary = true;
          } else if (msg->first == message_type::pages) {
            // The prefill of one request, then its pages to the decode process.
            const auto index = p.get<std::uint32_t>();
            const auto decode_cached = p.get<std::uint32_t>();
            const std::vector<kv::page_id> remote = p.get_list<kv::page_id>();
            std::optional<kv::sequence> seq;
            while (!(seq = cache.try_add_sequence(prompts[index]))) {
              if (sender.in_flight() == 0)
                throw std::runtime_error("prefill: the KV cache cannot hold request " +
                                         std::to_string(index + 1) + " (raise --pages)");
              for (const auto& done : sender.poll())
                if (!done.error.empty()) throw std::runtime_error(done.error);
            }
            const prompt& tokens = prompts[index];
            const std::size_t cached = seq->cached_tokens();
            result.requests[index].cached_tokens = std::max<std::size_t>(cached, decode_cached);
            summary.prefix_hit_tokens += cached;
            const std::vector<std::int32_t> fresh(
                tokens.begin() + static_cast<std::ptrdiff_t>(cached), tokens.end());
            const std::int32_t indptr[2] = {0, static_cast<std::int32_t>(fresh.size())};
            const kv::sequence* one = &*seq;
            step(m, cache, ws, {&one, 1}, fresh, indptr, logits);
            std::uint64_t rng = request_seed(options.sample.seed, index);
            const std::int32_t token = sample_token(logits, options.sample, rng);
            first_tokens[index] = {token, rng};
            summary.pages_used_peak = std::max(summary.pages_used_peak, cache.stats().used_pages);
            const std::size_t first_page = seq->pages().size() - remote.size();
            sender.send(std::move(*seq), first_page, "decode", remote, index);
          } else {
            throw std::runtime_error("prefill: unexpected control message");
          }
        }
      } catch (const std::exception& e) {
        failure = e.what();
        // The decode process is gone or broken: every transfer to it ends, and the sender
        // releases each sequence.
        ::kill(child, SIGKILL);
        agent.remove_peer("decode");  // its transfers fail now, whatever UCX has noticed
        const auto deadline = clock_type::now() + 20s;
        while (sender.in_flight() > 0 && clock_type::now() < deadline) sender.poll();
      }
      summary.seconds = std::chrono::duration<double>(clock_type::now() - start).count();
    }
    summary.pages_total = cache.num_pages();
    summary.kv_pool_bytes = cache.pages().memory().size();
    summary.peak_kv_bytes = std::size_t{summary.pages_used_peak} * l.page_bytes();
    if (failure) {
      int status = 0;
      ::waitpid(child, &status, 0);
      const bool all_free = cache.num_free_pages() == cache.num_pages() && cache.is_valid();
      throw decode_failed("the decode process (pid " + std::to_string(child) + ", " +
                          describe_exit(status) + ") failed: " + *failure +
                          "; prefill process: " + std::to_string(cache.num_free_pages()) + " of " +
                          std::to_string(cache.num_pages()) + " pages free, cache " +
                          (all_free ? "valid" : "NOT valid"));
    }
  }
  int status = 0;
  ::waitpid(child, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    throw decode_failed("the decode process ended with " + describe_exit(status));
  finish_summary(summary, m, prompts.size(),
                 reserved_kv_bytes(c, kv::element_bytes(options.kv_dtype)));
  return result;
}

}  // namespace llama
