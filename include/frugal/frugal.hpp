// frugal/frugal.hpp: the umbrella header. Component headers can be included alone.
//   #include <frugal/frugal.hpp>
//   frugal::host_resource host;
#pragma once

#include <frugal/batch/scheduler.hpp>
#include <frugal/batch/workspace.hpp>
#include <frugal/config.hpp>
#include <frugal/error.hpp>
#include <frugal/kv/cache.hpp>
#include <frugal/kv/copy_op.hpp>
#include <frugal/kv/layout.hpp>
#include <frugal/kv/page_pool.hpp>
#include <frugal/mr/arena.hpp>
#include <frugal/mr/block.hpp>
#include <frugal/mr/concepts.hpp>
#include <frugal/mr/failure_callback_adaptor.hpp>
#include <frugal/mr/host_resource.hpp>
#include <frugal/mr/limit_adaptor.hpp>
#include <frugal/mr/logging_adaptor.hpp>
#include <frugal/mr/memory_report.hpp>
#include <frugal/mr/pool.hpp>
#include <frugal/mr/resource_ref.hpp>
#include <frugal/mr/resource_stats.hpp>
#include <frugal/mr/snapshot.hpp>
#include <frugal/mr/stats_adaptor.hpp>
#include <frugal/mr/stream_pool.hpp>
#include <frugal/mr/synchronized.hpp>
#include <frugal/mr/tracking_adaptor.hpp>
#include <frugal/mr/virtual_resource.hpp>
#include <frugal/numeric/float16.hpp>
#include <frugal/quant/accuracy.hpp>
#include <frugal/quant/codecs.hpp>
#include <frugal/quant/format.hpp>
#include <frugal/quant/model_choice.hpp>
#include <frugal/quant/quantize.hpp>
#include <frugal/quant/quantized_tensor.hpp>
#include <frugal/quant/safetensors.hpp>
#include <frugal/tensor/step_scope.hpp>
#include <frugal/tensor/tensor.hpp>

#if FRUGAL_HAS_CUDA
#include <frugal/device.hpp>
#include <frugal/mr/cuda_async_resource.hpp>
#include <frugal/mr/cuda_resource.hpp>
#include <frugal/mr/cuda_stream_policy.hpp>
#include <frugal/mr/cuda_virtual_resource.hpp>
#include <frugal/mr/pinned_resource.hpp>
#endif
