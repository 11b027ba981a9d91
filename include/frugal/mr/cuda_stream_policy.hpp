// frugal/mr/cuda_stream_policy.hpp: the stream and event operations of stream_pool_resource over
// CUDA streams and events (cudaEvent_t, created without timing).
// snippet: cuda
//   frugal::stream_pool_resource pool{frugal::ref(gpu), frugal::cuda_stream_policy{}};
//   void* p = pool.allocate_async(bytes, 256, stream);
#pragma once

#include <frugal/config.hpp>

#if !FRUGAL_HAS_CUDA
#error \
    "frugal/mr/cuda_stream_policy.hpp needs the CUDA runtime: link frugal::cuda (it defines FRUGAL_HAS_CUDA=1)"
#endif

#include <frugal/error.hpp>
#include <frugal/mr/stream_pool.hpp>

#include <cuda_runtime_api.h>

namespace frugal {

/// @brief stream_policy over the CUDA runtime: record is cudaEventRecord, wait is
/// cudaStreamWaitEvent (the device waits, the host does not), synchronize is
/// cudaEventSynchronize, query is cudaEventQuery. Events are created with
/// cudaEventDisableTiming. The default stream is the legacy default stream (nullptr).
/// create_event throws cuda_error; the other operations run inside the pool's noexcept
/// deallocation path, so a failure there (a sticky device error) terminates the program.
struct cuda_stream_policy {
  using stream_type = cudaStream_t;
  using event_type = cudaEvent_t;

  event_type create_event() {
    cudaEvent_t event = nullptr;
    FRUGAL_CUDA_TRY(cudaEventCreateWithFlags(&event, cudaEventDisableTiming));
    return event;
  }
  void destroy_event(event_type event) noexcept { (void)cudaEventDestroy(event); }
  void record(event_type event, stream_type stream) noexcept {
    FRUGAL_CUDA_TRY(cudaEventRecord(event, stream));
  }
  void wait(stream_type stream, event_type event) noexcept {
    FRUGAL_CUDA_TRY(cudaStreamWaitEvent(stream, event, 0));
  }
  void synchronize(event_type event) noexcept { FRUGAL_CUDA_TRY(cudaEventSynchronize(event)); }
  bool query(event_type event) noexcept {
    const cudaError_t status = cudaEventQuery(event);
    if (status == cudaErrorNotReady) return false;
    FRUGAL_CUDA_TRY(status);
    return true;
  }
  stream_type default_stream() const noexcept { return nullptr; }
};

static_assert(stream_policy<cuda_stream_policy>);

}  // namespace frugal
