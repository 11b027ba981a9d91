// The names the documentation's code blocks assume, declared once so that every block compiles
// (tests/docs/extract_snippets.py). A block's own declarations shadow these. Nothing here runs:
// the generated functions are compiled, never called.
#pragma once

#include <frugal/frugal.hpp>
#include <frugal/kv/prefix_index.hpp>
#include <frugal/kv/transfer.hpp>
#include <frugal/quant/model_choice.hpp>
#include <frugal/sim/simulator.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace frugal_doc_snippets {

// The memory a block allocates from, and a tracker over a pool (tensor.md).
inline frugal::host_resource gpu;
inline frugal::pool_resource<frugal::host_resource> pool{frugal::host_resource{}};
inline frugal::tracking_adaptor<frugal::ref_t<frugal::pool_resource<frugal::host_resource>>>
    tracker{frugal::ref(pool)};

// A KV cache's shape and a sequence's tokens (kv.md, batch.md).
inline const frugal::kv::layout layout{
    .num_layers = 2, .num_kv_heads = 2, .head_dim = 64, .page_size = 16};
inline std::uint32_t num_pages = 64;
inline std::uint32_t pages = 64;
inline std::vector<frugal::kv::token_id> tokens, prompt, generated;

// One scheduler step and its results (batch.md).
inline frugal::batch::step_plan plan;
inline std::vector<std::pair<frugal::batch::request_id, frugal::kv::token_id>> sampled;
inline std::size_t samplers = 1, logits_bytes = 4096, vocab = 1024;

// A weight matrix on the host (formats.md).
inline std::vector<float> weights(1024), restored(1024);
inline std::size_t rows = 16, cols = 64;

// What a model comparison returns (embed.md).
struct embedding_agreement {
  double mean_cosine = 0, min_cosine = 0;
};
struct embeddings {};
inline embeddings reference;
inline std::vector<frugal::quant::format> candidates;
inline embeddings run_model_with(const frugal::quant::format_assignment&) { return {}; }
inline embedding_agreement compare_embeddings(const embeddings&, const embeddings&) { return {}; }

// Two processes' agents and caches, and the side channel between them (transfer.md).
namespace kv = frugal::kv;
using namespace std::chrono_literals;
using clock = kv::sequence_receiver::clock;
struct side_channel_type {
  void send(const std::string&) {}
  std::string receive() { return {}; }
};
inline side_channel_type side_channel;
extern kv::cache& cache;  // declared, never defined: the blocks compile, nothing runs
extern kv::cache& decode_cache;
extern kv::transfer_agent& agent;
inline std::vector<kv::page_id> local_pages, remote_pages;
inline std::uint64_t request = 1;
inline void start_decoding(kv::sequence) {}

// Batches of a serving loop (tensor.md).
struct batch_shape {
  std::size_t tokens = 1;
};
inline std::vector<batch_shape> batches;

// ---- the examples in the headers' banners ---------------------------------------------------
// Sizes, names and a resource of one's own (error.hpp, concepts.hpp, resource_ref.hpp).
inline std::size_t bytes = 1 << 20, alignment = 256, n = 64;
inline std::string name = "pool";
using my_resource = frugal::host_resource;
inline frugal::host_resource shared_upstream;
inline bool evict(std::size_t) { return false; }  // failure_callback_adaptor.hpp
inline std::uintptr_t address = 0x1000;           // detail/pointer_map.hpp
// A block of weights and where its codes go (quant/detail/block.hpp, fast_codecs.hpp).
inline float x[64] = {}, scale = 1.0f;
inline std::uint8_t packed[64] = {};
// Attention over a cache's pages (kv/attention.hpp).
inline std::uint32_t layer = 0;
inline std::vector<float> q, k, v, out;
inline std::vector<std::int32_t> qo_indptr, targets;
// One sequence, its pages and the eviction order (kv/cache.hpp, prefix_index.hpp, transfer.hpp).
extern kv::sequence& seq;
inline kv::prefix_index index{64, true};
inline std::vector<kv::page_id> seq_pages;
inline kv::page_id page = 0;
inline bool drop(kv::page_id) { return false; }
inline void copy_page(kv::page_id, kv::page_id, kv::copy_kind) {}  // kv/copy_op.hpp
inline const std::byte* src = nullptr;                             // kv/detail/copy_pages.hpp
inline std::byte* dst = nullptr;
inline std::vector<kv::copy_op> ops;
inline void send_to_peer(const std::string&) {}  // kv/transfer.hpp
inline std::string metadata_from_peer;
// Logits of two models and a metric over whole-model runs (quant/compare.hpp, model_choice.hpp).
inline std::vector<float> reference_logits, candidate_logits;
inline std::vector<frugal::quant::matrix_group> groups;
inline std::vector<float> run(const frugal::quant::format_assignment&) { return {}; }
inline double cosine(const std::vector<float>&) { return 1.0; }
// A step arena (tensor/step_scope.hpp).
inline frugal::arena_resource<frugal::host_resource> arena{frugal::host_resource{}};

}  // namespace frugal_doc_snippets

#if FRUGAL_HAS_CUDA
#include <frugal/kv/attention_kernels.hpp>
#include <frugal/quant/kernels.hpp>

#include <cuda_runtime_api.h>

namespace frugal_doc_snippets {

// Device buffers and streams of the CUDA blocks (kernels.md, mr.md).
inline const float* d_weights = nullptr;
inline std::byte* d_packed = nullptr;
inline float* d_restored = nullptr;
inline cudaStream_t stream = nullptr, compute = nullptr, copy = nullptr;

// The examples in the CUDA headers' banners: device buffers, a device, a kernel of one's own.
inline void* ptr = nullptr;
inline void* device_ptr = nullptr;
inline std::size_t size = 2 << 20;
inline int device_ = 0;
inline float *d_q = nullptr, *d_k = nullptr, *d_v = nullptr, *d_out = nullptr;
inline const std::int64_t* d_slots = nullptr;
inline std::size_t num_tokens = 1, batch_size = 1, max_pages = 1;
inline frugal::kv::device_page_table table;
inline void launch_kernel(void*, cudaStream_t) {}

}  // namespace frugal_doc_snippets
#endif
