// KV pages from one process's cache into another's over UCX (frugal::ucx, docs/transfer.md):
// the child reserves a sequence's pages in its cache, the parent fills its own pages and writes
// them, the child checks them on the notification and registers them for prefix hits.
#include <frugal/kv/transfer.hpp>
#include <frugal/mr/host_resource.hpp>

#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <string>
#include <vector>

namespace kv = frugal::kv;
using namespace std::chrono_literals;

namespace {
// The side channel: any byte stream does; here a socketpair and length-prefixed blobs.
void send_blob(int fd, const std::string& s) {
  const auto n = static_cast<std::uint32_t>(s.size());
  (void)!::write(fd, &n, 4);
  (void)!::write(fd, s.data(), s.size());
}
std::string recv_blob(int fd) {
  std::uint32_t n = 0;
  std::string s;
  if (::recv(fd, &n, 4, MSG_WAITALL) == 4) {
    s.resize(n);
    if (::recv(fd, s.data(), n, MSG_WAITALL) != static_cast<ssize_t>(n)) s.clear();
  }
  return s;
}
}  // namespace

int main() {
  if (!kv::transfer_available()) {
    std::printf("this build has no UCX; nothing to show\n");
    return 0;
  }
  const kv::layout layout{.num_layers = 2,
                          .num_kv_heads = 2,
                          .head_dim = 16,
                          .page_size = 16,
                          .dtype = kv::dtype::fp32};
  std::vector<kv::token_id> prompt(100);
  std::iota(prompt.begin(), prompt.end(), 1);
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) return 1;
  frugal::host_resource host;

  const pid_t child = ::fork();
  if (child == 0) {  // decode: receives the sequence
    kv::cache cache{layout, 64, host};
    kv::transfer_agent agent{"decode", cache.pages(), {.transports = "tcp"}};
    send_blob(sv[1], agent.metadata());
    agent.load_peer(recv_blob(sv[1]));
    kv::sequence_receiver rx{cache, agent};
    const auto pages = rx.reserve(1, "prefill", prompt, std::chrono::steady_clock::now() + 10s);
    send_blob(sv[1], std::string(reinterpret_cast<const char*>(pages->data()),
                                 pages->size() * sizeof(kv::page_id)));
    for (;;) {
      for (auto& done : rx.poll()) {
        if (!done.sequence) {
          std::printf("decode: %s\n", done.error.c_str());
          ::_exit(1);
        }
        const float first =
            *reinterpret_cast<const float*>(cache.pages().page_address(done.sequence->pages()[0]));
        std::printf("decode: sequence %llu arrived, %zu tokens in %zu pages, first value %.1f\n",
                    static_cast<unsigned long long>(done.id), done.sequence->num_tokens(),
                    done.sequence->pages().size(), first);
        std::fflush(stdout);
        ::_exit(first == 42.0f ? 0 : 1);
      }
    }
  }

  // prefill: "computes" the prompt's KV, writes it, and keeps the pages until the write is done
  kv::cache cache{layout, 64, host};
  kv::transfer_agent agent{"prefill", cache.pages(), {.transports = "tcp"}};
  send_blob(sv[0], agent.metadata());
  agent.load_peer(recv_blob(sv[0]));
  kv::sequence seq = cache.add_sequence(prompt);
  for (const kv::page_id p : seq.pages()) {
    auto* values = reinterpret_cast<float*>(cache.pages().page_address(p));
    std::fill(values, values + layout.page_bytes() / sizeof(float), 42.0f);
  }
  const std::string blob = recv_blob(sv[0]);
  std::vector<kv::page_id> remote(blob.size() / sizeof(kv::page_id));
  std::memcpy(remote.data(), blob.data(), blob.size());
  kv::sequence_sender tx{agent};
  const kv::transfer& t = tx.send(std::move(seq), 0, "decode", remote, 1);
  std::printf("prefill: writing %zu pages as %zu descriptor(s)\n", t.pages(), t.descriptors());
  std::vector<kv::sequence_sender::completion> done;
  while (done.empty()) done = tx.poll();
  std::printf("prefill: %s; %u of %u pages free again\n",
              done[0].error.empty() ? "written" : done[0].error.c_str(), cache.num_free_pages(),
              cache.num_pages());
  int status = 0;
  ::waitpid(child, &status, 0);
  return done[0].error.empty() && WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}
