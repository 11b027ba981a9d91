// libFuzzer target: frugal::quant::safetensors_file::from_bytes on arbitrary bytes, then every
// accessor on what it accepted. A frugal::error is the expected answer to bad input; anything
// else (another exception, a crash, an out-of-bounds read) is a bug.
#include <frugal/error.hpp>
#include <frugal/quant/safetensors.hpp>

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // A copy of exactly `size` bytes, so ASan sees any read past the end.
  std::vector<std::byte> bytes(reinterpret_cast<const std::byte*>(data),
                               reinterpret_cast<const std::byte*>(data) + size);
  try {
    const auto file = frugal::quant::safetensors_file::from_bytes(bytes, "fuzz.safetensors");
    for (const auto& t : file.tensors()) {
      const auto raw = file.bytes(t);
      if (raw.size() != t.end - t.begin) __builtin_trap();
      (void)file.at(t.name);
      if (t.elements() <= (std::size_t{1} << 20)) {
        const std::vector<float> values = file.to_float(t);
        if (values.size() != t.elements()) __builtin_trap();
      }
      (void)t.cols();
    }
  } catch (const frugal::error&) {
  }
  return 0;
}
