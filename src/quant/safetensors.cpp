// The safetensors reader and writer (include/frugal/quant/safetensors.hpp). Every check happens
// at opening, on untrusted bytes: all arithmetic is overflow-checked and every failure is a
// frugal::error, so the parser can be fuzzed through safetensors_file::from_bytes.
#include <frugal/error.hpp>
#include <frugal/numeric/float16.hpp>
#include <frugal/quant/safetensors.hpp>

#include <fcntl.h>
#include <nlohmann/json.hpp>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>
#include <unordered_map>
#include <unordered_set>
#include <utility>

namespace frugal::quant {
namespace {

constexpr std::size_t header_length_bytes = 8;
constexpr std::uint64_t max_header_bytes = 100'000'000;  // as the reference implementation
constexpr int max_json_depth = 64;                       // real headers nest 3 deep
constexpr std::size_t max_name_in_message = 80;

struct dtype_name {
  dtype type;
  std::string_view name;
  std::size_t size;
};
constexpr std::array<dtype_name, 15> dtype_names{{
    {dtype::f32, "F32", 4},
    {dtype::f16, "F16", 2},
    {dtype::bf16, "BF16", 2},
    {dtype::f64, "F64", 8},
    {dtype::f8_e4m3, "F8_E4M3", 1},
    {dtype::f8_e5m2, "F8_E5M2", 1},
    {dtype::i64, "I64", 8},
    {dtype::i32, "I32", 4},
    {dtype::i16, "I16", 2},
    {dtype::i8, "I8", 1},
    {dtype::u64, "U64", 8},
    {dtype::u32, "U32", 4},
    {dtype::u16, "U16", 2},
    {dtype::u8, "U8", 1},
    {dtype::boolean, "BOOL", 1},
}};

const dtype_name* find_dtype(std::string_view name) noexcept {
  for (const dtype_name& d : dtype_names)
    if (d.name == name) return &d;
  return nullptr;
}

std::string known_dtypes() {
  std::string s;
  for (const dtype_name& d : dtype_names) {
    if (!s.empty()) s += ", ";
    s += d.name;
  }
  return s;
}

/// A name from an untrusted header, quoted and shortened for an error message.
std::string quote_name(std::string_view name) {
  std::string s = "'";
  for (char c : name.substr(0, max_name_in_message))
    s += (static_cast<unsigned char>(c) < 0x20) ? '?' : c;
  if (name.size() > max_name_in_message) s += "...";
  return s + "'";
}

bool checked_mul(std::size_t a, std::size_t b, std::size_t& out) noexcept {
  if (a != 0 && b > std::numeric_limits<std::size_t>::max() / a) return false;
  out = a * b;
  return true;
}

std::uint64_t read_u64_le(const std::byte* p) noexcept {
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | std::to_integer<std::uint64_t>(p[i]);
  return v;
}

/// The deepest nesting of objects and arrays in `text` (strings skipped), stopping early once
/// past `limit`: checked before parsing so that no input can exhaust the stack.
int json_depth(std::string_view text, int limit) noexcept {
  int depth = 0, deepest = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped)
        escaped = false;
      else if (c == '\\')
        escaped = true;
      else if (c == '"')
        in_string = false;
      continue;
    }
    if (c == '"')
      in_string = true;
    else if (c == '{' || c == '[') {
      deepest = std::max(deepest, ++depth);
      if (deepest > limit) break;
    } else if (c == '}' || c == ']')
      --depth;
  }
  return deepest;
}

}  // namespace

std::string_view to_string(dtype t) noexcept {
  for (const dtype_name& d : dtype_names)
    if (d.type == t) return d.name;
  return "?";
}

std::size_t size_of(dtype t) noexcept {
  for (const dtype_name& d : dtype_names)
    if (d.type == t) return d.size;
  return 0;
}

std::size_t tensor_entry::elements() const noexcept {
  std::size_t n = 1;
  for (std::size_t d : shape) n *= d;  // checked against the offsets when the file was opened
  return n;
}

std::size_t tensor_entry::cols() const noexcept { return shape.empty() ? 1 : shape.back(); }

struct safetensors_file::impl {
  std::string name;
  const std::byte* image = nullptr;  // the whole file
  std::size_t image_bytes = 0;
  const std::byte* data = nullptr;  // the data section
  std::size_t data_bytes = 0;
  void* mapping = nullptr;  // non-null when this object mapped the file
  std::size_t mapping_bytes = 0;
  std::vector<tensor_entry> tensors;
  std::unordered_map<std::string, std::size_t> index;

  ~impl() {
    if (mapping != nullptr) ::munmap(mapping, mapping_bytes);
  }

  void parse();
  tensor_entry parse_entry(const std::string& key, const nlohmann::json& value) const;
};

// Throws frugal::error "file:line: safetensors NAME: MESSAGE" (unless `cond` holds).
#define FRUGAL_SAFETENSORS_FAIL(message) \
  FRUGAL_FAIL("safetensors " + name + ": " + (message), ::frugal::error)
#define FRUGAL_SAFETENSORS_EXPECTS(cond, message) \
  FRUGAL_EXPECTS(cond, "safetensors " + name + ": " + (message), ::frugal::error)

tensor_entry safetensors_file::impl::parse_entry(const std::string& key,
                                                 const nlohmann::json& value) const {
  const std::string where = "tensor " + quote_name(key) + ": ";
  FRUGAL_SAFETENSORS_EXPECTS(value.is_object(), where + "entry is not a JSON object");
  tensor_entry t;
  t.name = key;

  const auto dt = value.find("dtype");
  FRUGAL_SAFETENSORS_EXPECTS(dt != value.end() && dt->is_string(),
                             where + "missing \"dtype\" string");
  const dtype_name* d = find_dtype(dt->get_ref<const std::string&>());
  FRUGAL_SAFETENSORS_EXPECTS(d != nullptr, where + "unknown dtype " +
                                               quote_name(dt->get_ref<const std::string&>()) +
                                               " (known: " + known_dtypes() + ")");
  t.type = d->type;

  const auto shape = value.find("shape");
  FRUGAL_SAFETENSORS_EXPECTS(shape != value.end() && shape->is_array(),
                             where + "missing \"shape\" array");
  std::size_t elements = 1;
  for (const nlohmann::json& dim : *shape) {
    FRUGAL_SAFETENSORS_EXPECTS(dim.is_number_unsigned(),
                               where + "shape entries must be non-negative integers");
    const auto n = dim.get<std::uint64_t>();
    FRUGAL_SAFETENSORS_EXPECTS(n <= std::numeric_limits<std::size_t>::max() &&
                                   checked_mul(elements, static_cast<std::size_t>(n), elements),
                               where + "shape product overflows");
    t.shape.push_back(static_cast<std::size_t>(n));
  }
  std::size_t size = 0;
  FRUGAL_SAFETENSORS_EXPECTS(checked_mul(elements, d->size, size),
                             where + "shape product overflows");

  const auto offsets = value.find("data_offsets");
  FRUGAL_SAFETENSORS_EXPECTS(offsets != value.end() && offsets->is_array() &&
                                 offsets->size() == 2 && (*offsets)[0].is_number_unsigned() &&
                                 (*offsets)[1].is_number_unsigned(),
                             where + "\"data_offsets\" must be two non-negative integers");
  const auto begin = (*offsets)[0].get<std::uint64_t>();
  const auto end = (*offsets)[1].get<std::uint64_t>();
  FRUGAL_SAFETENSORS_EXPECTS(begin <= end, where + "data_offsets [" + std::to_string(begin) + ", " +
                                               std::to_string(end) + "] end before they begin");
  FRUGAL_SAFETENSORS_EXPECTS(end <= data_bytes, where + "data_offsets [" + std::to_string(begin) +
                                                    ", " + std::to_string(end) +
                                                    "] lie outside the data section (" +
                                                    std::to_string(data_bytes) + " bytes)");
  t.begin = static_cast<std::size_t>(begin);
  t.end = static_cast<std::size_t>(end);
  FRUGAL_SAFETENSORS_EXPECTS(t.end - t.begin == size,
                             where + "shape product * dtype size = " + std::to_string(size) +
                                 " bytes but data_offsets span " + std::to_string(t.end - t.begin));
  return t;
}

void safetensors_file::impl::parse() {
  FRUGAL_SAFETENSORS_EXPECTS(
      image_bytes >= header_length_bytes,
      "file is " + std::to_string(image_bytes) + " bytes, shorter than the 8-byte header length");
  const std::uint64_t header_bytes = read_u64_le(image);
  FRUGAL_SAFETENSORS_EXPECTS(header_bytes <= max_header_bytes,
                             "header length " + std::to_string(header_bytes) +
                                 " exceeds the limit of " + std::to_string(max_header_bytes) +
                                 " bytes");
  FRUGAL_SAFETENSORS_EXPECTS(header_bytes <= image_bytes - header_length_bytes,
                             "header length " + std::to_string(header_bytes) +
                                 " runs past the end of the file (" + std::to_string(image_bytes) +
                                 " bytes)");
  const std::string_view header{reinterpret_cast<const char*>(image + header_length_bytes),
                                static_cast<std::size_t>(header_bytes)};
  data = image + header_length_bytes + header.size();
  data_bytes = image_bytes - header_length_bytes - header.size();

  FRUGAL_SAFETENSORS_EXPECTS(
      json_depth(header, max_json_depth) <= max_json_depth,
      "malformed JSON header: nested deeper than " + std::to_string(max_json_depth) + " levels");
  nlohmann::json json;
  try {
    json = nlohmann::json::parse(header.begin(), header.end());
  } catch (const nlohmann::json::exception& e) {
    FRUGAL_SAFETENSORS_FAIL(std::string("malformed JSON header: ") + e.what());
  }
  FRUGAL_SAFETENSORS_EXPECTS(json.is_object(), "malformed header: the JSON is not an object");

  for (const auto& [key, value] : json.items()) {
    if (key == "__metadata__") {
      FRUGAL_SAFETENSORS_EXPECTS(value.is_object(),
                                 "malformed header: \"__metadata__\" is not an object");
      continue;
    }
    tensors.push_back(parse_entry(key, value));
  }
  std::sort(tensors.begin(), tensors.end(), [](const tensor_entry& a, const tensor_entry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.name < b.name;
  });
  const tensor_entry* furthest = nullptr;  // the non-empty tensor ending last so far
  for (const tensor_entry& t : tensors) {
    if (t.begin == t.end) continue;
    FRUGAL_SAFETENSORS_EXPECTS(furthest == nullptr || t.begin >= furthest->end,
                               "overlapping tensors " + quote_name(furthest ? furthest->name : "") +
                                   " [" + std::to_string(furthest ? furthest->begin : 0) + ", " +
                                   std::to_string(furthest ? furthest->end : 0) + ") and " +
                                   quote_name(t.name) + " [" + std::to_string(t.begin) + ", " +
                                   std::to_string(t.end) + ")");
    furthest = &t;
  }
  index.reserve(tensors.size());
  for (std::size_t i = 0; i < tensors.size(); ++i) index.emplace(tensors[i].name, i);
}

safetensors_file::safetensors_file(const std::filesystem::path& path) : impl_(new impl) {
  std::string name = path.string();
  impl_->name = name;
  try {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    FRUGAL_SAFETENSORS_EXPECTS(fd >= 0, std::string("cannot open: ") + std::strerror(errno));
    struct stat st {};
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
      ::close(fd);
      FRUGAL_SAFETENSORS_FAIL("not a regular file");
    }
    impl_->image_bytes = static_cast<std::size_t>(st.st_size);
    if (impl_->image_bytes > 0) {
      void* m = ::mmap(nullptr, impl_->image_bytes, PROT_READ, MAP_PRIVATE, fd, 0);
      const int mmap_errno = errno;
      ::close(fd);
      FRUGAL_SAFETENSORS_EXPECTS(m != MAP_FAILED,
                                 std::string("cannot map: ") + std::strerror(mmap_errno));
      impl_->mapping = m;
      impl_->mapping_bytes = impl_->image_bytes;
      impl_->image = static_cast<const std::byte*>(m);
    } else {
      ::close(fd);
    }
    impl_->parse();
  } catch (const frugal::error&) {
    delete impl_;
    throw;
  } catch (const std::bad_alloc&) {
    delete impl_;
    throw;  // an allocation failure stays one
  } catch (const std::exception& e) {
    delete impl_;
    FRUGAL_SAFETENSORS_FAIL(e.what());
  }
}

safetensors_file safetensors_file::from_bytes(std::span<const std::byte> bytes, std::string name) {
  safetensors_file file;
  file.impl_ = new impl;
  file.impl_->name = name;
  file.impl_->image = bytes.data();
  file.impl_->image_bytes = bytes.size();
  try {
    file.impl_->parse();
  } catch (const frugal::error&) {
    throw;
  } catch (const std::bad_alloc&) {
    throw;  // an allocation failure stays one
  } catch (const std::exception& e) {
    FRUGAL_SAFETENSORS_FAIL(e.what());
  }
  return file;
}

safetensors_file::safetensors_file(safetensors_file&& other) noexcept
    : impl_(std::exchange(other.impl_, nullptr)) {}

safetensors_file& safetensors_file::operator=(safetensors_file&& other) noexcept {
  if (this != &other) {
    delete impl_;
    impl_ = std::exchange(other.impl_, nullptr);
  }
  return *this;
}

safetensors_file::~safetensors_file() { delete impl_; }

const std::string& safetensors_file::name() const noexcept {
  static const std::string moved_from;
  return impl_ ? impl_->name : moved_from;
}

const std::vector<tensor_entry>& safetensors_file::tensors() const noexcept {
  static const std::vector<tensor_entry> moved_from;
  return impl_ ? impl_->tensors : moved_from;
}

bool safetensors_file::contains(const std::string& name) const noexcept {
  return impl_ && impl_->index.contains(name);
}

const tensor_entry& safetensors_file::at(const std::string& name) const {
  FRUGAL_EXPECTS(contains(name),
                 "safetensors " + this->name() + ": no tensor named " + quote_name(name),
                 frugal::invalid_argument);
  return impl_->tensors[impl_->index.at(name)];
}

std::span<const std::byte> safetensors_file::bytes(const tensor_entry& t) const noexcept {
  if (!impl_ || t.begin > t.end || t.end > impl_->data_bytes) return {};
  return {impl_->data + t.begin, t.end - t.begin};
}

void safetensors_file::to_float(const tensor_entry& t, std::span<float> out) const {
  const std::string& name = this->name();
  FRUGAL_EXPECTS(is_float_readable(t.type),
                 "safetensors " + name + ": tensor " + quote_name(t.name) + " is " +
                     std::string(to_string(t.type)) + "; only F32, F16 and BF16 convert to float",
                 frugal::invalid_argument);
  const std::span<const std::byte> raw = bytes(t);
  const std::size_t n = raw.size() / size_of(t.type);
  FRUGAL_EXPECTS(out.size() == n && n == t.elements(),
                 "safetensors " + name + ": tensor " + quote_name(t.name) + " has " +
                     std::to_string(n) + " elements, the output " + std::to_string(out.size()),
                 frugal::invalid_argument);
  const auto byte = [&](std::size_t i) { return std::to_integer<std::uint32_t>(raw[i]); };
  switch (t.type) {
    case dtype::f32:
      for (std::size_t i = 0; i < n; ++i)
        out[i] = std::bit_cast<float>(byte(4 * i) | byte(4 * i + 1) << 8 | byte(4 * i + 2) << 16 |
                                      byte(4 * i + 3) << 24);
      break;
    case dtype::f16:
      for (std::size_t i = 0; i < n; ++i)
        out[i] = detail::half_bits_to_float(
            static_cast<std::uint16_t>(byte(2 * i) | byte(2 * i + 1) << 8));
      break;
    case dtype::bf16:
      for (std::size_t i = 0; i < n; ++i)
        out[i] = detail::bfloat16_bits_to_float(
            static_cast<std::uint16_t>(byte(2 * i) | byte(2 * i + 1) << 8));
      break;
    default:
      break;
  }
}

std::vector<float> safetensors_file::to_float(const tensor_entry& t) const {
  FRUGAL_EXPECTS(is_float_readable(t.type),
                 "safetensors " + name() + ": tensor " + quote_name(t.name) + " is " +
                     std::string(to_string(t.type)) + "; only F32, F16 and BF16 convert to float",
                 frugal::invalid_argument);
  std::vector<float> out(bytes(t).size() / size_of(t.type));
  to_float(t, out);
  return out;
}

std::vector<std::byte> serialize_safetensors(std::span<const tensor_to_write> tensors) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  std::unordered_set<std::string> names;
  std::size_t offset = 0;
  for (const tensor_to_write& t : tensors) {
    FRUGAL_EXPECTS(!t.name.empty() && t.name != "__metadata__",
                   "safetensors: a tensor needs a non-empty name other than __metadata__",
                   frugal::invalid_argument);
    FRUGAL_EXPECTS(names.insert(t.name).second,
                   "safetensors: duplicate tensor name " + quote_name(t.name),
                   frugal::invalid_argument);
    std::size_t size = size_of(t.type);
    for (std::size_t d : t.shape)
      FRUGAL_EXPECTS(checked_mul(size, d, size), "safetensors: shape product overflows",
                     frugal::invalid_argument);
    FRUGAL_EXPECTS(size == t.data.size(),
                   "safetensors: tensor " + quote_name(t.name) + " has " +
                       std::to_string(t.data.size()) + " bytes of data, its shape and dtype need " +
                       std::to_string(size),
                   frugal::invalid_argument);
    header[t.name] = {{"dtype", std::string(to_string(t.type))},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + size}}};
    offset += size;
  }
  std::string text = header.dump();
  text.resize((text.size() + 7) / 8 * 8, ' ');  // the data section starts 8-byte aligned

  std::vector<std::byte> out(header_length_bytes + text.size() + offset);
  std::uint64_t length = text.size();
  for (std::size_t i = 0; i < header_length_bytes; ++i, length >>= 8)
    out[i] = static_cast<std::byte>(length & 0xFFu);
  std::memcpy(out.data() + header_length_bytes, text.data(), text.size());
  std::byte* data = out.data() + header_length_bytes + text.size();
  for (const tensor_to_write& t : tensors) {
    if (!t.data.empty()) std::memcpy(data, t.data.data(), t.data.size());
    data += t.data.size();
  }
  return out;
}

void write_safetensors(const std::filesystem::path& path,
                       std::span<const tensor_to_write> tensors) {
  const std::vector<std::byte> image = serialize_safetensors(tensors);
  std::ofstream file(path, std::ios::binary | std::ios::trunc);
  file.write(reinterpret_cast<const char*>(image.data()),
             static_cast<std::streamsize>(image.size()));
  file.close();
  FRUGAL_EXPECTS(file.good(), "safetensors: cannot write " + path.string(), frugal::error);
}

}  // namespace frugal::quant
