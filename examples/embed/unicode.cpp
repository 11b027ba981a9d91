// Unicode helpers for the tokenizer; the tables come from gen_unicode_tables.py.
#include "unicode.hpp"

#include <frugal/error.hpp>

#include <algorithm>
#include <cstdint>
#include <iterator>

namespace embed {
namespace {

struct category_range {
  char32_t first;
  std::uint8_t klass;
};
struct lowercase_entry {
  char32_t from;
  char32_t to[2];
};
struct decomposition_entry {
  char32_t from;
  std::uint16_t start;
  std::uint8_t length;
};

#include "unicode_tables.inc"

std::uint8_t class_of(char32_t c) noexcept {
  const auto* it =
      std::upper_bound(std::begin(category_ranges), std::end(category_ranges), c,
                       [](char32_t v, const category_range& r) { return v < r.first; });
  return it == std::begin(category_ranges) ? 1 : std::prev(it)->klass;
}

// Hangul syllables decompose by formula (Unicode 3.12).
constexpr char32_t hangul_first = 0xAC00, hangul_last = 0xD7A3;
constexpr char32_t lead_base = 0x1100, vowel_base = 0x1161, trail_base = 0x11A7;
constexpr char32_t vowel_count = 21, trail_count = 28;

}  // namespace

std::u32string decode_utf8(std::string_view bytes) {
  std::u32string out;
  out.reserve(bytes.size());
  std::size_t i = 0;
  const auto fail = [&](const char* why) {
    FRUGAL_FAIL_AT("invalid UTF-8 at byte " + std::to_string(i), why, frugal::invalid_argument);
  };
  while (i < bytes.size()) {
    const auto b0 = static_cast<unsigned char>(bytes[i]);
    if (b0 < 0x80) {
      out.push_back(b0);
      ++i;
      continue;
    }
    std::size_t len = 0;
    char32_t cp = 0, min = 0;
    if ((b0 & 0xE0) == 0xC0) {
      len = 2, cp = b0 & 0x1F, min = 0x80;
    } else if ((b0 & 0xF0) == 0xE0) {
      len = 3, cp = b0 & 0x0F, min = 0x800;
    } else if ((b0 & 0xF8) == 0xF0) {
      len = 4, cp = b0 & 0x07, min = 0x10000;
    } else {
      fail("not a leading byte");
    }
    if (i + len > bytes.size()) fail("truncated sequence");
    for (std::size_t k = 1; k < len; ++k) {
      const auto b = static_cast<unsigned char>(bytes[i + k]);
      if ((b & 0xC0) != 0x80) fail("missing continuation byte");
      cp = (cp << 6) | (b & 0x3F);
    }
    if (cp < min) fail("overlong encoding");
    if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) fail("not a Unicode scalar value");
    out.push_back(cp);
    i += len;
  }
  return out;
}

std::string encode_utf8(std::u32string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char32_t c : text) {
    if (c < 0x80) {
      out.push_back(static_cast<char>(c));
    } else if (c < 0x800) {
      out.push_back(static_cast<char>(0xC0 | (c >> 6)));
      out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
    } else if (c < 0x10000) {
      out.push_back(static_cast<char>(0xE0 | (c >> 12)));
      out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
    } else {
      out.push_back(static_cast<char>(0xF0 | (c >> 18)));
      out.push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
    }
  }
  return out;
}

bool is_other(char32_t c) noexcept { return class_of(c) == 1; }
bool is_mark(char32_t c) noexcept { return class_of(c) == 2; }
bool is_punctuation(char32_t c) noexcept { return class_of(c) == 3; }

bool is_white_space(char32_t c) noexcept {
  switch (c) {
    case 0x09:
    case 0x0A:
    case 0x0B:
    case 0x0C:
    case 0x0D:
    case 0x20:
    case 0x85:
    case 0xA0:
    case 0x1680:
    case 0x2028:
    case 0x2029:
    case 0x202F:
    case 0x205F:
    case 0x3000:
      return true;
    default:
      return c >= 0x2000 && c <= 0x200A;
  }
}

bool is_cjk_ideograph(char32_t c) noexcept {
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
         (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B73F) ||
         (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B820 && c <= 0x2CEAF) ||
         (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

void append_lowercase(char32_t c, std::u32string& out) {
  if (c < 0x80) {
    out.push_back(c >= 'A' && c <= 'Z' ? c + 32 : c);
    return;
  }
  const auto* it =
      std::lower_bound(std::begin(lowercase_map), std::end(lowercase_map), c,
                       [](const lowercase_entry& e, char32_t v) { return e.from < v; });
  if (it == std::end(lowercase_map) || it->from != c) {
    out.push_back(c);
    return;
  }
  out.push_back(it->to[0]);
  if (it->to[1] != 0) out.push_back(it->to[1]);
}

void append_nfd(char32_t c, std::u32string& out) {
  if (c < 0xC0) {
    out.push_back(c);
    return;
  }
  if (c >= hangul_first && c <= hangul_last) {
    const char32_t index = c - hangul_first;
    out.push_back(lead_base + index / (vowel_count * trail_count));
    out.push_back(vowel_base + (index % (vowel_count * trail_count)) / trail_count);
    if (index % trail_count != 0) out.push_back(trail_base + index % trail_count);
    return;
  }
  const auto* it =
      std::lower_bound(std::begin(decompositions), std::end(decompositions), c,
                       [](const decomposition_entry& e, char32_t v) { return e.from < v; });
  if (it == std::end(decompositions) || it->from != c) {
    out.push_back(c);
    return;
  }
  out.append(decomposition_data + it->start, it->length);
}

}  // namespace embed
