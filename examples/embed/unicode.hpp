// examples/embed/unicode.hpp: the little Unicode a BERT tokenizer needs: strict UTF-8 decoding,
// character classes (control, mark, punctuation, whitespace, CJK ideograph), full lowercase
// mapping and canonical decomposition (NFD), from tables generated out of the Unicode data.
//   std::u32string s = embed::decode_utf8(line);   // throws frugal::invalid_argument if invalid
#pragma once

#include <string>
#include <string_view>

namespace embed {

/// @brief Decodes UTF-8 strictly (no overlong forms, no surrogates, nothing above U+10FFFF).
/// @throws frugal::invalid_argument naming the byte offset of the first invalid sequence.
std::u32string decode_utf8(std::string_view bytes);
/// @brief Encodes code points (assumed valid scalar values) as UTF-8.
std::string encode_utf8(std::u32string_view text);

/// @brief General category C* (Cc, Cf, Cn, Co, Cs).
bool is_other(char32_t c) noexcept;
/// @brief General category M* (Mn, Mc, Me).
bool is_mark(char32_t c) noexcept;
/// @brief General category P*.
bool is_punctuation(char32_t c) noexcept;
/// @brief The Unicode White_Space property.
bool is_white_space(char32_t c) noexcept;
/// @brief The CJK ideograph blocks BERT surrounds with spaces.
bool is_cjk_ideograph(char32_t c) noexcept;
/// @brief Appends the full lowercase mapping of `c` (one or two code points) to `out`.
void append_lowercase(char32_t c, std::u32string& out);
/// @brief Appends the canonical decomposition of `c` (itself when it has none) to `out`.
void append_nfd(char32_t c, std::u32string& out);

}  // namespace embed
