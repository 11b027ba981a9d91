// examples/embed/tokenizer.hpp: a BERT WordPiece tokenizer read from a Hugging Face
// tokenizer.json (BertNormalizer, BertPreTokenizer, WordPiece, [CLS] ... [SEP]).
//   auto tok = embed::wordpiece_tokenizer::from_file(dir / "tokenizer.json", 256);
//   std::vector<std::int32_t> ids = tok.encode("Hello, world!");   // [CLS] hello , world ! [SEP]
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace embed {

/// @brief What the normalizer does (BertNormalizer's options).
struct normalizer_options {
  bool clean_text = true;            // drop control characters, map white space to ' '
  bool handle_chinese_chars = true;  // surround CJK ideographs with spaces
  bool strip_accents = true;         // NFD, then drop marks (unset in the file: = lowercase)
  bool lowercase = true;
};

class wordpiece_tokenizer {
 public:
  /// @brief Reads `path` (a tokenizer.json). Sequences are truncated to `max_length` ids,
  /// [CLS] and [SEP] included.
  /// @throws frugal::error naming the file when it is missing, is not JSON, or describes
  ///   something other than a BERT WordPiece tokenizer.
  static wordpiece_tokenizer from_file(const std::filesystem::path& path, std::size_t max_length);
  /// @brief As from_file, from parsed JSON; `name` appears in error messages.
  static wordpiece_tokenizer from_json(const nlohmann::json& j, std::size_t max_length,
                                       const std::string& name = "tokenizer.json");

  /// @brief Token ids of `text` (UTF-8): [CLS], the WordPiece ids (truncated), [SEP].
  /// @throws frugal::invalid_argument when `text` is not valid UTF-8.
  std::vector<std::int32_t> encode(std::string_view text) const;

  /// @brief The normalized text split into words (what WordPiece sees), for tests.
  std::vector<std::u32string> pre_tokenize(std::u32string_view text) const;

  std::size_t vocab_size() const noexcept { return vocab_.size(); }
  std::size_t max_length() const noexcept { return max_length_; }
  const normalizer_options& normalizer() const noexcept { return normalizer_; }

 private:
  std::u32string normalize(std::u32string_view text) const;
  void word_piece(std::u32string_view word, std::vector<std::int32_t>& out) const;
  std::int32_t id_of(const std::string& token, const std::string& name) const;

  std::unordered_map<std::string, std::int32_t> vocab_;
  std::vector<std::pair<std::u32string, std::int32_t>> special_;  // matched in the raw text
  normalizer_options normalizer_;
  std::string prefix_ = "##";
  std::size_t max_input_chars_per_word_ = 100;
  std::size_t max_length_ = 256;
  std::int32_t unk_ = 0, cls_ = 0, sep_ = 0;
};

}  // namespace embed
