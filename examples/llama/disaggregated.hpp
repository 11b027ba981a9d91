// examples/llama/disaggregated.hpp: prefill and decode in two processes. This process runs each
// prompt's prefill into its own kv::cache and writes the pages, over UCX, into the cache of a
// decode process it starts (fork), which continues generation from them. Loopback TCP carries
// the control messages (metadata, requests, page lists, first tokens, results).
//   llama::serve_result r = llama::serve_disaggregated(model, memory, options, prompts,
//                                                      {.transport = "shm"});
#pragma once

#include "serve.hpp"

#include <cstddef>
#include <stdexcept>
#include <string>

namespace llama {

/// @brief How the two processes talk.
struct disaggregated_options {
  /// "tcp" (UCX over loopback TCP) or "shm" (shared memory: cma puts, sysv notifications).
  std::string transport = "tcp";
  /// For tests: the decode process kills itself (SIGKILL) once it has received this many
  /// sequences; 0: never.
  std::size_t kill_decode_after = 0;
};

/// @brief The decode process died or the connection to it dropped. The prefill process is
/// intact: its message says how many of its pages are free afterwards (all of them).
struct decode_failed : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// @brief Serves `prompts` with prefill here and decode in a child process; the same outputs as
/// engine::serve (each row's arithmetic does not depend on the batch). 8-bit KV is refused (its
/// scales come from every prompt up front, which a streaming decode process does not see).
/// @throws decode_failed when the decode process dies (after releasing every page here)
/// @throws std::invalid_argument for a bad prompt, transport or KV type
serve_result serve_disaggregated(const model& m, frugal::any_resource_ref memory,
                                 const serve_options& options, std::span<const prompt> prompts,
                                 const disaggregated_options& how);

}  // namespace llama
