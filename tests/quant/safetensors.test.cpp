#include <frugal/error.hpp>
#include <frugal/numeric/float16.hpp>
#include <frugal/quant/safetensors.hpp>

#include <catch2/catch.hpp>

#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

using frugal::quant::dtype;
using frugal::quant::safetensors_file;
using frugal::quant::tensor_to_write;

namespace {

/// A file image: the 8-byte little-endian length of `header`, `header`, then `data_bytes` bytes.
std::vector<std::byte> image(const std::string& header, std::size_t data_bytes,
                             std::uint64_t claimed_length = ~std::uint64_t{0}) {
  std::uint64_t length = claimed_length == ~std::uint64_t{0} ? header.size() : claimed_length;
  std::vector<std::byte> out(8 + header.size() + data_bytes, std::byte{0});
  for (int i = 0; i < 8; ++i, length >>= 8) out[i] = static_cast<std::byte>(length & 0xFF);
  std::memcpy(out.data() + 8, header.data(), header.size());
  return out;
}

template <class T>
std::span<const std::byte> as_bytes(const std::vector<T>& v) {
  return std::as_bytes(std::span(v));
}

/// Parsing `bytes` throws frugal::error whose message contains `problem`.
void check_refused(const std::vector<std::byte>& bytes, const std::string& problem) {
  INFO("expected an error naming: " << problem);
  try {
    (void)safetensors_file::from_bytes(bytes, "bad.safetensors");
    FAIL("no error");
  } catch (const frugal::error& e) {
    const std::string what = e.what();
    INFO(what);
    CHECK(what.find("bad.safetensors") != std::string::npos);
    CHECK(what.find(problem) != std::string::npos);
  }
}

}  // namespace

TEST_CASE("safetensors: a written file reads back, tensors in offset order") {
  const std::vector<float> w{1.0f, -2.5f, 3.25f, 0.0f, 1e-3f, 7.0f};
  std::vector<std::uint16_t> h, b;
  for (float x : w) {
    h.push_back(frugal::detail::float_to_half_bits(x));
    b.push_back(frugal::detail::float_to_bfloat16_bits(x));
  }
  const std::vector<std::int64_t> ids{1, 2, 3};
  const std::vector<tensor_to_write> tensors{
      {"weight", dtype::f32, {2, 3}, as_bytes(w)}, {"half", dtype::f16, {6}, as_bytes(h)},
      {"brain", dtype::bf16, {3, 2}, as_bytes(b)}, {"ids", dtype::i64, {3}, as_bytes(ids)},
      {"empty", dtype::f32, {0, 4}, {}},
  };
  const auto path = std::filesystem::temp_directory_path() / "frugal_safetensors_roundtrip.st";
  frugal::quant::write_safetensors(path, tensors);
  {
    safetensors_file file{path};
    CHECK(file.name() == path.string());
    REQUIRE(file.tensors().size() == 5);
    CHECK(file.tensors()[0].name == "weight");
    CHECK(file.tensors().back().name == "empty");  // zero bytes, at the end of the data
    const auto& weight = file.at("weight");
    CHECK(weight.type == dtype::f32);
    CHECK(weight.shape == std::vector<std::size_t>{2, 3});
    CHECK(weight.elements() == 6);
    CHECK(weight.cols() == 3);
    CHECK(file.to_float(weight) == w);
    const std::vector<float> half = file.to_float(file.at("half"));
    const std::vector<float> brain = file.to_float(file.at("brain"));
    for (std::size_t i = 0; i < w.size(); ++i) {
      CHECK(half[i] == frugal::detail::half_bits_to_float(h[i]));
      CHECK(brain[i] == frugal::detail::bfloat16_bits_to_float(b[i]));
    }
    CHECK(file.at("empty").elements() == 0);
    CHECK(file.to_float(file.at("empty")).empty());
    CHECK(file.bytes(file.at("ids")).size() == 24);
    CHECK_THROWS_AS(file.to_float(file.at("ids")), frugal::invalid_argument);
    CHECK_THROWS_WITH(file.to_float(file.at("ids")), Catch::Contains("I64"));
    CHECK_THROWS_AS(file.at("missing"), frugal::invalid_argument);
    CHECK_FALSE(file.contains("missing"));

    std::vector<float> out(5);
    CHECK_THROWS_AS(file.to_float(weight, out), frugal::invalid_argument);
    CHECK(out == std::vector<float>(5, 0.0f));  // nothing written

    safetensors_file moved = std::move(file);
    CHECK(moved.tensors().size() == 5);
    CHECK(file.tensors().empty());  // NOLINT(bugprone-use-after-move): moved-from is empty
  }
  std::filesystem::remove(path);
}

TEST_CASE("safetensors: the data section starts 8-byte aligned") {
  const std::vector<float> w{1.0f};
  const std::vector<tensor_to_write> tensors{{"x", dtype::f32, {1}, as_bytes(w)}};
  const auto bytes = frugal::quant::serialize_safetensors(tensors);
  CHECK((bytes.size() - 4) % 8 == 0);
  CHECK(safetensors_file::from_bytes(bytes).to_float(
            safetensors_file::from_bytes(bytes).tensors()[0]) == w);
}

TEST_CASE("safetensors: valid corner cases") {
  SECTION("an empty header {} is a file with no tensors") {
    const auto bytes = image("{}", 0);
    CHECK(safetensors_file::from_bytes(bytes).tensors().empty());
  }
  SECTION("__metadata__ is skipped; tensors may appear in any order; padding spaces") {
    const auto bytes = image(R"({"__metadata__":{"format":"pt"},)"
                             R"("b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]},)"
                             R"("a":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}}    )",
                             8);
    const auto file = safetensors_file::from_bytes(bytes);
    REQUIRE(file.tensors().size() == 2);
    CHECK(file.tensors()[0].name == "a");
    CHECK(file.tensors()[1].name == "b");
    CHECK(file.tensors()[1].begin == 4);
  }
  SECTION("a scalar has an empty shape and one element") {
    const auto bytes = image(R"({"s":{"dtype":"BF16","shape":[],"data_offsets":[0,2]}})", 2);
    const auto file = safetensors_file::from_bytes(bytes);
    CHECK(file.at("s").elements() == 1);
    CHECK(file.at("s").cols() == 1);
  }
}

TEST_CASE("safetensors: malformed files are refused with an error naming the problem") {
  const std::string ok_tensor = R"("t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
  SECTION("shorter than the header length") {
    check_refused(std::vector<std::byte>(5), "shorter than the 8-byte header length");
  }
  SECTION("header length past the end of the file") {
    check_refused(image("{}", 0, 3), "runs past the end of the file");
  }
  SECTION("header length over the limit") {
    check_refused(image("{}", 0, 200'000'000), "exceeds the limit");
    check_refused(image("{}", 0, ~std::uint64_t{0} - 1), "exceeds the limit");
  }
  SECTION("malformed JSON") {
    check_refused(image(R"({"t":{"dtype":"F32",)", 0), "malformed JSON header");
    check_refused(image("not json", 0), "malformed JSON header");
    check_refused(image("", 0), "malformed JSON header");
  }
  SECTION("JSON nested too deep") {
    check_refused(image(std::string(10'000, '[') + std::string(10'000, ']'), 0),
                  "nested deeper than");
  }
  SECTION("JSON that is not an object, or an entry that is not one") {
    check_refused(image("[1,2]", 0), "not an object");
    check_refused(image(R"({"t":3})", 0), "entry is not a JSON object");
    check_refused(image(R"({"__metadata__":[1]})", 0), "\"__metadata__\" is not an object");
  }
  SECTION("unknown dtype") {
    check_refused(image(R"({"t":{"dtype":"F33","shape":[2],"data_offsets":[0,8]}})", 8),
                  "unknown dtype 'F33'");
    check_refused(image(R"({"t":{"dtype":7,"shape":[2],"data_offsets":[0,8]}})", 8),
                  "missing \"dtype\"");
  }
  SECTION("bad shape") {
    check_refused(image(R"({"t":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8),
                  "non-negative integers");
    check_refused(image(R"({"t":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}})", 8),
                  "non-negative integers");
    check_refused(image(R"({"t":{"dtype":"F32","data_offsets":[0,8]}})", 8), "missing \"shape\"");
    check_refused(image(R"({"t":{"dtype":"F32","shape":[4294967296,4294967296,16],)"
                        R"("data_offsets":[0,8]}})",
                        8),
                  "overflows");
  }
  SECTION("shape product * dtype size disagrees with the offsets") {
    check_refused(image(R"({"t":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 12),
                  "shape product * dtype size = 12 bytes but data_offsets span 8");
  }
  SECTION("offsets outside the data section") {
    check_refused(image(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 8),
                  "outside the data section");
    check_refused(image(R"({"t":{"dtype":"F32","shape":[2],)"
                        R"("data_offsets":[18446744073709551615,18446744073709551615]}})",
                        8),
                  "outside the data section");
    check_refused(image(R"({"t":{"dtype":"F32","shape":[0],"data_offsets":[8,4]}})", 8),
                  "end before they begin");
    check_refused(image(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", 8),
                  "\"data_offsets\" must be two non-negative integers");
    check_refused(image(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[-8,0]}})", 8),
                  "\"data_offsets\" must be two non-negative integers");
  }
  SECTION("overlapping tensors") {
    check_refused(
        image("{" + ok_tensor + R"(,"u":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 12),
        "overlapping tensors 't' [0, 8) and 'u' [4, 12)");
    check_refused(
        image("{" + ok_tensor + R"(,"u":{"dtype":"F16","shape":[4],"data_offsets":[0,8]}})", 8),
        "overlapping tensors");
  }
  SECTION("invalid UTF-8 inside a name") {
    check_refused(image("{\"\xff\xfe\":{}}", 0), "malformed JSON header");
  }
  SECTION("an unreadable path") {
    CHECK_THROWS_AS(safetensors_file{"/nonexistent/frugal.safetensors"}, frugal::error);
    CHECK_THROWS_WITH(safetensors_file{"/nonexistent/frugal.safetensors"},
                      Catch::Contains("cannot open"));
  }
}

TEST_CASE("safetensors: writing refuses inconsistent tensors and writes nothing") {
  const std::vector<float> w{1.0f, 2.0f};
  const auto path = std::filesystem::temp_directory_path() / "frugal_safetensors_refused.st";
  std::filesystem::remove(path);
  const std::vector<tensor_to_write> wrong_size{{"x", dtype::f32, {3}, as_bytes(w)}};
  CHECK_THROWS_AS(frugal::quant::write_safetensors(path, wrong_size), frugal::invalid_argument);
  const std::vector<tensor_to_write> duplicate{{"x", dtype::f32, {2}, as_bytes(w)},
                                               {"x", dtype::f32, {2}, as_bytes(w)}};
  CHECK_THROWS_WITH(frugal::quant::write_safetensors(path, duplicate),
                    Catch::Contains("duplicate"));
  const std::vector<tensor_to_write> metadata{{"__metadata__", dtype::f32, {2}, as_bytes(w)}};
  CHECK_THROWS_AS(frugal::quant::write_safetensors(path, metadata), frugal::invalid_argument);
  CHECK_FALSE(std::filesystem::exists(path));
}

TEST_CASE("safetensors: random corruptions of a valid file never crash", "[long]") {
  const std::vector<float> w(64, 1.5f);
  const std::vector<tensor_to_write> tensors{{"a.weight", dtype::f32, {8, 8}, as_bytes(w)},
                                             {"b.weight", dtype::f32, {64}, as_bytes(w)}};
  const auto good = frugal::quant::serialize_safetensors(tensors);
  std::mt19937 rng(7);
  std::size_t refused = 0;
  for (int round = 0; round < 20'000; ++round) {
    auto bytes = good;
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int i = 0; i < flips; ++i)
      bytes[rng() % bytes.size()] = static_cast<std::byte>(rng() & 0xFF);
    if (rng() % 8 == 0) bytes.resize(rng() % bytes.size());
    try {
      const auto file = safetensors_file::from_bytes(bytes);
      for (const auto& t : file.tensors())
        if (frugal::quant::is_float_readable(t.type)) (void)file.to_float(t);
    } catch (const frugal::error&) {
      ++refused;
    }
  }
  CHECK(refused > 0);
}
